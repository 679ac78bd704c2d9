"""GSD-HASH: the order-independent, incrementally updatable state digest (SPEC.md 7).

Each Gaussian hashes to two 32-bit lanes; the digest is the live count and the
sum of each lane mod 2^32. Adding, removing or changing a Gaussian moves the
sums by its own hash only, so a frame's digest costs O(changed Gaussians).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

M32 = 0xFFFFFFFF


def fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, on uint32 arrays (wrapping)."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def lane_constants(words: int) -> np.ndarray:
    """K[L, j] = fmix32((j+1)*0x9E3779B1 + L*0x7F4A7C15) | 1, shape (2, words), uint32."""
    j = np.arange(1, words + 1, dtype=np.uint64)
    base = np.stack([(j * 0x9E3779B1 + lane * 0x7F4A7C15) & M32 for lane in (0, 1)]).astype(np.uint32)
    return fmix32(base) | np.uint32(1)


@dataclass(frozen=True)
class Digest:
    count: int
    lane0: int
    lane1: int

    def __str__(self) -> str:
        return f"{self.count}:{self.lane0:08x}:{self.lane1:08x}"

    @classmethod
    def parse(cls, text: str) -> "Digest":
        count, a, b = text.split(":")
        return cls(int(count), int(a, 16), int(b, 16))


EMPTY = Digest(0, 0, 0)


def row_accumulators(ids: np.ndarray, planar_codes: list[np.ndarray]) -> np.ndarray:
    """(2, N) uint32 pre-finalization lane sums  sum_j w_j * K_L[j]  of N Gaussians.

    ``planar_codes`` are the (C, N) code arrays in attribute order; each component
    contributes its raw bit pattern zero-extended to 32 bits. The state keeps
    these so an UPDATE re-hashes a row from its changed components only.
    """
    n = len(ids)
    total = 2 + sum(c.shape[0] for c in planar_codes)
    k = lane_constants(total)
    ids = np.asarray(ids, dtype=np.uint64)
    lo = (ids & np.uint64(M32)).astype(np.uint32)
    hi = (ids >> np.uint64(32)).astype(np.uint32)
    acc = np.empty((2, n), np.uint32)
    for lane in (0, 1):
        acc[lane] = lo * k[lane, 0] + hi * k[lane, 1]
    j = 2
    for codes in planar_codes:
        _accumulate(acc, codes, k[:, j:j + codes.shape[0]])
        j += codes.shape[0]
    return acc


def _accumulate(acc: np.ndarray, codes: np.ndarray, k: np.ndarray, sign: int = 1) -> None:
    """acc[L] += sign * sum_c zext(codes[c]) * k[L, c]  (mod 2^32), in place."""
    u = codes.view(np.dtype(f"u{codes.dtype.itemsize}"))
    for comp in range(codes.shape[0]):
        w = u[comp].astype(np.uint32)
        if sign < 0:
            w = np.uint32(0) - w
        acc[0] += w * k[0, comp]
        acc[1] += w * k[1, comp]


def accumulator_change(old: np.ndarray, new: np.ndarray, k: np.ndarray) -> np.ndarray:
    """(2, N) change of the lane accumulators when one attribute's codes go from old to new."""
    acc = np.zeros((2, old.shape[1]), np.uint32)
    _accumulate(acc, new, k)
    _accumulate(acc, old, k, -1)
    return acc


def lane_sums(hashes: np.ndarray) -> tuple[int, int]:
    s = hashes.sum(axis=1, dtype=np.uint64) & np.uint64(M32)
    return int(s[0]), int(s[1])
