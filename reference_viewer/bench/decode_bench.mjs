#!/usr/bin/env node
// JS decode + apply timings of the reference viewer's decoder (Node), on streams built by Python
// the way bench/run.py builds its own (reference_viewer/bench/make_streams.py):
//   a. a 5,000-Gaussian mixed delta (3,000 moves, 1,000 recolours, 500 adds, 500 deletes) against
//      the n-Gaussian SH3 compact scene: each delta timed against the state the previous left;
//   b. the n-Gaussian SH3 compact keyframe into a fresh decoder.
// Every frame carries its digest and is verified (as the viewer does).
//
//   node reference_viewer/bench/decode_bench.mjs [--n 1000000] [--deltas 100] [--dir DIR] [--reps 5] [--no-write]
// (the first 10 deltas are warm-up, untimed; the renderer's takeDirty() runs after every frame, untimed)
//
// Streams are generated into DIR (default: $TMPDIR/gsd-viewer-bench-<n>-<deltas>) with
// .venv/bin/python reference_viewer/bench/make_streams.py when missing. Writes the
// "## Decoder (Node)" section of reference_viewer/VIEWER_BENCH.md (other sections are kept).
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir, cpus, loadavg } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Decoder } from '../decoder/index.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, '..', '..');

function args(argv) {
  const a = { n: 1_000_000, reps: 5, dir: null, write: true, warmup: 10, deltas: 100 };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    if (k === '--n') a.n = Number(argv[++i]);
    else if (k === '--reps') a.reps = Number(argv[++i]);
    else if (k === '--deltas') a.deltas = Number(argv[++i]);
    else if (k === '--dir') a.dir = argv[++i];
    else if (k === '--no-write') a.write = false;
    else throw new Error(`unknown argument ${k}`);
  }
  a.dir ||= join(tmpdir(), `gsd-viewer-bench-${a.n}-${a.deltas}`);
  return a;
}

const median = (xs) => { const s = [...xs].sort((x, y) => x - y); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const pct = (xs, q) => { const s = [...xs].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(q * s.length))]; };
const fmt = (ms) => (ms < 10 ? ms.toFixed(3) : ms < 100 ? ms.toFixed(2) : ms.toFixed(1));

function records(u8) {
  const u32 = (p) => (u8[p] | (u8[p + 1] << 8) | (u8[p + 2] << 16) | (u8[p + 3] << 24)) >>> 0;
  const out = [u8.subarray(0, 16 + u32(8))];
  for (let p = out[0].length; p < u8.length; p += u32(p + 4)) out.push(u8.subarray(p, p + u32(p + 4)));
  return out;
}

function main() {
  const a = args(process.argv.slice(2));
  if (!existsSync(join(a.dir, 'deltas.gsd'))) {
    const py = existsSync(join(ROOT, '.venv/bin/python')) ? join(ROOT, '.venv/bin/python') : 'python3';
    process.stderr.write(`generating streams into ${a.dir} (n = ${a.n}) ...\n`);
    execFileSync(py, [join(HERE, 'make_streams.py'), a.dir, '--n', String(a.n), '--deltas', String(a.deltas + a.warmup)],
                 { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
  }
  const info = JSON.parse(readFileSync(join(a.dir, 'info.json'), 'utf8'));
  const ds = records(new Uint8Array(readFileSync(join(a.dir, 'deltas.gsd'))));
  // deltas.gsd starts with the same header and keyframe
  const kf = existsSync(join(a.dir, 'keyframe.gsd')) ? records(new Uint8Array(readFileSync(join(a.dir, 'keyframe.gsd')))) : ds.slice(0, 2);

  // a. deltas, in sequence against one decoder
  const dec = new Decoder();
  dec.readHeader(ds[0]);
  dec.readFrame(ds[1]);
  const tDelta = [], tParse = [];
  let counts = null;
  for (let k = 2; k < ds.length; k++) {
    // F1..F13 alone (framing, CRC, metadata, zstd, unfilter, id rules), untimed in the main row
    const tp = performance.now();
    dec.checkFrame(ds[k]);
    const dp = performance.now() - tp;
    if (k - 2 >= a.warmup) tParse.push(dp);
    const t = performance.now();
    const r = dec.readFrame(ds[k]);
    const dt = performance.now() - t;
    if (k - 2 >= a.warmup) tDelta.push(dt);
    counts = r.counts;
    dec.store.takeDirty();   // as the renderer does after every frame (untimed)
  }
  if (dec.digestText() !== info.final_digest) throw new Error(`final digest ${dec.digestText()} != Python's ${info.final_digest}`);
  const sizes = ds.slice(2).map((x) => x.length);

  // b. keyframe into a fresh decoder
  const tKey = [];
  for (let i = 0; i < a.reps; i++) {
    const d = new Decoder();
    d.readHeader(kf[0]);
    const t = performance.now();
    d.readFrame(kf[1]);
    tKey.push(performance.now() - t);
    if (d.store.live !== info.n) throw new Error('keyframe did not decode to n Gaussians');
  }

  const rows = [
    [`5k mixed delta decode + apply vs ${info.n.toLocaleString('en')} scene (SH3 compact)`,
     `${fmt(median(tDelta))} ms`, `${fmt(Math.min(...tDelta))} ms`, `${fmt(pct(tDelta, 0.9))} ms`, `${tDelta.length} deltas`, '≤ 2 ms',
     median(tDelta) <= 2 ? 'met' : 'not met'],
    ['... of which decode only (F1-F13: CRC, metadata, zstd, unfilter, id rules)',
     `${fmt(median(tParse))} ms`, `${fmt(Math.min(...tParse))} ms`, `${fmt(pct(tParse, 0.9))} ms`, `${tParse.length} deltas`, '-', '-'],
    [`${info.n.toLocaleString('en')}-Gaussian keyframe decode + apply (SH3 compact)`,
     `${fmt(median(tKey))} ms`, `${fmt(Math.min(...tKey))} ms`, `${fmt(pct(tKey, 0.9))} ms`, `${tKey.length} runs`, '-', '-'],
  ];
  const header = ['what', 'median', 'min', 'p90', 'samples', 'target', ''];
  const table = [header, header.map(() => '---'), ...rows].map((r) => `| ${r.join(' | ')} |`).join('\n');
  const env = `Node ${process.version}, ${cpus().length} × ${cpus()[0]?.model || '?'}, load average ` +
              `${loadavg().map((x) => x.toFixed(1)).join(' / ')} at the end of the run; ` +
              `delta frames ${Math.min(...sizes).toLocaleString('en')}–${Math.max(...sizes).toLocaleString('en')} bytes ` +
              `(ops per delta: ${counts.add} add, ${counts.update} update, ${counts.deleteIds} delete), keyframe ` +
              `${kf[1].length.toLocaleString('en')} bytes; digests verified on every frame.`;
  let thp = 'unknown';
  try { thp = (readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8').match(/\[(\w+)\]/) || [])[1] || thp; } catch { /* not Linux */ }
  const notes = [
    'Where the time goes (per-phase timers, 100k and 20k scenes): the "decode only" row is framing, CRC-32,',
    'metadata verification, zstd (the vendored zstddec wasm, ~14 small sections per delta: ~0.35 ms of',
    'which little is the wasm call overhead, ~2.6 us a call, most is cold caches after the scene work),',
    'unfiltering into a per-frame arena and the id rules. The rest is apply + commit: ~5,500 random slot',
    'accesses (an id-table entry, the slot\'s row of 128 bytes at SH3 compact, its 256 bytes of floats; ~420',
    'MB at 1M SH3, so cache and TLB misses: this machine runs THP ' + thp + '), UPDATE codes (~1 ms for',
    '4,000), the ADDs\' 59 components (validity + lane sums ~0.3 ms, rows + floats at commit ~0.5 ms for',
    '500) and the UPDATEs\' floats (~0.4 ms). A 20k scene (all in cache) is only ~25% faster, so per-element',
    'JS compute on this machine (~3 ns for the simplest typed-array loop step) is most of it. The keyframe',
    'row includes first-touch page faults of that memory. Timings on a shared 2-core machine: medians move',
    'with its load; compare mins.',
  ].join('\n');
  console.log(table);
  console.log(env);
  if (!a.write) return;
  const section = ['## Decoder (Node)', '',
    'JavaScript decode + apply (`reference_viewer/decoder`: framing, CRC-32, FlatBuffers metadata, zstd via the',
    'vendored zstddec (wasm), unfilter, code validation, apply into the SceneStore including the dequantized float view the',
    'renderer uploads, GSD-HASH check). Streams from `reference_viewer/bench/make_streams.py` (built like',
    '`bench/run.py`: `bench.scenes.DeltaRig`, compact profile); times are medians.', '',
    table, '', env, '', notes, '',
    `Reproduce: \`node reference_viewer/bench/decode_bench.mjs --n ${info.n}\``, ''].join('\n');
  const path = join(HERE, '..', 'VIEWER_BENCH.md');
  let text = existsSync(path) ? readFileSync(path, 'utf8') : '# Reference viewer benchmarks\n\n';
  const start = text.indexOf('## Decoder (Node)');
  if (start >= 0) {
    const next = text.indexOf('\n## ', start + 3);
    text = text.slice(0, start) + section + (next >= 0 ? text.slice(next + 1) : '');
  } else {
    text = text.replace(/\s*$/, '\n\n') + section;
  }
  writeFileSync(path, text);
  console.log(`wrote ${path}`);
}

main();
