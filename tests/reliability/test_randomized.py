"""N rounds of random faults under a writer process, then the oracle (d3hb.testing.chaos)."""

from __future__ import annotations

import pytest

from d3hb.testing import chaos


@pytest.mark.faults
def test_random_fault_rounds_lose_and_duplicate_nothing(home, fault_rounds, fault_seed):
    said: list[str] = []
    out = chaos.run(home, fault_rounds, fault_seed, say=said.append, drain_timeout=120)
    print(f"seed {fault_seed}: {out.rounds} rounds in {out.seconds:.1f} s; faults {dict(out.faults)}")
    report = out.report
    assert report is not None
    assert report.ok, f"seed {fault_seed}, plan {out.plan}: {report.problems[0]}"
    assert report.lost == 0 and report.duplicated == 0 and report.out_of_order == 0 and report.never_written == 0
    assert report.writes > 0 and report.acknowledged == report.writes, "after the drain every write is acknowledged"
    assert out.plan == [f.kind for f in chaos.make_plan(fault_seed, fault_rounds)], "the run followed the seed's plan"
    assert len(said) == fault_rounds == sum(out.faults[k] for k in chaos.KINDS)


def test_a_seed_fixes_every_fault_and_its_parameters():
    a, b = chaos.make_plan(12345, 50), chaos.make_plan(12345, 50)
    assert a == b
    assert chaos.make_plan(54321, 50) != a
    assert {f.kind for f in a} <= set(chaos.KINDS) and len({f.kind for f in a}) > 5
    assert all(f.hold > chaos.TIMEOUT for f in a), "stops and stalls outlast the servers' time-out"
