"""Vectors for the FlatBuffers verification of SPEC.md 4.5 (checks H8 and F9 of 4.9).

Buffers are laid out by hand (craft.fb_layout, one pad byte before every object so nothing is
aligned): valid ones prove alignment is not checked; invalid ones have one offset or length
pointing or running outside the buffer, an offset of 0, or a string terminator that is not 0.
"""
from __future__ import annotations

import struct

from . import craft
from .spec_index import S_LIMITS, S_ORDER, S_SCHEMA, S_VERSION
from .vector_stream import VectorWriter, hf_preset


def gen_verification(g: VectorWriter) -> None:
    """FlatBuffers verification of the header body and the frame metadata (SPEC.md 4.5, 4.9 H8/F9).

    Buffers are laid out by hand (craft.fb_layout, one pad byte before every object so nothing is
    aligned), then one offset or length is edited to point or run outside the buffer."""
    sec = [S_SCHEMA, S_ORDER]
    base = hf_preset("compact", 1)

    def hdr_edit(edit, hf=base, tree_edit=None):
        tree = craft.header_tree(hf)
        if tree_edit is not None:
            tree_edit(tree)
        body, pos = craft.fb_layout(tree)
        out = bytearray(body)
        if edit is not None:
            edit(out, pos, tree)
        return craft.header_record(bytes(out))

    def q_of(tree):
        return tree.fields[2][1]

    def u32(at_fn):
        def e(out, pos, tree):
            p, v = at_fn(out, pos, tree)
            struct.pack_into("<I", out, p, v & 0xFFFFFFFF)
        return e

    def soffset(node_fn, value_fn):
        """Set the soffset of a table to put its vtable at value_fn(t, n) (absolute position)."""
        def e(out, pos, tree):
            t = pos[id(node_fn(tree))]
            struct.pack_into("<i", out, t, t - value_fn(t, len(out)))
        return e

    def field_off(node_fn, fid, value_fn):
        """Set a vtable slot (field offset from the table start) to value_fn(t, n)."""
        def e(out, pos, tree):
            node = node_fn(tree)
            t, vt = pos[id(node)], pos[(id(node), "vtable")]
            struct.pack_into("<H", out, vt + 4 + 2 * fid, value_fn(t, len(out)))
        return e

    def vec_len(node_fn, value_fn):
        """Set the length field of a vector or string to value_fn(v, n) (v: its length field)."""
        def e(out, pos, tree):
            v = pos[id(node_fn(tree))]
            struct.pack_into("<I", out, v, value_fn(v, len(out)))
        return e

    root = lambda tree: tree
    name = lambda tree: tree.fields[3][1]
    gen_s = lambda tree: tree.fields[6][1]
    rest_bits = lambda tree: q_of(tree).fields[9][1]
    rest_range = lambda tree: q_of(tree).fields[10][1]

    # valid: nothing aligned, unknown field past the schema whose value looks like a bad offset
    s = g.stream("hdr_fb_misaligned_valid", header=hdr_edit(None), key_n=3)
    s.add_frame(2)
    s.valid("header", "header body with every table, field, vector and string at an odd offset (alignment is not "
            "checked)", sec)

    def unknown_field(tree):
        tree.fields[8] = ("u32", 0xFFFFFFF0)
    s = g.stream("hdr_fb_unknown_field_not_verified", header=hdr_edit(None, tree_edit=unknown_field), key_n=3)
    s.valid("header", "header with an unknown field 8 holding 0xFFFFFFF0 (not verified: field ids past the schema "
            "are ignored)", sec + [S_VERSION])

    cases = [
        ("hdr_fb_root_offset_zero", u32(lambda o, p, t: (0, 0)), "root uoffset 0"),
        ("hdr_fb_root_table_past_body", u32(lambda o, p, t: (0, len(o) - 2)),
         "root offset leaves 2 bytes for the table's 4-byte soffset"),
        ("hdr_fb_root_vtable_before_body", soffset(root, lambda t, n: -6),
         "StreamHeader vtable 6 bytes before the start of the body (a positive soffset larger than the table "
         "position)"),
        ("hdr_fb_quant_vtable_before_body", soffset(lambda t: q_of(t), lambda t, n: -(1 << 20)),
         "Quantization vtable 2^20 bytes before the start of the body"),
        ("hdr_fb_quant_vtable_after_body", soffset(lambda t: q_of(t), lambda t, n: n - 2),
         "Quantization vtable at the last 2 bytes of the body (vtable header needs 4)"),
        ("hdr_fb_quant_offset_past_body", u32(lambda o, p, t: (p[(id(t), 2)], len(o))),
         "quantization offset points past the body"),
        ("hdr_fb_vtable_size_odd", lambda o, p, t: struct.pack_into("<H", o, p[(id(t), "vtable")],
                                                                     struct.unpack_from("<H", o, p[(id(t), "vtable")])[0] + 1),
         "StreamHeader vtable size odd"),
        ("hdr_fb_table_size_past_body", lambda o, p, t: struct.pack_into("<H", o, p[(id(t), "vtable")] + 2,
                                                                          len(o) - p[id(t)] + 1),
         "StreamHeader table size runs 1 byte past the body"),
        ("hdr_fb_grid_past_body", field_off(root, 1, lambda t, n: n - t - 10),
         "Grid struct field starts 10 bytes before the end of the body (needs 20)"),
        ("hdr_fb_profile_name_past_body", vec_len(name, lambda v, n: 1 << 16),
         "profile_name string of 65536 bytes in a short body"),
        ("hdr_fb_generator_terminator_outside", vec_len(gen_s, lambda v, n: n - v - 4),
         "generator string reaching the last byte of the body: no room for its terminator"),
        ("hdr_fb_string_offset_zero", u32(lambda o, p, t: (p[(id(t), 3)], 0)),
         "profile_name uoffset 0 (an offset may not point to itself)"),
        ("hdr_fb_rest_bits_past_body", vec_len(rest_bits, lambda v, n: 1 << 20),
         "rest_bits vector of 2^20 entries in a short body (MALFORMED before the BAD_HEADER of > 3 entries)"),
        ("hdr_fb_rest_range_past_body", vec_len(rest_range, lambda v, n: (n - v - 4) // 4 + 1),
         "rest_range vector one float longer than the body holds"),
    ]
    for vid, edit, desc in cases:
        g.header_invalid(vid, "header", f"header body (hand laid out): {desc}", sec, hdr_edit(edit), "MALFORMED",
                         ref_records=True)

    def nonzero_terminator(tree):
        tree.fields[6] = ("ref", craft.FbString(b"gsd-conformance", terminator=0x21))
    g.header_invalid("hdr_fb_string_terminator_nonzero", "header",
                     "generator string whose terminator byte (inside the body) is 0x21, not 0", sec,
                     hdr_edit(None, tree_edit=nonzero_terminator), "MALFORMED", ref_records=True)

    # ---- frame metadata
    def layout(edit=None):
        def lay(ff):
            tree = craft.frame_tree(ff)
            meta, pos = craft.fb_layout(tree)
            out = bytearray(meta)
            if edit is not None:
                edit(out, pos, tree)
            return bytes(out)
        return lay

    s = g.stream("meta_fb_misaligned_valid", key_n=None)
    s.add_frame(6, key=True, layout=layout())
    live = s.live()
    s.frame(deletes=[live[:1]], updates=[(live[2:4], 0x29, s.residuals(live[2:4], 0x29))],
            adds=[(s.fresh_ids(2), s.codes(2))], layout=layout())
    s.frame(ranges=[[(0, int(live[1]))]], layout=layout(), digest=None)
    s.valid("metadata", "frames whose metadata has every table, field, vector and struct at an odd offset "
            "(alignment is not checked)", sec)

    s = g.stream("meta_fb_many_blocks_valid", key_n=3)
    s.add_frame(1, ext=[(200 + k, []) for k in range(40)], layout=layout())
    s.valid("metadata", "41 blocks (40 optional ones without sections), hand laid out", sec + [S_VERSION])

    blk = lambda i: (lambda tree: tree.fields[5][1].elems[i][1])
    fcases = [
        ("meta_fb_root_vtable_before_meta", soffset(root, lambda t, n: -4), {},
         "Frame vtable 4 bytes before the start of the metadata"),
        ("meta_fb_digest_past_meta", field_off(root, 4, lambda t, n: n - t - 8), dict(digest="auto"),
         "Digest struct field starts 8 bytes before the end of the metadata (needs 16)"),
        ("meta_fb_block_offset_zero", lambda o, p, t: struct.pack_into("<I", o, p[(id(t.fields[5][1]), 0)], 0), {},
         "first blocks element uoffset 0"),
        ("meta_fb_block_vtable_before_meta", soffset(blk(0), lambda t, n: -(1 << 16)), {},
         "OpBlock vtable 2^16 bytes before the start of the metadata"),
        ("meta_fb_block_table_size_past_meta",
         lambda o, p, t: struct.pack_into("<H", o, p[(id(blk(0)(t)), "vtable")] + 2, len(o) - p[id(blk(0)(t))] + 1),
         {}, "OpBlock table size runs 1 byte past the metadata"),
        ("meta_fb_block_sections_past_meta", vec_len(lambda t: blk(0)(t).fields[4][1], lambda v, n: 1 << 24), {},
         "OpBlock sections vector of 2^24 indices in a short metadata"),
    ]
    for vid, edit, kw, desc in fcases:
        s = g.stream(vid, key_n=3)
        s.add_frame(2, layout=layout(edit), error="MALFORMED", model=False, **kw)
        s.invalid("metadata", f"frame metadata (hand laid out): {desc}", sec, ref_records=True)

    # F9 order: verification before the max_blocks limit (SPEC.md 4.9)
    s = g.stream("order_meta_verify_before_blocks_limit", key_n=3, limits={"max_blocks": 8})
    s.add_frame(1, ext=[(200, [])] * 29, error="MALFORMED", model=False,
                layout=layout(soffset(blk(29), lambda t, n: n + 100)))
    s.invalid("metadata", "30 blocks with max_blocks 8, the last OpBlock's vtable past the metadata: verification "
              "(MALFORMED) comes before the limit", sec + [S_LIMITS], ref_records=True)
