"""Virtual volumes as file objects: a tape stream written to, or read from, a vault.

:class:`VolumeWriter` takes the bytes of any tape (save, account-save,
t-dump, transaction dump) and cuts them into volumes of at most the
vault's maximum volume size, always between two tape blocks, so each
volume can be audited on its own.  A volume is spooled to the source's disk
and then stored on the vault; a lost connection retries that volume (the
vault never keeps a half-received object).  Each stored volume enters the
volume history as *pending*; the set becomes *usable* in one transaction
when the tape is complete, so a save that fails half way never leaves a
usable volume behind.

:class:`VolumeSetReader` reads a volume set back as one stream, resuming a
volume at the byte it had reached when the connection breaks, and checks
every volume's size and SHA-256 against the volume history.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import struct
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from d3hb.errors import Refused, TapeError
from d3hb.protocol import tape
from d3hb.servers.vaultclient import LinkLost, VaultSession
from d3hb.store.system import System
from d3hb.store.vaultstore import ACTIVE, DELETED, PENDING, USABLE, Volume, VolumeHistory

logger = logging.getLogger(__name__)

SPOOL_DIR = "vault-spool"
RETRIES = 3
RETRY_WAIT = 0.5
_BLOCK_HEAD = struct.Struct(">2scIII")  # the tape codec's block header: magic, type, number, length, crc

SessionFactory = Callable[[], VaultSession]


@dataclass(frozen=True)
class Stored:
    volume: str
    size: int
    digest: str


class VolumeWriter:
    """A write-only binary stream whose bytes become volumes on the vault."""

    def __init__(self, system_dir: Path, vault: str, maxsize: int, connect: SessionFactory, *, retries: int = RETRIES) -> None:
        self.vault, self.maxsize, self.connect, self.retries = vault, maxsize, connect, retries
        self.system = System.open(system_dir)  # its own connection: a save holds a read snapshot on the caller's
        self.history = VolumeHistory(self.system)
        self.spool_dir = system_dir / SPOOL_DIR
        self.spool_dir.mkdir(mode=0o700, exist_ok=True)
        self.spool = tempfile.TemporaryFile(dir=self.spool_dir)  # noqa: SIM115 - closed in close/abort
        self._lock_fd: int | None = None
        self.session: VaultSession | None = None
        self.session = self._session()  # a wrong password or code fails before the save starts
        if self.session.mode != "rw":
            mode_note = self.session.note
            self.session.close()
            self.session = None
            raise Refused(f"vault {vault!r} opened a read-only session ({mode_note})",
                          f"if this system's database was restored: d3hb vault update {vault} forcesync=yes; an import definition (r cannot write")
        self.vset = ""
        self.kind = ""
        self.label_text = ""
        self.created = time.time()
        self.part = 0
        self.size = 0  # bytes in the spooled volume
        self.first_block = 0
        self.stored: list[Stored] = []
        self._head = bytearray()  # an incomplete block header
        self._left = tape.PROLOGUE_SIZE  # bytes of the current unit (prologue, then blocks) still to come
        self._label = tape.TapeReader()
        self.closed = False

    # -- the stream -------------------------------------------------------
    def writable(self) -> bool:
        return True

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data).cast("B")
        i = 0
        while i < len(view):
            if self._left == 0:
                need = _BLOCK_HEAD.size - len(self._head)
                self._head += view[i : i + need]
                i += min(need, len(view) - i)
                if len(self._head) < _BLOCK_HEAD.size:
                    break
                magic, _t, number, length, _crc = _BLOCK_HEAD.unpack(self._head)
                if magic != b"\xd3\x54":
                    raise TapeError("the stream written to the vault is not a d3hb tape", "write tapes to it with save, t-dump or txn-dump")
                unit = _BLOCK_HEAD.size + length
                if self.size and self.size + unit > self.maxsize:
                    self._ship()
                if self.size == 0:
                    self.first_block = number
                head, self._head = bytes(self._head), bytearray()
                self._spool(head)
                self._left = unit - len(head)
                continue
            take = min(self._left, len(view) - i)
            self._spool(view[i : i + take])
            self._left -= take
            i += take
        return len(view)

    def flush(self) -> None:
        return None

    def _spool(self, data: bytes | memoryview) -> None:
        self.spool.write(data)
        self.size += len(data)
        if not self.kind:
            with contextlib.suppress(Exception):  # a damaged label is the codec's to report, not ours
                self._label.feed(bytes(data))
            if self._label.label is not None:
                self.kind, self.label_text = self._label.label.kind, self._label.label.text

    # -- volumes ----------------------------------------------------------
    def _session(self) -> VaultSession:
        if self.session is None:
            self.session = self.connect()
        return self.session

    def _drop_session(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None

    def _ship(self) -> None:
        if not self.vset:
            self.vset = f"{self.kind or 'tape'}-{time.strftime('%Y%m%d%H%M%S', time.gmtime(self.created))}-{os.urandom(3).hex()}"
            # Held until the set is usable or gone: a pending set whose lock nobody holds was
            # left by a writer that died (kill -9, power cut), and expire may clear it.
            self._lock_fd = os.open(lock_path(self.spool_dir.parent, self.vset), os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        self.part += 1
        name = f"{self.vset}.{self.part:03d}"
        self.spool.flush()
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            self.spool.seek(0)
            try:
                sess = self._session()
                if attempt:
                    done = next((o for o in sess.list() if o["name"] == name), None)
                    if done is not None and done["status"] == ACTIVE and done["size"] == self.size:
                        size, digest = done["size"], done["digest"]  # stored; only the reply was lost
                        break
                size, digest = sess.put(name, self.spool, vset=self.vset, part=self.part, kind=self.kind, created=self.created)
                break
            except LinkLost as exc:
                last = exc
                self._drop_session()
                if attempt < self.retries:  # the admin sees the link flap; the last failure is the error itself
                    logger.warning("volume %s: attempt %d of %d failed (%s); retrying", name, attempt + 1, self.retries + 1, exc.what)
                    time.sleep(RETRY_WAIT * (attempt + 1))
        else:
            raise TapeError(f"volume {name} could not be stored after {self.retries + 1} attempts ({last.what if last else 'no answer'})",
                            "check the vault and the network, then run the operation again (nothing of it is usable)")
        self.history.add(Volume(name, self.vault, self.vset, self.part, self.kind, self.created, size, digest, PENDING, self.first_block, self.label_text))
        self.stored.append(Stored(name, size, digest))
        self.spool.seek(0)
        self.spool.truncate()
        self.size = 0

    def close(self) -> None:
        """The tape is complete: store the last volume, then make the whole set usable."""
        if self.closed:
            return
        try:
            if self.size or not self.stored:
                self._ship()
            self.history.complete_set(self.vset)
        except BaseException:
            self.abort()
            raise
        self._release()

    def abort(self) -> None:
        """The tape failed: nothing of it stays usable; the vault's copies are marked for deletion."""
        if self.closed:
            return
        names = [s.volume for s in self.stored]
        try:
            if names:
                with contextlib.suppress(Exception):  # best effort: reconcile finds what this could not do
                    self._session().mark(names, DELETED)
                self.history.delete(names)
        finally:
            self._release()

    def _release(self) -> None:
        self.closed = True
        self._drop_session()
        self.spool.close()
        self.system.close()
        if self._lock_fd is not None:
            lock_path(self.spool_dir.parent, self.vset).unlink(missing_ok=True)  # before unlocking: never seen free
            os.close(self._lock_fd)
            self._lock_fd = None


class VolumeSetReader:
    """A read-only binary stream: the volumes of one set, in order, as one tape."""

    def __init__(self, volumes: list[Volume], connect: SessionFactory, *, retries: int = RETRIES) -> None:
        if not volumes:
            raise TapeError("the volume set has no volumes", "list the volumes with 'vault volumes NAME'")
        self.volumes, self.connect, self.retries = volumes, connect, retries
        self.session: VaultSession | None = None
        self._chunks = self._stream()
        self._buf = b""

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buf += chunk
        if n < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def _stream(self) -> Iterator[bytes]:
        for v in self.volumes:
            yield from self._volume(v)

    def _volume(self, v: Volume) -> Iterator[bytes]:
        sha, got, failures = hashlib.sha256(), 0, 0
        while True:
            try:
                if self.session is None:
                    self.session = self.connect()
                for chunk in self.session.get(v.volume, got):
                    sha.update(chunk)
                    got += len(chunk)
                    yield chunk
                break
            except LinkLost as exc:
                failures += 1
                if self.session is not None:
                    self.session.close()
                    self.session = None
                if failures > self.retries:
                    raise TapeError(f"volume {v.volume} could not be read after {failures} attempts ({exc.what})",
                                    "check the vault and the network, then run the operation again") from None
                logger.warning("volume %s: reading broke at byte %d (%s); resuming", v.volume, got, exc.what)
                time.sleep(RETRY_WAIT * failures)
        if got != v.size or sha.hexdigest() != v.digest:
            raise TapeError(f"volume {v.volume} read back {got} bytes sha256 {sha.hexdigest()[:12]}, the volume history says {v.size} bytes {v.digest[:12]}",
                            f"audit it: d3hb vault audit {v.volume}")

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None


def lock_path(system_dir: Path, vset: str) -> Path:
    return Path(system_dir) / SPOOL_DIR / f"{vset}.lock"


def writer_alive(system_dir: Path, vset: str) -> bool:
    """Whether the writer of a pending set is still at work (it holds the set's lock)."""
    try:
        fd = os.open(lock_path(system_dir, vset), os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def abandoned_sets(system_dir: Path, volumes: list[Volume]) -> set[str]:
    """Sets with a pending volume whose writer died: never usable, cleared by expire."""
    return {s for s in {v.vset for v in volumes if v.status == PENDING} if not writer_alive(system_dir, s)}


def forget_set(system_dir: Path, vset: str) -> None:
    lock_path(system_dir, vset).unlink(missing_ok=True)


def usable_set(volumes: list[Volume], vset: str) -> list[Volume]:
    """The set's volumes in order, refusing a set that is incomplete or has an unavailable volume."""
    vols = sorted((v for v in volumes if v.vset == vset), key=lambda v: v.part)
    if not vols:
        raise TapeError(f"no volume set {vset!r}", "list them with 'vault volumes NAME'")
    bad = [v for v in vols if v.status != USABLE]
    if bad:
        raise Refused(f"volume {bad[0].volume} of set {vset!r} is {bad[0].status}",
                      "a pending set never completed; an unavailable volume needs 'vault audit VOLUME fix=yes' first")
    if [v.part for v in vols] != list(range(1, len(vols) + 1)):
        raise TapeError(f"volume set {vset!r} is missing parts (has {', '.join(str(v.part) for v in vols)})", "use another volume set")
    return vols


__all__ = ["VolumeWriter", "VolumeSetReader", "usable_set", "abandoned_sets", "writer_alive", "forget_set"]
