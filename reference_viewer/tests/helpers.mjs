// Shared by the unit tests: the conformance vectors (conformance/vectors) as test data.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { H_MARK } from '../decoder/store.mjs';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const VECTORS = join(ROOT, 'conformance', 'vectors');
export const manifest = JSON.parse(readFileSync(join(VECTORS, 'manifest.json'), 'utf8')).vectors;
export const vector = (id) => manifest.find((v) => v.id === id);
export const vectorBytes = (v) => new Uint8Array(readFileSync(join(VECTORS, (typeof v === 'string' ? vector(v) : v).file)));

/** Record boundaries of a stream: [[start, end], ...], header first (no validation beyond lengths). */
export function records(u8) {
  const u32 = (p) => (u8[p] | (u8[p + 1] << 8) | (u8[p + 2] << 16) | (u8[p + 3] << 24)) >>> 0;
  const out = [[0, 16 + u32(8)]];
  let p = out[0][1];
  while (p + 12 <= u8.length) { const n = u32(p + 4); if (n < 16 || p + n > u8.length) break; out.push([p, p + n]); p += n; }
  return out;
}

export function expectedLines(v) {
  const e = v.expected;
  if (e.result === 'invalid' && e.frame === -1) return [`header error ${e.error}`];
  const lines = ['header ok', ...e.digests.map((d, k) => `frame ${k} ok ${d}`)];
  if (e.result === 'invalid') lines.push(`frame ${e.frame} error ${e.error}`);
  return lines;
}

/** A decoder's state as tests compare it (a refused frame must leave it as it was): every row but its staging mark, the floats, the store's lists, the palette and the order. */
export function snapshot(dec) {
  const s = dec.store, rows = [];
  for (let slot = 0; slot < s.highWater; slot++) { const r = s.rows.slice(slot * s.R, (slot + 1) * s.R); r[H_MARK] = 0; rows.push(r); }
  return {
    seq: dec.seqBig, digest: dec.digestText(), live: s.live, highWater: s.highWater, generation: s.generation, rows,
    data: s.data.slice(0, s.highWater * s.stride), dirty: s.dirtyList.slice(), free: s.freeList.slice(),
    palette: s.paletteData ? s.paletteData.slice() : null, order: s.order ? [...s.order.toArray()] : null,
  };
}
