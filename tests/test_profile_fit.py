"""Ranges fitted to the content (codec/fit.py, SPEC.md 5.8): they cover the data, survive degenerate
scenes, are exact in the header's f32, and the clamp count matches what the quantizer does."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from codec import Decoder, Encoder, Gaussians, GsdError, Profile
from codec.attributes import Attr, rest_coeffs
from codec.fit import clamp_mask, fit_grid, fit_rest_range, fit_uniform
from codec.profile import PRESETS
from conftest import random_gaussians

F32 = np.float32


def outlier_scene(n: int = 4000, sh_degree: int = 3, seed: int = 3) -> Gaussians:
    """A scene with what captured scenes have and the fixed ranges clamp: DC up to 14.9, log-scales to -20."""
    g = random_gaussians(np.random.default_rng(seed), n, sh_degree)
    dc, sc = g.sh_dc.copy(), g.scales.copy()
    dc[:20, 0] = np.linspace(4.0, 14.9, 20)
    sc[20:400, 2] = np.linspace(-20.0, -14.5, 380)
    return Gaussians(g.positions, sc, g.rotations, g.opacities, dc, g.sh_rest)


def header_keeps(p: Profile) -> bool:
    """The header carries the profile's numbers unchanged (the SH entries of its degree)."""
    def used(q):
        return dataclasses.replace(q, rest_bits=q.rest_bits[:p.sh_degree], rest_range=q.rest_range[:p.sh_degree])
    return used(Decoder(Encoder(p).header_bytes()).header.profile.quant) == used(p.quant)


def test_fitted_ranges_cover_the_data_where_the_fixed_ones_clamp():
    g = outlier_scene()
    fixed = Profile.preset("compact", 3)
    assert fixed.clamped(g)[Attr.SH_DC] == 20 and fixed.clamped(g)[Attr.SCALE] == 380
    p = Profile.fit("compact", g)
    q = p.quant
    assert (q.dc_min, q.dc_max) == (float(g.sh_dc.min()), float(g.sh_dc.max())) and q.dc_max == float(F32(14.9))
    assert (q.scale_min, q.scale_max) == (float(g.scales.min()), float(g.scales.max())) and q.scale_min == -20.0
    counts = p.clamped(g)
    assert counts[Attr.SH_DC] == 0 and counts[Attr.SCALE] == 0
    # the bit depths are the preset's; every fitted number is an f32 and the header carries it unchanged
    fixed_q = PRESETS["compact"]
    assert (q.scale_bits, q.dc_bits, q.rest_bits, q.rotation_bits, q.opacity_bits) == \
        (fixed_q.scale_bits, fixed_q.dc_bits, fixed_q.rest_bits, fixed_q.rotation_bits, fixed_q.opacity_bits)
    for v in (q.scale_min, q.scale_max, q.dc_min, q.dc_max, *q.rest_range):
        assert v == float(F32(v))
    assert header_keeps(p)
    # decoded within the bound everywhere (nothing clamped): the closed loop through a real stream
    enc = Encoder(p)
    ids = enc.assign_ids(g.positions)
    dec = Decoder(enc.header_bytes())
    dec.decode_frame(enc.keyframe(g, ids=ids))
    order = np.argsort(ids)
    _, out = dec.state.to_gaussians()
    for a in (Attr.SCALE, Attr.SH_DC):
        err = np.abs(out.attribute(a).astype(np.float64) - g.attribute(a)[order])
        assert err.max() <= p.error_bound(a) * (1 + 1e-6) + 1e-6


def test_clamp_mask_is_the_quantizers_clip():
    """Unclamped components decode within the bound; clamped ones decode to a range end."""
    g = outlier_scene(2000, 2)
    for p in (Profile.preset("compact", 2), Profile.preset("high", 2), Profile.fit("compact", g)):
        ids = np.arange(len(g), dtype=np.uint64)
        for a in (Attr.SCALE, Attr.SH_DC, Attr.SH_REST):
            v = g.attribute(a)
            mask = clamp_mask(p, a, v)
            back = p.dequantize(a, p.quantize(a, v, ids), ids).astype(np.float64)
            err = np.abs(back - v)
            bound = np.broadcast_to(0.5 * p.rest_steps() if a is Attr.SH_REST else p.error_bound(a), err.shape)
            assert (err[~mask] <= bound[~mask] * (1 + 1e-6) + 2.4e-7 * np.abs(v[~mask])).all()
            assert (err[mask] > bound[mask]).all()
            assert p.clamped(g)[a] == int(mask.sum())
        assert clamp_mask(p, Attr.POSITION, g.positions) is None and clamp_mask(p, Attr.OPACITY, g.opacities) is None
    assert Profile.preset("lossless", 2).clamped(g) == {Attr.SCALE: 0, Attr.SH_DC: 0, Attr.SH_REST: 0}
    # an UPDATE's {Attr: floats} counts the attributes it carries
    p = Profile.preset("compact", 2)
    assert p.clamped({Attr.SH_DC: g.sh_dc}) == {Attr.SCALE: 0, Attr.SH_DC: 20, Attr.SH_REST: 0}


def test_rest_range_minimizes_the_squared_error():
    rng = np.random.default_rng(0)
    v = (rng.laplace(0, 0.1, 20000) * np.exp(rng.normal(0, 0.5, 20000))).astype(F32)
    for levels in (1, 7, 15, 511):
        r = fit_rest_range(v, levels, 1.0)
        assert r == float(F32(r)) and 0 < r <= float(np.abs(v).max())

        def sse(x):
            a = np.abs(v.astype(np.float64))
            return ((a[a > x] - x) ** 2).sum() + (a <= x).sum() * (x / levels) ** 2 / 12
        grid = np.quantile(np.abs(v), np.linspace(0.5, 1.0, 400))
        assert sse(r) <= min(sse(x) for x in grid) * (1 + 1e-9)
    # more levels: a finer step, so clamping costs relatively more and the range widens
    assert fit_rest_range(v, 511, 1.0) > fit_rest_range(v, 15, 1.0) > fit_rest_range(v, 1, 1.0)


@pytest.mark.parametrize("name", ["compact", "high", "lossless"])
@pytest.mark.parametrize("case", ["empty", "one", "all_equal", "zero_rest", "huge", "nan"])
def test_degenerate_scenes_give_valid_profiles(name, case):
    d = 2
    n = {"empty": 0, "one": 1}.get(case, 50)
    g = random_gaussians(np.random.default_rng(1), max(n, 1), d, specials=False).take(slice(0, n))
    if case == "all_equal":
        g = Gaussians(g.positions * 0 + F32(1.5), np.full_like(g.scales, -5.0), g.rotations, g.opacities,
                      np.full_like(g.sh_dc, 0.3), np.full_like(g.sh_rest, -0.2))
    elif case == "zero_rest":
        g = g.with_sh_degree(1).with_sh_degree(3)  # degrees 2 and 3 all zero (a padded PLY)
        d = 3
    elif case == "huge":
        g = Gaussians(g.positions, np.full_like(g.scales, 3.4e38), g.rotations, g.opacities,
                      np.full_like(g.sh_dc, -3.4e38), g.sh_rest)
    elif case == "nan":
        dc = g.sh_dc.copy()
        dc[0, 0] = np.nan
        g = Gaussians(g.positions, g.scales, g.rotations, g.opacities, dc, g.sh_rest)
    p = Profile.fit(name, g)  # raises BAD_HEADER if any range broke SPEC.md 5.7
    assert p.sh_degree == d and p.name == name
    if name == "lossless":
        assert p.quant is None
        return
    assert p.quant.problem(d) is None and header_keeps(p)
    preset = PRESETS[name]
    if case == "empty":
        assert p.quant == preset
    if case == "zero_rest":
        assert p.quant.rest_range[1:] == preset.rest_range[1:]
    if case == "nan":  # the range ignores the NaN; the quantizer reports it
        assert np.isfinite([p.quant.dc_min, p.quant.dc_max]).all()
        with pytest.raises(ValueError, match="NaN"):
            Encoder(p).keyframe(g)
        return
    if case in ("one", "all_equal"):  # a single value is code 0: exact
        ids = np.arange(len(g), dtype=np.uint64)
        for a in (Attr.SCALE, Attr.SH_DC) if case == "all_equal" else ():
            v = g.attribute(a)
            assert np.array_equal(p.dequantize(a, p.quantize(a, v, ids), ids), v)
    assert p.clamped(g) == {Attr.SCALE: 0, Attr.SH_DC: 0, Attr.SH_REST: p.clamped(g)[Attr.SH_REST]}


def test_fit_uniform_edges():
    assert fit_uniform(np.zeros(0, F32), (-1.0, 2.0)) == (-1.0, 2.0)
    assert fit_uniform(np.array([5.0], F32), (-1.0, 2.0)) == (5.0, 8.0)
    lo, hi = fit_uniform(np.array([1e30], F32), (-1.0, 2.0))  # the span vanishes in f32: the next f32 up
    assert lo == float(F32(1e30)) and hi == float(np.nextafter(F32(1e30), F32(np.inf)))
    lo, hi = fit_uniform(np.array([np.finfo(F32).max], F32), (-1.0, 2.0))  # no f32 above: the range goes down
    assert lo < hi == float(np.finfo(F32).max) and np.isfinite(lo)
    assert fit_uniform(np.array([np.inf, -1.0, 2.0], F32), (0.0, 1.0)) == (-1.0, 2.0)


def test_fit_sh_degree_and_grid():
    g = random_gaussians(np.random.default_rng(2), 3000, 3)
    p = Profile.fit("compact", g, sh_degree=1)
    assert p.sh_degree == 1 and p.quant.rest_range[1:] == PRESETS["compact"].rest_range[1:]
    assert p.quant.rest_range[0] == Profile.fit("compact", g.with_sh_degree(1)).quant.rest_range[0]
    # cell bits move bits between ids and position codes; the position step stays the preset's
    step = {}
    for b in (8, 10, 12, 14):
        p = Profile.fit("compact", g, cell_bits=b)
        assert p.grid.cell_bits == b and p.quant.position_bits == 18 - b
        step[b] = p.grid.cell_size / (1 << p.quant.position_bits)
    assert len(set(step.values())) == 1
    grid, pb = fit_grid(g.positions, 8, 20)  # more cell bits than the step needs: position bits stay >= 1
    assert pb == 1 and grid.cell_bits == 20
    with pytest.raises(ValueError, match="unknown profile"):
        Profile.fit("tiny", g)


def test_fitted_header_is_rejected_if_tampered_into_an_empty_range():
    """The fit never writes min == max; a header that does is BAD_HEADER (SPEC.md 5.7)."""
    q = dataclasses.replace(PRESETS["compact"], dc_min=1.0, dc_max=1.0)
    with pytest.raises(GsdError):
        Profile(1, quant=q)


def test_the_reference_worlds_content_fits_the_streaming_defaults():
    """The generator writes its header before it makes content, so it keeps the fixed ranges: its scale and
    DC stay inside them, and SH rest clamps only in the tails (its coefficients reach +-1.5, the compact
    default is 0.9375). The count is here because the generator's device path does not report it."""
    torch = pytest.importorskip("torch")
    from reference_generator import Move, Turn, World, WorldConfig, attr_layout

    torch.set_num_threads(1)
    w = World(WorldConfig(sh_degree=1, target_live=5000, view_radius=36.0, retire_margin=12.0))
    w.reset(0)
    for k in range(6):
        w.step(Move(2.0) if k % 3 else Turn(30.0))
    _, x = w.scene()
    x, lay = x.numpy(), attr_layout(1)
    counts = w.profile.clamped({a: x[:, lay[a]] for a in (Attr.SCALE, Attr.SH_DC, Attr.SH_REST)})
    assert counts[Attr.SCALE] == 0 and counts[Attr.SH_DC] == 0
    assert counts[Attr.SH_REST] <= 1e-3 * len(x) * 9
