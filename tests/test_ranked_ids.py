"""Ranked ids (SPEC.md 6.1, format 1.2): the order index, the encoder's ranked blocks and the state's
resolution of them, all-or-nothing."""
from __future__ import annotations

import numpy as np
import pytest

from codec import Decoder, Encoder, ErrorCode, GsdError, wire
from codec.attributes import Attr
from codec.compose import compose
from codec.delta import Delta, RankedBlock, UpdateBlock
from codec.order_index import BLOCK, OrderIndex
from codec.synthetic import synthetic_scene
from conformance import craft
from conftest import make_profile

U64 = np.uint64


def test_order_index_matches_a_sorted_array():
    rng = np.random.default_rng(3)
    for trial in range(12):
        live = np.unique(rng.integers(0, 1 << 20, int(rng.integers(0, 3000))).astype(U64))
        o = OrderIndex(live)
        for step in range(30):
            k = int(rng.integers(0, min(len(live), 600) + 1))
            gone = np.sort(rng.choice(live, k, replace=False)) if k else np.zeros(0, U64)
            new = np.unique(rng.integers(0, 1 << 20, int(rng.integers(0, 1500))).astype(U64))
            if step % 5 == 2:  # a dense run into one block: it splits into several
                new = np.arange(7000, 7000 + int(rng.integers(1, 4 * BLOCK)), dtype=U64)
            rest = np.setdiff1d(live, gone)
            new = np.setdiff1d(new, rest)
            o.update(gone, new)
            live = np.union1d(rest, new).astype(U64)
            assert len(o) == len(live) and np.array_equal(o.ids(), live), (trial, step)
            if len(live):
                r = np.sort(rng.choice(len(live), min(len(live), 300), replace=False))
                assert np.array_equal(o.select(r), live[r])
                assert np.array_equal(o.rank(live[r]), r)
    empty = OrderIndex()
    empty.update(np.zeros(0, U64), np.array([5, 9], U64))
    assert np.array_equal(empty.select([0, 1]), [5, 9])
    empty.update(np.array([5, 9], U64), np.zeros(0, U64))
    assert len(empty) == 0 and len(empty.ids()) == 0


def _scene(n=3000, degree=1, seed=0):
    g = synthetic_scene(n, degree, seed)
    profile = make_profile("compact", degree, g.positions)
    return g, profile


def _session(enc: Encoder, g, rng, frames=12):
    """Keyframe, then frames that move a spatial cluster, recolour some, delete some and add some."""
    ids = enc.assign_ids(g.positions)
    out = [enc.keyframe(g, ids)]
    for i in range(frames):
        live = enc.state.ids()
        at = live[np.argsort(np.abs(live.astype(np.float64) - float(rng.choice(live))))[:400]]
        moved = np.sort(at[:300])
        gone = np.sort(at[300:340])
        vals = enc.state.floats(moved, enc.state.codes_of(moved))
        pos = vals[Attr.POSITION] + rng.normal(0, 0.05, vals[Attr.POSITION].shape).astype(np.float32)
        born = g.take(rng.choice(len(g), 30, replace=False))
        born.positions[:] += 0.01
        out.append(enc.encode(update=(moved, {Attr.POSITION: pos}), delete=gone,
                              add=(enc.assign_ids(born.positions), born)))
    return out


def test_encoder_ranks_update_and_delete_ids_and_the_stream_decodes_to_the_same_state():
    g, profile = _scene()
    ranked, plain = Encoder(profile, ranked_ids=True), Encoder(profile)
    fr = _session(ranked, g, np.random.default_rng(1))
    fp = _session(plain, g, np.random.default_rng(1))
    assert ranked.state.digest() == plain.state.digest()
    kinds_r = set().union(*(craft.block_kinds(f) for f in fr[1:]))
    kinds_p = set().union(*(craft.block_kinds(f) for f in fp[1:]))
    assert {wire.UPDATE_RANKED, wire.DELETE_RANKED} <= kinds_r and not {wire.UPDATE, wire.DELETE_IDS} & kinds_r
    assert {wire.UPDATE, wire.DELETE_IDS} <= kinds_p and not {wire.UPDATE_RANKED, wire.DELETE_RANKED} & kinds_p
    assert fr[0] == fp[0]                               # a keyframe has nothing to rank
    for frames, enc in ((fr, ranked), (fp, plain)):
        dec = Decoder(enc.header_bytes())
        for f in frames:
            dec.decode_frame(f)
            if dec.state._order is not None:        # once built, it follows every frame
                assert np.array_equal(dec.state.order().ids(), dec.state.ids())
        assert dec.state.digest() == enc.state.digest() and dec.state.equals(enc.state)
    assert sum(map(len, fr[1:])) < sum(map(len, fp[1:]))


def test_the_order_index_follows_keyframes_ranges_cells_and_replacements():
    g, profile = _scene(2000)
    enc = Encoder(profile, ranked_ids=True)
    dec = Decoder(enc.header_bytes())
    rng = np.random.default_rng(5)
    ids = enc.assign_ids(g.positions)
    dec.decode_frame(enc.keyframe(g, ids))
    for i in range(10):
        live = enc.state.ids()
        up = np.sort(rng.choice(live, 50, replace=False))
        vals = enc.state.floats(up, enc.state.codes_of(up))
        kw = {"update": (up, {Attr.SH_DC: vals[Attr.SH_DC] + 0.1})}
        if i % 3 == 1:
            rest = np.setdiff1d(live, up)
            kw["delete_ranges"] = [[int(rest[10]), int(rest[20])]]
            kw["delete_cells"] = {0: [int(rest[-1]) >> profile.grid.slot_bits]}
        if i % 3 == 2:  # delete and add back the same ids (replace)
            again = np.setdiff1d(live, up)[:5]
            kw["delete"] = again
            kw["add"] = (again, g.take(np.arange(5)))
        if i == 6:
            dec.decode_frame(enc.keyframe())           # a resync keyframe: the order starts again
            assert dec.state._order is None
        dec.decode_frame(enc.encode(**kw))
        assert np.array_equal(dec.state.order().ids(), dec.state.ids())
        assert dec.state.digest() == enc.state.digest()


def _ranked_delta(state, *blocks, keyframe=False) -> Delta:
    d = Delta.empty_like(state.profile, seq=state.seq + 1, base_seq=state.seq, keyframe=keyframe)
    d.ranked = list(blocks)
    return d


def _update(state, n):
    p = state.profile
    return UpdateBlock(Attr.SH_DC.bit, np.zeros(0, U64), {Attr.SH_DC: np.ones((p.comps(Attr.SH_DC), n), p.dtype(Attr.SH_DC))})


@pytest.mark.parametrize("case, code", [
    ("past_the_end", ErrorCode.ID_MISSING),
    ("descending", ErrorCode.BAD_VALUE),
    ("repeated", ErrorCode.DUPLICATE_ID),
    ("in_a_keyframe", ErrorCode.ID_MISSING),
    ("ranked_and_plain_delete", ErrorCode.DUPLICATE_ID),
    ("update_of_a_deleted_rank", ErrorCode.ID_MISSING),
])
def test_bad_ranks_are_refused_and_leave_the_state_as_it_was(case, code):
    g, profile = _scene(500)
    enc = Encoder(profile)
    dec = Decoder(enc.header_bytes())
    dec.decode_frame(enc.keyframe(g))
    st = dec.state
    st.order()                                          # built: a failed frame must leave it too
    n, live = len(st), st.ids()
    r = lambda *x: np.array(x, np.uint32)  # noqa: E731
    d = {"past_the_end": lambda: _ranked_delta(st, RankedBlock(r(0, n))),
         "descending": lambda: _ranked_delta(st, RankedBlock(r(7, 3))),
         "repeated": lambda: _ranked_delta(st, RankedBlock(r(3, 3), _update(st, 2))),
         "in_a_keyframe": lambda: _ranked_delta(st, RankedBlock(r(0)), keyframe=True),
         "ranked_and_plain_delete": lambda: _ranked_delta(st, RankedBlock(r(4))),
         "update_of_a_deleted_rank": lambda: _ranked_delta(st, RankedBlock(r(2)), RankedBlock(r(2, 9), _update(st, 2))),
         }[case]()
    if case == "ranked_and_plain_delete":
        d.delete_ids = live[[4]]
    if case == "in_a_keyframe":
        d.seq = st.seq + 1
    before, digest, seq = st.copy(), st.digest(), st.seq
    with pytest.raises(GsdError) as e:
        st.apply(d)
    assert e.value.code == code, e.value
    assert st.equals(before) and st.digest() == digest and st.seq == seq
    assert np.array_equal(st.order().ids(), st.ids())


def test_ranks_resolve_against_the_state_before_the_frame():
    g, profile = _scene(500)
    enc = Encoder(profile)
    dec = Decoder(enc.header_bytes())
    dec.decode_frame(enc.keyframe(g))
    st = dec.state
    live = st.ids()
    # rank 1 names live[1] although the frame deletes live[0] (a rank after the deletes would name live[2])
    d = _ranked_delta(st, RankedBlock(np.array([1, 5], np.uint32), _update(st, 2)))
    d.delete_ids = live[[0]]
    st.apply(d)
    assert np.array_equal(d.updates[0].ids, live[[1, 5]]) and not d.ranked
    assert len(st) == len(live) - 1


def test_unresolved_ranked_deltas_are_not_composed_or_written():
    g, profile = _scene(200)
    enc = Encoder(profile)
    enc.keyframe(g)
    d = _ranked_delta(enc.state, RankedBlock(np.array([0], np.uint32)))
    with pytest.raises(ValueError, match="ranked"):
        compose(Delta(seq=enc.state.seq, base_seq=0), d, profile)
    with pytest.raises(ValueError, match="ranked"):
        enc.frames.encode(d)
