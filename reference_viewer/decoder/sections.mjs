// Section decoding (SPEC.md 4.4): checks, decompress, unshuffle, read elements, unzigzag, delta.
import { fail } from './errors.mjs';
import { zstdDecompress } from './zstd.mjs';

/**
 * Scratch u32 memory for one frame's decoded sections: views handed out by take() are valid until
 * the next reset() (the decoder resets it at the start of every frame), so a delta's sections
 * allocate (and zero) nothing. A request larger than half the arena gets its own array.
 */
export class U32Arena {
  constructor(cap = 1 << 16, Type = Uint32Array) { this.T = Type; this.cap0 = cap; this.buf = new Type(cap); this.used = 0; }
  reset() {
    this.used = 0;
    if (this.buf.length > (1 << 22)) this.buf = new this.T(this.cap0);
  }
  take(N) {
    const buf = this.buf;
    if (N > (buf.length >> 1)) return new this.T(N);
    if (this.used + N > buf.length) { this.buf = new this.T(2 * buf.length); this.used = 0; return this.take(N); }
    const v = buf.subarray(this.used, this.used + N);
    this.used += N;
    return v;
  }
}

/**
 * decode_section(Pl, s, C, n, w) of SPEC.md 4.4.
 * Returns, for w = 1, 2, 4, a Uint32Array of C*n unsigned values
 * (component j of element i at j*n + i); for w = 8 {lo, hi}: two Uint32Arrays.
 * ctx: {arena: U32Arena (the outputs are its views), cache: Map (decompressed bytes of the sections
 * referenced more than once: those with refs[index] > 1), refs}.
 */
export function decodeSection(pl, s, index, C, n, w, ctx) {
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
    const shared = ctx.refs[index] > 1;
    raw = shared ? ctx.cache.get(index) : undefined;
    if (!raw) {
      raw = zstdDecompress(stored, s.raw);   // a view of the wasm heap, valid until the next call
      if (shared) ctx.cache.set(index, raw = raw.slice());
    }
  } else {
    fail('UNSUPPORTED_FEATURE', `section ${index}: compression ${s.compression}`);
  }
  const shuffle = (s.filters & 4) !== 0, zigzag = (s.filters & 2) !== 0, delta = (s.filters & 1) !== 0;
  if (w === 8) return decode64(raw, N, C, n, shuffle, zigzag, delta, ctx.arena);
  // Always a Uint32Array (whatever w): the hot loops downstream then see one element kind.
  const u = ctx.arena.take(N);
  if (w === 1) {
    u.set(raw.subarray(0, N));
  } else if (w === 2) {
    if (shuffle) for (let e = 0; e < N; e++) u[e] = raw[e] | (raw[N + e] << 8);
    else for (let e = 0, b = 0; e < N; e++, b += 2) u[e] = raw[b] | (raw[b + 1] << 8);
  } else if (shuffle) {
    const N2 = 2 * N, N3 = 3 * N;
    if (zigzag || delta) {   // one pass: read, unzigzag, prefix sum (mod 2^32)
      for (let j = 0; j < C; j++) {
        let prev = 0;
        for (let e = j * n, end = e + n; e < end; e++) {
          let v = raw[e] | (raw[N + e] << 8) | (raw[N2 + e] << 16) | (raw[N3 + e] << 24);
          if (zigzag) v = (v >>> 1) ^ -(v & 1);
          if (delta) v = prev = (v + prev) | 0;
          u[e] = v;
        }
      }
      return u;
    }
    for (let e = 0; e < N; e++) u[e] = raw[e] | (raw[N + e] << 8) | (raw[N2 + e] << 16) | (raw[N3 + e] << 24);
  } else if ((raw.byteOffset & 3) === 0) {
    u.set(new Uint32Array(raw.buffer, raw.byteOffset, N));   // little-endian hosts (all browsers)
  } else {
    for (let e = 0, b = 0; e < N; e++, b += 4) u[e] = raw[b] | (raw[b + 1] << 8) | (raw[b + 2] << 16) | (raw[b + 3] << 24);
  }
  if (!zigzag && !delta) return u;
  const mask = w === 4 ? -1 : (1 << (8 * w)) - 1;   // values mod 2^(8w)
  if (!delta) {
    for (let e = 0; e < N; e++) { const v = u[e]; u[e] = ((v >>> 1) ^ -(v & 1)) & mask; }
  } else if (!zigzag) {
    for (let j = 0; j < C; j++) {
      let prev = 0;
      for (let e = j * n, end = e + n; e < end; e++) u[e] = prev = (u[e] + prev) & mask;
    }
  } else {
    for (let j = 0; j < C; j++) {
      let prev = 0;
      for (let e = j * n, end = e + n; e < end; e++) { const v = u[e]; u[e] = prev = ((((v >>> 1) ^ -(v & 1)) & mask) + prev) & mask; }
    }
  }
  return u;
}

const LE = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
if (!LE) throw new Error('GSD decoder: big-endian hosts are not supported');

function decode64(raw, N, C, n, shuffle, zigzag, delta, arena) {
  const lo = arena.take(N), hi = arena.take(N);
  if (shuffle && delta && !zigzag) {   // ids (SPEC 6.1 writers: SHUFFLE | DELTA): one pass
    const N2 = 2 * N, N3 = 3 * N, N4 = 4 * N, N5 = 5 * N, N6 = 6 * N, N7 = 7 * N;
    for (let j = 0; j < C; j++) {
      let pl = 0, ph = 0;
      for (let e = j * n, end = e + n; e < end; e++) {
        const l = ((raw[e] | (raw[N + e] << 8) | (raw[N2 + e] << 16) | (raw[N3 + e] << 24)) >>> 0) + pl;
        const h = raw[N4 + e] | (raw[N5 + e] << 8) | (raw[N6 + e] << 16) | (raw[N7 + e] << 24);
        pl = l >>> 0;                                          // l < 2^33: >>> 0 is l mod 2^32
        ph = (h + ph + (l > 0xFFFFFFFF ? 1 : 0)) >>> 0;
        lo[e] = pl; hi[e] = ph;
      }
    }
    return { lo, hi };
  }
  if (shuffle) {
    const N2 = 2 * N, N3 = 3 * N, N4 = 4 * N, N5 = 5 * N, N6 = 6 * N, N7 = 7 * N;
    for (let e = 0; e < N; e++) {
      lo[e] = raw[e] | (raw[N + e] << 8) | (raw[N2 + e] << 16) | (raw[N3 + e] << 24);
      hi[e] = raw[N4 + e] | (raw[N5 + e] << 8) | (raw[N6 + e] << 16) | (raw[N7 + e] << 24);
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
      let pl = b < N ? lo[b] : 0, ph = b < N ? hi[b] : 0;
      for (let i = 1; i < n; i++) {
        const l = lo[b + i] + pl;                              // exact in f64
        const c = l > 0xFFFFFFFF ? 1 : 0;
        pl = lo[b + i] = l;                                    // stored mod 2^32
        pl >>>= 0;
        ph = hi[b + i] = (hi[b + i] + ph + c) >>> 0;
      }
    }
  }
  return { lo, hi };
}
