"""SceneState's slot storage: new Gaussians go to the tail while the arrays have room, then take the
slots that deletes freed, so a scene whose adds and deletes balance stops growing its arrays and
never stops for a bulk compaction; a scene that shrinks is compacted without losing capacity. The
decoder's state (fed the same frames) is the oracle."""
from __future__ import annotations

import numpy as np
import pytest

from codec import Decoder, Encoder
from codec.attributes import Attr

from conftest import make_profile, random_gaussians


def _stream(n: int, sh_degree: int = 1, max_gaussians: int = 0):
    rng = np.random.default_rng(7)
    g = random_gaussians(rng, n, sh_degree, specials=False)
    enc = Encoder(make_profile("compact", sh_degree, g.positions), max_gaussians=max_gaussians)
    dec = Decoder(enc.header_bytes())
    dec.decode_frame(enc.keyframe(g))
    return enc, dec, rng


def _live_ids(enc: Encoder) -> np.ndarray:
    return enc.state.sorted_codes()[0]


def _frame(enc, dec, rng, n_add, gone=None, moved=0):
    g = random_gaussians(rng, n_add, 1, specials=False)
    ops = {"add": (enc.assign_ids(g.positions), g), "delete": gone}
    if moved:
        ids = np.setdiff1d(rng.choice(_live_ids(enc), moved, replace=False), gone if gone is not None else [])
        ops["update"] = (ids, {Attr.POSITION: random_gaussians(rng, len(ids), 1, specials=False).positions})
    dec.decode_frame(enc.encode(**ops))


def test_balanced_adds_and_deletes_stop_growing():
    enc, dec, rng = _stream(3000)               # a keyframe's arrays are exactly full
    st = enc.state
    for k in range(120):
        _frame(enc, dec, rng, 120, rng.choice(_live_ids(enc), 120, replace=False), moved=200)
        if k == 0:
            assert st.slot_ids.shape[0] == 6000  # doubled once: twice the live Gaussians
        assert st.slot_ids.shape[0] == 6000 and st.high <= 6000
        assert st.high - st.holes == st.count == 3000
    assert st.high == 6000                      # the tail filled, then freed slots were taken
    assert len(np.unique(st.index.sorted_items()[1])) == st.count
    assert dec.state.equals(st) and dec.state.digest() == st.digest()


def test_the_tail_first_while_it_has_room():
    enc, dec, rng = _stream(500)
    st = enc.state
    _frame(enc, dec, rng, 10)                    # no room: doubled
    assert (st.high, st.holes, st.slot_ids.shape[0]) == (510, 0, 1024)
    gone = _live_ids(enc)[::10]
    _frame(enc, dec, rng, 20, gone)              # room at the tail: appended there, the holes kept
    assert (st.high, st.holes) == (530, len(gone))
    assert dec.state.equals(st) and dec.state.digest() == st.digest()


def test_at_the_budget_freed_slots_are_taken():
    enc, dec, rng = _stream(1000, max_gaussians=1500)
    st = enc.state
    _frame(enc, dec, rng, 400)
    assert st.slot_ids.shape[0] == 1500          # doubling would have made 2000
    for _ in range(5):
        _frame(enc, dec, rng, 150, rng.choice(_live_ids(enc), 150, replace=False))
        assert st.slot_ids.shape[0] == 1500 and st.high <= 1500 and st.count == 1400
    assert dec.state.equals(st) and dec.state.digest() == st.digest()


def test_a_shrinking_scene_is_compacted_and_keeps_its_capacity():
    enc, dec, rng = _stream(70_000, sh_degree=0)
    st = enc.state
    g = random_gaussians(rng, 10, 0, specials=False)
    dec.decode_frame(enc.encode(add=(enc.assign_ids(g.positions), g)))   # grown past the keyframe's size
    cap = st.slot_ids.shape[0]
    live = _live_ids(enc)
    dec.decode_frame(enc.encode(delete=live[rng.random(len(live)) < 0.97]))   # holes outnumber the live
    assert st.holes == 0 and st.high == st.count < 3000                    # compacted
    assert st.slot_ids.shape[0] == cap
    assert np.array_equal(st.slot_ids[:st.count], _live_ids(enc))          # in id order
    g = random_gaussians(rng, 50, 0, specials=False)
    dec.decode_frame(enc.encode(add=(enc.assign_ids(g.positions), g)))
    assert dec.state.equals(st) and dec.state.digest() == st.digest()


def test_reserved_room_is_filled_without_copying_the_arrays():
    """``reserve``: room for a state that fills up frame by frame (a progressive client's), within the
    budget; ADDs up to it write in place."""
    enc, dec, rng = _stream(500, max_gaussians=4000)
    st = enc.state
    st.reserve(10_000)                               # past the budget: the budget
    assert st.slot_ids.shape[0] == 4000
    arrays = [st.slot_ids, st.accs, *st.codes.values()]
    for _ in range(7):
        _frame(enc, dec, rng, 500)
    assert st.count == 4000 and all(a is b for a, b in zip(arrays, [st.slot_ids, st.accs, *st.codes.values()]))
    assert dec.state.equals(st) and dec.state.digest() == st.digest()


def test_a_progressive_clients_state_has_room_for_what_it_will_hold():
    """A served world's state has room for its budget from its creation, and the server's copy of a
    progressive client's state reserves room for the most it may hold, so neither copies its arrays
    on the world's thread mid-session."""
    pytest.importorskip("torch")
    from reference_generator.world import WorldConfig
    from reference_generator.worldhost import WorldCore
    from reference_generator.actions import Idle
    core = WorldCore(WorldConfig(target_live=3000, prefetch_margin=0), 0, "cpu")
    try:
        live = len(core.encoder.state)
        assert core.encoder.state.slot_ids.shape[0] == core.world.max_gaussians   # the world's own, from the start
        core.attach(1, 1 << 24, {"budget": None, "first_bytes": 8_000, "refine_bytes": 6_000})
        core.attach(2, 1 << 24, {"budget": live // 3, "first_bytes": 8_000, "refine_bytes": 6_000})
        core.take(1, wait=True), core.take(2, wait=True)
        held = {k: core.pendings[k].held.state for k in (1, 2)}
        cap = {k: s.slot_ids.shape[0] for k, s in held.items()}
        assert cap[1] >= min(core.encoder.header.max_gaussians, 2 * live) and cap[2] == live // 3
        for _ in range(40):
            core.step(Idle(), [], (1, 2))
        assert {k: s.slot_ids.shape[0] for k, s in held.items()} == cap
        assert len(held[1]) == len(core.encoder.state)       # refined to the world's state
        assert core.encoder.state.slot_ids.shape[0] == core.world.max_gaussians
    finally:
        core.close()


def test_a_large_keyframe_with_room_in_the_budget_grows_on_a_worker(monkeypatch):
    """A decoder's keyframe of a stream whose budget has room for more is copied into arrays with room
    (the doubling the first ADD would make) on a worker while the state waits for its next frame;
    the state swaps them in before it changes anything, so UPDATEs land in them and the next ADDs
    find the room without a copy. A copy of the state, and a keyframe that arrives meanwhile, do not
    take them; a stream that declares no budget (a file) grows only when it must, and an encoder
    (whose caller reserves room itself) grows nothing ahead."""
    from codec import state as state_module
    monkeypatch.setattr(state_module, "GROW_AHEAD_MIN", 256)
    enc, dec, rng = _stream(1000, max_gaussians=5000)
    st = dec.state
    assert st._growing is not None and st.slot_ids.shape[0] == 1000
    assert st.copy()._growing is None and enc.state._growing is None
    live = _live_ids(enc)
    moved = np.sort(rng.choice(live, 100, replace=False))
    pos = random_gaussians(rng, 100, 1, specials=False).positions
    dec.decode_frame(enc.encode(update=(moved, {Attr.POSITION: pos})))   # UPDATEs only: swapped in first
    assert st._growing is None and st.slot_ids.shape[0] == 2000
    arrays = [st.slot_ids, st.accs, *st.codes.values()]
    _frame(enc, dec, rng, 600)
    assert st.count == 1600 and all(a is b for a, b in zip(arrays, [st.slot_ids, st.accs, *st.codes.values()]))
    assert dec.state.equals(enc.state) and dec.state.digest() == enc.state.digest()
    dec.decode_frame(enc.keyframe())                                     # a resync keyframe: grows anew
    assert st._growing is not None and st.slot_ids.shape[0] == 1600
    _frame(enc, dec, rng, 100, rng.choice(_live_ids(enc), 50, replace=False), moved=30)
    assert st.slot_ids.shape[0] == 3200
    assert dec.state.equals(enc.state) and dec.state.digest() == enc.state.digest()
    _, file_dec, _ = _stream(1000)
    assert file_dec.state._growing is None


@pytest.mark.parametrize("spoil", ["none", "swap", "past_high", "negative", "short", "other_token"])
def test_update_slot_hints_are_taken_only_where_they_hold(spoil):
    """An encoder hands its UPDATE blocks' slots to apply (``Delta.slot_hint``), which takes them only
    if every one holds its block's id (``slots_hold``, compiled and as Python); otherwise it looks the
    ids up. Either way the frame and the state are those of a delta without hints."""
    import copy

    from codec.state import slots_hold

    enc, dec, rng = _stream(3000)
    ids = rng.choice(_live_ids(enc), 400, replace=False)
    moved = random_gaussians(rng, len(ids), 1, specials=False).positions
    d = enc.make_delta(update=(ids, {Attr.POSITION: moved}))
    token, hints = d.slot_hint
    hints = [h.copy() for h in hints]
    if spoil == "swap":
        hints[0][[0, -1]] = hints[0][[-1, 0]]
    elif spoil == "past_high":
        hints[0][-1] = enc.state.high
    elif spoil == "negative":
        hints[0][0] = -1
    elif spoil == "short":
        hints[0] = hints[0][:-1]
    elif spoil == "other_token":
        token = None
    holds = [bool(slots_hold(enc.state.slot_ids, enc.state.high, h, b.ids)) for h, b in zip(hints, d.updates)]
    as_python = [bool(slots_hold.py_func(enc.state.slot_ids, enc.state.high, h, b.ids)) for h, b in zip(hints, d.updates)]
    assert holds == as_python and all(holds) == (spoil in ("none", "other_token"))
    plain = copy.deepcopy(enc)
    d.slot_hint = (token, hints)
    frame = enc.encode_delta(d)
    d.slot_hint = None
    assert plain.encode_delta(d) == frame
    dec.decode_frame(frame)
    assert dec.state.digest() == enc.state.digest() == plain.state.digest()
