"""Bytes <-> header and frames: record framing, CRC, FlatBuffers metadata, sections (SPEC.md 4, 6).

Everything read from the wire is checked before it is used: lengths against
the bytes present and the limits, counts against limits before any
allocation, indices against their tables. Errors are GsdError with the
spec's code.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import flatbuffers
import numpy as np

from gsd.fb import Frame as FbFrame
from gsd.fb import OpBlock as FbOpBlock
from gsd.fb import Quantization as FbQuant
from gsd.fb import StreamHeader as FbHeader
from gsd.fb.Digest import CreateDigest
from gsd.fb.Grid import CreateGrid

from .attributes import ATTRS, Attr, full_mask, mask_attrs, present_attrs, rest_degree_rows
from .id_index import merge_id_blocks
from .delta import Delta, PaletteSet, RankedBlock, UpdateBlock
from .digest import Digest
from .errors import ErrorCode, GsdError
from .limits import SPEC_LIMITS, Limits
from .profile import Profile, Quantization
from .sections import (CHANNEL, DELTA, PARALLEL_MIN_BYTES, SHUFFLE, ZIGZAG, LazyArray, SectionDesc, SectionWriter,
                       crc32_combine, on_worker, parallel_map, read_section, submit)
from .spatial import Grid, implicit_ids, placements

HEADER_MAGIC = b"GSDH"
FRAME_MAGIC = b"GSDF"
VERSION = (1, 4)  # written by this encoder; any minor version of major 1 is read (SPEC.md 10)
FORMATS = tuple(f"{VERSION[0]}.{m}" for m in range(VERSION[1] + 1))  # every version this decoder reads, "1.0" first
KEYFRAME = 1
ADD, UPDATE, DELETE_IDS, DELETE_RANGES, DELETE_CELLS, PALETTE, ADD_IMPLICIT = 1, 2, 3, 4, 5, 6, 7
UPDATE_RANKED, DELETE_RANKED = 8, 9  # format 1.2: ids as ranks among the live ids (SPEC.md 6.1)
LAST_KIND = DELETE_RANKED           # kinds above it up to 127: required kinds this decoder does not know
ID_KINDS = (ADD, UPDATE, DELETE_IDS, PALETTE, ADD_IMPLICIT, UPDATE_RANKED, DELETE_RANKED)  # max_ids_per_frame
SH_PALETTE = 1      # StreamHeader.required_features bit 0: SH_REST codes are palette indices (SPEC.md 5.9)
KNOWN_FEATURES = SH_PALETTE  # header feature bits this decoder understands
KNOWN_FRAME_FEATURES = 0     # frame feature bits (none defined)
# ADDs of a frame that go implicitly while others cannot: fewer stay in the ADD block. Implicit ids
# save ~0.35 B per Gaussian; a second block costs its sections' framing and splits their compression
# context (435 implicit of 3,000 clones of a 200k scene's Gaussians: +1.0 kB when split).
IMPLICIT_SPLIT_MIN = 8192
_PREFIX = struct.Struct("<4sII")
_HPREFIX = struct.Struct("<4sBBHI")
_FB_ERRORS = (struct.error, IndexError, ValueError, TypeError, OverflowError, UnicodeDecodeError, AttributeError)


@dataclass(frozen=True)
class StreamHeader:
    profile: Profile
    max_gaussians: int = 0
    generator: str = ""
    version: tuple[int, int] = VERSION
    frame_rate: float = 0.0  # informative (SPEC.md 4.6): frames per second for playback; 0 = unset


# ---------------------------------------------------------------------------------------- header
def encode_header(h: StreamHeader) -> bytes:
    p = h.profile
    b = flatbuffers.Builder(256)
    name = b.CreateString(p.name)
    gen = b.CreateString(h.generator)
    quant = None
    if p.quant is not None:
        q = p.quant
        bits = b.CreateNumpyVector(np.array(q.rest_bits[: p.sh_degree], np.uint8))
        rng = b.CreateNumpyVector(np.array(q.rest_range[: p.sh_degree], np.float32))
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
        if q.palette:
            FbQuant.AddShPalette(b, q.palette)
        quant = FbQuant.End(b)
    FbHeader.Start(b)
    FbHeader.AddShDegree(b, p.sh_degree)
    g = p.grid
    FbHeader.AddGrid(b, CreateGrid(b, *g.origin, g.cell_size, g.cell_bits, g.slot_bits))
    if quant is not None:
        FbHeader.AddQuantization(b, quant)
    FbHeader.AddProfileName(b, name)
    if p.palette:
        FbHeader.AddRequiredFeatures(b, SH_PALETTE)
    FbHeader.AddMaxGaussians(b, h.max_gaussians)
    FbHeader.AddGenerator(b, gen)
    if h.frame_rate:
        FbHeader.AddFrameRate(b, h.frame_rate)
    b.Finish(FbHeader.End(b))
    body = bytes(b.Output())
    head = _HPREFIX.pack(HEADER_MAGIC, *VERSION, 0, len(body)) + body
    return head + struct.pack("<I", zlib.crc32(head))


def decode_header(buf, limits: Limits = SPEC_LIMITS, message: bool = False) -> tuple[StreamHeader, int]:
    """Parse a header record at the start of ``buf``; returns it and its byte length.

    ``message=True``: ``buf`` is one WebSocket message (SPEC.md 11.3) and must hold exactly the
    record; bytes after it are MALFORMED, checked right after the CRC (SPEC.md 4.9, H7a).
    """
    mv = memoryview(buf)
    if len(mv) < 4:
        raise GsdError(ErrorCode.TRUNCATED, "stream ends inside the header magic")
    if bytes(mv[:4]) != HEADER_MAGIC:
        raise GsdError(ErrorCode.BAD_MAGIC, "stream does not start with GSDH")
    if len(mv) < _HPREFIX.size:
        raise GsdError(ErrorCode.TRUNCATED, "stream ends inside the header prefix")
    _, major, minor, _reserved, body_len = _HPREFIX.unpack_from(mv)
    if major != VERSION[0]:
        raise GsdError(ErrorCode.UNSUPPORTED_VERSION, f"major version {major}, this decoder reads {VERSION[0]}")
    if body_len > limits.max_header_bytes:
        raise GsdError(ErrorCode.LIMIT_EXCEEDED, f"header body of {body_len} bytes")
    total = _HPREFIX.size + body_len + 4
    if len(mv) < total:
        raise GsdError(ErrorCode.TRUNCATED, "stream ends inside the header")
    (crc,) = struct.unpack_from("<I", mv, total - 4)
    if zlib.crc32(mv[: total - 4]) != crc:
        raise GsdError(ErrorCode.BAD_CHECKSUM, "header CRC-32 mismatch")
    if message and len(mv) != total:
        raise GsdError(ErrorCode.MALFORMED, "bytes after the header record in its message")
    body = bytes(mv[_HPREFIX.size: total - 4])
    try:
        h = _read_header_body(body)
    except GsdError:
        raise
    except _FB_ERRORS as e:  # not reachable after verification; a safety net, never a crash
        raise GsdError(ErrorCode.MALFORMED, f"header metadata unreadable: {e}") from None
    features, degree, grid_args, quant, name, gen, max_g, frame_rate = h
    param_problem = None  # BAD_HEADER, raised after the required_features check (H9 before H10)
    quant_args = None
    if quant is not None:
        scalars, rest_bits, rest_range, nb, nr, palette = quant
        if nb > 3 or nr > 3:
            param_problem = "more than 3 SH degrees of rest parameters"
        elif nb < degree or nr < degree:
            param_problem = "rest_bits/rest_range shorter than sh_degree"
        else:
            quant_args = scalars + (rest_bits + (8,) * (3 - nb), rest_range + (1.0,) * (3 - nr), palette)
    if features & ~KNOWN_FEATURES:
        raise GsdError(ErrorCode.UNSUPPORTED_FEATURE, f"unknown required header features {features:#x}")
    if param_problem is None and bool(features & SH_PALETTE) != bool(quant_args and quant_args[-1]):
        param_problem = "required feature SH_PALETTE is set without sh_palette, or sh_palette without it"
    if param_problem is None and quant_args and quant_args[-1] and degree == 0:
        param_problem = "sh_palette needs SH degree 1 or more"
    if param_problem:
        raise GsdError(ErrorCode.BAD_HEADER, param_problem)
    if max_g > SPEC_LIMITS.max_gaussians:
        raise GsdError(ErrorCode.BAD_HEADER, f"max_gaussians {max_g} above the spec limit")
    grid = Grid(*grid_args)  # raises BAD_HEADER
    profile = Profile(degree, grid, Quantization(*quant_args) if quant_args else None, name)
    return StreamHeader(profile, max_g, gen, (major, minor), frame_rate), total


# ---------------------------------------------------------------------------------------- FlatBuffers
# Verification of the header body and the frame metadata (SPEC.md 4.5, "Verification"): every
# offset, vtable, table, vector and string is checked against the buffer before any field is
# read; any failure is MALFORMED. Alignment is not checked (4.5); a string's terminator must be
# present and 0. Reads are struct.unpack_from at verified positions (no generated accessors on
# the decode path); the OpBlock tables of a frame are verified with numpy when there are many.
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_VT = struct.Struct("<HH")
_SLOTS = [struct.Struct(f"<{k}H") for k in range(16)]
_GRID = struct.Struct("<4f2B")
_DIGEST = struct.Struct("<QII")
_U64 = struct.Struct("<Q")
_HDR_FIELDS = (1, 20, 4, 4, 8, 4, 4, 4)           # StreamHeader field sizes (ids 0..7; offsets are 4)
_QUANT_FIELDS = (1, 1, 4, 4, 1, 1, 1, 4, 4, 4, 4, 4)  # Quantization (ids 0..11)
_FRAME_FIELDS = (8, 8, 4, 8, 16, 4, 4)            # Frame (ids 0..6)
_QUANT_SCALARS = ((0, "<B"), (1, "<B"), (2, "<f"), (3, "<f"), (4, "<B"), (5, "<B"), (6, "<B"), (7, "<f"), (8, "<f"))
_BLOCK_NP_MIN = 24      # OpBlock tables verified with numpy from this many blocks on
_BLOCK_CHUNK = 1 << 20  # ... in chunks of this many (bounded temporaries for huge claimed vectors)


def _bad(what: str):
    raise GsdError(ErrorCode.MALFORMED, f"FlatBuffers verification: {what}")


def _table(buf: bytes, n: int, t: int, sizes: tuple, what: str) -> list[int]:
    """Verify the table at ``t``; returns the absolute position of each schema field (0 = absent)."""
    if t + 4 > n:
        _bad(f"{what} table outside the buffer")
    vt = t - _I32.unpack_from(buf, t)[0]
    if vt < 0 or vt + 4 > n:
        _bad(f"{what} vtable outside the buffer")
    vsize, tsize = _VT.unpack_from(buf, vt)
    if vsize & 1 or vsize < 4 or vt + vsize > n:
        _bad(f"{what} vtable size {vsize}")
    if tsize < 4 or t + tsize > n:
        _bad(f"{what} table size {tsize}")
    k = min(len(sizes), (vsize - 4) >> 1)
    pos = [t + o if o else 0 for o in _SLOTS[k].unpack_from(buf, vt + 4)] + [0] * (len(sizes) - k)
    for p, s in zip(pos, sizes):
        if p and p + s > n:
            _bad(f"{what} field outside the buffer")
    return pos


def _ref(buf: bytes, n: int, p: int, what: str) -> int:
    """Target of the (verified, in-buffer) uoffset at ``p``; 0 offsets are MALFORMED."""
    o = _U32.unpack_from(buf, p)[0]
    if o == 0:
        _bad(f"{what}: offset 0")
    return p + o


def _vector(buf: bytes, n: int, p: int, elem: int, what: str) -> tuple[int, int]:
    """(first element position, length) of the vector referenced at ``p`` (0: absent, empty)."""
    if not p:
        return 0, 0
    v = _ref(buf, n, p, what)
    if v + 4 > n:
        _bad(f"{what} length outside the buffer")
    length = _U32.unpack_from(buf, v)[0]
    if v + 4 + elem * length > n:
        _bad(f"{what} of {length} runs past the buffer")
    return v + 4, length


def _string(buf: bytes, n: int, p: int, what: str) -> bytes:
    if not p:
        return b""
    v = _ref(buf, n, p, what)
    if v + 4 > n:
        _bad(f"{what} length outside the buffer")
    length = _U32.unpack_from(buf, v)[0]
    end = v + 4 + length
    if end + 1 > n:
        _bad(f"{what} of {length} bytes runs past the buffer")
    if buf[end] != 0:
        _bad(f"{what} terminator is not 0")
    return buf[v + 4:end]


def _root(buf: bytes, sizes: tuple, what: str) -> list[int]:
    n = len(buf)
    if n < 8:
        _bad(f"{what} shorter than 8 bytes")
    return _table(buf, n, _ref(buf, n, 0, f"{what} root"), sizes, what)


def _read_header_body(body: bytes):
    """Verify the whole StreamHeader buffer, then read it (raw values; domains are checked later)."""
    n = len(body)
    f = _root(body, _HDR_FIELDS, "StreamHeader")
    quant = None
    if f[2]:
        q = _table(body, n, _ref(body, n, f[2], "quantization"), _QUANT_FIELDS, "Quantization")
        bits_at, nb = _vector(body, n, q[9], 1, "rest_bits")
        range_at, nr = _vector(body, n, q[10], 4, "rest_range")
        quant = (q, bits_at, nb, range_at, nr)
    name = _string(body, n, f[3], "profile_name")
    gen = _string(body, n, f[6], "generator")
    # ---- verified: read
    if not f[1]:
        raise GsdError(ErrorCode.MALFORMED, "header has no grid")
    ox, oy, oz, cs, cb, sb = _GRID.unpack_from(body, f[1])
    if quant is not None:
        q, bits_at, nb, range_at, nr = quant
        scalars = tuple(struct.unpack_from(fmt, body, q[i])[0] if q[i] else 0 for i, fmt in _QUANT_SCALARS)
        rest_bits = tuple(body[bits_at:bits_at + min(nb, 3)])
        rest_range = struct.unpack_from(f"<{min(nr, 3)}f", body, range_at) if nr else ()
        palette = _U32.unpack_from(body, q[11])[0] if q[11] else 0
        quant = (scalars, rest_bits, tuple(rest_range), nb, nr, palette)
    features = struct.unpack_from("<Q", body, f[4])[0] if f[4] else 0
    degree = body[f[0]] if f[0] else 0
    max_g = _U32.unpack_from(body, f[5])[0] if f[5] else 0
    rate = struct.unpack_from("<f", body, f[7])[0] if f[7] else 0.0
    rate = rate if 0 < rate < float("inf") else 0.0  # informative: anything but a positive finite rate is unset
    return (features, degree, ((ox, oy, oz), cs, cb, sb), quant, name.decode("utf-8", "replace"),
            gen.decode("utf-8", "replace"), max_g, rate)


def _gather(a: np.ndarray, p: np.ndarray, width: int) -> np.ndarray:
    """Little-endian unsigned ``width``-byte values at byte positions ``p`` (any alignment)."""
    v = a[p].astype(np.int64)
    for k in range(1, width):
        v |= a[p + k].astype(np.int64) << (8 * k)
    return v


def _blocks_np(buf: bytes, n: int, start: int, nb: int) -> np.ndarray:
    """Verify ``nb`` OpBlock tables (vector elements at ``start``) with numpy; returns, per block,
    (kind, count, mask, level, sections start, sections length)."""
    a = np.frombuffer(buf, np.uint8)
    out = np.zeros((nb, 6), np.int64)
    for c0 in range(0, nb, _BLOCK_CHUNK):
        m = min(nb - c0, _BLOCK_CHUNK)
        e = start + 4 * (c0 + np.arange(m, dtype=np.int64))
        o = _gather(a, e, 4)
        if not o.all():
            _bad("blocks element: offset 0")
        t = e + o
        if (t + 4 > n).any():
            _bad("OpBlock table outside the buffer")
        s = _gather(a, t, 4)
        vt = t - np.where(s >= 1 << 31, s - (1 << 32), s)
        if ((vt < 0) | (vt + 4 > n)).any():
            _bad("OpBlock vtable outside the buffer")
        vsize, tsize = _gather(a, vt, 2), _gather(a, vt + 2, 2)
        if ((vsize & 1) | (vsize < 4) | (vt + vsize > n) | (tsize < 4) | (t + tsize > n)).any():
            _bad("OpBlock vtable or table size")
        pos = []
        for i, size in enumerate((1, 4, 1, 1, 4)):
            has = vsize >= 6 + 2 * i
            off = np.where(has, _gather(a, np.where(has, vt + 4 + 2 * i, 0), 2), 0)
            p = np.where(off != 0, t + off, 0)
            if ((p != 0) & (p + size > n)).any():
                _bad("OpBlock field outside the buffer")
            pos.append(p)
        for i, width in enumerate((1, 4, 1, 1)):
            out[c0:c0 + m, i] = np.where(pos[i] != 0, _gather(a, pos[i], width), 0)
        p = pos[4]
        has = p != 0
        so = np.where(has, _gather(a, p, 4), 1)
        if not so.all():
            _bad("OpBlock sections: offset 0")
        v = np.where(has, p + so, 0)
        if (has & (v + 4 > n)).any():
            _bad("OpBlock sections length outside the buffer")
        ln = np.where(has, _gather(a, v, 4), 0)
        if (has & (v + 4 + 4 * ln > n)).any():
            _bad("OpBlock sections vector runs past the buffer")
        out[c0:c0 + m, 4] = np.where(has, v + 4, 0)
        out[c0:c0 + m, 5] = ln
    return out


def _blocks_py(buf: bytes, n: int, start: int, nb: int) -> list[tuple]:
    """Verify ``nb`` OpBlock tables one by one (few blocks); same result rows as _blocks_np."""
    rows = []
    for j in range(nb):
        e = start + 4 * j
        b = _table(buf, n, _ref(buf, n, e, "blocks element"), (1, 4, 1, 1, 4), "OpBlock")
        at, ln = _vector(buf, n, b[4], 4, "OpBlock sections")
        rows.append((buf[b[0]] if b[0] else 0, _U32.unpack_from(buf, b[1])[0] if b[1] else 0,
                     buf[b[2]] if b[2] else 0, buf[b[3]] if b[3] else 0, at, ln))
    return rows


# ---------------------------------------------------------------------------------------- frames
def _first(rows) -> int:
    """A band's first row (its name in a section role), -1 for a whole attribute."""
    return -1 if rows is None else int(rows[0])


class FrameEncoder:
    """Serializes a Delta for one profile. Reuse it: it holds the zstd context."""

    def __init__(self, profile: Profile, level: int = 1, implicit_ids: bool = True, channels: bool = False,
                 gaps: bool = False):
        self.profile = profile
        self.level = level
        # ADD_IMPLICIT blocks where the ids allow them (format 1.1); False: every id explicit, as 1.0 reads
        self.implicit_ids = implicit_ids and profile.implicit_ids
        # colour sections may be stored as channel differences (the CHANNEL filter, format 1.3)
        self.channels = channels
        # ranks may be stored as exp-Golomb codes of their gaps (the gap code, format 1.4)
        self.gaps = gaps
        self._choices: dict = {}  # section role -> (filter trial winner, frames left before the next trial)

    def _attr_filters(self, attr: Attr, residual: bool) -> tuple[int, ...]:
        """Candidate filters; the section writer keeps the one that compresses best."""
        shuffle = SHUFFLE if self.profile.width(attr) > 1 else 0
        colour = attr is Attr.SH_DC or attr is Attr.SH_REST and not self.profile.palette
        return self._candidates((ZIGZAG | shuffle) if residual else shuffle, shuffle, colour)

    def _candidates(self, plain: int, shuffle: int, colour: bool) -> tuple[int, ...]:
        """A section's filter candidates: ``plain`` or delta-coded, and for a colour section of an
        encoder that may use CHANNEL, both also as channel differences."""
        both = (plain, DELTA | ZIGZAG | shuffle)
        if colour and self.channels:
            return both + (CHANNEL | ZIGZAG | shuffle, CHANNEL | DELTA | ZIGZAG | shuffle)
        return both

    def _add_blocks(self, sw: SectionWriter, ids: np.ndarray, codes: dict) -> list[tuple]:
        """The ADDs as blocks: those of cells whose ids follow from their positions in an ADD_IMPLICIT
        block (one section of placements instead of the ids and the position codes, SPEC.md 6.1), the
        rest in an ADD block; a few implicit ones are not worth a block of their own."""
        p = self.profile
        attrs = present_attrs(p.sh_degree)

        def block(kind, first, codes, attrs):
            secs = [sw.add(first[None, :], DELTA | SHUFFLE)]
            secs += [sw.add(codes[a], self._attr_filters(a, False), rows, (ADD, a, _first(rows)))
                     for a, rows in p.wire_parts(attrs)]
            return kind, len(first), 0, 0, secs

        if self.implicit_ids:
            q, ok, n = placements(ids, codes[Attr.POSITION], p.grid, p.quant.position_bits)
            if n == len(ids):
                return [block(ADD_IMPLICIT, q, codes, attrs[1:])]
            if n >= IMPLICIT_SPLIT_MIN:
                rest = ~ok
                return [block(ADD_IMPLICIT, q[ok], {a: codes[a][:, ok] for a in attrs[1:]}, attrs[1:]),
                        block(ADD, ids[rest], {a: codes[a][:, rest] for a in attrs}, attrs)]
        return [block(ADD, ids, codes, attrs)]

    def encode(self, d: Delta, rank=None) -> bytes:
        return self.start(d, background=False, rank=rank).finish()

    def start(self, d: Delta, background: bool = True, rank=None) -> "PendingFrame":
        """Queue ``d``'s sections; with ``background``, a large frame's (OVERLAP_MIN_BYTES raw) are
        filtered and compressed on a section worker from now on. ``finish()`` writes the metadata,
        which reads ``d.digest`` only then: an encoder applies the delta to its state (and takes the
        digest) while the worker compresses. ``d``'s arrays must not change until ``finish()``.

        ``rank``: a function from live ids to their ranks among the ids live before ``d`` (format
        1.2); with it, UPDATE and DELETE_IDS blocks are written ranked (UPDATE_RANKED, DELETE_RANKED)."""
        p = self.profile
        sw = SectionWriter(self.level, choices=self._choices)
        blocks = []  # (kind, count, mask, level, [section indices])

        def ids_section(ids):
            """(the block's id section, ranked?): ranks when the caller ranks this frame's ids."""
            if rank is None:
                return sw.add(ids[None, :], DELTA | SHUFFLE), False
            return sw.add(rank(ids).astype(np.uint32)[None, :], DELTA | SHUFFLE, gaps=self.gaps), True
        if d.ranked:
            raise ValueError("a Delta with ranked blocks not yet resolved against its state cannot be written")
        if len(d.delete_ids):
            sec, ranked = ids_section(d.delete_ids)
            blocks.append((DELETE_RANKED if ranked else DELETE_IDS, len(d.delete_ids), 0, 0, [sec]))
        if len(d.delete_ranges):
            r = np.ascontiguousarray(d.delete_ranges.T)
            blocks.append((DELETE_RANGES, r.shape[1], 0, 0, [sw.add(r, DELTA | ZIGZAG | SHUFFLE)]))
        for level in sorted(d.delete_cells):
            cells = np.asarray(d.delete_cells[level], np.uint64)
            if len(cells):
                blocks.append((DELETE_CELLS, len(cells), 0, level, [sw.add(cells[None, :], DELTA | ZIGZAG | SHUFFLE)]))
        if d.palette is not None and len(d.palette):
            pal = d.palette
            secs = [sw.add(np.asarray(pal.index, np.uint16)[None, :], DELTA | SHUFFLE)]
            shuffle = SHUFFLE if pal.codes.dtype.itemsize > 1 else 0
            cands = self._candidates(shuffle, shuffle, colour=True)
            secs += [sw.add(pal.codes, cands, rows, (PALETTE, _first(rows)))
                     for rows in rest_degree_rows(p.sh_degree)]
            blocks.append((PALETTE, len(pal), 0, 0, secs))
        if len(d.add_ids):
            blocks += self._add_blocks(sw, d.add_ids, d.add)
        for b in d.updates:
            sec, ranked = ids_section(b.ids)
            secs = [sec] + [sw.add(b.res[a], self._attr_filters(a, True), comp, (UPDATE, a, _first(comp)))
                            for a, comp in p.wire_parts(mask_attrs(b.mask))]
            blocks.append((UPDATE_RANKED if ranked else UPDATE, len(b.ids), b.mask, 0, secs))
        return PendingFrame(d, sw, blocks, background)


# Smaller frames are built on the caller's thread. A 5,000-Gaussian delta (113 kB raw) compressed on a
# worker while the state applies it encodes 0.2-0.4 ms sooner on a 16-core host and 0.1 ms on two cores;
# below a few tens of kB the hand-off costs what it saves.
OVERLAP_MIN_BYTES = 32 << 10


class PendingFrame:
    """A frame whose sections are queued (and, when large, being compressed on a section worker)."""

    def __init__(self, d: Delta, sw: SectionWriter, blocks: list, background: bool):
        self.d, self.sw, self.blocks = d, sw, blocks
        # a frame of PARALLEL_MIN_BYTES or more is built on all the workers by finish() instead
        if background and OVERLAP_MIN_BYTES <= sw.raw_bytes() < PARALLEL_MIN_BYTES and not on_worker():
            sw.start()

    @property
    def started(self) -> bool:
        """Its sections are being compressed on a worker."""
        return self.sw.started

    def finish(self) -> bytes:
        """The frame's bytes, with the metadata (and ``d.digest``) as they are now."""
        sw, d = self.sw, self.d
        parts = sw.parts()
        meta = frame_metadata(d, self.blocks, sw.descs)
        frame_len = _PREFIX.size + len(meta) + sum(len(x) for x in parts) + 4
        head = _PREFIX.pack(FRAME_MAGIC, frame_len, len(meta))
        crc = zlib.crc32(meta, zlib.crc32(head))
        for x, c in zip(parts, sw.crcs or [None] * len(parts)):  # a large part's CRC comes from its worker
            crc = zlib.crc32(x, crc) if c is None else crc32_combine(crc, c, len(x))
        return b"".join((head, meta, *parts, struct.pack("<I", crc)))

    def cancel(self) -> None:
        """The frame will not be written (its delta was refused): wait for the worker to let go of it."""
        self.sw.cancel()


_SECTION_DTYPE = np.dtype([("offset", "<u4"), ("stored_size", "<u4"), ("raw_size", "<u4"), ("compression", "u1"),
                           ("filters", "u1"), ("width", "u1"), ("reserved", "u1")])


def _build_metadata(d: Delta, blocks, descs) -> bytes:
    """The Frame metadata written by the FlatBuffers builder (the layout every template comes from)."""
    b = flatbuffers.Builder(256 + 32 * len(descs))
    block_offs = []
    for kind, count, mask, level, secs in blocks:
        vec = b.CreateNumpyVector(np.array(secs, np.uint32))
        FbOpBlock.Start(b)
        FbOpBlock.AddKind(b, kind)
        FbOpBlock.AddCount(b, count)
        FbOpBlock.AddMask(b, mask)
        FbOpBlock.AddLevel(b, level)
        FbOpBlock.AddSections(b, vec)
        block_offs.append(FbOpBlock.End(b))
    FbFrame.StartBlocksVector(b, len(block_offs))
    for o in reversed(block_offs):
        b.PrependUOffsetTRelative(o)
    blocks_vec = b.EndVector()
    # The Section structs are one contiguous little-endian array: write it in one copy
    # (the same bytes as CreateSection per struct, without ~20 Python calls each).
    table = np.array([(s.offset, s.stored_size, s.raw_size, s.compression, s.filters, s.width, 0) for s in descs],
                     dtype=_SECTION_DTYPE).tobytes()
    FbFrame.StartSectionsVector(b, len(descs))
    b.head = b.head - len(table)
    b.Bytes[b.head:b.head + len(table)] = table
    secs_vec = b.EndVector()
    FbFrame.Start(b)
    FbFrame.AddSeq(b, d.seq)
    FbFrame.AddBaseSeq(b, d.base_seq)
    FbFrame.AddFlags(b, KEYFRAME if d.keyframe else 0)
    if d.digest is not None:
        FbFrame.AddDigest(b, CreateDigest(b, d.digest.count, d.digest.lane0, d.digest.lane1))
    FbFrame.AddBlocks(b, blocks_vec)
    FbFrame.AddSections(b, secs_vec)
    b.Finish(FbFrame.End(b))
    return bytes(b.Output())


# Frame metadata of a given *shape* (which fields are present or zero, the kind, mask, level and
# section count of each block, the number of sections) always has the same layout; only the values
# differ. The first frame of a shape is written by the FlatBuffers builder and read back with the
# verifying reader above to find where each value sits; later frames of that shape copy those
# bytes and write their values in place: the same bytes as the builder, without ~100 Python calls
# per frame.
_TEMPLATES: dict = {}
_TEMPLATE_CAP = 256


def _shape(d: Delta, blocks, descs) -> tuple:
    return (d.base_seq == 0, d.seq == 0, d.keyframe, d.digest is not None, len(descs),
            tuple((k, c == 0, m, lv, len(secs)) for k, c, m, lv, secs in blocks))


def _template(meta: bytes, nblocks: int) -> tuple:
    """Positions of every value in ``meta``: (seq, base_seq, flags, digest, sections table, per block
    (count, sections vector))."""
    n = len(meta)
    f = _root(meta, _FRAME_FIELDS, "Frame")
    bstart, _ = _vector(meta, n, f[5], 4, "blocks")
    sstart, _ = _vector(meta, n, f[6], 16, "sections")
    per_block = []
    for j in range(nblocks):
        t = _table(meta, n, _ref(meta, n, bstart + 4 * j, "blocks element"), (1, 4, 1, 1, 4), "OpBlock")
        per_block.append((t[1], _vector(meta, n, t[4], 4, "OpBlock sections")[0]))
    return f[0], f[1], f[2], f[4], sstart, per_block


def frame_metadata(d: Delta, blocks, descs) -> bytes:
    """The Frame FlatBuffers metadata of a delta whose payload ``descs`` describe (SPEC.md 4.5)."""
    key = _shape(d, blocks, descs)
    t = _TEMPLATES.get(key)
    if t is None:
        meta = _build_metadata(d, blocks, descs)
        if len(_TEMPLATES) >= _TEMPLATE_CAP:
            _TEMPLATES.clear()
        _TEMPLATES[key] = (meta, _template(meta, len(blocks)))
        return meta
    meta, (p_seq, p_base, p_flags, p_digest, p_secs, per_block) = t
    out = bytearray(meta)
    if p_seq:
        _U64.pack_into(out, p_seq, d.seq)
    if p_base:
        _U64.pack_into(out, p_base, d.base_seq)
    if p_digest:
        _DIGEST.pack_into(out, p_digest, d.digest.count, d.digest.lane0, d.digest.lane1)
    for (p_count, p_vec), (_, count, _, _, secs) in zip(per_block, blocks):
        if p_count:
            _U32.pack_into(out, p_count, count)
        if secs:
            struct.pack_into(f"<{len(secs)}I", out, p_vec, *secs)
    if descs:
        table = np.array([(s.offset, s.stored_size, s.raw_size, s.compression, s.filters, s.width, 0) for s in descs],
                         dtype=_SECTION_DTYPE).tobytes()
        out[p_secs:p_secs + len(table)] = table
    return bytes(out)



def frame_length(buf, limits: Limits = SPEC_LIMITS) -> int:
    """Length of the frame record at the start of ``buf`` after checking its prefix (for stream splitting)."""
    mv = memoryview(buf)
    if len(mv) < 4:
        raise GsdError(ErrorCode.TRUNCATED, "bytes end inside a frame magic")
    if bytes(mv[:4]) != FRAME_MAGIC:
        raise GsdError(ErrorCode.BAD_MAGIC, "frame does not start with GSDF")
    if len(mv) < _PREFIX.size:
        raise GsdError(ErrorCode.TRUNCATED, "bytes end inside a frame prefix")
    _, frame_len, meta_len = _PREFIX.unpack_from(mv)
    # Check order of SPEC.md 4 (format-notes 4): frame_len, limit, bytes present, then meta_len.
    if frame_len < _PREFIX.size + 4:
        raise GsdError(ErrorCode.MALFORMED, f"frame_len {frame_len} below the 16-byte minimum")
    if frame_len > limits.max_frame_bytes:
        raise GsdError(ErrorCode.LIMIT_EXCEEDED, f"frame of {frame_len} bytes")
    if len(mv) < frame_len:
        raise GsdError(ErrorCode.TRUNCATED, f"frame needs {frame_len} bytes, {len(mv)} present")
    if meta_len > frame_len - _PREFIX.size - 4:
        raise GsdError(ErrorCode.MALFORMED, "meta_len larger than the frame")
    return frame_len


def frame_is_keyframe(buf, limits: Limits = SPEC_LIMITS) -> bool:
    """The KEYFRAME flag of the frame record at the start of ``buf``, from its metadata alone.

    The prefix and the Frame table are verified; blocks and sections are neither verified nor
    decoded and the CRC is not checked, so this is a hint (a client awaiting a keyframe skips other
    frames with it), never a substitute for decoding. False when the record is unreadable."""
    try:
        frame_length(buf, limits)
        meta_len = _PREFIX.unpack_from(buf)[2]
        meta = bytes(memoryview(buf)[_PREFIX.size:_PREFIX.size + meta_len])
        flags_at = _root(meta, _FRAME_FIELDS, "Frame")[2]
    except GsdError:
        return False
    return bool(flags_at and _U32.unpack_from(meta, flags_at)[0] & KEYFRAME)


@dataclass
class FrameInfo:
    """What a frame cost on the wire, by section role (for `gsd info`)."""

    frame_bytes: int
    meta_bytes: int
    section_bytes: dict  # role -> stored bytes
    raw_bytes: int


def decode_frame(buf, profile: Profile, limits: Limits = SPEC_LIMITS, info: bool = False,
                 message: bool = False) -> tuple[Delta, int] | tuple[Delta, int, FrameInfo]:
    """Parse the frame record at the start of ``buf`` into a Delta (not applied).

    ``message=True``: ``buf`` is one WebSocket message (SPEC.md 11.3) and must hold exactly the
    record; bytes after it are MALFORMED, checked right after the CRC (SPEC.md 4.9, F8a).
    """
    mv = memoryview(buf)
    frame_len = frame_length(mv, limits)
    (crc,) = struct.unpack_from("<I", mv, frame_len - 4)
    crc_check = checksum_job(mv[: frame_len - 4], crc)
    roles: dict = {}
    try:
        if message and len(mv) != frame_len:
            raise GsdError(ErrorCode.MALFORMED, "bytes after the frame record in its message")
        meta_len = _PREFIX.unpack_from(mv)[2]
        meta = bytes(mv[_PREFIX.size: _PREFIX.size + meta_len])
        payload = mv[_PREFIX.size + meta_len: frame_len - 4]
        try:
            blocks, descs, d = _read_meta(meta, limits)
        except GsdError:
            raise
        except _FB_ERRORS as e:  # not reachable after verification; a safety net, never a crash
            raise GsdError(ErrorCode.MALFORMED, f"frame metadata unreadable: {e}") from None
        d = _read_blocks(d, blocks, descs, payload, profile, limits, roles)
    except GsdError:
        crc_check()  # a bad checksum outranks every later error (F8)
        raise
    crc_check()
    if info:
        return d, frame_len, FrameInfo(frame_len, meta_len, roles, sum(s.raw_size for s in descs))
    return d, frame_len


def checksum_job(record: memoryview, crc: int):
    """F8's CRC-32 check as a callable that raises BAD_CHECKSUM. A large frame's CRC runs on a worker
    thread while the caller parses and decompresses (zlib releases the GIL); the caller runs the check
    before it returns or raises anything, so the outcome is that of checking first."""
    if len(record) < PARALLEL_MIN_BYTES:
        ok = zlib.crc32(record) == crc
        job = None
    else:
        job = submit(zlib.crc32, record)

    def check() -> None:
        if (job.result() == crc) if job is not None else ok:
            return
        raise GsdError(ErrorCode.BAD_CHECKSUM, "frame CRC-32 mismatch")
    return check


def _read_meta(meta: bytes, limits: Limits):
    """F9: verify the whole Frame buffer (MALFORMED), then the vector lengths against the limits
    (LIMIT_EXCEEDED), then required_features; then F10's raw-byte sum."""
    n = len(meta)
    f = _root(meta, _FRAME_FIELDS, "Frame")
    bstart, nb = _vector(meta, n, f[5], 4, "blocks")
    sstart, ns = _vector(meta, n, f[6], 16, "sections")
    rows = _blocks_py(meta, n, bstart, nb) if nb < _BLOCK_NP_MIN else _blocks_np(meta, n, bstart, nb)
    # ---- verified
    if nb > limits.max_blocks or ns > limits.max_sections:
        raise GsdError(ErrorCode.LIMIT_EXCEEDED, f"{nb} blocks / {ns} sections")
    r = f[3]
    features = struct.unpack_from("<Q", meta, r)[0] if r else 0
    if features & ~KNOWN_FRAME_FEATURES:
        raise GsdError(ErrorCode.UNSUPPORTED_FEATURE, f"unknown required frame features {features:#x}")
    seq = struct.unpack_from("<Q", meta, f[0])[0] if f[0] else 0
    base = struct.unpack_from("<Q", meta, f[1])[0] if f[1] else 0
    flags = _U32.unpack_from(meta, f[2])[0] if f[2] else 0
    digest = Digest(*_DIGEST.unpack_from(meta, f[4])) if f[4] else None
    if nb >= _BLOCK_NP_MIN:
        rows = rows.tolist()
    blocks = [(k, c, m, lv, np.frombuffer(meta, "<u4", ln, at).tolist() if ln else [])
              for k, c, m, lv, at, ln in rows]
    descs = _section_table(meta, sstart, ns)
    if sum(s.raw_size for s in descs) > limits.max_frame_raw_bytes:
        raise GsdError(ErrorCode.LIMIT_EXCEEDED, "frame declares too many raw bytes")
    d = Delta(seq=seq, base_seq=base, keyframe=bool(flags & KEYFRAME), digest=digest)
    return blocks, descs, d


_SECTION_READ_DTYPE = np.dtype([("offset", "<u4"), ("stored", "<u4"), ("raw", "<u4"),
                           ("compression", "u1"), ("filters", "u1"), ("width", "u1"), ("reserved", "u1")])


def _section_table(meta: bytes, start: int, n: int) -> list[SectionDesc]:
    """Frame.sections (verified extent) read in one numpy view."""
    if n == 0:
        return []
    t = np.frombuffer(meta, _SECTION_READ_DTYPE, n, start)
    return [SectionDesc(*row) for row in zip(t["offset"].tolist(), t["stored"].tolist(), t["raw"].tolist(),
                                             t["compression"].tolist(), t["filters"].tolist(), t["width"].tolist())]


def _read_blocks(d: Delta, blocks, descs, payload, p: Profile, limits: Limits, roles: dict) -> Delta:
    # Counts first: every limit is checked before any section is decompressed.
    n_ids = sum(c for k, c, *_ in blocks if k in ID_KINDS)
    n_rng = sum(c for k, c, *_ in blocks if k in (DELETE_RANGES, DELETE_CELLS))
    if n_ids > limits.max_ids_per_frame:
        raise GsdError(ErrorCode.LIMIT_EXCEEDED, f"{n_ids} ids in one frame")
    if n_rng > limits.max_ranges_per_frame:
        raise GsdError(ErrorCode.LIMIT_EXCEEDED, f"{n_rng} ranges/cells in one frame")
    attrs = present_attrs(p.sh_degree)
    fmask = full_mask(p.sh_degree)

    jobs: list = []  # (section, comps, count, width, into, then); decoded together below

    def section(idx: int, comps: int, count: int, width: int, role: str, into=None, then=None) -> int:
        """A section to decode; ``then`` runs on its values on the same worker (its result replaces them)."""
        if idx >= len(descs):
            raise GsdError(ErrorCode.MALFORMED, f"section index {idx} out of range")
        roles[role] = roles.get(role, 0) + descs[idx].stored_size
        jobs.append((descs[idx], comps, count, width, into, then))
        return len(jobs) - 1

    def attr_jobs(parts, secs, count, width=None, role=None, dtype=None, comps=None):
        """One job per section; an SH band is decoded straight into its rows of one shared array."""
        bands: dict = {}
        out = []
        for (a, rows), s in zip(parts, secs):
            into = None
            if rows is not None:
                if a not in bands:  # made once a band section has passed its checks
                    bands[a] = LazyArray((comps or p.comps(a), count), dtype or p.dtype(a))
                into = (bands[a], rows)
            out.append((a, section(s, p.comps(a) if rows is None else len(rows), count, width or p.width(a),
                                   role or a.name.lower(), into), dtype))
        return out

    def gather(jobs) -> dict:
        """Attribute arrays of one block from its decoded sections (an SH band's job returns the whole array)."""
        return {a: arrays[j].view(dtype or p.dtype(a)) for a, j, dtype in jobs}

    def expect(secs, n, kind):
        if len(secs) != n:
            raise GsdError(ErrorCode.MALFORMED, f"{kind} block has {len(secs)} sections, expected {n}")

    plan = []  # (kind, job refs...)
    for kind, count, mask, level, secs in blocks:
        if kind == 0:
            raise GsdError(ErrorCode.MALFORMED, "op block kind 0")
        if kind >= 128:
            continue  # optional extension block: skipped by 1.0 decoders
        if kind > LAST_KIND:
            raise GsdError(ErrorCode.UNSUPPORTED_FEATURE, f"unknown required op kind {kind}")
        if kind == PALETTE:
            if not p.palette:
                raise GsdError(ErrorCode.MALFORMED, "PALETTE block in a stream without an SH palette")
            bands = [(Attr.SH_REST, rows) for rows in rest_degree_rows(p.sh_degree)]
            expect(secs, 1 + len(bands), "PALETTE")
            plan.append((PALETTE, section(secs[0], 1, count, 2, "palette"), count,
                         attr_jobs(bands, secs[1:], count, p.rest_dtype.itemsize, "palette", p.rest_dtype,
                                   p.rest_comps)))
        elif kind == ADD:
            parts = p.wire_parts(attrs)
            expect(secs, 1 + len(parts), "ADD")
            plan.append((ADD, section(secs[0], 1, count, 8, "ids"), count, attr_jobs(parts, secs[1:], count)))
        elif kind == ADD_IMPLICIT:
            if not p.implicit_ids:
                raise GsdError(ErrorCode.MALFORMED, "ADD_IMPLICIT block in a lossless stream or one whose "
                                                    "placements need more than 64 bits")
            parts = p.wire_parts(attrs[1:])
            expect(secs, 1 + len(parts), "ADD_IMPLICIT")
            # the ids and position codes are derived on the worker that decoded the placements, while
            # the other sections decode
            def derive(q):
                return implicit_ids(q[0], p.grid, p.quant.position_bits, p.dtype(Attr.POSITION))
            plan.append((ADD_IMPLICIT, section(secs[0], 1, count, 8, "placements", then=derive), count,
                         attr_jobs(parts, secs[1:], count)))
        elif kind in (UPDATE, UPDATE_RANKED):
            name = "UPDATE" if kind == UPDATE else "UPDATE_RANKED"
            if mask == 0 or mask & ~fmask:
                raise GsdError(ErrorCode.MALFORMED, f"{name} mask {mask:#x} invalid for SH degree {p.sh_degree}")
            parts = p.wire_parts(mask_attrs(mask))
            expect(secs, 1 + len(parts), name)
            first = section(secs[0], 1, count, 8, "ids") if kind == UPDATE else section(secs[0], 1, count, 4, "ids")
            plan.append((kind, first, count, attr_jobs(parts, secs[1:], count), mask))
        elif kind in (DELETE_IDS, DELETE_RANKED):
            expect(secs, 1, "DELETE_IDS" if kind == DELETE_IDS else "DELETE_RANKED")
            plan.append((kind, section(secs[0], 1, count, 8 if kind == DELETE_IDS else 4, "delete")))
        elif kind == DELETE_RANGES:
            expect(secs, 1, "DELETE_RANGES")
            plan.append((DELETE_RANGES, section(secs[0], 2, count, 8, "delete")))
        else:
            expect(secs, 1, "DELETE_CELLS")
            plan.append((DELETE_CELLS, section(secs[0], 1, count, 8, "delete"), level))
    arrays = _read_sections(payload, jobs)
    adds, upds, dels, ranges, cells, pals = [], [], [], [], {}, []
    for entry in plan:
        kind = entry[0]
        if kind == PALETTE:
            pals.append((arrays[entry[1]][0].view(np.uint16),
                         gather(entry[3])[Attr.SH_REST]))
        elif kind == ADD:
            adds.append((arrays[entry[1]][0], gather(entry[3])))
        elif kind == ADD_IMPLICIT:
            ids, pos = arrays[entry[1]]
            adds.append((ids, {Attr.POSITION: pos, **gather(entry[3])}))
        elif kind == UPDATE:
            upds.append((arrays[entry[1]][0], entry[4], gather(entry[3])))
        elif kind == UPDATE_RANKED:
            d.ranked.append(RankedBlock(arrays[entry[1]][0], UpdateBlock(entry[4], np.zeros(0, np.uint64), gather(entry[3]))))
        elif kind == DELETE_IDS:
            dels.append(arrays[entry[1]][0])
        elif kind == DELETE_RANKED:
            d.ranked.append(RankedBlock(arrays[entry[1]][0]))
        elif kind == DELETE_RANGES:
            ranges.append(arrays[entry[1]].T)
        else:
            prev = cells.get(entry[2])
            cells[entry[2]] = arrays[entry[1]][0] if prev is None else np.concatenate([prev, arrays[entry[1]][0]])
    d.palette = _palette_set(pals)
    return _assemble(d, p, adds, upds, dels, ranges, cells)


def _read_sections(payload, jobs: list) -> list:
    """Decode every section; the largest start first, so that the workers finish together. A bad
    frame raises the error of its first bad section in frame order, whichever worker met it first."""
    def attempt(job):
        *args, then = job
        try:
            values = read_section(payload, *args)
            return values if then is None else then(values)
        except GsdError as e:
            return e
    order = sorted(range(len(jobs)), key=lambda i: -jobs[i][0].raw_size)
    done = parallel_map(attempt, [jobs[i] for i in order], sum(j[0].raw_size for j in jobs))
    arrays = [None] * len(jobs)
    for i, a in zip(order, done):
        arrays[i] = a
    for a in arrays:
        if isinstance(a, GsdError):
            raise a
    return arrays


def _palette_set(pals: list) -> PaletteSet | None:
    """The entries of a frame's PALETTE blocks; indices checked ascending per block, merged in order."""
    if not pals:
        return None
    if len(pals) == 1:
        return PaletteSet(*pals[0])  # the state checks the order
    index, order = merge_id_blocks([i.astype(np.uint64) for i, _ in pals])
    return PaletteSet(index.astype(np.uint16), np.concatenate([c for _, c in pals], axis=1)[:, order])


def _assemble(d: Delta, p: Profile, adds, upds, dels, ranges, cells) -> Delta:
    d.add_ids, order = merge_id_blocks([a[0] for a in adds])
    for a in ATTRS:
        parts = [c[a] for _, c in adds if a in c]
        arr = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0] if parts \
            else np.zeros((p.comps(a), len(d.add_ids)), p.dtype(a))
        d.add[a] = arr[:, order] if order is not None else arr
    d.updates = [UpdateBlock(mask, ids, res) for ids, mask, res in upds]
    d.delete_ids, _ = merge_id_blocks(dels)
    d.delete_ranges = np.concatenate(ranges) if ranges else np.zeros((0, 2), np.uint64)
    d.delete_cells = cells
    return d
