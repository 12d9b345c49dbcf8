"""man/vault.8 lints clean with groff and documents every vault command; the Vault menu names only vault actions."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from d3hb.menu.registry import load_actions

ROOT = Path(__file__).resolve().parents[2]
MAN = ROOT / "man" / "vault.8"


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed (apt-get install groff)")
def test_man_page_lints_clean_with_groff():
    r = subprocess.run(["groff", "-ww", "-z", "-man", str(MAN)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_man_page_documents_every_vault_command():
    text = MAN.read_text().replace("\\-", "-")
    verbs = [n.split(".", 1)[1] for n in load_actions().names("vault")]
    assert len(verbs) >= 10
    # A command is documented where a paragraph tag (.TP/.TQ line) names it.
    tagged = set(re.findall(r"^\.(?:BI|BR|B)\s+\"?([a-z-]+)", text, re.M))
    tagged |= {w for line in re.findall(r"^\.BR\s+(.*)$", text, re.M) for w in re.findall(r"[a-z][a-z-]+", line)}
    missing = [v for v in verbs if v not in tagged]
    assert not missing, f"not in man/vault.8: {missing}"


def test_vault_menu_runs_only_vault_actions():
    toml = (ROOT / "menus" / "vault.toml").read_text()
    named = set(re.findall(r'^action = "([^"]+)"', toml, re.M))
    known = set(load_actions().names("vault"))
    assert named and named <= known, sorted(named - known)
