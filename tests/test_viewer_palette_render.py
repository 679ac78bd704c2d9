"""Real-browser image test of the reference viewer on SH palette streams (SPEC.md 5.9).

A scene at SH degree 3 is encoded with the palette preset ``small`` (SH_REST as one u16 index per
Gaussian into a palette of up to 65,536 entries); the viewer decodes it in headless Chromium (the
JS decoder, then the WebGPU renderer, which resolves each slot's index in the palette buffer) and
quality/rasterizer.py renders the same decoded state (the Python codec's floats, which read the
palette). Steps, each compared view by view at PSNR >= 40 dB as in tests/test_viewer_render.py:

0. the keyframe (the palette and every Gaussian);
1. a delta: 5% moved, 3% deleted, 100 added with SH unlike any entry (new entries in the delta);
2. a frame of PALETTE blocks only, that sets a third of the entries in use to strong view-dependent
   colour: no slot is written (the Gaussians still hold their indices), only those entries are
   uploaded, and every Gaussian naming them must show the new SH (the image changes clearly, and
   matches the reference of the new state).

The keyframe uploads the entries it sets, not the whole palette of 65,536.

The first view of step 0 is also rendered from the same scene coded with scalar SH_REST (preset
``compact``): the two differ only by the palette's approximation of each Gaussian's SH.
"""
from __future__ import annotations

import numpy as np
import pytest

from codec import Decoder, Encoder, Grid, Profile
from codec.attributes import Attr
from codec.delta import Delta, PaletteSet
from codec.synthetic import synthetic_motion, synthetic_scene
from quality.rasterizer import render
from test_viewer_render import (CHROMIUM, H, LIT_FRACTION, NODE, PLAYWRIGHT, PSNR_BOUND, W, camera_json, load_image,
                                psnr, run_browser, scene_cameras)

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and PLAYWRIGHT.exists() and NODE),
    reason="needs node, Debian's chromium and node_modules/playwright-core (npm ci)")

N = 6000


def scene():
    g = synthetic_scene(N, sh_degree=3, seed=21, extent=8.0)
    g.scales = g.scales + np.float32(2.2)   # overlapping layers, as in test_viewer_render
    g.sh_rest = g.sh_rest * np.float32(3.0)  # view-dependent colour that shows in the images
    return g


def build(tmp):
    cams = scene_cameras(W, H)
    cam_json = [camera_json(c) for c in cams]
    g = scene()
    grid = Grid.fit(g.positions)
    enc = Encoder(Profile.preset("small", sh_degree=3, grid=grid))
    assert enc.profile.palette == 65536
    (tmp / "pal.gsd").write_bytes(enc.header_bytes() + enc.keyframe(g))
    exp = [[render(enc.state.to_gaussians()[1], c) for c in cams]]
    dec = Decoder()
    data = (tmp / "pal.gsd").read_bytes()
    keyframe_entries = dec.read_frame(data[dec.set_header(data):])[0].palette.index
    # 1: move 5%, delete 3%, add 100 with new SH
    ids, gd = enc.state.to_gaussians()
    idx, moved = synthetic_motion(gd, 0.05, 0.3, seed=5)
    rng = np.random.default_rng(5)
    dele = np.setdiff1d(rng.choice(len(ids), int(0.03 * len(ids)), replace=False), idx)
    add = moved.take(np.arange(100))
    add.positions = add.positions + np.float32(0.5)
    add.sh_rest = (rng.standard_normal(add.sh_rest.shape) * 0.5).astype(np.float32)
    entries_before = int(np.count_nonzero(enc.state.palette.any(axis=0)))
    frame = enc.encode(update=(ids[idx], moved), delete=ids[dele])
    frame += enc.encode(add=(enc.assign_ids(add.positions), add))
    assert np.count_nonzero(enc.state.palette.any(axis=0)) > entries_before   # the adds earned entries
    (tmp / "pal_delta.gsd").write_bytes(frame)
    exp.append([render(enc.state.to_gaussians()[1], c) for c in cams])
    # 2: PALETTE only: a third of the entries in use get strong SH (+M for R, -M for G and B)
    _, slots = enc.state.index.sorted_items()
    used = np.unique(enc.state.codes[Attr.SH_REST][0, slots])
    chosen = used[::3]
    p = enc.profile
    k = 15
    lim = p.rest_limits().astype(np.int64)
    sign = np.repeat([1, -1, -1], k)
    codes = np.repeat((sign * lim)[:, None], len(chosen), axis=1).astype(p.rest_dtype)
    d = Delta.empty_like(p, seq=enc.state.seq + 1, base_seq=enc.state.seq)
    d.palette = PaletteSet(chosen.astype(np.uint16), codes)
    (tmp / "pal_entries.gsd").write_bytes(enc.encode_delta(d))
    exp.append([render(enc.state.to_gaussians()[1], c) for c in cams])
    users = int(np.isin(enc.state.codes[Attr.SH_REST][0, slots], chosen).sum())
    facts = {"entries": [int(chosen.min()), int(chosen.max()) + 1], "users": users, "live": len(slots),
             "keyframe_entries": int(keyframe_entries.max()) + 1, "set": len(chosen)}
    # the same scene with scalar SH_REST
    senc = Encoder(Profile.preset("compact", sh_degree=3, grid=grid))
    (tmp / "scalar.gsd").write_bytes(senc.header_bytes() + senc.keyframe(g))
    job = {"dataDir": str(tmp), "outDir": str(tmp / "out"), "width": W, "height": H, "format": "", "scenes": [
        {"name": "palette", "stream": {"file": "pal.gsd"},
         "steps": [{"cameras": cam_json}, {"frames": "pal_delta.gsd", "cameras": cam_json},
                   {"frames": "pal_entries.gsd", "cameras": cam_json}]},
        {"name": "scalar", "stream": {"file": "scalar.gsd"}, "steps": [{"cameras": cam_json[:1]}]},
    ]}
    (tmp / "out").mkdir(exist_ok=True)
    return job, exp, facts


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("viewer_palette")
    job, exp, facts = build(tmp)
    res = run_browser(tmp, job)
    return tmp, job, exp, facts, res


def image(tmp, job, res, name, step, cam):
    f = res["scenes"][name]["steps"][step]["cameras"][cam]["file"]
    return load_image(tmp / "out" / f, job["width"], job["height"])[..., :3]


def test_palette_images_match_reference(rendered):
    tmp, job, exp, facts, res = rendered
    rows = []
    for si, step in enumerate(exp):
        for ci, ref in enumerate(step):
            img = image(tmp, job, res, "palette", si, ci)
            lit = float(np.mean(np.clip(img, 0, 1).max(axis=2) > 0.05))
            rows.append((si, ci, psnr(img, ref), lit))
    report = "\n".join(f"step{s} cam{c}: {p:.2f} dB, lit {l:.2f}" for s, c, p, l in rows)
    print(report)
    for s, c, p, l in rows:
        assert l >= LIT_FRACTION, f"step {s} cam {c}: too dark to test\n{report}"
        assert p >= PSNR_BOUND, f"step {s} cam {c}: PSNR {p:.2f} < {PSNR_BOUND}\n{report}"


def test_entry_change_reaches_every_user_without_slot_writes(rendered):
    tmp, job, exp, facts, res = rendered
    steps = res["scenes"]["palette"]["steps"]
    load, sync = res["scenes"]["palette"]["load"], steps[2]["sync"]
    n3 = 45
    # the keyframe's entries: those up to the highest it sets (the rest of the 65,536 are zero)
    assert load["full"] is True and load["paletteBytes"] == facts["keyframe_entries"] * n3 * 4, (load, facts)
    assert sync["full"] is False and sync["runs"] == 0 and sync["bytes"] == 0, sync
    lo, hi = facts["entries"]
    assert facts["set"] * n3 * 4 <= sync["paletteBytes"] <= (hi - lo) * n3 * 4, (sync, facts)
    assert sync["live"] == facts["live"] and facts["users"] > facts["live"] // 10
    # the picture changed with the entries, as the reference says it should
    for ci in range(len(exp[2])):
        before, after = image(tmp, job, res, "palette", 1, ci), image(tmp, job, res, "palette", 2, ci)
        assert psnr(before, after) < 30.0, ci
        assert psnr(exp[1][ci], exp[2][ci]) < 30.0, ci


def test_palette_and_scalar_renders_agree(rendered):
    """The palette approximates each Gaussian's SH by an entry: close to the scalar coding, not equal."""
    tmp, job, exp, facts, res = rendered
    pal, scal = image(tmp, job, res, "palette", 0, 0), image(tmp, job, res, "scalar", 0, 0)
    p = psnr(pal, scal)
    print(f"palette vs scalar SH_REST: {p:.2f} dB")
    assert 25.0 <= p < 80.0
