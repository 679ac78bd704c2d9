"""Code space on the scene's device (reference_generator.device_codes), on the CPU.

The torch quantizer against the codec's normative numpy quantizer (bit for bit, random and edge
inputs, every attribute and profile); the device mirror against the encoder's state (deletes by
id and cell, ids reused, overlay merges, compaction, frames made elsewhere); frames built in
torch against a decoder (digests equal after every step, no drift over 1,000 closed-loop
frames); padded rows (a frame graph's) and the packed device-to-host copy against the plain views; errors that leave the stream
as it was.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from codec import ATTRS, Attr, Decoder, Encoder, GsdError, Grid, Profile, SceneState, validate_stream  # noqa: E402
from codec.synthetic import synthetic_scene  # noqa: E402
from reference_generator import device_codes as dc  # noqa: E402
from reference_generator.device_codes import (  # noqa: E402
    DeviceCodes, FloatOps, TorchQuantizer, build_delta, mirror_of, opacity_thresholds, wire,
)
from reference_generator.differ import pack_gaussians  # noqa: E402
from reference_generator.protocol import attr_layout  # noqa: E402

torch.set_num_threads(1)
U64 = np.uint64
GRID = Grid((-100.0, -50.0, -20.0), 0.5, 10, 12)
PROFILES = [(name, sh) for name in ("compact", "high", "lossless") for sh in (0, 1, 3)]


def _ids(rng, n):
    return (rng.integers(0, 1 << 30, n).astype(U64) << U64(12)) | rng.integers(0, 4096, n).astype(U64)


def _values(p, a, ids, rng):
    """Random values over many magnitudes, then the awkward ones: zeros of both signs, denormals,
    the largest floats, exact halves (rounding ties), cell origins."""
    n, c = len(ids), p.comps(a)
    if a is Attr.POSITION:
        v = (GRID.cell_origin_of_ids(ids) + rng.uniform(-2, 3, (n, 3))).astype(np.float32)
        v[:40] = GRID.cell_origin_of_ids(ids[:40]).astype(np.float32)
        step = GRID.cell_size / (1 << p.quant.position_bits) if p.quant else 0.0
        v[40:80] = (GRID.cell_origin_of_ids(ids[40:80]) + (rng.integers(-9, 9, (40, 3)) + 0.5) * step).astype(np.float32)
        return v
    v = (rng.standard_normal((n, c)) * rng.choice([1e-3, 0.1, 1.0, 3.0, 10.0, 1e4], (n, 1))).astype(np.float32)
    v[:50] = 0.0
    v[50:60] = -0.0
    v[60:70] = np.float32(1e-40)
    v[70:80] = np.float32(3e38)
    v[80:90] = -np.float32(3e38)
    v[90:200] = rng.integers(-50, 50, (110, c)).astype(np.float32) * np.float32(0.5)
    return v


@pytest.mark.parametrize("name,sh", PROFILES)
def test_torch_quantizer_is_bit_identical_to_profile_quantize(name, sh):
    rng = np.random.default_rng(sh + 10 * len(name))
    p = Profile.preset(name, sh, GRID)
    tq = TorchQuantizer(p, "cpu")
    ids = _ids(rng, 50_000)
    for a in ATTRS:
        if not p.comps(a):
            continue
        v = _values(p, a, ids, rng)
        ref = p.quantize(a, v, ids)
        got = tq.quantize(a, v, ids)
        assert got.dtype == ref.dtype and got.shape == ref.shape
        assert np.array_equal(got, ref), (a.name, int((got != ref).any(0).sum()))
        # the same from float64 and from torch tensors (rounded to float32 first, as numpy does)
        assert np.array_equal(tq.quantize(a, torch.from_numpy(v.astype(np.float64)), torch.from_numpy(ids.view(np.int64))),
                              ref)


@pytest.mark.parametrize("name,sh", PROFILES)
def test_all_attributes_at_once_equal_the_codes_of_each(name, sh):
    """codes_all (every column of packed rows in one pass, as frames are built) == codes per attribute."""
    rng = np.random.default_rng(7 + sh)
    p = Profile.preset(name, sh, GRID)
    tq = TorchQuantizer(p, "cpu")
    ids = _ids(rng, 5000)
    present = [a for a in ATTRS if p.comps(a)]
    vals = [_values(p, a, ids, rng) for a in present]
    x = torch.from_numpy(np.concatenate([v.reshape(len(ids), -1) for v in vals], 1))
    t_ids = torch.from_numpy(ids.view(np.int64))
    got, ok = tq.codes_all(x, t_ids)
    want = torch.cat([tq.codes(a, torch.from_numpy(v).reshape(len(ids), -1), t_ids)[0]
                      for a, v in zip(present, vals)], 1)
    assert bool(ok) and got.dtype == want.dtype and torch.equal(got, want)
    if p.quant:  # rows whose position is a placeholder (not placed) take code 0 there, and pass the range check
        placed = torch.ones(len(ids), dtype=torch.bool)
        placed[:10] = False
        far = x.clone()
        far[:10, :3] = 1e30
        got2, ok2 = tq.codes_all(far, t_ids, placed)
        assert bool(ok2) and not got2[:10, :3].any() and torch.equal(got2[10:], want[10:])
        assert torch.equal(got2[:10, 3:], want[:10, 3:])
    x[17, -1] = float("nan")
    assert not bool(tq.codes_all(x, t_ids)[1])


@pytest.mark.parametrize("name", ["compact", "high"])
def test_opacity_thresholds_reproduce_the_sigmoid_floor_at_every_step(name):
    p = Profile.preset(name, 0, GRID)
    t = opacity_thresholds(p)
    top = (1 << p.quant.opacity_bits) - 1
    assert t.shape == (top,) and (np.diff(t) >= 0).all()
    below = np.nextafter(t, np.float32(-np.inf))
    z = np.zeros(top, U64)
    at = p.quantize(Attr.OPACITY, t[:, None], z)[0].astype(np.int64)
    before = p.quantize(Attr.OPACITY, below[:, None], z)[0].astype(np.int64)
    k = np.arange(1, top + 1)
    assert (at >= k).all() and (before < k).all()            # t[k-1] is exactly where code k begins
    tq = TorchQuantizer(p, "cpu")
    for v in (t, below, np.nextafter(t, np.float32(np.inf))):
        assert np.array_equal(tq.quantize(Attr.OPACITY, v[:, None], z), p.quantize(Attr.OPACITY, v[:, None], z))


def test_rotation_edge_cases():
    p = Profile.preset("compact", 0, GRID)
    q = np.array([[0, 0, 0, 0], [0.5, 0.5, 0.5, 0.5], [-0.5, 0.5, -0.5, 0.5], [0, 0, 0, -1], [0, -1, 1, 0],
                  [1e-30, 0, 0, 0], [-1e-38, 1e-38, 0, 0], [3e38, -3e38, 3e38, 1], [1, 1, 0, 0], [-2, 2, -2, 2],
                  [0.7071068, 0.7071068, 0, 0], [-0.0, 0.0, -0.0, 1e-45]], np.float32)
    ids = np.zeros(len(q), U64)
    assert np.array_equal(TorchQuantizer(p, "cpu").quantize(Attr.ROTATION, q, ids), p.quantize(Attr.ROTATION, q, ids))


def test_values_that_cannot_be_quantized_are_refused():
    rng = np.random.default_rng(3)
    for name in ("compact", "lossless"):
        p = Profile.preset(name, 1, GRID)
        tq = TorchQuantizer(p, "cpu")
        many = _ids(rng, 300)
        ids = many[:10]
        for a in ATTRS:
            for bad in (np.nan, np.inf, -np.inf):
                v = _values(p, a, many, rng)[:10]
                v[3, 0] = bad
                with pytest.raises(ValueError):
                    p.quantize(a, v, ids)
                with pytest.raises(ValueError):
                    tq.quantize(a, v, ids)
    p = Profile.preset("compact", 0, GRID)
    far = (GRID.cell_origin_of_ids(ids) + 1e7).astype(np.float32)      # > 2^31 position steps from the cell
    with pytest.raises(ValueError):
        p.quantize(Attr.POSITION, far, ids)
    with pytest.raises(ValueError):
        TorchQuantizer(p, "cpu").quantize(Attr.POSITION, far, ids)


def test_wire_wraps_residuals_like_the_format():
    rng = np.random.default_rng(4)
    for name in ("compact", "high", "lossless"):
        p = Profile.preset(name, 3, GRID)
        for a in ATTRS:
            dt = p.dtype(a)
            info = np.iinfo(dt)
            new = rng.integers(info.min, int(info.max) + 1, (500, p.comps(a)), dtype=np.int64).astype(dt)
            old = rng.integers(info.min, int(info.max) + 1, (500, p.comps(a)), dtype=np.int64).astype(dt)
            num = lambda x: torch.from_numpy(x.view(np.int32) if dt == np.uint32 else x.astype(np.int64))  # noqa: E731
            r = wire(p, a, num(new).to(torch.int64) - num(old).to(torch.int64)).numpy().view(dt)
            assert np.array_equal(r, (new - old).astype(dt))           # numpy wraps in the code dtype


# ------------------------------------------------------------------------------- frames and the mirror
class Stream:
    """An encoder fed frames built in torch, and a decoder fed its bytes; digests compared every frame."""

    def __init__(self, p: Profile, max_gaussians: int = 0):
        self.p = p
        self.enc = Encoder(p, max_gaussians=max_gaussians)
        self.dec = Decoder(self.enc.header_bytes())
        self.frames = [self.enc.header_bytes()]

    def push(self, ops: FloatOps):
        d = build_delta(self.enc, ops, "cpu")
        frame = self.enc.encode_delta(d)
        self.frames.append(frame)
        self.dec.decode_frame(frame)
        assert self.dec.state.digest() == self.enc.state.digest()
        return d

    def check_mirror(self):
        """The mirror holds the host state's codes, in the host state's slots (so its UPDATE slots are
        hints the host's apply takes)."""
        m = mirror_of(self.enc, "cpu")
        ids = self.enc.state.ids()
        got, want = m.codes_of(ids), self.enc.state.codes_of(ids)
        assert all(np.array_equal(got[a], want[a]) for a in ATTRS)
        t = torch.from_numpy(ids.view(np.int64))
        assert np.array_equal(m.lookup(t).numpy(), self.enc.state.slots_of(ids))
        return m


def _scene(n, sh, seed, profile="compact"):
    g = synthetic_scene(n, sh, seed)
    p = Profile.preset(profile, sh, Grid.fit(g.positions, cell_bits=8))
    return pack_gaussians(g), p


@pytest.mark.parametrize("shaped", [False, True])
def test_no_drift_over_1000_closed_loop_frames(monkeypatch, shaped):
    """Positions random-walk, colours and rotations change every frame, ids come and go: after 1,000
    frames the decoder holds exactly the quantized latest floats, and the digests never differed.
    ``shaped``: as on a GPU, rows padded to a frame graph's sizes and the index in fixed buffers."""
    monkeypatch.setattr(dc, "SHAPED_ON_CPU", shaped)
    monkeypatch.setattr(DeviceCodes, "MERGE_MIN", 64)
    monkeypatch.setattr(SceneState, "COMPACT_MIN", 64)
    rng = np.random.default_rng(5)
    x, p = _scene(400, 1, 5)
    lay = attr_layout(1)
    P, D, R = lay[Attr.POSITION], lay[Attr.SH_DC], lay[Attr.ROTATION]
    s = Stream(p)
    ids = s.enc.assign_ids(x[:, :3])
    s.push(FloatOps(keyframe=True, add_ids=ids, add=x))
    order = np.argsort(ids)
    live, sent = ids[order], x[order].copy()              # the latest floats sent, by id
    for f in range(1000):
        perm = rng.permutation(len(live))
        a, b, c = perm[:60], perm[60:90], perm[90:100]
        pos_a = sent[a, P] + rng.normal(0, 0.002, (len(a), 3)).astype(np.float32)
        dc_b, pos_b = sent[b, D] + np.float32(0.05 * np.sin(f / 7)), sent[b, P] + np.float32(0.001)
        rot_c = sent[c, R] + rng.normal(0, 0.05, (len(c), 4)).astype(np.float32)
        ops = FloatOps(updates=[(live[a], {Attr.POSITION: pos_a}),
                                (live[b], {Attr.SH_DC: dc_b, Attr.POSITION: pos_b}),
                                (torch.from_numpy(live[c].view(np.int64)), {Attr.ROTATION: torch.from_numpy(rot_c)})])
        sent[a, P], sent[b, D], sent[b, P], sent[c, R] = pos_a, dc_b, pos_b, rot_c
        if f % 50 == 49:                                   # some go, others are born (ids reused as they free up)
            gone = perm[100:130]
            born = x[rng.integers(0, len(x), 25)] + np.float32(0.01)
            new_ids = s.enc.assign_ids(born[:, :3])
            ops.delete_ids, ops.add_ids, ops.add = live[gone], new_ids, born
            keep = np.ones(len(live), bool)
            keep[gone] = False
            live, sent = np.concatenate([live[keep], new_ids]), np.concatenate([sent[keep], born])
            order = np.argsort(live)
            live, sent = live[order], sent[order]
        s.push(ops)
        if f % 250 == 0:
            s.check_mirror()
    codes = s.dec.state.codes_of(live)
    assert len(s.dec.state) == len(live)
    for at in ATTRS:
        if p.comps(at):
            assert np.array_equal(codes[at], p.quantize(at, sent[:, lay[at]], live)), at.name
    s.check_mirror()
    assert validate_stream(b"".join(s.frames)) == []


@pytest.mark.parametrize("shaped", [False, True])
def test_mirror_through_deletes_by_id_and_cell_reused_ids_merges_and_compaction(monkeypatch, shaped):
    monkeypatch.setattr(dc, "SHAPED_ON_CPU", shaped)
    monkeypatch.setattr(DeviceCodes, "MERGE_MIN", 16)
    monkeypatch.setattr(SceneState, "COMPACT_MIN", 16)
    rng = np.random.default_rng(6)
    x, p = _scene(600, 0, 6)
    s = Stream(p)
    ids = s.enc.assign_ids(x[:, :3])
    s.push(FloatOps(keyframe=True, add_ids=ids, add=x))
    rows = dict(zip(ids.tolist(), range(len(ids))))
    slot_bits = U64(p.grid.slot_bits)
    for f in range(40):
        live = s.enc.state.ids()
        ops = FloatOps()
        if f % 4 == 0:                                      # a whole cell goes, then comes back with the same ids
            cell = live[rng.integers(len(live))] >> slot_bits
            in_cell = live[(live >> slot_bits) == cell]
            ops.delete_cells = {0: np.array([cell], U64)}
            s.push(ops)
            s.check_mirror()
            ops = FloatOps(add_ids=in_cell, add=x[[rows[i] for i in in_cell.tolist()]] + np.float32(0.001))
        elif f % 4 == 1:                                    # ids deleted and ADDed again in one frame
            some = rng.choice(live, 20, replace=False)
            ops = FloatOps(delete_ids=some, add_ids=some, add=x[[rows[i] for i in some.tolist()]] * np.float32(1.01))
        else:
            some = rng.choice(live, 80, replace=False)
            vals = x[[rows[i] for i in some.tolist()]]
            ops = FloatOps(delete_ids=rng.choice(np.setdiff1d(live, some), 10, replace=False),
                           updates=[(some, {Attr.POSITION: vals[:, :3] + np.float32(0.01 * f), Attr.OPACITY: vals[:, 10:11] * 0})])
        s.push(ops)
        m = s.check_mirror()
    assert m.main_ids.numel() + m.over_ids.numel() >= len(s.enc.state)
    assert validate_stream(b"".join(s.frames)) == []


def test_frame_graphs_follow_the_rows_and_the_index_as_they_grow(monkeypatch):
    """Frame graphs read the mirror's rows and its index buffers where they lie: when either grows
    past its size, the graphs made before are dropped and new ones read the new tensors."""
    monkeypatch.setattr(dc, "SHAPED_ON_CPU", True)
    x, p = _scene(6100, 0, 3)
    s = Stream(p)
    ids = s.enc.assign_ids(x[:, :3])
    s.push(FloatOps(keyframe=True, add_ids=ids[:100], add=x[:100]))
    m = s.check_mirror()
    reads = [m._graph_reads]
    for k in range(100, 6100, 1500):                  # ADDs, and UPDATEs of rows already there
        old = np.arange(0, k, 7)
        s.push(FloatOps(add_ids=ids[k:k + 1500], add=x[k:k + 1500],
                        updates=[(ids[old], {Attr.POSITION: x[old, :3] + np.float32(0.001 * k)})]))
        m = s.check_mirror()
        reads.append(m._graph_reads)
    assert m._fixed["over"][0].numel() > 4096 and m.rows.shape[0] >= 6100    # both grew
    assert any(a[0] is not b[0] for a, b in zip(reads, reads[1:]))            # the rows moved
    assert any(a[2] is not b[2] for a, b in zip(reads, reads[1:]))            # the overlay's buffer moved
    assert validate_stream(b"".join(s.frames)) == []


@pytest.mark.parametrize("na, nb", [(0, 5), (5, 0), (1, 1), (40, 7), (3000, 900)])
def test_index_merge_is_a_stable_sort_with_the_new_entries_first(na, nb):
    """The mirror's merge (two binary searches and scatters) orders as a stable sort of new + old: an id
    in both (a dead entry and its re-ADD) keeps the new entry first, where lookups take it."""
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        a = torch.sort(torch.randint(0, 2 * (na + nb) + 1, (na,), generator=g))[0]     # may repeat
        b = torch.unique(torch.randint(0, 2 * (na + nb) + 1, (nb,), generator=g))      # distinct
        a_slots, b_slots = torch.randperm(na, generator=g), torch.randperm(b.numel(), generator=g) + na
        ids, slots = dc._merge(a, a_slots, b, b_slots)
        want, order = torch.sort(torch.cat([b, a]), stable=True)
        assert torch.equal(ids, want) and torch.equal(slots, torch.cat([b_slots, a_slots])[order])


def test_the_mirror_follows_the_host_into_freed_slots_and_its_hints_are_taken(monkeypatch):
    """At its budget the host state puts ADDs into the slots deletes freed; the mirror puts them in
    the same slots, so the UPDATE slots it hands the host's apply are taken as they are (no lookup)."""
    rng = np.random.default_rng(8)
    x, p = _scene(700, 1, 8)
    s = Stream(p, max_gaussians=640)
    ids = s.enc.assign_ids(x[:, :3])
    rows = dict(zip(ids.tolist(), range(len(ids))))
    s.push(FloatOps(keyframe=True, add_ids=ids[:600], add=x[:600]))
    out = list(ids[600:])                                  # ids not live, ready to come in
    looked_up = []
    find = type(s.enc.state.index).find
    monkeypatch.setattr(type(s.enc.state.index), "find",    # the encoder's lookups (not the decoder's)
                        lambda self, q: (self is s.enc.state.index and looked_up.append(len(q))) or find(self, q))
    for f in range(30):
        live = s.enc.state.ids()
        gone = rng.choice(live, 30, replace=False)
        come = np.sort(np.array(out[:30], U64))
        out = out[30:] + list(gone)
        moved = rng.choice(np.setdiff1d(live, gone), 50, replace=False)
        vals = x[[rows[i] for i in moved.tolist()]]
        looked_up.clear()
        s.push(FloatOps(delete_ids=gone, add_ids=come, add=x[[rows[i] for i in come.tolist()]],
                        updates=[(moved, {Attr.POSITION: vals[:, :3] + np.float32(0.01 * (f + 1))})]))
        assert sum(looked_up) == 60                        # the deletes and ADDs only: UPDATE slots were hints
        s.check_mirror()
    st = s.enc.state
    assert st.slot_ids.shape[0] == 640 and st.high <= 640  # the budget reached: freed slots taken
    assert validate_stream(b"".join(s.frames)) == []


def test_frames_made_elsewhere_or_dropped_reload_the_mirror():
    x, p = _scene(300, 1, 7)
    s = Stream(p)
    ids = s.enc.assign_ids(x[:, :3])
    s.push(FloatOps(keyframe=True, add_ids=ids, add=x))
    lay = attr_layout(1)
    build_delta(s.enc, FloatOps(updates=[(ids[:5], {Attr.POSITION: x[:5, :3] + 1})]), "cpu")   # built, never sent
    frame = s.enc.encode(update=(ids[:50], {Attr.SH_DC: x[:50, lay[Attr.SH_DC]] + 0.5}))       # the host path
    s.dec.decode_frame(frame)
    s.frames.append(frame)
    d = s.push(FloatOps(updates=[(ids[:100], {Attr.SH_DC: x[:100, lay[Attr.SH_DC]] + 0.5})]))
    assert sorted(d.update_ids.tolist()) == sorted(ids[50:100].tolist())   # the first 50 hold these codes already
    s.check_mirror()


def test_errors_leave_the_stream_as_it_was():
    x, p = _scene(200, 1, 8)
    s = Stream(p)
    ids = s.enc.assign_ids(x[:, :3])
    s.push(FloatOps(keyframe=True, add_ids=ids, add=x))
    digest = s.enc.state.digest()
    absent = np.array([int(ids.max()) + 1], U64)
    with pytest.raises(KeyError):
        build_delta(s.enc, FloatOps(updates=[(absent, {Attr.POSITION: x[:1, :3]})]), "cpu")
    with pytest.raises(ValueError):
        build_delta(s.enc, FloatOps(updates=[(ids[:3], {Attr.POSITION: x[:3, :3]}), (ids[2:4], {Attr.SH_DC: x[2:4, 10:13]})]),
                    "cpu")
    nan = x[:4, :3].copy()
    nan[1, 1] = np.nan
    with pytest.raises(ValueError):
        build_delta(s.enc, FloatOps(updates=[(ids[:4], {Attr.POSITION: nan})]), "cpu")
    with pytest.raises(ValueError):
        build_delta(s.enc, FloatOps(add_ids=np.array([5, 5], U64), add=x[:2]), "cpu")
    assert s.enc.state.digest() == digest
    s.push(FloatOps(updates=[(ids[:10], {Attr.POSITION: x[:10, :3] + 0.1})]))
    s.check_mirror()


def test_padded_rows_and_packed_copy_equal_the_plain_views(monkeypatch):
    """On a GPU a frame's rows are padded to a graph's sizes and its codes come back as one packed
    byte buffer; padding and packing on the CPU give the same deltas."""
    for name, sh in (("compact", 3), ("high", 2), ("lossless", 1)):
        x, p = _scene(500, sh, 9, name)
        lay = attr_layout(sh)
        deltas = []
        for packed in (False, True):
            monkeypatch.setattr(dc, "SHAPED_ON_CPU", packed)
            s = Stream(p)
            ids = s.enc.assign_ids(x[:, :3])
            s.push(FloatOps(keyframe=True, add_ids=ids, add=x))
            r = np.random.default_rng(1)
            sb = U64(p.grid.slot_bits)
            cell = ids[420] >> sb
            rows = np.flatnonzero((ids >> sb) != cell)      # the Gaussians outside the cell that goes
            u1, u2, gone = rows[:100], rows[100:150], rows[400:420]
            ops = FloatOps(updates=[(ids[u1], {Attr.POSITION: x[u1, :3] + 0.3, Attr.SCALE: x[u1][:, lay[Attr.SCALE]] * 2}),
                                    (ids[u2], {Attr.ROTATION: r.normal(size=(50, 4)).astype(np.float32)})],
                           delete_ids=ids[gone], delete_cells={0: np.array([cell], U64)},
                           add_ids=s.enc.assign_ids(x[450:, :3] + 0.2), add=x[450:] + np.float32(0.2))
            deltas.append(s.push(ops))
        assert deltas[0].equals(deltas[1]) and deltas[0].n_update and deltas[0].n_add and deltas[0].delete_cells
        assert s.push(FloatOps()).is_empty()                   # a step with nothing to send


@pytest.mark.parametrize("profile", ["compact", "lossless"])
def test_a_cpu_world_frames_through_the_codecs_encoder_equal_the_device_path(profile):
    """``protocol.to_delta`` sends a CPU step to ``Encoder.make_delta`` (update groups with their own
    attributes); the same steps through ``build_delta`` give the same frames, byte for byte."""
    from reference_generator import Interact, Jump, Move, Turn, World, WorldConfig
    from reference_generator.protocol import to_delta, to_ops

    w = World(WorldConfig(target_live=3000, profile=profile, view_radius=32.0))
    host = Encoder(w.profile, max_gaussians=w.max_gaussians)
    dev = Encoder(w.profile, max_gaussians=w.max_gaussians)
    out = w.reset(2)
    assert host.encode_delta(to_delta(host, out)) == dev.encode_delta(build_delta(dev, to_ops(out)))
    kinds = set()
    for k in range(60):
        out = w.step([Move(4.0), Move(4.0), Turn(5.0), Interact(), Jump()][k % 5])
        d = to_delta(host, out)
        kinds |= {("add", bool(len(d.add_ids))), ("upd", len(d.updates) > 1), ("cells", bool(d.delete_cells))}
        assert host.encode_delta(d) == dev.encode_delta(build_delta(dev, to_ops(out))), k
    assert {("add", True), ("upd", True), ("cells", True)} <= kinds        # every kind of op was there


class _RecordedLanes:
    """Lanes that run in turn on the CPU and check what streams would need: every tensor an operation
    reads or writes was last written by its own lane or by one whose work that lane has waited for
    (a vector clock per lane: forking takes the forking stream's, joining merges the lane's into it),
    and every lane forked is joined by the frame's end."""

    def __init__(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        lanes = self
        self.cur, self.seq = "main", 0
        self.seen = {"main": {"main": 0}}       # lane -> {lane: the last of its operations waited for}
        self.writer: dict = {}                  # storage -> (lane, operation)
        self.forked: set = set()
        self.bad: list = []

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                flat = [a for a in list(args) + list(kwargs.values()) for a in (a if isinstance(a, (list, tuple)) else [a])]
                for t in flat:
                    if isinstance(t, torch.Tensor):
                        lanes._read(t, func)
                out = func(*args, **kwargs)
                lanes.seq += 1
                lanes.seen[lanes.cur][lanes.cur] = lanes.seq
                # what the operation wrote: its mutated arguments, and its results unless they are views
                written = [a for a, arg in zip(args, func._schema.arguments)
                           if isinstance(a, torch.Tensor) and arg.alias_info is not None and arg.alias_info.is_write]
                outs = out if isinstance(out, (list, tuple)) else [out]
                written += [o for o, ret in zip(outs, func._schema.returns)
                            if isinstance(o, torch.Tensor) and ret.alias_info is None]
                for t in written:
                    lanes.writer[t.untyped_storage().data_ptr()] = (lanes.cur, lanes.seq)
                return out

        self.mode = Mode()

    def _read(self, t, func):
        w = self.writer.get(t.untyped_storage().data_ptr())
        if w is not None and w[0] != self.cur and self.seen[self.cur].get(w[0], 0) < w[1]:
            self.bad.append(f"{func} on {self.cur} uses a tensor {tuple(t.shape)} of {w[0]} before waiting for it")

    def lane(self, k: int):
        import contextlib

        @contextlib.contextmanager
        def run():
            name = f"lane{k}"
            view = self.seen.setdefault(name, {})
            for s, q in self.seen["main"].items():
                view[s] = max(view.get(s, 0), q)
            self.forked.add(k)
            self.cur = name
            try:
                yield
            finally:
                self.cur = "main"
        return run()

    def join(self, *ks: int) -> None:
        for k in ks or sorted(self.forked):
            for s, q in self.seen.get(f"lane{k}", {}).items():
                self.seen["main"][s] = max(self.seen["main"].get(s, 0), q)
        if not ks:
            self.forked.clear()

    @staticmethod
    def keep(t):
        return t


def test_a_frames_lanes_wait_for_what_they_use(monkeypatch):
    """On a GPU a frame graph's independent parts run on side streams (lanes). Run in turn on the CPU
    under a checker, no part uses a tensor before its lane has waited for the lane that wrote it,
    every lane is joined by the frame's end, and the frames equal those built in one lane."""
    x, p = _scene(3000, 3, 5, "compact")
    lay = attr_layout(3)
    monkeypatch.setattr(dc, "SHAPED_ON_CPU", True)
    plain = dc._frame_device
    checkers = []

    def in_lanes(m, r, union, tcol, lanes=None):
        ln = _RecordedLanes()
        checkers.append(ln)
        with ln.mode:
            out = plain(m, r, union, tcol, ln)
        assert not ln.forked, "lanes left unjoined"
        return out

    deltas = []
    for checked in (False, True):
        if checked:
            monkeypatch.setattr(dc, "_frame_device", in_lanes)
        s = Stream(p)
        ids = s.enc.assign_ids(x[:, :3])
        s.push(FloatOps(keyframe=True, add_ids=ids[:2000], add=x[:2000]))
        r = np.random.default_rng(3)
        for step in range(4):
            u = r.choice(2000, 300, replace=False)
            u1, u2 = u[:200], u[200:]
            new = slice(2000 + 250 * step, 2250 + 250 * step)
            ops = FloatOps(updates=[(ids[u1], {Attr.POSITION: x[u1, :3] + 0.01 * (step + 1)}),
                                    (ids[u2], {Attr.ROTATION: r.normal(size=(100, 4)).astype(np.float32),
                                               Attr.SH_DC: x[u2][:, lay[Attr.SH_DC]] + 0.2})],
                           add_ids=ids[new], add=x[new])
            deltas.append(s.push(ops))
    assert len(checkers) == 5 and all(not c.bad for c in checkers), [c.bad[:3] for c in checkers]
    assert all(a.equals(b) for a, b in zip(deltas[:4], deltas[4:]))
    assert all(d.n_update and d.n_add for d in deltas)


def _count_reloads(monkeypatch) -> list:
    """The state seq at each full reload of a mirror, as the test goes."""
    seqs, real = [], DeviceCodes.reload
    monkeypatch.setattr(DeviceCodes, "reload", lambda m, enc: (seqs.append(enc.state.seq), real(m, enc)))
    return seqs


def _palette_scene(n, seed):
    """A scene, its SH1 ``small`` profile (SH palette) and a function giving rows of it as {Attr: floats}."""
    x, p = _scene(n, 1, seed, "small")
    lay = attr_layout(1)
    return x, p, lambda rows: {a: x[rows][:, lay[a]] for a in ATTRS if p.comps(a)}


@pytest.mark.parametrize("shaped", [False, True])
def test_a_palette_stream_mixes_host_frames_and_device_frames(monkeypatch, shaped):
    """Under an SH palette profile the frames that ADD (or UPDATE SH_REST) are built on the host, the
    others here: the mirror reads each host frame back from the encoder's state (no reload after the
    first), its device frames equal the host's own, and the stream decodes to the encoder's state."""
    monkeypatch.setattr(dc, "SHAPED_ON_CPU", shaped)
    reloads = _count_reloads(monkeypatch)
    rng = np.random.default_rng(12)
    x, p, floats = _palette_scene(600, 12)
    assert p.palette
    lay = attr_layout(1)
    P, D, S = lay[Attr.POSITION], lay[Attr.SH_DC], lay[Attr.SH_REST]
    s = Stream(p)

    def host(d):
        dc.follow_host(s.enc, d)
        frame = s.enc.encode_delta(d)
        s.frames.append(frame)
        s.dec.decode_frame(frame)
        assert s.dec.state.digest() == s.enc.state.digest()

    ids = s.enc.assign_ids(x[:400, :3])
    host(s.enc.make_delta(add=(ids, floats(np.arange(400))), keyframe=True))
    live = dict(zip(ids.tolist(), range(400)))             # id -> row of x
    with pytest.raises(ValueError, match="palette"):
        build_delta(s.enc, FloatOps(add_ids=np.array([int(ids.max()) + 1], U64), add=x[:1]), "cpu")
    with pytest.raises(ValueError, match="palette"):
        build_delta(s.enc, FloatOps(updates=[(ids[:3], {Attr.SH_REST: x[:3, S]})]), "cpu")
    born = 400
    for f in range(60):
        keys = np.array(sorted(live), U64)
        pick = rng.choice(len(keys), 40, replace=False)
        rows = np.array([live[int(k)] for k in keys[pick]])
        x[rows[:30], 0] += np.float32(0.01)
        x[rows[30:], D.start] += np.float32(0.05)
        ops = FloatOps(updates=[(keys[pick[:30]], {Attr.POSITION: x[rows[:30], P]}),
                                (keys[pick[30:]], {Attr.SH_DC: x[rows[30:], D]})])
        if f % 10 == 4:                                      # new content and a few gone: the host's frame
            new = np.arange(born, born + 20)
            new_ids = s.enc.assign_ids(x[new, :3])
            gone = keys[rng.choice(len(keys), 5, replace=False)]
            host(s.enc.make_delta(add=(new_ids, floats(new)), delete=gone))
            live.update(zip(new_ids.tolist(), new.tolist()))
            for k in gone.tolist():
                del live[k]
            born += 20
        elif f % 10 == 7:                                    # an SH_REST change: the host's too
            x[rows[:5], S] *= np.float32(0.5)
            host(s.enc.make_delta(update=(keys[pick[:5]], {Attr.SH_REST: x[rows[:5], S]})))
        else:
            s.push(ops)
        if f % 20 == 19:
            s.check_mirror()
    assert reloads == [1]                                    # the first device frame's, after the keyframe
    keys = np.array(sorted(live), U64)
    rows = np.array([live[int(k)] for k in keys[:50]])
    upd = [(keys[:50], {Attr.POSITION: x[rows, P] + np.float32(0.02)})]
    want = s.enc.make_delta(update=upd)
    got = build_delta(s.enc, FloatOps(updates=upd), "cpu")
    assert [(b.mask, b.ids.tolist()) for b in got.updates] == [(b.mask, b.ids.tolist()) for b in want.updates]
    assert all(np.array_equal(g.res[a], w.res[a]) for g, w in zip(got.updates, want.updates) for a in g.res)
    assert validate_stream(b"".join(s.frames)) == []


def test_a_host_frame_that_compacts_the_state_reloads_the_mirror(monkeypatch):
    """A palette frame built on the host whose apply compacts the host state (slots renumbered): the
    mirror cannot follow it row by row, so it reloads, and the next device frame is right."""
    monkeypatch.setattr(SceneState, "COMPACT_MIN", 16)
    reloads = _count_reloads(monkeypatch)
    x, p, floats = _palette_scene(300, 13)
    s = Stream(p)
    ids = s.enc.assign_ids(x[:250, :3])
    s.dec.decode_frame(s.enc.encode_delta(s.enc.make_delta(add=(ids, floats(np.arange(250))), keyframe=True)))
    s.push(FloatOps(updates=[(ids[:20], {Attr.POSITION: x[:20, :3] + np.float32(0.01)})]))   # the mirror is made
    compactions = s.enc.state.compactions
    gone = np.sort(ids)[:200]
    new_ids = s.enc.assign_ids(x[250:260, :3])
    moved = np.argsort(ids)[200:210]             # rows of 10 of the Gaussians that stay
    d = s.enc.make_delta(add=(new_ids, floats(np.arange(250, 260))), delete=gone,
                         update=(ids[moved], {Attr.POSITION: x[moved, :3] + np.float32(0.02)}))
    dc.follow_host(s.enc, d)
    s.dec.decode_frame(s.enc.encode_delta(d))
    assert s.enc.state.compactions > compactions
    live = s.enc.state.ids()
    s.push(FloatOps(updates=[(live[:30], {Attr.SH_DC: np.full((30, 3), 0.25, np.float32)})]))
    assert reloads == [1, 3]                 # the first device frame's, and the one after the compaction
    s.check_mirror()


def test_a_host_frame_the_encoder_refuses_leaves_the_mirror_as_it_was(monkeypatch):
    """A palette frame built on the host whose apply fails (over the Gaussian budget) changes neither
    the state nor the mirror: the next device frame commits without a reload and is right."""
    reloads = _count_reloads(monkeypatch)
    x, p, floats = _palette_scene(300, 14)
    s = Stream(p, max_gaussians=210)
    ids = s.enc.assign_ids(x[:200, :3])
    s.dec.decode_frame(s.enc.encode_delta(s.enc.make_delta(add=(ids, floats(np.arange(200))), keyframe=True)))
    s.push(FloatOps(updates=[(ids[:20], {Attr.POSITION: x[:20, :3] + np.float32(0.01)})]))
    digest = s.enc.state.digest()
    d = s.enc.make_delta(add=(s.enc.assign_ids(x[200:250, :3]), floats(np.arange(200, 250))))
    dc.follow_host(s.enc, d)
    with pytest.raises(GsdError):
        s.enc.encode_delta(d)
    assert s.enc.state.digest() == digest
    s.push(FloatOps(updates=[(ids[20:40], {Attr.SH_DC: np.full((20, 3), 0.5, np.float32)})]))
    assert reloads == [1]
    s.check_mirror()
