"""reference_viewer/render/render_bench.py end to end on SwiftShader (node + Dawn, Chromium's Vulkan
ICD): every scene through both paths with frames timed while deltas stream, the tables written
between their markers, once, however often it runs. The tile path's images must match the raster
path's: the streaming measurement edits the store and must give the next path the same scene back.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WEBGPU = REPO / "node_modules/webgpu/index.js"
ICD = Path("/usr/lib/chromium/vk_swiftshader_icd.json")

pytestmark = pytest.mark.skipif(not (WEBGPU.exists() and ICD.exists() and shutil.which("node")),
                                reason="needs node, the webgpu package (npm ci) and Chromium's SwiftShader")


def _run(work: Path, out: Path) -> dict:
    env = dict(os.environ, LD_LIBRARY_PATH="/usr/lib/chromium", VK_ICD_FILENAMES=str(ICD))
    p = subprocess.run([sys.executable, str(REPO / "reference_viewer/render/render_bench.py"), "--sizes", "1500",
                        "--frames", "1", "--width", "64", "--height", "48", "--stream", "150,30,4", "--no-gsplat",
                        "--work", str(work), "--out", str(out)], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    return json.loads((work / "render_bench.json").read_text())


def test_render_bench_writes_both_paths_and_streaming_frames(tmp_path):
    out = tmp_path / "RENDER_BENCH.md"
    out.write_text("# Reference viewer benchmarks\n\nEarlier text stays.\n")
    res = _run(tmp_path / "work", out)
    assert [(s["kind"], s["n"]) for s in res["scenes"]] == [("trained", 1500), ("bench", 1500)]
    for s in res["scenes"]:
        paths = {p["path"]: p for p in s["paths"]}
        assert set(paths) == {"raster", "tiles"}
        for p in paths.values():
            assert len(p["frameMs"]) == 3 and min(p["frameMs"]) > 0
            t = p["stream"]
            assert t["k"] == 150 and t["deltas"] >= 1 and t["frames"] == 4
            assert 0 < t["steadyP50"] <= t["steadyP99"] and 0 < t["streamP50"] <= t["streamP99"]
            assert 0 < t["deltaFrameP50"] <= t["deltaFrameP99"] and 0 <= t["syncMsP50"] <= t["syncMsP99"]
            assert 0 <= t["gcFramesSteady"] <= t["frames"] and 0 <= t["gcFramesStream"] <= t["frames"]
            assert t["p99Ratio"] == pytest.approx(t["streamP99"] / t["steadyP99"], abs=0.01)
        assert min(paths["tiles"]["psnrVsFirst"]) > 40, paths["tiles"]["psnrVsFirst"]
        assert set(s["reference"]) == {"raster", "tiles"} and min(s["reference"].values()) > 35, s["reference"]
    sys.path.insert(0, str(REPO / "reference_viewer/render"))
    import render_bench                             # its second write replaces the section, not appends
    render_bench.write(out, render_bench.tables(res, "again"))
    text = out.read_text()
    assert text.startswith("# Reference viewer benchmarks\n\nEarlier text stays.\n")
    assert text.count("<!-- render_bench: begin -->") == 1 and text.count("<!-- render_bench: end -->") == 1
    assert "| trained | 1,500 | tiles |" in text and "| bench | 1,500 | raster |" in text
    assert "| p99 ratio |" in text and "| PSNR vs rasterizer.py dB (view 1) |" in text
