"""``python -m quality.progressive SCENE``: how soon a joining client sees a scene sent coarse first.

The scene is encoded with the `gsd encode` defaults as one plain keyframe, and as a progressive
keyframe for a client's camera (``codec.progressive``: a keyframe of stand-ins sized evenly on
that camera's screen, then refinement frames in the order of how much of its picture they make).
Every frame is decoded as the client would, and after each the client's view of the decoded scene
is rendered and compared (PSNR) with the float scene's render of the same view. At a link rate R a
frame has arrived once the bytes up to its end have crossed the link (header included; latency and
transport framing left out). The report gives, per rate: the first image's time, the time to 95% of
the plain keyframe's PSNR (in dB), beside the plain keyframe's own time; and what a client whose
budget is 30% of the scene's Gaussians sees (a second stream, refined until the budget is met).
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
KEEP = "<!-- progressive_join: begin -->"   # quality.progressive_join's section of the same file
TARGET_FIRST_S, TARGET_FIRST_BYTES, BUDGET_SHARE, TARGET_GT = 0.5, 1_500_000, 0.3, 27.0


def _psnr(g, cams, reference) -> float:
    return float(np.mean([psnr(a, b) for a, b in zip(render_views(g, cams), reference)]))


def _stream(g, enc, cams, reference, log, **kw) -> tuple[list, object, float]:
    """Decode the progressive frames of ``g`` as a client, PSNR of its view after each frame."""
    header = enc.header_bytes()
    dec = Decoder(header)
    rows, total = [], len(header)
    t = time.perf_counter()
    for k, f in enumerate(progressive_keyframe(enc, g, view=cams[0], **kw)):
        dec.decode_frame(f.data)
        total += len(f.data)
        _, now = dec.state.to_gaussians()
        p = _psnr(now, cams, reference)
        rows.append({"frame": k, "bytes": len(f.data), "total": total, "live": f.live, "refined": f.refined, "psnr": p})
        log(f"frame {k}: {len(f.data):,} bytes, {f.live:,} live ({f.refined:,} of the scene's), {fmt_psnr(p)} dB")
    if dec.state.digest() != enc.state.digest():
        raise AssertionError("progressive stream: decoder and encoder states differ")
    return rows, dec, time.perf_counter() - t


def measure(path: str, *, views: int, size: int, up, first_bytes: int, refine_bytes: int, view: int = 0,
            log=print) -> dict:
    g, fmt = read_scene(path)
    n = len(g)
    args = gsd_parser().parse_args(["encode", "in.ply", "out.gsd"])
    cams = default_views(g, views, size, size, up)[view:view + 1]     # the client's camera
    log(f"{os.path.basename(path)}: {n:,} Gaussians ({fmt}); rendering the float scene")
    reference = render_views(g, cams)

    g, enc = encoder_for(g, args)                          # the plain keyframe: what `gsd encode` writes
    plain = len(enc.header_bytes()) + len(enc.keyframe(g))
    plain_digest = enc.state.digest()
    plain_psnr = _psnr(enc.state.to_gaussians()[1], cams, reference)
    log(f"plain keyframe {plain:,} bytes ({plain / n:.2f} B/G), {fmt_psnr(plain_psnr)} dB")

    g, enc = encoder_for(g, args)                          # the progressive stream: the same encoder
    rows, dec, prog_s = _stream(g, enc, cams, reference, log, first_bytes=first_bytes, refine_bytes=refine_bytes)
    if dec.state.digest() != plain_digest:
        raise AssertionError("progressive stream: the client does not end on the plain keyframe's state")
    budget = int(BUDGET_SHARE * n)
    log(f"a client with a budget of {budget:,} Gaussians")
    g, enc = encoder_for(g, args)
    held, dec, _ = _stream(g, enc, cams, reference, log, first_bytes=first_bytes, refine_bytes=refine_bytes,
                           budget=budget)
    if len(dec.state) > budget:
        raise AssertionError(f"budget passed: {len(dec.state):,} > {budget:,}")
    return {"path": path, "n": n, "format": fmt, "plain_bytes": plain, "plain_psnr": plain_psnr,
            "rows": rows, "held": held, "budget": budget, "progressive_s": prog_s, "views": views,
            "size": size, "view": view}


def report(m: dict, rates=RATES) -> str:
    n, rows, final = m["n"], m["rows"], m["plain_psnr"]
    name = os.path.basename(m["path"])

    def at(nbytes, rate):
        return nbytes * 8 / (rate * 1e6)
    goal = 0.95 * final
    first = rows[0]
    reach = next((r for r in rows if r["psnr"] >= goal), None)
    held = m["held"][-1]
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
    loss = loss_vs_ground_truth(held["psnr"], TARGET_GT)
    lines.append(f"- A client with a budget of {BUDGET_SHARE:.0%} of the Gaussians ({m['budget']:,}; its stream: "
                 f"{len(m['held'])} frames, {held['total']:,} bytes, ending on {held['live']:,} live, "
                 f"{held['refined']:,} of them the scene's own): {fmt_psnr(held['psnr'])} dB against the float "
                 f"scene's view, {final - held['psnr']:.1f} dB below the plain keyframe's (goal <= 3: "
                 f"**{'met' if final - held['psnr'] <= 3 else 'missed'}**); read against photos at {TARGET_GT:g} dB "
                 f"(QUALITY.md's implied loss) it loses {loss:.2f} dB.")
    return "\n".join(lines) + "\n\n" + per_rate + "\n\n" + table + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m quality.progressive", description=__doc__.split("\n\n")[0])
    ap.add_argument("scenes", nargs="+", help="scene files (any format gsd encode reads)")
    ap.add_argument("--views", type=int, default=4, help="orbit views around the scene (default 4)")
    ap.add_argument("--view", type=int, default=0, help="which of them is the client's camera (default 0)")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--up", default="0,-1,0", help="the scenes' up axis (default y-down, as trained captures)")
    ap.add_argument("--first-bytes", type=int, default=FIRST_BYTES)
    ap.add_argument("--refine-bytes", type=int, default=REFINE_BYTES)
    ap.add_argument("--out", default="PROGRESSIVE.md")
    a = ap.parse_args(argv)
    up = tuple(float(v) for v in a.up.split(","))
    t0 = time.perf_counter()
    sections = [report(measure(p, views=a.views, size=a.size, up=up, first_bytes=a.first_bytes,
                               refine_bytes=a.refine_bytes, view=a.view, log=lambda s: print(s, file=sys.stderr, flush=True)))
                for p in a.scenes]
    cmd = "python -m quality.progressive " + " ".join(argv if argv is not None else sys.argv[1:])
    head = ("# Progressive keyframes: first image and refinement\n\nGenerated by `python -m quality.progressive`; "
            "do not edit by hand.\n\n"
            f"- command: `{cmd}`\n- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
            f"total {time.perf_counter() - t0:.0f} s; load average {os.getloadavg()[0]:.2f}\n"
            f"- renders: the client's camera is orbit view {a.view} of {a.views}, at {a.size}x{a.size}, "
            "`quality.rasterizer`, every Gaussian; PSNR against the float scene's render of that view\n\n" + __doc__.split("\n\n", 1)[1].replace("\n", " ").strip() + "\n\n")
    kept = ""                                     # other reports' sections of the file stay
    if os.path.exists(a.out):
        text = open(a.out).read()
        if KEEP in text:
            kept = "\n" + text[text.index(KEEP):]
    with open(a.out, "w") as f:
        f.write(head + "\n".join(sections) + kept)
    print(f"wrote {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
