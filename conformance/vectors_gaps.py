"""Vectors for the gap code (SPEC.md 4.4, compression 2, 1.4): a section of one component of strictly
ascending values of 1, 2 or 4 bytes stored as an order byte k and, per value, the exp-Golomb code of
order k of its gap. The ranks of UPDATE_RANKED and DELETE_RANKED at orders 0, 1 (the spec's example,
byte for byte), 5 and 31 (8w - 1), blocks of count 0 (the order byte alone), PALETTE indices and SH_REST
palette indices (u16), OPACITY codes and residuals of 1, 2 and 4 bytes (f32 bit patterns), values up to
2^(8w) - 1 and zero runs of the longest length a code may have, one section in two roles, a stream from
the codec Encoder; and, invalid, every rule of gap_decode (DECOMPRESSION_FAILED), the code on sections it
does not apply to (MALFORMED: 8-byte ids, C = 3 and 4, filters, a reference of C = 3 to a section that
is valid as ranks), the checks before it (filter bits 4..7, width, raw_size; MALFORMED before any byte
is decoded) and rules after it that the decoded values fail (ranks past the live ids, two blocks naming
one rank, palette indices past sh_palette, codes past their bits). Every stream's header is written
with version_minor 4, except the one that shows readers do not act on it."""
from __future__ import annotations

import numpy as np

from codec import Encoder, Gaussians, Grid, Profile

from . import craft
from .craft import CHANNEL, DELTA, GAPS, Encoding, HeaderFields
from .frame_reader import read_frame_ops
from .refmodel import decode_stream
from .spec_index import (S_APPLY, S_CODES, S_ERRORS, S_HEADER_REC, S_IDRULES, S_LOSSLESS, S_OPS, S_PALETTE,
                         S_QUANT, S_SECTIONS, S_VALIDITY, S_VERSION)
from .vector_stream import G, Stream, VectorWriter, hf_preset, set_section
from .vectors_palette import entries, hf_palette
from .vectors_ranked import ranked_update
from .vectors_sections import _set_stored

CAT = "gaps"
SEC = [S_SECTIONS]
RANKS = SEC + [S_OPS]
BAD = SEC + [S_ERRORS]
OPACITY = 3                   # attribute index of OPACITY (C = 1); 5 is SH_REST, one u16 index with a palette


def stream(g: VectorWriter, vid: str, hf: HeaderFields | None = None, minor: int = 4) -> Stream:
    """An empty stream whose header says version 1.``minor``."""
    hf = hf or hf_preset("compact", 1)
    return g.stream(vid, hf=hf, header=craft.header(hf, minor=minor), key_n=None)


def keyed(g: VectorWriter, vid: str, n: int, hf: HeaderFields | None = None, minor: int = 4) -> Stream:
    """A stream holding a keyframe of n Gaussians."""
    s = stream(g, vid, hf, minor)
    s.add_frame(n, key=True)
    return s


def gaps(*roles, k: int | None = None) -> Encoding:
    """Sections of ``roles`` ("ranks", "palette", attribute indices) gap coded at order k."""
    return Encoding(gaps=frozenset(roles), gap_k=k)


def code(k: int, bits: str) -> bytes:
    """Gap-coded stored bytes written out: the order byte k, then ``bits`` (spaces are for the reader), then
    zero bits to the end of the last byte."""
    b = bits.replace(" ", "")
    b += "0" * (-len(b) % 8)
    return bytes([k]) + (int(b, 2).to_bytes(len(b) // 8, "big") if b else b"")


def gap_sections(ff) -> list[int]:
    return [i for i, d in enumerate(ff.sections) if d.compression == GAPS]


def stored(got: dict):
    """A frame tweak that keeps the stored bytes of the frame's gap-coded sections in ``got`` (a list)."""
    def t(ff, pl):
        got.setdefault("parts", []).extend(pl.parts[i] for i in gap_sections(ff))
    return t


def recode(data: bytes):
    """A frame tweak: the frame's one gap-coded section stores ``data`` instead (the sections after it move
    along)."""
    def t(ff, pl):
        (i,) = gap_sections(ff)
        _set_stored(ff, pl, i, data, GAPS)
    return t


def as_gap_code(i: int, data: bytes):
    """A frame tweak: section i stores ``data`` as a gap code (compression 2, no filters)."""
    def t(ff, pl):
        _set_stored(ff, pl, i, data, GAPS)
        ff.sections[i].filters = 0
    return t


def with_opacity(s: Stream, values) -> list[np.ndarray]:
    """Random valid codes of len(values) Gaussians whose OPACITY codes are ``values`` (in id order)."""
    c = s.codes(len(values))
    c[OPACITY][0] = np.asarray(values, np.uint64).astype(c[OPACITY].dtype)
    return c


def residuals_of(s: Stream, ids, a: int, values) -> list[np.ndarray]:
    """UPDATE residuals of attribute ``a`` (one component) for ``ids``: ``values`` as they are stored."""
    res = s.residuals(ids, 1 << a)
    res[a][0] = np.asarray(values, np.uint64).astype(res[a].dtype)
    return res


def gen_gaps(g: VectorWriter) -> None:
    """Valid streams with gap-coded sections."""
    _ranks(g)
    _palette_indices(g)
    _opacity(g)
    s = _encoder_stream(g, "gaps_encoder")
    s.valid(CAT, "compact SH 1: 3,000 Gaussians, a keyframe and four deltas (moves, fades, deletes, adds) from the "
                 "codec Encoder with ranked ids and the gap code (it gap codes rank sections where that is "
                 "smaller); written with ranks kept and every rank section gap coded at k = 2",
            RANKS + [S_QUANT], state=False)

    s = keyed(g, "gaps_header_minor_3", 8, minor=3)
    s.frame(ranked_deletes=[np.array([3, 4], np.uint32)], ranked_updates=[ranked_update(s, [0, 5], 0x01)],
            enc=gaps("ranks", k=1))
    s.valid(CAT, "gap-coded ranks in a stream whose header says version 1.3: readers do not act on version_minor",
            RANKS + [S_HEADER_REC, S_VERSION])


def _ranks(g: VectorWriter) -> None:
    s = keyed(g, "gaps_spec_example", 14)
    got: dict = {}
    enc = gaps("ranks", k=1)
    s.frame(ranked_deletes=[np.array([3, 4, 10], np.uint32)], enc=enc, tweak=stored(got))
    s.frame(ranked_updates=[ranked_update(s, [3, 4, 10], 0x09)], enc=enc, tweak=stored(got))
    assert got["parts"] == [bytes.fromhex("0159C0")] * 2, [p.hex() for p in got["parts"]]
    s.valid(CAT, "SPEC.md 4.4's example: ranks 3, 4, 10 with k = 1 stored as 01 59 C0, in a DELETE_RANKED block "
                 "(14 live ids) and then in an UPDATE_RANKED block (11 live ids, rank 10 the last)", RANKS)

    s = keyed(g, "gaps_ranks_order_0", 300)
    dels = np.r_[0:10, 20:25, 299].astype(np.uint32)
    s.frame(ranked_deletes=[dels], ranked_updates=[ranked_update(s, np.r_[30:40, 100], 0x01)], enc=gaps("ranks", k=0))
    got = {}
    s.frame(ranked_updates=[ranked_update(s, [0], 0x08)], ranked_deletes=[np.array([283], np.uint32)],
            enc=gaps("ranks", k=0), tweak=stored(got))
    assert got["parts"] == [code(0, "00000000 1 00011100"), code(0, "1")], [p.hex() for p in got["parts"]]
    s.valid(CAT, "300 live ids: DELETE_RANKED of ranks 0..9, 20..24, 299 and UPDATE_RANKED of 30..39, 100 with "
                 "k = 0 (a run of consecutive ranks takes a bit each); then rank 283 (the last, z = 8) and rank 0 "
                 "(the code 1)", RANKS)

    s = keyed(g, "gaps_ranks_order_5", 2000, hf_preset("compact", 0))
    rng = s.rng
    picked = np.sort(rng.choice(2000, 120, replace=False))
    up, dl = picked[::2].astype(np.uint32), picked[1::2].astype(np.uint32)
    enc = gaps("ranks", k=5)
    s.frame(ranked_updates=[ranked_update(s, up, 0x09)], ranked_deletes=[dl], enc=enc)
    s.frame(ranked_updates=[ranked_update(s, np.sort(rng.choice(1940, 40, replace=False)), 0x02)], enc=enc)
    s.valid(CAT, "2,000 Gaussians: UPDATE_RANKED of 60 scattered ranks and DELETE_RANKED of 60 others, then "
                 "UPDATE_RANKED of 40, ranks gap coded with k = 5 (gaps of about 2^5)", RANKS)

    s = keyed(g, "gaps_ranks_order_31", 50)
    enc = gaps("ranks", k=31)
    s.frame(ranked_deletes=[np.array([0, 1, 49], np.uint32)], ranked_updates=[ranked_update(s, [2, 48], 0x3F)],
            enc=enc)
    got = {}
    s.frame(ranked_deletes=[np.array([46], np.uint32)], enc=enc, tweak=stored(got))
    assert got["parts"] == [code(31, "1" + format(46, "031b"))], got["parts"][0].hex()
    s.valid(CAT, "ranks gap coded with k = 31 (8w - 1: every code a one bit and 31 bits): DELETE_RANKED of 0, 1, "
                 "49 and UPDATE_RANKED of 2, 48 of every attribute; then DELETE_RANKED of 46 (the last)", RANKS)

    s = stream(g, "gaps_empty_blocks")
    got = {}
    s.frame(ranked_deletes=[np.zeros(0, np.uint32)], enc=gaps("ranks", k=0), tweak=stored(got))
    s.frame(key=True, adds=[(s.fresh_ids(5), s.codes(5))], ranked_updates=[ranked_update(s, [], 0x3F)],
            enc=gaps("ranks", k=7), tweak=stored(got))
    s.frame(ranked_deletes=[np.zeros(0, np.uint32)], ranked_updates=[ranked_update(s, [], 0x01)],
            enc=gaps("ranks", k=31), tweak=stored(got))
    assert got["parts"] == [b"\x00", b"\x07", b"\x1f", b"\x1f"], got["parts"]
    s.valid(CAT, "DELETE_RANKED and UPDATE_RANKED blocks of count 0 whose ranks sections are gap coded: the order "
                 "byte alone (00, 07, 1F), against the empty state, in a keyframe and in a delta", RANKS)


def _palette_indices(g: VectorWriter) -> None:
    s = stream(g, "gaps_palette_indices", hf_preset("small", 2))
    index = [0, 1, 2, 700, 65535]
    c = s.codes(5)
    c[5][0] = index
    s.frame(key=True, palettes=[entries(s, index)], adds=[(s.fresh_ids(5), c)], enc=gaps("palette", 5, k=15))
    got = {}
    s.frame(palettes=[entries(s, []), entries(s, [65535])], enc=gaps("palette", k=0), tweak=stored(got))
    assert got["parts"] == [b"\x00", code(0, "0" * 16 + "1" + "0" * 16)], [p.hex() for p in got["parts"]]
    L = s.live()
    s.frame(updates=[(L[[0, 2, 4]], 0x20, residuals_of(s, L[[0, 2, 4]], 5, [1, 300, 65535]))],
            ranked_updates=[(np.array([1, 3], np.uint32), 0x20, residuals_of(s, L[[1, 3]], 5, [7, 9]))],
            enc=gaps("ranks", 5, k=4))
    s.valid(CAT, "'small' preset SH 2 (sh_palette 65536): a PALETTE block of indices 0, 1, 2, 700, 65535 and an ADD "
                 "whose SH_REST palette indices (C = 1, u16) are the same, gap coded with k = 15 (8w - 1); PALETTE "
                 "blocks of count 0 (the order byte alone) and of index 65535 with k = 0 (16 zeros: the longest "
                 "run); UPDATE palette index residuals 1, 300, 65535 and UPDATE_RANKED ones 7, 9 with their ranks, "
                 "k = 4", SEC + [S_PALETTE, S_OPS])


def _opacity(g: VectorWriter) -> None:
    s = stream(g, "gaps_opacity_width_1", hf_preset("compact", 0))
    s.frame(key=True, adds=[(s.fresh_ids(8), with_opacity(s, [0, 1, 2, 3, 100, 200, 254, 255]))],
            enc=gaps(OPACITY, k=7))
    got = {}
    s.frame(adds=[(s.fresh_ids(1), with_opacity(s, [255]))], enc=gaps(OPACITY, k=0), tweak=stored(got))
    assert got["parts"] == [code(0, "00000000 1 00000000")], got["parts"][0].hex()
    L = s.live()
    s.frame(updates=[(L[[0, 3, 5, 8]], 0x08, residuals_of(s, L[[0, 3, 5, 8]], OPACITY, [0, 1, 128, 255]))],
            enc=gaps(OPACITY, k=3))
    s.valid(CAT, "compact SH 0: OPACITY codes (C = 1, u8) gap coded: an ADD of 8 with codes 0, 1, 2, 3, 100, 200, "
                 "254, 255 at k = 7 (8w - 1), an ADD of code 255 at k = 0 (8 zeros: the longest run), UPDATE "
                 "residuals 0, 1, 128, 255 at k = 3", SEC + [S_CODES])

    s = stream(g, "gaps_opacity_width_2", hf_preset("high", 0))
    s.frame(key=True, adds=[(s.fresh_ids(6), with_opacity(s, [5, 6, 7, 1000, 4000, 4095]))], enc=gaps(OPACITY, k=15))
    L = s.live()
    s.frame(updates=[(L[[0, 1, 5]], 0x08, residuals_of(s, L[[0, 1, 5]], OPACITY, [1, 2, 65535]))],
            enc=gaps(OPACITY, k=0))
    s.valid(CAT, "'high' SH 0: OPACITY codes of 12 bits (u16) 5, 6, 7, 1000, 4000, 4095 gap coded at k = 15, then "
                 "UPDATE residuals 1, 2, 65535 (-1) at k = 0", SEC + [S_CODES, S_QUANT])

    s = stream(g, "gaps_lossless_opacity_width_4", hf_preset("lossless", 0))
    f32 = np.array([0.0, 0.5, 1.0, 2.0, 1e10, 3.4028234663852886e38], np.float32).view(np.uint32)
    s.frame(key=True, adds=[(s.fresh_ids(6), with_opacity(s, f32))], enc=gaps(OPACITY, k=20))
    L = s.live()
    s.frame(updates=[(L[[1, 2, 3]], 0x08, residuals_of(s, L[[1, 2, 3]], OPACITY, [1, 0x800000, 0xFFFFFFFF]))],
            enc=gaps(OPACITY, k=31))
    got = {}
    s.frame(updates=[(L[[4]], 0x08, residuals_of(s, L[[4]], OPACITY, [0xFFFFFFFF]))], enc=gaps(OPACITY, k=0),
            tweak=stored(got))
    assert got["parts"] == [code(0, "0" * 32 + "1" + "0" * 32)], got["parts"][0].hex()
    s.valid(CAT, "lossless SH 0: OPACITY float32 bit patterns (u32) of 0, 0.5, 1, 2, 1e10 and the largest float "
                 "gap coded at k = 20; UPDATE residuals 1, 2^23, 2^32 - 1 at k = 31 (the last gap with z = 1: "
                 "z + k = 32); a residual of 2^32 - 1 alone at k = 0 (32 zeros: the longest run)",
            SEC + [S_LOSSLESS])

    s = keyed(g, "gaps_section_shared_by_two_roles", 6, hf_preset("lossless", 0))
    L = s.live()
    s.frame(ranked_updates=[(np.array([0, 1, 3], np.uint32), 0x08, residuals_of(s, L[[0, 1, 3]], OPACITY, [0, 1, 3]))],
            enc=gaps("ranks", OPACITY, k=0), tweak=lambda ff, pl: ff.blocks[0].sections.__setitem__(1, 0))
    s.valid(CAT, "lossless SH 0: an UPDATE_RANKED block whose ranks 0, 1, 3 and OPACITY residuals 0, 1, 3 (u32 bit "
                 "patterns) reference one gap-coded section (C = 1, width 4 in both roles)", SEC + [S_OPS])


def _encoder_stream(g: VectorWriter, vid: str, n: int = 3000) -> Stream:
    """A keyframe of n Gaussians and four deltas from the codec Encoder with ranked ids and the gap code. Its
    frames must gap code some rank section, and the reference model must read them to the Encoder's digests;
    the vector holds their ops (ranked blocks kept as ranks) serialized with fixed section choices (every rank
    section gap coded at k = 2), so it does not change when the encoder's choices are tuned."""
    profile = Profile.preset("compact", 1, Grid(*G))
    enc = Encoder(profile, generator="gsd-conformance", ranked_ids=True, gap_code=True)
    s = stream(g, vid, HeaderFields.of(profile))
    rng = np.random.default_rng(41)
    g0 = Gaussians(rng.uniform(-6, 6, (n, 3)), rng.normal(-4, 0.5, (n, 3)), rng.normal(size=(n, 4)), rng.normal(size=n),
                   rng.normal(scale=0.6, size=(n, 3)), rng.normal(scale=0.15, size=(n, 9)))
    ids = enc.assign_ids(g0.positions)

    def subset(arr, rows):
        return Gaussians(*(np.asarray(x)[rows] for x in (arr.positions, arr.scales, arr.rotations, arr.opacities,
                                                          arr.sh_dc, arr.sh_rest)))

    def moved(rows):
        k = subset(g0, rows)
        return Gaussians(k.positions + 0.05, k.scales, k.rotations, k.opacities, k.sh_dc, k.sh_rest)

    def faded(rows):
        k = subset(g0, rows)
        return Gaussians(k.positions, k.scales, k.rotations, k.opacities - 1.0, k.sh_dc, k.sh_rest)

    order = np.argsort(ids)
    live = ids[order]
    pick = lambda m, pool: np.sort(rng.choice(pool, m, replace=False))   # noqa: E731
    first = pick(600, n)
    second = pick(150, np.setdiff1d(np.arange(n), first))
    gone = pick(300, np.setdiff1d(np.arange(n), np.r_[first, second]))
    kept = np.setdiff1d(np.arange(n), gone)
    extra = Gaussians(rng.uniform(-6, 6, (100, 3)), rng.normal(-4, 0.5, (100, 3)), rng.normal(size=(100, 4)),
                      rng.normal(size=100), rng.normal(scale=0.6, size=(100, 3)), rng.normal(scale=0.15, size=(100, 9)))
    deltas = [lambda: enc.make_delta(add=(ids, g0), keyframe=True),
              lambda: enc.make_delta(update=(live[first], moved(order[first]))),
              lambda: enc.make_delta(update=(live[second], faded(order[second])), delete=live[gone]),
              lambda: enc.make_delta(add=(enc.assign_ids(extra.positions), extra)),
              lambda: enc.make_delta(update=(live[kept[::7]], moved(order[kept[::7]])))]
    records = [enc.header_bytes()]
    fixed = gaps("ranks", k=2)
    for delta in deltas:
        rec = enc.encode_delta(delta())
        records.append(rec)
        ops = read_frame_ops(rec, s.L, s.live(), ranks=True)
        s.frame(key=ops.keyframe, seq=ops.seq, base=ops.base_seq, digest=ops.digest, enc=fixed, **ops.blocks())
    f = [craft.parse_frame_meta(craft.split_frame(r)[0]) for r in records[1:]]
    assert any(b.kind in (craft.UPDATE_RANKED, craft.DELETE_RANKED) and x.sections[b.sections[0]].compression == GAPS
               for x in f for b in x.blocks), "the Encoder gap coded no rank section"
    assert decode_stream(b"".join(records), {}) == (s.digests, None), "refmodel reads the Encoder's own bytes"
    return s


def gen_gaps_invalid(g: VectorWriter) -> None:
    """One defect each: every rule of gap_decode, the code where it does not apply, the checks before it and
    rules after it."""
    _decode_rules(g)
    _not_applicable(g)
    _after_decoding(g)


def _ranks_failing(g: VectorWriter, vid: str, data: bytes, desc: str, ranks=(3, 4, 10), live: int = 14) -> None:
    """A DELETE_RANKED block of ``ranks`` among ``live`` ids whose gap-coded ranks section stores ``data``."""
    s = keyed(g, vid, live)
    s.frame(ranked_deletes=[np.array(ranks, np.uint32)], enc=gaps("ranks", k=1), tweak=recode(data),
            error="DECOMPRESSION_FAILED", model=False)
    s.invalid(CAT, desc, BAD + [S_OPS])


def _opacity_failing(g: VectorWriter, vid: str, values, data: bytes, desc: str) -> None:
    """A compact SH 0 ADD whose gap-coded OPACITY section (u8) stores ``data`` instead of ``values``."""
    s = keyed(g, vid, 3, hf_preset("compact", 0))
    s.frame(adds=[(s.fresh_ids(len(values)), with_opacity(s, values))], enc=gaps(OPACITY), tweak=recode(data),
            error="DECOMPRESSION_FAILED", model=False)
    s.invalid(CAT, desc, BAD)


def _palette_failing(g: VectorWriter, vid: str, index, data: bytes, desc: str) -> None:
    """A 'small' SH 1 keyframe whose PALETTE block's gap-coded indices (u16) store ``data`` instead of ``index``."""
    s = stream(g, vid, hf_preset("small", 1))
    s.frame(key=True, palettes=[entries(s, index)], enc=gaps("palette"), tweak=recode(data),
            error="DECOMPRESSION_FAILED", model=False)
    s.invalid(CAT, desc, BAD + [S_PALETTE])


def _decode_rules(g: VectorWriter) -> None:
    """gap_decode's rules, each DECOMPRESSION_FAILED."""
    _ranks_failing(g, "gaps_order_32", bytes.fromhex("2059C0"), "DELETE_RANKED ranks (u32) whose order byte is 32 "
                   "(8w; then the spec example's codes): k must be below 8w")
    _ranks_failing(g, "gaps_order_255", bytes.fromhex("FF59C0"), "DELETE_RANKED ranks (u32) whose order byte is 255")
    _opacity_failing(g, "gaps_order_8_width_1", [1, 2], code(8, "1 00000000 1 00000000"),
                     "ADD OPACITY codes (u8) with order byte 8 (8w), then two codes of z = 0 and 8 bits")
    _palette_failing(g, "gaps_order_16_width_2", [1, 2], code(16, "1" + "0" * 16 + "1" + "0" * 16),
                     "PALETTE indices (u16) with order byte 16 (8w), then two codes of z = 0 and 16 bits")

    _ranks_failing(g, "gaps_zero_run_past_8w", code(30, "000 1" + "0" * 33), "DELETE_RANKED ranks (u32) at k = 30 "
                   "whose first code starts with 3 zeros (z + k = 33 > 32; the bytes hold the rest of such a code)")
    _opacity_failing(g, "gaps_zero_run_past_8w_width_1", [255], code(0, "000000000 1 000000000"),
                     "ADD OPACITY code (u8) at k = 0 whose code starts with 9 zeros (the longest run is 8)")

    _ranks_failing(g, "gaps_codes_past_end_in_run", bytes.fromhex("0158"), "DELETE_RANKED of 3 ranks stored as 01 "
                   "58: the third code's run of zeros reaches the end of the bytes")
    _ranks_failing(g, "gaps_codes_past_end_in_bits", bytes.fromhex("0159"), "DELETE_RANKED of 3 ranks stored as 01 "
                   "59 (the spec example without its last byte): the third code's 2 bits of t are missing")
    _ranks_failing(g, "gaps_count_past_codes", bytes.fromhex("0159C0"), "DELETE_RANKED of 4 ranks stored as 01 59 "
                   "C0, the spec example's 3 codes: the fourth code runs into the padding and past the end",
                   ranks=(3, 4, 10, 11))
    _ranks_failing(g, "gaps_empty_stored_bytes", b"", "DELETE_RANKED of 2 ranks whose gap-coded section stores no "
                   "bytes (stored_size 0): not even the order byte", ranks=(1, 2))
    _ranks_failing(g, "gaps_empty_block_no_order_byte", b"", "DELETE_RANKED of count 0 whose gap-coded section "
                   "(raw_size 0) stores no bytes: the order byte is required for n = 0 too", ranks=())

    _ranks_failing(g, "gaps_value_2_32", code(31, "1" + "1" * 31 + " 01" + "0" * 32), "DELETE_RANKED ranks (u32) "
                   "at k = 31: 2^31 - 1, then a gap of 2^31 (z = 1, t = 0) giving the value 2^32")
    _opacity_failing(g, "gaps_value_256_width_1", [254, 255], code(0, "00000000 1 00000000 1"),
                     "ADD OPACITY codes (u8) at k = 0: 255, then a gap of 0 giving the value 256")
    _palette_failing(g, "gaps_value_65536_width_2", [1, 2], code(15, "01 0" + "1" * 15 + " 1" + "0" * 15),
                     "PALETTE indices (u16) at k = 15: 65535 (z = 1, t = 2^15 - 1, z + k = 16), then a gap of 0 "
                     "giving the value 65536")

    _ranks_failing(g, "gaps_trailing_whole_byte", bytes.fromhex("0159C000"), "DELETE_RANKED ranks 3, 4, 10 stored "
                   "as 01 59 C0 00: the spec example and a whole zero byte after the codes")
    _ranks_failing(g, "gaps_empty_block_trailing_byte", bytes.fromhex("0000"), "DELETE_RANKED of count 0 stored as "
                   "00 00: the order byte, then a whole byte with no code", ranks=())
    _ranks_failing(g, "gaps_padding_last_bit_one", bytes.fromhex("0159C1"), "DELETE_RANKED ranks 3, 4, 10 stored as "
                   "01 59 C1: the last of the six padding bits is one")
    _ranks_failing(g, "gaps_padding_first_bit_one", bytes.fromhex("0159E0"), "DELETE_RANKED ranks 3, 4, 10 stored "
                   "as 01 59 E0: the first padding bit is one (as if a fourth code, of gap 0, began there)")


def _not_applicable(g: VectorWriter) -> None:
    """Compression 2 where the gap code does not apply (MALFORMED), and the section checks before it."""
    s = keyed(g, "gaps_ids_width_8", 6)
    L = s.live()
    s.frame(deletes=[L[[1, 3, 4]]], tweak=as_gap_code(0, craft.gap_code(L[None, [1, 3, 4]], 4)), error="MALFORMED",
            model=False)
    s.invalid(CAT, "DELETE_IDS whose ids section (u64) stores a valid gap code of its ids as compression 2: the gap "
                   "code needs w of 1, 2 or 4", BAD + [S_OPS])

    s = keyed(g, "gaps_position_c3", 6)
    L = s.live()
    s.frame(updates=[(L[[0, 2]], 0x01, s.residuals(L[[0, 2]], 0x01))],
            tweak=as_gap_code(1, craft.gap_code(np.array([[1, 2]], np.uint32), 0)), error="MALFORMED", model=False)
    s.invalid(CAT, "UPDATE of 2 whose POSITION residual section (C = 3, u32, raw_size 24) stores the gap code of 2 "
                   "values as compression 2: the gap code needs C = 1", BAD)

    s = keyed(g, "gaps_order_c3_before_decoding", 6)
    L = s.live()
    s.frame(updates=[(L[[0, 2]], 0x01, s.residuals(L[[0, 2]], 0x01))], tweak=as_gap_code(1, b""), error="MALFORMED",
            model=False)
    s.invalid(CAT, "UPDATE of 2 whose POSITION residual section (C = 3) is marked compression 2 and stores no bytes "
                   "(no order byte either): the section is refused before its bytes are decoded, so MALFORMED, not "
                   "DECOMPRESSION_FAILED (decode_section's order)", BAD)

    s = keyed(g, "gaps_section_shared_c1_and_c3", 14)
    L = s.live()
    s.frame(ranked_deletes=[np.array([3, 4, 10], np.uint32)], updates=[(L[[5]], 0x01, s.residuals(L[[5]], 0x01))],
            enc=gaps("ranks", k=1), tweak=lambda ff, pl: ff.blocks[1].sections.__setitem__(1, 0), error="MALFORMED",
            model=False)
    s.invalid(CAT, "DELETE_RANKED ranks 3, 4, 10 gap coded as 01 59 C0 (raw_size 12), a section that an UPDATE of 1 "
                   "also references as its POSITION residuals (C = 3, raw_size 12): valid as ranks, MALFORMED as "
                   "a section of C = 3 (the rule holds at every reference)", BAD + [S_OPS])

    s = keyed(g, "gaps_rotation_c4", 4, hf_preset("compact", 0))
    s.frame(adds=[(s.fresh_ids(3), s.codes(3))], tweak=as_gap_code(3, craft.gap_code(np.array([[0, 1, 2]], np.uint8),
            0)), error="MALFORMED", model=False)
    s.invalid(CAT, "ADD of 3 whose ROTATION section (C = 4, u8) stores the gap code of 3 values as compression 2",
              BAD)

    for vid, filters, desc in [
        ("gaps_with_delta", DELTA, "DELTA (filters 0x01)"),
        ("gaps_with_channel", CHANNEL, "CHANNEL (filters 0x08; a no-op on C = 1 otherwise)"),
    ]:
        s = keyed(g, vid, 14)
        s.frame(ranked_deletes=[np.array([3, 4, 10], np.uint32)], enc=gaps("ranks", k=1),
                tweak=set_section(0, filters=filters), error="MALFORMED", model=False)
        s.invalid(CAT, f"DELETE_RANKED ranks gap coded as 01 59 C0 with {desc}: the gap code takes no filter", BAD)

    s = keyed(g, "gaps_filter_bit_4_first", 14)
    s.frame(ranked_deletes=[np.array([3, 4, 10], np.uint32)], enc=gaps("ranks", k=1),
            tweak=set_section(0, filters=0x10), error="UNSUPPORTED_FEATURE", model=False)
    s.invalid(CAT, "DELETE_RANKED ranks gap coded as 01 59 C0 with filter bit 4: the unknown filter bits are "
                   "checked before the compression (decode_section's order), so UNSUPPORTED_FEATURE, not the gap "
                   "code's MALFORMED", SEC + [S_VERSION])

    s = keyed(g, "gaps_width_2_declared", 14)
    s.frame(ranked_deletes=[np.array([3, 4, 10], np.uint32)], enc=gaps("ranks", k=1), tweak=set_section(0, width=2),
            error="MALFORMED", model=False)
    s.invalid(CAT, "DELETE_RANKED ranks gap coded as 01 59 C0, raw_size 12, declaring width 2 (the ranks role is "
                   "u32): the width is checked as for any section", BAD)

    s = keyed(g, "gaps_raw_size_is_stored_size", 14)
    s.frame(ranked_deletes=[np.array([3, 4, 10], np.uint32)], enc=gaps("ranks", k=1),
            tweak=set_section(0, raw_size=3), error="MALFORMED", model=False)
    s.invalid(CAT, "DELETE_RANKED ranks gap coded as 01 59 C0 with raw_size 3 (the stored size): raw_size is n * C "
                   "* w = 12 whatever the compression", BAD)

    s = keyed(g, "gaps_compression_3_ranks", 14)
    s.frame(ranked_deletes=[np.array([3, 4, 10], np.uint32)], enc=gaps("ranks", k=1),
            tweak=set_section(0, compression=3), error="UNSUPPORTED_FEATURE", model=False)
    s.invalid(CAT, "DELETE_RANKED ranks stored as the gap code 01 59 C0 but marked compression 3, which 1.4 does "
                   "not define", SEC + [S_VERSION])


def _after_decoding(g: VectorWriter) -> None:
    """Gap codes that decode, to values that a later rule refuses."""
    idrules = RANKS + [S_IDRULES, S_APPLY]
    s = keyed(g, "gaps_rank_past_live", 6)
    s.frame(ranked_deletes=[np.array([0, 2, 6], np.uint32)], enc=gaps("ranks", k=1), error="ID_MISSING")
    s.invalid(CAT, "DELETE_RANKED of gap-coded ranks 0, 2, 6 with 6 live ids: the code is valid, rank 6 names no id",
              idrules)

    s = keyed(g, "gaps_rank_2_32_minus_1", 6)
    got: dict = {}
    s.frame(ranked_deletes=[np.array([0, 0xFFFFFFFF], np.uint32)], enc=gaps("ranks", k=31), tweak=stored(got),
            error="ID_MISSING")
    assert got["parts"] == [code(31, "1" + "0" * 31 + " 01 0" + "1" * 30 + "0")], got["parts"][0].hex()
    s.invalid(CAT, "DELETE_RANKED of gap-coded ranks 0 and 2^32 - 1 at k = 31 (the largest value a u32 code gives: "
                   "z = 1, z + k = 32): a valid code, the rank names no id", idrules)

    s = keyed(g, "gaps_rank_in_two_blocks", 6)
    s.frame(ranked_deletes=[np.array([1, 2], np.uint32), np.array([2, 5], np.uint32)], enc=gaps("ranks", k=0),
            error="DUPLICATE_ID")
    s.invalid(CAT, "two DELETE_RANKED blocks with gap-coded ranks 1, 2 and 2, 5: each block ascends, rank 2 is in "
                   "both", idrules)

    s = stream(g, "gaps_palette_index_past_sh_palette", hf_palette(1, 16))
    s.frame(key=True, palettes=[entries(s, [3, 16])], enc=gaps("palette", k=2), error="BAD_VALUE")
    s.invalid(CAT, "sh_palette 16: a PALETTE block whose gap-coded indices are 3, 16: a valid code, index 16 is past "
                   "the palette", SEC + [S_PALETTE, S_IDRULES])

    s = keyed(g, "gaps_opacity_past_bits", 3, hf_preset("high", 0))
    s.frame(adds=[(s.fresh_ids(2), with_opacity(s, [1, 4096]))], enc=gaps(OPACITY, k=11), error="BAD_VALUE")
    s.invalid(CAT, "'high' SH 0 (12-bit OPACITY, u16): an ADD whose gap-coded OPACITY codes are 1, 4096: a valid "
                   "code of u16 values, 4096 is past 12 bits", SEC + [S_VALIDITY, S_APPLY])
