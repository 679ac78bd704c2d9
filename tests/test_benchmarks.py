"""pytest-benchmark timings of the hot paths, small enough for CI (full-size numbers: ``python -m bench.run``).

No timed asserts: speed is reported, not tested. Every benchmark checks what
it timed (state digests equal between encoder and decoder), so a fast wrong
answer fails. ``pytest tests/test_benchmarks.py --benchmark-only`` shows the table.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/ is a repo folder, not an installed package

from bench.scenes import MIX, DeltaRig, profile_for  # noqa: E402
from codec import Decoder, Encoder  # noqa: E402
from codec.synthetic import synthetic_scene  # noqa: E402

N_KEYFRAME = 100_000
N_DELTA_SCENE = 200_000
DELTA_ROUNDS, DELTA_WARMUP = 15, 2


@pytest.fixture(scope="module")
def scene_100k():
    return synthetic_scene(N_KEYFRAME, 3, 0)


@pytest.fixture(scope="module")
def scene_200k():
    return synthetic_scene(N_DELTA_SCENE, 3, 1)


@pytest.fixture(scope="module")
def compact_keyframe(scene_100k):
    """(profile, header bytes, ids, keyframe bytes, encoder digest) of the 100k SH3 scene, compact profile."""
    p = profile_for(scene_100k, "compact")
    enc = Encoder(p)
    ids = enc.assign_ids(scene_100k.positions)
    kf = enc.keyframe(scene_100k, ids)
    return p, enc.header_bytes(), ids, kf, enc.state.digest()


@pytest.mark.parametrize("verify", [False, True], ids=["to-state", "verify-digest"])
def test_keyframe_decode_100k_sh3_compact(benchmark, compact_keyframe, verify):
    _, header, _, kf, want = compact_keyframe

    def decode(dec):
        dec.decode_frame(kf)
        return dec

    dec = benchmark.pedantic(decode, setup=lambda: ((Decoder(header, verify_digest=verify),), {}),
                             rounds=5, warmup_rounds=1)
    assert len(dec.state) == N_KEYFRAME
    assert dec.state.digest() == want


def test_keyframe_encode_100k_sh3_compact(benchmark, scene_100k, compact_keyframe):
    p, header, ids, kf_ref, want = compact_keyframe
    encoders = []

    def setup():
        encoders.append(Encoder(p))
        return (encoders[-1],), {}

    kf = benchmark.pedantic(lambda enc: enc.keyframe(scene_100k, ids), setup=setup, rounds=3, warmup_rounds=1)
    assert kf == kf_ref  # encoding is deterministic
    assert encoders[-1].state.digest() == want
    dec = Decoder(header)
    dec.decode_frame(kf)
    assert dec.state.digest() == want


def _check_delta(rig: DeltaRig, d) -> None:
    assert rig.in_step()
    c = d.counts()
    assert c["add"] == MIX["n_add"] and c["delete_ids"] == MIX["n_delete"]
    # an update whose new codes equal the old ones is dropped by the encoder (a recolour can round to no change)
    assert 0.99 * (MIX["n_move"] + MIX["n_color"]) <= c["update"] <= MIX["n_move"] + MIX["n_color"]


def test_delta_encode_5k_vs_200k(benchmark, scene_200k):
    """Encoder.encode of a fresh mixed 5,000-Gaussian delta each round (the state advances every round)."""
    rig = DeltaRig(scene_200k, "compact", room=(DELTA_ROUNDS + DELTA_WARMUP) * MIX["n_add"], seed=3)
    pending, frames = [], []

    def setup():
        if pending:
            rig.scene.commit(pending.pop())
        md = rig.make()
        pending.append(md)
        return (md.ops,), {}

    def encode(ops):
        frames.append(rig.enc.encode(**ops))

    benchmark.pedantic(encode, setup=setup, rounds=DELTA_ROUNDS, warmup_rounds=DELTA_WARMUP)
    rig.scene.commit(pending.pop())
    assert frames  # DELTA_ROUNDS + DELTA_WARMUP, or 1 under --benchmark-disable
    for f in frames:  # each frame carries the encoder's digest; the decoder checks it on apply
        d = rig.dec.decode_frame(f)
    _check_delta(rig, d)


def test_delta_decode_apply_5k_vs_200k(benchmark, scene_200k):
    """Decoder.decode_frame (parse, validate, apply, verify digest) of a fresh 5,000-Gaussian delta each round."""
    rig = DeltaRig(scene_200k, "compact", room=(DELTA_ROUNDS + DELTA_WARMUP) * MIX["n_add"], seed=4)
    sizes = []

    def setup():
        frame = rig.encode(rig.make())
        sizes.append(len(frame))
        return (frame,), {}

    d = benchmark.pedantic(rig.dec.decode_frame, setup=setup, rounds=DELTA_ROUNDS, warmup_rounds=DELTA_WARMUP)
    _check_delta(rig, d)
    assert rig.dec.frames == 1 + len(sizes)  # the keyframe, then every delta timed or warmed up
    benchmark.extra_info["frame_bytes_median"] = int(np.median(sizes))
