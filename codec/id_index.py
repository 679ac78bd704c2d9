"""A sorted id -> slot index that takes small batches in O(batch + log N).

A large sorted main array with tombstones plus a small sorted overlay for
recent inserts (a two-level LSM). Lookups and range queries are searchsorted on
both; the overlay is merged into the main array when it grows past N/8.
"""
from __future__ import annotations

import numpy as np

U64 = np.uint64
_EMPTY_IDS = np.zeros(0, U64)
_EMPTY_SLOTS = np.zeros(0, np.int64)


def sorted_unique(x: np.ndarray) -> np.ndarray:
    """np.unique via sort (numpy's hash-based unique is slow on small uint64 arrays)."""
    s = np.sort(x)
    if len(s) > 1:
        s = s[np.r_[True, s[1:] != s[:-1]]]
    return s


def sorted_member(x: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """Boolean: x[i] is in sorted_set (ascending)."""
    if len(sorted_set) == 0 or len(x) == 0:
        return np.zeros(len(x), bool)
    pos = np.minimum(np.searchsorted(sorted_set, x), len(sorted_set) - 1)
    return sorted_set[pos] == x


def _find(keys: np.ndarray, slots: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of q in keys (clipped) and the slot found there, -1 where absent or tombstoned."""
    if len(keys) == 0:
        return np.zeros(len(q), np.int64), np.full(len(q), -1, np.int64)
    pos = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
    found = np.where(keys[pos] == q, slots[pos], -1)
    return pos, found


def _expand(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Concatenation of aranges [lo_i, hi_i)."""
    lens = hi - lo
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    offsets = np.repeat(lo - (np.cumsum(lens) - lens), lens)
    return offsets + np.arange(total)


class IdIndex:
    def __init__(self, ids: np.ndarray = _EMPTY_IDS, slots: np.ndarray = _EMPTY_SLOTS):
        self.main_ids = np.asarray(ids, U64)
        self.main_slots = np.asarray(slots, np.int64)
        self.over_ids = _EMPTY_IDS
        self.over_slots = _EMPTY_SLOTS
        self.tombstones = 0

    def copy(self) -> "IdIndex":
        c = IdIndex(self.main_ids.copy(), self.main_slots.copy())
        c.over_ids, c.over_slots, c.tombstones = self.over_ids.copy(), self.over_slots.copy(), self.tombstones
        return c

    def lookup(self, q: np.ndarray) -> np.ndarray:
        """Slot of each id, -1 where not live."""
        q = np.asarray(q, U64)
        _, found = _find(self.main_ids, self.main_slots, q)
        miss = found < 0
        if miss.any() and len(self.over_ids):
            _, f2 = _find(self.over_ids, self.over_slots, q[miss])
            found[miss] = f2
        return found

    def in_ranges(self, first: np.ndarray, last: np.ndarray) -> np.ndarray:
        """Slots of live ids within any inclusive range [first_i, last_i] (may repeat)."""
        out = []
        for keys, slots in ((self.main_ids, self.main_slots), (self.over_ids, self.over_slots)):
            if len(keys) == 0 or len(first) == 0:
                continue
            lo = np.searchsorted(keys, first, "left")
            hi = np.searchsorted(keys, last, "right")
            s = slots[_expand(lo, hi)]
            out.append(s[s >= 0])
        return np.concatenate(out) if out else _EMPTY_SLOTS

    def remove(self, ids: np.ndarray) -> None:
        """Forget live ids (each must be live)."""
        if len(ids) == 0:
            return
        ids = np.asarray(ids, U64)
        pos, found = _find(self.main_ids, self.main_slots, ids)
        in_main = found >= 0
        self.main_slots[pos[in_main]] = -1
        self.tombstones += int(in_main.sum())
        rest = ids[~in_main]
        if len(rest):
            keep = ~sorted_member(self.over_ids, np.sort(rest))
            self.over_ids, self.over_slots = self.over_ids[keep], self.over_slots[keep]

    def insert(self, ids: np.ndarray, slots: np.ndarray) -> None:
        """Add ids that are not live."""
        if len(ids) == 0:
            return
        ids = np.concatenate([self.over_ids, np.asarray(ids, U64)])
        slots = np.concatenate([self.over_slots, np.asarray(slots, np.int64)])
        order = np.argsort(ids, kind="stable")
        self.over_ids, self.over_slots = ids[order], slots[order]
        if len(self.over_ids) > max(4096, len(self.main_ids) >> 3) or self.tombstones > max(4096, len(self.main_ids) >> 2):
            self.compact()

    def compact(self) -> None:
        live = self.main_slots >= 0
        ids = np.concatenate([self.main_ids[live], self.over_ids])
        slots = np.concatenate([self.main_slots[live], self.over_slots])
        order = np.argsort(ids, kind="stable")
        self.main_ids, self.main_slots = ids[order], slots[order]
        self.over_ids, self.over_slots, self.tombstones = _EMPTY_IDS, _EMPTY_SLOTS, 0

    def sorted_items(self) -> tuple[np.ndarray, np.ndarray]:
        """All live (ids, slots) in ascending id order."""
        self.compact()
        return self.main_ids, self.main_slots
