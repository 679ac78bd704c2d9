"""A frame record read back into its ops, by the spec's pipeline rather than the codec's reader.

Some vectors start from frames the codec writes (the Encoder's closed loop, compose); they are
re-serialized with fixed section choices so that tuning the codec's filters or compression does not
change the vectors. Reading those frames from their bytes (SPEC.md 4.4 decoding pipeline, 6.1 block
layouts) keeps the generator to the codec's public wire output, whatever its in-memory Delta looks
like.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import zstandard

from . import craft
from .attribute_codes import dtype_of, entry_dtype
from .refmodel import Layout, implicit_ids, placement_codes, resolve_ranks

def decode_section(payload: bytes, s: craft.Section, comps: int, n: int) -> np.ndarray:
    """The (comps, n) unsigned values of one well-formed section: decompress, unshuffle, unzigzag, delta sum,
    channel sum; or, gap coded (1.4), the values its codes give."""
    w = s.width
    raw = bytes(payload[s.offset:s.offset + s.stored_size])
    if s.compression == craft.GAPS:
        values = craft.gap_values(raw, n, w) if comps == 1 and s.filters == 0 else None
        if values is None:
            raise ValueError("a gap-coded section that is not a valid code of one component")
        return values
    if s.compression == craft.ZSTD:
        raw = zstandard.ZstdDecompressor().decompress(raw)
    return craft.unfiltered(raw, w, s.filters, comps, n)


@dataclass
class FrameOps:
    """One frame as Stream.frame() arguments: blocks grouped by kind, arrays in the header's code dtypes."""

    seq: int
    base_seq: int
    keyframe: bool
    digest: tuple | None
    adds: list = field(default_factory=list)       # [(ids, [planar codes per attribute])]
    updates: list = field(default_factory=list)    # [(ids, mask, [planar residuals per attribute])], by mask
    deletes: list = field(default_factory=list)    # [ids]
    ranges: list = field(default_factory=list)     # [[(first, last), ...]]
    cells: list = field(default_factory=list)      # [(level, [cell, ...])], by level
    palettes: list = field(default_factory=list)   # [(indices, (3K, n) entry codes)]
    ranked_updates: list = field(default_factory=list)  # [(ranks, mask, [planar residuals])], as written
    ranked_deletes: list = field(default_factory=list)  # [ranks], as written

    def blocks(self) -> dict:
        return {"adds": self.adds, "updates": self.updates, "deletes": self.deletes, "ranges": self.ranges,
                "cells": self.cells, "palettes": self.palettes, "ranked_updates": self.ranked_updates,
                "ranked_deletes": self.ranked_deletes}


def read_frame_ops(record: bytes, L: Layout, live=None, ranks: bool = False) -> FrameOps:
    """The ops of a valid frame record. Empty blocks are dropped, UPDATE blocks of one mask merged
    (ids ascending) and ordered by mask, DELETE_CELLS ordered by level: one canonical form however the
    writer split its blocks. Ranked blocks (1.2) are resolved against ``live``, the ids live before the
    frame (SPEC.md 6.1), and come out as the UPDATE and DELETE_IDS blocks they stand for, so a vector
    does not change when the writer starts or stops sending ranks; with ``ranks``, they stay ranked
    blocks (ranked_updates, ranked_deletes), each as written."""
    meta, payload = craft.split_frame(record)
    f = craft.parse_frame_meta(meta)
    ops = FrameOps(f.seq, f.base_seq, bool(f.flags & craft.KEYFRAME), f.digest)
    before = [] if ops.keyframe or live is None else sorted(int(i) for i in live)
    updates: dict[int, list] = {}
    for b in f.blocks:
        if b.count == 0:
            continue
        secs = iter(f.sections[k] for k in b.sections)
        if b.kind == craft.DELETE_RANGES:
            r = decode_section(payload, next(secs), 2, b.count)
            ops.ranges.append([(int(x), int(y)) for x, y in r.T])
            continue
        if b.kind == craft.PALETTE:
            index = decode_section(payload, next(secs), 1, b.count)[0]
            entries = np.zeros((L.rest_comps, b.count), entry_dtype(L))
            for rows in craft.band_rows(L.sh_degree):
                entries[rows] = decode_section(payload, next(secs), len(rows), b.count).view(entries.dtype)
            ops.palettes.append((index, entries))
            continue
        if b.kind in (craft.UPDATE_RANKED, craft.DELETE_RANKED) and ranks:
            r = decode_section(payload, next(secs), 1, b.count)[0].astype(np.uint32)
            if b.kind == craft.DELETE_RANKED:
                ops.ranked_deletes.append(r)
            else:
                ops.ranked_updates.append((r, b.mask, _attributes(payload, secs, L, b.mask, b.count)))
            continue
        if b.kind in (craft.UPDATE_RANKED, craft.DELETE_RANKED):
            assert live is not None or ops.keyframe, "a ranked block: read_frame_ops needs the live ids"
            rk = [int(r) for r in decode_section(payload, next(secs), 1, b.count)[0]]
            ids = np.array(resolve_ranks(before, rk), np.uint64)
        else:
            ids = decode_section(payload, next(secs), 1, b.count)[0]
        if b.kind == craft.ADD_IMPLICIT:   # the ADD it stands for (SPEC.md 6.1)
            codes = _attributes(payload, secs, L, 0x3E, b.count)
            codes[0] = np.array([placement_codes(L, int(v)) for v in ids], codes[0].dtype).reshape(-1, 3).T.copy()
            ops.adds.append((np.array(implicit_ids(L, [int(v) for v in ids]), np.uint64), codes))
            continue
        if b.kind in (craft.DELETE_IDS, craft.DELETE_RANKED):
            ops.deletes.append(ids)
        elif b.kind == craft.DELETE_CELLS:
            ops.cells.append((b.level, [int(c) for c in ids]))
        elif b.kind == craft.ADD:
            ops.adds.append((ids, _attributes(payload, secs, L, 0x3F, b.count)))
        elif b.kind in (craft.UPDATE, craft.UPDATE_RANKED):
            updates.setdefault(b.mask, []).append((ids, _attributes(payload, secs, L, b.mask, b.count)))
    for mask in sorted(updates):
        ids = np.concatenate([i for i, _ in updates[mask]])
        order = np.argsort(ids, kind="stable")
        res = [np.concatenate([r[a] for _, r in updates[mask]], axis=1)[:, order] for a in range(6)]
        ops.updates.append((ids[order], mask, res))
    ops.cells.sort(key=lambda c: c[0])
    return ops


def _attributes(payload: bytes, secs, L: Layout, mask: int, n: int) -> list[np.ndarray]:
    """Planar arrays of the six attributes; those outside ``mask`` are zero (as UPDATE leaves them)."""
    out = []
    for a in range(6):
        arr = np.zeros((L.comps(a), n), dtype_of(L, a))
        if mask >> a & 1 and L.comps(a):
            for rows in (craft.band_rows(L.sh_degree) if a == 5 and not L.palette else [list(range(L.comps(a)))]):
                arr[rows] = decode_section(payload, next(secs), len(rows), n).view(arr.dtype)
        out.append(arr)
    return out
