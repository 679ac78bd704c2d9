"""Delta: one frame's operations in code space, as numpy arrays (SPEC.md 6).

Attribute arrays are planar (C, N) in the profile's code dtypes. UPDATE carries
residuals (new - old, wrapping) for every attribute, zero where its bit is not
in that Gaussian's mask. Ids in each op are sorted ascending and unique.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .attributes import Attr
from .digest import Digest

U64 = np.uint64


def _ids(a=None) -> np.ndarray:
    return np.zeros(0, U64) if a is None else np.asarray(a, dtype=U64).reshape(-1)


@dataclass
class Delta:
    seq: int = 1
    base_seq: int = 0
    keyframe: bool = False
    add_ids: np.ndarray = field(default_factory=_ids)
    add: dict = field(default_factory=dict)          # Attr -> (C, n_add) codes
    update_ids: np.ndarray = field(default_factory=_ids)
    update_mask: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))
    update: dict = field(default_factory=dict)       # Attr -> (C, n_upd) residuals
    delete_ids: np.ndarray = field(default_factory=_ids)
    delete_ranges: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), U64))  # (R, 2) first, last
    delete_cells: dict = field(default_factory=dict)  # level -> cell codes
    digest: Digest | None = None

    @property
    def n_add(self) -> int:
        return len(self.add_ids)

    @property
    def n_update(self) -> int:
        return len(self.update_ids)

    def counts(self) -> dict:
        return {"add": self.n_add, "update": self.n_update, "delete_ids": len(self.delete_ids),
                "delete_ranges": len(self.delete_ranges),
                "delete_cells": int(sum(len(c) for c in self.delete_cells.values()))}

    def is_empty(self) -> bool:
        return not self.keyframe and not any(self.counts().values())

    @classmethod
    def empty_like(cls, profile, seq=1, base_seq=0, keyframe=False) -> "Delta":
        """A delta with zero-length attribute arrays of the right dtypes."""
        d = cls(seq=seq, base_seq=base_seq, keyframe=keyframe)
        for a in Attr:
            c = profile.comps(a)
            d.add[a] = np.zeros((c, 0), profile.dtype(a))
            d.update[a] = np.zeros((c, 0), profile.dtype(a))
        return d

    def equals(self, other: "Delta") -> bool:
        """Structural equality (used by tests)."""
        if (self.seq, self.base_seq, self.keyframe, self.digest) != (other.seq, other.base_seq, other.keyframe, other.digest):
            return False
        arrays = [(self.add_ids, other.add_ids), (self.update_ids, other.update_ids),
                  (self.update_mask, other.update_mask), (self.delete_ids, other.delete_ids),
                  (self.delete_ranges, other.delete_ranges)]
        arrays += [(self.add[a], other.add[a]) for a in Attr if a in self.add or a in other.add]
        arrays += [(self.update[a], other.update[a]) for a in Attr if a in self.update or a in other.update]
        if set(self.delete_cells) != set(other.delete_cells):
            return False
        arrays += [(self.delete_cells[l], other.delete_cells[l]) for l in self.delete_cells]
        return all(x.shape == y.shape and np.array_equal(x, y) for x, y in arrays)
