"""Real-browser tests of the renderer's tile path (reference_viewer/render/tiles.mjs), beyond the image
test of tests/test_viewer_render.py (which runs both paths against quality/rasterizer.py):

- The footprint's PSNR cost. The tile path bounds a Gaussian by its opacity (D^T S^-1 D <= 2 ln(255
  alpha): no contribution of the reference lies outside) and caps that at 3 sigma by default
  (maxSigma), which drops contributions beyond 3 sigma (each below 0.011 alpha). Its model is the
  reference rasterizer with those contributions dropped (capped_reference below). The capped render
  must match that model at PSNR_BOUND, and match it better than the uncapped reference (the cap is
  applied); with maxSigma=inf the tile path must match the uncapped reference better than the model.
  The cost itself, PSNR(capped model, reference), must be finite (the scene has such contributions,
  so the test measures something) and above PSNR_BOUND (the cap is invisible at that bound).
- Entry capacity: with tileCapacity=64 every frame's (tile, Gaussian) entries overflow the first
  buffers; readPixels must give the complete image (the renderer grows the buffers and draws the frame
  again), and the stats must show the overflow and the growth.
- A live-like sequence: deltas applied between frames (moves, deletes, adds that outgrow the decoder
  store's capacity, so one step is a full upload into larger slot buffers and the others partial
  writes); every frame is compared with the reference of the state it shows.
- Path 'auto': the renderer times both paths on the first frame, keeps the faster, and the image
  still matches.
- An SH palette stream (SPEC 5.9, preset ``small``): the tile path's projection reads each slot's SH
  from the palette as the raster path's does.
- Needles: splats 50x longer than wide at every orientation, where a Gaussian's tiles (per tile row,
  the columns its ellipse meets) are far fewer than its box's: no pixel it reaches may be missed.
"""
from __future__ import annotations

import contextlib

import numpy as np
import pytest

from codec import Encoder, Grid, Profile
from codec.synthetic import synthetic_motion, synthetic_scene
from quality import rasterizer
from quality.rasterizer import render
from test_viewer_render import (CHROMIUM, H, LIT_FRACTION, NODE, PLAYWRIGHT, PSNR_BOUND, W, camera_json, load_image,
                                psnr, run_browser, scene_cameras)

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and PLAYWRIGHT.exists() and NODE),
    reason="needs node, Debian's chromium and node_modules/playwright-core (npm ci)")

MAX_SIGMA = 3.0   # the tile path's default footprint cap (tiles.mjs)


@contextlib.contextmanager
def capped_reference(max_sigma: float):
    """quality.rasterizer with every contribution beyond max_sigma (D^T S^-1 D > max_sigma^2) dropped.

    Its fragments carry a = min(0.99, alpha exp(-m^2 / 2)); m^2 <= max_sigma^2 exactly when
    a >= alpha exp(-max_sigma^2 / 2) (the 0.99 clamp only bites well inside), so the filter needs
    nothing but the fragment's alpha and the Gaussian's opacity."""
    plain = rasterizer._fragments
    floor = float(np.exp(-0.5 * max_sigma * max_sigma))

    def fragments(proj, order, width):
        for pix, gi, alpha in plain(proj, order, width):
            keep = alpha >= proj["opacity"][gi] * floor
            yield pix[keep], gi[keep], alpha[keep]

    rasterizer._fragments = fragments
    try:
        yield
    finally:
        rasterizer._fragments = plain


def keyframe_scene(tmp, name, n, degree, seed, preset="compact", needles=False):
    g = synthetic_scene(n, sh_degree=degree, seed=seed, extent=8.0)
    g.scales = g.scales + np.float32(2.2)   # large overlapping splats, as in test_viewer_render
    if needles:   # one long axis (the scene's largest), the other two 50x shorter
        g.scales = np.repeat(g.scales.max(axis=1, keepdims=True) + np.float32(0.5), 3, axis=1)
        g.scales[:, 1:] -= np.float32(np.log(50.0))
    g.sh_rest = g.sh_rest * np.float32(3.0)  # view-dependent colour that shows in the images
    enc = Encoder(Profile.preset(preset, sh_degree=degree, grid=Grid.fit(g.positions)))
    (tmp / f"{name}.gsd").write_bytes(enc.header_bytes() + enc.keyframe(g))
    return enc


def job_for(tmp, query, scenes):
    (tmp / "out").mkdir(exist_ok=True)
    return {"dataDir": str(tmp), "outDir": str(tmp / "out"), "width": W, "height": H, "format": "",
            "query": query, "scenes": scenes}


def images(tmp, res, name):
    return [[load_image(tmp / "out" / c["file"], W, H)[..., :3] for c in step["cameras"]]
            for step in res["scenes"][name]["steps"]]


def lit(img) -> float:
    return float(np.mean(np.clip(img, 0, 1).max(axis=2) > 0.05))


@pytest.fixture(scope="module")
def footprint(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tiles_footprint")
    cams = scene_cameras(W, H)[:3]
    enc = keyframe_scene(tmp, "fp", 6000, 1, seed=11)
    g = enc.state.to_gaussians()[1]
    full = [render(g, c) for c in cams]
    with capped_reference(MAX_SIGMA):
        capped = [render(g, c) for c in cams]
    scenes = [{"name": "fp", "stream": {"file": "fp.gsd"}, "steps": [{"cameras": [camera_json(c) for c in cams]}]}]
    out = {}
    for key, query in (("cap", {"path": "tiles"}), ("nocap", {"path": "tiles", "maxSigma": "inf"})):
        sub = tmp / key
        sub.mkdir()
        (sub / "fp.gsd").write_bytes((tmp / "fp.gsd").read_bytes())
        out[key] = images(sub, run_browser(sub, job_for(sub, query, scenes)), "fp")[0]
    return full, capped, out


def test_footprint_cap_psnr_cost(footprint):
    full, capped, out = footprint
    cost = [psnr(c, f) for c, f in zip(capped, full)]
    rows = [(psnr(a, c), psnr(a, f), psnr(b, c), psnr(b, f)) for a, b, c, f in zip(out["cap"], out["nocap"], capped, full)]
    print(f"cap {MAX_SIGMA} sigma: model vs reference {', '.join(f'{x:.2f}' for x in cost)} dB (mean {np.mean(cost):.2f})")
    for i, (ac, af, bc, bf) in enumerate(rows):
        print(f"cam{i}: capped tiles vs model {ac:.2f} / vs reference {af:.2f}; uncapped tiles vs model {bc:.2f} / vs reference {bf:.2f}")
    for i, (ac, af, bc, bf) in enumerate(rows):
        assert lit(full[i]) >= LIT_FRACTION and lit(out["cap"][i]) >= LIT_FRACTION
        assert np.isfinite(cost[i]), "no contribution beyond the cap in this view: the test measures nothing"
        assert cost[i] >= PSNR_BOUND, f"cam {i}: the {MAX_SIGMA}-sigma cap costs {cost[i]:.2f} dB"
        assert ac >= PSNR_BOUND and ac > af, f"cam {i}: capped tile render vs model {ac:.2f}, vs reference {af:.2f}"
        assert bf >= PSNR_BOUND and bf > bc, f"cam {i}: uncapped tile render vs reference {bf:.2f}, vs model {bc:.2f}"


def test_entry_capacity_overflow_grows(tmp_path):
    cams = scene_cameras(W, H)[:2]
    enc = keyframe_scene(tmp_path, "cap", 4000, 0, seed=5)
    g = enc.state.to_gaussians()[1]
    scenes = [{"name": "cap", "stream": {"file": "cap.gsd"}, "steps": [{"cameras": [camera_json(c) for c in cams]}]}]
    res = run_browser(tmp_path, job_for(tmp_path, {"path": "tiles", "maxSigma": "inf", "tileCapacity": 64}, scenes))
    imgs = images(tmp_path, res, "cap")[0]
    stats = [c["stats"] for c in res["scenes"]["cap"]["steps"][0]["cameras"]]
    print(stats)
    assert stats[0]["tileOverflows"] >= 1 and stats[0]["tileGrows"] >= 1, stats[0]
    for s in stats:
        assert s["tileEntries"] > 64 and s["tileCapacity"] >= s["tileEntries"], s
    for i, c in enumerate(cams):
        p = psnr(imgs[i], render(g, c))
        assert lit(imgs[i]) >= LIT_FRACTION and p >= PSNR_BOUND, f"cam {i}: {p:.2f} dB"


def test_live_sequence_of_deltas(tmp_path):
    """Frames between deltas: slot buffers, tile rects and tile lists follow each change of the scene."""
    cams = scene_cameras(W, H)[1:3]
    cam_json = [camera_json(c) for c in cams]
    enc = keyframe_scene(tmp_path, "live", 3000, 1, seed=3)
    expected = [[render(enc.state.to_gaussians()[1], c) for c in cams]]
    steps = [{"cameras": cam_json}]
    rng = np.random.default_rng(1)
    for k in range(4):
        ids, g = enc.state.to_gaussians()
        idx, moved = synthetic_motion(g, 0.1, 0.4, seed=10 + k)
        dele = np.setdiff1d(rng.choice(len(ids), int(0.02 * len(ids)), replace=False), idx)
        add = moved.take(np.arange(min(len(idx), 300)))
        add.positions = add.positions + np.float32(0.7 + 0.1 * k)
        frame = enc.encode(update=(ids[idx], moved), delete=ids[dele])
        # the third step adds many: the decoder's store outgrows its capacity (a full upload)
        n_add = 20 if k == 2 else 1
        for j in range(n_add):
            a = add.take(np.arange(len(add)))
            a.positions = a.positions + np.float32(0.05 * j)
            frame += enc.encode(add=(enc.assign_ids(a.positions), a))
        (tmp_path / f"live_{k}.gsd").write_bytes(frame)
        steps.append({"frames": f"live_{k}.gsd", "cameras": cam_json})
        expected.append([render(enc.state.to_gaussians()[1], c) for c in cams])
    scenes = [{"name": "live", "stream": {"file": "live.gsd"}, "steps": steps}]
    res = run_browser(tmp_path, job_for(tmp_path, {"path": "tiles", "tileCapacity": 1024}, scenes))
    imgs = images(tmp_path, res, "live")
    syncs = [s["sync"] for s in res["scenes"]["live"]["steps"][1:]]
    print([(s["full"], s["bytes"], s["live"]) for s in syncs])
    assert any(s["full"] for s in syncs) and any(not s["full"] for s in syncs), syncs
    for si, (got, exp) in enumerate(zip(imgs, expected)):
        for ci in range(len(cams)):
            p = psnr(got[ci], exp[ci])
            print(f"step {si} cam {ci}: {p:.2f} dB")
            assert lit(got[ci]) >= LIT_FRACTION and p >= PSNR_BOUND, f"step {si} cam {ci}: {p:.2f} dB"
    # and the frames differ from one step to the next (the deltas reached the image)
    assert psnr(imgs[0][0], imgs[-1][0]) < PSNR_BOUND


def test_auto_path_measures_both(tmp_path):
    cams = scene_cameras(W, H)[:1]
    enc = keyframe_scene(tmp_path, "auto", 3000, 0, seed=9)
    g = enc.state.to_gaussians()[1]
    scenes = [{"name": "auto", "stream": {"file": "auto.gsd"}, "steps": [{"cameras": [camera_json(c) for c in cams]}]}]
    res = run_browser(tmp_path, job_for(tmp_path, {"path": "auto"}, scenes))
    stats = res["scenes"]["auto"]["steps"][0]["cameras"][0]["stats"]
    choice = stats["pathChoice"]
    print(choice)
    assert choice["raster"] > 0 and choice["tiles"] > 0
    assert choice["path"] == ("tiles" if choice["tiles"] < choice["raster"] else "raster") == stats["path"]
    img = images(tmp_path, res, "auto")[0][0]
    assert psnr(img, render(g, cams[0])) >= PSNR_BOUND


def tiles_match_reference(tmp_path, name: str, enc, cams) -> None:
    """The stream ``name``.gsd (``enc``'s state) drawn on the uncapped tile path matches the reference from every camera."""
    g = enc.state.to_gaussians()[1]
    scenes = [{"name": name, "stream": {"file": f"{name}.gsd"}, "steps": [{"cameras": [camera_json(c) for c in cams]}]}]
    res = run_browser(tmp_path, job_for(tmp_path, {"path": "tiles", "maxSigma": "inf"}, scenes))
    for i, (img, c) in enumerate(zip(images(tmp_path, res, name)[0], cams)):
        p = psnr(img, render(g, c))
        print(f"cam {i}: {p:.2f} dB, lit {lit(img):.2f}")
        assert lit(img) >= LIT_FRACTION and p >= PSNR_BOUND, f"cam {i}: {p:.2f} dB"


def test_palette_stream(tmp_path):
    cams = scene_cameras(W, H)[::2]
    enc = keyframe_scene(tmp_path, "pal", 4000, 3, seed=21, preset="small")
    assert enc.profile.palette > 0
    tiles_match_reference(tmp_path, "pal", enc, cams)


def test_needles_lose_no_pixel(tmp_path):
    cams = scene_cameras(W, H)[1::2]
    enc = keyframe_scene(tmp_path, "needles", 3000, 0, seed=4, needles=True)
    tiles_match_reference(tmp_path, "needles", enc, cams)
