"""Progressive keyframes (codec.progressive): stand-ins first, refinement frames after, ordinary frames."""
from __future__ import annotations

import numpy as np
import pytest

from codec import Decoder, Encoder, Grid, Profile
from codec.attributes import Gaussians
from codec.cli import build_parser, encoder_for
from codec.progressive import eigh3, progressive_keyframe, refine_order, stand_ins
from codec.synthetic import synthetic_scene


def _compact(g: Gaussians) -> Encoder:
    return Encoder(Profile.preset("compact", g.sh_degree, Grid.fit(g.positions)))


def _play(enc: Encoder, g: Gaussians, ids, **kw):
    dec = Decoder(enc.header_bytes())
    frames = []
    for f in progressive_keyframe(enc, g, ids, **kw):
        dec.decode_frame(f.data)                       # every frame is an ordinary, valid frame
        assert len(dec.state) == f.live
        frames.append(f)
    return dec, frames


def test_refinement_ends_on_the_plain_keyframes_state_and_digest():
    g = synthetic_scene(12_000, 2, 0, 10.0)
    enc = _compact(g)
    ids = enc.assign_ids(g.positions)
    dec, frames = _play(enc, g, ids, first_bytes=20_000, refine_bytes=40_000)
    assert len(frames) > 3
    assert frames[0].live < len(g) // 3                    # the first frame stands in for the scene
    assert [f.refined for f in frames] == sorted(f.refined for f in frames)
    assert frames[-1].live == frames[-1].refined == len(g)
    plain = Encoder(enc.profile)
    plain.keyframe(g, ids)
    assert dec.state.digest() == plain.state.digest() == enc.state.digest()
    got_ids, _ = dec.state.to_gaussians()
    assert np.array_equal(got_ids, np.sort(ids))


def test_the_first_frame_keeps_to_its_byte_target():
    g = synthetic_scene(30_000, 1, 1, 20.0)
    enc = _compact(g)
    _, frames = _play(enc, g, None, first_bytes=60_000, refine_bytes=10 ** 9)
    assert len(frames[0].data) < 1.3 * 60_000
    assert len(frames) == 2                                # then one refinement frame takes the rest


@pytest.mark.parametrize("sequence", [True, False])
def test_palette_streams_refine_to_the_plain_keyframes_palette_and_digest(sequence):
    g = synthetic_scene(8_000, 2, 2, 10.0)
    _, enc = encoder_for(g, build_parser().parse_args(["encode", "in.ply", "out.gsd"]), sequence=sequence)
    assert enc.profile.palette
    ids = enc.assign_ids(g.positions)
    dec, frames = _play(enc, g, ids, first_bytes=15_000, refine_bytes=30_000)
    assert len(frames) > 2
    plain = Encoder(enc.profile, gaussians_per_entry=enc.gaussians_per_entry, shape_rounding=enc.shape_rounding)
    plain.keyframe(g, ids)
    assert dec.state.digest() == enc.state.digest() == plain.state.digest()
    (a_ids, a), (b_ids, b) = dec.state.to_gaussians(), plain.state.to_gaussians()
    assert np.array_equal(a_ids, b_ids) and np.array_equal(a.sh_rest, b.sh_rest)
    # the plan ends with the keyframe: later frames follow the palette's own rules again
    more = synthetic_scene(500, 2, 9, 10.0)
    dec.decode_frame(enc.encode(add=(enc.assign_ids(more.positions), more)))
    assert dec.state.digest() == enc.state.digest()


def test_a_scene_under_the_first_target_is_one_plain_keyframe():
    g = synthetic_scene(500, 0, 0, 5.0)
    enc = _compact(g)
    _, frames = _play(enc, g, None, first_bytes=10 ** 7)
    assert len(frames) == 1 and frames[0].live == frames[0].refined == 500


def test_stand_ins_match_their_gaussians_moments_and_keep_singletons_exactly():
    rng = np.random.default_rng(0)
    pos = np.array([[0.1, 0.1, 0.1], [0.3, 0.2, 0.1], [5.5, 5.5, 5.5]], np.float32)
    g = Gaussians(pos, np.log(np.full((3, 3), 0.05, np.float32)), np.tile([1, 0, 0, 0], (3, 1)),
                  np.array([0.0, 2.0, 1.0], np.float32), rng.normal(size=(3, 3)), rng.normal(size=(3, 9)))
    coarse, group = stand_ins(g, 1.0)
    assert len(coarse) == 2 and group[0] == group[1] != group[2]
    alpha = 1 / (1 + np.exp(-g.opacities[:2].astype(np.float64)))
    mean = (alpha[:, None] * pos[:2]).sum(0) / alpha.sum()         # equal areas: weights are the alphas
    assert np.allclose(coarse.positions[group[0]], mean, atol=1e-6)
    assert np.allclose(coarse.sh_dc[group[0]], (alpha[:, None] * g.sh_dc[:2]).sum(0) / alpha.sum(), atol=1e-6)
    s = np.sort(np.exp(coarse.scales[group[0]]))
    assert s[2] > 0.05 and s[0] == pytest.approx(0.05, rel=1e-3)  # stretched along the pair, not across
    one = group[2]
    for f in ("positions", "scales", "rotations", "opacities", "sh_dc", "sh_rest"):
        assert np.array_equal(getattr(coarse, f)[one], getattr(g, f)[2]), f


def test_refinement_goes_to_the_most_merged_cells_first_and_near_ones_from_an_eye():
    g = synthetic_scene(4_000, 0, 3, 40.0)
    coarse, group = stand_ins(g, 4.0)
    sizes = np.bincount(group, minlength=len(coarse))
    order = refine_order(coarse, sizes)
    assert sizes[order[0]] == sizes.max() and list(sizes[order]) == sorted(sizes, reverse=True)
    eye = coarse.positions[17].astype(np.float64) + 0.01
    assert refine_order(coarse, sizes, eye)[0] == 17
    d = np.linalg.norm(coarse.positions - eye, axis=1)
    far = refine_order(coarse, sizes, eye)[-len(coarse) // 4:]
    assert np.median(d[far]) > np.median(d)


class _View:
    """A pinhole camera at ``eye`` looking along +x (OpenCV axes: x right, y down, z forward)."""

    def __init__(self, eye, size=64, fov_deg=60.0):
        r = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])   # world +x is forward
        self.world_to_camera = np.eye(4)
        self.world_to_camera[:3, :3] = r
        self.world_to_camera[:3, 3] = -r @ np.asarray(eye, np.float64)
        self.width = self.height = size
        self.fx = self.fy = size / 2 / np.tan(np.radians(fov_deg) / 2)
        self.cx = self.cy = size / 2


def test_with_a_view_the_gaussians_in_it_come_first_and_the_stream_still_ends_on_the_plain_keyframe():
    g = synthetic_scene(12_000, 1, 3, 10.0)
    enc = _compact(g)
    ids = enc.assign_ids(g.positions)
    view = _View(eye=np.median(g.positions, 0))                # in the middle: half of it behind
    from codec.progressive import screen_weight
    w = screen_weight(g, view)
    assert (w > 0).sum() > 1000 and (w == 0).sum() > 1000      # some of the scene in the view, some not
    dec, frames = _play(enc, g, ids, first_bytes=20_000, refine_bytes=20_000, view=view)
    plain = Encoder(enc.profile)
    plain.keyframe(g, ids)
    assert dec.state.digest() == plain.state.digest()
    # replay, noting which of the scene's ids each refinement frame brings: the view's weight arrives early
    enc = _compact(g)
    dec = Decoder(enc.header_bytes())
    shown = []
    weight = dict(zip(ids.tolist(), w))
    for f in progressive_keyframe(enc, g, ids, first_bytes=20_000, refine_bytes=20_000, view=view):
        before = set(dec.state.to_gaussians()[0].tolist())
        dec.decode_frame(f.data)
        new = set(dec.state.to_gaussians()[0].tolist()) - before
        shown.append(sum(weight.get(i, 0.0) for i in new) / max(1, len(new)))
    refinement = shown[1:]
    half = len(refinement) // 2
    assert np.mean(refinement[:half]) > 3 * np.mean(refinement[half:])


def test_screen_weight_is_what_each_gaussian_makes_of_the_reference_render():
    """The weight composites as the reference rasterizer does: per Gaussian, the sum over pixels of
    alpha times the light left, here taken from the rasterizer's own fragments; compiled and as Python."""
    from codec.progressive import composite, screen_weight
    from quality import rasterizer
    from quality.cameras import Camera
    g = synthetic_scene(3_000, 1, 4, 6.0)
    view = _View(eye=np.median(g.positions, 0) - np.array([9.0, 0.0, 0.0]), size=48)
    w = screen_weight(g, view)
    cam = Camera(view.width, view.height, view.fx, view.fy, view.cx, view.cy, view.world_to_camera)
    proj = rasterizer.project(g, cam)
    order = np.argsort(proj["depth"], kind="stable")
    parts = list(rasterizer._fragments(proj, order, cam.width))
    pix, gid, alpha = (np.concatenate([p[k] for p in parts]) for k in range(3))
    s = np.argsort(pix, kind="stable")
    pix, gid, alpha = pix[s], gid[s], alpha[s]
    log1m = np.log1p(-alpha)
    cs = np.cumsum(log1m)
    first = np.r_[True, pix[1:] != pix[:-1]]
    after = cs - np.repeat((cs - log1m)[first], np.diff(np.r_[np.flatnonzero(first), len(pix)]))
    made = np.where(after >= np.log(rasterizer.T_MIN), alpha * np.exp(after - log1m), 0.0)
    want = np.zeros(len(g))
    want[proj["index"]] = np.bincount(gid, made, minlength=len(proj["index"]))
    assert (want > 0).sum() > 500 and (w == 0).sum() > 100       # some seen, some hidden or outside
    assert np.allclose(w, want, rtol=1e-9, atol=1e-12)
    light, got = np.ones(cam.width * cam.height), np.zeros(len(proj["index"]))
    composite.py_func(order, proj["mean"], proj["conic"], proj["opacity"], proj["box"], cam.width, light, got)
    assert np.allclose(got, w[proj["index"]], rtol=1e-12, atol=0)


@pytest.mark.parametrize("share", [0.1, 0.3])
def test_a_budget_is_never_exceeded(share):
    g = synthetic_scene(10_000, 1, 4, 10.0)
    enc = _compact(g)
    budget = int(share * len(g))
    view = _View(eye=g.positions.mean(0) - [8.0, 0, 0])
    dec, frames = _play(enc, g, None, first_bytes=50_000, refine_bytes=10_000, view=view, budget=budget)
    assert all(f.live <= budget for f in frames) and len(dec.state) <= budget
    assert frames[-1].live > 0.9 * budget                      # refinement went up to it
    with pytest.raises(ValueError):
        next(progressive_keyframe(_compact(g), g, None, budget=0))


@pytest.mark.parametrize("compiled", [True, False])
def test_eigh3_is_lapacks_decomposition(compiled):
    """The stand-ins' 3x3 eigen solver against numpy.linalg.eigh: the same eigenvalues (ascending),
    orthonormal eigenvectors that rebuild the matrix (vectors agree up to sign where eigenvalues are
    distinct), on random covariances over 10 decades, repeated eigenvalues and zero matrices."""
    rng = np.random.default_rng(3)
    n = 3000 if compiled else 300
    a = rng.normal(size=(n, 3, 3))
    cov = a @ a.transpose(0, 2, 1) * 10.0 ** rng.uniform(-8, 2, (n, 1, 1))
    cov[:5] = np.diag([1.0, 1.0, 2.0])
    cov[5:10] = 0.0
    cov[10:15] = np.eye(3) * 1e-20
    ev, vec = np.empty((n, 3)), np.empty((n, 3, 3))
    (eigh3 if compiled else eigh3.py_func)(cov, ev, vec)
    ref_ev, ref_vec = np.linalg.eigh(cov)
    scale = np.abs(ref_ev).max(axis=1) + 1e-300
    assert np.all(np.abs(ev - ref_ev).max(axis=1) <= 1e-12 * scale)
    assert np.allclose(np.einsum("kji,kjl->kil", vec, vec), np.eye(3), atol=1e-12)
    rebuilt = np.einsum("kij,kj,klj->kil", vec, ev, vec)
    assert np.all(np.abs(rebuilt - cov).max(axis=(1, 2)) <= 1e-12 * scale)
    distinct = np.minimum(ref_ev[:, 1] - ref_ev[:, 0], ref_ev[:, 2] - ref_ev[:, 1]) > 1e-6 * scale
    assert distinct.sum() > n // 2
    assert np.all(np.abs(np.einsum("kij,kij->kj", vec, ref_vec))[distinct] > 1 - 1e-9)
