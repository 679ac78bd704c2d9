"""python -m quality.compare --scenes: real-scene rows beside SPZ v4 and SOG round-tripped by splat-transform.

The end-to-end test runs the real splat-transform CLI on a 300-Gaussian scene
rendered at 32x32, so it takes seconds, not minutes.
"""
from __future__ import annotations

import os
import re

import numpy as np
import pytest

from codec.ply import write_ply
from codec.synthetic import synthetic_scene
from quality import compare, scenes

TOOL = os.path.join(scenes.REPO, "node_modules", ".bin", "splat-transform")
needs_tool = pytest.mark.skipif(not os.access(TOOL, os.X_OK),
                                reason="node_modules/.bin/splat-transform missing (run `npm ci`)")
PEERS = ("SPZ v4 (splat-transform)", "SOG (splat-transform)")


def _rows(markdown: str) -> dict[str, list[str]]:
    """Cells of the real-scene table rows, by format name (the '(default)' mark dropped)."""
    out = {}
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 10 and (cells[0].startswith("GSD") or "splat-transform" in cells[0]):
            out[cells[0].replace(" (default)", "")] = cells
    return out


@needs_tool
def test_scenes_end_to_end_with_splat_transform_round_trips(tmp_path):
    folder = tmp_path / "scenes"
    folder.mkdir()
    write_ply(folder / "tiny.ply", synthetic_scene(300, 2, 0, 5.0))
    (folder / "notes.txt").write_text("not a scene")
    out = tmp_path / "report.md"
    # 150 of 300 rendered: the subsample and the order checks of every round trip are exercised
    argv = ["--scenes", str(folder), "--no-synthetic", "--views", "2", "--size", "32",
            "--max-render-gaussians", "150", "--cache", str(tmp_path / "cache"), "-q"]
    assert compare.main(argv + ["--out", str(out)]) == 0
    text = out.read_text()
    assert "## Real scenes" in text and "### tiny.ply: 300 Gaussians, SH degree 2" in text
    assert "150 of the 300 Gaussians rendered" in text
    assert "load average" in text and "SOG options: `--gpu cpu --sh-iterations 1`" in text
    assert "{" not in text and "}" not in text                            # no unformatted template left
    rows = _rows(text)
    formats = [f"GSD {p}" for p in scenes.gsd_profiles()] + list(PEERS)
    assert {"GSD lossless", "GSD high", "GSD compact"} <= set(formats)
    assert sorted(rows) == sorted(formats)
    default = f"GSD {scenes.cli_profile()}"
    assert f"| {default} (default) |" in text
    bpg = {k: float(v[1]) for k, v in rows.items()}
    psnr = {k: v[4] for k, v in rows.items()}
    assert all(b > 0 for b in bpg.values())
    assert bpg["GSD compact"] < bpg["GSD high"] < bpg["GSD lossless"] < 167.4   # float PLY: 167.34 B/G + header
    assert psnr["GSD lossless"] == "exact" and rows["GSD lossless"][6] == "1.0000"
    for name in [f for f in formats if f != "GSD lossless"]:
        assert 30 < float(psnr[name]) < 150, (name, psnr[name])        # lossy, yet close to the reference
        assert 0.9 < float(rows[name][6]) <= 1.0
        assert float(rows[name][7]) > 0 and float(rows[name][8]) >= 0
    assert float(rows["SOG (splat-transform)"][3]) == 1.0
    assert float(rows["GSD compact"][3]) == pytest.approx(bpg["GSD compact"] / bpg["SOG (splat-transform)"], abs=0.01)
    summary = re.search(rf"- tiny.ply: {default} \(default\) ([\d.]+) B/G vs SOG ([\d.]+) B/G", text)
    assert summary and float(summary.group(1)) == bpg[default]
    assert float(summary.group(2)) == bpg["SOG (splat-transform)"]
    assert "from the cache" not in text

    # a rerun takes the peers' files from the cache (SOG's k-means is random: the same file gives the same row)
    again = tmp_path / "again.md"
    assert compare.main(argv + ["--out", str(again)]) == 0
    rows2 = _rows(again.read_text())
    for name in PEERS:
        assert "from the cache" in rows2[name][9]
        assert rows2[name][1:7] == rows[name][1:7]


def test_spatial_subsample_is_deterministic_uniform_and_order_free():
    g = synthetic_scene(5000, 0, 3, 10.0)
    idx = scenes.spatial_subsample(g.positions, 500)
    assert len(idx) == 500 and np.all(np.diff(idx) > 0)
    assert np.array_equal(idx, scenes.spatial_subsample(g.positions, 500))
    perm = np.random.default_rng(0).permutation(len(g))                 # same Gaussians whatever their order
    assert np.array_equal(np.sort(perm[scenes.spatial_subsample(g.positions[perm], 500)]), idx)
    assert np.array_equal(scenes.spatial_subsample(g.positions, 0), np.arange(5000))
    assert np.array_equal(scenes.spatial_subsample(g.positions, 9999), np.arange(5000))
    # spatially uniform: each octant of the bounding box keeps about a tenth of its Gaussians
    p = g.positions
    octant = ((p > np.median(p, 0)) * [1, 2, 4]).sum(1)
    kept = np.bincount(octant[idx], minlength=8) / np.bincount(octant, minlength=8)
    assert np.all(np.abs(kept - 0.1) < 0.03), kept


def test_check_order_accepts_small_errors_and_rejects_a_shuffle():
    g = synthetic_scene(400, 0, 1, 5.0)
    near = g.take(np.arange(len(g)))
    near.positions = near.positions + 1e-4
    scenes.check_order(g, near, "x")
    with pytest.raises(RuntimeError, match="another order"):
        scenes.check_order(g, g.take(np.random.default_rng(1).permutation(len(g))), "x")
    with pytest.raises(RuntimeError, match="decoded 399"):
        scenes.check_order(g, g.take(np.arange(399)), "x")


@pytest.mark.parametrize("case, message", [
    ("missing", "no such folder"), ("empty", "no scene files"), ("file", "not a folder"),
    ("no-tool", "npm ci"), ("no-synthetic-alone", "--no-synthetic needs --scenes")])
def test_cli_usage_errors_are_clear(tmp_path, capsys, case, message):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.md").write_text("x")
    (tmp_path / "scene.ply").write_bytes(b"ply\n")
    argv = {"missing": ["--scenes", str(tmp_path / "nope")], "empty": ["--scenes", str(empty)],
            "file": ["--scenes", str(tmp_path / "scene.ply")],
            "no-tool": ["--scenes", str(tmp_path), "--splat-transform", str(tmp_path / "absent")],
            "no-synthetic-alone": ["--no-synthetic"]}[case]
    if case in ("missing", "empty", "file") and not os.access(TOOL, os.X_OK):
        argv += ["--splat-transform", "/bin/true"]                        # the folder check, not the tool's
    with pytest.raises(SystemExit) as e:
        compare.main(argv + ["--out", str(tmp_path / "r.md")])
    assert e.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r.md").exists()


def test_finite_reference_clamps_only_infinite_opacity():
    g = synthetic_scene(50, 0, 2, 5.0)
    assert scenes.finite_reference(g)[1] == 0
    g.opacities[[3, 7]] = [np.inf, -np.inf]
    out, clamped = scenes.finite_reference(g)
    assert clamped == 2 and np.isfinite(out.opacities).all()
    assert out.opacities[3] == scenes.OPACITY_CLAMP and out.opacities[7] == -scenes.OPACITY_CLAMP
    assert np.array_equal(np.delete(out.opacities, [3, 7]), np.delete(g.opacities, [3, 7]))
    g.scales[0, 0] = np.nan
    with pytest.raises(RuntimeError, match="scales"):
        scenes.finite_reference(g)


@needs_tool
def test_a_scene_that_cannot_be_read_is_reported_and_the_exit_status_is_1(tmp_path, capsys):
    folder = tmp_path / "scenes"
    folder.mkdir()
    (folder / "broken.ply").write_bytes(b"ply\nformat ascii 1.0\nnonsense\n")
    out = tmp_path / "r.md"
    assert compare.main(["--scenes", str(folder), "--no-synthetic", "--out", str(out), "-q"]) == 1
    assert "broken.ply: **not measured**: splat-transform" in out.read_text()
    assert "broken.ply" in capsys.readouterr().err


@needs_tool
def test_synthetic_scenes_go_through_the_real_scene_pipeline(tmp_path):
    """--synthetic-vs-sog: the synthetic trio as float PLY files, each with the `gsd encode` row beside SOG."""
    out = tmp_path / "report.md"
    argv = ["--no-synthetic", "--synthetic-vs-sog", "--scale", "0.003", "--views", "1", "--size", "32",
            "--cache", str(tmp_path / "cache"), "-q", "--out", str(out)]
    assert compare.main(argv) == 0
    text = out.read_text()
    names = [f"synthetic_{label.split(',')[0].replace(' ', '_')}_sh{d}_{max(100, int(n * 0.003))}.ply"
             for label, n, d, _, _ in compare.SCENES]
    for name, (_, n, d, _, _) in zip(names, compare.SCENES):
        assert f"### {name}: {max(100, int(n * 0.003))} Gaussians, SH degree {d}" in text
        assert re.search(rf"- {name}: GSD \w+ \(default\) [\d.]+ B/G vs SOG [\d.]+ B/G", text)
    assert "The synthetic scenes above, written as float PLY files" in text and "Scenes: every scene file" not in text
    assert "[0, 0, 1] for the synthetic scenes" in text
