"""codec.ply: standard 3DGS PLY read/write."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from plyfile import PlyData, PlyElement

from codec.attributes import Gaussians, rest_coeffs
from codec.ply import ply_header, ply_property_names, ply_size_bytes, read_ply, write_ply

FIELDS = ("positions", "scales", "rotations", "opacities", "sh_dc", "sh_rest")


def bits_gaussians(rng: np.random.Generator, n: int, degree: int) -> Gaussians:
    """Gaussians whose floats are arbitrary 32-bit patterns (NaN payloads, infs, -0.0, subnormals)."""
    def arr(*shape):
        return rng.integers(0, 2**32, shape, dtype=np.uint64).astype(np.uint32).view(np.float32)
    k3 = 3 * rest_coeffs(degree)
    g = Gaussians(arr(n, 3), arr(n, 3), arr(n, 4), arr(n), arr(n, 3), arr(n, k3))
    if n:
        g.scales[0, 0] = -0.0
        g.positions[0, 1] = np.nan
    return g


def assert_bit_equal(a: Gaussians, b: Gaussians) -> None:
    assert len(a) == len(b) and a.sh_degree == b.sh_degree
    for f in FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        assert x.dtype == y.dtype == np.float32, f
        assert x.shape == y.shape, f
        assert x.tobytes() == y.tobytes(), f


def reference_vertex(g: Gaussians, normals: bool = True) -> dict:
    """{property name: column} in the trainer layout."""
    n = len(g)
    cols = {"x": g.positions[:, 0], "y": g.positions[:, 1], "z": g.positions[:, 2]}
    if normals:
        cols.update(nx=np.zeros(n, np.float32), ny=np.zeros(n, np.float32), nz=np.zeros(n, np.float32))
    for i in range(3):
        cols[f"f_dc_{i}"] = g.sh_dc[:, i]
    for i in range(g.sh_rest.shape[1]):
        cols[f"f_rest_{i}"] = g.sh_rest[:, i]
    cols["opacity"] = g.opacities
    for i in range(3):
        cols[f"scale_{i}"] = g.scales[:, i]
    for i in range(4):
        cols[f"rot_{i}"] = g.rotations[:, i]
    return cols


def write_with_plyfile(path, cols: dict, types: dict | None = None, text=False, byte_order="<", extra=()):
    types = types or {}
    n = len(next(iter(cols.values())))
    dtype = [(name, types.get(name, "f4")) for name in cols]
    arr = np.empty(n, dtype=dtype)
    with np.errstate(invalid="ignore"):  # widening a signalling NaN raises 'invalid'; the value is fine
        for name, col in cols.items():
            arr[name] = col
    PlyData([PlyElement.describe(arr, "vertex"), *extra], text=text, byte_order=byte_order).write(str(path))


# ------------------------------------------------------------------------------------------ round trip
@pytest.mark.parametrize("degree", [0, 1, 2, 3])
@pytest.mark.parametrize("n", [0, 1, 2, 1000])
def test_roundtrip_bit_exact(tmp_path, degree, n):
    g = bits_gaussians(np.random.default_rng(n * 10 + degree), n, degree)
    p = tmp_path / "s.ply"
    write_ply(p, g)
    h = read_ply(p)
    assert_bit_equal(g, h)
    assert p.stat().st_size == ply_size_bytes(n, degree)


@given(degree=st.sampled_from([0, 1, 2, 3]), n=st.integers(0, 300), seed=st.integers(0, 2**32 - 1))
def test_roundtrip_property(tmp_path_factory, degree, n, seed):
    g = bits_gaussians(np.random.default_rng(seed), n, degree)
    p = tmp_path_factory.mktemp("rt") / "s.ply"
    write_ply(p, g)
    assert_bit_equal(g, read_ply(p))


@pytest.mark.parametrize("degree", [0, 3])
def test_written_layout_is_the_trainer_layout(tmp_path, degree):
    rng = np.random.default_rng(1)
    g = bits_gaussians(rng, 50, degree)
    g.positions[:] = rng.normal(size=(50, 3))  # finite values for value comparison below
    p = tmp_path / "s.ply"
    write_ply(p, g)
    raw = p.read_bytes()
    assert raw.startswith(b"ply\nformat binary_little_endian 1.0\nelement vertex 50\nproperty float x\n")
    assert raw.startswith(ply_header(50, degree))
    ply = PlyData.read(str(p))
    v = ply["vertex"]
    names = [prop.name for prop in v.properties]
    assert names == ply_property_names(degree)
    assert len(names) == 17 + 3 * rest_coeffs(degree)
    assert all(prop.val_dtype in ("f4", "<f4", "float32") or np.dtype(prop.val_dtype) == np.float32
               for prop in v.properties)
    for nm in ("nx", "ny", "nz"):
        assert np.all(v.data[nm] == 0)
    assert np.array_equal(v.data["x"], g.positions[:, 0])
    assert v.data["rot_0"].tobytes() == g.rotations[:, 0].tobytes()
    if degree:
        assert v.data["f_rest_44"].tobytes() == g.sh_rest[:, 44].tobytes()


def test_ply_size_bytes():
    # 62 floats per Gaussian at degree 3, header of the reference layout
    assert ply_size_bytes(1000, 3) == len(ply_header(1000, 3)) + 1000 * 62 * 4
    assert ply_size_bytes(10, 0) == len(ply_header(10, 0)) + 10 * 17 * 4
    assert ply_size_bytes(0, 2) == len(ply_header(0, 2))
    with pytest.raises(ValueError):
        ply_size_bytes(1, 4)


# ----------------------------------------------------------------------------------- other writers
@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_reads_plyfile_trainer_output(tmp_path, degree):
    g = bits_gaussians(np.random.default_rng(degree), 200, degree)
    p = tmp_path / "t.ply"
    write_with_plyfile(p, reference_vertex(g))
    assert_bit_equal(g, read_ply(p))


@given(seed=st.integers(0, 2**32 - 1), degree=st.sampled_from([0, 1, 2, 3]), normals=st.booleans(),
       n_extra=st.integers(0, 3), as_double=st.booleans())
def test_any_order_extra_properties(tmp_path_factory, seed, degree, normals, n_extra, as_double):
    rng = np.random.default_rng(seed)
    g = bits_gaussians(rng, 64, degree)
    cols = reference_vertex(g, normals)
    types = {}
    for i in range(n_extra):
        name = ("red", "segment_id", "confidence")[i]
        cols[name] = rng.integers(0, 200, 64)
        types[name] = ("u1", "i4", "f8")[i]
    if as_double:  # some exporters write doubles: values widen exactly, so they read back exactly
        for name in list(cols):
            if name not in types:
                types[name] = "f8"
    order = list(cols)
    rng.shuffle(order)
    cols = {name: cols[name] for name in order}
    p = tmp_path_factory.mktemp("order") / "o.ply"
    write_with_plyfile(p, cols, types)
    h = read_ply(p)
    # NaN payloads need not survive float64 widening on every platform; compare the rest bit-exactly
    for f in FIELDS:
        x, y = getattr(g, f), getattr(h, f)
        assert y.dtype == np.float32 and x.shape == y.shape
        same = (x.view(np.uint32) == y.view(np.uint32)) | (np.isnan(x) & np.isnan(y))
        assert same.all(), f
        if not as_double:
            assert x.tobytes() == y.tobytes()


@pytest.mark.parametrize("text, byte_order", [(True, "="), (False, ">")])
def test_ascii_and_big_endian(tmp_path, text, byte_order):
    rng = np.random.default_rng(3)
    n, degree = 40, 2
    g = Gaussians(rng.normal(size=(n, 3)), rng.normal(-5, 1, (n, 3)), rng.normal(size=(n, 4)),
                  rng.normal(size=n), rng.normal(size=(n, 3)), rng.normal(0, 0.1, (n, 3 * rest_coeffs(degree))))
    p = tmp_path / "a.ply"
    write_with_plyfile(p, reference_vertex(g), text=text, byte_order=byte_order)
    h = read_ply(p)
    for f in FIELDS:
        # ascii float32 text written by plyfile ('%.9g'-style) round-trips float32 exactly
        assert np.array_equal(getattr(g, f), getattr(h, f)), f


def test_vertex_after_a_list_element(tmp_path):
    g = bits_gaussians(np.random.default_rng(5), 30, 1)
    faces = np.empty(2, dtype=[("vertex_indices", "i4", (3,))])
    faces["vertex_indices"] = [[0, 1, 2], [2, 3, 4]]
    cols = reference_vertex(g)
    arr = np.empty(30, dtype=[(k, "f4") for k in cols])
    for k, v in cols.items():
        arr[k] = v
    p = tmp_path / "f.ply"
    PlyData([PlyElement.describe(faces, "face"), PlyElement.describe(arr, "vertex")]).write(str(p))
    assert_bit_equal(g, read_ply(p))


def test_vertex_after_a_scalar_element(tmp_path):
    g = bits_gaussians(np.random.default_rng(6), 30, 3)
    meta = np.zeros(3, dtype=[("a", "f8"), ("b", "u1")])
    cols = reference_vertex(g)
    arr = np.empty(30, dtype=[(k, "f4") for k in cols])
    for k, v in cols.items():
        arr[k] = v
    p = tmp_path / "m.ply"
    PlyData([PlyElement.describe(meta, "meta"), PlyElement.describe(arr, "vertex")]).write(str(p))
    assert_bit_equal(g, read_ply(p))


# -------------------------------------------------------------------------------------- rejection
def test_point_cloud_is_not_3dgs(tmp_path):
    rng = np.random.default_rng(0)
    p = tmp_path / "pc.ply"
    write_with_plyfile(p, {"x": rng.normal(size=10), "y": rng.normal(size=10), "z": rng.normal(size=10),
                           "red": rng.integers(0, 255, 10), "green": rng.integers(0, 255, 10),
                           "blue": rng.integers(0, 255, 10)}, {"red": "u1", "green": "u1", "blue": "u1"})
    with pytest.raises(ValueError, match="not a 3DGS PLY"):
        read_ply(p)


@pytest.mark.parametrize("drop", ["x", "z", "scale_1", "rot_3", "opacity", "f_dc_2"])
def test_missing_attribute(tmp_path, drop):
    g = bits_gaussians(np.random.default_rng(1), 10, 1)
    cols = reference_vertex(g)
    del cols[drop]
    p = tmp_path / "m.ply"
    write_with_plyfile(p, cols)
    with pytest.raises(ValueError, match=drop):
        read_ply(p)


@pytest.mark.parametrize("keep", [1, 10, 44])
def test_bad_rest_count(tmp_path, keep):
    g = bits_gaussians(np.random.default_rng(2), 10, 3)
    cols = reference_vertex(g)
    for i in range(keep, 45):
        del cols[f"f_rest_{i}"]
    p = tmp_path / "r.ply"
    write_with_plyfile(p, cols)
    with pytest.raises(ValueError, match="f_rest"):
        read_ply(p)


def test_rest_gap(tmp_path):
    g = bits_gaussians(np.random.default_rng(2), 10, 1)
    cols = reference_vertex(g)
    cols["f_rest_9"] = cols.pop("f_rest_3")  # 9 coefficients, but not 0..8
    p = tmp_path / "r.ply"
    write_with_plyfile(p, cols)
    with pytest.raises(ValueError, match="f_rest"):
        read_ply(p)


def test_mesh_is_not_3dgs(tmp_path):
    verts = np.zeros(3, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    faces = np.empty(1, dtype=[("vertex_indices", "i4", (3,))])
    faces["vertex_indices"] = [[0, 1, 2]]
    p = tmp_path / "mesh.ply"
    PlyData([PlyElement.describe(verts, "vertex"), PlyElement.describe(faces, "face")]).write(str(p))
    with pytest.raises(ValueError, match="not a 3DGS PLY"):
        read_ply(p)


def test_no_vertex_element(tmp_path):
    el = np.zeros(3, dtype=[("x", "f4")])
    p = tmp_path / "nv.ply"
    PlyData([PlyElement.describe(el, "points")]).write(str(p))
    with pytest.raises(ValueError, match="vertex"):
        read_ply(p)


@pytest.mark.parametrize("content", [b"", b"not a ply\n", b"ply\nformat binary_little_endian 1.0\n",
                                     b"ply\nformat weird 1.0\nend_header\n",
                                     b"ply\nformat binary_little_endian 1.0\nelement vertex 2\n"
                                     b"property float128 x\nend_header\n",
                                     b"\x89PNG\r\n\x1a\n" + bytes(100)])
def test_garbage(tmp_path, content):
    p = tmp_path / "g.ply"
    p.write_bytes(content)
    with pytest.raises(ValueError):
        read_ply(p)


def test_truncated(tmp_path):
    g = bits_gaussians(np.random.default_rng(4), 100, 3)
    p = tmp_path / "t.ply"
    write_ply(p, g)
    raw = p.read_bytes()
    p.write_bytes(raw[:-10])
    with pytest.raises(ValueError, match="truncated"):
        read_ply(p)
