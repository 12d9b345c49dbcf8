"""D3's eight rules deciding whether an update is logged (queued for replication).

Verbatim order from the txlog reference:
1. global logging off -> no; 2. local logging off -> no;
3. the dictionary code contains X or Y -> no; 4. contains T -> no;
5. the item updated is not a D-pointer -> go to 7;
6. a D-pointer containing L -> log, else go to 8;
7. the dictionary code contains L -> log, else go on;
8. logging ALL files -> log, else no.
"The decision to log a D-pointer is based on the flags in the D-pointer
itself, not those of the D-pointer of the file in which it resides" — rule 6;
rules 3 and 4 look at the code of the file holding the item.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    log: bool
    rule: int  # which rule decided: 1..8

    def __bool__(self) -> bool:
        return self.log


def decide(
    *,
    global_on: bool,
    local_on: bool,
    file_code: str,
    is_dptr: bool,
    dptr_code: str = "",
    log_all: bool = False,
) -> Decision:
    flags = set(file_code.upper()[1:])
    if not global_on:
        return Decision(False, 1)
    if not local_on:
        return Decision(False, 2)
    if flags & {"X", "Y"}:
        return Decision(False, 3)
    if "T" in flags:
        return Decision(False, 4)
    if is_dptr:
        if "L" in dptr_code.upper()[1:]:
            return Decision(True, 6)
    elif "L" in flags:
        return Decision(True, 7)
    return Decision(log_all, 8)
