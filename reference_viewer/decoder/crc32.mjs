// CRC-32/ISO-HDLC (zlib, gzip, PNG), SPEC.md 4.8. Slicing-by-8 table driven.
const T = new Uint32Array(8 * 256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = (c & 1) ? (c >>> 1) ^ 0xEDB88320 : c >>> 1;
  T[n] = c >>> 0;
}
for (let n = 0; n < 256; n++) {
  let c = T[n];
  for (let t = 1; t < 8; t++) { c = T[c & 0xFF] ^ (c >>> 8); T[t * 256 + n] = c >>> 0; }
}

/** CRC-32 of bytes [start, end) of u8. */
export function crc32(u8, start = 0, end = u8.length) {
  let c = 0xFFFFFFFF, i = start;
  const n8 = end - ((end - start) & 7);
  for (; i < n8; i += 8) {
    const a = c ^ (u8[i] | (u8[i + 1] << 8) | (u8[i + 2] << 16) | (u8[i + 3] << 24));
    c = T[1792 + (a & 0xFF)] ^ T[1536 + ((a >>> 8) & 0xFF)] ^ T[1280 + ((a >>> 16) & 0xFF)] ^ T[1024 + (a >>> 24)]
      ^ T[768 + u8[i + 4]] ^ T[512 + u8[i + 5]] ^ T[256 + u8[i + 6]] ^ T[u8[i + 7]];
  }
  for (; i < end; i++) c = T[(c ^ u8[i]) & 0xFF] ^ (c >>> 8);
  return (c ^ 0xFFFFFFFF) >>> 0;
}
