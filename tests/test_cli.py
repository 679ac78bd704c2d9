"""The `gsd` command line, run as a user would: in a subprocess, checking exit codes and output.

Runs ``python -m codec.cli`` with the test interpreter (same code as the
installed ``gsd`` console script, which one test calls directly).
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from codec import DEFAULT_PROFILE, FORMAT_VERSION, __version__, cli
from codec.attributes import Attr
from codec.ply import read_ply, write_ply
from conformance import craft
from conftest import random_gaussians

SUBCOMMANDS = ("encode", "decode", "info", "validate", "demo")


def gsd(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "codec.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def ok(*args, cwd=None) -> subprocess.CompletedProcess:
    r = gsd(*args, cwd=cwd)
    assert r.returncode == 0, f"gsd {' '.join(map(str, args))} -> {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def rows(g) -> np.ndarray:
    """Every Gaussian as one row of float32 bit patterns, rows sorted: order-free comparison."""
    cols = [g.positions, g.scales, g.rotations, g.opacities[:, None], g.sh_dc, g.sh_rest]
    r = np.ascontiguousarray(np.hstack(cols).astype(np.float32)).view(np.uint32)
    return r[np.lexsort(r.T[::-1])]


@pytest.fixture(scope="module")
def scene_ply(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    g = random_gaussians(np.random.default_rng(7), 700, 3)
    path = d / "scene.ply"
    write_ply(path, g)
    return path, g


@pytest.fixture(scope="module")
def demo_stream(tmp_path_factory):
    d = tmp_path_factory.mktemp("demo")
    out = d / "tiny.gsd"
    r = ok("demo", "--n", 3000, "--frames", 5, "--out", out, "--quiet")
    return out, r.stdout


# ------------------------------------------------------------------------------------ round trip
def test_lossless_encode_info_validate_decode_round_trip(scene_ply, tmp_path):
    ply, g = scene_ply
    stream, back = tmp_path / "s.gsd", tmp_path / "back.ply"
    enc = ok("encode", ply, stream, "--profile", "lossless", "--json")
    summary = json.loads(enc.stdout)
    assert summary["gaussians"] == len(g) and summary["bytes"] == stream.stat().st_size
    assert summary["errors"] == [] and summary["ratio"] > 0

    info = json.loads(ok("info", stream, "--json").stdout)
    assert info["header"]["profile"]["lossless"] is True and info["header"]["sh_degree"] == 3
    (frame,) = info["frames"]
    assert frame["keyframe"] and frame["ops"]["add"] == len(g) and frame["ops"]["update"] == 0
    assert frame["bytes"] + info["header"]["bytes"] == stream.stat().st_size
    assert frame["meta_bytes"] + sum(frame["section_bytes"].values()) + 16 == frame["bytes"]
    assert frame["digest"] == summary["digest"] == info["totals"]["final_digest"]

    val = ok("validate", stream)
    assert val.stdout.strip() == f"OK: 1 frames, final digest {summary['digest']}"

    ok("decode", stream, back)
    got = read_ply(back)
    assert len(got) == len(g) and got.sh_degree == 3
    assert np.array_equal(rows(got), rows(g))  # bit-exact floats (order: ascending id)


def test_text_outputs_name_the_numbers(scene_ply, tmp_path):
    ply, g = scene_ply
    stream = tmp_path / "c.gsd"
    out = ok("encode", ply, stream).stdout
    assert f"{len(g):,}" in out and "B/Gaussian" in out and "ratio" in out
    for name in ("position", "scale", "rotation", "opacity (alpha)", "sh_dc", "sh_rest", "clamped", "fitted ranges"):
        assert name in out
    info = ok("info", stream).stdout
    assert DEFAULT_PROFILE in info and "palette" in info and "SH degree    3" in info and "cell bits" in info
    assert "totals: 1 frames (1 keyframes)" in info


@pytest.mark.parametrize("profile", ["high", "compact", "small"])
def test_lossy_encode_reports_errors_within_bounds_and_decodes_close(scene_ply, tmp_path, profile):
    ply, g = scene_ply
    stream, back = tmp_path / "s.gsd", tmp_path / "back.ply"
    summary = json.loads(ok("encode", ply, stream, "--profile", profile, "--json").stdout)
    errs = {e["attribute"]: e for e in summary["errors"]}
    assert set(errs) == {"position", "scale", "rotation", "opacity (alpha)", "sh_dc", "sh_rest"}
    for name in ("position", "rotation", "opacity (alpha)", "scale", "sh_dc"):  # never clamp, or fitted to min/max
        assert errs[name]["clamped"] == 0 and 0 < errs[name]["max"] <= errs[name]["bound"] * (1 + 1e-5)
    for e in errs.values():  # only clamped components may exceed the bound, and the summary counts them
        assert e["over_bound"] <= e["clamped"]
    assert summary["ranges"] == "fitted"
    assert summary["clamped"] == {"scale": 0, "sh_dc": 0, "sh_rest": errs["sh_rest"]["clamped"]}
    assert summary["clamped_total"] == errs["sh_rest"]["clamped"]
    compact = json.loads(ok("info", stream, "--json").stdout)["header"]["profile"]
    assert compact["name"] == profile and compact["lossless"] is False

    ok("decode", stream, back)
    got = read_ply(back)
    assert len(got) == len(g)
    # Independent of the encoder's own report: every input position has a decoded one within the bound.
    d2 = ((g.positions[:, None, :].astype(np.float64) - got.positions[None, :, :]) ** 2).sum(-1)
    assert np.sqrt(d2.min(axis=1)).max() <= np.sqrt(3) * errs["position"]["bound"] * (1 + 1e-3) + 1e-6


def test_encode_sh_degree_and_cell_bits(scene_ply, tmp_path):
    ply, g = scene_ply
    stream, back = tmp_path / "d1.gsd", tmp_path / "d1.ply"
    ok("encode", ply, stream, "--profile", "lossless", "--sh-degree", 1, "--cell-bits", 9)
    h = json.loads(ok("info", stream, "--json").stdout)["header"]
    assert h["sh_degree"] == 1 and h["grid"]["cell_bits"] == 9
    ok("decode", stream, back)
    got = read_ply(back)
    assert got.sh_degree == 1
    assert np.array_equal(rows(got), rows(g.with_sh_degree(1)))


def test_progressive_encode_writes_a_coarse_first_frame_that_refines_to_the_plain_stream(tmp_path):
    g = random_gaussians(np.random.default_rng(3), 6000, 2)
    ply = tmp_path / "scene.ply"
    write_ply(ply, g)
    plain, prog = tmp_path / "plain.gsd", tmp_path / "prog.gsd"
    a = json.loads(ok("encode", ply, plain, "--json").stdout)
    b = json.loads(ok("encode", ply, prog, "--progressive", "0.02", "--json").stdout)
    assert a["frames"] == 1 and b["frames"] >= 2
    assert b["first_frame_gaussians"] < len(g) // 2 and b["header_bytes"] + b["frame_bytes"] < 0.5 * a["bytes"]
    assert b["digest"] == a["digest"]                          # the same scene in the end, palette and all
    back_a, back_b = tmp_path / "a.ply", tmp_path / "b.ply"
    ok("decode", plain, back_a)
    ok("decode", prog, back_b)
    assert np.array_equal(rows(read_ply(back_a)), rows(read_ply(back_b)))
    text = ok("encode", ply, prog, "--progressive", "0.02").stdout
    assert f"progressive    {b['frames']} frames" in text
    bad = gsd("encode", ply, prog, "--progressive", "zero")
    assert bad.returncode == 2 and "not a number of megabytes" in bad.stderr


@pytest.fixture(scope="module")
def outlier_ply(tmp_path_factory):
    """What captured scenes have and the presets' fixed ranges clamp: DC up to 14.9, log-scales to -20."""
    g = random_gaussians(np.random.default_rng(11), 900, 2)
    dc, sc = g.sh_dc.copy(), g.scales.copy()
    dc[:7, 1] = np.linspace(5.0, 14.9, 7)
    sc[10:60, 0] = np.linspace(-20.0, -15.0, 50)
    g = type(g)(g.positions, sc, g.rotations, g.opacities, dc, g.sh_rest)
    path = tmp_path_factory.mktemp("outliers") / "outliers.ply"
    write_ply(path, g)
    return path, g


def test_encode_fits_ranges_and_fixed_ranges_report_their_clamps(outlier_ply, tmp_path):
    ply, g = outlier_ply
    fitted = json.loads(ok("encode", ply, tmp_path / "f.gsd", "--json").stdout)
    assert fitted["ranges"] == "fitted" and fitted["clamped"]["sh_dc"] == 0 and fitted["clamped"]["scale"] == 0
    header = json.loads(ok("info", tmp_path / "f.gsd", "--json").stdout)["header"]["profile"]
    assert header["dc_range"][1] == pytest.approx(14.9) and header["scale_range"][0] == -20.0

    fixed = json.loads(ok("encode", ply, tmp_path / "x.gsd", "--fixed-ranges", "--json").stdout)
    assert fixed["ranges"] == "fixed"
    assert fixed["clamped"]["sh_dc"] == 7 and fixed["clamped"]["scale"] == 50
    assert fixed["clamped_total"] == sum(fixed["clamped"].values())
    errs = {e["attribute"]: e for e in fixed["errors"]}
    assert errs["sh_dc"]["clamped"] == 7 and errs["sh_dc"]["clamped_max"] == pytest.approx(14.9 - 3.5, abs=0.02)
    assert errs["scale"]["clamped_max"] == pytest.approx(6.0, abs=0.04) and errs["scale"]["clamped_mean"] > 1
    text = ok("encode", ply, tmp_path / "x.gsd", "--fixed-ranges").stdout
    assert "fixed ranges" in text
    clamp_lines = [line for line in text.splitlines() if "components (" in line]
    assert any("7 of 2,700 sh_dc components" in line and "error max 11.4" in line for line in clamp_lines)
    assert any("50 of 2,700 scale components" in line for line in clamp_lines)


def test_cell_bits_keep_the_position_step(scene_ply, tmp_path):
    ply, _ = scene_ply
    steps, precision = {}, set()
    for b in (10, 12, 14):
        r = json.loads(ok("encode", ply, tmp_path / f"b{b}.gsd", "--cell-bits", b, "--json").stdout)
        h = json.loads(ok("info", tmp_path / f"b{b}.gsd", "--json").stdout)["header"]
        assert r["grid"]["cell_bits"] == h["grid"]["cell_bits"] == b and h["profile"]["position_bits"] <= 18 - b
        precision.add(h["profile"]["position_bits"] + b)  # the small preset may take a coarser step (sizes)
        steps[b] = h["profile"]["position_step"]
    assert len(precision) == 1
    assert steps[10] == steps[12] == steps[14]
    assert json.loads(ok("info", tmp_path / "b10.gsd", "--json").stdout)["header"] == \
        json.loads(ok("info", ok("encode", ply, tmp_path / "d.gsd") and tmp_path / "d.gsd", "--json").stdout)["header"]


# ------------------------------------------------------------------------------------ bad streams
def _last_frame(stream: Path) -> tuple[int, int, int]:
    info = json.loads(ok("info", stream, "--json").stdout)
    last = info["frames"][-1]
    return last["index"], last["offset"], last["bytes"]


def test_validate_flags_a_corrupted_last_frame(demo_stream, tmp_path):
    stream, _ = demo_stream
    index, offset, length = _last_frame(stream)
    data = bytearray(stream.read_bytes())
    data[offset + length // 2] ^= 0x5A  # inside the payload: only the CRC can notice
    bad = tmp_path / "bad.gsd"
    bad.write_bytes(bytes(data))

    r = gsd("validate", bad)
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.splitlines()[0].startswith(f"frame {index}: BAD_CHECKSUM (code 4): ")
    assert "Traceback" not in r.stderr

    j = json.loads(gsd("validate", bad, "--json").stdout)
    assert j["ok"] is False and j["frames_decoded"] == index
    assert [(p["frame"], p["code"], p["name"]) for p in j["problems"]][0] == (index, 4, "BAD_CHECKSUM")

    info = gsd("info", bad)  # prints what it could read, then stops with the error
    assert info.returncode == 1 and "BAD_CHECKSUM" in info.stdout
    assert gsd("decode", bad, tmp_path / "x.ply").returncode == 1
    ok("decode", bad, tmp_path / "before.ply", "--frame", index - 1)  # frames before the damage still decode


def test_validate_flags_a_truncated_file(demo_stream, tmp_path):
    stream, _ = demo_stream
    index, offset, length = _last_frame(stream)
    cut = tmp_path / "cut.gsd"
    cut.write_bytes(stream.read_bytes()[: offset + length - 7])
    r = gsd("validate", cut)
    assert r.returncode == 1
    assert r.stdout.splitlines() and all(l.startswith("frame ") for l in r.stdout.splitlines())
    assert r.stdout.splitlines()[0].startswith(f"frame {index}: TRUNCATED (code 1): ")


def test_validate_reports_a_bad_header_and_later_crc_problems(demo_stream, tmp_path):
    stream, _ = demo_stream
    data = bytearray(stream.read_bytes())
    hdr = tmp_path / "hdr.gsd"
    hdr.write_bytes(b"XXXX" + bytes(data[4:]))
    r = gsd("validate", hdr)
    assert r.returncode == 1 and r.stdout.startswith("header: BAD_MAGIC (code 2): ")

    # Damage frames 1 and 3: frame 1 fails to decode, frame 3's CRC is still checked and reported.
    info = json.loads(ok("info", stream, "--json").stdout)
    for k in (1, 3):
        f = info["frames"][k]
        data[f["offset"] + f["bytes"] - 10] ^= 0xFF
    two = tmp_path / "two.gsd"
    two.write_bytes(bytes(data))
    lines = gsd("validate", two).stdout.splitlines()
    assert [l.split(":")[0] for l in lines] == ["frame 1", "frame 3"]
    assert all("BAD_CHECKSUM (code 4)" in l for l in lines)


# ------------------------------------------------------------------------------------ usage errors
def test_usage_errors_exit_2_without_traceback(tmp_path):
    missing = tmp_path / "nope.gsd"
    for args in (("validate", missing), ("info", missing), ("decode", missing, tmp_path / "o.ply"),
                 ("encode", tmp_path / "nope.ply", tmp_path / "o.gsd")):
        r = gsd(*args)
        assert r.returncode == 2, args
        assert "no such file" in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    for args in (("encode",), ("encode", "a.ply", "b.gsd", "--profile", "bogus"), ("demo", "--n", "0"),
                 ("decode", "a", "b", "--frame", "x"), ("frobnicate",), ()):
        r = gsd(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr


def test_decode_frame_out_of_range_is_a_usage_error(demo_stream, tmp_path):
    stream, _ = demo_stream
    r = gsd("decode", stream, tmp_path / "o.ply", "--frame", 99)
    assert r.returncode == 2 and "frames 0..4" in r.stderr


def test_bad_input_data_exits_1_with_a_message(tmp_path):
    junk = tmp_path / "junk.ply"
    junk.write_bytes(b"not a ply at all")
    r = gsd("encode", junk, tmp_path / "o.gsd")
    assert r.returncode == 1 and "not a PLY" in r.stderr and "Traceback" not in r.stderr
    notgsd = tmp_path / "junk.gsd"
    notgsd.write_bytes(craft.header_record(b"", major=2, crc=0))
    r = gsd("info", notgsd)
    assert r.returncode == 1 and "UNSUPPORTED_VERSION (code 3)" in r.stderr


# ------------------------------------------------------------------------------------ help, version
@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_help_of_every_subcommand(sub):
    r = ok(sub, "--help")
    assert r.stdout.startswith(f"usage: gsd {sub}")
    assert "examples:" in r.stdout and f"gsd {sub}" in r.stdout.split("examples:")[1]
    assert "--quiet" in r.stdout


def test_top_level_help_and_version():
    r = ok("--help")
    for sub in SUBCOMMANDS:
        assert sub in r.stdout
    v = ok("--version").stdout
    assert __version__ in v and f"format {FORMAT_VERSION}" in v


def test_console_script_is_installed():
    script = Path(sys.executable).parent / ("gsd.exe" if os.name == "nt" else "gsd")
    r = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and __version__ in r.stdout


# ------------------------------------------------------------------------------------ demo
def test_demo_stream_validates_and_matches_its_report(demo_stream, tmp_path):
    stream, report = demo_stream
    assert "verified: OK" in report
    assert "clamped: " in report  # the count over all frames, "none" included
    final = report.split("final digest ")[1].split()[0]
    assert ok("validate", stream).stdout.strip() == f"OK: 5 frames, final digest {final}"

    info = json.loads(ok("info", stream, "--json").stdout)
    frames = info["frames"]
    assert [f["keyframe"] for f in frames] == [True, False, False, False, False]
    assert all(f["base_seq"] == p["seq"] for p, f in zip(frames, frames[1:]))
    for f in frames[1:]:  # every delta moves/recolours, deletes a cell and adds
        assert f["ops"]["add"] > 0 and f["ops"]["update"] > 0 and f["ops"]["delete_cells"] == 1
        assert f["bytes"] < frames[0]["bytes"] / 5
    assert info["totals"]["final_digest"] == final

    key, last = tmp_path / "key.ply", tmp_path / "last.ply"
    ok("decode", stream, key, "--frame", 0)
    ok("decode", stream, last)
    assert len(read_ply(key)) == frames[0]["gaussians"] == 3000
    assert len(read_ply(last)) == frames[-1]["gaussians"]


def test_demo_default_output_path_and_profiles(tmp_path):
    r = ok("demo", "--n", 500, "--frames", 3, "--profile", "lossless", "--sh-degree", 0, "-q", cwd=tmp_path)
    assert (tmp_path / "demo.gsd").exists() and "verified: OK" in r.stdout
    h = json.loads(ok("info", tmp_path / "demo.gsd", "--json").stdout)["header"]
    assert h["profile"]["lossless"] and h["sh_degree"] == 0
    assert r.stderr == ""  # no progress bars when stderr is not a terminal


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("quiet", [False, True])
def test_progress_bars_on_a_terminal_unless_quiet(tmp_path, monkeypatch, capsys, quiet):
    err = _Tty()
    monkeypatch.setattr(sys, "stderr", err)
    args = ["demo", "--n", "800", "--frames", "3", "--out", str(tmp_path / "p.gsd")] + (["--quiet"] if quiet else [])
    assert cli.main(args) == 0
    assert "verified: OK" in capsys.readouterr().out
    if quiet:
        assert err.getvalue() == ""
    else:
        assert "encode:" in err.getvalue() and "verify:" in err.getvalue() and "/3 [" in err.getvalue()


# ------------------------------------------------------------------------------------ format version
def _kinds(stream: Path) -> set:
    data = stream.read_bytes()
    frames = [data[at:at + n] for what, at, n in craft.record_spans(data) if what == "frame"]
    return {k for f in frames for k in craft.block_kinds(f)}


def test_format_1_0_sends_every_id_and_refuses_the_palette_profile(scene_ply, tmp_path):
    ply, _ = scene_ply
    new, old = tmp_path / "new.gsd", tmp_path / "old.gsd"
    ok("encode", ply, new, "--profile", "compact", "--quiet")
    ok("encode", ply, old, "--profile", "compact", "--format", "1.0", "--quiet")
    assert _kinds(new) == {craft.ADD_IMPLICIT} and _kinds(old) == {craft.ADD}
    assert json.loads(ok("info", old, "--json").stdout)["frames"][-1]["digest"] == \
        json.loads(ok("info", new, "--json").stdout)["frames"][-1]["digest"]      # the same scene
    r = gsd("encode", ply, tmp_path / "x.gsd", "--format", "1.0")                   # the default profile: 'small'
    assert r.returncode == 2 and "SH palette" in r.stderr and not (tmp_path / "x.gsd").exists()
