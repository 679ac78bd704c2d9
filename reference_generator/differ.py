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
2. **Prefilter** on the device: a matched row whose floats are bit-identical to the previous
   step's cannot need an UPDATE (its codes are unchanged), so only changed rows leave the device.
3. **Decision in code space** (closed loop, SPEC.md 5.5): the changed rows are quantized with
   the stream's profile and compared with the codes the decoder holds (the encoder's state).
   An attribute is sent only if some component moved by more than its threshold, in quantized
   units (0 = any change; ROTATION also when the stored component index changes). Error never
   accumulates: every decoded value stays within ``threshold + 1/2`` steps of the latest target.
   With the lossless profile thresholds are ignored (any bit change is a change).

``DiffStats`` reports the counts and the bytes saved against sending the whole scene.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from codec import ATTRS, Attr, Delta, Encoder, Gaussians

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
        x = torch.as_tensor(attrs, device=self.device).to(torch.float32)
        if x.ndim != 2 or x.shape[1] != self.nf:
            raise ValueError(f"scene must be (N, {self.nf}) packed floats for SH degree {self.p.sh_degree}")
        return x.contiguous()

    def _as_keys(self, ids, n: int) -> torch.Tensor | None:
        if ids is None:
            if self.spatial_ids:
                raise ValueError("spatial_ids=True needs the ids")
            return None
        k = torch.as_tensor(np.asarray(ids).astype(np.int64) if isinstance(ids, np.ndarray) else ids,
                            device=self.device).to(I64).reshape(-1)
        if k.numel() != n:
            raise ValueError("ids must have one entry per row")
        if n > 1:
            sk = torch.sort(k).values
            if bool((sk[1:] == sk[:-1]).any()):
                raise ValueError("ids must be unique")
        return k

    # -- the diff ---------------------------------------------------------------------------------
    def diff(self, attrs, ids=None) -> DiffResult:
        """The delta from the last accepted scene (or a keyframe at first) to this one; not applied."""
        x = self._as_tensor(attrs)
        keys = self._as_keys(ids, x.shape[0])
        if self.prev is None:
            return self._keyframe(x, keys)
        pv = self.prev
        n = x.shape[0]
        # 1. association
        if keys is not None and pv["keys"] is not None:
            sk, order = torch.sort(pv["keys"])
            pos = torch.searchsorted(sk, keys).clamp_max(max(sk.numel() - 1, 0))
            found = (sk[pos] == keys) if sk.numel() else torch.zeros(n, dtype=torch.bool, device=self.device)
            match = torch.where(found, order[pos], torch.full_like(pos, -1))
        else:
            match = associate(pv["x"][:, :3], x[:, :3], self.tol)
        matched = match >= 0
        claimed = torch.zeros(pv["x"].shape[0], dtype=torch.bool, device=self.device)
        claimed[match[matched]] = True
        gone_rows = torch.nonzero(~claimed).squeeze(1)
        new_rows = torch.nonzero(~matched).squeeze(1)
        m_rows = torch.nonzero(matched).squeeze(1)
        # 2. device prefilter: rows whose float bits did not change need nothing (bits, not values:
        #    0.0 -> -0.0 is a change in the lossless profile). Rows in the same order skip the gathers.
        xi, pi = x.view(torch.int32), pv["x"].view(torch.int32)
        if n == pi.shape[0] and bool((match == torch.arange(n, device=self.device)).all()):
            ch_rows = torch.nonzero((xi != pi).any(1)).squeeze(1)
        else:
            ch_rows = m_rows[(xi[m_rows] != pi[match[m_rows]]).any(1)]
        sids = torch.full((n,), -1, dtype=I64, device=self.device)
        sids[m_rows] = pv["sids"][match[m_rows]]
        if self.spatial_ids:
            sids[new_rows] = keys[new_rows]
        # one copy to the host: changed rows, new rows, their stream ids, the deleted ids
        parts = [x[ch_rows], x[new_rows]]
        host = torch.cat(parts).cpu().numpy() if n else np.zeros((0, self.nf), np.float32)
        ch_x, new_x = host[:ch_rows.numel()], host[ch_rows.numel():]
        id_parts = torch.cat([sids[ch_rows], sids[new_rows], pv["sids"][gone_rows]]).cpu().numpy()
        ch_ids = id_parts[:ch_rows.numel()].astype(U64)
        del_ids = id_parts[ch_rows.numel() + new_rows.numel():].astype(U64)
        if self.spatial_ids:
            new_ids = id_parts[ch_rows.numel():ch_rows.numel() + new_rows.numel()].astype(U64)
        else:
            if not np.isfinite(new_x).all():   # changed rows are checked by quantize; unchanged ones were before
                raise ValueError("scene has NaN or infinite values")
            new_ids = self.enc.assign_ids(new_x[:, self.lay[Attr.POSITION]]) if len(new_x) else np.zeros(0, U64)
            sids[new_rows] = torch.as_tensor(new_ids.astype(np.int64), device=self.device)
        # 3. deletes (whole cells where possible), adds, updates decided in code space
        del_ids, cells = self._collapse_cells(del_ids)
        ops = {}
        if len(new_ids):
            ops["add"] = (new_ids, {int(a): new_x[:, self.lay[a]] for a in ATTRS})
        if len(del_ids):
            ops["delete"] = del_ids
        if len(cells):
            ops["delete_cells"] = {0: cells}
        d = self.enc.make_delta(**ops)
        updated = self._updates(d, ch_ids, ch_x)
        st = DiffStats(n=n, added=len(new_ids), updated=updated, deleted=int(gone_rows.numel()),
                       deleted_cells=len(cells), unchanged=int(m_rows.numel()) - updated,
                       changed_floats=int(ch_rows.numel()), full_raw_bytes=n * self.raw_per_gaussian)
        return DiffResult(d, st, {"x": x, "sids": sids, "keys": keys})

    def _keyframe(self, x: torch.Tensor, keys) -> DiffResult:
        h = x.cpu().numpy()
        if not np.isfinite(h).all():
            raise ValueError("scene has NaN or infinite values")
        if self.spatial_ids:
            sids_np = keys.cpu().numpy().astype(U64)
        else:
            sids_np = self.enc.assign_ids(h[:, self.lay[Attr.POSITION]]) if len(h) else np.zeros(0, U64)
        d = self.enc.make_delta(add=(sids_np, {int(a): h[:, self.lay[a]] for a in ATTRS}), keyframe=True)
        sids = torch.as_tensor(sids_np.astype(np.int64), device=self.device)
        st = DiffStats(n=len(h), added=len(h), keyframe=True, full_raw_bytes=len(h) * self.raw_per_gaussian)
        return DiffResult(d, st, {"x": x, "sids": sids, "keys": keys})

    def _collapse_cells(self, del_ids: np.ndarray):
        """Level-0 cells whose every live id is deleted (and that hold 2+) go as one cell code."""
        if len(del_ids) < 2:
            return np.sort(del_ids), np.zeros(0, U64)
        s = U64(self.p.grid.slot_bits)
        del_ids = np.sort(del_ids)
        cells, counts = np.unique(del_ids >> s, return_counts=True)
        cand = counts >= 2
        if not cand.any():
            return del_ids, np.zeros(0, U64)
        live = self.enc.state.ids()
        c = cells[cand]
        n_live = np.searchsorted(live, (c + U64(1)) << s) - np.searchsorted(live, c << s)
        full = c[n_live == counts[cand]]
        if len(full) == 0:
            return del_ids, np.zeros(0, U64)
        keep = ~np.isin(del_ids >> s, full)
        return del_ids[keep], full

    def _updates(self, d: Delta, ids: np.ndarray, vals: np.ndarray) -> int:
        """Fill d's UPDATE ops for rows whose codes moved past their thresholds; returns the count."""
        if len(ids) == 0:
            return 0
        p = self.p
        order = np.argsort(ids)
        ids, vals = ids[order], vals[order]
        old = self.enc.state.codes_of(ids)
        mask = np.zeros(len(ids), np.uint8)
        res = {}
        for a in ATTRS:
            c = p.comps(a)
            if not c:
                res[a] = np.zeros((0, len(ids)), p.dtype(a))
                continue
            new = p.quantize(a, vals[:, self.lay[a]], ids)
            r = new - old[a]                                  # wraps in the code dtype, as the format does
            if a is Attr.ROTATION and not p.lossless:
                moved = (new[0] != old[a][0]) | (np.abs(new[1:].astype(np.int64) - old[a][1:].astype(np.int64)).max(0)
                                                 > self.thr[a])
            else:
                moved = np.abs(new.astype(np.int64) - old[a].astype(np.int64)).max(0) > self.thr[a]
            r[:, ~moved] = 0
            res[a] = r
            mask |= np.where(moved, np.uint8(a.bit), np.uint8(0))
        keep = mask != 0
        d.update_ids, d.update_mask = ids[keep], mask[keep]
        for a in ATTRS:
            d.update[a] = np.ascontiguousarray(res[a][:, keep])
        return int(keep.sum())

    # -- commit -------------------------------------------------------------------------------------
    def accept(self, result: DiffResult) -> None:
        """Adopt ``result`` as the last scene (call after the encoder applied its delta)."""
        st = result.state
        # a private copy: the caller may reuse or edit its scene buffer in place (as_tensor shares memory)
        self.prev = {"x": st["x"].clone(), "sids": st["sids"], "keys": None if st["keys"] is None else st["keys"].clone()}
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
