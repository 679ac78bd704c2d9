"""A deliberately non-conforming testee: it never rejects a bad CRC-32.

Before decoding it rewrites the checksum of every complete record, which is
what a decoder that skips checksum checks would see. The runner must fail it
on the checksum vectors (and pass it elsewhere); tests/test_conformance.py
checks exactly that, so the suite is known to catch a skipped check.
"""
from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]   # run as a script: testee_python and the conformance package
from testee_python import decode, parse_args  # noqa: E402

from conformance.craft import fix_crcs  # noqa: E402  (the checksum of every record framing alone can find)


def main(argv=None) -> int:
    a, limits = parse_args(argv)
    with open(a.file, "rb") as f:
        decode(fix_crcs(f.read()), limits)
    return 0


if __name__ == "__main__":
    sys.exit(main())
