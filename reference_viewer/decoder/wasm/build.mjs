#!/usr/bin/env node
// Builds reference_viewer/decoder/wasm/kernel.wasm: the decoder's kernel (kernel.ts, compiled with the
// AssemblyScript compiler of node_modules, the version pinned in package.json) and zstd's decoder (the
// reference C decoder as compiled to wasm by the zstddec package, node_modules/zstddec 0.3.4, its
// streaming build; BSD licence, reference_viewer/vendor/zstddec/LICENSE) merged into one module with one
// linear memory, so that zstd reads a frame's sections where the record was copied and writes them
// straight into the frame arena (no copy into or out of a heap of its own).
//
// zstd's module is rewritten (binaryen's wasm-dis / wasm-as / wasm-opt / wasm-merge from node_modules), checking that
// each rewrite applies exactly as many times as expected, so that a different zstddec build fails here
// instead of giving a wrong binary:
//   - its memory is imported from the kernel (the kernel's is exported), with the kernel's static data
//     and heap above ZSTD_REGION (asc --memoryBase): zstd keeps [0, ZSTD_REGION) for its static data
//     (from 1024), its 64 KiB stack and its malloc heap (from 69536, emscripten's sbrk);
//   - its sbrk sees a memory of ZSTD_REGION bytes that never grows (memory.size is the constant,
//     memory.grow fails), so a malloc of zstd can never reach the kernel's heap: it returns 0 (zstd:
//     memory_allocation error) when its region is full. The decoder makes one allocation there, its
//     decompression context (ZSTD_createDCtx, ~160 KB), and decompresses each frame in one pass
//     (ZSTD_decompressStream with the whole frame and an output of its exact size), which allocates
//     nothing;
//   - the import telling emscripten's JavaScript of a memory growth becomes an empty function, and the
//     exports the decoder does not call are dropped (memory, table, malloc, free).
// The .wasm is checked in, so serving the viewer needs no build step; `--check` rebuilds into a
// temporary folder and exits 1 when the result differs from the checked-in file
// (tests/test_viewer_decoder.py runs it).
//
//   node reference_viewer/decoder/wasm/build.mjs [--check]
import { execFileSync } from 'node:child_process';
import { readFileSync, mkdtempSync, rmSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, '..', '..', '..');
const NM = join(ROOT, 'node_modules');
const ASC = join(NM, 'assemblyscript', 'bin', 'asc.js');
const BIN = (tool) => join(NM, '.bin', tool);
const ZSTDDEC = join(NM, 'zstddec', 'dist', 'zstddec-stream.mjs');
/** Bytes at the bottom of the memory kept for zstd (static data, stack, malloc heap). */
export const ZSTD_REGION = 1 << 20;
// -O3: speed; runtime minimal: the TLSF heap (heap.alloc / heap.free), no automatic collection;
// abort= : a failed allocation traps (no imports at all); fixed-width SIMD (in every browser with
// WebGPU and in Node 16+); the kernel's data and heap above zstd's region
export const FLAGS = ['-O3', '--runtime', 'minimal', '--noAssert', '--use', 'abort=', '--enable', 'simd',
  '--memoryBase', String(ZSTD_REGION)];
// zstd's module is re-optimized for speed: zstddec builds it for size (emcc -Oz), which leaves the
// helpers of its hot loops (the bit stream's reload, per symbol batch of the Huffman and sequence
// decoders) as calls; binaryen inlines them (functions of up to 400 instructions, loops included):
// zstd ~10% faster on a keyframe's sections (98 -> 87 ms for 76 MB), where plain -O3 changed nothing
export const ZSTD_OPT = ['-O3', '--flexible-inline-max-function-size', '400', '--inline-functions-with-loops'];
// zstd's exports the decoder calls (the stack pointer's, to reset it after a trap)
const ZSTD_EXPORTS = ['ZSTD_createDCtx', 'ZSTD_freeDCtx', 'ZSTD_decompressStream', 'emscripten_stack_get_current',
  '_emscripten_stack_restore'];

/** Replaces each s-expression of wat starting with '(' + head by rep; exactly `want` of them. */
function replaceExpr(wat, head, rep, want) {
  let out = '', i = 0, n = 0;
  for (;;) {
    const k = wat.indexOf('(' + head, i);
    if (k < 0) break;
    let d = 0, j = k;
    for (; j < wat.length; j++) { if (wat[j] === '(') d++; else if (wat[j] === ')' && --d === 0) break; }
    out += wat.slice(i, k) + rep; i = j + 1; n++;
  }
  if (n !== want) throw new Error(`zstd rewrite: ${n} of (${head} ...), expected ${want}`);
  return out + wat.slice(i);
}
function replaceOnce(wat, re, rep) {
  const m = wat.match(new RegExp(re.source, re.flags.includes('g') ? re.flags : re.flags + 'g'));
  if (!m || m.length !== 1) throw new Error(`zstd rewrite: ${m ? m.length : 0} matches of ${re}, expected 1`);
  return wat.replace(re, rep);
}

function zstdModule(dir) {
  if (!existsSync(ZSTDDEC)) throw new Error(`${ZSTDDEC} missing: run npm ci`);
  const b64 = readFileSync(ZSTDDEC, 'utf8').match(/const wasm = "([A-Za-z0-9+/=]+)"/);
  if (!b64) throw new Error(`${ZSTDDEC}: no embedded wasm`);
  const orig = join(dir, 'zstddec.wasm'), wat = join(dir, 'zstd.wat'), out = join(dir, 'zstd.wasm');
  writeFileSync(orig, Buffer.from(b64[1], 'base64'));
  let t = execFileSync(BIN('wasm-dis'), ['-all', orig], { maxBuffer: 1 << 28 }).toString();
  const pages = ZSTD_REGION >>> 16;
  // sbrk: the memory is ZSTD_REGION bytes and cannot grow
  t = replaceExpr(t, 'memory.size)', `(i32.const ${pages})`, 2);
  t = replaceExpr(t, 'memory.grow', '(i32.const -1)', 1);
  // the memory: imported from the kernel, in place of the one import (emscripten's growth notice)
  t = replaceOnce(t, / \(import "env" "emscripten_notify_memory_growth" \(func \$fimport\$0 (?:\(type \$\d+\) )?\(param i32\)\)\)\n/,
    ` (import "kernel" "memory" (memory $0 ${pages}))\n`);
  t = replaceOnce(t, / \(memory \$0 \d+ \d+\)\n/, '');
  t = replaceOnce(t, /\)\s*$/, ' (func $fimport$0 (param $0 i32))\n)\n');
  const exports = [...t.matchAll(/ \(export "([^"]+)" \([^)]*\)\)\n/g)].map((m) => m[1]);
  for (const e of ZSTD_EXPORTS) if (!exports.includes(e)) throw new Error(`zstd rewrite: no export ${e}`);
  t = t.replace(/ \(export "([^"]+)" \([^)]*\)\)\n/g, (line, name) => (ZSTD_EXPORTS.includes(name) ? line : ''));
  writeFileSync(wat, t);
  const plain = join(dir, 'zstd-plain.wasm');
  execFileSync(BIN('wasm-as'), ['-all', wat, '-o', plain], { stdio: 'inherit' });
  execFileSync(BIN('wasm-opt'), ['-all', plain, ...ZSTD_OPT, '-o', out], { stdio: 'inherit' });
  return out;
}

function build(out) {
  if (!existsSync(ASC)) throw new Error(`${ASC} missing: run npm ci`);
  const dir = mkdtempSync(join(tmpdir(), 'gsd-kernel-build-'));
  try {
    const kernel = join(dir, 'kernel.wasm');
    execFileSync(process.execPath, [ASC, join(HERE, 'kernel.ts'), '-o', kernel, ...FLAGS], { cwd: ROOT, stdio: 'inherit' });
    const zstd = zstdModule(dir);
    execFileSync(BIN('wasm-merge'), ['-all', kernel, 'kernel', zstd, 'zstd', '-o', out], { stdio: 'inherit' });
    return readFileSync(out);
  } finally { rmSync(dir, { recursive: true, force: true }); }
}

const check = process.argv.includes('--check');
const target = join(HERE, 'kernel.wasm');
if (check) {
  const dir = mkdtempSync(join(tmpdir(), 'gsd-kernel-'));
  try {
    const fresh = build(join(dir, 'kernel.wasm'));
    const same = existsSync(target) && Buffer.compare(fresh, readFileSync(target)) === 0;
    console.log(same ? 'kernel.wasm matches kernel.ts and zstddec' : 'kernel.wasm differs from a build of kernel.ts and zstddec: run node reference_viewer/decoder/wasm/build.mjs');
    process.exitCode = same ? 0 : 1;
  } finally { rmSync(dir, { recursive: true, force: true }); }
} else {
  const bytes = build(target);
  writeFileSync(target, bytes);
  console.log(`wrote ${target} (${bytes.length} bytes)`);
}
