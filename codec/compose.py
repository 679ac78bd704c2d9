"""compose(d1, d2): one delta equal to applying d1 then d2 (SPEC.md 8).

apply(apply(s, d1), d2) == apply(s, compose(d1, d2)) for every state s on
which the left side succeeds. Residuals are modular, so UPDATE+UPDATE is a sum
and ADD+UPDATE folds the residual into the added code.
"""
from __future__ import annotations

import numpy as np

from .attributes import ATTRS
from .delta import Delta, PaletteSet, UpdateBlock, group_updates
from .errors import ErrorCode, GsdError
from .id_index import sorted_member, sorted_unique
from .profile import Profile

U64 = np.uint64


def _intervals(d: Delta, profile: Profile) -> tuple[np.ndarray, np.ndarray]:
    """Merged, sorted inclusive id intervals deleted by d's ranges and cells."""
    firsts = [d.delete_ranges[:, 0]] if len(d.delete_ranges) else []
    lasts = [d.delete_ranges[:, 1]] if len(d.delete_ranges) else []
    for level, cells in d.delete_cells.items():
        f, l = profile.grid.cell_range(np.asarray(cells, U64), level)
        firsts.append(f); lasts.append(l)
    if not firsts:
        return np.zeros(0, U64), np.zeros(0, U64)
    f, l = np.concatenate(firsts), np.concatenate(lasts)
    order = np.argsort(f, kind="stable")
    f, l = f[order], l[order]
    run_max = np.maximum.accumulate(l)
    # A new interval starts where it begins after everything before it ends (+1 joins touching ones).
    starts = np.r_[True, f[1:] > run_max[:-1] + U64(1)] if len(f) > 1 else np.array([True])
    idx = np.flatnonzero(starts)
    ends = np.r_[idx[1:] - 1, len(f) - 1]
    return f[idx], run_max[ends]


def _covered(ids: np.ndarray, firsts: np.ndarray, lasts: np.ndarray) -> np.ndarray:
    if len(firsts) == 0 or len(ids) == 0:
        return np.zeros(len(ids), bool)
    k = np.searchsorted(firsts, ids, "right") - 1
    return (k >= 0) & (ids <= lasts[np.maximum(k, 0)])


def compose(d1: Delta, d2: Delta, profile: Profile) -> Delta:
    if d1.ranked or d2.ranked:  # SPEC.md 8.1: compose takes deltas decoded against their states
        raise ValueError("compose: a delta holds ranked blocks not yet resolved (apply it to its state first)")
    if d2.keyframe:
        return _copy(d2)
    if d2.base_seq != d1.seq:
        raise GsdError(ErrorCode.SEQUENCE_GAP, f"d2 is based on seq {d2.base_seq}, d1 ends at {d1.seq}")
    f2, l2 = _intervals(d2, profile)

    def removed_by_d2(ids):
        return np.isin(ids, d2.delete_ids, assume_unique=True) | _covered(ids, f2, l2)

    r = Delta(seq=d2.seq, base_seq=d1.base_seq, keyframe=d1.keyframe, digest=d2.digest)
    # deletes: all of d1's; d2's except those of Gaussians d1 added
    r.delete_ids = np.union1d(d1.delete_ids, d2.delete_ids[~np.isin(d2.delete_ids, d1.add_ids, assume_unique=True)])
    r.delete_ranges = np.concatenate([d1.delete_ranges, d2.delete_ranges]).reshape(-1, 2).astype(U64)
    levels = set(d1.delete_cells) | set(d2.delete_cells)
    r.delete_cells = {lv: np.union1d(d1.delete_cells.get(lv, np.zeros(0, U64)),
                                     d2.delete_cells.get(lv, np.zeros(0, U64))).astype(U64) for lv in levels}

    # d1 ADDs that survive d2, with d2's UPDATEs of them folded in
    keep_a = ~removed_by_d2(d1.add_ids)
    a_ids = d1.add_ids[keep_a]
    a_codes = {a: d1.add[a][:, keep_a].copy() for a in ATTRS}
    parts = []  # surviving UPDATE rows: (ids, mask, {Attr: residuals})
    for b in d1.updates:
        keep = ~removed_by_d2(b.ids)
        parts.append((b.ids[keep], b.mask, {a: r[:, keep] for a, r in b.res.items()}))
    for b in d2.updates:
        in_add = sorted_member(b.ids, a_ids)
        if in_add.any():
            pos = np.searchsorted(a_ids, b.ids[in_add])
            for a, res in b.res.items():
                a_codes[a][:, pos] += res[:, in_add]
        rest = ~in_add
        parts.append((b.ids[rest], b.mask, {a: res[:, rest] for a, res in b.res.items()}))
    # plus d2's ADDs
    add_ids = np.concatenate([a_ids, d2.add_ids])
    order = np.argsort(add_ids, kind="stable")
    r.add_ids = add_ids[order]
    r.add = {a: np.concatenate([a_codes[a], d2.add[a]], axis=1)[:, order] for a in ATTRS}
    r.palette = PaletteSet.merged(d1.palette, d2.palette)
    # UPDATEs of one id in both deltas merge: masks OR, residuals add (modular)
    parts = [x for x in parts if len(x[0])]
    if not parts:
        return r
    ids = sorted_unique(np.concatenate([x[0] for x in parts]))
    mask = np.zeros(len(ids), np.uint8)
    res = {}
    for pids, m, rr in parts:
        pos = np.searchsorted(ids, pids)
        mask[pos] |= np.uint8(m)
        for a, v in rr.items():
            if a not in res:
                res[a] = np.zeros((v.shape[0], len(ids)), v.dtype)
            res[a][:, pos] += v
    r.updates = group_updates(ids, mask, res)
    return r


def _copy(d: Delta) -> Delta:
    return Delta(d.seq, d.base_seq, d.keyframe, d.add_ids.copy(), {a: v.copy() for a, v in d.add.items()},
                 [UpdateBlock(b.mask, b.ids.copy(), {a: v.copy() for a, v in b.res.items()}) for b in d.updates],
                 d.delete_ids.copy(), d.delete_ranges.copy(), {k: v.copy() for k, v in d.delete_cells.items()},
                 d.digest, None if d.palette is None else PaletteSet(d.palette.index.copy(), d.palette.codes.copy()))
