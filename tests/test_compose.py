"""compose(d1, d2): apply(apply(s, d1), d2) == apply(s, compose(d1, d2)) (SPEC.md 8).

States and deltas are generated in code space on a tiny id space (a few
hundred ids), so adds, updates, deletes by id/range/cell and re-adds of the
same id collide often. Every delta carries the digest of the state it leads
to, so applying a composed delta also checks the digest it inherits.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codec import Delta, ErrorCode, GsdError, Grid, Profile, SceneState, compose
from codec.attributes import ATTRS, full_mask
from codec.delta import group_updates
from codec.wire import FrameEncoder, decode_frame

from conftest import PROFILE_NAMES, SH_DEGREES, random_codes, random_palette

U64 = np.uint64


def tiny_profile(name: str, degree: int, cell_bits: int = 2, slot_bits: int = 3) -> Profile:
    return Profile.preset(name, degree, Grid((-4.0, -4.0, -4.0), 2.0, cell_bits, slot_bits))


def initial_state(rng, profile: Profile, n: int) -> SceneState:
    """A state at seq 1 holding n random Gaussians with random valid codes."""
    s = SceneState(profile)
    d = Delta.empty_like(profile, seq=1, base_seq=0, keyframe=True)
    d.add_ids = np.sort(rng.choice(profile.grid.id_limit, n, replace=False).astype(U64))
    d.add = random_codes(rng, profile, n)
    d.palette = random_palette(rng, profile, 16)
    s.apply(d)
    return s


def gen_delta(rng, profile: Profile, state: SceneState, keyframe: bool = False, digest: bool = True,
              p: dict | None = None) -> Delta:
    """A random delta valid on ``state`` (seq = state.seq + 1), mixing every op kind."""
    p = {"del": 0.2, "upd": 0.3, "add": 0.25, "readd": 0.5, "ranges": 0.5, "cells": 0.5, **(p or {})}
    grid = profile.grid
    limit = grid.id_limit
    d = Delta.empty_like(profile, seq=state.seq + 1, base_seq=state.seq, keyframe=keyframe)
    live = np.zeros(0, U64) if keyframe else state.ids()
    alive = np.ones(len(live), bool)
    # deletes by id
    if len(live):
        pick = rng.random(len(live)) < p["del"]
        d.delete_ids = live[pick]
        alive &= ~pick
    # ranges: some between live ids, some anywhere
    if rng.random() < p["ranges"]:
        r = []
        for _ in range(int(rng.integers(1, 3))):
            if len(live) and rng.random() < 0.6:
                a, b = sorted(rng.choice(live, 2))
                b = min(int(b), int(a) + int(rng.integers(0, 12)))
            else:
                a = int(rng.integers(0, limit)); b = min(limit - 1, a + int(rng.integers(0, 20)))
            r.append((int(a), int(b)))
        d.delete_ranges = np.array(r, U64).reshape(-1, 2)
        for a, b in r:
            alive &= ~((live >= U64(a)) & (live <= U64(b)))
    # cells at a random level
    if rng.random() < p["cells"]:
        level = int(rng.integers(0, grid.cell_bits + 1))
        shift = grid.slot_bits + 3 * level
        ncell = 1 << (3 * (grid.cell_bits - level))
        cells = np.unique(rng.integers(0, ncell, int(rng.integers(1, 3)))).astype(U64)
        d.delete_cells = {level: cells}
        alive &= ~np.isin(live >> U64(shift), cells)
    remaining = live[alive]
    removed = set(int(i) for i in live[~alive])
    # updates of surviving ids, random masks, residuals to random valid codes
    if len(remaining):
        ui = remaining[rng.random(len(remaining)) < p["upd"]]
        if len(ui):
            fmask = full_mask(profile.sh_degree)
            masks = rng.integers(1, fmask + 1, len(ui)).astype(np.uint8) & np.uint8(fmask)
            masks[masks == 0] = 1
            old = state.codes_of(ui)
            new = random_codes(rng, profile, len(ui))
            res = {a: np.where(((masks & np.uint8(a.bit)) != 0)[None, :], new[a] - old[a], 0).astype(profile.dtype(a))
                   for a in ATTRS}
            d.updates = group_updates(ui, masks, res)
    # adds: re-adds of removed ids (replace) and fresh ids not live
    readd = [i for i in removed if rng.random() < p["readd"]]
    fresh = rng.integers(0, limit, int(rng.poisson(p["add"] * 20)))
    live_after = set(int(i) for i in remaining)
    add = sorted(set(readd) | {int(i) for i in fresh if int(i) not in live_after})
    if add:
        d.add_ids = np.array(add, U64)
        d.add = random_codes(rng, profile, len(add))
    if profile.palette and (keyframe or rng.random() < 0.5):  # set palette entries (SPEC.md 5.9)
        d.palette = random_palette(rng, profile, int(rng.integers(1, 12)))
    if digest:
        t = state.copy()
        t.apply(d)
        d.digest = t.digest()
    return d


def applied(state: SceneState, *deltas: Delta) -> SceneState:
    s = state.copy()
    for d in deltas:
        s.apply(d)
    return s


def assert_same(a: SceneState, b: SceneState) -> None:
    assert a.equals(b)
    assert a.digest() == b.digest()
    assert a.seq == b.seq


def roundtrip_delta(profile: Profile, d: Delta) -> Delta:
    frame = FrameEncoder(profile).encode(d)
    out, used = decode_frame(frame, profile)
    assert used == len(frame)
    return out


def assert_serializes(profile: Profile, d: Delta) -> None:
    out = roundtrip_delta(profile, d)
    # an encoder writes only non-empty cell lists; compare on that
    d_cells = {k: v for k, v in d.delete_cells.items() if len(v)}
    saved, d.delete_cells = d.delete_cells, d_cells
    try:
        assert out.equals(d), "compose result changed through FrameEncoder -> decode_frame"
    finally:
        d.delete_cells = saved


def interactions(d1: Delta, d2: Delta, profile: Profile) -> set[str]:
    """Which composition cases a pair exercises (to show the generator is not vacuous)."""
    a1, u1, x1 = set(map(int, d1.add_ids)), set(map(int, d1.update_ids)), set(map(int, d1.delete_ids))
    a2, u2, x2 = set(map(int, d2.add_ids)), set(map(int, d2.update_ids)), set(map(int, d2.delete_ids))
    grid = profile.grid

    def covered(ids, d):
        out = set()
        for i in ids:
            if any(f <= i <= l for f, l in d.delete_ranges.tolist()):
                out.add(i)
            for lv, cells in d.delete_cells.items():
                if (i >> (grid.slot_bits + 3 * lv)) in set(map(int, cells)):
                    out.add(i)
        return out

    cases = set()
    if a1 & u2: cases.add("add+update")
    if a1 & x2: cases.add("add+delete_id")
    if covered(a1, d2): cases.add("add+delete_range_or_cell")
    if u1 & u2: cases.add("update+update")
    if u1 & (x2 | covered(u1, d2)): cases.add("update+delete")
    if x1 & a2: cases.add("delete+add")
    if x1 & set(map(int, d1.add_ids)): cases.add("replace_in_d1")
    if (x2 | covered(a2, d2)) & a2: cases.add("replace_in_d2")
    if a1 & a2: cases.add("add+delete+readd")
    return cases


ALL_CASES = {"add+update", "add+delete_id", "add+delete_range_or_cell", "update+update", "update+delete",
             "delete+add", "replace_in_d1", "replace_in_d2", "add+delete+readd"}


@settings(max_examples=150)
@given(name=st.sampled_from(PROFILE_NAMES), degree=st.sampled_from(SH_DEGREES), seed=st.integers(0, 2**32 - 1),
       n=st.integers(0, 120), k1=st.booleans(), k2=st.booleans(), dig=st.booleans())
def test_compose_pair(name, degree, seed, n, k1, k2, dig):
    rng = np.random.default_rng(seed)
    profile = tiny_profile(name, degree)
    s = initial_state(rng, profile, n)
    d1 = gen_delta(rng, profile, s, keyframe=k1, digest=dig)
    s1 = applied(s, d1)
    d2 = gen_delta(rng, profile, s1, keyframe=k2, digest=dig)
    left = applied(s1, d2)
    c = compose(d1, d2, profile)
    assert c.seq == d2.seq and c.keyframe == (d1.keyframe or d2.keyframe)
    if not d2.keyframe:
        assert c.base_seq == d1.base_seq
    assert_same(applied(s, c), left)
    assert_serializes(profile, c)
    assert_same(applied(s, roundtrip_delta(profile, c)), left)


@settings(max_examples=60)
@given(name=st.sampled_from(PROFILE_NAMES), degree=st.sampled_from(SH_DEGREES), seed=st.integers(0, 2**32 - 1),
       n=st.integers(0, 100), length=st.integers(3, 5), keys=st.lists(st.booleans(), min_size=5, max_size=5))
def test_compose_chain(name, degree, seed, n, length, keys):
    """Chains of 3-5 deltas: a left fold and a right fold of compose both equal sequential apply."""
    rng = np.random.default_rng(seed)
    profile = tiny_profile(name, degree)
    s = initial_state(rng, profile, n)
    ds, t = [], s
    for j in range(length):
        d = gen_delta(rng, profile, t, keyframe=keys[j] and rng.random() < 0.5)
        ds.append(d)
        t = applied(t, d)
    left = ds[0]
    for d in ds[1:]:
        left = compose(left, d, profile)
    right = ds[-1]
    for d in reversed(ds[:-1]):
        right = compose(d, right, profile)
    assert_same(applied(s, left), t)
    assert_same(applied(s, right), t)
    assert_serializes(profile, left)
    assert_same(applied(s, roundtrip_delta(profile, left)), t)


def test_generator_covers_every_case_and_property_holds():
    """Over a fixed batch the generator hits every pair case; compose is checked on each pair."""
    seen = set()
    for seed in range(120):
        rng = np.random.default_rng(seed)
        profile = tiny_profile(PROFILE_NAMES[seed % 3], seed % 4)
        s = initial_state(rng, profile, int(rng.integers(20, 120)))
        d1 = gen_delta(rng, profile, s)
        s1 = applied(s, d1)
        d2 = gen_delta(rng, profile, s1)
        seen |= interactions(d1, d2, profile)
        assert_same(applied(s, compose(d1, d2, profile)), applied(s1, d2))
    assert seen == ALL_CASES, ALL_CASES - seen


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_keyframe_d1_folds_updates_and_drops_deleted_adds(name):
    """d1 keyframe + d2 deletes/updates: the result is a keyframe holding the final state."""
    rng = np.random.default_rng(3)
    profile = tiny_profile(name, 2)
    s = initial_state(rng, profile, 40)
    d1 = gen_delta(rng, profile, s, keyframe=True, p={"add": 2.0})
    s1 = applied(s, d1)
    d2 = gen_delta(rng, profile, s1, p={"del": 0.3, "upd": 0.5})
    c = compose(d1, d2, profile)
    assert c.keyframe
    final = applied(s1, d2)
    np.testing.assert_array_equal(np.sort(c.add_ids), final.ids())
    assert_same(applied(s, c), final)
    assert_same(applied(SceneState(profile), c), final)  # a keyframe does not depend on s


def test_compose_rejects_unlinked_deltas():
    rng = np.random.default_rng(0)
    profile = tiny_profile("compact", 1)
    s = initial_state(rng, profile, 30)
    d1 = gen_delta(rng, profile, s)
    d2 = gen_delta(rng, profile, applied(s, d1))
    d2.base_seq += 1
    d2.seq += 1
    with pytest.raises(GsdError) as e:
        compose(d1, d2, profile)
    assert e.value.code == ErrorCode.SEQUENCE_GAP


def test_compose_does_not_mutate_inputs():
    rng = np.random.default_rng(9)
    profile = tiny_profile("high", 3)
    s = initial_state(rng, profile, 80)
    d1 = gen_delta(rng, profile, s)
    d2 = gen_delta(rng, profile, applied(s, d1))
    b1, b2 = roundtrip_delta(profile, d1), roundtrip_delta(profile, d2)
    compose(d1, d2, profile)
    assert roundtrip_delta(profile, d1).equals(b1) and roundtrip_delta(profile, d2).equals(b2)
