// One zstd frame -> exactly raw_size bytes, with the checks of SPEC.md 4.4, made here on the
// frame's own bytes before the wasm decoder sees them:
//   exactly one frame (magic FD2FB528; a skippable frame, or any byte after the frame, fails, also
//   for raw_size 0), no reserved header bit, a Dictionary_ID field absent or 0 (the header field
//   decides, whether or not the blocks need a dictionary), Frame_Content_Size present and == raw_size,
//   window <= 2^27 when the frame has a Window_Descriptor (SPEC 4.9 notes: MAY reject),
//   every block header inside the stored bytes, no reserved block type, no block larger than the
//   maximum block size, raw/RLE content never longer than declared, and enough blocks to produce
//   raw_size bytes at all.
// Then zstd's own decoder (zstddec: the reference C decoder compiled to wasm, vendored by
// scripts/vendor_viewer_deps.sh) decompresses the frame with ZSTD_decompress into a buffer of
// exactly raw_size bytes (dstCapacity = raw_size, so it cannot write more; one-shot decoding
// allocates no window, and runs in time linear in the input and output). It verifies the content
// checksum when the frame has one (XXH64, zstd's default), and its result must be exactly raw_size.
// Every failure, including a wasm error or an exhausted wasm heap, is DECOMPRESSION_FAILED.
//
// The input and output buffers live in the wasm heap and are reused from call to call (grown when
// needed): the returned Uint8Array is a view of that heap, valid until the next zstdDecompress call
// (callers copy what they keep).
import { ZSTDDecoder, _instance } from '../vendor/zstddec/zstddec.mjs';
import { GsdError, fail } from './errors.mjs';

await new ZSTDDecoder().init();   // top-level await: instantiates the embedded wasm once
const W = _instance.exports;
const { malloc, free, ZSTD_decompress, ZSTD_isError, memory } = W;

const MAGIC = 0xFD2FB528;
const MAX_WINDOW = 2 ** 27;
const BLOCK_MAX = 128 * 1024;
const bad = (msg) => fail('DECOMPRESSION_FAILED', msg);

function le(u8, p, n) {
  let v = 0;
  for (let i = n - 1; i >= 0; i--) v = v * 256 + u8[p + i];
  return v;   // exact for n <= 6; callers handle 8
}

/** Parses and walks the frame (throws DECOMPRESSION_FAILED); returns nothing. */
function scan(s, rawSize) {
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

// reused wasm-heap buffers (pointers, capacities) and a view of the heap
let inPtr = 0, inCap = 0, outPtr = 0, outCap = 0;
let heap = new Uint8Array(memory.buffer);

function ensure(inLen, outLen) {
  if (inLen > inCap) {
    if (inPtr) free(inPtr);
    inCap = 0;
    inPtr = malloc(Math.max(inLen, 65536));
    if (!inPtr) bad(`wasm heap exhausted (${inLen} bytes of input)`);
    inCap = Math.max(inLen, 65536);
  }
  if (outLen > outCap) {
    if (outPtr) free(outPtr);
    outCap = 0;
    outPtr = malloc(Math.max(outLen, 262144));
    if (!outPtr) bad(`wasm heap exhausted (${outLen} bytes of output)`);
    outCap = Math.max(outLen, 262144);
  }
  if (heap.buffer !== memory.buffer) heap = new Uint8Array(memory.buffer);   // after a growth
}

/**
 * Decompresses the stored bytes of one section (compression 1) into exactly rawSize bytes.
 * Returns a view of the wasm heap, valid until the next call.
 */
export function zstdDecompress(stored, rawSize) {
  try {
    scan(stored, rawSize);
    ensure(stored.length, rawSize);
    heap.set(stored, inPtr);
    const r = ZSTD_decompress(outPtr, rawSize, inPtr, stored.length);
    if (ZSTD_isError(r)) bad(`zstd error ${-r}`);
    if ((r >>> 0) !== rawSize) bad(`zstd produced ${r >>> 0} bytes, raw_size ${rawSize}`);
    if (heap.buffer !== memory.buffer) heap = new Uint8Array(memory.buffer);
    return heap.subarray(outPtr, outPtr + rawSize);
  } catch (e) {
    if (e instanceof GsdError) throw e;
    throw new GsdError('DECOMPRESSION_FAILED', `zstd: ${e && e.message}`);
  }
}

