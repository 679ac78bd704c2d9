"""The antimatter15 ``.splat`` layout (many web viewers' input) read and write.

No header; 32 bytes per Gaussian, little-endian, in the PLY's coordinate frame:

| bytes | field | encoding |
| --- | --- | --- |
| 0-11 | position | 3 x f32 |
| 12-23 | scale | 3 x f32, linear standard deviations (``exp`` of the PLY's log-scales) |
| 24-27 | colour | 4 x u8 RGBA: RGB = ``(0.5 + SH_C0 * f_dc) * 255``, A = ``sigmoid(opacity) * 255`` |
| 28-31 | rotation | 4 x u8: the unit quaternion (w, x, y, z) as ``q * 128 + 128`` |

The format has no higher-order SH (view-dependent colour is lost) and clamps
the base colour to [0, 1]. Writing rounds to nearest (the original converter
truncates; readers cannot tell). Reading inverts each field: f_dc =
``(c / 255 - 0.5) / SH_C0``, opacity = logit(a / 255) with a = 0 and 255
read as 0.25 and 254.75 (finite, the middle of
the codes' rounding intervals, so re-encoding gives the same bytes), rotation = ``(b - 128) / 128`` (not renormalized;
GSD takes any non-zero quaternion), log-scale = ``ln(max(s, tiny))``.
"""
from __future__ import annotations

import os

import numpy as np

from ..attributes import SH_C0, Gaussians

RECORD = np.dtype([("position", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rotation", "u1", 4)])
assert RECORD.itemsize == 32


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)


def encode_splat(g: Gaussians) -> bytes:
    """The .splat bytes of ``g`` (SH rest dropped)."""
    rec = np.zeros(len(g), RECORD)
    rec["position"] = g.positions
    rec["scale"] = np.exp(g.scales.astype(np.float64))
    alpha = 0.5 * (1.0 + np.tanh(0.5 * g.opacities.astype(np.float64)))
    rec["rgba"][:, :3] = _u8((0.5 + SH_C0 * g.sh_dc.astype(np.float64)) * 255.0)
    rec["rgba"][:, 3] = _u8(alpha * 255.0)
    q = g.rotations.astype(np.float64)
    n = np.linalg.norm(q, axis=1, keepdims=True)
    q = np.where(n > 0, q / np.where(n > 0, n, 1), np.array([1.0, 0, 0, 0]))
    rec["rotation"] = _u8(q * 128.0 + 128.0)
    return rec.tobytes()


def decode_splat(data: bytes, allow_nonfinite: bool = False) -> Gaussians:
    """Gaussians (SH degree 0) from .splat bytes; a length not a multiple of 32 is an error.

    Non-finite positions or scales are an error unless ``allow_nonfinite`` (then
    they pass through, for ``codec.interop.clean`` to judge).
    """
    if len(data) % RECORD.itemsize:
        raise ValueError(f".splat data of {len(data)} bytes is not a whole number of 32-byte records")
    rec = np.frombuffer(data, RECORD)
    pos = rec["position"]
    scale = rec["scale"].astype(np.float64)
    if not allow_nonfinite and not (np.isfinite(pos).all() and np.isfinite(scale).all()):
        raise ValueError(".splat has non-finite positions or scales")
    rgba = rec["rgba"].astype(np.float64)
    a = np.clip(rgba[:, 3], 0.25, 254.75) / 255.0
    with np.errstate(invalid="ignore"):
        log_scale = np.log(np.maximum(np.abs(scale), np.finfo(np.float32).tiny))
    return Gaussians(
        positions=pos,
        scales=log_scale,
        rotations=(rec["rotation"].astype(np.float32) - 128.0) / 128.0,
        opacities=np.log(a / (1.0 - a)),
        sh_dc=(rgba[:, :3] / 255.0 - 0.5) / SH_C0,
        sh_rest=np.zeros((len(rec), 0), np.float32),
    )


def read_splat(path, allow_nonfinite: bool = False) -> Gaussians:
    with open(path, "rb") as f:
        return decode_splat(f.read(), allow_nonfinite)


def write_splat(path, g: Gaussians) -> int:
    """Write ``g`` as .splat; returns the bytes written."""
    data = encode_splat(g)
    with open(os.fspath(path), "wb") as f:
        f.write(data)
    return len(data)
