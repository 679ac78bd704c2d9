"""``python -m quality`` (also ``gsd-quality``): render quality and size of each profile for one scene.

Renders N orbit views of the float scene (a synthetic scene by default, or a
3DGS PLY) and of what each format decodes to -- the GSD profiles' keyframes,
SPZ v3/v4 and .splat round trips -- and prints per format: bytes per Gaussian,
mean PSNR and SSIM against the float renders, the implied PSNR drop against
ground truth, encode and decode time; then, for the default profile, the PSNR
with one attribute quantized at a time (which attribute costs the most).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from .compare import (GSD_PROFILES, GT_PSNRS, attribution, default_views, fmt_psnr, loss_vs_ground_truth, mean_psnr,
                      render_views, run_formats, score)
from .metrics import save_png


def _vec3(text: str) -> tuple[float, float, float]:
    parts = [float(v) for v in text.split(",")]
    if len(parts) != 3 or not any(parts):
        raise argparse.ArgumentTypeError("expected three comma-separated numbers, not all zero")
    return tuple(parts)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", nargs="?", metavar="IN.ply", help="3DGS PLY to measure (default: a synthetic scene)")
    p.add_argument("--n", type=int, default=100_000, help="Gaussians in the synthetic scene")
    p.add_argument("--sh-degree", type=int, choices=range(4), default=None, metavar="N",
                   help="SH degree 0..3 (synthetic default 3; a PLY keeps its own unless given)")
    p.add_argument("--seed", type=int, default=0, help="synthetic scene seed")
    p.add_argument("--extent", type=float, default=20.0, help="synthetic scene half-extent")
    p.add_argument("--views", type=int, default=6, help="orbit views (6 at 192x192: 15-35 s for a 45k "
                                                         "Gaussian capture on 2 cores; QUALITY.md uses 8 at 256)")
    p.add_argument("--width", type=int, default=192, help="image width in pixels")
    p.add_argument("--height", type=int, default=192, help="image height in pixels")
    p.add_argument("--fov", type=float, default=60.0, help="horizontal field of view, degrees")
    p.add_argument("--up", type=_vec3, default=None, metavar="X,Y,Z",
                   help="world up axis for the orbit (default 0,0,1 for synthetic scenes, 0,-1,0 for a PLY: "
                        "COLMAP-trained scenes are usually y-down)")
    p.add_argument("--radius-scale", type=float, default=1.0,
                   help="orbit radius as a multiple of the 75th-percentile distance of the points from their median")
    p.add_argument("--profiles", default=",".join(GSD_PROFILES), help="comma-separated GSD profiles")
    p.add_argument("--no-ssim", action="store_true", help="skip SSIM")
    p.add_argument("--no-attribution", action="store_true", help="skip the one-attribute-at-a-time renders")
    p.add_argument("--repeat", type=int, default=1, help="encode/decode timing: best of this many runs")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--save-images", metavar="DIR", default=None, help="write the float and compact renders as PNG")
    p.add_argument("--json", action="store_true", help="print the results as JSON")


class Progress:
    """Progress as plain lines on stderr (a terminal or a log alike), with the time since the start."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.t0 = time.perf_counter()

    def __call__(self, line: str) -> None:
        if not self.quiet:
            print(f"gsd-quality: {time.perf_counter() - self.t0:6.1f} s  {line}", file=sys.stderr, flush=True)


def run(args) -> int:
    progress = Progress(getattr(args, "quiet", False))
    if args.input:
        progress(f"reading {args.input}")
        from codec.interop.clean import clean_scene
        from codec.interop.scene import read_scene
        g = clean_scene(read_scene(args.input)[0])[0]   # any splat file, read and cleaned as gsd encode does
        if args.sh_degree is not None and args.sh_degree != g.sh_degree:
            g = g.with_sh_degree(args.sh_degree)
        up = args.up or (0.0, -1.0, 0.0)
        source = args.input
    else:
        from codec.synthetic import synthetic_scene
        degree = 3 if args.sh_degree is None else args.sh_degree
        g = synthetic_scene(args.n, degree, args.seed, args.extent)
        up = args.up or (0.0, 0.0, 1.0)
        source = f"synthetic_scene({args.n}, sh_degree={degree}, seed={args.seed}, extent={args.extent:g})"
    if len(g) == 0:
        print("quality: the scene is empty", file=sys.stderr)
        return 1
    profiles = [p.strip() for p in args.profiles.split(",") if p.strip()]
    cams = default_views(g, args.views, args.width, args.height, up, args.fov, args.radius_scale)
    progress(f"{len(g):,} Gaussians (SH degree {g.sh_degree}): encoding and decoding {len(profiles) + 4} formats")
    results = run_formats(g, args.repeat, profiles, progress=progress)
    progress(f"rendering {len(cams)} reference views {args.width}x{args.height}")
    ref = render_views(g, cams)
    score(results, ref, cams, with_ssim=not args.no_ssim, progress=progress)
    attr = [] if args.no_attribution else attribution(g, ref, cams, "compact", progress=progress)
    progress("done")
    n = len(g)

    if args.save_images:
        os.makedirs(args.save_images, exist_ok=True)
        compact = next((r for r in results if r.name == "GSD compact"), None)
        imgs = render_views(compact.decoded, cams) if compact else []
        for k, img in enumerate(ref):
            save_png(os.path.join(args.save_images, f"view{k:02d}_float.png"), img)
        for k, img in enumerate(imgs):
            save_png(os.path.join(args.save_images, f"view{k:02d}_compact.png"), img)

    rows = []
    for r in results:
        p = mean_psnr(r.psnr)
        rows.append({"format": r.name, "bytes": r.nbytes, "bytes_per_gaussian": r.nbytes / n,
                     "psnr_mean": p, "psnr_min": float(min(r.psnr)),
                     "ssim_mean": float(np.mean(r.ssim)) if r.ssim else None,
                     "implied_loss_db": {str(p0): loss_vs_ground_truth(p, p0) for p0 in GT_PSNRS},
                     "encode_ms": r.encode_s * 1e3, "decode_ms": r.decode_s * 1e3, "note": r.note})
    if args.json:
        json.dump({"scene": source, "gaussians": n, "sh_degree": g.sh_degree, "views": len(cams),
                   "width": args.width, "height": args.height, "formats": rows,
                   "attribution_compact": dict(attr)}, sys.stdout, indent=2, default=float)
        sys.stdout.write("\n")
        return 0

    print(f"scene   {source}: {n:,} Gaussians, SH degree {g.sh_degree}")
    centre = np.median(g.positions.astype(np.float64), axis=0)
    print(f"views   {len(cams)} orbit views {args.width}x{args.height}, fov {args.fov:g} deg, around "
          f"{np.round(centre, 3).tolist()} at radius {np.linalg.norm(cams[0].centre - centre):.3g}, up {list(up)}")
    head = f"{'format':<16}{'B/Gaussian':>11}{'PSNR dB':>9}{'min':>8}{'SSIM':>8}   {'loss@GT 23/27/30 dB':<22}{'enc ms':>8}{'dec ms':>8}"
    print(head)
    print("-" * len(head))
    for r in rows:
        ss = f"{r['ssim_mean']:.4f}" if r["ssim_mean"] is not None else "-"
        loss = " / ".join(f"{v:.3f}" for v in r["implied_loss_db"].values())
        print(f"{r['format']:<16}{r['bytes_per_gaussian']:>11.2f}{fmt_psnr(r['psnr_mean']):>9}"
              f"{fmt_psnr(r['psnr_min']):>8}{ss:>8}   {loss:<22}{r['encode_ms']:>8.1f}{r['decode_ms']:>8.1f}"
              + (f"  ({r['note']})" if r["note"] else ""))
    print("PSNR/SSIM: decoded renders against the float original's renders (mean over views).")
    print("loss@GT: the PSNR drop against photos this implies for a float scene scoring 23/27/30 dB there.")
    if attr:
        print("compact, one attribute quantized at a time (mean PSNR dB): "
              + ", ".join(f"{a} {fmt_psnr(v)}" for a, v in attr))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m quality", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
