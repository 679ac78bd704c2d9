"""Vectors for SPEC.md 10 (versioning and extensions): major versions, required feature bits,
required op kinds (10..127 since 1.2), filter bits (4..7 since 1.3) and compression ids (3..255 since
1.4) that a 1.4 decoder does not know.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from . import craft
from .craft import Encoding
from .spec_index import S_FRAME, S_HEADER, S_HEADER_REC, S_OPS, S_SECTIONS, S_VERSION
from .vector_stream import VectorWriter, hf_preset, set_section


def gen_version_feature(g: VectorWriter) -> None:
    body = craft.header_body(hf_preset("compact", 1))
    for major in (0, 2, 255):
        g.header_invalid(f"ver_major_{major}", "version", f"header major version {major}", [S_VERSION, S_HEADER_REC],
                         craft.header_record(body, major=major), "UNSUPPORTED_VERSION")

    for bit in (1, 17, 63):
        g.header_invalid(f"feat_header_bit_{bit}", "feature", f"header required_features bit {bit} (only bit 0 is defined)",
                         [S_VERSION, S_HEADER],
                         craft.header(hf_preset("compact", 1, required_features=1 << bit)), "UNSUPPORTED_FEATURE")
    s = g.stream("feat_frame_bit_0_first_frame", key_n=None)
    s.add_frame(2, key=True, features=1, error="UNSUPPORTED_FEATURE", model=False)
    s.invalid("feature", "keyframe with required_features bit 0", [S_VERSION, S_FRAME])
    s = g.stream("feat_frame_bit_63", key_n=3)
    s.add_frame(1)
    s.add_frame(1, features=1 << 63, error="UNSUPPORTED_FEATURE", model=False)
    s.invalid("feature", "third frame with required_features bit 63", [S_VERSION, S_FRAME])

    for kind in (10, 64, 127):
        s = g.stream(f"feat_op_kind_{kind}", key_n=3)
        s.frame(ext=[(kind, [np.arange(4, dtype=np.uint8)[None, :]])], error="UNSUPPORTED_FEATURE", model=False)
        s.invalid("feature", f"op block of unknown required kind {kind}", [S_OPS, S_VERSION])

    for vid, which, bits, desc in [
        ("feat_filter_bit_4_ids", 0, 0x10, "ADD ids section with filter bit 4"),
        ("feat_filter_bit_7_attr", 2, 0x80, "ADD scale section with filter bit 7"),
    ]:
        s = g.stream(vid, key_n=3)
        s.add_frame(2, tweak=lambda ff, pl, w=which, b=bits: ff.sections.__setitem__(
            w, replace(ff.sections[w], filters=ff.sections[w].filters | b)), error="UNSUPPORTED_FEATURE", model=False)
        s.invalid("feature", desc, [S_SECTIONS, S_VERSION])
    for comp in (3, 255):
        s = g.stream(f"feat_compression_{comp}", key_n=3)
        s.add_frame(2, tweak=set_section(0, compression=comp), enc=Encoding(compression="zstd"),
                    error="UNSUPPORTED_FEATURE", model=False)
        s.invalid("feature", f"section compression id {comp}", [S_SECTIONS, S_VERSION])
