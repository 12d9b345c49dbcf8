"""Fault benchmark: randomized fault rounds under a writer, and what they cost.

A pair on 127.0.0.1 with a fault proxy between master and slave and a writer
process on the master (d3hb.testing.chaos).  Each round injects one random
fault (kill -9 of either server or of the writer, SIGSTOP past the time-outs,
a delayed, stalled, truncated, reset or bit-flipped link) and repairs it; at
the end the queue drains and the oracle (d3hb.testing.oracle) counts.

Printed: rounds, the time they took, faults injected by kind, writes
acknowledged, lost (must be 0), duplicated (must be 0).  Exit status 1 if
anything was lost, duplicated, out of order or never written.

Run: ``python bench/faults.py`` (60 rounds), ``--quick`` (8 rounds),
``--rounds N``, ``--seed S`` to replay a run.  The last line is
``BENCH-JSON {...}`` for ``bench/run``.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from d3hb.testing import chaos  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="8 rounds")
    p.add_argument("--rounds", type=int, help="rounds of faults (default 60; 8 with --quick)")
    p.add_argument("--seed", type=int, help="replay this seed (default: a new one, printed)")
    p.add_argument("--keep", action="store_true", help="keep the systems' directory (printed) for a post-mortem")
    args = p.parse_args(argv)
    rounds = args.rounds or (8 if args.quick else 60)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 2**31)
    home = Path(tempfile.mkdtemp(prefix="d3hb-faults-"))
    print(f"seed {seed}, {rounds} rounds, systems in {home}", flush=True)
    try:
        out = chaos.run(home, rounds, seed, say=lambda s: print("  " + s, flush=True), drain_timeout=180)
    finally:
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    rep = out.report
    assert rep is not None
    kinds = {k: out.faults.get(k, 0) for k in chaos.KINDS}
    print(f"rounds                {out.rounds} in {out.seconds:.1f} s ({out.seconds / max(1, out.rounds):.2f} s/round)")
    print("faults injected       " + ", ".join(f"{k} {v}" for k, v in kinds.items() if v))
    print("proxy faults hit      " + ", ".join(f"{k[6:]} {v}" for k, v in sorted(out.faults.items()) if k.startswith("proxy-")))
    print(f"writer processes      {out.faults['writers']} ({out.faults['uncertain-writes']} writes cut by a kill, resolved)")
    print(f"writes                {rep.writes}")
    print(f"writes acknowledged   {rep.acknowledged} ({out.faults['acked-before-drain']} seen by the writer before the final drain)")
    print(f"lost                  {rep.lost}   (must be 0)")
    print(f"duplicated            {rep.duplicated}   (must be 0)")
    print(f"out of order          {rep.out_of_order}; never written {rep.never_written}")
    print("oracle                " + ("clean" if rep.ok else f"FAILED: {rep.problems[0]} (replay: --seed {seed})"))
    rows = [
        {"figure": "fault rounds", "value": out.rounds, "unit": "rounds", "reference": None, "ref_value": None, "ratio": None},
        {"figure": "seconds per fault round", "value": round(out.seconds / max(1, out.rounds), 3), "unit": "s",
         "reference": None, "ref_value": None, "ratio": None},
        {"figure": "writes acknowledged under faults", "value": rep.acknowledged, "unit": "writes",
         "reference": "writes", "ref_value": rep.writes, "ratio": round(rep.acknowledged / rep.writes, 4) if rep.writes else None},
        {"figure": "acknowledged writes lost", "value": rep.lost, "unit": "writes", "reference": "must be", "ref_value": 0, "ratio": None},
        {"figure": "writes duplicated", "value": rep.duplicated, "unit": "writes", "reference": "must be", "ref_value": 0, "ratio": None},
    ]
    print("BENCH-JSON " + json.dumps({"bench": "faults", "seed": seed, "faults": kinds, "ok": rep.ok, "rows": rows}))
    return 0 if rep.ok else 1


if __name__ == "__main__":
    sys.exit(main())
