"""The reference rasterizer (quality/rasterizer.py) against analytic images and a naive per-pixel loop.

Scenes are a handful of Gaussians on images of at most 33x33 pixels, so every
check is exact to float rounding and the module runs in about a second.
"""
from __future__ import annotations

import numpy as np
import pytest

from codec import Gaussians
from codec.attributes import SH_C0
from quality import rasterizer as rz
from quality.cameras import Camera, look_at, orbit_cameras, pinhole


def _logit(a):
    return float(np.log(a / (1 - a)))


def _dc(rgb):
    return (np.asarray(rgb, np.float64) - 0.5) / SH_C0


def scene(positions, scales, rotations=None, alphas=0.8, colours=(0.5, 0.5, 0.5), sh_rest=None) -> Gaussians:
    """Gaussians from activated values: linear std-devs, alphas in (0, 1), RGB base colours."""
    p = np.atleast_2d(np.asarray(positions, np.float64))
    n = len(p)
    s = np.broadcast_to(np.asarray(scales, np.float64), (n, 3))
    q = np.broadcast_to(np.asarray([1.0, 0, 0, 0] if rotations is None else rotations, np.float64), (n, 4))
    a = np.broadcast_to(np.asarray(alphas, np.float64), (n,))
    c = np.broadcast_to(np.asarray(colours, np.float64), (n, 3))
    rest = np.zeros((n, 0)) if sh_rest is None else np.atleast_2d(sh_rest)
    return Gaussians(p, np.log(s), q, np.log(a / (1 - a)), _dc(c), rest)


def axis_camera(width=33, height=33, fx=40.0) -> Camera:
    """At the origin looking down +z (identity world-to-camera), principal point at the image centre."""
    return Camera(width, height, fx, fx, width / 2, height / 2, np.eye(4))


def pixel_centres(cam: Camera):
    v, u = np.mgrid[0:cam.height, 0:cam.width]
    return u + 0.5, v + 0.5


# ------------------------------------------------------------------------------------------ analytic
def test_isotropic_gaussian_matches_closed_form():
    """On the axis, sigma_px^2 = (fx s / z)^2 + 0.3; pixel = colour * alpha * exp(-r^2 / (2 sigma_px^2))."""
    cam = axis_camera(32, 32, fx=50.0)
    s, z, alpha, col = 0.1, 2.0, 0.8, np.array([0.7, 0.2, 0.4])
    img = rz.render(scene([0, 0, z], s, alphas=alpha, colours=col), cam)
    u, v = pixel_centres(cam)
    var = (cam.fx * s / z) ** 2 + rz.LOW_PASS
    a = alpha * np.exp(-((u - 16) ** 2 + (v - 16) ** 2) / (2 * var))
    a = np.where(a >= 1 / 255, a, 0.0)
    np.testing.assert_allclose(img, a[..., None] * col, atol=2e-6)
    # radially symmetric about the image centre: the four central pixels are the peak, equal
    np.testing.assert_allclose(img, img[::-1], atol=1e-6)
    np.testing.assert_allclose(img, img[:, ::-1], atol=1e-6)
    np.testing.assert_allclose(img, img.transpose(1, 0, 2), atol=1e-6)
    assert np.allclose(img[15:17, 15:17], img.max(axis=(0, 1)), atol=1e-6)


def test_anisotropic_off_axis_gaussian_matches_numerical_jacobian():
    """A rotated, elongated Gaussian off the axis: 2D covariance from a finite-difference Jacobian."""
    cam = Camera(33, 29, 45.0, 41.0, 15.3, 13.9, look_at([0.3, -0.2, -3.0], [0.1, 0.1, 0.0], up=[0, -1, 0]))
    q = np.array([0.9, 0.3, -0.2, 0.25])
    mu, s, alpha, col = np.array([0.35, 0.05, 0.4]), np.array([0.12, 0.05, 0.02]), 0.7, np.array([0.9, 0.5, 0.1])
    img = rz.render(scene(mu, s, q, alpha, col), cam)

    R = rz.quat_to_rotmat(q[None])[0]
    sigma = R @ np.diag(s ** 2) @ R.T
    c = cam.rotation @ mu + cam.translation

    def proj(x):
        return np.array([cam.fx * x[0] / x[2] + cam.cx, cam.fy * x[1] / x[2] + cam.cy])
    J = np.stack([(proj(c + h) - proj(c - h)) / 2e-6 for h in np.eye(3) * 1e-6], axis=1)
    cov = J @ cam.rotation @ sigma @ cam.rotation.T @ J.T + rz.LOW_PASS * np.eye(2)
    u, v = pixel_centres(cam)
    d = np.stack([u, v], -1) - proj(c)
    m2 = np.einsum("...i,ij,...j->...", d, np.linalg.inv(cov), d)
    a = np.minimum(0.99, alpha * np.exp(-m2 / 2))
    a = np.where(a >= 1 / 255, a, 0.0)
    np.testing.assert_allclose(img, a[..., None] * col, atol=1e-5)
    assert img.max() > 0.3  # the blob is in view


def test_near_red_hides_far_blue_whatever_the_input_order():
    cam = axis_camera()
    red, blue = [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]
    g = scene([[0, 0, 5.0], [0, 0, 2.0]], 1.0, alphas=[0.95, 0.95], colours=[blue, red])  # far one first
    img = rz.render(g, cam)
    np.testing.assert_allclose(img[16, 16], [0.95, 0.0, 0.05 * 0.95], atol=1e-6)
    assert (img[..., 0] >= img[..., 2]).all()
    swapped = rz.render(g.take([1, 0]), cam)
    np.testing.assert_array_equal(img, swapped)


def test_compositing_stops_before_transmittance_falls_below_1e4():
    """Alphas 0.95: T goes 1, 0.05, 0.0025, 1.25e-4; the fourth layer would take it to 6.25e-6: not added."""
    cam = axis_camera()
    cols = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1], [1, 1, 1]], np.float64)
    g = scene([[0, 0, z] for z in (2, 3, 4, 5, 6)], 2.0, alphas=0.95, colours=cols)
    bg = np.array([1.0, 1.0, 1.0])
    rgb, T = rz.rasterize(g, cam, background=bg)
    a = 1 / (1 + np.exp(-np.float64(g.opacities[0])))        # 0.95 up to the f32 logit
    w = a * (1 - a) ** np.arange(3)
    np.testing.assert_allclose(T[16, 16], (1 - a) ** 3, rtol=1e-9)
    np.testing.assert_allclose(rgb[16, 16], w @ cols[:3] + (1 - a) ** 3 * bg, atol=1e-9)


def test_sh_degree_one_colour_follows_view_direction():
    """colour = 0.5 + C0 dc - C1 y r1 + C1 z r2 - C1 x r3, (x, y, z) = unit(mean - camera centre)."""
    rest = np.zeros((1, 9))
    rest[0, 0:3] = [0.3, -0.2, 0.5]       # red: coefficients 1..3
    rest[0, 3:6] = [-0.1, 0.4, 0.2]       # green
    rest[0, 6:9] = [0.0, 0.0, 0.0]        # blue: view independent
    alpha, base = 0.9, np.array([0.5, 0.4, 0.6])
    g = scene([0.2, -0.1, 0.3], 0.3, alphas=alpha, colours=base, sh_rest=rest)
    seen = []
    for eye in ([4.0, 1.0, 0.5], [-1.0, -3.5, 2.0], [0.0, 0.5, -4.0]):
        cam = pinhole(33, 33, 50.0, look_at(eye, g.positions[0], up=[0, 0, 1]))
        d = g.positions[0] - np.asarray(eye)
        x, y, z = d / np.linalg.norm(d)
        basis = np.array([-rz.SH_C1 * y, rz.SH_C1 * z, -rz.SH_C1 * x])
        expected = np.maximum(base + rest.reshape(3, 3) @ basis, 0.0)
        got = rz.render(g, cam)[16, 16]                     # the mean projects onto this pixel's centre
        np.testing.assert_allclose(got, alpha * expected, atol=1e-6)
        seen.append(got)
    assert np.ptp(np.array(seen)[:, 0]) > 0.05             # red really changes with the view
    assert np.ptp(np.array(seen)[:, 2]) < 1e-6             # blue does not


def test_negative_sh_colour_is_clamped_to_zero():
    g = scene([0, 0, 2.0], 0.3, alphas=0.9, colours=[-0.5, 0.3, 1.7])
    px = rz.render(g, axis_camera())[16, 16]
    np.testing.assert_allclose(px, [0.0, 0.9 * 0.3, 0.9 * 1.7], atol=1e-6)   # no upper clamp


def test_sh_basis_is_orthonormal():
    """The degree 0..3 basis with the 3DGS constants integrates to the identity over the sphere."""
    n = 200_000
    k = np.arange(n) + 0.5
    z = 1 - 2 * k / n
    phi = np.pi * (1 + 5 ** 0.5) * k
    dirs = np.stack([np.sqrt(1 - z * z) * np.cos(phi), np.sqrt(1 - z * z) * np.sin(phi), z], 1)
    Y = rz.sh_basis(dirs, 3)
    gram = Y.T @ Y * (4 * np.pi / n)
    np.testing.assert_allclose(gram, np.eye(16), atol=2e-3)


def test_empty_scene_and_culled_gaussians_give_the_background():
    cam = axis_camera()
    bg = (0.2, 0.4, 0.6)
    empty = scene(np.zeros((0, 3)), 1.0)
    assert empty.positions.shape == (0, 3)
    np.testing.assert_allclose(rz.render(empty, cam, bg), np.broadcast_to(bg, (33, 33, 3)), atol=1e-7)
    behind = scene([[0, 0, -2.0], [0, 0, 0.005]], 1.0, alphas=0.9)           # behind, and nearer than 0.01
    faint = scene([0, 0, 2.0], 1.0, alphas=0.003)                           # alpha < 1/255
    for g in (behind, faint):
        rgb, T = rz.rasterize(g, cam, bg)
        assert (T == 1).all()
        np.testing.assert_allclose(rgb, np.broadcast_to(bg, (33, 33, 3)), atol=1e-12)


# ------------------------------------------------------------------------------------------ vs naive loop
def naive_render(g: Gaussians, cam: Camera, bg) -> np.ndarray:
    """The per-pixel loop of Appendix B, written plainly (geometry from project())."""
    proj = rz.project(g, cam)
    cols = rz.sh_colours(g.take(proj["index"]), cam.centre)
    order = np.argsort(proj["depth"], kind="stable")
    out = np.zeros((cam.height, cam.width, 3))
    for v in range(cam.height):
        for u in range(cam.width):
            T, C = 1.0, np.zeros(3)
            for i in order:
                dx, dy = u + 0.5 - proj["mean"][i, 0], v + 0.5 - proj["mean"][i, 1]
                a_, b_, c_ = proj["conic"][i]
                a = min(0.99, proj["opacity"][i] * np.exp(-0.5 * (a_ * dx * dx + c_ * dy * dy) - b_ * dx * dy))
                if a < 1 / 255:
                    continue
                if T * (1 - a) < 1e-4:
                    break
                C += cols[i] * a * T
                T *= 1 - a
            out[v, u] = C + T * np.asarray(bg)
    return out


def test_vectorized_compositing_equals_the_naive_loop(monkeypatch):
    rng = np.random.default_rng(3)
    n = 40
    g = Gaussians(rng.normal(0, 0.6, (n, 3)) + [0, 0, 3], rng.normal(-2.0, 0.6, (n, 3)), rng.normal(size=(n, 4)),
                  rng.normal(1.0, 2.0, n), rng.normal(0, 1, (n, 3)), rng.normal(0, 0.3, (n, 24)))
    cam = pinhole(20, 17, 70.0, look_at([0.5, -0.4, -0.5], [0, 0, 3], up=[0, -1, 0]))
    bg = (0.1, 0.2, 0.3)
    ref = naive_render(g, cam, bg)
    np.testing.assert_allclose(rz.rasterize(g, cam, bg)[0], ref, atol=1e-9)
    monkeypatch.setattr(rz, "_CHUNK_FRAGMENTS", 7)          # many chunks: same image
    np.testing.assert_allclose(rz.rasterize(g, cam, bg)[0], ref, atol=1e-9)


# ------------------------------------------------------------------------------------------ cameras
def test_orbit_cameras_look_at_the_centre_from_the_radius_with_up_up():
    centre = np.array([1.0, -2.0, 0.5])
    cams = orbit_cameras(centre, 7.0, 6, 41, 31, fov=50.0, elevation=30.0)
    assert len(cams) == 6
    for cam in cams:
        np.testing.assert_allclose(np.linalg.norm(cam.centre - centre), 7.0, rtol=1e-12)
        np.testing.assert_allclose((cam.centre - centre)[2], 7.0 * np.sin(np.radians(30)), rtol=1e-12)
        R = cam.rotation
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(R) > 0
        c = R @ centre + cam.translation
        np.testing.assert_allclose([cam.fx * c[0] / c[2] + cam.cx, cam.fy * c[1] / c[2] + cam.cy],
                                   [cam.cx, cam.cy], atol=1e-9)
        above = R @ (centre + [0, 0, 1]) + cam.translation                  # world up is image up (smaller v)
        assert cam.fy * above[1] / above[2] + cam.cy < cam.cy
        np.testing.assert_allclose(cam.fx, 0.5 * 41 / np.tan(np.radians(25)))
    azimuths = [np.arctan2(*(c.centre - centre)[[1, 0]]) for c in cams]
    np.testing.assert_allclose(np.diff(np.unwrap(azimuths)), 2 * np.pi / 6)


def test_camera_rejects_bad_input():
    with pytest.raises(ValueError):
        Camera(10, 10, 5, 5, 5, 5, np.eye(3))
    with pytest.raises(ValueError):
        Camera(0, 10, 5, 5, 5, 5, np.eye(4))


def test_gsplat_inputs_describe_the_same_scene():
    """The GPU cross-check's inputs: activated values, coefficient-major SH, the camera as viewmat and K."""
    rng = np.random.default_rng(4)
    g = Gaussians(rng.normal(size=(5, 3)), rng.normal(-2, 0.5, (5, 3)), rng.normal(size=(5, 4)), rng.normal(size=5),
                  rng.normal(size=(5, 3)), rng.normal(size=(5, 45)))
    cam = orbit_cameras([0, 0, 0], 5.0, 1, 40, 30, fov=55.0)[0]
    x = rz.gsplat_inputs(g, cam)
    assert x["colors"].shape == (5, 16, 3) and x["sh_degree"] == 3 and (x["width"], x["height"]) == (40, 30)
    np.testing.assert_array_equal(x["colors"][:, 0], g.sh_dc)
    np.testing.assert_array_equal(x["colors"][:, 1:, 1], g.sh_rest[:, 15:30])                 # green: coeffs 1..15
    np.testing.assert_allclose(x["scales"], np.exp(g.scales), rtol=1e-6)
    np.testing.assert_allclose(x["opacities"], 1 / (1 + np.exp(-g.opacities.astype(np.float64))), rtol=1e-6)
    np.testing.assert_allclose(x["viewmats"][0], cam.world_to_camera, atol=1e-6)
    np.testing.assert_allclose(x["Ks"][0], [[cam.fx, 0, 20], [0, cam.fy, 15], [0, 0, 1]], rtol=1e-6)
    # the colour gsplat evaluates from these coefficients is ours
    d = g.positions[0] - cam.centre
    d /= np.linalg.norm(d)
    ours = rz.sh_colours(g.take([0]), cam.centre)[0]
    np.testing.assert_allclose(np.maximum(rz.sh_basis(d[None], 3)[0] @ x["colors"][0] + 0.5, 0), ours, atol=1e-5)
