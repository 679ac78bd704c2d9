"""The differ: successive full scenes -> minimal deltas, with and without persistent ids.

Two model kinds: a fixed set of Gaussians updated every frame, and a set that
changes (adds and deletes). Every test decodes the stream and checks the decoded state against
the target scene in code space (closed loop: exact codes with zero thresholds, within
threshold + 1/2 step otherwise).
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from codec import ATTRS, Attr, Decoder, Encoder, Grid, Profile, validate_stream  # noqa: E402
from codec.synthetic import synthetic_scene  # noqa: E402
from reference_generator import Idle, Interact, Move, Pose, Turn, World, WorldConfig, encode_output  # noqa: E402
from reference_generator.differ import Differ, associate, pack_gaussians  # noqa: E402

torch.set_num_threads(1)
U64 = np.uint64


def setup(n=1500, sh=1, profile="compact", seed=0, **kw):
    g = synthetic_scene(n, sh, seed)
    x = pack_gaussians(g)
    prof = Profile.preset(profile, sh, Grid.fit(g.positions, cell_bits=10))
    enc = Encoder(prof)
    dec = Decoder(enc.header_bytes())
    return x, enc, dec, Differ(enc, **kw)


def push(differ, dec, frames, x, ids=None):
    frame, st = differ.encode(x, ids)
    frames.append(frame)
    d = dec.decode_frame(frame)
    return st, d


def assert_decoded_is_target(dec, differ, x):
    """Row i of the target is stream id stream_ids[i]; the decoder holds exactly its codes."""
    p = differ.p
    sids = differ.stream_ids.numpy().astype(U64)
    assert len(dec.state) == len(x) and len(np.unique(sids)) == len(x)
    codes = dec.state.codes_of(sids)
    for a in ATTRS:
        if p.comps(a):
            assert np.array_equal(codes[a], p.quantize(a, x[:, differ.lay[a]], sids)), a.name


def test_fixed_set_updated_every_frame_without_ids():
    rng = np.random.default_rng(1)
    x, enc, dec, df = setup(tolerance=0.02)
    frames = [enc.header_bytes()]
    st, d = push(df, dec, frames, x)
    assert st.keyframe and d.keyframe and st.added == len(x)
    for _ in range(6):
        x = x.copy()
        x[:, :3] += rng.normal(0, 0.001, (len(x), 3)).astype(np.float32)          # everything drifts
        some = rng.random(len(x)) < 0.1
        x[some, df.lay[Attr.SH_DC]] += 0.3                                        # 10% recoloured
        x = x[rng.permutation(len(x))]                                            # rows in any order
        st, d = push(df, dec, frames, x)
        assert (st.added, st.deleted) == (0, 0) and st.updated + st.unchanged == len(x)
        assert st.updated == d.n_update and d.n_add == 0 and len(d.delete_ids) == 0
        assert st.delta_bytes < st.full_raw_bytes
        masks = np.bitwise_or.reduce(d.update_mask)
        assert masks & Attr.SH_DC.bit and masks & Attr.POSITION.bit
        assert not masks & (Attr.SCALE.bit | Attr.ROTATION.bit | Attr.OPACITY.bit)   # untouched attributes stay out
        assert_decoded_is_target(dec, df, x)
    assert validate_stream(b"".join(frames)) == []


def test_fixed_set_with_ids_in_any_order():
    rng = np.random.default_rng(2)
    x, enc, dec, df = setup()
    keys = rng.permutation(np.unique(rng.integers(0, 2**62, 2 * len(x))))[:len(x)]   # opaque persistent keys
    frames = [enc.header_bytes()]
    push(df, dec, frames, x, keys)
    for _ in range(4):
        x = x.copy()
        x[:, :3] += rng.normal(0, 0.05, (len(x), 3)).astype(np.float32)           # far beyond any tolerance
        perm = rng.permutation(len(x))
        x, keys = x[perm], keys[perm]
        st, d = push(df, dec, frames, x, keys)
        assert (st.added, st.deleted) == (0, 0) and st.updated > 0.9 * len(x)
        assert_decoded_is_target(dec, df, x)
    assert validate_stream(b"".join(frames)) == []


def test_changing_set_with_ids():
    rng = np.random.default_rng(3)
    x, enc, dec, df = setup(n=1200)
    pool = synthetic_scene(3000, 1, 99)
    spare = pack_gaussians(pool)
    keys = np.arange(len(x), dtype=np.int64) * 7
    next_key = int(keys.max()) + 1
    frames = [enc.header_bytes()]
    push(df, dec, frames, x, keys)
    for f in range(5):
        keep = rng.random(len(x)) >= 0.1
        n_new = 100 + 20 * f
        new = spare[f * 300: f * 300 + n_new]
        moved = x[keep].copy()
        m = rng.random(len(moved)) < 0.3
        moved[m, :3] += 0.01
        x = np.concatenate([moved, new])
        keys = np.concatenate([keys[keep], np.arange(next_key, next_key + n_new, dtype=np.int64)])
        next_key += n_new
        perm = rng.permutation(len(x))
        x, keys = x[perm], keys[perm]
        st, d = push(df, dec, frames, x, keys)
        assert st.added == n_new == d.n_add and st.deleted == int((~keep).sum())
        assert_decoded_is_target(dec, df, x)
    assert validate_stream(b"".join(frames)) == []


def test_changing_set_without_ids():
    rng = np.random.default_rng(4)
    x, enc, dec, df = setup(n=1200, tolerance=0.01)
    far = pack_gaussians(synthetic_scene(2000, 1, 5))
    far[:, :3] += np.float32(60.0)                  # new content appears in a region nothing occupies
    frames = [enc.header_bytes()]
    push(df, dec, frames, x)
    for f in range(4):
        keep = rng.random(len(x)) >= 0.15
        n_new = 150
        x = np.concatenate([x[keep], far[f * n_new:(f + 1) * n_new]])
        x[:, :3] += rng.normal(0, 0.0005, (len(x), 3)).astype(np.float32)
        x = x[rng.permutation(len(x))]
        st, d = push(df, dec, frames, x)
        assert st.added == n_new and st.deleted == int((~keep).sum())
        assert_decoded_is_target(dec, df, x)
    assert validate_stream(b"".join(frames)) == []


def test_thresholds_skip_small_changes_without_drift():
    rng = np.random.default_rng(5)
    thr = 2
    x, enc, dec, df = setup(tolerance=0.05, thresholds={Attr.POSITION: thr})
    step = enc.profile.grid.cell_size / (1 << enc.profile.quant.position_bits)
    frames = [enc.header_bytes()]
    push(df, dec, frames, x)
    st, d = None, None
    for _ in range(12):  # a slow random walk: most steps are under the threshold, error never builds up
        x = x.copy()
        x[:, :3] += rng.normal(0, 0.4 * step, (len(x), 3)).astype(np.float32)
        st, d = push(df, dec, frames, x)
        assert st.updated < len(x)
        sids = df.stream_ids.numpy().astype(U64)
        pos = enc.profile.dequantize(Attr.POSITION, dec.state.codes_of(sids)[Attr.POSITION], sids)
        assert np.abs(pos - x[:, :3]).max() <= (thr + 0.5) * step * (1 + 1e-3) + 1e-6
    x = x.copy()
    x[:, 0] += 10 * step                                            # a real move always goes out
    st, d = push(df, dec, frames, x)
    assert st.updated == len(x) and np.all(d.update_mask & Attr.POSITION.bit)


def test_scene_buffer_edited_in_place_between_frames():
    x, enc, dec, df = setup(n=500)
    buf = x.copy()
    frames = [enc.header_bytes()]
    push(df, dec, frames, buf)
    buf[:50, 2] += 0.004                     # the model reuses its output buffer (a move within tolerance)
    st, d = push(df, dec, frames, buf)
    assert st.updated == 50 and set(np.unique(d.update_mask).tolist()) == {Attr.POSITION.bit}
    assert_decoded_is_target(dec, df, buf)


def test_unchanged_scene_is_an_empty_delta():
    x, enc, dec, df = setup(measure_full=True)
    frames = [enc.header_bytes()]
    push(df, dec, frames, x)
    st, d = push(df, dec, frames, x[::-1].copy())         # same Gaussians, rows reversed
    assert (st.added, st.updated, st.deleted, st.changed_floats) == (0, 0, 0, 0) and st.unchanged == len(x)
    assert d.is_empty()
    assert st.full_bytes > 50 * st.delta_bytes and st.saved_bytes == st.full_bytes - st.delta_bytes
    assert st.ratio > 50


def test_whole_cells_are_deleted_as_cells():
    x, enc, dec, df = setup(n=2000)
    frames = [enc.header_bytes()]
    push(df, dec, frames, x)
    sids = df.stream_ids.numpy().astype(U64)
    cells, counts = np.unique(sids >> U64(enc.profile.grid.slot_bits), return_counts=True)
    big = cells[np.argsort(counts)[-3:]]                   # the three fullest cells empty out
    gone = np.isin(sids >> U64(enc.profile.grid.slot_bits), big)
    st, d = push(df, dec, frames, x[~gone])
    assert st.deleted == int(gone.sum()) and st.deleted_cells == 3
    assert sorted(d.delete_cells[0].tolist()) == sorted(big.tolist()) and len(d.delete_ids) == 0
    assert_decoded_is_target(dec, df, x[~gone])


def test_lossless_profile_is_bit_exact():
    rng = np.random.default_rng(6)
    x, enc, dec, df = setup(n=800, sh=2, profile="lossless", thresholds={Attr.POSITION: 5})
    x[100:105, 3] = 0.0
    frames = [enc.header_bytes()]
    push(df, dec, frames, x)
    x = x.copy()
    x[:100, 0] = np.nextafter(x[:100, 0], np.float32(np.inf))   # one-ulp changes still count
    x[100:105, 3] = -0.0                                          # and so does the sign of zero
    x = x[rng.permutation(len(x))]
    st, d = push(df, dec, frames, x)
    assert st.updated == 105
    ids, g = dec.state.to_gaussians()
    got = pack_gaussians(g)
    order = np.argsort(df.stream_ids.numpy())
    assert np.array_equal(got.view(np.uint32), x[order].view(np.uint32))


def test_associate_is_one_to_one_within_tolerance():
    rng = np.random.default_rng(7)
    prev = rng.uniform(0, 1, (400, 3)).astype(np.float32)
    cur = np.concatenate([prev[:350] + rng.normal(0, 0.004, (350, 3)).astype(np.float32),
                          rng.uniform(0, 1, (60, 3)).astype(np.float32)])
    tol = 0.02
    m = associate(torch.as_tensor(prev), torch.as_tensor(cur), tol).numpy()
    hit = m >= 0
    assert len(np.unique(m[hit])) == hit.sum()                                    # one-to-one
    assert (np.linalg.norm(cur[hit] - prev[m[hit]], axis=1) <= tol + 1e-6).all()  # within tolerance
    dist = np.linalg.norm(cur[:, None] - prev[None], axis=2)
    nn_c, nn_p = dist.argmin(1), dist.argmin(0)
    mutual = (nn_p[nn_c] == np.arange(len(cur))) & (dist.min(1) <= tol)
    assert (m[mutual] == nn_c[mutual]).all()                                      # every mutual pair found
    assert hit.sum() >= 340
    assert (associate(torch.zeros(0, 3), torch.as_tensor(cur), tol) == -1).all()


def test_differ_over_world_scenes_reproduces_the_worlds_own_stream_state():
    """A model that only outputs full scenes (here: the world's) gets the same states via the differ."""
    cfg = WorldConfig(sh_degree=1, target_live=3000, view_radius=32.0, retire_margin=8.0)
    w = World(cfg)
    enc_w = Encoder(w.profile)
    enc_d = Encoder(w.profile)
    df = Differ(enc_d, spatial_ids=True)
    out = w.reset(11)
    encode_output(enc_w, out)
    ids, x = w.scene()
    df.encode(x, ids)
    assert enc_w.state.digest() == enc_d.state.digest()
    for a in [Move(0.2)] * 15 + [Interact()] + [Idle()] * 4 + [Turn(45), Move(4.0), Move(4.0), Move(4.0),
                                                               Pose((40.0, 40.0, 0.0), 0.0, 0.0), Idle()]:
        out = w.step(a)
        encode_output(enc_w, out)
        ids, x = w.scene()
        _, st = df.encode(x, ids)
        assert enc_w.state.digest() == enc_d.state.digest()
    assert len(enc_w.state) == len(enc_d.state) == w.live


def test_bad_input_is_refused():
    x, enc, dec, df = setup(n=300)
    with pytest.raises(ValueError):
        df.encode(x[:, :10])
    with pytest.raises(ValueError):
        df.encode(x, np.zeros(len(x), np.int64))              # duplicate ids
    with pytest.raises(ValueError):
        df.encode(x, np.arange(len(x) - 1))                  # one id per row
    with pytest.raises(ValueError):
        Differ(enc, tolerance=0)
    with pytest.raises(ValueError, match="palette"):
        Differ(Encoder(Profile.preset("small", 1)))         # SH_REST through a palette: the host encoder's
    with pytest.raises(ValueError):
        Differ(enc, thresholds={Attr.SCALE: -1})
    with pytest.raises(ValueError):
        Differ(enc, spatial_ids=True).encode(x)               # spatial ids need the ids
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError):
        df.encode(bad)


def test_differ_finds_exactly_the_changed_gaussians():
    """With zero thresholds an UPDATE goes out for exactly the Gaussians whose codes changed, each
    with exactly the attributes whose codes changed; float changes below a code step send nothing."""
    rng = np.random.default_rng(8)
    x, enc, dec, df = setup(n=2000, sh=1)
    p = enc.profile
    keys = np.arange(len(x)) * 3 + 1
    frames = [enc.header_bytes()]
    push(df, dec, frames, x, keys)
    for f in range(5):
        sids = df.stream_ids.numpy().astype(U64)
        y = x.copy()
        rows = rng.random(len(x)) < 0.2
        for a in ATTRS:                                         # a random attribute set per changed row
            pick = rows & (rng.random(len(x)) < 0.5)
            y[np.ix_(pick, np.arange(df.lay[a].start, df.lay[a].stop))] += rng.normal(0, 0.3, (int(pick.sum()), p.comps(a))).astype(np.float32)
        tiny = ~rows & (rng.random(len(x)) < 0.2)               # one ulp: the floats change, codes (almost all) do not
        y[tiny, 0] = np.nextafter(y[tiny, 0], np.float32(np.inf))
        want = np.zeros(len(x), np.uint8)
        for a in ATTRS:
            if p.comps(a):
                moved = (p.quantize(a, y[:, df.lay[a]], sids) != p.quantize(a, x[:, df.lay[a]], sids)).any(0)
                want |= np.where(moved, np.uint8(a.bit), np.uint8(0))
        st, d = push(df, dec, frames, y, keys)
        got = dict(zip(d.update_ids.tolist(), d.update_mask.tolist()))
        expect = {int(i): int(m) for i, m in zip(sids, want) if m}
        assert got == expect and st.updated == len(expect) > 100
        assert st.changed_floats == int((rows & (y != x).any(1)).sum() + (tiny & (y != x).any(1)).sum())
        assert_decoded_is_target(dec, df, y)
        x = y
    assert validate_stream(b"".join(frames)) == []
