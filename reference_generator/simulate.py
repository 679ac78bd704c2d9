"""`simulate`: a scripted session of the reference world, headless -> a .gsd stream file.

    python -m reference_generator.simulate --steps 300 --out session.gsd
    gsd-world --steps 300 --out session.gsd --device cuda --target-live 1000000

Runs World.reset then one World.step per scripted action, encodes every output with the codec's
Encoder (closed loop, digest in every frame), writes the stream, prints a per-step table and the
totals (bytes per step against a full scene every step and against a video stream of the same
frame rate), then checks the file with ``codec.validate_stream``. Exit status 0 when the stream
is valid, 1 when it is not, 2 for bad arguments.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field

import torch

from codec import Encoder, StreamWriter, validate_stream
from codec.profile import PRESETS

from .actions import Action, scripted_session  # scripted_session: the session gsd-world, gsd-watch and bench play
from .protocol import encoder_for, to_delta
from .world import World, WorldConfig


@dataclass
class StepRecord:
    step: int
    action: str
    add: int
    update: int
    delete_cells: int
    delete_ids: int
    live: int
    bytes: int
    gen_ms: float
    codes_ms: float          # on the generator's device: quantize, residuals, masks, the one copy to the host
    encode_ms: float         # on the host: Encoder.encode_delta (apply, digest, frame; a large frame's zstd beside the apply)
    events: list = field(default_factory=list)

    @property
    def codec_ms(self) -> float:
        return self.codes_ms + self.encode_ms


def sync(device: torch.device) -> None:
    """Wait for the work queued on this thread's stream (not for chunks generated ahead on another)."""
    if device.type == "cuda":
        torch.cuda.current_stream(device).synchronize()


def timed_step(world: World, enc: Encoder, action: Action | None, *, reset_seed: int | None = None):
    """One generator step (or reset) and its encoding, timed by stage. Returns (record, frame bytes)."""
    dev = world.device
    sync(dev)
    t0 = time.perf_counter()
    out = world.reset(reset_seed) if reset_seed is not None else world.step(action)
    sync(dev)
    t1 = time.perf_counter()
    d = to_delta(enc, out)
    t2 = time.perf_counter()
    frame = enc.encode_delta(d)
    t3 = time.perf_counter()
    resume = getattr(world, "resume_ahead", None)      # the frame is done: work ahead may go on
    if resume is not None:
        resume()
    c = d.counts()
    rec = StepRecord(out.step, "reset" if reset_seed is not None else (action.KIND if action else "idle"),
                     c["add"], c["update"], c["delete_cells"], c["delete_ids"], out.live, len(frame),
                     (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3, list(out.events))
    return rec, frame


def keyframe_bytes(enc: Encoder) -> int:
    """Size of the current state sent as a keyframe: the 'full scene every frame' cost of one step."""
    return len(enc.frames.encode(enc.state_keyframe()))


def run_session(world: World, enc: Encoder, seed: int, actions: list, writer: StreamWriter | None = None,
                full_every: int = 50, on_step=None) -> tuple[list, dict]:
    """Reset, then step through ``actions``; returns the records and the sampled keyframe sizes."""
    rec, frame = timed_step(world, enc, None, reset_seed=seed)
    if writer:
        writer.write(frame)
    records = [rec]
    full = {0: len(frame)}
    if on_step:
        on_step(rec)
    for k, a in enumerate(actions, 1):
        rec, frame = timed_step(world, enc, a)
        if writer:
            writer.write(frame)
        records.append(rec)
        if full_every and k % full_every == 0:
            full[k] = keyframe_bytes(enc)
        if on_step:
            on_step(rec)
    return records, full


def summarize(records: list, full: dict, header_bytes: int, fps: float, video_mbps: float) -> dict:
    """Totals: bytes per step vs a full scene every step and vs video at the same frame rate."""
    deltas = records[1:]
    per = [r.bytes for r in deltas]
    # full scene each step: measured keyframes' bytes per Gaussian, nearest sample, times live
    samples = sorted(full)

    def full_at(k: int, live: int) -> float:
        s = min(samples, key=lambda x: abs(x - k))
        return full[s] / max(records[s].live, 1) * live
    full_per = [full_at(r.step, r.live) for r in deltas]
    video_per = video_mbps * 1e6 / 8 / fps

    def q(xs, p):
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else 0.0
    out = {
        "steps": len(deltas),
        "header_bytes": header_bytes,
        "keyframe_bytes": records[0].bytes,
        "keyframe_gaussians": records[0].live,
        "delta_bytes_total": sum(per),
        "delta_bytes_mean": statistics.fmean(per) if per else 0.0,
        "delta_bytes_median": statistics.median(per) if per else 0.0,
        "delta_bytes_p90": q(per, 0.9),
        "delta_bytes_max": max(per, default=0),
        "stream_bytes": header_bytes + records[0].bytes + sum(per),
        "full_scene_bytes_mean": statistics.fmean(full_per) if full_per else 0.0,
        "full_scene_bytes_total": sum(full_per),
        "video_bytes_per_step": video_per,
        "fps": fps,
        "video_mbps": video_mbps,
        "delta_mbps": (statistics.fmean(per) if per else 0.0) * 8 * fps / 1e6,
        "live_mean": statistics.fmean(r.live for r in deltas) if deltas else records[0].live,
        "live_max": max((r.live for r in records), default=0),
        "add_total": sum(r.add for r in deltas),
        "update_total": sum(r.update for r in deltas),
        "delete_cells_total": sum(r.delete_cells for r in deltas),
    }
    for name in ("gen_ms", "codes_ms", "encode_ms", "codec_ms"):
        xs = [getattr(r, name) for r in deltas]
        out[name + "_median"] = statistics.median(xs) if xs else 0.0
        out[name + "_p90"] = q(xs, 0.9)
        out[name + "_max"] = max(xs, default=0.0)
    return out


def _fmt_b(n: float) -> str:
    for unit, div in (("MB", 1e6), ("kB", 1e3)):
        if n >= div:
            return f"{n / div:.2f} {unit}"
    return f"{int(n)} B"


ROW = "{:>5} {:<9} {:>7} {:>7} {:>5} {:>9} {:>10} {:>8} {:>8} {:>9}  {}"


def print_row(r: StepRecord, file=None) -> None:
    print(ROW.format(r.step, r.action, r.add, r.update, r.delete_cells, r.live, r.bytes, f"{r.gen_ms:.1f}",
                     f"{r.codes_ms:.1f}", f"{r.encode_ms:.1f}", "; ".join(r.events)), file=file)


def print_totals(s: dict, file=None) -> None:
    p = lambda *a: print(*a, file=file)  # noqa: E731
    p(f"steps {s['steps']}: live mean {s['live_mean']:,.0f}, max {s['live_max']:,}; "
      f"ops: {s['add_total']:,} added, {s['update_total']:,} updated, {s['delete_cells_total']:,} cells deleted")
    p(f"stream {_fmt_b(s['stream_bytes'])} = header {s['header_bytes']} B + keyframe {_fmt_b(s['keyframe_bytes'])} "
      f"({s['keyframe_gaussians']:,} Gaussians) + deltas {_fmt_b(s['delta_bytes_total'])}")
    p(f"delta per step: mean {_fmt_b(s['delta_bytes_mean'])}, median {_fmt_b(s['delta_bytes_median'])}, "
      f"p90 {_fmt_b(s['delta_bytes_p90'])}, max {_fmt_b(s['delta_bytes_max'])}  "
      f"= {s['delta_mbps']:.2f} Mbit/s at {s['fps']:g} steps/s")
    p(f"vs full scene every step: {_fmt_b(s['full_scene_bytes_mean'])}/step "
      f"({s['full_scene_bytes_mean'] / max(s['delta_bytes_mean'], 1):,.0f}x the deltas)")
    p(f"vs video at {s['video_mbps']:g} Mbit/s: {_fmt_b(s['video_bytes_per_step'])}/step "
      f"(deltas are {s['delta_bytes_mean'] / s['video_bytes_per_step']:.2f}x that)")
    p(f"time per step (median / p90 ms): generate {s['gen_ms_median']:.2f} / {s['gen_ms_p90']:.2f}, "
      f"codes (device) {s['codes_ms_median']:.2f} / {s['codes_ms_p90']:.2f}, "
      f"encode (host) {s['encode_ms_median']:.2f} / {s['encode_ms_p90']:.2f}")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="gsd-world", description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=300, help="scripted steps after the keyframe (default 300)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="session.gsd", help="stream file to write (default session.gsd)")
    ap.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, ...")
    ap.add_argument("--target-live", type=int, default=100_000, help="live Gaussians at steady state")
    ap.add_argument("--max-gaussians", type=int, default=1_000_000, help="scene budget (stream header)")
    ap.add_argument("--profile", default="compact", choices=[k for k in PRESETS])
    ap.add_argument("--sh-degree", type=int, default=3, choices=(0, 1, 2, 3))
    ap.add_argument("--fps", type=float, default=25.0, help="steps per second, for bit rates (default 25)")
    ap.add_argument("--video-mbps", type=float, default=4.0, help="video baseline bit rate (default 4)")
    ap.add_argument("--full-every", type=int, default=50, help="measure a full keyframe every N steps")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--quiet", action="store_true", help="no per-step table")
    ap.add_argument("--json", help="also write the totals (and per-step records) as JSON here")
    return ap


def main(argv: list | None = None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    if a.steps < 0 or a.target_live <= 0 or a.max_gaussians <= 0 or a.fps <= 0:
        ap.error("steps must be >= 0; target-live, max-gaussians and fps > 0")
    if a.threads:
        torch.set_num_threads(a.threads)
    try:
        device = torch.device(a.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            ap.error("CUDA is not available here")
    except RuntimeError as e:
        ap.error(str(e))
    cfg = WorldConfig(sh_degree=a.sh_degree, profile=a.profile, target_live=a.target_live,
                      max_gaussians=a.max_gaussians)
    world = World(cfg, device)
    enc = encoder_for(world.profile, device, max_gaussians=cfg.max_gaussians, generator="reference_generator (gsd-world)",
                      **cfg.encoder_options())
    header = enc.header_bytes()
    actions = scripted_session(a.steps)
    if not a.quiet:
        print(ROW.format("step", "action", "add", "update", "cells", "live", "bytes", "gen ms", "codes ms",
                         "encode ms", "events"))
    with StreamWriter(a.out, header) as w:
        records, full = run_session(world, enc, a.seed, actions, w, a.full_every,
                                    on_step=None if a.quiet else print_row)
    s = summarize(records, full, len(header), a.fps, a.video_mbps)
    print()
    print_totals(s)
    problems = validate_stream(a.out)
    print(f"wrote {a.out}: {_fmt_b(s['stream_bytes'])}, {len(records)} frames; validate_stream: "
          + ("ok" if not problems else "; ".join(str(p) for p in problems)))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"totals": s, "device": str(device), "config": asdict(cfg),
                       "steps": [asdict(r) for r in records]}, f, indent=1)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
