"""The reference viewer's JavaScript decoder (reference_viewer/decoder, an independent reading of SPEC.md).

1. the conformance runner over every vector with the Node testee must pass 100%;
2. the decoder's own `node --test` unit tests must pass;
3. the vendored runtime libraries must equal the node_modules copies they were made from
   (scripts/vendor_viewer_deps.sh), when node_modules exists;
4. every vector decodes alike inside headless Chromium (playwright-core), when both are installed;
5. the checked-in wasm kernel (decoder/wasm/kernel.wasm) is what its AssemblyScript source compiles to.
Everything skips, with the reason, when `node` is not on PATH.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from conformance import runner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VIEWER = os.path.join(ROOT, "reference_viewer")
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="node is not on PATH (the JS decoder needs Node 20+)")

# (vendored path under reference_viewer/vendor, its source under node_modules)
VENDORED = [
    ("zstddec/LICENSE", "zstddec/LICENSE"),  # of the zstd decoder merged into decoder/wasm/kernel.wasm
    *[(f"flatbuffers/{f}", f"flatbuffers/mjs/{f}") for f in
      ("flatbuffers.js", "constants.js", "utils.js", "builder.js", "byte-buffer.js", "encoding.js")],
    ("flatbuffers/LICENSE", "flatbuffers/LICENSE"),
]


@needs_node
def test_conformance_vectors_all_pass():
    impl = f"{NODE} {os.path.join(VIEWER, 'tools', 'testee.mjs')}"
    results = runner.run(impl, jobs=max(2, min(8, (os.cpu_count() or 2) * 2)), timeout=30.0)
    manifest = runner.load_manifest(runner.DEFAULT_VECTORS)["vectors"]
    assert len(results) == len(manifest) > 0
    failed = [(r.id, r.expected, r.got, r.detail) for r in results if r.status != "PASS"]
    assert not failed, f"{len(failed)} of {len(results)} vectors fail: {failed[:10]}"


@needs_node
def test_node_unit_tests():
    p = subprocess.run([NODE, "--test", os.path.join(VIEWER, "tests")], cwd=ROOT, capture_output=True,
                       text=True, timeout=240)
    assert p.returncode == 0, (p.stdout[-4000:] + p.stderr[-2000:])
    assert "# fail 0" in p.stdout


@needs_node
def test_vendored_files_match_node_modules():
    nm = os.path.join(ROOT, "node_modules")
    missing = [src for _, src in VENDORED if not os.path.isfile(os.path.join(nm, src))]
    if missing:
        pytest.skip(f"node_modules lacks {missing[0]} (run npm ci); cannot compare the vendored copies")
    for dst, src in VENDORED:
        d = os.path.join(VIEWER, "vendor", dst)
        assert os.path.isfile(d), f"reference_viewer/vendor/{dst} missing: run scripts/vendor_viewer_deps.sh"
        with open(d, "rb") as f1, open(os.path.join(nm, src), "rb") as f2:
            same = f1.read() == f2.read()
        assert same, f"reference_viewer/vendor/{dst} differs from node_modules/{src}: run scripts/vendor_viewer_deps.sh"


@needs_node
def test_vendored_modules_load_in_node():
    # the decoder imports the vendored copies by relative path; both must be plain ES modules
    code = ("import('./reference_viewer/decoder/index.mjs').then(m => { "
            "if (typeof m.Decoder !== 'function') process.exit(3); console.log('ok'); })")
    p = subprocess.run([NODE, "-e", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr[-2000:]


@needs_node
def test_wasm_kernel_matches_its_source():
    if not os.path.isfile(os.path.join(ROOT, "node_modules", "assemblyscript", "bin", "asc.js")):
        pytest.skip("node_modules/assemblyscript missing (run npm ci); cannot rebuild the wasm kernel")
    p = subprocess.run([NODE, os.path.join(VIEWER, "decoder", "wasm", "build.mjs"), "--check"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, (p.stdout[-2000:] + p.stderr[-2000:])


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@needs_node
def test_conformance_vectors_in_chromium():
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH")
    if not os.path.isfile(os.path.join(ROOT, "node_modules", "playwright-core", "index.mjs")):
        pytest.skip("node_modules/playwright-core missing (run npm ci)")
    p = subprocess.run([NODE, os.path.join(VIEWER, "tests", "browser_conformance.mjs"), CHROMIUM], cwd=ROOT,
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, (p.stdout[-3000:] + p.stderr[-3000:])
    assert '"fail":[]' in p.stdout


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
