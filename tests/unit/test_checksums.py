"""stream_ingest/checksums.py: the parts' CRC32 is S3's CRC32 (zlib's), whatever the
buffer it is computed over."""

from __future__ import annotations

import base64
import os
import zlib

import pytest

from stream_ingest.checksums import crc32_b64


def _zlib_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


@pytest.mark.parametrize("size", [0, 1, 15, 64, 4097, 5 * 1024 * 1024 + 3])
def test_crc32_is_zlibs_for_every_buffer_type(size: int) -> None:
    data = os.urandom(size)
    expected = _zlib_b64(data)
    assert crc32_b64(data) == expected
    assert crc32_b64(bytearray(data)) == expected
    assert crc32_b64(memoryview(bytearray(b"x" + data))[1:]) == expected


def test_known_value() -> None:
    # The CRC-32 check value of the catalogue (IEEE 802.3): 0xCBF43926.
    assert crc32_b64(b"123456789") == base64.b64encode(bytes.fromhex("cbf43926")).decode()
