"""Conformance testee for the Python reference codec: `python conformance/testee_python.py decode FILE [--limit N=V]`.

Just another client of the public codec API (Decoder, Limits, GsdError); the
protocol is in conformance/README.md.
"""
from __future__ import annotations

import argparse
import sys

from codec import Decoder, GsdError, Limits


def decode(data: bytes, limits: Limits, out=None) -> None:
    """Print one protocol line per record (to ``out``, default stdout), stopping at the first error."""
    out = out or sys.stdout
    dec = Decoder(limits=limits)
    try:
        pos = dec.set_header(data)
    except GsdError as e:
        print(f"header error {e.code.name}", file=out)
        return
    print("header ok", file=out)
    mv = memoryview(data)
    k = 0
    while pos < len(data):
        try:
            _, used = dec.read_frame(mv[pos:])
        except GsdError as e:
            print(f"frame {k} error {e.code.name}", file=out)
            return
        print(f"frame {k} ok {dec.state.digest()}", file=out)
        pos += used
        k += 1


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("command", choices=["decode"])
    ap.add_argument("file")
    ap.add_argument("--limit", action="append", default=[], metavar="NAME=VALUE")
    a = ap.parse_args(argv)
    # the runner never sends a value above the spec default; one is treated as the default (SPEC.md 9.1)
    limits = Limits.lowered(**{k: int(v) for k, v in (x.split("=", 1) for x in a.limit)})
    return a, limits


def main(argv=None) -> int:
    a, limits = parse_args(argv)
    with open(a.file, "rb") as f:
        decode(f.read(), limits)
    return 0


if __name__ == "__main__":
    sys.exit(main())
