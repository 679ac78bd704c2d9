"""The compiled loops and their Python originals give the same streams, states and errors.

The codec's per-element loops (codec/jit.py) run compiled once numba is on and as Python before
that or without numba. Both must agree bit for bit: the same random streams of every profile are
encoded, decoded, composed and corrupted in two processes, one with GSD_JIT=0 and one with
GSD_JIT=1, and everything observable (frame bytes, digests, decoded codes, error codes) is compared.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zlib

import numpy as np
import pytest

from codec import Decoder, Encoder, GsdError, Profile, compose, jit
from codec.attributes import ATTRS, Attr
from codec.synthetic import synthetic_scene
from codec.spatial import Grid

N = 800
FRAMES = 8


def _stream(name: str, degree: int, seed: int, shape: bool) -> dict:
    """Encode a random session (adds, updates of random masks, deletes, ranges, cells), decode it,
    compose consecutive deltas, corrupt frames; return digests of everything observable."""
    rng = np.random.default_rng(seed)
    g = synthetic_scene(N, degree, seed)
    enc = Encoder(Profile.preset(name, degree, Grid.fit(g.positions, cell_bits=6)), shape_rounding=shape)
    dec = Decoder(enc.header_bytes())
    h = hashlib.sha256()
    ids = enc.assign_ids(g.positions)
    frames = [enc.keyframe(g, ids)]
    live = {int(i): r for r, i in enumerate(ids)}
    deltas = []
    for f in range(FRAMES):
        keys = np.array(sorted(live), np.uint64)
        upd = rng.choice(keys, min(len(keys), 120), replace=False)
        rows = np.array([live[int(i)] for i in upd])
        vals = {Attr.POSITION: g.positions[rows] + rng.normal(0, 0.05, (len(rows), 3)).astype(np.float32),
                Attr.ROTATION: rng.normal(0, 1, (len(rows), 4)).astype(np.float32),
                Attr.SH_DC: g.sh_dc[rows] + rng.normal(0, 0.3, (len(rows), 3)).astype(np.float32)}
        mask = int(rng.choice([Attr.POSITION.bit, Attr.POSITION.bit | Attr.SH_DC.bit, Attr.ROTATION.bit | Attr.SH_DC.bit]))
        rest = np.setdiff1d(keys, upd)
        gone = rng.choice(rest, 20, replace=False)
        new_rows = rng.choice(N, 30)
        new = g.take(new_rows)
        new_ids = enc.assign_ids(new.positions)
        ops = {"update": (upd, vals, mask), "delete": gone, "add": (new_ids, new)}
        if f % 4 == 3:
            shift = np.uint64(enc.profile.grid.slot_bits + 3)
            ops["delete_cells"] = {1: np.setdiff1d(np.unique(rest[:5] >> shift), upd >> shift)}
        d = enc.make_delta(**ops)
        deltas.append(d)
        frames.append(enc.encode_delta(d))
        for i in gone:
            live.pop(int(i))
        for i, r in zip(new_ids, new_rows):
            live[int(i)] = r
        live = {i: r for i, r in live.items() if i in set(enc.state.ids().tolist())}
    for fr in frames:
        h.update(fr)
        dec.decode_frame(fr)
        h.update(str(dec.state.digest()).encode())
    ids_now, codes = dec.state.sorted_codes()
    h.update(ids_now.tobytes())
    for a in ATTRS:
        h.update(np.ascontiguousarray(codes[a]).tobytes())
    for d1, d2 in zip(deltas, deltas[1:]):
        c = compose(d1, d2, enc.profile)
        h.update(enc.frames.encode(c))
    errors = []
    base = Decoder(enc.header_bytes())
    base.decode_frame(frames[0])
    for k in range(40):
        fr = bytearray(frames[1])
        pos = int(rng.integers(12, len(fr) - 4))
        fr[pos] ^= 1 << int(rng.integers(0, 8))
        fr[-4:] = zlib.crc32(bytes(fr[:-4])).to_bytes(4, "little")
        try:
            trial = Decoder(enc.header_bytes())
            trial.decode_frame(frames[0])
            trial.decode_frame(bytes(fr))
            errors.append("ok " + str(trial.state.digest()))
        except GsdError as e:
            errors.append(e.code.name)
    return {"hash": h.hexdigest(), "digest": str(dec.state.digest()), "errors": errors}


CASES = [("compact", 3, 1, False), ("high", 1, 2, True), ("lossless", 2, 3, False), ("compact", 0, 4, True)]


def _run(mode: str) -> list:
    env = dict(os.environ, GSD_JIT=mode)
    out = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True, timeout=600,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


@pytest.mark.skipif(not jit.AVAILABLE, reason="numba is not installed: only the Python loops exist")
def test_compiled_and_python_loops_agree_on_random_streams():
    compiled, python = _run("1"), _run("0")
    assert [r["digest"] for r in compiled] == [r["digest"] for r in python]
    assert [r["errors"] for r in compiled] == [r["errors"] for r in python]
    assert [r["hash"] for r in compiled] == [r["hash"] for r in python]
    assert any(e != "ok" and not e.startswith("ok ") for r in python for e in r["errors"])


def test_position_and_rotation_dequantization_follow_the_spec_formulas():
    """The fused loops of Grid.positions_of and the rotation decode give, bit for bit, SPEC.md 5.2's
    formulas evaluated in float64 with numpy and rounded once to float32, compiled and as Python."""
    from codec.profile import _smallest_three_decode
    from codec.spatial import _positions, morton_decode

    rng = np.random.default_rng(5)
    grid = Grid((-40.5, -3.25, 7.0), 0.125, 9, 11)
    n = 50_000                                   # past LAZY_ELEMENTS: the JIT is on where available
    ids = np.sort(rng.integers(0, 1 << (3 * 9 + 11), n, dtype=np.uint64))
    codes = rng.integers(0, 1 << 16, (3, n)).astype(np.uint32)
    step = grid.cell_size / (1 << 16)
    cells = morton_decode(ids >> np.uint64(grid.slot_bits), grid.cell_bits).astype(np.float64)
    want = ((np.asarray(grid.origin) + cells * grid.cell_size) + codes.T.astype(np.float64) * step).astype(np.float32)
    got = grid.positions_of(ids, codes, step)
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
    py = np.empty((n, 3), np.float32)
    _positions.py_func(ids[:2000], codes[:, :2000], np.uint64(grid.slot_bits), np.asarray(grid.origin), grid.cell_size, step, py[:2000])
    assert np.array_equal(py[:2000].view(np.uint32), want[:2000].view(np.uint32))

    profile = Profile.preset("compact", 0, grid)
    bits = profile.quant.rotation_bits
    rc = np.empty((4, n), np.uint16)
    rc[0] = rng.integers(0, 4, n)
    rc[1:] = rng.integers(0, 1 << bits, (3, n))
    small = rc[1:].T.astype(np.float64) * (np.sqrt(2.0) / ((1 << bits) - 1)) - 1.0 / np.sqrt(2.0)
    q = np.empty((n, 4))
    rows = np.arange(n)
    for r in range(3):                           # the small components fill the places other than i, in order
        col = r + (r >= rc[0])
        q[rows, col] = small[:, r]
    q[rows, rc[0]] = np.sqrt(np.maximum(0.0, 1.0 - (small * small).sum(1)))
    got = profile.dequantize(Attr.ROTATION, rc, None)
    assert np.array_equal(got.view(np.uint32), q.astype(np.float32).view(np.uint32))
    py = np.empty((2000, 4), np.float32)
    assert not _smallest_three_decode.py_func(rc[:, :2000], bits, py)
    assert np.array_equal(py.view(np.uint32), q[:2000].astype(np.float32).view(np.uint32))
    rc[0, 7] = 4                                 # no such component: an error, not a read past the row
    with pytest.raises(ValueError):
        profile.dequantize(Attr.ROTATION, rc, None)


def test_affine_dequantization_follows_the_spec_formulas():
    """SCALE, SH_DC and SH_REST codes decode, bit for bit, to SPEC.md 5.3's ``lo + code * step``
    evaluated in float64 with numpy and rounded once to float32, compiled and as Python."""
    from codec.profile import _affine_decode

    rng = np.random.default_rng(6)
    profile = Profile.preset("compact", 3, Grid((0.0, 0.0, 0.0), 1.0, 9, 11))
    q, n = profile.quant, 50_000
    for attr in (Attr.SCALE, Attr.SH_DC, Attr.SH_REST):
        info = np.iinfo(profile.dtype(attr))
        codes = rng.integers(info.min, info.max + 1, (profile.comps(attr), n)).astype(profile.dtype(attr))
        c = codes.T.astype(np.float64)
        if attr is Attr.SCALE:
            want = q.scale_min + c * ((q.scale_max - q.scale_min) / ((1 << q.scale_bits) - 1))
        elif attr is Attr.SH_DC:
            want = q.dc_min + c * ((q.dc_max - q.dc_min) / ((1 << q.dc_bits) - 1))
        else:
            want = c * profile.rest_steps()
        want = want.astype(np.float32)
        assert np.array_equal(profile.dequantize(attr, codes, None).view(np.uint32), want.view(np.uint32))
        py = np.empty((2000, codes.shape[0]), np.float32)
        if attr is Attr.SH_REST:
            lo, step = 0.0, profile.rest_steps()
        elif attr is Attr.SCALE:
            lo, step = q.scale_min, np.full(3, (q.scale_max - q.scale_min) / ((1 << q.scale_bits) - 1))
        else:
            lo, step = q.dc_min, np.full(3, (q.dc_max - q.dc_min) / ((1 << q.dc_bits) - 1))
        _affine_decode.py_func(codes[:, :2000], lo, step, py)
        assert np.array_equal(py.view(np.uint32), want[:2000].view(np.uint32))


def test_lazy_switch_only_for_large_calls():
    """Small work stays in Python (no numba import for a tiny file); a large call turns the JIT on."""
    code = ("import numpy as np, sys; from codec import jit; from codec.digest import lane_sums_all;"
            "lane_sums_all(np.zeros((2, 10), np.uint32)); a = jit.is_on();"
            "lane_sums_all(np.zeros((2, 100000), np.uint32)); print(a, jit.is_on(), 'numba' in sys.modules)")
    env = dict(os.environ)
    env.pop("GSD_JIT", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr
    first, after, imported = out.stdout.split()
    assert first == "False"
    assert after == str(jit.AVAILABLE) and imported == str(jit.AVAILABLE)


def test_kernels_of_a_module_imported_after_the_switch_compile_and_call_each_other(tmp_path):
    """A module imported once the JIT is on (a server that decoded a large frame before loading the
    progressive join): its kernels compile at their first call, and one calls another compiled."""
    (tmp_path / "late_kernels.py").write_text(
        "import numpy as np\nfrom codec.jit import kernel\n\n"
        "@kernel(inline=True)\ndef twice(x):\n    return 2 * x\n\n"
        "@kernel\ndef fill(out):\n    for i in range(out.shape[0]):\n        out[i] = twice(i)\n")
    code = ("import numpy as np, sys; from codec import jit; jit.switch_on(); sys.path.insert(0, sys.argv[1]);"
            "import late_kernels as m; out = np.zeros(10, np.int64); m.fill(out);"
            "print(out.tolist() == [2 * i for i in range(10)], not isinstance(m.fill, jit.Kernel))")
    env = dict(os.environ)
    env.pop("GSD_JIT", None)
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, text=True,
                         timeout=300, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", str(jit.AVAILABLE)]


if __name__ == "__main__":
    print(json.dumps([_stream(*c) for c in CASES]))
