"""Write codec/synthetic.py's trained-statistics scene as raw slot floats for reference_viewer/render/bench.mjs.

    python3 tests/browser/synthetic_raw.py N SH_DEGREE EXTENT OUT.f32

Imports codec/synthetic.py without the codec package's __init__ (which needs zstandard), so it runs
with numpy alone (e.g. on the GPU machine).
"""
import sys
import types
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
pkg = types.ModuleType("codec")
pkg.__path__ = [str(REPO / "codec")]
sys.modules.setdefault("codec", pkg)
from codec.synthetic import synthetic_scene  # noqa: E402

n, deg, extent, out = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
g = synthetic_scene(n, sh_degree=deg, seed=1, extent=extent)
k = (deg + 1) ** 2 - 1
st = (16 + 3 * k + 3) // 4 * 4
a = np.zeros((n, st), np.float32)
a[:, 0:3] = g.positions
a[:, 3] = g.opacities
a[:, 4:7] = g.scales
a[:, 8:12] = g.rotations
a[:, 12:15] = g.sh_dc
a[:, 16:16 + 3 * k] = g.sh_rest
a.tofile(out)
print(f"wrote {n} x {st} floats to {out}")
