// GSD-HASH (SPEC.md 7): per-Gaussian lane hashes over the record words, summed mod 2^32. The
// per-frame sums are the wasm kernel's (decoder/wasm/kernel.ts); here: constants, text, tools.
import { K } from './kernel.mjs';

/** The 32-bit finaliser of MurmurHash3 (7.2), the kernel's. */
export const fmix32 = (h) => K.fmix(h) >>> 0;

/** K_L[j] for j in 0..m-1 (7.2). */
export function laneConstants(m, L) {
  const k = new Uint32Array(m);
  for (let j = 0; j < m; j++) k[j] = (fmix32((Math.imul(j + 1, 0x9E3779B1) + (L ? 0x7F4A7C15 : 0)) >>> 0) | 1) >>> 0;
  return k;
}

const hex8 = (x) => (x >>> 0).toString(16).padStart(8, '0');

/** Text form (7.4). count: Number or BigInt. */
export function digestText(count, lane0, lane1) {
  return `${count}:${hex8(lane0)}:${hex8(lane1)}`;
}

/** Hash of one record given as words (w_0 .. w_{m-1}); returns [h0, h1]. For tests and tools. */
export function recordHashes(words) {
  const k0 = laneConstants(words.length, 0), k1 = laneConstants(words.length, 1);
  let s0 = 0, s1 = 0;
  for (let j = 0; j < words.length; j++) { s0 = (s0 + Math.imul(words[j], k0[j])) | 0; s1 = (s1 + Math.imul(words[j], k1[j])) | 0; }
  return [fmix32(s0 >>> 0), fmix32(s1 >>> 0), s0 >>> 0, s1 >>> 0];
}
