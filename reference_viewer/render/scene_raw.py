"""Scenes as raw slot floats for reference_viewer/render/bench.mjs and gsplat_bench.py, and back.

    python reference_viewer/render/scene_raw.py SCENE OUT.f32 [--max N]

SCENE is any splat file codec.interop.scene reads (.ply, .compressed.ply, .spz, .splat, .sog). Writes
OUT.f32 (N x stride float32 slot rows, the layout of reference_viewer/decoder/layout.mjs without an SH
palette, as RawStore loads them) and OUT.json: {n, shDegree, target, radius, up}, an orbit that
frames the scene for the benchmark: target = the centre of the box of the positions' 2nd to 98th
percentiles, radius = 1.5 x the 80th percentile of the distances to it, up = the axis of least
spread of the positions (a capture's ground plane normal, as a scene on a patch of ground has),
signed from the median position towards that centre (more of the scene rises above the ground than
hangs below it). A rough framing: it only has to show the scene.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from codec.attributes import Gaussians  # noqa: E402


def stride_of(degree: int) -> int:
    k = (degree + 1) ** 2 - 1
    return (16 + 3 * k + 3) // 4 * 4


def slot_floats(g: Gaussians) -> np.ndarray:
    """(N, stride) float32 slot rows."""
    d = g.sh_degree
    k = (d + 1) ** 2 - 1
    out = np.zeros((len(g), stride_of(d)), np.float32)
    out[:, 0:3] = g.positions
    out[:, 3] = g.opacities
    out[:, 4:7] = g.scales
    out[:, 8:12] = g.rotations
    out[:, 12:15] = g.sh_dc
    out[:, 16:16 + 3 * k] = g.sh_rest
    return out


def gaussians_from_slots(a: np.ndarray, degree: int) -> Gaussians:
    """The Gaussians of (N, stride) slot rows at SH degree ``degree``."""
    k = (degree + 1) ** 2 - 1
    a = a.reshape(-1, stride_of(degree))
    return Gaussians(positions=a[:, 0:3].copy(), scales=a[:, 4:7].copy(), rotations=a[:, 8:12].copy(),
                     opacities=a[:, 3].copy(), sh_dc=a[:, 12:15].copy(), sh_rest=a[:, 16:16 + 3 * k].copy())


def framing(positions: np.ndarray) -> dict:
    p = positions.astype(np.float64)
    p = p[np.isfinite(p).all(1)]
    centre = 0.5 * (np.percentile(p, 2, axis=0) + np.percentile(p, 98, axis=0))
    dist = np.linalg.norm(p - centre, axis=1)
    near = p[dist <= np.percentile(dist, 80)]
    w, v = np.linalg.eigh(np.cov((near - centre).T))
    up = v[:, 0]
    if (centre - np.median(p, axis=0)) @ up < 0:
        up = -up
    return {"target": centre.tolist(), "radius": float(1.5 * np.percentile(dist, 80)), "up": up.tolist()}


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        sys.exit(__doc__)
    from codec.interop.scene import read_scene
    g, fmt = read_scene(argv[0])
    if "--max" in argv:
        g = g.take(np.arange(min(len(g), int(argv[argv.index("--max") + 1]))))
    out = Path(argv[1])
    slot_floats(g).tofile(out)
    meta = {"n": len(g), "shDegree": g.sh_degree, "source": str(argv[0]), "format": fmt, **framing(g.positions)}
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    print(json.dumps(meta))


if __name__ == "__main__":
    main(sys.argv[1:])
