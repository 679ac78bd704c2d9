// Section decoding (SPEC.md 4.4): checks, decompress, unshuffle, read elements, unzigzag, delta.
import { fail } from './errors.mjs';
import { zstdDecompress } from './zstd.mjs';

/**
 * decode_section(Pl, s, C, n, w) of SPEC.md 4.4.
 * Returns, for w = 1, 2, 4, a Uint32Array of C*n unsigned values
 * (component j of element i at j*n + i); for w = 8 {lo, hi}: two Uint32Arrays.
 * `rawCache` (a Map, per frame) keeps decompressed bytes of sections referenced more than once.
 */
export function decodeSection(pl, s, index, C, n, w, rawCache) {
  if (s.width !== w) fail('MALFORMED', `section ${index}: width ${s.width}, role needs ${w}`);
  if (s.filters & 0xF8) fail('UNSUPPORTED_FEATURE', `section ${index}: filter bits ${s.filters}`);
  const N = C * n;
  if (s.raw !== N * w) fail('MALFORMED', `section ${index}: raw_size ${s.raw} != ${N * w}`);
  if (s.offset + s.stored > pl.length) fail('MALFORMED', `section ${index}: past the payload`);
  const stored = pl.subarray(s.offset, s.offset + s.stored);
  let raw;
  if (s.compression === 0) {
    if (s.stored !== s.raw) fail('MALFORMED', `section ${index}: stored_size != raw_size (uncompressed)`);
    raw = stored;
  } else if (s.compression === 1) {
    raw = rawCache && rawCache.get(index);
    if (!raw) {
      raw = zstdDecompress(stored, s.raw);   // a view of the wasm heap, valid until the next call
      if (rawCache) rawCache.set(index, raw.slice());
    }
  } else {
    fail('UNSUPPORTED_FEATURE', `section ${index}: compression ${s.compression}`);
  }
  const shuffle = (s.filters & 4) !== 0, zigzag = (s.filters & 2) !== 0, delta = (s.filters & 1) !== 0;
  if (w === 8) return decode64(raw, N, C, n, shuffle, zigzag, delta);
  // Always a Uint32Array (whatever w): the hot loops downstream then see one element kind.
  const u = new Uint32Array(N);
  if (w === 1) {
    u.set(raw.subarray(0, N));
  } else if (w === 2) {
    if (shuffle) for (let e = 0; e < N; e++) u[e] = raw[e] | (raw[N + e] << 8);
    else for (let e = 0, b = 0; e < N; e++, b += 2) u[e] = raw[b] | (raw[b + 1] << 8);
  } else if (shuffle) {
    const N2 = 2 * N, N3 = 3 * N;
    for (let e = 0; e < N; e++) u[e] = raw[e] | (raw[N + e] << 8) | (raw[N2 + e] << 16) | (raw[N3 + e] << 24);
  } else if ((raw.byteOffset & 3) === 0) {
    u.set(new Uint32Array(raw.buffer, raw.byteOffset, N));   // little-endian hosts (all browsers)
  } else {
    for (let e = 0, b = 0; e < N; e++, b += 4) u[e] = raw[b] | (raw[b + 1] << 8) | (raw[b + 2] << 16) | (raw[b + 3] << 24);
  }
  const mask = w === 4 ? -1 : (1 << (8 * w)) - 1;   // values mod 2^(8w)
  if (zigzag) for (let e = 0; e < N; e++) { const v = u[e]; u[e] = ((v >>> 1) ^ -(v & 1)) & mask; }
  if (delta) {
    for (let j = 0; j < C; j++) {
      const b = j * n;
      for (let i = 1; i < n; i++) u[b + i] = (u[b + i] + u[b + i - 1]) & mask;
    }
  }
  return u;
}

const LE = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
if (!LE) throw new Error('GSD decoder: big-endian hosts are not supported');

function decode64(raw, N, C, n, shuffle, zigzag, delta) {
  const lo = new Uint32Array(N), hi = new Uint32Array(N);
  if (shuffle) {
    for (let e = 0; e < N; e++) {
      lo[e] = raw[e] | (raw[N + e] << 8) | (raw[2 * N + e] << 16) | (raw[3 * N + e] << 24);
      hi[e] = raw[4 * N + e] | (raw[5 * N + e] << 8) | (raw[6 * N + e] << 16) | (raw[7 * N + e] << 24);
    }
  } else {
    for (let e = 0, b = 0; e < N; e++, b += 8) {
      lo[e] = raw[b] | (raw[b + 1] << 8) | (raw[b + 2] << 16) | (raw[b + 3] << 24);
      hi[e] = raw[b + 4] | (raw[b + 5] << 8) | (raw[b + 6] << 16) | (raw[b + 7] << 24);
    }
  }
  if (zigzag) {
    for (let e = 0; e < N; e++) {
      const l = lo[e], h = hi[e], neg = -(l & 1);
      lo[e] = ((l >>> 1) | (h << 31)) ^ neg;
      hi[e] = (h >>> 1) ^ neg;
    }
  }
  if (delta) {
    for (let j = 0; j < C; j++) {
      const b = j * n;
      for (let i = 1; i < n; i++) {
        const l = lo[b + i] + lo[b + i - 1];
        lo[b + i] = l;                                         // wraps mod 2^32
        hi[b + i] = hi[b + i] + hi[b + i - 1] + (l > 0xFFFFFFFF ? 1 : 0);
      }
    }
  }
  return { lo, hi };
}
