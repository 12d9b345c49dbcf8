"""The records a save carries: accounts, file levels and items.

One definition for every layer: the store reads them from a snapshot and
loads them into a new database (:mod:`d3hb.store.dump`), the tape codec
(:mod:`d3hb.protocol.tape`) writes and reads them, and the tape operations
pass them from one to the other untouched.  The store is the lowest layer,
so they live here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Account:
    name: str
    code: str


@dataclass(frozen=True)
class File:
    """One file level: ``data_name`` None is the dictionary."""

    fof: int
    account: str
    dict_name: str
    data_name: str | None
    code: str
    modulo: int


@dataclass(frozen=True)
class Item:
    fof: int
    item_id: bytes
    body: bytes


SaveRecord = Account | File | Item
