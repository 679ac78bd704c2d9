"""Delta: one frame's operations in code space, as on the wire (SPEC.md 6).

ADD carries planar (C, N) codes of every attribute. UPDATE ops stay in wire form: a list of
blocks, each a mask and the residuals (new - old, wrapping) of exactly the attributes that mask
names, so a position-only update of 5,000 Gaussians holds 15,000 position residuals and nothing
else. Ids within each op or block are strictly ascending; ids are disjoint across blocks.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .attributes import Attr, mask_attrs
from .digest import Digest

U64 = np.uint64


def _ids(a=None) -> np.ndarray:
    return np.zeros(0, U64) if a is None else np.asarray(a, dtype=U64).reshape(-1)


@dataclass
class UpdateBlock:
    """One UPDATE op block: Gaussians that change the same attributes (SPEC.md 6.1)."""

    mask: int
    ids: np.ndarray   # uint64, strictly ascending
    res: dict         # Attr -> (C, n) residual codes, for each attribute of ``mask``

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class RankedBlock:
    """An UPDATE_RANKED or DELETE_RANKED block as read (SPEC.md 6.1, ranked ids): ranks among the
    ids live before the frame. The state that applies the frame resolves it into an UPDATE block
    (``update``, whose ids are then filled in) or DELETE_IDS ids (``update`` None)."""

    ranks: np.ndarray                 # uint32, as on the wire (the state checks their order)
    update: UpdateBlock | None = None

    def __len__(self) -> int:
        return len(self.ranks)


@dataclass
class PaletteSet:
    """Palette entries a frame sets (SPEC.md 6.1, PALETTE): indices strictly ascending, and the
    (3K, n) SH_REST component codes of each entry."""

    index: np.ndarray  # uint16
    codes: np.ndarray  # (3K, n), the profile's rest_dtype

    def __len__(self) -> int:
        return len(self.index)

    @staticmethod
    def merged(first: "PaletteSet | None", then: "PaletteSet | None") -> "PaletteSet | None":
        """Entries set by ``first`` or ``then``, ``then``'s where both set one (entries are absolute
        codes, never residuals): one frame's sets after another's, or two sets of one frame."""
        if first is None or then is None:
            return first if then is None else then
        keep = ~np.isin(first.index, then.index, assume_unique=True)
        index = np.concatenate([first.index[keep], then.index])
        order = np.argsort(index, kind="stable")
        return PaletteSet(index[order], np.concatenate([first.codes[:, keep], then.codes], axis=1)[:, order])


def mask_rows(masks: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(mask, rows holding it) for each distinct non-zero mask, ascending."""
    masks = np.asarray(masks, np.uint8)
    return [(int(m), np.flatnonzero(masks == m)) for m in np.flatnonzero(np.bincount(masks, minlength=64)[1:]) + 1]


def group_updates(ids: np.ndarray, masks: np.ndarray, res: dict, groups=None) -> list[UpdateBlock]:
    """Blocks from per-Gaussian masks and full-width residuals (for builders that have them dense).

    ``ids`` ascending; ``res[a]`` is (C, n) for each attribute any mask names. Gaussians with
    mask 0 are dropped. One block per distinct mask, in ascending mask order (``groups``: the
    ``mask_rows(masks)`` the caller already has).
    """
    ids = np.asarray(ids, U64)
    return [UpdateBlock(m, ids[rows], {a: np.ascontiguousarray(res[a][:, rows]) for a in mask_attrs(m)})
            for m, rows in (mask_rows(masks) if groups is None else groups)]


@dataclass
class Delta:
    seq: int = 1
    base_seq: int = 0
    keyframe: bool = False
    add_ids: np.ndarray = field(default_factory=_ids)
    add: dict = field(default_factory=dict)          # Attr -> (C, n_add) codes
    updates: list = field(default_factory=list)      # UpdateBlock, in wire order
    delete_ids: np.ndarray = field(default_factory=_ids)
    delete_ranges: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), U64))  # (R, 2) first, last
    delete_cells: dict = field(default_factory=dict)  # level -> cell codes
    digest: Digest | None = None
    palette: PaletteSet | None = None                # entries set by PALETTE blocks (SH palette streams)
    # ranked blocks not yet resolved against the state before the frame (a decoded frame's, until
    # it is applied: SceneState.apply moves them into ``updates`` and ``delete_ids``)
    ranked: list = field(default_factory=list)       # RankedBlock, in wire order
    # (state token, slots of each UPDATE block) from the encoder that built this delta against that
    # state: apply skips looking the ids up again while the state is unchanged. Not part of the frame.
    slot_hint: tuple | None = field(default=None, repr=False, compare=False)

    @property
    def n_add(self) -> int:
        return len(self.add_ids)

    @property
    def n_update(self) -> int:
        return sum(len(b.ids) for b in self.updates)

    @property
    def update_ids(self) -> np.ndarray:
        """Every UPDATEd id, block after block (for inspection; the codec itself works per block)."""
        return np.concatenate([b.ids for b in self.updates]) if self.updates else _ids()

    @property
    def update_mask(self) -> np.ndarray:
        """The mask of each id of ``update_ids``."""
        if not self.updates:
            return np.zeros(0, np.uint8)
        return np.concatenate([np.full(len(b.ids), b.mask, np.uint8) for b in self.updates])

    def counts(self) -> dict:
        """Ops by kind; a ranked block not yet resolved counts with the kind it resolves to."""
        ranked_upd = sum(len(b) for b in self.ranked if b.update is not None)
        ranked_del = sum(len(b) for b in self.ranked if b.update is None)
        return {"add": self.n_add, "update": self.n_update + ranked_upd, "delete_ids": len(self.delete_ids) + ranked_del,
                "palette": 0 if self.palette is None else len(self.palette),
                "delete_ranges": len(self.delete_ranges),
                "delete_cells": int(sum(len(c) for c in self.delete_cells.values()))}

    def is_empty(self) -> bool:
        return not self.keyframe and not any(self.counts().values())

    @classmethod
    def empty_like(cls, profile, seq=1, base_seq=0, keyframe=False) -> "Delta":
        """A delta with zero-length ADD arrays of the right dtypes and no UPDATE blocks."""
        d = cls(seq=seq, base_seq=base_seq, keyframe=keyframe)
        for a in Attr:
            d.add[a] = np.zeros((profile.comps(a), 0), profile.dtype(a))
        return d

    def equals(self, other: "Delta") -> bool:
        """Structural equality (used by tests)."""
        if (self.seq, self.base_seq, self.keyframe, self.digest) != (other.seq, other.base_seq, other.keyframe, other.digest):
            return False
        if len(self.updates) != len(other.updates) or set(self.delete_cells) != set(other.delete_cells):
            return False
        if len(self.ranked) != len(other.ranked) or any((x.update is None) != (y.update is None)
                                                        for x, y in zip(self.ranked, other.ranked)):
            return False
        arrays = [(self.add_ids, other.add_ids), (self.delete_ids, other.delete_ids),
                  (self.delete_ranges, other.delete_ranges)]
        arrays += [(self.add[a], other.add[a]) for a in Attr if a in self.add or a in other.add]
        arrays += [(x.ranks, y.ranks) for x, y in zip(self.ranked, other.ranked)]
        blocks = list(zip(self.updates, other.updates))
        blocks += [(x.update, y.update) for x, y in zip(self.ranked, other.ranked) if x.update is not None]
        for x, y in blocks:   # UPDATE blocks, and those of UPDATE_RANKED blocks (ids empty until resolved)
            if x.mask != y.mask or set(x.res) != set(y.res):
                return False
            arrays += [(x.ids, y.ids)] + [(x.res[a], y.res[a]) for a in x.res]
        arrays += [(self.delete_cells[l], other.delete_cells[l]) for l in self.delete_cells]
        if (self.palette is None) != (other.palette is None):
            return False
        if self.palette is not None:
            arrays += [(self.palette.index, other.palette.index), (self.palette.codes, other.palette.codes)]
        return all(x.shape == y.shape and np.array_equal(x, y) for x, y in arrays)
