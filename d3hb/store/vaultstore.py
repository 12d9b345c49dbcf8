"""Vault state: the source's volume history and the target's archive objects.

Source side, in the system's own database (tables created on first use):
``vault_codes`` holds each vault's verification code and ``vault_volumes``
the volume history.  Both live in system.db on purpose: a full restore
brings back a database without them, exactly the case TSM describes (the
code is lost; ``forcesync=yes`` resets it; ``reconcile`` finds the volumes
the restored history no longer knows).

Target side, in ``$SYSTEM/vault/archive.db`` beside the object files
``$SYSTEM/vault/objects/NODE/VOLUME``: the registered nodes (password key,
verification code, policy) and each archive object's attributes.  An
object row is written only after its file is complete and synced, so a
half-received volume never exists as an object.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from d3hb.errors import NotFound, StoreError, UsageError
from d3hb.store.system import NAME_RE, System

USABLE, PENDING, UNAVAILABLE = "usable", "pending", "unavailable"
ACTIVE, DELETED = "active", "deleted"

_SOURCE_SCHEMA = """
CREATE TABLE IF NOT EXISTS vault_codes(vault TEXT PRIMARY KEY, code BLOB NOT NULL, set_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS vault_volumes(
    volume TEXT PRIMARY KEY, vault TEXT NOT NULL, vset TEXT NOT NULL, part INTEGER NOT NULL,
    kind TEXT NOT NULL, created REAL NOT NULL, size INTEGER NOT NULL, digest TEXT NOT NULL,
    status TEXT NOT NULL, first_block INTEGER NOT NULL DEFAULT 0, label TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS vault_volumes_set ON vault_volumes(vault, vset, part);
"""

_TARGET_SCHEMA = """
CREATE TABLE IF NOT EXISTS nodes(
    node TEXT PRIMARY KEY, type TEXT NOT NULL DEFAULT 'server', key BLOB NOT NULL, code BLOB,
    archretain REAL, registered REAL NOT NULL);
CREATE TABLE IF NOT EXISTS objects(
    node TEXT NOT NULL, name TEXT NOT NULL, vset TEXT NOT NULL, part INTEGER NOT NULL, kind TEXT NOT NULL,
    created REAL NOT NULL, size INTEGER NOT NULL, digest TEXT NOT NULL, status TEXT NOT NULL,
    stored REAL NOT NULL, marked REAL, PRIMARY KEY(node, name));
"""


@dataclass(frozen=True)
class Volume:
    """One row of the source's volume history."""

    volume: str
    vault: str
    vset: str
    part: int
    kind: str
    created: float
    size: int
    digest: str
    status: str
    first_block: int = 0
    label: str = ""

    def attrs(self) -> tuple:
        """What must agree with the target's archive object."""
        return (self.vset, self.part, self.kind, self.size, self.digest)


@dataclass(frozen=True)
class ArchiveObject:
    """One archive object on the target."""

    node: str
    name: str
    vset: str
    part: int
    kind: str
    created: float
    size: int
    digest: str
    status: str
    stored: float
    marked: float | None = None

    def attrs(self) -> tuple:
        return (self.vset, self.part, self.kind, self.size, self.digest)

    def doc(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Node:
    node: str
    type: str
    key: bytes
    code: bytes | None
    archretain: float | None  # seconds an object is kept once marked for deletion; None: no archive copy group
    registered: float


def check_volume_name(name: str) -> str:
    if not NAME_RE.match(name) or "/" in name or name.startswith("."):
        raise UsageError(f"illegal volume name {name!r}", "volume names are letters, digits, '.', '_' and '-'")
    return name


# -- source side --------------------------------------------------------------


class VolumeHistory:
    """The source's vault tables in its system database."""

    def __init__(self, system: System) -> None:
        self.system = system
        with system.transaction():
            for stmt in _SOURCE_SCHEMA.strip().split(";"):
                if stmt.strip():
                    system.q(stmt)

    def code(self, vault: str) -> bytes | None:
        row = self.system.q("SELECT code FROM vault_codes WHERE vault=?", (vault,)).fetchone()
        return bytes(row[0]) if row else None

    def set_code(self, vault: str, code: bytes | None) -> None:
        with self.system.transaction():
            if code is None:
                self.system.q("DELETE FROM vault_codes WHERE vault=?", (vault,))
            else:
                self.system.q("INSERT OR REPLACE INTO vault_codes VALUES(?,?,?)", (vault, code, time.time()))

    def add(self, v: Volume) -> None:
        with self.system.transaction():
            self.system.q("INSERT INTO vault_volumes VALUES(?,?,?,?,?,?,?,?,?,?,?)",
                          (v.volume, v.vault, v.vset, v.part, v.kind, v.created, v.size, v.digest, v.status, v.first_block, v.label))

    def volumes(self, vault: str | None = None, vset: str | None = None) -> list[Volume]:
        sql, params = "SELECT * FROM vault_volumes WHERE 1=1", []
        if vault is not None:
            sql, params = sql + " AND vault=?", [*params, vault]
        if vset is not None:
            sql, params = sql + " AND vset=?", [*params, vset]
        return [Volume(*r) for r in self.system.q(sql + " ORDER BY created, vset, part", params)]

    def get(self, volume: str) -> Volume:
        row = self.system.q("SELECT * FROM vault_volumes WHERE volume=?", (volume,)).fetchone()
        if row is None:
            raise NotFound(f"volume {volume!r} is not in the volume history of system {self.system.name!r}", "list them with 'vault volumes NAME'")
        return Volume(*row)

    def set_status(self, volumes: list[str], status: str) -> None:
        with self.system.transaction():
            for v in volumes:
                self.system.q("UPDATE vault_volumes SET status=? WHERE volume=?", (status, v))

    def complete_set(self, vset: str) -> None:
        """Every volume of the set arrived: only now are they usable, all at once."""
        with self.system.transaction():
            self.system.q("UPDATE vault_volumes SET status=? WHERE vset=? AND status=?", (USABLE, vset, PENDING))

    def delete(self, volumes: list[str]) -> None:
        with self.system.transaction():
            for v in volumes:
                self.system.q("DELETE FROM vault_volumes WHERE volume=?", (v,))


# -- target side --------------------------------------------------------------


class Archive:
    """The vault's archive: nodes and objects, in ``$SYSTEM/vault``."""

    def __init__(self, system_dir: Path | str) -> None:
        self.dir = Path(system_dir) / "vault"
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.db = self.dir / "archive.db"
        try:
            self.conn = sqlite3.connect(self.db, timeout=10.0, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.executescript(_TARGET_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the vault archive {self.db} ({exc})", "check the directory's owner, mode and free space") from None
        with contextlib.suppress(OSError):
            os.chmod(self.db, 0o600)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            raise StoreError(f"vault archive {self.db}: {exc}", "retry, or stop the process holding it") from None

    # nodes
    def register(self, node: str, key: bytes, archretain: float | None) -> None:
        with self.tx() as c:
            c.execute("INSERT INTO nodes(node, key, archretain, registered) VALUES(?,?,?,?) "
                      "ON CONFLICT(node) DO UPDATE SET key=excluded.key, archretain=excluded.archretain",
                      (node, key, archretain, time.time()))

    def node(self, node: str) -> Node | None:
        row = self.conn.execute("SELECT node, type, key, code, archretain, registered FROM nodes WHERE node=?", (node,)).fetchone()
        return None if row is None else Node(row[0], row[1], bytes(row[2]), bytes(row[3]) if row[3] else None, row[4], row[5])

    def nodes(self) -> list[Node]:
        return [n for n in (self.node(r[0]) for r in self.conn.execute("SELECT node FROM nodes ORDER BY node")) if n]

    def remove_node(self, node: str) -> None:
        with self.tx() as c:
            if c.execute("SELECT count(*) FROM objects WHERE node=?", (node,)).fetchone()[0]:
                raise StoreError(f"node {node!r} still has archive objects", "expire them from the source, purge, then remove the node")
            c.execute("DELETE FROM nodes WHERE node=?", (node,))

    def set_code(self, node: str, code: bytes) -> None:
        with self.tx() as c:
            c.execute("UPDATE nodes SET code=? WHERE node=?", (code, node))

    # objects
    def path(self, node: str, name: str) -> Path:
        return self.dir / "objects" / node / check_volume_name(name)

    def objects(self, node: str) -> list[ArchiveObject]:
        return [ArchiveObject(*r) for r in self.conn.execute(
            "SELECT node, name, vset, part, kind, created, size, digest, status, stored, marked FROM objects WHERE node=? ORDER BY created, vset, part", (node,))]

    def object(self, node: str, name: str) -> ArchiveObject | None:
        row = self.conn.execute("SELECT node, name, vset, part, kind, created, size, digest, status, stored, marked FROM objects "
                                "WHERE node=? AND name=?", (node, name)).fetchone()
        return None if row is None else ArchiveObject(*row)

    def add(self, obj: ArchiveObject) -> None:
        with self.tx() as c:
            c.execute("INSERT OR REPLACE INTO objects VALUES(?,?,?,?,?,?,?,?,?,?,?)",
                      (obj.node, obj.name, obj.vset, obj.part, obj.kind, obj.created, obj.size, obj.digest, obj.status, obj.stored, obj.marked))

    def mark(self, node: str, names: list[str], status: str, now: float | None = None) -> int:
        now = time.time() if now is None else now
        n = 0
        with self.tx() as c:
            for name in names:
                n += c.execute("UPDATE objects SET status=?, marked=? WHERE node=? AND name=?",
                               (status, now if status == DELETED else None, node, name)).rowcount
        return n

    def sweep(self) -> tuple[list[Path], list[Path]]:
        """At the vault server's start (it holds the pid lock, so no session is receiving):
        remove partial objects a crash left, and find object files no row names.

        Returns (partials removed, unnamed files).  Unnamed files are only reported: one is a
        volume whose row a crash prevented (the source never had its reply and stores it again
        under the same name) or a purge cut short; an archive.db restored from an older copy
        also shows here, and its files must not be thrown away by a restart."""
        root = self.dir / "objects"
        if not root.is_dir():
            return [], []
        named = set(self.conn.execute("SELECT node, name FROM objects").fetchall())
        partials, unnamed = [], []
        for path in sorted(root.glob("*/*")):
            if not path.is_file():
                continue
            if path.name.startswith(".") and path.name.endswith(".partial"):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                partials.append(path)
            elif (path.parent.name, path.name) not in named:
                unnamed.append(path)
        return partials, unnamed

    def purge(self, now: float | None = None) -> list[tuple[str, str]]:
        """Delete objects marked for deletion longer ago than their node's archive retention."""
        now = time.time() if now is None else now
        rows = self.conn.execute("SELECT o.node, o.name FROM objects o JOIN nodes n ON n.node=o.node "
                                 "WHERE o.status=? AND o.marked + coalesce(n.archretain, 0) <= ?", (DELETED, now)).fetchall()
        gone = []
        for node, name in rows:
            with self.tx() as c:
                c.execute("DELETE FROM objects WHERE node=? AND name=? AND status=?", (node, name, DELETED))
            with contextlib.suppress(FileNotFoundError):
                self.path(node, name).unlink()  # after the row: a crash leaves a file no row names, never the reverse
            gone.append((node, name))
        return gone
