"""A sorted id -> slot index that takes small batches in O(batch + log N).

A large sorted main array, a sorted overlay and a small sorted run of the latest inserts (a
three-level LSM), each with tombstones (slot -1): a batch of inserts merges into the run, the run
into the overlay once it passes RUN_MAX ids, the overlay into the main array once it passes N/8.
So an insert costs O(run) instead of O(overlay), which grew by a delta's adds every frame. A main
array of BACKGROUND_MIN ids or more is merged on a worker thread (``_Compaction``), as that merge and
its cell table cost 30-70 ms at 1M ids, every ~30 frames of 4k adds. Point lookups
go through a hash table of the main array's cells (an id is its cell, then its slot in the cell:
SPEC.md 3.3), so a lookup costs a probe and one or two cache misses instead of a 20-step binary
search over megabytes; range queries are searchsorted on both arrays.
"""
from __future__ import annotations

import threading
from concurrent.futures import Future

import numpy as np

from .errors import ErrorCode, GsdError
from .jit import kernel
from .sections import parallel_map, submit

U64 = np.uint64
_EMPTY_IDS = np.zeros(0, U64)
_EMPTY_SLOTS = np.zeros(0, np.int64)


def sorted_unique(x: np.ndarray) -> np.ndarray:
    """np.unique via sort (numpy's hash-based unique is slow on small uint64 arrays). The stable sort
    (timsort, for 64-bit keys) takes sorted runs in linear time: a retired chunk's slots come sorted,
    and sort 37 times faster than by quicksort (28k slots: 0.02 against 0.85 ms); random input
    sorts about 1.3 times slower."""
    s = np.sort(x, kind="stable")
    if len(s) > 1:
        s = s[np.r_[True, s[1:] != s[:-1]]]
    return s


def sorted_member(x: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """Boolean: x[i] is in sorted_set (ascending)."""
    if len(sorted_set) == 0 or len(x) == 0:
        return np.zeros(len(x), bool)
    pos = np.minimum(np.searchsorted(sorted_set, x), len(sorted_set) - 1)
    return sorted_set[pos] == x


STABLE_SORT_MAX = 1 << 13  # ids up to here are ordered by timsort
SPLIT_SORT_MIN = 1 << 18  # ids from here up are sorted in parts on the section workers, then merged


def id_order(ids: np.ndarray) -> np.ndarray:
    """np.argsort of distinct uint64 ids (any sort is stable on distinct keys), by the sort that
    suits their number. A frame's ids are few and often come in ascending runs (a cell's ADDs),
    which numpy's stable sort (timsort) takes in one pass: a 5k edit's 4,000 random UPDATE ids
    order in 51 instead of quicksort's 118 us, and the two meet at about 8,000 random ids. A large
    array is sorted in two halves at once on the section workers (numpy's sort releases the GIL),
    each with its sorted keys, and the halves are then merged reading those keys in order."""
    n = len(ids)
    if n <= STABLE_SORT_MAX:
        return np.argsort(ids, kind="stable")
    if n < SPLIT_SORT_MIN:
        return np.argsort(ids)
    ids = np.ascontiguousarray(ids, U64)
    h = n // 2

    def half(part):
        o = np.argsort(part)
        return o, part[o]
    (a, ka), (b, kb) = parallel_map(half, [ids[:h], ids[h:]], n * 8)
    out = np.empty(n, np.int64)
    merge_orders(ka, a, kb, b + h, out)
    return out


@kernel
def merge_orders(ka, a, kb, b, out):
    """out = the positions a and b merged by their sorted keys ka, kb (each ascending)."""
    i = 0
    j = 0
    k = 0
    while i < a.shape[0] and j < b.shape[0]:  # without branches: the keys interleave at random
        take_b = np.int64(kb[j] < ka[i])
        out[k] = take_b * b[j] + (1 - take_b) * a[i]
        j += take_b
        i += 1 - take_b
        k += 1
    while i < a.shape[0]:
        out[k] = a[i]
        i += 1
        k += 1
    while j < b.shape[0]:
        out[k] = b[j]
        j += 1
        k += 1


@kernel
def merge_live(main_ids, main_slots, over_ids, over_slots, ids, slots):
    """(ids, slots) = the live entries (slot >= 0) of two levels of IdIndex merged, ascending: one
    linear pass (both are ascending, their live ids disjoint), where sorting them again cost a
    1M-id index tens of milliseconds at every merge; tombstones of either level are dropped. Returns
    how many it wrote (fewer than counted before when a tombstone came in meanwhile: a background
    compaction reads levels that the caller's removals still write)."""
    i = 0
    j = 0
    k = 0
    n = main_ids.shape[0]
    m = over_ids.shape[0]
    while i < n or j < m:
        if i < n and main_slots[i] < 0:
            i += 1
        elif j < m and over_slots[j] < 0:
            j += 1
        elif j >= m or (i < n and main_ids[i] < over_ids[j]):
            ids[k] = main_ids[i]
            slots[k] = main_slots[i]
            i += 1
            k += 1
        else:
            ids[k] = over_ids[j]
            slots[k] = over_slots[j]
            j += 1
            k += 1
    return k


def _expand(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Concatenation of aranges [lo_i, hi_i)."""
    lens = hi - lo
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    offsets = np.repeat(lo - (np.cumsum(lens) - lens), lens)
    return offsets + np.arange(total)


# ------------------------------------------------------------------------------------------ loops
@kernel
def ascending_problem(ids):
    """0 if ids are strictly ascending; 1 if some id repeats (next to itself); else 2 (out of order)."""
    desc = False
    for i in range(1, ids.shape[0]):
        if ids[i] == ids[i - 1]:
            return 1
        desc |= ids[i] < ids[i - 1]
    return 2 if desc else 0


def merge_id_blocks(parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
    """Ids of one op kind from its blocks (SPEC.md 6.2): the block's own array when there is one (the state checks
    its order), else each block checked ascending, then merged in id order (returns the order)."""
    if not parts:
        return np.zeros(0, np.uint64), None
    if len(parts) == 1:
        return parts[0], None
    for ids in parts:
        problem = ascending_problem(ids)
        if problem:
            code = ErrorCode.DUPLICATE_ID if problem == 1 else ErrorCode.BAD_VALUE
            raise GsdError(code, "ids in a block must be strictly ascending")
    ids = np.concatenate(parts)
    order = np.argsort(ids, kind="stable")
    return ids[order], order


_EMPTY_KEY = np.uint64(0xFFFFFFFFFFFFFFFF)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@kernel
def count_cells(ids, slot_bits):
    """Number of distinct cells (id >> slot_bits) in ascending ids."""
    n = 0
    for i in range(ids.shape[0]):
        if i == 0 or (ids[i] >> slot_bits) != (ids[i - 1] >> slot_bits):
            n += 1
    return n


@kernel
def build_cell_table(ids, slot_bits, hash_shift, table):
    """Open-addressing table: row j = (cell, first, end, dense) with ids[first:end] the cell's ids
    (ascending); dense = 1 where those ids are the cell's slots 0..end-first-1 without a gap (as
    assign_ids hands them out), so an id's place in the run is its slot and need not be read to be
    known. One row per 32 bytes, so a probe reads one cache line."""
    m = table.shape[0] - 1
    slot_mask = (np.uint64(1) << slot_bits) - np.uint64(1)
    j = -1
    for i in range(ids.shape[0]):
        cell = ids[i] >> slot_bits
        if i == 0 or cell != (ids[i - 1] >> slot_bits):
            j = np.int64((cell * _GOLDEN) >> hash_shift)
            while table[j, 0] != _EMPTY_KEY:
                j = (j + 1) & m
            table[j, 0] = cell
            table[j, 1] = i
            table[j, 3] = 1
        if np.int64(ids[i] & slot_mask) != i - np.int64(table[j, 1]):
            table[j, 3] = 0
        table[j, 2] = i + 1


@kernel(inline=True)
def _lower(keys, lo, hi, x):
    """Lower bound of x in keys[lo:hi] (ascending): the first position whose key is not below x."""
    while lo < hi:
        m = (lo + hi) >> 1
        if keys[m] < x:
            lo = m + 1
        else:
            hi = m
    return lo


@kernel
def _search(keys, lo, hi, x):
    """Position of x in keys[lo:hi] (ascending), or -1."""
    p = _lower(keys, lo, hi, x)
    if p < hi and keys[p] == x:
        return p
    return -1


@kernel(inline=True)
def _gallop(keys, start, x):
    """Lower bound of x in keys (ascending), given that every key before ``start`` is below x:
    steps of 1, 2, 4, ... from ``start``, then a binary search. Ascending queries each start where
    the last one ended, so a sorted run of them reads nearby memory instead of descending the
    whole array every time."""
    n = keys.shape[0]
    lo = start
    hi = start
    step = 1
    while hi < n and keys[hi] < x:
        lo = hi + 1
        hi = start + step
        step *= 2
    return _lower(keys, lo, min(hi, n), x)


_BATCH = 64  # lookups whose memory reads are issued together


@kernel
def lookup_ids(main_ids, main_slots, table, slot_bits, hash_shift, over_ids, over_slots, q, out, where):
    """out[i] = slot of q[i], or -1 where it is not live (tombstoned in main, absent from both);
    where[i] = its position in main (>= 0), or -2 - its position in the overlay, or -1.

    Main: the cell table gives the cell's run of ids; slots are handed out densely within a cell,
    so the id is usually at run start + its slot (surely so in a dense cell, where an id past the
    run's end is surely absent), else a binary search of the run finds it. Lookups go in batches,
    one step of every lookup at a time (probe the table, find the cell's row, read the entry, check
    it): the batch's cache misses are independent loads, in flight together, instead of dependent
    misses one id after another; a dense cell's id is not read at all, a third fewer misses. The
    overlay is searched from where the previous id's search ended while the ids ascend (a frame's
    ids come in sorted runs)."""
    m = table.shape[0] - 1
    slot_mask = (np.uint64(1) << slot_bits) - np.uint64(1)
    row = np.empty(_BATCH, np.int64)
    guess = np.empty(_BATCH, np.int64)
    sure = np.zeros(_BATCH, np.bool_)
    has_main = main_ids.shape[0] > 0
    touch = np.uint64(0)  # returned, so that the reads of steps 1 and 3 are kept
    n_over = over_ids.shape[0]
    at = 0  # the overlay search's last lower bound
    for s in range(0, q.shape[0], _BATCH):
        e = min(q.shape[0], s + _BATCH)
        if has_main:
            for i in range(s, e):  # 1. each id's home row of the cell table
                j = np.int64(((q[i] >> slot_bits) * _GOLDEN) >> hash_shift)
                row[i - s] = j
                touch += table[j, 0]
            for i in range(s, e):  # 2. its cell's row, and where its slot should be in the run
                cell = q[i] >> slot_bits
                j = row[i - s]
                while table[j, 0] != _EMPTY_KEY and table[j, 0] != cell:
                    j = (j + 1) & m
                p = -1
                dense = False
                if table[j, 0] == cell:
                    p = np.int64(table[j, 1]) + np.int64(q[i] & slot_mask)
                    dense = table[j, 3] != 0
                    if p >= np.int64(table[j, 2]):
                        p = -1 if dense else np.int64(table[j, 2]) - 1
                row[i - s] = j
                guess[i - s] = p
                sure[i - s] = dense
            for i in range(s, e):  # 3. the entry there
                p = guess[i - s]
                if p >= 0:
                    touch += np.uint64(main_slots[p]) + (np.uint64(0) if sure[i - s] else main_ids[p])
        for i in range(s, e):  # 4. check it (else search the run), then the overlay
            x = q[i]
            r = -1
            w = -1
            if has_main and guess[i - s] >= 0:
                p = guess[i - s]
                if not sure[i - s] and main_ids[p] != x:
                    j = row[i - s]
                    p = _search(main_ids, np.int64(table[j, 1]), np.int64(table[j, 2]), x)
                if p >= 0 and main_slots[p] >= 0:
                    r = main_slots[p]
                    w = p
            if r < 0 and n_over > 0:
                if at > 0 and over_ids[at - 1] >= x:
                    at = 0  # the ids went down: search from the start
                p = _gallop(over_ids, at, x)
                at = p
                if p < n_over and over_ids[p] == x and over_slots[p] >= 0:
                    r = over_slots[p]
                    w = -2 - p
            out[i] = r
            where[i] = w
    return touch


RUN_MAX = 8192  # the latest inserts kept apart from the overlay, merged into it past this many
MERGE_MIN = 4096  # an overlay or a count of tombstones in main this small never calls for a merge
BACKGROUND_MIN = 1 << 18  # a main array at least this large is compacted on a worker thread


def _merged(a_ids, a_slots, b_ids, b_slots) -> tuple[np.ndarray, np.ndarray]:
    """The live entries of two levels merged (``merge_live``), in new arrays."""
    n = int(np.count_nonzero(a_slots >= 0)) + int(np.count_nonzero(b_slots >= 0))
    ids, slots = np.empty(n, U64), np.empty(n, np.int64)
    k = merge_live(a_ids, a_slots, b_ids, b_slots, ids, slots)
    return ids[:k], slots[:k]


def _cell_table(ids: np.ndarray, slot_bits: int) -> tuple:
    """The cell table of a main array (``build_cell_table``), with its key shift: O(N), sequential."""
    sb = U64(slot_bits)
    bits = max(4, (2 * count_cells(ids, sb)).bit_length())
    # rows start on cache lines (numpy aligns to 16 bytes): else half of them span two
    raw = np.zeros(((1 << bits) + 2) * 4, U64)
    start = (-raw.ctypes.data // 8) % 8
    table = raw[start:start + (1 << bits) * 4].reshape(-1, 4)
    table[:, 0] = _EMPTY_KEY
    build_cell_table(ids, sb, U64(64 - bits), table)
    return table, sb, U64(64 - bits)


def _compacted(main_ids, main_slots, over_ids, over_slots, slot_bits) -> tuple:
    """A new main array (main and overlay merged, tombstones dropped) and its cell table."""
    ids, slots = _merged(main_ids, main_slots, over_ids, over_slots)
    return ids, slots, _cell_table(ids, slot_bits)


class _Compaction:
    """``_compacted`` of a large index on a worker thread (its kernels run without the GIL), so the
    merge and the table, ~30-70 ms at 1M, do not stall the frame that passes the threshold. Meanwhile
    the index answers from the levels being merged, takes inserts into its run, and logs the ids it
    removes from them, which the swap then removes from the new main array."""

    def __init__(self, idx: "IdIndex"):
        self.removed: list[np.ndarray] = []
        self.result = None
        self.error = None
        args = (idx.main_ids, idx.main_slots, idx.over_ids, idx.over_slots, idx.slot_bits)
        self.thread = threading.Thread(target=self._run, args=args, name="gsd-id-index-compaction", daemon=True)
        self.thread.start()

    def _run(self, *args) -> None:
        try:
            self.result = _compacted(*args)
        except BaseException as e:  # re-raised by the swap, on the caller's thread
            self.error = e

    def done(self) -> bool:
        return not self.thread.is_alive()


class IdIndex:
    def __init__(self, ids: np.ndarray = _EMPTY_IDS, slots: np.ndarray = _EMPTY_SLOTS, slot_bits: int = 0):
        self.main_ids = np.asarray(ids, U64)
        self.main_slots = np.asarray(slots, np.int64)
        self.slot_bits = slot_bits
        self.over_ids = _EMPTY_IDS
        self.over_slots = _EMPTY_SLOTS
        self.run_ids = _EMPTY_IDS
        self.run_slots = _EMPTY_SLOTS
        self.tombstones = 0                  # in the main array
        self._cells = None
        self._compaction = None              # a _Compaction under way

    def copy(self) -> "IdIndex":
        self._settle(wait=True)
        c = IdIndex(self.main_ids.copy(), self.main_slots.copy(), self.slot_bits)
        c.over_ids, c.over_slots, c.tombstones = self.over_ids.copy(), self.over_slots.copy(), self.tombstones
        c.run_ids, c.run_slots = self.run_ids.copy(), self.run_slots.copy()
        return c

    def prepare(self) -> None:
        """Start building a large main array's cell table on a section worker (after a keyframe; its
        kernels run without the GIL), so that the next frame's lookups find it ready instead of
        building it first (20-90 ms at 1M)."""
        if self._cells is None and len(self.main_ids) >= BACKGROUND_MIN:
            self._cells = submit(_cell_table, self.main_ids, self.slot_bits)

    def _table(self):
        """The cell table of the main array, built on first use after each merge (or ahead: ``prepare``)."""
        if self._cells is None:
            self._cells = _cell_table(self.main_ids, self.slot_bits)
        elif isinstance(self._cells, Future):
            self._cells = self._cells.result()
        return self._cells

    def find(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(slot of each id or -1 where not live, where it sits: a handle for ``remove_found``: its
        position in main (>= 0), or -2 - its position in the overlay followed by the run, or -1)."""
        q = np.ascontiguousarray(q, U64)
        out = np.empty(len(q), np.int64)
        where = np.empty(len(q), np.int64)
        table, sb, hs = self._table()
        lookup_ids(self.main_ids, self.main_slots, table, sb, hs, self.over_ids, self.over_slots, q, out, where)
        if len(self.run_ids):
            miss = np.flatnonzero(out < 0)   # ids not live, or in the run
            pos = np.minimum(np.searchsorted(self.run_ids, q[miss]), len(self.run_ids) - 1)
            hit = (self.run_ids[pos] == q[miss]) & (self.run_slots[pos] >= 0)
            out[miss[hit]] = self.run_slots[pos[hit]]
            where[miss[hit]] = -2 - len(self.over_ids) - pos[hit]
        return out, where

    def lookup(self, q: np.ndarray) -> np.ndarray:
        """Slot of each id, -1 where not live."""
        return self.find(q)[0]

    def in_ranges(self, first: np.ndarray, last: np.ndarray) -> np.ndarray:
        """Slots of live ids within any inclusive range [first_i, last_i] (may repeat)."""
        out = []
        for keys, slots in ((self.main_ids, self.main_slots), (self.over_ids, self.over_slots),
                            (self.run_ids, self.run_slots)):
            if len(keys) == 0 or len(first) == 0:
                continue
            lo = np.searchsorted(keys, first, "left")
            hi = np.searchsorted(keys, last, "right")
            s = slots[_expand(lo, hi)]
            out.append(s[s >= 0])
        return np.concatenate(out) if out else _EMPTY_SLOTS

    def remove(self, ids: np.ndarray) -> None:
        """Forget live ids (each must be live)."""
        if len(ids):
            self.remove_found(self.find(ids)[1])

    def remove_found(self, where: np.ndarray) -> None:
        """Forget the live ids that ``find`` located at ``where`` (no lookup again): tombstones, which
        the next merge of their level drops."""
        in_main = where >= 0
        main_pos, p = where[in_main], -2 - where[~in_main]
        n_over = len(self.over_ids)
        over_pos, run_pos = p[p < n_over], p[p >= n_over] - n_over
        if self._compaction is not None:  # the levels being merged: the new main array learns at the swap
            self._compaction.removed.append(np.concatenate([self.main_ids[main_pos], self.over_ids[over_pos]]))
        self.main_slots[main_pos] = -1
        self.tombstones += len(main_pos)
        self.over_slots[over_pos] = -1
        self.run_slots[run_pos] = -1

    def insert(self, ids: np.ndarray, slots: np.ndarray) -> None:
        """Add ids that are not live."""
        if len(ids) == 0:
            return
        ids, slots = np.ascontiguousarray(ids, U64), np.ascontiguousarray(slots, np.int64)
        if ascending_problem(ids):  # usually ascending already
            order = id_order(ids)
            ids, slots = ids[order], slots[order]
        self.run_ids, self.run_slots = _merged(self.run_ids, self.run_slots, ids, slots)
        if self._compaction is not None and not self._settle(wait=False):
            return                              # the run keeps what comes in until the swap
        if len(self.run_ids) > RUN_MAX:
            self._fold_run()
        n = len(self.main_ids)
        if len(self.over_ids) > max(MERGE_MIN, n >> 3) or self.tombstones > max(MERGE_MIN, n >> 2):
            if n >= BACKGROUND_MIN:
                self._compaction = _Compaction(self)
            else:
                self.compact()

    def _settle(self, wait: bool) -> bool:
        """Swap in a background compaction's result once it is done (``wait``: wait for it); True when
        none is under way any more."""
        c = self._compaction
        if c is None:
            return True
        if not wait and not c.done():
            return False
        c.thread.join()
        self._compaction = None
        if c.error is not None:
            raise c.error
        self._install(*c.result)
        if c.removed:                           # removed while it merged: drop them from the new main array
            gone = np.concatenate(c.removed)
            _, where = self.find(gone)
            where = where[where >= 0]
            self.main_slots[where] = -1
            self.tombstones += len(where)
        return True

    def _fold_run(self) -> None:
        """The run's live ids into the overlay (the tombstones of both dropped)."""
        self.over_ids, self.over_slots = _merged(self.over_ids, self.over_slots, self.run_ids, self.run_slots)
        self.run_ids, self.run_slots = _EMPTY_IDS, _EMPTY_SLOTS

    def compact(self) -> None:
        self._settle(wait=True)
        if len(self.run_ids):
            self._fold_run()
        if len(self.over_ids) == 0 and self.tombstones == 0:
            return
        self._install(*_merged(self.main_ids, self.main_slots, self.over_ids, self.over_slots))

    def _install(self, ids: np.ndarray, slots: np.ndarray, cells: tuple | None = None) -> None:
        """A merged main array in place of main and overlay, with its cell table (None: built on first
        use)."""
        self.main_ids, self.main_slots, self._cells = ids, slots, cells
        self.over_ids, self.over_slots, self.tombstones = _EMPTY_IDS, _EMPTY_SLOTS, 0

    def sorted_items(self) -> tuple[np.ndarray, np.ndarray]:
        """All live (ids, slots) in ascending id order."""
        self.compact()
        return self.main_ids, self.main_slots
