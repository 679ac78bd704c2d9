// CRC-32/ISO-HDLC (zlib, gzip, PNG), SPEC.md 4.8: the wasm kernel's slicing-by-8 (decoder/wasm/kernel.ts).
import { K, views, alloc } from './kernel.mjs';

/** CRC-32 of the n bytes at pointer p of the kernel memory. */
export const crc32At = (p, n) => K.crc32(p, n) >>> 0;

/** CRC-32 of bytes [start, end) of u8 (copied into the kernel memory). */
export function crc32(u8, start = 0, end = u8.length) {
  const n = end - start, p = alloc(n, 'crc32');
  try {
    views().u8.set(u8.subarray(start, end), p);
    return crc32At(p, n);
  } finally { K.release(p); }
}
