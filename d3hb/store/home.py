"""Where systems live: ``$D3HB_HOME`` (default ``~/.d3hb``), one directory each."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from d3hb.errors import NotFound, Refused, UsageError
from d3hb.store.system import DB_NAME, NAME_RE, System

DEFAULT_SYSTEM = "pick0"


def default_home() -> Path:
    return Path(os.environ.get("D3HB_HOME") or Path.home() / ".d3hb")


@dataclass(frozen=True)
class Home:
    path: Path

    @classmethod
    def from_env(cls, path: Path | str | None = None) -> Home:
        return cls(Path(path) if path else default_home())

    def system_path(self, name: str) -> Path:
        if not NAME_RE.match(name):
            raise UsageError(f"illegal system name {name!r}", "use letters, digits, '_', '-' or '.', starting with a letter or digit")
        return self.path / name

    def exists(self, name: str) -> bool:
        path = self.system_path(name)
        if (path / "restore.swap").exists():
            from d3hb.store.dump import recover  # finish an interrupted restore before judging

            recover(path)
        return (path / DB_NAME).exists()

    def create(self, name: str, *, small: bool = False) -> System:
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return System.create(self.system_path(name), name, small=small)

    def open(self, name: str) -> System:
        """Open a system; the default system is created on first use so a newcomer needs no set-up."""
        if not self.exists(name):
            if name == DEFAULT_SYSTEM:
                return self.create(name)
            raise NotFound(f"system {name!r} not found in {self.path}", f"create it with 'd3hb system create {name}'")
        return System.open(self.system_path(name))

    def names(self) -> list[str]:
        if not self.path.is_dir():
            return []
        return sorted(p.name for p in self.path.iterdir() if (p / DB_NAME).exists())

    def delete(self, name: str) -> None:
        path = self.system_path(name)
        if not (path / DB_NAME).exists():
            raise NotFound(f"system {name!r} not found in {self.path}", "list the systems with 'd3hb system list'")
        running = [p.name for p in path.glob("*.pid")]
        if running:
            raise Refused(f"system {name!r} has servers with pid files ({', '.join(running)})", "stop its servers first")
        shutil.rmtree(path)
