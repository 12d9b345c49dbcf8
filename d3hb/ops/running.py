"""Which servers of a system are running, judged from their pid files.

Tape operations need only this question answered (a restore is refused
while any server of the system runs; save ``(k`` while a hot backup server
runs), so it is kept apart from the supervisor that starts and stops them.
Tape-socket servers' pid files start with ``ts-``; every other pid file in
the system directory belongs to a hot backup server.
"""

from __future__ import annotations

import os
from pathlib import Path

TAPE_SOCKET_PREFIX = "ts-"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); it is not running.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _pid_files(system_dir: Path) -> list[Path]:
    return sorted(Path(system_dir).glob("*.pid")) + sorted((Path(system_dir) / "run").glob("*.pid"))


def servers(system_dir: Path) -> list[str]:
    """Names (pid file stems) of every server of this system that is running."""
    out = []
    for pid_file in _pid_files(system_dir):
        try:
            pid = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if alive(pid):
            out.append(pid_file.stem)
    return out


def hot_backup_servers(system_dir: Path) -> list[str]:
    return [n for n in servers(system_dir) if not n.startswith(TAPE_SOCKET_PREFIX)]


def tape_socket_servers(system_dir: Path) -> list[str]:
    return [n[len(TAPE_SOCKET_PREFIX):] for n in servers(system_dir) if n.startswith(TAPE_SOCKET_PREFIX)]
