"""A progressive client's frames (SPEC.md 11.9) built against a world encoder driven by hand:
stand-in ids the world takes, DELETE_CELLS that cover stand-ins, cubes emptied before refinement,
and a long random session of budgets and eyes on the reference world."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from codec import Decoder, Encoder, Grid, Profile
from codec.synthetic import synthetic_scene
from reference_generator.actions import Idle, Move, Turn
from reference_generator.progressive_join import ProgressivePending, touched_ids
from reference_generator.worldhost import WorldCore

from test_server import SMALL

U64 = np.uint64


class World:
    """An encoder standing for the world, one progressive client on it and the client's decoder."""

    def __init__(self, n=6000, budget=None, refine_bytes=1500, profile="compact"):
        g = synthetic_scene(n, 1, 3, 20.0)
        self.enc = Encoder(Profile.preset(profile, 1, Grid.fit(g.positions, cell_bits=8)), max_gaussians=100_000)
        self.ids = self.enc.assign_ids(g.positions)
        self.enc.encode(add=(self.ids, g), keyframe=True)
        self.p = ProgressivePending(self.enc, 1 << 24, budget, first_bytes=6000, refine_bytes=refine_bytes)
        self.dec = Decoder(self.enc.header_bytes())
        self.frames = [self.take()]

    def step(self, **ops):
        d = self.enc.make_delta(**ops)
        touched = touched_ids(self.enc.state, d)
        data = self.enc.encode_delta(d)
        self.p.push(d, data, [], None, touched)
        return self.take()

    def take(self):
        f = self.p.take(None)
        self.dec.decode_frame(f.data)                      # checks the frame's digest against its state
        assert str(self.dec.state.digest()) == f.digest
        return f

    def coarse(self) -> np.ndarray:
        p = self.p
        return np.flatnonzero(p.c_has & ~p.c_fine & (p.c_count > 0))

    def converge(self, limit=500):
        for _ in range(limit):
            if self.p.settled and not len(self.coarse()):
                break
            self.step()
        assert self.dec.state.digest() == self.enc.state.digest()
        assert self.dec.state.equals(self.enc.state)


def test_a_world_gaussian_that_takes_a_stand_ins_id_moves_the_stand_in():
    w = World()
    assert w.frames[0].keyframe and len(w.coarse()) > 20
    c = w.coarse()[len(w.coarse()) // 2]
    x = w.p.c_si[c]
    assert w.enc.state.slots_of(np.array([x], U64))[0] < 0      # a fresh id: not the world's
    # a Gaussian of the world with that id, placed in a fine cube: the client must get it
    fine = np.flatnonzero(w.p.c_fine & (w.p.c_count > 0))
    member = w.p.m_ids[w.p.m_cube == fine[0]][0]
    w_ids, g = w.enc.state.to_gaussians()
    one = g.take(np.flatnonzero(w_ids == member))
    coarse_before = len(w.coarse())
    w.step(add=(np.array([x], U64), one))
    assert w.p.m_cube[np.searchsorted(w.p.m_ids, x)] == fine[0]
    held = w.dec.state.codes_of(np.array([x], U64))
    world = w.enc.state.codes_of(np.array([x], U64))
    assert all(np.array_equal(held[a], world[a]) for a in held)        # x is the world's Gaussian now
    if not w.p.c_fine[c]:                                               # and cube c's stand-in moved
        assert w.p.c_has[c] and w.p.c_si[c] != x
        assert w.dec.state.slots_of(np.array([w.p.c_si[c]], U64))[0] >= 0
    assert x not in set(w.p.c_si[w.p.c_has].tolist())
    assert len(w.coarse()) >= coarse_before - 3                # refinement goes on at its pace
    w.converge()


def test_delete_cells_never_take_a_stand_in_and_an_emptied_cube_loses_its_stand_in():
    w = World()
    p = w.p
    coarse = w.coarse()
    c_empty, c_part = coarse[0], coarse[len(coarse) // 2]
    gone = p.m_ids[p.m_cube == c_empty]
    part = p.m_ids[p.m_cube == c_part]
    si_empty, si_part = p.c_si[c_empty], p.c_si[c_part]
    # DELETE_CELLS (level 0) of the cells of the stand-in of c_part and of the first half of its Gaussians
    grid = w.enc.profile.grid
    cells = np.unique(np.r_[part[: len(part) // 2] >> U64(grid.slot_bits), [si_part >> U64(grid.slot_bits)]])
    world_in_cells = w.enc.state.ids()[np.isin(w.enc.state.ids() >> U64(grid.slot_bits), cells)]
    w.step(delete=gone, delete_cells={0: cells})
    held = set(w.dec.state.ids().tolist())
    assert int(si_empty) not in held and not p.c_has[c_empty]          # all its Gaussians went: so did it
    remaining = set(part.tolist()) - set(world_in_cells.tolist())
    if remaining and not p.c_fine[c_part]:                             # the cube keeps a stand-in: the old one
        assert p.c_has[c_part] and int(p.c_si[c_part]) in held          # (the cells did not take it), or one
        stale = abs(p.c_count[c_part] - len(part)) > 0.25 * max(len(part), 4)   # remade for a cube much changed
        assert stale or p.c_si[c_part] == si_part
    assert not (set(world_in_cells.tolist()) & held - set(p.c_si[p.c_has].tolist()))
    w.converge()


def test_changes_to_coarse_cubes_are_folded_into_their_refinement():
    w = World()
    p = w.p
    c = w.coarse()[-1]
    members = p.m_ids[p.m_cube == c]
    _, g = w.enc.state.to_gaussians()
    order = np.searchsorted(w.enc.state.ids(), members)
    moved = g.take(order)
    moved.positions = moved.positions + np.float32(0.01)
    f = w.step(update=(members, moved))
    assert not p.c_fine[c] or len(f.data) > 0
    held = set(w.dec.state.ids().tolist())
    if not p.c_fine[c]:
        assert not (set(members.tolist()) & held)                       # not sent one by one
    w.converge()
    a = w.dec.state.codes_of(members)
    b = w.enc.state.codes_of(members)
    assert all(np.array_equal(a[k], b[k]) for k in a)                  # the refinement carried the new values


@pytest.mark.parametrize("profile", ["lossless", "high"])
def test_other_profiles_refine_to_the_worlds_state_within_a_budget_then_without(profile):
    w = World(n=3000, budget=1000, profile=profile)
    assert len(w.dec.state) <= 1000 and len(w.coarse())
    for _ in range(30):
        w.step()
        assert len(w.dec.state) <= 1000
    w.p.set_detail(budget=10 ** 6)
    w.converge()
    assert not w.p.tracked


def test_a_random_session_of_budgets_and_eyes_keeps_every_frame_within_its_budget():
    rng = np.random.default_rng(7)
    core = WorldCore(SMALL, 3, "cpu")
    core.attach(1, 1 << 24, {"budget": 900, "first_bytes": 8_000, "refine_bytes": 5_000})
    p = core.pendings[1]
    dec = Decoder(core.encoder.header_bytes())
    f = core.take(1, wait=True)
    dec.decode_frame(f.data)
    budgets = [900]
    for k in range(160):
        if k % 20 == 10:
            b = int(rng.integers(300, 3000))
            budgets.append(b)
            eye = {"position": rng.uniform(-30, 30, 3).tolist(), "yaw": float(rng.uniform(-180, 180)), "pitch": 0.0}
            core.detail(1, b, eye)
        action = [Move(float(rng.uniform(0, 3))), Turn(float(rng.uniform(-40, 40))), Idle()][k % 3]
        _, frames = core.step(action, [], (1,))
        f = frames[1]
        dec.decode_frame(f.data)
        assert str(dec.state.digest()) == f.digest
        assert len(dec.state) <= budgets[-1] == f.detail["budget"], (k, len(dec.state), budgets[-1])
    assert len(core.encoder.state) > max(budgets[-1], 1000)
    core.detail(1, 10 ** 9, None)
    for _ in range(200):
        _, frames = core.step(Idle(), [], (1,))
        dec.decode_frame(frames[1].data)
        if not p.tracked:
            break
    assert not p.tracked and dec.state.equals(core.encoder.state)
    core.close()


def test_compiled_stand_ins_match_the_numpy_moments():
    """``merge_sorted`` (compiled loops, the server's) gives codec.progressive's stand-ins (numpy)."""
    from codec.progressive import merged as merge
    from reference_generator.progressive_join import merge_sorted
    g = synthetic_scene(20_000, 2, 5, 10.0)
    group = np.sort(np.random.default_rng(1).integers(0, 3000, len(g)))
    group = np.unique(group, return_inverse=True)[1]                   # groups 0..n-1, none empty
    n = int(group.max()) + 1
    ref = merge(g, group, n)
    pos, scl, rot, opa, (dc, rest) = merge_sorted(g.positions, g.scales, g.rotations, g.opacities,
                                                  [g.sh_dc.T, g.sh_rest.T], np.bincount(group))
    assert np.allclose(pos, ref.positions, atol=1e-5)
    assert np.allclose(np.exp(scl), np.exp(ref.scales), rtol=1e-4, atol=1e-7)
    same_axis = np.abs(np.sum(rot * ref.rotations, axis=1))            # q and -q are one rotation
    assert np.all(same_axis > 1 - 1e-4)
    assert np.allclose(opa, ref.opacities, atol=1e-4)
    assert np.allclose(dc, ref.sh_dc, atol=1e-5) and np.allclose(rest, ref.sh_rest, atol=1e-5)
    one = np.flatnonzero(np.bincount(group) == 1)
    assert len(one) and np.array_equal(pos[one], g.positions[np.searchsorted(group, one)])


def test_a_client_within_its_budget_gets_the_worlds_deltas_until_the_world_nears_it():
    """Budget 10,000 on a world of 3,000: an ordinary client (the world's own frames); the world
    grows past 90% of the budget: frames of its own again, never over the budget; the world shrinks
    under 80%: ordinary again."""
    w = World(n=3000, budget=10_000)
    assert w.p.tracked and len(w.coarse())                          # stand-ins first
    w.converge()
    assert not w.p.tracked                                          # then the world's deltas
    d = w.enc.make_delta(update=(w.enc.state.ids()[:5], w.enc.state.to_gaussians()[1].take(np.arange(5))))
    data = w.enc.encode_delta(d)
    w.p.push(d, data, [], None, touched_ids(w.enc.state, d))
    f = w.take()
    assert f.data == data                                           # the world's own bytes
    rng = np.random.default_rng(5)
    added = []
    while not w.p.tracked:
        g = synthetic_scene(1500, 1, int(rng.integers(1 << 30)), 20.0)
        ids = w.enc.assign_ids(g.positions)
        added.append(ids)
        w.step(add=(ids, g))
        assert len(w.dec.state) <= 10_000
        assert len(w.enc.state) <= 9000 + 1500 or w.p.tracked
    assert 9000 < len(w.enc.state) <= 10_500
    for _ in range(3):                                              # past the budget: coarse cubes
        g = synthetic_scene(1500, 1, int(rng.integers(1 << 30)), 20.0)
        ids = w.enc.assign_ids(g.positions)
        added.append(ids)
        f = w.step(add=(ids, g))
        assert w.p.tracked and len(w.dec.state) <= 10_000 and f.detail["coarse"] >= 0
    assert len(w.enc.state) > 10_000
    w.step(delete=np.concatenate(added))                            # back to 3,000: within 80%
    w.converge()
    assert not w.p.tracked
