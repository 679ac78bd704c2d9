"""Inputs for the benchmarks: profiles fitted to a scene, keyframes, and realistic deltas.

Shared by bench/run.py and tests/test_benchmarks.py so the script and the
pytest benchmarks time exactly the same work.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from codec import Attr, Decoder, Encoder, Gaussians, Grid, Profile

U64 = np.uint64
F32 = np.float32
FIELDS = ("positions", "scales", "rotations", "opacities", "sh_dc", "sh_rest")
SPLIT_SHRINK = float(np.log(1.6))  # 3DGS densification shrinks split Gaussians by 1.6
# The 5,000-Gaussian mixed delta: moves, recolours, adds, deletes.
MIX = {"n_move": 3000, "n_color": 1000, "n_add": 500, "n_delete": 500}
MOVE_SIGMA = 0.02   # metres per axis (synthetic scenes span ~40 m plus a background shell)
COLOR_SIGMA = 0.1   # f_dc units (one 8-bit DC step of the compact profile is ~0.027)


def profile_for(g: Gaussians, name: str) -> Profile:
    """A preset profile with the default grid fitted to the scene (what `gsd encode` does)."""
    return Profile.preset(name, g.sh_degree, Grid.fit(g.positions))


def position_step(profile: Profile) -> float:
    """The position quantization step of a lossy profile (cell_size / 2^position_bits)."""
    if profile.quant is None:
        raise ValueError("lossless profiles have no position step")
    return profile.grid.cell_size / (1 << profile.quant.position_bits)


def coherent_motion(g: Gaussians, fraction: float, sigma: float, seed: int = 0) -> tuple[np.ndarray, Gaussians]:
    """Move the ``fraction`` of Gaussians nearest a random point by N(0, sigma) per axis.

    Like codec.synthetic.synthetic_motion but spatially coherent (one region
    moves, as when an object or a limb moves), so the moved ids are close in
    Morton order. Returns sorted row indices and the moved rows.
    """
    rng = np.random.default_rng(seed)
    n = len(g)
    k = int(round(fraction * n))
    centre = g.positions[rng.integers(n)].astype(np.float64)
    d2 = ((g.positions - centre) ** 2).sum(axis=1)
    idx = np.sort(np.argpartition(d2, k - 1)[:k]) if 0 < k < n else np.arange(k)
    rows = g.take(idx)
    rows.positions = (rows.positions + rng.normal(0.0, sigma, (k, 3))).astype(F32)
    return idx.astype(np.int64), rows


@dataclass
class MixedDelta:
    """One frame's edit: the Encoder.encode keyword arguments and the float rows it changes."""

    ops: dict
    move_rows: np.ndarray
    new_positions: np.ndarray
    color_rows: np.ndarray
    new_dc: np.ndarray
    delete_rows: np.ndarray
    add_ids: np.ndarray
    add: Gaussians

    @property
    def size(self) -> int:
        return len(self.move_rows) + len(self.color_rows) + len(self.delete_rows) + len(self.add_ids)


class LiveScene:
    """The float scene behind an encoder's state, kept in step with the frames encoded.

    Each encode advances the encoder's state, so every benchmark repetition
    needs a fresh delta built against the current floats. Rows are never
    compacted (deleted rows are marked dead, adds go into preallocated room),
    so keeping this model in step costs O(delta), not O(scene).
    """

    def __init__(self, g: Gaussians, ids: np.ndarray, room: int = 0):
        n = len(g)
        cap = n + max(0, room)
        self.arrays = {}
        for f in FIELDS:
            src = getattr(g, f)
            a = np.empty((cap,) + src.shape[1:], F32)
            a[:n] = src
            self.arrays[f] = a
        self.ids = np.zeros(cap, U64)
        self.ids[:n] = ids
        self.live = np.zeros(cap, bool)
        self.live[:n] = True
        self.size = n

    def rows(self, idx: np.ndarray) -> Gaussians:
        return Gaussians(*(self.arrays[f][idx] for f in FIELDS))

    def alive(self) -> np.ndarray:
        return np.flatnonzero(self.live[: self.size])

    def mixed_delta(self, enc: Encoder, rng: np.random.Generator, n_move: int = MIX["n_move"],
                    n_color: int = MIX["n_color"], n_add: int = MIX["n_add"], n_delete: int = MIX["n_delete"],
                    move_sigma: float = MOVE_SIGMA, color_sigma: float = COLOR_SIGMA) -> MixedDelta:
        """A mixed edit of random live Gaussians; new ids for the adds come from ``enc``.

        Moves: position += N(0, move_sigma) per axis; recolours: f_dc += N(0,
        color_sigma); the moved, recoloured and deleted sets are disjoint. Adds
        are densification-style clones of random live Gaussians (offset by
        their own size, scales shrunk by 1.6). Moved and recoloured Gaussians
        go in one UPDATE call carrying positions and DC for all of them; the
        encoder's closed loop finds which attribute really changed per id.
        """
        alive = self.alive()
        pick = rng.choice(alive, n_move + n_color + n_delete, replace=False)
        move, color, delete = np.split(pick, [n_move, n_move + n_color])
        pos = self.arrays["positions"]
        dc = self.arrays["sh_dc"]
        new_pos = (pos[move] + rng.normal(0.0, move_sigma, (n_move, 3))).astype(F32)
        new_dc = (dc[color] + rng.normal(0.0, color_sigma, (n_color, 3))).astype(F32)

        src = rng.choice(alive, n_add)
        add = self.rows(src)
        size = np.exp(add.scales.max(axis=1, initial=-np.inf))[:, None]
        add.positions = (add.positions + rng.normal(0.0, 1.0, (n_add, 3)) * size).astype(F32)
        add.scales = (add.scales - SPLIT_SHRINK).astype(F32)
        add_ids = enc.assign_ids(add.positions)

        upd = np.concatenate([move, color])
        upd_pos = np.concatenate([new_pos, pos[color]])
        upd_dc = np.concatenate([dc[move], new_dc])
        ops = {"update": (self.ids[upd], {Attr.POSITION: upd_pos, Attr.SH_DC: upd_dc}),
               "add": (add_ids, add), "delete": self.ids[delete]}
        return MixedDelta(ops, move, new_pos, color, new_dc, delete, add_ids, add)

    def commit(self, md: MixedDelta) -> None:
        """Record that ``md`` was encoded (the encoder's state now includes it)."""
        self.arrays["positions"][md.move_rows] = md.new_positions
        self.arrays["sh_dc"][md.color_rows] = md.new_dc
        self.live[md.delete_rows] = False
        n = len(md.add_ids)
        if self.size + n > len(self.ids):
            self._grow(self.size + n)
        sl = slice(self.size, self.size + n)
        for f in FIELDS:
            self.arrays[f][sl] = getattr(md.add, f)
        self.ids[sl] = md.add_ids
        self.live[sl] = True
        self.size += n

    def _grow(self, need: int) -> None:
        cap = max(need, 2 * len(self.ids))
        for f in FIELDS:
            a = np.empty((cap,) + self.arrays[f].shape[1:], F32)
            a[: self.size] = self.arrays[f][: self.size]
            self.arrays[f] = a
        ids = np.zeros(cap, U64); ids[: self.size] = self.ids[: self.size]; self.ids = ids
        live = np.zeros(cap, bool); live[: self.size] = self.live[: self.size]; self.live = live


class DeltaRig:
    """An encoder and a decoder in step on one keyframed scene, plus its LiveScene.

    ``room`` preallocates rows for that many added Gaussians.
    """

    def __init__(self, g: Gaussians, profile_name: str = "compact", room: int = 0, seed: int = 0):
        self.profile = profile_for(g, profile_name)
        self.enc = Encoder(self.profile)
        ids = self.enc.assign_ids(g.positions)
        self.keyframe = self.enc.keyframe(g, ids)
        self.dec = Decoder(self.enc.header_bytes())
        self.dec.decode_frame(self.keyframe)
        self.scene = LiveScene(g, ids, room)
        self.rng = np.random.default_rng(seed)

    def make(self, **mix) -> MixedDelta:
        return self.scene.mixed_delta(self.enc, self.rng, **mix)

    def encode(self, md: MixedDelta) -> bytes:
        frame = self.enc.encode(**md.ops)
        self.scene.commit(md)
        return frame

    def in_step(self) -> bool:
        return self.dec.state.digest() == self.enc.state.digest()
