"""ROTATION codes chosen for each Gaussian's shape (SPEC.md 5.3, Appendix C): within one step of the
rounded codes, never worse for the covariance than rounding, the rounded code where the shape makes
every choice equal, compiled and as Python alike, and closed loop in an encoder."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from codec import Decoder, Encoder, Profile
from codec.attributes import Attr, Gaussians
from codec.cli import build_parser, encoder_for
from codec.quantize import rotation_codes
from codec.spatial import Grid
from codec.synthetic import synthetic_scene


def _shapes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random rotations and captured-like shapes: needles, discs and a few blobs (log-scales)."""
    rng = np.random.default_rng(seed)
    rot = rng.normal(size=(n, 4)).astype(np.float32)
    base = rng.uniform(-5, -1, (n, 1))
    spread = rng.choice([0.0, 3.0, 5.0], n, p=[0.1, 0.45, 0.45])[:, None]
    scales = base - spread * rng.permutation(np.array([[0.0, 0.3, 1.0]] * n).T).T  # axes in any order
    return rot, scales.astype(np.float32)


def _cov(q: np.ndarray, scales: np.ndarray) -> np.ndarray:
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    r = np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                  2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                  2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], 1).reshape(-1, 3, 3)
    s2 = np.exp(2.0 * scales.astype(np.float64))
    return np.einsum("nik,nk,njk->nij", r, s2, r)


def _cov_error(p: Profile, codes: np.ndarray, rot: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Per Gaussian: squared Frobenius distance between the covariance of the decoded ``codes`` and
    that of ``rot``, relative to the Gaussian's largest scale^4."""
    truth = _cov(rot.astype(np.float64), scales)
    got = _cov(p.dequantize(Attr.ROTATION, codes, None).astype(np.float64), scales)
    return ((got - truth) ** 2).sum((1, 2)) / np.exp(4.0 * scales.max(1).astype(np.float64))


@pytest.mark.parametrize("bits", [4, 7, 10])
def test_shaped_codes_stay_within_a_step_and_move_the_covariance_less(bits):
    rot, scales = _shapes(20_000, bits)
    p = Profile.preset("compact", 0, Grid.fit(np.zeros((1, 3), np.float32)))
    p = Profile(0, p.grid, dataclasses.replace(p.quant, rotation_bits=bits), "test")
    ids = np.zeros(len(rot), np.uint64)
    near = p.quantize(Attr.ROTATION, rot, ids)
    shaped = p.quantize(Attr.ROTATION, rot, ids, scales=scales)
    assert np.array_equal(shaped[0], near[0])                      # the same largest component
    assert np.abs(shaped.astype(np.int64) - near.astype(np.int64)).max() == 1
    assert shaped[1:].max() <= (1 << bits) - 1
    e_near, e_shaped = _cov_error(p, near, rot, scales), _cov_error(p, shaped, rot, scales)
    assert e_shaped.mean() < 0.6 * e_near.mean()
    # per Gaussian the choice is made to first order: never more than a hair worse than rounding
    assert (e_shaped <= e_near * 1.01 + 1e-12).mean() > 0.999


def test_isotropic_gaussians_and_streams_without_scales_keep_the_rounded_code():
    rot, scales = _shapes(5_000, 1)
    p = Profile.preset("compact", 0, Grid.fit(np.zeros((1, 3), np.float32)))
    ids = np.zeros(len(rot), np.uint64)
    near = p.quantize(Attr.ROTATION, rot, ids)
    round_ = np.repeat(scales[:, :1], 3, axis=1)                    # spheres: every turn is free
    assert np.array_equal(p.quantize(Attr.ROTATION, rot, ids, scales=round_), near)
    assert not np.array_equal(p.quantize(Attr.ROTATION, rot, ids, scales=scales), near)


def test_compiled_and_python_choose_the_same_codes():
    rot, scales = _shapes(3_000, 2)
    order = np.random.default_rng(0).permutation(len(rot)).astype(np.int64)
    got = np.empty((4, len(rot)), np.uint8)
    want = np.empty_like(got)
    none = np.zeros((4, 0), np.uint8)
    rotation_codes(rot, scales, none, order, 127.0, got, 0, len(rot))
    with np.errstate(over="ignore", invalid="ignore"):
        rotation_codes.py_func(rot, scales, none, order, 127.0, want, 0, len(rot))
    assert np.array_equal(got, want)
    held = np.clip(got.astype(np.int64) + np.random.default_rng(1).integers(-1, 2, got.shape), 0, 127).astype(np.uint8)
    held[0] = got[0]
    rotation_codes(rot, scales, held, order, 127.0, got, 0, len(rot))
    with np.errstate(over="ignore", invalid="ignore"):
        rotation_codes.py_func(rot, scales, held, order, 127.0, want, 0, len(rot))
    assert np.array_equal(got, want)


def test_a_held_code_is_kept_where_it_is_as_good_as_rounding():
    """An UPDATE's rotation keeps the code the decoder holds when that code is among the 27 and moves
    the covariance no more than the rounded one: small turns and noise cost no residual, and the
    result is never worse than rounding."""
    rot, scales = _shapes(20_000, 4)
    p = Profile.preset("compact", 0, Grid.fit(np.zeros((1, 3), np.float32)))
    ids = np.zeros(len(rot), np.uint64)
    before = p.quantize(Attr.ROTATION, rot, ids, scales=scales)
    assert np.array_equal(p.quantize(Attr.ROTATION, rot, ids, scales=scales, held=before), before)
    nudged = rot + np.random.default_rng(5).normal(0, 2e-3, rot.shape).astype(np.float32)
    fresh = p.quantize(Attr.ROTATION, nudged, ids, scales=scales)
    kept = p.quantize(Attr.ROTATION, nudged, ids, scales=scales, held=before)
    near = p.quantize(Attr.ROTATION, nudged, ids)
    assert (kept == before).all(0).mean() > (fresh == before).all(0).mean() + 0.2
    assert (_cov_error(p, kept, nudged, scales) <= _cov_error(p, near, nudged, scales) * 1.01 + 1e-12).mean() > 0.999
    assert np.abs(kept.astype(np.int64) - near.astype(np.int64)).max() == 1
    far = before.copy()
    far[1:] = np.where(before[1:] > 60, 0, 127)   # held codes more than a step away are not candidates
    assert np.array_equal(p.quantize(Attr.ROTATION, nudged, ids, scales=scales, held=far), fresh)


def test_encoder_keeps_shaped_codes_in_closed_loop():
    """Codes are chosen for the scales a decoder holds: an ADD's own once quantized, an UPDATE of
    rotation alone the state's, so resending a rotation unchanged costs no residual; a decoder ends
    in the encoder's state."""
    g = synthetic_scene(3_000, 1, 7)
    p = Profile.preset("compact", 1, Grid.fit(g.positions))
    plain, enc = Encoder(p), Encoder(p, shape_rounding=True)
    ids = enc.assign_ids(g.positions)
    dec = Decoder(enc.header_bytes())
    dec.decode_frame(enc.keyframe(g, ids))
    rows = np.argsort(ids)
    plain.keyframe(g, ids)
    held = p.dequantize(Attr.SCALE, enc.state.codes_of(ids[rows])[Attr.SCALE], None)
    want = p.quantize(Attr.ROTATION, g.rotations[rows], ids[rows], scales=held)
    assert np.array_equal(enc.state.codes_of(ids[rows])[Attr.ROTATION], want)
    assert not np.array_equal(plain.state.codes_of(ids[rows])[Attr.ROTATION], want)
    same = enc.make_delta(update=(ids, {Attr.ROTATION: g.rotations}, Attr.ROTATION.bit))
    assert same.n_update == 0
    turned = g.rotations.copy()
    turned[:100] = np.random.default_rng(1).normal(size=(100, 4))
    dec.decode_frame(enc.encode(update=(ids, {Attr.ROTATION: turned}, Attr.ROTATION.bit)))
    grown = g.scales[:100] + 0.5                     # scale and rotation in one UPDATE: the new scales count
    prev = enc.state.codes_of(ids[:100])[Attr.ROTATION]
    dec.decode_frame(enc.encode(update=(ids[:100], {Attr.SCALE: grown, Attr.ROTATION: turned[:100]},
                                        Attr.SCALE.bit | Attr.ROTATION.bit)))
    moved = enc.state.codes_of(ids[:100])[Attr.ROTATION]
    held = p.dequantize(Attr.SCALE, enc.state.codes_of(ids[:100])[Attr.SCALE], None)
    assert np.array_equal(moved, p.quantize(Attr.ROTATION, turned[:100], ids[:100], scales=held, held=prev))
    assert dec.state.digest() == enc.state.digest()


def test_gsd_encode_chooses_rotation_codes_for_the_shape():
    g = synthetic_scene(500, 0, 3)
    _, enc = encoder_for(g, build_parser().parse_args(["encode", "in.ply", "out.gsd"]))
    assert enc.shape_rounding


def test_large_arrays_in_id_order_choose_as_small_ones_do():
    """Past one worker's span the codes are computed in input order and then put in id order; the
    held codes (given in id order) must follow them there."""
    rot, scales = _shapes(70_000, 6)
    p = Profile.preset("compact", 0, Grid.fit(np.zeros((1, 3), np.float32)))
    ids = np.zeros(len(rot), np.uint64)
    order = np.random.default_rng(2).permutation(len(rot)).astype(np.int64)
    held = p.quantize(Attr.ROTATION, rot[order] + np.float32(1e-3), ids, scales=scales[order])
    got = p.quantize(Attr.ROTATION, rot, ids, order, scales=scales, held=held)
    want = np.concatenate([p.quantize(Attr.ROTATION, rot[order[k:k + 10_000]], ids[:10_000][:len(order[k:k + 10_000])],
                                      scales=scales[order[k:k + 10_000]], held=held[:, k:k + 10_000])
                           for k in range(0, len(rot), 10_000)], axis=1)
    assert np.array_equal(got, want)
    assert not np.array_equal(got, p.quantize(Attr.ROTATION, rot, ids, order, scales=scales))
