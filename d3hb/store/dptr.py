"""D-pointer codes: ``D`` plus flag letters, and D3's combination rules.

``DL`` logged (replicated), ``DX`` neither saved nor logged, ``DY`` structure
saved but not contents and not logged, ``DT`` not logged.  D3 also knows
``F P N U S Q``; we keep them as flags so set-dptr round-trips them.
"""

from __future__ import annotations

from dataclasses import dataclass

from d3hb.errors import UsageError

FLAGS = "LXYTFPNUSQ"
# Canonical order so "DLX" and "DXL" compare equal and display the same.
_ORDER = {c: i for i, c in enumerate(FLAGS)}


def parse(code: str) -> str:
    """Validate and normalise a code such as ``dl`` -> ``DL``."""
    up = code.strip().upper()
    if not up.startswith("D"):
        raise UsageError(f"D-pointer code {code!r} does not start with D", "codes are D, DL, DX, DY, DT ...")
    flags = up[1:]
    bad = sorted(set(flags) - set(FLAGS))
    if bad:
        raise UsageError(f"unknown D-pointer flag {''.join(bad)!r} in {code!r}", f"flags are {', '.join(FLAGS)}")
    result = "D" + "".join(sorted(set(flags), key=_ORDER.__getitem__))
    check(result)
    return result


def check(code: str) -> None:
    flags = set(code[1:])
    if "L" in flags and flags & {"X", "Y"}:
        raise UsageError(f"D-pointer code {code} combines L with X or Y", "a logged file cannot be DX or DY")
    if "L" in flags and "T" in flags:
        raise UsageError(f"D-pointer code {code} combines L with T", "L and T are exclusive")
    if {"N", "U"} <= flags:
        raise UsageError(f"D-pointer code {code} combines N and U", "N and U are exclusive")


@dataclass(frozen=True)
class Change:
    """A set-dptr argument such as ``+l``, ``-x`` or ``+xy``."""

    add: frozenset[str]
    remove: frozenset[str]

    @property
    def empty(self) -> bool:
        return not self.add and not self.remove


def parse_change(spec: str) -> Change:
    add: set[str] = set()
    remove: set[str] = set()
    target = add
    for ch in spec.upper():
        if ch == "+":
            target = add
        elif ch == "-":
            target = remove
        elif ch in FLAGS:
            target.add(ch)
        else:
            raise UsageError(f"unknown set-dptr type {ch.lower()!r} in {spec!r}", f"types are {FLAGS.lower()}")
    if "N" in add and "U" in add:
        raise UsageError("the n and u types are mutually exclusive", "set one of them")
    if "L" in add and add & {"X", "Y", "T"}:
        raise UsageError("the l type cannot be set with x, y or t", "set l alone")
    return Change(frozenset(add), frozenset(remove))


def apply_change(code: str, change: Change) -> str:
    """New code after ``change``; raises UsageError when D3 would leave the file unaltered.

    As D3: setting l on a DX/DY file, or x/y on a DL file, is refused rather
    than silently dropping the other flag.
    """
    flags = set(code[1:])
    flags -= change.remove
    if "L" in change.add and flags & {"X", "Y", "T"}:
        raise UsageError(f"cannot set l on a {code} file", "remove x, y or t first")
    if change.add & {"X", "Y", "T"} and "L" in flags:
        raise UsageError(f"cannot set {''.join(sorted(change.add & {'X', 'Y', 'T'})).lower()} on a {code} file", "remove l first")
    if "N" in change.add:
        flags.discard("U")
    if "U" in change.add:
        flags.discard("N")
    flags |= change.add
    return parse("D" + "".join(flags))


def saved(code: str) -> bool:
    """Whether a save writes the file at all (DX is not saved)."""
    return "X" not in code


def contents_saved(code: str) -> bool:
    """Whether a save writes the items (DY saves the structure only)."""
    return "X" not in code and "Y" not in code
