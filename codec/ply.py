"""Standard 3DGS PLY read and write.

The layout every 3DGS trainer writes (the reference ``GaussianModel.save_ply``)::

    ply
    format binary_little_endian 1.0
    element vertex N
    property float x / y / z
    property float nx / ny / nz                  (always zero)
    property float f_dc_0 .. f_dc_2
    property float f_rest_0 .. f_rest_{3K-1}     (channel-major, K = 0, 3, 8 or 15)
    property float opacity                       (logit)
    property float scale_0 .. scale_2            (log std-dev)
    property float rot_0 .. rot_3                (quaternion w, x, y, z)
    end_header
    <N records of float32, little-endian>

``read_ply`` accepts any property order, extra properties, missing normals,
float32 or float64 (or integer) properties and any element order. Binary
files whose vertex element has only scalar properties are parsed here with
one ``np.fromfile``; everything else (ascii, list properties in the vertex
element, list-property elements before it) goes through ``plyfile``.
``write_ply`` writes the trainer layout exactly, so a write -> read round
trip is bit-exact (including -0.0 and NaN payloads).
"""
from __future__ import annotations

import os
import re

import numpy as np

from .attributes import Gaussians, rest_coeffs

__all__ = ["read_ply", "read_ply_with_ids", "write_ply", "ply_size_bytes", "ply_header", "ply_property_names", "read_ply_elements",
           "is_compressed_ply"]

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
_REST_RE = re.compile(r"f_rest_(\d+)$")
_MAX_HEADER = 1 << 20


# ------------------------------------------------------------------------------------------ write
def ply_property_names(sh_degree: int) -> list[str]:
    """Vertex property names of the standard layout, in order."""
    k3 = 3 * rest_coeffs(sh_degree)
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
            + [f"f_rest_{i}" for i in range(k3)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def ply_header(n: int, sh_degree: int) -> bytes:
    """The exact header ``write_ply`` writes for n Gaussians of an SH degree."""
    lines = ["ply", "format binary_little_endian 1.0", f"element vertex {int(n)}"]
    lines += [f"property float {p}" for p in ply_property_names(sh_degree)]
    lines.append("end_header")
    return ("\n".join(lines) + "\n").encode("ascii")


def ply_size_bytes(n: int, sh_degree: int) -> int:
    """Byte size of the standard float32 3DGS PLY (with normals) of n Gaussians."""
    if sh_degree not in (0, 1, 2, 3):
        raise ValueError(f"sh_degree must be 0..3, got {sh_degree}")
    return len(ply_header(n, sh_degree)) + int(n) * 4 * len(ply_property_names(sh_degree))


def write_ply(path, gaussians: Gaussians, ids: np.ndarray | None = None) -> None:
    """Write the standard binary little-endian 3DGS PLY (normals zero); with ``ids``, one more vertex
    property ``uint id`` after the standard ones (a Gaussian's identity across the files of a sequence)."""
    g = gaussians
    n, d = len(g), g.sh_degree
    k3 = g.sh_rest.shape[1]
    body = np.zeros((n, 17 + k3), dtype="<f4")
    body[:, 0:3] = g.positions
    # columns 3:6 are the normals, left zero
    body[:, 6:9] = g.sh_dc
    body[:, 9:9 + k3] = g.sh_rest
    c = 9 + k3
    body[:, c] = g.opacities
    body[:, c + 1:c + 4] = g.scales
    body[:, c + 4:c + 8] = g.rotations
    header = ply_header(n, d)
    if ids is not None:
        ids = np.asarray(ids).reshape(-1)
        if len(ids) != n or (n and (ids.min() < 0 or ids.max() > 0xFFFFFFFF)):
            raise ValueError("ids: one value in 0..2^32-1 per Gaussian")
        rec = np.zeros(n, [("f", "<f4", (body.shape[1],)), ("id", "<u4")])
        rec["f"], rec["id"] = body, ids
        body, header = rec, header.replace(b"end_header", b"property uint id\nend_header")
    with open(os.fspath(path), "wb") as f:
        f.write(header)
        body.tofile(f)


# ------------------------------------------------------------------------------------------- read
def read_ply(path) -> Gaussians:
    """Read a 3DGS PLY into float32 ``Gaussians`` (``read_ply_with_ids`` for its ``id`` property too)."""
    return read_ply_with_ids(path)[0]


def read_ply_with_ids(path) -> tuple[Gaussians, np.ndarray | None]:
    """Read a 3DGS PLY into float32 ``Gaussians``, and its vertex property ``id`` (as stored; None when
    absent): a Gaussian's identity across the files of a sequence (codec.sequence checks the values).

    Raises ValueError when the file is not a PLY, is truncated (its header
    declares more rows than the file has bytes for: checked before anything
    is allocated), or its vertex element lacks a 3DGS attribute (x/y/z,
    f_dc_0..2, opacity, scale_0..2, rot_0..3) or has an f_rest_* set that is
    not 0, 9, 24 or 45 contiguous coefficients. A PlayCanvas compressed PLY
    is named as such (``codec.interop.read_scene`` reads it).
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        fmt, elements = _read_header(f, path)
        _check_counts(f, fmt, elements, path)
        if is_compressed_ply(elements):
            raise ValueError(f"{path}: a PlayCanvas compressed PLY (packed_position), not a float 3DGS PLY; "
                             "read it with codec.interop.read_scene (gsd encode does)")
        vertex = _fast_vertex(f, fmt, elements, path) if fmt != "ascii" else None
    if vertex is None:
        vertex = _plyfile_vertex(path)
    ids = np.asarray(vertex["id"]) if "id" in (vertex.dtype.names or ()) else None
    return _gaussians_from_struct(vertex, path), ids


def is_compressed_ply(elements) -> bool:
    """Whether a parsed header is PlayCanvas's compressed layout (a vertex element with packed_position)."""
    return any(name == "vertex" and any(p == "packed_position" for p, _ in props) for name, _, props in elements)


def read_ply_elements(path) -> tuple[list, dict]:
    """(header elements, {name: structured array}) of a binary PLY whose elements have only scalar properties.

    For layouts other than the 3DGS one (PlayCanvas's compressed PLY); counts
    are checked against the file size before anything is read.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        fmt, elements = _read_header(f, path)
        _check_counts(f, fmt, elements, path)
        if fmt == "ascii" or any(t is None for _, _, props in elements for _, t in props):
            raise ValueError(f"{path}: expected a binary PLY with scalar properties only")
        endian = "<" if fmt == "binary_little_endian" else ">"
        out = {}
        for name, count, props in elements:
            dtype = np.dtype([(p, endian + _PLY_TYPES[t]) for p, t in props])
            if len(set(p for p, _ in props)) != len(props):
                raise ValueError(f"{path}: duplicate property names in element {name!r}")
            out[name] = np.fromfile(f, dtype=dtype, count=count) if count and dtype.itemsize else np.zeros(count, dtype)
            if len(out[name]) != count:
                raise ValueError(f"{path}: truncated PLY: {len(out[name])} of {count} {name} rows")
    return elements, out


def _check_counts(f, fmt: str, elements, path: str) -> None:
    """Reject a header whose element counts need more bytes than follow it (before any allocation).

    Binary elements of scalar properties need exactly count x record size;
    any other element row (ascii, list properties) at least one byte.
    """
    here = f.tell()
    left = os.fstat(f.fileno()).st_size - here
    need = 0
    for name, count, props in elements:
        fixed = fmt != "ascii" and all(t is not None for _, t in props)
        row = sum(int(_PLY_TYPES[t][1]) for _, t in props) if fixed else 1
        need += count * max(row, 1 if props else 0)
        if need > left:
            raise ValueError(f"{path}: truncated or corrupt PLY: the header declares {count:,} {name} rows "
                             f"({need:,} bytes or more), but only {left:,} bytes follow it")


def _read_header(f, path: str):
    """(format, [(element name, count, [(prop name, ply type or None for list)])])."""
    first = f.readline(16)
    if first.rstrip(b"\r\n") != b"ply":
        raise ValueError(f"{path}: not a PLY file (no 'ply' magic)")
    fmt = None
    elements: list = []
    total = len(first)
    while True:
        raw = f.readline(_MAX_HEADER)
        total += len(raw)
        if not raw or total > _MAX_HEADER:
            raise ValueError(f"{path}: PLY header has no end_header")
        try:
            line = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            raise ValueError(f"{path}: PLY header is not ASCII") from None
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "end_header":
            break
        if words[0] == "format" and len(words) >= 3:
            fmt = words[1]
            if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
                raise ValueError(f"{path}: unknown PLY format {fmt!r}")
        elif words[0] == "element" and len(words) == 3:
            try:
                count = int(words[2])
            except ValueError:
                raise ValueError(f"{path}: bad element count in {line!r}") from None
            if count < 0:
                raise ValueError(f"{path}: negative element count in {line!r}")
            elements.append((words[1], count, []))
        elif words[0] == "property" and elements:
            if len(words) == 3:
                if words[1] not in _PLY_TYPES:
                    raise ValueError(f"{path}: unknown PLY property type {words[1]!r}")
                elements[-1][2].append((words[2], words[1]))
            elif len(words) == 5 and words[1] == "list":
                elements[-1][2].append((words[4], None))
            else:
                raise ValueError(f"{path}: bad property line {line!r}")
        else:
            raise ValueError(f"{path}: bad PLY header line {line!r}")
    if fmt is None:
        raise ValueError(f"{path}: PLY header has no format line")
    return fmt, elements


def _fast_vertex(f, fmt: str, elements, path: str):
    """The vertex element as a structured array read straight from the file, or None to defer."""
    endian = "<" if fmt == "binary_little_endian" else ">"
    skip = 0
    for name, count, props in elements:
        if any(t is None for _, t in props):
            return None  # list properties: variable record size, let plyfile handle it
        dtype = np.dtype([(p, endian + _PLY_TYPES[t]) for p, t in props])
        if name == "vertex":
            if len(set(p for p, _ in props)) != len(props):
                raise ValueError(f"{path}: duplicate vertex property names")
            if skip:
                f.seek(skip, os.SEEK_CUR)
            if count == 0 or dtype.itemsize == 0:
                return np.zeros(count, dtype)
            data = np.fromfile(f, dtype=dtype, count=count)
            if len(data) != count:
                raise ValueError(f"{path}: truncated PLY: {len(data)} of {count} vertices")
            return data
        skip += count * dtype.itemsize
    raise ValueError(f"{path}: PLY has no 'vertex' element; not a 3DGS PLY")


def _plyfile_vertex(path: str) -> np.ndarray:
    try:
        from plyfile import PlyData
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ValueError(f"{path}: this PLY (ascii or list properties) needs the 'plyfile' package") from e
    try:
        ply = PlyData.read(path)
    except Exception as e:
        raise ValueError(f"{path}: cannot parse PLY: {e}") from e
    if "vertex" not in ply:
        raise ValueError(f"{path}: PLY has no 'vertex' element; not a 3DGS PLY")
    return ply["vertex"].data


def _gaussians_from_struct(data: np.ndarray, path: str) -> Gaussians:
    names = data.dtype.names or ()
    nameset = set(names)
    required = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
                "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    missing = [p for p in required if p not in nameset]
    if missing:
        raise ValueError(f"{path}: not a 3DGS PLY: vertex element lacks {', '.join(missing)}")
    rest_idx = sorted(int(m.group(1)) for p in names if (m := _REST_RE.match(p)))
    if rest_idx != list(range(len(rest_idx))) or len(rest_idx) not in (0, 9, 24, 45):
        raise ValueError(f"{path}: not a 3DGS PLY: f_rest_* must be f_rest_0..f_rest_{{3K-1}} with K in 0,3,8,15 "
                         f"(found {len(rest_idx)} coefficients)")
    rest_names = [f"f_rest_{i}" for i in range(len(rest_idx))]
    n = len(data)

    fields = data.dtype.fields
    same_f4 = all(fields[p][0] == np.dtype("<f4") for p in names) and data.dtype.itemsize == 4 * len(names)
    if same_f4 and n:
        # every property a packed little-endian float32: gather columns of a 2-D view
        table = data.view("<f4").reshape(n, len(names))
        col = {p: fields[p][1] // 4 for p in names}

        def cols(ps):
            c = [col[p] for p in ps]
            if c == list(range(c[0], c[0] + len(c))):  # a contiguous run (the standard layout): slice
                return table[:, c[0]:c[0] + len(c)]
            return table[:, c]
    else:
        def cols(ps):
            out = np.empty((n, len(ps)), np.float32)
            for j, p in enumerate(ps):
                out[:, j] = data[p]
            return out

    return Gaussians(
        positions=cols(["x", "y", "z"]),
        scales=cols(["scale_0", "scale_1", "scale_2"]),
        rotations=cols(["rot_0", "rot_1", "rot_2", "rot_3"]),
        opacities=cols(["opacity"])[:, 0],
        sh_dc=cols(["f_dc_0", "f_dc_1", "f_dc_2"]),
        sh_rest=cols(rest_names) if rest_names else np.zeros((n, 0), np.float32),
    )
