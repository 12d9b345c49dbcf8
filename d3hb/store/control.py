"""The dm account's control files: created with every system, never applied on a slave.

Kept in this one place: the store creates them, the slave's apply policy
skips them, and the save/restore code knows which are system files.
"""

from __future__ import annotations

# (name, D-pointer code of the data level).  file-of-files must be DX (D3's
# requirement, so FOF numbers survive a restore), and it is FOF 1; mds is FOF 2.
CONTROL_FILES: tuple[tuple[str, str], ...] = (
    ("file-of-files", "DX"),
    ("mds", "D"),
    ("accounts", "D"),
    ("errors", "D"),
    ("hb.log", "D"),
    ("ts.log", "D"),
    ("ABS", "D"),
    ("alarm.file", "D"),
    ("backgrounds", "D"),
    ("devs", "D"),
    ("jobs", "D"),
    ("PIBs", "D"),
    ("resizing", "D"),
    ("tcl-stack", "DT"),
    ("users", "D"),
)

NEVER_APPLIED: frozenset[str] = frozenset(name for name, _ in CONTROL_FILES)
SYSTEM_ACCOUNT = "dm"


def is_control(account: str, dict_name: str) -> bool:
    """True for a dm control file (any level or section of it, e.g. ``hb.log,hbs*12``)."""
    return account == SYSTEM_ACCOUNT and dict_name in NEVER_APPLIED
