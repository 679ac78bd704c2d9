"""SH palettes for encoders: vector quantization of SH_REST (SPEC.md 5.9).

A palette entry stands for the higher-order SH of many Gaussians, which then carry only the u16
index of their entry. Building a palette is k-means; coding a Gaussian is a nearest-entry search.
Both run in two levels (coarse clusters of about equal size, then the entries of a few of them),
k-means starts from k-means++ seeds and stops after 2 iterations, so a million 45-component
vectors against 65,536 entries take seconds. The distance loop is one compiled kernel
(``nearest_in``, on worker threads) that never holds a rows x entries matrix. Decoders need none
of this.
"""
from __future__ import annotations

import os

import numpy as np

from .jit import kernel
from .sections import parallel_map

COARSE_MAX = 256     # coarse clusters of the two-level build and search
COARSE_SAMPLE = 64   # the coarse k-means trains on this many rows per cluster
TRAIN_PER_ENTRY = 16  # the fine k-means trains on at most this many rows per entry
ITERS = 2            # Lloyd iterations of each level (after k-means++ seeds, more barely help)
SEED_ROWS = 4        # k-means++ draws each group's seeds from this many of its rows per seed,
SEED_MIN = 256       # and from at least this many (all of a small group's)
PROBES = 4           # coarse groups a search looks into (with 2, 8-25% more squared error than exhaustive)
PART = 1 << 14       # rows per call of the search kernel (calls run on worker threads)
PARTS = min(8, os.cpu_count() or 1)  # seeding work is split in this many runs of groups


@kernel(inline=True)
def _merge_nearest(a, lo, best, dist, i):
    """Merge the distances ``a`` of columns ``lo, lo + 1, ...`` into row ``i`` of ``best`` / ``dist``."""
    p = best.shape[1]
    t = dist[i, p - 1]
    for j in range(a.shape[0]):
        if a[j] < t:
            q = p - 1
            while q > 0 and dist[i, q - 1] > a[j]:
                dist[i, q] = dist[i, q - 1]
                best[i, q] = best[i, q - 1]
                q -= 1
            dist[i, q] = a[j]
            best[i, q] = lo + j
            t = dist[i, p - 1]


@kernel
def nearest_in(x, rows, group, start, ct, cn, best, dist):
    """For each row ``r = rows[i]`` of ``x``: merge into ``best[r]`` / ``dist[r]`` (ascending,
    ``best.shape[1]`` long, kept from earlier calls) the nearest columns ``j`` of ``ct`` (D, K) with
    ``start[g] <= j < start[g + 1]``, ``g = group[i]``. The distance is ``cn[j] - 2 x[r] . c_j``
    (``cn`` = squared norms): add ``|x[r]|^2`` for the squared distance. Up to four consecutive
    items of one group at a time against its run of columns (so grouped rows run fastest): each
    column value read serves four rows, twice the speed of one row at a time (a shorter block
    repeats its last row), and the inner loop runs over contiguous slices, so it vectorizes. Each
    distance is summed in the same order however the rows are blocked."""
    n, dim = rows.shape[0], x.shape[1]
    acc = np.empty((4, ct.shape[1]), np.float32)
    two = np.float32(2.0)
    i = 0
    while i < n:
        g = group[i]
        lo, hi = start[g], start[g + 1]
        last = i  # the block: items i..last (at most 4) of group g
        while last + 1 < n and last < i + 3 and group[last + 1] == g:
            last += 1
        r0, r1, r2, r3 = rows[i], rows[min(i + 1, last)], rows[min(i + 2, last)], rows[min(i + 3, last)]
        a0, a1, a2, a3 = acc[0, :hi - lo], acc[1, :hi - lo], acc[2, :hi - lo], acc[3, :hi - lo]
        a0[:] = cn[lo:hi]
        a1[:] = cn[lo:hi]
        a2[:] = cn[lo:hi]
        a3[:] = cn[lo:hi]
        for d in range(dim):
            w0, w1, w2, w3 = two * x[r0, d], two * x[r1, d], two * x[r2, d], two * x[r3, d]
            row = ct[d, lo:hi]
            for j in range(hi - lo):
                v = row[j]
                a0[j] -= w0 * v
                a1[j] -= w1 * v
                a2[j] -= w2 * v
                a3[j] -= w3 * v
        _merge_nearest(a0, lo, best, dist, r0)
        if last > i:
            _merge_nearest(a1, lo, best, dist, r1)
        if last > i + 1:
            _merge_nearest(a2, lo, best, dist, r2)
        if last > i + 2:
            _merge_nearest(a3, lo, best, dist, r3)
        i = last + 1


@kernel
def accumulate(x, label, w, sums, wsum):
    """sums[label[i]] += w[i] x[i]; wsum[label[i]] += w[i] (float64, in row order)."""
    n, dim = x.shape
    for i in range(n):
        j = label[i]
        wsum[j] += w[i]
        for d in range(dim):
            sums[j, d] += w[i] * x[i, d]


@kernel
def seed_plus(xt, w, start, share, u, out, g0, g1, o):
    """k-means++ seeds within groups ``g0 <= g < g1``: ``share[g]`` of the rows (columns of ``xt``,
    D x N, grouped) ``start[g]`` to ``start[g + 1]``, each drawn with probability proportional to
    ``w`` times its squared distance to the nearest seed so far (the first in proportion to
    ``w``), written to ``out`` from row ``o`` on; ``u``: one uniform draw in [0, 1) per row of
    ``out``. Random rows leave some clusters without a seed, and Lloyd's iterations never give
    them one."""
    dim = xt.shape[0]
    d2 = np.empty(xt.shape[1], np.float64)
    e = np.empty(xt.shape[1], np.float32)
    for g in range(g0, g1):
        lo, hi = start[g], start[g + 1]
        dg, eg, wg = d2[lo:hi], e[lo:hi], w[lo:hi]
        for i in range(hi - lo):
            dg[i] = wg[i]
        for s in range(share[g]):
            total = 0.0
            for i in range(hi - lo):
                total += dg[i]
            r = min(int(u[o] * (hi - lo)), hi - lo - 1)  # every row is on a seed already: any row
            if total > 0:
                target = u[o] * total
                acc = 0.0
                for i in range(hi - lo):
                    acc += dg[i]
                    if acc > target:
                        r = i
                        break
            eg[:] = 0
            for d in range(dim):
                row = xt[d, lo:hi]
                v = row[r]
                out[o, d] = v
                for i in range(hi - lo):
                    t = row[i] - v
                    eg[i] += t * t
            o += 1
            for i in range(hi - lo):
                dg[i] = min(dg[i], wg[i] * eg[i]) if s else wg[i] * eg[i]


def prepared(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What ``nearest_in`` reads of candidate rows: their transpose and squared norms (a palette's
    search keeps these, instead of recomputing megabytes for every frame)."""
    return np.ascontiguousarray(c.T), (c * c).sum(1, dtype=np.float32)


def _search(x: np.ndarray, group: np.ndarray, start: np.ndarray, c: np.ndarray, p: int = 1,
            best: np.ndarray | None = None, dist: np.ndarray | None = None,
            prep: tuple | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(n, p) nearest rows of ``c`` among each row's group (``nearest_in``), merged into ``best``/``dist``.
    ``prep``: ``prepared(c)``, if the caller keeps it."""
    n = len(x)
    if best is None:
        best, dist = np.full((n, p), -1, np.int64), np.full((n, p), np.inf, np.float32)
    if n and len(c):
        rows = np.arange(n)
        if len(start) > 2 and (group[1:] < group[:-1]).any():
            # rows of one group in a row: its entries stay in cache (a radix sort of narrow keys)
            rows = np.argsort(group.astype(np.uint16) if len(start) <= 1 << 16 else group, kind="stable")
            group = group[rows]
        ct, cn = prep if prep is not None else prepared(c)
        parts = [slice(a, a + PART) for a in range(0, n, PART)]  # the compiled kernel runs on every core
        parallel_map(lambda s: nearest_in(x, rows[s], group[s], start, ct, cn, best, dist), parts, x.nbytes)
    return best, dist


def _sq(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x)


def nearest(x: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest row of ``c`` for each row of ``x`` and its squared distance (exhaustive)."""
    x = np.ascontiguousarray(x, np.float32)
    c = np.ascontiguousarray(c, np.float32)
    if len(c) == 0:
        return np.zeros(len(x), np.int64), np.full(len(x), np.inf, np.float32)
    best, dist = _search(x, np.zeros(len(x), np.int64), np.array([0, len(c)]), c)
    return np.maximum(best[:, 0], 0), np.maximum(dist[:, 0] + _sq(x), 0)


def _firsts(group: np.ndarray, count: np.ndarray, order: np.ndarray) -> np.ndarray:
    """The first ``count[g]`` rows of each group ``g`` in ``order`` (grouped by ascending ``g``)."""
    order = order[np.argsort(group[order], kind="stable")]
    g = group[order]
    rank = np.arange(len(g)) - np.searchsorted(g, g)
    return order[rank < count[g]]


def kmeans(x: np.ndarray, group: np.ndarray, share: np.ndarray, iters: int, rng: np.random.Generator,
           w: np.ndarray | None = None) -> np.ndarray:
    """Weighted k-means in independent groups: ``share[g]`` centroids for the rows of group ``g``
    (at most its rows), returned grouped (``share`` rows of group 0, then of group 1, ...).

    Starts from k-means++ seeds (``seed_plus``). A centroid left without rows (its seed duplicated
    another) restarts at one of the rows that fit worst, so few entries are wasted."""
    n, dim = x.shape
    w = np.ones(n, np.float32) if w is None else w
    order = np.argsort(group, kind="stable")  # grouped rows: each search keeps one group's centroids in cache
    x, group, w = x[order], group[order], w[order]
    start = np.concatenate([[0], np.cumsum(share)]).astype(np.int64)
    # k-means++ seeds from SEED_ROWS rows per centroid (a small group's from all its rows), groups
    # shared among worker threads
    sample = np.minimum(np.maximum(SEED_ROWS * share, SEED_MIN), np.bincount(group, minlength=len(share)))
    rows = _firsts(group, sample, rng.permutation(n))
    xt, wr, rstart = np.ascontiguousarray(x[rows].T), w[rows], np.searchsorted(group[rows], np.arange(len(share) + 1))
    c, u = np.empty((start[-1], dim), np.float32), rng.random(start[-1])
    work = np.cumsum(share * np.diff(rstart))
    cut = np.unique(np.searchsorted(work, np.linspace(0, work[-1], PARTS + 1)[1:-1]))
    bounds = list(zip(np.concatenate([[0], cut]), np.concatenate([cut, [len(share)]])))
    parallel_map(lambda b: seed_plus(xt, wr, rstart, share, u, c, b[0], b[1], start[b[0]]), bounds, xt.nbytes)
    for _ in range(iters):
        best, dist = _search(x, group, start, c)
        label = best[:, 0]
        sums, wsum = np.zeros((len(c), dim)), np.zeros(len(c))
        accumulate(x, label, w, sums, wsum)
        full = wsum > 0
        c[full] = sums[full] / wsum[full, None]
        empty = np.flatnonzero(~full)
        if len(empty):  # restart at the worst-fitting rows that do not hold a centroid alone
            score = np.where(np.bincount(label, minlength=len(c))[label] > 1, w * (dist[:, 0] + _sq(x)), 0)
            m = min(n, 8 * len(empty) + 256)
            top = np.argpartition(-score, m - 1)[:m]
            top = top[np.argsort(-score[top], kind="stable")]
            top = top[score[top] > 0]
            eg = np.searchsorted(start, empty, "right") - 1  # the group of each empty centroid
            rows = _firsts(group, np.bincount(eg, minlength=len(share)), top)
            got = np.bincount(group[rows], minlength=len(share))
            c[empty[_firsts(eg, got, np.arange(len(empty)))]] = x[rows]
    return c


def coarse_level(x: np.ndarray, k: int, rng: np.random.Generator, w: np.ndarray | None = None) -> np.ndarray:
    """About ``k`` centroids whose groups (the rows nearest each) hold at most twice ``len(x) / k``
    rows of ``x``: k-means, then k-means again within every bigger group. A search costs the size
    of the groups it meets, and k-means alone leaves the dense middle of SH data in a few huge
    groups (4x the work on a captured scene)."""
    n = len(x)
    w = np.ones(n, np.float32) if w is None else w
    c = kmeans(x, np.zeros(n, np.int64), np.array([min(k, n)]), ITERS, rng, w)
    for _ in range(3):
        group = _search(x, np.zeros(n, np.int64), np.array([0, len(c)]), c)[0][:, 0]
        size = np.bincount(group, minlength=len(c))
        big = size > 2 * n / k
        if not big.any():
            break
        sub = np.cumsum(big) - 1  # the big groups, renumbered
        rows = np.flatnonzero(big[group])
        share = -(-size[big] * k // n)
        c = np.concatenate([c[~big], kmeans(x[rows], sub[group[rows]], share, ITERS, rng, w[rows])])
    return c


def _split(total: int, sizes: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """``total`` entries shared by groups in proportion to ``sizes``: at least 1 for a non-empty
    group, at most ``cap`` (its rows), largest remainders first."""
    sizes = np.asarray(sizes, np.float64)
    want = sizes * total / max(float(sizes.sum()), 1e-300)
    k = np.minimum(np.maximum(np.floor(want).astype(np.int64), (cap > 0).astype(np.int64)), cap)
    short = total - int(k.sum())
    if short > 0:
        room = np.flatnonzero(k < cap)
        for j in room[np.argsort(-(want[room] - k[room]), kind="stable")][:short]:
            k[j] += 1
    while k.sum() > total:  # the minimum of 1 per group can overshoot a tiny budget
        k[int(np.argmax(k))] -= 1
    return k


def build(x: np.ndarray, k: int, seed: int = 0, weights: np.ndarray | None = None, iters: int = ITERS) -> np.ndarray:
    """A palette of at most ``k`` entries for the rows of ``x`` (N, D), ``weights`` (N,) saying how
    much each row's error counts (entries are weighted means, and go where the weight is).

    Coarse k-means on a sample, then k-means within each coarse cluster with entries in proportion
    to its weight, trained on at most ``TRAIN_PER_ENTRY`` rows per entry (coding every row is the
    search's job). Training rows matter more than iterations: from k-means++ seeds a third and a
    fourth iteration gained under 1% of squared error, 4 rows per entry instead of 16 lost 6-19%."""
    x = np.ascontiguousarray(x, np.float32)
    n, dim = x.shape
    if not np.isfinite(x).all():
        raise ValueError("palette rows have NaN or infinite values")
    k = min(k, n)
    if k == 0:
        return np.zeros((0, dim), np.float32)
    w = np.ones(n, np.float32) if weights is None else np.asarray(weights, np.float32)
    rng = np.random.default_rng(seed)
    if n > TRAIN_PER_ENTRY * k:
        rows = np.sort(rng.choice(n, TRAIN_PER_ENTRY * k, replace=False))
        x, w, n = x[rows], w[rows], len(rows)
    k1 = int(min(COARSE_MAX, max(1, round(np.sqrt(k)))))
    sample = rng.choice(n, min(n, COARSE_SAMPLE * k1), replace=False)
    coarse = coarse_level(x[sample], k1, rng, w[sample])
    k1 = len(coarse)
    group = _search(x, np.zeros(n, np.int64), np.array([0, k1]), coarse)[0][:, 0]
    size = np.bincount(group, minlength=k1)
    share = _split(k, np.bincount(group, weights=w, minlength=k1), size)
    return kmeans(x, group, share, iters, rng, w)


class PaletteSearch:
    """Nearest-entry search over a palette: the entries are grouped under coarse centroids and a
    vector is compared with the entries of its ``probes`` nearest coarse groups."""

    def __init__(self, entries: np.ndarray, index: np.ndarray, seed: int = 0, probes: int = PROBES):
        entries = np.ascontiguousarray(entries, np.float32)
        self.dim = entries.shape[1] if entries.ndim == 2 else 0
        self.probes = probes
        self._rng = np.random.default_rng(seed)
        self.entries = np.zeros((0, self.dim), np.float32)
        self.index = np.zeros(0, np.int64)
        self.group = np.zeros(0, np.int64)
        self.coarse = np.zeros((0, self.dim), np.float32)
        self.add(entries, index)

    def add(self, entries: np.ndarray, index: np.ndarray) -> None:
        """Make entries (rows) findable under their palette indices (replacing any at those indices).
        New content far from the old entries crowds a few groups, and a search costs the size of the
        groups it meets: when a group grows past 4x the mean, the coarse level is built anew."""
        entries = np.ascontiguousarray(entries, np.float32).reshape(-1, self.dim)
        index = np.asarray(index, np.int64)
        keep = ~np.isin(self.index, index)
        self.entries = np.concatenate([self.entries[keep], entries])
        self.index = np.concatenate([self.index[keep], index])
        self.group = np.concatenate([self.group[keep], nearest(entries, self.coarse)[0]])
        n = len(self.index)
        if n and (len(self.coarse) == 0 or np.bincount(self.group).max() > 4 * n / len(self.coarse)):
            k1 = int(min(COARSE_MAX, max(1, round(np.sqrt(n)))))
            sample = self._rng.choice(n, min(n, COARSE_SAMPLE * k1), replace=False)
            self.coarse = coarse_level(self.entries[sample], k1, self._rng)
            self.group = nearest(self.entries, self.coarse)[0]
        order = np.argsort(self.group, kind="stable")
        self.entries, self.index, self.group = self.entries[order], self.index[order], self.group[order]
        self._regrouped()

    def _regrouped(self) -> None:
        self._start = np.searchsorted(self.group, np.arange(len(self.coarse) + 1))
        self._prep, self._coarse_prep = prepared(self.entries), prepared(self.coarse)

    def __len__(self) -> int:
        return len(self.index)

    def nearest(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(palette index, squared distance) of the nearest entry found for each row of ``x``."""
        x = np.ascontiguousarray(x, np.float32).reshape(-1, self.dim)
        n = len(x)
        if n == 0 or len(self.index) == 0:
            return np.zeros(n, np.int64), np.full(n, np.inf, np.float32)
        probes = min(self.probes, len(self.coarse))
        near = _search(x, np.zeros(n, np.int64), np.array([0, len(self.coarse)]), self.coarse, probes,
                       prep=self._coarse_prep)[0]
        best = dist = None
        for p in range(probes):
            best, dist = _search(x, near[:, p], self._start, self.entries, 1, best, dist, self._prep)
        best, dist = best[:, 0], dist[:, 0]
        lost = np.flatnonzero(best < 0)  # every probed group was empty: search them all
        dist = np.maximum(dist + _sq(x), 0)
        if len(lost):
            best[lost], dist[lost] = nearest(x[lost], self.entries)
        return self.index[best], dist

    def relabel(self, index_map: np.ndarray) -> None:
        """Entry ``i`` becomes entry ``index_map[i]``; entries mapped to a negative index are dropped."""
        new = np.asarray(index_map, np.int64)[self.index]
        keep = new >= 0
        self.entries, self.index, self.group = self.entries[keep], new[keep], self.group[keep]
        self._regrouped()
