"""Stand-in cuts a world keeps for its progressive joiners (``CutCache``): a later joiner starts
from the kept cut and the steps since, a cut is made again on a worker thread, and a cut that is
stale, whose stand-in id the world took, or that no join asked for lately is not handed out."""
from __future__ import annotations

import threading

import numpy as np
import pytest

pytest.importorskip("torch")

from codec import Decoder, Encoder, Grid, Profile
from codec.synthetic import synthetic_scene
from reference_generator.progressive_join import CutCache, ProgressivePending, touched_ids

U64 = np.uint64


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


class World:
    """An encoder standing for the world, its cut cache, and progressive clients with their decoders."""

    def __init__(self, n=6000, **cache):
        g = synthetic_scene(n, 1, 7, 20.0)
        self.enc = Encoder(Profile.preset("compact", 1, Grid.fit(g.positions, cell_bits=8)), max_gaussians=100_000)
        self.enc.encode(add=(self.enc.assign_ids(g.positions), g), keyframe=True)
        self.clock = Clock()
        self.cuts = CutCache(self.enc, clock=self.clock, **cache)
        self.clients = []
        self.rng = np.random.default_rng(3)

    def join(self, budget=None):
        p = ProgressivePending(self.enc, 1 << 24, budget, first_bytes=6000, refine_bytes=1500, cuts=self.cuts)
        c = {"p": p, "dec": Decoder(self.enc.header_bytes())}
        self.clients.append(c)
        self.take(c)
        return c

    def take(self, c):
        f = c["p"].take(None)
        if f is not None:
            c["dec"].decode_frame(f.data)                 # checks the frame's digest against its state
            assert str(c["dec"].state.digest()) == f.digest
        return f

    def step(self, churn=True):
        """A world step: some Gaussians move, a few go, a few come (near the ones that went)."""
        ops = {}
        if churn:
            ids, g = self.enc.state.to_gaussians()
            pick = np.sort(self.rng.choice(len(ids), 60, replace=False))
            moved = g.take(pick[:40])
            moved.positions = moved.positions + np.float32(0.02)
            ops["update"] = (ids[pick[:40]], moved)
            ops["delete"] = ids[pick[40:50]]
            born = g.take(pick[50:])
            ops["add"] = (self.enc.assign_ids(born.positions), born)
        d = self.enc.make_delta(**ops)
        touched = touched_ids(self.enc.state, d) if self.cuts.active else None
        data = self.enc.encode_delta(d)
        if self.cuts.active:
            self.cuts.note(d.seq, touched)
        for c in self.clients:
            c["p"].push(d, data, [], None, touched)
            self.take(c)

    def converge(self, c, limit=500):
        p = c["p"]
        for _ in range(limit):
            if not p.tracked or (p.settled and not (p.c_has & ~p.c_fine & (p.c_count > 0)).any()):
                break
            self.step(churn=False)
        assert c["dec"].state.digest() == self.enc.state.digest()
        assert c["dec"].state.equals(self.enc.state)


def test_a_later_joiner_starts_from_the_kept_cut_and_reaches_the_worlds_state():
    w = World(refresh_share=1.0)
    first = w.join()
    key = (first["p"].budget, first["p"].first_bytes)
    cut = w.cuts.cuts[key]
    assert w.cuts.active and cut.seq == 1 and len(cut.ids) < cut.n
    for _ in range(5):                                   # the world moves on: adds, updates, deletes
        w.step()
    since = w.cuts.touched_since(key)[0]
    assert 50 * 5 <= len(since) <= 60 * 5 and np.all(since[1:] > since[:-1])   # distinct ids, ascending
    late = ProgressivePending(w.enc, 1 << 24, None, first_bytes=6000, refine_bytes=1500, cuts=w.cuts)
    late._cut = lambda: pytest.fail("the later joiner cut the world again")
    c = {"p": late, "dec": Decoder(w.enc.header_bytes())}
    w.clients.append(c)
    f = w.take(c)
    assert f.keyframe and f.seq == w.enc.state.seq              # the keyframe has the world's seq ...
    held = c["dec"].state.ids()
    assert np.array_equal(held, cut.ids)                        # ... and the kept cut's Gaussians
    assert sum(len(x) for x in late.dirty) > 0                  # the steps since: its first dirty ids
    assert late.c_count is not cut.tables["c_count"]            # its own tables
    w.step()
    assert np.array_equal(w.cuts.cuts[key].tables["c_count"], cut.tables["c_count"])   # the kept cut unchanged
    w.converge(c)
    w.converge(first)


def test_a_cut_whose_world_changed_is_made_again_on_a_worker_thread_and_served():
    w = World(refresh_share=0.015)
    first = w.join()
    key = (first["p"].budget, first["p"].first_bytes)
    w.step()
    assert w.cuts.job is None                                   # 60 of 6000 touched: kept as it is
    w.step()                                                    # 120: made again from a snapshot
    assert w.cuts.job is not None
    _, seq, fut = w.cuts.job
    assert seq == w.enc.state.seq
    names = []
    fut.add_done_callback(lambda _: names.append(threading.current_thread().name))
    fut.result(timeout=60)
    w.step()                                                    # collected at the next step
    assert w.cuts.cuts[key].seq == seq and w.cuts.made_ahead == 1 and w.cuts.cut_cpu_s > 0
    assert w.cuts.job is None and 50 <= len(w.cuts.since[key]) <= 60   # touched after the new cut only
    late = w.join()
    assert late["dec"].state.seq == w.enc.state.seq
    w.converge(late)


def test_the_cut_thread_rests_three_times_its_last_cut():
    w = World(refresh_share=0.005)
    w.join()
    w.step()
    _, _, fut = w.cuts.job
    fut.result(timeout=60)
    w.clock.t = 5.0
    w.step()                                                    # collected: rests from now on
    assert w.cuts.next_job == pytest.approx(5.0 + 3 * w.cuts._last_cpu) and w.cuts._last_cpu > 0
    w.step()
    w.step()
    assert w.cuts.job is None                                   # stale enough, but resting
    w.clock.t = w.cuts.next_job + 0.001
    w.step()
    assert w.cuts.job is not None
    w.cuts.job[2].result(timeout=60)


def test_a_cut_touched_too_much_since_is_not_handed_out():
    w = World(refresh_share=1.0, stale_share=0.01)
    w.join()
    for _ in range(2):
        w.step()                                                # 120 of 6000 touched: 2%
    late = ProgressivePending(w.enc, 1 << 24, None, first_bytes=6000, refine_bytes=1500, cuts=w.cuts)
    calls = []
    cut = late._cut
    late._cut = lambda: calls.append(1) or cut()
    c = {"p": late, "dec": Decoder(w.enc.header_bytes())}
    w.clients.append(c)
    w.take(c)
    assert calls == [1]
    w.converge(c)


def test_a_cut_whose_stand_in_id_the_world_took_is_dropped():
    w = World(refresh_share=1.0)
    first = w.join()
    key = (first["p"].budget, first["p"].first_bytes)
    cut = w.cuts.cuts[key]
    x = cut.tables["c_si"][np.flatnonzero(cut.tables["c_has"])[0]]
    ids, g = w.enc.state.to_gaussians()
    d = w.enc.make_delta(add=(np.array([x], U64), g.take(np.array([0]))))
    touched = touched_ids(w.enc.state, d)
    w.enc.encode_delta(d)
    w.cuts.note(w.enc.state.seq, touched)
    assert w.cuts.take(key) is None and key not in w.cuts.cuts


def test_cuts_no_join_asked_for_lately_are_dropped_and_the_world_stops_noting():
    w = World(keep_warm_s=60.0)
    w.join()
    w.clock.t = 30.0
    w.step()
    assert w.cuts.active
    if w.cuts.job is not None:
        w.cuts.job[2].result(timeout=60)
    w.clock.t = 100.0
    w.step()
    assert not w.cuts.cuts and not w.cuts.wanted and not w.cuts.since
    assert not w.cuts.active or w.cuts.job is not None


def test_a_joiner_with_no_cut_to_take_waits_for_the_cut_thread_while_the_world_steps():
    w = World(ahead=True)
    other = w.join()                                  # the first joiner: no cut yet, none on this thread
    assert other["dec"].state.seq == 0 and w.cuts.job is not None and w.cuts.job[0] == (other["p"].budget, 6000)
    snap = w.cuts.job[1]
    w.cuts.job[2].result(timeout=60)
    w.step()                                          # the world steps on; the cut arrives at its take
    assert other["dec"].state.seq == w.enc.state.seq > snap and not w.cuts.job
    assert w.cuts.made_ahead == 1 and len(w.cuts.since[(other["p"].budget, 6000)]) > 0
    w.converge(other)


def test_a_cut_thread_failure_reaches_the_joiner_that_asks_again():
    w = World(ahead=True)
    w.cuts._made_ahead = lambda snapshot, params: (_ for _ in ()).throw(ValueError("no slot left"))
    c = w.join()
    w.cuts.job[2].exception(timeout=60)
    with pytest.raises(ValueError, match="no slot left"):
        w.step()                                      # the step's take asks again: the error comes up
    assert c["p"].need_keyframe


def test_a_primed_world_hands_its_first_joiner_the_cut_it_made_as_it_was_created():
    w = World(refresh_share=1.0)
    assert not w.cuts.active
    assert w.cuts.prime(1 << 24, first_bytes=6000, refine_bytes=1500)      # cut on this thread, kept
    assert w.cuts.active and w.cuts.job is None
    for _ in range(3):                                   # the world moves on before anyone joins
        w.step()
    first = ProgressivePending(w.enc, 1 << 24, None, first_bytes=6000, refine_bytes=1500, cuts=w.cuts)
    first._cut = lambda: pytest.fail("the first joiner cut the world again")
    c = {"p": first, "dec": Decoder(w.enc.header_bytes())}
    w.clients.append(c)
    f = w.take(c)                                        # at once: no cut to wait for
    assert f is not None and f.keyframe and f.seq == w.enc.state.seq
    assert sum(len(x) for x in first.dirty) > 0          # the three steps since the cut
    w.converge(c)


def test_a_world_small_enough_for_a_plain_first_frame_keeps_no_cut():
    w = World(n=300)
    assert not w.cuts.prime(1 << 24, first_bytes=6000, refine_bytes=1500)
    assert not w.cuts.active and not w.cuts.cuts
