"""Structure-aware fuzzing of header decode, frame decode and apply, seeded with the conformance vectors.

    python -m conformance.fuzz --structured --execs 1000000 --seed 1 --jobs 2 --report conformance/FUZZ.md

The byte mutator of fuzz.py mostly dies at the framing and the checksum. The mutators here work
beneath the framing, so nearly every input reaches the checks behind the CRC:

- ``bytes``: the byte-level mutations of fuzz.py, then every record CRC recomputed;
- ``meta``: a frame's FlatBuffers metadata read back into ``craft.FrameFields`` and one or two of its
  fields changed (seq, base_seq, flags, features, digest; a block's kind, count, mask, level and
  section list; a section descriptor's offset, sizes, compression, filters, width, reserved byte;
  blocks and descriptors dropped, repeated, swapped), then rebuilt with a correct CRC;
- ``content``: one section decompressed and unfiltered (or its gap code decoded) into its
  (components, count) element array, given hostile values (ids and ranks swapped, repeated, outside
  the grid, of another frame; codes outside their domain; residuals that wrap; ranges reversed),
  refiltered (sometimes with other filters), recompressed (so zstd accepts it; sometimes as another
  compression: none, zstd, or the gap code of 1.4 where the values allow it, rank sections most
  often) and laid back into the payload with the descriptors updated; a gap-coded section's codes
  are sometimes edited beneath their values instead (the order byte, a code bit, a byte cut or
  added, a padding bit set, every code dropped);
- ``resize``: a block's count changed coherently (every section of the block truncated or extended,
  new ids fresh), so apply sees well-formed frames of other sizes;
- ``frames``: frames reordered, dropped, duplicated, spliced in from another vector, the stream cut,
  optionally with the seq chain rewritten so sequencing passes;
- ``header``: a StreamHeader parameter changed (SH degree, grid, bit widths, ranges, palette size,
  features, max_gaussians) under unchanged frames;
- ``limits``: a decoder limit lowered to near what the stream uses (SPEC.md 9.1).

After a mutation the frame digests are, one time in three, recomputed by a decode that does not check
them, so the mutated content can also decode to the end.

Coverage: atheris is not installed here and Python 3.11 has no sys.monitoring; the scheduler uses
a behavioural signal instead: each (record kind, stage reached, error code, error message with its
numbers blanked) and each (block kinds, stage) pair of a decoded frame is a feature, and an input
that shows a new feature joins the corpus and is mutated further (recent finds preferred).

Depth: every execution records the deepest stage any of its records reached (framing, crc,
metadata, sections, ops, apply, digest, done) through probes on the reference decoder's pipeline
(installed only for the run), and the table of stages and error codes is printed.

The oracle (as fuzz.py): any exception other than GsdError, a failed frame after which the state's
digest, seq or count differ (its full contents are compared for a sample of frames), or an input past
its time budget is a crash; crashing inputs are saved with a note.
"""
from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import random
import re
import signal
import struct
import sys
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field, fields as dc_fields, replace

import numpy as np
import zstandard

from codec import Decoder, GsdError, Limits

from . import craft, fuzz
from .craft import (ADD, ADD_IMPLICIT, CHANNEL, DELETE_CELLS, DELETE_IDS, DELETE_RANGES, DELETE_RANKED, GAPS, NONE,
                    PALETTE, UINT, UPDATE, UPDATE_RANKED, ZSTD, BlockFields, FrameFields, HeaderFields, QuantFields,
                    Section)

STAGES = ("framing", "crc", "metadata", "sections", "ops", "apply", "digest", "done")
FRAMING, CRC, METADATA, SECTIONS, OPS, APPLY, DIGEST, DONE = range(len(STAGES))
STAGE_DOC = {
    "framing": "record prefix: magic, version, lengths against the data and max_frame_bytes",
    "crc": "the record's CRC-32",
    "metadata": "FlatBuffers verification, limits on counts, features, block/section table",
    "sections": "section descriptors, decompression (zstd, the gap code), filters",
    "ops": "op assembly: id order within blocks, merging",
    "apply": "sequencing, id rules, code validity, all-or-nothing apply",
    "digest": "the frame's digest checked against the state",
    "done": "every record of the stream decoded and applied",
}
MUTATORS = ("bytes", "meta", "content", "resize", "frames", "header", "limits")
WEIGHTS = (10, 22, 34, 10, 12, 7, 5)
LIMIT_NAMES = tuple(f.name for f in dc_fields(Limits))
SPEC_DEFAULTS = Limits()


# ------------------------------------------------------------------------------------------ depth probes
class _Probe:
    stage = FRAMING
    complete = True     # every probe of PROBES installed


PROBE = _Probe()


def _mark(stage: int) -> None:
    if stage > PROBE.stage:
        PROBE.stage = stage


def _wrap(fn, before: int | None, after: int | None):
    def probed(*a, **k):
        if before is not None:
            _mark(before)
        out = fn(*a, **k)
        if after is not None:
            _mark(after)
        return out
    probed.__wrapped__ = fn
    return probed


# The reference decoder's pipeline: decode_frame -> _read_meta -> _read_blocks -> _read_sections -> _assemble,
# then SceneState.apply. A probe on each marks how far a frame got; a name that is missing (the pipeline
# was refactored) leaves its stage to be inferred from the error code instead.
PROBES = (("codec.wire", "_read_blocks", SECTIONS, None), ("codec.wire", "_read_sections", None, OPS),
          ("codec.decoder", "decode_frame", None, APPLY))

# Where an error code stops a frame when no probe tells (the check of SPEC.md 4.9 that raises it).
CODE_STAGE = {"TRUNCATED": FRAMING, "BAD_MAGIC": FRAMING, "UNSUPPORTED_VERSION": FRAMING, "BAD_CHECKSUM": CRC,
              "MALFORMED": METADATA, "UNSUPPORTED_FEATURE": METADATA, "LIMIT_EXCEEDED": METADATA,
              "BAD_HEADER": METADATA, "DECOMPRESSION_FAILED": SECTIONS, "BAD_VALUE": APPLY,
              "DUPLICATE_ID": APPLY, "ID_EXISTS": APPLY, "ID_MISSING": APPLY, "SEQUENCE_GAP": APPLY,
              "DIGEST_MISMATCH": DIGEST}


@contextlib.contextmanager
def depth_probes():
    """Install the stage probes on the reference decoder for the duration of a run."""
    import importlib
    saved = []
    try:
        for mod_name, name, before, after in PROBES:
            mod = importlib.import_module(mod_name)
            fn = getattr(mod, name, None)
            if fn is None:
                continue
            saved.append((mod, name, fn))
            setattr(mod, name, _wrap(fn, before, after))
        PROBE.complete = len(saved) == len(PROBES)
        yield PROBE.complete
    finally:
        for mod, name, fn in reversed(saved):
            setattr(mod, name, fn)


# ------------------------------------------------------------------------------------------ stream model
def split_stream(data: bytes) -> tuple[bytes, list[bytes], bytes]:
    """(header record, frame records, trailing bytes) as framing alone finds them."""
    spans = craft.record_spans(data)
    if not spans:
        return b"", [], data
    header = data[:spans[0][2]]
    frames = [data[o:o + n] for k, o, n in spans[1:]]
    end = spans[-1][1] + spans[-1][2]
    return header, frames, data[end:]


def parse_header(record: bytes) -> tuple[HeaderFields, int, int]:
    """A header record read back into HeaderFields (with its version), to edit and rebuild it."""
    from gsd.fb import StreamHeader as FbHeader
    major, minor = record[4], record[5]
    (n,) = struct.unpack_from("<I", record, 8)
    h = FbHeader.StreamHeader.GetRootAs(record[12:12 + n], 0)
    g = h.Grid()
    grid = None if g is None else ((g.OriginX(), g.OriginY(), g.OriginZ()), g.CellSize(), g.CellBits(), g.SlotBits())
    q = h.Quantization()
    quant = None
    if q is not None:
        quant = QuantFields(q.PositionBits(), q.ScaleBits(), q.ScaleMin(), q.ScaleMax(), q.RotationBits(),
                            q.OpacityBits(), q.DcBits(), q.DcMin(), q.DcMax(),
                            tuple(q.RestBits(j) for j in range(q.RestBitsLength())),
                            tuple(q.RestRange(j) for j in range(q.RestRangeLength())), q.ShPalette())
    fields = HeaderFields(h.ShDegree(), grid, quant, (h.ProfileName() or b"").decode("utf-8", "replace"),
                          h.RequiredFeatures(), h.MaxGaussians(), (h.Generator() or b"").decode("utf-8", "replace"),
                          None, h.FrameRate())
    return fields, major, minor


@dataclass
class ParsedFrame:
    fields: FrameFields
    stored: list            # stored bytes of each section descriptor (clipped to the payload)
    payload: bytes          # the payload as it was


_PARSED: dict = {}   # record bytes -> ParsedFrame (the flatbuffers library's reader is slow; records repeat)


def parse_frame(record: bytes) -> ParsedFrame:
    """The record's metadata and section bytes, as a fresh copy the caller may edit."""
    record = bytes(record)
    p = _PARSED.get(record)
    if p is None:
        meta, payload = craft.split_frame(record)
        f = craft.parse_frame_meta(meta)
        p = ParsedFrame(f, [payload[s.offset:s.offset + s.stored_size] for s in f.sections], bytes(payload))
        if len(_PARSED) > 20000:
            _PARSED.clear()
        _PARSED[record] = p
    f = p.fields
    return ParsedFrame(FrameFields(f.seq, f.base_seq, f.flags, f.required_features, f.digest,
                                   [BlockFields(b.kind, b.count, b.mask, b.level, list(b.sections)) for b in f.blocks],
                                   [replace(x) for x in f.sections], f.extra_field), list(p.stored), p.payload)


def build_frame(p: ParsedFrame, relayout: bool = True) -> bytes:
    """A frame record from parsed parts: with ``relayout``, the sections' stored bytes laid out one after
    another in descriptor order (offsets rewritten); without, the metadata alone is rebuilt over the
    original payload (descriptor edits keep what they say)."""
    if relayout:
        off = 0
        for s, data in zip(p.fields.sections, p.stored):
            s.offset = off
            off += len(data)
        payload = b"".join(p.stored)
    else:
        payload = p.payload
    return craft.frame_record(craft.frame_meta(p.fields), payload)


# ------------------------------------------------------------------------------------------ section content
def unfilter(raw: bytes, width: int, filters: int, count: int) -> np.ndarray | None:
    """The (components, count) element array of a section's raw bytes (SPEC.md 4.4 decoding pipeline)."""
    if width not in UINT or not raw or len(raw) % width:
        return None
    n = len(raw) // width
    comps, cnt = (n // count, count) if count and n % count == 0 else (1, n)
    return craft.unfiltered(raw, width, filters, comps, cnt)


def decompress(desc: Section, stored: bytes) -> bytes | None:
    """A section's raw bytes: stored, unzstded, or (gap code) its values as unfiltered elements; None where
    they do not decode."""
    if desc.compression == NONE:
        return bytes(stored)
    if desc.compression not in (ZSTD, GAPS) or desc.raw_size > 1 << 24:
        return None
    if desc.compression == GAPS:
        if desc.width not in (1, 2, 4) or desc.filters or desc.raw_size % desc.width:
            return None
        values = craft.gap_values(stored, desc.raw_size // desc.width, desc.width)
        return None if values is None else values.tobytes()
    try:
        out = zstandard.ZstdDecompressor().decompressobj().decompress(bytes(stored))
    except zstandard.ZstdError:
        return None
    return out if len(out) == desc.raw_size else None


_ZSTD = {}
# When a set: hashes of every zstd frame compress() wrote (fuzz_diff tells frames a compressor wrote from
# frames whose bytes a mutation changed, whose decoding SPEC.md 4.4 leaves to the zstd library).
WRITTEN_ZSTD: set | None = None


def compress(raw: bytes, level: int = 1) -> bytes:
    c = _ZSTD.get(level)
    if c is None:
        c = _ZSTD[level] = zstandard.ZstdCompressor(level=level)
    out = c.compress(raw)
    if WRITTEN_ZSTD is not None:
        WRITTEN_ZSTD.add(hash(out))
    return out


def section_roles(f: FrameFields) -> dict[int, tuple[str, int, int]]:
    """section index -> (role, block kind, block count); role is ids, ranges, pindex, ranks, codes or residual."""
    roles = {}
    for b in f.blocks:
        for k, s in enumerate(b.sections):
            if k == 0 and b.kind in (ADD, UPDATE, DELETE_IDS, DELETE_CELLS, ADD_IMPLICIT):   # placements: as ids
                role = "ids"
            elif k == 0 and b.kind == DELETE_RANGES:
                role = "ranges"
            elif k == 0 and b.kind == PALETTE:
                role = "pindex"
            elif k == 0 and b.kind in (UPDATE_RANKED, DELETE_RANKED):
                role = "ranks"
            else:
                role = "residual" if b.kind in (UPDATE, UPDATE_RANKED) else "codes"
            roles.setdefault(s, (role, b.kind, b.count))
    return roles


def hostile(rng: random.Random, a: np.ndarray, role: str, known_ids: list[int]) -> None:
    """Give a (components, count) element array hostile values in place, by role."""
    c, n = a.shape
    if n == 0 or c == 0:
        return
    t = a.dtype.type
    bits = 8 * a.dtype.itemsize
    top = (1 << bits) - 1
    i, j = rng.randrange(c), rng.randrange(n)
    v = int(a[i, j])
    if role in ("ids", "pindex", "ranges", "ranks") and rng.random() < 0.6:
        choice = rng.randrange(9)
        if choice == 0 and n > 1:                       # two neighbours swapped: out of order
            j = rng.randrange(n - 1)
            a[i, j], a[i, j + 1] = a[i, j + 1].copy(), a[i, j].copy()
        elif choice == 1 and n > 1:                     # a neighbour repeated: a duplicate
            j = rng.randrange(n - 1)
            a[i, j + 1] = a[i, j]
        elif choice == 2:                               # reversed
            a[i] = a[i, ::-1].copy()
        elif choice == 3 and known_ids:                 # an id of another frame of the stream
            a[i, j] = t(rng.choice(known_ids) & top)
        elif choice == 4:                               # outside the grid: high bits set
            a[i, j] = t((v | (1 << rng.randrange(max(1, bits - 12), bits))) & top)
        elif choice == 5:                               # one more or one less: a missing id
            a[i, j] = t((v + rng.choice((1, -1, 2, -2))) & top)
        elif choice == 6 and role == "ranges" and c == 2:  # a range whose first is past its last
            a[0, j], a[1, j] = a[1, j].copy(), a[0, j].copy()
            if a[0, j] == a[1, j]:
                a[0, j] = t((int(a[0, j]) + 1) & top)
        elif choice == 7:                               # the whole id space
            a[i, j] = t(top if rng.random() < 0.5 else 0)
        else:                                           # all equal
            a[i] = a[i, j]
        return
    for _ in range(1 if rng.random() < 0.7 else rng.randint(2, 6)):
        i, j = rng.randrange(c), rng.randrange(n)
        v = int(a[i, j])
        choice = rng.randrange(8)
        if choice == 0:
            nv = top
        elif choice == 1:
            nv = 1 << rng.randrange(bits)               # 2^b: just outside a b-bit domain
        elif choice == 2:
            nv = (1 << rng.randrange(1, bits + 1)) - 1
        elif choice == 3:
            nv = v + (1 << (bits - 1))                   # wraps a signed residual
        elif choice == 4:
            nv = v ^ (1 << rng.randrange(bits))
        elif choice == 5:
            nv = v + rng.choice((1, -1))
        elif choice == 6:
            nv = 0
        else:
            nv = rng.getrandbits(bits)
        a[i, j] = t(nv & top)


def section_values(p: ParsedFrame, s: int, count: int) -> np.ndarray | None:
    """The (components, count) element array of section s as its descriptor says to read it (decompressed
    and unfiltered, or its gap code decoded), or None where it does not decode."""
    desc = p.fields.sections[s]
    raw = decompress(desc, p.stored[s])
    if raw is None or desc.raw_size != len(raw):
        return None
    return unfilter(raw, desc.width, 0 if desc.compression == GAPS else desc.filters, count)


def _gap_coded(a: np.ndarray, rng: random.Random) -> bytes | None:
    """The gap code of a (1, n) array at the writer's order or a random one, or None where it does not
    apply (more than one component, 8-byte values, values not strictly ascending)."""
    if a.dtype.itemsize > 4:   # 8-byte values: a section the code does not apply to
        return None
    try:
        return craft.gap_code(a, rng.choice((None, None, 0, rng.randrange(8 * a.dtype.itemsize))))
    except ValueError:
        return None


def _store(p: ParsedFrame, s: int, a: np.ndarray, filters: int, rng: random.Random, compression: int) -> None:
    """Section s rewritten to hold ``a`` with ``filters`` and ``compression``; values the gap code cannot
    hold are stored uncompressed instead."""
    desc = p.fields.sections[s]
    if compression == GAPS:
        data = _gap_coded(a, rng)
        if data is not None:
            desc.stored_size, desc.raw_size, desc.filters, desc.width, desc.compression = len(data), a.nbytes, 0, \
                a.dtype.itemsize, GAPS
            p.stored[s] = data
            return
        compression = NONE
    raw, width = craft.Payload.filtered(a, filters)
    data = compress(raw, rng.choice((1, 1, 3))) if compression == ZSTD else raw
    desc.stored_size, desc.raw_size, desc.filters, desc.width, desc.compression = len(data), len(raw), filters, \
        width, compression
    p.stored[s] = data


def mutate_gap_code(rng: random.Random, p: ParsedFrame, s: int) -> None:
    """One edit of a gap-coded section's stored bytes beneath its values (SPEC.md 4.4 gap code): the order
    byte (0, one off, 8w - 1, 8w, 255), a bit of the codes, the last byte cut, a byte added, a bit of the
    last byte set (a padding bit, where the codes leave any), or every code dropped."""
    desc = p.fields.sections[s]
    data = bytearray(p.stored[s])
    top = 8 * desc.width
    choice = rng.randrange(6)
    if choice == 0 and data:
        data[0] = rng.choice((0, max(data[0] - 1, 0), min(data[0] + 1, 255), (top - 1) & 0xFF, top & 0xFF, 255))
    elif choice == 1 and len(data) > 1:
        data[rng.randrange(1, len(data))] ^= 1 << rng.randrange(8)
    elif choice == 2 and data:
        del data[-1]
    elif choice == 3:
        data.append(rng.choice((0, 0x80, 0xFF, rng.getrandbits(8))))
    elif choice == 4 and len(data) > 1:
        data[-1] |= 1 << rng.randrange(8)
    else:
        del data[1:]
    desc.stored_size = len(data)
    p.stored[s] = bytes(data)


def mutate_content(rng: random.Random, p: ParsedFrame, known_ids: list[int]) -> bool:
    roles = section_roles(p.fields)
    cands = [s for s in roles if s < len(p.fields.sections)]
    if not cands:
        return False
    s = rng.choice(cands)
    role, kind, count = roles[s]
    desc = p.fields.sections[s]
    if desc.compression == GAPS and rng.random() < 0.3:
        mutate_gap_code(rng, p, s)
        return True
    a = section_values(p, s, count)
    if a is None:
        return False
    a = a.copy()
    hostile(rng, a, role, known_ids)
    filters = desc.filters
    if rng.random() < 0.1:
        filters = rng.randrange(16)   # any combination of DELTA, ZIGZAG, SHUFFLE and CHANNEL
    compression = desc.compression
    if rng.random() < 0.1:
        compression = rng.choice((NONE, ZSTD, GAPS))   # the gap code where the values allow it (_store)
    elif role == "ranks" and rng.random() < 0.2:
        compression = GAPS
    _store(p, s, a, filters, rng, compression)
    return True


def mutate_resize(rng: random.Random, p: ParsedFrame) -> bool:
    """A block's count changed with every one of its sections truncated or extended to match."""
    blocks = [b for b in p.fields.blocks if b.sections and all(s < len(p.fields.sections) for s in b.sections)]
    if not blocks:
        return False
    b = rng.choice(blocks)
    n = b.count
    new = rng.choice((max(n - 1, 0), 0, n + 1, n + rng.randint(2, 16), max(n // 2, 0), min(2 * n, 4096)))
    arrays = []
    for k, s in enumerate(b.sections):
        desc = p.fields.sections[s]
        a = section_values(p, s, n)
        if a is None or a.shape[1] != n or (n == 0 and new > 0):
            return False
        if new <= n:
            a = a[:, :new]
        else:
            extra = np.repeat(a[:, -1:], new - n, axis=1)
            if k == 0 and b.kind in (ADD, UPDATE, DELETE_IDS, DELETE_CELLS, PALETTE, ADD_IMPLICIT, UPDATE_RANKED,
                                     DELETE_RANKED):  # fresh, ascending
                top = (1 << (8 * a.dtype.itemsize)) - 1
                extra = ((extra.astype(object) + np.arange(1, new - n + 1)) & top).astype(a.dtype)
            a = np.concatenate([a, extra], axis=1)
        arrays.append((s, desc, np.ascontiguousarray(a)))
    if len({s for s, *_ in arrays}) != len(arrays):
        return False
    for s, desc, a in arrays:
        _store(p, s, a, desc.filters, rng, desc.compression)
    b.count = new
    return True


def _interesting(rng: random.Random, cur: int, size_bits: int) -> int:
    r = rng.random()
    if r < 0.4:
        v = rng.choice(fuzz.INTERESTING)
    elif r < 0.8:
        v = cur + rng.randint(-3, 3)
    else:
        v = rng.getrandbits(size_bits)
    return v % (1 << size_bits)


def mutate_meta(rng: random.Random, p: ParsedFrame) -> bool:
    f = p.fields
    what = rng.randrange(12)
    if what == 0:
        f.seq = _interesting(rng, f.seq, 64)
    elif what == 1:
        f.base_seq = _interesting(rng, f.base_seq, 64)
    elif what == 2:
        f.flags = rng.choice((0, 1, 2, 3, 1 << 31, _interesting(rng, f.flags, 32)))
    elif what == 3:
        f.required_features = rng.choice((0, 1, 1 << 63, _interesting(rng, f.required_features, 64)))
    elif what == 4:
        if f.digest is None or rng.random() < 0.3:
            f.digest = None if f.digest is not None else (rng.getrandbits(8), rng.getrandbits(32), rng.getrandbits(32))
        else:
            c, l0, l1 = f.digest
            k = rng.randrange(3)
            f.digest = (_interesting(rng, c, 64) if k == 0 else c, l0 ^ (1 << rng.randrange(32)) if k == 1 else l0,
                        l1 ^ (1 << rng.randrange(32)) if k == 2 else l1)
    elif what == 5:
        f.extra_field = rng.getrandbits(32)
    elif what in (6, 7, 8) and f.blocks:
        b = rng.choice(f.blocks)
        k = rng.randrange(6)
        if k == 0:
            b.kind = rng.choice((0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 127, 128, 200, 255))
        elif k == 1:
            b.count = _interesting(rng, b.count, 32)
        elif k == 2:
            b.mask = rng.choice((0, 1, 0x3F, 0x40, 0x80, 0xFF, b.mask ^ (1 << rng.randrange(8))))
        elif k == 3:
            b.level = rng.choice((0, 1, 2, 7, 15, 16, 31, 32, 63, 64, 255, _interesting(rng, b.level, 8)))
        elif k == 4 and b.sections:
            j = rng.randrange(len(b.sections))
            b.sections[j] = rng.choice((b.sections[j] + 1, max(b.sections[j] - 1, 0), len(f.sections),
                                        0xFFFFFFFF, rng.randrange(max(len(f.sections), 1))))
        else:
            op = rng.randrange(3)
            if op == 0 and b.sections:
                del b.sections[rng.randrange(len(b.sections))]
            elif op == 1 and b.sections:
                b.sections.insert(rng.randrange(len(b.sections) + 1), rng.choice(b.sections))
            elif len(b.sections) > 1:
                i, j = rng.sample(range(len(b.sections)), 2)
                b.sections[i], b.sections[j] = b.sections[j], b.sections[i]
    elif what == 9 and f.blocks:
        op = rng.randrange(4)
        if op == 0:
            del f.blocks[rng.randrange(len(f.blocks))]
        elif op == 1:
            b = rng.choice(f.blocks)
            f.blocks.insert(rng.randrange(len(f.blocks) + 1), BlockFields(b.kind, b.count, b.mask, b.level,
                                                                          list(b.sections)))
        elif op == 2 and len(f.blocks) > 1:
            i, j = rng.sample(range(len(f.blocks)), 2)
            f.blocks[i], f.blocks[j] = f.blocks[j], f.blocks[i]
        else:  # an optional extension block (kind >= 128) pointing anywhere
            f.blocks.insert(rng.randrange(len(f.blocks) + 1),
                            BlockFields(rng.randrange(128, 256), rng.getrandbits(8), 0, 0,
                                        [rng.randrange(len(f.sections) + 2) for _ in range(rng.randrange(3))]))
    elif what in (10, 11) and f.sections:
        s = rng.randrange(len(f.sections))
        d = f.sections[s]
        k = rng.randrange(9)
        if k == 0:
            d.offset = _interesting(rng, d.offset, 32)
        elif k == 1:
            d.stored_size = _interesting(rng, d.stored_size, 32)
        elif k == 2:
            d.raw_size = _interesting(rng, d.raw_size, 32)
        elif k == 3:
            d.compression = rng.choice((0, 1, 2, 3, 255))
        elif k == 4:
            d.filters = rng.choice((rng.randrange(16), d.filters ^ CHANNEL, 0x10, 0x18, 0x80, 0xFF,
                                    d.filters ^ (1 << rng.randrange(8))))
        elif k == 5:
            d.width = rng.choice((0, 1, 2, 3, 4, 5, 8, 16, 255))
        elif k == 6:
            d.reserved = rng.choice((1, 0x80, 0xFF))
        elif k == 7 and len(f.sections) > 1:
            j = rng.randrange(len(f.sections))
            f.sections[s], f.sections[j] = f.sections[j], f.sections[s]
        else:
            f.sections.append(replace(d))
    else:
        return False
    return True


def mutate_header(rng: random.Random, header: bytes) -> bytes | None:
    try:
        h, major, minor = parse_header(header)
    except Exception:  # noqa: BLE001 -- a header the flatbuffers reader cannot follow: nothing to edit
        return None
    k = rng.randrange(10)
    if k == 0:
        h.sh_degree = rng.choice((0, 1, 2, 3, 4, 255, max(h.sh_degree - 1, 0), h.sh_degree + 1))
    elif k == 1 and h.grid is not None:
        origin, cs, cb, sb = h.grid
        j = rng.randrange(4)
        if j == 0:
            cb = rng.choice((0, 1, 2, 20, 21, 31, 32, max(cb - 1, 0), cb + 1))
        elif j == 1:
            sb = rng.choice((0, 1, 31, 32, 33, 63, 64, max(sb - 1, 0), sb + 1))
        elif j == 2:
            cs = rng.choice((0.0, -1.0, float("inf"), float("nan"), 1e-30, cs * 2, cs / 2))
        else:
            origin = (rng.choice((float("nan"), float("inf"), 1e30, origin[0] + cs)), origin[1], origin[2])
        h.grid = (origin, cs, cb, sb)
    elif k == 2:
        h.grid = None
    elif k in (3, 4, 5) and h.quant is not None:
        q = h.quant
        name = rng.choice(("position_bits", "scale_bits", "rotation_bits", "opacity_bits", "dc_bits",
                           "scale_min", "scale_max", "dc_min", "dc_max", "rest_bits", "rest_range", "sh_palette"))
        cur = getattr(q, name)
        if name.endswith("_bits") and name != "rest_bits":
            setattr(q, name, rng.choice((0, 1, max(cur - 1, 0), cur + 1, 16, 17, 32, 255)))
        elif name == "rest_bits":
            setattr(q, name, tuple(rng.choice((0, 1, b - 1, b + 1, 16, 17)) for b in cur) if cur and rng.random() < .7
                    else cur[:-1])
        elif name == "rest_range":
            setattr(q, name, tuple(rng.choice((0.0, -r, r * 2, float("nan"))) for r in cur) if cur else (1.0,))
        elif name == "sh_palette":
            q.sh_palette = rng.choice((0, 1, 2, max(cur - 1, 0), cur + 1, 65535, 65536, 1 << 20))
        else:
            setattr(q, name, rng.choice((float("nan"), float("inf"), -cur, cur + 1.0, 0.0)))
    elif k == 6:
        h.quant = None if h.quant is not None else QuantFields()
    elif k == 7:
        h.required_features = rng.choice((0, 1, 2, 3, 1 << 63))
    elif k == 8:
        h.max_gaussians = rng.choice((0, 1, 2, 3, 8, 64, 1 << 24, (1 << 24) + 1, 1 << 31))
    else:
        minor = rng.choice((0, 1, 2, 255))
    try:
        return craft.header(h, major=major, minor=minor)
    except Exception:  # noqa: BLE001 -- a field the schema's builder refuses (out of its type's range)
        return None


def reseq(frames: list[bytes]) -> list[bytes]:
    """Rewrite seq/base_seq so each delta frame follows the one before (keyframes keep theirs)."""
    out, prev = [], 0
    for rec in frames:
        try:
            p = parse_frame(rec)
        except Exception:  # noqa: BLE001
            out.append(rec)
            continue
        f = p.fields
        if prev >= (1 << 64) - 1:
            out.append(rec)
            continue
        if f.flags & craft.KEYFRAME:
            if f.seq == 0:
                f.seq = prev + 1
        else:
            f.base_seq = prev
            if f.seq <= prev:
                f.seq = prev + 1
        prev = f.seq
        out.append(build_frame(p, relayout=False))
    return out


def fix_digests(data: bytes, limits: Limits) -> bytes:
    """Each frame that carries a digest and applies gets the digest of the state after it, found by a
    decode that does not check digests; from the first failing frame on, nothing changes."""
    header, frames, tail = split_stream(data)
    if not header:
        return data
    dec = Decoder(limits=limits, verify_digest=False)
    try:
        dec.set_header(header)
    except Exception:  # noqa: BLE001 -- the execution of the stream itself reports what this was
        return data
    out = list(frames)
    old = signal.signal(signal.SIGALRM, fuzz._alarm)
    signal.setitimer(signal.ITIMER_REAL, 5.0)
    try:
        for k, rec in enumerate(frames):
            try:
                dec.read_frame(rec)
            except (Exception, fuzz._Hang):  # noqa: BLE001 -- a crash or hang here is left in the stream,
                break                        # where execute() finds and reports it
            p = parse_frame(rec)
            if p.fields.digest is not None:
                d = dec.state.digest()
                if p.fields.digest != (d.count, d.lane0, d.lane1):
                    p.fields.digest = (d.count, d.lane0, d.lane1)
                    out[k] = build_frame(p, relayout=False)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    return header + b"".join(out) + tail


# ------------------------------------------------------------------------------------------ corpus
@dataclass
class Entry:
    vid: str
    data: bytes
    limits: Limits
    _split: tuple | None = None
    _ids: list | None = None

    def split(self):
        if self._split is None:
            self._split = split_stream(self.data)
        return self._split

    def ids(self) -> list[int]:
        """Ids found in the stream's id sections (for 'an id of another frame')."""
        if self._ids is None:
            ids: list[int] = []
            for rec in self.split()[1][:8]:
                try:
                    p = parse_frame(rec)
                    roles = section_roles(p.fields)
                    for s, (role, kind, count) in roles.items():
                        if role == "ids" and s < len(p.fields.sections):
                            a = section_values(p, s, count)
                            if a is not None:
                                ids += [int(x) for x in a.reshape(-1)[:16]]
                except Exception:  # noqa: BLE001 -- a mutated frame that no longer parses
                    continue
            self._ids = ids
        return self._ids


MUTATOR_ERRORS = Counter()   # a value the schema's builder refuses (past its type): the mutation is skipped


def mutate_stream(rng: random.Random, entry: Entry, corpus: list[Entry]) -> tuple[bytes, Limits, str]:
    """One structure-aware mutation (sometimes two stacked) of ``entry``; returns (data, limits, mutator)."""
    try:
        return _mutate_stream(rng, entry, corpus)
    except (struct.error, OverflowError, ValueError) as e:  # not the decoder: the mutators ran it nowhere
        MUTATOR_ERRORS[type(e).__name__] += 1
        return entry.data, entry.limits, "unmutated"


def _mutate_stream(rng: random.Random, entry: Entry, corpus: list[Entry]) -> tuple[bytes, Limits, str]:
    name = rng.choices(MUTATORS, WEIGHTS)[0]
    data, limits = _mutate_once(rng, name, entry, corpus)
    if rng.random() < 0.25:
        second = rng.choices(MUTATORS[1:], WEIGHTS[1:])[0]
        data, limits = _mutate_once(rng, second, Entry(entry.vid, data, limits), corpus)
        name = f"{name}+{second}"
    if name != "bytes" and rng.random() < 0.33:
        data = fix_digests(data, limits)
    return data, limits, name


def _mutate_once(rng: random.Random, name: str, entry: Entry, corpus: list[Entry]) -> tuple[bytes, Limits]:
    data, limits = entry.data, entry.limits
    if name == "bytes":
        return fuzz.mutate(data, fuzz.random_ops(rng), [(e.vid, e.data, e.limits) for e in corpus[:64]], True), limits
    header, frames, tail = entry.split()
    if name == "limits":
        lim = rng.choice(LIMIT_NAMES)
        cur = getattr(limits, lim)
        guess = {"max_frame_bytes": max((len(f) for f in frames), default=64),
                 "max_header_bytes": len(header)}.get(lim, rng.choice((1, 2, 3, 8, 16, 64)))
        val = min(max(0, guess + rng.randint(-2, 2)), getattr(SPEC_DEFAULTS, lim))
        return data, replace(limits, **{lim: min(val, cur)})
    if name == "header":
        h = mutate_header(rng, header) if header else None
        return (h + data[len(header):] if h is not None else data), limits
    if name == "frames":
        fr = list(frames)
        op = rng.randrange(6)
        if op == 0 and len(fr) > 1:
            i, j = rng.sample(range(len(fr)), 2)
            fr[i], fr[j] = fr[j], fr[i]
        elif op == 1 and fr:
            del fr[rng.randrange(len(fr))]
        elif op == 2 and fr:
            i = rng.randrange(len(fr))
            fr.insert(i + rng.choice((0, 1)), fr[i])
        elif op in (3, 4):
            donor = rng.choice(corpus)
            same = [e for e in corpus[:512] if e.split()[0] == header] if rng.random() < 0.6 else []
            if same:
                donor = rng.choice(same)
            dfr = donor.split()[1]
            if dfr:
                rec = rng.choice(dfr)
                if op == 3 or not fr:
                    fr.insert(rng.randrange(len(fr) + 1), rec)
                else:
                    fr[rng.randrange(len(fr))] = rec
        elif fr:
            fr = fr[:rng.randrange(len(fr))]
        if rng.random() < 0.5:
            fr = reseq(fr)
        return header + b"".join(fr) + tail, limits
    if not frames:
        return data, limits
    k = rng.randrange(len(frames))
    try:
        p = parse_frame(frames[k])
    except Exception:  # noqa: BLE001 -- metadata the reader cannot follow: fall back to bytes
        return fuzz.mutate(data, fuzz.random_ops(rng), [], True), limits
    if name == "meta":
        done = mutate_meta(rng, p)
        relayout = False
    elif name == "content":
        done = mutate_content(rng, p, entry.ids())
        relayout = True
    else:
        done = mutate_resize(rng, p)
        relayout = True
    if not done:
        return fuzz.mutate(data, fuzz.random_ops(rng), [], True), limits
    try:
        rec = build_frame(p, relayout=relayout)
    except Exception:  # noqa: BLE001 -- a value the builder refuses (e.g. past u32): try another mutation
        return data, limits
    return header + b"".join(frames[:k]) + rec + b"".join(frames[k + 1:]) + tail, limits


# ------------------------------------------------------------------------------------------ execution
@dataclass
class Outcome:
    outcome: str                 # "ok" or the error code
    reached: int                 # deepest stage any record reached
    failed: int | None           # stage of the failing record (None: all ok)
    features: set = field(default_factory=set)


_NUM = re.compile(r"\w*\d\w*")   # numbers, hex digests, names with numbers: blanked in feature messages


def _framing_ok(buf: memoryview, limits: Limits) -> tuple[bool, int]:
    if len(buf) < 16 or bytes(buf[:4]) != craft.FRAME_MAGIC:
        return False, 0
    n, meta_len = struct.unpack_from("<II", buf, 4)
    if n < 16 or n > len(buf) or n > limits.max_frame_bytes or meta_len > n - 16:   # F4..F7
        return False, 0
    return True, n


def execute(data: bytes, limits: Limits, budget: float = 5.0, full_compare: bool = False,
            lines: list | None = None) -> Outcome:
    """Decode and apply ``data`` record by record with the depth probes counting; raises fuzz.Crash.
    ``lines``, when given, receives the conformance transcript (conformance/README.md).

    An input over ``budget`` seconds of wall time runs once more with the budget counted in this
    process's CPU time (and ten times it in wall time, for a decoder that waits forever): on a
    loaded machine the wall clock also counts other work, so only a decoder that spends the budget
    itself is a hang."""
    try:
        return _timed(data, limits, full_compare, lines, budget, cpu=False)
    except fuzz._Hang:
        pass
    if lines is not None:
        del lines[:]
    try:
        return _timed(data, limits, full_compare, lines, budget, cpu=True)
    except fuzz._Hang:
        raise fuzz.Crash("hang", f"no result within {budget:g} s of CPU time") from None


def _timed(data: bytes, limits: Limits, full_compare: bool, lines: list | None, budget: float, cpu: bool) -> Outcome:
    """``_execute`` under a timer (fuzz._Hang when it fires); any exception but a typed error is the finding."""
    old = {sig: signal.signal(sig, fuzz._alarm) for sig in (signal.SIGALRM, signal.SIGPROF)}
    signal.setitimer(signal.ITIMER_REAL, 10 * budget if cpu else budget)
    if cpu:
        signal.setitimer(signal.ITIMER_PROF, budget)
    try:
        return _execute(data, limits, full_compare, lines)
    except (fuzz._Hang, fuzz.Crash, GsdError):
        raise
    except BaseException as e:  # noqa: BLE001 -- any other exception is the finding
        if isinstance(e, KeyboardInterrupt):
            raise
        raise fuzz.Crash("exception", f"{type(e).__name__}: {e}") from e
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.setitimer(signal.ITIMER_PROF, 0)
        for sig, handler in old.items():
            signal.signal(sig, handler)


_HEADERS: dict = {}   # (header record bytes, limits) -> (StreamHeader, bytes used) or the GsdError it raised


def _header(dec: Decoder, data: bytes, limits: Limits) -> int:
    """dec.set_header(data), with header decoding memoized: it is a pure function of the record's bytes and
    the limits, and most inputs repeat their parent's header (the StreamHeader goes in through the API)."""
    key = None
    if len(data) >= 12 and data[:4] == craft.HEADER_MAGIC:
        n = 16 + struct.unpack_from("<I", data, 8)[0]
        if n <= len(data) and n <= 1 << 17:
            key = (data[:n], limits)
    if key is None:
        return dec.set_header(data)
    hit = _HEADERS.get(key)
    if hit is None:
        try:
            used = dec.set_header(data)
            hit = (dec.header, used)
        except GsdError as e:
            hit = e
        if len(_HEADERS) > 4096:
            _HEADERS.clear()
        _HEADERS[key] = hit
    if isinstance(hit, GsdError):
        raise GsdError(hit.code, hit.message)
    dec.set_header(hit[0])
    return hit[1]


def _execute(data: bytes, limits: Limits, full_compare: bool, lines: list | None = None) -> Outcome:
    feats: set = set()
    say = lines.append if lines is not None else (lambda _: None)
    dec = Decoder(limits=limits)
    mv = memoryview(data)
    # header: framing (magic, version, length), CRC, then its body
    try:
        pos = _header(dec, data, limits)
    except GsdError as e:
        code = e.code.name
        if code == "BAD_CHECKSUM":
            st = CRC
        elif code in ("BAD_MAGIC", "TRUNCATED", "UNSUPPORTED_VERSION") or \
                (code == "LIMIT_EXCEEDED" and len(data) >= 12 and
                 struct.unpack_from("<I", data, 8)[0] + 16 > limits.max_header_bytes):
            st = FRAMING
        else:
            st = METADATA
        feats.add(("h", st, code, _NUM.sub("#", e.message)))
        say(f"header error {code}")
        return Outcome(code, st, st, feats)
    say("header ok")
    reached = METADATA
    k = 0
    while pos < len(data):
        rec = mv[pos:]
        ok, n = _framing_ok(rec, limits)
        PROBE.stage = (METADATA if zlib.crc32(rec[:n - 4]) == struct.unpack_from("<I", rec, n - 4)[0] else CRC) \
            if ok else FRAMING
        state = dec.state
        before, seq, count = state.digest(), state.seq, state.count
        snap = state.copy() if full_compare else None
        try:
            d, used = dec.read_frame(rec)
        except GsdError as e:
            code = e.code.name
            st = PROBE.stage
            if code == "BAD_CHECKSUM":
                st = CRC
            elif code == "DIGEST_MISMATCH":
                st = DIGEST
            elif not PROBE.complete and st >= METADATA:
                st = max(st, CODE_STAGE.get(code, st))
            if dec.state is not state or state.seq != seq or state.count != count or state.digest() != before \
                    or (snap is not None and not state.equals(snap)):
                raise fuzz.Crash("state_changed", f"{code} at frame {k} but the state changed") from None
            reached = max(reached, st)
            feats.add(("f", min(k, 3), st, code, _NUM.sub("#", e.message)))
            say(f"frame {k} error {code}")
            return Outcome(code, reached, st, feats)
        st = DIGEST if d.digest is not None else APPLY
        reached = max(reached, st)
        kinds = tuple(sorted({b for b in (1 if len(d.add_ids) else 0, 2 if d.updates else 0,
                                          3 if len(d.delete_ids) else 0, 4 if len(d.delete_ranges) else 0,
                                          5 if d.delete_cells else 0, 6 if d.palette is not None else 0) if b}))
        feats.add(("ok", min(k, 3), st, kinds, bool(d.keyframe)))
        say(f"frame {k} ok {dec.state.digest()}")
        pos += used
        k += 1
    return Outcome("ok", DONE, None, feats)


# ------------------------------------------------------------------------------------------ campaign
@dataclass
class Stats:
    execs: int = 0
    reached: Counter = field(default_factory=Counter)      # deepest stage per execution
    failed: Counter = field(default_factory=Counter)       # (stage, code) where the failing record stopped
    outcomes: Counter = field(default_factory=Counter)
    mutators: Counter = field(default_factory=Counter)
    crashes: list = field(default_factory=list)            # (message, data, vid)
    features: set = field(default_factory=set)
    corpus: int = 0
    seconds: float = 0.0

    def add(self, o: Outcome, mutator: str) -> None:
        self.execs += 1
        self.reached[o.reached] += 1
        self.outcomes[o.outcome] += 1
        if o.failed is not None:
            self.failed[(o.failed, o.outcome)] += 1
        self.mutators[mutator.split("+")[0]] += 1

    def merge(self, other: "Stats") -> None:
        self.execs += other.execs
        self.reached.update(other.reached)
        self.failed.update(other.failed)
        self.outcomes.update(other.outcomes)
        self.mutators.update(other.mutators)
        self.crashes += other.crashes
        self.features |= other.features
        self.corpus += other.corpus
        self.seconds = max(self.seconds, other.seconds)

    def at_least(self, stage: int) -> int:
        return sum(v for s, v in self.reached.items() if s >= stage)

    def table(self) -> str:
        """The depth table (markdown): executions reaching each stage, and the codes that stopped them there."""
        n = max(self.execs, 1)
        lines = ["| stage | reached | % | stopped here | codes that stopped it there |", "| --- | ---: | ---: | ---: | --- |"]
        for s, name in enumerate(STAGES):
            stopped = {c: v for (st, c), v in self.failed.items() if st == s}
            here = sum(stopped.values()) if s != DONE else self.reached.get(DONE, 0)
            codes = ", ".join(f"{c} {v}" for c, v in sorted(stopped.items(), key=lambda kv: -kv[1]))
            lines.append(f"| {name} | {self.at_least(s)} | {100 * self.at_least(s) / n:.1f} | {here} | {codes} |")
        return "\n".join(lines)

    def summary(self) -> str:
        n = max(self.execs, 1)
        return (f"{self.execs} executions in {self.seconds:.0f} s ({self.execs / max(self.seconds, 1e-9):.0f}/s), "
                f"{len(self.crashes)} crashes; past the CRC {100 * self.at_least(METADATA) / n:.1f}%, "
                f"reached apply {100 * self.at_least(APPLY) / n:.1f}%, decoded to the end "
                f"{100 * self.at_least(DONE) / n:.1f}%"
                + (f"; {len(self.features)} behaviours, corpus {self.corpus}" if self.features else ""))


def seed_corpus(vectors: str = fuzz.VECTORS) -> list[Entry]:
    return [Entry(vid, data, limits) for vid, data, limits in fuzz.load_corpus(vectors)]


def campaign(execs: int | None, seed: int, seconds: float | None = None, vectors: str = fuzz.VECTORS,
             crashers: str | None = None, budget: float = 5.0, compare_rate: float = 0.05, log=None,
             report_every: float = 60.0, max_corpus: int = 4000) -> Stats:
    """Coverage-guided structure-aware mutation for ``execs`` executions (or ``seconds``)."""
    rng = random.Random(seed)
    seeds = seed_corpus(vectors)
    # small streams first: a 100 KB vector costs as much as a hundred small ones
    weights = [1.0 / (1.0 + len(e.data) / 4096) for e in seeds]
    finds: list[Entry] = []
    stats = Stats()
    t0 = last = time.monotonic()
    stop = _Stop()
    with depth_probes() as complete, stop:
        if not complete and log:
            log("note: some decoder pipeline probes are missing; their stages are inferred from error codes")
        while (execs is None or stats.execs < execs) and (seconds is None or time.monotonic() - t0 < seconds) \
                and not stop.requested:
            parent = rng.choices(seeds, weights)[0] if not finds or rng.random() < 0.5 else \
                finds[-1 - min(int(rng.expovariate(1 / 300)), len(finds) - 1)]
            data, limits, mname = mutate_stream(rng, parent, seeds)
            try:
                o = execute(data, limits, budget, full_compare=rng.random() < compare_rate)
            except fuzz.Crash as c:
                stats.crashes.append((str(c), data, parent.vid))
                fuzz.save_crash(crashers, c, data, parent.vid, limits)
                if log:
                    log(f"CRASH {c} (from {parent.vid}, {mname})")
                stats.execs += 1
                continue
            stats.add(o, mname)
            new = o.features - stats.features
            if new:
                stats.features |= new
                if len(data) <= 1 << 18:
                    finds.append(Entry(parent.vid, data, limits, _ids=parent._ids))
                    if len(finds) > max_corpus:
                        del finds[: max_corpus // 4]
            now = time.monotonic()
            if log and now - last >= report_every:
                stats.seconds = now - t0
                stats.corpus = len(finds)
                log(f"  {stats.summary()}")
                last = now
    stats.seconds = time.monotonic() - t0
    stats.corpus = len(finds)
    return stats


class _Stop:
    """SIGTERM ends a campaign after the current execution (its stats and report are kept); in the main
    thread only, and the previous handler comes back afterwards."""

    requested = False

    def __enter__(self):
        import threading
        self.old = None
        if threading.current_thread() is threading.main_thread():
            self.old = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        if self.old is not None:
            signal.signal(signal.SIGTERM, self.old)
        return False


def _worker(args) -> Stats:
    execs, seed, seconds, vectors, crashers, budget = args
    st = campaign(execs, seed, seconds, vectors, crashers, budget)
    st.crashes = [(m, d, v) for m, d, v in st.crashes][:50]
    return st


def run_jobs(execs: int | None, seed: int, jobs: int, seconds: float | None = None, vectors: str = fuzz.VECTORS,
             crashers: str | None = None, budget: float = 5.0, log=print) -> Stats:
    if jobs <= 1:
        return campaign(execs, seed, seconds, vectors, crashers, budget, log=log)
    per = None if execs is None else [execs // jobs + (1 if j < execs % jobs else 0) for j in range(jobs)]
    args = [(None if per is None else per[j], seed * 1000 + j, seconds, vectors, crashers, budget) for j in range(jobs)]
    total = Stats()
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(jobs) as pool:
        for st in pool.imap_unordered(_worker, args):
            total.merge(st)
            if log:
                log(f"  worker done: {st.execs} executions, {len(st.crashes)} crashes")
    return total


def report_markdown(stats: Stats, command: str, seed: int, jobs: int) -> str:
    outcome = ", ".join(f"{k} {v}" for k, v in stats.outcomes.most_common())
    muts = ", ".join(f"{k} {v}" for k, v in stats.mutators.most_common())
    stage_doc = "\n".join(f"- **{k}**: {v}" for k, v in STAGE_DOC.items())
    return f"""## Structure-aware fuzzing

`{command}` (seed {seed}, {jobs} job(s))

{stats.summary()}

{stats.table()}

Outcomes: {outcome}

Mutators: {muts}

Stages (an execution counts in every row up to the deepest stage any of its records reached):

{stage_doc}
"""


def write_report(path: str, section: str, text: str) -> None:
    """Replace (or append) the section starting with ``section`` in the markdown file ``path``."""
    head = "# Fuzzing results\n\nWritten by `python -m conformance.fuzz` and `python -m conformance.fuzz_diff`.\n"
    old = open(path, encoding="utf-8").read() if os.path.exists(path) else head
    parts = re.split(r"(?m)^(?=## )", old)
    body = [p for p in parts if not p.startswith(section)]
    if not body or not body[0].startswith("# "):
        body.insert(0, head)
    out = "".join(p if p.endswith("\n\n") else p.rstrip("\n") + "\n\n" for p in body) + text.rstrip("\n") + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m conformance.fuzz --structured", description=__doc__.split("\n")[0])
    ap.add_argument("--structured", action="store_true", help="(accepted for python -m conformance.fuzz)")
    ap.add_argument("--execs", type=int, default=None, help="executions in total (default: until --seconds)")
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--budget", type=float, default=5.0,
                    help="seconds per input (of CPU time, once over them on the wall clock) before it counts as a hang")
    ap.add_argument("--crashers", default="fuzz-crashers")
    ap.add_argument("--vectors", default=fuzz.VECTORS)
    ap.add_argument("--report", default=None, help="markdown file to write the depth table into (e.g. conformance/FUZZ.md)")
    a = ap.parse_args(argv)
    if a.execs is None and a.seconds is None:
        a.execs = 100_000
    seed = a.seed if a.seed is not None else int(time.time())
    print(f"structure-aware fuzzing: {a.execs or 'unbounded'} executions, {a.seconds or 'no'} time limit, "
          f"seed {seed}, {a.jobs} job(s), crashers -> {a.crashers}", flush=True)
    stats = run_jobs(a.execs, seed, a.jobs, a.seconds, a.vectors, a.crashers, a.budget,
                     log=lambda m: print(m, flush=True))
    print(stats.summary())
    print(stats.table())
    print("outcomes: " + ", ".join(f"{k} {v}" for k, v in stats.outcomes.most_common()))
    for msg, _, vid in stats.crashes[:20]:
        print(f"CRASH {msg} (from {vid})")
    if a.report:
        cmd = "python -m conformance.fuzz --structured " + " ".join(
            x for x in (f"--execs {a.execs}" if a.execs else "", f"--seconds {a.seconds:g}" if a.seconds else "",
                        f"--seed {seed}", f"--jobs {a.jobs}") if x)
        write_report(a.report, "## Structure-aware fuzzing", report_markdown(stats, cmd, seed, a.jobs))
    return 1 if stats.crashes else 0


if __name__ == "__main__":
    sys.exit(main())
