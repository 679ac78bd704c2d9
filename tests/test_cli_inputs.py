"""`gsd` against hostile and imperfect inputs: lying headers, NaN and inf values, outliers, bad output paths, pipes.

Each case runs the command as a user would (a subprocess) and checks the exit
status and that the message is one line, without a traceback.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from codec.interop.clean import OPACITY_LIMIT
from codec.ply import ply_header, read_ply, write_ply
from codec.synthetic import synthetic_scene


def gsd(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "codec.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300, **kw)


def one_line_error(r: subprocess.CompletedProcess, status: int) -> str:
    assert r.returncode == status, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    return r.stderr


def scene(n=600, seed=3):
    return synthetic_scene(n, 1, seed=seed, extent=5.0)


# ------------------------------------------------------------------------------------------ lying headers
@pytest.mark.parametrize("count", ["4000000000", "99999999999999999999"])
@pytest.mark.parametrize("fmt", ["binary_little_endian", "ascii"])
def test_a_header_claiming_billions_of_vertices_is_one_line(tmp_path, count, fmt):
    head = ply_header(3, 0).replace(b"vertex 3", b"vertex " + count.encode())
    head = head.replace(b"binary_little_endian", fmt.encode())
    path = tmp_path / "liar.ply"
    path.write_bytes(head + b"\0" * 64)
    err = one_line_error(gsd("encode", path, tmp_path / "o.gsd"), 1)
    assert f"{int(count):,} vertex rows" in err and "64 bytes follow" in err


def test_compressed_ply_with_a_lying_count_is_one_line(tmp_path):
    head = (b"ply\nformat binary_little_endian 1.0\nelement chunk 1\n"
            + b"".join(b"property float %s\n" % p.encode() for p in
                       ["min_x", "min_y", "min_z", "max_x", "max_y", "max_z", "min_scale_x", "min_scale_y",
                        "min_scale_z", "max_scale_x", "max_scale_y", "max_scale_z"])
            + b"element vertex 4000000000\n"
            + b"".join(b"property uint %s\n" % p for p in
                       [b"packed_position", b"packed_rotation", b"packed_scale", b"packed_color"])
            + b"end_header\n")
    path = tmp_path / "liar.compressed.ply"
    path.write_bytes(head + b"\0" * 100)
    assert "4,000,000,000 vertex rows" in one_line_error(gsd("encode", path, tmp_path / "o.gsd"), 1)


# ------------------------------------------------------------------------------------------ values
def test_nan_positions_name_the_attribute_and_rows(tmp_path):
    g = scene()
    g.positions[[5, 9], [0, 2]] = np.nan
    write_ply(tmp_path / "nan.ply", g)
    err = one_line_error(gsd("encode", tmp_path / "nan.ply", tmp_path / "o.gsd"), 1)
    assert "position (NaN in 2 rows; first row 5)" in err and "--drop-invalid" in err
    assert "BAD_HEADER" not in err and "cell_size" not in err


def test_infinite_opacity_is_clamped_and_counted(tmp_path):
    g = scene()
    g.opacities[[3, 4, 7]] = [np.inf, -np.inf, np.inf]
    write_ply(tmp_path / "inf.ply", g)
    r = gsd("encode", tmp_path / "inf.ply", tmp_path / "o.gsd", "--profile", "lossless", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["input_cleaning"]["opacity_clamped"] == 3 and out["gaussians"] == len(g)
    assert gsd("decode", tmp_path / "o.gsd", tmp_path / "back.ply").returncode == 0
    back = read_ply(tmp_path / "back.ply")
    assert np.isfinite(back.opacities).all()
    assert sorted(back.opacities[np.abs(back.opacities) == OPACITY_LIMIT]) == [-20.0, 20.0, 20.0]
    text = gsd("encode", tmp_path / "inf.ply", tmp_path / "o.gsd").stdout
    assert "3 opacity logits of +-inf (alpha exactly 0 or 1) clamped to +-20" in text


def test_drop_invalid_drops_every_non_finite_row(tmp_path):
    g = scene()
    g.positions[5, 0] = np.nan
    g.scales[6, 1] = np.inf
    g.opacities[[3, 4]] = [np.inf, np.nan]
    g.sh_rest[8, 2] = -np.inf
    write_ply(tmp_path / "bad.ply", g)
    err = one_line_error(gsd("encode", tmp_path / "bad.ply", tmp_path / "o.gsd"), 1)
    for part in ("position (NaN in 1 rows", "scale (+inf in 1 rows", "opacity (NaN in 1 rows", "sh_rest (-inf in 1 rows"):
        assert part in err, err
    r = gsd("encode", tmp_path / "bad.ply", tmp_path / "o.gsd", "--drop-invalid", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["gaussians"] == len(g) - 5 and out["input_cleaning"]["invalid_dropped"] == 5
    assert out["input_cleaning"]["opacity_clamped"] == 0


def test_a_far_outlier_warns_and_drop_outliers_drops_it(tmp_path):
    g = scene()
    g.positions[11] = (1e30, 0.0, 0.0)
    write_ply(tmp_path / "far.ply", g)
    r = gsd("encode", tmp_path / "far.ply", tmp_path / "o.gsd", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "warning: 1 position outliers" in r.stderr and "--drop-outliers" in r.stderr
    r = gsd("encode", tmp_path / "far.ply", tmp_path / "o.gsd", "--drop-outliers", "--json")
    out = json.loads(r.stdout)
    assert r.returncode == 0 and r.stderr == "" and out["gaussians"] == len(g) - 1
    assert out["input_cleaning"]["outliers_dropped"] == 1
    assert out["grid"]["extent"] < 1e3                       # the grid fits the scene, not the outlier
    clean = gsd("encode", tmp_path / "far.ply", tmp_path / "o.gsd", "--json")
    assert json.loads(clean.stdout)["grid"]["extent"] > 1e29


def test_a_clean_scene_reports_nothing(tmp_path):
    write_ply(tmp_path / "ok.ply", scene())
    r = gsd("encode", tmp_path / "ok.ply", tmp_path / "o.gsd", "--json")
    c = json.loads(r.stdout)["input_cleaning"]
    assert r.stderr == "" and (c["opacity_clamped"], c["invalid_dropped"], c["outliers"]) == (0, 0, 0)


# ------------------------------------------------------------------------------------------ ratio
def test_ratio_is_against_the_input_file(tmp_path):
    write_ply(tmp_path / "s.ply", scene())
    from codec.interop import write_splat
    write_splat(tmp_path / "s.splat", scene())
    for name in ("s.ply", "s.splat"):
        r = gsd("encode", tmp_path / name, tmp_path / "o.gsd", "--json")
        out = json.loads(r.stdout)
        size = (tmp_path / name).stat().st_size
        assert out["input_bytes"] == size and out["ratio"] == pytest.approx(size / out["bytes"])
        text = gsd("encode", tmp_path / name, tmp_path / "o.gsd").stdout
        assert f"input file     {size:,} bytes" in text and "(input file size / stream size)" in text


# ------------------------------------------------------------------------------------------ paths and pipes
def test_output_path_errors_exit_2_in_one_line(tmp_path):
    write_ply(tmp_path / "s.ply", scene())
    assert gsd("encode", tmp_path / "s.ply", tmp_path / "s.gsd", "-q").returncode == 0
    for args in (("encode", tmp_path / "s.ply", tmp_path / "nodir" / "o.gsd"),
                 ("encode", tmp_path / "s.ply", tmp_path),
                 ("decode", tmp_path / "s.gsd", tmp_path / "nodir" / "o.ply"),
                 ("decode", tmp_path / "s.gsd", tmp_path)):
        err = one_line_error(gsd(*args), 2)
        assert "no such directory" in err or "is a directory" in err
    if os.geteuid() != 0:        # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        assert "permission denied" in one_line_error(gsd("encode", tmp_path / "s.ply", ro / "o.gsd"), 2)


def test_a_closed_pipe_ends_quietly(tmp_path):
    out = tmp_path / "d.gsd"
    assert gsd("demo", "--n", 500, "--frames", 3, "--out", out, "-q").returncode == 0
    for args in (("info", out, "--json"), ("info", out)):
        p = subprocess.Popen([sys.executable, "-m", "codec.cli", *map(str, args)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        p.stdout.close()                                    # like `| head -0`: the reader is gone at once
        err = p.stderr.read().decode()
        assert p.wait(timeout=120) == 141 and err == "", err
    r = subprocess.run(f"{sys.executable} -m codec.cli info {out} | head -1", shell=True, capture_output=True,
                       text=True, timeout=120)
    assert r.stdout.count("\n") == 1 and r.stderr == ""
