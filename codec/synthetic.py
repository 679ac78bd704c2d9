"""Synthetic scenes with the statistics of trained 3DGS scenes (for tests and benchmarks).

``synthetic_scene(n, sh_degree, seed, extent)`` is deterministic for a seed
(numpy PCG64) and fully vectorized. Its statistics, chosen to match what
3DGS training produces on outdoor/room-scale captures (z is up; the scene
spans about [-extent, extent] horizontally):

* **Positions** lie on surfaces, not in a volume. About 30% on a ground plane
  with gentle height variation (four sinusoids, amplitude 0.5-2% of extent
  each), half of it uniform and half centre-weighted; about 33% on boxes (buildings, furniture: random
  size and yaw, 5 faces sampled by area); about 32% on ellipsoids (trees:
  raised, fuzzy; rocks: squashed, half buried); about 3% on a far background
  shell at 1.3-2x extent (sky, distant geometry) and 2% floaters in the
  volume. A few hundred objects in all (``min(300, max(3, n // 200))``
  boxes and ellipsoids, plus the ground, background and floaters), each
  with points in proportion to its area times a log-normal density factor.
  Rows are in random order (as trainers emit them: SfM points, then
  densified clones appended), not sorted spatially or by object. Every point is jittered along its
  surface normal (std 0.1% of extent on hard surfaces, 0.8% on foliage).
* **Scales** (natural log of std-dev): per object an offset N(0, 0.3), per
  Gaussian a log-normal size around log(0.01 * extent / 20) (std 0.6;
  +2.0 on the background shell, +0.8 for floaters); the two tangential axes
  differ by N(0, 0.35) (elongation), the surface-normal axis is smaller by a
  factor log-uniform in [3, 10]. Which local axis is the normal one is random
  per Gaussian. Clamped to [-12, 2].
* **Rotations**: unit quaternions (w, x, y, z) mapping the flat local axis to
  the surface normal, with a uniform random spin about it and a random
  overall sign (q and -q are the same rotation; trainers produce both).
* **Opacity**: logits of a mixture of sigmoid values -- 60% near 1
  (1 - Beta(0.5, 6)), 25% near 0 (Beta(0.5, 8)), 15% uniform -- clipped to
  [0.001, 0.99995] before the logit, so logits lie in about [-6.9, 9.9].
  sigmoid(opacity) has ~45% of its mass above 0.9 and ~21% below 0.1.
* **SH DC** (f_dc units; colour = 0.5 + 0.2820948 * f_dc): a per-object base
  colour (palette by object type: earth/grass, concrete/brick, foliage,
  stone, sky) plus per-Gaussian noise (a shared luminance term N(0, 0.3) and
  per-channel N(0, 0.12)), 2% bright outliers (+Exp(0.8)), clipped to [-2, 3].
* **SH rest**: zero mean; std 0.12 / 0.06 / 0.03 for the degree 1 / 2 / 3
  bands; correlated across the R, G, B channels (correlation 0.7) as in real
  view-dependent colour; a per-Gaussian log-normal energy factor (heavy tails,
  Gaussian scale mixture) and 0.5% outliers with 5x energy; clipped to
  [-1.5, 1.5].

``synthetic_motion`` and ``perturb_colors`` make the rows of one frame of an
edit (a random subset, moved or recoloured) for delta benchmarks.

Normal deviates come from a 16-bit inverse-CDF table (65536 levels, |z| <= 4.3)
for speed; every use is scaled by a continuous per-object or per-Gaussian
factor, so the output values are not visibly discretized.
"""
from __future__ import annotations

import numpy as np

from .attributes import SH_C0, Gaussians, rest_coeffs

__all__ = ["synthetic_scene", "synthetic_motion", "perturb_colors", "apply_rows"]

F32 = np.float32
SCALE_MIN, SCALE_MAX = -12.0, 2.0

# object kinds
_GROUND, _BOX, _TREE, _ROCK, _SKY, _FLOAT = range(6)
# (fraction of Gaussians) per kind; trees + rocks together are the ellipsoids
_KIND_SHARE = {_GROUND: 0.30, _BOX: 0.33, _TREE: 0.20, _ROCK: 0.12, _SKY: 0.03, _FLOAT: 0.02}
# base colours (RGB in [0, 1]) per kind: a few palette entries, each perturbed per object
_PALETTE = {
    _GROUND: [(0.42, 0.36, 0.27), (0.33, 0.42, 0.22), (0.55, 0.53, 0.50)],
    _BOX: [(0.70, 0.68, 0.64), (0.55, 0.30, 0.24), (0.85, 0.80, 0.70), (0.30, 0.32, 0.36)],
    _TREE: [(0.20, 0.35, 0.12), (0.28, 0.42, 0.16), (0.35, 0.38, 0.18)],
    _ROCK: [(0.45, 0.44, 0.42), (0.55, 0.50, 0.44), (0.35, 0.34, 0.33)],
    _SKY: [(0.62, 0.75, 0.92), (0.88, 0.90, 0.93)],
    _FLOAT: [(0.5, 0.5, 0.5)],
}
_REST_STD = {1: 0.12, 2: 0.06, 3: 0.03}


_NTAB: np.ndarray | None = None


def _randn(rng: np.random.Generator, shape) -> np.ndarray:
    """Standard normal float32 deviates by inverse-CDF lookup of 16 random bits (65536 levels, |z| <= 4.3).

    About 3x faster than ``Generator.standard_normal`` and plenty for synthetic data: every use
    is multiplied by a continuous per-Gaussian or per-object factor.
    """
    global _NTAB
    if _NTAB is None:
        from statistics import NormalDist
        inv = NormalDist().inv_cdf
        _NTAB = np.array([inv((i + 0.5) / 65536.0) for i in range(65536)], dtype=F32)
    return _NTAB[rng.integers(0, 65536, size=shape, dtype=np.uint16)]


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _ground_height(x, y, extent, waves):
    h = np.zeros_like(x)
    dx = np.zeros_like(x)
    dy = np.zeros_like(x)
    for amp, kx, ky, ph in waves:
        arg = (kx * x + ky * y) / extent + ph
        h += amp * np.sin(arg)
        c = amp * np.cos(arg) / extent
        dx += c * kx
        dy += c * ky
    return h, dx, dy


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    aw, ax, ay, az = a.T
    bw, bx, by, bz = b.T
    return np.stack([aw * bw - ax * bx - ay * by - az * bz,
                     aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw], axis=1)


def _align_quats(axis: np.ndarray, normal: np.ndarray, spin: np.ndarray) -> np.ndarray:
    """Unit quaternions q (w,x,y,z) with R(q) e_axis = normal, spun by ``spin`` about e_axis."""
    n = len(axis)
    e = np.zeros((n, 3), normal.dtype)
    e[np.arange(n), axis] = 1.0
    dot = np.einsum("ij,ij->i", e, normal)
    q = np.empty((n, 4), normal.dtype)
    q[:, 0] = 1.0 + dot
    q[:, 1:] = np.cross(e, normal)
    anti = dot < -1.0 + 1e-6  # normal = -e: rotate by pi about any axis perpendicular to e
    if anti.any():
        perp = np.zeros((int(anti.sum()), 3), normal.dtype)
        perp[np.arange(len(perp)), (axis[anti] + 1) % 3] = 1.0
        q[anti, 0] = 0.0
        q[anti, 1:] = perp
    q = _unit(q)
    s = np.zeros((n, 4), normal.dtype)
    s[:, 0] = np.cos(spin / 2)
    s[np.arange(n), 1 + axis] = np.sin(spin / 2)
    return _quat_mul(q, s)


def synthetic_scene(n: int, sh_degree: int = 3, seed: int = 0, extent: float = 20.0) -> Gaussians:
    """n Gaussians with the statistics of a trained 3DGS scene (see the module docstring).

    Deterministic for (n, sh_degree, seed, extent).
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    if sh_degree not in (0, 1, 2, 3):
        raise ValueError(f"sh_degree must be 0..3, got {sh_degree}")
    rng = np.random.default_rng(seed)
    E = float(extent)
    k = rest_coeffs(sh_degree)
    if n == 0:
        z = np.zeros((0, 3), F32)
        return Gaussians(z, z, np.zeros((0, 4), F32), np.zeros(0, F32), z, np.zeros((0, 3 * k), F32))

    # ---- objects -------------------------------------------------------------------------------
    n_obj = int(min(300, max(3, n // 200)))
    n_box = max(1, int(round(n_obj * 0.45)))
    n_tree = max(1, int(round(n_obj * 0.30)))
    n_rock = max(1, n_obj - n_box - n_tree)
    kinds = np.concatenate([[_GROUND], np.full(n_box, _BOX), np.full(n_tree, _TREE), np.full(n_rock, _ROCK),
                            [_SKY, _FLOAT]]).astype(np.int64)
    n_all = len(kinds)
    # per-object geometry: centre xy, size (3), yaw
    waves = [(rng.uniform(0.005, 0.02) * E, rng.uniform(1, 6), rng.uniform(1, 6), rng.uniform(0, 2 * np.pi))
             for _ in range(4)]
    cxy = rng.uniform(-0.8 * E, 0.8 * E, (n_all, 2)) * np.sqrt(rng.uniform(0.05, 1.0, (n_all, 1)))
    base_h, _, _ = _ground_height(cxy[:, 0], cxy[:, 1], E, waves)
    size = np.empty((n_all, 3))
    size[:, 0:2] = rng.uniform(0.03, 0.15, (n_all, 2)) * E                      # boxes: w, d
    size[:, 2] = rng.uniform(0.05, 0.4, n_all) * E                               # boxes: height
    tree = kinds == _TREE
    size[tree, 0:2] = rng.uniform(0.02, 0.06, (int(tree.sum()), 1)) * E * rng.uniform(0.8, 1.2, (int(tree.sum()), 2))
    size[tree, 2] = size[tree, 0] * rng.uniform(1.0, 2.2, int(tree.sum()))
    rock = kinds == _ROCK
    size[rock] = rng.uniform(0.005, 0.03, (int(rock.sum()), 1)) * E * rng.uniform(0.6, 1.4, (int(rock.sum()), 3))
    size[rock, 2] *= 0.6
    yaw = rng.uniform(0, 2 * np.pi, n_all)
    centre = np.column_stack([cxy, base_h])
    centre[tree, 2] += size[tree, 2] * rng.uniform(0.8, 1.6, int(tree.sum()))   # canopy above a trunk
    centre[rock, 2] -= size[rock, 2] * 0.3                                        # half buried
    # per-object colour and scale offset
    base_rgb = np.empty((n_all, 3))
    for kind, pal in _PALETTE.items():
        sel = np.flatnonzero(kinds == kind)
        pick = np.asarray(pal)[rng.integers(0, len(pal), len(sel))]
        base_rgb[sel] = np.clip(pick * rng.uniform(0.7, 1.3, (len(sel), 1)) + rng.normal(0, 0.04, (len(sel), 3)),
                                0.02, 0.98)
    base_dc = (base_rgb - 0.5) / SH_C0
    scale_off = rng.normal(0.0, 0.3, n_all)
    scale_off[kinds == _SKY] += 2.0
    scale_off[kinds == _FLOAT] += 0.8

    # ---- assign Gaussians to objects -------------------------------------------------------------
    weights = np.empty(n_all)
    for kind, share in _KIND_SHARE.items():
        sel = kinds == kind
        w = np.exp(rng.normal(0, 0.5, int(sel.sum())))                            # log-normal density factor
        if kind in (_BOX, _TREE, _ROCK):
            w *= (size[sel] ** 2).sum(1)                                          # ~ surface area
        weights[sel] = share * w / w.sum()
    # random row order, as trainers emit it (SfM points, then densified clones appended): not spatially sorted
    obj = rng.choice(n_all, size=n, p=weights / weights.sum())

    scene = dict(kinds=kinds, size=size, yaw=yaw, centre=centre, waves=waves, E=E, base_dc=base_dc,
                 scale_off=scale_off, k=k, sh_degree=sh_degree)
    pos = np.empty((n, 3), F32)
    scales = np.empty((n, 3), F32)
    quats = np.empty((n, 4), F32)
    opac = np.empty(n, F32)
    dc = np.empty((n, 3), F32)
    rest = np.empty((n, 3, k), F32)
    for start in range(0, n, _CHUNK):  # chunks keep temporaries in cache; the chunk size is fixed -> deterministic
        sl = slice(start, min(n, start + _CHUNK))
        _fill(rng, scene, obj[sl], pos[sl], scales[sl], quats[sl], opac[sl], dc[sl], rest[sl])
    return Gaussians(pos, scales, quats, opac, dc, rest.reshape(n, 3 * k))


_CHUNK = 1 << 15


def _fill(rng, scene, obj, pos_out, scales_out, quats_out, opac_out, dc_out, rest_out) -> None:
    """Per-Gaussian attributes of one chunk of rows (object ids ``obj``) into the output views."""
    n = len(obj)
    E, kinds, size, yaw, centre = scene["E"], scene["kinds"], scene["size"], scene["yaw"], scene["centre"]
    kind = kinds[obj]
    pos = np.empty((n, 3))
    nrm = np.empty((n, 3))
    jitter_std = np.full(n, 0.001 * E)

    # ground: mix of uniform and centre-weighted samples
    m = kind == _GROUND
    c = int(m.sum())
    if c:
        u = rng.uniform(-E, E, (c, 2))
        central = rng.random(c) < 0.5
        u[central] = np.clip(_randn(rng, (int(central.sum()), 2)) * (0.35 * E), -E, E)
        h, dx, dy = _ground_height(u[:, 0], u[:, 1], E, scene["waves"])
        pos[m] = np.column_stack([u, h])
        nrm[m] = _unit(np.column_stack([-dx, -dy, np.ones(c)]))

    # boxes: 4 sides + top, sampled by area, rotated by yaw about z, standing on the ground
    m = kind == _BOX
    c = int(m.sum())
    if c:
        o = obj[m]
        w, d, hgt = size[o, 0], size[o, 1], size[o, 2]
        areas = np.column_stack([d * hgt, d * hgt, w * hgt, w * hgt, w * d])
        cum = np.cumsum(areas, 1)
        face = (rng.random(c)[:, None] * cum[:, -1:] > cum).sum(1)
        a, b = rng.random(c) - 0.5, rng.random(c)
        local = np.empty((c, 3))
        ln = np.zeros((c, 3))
        sign = np.where(face % 2 == 0, 0.5, -0.5)
        fx, fy, ft = face < 2, (face >= 2) & (face < 4), face == 4
        local[fx] = np.column_stack([sign[fx] * w[fx], a[fx] * d[fx], b[fx] * hgt[fx]])
        ln[fx, 0] = np.sign(sign[fx])
        local[fy] = np.column_stack([a[fy] * w[fy], sign[fy] * d[fy], b[fy] * hgt[fy]])
        ln[fy, 1] = np.sign(sign[fy])
        local[ft] = np.column_stack([a[ft] * w[ft], (b[ft] - 0.5) * d[ft], hgt[ft]])
        ln[ft, 2] = 1.0
        cy, sy = np.cos(yaw[o]), np.sin(yaw[o])

        def rot(v):
            return np.column_stack([cy * v[:, 0] - sy * v[:, 1], sy * v[:, 0] + cy * v[:, 1], v[:, 2]])
        pos[m] = centre[o] + rot(local)
        nrm[m] = rot(ln)

    # ellipsoids (trees, rocks), sky shell and floaters: directions on the unit sphere
    m = (kind == _TREE) | (kind == _ROCK)
    c = int(m.sum())
    if c:
        o = obj[m]
        dirs = _unit(_randn(rng, (c, 3)))
        r = size[o]
        pos[m] = centre[o] + dirs * r
        nrm[m] = _unit(dirs / r)
        jitter_std[m] = np.where(kinds[o] == _TREE, 0.008 * E, 0.001 * E)
    m = kind == _SKY
    c = int(m.sum())
    if c:
        dirs = _unit(_randn(rng, (c, 3)))
        dirs[:, 2] = np.abs(dirs[:, 2]) * 0.6 + 0.02                              # upper hemisphere, flattened
        dirs = _unit(dirs)
        pos[m] = dirs * (E * rng.uniform(1.3, 2.0, (c, 1)))
        nrm[m] = -dirs
        jitter_std[m] = 0.01 * E
    m = kind == _FLOAT
    c = int(m.sum())
    if c:
        pos[m] = rng.uniform(-E, E, (c, 3)) * np.array([1.0, 1.0, 0.3]) + np.array([0, 0, 0.3 * E])
        nrm[m] = _unit(_randn(rng, (c, 3)))
        jitter_std[m] = 0.0
    pos += nrm * (_randn(rng, n) * jitter_std)[:, None]
    pos_out[:] = pos

    # ---- scales and rotations ------------------------------------------------------------------------
    s0 = np.log(0.01 * E / 20.0) + scene["scale_off"][obj] + _randn(rng, n) * 0.6
    t1 = s0 + _randn(rng, n) * 0.35
    t2 = s0 - np.abs(_randn(rng, n)) * 0.35
    sn = np.minimum(t1, t2) - rng.uniform(np.log(3.0), np.log(10.0), n)
    axis = rng.integers(0, 3, n)
    idx = np.arange(n)
    scales = np.empty((n, 3))
    scales[idx, axis] = sn
    scales[idx, (axis + 1) % 3] = t1
    scales[idx, (axis + 2) % 3] = t2
    np.clip(scales, SCALE_MIN, SCALE_MAX, out=scales)
    scales_out[:] = scales
    quats = _align_quats(axis, nrm, rng.uniform(0, 2 * np.pi, n))
    quats *= np.where(rng.random(n) < 0.5, -1.0, 1.0)[:, None]
    quats_out[:] = _unit(quats)

    # ---- opacity --------------------------------------------------------------------------------
    comp = rng.random(n)
    p = rng.random(n)                                                             # 15% uniform
    hi, lo = comp < 0.60, (comp >= 0.60) & (comp < 0.85)
    p[hi] = 1.0 - rng.beta(0.5, 6.0, int(hi.sum()))
    p[lo] = rng.beta(0.5, 8.0, int(lo.sum()))
    p = np.clip(p, 1e-3, 1.0 - 5e-5)
    opac_out[:] = np.log(p) - np.log1p(-p)

    # ---- SH DC ----------------------------------------------------------------------------------
    dc = scene["base_dc"][obj] + _randn(rng, (n, 1)) * 0.3 + _randn(rng, (n, 3)) * 0.12
    bright = rng.random(n) < 0.02
    dc[bright] += rng.exponential(0.8, (int(bright.sum()), 1))
    np.clip(dc, -2.0, 3.0, out=dc_out)

    # ---- SH rest --------------------------------------------------------------------------------
    k = scene["k"]
    if k:
        deg = np.concatenate([np.full(2 * l + 1, l) for l in range(1, scene["sh_degree"] + 1)])
        std = np.array([_REST_STD[l] for l in deg], dtype=F32)                   # (k,)
        z = rest_out                                                              # (n, 3, k) channel-major
        z[:] = _randn(rng, z.shape)
        # correlate the channels: (R, G, B) = L (w0, w1, w2), L the Cholesky factor of corr 0.7
        l = _REST_CHOL
        z[:, 2] *= l[2, 2]
        z[:, 2] += l[2, 1] * z[:, 1]
        z[:, 2] += l[2, 0] * z[:, 0]
        z[:, 1] *= l[1, 1]
        z[:, 1] += l[1, 0] * z[:, 0]
        energy = np.exp(_randn(rng, n) * F32(0.5) - F32(0.25))  # E[energy^2] = 1
        outlier = rng.random(n) < 0.005
        energy[outlier] *= F32(5.0)
        z *= (energy[:, None] * std[None, :])[:, None, :]
        np.clip(z, -1.5, 1.5, out=z)


_REST_RHO = 0.7
_REST_CHOL = np.linalg.cholesky(np.full((3, 3), _REST_RHO) + (1 - _REST_RHO) * np.eye(3)).astype(F32)


def _subset(n: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    if not 0.0 <= fraction <= 1.0:
        raise ValueError("fraction must be in [0, 1]")
    count = int(round(fraction * n))
    return np.sort(rng.choice(n, size=count, replace=False)).astype(np.int64)


def synthetic_motion(g: Gaussians, fraction: float, magnitude: float, seed: int = 0
                     ) -> tuple[np.ndarray, Gaussians]:
    """Move a random ``fraction`` of the Gaussians by N(0, magnitude) per axis.

    Returns (sorted int64 row indices into g, the moved rows as Gaussians);
    every attribute other than the positions is unchanged. ``apply_rows``
    scatters them back into a full scene.
    """
    rng = np.random.default_rng(seed)
    idx = _subset(len(g), fraction, rng)
    rows = g.take(idx)
    rows.positions = (rows.positions + rng.normal(0.0, magnitude, (len(idx), 3))).astype(F32)
    return idx, rows


def perturb_colors(g: Gaussians, fraction: float, magnitude: float, seed: int = 0
                   ) -> tuple[np.ndarray, Gaussians]:
    """Recolour a random ``fraction`` of the Gaussians: f_dc += N(0, magnitude) per channel.

    Returns (sorted int64 row indices into g, the changed rows as Gaussians);
    only sh_dc differs from g's rows.
    """
    rng = np.random.default_rng(seed)
    idx = _subset(len(g), fraction, rng)
    rows = g.take(idx)
    rows.sh_dc = (rows.sh_dc + rng.normal(0.0, magnitude, (len(idx), 3))).astype(F32)
    return idx, rows


def apply_rows(g: Gaussians, idx: np.ndarray, rows: Gaussians) -> Gaussians:
    """A copy of g with the rows at ``idx`` replaced by ``rows``."""
    out = g.take(np.arange(len(g)))
    for f in ("positions", "scales", "rotations", "opacities", "sh_dc", "sh_rest"):
        getattr(out, f)[idx] = getattr(rows, f)
    return out
