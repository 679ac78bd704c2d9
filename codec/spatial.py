"""Spatial ids: a Morton-coded grid cell plus a slot within the cell (SPEC.md 3)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ErrorCode, GsdError
from .jit import kernel

U64 = np.uint64


@dataclass(frozen=True)
class Grid:
    """The grid spatial ids live on: ``2**cell_bits`` cells per axis of ``cell_size`` from ``origin``."""

    origin: tuple[float, float, float] = (-2048.0, -2048.0, -2048.0)
    cell_size: float = 0.25
    cell_bits: int = 14
    slot_bits: int = 16

    def __post_init__(self):
        object.__setattr__(self, "origin", tuple(float(np.float32(v)) for v in self.origin))
        object.__setattr__(self, "cell_size", float(np.float32(self.cell_size)))
        problem = self.problem()
        if problem:
            raise GsdError(ErrorCode.BAD_HEADER, problem)

    def problem(self) -> str | None:
        if not (1 <= self.cell_bits <= 20):
            return f"cell_bits {self.cell_bits} not in 1..20"
        if not (0 <= self.slot_bits <= 32):
            return f"slot_bits {self.slot_bits} not in 0..32"
        if 3 * self.cell_bits + self.slot_bits > 63:
            return "3*cell_bits + slot_bits exceeds 63"
        if not (np.isfinite(self.cell_size) and self.cell_size > 0):
            return "cell_size must be finite and > 0"
        if not all(np.isfinite(self.origin)):
            return "grid origin must be finite"
        return None

    @property
    def id_bits(self) -> int:
        return 3 * self.cell_bits + self.slot_bits

    @property
    def id_limit(self) -> int:
        """Every valid id is below this."""
        return 1 << self.id_bits

    @classmethod
    def fit(cls, positions: np.ndarray, cell_bits: int = 10, slot_bits: int | None = None,
            margin: float = 0.25) -> "Grid":
        """A grid covering the bounding box of ``positions`` with ``margin`` of room on every side.

        Coarse cells (1024 per axis by default) keep the ids of nearby Gaussians close, so
        sorted id lists delta-code small; ``slot_bits`` defaults to the fullest cell's need
        with 4x headroom for Gaussians born there later.
        """
        if len(positions) == 0:
            return cls(cell_bits=cell_bits, slot_bits=slot_bits if slot_bits is not None else 16)
        lo, hi = positions.min(0).astype(np.float64), positions.max(0).astype(np.float64)
        extent = float(max((hi - lo).max(), 1e-3)) * (1 + 2 * margin)
        centre = (lo + hi) / 2
        cell = extent / (1 << cell_bits)
        cell = float(2.0 ** np.ceil(np.log2(cell)))  # a power of two keeps cell origins exact in float32
        origin = np.floor((centre - cell * (1 << (cell_bits - 1))) / cell) * cell
        if slot_bits is None:
            probe = cls(tuple(origin), cell, cell_bits, 0)
            cells = np.sort(probe.cells_of(positions))
            edges = np.flatnonzero(np.r_[True, cells[1:] != cells[:-1], True])
            fullest = int(np.diff(edges).max())
            slot_bits = int(min(max(np.ceil(np.log2(fullest + 1)) + 2, 4), 63 - 3 * cell_bits))
        return cls(tuple(origin), cell, cell_bits, slot_bits)

    # -- cells ---------------------------------------------------------------
    def cell_coords(self, positions: np.ndarray) -> np.ndarray:
        """(N,3) uint64 cell coordinates of positions, clamped to the grid."""
        c = np.floor((positions.astype(np.float64) - np.asarray(self.origin)) / self.cell_size)
        return np.clip(c, 0, (1 << self.cell_bits) - 1).astype(U64)

    def cells_of(self, positions: np.ndarray) -> np.ndarray:
        return morton_encode(self.cell_coords(positions), self.cell_bits)

    def cell_origin_of_ids(self, ids: np.ndarray) -> np.ndarray:
        """(N,3) float64 origin of each id's birth cell."""
        return self.positions_of(ids, np.zeros((3, len(ids)), np.uint32), 0.0, np.float64)

    def positions_of(self, ids: np.ndarray, codes: np.ndarray, step: float, dtype=np.float32) -> np.ndarray:
        """(N,3) positions of SPEC.md 5.2: birth cell origin + code x step per axis, in float64,
        rounded once to ``dtype``. One pass over the ids, no (N,3) temporaries."""
        ids = np.ascontiguousarray(ids, U64)
        out = np.empty((len(ids), 3), dtype)
        _positions(ids, np.ascontiguousarray(codes), U64(self.slot_bits), np.asarray(self.origin, np.float64),
                   float(self.cell_size), float(step), out)
        return out

    def cell_range(self, codes: np.ndarray, level: int) -> tuple[np.ndarray, np.ndarray]:
        """First and last id (inclusive) covered by cells of an octree ``level``."""
        shift = U64(self.slot_bits + 3 * level)
        first = codes.astype(U64) << shift
        return first, first + ((U64(1) << shift) - U64(1))


@kernel
def unspread(x):
    """Every third bit of x, packed: one axis of a Morton code (the inverse of spread)."""
    x = x & np.uint64(0x1249249249249249)
    x = (x | (x >> np.uint64(2))) & np.uint64(0x10C30C30C30C30C3)
    x = (x | (x >> np.uint64(4))) & np.uint64(0x100F00F00F00F00F)
    x = (x | (x >> np.uint64(8))) & np.uint64(0x1F0000FF0000FF)
    x = (x | (x >> np.uint64(16))) & np.uint64(0x1F00000000FFFF)
    x = (x | (x >> np.uint64(32))) & np.uint64(0x1FFFFF)
    return x


@kernel(inline=True)
def spread(x):
    """The low 21 bits of x with two zero bits after each: one axis of a Morton code (unspread's inverse)."""
    x = x & np.uint64(0x1FFFFF)
    x = (x | (x << np.uint64(32))) & np.uint64(0x1F00000000FFFF)
    x = (x | (x << np.uint64(16))) & np.uint64(0x1F0000FF0000FF)
    x = (x | (x << np.uint64(8))) & np.uint64(0x100F00F00F00F00F)
    x = (x | (x << np.uint64(4))) & np.uint64(0x10C30C30C30C30C3)
    x = (x | (x << np.uint64(2))) & np.uint64(0x1249249249249249)
    return x


@kernel(inline=True)
def interleave(x, y, z):
    """The Morton code of three coordinates (SPEC.md 3.2): bit 3i = x_i, 3i + 1 = y_i, 3i + 2 = z_i
    (uint64 scalars, or whole arrays through ``py_func``)."""
    return spread(x) | (spread(y) << np.uint64(1)) | (spread(z) << np.uint64(2))


@kernel
def _unspread_all(v, out):
    for i in range(v.shape[0]):
        out[i] = unspread(v[i])


@kernel
def _positions(ids, codes, shift, origin, cell, step, out):
    for i in range(ids.shape[0]):
        c = ids[i] >> shift
        for a in range(3):
            # cell coordinate * cell size is exact (a power of two), as is code * step: one rounding
            out[i, a] = (origin[a] + np.float64(unspread(c >> np.uint64(a))) * cell) + np.float64(codes[a, i]) * step


def _compact(v: np.ndarray, bits: int) -> np.ndarray:
    v = np.ascontiguousarray(v, U64).reshape(-1)
    out = np.empty(len(v), U64)
    _unspread_all(v, out)
    return out


def morton_encode(coords: np.ndarray, bits: int) -> np.ndarray:
    """Interleave (N,3) cell coordinates: bit 3i = x_i, 3i+1 = y_i, 3i+2 = z_i."""
    c = np.asarray(coords, U64).reshape(-1, 3)
    # interleave's Python body over whole arrays: each spread runs compiled over one axis, 3x faster at
    # 1M than interleave compiled for arrays
    return interleave.py_func(c[:, 0], c[:, 1], c[:, 2])


def morton_decode(codes: np.ndarray, bits: int) -> np.ndarray:
    codes = np.asarray(codes, dtype=U64)
    return np.stack([_compact(codes >> U64(k), bits) for k in range(3)], axis=1)


def assign_slots(cells: np.ndarray, next_slot_of_cell, key: np.ndarray | None = None) -> np.ndarray:
    """Slots for new Gaussians born in ``cells``: consecutive per cell from the cell's next free slot,
    in input order within a cell, or in the order of ``key`` (sorting by ``key`` must sort the cells:
    a placement code, whose high bits are the cell).

    ``next_slot_of_cell(unique_cells) -> uint64 array`` gives the first slot above any slot in use.
    """
    n = len(cells)
    if n == 0:
        return np.zeros(0, U64)
    order = np.argsort(cells if key is None else key, kind="stable")
    sorted_cells = cells[order]
    starts = np.flatnonzero(np.r_[True, sorted_cells[1:] != sorted_cells[:-1]])
    uniq = sorted_cells[starts]
    rank = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    base = np.asarray(next_slot_of_cell(uniq), dtype=U64)
    slots = np.empty(n, U64)
    slots[order] = np.repeat(base, np.diff(np.r_[starts, n])) + rank.astype(U64)
    return slots


# ------------------------------------------------------------------------------ implicit ids
# An ADD_IMPLICIT block (SPEC.md 6.1) sends each Gaussian's placement code, the Morton code of its
# position in steps across the whole grid: (morton(cell) << 3pb) | morton_pb(position code). Its
# ids follow: the cell, and the Gaussian's rank among the block's Gaussians in that cell.
PLACED, TOO_LARGE, DESCENDING, CELL_FULL = 0, 1, 2, 3


def _demorton_table() -> np.ndarray:
    """12 interleaved Morton bits -> their 4 x, 4 y and 4 z bits at bits 0, 8 and 16."""
    m = np.arange(4096, dtype=np.uint32)
    out = np.zeros(4096, np.uint32)
    for k in range(4):
        for a in range(3):
            out |= ((m >> np.uint32(3 * k + a)) & np.uint32(1)) << np.uint32(8 * a + k)
    return out


_DEMORTON12 = _demorton_table()


@kernel
def _implicit_ids(q, shift, slot_bits, bits, ids, codes):
    """ids and (3, n) position codes of placements q (SPEC.md 6.1, implicit_ids); a status code."""
    low = (np.uint64(1) << shift) - np.uint64(1)
    full = np.uint64(1) << slot_bits
    first = 0
    prev = np.uint64(0)
    for i in range(q.shape[0]):
        v = q[i]
        if bits < 64 and v >> np.uint64(bits) != np.uint64(0):
            return TOO_LARGE
        if i > 0 and v < prev:
            return DESCENDING
        cell = v >> shift
        if i == 0 or cell != prev >> shift:
            first = i
        rank = np.uint64(i - first)
        if rank >= full:
            return CELL_FULL
        ids[i] = (cell << slot_bits) | rank
        m = v & low
        x = y = z = np.uint64(0)
        k = np.uint64(0)
        while m != np.uint64(0):  # 12 Morton bits (4 per axis) per table lookup
            t = np.uint64(_DEMORTON12[m & np.uint64(0xFFF)])
            x |= (t & np.uint64(0xF)) << k
            y |= ((t >> np.uint64(8)) & np.uint64(0xF)) << k
            z |= (t >> np.uint64(16)) << k
            m >>= np.uint64(12)
            k += np.uint64(4)
        codes[0, i] = x
        codes[1, i] = y
        codes[2, i] = z
        prev = v
    return PLACED


@kernel
def _placements(ids, codes, shift, slot_bits, top, out, ok):
    """Placement codes of ascending ids, and per id whether its cell's ids here can go implicitly:
    every position code of the cell fits it, and the slots are 0, 1, ... in placement order (what
    _implicit_ids gives back for those cells). Returns how many ids can."""
    slot_mask = (np.uint64(1) << slot_bits) - np.uint64(1)
    n = ids.shape[0]
    count = 0
    start = 0
    good = True
    c = np.empty(3, np.uint64)  # the position codes as a placement holds them (an axis out of range: 0)
    for i in range(n + 1):
        if i == n or (i > 0 and ids[i] >> slot_bits != ids[i - 1] >> slot_bits):   # a cell's run ends
            for j in range(start, i):
                ok[j] = good
            if good:
                count += i - start
            if i == n:
                break
            start = i
            good = True
        for a in range(3):
            inside = 0 <= codes[a, i] < top
            c[a] = np.uint64(codes[a, i]) if inside else np.uint64(0)
            good = good and inside
        v = ((ids[i] >> slot_bits) << shift) | interleave(c[0], c[1], c[2])
        if ids[i] & slot_mask != np.uint64(i - start) or (i > start and v < out[i - 1]):
            good = False
        out[i] = v
    return count


def implicit_ids(q: np.ndarray, grid: Grid, position_bits: int, code_dtype) -> tuple[np.ndarray, np.ndarray]:
    """The ids and (3, n) POSITION codes an ADD_IMPLICIT block's placements ``q`` stand for
    (ascending, as the block's ids); BAD_VALUE for placements out of order, too large, or more in
    one cell than it has slots."""
    q = np.ascontiguousarray(q, U64)
    ids = np.empty(len(q), U64)
    codes = np.empty((3, len(q)), code_dtype)
    bits = 3 * (grid.cell_bits + position_bits)
    status = _implicit_ids(q, U64(3 * position_bits), U64(grid.slot_bits), bits, ids, codes)
    if status == TOO_LARGE:
        raise GsdError(ErrorCode.BAD_VALUE, f"ADD_IMPLICIT placement outside the grid's {bits} bits")
    if status == DESCENDING:
        raise GsdError(ErrorCode.BAD_VALUE, "ADD_IMPLICIT placements not in ascending order")
    if status == CELL_FULL:
        raise GsdError(ErrorCode.BAD_VALUE,
                       f"ADD_IMPLICIT: more Gaussians in a cell than its {1 << grid.slot_bits} slots")
    return ids, codes


def placements(ids: np.ndarray, codes: np.ndarray, grid: Grid,
               position_bits: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Placement codes of ascending ``ids`` with POSITION ``codes``, the mask of those whose cells can
    go in an ADD_IMPLICIT block (implicit_ids of the masked placements gives back exactly those ids
    and codes), and its count."""
    out = np.empty(len(ids), U64)
    ok = np.empty(len(ids), np.bool_)
    n = _placements(np.ascontiguousarray(ids, U64), np.ascontiguousarray(codes), U64(3 * position_bits),
                    U64(grid.slot_bits), np.int64(1 << position_bits), out, ok)
    return out, ok, int(n)
