"""Shared strategies, scene generators and helpers for the GSD test suite.

Scenes are small (100-2000 Gaussians) and hypothesis runs bounded example
counts with no deadline, so the whole suite stays fast on a 2-core CPU box.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from codec import Gaussians, Grid, Profile
from codec.attributes import ATTRS, Attr, rest_coeffs

settings.register_profile(
    "gsd",
    deadline=None,
    max_examples=25,
    database=None,  # keep the work tree clean; failures print their seed/blob
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
settings.load_profile("gsd")

PROFILE_NAMES = ("lossless", "high", "compact", "small")
SH_DEGREES = (0, 1, 2, 3)
U64 = np.uint64


# ------------------------------------------------------------------------------------------ scenes
def random_gaussians(rng: np.random.Generator, n: int, sh_degree: int, extent: float = 8.0,
                     specials: bool = True) -> Gaussians:
    """Gaussians with roughly the statistics of a trained 3DGS scene.

    Positions in a few blobs and a ground plane; log-scales around -4.5; random
    rotations; opacity logits spread over both tails; DC colour in [-2, 2];
    rest coefficients shrinking with degree. ``specials`` plants edge rows
    (-0.0, range-edge values, identity / negative-w quaternions) when n allows.
    """
    centres = rng.uniform(-extent, extent, (max(1, n // 200 + 1), 3))
    which = rng.integers(0, len(centres), n)
    pos = centres[which] + rng.normal(0, extent / 8, (n, 3))
    plane = rng.random(n) < 0.25
    pos[plane, 1] = -extent / 2 + rng.normal(0, 0.01, plane.sum())
    pos = np.clip(pos, -1.5 * extent, 1.5 * extent)
    scales = np.clip(rng.normal(-4.5, 1.0, (n, 3)), -12.0, 2.0)
    rot = rng.normal(size=(n, 4))
    opac = rng.normal(0.5, 2.5, n)
    dc = np.clip(rng.normal(0.0, 0.8, (n, 3)), -2.0, 2.0)
    k = rest_coeffs(sh_degree)
    if k:
        deg = np.concatenate([np.full(2 * l + 1, l) for l in range(1, sh_degree + 1)])
        rest = rng.normal(0, 1, (n, 3, k)) * (0.12 / deg)[None, None, :]
        rest = np.clip(rest, -0.7, 0.7).reshape(n, 3 * k)
    else:
        rest = np.zeros((n, 0))
    if specials and n >= 8:
        rot[0] = (1, 0, 0, 0)
        rot[1] = (-0.5, 0.5, -0.5, 0.5)   # tie on |q|: lowest index wins, negative sign flips
        rot[2] = (0, 0, 0, -3.0)
        scales[3] = -0.0
        dc[4] = (-0.0, 0.0, 1e-7)
        opac[5] = -0.0
        if k:
            rest[6] = -0.0
        scales[7] = (-12.0, 2.0, -4.5)
    return Gaussians(pos, scales, rot, opac, dc, rest)


def make_profile(name: str, sh_degree: int, positions: np.ndarray, cell_bits: int = 8,
                 slot_bits: int = 16) -> Profile:
    return Profile.preset(name, sh_degree, Grid.fit(positions, cell_bits=cell_bits, slot_bits=slot_bits))


try:  # a realistic generator written by another engineer; used only for a fixture when present
    from codec.synthetic import synthetic_scene as _synthetic_scene  # type: ignore
except Exception:  # pragma: no cover - depends on the checkout
    _synthetic_scene = None


@pytest.fixture(scope="session")
def realistic_scene():
    """A factory scene(n, sh_degree, seed): codec.synthetic when available, else random_gaussians."""
    def make(n: int, sh_degree: int, seed: int = 0) -> Gaussians:
        if _synthetic_scene is not None:
            g = _synthetic_scene(n, sh_degree, seed)
            if isinstance(g, tuple):
                g = g[-1]
            return g
        return random_gaussians(np.random.default_rng(seed), n, sh_degree)
    return make


# -------------------------------------------------------------------------------------- strategies
profile_names = st.sampled_from(PROFILE_NAMES)
sh_degrees = st.sampled_from(SH_DEGREES)
seeds = st.integers(0, 2**32 - 1)


@st.composite
def scenes(draw, min_n: int = 100, max_n: int = 2000, names=profile_names, degrees=sh_degrees):
    """(profile, gaussians): a profile over lossless/high/compact, SH degree 0..3, a fitted grid."""
    name = draw(names)
    degree = draw(degrees)
    n = draw(st.integers(min_n, max_n))
    cell_bits = draw(st.integers(3, 12))
    slot_bits = draw(st.integers(10, 20))
    g = random_gaussians(np.random.default_rng(draw(seeds)), n, degree)
    return make_profile(name, degree, g.positions, cell_bits, slot_bits), g


@st.composite
def grids(draw):
    """Any valid grid (origin, cell size, cell_bits, slot_bits with 3B+S <= 63)."""
    b = draw(st.integers(1, 20))
    s = draw(st.integers(0, min(32, 63 - 3 * b)))
    origin = tuple(draw(st.floats(-1e4, 1e4, width=32)) for _ in range(3))
    cell = draw(st.floats(2.0**-10, 2.0**10, width=32))
    return Grid(origin, cell, b, s)


# --------------------------------------------------------------------------------- code-space data
def random_palette(rng: np.random.Generator, profile: Profile, n: int):
    """A PaletteSet of ``n`` distinct random indices with random valid entry codes (None without a palette)."""
    from codec.delta import PaletteSet

    if not profile.palette:
        return None
    index = np.sort(rng.choice(profile.palette, min(n, profile.palette), replace=False)).astype(np.uint16)
    lim = profile.rest_limits()[:, None]
    codes = rng.integers(-lim, lim + 1, (profile.rest_comps, len(index))).astype(profile.rest_dtype)
    codes[:, rng.random(len(index)) < 0.1] = 0  # some all-zero entries: not hashed (SPEC.md 7.1)
    return PaletteSet(index, codes)


def random_codes(rng: np.random.Generator, profile: Profile, n: int) -> dict:
    """{Attr: (C, n)} codes drawn uniformly from each attribute's valid domain."""
    out = {}
    q = profile.quant
    for a in ATTRS:
        c = profile.comps(a)
        dt = profile.dtype(a)
        if q is None:
            v = rng.normal(0, 4, (c, n)).astype(np.float32)
            v[rng.random((c, n)) < 0.05] = -0.0
            out[a] = v.view(np.uint32)
        elif a is Attr.POSITION:
            out[a] = rng.integers(-(2**31), 2**31, (c, n), dtype=np.int64).astype(dt)
        elif a is Attr.SH_REST and profile.palette:
            out[a] = rng.integers(0, profile.palette, (c, n)).astype(dt)
        elif a is Attr.SH_REST:
            lim = profile.rest_limits()[:, None]
            out[a] = rng.integers(-lim, lim + 1, (c, n)).astype(dt)
        elif a is Attr.ROTATION:
            top = (1 << q.rotation_bits) - 1
            out[a] = np.vstack([rng.integers(0, 4, (1, n)), rng.integers(0, top + 1, (3, n))]).astype(dt)
        else:
            bits = {Attr.SCALE: q.scale_bits, Attr.OPACITY: q.opacity_bits, Attr.SH_DC: q.dc_bits}[a]
            out[a] = rng.integers(0, 1 << bits, (c, n)).astype(dt)
    return out
