"""Rebuilds conformance/vectors/*.gsd and manifest.json, byte for byte the same every run.

    python -m conformance.generate [--out DIR] [--check]

Every vector is a stream file plus a manifest entry saying what a conforming
decoder must report. Valid vectors get their digests (and, when small, the
final state) from conformance.refmodel, a naive second reading of the spec;
invalid vectors are written with exactly one defect each, so the expected
error code does not depend on the order of unrelated checks (where the spec
fixes an order, the "order_*" vectors test it). Randomness is seeded per
vector from its id, so editing one vector leaves the others unchanged.
``--check`` also runs every vector through the Python codec in-process.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import struct
import sys
import zlib
from dataclasses import replace

import numpy as np

from codec import Delta, Encoder, Gaussians, Grid, Limits, Profile, compose
from codec.attributes import ATTRS
from codec.profile import PRESETS
from codec.sections import SectionDesc

from . import craft
from .craft import (ADD, DELETE_CELLS, DELETE_IDS, DELETE_RANGES, DELTA, KEYFRAME, SHUFFLE, UPDATE, ZIGZAG,
                    BlockFields, FrameFields, HeaderFields, QuantFields)
from .refmodel import Layout, RefError, RefFrame, RefState, check_records, digest_text

HERE = os.path.dirname(os.path.abspath(__file__))
VECTOR_DIR = os.path.join(HERE, "vectors")

# SPEC.md section numbers by topic; renumber here if SPEC.md moves them.
S_MODEL, S_GRID, S_IDS, S_OCTREE = "2.1", "3.1", "3.2", "3.5"
S_RECORDS, S_HEADER_REC, S_FRAME_REC, S_SECTIONS, S_SCHEMA = "4.1", "4.2", "4.3", "4.4", "4.5"
S_HEADER, S_FRAME, S_CRC, S_ORDER = "4.6", "4.7", "4.8", "4.9"
S_CODES, S_LOSSLESS, S_QUANT, S_VALIDITY, S_QDOMAIN, S_PRESETS = "5.1", "5.2", "5.3", "5.6", "5.7", "5.8"
S_OPS, S_IDRULES, S_APPLY, S_KEYFRAME, S_SEQ = "6.1", "6.2", "6.3", "6.4", "6.5"
S_DIGEST, S_COMPOSE, S_LIMITS, S_ERRORS, S_VERSION = "7", "8", "9.1", "9.2", "10"

LIMIT_NAMES = [f.name for f in dataclasses.fields(Limits)]
DEFAULT_LIMITS = Limits()
G = ((-8.0, -8.0, -8.0), 1.0, 4, 8)          # default grid: 16^3 cells of 1.0, 8 slot bits, ids < 2^20
G63 = ((-1024.0, -1024.0, -1024.0), 0.001953125, 20, 3)   # 63-bit ids
NARROW = QuantFields(4, 6, -14.0, 4.0, 7, 5, 6, -3.5, 3.5, (5, 4, 3), (1.2, 1.0, 0.8))
STATE_MAX = 64   # manifest lists the full final state when it has at most this many Gaussians


def hf_preset(name: str, d: int, grid=G, **kw) -> HeaderFields:
    q = PRESETS[name]
    return HeaderFields(d, grid, QuantFields.of(q, d) if q is not None else None, name, **kw)


def hf_quant(q: QuantFields, d: int, grid=G, name="custom", **kw) -> HeaderFields:
    return HeaderFields(d, grid, replace(q, rest_bits=tuple(q.rest_bits[:d]), rest_range=tuple(q.rest_range[:d])),
                        name, **kw)


def codec_profile(hf: HeaderFields) -> Profile:
    from codec import Quantization
    q = hf.quant
    quant = None if q is None else Quantization(
        q.position_bits, q.scale_bits, q.scale_min, q.scale_max, q.rotation_bits, q.opacity_bits, q.dc_bits,
        q.dc_min, q.dc_max, tuple(q.rest_bits) + (8,) * (3 - len(q.rest_bits)),
        tuple(q.rest_range) + (1.0,) * (3 - len(q.rest_range)))
    return Profile(hf.sh_degree, Grid(*hf.grid), quant, hf.profile_name)


def dtype_of(L: Layout, a: int) -> np.dtype:
    return np.dtype(("i" if L.signed(a) else "u") + str(L.width(a)))


def rest_limits(L: Layout) -> list[int]:
    k = (L.sh_degree + 1) ** 2 - 1
    from math import isqrt
    return [(1 << (L.quant.rest_bits[isqrt(j % k + 1) - 1] - 1)) - 1 for j in range(3 * k)]


def rand_codes(L: Layout, n: int, rng) -> list[np.ndarray]:
    """Valid random codes, planar (C, n) per attribute."""
    out = []
    for a in range(6):
        c = L.comps(a)
        if L.quant is None:
            v = (rng.normal(size=(c, n)) * (2.0 if a != 5 else 0.3)).astype(np.float32)
            out.append(v.view(np.uint32))
            continue
        q = L.quant
        if a == 0:
            lim = 1 << (q.position_bits + 1)
            arr = rng.integers(-lim, lim, size=(c, n))
        elif a == 2:
            arr = np.vstack([rng.integers(0, 4, size=(1, n)), rng.integers(0, 1 << q.rotation_bits, size=(3, n))])
        elif a == 5:
            m = np.array(rest_limits(L), np.int64)[:, None] if c else np.zeros((0, 1), np.int64)
            arr = rng.integers(-m, m + 1, size=(c, n)) if c else np.zeros((0, n), np.int64)
        else:
            bits = (None, q.scale_bits, None, q.opacity_bits, q.dc_bits)[a]
            arr = rng.integers(0, 1 << bits, size=(c, n))
        out.append(arr.astype(dtype_of(L, a)))
    return out


def band_rows(d: int) -> list[list[int]]:
    """SH_REST component rows of each band section l = 1..d (SPEC.md 6.1): c*K + l^2 - 1 + i."""
    k = (d + 1) ** 2 - 1
    return [[c * k + l * l - 1 + i for c in range(3) for i in range(2 * l + 1)] for l in range(1, d + 1)]


def per_gaussian(arrays: list[np.ndarray], j: int) -> tuple:
    return tuple(tuple(int(x) for x in arr[:, j]) for arr in arrays)


def planar(L: Layout, rows: list[tuple]) -> list[np.ndarray]:
    """Per-Gaussian code tuples -> planar arrays per attribute."""
    return [np.array([r[a] for r in rows], dtype=np.int64).reshape(len(rows), L.comps(a)).T.astype(dtype_of(L, a))
            for a in range(6)]


class Enc:
    """How a frame's sections are encoded (filters and compression)."""

    def __init__(self, ids=DELTA | SHUFFLE, ranges=DELTA | ZIGZAG | SHUFFLE, cells=DELTA | ZIGZAG | SHUFFLE,
                 attr=None, compression="auto", zstd_frames=1, zstd_args=None, level=3):
        self.ids, self.ranges, self.cells = ids, ranges, cells
        self.attr = attr  # fn(attr_index, width, residual) -> filters
        self.compression, self.zstd_frames, self.zstd_args, self.level = compression, zstd_frames, zstd_args, level

    def attr_filters(self, a: int, width: int, residual: bool) -> int:
        if self.attr is not None:
            return self.attr(a, width, residual)
        f = SHUFFLE if width > 1 else 0
        return f | ZIGZAG if residual else f


# ------------------------------------------------------------------------------------------ streams
class Stream:
    """A header and frames under construction, with the reference model kept in step."""

    def __init__(self, gen: "Gen", vid: str, hf: HeaderFields | None = None, limits: dict | None = None,
                 header: bytes | None = None):
        self.gen, self.vid = gen, vid
        self.hf = hf or hf_preset("compact", 1)
        self.L = Layout.of_header(self.hf)
        self.limits = dict(limits or {})
        lim = Limits(**self.limits)
        budget = min(self.hf.max_gaussians or lim.max_gaussians, lim.max_gaussians)
        self.model = RefState(self.L, budget)
        self.rng = np.random.default_rng(zlib.crc32(vid.encode()))
        self.records = [header if header is not None else craft.header(self.hf)]
        self.digests: list[str] = []
        self.fail: tuple[int, str] | None = None
        self.last_raw = 0

    # -- helpers on the model --------------------------------------------------------------------
    @property
    def seq(self) -> int:
        return self.model.seq

    def live(self) -> np.ndarray:
        return np.array(sorted(self.model.g), np.uint64)

    def fresh_ids(self, n: int, lo: int = 0, hi: int | None = None) -> np.ndarray:
        hi = self.L.id_limit if hi is None else hi
        taken = set(self.model.g)
        out: set[int] = set()
        while len(out) < n:
            for x in self.rng.integers(lo, hi, size=n, dtype=np.uint64, endpoint=False):
                if int(x) not in taken and len(out) < n:
                    out.add(int(x))
        return np.array(sorted(out), np.uint64)

    def codes(self, n: int) -> list[np.ndarray]:
        return rand_codes(self.L, n, self.rng)

    def codes_of(self, ids) -> list[np.ndarray]:
        return planar(self.L, [self.model.g[int(i)] for i in ids])

    def residuals(self, ids, mask: int, new: list[np.ndarray] | None = None) -> list[np.ndarray]:
        """Residuals taking ``ids`` to fresh valid codes (or ``new``) on the masked attributes."""
        old = self.codes_of(ids)
        new = new or self.codes(len(ids))
        out = []
        for a in range(6):
            if mask >> a & 1:
                r = [[self.L.wrap(a, int(x) - int(y)) for x, y in zip(nr, orow)] for nr, orow in zip(new[a], old[a])]
                out.append(np.array(r, np.int64).reshape(old[a].shape).astype(dtype_of(self.L, a)))
            else:
                out.append(np.zeros(old[a].shape, dtype_of(self.L, a)))
        return out

    def add_frame(self, n: int, key: bool = False, **kw) -> bytes:
        ids = self.fresh_ids(n)
        return self.frame(key=key, adds=[(ids, self.codes(n))], **kw)

    # -- frames ----------------------------------------------------------------------------------
    def frame(self, *, key=False, adds=(), updates=(), deletes=(), ranges=(), cells=(), ext=(), seq=None, base=None,
              digest="auto", flags=None, features=0, extra_field=None, enc: Enc | None = None, order=None,
              tweak=None, post=None, record=None, error: str | None = None, model: bool = True,
              layout=None) -> bytes:
        """Build, model and append one frame. ``error`` marks it as the frame where decoding must fail."""
        assert self.fail is None, "no frames after the failing one"
        enc = enc or Enc()
        L = self.L
        seq = self.seq + 1 if seq is None else seq
        base = (self.seq if not key else 0) if base is None else base
        pl = craft.Payload(enc.level)

        def sec(arr, filters):
            return pl.add(arr, filters, enc.compression, enc.zstd_frames, enc.zstd_args)

        blocks = []
        for ids in deletes:
            blocks.append(BlockFields(DELETE_IDS, len(ids), 0, 0, [sec(np.asarray(ids, np.uint64)[None, :], enc.ids)]))
        for rs in ranges:
            r = np.array(rs, np.uint64).reshape(-1, 2).T.copy()
            blocks.append(BlockFields(DELETE_RANGES, r.shape[1], 0, 0, [sec(r, enc.ranges)]))
        for level, cs in cells:
            blocks.append(BlockFields(DELETE_CELLS, len(cs), 0, level,
                                      [sec(np.asarray(cs, np.uint64)[None, :], enc.cells)]))
        def attr_sections(arrays, mask, residual):
            out = []
            for a in range(6):
                if mask >> a & 1 and L.comps(a):
                    f = enc.attr_filters(a, L.width(a), residual)
                    parts = [arrays[a][rows] for rows in band_rows(L.sh_degree)] if a == 5 else [arrays[a]]
                    out += [sec(np.ascontiguousarray(p), f) for p in parts]
            return out

        for ids, codes in adds:
            s = [sec(np.asarray(ids, np.uint64)[None, :], enc.ids)] + attr_sections(codes, 0x3F, False)
            blocks.append(BlockFields(ADD, len(ids), 0, 0, s))
        for ids, mask, res in updates:
            s = [sec(np.asarray(ids, np.uint64)[None, :], enc.ids)] + attr_sections(res, mask, True)
            blocks.append(BlockFields(UPDATE, len(ids), mask, 0, s))
        for kind, arrays in ext:
            blocks.append(BlockFields(kind, 0, 0, 0, [sec(arr, 0) for arr in arrays]))
        if order is not None:
            blocks = order(blocks)

        rf = RefFrame(seq, base, key,
                      adds=[[(int(i), per_gaussian(c, j)) for j, i in enumerate(ids)] for ids, c in adds],
                      updates=[[(int(i), m, per_gaussian(r, j)) for j, i in enumerate(ids)] for ids, m, r in updates],
                      delete_ids=[[int(i) for i in ids] for ids in deletes],
                      ranges=[(int(a), int(b)) for rs in ranges for a, b in rs],
                      cells=[(lv, int(c)) for lv, cs in cells for c in cs])
        if error is None:
            trial = self._copy_model()
            trial.apply(rf)
            rf.digest = trial.digest() if digest == "auto" else digest
            self.model.apply(rf)
            self.digests.append(digest_text(self.model.digest()))
        else:
            rf.digest = None if digest == "auto" else digest
            if model:
                try:
                    self._copy_model().apply(rf)
                except RefError as e:
                    if e.code != error:
                        raise AssertionError(f"{self.vid}: model says {e.code}, vector declares {error}") from None
                else:
                    raise AssertionError(f"{self.vid}: model accepts a frame declared {error}")
            self.fail = (len(self.records) - 1, error)
        ff = FrameFields(seq, base, (KEYFRAME if key else 0) if flags is None else flags, features,
                         rf.digest, blocks, list(pl.descs), extra_field)
        if tweak is not None:
            tweak(ff, pl)
        self.last_raw = sum(s.raw_size for s in ff.sections if isinstance(s, SectionDesc))
        rec = craft.frame_record((layout or craft.frame_meta)(ff), pl.bytes(), **(record or {}))
        if post is not None:
            rec = post(rec)
        self.records.append(rec)
        return rec

    def raw(self, rec: bytes, error: str) -> None:
        """Append hand-made record bytes at which decoding must fail with ``error``."""
        assert self.fail is None
        self.fail = (len(self.records) - 1, error)
        self.records.append(rec)

    def _copy_model(self) -> RefState:
        m = RefState(self.L, self.model.max_gaussians)
        m.g, m.seq = dict(self.model.g), self.model.seq
        return m

    # -- results ---------------------------------------------------------------------------------
    def data(self) -> bytes:
        return b"".join(self.records)

    def valid(self, category: str, desc: str, sections: list[str], state: bool = True) -> None:
        assert self.fail is None
        exp = {"result": "valid", "digests": self.digests}
        if state and len(self.model.g) <= STATE_MAX:
            exp["state"] = self.model.state_json()
        self.gen.emit(self.vid, category, desc, sections, self.data(), exp, self.limits)

    def invalid(self, category: str, desc: str, sections: list[str], ref_records: bool = False) -> None:
        assert self.fail is not None, self.vid
        frame, code = self.fail
        exp = {"result": "invalid", "frame": frame, "error": code, "digests": self.digests[:frame]}
        self.gen.emit(self.vid, category, desc, sections, self.data(), exp, self.limits, ref_records)


class Gen:
    def __init__(self, out: str):
        self.out = out
        self.entries: list[dict] = []

    def stream(self, vid, hf=None, limits=None, header=None, key_n: int | None = 4) -> Stream:
        """A new stream, by default already holding a keyframe of ``key_n`` Gaussians."""
        s = Stream(self, vid, hf, limits, header)
        if key_n is not None:
            s.add_frame(key_n, key=True)
        return s

    def emit(self, vid, category, desc, sections, data: bytes, expected: dict, limits: dict | None = None,
             ref_records: bool = False) -> None:
        """``ref_records``: the expected error is one of H1..H9 / F1..F9, which refmodel.check_records
        must find by itself; for every other vector it must find nothing, or the same error."""
        assert "\n" not in desc and vid not in {e["id"] for e in self.entries}, vid
        found = check_records(data, limits or {})
        want = None if expected["result"] == "valid" else (expected["frame"], expected["error"])
        if found != want and (ref_records or found is not None):
            raise AssertionError(f"{vid}: refmodel.check_records says {found}, vector declares {want}")
        entry = {"id": vid, "file": vid + ".gsd", "category": category, "description": desc,
                 "sections": sorted(set(sections), key=lambda s: [int(x) for x in s.split(".")])}
        if limits:
            assert set(limits) <= set(LIMIT_NAMES), limits
            entry["limits"] = dict(sorted(limits.items()))
        entry["expected"] = expected
        self.entries.append(entry)
        with open(os.path.join(self.out, entry["file"]), "wb") as f:
            f.write(data)

    def header_invalid(self, vid, category, desc, sections, data: bytes, error: str, limits=None,
                       ref_records: bool = False) -> None:
        self.emit(vid, category, desc, sections, data,
                  {"result": "invalid", "frame": -1, "error": error, "digests": []}, limits, ref_records)

    def manifest(self) -> dict:
        return {
            "format": "GSD 1.0",
            "generator": "python -m conformance.generate",
            "digest_text": "count:lane0hex8:lane1hex8",
            "default_limits": dataclasses.asdict(DEFAULT_LIMITS),
            "vectors": self.entries,
        }


# ------------------------------------------------------------------------------------------ tweaks
def set_block(i, **kw):
    def t(ff, pl):
        for k, v in kw.items():
            setattr(ff.blocks[i], k, v)
    return t


def set_section(i, **kw):
    def t(ff, pl):
        ff.sections[i] = replace(ff.sections[i], **kw)
    return t


def both(*fns):
    def t(ff, pl):
        for f in fns:
            f(ff, pl)
    return t


def fix_crc(rec: bytes) -> bytes:
    out = bytearray(rec)
    struct.pack_into("<I", out, len(out) - 4, zlib.crc32(out[:-4]))
    return bytes(out)


def flip(offset_fn, bit=0):
    """post(): flip one bit at offset_fn(rec) without fixing the CRC."""
    def p(rec):
        out = bytearray(rec)
        out[offset_fn(rec)] ^= 1 << bit
        return bytes(out)
    return p


def meta_span(rec: bytes) -> tuple[int, int]:
    (meta_len,) = struct.unpack_from("<I", rec, 8)
    return 12, 12 + meta_len


# ------------------------------------------------------------------------------------------ vectors: valid
def gen_ops(g: Gen) -> None:
    sec = [S_OPS, S_APPLY]
    s = g.stream("op_keyframe_add", key_n=None)
    s.add_frame(5, key=True)
    s.valid("op", "keyframe that ADDs 5 Gaussians to the empty state", sec)

    s = g.stream("op_add_without_keyframe", key_n=None)
    s.add_frame(3)
    s.add_frame(2)
    s.valid("op", "first frame is a plain ADD delta (base_seq 0), then a second ADD", sec)

    s = g.stream("op_update_full_mask", key_n=6)
    ids = s.live()[[0, 2, 5]]
    s.frame(updates=[(ids, 0x3F, s.residuals(ids, 0x3F))])
    s.valid("op", "UPDATE of 3 of 6 Gaussians with every attribute", sec)

    s = g.stream("op_delete_ids", key_n=6)
    s.frame(deletes=[s.live()[[1, 4]]])
    s.valid("op", "DELETE_IDS of 2 of 6 live Gaussians", sec)

    s = g.stream("op_delete_ranges", key_n=10)
    live = s.live()
    s.frame(ranges=[[(int(live[1]), int(live[3])), (int(live[7]), int(live[7])), (0, 0)]])
    s.valid("op", "DELETE_RANGES: a 3-id span, a single id, and a range with nothing live", sec + [S_IDS])

    s = g.stream("op_delete_cells", key_n=None)
    cell = 0b101101010  # some level-0 cell
    ids = np.array([(cell << 8) | k for k in (0, 1, 7)] + [((cell + 1) << 8) | 3], np.uint64)
    s.frame(key=True, adds=[(ids, s.codes(4))])
    s.frame(cells=[(0, [cell])])
    s.valid("op", "DELETE_CELLS at level 0 removes the 3 Gaussians of one cell, not its neighbour", sec + [S_OCTREE])

    s = g.stream("op_all_kinds_in_one_frame", key_n=12)
    live = s.live()
    new = s.fresh_ids(2)
    upd = live[[8, 9]]
    cell = int(live[5]) >> 8
    s.frame(deletes=[live[[0]]], ranges=[[(int(live[2]), int(live[3]))]], cells=[(0, [cell])],
            adds=[(new, s.codes(2))], updates=[(upd, 0x15, s.residuals(upd, 0x15))])
    s.valid("op", "one frame with DELETE_IDS, DELETE_RANGES, DELETE_CELLS, ADD and UPDATE blocks", sec)

    s = g.stream("op_two_add_blocks_interleaved", key_n=None)
    ids = s.fresh_ids(6)
    c = s.codes(6)
    a, b = [0, 2, 4], [1, 3, 5]
    s.frame(key=True, adds=[(ids[a], [x[:, a] for x in c]), (ids[b], [x[:, b] for x in c])])
    s.valid("op", "two ADD blocks whose ids interleave (each block ascending on its own)", sec)

    s = g.stream("op_update_blocks_per_mask", key_n=9)
    live = s.live()
    ups = []
    for rows, m in (([0, 3, 6], 0x01), ([1, 4, 7], 0x18), ([2, 5, 8], 0x26)):
        ups.append((live[rows], m, s.residuals(live[rows], m)))
    s.frame(updates=ups)
    s.valid("op", "three UPDATE blocks with different masks and interleaved ids", sec)

    s = g.stream("op_two_delete_blocks_each_kind", key_n=12)
    live = s.live()
    s.frame(deletes=[live[[0, 5]], live[[2]]],
            ranges=[[(int(live[7]), int(live[8]))], [(int(live[10]), int(live[10]))]])
    s.valid("op", "two DELETE_IDS blocks and two DELETE_RANGES blocks in one frame", sec)

    s = g.stream("op_blocks_in_reverse_order", key_n=6)
    live = s.live()
    new = s.fresh_ids(1)
    upd = live[[3]]
    s.frame(deletes=[live[[1]]], adds=[(np.sort(np.concatenate([live[[1]], new])), s.codes(2))],
            updates=[(upd, 0x3F, s.residuals(upd, 0x3F))], order=lambda bl: bl[::-1])
    s.valid("op", "UPDATE block first, DELETE_IDS last: apply order is by kind (delete, add, update), not block order",
            sec)

    s = g.stream("op_update_zero_residuals", key_n=4)
    ids = s.live()[:2]
    s.frame(updates=[(ids, 0x3F, s.residuals(ids, 0x3F, new=s.codes_of(ids)))])
    s.valid("op", "UPDATE whose residuals are all zero leaves the state (and digest) unchanged", sec)

    # residuals wrap modulo 2^(8*width)
    s = g.stream("op_update_wraps_modulo_width", key_n=None)
    ids = s.fresh_ids(2)
    c = s.codes(2)
    c[0][:, 0] = [2**31 - 1, -2**31, 5]        # position int32 extremes
    c[1][:, 0] = [250, 3, 255]                 # scale (8 bits, width 1)
    s.frame(key=True, adds=[(ids, c)])
    new = [x.copy() for x in s.codes_of(ids)]
    new[0][:, 0] = [-2**31, 2**31 - 1, -5]
    new[1][:, 0] = [4, 254, 0]
    s.frame(updates=[(ids[:1], 0x03, s.residuals(ids[:1], 0x03, new=[x[:, :1] for x in new]))])
    s.valid("op", "UPDATE residuals wrap: int32 position 2^31-1 -> -2^31, u8 scale 250 -> 4", sec + [S_CODES])

    s = g.stream("op_long_mixed_chain", key_n=16)
    for k in range(12):
        live = s.live()
        r = s.rng
        pick = r.permutation(len(live))
        dels, ups = live[np.sort(pick[:2])], live[np.sort(pick[2:6])]
        mask = int(r.integers(1, 64))
        s.frame(deletes=[dels], adds=[(s.fresh_ids(2), s.codes(2))], updates=[(ups, mask, s.residuals(ups, mask))],
                digest="auto" if k % 3 else None)
    s.valid("op", "keyframe then 12 deltas mixing deletes, adds and updates (every third without digest)", sec)

    s = g.stream("op_optional_block_kind_128", key_n=4)
    s.frame(adds=[(s.fresh_ids(1), s.codes(1))], ext=[(128, [np.arange(10, dtype=np.uint8)[None, :]])])
    s.valid("op", "optional extension block kind 128 (with a section) is skipped by a 1.0 decoder", sec + [S_VERSION])

    s = g.stream("op_optional_block_kind_255", key_n=4)
    s.frame(ext=[(255, [])])
    s.valid("op", "optional extension block kind 255 without sections is skipped", sec + [S_VERSION])

    def ext_bad_sections(ff, pl):
        ff.sections.append(SectionDesc(0, 999999, 5, 7, 0xFF, 5))
        ff.blocks.append(BlockFields(131, 7, 0xFF, 0xFF, [len(ff.sections) - 1, 4000]))
    s = g.stream("op_optional_block_sections_not_decoded", key_n=3)
    s.add_frame(1, tweak=ext_bad_sections)
    s.valid("op", "optional block kind 131 referencing an undecodable section and index 4000: skipped unread",
            sec + [S_VERSION])

    s = g.stream("op_optional_block_count_not_limited", key_n=3, limits={"max_ids_per_frame": 4})
    s.add_frame(2, tweak=lambda ff, pl: ff.blocks.append(BlockFields(250, 2**32 - 1, 0, 0, [])))
    s.valid("op", "optional block kind 250 with count 2^32-1 does not count toward max_ids_per_frame (4)",
            sec + [S_VERSION, S_LIMITS])

    s = g.stream("op_optional_block_between", key_n=4)
    ids = s.live()[:2]
    s.frame(adds=[(s.fresh_ids(2), s.codes(2))], updates=[(ids, 0x01, s.residuals(ids, 0x01))],
            ext=[(200, [np.arange(6, dtype=np.uint16)[None, :]])], order=lambda bl: [bl[0], bl[2], bl[1]])
    s.valid("op", "optional block kind 200 placed between the ADD and UPDATE blocks is skipped", sec + [S_VERSION])


def gen_masks(g: Gen) -> None:
    hf = hf_preset("compact", 3)
    for mask in range(1, 64):
        s = g.stream(f"mask_sh3_{mask:02x}", hf=hf, key_n=3)
        ids = s.live()[[0, 2]]
        s.frame(updates=[(ids, mask, s.residuals(ids, mask))])
        names = "+".join(n for a, n in enumerate(("position", "scale", "rotation", "opacity", "sh_dc", "sh_rest"))
                         if mask >> a & 1)
        s.valid("update_mask", f"SH degree 3 UPDATE with mask {mask:#04x} ({names})", [S_MODEL, S_OPS])
    for mask in (0x01, 0x10, 0x1F):
        s = g.stream(f"mask_sh0_{mask:02x}", hf=hf_preset("compact", 0), key_n=3)
        ids = s.live()[[1]]
        s.frame(updates=[(ids, mask, s.residuals(ids, mask))])
        s.valid("update_mask", f"SH degree 0 (no SH_REST) UPDATE with mask {mask:#04x}", [S_MODEL, S_OPS])


def _encoder_stream(g: Gen, vid: str, profile_name: str, d: int, n: int, seed: int, frames: int = 4) -> Stream:
    """Deltas made by the codec's Encoder from float Gaussians (its quantization and closed loop).

    They are serialized here with fixed section choices rather than taken as the Encoder's bytes, so
    the vectors do not change when the encoder's filter or compression heuristics are tuned. Each
    frame carries the Encoder's digest, which the reference model must reproduce.
    """
    profile = Profile.preset(profile_name, d, Grid(*G))
    hf = HeaderFields.of(profile)
    enc = Encoder(profile, generator="gsd-conformance")
    s = Stream(g, vid, hf)
    rng = np.random.default_rng(seed)
    k = (d + 1) ** 2 - 1

    def gaussians(m):
        return Gaussians(rng.uniform(-6, 6, (m, 3)), rng.normal(-4, 0.5, (m, 3)), rng.normal(size=(m, 4)),
                         rng.normal(size=m), rng.normal(scale=0.6, size=(m, 3)), rng.normal(scale=0.15, size=(m, 3 * k)))

    def push(delta: Delta):
        enc.encode_delta(delta)  # advances the closed-loop state and sets delta.digest
        dg = delta.digest
        s.frame(key=delta.keyframe, seq=delta.seq, base=delta.base_seq, digest=(dg.count, dg.lane0, dg.lane1),
                **delta_kwargs(delta))

    g0 = gaussians(n)
    ids = enc.assign_ids(g0.positions)
    push(enc.make_delta(add=(ids, g0), keyframe=True))
    if frames > 1:
        sub = np.sort(rng.choice(n, n // 3, replace=False))
        moved = g0.take(sub)
        moved = Gaussians(moved.positions + rng.normal(scale=0.3, size=moved.positions.shape), moved.scales + 0.2,
                          moved.rotations[:, [1, 0, 3, 2]], -moved.opacities, moved.sh_dc * 0.5, moved.sh_rest * -1)
        push(enc.make_delta(update=(ids[sub], moved)))
    if frames > 2:
        g1 = gaussians(3)
        push(enc.make_delta(add=(enc.assign_ids(g1.positions), g1), delete=ids[:2]))
    if frames > 3:
        live = s.live()
        cell = int(live[len(live) // 2]) >> (8 + 3)
        push(enc.make_delta(delete_ranges=[[int(live[-2]), int(live[-1])]], delete_cells={1: [cell]}))
    return s


def ref_from_delta(d: Delta, L: Layout) -> RefFrame:
    kw = delta_kwargs(d)
    return RefFrame(d.seq, d.base_seq, d.keyframe,
                    adds=[[(int(i), per_gaussian(c, j)) for j, i in enumerate(ids)] for ids, c in kw["adds"]],
                    updates=[[(int(i), m, per_gaussian(r, j)) for j, i in enumerate(ids)] for ids, m, r in kw["updates"]],
                    delete_ids=[[int(i) for i in ids] for ids in kw["deletes"]],
                    ranges=[(int(a), int(b)) for rs in kw["ranges"] for a, b in rs],
                    cells=[(lv, int(c)) for lv, cs in kw["cells"] for c in cs],
                    digest=None if d.digest is None else (d.digest.count, d.digest.lane0, d.digest.lane1))


def delta_kwargs(d: Delta) -> dict:
    """A codec Delta as Stream.frame() block arguments (one block per kind, UPDATE grouped by mask)."""
    kw = {"adds": [], "updates": [], "deletes": [], "ranges": [], "cells": []}
    if len(d.add_ids):
        kw["adds"].append((d.add_ids, [d.add[a] for a in ATTRS]))
    for m in np.unique(d.update_mask):
        rows = np.flatnonzero(d.update_mask == m)
        kw["updates"].append((d.update_ids[rows], int(m), [d.update[a][:, rows] for a in ATTRS]))
    if len(d.delete_ids):
        kw["deletes"].append(d.delete_ids)
    if len(d.delete_ranges):
        kw["ranges"].append([(int(a), int(b)) for a, b in d.delete_ranges])
    for lv in sorted(d.delete_cells):
        if len(d.delete_cells[lv]):
            kw["cells"].append((lv, [int(c) for c in d.delete_cells[lv]]))
    return kw


def gen_profiles(g: Gen) -> None:
    for i, name in enumerate(("lossless", "high", "compact")):
        for d in range(4):
            s = _encoder_stream(g, f"profile_{name}_sh{d}", name, d, 12, 100 + 10 * i + d)
            s.valid("profile", f"{name} profile, SH degree {d}: Encoder output (keyframe, update, add+delete, "
                               "range+cell delete)", [S_LOSSLESS if name == "lossless" else S_QUANT, S_PRESETS, S_CODES, S_APPLY])
    s = _encoder_stream(g, "profile_compact_sh3_large", "compact", 3, 3000, 7, frames=2)
    s.valid("profile", "3000-Gaussian compact SH3 keyframe and a 1000-Gaussian update from the Encoder",
            [S_QUANT, S_SECTIONS], state=False)

    # lossless special float values: -0.0, subnormals, extremes all survive bit-exactly
    s = g.stream("profile_lossless_special_floats", hf=hf_preset("lossless", 1), key_n=None)
    ids = s.fresh_ids(4)
    c = s.codes(4)
    specials = np.array([-0.0, 1e-45, -1.17549435e-38, 3.4028235e38, -3.4028235e38, 1.0, 0.0, 2.0**-149],
                        np.float32).view(np.uint32)
    for a in range(6):
        c[a][:] = specials[np.arange(c[a].size) % len(specials)].reshape(c[a].shape)
    s.frame(key=True, adds=[(ids, c)])
    s.valid("profile", "lossless profile keeps -0.0, subnormals and +-FLT_MAX bit-exactly", [S_LOSSLESS])

    cases = [
        ("profile_custom_widest", QuantFields(24, 16, -20.0, 8.0, 16, 16, 16, -8.0, 8.0, (16, 16, 16), (4.0, 3.0, 2.0)),
         ((-8.0, -8.0, -8.0), 1.0, 6, 8), "the widest bit counts (position 24, others 16: width-2 codes)"),
        ("profile_custom_narrowest", QuantFields(1, 1, -1.0, 1.0, 2, 1, 1, -1.0, 1.0, (2, 2, 2), (1.0, 1.0, 1.0)),
         G, "the narrowest bit counts (1 bit, rotation and SH_REST 2)"),
        ("profile_custom_mixed_rest", QuantFields(8, 9, -16.0, 6.0, 10, 7, 11, -4.0, 4.0, (16, 2, 9), (2.0, 1.0, 0.5)),
         G, "SH_REST bits (16, 2, 9): width 2 for all, per-degree code limits 32767, 1, 255"),
    ]
    for vid, q, grid, what in cases:
        s = g.stream(vid, hf=hf_quant(q, 3, grid), key_n=5)
        ids = s.live()[[0, 3]]
        s.frame(updates=[(ids, 0x3F, s.residuals(ids, 0x3F))])
        s.valid("profile", f"custom quantization with {what}", [S_QUANT, S_QDOMAIN, S_CODES])


def gen_ids(g: Gen) -> None:
    sec = [S_IDS, S_OPS]
    s = g.stream("ids_range_full_space", key_n=8)
    s.frame(ranges=[[(0, s.L.id_limit - 1)]])
    s.valid("ids", "one range [0, 2^(3B+S)-1] deletes every live Gaussian", sec)

    s = g.stream("ids_ranges_overlapping_unsorted", key_n=12)
    live = s.live()
    s.frame(ranges=[[(int(live[8]), int(live[10])), (int(live[1]), int(live[4])), (int(live[3]), int(live[6]))]])
    s.valid("ids", "overlapping DELETE_RANGES given out of order (negative deltas through ZIGZAG)", sec + [S_SECTIONS])

    s = g.stream("ids_range_between_live", key_n=6)
    live = s.live()
    s.frame(ranges=[[(int(live[2]) + 1, int(live[3]) - 1)]])
    s.valid("ids", "a range strictly between two live ids deletes nothing", sec)

    # cells at every level of a B=4 grid
    for level in (0, 1, 2, 3, 4):
        s = g.stream(f"ids_cells_level_{level}", key_n=None)
        ids = s.fresh_ids(24)
        s.frame(key=True, adds=[(ids, s.codes(24))])
        shift = 8 + 3 * level
        cs = sorted({int(i) >> shift for i in ids[[0, 5, 11]]})
        s.frame(cells=[(level, cs)])
        s.valid("ids", f"DELETE_CELLS at octree level {level} of a cell_bits=4 grid"
                       + (" (the single root cell: deletes all)" if level == 4 else ""), sec)

    s = g.stream("ids_cells_several_levels", key_n=None)
    ids = s.fresh_ids(30)
    s.frame(key=True, adds=[(ids, s.codes(30))])
    s.frame(cells=[(0, [int(ids[0]) >> 8]), (1, sorted({int(ids[10]) >> 11, int(ids[20]) >> 11})),
                   (3, [int(ids[29]) >> 17])])
    s.valid("ids", "DELETE_CELLS blocks at levels 0, 1 and 3 in one frame", sec)

    s = g.stream("ids_cells_same_level_twice", key_n=None)
    ids = s.fresh_ids(20)
    s.frame(key=True, adds=[(ids, s.codes(20))])
    s.frame(cells=[(1, [int(ids[0]) >> 11]), (1, sorted({int(ids[0]) >> 11, int(ids[7]) >> 11}))])
    s.valid("ids", "two DELETE_CELLS blocks of the same level with overlapping cells", sec + [S_OCTREE])

    s = g.stream("ids_extremes", key_n=None)
    ids = np.array([0, 1, s.L.id_limit - 2, s.L.id_limit - 1], np.uint64)
    s.frame(key=True, adds=[(ids, s.codes(4))])
    s.frame(updates=[(ids[[0, 3]], 0x08, s.residuals(ids[[0, 3]], 0x08))])
    s.frame(deletes=[ids[[3]]], cells=[(0, [0])])
    s.valid("ids", "ids 0, 1, 2^20-2 and 2^20-1 (the largest valid id)", sec)

    s = g.stream("ids_63_bit", hf=hf_preset("compact", 1, G63), key_n=None)
    top = 1 << 63
    ids = np.array(sorted({top - 1, top - 2, top - 9, (top >> 1) + 12345, 2**53 + 1, 2**53, 2**32 + 7}), np.uint64)
    s.frame(key=True, adds=[(ids, s.codes(len(ids)))])
    s.frame(updates=[(ids[[0, 4, 6]], 0x3F, s.residuals(ids[[0, 4, 6]], 0x3F))])
    s.frame(ranges=[[(2**53, 2**53)]], cells=[(0, [(top - 9) >> 3])])
    s.frame(deletes=[ids[[0]]], cells=[(20, [0])])
    s.valid("ids", "63-bit ids (cell_bits 20, slot_bits 3) above 2^53 and up to 2^63-1; cell deletes at level 0 "
                   "and 20", sec)

    s = g.stream("ids_slot_bits_0", hf=hf_preset("compact", 1, ((-8.0, -8.0, -8.0), 1.0, 4, 0)), key_n=None)
    ids = np.array([0, 7, 100, 4095], np.uint64)
    s.frame(key=True, adds=[(ids, s.codes(4))])
    s.frame(cells=[(1, [100 >> 3])], deletes=[ids[[0]]])
    s.valid("ids", "slot_bits 0: an id is just the Morton cell code", sec)

    s = g.stream("ids_slot_bits_32", hf=hf_preset("compact", 1, ((-8.0, -8.0, -8.0), 1.0, 10, 32)), key_n=None)
    ids = np.array([5, 2**32 - 1, 2**32, 2**62 - 1], np.uint64)
    s.frame(key=True, adds=[(ids, s.codes(4))])
    s.frame(cells=[(0, [0])], updates=[(ids[[3]], 0x01, s.residuals(ids[[3]], 0x01))])
    s.valid("ids", "slot_bits 32, cell_bits 10 (62-bit ids); a level-0 cell holds 2^32 ids", sec)


def gen_keyframes(g: Gen) -> None:
    sec = [S_KEYFRAME, S_APPLY, S_SEQ]
    s = g.stream("key_mid_stream", key_n=6)
    ids = s.live()[:3]
    s.frame(updates=[(ids, 0x01, s.residuals(ids, 0x01))])
    keep = s.live()[[0, 1]]
    s.frame(key=True, adds=[(np.sort(np.concatenate([keep, s.fresh_ids(3)])), s.codes(5))], seq=s.seq + 1)
    ids = s.live()[[1, 2]]
    s.frame(deletes=[s.live()[[0]]], updates=[(ids, 0x10, s.residuals(ids, 0x10))])
    s.valid("keyframe", "keyframe in mid-stream replaces the state (2 ids reused with new codes), then deltas", sec)

    s = g.stream("key_with_range_and_cell_deletes", key_n=6)
    s.frame(key=True, adds=[(s.fresh_ids(3), s.codes(3))], ranges=[[(0, s.L.id_limit - 1)]], cells=[(0, [1, 2])])
    s.valid("keyframe", "keyframe carrying DELETE_RANGES and DELETE_CELLS: they act on the empty state (no-ops)", sec)

    s = g.stream("key_seq_jump", key_n=4)
    s.add_frame(1)
    s.frame(key=True, adds=[(s.fresh_ids(2), s.codes(2))], seq=50, base=17)
    s.add_frame(1)
    s.valid("keyframe", "keyframe jumps seq 2 -> 50 (its base_seq 17 is ignored); the next delta is based on 50", sec)

    s = g.stream("key_empty", key_n=6)
    s.frame(key=True)
    s.valid("keyframe", "keyframe without blocks empties the state (digest 0:00000000:00000000)", sec + [S_DIGEST])

    s = g.stream("key_resync_same_state", key_n=7)
    ids = s.live()
    s.frame(key=True, adds=[(ids, s.codes_of(ids))])
    s.valid("keyframe", "resync keyframe re-ADDing the current state: digest unchanged", sec + [S_DIGEST])

    s = g.stream("key_after_deltas", key_n=None)
    s.add_frame(3)
    s.add_frame(2)
    s.frame(key=True, adds=[(s.fresh_ids(2), s.codes(2))])
    s.valid("keyframe", "two plain deltas from the empty state, then a keyframe", sec)


def gen_compose(g: Gen) -> None:
    hf = hf_preset("compact", 1)
    prof = codec_profile(hf)
    sec = [S_COMPOSE, S_OPS]

    def delta(s: Stream, model: RefState, seq, base, key=False, adds=(), updates=(), deletes=(), ranges=(), cells=()):
        d = Delta.empty_like(prof, seq=seq, base_seq=base, keyframe=key)
        if adds:
            ids, c = adds
            d.add_ids = np.asarray(ids, np.uint64)
            d.add = {a: c[int(a)] for a in ATTRS}
        if updates:
            ids, mask, r = updates
            d.update_ids, d.update_mask = np.asarray(ids, np.uint64), np.full(len(ids), mask, np.uint8)
            d.update = {a: r[int(a)] if mask >> int(a) & 1 else np.zeros_like(r[int(a)]) for a in ATTRS}
        if len(deletes):
            d.delete_ids = np.asarray(deletes, np.uint64)
        if ranges:
            d.delete_ranges = np.array(ranges, np.uint64).reshape(-1, 2)
        if cells:
            d.delete_cells = {lv: np.array(cs, np.uint64) for lv, cs in cells}
        model.apply(ref_from_delta(d, s.L))
        return d

    def residuals_on(s: Stream, model: RefState, ids, mask):
        saved = s.model
        s.model = model
        try:
            return s.residuals(ids, mask)
        finally:
            s.model = saved

    def scenario(vid, desc, build, n=6):
        s = g.stream(vid, hf=hf, key_n=n)
        m = s._copy_model()
        ds = build(s, m)
        c = ds[0]
        for d in ds[1:]:
            c = compose(c, d, prof)
        kw = delta_kwargs(c)
        s.frame(key=c.keyframe, seq=c.seq, base=c.base_seq, digest=m.digest(), **kw)
        s.valid("compose", desc, sec)

    def add_update(s, m):
        x = s.fresh_ids(2)
        d1 = delta(s, m, s.seq + 1, s.seq, adds=(x, s.codes(2)))
        d2 = delta(s, m, s.seq + 2, s.seq + 1, updates=(x[:1], 0x3F, residuals_on(s, m, x[:1], 0x3F)))
        return [d1, d2]
    scenario("compose_add_then_update", "compose(ADD x, UPDATE x) = ADD x with the residual folded in", add_update)

    def add_delete(kind):
        def b(s, m):
            x = s.fresh_ids(2)
            d1 = delta(s, m, s.seq + 1, s.seq, adds=(x, s.codes(2)))
            kw = {"ids": {"deletes": x[:1]}, "range": {"ranges": [(int(x[0]), int(x[0]))]},
                  "cell": {"cells": [(0, [int(x[0]) >> 8])]}}[kind]
            return [d1, delta(s, m, s.seq + 2, s.seq + 1, **kw)]
        return b
    for kind in ("ids", "range", "cell"):
        scenario(f"compose_add_then_delete_{kind}", f"compose(ADD x, DELETE x by {kind}): x never appears",
                 add_delete(kind))

    def upd_upd(s, m):
        x = s.live()[:3]
        d1 = delta(s, m, s.seq + 1, s.seq, updates=(x, 0x05, residuals_on(s, m, x, 0x05)))
        d2 = delta(s, m, s.seq + 2, s.seq + 1, updates=(x[1:], 0x0C, residuals_on(s, m, x[1:], 0x0C)))
        return [d1, d2]
    scenario("compose_update_then_update", "compose(UPDATE mask 0x05, UPDATE mask 0x0C): residuals add, masks OR",
             upd_upd)

    def upd_del(s, m):
        x = s.live()[:2]
        d1 = delta(s, m, s.seq + 1, s.seq, updates=(x, 0x3F, residuals_on(s, m, x, 0x3F)))
        return [d1, delta(s, m, s.seq + 2, s.seq + 1, deletes=x[:1])]
    scenario("compose_update_then_delete", "compose(UPDATE x, DELETE x) = DELETE x", upd_del)

    def del_add(s, m):
        x = s.live()[:2]
        d1 = delta(s, m, s.seq + 1, s.seq, deletes=x)
        return [d1, delta(s, m, s.seq + 2, s.seq + 1, adds=(x[:1], s.codes(1)))]
    scenario("compose_delete_then_add", "compose(DELETE x, ADD x) = DELETE x and ADD x (replace)", del_add)

    def key_first(s, m):
        x = s.fresh_ids(4)
        d1 = delta(s, m, s.seq + 1, s.seq, key=True, adds=(x, s.codes(4)))
        d2 = delta(s, m, s.seq + 2, s.seq + 1, updates=(x[:2], 0x02, residuals_on(s, m, x[:2], 0x02)),
                   deletes=x[3:])
        return [d1, d2]
    scenario("compose_keyframe_then_delta", "compose(keyframe, delta) is a keyframe with the delta folded in",
             key_first)

    def key_second(s, m):
        x = s.live()[:1]
        d1 = delta(s, m, s.seq + 1, s.seq, updates=(x, 0x01, residuals_on(s, m, x, 0x01)))
        y = s.fresh_ids(3)
        return [d1, delta(s, m, s.seq + 2, s.seq + 1, key=True, adds=(y, s.codes(3)))]
    scenario("compose_delta_then_keyframe", "compose(delta, keyframe) = the keyframe", key_second)

    def chain(s, m):
        ds = []
        for k in range(5):
            live = np.array(sorted(m.g), np.uint64)
            new = s.fresh_ids(1)
            up = live[[k % len(live)]]
            ds.append(delta(s, m, s.seq + 1 + k, s.seq + k, adds=(new, s.codes(1)),
                            updates=(up, 0x11, residuals_on(s, m, up, 0x11)), deletes=live[[(k + 2) % len(live)]]))
        return ds
    scenario("compose_chain_of_five", "five deltas composed left to right into one", chain, n=8)

    # skipped frames in a file: seq gap linked by base_seq
    s = g.stream("compose_skip_frames_in_stream", hf=hf, key_n=5)
    m = s._copy_model()
    x = s.live()
    d1 = delta(s, m, s.seq + 1, s.seq, updates=(x[:2], 0x01, residuals_on(s, m, x[:2], 0x01)))
    d2 = delta(s, m, s.seq + 2, s.seq + 1, adds=(s.fresh_ids(2), s.codes(2)), deletes=x[4:])
    c = compose(d1, d2, prof)
    s.frame(seq=c.seq, base=c.base_seq, digest=m.digest(), **delta_kwargs(c))
    s.add_frame(1)
    s.valid("compose", "frames 2 and 3 sent as one composed frame (seq 3, base 1), then seq 4: a seq gap linked by "
                       "base_seq", sec + [S_APPLY])


def gen_empty(g: Gen) -> None:
    sec = [S_OPS, S_RECORDS]
    s = g.stream("empty_header_only", key_n=None)
    s.valid("empty", "a header and no frames", sec)

    s = g.stream("empty_frames", key_n=4)
    s.frame()
    s.frame(digest=None)
    s.valid("empty", "frames without blocks, with and without a digest", sec)

    s = g.stream("empty_many_frames", key_n=3)
    for _ in range(10):
        s.frame()
    s.valid("empty", "ten empty frames in a row", sec)

    s = g.stream("empty_first_frame", key_n=None)
    s.frame()
    s.valid("empty", "the first frame is an empty delta on the empty state (digest 0:00000000:00000000)",
            sec + [S_DIGEST])

    s = g.stream("empty_blocks_count_zero", key_n=3)
    z = np.zeros(0, np.uint64)
    s.frame(adds=[(z, s.codes(0))], deletes=[z], updates=[(z, 0x01, s.codes(0))], ranges=[[]], cells=[(0, [])])
    s.valid("empty", "ADD, UPDATE, DELETE_IDS, DELETE_RANGES and DELETE_CELLS blocks of count 0 (empty sections)",
            sec + [S_SECTIONS])

    s = g.stream("empty_delete_everything", key_n=5)
    s.frame(deletes=[s.live()])
    s.frame(adds=[(s.fresh_ids(1), s.codes(1))])
    s.valid("empty", "delete every Gaussian (digest back to 0:00000000:00000000), then add one", sec + [S_DIGEST])


def gen_replace(g: Gen) -> None:
    sec = [S_APPLY, S_IDRULES]
    s = g.stream("replace_delete_ids_then_add", key_n=5)
    x = s.live()[[1, 3]]
    s.frame(deletes=[x], adds=[(x, s.codes(2))])
    s.valid("replace", "DELETE_IDS x and ADD x in one frame replaces x", sec)

    s = g.stream("replace_range_then_add", key_n=5)
    live = s.live()
    s.frame(ranges=[[(int(live[0]), int(live[2]))]], adds=[(live[[1]], s.codes(1))])
    s.valid("replace", "a DELETE_RANGES covering x and ADD x in one frame", sec)

    s = g.stream("replace_cell_then_add", key_n=5)
    live = s.live()
    s.frame(cells=[(0, [int(live[2]) >> 8])], adds=[(live[[2]], s.codes(1))])
    s.valid("replace", "a DELETE_CELLS covering x and ADD x in one frame", sec)

    s = g.stream("replace_then_update_next_frame", key_n=4)
    x = s.live()[[0]]
    s.frame(deletes=[x], adds=[(x, s.codes(1))])
    s.frame(updates=[(x, 0x3F, s.residuals(x, 0x3F))])
    s.valid("replace", "replace x, then UPDATE x against its new codes", sec)


def gen_encoding(g: Gen) -> None:
    sec = [S_SECTIONS]
    for f in range(8):
        s = g.stream(f"enc_filters_{f}", key_n=None, hf=hf_preset("high", 1))
        e = Enc(ids=f, ranges=f, cells=f, attr=lambda a, w, r, f=f: f)
        s.frame(key=True, adds=[(s.fresh_ids(40), s.codes(40))], enc=e)
        ids = s.live()[2::3]
        live = s.live()
        s.frame(updates=[(ids, 0x3F, s.residuals(ids, 0x3F))], ranges=[[(int(live[-1]), int(live[-1])),
                (int(live[1]), int(live[1]))]], enc=e)
        names = "+".join(n for b, n in ((1, "DELTA"), (2, "ZIGZAG"), (4, "SHUFFLE")) if f & b) or "none"
        s.valid("encoding", f"every section with filters {f} ({names})", sec, state=False)

    s = g.stream("enc_uncompressed", key_n=None, hf=hf_preset("compact", 2))
    s.frame(key=True, adds=[(s.fresh_ids(50), s.codes(50))], enc=Enc(compression="none"))
    s.valid("encoding", "all sections stored without compression", sec, state=False)

    s = g.stream("enc_zstd_everywhere", key_n=None)
    e = Enc(compression="zstd")
    s.frame(key=True, adds=[(s.fresh_ids(3), s.codes(3))], enc=e)
    s.frame(deletes=[s.live()[:1]], enc=e)
    s.valid("encoding", "zstd even for tiny sections where it is larger than the raw bytes", sec)

    s = g.stream("enc_zstd_checksum_flag", key_n=None, hf=hf_preset("compact", 3))
    s.frame(key=True, adds=[(s.fresh_ids(30), s.codes(30))],
            enc=Enc(compression="zstd", zstd_args={"write_checksum": True}))
    s.valid("encoding", "zstd frames carrying their own content checksum", sec, state=False)

    s = g.stream("enc_zstd_level_19", key_n=None, hf=hf_preset("high", 2))
    s.frame(key=True, adds=[(s.fresh_ids(30), s.codes(30))], enc=Enc(compression="zstd", level=19))
    s.valid("encoding", "zstd frames from compression level 19 (long matches)", sec, state=False)

    def reverse_payload(ff, pl):
        # Same sections, stored in the payload back to front with 3 bytes of padding before each.
        parts = pl.parts
        new, off, descs = [], 0, list(ff.sections)
        for i in reversed(range(len(parts))):
            new.append(b"\xAA\xBB\xCC" + parts[i])
            descs[i] = replace(descs[i], offset=off + 3)
            off += 3 + len(parts[i])
        pl.parts, ff.sections = new, descs

    s = g.stream("enc_payload_reordered_with_gaps", key_n=None)
    s.frame(key=True, adds=[(s.fresh_ids(8), s.codes(8))], tweak=reverse_payload)
    s.valid("encoding", "sections stored in reverse order with unused bytes between them", sec)

    def shuffle_table(ff, pl):
        n = len(ff.sections)
        perm = list(reversed(range(n)))
        ff.sections = [ff.sections[perm[i]] for i in range(n)]
        inv = {old: new for new, old in enumerate(perm)}
        for b in ff.blocks:
            b.sections = [inv[k] for k in b.sections]

    s = g.stream("enc_section_table_permuted", key_n=4)
    ids = s.live()[:2]
    s.frame(adds=[(s.fresh_ids(2), s.codes(2))], updates=[(ids, 0x21, s.residuals(ids, 0x21))], tweak=shuffle_table)
    s.valid("encoding", "blocks reference sections in descending table order", sec + [S_OPS])

    s = g.stream("enc_unknown_frame_field", key_n=4)
    s.frame(adds=[(s.fresh_ids(1), s.codes(1))], extra_field=0xC0FFEE)
    s.valid("encoding", "frame metadata with a field unknown to 1.0 (a later minor's optional field) is ignored",
            [S_SCHEMA, S_VERSION])

    hf = hf_preset("compact", 1, extra_field=77)
    s = g.stream("enc_unknown_header_field", hf=hf, key_n=3)
    s.valid("encoding", "stream header with a field unknown to 1.0 is ignored", [S_SCHEMA, S_VERSION])

    for minor in (1, 255):
        hf = hf_preset("compact", 1)
        s = g.stream(f"enc_minor_version_{minor}", hf=hf, header=craft.header(hf, minor=minor), key_n=3)
        s.valid("encoding", f"header version 1.{minor}: any minor version is accepted", [S_VERSION])

    s = g.stream("enc_reserved_flag_bits", key_n=None)
    s.frame(key=True, adds=[(s.fresh_ids(3), s.codes(3))], flags=0xFFFFFFFF)
    s.frame(adds=[(s.fresh_ids(1), s.codes(1))], flags=0xFFFFFFFE)
    s.valid("encoding", "reserved frame flag bits set: ignored (bit 0 alone decides keyframe)", [S_FRAME, S_VERSION])

    hf = replace(hf_preset("compact", 1), profile_name="\u00e9t\u00e9 \u2603", generator="")
    s = g.stream("enc_informative_strings", hf=hf, key_n=2)
    s.valid("encoding", "profile_name with non-ASCII UTF-8 and an empty generator string (informative only)",
            [S_HEADER])

    # SPEC 4.4: sections MAY share bytes and be referenced by several blocks; unreferenced ones are not decoded
    s = g.stream("enc_section_shared_by_two_blocks", key_n=5)
    x = s.live()[[1, 3]]
    s.frame(deletes=[x], adds=[(x, s.codes(2))], tweak=lambda ff, pl: setattr(ff.blocks[0], "sections",
                                                                                [ff.blocks[1].sections[0]]))
    s.valid("encoding", "DELETE_IDS and ADD of the same ids reference one ids section", sec + [S_OPS])

    s = g.stream("enc_sections_share_bytes", key_n=None)
    c = s.codes(4)
    c[4][:] = c[1]
    s.frame(key=True, adds=[(s.fresh_ids(4), c)], enc=Enc(compression="none"),
            tweak=lambda ff, pl: ff.sections.__setitem__(5, ff.sections[2]))
    s.valid("encoding", "the SH_DC and SCALE descriptors point at the same payload bytes", sec)

    s = g.stream("enc_unreferenced_section_not_decoded", key_n=3)
    s.add_frame(1, tweak=lambda ff, pl: ff.sections.append(SectionDesc(0xFFFFFF00, 64, 64, 9, 0xF8, 3)))
    s.valid("encoding", "a descriptor no block references (bad offset, compression 9, filter bits 3..7, width 3) "
                        "is not decoded", sec)

    hf = hf_preset("compact", 1)
    s = g.stream("enc_reserved_bytes_nonzero", hf=hf, header=craft.header(hf, reserved=0xBEEF), key_n=None)
    s.add_frame(3, key=True, tweak=lambda ff, pl: setattr(ff, "sections", [
        (d.offset, d.stored_size, d.raw_size, d.compression, d.filters, d.width, 0xFF) for d in ff.sections]))
    s.valid("encoding", "header reserved u16 0xBEEF and Section.reserved 0xFF: readers ignore them",
            [S_HEADER_REC, S_SECTIONS, S_VERSION])

    s = g.stream("enc_digest_omitted", key_n=None)
    s.add_frame(3, key=True, digest=None)
    s.add_frame(2, digest=None)
    s.add_frame(1)
    s.valid("encoding", "frames without the optional digest, then one with it", [S_DIGEST])


def gen_limits_valid_and_invalid(g: Gen) -> None:
    sec = [S_LIMITS]

    def pair(name, desc_at, desc_past, build):
        """build(stream, past: bool) -> None; the limits live on the stream."""
        for past in (False, True):
            s = build(past)
            if past:
                s.invalid("limits", desc_past, sec)
            else:
                s.valid("limits", desc_at, sec)

    def ids_limit(past):
        s = g.stream(f"lim_ids_per_frame_{'past' if past else 'at'}", limits={"max_ids_per_frame": 16}, key_n=10)
        live = s.live()
        up = live[2:8 + past]
        s.frame(deletes=[live[:2]], adds=[(s.fresh_ids(8), s.codes(8))], updates=[(up, 0x01, s.residuals(up, 0x01))],
                error="LIMIT_EXCEEDED" if past else None, model=False)
        return s
    pair("ids", "max_ids_per_frame 16: 2 deletes + 8 adds + 6 updates = 16", "17 ids in a frame, limit 16", ids_limit)

    def ranges_limit(past):
        s = g.stream(f"lim_ranges_per_frame_{'past' if past else 'at'}", limits={"max_ranges_per_frame": 4}, key_n=6)
        rs = [(1, 2), (10, 20)] + ([(30, 40)] if past else [])
        s.frame(ranges=[rs], cells=[(0, [100, 200])], error="LIMIT_EXCEEDED" if past else None, model=False)
        return s
    pair("ranges", "max_ranges_per_frame 4: 2 ranges + 2 cells", "3 ranges + 2 cells, limit 4", ranges_limit)

    def blocks_limit(past):
        s = g.stream(f"lim_blocks_{'past' if past else 'at'}", limits={"max_blocks": 4}, key_n=6)
        live = s.live()
        s.frame(deletes=[live[:1]], ranges=[[(1, 1)]], adds=[(s.fresh_ids(1), s.codes(1))],
                updates=[(live[1:2], 0x01, s.residuals(live[1:2], 0x01))], cells=[(0, [5])] if past else [],
                error="LIMIT_EXCEEDED" if past else None, model=False)
        return s
    pair("blocks", "max_blocks 4: a frame with 4 blocks", "5 blocks, limit 4", blocks_limit)

    def sections_limit(past):
        s = g.stream(f"lim_sections_{'past' if past else 'at'}", limits={"max_sections": 8}, key_n=4)
        s.frame(deletes=[s.live()[:1]], adds=[(s.fresh_ids(2), s.codes(2))], ranges=[[(1, 1)]] if past else [],
                error="LIMIT_EXCEEDED" if past else None, model=False)
        return s
    pair("sections", "max_sections 8: DELETE_IDS (1) + ADD at SH 1 (7) = 8 sections",
         "9 sections, limit 8", sections_limit)

    def frame_bytes(past):
        s = g.stream(f"lim_frame_bytes_{'past' if past else 'at'}", key_n=2)
        rec = s.add_frame(6, error="LIMIT_EXCEEDED" if past else None, model=False) if past else s.add_frame(6)
        s.limits = {"max_frame_bytes": len(rec) - past}
        return s
    pair("frame_bytes", "max_frame_bytes equal to the largest frame's frame_len",
         "max_frame_bytes one below the second frame's frame_len", frame_bytes)

    def header_bytes(past):
        hf = hf_preset("compact", 1)
        body = craft.header_body(hf)
        lim = {"max_header_bytes": len(body) - past}
        if past:
            g.header_invalid("lim_header_bytes_past", "limits", "max_header_bytes one below the header's body_len",
                             sec + [S_HEADER_REC], craft.header(hf), "LIMIT_EXCEEDED", lim)
            return None
        s = g.stream("lim_header_bytes_at", hf=hf, limits=lim, key_n=2)
        return s
    s = header_bytes(False)
    s.valid("limits", "max_header_bytes equal to the header's body_len", sec + [S_HEADER_REC])
    header_bytes(True)

    def gaussians(past):
        s = g.stream(f"lim_scene_gaussians_{'past' if past else 'at'}", limits={"max_gaussians": 32}, key_n=30)
        s.add_frame(2 + past, error="LIMIT_EXCEEDED" if past else None)
        return s
    pair("gaussians", "decoder limit max_gaussians 32 reached exactly", "33 live Gaussians, decoder limit 32",
         gaussians)

    def budget(past):
        hf = hf_preset("compact", 1, max_gaussians=20)
        s = g.stream(f"lim_header_budget_{'past' if past else 'at'}", hf=hf, key_n=18)
        live = s.live()
        s.frame(deletes=[live[:1]], adds=[(s.fresh_ids(3 + past), s.codes(3 + past))],
                error="LIMIT_EXCEEDED" if past else None)
        return s
    pair("budget", "header max_gaussians 20 reached exactly (after a delete and adds in one frame)",
         "21 live Gaussians with header max_gaussians 20", budget)

    def keyframe_budget(past):
        hf = hf_preset("compact", 1, max_gaussians=8)
        s = g.stream(f"lim_keyframe_budget_{'past' if past else 'at'}", hf=hf, key_n=8)
        s.frame(key=True, adds=[(s.fresh_ids(8 + past), s.codes(8 + past))], error="LIMIT_EXCEEDED" if past else None)
        return s
    pair("kbudget", "a keyframe replacing 8 Gaussians by 8 under budget 8 (old ones do not count)",
         "a keyframe of 9 Gaussians under budget 8", keyframe_budget)

    def raw_bytes(past):
        s = g.stream(f"lim_frame_raw_bytes_{'past' if past else 'at'}", key_n=1)
        rec = s.add_frame(5, error="LIMIT_EXCEEDED" if past else None, model=False) if past else s.add_frame(5)
        s.limits = {"max_frame_raw_bytes": s.last_raw - past}
        return s
    pair("raw", "max_frame_raw_bytes equal to the sum of the frame's raw_size",
         "sum of raw_size one above max_frame_raw_bytes (checked before decompressing)", raw_bytes)

    # Default limits, claimed by counts. The section is consistent up to the zstd frame header (which
    # declares raw_size); only its blocks are garbage. F10 must be finished before decompressing, so
    # LIMIT_EXCEEDED is the one acceptable answer: DECOMPRESSION_FAILED means the decoder decompressed first.
    def claim(vid, kind, count, comps, desc):
        s = g.stream(vid, key_n=2)
        raw = count * comps * 8
        stored = zstd_header_only(raw) + bytes(range(16))

        def t(ff, pl):
            pl.parts = [stored]
            ff.sections = [SectionDesc(0, len(stored), raw, 1, DELTA | SHUFFLE, 8)]
            ff.blocks = [BlockFields(kind, count, 0, 0, [0])]
        s.frame(tweak=t, error="LIMIT_EXCEEDED", model=False)
        s.invalid("limits", desc, sec + [S_ORDER])
    claim("order_limit_before_decompress_ids", DELETE_IDS, (1 << 24) + 1, 1,
          "DELETE_IDS claiming 2^24+1 ids: zstd header declares the 128 MiB raw_size, blocks are garbage; "
          "LIMIT_EXCEEDED before any decompression")
    claim("order_limit_before_decompress_ranges", DELETE_RANGES, (1 << 20) + 1, 2,
          "DELETE_RANGES claiming 2^20+1 ranges over a zstd header and garbage blocks; LIMIT_EXCEEDED before "
          "any decompression")

    rec_head = struct.pack("<4sII", b"GSDF", (1 << 30) + 1, 8)
    s = g.stream("lim_claim_frame_bytes_default", key_n=2)
    s.raw(rec_head + bytes(40), error="LIMIT_EXCEEDED")
    s.invalid("limits", "frame_len 2^30+1 with 52 bytes present: LIMIT_EXCEEDED (checked before TRUNCATED)",
              sec + [S_FRAME_REC, S_ORDER])

    body = craft.header_body(hf_preset("compact", 1))
    g.header_invalid("lim_claim_header_bytes_default", "limits",
                     "header body_len 65537 with a short body: LIMIT_EXCEEDED (checked before TRUNCATED)",
                     sec + [S_HEADER_REC, S_ORDER], craft.header_record(body, body_len=65537), "LIMIT_EXCEEDED")

    # header parameters exactly at their bounds
    bounds = [
        ("lim_header_max_gaussians_2p24", hf_preset("compact", 1, max_gaussians=1 << 24),
         "header max_gaussians 2^24 (the spec maximum)"),
        ("lim_grid_63_bits", hf_preset("compact", 1, G63), "cell_bits 20 + slot_bits 3: 63-bit ids"),
        ("lim_grid_smallest", hf_preset("compact", 1, ((0.0, 0.0, 0.0), 1.0, 1, 0)), "cell_bits 1, slot_bits 0"),
        ("lim_cell_plus_position_bits_30",
         hf_quant(replace(NARROW, position_bits=10), 1, ((-8.0, -8.0, -8.0), 0.5, 20, 0)),
         "cell_bits 20 + position_bits 10 = 30"),
    ]
    for vid, hf, desc in bounds:
        s = g.stream(vid, hf=hf, key_n=3)
        s.valid("limits", desc, sec + [S_GRID, S_HEADER, S_QDOMAIN])


# ------------------------------------------------------------------------------------------ vectors: invalid
def gen_framing(g: Gen) -> None:
    sec = [S_RECORDS, S_ORDER]
    hdr = craft.header(hf_preset("compact", 1))
    for vid, data, desc in [
        ("trunc_empty_file", b"", "zero-byte file"),
        ("trunc_header_magic", hdr[:2], "file ends inside the header magic"),
        ("trunc_header_prefix", hdr[:9], "file ends inside the 12-byte header prefix"),
        ("trunc_header_body", hdr[:40], "file ends inside the header body"),
        ("trunc_header_crc", hdr[:-2], "file ends inside the header CRC"),
    ]:
        g.header_invalid(vid, "framing", desc, sec, data, "TRUNCATED")

    def trunc(vid, cut, desc, at=1):
        s = g.stream(vid, key_n=3)
        for _ in range(at - 1):
            s.add_frame(1)
        tmp = Stream(g, vid + "/tmp")
        tmp.model = s._copy_model()
        rec = tmp.add_frame(2)
        s.raw(rec[:cut(rec)], error="TRUNCATED")
        s.invalid("framing", desc, sec)
    trunc("trunc_frame_magic", lambda r: 2, "stream ends 2 bytes into a frame magic")
    trunc("trunc_frame_prefix", lambda r: 10, "stream ends inside a frame prefix")
    trunc("trunc_frame_meta", lambda r: 20, "stream ends inside a frame's metadata")
    trunc("trunc_frame_payload", lambda r: len(r) - 12, "stream ends inside a frame's payload")
    trunc("trunc_frame_crc", lambda r: len(r) - 1, "stream ends inside a frame's CRC")
    trunc("trunc_frame_later", lambda r: len(r) // 2, "fourth frame cut in half", at=3)

    s = g.stream("trunc_first_frame", key_n=None)
    tmp = Stream(g, "tmp")
    rec = tmp.add_frame(2, key=True)
    s.raw(rec[:-5], error="TRUNCATED")
    s.invalid("framing", "first frame cut short", sec)

    for vid, magic, desc in [("magic_header_bad", b"GSDX", "header magic GSDX"),
                             ("magic_header_lowercase", b"gsdh", "header magic gsdh"),
                             ("magic_header_is_frame_magic", b"GSDF", "stream starts with a frame magic")]:
        g.header_invalid(vid, "framing", desc, sec, magic + hdr[4:], "BAD_MAGIC")

    s = g.stream("magic_frame_bad", key_n=3)
    s.add_frame(1, record={"magic": b"GSDG"}, error="BAD_MAGIC", model=False)
    s.invalid("framing", "second frame's magic is GSDG", sec)

    s = g.stream("magic_frame_is_header", key_n=3)
    s.raw(hdr, error="BAD_MAGIC")
    s.invalid("framing", "a second stream header where a frame must be", sec)

    s = g.stream("magic_trailing_garbage", key_n=3)
    s.add_frame(1)
    s.raw(b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", error="BAD_MAGIC")
    s.invalid("framing", "16 zero bytes after the last frame", sec)

    s = g.stream("frame_len_below_minimum", key_n=3)
    s.raw(struct.pack("<4sII", b"GSDF", 15, 0) + bytes(3), error="MALFORMED")
    s.invalid("framing", "frame_len 15 (< 16, the smallest record)", sec)

    s = g.stream("frame_len_zero", key_n=3)
    s.raw(struct.pack("<4sII", b"GSDF", 0, 0) + bytes(4), error="MALFORMED")
    s.invalid("framing", "frame_len 0", sec)

    s = g.stream("frame_meta_len_too_big", key_n=3)
    s.add_frame(1, post=lambda r: fix_crc(r[:8] + struct.pack("<I", len(r) - 15) + r[12:]), error="MALFORMED",
                model=False)
    s.invalid("framing", "meta_len = frame_len - 15 (one past the room between prefix and CRC)", sec)

    # check order fixed by the spec
    s = g.stream("order_frame_truncated_before_meta_len", key_n=3)
    s.raw(struct.pack("<4sII", b"GSDF", 400, 999) + bytes(30), error="TRUNCATED")
    s.invalid("framing", "frame_len 400 with 42 bytes present and a bad meta_len: TRUNCATED comes first", sec)

    s = g.stream("order_frame_limit_before_meta_len", key_n=3, limits={"max_frame_bytes": 1000})
    s.raw(struct.pack("<4sII", b"GSDF", 2000, 5000) + bytes(100), error="LIMIT_EXCEEDED")
    s.invalid("framing", "frame_len over max_frame_bytes and a bad meta_len: LIMIT_EXCEEDED comes first",
              sec + [S_LIMITS])

    body = craft.header_body(hf_preset("compact", 1))
    g.header_invalid("order_header_version_before_checksum", "framing",
                     "major version 2 and a wrong CRC: UNSUPPORTED_VERSION comes first", sec + [S_VERSION],
                     craft.header_record(body, major=2, crc=0), "UNSUPPORTED_VERSION")
    g.header_invalid("order_header_truncated_before_checksum", "framing",
                     "header cut inside its body (so no CRC to check): TRUNCATED", sec,
                     craft.header_record(body)[:-6], "TRUNCATED")
    g.header_invalid("order_header_feature_before_params", "framing",
                     "unknown required feature and sh_degree 4: UNSUPPORTED_FEATURE comes first", sec + [S_VERSION],
                     craft.header(replace(hf_preset("compact", 1), required_features=1, sh_degree=4)),
                     "UNSUPPORTED_FEATURE")


def gen_checksum(g: Gen) -> None:
    sec = [S_CRC, S_ORDER]
    hf = hf_preset("compact", 1)
    body = craft.header_body(hf)
    good = craft.header_record(body)
    crc = struct.unpack_from("<I", good, len(good) - 4)[0]
    g.header_invalid("crc_header_value", "checksum", "header CRC off by one", sec,
                     craft.header_record(body, crc=(crc + 1) & 0xFFFFFFFF), "BAD_CHECKSUM")
    bad = bytearray(good)
    bad[12 + len(body) // 2] ^= 0x10
    g.header_invalid("crc_header_body_bit", "checksum", "one bit flipped in the header body", sec, bytes(bad),
                     "BAD_CHECKSUM")
    bad = bytearray(good)
    bad[5] ^= 0x01
    g.header_invalid("crc_header_minor_version_bit", "checksum",
                     "minor version byte changed after the CRC was computed", sec, bytes(bad), "BAD_CHECKSUM")

    cases = [
        ("crc_frame_value_first", 0, lambda r: len(r) - 4, "first frame's CRC field corrupted"),
        ("crc_frame_meta_bit", 1, lambda r: 20, "a bit flipped in the second frame's metadata"),
        ("crc_frame_payload_bit", 1, lambda r: len(r) - 10, "a bit flipped in the second frame's payload"),
        ("crc_frame_meta_len_bit", 1, lambda r: 8, "meta_len changed by one after the CRC was computed"),
        ("crc_frame_last_crc_bit", 3, lambda r: len(r) - 1, "the top bit of the fourth frame's CRC flipped"),
    ]
    for vid, at, off, desc in cases:
        s = g.stream(vid, key_n=None if at == 0 else 3)
        for _ in range(max(0, at - 1)):
            s.add_frame(1)
        s.add_frame(2, key=at == 0, post=flip(off, 7 if vid.endswith("crc_bit") else 0), error="BAD_CHECKSUM",
                    model=False)
        s.invalid("checksum", desc, sec)

    s = g.stream("crc_frame_zeroed", key_n=3)
    s.add_frame(1, record={"crc": 0}, error="BAD_CHECKSUM", model=False)
    s.invalid("checksum", "frame CRC field zero", sec)

    s = g.stream("order_frame_checksum_before_meta", key_n=3)
    s.raw(craft.frame_record(b"\xFF" * 24, b"", crc=0x12345678), error="BAD_CHECKSUM")
    s.invalid("checksum", "unparseable metadata and a wrong CRC: BAD_CHECKSUM comes first", sec)

    s = g.stream("crc_frame_mid_stream", key_n=3)
    for _ in range(3):
        s.add_frame(1)
    s.add_frame(1, post=flip(lambda r: 30, 3), error="BAD_CHECKSUM", model=False)
    s.invalid("checksum", "fifth frame corrupted after four good ones", sec)


def gen_version_feature(g: Gen) -> None:
    body = craft.header_body(hf_preset("compact", 1))
    for major in (0, 2, 255):
        g.header_invalid(f"ver_major_{major}", "version", f"header major version {major}", [S_VERSION, S_HEADER_REC],
                         craft.header_record(body, major=major), "UNSUPPORTED_VERSION")

    for bit in (0, 17, 63):
        g.header_invalid(f"feat_header_bit_{bit}", "feature", f"header required_features bit {bit} (none defined in 1.0)",
                         [S_VERSION, S_HEADER],
                         craft.header(hf_preset("compact", 1, required_features=1 << bit)), "UNSUPPORTED_FEATURE")
    s = g.stream("feat_frame_bit_0_first_frame", key_n=None)
    s.add_frame(2, key=True, features=1, error="UNSUPPORTED_FEATURE", model=False)
    s.invalid("feature", "keyframe with required_features bit 0", [S_VERSION, S_FRAME])
    s = g.stream("feat_frame_bit_63", key_n=3)
    s.add_frame(1)
    s.add_frame(1, features=1 << 63, error="UNSUPPORTED_FEATURE", model=False)
    s.invalid("feature", "third frame with required_features bit 63", [S_VERSION, S_FRAME])

    for kind in (6, 7, 64, 127):
        s = g.stream(f"feat_op_kind_{kind}", key_n=3)
        s.frame(ext=[(kind, [np.arange(4, dtype=np.uint8)[None, :]])], error="UNSUPPORTED_FEATURE", model=False)
        s.invalid("feature", f"op block of unknown required kind {kind}", [S_OPS, S_VERSION])

    for vid, which, bits, desc in [
        ("feat_filter_bit_3_ids", 0, 8, "ADD ids section with filter bit 3"),
        ("feat_filter_bit_7_attr", 2, 0x80, "ADD scale section with filter bit 7"),
    ]:
        s = g.stream(vid, key_n=3)
        s.add_frame(2, tweak=lambda ff, pl, w=which, b=bits: ff.sections.__setitem__(
            w, replace(ff.sections[w], filters=ff.sections[w].filters | b)), error="UNSUPPORTED_FEATURE", model=False)
        s.invalid("feature", desc, [S_SECTIONS, S_VERSION])
    for comp in (2, 255):
        s = g.stream(f"feat_compression_{comp}", key_n=3)
        s.add_frame(2, tweak=set_section(0, compression=comp), enc=Enc(compression="zstd"),
                    error="UNSUPPORTED_FEATURE", model=False)
        s.invalid("feature", f"section compression id {comp}", [S_SECTIONS, S_VERSION])


def gen_header(g: Gen) -> None:
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
        ("hdr_body_vtable_out_of_range", _bad_vtable(good_body), "root table's vtable offset points outside the body"),
    ]:
        g.header_invalid(vid, "header", desc, sec, craft.header_record(body), "MALFORMED")
    g.header_invalid("hdr_no_grid", "header", "stream header without its grid", sec + [S_GRID],
                     craft.header(replace(base, grid=None)), "MALFORMED")


def _bad_vtable(body: bytes) -> bytes:
    (root,) = struct.unpack_from("<I", body, 0)
    out = bytearray(body)
    struct.pack_into("<i", out, root, -0x7FFF0000)
    return bytes(out)


def gen_metadata(g: Gen) -> None:
    sec = [S_SCHEMA, S_OPS, S_ORDER]

    def meta_edit(fn):
        """post(): edit the metadata bytes in place (length unchanged), then fix the CRC."""
        def p(rec):
            a, b = meta_span(rec)
            meta = bytearray(rec[a:b])
            fn(meta)
            return fix_crc(rec[:a] + bytes(meta) + rec[b:])
        return p

    def vector_len_at(meta: bytearray, slot: int) -> int:
        from gsd.fb import Frame as FbFrame
        fb = FbFrame.Frame.GetRootAs(bytes(meta), 0)
        o = fb._tab.Offset(4 + 2 * slot)
        return fb._tab.Vector(o) - 4

    cases = [
        ("meta_shorter_than_root", lambda r: craft.frame_record(b"\x04\x00\x00\x00", r[meta_span(r)[1]:-4]),
         "4-byte metadata (no room for a FlatBuffers root)"),
        ("meta_root_out_of_range", meta_edit(lambda m: struct.pack_into("<I", m, 0, 0x00FFFFF0)),
         "metadata root offset past the metadata"),
        ("meta_vtable_out_of_range", meta_edit(lambda m: m.__setitem__(slice(0, len(m)), _bad_vtable(bytes(m)))),
         "root table's vtable offset outside the metadata"),
        ("meta_blocks_vector_too_long",
         meta_edit(lambda m: struct.pack_into("<I", m, vector_len_at(m, 5), 1000)),
         "blocks vector claims 1000 entries (within max_blocks) in a short metadata"),
        ("meta_sections_vector_too_long",
         meta_edit(lambda m: struct.pack_into("<I", m, vector_len_at(m, 6), 2000)),
         "sections vector claims 2000 entries (within max_sections) in a short metadata"),
        ("order_meta_blocks_over_limit_past_meta",
         meta_edit(lambda m: struct.pack_into("<I", m, vector_len_at(m, 5), 5000)),
         "blocks vector claims 5000 entries (over max_blocks 4096) in a short metadata: MALFORMED, verification "
         "comes first"),
        ("order_meta_sections_over_limit_past_meta",
         meta_edit(lambda m: struct.pack_into("<I", m, vector_len_at(m, 6), 20000)),
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
        ("sec_attr_width_2", lambda s: dict(enc=Enc(compression="none"),
                                            tweak=set_section(2, width=2)),
         "ADD scale section (8-bit codes) declares width 2"),
        ("sec_raw_size_mismatch", lambda s: dict(enc=Enc(compression="none"), tweak=_grow_section(1, 8)),
         "uncompressed position section with 8 extra bytes (raw_size = stored_size = count*3*4 + 8)"),
        ("sec_past_payload", lambda s: dict(tweak=lambda ff, pl: ff.sections.__setitem__(
            6, replace(ff.sections[6], offset=ff.sections[6].offset + 1))),
         "last section extends one byte past the payload"),
        ("sec_offset_wraps_u32", lambda s: dict(tweak=lambda ff, pl: ff.sections.__setitem__(
            3, replace(ff.sections[3], offset=(1 << 32) - ff.sections[3].stored_size + 2))),
         "section offset 2^32 - stored_size + 2: offset + stored_size wraps to 2 in 32-bit arithmetic"),
        ("sec_uncompressed_stored_ne_raw",
         lambda s: dict(enc=Enc(compression="none"),
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


def gen_verification(g: Gen) -> None:
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


def _grow_section(i: int, extra: int):
    def t(ff, pl):
        d = ff.sections[i]
        pl.parts[i] = pl.parts[i] + bytes(extra)
        shift = extra
        ff.sections[i] = replace(d, stored_size=d.stored_size + extra, raw_size=d.raw_size + extra)
        for j in range(i + 1, len(ff.sections)):
            ff.sections[j] = replace(ff.sections[j], offset=ff.sections[j].offset + shift)
    return t


def gen_ids_invalid(g: Gen) -> None:
    sec = [S_IDRULES, S_IDS]

    def one(vid, error, desc, build, hf=None, key_n=6):
        s = g.stream(vid, hf=hf, key_n=key_n)
        s.frame(error=error, **build(s))
        s.invalid("ids", desc, sec)

    def upd(s, ids, mask=0x01):
        return s.residuals(np.asarray(ids, np.uint64), mask)

    one("id_repeated_in_add", "DUPLICATE_ID", "ADD block lists an id twice",
        lambda s: dict(adds=[(np.repeat(s.fresh_ids(1), 2), s.codes(2))]))
    one("id_repeated_in_update", "DUPLICATE_ID", "UPDATE block lists an id twice",
        lambda s: dict(updates=[(s.live()[[1, 1]], 0x01, upd(s, s.live()[[1, 1]]))]))
    one("id_repeated_in_delete", "DUPLICATE_ID", "DELETE_IDS block lists an id twice",
        lambda s: dict(deletes=[s.live()[[2, 2]]]))
    one("id_descending_in_add", "BAD_VALUE", "ADD block ids not ascending",
        lambda s: dict(adds=[(s.fresh_ids(2)[::-1].copy(), s.codes(2))]))
    one("id_descending_in_update", "BAD_VALUE", "UPDATE block ids not ascending",
        lambda s: dict(updates=[(s.live()[[3, 1]], 0x01, upd(s, s.live()[[3, 1]]))]))
    one("id_descending_in_delete", "BAD_VALUE", "DELETE_IDS block ids not ascending",
        lambda s: dict(deletes=[s.live()[[4, 0]]]))
    one("id_in_two_add_blocks", "DUPLICATE_ID", "the same id in two ADD blocks",
        lambda s: (lambda x: dict(adds=[(x, s.codes(1)), (x, s.codes(1))]))(s.fresh_ids(1)))
    one("id_in_two_update_blocks", "DUPLICATE_ID", "the same id in two UPDATE blocks",
        lambda s: dict(updates=[(s.live()[:1], 0x01, upd(s, s.live()[:1])),
                                (s.live()[:2], 0x02, upd(s, s.live()[:2], 0x02))]))
    one("id_in_add_and_update", "DUPLICATE_ID", "an id both ADDed and UPDATEd in one frame (after its DELETE)",
        lambda s: dict(deletes=[s.live()[:1]], adds=[(s.live()[:1], s.codes(1))],
                       updates=[(s.live()[:1], 0x01, upd(s, s.live()[:1]))]))
    one("id_in_two_delete_blocks", "DUPLICATE_ID", "the same id in two DELETE_IDS blocks",
        lambda s: dict(deletes=[s.live()[:2], s.live()[1:3]]))
    lim = 1 << 20
    one("id_add_outside_space", "BAD_VALUE", "ADD of id 2^(3B+S) (one past the largest)",
        lambda s: dict(adds=[(np.array([lim], np.uint64), s.codes(1))]))
    one("id_update_outside_space", "BAD_VALUE", "UPDATE of id 2^64-1",
        lambda s: dict(updates=[(np.array([2**64 - 1], np.uint64), 0x01, [np.zeros((x.shape[0], 1), x.dtype)
                                                                           for x in s.codes(1)])]))
    one("id_delete_outside_space", "BAD_VALUE", "DELETE_IDS of id 2^(3B+S)",
        lambda s: dict(deletes=[np.array([lim], np.uint64)]))
    one("id_add_2p63_in_63_bit_grid", "BAD_VALUE", "ADD of id 2^63 on a 63-bit grid",
        lambda s: dict(adds=[(np.array([2**63], np.uint64), s.codes(1))]), hf=hf_preset("compact", 1, G63))
    one("range_first_after_last", "BAD_VALUE", "DELETE_RANGES with first > last",
        lambda s: dict(ranges=[[(1, 2), (9, 8)]]))
    one("range_last_outside_space", "BAD_VALUE", "DELETE_RANGES with last = 2^(3B+S)",
        lambda s: dict(ranges=[[(0, lim)]]))
    one("cell_code_outside_grid_level_0", "BAD_VALUE", "DELETE_CELLS level 0 code 2^12 (grid has 2^12 cells)",
        lambda s: dict(cells=[(0, [1 << 12])]))
    one("cell_code_outside_grid_level_2", "BAD_VALUE", "DELETE_CELLS level 2 code 2^6",
        lambda s: dict(cells=[(2, [5, 1 << 6])]))
    one("cell_level_above_cell_bits", "BAD_VALUE", "DELETE_CELLS level 5 on a cell_bits=4 grid",
        lambda s: dict(cells=[(5, [0])]))


def gen_state_invalid(g: Gen) -> None:
    sec = [S_APPLY, S_OPS]

    def one(vid, error, desc, build, key_n=6, pre=None):
        s = g.stream(vid, key_n=key_n)
        if pre:
            pre(s)
        s.frame(error=error, **build(s))
        s.invalid("state", desc, sec)

    def res(s, ids):
        """Residual +1 on opacity (mask 0x08) for ids that need not be live."""
        return [np.full((x.shape[0], len(ids)), 1 if k == 3 else 0, x.dtype) for k, x in enumerate(s.codes(0))]

    one("st_add_live_id", "ID_EXISTS", "ADD of a live id", lambda s: dict(adds=[(s.live()[2:3], s.codes(1))]))
    one("st_add_live_range_misses", "ID_EXISTS", "ADD of a live id next to a DELETE_RANGES that does not cover it",
        lambda s: dict(ranges=[[(int(s.live()[2]) + 1, int(s.live()[3]))]], adds=[(s.live()[2:3], s.codes(1))]))
    one("st_update_missing_id", "ID_MISSING", "UPDATE of an id that was never added",
        lambda s: dict(updates=[(s.fresh_ids(1), 0x08, res(s, [0]))]))
    one("st_update_deleted_same_frame", "ID_MISSING", "DELETE_IDS x and UPDATE x in one frame",
        lambda s: dict(deletes=[s.live()[:1]], updates=[(s.live()[:1], 0x08, res(s, [0]))]))
    one("st_update_range_deleted_same_frame", "ID_MISSING", "DELETE_RANGES covering x and UPDATE x in one frame",
        lambda s: dict(ranges=[[(int(s.live()[1]), int(s.live()[1]))]], updates=[(s.live()[1:2], 0x08, res(s, [0]))]))
    one("st_update_cell_deleted_same_frame", "ID_MISSING", "DELETE_CELLS covering x and UPDATE x in one frame",
        lambda s: dict(cells=[(0, [int(s.live()[1]) >> 8])], updates=[(s.live()[1:2], 0x08, res(s, [0]))]))
    one("st_delete_missing_id", "ID_MISSING", "DELETE_IDS of an id that is not live",
        lambda s: dict(deletes=[s.fresh_ids(1)]))
    one("st_delete_twice", "ID_MISSING", "DELETE_IDS of an id deleted by the previous frame",
        lambda s: dict(deletes=[np.array([s.gone], np.uint64)]),
        pre=lambda s: (setattr(s, "gone", int(s.live()[0])), s.frame(deletes=[s.live()[:1]])))
    one("st_keyframe_delete_ids", "ID_MISSING", "keyframe with DELETE_IDS of an id live before it (state is empty)",
        lambda s: dict(key=True, deletes=[s.live()[:1]], adds=[(s.fresh_ids(1), s.codes(1))]))
    one("st_keyframe_update", "ID_MISSING", "keyframe with UPDATE of an id live before it",
        lambda s: dict(key=True, adds=[(s.fresh_ids(1), s.codes(1))], updates=[(s.live()[:1], 0x08, res(s, [0]))]))
    one("st_update_after_keyframe_dropped_it", "ID_MISSING", "UPDATE of an id the previous keyframe did not keep",
        lambda s: dict(updates=[(np.array([s.old], np.uint64), 0x08, res(s, [0]))]),
        pre=lambda s: (setattr(s, "old", int(s.live()[0])), s.add_frame(2, key=True)))


def gen_values(g: Gen) -> None:
    sec = [S_VALIDITY, S_APPLY]
    hf = hf_quant(NARROW, 3)

    def add_bad(vid, desc, edit, hf=hf):
        s = g.stream(vid, hf=hf, key_n=3)
        c = s.codes(2)
        edit(c)
        s.frame(adds=[(s.fresh_ids(2), c)], error="BAD_VALUE")
        s.invalid("value", desc, sec)

    def at(a, row, col, v):
        def e(c):
            c[a][row, col] = v
        return e
    # NARROW: scale 6 bits, rotation 7, opacity 5, dc 6, rest (5, 4, 3) -> M = 15, 7, 3
    add_bad("val_add_scale_64", "ADD scale code 64 with scale_bits 6", at(1, 2, 1, 64))
    add_bad("val_add_opacity_32", "ADD opacity code 32 with opacity_bits 5", at(3, 0, 0, 32))
    add_bad("val_add_dc_255", "ADD SH_DC code 255 with dc_bits 6", at(4, 1, 1, 255))
    add_bad("val_add_rotation_index_4", "ADD rotation largest-index 4", at(2, 0, 0, 4))
    add_bad("val_add_rotation_index_255", "ADD rotation largest-index 255", at(2, 0, 1, 255))
    add_bad("val_add_rotation_code_128", "ADD rotation small component 128 with rotation_bits 7", at(2, 3, 0, 128))
    add_bad("val_add_rest_degree1_16", "ADD SH_REST degree-1 code 16 (M = 15 for 5 bits)", at(5, 0, 0, 16))
    add_bad("val_add_rest_degree1_minus16", "ADD SH_REST degree-1 code -16", at(5, 2, 1, -16))
    add_bad("val_add_rest_degree2_8", "ADD SH_REST degree-2 code 8 (M = 7; valid for degree 1)", at(5, 4, 0, 8))
    add_bad("val_add_rest_degree3_minus4", "ADD SH_REST degree-3 code -4 (M = 3)", at(5, 14, 1, -4))
    add_bad("val_add_rest_blue_channel", "ADD SH_REST blue-channel degree-3 code 4 (component 44 of 45)",
            at(5, 44, 0, 4))
    add_bad("val_add_high_scale_4096", "ADD scale code 4096 with 12 scale bits (width 2)", at(1, 0, 0, 4096),
            hf=hf_preset("high", 1))
    cq = hf_preset("compact", 1).quant
    m1 = (1 << (cq.rest_bits[0] - 1)) - 1
    add_bad("val_add_compact_rest_over", f"compact preset: ADD SH_REST code {m1 + 1} with {cq.rest_bits[0]} rest bits "
            f"(M = {m1})", at(5, 1, 0, m1 + 1), hf=hf_preset("compact", 1))

    def upd_bad(vid, desc, a, row, target, hf=hf):
        s = g.stream(vid, hf=hf, key_n=3)
        ids = s.live()[[1]]
        new = [x.copy() for x in s.codes_of(ids)]
        new[a] = new[a].astype(np.int64)
        new[a][row, 0] = target
        mask = 1 << a
        old = s.codes_of(ids)[a]
        r = np.array([[s.L.wrap(a, int(x) - int(y))] for x, y in zip(new[a][:, 0], old[:, 0])], np.int64)
        res = s.residuals(ids, mask, new=s.codes_of(ids))
        res[a] = r.astype(dtype_of(s.L, a))
        s.frame(updates=[(ids, mask, res)], error="BAD_VALUE")
        s.invalid("value", desc, sec + [S_OPS])
    upd_bad("val_update_scale_to_64", "UPDATE residual takes a scale code to 64 (scale_bits 6)", 1, 0, 64)
    upd_bad("val_update_opacity_wraps_to_255", "UPDATE residual wraps an opacity code below 0 to 255", 3, 0, -1)
    upd_bad("val_update_rotation_index_to_4", "UPDATE residual takes rotation index to 4", 2, 0, 4)
    upd_bad("val_update_rest_degree3_to_4", "UPDATE residual takes a degree-3 SH_REST code to 4 (M = 3)", 5, 10, 4)

    lossless = hf_preset("lossless", 1)
    inf, nan, ninf = 0x7F800000, 0x7FC00000, 0xFF800000
    add_bad("val_lossless_add_nan", "lossless ADD with a NaN position", at(0, 1, 0, nan), hf=lossless)
    add_bad("val_lossless_add_inf", "lossless ADD with +Inf scale", at(1, 0, 1, inf), hf=lossless)
    add_bad("val_lossless_add_neg_inf", "lossless ADD with -Inf opacity", at(3, 0, 0, ninf), hf=lossless)
    add_bad("val_lossless_add_signalling_nan", "lossless ADD with a signalling NaN in SH_REST",
            at(5, 8, 1, 0x7F800001), hf=lossless)
    upd_bad("val_lossless_update_to_nan", "lossless UPDATE residual turns a rotation component into NaN", 2, 2,
            0x7FC00000, hf=lossless)
    upd_bad("val_lossless_update_to_inf", "lossless UPDATE residual turns an SH_DC component into -Inf", 4, 0,
            ninf, hf=lossless)


def gen_compression(g: Gen) -> None:
    sec = [S_SECTIONS]

    def one(vid, desc, stored_fn):
        """Replace the ADD position section (index 1, raw_size 36) by stored_fn(raw) marked as zstd."""
        s = g.stream(vid, key_n=3)
        c = s.codes(3)

        def t(ff, pl):
            raw, _ = craft.Payload.filtered(c[0], ff.sections[1].filters)
            data = stored_fn(raw)
            old = ff.sections[1]
            pl.parts[1] = data
            ff.sections[1] = replace(old, stored_size=len(data), compression=1)
            for j in range(2, len(ff.sections)):
                ff.sections[j] = replace(ff.sections[j], offset=ff.sections[j].offset + len(data) - old.stored_size)
        s.frame(adds=[(s.fresh_ids(3), c)], tweak=t, error="DECOMPRESSION_FAILED", model=False)
        s.invalid("compression", desc, sec)

    z = craft.zstd_chunks
    one("zstd_reserved_block_type", "zstd frame (declaring raw_size) whose block header has the reserved type 3",
        lambda raw: _block_type(z(raw), 3))
    one("zstd_block_past_end", "zstd frame whose block header claims more bytes than the frame holds",
        lambda raw: _block_size(z(raw), 1000))
    one("zstd_wrong_magic", "zstd section starting with a wrong magic", lambda raw: b"GSDF" + z(raw)[4:])
    one("zstd_truncated", "zstd frame cut short by 3 bytes", lambda raw: z(raw)[:-3])
    one("zstd_empty", "zstd section with 0 stored bytes for 36 raw bytes", lambda raw: b"")
    one("zstd_no_content_size", "zstd frame without the Frame_Content_Size field",
        lambda raw: z(raw, write_content_size=False))
    one("zstd_declares_fewer_bytes", "zstd frame honestly declaring and holding raw_size - 1 bytes",
        lambda raw: z(raw[:-1]))
    one("zstd_declares_more_bytes", "zstd frame honestly declaring and holding raw_size + 1 bytes",
        lambda raw: z(raw + b"\x00"))
    one("zstd_content_shorter_than_declared", "zstd frame declaring raw_size whose blocks hold one byte less",
        lambda raw: set_fcs(z(raw[:-1]), len(raw)))
    one("zstd_content_longer_than_declared", "zstd frame declaring raw_size whose blocks hold one byte more",
        lambda raw: set_fcs(z(raw + b"\x00"), len(raw)))
    one("zstd_bomb_declared", "2 KB zstd frame declaring (and holding) 64 MiB for a 36-byte section",
        lambda raw: zstd_bomb())
    one("zstd_bomb_undeclared", "2 KB zstd frame declaring 36 bytes whose blocks hold 64 MiB: output must stay "
                                "bounded", lambda raw: set_fcs(zstd_bomb(), len(raw)))
    one("zstd_two_frames", "the section split into two zstd frames (exactly one is allowed)",
        lambda raw: z(raw, 2))
    one("zstd_trailing_garbage", "a valid zstd frame followed by 8 other bytes", lambda raw: z(raw) + b"garbage!")
    one("zstd_trailing_skippable_frame", "a valid zstd frame followed by a zstd skippable frame",
        lambda raw: z(raw) + bytes.fromhex("502a4d18") + struct.pack("<I", 4) + b"skip")
    one("zstd_bad_content_checksum", "zstd frame whose own content checksum is wrong",
        lambda raw: _flip_last(z(raw, write_checksum=True)))


_BOMB = None


def zstd_bomb() -> bytes:
    global _BOMB
    if _BOMB is None:
        _BOMB = craft.zstd_chunks(bytes(64 << 20), 1, 19)
    return _BOMB


def _flip_last(b: bytes) -> bytes:
    return b[:-1] + bytes([b[-1] ^ 0x5A])


def _first_block(frame: bytes) -> int:
    d = frame[4]
    flag, single, did = d >> 6, (d >> 5) & 1, d & 3
    return 5 + (0 if single else 1) + (0, 1, 2, 4)[did] + (1 if single else 0, 2, 4, 8)[flag]


def _block_type(frame: bytes, t: int) -> bytes:
    p = _first_block(frame)
    (h,) = struct.unpack("<I", frame[p:p + 3] + b"\x00")
    h = (h & ~0b110) | (t << 1)
    return frame[:p] + struct.pack("<I", h)[:3] + frame[p + 3:]


def _block_size(frame: bytes, n: int) -> bytes:
    p = _first_block(frame)
    (h,) = struct.unpack("<I", frame[p:p + 3] + b"\x00")
    h = (h & 0b111) | (n << 3)
    return frame[:p] + struct.pack("<I", h)[:3] + frame[p + 3:]


def zstd_header_only(content_size: int) -> bytes:
    """A zstd frame header declaring ``content_size`` (4-byte field, 1 MiB window), no blocks."""
    return b"\x28\xb5\x2f\xfd" + bytes([0x80, (20 - 10) << 3]) + struct.pack("<I", content_size)


def set_fcs(frame: bytes, n: int) -> bytes:
    """Rewrite a zstd frame header's Frame_Content_Size field to ``n`` (RFC 8878 3.1.1.1), leaving the blocks."""
    d = frame[4]
    flag, single, did = d >> 6, (d >> 5) & 1, d & 3
    pos = 5 + (0 if single else 1) + (0, 1, 2, 4)[did]
    size = (1 if single else 0, 2, 4, 8)[flag]
    assert size in (1, 4, 8) and n < 1 << (8 * size), "field cannot hold n"
    return frame[:pos] + n.to_bytes(size, "little") + frame[pos + size:]


def gen_sequence(g: Gen) -> None:
    sec = [S_SEQ]
    s = g.stream("seq_gap_ahead", key_n=3)
    s.add_frame(1, seq=s.seq + 2, base=s.seq + 1, error="SEQUENCE_GAP")
    s.invalid("sequence", "base_seq one ahead of the state (a frame was lost)", sec)

    s = g.stream("seq_gap_behind", key_n=3)
    s.add_frame(1)
    s.add_frame(1, seq=s.seq + 1, base=s.seq - 1, error="SEQUENCE_GAP")
    s.invalid("sequence", "base_seq one behind the state (a frame replayed against a newer state)", sec)

    s = g.stream("seq_first_frame_base_1", key_n=None)
    s.add_frame(1, seq=2, base=1, error="SEQUENCE_GAP")
    s.invalid("sequence", "the first frame is a delta based on seq 1 (state starts at 0)", sec)

    s = g.stream("seq_after_keyframe_jump", key_n=3)
    s.add_frame(2, key=True, seq=100)
    s.add_frame(1, seq=5, base=4, error="SEQUENCE_GAP")
    s.invalid("sequence", "after a keyframe with seq 100, a delta based on 4", sec)

    s = g.stream("seq_repeated_frame", key_n=3)
    rec = s.add_frame(1)
    s.raw(rec, error="SEQUENCE_GAP")
    s.invalid("sequence", "the same delta twice in a row", sec)

    s = g.stream("seq_keyframe_seq_0", key_n=None)
    s.add_frame(2, key=True, seq=0, error="MALFORMED")
    s.invalid("sequence", "keyframe with seq 0", sec)

    s = g.stream("seq_equal_to_base", key_n=3)
    s.add_frame(1, seq=s.seq, base=s.seq, error="MALFORMED")
    s.invalid("sequence", "delta with seq == base_seq", sec)

    s = g.stream("seq_below_base", key_n=3)
    s.add_frame(1, seq=4)
    s.add_frame(1, seq=2, base=4, error="MALFORMED")
    s.invalid("sequence", "delta with seq 2 < base_seq 4", sec)


def gen_digest(g: Gen) -> None:
    sec = [S_DIGEST, S_APPLY]

    def one(vid, desc, edit, key_n=4, pre=None, key=False):
        s = g.stream(vid, key_n=key_n)
        if pre:
            pre(s)
        trial = s._copy_model()
        ids = s.fresh_ids(2)
        c = s.codes(2)
        f = RefFrame(s.seq + 1 if key else s.seq + 1, 0 if key else s.seq, key,
                     adds=[[(int(i), per_gaussian(c, j)) for j, i in enumerate(ids)]])
        trial.apply(f)
        d = edit(trial.digest())
        s.frame(key=key, adds=[(ids, c)], digest=d, error="DIGEST_MISMATCH")
        s.invalid("digest", desc, sec)
    one("dig_count_wrong", "frame digest count one too high", lambda d: (d[0] + 1, d[1], d[2]))
    one("dig_lane0_wrong", "frame digest lane0 off by one bit", lambda d: (d[0], d[1] ^ 1, d[2]))
    one("dig_lane1_wrong", "frame digest lane1 off by one bit", lambda d: (d[0], d[1], d[2] ^ 0x80000000))
    one("dig_lanes_swapped", "frame digest lanes swapped", lambda d: (d[0], d[2], d[1]))
    one("dig_keyframe_wrong", "keyframe digest lane0 wrong", lambda d: (d[0], (d[1] + 1) & 0xFFFFFFFF, d[2]),
        key=True)
    one("dig_mid_stream", "fifth frame's digest wrong after four good ones", lambda d: (d[0], d[1], d[2] ^ 0x10),
        pre=lambda s: [s.add_frame(1) for _ in range(3)])
    one("dig_zero_for_nonempty", "digest 0:00000000:00000000 on a non-empty state", lambda d: (0, 0, 0))

    s = g.stream("dig_nonzero_for_empty", key_n=3)
    s.frame(deletes=[s.live()], digest=(0, 0, 1), error="DIGEST_MISMATCH")
    s.invalid("digest", "every Gaussian deleted but the digest says 0:00000000:00000001", sec)


def gen_spec_examples(g: Gen) -> None:
    """The worked examples of SPEC.md 4.4 and 7.6 as vectors; generation fails if the spec's numbers differ."""
    q = QuantFields(4, 8, -14.0, 4.0, 8, 8, 8, -3.5, 3.5, (), ())
    hf = HeaderFields(0, ((0.0, 0.0, 0.0), 1.0, 4, 4), q, "compact")
    s = Stream(g, "spec_example_7_6_digest", hf)
    a = ((5, 10, 2), (133, 133, 125), (0, 184, 53, 165), (225,), (146, 118, 164), ())
    b = ((3, 14, 6), (156, 149, 142), (3, 109, 164, 109), (68,), (129, 131, 124), ())
    s.frame(adds=[(np.array([848], np.uint64), planar(s.L, [a]))])
    s.frame(key=True, adds=[(np.array([0, 848], np.uint64), planar(s.L, [b, a]))])
    res = [np.zeros((s.L.comps(k), 1), dtype_of(s.L, k)) for k in range(6)]
    res[0][:, 0] = (1, 0, 0)
    s.frame(updates=[(np.array([848], np.uint64), 0x01, res)])
    want = ["1:d2076ae6:492dc7c0", "2:e07963a0:0278f735", "2:e711aeef:36aff9f3"]
    assert s.digests == want, f"SPEC.md 7.6 says {want}, refmodel computes {s.digests}"
    s.valid("spec_example", "SPEC.md 7.6 worked example: A alone, keyframe of A and B, UPDATE of A's position",
            [S_DIGEST, "7.6"])

    hf = HeaderFields(0, ((0.0, 0.0, 0.0), 1.0, 4, 4), QuantFields.of(PRESETS["high"], 0), "high")
    s = Stream(g, "spec_example_4_4_sections", hf)
    got = {}
    ids = np.array([848, 850, 858], np.uint64)
    c = s.codes(3)
    c[3][:] = 100
    raw = Enc(ids=DELTA | SHUFFLE, attr=lambda a, w, r: ZIGZAG | SHUFFLE if r else 0, compression="none")
    s.frame(key=True, adds=[(ids, c)], enc=raw, tweak=lambda ff, pl: got.update(ids=pl.parts[0]))
    res = [np.zeros((s.L.comps(k), 3), dtype_of(s.L, k)) for k in range(6)]
    res[3][0] = [1, 0xFFFF, 0xFFFE]
    s.frame(updates=[(ids, 0x08, res)], enc=raw, tweak=lambda ff, pl: got.update(res=pl.parts[1]))
    assert got["ids"] == bytes.fromhex("500208 030000") + bytes(18), got["ids"].hex()
    assert got["res"] == bytes.fromhex("020103000000"), got["res"].hex()
    s.valid("spec_example", "SPEC.md 4.4 examples: ids 848, 850, 858 with DELTA+SHUFFLE; i16 residuals 1, -1, -2 "
                            "with ZIGZAG+SHUFFLE (uncompressed)", [S_SECTIONS])


# ------------------------------------------------------------------------------------------ driver
GROUPS = [gen_ops, gen_masks, gen_profiles, gen_ids, gen_keyframes, gen_compose, gen_empty, gen_replace,
          gen_encoding, gen_limits_valid_and_invalid, gen_framing, gen_checksum, gen_version_feature, gen_header,
          gen_metadata, gen_verification, gen_ids_invalid, gen_state_invalid, gen_values, gen_compression, gen_sequence, gen_digest,
          gen_spec_examples]


def generate(out: str = VECTOR_DIR) -> dict:
    """Write every vector and the manifest into ``out`` (replacing its .gsd files); returns the manifest."""
    os.makedirs(out, exist_ok=True)
    for name in os.listdir(out):
        if name.endswith(".gsd") or name == "manifest.json":
            os.remove(os.path.join(out, name))
    g = Gen(out)
    for group in GROUPS:
        group(g)
    m = g.manifest()
    with open(os.path.join(out, "manifest.json"), "w", encoding="utf-8", newline="\n") as f:
        json.dump(m, f, indent=1, ensure_ascii=False)
        f.write("\n")
    return m


def check_with_codec(out: str, manifest: dict) -> list[str]:
    """Run every vector through the Python codec in-process; returns the disagreements."""
    from codec import GsdError, Decoder
    problems = []
    for v in manifest["vectors"]:
        with open(os.path.join(out, v["file"]), "rb") as f:
            data = f.read()
        lim = Limits(**v.get("limits", {}))
        got, digests = None, []
        try:
            dec = Decoder(limits=lim)
            pos = dec.set_header(data)
            k = 0
            while pos < len(data):
                try:
                    _, used = dec.read_frame(memoryview(data)[pos:])
                except GsdError as e:
                    got = (k, e.code.name)
                    break
                digests.append(str(dec.state.digest()))
                pos += used
                k += 1
        except GsdError as e:
            got = (-1, e.code.name)
        exp = v["expected"]
        want = None if exp["result"] == "valid" else (exp["frame"], exp["error"])
        if got != want or digests != exp["digests"]:
            problems.append(f"{v['id']}: expected {want} {exp['digests'][-1:]}, codec gave {got} {digests[-1:]}")
    return problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m conformance.generate", description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=VECTOR_DIR)
    ap.add_argument("--check", action="store_true", help="also run every vector through the Python codec")
    a = ap.parse_args(argv)
    m = generate(a.out)
    vs = m["vectors"]
    cats: dict[str, int] = {}
    for v in vs:
        cats[v["category"]] = cats.get(v["category"], 0) + 1
    size = sum(os.path.getsize(os.path.join(a.out, v["file"])) for v in vs)
    n_valid = sum(v["expected"]["result"] == "valid" for v in vs)
    print(f"{len(vs)} vectors ({n_valid} valid, {len(vs) - n_valid} invalid), {size / 1e6:.2f} MB of streams, "
          f"manifest {os.path.getsize(os.path.join(a.out, 'manifest.json')) / 1e6:.2f} MB")
    print("  " + ", ".join(f"{k} {n}" for k, n in cats.items()))
    if a.check:
        problems = check_with_codec(a.out, m)
        for p in problems:
            print("MISMATCH", p)
        print(f"codec check: {len(vs) - len(problems)} agree, {len(problems)} disagree")
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
