"""The conformance suite checks itself.

Vectors regenerate byte for byte; they cover every op, UPDATE mask, filter combination, profile x SH degree,
error code and limit; our codec passes all of them through the runner's process protocol; a testee that
skips CRC checks fails exactly the checksum vectors; validate_stream reports every invalid vector with
its frame and code; and the codec's final states equal the manifest's (which come from refmodel).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import io
import json
import os
import shlex
import subprocess
import sys

import numpy as np
import pytest

from codec import Decoder, ErrorCode, Limits, validate_stream
from codec.attributes import ATTRS
from codec.profile import PRESETS, Profile
from conformance import generate, runner
from conformance import craft
from conformance.craft import UPDATE, record_spans
from conformance.refmodel import ATTR_NAMES, Layout, digest, digest_text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VEC = os.path.join(ROOT, "conformance", "vectors")
MANIFEST = runner.load_manifest(VEC)
VECTORS = MANIFEST["vectors"]
INVALID = [v for v in VECTORS if v["expected"]["result"] == "invalid"]
VALID = [v for v in VECTORS if v["expected"]["result"] == "valid"]


def data_of(v: dict) -> bytes:
    with open(os.path.join(VEC, v["file"]), "rb") as f:
        return f.read()


def limits_of(v: dict) -> Limits:
    return Limits(**v.get("limits", {}))


def load_testee(name: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "conformance", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ------------------------------------------------------------------------------------------ vectors
def test_vectors_regenerate_byte_identical(tmp_path):
    generate.generate(str(tmp_path))
    fresh, committed = sorted(os.listdir(tmp_path)), sorted(os.listdir(VEC))
    assert fresh == committed, "vector set changed: run python -m conformance.generate and commit"
    drifted = []
    for name in committed:
        with open(os.path.join(VEC, name), "rb") as a, open(tmp_path / name, "rb") as b:
            if a.read() != b.read():
                drifted.append(name)
    assert not drifted, f"vectors drifted from the generator: {drifted[:10]}"


def test_manifest_entries_are_well_formed():
    ids = [v["id"] for v in VECTORS]
    assert len(ids) == len(set(ids))
    for v in VECTORS:
        assert v["file"] == v["id"] + ".gsd" and os.path.isfile(os.path.join(VEC, v["file"]))
        assert v["description"] and "\n" not in v["description"]
        assert v["sections"] and v["category"]
        exp = v["expected"]
        assert exp["result"] in ("valid", "invalid")
        if exp["result"] == "invalid":
            assert exp["error"] in ErrorCode.__members__
            assert len(exp["digests"]) == max(exp["frame"], 0), "digests of exactly the frames before the failure"
        for name in v.get("limits", {}):
            assert name in Limits.__dataclass_fields__


def test_vector_coverage():
    assert len(VECTORS) >= 150
    size = sum(os.path.getsize(os.path.join(VEC, v["file"])) for v in VECTORS)
    assert size + os.path.getsize(os.path.join(VEC, "manifest.json")) < 3_000_000
    assert {v["expected"]["error"] for v in INVALID} == set(ErrorCode.__members__), "every error code triggered"

    masks_sh3, profiles, kinds_valid, kinds_invalid = set(), set(), set(), set()
    filters_valid, filters_invalid = set(), set()
    comps_valid, comps_invalid, gap_orders = set(), set(), set()   # compression ids; (width, k) of gap codes
    for v in VECTORS:
        data = data_of(v)
        valid = v["expected"]["result"] == "valid"
        blocks, filters, comps = [], set(), set()
        for kind, off, n in record_spans(data)[1:]:
            try:
                meta, payload = craft.split_frame(data[off:off + n])
                f = craft.parse_frame_meta(meta)
            except Exception:  # deliberately broken metadata
                continue
            blocks += f.blocks
            used = [f.sections[k] for b in f.blocks if 1 <= b.kind <= 9 for k in b.sections if k < len(f.sections)]
            filters.update(s.filters for s in used)
            comps.update(s.compression for s in used)
            if valid:
                gap_orders.update((s.width, payload[s.offset]) for s in used if s.compression == 2)
        (kinds_valid if valid else kinds_invalid).update(b.kind for b in blocks)
        (filters_valid if valid else filters_invalid).update(filters)
        (comps_valid if valid else comps_invalid).update(comps)
        if not valid:
            continue
        dec = Decoder(limits=limits_of(v))
        dec.set_header(data)
        p = dec.header.profile
        profiles.update((name, p.sh_degree) for name in _presets_of(p))
        if p.sh_degree == 3:
            masks_sh3.update(b.mask for b in blocks if b.kind == UPDATE)
    assert masks_sh3 == set(range(1, 64)), "all 63 UPDATE masks at SH degree 3"
    assert {(name, d) for name in PRESETS for d in range(4)} <= profiles
    assert set(range(1, 10)) <= kinds_valid and any(k >= 128 for k in kinds_valid)   # kinds 1..9 (SPEC.md 6.1)
    assert 0 in kinds_invalid and any(10 <= k <= 127 for k in kinds_invalid)           # reserved required kinds
    # referenced sections: every combination of DELTA, ZIGZAG, SHUFFLE and CHANNEL (bit 3, 1.3) in valid vectors,
    # and each of the unknown bits 4..7 (SPEC.md 4.4) alone and beside CHANNEL in invalid ones
    assert set(range(16)) <= filters_valid
    assert {f & 0xF0 for f in filters_valid} == {0}
    assert {0x10, 0x80} <= {f & 0xF0 for f in filters_invalid}
    assert any(f & 0x08 and f & 0xF0 for f in filters_invalid)
    # compressions none, zstd and the gap code (1.4) in valid vectors, unknown ones in invalid; gap codes of
    # every width at the least and the greatest order
    assert comps_valid == {0, 1, 2} and {3, 255} <= comps_invalid
    assert all({(w, 0), (w, 8 * w - 1)} <= gap_orders for w in (1, 2, 4))

    by_limit: dict[str, set] = {}
    for v in VECTORS:
        for name in v.get("limits", {}):
            by_limit.setdefault(name, set()).add(v["expected"].get("error", "valid"))
    for name in Limits.__dataclass_fields__:
        assert {"valid", "LIMIT_EXCEEDED"} <= by_limit.get(name, set()), f"{name}: needs an at- and a past-limit vector"


def _presets_of(p) -> set[str]:
    """The presets whose quantization at p's SH degree is p's (at degree 0 'small' has no palette, so it is
    'compact'), or {"custom"}."""
    d, out = p.sh_degree, set()
    for name in PRESETS:
        q = Profile.preset(name, d).quant
        if q is None or p.quant is None:
            if q is None and p.quant is None:
                out.add(name)
            continue
        same = all(getattr(q, f) == getattr(p.quant, f) for f in q.__dataclass_fields__ if not f.startswith("rest"))
        if same and q.rest_bits[:d] == p.quant.rest_bits[:d] and q.rest_range[:d] == p.quant.rest_range[:d]:
            out.add(name)
    return out or {"custom"}


@pytest.mark.parametrize("v", [v for v in VALID if "state" in v["expected"]], ids=lambda v: v["id"])
def test_codec_final_state_equals_manifest_state(v):
    """The codec's decoded state (ids and every code) is the refmodel's, not just its digest."""
    data = data_of(v)
    dec = Decoder(limits=limits_of(v))
    pos = dec.set_header(data)
    while pos < len(data):
        pos += dec.read_frame(memoryview(data)[pos:])[1]
    ids, codes = dec.state.sorted_codes()
    got = [{"id": str(int(i)), **{ATTR_NAMES[a]: [int(x) for x in codes[A][:, j]] for a, A in enumerate(ATTRS)}}
           for j, i in enumerate(ids)]
    assert got == v["expected"]["state"]
    p = dec.header.profile
    palette = {}
    if p.palette:   # the non-zero entries of the codec's palette, as the manifest lists them
        table = dec.state.palette
        palette = {int(e): tuple(int(x) for x in table[:, e]) for e in np.flatnonzero(table.any(axis=0))}
        assert [{"index": e, "sh_rest": list(c)} for e, c in sorted(palette.items())] == v["expected"]["palette"]
    else:
        assert "palette" not in v["expected"]
    layout = Layout(p.sh_degree, p.quant, p.grid.cell_bits, p.grid.slot_bits, p.palette)
    state = {int(g["id"]): tuple(tuple(g[n]) for n in ATTR_NAMES) for g in v["expected"]["state"]}
    last = v["expected"]["digests"][-1] if v["expected"]["digests"] else "0:00000000:00000000"
    assert digest_text(digest(layout, state, palette)) == last


# ------------------------------------------------------------------------------------------ runner
def test_python_testee_passes_every_vector_through_the_runner():
    impl = f"{shlex.quote(sys.executable)} {shlex.quote(os.path.join(ROOT, 'conformance', 'testee_python.py'))}"
    p = subprocess.run([sys.executable, "-m", "conformance", "run", "--impl", impl, "--json"], cwd=ROOT,
                       capture_output=True, text=True, timeout=1200)
    out = json.loads(p.stdout)
    failed = [(r["id"], r["got"], r["detail"]) for r in out["results"] if r["status"] != "PASS"]
    assert not failed
    assert (out["passed"], out["failed"], p.returncode) == (len(VECTORS), 0, 0)


def test_broken_testee_fails_exactly_the_checksum_vectors():
    """In-process over every vector (the process path is covered above and below): same judging code."""
    broken = load_testee("testee_broken")
    failing = set()
    for v in VECTORS:
        out = io.StringIO()
        broken.decode(broken.fix_crcs(data_of(v)), limits_of(v), out=out)
        if runner.judge(v, 0, out.getvalue(), "", 10.0)[0] != "PASS":
            failing.add(v["id"])
    assert failing == {v["id"] for v in INVALID if v["expected"]["error"] == "BAD_CHECKSUM"}


def test_runner_cli_reports_failures_with_summary_and_exit_code():
    impl = f"{shlex.quote(sys.executable)} {shlex.quote(os.path.join(ROOT, 'conformance', 'testee_broken.py'))}"
    p = subprocess.run([sys.executable, "-m", "conformance", "run", "--impl", impl, "--filter",
                        "^(crc_frame_zeroed|crc_header_value|op_delete_ids)$"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    lines = p.stdout.strip().splitlines()
    assert p.returncode == 1 and lines[-1] == "1 passed, 2 failed"
    rows = {ln.split()[0]: ln for ln in lines[1:-1]}
    assert rows["op_delete_ids"].split()[-1] == "PASS"
    assert " FAIL " in rows["crc_header_value"] and " FAIL " in rows["crc_frame_zeroed"]


@pytest.mark.parametrize("body,got", [
    ("import sys; sys.exit(3)", "crash (exit 3)"),
    ("import time; time.sleep(30)", "hang"),
    ("print('header ok'); print('frame 0 fine')", "protocol error"),
    ("print('header ok')", "valid (0 frames)"),
])
def test_runner_fails_crashes_hangs_and_bad_output(tmp_path, body, got):
    script = tmp_path / "testee.py"
    script.write_text(body)
    [r] = runner.run(f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}", VEC, "^op_delete_ids$", timeout=2.0)
    assert (r.status, r.got) == ("FAIL", got)


def test_runner_limits_are_the_spec_defaults():
    import dataclasses
    assert runner.SPEC_DEFAULT_LIMITS == dataclasses.asdict(Limits()) == MANIFEST["default_limits"]
    for v in VECTORS:
        runner.limit_args(v)   # every committed vector only lowers limits


def _one_vector_dir(tmp_path, limits: dict, default_limits: dict | None = None) -> str:
    v = dict(next(v for v in VECTORS if v["id"] == "op_delete_ids"), limits=limits)
    d = tmp_path / "vectors"
    d.mkdir()
    (d / v["file"]).write_bytes(data_of(v))
    m = dict(MANIFEST, vectors=[v])
    if default_limits is not None:
        m["default_limits"] = default_limits
    (d / "manifest.json").write_text(json.dumps(m))
    return str(d)


@pytest.mark.parametrize("limits,ok", [
    ({"max_blocks": 4096, "max_frame_raw_bytes": 2**32}, True),       # at the defaults: allowed
    ({"max_sections": 100}, True),                                  # lowered
    ({"max_blocks": 4097}, False),                                    # above the default: a usage error
    ({"max_frame_raw_bytes": 2**32 + 1}, False),
    ({"max_gaussians": -1}, False),
    ({"max_gaussians": 1.5}, False),
    ({"max_widgets": 1}, False),
])
def test_runner_refuses_a_vector_file_that_raises_a_limit(tmp_path, limits, ok):
    """SPEC.md 9.1 / conformance/README.md: --limit only lowers; the runner refuses, before running any
    testee, a manifest that asks for more (exit status 2), so no testee ever receives such a value."""
    vec = _one_vector_dir(tmp_path, limits)
    marker = tmp_path / "ran"
    script = tmp_path / "testee.py"
    script.write_text(f"open({str(marker)!r}, 'a').write('x')\nimport runpy, sys\n"
                      f"sys.argv = ['t'] + sys.argv[1:]\n"
                      f"runpy.run_path({os.path.join(ROOT, 'conformance', 'testee_python.py')!r}, run_name='__main__')\n")
    impl = f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"
    p = subprocess.run([sys.executable, "-m", "conformance", "run", "--impl", impl, "--vectors", vec], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    if ok:
        assert p.returncode == 0 and p.stdout.strip().splitlines()[-1] == "1 passed, 0 failed", p.stdout + p.stderr
        assert marker.exists()
    else:
        assert p.returncode == 2 and "limit" in p.stderr, p.stdout + p.stderr
        assert not marker.exists(), "a testee ran although the vector file was refused"
        with pytest.raises(runner.UsageError):
            runner.run(impl, vec)


def test_runner_refuses_a_manifest_whose_default_limits_are_not_the_spec(tmp_path):
    vec = _one_vector_dir(tmp_path, {}, dict(MANIFEST["default_limits"], max_blocks=8192))
    with pytest.raises(runner.UsageError):
        runner.run("true", vec)


# ------------------------------------------------------------------------------------------ validate
@pytest.mark.parametrize("v", INVALID, ids=lambda v: v["id"])
def test_validate_stream_reports_the_expected_problem(v):
    problems = validate_stream(os.path.join(VEC, v["file"]), limits_of(v))
    assert problems, "validate_stream found nothing"
    first = problems[0]
    assert (first.code.name, -1 if first.frame is None else first.frame) == (v["expected"]["error"],
                                                                            v["expected"]["frame"])


def test_validate_stream_accepts_every_valid_vector():
    bad = {v["id"]: validate_stream(os.path.join(VEC, v["file"]), limits_of(v)) for v in VALID}
    assert not {k: p for k, p in bad.items() if p}


# ------------------------------------------------------------------------------------------ zstd libraries
def _system_libzstd():
    name = ctypes.util.find_library("zstd")
    if name is None:
        return None
    lib = ctypes.CDLL(name)
    lib.ZSTD_versionString.restype = ctypes.c_char_p
    lib.ZSTD_isError.argtypes = [ctypes.c_size_t]
    lib.ZSTD_findFrameCompressedSize.restype = ctypes.c_size_t
    lib.ZSTD_findFrameCompressedSize.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    lib.ZSTD_decompress.restype = ctypes.c_size_t
    lib.ZSTD_decompress.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t]
    return lib


def test_zstd_vectors_have_one_outcome_with_another_libzstd(monkeypatch):
    """SPEC.md 4.4: the outcome of a zstd vector does not depend on the zstd library. The reference's frame
    checks stay, its decompression goes through the system's libzstd (one-shot ZSTD_decompress into exactly
    raw_size bytes; Debian 12 ships 1.5.4, which decodes some corrupt data that newer versions refuse)."""
    from codec import sections
    lib = _system_libzstd()
    if lib is None:
        pytest.skip("no system libzstd")

    def one_frame(stored, expected, into=None):
        src = bytes(stored)
        n = lib.ZSTD_findFrameCompressedSize(src, len(src))
        if lib.ZSTD_isError(n) or n != len(src):
            raise sections.GsdError(ErrorCode.DECOMPRESSION_FAILED, "not exactly one frame")
        dst = ctypes.create_string_buffer(max(expected, 1))
        r = lib.ZSTD_decompress(dst, expected, src, len(src))
        if lib.ZSTD_isError(r) or r != expected:
            raise sections.GsdError(ErrorCode.DECOMPRESSION_FAILED, f"libzstd {lib.ZSTD_versionString()}")
        if into is None:
            return dst.raw[:expected]
        sections.fill(into, dst.raw[:expected])

    monkeypatch.setattr(sections, "_zstd_one_frame", one_frame)
    zstd = [v for v in VECTORS if v["id"].startswith(("zstd_", "enc_"))]
    assert len([v for v in zstd if v["expected"].get("error") == "DECOMPRESSION_FAILED"]) >= 20
    assert not generate.check_with_codec(VEC, {"vectors": zstd})
