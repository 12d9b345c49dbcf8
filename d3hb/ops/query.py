"""list / sort / count: a small AQL (D3's English) over one file, pure over the store.

``list invoices with a1 = "x" and with a2 > "10" by a1 a1 a2`` is parsed into
a :class:`Query` (no I/O), then :func:`run` yields :class:`Row` objects from an
open :class:`~d3hb.store.System`.  Nothing is printed here: the TCL verbs
format the rows, and a later comparison of the same report on two systems
reuses :func:`run` and compares the rows.

The subset, and how D3 reads it:

- attributes are named ``aN`` (attribute N; ``a0`` is the item-id) or by an
  attribute-defining item in the file's dictionary (attribute 1 ``A`` or
  ``S``, attribute 2 the attribute number);
- ``with ATTR OP "value"``, ``with ATTR`` (not empty), ``with no ATTR``;
  OP is ``= # <> < > <= >=`` or ``eq ne lt gt le ge``; a value ``abc]``
  matches what starts with abc, ``[abc`` what ends with it;
- a condition holds when any value of a multivalued attribute satisfies it
  (D3's rule); both sides numeric compare as numbers, else as bytes;
- ``and`` binds tighter than ``or``; clauses without a connective are and-ed;
- ``by ATTR`` / ``by-dsnd ATTR`` sort (``sort`` without ``by`` sorts by id;
  ``list`` keeps group order, the order of an unsorted D3 list);
- other attribute names are output columns; any other word before the first
  ``with`` or ``by`` is an explicit item-id.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from d3hb.errors import UsageError
from d3hb.store.marks import AM_B, SVM_B, VM_B

if TYPE_CHECKING:
    from d3hb.store.files import File

_OPS = {"=": "eq", "eq": "eq", "#": "ne", "<>": "ne", "ne": "ne", "<": "lt", "lt": "lt",
        ">": "gt", "gt": "gt", "<=": "le", "le": "le", ">=": "ge", "ge": "ge"}
_ATTR = re.compile(r"^a(\d{1,4})$", re.IGNORECASE)
_NUMBER = re.compile(rb"^[+-]?(\d+\.?\d*|\.\d+)$")


@dataclass(frozen=True)
class Condition:
    attr: int
    op: str  # eq ne lt gt le ge, or "any" (with ATTR: not empty)
    value: bytes = b""
    negate: bool = False  # with no ATTR


@dataclass(frozen=True)
class Query:
    file_ref: str
    ids: tuple[bytes, ...] = ()
    # An OR of AND-groups: ((c1, c2), (c3,)) means (c1 and c2) or c3.
    where: tuple[tuple[Condition, ...], ...] = ()
    by: tuple[tuple[int, bool], ...] = ()  # (attribute, descending)
    columns: tuple[int, ...] = ()
    sort: bool = False


@dataclass(frozen=True)
class Row:
    id: bytes
    values: tuple[bytes, ...]  # one per column, marks as stored


def parse(words: Iterable[str], *, sort: bool = False, dictionary: dict[str, int] | None = None) -> Query:
    """Words after the verb -> Query.  ``dictionary`` maps names to attribute numbers."""
    names = {k.lower(): v for k, v in (dictionary or {}).items()}
    toks = list(words)
    if not toks:
        raise UsageError("missing file name", "give the file to list, e.g. 'list invoices'")
    ref, i = toks[0], 1
    if ref.lower() in ("dict", "data") and len(toks) > 1:
        ref, i = f"{ref} {toks[1]}", 2

    def attr_of(word: str) -> int | None:
        m = _ATTR.match(word)
        if m:
            return int(m.group(1))
        return names.get(word.lower())

    def need_attr(k: int, after: str) -> int:
        if k >= len(toks):
            raise UsageError(f"'{after}' needs an attribute name", "e.g. 'with a1 = \"x\"' or 'by a2'")
        n = attr_of(toks[k])
        if n is None:
            raise UsageError(f"unknown attribute {toks[k]!r} after '{after}'", "name attributes a1, a2 ... or by a dictionary item")
        return n

    ids: list[bytes] = []
    groups: list[list[Condition]] = []
    by: list[tuple[int, bool]] = []
    columns: list[int] = []
    seen_clause = False
    pending_or = False
    while i < len(toks):
        word = toks[i]
        low = word.lower()
        if low in ("with", "if"):
            seen_clause = True
            i += 1
            negate = False
            if i < len(toks) and toks[i].lower() in ("no", "not"):
                negate, i = True, i + 1
            attr = need_attr(i, word)
            i += 1
            if i < len(toks) and toks[i].lower() in _OPS:
                op = _OPS[toks[i].lower()]
                if i + 1 >= len(toks):
                    raise UsageError(f"'{toks[i]}' needs a value", "quote it: with a1 = \"x\"")
                cond = Condition(attr, op, os.fsencode(toks[i + 1]), negate)
                i += 2
            else:
                cond = Condition(attr, "any", b"", negate)
            if pending_or or not groups:
                groups.append([cond])
            else:
                groups[-1].append(cond)
            pending_or = False
        elif low == "and":
            i += 1
        elif low == "or":
            pending_or, i = True, i + 1
        elif low in ("by", "by-dsnd"):
            seen_clause = True
            by.append((need_attr(i + 1, word), low == "by-dsnd"))
            i += 2
        elif attr_of(word) is not None:
            columns.append(attr_of(word))  # type: ignore[arg-type]
            i += 1
        elif not seen_clause:
            ids.append(os.fsencode(word))
            i += 1
        else:
            raise UsageError(f"unexpected word {word!r} in the selection", "use with/and/or/by, attribute names a1 a2 ..., or quote values")
    return Query(ref, tuple(ids), tuple(tuple(g) for g in groups), tuple(by), tuple(columns), sort)


def attribute(body: bytes, item_id: bytes, n: int) -> bytes:
    if n == 0:
        return item_id
    parts = body.split(AM_B) if body else []
    return parts[n - 1] if n <= len(parts) else b""


def _number(v: bytes) -> float | None:
    return float(v) if _NUMBER.match(v.strip()) else None


def _compare(value: bytes, op: str, want: bytes) -> bool:
    if op == "eq" and want.endswith(b"]") and not want.startswith(b"["):
        return value.startswith(want[:-1])
    if op == "eq" and want.startswith(b"[") and not want.endswith(b"]"):
        return value.endswith(want[1:])
    if op == "eq" and want.startswith(b"[") and want.endswith(b"]") and len(want) > 1:
        return want[1:-1] in value
    a, b = _number(value), _number(want)
    left, right = (a, b) if a is not None and b is not None else (value, want)
    return {
        "eq": left == right, "ne": left != right, "lt": left < right,  # type: ignore[operator]
        "gt": left > right, "le": left <= right, "ge": left >= right,  # type: ignore[operator]
    }[op]


def holds(cond: Condition, item_id: bytes, body: bytes) -> bool:
    raw = attribute(body, item_id, cond.attr)
    values = [s for v in raw.split(VM_B) for s in v.split(SVM_B)]
    if cond.op == "any":
        result = any(values)
    else:
        # "ne" is D3's "no value equals": the negation of "eq" over the values.
        result = not any(_compare(v, "eq", cond.value) for v in values) if cond.op == "ne" else any(_compare(v, cond.op, cond.value) for v in values)
    return result != cond.negate


def matches(q: Query, item_id: bytes, body: bytes) -> bool:
    if not q.where:
        return True
    return any(all(holds(c, item_id, body) for c in group) for group in q.where)


def _sort_key(q: Query, item_id: bytes, body: bytes) -> tuple:
    key = []
    for attr, _desc in q.by:
        v = attribute(body, item_id, attr)
        n = _number(v)
        key.append((0, n, b"") if n is not None else (1, 0.0, v))
    return tuple(key)


def select(f: File, q: Query) -> Iterator[tuple[bytes, bytes]]:
    """(id, body) of the items that qualify, in the order the query asks for."""
    if q.ids:
        source: Iterable[tuple[bytes, bytes]] = ((i, b) for i in q.ids if (b := f.read(i)) is not None)
    else:
        source = f.items(sort=q.sort and not q.by)
    picked = (ib for ib in source if matches(q, *ib))
    if not q.by:
        if q.ids and q.sort:
            yield from sorted(picked)
        else:
            yield from picked  # streamed: an unsorted list of a big file stays small in memory
        return
    rows = list(picked)
    rows.sort(key=lambda ib: ib[0])
    # Stable sorts from the last key to the first give each key its own direction.
    for n in range(len(q.by) - 1, -1, -1):
        desc = q.by[n][1]
        rows.sort(key=lambda ib, n=n: _sort_key(q, *ib)[n], reverse=desc)
    yield from rows


def run(f: File, q: Query) -> Iterator[Row]:
    """The report's rows: the id and the requested columns (the by-attributes when none)."""
    columns = q.columns or tuple(a for a, _ in q.by if a)
    for item_id, body in select(f, q):
        yield Row(item_id, tuple(attribute(body, item_id, c) for c in columns))


def count(f: File, q: Query) -> int:
    return sum(1 for _ in select(f, q))


def dictionary_attributes(f: File | None) -> dict[str, int]:
    """Attribute-defining items of a dictionary: name -> attribute number."""
    found: dict[str, int] = {}
    if f is None:
        return found
    for item_id, body in f.items():
        parts = body.split(AM_B)
        if len(parts) >= 2 and parts[0][:1].upper() in (b"A", b"S") and parts[1].strip().isdigit():
            found[item_id.decode("latin-1")] = int(parts[1])
    return found
