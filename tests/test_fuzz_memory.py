"""Bounded cost: decoding an input costs memory in proportion to what it really holds, within the limits.

Hostile streams of a few KB -- decompression bombs (a zstd frame of 1 GiB of zeros, with and without a
content size, declared as 64 raw bytes), a keyframe claiming 2^24 Gaussians (the id limit) whose
sections are zstd headers without data, counts and vector lengths claiming 2^31 -- fail with their
error while the decoder's memory stays small; an honest frame whose 16 MiB of ids are held in a few KB
may cost memory in proportion to those 16 MiB, not more. Measured:

- in Python: tracemalloc's peak (every numpy and bytes allocation) and the peak RSS over the decode
  (VmHWM after resetting it through /proc/self/clear_refs; the growth of ru_maxrss where that is not
  allowed), in a fresh interpreter whose decoder kernels are already loaded (they cost tens of MB once);
- in the JS decoder (node, --max-old-space-size=64): the peak RSS over the decode the same way
  (process.resourceUsage().maxRSS as the fallback), with the decoder's wasm kernel loaded first, and
  memoryUsage().external (wasm memory included).

tests/test_fuzz.py covers more 2^31 claims (tracemalloc); conformance/fuzz_structured.py's lowered
limits and resized blocks keep such claims in the fuzzer's inputs.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import zstandard

from conformance import craft
from conformance.craft import ADD, DELETE_IDS, BlockFields, FrameFields, HeaderFields, Section

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HF = HeaderFields(1, ((-8.0, -8.0, -8.0), 1.0, 4, 8), craft.QuantFields(rest_bits=(5,), rest_range=(0.9,)), "c")
MB = 1 << 20
HONEST_RAW = 8 * (1 << 21)     # 16 MiB of ids


def _frame(blocks, sections, payload, flags=0) -> bytes:
    return craft.frame_record(craft.frame_meta(FrameFields(1, 0, flags, 0, None, blocks, sections)), payload)


def _zeros_zstd(n: int, content_size: bool) -> bytes:
    """n zero bytes as one zstd frame, written in 1 MiB steps (no n-byte buffer here)."""
    c = zstandard.ZstdCompressor(level=1, write_content_size=content_size)
    if content_size:
        return craft.zstd_block_frame(n, [("rle", b"\0" * (1 << 17))] * (n >> 17))
    obj = c.compressobj()
    chunk = bytes(MB)
    return b"".join(obj.compress(chunk) for _ in range(n // MB)) + obj.flush()


def _streams() -> dict[str, tuple[bytes, str, int]]:
    """name -> (stream, expected error code or 'ok', memory the input really holds in bytes)."""
    out = {}
    one_id = [BlockFields(DELETE_IDS, 8, 0, 0, [0])]
    z = _zeros_zstd(1 << 30, True)
    out["bomb_1gib_declared_64_bytes"] = (_frame(one_id, [Section(0, len(z), 64, 1, 0, 8)], z),
                                          "DECOMPRESSION_FAILED", 64)
    z = _zeros_zstd(1 << 28, False)
    out["bomb_256mib_no_content_size"] = (_frame(one_id, [Section(0, len(z), 64, 1, 0, 8)], z),
                                          "DECOMPRESSION_FAILED", 64)
    # a keyframe claiming the id limit: ADD of 2^24 Gaussians, each section a zstd header declaring its
    # full raw size followed by 24 bytes of garbage (components: ids, position, scale, rotation, opacity,
    # dc, SH band 1 at degree 1, with HF's bit widths)
    n = 1 << 24
    secs, pl = [], b""
    for comps, width in ((1, 8), (3, 2), (3, 1), (4, 1), (1, 1), (3, 1), (9, 1)):
        zz = craft.zstd_header_only(comps * width * n) + bytes(range(24))
        secs.append(Section(len(pl), len(zz), comps * width * n, 1, 0, width))
        pl += zz
    out["keyframe_claims_2p24_gaussians"] = (_frame([BlockFields(ADD, n, 0, 0, list(range(7)))], secs, pl, flags=1),
                                             "DECOMPRESSION_FAILED", len(pl))
    # honest: 2^21 ids (all zero, so the id rules fail after decoding) held in a few KB
    zh = zstandard.ZstdCompressor(level=3).compress(bytes(HONEST_RAW))
    out["honest_16mib_of_ids"] = (_frame([BlockFields(DELETE_IDS, 1 << 21, 0, 0, [0])],
                                         [Section(0, len(zh), HONEST_RAW, 1, 0, 8)], zh), "DUPLICATE_ID", HONEST_RAW)
    return {k: (craft.header(HF) + f, code, holds) for k, (f, code, holds) in out.items()}


# peak memory allowed: hostile inputs a small constant; the honest one in proportion to its 16 MiB
BOUND = {"bomb_1gib_declared_64_bytes": 8 * MB, "bomb_256mib_no_content_size": 8 * MB,
         "keyframe_claims_2p24_gaussians": 8 * MB, "honest_16mib_of_ids": 4 * HONEST_RAW}

PY_PROBE = textwrap.dedent("""
    import gc, json, resource, sys, tracemalloc
    from codec import Decoder, GsdError
    from conformance import fuzz

    def status(key):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))

    def reset_peak():
        # Linux: writing 5 to clear_refs resets the peak RSS (VmHWM) to the current RSS
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return status("VmRSS:")
        except OSError:
            return None

    for vid, d, l in fuzz.load_corpus()[:150]:       # load the decoder's kernels first
        try:
            fuzz._execute(d, l)
        except Exception:
            pass
    out = {}
    for path in sys.argv[1:]:
        data = open(path, "rb").read()
        gc.collect()
        base = reset_peak()
        r0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        tracemalloc.start()
        dec = Decoder()
        pos = dec.set_header(data)
        try:
            dec.read_frame(memoryview(data)[pos:])
            code = "ok"
        except GsdError as e:
            code = e.code.name
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        r1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # peak RSS over the decode; without clear_refs, the growth of the process's peak (a lower bound
        # when an earlier peak was higher: cases run smallest expected cost first)
        rss = status("VmHWM:") - base if base is not None else (r1 - r0) * 1024
        out[path] = {"code": code, "traced": peak, "rss": rss}
    print(json.dumps(out))
""")

JS_PROBE = textwrap.dedent("""
    import { readFileSync, writeFileSync } from 'node:fs';
    import { Decoder, GsdError } from '%s';
    const status = (key) => 1024 * Number(readFileSync('/proc/self/status', 'utf8').split('\\n')
      .find((l) => l.startsWith(key)).split(/\\s+/)[1]);
    const data = new Uint8Array(readFileSync(process.argv[2]));
    const warm = new Decoder();
    warm.readHeader(data);
    warm.dispose();
    let base = null;
    try { writeFileSync('/proc/self/clear_refs', '5'); base = status('VmRSS:'); } catch { /* maxRSS instead */ }
    const r0 = process.resourceUsage().maxRSS, e0 = process.memoryUsage().external;
    const dec = new Decoder();
    const h = dec.readHeader(data);
    let code;
    try { dec.readFrame(data.subarray(h.used)); code = 'ok'; }
    catch (e) { code = e instanceof GsdError ? e.code : 'CRASH ' + e; }
    const r1 = process.resourceUsage().maxRSS, e1 = process.memoryUsage().external;
    const rss = base !== null ? status('VmHWM:') - base : (r1 - r0) * 1024;
    console.log(JSON.stringify({ code, rss, external: e1 - e0 }));
""") % os.path.join(ROOT, "reference_viewer", "decoder", "index.mjs")

ORDER = ["bomb_256mib_no_content_size", "bomb_1gib_declared_64_bytes", "keyframe_claims_2p24_gaussians",
         "honest_16mib_of_ids"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("memory")
    out = {}
    for name, (data, code, holds) in _streams().items():
        assert len(data) < 40_000, f"{name}: {len(data)} bytes"
        p = d / f"{name}.gsd"
        p.write_bytes(data)
        out[name] = (str(p), code, holds)
    return out


@pytest.fixture(scope="module")
def python_peaks(files):
    res = subprocess.run([sys.executable, "-c", PY_PROBE] + [files[n][0] for n in ORDER], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, check=True)
    got = json.loads(res.stdout.strip().splitlines()[-1])
    return {n: got[files[n][0]] for n in ORDER}


@pytest.mark.parametrize("name", ORDER)
def test_python_peak_rss_follows_what_the_input_holds(name, files, python_peaks, capsys):
    r = python_peaks[name]
    with capsys.disabled():
        print(f"\n  python {name}: {r['code']}, tracemalloc peak {r['traced'] / MB:.1f} MiB, "
              f"peak RSS +{r['rss'] / MB:.1f} MiB")
    assert r["code"] == files[name][1]
    assert r["rss"] <= BOUND[name], f"{name}: peak RSS grew {r['rss'] / MB:.1f} MiB"


@pytest.mark.parametrize("name", ["bomb_256mib_no_content_size", "bomb_1gib_declared_64_bytes",
                                  "honest_16mib_of_ids"])
def test_python_allocations_follow_what_the_input_holds(name, python_peaks):
    assert python_peaks[name]["traced"] <= BOUND[name], f"{python_peaks[name]['traced'] / MB:.1f} MiB"


def test_python_reserves_nothing_for_a_claim_its_sections_do_not_hold(python_peaks):
    assert python_peaks["keyframe_claims_2p24_gaussians"]["traced"] <= 8 * MB


@pytest.fixture(scope="module")
def js_peaks(files, tmp_path_factory):
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    probe = tmp_path_factory.mktemp("js") / "probe.mjs"
    probe.write_text(JS_PROBE)
    out = {}
    for name in ORDER:   # a fresh process each: maxRSS is the process's peak
        res = subprocess.run(["node", "--max-old-space-size=64", str(probe), files[name][0]], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr[-2000:]
        out[name] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


@pytest.mark.parametrize("name", ORDER)
def test_js_peak_rss_follows_what_the_input_holds(name, files, js_peaks, capsys):
    r = js_peaks[name]
    with capsys.disabled():
        print(f"\n  js {name}: {r['code']}, peak RSS +{r['rss'] / MB:.1f} MiB, "
              f"external (wasm memory) +{r['external'] / MB:.1f} MiB")
    assert r["code"] == files[name][1]
    assert r["rss"] <= BOUND[name], f"{name}: peak RSS grew {r['rss'] / MB:.1f} MiB"


@pytest.mark.parametrize("name", ["bomb_256mib_no_content_size", "bomb_1gib_declared_64_bytes",
                                  "honest_16mib_of_ids"])
def test_js_wasm_memory_follows_what_the_input_holds(name, js_peaks):
    assert js_peaks[name]["external"] <= BOUND[name], f"{js_peaks[name]['external'] / MB:.1f} MiB"


def test_js_reserves_nothing_for_a_claim_its_sections_do_not_hold(js_peaks):
    assert js_peaks["keyframe_claims_2p24_gaussians"]["external"] <= 8 * MB
