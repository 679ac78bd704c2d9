"""SPZ (Niantic's compressed splat format) read and write, versions 2, 3 and 4.

Written from the public format description (the nianticlabs/spz README and its
reference loader's documented behaviour); no code copied. What a file holds:

* v2, v3: the whole payload gzip-compressed: a 16-byte header
  ``magic u32 = 0x5053474e ("NGSP"), version u32, numPoints u32, shDegree u8,
  fractionalBits u8, flags u8, reserved u8``, then per-attribute arrays in this
  order: positions, alphas, colors, scales, rotations, SH (then extension records
  when flags & 0x2).
* v4: a plaintext 32-byte header ``magic, version, numPoints, shDegree,
  fractionalBits, flags, numStreams u8, tocByteOffset u32, reserved[12]``,
  extension records up to tocByteOffset, a table of contents of numStreams x
  (compressedSize u64, uncompressedSize u64), then each non-empty attribute array
  (same order) as its own zstd frame.

Per Gaussian (all little-endian):

| array | bytes | encoding | decoding (our PLY conventions) |
| --- | --- | --- | --- |
| positions | 9 | 3 x 24-bit two's complement fixed point, ``round(p * 2^fb)`` | ``code / 2^fb`` |
| alphas | 1 | ``round(sigmoid(opacity) * 255)`` | ``logit(code / 255)`` (codes 0 and 255 clamped, see below) |
| colors | 3 | ``round(f_dc * 0.15 * 255 + 127.5)`` | ``(code / 255 - 0.5) / 0.15`` |
| scales | 3 | ``round((log_scale + 10) * 16)`` | ``code / 16 - 10`` |
| rotations v2 | 3 | x, y, z of the unit quaternion with w >= 0, ``round(c * 127.5 + 127.5)`` | w = sqrt(1 - x^2 - y^2 - z^2) |
| rotations v3+ | 4 | u32: bits 30-31 index (in x, y, z, w order) of the largest component; the other three in ascending index order, the first in the highest bits, 10 bits each: sign (relative to the largest) << 9 then ``round(511 * abs(c) * sqrt(2))`` | largest = sqrt(1 - sum of squares) |
| SH | 3K | coefficient-major, RGB inner; ``round(x * 128) + 128`` snapped to buckets of 2^(8-bits) (5 bits for degree 1, 4 above by default), clamped to 0..255 | ``(code - 128) / 128`` |

Rounding is half away from zero (C's ``round``); all bytes are clamped to 0..255.

Coordinates: the SPZ README says SPZ stores RUB (x right, y up, z back;
three.js/OpenGL) unless a ``SPZ_ADOBE_coordinate_system`` extension (type
0xADBE0003) says otherwise, while the 3DGS PLY (and GSD, SPEC.md 2.4) is RDF (x
right, y down, z forward). With ``frame="rub"`` (the default, the README's rule)
the conversion is a 180-degree rotation about x: positions (x, -y, -z),
quaternions (w, x, -y, -z), and the SH coefficients whose basis polynomial is odd
in y*z change sign. Caution: the reference library's own ply_to_spz / spz_to_ply
tools and @playcanvas/splat-transform convert nothing (they store the PLY's
values as they are), so their files need ``frame="raw"``; the format carries no
flag that tells the two apart. A file with the extension is converted from the
system it declares (one of the eight axis-flip systems; the rotated ones are
rejected) whatever ``frame`` says.

Decoded alphas of code 0 and 255 would be logits of -inf and +inf; they decode to
the logits of 0.25/255 and 254.75/255 instead (the middle of those codes'
rounding intervals: invisible, and fully opaque after the renderer's 0.99 clamp),
so every decoded value is finite and re-encodes to the same code. SH degree 4 files
decode with their degree-4 band dropped (GSD stops at degree 3).
"""
from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass

import numpy as np
import zstandard

from ..attributes import Gaussians, rest_coeffs

MAGIC = 0x5053474E
COLOR_SCALE = 0.15
SQRT1_2 = np.float32(0.7071067811865476)
FLAG_ANTIALIASED = 0x1
FLAG_EXTENSIONS = 0x2
EXT_COORDINATE_SYSTEM = 0xADBE0003
RUB, RDF = 4, 6                        # the spz CoordinateSystem enum values we need by name
_LEGACY_HEADER = struct.Struct("<IIIBBBB")
_V4_HEADER = struct.Struct("<IIIBBBBI12s")
_TOC_ENTRY = struct.Struct("<QQ")
_MAX_EXTENSION_BYTES = 1 << 20         # extension records after a legacy payload: read at most this much
_MAX_RATIO = 1032                      # deflate's largest expansion: bomb guard
MAX_POINTS = 1 << 26                   # default cap on a file's point count (67M; the largest captures are ~20M)
ZSTD_LEVEL = 12                        # what the reference writer uses for v4 streams


class SpzError(ValueError):
    """A malformed or unsupported .spz file."""


@dataclass(frozen=True)
class SpzHeader:
    version: int
    num_points: int
    sh_degree: int
    fractional_bits: int
    antialiased: bool
    coordinate_system: int | None = None   # from the extension, when the file has one


# ------------------------------------------------------------------------------------------ helpers
def _round(x: np.ndarray) -> np.ndarray:
    """C's round(): half away from zero."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(_round(x), 0, 255).astype(np.uint8)


def _sh_dim(degree: int) -> int:
    return (degree + 1) ** 2 - 1


def _flips(system: int, sh_dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sign flips (position xyz, quaternion xyz, SH coefficients) between ``system`` and RDF.

    Only the eight axis-flip systems (spz enum 1..8: bit 0 R/L, bit 1 U/D, bit 2
    F/B of value - 1) are supported. Each SH coefficient flips with the parity of
    its basis polynomial in x, y, z (3DGS order).
    """
    if not 1 <= system <= 8:
        raise SpzError(f"SPZ coordinate system {system} is not supported (only the 8 axis-flip systems)")
    a, b = system - 1, RDF - 1
    sx, sy, sz = (1.0 if ((a >> k) & 1) == ((b >> k) & 1) else -1.0 for k in range(3))
    pos = np.array([sx, sy, sz], np.float32)
    quat = np.array([sy * sz, sx * sz, sx * sy], np.float32)   # a flip P acts on rotations as P R P
    # parity of each basis function: degree 1 y z x; 2 xy yz 1 xz 1; 3 y xyz y z x z x
    sh = np.array([sy, sz, sx, sx * sy, sy * sz, 1, sx * sz, 1, sy, sx * sy * sz, sy, sz, sx, sz, sx,
                   # degree 4 (only to read such files; the band is dropped afterwards)
                   sx * sy, sy * sz, sx * sy, sy * sz, 1, sx * sz, 1, sx * sz, sy], np.float32)[:sh_dim]
    return pos, quat, sh


def _read_extensions(buf: bytes) -> int | None:
    """Parse extension records; return the declared coordinate system (None when none)."""
    system, off = None, 0
    while off < len(buf):
        if off + 8 > len(buf):
            raise SpzError("truncated SPZ extension record")
        typ, length = struct.unpack_from("<II", buf, off)
        off += 8
        if off + length > len(buf):
            raise SpzError("SPZ extension record runs past its block")
        if typ == EXT_COORDINATE_SYSTEM:
            if length != 4:
                raise SpzError("bad SPZ coordinate-system extension length")
            value = struct.unpack_from("<I", buf, off)[0]
            system = value if value != 0 else None
        off += length
    return system


def _sizes(n: int, degree: int, version: int) -> list[int]:
    """Byte sizes of the six arrays, in file order."""
    return [9 * n, n, 3 * n, 3 * n, (4 if version >= 3 else 3) * n, 3 * _sh_dim(degree) * n]


# ------------------------------------------------------------------------------------------ decode
_FRAMES = {"rub": RUB, "raw": RDF}


def _frame(frame: str) -> int:
    if frame not in _FRAMES:
        raise ValueError(f"frame must be 'rub' or 'raw', not {frame!r}")
    return _FRAMES[frame]


def _unpack_arrays(arrays: list[bytes], header: SpzHeader, frame: str) -> Gaussians:
    n, degree = header.num_points, header.sh_degree
    dim = _sh_dim(degree)
    system = header.coordinate_system if header.coordinate_system is not None else _frame(frame)
    fpos, fquat, fsh = _flips(system, dim)

    p = np.frombuffer(arrays[0], np.uint8).reshape(n, 3, 3).astype(np.int32)
    fixed = p[:, :, 0] | (p[:, :, 1] << 8) | (p[:, :, 2] << 16)
    fixed = np.where(fixed & 0x800000, fixed - (1 << 24), fixed)
    positions = fixed.astype(np.float32) * np.float32(1.0 / (1 << header.fractional_bits)) * fpos

    a = np.frombuffer(arrays[1], np.uint8).astype(np.float64)
    a = np.clip(a, 0.25, 254.75) / 255.0
    opacities = np.log(a / (1.0 - a)).astype(np.float32)
    colors = ((np.frombuffer(arrays[2], np.uint8).reshape(n, 3).astype(np.float32) / 255.0) - 0.5) / COLOR_SCALE
    scales = np.frombuffer(arrays[3], np.uint8).reshape(n, 3).astype(np.float32) / 16.0 - 10.0

    xyzw = np.empty((n, 4), np.float32)
    if header.version >= 3:
        r = np.frombuffer(arrays[4], "<u4").astype(np.int64)
        largest = r >> 30
        ss = np.zeros(n, np.float32)
        comp = r.copy()
        for i in (3, 2, 1, 0):                      # the last stored component sits in the lowest bits
            mag = (comp & 511).astype(np.float32) * (SQRT1_2 / np.float32(511))
            val = np.where((comp >> 9) & 1, -mag, mag)
            take = largest != i
            xyzw[:, i] = np.where(take, val, 0.0)
            ss += np.where(take, val * val, 0.0)
            comp = np.where(take, comp >> 10, comp)
        xyzw[np.arange(n), largest] = np.sqrt(np.maximum(0.0, 1.0 - ss))
    else:
        xyz = np.frombuffer(arrays[4], np.uint8).reshape(n, 3).astype(np.float32) / np.float32(127.5) - 1.0
        xyzw[:, :3] = xyz
        xyzw[:, 3] = np.sqrt(np.maximum(0.0, 1.0 - (xyz * xyz).sum(1)))
    xyzw[:, :3] *= fquat
    rotations = xyzw[:, [3, 0, 1, 2]]

    sh = (np.frombuffer(arrays[5], np.uint8).reshape(n, dim, 3).astype(np.float32) - 128.0) / 128.0
    sh *= fsh[None, :, None]
    keep = rest_coeffs(min(degree, 3))
    sh_rest = np.ascontiguousarray(sh[:, :keep, :].transpose(0, 2, 1)).reshape(n, 3 * keep)
    return Gaussians(positions, scales, rotations, opacities, colors, sh_rest)


def decode_spz(data: bytes, frame: str = "rub", max_points: int = MAX_POINTS) -> tuple[Gaussians, SpzHeader]:
    """Decode the bytes of a .spz file (v2, v3 or v4) into Gaussians in PLY (RDF) conventions.

    ``frame``: how to read a file without a coordinate-system extension: "rub"
    (the SPZ README's default) or "raw" (values already in the PLY frame, as
    splat-transform and the reference CLI tools write them). A header claiming
    more than ``max_points`` points, or more than its compressed size can hold,
    is rejected before anything is allocated for it.
    """
    data = bytes(data)
    _frame(frame)
    if len(data) >= 4 and struct.unpack_from("<I", data)[0] == MAGIC:
        return _decode_v4(data, frame, max_points)
    if data[:2] == b"\x1f\x8b":
        return _decode_legacy(data, frame, max_points)
    raise SpzError("not an SPZ file (neither the NGSP magic nor a gzip stream)")


def _check_header(version: int, n: int, degree: int, fb: int, legacy: bool, max_points: int) -> None:
    if legacy and version not in (2, 3):
        raise SpzError(f"unsupported SPZ version {version} in a gzip payload (2 and 3 are)")
    if not legacy and version != 4:
        raise SpzError(f"unsupported SPZ version {version} with a plaintext header (4 is)")
    if degree > 4:
        raise SpzError(f"SPZ SH degree {degree} > 4")
    if fb > 24:
        raise SpzError(f"SPZ fractional bits {fb} > 24")
    if n > min(max_points, 2**31 - 1):
        raise SpzError(f"SPZ point count {n} is above the limit of {max_points}")


def _decode_legacy(data: bytes, frame: str, max_points: int) -> tuple[Gaussians, SpzHeader]:
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        head = d.decompress(data, _LEGACY_HEADER.size)
        if len(head) < _LEGACY_HEADER.size:
            raise SpzError("SPZ payload shorter than its 16-byte header")
        magic, version, n, degree, fb, flags, _ = _LEGACY_HEADER.unpack(head)
        if magic != MAGIC:
            raise SpzError(f"bad SPZ magic 0x{magic:08x}")
        _check_header(version, n, degree, fb, True, max_points)
        sizes = _sizes(n, degree, version)
        need = sum(sizes)
        if need > len(data) * _MAX_RATIO:   # deflate expands at most 1032:1
            raise SpzError(f"SPZ claims {n} points, more than {len(data)} compressed bytes can hold")
        # bounded inflation: never more than the arrays plus a bounded extension block
        body = d.decompress(d.unconsumed_tail, need + _MAX_EXTENSION_BYTES + 1)
    except zlib.error as e:
        raise SpzError(f"bad SPZ gzip stream: {e}") from None
    if len(body) < need:
        raise SpzError(f"SPZ payload truncated: {len(body)} bytes of arrays, {need} needed for {n} points")
    if len(body) > need + _MAX_EXTENSION_BYTES:
        raise SpzError("SPZ payload has more trailing data than an extension block may")
    system = None
    if flags & FLAG_EXTENSIONS:
        system = _read_extensions(body[need:])
    elif len(body) > need:
        raise SpzError(f"{len(body) - need} unexpected bytes after the SPZ arrays")
    offs = np.cumsum([0] + sizes)
    arrays = [body[offs[i]:offs[i + 1]] for i in range(6)]
    header = SpzHeader(version, n, degree, fb, bool(flags & FLAG_ANTIALIASED), system)
    return _unpack_arrays(arrays, header, frame), header


def _decode_v4(data: bytes, frame: str, max_points: int) -> tuple[Gaussians, SpzHeader]:
    if len(data) < _V4_HEADER.size:
        raise SpzError("SPZ file shorter than its 32-byte header")
    magic, version, n, degree, fb, flags, n_streams, toc, _ = _V4_HEADER.unpack_from(data)
    _check_header(version, n, degree, fb, False, max_points)
    if n > len(data) * _MAX_RATIO // 9:     # the reference loader's bound (positions alone need 9 bytes a point)
        raise SpzError(f"SPZ claims {n} points, more than {len(data)} compressed bytes can hold")
    if toc < _V4_HEADER.size or toc + n_streams * _TOC_ENTRY.size > len(data):
        raise SpzError("SPZ table of contents outside the file")
    system = _read_extensions(data[_V4_HEADER.size:toc]) if flags & FLAG_EXTENSIONS else None
    sizes = _sizes(n, degree, version)
    present = [i for i, s in enumerate(sizes) if s > 0]   # writers skip empty arrays
    if n_streams != len(present):
        raise SpzError(f"SPZ has {n_streams} streams, {len(present)} expected")
    arrays = [b""] * 6
    off = toc + n_streams * _TOC_ENTRY.size
    dctx = zstandard.ZstdDecompressor()
    for k, i in enumerate(present):
        csize, usize = _TOC_ENTRY.unpack_from(data, toc + k * _TOC_ENTRY.size)
        if usize != sizes[i]:
            raise SpzError(f"SPZ stream {k}: {usize} bytes declared, {sizes[i]} expected")
        if csize > len(data) - off:
            raise SpzError(f"SPZ stream {k} runs past the end of the file")
        try:
            arrays[i] = dctx.decompress(data[off:off + csize], max_output_size=usize)
        except zstandard.ZstdError as e:
            raise SpzError(f"SPZ stream {k}: {e}") from None
        if len(arrays[i]) != usize:
            raise SpzError(f"SPZ stream {k} decompressed to {len(arrays[i])} bytes, {usize} declared")
        off += csize
    if off != len(data):
        raise SpzError(f"{len(data) - off} unexpected bytes after the SPZ streams")
    header = SpzHeader(version, n, degree, fb, bool(flags & FLAG_ANTIALIASED), system)
    return _unpack_arrays(arrays, header, frame), header


# ------------------------------------------------------------------------------------------ encode
def _quantize_sh(x: np.ndarray, bits: int) -> np.ndarray:
    bucket = 1 << (8 - bits)
    q = (_round(x * np.float32(128.0)) + 128).astype(np.int64)
    q = (q + bucket // 2) // bucket * bucket
    return np.clip(q, 0, 255).astype(np.uint8)


def _pack_arrays(g: Gaussians, version: int, fb: int, sh1_bits: int, sh_rest_bits: int, frame: str) -> list[bytes]:
    n, degree = len(g), g.sh_degree
    fpos, fquat, fsh = _flips(_frame(frame), _sh_dim(degree))   # flips are their own inverse

    fixed = _round(g.positions.astype(np.float32) * np.float32(1 << fb) * fpos).astype(np.int64)
    fixed &= 0xFFFFFF
    pos = np.stack([fixed & 0xFF, (fixed >> 8) & 0xFF, fixed >> 16], axis=2).astype(np.uint8)

    alpha = (0.5 * (1.0 + np.tanh(0.5 * g.opacities.astype(np.float64)))).astype(np.float32)
    alphas = _u8(alpha * np.float32(255.0))
    colors = _u8(g.sh_dc * np.float32(COLOR_SCALE * 255.0) + np.float32(127.5))
    scales = _u8((g.scales + np.float32(10.0)) * np.float32(16.0))

    q = g.rotations[:, [1, 2, 3, 0]].astype(np.float32)      # x, y, z, w
    norm = np.linalg.norm(q, axis=1, keepdims=True)
    q = np.where(norm > 0, q / np.where(norm > 0, norm, 1), np.array([0, 0, 0, 1], np.float32))
    q[:, :3] *= fquat
    if version >= 3:
        largest = np.argmax(np.abs(q), axis=1)                # first index on ties, as the reference
        neg = q[np.arange(n), largest] < 0
        comp = largest.astype(np.int64)
        for i in range(4):
            take = largest != i
            mag = np.floor(np.float32(511.0) * (np.abs(q[:, i]) / SQRT1_2) + np.float32(0.5)).astype(np.int64)
            bits = (((q[:, i] < 0) ^ neg).astype(np.int64) << 9) | mag
            comp = np.where(take, (comp << 10) | bits, comp)
        rot = comp.astype("<u4")
    else:
        q = q * np.where(q[:, 3:4] < 0, np.float32(-127.5), np.float32(127.5)) + np.float32(127.5)
        rot = _u8(q[:, :3])

    dim = _sh_dim(degree)
    sh = g.sh_rest.reshape(n, 3, dim).transpose(0, 2, 1) * fsh[None, :, None]   # (n, coeff, rgb)
    sh_q = np.empty((n, dim, 3), np.uint8)
    sh_q[:, :3] = _quantize_sh(sh[:, :3], sh1_bits)
    sh_q[:, 3:] = _quantize_sh(sh[:, 3:], sh_rest_bits)
    return [pos.tobytes(), alphas.tobytes(), colors.tobytes(), scales.tobytes(), rot.tobytes(), sh_q.tobytes()]


def max_fractional_bits(positions: np.ndarray, limit: int = 12) -> int:
    """The most fractional bits (at most ``limit``, the reference's fixed 12) keeping every coordinate in 24 bits."""
    m = float(np.abs(positions).max()) if len(positions) else 0.0
    fb = limit
    while fb > 0 and m * (1 << fb) > (1 << 23) - 1:
        fb -= 1
    if m * (1 << fb) > (1 << 23) - 1:
        raise SpzError(f"positions up to {m:g} do not fit SPZ's 24-bit fixed point")
    return fb


def encode_spz(g: Gaussians, version: int = 3, fractional_bits: int | None = None, antialiased: bool = False,
               sh1_bits: int = 5, sh_rest_bits: int = 4, frame: str = "rub") -> bytes:
    """Encode Gaussians (PLY conventions) as a .spz file of ``version`` 2, 3 or 4.

    ``frame``: "rub" stores RUB as the SPZ README says; "raw" stores the PLY's
    values unconverted (what splat-transform and the reference CLI tools do).
    ``fractional_bits`` defaults to 12 (the reference writer's) or fewer when the
    scene is too large for 12; the SH bit depths default to the reference's 5 and 4.
    """
    if version not in (2, 3, 4):
        raise SpzError(f"can write SPZ versions 2, 3 and 4, not {version}")
    if len(g) == 0:
        raise SpzError("SPZ cannot hold an empty scene (its readers reject 0 points)")
    if not (1 <= sh1_bits <= 8 and 1 <= sh_rest_bits <= 8):
        raise SpzError("SH bits must be 1..8")
    fb = max_fractional_bits(g.positions) if fractional_bits is None else int(fractional_bits)
    arrays = _pack_arrays(g, version, fb, sh1_bits, sh_rest_bits, frame)
    flags = FLAG_ANTIALIASED if antialiased else 0
    if version < 4:
        payload = _LEGACY_HEADER.pack(MAGIC, version, len(g), g.sh_degree, fb, flags, 0) + b"".join(arrays)
        c = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)   # gzip wrapper, mtime 0
        return c.compress(payload) + c.flush()
    cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    streams = [(len(a), cctx.compress(a)) for a in arrays if a]
    toc = b"".join(_TOC_ENTRY.pack(len(c), u) for u, c in streams)
    head = _V4_HEADER.pack(MAGIC, 4, len(g), g.sh_degree, fb, flags, len(streams), _V4_HEADER.size, bytes(12))
    return head + toc + b"".join(c for _, c in streams)


# ------------------------------------------------------------------------------------------ files
def read_spz(path, frame: str = "rub", max_points: int = MAX_POINTS) -> Gaussians:
    with open(path, "rb") as f:
        return decode_spz(f.read(), frame, max_points)[0]


def write_spz(path, g: Gaussians, **options) -> int:
    """Write ``g`` as .spz (options as encode_spz); returns the bytes written."""
    data = encode_spz(g, **options)
    with open(os.fspath(path), "wb") as f:
        f.write(data)
    return len(data)
