"""Vectors for the CHANNEL filter (SPEC.md 4.4, 1.3): colour sections stored as differences between
their three channels, summed back after the other filters are undone. SH_DC, SH_REST bands and PALETTE
entry bands, as codes and as residuals, with every combination of the other filters, both widths and
both compressions; the sum on every section whose component count is a multiple of 3 (scale and
position too) and the no-op on the others (ids, ranges, ranks, rotation, opacity, empty sections); a
stream from the codec Encoder; codes validated after the sum; and filter bits 4..7, still unknown.
Every stream's header is written with version_minor 3, except the one that shows readers do not act
on it."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from codec import Encoder, Gaussians, Grid, Profile

from . import craft
from .attribute_codes import rest_limits
from .craft import CHANNEL, DELTA, SHUFFLE, ZIGZAG, Encoding, HeaderFields, QuantFields
from .frame_reader import read_frame_ops
from .refmodel import decode_stream
from .spec_index import (S_APPLY, S_CODES, S_HEADER_REC, S_IDS, S_OPS, S_PALETTE, S_PRESETS, S_QUANT, S_SECTIONS,
                         S_VALIDITY, S_VERSION)
from .vector_stream import G, NARROW, Stream, VectorWriter, hf_preset, set_section
from .vectors_implicit import implicit, placed
from .vectors_palette import entries, hf_palette, using
from .vectors_ranked import ranked_update
from .vectors_sections import every_section_filtered

CAT = "channel"
SEC = [S_SECTIONS]
SH_DC = 4                       # attribute index of SH_DC; 5 is SH_REST
NAMES = ((DELTA, "DELTA"), (ZIGZAG, "ZIGZAG"), (SHUFFLE, "SHUFFLE"), (CHANNEL, "CHANNEL"))


def stream(g: VectorWriter, vid: str, hf: HeaderFields | None = None, minor: int = 3) -> Stream:
    """An empty stream whose header says version 1.``minor``."""
    hf = hf or hf_preset("compact", 1)
    return g.stream(vid, hf=hf, header=craft.header(hf, minor=minor), key_n=None)


def on(attrs, filters: int, **kw) -> Encoding:
    """Sections of the attributes ``attrs`` (5: SH_REST bands, palette indices and PALETTE entry bands)
    with ``filters``, the others with the default filters; ``kw``: other Encoding fields."""
    default = Encoding()
    return Encoding(attr=lambda a, w, r: filters if a in attrs else default.attr_filters(a, w, r), **kw)


def names(filters: int) -> str:
    return "+".join(n for b, n in NAMES if filters & b) or "none"


def channel_sections(s: Stream) -> int:
    """Descriptors of the stream's frames with filter bit 3 that a block references."""
    k = 0
    for rec in s.records[1:]:
        f = craft.parse_frame_meta(craft.split_frame(rec)[0])
        k += sum(f.sections[i].filters & CHANNEL != 0 for i in {i for b in f.blocks for i in b.sections})
    return k


def correlated(s: Stream, n: int) -> list[np.ndarray]:
    """Random valid codes whose colour channels move together: green and blue within a few codes of red
    (SH_DC and SH_REST), as in a captured scene."""
    c = s.codes(n)
    for a in (4, 5):
        arr = c[a].astype(np.int64)
        g = arr.shape[0] // 3
        if not g:
            continue
        lo, hi = (-np.array(rest_limits(s.L)), np.array(rest_limits(s.L))) if a == 5 else \
            (np.zeros(3), np.full(3, (1 << s.L.quant.dc_bits) - 1))
        lo, hi = lo.reshape(-1, 1), hi.reshape(-1, 1)
        for k in (1, 2):
            arr[k * g:(k + 1) * g] = arr[:g] + s.rng.integers(-2, 3, size=(g, n))
        c[a] = np.clip(arr, lo, hi).astype(c[a].dtype)
    return c


def gen_channel(g: VectorWriter) -> None:
    """Valid streams with CHANNEL sections."""
    # SPEC.md 4.4's example, byte for byte
    hf = HeaderFields(0, G, QuantFields.of(Profile.preset("compact", 0).quant, 0), "compact")
    s = stream(g, "channel_spec_example", hf)
    c = s.codes(2)
    c[SH_DC][:] = [[200, 10], [203, 12], [201, 12]]
    got = {}
    enc = on({SH_DC}, CHANNEL | ZIGZAG, compression="none")
    s.frame(key=True, adds=[(s.fresh_ids(2), c)], enc=enc, tweak=lambda ff, pl: got.update(dc=pl.parts[5]))
    assert got["dc"] == bytes.fromhex("6F14 0604 0300"), got["dc"].hex()
    s.valid(CAT, "SPEC.md 4.4's example: SH_DC codes (u8) red 200, 10, green 203, 12, blue 201, 12 with CHANNEL and "
                 "ZIGZAG stored as 6F 14 06 04 03 00 (uncompressed)", SEC)

    s = stream(g, "channel_sh_dc_alone")
    enc = on({SH_DC}, CHANNEL, compression="none")
    s.frame(key=True, adds=[(s.fresh_ids(24), s.codes(24))], enc=enc)
    ids = s.live()[1::2]
    s.frame(updates=[(ids, 0x10, s.residuals(ids, 0x10))], enc=enc)
    s.valid(CAT, "compact SH 1: SH_DC codes of an ADD of 24 and residuals of an UPDATE of 12 with CHANNEL alone "
                 "(uncompressed: the differences are the stored bytes)", SEC + [S_OPS])

    s = stream(g, "channel_sh_dc_delta_zigzag_zstd")
    enc = on({SH_DC}, CHANNEL | DELTA | ZIGZAG, compression="zstd")
    s.frame(key=True, adds=[(s.fresh_ids(40), correlated(s, 40))], enc=enc)
    ids = s.live()[::4]
    s.frame(updates=[(ids, 0x11, s.residuals(ids, 0x11))], enc=enc)
    s.valid(CAT, "compact SH 1: SH_DC codes (channels within 2 of each other) and UPDATE residuals with DELTA, "
                 "ZIGZAG and CHANNEL, zstd: the channel sum after the delta prefix sum", SEC)

    s = stream(g, "channel_width_2_every_filter", hf_preset("high", 1))
    c = s.codes(12)
    c[SH_DC][:, :3] = [[4095, 0, 4095], [0, 4095, 4095], [4095, 0, 0]]   # differences of -4095 and 4095
    enc = on({SH_DC}, CHANNEL | DELTA | ZIGZAG | SHUFFLE)
    s.frame(key=True, adds=[(s.fresh_ids(12), c)], enc=enc)
    ids = s.live()[[0, 1, 2, 7]]
    s.frame(updates=[(ids, 0x10, s.residuals(ids, 0x10))], enc=enc)
    s.valid(CAT, "'high' SH 1: SH_DC codes of 12 bits (u16) with SHUFFLE, ZIGZAG, DELTA and CHANNEL, channel "
                 "differences of -4095 and 4095 among them; then UPDATE residuals, same filters",
            SEC + [S_PRESETS])

    s = stream(g, "channel_sh_rest_bands_add", hf_preset("compact", 3))
    c = correlated(s, 16)
    m = np.array(rest_limits(s.L))
    c[5][:, 0], c[5][:, 1] = m, np.where(np.arange(len(m)) % 2, m, -m)   # extremes: differences of +-2M
    s.frame(key=True, adds=[(s.fresh_ids(16), c)], enc=on({5}, CHANNEL | ZIGZAG))
    assert channel_sections(s) == 3
    s.valid(CAT, "compact SH 3: an ADD of 16 with the SH_REST band sections (C = 9, 15, 21: g = 3, 5, 7) under "
                 "CHANNEL and ZIGZAG, codes at +-M among them", SEC + [S_OPS])

    s = stream(g, "channel_sh_rest_bands_update", hf_preset("high", 3))
    s.frame(key=True, adds=[(s.fresh_ids(10), s.codes(10))])
    ids = s.live()[[0, 3, 4, 9]]
    enc = on({5}, CHANNEL | ZIGZAG | SHUFFLE)
    s.frame(updates=[(ids, 0x20, s.residuals(ids, 0x20))], enc=enc)
    s.frame(updates=[(ids[:2], 0x30, s.residuals(ids[:2], 0x30))],
            ranked_updates=[ranked_update(s, [5, 6], 0x20)], enc=enc)
    s.valid(CAT, "'high' SH 3 (u16 SH_REST): UPDATE residuals of the three band sections with CHANNEL, ZIGZAG and "
                 "SHUFFLE; then UPDATE and UPDATE_RANKED residuals the same way", SEC + [S_OPS])

    s = stream(g, "channel_palette_entry_bands", hf_preset("small", 3))
    used = [0, 9, 300, 65535]
    pal = entries(s, used)
    m = np.array(rest_limits(s.L))
    pal[1][:, 0] = np.where(np.arange(len(m)) < len(m) // 3, -m, m)   # red -M, green and blue +M
    enc = on({5}, CHANNEL | ZIGZAG)
    s.frame(key=True, palettes=[pal], adds=[(s.fresh_ids(6), using(s, 6, used))], enc=enc)
    s.frame(palettes=[entries(s, [9, 77])], enc=enc)
    s.valid(CAT, "'small' preset SH 3 (an SH palette): PALETTE entry band sections (C = 9, 15, 21) with CHANNEL and "
                 "ZIGZAG in a keyframe and a delta, an entry of -M red and +M green and blue among them; the SH_REST "
                 "palette index sections (C = 1) carry CHANNEL too, a no-op", SEC + [S_PALETTE])

    wide = hf_palette(2, 64, replace(NARROW, rest_bits=(10, 9, 12), rest_range=(1.0, 0.8, 0.5)))
    s = stream(g, "channel_palette_entry_width_2", wide)
    s.frame(key=True, palettes=[entries(s, [1, 2, 63])], adds=[(s.fresh_ids(3), using(s, 3, [1, 63]))],
            enc=on({5}, CHANNEL | DELTA | ZIGZAG | SHUFFLE))
    s.valid(CAT, "rest_bits 10, 9 at SH degree 2: PALETTE entry bands of width 2 with every filter, CHANNEL "
                 "included", SEC + [S_PALETTE])

    # a component count that is a multiple of 3 is all CHANNEL asks: scale and position too
    s = stream(g, "channel_scale", hf_preset("compact", 0))
    enc = on({1}, CHANNEL, compression="none")
    s.frame(key=True, adds=[(s.fresh_ids(8), s.codes(8))], enc=enc)
    ids = s.live()[[2, 5]]
    s.frame(updates=[(ids, 0x02, s.residuals(ids, 0x02))], enc=on({1}, CHANNEL | ZIGZAG))
    s.valid(CAT, "compact SH 0: SCALE codes (C = 3, g = 1) with CHANNEL, uncompressed, and UPDATE residuals with "
                 "CHANNEL and ZIGZAG: not a colour, still summed (y plus x, then z plus y)", SEC)

    s = stream(g, "channel_position", hf_preset("high", 0))
    enc = on({0}, CHANNEL | ZIGZAG | SHUFFLE)
    s.frame(key=True, adds=[(s.fresh_ids(8), s.codes(8))], enc=enc)
    ids = s.live()[[0, 7]]
    s.frame(updates=[(ids, 0x01, s.residuals(ids, 0x01))], enc=enc)
    s.valid(CAT, "'high' SH 0: POSITION codes (C = 3, signed, u16) and residuals with CHANNEL, ZIGZAG and SHUFFLE: "
                 "summed as any section of 3 components", SEC + [S_CODES])

    # no-ops: component counts that are not a multiple of 3, and empty sections
    s = stream(g, "channel_noop_ids")
    f = CHANNEL | DELTA | SHUFFLE
    e = Encoding(ids=f)
    s.frame(key=True, adds=[(s.fresh_ids(6), s.codes(6))], implicit=[implicit(s, placed(s, [3, 70], 2))], enc=e)
    L = s.live()
    s.frame(deletes=[L[[1, 4]]], updates=[(L[[0, 5]], 0x08, s.residuals(L[[0, 5]], 0x08))], enc=e)
    s.valid(CAT, "ids sections (C = 1) of ADD, UPDATE and DELETE_IDS and the placements of ADD_IMPLICIT with "
                 "CHANNEL, DELTA and SHUFFLE: CHANNEL is a no-op", SEC + [S_OPS, S_IDS])

    s = stream(g, "channel_noop_rotation_opacity")
    enc = on({2, 3}, CHANNEL | ZIGZAG, compression="none")
    s.frame(key=True, adds=[(s.fresh_ids(6), s.codes(6))], enc=enc)
    ids = s.live()[[1, 2]]
    s.frame(updates=[(ids, 0x0C, s.residuals(ids, 0x0C))], enc=enc)
    s.valid(CAT, "ROTATION (C = 4) and OPACITY (C = 1) codes and residuals with CHANNEL and ZIGZAG, uncompressed: "
                 "CHANNEL is a no-op (a reader that sums with g = C div 3 = 1 changes the rotations)", SEC)

    s = stream(g, "channel_noop_ranges_cells_ranks")
    s.frame(key=True, adds=[(s.fresh_ids(20), s.codes(20))])
    L = s.live()
    f = CHANNEL | DELTA | ZIGZAG | SHUFFLE
    s.frame(ranges=[[(int(L[1]), int(L[2])), (int(L[6]), int(L[6]))]], cells=[(0, [int(L[10]) >> G[3]])],
            ranked_deletes=[np.array([17, 19], np.uint32)], ranked_updates=[ranked_update(s, [0, 3], 0x01)],
            enc=Encoding(ranges=f, cells=f, ranks=f))
    s.valid(CAT, "DELETE_RANGES (C = 2), DELETE_CELLS and the ranks of UPDATE_RANKED and DELETE_RANKED (C = 1) "
                 "with CHANNEL, DELTA, ZIGZAG and SHUFFLE: CHANNEL is a no-op", SEC + [S_OPS])

    s = stream(g, "channel_empty_sections", hf_preset("compact", 2))
    s.frame(key=True, adds=[(s.fresh_ids(3), s.codes(3))])
    none = np.zeros(0, np.uint64)
    e = Encoding(ids=CHANNEL, attr=lambda a, w, r: CHANNEL | DELTA | ZIGZAG | SHUFFLE)
    s.frame(adds=[(none, s.codes(0))], updates=[(none, 0x3F, s.residuals(none, 0x3F))], enc=e)
    s.valid(CAT, "an ADD and an UPDATE of count 0 whose sections (raw_size 0; SH_DC and the SH_REST bands "
                 "among them) all have CHANNEL set: no-ops", SEC + [S_OPS])

    # every combination of the four filters with CHANNEL, on every section (enc_filters_* has the others)
    for f in range(CHANNEL, 2 * CHANNEL):
        s = stream(g, f"channel_filters_{f}", hf_preset("high", 1))
        every_section_filtered(s, f)
        s.valid(CAT, f"every section with filters {f} ({names(f)})", SEC, state=False)

    s = _encoder_stream(g, "channel_encoder")
    s.valid(CAT, "'high' SH 1: 3,000 Gaussians whose colour channels move together, from the codec Encoder with "
                 "CHANNEL among its filter candidates (it picks CHANNEL for some sections): a keyframe, then every "
                 "SH_DC raised; written with CHANNEL on every colour section", SEC + [S_QUANT], state=False)

    s = stream(g, "channel_header_minor_2", minor=2)
    enc = on({SH_DC, 5}, CHANNEL | ZIGZAG)
    s.frame(key=True, adds=[(s.fresh_ids(5), s.codes(5))], enc=enc)
    ids = s.live()[[0, 4]]
    s.frame(updates=[(ids, 0x30, s.residuals(ids, 0x30))], enc=enc)
    s.valid(CAT, "CHANNEL sections (SH_DC and SH_REST) in a stream whose header says version 1.2: readers do not "
                 "act on version_minor", SEC + [S_HEADER_REC, S_VERSION])


def _encoder_stream(g: VectorWriter, vid: str, n: int = 3000) -> Stream:
    """A keyframe of n Gaussians with correlated colour channels, then every SH_DC brightened, from the codec
    Encoder with CHANNEL candidates. Its frames must use CHANNEL, and the reference model must read them to
    the Encoder's digests; the vector holds their ops serialized with fixed section choices (every colour
    section with CHANNEL), so it does not change when the encoder's filter heuristics are tuned."""
    profile = Profile.preset("high", 1, Grid(*G))
    hf = HeaderFields.of(profile)
    enc = Encoder(profile, generator="gsd-conformance", channel_filter=True)
    s = stream(g, vid, hf)
    rng = np.random.default_rng(31)
    grey = rng.normal(scale=0.6, size=(n, 1))
    rest = rng.normal(scale=0.15, size=(n, 1, 3))
    g0 = Gaussians(rng.uniform(-6, 6, (n, 3)), rng.normal(-4, 0.5, (n, 3)), rng.normal(size=(n, 4)), rng.normal(size=n),
                   grey + rng.normal(scale=0.02, size=(n, 3)),
                   (rest + rng.normal(scale=0.01, size=(n, 3, 3))).reshape(n, 9))
    ids = enc.assign_ids(g0.positions)
    records = [enc.header_bytes()]
    fixed = Encoding(channel=True)
    for delta in (lambda: enc.make_delta(add=(ids, g0), keyframe=True),
                  lambda: enc.make_delta(update=(ids, Gaussians(g0.positions, g0.scales, g0.rotations, g0.opacities,
                                                                g0.sh_dc + 0.25, g0.sh_rest)))):
        rec = enc.encode_delta(delta())
        records.append(rec)
        ops = read_frame_ops(rec, s.L, s.live())
        s.frame(key=ops.keyframe, seq=ops.seq, base=ops.base_seq, digest=ops.digest, enc=fixed, **ops.blocks())
    f = [craft.parse_frame_meta(craft.split_frame(r)[0]) for r in records[1:]]
    assert any(x.sections[i].filters & CHANNEL for x in f for b in x.blocks for i in b.sections), \
        "the Encoder chose no CHANNEL section"
    assert decode_stream(b"".join(records), {}) == (s.digests, None), "refmodel reads the Encoder's own bytes"
    return s


def gen_channel_invalid(g: VectorWriter) -> None:
    """Filter bits 4..7 beside CHANNEL, and codes that leave their domain only through the channel sum."""
    feat = SEC + [S_VERSION]
    s = stream(g, "channel_filter_bit_4_sh_dc")
    s.frame(key=True, adds=[(s.fresh_ids(4), s.codes(4))], enc=on({SH_DC}, CHANNEL),
            tweak=set_section(5, filters=CHANNEL | 0x10), error="UNSUPPORTED_FEATURE", model=False)
    s.invalid(CAT, "ADD SH_DC section with filters 0x18: CHANNEL and bit 4, which 1.3 does not define", feat)

    s = stream(g, "channel_filter_bit_7_band", hf_preset("compact", 2))
    s.frame(key=True, adds=[(s.fresh_ids(4), s.codes(4))])
    ids = s.live()[[1]]
    s.frame(updates=[(ids, 0x20, s.residuals(ids, 0x20))], enc=on({5}, CHANNEL | ZIGZAG),
            tweak=set_section(2, filters=CHANNEL | ZIGZAG | 0x80), error="UNSUPPORTED_FEATURE", model=False)
    s.invalid(CAT, "UPDATE SH_REST band 2 section with filters 0x8A: CHANNEL, ZIGZAG and bit 7", feat)

    s = stream(g, "channel_filter_bit_5_empty_section")
    s.frame(key=True, adds=[(s.fresh_ids(4), s.codes(4))])
    none = np.zeros(0, np.uint64)
    s.frame(adds=[(none, s.codes(0))], enc=on({SH_DC}, CHANNEL), tweak=set_section(5, filters=CHANNEL | 0x20),
            error="UNSUPPORTED_FEATURE", model=False)
    s.invalid(CAT, "an ADD of count 0 whose SH_DC section (raw_size 0) has filters 0x28, CHANNEL and bit 5: the "
                   "filter bits are checked before anything is decoded", feat)

    s = stream(g, "channel_sum_out_of_domain", hf_preset("high", 0))
    s.frame(key=True, adds=[(s.fresh_ids(3), s.codes(3))])
    c = s.codes(2)
    c[SH_DC] = np.array([[100, 3000], [150, 4000], [170, 4200]], np.uint16)   # stored: 100, 3000, 50, 1000, 20, 200
    got = {}
    enc = on({SH_DC}, CHANNEL, compression="none")
    s.frame(adds=[(s.fresh_ids(2), c)], enc=enc, tweak=lambda ff, pl: got.update(dc=pl.parts[5]),
            error="BAD_VALUE")
    assert list(np.frombuffer(got["dc"], np.uint16)) == [100, 3000, 50, 1000, 20, 200], got["dc"].hex()
    s.invalid(CAT, "'high' SH 0: an ADD of 2 whose SH_DC section (12 bits, CHANNEL, uncompressed) stores 100, 3000, "
                   "50, 1000, 20, 200, all below 4096, which sum to the blue code 4200: codes are checked after the "
                   "sum",
              SEC + [S_VALIDITY, S_APPLY])
