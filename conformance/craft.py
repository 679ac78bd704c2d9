"""Byte-level builders for GSD records, able to write invalid ones on purpose.

The codec's own writers only produce conforming bytes; conformance vectors and
the fuzzer need headers and frames with any field set to any value (a zero
cell size, a block of kind 7, a section past the payload, a wrong CRC). These
helpers build the FlatBuffers metadata with the generated ``gsd.fb`` API and
the payload with ``codec.sections.SectionWriter``, and expose every length,
magic and checksum as an override.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

import flatbuffers
import numpy as np
import zstandard

from codec.sections import SectionDesc, SectionWriter
from gsd.fb import Frame as FbFrame
from gsd.fb import OpBlock as FbOpBlock
from gsd.fb import Quantization as FbQuant
from gsd.fb import StreamHeader as FbHeader
from gsd.fb.Digest import CreateDigest
from gsd.fb.Grid import CreateGrid
from gsd.fb.Section import CreateSection

HEADER_MAGIC = b"GSDH"
FRAME_MAGIC = b"GSDF"
ADD, UPDATE, DELETE_IDS, DELETE_RANGES, DELETE_CELLS = 1, 2, 3, 4, 5
KEYFRAME = 1
NONE, ZSTD = 0, 1
DELTA, ZIGZAG, SHUFFLE = 1, 2, 4

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

    @classmethod
    def of(cls, q, sh_degree: int) -> "QuantFields":
        """From a codec Quantization, with rest_* cut to sh_degree entries as encoders write them."""
        return cls(q.position_bits, q.scale_bits, q.scale_min, q.scale_max, q.rotation_bits, q.opacity_bits,
                   q.dc_bits, q.dc_min, q.dc_max, tuple(q.rest_bits[:sh_degree]), tuple(q.rest_range[:sh_degree]))


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

    @classmethod
    def of(cls, profile, **kw) -> "HeaderFields":
        g = profile.grid
        q = QuantFields.of(profile.quant, profile.sh_degree) if profile.quant is not None else None
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
        quant = FbQuant.End(b)
    b.StartObject(_HEADER_SLOTS + (2 if h.extra_field is not None else 0))
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


# ----------------------------------------------------------------------------------- payload
class Payload:
    """Sections of one frame payload. Filters go through SectionWriter; compression is chosen here."""

    def __init__(self, level: int = 3):
        self.level = level
        self.parts: list[bytes] = []
        self.descs: list[SectionDesc] = []
        self.offset = 0

    @staticmethod
    def filtered(planar: np.ndarray, filters: int) -> tuple[bytes, int]:
        """The raw (uncompressed) section bytes of a (C, N) array and its element width."""
        sw = SectionWriter(level=0)
        sw.add(planar, filters)
        raw = sw.payload()
        return raw, sw.descs[0].width

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

    def add_raw(self, data: bytes, raw_size: int, compression: int, filters: int, width: int,
                offset: int | None = None) -> int:
        """Append stored bytes with an arbitrary descriptor (offset defaults to where they land)."""
        self.descs.append(SectionDesc(self.offset if offset is None else offset, len(data), raw_size,
                                      compression, filters, width))
        self.parts.append(data)
        self.offset += len(data)
        return len(self.descs) - 1

    def bytes(self) -> bytes:
        return b"".join(self.parts)


def zstd_chunks(raw: bytes, frames: int = 1, level: int = 3, **args) -> bytes:
    """raw compressed as ``frames`` concatenated zstd frames (deterministic for a fixed level)."""
    cctx = zstandard.ZstdCompressor(level=level, **args)
    if frames <= 1 or len(raw) < frames:
        return cctx.compress(raw)
    cut = np.linspace(0, len(raw), frames + 1).astype(int)
    return b"".join(cctx.compress(raw[cut[i]:cut[i + 1]]) for i in range(frames))


# ----------------------------------------------------------------------------------- frames
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
    sections: list = field(default_factory=list)  # SectionDesc, or tuples with a reserved byte appended
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
        if isinstance(s, SectionDesc):
            CreateSection(b, s.offset, s.stored_size, s.raw_size, s.compression, s.filters, s.width, 0)
        else:
            CreateSection(b, *s)
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


def frame_record(meta: bytes, payload: bytes, *, magic: bytes = FRAME_MAGIC, frame_len: int | None = None,
                 meta_len: int | None = None, crc: int | None = None) -> bytes:
    n = 12 + len(meta) + len(payload) + 4
    head = struct.pack("<4sII", magic, n if frame_len is None else frame_len, len(meta) if meta_len is None else meta_len)
    body = head + meta + payload
    return body + struct.pack("<I", zlib.crc32(body) if crc is None else crc)


# ----------------------------------------------------------------------------------- record walking
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


def fix_crcs(data: bytes) -> bytes:
    """Recompute the CRC-32 of every complete record, so a mutation reaches the checks behind the checksum."""
    out = bytearray(data)
    for _, off, n in record_spans(data):
        struct.pack_into("<I", out, off + n - 4, zlib.crc32(out[off:off + n - 4]))
    return bytes(out)
