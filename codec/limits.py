"""Decoder limits (SPEC.md 9). Defaults are the spec's maxima; a decoder may lower any of them."""
from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Limits:
    max_header_bytes: int = 1 << 16
    max_frame_bytes: int = 1 << 30
    max_gaussians: int = 1 << 24          # live Gaussians in a scene
    max_ids_per_frame: int = 1 << 24      # ADD + UPDATE + DELETE_IDS counts of one frame
    max_ranges_per_frame: int = 1 << 20   # DELETE_RANGES + DELETE_CELLS entries of one frame
    max_blocks: int = 4096
    max_sections: int = 16384
    max_frame_raw_bytes: int = 1 << 32    # sum of raw_size over a frame's sections

    def __post_init__(self):
        # SPEC.md 9.1: a decoder MAY lower a limit and MUST NOT raise it.
        for f in fields(self):
            v = getattr(self, f.name)
            if not 0 <= v <= f.default:
                raise ValueError(f"limit {f.name}={v}: a decoder may lower a limit to [0, {f.default}], never raise it")

    @classmethod
    def lowered(cls, **given: int) -> "Limits":
        """Limits from NAME=VALUE pairs, a value above the spec's treated as the spec's (SPEC.md 9.1)."""
        spec = {f.name: f.default for f in fields(cls)}
        unknown = set(given) - set(spec)
        if unknown:
            raise TypeError(f"unknown limits {sorted(unknown)}")
        return cls(**{k: min(int(v), spec[k]) for k, v in given.items()})


SPEC_LIMITS = Limits()
