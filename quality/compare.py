"""Image quality and size of GSD profiles beside the formats users would pick instead.

``python -m quality.compare`` renders three synthetic scenes (different seeds,
extents and SH degrees) through every format -- float PLY, antimatter15 .splat,
SPZ v3 and v4, and the GSD lossless / high / compact profiles -- and writes
QUALITY.md: bytes per Gaussian, PSNR and SSIM of each decoded scene's renders
against the float original's renders, encode and decode times, all from the same
run, plus which attribute of the default profile costs the most PSNR.

``python -m quality.compare --scenes DIR`` adds a section for real scenes: every
scene file in DIR (the documented example is ``../shared/scenes``) against SPZ v4
and SOG written and read back by splat-transform (see quality/scenes.py);
``--no-synthetic`` measures only DIR.

The library part (``evaluate``, ``attribution``) is shared with ``python -m
quality`` / ``gsd-quality``.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

from codec import ATTRS, Attr, Decoder, Encoder, Gaussians, Grid, Profile
from codec.interop import decode_splat, decode_spz, encode_splat, encode_spz
from codec.ply import read_ply, write_ply
from codec.profile import PRESETS

from .cameras import Camera, orbit_cameras
from .metrics import psnr, ssim
from .rasterizer import render

GSD_PROFILES = ("lossless", "high", "compact")


# ------------------------------------------------------------------------------------------ views
def default_views(g: Gaussians, n: int, width: int, height: int, up=(0.0, 0.0, 1.0), fov: float = 60.0,
                  radius_scale: float = 1.0, elevation: float = 20.0) -> list[Camera]:
    """Orbit cameras around the median position, at the 75th-percentile distance of the points from it.

    A camera inside the bulk of the scene looking at its middle, like the
    training views of a captured scene.
    """
    centre = np.median(g.positions.astype(np.float64), axis=0)
    r = float(np.percentile(np.linalg.norm(g.positions - centre, axis=1), 75)) * radius_scale
    return orbit_cameras(centre, max(r, 1e-3), n, width, height, fov, elevation, up)


# ------------------------------------------------------------------------------------------ formats
@dataclass
class Result:
    name: str
    nbytes: int
    encode_s: float
    decode_s: float
    decoded: Gaussians
    psnr: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)
    note: str = ""


def _best(fn, repeat: int):
    """(result, best wall time in s) of ``repeat`` calls."""
    best, out = float("inf"), None
    for _ in range(max(1, repeat)):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return out, best


def _gsd(g: Gaussians, name: str, repeat: int) -> Result:
    profile = Profile.preset(name, g.sh_degree, Grid.fit(g.positions))

    def enc():
        e = Encoder(profile, shape_rounding=True)   # as `gsd encode` writes files
        ids = e.assign_ids(g.positions)
        return e.header_bytes(), e.keyframe(g, ids=ids)
    (header, frame), t_enc = _best(enc, repeat)

    def dec():
        d = Decoder(header)
        d.decode_frame(frame)
        return d.state.to_gaussians()[1]
    decoded, t_dec = _best(dec, repeat)
    return Result(f"GSD {name}", len(header) + len(frame), t_enc, t_dec, decoded)


def _ply(g: Gaussians, repeat: int) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "scene.ply")
        _, t_enc = _best(lambda: write_ply(path, g), repeat)
        decoded, t_dec = _best(lambda: read_ply(path), repeat)
        size = os.path.getsize(path)
    return Result("PLY float32", size, t_enc, t_dec, decoded, note="file write/read")


def _bytes_format(name: str, g: Gaussians, encode, decode, repeat: int, note: str = "") -> Result:
    data, t_enc = _best(lambda: encode(g), repeat)
    decoded, t_dec = _best(lambda: decode(data), repeat)
    return Result(name, len(data), t_enc, t_dec, decoded, note=note)


def run_formats(g: Gaussians, repeat: int = 3, profiles=GSD_PROFILES, progress=None) -> list[Result]:
    """Encode and decode ``g`` with every format; times are the best of ``repeat`` runs.

    ``progress(line)``, if given, hears of each format done.
    """
    jobs = [lambda: _ply(g, repeat)]
    jobs += [lambda p=p: _gsd(g, p, repeat) for p in profiles]
    jobs.append(lambda: _bytes_format("SPZ v3 (gzip)", g, lambda x: encode_spz(x, version=3),
                                      lambda b: decode_spz(b)[0], repeat))
    jobs.append(lambda: _bytes_format("SPZ v4 (zstd)", g, lambda x: encode_spz(x, version=4),
                                      lambda b: decode_spz(b)[0], repeat))
    jobs.append(lambda: _bytes_format(".splat", g, encode_splat, decode_splat, repeat, note="no SH rest"))
    out = []
    for k, job in enumerate(jobs, 1):
        out.append(job())
        if progress:
            progress(f"{out[-1].name}: encoded and decoded ({k}/{len(jobs)})")
    return out


# ------------------------------------------------------------------------------------------ quality
def render_views(g: Gaussians, cams: list[Camera], background=(0.0, 0.0, 0.0)) -> list[np.ndarray]:
    return [render(g, c, background) for c in cams]


def score(results: list[Result], reference: list[np.ndarray], cams: list[Camera], with_ssim: bool = True,
          background=(0.0, 0.0, 0.0), progress=None) -> None:
    """Fill each result's per-view PSNR (and SSIM) of its renders against ``reference``."""
    for k, r in enumerate(results, 1):
        imgs = render_views(r.decoded, cams, background)
        r.psnr = [psnr(a, b) for a, b in zip(imgs, reference)]
        r.ssim = [ssim(a, b) for a, b in zip(imgs, reference)] if with_ssim else []
        if progress:
            progress(f"{r.name}: {len(cams)} views rendered and scored ({k}/{len(results)})")


def quantize_only(g: Gaussians, profile: Profile, attr: Attr, ids: np.ndarray) -> Gaussians:
    """``g`` with one attribute replaced by its quantized-then-dequantized value under ``profile``
    (ROTATION codes chosen for the shape, as `gsd encode` writes them; SPEC.md Appendix C)."""
    arrays = {a: g.attribute(a) for a in ATTRS}
    shape = g.scales if attr is Attr.ROTATION else None
    arrays[attr] = profile.dequantize(attr, profile.quantize(attr, arrays[attr], ids, scales=shape), ids)
    return Gaussians.from_attributes(arrays)


def attribution(g: Gaussians, reference: list[np.ndarray], cams: list[Camera], profile_name: str = "compact",
                background=(0.0, 0.0, 0.0), progress=None) -> list[tuple[str, float]]:
    """Mean PSNR with only one attribute quantized by ``profile_name``, per attribute (lowest = costliest)."""
    profile = Profile.preset(profile_name, g.sh_degree, Grid.fit(g.positions))
    ids = Encoder(profile).assign_ids(g.positions)
    attrs = [a for a in ATTRS if profile.comps(a)]
    out = []
    for k, a in enumerate(attrs, 1):
        imgs = render_views(quantize_only(g, profile, a, ids), cams, background)
        out.append((a.name.lower(), mean_psnr([psnr(x, y) for x, y in zip(imgs, reference)])))
        if progress:
            progress(f"{profile_name} with only {a.name.lower()} quantized: {len(cams)} views ({k}/{len(attrs)})")
    return out


def what_if(g: Gaussians, reference: list[np.ndarray], cams: list[Camera], rest_bits_options,
            base: str = "compact", background=(0.0, 0.0, 0.0)) -> list[tuple[tuple, float, float]]:
    """(rest_bits, bytes per Gaussian, mean PSNR) of keyframes of ``base`` with other SH_REST bit depths.

    Evidence for choosing presets; the presets themselves live in codec/profile.py.
    """
    import dataclasses
    out = []
    for bits in rest_bits_options:
        q = dataclasses.replace(PRESETS[base], rest_bits=tuple(bits))
        profile = Profile(g.sh_degree, Grid.fit(g.positions), q, f"{base}-rest{'/'.join(map(str, bits))}")
        enc = Encoder(profile, shape_rounding=True)
        header, frame = enc.header_bytes(), enc.keyframe(g, ids=enc.assign_ids(g.positions))
        dec = Decoder(header)
        dec.decode_frame(frame)
        imgs = render_views(dec.state.to_gaussians()[1], cams, background)
        out.append((tuple(bits), (len(header) + len(frame)) / len(g),
                    mean_psnr([psnr(a, b) for a, b in zip(imgs, reference)])))
    return out


def mean_psnr(values: list[float]) -> float:
    """Mean of per-view PSNR (the 3DGS papers' average); inf if every view is identical, else identical views count as 100 dB."""
    v = np.asarray(values, dtype=np.float64)
    return float("inf") if np.isinf(v).all() else float(np.minimum(v, 100.0).mean())


def loss_vs_ground_truth(p_vs_float: float, p_float_vs_gt: float) -> float:
    """PSNR drop against ground-truth photos implied by a decoded-vs-float PSNR (errors independent).

    MSE_decoded = MSE_float + MSE_quant, so the loss is 10 log10(1 + 10^((P0 - Pq) / 10)).
    """
    if np.isinf(p_vs_float):
        return 0.0
    return float(10 * np.log10(1 + 10 ** ((p_float_vs_gt - p_vs_float) / 10)))


def fmt_psnr(v: float) -> str:
    return "exact" if np.isinf(v) else f"{v:.2f}"


# ------------------------------------------------------------------------------------------ QUALITY.md
SOG_ITERATIONS = 1   # splat-transform's SH k-means iterations for SOG on a CPU: see real_scenes_markdown
SCENES = (  # (label, n, sh_degree, seed, extent)
    ("outdoor, SH3", 100_000, 3, 0, 20.0),
    ("room scale, SH1", 100_000, 1, 1, 5.0),
    ("large, SH2", 150_000, 2, 2, 60.0),
)
GT_PSNRS = (23.0, 27.0, 30.0)  # typical float 3DGS PSNR against test photos: T&T ~23, Mip-NeRF 360 ~27, DB ~29.5
TARGET_LOSS_DB, TARGET_GT = 0.3, 27.0   # target: the default profile loses <= 0.3 dB (read at P0 = 27 dB) while smaller than SPZ
WHAT_IF_REST_BITS = ((5, 5, 4), (6, 5, 4), (6, 5, 5))


def losses(results: list[Result], ours: str = "GSD compact") -> list[str]:
    """Plain sentences for every measure on which ``ours`` does worse than a peer format."""
    by = {r.name: r for r in results}
    me = by[ours]
    out = []
    for peer in ("SPZ v4 (zstd)", "SPZ v3 (gzip)", ".splat", "PLY float32"):
        p = by[peer]
        if p.nbytes < me.nbytes:
            out.append(f"{peer} is smaller ({p.nbytes / len(p.decoded):.2f} vs {me.nbytes / len(me.decoded):.2f} B/G)")
        if peer == "PLY float32":
            pass                                    # the float original itself: it always renders exactly
        elif mean_psnr(p.psnr) > mean_psnr(me.psnr):
            out.append(f"{peer} renders closer to the float scene ({fmt_psnr(mean_psnr(p.psnr))} vs "
                       f"{fmt_psnr(mean_psnr(me.psnr))} dB mean)")
        elif min(p.psnr) > min(me.psnr):
            out.append(f"{peer}'s worst view is better ({fmt_psnr(min(p.psnr))} vs {fmt_psnr(min(me.psnr))} dB)")
        if p.encode_s < me.encode_s:
            out.append(f"{peer} encodes faster ({p.encode_s * 1e3:.1f} vs {me.encode_s * 1e3:.1f} ms)")
        if p.decode_s < me.decode_s:
            out.append(f"{peer} decodes faster ({p.decode_s * 1e3:.1f} vs {me.decode_s * 1e3:.1f} ms)")
    return out


def synthetic_files(folder: str, scale: float = 1.0) -> list[str]:
    """The synthetic scenes (``SCENES``) as float PLY files in ``folder``, named after their parameters, so
    they can go through the real scenes' pipeline (splat-transform's SOG and SPZ beside `gsd encode`)."""
    from codec.synthetic import synthetic_scene
    paths = []
    for label, n, degree, seed, extent in SCENES:
        n = max(100, int(n * scale))
        path = os.path.join(folder, f"synthetic_{label.split(',')[0].replace(' ', '_')}_sh{degree}_{n}.ply")
        write_ply(path, synthetic_scene(n, degree, seed, extent))
        paths.append(path)
    return paths


def _git() -> str:
    try:
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True).stdout
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=here, capture_output=True, text=True).stdout
        return rev.strip() + ("-dirty" if dirty.strip() else "")
    except OSError:
        return "unknown"


def _table(headers, rows) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _positive_or_zero(text: str) -> int:
    v = int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def _positive(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m quality.compare", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python -m quality.compare                                  # synthetic scenes -> QUALITY.md\n"
               "  python -m quality.compare --scenes ../shared/scenes        # and the real scenes of a folder\n"
               "  python -m quality.compare --scenes my_scenes --no-synthetic --out mine.md\n\n"
               "--scenes needs splat-transform (`npm ci` in the repository root installs it).")
    ap.add_argument("--out", default="QUALITY.md", help="markdown file to write (default QUALITY.md)")
    ap.add_argument("--views", type=_positive, default=8, help="orbit views per scene (default 8)")
    ap.add_argument("--size", type=_positive, default=256, help="image width and height in pixels (default 256)")
    ap.add_argument("--repeat", type=_positive, default=3,
                    help="synthetic scenes' encode/decode timing: best of this many runs (default 3)")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="multiply every synthetic scene's Gaussian count (quick runs)")
    real = ap.add_argument_group("real scenes")
    real.add_argument("--scenes", metavar="DIR", nargs="+", default=None,
                      help="also measure every scene file in each DIR (.ply float or compressed, .splat, .spz, .sog, "
                           ".ksplat) against SPZ v4 and SOG from splat-transform; e.g. ../shared/scenes")
    real.add_argument("--no-synthetic", action="store_true", help="skip the synthetic scenes (needs --scenes)")
    real.add_argument("--synthetic-vs-sog", action="store_true",
                      help="also write the synthetic scenes as float PLY files and measure them as the real scenes "
                           "are (the `gsd encode` defaults against SPZ v4 and SOG from splat-transform)")
    real.add_argument("--max-render-gaussians", type=_positive_or_zero, default=100_000, metavar="N",
                      help="render at most N Gaussians of a real scene: the same spatially uniform subsample of "
                           "the reference and of every decoded scene (all are still encoded and decoded); "
                           "0 renders all (default 100000)")
    real.add_argument("--sog-iterations", type=_positive, default=SOG_ITERATIONS, metavar="N",
                      help=f"splat-transform --sh-iterations for SOG writing (default {SOG_ITERATIONS})")
    real.add_argument("--sog-gpu", default="cpu", metavar="N|cpu",
                      help="splat-transform --gpu for SOG writing: an adapter index or cpu (default cpu)")
    real.add_argument("--cache", metavar="DIR", default=None,
                      help="keep the SPZ and SOG files splat-transform writes (with their write times) in DIR and "
                           "reuse them when the same tool wrote the same reference with the same options: SOG's CPU "
                           "k-means dominates a scene's time and does not change when GSD does")
    real.add_argument("--splat-transform", metavar="PATH", default=None,
                      help="splat-transform executable (default: node_modules/.bin/splat-transform, then PATH)")
    real.add_argument("-q", "--quiet", action="store_true", help="no progress bars or progress lines")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    real_scenes = None
    if args.no_synthetic and not (args.scenes or args.synthetic_vs_sog):
        ap.error("--no-synthetic needs --scenes DIR or --synthetic-vs-sog (there would be nothing to measure)")
    tmp_synthetic = None
    if args.scenes or args.synthetic_vs_sog:
        from . import scenes as real
        try:
            tool = real.find_splat_transform(args.splat_transform)
            real_scenes = [(f, real.UP) for folder in args.scenes or [] for f in real.scene_files(folder)]
        except real.SceneError as e:
            ap.error(str(e))
        if args.synthetic_vs_sog:
            tmp_synthetic = tempfile.TemporaryDirectory(prefix="gsd_synthetic_")
            real_scenes += [(p, (0.0, 0.0, 1.0)) for p in synthetic_files(tmp_synthetic.name, args.scale)]
    load_start = os.getloadavg()

    sections, summary = [], []
    t_all = time.perf_counter()
    for label, n, degree, seed, extent in ([] if args.no_synthetic else SCENES):
        from codec.synthetic import synthetic_scene
        n = max(100, int(n * args.scale))
        g = synthetic_scene(n, degree, seed, extent)
        cams = default_views(g, args.views, args.size, args.size)
        if not args.quiet:
            print(f"[{label}] {n:,} Gaussians: encoding", file=sys.stderr, flush=True)
        log = (lambda m, label=label: None) if args.quiet else \
            (lambda m, label=label: print(f"[{label}] {m}", file=sys.stderr, flush=True))   # plain lines, tty or not
        results = run_formats(g, args.repeat, progress=log)
        if not args.quiet:
            print(f"[{label}] rendering {args.views} views x {len(results) + 1} scenes", file=sys.stderr, flush=True)
        ref = render_views(g, cams)
        score(results, ref, cams, progress=log)
        attr = attribution(g, ref, cams, "compact", progress=log)
        if degree >= 2:
            log("compact with other SH_REST bit depths")
        options = {b[:degree]: b for b in WHAT_IF_REST_BITS if b[:degree] != PRESETS["compact"].rest_bits[:degree]}
        alts = what_if(g, ref, cams, options.values()) if degree >= 2 else []
        spz = next(r for r in results if r.name.startswith("SPZ v4"))
        compact = next(r for r in results if r.name == "GSD compact")
        preset_rest = PRESETS["compact"].rest_bits
        rows = []
        for r in results:
            p = mean_psnr(r.psnr)
            rows.append([r.name, f"{r.nbytes / n:.2f}", f"{r.nbytes / results[0].nbytes * 100:.1f}%",
                         fmt_psnr(p), fmt_psnr(min(r.psnr)), f"{np.mean(r.ssim):.4f}",
                         " / ".join(f"{loss_vs_ground_truth(p, p0):.3f}" for p0 in GT_PSNRS),
                         f"{r.encode_s * 1e3:.1f}", f"{r.decode_s * 1e3:.1f}", r.note])
            summary.append((label, r.name, r.nbytes / n, p, r.nbytes / spz.nbytes))
        worst = min(attr, key=lambda t: t[1])
        lose = losses(results)
        alt_text = ""
        if alts:
            alt_text = ("\n\nCompact with other SH_REST bit depths (degree 1/2/3; ranges unchanged), same views:\n\n"
                        + _table(["rest bits", "B/Gaussian", "PSNR dB", f"implied loss dB at GT {TARGET_GT:g}",
                                  "vs SPZ v4 size"],
                                 [["/".join(map(str, b[:degree])) + (" (preset)" if b == preset_rest else ""),
                                   f"{bpg:.2f}", fmt_psnr(pp), f"{loss_vs_ground_truth(pp, TARGET_GT):.3f}",
                                   f"{bpg * n / spz.nbytes * 100:.0f}%"]
                                  for b, bpg, pp in [(preset_rest, compact.nbytes / n, mean_psnr(compact.psnr))]
                                  + alts]))
        sections.append(
            f"### {label}: `synthetic_scene({n}, sh_degree={degree}, seed={seed}, extent={extent:g})`\n\n"
            + _table(["format", "B/Gaussian", "of PLY", "PSNR dB", "worst view", "SSIM",
                      "implied loss dB at GT 23/27/30", "encode ms", "decode ms", "note"], rows)
            + "\n\nCompact profile, one attribute quantized at a time (the rest float): mean PSNR dB\n\n"
            + _table([a for a, _ in attr], [[fmt_psnr(v) for _, v in attr]])
            + f"\n\nCostliest attribute: **{worst[0]}** ({fmt_psnr(worst[1])} dB alone)." + alt_text
            + "\n\nWhere GSD compact loses in this scene: " + ("; ".join(lose) if lose else "nowhere") + ".\n")
        if not args.quiet:
            print(f"[{label}] done", file=sys.stderr, flush=True)

    t_synthetic = time.perf_counter() - t_all
    real_text = ""
    if real_scenes:
        sog_opts = ("--gpu", args.sog_gpu, "--sh-iterations", str(args.sog_iterations))
        measured, failed = [], []
        for path, up in real_scenes:
            try:
                measured.append(real.measure_scene(path, tool, profiles=real.gsd_profiles(), views=args.views,
                                                   size=args.size, max_render=args.max_render_gaussians,
                                                   sog_opts=sog_opts, cache=args.cache, quiet=args.quiet, up=up))
            except (RuntimeError, ValueError, OSError) as e:   # one scene that cannot be read or round-tripped
                print(f"python -m quality.compare: {os.path.basename(path)}: {e}", file=sys.stderr)
                failed.append((path, str(e)))
        real_text = real.real_scenes_markdown(measured, folders=args.scenes or [], tool=tool, views=args.views,
                                              synthetic=args.synthetic_vs_sog,
                                              size=args.size, max_render=args.max_render_gaussians,
                                              sog_opts=sog_opts, failed=failed)
    if tmp_synthetic is not None:
        tmp_synthetic.cleanup()
    load_end = os.getloadavg()
    command = "python -m quality.compare" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    env = (f"- command: `{command}`\n"
           f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; git `{_git()}`; "
           f"total run {time.perf_counter() - t_all:.0f} s"
           + (f" (synthetic scenes {t_synthetic:.0f} s)" if real_scenes and not args.no_synthetic else "") + "\n"
           f"- machine: {platform.machine()}, {os.cpu_count()} cores; Python {platform.python_version()}, "
           f"numpy {np.__version__}; load average (1/5/15 min) "
           f"{' / '.join(f'{v:.2f}' for v in load_start)} at the start, "
           f"{' / '.join(f'{v:.2f}' for v in load_end)} at the end (times on a busy machine run long)\n")
    env_synthetic = (
           f"- renders: {args.views} orbit views per scene, {args.size}x{args.size}, 60 degree horizontal field of "
           "view, 20 degrees above the horizon, at the 75th-percentile distance of the points from their median, "
           "black background, reference rasterizer `quality.rasterizer` (SPEC.md Appendix B)\n"
           f"- times: best of {args.repeat} runs, one thread of Python; PLY times are a file write/read, the others "
           "bytes in memory. GSD encode = `assign_ids` + `keyframe`; GSD decode = `decode_frame` + "
           "`state.to_gaussians()` (floats, as the other decoders return). SPZ and .splat times are this "
           "repository's numpy implementations (`codec.interop`), not Niantic's C++ library\n")
    explain = (
        "PSNR and SSIM compare the renders of each decoded scene with the renders of the float original, view by "
        "view (images clipped to [0, 1]); PSNR is the mean over views of per-view PSNR. There are no photographs of "
        "synthetic scenes, so the project's target, a 'PSNR loss against the float original', cannot be measured "
        "as a drop against ground truth directly. The column *implied loss* converts it: if the float scene scores P0 "
        "against test photos and quantization error is independent of training error, the decoded scene scores "
        "P0 - 10 log10(1 + 10^((P0 - P) / 10)), P the PSNR against the float render. It is given for P0 = 23, 27 "
        "and 30 dB (typical 3DGS results on Tanks & Temples, Mip-NeRF 360, Deep Blending). A loss <= 0.3 dB needs "
        "P >= P0 + 11.5 dB (34.5, 38.5, 41.5 dB).\n")
    verdicts = []
    for label, name, bpg, p, vs_spz in summary:
        if name == "GSD compact":
            loss = loss_vs_ground_truth(p, TARGET_GT)
            ok = loss <= TARGET_LOSS_DB and vs_spz < 1
            verdicts.append(f"- {label}: GSD compact {bpg:.2f} B/G = {vs_spz * 100:.0f}% of SPZ v4, "
                            f"PSNR {fmt_psnr(p)} dB vs float, implied loss {loss:.3f} dB at GT {TARGET_GT:g} dB: "
                            f"**{'PASS' if ok else 'MISS'}** (target <= {TARGET_LOSS_DB} dB and smaller than SPZ)")
    head = "# Render quality against peers\n\nGenerated by `python -m quality.compare`; do not edit by hand.\n\n"
    if args.no_synthetic:
        text = head + env + "\n" + real_text
    else:
        text = (head + env + env_synthetic + "\n" + explain + "\n## Summary (default profile)\n\n"
                + "\n".join(verdicts) + "\n\n" + "## Scenes\n\n" + "\n".join(sections)
                + ("\n" + real_text if real_text else ""))
    with open(args.out, "w") as f:
        f.write(text)
    print(f"wrote {args.out}", file=sys.stderr)
    if real_scenes and failed:
        print(f"python -m quality.compare: {len(failed)} of {len(real_scenes)} scenes could not be measured "
              "(listed in the report)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
