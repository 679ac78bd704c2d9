"""compose(d1, d2): one delta equal to applying d1 then d2 (SPEC.md 8).

apply(apply(s, d1), d2) == apply(s, compose(d1, d2)) for every state s on
which the left side succeeds. Residuals are modular, so UPDATE+UPDATE is a sum
and ADD+UPDATE folds the residual into the added code.
"""
from __future__ import annotations

import numpy as np

from .attributes import ATTRS
from .delta import Delta
from .errors import ErrorCode, GsdError
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

    # d1 ADDs that survive d2, with d2's UPDATEs folded in
    keep_a = ~removed_by_d2(d1.add_ids)
    a_ids = d1.add_ids[keep_a]
    a_codes = {a: d1.add[a][:, keep_a].copy() for a in ATTRS}
    upd_in_add = np.isin(d2.update_ids, a_ids, assume_unique=True)
    if upd_in_add.any():
        pos = np.searchsorted(a_ids, d2.update_ids[upd_in_add])
        for a in ATTRS:
            a_codes[a][:, pos] += d2.update[a][:, upd_in_add]
    # plus d2's ADDs
    add_ids = np.concatenate([a_ids, d2.add_ids])
    order = np.argsort(add_ids, kind="stable")
    r.add_ids = add_ids[order]
    r.add = {a: np.concatenate([a_codes[a], d2.add[a]], axis=1)[:, order] for a in ATTRS}

    # d1 UPDATEs that survive d2, merged with d2's UPDATEs of Gaussians d1 did not add
    keep_u = ~removed_by_d2(d1.update_ids)
    u1_ids, u1_mask = d1.update_ids[keep_u], d1.update_mask[keep_u]
    u2 = ~upd_in_add
    u2_ids, u2_mask = d2.update_ids[u2], d2.update_mask[u2]
    ids = np.union1d(u1_ids, u2_ids)
    p1, p2 = np.searchsorted(ids, u1_ids), np.searchsorted(ids, u2_ids)
    mask = np.zeros(len(ids), np.uint8)
    mask[p1] |= u1_mask
    mask[p2] |= u2_mask
    r.update_ids, r.update_mask = ids, mask
    r.update = {}
    for a in ATTRS:
        res = np.zeros((d1.update[a].shape[0], len(ids)), d1.update[a].dtype)
        res[:, p1] += d1.update[a][:, keep_u]
        res[:, p2] += d2.update[a][:, u2]
        r.update[a] = res
    return r


def _copy(d: Delta) -> Delta:
    return Delta(d.seq, d.base_seq, d.keyframe, d.add_ids.copy(), {a: v.copy() for a, v in d.add.items()},
                 d.update_ids.copy(), d.update_mask.copy(), {a: v.copy() for a, v in d.update.items()},
                 d.delete_ids.copy(), d.delete_ranges.copy(), {k: v.copy() for k, v in d.delete_cells.items()},
                 d.digest)
