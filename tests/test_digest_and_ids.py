"""GSD-HASH digest against a plain reference (format-notes 7), Morton codes and spatial ids (notes 3)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codec import Decoder, Delta, Digest, Encoder, Grid, SceneState
from codec.attributes import ATTRS, Attr, full_mask
from codec.delta import UpdateBlock, group_updates
from codec.spatial import morton_decode, morton_encode

from conftest import PROFILE_NAMES, SH_DEGREES, grids, make_profile, random_codes, random_gaussians

M32 = 0xFFFFFFFF


# ------------------------------------------------------------------ reference GSD-HASH, plain Python
def ref_fmix32(h: int) -> int:
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & M32
    h ^= h >> 16
    return h


def ref_k(lane: int, j: int) -> int:
    return ref_fmix32(((j + 1) * 0x9E3779B1 + lane * 0x7F4A7C15) & M32) | 1


def ref_words(gid: int, codes: dict, col: int) -> list[int]:
    """w0 = id low, w1 = id high, then every component in attribute order, zero-extended bit patterns."""
    words = [gid & M32, gid >> 32]
    for a in ATTRS:
        arr = codes[a]
        bits = 8 * arr.dtype.itemsize
        for c in range(arr.shape[0]):
            words.append(int(arr[c, col]) & ((1 << bits) - 1))  # two's complement for signed codes
    return words


def ref_digest(ids, codes: dict) -> Digest:
    lanes = [0, 0]
    for col, gid in enumerate(int(i) for i in ids):
        w = ref_words(gid, codes, col)
        for lane in (0, 1):
            acc = 0
            for j, word in enumerate(w):
                acc = (acc + word * ref_k(lane, j)) & M32
            lanes[lane] = (lanes[lane] + ref_fmix32(acc)) & M32
    return Digest(len(ids), lanes[0], lanes[1])


def ref_hash(words: list[int], lane: int) -> int:
    acc = 0
    for j, word in enumerate(words):
        acc = (acc + word * ref_k(lane, j)) & M32
    return ref_fmix32(acc)


def ref_state_digest(state: SceneState) -> Digest:
    """Gaussian records, plus one record per non-zero palette entry: w0 = index, w1 = 0xFFFFFFFF, codes."""
    ids, codes = state.sorted_codes()
    d = ref_digest(ids, codes)
    if state.palette is None:
        return d
    lanes = [d.lane0, d.lane1]
    bits = 8 * state.palette.dtype.itemsize
    for e in range(state.palette.shape[1]):
        entry = [int(v) & ((1 << bits) - 1) for v in state.palette[:, e]]
        if any(entry):
            for lane in (0, 1):
                lanes[lane] = (lanes[lane] + ref_hash([e, M32] + entry, lane)) & M32
    return Digest(d.count, lanes[0], lanes[1])


def test_reference_hash_known_values():
    """Pin the reference to the published constants (so a wrong reference cannot agree with wrong code)."""
    assert ref_fmix32(0) == 0
    assert ref_fmix32(1) == 0x514E28B7  # MurmurHash3 fmix32(1)
    assert ref_k(0, 0) == ref_fmix32(0x9E3779B1) | 1
    assert ref_k(1, 0) == ref_fmix32((0x9E3779B1 + 0x7F4A7C15) & M32) | 1


# --------------------------------------------------------------------------------------------- digest
def test_empty_state_digest_is_zero():
    for name in PROFILE_NAMES:
        g = random_gaussians(np.random.default_rng(0), 10, 3)
        p = make_profile(name, 3, g.positions)
        s = SceneState(p)
        assert s.digest() == Digest(0, 0, 0)
        assert str(s.digest()) == "0:00000000:00000000"
        enc = Encoder(p)
        dec = Decoder(enc.header_bytes())
        ids = enc.assign_ids(g.positions)
        dec.decode_frame(enc.keyframe(g, ids))
        dec.decode_frame(enc.encode(delete=ids))
        if p.palette:  # the palette outlives the Gaussians: its entries stay records (SPEC.md 7.1)
            assert dec.state.digest() == enc.state.digest() and dec.state.digest().count == 0
        else:
            assert dec.state.digest() == Digest(0, 0, 0) == enc.state.digest()


@settings(max_examples=40)
@given(name=st.sampled_from(PROFILE_NAMES), degree=st.sampled_from(SH_DEGREES), seed=st.integers(0, 2**32 - 1),
       n=st.integers(1, 12))
def test_digest_matches_reference(name, degree, seed, n):
    rng = np.random.default_rng(seed)
    g = random_gaussians(rng, n, degree)
    p = make_profile(name, degree, g.positions, cell_bits=12, slot_bits=20)  # 56-bit ids: w1 is non-zero
    enc = Encoder(p)
    dec = Decoder(enc.header_bytes())
    ids = enc.assign_ids(g.positions)
    assert (ids >> np.uint64(32)).any()
    dec.decode_frame(enc.keyframe(g, ids))
    want = ref_state_digest(dec.state)
    assert dec.state.digest() == want == enc.state.digest()
    text = str(want)
    assert Digest.parse(text) == want and text.count(":") == 2 and len(text.split(":")[1]) == 8


@settings(max_examples=25)
@given(name=st.sampled_from(PROFILE_NAMES), degree=st.sampled_from(SH_DEGREES), seed=st.integers(0, 2**32 - 1))
def test_incremental_digest_matches_reference_after_every_frame(name, degree, seed):
    """Adds, partial-mask updates, deletes and replaces: the O(delta) digest equals a from-scratch hash."""
    rng = np.random.default_rng(seed)
    p = make_profile(name, degree, np.array([[-4.0] * 3, [4.0] * 3]), cell_bits=3, slot_bits=8)
    state = SceneState(p)
    seq = 0
    for step in range(8):
        live = state.ids()
        d = Delta.empty_like(p, seq=seq + 1, base_seq=seq, keyframe=(step == 0))
        gone = live[rng.random(len(live)) < 0.2]
        d.delete_ids = gone
        rest = np.setdiff1d(live, gone)
        upd = rest[rng.random(len(rest)) < 0.5]
        if len(upd):
            fm = full_mask(degree)
            masks = (rng.integers(1, fm + 1, len(upd)) & fm).astype(np.uint8)
            masks[masks == 0] = Attr.SCALE.bit
            old, new = state.codes_of(upd), random_codes(rng, p, len(upd))
            d.updates = group_updates(upd, masks, {a: np.where((masks & a.bit) != 0, new[a] - old[a], 0).astype(p.dtype(a))
                                                   for a in ATTRS})
        fresh = np.setdiff1d(rng.integers(0, p.grid.id_limit, 4).astype(np.uint64), rest)
        add = np.union1d(gone[: len(gone) // 2], fresh)
        d.add_ids = add
        d.add = random_codes(rng, p, len(add))
        state.apply(d)
        seq += 1
        assert state.digest() == ref_state_digest(state), f"step {step}"


def _two_ways(rng, p, n):
    """The same content built as one keyframe and as shuffled batches with deletes/re-adds."""
    ids = np.sort(rng.choice(p.grid.id_limit, n, replace=False).astype(np.uint64))
    codes = random_codes(rng, p, n)
    a = SceneState(p)
    kf = Delta.empty_like(p, seq=1, keyframe=True)
    kf.add_ids, kf.add = ids, codes
    a.apply(kf)

    b = SceneState(p)
    seq = 0
    perm = rng.permutation(n)
    junk = random_codes(rng, p, n)
    for chunk in np.array_split(perm, 5):  # batches in random order, first with wrong codes
        chunk = np.sort(chunk)
        d = Delta.empty_like(p, seq=seq + 1, base_seq=seq)
        d.add_ids, d.add = ids[chunk], {x: junk[x][:, chunk] for x in ATTRS}
        b.apply(d); seq += 1
    # delete some, re-add them in a different frame (new slots), then fix codes by UPDATE
    redo = np.sort(perm[: n // 3])
    d = Delta.empty_like(p, seq=seq + 1, base_seq=seq)
    d.delete_ids = ids[redo]
    b.apply(d); seq += 1
    d = Delta.empty_like(p, seq=seq + 1, base_seq=seq)
    d.add_ids, d.add = ids[redo], {x: codes[x][:, redo] for x in ATTRS}
    b.apply(d); seq += 1
    others = np.setdiff1d(np.arange(n), redo)
    d = Delta.empty_like(p, seq=seq + 1, base_seq=seq)
    d.updates = group_updates(ids[others], np.full(len(others), full_mask(p.sh_degree), np.uint8),
                              {x: (codes[x][:, others] - junk[x][:, others]).astype(p.dtype(x)) for x in ATTRS})
    b.apply(d)
    return a, b, ids


@pytest.mark.parametrize("name", PROFILE_NAMES)
@pytest.mark.parametrize("degree", [0, 3])
def test_digest_independent_of_insertion_order_and_slots(name, degree):
    rng = np.random.default_rng(degree)
    p = make_profile(name, degree, np.zeros((1, 3)), cell_bits=4, slot_bits=10)
    a, b, ids = _two_ways(rng, p, 300)
    assert not np.array_equal(a.slots_of(ids), b.slots_of(ids)), "the two states share a slot layout"
    assert a.equals(b)
    assert a.digest() == b.digest() == ref_state_digest(a)


def test_digest_sensitive_to_every_word():
    """Changing any single component (or the id) changes the digest."""
    rng = np.random.default_rng(1)
    p = make_profile("high", 3, np.zeros((1, 3)), cell_bits=12, slot_bits=20)
    ids = np.array([5, 1 << 40], np.uint64)
    codes = random_codes(rng, p, 2)
    base = ref_digest(ids, codes)
    s = SceneState(p)
    kf = Delta.empty_like(p, seq=1, keyframe=True)
    kf.add_ids, kf.add = ids, codes
    s.apply(kf)
    assert s.digest() == base
    for a in ATTRS:
        for c in range(codes[a].shape[0]):
            t = s.copy()
            d = Delta.empty_like(p, seq=2, base_seq=1)
            new = codes[a][:, :1].copy()
            new[c, 0] = 0 if new[c, 0] != 0 else 1
            d.updates = [UpdateBlock(a.bit, ids[:1], {a: (new - codes[a][:, :1]).astype(p.dtype(a))})]
            t.apply(d)
            assert t.digest() != base and t.digest() == ref_state_digest(t), (a.name, c)
    moved = ref_digest(np.array([6, 1 << 40], np.uint64), codes)
    assert moved != base


# ------------------------------------------------------------------------------------------- morton
def ref_morton(x: int, y: int, z: int, bits: int) -> int:
    m = 0
    for i in range(bits):
        m |= ((x >> i) & 1) << (3 * i) | ((y >> i) & 1) << (3 * i + 1) | ((z >> i) & 1) << (3 * i + 2)
    return m


@settings(max_examples=60)
@given(bits=st.integers(1, 20), data=st.data())
def test_morton_round_trip_and_reference(bits, data):
    n = data.draw(st.integers(1, 20))
    coords = np.array(data.draw(st.lists(st.tuples(*[st.integers(0, (1 << bits) - 1)] * 3), min_size=n, max_size=n)),
                      np.uint64)
    codes = morton_encode(coords, bits)
    assert [int(c) for c in codes] == [ref_morton(int(x), int(y), int(z), bits) for x, y, z in coords]
    assert (codes < np.uint64(1) << np.uint64(3 * bits)).all()
    np.testing.assert_array_equal(morton_decode(codes, bits), coords)


# ---------------------------------------------------------------------------------------------- ids
def ref_cell(grid: Grid, p, position_bits: int | None = None) -> int:
    """The cell of position p (SPEC.md 3.4); with ``position_bits``, the cell its quantized position
    falls in (the upper neighbour where its code would round to 2^pb), as assign_ids gives for
    ADD_IMPLICIT (3.3)."""
    top = (1 << grid.cell_bits) - 1
    c = [min(max(int(np.floor((float(p[k]) - grid.origin[k]) / grid.cell_size)), 0), top) for k in range(3)]
    if position_bits is not None:
        step = grid.cell_size / (1 << position_bits)
        for k in range(3):
            code = round((float(p[k]) - (grid.origin[k] + c[k] * grid.cell_size)) / step)
            if code >= 1 << position_bits and c[k] < top:
                c[k] += 1
    return ref_morton(*c, grid.cell_bits)


@settings(max_examples=30)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(100, 1500), cell_bits=st.integers(1, 8),
       slot_bits=st.integers(12, 20))
def test_assigned_ids_unique_in_space_and_in_birth_cell(seed, n, cell_bits, slot_bits):
    rng = np.random.default_rng(seed)
    g = random_gaussians(rng, n, 0)
    g.positions[: n // 10] *= 3  # some outside the grid: their cell clamps to the border
    p = make_profile("compact", 0, g.positions[n // 10:], cell_bits, slot_bits)
    grid = p.grid
    enc = Encoder(p)
    ids = enc.assign_ids(g.positions)
    assert len(np.unique(ids)) == n
    assert (ids < np.uint64(grid.id_limit)).all()
    sample = rng.choice(n, min(n, 200), replace=False)
    pb = p.quant.position_bits if p.implicit_ids else None
    for j in sample:
        assert int(ids[j]) >> grid.slot_bits == ref_cell(grid, g.positions[j], pb), j
    # ids handed out but not yet added are not handed out again
    more = enc.assign_ids(g.positions[:50])
    assert not np.isin(more, ids).any()
    dec = Decoder(enc.header_bytes())
    dec.decode_frame(enc.keyframe(g, ids))
    # after deletes, a new id's slot is above every live slot of its cell (notes 3)
    gone = ids[rng.random(n) < 0.3]
    dec.decode_frame(enc.encode(delete=gone))
    newpos = g.positions[rng.choice(n, 100)]
    new = enc.assign_ids(newpos)
    live = enc.state.ids()
    assert not np.isin(new, live).any() and not np.isin(new, more).any()
    by_cell: dict = {}
    for i in live:
        c = int(i) >> grid.slot_bits
        by_cell[c] = max(by_cell.get(c, -1), int(i) & ((1 << grid.slot_bits) - 1))
    for i, pos in zip(new, newpos):
        c = int(i) >> grid.slot_bits
        assert c == ref_cell(grid, pos, pb)
        assert (int(i) & ((1 << grid.slot_bits) - 1)) > by_cell.get(c, -1)


@settings(max_examples=30)
@given(seed=st.integers(0, 2**32 - 1), level=st.integers(0, 3), name=st.sampled_from(PROFILE_NAMES))
def test_cell_delete_removes_exactly_that_cell(seed, level, name):
    rng = np.random.default_rng(seed)
    g = random_gaussians(rng, 400, 1)
    p = make_profile(name, 1, g.positions, cell_bits=4, slot_bits=12)
    grid = p.grid
    enc = Encoder(p)
    dec = Decoder(enc.header_bytes())
    ids = enc.assign_ids(g.positions)
    dec.decode_frame(enc.keyframe(g, ids))
    shift = grid.slot_bits + 3 * level
    victim = int(ids[int(rng.integers(0, len(ids)))]) >> shift
    before = set(int(i) for i in dec.state.ids())
    dec.decode_frame(enc.encode(delete_cells={level: [victim]}))
    after = set(int(i) for i in dec.state.ids())
    expect = {i for i in before if (i >> shift) != victim}
    assert after == expect and len(after) < len(before)
    assert dec.state.digest() == enc.state.digest() == ref_state_digest(dec.state)
    # the cell really is the birth cell of the positions (level 0): plain-Python cells of survivors differ
    if level == 0:
        order = {int(i): j for j, i in enumerate(ids)}
        pb = p.quant.position_bits if p.implicit_ids else None
        for i in before - after:
            assert ref_cell(grid, g.positions[order[i]], pb) == victim


@settings(max_examples=60)
@given(grid=grids(), data=st.data())
def test_cells_and_cell_ranges_on_any_grid(grid, data):
    """cells_of matches the plain definition; cell_range(level) holds exactly the ids with that prefix."""
    span = grid.cell_size * (1 << grid.cell_bits)
    pts = np.array(data.draw(st.lists(st.tuples(*[st.floats(-0.2, 1.2)] * 3), min_size=1, max_size=8)))
    pos = (np.asarray(grid.origin) + pts * span).astype(np.float32)
    cells = grid.cells_of(pos)
    assert [int(c) for c in cells] == [ref_cell(grid, p) for p in pos]
    level = data.draw(st.integers(0, grid.cell_bits))
    gid = data.draw(st.integers(0, grid.id_limit - 1))
    shift = grid.slot_bits + 3 * level
    first, last = grid.cell_range(np.array([gid >> shift], np.uint64), level)
    assert int(first[0]) == (gid >> shift) << shift and int(last[0]) == (((gid >> shift) + 1) << shift) - 1
    assert int(first[0]) <= gid <= int(last[0]) < grid.id_limit


def test_id_order_is_argsort_of_distinct_ids():
    """id_order sorts small arrays by timsort, large ones in halves on the workers, merged: at every
    size, the same order as argsort."""
    from codec.id_index import SPLIT_SORT_MIN, STABLE_SORT_MAX, id_order, merge_orders
    rng = np.random.default_rng(11)
    for n in (0, 1, 500, STABLE_SORT_MAX, STABLE_SORT_MAX + 1, SPLIT_SORT_MIN + 12345):
        runs = np.concatenate([np.arange(k, n, 7, dtype=np.uint64) for k in range(7)])  # ascending runs
        for ids in (rng.choice(1 << 39, n, replace=False).astype(np.uint64), np.arange(n, dtype=np.uint64)[::-1].copy(),
                    np.arange(n, dtype=np.uint64), runs):
            assert np.array_equal(id_order(ids), np.argsort(ids))
    keys = rng.choice(1000, 60, replace=False).astype(np.uint64)  # the merge as Python, too
    a, b = np.argsort(keys[:25]), np.argsort(keys[25:])
    out = np.empty(60, np.int64)
    merge_orders.py_func(keys[:25][a], a, keys[25:][b], b + 25, out)
    assert np.array_equal(out, np.argsort(keys))


@pytest.mark.parametrize("background", [False, True])
@pytest.mark.parametrize("run_max", [None, 450])
@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_id_index_against_a_dict(seed, dense, run_max, background, monkeypatch):
    """IdIndex (main array, overlay and run of the latest inserts, each with tombstones; merges)
    answers like a dict of live id -> slot through random inserts, removals, lookups, range queries
    and merges; ``dense``: cells hold slots 0..k-1 without a gap, as assign_ids hands them out (their
    lookups read no id); ``run_max``: a run small enough to fold into the overlay between merges;
    ``background``: the first cell table built ahead on a thread, and merges into main on the worker
    thread, each held there for a few steps (while the index answers from the old levels and logs
    its removals) before it may finish."""
    import threading
    from concurrent.futures import Future
    from codec import id_index
    from codec.id_index import IdIndex
    if run_max is not None:
        monkeypatch.setattr(id_index, "RUN_MAX", run_max)
    gate, started = threading.Event(), []
    if background:
        monkeypatch.setattr(id_index, "MERGE_MIN", 600)
        monkeypatch.setattr(id_index, "BACKGROUND_MIN", 0)
        compacted = id_index._compacted

        def held(*args):
            started.append(len(args[0]))
            assert gate.wait(30)
            return compacted(*args)
        monkeypatch.setattr(id_index, "_compacted", held)
    rng = np.random.default_rng(seed)
    sb = 4
    if dense:
        cells = np.unique(rng.integers(0, 1 << 16, 700).astype(np.uint64))
        runs = rng.integers(1, 9, len(cells))
        ids = np.repeat(cells << np.uint64(sb), runs) + (np.arange(runs.sum()) - np.repeat(np.cumsum(runs) - runs, runs)).astype(np.uint64)
        q_extra = ids + np.uint64(1)  # each run's next slot: absent where it ends the run
    else:
        ids = np.unique(rng.integers(0, 1 << 20, 3000).astype(np.uint64))
        q_extra = ids[:0]
    idx = IdIndex(ids.copy(), np.arange(len(ids)), sb)
    if background:  # the main array's cell table built ahead, on a thread, as after a keyframe
        idx.prepare()
        assert isinstance(idx._cells, Future)
    model = dict(zip(ids.tolist(), range(len(ids))))
    next_slot = len(ids)
    for step in range(60):
        live = np.array(sorted(model), np.uint64)
        gone = rng.choice(live, min(len(live), int(rng.integers(0, 300))), replace=False)
        idx.remove(np.sort(gone))
        for x in gone.tolist():
            del model[x]
        fresh = np.setdiff1d(np.unique(rng.integers(0, 1 << 20, 300).astype(np.uint64)),
                             np.array(sorted(model), np.uint64))
        idx.insert(fresh, np.arange(next_slot, next_slot + len(fresh)))
        model.update(zip(fresh.tolist(), range(next_slot, next_slot + len(fresh))))
        next_slot += len(fresh)
        if background:
            if idx._compaction is not None and step % 3 == 0:
                gate.set()                     # let the held merge finish; the next insert swaps it in
                idx._compaction.thread.join()
                gate.clear()
        elif step % 7 == 3:
            idx.compact()
        q = np.concatenate([rng.integers(0, 1 << 20, 500).astype(np.uint64), rng.choice(ids, 200), rng.choice(q_extra, min(200, len(q_extra)))])
        assert idx.lookup(q).tolist() == [model.get(x, -1) for x in q.tolist()]
        lo = np.sort(rng.integers(0, 1 << 20, 3).astype(np.uint64))
        hi = lo + np.uint64(5000)
        want = sorted(s for x, s in model.items() if any(a <= x <= b for a, b in zip(lo.tolist(), hi.tolist())))
        assert sorted(set(idx.in_ranges(lo, hi).tolist())) == want
    gate.set()
    got_ids, got_slots = idx.sorted_items()
    assert got_ids.tolist() == sorted(model) and got_slots.tolist() == [model[x] for x in sorted(model)]
    assert len(started) >= (3 if background else 0), started
