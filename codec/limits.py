"""Decoder limits (SPEC.md 9). Defaults are the spec's maxima; a decoder may lower any of them."""
from __future__ import annotations

from dataclasses import dataclass


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


SPEC_LIMITS = Limits()
