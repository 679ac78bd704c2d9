#!/usr/bin/env node
// Builds reference_viewer/decoder/wasm/kernel.wasm from kernel.ts with the AssemblyScript compiler
// of node_modules (the version pinned in package.json). The .wasm is checked in, so serving the viewer
// needs no build step; `--check` rebuilds into a temporary file and exits 1 when it differs from the
// checked-in one (tests/test_viewer_decoder.py runs it).
//
//   node reference_viewer/decoder/wasm/build.mjs [--check]
import { execFileSync } from 'node:child_process';
import { readFileSync, mkdtempSync, rmSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, '..', '..', '..');
const ASC = join(ROOT, 'node_modules', 'assemblyscript', 'bin', 'asc.js');
// -O3: speed; runtime minimal: the TLSF heap (heap.alloc / heap.free), no automatic collection;
// abort= : a failed allocation traps (no imports at all); fixed-width SIMD (in every browser with
// WebGPU and in Node 16+)
export const FLAGS = ['-O3', '--runtime', 'minimal', '--noAssert', '--use', 'abort=', '--enable', 'simd'];

function build(out) {
  if (!existsSync(ASC)) throw new Error(`${ASC} missing: run npm ci`);
  execFileSync(process.execPath, [ASC, join(HERE, 'kernel.ts'), '-o', out, ...FLAGS], { cwd: ROOT, stdio: 'inherit' });
  return readFileSync(out);
}

const check = process.argv.includes('--check');
const target = join(HERE, 'kernel.wasm');
if (check) {
  const dir = mkdtempSync(join(tmpdir(), 'gsd-kernel-'));
  try {
    const fresh = build(join(dir, 'kernel.wasm'));
    const same = existsSync(target) && Buffer.compare(fresh, readFileSync(target)) === 0;
    console.log(same ? 'kernel.wasm matches kernel.ts' : 'kernel.wasm differs from a build of kernel.ts: run node reference_viewer/decoder/wasm/build.mjs');
    process.exitCode = same ? 0 : 1;
  } finally { rmSync(dir, { recursive: true, force: true }); }
} else {
  const bytes = build(target);
  writeFileSync(target, bytes);
  console.log(`wrote ${target} (${bytes.length} bytes)`);
}
