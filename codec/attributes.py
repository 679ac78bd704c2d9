"""The Gaussian data model: attribute order, mask bits, and the float container.

Attribute order is normative (SPEC.md 2): it fixes the order of sections in an
ADD block, the bit of each attribute in an UPDATE mask and the order of words
hashed by the state digest.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

SH_C0 = 0.28209479177387814  # Y_0^0; colour = 0.5 + SH_C0 * f_dc


class Attr(IntEnum):
    POSITION = 0
    SCALE = 1
    ROTATION = 2
    OPACITY = 3
    SH_DC = 4
    SH_REST = 5

    @property
    def bit(self) -> int:
        return 1 << int(self)


ATTRS = tuple(Attr)
ALL_MASK = 0x3F


def rest_coeffs(sh_degree: int) -> int:
    """Higher-order SH coefficients per colour channel: (d+1)^2 - 1."""
    return (sh_degree + 1) ** 2 - 1


def components(attr: Attr, sh_degree: int) -> int:
    """Number of scalar components of one attribute of one Gaussian."""
    return (3, 3, 4, 1, 3, 3 * rest_coeffs(sh_degree))[int(attr)]


def rest_degree_rows(sh_degree: int) -> list[np.ndarray]:
    """Per SH degree l = 1..d, the SH_REST components of that degree (R's, then G's, then B's).

    On the wire SH_REST travels as one section per degree (SPEC.md 6.1), so the bands
    decode in parallel and each gets its own zstd statistics.
    """
    k = rest_coeffs(sh_degree)
    return [np.array([c * k + l * l - 1 + j for c in range(3) for j in range(2 * l + 1)])
            for l in range(1, sh_degree + 1)]


def present_attrs(sh_degree: int) -> tuple[Attr, ...]:
    """Attributes that have at least one component at this SH degree."""
    return tuple(a for a in ATTRS if components(a, sh_degree) > 0)


def full_mask(sh_degree: int) -> int:
    return sum(a.bit for a in present_attrs(sh_degree))


def mask_attrs(mask: int) -> tuple[Attr, ...]:
    return tuple(a for a in ATTRS if mask & a.bit)


@dataclass
class Gaussians:
    """Gaussians as float32 arrays, in the conventions of the standard 3DGS PLY.

    positions (N,3) world xyz; scales (N,3) natural log of the std-devs;
    rotations (N,4) quaternion w,x,y,z (not necessarily normalized);
    opacities (N,) logit (pre-sigmoid); sh_dc (N,3) f_dc_0..2;
    sh_rest (N, 3*K) f_rest_* channel-major (all R coefficients, then G, then B),
    K = (d+1)^2 - 1.
    """

    positions: np.ndarray
    scales: np.ndarray
    rotations: np.ndarray
    opacities: np.ndarray
    sh_dc: np.ndarray
    sh_rest: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.positions)
        self.positions = _f32(self.positions, (n, 3), "positions")
        self.scales = _f32(self.scales, (n, 3), "scales")
        self.rotations = _f32(self.rotations, (n, 4), "rotations")
        self.opacities = _f32(self.opacities, (n,), "opacities")
        self.sh_dc = _f32(self.sh_dc, (n, 3), "sh_dc")
        rest = np.asarray(self.sh_rest, dtype=np.float32)
        if rest.ndim == 3:  # (N, 3, K) channel-major
            rest = rest.reshape(n, -1)
        if rest.ndim != 2 or rest.shape[0] != n or rest.shape[1] % 3 or rest.shape[1] // 3 not in (0, 3, 8, 15):
            raise ValueError(f"sh_rest must be (N, 3*K) with K in 0,3,8,15; got {rest.shape}")
        self.sh_rest = np.ascontiguousarray(rest)

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def sh_degree(self) -> int:
        return {0: 0, 3: 1, 8: 2, 15: 3}[self.sh_rest.shape[1] // 3]

    def attribute(self, attr: Attr) -> np.ndarray:
        """The (N, C) float32 array of one attribute."""
        if attr is Attr.OPACITY:
            return self.opacities[:, None]
        return (self.positions, self.scales, self.rotations, None, self.sh_dc, self.sh_rest)[int(attr)]

    @classmethod
    def from_attributes(cls, arrays: dict) -> "Gaussians":
        """Build from {Attr: (N, C) array}."""
        return cls(arrays[Attr.POSITION], arrays[Attr.SCALE], arrays[Attr.ROTATION],
                   np.asarray(arrays[Attr.OPACITY]).reshape(-1), arrays[Attr.SH_DC], arrays[Attr.SH_REST])

    def take(self, index) -> "Gaussians":
        return Gaussians(self.positions[index], self.scales[index], self.rotations[index],
                         self.opacities[index], self.sh_dc[index], self.sh_rest[index])

    def with_sh_degree(self, degree: int) -> "Gaussians":
        """Truncate (or zero-pad) the higher-order SH to another degree."""
        k_old, k_new = rest_coeffs(self.sh_degree), rest_coeffs(degree)
        rest = self.sh_rest.reshape(len(self), 3, k_old)
        out = np.zeros((len(self), 3, k_new), np.float32)
        k = min(k_old, k_new)
        out[:, :, :k] = rest[:, :, :k]
        return Gaussians(self.positions, self.scales, self.rotations, self.opacities, self.sh_dc, out)

    @staticmethod
    def concat(parts: list["Gaussians"]) -> "Gaussians":
        return Gaussians(*(np.concatenate([getattr(p, f) for p in parts])
                           for f in ("positions", "scales", "rotations", "opacities", "sh_dc", "sh_rest")))


def _f32(a, shape, name) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.float32)
    if a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {a.shape}")
    return a


# ------------------------------------------------------------------------------------- geometry
def quat_to_rotmat(q: np.ndarray) -> np.ndarray:
    """(N, 4) quaternions (w, x, y, z), any norm -> (N, 3, 3) rotation matrices (zero q -> identity)."""
    q = np.asarray(q, dtype=np.float64)
    n = np.linalg.norm(q, axis=1, keepdims=True)
    q = np.where(n > 0, q / np.where(n > 0, n, 1.0), np.array([1.0, 0.0, 0.0, 0.0]))
    w, x, y, z = q.T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], axis=1)


def rotmat_to_quat(r: np.ndarray) -> np.ndarray:
    """(N, 3, 3) proper rotations -> (N, 4) unit quaternions w, x, y, z (the inverse of quat_to_rotmat)."""
    w = np.sqrt(np.maximum(0.0, 1 + r[:, 0, 0] + r[:, 1, 1] + r[:, 2, 2])) / 2
    x = np.sqrt(np.maximum(0.0, 1 + r[:, 0, 0] - r[:, 1, 1] - r[:, 2, 2])) / 2
    y = np.sqrt(np.maximum(0.0, 1 - r[:, 0, 0] + r[:, 1, 1] - r[:, 2, 2])) / 2
    z = np.sqrt(np.maximum(0.0, 1 - r[:, 0, 0] - r[:, 1, 1] + r[:, 2, 2])) / 2
    x = np.copysign(x, r[:, 2, 1] - r[:, 1, 2])
    y = np.copysign(y, r[:, 0, 2] - r[:, 2, 0])
    z = np.copysign(z, r[:, 1, 0] - r[:, 0, 1])
    q = np.stack([w, x, y, z], 1)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def covariances(g: Gaussians) -> np.ndarray:
    """(N, 3, 3) world covariances R diag(exp(scale))^2 R^T."""
    m = quat_to_rotmat(g.rotations) * np.exp(g.scales.astype(np.float64))[:, None, :]
    return m @ m.transpose(0, 2, 1)
