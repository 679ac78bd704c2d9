"""Quantization profiles: float attributes <-> the integer codes the state holds (SPEC.md 5).

Decoders only dequantize; the codes themselves are the state, so two decoders
agree bit for bit whatever their float arithmetic.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field

import numpy as np

from .attributes import Attr, components, rest_degree_rows
from .errors import ErrorCode, GsdError
from .jit import kernel
from .sections import SPAN, column_spans, parallel_map
from .quantize import (NONFINITE, OK, TOO_FAR, opacity_codes, position_codes, rest_codes, rotation_codes, smallest_three,
                       take_columns, take_planar, uniform_codes)
from .spatial import Grid

SQRT2 = np.sqrt(2.0)
INV_SQRT2 = 1.0 / SQRT2


@dataclass(frozen=True)
class Quantization:
    """Bits and ranges of a lossy profile; carried in the stream header."""

    position_bits: int
    scale_bits: int
    scale_min: float
    scale_max: float
    rotation_bits: int
    opacity_bits: int
    dc_bits: int
    dc_min: float
    dc_max: float
    rest_bits: tuple[int, int, int]
    rest_range: tuple[float, float, float]
    # Entries of the SH palette (SPEC.md 5.9); 0: SH_REST is coded per Gaussian, component by component.
    palette: int = 0

    def __post_init__(self):
        for name in ("scale_min", "scale_max", "dc_min", "dc_max"):
            object.__setattr__(self, name, float(np.float32(getattr(self, name))))
        object.__setattr__(self, "rest_bits", tuple(int(b) for b in self.rest_bits))
        object.__setattr__(self, "rest_range", tuple(float(np.float32(r)) for r in self.rest_range))

    def problem(self, sh_degree: int) -> str | None:
        checks = [
            (1 <= self.position_bits <= 24, "position_bits not in 1..24"),
            (1 <= self.scale_bits <= 16, "scale_bits not in 1..16"),
            (np.isfinite(self.scale_min) and np.isfinite(self.scale_max) and self.scale_min < self.scale_max,
             "scale range must be finite with min < max"),
            (2 <= self.rotation_bits <= 16, "rotation_bits not in 2..16"),
            (1 <= self.opacity_bits <= 16, "opacity_bits not in 1..16"),
            (1 <= self.dc_bits <= 16, "dc_bits not in 1..16"),
            (np.isfinite(self.dc_min) and np.isfinite(self.dc_max) and self.dc_min < self.dc_max,
             "dc range must be finite with min < max"),
            (len(self.rest_bits) >= sh_degree and len(self.rest_range) >= sh_degree,
             "rest_bits/rest_range need one entry per SH degree"),
        ]
        checks.append((0 <= self.palette <= MAX_PALETTE, f"sh_palette not in 0..{MAX_PALETTE}"))
        checks.append((self.palette == 0 or sh_degree > 0, "sh_palette needs SH degree 1 or more"))
        for l in range(sh_degree):
            checks.append((2 <= self.rest_bits[l] <= 16, f"rest_bits[{l}] not in 2..16"))
            checks.append((np.isfinite(self.rest_range[l]) and self.rest_range[l] > 0, f"rest_range[{l}] must be > 0"))
        for ok, msg in checks:
            if not ok:
                return msg
        return None


PRESETS: dict[str, Quantization | None] = {
    "lossless": None,
    "high": Quantization(12, 12, -16.0, 6.0, 12, 12, 12, -4.0, 4.0, (10, 9, 8), (2.0, 1.5, 1.2)),
    "compact": Quantization(8, 8, -14.0, 4.0, 8, 8, 8, -3.5, 3.5, (5, 5, 4), (0.9375, 0.9375, 0.875)),
    # for files: SH_REST through a palette of up to 65,536 entries (SPEC.md 5.9), scale, rotation and
    # opacity one bit below compact; a fitted profile also follows the scene (Profile.fit):
    # SIZE_RELATIVE_POSITIONS, and SHARED_PALETTE_TRIM once the palette is shared
    "small": Quantization(8, 7, -14.0, 4.0, 7, 7, 8, -3.5, 3.5, (6, 6, 6), (0.9375, 0.9375, 0.875), palette=1 << 16),
}
# Presets whose fitted position step follows the scene (Profile.fit): at most 1/16 of a small
# Gaussian's largest axis, never finer than the preset's own step (fit.position_bits_for_sizes).
SIZE_RELATIVE_POSITIONS = {"small": 16}
# Bits a fitted palette preset gives up when its scene has more than 2 Gaussians per palette entry:
# the shared entries' error then sets the render error, and one bit less of scale, rotation and
# SH_DC costs little under it (a captured 500k SH2 scene: 44.1 dB with every other attribute at 10
# bits, 1.1 dB for these three bits and 1.1 B per Gaussian). With entries to spare (100k synthetic
# SH1 and SH3 scenes) the palette is accurate and those bits show: they are kept.
SHARED_PALETTE_TRIM = {"small": ("scale_bits", "rotation_bits", "dc_bits")}
# Bit shifts a fitted preset makes for a scene without SH_REST (degree 0), where scale, opacity and
# SH_DC make the whole picture. Measured on two captured SH0 scenes (153k and 91k Gaussians, `small`
# with the CHANNEL filter), one attribute bit at a time: scale's bit buys 1.3-2.1 dB for 0.37 B per
# Gaussian, opacity's 0.05-0.4 dB for 0.12 B, while SH_DC's eighth bit buys 0.2-0.8 dB for 0.3-0.4 B.
# Together: +1.3 to +1.4 dB for +0.13 to +0.20 B per Gaussian, above the line from `small` to `compact`.
NO_REST_SHIFT = {"small": {"scale_bits": 1, "opacity_bits": 1, "dc_bits": -1}}
GAUSSIANS_PER_SHARED_ENTRY = 2
DEFAULT_PROFILE = "small"    # gsd encode's: the scene is known before the header is written
STREAM_PROFILE = "compact"   # Profile()'s and the streaming generator's (content arrives over time)
MAX_PALETTE = 1 << 16  # palette indices are u16 codes


def _for_degree(q: Quantization | None, sh_degree: int) -> Quantization | None:
    """A preset's quantization for an SH degree: no palette without SH_REST."""
    if q is not None and q.palette and sh_degree == 0:
        return dataclasses.replace(q, palette=0)
    return q


def _width(bits: int) -> int:
    return 1 if bits <= 8 else 2


_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
_SIGNED = {1: np.int8, 2: np.int16, 4: np.int32}


_NO_SCALES = np.zeros((0, 3), np.float32)  # ROTATION rounds to the nearest code
_NO_HELD = np.zeros((4, 0), np.uint8)       # ... and keeps no code a decoder holds


@dataclass(frozen=True)
class Profile:
    """Everything needed to turn floats into codes and back: SH degree, grid, quantization."""

    sh_degree: int = 3
    grid: Grid = field(default_factory=Grid)
    quant: Quantization | None = PRESETS[STREAM_PROFILE]
    name: str = STREAM_PROFILE

    @classmethod
    def preset(cls, name: str, sh_degree: int = 3, grid: Grid | None = None) -> "Profile":
        if name not in PRESETS:
            raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PRESETS)}")
        return cls(sh_degree, grid or Grid(), _for_degree(PRESETS[name], sh_degree), name)

    @classmethod
    def fit(cls, name: str, gaussians, grid: Grid | None = None, sh_degree: int | None = None,
            cell_bits: int | None = None) -> "Profile":
        """The preset ``name``'s bit depths with every range fitted to ``gaussians`` (codec/fit.py): the
        profile for content known before the header is written (``preset`` keeps the fixed ranges, the
        streaming defaults). Without ``grid`` the grid is fitted too (``fit.fit_grid``: ``cell_bits``
        cells per axis, and the position bits that keep the preset's precision relative to the scene);
        a SIZE_RELATIVE_POSITIONS preset then takes no finer a step than the Gaussians' sizes need, a
        SHARED_PALETTE_TRIM preset gives up bits where its palette is shared, and a NO_REST_SHIFT preset
        moves bits between attributes for a scene without SH_REST."""
        from . import fit

        if name not in PRESETS:
            raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PRESETS)}")
        d = gaussians.sh_degree if sh_degree is None else sh_degree
        q = PRESETS[name]
        pb = None
        if grid is None:
            grid, pb = fit.fit_grid(gaussians.positions, q.position_bits if q else 8, cell_bits)
        if q is not None:
            q = fit.fit_quantization(_for_degree(q, d), gaussians, d)
            if pb is not None:
                q = dataclasses.replace(q, position_bits=pb)
            if name in SIZE_RELATIVE_POSITIONS:
                q = dataclasses.replace(q, position_bits=fit.position_bits_for_sizes(
                    grid, gaussians.scales, q.position_bits, SIZE_RELATIVE_POSITIONS[name]))
            if name in SHARED_PALETTE_TRIM and q.palette and len(gaussians) > GAUSSIANS_PER_SHARED_ENTRY * q.palette:
                q = dataclasses.replace(q, **{f: getattr(q, f) - 1 for f in SHARED_PALETTE_TRIM[name]})
            if name in NO_REST_SHIFT and d == 0:
                q = dataclasses.replace(q, **{f: getattr(q, f) + k for f, k in NO_REST_SHIFT[name].items()})
        return cls(d, grid, q, name)

    def clamped(self, values) -> dict[Attr, int]:
        """{attribute: components that quantizing ``values`` (Gaussians or {Attr: floats}) clamps}: what
        a caller logs, since clamped components exceed the error bound (codec/fit.py)."""
        from .fit import clamped

        return clamped(self, values)

    def __post_init__(self):
        if not (0 <= self.sh_degree <= 3):
            raise GsdError(ErrorCode.BAD_HEADER, f"sh_degree {self.sh_degree} not in 0..3")
        if self.quant is not None:
            problem = self.quant.problem(self.sh_degree)
            if problem:
                raise GsdError(ErrorCode.BAD_HEADER, problem)
            if self.grid.cell_bits + self.quant.position_bits > 30:
                raise GsdError(ErrorCode.BAD_HEADER, "cell_bits + position_bits exceeds 30")
        # Widths and dtypes are asked for ~100 times per frame: compute them once (frozen, so safe).
        object.__setattr__(self, "_widths", {a: self._width_of(a) for a in Attr})
        object.__setattr__(self, "_dtypes", {a: self._dtype_of(a) for a in Attr})
        object.__setattr__(self, "_bounds", {a: self._bounds_of(a) for a in Attr})

    @property
    def lossless(self) -> bool:
        return self.quant is None

    @property
    def implicit_ids(self) -> bool:
        """ADD_IMPLICIT blocks are possible: a lossy profile whose placement codes fit 64 bits (SPEC.md 6.1)."""
        return self.quant is not None and 3 * (self.grid.cell_bits + self.quant.position_bits) <= 64

    @property
    def palette(self) -> int:
        """Entries of the SH palette; 0 when SH_REST is coded per Gaussian (SPEC.md 5.9)."""
        return 0 if self.quant is None else self.quant.palette

    # -- code layout -----------------------------------------------------------
    def comps(self, attr: Attr) -> int:
        if attr is Attr.SH_REST and self.palette:
            return 1  # the index of a palette entry
        return components(attr, self.sh_degree)

    @property
    def rest_comps(self) -> int:
        """Components of an SH_REST code vector: of every Gaussian, or of every palette entry."""
        return components(Attr.SH_REST, self.sh_degree)

    @property
    def rest_dtype(self) -> np.dtype:
        """Dtype of SH_REST component codes (a Gaussian's, or a palette entry's)."""
        return np.dtype(_SIGNED[_width(max(self.quant.rest_bits[: self.sh_degree], default=1))])

    def wire_parts(self, attrs) -> list[tuple[Attr, np.ndarray | None]]:
        """The sections that carry ``attrs``, in order (SPEC.md 6.1): (attribute, component rows or None
        for all). SH_REST codes travel as one section per SH degree (parallel decompression, own zstd
        statistics per band); palette indices as one section."""
        out = []
        for a in attrs:
            if a is Attr.SH_REST and not self.palette:
                out += [(a, rows) for rows in rest_degree_rows(self.sh_degree)]
            elif self.comps(a):
                out.append((a, None))
        return out

    def width(self, attr: Attr) -> int:
        return self._widths[attr]

    def dtype(self, attr: Attr) -> np.dtype:
        """Numpy dtype of the codes: signed where the spec says two's complement."""
        return self._dtypes[attr]

    def _width_of(self, attr: Attr) -> int:
        q = self.quant
        if q is None or attr is Attr.POSITION:
            return 4
        if attr is Attr.SH_REST and q.palette:
            return 2
        bits = {Attr.SCALE: q.scale_bits, Attr.ROTATION: q.rotation_bits, Attr.OPACITY: q.opacity_bits,
                Attr.SH_DC: q.dc_bits, Attr.SH_REST: max(q.rest_bits[: self.sh_degree], default=1)}[attr]
        return _width(bits)

    def _dtype_of(self, attr: Attr) -> np.dtype:
        w = self._width_of(attr)
        if attr is Attr.SH_REST and self.palette:
            return np.dtype(np.uint16)
        if self.quant is not None and attr in (Attr.POSITION, Attr.SH_REST):
            return np.dtype(_SIGNED[w])
        return np.dtype(_UNSIGNED[w])

    def _rest_degrees(self) -> np.ndarray:
        """The SH degree of each SH_REST component (channel-major: R's, then G's, then B's)."""
        per_channel = [l for l in range(1, self.sh_degree + 1) for _ in range(2 * l + 1)]
        return np.tile(np.array(per_channel, dtype=np.int64), 3)

    def rest_limits(self) -> np.ndarray:
        """Per-component max |code| of SH_REST (channel-major layout)."""
        bits = np.array(self.quant.rest_bits, np.int64)
        return (np.int64(1) << (bits[self._rest_degrees() - 1] - 1)) - 1

    def rest_steps(self) -> np.ndarray:
        deg = self._rest_degrees()
        return np.array(self.quant.rest_range, np.float64)[deg - 1] / self.rest_limits()

    @functools.cached_property
    def _rest_quantizer(self) -> tuple[np.ndarray, np.ndarray]:
        """(1 / step, limit) per SH_REST component as the quantizer's float32 inputs (computed once)."""
        return (1.0 / self.rest_steps()).astype(np.float32), self.rest_limits().astype(np.float32)

    # -- validity (decoder side) -------------------------------------------------
    def bounds(self, attr: Attr) -> "CodeBounds":
        """The domain of each component's code (SPEC.md 5.6), in the form the apply loops check."""
        return self._bounds[attr]

    def _bounds_of(self, attr: Attr) -> "CodeBounds":
        c = self.comps(attr)
        q = self.quant
        if q is None:  # float32 bit patterns: finite values only
            return CodeBounds(np.zeros(c, np.int64), np.full(c, (1 << 32) - 1, np.int64), 0, True)
        if attr is Attr.POSITION:  # every int32 is a valid position code
            return CodeBounds(np.full(c, -(1 << 31), np.int64), np.full(c, (1 << 31) - 1, np.int64), 32, False)
        if attr is Attr.SH_REST and self.palette:
            return CodeBounds(np.zeros(1, np.int64), np.full(1, self.palette - 1, np.int64), 0, False)
        if attr is Attr.SH_REST:
            return self.rest_bounds()
        if attr is Attr.ROTATION:
            hi = np.full(4, (1 << q.rotation_bits) - 1, np.int64)
            hi[0] = 3
            return CodeBounds(np.zeros(4, np.int64), hi, 0, False)
        bits = {Attr.SCALE: q.scale_bits, Attr.OPACITY: q.opacity_bits, Attr.SH_DC: q.dc_bits}[attr]
        return CodeBounds(np.zeros(c, np.int64), np.full(c, (1 << bits) - 1, np.int64), 0, False)

    def rest_bounds(self) -> "CodeBounds":
        """The domain of SH_REST component codes, of a Gaussian or of a palette entry (SPEC.md 5.6)."""
        c = self.rest_comps
        lim = self.rest_limits().astype(np.int64) if c else np.zeros(0, np.int64)
        return CodeBounds(-lim, lim, 8 * self.rest_dtype.itemsize, False)

    def has_invalid(self, attr: Attr, codes: np.ndarray) -> bool:
        """True if any code of a (C, N) planar array is outside its domain (SPEC.md 5.6)."""
        b = self._bounds[attr]
        return bool(codes.size) and bool(invalid_codes(codes, b.lo, b.hi, b.finite))

    # -- floats -> codes (encoder side) -----------------------------------------------
    def quantize(self, attr: Attr, values: np.ndarray, ids: np.ndarray, order: np.ndarray | None = None, *,
                 scales: np.ndarray | None = None, held: np.ndarray | None = None) -> np.ndarray:
        """(N, C) float values -> (C, N) planar codes; with ``order``, column j is row order[j]
        (the encoder sorts by id while quantizing). Rounding is the encoder's choice (round half
        even); quantize.py fixes the arithmetic. ``scales``: the rows' (N, 3) log-scales, with which
        ROTATION codes are chosen for the Gaussian's shape rather than rounded; ``held``: with them,
        the (4, N) ROTATION codes a decoder holds for the columns, kept where as good
        (``rotation_codes``).

        The float rows are read in their own order and the codes then put in ``order``: reading
        1-4-byte codes of one component at random stays in cache, reading 12-16-byte float rows at
        random does not (a 1M keyframe's quantization takes about half as long)."""
        values = np.ascontiguousarray(values, dtype=np.float32).reshape(len(ids), self.comps(attr))  # n may be 0
        n = len(ids)
        order = None if order is None else np.asarray(order, np.int64)
        q = self.quant
        if q is None:
            if not np.isfinite(values).all():
                raise ValueError(f"{attr.name.lower()} has NaN or infinite values")
            return np.ascontiguousarray((values if order is None else values[order]).T).view(np.uint32)
        out = np.empty((self.comps(attr), n), self.dtype(attr))
        # A small array (one worker job) is gathered from its float rows directly: no second pass.
        direct = order is None or n <= SPAN or attr is Attr.SH_REST
        codes = out if direct else np.empty_like(out)  # else in input order, then put in ``order``
        row_order = np.arange(n, dtype=np.int64) if order is None or not direct else order
        spans = column_spans(n)
        run = lambda loop, *args: _status(parallel_map(lambda s: loop(*args, codes, *s), spans, n * 64))
        if attr is Attr.POSITION:
            g = self.grid
            status = run(position_codes, values, np.ascontiguousarray(ids, np.uint64), row_order, np.uint64(g.slot_bits),
                         np.asarray(g.origin, np.float64), float(g.cell_size), g.cell_size / (1 << q.position_bits))
        elif attr in (Attr.SCALE, Attr.SH_DC):
            lo, hi, bits = (q.scale_min, q.scale_max, q.scale_bits) if attr is Attr.SCALE else (q.dc_min, q.dc_max, q.dc_bits)
            top = (1 << bits) - 1
            status = run(uniform_codes, values, row_order, float(lo), top / (hi - lo), float(top))
        elif attr is Attr.OPACITY:
            status = run(opacity_codes, values, row_order, float(1 << q.opacity_bits))
        elif attr is Attr.SH_REST:
            if self.palette:
                raise ValueError("with an SH palette, SH_REST codes are palette indices: the encoder assigns them")
            rows = np.empty(values.shape, out.dtype)
            status = _status(parallel_map(lambda s: rest_codes(values, *self._rest_quantizer, rows, *s), spans,
                                          values.size))
            parallel_map(lambda s: take_columns(rows, row_order, out, *s), spans, values.size)
        elif attr is Attr.ROTATION:
            shape = _NO_SCALES if scales is None else \
                np.ascontiguousarray(scales, dtype=np.float32).reshape(n, 3)
            kept = _NO_HELD if held is None or scales is None else held
            if kept is not _NO_HELD and codes is not out:  # columns in input order until put in ``order``
                kept = np.empty_like(held)
                kept[:, order] = held
            status = run(rotation_codes, values, shape, np.ascontiguousarray(kept, out.dtype), row_order,
                         float((1 << q.rotation_bits) - 1))
        else:
            raise AssertionError(attr)
        if codes is not out and status == OK:
            parallel_map(lambda s: take_planar(codes, order, out, *s), spans, n * 16)
        if status == NONFINITE:
            raise ValueError(f"{attr.name.lower()} has NaN or infinite values")
        if status == TOO_FAR:
            raise ValueError("a position is too far from its birth cell for int32 codes")
        return out

    def quantize_rest(self, values: np.ndarray) -> np.ndarray:
        """(N, 3K) SH_REST floats -> (3K, N) component codes (palette entries are coded this way)."""
        values = np.ascontiguousarray(values, dtype=np.float32).reshape(-1, self.rest_comps)
        rows = np.empty(values.shape, self.rest_dtype)
        if values.size and rest_codes(values, *self._rest_quantizer, rows, 0, len(values)) == NONFINITE:
            raise ValueError("sh_rest has NaN or infinite values")
        return np.ascontiguousarray(rows.T)

    def dequantize_rest(self, codes: np.ndarray) -> np.ndarray:
        """(3K, N) SH_REST component codes -> (N, 3K) float32."""
        return (codes.T.astype(np.float64) * self.rest_steps()).astype(np.float32)

    # -- codes -> floats ---------------------------------------------------------------------
    def dequantize(self, attr: Attr, codes: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """(C, N) planar codes -> (N, C) float32 values."""
        q = self.quant
        if q is None:
            return np.ascontiguousarray(codes.T).view(np.float32)
        if attr is Attr.POSITION:
            return self.grid.positions_of(ids, codes, self.grid.cell_size / (1 << q.position_bits))
        if attr is Attr.ROTATION:
            out = np.empty((codes.shape[1], 4), np.float32)
            if _smallest_three_decode(np.ascontiguousarray(codes), q.rotation_bits, out):
                raise ValueError("a rotation code's index of the largest component is above 3")
            return out
        if attr is Attr.OPACITY:
            alpha = (codes.T.astype(np.float64) + 0.5) / (1 << q.opacity_bits)
            return np.log(alpha / (1.0 - alpha)).astype(np.float32)
        comps = codes.shape[0]
        if attr is Attr.SCALE:
            lo, step = q.scale_min, np.full(comps, (q.scale_max - q.scale_min) / ((1 << q.scale_bits) - 1))
        elif attr is Attr.SH_DC:
            lo, step = q.dc_min, np.full(comps, (q.dc_max - q.dc_min) / ((1 << q.dc_bits) - 1))
        elif attr is Attr.SH_REST:
            if self.palette:
                raise ValueError("palette indices dequantize through the state's palette (SceneState.to_gaussians)")
            lo, step = 0.0, self.rest_steps()
        else:
            raise AssertionError(attr)
        out = np.empty((codes.shape[1], comps), np.float32)
        _affine_decode(codes, float(lo), np.asarray(step, np.float64), out)
        return out

    # -- stated error bounds (SPEC.md 5.4), used by tests -----------------------------------------
    def error_bound(self, attr: Attr) -> float:
        """Max abs error per component inside the quantization ranges (ROTATION: of the unit quaternion, up to sign)."""
        q = self.quant
        if q is None:
            return 0.0
        if attr is Attr.POSITION:
            return 0.5 * self.grid.cell_size / (1 << q.position_bits)
        if attr is Attr.SCALE:
            return 0.5 * (q.scale_max - q.scale_min) / ((1 << q.scale_bits) - 1)
        if attr is Attr.SH_DC:
            return 0.5 * (q.dc_max - q.dc_min) / ((1 << q.dc_bits) - 1)
        if attr is Attr.OPACITY:  # in alpha = sigmoid(opacity)
            return 2.0 ** -(q.opacity_bits + 1)
        if attr is Attr.SH_REST and self.palette:
            return float("inf")  # an entry's distance from the SH it stands for is the encoder's choice
        if attr is Attr.SH_REST:
            return 0.5 * float(self.rest_steps().max()) if self.sh_degree else 0.0
        if attr is Attr.ROTATION:  # small three: step/2 each; largest: <= 3 * step/2 * (1/sqrt2) * 2 / (1/2)
            e = 0.5 * SQRT2 / ((1 << q.rotation_bits) - 1)
            return 3.0 * SQRT2 * e + 3 * e * e
        raise AssertionError(attr)


@dataclass(frozen=True)
class CodeBounds:
    """Per component: lo <= code <= hi, the code read as signed ``signed_bits``-bit two's complement
    (0: unsigned); ``finite``: the codes are float32 bit patterns that must be finite."""

    lo: np.ndarray
    hi: np.ndarray
    signed_bits: int
    finite: bool


@kernel
def code_value(u, signed_bits):
    """A code's value: its unsigned bit pattern ``u``, read as two's complement when signed_bits > 0."""
    v = np.int64(u)
    if signed_bits > 0 and v >= (np.int64(1) << (signed_bits - 1)):
        v -= np.int64(1) << signed_bits
    return v


@kernel
def code_ok(u, lo, hi, signed_bits, finite):
    if finite:
        return (np.int64(u) & 0x7F800000) != 0x7F800000
    v = code_value(u, signed_bits)
    return lo <= v <= hi


def _status(statuses: list) -> int:
    """The status of a whole array from its ranges': a NaN outranks a position too far."""
    return NONFINITE if NONFINITE in statuses else TOO_FAR if TOO_FAR in statuses else OK


@kernel
def invalid_codes(codes, lo, hi, finite):
    """True if any codes[c, i] (in the profile's dtype, signed where signed) is outside [lo[c], hi[c]]."""
    for c in range(codes.shape[0]):
        if finite:
            bad = False
            for i in range(codes.shape[1]):
                bad |= (np.int64(codes[c, i]) & 0x7F800000) == 0x7F800000
            if bad:
                return True
        elif codes.shape[1]:
            row = codes[c]
            mx = row[0]
            mn = row[0]
            for i in range(1, row.shape[0]):  # in the codes' own type: vectorizes
                mx = max(mx, row[i])
                mn = min(mn, row[i])
            if np.int64(mx) > hi[c] or np.int64(mn) < lo[c]:
                return True
    return False


@kernel
def _affine_decode(codes, lo, step, out):
    """(C, N) codes -> (N, C) float32 ``lo + code * step[c]`` (SPEC.md 5.3), evaluated in float64
    then rounded once, as the formula reads; one pass, no float64 temporaries."""
    for i in range(codes.shape[1]):
        for c in range(codes.shape[0]):
            out[i, c] = np.float32(lo + np.float64(codes[c, i]) * step[c])


@kernel
def _smallest_three_decode(codes, bits, out):
    """(4, N) codes (i, a, b, c) -> (N, 4) unit quaternions w, x, y, z (SPEC.md 5.2): the three
    small components from their codes, the largest (index i) from the unit norm."""
    step = np.sqrt(2.0) / ((1 << bits) - 1)
    bad = False
    for j in range(codes.shape[1]):
        big = int(codes[0, j])
        if big > 3:                  # not a code a checked stream holds
            bad = True
            continue
        smallest_three(big, codes[1:, j], step, out[j])
    return bad
