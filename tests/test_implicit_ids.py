"""ADD_IMPLICIT (SPEC.md 6.1): ids that follow from placement codes, against the spec's pseudo-code
as the conformance model (conformance/refmodel.py) writes it out in plain Python; the encoder's id
assignment that makes them possible (3.3), and its fallback to ADD where ids cannot be implicit."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codec import Decoder, Encoder, Grid, GsdError
from codec.attributes import Attr
from codec.spatial import implicit_ids, placements
from codec.wire import ADD, ADD_IMPLICIT, IMPLICIT_SPLIT_MIN
from conformance import craft, refmodel
from conformance.craft import block_kinds
from conftest import make_profile, random_gaussians


def ref_implicit_ids(q: list[int], B: int, S: int, pb: int):
    """SPEC.md 6.1 implicit_ids as the conformance model reads it (plain Python, not the codec)."""
    L = refmodel.Layout(0, craft.QuantFields(position_bits=pb), B, S)
    return refmodel.implicit_ids(L, q), [refmodel.placement_codes(L, v) for v in q]


def test_the_spec_example():
    grid = Grid(cell_bits=2, slot_bits=2)
    ids, codes = implicit_ids(np.array([8, 9, 9, 64], np.uint64), grid, 1, np.int32)
    assert ids.tolist() == [4, 5, 6, 32]
    assert codes.T.tolist() == [[0, 0, 0], [1, 0, 0], [1, 0, 0], [0, 0, 0]]
    q, ok, n = placements(ids, codes, grid, 1)
    assert q.tolist() == [8, 9, 9, 64] and ok.all() and n == 4


@settings(max_examples=80, deadline=None)
@given(B=st.integers(1, 8), S=st.integers(0, 6), pb=st.integers(1, 13), data=st.data())
def test_placements_give_the_spec_ids_and_back(B, S, pb, data):
    top = 1 << (3 * (B + pb))
    # a few cells, each with a handful of Gaussians (sometimes more than its slots)
    cells = data.draw(st.lists(st.integers(0, (1 << 3 * B) - 1), min_size=1, max_size=6, unique=True))
    q = []
    for c in sorted(cells):
        k = data.draw(st.integers(1, (1 << S) + 1))
        q += sorted((c << 3 * pb) | data.draw(st.integers(0, (1 << 3 * pb) - 1)) for _ in range(k))
    if data.draw(st.booleans()):  # a mutation: out of order, or past the grid
        i = data.draw(st.integers(0, len(q) - 1))
        q[i] = data.draw(st.sampled_from([top, top + 5, max(q[i] - 1, 0) if i + 1 < len(q) else q[i]]))
        if i + 1 < len(q) and q[i] < q[i + 1]:
            q[i], q[i + 1] = q[i + 1], q[i]
    grid = Grid(cell_bits=B, slot_bits=S)
    try:
        want = ref_implicit_ids(q, B, S, pb)
    except refmodel.RefError:
        with pytest.raises(GsdError) as e:
            implicit_ids(np.array(q, np.uint64), grid, pb, np.int32)
        assert e.value.code.name == "BAD_VALUE"
        return
    ids, codes = implicit_ids(np.array(q, np.uint64), grid, pb, np.int32)
    assert ids.tolist() == want[0] and [tuple(c) for c in codes.T.tolist()] == want[1]
    assert (np.diff(ids.astype(np.int64)) > 0).all() if len(ids) > 1 else True
    back, ok, n = placements(ids, codes, grid, pb)
    assert back.tolist() == q and ok.all() and n == len(q)


def test_ids_that_are_not_ranks_or_codes_outside_the_cell_stay_explicit():
    grid = Grid(cell_bits=2, slot_bits=2)
    ids, codes = implicit_ids(np.array([8, 9, 9, 64], np.uint64), grid, 1, np.int32)
    def cells_ok(ids, codes):
        return placements(ids, codes, grid, 1)[1].tolist()

    assert cells_ok(ids + np.uint64(1), codes) == [False] * 4                # slot 1 first: not a rank
    swapped = codes.copy()
    swapped[:, [0, 1]] = swapped[:, [1, 0]]
    assert cells_ok(ids, swapped) == [False, False, False, True]            # cell 1's slots not in placement order
    far = codes.copy()
    far[0, 0] = 2                                                           # code 2^pb: outside its cell
    assert cells_ok(ids, far) == [False, False, False, True]
    far[0, 0] = -1
    assert cells_ok(ids, far) == [False, False, False, True]
    far[0, 3] = 5
    assert cells_ok(ids, far) == [False] * 4


@pytest.mark.parametrize("name", ["compact", "small"])
def test_a_scene_keyframe_needs_no_ids_and_decodes_to_the_same_state(name):
    rng = np.random.default_rng(3)
    g = random_gaussians(rng, 3000, 1)
    p = make_profile(name, 1, g.positions, cell_bits=8, slot_bits=12)
    assert p.implicit_ids
    enc = Encoder(p)
    kf = enc.keyframe(g)
    assert block_kinds(kf)[-1] == ADD_IMPLICIT and ADD not in block_kinds(kf)
    dec = Decoder(enc.header_bytes())
    dec.decode_frame(kf)
    assert dec.state.digest() == enc.state.digest()
    ids, codes = dec.state.sorted_codes()
    want_ids, want = enc.state.sorted_codes()
    np.testing.assert_array_equal(ids, want_ids)
    for a in want:
        np.testing.assert_array_equal(codes[a], want[a])
    # Gaussians added later into cells that hold live ids: their slots are not ranks, so an ADD
    new = random_gaussians(rng, 50, 1)
    d = enc.encode(add=(enc.assign_ids(g.positions[:50] + 1e-3), new))
    assert ADD in block_kinds(d)
    dec.decode_frame(d)
    assert dec.state.digest() == enc.state.digest()


def test_a_moved_scene_keyframe_sends_the_moved_gaussians_cells_with_ids():
    """Position codes leave their birth cell as Gaussians move: the cells of moved Gaussians go in an
    ADD block with their ids, the others stay implicit."""
    rng = np.random.default_rng(4)
    n = IMPLICIT_SPLIT_MIN + 2000
    g = random_gaussians(rng, n, 0)
    p = make_profile("compact", 0, g.positions, cell_bits=8, slot_bits=12)
    enc = Encoder(p)
    ids = enc.assign_ids(g.positions)
    enc.encode(add=(ids, g), keyframe=True)
    moved = g.positions[:100] + p.grid.cell_size * 2
    enc.encode(update=(ids[:100], {Attr.POSITION: moved}))
    kf = enc.keyframe()
    meta, _ = craft.split_frame(kf)
    counts = {b.kind: b.count for b in craft.parse_frame_meta(meta).blocks}
    moved_cells = np.unique(ids[:100] >> np.uint64(p.grid.slot_bits))
    assert counts[ADD] == np.isin(ids >> np.uint64(p.grid.slot_bits), moved_cells).sum()
    assert counts[ADD_IMPLICIT] == n - counts[ADD]
    dec = Decoder(enc.header_bytes())
    dec.decode_frame(kf)
    assert dec.state.digest() == enc.state.digest()
    # a delta whose few implicit ADDs (50 in empty cells, 50 beside live Gaussians) are not worth a block
    fresh = g.take(np.arange(100, 200))
    fresh.positions[:50] = np.asarray(p.grid.origin) + p.grid.cell_size * (np.arange(50)[:, None] + 0.5)
    f = enc.encode(add=(enc.assign_ids(fresh.positions), fresh))
    assert block_kinds(f) == [ADD]
    dec.decode_frame(f)
    assert dec.state.digest() == enc.state.digest()


def test_no_implicit_ids_where_placements_need_more_than_64_bits():
    rng = np.random.default_rng(5)
    g = random_gaussians(rng, 500, 0)
    p = make_profile("high", 0, g.positions, cell_bits=10, slot_bits=12)   # 3 (10 + 12) > 64
    assert not p.implicit_ids
    assert block_kinds(Encoder(p).keyframe(g)) == [ADD]
