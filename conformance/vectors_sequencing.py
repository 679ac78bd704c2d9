"""Vectors for SPEC.md 6.4 (keyframes) and 6.5 (sequencing): keyframes mid-stream and with seq
jumps; lost, replayed and malformed sequence numbers.
"""
from __future__ import annotations

import numpy as np

from .spec_index import S_APPLY, S_DIGEST, S_KEYFRAME, S_SEQ
from .vector_stream import VectorWriter


def gen_keyframes(g: VectorWriter) -> None:
    sec = [S_KEYFRAME, S_APPLY, S_SEQ]
    s = g.stream("key_mid_stream", key_n=6)
    ids = s.live()[:3]
    s.frame(updates=[(ids, 0x01, s.residuals(ids, 0x01))])
    keep = s.live()[[0, 1]]
    s.frame(key=True, adds=[(np.sort(np.concatenate([keep, s.fresh_ids(3)])), s.codes(5))], seq=s.seq + 1)
    ids = s.live()[[1, 2]]
    s.frame(deletes=[s.live()[[0]]], updates=[(ids, 0x10, s.residuals(ids, 0x10))])
    s.valid("keyframe", "keyframe in mid-stream replaces the state (2 ids reused with new codes), then deltas", sec)

    s = g.stream("key_with_range_and_cell_deletes", key_n=6)
    s.frame(key=True, adds=[(s.fresh_ids(3), s.codes(3))], ranges=[[(0, s.L.id_limit - 1)]], cells=[(0, [1, 2])])
    s.valid("keyframe", "keyframe carrying DELETE_RANGES and DELETE_CELLS: they act on the empty state (no-ops)", sec)

    s = g.stream("key_seq_jump", key_n=4)
    s.add_frame(1)
    s.frame(key=True, adds=[(s.fresh_ids(2), s.codes(2))], seq=50, base=17)
    s.add_frame(1)
    s.valid("keyframe", "keyframe jumps seq 2 -> 50 (its base_seq 17 is ignored); the next delta is based on 50", sec)

    s = g.stream("key_empty", key_n=6)
    s.frame(key=True)
    s.valid("keyframe", "keyframe without blocks empties the state (digest 0:00000000:00000000)", sec + [S_DIGEST])

    s = g.stream("key_resync_same_state", key_n=7)
    ids = s.live()
    s.frame(key=True, adds=[(ids, s.codes_of(ids))])
    s.valid("keyframe", "resync keyframe re-ADDing the current state: digest unchanged", sec + [S_DIGEST])

    s = g.stream("key_after_deltas", key_n=None)
    s.add_frame(3)
    s.add_frame(2)
    s.frame(key=True, adds=[(s.fresh_ids(2), s.codes(2))])
    s.valid("keyframe", "two plain deltas from the empty state, then a keyframe", sec)


def gen_sequence(g: VectorWriter) -> None:
    sec = [S_SEQ]
    s = g.stream("seq_gap_ahead", key_n=3)
    s.add_frame(1, seq=s.seq + 2, base=s.seq + 1, error="SEQUENCE_GAP")
    s.invalid("sequence", "base_seq one ahead of the state (a frame was lost)", sec)

    s = g.stream("seq_gap_behind", key_n=3)
    s.add_frame(1)
    s.add_frame(1, seq=s.seq + 1, base=s.seq - 1, error="SEQUENCE_GAP")
    s.invalid("sequence", "base_seq one behind the state (a frame replayed against a newer state)", sec)

    s = g.stream("seq_first_frame_base_1", key_n=None)
    s.add_frame(1, seq=2, base=1, error="SEQUENCE_GAP")
    s.invalid("sequence", "the first frame is a delta based on seq 1 (state starts at 0)", sec)

    s = g.stream("seq_after_keyframe_jump", key_n=3)
    s.add_frame(2, key=True, seq=100)
    s.add_frame(1, seq=5, base=4, error="SEQUENCE_GAP")
    s.invalid("sequence", "after a keyframe with seq 100, a delta based on 4", sec)

    s = g.stream("seq_repeated_frame", key_n=3)
    rec = s.add_frame(1)
    s.raw(rec, error="SEQUENCE_GAP")
    s.invalid("sequence", "the same delta twice in a row", sec)

    s = g.stream("seq_keyframe_seq_0", key_n=None)
    s.add_frame(2, key=True, seq=0, error="MALFORMED")
    s.invalid("sequence", "keyframe with seq 0", sec)

    s = g.stream("seq_equal_to_base", key_n=3)
    s.add_frame(1, seq=s.seq, base=s.seq, error="MALFORMED")
    s.invalid("sequence", "delta with seq == base_seq", sec)

    s = g.stream("seq_below_base", key_n=3)
    s.add_frame(1, seq=4)
    s.add_frame(1, seq=2, base=4, error="MALFORMED")
    s.invalid("sequence", "delta with seq 2 < base_seq 4", sec)
