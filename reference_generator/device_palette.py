"""Nearest SH palette entries on a torch device, for encoders of a scene that lives on a GPU.

``codec.palette.PaletteSearch`` searches on the host: two levels (coarse groups, then the entries of
a few of them), compiled loops on the CPU's cores. A step of a world at a million Gaussians adds up to
4,096 of them, and against 65,536 entries that search takes tens of milliseconds on a server CPU.
A GPU compares every row with every entry (one matrix product per block): 4,096 rows against
65,536 entries in under 2 ms on an H100, and the answer is exact rather than probed.
``DevicePaletteSearch`` has the host search's constructor and methods, so an
``Encoder(palette_search=...)`` uses it in its place: rows come in as numpy arrays and indices go
out as numpy arrays; the entries stay on the device.
"""
from __future__ import annotations

import functools

import numpy as np
import torch

BLOCK = 1 << 26   # distances computed at once (rows x entries): 256 MB of float32


class DevicePaletteSearch:
    """Exhaustive nearest-entry search over a palette held on ``device`` (the host search's interface:
    ``add``, ``relabel``, ``nearest``, ``len``)."""

    def __init__(self, entries: np.ndarray, index: np.ndarray, device="cpu"):
        entries = np.asarray(entries, np.float32)
        self.device = torch.device(device)
        self.dim = entries.shape[1] if entries.ndim == 2 else 0
        # each entry c as the row (c, -|c|^2 / 2): one matrix product with (x, 1) gives x.c - |c|^2 / 2,
        # largest for the nearest entry (|x - c|^2 = |x|^2 - 2 (x.c - |c|^2 / 2)), with no second pass
        # over the block to add the norms
        self.rows = torch.zeros((0, self.dim + 1), dtype=torch.float32, device=self.device)
        self.index = np.zeros(0, np.int64)
        self._index = torch.zeros(0, dtype=torch.int64, device=self.device)
        self._row = np.zeros(0, np.int64)     # palette index -> its row here, -1 where absent
        self.add(entries, index)

    @classmethod
    def on(cls, device):
        """The class bound to ``device``: what ``Encoder(palette_search=...)`` takes."""
        return functools.partial(cls, device=device)

    def add(self, entries: np.ndarray, index: np.ndarray) -> None:
        """Make entries (rows) findable under their (distinct) palette indices, replacing any at those
        indices in place: a frame's few new entries cost a few rows, not a pass over the palette."""
        entries = np.ascontiguousarray(entries, np.float32).reshape(-1, self.dim)
        index = np.asarray(index, np.int64).reshape(-1)
        if not len(index):
            return
        e = torch.from_numpy(entries).to(self.device)
        e = torch.cat([e, -0.5 * (e * e).sum(1, keepdim=True)], 1)
        top = int(index.max()) + 1
        if top > len(self._row):
            self._row = np.concatenate([self._row, np.full(top - len(self._row), -1, np.int64)])
        rows = self._row[index]
        old = np.flatnonzero(rows >= 0)
        if len(old):
            r, o = torch.from_numpy(rows[old]).to(self.device), torch.from_numpy(old).to(self.device)
            self.rows[r] = e[o]
        new = np.flatnonzero(rows < 0)
        if len(new):
            self.rows = torch.cat([self.rows, e if len(new) == len(index) else e[torch.from_numpy(new).to(self.device)]])
            self.index = np.concatenate([self.index, index[new]])
            self._index = torch.from_numpy(self.index).to(self.device)
            self._row[index[new]] = np.arange(len(self.index) - len(new), len(self.index))

    def relabel(self, index_map: np.ndarray) -> None:
        """Entry ``i`` becomes entry ``index_map[i]``; entries mapped to a negative index are dropped."""
        new = np.asarray(index_map, np.int64)[self.index]
        keep = np.flatnonzero(new >= 0)
        if len(keep) != len(self.index):
            self.rows = self.rows[torch.from_numpy(keep).to(self.device)]
        self.index = new[keep]
        self._index = torch.from_numpy(self.index).to(self.device)
        self._map()

    def _map(self) -> None:
        self._row = np.full(int(self.index.max()) + 1 if len(self.index) else 0, -1, np.int64)
        self._row[self.index] = np.arange(len(self.index))

    def __len__(self) -> int:
        return len(self.index)

    def nearest(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(palette index, squared distance) of the nearest entry of each row of ``x``."""
        x = np.ascontiguousarray(x, np.float32).reshape(-1, self.dim)
        n, k = len(x), len(self.index)
        if n == 0 or k == 0:
            return np.zeros(n, np.int64), np.full(n, np.inf, np.float32)
        xt = torch.from_numpy(x).to(self.device)
        xa = torch.cat([xt, torch.ones((n, 1), dtype=torch.float32, device=self.device)], 1)
        step_k = min(k, max(1, BLOCK // min(n, 4096)))
        step_n = max(1, BLOCK // step_k)
        best = torch.empty(n, dtype=torch.int64, device=self.device)
        dist = torch.empty(n, dtype=torch.float32, device=self.device)
        for r0 in range(0, n, step_n):
            xs = xa[r0:r0 + step_n]
            bs = torch.full((len(xs),), float("-inf"), device=self.device)
            bj = torch.zeros(len(xs), dtype=torch.int64, device=self.device)
            for c0 in range(0, k, step_k):
                v, j = (xs @ self.rows[c0:c0 + step_k].T).max(1)     # x.c - |c|^2 / 2, largest first
                better = v > bs
                bs, bj = torch.where(better, v, bs), torch.where(better, j + c0, bj)
            xn = xt[r0:r0 + step_n]
            best[r0:r0 + step_n], dist[r0:r0 + step_n] = bj, (xn * xn).sum(1) - 2 * bs
        out = torch.stack([self._index[best], dist.clamp_min(0).view(torch.int32).to(torch.int64)]).cpu().numpy()
        return out[0], out[1].astype(np.int32).view(np.float32)
