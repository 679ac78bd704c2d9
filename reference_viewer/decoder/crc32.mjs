// CRC-32/ISO-HDLC (zlib, gzip, PNG), SPEC.md 4.8: the wasm kernel's slicing-by-16 (decoder/wasm/kernel.ts),
// fed through a scratch block of the kernel memory a chunk at a time, or (crc32Into) over a copy of the
// bytes that the caller keeps in the kernel memory, each chunk checked while it is in the cache.
import { K, views, alloc } from './kernel.mjs';

const CHUNK = 1 << 18;
let scratch = 0;

/** CRC-32 of bytes [start, end) of u8. */
export function crc32(u8, start = 0, end = u8.length) {
  if (!scratch) scratch = alloc(CHUNK, 'crc32');
  let c = 0xFFFFFFFF;
  for (let p = start; p < end; p += CHUNK) {
    const n = Math.min(CHUNK, end - p);
    views().u8.set(u8.subarray(p, p + n), scratch);
    c = K.crc32(c, scratch, n);
  }
  return (c ^ 0xFFFFFFFF) >>> 0;
}

/** Copies bytes [0, n) of u8 to dst in the kernel memory; returns the CRC-32 of bytes [0, end) (end <= n). */
export function crc32Into(u8, n, end, dst) {
  let c = 0xFFFFFFFF;
  for (let p = 0; p < n; p += CHUNK) {
    const k = Math.min(CHUNK, n - p);
    views().u8.set(u8.subarray(p, p + k), dst + p);
    if (p < end) c = K.crc32(c, dst + p, Math.min(k, end - p));
  }
  return (c ^ 0xFFFFFFFF) >>> 0;
}
