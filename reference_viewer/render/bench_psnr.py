"""PSNR of bench.mjs's renders against the reference rasterizer (quality/rasterizer.py).

    python reference_viewer/render/bench_psnr.py DIR

DIR is what `bench.mjs --psnr` writes per scene: scene.f32 + scene.json (slot floats, SH degree),
cameras.json (the renderer's camera objects, one per view) and PATH_FORMAT_VARYINGS_VIEW.f32 (each
path's linear RGBA float32 image, row 0 at the top). Prints one JSON line per image: its PSNR against
the reference render of that view (both clipped to [0, 1], peak 1, SPEC.md Appendix B), and the
reference's render time. The numpy reference enumerates every fragment: minutes and gigabytes at 1M
Gaussians and 1080p, so keep it to what the machine can take.
"""
from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from quality.cameras import Camera  # noqa: E402
from quality.rasterizer import render  # noqa: E402
from reference_viewer.render.scene_raw import gaussians_from_slots  # noqa: E402


def camera_of(c: dict) -> Camera:
    m = np.asarray(c["viewMatrix"], np.float64).reshape(4, 4)
    return Camera(int(c["width"]), int(c["height"]), c["fx"], c["fy"], c["cx"], c["cy"], m)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.clip(a, 0, 1) - np.clip(b, 0, 1)) ** 2))
    return float("inf") if mse == 0 else -10.0 * np.log10(mse)


def main(d: Path) -> None:
    meta = json.loads((d / "scene.json").read_text())
    g = gaussians_from_slots(np.fromfile(d / "scene.f32", np.float32), meta["shDegree"])
    cams = [camera_of(c) for c in json.loads((d / "cameras.json").read_text())]
    images = sorted(p for p in d.glob("*.f32") if p.name != "scene.f32")
    refs = {}
    for p in images:
        m = re.fullmatch(r"(.+)_(\d+)\.f32", p.name)
        vi = int(m.group(2))
        cam = cams[vi]
        if vi not in refs:
            t0 = time.time()
            refs[vi] = (render(g, cam), time.time() - t0)
        ref, secs = refs[vi]
        img = np.fromfile(p, np.float32).reshape(cam.height, cam.width, 4)[..., :3]
        print(json.dumps({"dir": str(d), "image": p.name, "view": vi, "psnr": round(psnr(img, ref), 2),
                          "referenceSeconds": round(secs, 1)}))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
