"""CRC-32 (the zlib polynomial) for frames and tape blocks, as fast as this host allows.

ISA-L (the optional ``isal`` package) computes the very same checksum about
four times faster than zlib with the CPU's carry-less multiply; a tape link
moving hundreds of MB/s spends most of its own CPU here.  Without it, zlib's.
Either way the bytes on the wire and on tape are the same.
"""

from __future__ import annotations

try:
    from isal.isal_zlib import crc32
except ImportError:  # pragma: no cover - depends on what is installed
    from zlib import crc32

__all__ = ["crc32"]
