"""tests/ui share the fake registry and the action contract kept in tests/menu/menufake.py."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "menu"))
