"""Integer attribute codes in the layout of a stream header (SPEC.md 2, 5).

Vectors carry codes, not floats: these helpers draw valid random codes and move them between
per-Gaussian tuples (the reference model's form) and planar arrays (the sections' form).
"""
from __future__ import annotations

import numpy as np

from .refmodel import Layout


def dtype_of(L: Layout, a: int) -> np.dtype:
    return np.dtype(("i" if L.signed(a) else "u") + str(L.width(a)))


def rest_limits(L: Layout) -> list[int]:
    k = (L.sh_degree + 1) ** 2 - 1
    from math import isqrt
    return [(1 << (L.quant.rest_bits[isqrt(j % k + 1) - 1] - 1)) - 1 for j in range(3 * k)]


def entry_dtype(L: Layout) -> np.dtype:
    """Dtype of SH_REST component codes of a palette entry (SPEC.md 5.9)."""
    return np.dtype("i" + str(L.entry_width))


def rand_entries(L: Layout, n: int, rng) -> np.ndarray:
    """Valid random palette entries, planar (3K, n), every entry non-zero."""
    m = np.array(rest_limits(L), np.int64)[:, None]
    arr = rng.integers(-m, m + 1, size=(L.rest_comps, n))
    arr[0, ~arr.any(axis=0)] = 1
    return arr.astype(entry_dtype(L))


def rand_codes(L: Layout, n: int, rng) -> list[np.ndarray]:
    """Valid random codes, planar (C, n) per attribute (with an SH palette, SH_REST indices below sh_palette)."""
    out = []
    for a in range(6):
        c = L.comps(a)
        if L.quant is None:
            v = (rng.normal(size=(c, n)) * (2.0 if a != 5 else 0.3)).astype(np.float32)
            out.append(v.view(np.uint32))
            continue
        q = L.quant
        if a == 0:
            lim = 1 << (q.position_bits + 1)
            arr = rng.integers(-lim, lim, size=(c, n))
        elif a == 2:
            arr = np.vstack([rng.integers(0, 4, size=(1, n)), rng.integers(0, 1 << q.rotation_bits, size=(3, n))])
        elif a == 5 and L.palette:
            arr = rng.integers(0, L.palette, size=(1, n))
        elif a == 5:
            m = np.array(rest_limits(L), np.int64)[:, None] if c else np.zeros((0, 1), np.int64)
            arr = rng.integers(-m, m + 1, size=(c, n)) if c else np.zeros((0, n), np.int64)
        else:
            bits = (None, q.scale_bits, None, q.opacity_bits, q.dc_bits)[a]
            arr = rng.integers(0, 1 << bits, size=(c, n))
        out.append(arr.astype(dtype_of(L, a)))
    return out


def per_gaussian(arrays: list[np.ndarray], j: int) -> tuple:
    return tuple(tuple(int(x) for x in arr[:, j]) for arr in arrays)


def planar(L: Layout, rows: list[tuple]) -> list[np.ndarray]:
    """Per-Gaussian code tuples -> planar arrays per attribute."""
    return [np.array([r[a] for r in rows], dtype=np.int64).reshape(len(rows), L.comps(a)).T.astype(dtype_of(L, a))
            for a in range(6)]
