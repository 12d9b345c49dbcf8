"""man/hot-backup.8's failover section lints clean and names every failover command it tells the administrator to run."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from d3hb.menu.registry import load_actions

MAN = Path(__file__).resolve().parents[2] / "man" / "hot-backup.8"
FAILOVER = ("promote", "switchover", "rejoin", "reseed", "resync", "failback", "verify")


def _section() -> str:
    text = MAN.read_text()
    start = text.index(".SH FAILOVER AND FAILBACK")
    section = text[start : text.index("\n.SH ", start + 1)].replace("\\-", "-")
    return re.sub(r"\\f[BIRP]", "", section)  # font changes out, so words stand alone


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed (apt-get install groff)")
def test_man_page_lints_clean_with_groff():
    r = subprocess.run(["groff", "-ww", "-z", "-man", str(MAN)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_failover_section_names_only_commands_that_exist():
    section = _section()
    known = {n.split(".", 1)[1] for n in load_actions().names("hot-backup")}
    assert set(FAILOVER) <= known
    missing = [v for v in FAILOVER if not re.search(rf"\b{v}\b", section)]
    assert not missing, f"not in the failover section: {missing}"
    # Every "d3hb ... hot-backup VERB" the procedure shows is a real command.
    shown = set(re.findall(r"d3hb (?:--system \S+ )?hot-backup ([a-z][a-z-]+)", section))
    assert shown and shown <= known, sorted(shown - known)
