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
  (``Encoder.encode_delta``).

The mirror is attached to its ``Encoder``; a delta built here is committed to the mirror when
the encoder's state shows it was applied (same seq and digest), on the next ``build_delta``;
if the state moved any other way, the mirror reloads it from the host state.

Inputs may be numpy arrays as well (they become CPU tensors without a copy). The world's own
steps on the CPU go to the codec's encoder instead (``protocol.to_delta``): on small frames a torch
call per operation costs more than the work, and the frames are the same bytes (tested).
"""
from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass, field

import numpy as np
import torch

from codec import ATTRS, Attr, Delta, Encoder, Profile

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
        self._graphs: dict = {}
        if q is None:
            return
        self.pos_step = g.cell_size / (1 << q.position_bits)
        if profile.sh_degree:
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
            c = torch.round(v * self.rest_inv)                # float32 product, as numpy's
            return torch.maximum(torch.minimum(c, self.rest_lim), -self.rest_lim).to(I32), ok
        if attr is Attr.ROTATION:
            return self._smallest_three(v.to(F64)), ok
        raise AssertionError(attr)

    def codes_all(self, x: torch.Tensor, ids: torch.Tensor,
                  placed: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, F) packed float32 rows of ``ids``, every attribute (``protocol.attr_layout`` order) ->
        ((n, Ctot) int32 codes in the same column order, bool flag), as ``codes`` attribute by attribute
        but in a fixed number of operations whatever the row count. ``placed``: (n,) bool, False for rows
        whose position columns are placeholders (their position is taken as their cell's origin, so
        code 0, whatever the placeholder); None: every row's position is given. The cell origins are
        computed from the ids here, in the same operations (SPEC.md 3.4).

        On a GPU, up to ``GRAPH_MAX_ROWS`` rows run as one replay of a CUDA graph of these operations
        (captured once per power-of-two row count; the rows padded with zeros).
        """
        n = x.shape[0]
        if GRAPHS and x.is_cuda and self.p.quant is not None and 0 < n <= GRAPH_MAX_ROWS:
            cap = max(GRAPH_MIN_ROWS, 1 << (n - 1).bit_length())
            if cap not in self._graphs:
                try:
                    self._graphs[cap] = _GraphedCodes(self, cap, x.shape[1])
                except RuntimeError:                  # no capture here: the operations one by one
                    self._graphs[cap] = None
            g = self._graphs[cap]
            if g is not None:
                return g(x, ids, placed)
        return self._codes_all(x, ids, placed)

    def _codes_all(self, x: torch.Tensor, ids: torch.Tensor,
                   placed: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        n = x.shape[0]
        ok = torch.isfinite(x).all()
        if self.p.quant is None:
            return x.contiguous().view(I32), ok
        lay = _layout(self.p)
        out = torch.empty((n, lay[Attr.SH_REST].stop), dtype=I32, device=x.device)
        P = lay[Attr.POSITION]
        origins = self.cell_origins(ids)
        xp = x[:, P].to(F64)
        if placed is not None:
            xp = torch.where(placed[:, None], xp, origins)
        c = torch.round((xp - origins) / self.pos_step)
        if n:
            ok = ok & (c.abs().amax() <= 2**31 - 1)           # NaN fails it too
        out[:, P] = c.clamp(-2**31, 2**31 - 1)
        u = torch.round((x.index_select(1, self.u_cols).to(F64) - self.u_lo) * self.u_k)
        out.index_copy_(1, self.u_cols, torch.minimum(u.clamp_min(0), self.u_top).to(I32))
        R = lay[Attr.ROTATION]
        out[:, R] = self._smallest_three(x[:, R].to(F64))
        O = lay[Attr.OPACITY]
        out[:, O] = torch.searchsorted(self.op_thr, x[:, O].contiguous(), right=True)
        S = lay[Attr.SH_REST]
        if S.stop > S.start:
            r = torch.round(x[:, S] * self.rest_inv)
            out[:, S] = torch.maximum(torch.minimum(r, self.rest_lim), -self.rest_lim)
        return out, ok

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


GRAPHS = True              # codes_all of a frame's rows as a CUDA graph replay on a GPU: one launch instead of
                           # ~130 (an idle step's codes at 1M on an H100: 2.8 -> 1.7 ms; GENERATOR_BENCH.md)
GRAPH_MIN_ROWS, GRAPH_MAX_ROWS = 1 << 11, 1 << 16


class _GraphedCodes:
    """``TorchQuantizer._codes_all`` of ``cap`` rows captured as a CUDA graph: a call copies its rows
    in (zeros after them), replays, and copies the codes out. The graph's buffers are shared by every
    stream of the profile on the device (worlds on threads), so a call holds a lock while it enqueues."""

    def __init__(self, qz: TorchQuantizer, cap: int, f: int):
        dev = qz.device
        self.lock = threading.Lock()
        self.x = torch.zeros((cap, f), dtype=torch.float32, device=dev)
        self.ids = torch.zeros(cap, dtype=I64, device=dev)
        self.placed = torch.zeros(cap, dtype=torch.bool, device=dev)
        side = torch.cuda.Stream(dev)
        side.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(side):             # warm-up off the capture, as CUDA graphs want
            for _ in range(2):
                qz._codes_all(self.x, self.ids, self.placed)
        torch.cuda.current_stream(dev).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self.out, self.ok = qz._codes_all(self.x, self.ids, self.placed)

    def __call__(self, x: torch.Tensor, ids: torch.Tensor, placed: torch.Tensor | None):
        n = x.shape[0]
        with self.lock:                           # one stream order: copy in, replay, copy out
            self.x[:n].copy_(x)
            self.x[n:].zero_()                    # finite rows after them, not placed: code 0
            self.ids[:n].copy_(ids)
            if placed is None:
                self.placed[:n].fill_(True)
            else:
                self.placed[:n].copy_(placed)
            self.placed[n:].fill_(False)
            self.graph.replay()
            return self.out[:n].clone(), self.ok.clone()


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
        self._load(self.no_ids, self.no_rows)
        self.seq = 0
        self.digest = None
        self.pending: Change | None = None
        self.staging: torch.Tensor | None = None  # page-locked bytes for the copy to the host (CUDA)

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

    def col_thresholds(self, thresholds: dict | None) -> torch.Tensor | None:
        """(Ctot,) int64 allowed change per column in quantized units (a rotation's component index: 0),
        or None when every threshold is 0 (or the profile is lossless)."""
        if not thresholds or self.p.lossless:
            return None
        key = tuple(sorted((int(Attr(a)), int(t)) for a, t in thresholds.items()))
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
        self.main_ids = ids_sorted
        self.main_slots = torch.arange(n, dtype=I64, device=self.device) if slots is None else slots
        self.over_ids = torch.zeros(0, dtype=I64, device=self.device)
        self.over_slots = torch.zeros(0, dtype=I64, device=self.device)

    # -- queries ----------------------------------------------------------------------------------
    @staticmethod
    def _find(keys, slots, q):
        if keys.numel() == 0:
            return torch.full_like(q, -1)
        pos = torch.searchsorted(keys, q).clamp_max(keys.numel() - 1)
        return torch.where(keys[pos] == q, slots[pos], -1)

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """Slot of each id, -1 where it is not live."""
        s = self._find(self.main_ids, self.main_slots, ids)
        if self.over_ids.numel():
            o = self._find(self.over_ids, self.over_slots, ids)
            s = torch.where(o >= 0, o, s)
        return s

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
        """Commit the pending change if the encoder applied it; reload from the host on any other move."""
        ch, self.pending = self.pending, None
        st = enc.state
        if ch is not None and st.seq == ch.seq and self.seq == ch.base_seq and self._same(enc, ch.delta.digest):
            self.commit(ch, st)
            self.digest = ch.delta.digest
        if self.seq != st.seq or not self._same(enc, self.digest):
            self.reload(enc)

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
            self.over_ids, self.over_slots = _merge(self.over_ids, self.over_slots, ch.add_ids, new_slots)
        if st.compactions != self.compactions:      # the host compacted: rows in id order, as there
            self._compact()
            self.compactions = st.compactions
        elif self.over_ids.numel() > max(self.MERGE_MIN, self.main_ids.numel() // 8):
            live_m, live_o = self.main_slots >= 0, self.over_slots >= 0
            self.main_ids, self.main_slots = _merge(self.main_ids[live_m], self.main_slots[live_m],
                                                    self.over_ids[live_o], self.over_slots[live_o])
            self.over_ids = self.over_ids[:0]
            self.over_slots = self.over_slots[:0]

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


PACK_ON_CPU = False       # pack on the CPU too (as on a GPU), to test the packing where there is no GPU
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
        if self.device.type == "cpu" and not PACK_ON_CPU:
            return [t.numpy() for t in self.parts]
        order = sorted(range(len(self.parts)), key=lambda k: -self.parts[k].element_size())  # aligned views
        flat = torch.cat([self.parts[k].reshape(-1).view(torch.uint8) for k in order])
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
        out, pos = [None] * len(self.parts), 0
        for k in order:
            t = self.parts[k]
            nb = t.numel() * t.element_size()
            out[k] = buf[pos:pos + nb].view(_NP[t.dtype]).reshape(tuple(t.shape))
            pos += nb
        return out


_NP = {torch.int8: np.int8, torch.int16: np.int16, torch.int32: np.int32, torch.int64: np.int64,
       torch.uint8: np.uint8, torch.uint16: np.uint16, torch.uint32: np.uint32, torch.float32: np.float32}


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


def build_delta(enc: Encoder, ops: FloatOps, device=None) -> Delta:
    """The code-space Delta of ``ops`` against the encoder's current state (not yet applied).

    Quantization, residuals against the device mirror and UPDATE masks run on ``device`` (the
    tensors' own by default); one packed copy brings the codes to the host. Each attribute is
    quantized once for the ADDs and every UPDATE group together; codes cross as one narrow
    array per code width.
    """
    from codec.delta import UpdateBlock       # the wire-form UPDATE block

    p = enc.profile
    dev = torch.device(device) if device is not None else _device_of(ops)
    clk = _Clock(dev)
    m = mirror_of(enc, dev)
    clk("mirror")
    qz = quantizer_of(p, dev)
    lay = _layout(p)
    present = [a for a in ATTRS if p.comps(a)]
    pay = _Payload(dev, m)
    oks = []                                   # flags: every check of the frame passed

    # inputs: ADDs in id order, UPDATE groups as given
    add_ids = as_tensor(ops.add_ids if ops.add_ids is not None else np.zeros(0, np.int64), dev, I64).reshape(-1)
    n_add = add_ids.numel()
    has_add = bool(n_add or ops.keyframe)
    if has_add:
        add_x = (as_tensor(ops.add, dev, torch.float32) if ops.add is not None
                 else torch.zeros((0, lay[Attr.SH_REST].stop), device=dev)).reshape(n_add, -1)
        if n_add > 1:
            add_ids, order = torch.sort(add_ids)
            add_x = torch.index_select(add_x, 0, order)
            oks.append((add_ids[1:] != add_ids[:-1]).all())
    groups = []
    for ids, vals in ops.updates:
        ids = as_tensor(ids, dev, I64).reshape(-1)
        if ids.numel():
            groups.append((ids, {Attr(a): as_tensor(v, dev, torch.float32).reshape(ids.numel(), -1)
                                 for a, v in vals.items() if p.comps(Attr(a))}))
    sizes = [g[0].numel() for g in groups]
    u = sum(sizes)
    if groups:                                    # the rows' slots in the mirror: their old codes
        ids = torch.cat([g[0] for g in groups]) if len(groups) > 1 else groups[0][0]
        sid, o1 = torch.sort(ids, stable=True)    # ids in order: the binary searches walk memory forwards
        slots = torch.empty_like(sid).index_copy_(0, o1, m.lookup(sid))
        oks.append((slots >= 0).all())
        if u > 1:
            oks.append((sid[1:] != sid[:-1]).all())
        slots_c = slots.clamp_min(0)
    clk("inputs")

    # quantize: every row of the frame at once -- the ADD rows, then the UPDATE rows, whose attributes
    # that their group does not carry are placeholders (zeros; a position not given is not placed)
    # that take the mirror's codes below
    F = lay[Attr.SH_REST].stop
    placed = None
    if groups:
        x = torch.zeros((n_add + u, F), dtype=torch.float32, device=dev)
        if has_add:
            x[:n_add] = add_x
        start, sets = n_add, []
        for (gids, vals), k in zip(groups, sizes):
            for a, v in vals.items():
                x[start:start + k, lay[a]] = v
            if Attr.POSITION not in vals and p.comps(Attr.POSITION):
                if placed is None:
                    placed = torch.ones(n_add + u, dtype=torch.bool, device=dev)
                placed[start:start + k] = False
            sets.append(tuple(a for a in present if a in vals))
            start += k
        row_ids = torch.cat([add_ids, ids]) if has_add else ids
    else:
        x, row_ids = (add_x, add_ids) if has_add else (None, None)
    if has_add or groups:
        codes, ok = qz.codes_all(x, row_ids, placed)
        oks.append(ok)
    clk("quantize")

    i_add_ids, i_add = None, []
    add_rows = m.no_rows
    wg_add = _width_groups(p, present)
    if has_add:
        add_rows = codes[:n_add] if groups else codes
        i_add_ids = pay.add(add_ids)
        for w, attrs in wg_add:
            cols = m.col_index(attrs)
            i_add.append(pay.add(_narrow(p, w, add_rows if cols is None else add_rows[:, cols])))
    clk("add_pack")

    # UPDATE: residuals against the mirror; a row's mask names the attributes that moved
    upd_slots = m.no_ids
    upd_rows = m.no_rows
    i_upd_ids = i_counts = None
    i_res, wg_upd = [], []
    if groups:
        q = codes[n_add:]
        old = torch.index_select(m.rows, 0, slots_c)
        union = [a for a in present if any(a in s_ for s_ in sets)]
        if len(set(sets)) == 1:
            if len(union) < len(present):
                q = torch.where(m.col_mask(union), q, old)
        else:                                         # groups carry different attributes: a row takes
            row = torch.arange(u, device=dev)[:, None]  # the codes of its group's columns (no upload)
            carried, start = m.col_mask(list(sets[0])), sizes[0]
            for s_, k in zip(sets[1:], sizes[1:]):
                carried = torch.where(row >= start, m.col_mask(list(s_)), carried)
                start += k
            q = torch.where(carried, q, old)
        tcol = m.col_thresholds(ops.thresholds)
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
        order = o1[o2]
        i_upd_ids = pay.add(ids[order])
        i_upd_slots = pay.add(slots[order])      # the host state's slots too: the mirror allots them alike
        # where each mask's rows start in that order (bincount would wait for the device to size its output)
        i_counts = pay.add(torch.searchsorted(sm, m.mask_values))
        wg_upd = _width_groups(p, union)
        r = torch.index_select(res, 0, order)
        for w, attrs in wg_upd:
            cols = m.col_index(attrs)
            i_res.append(pay.add(_narrow(p, w, r if cols is None else r[:, cols])))
        upd_slots = slots
    clk("residuals")
    # deletes (few: ids and cells go to the host as they are)
    del_ids = as_tensor(ops.delete_ids if ops.delete_ids is not None else np.zeros(0, np.int64), dev, I64).reshape(-1)
    i_del = pay.add(del_ids) if del_ids.numel() else None
    cell_levels = sorted(int(k) for k in ops.delete_cells)
    i_cells = [pay.add(as_tensor(ops.delete_cells[k], dev, I64).reshape(-1)) for k in cell_levels]
    i_ok = pay.add(torch.stack(oks).all().reshape(1)) if oks else None

    clk("deletes")
    h = pay.fetch()                                           # the one device-to-host copy
    clk("fetch")
    if i_ok is not None and not h[i_ok][0]:
        _raise_bad(h, i_add_ids, m, groups)
    d = Delta.empty_like(p, seq=enc.state.seq + 1, base_seq=enc.state.seq, keyframe=ops.keyframe)
    if i_add_ids is not None:
        d.add_ids = h[i_add_ids].view(U64)
        d.add = {a: np.zeros((0, n_add), p.dtype(a)) for a in ATTRS}
        d.add.update(_unpack_groups(p, wg_add, [h[i] for i in i_add]))
    if i_upd_ids is not None:
        uid = h[i_upd_ids].view(U64)
        counts = np.diff(h[i_counts], append=u)                 # rows per mask value
        res_h = _unpack_groups(p, wg_upd, [h[i] for i in i_res])
        usl = h[i_upd_slots]
        start = int(counts[0])                                # rows whose codes did not move
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
    first, last = [], []
    for k, cells in d.delete_cells.items():
        f, l = p.grid.cell_range(cells, k)
        first.append(f), last.append(l)
    none = m.no_ids
    m.pending = Change(d, d.seq, d.base_seq, ops.keyframe, add_ids, add_rows, upd_slots, upd_rows,
                       as_tensor(d.delete_ids, dev, I64) if len(d.delete_ids) else none,
                       as_tensor(np.concatenate(first), dev, I64) if first else none,
                       as_tensor(np.concatenate(last), dev, I64) if last else none)
    clk("host")
    return d


def _raise_bad(h, i_add_ids, m, groups) -> None:
    """Say what was wrong with a frame whose flag came back set (the slow path of an error)."""
    if i_add_ids is not None and len(h[i_add_ids]) > 1 and (np.diff(h[i_add_ids]) == 0).any():
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
    lay = _LAYOUTS.get(p.sh_degree)
    if lay is None:
        lay, start = {}, 0
        for a in ATTRS:
            lay[a] = slice(start, start + p.comps(a))
            start += p.comps(a)
        _LAYOUTS[p.sh_degree] = lay
    return lay
