"""``python -m reference_generator.warmup``: compile the world's and the server's loops once.

The codec's own loops are compiled by ``python -m codec.warmup``; this does the same for what sits
on top of it: a small reference world steps, a plain client and a progressive one with a detail
budget join it (stand-in cuts, refinement), so that numba's disk cache holds their machine code and
the first progressive joiner of a fresh install does not wait for the compiler. scripts/setup.sh
runs it after the codec's warm-up.
"""
from __future__ import annotations

from codec import jit
from codec.warmup import run

from .actions import Move, Turn
from .world import WorldConfig
from .worldhost import WorldCore


def warm_up() -> None:
    jit.switch_on()
    core = WorldCore(WorldConfig(target_live=3000, view_radius=32, prefetch_margin=0), 1, "cpu")
    try:
        core.attach(1, 1 << 24)
        core.attach(2, 1 << 24, {"budget": 1000, "first_bytes": 8000, "refine_bytes": 6000})
        for link in (1, 2):
            core.take(link, wait=True)
        for step in range(6):
            core.step(Turn(5.0) if step % 2 else Move(0.5), [], (1, 2))
    finally:
        core.close()


def main() -> int:
    return run("reference_generator", warm_up)


if __name__ == "__main__":
    raise SystemExit(main())
