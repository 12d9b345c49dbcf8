"""A tape device of type vault (``set-device N NAME v``): the tape commands read and write virtual volumes.

The device's path is the vault's name as defined on this system, or
``NAME:VOLUMESET`` to read one set.  Writing cuts the tape into volumes
(:class:`~d3hb.ops.vaultio.VolumeWriter`); reading without a set reads the
newest usable one of the kinds the command reads (a restore takes the last
full save even when a t-dump came after it).  Each opening
uses its own connection to the system's database and lets it go before the
tape operation runs, so a full restore can swap the database underneath.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from d3hb.errors import UsageError
from d3hb.ops import vault as ov
from d3hb.ops.vaultio import VolumeSetReader, VolumeWriter
from d3hb.store.system import NAME_RE, System


def parse(spec: str) -> tuple[str, str | None]:
    name, _, vset = spec.partition(":")
    if not NAME_RE.match(name) or (vset and not NAME_RE.match(vset)):
        raise UsageError(f"vault device {spec!r} is not NAME or NAME:VOLUMESET", "set-device N offsite v (a vault defined with 'vault define')")
    return name, vset or None


@contextlib.contextmanager
def writer(system_dir: Path | str, spec: str) -> Iterator[VolumeWriter]:
    name, vset = parse(spec)
    if vset:
        raise UsageError(f"vault device {spec!r} names a volume set; a new tape is a new set", f"write to a device whose path is the vault's name: set-device N {name} v")
    with System.open(system_dir) as s, ov.open_vault_writer(s, name) as w:
        yield w


@contextlib.contextmanager
def reader(system_dir: Path | str, spec: str, kinds: tuple[str, ...] = ()) -> Iterator[VolumeSetReader]:
    name, vset = parse(spec)
    with System.open(system_dir) as s:
        r = ov.set_reader(s, name, vset, kinds)
    try:
        yield r
    finally:
        r.close()


def size(system_dir: Path | str, spec: str, kinds: tuple[str, ...] = ()) -> int | None:
    """Bytes in the set a read would get (for progress), None when not known here."""
    name, vset = parse(spec)
    with System.open(system_dir) as s:
        with contextlib.suppress(Exception):  # no set yet: the read itself says so
            return ov.total_size(s, name, vset or ov.latest_set(s, name, kinds))
    return None
