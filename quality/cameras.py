"""Pinhole cameras in the conventions of SPEC.md Appendix B.

A camera is intrinsics in pixels (fx, fy, cx, cy) plus a world-to-camera rigid
transform in the OpenCV convention: camera +x right, +y down, +z forward (the
direction the camera looks). Pixel (u, v) -- column u, row v -- covers
[u, u+1) x [v, v+1) in the continuous image coordinates in which the principal
point (cx, cy) and projected means are given, so its centre is (u + 0.5, v + 0.5).
These are gsplat's conventions, which is what makes the renders comparable.
"""
from __future__ import annotations

import numpy as np

from codec.screen import NEAR_PLANE, Camera, look_at, pinhole  # noqa: F401 (this module's API)


def orbit_cameras(center, radius: float, n: int, width: int, height: int, fov: float = 60.0,
                  elevation: float = 20.0, up=(0.0, 0.0, 1.0), phase: float = 0.0) -> list[Camera]:
    """``n`` cameras evenly spaced on a circle around ``center``, all looking at it.

    The circle lies ``elevation`` degrees above the plane perpendicular to ``up``
    (the synthetic scenes are z-up), at distance ``radius`` from ``center``;
    azimuths are ``phase + 360 k / n`` degrees.
    """
    center = np.asarray(center, dtype=np.float64)
    up = np.asarray(up, dtype=np.float64)
    up = up / np.linalg.norm(up)
    a = np.cross(up, [1.0, 0.0, 0.0])
    if np.linalg.norm(a) < 1e-6:
        a = np.cross(up, [0.0, 1.0, 0.0])
    a /= np.linalg.norm(a)
    b = np.cross(up, a)
    el = np.radians(elevation)
    cams = []
    for k in range(n):
        az = np.radians(phase) + 2 * np.pi * k / n
        d = np.cos(el) * (np.cos(az) * a + np.sin(az) * b) + np.sin(el) * up
        cams.append(pinhole(width, height, fov, look_at(center + radius * d, center, up)))
    return cams
