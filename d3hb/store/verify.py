"""Verification digests: both systems digest the same files at the same transaction number.

The master writes a verify marker (``Kind.VERIFY``) into its queue and, in
the same SQLite transaction, digests every replicated file; the marker's
body names those files.  The slave, when it applies the marker, digests the
same files inside the batch's transaction.  Both results are kept in a
``verify_digests`` table, so they describe exactly the database as of that
number on each side, whatever was written before or after.

The marker also carries the master's whole-file digests, so the slave
judges each marker by itself (:class:`Verdict`, kept in ``meta``): a
periodic verify across hosts raises an incident on the slave without
either side opening the other's database.

Per file: a SHA-256 over (id, body) in id order (:func:`d3hb.store.files.file_digest`'s
form) and a compact list of per-item hashes, so a difference can be named
by item id.  Pure store code, no I/O beyond SQLite.
"""

from __future__ import annotations

import hashlib
import json
import struct
import time
from dataclasses import dataclass

from d3hb.store import control
from d3hb.store.system import FileInfo, System, parse_ref
from d3hb.store.txn import Kind, Transaction

TABLE = """CREATE TABLE IF NOT EXISTS verify_digests(
    tno    INTEGER NOT NULL,
    file   TEXT NOT NULL,
    digest TEXT NOT NULL,
    items  BLOB NOT NULL,
    at     REAL NOT NULL,
    PRIMARY KEY(tno, file)
)"""
MISSING = "missing"
VERDICT_META = "hb.verify.verdict"
KEEP = 10  # verifications kept on each side; a periodic verify must not fill the disk
_ITEM_HASH = 16
_LEN = struct.Struct(">H")


@dataclass(frozen=True)
class FileDigest:
    file: str  # account,file as both sides name it
    digest: str  # MISSING when the file is not on this system
    items: dict[bytes, bytes]  # id -> hash of the body


@dataclass(frozen=True)
class Difference:
    file: str
    item: bytes | None  # None: the file as a whole (missing on one side)
    what: str  # "differs", "only on master", "only on slave", "file missing on slave", ...

    def line(self) -> str:
        if self.item is None:
            return f"{self.file}: {self.what}"
        return f"{self.file} item {self.item.decode('latin-1')!r}: {self.what}"


def replicated_files(system: System) -> list[FileInfo]:
    """What verification covers: logged (L) files outside the dm control files."""
    return [f for f in system.files() if "L" in f.code[1:] and not f.is_control]


def _name(f: FileInfo) -> str:
    return f"{f.account},{f.ref}"


def _is_control(name: str) -> bool:
    account, ref = name.split(",", 1)
    return control.is_control(account, parse_ref(ref)[0])


def _find(system: System, name: str) -> FileInfo | None:
    account, ref = name.split(",", 1)
    dict_name, data_name = parse_ref(ref)
    return system.find_file(account, dict_name, data_name)


def digest_file(system: System, f: FileInfo | None, name: str) -> FileDigest:
    if f is None:
        return FileDigest(name, MISSING, {})
    whole = hashlib.sha256()
    items: dict[bytes, bytes] = {}
    cur = system.conn.execute("SELECT id, body FROM items WHERE fof=? ORDER BY id", (f.fof,))
    while rows := cur.fetchmany(1000):
        for iid, body in rows:
            iid, body = bytes(iid), bytes(body)
            whole.update(len(iid).to_bytes(4, "big") + iid + len(body).to_bytes(4, "big") + body)
            items[iid] = hashlib.blake2b(body, digest_size=_ITEM_HASH).digest()
    return FileDigest(name, whole.hexdigest(), items)


def _pack(items: dict[bytes, bytes]) -> bytes:
    return b"".join(_LEN.pack(len(i)) + i + h for i, h in sorted(items.items()))


def _unpack(blob: bytes) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(blob):
        (n,) = _LEN.unpack_from(blob, pos)
        pos += _LEN.size
        iid = blob[pos : pos + n]
        pos += n
        out[iid] = blob[pos : pos + _ITEM_HASH]
        pos += _ITEM_HASH
    return out


def _store(system: System, tno: int, digests: list[FileDigest]) -> None:
    system.q(TABLE)
    now = time.time()
    system.conn.executemany(
        "INSERT OR REPLACE INTO verify_digests(tno, file, digest, items, at) VALUES(?,?,?,?,?)",
        [(tno, d.file, d.digest, _pack(d.items), now) for d in digests],
    )


def write_marker(system: System, note: str = "", keep: int = KEEP) -> int:
    """Master side: queue a verify marker and digest, in one transaction; returns its number.

    The marker carries each file's whole digest, so the slave can judge by
    itself (a periodic verify across hosts); the per-item hashes stay here
    for ``verify`` to name the items.
    """
    with system.transaction():
        names = [_name(f) for f in replicated_files(system)]
        # The number is only known once queued, and the body is part of the queued row: digest first.
        mine = [digest_file(system, _find(system, n), n) for n in names]
        body = json.dumps({"files": names, "digests": {d.file: d.digest for d in mine}, "note": note,
                           "at": time.time()}).encode()
        tno = system.enqueue(Kind.VERIFY, 0, "", "", None, body=body)
        _store(system, tno, mine)
        prune(system, keep)
    return tno


@dataclass(frozen=True)
class Verdict:
    """The slave's own judgement of a marker: the files whose digest differs from the master's."""

    tno: int
    differs: tuple[str, ...]
    checked: int  # files whose master digest the marker carried

    def line(self) -> str:
        if not self.differs:
            return f"verify marker {self.tno}: {self.checked} files agree with the master"
        return (f"verify marker {self.tno}: {len(self.differs)} of {self.checked} files differ from the master: "
                f"{', '.join(self.differs[:10])}{' ...' if len(self.differs) > 10 else ''}; "
                f"run 'd3hb hot-backup verify' on the master for the items")


def record_marker(system: System, t: Transaction, keep: int = KEEP) -> Verdict:
    """Slave side, inside the batch's transaction: digest the files the marker names, judge them."""
    try:
        doc = json.loads(t.body.decode())
        names, theirs = list(doc.get("files", [])), dict(doc.get("digests", {}))
    except (ValueError, UnicodeDecodeError, AttributeError, TypeError):
        names, theirs = [], {}  # a marker this release cannot read: digest what is replicated here
    if not names:
        names = [_name(f) for f in replicated_files(system)]
    names = [n for n in names if isinstance(n, str) and "," in n and not _is_control(n)]
    with system.transaction():
        mine = [digest_file(system, _find(system, n), n) for n in names]
        _store(system, t.tno, mine)
        checked = [d for d in mine if d.file in theirs]
        verdict = Verdict(t.tno, tuple(d.file for d in checked if d.digest != theirs[d.file]), len(checked))
        system.set_meta(VERDICT_META, json.dumps({"tno": verdict.tno, "differs": list(verdict.differs),
                                                  "checked": verdict.checked}))
        prune(system, keep)
    return verdict


def last_verdict(system: System) -> Verdict | None:
    """The judgement of the last verify marker this system applied (None: none yet)."""
    raw = system.meta(VERDICT_META)
    if not raw:
        return None
    doc = json.loads(raw)
    return Verdict(int(doc["tno"]), tuple(doc.get("differs", ())), int(doc.get("checked", 0)))


def load(system: System, tno: int) -> dict[str, FileDigest] | None:
    """The digests this system recorded at ``tno`` (None: it has not reached it)."""
    system.q(TABLE)
    rows = system.q("SELECT file, digest, items FROM verify_digests WHERE tno=?", (tno,)).fetchall()
    if not rows:
        return None
    return {f: FileDigest(f, d, _unpack(bytes(b))) for f, d, b in rows}


def compare(master: dict[str, FileDigest], slave: dict[str, FileDigest]) -> list[Difference]:
    """Every difference, per file and item id; empty when both sides agree."""
    out: list[Difference] = []
    for name in sorted(master.keys() | slave.keys()):
        m, s = master.get(name), slave.get(name)
        if m is None or s is None:
            out.append(Difference(name, None, "not digested on the " + ("master" if m is None else "slave")))
            continue
        if m.digest == s.digest:
            continue
        if m.digest == MISSING or s.digest == MISSING:
            out.append(Difference(name, None, "file missing on the " + ("master" if m.digest == MISSING else "slave")))
            continue
        for iid in sorted(m.items.keys() | s.items.keys()):
            a, b = m.items.get(iid), s.items.get(iid)
            if a == b:
                continue
            what = "only on the master" if b is None else "only on the slave" if a is None else "differs"
            out.append(Difference(name, iid, what))
    return out


def prune(system: System, keep: int = 10) -> int:
    """Forget all but the newest ``keep`` verifications."""
    with system.transaction():
        system.q(TABLE)
        return system.q(
            "DELETE FROM verify_digests WHERE tno NOT IN (SELECT DISTINCT tno FROM verify_digests ORDER BY tno DESC LIMIT ?)",
            (keep,),
        ).rowcount
