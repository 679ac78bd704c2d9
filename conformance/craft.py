"""GSD bytes for tests and conformance vectors, able to write invalid ones on purpose.

The codec's own writers only produce conforming bytes; conformance vectors, the fuzzer
and the bad-input tests need headers and frames with any field set to any value (a
zero cell size, a block of kind 10, a section past the payload, a wrong CRC, an offset
pointing outside the buffer). This module is the one place that writes them:

- header and frame records: ``HeaderFields``/``header``, ``FrameFields``/``frame_meta``/
  ``frame_record``, every length, magic and checksum overridable; ``parse_frame_meta``
  reads metadata back into ``FrameFields`` so a codec frame can be edited and rebuilt;
- op blocks: ``op_blocks``/``ops_frame`` lay out ops given as arrays as SPEC.md 6.1 says,
  valid or not, with the filters and compression of an ``Encoding``;
- payloads: ``Payload`` (the filters of SPEC.md 4.4 written out here, so the bytes do not
  follow the codec's section writer; gap codes, compression 2, through the codec's one
  implementation, ``gap_code``/``gap_values``) and the zstd frame surgery that compression vectors need;
- in-place edits: ``fix_crc``/``fix_crcs`` after tampering, ``frame_vector_len_at`` and
  ``set_root_soffset`` to aim one offset or length outside the buffer;
- hand-laid FlatBuffers: ``fb_layout`` places every object where it is told (the
  library's Builder always aligns), for buffers that verify but are laid out unusually.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from typing import Callable

import flatbuffers
import numpy as np
import zstandard

from codec.sections import gap_encode, gap_read
from gsd.fb import Frame as FbFrame
from gsd.fb import OpBlock as FbOpBlock
from gsd.fb import Quantization as FbQuant
from gsd.fb import StreamHeader as FbHeader
from gsd.fb.Digest import CreateDigest
from gsd.fb.Grid import CreateGrid
from gsd.fb.Section import CreateSection

HEADER_MAGIC = b"GSDH"
FRAME_MAGIC = b"GSDF"
ADD, UPDATE, DELETE_IDS, DELETE_RANGES, DELETE_CELLS, PALETTE, ADD_IMPLICIT = 1, 2, 3, 4, 5, 6, 7
UPDATE_RANKED, DELETE_RANKED = 8, 9      # 1.2: ranks among the live ids instead of ids (SPEC.md 6.1)
KEYFRAME = 1
SH_PALETTE = 1                           # StreamHeader.required_features bit 0 (1.1, SPEC.md 5.9)
NONE, ZSTD = 0, 1
GAPS = 2                                 # 1.4: the gap code, exp-Golomb codes of ascending values' gaps (SPEC.md 4.4)
DELTA, ZIGZAG, SHUFFLE = 1, 2, 4
CHANNEL = 8                              # 1.3: colour components as differences between the channels (SPEC.md 4.4)
FRAME_BLOCKS, FRAME_SECTIONS = 5, 6      # field ids of the Frame table's two vectors

UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}   # unsigned element type by byte width

# Number of fields the 1.0 schema defines per table: an extra slot past these is
# an "unknown optional field" that a 1.0 reader must ignore (SPEC versioning).
_HEADER_SLOTS = 7
_FRAME_SLOTS = 7


# ----------------------------------------------------------------------------------- header
@dataclass
class QuantFields:
    """Raw Quantization table fields, unchecked (so invalid values can be written)."""

    position_bits: int = 4
    scale_bits: int = 8
    scale_min: float = -14.0
    scale_max: float = 4.0
    rotation_bits: int = 8
    opacity_bits: int = 8
    dc_bits: int = 8
    dc_min: float = -3.5
    dc_max: float = 3.5
    rest_bits: tuple = (6, 5, 5)
    rest_range: tuple = (1.2, 1.0, 0.8)
    sh_palette: int = 0                  # 1.1: entries of the SH palette; 0 = none (the field is then not written)

    @classmethod
    def of(cls, q, sh_degree: int) -> "QuantFields":
        """From a codec Quantization, with rest_* cut to sh_degree entries as encoders write them."""
        return cls(q.position_bits, q.scale_bits, q.scale_min, q.scale_max, q.rotation_bits, q.opacity_bits,
                   q.dc_bits, q.dc_min, q.dc_max, tuple(q.rest_bits[:sh_degree]), tuple(q.rest_range[:sh_degree]),
                   q.palette)


@dataclass
class HeaderFields:
    sh_degree: int = 0
    grid: tuple | None = ((-8.0, -8.0, -8.0), 1.0, 4, 8)  # origin, cell_size, cell_bits, slot_bits; None = absent
    quant: QuantFields | None = None                       # None = lossless
    profile_name: str = ""
    required_features: int = 0
    max_gaussians: int = 0
    generator: str = "gsd-conformance"
    extra_field: int | None = None                          # value of an unknown u32 field past the schema
    frame_rate: float = 0.0                                 # 1.1, informative; 0 = absent

    @classmethod
    def of(cls, profile, **kw) -> "HeaderFields":
        """A codec Profile's header; with an SH palette, required_features bit 0 is set (unless kw says otherwise)."""
        g = profile.grid
        q = QuantFields.of(profile.quant, profile.sh_degree) if profile.quant is not None else None
        kw.setdefault("required_features", SH_PALETTE if q is not None and q.sh_palette else 0)
        return cls(profile.sh_degree, (g.origin, g.cell_size, g.cell_bits, g.slot_bits), q, profile.name, **kw)


def header_body(h: HeaderFields) -> bytes:
    b = flatbuffers.Builder(256)
    name = b.CreateString(h.profile_name)
    gen = b.CreateString(h.generator)
    quant = None
    if h.quant is not None:
        q = h.quant
        bits = b.CreateNumpyVector(np.array(q.rest_bits, np.uint8))
        rng = b.CreateNumpyVector(np.array(q.rest_range, np.float32))
        FbQuant.Start(b)
        FbQuant.AddPositionBits(b, q.position_bits)
        FbQuant.AddScaleBits(b, q.scale_bits)
        FbQuant.AddScaleMin(b, q.scale_min)
        FbQuant.AddScaleMax(b, q.scale_max)
        FbQuant.AddRotationBits(b, q.rotation_bits)
        FbQuant.AddOpacityBits(b, q.opacity_bits)
        FbQuant.AddDcBits(b, q.dc_bits)
        FbQuant.AddDcMin(b, q.dc_min)
        FbQuant.AddDcMax(b, q.dc_max)
        FbQuant.AddRestBits(b, bits)
        FbQuant.AddRestRange(b, rng)
        if q.sh_palette:
            FbQuant.AddShPalette(b, q.sh_palette)
        quant = FbQuant.End(b)
    b.StartObject(_HEADER_SLOTS + (2 if h.extra_field is not None else 1 if h.frame_rate else 0))
    FbHeader.AddShDegree(b, h.sh_degree)
    if h.grid is not None:
        origin, cell_size, cell_bits, slot_bits = h.grid
        FbHeader.AddGrid(b, CreateGrid(b, *origin, cell_size, cell_bits, slot_bits))
    if quant is not None:
        FbHeader.AddQuantization(b, quant)
    FbHeader.AddProfileName(b, name)
    FbHeader.AddRequiredFeatures(b, h.required_features)
    FbHeader.AddMaxGaussians(b, h.max_gaussians)
    FbHeader.AddGenerator(b, gen)
    if h.frame_rate:
        FbHeader.AddFrameRate(b, h.frame_rate)
    if h.extra_field is not None:
        b.PrependUint32Slot(_HEADER_SLOTS + 1, h.extra_field, 0)
    b.Finish(b.EndObject())
    return bytes(b.Output())


def header_record(body: bytes, *, magic: bytes = HEADER_MAGIC, major: int = 1, minor: int = 0, reserved: int = 0,
                  body_len: int | None = None, crc: int | None = None) -> bytes:
    head = struct.pack("<4sBBHI", magic, major, minor, reserved, len(body) if body_len is None else body_len) + body
    return head + struct.pack("<I", zlib.crc32(head) if crc is None else crc)


def header(h: HeaderFields | None = None, **record_kw) -> bytes:
    return header_record(header_body(h or HeaderFields()), **record_kw)


# ----------------------------------------------------------------------------------- frames
@dataclass
class Section:
    """One section descriptor as written (SPEC.md 4.4), reserved byte included so it can be non-zero."""

    offset: int
    stored_size: int
    raw_size: int
    compression: int
    filters: int
    width: int
    reserved: int = 0


@dataclass
class BlockFields:
    kind: int
    count: int
    mask: int = 0
    level: int = 0
    sections: list = field(default_factory=list)


@dataclass
class FrameFields:
    seq: int = 1
    base_seq: int = 0
    flags: int = 0
    required_features: int = 0
    digest: tuple | None = None          # (count, lane0, lane1)
    blocks: list = field(default_factory=list)
    sections: list = field(default_factory=list)  # Section
    extra_field: int | None = None


def frame_meta(f: FrameFields) -> bytes:
    b = flatbuffers.Builder(256 + 32 * len(f.sections))
    offs = []
    for blk in f.blocks:
        vec = b.CreateNumpyVector(np.array(blk.sections, np.uint32))
        FbOpBlock.Start(b)
        FbOpBlock.AddKind(b, blk.kind)
        FbOpBlock.AddCount(b, blk.count)
        FbOpBlock.AddMask(b, blk.mask)
        FbOpBlock.AddLevel(b, blk.level)
        FbOpBlock.AddSections(b, vec)
        offs.append(FbOpBlock.End(b))
    FbFrame.StartBlocksVector(b, len(offs))
    for o in reversed(offs):
        b.PrependUOffsetTRelative(o)
    blocks_vec = b.EndVector()
    FbFrame.StartSectionsVector(b, len(f.sections))
    for s in reversed(f.sections):
        CreateSection(b, s.offset, s.stored_size, s.raw_size, s.compression, s.filters, s.width, s.reserved)
    secs_vec = b.EndVector()
    b.StartObject(_FRAME_SLOTS + (2 if f.extra_field is not None else 0))
    FbFrame.AddSeq(b, f.seq)
    FbFrame.AddBaseSeq(b, f.base_seq)
    FbFrame.AddFlags(b, f.flags)
    FbFrame.AddRequiredFeatures(b, f.required_features)
    if f.digest is not None:
        FbFrame.AddDigest(b, CreateDigest(b, *f.digest))
    FbFrame.AddBlocks(b, blocks_vec)
    FbFrame.AddSections(b, secs_vec)
    if f.extra_field is not None:
        b.PrependUint32Slot(_FRAME_SLOTS + 1, f.extra_field, 0)
    b.Finish(b.EndObject())
    return bytes(b.Output())


def parse_frame_meta(meta: bytes) -> FrameFields:
    """Frame metadata read back into FrameFields, to edit a codec-written frame and rebuild it."""
    fb = FbFrame.Frame.GetRootAs(meta, 0)
    dg = fb.Digest()
    blocks = []
    for j in range(fb.BlocksLength()):
        b = fb.Blocks(j)
        blocks.append(BlockFields(b.Kind(), b.Count(), b.Mask(), b.Level(),
                                  [b.Sections(k) for k in range(b.SectionsLength())]))
    sections = []
    for j in range(fb.SectionsLength()):
        s = fb.Sections(j)
        sections.append(Section(s.Offset(), s.StoredSize(), s.RawSize(), s.Compression(), s.Filters(), s.Width(),
                                s.Reserved()))
    return FrameFields(fb.Seq(), fb.BaseSeq(), fb.Flags(), fb.RequiredFeatures(),
                       (dg.Count(), dg.Lane0(), dg.Lane1()) if dg is not None else None, blocks, sections)


def frame_prefix(frame_len: int, meta_len: int, magic: bytes = FRAME_MAGIC) -> bytes:
    """The 12-byte frame prefix alone, for records whose lengths lie about what follows."""
    return struct.pack("<4sII", magic, frame_len, meta_len)


def frame_record(meta: bytes, payload: bytes = b"", *, magic: bytes = FRAME_MAGIC, frame_len: int | None = None,
                 meta_len: int | None = None, crc: int | None = None) -> bytes:
    n = 12 + len(meta) + len(payload) + 4
    body = frame_prefix(n if frame_len is None else frame_len, len(meta) if meta_len is None else meta_len,
                        magic) + meta + payload
    return body + struct.pack("<I", zlib.crc32(body) if crc is None else crc)


def split_frame(record: bytes) -> tuple[bytes, bytes]:
    """(metadata, payload) of a frame record, as its prefix declares them."""
    _, flen, mlen = struct.unpack_from("<4sII", record)
    return record[12:12 + mlen], record[12 + mlen:flen - 4]


def block_kinds(record: bytes) -> list[int]:
    """The kinds of a frame record's op blocks, in order."""
    return [b.kind for b in parse_frame_meta(split_frame(record)[0]).blocks]


def edit_frame(record: bytes, edit=None, payload: bytes | None = None) -> bytes:
    """Rebuild a frame record after ``edit(FrameFields)`` (and with another payload); the CRC is
    correct, so the edit reaches the checks behind it."""
    meta, pl = split_frame(record)
    f = parse_frame_meta(meta)
    if edit is not None:
        edit(f)
    return frame_record(frame_meta(f), pl if payload is None else payload)


# ----------------------------------------------------------------------------------- payload
def unfiltered(raw: bytes, width: int, filters: int, comps: int, n: int) -> np.ndarray:
    """The (comps, n) unsigned values of a section's decompressed bytes: the decoder side of SPEC.md
    4.4's pipeline (unshuffle, unzigzag, delta sum, channel sum), the inverse of ``Payload.filtered``."""
    t = UINT[width]
    b = np.frombuffer(raw, np.uint8)
    if filters & SHUFFLE and width > 1:
        b = np.ascontiguousarray(b.reshape(width, comps * n).T)
    u = b.view(t).reshape(comps, n).copy()
    if filters & ZIGZAG:
        u = (u >> t(1)) ^ (t(0) - (u & t(1)))
    if filters & DELTA:
        u = np.cumsum(u, axis=1, dtype=t)
    if filters & CHANNEL and comps % 3 == 0:
        g = comps // 3
        for j in range(g, comps):   # ascending: each channel plus the decoded one before it
            u[j] += u[j - g]
    return u


def gap_code(planar: np.ndarray, k: int | None = None) -> bytes:
    """The stored bytes of a (1, n) array of strictly ascending values as a gap-coded section (compression 2):
    the order byte ``k``, then the codes; k None: the codec writer's choice (``gap_encode``), of values of 1, 2
    or 4 bytes. With k given any element width is written (8-byte values too, for sections that must be
    refused); values below 2^63."""
    data = gap_encode(np.ascontiguousarray(planar), k)
    if data is None:
        raise ValueError("the gap code holds one component of strictly ascending values (of 1, 2 or 4 bytes "
                         "without a given k)")
    return data


def gap_values(stored: bytes, n: int, width: int) -> np.ndarray | None:
    """The (1, n) values of a gap-coded section's stored bytes (SPEC.md 4.4 gap_decode), or None where they
    are not a valid code of n values of ``width`` bytes (1, 2 or 4)."""
    out = np.zeros((1, n), UINT[width])
    if gap_read(np.frombuffer(bytes(stored), np.uint8), n, width, out[0]):
        return None
    return out


class Payload:
    """Sections of one frame payload. Filters go through SectionWriter; compression is chosen here."""

    def __init__(self, level: int = 3):
        self.level = level
        self.parts: list[bytes] = []
        self.descs: list[Section] = []
        self.offset = 0

    @staticmethod
    def filtered(planar: np.ndarray, filters: int) -> tuple[bytes, int]:
        """The raw (uncompressed) section bytes of a (C, N) array and its element width: the encoder
        side of SPEC.md 4.4's pipeline (channel differences where C is a multiple of 3, delta within
        each component, zigzag, shuffle into byte planes)."""
        a = np.ascontiguousarray(planar)
        w = a.dtype.itemsize
        u = a.view(UINT[w])
        if filters & CHANNEL and u.ndim == 2 and u.shape[0] % 3 == 0:
            g = u.shape[0] // 3   # components g..C-1 minus the one g before, of the original values
            d = u.copy()
            d[g:] = u[g:] - u[:-g]
            u = d
        if filters & DELTA and u.shape[-1] > 1:
            d = u.copy()
            d[..., 1:] = u[..., 1:] - u[..., :-1]
            u = d
        if filters & ZIGZAG:
            u = (u << UINT[w](1)) ^ (u.view(np.dtype(f"i{w}")) >> (8 * w - 1)).view(UINT[w])
        if filters & SHUFFLE and w > 1:
            return np.ascontiguousarray(u.reshape(-1).view(np.uint8).reshape(-1, w).T).tobytes(), w
        return u.tobytes(), w

    def add(self, planar: np.ndarray, filters: int, compression: str = "auto", zstd_frames: int = 1,
            zstd_args: dict | None = None) -> int:
        """Append an array; compression "auto" (zstd when >= 64 bytes and smaller), "none" or "zstd"."""
        raw, width = self.filtered(planar, filters)
        data, comp = raw, NONE
        if compression == "zstd" or (compression == "auto" and len(raw) >= 64):
            z = zstd_chunks(raw, zstd_frames, self.level, **(zstd_args or {}))
            if compression == "zstd" or len(z) < len(raw):
                data, comp = z, ZSTD
        return self.add_raw(data, len(raw), comp, filters, width)

    def add_gaps(self, planar: np.ndarray, k: int | None = None) -> int:
        """Append a (1, n) array of strictly ascending values, gap coded at order ``k`` (compression 2, no
        filters); None: the order the codec's writer picks."""
        a = np.ascontiguousarray(planar)
        return self.add_raw(gap_code(a, k), a.nbytes, GAPS, 0, a.dtype.itemsize)

    def add_raw(self, data: bytes, raw_size: int, compression: int, filters: int, width: int,
                offset: int | None = None) -> int:
        """Append stored bytes with an arbitrary descriptor (offset defaults to where they land)."""
        self.descs.append(Section(self.offset if offset is None else offset, len(data), raw_size,
                                  compression, filters, width))
        self.parts.append(data)
        self.offset += len(data)
        return len(self.descs) - 1

    def bytes(self) -> bytes:
        return b"".join(self.parts)


# ----------------------------------------------------------------------------------- op blocks
@dataclass
class Encoding:
    """How a frame's sections are written: filters per role, compression and zstd settings."""

    ids: int = DELTA | SHUFFLE
    ranges: int = DELTA | ZIGZAG | SHUFFLE
    cells: int = DELTA | ZIGZAG | SHUFFLE
    palette: int = DELTA | SHUFFLE   # a PALETTE block's u16 indices
    ranks: int = DELTA | SHUFFLE     # a ranked block's u32 ranks
    attr: Callable | None = None     # fn(attribute index, width, residual) -> filters
    channel: bool = False            # 1.3: CHANNEL added to every colour section (SH_DC, SH_REST, entry bands)
    gaps: frozenset = frozenset()    # 1.4: sections stored with the gap code: "ranks", "palette" (a PALETTE
                                     # block's indices) and attribute indices (3 OPACITY, 5 SH_REST palette indices)
    gap_k: int | None = None         # their order k; None: the order the codec's writer picks
    compression: str = "auto"
    zstd_frames: int = 1
    zstd_args: dict | None = None
    level: int = 3

    def attr_filters(self, a: int, width: int, residual: bool) -> int:
        """Filters of a section of attribute ``a`` (5 = SH_REST: its bands, its palette indices and a
        PALETTE block's entry bands)."""
        if self.attr is not None:
            f = self.attr(a, width, residual)
        else:
            f = SHUFFLE if width > 1 else 0
            f = f | ZIGZAG if residual else f
        return f | CHANNEL if self.channel and a in (4, 5) else f


def band_rows(sh_degree: int) -> list[list[int]]:
    """SH_REST component rows of each band section l = 1..d (SPEC.md 6.1): c*K + l^2 - 1 + i."""
    k = (sh_degree + 1) ** 2 - 1
    return [[c * k + l * l - 1 + i for c in range(3) for i in range(2 * l + 1)] for l in range(1, sh_degree + 1)]


def op_blocks(sh_degree: int, enc: Encoding | None = None, *, deletes=(), ranges=(), cells=(), palettes=(), adds=(),
              updates=(), ext=(), palette: bool = False, implicit=(), ranked_updates=(),
              ranked_deletes=()) -> tuple[list[BlockFields], Payload]:
    """Op blocks and their payload, laid out as SPEC.md 6.1 says, in the order deletes, ranked deletes, ranges,
    cells, palettes, adds, implicit adds, updates, ranked updates, ext; nothing is checked, so ids and ranks may
    repeat or descend and codes may be out of range.

    deletes: [ids]; ranked_deletes: DELETE_RANKED blocks, [ranks]; ranges: [[(first, last), ...]]; cells:
    [(level, [cell, ...])]; palettes: [(indices, entries)]; adds: [(ids, codes)]; implicit: ADD_IMPLICIT
    blocks, [(placements, codes)] (POSITION's codes unused); updates: [(ids, mask, residuals)];
    ranked_updates: UPDATE_RANKED blocks, [(ranks, mask, residuals)]; ext: [(kind, [array, ...])]. Ranks are
    written as u32 (a (1, n) section of width 4). codes and
    residuals are planar (C, n) arrays in the attributes' code dtypes, indexed by attribute (a list or a dict by
    Attr); residuals are read only for the attributes of their mask. ``palette``: the stream has an SH palette
    (SPEC.md 5.9), so SH_REST is one section of u16 indices (a (1, n) array) and PALETTE blocks carry the
    entries, (3K, n) component codes, as band sections. The sections of the roles in ``enc.gaps`` (ranks, PALETTE
    indices, OPACITY, SH_REST palette indices) are gap coded (1.4), so their values must ascend strictly.
    """
    enc = enc or Encoding()
    pl = Payload(enc.level)

    def sec(arr, filters, role=None):
        if role is not None and role in enc.gaps:
            return pl.add_gaps(arr, enc.gap_k)
        return pl.add(arr, filters, enc.compression, enc.zstd_frames, enc.zstd_args)

    def ids_section(ids, filters):
        return sec(np.asarray(ids, np.uint64)[None, :], filters)

    def bands(arr, filters):
        return [sec(np.ascontiguousarray(arr[rows]), filters) for rows in band_rows(sh_degree)]

    def attr_sections(arrays, mask, residual):
        out = []
        for a in range(6):
            if mask >> a & 1 and arrays[a].shape[0]:
                f = enc.attr_filters(a, arrays[a].dtype.itemsize, residual)
                out += bands(arrays[a], f) if a == 5 and not palette else [sec(np.ascontiguousarray(arrays[a]), f, a)]
        return out

    def ranks_section(ranks):
        return sec(np.asarray(ranks, np.uint32)[None, :], enc.ranks, "ranks")

    blocks = []
    for ids in deletes:
        blocks.append(BlockFields(DELETE_IDS, len(ids), 0, 0, [ids_section(ids, enc.ids)]))
    for ranks in ranked_deletes:
        blocks.append(BlockFields(DELETE_RANKED, len(ranks), 0, 0, [ranks_section(ranks)]))
    for rs in ranges:
        r = np.array(rs, np.uint64).reshape(-1, 2).T.copy()
        blocks.append(BlockFields(DELETE_RANGES, r.shape[1], 0, 0, [sec(r, enc.ranges)]))
    for level, cs in cells:
        blocks.append(BlockFields(DELETE_CELLS, len(cs), 0, level, [ids_section(cs, enc.cells)]))
    for index, entries in palettes:
        first = sec(np.asarray(index, np.uint16)[None, :], enc.palette, "palette")
        blocks.append(BlockFields(PALETTE, len(index), 0, 0,
                                  [first] + bands(entries, enc.attr_filters(5, entries.dtype.itemsize, False))))
    for ids, codes in adds:
        blocks.append(BlockFields(ADD, len(ids), 0, 0, [ids_section(ids, enc.ids)] + attr_sections(codes, 0x3F, False)))
    for q, codes in implicit:
        blocks.append(BlockFields(ADD_IMPLICIT, len(q), 0, 0,
                                  [ids_section(q, enc.ids)] + attr_sections(codes, 0x3E, False)))
    for ids, mask, res in updates:
        blocks.append(BlockFields(UPDATE, len(ids), mask, 0,
                                  [ids_section(ids, enc.ids)] + attr_sections(res, mask, True)))
    for ranks, mask, res in ranked_updates:
        blocks.append(BlockFields(UPDATE_RANKED, len(ranks), mask, 0,
                                  [ranks_section(ranks)] + attr_sections(res, mask, True)))
    for kind, arrays in ext:
        blocks.append(BlockFields(kind, 0, 0, 0, [sec(arr, 0) for arr in arrays]))
    return blocks, pl


def ops_frame(sh_degree: int, seq: int, base_seq: int, *, keyframe: bool = False, digest: tuple | None = None,
              enc: Encoding | None = None, **ops) -> bytes:
    """A whole frame record holding ``ops`` (as op_blocks takes them), with a correct CRC."""
    blocks, pl = op_blocks(sh_degree, enc, **ops)
    f = FrameFields(seq, base_seq, KEYFRAME if keyframe else 0, 0, digest, blocks, pl.descs)
    return frame_record(frame_meta(f), pl.bytes())


# ----------------------------------------------------------------------------------- zstd frames
# Compression vectors need zstd frames that lie: a header declaring any content size, a block
# header of a reserved type or running past the data (RFC 8878 3.1.1).
def zstd_chunks(raw: bytes, frames: int = 1, level: int = 3, **args) -> bytes:
    """raw compressed as ``frames`` concatenated zstd frames (deterministic for a fixed level)."""
    cctx = zstandard.ZstdCompressor(level=level, **args)
    if frames <= 1 or len(raw) < frames:
        return cctx.compress(raw)
    cut = np.linspace(0, len(raw), frames + 1).astype(int)
    return b"".join(cctx.compress(raw[cut[i]:cut[i + 1]]) for i in range(frames))


def zstd_header_only(content_size: int) -> bytes:
    """A zstd frame header declaring ``content_size`` (4-byte field, 1 MiB window), no blocks."""
    return b"\x28\xb5\x2f\xfd" + bytes([0x80, (20 - 10) << 3]) + struct.pack("<I", content_size)


def zstd_raw_block_frame(content_size: int, data: bytes) -> bytes:
    """A single-segment zstd frame declaring ``content_size`` that holds only ``data``, in one raw last block."""
    head = struct.pack("<IB", 0xFD2FB528, 0b10100000) + struct.pack("<I", content_size)
    return head + ((len(data) << 3) | 1).to_bytes(3, "little") + data


def _zstd_fcs_span(frame: bytes) -> tuple[int, int]:
    """(offset, size) of a zstd frame's Frame_Content_Size field."""
    d = frame[4]
    flag, single, did = d >> 6, (d >> 5) & 1, d & 3
    return 5 + (0 if single else 1) + (0, 1, 2, 4)[did], (1 if single else 0, 2, 4, 8)[flag]


def zstd_set_content_size(frame: bytes, n: int) -> bytes:
    """Rewrite a zstd frame header's Frame_Content_Size field to ``n``, leaving the blocks."""
    pos, size = _zstd_fcs_span(frame)
    assert size in (1, 4, 8) and n < 1 << (8 * size), "field cannot hold n"
    return frame[:pos] + n.to_bytes(size, "little") + frame[pos + size:]


def _zstd_edit_first_block_header(frame: bytes, fn) -> bytes:
    pos, size = _zstd_fcs_span(frame)
    p = pos + size
    (h,) = struct.unpack("<I", frame[p:p + 3] + b"\x00")
    return frame[:p] + struct.pack("<I", fn(h))[:3] + frame[p + 3:]


def zstd_set_block_type(frame: bytes, t: int) -> bytes:
    """The first block header's Block_Type set to ``t`` (3 is reserved)."""
    return _zstd_edit_first_block_header(frame, lambda h: (h & ~0b110) | (t << 1))


def zstd_set_block_size(frame: bytes, n: int) -> bytes:
    """The first block header's Block_Size set to ``n``, whatever the frame holds."""
    return _zstd_edit_first_block_header(frame, lambda h: (h & 0b111) | (n << 3))


def zstd_skippable_frame(data: bytes, nibble: int = 0) -> bytes:
    """An RFC 8878 skippable frame (magic 0x184D2A50 + nibble, u32 Frame_Size, ``data``): not a Zstandard frame."""
    assert 0 <= nibble <= 15
    return struct.pack("<II", 0x184D2A50 + nibble, len(data)) + data


def zstd_checksum(content: bytes) -> bytes:
    """The 4-byte Content_Checksum of a frame holding ``content``: the low 32 bits of XXH64 (seed 0),
    little-endian, taken from a frame zstd writes (the checksum depends on the content alone)."""
    return zstandard.ZstdCompressor(level=1, write_checksum=True).compress(content)[-4:]


def zstd_block_frame(content_size: int, blocks: list[tuple[str, bytes]], dict_id: int | None = None,
                     checksum_of: bytes | None = None) -> bytes:
    """A single-segment zstd frame laid out by hand: 4-byte Frame_Content_Size ``content_size``, an optional
    1-byte Dictionary_ID field holding ``dict_id``, then ``blocks`` in order (("raw", bytes) or ("rle", bytes
    whose length is the block's size and whose first byte is repeated); the last one is marked last), then,
    when ``checksum_of`` is given, the Content_Checksum of those bytes. No block needs a dictionary."""
    fhd = 0b10100000 | (4 if checksum_of is not None else 0) | (1 if dict_id is not None else 0)
    out = struct.pack("<IB", 0xFD2FB528, fhd)
    if dict_id is not None:
        out += bytes([dict_id])
    out += struct.pack("<I", content_size)
    for k, (kind, data) in enumerate(blocks):
        last = 1 if k == len(blocks) - 1 else 0
        btype, body = (0, data) if kind == "raw" else (1, data[:1])
        out += ((len(data) << 3) | (btype << 1) | last).to_bytes(3, "little") + body
    if checksum_of is not None:
        out += zstd_checksum(checksum_of)
    return out


def zstd_strip_checksum(frame: bytes) -> bytes:
    """A frame with a Content_Checksum rewritten without it (flag cleared, last 4 bytes dropped)."""
    assert frame[4] & 4, "frame has no checksum"
    return frame[:4] + bytes([frame[4] & ~4]) + frame[5:-4]


def zstd_corrupt_undetected(frame: bytes, raw: bytes) -> bytes:
    """``frame`` (compressed blocks and a Content_Checksum, content ``raw``) with one byte of its blocks changed
    so that this zstd library, reading the frame without its checksum, decodes it without error into
    len(raw) bytes that are not ``raw``: corruption that only the checksum reveals. The first such change in
    a fixed search order (positions from the end of the frame header, XOR values 0x01, 0x80, 0x5A)."""
    start = sum(_zstd_fcs_span(frame)) + 3          # after the frame header and the first block header
    dctx = zstandard.ZstdDecompressor()
    for pos in range(start, len(frame) - 4):
        for x in (0x01, 0x80, 0x5A):
            bad = frame[:pos] + bytes([frame[pos] ^ x]) + frame[pos + 1:]
            try:
                out = dctx.decompress(zstd_strip_checksum(bad), max_output_size=len(raw))
            except zstandard.ZstdError:
                continue
            if len(out) == len(raw) and out != raw:
                return bad
    raise AssertionError("no undetected single-byte corruption found")


# ----------------------------------------------------------------------------------- in-place edits
def record_spans(data: bytes) -> list[tuple[str, int, int]]:
    """(kind, offset, length) of each complete record that framing alone can find; stops at the first doubt."""
    spans = []
    if len(data) >= 12 and data[:4] == HEADER_MAGIC:
        (body_len,) = struct.unpack_from("<I", data, 8)
        n = 12 + body_len + 4
        if n > len(data):
            return spans
        spans.append(("header", 0, n))
        pos = n
        while pos + 12 <= len(data) and data[pos:pos + 4] == FRAME_MAGIC:
            (n,) = struct.unpack_from("<I", data, pos + 4)
            if n < 16 or pos + n > len(data):
                break
            spans.append(("frame", pos, n))
            pos += n
    return spans


def fix_crc(record: bytes | bytearray) -> bytes:
    """Recompute the trailing CRC-32 of one header or frame record after tampering."""
    out = bytearray(record)
    struct.pack_into("<I", out, len(out) - 4, zlib.crc32(out[:-4]))
    return bytes(out)


def fix_crcs(data: bytes) -> bytes:
    """Recompute the CRC-32 of every complete record, so a mutation reaches the checks behind the checksum."""
    out = bytearray(data)
    for _, off, n in record_spans(data):
        struct.pack_into("<I", out, off + n - 4, zlib.crc32(out[off:off + n - 4]))
    return bytes(out)


def frame_vector_len_at(meta: bytes, field_id: int) -> int:
    """Position in ``meta`` of the length of the Frame's vector ``field_id`` (FRAME_BLOCKS or
    FRAME_SECTIONS), to make it claim more entries than the buffer holds."""
    fb = FbFrame.Frame.GetRootAs(bytes(meta), 0)
    return fb._tab.Vector(fb._tab.Offset(4 + 2 * field_id)) - 4


def set_root_soffset(buf: bytes, soffset: int) -> bytes:
    """``buf`` with its root table's soffset set to ``soffset`` (the vtable then lies at table - soffset)."""
    (root,) = struct.unpack_from("<I", buf, 0)
    out = bytearray(buf)
    struct.pack_into("<i", out, root, soffset)
    return bytes(out)
# ----------------------------------------------------------------------------------- hand-laid FlatBuffers
# A minimal FlatBuffers writer that places every object where it is told (the library's Builder
# always aligns): used for buffers that verify but are laid out unusually (misaligned fields), and,
# with the positions it returns, for editing one offset or length into an invalid value.
@dataclass
class FbTable:
    fields: dict            # field id -> ("u8"|"u32"|"u64"|"f32", value) | ("raw", bytes) | ("ref", node)
    nslots: int | None = None


@dataclass
class FbVector:
    elems: list             # bytes per element, or ("ref", node)


@dataclass
class FbString:
    data: bytes
    terminator: int = 0


_SCALAR_FMT = {"u8": "<B", "u32": "<I", "u64": "<Q", "f32": "<f"}


def fb_layout(root, pad: int = 1) -> tuple[bytes, dict]:
    """Serialize ``root`` (an FbTable); ``pad`` zero bytes go before every object, so with pad=1 no
    4- or 8-byte value is aligned. Returns (buffer, positions): positions[id(node)] is the table's
    start (its soffset), a vector's or string's length field; positions[(id(table), "vtable")] and
    positions[(id(node), field id)] / positions[(id(vector), k)] locate vtables, fields and elements."""
    order, seen = [], set()

    def walk(node):
        if id(node) in seen:
            return
        seen.add(id(node))
        order.append(node)
        kids = node.fields.values() if isinstance(node, FbTable) else node.elems if isinstance(node, FbVector) else ()
        for v in kids:
            if isinstance(v, tuple) and v[0] == "ref":
                walk(v[1])

    walk(root)

    def inline(v) -> int:
        kind, val = v
        return 4 if kind == "ref" else len(val) if kind == "raw" else struct.calcsize(_SCALAR_FMT[kind])

    pos: dict = {}
    at = 4
    for node in order:
        at += pad
        if isinstance(node, FbTable):
            slots = node.nslots if node.nslots is not None else max(node.fields, default=-1) + 1
            pos[(id(node), "vtable")] = at
            at += 4 + 2 * slots
            at += pad
            pos[id(node)] = at
            at += 4
            for i in sorted(node.fields):
                pos[(id(node), i)] = at
                at += inline(node.fields[i])
        elif isinstance(node, FbVector):
            pos[id(node)] = at
            at += 4
            for k, e in enumerate(node.elems):
                pos[(id(node), k)] = at
                at += 4 if isinstance(e, tuple) else len(e)
        else:
            pos[id(node)] = at
            at += 4 + len(node.data) + 1
    out = bytearray(at + pad)
    struct.pack_into("<I", out, 0, pos[id(root)])

    def put_ref(p, node):
        struct.pack_into("<I", out, p, pos[id(node)] - p)

    for node in order:
        p = pos[id(node)]
        if isinstance(node, FbTable):
            vt = pos[(id(node), "vtable")]
            slots = node.nslots if node.nslots is not None else max(node.fields, default=-1) + 1
            end = max([pos[(id(node), i)] + inline(v) for i, v in node.fields.items()], default=p + 4)
            struct.pack_into("<HH", out, vt, 4 + 2 * slots, end - p)
            for i, v in node.fields.items():
                struct.pack_into("<H", out, vt + 4 + 2 * i, pos[(id(node), i)] - p)
            struct.pack_into("<i", out, p, p - vt)
            for i, (kind, val) in node.fields.items():
                q = pos[(id(node), i)]
                if kind == "ref":
                    put_ref(q, val)
                elif kind == "raw":
                    out[q:q + len(val)] = val
                else:
                    struct.pack_into(_SCALAR_FMT[kind], out, q, val)
        elif isinstance(node, FbVector):
            struct.pack_into("<I", out, p, len(node.elems))
            for k, e in enumerate(node.elems):
                q = pos[(id(node), k)]
                if isinstance(e, tuple):
                    put_ref(q, e[1])
                else:
                    out[q:q + len(e)] = e
        else:
            struct.pack_into("<I", out, p, len(node.data))
            out[p + 4:p + 4 + len(node.data)] = node.data
            out[p + 4 + len(node.data)] = node.terminator
    return bytes(out), pos


def header_tree(h: HeaderFields) -> FbTable:
    """The StreamHeader of ``h`` as hand-layout nodes (same fields header_body writes)."""
    f: dict = {0: ("u8", h.sh_degree), 3: ("ref", FbString(h.profile_name.encode())),
               4: ("u64", h.required_features), 5: ("u32", h.max_gaussians),
               6: ("ref", FbString(h.generator.encode()))}
    if h.grid is not None:
        origin, cell_size, cell_bits, slot_bits = h.grid
        f[1] = ("raw", struct.pack("<4f2B2x", *origin, cell_size, cell_bits, slot_bits))
    if h.quant is not None:
        q = h.quant
        f[2] = ("ref", FbTable({0: ("u8", q.position_bits), 1: ("u8", q.scale_bits), 2: ("f32", q.scale_min),
                                3: ("f32", q.scale_max), 4: ("u8", q.rotation_bits), 5: ("u8", q.opacity_bits),
                                6: ("u8", q.dc_bits), 7: ("f32", q.dc_min), 8: ("f32", q.dc_max),
                                9: ("ref", FbVector([bytes([b]) for b in q.rest_bits])),
                                10: ("ref", FbVector([struct.pack("<f", r) for r in q.rest_range]))}))
        if q.sh_palette:
            f[2][1].fields[11] = ("u32", q.sh_palette)
    return FbTable(f)


def frame_tree(f: FrameFields) -> FbTable:
    """The Frame of ``f`` as hand-layout nodes (same fields frame_meta writes)."""
    blocks = [("ref", FbTable({0: ("u8", b.kind), 1: ("u32", b.count), 2: ("u8", b.mask), 3: ("u8", b.level),
                               4: ("ref", FbVector([struct.pack("<I", s) for s in b.sections]))})) for b in f.blocks]
    secs = [struct.pack("<3I4B", s.offset, s.stored_size, s.raw_size, s.compression, s.filters, s.width, s.reserved)
            for s in f.sections]
    fields: dict = {0: ("u64", f.seq), 1: ("u64", f.base_seq), 2: ("u32", f.flags), 3: ("u64", f.required_features),
                    5: ("ref", FbVector(blocks)), 6: ("ref", FbVector(secs))}
    if f.digest is not None:
        fields[4] = ("raw", struct.pack("<QII", *f.digest))
    return FbTable(fields)
