"""RENDER_BENCH.md's GPU section in one command: the viewer's two paths beside gsplat, same scenes, same GPU.

    python reference_viewer/render/render_bench.py --node NODE --webgpu PATH/TO/webgpu/index.js
        [--scene playbot.sog] [--sizes 1000000,4000000] [--frames 30] [--stream 5000,30[,500]] [--width 1920 --height 1080]
        [--gsplat | --no-gsplat] [--reference | --no-reference] [--work DIR] [--out reference_viewer/RENDER_BENCH.md]

Scenes (1920x1080, SH 3 unless the scene has less, bench.mjs's three orbit views):
  * bench: bench.mjs's generated scene at the first size (ground + boxes, ~1.5 cm splats);
  * trained: codec/synthetic.py's trained-3DGS statistics at every size (tests/browser/synthetic_raw.py);
  * the real scene of --scene (any file codec.interop.scene reads, or slot floats written by scene_raw.py).
Per scene: bench.mjs --path raster,tiles (frame ms per view, FPS, GPU split, PSNR of the tile path's
image against the raster path's) with --stream (frame p99 while deltas of 5k Gaussians arrive 30 times a
second, against the still scene's p99); with --reference (default) bench.mjs --psnr on the first view
(each path's PSNR against quality/rasterizer.py, the SPEC's reference); then gsplat_bench.py on the same scene and cameras (CUDA events
around whole gsplat.rasterization calls). Writes the tables between the markers of --out (or appends
them) and the raw results as JSON beside the tables' source (--work). Needs node with the `webgpu`
package, python3 with numpy, and for --gsplat torch and gsplat on a CUDA GPU.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BEGIN, END = "<!-- render_bench: begin -->", "<!-- render_bench: end -->"
GOALS_MS = {("bench", 1_000_000): 10.0, ("trained", 1_000_000): 5.0, ("trained", 4_000_000): 16.0}
STREAM_RATIO = 1.2
GSPLAT_RATIO = 1.5
REFERENCE_VIEW = "20"        # bench.mjs's first orbit view (azimuth, degrees)


def run(cmd: list[str], log, timeout: float = 1800) -> list[dict]:
    """Run a command; its JSON lines (objects) as dicts, every line echoed to ``log``. A command that
    outlives ``timeout`` is killed and what it printed is kept."""
    log(f"$ {' '.join(cmd)}")
    try:
        p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        text = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        p = subprocess.CompletedProcess(cmd, -9, text, f"killed after {timeout:g} s")
    out = []
    for line in p.stdout.splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
        log(line[:400])
    if p.returncode != 0 and not out:
        log(p.stderr[-3000:])
        raise RuntimeError(f"{cmd[0]} {cmd[1] if len(cmd) > 1 else ''} failed ({p.returncode})")
    return out


def scenes(a, work: Path, log):
    """(kind, n, slot-float file) per scene to measure, each written into ``work`` just before it is
    measured: the trained statistics at the first size, the bench scene, the real scene, then the
    trained statistics at the other sizes (the largest last: a run cut short has the rest)."""
    py = sys.executable
    sizes = [int(s) for s in a.sizes.split(",")]

    def trained(n: int):
        f = work / f"trained_{n}.f32"
        if not f.exists():
            run([py, str(REPO / "tests/browser/synthetic_raw.py"), str(n), "3", "10", str(f)], log)
        return "trained", n, str(f)

    yield trained(sizes[0])
    bench = work / f"bench_{sizes[0]}.f32"
    if not bench.exists():
        run([a.node, str(HERE / "bench.mjs"), "--webgpu", a.webgpu, "--n", str(sizes[0]), "--sh", "3", "--path", "raster",
             "--frames", "1", "--views", "20", "--width", "64", "--height", "64", "--save-raw", str(bench)], log)
    yield "bench", sizes[0], str(bench)
    if a.scene:
        f = Path(a.scene)
        if f.suffix != ".f32":
            raw = work / (f.name.split(".")[0] + ".f32")
            if not raw.exists():
                run([py, str(HERE / "scene_raw.py"), str(f), str(raw)], log)
            f = raw
        yield Path(a.scene).name, json.loads(f.with_suffix(".json").read_text())["n"], str(f)
    for n in sizes[1:]:
        yield trained(n)


def reference_psnr(a, f: str, n: int, work: Path, log) -> dict:
    """Each path's PSNR (dB) against quality/rasterizer.py, the first view only (the numpy reference
    takes ~25 s a view at 1080p): bench.mjs --psnr, which runs bench_psnr.py on its images."""
    rows = run([a.node, str(HERE / "bench.mjs"), "--webgpu", a.webgpu, "--raw", f, "--n", str(n), "--sh", "3",
                "--frames", "1", "--views", REFERENCE_VIEW, "--path", "raster,tiles",
                "--width", str(a.width), "--height", str(a.height), "--psnr", str(work / "psnr")], log)
    return {r["image"].split("_")[0]: r["psnr"] for r in rows if "psnr" in r and "image" in r}


def measure(a, work: Path, log, done=lambda res: None) -> dict:
    """Every scene through bench.mjs, then gsplat; ``done(res)`` after each step (partial tables)."""
    res = {"width": a.width, "height": a.height, "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "scenes": [], "gsplat": None}
    for kind, n, f in scenes(a, work, log):
        rows = run([a.node, str(HERE / "bench.mjs"), "--webgpu", a.webgpu, "--raw", f, "--n", str(n), "--sh", "3",
                    "--frames", str(a.frames), "--path", "raster,tiles", "--stream", a.stream,
                    "--width", str(a.width), "--height", str(a.height)], log)
        adapter = next((r.get("adapter") for r in rows if "adapter" in r), None)
        res["adapter"] = adapter or res.get("adapter")
        res["scenes"].append({"kind": kind, "n": n, "file": f, "paths": [r for r in rows if "path" in r]})
        if a.reference:
            res["scenes"][-1]["reference"] = reference_psnr(a, f, n, work, log)
        done(res)
    if a.gsplat:
        files = [s["file"] for s in res["scenes"]]
        try:
            res["gsplat"] = run([sys.executable, str(HERE / "gsplat_bench.py"), *files, "--frames", str(a.frames),
                                 "--width", str(a.width), "--height", str(a.height)], log)
        except RuntimeError as e:                  # the viewer's own figures still go out
            log(f"gsplat: {e}")
        done(res)
    return res


def _ms(xs) -> str:
    return " / ".join(f"{x:.2f}" for x in xs)


def _db(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def gpu_ms(path: dict) -> float | None:
    """The slowest view's GPU time: the sum of its timestamped passes (None without timestamps). Beside
    the frame's wall time it leaves out submission and the wait for the GPU's fence, which cost
    several ms a frame on some hosts (gsplat's CUDA events leave them out too)."""
    sums = [sum(v for v in g.values() if v is not None) for g in path.get("gpu") or [] if g]
    return max(sums) if sums else None


def tables(res: dict, command: str) -> str:
    g_info = res["gsplat"][0] if res["gsplat"] else None
    g_rows = {Path(r["scene"]).name: r for r in (res["gsplat"] or [])[1:]}
    lines = [BEGIN, "", "## GPU figures: both paths beside gsplat", "",
             f"- command: `{command}`",
             f"- date: {res['date']}; adapter (Dawn): {res.get('adapter')}"
             + (f"; gsplat {g_info['gsplat']}, torch {g_info['torch']}, {g_info['device']}" if g_info else ""),
             f"- {res['width']}x{res['height']}, bench.mjs's three orbit views, frames timed back to back (CPU wall time around "
             "onSubmittedWorkDone); GPU split from timestamps (GPU time: their sum, slowest view); PSNR of the tile path's image against the raster path's "
             "(images clipped to [0, 1]), and of each path's image of the first view against the reference rasterizer's "
             "(`quality/rasterizer.py`, SPEC.md Appendix B; `bench.mjs --psnr`); gsplat: CUDA events around whole `gsplat.rasterization` calls (classic, "
             "SH evaluated by gsplat) on the same scene and cameras.", "",
             "| scene | Gaussians | path | frame ms (3 views) | FPS | GPU project / sort / bin / raster ms (view 1) | "
             "tiles PSNR vs raster dB | PSNR vs rasterizer.py dB (view 1) | gsplat ms | ours / gsplat (best path, slowest views) | "
             "GPU time ours / gsplat | goal | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    streams = []
    for s in res["scenes"]:
        g = g_rows.get(Path(s["file"]).name)
        best = min((max(p["frameMs"]) for p in s["paths"]), default=None)
        goal = GOALS_MS.get((s["kind"], s["n"]))
        for p in s["paths"]:
            gp = p["gpu"][0]
            split = " / ".join("-" if gp.get(k) is None else f"{gp[k]:.2f}" for k in ("projectMs", "sortMs", "binMs", "rasterMs"))
            top = max(p["frameMs"]) == best          # the scene's faster path carries the goal and the ratio
            ratio = gpu_ratio = ""
            if g and top:                            # slowest view against slowest view
                r = best / max(g["frameMs"])
                ratio = f"{r:.2f} ({'met' if r <= GSPLAT_RATIO else 'missed'} <= {GSPLAT_RATIO:g})"
                gpu = gpu_ms(p)
                if gpu is not None:
                    gpu_ratio = f"{gpu / max(g['frameMs']):.2f}"
            verdict = ("met" if best <= goal else "missed") if goal and top else ""
            lines.append(f"| {s['kind']} | {s['n']:,} | {p['path']} | {_ms(p['frameMs'])} | "
                         f"{min(p['fps']):.0f}-{max(p['fps']):.0f} | {split} | "
                         f"{_ms(p['psnrVsFirst']) if p.get('psnrVsFirst') else '-'} | "
                         f"{_db(s.get('reference', {}).get(p['path']))} | "
                         f"{_ms(g['frameMs']) if g and p['path'] == s['paths'][0]['path'] else ''} | {ratio} | {gpu_ratio} | "
                         f"{f'<= {goal:g} ms' if goal and top else ''} | {verdict} |")
            if p.get("stream"):
                streams.append((s, p))
    lines += ["", "Frame times while the scene changes (`--stream`: each frame timed alone, sync + render + "
              "onSubmittedWorkDone; deltas of k Gaussians written into the store r times a second, between two frames, "
              "and uploaded by `sync()` as they arrive, as the viewer does; still and streaming frames in alternating "
              "blocks of 50, a full V8 collection before each block, untimed (the node harness's garbage, see "
              f"bench.mjs); goal: p99 while streaming <= {STREAM_RATIO}x the still scene's p99). *Frame after a delta*: "
              "the frames that drew a delta first; *upload*: `sync()`'s CPU time per delta, between frames; "
              "*GC frames*: timed frames that a V8 collection still fell in, still / streaming:", "",
              "| scene | Gaussians | path | k x r/s | frames per sample | deltas | still p50 / p99 ms | streaming p50 / p99 ms "
              "| frame after a delta p50 / p99 ms | upload p50 / p99 ms | GC frames | p99 ratio | verdict |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s, p in streams:
        t = p["stream"]
        lines.append(f"| {s['kind']} | {s['n']:,} | {p['path']} | {t['k']:,} x {t['rate']:g} | {t['frames']} | {t['deltas']} | "
                     f"{t['steadyP50']:.2f} / {t['steadyP99']:.2f} | {t['streamP50']:.2f} / {t['streamP99']:.2f} | "
                     f"{t['deltaFrameP50']:.2f} / {t['deltaFrameP99']:.2f} | {t['syncMsP50']:.2f} / {t['syncMsP99']:.2f} | "
                     f"{t['gcFramesSteady']} / {t['gcFramesStream']} | "
                     f"{t['p99Ratio']:.2f} | {'met' if t['p99Ratio'] <= STREAM_RATIO else 'missed'} |")
    lines += ["", END]
    return "\n".join(lines) + "\n"


def write(out: Path, text: str) -> None:
    old = out.read_text() if out.exists() else "# Reference viewer benchmarks\n"
    if BEGIN in old and END in old:
        new = old[:old.index(BEGIN)] + text + old[old.index(END) + len(END) + 1:]
    else:
        new = old.rstrip("\n") + "\n\n" + text
    out.write_text(new)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--node", default="node")
    ap.add_argument("--webgpu", default=str(REPO / "node_modules/webgpu/index.js"))
    ap.add_argument("--scene", help="a real scene (any splat file, or scene_raw.py's .f32)")
    ap.add_argument("--sizes", default="1000000,4000000", help="trained-statistics sizes; the bench scene takes the first")
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--stream", default="5000,30",
                    help="k,r[,f]: deltas of k Gaussians r times a second, f frames per sample (bench.mjs: 500)")
    ap.add_argument("--gsplat", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--reference", action=argparse.BooleanOptionalAction, default=True,
                    help="each path's PSNR against quality/rasterizer.py, first view (numpy: ~25 s a scene at 1080p)")
    ap.add_argument("--work", default=os.environ.get("TMPDIR", "/tmp") + "/render_bench")
    ap.add_argument("--out", default=str(REPO / "reference_viewer/RENDER_BENCH.md"))
    a = ap.parse_args(argv)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    cmd = "python reference_viewer/render/render_bench.py " + " ".join(
        x for x in (f"--scene {Path(a.scene).name}" if a.scene else "", f"--sizes {a.sizes}", f"--frames {a.frames}",
                    "" if (a.width, a.height) == (1920, 1080) else f"--width {a.width} --height {a.height}",
                    f"--stream {a.stream}", "" if a.gsplat else "--no-gsplat",
                    "" if a.reference else "--no-reference") if x)

    def done(res: dict) -> None:             # the tables so far: a run cut short keeps what it measured
        (work / "render_bench.json").write_text(json.dumps(res, indent=1))
        write(Path(a.out), tables(res, cmd))

    res = measure(a, work, lambda s: print(s, flush=True), done)
    print(tables(res, cmd))
    return 0


if __name__ == "__main__":
    sys.exit(main())
