"""PlayCanvas's compressed PLY (``.compressed.ply``, SuperSplat's format) read.

A binary little-endian PLY with three elements::

    element chunk C        18 x float: min/max of x y z, of scale_0..2 (log), of r g b (optional)
    element vertex N       4 x uint:   packed_position, packed_rotation, packed_scale, packed_color
    element sh N           3K x uchar: f_rest_0 .. f_rest_{3K-1} (optional; K = 3, 8 or 15)

Vertex i takes its bounds from chunk i // 256 (so C >= ceil(N / 256)).

| word | bits (high to low) | value |
| --- | --- | --- |
| packed_position | 11 x, 10 y, 11 z | lerp(min, max, code / (2^bits - 1)) per axis |
| packed_scale | 11, 10, 11 | the same on the log scales |
| packed_rotation | 2 largest, 10 a, 10 b, 10 c | the other three components (w x y z order) as (code / 1023 - 0.5) * sqrt(2); the largest sqrt(1 - a^2 - b^2 - c^2) |
| packed_color | 8 r, 8 g, 8 b, 8 alpha | colour lerp(min_r, max_r, code / 255) (or code / 255 without colour bounds), f_dc = (c - 0.5) / SH_C0; opacity = logit(alpha / 255) |

An SH byte b reads as (n - 0.5) * 8 with n = 0 for b = 0, 1 for b = 255, else (b + 0.5) / 256.
Alpha codes 0 and 255 read as opacity logits of -inf and +inf, as the format means (and as
splat-transform reads them); ``codec.interop.clean`` decides what to do with them.
"""
from __future__ import annotations

import numpy as np

from ..attributes import SH_C0, Gaussians
from ..ply import read_ply_elements

CHUNK = 256
_BOUNDS = ["min_x", "min_y", "min_z", "max_x", "max_y", "max_z",
           "min_scale_x", "min_scale_y", "min_scale_z", "max_scale_x", "max_scale_y", "max_scale_z"]
_COLOUR = ["min_r", "min_g", "min_b", "max_r", "max_g", "max_b"]
_PACKED = ["packed_position", "packed_rotation", "packed_scale", "packed_color"]


def _unorm(word: np.ndarray, shift: int, bits: int) -> np.ndarray:
    return ((word >> np.uint32(shift)) & np.uint32((1 << bits) - 1)).astype(np.float32) / np.float32((1 << bits) - 1)


def _lerp(lo: np.ndarray, hi: np.ndarray, t: np.ndarray) -> np.ndarray:
    return lo * (1 - t) + hi * t


def _field(arr: np.ndarray, names: list[str], path: str, element: str) -> np.ndarray:
    have = arr.dtype.names or ()
    missing = [n for n in names if n not in have]
    if missing:
        raise ValueError(f"{path}: corrupt compressed PLY: {element} element lacks {', '.join(missing)}")
    return np.stack([arr[n].astype(np.float32) for n in names], axis=1)


def read_compressed_ply(path) -> Gaussians:
    """Gaussians (PLY conventions) from a PlayCanvas compressed PLY; ValueError naming what is wrong."""
    _, el = read_ply_elements(path)
    if "chunk" not in el or "vertex" not in el:
        raise ValueError(f"{path}: corrupt compressed PLY: needs 'chunk' and 'vertex' elements")
    vertex, chunk = el["vertex"], el["chunk"]
    n = len(vertex)
    if len(chunk) < -(-n // CHUNK):
        raise ValueError(f"{path}: corrupt compressed PLY: {len(chunk)} chunks for {n} vertices "
                         f"(needs {-(-n // CHUNK)})")
    names = vertex.dtype.names or ()
    if any(p not in names for p in _PACKED):
        raise ValueError(f"{path}: corrupt compressed PLY: vertex element lacks "
                         + ", ".join(p for p in _PACKED if p not in names))
    pp, pr, ps, pc = (vertex[p].astype(np.uint32) for p in _PACKED)
    b = _field(chunk, _BOUNDS, path, "chunk")[np.arange(n) // CHUNK]

    def triple(word, lo, hi):
        t = np.stack([_unorm(word, 21, 11), _unorm(word, 11, 10), _unorm(word, 0, 11)], axis=1)
        return _lerp(lo, hi, t)

    positions = triple(pp, b[:, 0:3], b[:, 3:6])
    scales = triple(ps, b[:, 6:9], b[:, 9:12])

    norm = np.float32(np.sqrt(2.0))
    abc = np.stack([_unorm(pr, 20, 10), _unorm(pr, 10, 10), _unorm(pr, 0, 10)], axis=1)
    abc = (abc - np.float32(0.5)) * norm
    largest = (pr >> np.uint32(30)).astype(np.int64)
    rest = np.sqrt(np.maximum(0.0, 1.0 - (abc * abc).sum(1))).astype(np.float32)
    rotations = np.empty((n, 4), np.float32)
    others = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])[largest]   # w x y z slots of a, b, c
    rows = np.arange(n)[:, None]
    rotations[rows, others] = abc
    rotations[np.arange(n), largest] = rest

    rgb = np.stack([_unorm(pc, 24, 8), _unorm(pc, 16, 8), _unorm(pc, 8, 8)], axis=1)
    if all(c in (chunk.dtype.names or ()) for c in _COLOUR):
        cb = _field(chunk, _COLOUR, path, "chunk")[np.arange(n) // CHUNK]
        rgb = _lerp(cb[:, 0:3], cb[:, 3:6], rgb)
    sh_dc = (rgb - np.float32(0.5)) / np.float32(SH_C0)
    alpha = _unorm(pc, 0, 8).astype(np.float64)
    with np.errstate(divide="ignore"):
        opacities = (np.log(alpha) - np.log1p(-alpha)).astype(np.float32)   # logit; codes 0 and 255 -> -inf, +inf

    sh_rest = np.zeros((n, 0), np.float32)
    if "sh" in el:
        sh = el["sh"]
        k3 = len(sh.dtype.names or ())
        if k3 not in (0, 9, 24, 45):
            raise ValueError(f"{path}: corrupt compressed PLY: {k3} SH columns (9, 24 or 45 expected)")
        if len(sh) != n:
            raise ValueError(f"{path}: corrupt compressed PLY: {len(sh)} SH rows for {n} vertices")
        if k3:
            names = [f"f_rest_{i}" for i in range(k3)]
            if any(c not in sh.dtype.names for c in names):
                raise ValueError(f"{path}: corrupt compressed PLY: SH columns are not f_rest_0..f_rest_{k3 - 1}")
            code = np.stack([sh[c] for c in names], axis=1).astype(np.float32)
            unit = np.where(code == 0, 0.0, np.where(code == 255, 1.0, (code + 0.5) / 256)).astype(np.float32)
            sh_rest = (unit - np.float32(0.5)) * np.float32(8.0)
    return Gaussians(positions, scales, rotations, opacities, sh_dc, sh_rest)
