"""Write codec/synthetic.py's trained-statistics scene as raw slot floats for reference_viewer/render/bench.mjs.

    python3 tests/browser/synthetic_raw.py N SH_DEGREE EXTENT OUT.f32

Imports codec/synthetic.py without the codec package's __init__ (which needs zstandard), so it runs
with numpy alone (e.g. on the GPU machine).
"""
import sys
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
pkg = types.ModuleType("codec")
pkg.__path__ = [str(REPO / "codec")]
sys.modules.setdefault("codec", pkg)
sys.path.insert(0, str(REPO / "reference_viewer" / "render"))
from codec.synthetic import synthetic_scene  # noqa: E402
from scene_raw import slot_floats  # noqa: E402

n, deg, extent, out = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
a = slot_floats(synthetic_scene(n, sh_degree=deg, seed=1, extent=extent))
a.tofile(out)
print(f"wrote {a.shape[0]} x {a.shape[1]} floats to {out}")
