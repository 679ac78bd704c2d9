"""Benchmark of the reference generator: step time per action kind, codec time on top, bytes per step.

    python -m reference_generator.bench                       # CPU, 100k and 1M live Gaussians
    python -m reference_generator.bench --device cuda --n 1000000

For each scene size n (live Gaussians) it builds a world whose steady state holds about n
Gaussians under a budget of 1.2 n, walks until the scene is that full, then times
``steps_per_kind`` steps of every action kind (the *live* column shows the scene size
measured). Each step is split into: *generate* (World.step, its stream synchronized; chunks
generated ahead on the world's worker thread are not waited for unless a step needs one),
*codes* (protocol.to_delta: on a GPU, on the world's device: quantization, residuals against the
device mirror of the closed-loop codes, UPDATE masks and blocks as one CUDA graph replay, the one
device-to-host copy; on
the CPU, the floats to numpy and the codec's Encoder.make_delta) and
*encode* (Encoder.encode_delta on the host: apply, digest, frame; a large frame's zstd beside the
apply); *codec* = codes + encode. A walk (``walk_steps`` steps, moving and strafing through new chunks) gives the step
time percentiles while chunks stream in. Then a scripted 300-step session
(simulate.scripted_session) gives delta bytes per step against sending the full scene every
step (keyframes measured every 50 steps) and against a video stream, and a full-scene diff
(reference_generator.differ over World.scene()) shows what a model without native deltas pays.
Results go to GENERATOR_BENCH.md, one section per device (re-running on another device keeps
the other sections).

``--kinds-only`` stops after the action kinds and prints their codec split (codes, encode, codec;
steps that ADDed 2,000 or more Gaussians apart) and the device stages of *codes*
(device_codes.TIMING, the device synchronized at each stage's end, in a second pass), writing no
report: a before/after of the codec in well under a minute of a GPU.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import time

import numpy as np
import torch

import codec
from codec import Attr, Decoder, Encoder, Gaussians, StreamWriter, validate_stream
from codec.stream import id_costs
from codec.warmup import warm_up as warm_codec

from .actions import Idle, Interact, Jump, Look, Move, Pose, Strafe, Turn
from .differ import Differ
from .protocol import attr_layout, encoder_for
from .simulate import run_session, scripted_session, summarize, sync, timed_step
from .warmup import warm_up as warm_generator
from .world import World, WorldConfig

KIND_ORDER = ("move", "strafe", "turn", "look", "jump", "interact", "pose", "idle")
GOAL_TOTAL_MS, GOAL_CODEC_MS, GOAL_DIFF_MS = 40.0, 3.0, 5.0     # step p99; codec median; full-scene diff per idle step


def _q(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")


def make_world(n: int, device, sh_degree: int, profile: str) -> tuple[World, Encoder]:
    # the density formula aims a little low (chunks just loaded ahead are still streaming in), so
    # aim 8% higher to hold about n while moving; the budget leaves 20% headroom
    cfg = WorldConfig(sh_degree=sh_degree, profile=profile, target_live=int(1.08 * n), max_gaussians=int(1.2 * n))
    w = World(cfg, device)
    return w, encoder_for(w.profile, device, max_gaussians=cfg.max_gaussians, generator="reference_generator bench",
                          **cfg.encoder_options())


def warm_up(w: World, enc: Encoder, n: int, max_steps: int = 400) -> int:
    """Walk until ~n Gaussians are loaded (chunks load ahead, retire behind), then stand until they
    have all streamed in, so the timed steps start from a full scene."""
    steps = 0
    while w.reserved < 0.93 * n and steps < max_steps:
        timed_step(w, enc, Move(0.5))
        steps += 1
    while (w.pending or steps < 5) and steps < 2 * max_steps:
        timed_step(w, enc, Idle())
        steps += 1
    return steps


def _near_door_pose(w: World) -> Pose | None:
    """A pose 2 m in front of the nearest door, facing it (setup for the interact steps)."""
    cam = w.camera().position
    doors = sorted(w.doors(), key=lambda d: np.hypot(d.centre[0] - cam[0], d.centre[1] - cam[1]))
    if not doors:
        return None
    d = doors[0]
    ang = float(torch.atan2(d.rel[:, 1].mean(), d.rel[:, 0].mean()))     # along the closed door
    nx, ny = -np.sin(ang), np.cos(ang)                                   # its outward normal
    x, y = d.centre[0] + 2 * nx, d.centre[1] + 2 * ny
    return Pose((x, y, 0.0), float(np.degrees(np.arctan2(-ny, -nx))), 0.0)


def kind_actions(kind: str, w: World, k: int):
    if kind == "move":
        return Move(0.3)
    if kind == "strafe":
        return Strafe(0.3)
    if kind == "turn":
        return Turn(9.0)
    if kind == "look":
        return Look(3.0 if k % 2 else -3.0)
    if kind == "jump":
        return Jump()
    if kind == "interact":
        return Interact()
    if kind == "pose":
        x, y, z = w.camera().position
        return Pose((x + 0.1, y + 0.05, z), w.yaw + 1.0, w.pitch)
    return Idle()


def bench_kinds(w: World, enc: Encoder, steps: int) -> dict:
    out = {}
    for kind in KIND_ORDER:
        if kind == "interact":
            p = _near_door_pose(w)
            if p is not None:
                timed_step(w, enc, p)
                for _ in range(3):
                    timed_step(w, enc, Idle())
        recs = [timed_step(w, enc, kind_actions(kind, w, k))[0] for k in range(steps)]
        out[kind] = recs
    return out


def bench_walk(w: World, enc: Encoder, steps: int) -> dict:
    """Walk through new chunks (blocks of 25 moves and 25 strafes): step time percentiles while chunks stream in."""
    recs = [timed_step(w, enc, Move(0.3) if (k // 25) % 2 == 0 else Strafe(0.3))[0] for k in range(steps)]
    total = [r.gen_ms + r.codec_ms for r in recs]
    codec_ms = [r.codec_ms for r in recs]
    return {"steps": steps, "live": statistics.fmean(r.live for r in recs),
            "total_median": statistics.median(total), "total_p90": _q(total, 0.9), "total_p99": _q(total, 0.99),
            "total_max": max(total), "over_goal": sum(1 for t in total if t > GOAL_TOTAL_MS),
            "gen_p99": _q([r.gen_ms for r in recs], 0.99),
            "codec_median": statistics.median(codec_ms), "codec_p99": _q(codec_ms, 0.99),
            "add_steps": sum(1 for r in recs if r.add), "chunks_loaded": sum(
                sum(int(e.split()[1]) for e in r.events if e.startswith("loaded ")) for r in recs)}


def bench_differ(w: World, steps: int) -> dict:
    """A full-scene model: World.scene() every step through the Differ (ids given, spatial)."""
    quiet = 0
    for _ in range(400):                      # stand until nothing streams in: idle steps carry motion only
        w.step(Idle())
        quiet = quiet + 1 if not w.pending else 0
        if quiet >= 3:
            break
    enc = Encoder(w.profile, max_gaussians=w.max_gaussians)
    df = Differ(enc, spatial_ids=True, device=w.device)
    ids, x = w.scene()
    df.encode(x, ids)
    diff_ms, enc_ms, scene_ms, nbytes = [], [], [], []
    for _ in range(steps):
        w.step(Idle())
        sync(w.device)
        t0 = time.perf_counter()
        ids, x = w.scene()
        sync(w.device)
        t1 = time.perf_counter()
        r = df.diff(x, ids)
        t2 = time.perf_counter()
        frame = enc.encode_delta(r.delta)
        df.accept(r)
        sync(w.device)
        t3 = time.perf_counter()
        w.resume_ahead()
        scene_ms.append((t1 - t0) * 1e3)
        diff_ms.append((t2 - t1) * 1e3)
        enc_ms.append((t3 - t2) * 1e3)
        nbytes.append(len(frame))
    total = [a + b for a, b in zip(diff_ms, enc_ms)]
    return {"diff_ms_median": statistics.median(total), "diff_only_ms_median": statistics.median(diff_ms),
            "encode_ms_median": statistics.median(enc_ms), "scene_ms_median": statistics.median(scene_ms),
            "bytes_median": statistics.median(nbytes), "live": w.live, "steps": steps}


def kind_rows(res: dict) -> list:
    rows = []
    for kind, recs in res.items():
        gen = [r.gen_ms for r in recs]
        codec_ms = [r.codec_ms for r in recs]
        total = [r.gen_ms + r.codec_ms for r in recs]
        loads = [r for r in recs if r.add]
        rows.append({"kind": kind, "steps": len(recs), "live": statistics.fmean(r.live for r in recs),
                     "gen_median": statistics.median(gen), "gen_p90": _q(gen, 0.9), "gen_max": max(gen),
                     "codes_median": statistics.median(r.codes_ms for r in recs),
                     "encode_median": statistics.median(r.encode_ms for r in recs),
                     "codec_median": statistics.median(codec_ms), "codec_p90": _q(codec_ms, 0.9),
                     "total_median": statistics.median(total), "total_p90": _q(total, 0.9),
                     "total_p99": _q(total, 0.99), "total_max": max(total),
                     "bytes_mean": statistics.fmean(r.bytes for r in recs),
                     "updates_mean": statistics.fmean(r.update for r in recs),
                     "load_steps": len(loads),
                     "load_total_median": statistics.median([r.gen_ms + r.codec_ms for r in loads]) if loads else None,
                     "load_add_mean": statistics.fmean(r.add for r in loads) if loads else 0})
    return rows


def print_codec_split(w: World, enc: Encoder, timed: dict, steps: int) -> dict:
    """The codec split of every action kind (median ms of its ``timed`` steps, from bench_kinds; those
    that ADDed 2,000 or more Gaussians apart), then on a GPU the device stages of *codes* in a second
    pass of ``steps`` steps per kind. Returns both."""
    from . import device_codes

    out = {}
    print(f"   {'kind':<9} {'codes':>6} {'encode':>7} {'codec':>6} | ADD steps: n, codes, encode, codec (ms)")
    for kind, recs in timed.items():
        loads = [r for r in recs if r.add >= 2000]
        row = {"all": [statistics.median(getattr(r, k) for r in recs) for k in ("codes_ms", "encode_ms", "codec_ms")],
               "adds": [statistics.median(getattr(r, k) for r in loads) for k in ("codes_ms", "encode_ms", "codec_ms")]
               if loads else None, "add_steps": len(loads)}
        out[kind] = row
        adds = " ".join(f"{v:6.2f}" for v in row["adds"]) if loads else "     -"
        print(f"   {kind:<9} " + " ".join(f"{v:6.2f}" for v in row["all"]) + f" | {len(loads):2d} {adds}", flush=True)
    if w.device.type == "cuda":
        device_codes.TIMING = {}
        try:
            for kind in KIND_ORDER:
                device_codes.TIMING.clear()
                for k in range(steps):
                    timed_step(w, enc, kind_actions(kind, w, k))
                stages = {st: statistics.median(v) for st, v in device_codes.TIMING.items()}
                out[kind]["stages"] = stages
                print(f"   {kind:<9} stages: " + ", ".join(f"{st} {v:.3f}" for st, v in stages.items()), flush=True)
        finally:
            device_codes.TIMING = None
    return out


def _verdict(total_p99, codec_ms) -> str:
    return "PASS" if total_p99 <= GOAL_TOTAL_MS and codec_ms <= GOAL_CODEC_MS else "MISS"


def _load() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "n/a"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()})"


def render(results: dict) -> str:
    dev = results["device"]
    L = [f"<!-- device:{results['device_key']} -->",
         f"## {dev}",
         "",
         f"- command: `{results['command']}`",
         f"- date: {results['date']}; torch {results['torch']}, numpy {np.__version__}, gsd-codec {codec.__version__}, "
         f"Python {platform.python_version()}; profile `{results['profile']}`, SH degree {results['sh_degree']}",
         f"- machine load (1-minute load average) at start / end: {results['load_start']} / {results.get('load_end', '?')}",
         f"- step = {results['dt'] * 1000:.0f} ms of world time ({1 / results['dt']:g} steps/s); "
         f"timings are per step, median / p90 over {results['steps_per_kind']} steps per action kind; "
         f"*codes* = protocol.to_delta: on a GPU, on the world's device (quantize, residuals against the device "
         f"mirror of the closed-loop codes, UPDATE masks and blocks, as one CUDA graph replay; one device-to-host "
         f"copy); on the CPU, the "
         f"floats to numpy and the codec's Encoder.make_delta; *encode* = on the host: "
         f"Encoder.encode_delta (apply, digest, frame; a large frame's zstd runs on a worker during the apply); *codec* = codes + encode; goal: codec median "
         f"<= {GOAL_CODEC_MS:g} ms and step p99 <= {GOAL_TOTAL_MS:g} ms.",
         ""]
    for size in results["sizes"]:
        n = size["n"]
        L += [f"### {n:,} live Gaussians (budget {int(1.2 * n):,}; {size['density']:,} per 16 m chunk)", "",
              f"Warm-up: {size['warmup_steps']} steps (walking, then standing until all loaded chunks streamed in); keyframe of the spawn view: {size['keyframe_gaussians']:,} "
              f"Gaussians, generated in {size['reset_gen_ms']:.0f} ms, encoded in {size['reset_codec_ms']:.0f} ms, "
              f"{size['keyframe_bytes'] / 1e6:.2f} MB.", "",
              "| action | live | generate ms | codes ms | encode ms | codec ms | total ms (p90, p99) "
              f"| goal {GOAL_CODEC_MS:g} / {GOAL_TOTAL_MS:g} ms | UPDATEs | bytes/step |",
              "|---|---|---|---|---|---|---|---|---|---|"]
        for r in size["kinds"]:
            L.append(f"| {r['kind']} | {r['live']:,.0f} | {r['gen_median']:.2f} / {r['gen_p90']:.2f} "
                     f"| {r['codes_median']:.2f} | {r['encode_median']:.2f} | {r['codec_median']:.2f} / {r['codec_p90']:.2f} "
                     f"| {r['total_median']:.2f} ({r['total_p90']:.2f}, {r['total_p99']:.1f}) "
                     f"| {_verdict(r['total_p99'], r['codec_median'])} | {r['updates_mean']:,.0f} "
                     f"| {r['bytes_mean']:,.0f} |")
        loads = [r for r in size["kinds"] if r["load_steps"]]
        if loads:
            k = sum(r["load_steps"] for r in loads)
            med = statistics.median(r["load_total_median"] for r in loads)
            add = statistics.fmean(r["load_add_mean"] for r in loads)
            L += ["", f"Steps above that ADDed Gaussians (a chunk streaming in; {k} of them, ~{add:,.0f} ADDs each): "
                      f"median total {med:.1f} ms (chunk load where one started, codes and encode of the ADDs)."]
        if size.get("walk"):
            wk = size["walk"]
            ok = "PASS" if wk["total_p99"] <= GOAL_TOTAL_MS else "MISS"
            L += ["", f"**Walk** ({wk['steps']} steps, 25 moves then 25 strafes of 0.3 m, repeated; {wk['chunks_loaded']} "
                      f"chunks loaded, {wk['add_steps']} steps with ADDs, live {wk['live']:,.0f}): step total median "
                      f"{wk['total_median']:.2f} ms, p90 {wk['total_p90']:.2f}, p99 {wk['total_p99']:.2f}, max "
                      f"{wk['total_max']:.1f} ({ok} against p99 <= {GOAL_TOTAL_MS:g} ms; "
                      f"{wk.get('over_goal', 0)} steps over {GOAL_TOTAL_MS:g} ms); generate p99 {wk['gen_p99']:.2f} ms; "
                      f"codec median {wk['codec_median']:.2f} ms, p99 {wk['codec_p99']:.2f} ms."]
        s = size["session"]
        L += ["", f"**Scripted {s['steps']}-step session** (walk to the house, open the door, look, turn, walk "
                  f"and jump through new chunks, strafe, glide under client poses, idle):", "",
              "| | bytes per step | ratio to the GSD mean |", "|---|---|---|",
              f"| GSD deltas (mean) | {s['delta_bytes_mean']:,.0f} | 1x |",
              f"| GSD deltas (median) | {s['delta_bytes_median']:,.0f} | |",
              f"| GSD deltas (p90 / max) | {s['delta_bytes_p90']:,.0f} / {s['delta_bytes_max']:,.0f} | |",
              f"| full scene every step (GSD keyframe, measured every 50 steps) | {s['full_scene_bytes_mean']:,.0f} "
              f"| {s['full_scene_bytes_mean'] / max(s['delta_bytes_mean'], 1):,.0f}x |",
              f"| video at {s['video_mbps']:g} Mbit/s, {s['fps']:g} frames/s | {s['video_bytes_per_step']:,.0f} "
              f"| {s['video_bytes_per_step'] / max(s['delta_bytes_mean'], 1):.2f}x |", "",
              f"Session totals: stream {s['stream_bytes'] / 1e6:.2f} MB (keyframe {s['keyframe_bytes'] / 1e6:.2f} MB + "
              f"deltas {s['delta_bytes_total'] / 1e6:.2f} MB); {s['delta_mbps']:.2f} Mbit/s of deltas at {s['fps']:g} steps/s; "
              f"live mean {s['live_mean']:,.0f}; {s['add_total']:,} ADDs, {s['update_total']:,} UPDATEs, "
              f"{s['delete_cells_total']:,} cells deleted. Time per step, median / p90 ms: generate "
              f"{s['gen_ms_median']:.2f} / {s['gen_ms_p90']:.2f}, codes {s['codes_ms_median']:.2f} / {s['codes_ms_p90']:.2f}, "
              f"encode {s['encode_ms_median']:.2f} / {s['encode_ms_p90']:.2f}.{_psnr_text(s)} validate_stream: {s['valid']}."]
        ic = s.get("id_costs")
        if ic and ic["ids"]:
            L += ["", f"UPDATE and DELETE ids of the session's deltas ({ic['ids']:,} ids; each block stored as the "
                      f"encoder writes it): **{ic['ranked_bytes'] / ic['ids']:.3f} bytes per id as ranks** among the live "
                      f"ids, gap coded where that is smaller (format 1.4, `gsd-serve --format 1.4`) against "
                      f"{ic['id_bytes'] / ic['ids']:.3f} as ids (1.1, what this stream sends): "
                      f"**{ic['ranked_bytes'] / max(ic['id_bytes'], 1):.2f}x**."]
        if size.get("session_loads"):
            sl = size["session_loads"]
            L += ["", f"Steps of the session that ADDed Gaussians ({sl['steps']} of {s['steps']}; new chunks stream in at "
                      f"most {results['max_add_per_step']:,} a step): median {sl['add_median']:,.0f} ADDs, generate "
                      f"{sl['gen_median']:.1f} ms, codec {sl['codec_median']:.1f} ms, {sl['bytes_median']:,.0f} bytes; "
                      f"the other steps carry only motion (UPDATEs) and retirements (DELETE_CELLS)."]
        if size.get("palette_session"):
            ps, pl, sl = size["palette_session"], size.get("palette_session_loads"), size.get("session_loads")
            per_add = (f" Its ADD steps: {pl['bytes_total'] / pl['add_total']:.2f} bytes per added Gaussian against "
                       f"{sl['bytes_total'] / sl['add_total']:.2f}, codec median {pl['codec_median']:.1f} ms."
                       if pl and sl and "add_total" in pl and "add_total" in sl else "")
            L += ["", f"**The same session with an SH palette** (profile `{ps['profile']}`: SH_REST as one u16 index "
                      f"into a palette of up to 65,536 entries carried in the stream, SPEC.md 5.9; its other bit depths "
                      f"as that preset's): deltas mean {ps['delta_bytes_mean']:,.0f} bytes per step, "
                      f"**{ps['delta_bytes_mean'] / max(s['delta_bytes_mean'], 1):.3f}x** the session above (median "
                      f"{ps['delta_bytes_median']:,.0f}, max {ps['delta_bytes_max']:,.0f}); keyframe "
                      f"{ps['keyframe_bytes'] / 1e6:.2f} MB against {s['keyframe_bytes'] / 1e6:.2f} MB. Steps that ADD "
                      f"are built by the host encoder, which picks and adds palette entries (searched on the world's "
                      f"device); the others as above (protocol.to_delta). Time per step, "
                      f"median / p90 ms: codes {ps['codes_ms_median']:.2f} / {ps['codes_ms_p90']:.2f}, encode "
                      f"{ps['encode_ms_median']:.2f} / {ps['encode_ms_p90']:.2f}.{per_add}{_psnr_text(ps)} "
                      f"validate_stream: {ps['valid']}."]
        if size.get("differ"):
            dfr = size["differ"]
            ok = "PASS" if dfr["diff_ms_median"] <= GOAL_DIFF_MS else "MISS"
            L += ["", f"**Full-scene path** (the same world, but the model hands over its whole scene each step and "
                      f"`Differ` finds the changes, ids given; median of {dfr['steps']} idle steps): export "
                      f"{dfr['scene_ms_median']:.1f} ms + diff and encode {dfr['diff_ms_median']:.2f} ms per idle step "
                      f"(diff on the device {dfr['diff_only_ms_median']:.2f} ms, encode on the host "
                      f"{dfr['encode_ms_median']:.2f} ms; {ok} against {GOAL_DIFF_MS:g} ms) at {dfr['live']:,} live, "
                      f"{dfr['bytes_median']:,.0f} bytes per step (the native deltas above need no diff at all)."]
        L.append("")
    L.append(f"<!-- /device:{results['device_key']} -->")
    return "\n".join(L)


HEAD = """# Reference generator benchmarks

Generated by `python -m reference_generator.bench`; do not edit by hand. Each section is one
device; re-running on another device replaces only that device's section. The goals, at 1M live
Gaussians on the GPU: one step (generation + codes + encode) under 40 ms at the 99th percentile,
of which codec work (codes on the device + encode on the host) at most 3 ms (median) for every
action kind; a model handing over its whole scene (the full-scene path) diffed and encoded in at
most 5 ms per idle step.
"""


def write_report(path: str, section: str, key: str) -> None:
    old = open(path).read() if os.path.exists(path) else ""
    pat = re.compile(rf"<!-- device:{re.escape(key)} -->.*?<!-- /device:{re.escape(key)} -->", re.S)
    if not old.startswith("# Reference generator benchmarks"):
        old = HEAD
    first = old.find("<!-- device:")              # the head is always this version's; sections are kept
    old = HEAD + ("\n" + old[first:] if first >= 0 else "")
    if pat.search(old):
        new = pat.sub(lambda _: section, old)
    else:
        new = old.rstrip("\n") + "\n\n" + section + "\n"
    with open(path, "w") as f:
        f.write(new)


def bench_session(w: World, enc: Encoder, a, keep: str | None) -> tuple[dict, dict | None]:
    """The scripted session on a fresh world: its summary (stream validated) and its ADD steps'."""
    path = keep or os.path.join("/tmp", f"gsd_bench_session_{os.getpid()}.gsd")
    with StreamWriter(path, enc.header_bytes()) as sw:
        records, full = run_session(w, enc, 0, scripted_session(a.session_steps), sw, 50)
    s = summarize(records, full, len(enc.header_bytes()), a.fps, a.video_mbps)
    s["psnr"] = state_psnr(w, enc)
    problems = validate_stream(path)
    s["valid"] = "ok" if not problems else "; ".join(map(str, problems))
    s["id_costs"] = id_costs(path, enc.frames.level)
    if not keep:
        os.remove(path)
    loads = [r for r in records[1:] if r.add]
    if not loads:
        return s, None
    return s, {"steps": len(loads), "add_median": statistics.median(r.add for r in loads),
               "add_total": sum(r.add for r in loads), "bytes_total": sum(r.bytes for r in loads),
               "gen_median": statistics.median(r.gen_ms for r in loads),
               "codec_median": statistics.median(r.codec_ms for r in loads),
               "bytes_median": statistics.median(r.bytes for r in loads)}


def _psnr_text(s: dict) -> str:
    if "psnr" not in s:
        return ""
    return (f" The final state renders at **{s['psnr']:.2f} dB** PSNR against the world's floats (4 orbit views, "
            f"256 px, at most 200,000 Gaussians: `state_psnr`).")


def state_psnr(w: World, enc: Encoder, views: int = 4, size: int = 256, max_render: int = 200_000) -> float:
    """Mean PSNR (dB) of the decoder's scene against the world's floats: ``views`` orbit renders of
    ``size`` pixels (quality.rasterizer), both thinned to the same ``max_render`` Gaussians. What the
    stream's quantization costs the picture, so that sessions of two profiles compare at their quality."""
    from quality.compare import default_views, render_views
    from quality.metrics import psnr
    from quality.scenes import spatial_subsample

    ids, x = w.scene()
    ids = ids.cpu().numpy().astype(np.uint64)
    order = np.argsort(ids)
    lay = attr_layout(w.cfg.sh_degree)
    x = x.cpu().numpy()[order]
    ref = Gaussians(x[:, lay[Attr.POSITION]], x[:, lay[Attr.SCALE]], x[:, lay[Attr.ROTATION]],
                    x[:, lay[Attr.OPACITY]][:, 0], x[:, lay[Attr.SH_DC]], x[:, lay[Attr.SH_REST]])
    state_ids, dec = enc.state.to_gaussians()
    if not np.array_equal(state_ids, ids[order]):
        raise AssertionError("the encoder's state does not hold the world's scene")
    keep = spatial_subsample(ref.positions, max_render)
    ref, dec = ref.take(keep), dec.take(keep)
    cams = default_views(ref, views, size, size)
    return float(np.mean([psnr(a, b) for a, b in zip(render_views(dec, cams), render_views(ref, cams))]))


def _print_session(s: dict, profile: str) -> None:
    print(f"   session ({profile}): {s['delta_bytes_mean']:,.0f} B/step mean (median {s['delta_bytes_median']:,.0f}), "
          f"full scene {s['full_scene_bytes_mean']:,.0f} B/step, video {s['video_bytes_per_step']:,.0f} B/step; "
          f"PSNR of the final state {s['psnr']:.2f} dB; validate_stream {s['valid']}", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m reference_generator.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--n", type=int, nargs="+", default=[100_000, 1_000_000], help="live Gaussians (default 100k 1M)")
    ap.add_argument("--steps-per-kind", type=int, default=20)
    ap.add_argument("--session-steps", type=int, default=300)
    ap.add_argument("--differ-steps", type=int, default=9, help="full-scene diff steps (0: skip)")
    ap.add_argument("--walk-steps", type=int, default=1000,
                    help="walk steps for step-time percentiles: long enough for dozens of chunks to load and retire (0: skip)")
    ap.add_argument("--sh-degree", type=int, default=3, choices=(0, 1, 2, 3))
    ap.add_argument("--profile", default="compact")
    ap.add_argument("--palette-profile", default="small",
                    help="profile of a second run of the scripted session, with an SH palette (SPEC.md 5.9); none: skip")
    ap.add_argument("--fps", type=float, default=25.0)
    ap.add_argument("--video-mbps", type=float, default=4.0)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--out", default="GENERATOR_BENCH.md")
    ap.add_argument("--session-file", default=None, help="also keep the session stream here")
    ap.add_argument("--json", default=None)
    ap.add_argument("--kinds-only", action="store_true",
                    help="time the action kinds only and print their codec split and device stages (no report)")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("CUDA is not available here")
    results = {"device": device_name(device), "device_key": device.type, "torch": torch.__version__,
               "command": "python -m reference_generator.bench " + " ".join(argv if argv is not None else sys.argv[1:]),
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "sh_degree": a.sh_degree,
               "profile": a.profile, "steps_per_kind": a.steps_per_kind, "dt": WorldConfig().dt,
               "max_add_per_step": WorldConfig().max_add_per_step, "sizes": [],
               "load_start": _load()}
    # numba's loops compiled first, as scripts/setup.sh leaves them: on a fresh machine the first
    # steps would otherwise time the compiler (one 1M move step's encode took 113 ms on a GPU host)
    t0 = time.perf_counter()
    warm_codec()
    warm_generator()
    print(f"compiled loops ready in {time.perf_counter() - t0:.1f} s", flush=True)
    for n in a.n:
        print(f"== n = {n:,} on {results['device']}", flush=True)
        w, enc = make_world(n, device, a.sh_degree, a.profile)
        rec, kf = timed_step(w, enc, None, reset_seed=0)
        warm = warm_up(w, enc, n)
        print(f"   keyframe {rec.live:,} Gaussians: generate {rec.gen_ms:.0f} ms, codec {rec.codec_ms:.0f} ms; "
              f"warm-up {warm} steps -> live {w.live:,}", flush=True)
        timed = bench_kinds(w, enc, a.steps_per_kind)
        kinds = kind_rows(timed)
        for r in kinds:
            print(f"   {r['kind']:<9} live {r['live']:>10,.0f}  generate {r['gen_median']:7.2f} ms  codec "
                  f"{r['codec_median']:6.2f} ms  total {r['total_median']:7.2f} ms (p90 {r['total_p90']:.2f})  "
                  f"{r['bytes_mean']:>9,.0f} B/step", flush=True)
        if a.kinds_only:
            results["sizes"].append({"n": n, "kinds": kinds,
                                     "codec_split": print_codec_split(w, enc, timed, a.steps_per_kind)})
            w.close()
            continue
        size = {"n": n, "density": w.density, "warmup_steps": warm, "keyframe_gaussians": rec.live,
                "keyframe_bytes": rec.bytes, "reset_gen_ms": rec.gen_ms, "reset_codec_ms": rec.codec_ms,
                "kinds": kinds}
        if a.walk_steps:
            size["walk"] = bench_walk(w, enc, a.walk_steps)
            wk = size["walk"]
            print(f"   walk {wk['steps']} steps ({wk['chunks_loaded']} chunks loaded): total median {wk['total_median']:.2f} ms, "
                  f"p90 {wk['total_p90']:.2f}, p99 {wk['total_p99']:.2f}, max {wk['total_max']:.1f}", flush=True)
        differ_w = w
        # the scripted session, on a fresh world of the same size; again with an SH palette
        w2, enc2 = make_world(n, device, a.sh_degree, a.profile)
        size["session"], size["session_loads"] = bench_session(w2, enc2, a, a.session_file)
        _print_session(size["session"], a.profile)
        w2.close()
        if a.palette_profile != "none" and a.sh_degree:
            w3, enc3 = make_world(n, device, a.sh_degree, a.palette_profile)
            size["palette_session"], size["palette_session_loads"] = bench_session(w3, enc3, a, None)
            size["palette_session"]["profile"] = a.palette_profile
            _print_session(size["palette_session"], a.palette_profile)
            w3.close()
            del w3, enc3
        if a.differ_steps:
            size["differ"] = bench_differ(differ_w, a.differ_steps)
            print(f"   full-scene diff: export {size['differ']['scene_ms_median']:.2f} ms, diff + encode "
                  f"{size['differ']['diff_ms_median']:.2f} ms/step", flush=True)
        results["sizes"].append(size)
        w.close()
        del w, w2, enc, enc2, differ_w
        if device.type == "cuda":
            torch.cuda.empty_cache()
    results["load_end"] = _load()
    if a.kinds_only:
        if a.json:
            with open(a.json, "w") as f:
                json.dump(results, f, indent=1, default=float)
        return 0
    section = render(results)
    write_report(a.out, section, results["device_key"])
    print(f"wrote {a.out}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1, default=float)
    return 0 if all(sz[k]["valid"] == "ok" for sz in results["sizes"] for k in ("session", "palette_session")
                    if k in sz) else 1


if __name__ == "__main__":
    sys.exit(main())
