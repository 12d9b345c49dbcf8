"""Which group an item hashes to.

Stable across processes and releases (never Python's salted ``hash``).  As in
D3, a numeric item-id hashes to its own value, so sequential numeric ids fill
consecutive groups; any other id hashes by CRC-32 of its bytes.
"""

from __future__ import annotations

import zlib


def group(item_id: bytes, modulo: int) -> int:
    if item_id.isdigit() and len(item_id) <= 18:
        return int(item_id) % modulo
    return zlib.crc32(item_id) % modulo
