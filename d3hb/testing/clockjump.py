"""Jump the wall clock of chosen processes (see d3hb/testing/fakeclock/sitecustomize.py)."""

from __future__ import annotations

import os
from pathlib import Path

SITE_DIR = Path(__file__).resolve().parent / "fakeclock"


def env(clock_file: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """An environment whose Python processes read their wall clock through ``clock_file``."""
    e = dict(os.environ if base is None else base)
    e["D3HB_FAKE_CLOCK_FILE"] = str(clock_file)
    e["PYTHONPATH"] = str(SITE_DIR) + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    return e


def set_offset(clock_file: Path, seconds: float) -> None:
    """Move those processes' wall clock to real time + ``seconds`` (they see it within 50 ms)."""
    tmp = clock_file.with_suffix(".tmp")
    tmp.write_text(f"{seconds}\n")
    tmp.replace(clock_file)  # never a half-written number
