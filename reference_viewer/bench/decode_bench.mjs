#!/usr/bin/env node
// JS decode + apply timings of the reference viewer's decoder (Node), on streams built by Python
// the way bench/run.py builds its own (reference_viewer/bench/make_streams.py):
//   a. a 5,000-Gaussian mixed delta (3,000 moves, 1,000 recolours, 500 adds, 500 deletes) against
//      the n-Gaussian SH3 compact scene: each delta timed against the state the previous left; the
//      same deltas with ranked ids (UPDATE_RANKED, DELETE_RANKED: SPEC 6.1, format 1.2, what the
//      reference encoder sends), whose first delta also makes the decoder's live-id order, and a
//      keyframe into such a decoder (its order rebuilt);
//   b. the n-Gaussian SH3 compact keyframe into a fresh decoder.
// Every frame carries its digest and is verified (as the viewer does).
//
//   node reference_viewer/bench/decode_bench.mjs [--n 1000000] [--deltas 100] [--dir DIR] [--ranked-dir DIR]
//        [--reps 5] [--before REV] [--warm-passes 1] [--no-write]
// (each decoder first decodes the delta sequence --warm-passes times untimed, so that V8 has compiled its
// JavaScript and wasm with its optimizing tiers; then in each timed sequence the first 10 deltas are
// warm-up, untimed; the renderer's takeDirty() runs after every frame, untimed)
// --before REV also measures the decoder of git revision REV (its reference_viewer/ from `git archive`)
// in the same run, on the same streams, alternating with this one (keyframes in the order after,
// before, before, after, ...; the delta sequence after, before, before, after, each decoder disposed
// before the next starts): the table then has both.
// Each keyframe rep uses a new Decoder; the previous one is disposed first (as the viewer does when a
// session starts over), so its memory is reused; the first rep of the process also pays for fresh
// memory (page faults) and is reported on its own.
//
// Streams are generated into DIR (default: $TMPDIR/gsd-viewer-bench-compact-ck-<n>-<deltas>; the ranked
// ones into $TMPDIR/gsd-viewer-bench-compact-ck-ranked-<n>-<deltas>) with
// .venv/bin/python reference_viewer/bench/make_streams.py when missing. A --before revision that does
// not read ranked blocks has no figures in their rows. Writes the
// "## Decoder (Node)" section of reference_viewer/VIEWER_BENCH.md (other sections are kept).
import { existsSync, readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir, cpus, loadavg } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Decoder } from '../decoder/index.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, '..', '..');

// the name of the streams' cache: a new one when make_streams.py or the codec's output changes in a way
// that matters to the figures (compact: the profile pinned; ck: sections with zstd's content checksum)
const STREAMS = 'compact-ck';
const RANKED = 'compact-ck-ranked';

function args(argv) {
  const a = { n: 1_000_000, reps: 5, dir: null, rankedDir: null, write: true, warmup: 10, deltas: 100, before: null, passes: 1 };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    if (k === '--n') a.n = Number(argv[++i]);
    else if (k === '--reps') a.reps = Number(argv[++i]);
    else if (k === '--deltas') a.deltas = Number(argv[++i]);
    else if (k === '--dir') a.dir = argv[++i];
    else if (k === '--ranked-dir') a.rankedDir = argv[++i];
    else if (k === '--no-write') a.write = false;
    else if (k === '--before') a.before = argv[++i];
    else if (k === '--warm-passes') a.passes = Number(argv[++i]);
    else throw new Error(`unknown argument ${k}`);
  }
  a.dir ||= join(tmpdir(), `gsd-viewer-bench-${STREAMS}-${a.n}-${a.deltas}`);
  a.rankedDir ||= join(tmpdir(), `gsd-viewer-bench-${RANKED}-${a.n}-${a.deltas}`);
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

/** The Decoder class of git revision rev (its reference_viewer/ unpacked into a temporary directory). */
async function decoderAt(rev) {
  const dir = mkdtempSync(join(tmpdir(), 'gsd-viewer-before-'));
  const tar = execFileSync('git', ['archive', rev, 'reference_viewer'], { cwd: ROOT, maxBuffer: 1 << 30 });
  execFileSync('tar', ['-x', '-C', dir], { input: tar });
  const m = await import(pathToFileURL(join(dir, 'reference_viewer', 'decoder', 'index.mjs')).href);
  return m.Decoder;
}

/** The frame checks alone (F1..F13), state untouched (older revisions: a flag of readFrame). */
function checkOnly(dec, u8) {
  if (typeof dec.checkFrame === 'function') return dec.checkFrame(u8);
  dec._parseOnly = true;
  try { return dec.readFrame(u8); } finally { dec._parseOnly = false; }
}

/**
 * Deltas in sequence against one decoder, each against the state the previous left, appended to o
 * = {tDelta, cDelta (the process's CPU ms), tParse, tFirst (the first delta), tKey, counts}; the final
 * digest is checked; with o.tKey, the keyframe record kf[1] is then decoded into that decoder (its state, and
 * a live-id order if it has one, replaced) and timed; then the decoder is disposed (so that only one
 * scene is in memory, as in the viewer).
 */
function runDeltas(Dec, ds, a, info, o, kf = null) {
  const dec = new Dec();
  dec.readHeader(ds[0]);
  dec.readFrame(ds[1]);
  for (let k = 2; k < ds.length; k++) {
    if (k === 2 && o.tFirst) {   // (untimed in the main row: the warm-up deltas)
      const t = performance.now();
      dec.readFrame(ds[k]);
      o.tFirst.push(performance.now() - t);
      dec.store.takeDirty();
      continue;
    }
    // F1..F13 alone (framing, CRC, metadata, zstd, unfilter, id rules), untimed in the main row
    const tp = performance.now();
    checkOnly(dec, ds[k]);
    const dp = performance.now() - tp;
    if (k - 2 >= a.warmup) o.tParse.push(dp);
    const c = process.cpuUsage(), t = performance.now();
    const r = dec.readFrame(ds[k]);
    const dt = performance.now() - t, u = process.cpuUsage(c);
    if (k - 2 >= a.warmup) { o.tDelta.push(dt); o.cDelta.push((u.user + u.system) / 1000); }
    o.counts = r.counts;
    dec.store.takeDirty();   // as the renderer does after every frame (untimed)
  }
  if (dec.digestText() !== info.final_digest) throw new Error(`final digest ${dec.digestText()} != Python's ${info.final_digest}`);
  if (kf && o.tKey) {
    const t = performance.now();
    dec.readFrame(kf[1]);
    o.tKey.push(performance.now() - t);
  }
  if (dec.dispose) dec.dispose();
  return o;
}

/** Whether a decoder class reads ranked blocks (an older revision's may not): its first ranked delta. */
function readsRanked(Dec, rs) {
  const dec = new Dec();
  try {
    dec.readHeader(rs[0]); dec.readFrame(rs[1]); dec.readFrame(rs[2]);
    return true;
  } catch (e) {
    if (e.code === 'UNSUPPORTED_FEATURE') return false;
    throw e;
  } finally { if (dec.dispose) dec.dispose(); }
}

/**
 * One keyframe into a new decoder (the previous one disposed first); returns wall ms, and pushes the
 * process's CPU ms (all threads) for it onto prev.cpu.
 */
function keyframeOnce(Dec, kf, info, prev) {
  if (prev.dec && prev.dec.dispose) prev.dec.dispose();
  prev.dec = null;
  const d = new Dec();
  d.readHeader(kf[0]);
  const c = process.cpuUsage(), t = performance.now();
  d.readFrame(kf[1]);
  const ms = performance.now() - t, u = process.cpuUsage(c);
  (prev.cpu ||= []).push((u.user + u.system) / 1000);
  if (d.store.live !== info.n) throw new Error('keyframe did not decode to n Gaussians');
  prev.dec = d;
  return ms;
}

async function main() {
  const a = args(process.argv.slice(2));
  for (const [dir, ids] of [[a.dir, 'plain'], [a.rankedDir, 'ranked']]) {
    if (existsSync(join(dir, 'deltas.gsd'))) continue;
    const py = existsSync(join(ROOT, '.venv/bin/python')) ? join(ROOT, '.venv/bin/python') : 'python3';
    process.stderr.write(`generating streams into ${dir} (n = ${a.n}, ${ids} ids) ...\n`);
    execFileSync(py, [join(HERE, 'make_streams.py'), dir, '--n', String(a.n), '--deltas', String(a.deltas + a.warmup), '--ids', ids],
                 { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
  }
  const info = JSON.parse(readFileSync(join(a.dir, 'info.json'), 'utf8'));
  const infoR = JSON.parse(readFileSync(join(a.rankedDir, 'info.json'), 'utf8'));
  const ds = records(new Uint8Array(readFileSync(join(a.dir, 'deltas.gsd'))));
  const rs = records(new Uint8Array(readFileSync(join(a.rankedDir, 'deltas.gsd'))));
  // deltas.gsd starts with the same header and keyframe
  const kf = existsSync(join(a.dir, 'keyframe.gsd')) ? records(new Uint8Array(readFileSync(join(a.dir, 'keyframe.gsd')))) : ds.slice(0, 2);
  const Before = a.before ? await decoderAt(a.before) : null;
  const loads = [loadavg()];

  // b. keyframes (first: the cold run of each decoder), alternating between the decoders, which
  // goes first alternating too (after, before, before, after, ...)
  const key = { after: [], before: [] }, prevA = {}, prevB = {};
  for (let i = 0; i < a.reps; i++) {
    if (Before && i % 2 === 1) key.before.push(keyframeOnce(Before, kf, info, prevB));
    key.after.push(keyframeOnce(Decoder, kf, info, prevA));
    if (Before && i % 2 === 0) key.before.push(keyframeOnce(Before, kf, info, prevB));
  }
  for (const prev of [prevA, prevB]) if (prev.dec && prev.dec.dispose) prev.dec.dispose();
  prevA.dec = prevB.dec = null;
  loads.push(loadavg());
  // a. deltas, in sequence against one decoder at a time: first --warm-passes untimed sequences of each
  // decoder (its JavaScript and wasm functions reach V8's optimizing tiers: a decoder's first sequence
  // runs ~0.2 ms per delta slower), then the timed ones (with --before: after, before, before, after)
  for (let p = 0; p < a.passes; p++) {
    for (const which of Before ? [0, 1] : [0]) runDeltas(which === 0 ? Decoder : Before, ds, a, info, { tDelta: [], cDelta: [], tParse: [], counts: null });
  }
  const after = { tDelta: [], cDelta: [], tParse: [], tKey: [], counts: null };
  const before = Before ? { tDelta: [], cDelta: [], tParse: [], tKey: [], counts: null } : null;
  for (const which of Before ? [0, 1, 1, 0] : [0, 0]) {
    if (which === 0) runDeltas(Decoder, ds, a, info, after, kf); else runDeltas(Before, ds, a, info, before, kf);
  }
  // the same with ranked ids (the before decoder only where it reads them), then a keyframe into the
  // decoder, which rebuilds its live-id order
  const rankedBefore = Before && readsRanked(Before, rs) ? Before : null;
  const fresh = () => ({ tDelta: [], cDelta: [], tParse: [], tFirst: [], tKey: [], counts: null });
  for (let p = 0; p < a.passes; p++) for (const D of rankedBefore ? [Decoder, rankedBefore] : [Decoder]) runDeltas(D, rs, a, infoR, fresh());
  const afterR = fresh(), beforeR = rankedBefore ? fresh() : null;
  for (const which of rankedBefore ? [0, 1, 1, 0] : [0, 0]) {
    if (which === 0) runDeltas(Decoder, rs, a, infoR, afterR, rs); else runDeltas(rankedBefore, rs, a, infoR, beforeR, rs);
  }
  loads.push(loadavg());
  const sizes = ds.slice(2).map((x) => x.length), sizesR = rs.slice(2).map((x) => x.length);
  const counts = after.counts;

  const warm = (xs) => (xs.length > 1 ? xs.slice(1) : xs);
  const cell = (xs) => `${fmt(median(xs))} / ${fmt(Math.min(...xs))} ms`;
  const rowOf = (what, A, B, target, limit) => [what, B ? cell(B) : '-', cell(A), `${fmt(pct(A, 0.9))} ms`, `${A.length}`, target,
    limit === null ? '-' : median(A) <= limit ? 'met' : 'not met'];
  const full = info.n === 1_000_000;   // the targets are for the 1M scene
  const rows = [
    rowOf(`5k mixed delta decode + apply vs ${info.n.toLocaleString('en')} scene (SH3 compact)`, after.tDelta, before && before.tDelta,
      full ? '≤ 1 ms' : '-', full ? 1 : null),
    rowOf('... of which decode only (F1-F13: CRC, metadata, zstd, unfilter, id rules)', after.tParse, before && before.tParse, '-', null),
    rowOf(`the same deltas with ranked ids (UPDATE_RANKED, DELETE_RANKED), decode + apply`, afterR.tDelta, beforeR && beforeR.tDelta,
      full ? '≤ 1 ms' : '-', full ? 1 : null),
    rowOf('... of which decode only (F1-F13; the ranks resolve at apply)', afterR.tParse, beforeR && beforeR.tParse, '-', null),
    rowOf(`... a decoder's first ranked delta (its live-id order made from the ${info.n.toLocaleString('en')} ids)`, afterR.tFirst,
      beforeR && beforeR.tFirst, '-', null),
    rowOf(`the keyframe into a decoder that holds the scene after the deltas (a resync: two stores at once)`, after.tKey,
      before && before.tKey, '-', null),
    rowOf(`... after the ranked deltas: its live-id order rebuilt from the keyframe's ids too`, afterR.tKey, beforeR && beforeR.tKey, '-', null),
    rowOf(`${info.n.toLocaleString('en')}-Gaussian keyframe decode + apply (SH3 compact), new decoder, memory reused`,
      warm(key.after), Before ? warm(key.before) : null, full ? '≤ 250 ms' : '-', full ? 250 : null),
    [`... the first keyframe of the process (fresh memory: page faults)`, Before ? `${fmt(key.before[0])} ms` : '-', `${fmt(key.after[0])} ms`, '-', '1', '-', '-'],
  ];
  const header = ['what', `before${a.before ? ` (${a.before})` : ''}: median / min`, 'after: median / min', 'after: p90', 'samples', 'target', ''];
  const table = [header, header.map(() => '---'), ...rows].map((r) => `| ${r.join(' | ')} |`).join('\n');
  const la = (l) => l.map((x) => x.toFixed(1)).join(' / ');
  const env = `Node ${process.version}, ${cpus().length} × ${cpus()[0]?.model || '?'}; load average (1 / 5 / 15 min) ` +
              `${la(loads[0])} at the start, ${la(loads[1])} after the keyframes, ${la(loads[2])} at the end; ` +
              `delta frames ${Math.min(...sizes).toLocaleString('en')}–${Math.max(...sizes).toLocaleString('en')} bytes ` +
              `(ranked: ${Math.min(...sizesR).toLocaleString('en')}–${Math.max(...sizesR).toLocaleString('en')}) ` +
              `(ops per delta: ${counts.add} add, ${counts.update} update, ${counts.deleteIds} delete), keyframe ` +
              `${kf[1].length.toLocaleString('en')} bytes; digests verified on every frame; ` +
              `${after.tDelta.length} deltas, ${a.reps} keyframes per decoder. CPU time of the process per ` +
              `delta (median): ${fmt(median(after.cDelta))} ms${Before ? ` (before: ${fmt(median(before.cDelta))} ms)` : ''}, ` +
              `ranked ${fmt(median(afterR.cDelta))} ms, per ` +
              `keyframe (the runs after the first, median): ${fmt(median(warm(prevA.cpu)))} ms` +
              `${Before ? ` (before: ${fmt(median(warm(prevB.cpu)))} ms)` : ''}: other jobs on the machine stretch ` +
              `the wall-clock figures beyond it.`;
  console.log(table);
  console.log(env);
  if (!a.write) return;
  const section = ['## Decoder (Node)', '',
    'JavaScript + wasm decode + apply (`reference_viewer/decoder`: framing, CRC-32, FlatBuffers metadata, zstd (zstddec\'s',
    'build of its C decoder, merged into the kernel), unfilter, code validation, apply into the SceneStore including the',
    'dequantized float view the renderer uploads, GSD-HASH check; the loops in the wasm kernel `decoder/wasm/kernel.wasm`).',
    'Streams from `reference_viewer/bench/make_streams.py` (built like `bench/run.py`: `bench.scenes.DeltaRig`, compact',
    'profile, sections with zstd\'s content checksum).',
    'Wall-clock times, median / min.', '',
    table, '', env, '', NOTES, '',
    `Reproduce: \`node reference_viewer/bench/decode_bench.mjs --n ${info.n}${a.before ? ` --before ${a.before}` : ''}\``, ''].join('\n');
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

// What the table does not show (kept with the code that measures it).
const NOTES = readFileSync(join(HERE, 'decode_bench_notes.md'), 'utf8').trim();

await main();
