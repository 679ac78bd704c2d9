"""SceneState: live Gaussians by id, in code space, and all-or-nothing apply (SPEC.md 6.3).

Storage is slot based (like the viewer's GPU buffers): planar (C, capacity)
code arrays (new rows appended at the tail, holes compacted in bulk) and an id -> slot index. apply() first validates the
whole frame and computes its plan without touching the state, then commits.
"""
from __future__ import annotations

import numpy as np

from .attributes import ATTRS, Attr, Gaussians, full_mask
from .delta import Delta
from .digest import EMPTY, Digest, accumulator_change, fmix32, lane_constants, lane_sums, row_accumulators
from .errors import ErrorCode, GsdError
from .id_index import IdIndex, sorted_member, sorted_unique
from .limits import SPEC_LIMITS, Limits
from .profile import Profile

U64 = np.uint64


def _check_sorted(ids: np.ndarray, what: str) -> None:
    if len(ids) > 1:
        d = ids[1:] > ids[:-1]
        if not d.all():
            if (ids[1:] == ids[:-1]).any():
                raise GsdError(ErrorCode.DUPLICATE_ID, f"{what}: id repeated")
            raise GsdError(ErrorCode.BAD_VALUE, f"{what}: ids not ascending")


class SceneState:
    def __init__(self, profile: Profile, limits: Limits = SPEC_LIMITS, max_gaussians: int = 0):
        self.profile = profile
        self.limits = limits
        self.max_gaussians = min(max_gaussians or limits.max_gaussians, limits.max_gaussians)
        offsets = np.cumsum([2] + [profile.comps(a) for a in ATTRS])
        self._word_offset = {a: int(offsets[i]) for i, a in enumerate(ATTRS)}
        self._k = lane_constants(int(offsets[-1]))
        self._reset(0)
        self.seq = 0

    # -- storage ---------------------------------------------------------------------
    def _reset(self, capacity: int) -> None:
        p = self.profile
        self.codes = {a: np.zeros((p.comps(a), capacity), p.dtype(a)) for a in ATTRS}
        self.slot_ids = np.zeros(capacity, U64)
        self.accs = np.zeros((2, capacity), np.uint32)  # per-slot digest accumulators (SPEC.md 7)
        self.index = IdIndex()
        self.high = 0          # slots [0, high) have been used
        self.holes = 0         # slots below high that hold no live Gaussian
        self.count = 0
        self.sums = (0, 0)
        self.hashed = True     # hashes/sums are maintained (False after an unhashed bulk load)

    def _grow(self, need: int) -> None:
        cap = self.slot_ids.shape[0]
        if need <= cap:
            return
        new = max(need, cap * 2, 1024)
        for a in ATTRS:
            arr = np.zeros((self.codes[a].shape[0], new), self.codes[a].dtype)
            arr[:, :cap] = self.codes[a]
            self.codes[a] = arr
        ids = np.zeros(new, U64); ids[:cap] = self.slot_ids; self.slot_ids = ids
        h = np.zeros((2, new), np.uint32); h[:, :cap] = self.accs; self.accs = h

    def __len__(self) -> int:
        return self.count

    def copy(self) -> "SceneState":
        c = SceneState.__new__(SceneState)
        c.__dict__.update(self.__dict__)
        c.codes = {a: v.copy() for a, v in self.codes.items()}
        c.slot_ids, c.accs = self.slot_ids.copy(), self.accs.copy()
        c.index = self.index.copy()
        return c

    # -- queries -----------------------------------------------------------------------
    def ids(self) -> np.ndarray:
        """Live ids, ascending."""
        return self.index.sorted_items()[0].copy()

    def slots_of(self, ids: np.ndarray) -> np.ndarray:
        return self.index.lookup(ids)

    def codes_of(self, ids: np.ndarray, attrs=ATTRS) -> dict:
        """{Attr: (C, n)} codes of live ids, for ``attrs``; KeyError if an id is not live."""
        s = self.index.lookup(ids)
        if (s < 0).any():
            raise KeyError("id not live")
        return {a: self.codes[a][:, s] for a in attrs}

    def sorted_codes(self) -> tuple[np.ndarray, dict]:
        ids, slots = self.index.sorted_items()
        return ids.copy(), {a: self.codes[a][:, slots] for a in ATTRS}

    def to_gaussians(self) -> tuple[np.ndarray, Gaussians]:
        """Live ids ascending and their dequantized float attributes."""
        ids, codes = self.sorted_codes()
        p = self.profile
        return ids, Gaussians.from_attributes({a: p.dequantize(a, codes[a], ids) for a in ATTRS})

    def digest(self) -> Digest:
        if not self.hashed:
            self._rehash()
        if self.count == 0:
            return EMPTY
        return Digest(self.count, *self.sums)

    def _rehash(self) -> None:
        ids, slots = self.index.sorted_items()
        self.accs[:, slots] = row_accumulators(ids, [self.codes[a][:, slots] for a in ATTRS])
        self.sums = lane_sums(fmix32(self.accs[:, slots]))
        self.hashed = True

    def equals(self, other: "SceneState") -> bool:
        a_ids, a = self.sorted_codes()
        b_ids, b = other.sorted_codes()
        return np.array_equal(a_ids, b_ids) and all(np.array_equal(a[k], b[k]) for k in ATTRS)

    # -- apply -------------------------------------------------------------------------------
    def apply(self, d: Delta, check_seq: bool = True, adopt: bool = False, track_digest: bool = False) -> None:
        """Apply a frame all-or-nothing; raises GsdError and leaves the state as it was.

        ``adopt`` lets a keyframe's arrays become the state's storage without a copy
        (only for a Delta nobody else holds, e.g. one just decoded). ``track_digest``
        keeps the digest up to date even when the frame carries none (an encoder about
        to write one), which is cheaper than hashing the whole state afterwards.
        """
        plan = self._plan(d, check_seq, track_digest)
        plan["adopt"] = adopt
        self._commit(d, plan)

    def _validate_delta(self, d: Delta) -> None:
        p = self.profile
        limit = U64(p.grid.id_limit)
        for ids, what in ((d.add_ids, "ADD"), (d.update_ids, "UPDATE"), (d.delete_ids, "DELETE_IDS")):
            _check_sorted(ids, what)
            if len(ids) and ids[-1] >= limit:
                raise GsdError(ErrorCode.BAD_VALUE, f"{what}: id outside the grid's id space")
        if len(d.add_ids) + len(d.update_ids) + len(d.delete_ids) > self.limits.max_ids_per_frame:
            raise GsdError(ErrorCode.LIMIT_EXCEEDED, "too many ids in one frame")
        if len(d.add_ids) and len(d.update_ids):
            if sorted_member(d.update_ids, d.add_ids).any():
                raise GsdError(ErrorCode.DUPLICATE_ID, "an id is both ADDed and UPDATEd")
        r = d.delete_ranges
        if len(r) and ((r[:, 0] > r[:, 1]).any() or (r >= limit).any()):
            raise GsdError(ErrorCode.BAD_VALUE, "DELETE_RANGES: first > last or outside the id space")
        for level, cells in d.delete_cells.items():
            if not (0 <= level <= p.grid.cell_bits):
                raise GsdError(ErrorCode.BAD_VALUE, f"DELETE_CELLS: level {level} > cell_bits")
            if len(cells) and cells.max() >= U64(1) << U64(3 * (p.grid.cell_bits - level)):
                raise GsdError(ErrorCode.BAD_VALUE, "DELETE_CELLS: cell code outside the grid")
        mask = d.update_mask
        if len(mask) != len(d.update_ids):
            raise GsdError(ErrorCode.MALFORMED, "update mask length differs from update ids")
        if len(mask) and (((mask & ~np.uint8(full_mask(p.sh_degree))) != 0) | (mask == 0)).any():
            raise GsdError(ErrorCode.MALFORMED, "UPDATE mask empty or names an absent attribute")
        for a in ATTRS:
            for name, arrs, n in (("ADD", d.add, len(d.add_ids)), ("UPDATE", d.update, len(d.update_ids))):
                arr = arrs.get(a)
                if arr is None or arr.shape != (p.comps(a), n) or arr.dtype != p.dtype(a):
                    raise GsdError(ErrorCode.MALFORMED, f"{name} {a.name}: wrong array shape or dtype")

    def _plan(self, d: Delta, check_seq: bool, track_digest: bool = False) -> dict:
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
        self._validate_delta(d)
        index = IdIndex() if d.keyframe else self.index
        # One lookup for every id the frame names (the index is latency-bound, not work-bound).
        n_del, n_add = len(d.delete_ids), len(d.add_ids)
        found = index.lookup(np.concatenate([d.delete_ids, d.add_ids, d.update_ids]))
        del_slots, add_found, upd = found[:n_del], found[n_del:n_del + n_add], found[n_del + n_add:]
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
            gone = np.sort(del_slots)  # distinct ids, so distinct slots
        # 3. adds
        if len(d.add_ids):
            live = add_found >= 0
            if live.any() and (~sorted_member(add_found[live], gone)).any():
                raise GsdError(ErrorCode.ID_EXISTS, "ADD of an id that is live")
            for a in ATTRS:
                if p.has_invalid(a, d.add[a]):
                    raise GsdError(ErrorCode.BAD_VALUE, f"ADD {a.name}: code outside its domain")
        # 4. updates
        new_codes, old_codes = {}, {}
        if len(d.update_ids):
            if (upd < 0).any() or sorted_member(upd, gone).any():
                raise GsdError(ErrorCode.ID_MISSING, "UPDATE of an id that is not live")
            any_mask = int(np.bitwise_or.reduce(d.update_mask))
            for a in ATTRS:
                if any_mask & a.bit:
                    old_codes[a] = self.codes[a][:, upd]
                    nc = old_codes[a] + d.update[a]
                    if p.has_invalid(a, nc):
                        raise GsdError(ErrorCode.BAD_VALUE, f"UPDATE {a.name}: resulting code outside its domain")
                    new_codes[a] = nc
        # 5. budget
        before = 0 if d.keyframe else self.count
        after = before - len(gone) + len(d.add_ids)
        if after > self.max_gaussians:
            raise GsdError(ErrorCode.LIMIT_EXCEEDED, f"scene would hold {after} Gaussians, budget {self.max_gaussians}")
        plan = {"gone": gone, "upd": upd, "new_codes": new_codes, "count": after}
        # 6. digest
        hashed = self.hashed or d.digest is not None or track_digest
        if d.keyframe:
            hashed = d.digest is not None or track_digest
        plan["hashed"] = hashed
        if hashed:
            if not self.hashed and not d.keyframe:
                self._rehash()
            sums = np.array([0, 0] if d.keyframe else self.sums, np.uint64)
            if len(gone) and not d.keyframe:
                sums -= fmix32(self.accs[:, gone]).sum(axis=1, dtype=np.uint64)
            if len(upd):
                old_acc = self.accs[:, upd]
                new_acc = old_acc.copy()
                for a, nc in new_codes.items():
                    j = self._word_offset[a]
                    new_acc += accumulator_change(old_codes[a], nc, self._k[:, j:j + nc.shape[0]])
                sums += fmix32(new_acc).sum(axis=1, dtype=np.uint64) - fmix32(old_acc).sum(axis=1, dtype=np.uint64)
                plan["upd_accs"] = new_acc
            if len(d.add_ids):
                aa = row_accumulators(d.add_ids, [d.add[a] for a in ATTRS])
                sums += fmix32(aa).sum(axis=1, dtype=np.uint64)
                plan["add_accs"] = aa
            sums &= np.uint64(0xFFFFFFFF)
            plan["sums"] = (int(sums[0]), int(sums[1]))
            if d.digest is not None:
                got = Digest(after, *plan["sums"]) if after else EMPTY
                if got != d.digest:
                    raise GsdError(ErrorCode.DIGEST_MISMATCH, f"state digest {got}, frame says {d.digest}")
        return plan

    def _commit(self, d: Delta, plan: dict) -> None:
        hashed = plan["hashed"]
        if d.keyframe:
            self._load_keyframe(d, plan)
        else:
            gone, upd = plan["gone"], plan["upd"]
            if len(gone):
                self.index.remove(self.slot_ids[gone])
                self.holes += len(gone)
            if len(upd):
                for a, nc in plan["new_codes"].items():
                    self.codes[a][:, upd] = nc
                if hashed:
                    self.accs[:, upd] = plan["upd_accs"]
            n = len(d.add_ids)
            if n:  # new Gaussians go to the tail: contiguous writes; holes are compacted in bulk
                h = self.high
                self._grow(h + n)
                for a in ATTRS:
                    self.codes[a][:, h:h + n] = d.add[a]
                self.slot_ids[h:h + n] = d.add_ids
                if hashed:
                    self.accs[:, h:h + n] = plan["add_accs"]
                self.index.insert(d.add_ids, np.arange(h, h + n, dtype=np.int64))
                self.high = h + n
        self.count = plan["count"]
        self.hashed = hashed
        if hashed:
            self.sums = plan["sums"]
        self.seq = d.seq
        if self.holes > max(self.count, 1 << 16):
            self._compact()

    def _compact(self) -> None:
        """Move live rows to slots 0..count-1 in id order (amortized: runs when holes outnumber rows)."""
        ids, slots = self.index.sorted_items()
        n = len(ids)
        self.codes = {a: np.ascontiguousarray(self.codes[a][:, slots]) for a in ATTRS}
        self.accs = np.ascontiguousarray(self.accs[:, slots])
        self.slot_ids = ids.copy()
        self.index = IdIndex(ids.copy(), np.arange(n, dtype=np.int64))
        self.high, self.holes = n, 0

    def _load_keyframe(self, d: Delta, plan: dict) -> None:
        """Adopt the keyframe's arrays as storage: slots 0..n-1 in id order."""
        n = len(d.add_ids)
        own = plan["adopt"]
        self.codes = {a: d.add[a] if own and d.add[a].flags.writeable and d.add[a].flags.c_contiguous
                      else d.add[a].copy() for a in ATTRS}
        self.slot_ids = d.add_ids.copy()
        self.accs = plan["add_accs"] if plan["hashed"] and n else np.zeros((2, n), np.uint32)
        self.index = IdIndex(self.slot_ids.copy(), np.arange(n, dtype=np.int64))  # own copy: slot_ids is written per slot on later ADDs
        self.high, self.holes = n, 0
