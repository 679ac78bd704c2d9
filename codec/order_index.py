"""The live ids in ascending order, by rank: what ranked blocks need (SPEC.md 6.1, ranked ids).

A rank is an id's position among the live ids, so a decoder turns ranks into ids (select) and an
encoder ids into ranks (rank) against the state before each frame. A flat sorted array would answer
both by indexing and binary search, but every frame's adds and deletes would move the whole array
(8 MB at 1M ids). Here the ids sit in blocks of at most BLOCK, each sorted, chained in ascending
order: a frame's changes rewrite only the blocks they land in, and a query first finds its block
(a binary search over the blocks' first ids or running counts, arrays of one entry per block that
stay in cache, rebuilt once per frame), then its place in the block.
The blocks live in one (capacity, BLOCK) array; ``order`` lists them in id order, so a split block
appends its new half anywhere and only ``order`` shifts.
"""
from __future__ import annotations

import numpy as np

from .id_index import ascending_problem
from .jit import kernel

U64 = np.uint64
BLOCK = 128        # most ids in a block; a full block splits into halves, a bulk build fills them half
_FILL = BLOCK // 2


@kernel(inline=True)
def _lower(keys, p, lo, hi, x):
    """First r in [lo, hi) with keys[p, r] >= x (hi if none)."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if keys[p, mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@kernel
def locate_sorted(first, ids, logical):
    """logical[i] = the last block whose first id is <= ids[i] (ascending), else block 0: one walk
    along ``first`` beside the ids, O(len(ids) + blocks), where a search per id cost ~14 steps."""
    b = 0
    nb = first.shape[0]
    for i in range(ids.shape[0]):
        x = ids[i]
        while b + 1 < nb and first[b + 1] <= x:
            b += 1
        logical[i] = b


@kernel
def rank_in_blocks(keys, cnt, order, ids, logical, below, out):
    """out[i] = the rank of ids[i] (ascending): the ids before its block, then its place in the
    block, searched on from the previous id's place when it is in the same block."""
    lo = 0
    for i in range(ids.shape[0]):
        p = order[logical[i]]
        if i == 0 or logical[i] != logical[i - 1]:
            lo = 0
        lo = _lower(keys, p, lo, cnt[p], ids[i])
        out[i] = below[i] + lo


@kernel
def remove_from_blocks(keys, cnt, head, phys, ids):
    """Drop ``ids`` (ascending, each in its block phys[i], equal phys in runs) from their blocks;
    a block's ids below the first one dropped stay where they are."""
    i = 0
    n = ids.shape[0]
    while i < n:
        p = phys[i]
        j = i
        while j < n and phys[j] == p:
            j += 1
        w = _lower(keys, p, 0, cnt[p], ids[i])
        k = i
        for r in range(w, cnt[p]):
            v = keys[p, r]
            if k < j and ids[k] == v:
                k += 1
            else:
                keys[p, w] = v
                w += 1
        cnt[p] = w
        if w:
            head[p] = keys[p, 0]
        i = j


@kernel
def insert_into_blocks(keys, cnt, head, order, logical, ids, spare, new_order, buf):
    """Merge ``ids`` (ascending, new) into the logical blocks ``logical[i]`` (ascending). A block with
    room merges in place from its end, so its ids below the first new one stay put; one that would
    hold more than its capacity is split into blocks of about half that, the extra ones taken from
    ``spare``. Writes the blocks' new id order into ``new_order``; returns its length."""
    cap = keys.shape[1]
    half = cap // 2
    i = 0
    n = ids.shape[0]
    used = 0
    out = 0
    for b in range(order.shape[0]):
        p = order[b]
        if i >= n or logical[i] != b:
            new_order[out] = p
            out += 1
            continue
        j = i
        while j < n and logical[j] == b:
            j += 1
        c = cnt[p]
        m = c + j - i
        if m <= cap:
            a = c - 1
            k = j - 1
            for w in range(m - 1, -1, -1):
                if k < i:
                    break
                if a >= 0 and keys[p, a] > ids[k]:
                    keys[p, w] = keys[p, a]
                    a -= 1
                else:
                    keys[p, w] = ids[k]
                    k -= 1
            cnt[p] = m
            head[p] = keys[p, 0]
            new_order[out] = p
            out += 1
            i = j
            continue
        a = 0
        k = i
        for w in range(m):
            if k >= j or (a < c and keys[p, a] < ids[k]):
                buf[w] = keys[p, a]
                a += 1
            else:
                buf[w] = ids[k]
                k += 1
        parts = (m + half - 1) // half
        start = 0
        for q in range(parts):
            end = (m * (q + 1)) // parts
            dst = p
            if q > 0:
                dst = spare[used]
                used += 1
            for r in range(start, end):
                keys[dst, r - start] = buf[r]
            cnt[dst] = end - start
            head[dst] = keys[dst, 0]
            new_order[out] = dst
            out += 1
            start = end
        i = j
    return out


class OrderIndex:
    """Ascending live ids with rank <-> id in O(log N) and a frame's changes in O(changes x BLOCK)."""

    def __init__(self, ids: np.ndarray = np.zeros(0, U64)):
        ids = np.ascontiguousarray(ids, U64)
        n = len(ids)
        nb = -(-n // _FILL)
        self.keys = np.zeros((max(nb, 1), BLOCK), U64)
        self.cnt = np.zeros(max(nb, 1), np.int64)
        if n:
            full = n // _FILL
            self.keys[:full, :_FILL] = ids[:full * _FILL].reshape(full, _FILL)
            self.keys[full:nb, :n - full * _FILL] = ids[full * _FILL:]
            self.cnt[:nb] = _FILL
            self.cnt[nb - 1] = n - (nb - 1) * _FILL
        self.head = self.keys[:, 0].copy()   # each block's first id: the walks read these, not the blocks
        self.order = np.arange(nb, dtype=np.int64)
        self.free = list(range(max(nb, 1) - 1, nb - 1, -1))  # physical blocks not in ``order``
        self.n = n
        self._view = None

    def _blocks(self) -> tuple[np.ndarray, np.ndarray]:
        """(first id, ids before) of each block in order: what a query searches, rebuilt after a change."""
        if self._view is None:
            c = self.cnt[self.order]
            below = np.zeros(len(c), np.int64)
            np.cumsum(c[:-1], out=below[1:])
            self._view = (self.head[self.order], below)
        return self._view

    def __len__(self) -> int:
        return self.n

    def copy(self) -> "OrderIndex":
        c = OrderIndex.__new__(OrderIndex)
        c.keys, c.cnt, c.head, c.order = self.keys.copy(), self.cnt.copy(), self.head.copy(), self.order.copy()
        c.free, c.n, c._view = list(self.free), self.n, None
        return c

    def ids(self) -> np.ndarray:
        """Every id, ascending (for tests and checks)."""
        return np.concatenate([self.keys[p, :self.cnt[p]] for p in self.order]) if len(self.order) else np.zeros(0, U64)

    def _locate(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The logical block of each of the ascending ``ids`` (the last whose first id is <= it, else
        the first) and the number of ids before that block."""
        first, below = self._blocks()
        if 16 * len(ids) < len(first):   # a few ids: a search each beats a walk along every block
            logical = np.searchsorted(first, ids, "right") - 1
            np.maximum(logical, 0, out=logical)
        else:
            logical = np.empty(len(ids), np.int64)
            locate_sorted(first, ids, logical)
        return logical, below[logical]

    def select(self, ranks: np.ndarray) -> np.ndarray:
        """The ids of these ranks (each below len(self))."""
        r = np.asarray(ranks, np.int64)
        _, below = self._blocks()
        b = np.searchsorted(below, r, "right") - 1
        return self.keys[self.order[b], r - below[b]]

    def rank(self, ids: np.ndarray) -> np.ndarray:
        """The ranks (int64) of live ``ids`` (any order, ascending is fastest)."""
        ids = np.ascontiguousarray(ids, U64)
        if ascending_problem(ids) == 2:
            o = np.argsort(ids, kind="stable")
            out = np.empty(len(ids), np.int64)
            out[o] = self.rank(ids[o])
            return out
        out = np.empty(len(ids), np.int64)
        if len(ids):
            logical, below = self._locate(ids)
            rank_in_blocks(self.keys, self.cnt, self.order, ids, logical, below, out)
        return out

    def update(self, removed: np.ndarray, added: np.ndarray) -> None:
        """Forget ``removed`` (live, ascending), then take ``added`` (not live, ascending)."""
        if not len(removed) and not len(added):
            return
        self._view = None
        if len(removed):
            self._remove(np.ascontiguousarray(removed, U64))
        if len(added):
            self._insert(np.ascontiguousarray(added, U64))
        if len(self.order) > 4 * self.n // BLOCK + 16:  # deletes left many thin blocks: rebuild half full
            self.__init__(self.ids())

    def _remove(self, ids: np.ndarray) -> None:
        logical, _ = self._locate(ids)
        remove_from_blocks(self.keys, self.cnt, self.head, self.order[logical], ids)
        self.n -= len(ids)
        self._view = None
        empty = self.cnt[self.order] == 0
        if empty.any():
            self.free += self.order[empty].tolist()
            self.order = self.order[~empty]

    def _insert(self, ids: np.ndarray) -> None:
        if not len(self.order):                      # an empty index: one block to merge into
            self.order = np.array([self.free.pop()], np.int64)
            self.cnt[self.order[0]] = 0
            self.head[self.order[0]] = 0
            self._view = None
        logical, _ = self._locate(ids)
        touched = int(np.count_nonzero(np.diff(logical))) + 1
        need = 2 * touched + 2 * len(ids) // BLOCK + 2   # most blocks the splits can make
        if need > len(self.free):
            old = self.keys.shape[0]
            grow = max(need - len(self.free), old)
            self.keys = np.concatenate([self.keys, np.zeros((grow, BLOCK), U64)])
            self.cnt = np.concatenate([self.cnt, np.zeros(grow, np.int64)])
            self.head = np.concatenate([self.head, np.zeros(grow, U64)])
            self.free += list(range(old + grow - 1, old - 1, -1))
        spare = np.array(self.free[-need:][::-1], np.int64)
        new_order = np.empty(len(self.order) + need, np.int64)
        buf = np.empty(BLOCK + len(ids), U64)
        k = insert_into_blocks(self.keys, self.cnt, self.head, self.order, logical, ids, spare, new_order, buf)
        used = k - len(self.order)
        if used:                                      # spare[:used] are the last ``used`` free blocks
            del self.free[-used:]
        self.order = new_order[:k]
        self.n += len(ids)
        self._view = None
