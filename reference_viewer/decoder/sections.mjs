// Section decoding (SPEC.md 4.4): checks, decompress (zstd reads the stored bytes from the record's
// copy in the frame arena and writes into the arena), then the kernel's unfilter (unshuffle,
// unzigzag, delta, channel) into the frame arena.
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
