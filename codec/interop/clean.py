"""What an encoder does with the values real scene files carry: non-finite numbers and far outliers.

The policy, shared by ``gsd encode`` and every reader behind it:

- Opacity logits of +-inf (alpha exactly 1 or 0: 8-bit alpha formats and
  splat-transform's float PLYs carry them) are clamped to +-``OPACITY_LIMIT``
  (20: sigmoid(20) is 1.0 in float32, so no render changes), and counted.
- Any other non-finite value (NaN anywhere, +-inf in a position, scale,
  rotation or SH coefficient) has no faithful finite stand-in: an error naming
  each attribute and its row count, unless ``drop_invalid``, which drops every
  row holding a non-finite value (the +-inf opacities included).
- Positions far outside the rest (beyond the box of the 1st-99th percentiles
  per axis widened by ``OUTLIER_WIDEN`` times its size on each side) stretch the
  spatial grid and cost every other Gaussian position precision: counted (a
  warning), and dropped with ``drop_outliers``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..attributes import Gaussians

OPACITY_LIMIT = 20.0
OUTLIER_QUANTILE = 0.01
OUTLIER_WIDEN = 10.0
_FIELDS = (("position", "positions"), ("scale", "scales"), ("rotation", "rotations"), ("opacity", "opacities"),
           ("sh_dc", "sh_dc"), ("sh_rest", "sh_rest"))


class InvalidValues(ValueError):
    """Non-finite values with no faithful stand-in (the message names the attributes and row counts)."""


@dataclass
class CleanReport:
    rows_in: int
    opacity_clamped: int = 0
    invalid_dropped: int = 0
    outliers: int = 0
    outliers_dropped: int = 0
    outlier_box: list = field(default_factory=list)   # [[x, y, z] low, [x, y, z] high], when outliers were found

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    def notes(self) -> list[str]:
        """One line per thing done or found (empty when the scene was clean)."""
        out = []
        if self.opacity_clamped:
            out.append(f"{self.opacity_clamped:,} opacity logits of +-inf (alpha exactly 0 or 1) clamped to "
                       f"+-{OPACITY_LIMIT:g}")
        if self.invalid_dropped:
            out.append(f"{self.invalid_dropped:,} rows with non-finite values dropped (--drop-invalid)")
        if self.outliers:
            lo, hi = (", ".join(f"{v:.4g}" for v in b) for b in self.outlier_box)
            verb = "dropped (--drop-outliers)" if self.outliers_dropped else "kept: they stretch the grid and cost " \
                   "the other Gaussians position precision; --drop-outliers drops them"
            out.append(f"{self.outliers:,} position outliers outside [{lo}]..[{hi}] (the 1st-99th percentile box "
                       f"widened {OUTLIER_WIDEN:g}x its size each side) {verb}")
        return out


def _bad_rows(a: np.ndarray) -> np.ndarray:
    bad = ~np.isfinite(a)
    return bad.any(axis=1) if bad.ndim == 2 else bad


def _describe(name: str, a: np.ndarray) -> str:
    kinds = []
    for label, mask in (("NaN", np.isnan(a)), ("+inf", np.isposinf(a)), ("-inf", np.isneginf(a))):
        rows = mask.any(axis=1) if mask.ndim == 2 else mask
        if rows.any():
            kinds.append(f"{label} in {int(rows.sum()):,} rows")
    first = int(np.flatnonzero(_bad_rows(a))[0])
    return f"{name} ({', '.join(kinds)}; first row {first})"


def outlier_mask(positions: np.ndarray) -> tuple[np.ndarray, list]:
    """(rows outside the widened percentile box, the box) for finite positions."""
    n = len(positions)
    if n < 8:
        return np.zeros(n, bool), []
    p = positions.astype(np.float64)
    lo = np.quantile(p, OUTLIER_QUANTILE, axis=0, method="inverted_cdf")
    hi = np.quantile(p, 1 - OUTLIER_QUANTILE, axis=0, method="inverted_cdf")
    width = np.maximum(hi - lo, 1e-6 * np.maximum(1.0, np.maximum(np.abs(lo), np.abs(hi))))
    box_lo, box_hi = lo - OUTLIER_WIDEN * width, hi + OUTLIER_WIDEN * width
    mask = ((p < box_lo) | (p > box_hi)).any(axis=1)
    return mask, [box_lo.tolist(), box_hi.tolist()]


def clean_scene(g: Gaussians, drop_invalid: bool = False, drop_outliers: bool = False) -> tuple[Gaussians, CleanReport]:
    """``g`` under the policy above, and what was done; InvalidValues when non-finite values remain an error."""
    report = CleanReport(len(g))
    bad = np.zeros(len(g), bool)
    problems = []
    for name, attr in _FIELDS:
        a = getattr(g, attr)
        rows = _bad_rows(a)
        if attr == "opacities" and not drop_invalid:
            rows = np.isnan(a)          # +-inf opacity: clamped below
        if rows.any():
            bad |= rows
            problems.append(_describe(name, a if attr != "opacities" or drop_invalid else np.where(rows, a, 0)))
    if bad.any() and not drop_invalid:
        raise InvalidValues(f"{int(bad.sum()):,} of {len(g):,} rows have non-finite values: {'; '.join(problems)}; "
                            "--drop-invalid drops those rows")
    keep = ~bad
    report.invalid_dropped = int(bad.sum())
    inf_opacity = np.isinf(g.opacities) & keep
    report.opacity_clamped = int(inf_opacity.sum())
    kept = np.flatnonzero(keep)          # rows with finite positions
    mask, box = outlier_mask(g.positions[kept])
    report.outliers = int(mask.sum())
    if report.outliers:
        report.outlier_box = box
        if drop_outliers:
            report.outliers_dropped = report.outliers
            keep[kept[mask]] = False
    if keep.all() and not report.opacity_clamped:
        return g, report
    g = g.take(np.flatnonzero(keep)) if not keep.all() else g.take(np.arange(len(g)))
    if report.opacity_clamped:
        g.opacities = np.clip(g.opacities, -OPACITY_LIMIT, OPACITY_LIMIT).astype(np.float32)
    return g, report
