"""python -m conformance run --impl "CMD" [--json] [--filter PATTERN] [--vectors DIR] [--timeout S] [--jobs N]"""
from __future__ import annotations

import argparse
import sys

from . import runner


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m conformance",
                                 description="GSD conformance suite: run an implementation over the test vectors")
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run a testee over the vectors (protocol: conformance/README.md)")
    r.add_argument("--impl", required=True, help='testee command line, e.g. "python conformance/testee_python.py"')
    r.add_argument("--json", action="store_true", help="print machine-readable results instead of the table")
    r.add_argument("--filter", metavar="PATTERN", help="only vectors whose id matches this regular expression")
    r.add_argument("--vectors", default=runner.DEFAULT_VECTORS, help="vector directory (with manifest.json)")
    r.add_argument("--timeout", type=float, default=10.0, help="seconds per vector before it counts as a hang")
    r.add_argument("--jobs", type=int, default=None, help="testee processes in parallel (default: CPU count)")
    sub.add_parser("generate", help="rebuild the vectors (same as python -m conformance.generate)")
    args, rest = ap.parse_known_args(argv)
    if args.command == "generate":
        from .generate import main as gen_main
        return gen_main(rest)
    if rest:
        ap.error(f"unrecognized arguments: {' '.join(rest)}")
    return runner.main(args)


if __name__ == "__main__":
    sys.exit(main())
