"""The realtime path of the Python codec: what one frame costs each way, and a large keyframe.

    python -m bench.realtime [--n 1000000] [--reps 40] [--json OUT.json] [--before BEFORE.json] [--out FILE.md]

Rows (SH degree 3, compact profile, a synthetic scene of n Gaussians):
  * a 5,000-Gaussian mixed delta (3,000 moves, 1,000 recolours, 500 adds, 500 deletes): encode
    (quantize against the closed-loop state, apply, digest, serialize) and decode + apply + digest check;
  * a small frame (50 Gaussians moved) against the same scene: encode and decode + apply + digest check;
  * the n-Gaussian keyframe: decode to state (digest not computed) and encode (ids given).
Every repetition builds a fresh edit against the current state; encoder and decoder digests are
compared outside the timed region. ``--json`` writes the raw figures; ``--before`` takes such a file
from an earlier tree (same command, same machine) and prints both columns. bench.run includes
this table in BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time

import numpy as np

from codec import Attr, Decoder, Encoder
from codec.synthetic import synthetic_scene

from .scenes import DeltaRig, profile_for

TARGETS_MS = {"delta_encode": 1.5, "delta_decode": 1.5, "small_encode": 0.3, "small_decode": 0.3,
              "keyframe_decode": 50.0, "keyframe_encode": 300.0}
LABELS = {"delta_encode": "5k mixed delta, encode", "delta_decode": "5k mixed delta, decode + apply + digest check",
          "small_encode": "small frame (50 moved), encode", "small_decode": "small frame (50 moved), decode + apply + digest check",
          "keyframe_decode": "SH3 compact keyframe, decode to state", "keyframe_encode": "SH3 compact keyframe, encode (ids given)"}


def _clock(fn, *args, **kw):
    gc.disable()
    try:
        t0 = time.perf_counter()
        out = fn(*args, **kw)
        return (time.perf_counter() - t0) * 1e3, out
    finally:
        gc.enable()


def measure(n: int = 1_000_000, reps: int = 40, warmup: int = 5, seed: int = 0, log=print) -> dict:
    """Times in ms (lists) for every row; checks digests outside the timed regions."""
    g = synthetic_scene(n, 3, seed)
    log(f"realtime: scene of {n:,} Gaussians")
    rig = DeltaRig(g, "compact", room=(reps + warmup) * 500 + 1000, seed=seed)
    out = {k: [] for k in TARGETS_MS}
    for i in range(warmup + reps):
        md = rig.make()
        te, frame = _clock(rig.enc.encode, **md.ops)
        rig.scene.commit(md)
        td, _ = _clock(rig.dec.decode_frame, frame)
        if i >= warmup:
            out["delta_encode"].append(te)
            out["delta_decode"].append(td)
    rng = np.random.default_rng(seed + 1)
    for i in range(warmup + reps):
        rows = rng.choice(rig.scene.alive(), 50, replace=False)
        pos = rig.scene.arrays["positions"][rows] + rng.normal(0, 0.02, (50, 3)).astype(np.float32)
        te, frame = _clock(rig.enc.encode, update=(rig.scene.ids[rows], {Attr.POSITION: pos}))
        rig.scene.arrays["positions"][rows] = pos
        td, _ = _clock(rig.dec.decode_frame, frame)
        if i >= warmup:
            out["small_encode"].append(te)
            out["small_decode"].append(td)
    if rig.dec.state.digest() != rig.enc.state.digest():
        raise AssertionError("realtime bench: decoder and encoder states differ")
    log(f"realtime: delta encode {statistics.median(out['delta_encode']):.2f} ms, decode "
        f"{statistics.median(out['delta_decode']):.2f} ms; small {statistics.median(out['small_encode']):.3f} / "
        f"{statistics.median(out['small_decode']):.3f} ms")
    del rig
    profile = profile_for(g, "compact")
    ids = Encoder(profile).assign_ids(g.positions)
    key = None
    for i in range(6):
        enc = Encoder(profile)
        te, key = _clock(enc.keyframe, g, ids)
        dec = Decoder(enc.header_bytes(), verify_digest=False)
        td, _ = _clock(dec.decode_frame, key)
        if i:
            out["keyframe_encode"].append(te)
            out["keyframe_decode"].append(td)
    if dec.state.digest() != enc.state.digest():
        raise AssertionError("realtime bench: keyframe state differs")
    log(f"realtime: keyframe encode {statistics.median(out['keyframe_encode']):.0f} ms, decode "
        f"{statistics.median(out['keyframe_decode']):.0f} ms")
    out["n"] = n
    return out


def _cell(times) -> str:
    if not times:
        return "-"
    med = statistics.median(times)
    p90 = float(np.percentile(times, 90))
    return f"{med:.3f} (p90 {p90:.3f})" if med < 10 else f"{med:.1f} (p90 {p90:.1f})"


def table(now: dict, before: dict | None = None) -> str:
    head = ["path (vs %s Gaussians, SH3 compact)" % f"{now['n']:,}"] + (["before, ms"] if before else []) + \
        ["now, ms", "target", "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k, label in LABELS.items():
        med = statistics.median(now[k])
        row = [label] + ([_cell(before.get(k, []))] if before else []) + \
            [_cell(now[k]), f"≤ {TARGETS_MS[k]:g} ms", "PASS" if med <= TARGETS_MS[k] else "MISS"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.realtime", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the raw figures here")
    ap.add_argument("--before", help="figures of an earlier tree (--json of the same command)")
    ap.add_argument("--out", help="write the markdown table here")
    args = ap.parse_args(argv)
    now = measure(args.n, args.reps, seed=args.seed, log=lambda m: print(m, file=sys.stderr))
    before = json.load(open(args.before)) if args.before else None
    if args.json:
        with open(args.json, "w") as f:
            json.dump(now, f)
    text = table(now, before)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
