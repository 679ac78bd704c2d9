"""A deliberately non-conforming testee: it never rejects a bad CRC-32.

Before decoding it rewrites the checksum of every complete record, which is
what a decoder that skips checksum checks would see. The runner must fail it
on the checksum vectors (and pass it elsewhere); tests/test_conformance.py
checks exactly that, so the suite is known to catch a skipped check.
"""
from __future__ import annotations

import os
import struct
import sys
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testee_python import decode, parse_args  # noqa: E402  (same directory, run as a script)


def repair_checksums(data: bytes) -> bytes:
    """Recompute the CRC of the header and of every frame that framing alone can find."""
    out = bytearray(data)
    if len(out) < 12 or out[:4] != b"GSDH":
        return data
    n = 12 + struct.unpack_from("<I", out, 8)[0] + 4
    if n > len(out):
        return data
    struct.pack_into("<I", out, n - 4, zlib.crc32(out[:n - 4]))
    pos = n
    while pos + 12 <= len(out) and out[pos:pos + 4] == b"GSDF":
        n = struct.unpack_from("<I", out, pos + 4)[0]
        if n < 16 or pos + n > len(out):
            break
        struct.pack_into("<I", out, pos + n - 4, zlib.crc32(out[pos:pos + n - 4]))
        pos += n
    return bytes(out)


def main(argv=None) -> int:
    a, limits = parse_args(argv)
    with open(a.file, "rb") as f:
        decode(repair_checksums(f.read()), limits)
    return 0


if __name__ == "__main__":
    sys.exit(main())
