"""The native comparison for bench.mjs: the same scenes and cameras through gsplat's CUDA rasterizer.

    python reference_viewer/render/gsplat_bench.py SCENE [SCENE ...] [--n 1000000] [--width 1920]
        [--height 1080] [--frames 50] [--views 20,110,200] [--radius 14] [--sh 3] [--cameras cameras.json]
        [--psnr] [--alpha-max 0.99]

SCENE: raw slot floats FILE.f32 (with FILE.json for the SH degree and framing, as written by
`bench.mjs --save-raw` for the generated bench scene, reference_viewer/render/scene_raw.py for a real
scene, or tests/browser/synthetic_raw.py for codec/synthetic.py's trained statistics: without a .json,
--sh and the bench orbit), or any splat file codec.interop.scene reads (framed as scene_raw.py does).
Cameras: bench.mjs's orbit (azimuths --views, 30 degrees up, --radius or the scene's framing, 60 degree
horizontal fov), or --cameras (the cameras.json of `bench.mjs --psnr`, the renderer's camera objects).

Per scene and view: gsplat.rasterization (classic mode, packed=False, near 0.01, eps2d 0.3, SH
evaluated by gsplat, black background) on tensors already on the GPU, timed with CUDA events over
--frames calls after 3 warm-up calls: ms per frame and FPS (the whole frame: projection, SH, tile
intersection, sort, rasterization). --psnr also renders the view with quality/rasterizer.py and prints
gsplat's PSNR against it (slow past ~1M fragments at 1080p; gsplat clamps alpha at 0.999 where
Appendix B says 0.99: --alpha-max sets the reference's clamp for a like-with-like comparison).

Needs a CUDA GPU, torch and gsplat (PyPI `gsplat`, which compiles its CUDA kernels on first use).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from quality import rasterizer  # noqa: E402
from quality.cameras import Camera  # noqa: E402
from reference_viewer.render.scene_raw import framing, gaussians_from_slots  # noqa: E402


def orbit_camera(az_deg: float, w: int, h: int, target, radius: float, up) -> Camera:
    """bench.mjs's camera(): azimuth az_deg around target, 30 degrees above the plane normal to up."""
    up = np.asarray(up, np.float64)
    up = up / np.linalg.norm(up)
    tgt = np.asarray(target, np.float64)
    ref = np.array([1.0, 0, 0]) if abs(up[0]) < 0.9 else np.array([0, 1.0, 0])
    e1 = ref - (ref @ up) * up
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(up, e1)
    az, el = math.radians(az_deg), math.radians(30.0)
    eye = tgt + radius * (math.cos(el) * (math.cos(az) * e1 + math.sin(az) * e2) + math.sin(el) * up)
    f = tgt - eye
    f /= np.linalg.norm(f)
    r = np.cross(f, up)
    r /= np.linalg.norm(r)
    dn = np.cross(f, r)
    m = np.eye(4)
    m[0, :3], m[1, :3], m[2, :3] = r, dn, f
    m[:3, 3] = -m[:3, :3] @ eye
    fx = 0.5 * w / math.tan(math.pi / 6)
    return Camera(w, h, fx, fx, w / 2, h / 2, m)


def load_scene(path: str, n_max: int, sh: int):
    p = Path(path)
    if p.suffix == ".f32":
        meta_file = p.with_suffix(".json")
        meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
        deg = meta.get("shDegree", sh)
        g = gaussians_from_slots(np.fromfile(p, np.float32), deg)
        frame = {k: meta[k] for k in ("target", "radius", "up") if k in meta}
    else:
        from codec.interop.scene import read_scene
        g = read_scene(path)[0]
        frame = framing(g.positions)
    if len(g) > n_max:
        g = g.take(np.arange(n_max))
    return g, frame


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scenes", nargs="+")
    ap.add_argument("--n", type=int, default=1 << 40)
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--views", default="20,110,200")
    ap.add_argument("--radius", type=float, default=14.0)
    ap.add_argument("--sh", type=int, default=3)
    ap.add_argument("--cameras")
    ap.add_argument("--psnr", action="store_true")
    ap.add_argument("--alpha-max", type=float, default=rasterizer.ALPHA_MAX)
    a = ap.parse_args()

    import torch
    import gsplat

    dev = torch.device("cuda")
    print(json.dumps({"gsplat": getattr(gsplat, "__version__", "?"), "torch": torch.__version__,
                      "device": torch.cuda.get_device_name(dev)}))
    for path in a.scenes:
        g, frame = load_scene(path, a.n, a.sh)
        if a.cameras:
            cams = [Camera(int(c["width"]), int(c["height"]), c["fx"], c["fy"], c["cx"], c["cy"],
                           np.asarray(c["viewMatrix"], np.float64).reshape(4, 4))
                    for c in json.loads(Path(a.cameras).read_text())]
        else:
            orbit = (frame.get("target", (0, 0, 1)), frame.get("radius", a.radius), frame.get("up", (0, 0, 1)))
            cams = [orbit_camera(float(v), a.width, a.height, *orbit) for v in a.views.split(",")]
        res = {"scene": Path(path).name, "n": len(g), "sh": g.sh_degree, "width": cams[0].width,
               "height": cams[0].height, "frameMs": [], "fps": [], "psnr": []}
        inp = rasterizer.gsplat_inputs(g, cams[0])
        t = {k: torch.as_tensor(inp[k], device=dev) for k in ("means", "quats", "scales", "opacities", "colors")}
        for cam in cams:
            ci = rasterizer.gsplat_inputs(g.take(np.arange(1)), cam)
            viewmats = torch.as_tensor(ci["viewmats"], device=dev)
            Ks = torch.as_tensor(ci["Ks"], device=dev)

            def frame_once():
                return gsplat.rasterization(**t, viewmats=viewmats, Ks=Ks, width=cam.width, height=cam.height,
                                            sh_degree=g.sh_degree, near_plane=0.01, eps2d=0.3, packed=False,
                                            rasterize_mode="classic")

            with torch.no_grad():
                for _ in range(3):
                    img = frame_once()[0]
                torch.cuda.synchronize()
                e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                e0.record()
                for _ in range(a.frames):
                    frame_once()
                e1.record()
                torch.cuda.synchronize()
            ms = e0.elapsed_time(e1) / a.frames
            res["frameMs"].append(round(ms, 3))
            res["fps"].append(round(1000.0 / ms, 1))
            if a.psnr:
                keep = rasterizer.ALPHA_MAX
                rasterizer.ALPHA_MAX = a.alpha_max
                try:
                    t0 = time.time()
                    ref = rasterizer.render(g, cam)
                    res.setdefault("referenceSeconds", []).append(round(time.time() - t0, 1))
                finally:
                    rasterizer.ALPHA_MAX = keep
                got = img[0].float().cpu().numpy()
                mse = float(np.mean((np.clip(got, 0, 1) - np.clip(ref, 0, 1)) ** 2))
                res["psnr"].append(round(-10 * math.log10(mse), 2) if mse > 0 else float("inf"))
        if not a.psnr:
            del res["psnr"]
        print(json.dumps(res))


if __name__ == "__main__":
    main()
