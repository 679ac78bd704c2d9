"""SPZ and .splat interop: hand-built files, round-trip bounds, bad input, and a third-party tool.

The hand-built files follow the byte layout of the public SPZ description
(codec/interop/spz.py's table) for two or three Gaussians; their expected
values are worked out here from the chosen bytes. The third-party checks run
@playcanvas/splat-transform (pinned in package.json; reads and writes PLY and
SPZ through the official SPZ library, reads .splat) on our files and compare
values both ways.
"""
from __future__ import annotations

import gzip
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import zstandard

from codec import Gaussians
from codec.attributes import SH_C0
from codec.interop import (SpzError, decode_splat, decode_spz, encode_splat, encode_spz, read_splat, read_spz,
                           write_splat, write_spz)
from codec.ply import read_ply, write_ply
from codec.synthetic import synthetic_scene

REPO = Path(__file__).resolve().parents[1]
SQRT1_2 = np.sqrt(0.5)


def sigmoid(x):
    return 1 / (1 + np.exp(-np.asarray(x, np.float64)))


def quat_err(a, b) -> np.ndarray:
    """Per-component |a - b| of the unit quaternions, b's sign chosen to match a (q and -q are one rotation)."""
    a = np.asarray(a, np.float64) / np.linalg.norm(a, axis=1, keepdims=True)
    b = np.asarray(b, np.float64) / np.linalg.norm(b, axis=1, keepdims=True)
    return np.abs(a - b * np.where((a * b).sum(1) < 0, -1.0, 1.0)[:, None])


# ------------------------------------------------------------------------------------------ hand-built SPZ
def i24(v: int) -> bytes:
    return (v & 0xFFFFFF).to_bytes(3, "little")


# Two Gaussians, SH degree 1, fractional bits 12, stored RUB (the README's default frame).
POS = i24(6144) + i24(-9216) + i24(2048) + i24(-4096) + i24(1) + i24(0)      # (1.5, -2.25, 0.5), (-1, 1/4096, 0)
ALPHAS = bytes([204, 0])                                                      # 0.8; 0 (read as 0.25/255)
COLORS = bytes([166, 128, 0, 255, 64, 200])
SCALES = bytes([96, 112, 80, 160, 0, 255])                                    # code/16 - 10
SH = bytes([160, 96, 128, 144, 128, 112, 128, 192, 64,                        # (coefficient, rgb) pairs
            0, 255, 136, 128, 128, 128, 120, 128, 136])


def rot_v3(largest: int, comps: list[tuple[int, int]]) -> bytes:
    """Smallest-three word: 2-bit index then (sign, 9-bit magnitude) per other component, ascending."""
    w = largest
    for sign, mag in comps:
        w = (w << 10) | (sign << 9) | mag
    return struct.pack("<I", w)


ROT_V2 = bytes([128, 128, 218, 255, 127, 127])
ROT_V3 = rot_v3(3, [(0, 0), (0, 0), (0, 434)]) + rot_v3(0, [(1, 260), (0, 0), (0, 347)])


def expected_hand() -> dict:
    """The two Gaussians in PLY (RDF) conventions: RUB -> RDF negates y and z."""
    pos = np.array([[1.5, 2.25, -0.5], [-1.0, -1 / 4096, 0.0]])
    a = np.array([204 / 255, 0.25 / 255])
    colors = (np.array([[166, 128, 0], [255, 64, 200]]) / 255 - 0.5) / 0.15
    scales = np.array([[96, 112, 80], [160, 0, 255]]) / 16 - 10
    sh = (np.frombuffer(SH, np.uint8).reshape(2, 3, 3).astype(np.float64) - 128) / 128   # (n, coeff, rgb)
    sh *= np.array([-1, -1, 1])[None, :, None]            # degree-1 basis -y, z, -x: the y and z terms flip
    rest = sh.transpose(0, 2, 1).reshape(2, 9)            # channel-major
    # v2: x, y, z = code/127.5 - 1, w = sqrt(1 - |xyz|^2); RUB -> RDF: (w, x, -y, -z)
    xyz = np.frombuffer(ROT_V2, np.uint8).reshape(2, 3) / 127.5 - 1
    w = np.sqrt(np.maximum(0, 1 - (xyz ** 2).sum(1)))   # the second one overshoots: w = 0
    rot_v2 = np.column_stack([w, xyz[:, 0], -xyz[:, 1], -xyz[:, 2]])
    # v3: first: w largest, z = 434/511 sqrt(1/2); second: x largest, y = -260/511 sqrt(1/2), w = 347/511 sqrt(1/2)
    z1 = 434 / 511 * SQRT1_2
    y2, w2 = -260 / 511 * SQRT1_2, 347 / 511 * SQRT1_2
    x2 = np.sqrt(1 - y2 * y2 - w2 * w2)
    rot_v3 = np.array([[np.sqrt(1 - z1 * z1), 0, 0, -z1], [w2, x2, -y2, 0.0]])
    return dict(pos=pos, alpha=a, colors=colors, scales=scales, rest=rest, rot_v2=rot_v2, rot_v3=rot_v3)


def legacy_file(version: int, rot: bytes, n=2, degree=1, fb=12, flags=0, tail=b"", body=None) -> bytes:
    header = struct.pack("<IIIBBBB", 0x5053474E, version, n, degree, fb, flags, 0)
    return gzip.compress(header + (POS + ALPHAS + COLORS + SCALES + rot + SH if body is None else body) + tail)


def v4_file(rot: bytes, streams=None) -> bytes:
    arrays = streams or [POS, ALPHAS, COLORS, SCALES, rot, SH]
    comp = [zstandard.ZstdCompressor().compress(a) for a in arrays]
    head = struct.pack("<IIIBBBBI12s", 0x5053474E, 4, 2, 1, 12, 0, len(arrays), 32, bytes(12))
    toc = b"".join(struct.pack("<QQ", len(c), len(a)) for c, a in zip(comp, arrays))
    return head + toc + b"".join(comp)


def check_hand(g: Gaussians, rot_expected: np.ndarray) -> None:
    e = expected_hand()
    np.testing.assert_allclose(g.positions, e["pos"], atol=1e-7)
    np.testing.assert_allclose(sigmoid(g.opacities), e["alpha"], rtol=1e-6)
    np.testing.assert_allclose(g.sh_dc, e["colors"], atol=1e-6)
    np.testing.assert_allclose(g.scales, e["scales"], atol=1e-6)
    np.testing.assert_allclose(g.sh_rest, e["rest"], atol=1e-7)
    np.testing.assert_allclose(g.rotations, rot_expected, atol=1e-6)


def test_hand_built_spz_v2():
    g, h = decode_spz(legacy_file(2, ROT_V2))
    assert (h.version, h.num_points, h.sh_degree, h.fractional_bits, h.antialiased) == (2, 2, 1, 12, False)
    check_hand(g, expected_hand()["rot_v2"])


def test_hand_built_spz_v3():
    g, h = decode_spz(legacy_file(3, ROT_V3, flags=1))
    assert h.version == 3 and h.antialiased
    check_hand(g, expected_hand()["rot_v3"])


def test_hand_built_spz_v4():
    g, h = decode_spz(v4_file(ROT_V3))
    assert h.version == 4
    check_hand(g, expected_hand()["rot_v3"])


def test_raw_frame_and_coordinate_system_extension():
    """frame='raw' skips the RUB flip; an SPZ_ADOBE_coordinate_system record (RDF = 6) does the same."""
    e = expected_hand()
    raw = decode_spz(legacy_file(3, ROT_V3), frame="raw")[0]
    np.testing.assert_allclose(raw.positions, e["pos"] * [1, -1, -1], atol=1e-7)
    ext = struct.pack("<III", 0xADBE0003, 4, 6) + struct.pack("<II", 0x12340001, 3) + b"abc"   # + an unknown one
    tagged, h = decode_spz(legacy_file(3, ROT_V3, flags=2, tail=ext))                          # frame ignored
    assert h.coordinate_system == 6
    np.testing.assert_array_equal(tagged.positions, raw.positions)
    np.testing.assert_array_equal(tagged.sh_rest, raw.sh_rest)
    with pytest.raises(SpzError, match="coordinate system"):
        decode_spz(legacy_file(3, ROT_V3, flags=2, tail=struct.pack("<III", 0xADBE0003, 4, 12)))


def test_writer_reproduces_the_hand_built_bytes():
    """Encoding the decoded hand vectors gives back the same arrays (codes are fixed points of the round trip)."""
    for version, rot in ((2, ROT_V2), (3, ROT_V3)):
        g = decode_spz(legacy_file(version, rot))[0]
        payload = gzip.decompress(encode_spz(g, version=version, sh1_bits=8))
        assert payload[16:] == POS + ALPHAS + COLORS + SCALES + rot + SH


# ------------------------------------------------------------------------------------------ round trips
@pytest.mark.parametrize("version", [2, 3, 4])
@pytest.mark.parametrize("frame", ["rub", "raw"])
def test_spz_round_trip_within_the_format_steps(version, frame, tmp_path):
    g = synthetic_scene(500, 3, seed=version, extent=6.0)
    path = tmp_path / "s.spz"
    n_bytes = write_spz(path, g, version=version, frame=frame)
    assert n_bytes == path.stat().st_size
    h = read_spz(path, frame=frame)
    assert len(h) == len(g) and h.sh_degree == 3
    np.testing.assert_array_less(np.abs(h.positions - g.positions), 2.0 ** -13 + 1e-6)
    np.testing.assert_array_less(np.abs(h.scales - np.clip(g.scales, -10, 10 + 255 / 16 - 20)), 1 / 32 + 1e-5)
    np.testing.assert_array_less(np.abs(sigmoid(h.opacities) - sigmoid(g.opacities)), 1 / 510 + 1e-6)
    np.testing.assert_array_less(np.abs(h.sh_dc - np.clip(g.sh_dc, -127.5 / 38.25, 127.5 / 38.25)),
                                 0.5 / 38.25 + 1e-5)
    rest = g.sh_rest.reshape(-1, 3, 15)
    deg1 = np.zeros(15, bool)
    deg1[:3] = True
    inside = np.abs(rest) < 0.9
    err = np.abs(h.sh_rest.reshape(-1, 3, 15) - rest)
    assert (err[:, :, deg1][inside[:, :, deg1]] <= 4.5 / 128 + 1e-6).all()   # round, then buckets of 8 codes
    assert (err[:, :, ~deg1][inside[:, :, ~deg1]] <= 8.5 / 128 + 1e-6).all()  # 4 bits: buckets of 16
    if version == 2:   # x, y, z of the w >= 0 quaternion in 8 bits; w derived (inaccurate when small)
        q = g.rotations / np.linalg.norm(g.rotations, axis=1, keepdims=True)
        q *= np.where(q[:, :1] < 0, -1, 1)
        h_xyz = h.rotations[:, 1:] * np.where(h.rotations[:, :1] < 0, -1, 1)
        assert np.abs(h_xyz - q[:, 1:]).max() <= 0.5 / 127.5 + 1e-6
    else:              # smallest three in 9 bits + sign, largest derived
        assert quat_err(h.rotations, g.rotations).max() < 0.002
    again = decode_spz(encode_spz(h, version=version, frame=frame), frame=frame)[0]   # codes are fixed points
    for f in ("positions", "scales", "opacities", "sh_dc", "sh_rest"):
        np.testing.assert_array_equal(getattr(again, f), getattr(h, f))


def test_spz_frames_differ_by_a_half_turn_about_x():
    g = synthetic_scene(200, 2, seed=3, extent=4.0)
    data = encode_spz(g, version=4)
    rub, raw = decode_spz(data)[0], decode_spz(data, frame="raw")[0]
    np.testing.assert_array_equal(raw.positions, rub.positions * [1, -1, -1])
    np.testing.assert_array_equal(raw.rotations, rub.rotations * [1, 1, -1, -1])
    flip = np.array([-1, -1, 1, -1, 1, 1, -1, 1], np.float32)               # y, z, x, xy, yz, 1, xz, 1
    np.testing.assert_array_equal(raw.sh_rest, rub.sh_rest * np.tile(flip, 3))


def test_spz_positions_too_large_lower_the_fractional_bits():
    g = synthetic_scene(50, 0, seed=1, extent=2.0)
    g.positions[0] = [5000.0, -7000.5, 3.25]
    h, head = decode_spz(encode_spz(g))
    assert head.fractional_bits == 10                                          # 7000.5 * 2^10 < 2^23
    np.testing.assert_allclose(h.positions[0], [5000.0, -7000.5, 3.25])       # RUB there and back
    g.positions[0, 0] = 1e7
    with pytest.raises(SpzError):
        encode_spz(g)


@pytest.mark.parametrize("bad, match", [
    (b"", "not an SPZ"),
    (b"hello world", "not an SPZ"),
    (legacy_file(3, ROT_V3)[:30], "gzip|truncated|shorter"),
    (legacy_file(5, ROT_V3), "version"),
    (legacy_file(3, ROT_V3, degree=5), "degree"),
    (legacy_file(3, ROT_V3, n=3), "truncated"),
    (legacy_file(3, ROT_V3, tail=b"xx"), "unexpected bytes"),
    (legacy_file(3, ROT_V3, n=2**30), "limit"),
    (legacy_file(3, ROT_V3, n=10**6), "claims"),
    (gzip.compress(struct.pack("<IIIBBBB", 0x12345678, 3, 2, 1, 12, 0, 0)), "magic"),
    (v4_file(ROT_V3)[:-3], "past the end|stream"),
    (v4_file(ROT_V3) + b"\0", "unexpected bytes"),
    (v4_file(ROT_V3, streams=[POS, ALPHAS, COLORS, SCALES, ROT_V3]), "streams"),
    (v4_file(ROT_V3, streams=[POS, ALPHAS, COLORS, SCALES, ROT_V2, SH]), "declared|expected"),
])
def test_bad_spz_is_a_typed_error(bad, match):
    with pytest.raises(SpzError, match=match):
        decode_spz(bad)


def test_spz_point_limit_is_adjustable():
    data = encode_spz(synthetic_scene(50, 1, seed=2))
    assert len(decode_spz(data, max_points=50)[0]) == 50
    with pytest.raises(SpzError, match="limit"):
        decode_spz(data, max_points=49)


def test_spz_writer_refuses_what_readers_cannot_take():
    with pytest.raises(SpzError):
        encode_spz(synthetic_scene(0, 0))
    with pytest.raises(SpzError):
        encode_spz(synthetic_scene(5, 0), version=1)
    with pytest.raises(ValueError):
        encode_spz(synthetic_scene(5, 0), frame="lub")


# ------------------------------------------------------------------------------------------ .splat
def test_hand_built_splat_record():
    rec = struct.pack("<3f3f4B4B", 1.0, -2.0, 0.5, 0.01, 0.02, 0.5, 255, 128, 0, 204, 205, 128, 230, 128)
    g = decode_splat(rec)
    np.testing.assert_allclose(g.positions, [[1.0, -2.0, 0.5]])
    np.testing.assert_allclose(g.scales, np.log([[0.01, 0.02, 0.5]]), rtol=1e-6)
    np.testing.assert_allclose(g.sh_dc, [[(1 - 0.5) / SH_C0, (128 / 255 - 0.5) / SH_C0, -0.5 / SH_C0]], rtol=1e-6)
    np.testing.assert_allclose(sigmoid(g.opacities), [0.8], rtol=1e-6)
    np.testing.assert_allclose(g.rotations, [[77 / 128, 0, 102 / 128, 0]])        # (0.6, 0, 0.8, 0) in 8 bits
    assert g.sh_degree == 0
    assert encode_splat(g) == rec


def test_splat_round_trip(tmp_path):
    g = synthetic_scene(300, 2, seed=4, extent=5.0)
    path = tmp_path / "s.splat"
    assert write_splat(path, g) == 32 * len(g) == path.stat().st_size
    h = read_splat(path)
    np.testing.assert_array_equal(h.positions, g.positions)
    np.testing.assert_allclose(h.scales, g.scales, atol=1e-5)
    np.testing.assert_array_less(np.abs(sigmoid(h.opacities) - sigmoid(g.opacities)), 1 / 510 + 1e-6)
    base = 0.5 + SH_C0 * g.sh_dc
    np.testing.assert_array_less(np.abs((0.5 + SH_C0 * h.sh_dc) - np.clip(base, 0, 1)), 1 / 510 + 1e-6)
    assert quat_err(h.rotations, g.rotations).max() < 0.02
    assert h.sh_degree == 0
    with pytest.raises(ValueError):
        decode_splat(b"\0" * 33)
    with pytest.raises(ValueError):
        decode_splat(struct.pack("<3f3f8B", np.nan, 0, 0, 1, 1, 1, *([128] * 8)))


# ------------------------------------------------------------------------------------------ third party
@pytest.fixture(scope="module")
def splat_transform():
    """@playcanvas/splat-transform from package.json, installed with npm when missing."""
    exe = REPO / "node_modules" / ".bin" / "splat-transform"
    if not exe.exists():
        npm = shutil.which("npm")
        if npm is None or shutil.which("node") is None:
            pytest.skip("node/npm are not installed: cannot run @playcanvas/splat-transform")
        cmd = [npm, "ci" if (REPO / "package-lock.json").exists() else "install", "--no-audit", "--no-fund"]
        r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            text = r.stdout + r.stderr
            if any(k in text for k in ("ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ETIMEDOUT", "ECONNRESET",
                                       "network", "fetch failed")):
                pytest.skip(f"the npm registry is unreachable: {text.strip().splitlines()[-1]}")
            pytest.fail(f"{' '.join(cmd)} failed:\n{text[-3000:]}")
    return exe


def run_st(exe: Path, *args: str) -> None:
    r = subprocess.run([str(exe), "-q", "-w", *args], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


def assert_same_gaussians(a: Gaussians, b: Gaussians, alpha_tol=0.0, rot_tol=0.0, atol=0.0) -> None:
    assert len(a) == len(b) and a.sh_degree == b.sh_degree
    np.testing.assert_allclose(a.positions, b.positions, atol=atol)
    np.testing.assert_allclose(a.scales, b.scales, atol=atol)
    np.testing.assert_allclose(a.sh_dc, b.sh_dc, atol=atol)
    np.testing.assert_allclose(a.sh_rest, b.sh_rest, atol=atol)
    np.testing.assert_allclose(sigmoid(a.opacities), sigmoid(b.opacities), atol=alpha_tol)
    assert quat_err(a.rotations, b.rotations).max() <= rot_tol


def test_splat_transform_round_trips_our_ply_exactly(splat_transform, tmp_path):
    g = synthetic_scene(400, 3, seed=7, extent=8.0)
    write_ply(tmp_path / "ours.ply", g)
    run_st(splat_transform, str(tmp_path / "ours.ply"), str(tmp_path / "theirs.ply"))
    back = read_ply(tmp_path / "theirs.ply")
    for f in ("positions", "scales", "rotations", "opacities", "sh_dc", "sh_rest"):
        np.testing.assert_array_equal(getattr(back, f), getattr(g, f), err_msg=f)


@pytest.mark.parametrize("version", [3, 4])
def test_spz_written_by_splat_transform_decodes_to_our_codes(splat_transform, tmp_path, version):
    """splat-transform packs with the official SPZ library, storing the PLY frame as is ('raw')."""
    g = synthetic_scene(400, 3, seed=8, extent=8.0)
    write_ply(tmp_path / "ours.ply", g)
    run_st(splat_transform, str(tmp_path / "ours.ply"), str(tmp_path / "theirs.spz"), "--spz-version", str(version))
    theirs, head = decode_spz((tmp_path / "theirs.spz").read_bytes(), frame="raw")
    assert (head.version, head.num_points, head.sh_degree) == (version, 400, 3)
    ours = decode_spz(encode_spz(g, version=version, frame="raw"), frame="raw")[0]
    assert_same_gaussians(theirs, ours)


@pytest.mark.parametrize("version", [2, 3, 4])
def test_splat_transform_reads_our_spz(splat_transform, tmp_path, version):
    g = synthetic_scene(400, 2, seed=9, extent=8.0)
    (tmp_path / "ours.spz").write_bytes(encode_spz(g, version=version, frame="raw"))
    run_st(splat_transform, str(tmp_path / "ours.spz"), str(tmp_path / "theirs.ply"))
    # alpha codes 0 and 255 decode to different finite logits (their clamp 1e-6, ours 0.25/255)
    assert_same_gaussians(read_ply(tmp_path / "theirs.ply"), decode_spz((tmp_path / "ours.spz").read_bytes(),
                                                                         frame="raw")[0],
                          alpha_tol=0.25 / 255 + 1e-6, rot_tol=2e-6, atol=1e-6)


def test_splat_transform_reads_our_splat(splat_transform, tmp_path):
    g = synthetic_scene(400, 0, seed=10, extent=8.0)
    write_splat(tmp_path / "ours.splat", g)
    run_st(splat_transform, str(tmp_path / "ours.splat"), str(tmp_path / "theirs.ply"))
    # rotation bytes: they read (b / 255) * 2 - 1, we read (b - 128) / 128; both within a code step
    assert_same_gaussians(read_ply(tmp_path / "theirs.ply"), read_splat(tmp_path / "ours.splat"),
                          alpha_tol=0.25 / 255 + 1e-6, rot_tol=0.01, atol=2e-6)
