#!/usr/bin/env node
// Decode time of gap-coded rank sections (SPEC.md 4.4, compression 2, format 1.4) in the viewer's
// decoder (decoder/sections.mjs decodeSection: the wasm kernel's gapDecode): ranks drawn uniformly
// among a scene's live ids (a delta's UPDATE_RANKED block), stored at the order that gives the fewest
// bytes (coded by tests/frame_writer.mjs), already in the frame arena as in a frame; each decode
// writes the u32 ranks into the arena.
//
//   node reference_viewer/bench/gap_bench.mjs [--reps 15] [--inner 1000]
//
// Prints, per set, the stored size and the time per decode (median and min over reps of `inner`
// decodes, after 3000 untimed ones).
import { decodeSection } from '../decoder/sections.mjs';
import { arena, views } from '../decoder/kernel.mjs';
import { gapCode, bestGapOrder } from '../tests/frame_writer.mjs';

const a = { reps: 15, inner: 1000 };
for (let i = 2; i < process.argv.length; i++) {
  const k = process.argv[i];
  if (k === '--reps') a.reps = Number(process.argv[++i]);
  else if (k === '--inner') a.inner = Number(process.argv[++i]);
  else throw new Error(`unknown argument ${k}`);
}

let seed = 1;
function rnd() {   // mulberry32: [0, 1)
  seed = (seed + 0x6D2B79F5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
}
function ranks(m, live) {
  const s = new Set();
  while (s.size < m) s.add(Math.floor(rnd() * live));
  return [...s].sort((x, y) => x - y);
}

for (const [m, live] of [[4000, 1_000_000], [4000, 100_000], [4000, 10_000], [500, 1_000_000], [40_000, 1_000_000]]) {
  const values = ranks(m, live), k = bestGapOrder(values, 4), stored = gapCode(values, k);
  const s = { offset: 0, stored: stored.length, raw: 4 * m, compression: 2, filters: 0, width: 4 };
  arena.reset();
  const at = arena.put(stored), mark = arena.used;
  const run = () => { arena.used = mark; return decodeSection(stored, at, s, 0, 1, m, 4, { cache: new Map(), refs: [1] }); };
  const p = run(), got = views().u32.subarray(p / 4, p / 4 + m);
  if (!values.every((x, i) => got[i] === x)) throw new Error('wrong values');
  for (let i = 0; i < 3000; i++) run();
  const times = [];
  for (let r = 0; r < a.reps; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < a.inner; i++) run();
    times.push(Number(process.hrtime.bigint() - t0) / 1e3 / a.inner);
  }
  times.sort((x, y) => x - y);
  console.log(`${m} ranks among ${live} live ids: k ${k}, ${stored.length} bytes (${(8 * stored.length / m).toFixed(2)} bits per rank): ` +
    `${times[times.length >> 1].toFixed(1)} us per decode (median of ${a.reps}), min ${times[0].toFixed(1)} us`);
}
