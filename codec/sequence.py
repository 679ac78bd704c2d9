"""A sequence of scenes (4D: one scene file per time step) as ONE stream: a keyframe of the first
scene, then one delta per later scene.

Which Gaussian of one scene is which of the next decides what a delta says:

1. ``ids``: both scenes carry ids (a PLY vertex property ``id``): equal ids are the same Gaussian;
2. ``rows``: the same row count: row i is the same Gaussian (a 4D capture's common case);
3. ``values``: rows whose float values are bit-identical match (the k-th copy of a row with the
   k-th copy); the rest of the earlier scene is deleted and the rest of the later one added.

A matched Gaussian whose values changed becomes an UPDATE (the encoder keeps only the attributes
whose codes moved), an unmatched one a DELETE or an ADD with a fresh spatial id. The encoder's
profile (grid, ranges) is the caller's, usually fitted to the first scene: values of later scenes
outside its ranges are clamped, and counted here.
"""
from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field

import numpy as np

from .attributes import ATTRS, Gaussians
from .encoder import Encoder

U64 = np.uint64
SCENE_SUFFIXES = (".ply", ".spz", ".splat", ".sog")  # files a folder of frames contributes
_GLOB = re.compile(r"[*?\[]")


def _natural(path: str) -> list:
    """Sort key: digit runs compare as numbers (frame_2 before frame_10)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", os.path.basename(path))] + [path]


def frame_paths(inputs: list[str]) -> list[str]:
    """The scene files of a sequence, in order: each input is a file, a glob pattern (its matches in
    natural order) or a folder of scene files (natural order; a folder holding ``meta.json`` is one
    SOG scene). FileNotFoundError names an input that gives nothing."""
    out = []
    for p in inputs:
        if os.path.isdir(p) and not os.path.isfile(os.path.join(p, "meta.json")):
            found = [os.path.join(p, f) for f in os.listdir(p) if f.lower().endswith(SCENE_SUFFIXES)]
            if not found:
                raise FileNotFoundError(f"{p}: a folder without scene files ({', '.join(SCENE_SUFFIXES)})")
            out += sorted(found, key=_natural)
        elif not os.path.exists(p) and _GLOB.search(p):
            found = sorted(glob.glob(p), key=_natural)
            if not found:
                raise FileNotFoundError(f"{p}: no file matches")
            out += found
        else:
            out.append(p)
    return out


def file_ids(raw: np.ndarray | None, n: int, where: str = "") -> np.ndarray | None:
    """A file's id column as distinct uint64 values (ValueError: not integers >= 0, or repeated)."""
    if raw is None:
        return None
    a = np.asarray(raw).reshape(-1)
    if len(a) != n:
        raise ValueError(f"{where}id: {len(a)} values for {n} Gaussians")
    if a.dtype.kind == "f":
        if not (np.isfinite(a).all() and (a == np.floor(a)).all() and (a >= 0).all() and (a < 2.0 ** 63).all()):
            raise ValueError(f"{where}id: values must be integers >= 0")
        a = a.astype(np.int64)
    elif a.dtype.kind not in "iu" or (a.dtype.kind == "i" and len(a) and a.min() < 0):
        raise ValueError(f"{where}id: values must be integers >= 0")
    a = a.astype(U64)
    if len(np.unique(a)) != len(a):
        raise ValueError(f"{where}id: {len(a) - len(np.unique(a))} repeated values (an id names one Gaussian)")
    return a


def _table(g: Gaussians) -> np.ndarray:
    """(n, C) uint32 bit patterns of every float of every row: equality here is "identical floats"."""
    cols = [g.attribute(a).reshape(len(g), -1) for a in ATTRS]
    return np.ascontiguousarray(np.concatenate(cols, axis=1), np.float32).view(np.uint32)


def _occurrence_keys(codes: np.ndarray, span: int) -> np.ndarray:
    """Per row: (its value's code, how many identical rows came before it), as one int64 (``span``:
    more than any count)."""
    order = np.argsort(codes, kind="stable")
    s = codes[order]
    start = np.r_[0, np.flatnonzero(s[1:] != s[:-1]) + 1] if len(s) else np.zeros(0, np.int64)
    rank = np.arange(len(s)) - np.repeat(start, np.diff(np.r_[start, len(s)]))
    out = np.empty(len(s), np.int64)
    out[order] = s.astype(np.int64) * span + rank
    return out


def match_rows(prev: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows of ``prev``, rows of ``cur``) of bit-identical float rows (``_table`` of each), the k-th
    copy of a row paired with the k-th copy."""
    both = np.concatenate([prev, cur]).view(np.dtype((np.void, prev.shape[1] * 4))).reshape(-1)
    _, codes = np.unique(both, return_inverse=True)
    codes, span = codes.reshape(-1), len(both) + 1
    _, a, b = np.intersect1d(_occurrence_keys(codes[:len(prev)], span), _occurrence_keys(codes[len(prev):], span),
                             assume_unique=True, return_indices=True)
    return a, b


@dataclass
class StepReport:
    """What one scene of the sequence became."""
    index: int
    keyframe: bool
    matched_by: str        # "-" (keyframe), "ids", "rows" or "values"
    add: int = 0
    update: int = 0        # Gaussians the UPDATE blocks carry (values whose codes moved)
    delete: int = 0
    unchanged: int = 0     # matched Gaussians left as they were
    gaussians: int = 0     # live after the frame
    bytes: int = 0
    clamped: dict = field(default_factory=dict)  # {attribute: components} outside the profile's ranges

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["clamped"] = {a.name.lower(): int(k) for a, k in self.clamped.items() if k}
        return d


class SequenceEncoder:
    """Turns successive scenes into frames of one stream (``encoder``: its header is the stream's)."""

    def __init__(self, encoder: Encoder):
        self.enc = encoder
        self._table = None   # float bit patterns of the last scene's rows
        self._gids = None    # the stream id of each of its rows
        self._keys = None    # its file ids (None: it had none)
        self.index = 0

    def push(self, g: Gaussians, keys: np.ndarray | None = None) -> tuple[bytes, StepReport]:
        """The frame for the next scene ``g`` (``keys``: its file ids, distinct uint64, or None)."""
        enc, profile = self.enc, self.enc.profile
        table = _table(g)
        if self._table is None:
            gids = enc.assign_ids(g.positions)
            frame = enc.keyframe(g, ids=gids)
            rep = StepReport(self.index, True, "-", add=len(g), clamped=profile.clamped(g))
        else:
            how, pr, cr = self._match(table, keys)
            moved = (self._table[pr] != table[cr]).any(axis=1) if len(pr) else np.zeros(0, bool)
            old = np.ones(len(self._table), bool)
            old[pr] = False
            new = np.ones(len(g), bool)
            new[cr] = False
            born = np.flatnonzero(new)
            gids = np.empty(len(g), U64)
            gids[cr] = self._gids[pr]
            gids[born] = enc.assign_ids(g.positions[born])
            ops, clamped = {}, {a: 0 for a in ATTRS}
            if len(born):
                ops["add"] = (gids[born], g.take(born))
            upd = cr[moved]
            if len(upd):
                values = {a: g.attribute(a)[upd] for a in ATTRS}
                ops["update"] = (gids[upd], values)
            if old.any():
                ops["delete"] = self._gids[old]
            for part in ([ops["add"][1]] if "add" in ops else []) + ([ops["update"][1]] if "update" in ops else []):
                for a, k in profile.clamped(part).items():
                    clamped[a] = clamped.get(a, 0) + k
            d = enc.make_delta(**ops)
            frame = enc.encode_delta(d)
            c = d.counts()
            rep = StepReport(self.index, False, how, add=c["add"], update=c["update"], delete=int(old.sum()),
                             unchanged=len(pr) - c["update"], clamped=clamped)
        self._table, self._gids, self._keys = table, gids, keys
        self.index += 1
        rep.gaussians, rep.bytes = len(enc.state), len(frame)
        return frame, rep

    def _match(self, table: np.ndarray, keys: np.ndarray | None) -> tuple[str, np.ndarray, np.ndarray]:
        if keys is not None and self._keys is not None:
            _, pr, cr = np.intersect1d(self._keys, keys, assume_unique=True, return_indices=True)
            return "ids", pr, cr
        if len(table) == len(self._table):
            rows = np.arange(len(table))
            return "rows", rows, rows
        pr, cr = match_rows(self._table, table)
        return "values", pr, cr


def encode_sequence(scenes, encoder: Encoder, write) -> list[StepReport]:
    """Every (Gaussians, file ids or None) of ``scenes`` through one SequenceEncoder; ``write(frame)``
    gets each frame's bytes. Returns the reports, one per scene."""
    seq = SequenceEncoder(encoder)
    reports = []
    for g, keys in scenes:
        frame, rep = seq.push(g, keys)
        write(frame)
        reports.append(rep)
    return reports
