"""Reference 3D Gaussian Splatting rasterizer (numpy, CPU), the conventions of SPEC.md Appendix B.

It is the yardstick for image quality (the PSNR of a decoded scene against the
float original) and the reference a GPU viewer is compared against, so it
favours being exactly specified over being fast. The steps are those of the
reference 3DGS / gsplat renderers:

1. Activations (SPEC.md 2.2): scale = exp(log-scale), rotation = R(q / |q|)
   with q = (w, x, y, z), alpha = sigmoid(opacity); 3D covariance
   Sigma = R diag(scale)^2 R^T.
2. Projection: camera-space mean t = W p + w (OpenCV axes); Gaussians with
   t_z < NEAR_PLANE are dropped. Mean in pixels (fx t_x/t_z + cx, fy t_y/t_z + cy).
   EWA: Sigma_2D = J W Sigma W^T J^T + 0.3 I with the Jacobian J of the
   perspective map taken at t_x/t_z, t_y/t_z clamped to 1.3x the half-field of
   view (as 3DGS and gsplat do, so Gaussians far outside the view do not blow up).
3. Colour: real SH of degree 0..3 with the 3DGS constants, evaluated at the unit
   direction from the camera centre to the mean; colour = max(SH + 0.5, 0) per
   channel (no upper clamp, as in 3DGS).
4. Per pixel (centre at (u + 0.5, v + 0.5)): alpha_i = min(0.99, a_i exp(-d^T
   Sigma_2D^-1 d / 2)); contributions with alpha_i < 1/255 are skipped. The
   Gaussians are composited front to back in increasing t_z (ties: input order):
   C += c_i alpha_i T, T *= (1 - alpha_i), stopping *before* the first
   contribution that would take T below 1e-4. Finally C += T * background.

Extent: no tile and no sigma cut-off changes the image. A Gaussian is
enumerated over the pixels of the bounding box of the ellipse where
a exp(-m^2/2) >= 1/255 (m^2 <= 2 ln(255 a), i.e. 3.33 sigma at a = 1, fewer
sigmas for fainter ones), which holds every pixel it can contribute to. gsplat
uses the same bound; the original 3DGS code's 3-sigma-of-the-major-axis tiles can
drop a few contributions below alpha 0.011 beyond 3 sigma.

Implementation: fragments (pixel, Gaussian, alpha) are generated per chunk of
Gaussians in depth order, sorted stably by pixel (so each pixel's fragments are
front to back), and the transmittance is a segmented cumulative product done as a
cumulative sum of log(1 - alpha) in float64. No Python loop runs per pixel or
per Gaussian; cost grows with the number of fragments.
"""
from __future__ import annotations

import numpy as np

from codec import screen
from codec.attributes import Gaussians, quat_to_rotmat  # noqa: F401 (quat_to_rotmat: this module's API)
from codec.screen import ALPHA_MIN, FOV_CLAMP, LOW_PASS, NEAR_PLANE, T_MIN, project  # noqa: F401 (this module's API)

from .cameras import Camera

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
         -0.4570457994644658, 1.445305721320277, -0.5900435899266435)

ALPHA_MAX = screen.ALPHA_MAX  # alpha is clamped to this (a module global: a comparison with gsplat sets 0.999)

_CHUNK_FRAGMENTS = 1 << 21


# ------------------------------------------------------------------------------------------ SH
def sh_basis(dirs: np.ndarray, degree: int) -> np.ndarray:
    """(N, (degree+1)^2) real SH basis values at unit directions, 3DGS order and signs."""
    x, y, z = dirs[:, 0], dirs[:, 1], dirs[:, 2]
    cols = [np.full_like(x, SH_C0)]
    if degree >= 1:
        cols += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        cols += [SH_C2[0] * xy, SH_C2[1] * yz, SH_C2[2] * (2 * zz - xx - yy), SH_C2[3] * xz, SH_C2[4] * (xx - yy)]
    if degree >= 3:
        cols += [SH_C3[0] * y * (3 * xx - yy), SH_C3[1] * xy * z, SH_C3[2] * y * (4 * zz - xx - yy),
                 SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy), SH_C3[4] * x * (4 * zz - xx - yy),
                 SH_C3[5] * z * (xx - yy), SH_C3[6] * x * (xx - 3 * yy)]
    return np.stack(cols, axis=1)


def sh_colours(g: Gaussians, camera_centre: np.ndarray) -> np.ndarray:
    """(N, 3) float64 colours max(SH(view dir) + 0.5, 0), view dir = mean - camera centre."""
    d = g.positions.astype(np.float64) - np.asarray(camera_centre, dtype=np.float64)
    norm = np.linalg.norm(d, axis=1, keepdims=True)
    d = d / np.where(norm > 0, norm, 1.0)
    basis = sh_basis(d, g.sh_degree)                                   # (N, 1 + K)
    k = basis.shape[1] - 1
    coeffs = np.concatenate([g.sh_dc.astype(np.float64)[:, :, None],  # (N, 3 channels, 1 + K)
                             g.sh_rest.astype(np.float64).reshape(len(g), 3, k)], axis=2)
    return np.maximum(np.einsum("nck,nk->nc", coeffs, basis) + 0.5, 0.0)


# ------------------------------------------------------------------------------------------ geometry
# ------------------------------------------------------------------------------------------ rasterize
def _fragments(proj: dict, order: np.ndarray, width: int):
    """Yield (pixel, gaussian, alpha) arrays, alpha >= 1/255, for chunks of ``order`` (front to back)."""
    box = proj["box"][order]
    nu = box[:, 2] - box[:, 0] + 1
    counts = nu * (box[:, 3] - box[:, 1] + 1)
    ends = np.cumsum(counts)
    cuts = np.searchsorted(ends, np.arange(_CHUNK_FRAGMENTS, ends[-1], _CHUNK_FRAGMENTS), side="left") + 1
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(order)]):
        if lo >= hi:
            continue
        cnt = counts[lo:hi]
        total = int(cnt.sum())
        local = np.repeat(np.arange(hi - lo), cnt)
        off = np.arange(total) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        gi = order[lo:hi][local]
        w = nu[lo:hi][local]
        u = box[lo:hi, 0][local] + off % w
        v = box[lo:hi, 1][local] + off // w
        dx = u + 0.5 - proj["mean"][gi, 0]
        dy = v + 0.5 - proj["mean"][gi, 1]
        con = proj["conic"][gi]
        power = -0.5 * (con[:, 0] * dx * dx + con[:, 2] * dy * dy) - con[:, 1] * dx * dy
        alpha = np.minimum(ALPHA_MAX, proj["opacity"][gi] * np.exp(power))
        ok = alpha >= ALPHA_MIN
        yield (v[ok] * width + u[ok]), gi[ok], alpha[ok]


def rasterize(g: Gaussians, cam: Camera, background=(0.0, 0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) float64 colour and (H, W) final transmittance T of ``g`` seen by ``cam``."""
    H, W = cam.height, cam.width
    bg = np.asarray(background, dtype=np.float64).reshape(3)
    proj = project(g, cam)
    n_pix = H * W
    if len(proj["index"]) == 0:
        return np.broadcast_to(bg, (H, W, 3)).copy(), np.ones((H, W))
    colours = sh_colours(g.take(proj["index"]), cam.centre)
    order = np.argsort(proj["depth"], kind="stable")            # front to back; ties by input order
    parts = list(_fragments(proj, order, W))
    pix = np.concatenate([p[0] for p in parts])
    gid = np.concatenate([p[1] for p in parts])
    alpha = np.concatenate([p[2] for p in parts])
    del parts
    s = np.argsort(pix, kind="stable")                           # per pixel, keeps front-to-back order
    pix, gid, alpha = pix[s], gid[s], alpha[s]
    log1m = np.log1p(-alpha)
    cs = np.cumsum(log1m)
    first = np.r_[True, pix[1:] != pix[:-1]]
    base = (cs - log1m)[first]                                   # cumulative sum before each pixel's run
    log_t_after = cs - np.repeat(base, np.diff(np.r_[np.flatnonzero(first), len(pix)]))
    used = log_t_after >= np.log(T_MIN)                          # a prefix of each run
    weight = np.where(used, alpha * np.exp(log_t_after - log1m), 0.0)
    rgb = np.stack([np.bincount(pix, weight * colours[gid, ch], minlength=n_pix) for ch in range(3)], axis=1)
    T = np.exp(np.bincount(pix, np.where(used, log1m, 0.0), minlength=n_pix))
    rgb += T[:, None] * bg
    return rgb.reshape(H, W, 3), T.reshape(H, W)


def render(gaussians: Gaussians, camera: Camera, background=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Render a scene to an (H, W, 3) float32 image (not clipped to [0, 1]; metrics clip)."""
    return rasterize(gaussians, camera, background)[0].astype(np.float32)


def gsplat_inputs(g: Gaussians, cam: Camera) -> dict:
    """The arguments of ``gsplat.rasterization`` that describe the same scene and camera, as numpy arrays.

    For a cross-check on a GPU: ``gsplat.rasterization(**{k: torch.as_tensor(v, device="cuda") for k, v in
    inputs.items() if k not in ("width", "height", "sh_degree")}, width=..., height=..., sh_degree=...,
    near_plane=NEAR_PLANE, eps2d=LOW_PASS)`` then compare its image with ``render(g, cam)``. gsplat
    activates nothing itself: scales are linear, opacities are alphas, quaternions (w, x, y, z) are
    normalized by it; its SH colours are coefficient-major (N, (d+1)^2, 3). Note gsplat clamps alpha at
    0.999, not 0.99 (set ``ALPHA_MAX = 0.999`` here to compare like with like).
    """
    n, d = len(g), g.sh_degree
    k = (d + 1) ** 2
    coeffs = np.concatenate([g.sh_dc[:, None, :], g.sh_rest.reshape(n, 3, k - 1).transpose(0, 2, 1)], axis=1)
    alpha = 0.5 * (1.0 + np.tanh(0.5 * g.opacities.astype(np.float64)))
    return {"means": g.positions.astype(np.float32), "quats": g.rotations.astype(np.float32),
            "scales": np.exp(g.scales.astype(np.float64)).astype(np.float32), "opacities": alpha.astype(np.float32),
            "colors": coeffs.astype(np.float32), "viewmats": cam.world_to_camera[None].astype(np.float32),
            "Ks": cam.K[None].astype(np.float32), "width": cam.width, "height": cam.height, "sh_degree": d}
