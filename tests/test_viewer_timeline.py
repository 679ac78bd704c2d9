"""The viewer's timeline on a 4D stream (a short sequence made from a real scene), in headless Chromium.

The stream: ../shared/scenes/playbot.sog (a synthetic scene when it is absent) subsampled to 3 000
Gaussians; over 10 frames its upper part turns about the vertical axis and a band of it changes colour;
written as PLY files and encoded by `gsd encode 'frame_*.ply' --fps 10` (one keyframe, 9 deltas).
tests/browser/timeline.mjs opens it in the viewer, plays, pauses, scrubs forward and back, turns on loop
and 2x speed and plays through the end; every frame it stops at must show the Python decoder's state
(digest, seq, live count) at that frame.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from codec import cli
from codec.interop.scene import read_scene
from codec.ply import write_ply
from codec.stream import read_stream
from codec.synthetic import synthetic_scene

REPO = Path(__file__).resolve().parents[1]
SCENE = REPO.parent / "shared" / "scenes" / "playbot.sog"
CHROMIUM = os.environ.get("GSD_CHROMIUM", "/usr/bin/chromium")
PLAYWRIGHT = REPO / "node_modules" / "playwright-core"
NODE = shutil.which("node")
FRAMES, N = 10, 3000

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and PLAYWRIGHT.exists() and NODE),
    reason="needs node, Debian's chromium and node_modules/playwright-core (npm ci)")


def sequence_frames(n: int = N, frames: int = FRAMES):
    """The scene subsampled to n Gaussians, then per frame: its upper half turned 4 degrees more about
    the vertical (z) axis through its centre, and from frame 5 on a band of it recoloured."""
    g = read_scene(SCENE)[0] if SCENE.exists() else synthetic_scene(n, 1, 0)
    g = g.take(np.sort(np.random.default_rng(0).choice(len(g), min(n, len(g)), replace=False)))
    g = g.with_sh_degree(min(g.sh_degree, 1))
    up = 2 if np.ptp(g.positions[:, 2]) >= np.ptp(g.positions[:, 1]) else 1
    moving = g.positions[:, up] > np.median(g.positions[:, up])
    band = np.abs(g.positions[:, 0] - np.median(g.positions[:, 0])) < 0.1 * np.ptp(g.positions[:, 0])
    centre = g.positions[moving].mean(0)
    axes = [a for a in range(3) if a != up]
    out = []
    for i in range(frames):
        h = g.take(np.arange(len(g)))
        t = np.radians(4.0 * i)
        p = h.positions[moving] - centre
        x, y = p[:, axes[0]].copy(), p[:, axes[1]].copy()
        p[:, axes[0]], p[:, axes[1]] = np.cos(t) * x - np.sin(t) * y, np.sin(t) * x + np.cos(t) * y
        h.positions[moving] = p + centre
        if i >= 5:
            h.sh_dc[band] += 0.3
        out.append(h)
    return out


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    d = tmp_path_factory.mktemp("seq")
    for i, g in enumerate(sequence_frames()):
        write_ply(d / f"frame_{i:04d}.ply", g)
    out = d / "seq.gsd"
    assert cli.main(["-q", "encode", str(d / "frame_*.ply"), str(out), "--fps", "10"]) == 0
    return out


def python_states(path: Path) -> list[dict]:
    return [{"seq": dec.state.seq, "digest": str(dec.state.digest()), "live": len(dec.state)}
            for dec, _ in read_stream(path.read_bytes())]


def test_timeline_play_pause_scrub_loop(stream, tmp_path):
    want = python_states(stream)
    assert len(want) == FRAMES
    ks = [7, 2, 9, 0, 4]
    out = tmp_path / "result.json"
    p = subprocess.run([NODE, str(REPO / "tests/browser/timeline.mjs"), str(stream), str(out), *map(str, ks)],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["header"] == {"frameRate": 10, "frames": FRAMES}
    assert r["played"]["fps"] == 10                      # the header's rate, not the fps box's 25
    assert r["paused"]["playing"] is False and r["pausedLater"]["frame"] == r["paused"]["frame"]
    for st in (r["played"], r["paused"]):
        assert st["digest"] == want[st["frame"]]["digest"]
    for k, st in zip(ks, r["seeks"]):
        assert st["frame"] == k and st["error"] is None and st["playing"] is False
        assert (st["seq"], st["digest"], st["live"]) == (want[k]["seq"], want[k]["digest"], want[k]["live"]), k
    assert r["speed"]["fps"] == 20 and r["loopOn"] is True
    assert r["looped"]["error"] is None and r["looped"]["digest"] == want[r["looped"]["frame"]]["digest"]
    assert "timeline" in r["hud"] and "fps x 2" in r["hud"]
