"""Vectors for SPEC.md 5.9 (SH palette, 1.1): PALETTE blocks (6.1), the palette in the scene state
(2.5, 6.3 steps 1 and 2a, 6.4), palette indices as SH_REST codes (5.1, 5.6), entry records in the
digest (7.1), compose (8), the PALETTE count limit (9.1) and the header's rules for ``sh_palette``
and feature bit 0 (4.6, 5.7). Every stream's header is written with version_minor 1.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from codec import compose, decode_frame, decode_header
from codec.wire import FrameEncoder

from . import craft
from .attribute_codes import entry_dtype, rand_entries, rest_limits
from .craft import Encoding, HeaderFields, QuantFields
from .frame_reader import read_frame_ops
from .refmodel import entry_words, record_hashes
from .spec_index import (S_APPLY, S_CODES, S_COMPOSE, S_DIGEST, S_HEADER, S_IDRULES, S_KEYFRAME, S_LIMITS, S_OPS,
                         S_PALETTE, S_PRESETS, S_QDOMAIN, S_SECTIONS, S_STATE, S_VALIDITY, S_VERSION)
from .vector_stream import G, NARROW, Stream, VectorWriter, hf_preset, hf_quant, set_block, set_section
from .vectors_metadata import _grow_section

CAT = "palette"
SEC = [S_PALETTE, S_OPS, S_APPLY]


def hf_palette(d: int, entries: int = 16, q: QuantFields = NARROW, **kw) -> HeaderFields:
    """A custom lossy header at SH degree d with an SH palette of ``entries`` (feature bit 0 set)."""
    kw.setdefault("required_features", craft.SH_PALETTE)
    return hf_quant(replace(q, sh_palette=entries), d, name="custom-palette", **kw)


def stream(g: VectorWriter, vid: str, hf: HeaderFields, limits: dict | None = None) -> Stream:
    """An empty stream whose header says version 1.1."""
    return g.stream(vid, hf=hf, limits=limits, header=craft.header(hf, minor=1), key_n=None)


def using(s: Stream, n: int, entries) -> list[np.ndarray]:
    """Random valid codes of n Gaussians whose SH_REST indices are drawn from ``entries``."""
    c = s.codes(n)
    c[5] = s.rng.choice(np.asarray(entries, np.int64), size=(1, n)).astype(np.uint16)
    return c


def entries(s: Stream, index) -> tuple[np.ndarray, np.ndarray]:
    """A PALETTE block's arrays: the indices (ascending) and random non-zero entries."""
    index = np.asarray(index, np.uint16)
    return index, rand_entries(s.L, len(index), s.rng)


def zero_entries(s: Stream, index) -> tuple[np.ndarray, np.ndarray]:
    index = np.asarray(index, np.uint16)
    return index, np.zeros((s.L.rest_comps, len(index)), entry_dtype(s.L))


def gen_palette(g: VectorWriter) -> None:
    """Valid streams with an SH palette."""
    # the 'small' preset at every SH degree (no palette at degree 0: SH_REST is absent)
    for d in (1, 2, 3):
        s = stream(g, f"pal_keyframe_sh{d}", hf_preset("small", d))
        used = [0, 17, 300, 4097, 40000, 65535]
        pal = entries(s, used)
        if d == 3:  # the extremes of every component: +M and -M of its degree
            m = np.array(rest_limits(s.L))
            pal[1][:, 1], pal[1][:, 2] = m, -m
        c = using(s, 8, used)
        c[5][0, 0] = 9                         # an entry no PALETTE block set: all zero
        s.frame(key=True, palettes=[pal], adds=[(s.fresh_ids(8), c)])
        live = s.live()
        up = live[[1, 6]]
        s.frame(deletes=[live[[3]]], adds=[(s.fresh_ids(2), using(s, 2, used))],
                updates=[(up, 0x3F, s.residuals(up, 0x3F, new=using(s, 2, used)))])
        s.valid(CAT, f"'small' preset (sh_palette 65536) at SH degree {d}: a keyframe setting 6 entries (indices 0 "
                     f"and 65535 among them) and 8 Gaussians using them (one uses entry 9, never set: zero), then "
                     f"DELETE_IDS, ADD and an UPDATE of every attribute", SEC + [S_PRESETS, S_CODES, S_KEYFRAME])

    s = stream(g, "pal_small_sh0", hf_preset("small", 0))
    s.add_frame(5, key=True)
    s.add_frame(2)
    s.valid(CAT, "'small' preset at SH degree 0: no SH_REST, so no palette (sh_palette absent, feature bit 0 clear)",
            [S_PALETTE, S_PRESETS, S_HEADER, S_QDOMAIN])

    s = stream(g, "pal_entry_replaced_in_use", hf_palette(2))
    s.frame(key=True, palettes=[entries(s, [1, 2, 3])], adds=[(s.fresh_ids(6), using(s, 6, [1, 2, 3]))])
    s.frame(palettes=[entries(s, [2, 3])])
    s.frame(palettes=[zero_entries(s, [1])])
    s.valid(CAT, "entries 2 and 3 replaced while Gaussians use them (their SH_REST changes, their indices do not), "
                 "then entry 1 set to all zero (its digest record goes)", SEC + [S_DIGEST, S_STATE])

    s = stream(g, "pal_zero_entries_not_hashed", hf_palette(3))
    idx, pal = entries(s, [0, 5, 9])
    pal[:, 1:] = 0
    s.frame(key=True, palettes=[(idx, pal)], adds=[(s.fresh_ids(3), using(s, 3, [0, 5, 9]))])
    s.frame(palettes=[zero_entries(s, [3, 15])])
    assert s.digests[0] == s.digests[1], "an all-zero entry is no digest record"
    s.valid(CAT, "a keyframe setting entry 0 and the all-zero entries 5 and 9, then a frame setting entries 3 and 15 "
                 "to zero: all-zero entries are not hashed, the second digest equals the first", SEC + [S_DIGEST])

    s = stream(g, "pal_update_index_wraps", hf_preset("small", 1))
    used = [2, 3, 65530, 65534]
    c = using(s, 4, used)
    c[5][0, :2] = [65530, 2]
    s.frame(key=True, palettes=[entries(s, used)], adds=[(s.fresh_ids(4), c)])
    ab = s.live()[:2]
    new = s.codes_of(ab)
    new[5][0, :] = [3, 65534]
    res = s.residuals(ab, 0x20, new=new)
    assert [int(x) for x in res[5][0]] == [9, 65532]
    s.frame(updates=[(ab, 0x20, res)])
    up = s.live()[2:4]
    s.frame(updates=[(up, 0x21, s.residuals(up, 0x21, new=using(s, 2, used)))])
    s.valid(CAT, "UPDATE residuals of SH_REST palette indices wrap mod 2^16: 65530 + 9 -> 3, 2 + 65532 -> 65534; "
                 "then an UPDATE of mask 0x21", SEC + [S_CODES])

    s = stream(g, "pal_entries_in_delta", hf_palette(3))
    c = s.codes(5)
    c[5][:] = 0
    s.frame(key=True, adds=[(s.fresh_ids(5), c)])
    s.frame(palettes=[entries(s, [0, 4])], adds=[(s.fresh_ids(2), using(s, 2, [4]))])
    up = s.live()[[0, 2]]
    new = s.codes_of(up)
    new[5][:] = 4
    s.frame(updates=[(up, 0x20, s.residuals(up, 0x20, new=new))])
    s.valid(CAT, "a keyframe of Gaussians on entry 0 (zero), then a delta setting entries 0 and 4 and adding "
                 "Gaussians on 4, then an UPDATE moving two Gaussians to entry 4", SEC)

    s = stream(g, "pal_keyframe_resets_palette", hf_palette(1))
    s.frame(key=True, palettes=[entries(s, [1, 2])], adds=[(s.fresh_ids(3), using(s, 3, [1, 2]))])
    s.frame(key=True, adds=[(s.fresh_ids(3), using(s, 3, [1, 2]))])
    assert s.model.palette == {}
    s.frame(palettes=[entries(s, [1])])
    s.valid(CAT, "a keyframe sets entries 1 and 2; a second keyframe without PALETTE blocks starts from an all-zero "
                 "palette (its Gaussians on 1 and 2 have zero SH_REST, its digest no entry record); then entry 1 is "
                 "set",
            SEC + [S_KEYFRAME, S_STATE, S_DIGEST])

    s = stream(g, "pal_several_blocks", hf_palette(2, 64))
    blocks = [entries(s, [1, 7, 20]), entries(s, [3, 8]), entries(s, [0, 63])]
    s.frame(key=True, palettes=blocks, adds=[(s.fresh_ids(4), using(s, 4, [0, 3, 20, 63]))], order=lambda bl: bl[::-1])
    s.frame(palettes=[entries(s, [8, 9]), entries(s, [2])])
    s.valid(CAT, "three PALETTE blocks whose indices interleave (each ascending on its own), written after the ADD "
                 "block; then two more blocks", SEC + [S_IDRULES])

    s = stream(g, "pal_block_count_0", hf_preset("small", 2))
    s.frame(key=True, palettes=[entries(s, [5, 6])], adds=[(s.fresh_ids(3), using(s, 3, [5, 6]))])
    up = s.live()[:1]
    s.frame(palettes=[zero_entries(s, [])], updates=[(up, 0x01, s.residuals(up, 0x01))])
    s.valid(CAT, "a PALETTE block of count 0 (3 empty sections) beside an UPDATE", SEC + [S_SECTIONS])

    s = stream(g, "pal_entries_without_gaussians", hf_palette(1))
    s.frame(key=True, palettes=[entries(s, [2, 11])])
    s.frame(adds=[(s.fresh_ids(2), using(s, 2, [2, 11]))])
    s.frame(deletes=[s.live()])
    assert s.digests[0] == s.digests[2] and s.digests[0].startswith("0:") and s.digests[0] != "0:00000000:00000000"
    s.valid(CAT, "a keyframe of palette entries and no Gaussian: digest count 0, lanes of the two entry records; "
                 "Gaussians added then deleted leave the palette (and that digest)", SEC + [S_DIGEST, S_STATE])

    s = stream(g, "pal_single_entry", hf_palette(1, 1))
    s.frame(key=True, palettes=[entries(s, [0])], adds=[(s.fresh_ids(3), using(s, 3, [0]))])
    s.frame(palettes=[entries(s, [0])])
    s.valid(CAT, "sh_palette 1: every Gaussian uses entry 0, which a delta replaces", SEC + [S_VALIDITY, S_QDOMAIN])

    wide = replace(NARROW, rest_bits=(10, 9, 12), rest_range=(1.0, 0.8, 0.5))
    s = stream(g, "pal_entry_width_2", hf_palette(3, 256, wide))
    idx, pal = entries(s, [0, 1, 200])
    m = np.array(rest_limits(s.L))
    pal[:, 0], pal[:, 1] = m, -m
    s.frame(key=True, palettes=[(idx, pal)], adds=[(s.fresh_ids(4), using(s, 4, [0, 1, 200, 255]))])
    s.frame(palettes=[entries(s, [1, 255])])
    s.valid(CAT, "rest_bits 10, 9, 12 at SH degree 3: entries of width 2 (M = 511, 255, 2047 at their extremes), "
                 "SH_REST indices of width 2", SEC + [S_CODES, S_VALIDITY])

    hf = HeaderFields(1, G, replace(NARROW, rest_bits=(6, 16, 16), rest_range=(1.0, 0.0, -1.0), sh_palette=32),
                      "custom-palette", required_features=craft.SH_PALETTE)
    s = stream(g, "pal_entry_width_from_used_degrees", hf)
    s.frame(key=True, palettes=[entries(s, [4, 31])], adds=[(s.fresh_ids(3), using(s, 3, [4, 31]))])
    s.valid(CAT, "SH degree 1 with rest_bits 6, 16, 16: entries have SH_REST's width from rest_bits[0 .. d-1] "
                 "(1 byte); the unused rest entries are ignored", SEC + [S_CODES, S_QDOMAIN])

    s = stream(g, "pal_update_masks_sh3", hf_preset("small", 3))
    used = [10, 11, 12, 13]
    s.frame(key=True, palettes=[entries(s, used)], adds=[(s.fresh_ids(8), using(s, 8, used))])
    live = s.live()
    ups = []
    for rows, mask in (([0, 4], 0x1F), ([1, 5], 0x20), ([2, 6], 0x3F), ([3, 7], 0x24)):
        new = using(s, 2, used)
        ups.append((live[rows], mask, s.residuals(live[rows], mask, new=new)))
    s.frame(updates=ups)
    s.valid(CAT, "UPDATE blocks of masks 0x1F, 0x20, 0x3F and 0x24 at SH degree 3 with a palette: 1 + popcount(mask) "
                 "sections each (SH_REST is one index section)", SEC + [S_CODES])

    s = stream(g, "pal_many_entries_zstd", hf_preset("small", 3))
    used = np.sort(s.rng.choice(1 << 16, 300, replace=False))
    enc = Encoding(compression="zstd",
                   attr=lambda a, w, r: craft.DELTA | craft.ZIGZAG | (craft.SHUFFLE if w > 1 else 0))
    s.frame(key=True, palettes=[entries(s, used)], adds=[(s.fresh_ids(40), using(s, 40, used))], enc=enc)
    s.valid(CAT, "300 entries and 40 Gaussians, every section zstd-compressed, entries with DELTA and ZIGZAG",
            SEC + [S_SECTIONS], state=False)

    # the palette entries of a composed frame
    hf = hf_palette(2)
    prof = decode_header(craft.header(hf))[0].profile

    def delta(s: Stream, model, seq, base, key=False, **ops):
        part = Stream(g, s.vid + "/part", hf)
        part.model = model
        rec = part.frame(seq=seq, base=base, key=key, digest=None, **ops)
        return decode_frame(rec, prof)[0]

    def composed(s: Stream, c, digest):
        ops = read_frame_ops(FrameEncoder(prof).encode(c), s.L, s.live())
        s.frame(key=ops.keyframe, seq=ops.seq, base=ops.base_seq, digest=digest, **ops.blocks())

    s = stream(g, "pal_compose_same_entry", hf)
    s.frame(key=True, palettes=[entries(s, [2, 5])], adds=[(s.fresh_ids(4), using(s, 4, [2, 5]))])
    m = s.model.copy()
    x = s.fresh_ids(1)
    d1 = delta(s, m, s.seq + 1, s.seq, palettes=[entries(s, [2, 7])], adds=[(x, using(s, 1, [2]))])
    saved, s.model = s.model, m
    res = s.residuals(x, 0x20, new=using(s, 1, [7]))
    s.model = saved
    d2 = delta(s, m, s.seq + 2, s.seq + 1, palettes=[entries(s, [2, 9])], updates=[(x, 0x20, res)])
    composed(s, compose(d1, d2, prof), m.digest())
    s.valid(CAT, "compose(PALETTE {2, 7} + ADD x on 2, PALETTE {2, 9} + UPDATE x to 7): one frame whose entry 2 is "
                 "the second delta's", [S_PALETTE, S_COMPOSE, S_OPS])

    s = stream(g, "pal_compose_keyframe_then_delta", hf)
    m = s.model.copy()
    x = s.fresh_ids(3)
    d1 = delta(s, m, 1, 0, key=True, palettes=[entries(s, [0, 1, 2])], adds=[(x, using(s, 3, [0, 1, 2]))])
    d2 = delta(s, m, 2, 1, palettes=[zero_entries(s, [1])], deletes=[x[:1]])
    composed(s, compose(d1, d2, prof), m.digest())
    s.add_frame(1)
    s.valid(CAT, "compose(keyframe with entries 0, 1, 2, delta zeroing entry 1 and deleting a Gaussian) is a keyframe "
                 "with the entry folded in", [S_PALETTE, S_COMPOSE, S_KEYFRAME])

    def ids_limit(past):
        s = stream(g, f"lim_palette_ids_per_frame_{'past' if past else 'at'}", hf_palette(1, 64),
                   {"max_ids_per_frame": 8})
        s.frame(key=True, palettes=[entries(s, range(5))], adds=[(s.fresh_ids(3), using(s, 3, range(5)))])
        s.frame(palettes=[entries(s, range(10, 18 + past))], error="LIMIT_EXCEEDED" if past else None, model=False)
        return s
    ids_limit(False).valid("limits", "max_ids_per_frame 8: a keyframe of 5 entries and 3 adds, then 8 entries",
                           [S_LIMITS, S_PALETTE])
    ids_limit(True).invalid("limits", "a PALETTE block of 9 entries, max_ids_per_frame 8 (PALETTE counts count)",
                            [S_LIMITS, S_PALETTE])


def gen_palette_invalid(g: VectorWriter) -> None:
    """One defect each: palette indices and entries, block structure, header rules, digest."""
    def keyed(vid, hf=None, n=4):
        s = stream(g, vid, hf or hf_palette(2))
        used = [1, 2, 3]
        s.frame(key=True, palettes=[entries(s, used)], adds=[(s.fresh_ids(n), using(s, n, used))])
        return s

    value = SEC + [S_IDRULES]
    for vid, blocks, code, desc in [
        ("pal_index_out_of_range", [[3, 16]], "BAD_VALUE", "PALETTE index 16 with sh_palette 16"),
        ("pal_indices_descending", [[5, 3]], "BAD_VALUE", "PALETTE indices 5, 3 (descending)"),
        ("pal_indices_equal", [[4, 4]], "DUPLICATE_ID", "PALETTE indices 4, 4 in one block"),
        ("pal_index_in_two_blocks", [[1, 4], [4, 9]], "DUPLICATE_ID", "PALETTE index 4 in two blocks"),
    ]:
        s = keyed(vid)
        s.frame(palettes=[entries(s, b) for b in blocks], error=code)
        s.invalid(CAT, desc, value)

    s = keyed("pal_entry_code_out_of_range")
    idx, pal = entries(s, [5, 6])
    pal[3 + 2, 1] = 8     # a degree-2 component (band 2 of R): rest_bits 4, M = 7
    s.frame(palettes=[(idx, pal)], error="BAD_VALUE")
    s.invalid(CAT, "PALETTE entry with a degree-2 component 8 (rest_bits 4: valid -7..7)", SEC + [S_VALIDITY])

    s = keyed("pal_entry_code_below_range")
    idx, pal = entries(s, [5])
    pal[0, 0] = -16       # degree 1: rest_bits 5, M = 15
    s.frame(palettes=[(idx, pal)], error="BAD_VALUE")
    s.invalid(CAT, "PALETTE entry with a degree-1 component -16 (rest_bits 5: valid -15..15)", SEC + [S_VALIDITY])

    s = keyed("pal_add_index_out_of_range")
    c = using(s, 2, [1, 2])
    c[5][0, 1] = 16
    s.frame(adds=[(s.fresh_ids(2), c)], error="BAD_VALUE")
    s.invalid(CAT, "ADD of a Gaussian whose SH_REST index is 16 with sh_palette 16", SEC + [S_VALIDITY])

    for vid, old, r, desc in [("pal_update_index_past_palette", 15, 1, "index 15 + residual 1 = 16, sh_palette 16"),
                              ("pal_update_index_wraps_below_zero", 0, 0xFFFF,
                               "index 0 + residual 65535 wraps to 65535, sh_palette 16")]:
        s = stream(g, vid, hf_palette(2))
        c = using(s, 3, [old])
        s.frame(key=True, palettes=[entries(s, [old])], adds=[(s.fresh_ids(3), c)])
        ids = s.live()[1:2]
        res = s.residuals(ids, 0x20, new=s.codes_of(ids))
        res[5][0, 0] = r
        s.frame(updates=[(ids, 0x20, res)], error="BAD_VALUE")
        s.invalid(CAT, f"UPDATE of an SH_REST palette index: {desc}", SEC + [S_VALIDITY, S_CODES])

    # block structure (compact palette SH 2: a PALETTE block has 1 + 2 sections)
    meta = SEC + [S_SECTIONS]
    for vid, tweak, enc, desc in [
        ("pal_block_missing_band", lambda: set_block(0, sections=[0, 1]), None,
         "PALETTE block with 2 sections at SH degree 2 (needs 1 + 2)"),
        ("pal_block_extra_section", lambda: set_block(0, sections=[0, 1, 2, 2]), None, "PALETTE block with 4 sections"),
        ("pal_index_section_width_1", lambda: set_section(0, width=1), None,
         "PALETTE indices section declares width 1 (u16: 2)"),
        ("pal_entry_band_width_2", lambda: set_section(2, width=2), None,
         "PALETTE band 2 section declares width 2 (entries of rest_bits 5, 4: width 1)"),
        ("pal_entry_band_raw_size", lambda: _grow_section(1, 3), Encoding(compression="none"),
         "uncompressed PALETTE band 1 section with 3 extra bytes (raw_size = stored_size = count*9 + 3)"),
    ]:
        s = keyed(vid)
        s.frame(palettes=[entries(s, [4, 5, 6])], tweak=tweak(), enc=enc, error="MALFORMED", model=False)
        s.invalid(CAT, desc, meta)

    s = stream(g, "pal_block_without_palette", hf_preset("compact", 2))
    s.add_frame(3, key=True)
    s.frame(palettes=[entries(s, [0, 1])], error="MALFORMED")
    s.invalid(CAT, "a well-formed PALETTE block (kind 6) in a stream without an SH palette", [S_PALETTE, S_OPS])

    s = keyed("pal_add_rest_as_bands", hf_preset("small", 3))
    ids, c = s.fresh_ids(2), s.codes(2)
    bands = [x for x in c]
    bands[5] = rand_entries(s.L, 2, s.rng)   # SH_REST as 3K component codes, laid out as 3 bands
    blocks, pl = craft.op_blocks(3, adds=[(ids, bands)])

    def as_bands(ff, p):
        ff.blocks, ff.sections = blocks, pl.descs
        p.parts = pl.parts
    s.frame(adds=[(ids, c)], tweak=as_bands, error="MALFORMED", model=False)
    s.invalid(CAT, "SH degree 3 with a palette: ADD with SH_REST as 3 band sections (1 + 5 + 3 sections; needs 1 + 5 "
                   "+ 1)", SEC + [S_CODES])

    s = keyed("pal_update_rest_as_bands", hf_preset("small", 2))
    ids = s.live()[:2]
    res = [np.zeros((s.L.comps(a), 2), x.dtype) for a, x in enumerate(s.codes(2))]
    res[5] = rand_entries(s.L, 2, s.rng)
    blocks, pl = craft.op_blocks(2, updates=[(ids, 0x20, res)])

    def as_bands_u(ff, p):
        ff.blocks, ff.sections = blocks, pl.descs
        p.parts = pl.parts
    s.frame(updates=[(ids, 0x20, s.residuals(ids, 0x20))], tweak=as_bands_u, error="MALFORMED", model=False)
    s.invalid(CAT, "SH degree 2 with a palette: UPDATE of mask 0x20 with 2 band sections (needs 1 index section)",
              SEC + [S_CODES])

    hdr = [S_HEADER, S_QDOMAIN, S_PALETTE]
    for vid, hf, desc in [
        ("pal_hdr_bit0_without_sh_palette", hf_palette(1, 0), "required_features bit 0 without sh_palette"),
        ("pal_hdr_bit0_lossless", hf_preset("lossless", 1, required_features=craft.SH_PALETTE),
         "required_features bit 0 in a lossless stream (no Quantization, so no sh_palette)"),
        ("pal_hdr_sh_palette_without_bit0", hf_palette(1, 16, required_features=0),
         "sh_palette 16 without required_features bit 0"),
        ("pal_hdr_sh_palette_65537", hf_palette(1, 65537), "sh_palette 65537 (at most 65536)"),
        ("pal_hdr_sh_palette_at_sh0", hf_palette(0, 16), "sh_palette 16 at SH degree 0"),
    ]:
        g.header_invalid(vid, CAT, f"stream header with {desc}", hdr, craft.header(hf, minor=1), "BAD_HEADER",
                         ref_records=False)
    g.header_invalid("pal_hdr_bit0_and_bit1", CAT,
                     "required_features bits 0 and 1 with sh_palette 16: bit 1 is unknown (UNSUPPORTED_FEATURE)",
                     [S_HEADER, S_VERSION, S_PALETTE],
                     craft.header(hf_palette(1, 16, required_features=3), minor=1), "UNSUPPORTED_FEATURE",
                     ref_records=True)

    dig = [S_PALETTE, S_DIGEST, S_APPLY]

    def digest_vector(vid, desc, edit):
        s = keyed(vid)
        pal = [entries(s, [2, 8])]
        trial = s.model.copy()
        t = Stream(g, vid + "/trial", s.hf)
        t.model = trial
        t.frame(palettes=pal)
        s.frame(palettes=pal, digest=edit(s, trial), error="DIGEST_MISMATCH")
        s.invalid(CAT, desc, dig)

    def entry_off_by_one(s, trial):
        e = dict(trial.palette)
        e[8] = (e[8][0] ^ 1,) + e[8][1:]
        trial.palette = e
        return trial.digest()
    digest_vector("pal_digest_mismatch_entry", "digest computed with one code of entry 8 one off: only the palette "
                                               "differs", entry_off_by_one)
    digest_vector("pal_digest_counts_entries", "digest count includes the 4 non-zero palette entries",
                  lambda s, t: (t.digest()[0] + 4,) + t.digest()[1:])

    def zero_entry_hashed(s, trial):
        h = record_hashes(entry_words(s.L, 0, (0,) * s.L.rest_comps))
        d = trial.digest()
        return d[0], (d[1] + h[0]) & 0xFFFFFFFF, (d[2] + h[1]) & 0xFFFFFFFF
    digest_vector("pal_digest_hashes_zero_entry", "digest with a record for entry 0, which is all zero (never set)",
                  zero_entry_hashed)
