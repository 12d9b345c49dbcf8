"""D3's ``msg``: messages to a user or a port (``!0``), kept in a per-recipient log.

A message log is a plain text file under the system's ``msg/`` directory, so
an administrator can ``tail -f`` it; incidents use the same path to reach
every entry of a server's notify list.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from d3hb.errors import UsageError

_TARGET = re.compile(r"^(!\d{1,5}|![*]|[*]|[A-Za-z][A-Za-z0-9_.\-]{0,31})$")


def parse_targets(spec: str) -> list[str]:
    """``dm,bob,!0`` -> ["dm", "bob", "!0"]; a bad entry is refused naming it."""
    targets = [t.strip() for t in spec.split(",") if t.strip()]
    for t in targets:
        if not _TARGET.match(t):
            raise UsageError(f"bad notify entry {t!r}", "give user names or !port numbers separated by commas, e.g. dm,bob,!0")
    return targets


def log_path(system_dir: Path, target: str) -> Path:
    name = f"port-{target[1:]}" if target.startswith("!") else target
    return system_dir / "msg" / f"{name.replace('*', 'all')}.log"


def send(system_dir: Path, target: str, text: str, sender: str = "d3hb") -> Path:
    """Append one message line; returns the log it went to."""
    if not _TARGET.match(target):  # one recipient; parse_targets("") would accept nothing at all
        raise UsageError(f"bad message recipient {target!r}", "give a user name, !port, * or !*")
    path = log_path(system_dir, target)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    stamp = time.strftime("%H:%M:%S %d %b %Y")
    line = f"{stamp} from {sender}: {' '.join(text.splitlines())}\n"
    # O_APPEND keeps concurrent senders' lines whole.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, line.encode("utf-8", "replace"))
    finally:
        os.close(fd)
    return path


def read(system_dir: Path, target: str) -> list[str]:
    path = log_path(system_dir, target)
    return path.read_text(encoding="utf-8", errors="replace").splitlines() if path.exists() else []
