"""``gsd view FILE`` (reference_viewer/serve.py, a ``gsd.commands`` plugin of codec/cli.py).

CLI: the help, bad input (missing file, a file no reader takes, a .gsd that is not a stream) in one
line with the codec's exit statuses, and a server that listens on 127.0.0.1 only and serves the
viewer, the stream and the redirect that carries ``up``.

Browser (headless Chromium, SwiftShader WebGPU; skipped without node, chromium or playwright-core):
PLAYBOT (../shared/scenes/playbot.sog) subsampled to 4 000 Gaussians (their scales x4, so the sparse
sample still covers the figure) is written to a temporary .ply and opened with ``gsd view``. The page
must play the encoded stream, start on the fitted framing (the 2nd-98th percentile box's centre on
the image centre, the camera upright for a y-down scene), and its snapshot must match
quality/rasterizer.py's render of the decoded stream from the same camera: PSNR >= 40 dB on the
8-bit snapshot (the viewer's renderer is 72+ dB from the rasterizer, tests/test_viewer_render.py;
8-bit rounding caps this at ~59 dB; a flipped axis or a wrong framing lands far below). The HUD
counts the keyframe-only stream as 1 frame, 1 keyframe; a .ply picked in the file input gives one
message naming it and saying it is not a GSD stream. A folder of four such PLAYBOT frames (its upper
half turning, a band recolouring) is a 4D sequence: paused and scrubbed with the viewer's timeline, the
page shows the Python decoder's state at each frame it stops at, and its snapshot at frame 2 matches the
rasterizer's render of that frame at the same bound.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SCENE = REPO.parent / "shared" / "scenes" / "playbot.sog"
CHROMIUM = os.environ.get("GSD_CHROMIUM", "/usr/bin/chromium")
PLAYWRIGHT = REPO / "node_modules" / "playwright-core"
NODE = shutil.which("node")
GSD = [sys.executable, "-m", "codec.cli"]
W, H = 160, 120
PSNR_BOUND = 40.0


def gsd(*args, timeout=60):
    return subprocess.run([*GSD, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


class View:
    """A running ``gsd view``: its process and port (from the address line on stdout)."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([*GSD, "view", *args], cwd=REPO, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if not m:
            self.proc.kill()
            raise AssertionError(f"gsd view did not start: {line!r} {self.proc.stderr.read()[-2000:]}")
        self.port = int(m.group(1))
        self.url = f"http://127.0.0.1:{self.port}/"

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _browse(view: View, script: str, out: Path, stream_name: str, *args) -> tuple[dict, bytes]:
    """Run tests/browser/SCRIPT on ``view``'s page (OUT gets its snapshot and result.json), then fetch the
    stream it played; closes the view. Returns (result.json, stream bytes)."""
    try:
        out.mkdir()
        p = subprocess.run([NODE, str(REPO / "tests/browser" / script), f"{view.url}?size={W}x{H}", str(out),
                            *map(str, args)], capture_output=True, text=True, timeout=180)
        assert p.returncode == 0, f"browser run failed:\n{p.stdout}\n{p.stderr}"
        with urllib.request.urlopen(f"{view.url}stream/{stream_name}") as r:
            stream = r.read()
    finally:
        view.close()
    return json.loads((out / "result.json").read_text()), stream


@pytest.fixture
def small_stream(tmp_path) -> Path:
    from codec import Encoder, Grid, Profile
    from codec.synthetic import synthetic_scene

    g = synthetic_scene(500, sh_degree=1, seed=3)
    enc = Encoder(Profile.preset("compact", sh_degree=1, grid=Grid.fit(g.positions)))
    path = tmp_path / "small.gsd"
    path.write_bytes(enc.header_bytes() + enc.keyframe(g))
    return path


def test_view_help():
    r = gsd("view", "--help")
    assert r.returncode == 0, r.stderr
    for word in ("FILE", "--port", "--up", "--open", "127.0.0.1"):
        assert word in r.stdout
    assert "view" in gsd("--help").stdout          # listed among the commands


def test_view_bad_files(tmp_path):
    r = gsd("view", str(tmp_path / "missing.ply"))
    assert r.returncode == 2 and "no such file" in r.stderr and "Traceback" not in r.stderr
    junk = tmp_path / "junk.ply"
    junk.write_bytes(b"this is not a scene\n" * 10)
    r = gsd("view", str(junk))
    assert r.returncode == 1 and r.stderr.count("\n") <= 2 and "junk.ply" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    fake = tmp_path / "fake.gsd"
    fake.write_bytes(b"PK\x03\x04" + bytes(100))
    r = gsd("view", str(fake))
    assert r.returncode == 1 and "not a GSD stream" in r.stderr and "Traceback" not in r.stderr, r.stderr


def _listening(port: int) -> list[str]:
    """Local addresses (hex, as /proc/net/tcp* writes them) of the sockets listening on ``port``."""
    out = []
    for name in ("tcp", "tcp6"):
        path = Path("/proc/net") / name
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            f = line.split()
            addr, p = f[1].split(":")
            if int(p, 16) == port and f[3] == "0A":          # 0A: LISTEN
                out.append(addr)
    return out


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads /proc/net/tcp (Linux)")
def test_view_listens_on_loopback_only(small_stream):
    v = View(str(small_stream), "--up", "z")
    try:
        addrs = _listening(v.port)
        assert addrs and all(a == "0100007F" for a in addrs), addrs      # 127.0.0.1, nothing else
        opener = urllib.request.build_opener(type("NoRedirect", (urllib.request.HTTPRedirectHandler,),
                                                  {"redirect_request": lambda *a, **k: None}))
        with pytest.raises(urllib.error.HTTPError) as e:
            opener.open(v.url + "?size=64x48")
        loc = e.value.headers["Location"]
        assert "stream=/stream/small.gsd" in loc and "up=z" in loc and "size=64x48" in loc, loc
        with urllib.request.urlopen(f"{v.url}stream/small.gsd") as r:
            assert r.read() == small_stream.read_bytes()
        with urllib.request.urlopen(f"{v.url}viewer/app/main.mjs") as r:
            assert "javascript" in r.headers["Content-Type"]
    finally:
        v.close()


# ------------------------------------------------------------------------------------------- browser
def _subsampled_scene(path: Path, n: int = 4000) -> None:
    from codec.interop.scene import read_scene
    from codec.ply import write_ply

    g, _ = read_scene(SCENE)
    g = g.take(np.sort(np.random.default_rng(0).choice(len(g), n, replace=False)))
    g.scales = g.scales + np.float32(np.log(4.0))
    write_ply(str(path), g)


def _psnr(a, b) -> float:
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else -10.0 * np.log10(mse)


@pytest.mark.skipif(not (Path(CHROMIUM).exists() and PLAYWRIGHT.exists() and NODE and SCENE.exists()),
                    reason="needs node, Debian's chromium, node_modules/playwright-core and ../shared/scenes/playbot.sog")
def test_view_in_browser_matches_reference(tmp_path):
    from codec.stream import read_stream
    from quality.cameras import Camera
    from quality.rasterizer import render

    ply = tmp_path / "bot.ply"
    _subsampled_scene(ply)
    out = tmp_path / "out"
    res, stream = _browse(View(str(ply)), "view_scene.mjs", out, "bot.ply.gsd", ply)
    snap = res["snapshot"]
    for dec, _ in read_stream(stream):
        pass
    _, g = dec.state.to_gaussians()
    assert snap["live"] == len(g) == 4000 and snap["digest"] == str(dec.state.digest())

    # the fitted framing: the percentile box's centre on the image centre, upright for y-down (up = -y)
    c = snap["camera"]
    m = np.array(c["viewMatrix"], np.float64).reshape(4, 4)
    pos = np.sort(g.positions.astype(np.float64), axis=0)
    n = len(pos)
    lo, hi = pos[int(np.floor(0.02 * (n - 1)))], pos[int(np.ceil(0.98 * (n - 1)))]
    centre = m @ np.append((lo + hi) / 2, 1.0)
    assert abs(c["fx"] * centre[0] / centre[2]) < 0.5 and abs(c["fy"] * centre[1] / centre[2]) < 0.5, centre
    assert centre[2] == pytest.approx(1.1 * float(np.max(hi - lo)), rel=1e-3)
    assert m[1, 1] > 0.9                     # the camera's down is world +y (within the 20 degree pitch)

    cam = Camera(c["width"], c["height"], c["fx"], c["fy"], c["cx"], c["cy"], m)
    ref = np.clip(render(g, cam), 0, 1)
    img = np.fromfile(out / "snapshot.rgba", np.uint8).reshape(H, W, 4)[..., :3] / 255.0
    lit = float(np.mean(img.max(axis=2) > 0.05))
    score = _psnr(img, ref)
    print(f"gsd view snapshot vs rasterizer: {score:.2f} dB, lit {lit:.2f}")
    assert lit > 0.2, f"too little of the picture is lit ({lit:.2f}): the scene is not framed"
    assert score >= PSNR_BOUND, f"PSNR {score:.2f} < {PSNR_BOUND}"

    hud = res["hud"]
    assert hud["frames"] == 1 and hud["keyframes"] == 1 and "1 (1 key" in res["hudText"], res["hudText"]
    bad = res["badHud"]
    assert "bot.ply is not a GSD stream" in bad["error"] and bad["mode"].startswith("offline bot.ply"), bad
    assert res["badHudText"].count("not a GSD stream") == 1 and "BAD_MAGIC" not in res["badHudText"]


def test_view_serves_a_4d_sequence_as_one_stream(tmp_path):
    """Several scene files (here a folder of them) are one sequence: a keyframe and one delta per later
    file, the frame rate in the header, served to the viewer's timeline."""
    from codec.ply import write_ply
    from codec.stream import read_stream
    from codec.synthetic import synthetic_scene

    g = synthetic_scene(400, sh_degree=1, seed=5)
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(4):
        h = g.take(np.arange(len(g)))
        h.positions[:40, 0] += 0.05 * i
        write_ply(frames / f"frame_{i}.ply", h)
    view = View(str(frames), "--fps", "12", "-q")
    try:
        body = urllib.request.urlopen(view.url + "stream/frame_0-sequence.gsd", timeout=30).read()
    finally:
        view.close()
    decoded = [(dec.header, dec.state.seq) for dec, _ in read_stream(body)]
    assert len(decoded) == 4 and decoded[0][0].frame_rate == 12.0
    assert [seq for _, seq in decoded] == [1, 2, 3, 4]


def _sequence_frames(n: int = 3000, frames: int = 4) -> list:
    """PLAYBOT subsampled as _subsampled_scene does (n Gaussians, scales x4), then per frame: its upper
    half (y-down: y below the median) turned 12 degrees more about the vertical (y) axis through its
    centre, and from frame 2 on a vertical band of it recoloured."""
    from codec.interop.scene import read_scene

    g, _ = read_scene(SCENE)
    g = g.take(np.sort(np.random.default_rng(0).choice(len(g), n, replace=False)))
    g.scales = g.scales + np.float32(np.log(4.0))
    moving = g.positions[:, 1] < np.median(g.positions[:, 1])
    band = np.abs(g.positions[:, 0] - np.median(g.positions[:, 0])) < 0.15 * np.ptp(g.positions[:, 0])
    centre = g.positions[moving].mean(0)
    out = []
    for i in range(frames):
        h = g.take(np.arange(len(g)))
        t = np.radians(12.0 * i)
        p = h.positions[moving] - centre
        x, z = p[:, 0].copy(), p[:, 2].copy()
        p[:, 0], p[:, 2] = np.cos(t) * x + np.sin(t) * z, -np.sin(t) * x + np.cos(t) * z
        h.positions[moving] = p + centre
        if i >= 2:
            h.sh_dc[band] += 0.4
        out.append(h)
    return out


@pytest.mark.skipif(not (Path(CHROMIUM).exists() and PLAYWRIGHT.exists() and NODE and SCENE.exists()),
                    reason="needs node, Debian's chromium, node_modules/playwright-core and ../shared/scenes/playbot.sog")
def test_view_4d_sequence_in_browser_matches_reference(tmp_path):
    """``gsd view FOLDER`` of four PLAYBOT frames (part of it turning and recolouring): the page plays the
    sequence, is paused with the play button and scrubbed with the timeline to the last frame and back
    to frame K = 2 (a seek behind the current frame: decoded again from the keyframe). At every frame it
    stops at, the viewer's state is the Python decoder's after that frame (digest, seq, live count); the
    snapshot at K matches quality/rasterizer.py's render of frame K's decoded Gaussians from the viewer's
    camera at PSNR >= PSNR_BOUND, while frame 0's render (what a seek that did nothing would show) is far
    from it."""
    from codec.ply import write_ply
    from codec.stream import read_stream
    from quality.cameras import Camera
    from quality.rasterizer import render

    frames = tmp_path / "frames"
    frames.mkdir()
    for i, g in enumerate(_sequence_frames()):
        write_ply(frames / f"frame_{i:02d}.ply", g)
    K, seeks = 2, [3, 2]
    out = tmp_path / "out"
    res, stream = _browse(View(str(frames), "--fps", "1", "-q"), "view_sequence.mjs", out, "frame_00-sequence.gsd",
                          *seeks)

    want, scenes = [], {}
    for i, (dec, _) in enumerate(read_stream(stream)):
        want.append({"seq": dec.state.seq, "digest": str(dec.state.digest()), "live": len(dec.state)})
        if i in (0, K):
            scenes[i] = dec.state.to_gaussians()[1]
    assert len(want) == 4 and len({w["digest"] for w in want}) == 4
    assert res["header"] == {"frameRate": 1, "frames": 4}
    for st in (res["played"], res["paused"]):
        assert st["frame"] >= 1 and st["error"] is None and st["digest"] == want[st["frame"]]["digest"], st
    assert res["paused"]["playing"] is False
    for k, st in zip(seeks, res["seeks"]):
        assert st["frame"] == k and st["error"] is None and st["playing"] is False, st
        assert (st["seq"], st["digest"], st["live"]) == (want[k]["seq"], want[k]["digest"], want[k]["live"]), k
    assert res["still"]["frame"] == K and res["still"]["digest"] == want[K]["digest"]
    snap = res["snapshot"]
    assert (snap["seq"], snap["digest"], snap["live"]) == (want[K]["seq"], want[K]["digest"], want[K]["live"])
    assert res["label"].startswith(f"{K}/3 ") and f"frame {K} of 4" in res["hudText"], (res["label"], res["hudText"])
    assert res["arrival"] == {"keyframe": False, "dirty": 0}, res["arrival"]   # uploaded as it was applied

    c = snap["camera"]
    cam = Camera(c["width"], c["height"], c["fx"], c["fy"], c["cx"], c["cy"],
                 np.array(c["viewMatrix"], np.float64).reshape(4, 4))
    ref = np.clip(render(scenes[K], cam), 0, 1)
    ref0 = np.clip(render(scenes[0], cam), 0, 1)
    img = np.fromfile(out / "snapshot.rgba", np.uint8).reshape(H, W, 4)[..., :3] / 255.0
    lit = float(np.mean(img.max(axis=2) > 0.05))
    score, score0 = _psnr(img, ref), _psnr(img, ref0)
    print(f"gsd view sequence frame {K} vs rasterizer: {score:.2f} dB (vs frame 0: {score0:.2f} dB), lit {lit:.2f}")
    assert lit > 0.2, f"too little of the picture is lit ({lit:.2f}): the scene is not framed"
    assert score >= PSNR_BOUND, f"PSNR {score:.2f} < {PSNR_BOUND}"
    assert score0 < PSNR_BOUND - 10, f"frame {K} looks like frame 0 ({score0:.2f} dB): the test scene barely moves"
