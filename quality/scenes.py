"""Real scenes for ``python -m quality.compare --scenes DIR``: GSD beside SPZ v4 and SOG from splat-transform.

Synthetic scenes say how the quantizers behave; real captures say what a user
gets. Each scene file (PLY float or compressed, .splat, .spz, .sog, .ksplat) is
first converted to a float PLY by splat-transform, as a new user would, and that
float scene is the reference. The GSD profiles are encoded through the `gsd
encode` CLI's own setup (``codec.cli.encoder_for`` with the CLI parser's
defaults), so the numbers follow whatever the CLI does. SPZ v4 and SOG are
written *and* read back by splat-transform (PLY -> format -> PLY): independent
implementations, not this repository's.

Every format decodes every Gaussian. Only rendering may be thinned
(``max_render``): a deterministic, spatially uniform subsample chosen by index
from the reference, and the same indices taken from every decoded scene, so the
PSNR compares like with like. That needs each decoded scene in the reference's
order: GSD's ids give it exactly; splat-transform keeps the order of a
Morton-ordered input (its SOG writer Morton-sorts, stably), so the reference is
converted with ``--morton-order`` and the order of every splat-transform round
trip is checked against the reference positions.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from codec import Decoder, Gaussians
from codec.ply import ply_size_bytes, read_ply, write_ply
from codec.profile import PRESETS
from codec.spatial import morton_encode

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCENE_SUFFIXES = (".ply", ".splat", ".spz", ".sog", ".ksplat")   # .compressed.ply is a .ply
UP = (0.0, -1.0, 0.0)     # trained captures are usually y-down (COLMAP); python -m quality assumes the same for a PLY


class SceneError(Exception):
    """A problem with the command line's scenes or tools (the CLI exits 2 with this message)."""


# ------------------------------------------------------------------------------------------ inputs
def find_splat_transform(explicit: str | None = None) -> str:
    """Path of the splat-transform CLI: ``explicit``, else the repository's node_modules, else PATH."""
    candidates = [explicit] if explicit else [os.path.join(REPO, "node_modules", ".bin", "splat-transform"),
                                               shutil.which("splat-transform")]
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    where = explicit or "node_modules/.bin/splat-transform"
    raise SceneError(f"splat-transform not found ({where}): install it with `npm ci` in the repository root "
                     f"({REPO}), which needs Node.js >= 18")


def scene_files(folder: str) -> list[str]:
    """The scene files of ``folder`` (not recursive), sorted by name."""
    if not os.path.exists(folder):
        raise SceneError(f"{folder}: no such folder")
    if not os.path.isdir(folder):
        raise SceneError(f"{folder}: not a folder (give the folder that holds the scenes)")
    found = sorted(os.path.join(folder, f) for f in os.listdir(folder)
                   if f.lower().endswith(SCENE_SUFFIXES) and os.path.isfile(os.path.join(folder, f)))
    if not found:
        raise SceneError(f"{folder}: no scene files (looked for {', '.join(SCENE_SUFFIXES)})")
    return found


class ToolCall:
    """One splat-transform call in the background: SOG's k-means takes minutes on a CPU, the rest can run meanwhile.

    ``wait`` returns the call's own wall time (start to exit, recorded by a
    watcher thread), not the time until someone asked.
    """

    def __init__(self, tool: str, *args: str):
        self.args = args
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen([tool, "-q", "-w", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.seconds, self.output = None, ("", "")
        self._watch = threading.Thread(target=self._finish, daemon=True)
        self._watch.start()

    def _finish(self) -> None:
        self.output = self.proc.communicate()
        self.seconds = time.perf_counter() - self.t0

    def running(self) -> bool:
        return self._watch.is_alive()

    def wait(self) -> float:
        self._watch.join()
        if self.proc.returncode != 0:
            out, err = self.output
            tail = (err or out).strip().splitlines()[-5:]
            raise RuntimeError(f"splat-transform {' '.join(self.args)} failed (exit {self.proc.returncode}): "
                               + " | ".join(tail))
        return self.seconds

    def stop(self) -> None:
        """End the call if it still runs (an error elsewhere in the scene)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self._watch.join()


class CachedWrite:
    """A splat-transform write served from ``cache`` when the same tool wrote the same reference with the same options.

    SOG's CPU k-means takes longer than everything else in a scene together;
    the peers' files do not change when GSD does, so a rerun after a codec
    change can reuse them. The key is the reference PLY's SHA-256, the tool's
    version and the write options; the recorded write time and date come along.
    """

    def __init__(self, tool: str, cache: str, ref_ply: str, opts: tuple[str, ...], path: str):
        self.args, self.path, self.version = (*opts, ref_ply, path), path, tool_version(tool)
        h = hashlib.sha256()
        for part in (self.version, *opts, os.path.splitext(path)[1]):
            h.update(part.encode() + b"\0")
        with open(ref_ply, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 24), b""):
                h.update(chunk)
        self.entry = os.path.join(cache, h.hexdigest()[:32] + os.path.splitext(path)[1])
        self.hit = os.path.isfile(self.entry) and os.path.isfile(self.entry + ".json")
        self.call = None if self.hit else ToolCall(tool, *self.args)
        self.when = ""

    def running(self) -> bool:
        return self.call is not None and self.call.running()

    def wait(self) -> float:
        if self.hit:
            with open(self.entry + ".json") as f:
                meta = json.load(f)
            shutil.copyfile(self.entry, self.path)
            self.when = meta["date"]
            return float(meta["seconds"])
        seconds = self.call.wait()
        os.makedirs(os.path.dirname(self.entry) or ".", exist_ok=True)
        shutil.copyfile(self.path, self.entry + ".tmp")
        with open(self.entry + ".json", "w") as f:
            json.dump({"seconds": seconds, "options": list(self.args[:-2]), "tool": self.version,
                       "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}, f)
        os.replace(self.entry + ".tmp", self.entry)
        return seconds

    def stop(self) -> None:
        if self.call is not None:
            self.call.stop()


def write_call(tool: str, cache: str | None, ref_ply: str, opts: tuple[str, ...], path: str):
    """A background splat-transform write of ``ref_ply`` to ``path`` (through ``cache`` when one is given)."""
    if cache:
        return CachedWrite(tool, cache, ref_ply, opts, path)
    return ToolCall(tool, *opts, ref_ply, path)


def run_tool(tool: str, *args: str) -> float:
    """Run splat-transform quietly; its wall time in s. A failure raises with the tool's own message."""
    return ToolCall(tool, *args).wait()


def tool_version(tool: str) -> str:
    try:
        p = subprocess.run([tool, "--version"], capture_output=True, text=True)
        return (p.stdout.strip() or p.stderr.strip() or "unknown").splitlines()[0]
    except OSError:
        return "unknown"


# ------------------------------------------------------------------------------------------ order, subsample
def spatial_subsample(positions: np.ndarray, n: int) -> np.ndarray:
    """Ascending indices of ``n`` Gaussians spread evenly through space: every k-th along a Morton curve.

    Deterministic (depends on the positions only, not on their order), so any
    scene in the same order as ``positions`` can be thinned to the same Gaussians.
    """
    total = len(positions)
    if n <= 0 or n >= total:
        return np.arange(total)
    p = positions.astype(np.float64)
    lo, hi = p.min(0), p.max(0)
    cells = np.clip((p - lo) / np.maximum(hi - lo, 1e-30) * 1024, 0, 1023).astype(np.int64)
    order = np.lexsort((p[:, 2], p[:, 1], p[:, 0], morton_encode(cells, 10)))   # ties in a cell: by position
    return np.sort(order[(np.arange(n, dtype=np.int64) * total) // n])


def check_order(ref: Gaussians, dec: Gaussians, name: str) -> None:
    """Raise unless ``dec`` holds the reference's Gaussians in the reference's order (positions agree)."""
    if len(dec) != len(ref):
        raise RuntimeError(f"{name} decoded {len(dec):,} Gaussians, the reference has {len(ref):,}: "
                           "render every Gaussian (--max-render-gaussians 0) to compare it")
    extent = float(np.ptp(ref.positions, axis=0).max()) if len(ref) else 1.0
    err = np.abs(dec.positions.astype(np.float64) - ref.positions).max(axis=1)
    if len(err) and (np.median(err) > 5e-3 * extent or np.quantile(err, 0.99) > 5e-2 * extent):
        raise RuntimeError(f"{name} decoded the Gaussians in another order than the reference (median position "
                           f"difference {np.median(err):.3g} of extent {extent:.3g}): render every Gaussian "
                           "(--max-render-gaussians 0) to compare it")


OPACITY_CLAMP = 20.0   # logit: sigmoid(20) rounds to 1.0 in float32, so clamping +-inf to it changes no render


def finite_reference(g: Gaussians) -> tuple[Gaussians, int]:
    """``g`` with opacity logits of +-inf (alpha exactly 1 or 0, as 8-bit alpha formats decode) clamped to +-20.

    Returns the scene and how many values were clamped. Any other non-finite
    value is an error: there is no faithful finite stand-in for it.
    """
    bad = [a for a in ("positions", "scales", "rotations", "sh_dc", "sh_rest") if not np.isfinite(getattr(g, a)).all()]
    if bad or np.isnan(g.opacities).any():
        raise RuntimeError("the float PLY has NaN or infinite " + ", ".join(bad or ["opacity"]) + " values")
    inf = np.isinf(g.opacities)
    if not inf.any():
        return g, 0
    out = g.take(np.arange(len(g)))
    out.opacities = np.clip(g.opacities, -OPACITY_CLAMP, OPACITY_CLAMP).astype(np.float32)
    return out, int(inf.sum())


# ------------------------------------------------------------------------------------------ formats
@dataclass
class Row:
    name: str
    nbytes: int
    encode_s: float
    decode_s: float
    decoded: Gaussians
    note: str = ""
    psnr: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)


def cli_profile() -> str:
    """The profile `gsd encode` uses when none is given (read from its parser, so a new default shows up here)."""
    from codec.cli import build_parser
    return build_parser().parse_args(["encode", "in.ply", "out.gsd"]).profile


def gsd_profiles() -> list[str]:
    """Every preset, so each real scene shows all of them, the CLI's default among them."""
    return list(dict.fromkeys([*PRESETS, cli_profile()]))


def _warm_up(ref: Gaussians, args) -> None:
    """Encode and decode a few Gaussians first, so compiling the codec's kernels is not timed."""
    from codec.cli import encoder_for
    g, enc = encoder_for(ref.take(np.arange(min(len(ref), 256))), args)
    frame = enc.keyframe(g, ids=enc.assign_ids(g.positions))
    Decoder(enc.header_bytes()).decode_frame(frame)


def gsd_row(ref: Gaussians, profile: str) -> Row:
    """One keyframe encoded as `gsd encode --profile PROFILE` does it, decoded, in the reference's order.

    The encoder comes from the CLI's own ``encoder_for`` and parser defaults, so
    a change to how the CLI fits grids or ranges shows up here.
    """
    from codec.cli import build_parser, encoder_for
    args = build_parser().parse_args(["encode", "reference.ply", "out.gsd", "--profile", profile])
    _warm_up(ref, args)
    t = time.perf_counter()
    g, enc = encoder_for(ref, args)
    ids = enc.assign_ids(g.positions)
    frame = enc.keyframe(g, ids=ids)
    header = enc.header_bytes()
    t_enc = time.perf_counter() - t
    t = time.perf_counter()
    dec = Decoder(header)
    dec.decode_frame(frame)
    dec_ids, out = dec.state.to_gaussians()
    t_dec = time.perf_counter() - t
    where = np.searchsorted(dec_ids, ids)                     # to_gaussians lists ids ascending
    if len(dec_ids) != len(ids) or not np.array_equal(dec_ids[np.minimum(where, len(dec_ids) - 1)], ids):
        raise RuntimeError(f"GSD {profile}: decoded ids differ from the encoder's")
    name = f"GSD {profile}" + (" (default)" if profile == cli_profile() else "")
    return Row(name, len(header) + len(frame), t_enc, t_dec, out.take(where))


def tool_row(tool: str, written: "ToolCall | CachedWrite", path: str, ref: Gaussians, name: str) -> Row:
    """Finish a splat-transform write of ``path``, read it back to a float PLY with splat-transform too."""
    t_enc = written.wait()
    cached = getattr(written, "when", "")
    back = path + ".back.ply"
    t_dec = run_tool(tool, path, back)
    out = read_ply(back)
    check_order(ref, out, name)
    os.remove(back)
    return Row(name, os.path.getsize(path), t_enc, t_dec, out,
               note="splat-transform CLI both ways: " + " ".join(written.args[:-2])
               + (f"; file and write time from the cache (written {cached})" if cached else ""))


# ------------------------------------------------------------------------------------------ one scene
@dataclass
class SceneReport:
    path: str
    n: int
    sh_degree: int
    source_bytes: int
    convert_s: float
    rendered: int
    rows: list[Row]
    seconds: float
    clamped: int = 0          # opacity logits of +-inf clamped in the reference
    raw_error: str = ""       # what `gsd encode` said about the unclamped float PLY


def _bar(quiet: bool, **kw) -> tqdm:
    """A tqdm bar on stderr, off with --quiet or when stderr is not a terminal (as the gsd CLI's)."""
    disable = quiet or not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty())
    return tqdm(file=sys.stderr, disable=disable, leave=False, dynamic_ncols=True, **kw)


def measure_scene(path: str, tool: str, *, profiles, views: int, size: int, max_render: int,
                  sog_opts: tuple[str, ...], cache: str | None = None, quiet: bool = False,
                  up: tuple[float, float, float] = UP) -> SceneReport:
    """Every format's row for one scene file: sizes, times, and PSNR/SSIM of its renders against the reference's.

    The SOG write (k-means, minutes on a CPU) starts first and runs beside the
    GSD and SPZ rows and their renders; each row is rendered as soon as it is
    decoded, so only one decoded copy of a big scene is held at a time.
    """
    from .compare import default_views, render_views
    from .metrics import psnr, ssim
    t_all = time.perf_counter()
    label = os.path.basename(path)
    log = (lambda m: None) if quiet else (lambda m: print(f"[{label}] {m}", file=sys.stderr, flush=True))
    with tempfile.TemporaryDirectory(prefix="gsd_quality_") as tmp:
        ref_ply = os.path.join(tmp, "reference.ply")
        log("converting to a float PLY with splat-transform")
        t_conv = run_tool(tool, path, "--morton-order", ref_ply)
        ref = read_ply(ref_ply)
        if len(ref) == 0:
            raise RuntimeError(f"{label}: the scene is empty")
        ref, clamped = finite_reference(ref)
        raw_error = ""
        if clamped:                            # what a user running `gsd encode` on the converted file meets
            try:
                gsd_row(read_ply(ref_ply), cli_profile())
            except ValueError as e:
                raw_error = str(e)
            write_ply(ref_ply, ref)            # every format then encodes the same, clamped, reference
            log(f"{clamped} opacity values of +-inf clamped to +-{OPACITY_CLAMP:g}"
                + (f" (`gsd encode` of the unclamped file: {raw_error})" if raw_error else ""))
        sog_path, spz_path = os.path.join(tmp, "out.sog"), os.path.join(tmp, "out.spz")
        sog = write_call(tool, cache, ref_ply, sog_opts, sog_path)
        try:
            idx = spatial_subsample(ref.positions, max_render)
            cams = default_views(ref, views, size, size, up)
            log(f"{len(ref):,} Gaussians, SH degree {ref.sh_degree}: SOG "
                + ("from the cache" if getattr(sog, "hit", False) else "writing in the background") + "; "
                f"{len(profiles) + 2} formats, {views} views x {len(profiles) + 3} scenes of {len(idx):,} Gaussians "
                f"at {size}x{size}")
            jobs = [(f"GSD {p}", lambda p=p: gsd_row(ref, p)) for p in profiles]
            spz_opts = ("--spz-version", "4")
            jobs.append(("SPZ v4", lambda: tool_row(tool, write_call(tool, cache, ref_ply, spz_opts, spz_path),
                                                    spz_path, ref, "SPZ v4 (splat-transform)")))
            jobs.append(("SOG", lambda: tool_row(tool, sog, sog_path, ref, "SOG (splat-transform)")))
            rows = []
            with _bar(quiet, desc=label, total=len(jobs) + views * (len(jobs) + 1), unit="step") as bar:
                def render_all(g: Gaussians) -> list[np.ndarray]:
                    out = []
                    for c in cams:
                        out += render_views(g, [c])
                        bar.update(1)
                    return out
                bar.set_postfix_str("reference renders")
                reference = render_all(ref.take(idx))
                for desc, job in jobs:
                    bar.set_postfix_str(f"{desc}" + (" (waiting for its k-means)" if desc == "SOG" and sog.running()
                                                     else ""))
                    while desc == "SOG" and sog.running():        # keep the bar's clock moving
                        bar.refresh()
                        time.sleep(0.5)
                    r = job()
                    bar.update(1)
                    bar.set_postfix_str(f"{desc} renders")
                    imgs = render_all(r.decoded.take(idx))
                    r.psnr = [psnr(a, b) for a, b in zip(imgs, reference)]
                    r.ssim = [ssim(a, b) for a, b in zip(imgs, reference)]
                    r.decoded = None                           # free the floats of a big scene as we go
                    rows.append(r)
        finally:
            sog.stop()
    log("done")
    return SceneReport(path, len(ref), ref.sh_degree, os.path.getsize(path), t_conv, len(idx), rows,
                       time.perf_counter() - t_all, clamped, raw_error)


# ------------------------------------------------------------------------------------------ markdown
LOSSY_SOURCES = {".sog": "SOG", ".spz": "SPZ", ".compressed.ply": "compressed PLY", ".splat": ".splat",
                 ".ksplat": ".ksplat"}


def source_caveat(path: str) -> str:
    """A sentence for scenes whose file was already quantized: re-encoding its decoded floats flatters lossy formats."""
    name = path.lower()
    fmt = next((v for k, v in LOSSY_SOURCES.items() if name.endswith(k)), None)
    if fmt is None:
        return ""
    return (f" The source was already quantized by {fmt}: re-encoding its decoded values flatters the lossy "
            "formats" + (", SOG most, as it meets its own codebooks again" if fmt == "SOG" else "")
            + "; trainer output would score lower.")


def _clamp_note(s: SceneReport) -> str:
    if not s.clamped:
        return ""
    return (f" {s.clamped:,} opacity values of splat-transform's float PLY are +-inf (alpha exactly 1 or 0); "
            + (f"`gsd encode` rejects that file ({s.raw_error}), so " if s.raw_error else "")
            + f"the reference clamps them to +-{OPACITY_CLAMP:g} (the same renders) and every format encodes it.")


def _seconds(t: float) -> str:
    """Three significant digits, without exponents for the minutes a CPU k-means takes."""
    return f"{t:.0f}" if t >= 100 else f"{t:.3g}"


def scene_section(s: SceneReport) -> tuple[str, str]:
    """(markdown section, one summary line) for a measured scene."""
    from .compare import _table, fmt_psnr, mean_psnr
    sog = next(r for r in s.rows if r.name.startswith("SOG"))
    ply = ply_size_bytes(s.n, s.sh_degree)
    rows = [[r.name, f"{r.nbytes / s.n:.2f}", f"{r.nbytes / ply * 100:.1f}%", f"{r.nbytes / sog.nbytes:.2f}",
             fmt_psnr(mean_psnr(r.psnr)), fmt_psnr(min(r.psnr)), f"{np.mean(r.ssim):.4f}",
             _seconds(r.encode_s), _seconds(r.decode_s), r.note] for r in s.rows]
    label = os.path.basename(s.path)
    thinned = (f"{s.rendered:,} of the {s.n:,} Gaussians rendered (spatially uniform subsample, the same "
               "Gaussians for every format)" if s.rendered < s.n else f"all {s.n:,} Gaussians rendered")
    text = (f"### {label}: {s.n:,} Gaussians, SH degree {s.sh_degree}\n\n"
            f"Source file {s.source_bytes:,} bytes ({s.source_bytes / s.n:.2f} B/Gaussian), converted to the float "
            f"reference by splat-transform in {s.convert_s:.1f} s; *of float PLY* is of the standard 3DGS float PLY "
            f"layout, {ply:,} bytes; {thinned}; scene measured in "
            f"{s.seconds:.0f} s." + source_caveat(s.path) + _clamp_note(s) + "\n\n"
            + _table(["format", "B/Gaussian", "of float PLY", "size / SOG", "PSNR dB", "worst view", "SSIM",
                      "encode s", "decode s", "note"], rows) + "\n")
    default = next(r for r in s.rows if r.name.endswith("(default)"))
    spz = next(r for r in s.rows if r.name.startswith("SPZ"))
    summary = (f"- {label}: {default.name} {default.nbytes / s.n:.2f} B/G vs SOG {sog.nbytes / s.n:.2f} B/G, "
               f"GSD/SOG size **{default.nbytes / sog.nbytes:.2f}**; PSNR {fmt_psnr(mean_psnr(default.psnr))} dB "
               f"(GSD) vs {fmt_psnr(mean_psnr(sog.psnr))} dB (SOG); SPZ v4 {spz.nbytes / s.n:.2f} B/G, "
               f"{fmt_psnr(mean_psnr(spz.psnr))} dB")
    return text, summary


def real_scenes_markdown(scenes: list[SceneReport], *, folders: list[str], tool: str, views: int, size: int,
                         max_render: int, sog_opts: tuple[str, ...],
                         failed: list[tuple[str, str]] = (), synthetic: bool = False) -> str:
    """The "Real scenes" section: how it was measured, a summary line per scene, a table per scene."""
    parts = [scene_section(s) for s in scenes]
    sections = [t for t, _ in parts]
    summaries = [line for _, line in parts]
    summaries += [f"- {os.path.basename(p)}: **not measured**: {e}" for p, e in failed]
    notes = (
        (f"Scenes: every scene file in {', '.join(f'`{f}`' for f in folders)}. " if folders else "")
        + ("The synthetic scenes above, written as float PLY files (`synthetic_*.ply`, z up), go through the same "
           "steps. " if synthetic else "")
        + f"splat-transform: `{tool_version(tool)}`. Each is converted to a float PLY by "
        "`splat-transform SCENE --morton-order reference.ply` (Morton order: see below) and read with `codec.ply.read_ply`; that float scene is the "
        "reference every format encodes.\n\n"
        "- GSD rows: one keyframe through `codec.cli.encoder_for` with the `gsd encode` parser's defaults, so "
        "whatever `gsd encode` fits to the scene (grid, ranges, SH palette) is fitted here too; encode = "
        "`encoder_for` + `assign_ids` + `keyframe`, decode = "
        "`decode_frame` + `state.to_gaussians()`, one run each, in this Python process. Bytes = header + frame "
        "(the file `gsd encode` writes).\n"
        "- SPZ v4 and SOG rows: written by `splat-transform [OPTIONS] reference.ply out.spz|out.sog` and read "
        "back by `splat-transform out.spz|out.sog back.ply`; encode and decode times are the wall time of those "
        "CLI calls (Node start-up and PLY file I/O included, so they are not comparable with the GSD times to "
        "better than about a second). SOG is written in the background while the other rows are measured (its "
        "k-means is single-threaded), so on a 2-core machine its time and theirs share the cores. SOG's k-means "
        "starts from random centroids, so its size and PSNR vary a little from run to run. SOG options: "
        f"`{' '.join(sog_opts)}` (k-means of the SH palette; splat-transform's default is 10 iterations, on a GPU "
        "when one is available; `--sog-iterations`, `--sog-gpu`).\n"
        f"- Renders: {views} orbit views per scene, {size}x{size}, 60 degree field of view, 20 degrees above the "
        f"horizon, at the 75th-percentile distance of the points from their median, up = {list(UP)} (y-down "
        "captures" + ("; [0, 0, 1] for the synthetic scenes" if synthetic else "") + "), black background, `quality.rasterizer`. "
        + (f"At most {max_render:,} Gaussians are rendered: every k-th Gaussian along a Morton curve over the "
           "reference (spatially uniform), and the same Gaussians, by index, from every decoded scene; each "
           "format still encodes and decodes them all. " if max_render > 0 else "Every Gaussian is rendered. ")
        + "GSD decodes in id order and is put back into the reference's order by its ids; splat-transform keeps "
        "a Morton-ordered input's order, which is checked against the reference positions.\n"
        "- PSNR and SSIM: decoded renders against the reference's renders, mean over views. *size / SOG* is each "
        "format's bytes over SOG's.\n")
    return ("## Real scenes\n\n" + notes + "\nSummary (default GSD profile against SOG, both against the float "
            "reference):\n\n" + "\n".join(summaries) + "\n\n" + "\n".join(sections))
