"""The CRC-32 of frames and tapes is zlib's whatever implementation computes it."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from d3hb.protocol import crc


@given(st.binary(max_size=4096), st.integers(min_value=0, max_value=2**32 - 1))
def test_same_checksum_as_zlib(data: bytes, start: int) -> None:
    assert crc.crc32(data) == zlib.crc32(data)
    assert crc.crc32(data, start) == zlib.crc32(data, start)


def test_which_implementation_is_used_is_visible() -> None:
    isal = pytest.importorskip("isal.isal_zlib", reason="the optional isal package (pip install '.[fast]') is not installed")
    assert crc.crc32 is isal.crc32
