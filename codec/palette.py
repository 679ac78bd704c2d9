"""SH palettes for encoders: vector quantization of SH_REST (SPEC.md 5.9).

A palette entry stands for the higher-order SH of many Gaussians, which then carry only the u16
index of their entry. Building a palette is k-means; coding a Gaussian is a nearest-entry search.
Both run in two levels (coarse clusters, then entries within a cluster), so a million
45-component vectors against 65,536 entries take seconds rather than hours: every step is a
matrix product over one coarse cluster at a time. Decoders need none of this.
"""
from __future__ import annotations

import numpy as np

COARSE_MAX = 256        # coarse clusters of the two-level search and build
CHUNK = 1 << 14         # rows per distance block (bounds the temporaries at CHUNK x entries)
SAMPLE_PER_CLUSTER = 64  # the coarse k-means trains on this many vectors per cluster


def nearest(x: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest row of ``c`` for each row of ``x`` and its squared distance (exhaustive)."""
    n = len(x)
    idx = np.zeros(n, np.int64)
    dist = np.full(n, np.inf, np.float32)
    if n == 0 or len(c) == 0:
        return idx, dist
    cn = (c * c).sum(1)
    for s in range(0, n, CHUNK):
        xs = x[s:s + CHUNK]
        d = cn[None, :] - 2.0 * (xs @ c.T)
        j = d.argmin(1)
        idx[s:s + CHUNK] = j
        dist[s:s + CHUNK] = np.maximum(d[np.arange(len(xs)), j] + (xs * xs).sum(1), 0)
    return idx, dist


def kmeans(x: np.ndarray, k: int, iters: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means from k distinct random rows; empty clusters restart at the worst-fit rows.

    Returns (k', D) centroids (k' = min(k, rows)) and each row's cluster.
    """
    n, dim = x.shape
    k = min(k, n)
    if k == 0:
        return np.zeros((0, dim), np.float32), np.zeros(n, np.int64)
    c = x[rng.choice(n, k, replace=False)].astype(np.float32)
    label = np.zeros(n, np.int64)
    for _ in range(iters):
        label, dist = nearest(x, c)
        count = np.bincount(label, minlength=k)
        sums = np.stack([np.bincount(label, weights=x[:, j], minlength=k) for j in range(dim)], axis=1)
        full = count > 0
        c[full] = (sums[full] / count[full, None]).astype(np.float32)
        empty = np.flatnonzero(~full)
        if len(empty):  # re-seed at the rows the current centroids fit worst
            c[empty] = x[np.argsort(dist)[::-1][:len(empty)]]
    label, _ = nearest(x, c)
    return c, label


def _split(total: int, sizes: np.ndarray) -> np.ndarray:
    """``total`` entries shared by groups in proportion to ``sizes``: at least 1 for a non-empty
    group, at most its size, largest remainders first."""
    sizes = np.asarray(sizes, np.int64)
    want = sizes * total / max(int(sizes.sum()), 1)
    k = np.minimum(np.maximum(np.floor(want).astype(np.int64), (sizes > 0).astype(np.int64)), sizes)
    short = total - int(k.sum())
    if short > 0:
        room = np.flatnonzero(k < sizes)
        for j in room[np.argsort(-(want[room] - k[room]), kind="stable")][:short]:
            k[j] += 1
    while k.sum() > total:  # the minimum of 1 per group can overshoot a tiny budget
        j = int(np.argmax(k))
        k[j] -= 1
    return k


def build(x: np.ndarray, k: int, seed: int = 0, iters: int = 8) -> np.ndarray:
    """A palette of at most ``k`` entries for the rows of ``x`` (N, D): coarse k-means on a sample,
    then k-means within each coarse cluster with entries in proportion to its rows."""
    x = np.ascontiguousarray(x, np.float32)
    n, dim = x.shape
    k = min(k, n)
    if k == 0:
        return np.zeros((0, dim), np.float32)
    rng = np.random.default_rng(seed)
    k1 = int(min(COARSE_MAX, max(1, round(np.sqrt(k)))))
    sample = x[rng.choice(n, min(n, SAMPLE_PER_CLUSTER * k1 * 4), replace=False)]
    coarse, _ = kmeans(sample, k1, iters, rng)
    group, _ = nearest(x, coarse)
    order = np.argsort(group, kind="stable")
    sizes = np.bincount(group, minlength=len(coarse))
    share = _split(k, sizes)
    out, start = [], 0
    for j, size in enumerate(sizes):
        rows = x[order[start:start + size]]
        start += size
        if share[j]:
            out.append(kmeans(rows, int(share[j]), iters, rng)[0])
    return np.concatenate(out) if out else np.zeros((0, dim), np.float32)


class PaletteSearch:
    """Nearest-entry search over a palette: the entries are grouped under coarse centroids and a
    vector is compared with the entries of its ``probes`` nearest coarse groups."""

    def __init__(self, entries: np.ndarray, index: np.ndarray, seed: int = 0, probes: int = 2):
        self.dim = entries.shape[1] if entries.ndim == 2 else 0
        self.probes = probes
        self.entries = np.zeros((0, self.dim), np.float32)
        self.index = np.zeros(0, np.int64)
        self.group = np.zeros(0, np.int64)
        rng = np.random.default_rng(seed)
        k1 = int(min(COARSE_MAX, max(1, round(np.sqrt(max(len(entries), 1)) / 2))))
        self.coarse = kmeans(np.ascontiguousarray(entries, np.float32), k1, 6, rng)[0] if len(entries) else \
            np.zeros((0, self.dim), np.float32)
        self.add(entries, index)

    def add(self, entries: np.ndarray, index: np.ndarray) -> None:
        """Make entries (rows) findable under their palette indices (replacing any at those indices)."""
        entries = np.ascontiguousarray(entries, np.float32).reshape(-1, self.dim)
        index = np.asarray(index, np.int64)
        if len(self.coarse) == 0 and len(entries):
            self.coarse = entries[:1].copy()
        keep = ~np.isin(self.index, index)
        self.entries = np.concatenate([self.entries[keep], entries])
        self.index = np.concatenate([self.index[keep], index])
        self.group = np.concatenate([self.group[keep], nearest(entries, self.coarse)[0]])
        order = np.argsort(self.group, kind="stable")
        self.entries, self.index, self.group = self.entries[order], self.index[order], self.group[order]
        self._starts = np.searchsorted(self.group, np.arange(len(self.coarse) + 1))

    def __len__(self) -> int:
        return len(self.index)

    def nearest(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(palette index, squared distance) of the nearest entry found for each row of ``x``."""
        x = np.ascontiguousarray(x, np.float32).reshape(-1, self.dim)
        n = len(x)
        best = np.zeros(n, np.int64)
        dist = np.full(n, np.inf, np.float32)
        if n == 0 or len(self.index) == 0:
            return best, dist
        # The probes nearest coarse centroids of every row (a small exhaustive product).
        cn = (self.coarse * self.coarse).sum(1)
        probes = min(self.probes, len(self.coarse))
        near = np.empty((n, probes), np.int64)
        for s in range(0, n, CHUNK):
            d = cn[None, :] - 2.0 * (x[s:s + CHUNK] @ self.coarse.T)
            near[s:s + CHUNK] = np.argpartition(d, probes - 1, axis=1)[:, :probes] if probes < d.shape[1] \
                else np.argsort(d, axis=1)[:, :probes]
        for p in range(probes):
            order = np.argsort(near[:, p], kind="stable")
            bounds = np.searchsorted(near[order, p], np.arange(len(self.coarse) + 1))
            for j in range(len(self.coarse)):
                rows = order[bounds[j]:bounds[j + 1]]
                lo, hi = self._starts[j], self._starts[j + 1]
                if len(rows) == 0 or lo == hi:
                    continue
                i, d = nearest(x[rows], self.entries[lo:hi])
                better = d < dist[rows]
                dist[rows[better]] = d[better]
                best[rows[better]] = self.index[lo + i[better]]
        lost = np.flatnonzero(~np.isfinite(dist))  # every probed group was empty: search them all
        if len(lost):
            i, d = nearest(x[lost], self.entries)
            best[lost], dist[lost] = self.index[i], d
        return best, dist
