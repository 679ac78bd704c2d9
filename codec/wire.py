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

from .attributes import ATTRS, Attr, full_mask, mask_attrs, present_attrs, wire_parts
from .delta import Delta
from .digest import Digest
from .errors import ErrorCode, GsdError
from .limits import SPEC_LIMITS, Limits
from .profile import Profile, Quantization
from .sections import DELTA, SHUFFLE, ZIGZAG, SectionDesc, SectionWriter, parallel_map, read_section
from .spatial import Grid

HEADER_MAGIC = b"GSDH"
FRAME_MAGIC = b"GSDF"
VERSION = (1, 0)
KEYFRAME = 1
ADD, UPDATE, DELETE_IDS, DELETE_RANGES, DELETE_CELLS = 1, 2, 3, 4, 5
KNOWN_FEATURES = 0  # 1.0 defines no required feature bits
_PREFIX = struct.Struct("<4sII")
_HPREFIX = struct.Struct("<4sBBHI")
_FB_ERRORS = (struct.error, IndexError, ValueError, TypeError, OverflowError, UnicodeDecodeError, AttributeError)


@dataclass(frozen=True)
class StreamHeader:
    profile: Profile
    max_gaussians: int = 0
    generator: str = ""
    version: tuple[int, int] = VERSION


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
        quant = FbQuant.End(b)
    FbHeader.Start(b)
    FbHeader.AddShDegree(b, p.sh_degree)
    g = p.grid
    FbHeader.AddGrid(b, CreateGrid(b, *g.origin, g.cell_size, g.cell_bits, g.slot_bits))
    if quant is not None:
        FbHeader.AddQuantization(b, quant)
    FbHeader.AddProfileName(b, name)
    FbHeader.AddMaxGaussians(b, h.max_gaussians)
    FbHeader.AddGenerator(b, gen)
    b.Finish(FbHeader.End(b))
    body = bytes(b.Output())
    head = _HPREFIX.pack(HEADER_MAGIC, *VERSION, 0, len(body)) + body
    return head + struct.pack("<I", zlib.crc32(head))


def decode_header(buf, limits: Limits = SPEC_LIMITS) -> tuple[StreamHeader, int]:
    """Parse a header record at the start of ``buf``; returns it and its byte length."""
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
    body = bytes(mv[_HPREFIX.size: total - 4])
    try:
        fb = FbHeader.StreamHeader.GetRootAs(body, 0)
        _check_root(body)
        features = fb.RequiredFeatures()
        degree = fb.ShDegree()
        g = fb.Grid()
        if g is None:
            raise GsdError(ErrorCode.MALFORMED, "header has no grid")
        grid_args = ((g.OriginX(), g.OriginY(), g.OriginZ()), g.CellSize(), g.CellBits(), g.SlotBits())
        q = fb.Quantization()
        quant_args = None
        param_problem = None  # BAD_HEADER, raised after the required_features check (SPEC.md 4 check order)
        if q is not None:
            nb, nr = q.RestBitsLength(), q.RestRangeLength()
            if nb > 3 or nr > 3:
                param_problem = "more than 3 SH degrees of rest parameters"
            elif nb < degree or nr < degree:
                param_problem = "rest_bits/rest_range shorter than sh_degree"
            else:
                rest_bits = tuple(q.RestBits(j) for j in range(nb)) + (8,) * (3 - nb)
                rest_range = tuple(q.RestRange(j) for j in range(nr)) + (1.0,) * (3 - nr)
                quant_args = (q.PositionBits(), q.ScaleBits(), q.ScaleMin(), q.ScaleMax(), q.RotationBits(),
                              q.OpacityBits(), q.DcBits(), q.DcMin(), q.DcMax(), rest_bits, rest_range)
        name = (fb.ProfileName() or b"").decode("utf-8", "replace")
        gen = (fb.Generator() or b"").decode("utf-8", "replace")
        max_g = fb.MaxGaussians()
    except GsdError:
        raise
    except _FB_ERRORS as e:
        raise GsdError(ErrorCode.MALFORMED, f"header metadata unreadable: {e}") from None
    if features & ~KNOWN_FEATURES:
        raise GsdError(ErrorCode.UNSUPPORTED_FEATURE, f"unknown required header features {features:#x}")
    if param_problem:
        raise GsdError(ErrorCode.BAD_HEADER, param_problem)
    if max_g > SPEC_LIMITS.max_gaussians:
        raise GsdError(ErrorCode.BAD_HEADER, f"max_gaussians {max_g} above the spec limit")
    grid = Grid(*grid_args)  # raises BAD_HEADER
    profile = Profile(degree, grid, Quantization(*quant_args) if quant_args else None, name)
    return StreamHeader(profile, max_g, gen, (major, minor)), total


def _check_root(buf: bytes) -> None:
    if len(buf) < 8:
        raise GsdError(ErrorCode.MALFORMED, "metadata shorter than a FlatBuffers root")
    (root,) = struct.unpack_from("<I", buf, 0)
    if root + 4 > len(buf):
        raise GsdError(ErrorCode.MALFORMED, "FlatBuffers root offset outside the metadata")


# ---------------------------------------------------------------------------------------- frames
class FrameEncoder:
    """Serializes a Delta for one profile. Reuse it: it holds the zstd context."""

    def __init__(self, profile: Profile, level: int = 1):
        self.profile = profile
        self.level = level

    def _attr_filters(self, attr: Attr, residual: bool) -> tuple[int, ...]:
        """Candidate filters; the section writer keeps the one that compresses best."""
        shuffle = SHUFFLE if self.profile.width(attr) > 1 else 0
        if residual:
            return (ZIGZAG | shuffle, DELTA | ZIGZAG | shuffle)
        return (shuffle, DELTA | ZIGZAG | shuffle)

    def encode(self, d: Delta) -> bytes:
        p = self.profile
        sw = SectionWriter(self.level)
        blocks = []  # (kind, count, mask, level, [section indices])
        for ids in (d.delete_ids,):
            if len(ids):
                blocks.append((DELETE_IDS, len(ids), 0, 0, [sw.add(ids[None, :], DELTA | SHUFFLE)]))
        if len(d.delete_ranges):
            r = np.ascontiguousarray(d.delete_ranges.T)
            blocks.append((DELETE_RANGES, r.shape[1], 0, 0, [sw.add(r, DELTA | ZIGZAG | SHUFFLE)]))
        for level in sorted(d.delete_cells):
            cells = np.asarray(d.delete_cells[level], np.uint64)
            if len(cells):
                blocks.append((DELETE_CELLS, len(cells), 0, level, [sw.add(cells[None, :], DELTA | ZIGZAG | SHUFFLE)]))
        if len(d.add_ids):
            secs = [sw.add(d.add_ids[None, :], DELTA | SHUFFLE)]
            secs += [sw.add(d.add[a] if rows is None else d.add[a][rows], self._attr_filters(a, False))
                     for a, rows in wire_parts(present_attrs(p.sh_degree), p.sh_degree)]
            blocks.append((ADD, len(d.add_ids), 0, 0, secs))
        if len(d.update_ids):
            for mask in np.flatnonzero(np.bincount(d.update_mask, minlength=64)):
                rows = np.flatnonzero(d.update_mask == mask)
                ids = d.update_ids[rows]
                secs = [sw.add(ids[None, :], DELTA | SHUFFLE)]
                res = {a: d.update[a][:, rows] for a in mask_attrs(int(mask))}
                secs += [sw.add(res[a] if comp is None else res[a][comp], self._attr_filters(a, True))
                         for a, comp in wire_parts(mask_attrs(int(mask)), p.sh_degree)]
                blocks.append((UPDATE, len(rows), int(mask), 0, secs))
        payload = sw.payload()
        meta = self._meta(d, blocks, sw.descs)
        frame_len = _PREFIX.size + len(meta) + len(payload) + 4
        head = _PREFIX.pack(FRAME_MAGIC, frame_len, len(meta))
        crc = zlib.crc32(payload, zlib.crc32(meta, zlib.crc32(head)))
        return b"".join((head, meta, payload, struct.pack("<I", crc)))

    @staticmethod
    def _meta(d: Delta, blocks, descs) -> bytes:
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


_SECTION_DTYPE = np.dtype([("offset", "<u4"), ("stored_size", "<u4"), ("raw_size", "<u4"), ("compression", "u1"),
                           ("filters", "u1"), ("width", "u1"), ("reserved", "u1")])


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


@dataclass
class FrameInfo:
    """What a frame cost on the wire, by section role (for `gsd info`)."""

    frame_bytes: int
    meta_bytes: int
    section_bytes: dict  # role -> stored bytes
    raw_bytes: int


def decode_frame(buf, profile: Profile, limits: Limits = SPEC_LIMITS,
                 info: bool = False) -> tuple[Delta, int] | tuple[Delta, int, FrameInfo]:
    """Parse the frame record at the start of ``buf`` into a Delta (not applied)."""
    mv = memoryview(buf)
    frame_len = frame_length(mv, limits)
    (crc,) = struct.unpack_from("<I", mv, frame_len - 4)
    if zlib.crc32(mv[: frame_len - 4]) != crc:
        raise GsdError(ErrorCode.BAD_CHECKSUM, "frame CRC-32 mismatch")
    meta_len = _PREFIX.unpack_from(mv)[2]
    meta = bytes(mv[_PREFIX.size: _PREFIX.size + meta_len])
    payload = mv[_PREFIX.size + meta_len: frame_len - 4]
    blocks, descs, d = _read_meta(meta, limits)
    roles: dict = {}
    d = _read_blocks(d, blocks, descs, payload, profile, limits, roles)
    if info:
        return d, frame_len, FrameInfo(frame_len, meta_len, roles, sum(s.raw_size for s in descs))
    return d, frame_len


def _read_meta(meta: bytes, limits: Limits):
    try:
        _check_root(meta)
        fb = FbFrame.Frame.GetRootAs(meta, 0)
        features = fb.RequiredFeatures()
        flags = fb.Flags()
        seq, base = fb.Seq(), fb.BaseSeq()
        dg = fb.Digest()
        digest = Digest(dg.Count(), dg.Lane0(), dg.Lane1()) if dg is not None else None
        nb, ns = fb.BlocksLength(), fb.SectionsLength()
        if nb > limits.max_blocks or ns > limits.max_sections:
            raise GsdError(ErrorCode.LIMIT_EXCEEDED, f"{nb} blocks / {ns} sections")
        if ns * 16 > len(meta) or nb * 4 > len(meta):
            raise GsdError(ErrorCode.MALFORMED, "vector longer than the metadata")
        descs = _section_table(fb, ns, meta)
        blocks = []
        for j in range(nb):
            ob = fb.Blocks(j)
            n = ob.SectionsLength()
            if n > limits.max_sections or n * 4 > len(meta):
                raise GsdError(ErrorCode.MALFORMED, "op block section list longer than the metadata")
            secs = ob.SectionsAsNumpy().tolist() if n else []
            blocks.append((ob.Kind(), ob.Count(), ob.Mask(), ob.Level(), secs))
    except GsdError:
        raise
    except _FB_ERRORS as e:
        raise GsdError(ErrorCode.MALFORMED, f"frame metadata unreadable: {e}") from None
    if features & ~KNOWN_FEATURES:
        raise GsdError(ErrorCode.UNSUPPORTED_FEATURE, f"unknown required frame features {features:#x}")
    if sum(s.raw_size for s in descs) > limits.max_frame_raw_bytes:
        raise GsdError(ErrorCode.LIMIT_EXCEEDED, "frame declares too many raw bytes")
    d = Delta(seq=seq, base_seq=base, keyframe=bool(flags & KEYFRAME), digest=digest)
    return blocks, descs, d


_SECTION_DTYPE = np.dtype([("offset", "<u4"), ("stored", "<u4"), ("raw", "<u4"),
                           ("compression", "u1"), ("filters", "u1"), ("width", "u1"), ("reserved", "u1")])


def _section_table(fb, n: int, meta: bytes) -> list[SectionDesc]:
    """Frame.sections read in one numpy view (same bytes the generated Section accessor reads)."""
    if n == 0:
        return []
    start = fb._tab.Vector(fb._tab.Offset(16))
    if start + 16 * n > len(meta):
        raise GsdError(ErrorCode.MALFORMED, "sections vector runs past the metadata")
    t = np.frombuffer(meta, _SECTION_DTYPE, n, start)
    return [SectionDesc(*row) for row in zip(t["offset"].tolist(), t["stored"].tolist(), t["raw"].tolist(),
                                             t["compression"].tolist(), t["filters"].tolist(), t["width"].tolist())]


def _read_blocks(d: Delta, blocks, descs, payload, p: Profile, limits: Limits, roles: dict) -> Delta:
    # Counts first: every limit is checked before any section is decompressed.
    n_ids = sum(c for k, c, *_ in blocks if k in (ADD, UPDATE, DELETE_IDS))
    n_rng = sum(c for k, c, *_ in blocks if k in (DELETE_RANGES, DELETE_CELLS))
    if n_ids > limits.max_ids_per_frame:
        raise GsdError(ErrorCode.LIMIT_EXCEEDED, f"{n_ids} ids in one frame")
    if n_rng > limits.max_ranges_per_frame:
        raise GsdError(ErrorCode.LIMIT_EXCEEDED, f"{n_rng} ranges/cells in one frame")
    attrs = present_attrs(p.sh_degree)
    fmask = full_mask(p.sh_degree)

    jobs: list = []  # (section index, comps, count, width, role); decoded together below

    def section(idx: int, comps: int, count: int, width: int, role: str) -> int:
        if idx >= len(descs):
            raise GsdError(ErrorCode.MALFORMED, f"section index {idx} out of range")
        roles[role] = roles.get(role, 0) + descs[idx].stored_size
        jobs.append((descs[idx], comps, count, width))
        return len(jobs) - 1

    def attr_jobs(parts, secs, count):
        return [(a, rows, section(s, p.comps(a) if rows is None else len(rows), count, p.width(a), a.name.lower()))
                for (a, rows), s in zip(parts, secs)]

    def gather(count, jobs) -> dict:
        """Attribute arrays of one block from its decoded sections (SH_REST from its degree bands)."""
        out = {}
        for a, rows, j in jobs:
            arr = arrays[j].view(p.dtype(a))
            if rows is None:
                out[a] = arr
            else:
                if a not in out:
                    out[a] = np.empty((p.comps(a), count), p.dtype(a))
                out[a][rows] = arr
        return out

    def expect(secs, n, kind):
        if len(secs) != n:
            raise GsdError(ErrorCode.MALFORMED, f"{kind} block has {len(secs)} sections, expected {n}")

    plan = []  # (kind, job refs...)
    for kind, count, mask, level, secs in blocks:
        if kind == 0:
            raise GsdError(ErrorCode.MALFORMED, "op block kind 0")
        if kind >= 128:
            continue  # optional extension block: skipped by 1.0 decoders
        if kind > DELETE_CELLS:
            raise GsdError(ErrorCode.UNSUPPORTED_FEATURE, f"unknown required op kind {kind}")
        if kind == ADD:
            parts = wire_parts(attrs, p.sh_degree)
            expect(secs, 1 + len(parts), "ADD")
            plan.append((ADD, section(secs[0], 1, count, 8, "ids"), count, attr_jobs(parts, secs[1:], count)))
        elif kind == UPDATE:
            if mask == 0 or mask & ~fmask:
                raise GsdError(ErrorCode.MALFORMED, f"UPDATE mask {mask:#x} invalid for SH degree {p.sh_degree}")
            parts = wire_parts(mask_attrs(mask), p.sh_degree)
            expect(secs, 1 + len(parts), "UPDATE")
            plan.append((UPDATE, section(secs[0], 1, count, 8, "ids"), count, attr_jobs(parts, secs[1:], count), mask))
        elif kind == DELETE_IDS:
            expect(secs, 1, "DELETE_IDS")
            plan.append((DELETE_IDS, section(secs[0], 1, count, 8, "delete")))
        elif kind == DELETE_RANGES:
            expect(secs, 1, "DELETE_RANGES")
            plan.append((DELETE_RANGES, section(secs[0], 2, count, 8, "delete")))
        else:
            expect(secs, 1, "DELETE_CELLS")
            plan.append((DELETE_CELLS, section(secs[0], 1, count, 8, "delete"), level))
    arrays = parallel_map(lambda job: read_section(payload, *job), jobs, sum(j[0].raw_size for j in jobs))
    adds, upds, dels, ranges, cells = [], [], [], [], {}
    for entry in plan:
        kind = entry[0]
        if kind == ADD:
            adds.append((arrays[entry[1]][0], gather(entry[2], entry[3])))
        elif kind == UPDATE:
            upds.append((arrays[entry[1]][0], entry[4], gather(entry[2], entry[3])))
        elif kind == DELETE_IDS:
            dels.append(arrays[entry[1]][0])
        elif kind == DELETE_RANGES:
            ranges.append(arrays[entry[1]].T)
        else:
            prev = cells.get(entry[2])
            cells[entry[2]] = arrays[entry[1]][0] if prev is None else np.concatenate([prev, arrays[entry[1]][0]])
    return _assemble(d, p, adds, upds, dels, ranges, cells)


def _concat_sorted(parts: list[np.ndarray], what: str) -> np.ndarray:
    """Concatenate id arrays of several blocks; an id in two of them is DUPLICATE_ID."""
    if not parts:
        return np.zeros(0, np.uint64)
    ids = np.concatenate(parts)
    if len(parts) > 1:
        s = np.sort(ids)
        if (s[1:] == s[:-1]).any():
            raise GsdError(ErrorCode.DUPLICATE_ID, f"an id is in two {what} blocks")
    return ids


def _assemble(d: Delta, p: Profile, adds, upds, dels, ranges, cells) -> Delta:
    for ids in [a[0] for a in adds] + [u[0] for u in upds] + dels:
        if len(ids) > 1 and not (ids[1:] > ids[:-1]).all():
            code = ErrorCode.DUPLICATE_ID if (ids[1:] == ids[:-1]).any() else ErrorCode.BAD_VALUE
            raise GsdError(code, "ids in a block must be strictly ascending")
    d.add_ids = _concat_sorted([a[0] for a in adds], "ADD")
    if len(adds) > 1:
        order = np.argsort(d.add_ids, kind="stable")
        d.add_ids = d.add_ids[order]
    else:
        order = None
    for a in ATTRS:
        parts = [c[a] for _, c in adds if a in c]
        arr = np.concatenate(parts, axis=1) if parts else np.zeros((p.comps(a), len(d.add_ids)), p.dtype(a))
        d.add[a] = arr[:, order] if order is not None else arr
    uids = _concat_sorted([u[0] for u in upds], "UPDATE")
    masks = np.concatenate([np.full(len(u[0]), u[1], np.uint8) for u in upds]) if upds else np.zeros(0, np.uint8)
    order = np.argsort(uids, kind="stable")
    d.update_ids, d.update_mask = uids[order], masks[order]
    for a in ATTRS:
        full = np.zeros((p.comps(a), len(uids)), p.dtype(a))
        start = 0
        for ids, _, res in upds:
            if a in res:
                full[:, start:start + len(ids)] = res[a]
            start += len(ids)
        d.update[a] = full[:, order]
    d.delete_ids = np.sort(_concat_sorted(dels, "DELETE_IDS"))
    d.delete_ranges = np.concatenate(ranges) if ranges else np.zeros((0, 2), np.uint64)
    d.delete_cells = cells
    return d
