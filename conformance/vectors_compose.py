"""Vectors for SPEC.md 8 (compose): frames produced by codec.compose, checked against applying
the parts to the reference model one by one.
"""
from __future__ import annotations

import numpy as np

from codec import compose, decode_frame, decode_header
from codec.wire import FrameEncoder

from . import craft
from .frame_reader import read_frame_ops
from .refmodel import RefState
from .spec_index import S_APPLY, S_COMPOSE, S_OPS
from .vector_stream import Stream, VectorWriter, hf_preset


def gen_compose(g: VectorWriter) -> None:
    hf = hf_preset("compact", 1)
    prof = decode_header(craft.header(hf))[0].profile   # the profile as the codec reads it
    sec = [S_COMPOSE, S_OPS]

    def delta(s: Stream, model: RefState, seq, base, key=False, adds=None, updates=None, deletes=(), ranges=(),
              cells=()):
        """One part as a codec Delta, applied to ``model``: written with craft, read by codec.decode_frame."""
        part = Stream(g, s.vid + "/part", hf)
        part.model = model
        rec = part.frame(seq=seq, base=base, key=key, digest=None, adds=[adds] if adds else [],
                         updates=[updates] if updates else [], deletes=[deletes] if len(deletes) else [],
                         ranges=[ranges] if ranges else [], cells=list(cells))
        return decode_frame(rec, prof)[0]

    def composed(s: Stream, c, digest) -> None:
        """Append the composed Delta, serialized by the codec and read back from its bytes."""
        ops = read_frame_ops(FrameEncoder(prof).encode(c), s.L, s.live())
        s.frame(key=ops.keyframe, seq=ops.seq, base=ops.base_seq, digest=digest, **ops.blocks())

    def residuals_on(s: Stream, model: RefState, ids, mask):
        saved = s.model
        s.model = model
        try:
            return s.residuals(ids, mask)
        finally:
            s.model = saved

    def scenario(vid, desc, build, n=6):
        s = g.stream(vid, hf=hf, key_n=n)
        m = s._copy_model()
        ds = build(s, m)
        c = ds[0]
        for d in ds[1:]:
            c = compose(c, d, prof)
        composed(s, c, m.digest())
        s.valid("compose", desc, sec)

    def add_update(s, m):
        x = s.fresh_ids(2)
        d1 = delta(s, m, s.seq + 1, s.seq, adds=(x, s.codes(2)))
        d2 = delta(s, m, s.seq + 2, s.seq + 1, updates=(x[:1], 0x3F, residuals_on(s, m, x[:1], 0x3F)))
        return [d1, d2]
    scenario("compose_add_then_update", "compose(ADD x, UPDATE x) = ADD x with the residual folded in", add_update)

    def add_delete(kind):
        def b(s, m):
            x = s.fresh_ids(2)
            d1 = delta(s, m, s.seq + 1, s.seq, adds=(x, s.codes(2)))
            kw = {"ids": {"deletes": x[:1]}, "range": {"ranges": [(int(x[0]), int(x[0]))]},
                  "cell": {"cells": [(0, [int(x[0]) >> 8])]}}[kind]
            return [d1, delta(s, m, s.seq + 2, s.seq + 1, **kw)]
        return b
    for kind in ("ids", "range", "cell"):
        scenario(f"compose_add_then_delete_{kind}", f"compose(ADD x, DELETE x by {kind}): x never appears",
                 add_delete(kind))

    def upd_upd(s, m):
        x = s.live()[:3]
        d1 = delta(s, m, s.seq + 1, s.seq, updates=(x, 0x05, residuals_on(s, m, x, 0x05)))
        d2 = delta(s, m, s.seq + 2, s.seq + 1, updates=(x[1:], 0x0C, residuals_on(s, m, x[1:], 0x0C)))
        return [d1, d2]
    scenario("compose_update_then_update", "compose(UPDATE mask 0x05, UPDATE mask 0x0C): residuals add, masks OR",
             upd_upd)

    def upd_del(s, m):
        x = s.live()[:2]
        d1 = delta(s, m, s.seq + 1, s.seq, updates=(x, 0x3F, residuals_on(s, m, x, 0x3F)))
        return [d1, delta(s, m, s.seq + 2, s.seq + 1, deletes=x[:1])]
    scenario("compose_update_then_delete", "compose(UPDATE x, DELETE x) = DELETE x", upd_del)

    def del_add(s, m):
        x = s.live()[:2]
        d1 = delta(s, m, s.seq + 1, s.seq, deletes=x)
        return [d1, delta(s, m, s.seq + 2, s.seq + 1, adds=(x[:1], s.codes(1)))]
    scenario("compose_delete_then_add", "compose(DELETE x, ADD x) = DELETE x and ADD x (replace)", del_add)

    def key_first(s, m):
        x = s.fresh_ids(4)
        d1 = delta(s, m, s.seq + 1, s.seq, key=True, adds=(x, s.codes(4)))
        d2 = delta(s, m, s.seq + 2, s.seq + 1, updates=(x[:2], 0x02, residuals_on(s, m, x[:2], 0x02)),
                   deletes=x[3:])
        return [d1, d2]
    scenario("compose_keyframe_then_delta", "compose(keyframe, delta) is a keyframe with the delta folded in",
             key_first)

    def key_second(s, m):
        x = s.live()[:1]
        d1 = delta(s, m, s.seq + 1, s.seq, updates=(x, 0x01, residuals_on(s, m, x, 0x01)))
        y = s.fresh_ids(3)
        return [d1, delta(s, m, s.seq + 2, s.seq + 1, key=True, adds=(y, s.codes(3)))]
    scenario("compose_delta_then_keyframe", "compose(delta, keyframe) = the keyframe", key_second)

    def chain(s, m):
        ds = []
        for k in range(5):
            live = np.array(sorted(m.g), np.uint64)
            new = s.fresh_ids(1)
            up = live[[k % len(live)]]
            ds.append(delta(s, m, s.seq + 1 + k, s.seq + k, adds=(new, s.codes(1)),
                            updates=(up, 0x11, residuals_on(s, m, up, 0x11)), deletes=live[[(k + 2) % len(live)]]))
        return ds
    scenario("compose_chain_of_five", "five deltas composed left to right into one", chain, n=8)

    # skipped frames in a file: seq gap linked by base_seq
    s = g.stream("compose_skip_frames_in_stream", hf=hf, key_n=5)
    m = s._copy_model()
    x = s.live()
    d1 = delta(s, m, s.seq + 1, s.seq, updates=(x[:2], 0x01, residuals_on(s, m, x[:2], 0x01)))
    d2 = delta(s, m, s.seq + 2, s.seq + 1, adds=(s.fresh_ids(2), s.codes(2)), deletes=x[4:])
    c = compose(d1, d2, prof)
    composed(s, c, m.digest())
    s.add_frame(1)
    s.valid("compose", "frames 2 and 3 sent as one composed frame (seq 3, base 1), then seq 4: a seq gap linked by "
                       "base_seq", sec + [S_APPLY])
