"""Vectors for SPEC.md 4.5-4.7 (metadata schema, StreamHeader, Frame): header parameters outside
their domains, metadata that does not parse, and op blocks whose sections do not fit their kind.
"""
from __future__ import annotations

import struct
from dataclasses import replace

from . import craft
from .craft import Encoding
from .spec_index import S_GRID, S_HEADER, S_LIMITS, S_MODEL, S_OPS, S_ORDER, S_QDOMAIN, S_SCHEMA, S_SECTIONS
from .vector_stream import VectorWriter, both, hf_preset, set_block, set_section


def gen_header(g: VectorWriter) -> None:
    sec = [S_HEADER, S_ORDER]
    base = hf_preset("compact", 1)
    bad = {
        "hdr_sh_degree_4": (replace(hf_preset("lossless", 0), sh_degree=4),
                            "sh_degree 4 (lossless, so no rest_bits are involved)"),
        "hdr_sh_degree_255": (replace(hf_preset("lossless", 0), sh_degree=255), "sh_degree 255 (lossless)"),
        "hdr_cell_bits_0": (replace(base, grid=((0.0, 0.0, 0.0), 1.0, 0, 8)), "cell_bits 0"),
        "hdr_cell_bits_21": (replace(base, grid=((0.0, 0.0, 0.0), 1.0, 21, 0)), "cell_bits 21"),
        "hdr_slot_bits_33": (replace(base, grid=((0.0, 0.0, 0.0), 1.0, 4, 33)), "slot_bits 33"),
        "hdr_id_bits_64": (replace(base, grid=((0.0, 0.0, 0.0), 1.0, 20, 4)), "3*cell_bits + slot_bits = 64"),
        "hdr_cell_size_zero": (replace(base, grid=((0.0, 0.0, 0.0), 0.0, 4, 8)), "cell_size 0"),
        "hdr_cell_size_negative": (replace(base, grid=((0.0, 0.0, 0.0), -1.0, 4, 8)), "cell_size -1"),
        "hdr_cell_size_nan": (replace(base, grid=((0.0, 0.0, 0.0), float("nan"), 4, 8)), "cell_size NaN"),
        "hdr_cell_size_inf": (replace(base, grid=((0.0, 0.0, 0.0), float("inf"), 4, 8)), "cell_size +Inf"),
        "hdr_origin_nan": (replace(base, grid=((0.0, float("nan"), 0.0), 1.0, 4, 8)), "grid origin y NaN"),
        "hdr_origin_inf": (replace(base, grid=((float("-inf"), 0.0, 0.0), 1.0, 4, 8)), "grid origin x -Inf"),
        "hdr_max_gaussians_over_spec": (replace(base, max_gaussians=(1 << 24) + 1), "max_gaussians 2^24+1"),
        "hdr_cell_plus_position_bits_31": (replace(base, grid=((0.0, 0.0, 0.0), 1.0, 14, 8),
                                                   quant=replace(base.quant, position_bits=17)),
                                           "cell_bits 14 + position_bits 17 = 31"),
    }
    q = base.quant
    for field, vals in {"position_bits": (0, 25), "scale_bits": (0, 17), "rotation_bits": (1, 17),
                        "opacity_bits": (0, 17), "dc_bits": (0, 17)}.items():
        for v in vals:
            bad[f"hdr_q_{field}_{v}"] = (replace(base, quant=replace(q, **{field: v})), f"quantization {field} {v}")
    bad["hdr_q_scale_range_empty"] = (replace(base, quant=replace(q, scale_min=2.0, scale_max=2.0)),
                                      "scale_min == scale_max")
    bad["hdr_q_scale_range_nan"] = (replace(base, quant=replace(q, scale_max=float("nan"))), "scale_max NaN")
    bad["hdr_q_dc_range_inverted"] = (replace(base, quant=replace(q, dc_min=1.0, dc_max=-1.0)), "dc_min > dc_max")
    bad["hdr_q_dc_range_inf"] = (replace(base, quant=replace(q, dc_min=float("-inf"))), "dc_min -Inf")
    b3 = hf_preset("compact", 3)
    for name, rb, rr, desc in [
        ("hdr_q_rest_bits_1", (6, 1, 5), (1.2, 1.0, 0.8), "rest_bits[1] = 1"),
        ("hdr_q_rest_bits_17", (17, 5, 5), (1.2, 1.0, 0.8), "rest_bits[0] = 17"),
        ("hdr_q_rest_range_zero", (6, 5, 5), (1.2, 1.0, 0.0), "rest_range[2] = 0"),
        ("hdr_q_rest_range_negative", (6, 5, 5), (-1.2, 1.0, 0.8), "rest_range[0] = -1.2"),
        ("hdr_q_rest_range_inf", (6, 5, 5), (1.2, float("inf"), 0.8), "rest_range[1] = +Inf"),
        ("hdr_q_rest_bits_short", (6, 5), (1.2, 1.0, 0.8), "SH degree 3 with 2 rest_bits entries"),
        ("hdr_q_rest_range_short", (6, 5, 5), (1.2,), "SH degree 3 with 1 rest_range entry"),
        ("hdr_q_rest_bits_four_entries", (6, 5, 5, 5), (1.2, 1.0, 0.8), "4 rest_bits entries (at most 3)"),
        ("hdr_q_rest_range_four_entries", (6, 5, 5), (1.2, 1.0, 0.8, 0.8), "4 rest_range entries (at most 3)"),
    ]:
        bad[name] = (replace(b3, quant=replace(b3.quant, rest_bits=rb, rest_range=rr)), f"quantization {desc}")
    for vid, (hf, desc) in bad.items():
        secs = sec + ([S_QDOMAIN] if "_q_" in vid or "position_bits" in vid else []) + \
            ([S_GRID] if "cell" in vid or "slot" in vid or "origin" in vid or "id_bits" in vid else [])
        g.header_invalid(vid, "header", f"stream header with {desc}", secs, craft.header(hf), "BAD_HEADER")

    q1 = replace(base.quant, rest_bits=(base.quant.rest_bits[0], 0, 99), rest_range=(base.quant.rest_range[0], -1.0,
                                                                                     float("nan")))
    s = g.stream("hdr_rest_entries_beyond_degree_ignored", hf=replace(base, quant=q1), key_n=3)
    s.valid("header", "SH degree 1 with 3 rest_bits/rest_range entries whose unused ones are out of domain",
            sec + [S_QDOMAIN])

    good_body = craft.header_body(base)
    for vid, body, desc in [
        ("hdr_body_shorter_than_root", b"\x04\x00\x00\x00", "4-byte header body (no room for a FlatBuffers root)"),
        ("hdr_body_root_out_of_range", b"\xF0\xFF\x00\x00" + good_body[4:], "root offset points past the body"),
        ("hdr_body_vtable_out_of_range", craft.set_root_soffset(good_body, -0x7FFF0000), "root table's vtable offset points outside the body"),
    ]:
        g.header_invalid(vid, "header", desc, sec, craft.header_record(body), "MALFORMED")
    g.header_invalid("hdr_no_grid", "header", "stream header without its grid", sec + [S_GRID],
                     craft.header(replace(base, grid=None)), "MALFORMED")


def gen_metadata(g: VectorWriter) -> None:
    sec = [S_SCHEMA, S_OPS, S_ORDER]

    def meta_edit(fn):
        """post(): the metadata replaced by fn(metadata) (same length), in a record with a correct CRC."""
        def p(rec):
            meta, payload = craft.split_frame(rec)
            return craft.frame_record(fn(meta), payload)
        return p

    def vector_claims(field_id: int, n: int):
        """post(): the Frame vector field_id claims n entries."""
        def fn(meta):
            out = bytearray(meta)
            struct.pack_into("<I", out, craft.frame_vector_len_at(meta, field_id), n)
            return bytes(out)
        return meta_edit(fn)

    cases = [
        ("meta_shorter_than_root", lambda r: craft.frame_record(b"\x04\x00\x00\x00", craft.split_frame(r)[1]),
         "4-byte metadata (no room for a FlatBuffers root)"),
        ("meta_root_out_of_range", meta_edit(lambda m: struct.pack("<I", 0x00FFFFF0) + m[4:]),
         "metadata root offset past the metadata"),
        ("meta_vtable_out_of_range", meta_edit(lambda m: craft.set_root_soffset(m, -0x7FFF0000)),
         "root table's vtable offset outside the metadata"),
        ("meta_blocks_vector_too_long",
         vector_claims(craft.FRAME_BLOCKS, 1000),
         "blocks vector claims 1000 entries (within max_blocks) in a short metadata"),
        ("meta_sections_vector_too_long",
         vector_claims(craft.FRAME_SECTIONS, 2000),
         "sections vector claims 2000 entries (within max_sections) in a short metadata"),
        ("order_meta_blocks_over_limit_past_meta",
         vector_claims(craft.FRAME_BLOCKS, 5000),
         "blocks vector claims 5000 entries (over max_blocks 4096) in a short metadata: MALFORMED, verification "
         "comes first"),
        ("order_meta_sections_over_limit_past_meta",
         vector_claims(craft.FRAME_SECTIONS, 20000),
         "sections vector claims 20000 entries (over max_sections 16384) in a short metadata: MALFORMED, "
         "verification comes first"),
    ]
    for vid, post, desc in cases:
        s = g.stream(vid, key_n=3)
        s.add_frame(2, post=post, error="MALFORMED", model=False)
        s.invalid("metadata", desc, sec + ([S_LIMITS] if vid.startswith("order_") else []), ref_records=True)

    # compact SH 1: an ADD block has 7 sections (ids + 6 attributes)
    blocks = [
        ("meta_block_kind_0", lambda s: dict(tweak=set_block(0, kind=0)), "op block of kind 0"),
        ("meta_section_index_out_of_range", lambda s: dict(tweak=set_block(0, sections=[0, 1, 2, 3, 4, 5, 7])),
         "ADD block referencing section 7 of 7"),
        ("meta_add_missing_section", lambda s: dict(tweak=set_block(0, sections=[0, 1, 2, 3, 4, 5])),
         "ADD block with 6 sections (needs 7 at SH degree 1)"),
        ("meta_add_extra_section", lambda s: dict(tweak=set_block(0, sections=[0, 1, 2, 3, 4, 5, 6, 6])),
         "ADD block with 8 sections"),
        ("meta_delete_ids_two_sections",
         lambda s: dict(deletes=[s.live()[:1]], tweak=set_block(0, sections=[0, 0])), "DELETE_IDS with 2 sections"),
        ("meta_delete_ranges_no_section", lambda s: dict(ranges=[[(1, 2)]], tweak=set_block(0, sections=[])),
         "DELETE_RANGES without its section"),
        ("meta_update_extra_section",
         lambda s: dict(updates=[(s.live()[:1], 0x01, s.residuals(s.live()[:1], 0x01))],
                        tweak=set_block(0, sections=[0, 1, 1])), "UPDATE mask 0x01 with 3 sections"),
        ("meta_update_mask_0",
         lambda s: dict(updates=[(s.live()[:1], 0x01, s.residuals(s.live()[:1], 0x01))],
                        tweak=both(set_block(0, mask=0), set_block(0, sections=[0]))), "UPDATE with mask 0"),
        ("meta_update_mask_bit_6",
         lambda s: dict(updates=[(s.live()[:1], 0x01, s.residuals(s.live()[:1], 0x01))],
                        tweak=set_block(0, mask=0x41)), "UPDATE mask 0x41 (bit 6 names no attribute)"),
        ("meta_update_mask_bit_7",
         lambda s: dict(updates=[(s.live()[:1], 0x01, s.residuals(s.live()[:1], 0x01))],
                        tweak=set_block(0, mask=0x81)), "UPDATE mask 0x81"),
        ("sec_ids_width_4", lambda s: dict(tweak=set_section(0, width=4)), "ADD ids section declares width 4"),
        ("sec_attr_width_2", lambda s: dict(enc=Encoding(compression="none"),
                                            tweak=set_section(2, width=2)),
         "ADD scale section (8-bit codes) declares width 2"),
        ("sec_raw_size_mismatch", lambda s: dict(enc=Encoding(compression="none"), tweak=_grow_section(1, 8)),
         "uncompressed position section with 8 extra bytes (raw_size = stored_size = count*3*4 + 8)"),
        ("sec_past_payload", lambda s: dict(tweak=lambda ff, pl: ff.sections.__setitem__(
            6, replace(ff.sections[6], offset=ff.sections[6].offset + 1))),
         "last section extends one byte past the payload"),
        ("sec_offset_wraps_u32", lambda s: dict(tweak=lambda ff, pl: ff.sections.__setitem__(
            3, replace(ff.sections[3], offset=(1 << 32) - ff.sections[3].stored_size + 2))),
         "section offset 2^32 - stored_size + 2: offset + stored_size wraps to 2 in 32-bit arithmetic"),
        ("sec_uncompressed_stored_ne_raw",
         lambda s: dict(enc=Encoding(compression="none"),
                        tweak=lambda ff, pl: ff.sections.__setitem__(
                            4, replace(ff.sections[4], stored_size=ff.sections[4].stored_size - 1))),
         "uncompressed opacity section with stored_size = raw_size - 1"),
    ]
    for vid, kw, desc in blocks:
        s = g.stream(vid, key_n=3)
        args = kw(s)
        if "deletes" not in args and "ranges" not in args and "updates" not in args:
            args["adds"] = [(s.fresh_ids(2), s.codes(2))]
        s.frame(error="MALFORMED", model=False, **args)
        s.invalid("metadata", desc, sec + ([S_SECTIONS] if vid.startswith("sec_") else []))

    s = g.stream("meta_update_sh_rest_at_degree_0", hf=hf_preset("compact", 0), key_n=3)
    ids = s.live()[:1]
    s.frame(updates=[(ids, 0x01, s.residuals(ids, 0x01))], tweak=set_block(0, mask=0x21), error="MALFORMED",
            model=False)
    s.invalid("metadata", "UPDATE mask 0x21 at SH degree 0 (SH_REST is absent)", sec + [S_MODEL])

    s = g.stream("meta_add_sh_rest_one_band_short", hf=hf_preset("compact", 3), key_n=3)
    s.add_frame(2, tweak=lambda ff, pl: setattr(ff.blocks[0], "sections", ff.blocks[0].sections[:8]),
                error="MALFORMED", model=False)
    s.invalid("metadata", "SH degree 3 ADD with 8 sections: SH_REST needs 3 band sections (1 + 5 + 3 = 9)", sec)

    s = g.stream("meta_update_sh_rest_band_missing", hf=hf_preset("compact", 2), key_n=3)
    ids = s.live()[:2]
    s.frame(updates=[(ids, 0x20, s.residuals(ids, 0x20))], error="MALFORMED", model=False,
            tweak=lambda ff, pl: setattr(ff.blocks[0], "sections", ff.blocks[0].sections[:2]))
    s.invalid("metadata", "SH degree 2 UPDATE of SH_REST with one band section instead of 2", sec)


def _grow_section(i: int, extra: int):
    def t(ff, pl):
        d = ff.sections[i]
        pl.parts[i] = pl.parts[i] + bytes(extra)
        shift = extra
        ff.sections[i] = replace(d, stored_size=d.stored_size + extra, raw_size=d.raw_size + extra)
        for j in range(i + 1, len(ff.sections)):
            ff.sections[j] = replace(ff.sections[j], offset=ff.sections[j].offset + shift)
    return t
