"""Any model's full-scene outputs -> minimal GSD deltas.

A model that outputs the whole scene every step (a trained world model, a simulator, a
re-optimized 3DGS) needs someone to find out what changed. ``Differ`` does it in three stages:

1. **Association** of the new scene's rows with the previous scene's, on the model's device:
   by identity when the model gives persistent ids (a sorted-key join), else by mutual nearest
   neighbours within ``tolerance`` (a voxel hash: each query looks at the 8 voxels of edge
   ``2 * tolerance`` its ball touches; conflicts are resolved in a few vectorized rounds).
   Matched rows keep their stream id; unmatched new rows are ADDs (fresh spatial ids from
   ``Encoder.assign_ids``, or the model's own when ``spatial_ids``); unmatched old rows are
   deleted (whole level-0 cells when every live id of a cell goes, else by id).
   Rows in the same order as last time (the same ids, or associated one to one in place) skip
   the joins and gathers.
2. **Prefilter** on the device: a matched row whose floats are bit-identical to the previous
   step's cannot need an UPDATE (its codes are unchanged).
3. **Decision in code space** (closed loop, SPEC.md 5.5), still on the device
   (``device_codes.build_delta``): the changed rows are quantized with the stream's profile and
   compared with the codes the decoder holds (the device mirror of the encoder's state). An
   attribute is sent only if some component moved by more than its threshold, in quantized
   units (0 = any change; ROTATION also when the stored component index changes). Error never
   accumulates: every decoded value stays within ``threshold + 1/2`` steps of the latest target.
   With the lossless profile thresholds are ignored (any bit change is a change). Only the
   codes of what changed cross to the host, in one copy; the host frames and compresses them.

``DiffStats`` reports the counts and the bytes saved against sending the whole scene.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from codec import ATTRS, Attr, Delta, Encoder, Gaussians

from .device_codes import FloatOps, as_tensor, build_delta
from .protocol import attr_layout, n_floats

U64 = np.uint64
I64 = torch.int64


@dataclass
class DiffStats:
    """What one diff did, and what it cost against sending the full scene."""
    n: int = 0                 # Gaussians in the target scene
    added: int = 0
    updated: int = 0
    deleted: int = 0           # Gaussians removed (by id or by cell)
    deleted_cells: int = 0     # level-0 cells sent instead of their ids
    unchanged: int = 0         # matched and not updated
    changed_floats: int = 0    # matched rows whose floats changed (sent to the host)
    keyframe: bool = False
    delta_bytes: int = 0       # encoded frame (0 until encoded)
    full_raw_bytes: int = 0    # the target as raw codes plus ids: n * bytes per Gaussian
    full_bytes: int | None = None   # the target as an encoded keyframe (when measured)

    @property
    def baseline_bytes(self) -> int:
        return self.full_bytes if self.full_bytes is not None else self.full_raw_bytes

    @property
    def saved_bytes(self) -> int:
        return self.baseline_bytes - self.delta_bytes

    @property
    def ratio(self) -> float:
        """Baseline bytes per delta byte (how many times smaller the delta is)."""
        return self.baseline_bytes / max(self.delta_bytes, 1)


@dataclass
class DiffResult:
    delta: Delta
    stats: DiffStats
    state: dict = field(repr=False, default_factory=dict)   # the differ's next state, adopted by accept()


def pack_gaussians(g: Gaussians) -> np.ndarray:
    """Gaussians -> (n, F) float32 in the packed attribute order of protocol.attr_layout."""
    return np.concatenate([g.attribute(a).reshape(len(g), -1) for a in ATTRS], axis=1).astype(np.float32)


def associate(prev: torch.Tensor, cur: torch.Tensor, tol: float, rounds: int = 4) -> torch.Tensor:
    """Match rows of ``cur`` (N, 3) to rows of ``prev`` (M, 3) one-to-one within ``tol``.

    Returns (N,) int64: the matched prev row, or -1. Mutual nearest neighbours, repeated over
    the still-unmatched rows for a few rounds (each round is vectorized).
    """
    dev = cur.device
    n, m = cur.shape[0], prev.shape[0]
    match = torch.full((n,), -1, dtype=I64, device=dev)
    if n == 0 or m == 0:
        return match
    v = 2.0 * tol
    lo = torch.minimum(prev.min(0).values, cur.min(0).values) - v
    vp = torch.floor((prev - lo) / v).to(I64)
    vc_f = (cur - lo) / v
    vc = torch.floor(vc_f).to(I64)
    top = int(torch.maximum(vp.max(), vc.max())) + 2
    if top >= (1 << 21):
        raise ValueError(f"tolerance {tol} is too small for the scene's extent (over 2^21 voxels a side)")

    def key(c):
        return (c[:, 0] << 42) | (c[:, 1] << 21) | c[:, 2]

    ks, perm = torch.sort(key(vp))
    # queries in voxel order too: the binary searches below then walk memory almost linearly
    qkey, qorder = torch.sort(key(vc))
    cur, vc, vc_f = cur[qorder], vc[qorder], vc_f[qorder]
    side = torch.where(vc_f - vc >= 0.5, 1, -1).to(I64)      # the neighbour the tol-ball reaches into
    qs, ps, ds = [], [], []
    ar = torch.arange(n, device=dev)
    for combo in range(8):
        bits = torch.tensor([(combo >> 0) & 1, (combo >> 1) & 1, (combo >> 2) & 1], dtype=I64, device=dev)
        k = key(vc + side * bits)
        a = torch.searchsorted(ks, k, side="left")
        b = torch.searchsorted(ks, k, side="right")
        cnt = b - a
        total = int(cnt.sum())
        if total == 0:
            continue
        q = torch.repeat_interleave(ar, cnt)
        first = torch.cumsum(cnt, 0) - cnt
        p = perm[a[q] + (torch.arange(total, device=dev) - first[q])]
        d2 = ((prev[p] - cur[q]) ** 2).sum(1)
        ok = d2 <= tol * tol
        qs.append(q[ok]); ps.append(p[ok]); ds.append(d2[ok])
    if not qs:
        return match
    q, p, d2 = qorder[torch.cat(qs)], torch.cat(ps), torch.cat(ds)   # back to the caller's row order
    big = torch.iinfo(I64).max
    for _ in range(rounds):
        if q.numel() == 0:
            break
        best_q = torch.full((n,), float("inf"), device=dev).scatter_reduce(0, q, d2, "amin")
        best_p = torch.full((m,), float("inf"), device=dev).scatter_reduce(0, p, d2, "amin")
        mutual = (d2 == best_q[q]) & (d2 == best_p[p])
        # ties (equal distances): the lowest prev row per query, then the lowest query per prev row
        pick_p = torch.full((n,), big, dtype=I64, device=dev).scatter_reduce(
            0, q[mutual], p[mutual], "amin")
        one = mutual & (p == pick_p[q])
        pick_q = torch.full((m,), big, dtype=I64, device=dev).scatter_reduce(0, p[one], q[one], "amin")
        one &= q == pick_q[p]
        if not bool(one.any()):
            break
        match[q[one]] = p[one]
        used_p = torch.zeros(m, dtype=torch.bool, device=dev)
        used_p[p[one]] = True
        keep = (match[q] < 0) & ~used_p[p]
        q, p, d2 = q[keep], p[keep], d2[keep]
    return match


class Differ:
    """Stateful: feed it the model's scene each step; it emits the minimal delta against the last.

    ``encoder`` owns the stream (profile, grid, closed-loop state). ``tolerance`` (world units)
    bounds how far a Gaussian may move between steps and still be recognised without ids.
    ``thresholds`` maps Attr -> allowed change in quantized units before an UPDATE is sent.
    ``spatial_ids``: the ids the model gives are already valid stream ids (e.g. the reference
    world's); otherwise they are opaque persistent keys mapped to spatial ids here.
    ``measure_full``: also encode the target as a keyframe each step for DiffStats.full_bytes
    (costs a full keyframe encode).
    """

    def __init__(self, encoder: Encoder, *, tolerance: float = 0.01, thresholds: dict | None = None,
                 spatial_ids: bool = False, device: str | torch.device = "cpu", measure_full: bool = False):
        self.enc = encoder
        self.p = encoder.profile
        if self.p.palette:
            raise ValueError(f"the full-scene path codes SH_REST per Gaussian on the device; profile "
                             f"{self.p.name!r} codes it through an SH palette: use compact, high or lossless")
        self.tol = float(tolerance)
        if not self.tol > 0:
            raise ValueError("tolerance must be > 0")
        self.thr = {a: 0 for a in ATTRS}
        for a, t in (thresholds or {}).items():
            if int(t) < 0:
                raise ValueError("thresholds must be >= 0")
            self.thr[Attr(a)] = int(t)
        if self.p.lossless:
            self.thr = {a: 0 for a in ATTRS}
        self.spatial_ids = spatial_ids
        self.device = torch.device(device)
        self.measure_full = measure_full
        self.nf = n_floats(self.p.sh_degree)
        self.lay = attr_layout(self.p.sh_degree)
        self.raw_per_gaussian = 8 + sum(self.p.comps(a) * self.p.width(a) for a in ATTRS)
        self.prev: dict | None = None        # x (N, F), sids (N,), keys (N,) or None
        self.stream_ids: torch.Tensor | None = None   # stream id of each row of the last scene

    # -- input ----------------------------------------------------------------------------------
    def _as_tensor(self, attrs) -> torch.Tensor:
        if isinstance(attrs, Gaussians):
            attrs = pack_gaussians(attrs)
        x = as_tensor(attrs, self.device, torch.float32)
        if x.ndim != 2 or x.shape[1] != self.nf:
            raise ValueError(f"scene must be (N, {self.nf}) packed floats for SH degree {self.p.sh_degree}")
        return x.contiguous()

    def _as_keys(self, ids, n: int, same_as: torch.Tensor | None = None) -> torch.Tensor | None:
        if ids is None:
            if self.spatial_ids:
                raise ValueError("spatial_ids=True needs the ids")
            return None
        k = as_tensor(np.asarray(ids).astype(np.int64) if isinstance(ids, np.ndarray) else ids,
                      self.device, I64).reshape(-1)
        if k.numel() != n:
            raise ValueError("ids must have one entry per row")
        if same_as is not None and same_as.shape == k.shape and bool(torch.equal(k, same_as)):
            return same_as                    # the last scene's keys, in the same order: unique already
        if n > 1:
            sk = torch.sort(k).values
            if bool((sk[1:] == sk[:-1]).any()):
                raise ValueError("ids must be unique")
        return k

    # -- the diff ---------------------------------------------------------------------------------
    def diff(self, attrs, ids=None) -> DiffResult:
        """The delta from the last accepted scene (or a keyframe at first) to this one; not applied."""
        x = self._as_tensor(attrs)
        pv = self.prev
        keys = self._as_keys(ids, x.shape[0], pv["keys"] if pv is not None else None)
        if pv is None:
            return self._keyframe(x, keys)
        dev = self.device
        n, n_prev = x.shape[0], pv["x"].shape[0]
        # 1. association (rows of the last scene in the same order: nothing to search)
        same_order = keys is not None and keys is pv["keys"]
        if same_order:
            match = None
        elif keys is not None and pv["keys"] is not None:
            sk, order = torch.sort(pv["keys"])
            pos = torch.searchsorted(sk, keys).clamp_max(max(sk.numel() - 1, 0))
            found = (sk[pos] == keys) if sk.numel() else torch.zeros(n, dtype=torch.bool, device=dev)
            match = torch.where(found, order[pos], torch.full_like(pos, -1))
        else:
            match = associate(pv["x"][:, :3], x[:, :3], self.tol)
        if match is not None and n == n_prev and bool((match == torch.arange(n, device=dev)).all()):
            match, same_order = None, True
        # 2. device prefilter: rows whose float bits did not change need nothing (bits, not values:
        #    0.0 -> -0.0 is a change in the lossless profile)
        xi, pi = x.view(torch.int32), pv["x"].view(torch.int32)
        if same_order:
            sids = pv["sids"]
            ch_rows = torch.nonzero((xi != pi).any(1)).squeeze(1)
            new_rows = gone_rows = torch.zeros(0, dtype=I64, device=dev)
            n_matched = n
        else:
            matched = match >= 0
            claimed = torch.zeros(n_prev, dtype=torch.bool, device=dev)
            claimed[match[matched]] = True
            gone_rows = torch.nonzero(~claimed).squeeze(1)
            new_rows = torch.nonzero(~matched).squeeze(1)
            m_rows = torch.nonzero(matched).squeeze(1)
            n_matched = m_rows.numel()
            ch_rows = m_rows[(xi[m_rows] != pi[match[m_rows]]).any(1)]
            sids = torch.full((n,), -1, dtype=I64, device=dev)
            sids[m_rows] = pv["sids"][match[m_rows]]
        # 3. ids of the new rows: the model's own, or fresh spatial ids from the encoder
        if new_rows.numel():
            if self.spatial_ids:
                new_ids = keys[new_rows]
            else:
                pos = x[new_rows][:, self.lay[Attr.POSITION]].cpu().numpy()
                if not np.isfinite(pos).all():
                    raise ValueError("scene has NaN or infinite values")
                new_ids = as_tensor(self.enc.assign_ids(pos), dev, I64)
            sids[new_rows] = new_ids
        else:
            new_ids = new_rows
        # 4. deletes (whole level-0 cells where every live id of the cell goes), then the frame:
        #    quantized, compared with the decoder's codes and thresholded on the device
        del_ids, cells = self._collapse_cells(pv["sids"][gone_rows], pv["sids"])
        updates = []
        if ch_rows.numel():
            # every attribute of the changed rows goes to the frame builder, which quantizes them all in
            # one pass anyway: an attribute whose floats did not change cannot move (its codes were
            # decided against these very floats last time), so it drops out there, with no host round trip
            xc = x[ch_rows]
            updates = [(sids[ch_rows], {a: xc[:, self.lay[a]] for a in ATTRS if self.p.comps(a)})]
        ops = FloatOps(add_ids=new_ids, add=x[new_rows], updates=updates,
                       delete_ids=del_ids, delete_cells={0: cells} if cells.numel() else {},
                       thresholds=self.thr)
        d = build_delta(self.enc, ops, dev)
        st = DiffStats(n=n, added=int(new_rows.numel()), updated=d.n_update, deleted=int(gone_rows.numel()),
                       deleted_cells=int(cells.numel()), unchanged=n_matched - d.n_update,
                       changed_floats=int(ch_rows.numel()), full_raw_bytes=n * self.raw_per_gaussian)
        return DiffResult(d, st, {"x": x, "sids": sids, "keys": keys, "base": pv["x"] if same_order else None,
                                  "changed": ch_rows})

    def _keyframe(self, x: torch.Tensor, keys) -> DiffResult:
        if self.spatial_ids:
            sids = keys.clone()
        else:
            pos = x[:, self.lay[Attr.POSITION]].cpu().numpy()
            if not np.isfinite(pos).all():
                raise ValueError("scene has NaN or infinite values")
            sids = as_tensor(self.enc.assign_ids(pos) if len(pos) else np.zeros(0, np.int64), self.device, I64)
        d = build_delta(self.enc, FloatOps(keyframe=True, add_ids=sids, add=x), self.device)
        n = x.shape[0]
        st = DiffStats(n=n, added=n, keyframe=True, full_raw_bytes=n * self.raw_per_gaussian)
        return DiffResult(d, st, {"x": x, "sids": sids, "keys": keys})

    def _collapse_cells(self, gone: torch.Tensor, live: torch.Tensor):
        """Deleted ids -> (ids, level-0 cells): cells whose every live id goes (and that hold 2+) go whole."""
        none = torch.zeros(0, dtype=I64, device=self.device)
        if gone.numel() < 2:
            return gone, none
        s = self.p.grid.slot_bits
        gone = torch.sort(gone).values
        cells, counts = torch.unique_consecutive(gone >> s, return_counts=True)
        cand = counts >= 2
        c = cells[cand]
        if c.numel() == 0:
            return gone, none
        srt = torch.sort(live).values
        n_live = torch.searchsorted(srt, (c + 1) << s) - torch.searchsorted(srt, c << s)
        full = c[n_live == counts[cand]]
        if full.numel() == 0:
            return gone, none
        return gone[~torch.isin(gone >> s, full)], full

    # -- commit -------------------------------------------------------------------------------------
    def accept(self, result: DiffResult) -> None:
        """Adopt ``result`` as the last scene (call after the encoder applied its delta)."""
        st = result.state
        # a private copy: the caller may reuse or edit its scene buffer in place (as_tensor shares memory)
        keys = st["keys"]
        if keys is not None and (self.prev is None or keys is not self.prev["keys"]):
            keys = keys.clone()
        base = st.get("base")
        if base is not None and self.prev is not None and base is self.prev["x"]:
            x = base                              # rows in place: only the changed ones need copying
            x.index_copy_(0, st["changed"], st["x"][st["changed"]])
        else:
            x = st["x"].clone()
        self.prev = {"x": x, "sids": st["sids"], "keys": keys}
        self.stream_ids = st["sids"]

    def encode(self, attrs, ids=None) -> tuple[bytes, DiffStats]:
        """diff, encode (the encoder's state advances), accept: the frame bytes and the stats."""
        r = self.diff(attrs, ids)
        frame = self.enc.encode_delta(r.delta)
        self.accept(r)
        r.stats.delta_bytes = len(frame)
        if self.measure_full:
            r.stats.full_bytes = len(self.enc.frames.encode(self.enc.state_keyframe()))
        return frame, r.stats
