// Section decoding (SPEC.md 4.4): checks, decompress (zstd reads the stored bytes from the record's
// copy in the frame arena and writes into the arena), then the kernel's unfilter (unshuffle,
// unzigzag, delta, channel) into the frame arena; or, for a gap-coded section (compression 2, format
// 1.4), the kernel's gapDecode reads the values from their codes there straight into the frame arena.
import { fail } from './errors.mjs';
import { scan, zstdInto } from './zstd.mjs';
import { K, arena } from './kernel.mjs';

const LE = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
if (!LE) throw new Error('GSD decoder: big-endian hosts are not supported');

/**
 * decode_section(Pl, s, C, n, w) of SPEC.md 4.4 for section `index` of payload pl (a Uint8Array,
 * whose bytes are also at plAt in the kernel memory).
 * Returns the pointer (in the kernel memory, the frame arena) of C n elements of w bytes
 * (component j of element i at j n + i; w = 8: u64 ids), valid until the arena's next reset.
 * ctx: {cache: Map (raw bytes of the sections referenced more than once: refs[index] > 1), refs}.
 */
export function decodeSection(pl, plAt, s, index, C, n, w, ctx) {
  if (s.width !== w) fail('MALFORMED', `section ${index}: width ${s.width}, role needs ${w}`);
  if (s.filters & 0xF0) fail('UNSUPPORTED_FEATURE', `section ${index}: filter bits ${s.filters}`);
  const N = C * n;
  if (s.raw !== N * w) fail('MALFORMED', `section ${index}: raw_size ${s.raw} != ${N * w}`);
  if (s.offset + s.stored > pl.length) fail('MALFORMED', `section ${index}: past the payload`);
  // the gap code's conditions depend on the role, so they are checked at every reference (a section
  // shared by roles of C = 1 and C = 3 is cached after the first)
  if (s.compression === 2 && (C !== 1 || w === 8 || s.filters !== 0)) {
    fail('MALFORMED', `section ${index}: gap code needs C = 1, width 1, 2 or 4 and no filter (C ${C}, width ${w}, filters ${s.filters})`);
  }
  const stored = pl.subarray(s.offset, s.offset + s.stored);
  const shared = ctx.refs[index] > 1;
  let raw = shared ? ctx.cache.get(index) : undefined;
  if (raw === undefined) {
    if (s.compression === 0) {
      if (s.stored !== s.raw) fail('MALFORMED', `section ${index}: stored_size != raw_size (uncompressed)`);
      raw = arena.put(stored);
    } else if (s.compression === 1) {
      scan(stored, s.raw);   // first: the arena grows only for a frame whose blocks can make raw_size
      raw = arena.take(s.raw);
      zstdInto(stored, plAt + s.offset, s.raw, raw, true);
    } else if (s.compression === 2) {
      // the values themselves (filters are 0: returned as they are below)
      raw = gapDecode(stored, plAt + s.offset, n, w, index);
    } else {
      fail('UNSUPPORTED_FEATURE', `section ${index}: compression ${s.compression}`);
    }
    if (shared) ctx.cache.set(index, raw);
  }
  let f = s.filters;
  if (w === 1) f &= ~4;   // one byte plane: the shuffle changes nothing
  if (C % 3 !== 0) f &= ~8;   // CHANNEL needs three channels of C / 3 components
  if (f === 0) return raw;   // the kernels only read sections
  // in place unless shuffled (reads across planes) or shared (the raw bytes are read again)
  const dst = (f & 4) || shared ? arena.take(N * w) : raw;
  K.unfilter(raw, dst, C, n, w, f);
  return dst;
}

/** The kernel's gapDecode failures (1..5). */
const GAP_WHY = ['', 'a code past the stored bytes', 'a zero run longer than 8w - k', 'a value not below 2^(8w)',
  'whole bytes after the last code', 'a one bit in the padding'];

/**
 * gap_decode(stored, n, w) of SPEC.md 4.4 (compression 2, format 1.4; w is 1, 2 or 4) for the stored
 * bytes st (also at stAt in the kernel memory): byte 0 is the order k, then n exp-Golomb codes, which
 * the kernel's gapDecode reads (in wasm: 4,000 ranks of a 1M-id scene in ~22 us where this loop in
 * JavaScript took ~28 us and swung to ~43 us with V8's tiering; bench/gap_bench.mjs). Writes the n
 * values as w-byte little-endian elements into the frame arena and returns their pointer. Every
 * failure is DECOMPRESSION_FAILED: no byte k, k >= 8w, a zero run longer than 8w - k, a code past the
 * stored bytes, a value >= 2^(8w), a whole byte after the last code, a one bit in the padding.
 */
function gapDecode(st, stAt, n, w, index) {
  const len = st.length;
  const bad = (why) => fail('DECOMPRESSION_FAILED', `section ${index}: gap code: ${why}`);
  if (len < 1) bad('no order byte');
  const k = st[0], W = 8 * w;
  if (k >= W) bad(`order ${k} for ${W}-bit values`);
  // every code takes at least 1 + k bits: fewer than that are codes past the end, found before the
  // arena grows by n w bytes (so that memory follows the stored bytes, not raw_size)
  if (n * (1 + k) > 8 * (len - 1)) bad(`${n} codes of at least ${1 + k} bits in ${len - 1} bytes`);
  const out = arena.take(n * w);
  const r = K.gapDecode(stAt, len, n, k, w, out);
  if (r !== 0) bad(`${GAP_WHY[r]}${r <= 3 ? ` (code ${K.gapFailCode.value})` : ''}`);
  return out;
}
