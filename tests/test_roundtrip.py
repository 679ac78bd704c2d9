"""Round trip Encoder.keyframe -> bytes -> Decoder, per profile and SH degree.

Lossless must be bit-exact; lossy must stay within Profile.error_bound(attr)
(SPEC.md 5). The only slack added to a stated bound is one float32 ulp of the
decoded value: the spec's decoded values are float32, so the exact result
p' = origin + code*step is rounded once when stored.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from codec import Decoder, Encoder, Gaussians, Grid, Profile
from codec.attributes import ATTRS, Attr, rest_coeffs

from conftest import PROFILE_NAMES, SH_DEGREES, make_profile, random_gaussians, scenes


def roundtrip(profile: Profile, g: Gaussians) -> tuple[Gaussians, Gaussians, np.ndarray]:
    """(input in id order, decoded in id order, ids ascending) after keyframe -> bytes -> Decoder."""
    enc = Encoder(profile)
    ids = enc.assign_ids(g.positions)
    frame = enc.keyframe(g, ids)
    assert isinstance(frame, bytes)
    dec = Decoder(enc.header_bytes())
    dec.decode_frame(frame)
    assert dec.state.digest() == enc.state.digest()
    assert dec.state.equals(enc.state)
    out_ids, out = dec.state.to_gaussians()
    order = np.argsort(ids)
    np.testing.assert_array_equal(out_ids, ids[order])
    return g.take(order), out, out_ids


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Overflow-free logistic in float64."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, np.float64)))


def _ulp(x: np.ndarray) -> np.ndarray:
    return np.spacing(np.abs(np.asarray(x, np.float32))).astype(np.float64)


def _max_excess(err: np.ndarray, bound) -> float:
    """Largest err - bound (<= 0 when the bound holds); 0 for empty input."""
    return float((err - bound).max()) if err.size else 0.0


def check_lossless(orig: Gaussians, out: Gaussians) -> None:
    for a in ATTRS:
        x, y = orig.attribute(a), out.attribute(a)
        assert x.shape == y.shape
        np.testing.assert_array_equal(x.view(np.uint32), y.view(np.uint32), err_msg=f"{a.name} not bit-exact")


def measured_errors(profile: Profile, orig: Gaussians, out: Gaussians) -> dict:
    """Per attribute: (measured error array, allowed error array) in the spec's metric."""
    q = profile.quant
    res = {}
    # positions: world units
    p, pp = orig.positions.astype(np.float64), out.positions.astype(np.float64)
    res[Attr.POSITION] = (np.abs(pp - p), profile.error_bound(Attr.POSITION) + _ulp(pp))
    # scale / dc: uniform over a range; values outside it clamp to the range
    for a, lo, hi in ((Attr.SCALE, q.scale_min, q.scale_max), (Attr.SH_DC, q.dc_min, q.dc_max)):
        v, vv = orig.attribute(a).astype(np.float64), out.attribute(a).astype(np.float64)
        res[a] = (np.abs(vv - np.clip(v, lo, hi)), profile.error_bound(a) + _ulp(vv))
    # opacity: in alpha = sigmoid(logit) space
    alpha, alpha2 = sigmoid(orig.opacities), sigmoid(out.opacities)
    res[Attr.OPACITY] = (np.abs(alpha2 - alpha), profile.error_bound(Attr.OPACITY) + _ulp(out.opacities) / 4)
    # rest: per degree range r_l, clamped outside it (a palette has no per-component bound: below)
    if profile.sh_degree and profile.palette:
        check_palette_rest(profile, orig, out)
    elif profile.sh_degree:
        steps = profile.rest_steps()
        ranges = np.array([q.rest_range[l - 1] for l in _rest_degrees(profile.sh_degree)] * 3)
        v, vv = orig.sh_rest.astype(np.float64), out.sh_rest.astype(np.float64)
        err = np.abs(vv - np.clip(v, -ranges, ranges))
        # stated bound, and the tighter per-degree step/2 of SPEC.md 5
        assert _max_excess(err, steps / 2 + _ulp(vv)) <= 0, "SH_REST exceeds its per-degree step/2"
        res[Attr.SH_REST] = (err, profile.error_bound(Attr.SH_REST) + _ulp(vv))
    # rotation: unit quaternions up to sign; zero quaternion decodes to identity
    r = orig.rotations.astype(np.float64)
    n = np.linalg.norm(r, axis=1, keepdims=True)
    u = np.where(n > 0, r / np.where(n > 0, n, 1), np.array([1.0, 0, 0, 0]))
    d = out.rotations.astype(np.float64)
    assert np.allclose(np.linalg.norm(d, axis=1), 1, atol=1e-5)
    err = np.minimum(np.abs(u - d).max(1), np.abs(u + d).max(1))
    res[Attr.ROTATION] = (err, profile.error_bound(Attr.ROTATION) + 1e-7)
    # the three stored components: e = sqrt2 / (2n) each (SPEC.md 5.4), with the encoder's sign (q_i >= 0)
    rows = np.arange(len(u))
    i = np.argmax(np.abs(u), axis=1)
    us = u * np.where(u[rows, i] < 0, -1.0, 1.0)[:, None]
    stored = np.ones_like(u, bool)
    stored[rows, i] = False
    e = np.sqrt(2) / (2 * ((1 << q.rotation_bits) - 1))
    small_err = np.abs(us - d)[stored]
    assert _max_excess(small_err, e + 1e-7) <= 0, f"ROTATION stored components: {small_err.max():.3g} > {e:.3g}"
    return res


def check_palette_rest(profile: Profile, orig: Gaussians, out: Gaussians) -> None:
    """SH palette (SPEC.md 5.9): every decoded SH_REST is a palette entry, the encoder picked an entry
    about as near as the nearest one, and the palette explains most of the SH energy."""
    v, vv = orig.sh_rest.astype(np.float64), out.sh_rest.astype(np.float64)
    entries = np.unique(vv, axis=0)
    assert len(entries) <= max(1, -(-len(v) // 8)), "more distinct SH_REST values than palette entries"
    err = ((vv - v) ** 2).sum(1)
    best = ((v[:, None, :] - entries[None, :, :]) ** 2).sum(2).min(1)
    assert err.mean() <= 1.25 * best.mean() + 1e-9, "entries chosen far from the nearest"
    assert err.mean() <= (v ** 2).sum(1).mean() + 1e-9, "the palette does worse than no SH at all"


def _rest_degrees(sh_degree: int) -> list[int]:
    return [l for l in range(1, sh_degree + 1) for _ in range(2 * l + 1)]


def check_lossy(profile: Profile, orig: Gaussians, out: Gaussians) -> None:
    # The grid must contain the positions, else the position bound is not claimed.
    c = np.floor((orig.positions.astype(np.float64) - np.asarray(profile.grid.origin)) / profile.grid.cell_size)
    assert ((c >= 0) & (c < (1 << profile.grid.cell_bits))).all(), "test scene is not inside its grid"
    failures = []
    for a, (err, bound) in measured_errors(profile, orig, out).items():
        excess = _max_excess(err, bound)
        if excess > 0:
            failures.append(f"{a.name}: max error {float(err.max()):.6g} > bound {profile.error_bound(a):.6g}")
    assert not failures, f"{profile.name} d={profile.sh_degree}: " + "; ".join(failures)


@pytest.mark.parametrize("sh_degree", SH_DEGREES)
@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_roundtrip_realistic(name, sh_degree, realistic_scene):
    g = realistic_scene(2000, sh_degree, seed=7 + sh_degree)
    profile = make_profile(name, sh_degree, g.positions, cell_bits=10)
    orig, out, _ = roundtrip(profile, g)
    if profile.lossless:
        check_lossless(orig, out)
    else:
        check_lossy(profile, orig, out)
        # a bound that could never be reached would make the check vacuous: the error is real
        errs = measured_errors(profile, orig, out)
        assert errs[Attr.POSITION][0].max() > 0.25 * profile.error_bound(Attr.POSITION)
        if profile.palette and sh_degree:  # spatially coherent SH: the palette explains most of it
            v, vv = orig.sh_rest.astype(np.float64), out.sh_rest.astype(np.float64)
            assert ((vv - v) ** 2).sum(1).mean() < 0.5 * (v ** 2).sum(1).mean()


@settings(max_examples=30)
@given(scenes(min_n=100, max_n=800))
def test_roundtrip_property(scene):
    profile, g = scene
    orig, out, _ = roundtrip(profile, g)
    if profile.lossless:
        check_lossless(orig, out)
    else:
        check_lossy(profile, orig, out)


finite32 = st.floats(allow_nan=False, allow_infinity=False, width=32)


@st.composite
def wild_gaussians(draw, n_max=12):
    """A few Gaussians with arbitrary finite float32 attributes (subnormals, -0.0, huge values)."""
    degree = draw(st.sampled_from(SH_DEGREES))
    n = draw(st.integers(1, n_max))
    arr = lambda shape, elems=finite32: draw(hnp.arrays(np.float32, shape, elements=elems))
    pos = arr((n, 3), st.floats(-60, 60, width=32))
    return Gaussians(pos, arr((n, 3)), arr((n, 4)), arr((n,)), arr((n, 3)), arr((n, 3 * rest_coeffs(degree))))


GRID = Grid((-64.0, -64.0, -64.0), 1.0, 7, 12)


@settings(max_examples=60)
@given(wild_gaussians(), st.sampled_from(PROFILE_NAMES))
def test_roundtrip_arbitrary_values(g, name):
    """Out-of-range inputs clamp to the range (lossy) and every float32 survives bit-exact (lossless)."""
    profile = Profile.preset(name, g.sh_degree, GRID)
    orig, out, _ = roundtrip(profile, g)
    if profile.lossless:
        check_lossless(orig, out)
    else:
        check_lossy(profile, orig, out)


def test_lossless_keeps_negative_zero_and_subnormals():
    g = random_gaussians(np.random.default_rng(3), 16, 2)
    g.sh_rest[0, :] = -0.0
    g.scales[1, :] = np.float32(1e-45)  # smallest subnormal
    g.opacities[2] = np.float32(-3.4e38)
    profile = make_profile("lossless", 2, g.positions)
    orig, out, _ = roundtrip(profile, g)
    check_lossless(orig, out)
    assert (np.signbit(out.sh_rest) & (out.sh_rest == 0)).any()


@pytest.mark.parametrize("name", ["high", "compact"])
def test_lossy_profile_is_not_lossless(name):
    """Lossy decode really quantizes (guards against a test harness that compares input with itself)."""
    g = random_gaussians(np.random.default_rng(11), 500, 3)
    orig, out, _ = roundtrip(make_profile(name, 3, g.positions), g)
    for a in ATTRS:
        assert not np.array_equal(orig.attribute(a), out.attribute(a)), a.name
