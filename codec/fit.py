"""Quantization ranges fitted to a scene, and a count of what a profile clamps (SPEC.md 5.8, Appendix C).

The header carries every range (SPEC.md 5.3), so an encoder that sees the content before it writes
the header takes the ranges from the content; the presets' fixed ranges stay as the streaming
defaults for content not known in advance. The rule keeps the preset's bit depths and was chosen by
render PSNR and bytes on a captured scene and on synthetic ones (docs/format-notes.md):

* log-scale and SH_DC: the exact min and max over all components, so nothing clamps. An outlier
  widens the step for every Gaussian, but at 8 bits and more that costs no measurable PSNR, while
  clamping bright DC outliers does (0.3 to 2.5 dB on a captured scene).
* SH_REST, per degree: the range that minimizes the squared error of that degree's coefficients at
  the preset's bit depth (step^2 / 12 for each value inside, the excess for each value outside).
  SH rest has heavy tails and few levels (compact: 15 per side), so the max would round the bulk to
  zero (-7 dB on the captured scene); the few values beyond the chosen range are clamped, and
  ``clamped`` counts them so that callers report them.

Fitted ranges are float32 values (the header stores f32) and always satisfy SPEC.md 5.7, for an
empty scene, one Gaussian or all-equal values too.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .attributes import Attr, Gaussians, components, rest_coeffs

#: Attributes whose codes can clamp: position codes fail instead (TOO_FAR), rotation and opacity
#: map every finite input into their code range.
CLAMPING = (Attr.SCALE, Attr.SH_DC, Attr.SH_REST)

#: Grid cells per axis (2^B) of a fitted profile; see ``fit_grid``.
DEFAULT_CELL_BITS = 10


# ------------------------------------------------------------------------------------ ranges
def _finite(values: np.ndarray) -> np.ndarray:
    """The finite values, flattened (NaN and infinities are the quantizer's error to report, not a range)."""
    v = np.asarray(values, np.float32).reshape(-1)
    ok = np.isfinite(v)
    return v if ok.all() else v[ok]


def fit_uniform(values: np.ndarray, default: tuple[float, float]) -> tuple[float, float]:
    """[min, max] of ``values`` (float32 values, so exact in the header): nothing clamps.

    No values: ``default``. One distinct value v: [v, v + the default's span] (v is code 0 and decodes
    exactly); at the top of the float32 range the span goes below v instead.
    """
    v = _finite(values)
    if v.size == 0:
        return float(default[0]), float(default[1])
    lo, hi = np.float32(v.min()), np.float32(v.max())
    if lo < hi:
        return float(lo), float(hi)
    span = np.float32(default[1] - default[0])
    with np.errstate(over="ignore"):
        up = max(np.float32(lo + span), np.nextafter(lo, np.float32(np.inf)))
        if np.isfinite(up):
            return float(lo), float(up)
        return float(min(np.float32(lo - span), np.nextafter(lo, np.float32(-np.inf)))), float(lo)


def fit_rest_range(values: np.ndarray, levels: int, default: float) -> float:
    """The SH rest range r (codes -levels..levels, step r / levels) that minimizes the squared error
    of ``values``: n_inside * step^2 / 12 + sum over |v| > r of (|v| - r)^2.

    Candidates are the values' own magnitudes (float32, so r is exact in the header), searched in the
    top of the sorted magnitudes: the top 1/32 first, widened while the best lies at its lower edge
    (only at very low bit depths). All zero or no values: ``default`` (zero is exact at any range).
    """
    a = np.abs(np.asarray(values, np.float32)).reshape(-1)  # one contiguous copy, partitioned in place
    if not np.isfinite(a).all():
        a = a[np.isfinite(a)]
    n = a.size
    if n == 0 or not a.max() > 0:
        return float(default)
    k = min(n, max(4096, n // 32))
    while True:
        if k < n:
            a.partition(n - k)
        top = np.sort(a[n - k:])[::-1].astype(np.float64)
        top = top[top > 0]  # r must be > 0 (SPEC.md 5.7)
        s1 = np.concatenate([[0.0], np.cumsum(top)[:-1]])  # sum of the values above candidate j
        s2 = np.concatenate([[0.0], np.cumsum(top * top)[:-1]])
        j = np.arange(len(top), dtype=np.float64)
        sse = s2 - 2 * top * s1 + j * top * top + (n - j) * (top / levels) ** 2 / 12
        best = int(np.argmin(sse))
        if best < len(top) - 1 or k == n or len(top) < k:
            return float(np.float32(top[best]))
        k = min(n, 8 * k)


def fit_quantization(quant, gaussians: Gaussians, sh_degree: int | None = None):
    """``quant`` (a preset's Quantization) with its ranges fitted to ``gaussians``; bit depths kept."""
    d = gaussians.sh_degree if sh_degree is None else sh_degree
    scale = fit_uniform(gaussians.scales, (quant.scale_min, quant.scale_max))
    dc = fit_uniform(gaussians.sh_dc, (quant.dc_min, quant.dc_max))
    rest = list(quant.rest_range)
    if d:
        g = gaussians if gaussians.sh_degree == d else gaussians.with_sh_degree(d)
        coeffs = g.sh_rest.reshape(len(g), 3, rest_coeffs(d))  # channel-major: degree l is columns l^2-1 .. (l+1)^2-2
        for l in range(1, d + 1):
            levels = (1 << (quant.rest_bits[l - 1] - 1)) - 1
            band = coeffs[:, :, l * l - 1:(l + 1) ** 2 - 1]
            rest[l - 1] = fit_rest_range(band, levels, quant.rest_range[l - 1])
    return dataclasses.replace(quant, scale_min=scale[0], scale_max=scale[1], dc_min=dc[0], dc_max=dc[1],
                               rest_range=tuple(rest))


# ------------------------------------------------------------------------------------ grid
def fit_grid(positions: np.ndarray, position_bits: int, cell_bits: int | None = None):
    """(Grid, position bits) for a keyframe of ``positions``: ``Grid.fit`` with ``cell_bits`` cells per
    axis and the position bits that keep the preset's precision relative to the scene, i.e. the step
    of ``Grid.fit``'s default grid with ``position_bits``: cell_bits + position bits is the per-axis
    precision over the grid, so more cell bits take that many from the position code."""
    from .spatial import Grid

    b = DEFAULT_CELL_BITS if cell_bits is None else int(cell_bits)
    grid = Grid.fit(positions, cell_bits=b)
    pb = int(min(max(position_bits + DEFAULT_CELL_BITS - b, 1), 24, 30 - b))
    return grid, pb


def position_bits_for_sizes(grid, scales: np.ndarray, bits: int, fraction: float) -> int:
    """The fewest position bits, at most ``bits``, whose step (cell_size / 2^b) is at most 1/``fraction``
    of the largest axis of a small Gaussian (the 10th percentile): an error that small next to a
    splat does not show. The captured 500k scene gets a step 8x the preset's (0.26 dB, 0.37 B per
    Gaussian per bit); the synthetic scenes, whose splats are large next to their grid, keep the
    preset's."""
    if len(scales) == 0:
        return bits
    size = float(np.percentile(np.exp(np.max(np.asarray(scales, np.float64), axis=1)), 10))
    if not np.isfinite(size) or size <= 0:
        return bits
    need = int(np.ceil(np.log2(grid.cell_size * fraction / size)))
    return int(min(bits, max(1, need)))


# ------------------------------------------------------------------------------------ clamps
def _values_of(values, attr: Attr):
    if isinstance(values, Gaussians):
        return values.attribute(attr)
    return values.get(attr)


def clamp_mask(profile, attr: Attr, values: np.ndarray) -> np.ndarray | None:
    """(N, C) bool: the components of ``values`` whose code ``profile.quantize`` clips to the code
    range (their error exceeds the bound of SPEC.md 5.4), computed in the quantizer's own arithmetic;
    None for a lossless profile and for attributes that never clamp."""
    q = profile.quant
    if q is None or attr not in CLAMPING:
        return None
    c = components(attr, profile.sh_degree)
    v = np.asarray(values, np.float32)
    if c == 0:  # SH_REST at degree 0: (N, 0), which reshape(-1, 0) cannot infer
        return np.zeros((len(v) if v.ndim else 0, 0), bool)
    v = v.reshape(-1, c)
    if attr is Attr.SH_REST:  # float32, as quantize.rest_codes
        inv = (1.0 / profile.rest_steps()).astype(np.float32)
        lim = profile.rest_limits().astype(np.float32)
        return np.abs(np.rint(v * inv)) > lim
    lo, hi, bits = (q.scale_min, q.scale_max, q.scale_bits) if attr is Attr.SCALE else (q.dc_min, q.dc_max, q.dc_bits)
    n = (1 << bits) - 1
    code = np.rint((v.astype(np.float64) - lo) * (n / (hi - lo)))  # float64, as quantize.uniform_codes
    return (code < 0) | (code > n)


def clamped(profile, values) -> dict[Attr, int]:
    """{attribute: components clamped} of ``values`` (Gaussians, or {Attr: (N, C) floats} as an UPDATE
    carries) under ``profile``; every attribute that can clamp is listed, zero included."""
    out = {}
    for a in CLAMPING:
        v = _values_of(values, a)
        m = None if v is None else clamp_mask(profile, a, v)
        out[a] = int(m.sum()) if m is not None else 0
    return out
