"""The encoder's loops from float attributes to integer codes (SPEC.md 5), one per attribute kind.

Each reads (N, C) float32 rows in the order given by ``order`` (the encoder writes ids ascending),
writes columns start..stop of (C, N) planar codes (ranges of one array go to different worker
threads), and returns NONFINITE if it met a NaN or an infinity (the codes are then meaningless and
the caller raises), so the input is read once. The arithmetic is fixed so that every encoder built
on this codec rounds the same way: float64 for position, scale, DC, opacity and rotation, float32
for the SH rest coefficients; ties round half to even. Decoders never run these: the codes are the
state.
"""
from __future__ import annotations

import numpy as np

from .jit import kernel
from .spatial import interleave, unspread

OK, NONFINITE, TOO_FAR = 0, 1, 2
_SQRT2 = np.sqrt(2.0)
_INV_SQRT2 = 1.0 / _SQRT2


@kernel(inline=True)
def axis_code(v, origin, cell, cell_size, step):
    """One axis of a position code (SPEC.md 5.3) against cell coordinate ``cell``: the one arithmetic
    of the quantizer and of the id assignment that chooses the cell (ADD_IMPLICIT needs them equal)."""
    return np.rint((v - (origin + cell * cell_size)) / step)


@kernel
def position_codes(values, ids, order, slot_bits, origin, cell_size, step, out, start, stop):
    """out[k, j] = rint((v - origin of the id's birth cell) / step); TOO_FAR if a code leaves int32."""
    bad = False
    far = False
    for j in range(start, stop):
        r = order[j]
        cell = ids[r] >> slot_bits
        for k in range(3):
            v = np.float64(values[r, k])
            bad |= v - v != 0.0
            c = axis_code(v, origin[k], np.float64(unspread(cell >> np.uint64(k))), cell_size, step)
            if -2147483647.0 <= c <= 2147483647.0:
                out[k, j] = np.int32(c)
            else:
                far = True
    return NONFINITE if bad else TOO_FAR if far else OK


@kernel
def placed_cells(values, origin, cell_size, step, top_cell, top_code, shift, cells, keys):
    """For new Gaussians at ``values`` (N, 3): the Morton code of the cell that each one's quantized
    position falls in (the cell of the position, or its upper neighbour where the position code would
    round to 2^pb), and its placement code (SPEC.md 6.1: the cell's Morton code << ``shift``, with the
    Morton code of its position code there below). Ids assigned in that cell, in placement order within
    it, can go in ADD_IMPLICIT blocks (SPEC.md 3.3)."""
    cell = np.empty(3, np.uint64)
    code = np.empty(3, np.uint64)
    for i in range(values.shape[0]):
        for k in range(3):
            v = np.float64(values[i, k])
            c = np.floor((v - origin[k]) / cell_size)
            if not c >= 0.0:  # below the grid, or NaN (the quantizer reports that)
                c = 0.0
            c = min(c, top_cell)
            q = axis_code(v, origin[k], c, cell_size, step)
            if q >= top_code and c < top_cell:
                c += 1.0
                q = axis_code(v, origin[k], c, cell_size, step)
            cell[k] = np.uint64(c)
            code[k] = np.uint64(q) if 0.0 <= q < top_code else np.uint64(0)
        cells[i] = interleave(cell[0], cell[1], cell[2])
        keys[i] = (cells[i] << shift) | interleave(code[0], code[1], code[2])


@kernel
def uniform_codes(values, order, lo, scale, top, out, start, stop):
    """out[k, j] = clip(rint((v - lo) * scale), 0, top), in float64 (scale, DC)."""
    bad = False
    for j in range(start, stop):
        r = order[j]
        for k in range(values.shape[1]):
            v = np.float64(values[r, k])
            bad |= v - v != 0.0
            c = np.rint((v - lo) * scale)
            out[k, j] = min(max(c, 0.0), top)
    return NONFINITE if bad else OK


@kernel
def opacity_codes(values, order, levels, out, start, stop):
    """out[0, j] = clip(floor(sigmoid(v) * levels), 0, levels - 1); sigmoid via tanh (no overflow)."""
    top = levels - 1.0
    bad = False
    for j in range(start, stop):
        v = np.float64(values[order[j], 0])
        bad |= v - v != 0.0
        alpha = 0.5 * (1.0 + np.tanh(0.5 * v))
        out[0, j] = min(max(np.floor(alpha * levels), 0.0), top)
    return NONFINITE if bad else OK


@kernel
def rest_codes(values, inv_step, lim, out, start, stop):
    """out[r, k] = clip(rint(v[r, k] * inv_step[k]), -lim[k], lim[k]) for rows start..stop, in float32
    (SH rest), in input order and row-major: contiguous on both sides, so it vectorizes;
    ``take_columns`` then writes the planar, id-ordered codes."""
    bad = False
    for r in range(start, stop):
        for k in range(values.shape[1]):
            v = values[r, k]
            bad |= v - v != 0
            c = np.rint(v * inv_step[k])
            out[r, k] = min(max(c, -lim[k]), lim[k])
    return NONFINITE if bad else OK


@kernel
def take_columns(rows, order, out, start, stop):
    """out[k, j] = rows[order[j], k] for columns start..stop: a gather and a transpose, in blocks of
    64 columns so that the rows read stay in cache while every component of them is written."""
    for j0 in range(start, stop, 64):
        j1 = min(stop, j0 + 64)
        for k in range(rows.shape[1]):
            for j in range(j0, j1):
                out[k, j] = rows[order[j], k]


@kernel(inline=True)
def smallest_three(big, stored, step, q):
    """q = the quaternion of a ROTATION code (SPEC.md 5.3, decode): ``stored`` holds the codes of
    the three components other than ``big`` in ascending index order (step sqrt(2) / n each, from
    -1/sqrt(2)); the largest follows from the unit norm. Decoders read codes with it, and the
    encoder weighs candidate codes by what they will decode to."""
    s = 0.0
    m = 0
    for k in range(4):
        if k != big:
            v = np.float64(stored[m]) * step - _INV_SQRT2
            s += v * v
            q[k] = v
            m += 1
    q[big] = np.sqrt(max(0.0, 1.0 - s))


@kernel(inline=True)
def turn_error(q, c, w0, w1, w2):
    """Covariance error of decoding unit quaternion ``q`` as ``c``: with v the vector part of
    conj(q) c (half the small turn between them, in the Gaussian's own axes) and w_k = (s_i^2 -
    s_j^2)^2 for the other two axes i, j, ||R' S^2 R'^T - R S^2 R^T||_F^2 = 8 sum_k w_k v_k^2 to
    first order. A turn about an axis whose two partners are equally long changes nothing."""
    x = q[0] * c[1] - q[1] * c[0] - q[2] * c[3] + q[3] * c[2]
    y = q[0] * c[2] + q[1] * c[3] - q[2] * c[0] - q[3] * c[1]
    z = q[0] * c[3] - q[1] * c[2] + q[2] * c[1] - q[3] * c[0]
    return w0 * x * x + w1 * y * y + w2 * z * z


@kernel
def rotation_codes(values, scales, held, order, top, out, start, stop):
    """Smallest three: (index of the largest |component|, the other three mapped from
    [-1/sqrt2, 1/sqrt2] to 0..top), of the normalized quaternion with its largest component >= 0.

    Without ``scales`` (0 rows) each stored component rounds to its nearest code. With ``scales``
    (the rows' log-scales) the encoder takes, of the 27 codes within one step of that, the one whose
    decoded rotation moves the Gaussian's covariance least (``turn_error``; the nearest on ties): a
    captured scene's Gaussians are needles and discs, whose error is in the turns that swing their
    long axes, and picking the code for those halves the rotation's render error at the same bytes
    (SPEC.md Appendix C). ``held`` (4 x columns, or 0 columns): the codes a decoder holds for the
    rows (an UPDATE); a held code among the 27 that moves the covariance no more than the nearest
    code does is kept, so a rotation that barely changed costs no residual."""
    scale = top / _SQRT2
    step = _SQRT2 / top
    shaped = scales.shape[0] > 0
    keep = held.shape[1] > 0
    q = np.empty(4, np.float64)
    c = np.empty(4, np.float64)
    near = np.empty(3, np.float64)
    best = np.empty(3, np.float64)
    trial = np.empty(3, np.float64)
    w = np.empty(3, np.float64)
    bad = False
    for j in range(start, stop):
        r = order[j]
        s = 0.0
        for k in range(4):
            q[k] = np.float64(values[r, k])
            bad |= q[k] - q[k] != 0.0
            s += q[k] * q[k]
        norm = np.sqrt(s)
        if norm > 0:
            for k in range(4):
                q[k] = q[k] / norm
        else:
            q[0], q[1], q[2], q[3] = 1.0, 0.0, 0.0, 0.0
        big = 0
        for k in range(1, 4):
            if abs(q[k]) > abs(q[big]):
                big = k
        if q[big] < 0:
            for k in range(4):
                q[k] = -q[k]
        out[0, j] = big
        m = 0
        for k in range(4):
            if k != big:
                near[m] = min(max(np.rint((q[k] + _INV_SQRT2) * scale), 0.0), top)
                best[m] = near[m]
                m += 1
        if shaped:
            for k in range(3):
                w[k] = np.exp(2.0 * np.float64(scales[r, k]))
            w0, w1, w2 = (w[1] - w[2]) ** 2, (w[0] - w[2]) ** 2, (w[0] - w[1]) ** 2
            smallest_three(big, near, step, c)
            rounded = turn_error(q, c, w0, w1, w2)
            least = rounded
            for d in range(27):
                trial[0], trial[1], trial[2] = near[0] + d // 9 - 1, near[1] + d // 3 % 3 - 1, near[2] + d % 3 - 1
                if min(trial[0], trial[1], trial[2]) < 0.0 or max(trial[0], trial[1], trial[2]) > top:
                    continue
                smallest_three(big, trial, step, c)
                err = turn_error(q, c, w0, w1, w2)
                if err < least:
                    least = err
                    best[0], best[1], best[2] = trial[0], trial[1], trial[2]
            if keep and held[0, j] == big:
                for m in range(3):
                    trial[m] = np.float64(held[m + 1, j])
                if abs(trial[0] - near[0]) <= 1.0 and abs(trial[1] - near[1]) <= 1.0 and abs(trial[2] - near[2]) <= 1.0:
                    smallest_three(big, trial, step, c)
                    if turn_error(q, c, w0, w1, w2) <= rounded:
                        best[0], best[1], best[2] = trial[0], trial[1], trial[2]
        for m in range(3):
            out[m + 1, j] = best[m]
    return NONFINITE if bad else OK


@kernel
def take_planar(codes, order, out, start, stop):
    """out[k, j] = codes[k, order[j]] for columns start..stop: codes quantized in input order put in
    id order. One component at a time, so the row read at random (1-4 bytes a code) stays in cache."""
    for k in range(codes.shape[0]):
        for j in range(start, stop):
            out[k, j] = codes[k, order[j]]
