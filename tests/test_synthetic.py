"""codec.synthetic: statistics of the synthetic trained-3DGS scenes, and the edit generators."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from codec.attributes import Gaussians, rest_coeffs
from codec.synthetic import _align_quats, apply_rows, perturb_colors, synthetic_motion, synthetic_scene

FIELDS = ("positions", "scales", "rotations", "opacities", "sh_dc", "sh_rest")


@pytest.fixture(scope="module")
def scene() -> Gaussians:
    return synthetic_scene(30_000, 3, seed=7)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    q = q.astype(np.float64) / np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], 1)


# -------------------------------------------------------------------------------------- statistics
def test_shapes_and_finite(scene):
    assert len(scene) == 30_000 and scene.sh_degree == 3
    for f in FIELDS:
        a = getattr(scene, f)
        assert a.dtype == np.float32 and np.isfinite(a).all(), f


def test_opacity_bimodal(scene):
    s = sigmoid(scene.opacities)
    assert (s > 0.9).mean() > 0.30
    assert (s < 0.1).mean() > 0.15
    assert ((s > 0.3) & (s < 0.7)).mean() < 0.15  # little mass in the middle
    assert np.abs(scene.opacities).max() < 12


def test_scales(scene):
    s = scene.scales
    assert s.min() >= -12.0 and s.max() <= 2.0
    med = np.median(s)
    assert np.log(0.01) - 1.5 < med < np.log(0.01) + 0.5   # extent 20: around log(0.01)
    srt = np.sort(s, axis=1)
    ratio = np.exp(srt[:, 1] - srt[:, 0])                  # flat: smallest axis 3-10x below the next
    assert np.median(ratio) > 3.0
    assert np.mean(ratio > 2.0) > 0.9
    # no preferred local axis for the flat direction
    counts = np.bincount(np.argmin(s, axis=1), minlength=3) / len(s)
    assert np.all(np.abs(counts - 1 / 3) < 0.05)


def test_rotations_unit_and_both_signs(scene):
    q = scene.rotations.astype(np.float64)
    assert np.allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-6)
    assert 0.4 < np.mean(q[:, 0] < 0) < 0.6


def test_flat_axis_follows_the_ground_normal():
    # the ground plane is z-up with gentle slopes: its Gaussians' flat axes point nearly up
    g = synthetic_scene(20_000, 0, seed=3)
    rot = quat_to_matrix(g.rotations)
    flat = rot[np.arange(len(g)), :, np.argmin(g.scales, axis=1)]   # world direction of the flattest axis
    up = np.abs(flat[:, 2])
    # at least the ground share (~30%) plus box tops have |n_z| ~ 1; box sides have n_z ~ 0
    assert np.mean(up > 0.95) > 0.3
    assert np.mean(up < 0.05) > 0.1


@given(axis=st.lists(st.integers(0, 2), min_size=1, max_size=50), seed=st.integers(0, 2**32 - 1),
       near=st.booleans())
def test_align_quats(axis, seed, near):
    rng = np.random.default_rng(seed)
    axis = np.asarray(axis)
    n = len(axis)
    normal = rng.normal(size=(n, 3))
    if near:  # exactly / nearly anti-parallel and parallel to the local axis: the degenerate cases
        e = np.eye(3)[axis]
        sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)[:, None]
        normal = sign * e + rng.normal(0, 1e-9, (n, 3)) * (rng.random((n, 1)) < 0.5)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    q = _align_quats(axis, normal, rng.uniform(0, 2 * np.pi, n))
    assert np.allclose(np.linalg.norm(q, axis=1), 1.0)
    mapped = quat_to_matrix(q)[np.arange(n), :, axis]
    assert np.allclose(mapped, normal, atol=1e-6)


def test_sh_dc(scene):
    dc = scene.sh_dc
    assert dc.min() >= -2.0 and dc.max() <= 3.0
    assert np.mean((dc <= -2.0) | (dc >= 3.0)) < 0.01       # the clip is a tail, not a wall
    assert 0.3 < dc.std() < 1.2
    colour = 0.5 + 0.2820948 * dc
    assert 0.2 < np.median(colour) < 0.7


def test_sh_rest_energy_by_degree_and_channel_correlation(scene):
    r = scene.sh_rest.reshape(len(scene), 3, 15).astype(np.float64)
    assert abs(r.mean()) < 0.005
    band = [slice(0, 3), slice(3, 8), slice(8, 15)]
    stds = [r[:, :, b].std() for b in band]
    for got, want in zip(stds, (0.12, 0.06, 0.03)):
        assert 0.8 * want < got < 1.25 * want
    c = np.corrcoef(r[:, 0, :].ravel(), r[:, 2, :].ravel())[0, 1]
    assert 0.4 < c < 0.95
    kurt = ((r[:, 0, 0] / r[:, 0, 0].std()) ** 4).mean()
    assert kurt > 3.5                                          # heavier tails than a Gaussian
    assert np.abs(r).max() <= 1.5


def test_positions_on_surfaces_not_a_cloud(scene):
    p = scene.positions
    assert np.abs(p[:, :2]).max() < 2.1 * 20
    # a large share sits within a thin slab around the ground (z ~ 0, gentle relief)
    assert np.mean(np.abs(p[:, 2]) < 0.1 * 20) > 0.3
    # neighbours are close: surfaces, not a volume (median nearest-neighbour distance of a sample)
    rng = np.random.default_rng(0)
    sub = p[rng.choice(len(p), 2000, replace=False)].astype(np.float64)
    d = np.sqrt(((sub[:, None, :] - p[None, :5000, :]) ** 2).sum(-1))
    d[d == 0] = np.inf
    volume_spacing = (40.0 ** 2 * 10.0 / 5000) ** (1 / 3)
    assert np.median(d.min(1)) < 0.7 * volume_spacing


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
@pytest.mark.parametrize("n", [0, 1, 2, 7, 500])
def test_sizes_and_degrees(n, degree):
    g = synthetic_scene(n, degree, seed=1)
    assert len(g) == n and g.sh_degree == degree
    assert g.sh_rest.shape == (n, 3 * rest_coeffs(degree))
    for f in FIELDS:
        assert np.isfinite(getattr(g, f)).all()


def test_extent_scales_the_scene():
    a, b = synthetic_scene(5000, 1, seed=2, extent=20.0), synthetic_scene(5000, 1, seed=2, extent=2.0)
    assert 8 < np.abs(a.positions).max() / np.abs(b.positions).max() < 12
    assert abs(np.median(a.scales) - np.median(b.scales) - np.log(10)) < 0.2


def test_deterministic():
    a, b = synthetic_scene(3000, 3, seed=11), synthetic_scene(3000, 3, seed=11)
    c = synthetic_scene(3000, 3, seed=12)
    for f in FIELDS:
        assert getattr(a, f).tobytes() == getattr(b, f).tobytes(), f
        assert getattr(a, f).tobytes() != getattr(c, f).tobytes(), f


def test_bad_arguments():
    with pytest.raises(ValueError):
        synthetic_scene(10, 4)
    with pytest.raises(ValueError):
        synthetic_scene(-1)


# ------------------------------------------------------------------------------------------- edits
@given(fraction=st.floats(0, 1), magnitude=st.floats(1e-4, 1.0), seed=st.integers(0, 2**32 - 1))
def test_motion(fraction, magnitude, seed):
    g = synthetic_scene(400, 1, seed=5)
    idx, rows = synthetic_motion(g, fraction, magnitude, seed)
    assert idx.dtype == np.int64 and len(idx) == round(fraction * len(g)) == len(rows)
    assert np.all(np.diff(idx) > 0) and (len(idx) == 0 or (idx[0] >= 0 and idx[-1] < len(g)))
    before = g.take(idx)
    for f in FIELDS:
        if f != "positions":
            assert getattr(rows, f).tobytes() == getattr(before, f).tobytes(), f
    moved = rows.positions.astype(np.float64) - before.positions
    if len(idx) >= 50:
        assert 0.5 * magnitude < moved.std() < 1.5 * magnitude
    assert np.all(np.abs(moved) < 7 * magnitude + 1e-4)
    # deterministic, and scattering back changes exactly those rows
    idx2, rows2 = synthetic_motion(g, fraction, magnitude, seed)
    assert np.array_equal(idx, idx2) and rows.positions.tobytes() == rows2.positions.tobytes()
    h = apply_rows(g, idx, rows)
    assert np.array_equal(h.positions[idx], rows.positions)
    keep = np.setdiff1d(np.arange(len(g)), idx)
    assert h.positions[keep].tobytes() == g.positions[keep].tobytes()
    assert g.positions.tobytes() == synthetic_scene(400, 1, seed=5).positions.tobytes()  # g untouched


@given(fraction=st.floats(0.2, 1), magnitude=st.floats(1e-3, 1.0), seed=st.integers(0, 2**32 - 1))
def test_perturb_colors(fraction, magnitude, seed):
    g = synthetic_scene(300, 2, seed=6)
    idx, rows = perturb_colors(g, fraction, magnitude, seed)
    assert len(idx) == round(fraction * len(g))
    before = g.take(idx)
    for f in FIELDS:
        if f != "sh_dc":
            assert getattr(rows, f).tobytes() == getattr(before, f).tobytes(), f
    delta = rows.sh_dc.astype(np.float64) - before.sh_dc
    assert 0.5 * magnitude < delta.std() < 1.5 * magnitude


def test_bad_fraction():
    g = synthetic_scene(10, 0)
    with pytest.raises(ValueError):
        synthetic_motion(g, 1.5, 0.1, 0)
