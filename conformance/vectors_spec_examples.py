"""The worked examples of SPEC.md 4.4 and 7.6 as vectors; generation fails if the bytes or
digests printed in the spec differ from what the reference model computes.
"""
from __future__ import annotations

import numpy as np

from codec import PRESETS

from .attribute_codes import dtype_of, planar
from .craft import DELTA, SHUFFLE, ZIGZAG, Encoding, HeaderFields, QuantFields
from .spec_index import S_DIGEST, S_SECTIONS
from .vector_stream import Stream, VectorWriter


def gen_spec_examples(g: VectorWriter) -> None:
    """The worked examples of SPEC.md 4.4 and 7.6 as vectors; generation fails if the spec's numbers differ."""
    q = QuantFields(4, 8, -14.0, 4.0, 8, 8, 8, -3.5, 3.5, (), ())
    hf = HeaderFields(0, ((0.0, 0.0, 0.0), 1.0, 4, 4), q, "compact")
    s = Stream(g, "spec_example_7_6_digest", hf)
    a = ((5, 10, 2), (133, 133, 125), (0, 184, 53, 165), (225,), (146, 118, 164), ())
    b = ((3, 14, 6), (156, 149, 142), (3, 109, 164, 109), (68,), (129, 131, 124), ())
    s.frame(adds=[(np.array([848], np.uint64), planar(s.L, [a]))])
    s.frame(key=True, adds=[(np.array([0, 848], np.uint64), planar(s.L, [b, a]))])
    res = [np.zeros((s.L.comps(k), 1), dtype_of(s.L, k)) for k in range(6)]
    res[0][:, 0] = (1, 0, 0)
    s.frame(updates=[(np.array([848], np.uint64), 0x01, res)])
    want = ["1:d2076ae6:492dc7c0", "2:e07963a0:0278f735", "2:e711aeef:36aff9f3"]
    assert s.digests == want, f"SPEC.md 7.6 says {want}, refmodel computes {s.digests}"
    s.valid("spec_example", "SPEC.md 7.6 worked example: A alone, keyframe of A and B, UPDATE of A's position",
            [S_DIGEST, "7.6"])

    hf = HeaderFields(0, ((0.0, 0.0, 0.0), 1.0, 4, 4), QuantFields.of(PRESETS["high"], 0), "high")
    s = Stream(g, "spec_example_4_4_sections", hf)
    got = {}
    ids = np.array([848, 850, 858], np.uint64)
    c = s.codes(3)
    c[3][:] = 100
    raw = Encoding(ids=DELTA | SHUFFLE, attr=lambda a, w, r: ZIGZAG | SHUFFLE if r else 0, compression="none")
    s.frame(key=True, adds=[(ids, c)], enc=raw, tweak=lambda ff, pl: got.update(ids=pl.parts[0]))
    res = [np.zeros((s.L.comps(k), 3), dtype_of(s.L, k)) for k in range(6)]
    res[3][0] = [1, 0xFFFF, 0xFFFE]
    s.frame(updates=[(ids, 0x08, res)], enc=raw, tweak=lambda ff, pl: got.update(res=pl.parts[1]))
    assert got["ids"] == bytes.fromhex("500208 030000") + bytes(18), got["ids"].hex()
    assert got["res"] == bytes.fromhex("020103000000"), got["res"].hex()
    s.valid("spec_example", "SPEC.md 4.4 examples: ids 848, 850, 858 with DELTA+SHUFFLE; i16 residuals 1, -1, -2 "
                            "with ZIGZAG+SHUFFLE (uncompressed)", [S_SECTIONS])
