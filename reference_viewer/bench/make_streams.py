"""Writes the inputs of reference_viewer/bench/decode_bench.mjs, built like bench/run.py builds its own.

    .venv/bin/python reference_viewer/bench/make_streams.py OUTDIR [--n 1000000] [--deltas 33] [--seed 0]
        [--ids plain|ranked]

OUTDIR/keyframe.gsd   header + one keyframe of the n-Gaussian synthetic SH3 scene, compact profile
                      (the profile the decoder targets are stated for, whatever gsd encode's default;
                      Encoder.keyframe, as bench/run.py's keyframe rows)
OUTDIR/deltas.gsd     the same header + keyframe, then `--deltas` 5,000-Gaussian mixed deltas
                      (bench/scenes.DeltaRig: 3,000 moves, 1,000 recolours, 500 adds, 500 deletes),
                      each against the state left by the previous one, every frame with its digest;
                      their UPDATE and DELETE_IDS blocks with ids (--ids plain, the default) or as
                      UPDATE_RANKED and DELETE_RANKED blocks (--ids ranked, format 1.2: the reference
                      encoder's choice, SPEC.md Appendix)
OUTDIR/info.json      n, counts, sizes and the Python decoder's final digest
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.abspath(os.path.join(HERE, "..", "..")))

from bench.scenes import MIX, DeltaRig  # noqa: E402
from codec.synthetic import synthetic_scene  # noqa: E402

PROFILE = "compact"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--deltas", type=int, default=33)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ids", choices=("plain", "ranked"), default="plain")
    a = ap.parse_args(argv)
    os.makedirs(a.outdir, exist_ok=True)
    t0 = time.perf_counter()
    g = synthetic_scene(a.n, 3, a.seed)
    rig = DeltaRig(g, PROFILE, room=a.deltas * MIX["n_add"], seed=a.seed)
    rig.enc.ranked_ids = a.ids == "ranked"
    header = rig.enc.header_bytes()
    with open(os.path.join(a.outdir, "keyframe.gsd"), "wb") as f:
        f.write(header + rig.keyframe)
    frames, counts = [], None
    for _ in range(a.deltas):
        md = rig.make()
        frame = rig.encode(md)
        d = rig.dec.decode_frame(frame)
        counts = d.counts() if hasattr(d, "counts") else None
        frames.append(frame)
    if not rig.in_step():
        raise SystemExit("encoder and decoder states differ")
    with open(os.path.join(a.outdir, "deltas.gsd"), "wb") as f:
        f.write(header + rig.keyframe + b"".join(frames))
    info = dict(n=a.n, sh_degree=3, profile=PROFILE, ids=a.ids, deltas=a.deltas, delta_counts=counts,
                keyframe_bytes=len(rig.keyframe), delta_bytes=[len(x) for x in frames],
                final_digest=str(rig.dec.state.digest()), seconds=round(time.perf_counter() - t0, 1))
    with open(os.path.join(a.outdir, "info.json"), "w") as f:
        json.dump(info, f, indent=1, default=str)
    print(json.dumps(info, default=str)[:400])
    return 0


if __name__ == "__main__":
    sys.exit(main())
