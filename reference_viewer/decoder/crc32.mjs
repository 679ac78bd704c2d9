// CRC-32/ISO-HDLC (zlib, gzip, PNG), SPEC.md 4.8: the wasm kernel's slicing-by-16 (decoder/wasm/kernel.ts),
// fed through a scratch block of the kernel memory a chunk at a time.
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
