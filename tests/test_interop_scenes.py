"""Every splat file in, through one reader: read_scene against @playcanvas/splat-transform as the peer.

splat-transform writes each format from our float PLY, and reads each back to a
float PLY; ``read_scene`` of its file must give what its own reader gives.
Then our writers (``gsd decode`` to .spz / .splat) are read by splat-transform.
The real scene ../shared/scenes/playbot.sog is checked the same way when present.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from codec.interop import read_splat
from codec.interop.scene import SceneFileError, detect_format, read_scene, scene_bytes
from codec.ply import read_ply, write_ply
from codec.synthetic import synthetic_scene

REPO = Path(__file__).resolve().parents[1]
PLAYBOT = REPO / ".." / "shared" / "scenes" / "playbot.sog"
FIELDS = ("positions", "scales", "rotations", "opacities", "sh_dc", "sh_rest")


@pytest.fixture(scope="module")
def st():
    exe = REPO / "node_modules" / ".bin" / "splat-transform"
    if not exe.exists() or shutil.which("node") is None:
        pytest.skip("splat-transform is not installed (npm ci)")
    return exe


def run_st(exe, *args) -> None:
    r = subprocess.run([str(exe), "-q", "-w", *map(str, args)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


def gsd(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "codec.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def assert_close(a, b, atol=0.0, **per_field) -> None:
    assert len(a) == len(b) and a.sh_degree == b.sh_degree
    for f in FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        np.testing.assert_array_equal(np.isinf(x), np.isinf(y), err_msg=f)
        fin = np.isfinite(y)
        np.testing.assert_allclose(x[fin], y[fin], atol=per_field.get(f, atol), rtol=0, err_msg=f)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    d = tmp_path_factory.mktemp("scenes")
    g = synthetic_scene(1500, 3, seed=21, extent=6.0)
    write_ply(d / "src.ply", g)
    return d, g


def test_float_ply_and_detection(scene):
    d, g = scene
    back, fmt = read_scene(d / "src.ply")
    assert fmt == "ply" and detect_format(d / "src.ply") == "ply"
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(back, f), getattr(g, f))


def test_compressed_ply_reads_as_splat_transform_reads_it(st, scene):
    d, _ = scene
    run_st(st, d / "src.ply", d / "s.compressed.ply")
    run_st(st, d / "s.compressed.ply", d / "cp_back.ply")
    ours, fmt = read_scene(d / "s.compressed.ply")
    assert fmt == "compressed.ply"
    assert_close(ours, read_ply(d / "cp_back.ply"), atol=2e-6)   # float32 lerp order


@pytest.mark.parametrize("version", [3, 4])
def test_spz_reads_as_splat_transform_reads_it(st, scene, version):
    d, _ = scene
    path = d / f"s{version}.spz"
    run_st(st, d / "src.ply", path, "--spz-version", version)
    run_st(st, path, d / f"spz{version}_back.ply")
    ours, fmt = read_scene(path)
    assert fmt == "spz"
    # alpha codes 0 and 255: their clamp is 1e-6, ours 0.25/255; compare the rest exactly-ish
    theirs = read_ply(d / f"spz{version}_back.ply")
    ours.opacities = 1 / (1 + np.exp(-ours.opacities.astype(np.float64)))
    theirs.opacities = 1 / (1 + np.exp(-theirs.opacities.astype(np.float64)))
    assert_close(ours, theirs, atol=2e-6, opacities=0.25 / 255 + 1e-6)


@pytest.fixture(scope="module")
def sog(st, scene):
    d, _ = scene
    run_st(st, "-g", "cpu", "--sh-iterations", 2, d / "src.ply", d / "s.sog")
    run_st(st, d / "s.sog", d / "sog_back.ply")
    folder = d / "sogdir"
    with zipfile.ZipFile(d / "s.sog") as z:
        z.extractall(folder)
    return d / "s.sog", folder, read_ply(d / "sog_back.ply")


def test_sog_zip_folder_and_meta_json_read_as_splat_transform_reads_them(sog):
    path, folder, theirs = sog
    for p in (path, folder, folder / "meta.json"):
        ours, fmt = read_scene(p)
        assert fmt == "sog"
        assert_close(ours, theirs, atol=1e-6)
    assert scene_bytes(path) == path.stat().st_size
    assert scene_bytes(folder) == sum(f.stat().st_size for f in folder.iterdir())


def test_splat_file_reads(scene, st):
    d, g = scene
    from codec.interop import write_splat
    write_splat(d / "s.splat", g)
    ours, fmt = read_scene(d / "s.splat")
    assert fmt == "splat"
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(ours, f), getattr(read_splat(d / "s.splat"), f))


@pytest.mark.skipif(not PLAYBOT.exists(), reason="../shared/scenes/playbot.sog is not present")
def test_real_sog_scene_bit_exact_with_splat_transform(st, tmp_path):
    run_st(st, PLAYBOT, tmp_path / "playbot.ply")
    ours, fmt = read_scene(PLAYBOT)
    assert fmt == "sog" and len(ours) == 500_000 and ours.sh_degree == 2
    assert_close(ours, read_ply(tmp_path / "playbot.ply"))


# ------------------------------------------------------------------------------------------ the CLI
@pytest.mark.parametrize("name", ["s.compressed.ply", "s.sog", "sogdir", "s3.spz", "s.splat"])
def test_gsd_encode_reads_every_format(scene, sog, st, name, tmp_path):
    d, _ = scene
    if name == "s3.spz" and not (d / name).exists():
        run_st(st, d / "src.ply", d / name, "--spz-version", 3)
    if name == "s.splat" and not (d / name).exists():
        from codec.interop import write_splat
        write_splat(d / name, read_ply(d / "src.ply"))
    r = gsd("encode", d / name, tmp_path / "o.gsd", "--profile", "lossless", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "1,500" in r.stdout and "input file" in r.stdout
    assert gsd("validate", tmp_path / "o.gsd").returncode == 0


@pytest.mark.parametrize("ext", ["spz", "splat", "ply"])
def test_gsd_decode_writes_what_splat_transform_reads(scene, st, tmp_path, ext):
    d, g = scene
    stream = tmp_path / "s.gsd"
    assert gsd("encode", d / "src.ply", stream, "--profile", "lossless", "-q").returncode == 0
    out = tmp_path / f"back.{ext}"
    r = gsd("decode", stream, out, "-q")
    assert r.returncode == 0, r.stderr
    assert f"({ext})" in r.stdout
    run_st(st, out, tmp_path / "st.ply")
    theirs, ours = read_ply(tmp_path / "st.ply"), read_scene(out)[0]
    assert len(theirs) == len(ours) == len(g)
    np.testing.assert_allclose(theirs.positions, ours.positions, atol=1e-6)
    np.testing.assert_allclose(theirs.sh_dc, ours.sh_dc, atol=1e-5)


def test_unknown_and_corrupt_files_give_one_line(tmp_path, scene):
    d, _ = scene
    cases = {"empty.ply": b"", "junk.xyz": b"hello world", "junk.spz": b"nope",
             "bad.sog": b"PK\x03\x04" + b"\0" * 40, "trunc.splat": b"\0" * 33,
             "notsog.json": b"{\"version\": 7}"}
    data = (d / "s.compressed.ply").read_bytes() if (d / "s.compressed.ply").exists() else None
    if data is not None:
        cases["cut.compressed.ply"] = data[:len(data) // 2]
    for name, blob in cases.items():
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(SceneFileError):
            read_scene(tmp_path / name)
        r = gsd("encode", tmp_path / name, tmp_path / "o.gsd")
        assert r.returncode == 1, (name, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, (name, r.stderr)
        assert name.split(".")[0] in r.stderr


def test_decode_refuses_an_unknown_output_extension(scene, tmp_path):
    d, _ = scene
    stream = tmp_path / "s.gsd"
    assert gsd("encode", d / "src.ply", stream, "-q").returncode == 0
    for out in ("x.foo", "x.compressed.ply"):
        r = gsd("decode", stream, tmp_path / out)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / out).exists()


def test_damaged_files_raise_only_scene_file_errors(scene, sog, st, tmp_path):
    """Bytes flipped (often in the header) or the file cut: read_scene raises SceneFileError, never anything else."""
    d, _ = scene
    if not (d / "s.compressed.ply").exists():
        run_st(st, d / "src.ply", d / "s.compressed.ply")
    rng = np.random.default_rng(5)
    for src in (sog[0], d / "s.compressed.ply", d / "src.ply"):
        data = src.read_bytes()
        for i in range(25):
            b = bytearray(data)
            if i % 3 == 0:
                b = b[:int(rng.integers(0, len(b)))]
            else:
                span = 2048 if i % 3 == 1 else len(b)
                for _ in range(int(rng.integers(1, 8))):
                    b[int(rng.integers(0, min(span, len(b))))] = int(rng.integers(0, 256))
            path = tmp_path / src.name
            path.write_bytes(bytes(b))
            try:
                read_scene(path)
            except SceneFileError:
                pass
