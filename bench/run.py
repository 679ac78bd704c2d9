"""Benchmark the reference codec and write BENCHMARKS.md.

    python -m bench.run [--n 1000000] [--quick] [--out BENCHMARKS.md] [--repeat 5] [--seed 0] [--before FILE]

Measures, on scenes from codec.synthetic.synthetic_scene:
  a. keyframes at SH degree 3 and 0 for every profile: size, assign_ids,
     encode, decode to state, decode + digest verify; the float PLY beside them;
  b. a 5,000-Gaussian mixed delta against the n-Gaussian scene: encode and
     decode + apply (median of >= 30 fresh deltas);
  c. position-only UPDATEs of small motions (bytes per updated Gaussian);
  d. the keyframe's bytes per Gaussian by section;
  e. the realtime path (bench/realtime.py): a 5k mixed delta and a small frame
     each way, the SH3 keyframe decode and encode; ``--before FILE`` adds the
     same figures from an earlier tree.
Peers (float PLY write/read, PLY + zlib, np.save/np.load of the floats) run in
the same process so times compare as ratios. Every timed result is checked
(digests equal) outside the timed region. Progress goes to stderr, the report
(markdown) to stdout and to --out. ``--quick`` runs at n=100k (CI smoke) and
writes no file unless --out is given.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import flatbuffers
import numpy as np
import zstandard

import codec
from codec import Attr, Decoder, Encoder
from codec import synthetic as synthetic_module
from codec.ply import ply_size_bytes, read_ply, write_ply
from codec.synthetic import synthetic_motion, synthetic_scene
from codec.stream import id_costs
from codec.wire import decode_frame

from .realtime import measure as measure_realtime
from .realtime import table as realtime_table
from .scenes import COLOR_SIGMA, MIX, MOVE_SIGMA, DeltaRig, coherent_motion, position_step, profile_for

PROFILES = ("lossless", "high", "compact", "small")
DEFAULT = codec.DEFAULT_PROFILE   # what `gsd encode` writes: keyframe targets and peers
STREAM = codec.STREAM_PROFILE     # what a live stream sends: the delta targets
FULL_N = 1_000_000
QUICK_N = 100_000
DEGREES = (3, 0)
ROLES = ("ids", "position", "placements", "scale", "rotation", "opacity", "sh_dc", "sh_rest", "palette", "delete")

# Targets; times are for a 1M-Gaussian scene.
T_ENCODE_MS = {3: 1000.0}
T_DECODE_MS = {3: 100.0, 0: 40.0}
T_SIZE_BPG = {3: 16.0, 0: 7.0}          # default lossy profile, strictly under
T_DELTA_MS = 2.0
T_RANKED_RATIO = 0.6  # a delta's UPDATE and DELETE ids as ranks, against the same ids sent as ids
T_MOTION_BPG = 2.0                      # strictly under
MOTION_FRACTION = 0.10
MOTION_STEPS = 3.0                      # motion std in position steps of the default profile


# ------------------------------------------------------------------------------------------ timing
def clock(fn, *args, **kwargs):
    """(seconds, result) of one call, with the cyclic GC paused so a collection does not land in it."""
    gc.disable()
    try:
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        dt = time.perf_counter() - t0
    finally:
        gc.enable()
    return dt, out


def med_ms(times: list[float]) -> float:
    return 1e3 * statistics.median(times)


def pct_ms(times: list[float], q: float) -> float:
    return 1e3 * float(np.percentile(times, q))


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ a, c, d
def bench_keyframe(g, name: str, reps: int) -> dict:
    """Size and times of one keyframe; returns the last encoder and a decoder holding its state."""
    p = profile_for(g, name)
    t_assign, t_enc, t_dec, t_ver = [], [], [], []
    ids = None
    for _ in range(reps):
        dt, ids = clock(Encoder(p).assign_ids, g.positions)
        t_assign.append(dt)
    for _ in range(reps):
        enc = Encoder(p)
        dt, kf = clock(enc.keyframe, g, ids)
        t_enc.append(dt)
    want = enc.state.digest()
    header = enc.header_bytes()
    for i in range(reps):
        dec = Decoder(header, verify_digest=False)
        dt, _ = clock(dec.decode_frame, kf)
        t_dec.append(dt)
        if i == 0 and dec.state.digest() != want:
            raise AssertionError(f"{name}: decoded state differs from the encoder's")
    dec = None
    for _ in range(reps):
        dec = Decoder(header)  # the frame carries the digest: a mismatch raises DIGEST_MISMATCH
        dt, _ = clock(dec.decode_frame, kf)
        t_ver.append(dt)
    if dec.state.digest() != want:
        raise AssertionError(f"{name}: verified state differs from the encoder's")
    _, _, info = decode_frame(kf, p, info=True)
    return dict(name=name, degree=g.sh_degree, n=len(g), bytes=len(kf), info=info, profile=p,
                ply=ply_size_bytes(len(g), g.sh_degree), ids=ids, enc=enc, dec=dec,
                assign=t_assign, encode=t_enc, decode=t_dec, verify=t_ver)


def bench_peers(g, reps: int) -> dict:
    """The float PLY (write/read through the page cache), PLY + zlib-1, np.save/np.load of the floats."""
    floats = np.concatenate([g.positions, g.scales, g.rotations, g.opacities[:, None], g.sh_dc, g.sh_rest], axis=1)
    t_save, t_load, t_write, t_read = [], [], [], []
    for _ in range(reps):
        buf = io.BytesIO()
        dt, _ = clock(np.save, buf, floats)
        t_save.append(dt)
        raw = buf.getvalue()
        dt, back = clock(np.load, io.BytesIO(raw))
        t_load.append(dt)
    assert np.array_equal(back, floats)
    with tempfile.TemporaryDirectory(prefix="gsd-bench-") as tmp:
        path = Path(tmp) / "scene.ply"
        for _ in range(max(1, min(reps, 3))):
            dt, _ = clock(write_ply, path, g)
            t_write.append(dt)
            dt, back = clock(read_ply, path)
            t_read.append(dt)
        assert np.array_equal(back.sh_rest, g.sh_rest) and np.array_equal(back.positions, g.positions)
        ply = path.read_bytes()
    assert len(ply) == ply_size_bytes(len(g), g.sh_degree)
    t_z, z = clock(zlib.compress, ply, 1)
    t_unz, back = clock(zlib.decompress, z)
    assert back == ply
    return dict(raw=len(raw), ply=len(ply), zply=len(z), save=t_save, load=t_load, write=t_write,
                read=t_read, zlib=[t_z], unzlib=[t_unz])


def bench_motion(kf: dict, idx: np.ndarray, rows, label: str) -> dict:
    """Bytes of one position-only UPDATE frame, encoded from (and then undone on) the keyframe state."""
    enc, p = kf["enc"], kf["profile"]
    saved = enc.state.copy()
    frame = enc.encode(update=(kf["ids"][idx], {Attr.POSITION: rows.positions}, Attr.POSITION.bit))
    enc.state = saved  # undo, so every motion is coded against the same keyframe state
    d, _, info = decode_frame(frame, p, info=True)
    check = kf["dec"].state.copy()
    check.apply(d)  # the frame's digest is verified here
    if check.digest() != d.digest:
        raise AssertionError("motion frame does not reproduce the encoder's state")
    return dict(profile=kf["name"], label=label, moved=len(idx), updated=d.n_update, bytes=len(frame), info=info)


# ------------------------------------------------------------------------------------------ b
def bench_delta(g, reps: int, warmup: int = 3, seed: int = 0) -> dict:
    """Mixed deltas against a keyframed scene: a fresh delta every repetition, encoder and decoder in step."""
    t0 = time.perf_counter()
    rig = DeltaRig(g, STREAM, room=(reps + warmup) * MIX["n_add"], seed=seed)
    setup_s = time.perf_counter() - t0
    t_assign, t_enc, t_dec, sizes = [], [], [], []
    frame = None
    frames = [rig.keyframe]
    for i in range(warmup + reps):
        md = rig.make()  # untimed: picks the rows, assigns the adds' ids
        de, frame = clock(rig.enc.encode, **md.ops)
        rig.scene.commit(md)
        dd, d = clock(rig.dec.decode_frame, frame)  # digest verified (the frame carries it)
        frames.append(frame)
        if i >= warmup:
            t_enc.append(de)
            t_dec.append(dd)
            sizes.append(len(frame))
    if not rig.in_step():
        raise AssertionError("delta benchmark: decoder and encoder states differ")
    # assign_ids alone for the 500 adds (on a throwaway copy of the encoder's id bookkeeping)
    for _ in range(max(5, reps // 3)):
        probe = Encoder(rig.profile)
        probe.state = rig.enc.state
        dt, _ = clock(probe.assign_ids, md.add.positions)
        t_assign.append(dt)
    _, _, info = decode_frame(frame, rig.profile, info=True)
    ids = id_costs(rig.enc.header_bytes() + b"".join(frames))  # this stream's ids as ranks and as ids
    ids["deltas"] = len(frames) - 1
    return dict(n=len(g), counts=d.counts(), sizes=sizes, encode=t_enc, decode=t_dec, assign=t_assign,
                info=info, setup_s=setup_s, reps=reps, live=len(rig.dec.state), id_costs=ids)


# ------------------------------------------------------------------------------------------ report
def table(headers: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def fmt_ms(ms: float) -> str:
    return f"{ms:.2f}" if ms < 10 else f"{ms:.1f}" if ms < 1000 else f"{ms:.0f}"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else "PASS" if ok else "MISS"


def with_target(text: str, ok: bool | None, target: str) -> str:
    return f"{text} ({verdict(ok)} {target})" if ok is not None else f"{text} ({target} at 1M: n/a)"


def environment(argv: list[str]) -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        rev = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parents[1], timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        rev = "unknown"
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    return dict(
        command="python -m bench.run" + ("" if not argv else " " + " ".join(argv)),
        date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        cpu=cpu, cores=cores, usable=usable, load=" / ".join(f"{x:.2f}" for x in os.getloadavg()),
        python=platform.python_version(), numpy=np.__version__, zstandard=zstandard.__version__,
        flatbuffers=getattr(flatbuffers, "__version__", "?"), codec=codec.__version__, git=rev,
        os=f"{platform.system()} {platform.release()}")


def render(env: dict, n: int, reps: int, kfs: list[dict], peers: dict, motions: list[dict], delta: dict,
           gen_s: dict, realtime: dict | None = None, realtime_before: dict | None = None) -> str:
    full = n == FULL_N
    bpg = lambda b, count: b / count  # noqa: E731
    by = {(k["degree"], k["name"]): k for k in kfs}
    parts = ["# GSD benchmarks", "",
             "Generated by `bench/run.py`; do not edit by hand. Rerun with the command below.", "",
             f"- command: `{env['command']}`",
             f"- date: {env['date']}; git `{env['git']}`",
             f"- machine: {env['cpu']}, {env['cores']} cores ({env['usable']} usable), {env['os']}; "
             f"load average at start {env['load']}",
             f"- software: Python {env['python']}, numpy {env['numpy']}, zstandard {env['zstandard']}, "
             f"flatbuffers {env['flatbuffers']}, gsd-codec {env['codec']}",
             f"- scene size n = {n:,}; times are the median of {reps} runs (deltas: {delta['reps']} fresh "
             f"deltas after 3 warm-up ones), `time.perf_counter` around the one call, cyclic GC paused "
             f"during it. Every timed result is checked (state digests equal) outside the timed region.",
             ""]
    if not full:
        parts += [f"**n = {n:,}, not 1,000,000: the time targets are stated for 1M Gaussians, so their "
                  f"verdicts read n/a.** Size targets hold at any n.", ""]

    # ---- summary
    c3, c0 = by.get((3, DEFAULT)), by.get((0, DEFAULT))
    rows = []
    if c3:
        rows.append([f"SH3 keyframe decode to state ({DEFAULT})", f"{fmt_ms(med_ms(c3['decode']))} ms", "≤ 100 ms",
                     verdict(med_ms(c3["decode"]) <= 100 if full else None)])
        rows.append([f"SH3 keyframe decode + digest verify ({DEFAULT})", f"{fmt_ms(med_ms(c3['verify']))} ms",
                     "≤ 100 ms", verdict(med_ms(c3["verify"]) <= 100 if full else None)])
        rows.append([f"SH3 keyframe encode, ids given ({DEFAULT})", f"{fmt_ms(med_ms(c3['encode']))} ms", "≤ 1 s",
                     verdict(med_ms(c3["encode"]) <= 1000 if full else None)])
        tot = med_ms(c3["encode"]) + med_ms(c3["assign"])
        rows.append([f"SH3 keyframe encode + assign_ids ({DEFAULT})", f"{fmt_ms(tot)} ms", "≤ 1 s",
                     verdict(tot <= 1000 if full else None)])
    if c0:
        rows.append([f"SH0 keyframe decode to state ({DEFAULT})", f"{fmt_ms(med_ms(c0['decode']))} ms", "≤ 40 ms",
                     verdict(med_ms(c0["decode"]) <= 40 if full else None)])
        rows.append([f"SH0 keyframe decode + digest verify ({DEFAULT})", f"{fmt_ms(med_ms(c0['verify']))} ms",
                     "≤ 40 ms", verdict(med_ms(c0["verify"]) <= 40 if full else None)])
    dfull = delta["n"] == FULL_N
    rows.append([f"5k mixed delta encode vs {delta['n']:,} scene ({STREAM})", f"{fmt_ms(med_ms(delta['encode']))} ms", "≤ 2 ms",
                 verdict(med_ms(delta["encode"]) <= T_DELTA_MS if dfull else None)])
    rows.append([f"5k mixed delta decode + apply vs {delta['n']:,} scene ({STREAM})", f"{fmt_ms(med_ms(delta['decode']))} ms",
                 "≤ 2 ms", verdict(med_ms(delta["decode"]) <= T_DELTA_MS if dfull else None)])
    for deg in DEGREES:
        k = by.get((deg, DEFAULT))
        if k:
            v = bpg(k["bytes"], k["n"])
            rows.append([f"SH{deg} keyframe size ({DEFAULT})", f"{v:.2f} B/G", f"< {T_SIZE_BPG[deg]:g} B/G",
                         verdict(v < T_SIZE_BPG[deg])])
    for m in motions:
        if m["profile"] == DEFAULT:
            v = m["bytes"] / max(1, m["updated"])
            rows.append([f"position-only UPDATE, {m['label']} ({DEFAULT})", f"{v:.2f} B/G",
                         f"< {T_MOTION_BPG:g} B/G", verdict(v < T_MOTION_BPG)])
    parts += ["## Targets", "", table(["target", "measured", "goal", "verdict"], rows), ""]
    if realtime is not None:
        parts += ["## The realtime path", "",
                  "What one frame costs each way against the scene, and the scene's keyframe (`bench/realtime.py`, "
                  f"{len(realtime['delta_encode'])} fresh frames of each kind after 5 warm-up ones; keyframes: median "
                  "of 5). Median and p90, ms." + (" *before*: the same command on the tree named in `--before`'s "
                  "file, same machine, same run." if realtime_before else ""), "",
                  realtime_table(realtime, realtime_before), ""]

    # ---- a. keyframes
    rows = []
    for k in kfs:
        deg, name = k["degree"], k["name"]
        b = bpg(k["bytes"], k["n"])
        size = f"{b:.2f}"
        if name == DEFAULT:
            size = f"{b:.2f} ({verdict(b < T_SIZE_BPG[deg])} < {T_SIZE_BPG[deg]:g})"
        enc_ms, dec_ms, ver_ms = med_ms(k["encode"]), med_ms(k["decode"]), med_ms(k["verify"])
        enc_txt = fmt_ms(enc_ms)
        if deg in T_ENCODE_MS:
            enc_txt = with_target(enc_txt, enc_ms <= T_ENCODE_MS[deg] if full else None, f"≤ {T_ENCODE_MS[deg]:g}")
        dec_txt, ver_txt = fmt_ms(dec_ms), fmt_ms(ver_ms)
        if deg in T_DECODE_MS:
            t = T_DECODE_MS[deg]
            dec_txt = with_target(dec_txt, dec_ms <= t if full else None, f"≤ {t:g}")
            ver_txt = with_target(ver_txt, ver_ms <= t if full else None, f"≤ {t:g}")
        rows.append([f"SH{deg}", name, f"{k['bytes'] / 1e6:.2f} MB", size, f"{k['ply'] / k['bytes']:.2f}×",
                     fmt_ms(med_ms(k["assign"])), enc_txt, dec_txt, ver_txt])
    for deg in DEGREES:
        pr = peers.get(deg)
        if pr:
            rows.append([f"SH{deg}", "*float PLY*", f"{pr['ply'] / 1e6:.2f} MB", f"{pr['ply'] / n:.2f}", "1.00×", "",
                         f"{fmt_ms(med_ms(pr['write']))} (write_ply)", f"{fmt_ms(med_ms(pr['read']))} (read_ply)", ""])
    parts += ["## a. Keyframes", "",
              f"{n:,} Gaussians, every profile at SH degree 3 and 0. *encode* is "
              "`Encoder(profile).keyframe(g, ids)` with ids assigned beforehand (quantize, closed-loop state "
              "load with digest, serialize); *assign_ids* is `Encoder.assign_ids` on the same positions. "
              "*decode* is `Decoder(header, verify_digest=False).decode_frame(kf)` (a usable state, digest not "
              "computed); *decode + verify* also hashes the state and checks the frame's digest. Grid: "
              "`Grid.fit` of the positions (default cell bits; slot bits from the fullest cell). zstd level 1. Times in ms; "
              "vs PLY = float PLY size / keyframe size.", "",
              table(["SH", "profile", "keyframe", "B/Gaussian", "vs PLY", "assign_ids", "encode", "decode",
                     "decode + verify"], rows), ""]

    # ---- peers
    rows = []
    for deg in DEGREES:
        pr, k = peers.get(deg), by.get((deg, DEFAULT))
        if not pr or not k:
            continue
        enc_ms, dec_ms = med_ms(k["encode"]), med_ms(k["decode"])
        for label, size, w, r in (("float PLY (write_ply / read_ply, page cache)", pr["ply"], pr["write"], pr["read"]),
                                  ("PLY + zlib level 1 (compress / decompress)", pr["zply"], pr["zlib"], pr["unzlib"]),
                                  ("raw float32 array (np.save / np.load, in memory)", pr["raw"], pr["save"], pr["load"])):
            rows.append([f"SH{deg}", label, f"{size / n:.2f}", f"{size / k['bytes']:.2f}×", fmt_ms(med_ms(w)),
                         fmt_ms(med_ms(r)), f"{enc_ms / med_ms(w):.2f}", f"{dec_ms / med_ms(r):.2f}"])
    parts += [f"### Peers in the same run (ratios against the {DEFAULT} keyframe)", "",
              "No external codec here (SPZ and SOG are compared in QUALITY.md). *size ×* = peer size / "
              f"{DEFAULT} keyframe size; *enc ratio* = {DEFAULT} encode time / peer write time; *dec ratio* = "
              f"{DEFAULT} decode time / peer read time (below 1: GSD is faster). zlib ran once.", "",
              table(["SH", "reference", "B/Gaussian", "size ×", "write ms", "read ms", "enc ratio", "dec ratio"],
                    rows), ""]

    # ---- b. delta
    dc = delta["counts"]
    med_size = statistics.median(delta["sizes"])
    ops = dc["update"] + dc["add"] + dc["delete_ids"]
    rows = [[f"{delta['n']:,}", f"{dc['update']} upd / {dc['add']} add / {dc['delete_ids']} del",
             f"{med_size / 1e3:.1f} kB", f"{med_size / ops:.2f}",
             fmt_ms(med_ms(delta["assign"])),
             with_target(f"{fmt_ms(med_ms(delta['encode']))} [{fmt_ms(pct_ms(delta['encode'], 10))}–"
                         f"{fmt_ms(pct_ms(delta['encode'], 90))}]",
                         med_ms(delta["encode"]) <= T_DELTA_MS if dfull else None, "≤ 2"),
             with_target(f"{fmt_ms(med_ms(delta['decode']))} [{fmt_ms(pct_ms(delta['decode'], 10))}–"
                         f"{fmt_ms(pct_ms(delta['decode'], 90))}]",
                         med_ms(delta["decode"]) <= T_DELTA_MS if dfull else None, "≤ 2")]]
    role_rows = [[r, f"{delta['info'].section_bytes[r]:,}"] for r in ROLES if r in delta["info"].section_bytes]
    meta = delta["info"].frame_bytes - sum(delta["info"].section_bytes.values())
    role_rows.append(["metadata + framing", f"{meta:,}"])
    role_rows.append(["frame", f"{delta['info'].frame_bytes:,}"])
    parts += ["## b. 5,000-Gaussian mixed delta", "",
              f"Profile {STREAM} (the streaming default), SH3, against a keyframed scene of {delta['n']:,} Gaussians. Each repetition "
              f"builds a fresh delta against the current state: {MIX['n_move']:,} random live Gaussians moved by "
              f"N(0, {MOVE_SIGMA} m) per axis, {MIX['n_color']:,} recoloured (f_dc += N(0, {COLOR_SIGMA})), "
              f"{MIX['n_add']} added (densification-style clones: offset by their own size, scales / 1.6), "
              f"{MIX['n_delete']} deleted; the three edited sets are disjoint. *encode* is "
              "`Encoder.encode(update=..., add=..., delete=...)` (quantize against the closed-loop state, "
              "apply, digest, serialize) with the adds' ids assigned beforehand; *decode + apply* is "
              "`Decoder.decode_frame` on a decoder holding the scene (CRC, parse, decompress, validate, "
              f"apply all-or-nothing, digest verified). Median [p10–p90] of {delta['reps']} deltas, ms.", "",
              table(["scene", "ops", "frame", "B/op", "assign_ids (500)", "encode ms", "decode + apply ms"], rows),
              "", "Bytes by section of the last delta:", "", table(["section", "bytes"], role_rows), ""]
    ic = delta.get("id_costs")
    if ic and ic["ids"]:
        ratio = ic["ranked_bytes"] / max(ic["id_bytes"], 1)
        parts += [f"The UPDATE and DELETE ids of all {ic['deltas']:,} deltas ({ic['ids']:,} ids; "
                  "`codec.stream.id_costs`): "
                  f"{ic['id_bytes'] / ic['ids']:.3f} bytes per id as ids (format 1.1, what this stream sends), "
                  f"**{ic['ranked_bytes'] / ic['ids']:.3f} as ranks** among the live ids, gap coded where that is "
                  f"smaller (1.4; `Encoder(ranked_ids=True, gap_code=True)`): "
                  f"{with_target(f'{ratio:.3f}x', ratio <= T_RANKED_RATIO, f'≤ {T_RANKED_RATIO}x')}.", ""]

    # ---- c. motions
    rows = []
    for m in motions:
        sb = m["info"].section_bytes
        u = max(1, m["updated"])
        other = m["bytes"] - sb.get("ids", 0) - sb.get("position", 0)
        v = m["bytes"] / u
        total = f"{v:.2f}" + (f" ({verdict(v < T_MOTION_BPG)} < 2)" if m["profile"] == DEFAULT else "")
        rows.append([m["profile"], m["label"], f"{m['moved']:,}", f"{m['updated']:,}", f"{m['bytes'] / 1e3:.1f} kB",
                     total, f"{sb.get('ids', 0) / u:.2f}", f"{sb.get('position', 0) / u:.2f}", f"{other / u:.3f}"])
    step = motions[0]["step"] if motions else float("nan")
    parts += ["## c. Position-only UPDATE of small motions", "",
              f"SH3 scene of {n:,}; {MOTION_FRACTION:.0%} of the Gaussians moved by N(0, σ) per axis with "
              f"σ = {MOTION_STEPS:g} position steps of the {DEFAULT} profile ({step:.3g} m); the same motion for "
              "every profile, each coded as one UPDATE (mask = POSITION) against the keyframe state. *random*: "
              "`codec.synthetic.synthetic_motion` (a random subset, ids spread over the whole scene); "
              "*coherent*: the Gaussians nearest one random point (`bench.scenes.coherent_motion`, a moving "
              "region, ids close in Morton order). *updated*: Gaussians whose code changed (the encoder drops "
              "the rest). Bytes per updated Gaussian, total and by section.", "",
              table(["profile", "motion", "moved", "updated", "frame", "B/G", "ids B/G", "position B/G",
                     "meta B/G"], rows), ""]

    # ---- d. breakdown
    cols = [(deg, name) for deg in DEGREES for name in PROFILES if (deg, name) in by]
    rows = []
    for r in ROLES:
        if any(r in by[c]["info"].section_bytes for c in cols):
            rows.append([r] + [f"{by[c]['info'].section_bytes.get(r, 0) / by[c]['n']:.3f}" for c in cols])
    rows.append(["metadata + framing"] + [
        f"{(by[c]['info'].frame_bytes - sum(by[c]['info'].section_bytes.values())) / by[c]['n']:.5f}" for c in cols])
    rows.append(["**total**"] + [f"**{by[c]['bytes'] / by[c]['n']:.3f}**" for c in cols])
    rows.append(["raw codes before zstd"] + [f"{by[c]['info'].raw_bytes / by[c]['n']:.3f}" for c in cols])
    parts += ["## d. Keyframe bytes per Gaussian by section", "",
              "Stored (compressed) bytes of each section role divided by n, from "
              "`codec.wire.decode_frame(..., info=True).section_bytes`.", "",
              table(["section"] + [f"SH{d} {p}" for d, p in cols], rows), ""]

    # ---- data
    doc = (synthetic_module.__doc__ or "").strip()
    parts += ["## How the data was made", "",
              f"Scenes are `codec.synthetic.synthetic_scene(n, sh_degree, seed)` (SH3: {gen_s.get(3, 0):.1f} s, "
              f"SH0: {gen_s.get(0, 0):.1f} s to generate here), one call per SH degree with the same seed. The "
              "generator's own description (module docstring of codec/synthetic.py), quoted:", ""]
    parts += ["> " + line if line else ">" for line in doc.splitlines()]
    parts.append("")
    return "\n".join(parts)


# ------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=None, help=f"Gaussians per scene (default {FULL_N:,}; --quick: {QUICK_N:,})")
    ap.add_argument("--quick", action="store_true", help="CI smoke run: n=100k, fewer repetitions, no file written "
                                                         "unless --out is given")
    ap.add_argument("--out", default=None, help="report file (default BENCHMARKS.md; none with --quick)")
    ap.add_argument("--repeat", type=int, default=None, help="runs per keyframe timing, median reported (default 5; "
                                                             "--quick: 3)")
    ap.add_argument("--delta-reps", type=int, default=None, help="fresh deltas timed (default 40; --quick: 30)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--before", default=None, help="realtime figures of an earlier tree, from "
                                                   "`python -m bench.realtime --json FILE` there")
    args = ap.parse_args(argv)
    n = args.n or (QUICK_N if args.quick else FULL_N)
    reps = args.repeat or (3 if args.quick else 5)
    delta_reps = args.delta_reps or (30 if args.quick else 40)
    out = args.out or (None if args.quick else "BENCHMARKS.md")
    if n < 10_000 or reps < 1 or delta_reps < 1:
        ap.error("need --n >= 10000 (the mixed delta edits 4,500 live Gaussians) and positive repetition counts")
    env = environment(argv)
    t_start = time.perf_counter()

    kfs, peers, motions, gen_s, scenes = [], {}, [], {}, {}
    for deg in DEGREES:
        gen_s[deg], g = clock(synthetic_scene, n, deg, args.seed)
        scenes[deg] = g
        log(f"scene SH{deg}: {n:,} Gaussians in {gen_s[deg]:.1f} s")
        for name in PROFILES:
            k = bench_keyframe(g, name, reps)
            log(f"  keyframe SH{deg} {name:8s} {k['bytes'] / n:7.2f} B/G  assign {fmt_ms(med_ms(k['assign']))} ms  "
                f"encode {fmt_ms(med_ms(k['encode']))} ms  decode {fmt_ms(med_ms(k['decode']))} ms  "
                f"verify {fmt_ms(med_ms(k['verify']))} ms")
            if deg == 3:
                step = position_step(profile_for(g, DEFAULT))
                sigma = MOTION_STEPS * step
                moves = (("random 10%", synthetic_motion(g, MOTION_FRACTION, sigma, args.seed + 1)),
                         ("coherent 10%", coherent_motion(g, MOTION_FRACTION, sigma, args.seed + 2)))
                for label, (idx, rows) in moves:
                    m = bench_motion(k, idx, rows, label)
                    m["step"] = step
                    motions.append(m)
                    log(f"    motion {label}: {m['bytes'] / max(1, m['updated']):.2f} B/updated G "
                        f"({m['updated']:,} of {m['moved']:,} moved)")
            for key in ("enc", "dec", "ids"):  # free the states before the next profile
                k.pop(key)
            kfs.append(k)
        peers[deg] = bench_peers(g, reps)
        log(f"  peers SH{deg}: PLY {peers[deg]['ply'] / n:.1f} B/G, zlib {peers[deg]['zply'] / n:.1f} B/G")
        if deg != 3:
            scenes.pop(deg)
    delta = bench_delta(scenes.pop(3), delta_reps, seed=args.seed)
    log(f"delta vs {delta['n']:,}: encode {fmt_ms(med_ms(delta['encode']))} ms, decode+apply "
        f"{fmt_ms(med_ms(delta['decode']))} ms, {statistics.median(delta['sizes']) / 1e3:.1f} kB")

    realtime = measure_realtime(n, delta_reps, seed=args.seed, log=log)
    before = json.loads(Path(args.before).read_text()) if args.before else None
    report = render(env, n, reps, kfs, peers, motions, delta, gen_s, realtime, before)
    print(report)
    if out:
        Path(out).write_text(report)
        log(f"wrote {out}")
    log(f"total {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
