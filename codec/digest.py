"""GSD-HASH: the order-independent, incrementally updatable state digest (SPEC.md 7).

Each Gaussian hashes to two 32-bit lanes; the digest is the live count and the
sum of each lane mod 2^32. Adding, removing or changing a Gaussian moves the
sums by its own hash only, so a frame's digest costs O(changed Gaussians).

A Gaussian's lane value before finalization, its *accumulator* sum_j w_j * K_L[j], is kept per
slot by the state, so an UPDATE re-hashes a row from its changed components only.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .jit import kernel
from .sections import column_spans, parallel_map

M32 = 0xFFFFFFFF
_M = np.uint64(M32)
_C1, _C2 = np.uint64(0x85EBCA6B), np.uint64(0xC2B2AE35)
_S13, _S16, _S32 = np.uint64(13), np.uint64(16), np.uint64(32)
_TWO32 = np.uint64(1 << 32)


def fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, on uint32 arrays (wrapping)."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


@functools.lru_cache(maxsize=None)
def lane_constants(words: int) -> np.ndarray:
    """K[L, j] = fmix32((j+1)*0x9E3779B1 + L*0x7F4A7C15) | 1, shape (2, words), uint32 (read-only, cached)."""
    j = np.arange(1, words + 1, dtype=np.uint64)
    base = np.stack([(j * 0x9E3779B1 + lane * 0x7F4A7C15) & M32 for lane in (0, 1)]).astype(np.uint32)
    k = fmix32(base) | np.uint32(1)
    k.flags.writeable = False
    return k


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


# ------------------------------------------------------------------------------------------ loops
@kernel
def fmix(h):
    """fmix32 of one uint64 holding a 32-bit value."""
    h = h ^ (h >> _S16)
    h = (h * _C1) & _M
    h = h ^ (h >> _S13)
    h = (h * _C2) & _M
    return h ^ (h >> _S16)


@kernel
def id_accumulators(ids, k, acc, start, stop):
    """acc[L, i] = lo32(id_i) * K[L, 0] + hi32(id_i) * K[L, 1]  (mod 2^32), for i in start..stop."""
    k00, k01 = np.uint64(k[0, 0]), np.uint64(k[0, 1])
    k10, k11 = np.uint64(k[1, 0]), np.uint64(k[1, 1])
    for i in range(start, stop):
        lo = ids[i] & _M
        hi = ids[i] >> _S32
        acc[0, i] = (lo * k00 + hi * k01) & _M
        acc[1, i] = (lo * k10 + hi * k11) & _M


_WORDS_BLOCK = 256


@kernel
def add_words(acc, codes, k0, k1, start, stop):
    """acc[L, i] += sum_c zext(codes[c, i]) * kL[c]  (mod 2^32) for i in start..stop; ``codes`` is an
    unsigned view.

    Columns go in blocks whose sums stay in 64-bit scratch (wrapping mod 2^64 keeps them right mod
    2^32) while the components are added one after another: loops the compiler vectorizes, three
    times as fast as reducing and storing the 32-bit words after every component."""
    s0 = np.empty(_WORDS_BLOCK, np.uint64)
    s1 = np.empty(_WORDS_BLOCK, np.uint64)
    for b0 in range(start, stop, _WORDS_BLOCK):
        e = min(stop, b0 + _WORDS_BLOCK)
        for i in range(b0, e):
            s0[i - b0] = np.uint64(acc[0, i])
            s1[i - b0] = np.uint64(acc[1, i])
        for c in range(codes.shape[0]):
            a, b = np.uint64(k0[c]), np.uint64(k1[c])
            for i in range(b0, e):
                w = np.uint64(codes[c, i])
                s0[i - b0] += w * a
                s1[i - b0] += w * b
        for i in range(b0, e):
            acc[0, i] = s0[i - b0] & _M
            acc[1, i] = s1[i - b0] & _M


@kernel
def lane_sums_at(acc, slots):
    """(sum fmix32(acc[0, s]), sum fmix32(acc[1, s])) mod 2^32 over the columns ``slots``."""
    s0 = np.uint64(0)
    s1 = np.uint64(0)
    for j in range(slots.shape[0]):
        s = slots[j]
        s0 += fmix(np.uint64(acc[0, s]))
        s1 += fmix(np.uint64(acc[1, s]))
    return s0 & _M, s1 & _M


@kernel
def lane_sums_all(acc):
    """Lane sums of fmix32 over every column of ``acc``."""
    s0 = np.uint64(0)
    s1 = np.uint64(0)
    for i in range(acc.shape[1]):
        s0 += fmix(np.uint64(acc[0, i]))
        s1 += fmix(np.uint64(acc[1, i]))
    return s0 & _M, s1 & _M


# ------------------------------------------------------------------------------------------ arrays
def unsigned(codes: np.ndarray) -> np.ndarray:
    """The raw bit pattern of codes as an unsigned array of the same width (a view)."""
    return codes if codes.dtype.kind == "u" else codes.view(np.dtype(f"u{codes.dtype.itemsize}"))


def row_accumulators(ids: np.ndarray, planar_codes: list[np.ndarray]) -> np.ndarray:
    """(2, N) uint32 accumulators of N Gaussians from their ids and (C, N) codes in attribute order
    (ranges of columns on the section workers for a large N)."""
    total = 2 + sum(c.shape[0] for c in planar_codes)
    k = lane_constants(total)
    acc = np.empty((2, len(ids)), np.uint32)
    ids = np.ascontiguousarray(ids, np.uint64)
    words = []
    j = 2
    for codes in planar_codes:
        c = codes.shape[0]
        if c:
            words.append((unsigned(codes), k[0, j:j + c], k[1, j:j + c]))
        j += c

    def span(s):
        id_accumulators(ids, k, acc, *s)
        for w in words:
            add_words(acc, *w, *s)
    n = len(ids)
    parallel_map(span, column_spans(n), n * total)
    return acc


def lane_sums(acc: np.ndarray) -> tuple[int, int]:
    """Lane sums mod 2^32 of the finalized accumulators of every column."""
    s0, s1 = lane_sums_all(acc)
    return int(s0), int(s1)
