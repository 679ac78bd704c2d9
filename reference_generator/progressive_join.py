"""Progressive join on the live server (SPEC.md 11.9): a client that asks for it gets a keyframe of
**stand-ins** first, then refinement frames, while the world keeps stepping.

The world's Gaussians are grouped into **cubes** of a fixed grid (one cube size per join, chosen so
that the stand-ins' keyframe is about ``first_bytes``). A cube is either *fine* (the client holds
its Gaussians themselves) or *coarse* (the client holds one stand-in for them: their moments
matched, as ``codec.progressive`` makes them). ``ProgressivePending`` keeps, per client:

* ``held``: an Encoder whose state is exactly the client's state (seq, Gaussians, digest), so each
  frame is built and digested against what the client holds, not against the world;
* the cubes: their members (world ids), whether fine, their stand-in's id;
* ``dirty``: the world ids any step touched since the last frame (the one pending change of the
  client, SPEC.md 11.6: a set of ids, not a queue of deltas).

Each frame (one per world step at most: its ``seq`` is the world's) brings the client's fine cubes
to the world's current codes (ADD, UPDATE residuals against the held codes, DELETE), leaves the
changes of coarse cubes out (their stand-in stays; a cube left with no Gaussian loses it), refines
the most important coarse cubes (DELETE of the stand-in, ADD of its Gaussians with their current
codes) within ``refine_bytes`` and the client's detail budget, and coarsens the least important fine
cubes when the budget asks for room. Importance is screen-space from the client's eye: Gaussians
per squared distance, less behind the view direction; a cube already fine counts double, so a small
move of the eye does not swap cubes back and forth.

When no cube is coarse the client's state equals the world's at the same seq. If the world is then
well within the budget (``ORDINARY_AT``, or the budget is at least the stream header's
``max_gaussians``, which the world can never outgrow), it is an ordinary client (``flow.Pending``:
the world's own encoded deltas, costing the world nothing of its own) until the world passes
``TRACK_AT`` of the budget; then its frames are made for it again (``_track_from_world``).

Streams with an SH palette (SPEC.md 5.9) are not refined this way: their clients get a plain
keyframe (the reference world's profiles have no palette).
"""
from __future__ import annotations

import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from codec import Delta, Encoder
from codec.attributes import ATTRS, Attr, Gaussians, rotmat_to_quat
from codec.delta import group_updates
from codec.digest import unsigned
from codec.id_index import id_order, sorted_member, sorted_unique
from codec.jit import kernel
from codec.progressive import FIRST_BYTES, REFINE_BYTES, eigh3, merged, screen_weight
from codec.screen import look_at, pinhole

from .flow import FrameTooLarge, OutFrame, Pending

U64 = np.uint64
KEY_BITS = 21                      # cube coordinates per axis in a key
REFRESH = 0.25                     # a coarse cube's stand-in is remade once its count moved this much
KEEP = 2.0                         # a fine cube's importance counts this many times (hysteresis)
BEHIND = 0.1                       # importance of a cube outside the view cone
COS_VIEW = 0.5                     # the view cone: 60 degrees either side of the view direction (or wider: View)
PICTURE_FOV = 75.0                 # degrees across: the view a client's picture is weighed for, when its
PICTURE_ASPECT = 1.6               # ... `detail` names no fov and aspect (width / height) of its own
PICTURE_PIXELS = 16_000            # the picture the weights are composited in (a low resolution suffices)
COS_REPLAN = 0.985                 # the refinement order is made again when the view turns 10 degrees,
REPLAN_FRAMES = 8                  # ... or after this many frames of changed counts (at once over the budget)
ORDINARY_AT = 0.8                  # a client with a budget holding the world's state gets the world's deltas
TRACK_AT = 0.9                     # ... until the world passes this share of the budget (then frames of its own)
CUT_REFRESH_SHARE = 0.1           # a shared cut is made again once the world touched this share of it ...
CUT_STALE_SHARE = 0.25             # ... and not handed out beyond this share
CUT_KEEP_WARM_S = 120.0            # cuts are kept fresh for this long after a join last asked for one
CUT_THREAD = "gsd-cut"             # the name of a world's cut thread (its CPU time is reported apart)


@kernel
def _moments(starts, sizes, pos, scl, rot, w, mu, cov, wsum):
    """Per group of consecutive rows: the weighted mean position ``mu``, the weighted second moment
    about it ``cov`` (each row's covariance R diag(exp(2 scale)) R^T plus its offset's outer
    product) and the weight ``wsum``; ``codec.progressive.merged``'s moments in one pass without temporaries."""
    for k in range(starts.shape[0]):
        a, b = starts[k], starts[k] + sizes[k]
        sw, m0, m1, m2 = 0.0, 0.0, 0.0, 0.0
        for i in range(a, b):
            sw += w[i]
            m0 += w[i] * pos[i, 0]
            m1 += w[i] * pos[i, 1]
            m2 += w[i] * pos[i, 2]
        m0 /= sw
        m1 /= sw
        m2 /= sw
        c00, c01, c02, c11, c12, c22 = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
        for i in range(a, b):
            qw, qx, qy, qz = float(rot[i, 0]), float(rot[i, 1]), float(rot[i, 2]), float(rot[i, 3])
            n = np.sqrt(qw * qw + qx * qx + qy * qy + qz * qz)
            if n > 0:
                qw, qx, qy, qz = qw / n, qx / n, qy / n, qz / n
            else:
                qw, qx, qy, qz = 1.0, 0.0, 0.0, 0.0
            r00, r01, r02 = 1 - 2 * (qy * qy + qz * qz), 2 * (qx * qy - qw * qz), 2 * (qx * qz + qw * qy)
            r10, r11, r12 = 2 * (qx * qy + qw * qz), 1 - 2 * (qx * qx + qz * qz), 2 * (qy * qz - qw * qx)
            r20, r21, r22 = 2 * (qx * qz - qw * qy), 2 * (qy * qz + qw * qx), 1 - 2 * (qx * qx + qy * qy)
            s0, s1, s2 = np.exp(2.0 * scl[i, 0]), np.exp(2.0 * scl[i, 1]), np.exp(2.0 * scl[i, 2])
            d0, d1, d2 = pos[i, 0] - m0, pos[i, 1] - m1, pos[i, 2] - m2
            wi = w[i]
            c00 += wi * (r00 * r00 * s0 + r01 * r01 * s1 + r02 * r02 * s2 + d0 * d0)
            c01 += wi * (r00 * r10 * s0 + r01 * r11 * s1 + r02 * r12 * s2 + d0 * d1)
            c02 += wi * (r00 * r20 * s0 + r01 * r21 * s1 + r02 * r22 * s2 + d0 * d2)
            c11 += wi * (r10 * r10 * s0 + r11 * r11 * s1 + r12 * r12 * s2 + d1 * d1)
            c12 += wi * (r10 * r20 * s0 + r11 * r21 * s1 + r12 * r22 * s2 + d1 * d2)
            c22 += wi * (r20 * r20 * s0 + r21 * r21 * s1 + r22 * r22 * s2 + d2 * d2)
        mu[k, 0], mu[k, 1], mu[k, 2] = m0, m1, m2
        cov[k, 0, 0], cov[k, 0, 1], cov[k, 0, 2] = c00 / sw, c01 / sw, c02 / sw
        cov[k, 1, 0], cov[k, 1, 1], cov[k, 1, 2] = c01 / sw, c11 / sw, c12 / sw
        cov[k, 2, 0], cov[k, 2, 1], cov[k, 2, 2] = c02 / sw, c12 / sw, c22 / sw
        wsum[k] = sw


@kernel(inline=True)
def _cube_key(positions, i, origin, cell):
    """The key of the cube of ``cell`` metres (from ``origin``) holding positions[i], each
    coordinate clamped to KEY_BITS bits."""
    top = float((1 << KEY_BITS) - 1)
    k = np.int64(0)
    for a in range(3):
        v = min(max(np.floor((np.float64(positions[i, a]) - origin[a]) / cell), 0.0), top)
        k = (k << KEY_BITS) | np.int64(v)
    return k


@kernel
def _cube_keys(positions, origin, cell, out):
    for i in range(positions.shape[0]):
        out[i] = _cube_key(positions, i, origin, cell)


@kernel
def _count_cubes(positions, origin, cell, table, bits):
    """How many distinct cubes hold ``positions``: their keys in an open-addressing set ``table``
    (-1 where empty, 2**bits entries, over twice the positions), no key array and no sort."""
    m = table.shape[0] - 1
    shift = np.uint64(64 - bits)
    count = 0
    for i in range(positions.shape[0]):
        k = _cube_key(positions, i, origin, cell)
        j = np.int64((np.uint64(k) * np.uint64(0x9E3779B97F4A7C15)) >> shift)
        while table[j] != -1 and table[j] != k:
            j = (j + 1) & m
        if table[j] == -1:
            table[j] = k
            count += 1
    return count


@kernel
def _cover(sigma, alpha, out):
    """out[i]: alpha[i] times the product of row i's two largest sigmas (the area a Gaussian covers)."""
    for i in range(sigma.shape[0]):
        a, b, c = sigma[i, 0], sigma[i, 1], sigma[i, 2]
        hi = max(a, b, c)
        mid = max(min(a, b), min(max(a, b), c))
        out[i] = alpha[i] * hi * mid


@kernel
def _group_order(group, groups, out):
    """out: the stable order of ``group`` (values 0..groups-1) by one counting pass, no sort."""
    start = np.zeros(groups + 1, np.int64)
    for i in range(group.shape[0]):
        start[group[i] + 1] += 1
    for g in range(groups):
        start[g + 1] += start[g]
    for i in range(group.shape[0]):
        out[start[group[i]]] = i
        start[group[i]] += 1


@kernel
def _extent(positions):
    """The largest side of the positions' bounding box."""
    lo = np.full(3, np.inf)
    hi = np.full(3, -np.inf)
    for i in range(positions.shape[0]):
        for a in range(3):
            v = np.float64(positions[i, a])
            lo[a] = min(lo[a], v)
            hi[a] = max(hi[a], v)
    return max(hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2])


@kernel
def _means(starts, sizes, planar, cols, w, wsum, out):
    """out[k, c]: the ``w``-weighted mean of ``planar[c, cols[i]]`` over group ``k``'s consecutive
    rows i (read in place: a state's code arrays, indexed by slot, need no gathered copy)."""
    for k in range(starts.shape[0]):
        a, b = starts[k], starts[k] + sizes[k]
        for c in range(planar.shape[0]):
            acc = 0.0
            for i in range(a, b):
                acc += w[i] * planar[c, cols[i]]
            out[k, c] = acc / wsum[k]


def merge_sorted(positions, scales, rotations, opacities, sh: list, sizes: np.ndarray, cols=None) -> tuple:
    """``codec.progressive.merged`` for Gaussians already in group order (``sizes[k]`` rows each, all above 0), its
    moments in compiled loops; ``sh``: planar (C, m) arrays (floats, or codes that dequantize
    affinely) whose weighted means come back as (groups, C) float64, row i's values in column
    ``cols[i]`` (default: column i). Returns (positions, log-scales, quaternions, opacity logits,
    [means]) of the stand-ins, a group of one giving its Gaussian."""
    n = len(sizes)
    cols = np.arange(len(positions), dtype=np.int64) if cols is None else np.asarray(cols, np.int64)
    starts = np.r_[0, np.cumsum(sizes)[:-1]].astype(np.int64)
    cover = np.empty(len(positions))
    _cover(np.exp(scales.astype(np.float64)), 1.0 / (1.0 + np.exp(-opacities.astype(np.float64))), cover)
    w = cover + 1e-30
    mu, cov, wsum = np.empty((n, 3)), np.empty((n, 3, 3)), np.empty(n)
    _moments(starts, np.asarray(sizes, np.int64), np.ascontiguousarray(positions), np.ascontiguousarray(scales, np.float32),
             np.ascontiguousarray(rotations, np.float32), w, mu, cov, wsum)
    ev, vec = np.empty((n, 3)), np.empty((n, 3, 3))
    eigh3(cov, ev, vec)
    vec[np.linalg.det(vec) < 0, :, 0] *= -1
    sc = np.sqrt(np.maximum(ev, 1e-24))
    ss = np.sort(sc, axis=1)
    alpha = np.clip(np.add.reduceat(cover, starts) / (ss[:, 2] * ss[:, 1]), 1e-4, 0.999)
    out_pos, out_scale = mu.astype(np.float32), np.log(sc).astype(np.float32)
    out_rot, out_opa = rotmat_to_quat(vec).astype(np.float32), np.log(alpha / (1 - alpha)).astype(np.float32)
    means = []
    for x in sh:
        m = np.zeros((n, x.shape[0]))
        if x.shape[0]:
            _means(starts, np.asarray(sizes, np.int64), x, cols, w, wsum, m)
        means.append(m)
    one = np.flatnonzero(np.asarray(sizes) == 1)
    src = starts[one]
    out_pos[one], out_scale[one], out_rot[one], out_opa[one] = positions[src], scales[src], rotations[src], opacities[src]
    for m, x in zip(means, sh):
        m[one] = x[:, cols[src]].T
    return out_pos, out_scale, out_rot, out_opa, means


def touched_ids(state, d: Delta) -> np.ndarray:
    """The ids a world step ``d`` adds, updates or deletes (its cells and ranges resolved against
    ``state``, the world's state before ``d``): what a progressive client's frame must look at."""
    parts = [d.add_ids, d.delete_ids] + [b.ids for b in d.updates]
    firsts = [d.delete_ranges[:, 0]] if len(d.delete_ranges) else []
    lasts = [d.delete_ranges[:, 1]] if len(d.delete_ranges) else []
    for level, cells in d.delete_cells.items():
        f, l = state.profile.grid.cell_range(cells, level)
        firsts.append(f)
        lasts.append(l)
    if firsts:
        slots = state.index.in_ranges(np.concatenate(firsts), np.concatenate(lasts))
        parts.append(state.slot_ids[slots])
    return np.concatenate([np.asarray(x, U64) for x in parts]) if parts else np.zeros(0, U64)


def _concat_codes(parts: list, profile) -> tuple[np.ndarray, dict]:
    """(ids ascending, {Attr: (C, n) codes}) of [(ids, codes)] parts with distinct ids."""
    parts = [p for p in parts if len(p[0])]
    if not parts:
        return np.zeros(0, U64), {a: np.zeros((profile.comps(a), 0), profile.dtype(a)) for a in ATTRS}
    ids = np.concatenate([p[0] for p in parts]).astype(U64)
    order = id_order(ids)
    codes = {a: np.ascontiguousarray(np.concatenate([p[1][a] for p in parts], axis=1)[:, order]) for a in ATTRS}
    return ids[order], codes


class ProgressivePending(Pending):
    """The pending change of a client that joined progressively (see the module's text).

    Owned by the world thread, like ``Pending``: ``push`` after each step, ``take`` when the
    client's window opens, ``set_detail`` for the client's ``detail`` messages."""

    def __init__(self, encoder: Encoder, max_frame_bytes: int, budget: int | None = None,
                 first_bytes: int = FIRST_BYTES, refine_bytes: int = REFINE_BYTES, cuts: "CutCache | None" = None):
        super().__init__(encoder, max_frame_bytes)
        self.cuts = cuts                     # the world's shared cuts (None: each keyframe cuts afresh)
        self.world_max = int(encoder.header.max_gaussians) or (1 << 62)
        self.budget = int(budget) if budget else self.world_max
        self.first_bytes = max(1024, min(first_bytes, max_frame_bytes * 3 // 4))
        self.refine_bytes = max(1024, min(refine_bytes, max_frame_bytes // 2))
        self.eye: dict | None = None         # the client's own view (a detail message), else the world's camera
        self.tracked = not encoder.profile.palette   # frames made for this client; False: an ordinary client
        self.held: Encoder | None = None
        self.dirty: list = []
        self.settled = False                 # nothing left to refine or coarsen at the last frame
        self.per = 16.0                      # bytes per Gaussian in a frame (measured at each keyframe)
        self.cubes_made = 0                  # stand-ins made, for the metrics
        self.pictures = 0                    # client's pictures weighed (``_picture``), for the metrics
        self._pic, self._pic_job, self._pic_gen = None, None, 0   # the last Picture weighed, its job
        self._track_now = False              # a smaller budget came while an ordinary client: follow it
        self.last_world_camera: dict | None = None

    # -- world thread: steps ---------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """Refinement is under way: frames would go out even on steps with no change."""
        return self.tracked and (self.need_keyframe or not self.settled)

    def push(self, d: Delta, data: bytes, action_ids: list, camera: dict | None = None, touched=None) -> None:
        if not self.tracked:
            super().push(d, data, action_ids, camera)
            if self._near_budget():
                self._track_now = True                   # follow the client again, at the next frame (take)
            return
        self.actions += action_ids
        if camera is not None:
            self.last_world_camera = camera
        if self.need_keyframe:
            return
        self.steps += 1
        self.camera = camera
        self.head = d.seq
        if touched is None:
            touched = touched_ids(self.enc.state, d)    # (cells already applied: only ids named)
        if len(touched):
            self.dirty.append(np.asarray(touched, U64))
            if sum(len(x) for x in self.dirty) > 2 * len(self.enc.state) + 4096:
                self.dirty = [sorted_unique(np.concatenate(self.dirty))]

    def request_keyframe(self) -> None:
        """Every keyframe of a progressive session is a keyframe of stand-ins (a resync too)."""
        super().request_keyframe()
        self.tracked = not self.enc.profile.palette
        self._track_now = False
        self.dirty = []

    @property
    def ready(self) -> bool:
        if not self.tracked:
            return super().ready
        return self.need_keyframe or self.head > self.last_sent

    def set_detail(self, budget: int | None = None, eye: dict | None = None) -> None:
        """The client's ``detail`` message: a new budget, its eye, or both."""
        if eye is not None:
            self.eye = eye
            self.settled = False
        if budget is not None and budget != self.budget:
            self.budget = int(budget)
            self.settled = False
            if not self.tracked and self._near_budget():
                self._track_now = True                   # at the next frame (take)

    def _near_budget(self) -> bool:
        """The world has passed ``TRACK_AT`` of the budget: an ordinary client must get frames of its own."""
        return (self.budget < self.world_max and len(self.enc.state) > TRACK_AT * self.budget
                and not self.enc.profile.palette)

    # -- world thread: frames --------------------------------------------------------------------
    def take(self, camera: dict | None = None) -> OutFrame | None:
        if camera is not None:
            self.last_world_camera = camera
        if not self.tracked and self._track_now:
            self._track_now = False
            if len(self.enc.state) > self.budget:
                self.request_keyframe()              # over the new budget: coarse again, from stand-ins
            else:                                    # the pending delta, then the client holds the world's state
                out = super().take(camera)
                self._track_from_world()
                return out
        if not self.tracked:
            out = super().take(camera)
            if out is not None:                      # the client now holds the world's state
                out.detail = {"held": len(self.enc.state), "coarse": 0, "budget": self.budget}
            return out
        if self.need_keyframe:
            return self._keyframe()
        if self.head <= self.last_sent:
            return None
        return self._frame()

    def _eye(self) -> tuple[np.ndarray, np.ndarray | None]:
        cam = self.eye or self.last_world_camera
        return eye_of(cam) if cam else (np.zeros(3), None)

    def _positions(self, state, ids: np.ndarray) -> np.ndarray:
        codes = state.codes_of(ids, (Attr.POSITION,))[Attr.POSITION]
        return self.enc.profile.dequantize(Attr.POSITION, codes, ids)

    def _keys(self, positions: np.ndarray) -> np.ndarray:
        out = np.empty(len(positions), np.int64)
        _cube_keys(np.ascontiguousarray(positions), self.origin, float(self.cell), out)
        return out

    def _centres(self, keys: np.ndarray) -> np.ndarray:
        m = (1 << KEY_BITS) - 1
        k = np.stack([keys >> (2 * KEY_BITS), (keys >> KEY_BITS) & m, keys & m], 1).astype(np.float64)
        return self.origin + (k + 0.5) * self.cell

    # cube tables ---------------------------------------------------------------------------------
    def _new_cubes(self, keys: np.ndarray) -> np.ndarray:
        """Append cubes for ``keys`` (none of them known); returns their indices."""
        n0, k = len(self.c_key), len(keys)
        self.c_key = np.r_[self.c_key, keys]
        self.c_centre = np.r_[getattr(self, "c_centre", np.zeros((0, 3))), self._centres(keys)] if n0 else self._centres(keys)
        self.c_count = np.r_[self.c_count, np.zeros(k, np.int64)]
        self.c_base = np.r_[self.c_base, np.zeros(k, np.int64)]
        self.c_fine = np.r_[self.c_fine, np.zeros(k, bool)]
        self.c_si = np.r_[self.c_si, np.zeros(k, U64)]
        self.c_has = np.r_[self.c_has, np.zeros(k, bool)]
        self.c_new = np.r_[self.c_new, np.ones(k, bool)]
        o = np.argsort(self.c_key, kind="stable")
        self.k_sorted, self.k_cube = self.c_key[o], o
        return np.arange(n0, n0 + k)

    def _cube_of_keys(self, keys: np.ndarray) -> np.ndarray:
        """Cube index per key, -1 for keys with no cube."""
        pos = np.searchsorted(self.k_sorted, keys)
        pos = np.minimum(pos, max(len(self.k_sorted) - 1, 0))
        hit = (len(self.k_sorted) > 0) & (self.k_sorted[pos] == keys) if len(self.k_sorted) else np.zeros(len(keys), bool)
        return np.where(hit, self.k_cube[pos], -1)

    def _build(self, ids: np.ndarray, positions: np.ndarray, target: int) -> None:
        """Cubes of the world's Gaussians ``ids`` (ascending), about ``target`` of them."""
        g = self.enc.profile.grid
        self.origin = np.asarray(g.origin, np.float64)
        self.cell = self._cell_for(positions, max(1, target))
        limit = min(self.budget, max(1, target + target // 10))
        while True:                                   # never more cubes than the budget holds stand-ins
            keys = self._keys(positions)
            uniq, inv = np.unique(keys, return_inverse=True)
            if len(uniq) <= max(limit, 1) or len(uniq) <= 1 or target >= len(ids):
                break
            self.cell *= 1.08
        self.c_key = np.zeros(0, np.int64)
        self.c_count = self.c_base = np.zeros(0, np.int64)
        self.c_fine = self.c_has = self.c_new = np.zeros(0, bool)
        self.c_si = np.zeros(0, U64)
        self._new_cubes(uniq)
        self.c_count = np.bincount(inv, minlength=len(uniq)).astype(np.int64)
        self.c_base = self.c_count.copy()
        self.c_new[:] = False
        self.m_ids, self.m_cube = ids, inv.astype(np.int64)
        self._plan_at, self._changed, self._since_plan = None, True, 0
        self._pic_gen, self._pic = self._pic_gen + 1, None     # cube numbers change: a new picture

    def _cell_for(self, positions: np.ndarray, count: int) -> float:
        """The cube size whose occupied cubes number about ``count``, by bisection on its log
        (``_build`` then grows it while there are too many)."""
        table = np.empty(1 << max(4, (2 * len(positions)).bit_length()), np.int64)

        def occupied(cell: float, pos: np.ndarray) -> int:
            self.cell = cell
            bits = max(4, (2 * len(pos)).bit_length())
            t = table[:1 << bits]
            t.fill(-1)
            return _count_cubes(np.ascontiguousarray(pos), self.origin, float(cell), t, bits)

        def bisect(lo: float, hi: float, pos: np.ndarray, want: int, steps: int) -> float:
            for _ in range(steps):
                mid = 0.5 * (lo + hi)
                if occupied(float(np.exp(mid)), pos) > want:
                    lo = mid
                else:
                    hi = mid
            return hi

        n = len(positions)
        ext = max(_extent(np.ascontiguousarray(positions)) if n else 1.0, 1e-6)
        lo, hi = np.log(ext / 65536), np.log(ext * 2)
        if n <= 100_000:
            return float(np.exp(bisect(lo, hi, positions, count, 20)))
        # a guess from a sample of 30k, then the secant method on log(cubes) against log(size) over
        # all positions (cubes go about as a power of the size): a few passes, not twenty
        sample = positions[np.linspace(0, n - 1, 30_000).astype(np.int64)]
        x0 = bisect(lo, hi, sample, max(1, count * len(sample) // n), 16)
        f0 = np.log(occupied(float(np.exp(x0)), positions) / count)
        x1 = x0 + (0.3 if f0 > 0 else -0.3)
        f1 = np.log(occupied(float(np.exp(x1)), positions) / count)
        for _ in range(4):
            if abs(f1) < 0.05 or f1 == f0:
                break
            x2 = x1 - f1 * (x1 - x0) / (f1 - f0)
            x0, f0, x1 = x1, f1, float(np.clip(x2, x1 - 1.5, x1 + 1.5))
            f1 = np.log(occupied(float(np.exp(x1)), positions) / count)
        return float(np.exp(x1))

    def _members(self, cubes: np.ndarray) -> np.ndarray:
        """World ids of the Gaussians of ``cubes`` (ascending)."""
        return self.m_ids[self._member_rows(cubes)]

    def _member_rows(self, cubes: np.ndarray) -> np.ndarray:
        """Positions in ``m_ids`` (ascending) of the Gaussians of ``cubes``."""
        if not len(cubes):
            return np.zeros(0, np.int64)
        want = np.zeros(len(self.c_key), bool)
        want[cubes] = True
        return np.flatnonzero(want[self.m_cube])

    # stand-ins -----------------------------------------------------------------------------------
    def _stand_ins(self, cubes: np.ndarray, taken: np.ndarray, at: tuple | None = None) -> tuple[np.ndarray, dict]:
        """Stand-ins of ``cubes`` from their Gaussians' current values: fresh ids (none live in the
        world or the client, none in ``taken``), codes. Records them as the cubes' stand-ins.
        ``at``: (slots, positions) of every id of ``m_ids``, when the caller has them (a cut: the
        state has not moved since), so that no id is looked up or position decoded twice."""
        W = self.enc.state
        if not len(cubes):
            return np.zeros(0, U64), W.codes_of(np.zeros(0, U64))
        rows = self._member_rows(cubes)
        slot = np.full(len(self.c_key), -1, np.int64)
        slot[cubes] = np.arange(len(cubes))
        group = slot[self.m_cube[rows]]
        o = np.empty(len(group), np.int64)            # in cube order: merge reads them without a copy
        _group_order(group, len(cubes), o)
        rows, group = rows[o], group[o]
        mem = self.m_ids[rows]
        p = self.enc.profile
        if p.quant is None:                          # float codes: merge the floats
            codes = W.codes_of(mem)
            g = Gaussians.from_attributes(W.floats(mem, codes))
            s = merged(g, group, len(cubes))
            ids = self._fresh(p.grid.cells_of(s.positions), taken)
            return self._made(cubes, ids, {a: p.quantize(a, s.attribute(a), ids) for a in ATTRS})
        if at is not None:
            slots, positions = at[0][rows], at[1][rows]
        else:
            slots = W.slots_of(mem)
            if (slots < 0).any():
                raise KeyError("a cube member is not live")
            positions = p.dequantize(Attr.POSITION, W.codes[Attr.POSITION][:, slots], mem)
        # SH codes dequantize affinely (SPEC.md 5.3): their weighted mean, rounded, is the code of the
        # floats' weighted mean, read from the state's arrays in place; only the geometry goes
        # through floats
        geo = {a: p.dequantize(a, c, mem) for a, c in W.codes_at(slots, (Attr.SCALE, Attr.ROTATION, Attr.OPACITY)).items()}
        sizes = np.bincount(group, minlength=len(cubes))
        sh = [W.codes[Attr.SH_DC], W.codes[Attr.SH_REST]]
        pos, scl, rot, opa, (dc, rest) = merge_sorted(positions, geo[Attr.SCALE], geo[Attr.ROTATION],
                                                      geo[Attr.OPACITY][:, 0], sh, sizes, slots)
        ids = self._fresh(p.grid.cells_of(pos), taken)
        out = {Attr.POSITION: p.quantize(Attr.POSITION, pos, ids), Attr.SCALE: p.quantize(Attr.SCALE, scl, ids),
               Attr.ROTATION: p.quantize(Attr.ROTATION, rot, ids),
               Attr.OPACITY: p.quantize(Attr.OPACITY, opa[:, None], ids)}
        for a, x in zip((Attr.SH_DC, Attr.SH_REST), (dc, rest)):
            out[a] = np.ascontiguousarray(np.rint(x.T)).astype(W.codes[a].dtype)
        return self._made(cubes, ids, out)

    def _made(self, cubes: np.ndarray, ids: np.ndarray, codes: dict) -> tuple[np.ndarray, dict]:
        self.c_si[cubes], self.c_has[cubes] = ids, True
        self.c_base[cubes] = self.c_count[cubes]
        self.cubes_made += len(cubes)
        return ids, codes

    def _fresh(self, cells: np.ndarray, taken: np.ndarray) -> np.ndarray:
        """Ids in ``cells`` that no Gaussian of the world or the client has, none in ``taken``, all
        distinct: from the top slot of each cell down (the world fills a cell's slots from 0 up)."""
        g = self.enc.profile.grid
        shift, top = U64(g.slot_bits), (1 << g.slot_bits) - 1
        cells = np.asarray(cells, U64)
        order = np.argsort(cells, kind="stable")
        cs = cells[order]
        first = np.r_[0, np.flatnonzero(cs[1:] != cs[:-1]) + 1] if len(cs) else np.zeros(0, np.int64)
        rank = np.empty(len(cells), np.int64)
        rank[order] = np.arange(len(cs)) - np.repeat(first, np.diff(np.r_[first, len(cs)]))
        if len(cells) and rank.max() > top:
            raise ValueError("a grid cell has no slot left for a stand-in")
        ids = (cells << shift) | (U64(top) - rank.astype(U64))
        taken = np.sort(np.asarray(taken, U64))

        def used(x: np.ndarray) -> np.ndarray:
            out = (self.enc.state.slots_of(x) >= 0) | (self.held.state.slots_of(x) >= 0)
            if len(taken):
                out |= sorted_member(x, taken)
            return out

        # taken ones try R slots lower, then 2R, ... (R: the most ids one cell asks for here), so
        # that the tries of one cell never meet
        bad = np.flatnonzero(used(ids))
        span, attempt = int(rank.max()) + 1 if len(rank) else 1, 1
        while len(bad):
            slot = top - rank[bad] - attempt * span
            if (slot < 0).any():
                raise ValueError("a grid cell has no slot left for a stand-in")
            ids[bad] = (cells[bad] << shift) | slot.astype(U64)
            bad = bad[used(ids[bad])]
            attempt += 1
        return ids

    # frames --------------------------------------------------------------------------------------
    def _keyframe(self) -> OutFrame | None:
        """A keyframe of stand-ins of the world's current state (within the budget), or a plain
        keyframe when the world is small enough already. A cut the world keeps (``CutCache``)
        serves when it is recent: the steps since it was made are this client's first dirty ids, so
        its first frames bring it to the world's state as they would after any step. With none to
        take, a world that cuts ahead is asked for one and this returns None (a later take sends it)."""
        W = self.enc.state
        key = self.cut_key
        cut = self.cuts.take(key) if self.cuts is not None else None
        if cut is None and self.cuts is not None and self.cuts.ahead:
            self.cuts.request(key, self._params())   # made on the world's cut thread: the world steps on
            return None
        if cut is not None:
            self._adopt(cut)
            dirty = self.cuts.touched_since(key)
        else:
            cut = self._cut()
            dirty = []
            if self.cuts is not None:
                self.cuts.put(key, cut, self._params())
        self.held = Encoder(self.enc.profile, max_gaussians=self.enc.header.max_gaussians)
        d = self._add_delta(cut.ids, cut.codes, self.held.state, keyframe=True)
        d.seq = max(W.seq, 1)
        data = self.held.encode_delta(d)
        # the client's state fills up frame by frame as cubes refine: room for all it may hold, so that it
        # does not copy its arrays at each doubling on the world's thread
        self.held.state.reserve(min(self.budget, self.world_max, 2 * len(W)))
        self.per = len(data) / max(1, len(cut.ids)) if len(cut.ids) > 64 else cut.per
        steps = d.seq - self.last_sent if self.last_sent >= 0 else 0
        self.dirty, self.settled = dirty, False
        return self._out(data, d, True, steps, self.last_world_camera)

    @property
    def cut_key(self) -> tuple:
        """What a world's kept cuts are shared by: joiners with this budget and first frame size."""
        return self.budget, self.first_bytes

    def _params(self) -> dict:
        return {"max_frame_bytes": self.max_frame_bytes, "budget": self.budget if self.budget < self.world_max else None,
                "first_bytes": self.first_bytes, "refine_bytes": self.refine_bytes}

    def _cut(self) -> "Cut":
        """Cubes and stand-ins of the world's current state: the tables, and the keyframe's ids and codes."""
        W = self.enc.state
        ids, slots = W.index.sorted_items()
        ids = ids.copy()                             # the tables keep them; the index moves on
        n = len(ids)
        positions = self.enc.profile.dequantize(Attr.POSITION, W.codes[Attr.POSITION][:, slots], ids)
        probe = min(n, 4096)
        if probe:
            sample = np.unique(np.linspace(0, n - 1, probe).astype(np.int64))
            e = Encoder(self.enc.profile)
            self.per = len(e.encode_delta(self._add_delta(ids[sample], W.codes_at(slots[sample]),
                                                         e.state, keyframe=True))) / len(sample)
        target = max(1, min(int(self.first_bytes / self.per), self.budget // 2 if self.budget < n else n))
        self.held = Encoder(self.enc.profile, max_gaussians=self.enc.header.max_gaussians)
        made = self.cubes_made
        self._build(ids, positions, target if target < n else n)
        if target >= n and n <= self.budget:
            self.c_fine[:] = True                    # small enough: the plain keyframe
            parts = [(ids, W.codes_at(slots))]
        else:
            single = self.c_count == 1
            self.c_fine[single] = True
            coarse = np.flatnonzero(~single)
            fine = self._member_rows(np.flatnonzero(single))
            parts = [(ids[fine], W.codes_at(slots[fine]))]
            parts.append(self._stand_ins(coarse, ids[fine], at=(slots, positions)))
        add_ids, add = _concat_codes(parts, self.enc.profile)
        return Cut(W.seq, n, {k: _copy(getattr(self, k)) for k in Cut.TABLES}, self.per, add_ids, add,
                   self.cubes_made - made)

    def _adopt(self, cut: "Cut") -> None:
        """Take a shared cut's tables as this client's own (copies: the client's frames change them)."""
        for k, v in cut.tables.items():
            setattr(self, k, _copy(v))
        self._plan_at, self._changed, self._since_plan = None, True, 0
        self._pic_gen, self._pic = self._pic_gen + 1, None     # cube numbers change: a new picture
        self.per = cut.per
        self.cubes_made += cut.cubes_made

    def _add_delta(self, ids, codes, state, keyframe=False) -> Delta:
        d = Delta.empty_like(self.enc.profile, seq=state.seq + 1, base_seq=state.seq, keyframe=keyframe)
        d.add_ids, d.add = ids, codes
        return d

    def _out(self, data: bytes, d: Delta, keyframe: bool, steps: int, camera) -> OutFrame:
        if len(data) > self.max_frame_bytes:
            raise FrameTooLarge(len(data), self.max_frame_bytes)
        coarse = int((self.c_has & ~self.c_fine & (self.c_count > 0)).sum())
        out = OutFrame(data, d.seq, str(d.digest), keyframe, self.actions, steps, camera,
                       detail={"held": len(self.held.state), "coarse": coarse, "budget": self.budget})
        self._clear(d.seq)
        self._maybe_ordinary()
        return out

    def _maybe_ordinary(self) -> None:
        """Refinement is over and the world is well within the budget (or can never outgrow it): an
        ordinary client, sent the world's own deltas, until the world nears the budget (``push``)."""
        within = self.budget >= self.world_max or len(self.enc.state) <= ORDINARY_AT * self.budget
        if (within and not self.dirty and self.held.state.seq == self.enc.state.seq
                and not (self.c_has & ~self.c_fine & (self.c_count > 0)).any()
                and self.held.state.digest() == self.enc.state.digest()):
            self.tracked = False
            self.held = None
            self.c_key = self.m_ids = None

    def _track_from_world(self) -> None:
        """Follow the client from here on (a smaller budget): its state is the world's, every cube fine."""
        W = self.enc.state
        self.held = Encoder(self.enc.profile, max_gaussians=self.enc.header.max_gaussians)
        self.held.state = W.copy()
        ids = W.ids()
        target = max(1, min(int(self.first_bytes / self.per), self.budget // 2))
        self._build(ids, self._positions(W, ids), target)
        self.c_fine[:] = True
        self.tracked, self.dirty, self.settled = True, [], False

    def _update_members(self) -> np.ndarray:
        """Fold the dirty ids into the cube tables; returns them (ascending, distinct)."""
        W = self.enc.state
        touched = sorted_unique(np.concatenate(self.dirty)) if self.dirty else np.zeros(0, U64)
        self.dirty = []
        if not len(touched):
            return touched
        live = W.slots_of(touched) >= 0
        member = sorted_member(touched, self.m_ids)
        gone = touched[member & ~live]
        new = touched[~member & live]
        self._changed |= bool(len(gone) or len(new))
        if len(gone):
            idx = np.searchsorted(self.m_ids, gone)
            np.subtract.at(self.c_count, self.m_cube[idx], 1)
            keep = np.ones(len(self.m_ids), bool)
            keep[idx] = False
            self.m_ids, self.m_cube = self.m_ids[keep], self.m_cube[keep]
        if len(new):
            pos = self._positions(W, new)
            keys = self._keys(pos)
            cube = self._cube_of_keys(keys)
            unknown = np.flatnonzero(cube < 0)
            if len(unknown):
                uk, inv = np.unique(keys[unknown], return_inverse=True)
                live_cubes = int((self.c_count > 0).sum())
                room = self.budget - live_cubes              # a new cube costs at least its stand-in
                if len(uk) <= room:
                    cube[unknown] = self._new_cubes(uk)[inv]
                else:                                        # beyond the budget: into the nearest cube
                    alive = np.flatnonzero(self.c_count > 0)
                    if len(alive) == 0:
                        alive = self._new_cubes(uk[:1])
                    centres = self._centres(self.c_key[alive])
                    for s in range(0, len(unknown), 256):
                        part = unknown[s:s + 256]
                        d2 = ((pos[part, None, :] - centres[None, :, :]) ** 2).sum(-1)
                        cube[part] = alive[np.argmin(d2, axis=1)]
            np.add.at(self.c_count, cube, 1)
            at = np.searchsorted(self.m_ids, new)
            self.m_ids = np.insert(self.m_ids, at, new)
            self.m_cube = np.insert(self.m_cube, at, cube)
        return touched

    def _plan(self, allowance: int) -> tuple[np.ndarray, np.ndarray]:
        """(cubes to refine, cubes to coarsen) now: the most important cubes fine within the budget,
        at most ``allowance`` Gaussians refined (cubes new since the last frame do not count)."""
        alive = self.c_count > 0
        pos, fwd = self._eye()
        centres = self.c_centre
        d = centres - pos
        d2 = np.maximum((d ** 2).sum(1), (0.5 * self.cell) ** 2)
        score = self.c_count / d2
        if fwd is not None:
            view = View.of(self.eye)
            in_cone = (d @ fwd) / np.sqrt(d2) >= view.cos_cone - self.cell / np.sqrt(d2)
            score = np.where(in_cone, score, score * BEHIND)
        score = np.where(self.c_fine, score * KEEP, score)
        if fwd is not None:              # cubes that make some of the client's picture come first, by what
            pic = self._picture(pos, fwd, view, alive & in_cone)      # they make of it per Gaussian
            seen = pic > 0
            if seen.any():
                per = np.where(self.c_fine, KEEP, 1.0) * pic / np.maximum(self.c_count, 1)
                top = float(score[np.isfinite(score)].max(initial=0.0))
                score = np.where(seen, top + 1.0 + per / per[seen].max(), score)
        cost = np.where(alive, self.c_count - 1, 0)
        score = np.where(cost == 0, np.inf, score)       # a lone Gaussian is its own stand-in
        order = np.argsort(-score, kind="stable")
        order = order[alive[order]]
        room = self.budget - int(alive.sum())
        if room < 0:
            self._complete = True
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        fits = np.cumsum(cost[order]) <= room
        desired = np.zeros(len(self.c_key), bool)
        desired[order[fits]] = True      # the prefix that fits (cumsum is ascending: fits is a prefix)
        want = order[desired[order] & ~self.c_fine[order]]
        new = self.c_new[want] | (cost[want] == 0)
        take = np.cumsum(np.where(new, 0, self.c_count[want])) <= max(allowance, 1)
        if len(want) and not take.any():
            take[0] = True
        refine = want[take | new]
        self._complete = len(refine) == len(want)    # else refinement goes on at the next frame
        losers = np.flatnonzero(self.c_fine & alive & ~desired)
        losers = losers[np.argsort(score[losers], kind="stable")]
        fine_count = int(self.c_count[self.c_fine & alive].sum()) + int((alive & ~self.c_fine).sum())
        need = fine_count + int(cost[refine].sum()) - self.budget
        if need > 0:
            k = int(np.searchsorted(np.cumsum(cost[losers]), need)) + 1
            coarsen = losers[:k]
        else:
            coarsen = losers[:0]
        return refine, coarsen

    def _picture_done(self) -> bool:
        """Take a picture weighed on the cut thread, if one is done; True if it is new."""
        job = self._pic_job
        if job is None or not job.done():
            return False
        gen, pic = job.result()
        self._pic_job = None
        if gen != self._pic_gen:
            return False
        self._pic = pic
        return True

    def _picture(self, pos: np.ndarray, fwd: np.ndarray, view: "View", seen: np.ndarray) -> np.ndarray:
        """Per cube, how much of the client's picture ``view`` its Gaussians make (``_weigh``: the live
        cubes of the view cone, ``seen``); zeros until the first picture is weighed. Distance alone ranks a near cube behind a wall above the far ones in
        view: on a 200k world a budget of a quarter of it left the client's view at 34.7 dB against the
        world's, while a tenth of the world's Gaussians made all of the picture. A picture is weighed
        again once the eye moves a cube or turns as far as a plan is made again for; with the world's
        cuts (``CutCache``) on their thread, from the codes gathered here, so the world does not wait
        (its cubes meanwhile keep the last picture's weights; cubes new since rank by distance)."""
        self._picture_done()
        kept = self._pic
        if (kept is None or np.linalg.norm(pos - kept.eye) > self.cell or float(fwd @ kept.direction) < COS_REPLAN
                or kept.view != view) and self._pic_job is None:
            rows = self._member_rows(np.flatnonzero(seen))
            ids, cubes = self.m_ids[rows], self.m_cube[rows]
            slots = self.enc.state.slots_of(ids)
            live = slots >= 0
            codes = self.enc.state.codes_at(slots[live], (Attr.POSITION, Attr.SCALE, Attr.ROTATION, Attr.OPACITY))
            args = (self._pic_gen, pos.copy(), fwd.copy(), ids[live], cubes[live], codes, self.enc.profile,
                    len(self.c_key), view)
            self.pictures += 1
            if self.cuts is not None:
                self._pic_job = self.cuts.submit(_weigh, *args)
            else:
                self._pic = _weigh(*args)[1]
            kept = self._pic
        if kept is None:
            return np.zeros(len(self.c_key))
        if len(kept.weights) < len(self.c_key):          # cubes new since: no weight yet
            self._pic = kept = kept._replace(weights=np.r_[kept.weights, np.zeros(len(self.c_key) - len(kept.weights))])
        return kept.weights

    def _frame(self) -> OutFrame:
        W, H = self.enc.state, self.held.state
        p = self.enc.profile
        touched = self._update_members()
        if int((self.c_count > 0).sum()) > self.budget:
            self.request_keyframe()                  # even one stand-in a cube is over the budget: coarser cubes
            return self._keyframe()
        allowance = int(self.refine_bytes / max(self.per, 1.0))
        # plan again when something it depends on moved: cube counts, the eye, the budget (settled)
        pos, fwd = self._eye()
        last = self._plan_at
        moved = (last is None or np.linalg.norm(pos - last[0]) > self.cell
                 or (fwd is not None and (last[1] is None or float(fwd @ last[1]) < COS_REPLAN))
                 or self._picture_done())             # the client's picture weighed afresh
        self._since_plan += 1
        if not moved and self.settled and self._changed and self._since_plan < REPLAN_FRAMES:
            # counts moved a little: plan again only if the budget needs it now (or every few frames)
            alive = self.c_count > 0
            moved = int(self.c_count[self.c_fine & alive].sum()) + int((alive & ~self.c_fine).sum()) > self.budget
        if not self.settled or moved or (self._changed and self._since_plan >= REPLAN_FRAMES):
            refine, coarsen = self._plan(allowance)
            self.settled = self._complete         # the plan is carried out: until the eye or the cubes move
            self._plan_at, self._since_plan, self._changed = (pos, fwd), 0, False
        else:
            refine = coarsen = np.zeros(0, np.int64)
        empty = np.flatnonzero(self.c_has & (self.c_count == 0))
        # coarse cubes whose Gaussians changed a lot since their stand-in was made
        coarse = np.flatnonzero(self.c_has & ~self.c_fine & (self.c_count > 0))
        stale = coarse[np.abs(self.c_count[coarse] - self.c_base[coarse]) > REFRESH * np.maximum(self.c_base[coarse], 4)]
        stale = np.setdiff1d(stale, refine)
        new_coarse = np.flatnonzero(~self.c_fine & ~self.c_has & (self.c_count > 0))
        new_coarse = np.setdiff1d(new_coarse, refine)

        deletes, adds = [], []
        si = np.sort(self.c_si[self.c_has])          # the client's stand-ins, before this frame

        def held(ids):                               # the client holds the world's Gaussian of this id
            return (H.slots_of(ids) >= 0) & ~sorted_member(ids, si)

        # 1. Gaussians of fine cubes (and any the client holds that the world no longer has)
        held_t = held(touched)
        in_w = W.slots_of(touched) >= 0
        deletes.append(touched[held_t & ~in_w])
        cube_t = np.full(len(touched), -1, np.int64)
        mem = sorted_member(touched, self.m_ids)
        cube_t[mem] = self.m_cube[np.searchsorted(self.m_ids, touched[mem])]
        fine_now = self.c_fine.copy()
        fine_now[coarsen] = False
        fine_t = (cube_t >= 0) & fine_now[np.maximum(cube_t, 0)]
        add_w = touched[fine_t & in_w & ~held_t]
        upd = touched[fine_t & in_w & held_t]
        # 2. coarsened cubes: their held Gaussians go, a stand-in comes
        if len(coarsen):
            m = self._members(coarsen)
            deletes.append(m[held(m)])
        # 3. refined cubes: the stand-in goes, the Gaussians come with their current codes
        refine_m = self._members(refine)
        refine_m = refine_m[~held(refine_m)]
        add_w = np.union1d(add_w, refine_m).astype(U64)
        dead_si = np.r_[refine[self.c_has[refine]], empty, stale]
        deletes.append(self.c_si[dead_si])
        self.c_has[dead_si] = False
        self.c_fine[refine] = True
        self.c_fine[coarsen] = False
        self.c_new[:] = False
        # 4. a world id that is the id of a stand-in the client keeps: that stand-in moves
        del_ids = sorted_unique(np.concatenate([np.asarray(x, U64) for x in deletes])) if deletes else np.zeros(0, U64)
        keep_si = np.flatnonzero(self.c_has)
        clash = keep_si[sorted_member(self.c_si[keep_si], np.sort(add_w))] if len(add_w) else keep_si[:0]
        if len(clash):
            del_ids = sorted_unique(np.r_[del_ids, self.c_si[clash]])
            self.c_has[clash] = False
        # 5. stand-ins made now
        make = np.unique(np.r_[coarsen, stale, new_coarse, clash]).astype(np.int64)
        if len(add_w):
            adds.append((add_w, W.codes_of(add_w)))
        if len(make):
            adds.append(self._stand_ins(make, add_w))
        add_ids, add = _concat_codes(adds, p)
        d = Delta.empty_like(p, seq=W.seq, base_seq=H.seq)
        d.add_ids, d.add, d.delete_ids = add_ids, add, del_ids
        if len(upd):
            d.updates = self._updates(upd)
        data = self.held.encode_delta(d)
        return self._out(data, d, False, d.seq - self.last_sent, self.camera)

    def _updates(self, ids: np.ndarray) -> list:
        """UPDATE blocks that bring the client's codes of ``ids`` (ascending, held) to the world's."""
        W, H = self.enc.state, self.held.state
        ws, hs = W.slots_of(ids), H.slots_of(ids)
        mask = np.zeros(len(ids), np.uint8)
        res = {}
        for a in ATTRS:
            if not self.enc.profile.comps(a):
                continue
            new, old = unsigned(W.codes[a][:, ws]), unsigned(H.codes[a][:, hs])
            r = new - old
            res[a] = r.view(W.codes[a].dtype)
            mask[(r != 0).any(0)] |= a.bit
        return group_updates(ids, mask, res)


def eye_of(cam: dict) -> tuple[np.ndarray, np.ndarray]:
    """(eye position, unit view direction) of a camera dict (position, yaw and pitch in degrees; z up:
    the conventions of actions.py)."""
    pos = np.asarray(cam.get("position", (0.0, 0.0, 0.0)), np.float64)
    yaw, pitch = np.radians(float(cam.get("yaw", 0.0))), np.radians(float(cam.get("pitch", 0.0)))
    return pos, np.array([np.cos(pitch) * np.cos(yaw), np.cos(pitch) * np.sin(yaw), np.sin(pitch)])


@dataclass(frozen=True)
class View:
    """The client's picture: ``fov`` degrees across, ``width`` x ``height`` pixels (about PICTURE_PIXELS,
    of the client's aspect), and ``cos_cone``: the cone of cubes it may see, 60 degrees either side of
    the view direction or as wide as the picture's corners."""
    fov: float
    width: int
    height: int
    cos_cone: float

    @staticmethod
    def of(eye: dict | None) -> "View":
        """From a ``detail`` view's optional ``fov`` and ``aspect`` (SPEC.md 11.9), else the defaults."""
        fov = float((eye or {}).get("fov", PICTURE_FOV))
        aspect = float((eye or {}).get("aspect", PICTURE_ASPECT))
        width = max(8, round(math.sqrt(PICTURE_PIXELS * aspect)))
        height = max(8, round(PICTURE_PIXELS / width))
        corner = math.atan(math.tan(math.radians(fov) / 2) * math.hypot(1.0, 1.0 / aspect))
        return View(fov, width, height, min(COS_VIEW, math.cos(corner)))


class Picture(NamedTuple):
    """What each cube makes of a client's picture (``weights``), and the eye and view it was weighed for."""
    eye: np.ndarray
    direction: np.ndarray
    weights: np.ndarray
    view: View


def _weigh(gen: int, pos: np.ndarray, fwd: np.ndarray, ids: np.ndarray, cubes: np.ndarray, codes: dict, profile,
           n_cubes: int, view: View = View.of(None)) -> tuple:
    """(gen, Picture): ``screen_weight`` of the Gaussians ``ids``
    (their position, scale, rotation and opacity ``codes``) seen from ``pos`` along ``fwd`` in the picture
    ``view``, summed per cube (``cubes``). Reads only its arguments: runs on any thread."""
    n = len(ids)
    g = Gaussians(*(profile.dequantize(a, codes[a], ids) for a in (Attr.POSITION, Attr.SCALE, Attr.ROTATION)),
                  profile.dequantize(Attr.OPACITY, codes[Attr.OPACITY], ids).reshape(-1), np.zeros((n, 3)),
                  np.zeros((n, 0)))
    cam = pinhole(view.width, view.height, view.fov, look_at(pos, pos + fwd))
    return gen, Picture(pos, fwd, np.bincount(cubes, weights=screen_weight(g, cam), minlength=n_cubes), view)


def _copy(v):
    return v.copy() if isinstance(v, np.ndarray) else v


@dataclass
class Cut:
    """A world's Gaussians grouped into cubes at ``seq``, with the keyframe of their stand-ins: what a
    progressive joiner's first frame is made of (``ProgressivePending._cut``)."""
    TABLES = ("origin", "cell", "c_key", "c_centre", "c_count", "c_base", "c_fine", "c_si", "c_has", "c_new",
              "k_sorted", "k_cube", "m_ids", "m_cube")
    seq: int
    n: int                   # the world's Gaussians at seq
    tables: dict             # ProgressivePending's cube tables, by attribute name
    per: float               # bytes per Gaussian of a keyframe of this world
    ids: np.ndarray          # the keyframe: ids ascending ...
    codes: dict              # ... and {Attr: (C, n) codes}
    cubes_made: int


def _make_cut(snapshot: Encoder, params: dict) -> Cut:
    """A cut of ``snapshot`` (an encoder whose state is a copy of the world's), on a worker thread."""
    return ProgressivePending(snapshot, **params)._cut()


class CutCache:
    """The stand-in cuts of one world, made beside its steps and shared by its progressive joiners.

    Cutting a large world takes long (about 1 s for 700k Gaussians on one core): too long for a
    joiner's first image, and the world's thread would stall every other client meanwhile. So:

    * with ``ahead`` (the server's worlds) a joiner with no cut to take asks for one (``request``)
      and waits while the world steps on: the cut is made on a worker thread from a snapshot of the
      world's state, and the world's thread pays only for the copy;
    * a world made to be joined (the server's, when it offers progressive joins) cuts once as it is
      created (``prime``), so that its first joiners find a cut too;
    * every cut is kept and handed to later joiners with the same budget, together with the ids the
      world's steps touched since (the world calls ``note`` after each step while any cut is kept),
      so its stand-ins are stale by those steps only until the joiner's first frames;
    * while joins keep coming (``CUT_KEEP_WARM_S``), a cut whose world has touched
      ``CUT_REFRESH_SHARE`` of its Gaussians since is made again on the worker thread. One cut is
      made at a time, and after each the thread rests three times as long as it took before it
      refreshes again (refreshes take a quarter of a core at most; a cut a joiner waits for does not
      wait): a world that changes faster than that (700k Gaussians walking into new chunks at 4,096
      a step) hands out staler cuts, and beyond ``CUT_STALE_SHARE`` none.
    """

    def __init__(self, encoder: Encoder, *, ahead: bool = False, refresh_share: float = CUT_REFRESH_SHARE,
                 stale_share: float = CUT_STALE_SHARE, keep_warm_s: float = CUT_KEEP_WARM_S, rest: float = 3.0,
                 clock=time.monotonic):
        self.enc = encoder
        self.ahead = ahead                   # a joiner with no cut to take waits for one from the cut thread
        self.asked: dict = {}                # key -> params of cuts joiners wait for (made first, no rest)
        self.errors: dict = {}               # key -> the exception its cut thread raised
        self.refresh_share, self.stale_share, self.keep_warm_s, self.rest = refresh_share, stale_share, keep_warm_s, rest
        self.clock = clock
        self.cuts: dict = {}                 # key -> Cut
        self.since: dict = {}                # key -> distinct ids (ascending) the world touched after its cut
        self.wanted: dict = {}               # key -> (params, when a join last asked)
        self.job = None                      # (key, snapshot seq, Future) of the cut in the making
        self.job_since = np.zeros(0, U64)    # ... the ids touched after its snapshot
        self.job_asked = False               # ... and whether a joiner waits for it (handed out however stale)
        self.pool: ThreadPoolExecutor | None = None
        self.next_job = 0.0                  # clock time before which no cut is started
        self.made_ahead = 0                  # cuts made on the worker thread
        self.cut_cpu_s = 0.0                 # their CPU time (thread time), for the metrics
        self.picture_cpu_s = 0.0             # the clients' pictures weighed on the cut thread (``submit``)
        self._last_cpu = 0.0
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        """The world must ``note`` its steps' touched ids."""
        return bool(self.cuts) or self.job is not None

    # -- world thread ----------------------------------------------------------------------------
    def note(self, seq: int, touched: np.ndarray) -> None:
        """After the world's step ``seq``: the ids it touched (``touched_ids``); drops cuts touched
        too much, refreshes cuts as needed."""
        new = sorted_unique(np.asarray(touched, U64))
        if len(new):
            for key, cut in list(self.cuts.items()):
                got = _union(self.since[key], new)
                if len(got) > self.stale_share * max(cut.n, 1):
                    del self.cuts[key], self.since[key]
                else:
                    self.since[key] = got
            if self.job is not None:
                self.job_since = _union(self.job_since, new)
        self._collect()
        self._expire()
        self._refresh()

    def touched_since(self, key) -> list:
        """The ids touched after the kept cut of ``key`` was made, as a joiner's first dirty ids."""
        return [self.since[key].copy()] if key in self.since else []

    def take(self, key) -> Cut | None:
        """The kept cut for ``key`` if it is recent enough to hand out, else None (the joiner cuts)."""
        self._collect()
        cut = self.cuts.get(key)
        if key in self.wanted:
            self.wanted[key] = (self.wanted[key][0], self.clock())
        if cut is None:
            return None
        t = cut.tables
        if t["c_has"].any() and (self.enc.state.slots_of(t["c_si"][t["c_has"]]) >= 0).any():
            del self.cuts[key], self.since[key]      # the world has since taken a stand-in's id
            return None
        return cut

    def request(self, key, params: dict) -> None:
        """A joiner waits for a cut of ``key``: made next on the cut thread (``take`` hands it out)."""
        if key in self.errors:
            raise self.errors.pop(key)
        self.wanted[key] = (params, self.clock())
        if self.job is None or self.job[0] != key:
            self.asked[key] = params
        self._collect()
        self._refresh()

    def wait(self, timeout: float | None = None) -> None:
        """Block until the cut in the making (if any) is done; for callers without a world to step."""
        if self.job is not None:
            try:
                self.job[2].result(timeout)
            except Exception:
                pass
        self._collect()
        self._refresh()

    def put(self, key, cut: Cut, params: dict) -> None:
        """A cut a joiner made on the world's thread: kept for the next joiners."""
        self.cuts[key], self.since[key] = cut, np.zeros(0, U64)
        self.wanted[key] = (params, self.clock())

    def prime(self, max_frame_bytes: int, first_bytes: int = FIRST_BYTES, refine_bytes: int = REFINE_BYTES) -> bool:
        """Cut now, on the calling thread, for joiners without a budget, and keep the cut as a joiner's
        would be kept: a world made to be joined (the server's) does this as it is created, so that its
        first progressive joiners take a cut instead of waiting for one. A world small enough for a
        plain first frame keeps nothing (its steps then note nothing). True if a cut is kept."""
        p = ProgressivePending(self.enc, max_frame_bytes, None, first_bytes, refine_bytes, cuts=self)
        cut = p._cut()
        if not cut.cubes_made:
            return False
        self.put(p.cut_key, cut, p._params())
        return True

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
        self.cuts.clear()
        self.since.clear()
        self.wanted.clear()
        self.asked.clear()
        self.job = None

    # -- internals -------------------------------------------------------------------------------
    def _collect(self) -> None:
        if self.job is None or not self.job[2].done():
            return
        key, _, fut = self.job
        self.job, since, asked = None, self.job_since, self.job_asked
        self.job_since, self.job_asked = np.zeros(0, U64), False
        with self._lock:
            self.next_job = self.clock() + self.rest * self._last_cpu
        if fut.cancelled() or key not in self.wanted:
            return
        if fut.exception() is not None:
            self.errors[key] = fut.exception()       # raised to the joiner that asks next
            return
        cut = fut.result()
        old = self.cuts.get(key)
        if (old is None or old.seq < cut.seq) and (asked or len(since) <= self.stale_share * max(cut.n, 1)):
            self.cuts[key], self.since[key] = cut, since

    def _expire(self) -> None:
        now = self.clock()
        for key in [k for k, (_, t) in self.wanted.items() if now - t > self.keep_warm_s]:
            del self.wanted[key]
            self.cuts.pop(key, None)
            self.since.pop(key, None)

    def _refresh(self) -> None:
        if self.job is not None:
            return
        if self.asked:                               # a joiner waits: no rest
            key, params = next(iter(self.asked.items()))
            del self.asked[key]
            self._start(key, params, True)
            return
        if self.clock() < self.next_job:
            return
        for key, (params, _) in self.wanted.items():
            cut = self.cuts.get(key)
            if cut is not None and len(self.since[key]) <= self.refresh_share * max(cut.n, 1):
                continue
            self._start(key, params, False)
            return

    def _thread(self) -> ThreadPoolExecutor:
        """The world's cut thread (made at its first job)."""
        if self.pool is None:
            self.pool = ThreadPoolExecutor(1, thread_name_prefix=CUT_THREAD)
        return self.pool

    def submit(self, fn, *args):
        """Run ``fn(*args)`` on the cut thread (a client's picture weights); its CPU time is counted
        in ``picture_cpu_s``. Returns the future."""
        def timed():
            t0 = time.thread_time()
            out = fn(*args)
            with self._lock:
                self.picture_cpu_s += time.thread_time() - t0
            return out
        return self._thread().submit(timed)

    def _start(self, key, params: dict, asked: bool) -> None:
        snapshot = Encoder(self.enc.profile, max_gaussians=self.enc.header.max_gaussians)
        snapshot.header = self.enc.header
        snapshot.state = self.enc.state.copy()
        self.job = (key, snapshot.state.seq, self._thread().submit(self._made_ahead, snapshot, params))
        self.job_since, self.job_asked = np.zeros(0, U64), asked

    def _made_ahead(self, snapshot: Encoder, params: dict) -> Cut:
        t0 = time.thread_time()
        cut = _make_cut(snapshot, params)
        with self._lock:
            self._last_cpu = time.thread_time() - t0
            self.made_ahead += 1
            self.cut_cpu_s += self._last_cpu
        return cut


def _union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Union of two ascending arrays of distinct ids."""
    if not len(a):
        return b
    out = np.concatenate([a, b[~sorted_member(b, a)]])
    out.sort(kind="stable")
    return out
