"""Code space on the scene's own device: quantization, closed-loop residuals and UPDATE masks in torch.

A generator or a model holds its scene as torch tensors (on a GPU, or on the CPU). Everything
that touches every changed Gaussian runs there, in torch, on that device:

* ``TorchQuantizer`` -- floats -> integer codes, bit-identical to the codec's normative numpy
  quantizer (``Profile.quantize``) for every attribute and profile: float64 for positions,
  scales and SH DC, round half to even, smallest-three rotations in float64 (the same
  operation order as numpy, one rounding per operation), SH rest in float32, and opacity as a
  lookup in the exact float32 thresholds of numpy's sigmoid-floor rule (found once per
  profile by bisection over float32 bit patterns with ``Profile.quantize`` itself).
* ``DeviceCodes`` -- a mirror of the encoder's closed-loop state on the device: the codes of
  every live id (int32 rows, one column per component), found by id through a sorted main
  array plus a small sorted overlay (tombstones for deletes, merged in bulk). It equals
  ``Encoder.state`` by construction: an UPDATE's residual is new - old against these very
  codes, so the state after the frame holds the new quantized codes, which is what the mirror
  stores when the frame is committed.
* ``build_delta`` -- one frame's float changes (ADDs, UPDATE groups, deletes) -> the code-space
  ``Delta``: codes of the ADDs, residuals of the UPDATEs against the mirror (rows whose codes did
  not move past their threshold drop out; each row's mask names the attributes that moved),
  rows grouped by mask into UPDATE blocks sorted by id, and everything the host needs in
  **one** device-to-host copy of a packed byte buffer. The host only frames and compresses
  (``Encoder.encode_delta``). On a GPU all of that is one CUDA graph replay (``_FrameGraph``): a
  frame's rows are padded to a power of two so that its operations have fixed shapes, and the
  mirror's index then lives in fixed-size buffers that the graph searches in place. The graph's
  independent parts (the UPDATE rows' lookup, the ADD sort and packing, groups of attributes) are
  captured on side streams (``_Lanes``), so the device runs them side by side.

The mirror is attached to its ``Encoder``; a delta built here is committed to the mirror when
the encoder's state shows it was applied (same seq and digest), on the next ``build_delta``;
if the state moved any other way, the mirror reloads it from the host state.

Under an SH palette profile (SPEC.md 5.9) a frame that needs palette entries (a keyframe, ADDs,
an UPDATE of SH_REST) is built by the host encoder, which picks them; the others are built here.
``follow_host`` hands such a host-built frame to the mirror, which reads it back from the host
state once it is applied (its rows, not the whole state).

Inputs may be numpy arrays as well (they become CPU tensors without a copy). The world's own
steps on the CPU go to the codec's encoder instead (``protocol.to_delta``): on small frames a torch
call per operation costs more than the work, and the frames are the same bytes (tested).
"""
from __future__ import annotations

import contextlib
import threading
import time
import weakref
from dataclasses import dataclass, field

import numpy as np
import torch

from codec import ATTRS, Attr, Delta, Encoder, Profile
from codec.state import slots_hold

I64 = torch.int64
I32 = torch.int32
F64 = torch.float64
U64 = np.uint64
_SQRT2 = np.sqrt(2.0)
_INV_SQRT2 = 1.0 / _SQRT2
# the SPEC.md 3.2 Morton code, de-interleaved: per axis, the low 21 bits of every third bit
_COMPACT = [(0x10C30C30C30C30C3, 2), (0x100F00F00F00F00F, 4), (0x1F0000FF0000FF, 8), (0x1F00000000FFFF, 16),
            (0x1FFFFF, 32)]


def as_tensor(x, device, dtype=None) -> torch.Tensor:
    """numpy or torch -> a tensor on ``device`` (numpy arrays on the CPU are not copied)."""
    if isinstance(x, torch.Tensor) and x.device == device and (dtype is None or x.dtype == dtype):
        return x                                  # already there: no dispatch at all
    if isinstance(x, np.ndarray):
        if x.dtype == np.uint64:
            x = x.view(np.int64)
        x = torch.from_numpy(np.ascontiguousarray(x))
    t = torch.as_tensor(x, device=device)
    return t if dtype is None else t.to(dtype)


# ------------------------------------------------------------------------------------ the quantizer
_OPACITY_THRESHOLDS: dict = {}


def _ordered_to_f32(o: np.ndarray) -> np.ndarray:
    """Monotone map of int64 keys in [-0x7F7FFFFF, 0x7F7FFFFF] onto the finite float32 values."""
    bits = np.where(o >= 0, o, (-o) | 0x80000000).astype(np.uint32)
    return bits.view(np.float32)


def opacity_thresholds(profile: Profile) -> np.ndarray:
    """float32 t[k-1] = the smallest float32 opacity whose code (``Profile.quantize``) is >= k.

    The code is a non-decreasing step function of the input, so a code is the number of
    thresholds <= the value: a lookup that reproduces numpy's sigmoid and floor exactly on any
    device, whatever its tanh.
    """
    bits = profile.quant.opacity_bits
    if bits in _OPACITY_THRESHOLDS:
        return _OPACITY_THRESHOLDS[bits]
    top = (1 << bits) - 1
    k = np.arange(1, top + 1, dtype=np.int64)
    lo = np.full(top, -0x7F7FFFFF, np.int64)
    hi = np.full(top, 0x7F7FFFFF, np.int64)

    def q(o):
        v = _ordered_to_f32(o)
        return profile.quantize(Attr.OPACITY, v.reshape(-1, 1), np.zeros(len(v), U64))[0].astype(np.int64)
    if not (q(hi) >= k).all() or (q(lo) >= 1).any():
        raise AssertionError("opacity codes do not span 0..top over the finite floats")
    while (lo < hi).any():
        mid = (lo + hi) // 2
        up = q(mid) >= k
        hi = np.where(up, mid, hi)
        lo = np.where(up, lo, mid + 1)
    t = _ordered_to_f32(lo)
    if (np.diff(t) < 0).any():
        raise AssertionError("opacity quantizer is not monotone")
    _OPACITY_THRESHOLDS[bits] = t
    return t


class TorchQuantizer:
    """``Profile.quantize`` in torch: (n, C) floats -> (n, C) int32 codes on the values' device.

    Codes are numeric (0..2^bits-1, signed for POSITION and SH_REST; float bits for the
    lossless profile). ``codes`` returns them with a flag tensor (non-finite input, or a
    position too far from its cell for int32) instead of raising, so a whole frame is checked
    with one synchronisation; ``quantize`` is the checked, host-facing form.
    """

    def __init__(self, profile: Profile, device):
        self.p = profile
        self.device = torch.device(device)
        q = profile.quant
        g = profile.grid
        self.origin = torch.tensor(g.origin, dtype=F64, device=self.device)
        self.cell_size = float(g.cell_size)
        self.slot_bits = int(g.slot_bits)
        if q is None:
            return
        self.pos_step = g.cell_size / (1 << q.position_bits)
        if profile.sh_degree and not profile.palette:
            self.rest_inv = torch.from_numpy((1.0 / profile.rest_steps()).astype(np.float32)).to(self.device)
            self.rest_lim = torch.from_numpy(profile.rest_limits().astype(np.float32)).to(self.device)
        self.op_thr = torch.from_numpy(opacity_thresholds(profile)).to(self.device)
        self.rot_n = (1 << q.rotation_bits) - 1
        self.rot_keep = torch.tensor([[j for j in range(4) if j != k] for k in range(4)], dtype=I64, device=self.device)
        self.e0 = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=F64, device=self.device)
        # the uniform quantizers (SCALE, SH_DC) as per-column constants, for all rows at once
        lay = _layout(profile)
        lo, k, top, cols = [], [], [], []
        for a, (a_lo, a_hi, bits) in ((Attr.SCALE, (q.scale_min, q.scale_max, q.scale_bits)),
                                      (Attr.SH_DC, (q.dc_min, q.dc_max, q.dc_bits))):
            n = (1 << bits) - 1
            for c in range(lay[a].start, lay[a].stop):
                cols.append(c), lo.append(a_lo), k.append(n / (a_hi - a_lo)), top.append(float(n))
        self.u_cols = torch.tensor(cols, dtype=I64, device=self.device)
        self.u_lo = torch.tensor(lo, dtype=F64, device=self.device)
        self.u_k = torch.tensor(k, dtype=F64, device=self.device)
        self.u_top = torch.tensor(top, dtype=F64, device=self.device)

    def cell_origins(self, ids: torch.Tensor) -> torch.Tensor:
        """(n, 3) float64 origin of each id's birth cell (SPEC.md 3.4), as Grid.cell_origin_of_ids."""
        cells = ids >> self.slot_bits
        x = torch.stack([cells, cells >> 1, cells >> 2], 1) & 0x1249249249249249
        for mask, shift in _COMPACT:
            x = (x | (x >> shift)) & mask
        return self.origin + x.to(F64) * self.cell_size

    def codes(self, attr: Attr, values: torch.Tensor, ids: torch.Tensor,
              origins: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, C) values -> ((n, C) int32 codes, bool flag: every input was quantizable).

        ``origins``: the ids' cell origins (``cell_origins``) when the caller has them already.
        """
        p, q = self.p, self.p.quant
        v = values.to(torch.float32).reshape(values.shape[0], p.comps(attr))
        if q is not None and attr is Attr.POSITION:
            if origins is None:
                origins = self.cell_origins(ids)
            c = torch.round((v.to(F64) - origins) / self.pos_step)
            # NaN and infinities reach c too: one check covers them and the int32 range
            ok = c.abs().amax() <= 2**31 - 1 if c.numel() else torch.ones((), dtype=torch.bool, device=c.device)
            return c.clamp(-2**31, 2**31 - 1).to(I32), ok
        ok = torch.isfinite(v).all()
        if q is None:
            return v.contiguous().view(I32), ok
        if attr is Attr.SCALE:
            return self._uniform(v, q.scale_min, q.scale_max, q.scale_bits), ok
        if attr is Attr.SH_DC:
            return self._uniform(v, q.dc_min, q.dc_max, q.dc_bits), ok
        if attr is Attr.OPACITY:
            return torch.searchsorted(self.op_thr, v.contiguous(), right=True).to(I32), ok
        if attr is Attr.SH_REST:
            if p.palette:
                raise ValueError("SH_REST of a palette profile is a palette index: the encoder picks it (host)")
            c = torch.round(v * self.rest_inv)                # float32 product, as numpy's
            return torch.maximum(torch.minimum(c, self.rest_lim), -self.rest_lim).to(I32), ok
        if attr is Attr.ROTATION:
            return self._smallest_three(v.to(F64)), ok
        raise AssertionError(attr)

    def codes_all(self, x: torch.Tensor, ids: torch.Tensor, placed: torch.Tensor | None = None,
                  lanes: "_Lanes | None" = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, F) packed float32 rows of ``ids``, every attribute (``protocol.attr_layout`` order) ->
        ((n, Ctot) int32 codes in the same column order, bool flag), as ``codes`` attribute by attribute
        but in a fixed number of operations whatever the row count. ``placed``: (n,) bool, False for rows
        whose position columns are placeholders (their position is taken as their cell's origin, so
        code 0, whatever the placeholder); None: every row's position is given. The cell origins are
        computed from the ids here, in the same operations (SPEC.md 3.4). No operation waits for the
        device, so a frame's build can run as one CUDA graph (``_FrameGraph``); with ``lanes`` the
        rotations and the other attributes are quantized beside the positions.
        """
        ln = lanes or _NO_LANES
        n = x.shape[0]
        ok = torch.isfinite(x).all()
        if self.p.quant is None:
            return x.contiguous().view(I32), ok
        lay = _layout(self.p)
        R, O, S = lay[Attr.ROTATION], lay[Attr.OPACITY], lay[Attr.SH_REST]
        part = {}                                  # each lane's own codes, put side by side at the end
        with ln.lane(2):
            part[Attr.ROTATION] = ln.keep(self._smallest_three(x[:, R].to(F64)))
        with ln.lane(3):
            u = torch.round((x.index_select(1, self.u_cols).to(F64) - self.u_lo) * self.u_k)
            u = ln.keep(torch.minimum(u.clamp_min(0), self.u_top).to(I32))
            k = self.p.comps(Attr.SCALE)
            part[Attr.SCALE], part[Attr.SH_DC] = u[:, :k], u[:, k:]
            part[Attr.OPACITY] = ln.keep(torch.searchsorted(self.op_thr, x[:, O].contiguous(), right=True).to(I32))
            if self.p.palette:                # an index the encoder picks: no row here carries one
                part[Attr.SH_REST] = torch.zeros((n, 1), dtype=I32, device=x.device)
            elif S.stop > S.start:
                r = torch.round(x[:, S] * self.rest_inv)
                part[Attr.SH_REST] = ln.keep(torch.maximum(torch.minimum(r, self.rest_lim), -self.rest_lim).to(I32))
        P = lay[Attr.POSITION]
        origins = self.cell_origins(ids)
        xp = x[:, P].to(F64)
        if placed is not None:
            xp = torch.where(placed[:, None], xp, origins)
        c = torch.round((xp - origins) / self.pos_step)
        if n:
            ok = ok & (c.abs().amax() <= 2**31 - 1)           # NaN fails it too
        part[Attr.POSITION] = c.clamp(-2**31, 2**31 - 1).to(I32)
        ln.join(2, 3)
        return torch.cat([part[a] for a in ATTRS if a in part], 1), ok

    @staticmethod
    def _uniform(v, lo, hi, bits):
        n = (1 << bits) - 1
        c = (v.to(F64) - lo) * (n / (hi - lo))
        return torch.round(c).clamp(0, n).to(I32)

    def _smallest_three(self, q: torch.Tensor) -> torch.Tensor:
        s = q * q
        norm = torch.sqrt(((s[:, 0:1] + s[:, 1:2]) + s[:, 2:3]) + s[:, 3:4])    # numpy's summation order
        pos = norm > 0
        q = torch.where(pos, q / torch.where(pos, norm, torch.ones_like(norm)), self.e0)
        i = q.abs().argmax(1)                                 # the first largest (NaN rows are refused anyway)
        sign = torch.where(q.gather(1, i[:, None]) < 0, -1.0, 1.0)
        small = (q * sign).gather(1, self.rot_keep[i])
        c = torch.round((small + _INV_SQRT2) * (self.rot_n / _SQRT2)).clamp(0, self.rot_n)
        return torch.cat([i[:, None].to(I32), c.to(I32)], 1)

    def quantize(self, attr: Attr, values, ids) -> np.ndarray:
        """As ``Profile.quantize``: (n, C) floats -> (C, n) codes in ``profile.dtype(attr)`` on the host."""
        v = as_tensor(values, self.device)
        i = as_tensor(ids, self.device, I64).reshape(-1)
        v = v.reshape(i.numel(), self.p.comps(attr))
        c, ok = self.codes(attr, v, i)
        if not bool(ok):
            raise ValueError(f"{attr.name.lower()} has NaN or infinite values, or a position too far from its cell")
        return wire(self.p, attr, c).t().contiguous().cpu().numpy().view(self.p.dtype(attr))


_UNSIGNED = {1: torch.uint8, 2: torch.uint16, 4: torch.uint32}


def wire(profile: Profile, attr: Attr, c: torch.Tensor) -> torch.Tensor:
    """Numeric int codes (or residuals) -> the wire width: a cast to the unsigned type of that width,
    which wraps modulo 2^(8 width) as the format does; the host views the bytes as ``profile.dtype(attr)``."""
    return _to_width(profile.width(attr), c)


def _to_width(w: int, c: torch.Tensor) -> torch.Tensor:
    return c if w == 4 and c.dtype == I32 else c.to(_UNSIGNED[w])


def _host_rows(profile: Profile, codes: dict) -> np.ndarray:
    """{Attr: (C, n) codes in profile dtypes} -> (n, Ctot) int32 numeric rows."""
    cols = []
    for a in ATTRS:
        c = codes[a]
        if c.shape[0] == 0:
            continue
        cols.append(c.view(np.int32) if c.dtype == np.uint32 else c.astype(np.int32))
    n = next(iter(codes.values())).shape[1] if codes else 0
    return np.ascontiguousarray(np.concatenate(cols, 0).T) if cols else np.zeros((n, 0), np.int32)


# ------------------------------------------------------------------------------ the device mirror
def _merge(a_ids, a_slots, b_ids, b_slots):
    """Sorted ``a`` and sorted ``b`` (its ids distinct) -> one sorted array; an id in both keeps ``b``'s
    entry (the newer) first, so a lookup (the first match) finds it. Each entry's place is its index
    plus the other side's entries before it (two binary searches), written by two scatters: a
    fixed handful of launches, where a sort of both would launch one per key byte."""
    if not a_ids.numel():
        return b_ids, b_slots
    dev = b_ids.device
    at_b = torch.searchsorted(a_ids, b_ids) + torch.arange(b_ids.numel(), device=dev)
    at_a = torch.searchsorted(b_ids, a_ids, right=True) + torch.arange(a_ids.numel(), device=dev)
    n = a_ids.numel() + b_ids.numel()
    ids = torch.empty(n, dtype=I64, device=dev)
    slots = torch.empty(n, dtype=I64, device=dev)
    ids[at_b], ids[at_a] = b_ids, a_ids
    slots[at_b], slots[at_a] = b_slots, a_slots
    return ids, slots


class DeviceCodes:
    """The closed-loop codes of every live id on a device (see the module docstring).

    ``rows`` is (capacity, Ctot) int32, one row per slot, columns ``cols[attr]``. The index is a
    sorted ``main`` array of (id, slot) with tombstones (slot -1) plus a small sorted ``over``
    array of recent ADDs (an id deleted and ADDed again keeps its dead entry behind the new one
    until the next merge); lookups search both, taking the first match. The overlay is merged into
    ``main`` when it outgrows ``MERGE_MIN`` and 1/8 of it. Slots are the host state's
    (``SceneState``): ADDs go where it put them, and the rows are compacted when it compacts.
    """

    MERGE_MIN = 1 << 15

    def __init__(self, profile: Profile, device):
        self.p = profile
        self.device = torch.device(device)
        self.cols, start = {}, 0
        for a in ATTRS:
            self.cols[a] = slice(start, start + profile.comps(a))
            start += profile.comps(a)
        self.ctot = start
        self._col_index: dict = {}
        self._col_mask: dict = {}
        self._col_thr: dict = {}
        # column -> attribute (one-hot, for per-attribute reductions by a product) and the attributes' mask bits
        owner = [k for k, a in enumerate(ATTRS) for _ in range(profile.comps(a))]
        self.attr_of_col = torch.tensor(owner, dtype=I64, device=self.device)
        self.col_attr = torch.nn.functional.one_hot(self.attr_of_col, len(ATTRS)).to(torch.float32)
        self.attr_bits = torch.tensor([float(a.bit) for a in ATTRS], dtype=torch.float32, device=self.device)
        self.mask_values = torch.arange(64, dtype=torch.uint8, device=self.device)
        self.quantizer = quantizer_of(profile, self.device)
        self.no_ids = torch.zeros(0, dtype=I64, device=self.device)          # shared empty tensors
        self.no_rows = torch.zeros((0, self.ctot), dtype=I32, device=self.device)
        self._fixed: dict | None = None           # the index in fixed buffers, once frame graphs read it
        self._load(self.no_ids, self.no_rows)
        self.seq = 0
        self.digest = None
        self.pending: Change | None = None
        self.staging: torch.Tensor | None = None  # page-locked bytes for the copy to the host (CUDA)
        self._graphs: dict = {}                   # frame graphs by size (``frame_graph``)
        self._graph_reads = None

    def col_index(self, attrs: list):
        """Columns of ``attrs`` (a slice when they are all the columns, else an index tensor)."""
        key = tuple(attrs)
        if key not in self._col_index:
            cols = [c for a in attrs for c in range(self.cols[a].start, self.cols[a].stop)]
            self._col_index[key] = None if cols == list(range(self.ctot)) else torch.tensor(cols, device=self.device)
        return self._col_index[key]

    def col_mask(self, attrs: list) -> torch.Tensor:
        """(Ctot,) bool: the columns of ``attrs``."""
        key = tuple(attrs)
        if key not in self._col_mask:
            mk = torch.zeros(self.ctot, dtype=torch.bool)
            for a in attrs:
                mk[self.cols[a]] = True
            self._col_mask[key] = mk.to(self.device)
        return self._col_mask[key]

    @staticmethod
    def thresholds_key(thresholds: dict | None) -> tuple:
        return tuple(sorted((int(Attr(a)), int(t)) for a, t in thresholds.items())) if thresholds else ()

    def col_thresholds(self, thresholds: dict | None) -> torch.Tensor | None:
        """(Ctot,) int64 allowed change per column in quantized units (a rotation's component index: 0),
        or None when every threshold is 0 (or the profile is lossless)."""
        if not thresholds or self.p.lossless:
            return None
        key = self.thresholds_key(thresholds)
        if key not in self._col_thr:
            t = torch.zeros(self.ctot, dtype=I64)
            for a, v in thresholds.items():
                t[self.cols[Attr(a)]] = int(v)
            if self.p.comps(Attr.ROTATION):
                t[self.cols[Attr.ROTATION].start] = 0
            self._col_thr[key] = t.to(self.device) if bool((t > 0).any()) else None
        return self._col_thr[key]

    def _load(self, ids_sorted: torch.Tensor, rows: torch.Tensor, slots: torch.Tensor | None = None) -> None:
        """Rows by slot, the live ids ascending and their slots (default: 0, 1, ... in id order)."""
        n = ids_sorted.numel()
        self.rows = rows.contiguous()
        self.high = rows.shape[0]
        self._set("main", ids_sorted, torch.arange(n, dtype=I64, device=self.device) if slots is None else slots)
        self._set("over", self.no_ids, self.no_ids)

    def _set(self, part: str, ids: torch.Tensor, slots: torch.Tensor) -> None:
        """Make sorted ``ids`` and their ``slots`` the ``main`` or ``over`` index. Once frame graphs read
        the index, it lives in buffers of a fixed size (``fixed_index``): copied in, padded after with
        keys above every id and slot -1, and grown (so the graphs go) only when it outgrows them."""
        if self._fixed is not None:
            kb, sb, used = self._fixed.get(part, (None, None, 0))
            n = ids.numel()
            if kb is None or kb.numel() < n:
                cap = max(1 << 12, 2 * n)
                kb = torch.full((cap,), _KEY_PAD, dtype=I64, device=self.device)
                sb = torch.full((cap,), -1, dtype=I64, device=self.device)
                used = 0
            kb[:n].copy_(ids)
            sb[:n].copy_(slots)
            if used > n:
                kb[n:used].fill_(_KEY_PAD)
                sb[n:used].fill_(-1)
            self._fixed[part] = (kb, sb, n)
            ids, slots = kb[:n], sb[:n]
        setattr(self, part + "_ids", ids)
        setattr(self, part + "_slots", slots)

    def fixed_index(self) -> tuple:
        """(main ids, main slots, overlay ids, overlay slots) in their fixed buffers, padded: what a frame
        graph searches (made on first use)."""
        if self._fixed is None:
            self._fixed = {}
            self._set("main", self.main_ids, self.main_slots)
            self._set("over", self.over_ids, self.over_slots)
        return (*self._fixed["main"][:2], *self._fixed["over"][:2])

    # -- queries ----------------------------------------------------------------------------------
    @staticmethod
    def _find(keys, slots, q):
        if keys.numel() == 0:
            return torch.full_like(q, -1)
        pos = torch.searchsorted(keys, q).clamp_max(keys.numel() - 1)
        return torch.where(keys[pos] == q, slots[pos], -1)

    def lookup(self, ids: torch.Tensor, fixed: bool = False) -> torch.Tensor:
        """Slot of each id, -1 where it is not live. ``fixed``: search the fixed buffers (``fixed_index``:
        the same answers, in operations of the same shapes whatever the index holds)."""
        mk, ms, ok, os_ = self.fixed_index() if fixed else (self.main_ids, self.main_slots, self.over_ids, self.over_slots)
        s = self._find(mk, ms, ids)
        if ok.numel():
            o = self._find(ok, os_, ids)
            s = torch.where(o >= 0, o, s)
        return s

    def frame_graph(self, key: tuple, tcol) -> "_FrameGraph | None":
        """The frame graph of ``key`` (rows of ADDs, rows of UPDATEs, ADD part or not, attributes
        carried, thresholds), made on first use; None where this device cannot capture one. Graphs
        read ``rows`` and the index buffers where they lie, so all of them go when those move (grown,
        reloaded)."""
        reads = (self.rows,) + self.fixed_index()[::2]    # the tensors a graph reads where they lie
        if self._graph_reads is None or any(a is not b for a, b in zip(reads, self._graph_reads)):
            self._graphs.clear()
            self._graph_reads = reads
        if key not in self._graphs:
            try:
                self._graphs[key] = _FrameGraph(self, *key[:4], tcol)
            except RuntimeError:                  # no capture here: the operations one by one
                self._graphs[key] = None
        return self._graphs[key]

    def codes_of(self, ids) -> dict:
        """{Attr: (C, n) numpy codes} of live ids, as ``SceneState.codes_of`` (KeyError if one is not live)."""
        s = self.lookup(as_tensor(ids, self.device, I64).reshape(-1))
        if bool((s < 0).any()):
            raise KeyError("id not live")
        r = self.rows[s]
        return {a: wire(self.p, a, r[:, self.cols[a]]).t().contiguous().cpu().numpy().view(self.p.dtype(a))
                for a in ATTRS}

    # -- keeping in step with the encoder ------------------------------------------------------------
    def catch_up(self, enc: Encoder) -> None:
        """Commit the pending change if the encoder applied it; reload from the host on any other move.
        A pending ``Delta`` (``follow_host``) is read back from the host state it left."""
        ch, self.pending = self.pending, None
        st = enc.state
        if isinstance(ch, Delta):
            ch = self._host_change(ch, st) if st.seq == ch.seq and (ch.keyframe or st.compactions == self.compactions) \
                else None
        if ch is not None and st.seq == ch.seq and self.seq == ch.base_seq and self._same(enc, ch.delta.digest):
            self.commit(ch, st)
            self.digest = ch.delta.digest
        if self.seq != st.seq or not self._same(enc, self.digest):
            self.reload(enc)

    def deleted(self, d: Delta) -> tuple:
        """(ids, first ids, last ids) on the device: what ``d`` deletes by id, and the inclusive id
        ranges it deletes (its DELETE_RANGES and the ranges of its deleted cells)."""
        first, last = [d.delete_ranges[:, 0]], [d.delete_ranges[:, 1]]
        for k, cells in d.delete_cells.items():
            fc, lc = self.p.grid.cell_range(cells, k)
            first.append(fc), last.append(lc)
        first, last = np.concatenate(first), np.concatenate(last)
        return tuple(as_tensor(a, self.device, I64) if len(a) else self.no_ids for a in (d.delete_ids, first, last))

    def _host_change(self, d: Delta, st) -> "Change":
        """The Change of ``d``, a frame the host state ``st`` has just applied (and not compacted in):
        its ADDs' codes are the frame's own, the UPDATEd slots' are read from the state (their slots
        from the encoder's hint where it still holds: the frame moved no UPDATEd Gaussian)."""
        upd_slots = None
        if d.updates:
            ids = d.update_ids
            hint = d.slot_hint
            upd_slots = np.concatenate(hint[1]) if hint is not None and len(hint[1]) == len(d.updates) else None
            if upd_slots is None or not slots_hold(st.slot_ids, st.high, upd_slots, ids):
                upd_slots = st.slots_of(ids)
        none = self.no_ids
        return Change(d, d.seq, d.base_seq, d.keyframe, as_tensor(d.add_ids, self.device, I64) if d.n_add else none,
                      self._rows(d.add) if d.n_add else self.no_rows,
                      as_tensor(upd_slots, self.device, I64) if upd_slots is not None else none,
                      self._rows(st.codes_at(upd_slots)) if upd_slots is not None else self.no_rows,
                      *self.deleted(d))

    def _rows(self, codes: dict) -> torch.Tensor:
        """{Attr: (C, n) host codes} -> (n, Ctot) rows on the device."""
        return torch.from_numpy(_host_rows(self.p, codes)).to(self.device)

    @staticmethod
    def _same(enc: Encoder, digest) -> bool:
        if not getattr(enc, "with_digest", True):
            return True                          # no digests kept: the seq is all there is to compare
        return digest == enc.state.digest() if len(enc.state) else digest in (None, enc.state.digest())

    def reload(self, enc: Encoder) -> None:
        """The host state -> the device, slot for slot (a full upload: only when the stream moved
        without this mirror)."""
        st = enc.state
        ids, slots = st.live_slots()
        rows = torch.from_numpy(_host_rows(self.p, st.codes_at(slice(0, st.high)))).to(self.device)
        self._load(torch.from_numpy(ids.view(np.int64)).to(self.device), rows, torch.from_numpy(slots).to(self.device))
        self.compactions = st.compactions
        self.seq = enc.state.seq
        self.digest = enc.state.digest() if getattr(enc, "with_digest", True) else None

    def commit(self, ch: "Change", st) -> None:
        """Apply a change the encoder applied to its state ``st``: deletes, then ADDs, then UPDATEs
        (SPEC.md 6.3). Slots are the host state's: the ADDs take the slots it gave them (``st.added``)
        and the rows are compacted when it compacted, so UPDATE slots found here are its slots too."""
        self.seq = ch.seq
        if ch.keyframe:
            self._load(ch.add_ids, ch.add_rows)
            self.compactions = st.compactions
            return
        if ch.upd_slots.numel():
            self.rows.index_copy_(0, ch.upd_slots, ch.upd_rows)
        if ch.del_ids.numel():
            for keys, slots in ((self.main_ids, self.main_slots), (self.over_ids, self.over_slots)):
                if keys.numel():
                    pos = torch.searchsorted(keys, ch.del_ids).clamp_max(keys.numel() - 1)
                    hit = torch.zeros(keys.numel(), dtype=I32, device=self.device)
                    hit.index_add_(0, pos, (keys[pos] == ch.del_ids).to(I32))
                    slots.masked_fill_(hit > 0, -1)
        if ch.del_first.numel():
            for keys, slots in ((self.main_ids, self.main_slots), (self.over_ids, self.over_slots)):
                if keys.numel():
                    lo = torch.searchsorted(keys, ch.del_first)
                    hi = torch.searchsorted(keys, ch.del_last, right=True)
                    edge = torch.zeros(keys.numel() + 1, dtype=I32, device=self.device)
                    edge.index_add_(0, lo, torch.ones_like(lo, dtype=I32))
                    edge.index_add_(0, hi, torch.full_like(hi, -1, dtype=I32))
                    inside = torch.cumsum(edge, 0, dtype=I32)[:-1] > 0
                    slots.masked_fill_(inside, -1)
        n = ch.add_ids.numel()
        if n:
            host = np.asarray(st.added, np.int64)
            top = int(host.max()) + 1                 # the host's slots (numpy): no wait for the device
            if top > self.rows.shape[0]:
                cap = max(2 * self.rows.shape[0], top, 1024)
                grown = torch.empty((cap, self.ctot), dtype=I32, device=self.device)
                grown[:self.high] = self.rows[:self.high]
                self.rows = grown
            new_slots = torch.from_numpy(host).to(self.device, non_blocking=True)
            self.rows.index_copy_(0, new_slots, ch.add_rows)
            self.high = max(self.high, top)
            # an id deleted and ADDed again stays in the overlay as a tombstone behind its new entry
            # (dropped at the next merge): filtering it out here would wait for the device
            self._set("over", *_merge(self.over_ids, self.over_slots, ch.add_ids, new_slots))
        if st.compactions != self.compactions:      # the host compacted: rows in id order, as there
            self._compact()
            self.compactions = st.compactions
        elif self.over_ids.numel() > max(self.MERGE_MIN, self.main_ids.numel() // 8):
            live_m, live_o = self.main_slots >= 0, self.over_slots >= 0
            self._set("main", *_merge(self.main_ids[live_m], self.main_slots[live_m],
                                      self.over_ids[live_o], self.over_slots[live_o]))
            self._set("over", self.no_ids, self.no_ids)

    def _compact(self) -> None:
        """Live rows to slots 0..n-1 in id order, as the host state compacts."""
        live_m, live_o = self.main_slots >= 0, self.over_slots >= 0
        ids, slots = _merge(self.main_ids[live_m], self.main_slots[live_m], self.over_ids[live_o],
                            self.over_slots[live_o])
        self._load(ids, self.rows[slots])


# ----------------------------------------------------------------------------------- frame building
@dataclass
class Change:
    """A built frame's effect on the mirror, committed once the encoder applied ``delta``."""
    delta: Delta
    seq: int
    base_seq: int
    keyframe: bool
    add_ids: torch.Tensor                 # sorted
    add_rows: torch.Tensor                # (n, Ctot) int32
    upd_slots: torch.Tensor
    upd_rows: torch.Tensor                # (U, Ctot) codes of the updated slots after the frame
    del_ids: torch.Tensor
    del_first: torch.Tensor               # deleted id ranges (cells), inclusive
    del_last: torch.Tensor


@dataclass
class FloatOps:
    """One frame's changes in floats on one device (torch tensors, or numpy on the CPU).

    ``add``: (n, F) packed floats (protocol.attr_layout order) of ``add_ids``; ``updates``: a list of
    (ids, {Attr: (n, C) floats}); ids of all UPDATE groups are distinct and live. ``thresholds``:
    Attr -> allowed change in quantized units before an attribute counts as moved (0: any change).
    """
    keyframe: bool = False
    add_ids: object = None
    add: object = None
    updates: list = field(default_factory=list)
    delete_ids: object = None
    delete_cells: dict = field(default_factory=dict)
    thresholds: dict | None = None


TIMING: dict | None = None    # diagnostic mode: stage -> [ms], the device synchronized at every stage's end


class _Clock:
    """Stage timer of ``build_delta`` in the diagnostic mode (``TIMING`` a dict); a no-op otherwise."""

    def __init__(self, dev):
        self.on = TIMING is not None
        if self.on:
            self.dev = dev
            self._sync()
            self.t = time.perf_counter()

    def _sync(self):
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)

    def __call__(self, stage: str) -> None:
        if self.on:
            self._sync()
            now = time.perf_counter()
            TIMING.setdefault(stage, []).append((now - self.t) * 1e3)
            self.t = now


SHAPED_ON_CPU = False     # on the CPU too: a frame's rows padded to a graph's sizes and its parts packed into
                          # one buffer, as on a GPU (run eagerly), to test both where there is no GPU
GRAPHS = True             # a frame's device work as one CUDA graph replay on a GPU: one launch for ~100 (and
                          # ~300 torch calls) that each cost the host microseconds while the device idles
LANES = True              # a frame graph's independent parts on side streams, side by side on the device
GRAPH_MIN_ROWS, GRAPH_MAX_ROWS = 1 << 11, 1 << 16
_KEY_PAD = 2**63 - 1      # the fixed index's padding keys: after every id
# Held while a frame graph is captured. A thread doing CUDA work beside the frame builder (the world's
# chunk worker) holds it while it works and lets go where it pauses: some CUDA calls (a new random
# generator, for one) refuse to run while any graph is being captured.
CAPTURE_LOCK = threading.Lock()
_MIRRORS: "weakref.WeakKeyDictionary[Encoder, DeviceCodes]" = weakref.WeakKeyDictionary()
_QUANTIZERS: dict = {}


def mirror_of(enc: Encoder, device) -> DeviceCodes:
    """The encoder's device mirror (made, committed or reloaded as needed)."""
    device = torch.device(device)
    m = _MIRRORS.get(enc)
    if m is None or m.device != device:
        m = DeviceCodes(enc.profile, device)
        _MIRRORS[enc] = m
    m.catch_up(enc)
    return m


def quantizer_of(profile: Profile, device) -> TorchQuantizer:
    key = (profile, str(torch.device(device)))
    q = _QUANTIZERS.get(key)
    if q is None:
        q = _QUANTIZERS[key] = TorchQuantizer(profile, device)
    return q


class _Payload:
    """Device tensors -> numpy arrays in one device-to-host copy (parts packed as bytes, widest first)."""

    def __init__(self, device, owner: "DeviceCodes"):
        self.device = device
        self.owner = owner                         # one stream's frames are built one at a time
        self.parts: list = []

    def add(self, t: torch.Tensor) -> int:
        if t.dtype == torch.bool:
            t = t.to(torch.uint8)
        self.parts.append(t.contiguous())
        return len(self.parts) - 1

    def fetch(self) -> list:
        if not self.parts:
            return []
        if self.device.type == "cpu" and not SHAPED_ON_CPU:
            return [t.numpy() for t in self.parts]
        if len(self.parts) == 1:                  # a graph's packed output alone: no packing copy
            flat, spans = self.parts[0].view(torch.uint8).reshape(-1), [(0, self.parts[0].nbytes)]
        else:
            flat, spans = _pack(self.parts)
        if self.device.type == "cuda":
            # through a page-locked staging buffer kept by the mirror (allocating one costs milliseconds),
            # waiting for this stream only; the bytes are then copied out, as the buffer is reused
            n = flat.numel()
            stage = self.owner.staging
            if stage is None or stage.numel() < n:
                stage = self.owner.staging = torch.empty(max(n, 1 << 20) * 2, dtype=torch.uint8, pin_memory=True)
            stage[:n].copy_(flat, non_blocking=True)
            torch.cuda.current_stream(self.device).synchronize()
            buf = stage[:n].numpy().copy()
        else:
            buf = flat.cpu().numpy()
        return _split(buf, self.parts, spans)


_NP = {torch.int8: np.int8, torch.int16: np.int16, torch.int32: np.int32, torch.int64: np.int64,
       torch.uint8: np.uint8, torch.uint16: np.uint16, torch.uint32: np.uint32, torch.float32: np.float32}


def _pack(parts: list) -> tuple:
    """Tensors -> (one uint8 tensor of their bytes, widest elements first so that every part stays
    aligned; each part's (offset, bytes) in it)."""
    order = sorted(range(len(parts)), key=lambda k: -parts[k].element_size())
    flat = torch.cat([parts[k].reshape(-1).view(torch.uint8) for k in order])
    spans, pos = [None] * len(parts), 0
    for k in order:
        spans[k] = (pos, parts[k].nbytes)
        pos += parts[k].nbytes
    return flat, spans


def _split(buf: np.ndarray, parts: list, spans: list) -> list:
    """Host bytes of ``_pack(parts)`` -> a numpy view per part (its dtype and shape)."""
    return [buf[o:o + nb].view(_NP[t.dtype]).reshape(tuple(t.shape)) for t, (o, nb) in zip(parts, spans)]


def _width_groups(p: Profile, attrs: list) -> list:
    """Attributes by code width: [(width, [attrs])], each group one narrow array on the wire side."""
    out: dict = {}
    for a in attrs:
        out.setdefault(p.width(a), []).append(a)
    return sorted(out.items(), reverse=True)


def _narrow(p: Profile, w: int, x: torch.Tensor) -> torch.Tensor:
    """(n, C) int codes or residuals of one width group -> (C, n) of the wire width (``wire``), contiguous:
    one cast-and-transpose copy."""
    out = torch.empty((x.shape[1], x.shape[0]), dtype=I32 if w == 4 and x.dtype == I32 else _UNSIGNED[w],
                      device=x.device)
    return out.copy_(x.t())


def _unpack_groups(p: Profile, groups: list, arrays: list) -> dict:
    """Host (C_group, n) arrays of width groups -> {Attr: (C, n) view in profile.dtype(attr)}."""
    out = {}
    for (w, attrs), arr in zip(groups, arrays):
        r = 0
        for a in attrs:
            c = p.comps(a)
            out[a] = arr[r:r + c].view(p.dtype(a))
            r += c
    return out


def _cap(n: int) -> int:
    """Rows of the graph that takes a frame part of n rows (0: the frame has no such part)."""
    return 0 if n == 0 else max(GRAPH_MIN_ROWS, 1 << (n - 1).bit_length())


class _FrameRows:
    """A frame's input rows on the device at fixed sizes: ``ca`` ADD rows and ``cu`` UPDATE rows, the
    frame's own first, then padding that changes nothing: negative ids (first once sorted, never
    equal to an id), zero floats, no column carried (an UPDATE row then keeps the mirror's codes: its
    residual is 0 and it drops out) and no position placed. ``fill`` writes a frame's rows over the
    last frame's; only rows that held the last frame's and now are padding are padded again."""

    def __init__(self, m: "DeviceCodes", ca: int, cu: int, has_add: bool, fixed: bool):
        dev = m.device
        self.ca, self.cu, self.has_add = ca, cu, has_add
        self.fixed = fixed                                          # search the mirror's fixed index
        self.pad_a = -1 - torch.arange(ca, dtype=I64, device=dev)
        self.add_ids = self.pad_a.clone()
        self.add_x = torch.zeros((ca, m.ctot), dtype=torch.float32, device=dev)
        self.pad_u = -1 - torch.arange(cu, dtype=I64, device=dev)
        self.upd_ids = self.pad_u.clone()
        self.upd_x = torch.zeros((cu, m.ctot), dtype=torch.float32, device=dev)
        self.carried = torch.zeros((cu, m.ctot), dtype=torch.bool, device=dev)
        self.n_add = self.u = 0                                     # the frame's rows held now

    def fill(self, m: "DeviceCodes", add_ids, add_x, groups: list, sets: list) -> None:
        n = add_ids.numel() if add_ids is not None else 0
        if n:
            self.add_ids[:n].copy_(add_ids)
            self.add_x[:n].copy_(add_x)
        if n < self.n_add:
            self.add_ids[n:self.n_add].copy_(self.pad_a[n:self.n_add])
            self.add_x[n:self.n_add].zero_()
        self.n_add = n
        u = sum(g[0].numel() for g in groups)
        if u or self.u:
            self.upd_x[:max(u, self.u)].zero_()         # the columns a group does not carry, and stale rows
        lay, start = _layout(m.p), 0
        for (ids, vals), s in zip(groups, sets):
            k = ids.numel()
            self.upd_ids[start:start + k].copy_(ids)
            for a, v in vals.items():
                self.upd_x[start:start + k, lay[a]].copy_(v)
            self.carried[start:start + k] = m.col_mask(list(s))
            start += k
        if u < self.u:
            self.upd_ids[u:self.u].copy_(self.pad_u[u:self.u])
            self.carried[u:self.u] = False
        self.u = u


@dataclass
class _FrameOut:
    parts: list                   # tensors for the host, in the order ``at`` names them
    at: dict
    add_ids: torch.Tensor         # (ca,) sorted: padding first
    add_rows: torch.Tensor        # (ca, Ctot) their codes
    upd_slots: torch.Tensor       # (cu,) the UPDATE rows' slots in the mirror, in fill order
    upd_rows: torch.Tensor        # (cu, Ctot) their codes after the frame


class _Lanes:
    """Side streams for the independent parts of a frame graph: the graph's ~150 kernels are small,
    so the device's time is their latency one after another, and parts in lanes run side by side
    (the mirror lookup of the UPDATE rows, the ADD sort and packing, the rotations, the other
    attributes). A lane starts after everything the capturing stream has so far; ``join`` makes that
    stream wait for lanes. Tensors that cross lanes are kept (``keep``) as long as the graph, so no
    lane reuses memory that another still reads."""

    def __init__(self, dev, n: int = 4):
        self.dev = dev
        self.side = [torch.cuda.Stream(dev) for _ in range(n)]
        self.used: set = set()                    # lanes forked since the last full join
        self.held: list = []

    @contextlib.contextmanager
    def lane(self, k: int):
        main = torch.cuda.current_stream(self.dev)
        self.side[k].wait_stream(main)
        self.used.add(k)
        with torch.cuda.stream(self.side[k]):
            yield

    def join(self, *ks: int) -> None:
        """The current stream waits for lanes ``ks`` (default: every lane forked), where forked: a
        captured stream may only wait for work of its own capture."""
        main = torch.cuda.current_stream(self.dev)
        for k in ks or sorted(self.used):
            if k in self.used:
                main.wait_stream(self.side[k])
        if not ks:
            self.used.clear()

    def keep(self, t):
        self.held.append(t)
        return t


class _InPlace:
    """No lanes: every part in turn on the current stream (the CPU, and frames built without a graph)."""

    @staticmethod
    def lane(k: int):
        return contextlib.nullcontext()

    @staticmethod
    def join(*ks: int) -> None:
        pass

    @staticmethod
    def keep(t):
        return t


_NO_LANES = _InPlace()


def _frame_device(m: "DeviceCodes", r: _FrameRows, union: tuple, tcol, lanes: _Lanes | None = None) -> _FrameOut:
    """A frame's work on the device, on fixed-size rows and without one wait for the device (so that
    it can be captured as a CUDA graph): ADD codes in id order; UPDATE codes, residuals against the
    mirror and masks (a row's mask names the attributes that moved past their threshold; rows that
    did not move drop out), rows sorted by mask then id, where each mask's rows start, and residuals
    of the ``union`` of the carried attributes; every check of the frame as one flag. ``lanes``: the
    independent parts on side streams (``_Lanes``)."""
    ln = lanes or _NO_LANES
    p, qz = m.p, m.quantizer
    present = [a for a in ATTRS if p.comps(a)]
    pos0 = m.cols[Attr.POSITION].start
    oks, parts, at = [], [], {}

    def put(name, t):
        at[name] = len(parts)
        parts.append(t.to(torch.uint8) if t.dtype == torch.bool else t.contiguous())

    add_ids, order, slots = r.add_ids, None, m.no_ids
    if r.ca > 1:                                      # the ADD ids in order (their rows follow below)
        with ln.lane(1):
            add_ids, order = ln.keep(torch.sort(r.add_ids))
            oks.append(ln.keep((add_ids[1:] != add_ids[:-1]).all()))
    if r.cu:                                          # the UPDATE rows' slots and codes in the mirror
        with ln.lane(0):
            sid, o1 = ln.keep(torch.sort(r.upd_ids, stable=True))   # padding first; the ids in order,
            slots = ln.keep(torch.empty_like(sid).index_copy_(0, o1, m.lookup(sid, r.fixed)))  # so the
            oks.append(ln.keep(((slots >= 0) | (r.upd_ids < 0)).all()))   # binary searches walk forwards
            if r.cu > 1:
                oks.append(ln.keep((sid[1:] != sid[:-1]).all()))
            old = ln.keep(torch.index_select(m.rows, 0, slots.clamp_min(0)))
    # every row of the frame quantized at once, in fill order: the ADDs (padding not placed), then the
    # UPDATE rows, whose columns that their group does not carry are placeholders (zeros; a position
    # not given is not placed) that take the mirror's codes below
    if r.cu:
        x = torch.cat([r.add_x, r.upd_x]) if r.ca else r.upd_x
        ids = torch.cat([r.add_ids, r.upd_ids]) if r.ca else r.upd_ids
        placed = torch.cat([r.add_ids >= 0, r.carried[:, pos0]]) if r.ca else r.carried[:, pos0]
    else:
        x, ids, placed = r.add_x, r.add_ids, r.add_ids >= 0
    codes, ok = qz.codes_all(ln.keep(x), ids, placed, lanes)
    oks.append(ok)
    add_rows = codes[:r.ca]
    if r.has_add:
        with ln.lane(1):                              # after the codes (and the sort, earlier in this lane)
            if order is not None:
                add_rows = ln.keep(torch.index_select(add_rows, 0, order))
            put("add_ids", add_ids)
            for w, attrs in _width_groups(p, present):
                cols = m.col_index(attrs)
                put(("add", w), _narrow(p, w, add_rows if cols is None else add_rows[:, cols]))
    upd_rows = m.no_rows
    if r.cu:
        ln.join(0)
        q = torch.where(r.carried, codes[r.ca:], old)
        if tcol is None:
            # int32 codes: a residual wraps modulo 2^32 as the wire's does, so with no threshold the
            # int32 difference is the residual (rows and attributes that did not move have 0)
            res = q - old
            moved_c = res != 0
        else:                                         # thresholds compare true distances (int64)
            diff = q.to(I64) - old.to(I64)
            moved_c = diff.abs() > tcol               # a rotation's component index moves at any change
        moved = (moved_c.to(torch.float32) @ m.col_attr) > 0.5          # (u, attributes)
        mask = (moved.to(torch.float32) @ m.attr_bits).round().to(torch.uint8)  # 6 bits: sorted in one radix pass
        if tcol is None:
            upd_rows = q
        else:                                         # attributes that did not move keep their codes
            mc = moved.index_select(1, m.attr_of_col)
            res = torch.where(mc, diff, 0)
            upd_rows = torch.where(mc, q, old)
        sm, o2 = torch.sort(mask[o1], stable=True)
        order_u = o1[o2]
        put("upd_ids", r.upd_ids[order_u])
        put("upd_slots", slots[order_u])        # the host state's slots too: the mirror allots them alike
        # where each mask's rows start in that order (bincount would wait for the device to size its output)
        put("starts", torch.searchsorted(sm, m.mask_values))
        res = torch.index_select(res, 0, order_u)
        for w, attrs in _width_groups(p, list(union)):
            cols = m.col_index(attrs)
            put(("res", w), _narrow(p, w, res if cols is None else res[:, cols]))
    ln.join()
    put("ok", torch.stack(oks).all().reshape(1))
    return _FrameOut(parts, at, add_ids, add_rows, slots, upd_rows)


class _FrameGraph:
    """``_frame_device`` at one frame size, with its input rows: on a GPU captured once as a CUDA graph
    (with the packing of its parts into one buffer), so that a frame costs the rows' copies and one
    replay; on the CPU (``SHAPED_ON_CPU``) run as it is. The graph reads the mirror's ``rows`` where
    they were at capture (``DeviceCodes`` drops its graphs when they move)."""

    def __init__(self, m: "DeviceCodes", ca: int, cu: int, has_add: bool, union: tuple, tcol):
        self.rows = _FrameRows(m, ca, cu, has_add, True)
        self.args = (m, self.rows, union, tcol)
        self.graph = None
        if m.device.type == "cuda":
            self._capture(m.device, _Lanes(m.device) if LANES else None)

    def _capture(self, dev, lanes: _Lanes | None) -> None:
        side = torch.cuda.Stream(dev)
        side.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(side):             # warm-up off the capture, as CUDA graphs want
            for _ in range(2):
                _pack(_frame_device(*self.args, lanes).parts)
                if lanes is not None:             # nothing of a run still on a lane when its tensors go
                    torch.cuda.synchronize(dev)
                    lanes.held.clear()
        torch.cuda.current_stream(dev).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with CAPTURE_LOCK, torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self.out = _frame_device(*self.args, lanes)
            self.flat, self.spans = _pack(self.out.parts)
        self.lanes = lanes                        # the graph's memory that crosses lanes: kept with it

    def run(self) -> _FrameOut:
        if self.graph is None:
            self.out = _frame_device(*self.args)
            self.flat, self.spans = _pack(self.out.parts)
        else:
            self.graph.replay()
        return self.out


def build_delta(enc: Encoder, ops: FloatOps, device=None) -> Delta:
    """The code-space Delta of ``ops`` against the encoder's current state (not yet applied).

    Quantization, residuals against the device mirror and UPDATE masks run on ``device`` (the
    tensors' own by default), on a GPU as one CUDA graph replay for frames of up to
    ``GRAPH_MAX_ROWS`` ADD and UPDATE rows (rows padded to a power of two); one packed copy brings
    the codes to the host. Each attribute is quantized once for the ADDs and every UPDATE group
    together; codes cross as one narrow array per code width.
    """
    from codec.delta import UpdateBlock       # the wire-form UPDATE block

    p = enc.profile
    if p.palette and not palette_free(ops):
        raise ValueError("a frame that ADDs Gaussians or UPDATEs SH_REST under an SH palette profile is built on "
                         "the host (protocol.to_delta): the encoder picks each palette entry and grows the palette")
    dev = torch.device(device) if device is not None else _device_of(ops)
    clk = _Clock(dev)
    m = mirror_of(enc, dev)
    clk("mirror")
    lay = _layout(p)
    present = [a for a in ATTRS if p.comps(a)]

    add_ids = as_tensor(ops.add_ids if ops.add_ids is not None else np.zeros(0, np.int64), dev, I64).reshape(-1)
    n_add = add_ids.numel()
    has_add = bool(n_add or ops.keyframe)
    add_x = None
    if has_add:
        add_x = (as_tensor(ops.add, dev, torch.float32) if ops.add is not None
                 else torch.zeros((0, lay[Attr.SH_REST].stop), device=dev)).reshape(n_add, -1)
    groups = []
    for ids, vals in ops.updates:
        ids = as_tensor(ids, dev, I64).reshape(-1)
        if ids.numel():
            groups.append((ids, {Attr(a): as_tensor(v, dev, torch.float32).reshape(ids.numel(), -1)
                                 for a, v in vals.items() if p.comps(Attr(a))}))
    u = sum(g[0].numel() for g in groups)
    if u and m.rows.shape[0] == 0:
        raise KeyError("UPDATE of an id that is not live")
    sets = [tuple(a for a in present if a in vals) for _, vals in groups]
    union = tuple(a for a in present if any(a in s for s in sets))
    tcol = m.col_thresholds(ops.thresholds)
    shaped = (dev.type == "cuda" and GRAPHS) or (dev.type == "cpu" and SHAPED_ON_CPU)
    g = None
    if shaped and max(n_add, u) <= GRAPH_MAX_ROWS:
        g = m.frame_graph((_cap(n_add), _cap(u), has_add, union, m.thresholds_key(ops.thresholds)), tcol)
    rows = g.rows if g is not None else _FrameRows(m, n_add, u, has_add, False)
    rows.fill(m, add_ids, add_x, groups, sets)
    clk("inputs")
    out = g.run() if g is not None else _frame_device(m, rows, union, tcol)
    parts, spans = ([g.flat], g.spans) if g is not None else (out.parts, None)
    clk("device")
    pay = _Payload(dev, m)
    for t in parts:
        pay.add(t)
    del_ids = as_tensor(ops.delete_ids if ops.delete_ids is not None else np.zeros(0, np.int64), dev, I64).reshape(-1)
    i_del = pay.add(del_ids) if del_ids.numel() else None
    cell_levels = sorted(int(k) for k in ops.delete_cells)
    i_cells = [pay.add(as_tensor(ops.delete_cells[k], dev, I64).reshape(-1)) for k in cell_levels]
    clk("deletes")
    h = pay.fetch()                                           # the one device-to-host copy
    clk("fetch")
    f = _split(h[0], out.parts, spans) if spans is not None else h[:len(out.parts)]
    at = out.at
    ca, cu = rows.ca, rows.cu
    sorted_add = f[at["add_ids"]][ca - n_add:].view(U64) if has_add else None
    if not f[at["ok"]][0]:
        _raise_bad(sorted_add, m, groups)
    d = Delta.empty_like(p, seq=enc.state.seq + 1, base_seq=enc.state.seq, keyframe=ops.keyframe)
    if has_add:
        d.add_ids = sorted_add
        d.add = {a: np.zeros((0, n_add), p.dtype(a)) for a in ATTRS}
        wg = _width_groups(p, present)
        d.add.update(_unpack_groups(p, wg, [f[at[("add", w)]][:, ca - n_add:] if ca > n_add else f[at[("add", w)]]
                                            for w, _ in wg]))
        if ca > n_add:                                        # padding before them: the codes' own arrays
            d.add = {a: np.ascontiguousarray(v) for a, v in d.add.items()}
    if u:
        uid = f[at["upd_ids"]].view(U64)
        counts = np.diff(f[at["starts"]], append=cu)          # rows per mask value
        wg = _width_groups(p, list(union))
        res_h = _unpack_groups(p, wg, [f[at[("res", w)]] for w, _ in wg])
        usl = f[at["upd_slots"]]
        start = int(counts[0])                                # rows whose codes did not move (and padding)
        blocks, hints = [], []
        for mk in np.flatnonzero(counts[1:]) + 1:
            k = int(counts[mk])
            blocks.append(UpdateBlock(int(mk), uid[start:start + k],
                                      {a: np.ascontiguousarray(v[:, start:start + k]) for a, v in res_h.items()
                                       if mk & a.bit}))
            hints.append(usl[start:start + k])
            start += k
        d.updates = blocks
        if blocks and hasattr(enc.state, "token"):
            # slots of each block in the host state (the mirror numbers slots as SceneState does:
            # keyframe rows in id order, ADDs at the tail, compaction in id order); apply checks them
            # against its own ids and looks the ids up itself where they differ
            d.slot_hint = (enc.state.token(), hints)
    if i_del is not None:
        d.delete_ids = np.unique(h[i_del].view(U64))
    if cell_levels:
        d.delete_cells = {k: np.unique(h[i].view(U64)) for k, i in zip(cell_levels, i_cells) if len(h[i])}
    none = m.no_ids
    m.pending = Change(d, d.seq, d.base_seq, ops.keyframe,
                       out.add_ids[ca - n_add:] if has_add else none, out.add_rows[ca - n_add:] if has_add else m.no_rows,
                       out.upd_slots[:u] if u else none, out.upd_rows[:u] if u else m.no_rows,
                       *m.deleted(d))
    clk("host")
    return d


def palette_free(ops: FloatOps) -> bool:
    """``ops`` needs no SH palette entry: no keyframe, no ADD, no UPDATE of SH_REST. Such a frame of a
    palette profile is built here like any other (its SH_REST codes are the mirror's, untouched)."""
    n_add = 0 if ops.add_ids is None else len(ops.add_ids)
    return not ops.keyframe and not n_add and not any(Attr(a) is Attr.SH_REST for _, v in ops.updates for a in v)


def follow_host(enc: Encoder, d: Delta) -> None:
    """``d`` was built on the host against ``enc``'s state (a palette frame: ``protocol.to_delta``).
    The encoder's mirror, if it has one, first commits what came before, then takes ``d`` from the
    host state once the encoder has applied it (``DeviceCodes.catch_up``): a few rows up, not the
    whole state again."""
    m = _MIRRORS.get(enc)
    if m is not None:
        m.catch_up(enc)
        m.pending = d


def _raise_bad(add_ids, m, groups) -> None:
    """Say what was wrong with a frame whose flag came back set (the slow path of an error)."""
    if add_ids is not None and len(add_ids) > 1 and (np.diff(add_ids) == 0).any():
        raise ValueError("an id is ADDed twice in one frame")
    if groups:
        ids = torch.cat([g[0] for g in groups])
        if bool((m.lookup(ids) < 0).any()):
            raise KeyError("UPDATE of an id that is not live")
        if ids.numel() != torch.unique(ids).numel():
            raise ValueError("update groups overlap: an id is updated twice in one step")
    raise ValueError("a value is NaN or infinite, or a position is too far from its birth cell")


def _device_of(ops: FloatOps) -> torch.device:
    for t in [ops.add, ops.add_ids, ops.delete_ids] + [g[0] for g in ops.updates]:
        if isinstance(t, torch.Tensor):
            return t.device
    return torch.device("cpu")


_LAYOUTS: dict = {}


def _layout(p: Profile) -> dict:
    key = (p.sh_degree, p.comps(Attr.SH_REST))     # a palette profile's SH_REST: one index column
    lay = _LAYOUTS.get(key)
    if lay is None:
        lay, start = {}, 0
        for a in ATTRS:
            lay[a] = slice(start, start + p.comps(a))
            start += p.comps(a)
        _LAYOUTS[key] = lay
    return lay
