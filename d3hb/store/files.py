"""A handle on one file level: read, write, delete, list and digest its items."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from d3hb.store.marks import as_bytes, check_id

if TYPE_CHECKING:
    from d3hb.store.system import FileInfo, System


class File:
    def __init__(self, system: System, info: FileInfo) -> None:
        self.system = system
        self.info = info

    def __repr__(self) -> str:
        return f"<File {self.info.qualified} fof={self.info.fof} {self.info.code}>"

    def write(self, item_id: str | bytes, body: str | bytes) -> int | None:
        """Write an item; logged and queued in the same transaction when the rules say so.

        Returns the transaction number it was queued under, None when not logged.
        """
        iid = check_id(item_id)
        with self.system.transaction():
            return self.system._put(self.info, iid, as_bytes(body), log=None, guard=True)

    def delete(self, item_id: str | bytes) -> int | None | bool:
        """Delete an item: False when absent, else its transaction number (None: not logged)."""
        iid = check_id(item_id)
        with self.system.transaction():
            return self.system._drop(self.info, iid, log=None, guard=True)

    def read(self, item_id: str | bytes) -> bytes | None:
        row = self.system.q("SELECT body FROM items WHERE fof=? AND id=?", (self.info.fof, check_id(item_id))).fetchone()
        return None if row is None else bytes(row[0])

    def __contains__(self, item_id: str | bytes) -> bool:
        return self.read(item_id) is not None

    def count(self) -> int:
        return self.system.q("SELECT count(*) FROM items WHERE fof=?", (self.info.fof,)).fetchone()[0]

    def ids(self) -> Iterator[bytes]:
        """Item-ids in group order, then the order they entered the group (an unsorted list)."""
        for (iid,) in self.system.q("SELECT id FROM items WHERE fof=? ORDER BY grp, rid", (self.info.fof,)):
            yield bytes(iid)

    def items(self, *, sort: bool = False, chunk: int = 1000) -> Iterator[tuple[bytes, bytes]]:
        """Stream (id, body) in group order (or id order), a chunk of rows at a time."""
        order = "id" if sort else "grp, rid"
        cur = self.system.q(f"SELECT id, body FROM items WHERE fof=? ORDER BY {order}", (self.info.fof,))
        while rows := cur.fetchmany(chunk):
            for iid, body in rows:
                yield bytes(iid), bytes(body)

    def groups(self) -> Iterator[tuple[int, bytes]]:
        for grp, iid in self.system.q("SELECT grp, id FROM items WHERE fof=? ORDER BY grp, rid", (self.info.fof,)):
            yield grp, bytes(iid)

    def clear(self) -> int:
        return self.system.clear_file(self.info)

    def digest(self) -> str:
        return file_digest(self.system, self.info.fof)


def file_digest(system: System, fof: int) -> str:
    """SHA-256 over (id, body) in id order: equal on two systems iff the contents are."""
    h = hashlib.sha256()
    cur = system.q("SELECT id, body FROM items WHERE fof=? ORDER BY id", (fof,))
    while rows := cur.fetchmany(1000):
        for iid, body in rows:
            h.update(len(iid).to_bytes(4, "big"))
            h.update(iid)
            h.update(len(body).to_bytes(4, "big"))
            h.update(body)
    return h.hexdigest()


def digests(system: System, *, include_control: bool = False) -> dict[str, str]:
    """Per-file digests keyed by ``account,file`` — what verification compares."""
    return {
        f.qualified: file_digest(system, f.fof)
        for f in system.files()
        if include_control or not f.is_control
    }
