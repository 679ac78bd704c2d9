"""Closed-loop quantization: 1,000 UPDATE frames through Encoder -> bytes -> Decoder without drift.

The encoder codes residuals against the quantized state the decoder holds, so
after any number of frames the decoded state is exactly quantize(latest floats)
and its error is the one-shot quantization error (SPEC.md 5.5).
"""
from __future__ import annotations

import numpy as np
import pytest

from codec import Decoder, Encoder, Gaussians
from codec.attributes import ATTRS, Attr, full_mask, mask_attrs

from conftest import make_profile, random_gaussians
from test_roundtrip import check_lossless, check_lossy

FRAMES = 1000
N = 300


def _clip_ranges(profile, truth):
    """Keep the ground truth where the profile states its bound (inside ranges and the grid)."""
    q = profile.quant
    if q is None:
        return
    truth[Attr.SCALE] = np.clip(truth[Attr.SCALE], q.scale_min, q.scale_max)
    truth[Attr.SH_DC] = np.clip(truth[Attr.SH_DC], q.dc_min, q.dc_max)
    if profile.sh_degree:
        r = np.array([q.rest_range[l - 1] for l in range(1, profile.sh_degree + 1) for _ in range(2 * l + 1)] * 3)
        truth[Attr.SH_REST] = np.clip(truth[Attr.SH_REST], -r, r)


@pytest.mark.parametrize("name,sh_degree", [("compact", 3), ("high", 1), ("lossless", 2), ("compact", 0)])
def test_thousand_update_frames_no_drift(name, sh_degree):
    rng = np.random.default_rng(1000 + sh_degree)
    g = random_gaussians(rng, N, sh_degree)
    profile = make_profile(name, sh_degree, g.positions, cell_bits=6)
    lo, hi = g.positions.min(0), g.positions.max(0)  # moves stay inside the fitted grid
    truth = {a: g.attribute(a).astype(np.float32).copy() for a in ATTRS}
    _clip_ranges(profile, truth)

    enc = Encoder(profile)
    dec = Decoder(enc.header_bytes())
    ids = enc.assign_ids(truth[Attr.POSITION])
    kf = enc.encode(add=(ids, dict(truth)), keyframe=True)
    dec.decode_frame(kf)
    fmask = full_mask(sh_degree)
    sigma = {Attr.POSITION: 0.02, Attr.SCALE: 0.05, Attr.ROTATION: 0.05, Attr.OPACITY: 0.2,
             Attr.SH_DC: 0.05, Attr.SH_REST: 0.01}
    updated_frames = 0
    for f in range(FRAMES):
        k = int(rng.integers(1, 60))
        rows = rng.choice(N, k, replace=False)
        mask = int(rng.integers(1, fmask + 1)) & fmask or Attr.POSITION.bit
        for a in mask_attrs(mask):
            v = truth[a][rows] + rng.normal(0, sigma[a], truth[a][rows].shape).astype(np.float32)
            if a is Attr.POSITION:
                v = np.clip(v, lo, hi)
            truth[a][rows] = v
        _clip_ranges(profile, truth)
        frame = enc.encode(update=(ids[rows], {a: truth[a][rows] for a in mask_attrs(mask)}, mask))
        d = dec.decode_frame(frame)
        updated_frames += d.n_update > 0
        assert d.digest is not None and d.digest == enc.state.digest()
        assert dec.state.digest() == enc.state.digest(), f"digest differs after frame {f}"
        assert dec.state.seq == enc.state.seq == f + 2
        if f % 50 == 0 or f == FRAMES - 1:
            assert dec.state.equals(enc.state), f"state differs after frame {f}"
    assert updated_frames > FRAMES // 2  # the loop really sent updates

    # No drift: the decoder holds exactly the quantization of the latest floats ...
    order = np.argsort(ids)
    sids = ids[order]
    got_ids, codes = dec.state.sorted_codes()
    np.testing.assert_array_equal(got_ids, sids)
    for a in ATTRS:
        np.testing.assert_array_equal(codes[a], profile.quantize(a, truth[a][order], sids), err_msg=a.name)
    # ... so the error against the float ground truth is within the one-shot bound.
    orig = Gaussians.from_attributes({a: truth[a][order] for a in ATTRS})
    _, out = dec.state.to_gaussians()
    if profile.lossless:
        check_lossless(orig, out)
    else:
        check_lossy(profile, orig, out)


def test_closed_loop_beats_open_loop():
    """Sanity: coding residuals against previous floats (open loop) would drift; ours does not.

    Repeated tiny moves below half a step never change the quantized code in an open-loop
    coder, yet their sum moves the Gaussian far; the closed loop follows it.
    """
    rng = np.random.default_rng(5)
    g = random_gaussians(rng, 50, 0, specials=False)
    profile = make_profile("compact", 0, g.positions, cell_bits=6)
    step = 2 * profile.error_bound(Attr.POSITION)
    enc = Encoder(profile)
    dec = Decoder(enc.header_bytes())
    ids = enc.assign_ids(g.positions)
    dec.decode_frame(enc.keyframe(g, ids))
    pos = g.positions.astype(np.float64).copy()
    for _ in range(200):
        pos[:, 0] += 0.2 * step  # each move is below half a step
        dec.decode_frame(enc.encode(update=(ids, {Attr.POSITION: pos.astype(np.float32)}, Attr.POSITION.bit)))
    order = np.argsort(ids)
    _, out = dec.state.to_gaussians()
    err = np.abs(out.positions.astype(np.float64) - pos[order]).max()
    assert err <= profile.error_bound(Attr.POSITION) + 1e-5
    assert dec.state.digest() == enc.state.digest()
