"""Gaussians on a camera's screen: the projection of SPEC.md Appendix B.

One implementation serves the reference rasterizer (``quality.rasterizer``, which composites the
projected splats into an image) and the view-ordered progressive keyframes (``codec.progressive``,
which composites them to weigh how much of the picture each Gaussian makes). Conventions are
gsplat's and the original 3DGS code's: OpenCV camera axes, pixel centres at (u + 0.5, v + 0.5), EWA
splats with a 0.3 px^2 low-pass, the Jacobian clamped to 1.3 half-fields of view off axis.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .attributes import Gaussians, covariances

NEAR_PLANE = 0.01        # Gaussians whose camera-space depth z is below this are not drawn
LOW_PASS = 0.3           # pixels^2 added to the diagonal of the 2D covariance
ALPHA_MIN = 1.0 / 255.0  # contributions below this are skipped
ALPHA_MAX = 0.99         # alpha is clamped to this
T_MIN = 1e-4             # compositing stops before T would fall below this
FOV_CLAMP = 1.3          # the Jacobian is evaluated at most 1.3 half-fields of view off axis


@dataclass(frozen=True)
class Camera:
    """Image size, intrinsics (pixels) and a 4x4 world-to-camera matrix (OpenCV axes)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    world_to_camera: np.ndarray  # (4, 4) float64, rows: R | t ; last row 0 0 0 1

    def __post_init__(self):
        m = np.asarray(self.world_to_camera, dtype=np.float64)
        if m.shape != (4, 4):
            raise ValueError(f"world_to_camera must be 4x4, got {m.shape}")
        object.__setattr__(self, "world_to_camera", m)
        if self.width < 1 or self.height < 1 or not (self.fx > 0 and self.fy > 0):
            raise ValueError("camera needs positive image size and focal lengths")

    @property
    def rotation(self) -> np.ndarray:
        return self.world_to_camera[:3, :3]

    @property
    def translation(self) -> np.ndarray:
        return self.world_to_camera[:3, 3]

    @property
    def centre(self) -> np.ndarray:
        """Camera centre in world coordinates: -R^T t."""
        return -self.rotation.T @ self.translation

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


def pinhole(width: int, height: int, fov: float, world_to_camera) -> Camera:
    """A camera with horizontal field of view ``fov`` (degrees), square pixels, centred principal point."""
    fx = 0.5 * width / np.tan(np.radians(fov) / 2)
    return Camera(int(width), int(height), fx, fx, width / 2.0, height / 2.0, world_to_camera)


def project(g: Gaussians, cam: Camera) -> dict:
    """Screen-space Gaussians of ``g`` seen by ``cam``: the visible ones' indices, depths, means, conics,
    opacities and pixel boxes. Returned arrays are indexed by position in ``index`` (the rows of ``g``
    kept)."""
    rotation, fx, fy, cx, cy, width, height = cam.rotation, cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height
    t = g.positions.astype(np.float64) @ rotation.T + cam.translation
    alpha = 0.5 * (1.0 + np.tanh(0.5 * g.opacities.astype(np.float64)))  # sigmoid, no overflow
    keep = (t[:, 2] >= NEAR_PLANE) & (alpha >= ALPHA_MIN)
    idx = np.flatnonzero(keep)
    t, alpha = t[idx], alpha[idx]
    cov_c = rotation @ covariances(g.take(idx)) @ rotation.T   # camera-space (n, 3, 3)

    z = t[:, 2]
    half_x, half_y = 0.5 * width / fx, 0.5 * height / fy
    lim_xp = (width - cx) / fx + (FOV_CLAMP - 1) * half_x
    lim_xn = cx / fx + (FOV_CLAMP - 1) * half_x
    lim_yp = (height - cy) / fy + (FOV_CLAMP - 1) * half_y
    lim_yn = cy / fy + (FOV_CLAMP - 1) * half_y
    tx = np.clip(t[:, 0] / z, -lim_xn, lim_xp)
    ty = np.clip(t[:, 1] / z, -lim_yn, lim_yp)
    J = np.zeros((len(idx), 2, 3))
    J[:, 0, 0] = fx / z
    J[:, 0, 2] = -fx * tx / z
    J[:, 1, 1] = fy / z
    J[:, 1, 2] = -fy * ty / z
    cov2 = J @ cov_c @ J.transpose(0, 2, 1)
    a = cov2[:, 0, 0] + LOW_PASS
    b = cov2[:, 0, 1]
    c = cov2[:, 1, 1] + LOW_PASS
    det = a * c - b * b
    mean = np.stack([fx * t[:, 0] / z + cx, fy * t[:, 1] / z + cy], axis=1)

    # pixels whose centre can get alpha >= 1/255: inside m^2 <= 2 ln(255 alpha)
    m2 = 2.0 * np.log(alpha / ALPHA_MIN)
    rx, ry = np.sqrt(m2 * a), np.sqrt(m2 * c)
    u0 = np.maximum(np.ceil(mean[:, 0] - rx - 0.5), 0)
    u1 = np.minimum(np.floor(mean[:, 0] + rx - 0.5), width - 1)
    v0 = np.maximum(np.ceil(mean[:, 1] - ry - 0.5), 0)
    v1 = np.minimum(np.floor(mean[:, 1] + ry - 0.5), height - 1)
    on = (det > 0) & (u1 >= u0) & (v1 >= v0) & np.isfinite(mean).all(1)
    s = np.flatnonzero(on)
    return {"index": idx[s], "depth": z[s], "mean": mean[s], "conic": np.stack([c, -b, a], 1)[s] / det[s, None],
            "opacity": alpha[s], "box": np.stack([u0, v0, u1, v1], 1)[s].astype(np.int64)}


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """World-to-camera 4x4 for a camera at ``eye`` looking at ``target`` (OpenCV axes).

    Camera +z is the viewing direction, +x is to the right of it with respect to
    ``up``, +y = z cross x points down (so "up" in the world is up in the image).
    """
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    fwd = target - eye
    fwd /= np.linalg.norm(fwd)
    right = np.cross(fwd, up)
    if np.linalg.norm(right) < 1e-9:  # looking along up: any perpendicular will do
        right = np.cross(fwd, np.roll(up, 1))
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    m = np.eye(4)
    m[:3, :3] = np.stack([right, down, fwd])
    m[:3, 3] = -m[:3, :3] @ eye
    return m
