"""The source's housekeeping: expire, reconcile (volume history against archive objects) and audit.

:func:`reconcile` follows TSM's RECONCILE VOLUMES table row by row:

=====================  ===========================  ===============================================
source                 target                       fix=no / fix=yes
=====================  ===========================  ===============================================
volume exists          no object                    error / error, volume marked unavailable
volume exists          object marked for deletion   error / attributes match: object active again,
                                                    volume unavailable, audit recommended;
                                                    else volume unavailable
volume exists          active, attributes differ    error / volume unavailable, audit recommended
no volume              active object                error / object marked for deletion on the vault
no volume              object marked for deletion   nothing
=====================  ===========================  ===============================================

:func:`audit` reads a volume back and checks every tape block in it (magic,
CRC, consecutive numbers), then the volume's SHA-256 against the history.
"""

from __future__ import annotations

import hashlib
import struct
import time
from dataclasses import dataclass

from d3hb.errors import NotFound, Refused
from d3hb.ops.vault import Definitions, session
from d3hb.ops.vaultio import abandoned_sets, forget_set, writer_alive
from d3hb.protocol import tape
from d3hb.protocol.crc import crc32
from d3hb.store.system import System
from d3hb.store.vaultstore import ACTIVE, DELETED, PENDING, UNAVAILABLE, USABLE, Volume, VolumeHistory

NO_FILES = "volume exists, no files on the target"
MARKED = "volume exists, files marked for deletion"
DIFFER = "volume exists, active files with other attributes"
ORPHAN = "no volume, active files on the target"
ORPHAN_MARKED = "no volume, files marked for deletion"

_BLOCK = struct.Struct(">2scIII")


@dataclass(frozen=True)
class Finding:
    volume: str
    case: str
    error: bool
    action: str  # what fix=yes did (or would do)


def _attrs(o: dict) -> tuple:
    return (o["vset"], o["part"], o["kind"], o["size"], o["digest"])


def reconcile(system: System, name: str, *, fix: bool = False) -> list[Finding]:
    vdef = Definitions(system).get(name)
    hist = VolumeHistory(system)
    vols = {v.volume: v for v in hist.volumes(name)}
    out: list[Finding] = []
    with session(system, vdef) as s:
        if fix and s.mode != "rw":
            raise Refused(f"vault {name!r} opened a read-only session; reconcile fix=yes needs read/write", f"d3hb vault update {name} forcesync=yes, or reconcile fix=no")
        objs = {o["name"]: o for o in s.list()}
        unavailable: list[str] = []
        reactivate: list[str] = []
        for v in vols.values():
            o = objs.get(v.volume)
            if o is None:
                unavailable.append(v.volume)
                out.append(Finding(v.volume, NO_FILES, True, "volume marked unavailable"))
            elif o["status"] == DELETED:
                unavailable.append(v.volume)
                if _attrs(o) == v.attrs():
                    reactivate.append(v.volume)
                    out.append(Finding(v.volume, MARKED, True, f"files marked active again, volume marked unavailable; audit it: d3hb vault audit {v.volume}"))
                else:
                    out.append(Finding(v.volume, MARKED, True, "attributes differ: volume marked unavailable"))
            elif _attrs(o) != v.attrs():
                unavailable.append(v.volume)
                out.append(Finding(v.volume, DIFFER, True, f"volume marked unavailable; audit it: d3hb vault audit {v.volume}"))
        orphans = []
        for oname, o in objs.items():
            if oname in vols:
                continue
            if o["status"] == ACTIVE:
                orphans.append(oname)
                out.append(Finding(oname, ORPHAN, True, "files marked for deletion on the target"))
            else:
                out.append(Finding(oname, ORPHAN_MARKED, False, "none"))
        if fix:
            if reactivate:
                s.mark(reactivate, ACTIVE)
            if orphans:
                s.mark(orphans, DELETED)
            hist.set_status(unavailable, UNAVAILABLE)
    return out


@dataclass(frozen=True)
class AuditResult:
    volume: str
    blocks: int
    size: int
    damage: tuple[str, ...]
    status: str  # the volume's status after the audit

    @property
    def ok(self) -> bool:
        return not self.damage


def _check_blocks(data: bytes, first_block: int | None, with_prologue: bool) -> tuple[int, list[str]]:
    damage: list[str] = []
    pos, blocks, expect = 0, 0, first_block
    if with_prologue:
        if data[:8] != tape.TAPE_MAGIC:
            damage.append("the volume does not start with a tape prologue")
        pos = tape.PROLOGUE_SIZE
    while pos < len(data):
        if len(data) - pos < _BLOCK.size:
            damage.append(f"{len(data) - pos} stray bytes after the last block at offset {pos}")
            break
        magic, btype, number, length, crc = _BLOCK.unpack_from(data, pos)
        if magic != b"\xd3\x54":
            damage.append(f"no block header at offset {pos}; the rest of the volume cannot be checked")
            break
        end = pos + _BLOCK.size + length
        if end > len(data):
            damage.append(f"block {number} at offset {pos} is cut short ({len(data) - pos - _BLOCK.size} of {length} bytes)")
            break
        payload = data[pos + _BLOCK.size : end]
        if crc32(payload, crc32(struct.pack(">cII", btype, number, length))) != crc:
            damage.append(f"block {number} (offset {pos}) fails its checksum")
        if expect is None:
            expect = number  # an imported volume: its first number is not recorded
        if number != expect:
            damage.append(f"block {number} at offset {pos} where block {expect} belongs")
        blocks, expect, pos = blocks + 1, number + 1, end
    return blocks, damage


def audit(system: System, volume: str, *, vault: str | None = None, fix: bool = False) -> AuditResult:
    """Read ``volume`` back and check every block.  Damage marks it unavailable; a clean audit
    with ``fix`` makes an unavailable volume usable again."""
    hist = VolumeHistory(system)
    try:
        v: Volume | None = hist.get(volume)
    except NotFound:
        if vault is None:
            raise
        v = None
    name = vault or v.vault  # type: ignore[union-attr]
    vdef = Definitions(system).get(name)
    with session(system, vdef) as s:
        if v is None:  # an import: the vault's attributes stand in for the history
            o = next((o for o in s.list() if o["name"] == volume), None)
            if o is None:
                raise NotFound(f"volume {volume!r} is neither in the volume history nor on vault {name!r}", "list them: d3hb vault volumes NAME (t")
            v = Volume(o["name"], name, o["vset"], o["part"], o["kind"], o["created"], o["size"], o["digest"], USABLE)
        data = b"".join(s.get(volume))
    known = bool(hist.volumes(v.vault, v.vset))
    blocks, damage = _check_blocks(data, v.first_block if known else None, v.part == 1)
    digest = hashlib.sha256(data).hexdigest()
    if len(data) != v.size or digest != v.digest:
        damage.append(f"{len(data)} bytes sha256 {digest[:12]}, the volume history says {v.size} bytes {v.digest[:12]}")
    status = v.status
    if known:
        if damage:
            status = UNAVAILABLE
        elif fix and v.status == UNAVAILABLE:
            status = USABLE
        if status != v.status:
            hist.set_status([volume], status)
    return AuditResult(volume, blocks, len(data), tuple(damage), status)


def expire(system: System, name: str, now: float | None = None) -> list[str]:
    """Delete expired volume sets from the history and mark their objects for deletion on the vault.

    A set expires when older than the vault's ``retain``, or when it is a full
    save beyond the newest ``keepfull``; a set left pending by a writer that
    died goes at once (it can never become usable).  A set still being
    written is never touched.  The vault is told first: if it cannot be
    reached nothing changes here.
    """
    vdef = Definitions(system).get(name)
    now = time.time() if now is None else now
    hist = VolumeHistory(system)
    sets: dict[str, list[Volume]] = {}
    for v in hist.volumes(name):
        sets.setdefault(v.vset, []).append(v)
    doomed = abandoned_sets(system.path, hist.volumes(name))
    if vdef.retain is not None:
        doomed |= {s for s, vols in sets.items() if vols[0].created < now - vdef.retain}
    if vdef.keepfull is not None:
        full = sorted((s for s, vols in sets.items() if vols[0].kind == "save" and all(v.status == USABLE for v in vols)),
                      key=lambda s: sets[s][0].created, reverse=True)
        doomed |= set(full[vdef.keepfull :])
    doomed = {s for s in doomed if not (any(v.status == PENDING for v in sets[s]) and writer_alive(system.path, s))}
    names = [v.volume for s in sorted(doomed) for v in sets[s]]
    if names:
        dead = doomed & abandoned_sets(system.path, hist.volumes(name))
        with session(system, vdef) as s:
            if s.mode != "rw":
                raise Refused(f"vault {name!r} opened a read-only session; expiration needs read/write", f"d3hb vault update {name} forcesync=yes")
            # A writer that died may have stored a volume it never recorded: its set's name is its own.
            extra = [o["name"] for o in s.list() if dead and o["vset"] in dead and o["status"] == ACTIVE and o["name"] not in names] if dead else []
            s.mark(names + extra, DELETED)
        hist.delete(names)
        names += extra
    for s in doomed:
        forget_set(system.path, s)
    return names


def abandoned(system: System, name: str | None = None) -> set[str]:
    """Volume sets left pending by a writer that died."""
    return abandoned_sets(system.path, VolumeHistory(system).volumes(name))
