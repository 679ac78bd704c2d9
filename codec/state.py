"""SceneState: live Gaussians by id, in code space, and all-or-nothing apply (SPEC.md 6.3).

Storage is slot based (like the viewer's GPU buffers): planar (C, capacity) code arrays and an
id -> slot index. New rows go to the tail while the arrays have room there; the arrays double up to
twice the live rows (or the budget, or a reserved size), and past that new rows take the slots that
deletes freed: a scene whose adds and deletes balance stops growing and never needs compacting;
holes pile up only where the scene shrinks, and are compacted in bulk when they outnumber the live
rows.

apply() first validates the frame's ids, deletes and adds without touching the state; then applies
its UPDATE blocks in place, keeping the old codes as an undo record (one pass over each updated row
instead of a read pass now and a write pass at the commit); then checks the budget and the digest,
and on any failure puts the updated rows back before raising. Only then does it commit deletes and
adds. A frame's ranked blocks (SPEC.md 6.1) are resolved to ids first, against the live ids in
rank order (an ``OrderIndex``, built the first time a frame needs it and kept up to date after).
"""
from __future__ import annotations

from concurrent.futures import Future

import numpy as np

from .attributes import ATTRS, Attr, Gaussians, full_mask, mask_attrs
from .delta import Delta, PaletteSet, UpdateBlock
from .digest import (M32, Digest, fmix, lane_constants, lane_sums, lane_sums_all, lane_sums_at,
                     row_accumulators, unsigned)
from .errors import ErrorCode, GsdError
from .id_index import IdIndex, ascending_problem, merge_id_blocks, sorted_member, sorted_unique
from .jit import kernel
from .limits import SPEC_LIMITS, Limits
from .order_index import OrderIndex
from .profile import Profile, code_ok, invalid_codes
from .sections import parallel_map, submit

U64 = np.uint64
_M = np.uint64(M32)
_TWO32 = np.uint64(1 << 32)
_NO_ACC = np.zeros((2, 0), np.uint32)
_NO_SLOTS = np.zeros(0, np.int64)
_ENTRY_TAG = U64(0xFFFFFFFF) << U64(32)  # a palette entry's record: w_0 = index, w_1 = 0xFFFFFFFF (SPEC.md 7.1)


_BATCH = 64  # columns whose cache lines are read together before they are updated
GROW_AHEAD_MIN = 1 << 18  # a keyframe this large, in a stream with room for more, grows on a worker


def _moved(storage: tuple, cap: int, cols) -> tuple:
    """(codes, slot_ids, accs) in new arrays of capacity ``cap`` whose first columns are ``cols``."""
    def moved(old):
        new = np.zeros(old.shape[:-1] + (cap,), old.dtype)
        taken = old[..., cols]
        new[..., :taken.shape[-1]] = taken
        return new
    codes, slot_ids, accs = storage
    return {a: moved(c) for a, c in codes.items()}, moved(slot_ids), moved(accs)


def _grown(storage: tuple, cap: int) -> tuple | None:
    """A keyframe's (codes, slot_ids, accs) copied into arrays of capacity ``cap`` (made on a section
    worker while the state waits for its next frame); None where there is no memory for them now."""
    try:
        return _moved(storage, cap, slice(0, storage[1].shape[0]))
    except MemoryError:  # the state grows when it must, as without this
        return None


@kernel
def update_in_place(state, slots, res, lo, hi, signed_bits, finite, k0, k1, acc, hashed, old):
    """One attribute of one UPDATE block, in place: state[:, slots] += res (wrapping), the old codes
    kept in ``old`` (the undo record); with ``hashed``, acc += (zext(new) - zext(old)) * K per
    component (mod 2^32). Arrays are unsigned views; slots are distinct. If a new code is outside
    its domain, the codes this call wrote are put back and it returns True.

    Columns go in batches, as in ``add_accumulators``: the batch's old codes are read first (into
    ``old``: independent loads whose cache misses overlap), then updated from cache."""
    for c in range(res.shape[0]):
        a = np.uint64(k0[c])
        b = np.uint64(k1[c])
        for s0 in range(0, res.shape[1], _BATCH):
            e = min(res.shape[1], s0 + _BATCH)
            for i in range(s0, e):
                old[c, i] = state[c, slots[i]]
            for i in range(s0, e):
                s = slots[i]
                was = old[c, i]
                state[c, s] = was + res[c, i]  # stored first: the sum wraps at the code's width
                new = state[c, s]
                if not code_ok(new, lo[c], hi[c], signed_bits, finite):
                    for c2 in range(c + 1):
                        for i2 in range(res.shape[1] if c2 < c else i + 1):
                            state[c2, slots[i2]] = old[c2, i2]
                    return True
                if hashed:
                    w = (np.uint64(new) + _TWO32 - np.uint64(was)) & _M
                    acc[0, i] = (np.uint64(acc[0, i]) + w * a) & _M
                    acc[1, i] = (np.uint64(acc[1, i]) + w * b) & _M
    return False


@kernel
def slots_hold(slot_ids, high, slots, ids):
    """True if every slots[i] is a slot below ``high`` that holds ids[i]: an UPDATE block's slots as
    the encoder found them (``Delta.slot_hint``) are then this state's, with no lookup. One pass,
    where the checks one by one took four and a gathered copy."""
    if slots.shape[0] != ids.shape[0]:
        return False
    for i in range(slots.shape[0]):
        s = slots[i]
        if s < 0 or s >= high or slot_ids[s] != ids[i]:
            return False
    return True


@kernel
def add_accumulators(accs, slots, delta):
    """accs[:, slots] += delta (mod 2^32), ``delta`` then holding the old columns (the undo record).
    Returns the lane sums of the old columns and of the new ones, and a value of no meaning.

    Columns go in batches: first both lines of every column of the batch are read (independent
    loads, their misses overlap: the returned ``touch`` keeps them from being optimised away),
    then the batch is updated from cache: twice as fast here as one column after another."""
    o0 = np.uint64(0)
    o1 = np.uint64(0)
    n0 = np.uint64(0)
    n1 = np.uint64(0)
    touch = np.uint64(0)
    for s0 in range(0, slots.shape[0], _BATCH):
        e = min(slots.shape[0], s0 + _BATCH)
        for i in range(s0, e):
            touch += np.uint64(accs[0, slots[i]]) + np.uint64(accs[1, slots[i]])
        for i in range(s0, e):
            s = slots[i]
            w0 = accs[0, s]
            w1 = accs[1, s]
            accs[0, s] = w0 + delta[0, i]
            accs[1, s] = w1 + delta[1, i]
            delta[0, i] = w0
            delta[1, i] = w1
            o0 += fmix(np.uint64(w0))
            o1 += fmix(np.uint64(w1))
            n0 += fmix(np.uint64(accs[0, s]))
            n1 += fmix(np.uint64(accs[1, s]))
    return o0 & _M, o1 & _M, n0 & _M, n1 & _M, touch


@kernel
def gather(src, slots):
    """src[:, slots] (a new array)."""
    out = np.empty((src.shape[0], slots.shape[0]), src.dtype)
    for c in range(src.shape[0]):
        for i in range(slots.shape[0]):
            out[c, i] = src[c, slots[i]]
    return out


@kernel
def scatter(dst, slots, src):
    """dst[:, slots] = src."""
    for c in range(src.shape[0]):
        for i in range(slots.shape[0]):
            dst[c, slots[i]] = src[c, i]


def _check_sorted(ids: np.ndarray, what: str) -> None:
    problem = ascending_problem(ids) if len(ids) > 1 else 0
    if problem == 1:
        raise GsdError(ErrorCode.DUPLICATE_ID, f"{what}: id repeated")
    if problem:
        raise GsdError(ErrorCode.BAD_VALUE, f"{what}: ids not ascending")


class SceneState:
    COMPACT_MIN = 1 << 16  # holes that never call for a compaction, however few the live rows

    def __init__(self, profile: Profile, limits: Limits = SPEC_LIMITS, max_gaussians: int = 0):
        self.profile = profile
        self.limits = limits
        self.max_gaussians = min(max_gaussians or limits.max_gaussians, limits.max_gaussians)
        self.budget_declared = bool(max_gaussians)  # the stream says it may hold more than its keyframe
        self._growing: Future | None = None  # arrays grown ahead (grow_ahead), of _grown
        offsets = np.cumsum([2] + [profile.comps(a) for a in ATTRS])
        self._word_offset = {a: int(offsets[i]) for i, a in enumerate(ATTRS)}
        k = lane_constants(int(offsets[-1]))
        self._k0, self._k1 = k[0].copy(), k[1].copy()
        self._clear_palette()
        self._reset(0)
        self.seq = 0
        self._version = 0

    # -- storage ---------------------------------------------------------------------
    def _reset(self, capacity: int) -> None:
        p = self.profile
        self.codes = {a: np.zeros((p.comps(a), capacity), p.dtype(a)) for a in ATTRS}
        self.slot_ids = np.zeros(capacity, U64)
        self.accs = np.zeros((2, capacity), np.uint32)  # per-slot digest accumulators (SPEC.md 7)
        self.index = IdIndex(slot_bits=self.profile.grid.slot_bits)
        self._order = None     # OrderIndex of the live ids (ranked blocks), once one was needed
        self.high = 0          # slots [0, high) have been used
        self.holes = 0         # slots below high that hold no live Gaussian: free[:holes]
        self.free = np.zeros(0, np.int64)
        self.reserved = 0      # Gaussians the caller expects to hold at most (``reserve``)
        self.added = _NO_SLOTS # the slots the last delta's ADDs took, in its id order (a keyframe's: 0..n-1)
        self.compactions = 0   # bulk compactions so far (a mirror of the slots follows them)
        self.count = 0
        self.sums = (0, 0)
        self.hashed = True     # hashes/sums are maintained (False after an unhashed bulk load)

    def reserve(self, n: int) -> None:
        """Room for ``n`` Gaussians in slots (within the budget) now: a state that will fill up frame by
        frame (a client being refined) then writes into fresh pages as it goes, instead of copying its
        arrays at each doubling; while it holds at most ``n``, ADDs take freed slots before it grows."""
        self.reserved = min(int(n), self.max_gaussians)
        self._settle_growth()
        self._grow(self.reserved)

    def _grow(self, need: int) -> None:
        """Room for slots [0, need): doubling, but not past the budget (at the budget, ADDs take freed
        slots, so the arrays never need more slots than the budget allows Gaussians)."""
        cap = self.slot_ids.shape[0]
        if need > cap:
            self._reallocate(max(need, min(max(cap * 2, 1024), self.max_gaussians)), slice(0, cap))

    def _reallocate(self, cap: int, cols) -> None:
        """New arrays of capacity ``cap`` whose first columns are the old arrays' columns ``cols``."""
        self.codes, self.slot_ids, self.accs = _moved((self.codes, self.slot_ids, self.accs), cap, cols)

    def grow_ahead(self) -> None:
        """Just after a large keyframe, in a stream whose budget has room for more (a live stream's
        decoder): the growth its first ADD would make (doubling, within the budget), started now on
        a worker, to be swapped in by the next ``apply``. A state that will ``reserve`` room has no
        use for it."""
        n = self.slot_ids.shape[0]
        if self.budget_declared and n >= GROW_AHEAD_MIN and self.max_gaussians > n and self.high == n:
            cap = min(2 * n, self.max_gaussians)
            self._growing = submit(_grown, (self.codes, self.slot_ids, self.accs), cap)

    def _settle_growth(self, keep: bool = True) -> None:
        """Swap in the arrays grown ahead (waiting for them), or drop them (``keep`` False). Either
        way before the state changes: the copy is of what it holds until then."""
        g, self._growing = self._growing, None
        if g is None:
            return
        if not keep:
            g.cancel()  # not begun: it never runs; under way: its copy is dropped when done
            return
        grown = g.result()
        if grown is not None:
            self.codes, self.slot_ids, self.accs = grown

    def _clear_palette(self) -> None:
        """The SH palette (SPEC.md 5.9): ``palette`` entries of zero codes, none contributing to the digest."""
        p = self.profile
        self.palette = np.zeros((p.rest_comps, p.palette), p.rest_dtype) if p.palette else None
        self.palette_accs = np.zeros((2, p.palette), np.uint32) if p.palette else None
        self.palette_sums = (0, 0)
        # live Gaussians per entry (not part of the state's meaning: it tells an encoder which
        # entries it may overwrite without scanning every live Gaussian)
        self.palette_uses = np.zeros(p.palette, np.int64) if p.palette else None

    def _count_uses(self, indices: np.ndarray, by: int) -> None:
        np.add.at(self.palette_uses, indices.astype(np.int64), by)

    def palette_set(self) -> PaletteSet | None:
        """The palette's non-zero entries (all a keyframe must set: it starts from zeros); None without one."""
        if self.palette is None:
            return None
        index = np.flatnonzero(self.palette.any(axis=0)).astype(np.uint16)
        return PaletteSet(index, self.palette[:, index])

    def __len__(self) -> int:
        return self.count

    def token(self) -> tuple:
        """Changes whenever the state does: slots looked up under one token hold while it is current."""
        return (id(self), self._version)

    def copy(self) -> "SceneState":
        c = SceneState.__new__(SceneState)
        c.__dict__.update(self.__dict__)
        c.codes = {a: v.copy() for a, v in self.codes.items()}
        c.slot_ids, c.accs, c.free = self.slot_ids.copy(), self.accs.copy(), self.free.copy()
        c.index = self.index.copy()
        c._order = None if self._order is None else self._order.copy()
        c._growing = None  # arrays grown ahead belong to this state; the copy grows when it must
        if self.palette is not None:
            c.palette, c.palette_accs, c.palette_uses = self.palette.copy(), self.palette_accs.copy(), \
                self.palette_uses.copy()
        return c

    # -- queries -----------------------------------------------------------------------
    def ids(self) -> np.ndarray:
        """Live ids, ascending."""
        return self.index.sorted_items()[0].copy()

    def slots_of(self, ids: np.ndarray) -> np.ndarray:
        return self.index.lookup(ids)

    def order(self) -> OrderIndex:
        """The live ids by rank (SPEC.md 6.1, ranked ids): built on first use, then kept up to date by
        every frame this state applies, so that a stream without ranked blocks never pays for it."""
        if self._order is None:
            self._order = OrderIndex(self.index.sorted_items()[0])
        return self._order

    def ranks_of(self, ids: np.ndarray) -> np.ndarray:
        """The ranks of live ``ids`` among the live ids (what a ranked block sends for them)."""
        return self.order().rank(ids)

    def codes_of(self, ids: np.ndarray, attrs=ATTRS) -> dict:
        """{Attr: (C, n)} codes of live ids, for ``attrs``; KeyError if an id is not live."""
        s = self.index.lookup(ids)
        if (s < 0).any():
            raise KeyError("id not live")
        return self.codes_at(s, attrs)

    def codes_at(self, slots: np.ndarray, attrs=ATTRS) -> dict:
        """{Attr: (C, n)} codes of the Gaussians in ``slots`` (live slots, e.g. from ``slots_of``)."""
        return {a: self.codes[a][:, slots] for a in attrs}

    def live_slots(self) -> tuple[np.ndarray, np.ndarray]:
        """Live ids ascending and the slot each is stored in (a mirror of the storage copies the
        code arrays up to ``high`` and this index, and then follows ``added`` and ``compactions``)."""
        ids, slots = self.index.sorted_items()
        return ids.copy(), slots.copy()

    def sorted_codes(self) -> tuple[np.ndarray, dict]:
        ids, slots = self.index.sorted_items()
        return ids.copy(), self.codes_at(slots)

    def rest_codes_of(self, codes: np.ndarray) -> np.ndarray:
        """(3K, n) SH_REST component codes of Gaussians whose SH_REST codes are ``codes``: the codes
        themselves, or in a palette stream the entries those indices name."""
        return self.palette[:, codes[0]] if self.palette is not None else codes

    def floats(self, ids: np.ndarray, codes: dict) -> dict:
        """{Attr: (n, C) float32} of Gaussians with these ids and codes: what a decoder shows."""
        p = self.profile
        out = {a: p.dequantize(a, codes[a], ids) for a in ATTRS if a is not Attr.SH_REST or not p.palette}
        if p.palette:
            out[Attr.SH_REST] = p.dequantize_rest(self.rest_codes_of(codes[Attr.SH_REST]))
        return out

    def to_gaussians(self) -> tuple[np.ndarray, Gaussians]:
        """Live ids ascending and their dequantized float attributes."""
        ids, codes = self.sorted_codes()
        return ids, Gaussians.from_attributes(self.floats(ids, codes))

    def digest(self) -> Digest:
        if not self.hashed:
            self._rehash()
        s0, s1 = self.sums
        return Digest(self.count, (s0 + self.palette_sums[0]) & M32, (s1 + self.palette_sums[1]) & M32)

    def _rehash(self) -> None:
        ids, slots = self.index.sorted_items()
        self.accs[:, slots] = row_accumulators(ids, [self.codes[a][:, slots] for a in ATTRS])
        self.sums = lane_sums(self.accs[:, slots])
        self.hashed = True

    def equals(self, other: "SceneState") -> bool:
        a_ids, a = self.sorted_codes()
        b_ids, b = other.sorted_codes()
        same_palette = self.palette is None or np.array_equal(self.palette, other.palette)
        return same_palette and np.array_equal(a_ids, b_ids) and all(np.array_equal(a[k], b[k]) for k in ATTRS)

    # -- apply -------------------------------------------------------------------------------
    def apply(self, d: Delta, check_seq: bool = True, adopt: bool = False, track_digest: bool = False,
              on_valid=None) -> None:
        """Apply a frame all-or-nothing; raises GsdError and leaves the state as it was.

        ``adopt`` lets a keyframe's arrays become the state's storage without a copy
        (only for a Delta nobody else holds, e.g. one just decoded). ``track_digest``
        keeps the digest up to date even when the frame carries none (an encoder about
        to write one), which is cheaper than hashing the whole state afterwards.
        ``on_valid()`` is called once the delta's shapes, types and id order are checked, before
        the rest (an encoder then starts writing the frame, which is safe to build from there on).
        """
        self._settle_growth(keep=not d.keyframe)  # before the plan: it updates rows in place
        plan = self._plan(d, check_seq, track_digest, on_valid)
        plan["adopt"] = adopt
        self._commit(d, plan)

    def _validate_delta(self, d: Delta) -> None:
        p = self.profile
        limit = U64(p.grid.id_limit)
        fmask = full_mask(p.sh_degree)
        named = [(d.add_ids, "ADD"), (d.delete_ids, "DELETE_IDS")] + [(b.ids, "UPDATE") for b in d.updates]
        for ids, what in named:
            _check_sorted(ids, what)
            if len(ids) and ids[-1] >= limit:
                raise GsdError(ErrorCode.BAD_VALUE, f"{what}: id outside the grid's id space")
        n_upd = d.n_update
        if len(d.add_ids) + n_upd + len(d.delete_ids) > self.limits.max_ids_per_frame:
            raise GsdError(ErrorCode.LIMIT_EXCEEDED, "too many ids in one frame")
        if d.updates and (len(d.updates) > 1 or len(d.add_ids)):
            ids = np.sort(np.concatenate([d.add_ids] + [b.ids for b in d.updates]), kind="stable")
            if len(ids) > 1 and (ids[1:] == ids[:-1]).any():
                raise GsdError(ErrorCode.DUPLICATE_ID, "an id is in two UPDATE blocks, or both ADDed and UPDATEd")
        r = d.delete_ranges
        if len(r) and ((r[:, 0] > r[:, 1]).any() or (r >= limit).any()):
            raise GsdError(ErrorCode.BAD_VALUE, "DELETE_RANGES: first > last or outside the id space")
        for level, cells in d.delete_cells.items():
            if not (0 <= level <= p.grid.cell_bits):
                raise GsdError(ErrorCode.BAD_VALUE, f"DELETE_CELLS: level {level} > cell_bits")
            if len(cells) and cells.max() >= U64(1) << U64(3 * (p.grid.cell_bits - level)):
                raise GsdError(ErrorCode.BAD_VALUE, "DELETE_CELLS: cell code outside the grid")
        for b in d.updates:
            if b.mask == 0 or b.mask & ~fmask:
                raise GsdError(ErrorCode.MALFORMED, "UPDATE mask empty or names an absent attribute")
            if set(b.res) != set(mask_attrs(b.mask)):
                raise GsdError(ErrorCode.MALFORMED, "UPDATE residuals do not match the block's mask")
            for a, arr in b.res.items():
                if arr.shape != (p.comps(a), len(b.ids)) or arr.dtype != p.dtype(a):
                    raise GsdError(ErrorCode.MALFORMED, f"UPDATE {a.name}: wrong array shape or dtype")
        for a in ATTRS:
            arr = d.add.get(a)
            if arr is None or arr.shape != (p.comps(a), len(d.add_ids)) or arr.dtype != p.dtype(a):
                raise GsdError(ErrorCode.MALFORMED, f"ADD {a.name}: wrong array shape or dtype")

    def _plan(self, d: Delta, check_seq: bool, track_digest: bool = False, on_valid=None) -> dict:
        p = self.profile
        if check_seq:
            if d.keyframe:
                if d.seq < 1:
                    raise GsdError(ErrorCode.MALFORMED, "keyframe seq must be >= 1")
            else:
                if d.base_seq != self.seq:
                    raise GsdError(ErrorCode.SEQUENCE_GAP, f"frame is based on seq {d.base_seq}, state is at {self.seq}")
                if d.seq <= d.base_seq:
                    raise GsdError(ErrorCode.MALFORMED, "seq must be greater than base_seq")
        if d.ranked:
            self._resolve_ranked(d)
        self._validate_delta(d)
        hashed = (self.hashed or d.digest is not None or track_digest) if not d.keyframe \
            else (d.digest is not None or track_digest)
        if on_valid is not None:
            on_valid()
        return self._plan_rest(d, hashed)

    def _resolve_ranked(self, d: Delta) -> None:
        """SPEC.md 6.1, ranked ids: each ranked block's ranks become the ids of those ranks among the
        ids live now (none before a keyframe); an UPDATE_RANKED joins ``d.updates``, a DELETE_RANKED
        ``d.delete_ids``. Ranks must be strictly ascending and below the live count."""
        for b in d.ranked:
            problem = ascending_problem(b.ranks)
            if problem:
                raise GsdError(ErrorCode.DUPLICATE_ID if problem == 1 else ErrorCode.BAD_VALUE,
                               "ranks in a ranked block must be strictly ascending")
        live = 0 if d.keyframe else self.count
        if any(len(b) and int(b.ranks[-1]) >= live for b in d.ranked):
            raise GsdError(ErrorCode.ID_MISSING, f"a rank names no live Gaussian (the state holds {live})")
        deletes = [d.delete_ids] if len(d.delete_ids) else []
        updates = []
        for b in d.ranked:
            ids = self.order().select(b.ranks) if len(b) else np.zeros(0, U64)
            if b.update is None:
                deletes.append(ids)
            else:
                updates.append(UpdateBlock(b.update.mask, ids, b.update.res))
        d.delete_ids, _ = merge_id_blocks(deletes)   # an id in two blocks: repeated, found by the id rules
        d.updates = d.updates + updates
        d.ranked = []

    def _plan_rest(self, d: Delta, hashed: bool) -> dict:
        p = self.profile
        index = IdIndex(slot_bits=p.grid.slot_bits) if d.keyframe else self.index
        # One lookup for every id the frame names (the index is latency-bound, not work-bound);
        # UPDATE slots the encoder found against this very state are taken as they are.
        n_del = len(d.delete_ids)
        hinted = d.slot_hint is not None and not d.keyframe and d.slot_hint[0] == self.token() \
            and len(d.slot_hint[1]) == len(d.updates) \
            and all(slots_hold(self.slot_ids, self.high, s, b.ids) for s, b in zip(d.slot_hint[1], d.updates))
        n_add = len(d.add_ids)
        named = [d.delete_ids, d.add_ids] + ([] if hinted else [b.ids for b in d.updates])
        add_found = _NO_SLOTS  # the ADD ids' slots (none where nothing is live)
        if d.keyframe and not len(d.delete_ids):  # nothing is live before a keyframe: no lookups
            found = np.full(n_add + d.n_update, -1, np.int64) if d.n_update else np.zeros(0, np.int64)
            where = found
        else:
            found, where = index.find(np.concatenate(named))
            add_found = found[n_del:n_del + n_add]
        if hinted:
            found = np.concatenate([found] + list(d.slot_hint[1]))
        del_slots = found[:n_del]
        # 2. deletes
        if (del_slots < 0).any():
            raise GsdError(ErrorCode.ID_MISSING, "DELETE_IDS of an id that is not live")
        firsts = [d.delete_ranges[:, 0]] if len(d.delete_ranges) else []
        lasts = [d.delete_ranges[:, 1]] if len(d.delete_ranges) else []
        for level, cells in d.delete_cells.items():
            f, l = p.grid.cell_range(cells, level)
            firsts.append(f); lasts.append(l)
        if firsts:
            ranged = index.in_ranges(np.concatenate(firsts), np.concatenate(lasts))
            gone = sorted_unique(np.concatenate([del_slots, ranged]))
        else:
            gone = np.sort(del_slots, kind="stable")  # distinct ids, so distinct slots; often in runs
        # 3. adds: no id live (unless deleted above), every code in its domain, then their rows hashed.
        # On this thread: handed to a worker, these short compiled calls each waited on this thread for
        # the GIL, and a 4,096-ADD step's encode took 0.4-0.9 ms longer on a 16-core host.
        aa = None
        if n_add:
            live = add_found[add_found >= 0]
            if len(live) and (~sorted_member(live, gone)).any():
                raise GsdError(ErrorCode.ID_EXISTS, "ADD of an id that is live")
            bad = parallel_map(lambda a: p.has_invalid(a, d.add[a]), ATTRS, sum(d.add[a].nbytes for a in ATTRS))
            if any(bad):
                raise GsdError(ErrorCode.BAD_VALUE, f"ADD {ATTRS[bad.index(True)].name}: code outside its domain")
            if hashed:
                aa = row_accumulators(d.add_ids, [d.add[a] for a in ATTRS])
        undo = []
        plan = {"gone": gone, "hashed": hashed, "gone_where": where[:n_del] if not firsts else None, "undo": undo}
        if hashed and not self.hashed and not d.keyframe:
            self._rehash()
        s0, s1 = (0, 0) if d.keyframe else self.sums
        if aa is not None:  # the ADDs' rows, hashed in step 3
            a0, a1 = lane_sums_all(aa)
            s0, s1 = s0 + int(a0), s1 + int(a1)
            plan["add_accs"] = aa
        if hashed and len(gone) and not d.keyframe:
            g0, g1 = lane_sums_at(self.accs, gone)
            s0, s1 = s0 - int(g0), s1 - int(g1)
        # 4. updates, block by block, in place with an undo record: from here on a failure puts the
        # state back as it was
        at = n_del + n_add
        for b in d.updates:
            slots = found[at:at + len(b.ids)]
            at += len(b.ids)
            if (slots < 0).any() or (len(gone) and sorted_member(slots, gone).any()):
                self._undo(undo)
                raise GsdError(ErrorCode.ID_MISSING, "UPDATE of an id that is not live")
            acc = np.zeros((2, len(slots)), np.uint32) if hashed else _NO_ACC
            olds = []
            undo.append((slots, olds, None))
            for a, res in b.res.items():
                j = self._word_offset[a]
                bd = p.bounds(a)
                old = np.empty_like(res)
                if update_in_place(unsigned(self.codes[a]), slots, unsigned(res), bd.lo, bd.hi, bd.signed_bits,
                                   bd.finite, self._k0[j:j + res.shape[0]], self._k1[j:j + res.shape[0]], acc,
                                   hashed, unsigned(old)):
                    self._undo(undo)
                    raise GsdError(ErrorCode.BAD_VALUE, f"UPDATE {a.name}: resulting code outside its domain")
                olds.append((a, old))
            if hashed:
                o0, o1, n0, n1, _ = add_accumulators(self.accs, slots, acc)
                undo[-1] = (slots, olds, acc)
                s0, s1 = s0 + int(n0) - int(o0), s1 + int(n1) - int(o1)
        try:
            # 5. budget
            before = 0 if d.keyframe else self.count
            after = plan["count"] = before - len(gone) + len(d.add_ids)
            if after > self.max_gaussians:
                raise GsdError(ErrorCode.LIMIT_EXCEEDED, f"scene would hold {after} Gaussians, budget {self.max_gaussians}")
            plan["palette"] = self._plan_palette(d)
            pal_sums = plan["palette"][3] if plan["palette"] else (0, 0) if d.keyframe else self.palette_sums
            # 6. digest
            if hashed:
                plan["sums"] = (s0 & M32, s1 & M32)
                if d.digest is not None:
                    got = Digest(after, (s0 + pal_sums[0]) & M32, (s1 + pal_sums[1]) & M32)
                    if got != d.digest:
                        raise GsdError(ErrorCode.DIGEST_MISMATCH, f"state digest {got}, frame says {d.digest}")
        except BaseException:
            self._undo(undo)
            raise
        return plan

    def _undo(self, undo: list) -> None:
        """Put back the codes and accumulators of UPDATE blocks applied in place (last first)."""
        for slots, olds, accs in reversed(undo):
            for a, old in olds:
                scatter(unsigned(self.codes[a]), slots, unsigned(old))
            if accs is not None:
                scatter(self.accs, slots, accs)

    def _plan_palette(self, d: Delta):
        """Check a frame's palette entries (SPEC.md 6.3 step 2a); returns (index, codes, accumulators,
        palette lane sums after the frame), or None when the frame sets no entry."""
        if d.palette is None or not len(d.palette):
            return None
        p = self.profile
        if not p.palette:
            raise GsdError(ErrorCode.MALFORMED, "PALETTE entries in a stream without an SH palette")
        index, codes = d.palette.index, d.palette.codes
        if index.dtype != np.uint16 or codes.shape != (p.rest_comps, len(index)) or codes.dtype != p.rest_dtype:
            raise GsdError(ErrorCode.MALFORMED, "PALETTE: wrong array shape or dtype")
        _check_sorted(index, "PALETTE")
        if int(index[-1]) >= p.palette:
            raise GsdError(ErrorCode.BAD_VALUE, f"PALETTE index {int(index[-1])} outside the palette of {p.palette}")
        b = p.rest_bounds()
        if invalid_codes(codes, b.lo, b.hi, False):
            raise GsdError(ErrorCode.BAD_VALUE, "PALETTE: entry code outside its domain")
        accs = row_accumulators(index.astype(U64) | _ENTRY_TAG, [codes])
        live = codes.any(axis=0)  # an all-zero entry is not hashed (SPEC.md 7.1)
        n0, n1 = lane_sums_at(accs, np.flatnonzero(live))
        if d.keyframe:
            s0, s1 = int(n0), int(n1)
        else:
            old = np.flatnonzero(self.palette[:, index].any(axis=0))
            o0, o1 = lane_sums_at(self.palette_accs, index[old].astype(np.int64))
            s0 = self.palette_sums[0] - int(o0) + int(n0)
            s1 = self.palette_sums[1] - int(o1) + int(n1)
        return index, codes, accs, (s0 & M32, s1 & M32)

    def _commit(self, d: Delta, plan: dict) -> None:
        self._version += 1
        if d.keyframe and self.palette is not None:
            self._clear_palette()
        if plan["palette"]:
            index, codes, accs, self.palette_sums = plan["palette"]
            self.palette[:, index] = codes
            self.palette_accs[:, index] = accs
        hashed = plan["hashed"]
        self.added = _NO_SLOTS
        if d.keyframe:
            self._load_keyframe(d, plan)
        else:
            gone = plan["gone"]
            if self.palette_uses is not None:
                self._count_uses(self.codes[Attr.SH_REST][0, gone], -1)
                for slots, olds, _ in plan["undo"]:
                    for a, old in olds:
                        if a is Attr.SH_REST:
                            self._count_uses(old[0], -1)
                            self._count_uses(self.codes[a][0, slots], 1)
                self._count_uses(d.add[Attr.SH_REST][0], 1)
            if self._order is not None:
                # gone slots ascend, and slots were taken in ADD order, so their ids come in ascending
                # runs (a frame's ADDs each), which timsort merges: a world's retired chunk of 2,800, one
                # run, sorts in 2 instead of 51 us; 28k in seven runs of random ids, 0.23 instead of 0.9 ms
                self._order.update(np.sort(self.slot_ids[gone], kind="stable"), d.add_ids)
            if plan["gone_where"] is not None:
                self.index.remove_found(plan["gone_where"])
            elif len(gone):
                self.index.remove(self.slot_ids[gone])
            self._release(gone)
            n = len(d.add_ids)
            if n:
                rows, slots = self._take(n, plan["count"])
                self.added = slots
                for a in ATTRS:
                    self.codes[a][:, rows] = d.add[a]
                self.slot_ids[rows] = d.add_ids
                if hashed:
                    self.accs[:, rows] = plan["add_accs"]
                self.index.insert(d.add_ids, slots)
        self.count = plan["count"]
        self.hashed = hashed
        if hashed:
            self.sums = plan["sums"]
        self.seq = d.seq
        if self.holes > max(self.count, self.COMPACT_MIN):
            self._compact()

    def _release(self, slots: np.ndarray) -> None:
        """Slots whose Gaussians are gone, for later ADDs to take."""
        k = len(slots)
        if not k:
            return
        if self.holes + k > len(self.free):
            grown = np.empty(max(2 * len(self.free), self.holes + k, 1024), np.int64)
            grown[:self.holes] = self.free[:self.holes]
            self.free = grown
        self.free[self.holes:self.holes + k] = slots
        self.holes += k

    def _take(self, n: int, live: int) -> tuple:
        """(rows, slots) for n new Gaussians (``live`` after the frame): the slots, and the index that
        writes their columns (a slice when they are the tail's). The tail while the arrays have room
        there: a contiguous write (a scattered row costs a cache line per component). A full tail
        doubles the arrays while they would hold at most twice the live Gaussians and stay within the
        budget (and the room ``reserve`` asked for, while the scene is within it); past that, freed
        slots are taken (the most recently freed first: a retired region's run), so the arrays stop
        growing and a churning scene never needs compacting."""
        h, cap = self.high, self.slot_ids.shape[0]
        enough = min(2 * live, self.max_gaussians)
        if live <= self.reserved:
            enough = min(enough, self.reserved)
        limit = cap if cap >= enough else self.max_gaussians  # slots used before freed ones
        k = min(max(0, h + n - limit), self.holes)
        self._grow(h + n - k)
        self.high = h + n - k
        tail = np.arange(h, h + n - k, dtype=np.int64)
        if k == 0:
            return slice(h, h + n), tail
        self.holes -= k
        slots = np.concatenate([self.free[self.holes:self.holes + k], tail])
        return slots, slots

    def _compact(self) -> None:
        """Move live rows to slots 0..count-1 in id order (amortized: runs when holes outnumber rows,
        which takes a scene that shrank to under half its peak). The arrays keep their capacity."""
        ids, slots = self.index.sorted_items()
        n = len(ids)
        self._reallocate(self.slot_ids.shape[0], slots)
        self.index = IdIndex(ids.copy(), np.arange(n, dtype=np.int64), self.profile.grid.slot_bits)
        self.high, self.holes = n, 0
        self.compactions += 1

    def _load_keyframe(self, d: Delta, plan: dict) -> None:
        """Adopt the keyframe's arrays as storage: slots 0..n-1 in id order."""
        n = len(d.add_ids)
        own = plan["adopt"]
        self.codes = {a: d.add[a] if own and d.add[a].flags.writeable and d.add[a].flags.c_contiguous
                      else d.add[a].copy() for a in ATTRS}
        ids = d.add_ids
        self.slot_ids = ids if own and ids.flags.writeable and ids.flags.c_contiguous else ids.copy()
        self.accs = plan["add_accs"] if plan["hashed"] and n else np.zeros((2, n), np.uint32)
        self.index = IdIndex(self.slot_ids.copy(), np.arange(n, dtype=np.int64), self.profile.grid.slot_bits)  # own copy: slot_ids is written per slot on later ADDs
        self._order = None
        self.index.prepare()
        self.high, self.holes = n, 0
        self.free, self.reserved = np.zeros(0, np.int64), 0
        if self.palette_uses is not None:
            self.palette_uses = np.bincount(self.codes[Attr.SH_REST][0], minlength=len(self.palette_uses))
