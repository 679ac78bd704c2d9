// One zstd frame -> exactly raw_size bytes, with the checks of SPEC.md 4.4, made here on the
// frame's own bytes before the wasm decoder sees them:
//   exactly one frame (magic FD2FB528; a skippable frame, or any byte after the frame, fails, also
//   for raw_size 0), no reserved header bit, a Dictionary_ID field absent or 0 (the header field
//   decides, whether or not the blocks need a dictionary), Frame_Content_Size present and == raw_size,
//   window <= 2^27 when the frame has a Window_Descriptor (SPEC 4.9 notes: MAY reject),
//   every block header inside the stored bytes, no reserved block type, no block larger than the
//   maximum block size, raw/RLE content never longer than declared, and enough blocks to produce
//   raw_size bytes at all.
// Then zstd's own decoder (the reference C decoder compiled to wasm by the zstddec package, merged
// into the decoder's kernel by decoder/wasm/build.mjs: one linear memory) decompresses the frame
// where it lies in the kernel memory straight into its destination there: ZSTD_decompressStream with
// one reused context (ZSTD_createDCtx once), the whole frame as input and an output of exactly
// raw_size bytes, which zstd decodes in one pass (it cannot write more; no window is allocated; time
// linear in the input and output). It verifies the content checksum when the frame has one (XXH64,
// zstd's default); the frame must be consumed entirely and give exactly raw_size bytes. Every failure,
// including a wasm error, is DECOMPRESSION_FAILED; after one the context is replaced by a fresh one
// (and zstd's stack pointer, which a trap would leave lower, is reset).
import { GsdError, fail } from './errors.mjs';
import { K, views, alloc } from './kernel.mjs';

const ZERR = 0xFFFFFF88;   // size_t results above (size_t)-120 are zstd error codes (ZSTD_isError)
let dctx = 0;
const sp0 = K.emscripten_stack_get_current();   // zstd's stack pointer between calls (a trap leaves it lower)
// ZSTD_inBuffer {src, size, pos} at io, ZSTD_outBuffer {dst, size, pos} at io + 12 (wasm32 size_t)
const io = alloc(24, 'zstd buffers');
function context() {
  if (!dctx) {
    dctx = K.ZSTD_createDCtx();
    if (!dctx) bad('no zstd context (its memory region is full)');
  }
  return dctx;
}
function dropContext() {
  K._emscripten_stack_restore(sp0);
  if (dctx) { try { K.ZSTD_freeDCtx(dctx); } catch { /* a broken context: its memory is lost */ } }
  dctx = 0;
}

const MAGIC = 0xFD2FB528;
const MAX_WINDOW = 2 ** 27;
const BLOCK_MAX = 128 * 1024;
const bad = (msg) => fail('DECOMPRESSION_FAILED', msg);

function le(u8, p, n) {
  let v = 0;
  for (let i = n - 1; i >= 0; i--) v = v * 256 + u8[p + i];
  return v;   // exact for n <= 6; callers handle 8
}

/**
 * Parses and walks the frame (throws DECOMPRESSION_FAILED); returns nothing. Its blocks must be able
 * to make rawSize bytes, so a caller that scans before reserving rawSize bytes reserves in proportion
 * to what the frame holds, not to what it claims.
 */
export function scan(s, rawSize) {
  const len = s.length;
  if (len < 6) bad('not a zstd frame (too short)');
  if ((s[0] | (s[1] << 8) | (s[2] << 16) | (s[3] << 24)) >>> 0 !== MAGIC) bad('not a zstd frame (magic)');
  const fhd = s[4];
  const fcsFlag = fhd >> 6, single = (fhd >> 5) & 1, checksum = (fhd >> 2) & 1, dictFlag = fhd & 3;
  if (fhd & 8) bad('reserved frame header bit set');
  let p = 5;
  let window = 0;
  if (!single) {
    const wd = s[p++];
    const base = 2 ** (10 + (wd >> 3));
    window = base + (base / 8) * (wd & 7);
    if (window > MAX_WINDOW) bad(`window ${window} above 2^27`);
  }
  const dictSize = dictFlag === 3 ? 4 : dictFlag;
  if (p + dictSize > len) bad('frame header truncated');
  if (dictSize && le(s, p, dictSize) !== 0) bad('frame needs a dictionary');
  p += dictSize;
  const fcsSize = fcsFlag === 0 ? single : fcsFlag === 3 ? 8 : 2 * fcsFlag;
  if (fcsSize === 0) bad('Frame_Content_Size missing');
  if (p + fcsSize > len) bad('frame header truncated');
  let fcs;
  if (fcsSize === 8) {
    if (le(s, p + 4, 4) !== 0) bad('Frame_Content_Size != raw_size');
    fcs = le(s, p, 4);
  } else {
    fcs = le(s, p, fcsSize) + (fcsSize === 2 ? 256 : 0);
  }
  p += fcsSize;
  if (fcs !== rawSize) bad(`Frame_Content_Size ${fcs} != raw_size ${rawSize}`);
  if (single) window = fcs;
  const blockMax = Math.min(window, BLOCK_MAX);
  let known = 0, compressed = 0;
  for (;;) {
    if (p + 3 > len) bad('block header past the end');
    const b = s[p] | (s[p + 1] << 8) | (s[p + 2] << 16);
    const last = b & 1, type = (b >> 1) & 3, size = b >>> 3;
    p += 3;
    if (type === 3) bad('reserved block type');
    if (size > blockMax) bad('block larger than the maximum block size');
    const stored = type === 1 ? 1 : size;
    if (p + stored > len) bad('block past the end of the frame');
    if (type === 2) compressed++;
    else { known += size; if (known > rawSize) bad('content longer than declared'); }
    p += stored;
    if (last) break;
  }
  if (checksum) { if (p + 4 > len) bad('content checksum truncated'); p += 4; }
  if (p !== len) bad('bytes after the zstd frame');
  if (known + compressed * blockMax < rawSize) bad('content shorter than declared');
}

/**
 * Decompresses the zstd frame `stored` (a Uint8Array, read by the checks), whose bytes are also at
 * `src` in the kernel memory, into exactly rawSize bytes at `dst` in the kernel memory (`scanned`:
 * the caller has already run scan on it).
 */
export function zstdInto(stored, src, rawSize, dst, scanned = false) {
  if (!scanned) scan(stored, rawSize);
  try {
    const u = views().u32, w = io >> 2, d = context();
    u[w] = src; u[w + 1] = stored.length; u[w + 2] = 0;
    u[w + 3] = dst; u[w + 4] = rawSize; u[w + 5] = 0;
    const r = K.ZSTD_decompressStream(d, io + 12, io) >>> 0;
    if (r > ZERR) { dropContext(); bad(`zstd error ${(-r) >>> 0 & 0xFF}`); }
    const v = views().u32;
    if (r !== 0 || v[w + 2] !== stored.length || v[w + 5] !== rawSize) {
      dropContext();
      bad(`zstd produced ${v[w + 5]} bytes of ${rawSize} from ${v[w + 2]} of ${stored.length}`);
    }
  } catch (e) {
    if (e instanceof GsdError) throw e;
    dropContext();
    throw new GsdError('DECOMPRESSION_FAILED', `zstd: ${e && e.message}`);
  }
}

// scratch blocks of the kernel memory for zstdDecompress, grown when needed
let inPtr = 0, inCap = 0, outPtr = 0, outCap = 0;

/**
 * Decompresses the stored bytes of one section (compression 1) into exactly rawSize bytes.
 * Returns a view of the kernel memory, valid until the next call (callers copy what they keep).
 */
export function zstdDecompress(stored, rawSize) {
  scan(stored, rawSize);
  if (stored.length > inCap || rawSize > outCap) {
    const ni = Math.max(stored.length, inCap, 65536), no = Math.max(rawSize, outCap, 65536);
    const a = alloc(ni, 'zstd input'), b = alloc(no, 'zstd output');
    if (inPtr) { K.release(inPtr); K.release(outPtr); }
    inPtr = a; inCap = ni; outPtr = b; outCap = no;
  }
  views().u8.set(stored, inPtr);
  zstdInto(stored, inPtr, rawSize, outPtr);
  return views().u8.subarray(outPtr, outPtr + rawSize);
}
