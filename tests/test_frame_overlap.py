"""An encoder writes a large frame's sections on a section worker while it applies the delta to its
state (codec.wire.PendingFrame): the frame's bytes are those of writing it after the apply, and a
delta the state refuses leaves no frame behind, the state untouched and the encoder usable."""
from __future__ import annotations

import numpy as np
import pytest

import codec.sections as sections
import codec.wire as wire
from codec import Decoder, Encoder, ErrorCode, GsdError
from codec.attributes import Attr
from codec.synthetic import synthetic_scene

from conftest import make_profile

N = 3000
FINISH, INIT = wire.PendingFrame.finish, wire.PendingFrame.__init__


def _frames(overlap_min: int, monkeypatch) -> tuple[list, list]:
    """A keyframe and deltas of ADDs, UPDATEs and DELETEs; the frames and how each was built."""
    monkeypatch.setattr(wire, "OVERLAP_MIN_BYTES", overlap_min)
    built = []

    def finish(self):
        built.append(self.started)
        return FINISH(self)
    monkeypatch.setattr(wire.PendingFrame, "finish", finish)
    g = synthetic_scene(N, 3, 5)
    enc = Encoder(make_profile("compact", 3, g.positions))
    ids = enc.assign_ids(g.positions)
    order = np.argsort(ids)
    live = np.sort(ids[: N // 2])
    frames = [enc.header_bytes(), enc.keyframe(g.take(np.arange(N // 2)), live)]
    rng = np.random.default_rng(2)
    for k in range(4):
        born = np.arange(N // 2 + k * 300, N // 2 + (k + 1) * 300)
        moved = np.sort(rng.choice(live, 400, replace=False))
        rows = order[np.searchsorted(ids[order], moved)]
        gone = np.sort(rng.choice(np.setdiff1d(live, moved), 50, replace=False))
        pos = g.positions[rows] + rng.normal(0, 0.01, (len(rows), 3)).astype(np.float32)
        frames.append(enc.encode(add=(ids[born], g.take(born)), update=(moved, {Attr.POSITION: pos}), delete=gone))
        live = np.sort(np.concatenate([np.setdiff1d(live, gone), ids[born]]))
    return frames, built


@pytest.mark.parametrize("jobs", [1, 3])
def test_overlapped_frames_are_the_frames_written_after_the_apply(monkeypatch, jobs):
    """``jobs``: the sections shared out among that many workers (a machine with cores to spare)."""
    monkeypatch.setattr(sections, "START_JOBS", jobs)
    monkeypatch.setattr(sections, "START_JOB_BYTES", 1024)
    after, how_after = _frames(1 << 60, monkeypatch)
    during, how_during = _frames(0, monkeypatch)
    assert not any(how_after) and all(how_during) and len(how_during) == len(during) - 1
    assert during == after
    dec = Decoder(during[0])
    for f in during[1:]:
        dec.decode_frame(f)  # digests checked
    assert dec.frames == len(during) - 1


@pytest.mark.parametrize("jobs", [1, 3])
def test_a_refused_delta_leaves_no_frame_and_the_state_as_it_was(monkeypatch, jobs):
    monkeypatch.setattr(sections, "START_JOBS", jobs)
    monkeypatch.setattr(sections, "START_JOB_BYTES", 1024)
    monkeypatch.setattr(wire, "OVERLAP_MIN_BYTES", 0)
    started = []

    def init(self, *a):
        INIT(self, *a)
        started.append(self)
    monkeypatch.setattr(wire.PendingFrame, "__init__", init)
    g = synthetic_scene(N, 3, 6)
    enc = Encoder(make_profile("compact", 3, g.positions))
    dec = Decoder(enc.header_bytes())
    ids = enc.assign_ids(g.positions)
    dec.decode_frame(enc.keyframe(g.take(np.arange(N - 100)), ids[:N - 100]))
    before, seq = enc.state.digest(), enc.state.seq
    started.clear()

    # well-formed, so its frame starts; refused by the state: its UPDATE names an id that is not live
    d = enc.make_delta(add=(ids[N - 100:N - 50], g.take(np.arange(N - 100, N - 50))))
    d.updates = enc.make_delta(update=(ids[:10], {Attr.SH_DC: g.sh_dc[:10] + 0.5})).updates
    b = d.updates[0]
    b.ids = np.sort(np.concatenate([b.ids[1:], ids[N - 1:]]))
    with pytest.raises(GsdError) as e:
        enc.encode_delta(d)
    assert e.value.code == ErrorCode.ID_MISSING
    assert len(started) == 1 and started[0].started and all(job.done() for _, job in started[0].sw._started[1])
    assert enc.state.digest() == before and enc.state.seq == seq

    # malformed: refused before any frame starts
    bad = enc.make_delta(add=(ids[N - 100:], g.take(np.arange(N - 100, N))))
    bad.add[Attr.OPACITY] = bad.add[Attr.OPACITY].astype(np.int64)
    with pytest.raises(GsdError) as e:
        enc.encode_delta(bad)
    assert e.value.code == ErrorCode.MALFORMED and len(started) == 1

    # and the encoder goes on: its next frame decodes to the same state
    dec.decode_frame(enc.encode(add=(ids[N - 100:], g.take(np.arange(N - 100, N)))))
    assert dec.state.digest() == enc.state.digest()


def test_encoders_on_every_section_worker_build_their_frames_themselves(monkeypatch):
    """An encoder running on a section worker does not hand its frame to the pool and wait for it: with
    every worker doing so, nothing would be left to compress."""
    from codec import sections
    monkeypatch.setattr(wire, "OVERLAP_MIN_BYTES", 0)
    g = synthetic_scene(N, 3, 8)
    ids = Encoder(make_profile("compact", 3, g.positions)).assign_ids(g.positions)

    def encode():
        enc = Encoder(make_profile("compact", 3, g.positions))
        return enc.keyframe(g, ids)
    jobs = [sections.submit(encode) for _ in range(sections._POOL._max_workers)]
    frames = [j.result(timeout=120) for j in jobs]
    assert frames == [encode()] * len(jobs)
