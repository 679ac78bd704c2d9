"""The reference world: a procedural, causal, action-conditioned scene of Gaussians, in torch.

An endless landscape is cut into square **chunks** of ``2^chunk_level`` grid cells a side. A
chunk's content is a pure function of (world seed, chunk coordinates): terrain with gentle
height, trees (trunk + swaying crown), rocks, ponds and houses with a door, all built from
surface-aligned Gaussians whose statistics follow ``codec/synthetic.py`` (flat along the
surface normal, log-normal sizes tied to the sampling density, mostly opaque, per-object
colour with per-Gaussian noise, small correlated higher-order SH).

Each step (SPEC.md 6 semantics):

* **ADD** -- chunks that come within ``view_radius`` of the camera are generated, nearest
  (and most in view) first, at most ``max_chunk_loads`` a step, while the scene stays within
  ``max_gaussians``. A chunk's rows are shuffled and stream in at most ``max_add_per_step``
  a step, so every step's delta (and codec time) is bounded and a new area appears coarse to
  fine. Ids are spatial ids (SPEC.md 3.3): the birth cell of each Gaussian, slots consecutive
  per cell in row order -- exactly what ``Encoder.assign_ids`` gives, computed here on the
  device. The grid is aligned so a chunk owns whole octree cells of level ``chunk_level``:
  its cells are empty when it is born, so slots start at 0. Chunks within ``view_radius +
  prefetch_margin`` are generated ahead on a worker thread (its own CUDA stream on a GPU), so a
  step that loads a chunk only finishes it (today's sway and ripple, remembered door angles,
  ids): a chunk's content depends on (seed, chunk) alone, so the stream is the same whether a
  chunk was generated ahead or when needed. The worker shares the interpreter with the caller, so
  it holds still while the caller turns the step into a frame: from the end of ``step`` until
  ``resume_ahead()`` (or ``prefetch_pause_ms`` later), pausing between its operations.
* **DELETE_CELLS** -- chunks farther than ``view_radius + retire_margin`` are retired by their
  level-``chunk_level`` cells: a few cell codes instead of thousands of ids.
* **UPDATE** -- crowns within ``dyn_radius`` sway in the wind (POSITION), pond surfaces ripple
  and shimmer (POSITION + SH_DC), and a door opened or closed by ``interact`` swings about its
  hinge over ``door_steps`` steps (rigid rotation: POSITION + ROTATION; SPEC 1.0 has no rigid
  groups, so it is one UPDATE per door Gaussian). Door states persist when their house is
  unloaded and reloaded. Only Gaussians live before the step are updated (an id is never
  ADDed and UPDATEd in one frame, nor UPDATEd after its cell was deleted).

Deterministic for a seed on a given device: every random draw comes from a generator seeded by
(seed, chunk), the layout from Python's ``random`` with the same seed, and the hot paths are
vectorized torch (no per-Gaussian Python loops; Python only loops over chunks and objects).
"""
from __future__ import annotations

import math
import random
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import torch

from codec import SH_C0, Attr, Grid, Profile
from codec.attributes import rest_coeffs

from .actions import Action, Idle, Interact, Jump, Look, Move, Pose, Strafe, Turn
from .device_codes import CAPTURE_LOCK
from .protocol import Camera, StepOutput, UpdateGroup, attr_layout, n_floats

F32 = torch.float32
I64 = torch.int64
MASK64 = (1 << 64) - 1


# ----------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class WorldConfig:
    """Everything but the seed. The defaults give ~200k live Gaussians at SH degree 3."""
    sh_degree: int = 3
    profile: str = "compact"
    ranked_ids: bool = False        # deltas' UPDATE and DELETE ids as ranks among the live ids (format 1.2)
    channel_filter: bool = False    # colour sections may be stored as channel differences (format 1.3)
    gap_code: bool = False          # ranks may be stored as exp-Golomb codes of their gaps (format 1.4)
    cell_size: float = 1.0          # metres; position step is cell_size / 2^position_bits
    cell_bits: int = 14             # 2^14 cells a side: a 16 km square world
    slot_bits: int = 20
    chunk_level: int = 4            # chunk edge = 2^4 cells = 16 m; DELETE_CELLS level
    view_radius: float = 48.0       # chunks whose centre is this close get loaded
    retire_margin: float = 16.0     # ... and retired beyond view_radius + this (hysteresis)
    target_live: int = 200_000      # Gaussians in range at steady state (sets the density)
    max_gaussians: int = 1_000_000  # hard budget: the stream header's max_gaussians
    max_chunk_loads: int = 2        # chunks generated per step
    max_add_per_step: int = 4096    # Gaussians ADDed per step: a new chunk streams in over several steps
    prefetch_margin: float = 16.0   # chunks this far beyond view_radius are generated ahead on a worker thread (0: off)
    prefetch_pause_ms: float = 20.0  # ... and holds still after a step this long, or until resume_ahead()
    dyn_radius: float = 10.0        # foliage and water move only this close to the camera
    dt: float = 0.04                # seconds per step (25 steps/s)
    eye_height: float = 1.7
    gravity: float = 9.81
    door_steps: int = 12            # steps for a door to swing fully open or closed
    door_open_degrees: float = 90.0
    sway_amplitude: float = 0.05    # metres at the top of a crown
    sway_hz: float = 0.35
    ripple_amplitude: float = 0.012
    ripple_hz: float = 0.8

    def __post_init__(self):
        if not 1 <= self.chunk_level < self.cell_bits:
            raise ValueError("chunk_level must be in [1, cell_bits)")
        if self.target_live <= 0 or self.max_gaussians <= 0:
            raise ValueError("target_live and max_gaussians must be positive")
        if self.view_radius <= 0 or self.retire_margin < 0 or self.max_chunk_loads < 1 or self.max_add_per_step < 1:
            raise ValueError("bad view_radius / retire_margin / max_chunk_loads / max_add_per_step")

    @property
    def chunk_size(self) -> float:
        return self.cell_size * (1 << self.chunk_level)

    def grid(self) -> Grid:
        """Origin at -2^(B-1) cells on every axis: world chunk borders fall on level-L cell borders."""
        o = -float(1 << (self.cell_bits - 1)) * self.cell_size
        return Grid((o, o, o), self.cell_size, self.cell_bits, self.slot_bits)

    def encoder_options(self) -> dict:
        """The Encoder options of this world's streams."""
        return {"ranked_ids": self.ranked_ids, "channel_filter": self.channel_filter, "gap_code": self.gap_code}

    def format_minor(self) -> int:
        """The format minor version this world's streams may need (SPEC.md 10, 11.2): 4 with the gap code,
        3 with the CHANNEL filter, 2 with ranked ids, else 1 where its profile allows ADD_IMPLICIT blocks
        or has an SH palette, else 0."""
        if self.gap_code:
            return 4
        if self.channel_filter:
            return 3
        if self.ranked_ids:
            return 2
        p = Profile.preset(self.profile, self.sh_degree, self.grid())
        return 1 if p.implicit_ids or p.palette else 0

    def density(self) -> int:
        """Gaussians per chunk so that about ``target_live`` are live at steady state."""
        r = self.view_radius + 0.5 * self.retire_margin
        chunks = math.pi * r * r / (self.chunk_size ** 2)
        return max(64, int(round(self.target_live / max(chunks, 1.0))))


# ------------------------------------------------------------------------------------ randomness
def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


def chunk_seed(seed: int, i: int, j: int) -> int:
    """A 63-bit seed for chunk (i, j) of world ``seed`` (independent streams per chunk)."""
    h = _splitmix64(seed & MASK64)
    h = _splitmix64(h ^ (i & MASK64))
    h = _splitmix64(h ^ ((j * 0x632BE59BD9B4E019) & MASK64))
    return h & ((1 << 63) - 1)


# ---------------------------------------------------------------------------------------- terrain
class Terrain:
    """Rolling ground: four long sinusoids (0.2-0.6 m each, wavelengths 25-90 m)."""

    def __init__(self, seed: int):
        r = random.Random(chunk_seed(seed, -(1 << 40), 7))
        self.waves = []
        for _ in range(4):
            a = r.uniform(0.2, 0.6)
            k = 2 * math.pi / r.uniform(25.0, 90.0)
            th = r.uniform(0, 2 * math.pi)
            self.waves.append((a, k * math.cos(th), k * math.sin(th), r.uniform(0, 2 * math.pi)))

    def height(self, x: float, y: float) -> float:
        return sum(a * math.sin(kx * x + ky * y + ph) for a, kx, ky, ph in self.waves)

    def height_t(self, x: torch.Tensor, y: torch.Tensor):
        """Heights and gradients of tensors of x, y (float32; x64 would only slow CUDA)."""
        h = torch.zeros_like(x)
        gx = torch.zeros_like(x)
        gy = torch.zeros_like(x)
        for a, kx, ky, ph in self.waves:
            arg = kx * x + ky * y + ph
            h += a * torch.sin(arg)
            c = a * torch.cos(arg)
            gx += c * kx
            gy += c * ky
        return h, gx, gy


# ----------------------------------------------------------------------------------------- layout
GROUND, TRUNK, CROWN, ROCK, WALL, DOOR, WATER = range(7)
_PALETTE = {
    "wall": [(0.72, 0.68, 0.62), (0.60, 0.34, 0.26), (0.86, 0.82, 0.72), (0.42, 0.44, 0.48)],
    "roof": [(0.45, 0.20, 0.16), (0.30, 0.30, 0.33), (0.52, 0.36, 0.22)],
    "door": [(0.45, 0.28, 0.15), (0.30, 0.18, 0.10), (0.20, 0.30, 0.45)],
    "crown": [(0.20, 0.36, 0.12), (0.28, 0.44, 0.16), (0.36, 0.40, 0.18)],
    "rock": [(0.46, 0.45, 0.43), (0.55, 0.51, 0.45), (0.36, 0.35, 0.34)],
}
_TRUNK_RGB = (0.34, 0.24, 0.15)
_WATER_RGB = (0.14, 0.33, 0.52)
_GRASS_RGB = (0.30, 0.42, 0.20)
_DIRT_RGB = (0.46, 0.39, 0.28)
_DOORWAY_RGB = (0.07, 0.06, 0.05)
_REST_STD = {1: 0.12, 2: 0.06, 3: 0.03}


@dataclass
class House:
    cx: float
    cy: float
    zb: float
    w: float
    d: float
    h: float
    yaw: float
    door_off: float
    door_w: float
    door_h: float
    wall: tuple
    roof: tuple
    door: tuple
    n_wall: int = 0
    n_door: int = 0


@dataclass
class Tree:
    cx: float
    cy: float
    zb: float
    trunk_r: float
    trunk_h: float
    crown: tuple      # radii rx, ry, rz
    rgb: tuple
    phase: float
    n_trunk: int = 0
    n_crown: int = 0

    @property
    def crown_z(self) -> float:
        return self.zb + self.trunk_h + 0.6 * self.crown[2]


@dataclass
class Rock:
    cx: float
    cy: float
    zc: float
    r: tuple
    rgb: tuple
    n: int = 0


@dataclass
class Pond:
    cx: float
    cy: float
    zw: float
    r: float
    phase: float
    n: int = 0


@dataclass
class Layout:
    key: tuple
    seed: int
    n_ground: int
    houses: list
    trees: list
    rocks: list
    ponds: list

    @property
    def total(self) -> int:
        return (self.n_ground + sum(h.n_wall + h.n_door for h in self.houses)
                + sum(t.n_trunk + t.n_crown for t in self.trees) + sum(r.n for r in self.rocks)
                + sum(p.n for p in self.ponds))


def _ellipsoid_area(a: float, b: float, c: float) -> float:
    p = 1.6075  # Knud Thomsen's approximation
    return 4 * math.pi * (((a * b) ** p + (a * c) ** p + (b * c) ** p) / 3) ** (1 / p)


# ------------------------------------------------------------------------------------- the chunks
@dataclass
class Door:
    key: tuple               # (chunk i, chunk j, house index)
    rows: torch.Tensor       # rows in the chunk
    ids: torch.Tensor | None
    hinge: torch.Tensor      # (3,) world point on the hinge axis
    rel: torch.Tensor        # (k, 3) closed position minus hinge
    rot0: torch.Tensor       # (k, 4) closed rotations
    centre: tuple            # closed door centre, for interact
    angle: float = 0.0       # degrees, current
    target: float = 0.0


@dataclass
class Chunk:
    key: tuple
    ids: torch.Tensor        # (n,) int64 spatial ids
    attrs: torch.Tensor      # (n, F) float32, packed (protocol.attr_layout); dynamic rows may be stale (pools hold them)
    cells: torch.Tensor      # level-chunk_level cell codes its ids live in
    born: int                # the step that generated it
    emitted: int = 0         # rows [0, emitted) have been ADDed (rows are shuffled: any prefix is a uniform subsample)
    live_rows: int = 0       # rows [0, live_rows) were live when the current step began
    foliage: dict = field(default_factory=dict)   # rows, p0, w, phase
    water: dict = field(default_factory=dict)     # rows, p0, rho, phase, dc0
    doors: list = field(default_factory=list)
    box: tuple = (0.0, 0.0, 0.0)                  # x0, y0, size of its square, metres

    @property
    def n(self) -> int:
        return int(self.attrs.shape[0])


class _Pool:
    """The dynamic rows of one kind across all live chunks, concatenated in chunk order.

    ``cur`` holds what was last emitted for the moving attributes (the chunk tensors keep the
    birth values); ``flush`` writes it back before the scene is exported. A pool rebuilt after
    chunks came and went (``old``: the previous pool) keeps the rows of the chunks that stayed
    as they are and gathers only the new chunks' rows.
    """

    def __init__(self, kind: str, chunks: list, cols: dict, device, old: "_Pool | None" = None):
        self.kind, self.cols = kind, cols
        parts = [(c, getattr(c, kind)) for c in chunks if getattr(c, kind)]
        self.ranges, start = [], 0
        for c, d in parts:
            k = int(d["rows"].numel())
            self.ranges.append((c, start, start + k))
            start += k
        self.n = start
        self.chunks = [c for c, _ in parts]
        keys = sorted({k for _, d in parts for k in d})
        self.f = {k: torch.cat([d[k] for _, d in parts]) for k in keys} if parts else {}
        if parts:
            counts = torch.tensor([e - s for _, s, e in self.ranges], device=device)
            self.f["cidx"] = torch.repeat_interleave(torch.arange(len(parts), device=device), counts,
                                                     output_size=self.n)
            kept = {c.key: (c, s, e) for c, s, e in old.ranges} if old is not None and old.n else {}

            def rows_of(c, d, a, sl):
                k = kept.get(c.key)
                return old.cur[a][k[1]:k[2]] if k is not None and k[0] is c else c.attrs[d["rows"], sl]
            self.cur = {a: torch.cat([rows_of(c, d, a, sl) for c, d in parts]) for a, sl in cols.items()}

    def near(self, xy: tuple, radius: float, device) -> torch.Tensor:
        """Rows whose rest position is within ``radius`` of ``xy`` and that were live when this step
        began (so they may be UPDATEd); only chunks that reach the circle are looked at."""
        x, y = xy
        spans = []
        for k, (c, s, e) in enumerate(self.ranges):
            if c.live_rows and _square_dist(c.box, x, y) <= radius + 1.0:
                spans.append((k, s, e))
        if not spans:
            return torch.zeros(0, dtype=I64, device=device)
        idx = torch.cat([torch.arange(s, e, device=device) for _, s, e in spans])
        lim = torch.tensor([self.chunks[k].live_rows for k in range(len(self.chunks))], dtype=I64, device=device)
        p0 = self.f["p0"][idx]
        d2 = (p0[:, 0] - x) ** 2 + (p0[:, 1] - y) ** 2
        ok = (d2 < radius ** 2) & (self.f["rows"][idx] < lim[self.f["cidx"][idx]])
        return idx[torch.nonzero(ok).squeeze(1)]

    def flush(self) -> None:
        if not self.n:
            return
        for c, s, e in self.ranges:
            rows = getattr(c, self.kind)["rows"]
            for a, sl in self.cols.items():
                c.attrs[rows, sl] = self.cur[a][s:e]


def _square_dist(box: tuple, x: float, y: float) -> float:
    """Distance from (x, y) to the square (x0, y0, size)."""
    x0, y0, size = box
    dx = max(x0 - x, 0.0, x - (x0 + size))
    dy = max(y0 - y, 0.0, y - (y0 + size))
    return math.hypot(dx, dy)


# ------------------------------------------------------------------------------------------ torch
def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def quat_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([aw * bw - ax * bx - ay * by - az * bz,
                        aw * bx + ax * bw + ay * bz - az * by,
                        aw * by - ax * bz + ay * bw + az * bx,
                        aw * bz + ax * by - ay * bx + az * bw], dim=-1)


def align_quats(axis: torch.Tensor, normal: torch.Tensor, spin: torch.Tensor) -> torch.Tensor:
    """Unit quaternions (w, x, y, z) with R(q) e_axis = normal, spun by ``spin`` about e_axis."""
    n = axis.numel()
    e = torch.nn.functional.one_hot(axis, 3).to(normal.dtype)
    dot = (e * normal).sum(-1)
    q = torch.cat([(1.0 + dot)[:, None], torch.linalg.cross(e, normal)], dim=1)
    anti = dot < -1.0 + 1e-6                      # normal = -e: half turn about a perpendicular axis
    perp = torch.nn.functional.one_hot((axis + 1) % 3, 3).to(normal.dtype)
    q = torch.where(anti[:, None], torch.cat([torch.zeros_like(dot)[:, None], perp], 1), q)
    q = _unit(q)
    s = torch.zeros((n, 4), dtype=normal.dtype, device=normal.device)
    s[:, 0] = torch.cos(spin / 2)
    s[:, 1:] = e * torch.sin(spin / 2)[:, None]
    return quat_mul(q, s)


_SPREAD = [(0x1F00000000FFFF, 32), (0x1F0000FF0000FF, 16), (0x100F00F00F00F00F, 8),
           (0x10C30C30C30C30C3, 4), (0x1249249249249249, 2)]


def _spread(v: torch.Tensor) -> torch.Tensor:
    x = v & 0x1FFFFF
    for mask, shift in _SPREAD:
        x = (x | (x << shift)) & mask
    return x


def morton_t(c: torch.Tensor) -> torch.Tensor:
    """(n, 3) int64 cell coordinates -> Morton codes (SPEC.md 3.2), on any device."""
    return _spread(c[:, 0]) | (_spread(c[:, 1]) << 1) | (_spread(c[:, 2]) << 2)


def spatial_ids(pos: torch.Tensor, grid: Grid, lo=None, hi=None) -> torch.Tensor:
    """Spatial ids for Gaussians born at ``pos`` in cells holding no live id (SPEC.md 3.3/3.4).

    Cell per axis in float64, as the spec says; slots consecutive per cell in row order
    (a stable sort), i.e. the ids ``Encoder.assign_ids`` gives for empty cells. ``lo``/``hi``
    (int cell coordinates, inclusive) clamp the cell to a chunk's box, a no-op for positions
    inside it that guards against a float landing exactly on a border.
    """
    origin = torch.tensor(grid.origin, dtype=torch.float64, device=pos.device)
    c = torch.floor((pos.to(torch.float64) - origin) / grid.cell_size).to(I64)
    c = c.clamp(0, (1 << grid.cell_bits) - 1)
    if lo is not None:
        c = torch.maximum(torch.minimum(c, hi), lo)
    cells = morton_t(c)
    srt, order = torch.sort(cells, stable=True)
    n = cells.numel()
    ar = torch.arange(n, device=pos.device)
    new = torch.ones(n, dtype=torch.bool, device=pos.device)
    if n > 1:
        new[1:] = srt[1:] != srt[:-1]
    start = torch.cummax(torch.where(new, ar, torch.zeros_like(ar)), 0).values
    slots = torch.empty_like(ar)
    slots[order] = ar - start
    if n and int(slots.max()) >= (1 << grid.slot_bits):
        raise ValueError("a grid cell ran out of slots: raise slot_bits or lower the density")
    return (cells << grid.slot_bits) | slots


# ------------------------------------------------------------------------------------ chunks ahead
_WORKER = threading.local()          # .on: this thread generates chunks ahead


class _Gate:
    """When the chunk worker may run. Paused (until a deadline, or until resumed) it stops at its
    next pause point: its Python between GPU launches would otherwise hold the interpreter lock
    while the caller's thread builds and encodes the step's frame, delaying every launch there."""

    def __init__(self):
        self._until = 0.0
        self._wake = threading.Event()

    def pause(self, seconds: float) -> None:
        self._wake.clear()
        self._until = time.monotonic() + seconds

    def resume(self) -> None:
        self._until = 0.0
        self._wake.set()

    def wait(self) -> None:
        while True:
            left = self._until - time.monotonic()
            if left <= 0:
                return
            self._wake.wait(left)


class _Ahead:
    """Chunks generated ahead of need on one worker thread (on the GPU: on its own CUDA stream).

    A chunk's content is a pure function of (seed, chunk), so generating it early changes nothing
    in the stream: the world still decides on its own which chunk loads at which step, and takes
    a chunk from here when it is ready (waits for one that is being generated; generates one
    still queued itself). ``depth`` chunks are in flight at most; finished ones beyond the
    prefetch range plus the retire margin are dropped.
    """

    def __init__(self, world: "World", depth: int = 2):
        self.w = world
        self.depth = depth
        self.pool: ThreadPoolExecutor | None = None
        self.jobs: dict = {}                       # (seed, key) -> Future of (Layout, raw Chunk)
        self.stream = torch.cuda.Stream(world.device) if world.device.type == "cuda" else None

    def _make(self, seed: int, key: tuple):
        w = self.w
        _WORKER.on = True
        with CAPTURE_LOCK:                      # let go at each pause point (World._pause_point)
            w._pause_point()
            if self.stream is None:
                lay = w._layout(key, seed)
                w._pause_point()
                return lay, w._generate(lay)
            with torch.cuda.stream(self.stream):
                lay = w._layout(key, seed)
                w._pause_point()
                ch = w._generate(lay)
            self.stream.synchronize()           # ready when the future is: the main stream never waits on it
            return lay, ch

    def clear(self) -> None:
        for f in self.jobs.values():
            f.cancel()
        self.jobs = {}

    def close(self) -> None:
        self.clear()
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None

    def take(self, key: tuple):
        """(Layout, raw Chunk) of ``key`` if it was asked for and is not still queued, else None."""
        f = self.jobs.pop((self.w.seed, key), None)
        if f is None or f.cancel():
            # needed now and not begun: the caller generates it; nothing else starts meanwhile (the
            # worker would only compete for the interpreter), the next plan() queues again
            for k in [k for k, g in self.jobs.items() if g.cancel()]:
                del self.jobs[k]
            return None
        lay, ch = f.result()
        if self.stream is not None:             # made on the worker's stream, used and freed on ours
            cur = torch.cuda.current_stream(self.w.device)
            for t in _chunk_tensors(ch):
                t.record_stream(cur)
        return lay, ch

    def keep(self, key: tuple, ready) -> None:
        f = Future()
        f.set_result(ready)
        self.jobs[(self.w.seed, key)] = f

    def plan(self, keys: list, keep: set) -> None:
        """Queue ``keys`` (best first) up to ``depth`` in flight; forget chunks not in ``keep``."""
        seed = self.w.seed
        for k in [k for k in self.jobs if k[0] != seed or k[1] not in keep]:
            self.jobs.pop(k).cancel()
        busy = sum(not f.done() for f in self.jobs.values())
        for key in keys:
            if busy >= self.depth:
                break
            if (seed, key) in self.jobs:
                continue
            if self.pool is None:
                self.pool = ThreadPoolExecutor(1, thread_name_prefix="gsd-chunks")
            self.jobs[(seed, key)] = self.pool.submit(self._make, seed, key)
            busy += 1


def _chunk_tensors(ch) -> list:
    out = [ch.attrs] + [v for d in (ch.foliage, ch.water) for v in d.values() if isinstance(v, torch.Tensor)]
    for d in ch.doors:
        out += [d.rows, d.hinge, d.rel, d.rot0]
    return out


# ------------------------------------------------------------------------------------------ world
class World:
    """The reference generator (see the module docstring). Implements protocol.Generator."""

    def __init__(self, config: WorldConfig | None = None, device: str | torch.device = "cpu"):
        self.cfg = config or WorldConfig()
        self.device = torch.device(device)
        self.grid = self.cfg.grid()
        self.profile = Profile.preset(self.cfg.profile, self.cfg.sh_degree, self.grid)
        self.max_gaussians = self.cfg.max_gaussians
        self.layout_ = attr_layout(self.cfg.sh_degree)
        self.nf = n_floats(self.cfg.sh_degree)
        self._no_ids = torch.zeros(0, dtype=I64, device=self.device)    # empty outputs, made once
        self._no_attrs = torch.zeros((0, self.nf), device=self.device)
        self._scan = None                                                 # _wanted's chunks around the camera
        self.density = self.cfg.density()
        self.chunks: dict = {}
        self.seed = None
        self.step_index = 0
        self._ahead = _Ahead(self) if self.cfg.prefetch_margin > 0 else None
        self._gate = _Gate()

    def close(self) -> None:
        """Stop generating chunks ahead (the world stays usable; it then generates them when needed)."""
        self._gate.resume()
        if self._ahead is not None:
            self._ahead.close()
            self._ahead = None

    def resume_ahead(self) -> None:
        """The step's frame is built and encoded: chunks may be generated ahead again (a step holds
        that work still from its end until this call, or ``prefetch_pause_ms`` later)."""
        self._gate.resume()

    def _pause_point(self) -> None:
        """On the chunk worker: wait here while the gate is paused (elsewhere: nothing), letting go of
        the device meanwhile (``device_codes.CAPTURE_LOCK``: a frame graph may be captured then)."""
        if getattr(_WORKER, "on", False):
            CAPTURE_LOCK.release()
            try:
                self._gate.wait()
            finally:
                CAPTURE_LOCK.acquire()

    def _hold_ahead(self) -> None:
        if self._ahead is not None and self.cfg.prefetch_pause_ms > 0:
            self._gate.pause(self.cfg.prefetch_pause_ms / 1e3)

    # -- public ------------------------------------------------------------------------------
    @property
    def live(self) -> int:
        """Gaussians ADDed and not deleted: what a decoder of this world holds."""
        return sum(c.emitted for c in self.chunks.values())

    @property
    def reserved(self) -> int:
        """Gaussians of all loaded chunks, streamed in or not: what the budget is checked against."""
        return sum(c.n for c in self.chunks.values())

    @property
    def time(self) -> float:
        return self.step_index * self.cfg.dt

    def reset(self, seed: int) -> StepOutput:
        """A fresh world at the spawn point; the output ADDs every chunk in range (a keyframe)."""
        self._gate.resume()
        self.seed = int(seed)
        self.terrain = Terrain(self.seed)
        self.chunks = {}
        self.door_state: dict = {}          # door key -> (angle, target), survives unloading
        self.step_index = 0
        self.cam_xy = [2.5, 6.5]
        self.yaw, self.pitch = 0.0, 0.0
        self.jump_h, self.vz = 0.0, 0.0
        self.pending: list = []             # chunks still streaming in, oldest first
        if self._ahead:
            self._ahead.clear()
        self._load(limit=None)
        self._plan_ahead()
        ids, attrs = self._emit(None)       # a keyframe carries everything in view at once
        self._rebuild_pools(keep=False)
        loaded = list(self.chunks.values())
        self._hold_ahead()
        return StepOutput(0, True, ids, attrs, delete_ids=torch.zeros(0, dtype=I64, device=self.device),
                          camera=self.camera(), live=self.live,
                          events=[f"spawned {len(loaded)} chunks"])

    def step(self, action: Action | None = None) -> StepOutput:
        if self.seed is None:
            raise RuntimeError("call reset(seed) first")
        self._gate.resume()       # a chunk this step needs may be in the making
        self.step_index += 1
        events: list = []
        self._act(action or Idle(), events)
        self._physics()
        for c in self.chunks.values():
            c.live_rows = c.emitted
        retired = self._retire()
        loaded = self._load(limit=self.cfg.max_chunk_loads)
        if retired or loaded:
            self._rebuild_pools()
        ids, attrs = self._emit(self.cfg.max_add_per_step)
        updates = self._dynamics(events)
        self._plan_ahead()
        cells = {}
        gone = [c for c in retired if c.emitted]      # a chunk retired before any of it streamed in: nothing to delete
        if gone:
            cells[self.cfg.chunk_level] = torch.cat([c.cells for c in gone])
        if retired:
            events.append(f"retired {len(retired)} chunk(s)")
        if loaded:
            events.append(f"loaded {len(loaded)} chunk(s)")
        self._hold_ahead()
        return StepOutput(self.step_index, False, ids, attrs, updates=updates,
                          delete_ids=self._no_ids, delete_cells=cells,
                          camera=self.camera(), live=self.live, events=events)

    def camera(self) -> Camera:
        x, y = self.cam_xy
        z = self.terrain.height(x, y) + self.cfg.eye_height + self.jump_h
        return Camera((x, y, z), self.yaw, self.pitch)

    def scene(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole live scene as emitted so far: ids (N,) and packed attributes (N, F).

        What a decoder of this world's stream holds, before quantization.
        """
        for p in self._pools():
            p.flush()
        chunks = [self.chunks[k] for k in sorted(self.chunks) if self.chunks[k].emitted]
        if not chunks:
            return self._no_ids, self._no_attrs
        return (torch.cat([c.ids[:c.emitted] for c in chunks]), torch.cat([c.attrs[:c.emitted] for c in chunks]))

    def doors(self) -> list:
        return [d for c in self.chunks.values() for d in c.doors]

    # -- actions and the camera -----------------------------------------------------------------
    def _act(self, a: Action, events: list) -> None:
        yaw = math.radians(self.yaw)
        if isinstance(a, Move):
            self._walk(a.distance * math.cos(yaw), a.distance * math.sin(yaw))
        elif isinstance(a, Strafe):
            self._walk(a.distance * math.sin(yaw), -a.distance * math.cos(yaw))
        elif isinstance(a, Turn):
            self.yaw = (self.yaw + a.degrees + 180.0) % 360.0 - 180.0
        elif isinstance(a, Look):
            self.pitch = max(-89.0, min(89.0, self.pitch + a.degrees))
        elif isinstance(a, Jump):
            if self.jump_h <= 0.0:
                self.vz = a.speed
                events.append("jump")
        elif isinstance(a, Interact):
            self._interact(a.reach, events)
        elif isinstance(a, Pose):
            x, y, z = a.position
            self._walk(x - self.cam_xy[0], y - self.cam_xy[1])
            ground = self.terrain.height(*self.cam_xy) + self.cfg.eye_height
            self.jump_h, self.vz = max(0.0, z - ground), 0.0
            self.yaw = (a.yaw + 180.0) % 360.0 - 180.0
            self.pitch = max(-89.0, min(89.0, a.pitch))
        elif not isinstance(a, Idle):
            raise TypeError(f"not an action: {a!r}")

    def _walk(self, dx: float, dy: float) -> None:
        lim = (1 << (self.cfg.cell_bits - 1)) * self.cfg.cell_size - self.cfg.view_radius - 3 * self.cfg.chunk_size
        self.cam_xy = [max(-lim, min(lim, self.cam_xy[0] + dx)), max(-lim, min(lim, self.cam_xy[1] + dy))]

    def _physics(self) -> None:
        if self.jump_h > 0.0 or self.vz > 0.0:
            self.jump_h += self.vz * self.cfg.dt
            self.vz -= self.cfg.gravity * self.cfg.dt
            if self.jump_h <= 0.0:
                self.jump_h, self.vz = 0.0, 0.0

    def _interact(self, reach: float, events: list) -> None:
        eye = self.camera().position
        best, best_d = None, reach
        for d in (d for c in self.chunks.values() if c.emitted == c.n for d in c.doors):   # fully streamed in
            dist = math.dist(eye, d.centre)
            if dist <= best_d:
                best, best_d = d, dist
        if best is None:
            events.append("interact: no door in reach")
            return
        best.target = 0.0 if best.target else self.cfg.door_open_degrees
        events.append(f"door {best.key} {'opening' if best.target else 'closing'}")

    # -- chunk management ------------------------------------------------------------------------
    def _chunk_dist(self, key) -> float:
        c = self.cfg.chunk_size
        return math.hypot((key[0] + 0.5) * c - self.cam_xy[0], (key[1] + 0.5) * c - self.cam_xy[1])

    def _plan_ahead(self) -> None:
        if self._ahead is None:
            return
        r = self.cfg.view_radius + self.cfg.prefetch_margin
        keep = set(self._wanted(r + self.cfg.retire_margin))
        self._ahead.plan(self._wanted(r), keep)

    def _wanted(self, r: float | None = None) -> list:
        """Chunks within ``r`` (the view radius) not yet live, best first: near, and in front of the camera."""
        r = self.cfg.view_radius if r is None else r
        x, y = self.cam_xy
        scan = self._scan
        if scan is None or scan[0] != (x, y, self.yaw) or scan[1] < r:
            far = max(r, self.cfg.view_radius + self.cfg.prefetch_margin + self.cfg.retire_margin)
            scan = self._scan = ((x, y, self.yaw), far, self._chunks_within(far))
        live = self.chunks
        return [k for _, k, d in scan[2] if d <= r and k not in live]

    def _chunks_within(self, r: float) -> list:
        """(rank, key, distance) of every chunk whose centre is within ``r`` of the camera, best
        first. A step asks for three radii (load, generate ahead, keep); one scan of the largest
        serves all three, as the rank does not depend on the radius."""
        c = self.cfg.chunk_size
        x, y = self.cam_xy
        yaw = math.radians(self.yaw)
        cos, sin, hypot = math.cos(yaw), math.sin(yaw), math.hypot
        out = []
        # the per-chunk arithmetic of _chunk_dist inlined (the same operations, so the same order)
        for i in range(math.floor((x - r) / c), math.floor((x + r) / c) + 1):
            vx = (i + 0.5) * c - x
            for j in range(math.floor((y - r) / c), math.floor((y + r) / c) + 1):
                vy = (j + 0.5) * c - y
                d = hypot(vx, vy)
                if d <= r:
                    facing = (vx * cos + vy * sin) / max(d, 1e-6)
                    out.append((d - 0.5 * c * facing, (i, j), d))
        out.sort()
        return out

    def _load(self, limit: int | None) -> list:
        """Generate wanted chunks (nearest first) while the budget holds and the stream-in backlog is short."""
        loaded, reserved = [], self.reserved
        backlog = sum(c.n - c.emitted for c in self.pending)
        for key in self._wanted():
            if limit is not None and (len(loaded) >= limit or backlog >= self.cfg.max_add_per_step):
                break
            ready = self._ahead.take(key) if self._ahead else None
            lay = ready[0] if ready else self._layout(key)
            if reserved + lay.total > self.max_gaussians:
                if ready:
                    self._ahead.keep(key, ready)
                continue   # over budget: a smaller chunk may still fit
            ch = self._finish(ready[1] if ready else self._generate(lay))
            self.chunks[key] = ch
            self.pending.append(ch)
            loaded.append(ch)
            reserved += ch.n
            backlog += ch.n
        return loaded

    def _emit(self, budget: int | None):
        """ADD the next rows of the chunks streaming in, oldest chunk first, at most ``budget`` rows."""
        ids, attrs = [], []
        left = budget
        while self.pending and (left is None or left > 0):
            c = self.pending[0]
            b = c.n if left is None else min(c.n, c.emitted + left)
            ids.append(c.ids[c.emitted:b])
            attrs.append(c.attrs[c.emitted:b])
            if left is not None:
                left -= b - c.emitted
            c.emitted = b
            if b == c.n:
                self.pending.pop(0)
        if not ids:
            return self._no_ids, self._no_attrs
        return torch.cat(ids), torch.cat(attrs)

    def _retire(self) -> list:
        far = self.cfg.view_radius + self.cfg.retire_margin
        gone = [k for k in self.chunks if self._chunk_dist(k) > far]
        out = []
        for k in sorted(gone):
            ch = self.chunks.pop(k)
            if ch in self.pending:
                self.pending.remove(ch)
            for d in ch.doors:       # the swing completes off-stage; the state is remembered
                self.door_state[d.key] = (d.target, d.target)
            out.append(ch)
        return out

    # -- dynamics --------------------------------------------------------------------------------
    def _pools(self) -> list:
        return [p for p in (getattr(self, "_foliage", None), getattr(self, "_water", None)) if p is not None]

    def _rebuild_pools(self, keep: bool = True) -> None:
        chunks = [self.chunks[k] for k in sorted(self.chunks)]
        old_f = getattr(self, "_foliage", None) if keep else None
        old_w = getattr(self, "_water", None) if keep else None
        self._foliage = _Pool("foliage", chunks, {Attr.POSITION: self.layout_[Attr.POSITION]}, self.device, old_f)
        self._water = _Pool("water", chunks, {Attr.POSITION: self.layout_[Attr.POSITION],
                                              Attr.SH_DC: self.layout_[Attr.SH_DC]}, self.device, old_w)

    def _sway(self, p0, w, phase, t):
        om = 2 * math.pi * self.cfg.sway_hz
        off = torch.stack([torch.sin(om * t + phase), 0.6 * torch.sin(1.37 * om * t + 2.0 * phase),
                           torch.zeros_like(phase)], dim=1)
        return p0 + off * w[:, None]

    def _ripple(self, p0, rho, phase, dc0, t):
        om = 2 * math.pi * self.cfg.ripple_hz
        wave = torch.sin(2.2 * rho - om * t + phase)
        pos = p0.clone()
        pos[:, 2] += self.cfg.ripple_amplitude * wave
        dc = dc0 + (0.05 / SH_C0) * wave[:, None]
        return pos, dc

    def _near(self, pool: _Pool) -> torch.Tensor:
        """Rows of a pool close to the camera and live since before this step (ADD and UPDATE never mix)."""
        return pool.near(tuple(self.cam_xy), self.cfg.dyn_radius, self.device)

    def _dynamics(self, events: list) -> list:
        t = self.time
        groups = []
        pos_a = Attr.POSITION
        f = self._foliage
        if f.n:
            idx = self._near(f)
            if idx.numel():
                new = self._sway(f.f["p0"][idx], f.f["w"][idx], f.f["phase"][idx], t)
                f.cur[pos_a][idx] = new
                groups.append(UpdateGroup(f.f["ids"][idx], {pos_a: new}))
        wp = self._water
        if wp.n:
            idx = self._near(wp)
            if idx.numel():
                pos, dc = self._ripple(wp.f["p0"][idx], wp.f["rho"][idx], wp.f["phase"][idx], wp.f["dc0"][idx], t)
                wp.cur[pos_a][idx] = pos
                wp.cur[Attr.SH_DC][idx] = dc
                groups.append(UpdateGroup(wp.f["ids"][idx], {pos_a: pos, Attr.SH_DC: dc}))
        moving = []
        step = self.cfg.door_open_degrees / self.cfg.door_steps
        for c in self.chunks.values():
            for d in c.doors:
                if d.angle != d.target and c.live_rows == c.n:      # doors swing once fully streamed in
                    d.angle = d.target if abs(d.target - d.angle) <= step else d.angle + math.copysign(step, d.target - d.angle)
                    self.door_state[d.key] = (d.angle, d.target)
                    pos, rot = self._door_pose(d)
                    c.attrs[d.rows, self.layout_[pos_a]] = pos
                    c.attrs[d.rows, self.layout_[Attr.ROTATION]] = rot
                    moving.append((d.ids, pos, rot))
                    if d.angle == d.target:
                        events.append(f"door {d.key} {'open' if d.target else 'closed'}")
        if moving:
            groups.append(UpdateGroup(torch.cat([m[0] for m in moving]),
                                      {pos_a: torch.cat([m[1] for m in moving]),
                                       Attr.ROTATION: torch.cat([m[2] for m in moving])}))
        return groups

    def _door_pose(self, d: Door):
        th = math.radians(d.angle)
        c, s = math.cos(th), math.sin(th)
        rz = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=F32, device=self.device)
        q = torch.tensor([math.cos(th / 2), 0.0, 0.0, math.sin(th / 2)], dtype=F32, device=self.device)
        return d.hinge + d.rel @ rz.T, quat_mul(q.expand_as(d.rot0), d.rot0)

    # -- layout (Python, per object) ---------------------------------------------------------------
    def _layout(self, key, world_seed: int | None = None) -> Layout:
        """Which objects chunk ``key`` holds and how many Gaussians each gets (no tensors yet)."""
        i, j = key
        cs = self.cfg.chunk_size
        x0, y0 = i * cs, j * cs
        seed = chunk_seed(self.seed if world_seed is None else world_seed, i, j)
        r = random.Random(seed)
        th = self.terrain.height
        houses, trees, rocks, ponds = [], [], [], []
        taken: list = []   # (x, y, radius) footprints

        def free(x, y, rad):
            return all(math.hypot(x - a, y - b) > rad + c for a, b, c in taken)

        def spot(rad):
            for _ in range(12):
                x, y = x0 + r.uniform(rad + 0.3, cs - rad - 0.3), y0 + r.uniform(rad + 0.3, cs - rad - 0.3)
                if free(x, y, rad):
                    return x, y
            return None

        def house(cx, cy, w, d, h, yaw, off):
            zb = min(th(cx + a * w / 2, cy + b * d / 2) for a in (-1, 1) for b in (-1, 1)) - 0.1
            houses.append(House(cx, cy, zb, w, d, h, yaw, off, 1.1, 2.1, r.choice(_PALETTE["wall"]),
                                r.choice(_PALETTE["roof"]), r.choice(_PALETTE["door"])))
            taken.append((cx, cy, 0.5 * math.hypot(w, d) + 1.2))

        def tree(at=None):
            rx = r.uniform(1.2, 2.4)
            crown = (rx, rx * r.uniform(0.8, 1.2), rx * r.uniform(0.9, 1.5))
            reach = 1.3 * max(crown[0], crown[1]) + 0.2     # fuzz (<= 25%) and jitter stay inside
            xy = at or spot(reach)
            if xy is None:
                return
            cx, cy = xy
            trees.append(Tree(cx, cy, th(cx, cy), r.uniform(0.14, 0.28), r.uniform(1.4, 2.6), crown,
                              r.choice(_PALETTE["crown"]), r.uniform(0, 2 * math.pi)))
            taken.append((cx, cy, reach))

        def pond(cx, cy, rad):
            ponds.append(Pond(cx, cy, th(cx, cy) + 0.08, rad, r.uniform(0, 2 * math.pi)))
            taken.append((cx, cy, rad))

        if key == (0, 0):   # the spawn chunk: a house facing the camera, a tree, a pond
            house(11.5, 6.5, 5.0, 7.0, 4.0, 0.0, 0.0)
            tree((4.0, 12.0))
            pond(5.0, 2.2, 1.8)
        else:
            if r.random() < 0.35:
                w, d = r.uniform(4.0, 7.0), r.uniform(4.0, 7.0)
                rad = 0.5 * math.hypot(w, d) + 1.2
                xy = spot(rad)
                if xy:
                    house(*xy, w, d, r.uniform(3.0, 6.5), r.choice((0.0, 90.0, 180.0, 270.0)) + r.uniform(-15, 15),
                          r.uniform(-0.2, 0.2) * d)
            if r.random() < 0.2:
                rad = r.uniform(1.5, 3.5)
                xy = spot(rad)
                if xy:
                    pond(*xy, rad)
            for _ in range(r.choice((0, 1, 1, 2, 2, 3, 4))):
                tree()
        for _ in range(r.choice((0, 1, 2, 3, 4))):
            rad = r.uniform(0.3, 1.1)
            xy = spot(rad)
            if xy:
                rr = (rad, rad * r.uniform(0.6, 1.0), rad * r.uniform(0.4, 0.8))
                rocks.append(Rock(*xy, th(*xy) - 0.25 * rr[2], rr, r.choice(_PALETTE["rock"])))
                taken.append((xy[0], xy[1], rad))

        # Gaussians per object, in proportion to surface area times a detail weight
        weights = []
        for hs in houses:
            weights += [(hs, "n_wall", 2 * (hs.w + hs.d) * (hs.h + 0.5) + hs.w * hs.d),
                        (hs, "n_door", 3.0 * hs.door_w * hs.door_h)]
        for t in trees:
            weights += [(t, "n_trunk", 2 * math.pi * t.trunk_r * t.trunk_h), (t, "n_crown", 1.6 * _ellipsoid_area(*t.crown))]
        for rk in rocks:
            weights.append((rk, "n", 0.5 * _ellipsoid_area(*rk.r)))
        for p in ponds:
            weights.append((p, "n", 0.5 * math.pi * p.r * p.r))
        n_ground = self.density if not weights else int(0.35 * self.density)
        rest = self.density - n_ground
        total_w = sum(w for _, _, w in weights) or 1.0
        for obj, attr, w in weights:
            setattr(obj, attr, max(16, int(round(rest * w / total_w))))
        return Layout(key, seed, n_ground, houses, trees, rocks, ponds)

    # -- generation (torch, vectorized per kind) --------------------------------------------------------
    def _tensor(self, rows) -> torch.Tensor:
        return torch.tensor(rows, dtype=F32, device=self.device).reshape(len(rows), -1)

    def _generate(self, lay: Layout) -> Chunk:
        dev = self.device
        g = torch.Generator(device=dev)
        g.manual_seed(lay.seed)

        def rand(*shape):
            return torch.rand(shape, generator=g, device=dev)

        def randn(*shape):
            return torch.randn(shape, generator=g, device=dev)

        cs = self.cfg.chunk_size
        i, j = lay.key
        x0, y0 = i * cs, j * cs
        parts = []   # (kind, pos, normal, rgb, spacing, jitter)

        def obj_index(counts):
            return torch.repeat_interleave(torch.arange(len(counts), device=dev),
                                           torch.tensor(counts, dtype=I64, device=dev))

        # ground
        n = lay.n_ground
        eps = 1e-3
        gx = x0 + (eps + (1 - 2 * eps) * rand(n)) * cs
        gy = y0 + (eps + (1 - 2 * eps) * rand(n)) * cs
        h, hx, hy = self.terrain.height_t(gx, gy)
        nrm = _unit(torch.stack([-hx, -hy, torch.ones_like(hx)], 1))
        mix = (0.5 + 0.5 * torch.sin(0.31 * gx + 1.7) * torch.sin(0.27 * gy + 0.4) + 0.25 * randn(n)).clamp(0, 1)
        rgb = torch.lerp(self._tensor([_GRASS_RGB]), self._tensor([_DIRT_RGB]), mix[:, None])
        parts.append((GROUND, torch.stack([gx, gy, h], 1), nrm, rgb, torch.full((n,), cs / math.sqrt(n), device=dev),
                      torch.full((n,), 0.003, device=dev)))
        self._pause_point()

        # trees: trunks and crowns
        foliage = None
        if lay.trees:
            T = self._tensor([(t.cx, t.cy, t.zb, t.trunk_r, t.trunk_h) for t in lay.trees])
            o = obj_index([t.n_trunk for t in lay.trees])
            th = 2 * math.pi * rand(o.numel())
            tt = T[o]
            z = tt[:, 2] - 0.2 + rand(o.numel()) * (tt[:, 4] + 0.2)
            radial = torch.stack([torch.cos(th), torch.sin(th), torch.zeros_like(th)], 1)
            pos = torch.stack([tt[:, 0], tt[:, 1], z], 1) + radial * tt[:, 3:4]
            area = 2 * math.pi * tt[:, 3] * tt[:, 4]
            cnt = torch.tensor([t.n_trunk for t in lay.trees], dtype=F32, device=dev)[o]
            parts.append((TRUNK, pos, radial, self._tensor([_TRUNK_RGB]).expand(o.numel(), 3),
                          (area / cnt).sqrt(), torch.full((o.numel(),), 0.004, device=dev)))
            self._pause_point()
            C = self._tensor([(t.cx, t.cy, t.crown_z, *t.crown, t.zb + t.trunk_h, t.phase) for t in lay.trees])
            o = obj_index([t.n_crown for t in lay.trees])
            k = o.numel()
            cc = C[o]
            dirs = _unit(randn(k, 3))
            radii = cc[:, 3:6]
            pos = cc[:, 0:3] + dirs * radii * (1.0 + 0.10 * randn(k, 1).clamp(-2.5, 2.5))   # fuzzy crowns
            area = torch.tensor([_ellipsoid_area(*t.crown) for t in lay.trees], device=dev)[o]
            cnt = torch.tensor([t.n_crown for t in lay.trees], dtype=F32, device=dev)[o]
            rgb = self._tensor([t.rgb for t in lay.trees])[o] * (0.8 + 0.4 * rand(k, 1))
            start = sum(p[1].shape[0] for p in parts)
            parts.append((CROWN, pos, _unit(dirs / radii), rgb, (area / cnt).sqrt() * 1.3,
                          torch.full((k,), 0.05, device=dev)))
            self._pause_point()
            top = cc[:, 2] + cc[:, 5]
            w = ((pos[:, 2] - cc[:, 6]) / (top - cc[:, 6])).clamp(0.05, 1.0) ** 1.5 * self.cfg.sway_amplitude
            foliage = {"rows": torch.arange(start, start + k, device=dev), "w": w, "phase": cc[:, 7]}

        # rocks
        if lay.rocks:
            R = self._tensor([(rk.cx, rk.cy, rk.zc, *rk.r) for rk in lay.rocks])
            o = obj_index([rk.n for rk in lay.rocks])
            k = o.numel()
            rr = R[o]
            dirs = randn(k, 3)
            dirs[:, 2] = dirs[:, 2].abs() - 0.2
            dirs = _unit(dirs)
            pos = rr[:, 0:3] + dirs * rr[:, 3:6]
            area = torch.tensor([0.5 * _ellipsoid_area(*rk.r) for rk in lay.rocks], device=dev)[o]
            cnt = torch.tensor([rk.n for rk in lay.rocks], dtype=F32, device=dev)[o]
            rgb = self._tensor([rk.rgb for rk in lay.rocks])[o] * (0.85 + 0.3 * rand(k, 1))
            parts.append((ROCK, pos, _unit(dirs / rr[:, 3:6]), rgb, (area / cnt).sqrt(), torch.full((k,), 0.004, device=dev)))
            self._pause_point()

        # houses: 4 walls (one with a doorway) + roof, then the door panels
        door_parts = []
        if lay.houses:
            H = self._tensor([(hs.cx, hs.cy, hs.zb, hs.w, hs.d, hs.h, math.radians(hs.yaw), hs.door_off, hs.door_w,
                               hs.door_h) for hs in lay.houses])
            o = obj_index([hs.n_wall for hs in lay.houses])
            k = o.numel()
            hh = H[o]
            w, d, ht = hh[:, 3], hh[:, 4], hh[:, 5] + 0.5
            areas = torch.stack([d * ht, d * ht, w * ht, w * ht, w * d], 1)
            cum = areas.cumsum(1)
            face = (rand(k, 1) * cum[:, -1:] > cum).sum(1)
            a, b = rand(k) - 0.5, rand(k)
            loc = torch.empty((k, 3), device=dev)
            ln = torch.zeros((k, 3), device=dev)
            sx = torch.where(face == 0, 0.5, -0.5)
            fx, fy, ft = face < 2, (face >= 2) & (face < 4), face == 4
            sy = torch.where(face == 2, 0.5, -0.5)
            loc[:, 0] = torch.where(fx, sx * w, a * w)
            loc[:, 1] = torch.where(fx, a * d, torch.where(fy, sy * d, (b - 0.5) * d))
            loc[:, 2] = torch.where(ft, ht, b * ht) - 0.5
            ln[:, 0] = torch.where(fx, torch.sign(sx), 0.0)
            ln[:, 1] = torch.where(fy, torch.sign(sy), 0.0)
            ln[:, 2] = torch.where(ft, 1.0, 0.0)
            doorway = (face == 1) & ((loc[:, 1] - hh[:, 7]).abs() < hh[:, 8] / 2) & (loc[:, 2] < hh[:, 9])
            loc[:, 0] = torch.where(doorway, loc[:, 0] + 0.6, loc[:, 0])      # a dark recess behind the door
            wall_rgb = self._tensor([hs.wall for hs in lay.houses])[o]
            roof_rgb = self._tensor([hs.roof for hs in lay.houses])[o]
            rgb = torch.where(ft[:, None], roof_rgb, wall_rgb) * (0.9 + 0.2 * rand(k, 1))
            rgb = torch.where(doorway[:, None], self._tensor([_DOORWAY_RGB]), rgb)
            cy, sy_ = torch.cos(hh[:, 6]), torch.sin(hh[:, 6])

            def rot(v):
                return torch.stack([cy * v[:, 0] - sy_ * v[:, 1], sy_ * v[:, 0] + cy * v[:, 1], v[:, 2]], 1)
            pos = rot(loc) + hh[:, 0:3]
            area = cum[:, -1]
            cnt = torch.tensor([hs.n_wall for hs in lay.houses], dtype=F32, device=dev)[o]
            parts.append((WALL, pos, rot(ln), rgb, (area / cnt).sqrt(), torch.full((k,), 0.002, device=dev)))
            self._pause_point()
            # doors: a panel hinged at its -y' edge, 4 cm proud of the -x' wall
            o = obj_index([hs.n_door for hs in lay.houses])
            k = o.numel()
            hh = H[o]
            u, v = rand(k) * hh[:, 8], rand(k) * hh[:, 9]
            cy, sy_ = torch.cos(hh[:, 6]), torch.sin(hh[:, 6])
            hinge_l = torch.stack([-hh[:, 3] / 2 - 0.04, hh[:, 7] - hh[:, 8] / 2, torch.zeros_like(u)], 1)
            rel_l = torch.stack([torch.zeros_like(u), u, v], 1)
            hinge = rot(hinge_l) + hh[:, 0:3]
            nrm = rot(torch.tensor([[-1.0, 0.0, 0.0]], device=dev).expand(k, 3))
            rgb = self._tensor([hs.door for hs in lay.houses])[o] * (0.9 + 0.2 * rand(k, 1))
            start = sum(p[1].shape[0] for p in parts)
            cnt = torch.tensor([hs.n_door for hs in lay.houses], dtype=F32, device=dev)[o]
            parts.append((DOOR, hinge + rot(rel_l), nrm, rgb, (hh[:, 8] * hh[:, 9] / cnt).sqrt(),
                          torch.full((k,), 0.001, device=dev)))
            self._pause_point()
            door_parts = [(hidx, start + s, hinge) for hidx, s in
                          enumerate(torch.tensor([0] + [hs.n_door for hs in lay.houses]).cumsum(0)[:-1].tolist())]

        # ponds
        water = None
        if lay.ponds:
            P = self._tensor([(p.cx, p.cy, p.zw, p.r, p.phase) for p in lay.ponds])
            o = obj_index([p.n for p in lay.ponds])
            k = o.numel()
            pp = P[o]
            rho = pp[:, 3] * rand(k).sqrt()
            ang = 2 * math.pi * rand(k)
            pos = torch.stack([pp[:, 0] + rho * torch.cos(ang), pp[:, 1] + rho * torch.sin(ang), pp[:, 2]], 1)
            up = torch.tensor([[0.0, 0.0, 1.0]], device=dev).expand(k, 3)
            rgb = self._tensor([_WATER_RGB]) * (0.85 + 0.3 * rand(k, 1))
            area = math.pi * pp[:, 3] ** 2
            cnt = torch.tensor([p.n for p in lay.ponds], dtype=F32, device=dev)[o]
            start = sum(p[1].shape[0] for p in parts)
            parts.append((WATER, pos, up, rgb, (area / cnt).sqrt(), torch.zeros(k, device=dev)))
            self._pause_point()
            water = {"rows": torch.arange(start, start + k, device=dev), "rho": rho, "phase": pp[:, 4]}

        self._pause_point()
        kinds = torch.cat([torch.full((p[1].shape[0],), p[0], dtype=I64, device=dev) for p in parts])
        pos, nrm, rgb, spacing, jitter = (torch.cat([p[q] for p in parts]) for q in range(1, 6))
        attrs = self._attributes(kinds, pos, nrm, rgb, spacing, jitter, randn, rand)

        # the rest pose of what moves (today's motion and door angles are applied at load, _finish)
        P_, R_, D_ = self.layout_[Attr.POSITION], self.layout_[Attr.ROTATION], self.layout_[Attr.SH_DC]
        if foliage is not None:
            foliage["p0"] = attrs[foliage["rows"], P_].clone()
        if water is not None:
            water["p0"] = attrs[water["rows"], P_].clone()
            water["dc0"] = attrs[water["rows"], D_].clone()
        door_list = []
        for hidx, start, hinge_all in door_parts:
            hs = lay.houses[hidx]
            rows = torch.arange(start, start + hs.n_door, device=dev)
            hinge = hinge_all[start - door_parts[0][1]]
            yaw = math.radians(hs.yaw)
            hx_, hy_ = -hs.w / 2 - 0.04, hs.door_off
            centre = (hs.cx + math.cos(yaw) * hx_ - math.sin(yaw) * hy_,
                      hs.cy + math.sin(yaw) * hx_ + math.cos(yaw) * hy_, hs.zb + hs.door_h / 2)
            door_list.append(Door((i, j, hidx), rows, None, hinge, attrs[rows, P_] - hinge, attrs[rows, R_].clone(),
                                  centre))

        self._pause_point()
        # rows in random order, so that the chunk can stream in over several steps with every
        # prefix a uniform subsample of it (coarse to fine); dynamic row lists follow the shuffle
        n_all = attrs.shape[0]
        perm = torch.randperm(n_all, generator=g, device=dev)
        inv = torch.empty_like(perm)
        inv[perm] = torch.arange(n_all, device=dev)
        attrs = attrs[perm]
        for dyn in (foliage, water):
            if dyn is not None:
                dyn["rows"] = inv[dyn["rows"]]
        for door in door_list:
            door.rows = inv[door.rows]
        return Chunk(lay.key, None, attrs, None, -1, foliage=foliage or {}, water=water or {}, doors=door_list,
                     box=(x0, y0, cs))

    def _finish(self, ch: Chunk) -> Chunk:
        """A generated chunk enters the world now: today's sway and ripple, remembered door angles,
        then ids from the positions it is born at (birth cells clamped to the chunk's own cells, a
        no-op for positions inside it, which the layout's margins guarantee)."""
        t, attrs, dev = self.time, ch.attrs, self.device
        P_, R_, D_ = self.layout_[Attr.POSITION], self.layout_[Attr.ROTATION], self.layout_[Attr.SH_DC]
        if ch.foliage:
            f = ch.foliage
            attrs[f["rows"], P_] = self._sway(f["p0"], f["w"], f["phase"], t)
        if ch.water:
            wd = ch.water
            attrs[wd["rows"], P_], attrs[wd["rows"], D_] = self._ripple(wd["p0"], wd["rho"], wd["phase"], wd["dc0"], t)
        for door in ch.doors:
            door.angle, door.target = self.door_state.get(door.key, (0.0, 0.0))
            if door.angle:
                attrs[door.rows, P_], attrs[door.rows, R_] = self._door_pose(door)
        i, j = ch.key
        cb = 1 << self.cfg.chunk_level
        base = (1 << (self.cfg.cell_bits - 1))
        lo = torch.tensor([base + i * cb, base + j * cb, 0], device=dev)
        hi = torch.tensor([base + (i + 1) * cb - 1, base + (j + 1) * cb - 1, (1 << self.cfg.cell_bits) - 1], device=dev)
        ch.ids = spatial_ids(attrs[:, P_], self.grid, lo, hi)
        ch.cells = torch.unique(ch.ids >> (self.grid.slot_bits + 3 * self.cfg.chunk_level))
        ch.born = self.step_index
        for d in ch.doors:
            d.ids = ch.ids[d.rows]
        for dyn in (ch.foliage, ch.water):
            if dyn:
                dyn["ids"] = ch.ids[dyn["rows"]]
        return ch

    def _attributes(self, kinds, pos, nrm, rgb, spacing, jitter, randn, rand) -> torch.Tensor:
        """Scales, rotations, opacities and SH of surface samples, packed (n, F)."""
        n = kinds.numel()
        dev = self.device
        out = torch.empty((n, self.nf), dtype=F32, device=dev)
        L = self.layout_
        out[:, L[Attr.POSITION]] = pos + nrm * (randn(n).clamp(-3.5, 3.5) * jitter)[:, None]
        # scales: log-normal around the sampling spacing; the normal axis 3-10x thinner (crowns 1.5-3x)
        s0 = torch.log(0.6 * spacing.clamp_min(1e-4)) + 0.3 * randn(n)
        t1 = s0 + 0.25 * randn(n)
        t2 = s0 - 0.25 * randn(n).abs()
        lo_f = torch.where(kinds == CROWN, math.log(1.5), math.log(3.0))
        hi_f = torch.where(kinds == CROWN, math.log(3.0), math.log(10.0))
        sn = torch.minimum(t1, t2) - (lo_f + (hi_f - lo_f) * rand(n))
        axis = (rand(n) * 3).long().clamp_max(2)
        sc = torch.empty((n, 3), device=dev)
        ar = torch.arange(n, device=dev)
        sc[ar, axis] = sn
        sc[ar, (axis + 1) % 3] = t1
        sc[ar, (axis + 2) % 3] = t2
        out[:, L[Attr.SCALE]] = sc.clamp(-12.0, 2.0)
        self._pause_point()
        q = align_quats(axis, nrm, 2 * math.pi * rand(n))
        out[:, L[Attr.ROTATION]] = q * torch.where(rand(n) < 0.5, -1.0, 1.0)[:, None]
        self._pause_point()
        # opacity: solid surfaces mostly opaque; crowns a mix; water translucent
        u, m = rand(n), rand(n)
        solid = torch.where(m < 0.85, 1.0 - 0.35 * u ** 4, 0.05 + 0.9 * u)
        crown = torch.where(m < 0.6, 1.0 - 0.4 * u ** 3, 0.03 + 0.9 * u)
        alpha = torch.where(kinds == CROWN, crown, torch.where(kinds == WATER, 0.55 + 0.35 * u, solid))
        alpha = alpha.clamp(1e-3, 1 - 5e-5)
        out[:, L[Attr.OPACITY]] = (torch.log(alpha) - torch.log1p(-alpha))[:, None]
        self._pause_point()
        # colour: per-object base, per-Gaussian luminance and chroma noise
        col = rgb * (1.0 + 0.12 * randn(n, 1)) + 0.03 * randn(n, 3)
        out[:, L[Attr.SH_DC]] = ((col - 0.5) / SH_C0).clamp(-2.0, 3.0)
        k = rest_coeffs(self.cfg.sh_degree)
        if k:
            deg = [l for l in range(1, self.cfg.sh_degree + 1) for _ in range(2 * l + 1)]
            std = torch.tensor([_REST_STD[l] for l in deg], dtype=F32, device=dev)
            common = randn(n, 1, k)
            z = 0.8 * common + 0.6 * randn(n, 3, k)            # channels correlated (rho 0.64)
            energy = torch.exp(0.5 * randn(n) - 0.25)
            z = z * std * energy[:, None, None]
            out[:, L[Attr.SH_REST]] = z.clamp(-1.5, 1.5).reshape(n, 3 * k)
            self._pause_point()
        return out
