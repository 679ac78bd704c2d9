"""``python -m codec.warmup``: compile the codec's loops once, so no later process pays for it.

Runs a small stream of each profile and SH degree (keyframe, mixed delta, compose, decode; a
progressive keyframe) with the JIT on; numba writes the machine code to its disk cache next to each
module. scripts/setup.sh runs it after installing.
"""
from __future__ import annotations

import time

import numpy as np

from . import jit, synthetic
from .attributes import Attr
from .compose import compose
from .decoder import Decoder
from .encoder import Encoder
from .profile import PRESETS, Profile
from .progressive import progressive_keyframe
from .screen import Camera, look_at, pinhole
from .spatial import Grid


def warm_up() -> None:
    jit.switch_on()
    for name in PRESETS:
        for degree in range(4):
            g = synthetic.synthetic_scene(3000, degree, seed=degree)
            enc = Encoder(Profile.preset(name, degree, Grid.fit(g.positions)))
            dec = Decoder(enc.header_bytes())
            ids = enc.assign_ids(g.positions)
            dec.decode_frame(enc.keyframe(g, ids))
            moved = g.positions[:600] + np.float32(0.01)
            d1 = enc.make_delta(update=(ids[:600], {Attr.POSITION: moved, Attr.SH_DC: g.sh_dc[:600] + 0.2}),
                                delete=ids[-100:])
            dec.decode_frame(enc.encode_delta(d1))
            d2 = enc.make_delta(add=(enc.assign_ids(g.positions[:50]), g.take(slice(0, 50))),
                                delete_cells={0: np.unique(ids[1000:1100] >> np.uint64(enc.profile.grid.slot_bits))})
            compose(d1, d2, enc.profile)
            dec.decode_frame(enc.encode_delta(d2))
            if dec.state.digest() != enc.state.digest():
                raise AssertionError("warm-up stream does not reproduce the encoder's state")
            if name == "compact":                    # gsd encode --progressive: stand-ins, refinement;
                for view in (None, _camera_behind(g)):  # and for a client's camera (its picture's weights)
                    enc = Encoder(Profile.preset(name, degree, Grid.fit(g.positions)))
                    dec = Decoder(enc.header_bytes())
                    for f in progressive_keyframe(enc, g, first_bytes=20_000, refine_bytes=20_000, view=view):
                        dec.decode_frame(f.data)


def _camera_behind(g) -> Camera:
    """A 64x64 camera behind the scene on -x, looking along +x at it."""
    eye = np.median(g.positions, 0) - [2.0 * float(np.ptp(g.positions[:, 0])), 0.0, 0.0]
    return pinhole(64, 64, 60.0, look_at(eye, eye + [1.0, 0.0, 0.0]))


def run(name: str, warm) -> int:
    """``warm()``, then say what it did: a warm-up module's ``main`` (the generator's too)."""
    t0 = time.perf_counter()
    warm()
    print(f"{name}: loops compiled and cached in {time.perf_counter() - t0:.1f} s" if jit.AVAILABLE
          else f"{name}: numba is not available; the loops run as Python")
    return 0


def main() -> int:
    return run("codec", warm_up)


if __name__ == "__main__":
    raise SystemExit(main())
