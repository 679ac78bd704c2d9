"""gsd-serve (reference_generator.server) with a progressive join's first_bytes / refine_bytes set, for
the viewer's progressive browser test: the command line of ``gsd-serve`` has no flags for them and the
reference sizes (1.5 MB / 1 MB) would send a small test world whole in its first keyframe.

    python tests/live/serve_progressive.py --first-bytes N --refine-bytes N [gsd-serve arguments ...]
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys

from reference_generator.server import parse_args, serve


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--first-bytes", type=int, required=True)
    ap.add_argument("--refine-bytes", type=int, required=True)
    own, rest = ap.parse_known_args(argv)
    cfg = dataclasses.replace(parse_args(rest), first_bytes=own.first_bytes, refine_bytes=own.refine_bytes)
    asyncio.run(serve(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
