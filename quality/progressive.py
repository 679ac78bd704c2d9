"""``python -m quality.progressive SCENE``: how soon a joining client sees a scene sent coarse first.

The scene is encoded twice with the `gsd encode` defaults: as one plain keyframe, and as a
progressive keyframe (``codec.progressive``: a keyframe of merged stand-ins, then refinement
frames). Every frame is decoded as a client would, and after each the decoded scene is rendered
from orbit views and compared (PSNR) with the float scene's renders. At a link rate R a frame has
arrived once the bytes up to its end have crossed the link (header included; latency and
transport framing left out). The report gives, per rate: the first image's time, the time to 95%
of the plain keyframe's PSNR (in dB), beside the plain keyframe's own time; and the PSNR a client
holding at most 30% of the scene's Gaussians sees.
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
import time

import numpy as np

from codec import Decoder
from codec.cli import build_parser as gsd_parser, encoder_for
from codec.interop.scene import read_scene
from codec.progressive import FIRST_BYTES, REFINE_BYTES, progressive_keyframe

from .compare import _table, default_views, fmt_psnr, loss_vs_ground_truth, render_views
from .metrics import psnr

RATES = (10.0, 25.0, 100.0)        # Mbit/s
TARGET_FIRST_S, TARGET_FIRST_BYTES, BUDGET_SHARE, TARGET_GT = 0.5, 1_500_000, 0.3, 27.0


def _psnr(g, cams, reference) -> float:
    return float(np.mean([psnr(a, b) for a, b in zip(render_views(g, cams), reference)]))


def measure(path: str, *, views: int, size: int, up, first_bytes: int, refine_bytes: int, log=print) -> dict:
    g, fmt = read_scene(path)
    n = len(g)
    args = gsd_parser().parse_args(["encode", "in.ply", "out.gsd"])
    cams = default_views(g, views, size, size, up)
    log(f"{os.path.basename(path)}: {n:,} Gaussians ({fmt}); rendering the float scene")
    reference = render_views(g, cams)

    g, enc = encoder_for(g, args)                          # the plain keyframe: what `gsd encode` writes
    plain = len(enc.header_bytes()) + len(enc.keyframe(g))
    plain_psnr = _psnr(enc.state.to_gaussians()[1], cams, reference)
    log(f"plain keyframe {plain:,} bytes ({plain / n:.2f} B/G), {fmt_psnr(plain_psnr)} dB")

    g, enc = encoder_for(g, args)                          # the progressive stream: the same encoder
    header = enc.header_bytes()
    dec = Decoder(header)
    rows, total = [], len(header)
    t = time.perf_counter()
    for k, f in enumerate(progressive_keyframe(enc, g, first_bytes=first_bytes, refine_bytes=refine_bytes)):
        dec.decode_frame(f.data)
        total += len(f.data)
        _, now = dec.state.to_gaussians()
        p = _psnr(now, cams, reference)
        rows.append({"frame": k, "bytes": len(f.data), "total": total, "live": f.live, "refined": f.refined, "psnr": p})
        log(f"frame {k}: {len(f.data):,} bytes, {f.live:,} live ({f.refined:,} of the scene's), {fmt_psnr(p)} dB")
    prog_s = time.perf_counter() - t
    if dec.state.digest() != enc.state.digest():
        raise AssertionError("progressive stream: decoder and encoder states differ")
    return {"path": path, "n": n, "format": fmt, "plain_bytes": plain, "plain_psnr": plain_psnr,
            "rows": rows, "progressive_s": prog_s, "header": len(header), "views": views, "size": size}


def report(m: dict, rates=RATES) -> str:
    n, rows, final = m["n"], m["rows"], m["plain_psnr"]
    name = os.path.basename(m["path"])

    def at(nbytes, rate):
        return nbytes * 8 / (rate * 1e6)
    goal = 0.95 * final
    first = rows[0]
    reach = next((r for r in rows if r["psnr"] >= goal), None)
    budget = [r for r in rows if r["live"] <= BUDGET_SHARE * n]
    held = budget[-1] if budget else None
    table = _table(["frame", "bytes", "total bytes", "live Gaussians", "the scene's own", "PSNR dB"]
                   + [f"arrives at {r:g} Mbit/s, s" for r in rates],
                   [[r["frame"], f"{r['bytes']:,}", f"{r['total']:,}", f"{r['live']:,}", f"{r['refined']:,}",
                     fmt_psnr(r["psnr"])] + [f"{at(r['total'], x):.2f}" for x in rates] for r in rows])
    per_rate = _table(["link", "first image, s (goal <= 0.5 at 25)", f"95% of the plain PSNR ({goal:.2f} dB), s",
                       "plain keyframe, s", "95% within half the plain time"],
                      [[f"{x:g} Mbit/s", f"{at(first['total'], x):.2f}",
                        f"{at(reach['total'], x):.2f}" if reach else "never",
                        f"{at(m['plain_bytes'], x):.2f}",
                        ("met" if reach and reach["total"] <= 0.5 * m["plain_bytes"] else "missed")] for x in rates])
    lines = [f"### {name}: {n:,} Gaussians ({m['format']})", "",
             f"Plain keyframe (`gsd encode` defaults): {m['plain_bytes']:,} bytes ({m['plain_bytes'] / n:.2f} B/G), "
             f"PSNR {fmt_psnr(final)} dB against the float scene; the progressive stream: {len(rows)} frames, "
             f"{rows[-1]['total']:,} bytes with its header ({rows[-1]['total'] / m['plain_bytes']:.2f}x the plain "
             f"keyframe), ending on {fmt_psnr(rows[-1]['psnr'])} dB; built in {m['progressive_s']:.1f} s with its "
             "decodes and renders.", "",
             f"- First frame: {first['total']:,} bytes with the header (goal <= {TARGET_FIRST_BYTES:,}: "
             f"**{'met' if first['total'] <= TARGET_FIRST_BYTES else 'missed'}**), {first['live']:,} Gaussians, "
             f"{fmt_psnr(first['psnr'])} dB; at 25 Mbit/s after {at(first['total'], 25):.2f} s (goal <= "
             f"{TARGET_FIRST_S:g} s: **{'met' if at(first['total'], 25) <= TARGET_FIRST_S else 'missed'}**).",
             ]
    if held is not None:
        loss = loss_vs_ground_truth(held["psnr"], TARGET_GT)
        lines.append(f"- A client holding at most {BUDGET_SHARE:.0%} of the Gaussians (frame {held['frame']}, "
                     f"{held['live']:,} live): {fmt_psnr(held['psnr'])} dB against the float scene, "
                     f"{final - held['psnr']:.1f} dB below the plain keyframe; read against photos at "
                     f"{TARGET_GT:g} dB (QUALITY.md's implied loss) it loses {loss:.2f} dB (goal <= 3: "
                     f"**{'met' if loss <= 3 else 'missed'}**).")
    return "\n".join(lines) + "\n\n" + per_rate + "\n\n" + table + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m quality.progressive", description=__doc__.split("\n\n")[0])
    ap.add_argument("scenes", nargs="+", help="scene files (any format gsd encode reads)")
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--up", default="0,-1,0", help="the scenes' up axis (default y-down, as trained captures)")
    ap.add_argument("--first-bytes", type=int, default=FIRST_BYTES)
    ap.add_argument("--refine-bytes", type=int, default=REFINE_BYTES)
    ap.add_argument("--out", default="PROGRESSIVE.md")
    a = ap.parse_args(argv)
    up = tuple(float(v) for v in a.up.split(","))
    t0 = time.perf_counter()
    sections = [report(measure(p, views=a.views, size=a.size, up=up, first_bytes=a.first_bytes,
                               refine_bytes=a.refine_bytes, log=lambda s: print(s, file=sys.stderr, flush=True)))
                for p in a.scenes]
    cmd = "python -m quality.progressive " + " ".join(argv if argv is not None else sys.argv[1:])
    head = ("# Progressive keyframes: first image and refinement\n\nGenerated by `python -m quality.progressive`; "
            "do not edit by hand.\n\n"
            f"- command: `{cmd}`\n- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
            f"total {time.perf_counter() - t0:.0f} s; load average {os.getloadavg()[0]:.2f}\n"
            f"- renders: {a.views} orbit views at {a.size}x{a.size}, `quality.rasterizer`, every Gaussian; PSNR "
            "against the float scene's renders\n\n" + __doc__.split("\n\n", 1)[1].replace("\n", " ").strip() + "\n\n")
    with open(a.out, "w") as f:
        f.write(head + "\n".join(sections))
    print(f"wrote {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
