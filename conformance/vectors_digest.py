"""Vectors for SPEC.md 7 (GSD-HASH): frame digests wrong in each of their parts."""
from __future__ import annotations

from .attribute_codes import per_gaussian
from .refmodel import RefFrame
from .spec_index import S_APPLY, S_DIGEST
from .vector_stream import VectorWriter


def gen_digest(g: VectorWriter) -> None:
    sec = [S_DIGEST, S_APPLY]

    def one(vid, desc, edit, key_n=4, pre=None, key=False):
        s = g.stream(vid, key_n=key_n)
        if pre:
            pre(s)
        trial = s._copy_model()
        ids = s.fresh_ids(2)
        c = s.codes(2)
        f = RefFrame(s.seq + 1 if key else s.seq + 1, 0 if key else s.seq, key,
                     adds=[[(int(i), per_gaussian(c, j)) for j, i in enumerate(ids)]])
        trial.apply(f)
        d = edit(trial.digest())
        s.frame(key=key, adds=[(ids, c)], digest=d, error="DIGEST_MISMATCH")
        s.invalid("digest", desc, sec)
    one("dig_count_wrong", "frame digest count one too high", lambda d: (d[0] + 1, d[1], d[2]))
    one("dig_lane0_wrong", "frame digest lane0 off by one bit", lambda d: (d[0], d[1] ^ 1, d[2]))
    one("dig_lane1_wrong", "frame digest lane1 off by one bit", lambda d: (d[0], d[1], d[2] ^ 0x80000000))
    one("dig_lanes_swapped", "frame digest lanes swapped", lambda d: (d[0], d[2], d[1]))
    one("dig_keyframe_wrong", "keyframe digest lane0 wrong", lambda d: (d[0], (d[1] + 1) & 0xFFFFFFFF, d[2]),
        key=True)
    one("dig_mid_stream", "fifth frame's digest wrong after four good ones", lambda d: (d[0], d[1], d[2] ^ 0x10),
        pre=lambda s: [s.add_frame(1) for _ in range(3)])
    one("dig_zero_for_nonempty", "digest 0:00000000:00000000 on a non-empty state", lambda d: (0, 0, 0))

    s = g.stream("dig_nonzero_for_empty", key_n=3)
    s.frame(deletes=[s.live()], digest=(0, 0, 1), error="DIGEST_MISMATCH")
    s.invalid("digest", "every Gaussian deleted but the digest says 0:00000000:00000001", sec)
