"""bench/run: runs each benchmark, reads its last BENCH-JSON line, prints one table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

RUN = Path(__file__).resolve().parents[2] / "bench" / "run"


def _bench(d: Path, name: str, body: str) -> None:
    (d / f"{name}.py").write_text("import json, sys\n" + body)


def test_table_of_every_benchmark_and_failures_named(tmp_path):
    doc = {"bench": "alpha", "rows": [
        {"figure": "commits/s", "value": 900.0, "unit": "commits/s", "reference": "unreplicated", "ref_value": 1000.0, "ratio": 0.9},
        {"figure": "lag p99", "value": 12.5, "unit": "ms", "reference": None, "ref_value": None, "ratio": None}]}
    _bench(tmp_path, "alpha", f"print('quick' if '--quick' in sys.argv else 'full')\nprint('BENCH-JSON {{\"bench\": \"old\", \"rows\": []}}')\n"
                              f"print('BENCH-JSON ' + json.dumps({doc!r}))\n")
    _bench(tmp_path, "beta", "print('no figures here')\n")
    _bench(tmp_path, "gamma", "sys.exit('gamma broke')\n")
    out = tmp_path / "all.json"
    done = subprocess.run([sys.executable, str(RUN), "--dir", str(tmp_path), "--json", str(out)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1, done.stderr  # beta and gamma failed
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["bench", "figure", "value", "unit", "reference", "ratio"]
    alpha = [ln for ln in lines if ln.startswith("alpha")]
    assert len(alpha) == 2, "the last BENCH-JSON line counts, not an earlier one"
    assert "commits/s" in alpha[0] and "unreplicated (1,000)" in alpha[0] and alpha[0].rstrip().endswith("0.9")
    assert "12.5" in alpha[1] and alpha[1].rstrip().endswith("-")
    assert any(ln.startswith("beta") and "no BENCH-JSON line" in ln for ln in lines)
    assert any(ln.startswith("gamma") and "exit status 1" in ln and "gamma broke" in ln for ln in lines)
    assert json.loads(out.read_text())["alpha"] == doc
    assert "running alpha.py --quick" in done.stderr


def test_full_and_only(tmp_path):
    _bench(tmp_path, "alpha", "mode = 'full' if '--quick' not in sys.argv else 'quick'\n"
                              "print('BENCH-JSON ' + json.dumps({'bench': 'a', 'rows': [{'figure': mode, 'value': 1}]}))\n")
    _bench(tmp_path, "beta", "sys.exit(3)\n")
    done = subprocess.run([sys.executable, str(RUN), "--dir", str(tmp_path), "--full", "--only", "alpha"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "full" in done.stdout and "beta" not in done.stdout
    bad = subprocess.run([sys.executable, str(RUN), "--dir", str(tmp_path), "--only", "nope"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "no benchmark named nope" in bad.stderr and "Traceback" not in bad.stderr


def test_a_benchmark_without_quick_mode_is_run_as_it_is(tmp_path):
    _bench(tmp_path, "plain", "import argparse\nargparse.ArgumentParser().parse_args()\n"
                              "print('BENCH-JSON ' + json.dumps({'bench': 'p', 'rows': [{'figure': 'plain figure', 'value': 7}]}))\n")
    done = subprocess.run([sys.executable, str(RUN), "--dir", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert any(ln.startswith("plain") and "plain figure" in ln for ln in done.stdout.splitlines())
