// One zstd frame -> exactly raw_size bytes, with the checks of SPEC.md 4.4:
// exactly one frame (magic FD2FB528; a skippable frame or anything after the frame fails),
// Frame_Content_Size present and == raw_size (checked before decompressing, so output is
// bounded by raw_size), no dictionary, window <= 2^27, every block inside the stored bytes,
// produced size == raw_size, and the content checksum (XXH64 low 32 bits) when the frame has one.
// Every failure, including any exception from fzstd, is DECOMPRESSION_FAILED.
//
// fzstd (vendored, unmodified) does not report how many bytes a compressed block produced, so:
//  - frames of raw and RLE blocks only are reassembled here, exactly;
//  - otherwise, when cheap enough, fzstd's streaming Decompress is run on a copy of the frame
//    whose header is rewritten (no single-segment flag, no content size, no checksum, a window
//    larger than raw_size or of at least 128 KiB, so no valid block is clipped); it hands over
//    every block's output, which is counted (and stopped as soon as it passes raw_size). (A
//    corrupt block claiming more than the 128 KiB block maximum is clipped by fzstd to 128 KiB.)
//  - very large frames (where the streaming decoder's window shifting would be quadratic) go
//    through fzstd.decompress, which writes into a buffer of the declared size; the size is then only bounded by the block
//    headers (known raw/RLE sizes plus at most 128 KiB per compressed block) and, if present,
//    by the content checksum. See zstdTuning.streamCostLimit.
import { decompress, Decompress } from '../vendor/fzstd/index.mjs';
import { GsdError, fail } from './errors.mjs';
import { xxh64 } from './xxh64.mjs';

const MAGIC = 0xFD2FB528;
const MAX_WINDOW = 2 ** 27;
const BLOCK_MAX = 128 * 1024;
/** Streaming path when window * blocks stays under streamCostLimit bytes of window copying (tests lower it). */
export const zstdTuning = { streamCostLimit: 256 * 1024 * 1024 };

const bad = (msg) => fail('DECOMPRESSION_FAILED', msg);

function le(u8, p, n) {
  let v = 0;
  for (let i = n - 1; i >= 0; i--) v = v * 256 + u8[p + i];
  return v;   // exact for n <= 6; callers handle 8
}

/** Parses and walks the frame; returns its layout. */
function scan(s, rawSize) {
  const len = s.length;
  if (len < 6) bad('not a zstd frame (too short)');
  if (le(s, 0, 4) !== MAGIC) bad('not a zstd frame (magic)');
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
  const dictSize = [0, 1, 2, 4][dictFlag];
  if (p + dictSize > len) bad('frame header truncated');
  if (dictSize && le(s, p, dictSize) !== 0) bad('frame needs a dictionary');
  p += dictSize;
  const fcsSize = fcsFlag === 0 ? single : [0, 2, 4, 8][fcsFlag];
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
  const headerEnd = p;
  const blockMax = Math.min(window, BLOCK_MAX);
  let known = 0, compressed = 0, blocks = 0;
  for (;;) {
    if (p + 3 > len) bad('block header past the end');
    const b = s[p] | (s[p + 1] << 8) | (s[p + 2] << 16);
    const last = b & 1, type = (b >> 1) & 3, size = b >>> 3;
    p += 3;
    blocks++;
    if (type === 3) bad('reserved block type');
    if (size > blockMax) bad('block larger than the maximum block size');
    const stored = type === 1 ? 1 : size;
    if (p + stored > len) bad('block past the end of the frame');
    if (type === 2) compressed++;
    else { known += size; if (known > rawSize) bad('content longer than declared'); }
    p += stored;
    if (last) break;
  }
  const blocksEnd = p;
  if (checksum) { if (p + 4 > len) bad('content checksum truncated'); p += 4; }
  if (p !== len) bad('bytes after the zstd frame');
  if (known + compressed * blockMax < rawSize) bad('content shorter than declared');
  return { window, headerEnd, blocksEnd, checksum, compressed, blocks };
}

function rawBlocks(s, f, out) {
  let p = f.headerEnd, o = 0;
  while (p < f.blocksEnd) {
    const b = s[p] | (s[p + 1] << 8) | (s[p + 2] << 16);
    const type = (b >> 1) & 3, size = b >>> 3;
    p += 3;
    if (type === 0) { out.set(s.subarray(p, p + size), o); p += size; } else { out.fill(s[p], o, o + size); p += 1; }
    o += size;
  }
  if (o !== out.length) bad('content shorter than declared');
}

function streamed(s, f, out) {
  // Window 2^(10+exp): at least the original window (matches reach that far back), capped at
  // what the content needs, and above raw_size when raw_size < 128 KiB, so that fzstd's block
  // buffer (min(window, 128 KiB)) holds one byte more than a valid frame can produce: a block
  // that overproduces is then counted, not clipped.
  const want = Math.min(Math.max(f.window, 1), out.length + 1);
  let exp = 0;
  while (2 ** (10 + exp) < want) exp++;
  const body = s.subarray(f.headerEnd, f.blocksEnd);
  const frame = new Uint8Array(6 + body.length);
  frame.set([0x28, 0xB5, 0x2F, 0xFD, 0x00, exp << 3]);
  frame.set(body, 6);
  let o = 0;
  const d = new Decompress((chunk) => {
    if (o + chunk.length > out.length) bad('content longer than declared');
    out.set(chunk, o);
    o += chunk.length;
  });
  d.push(frame, true);
  if (o !== out.length) bad('content shorter than declared');
}

/** Decompresses the stored bytes of one section (compression 1) into exactly rawSize bytes. */
export function zstdDecompress(stored, rawSize) {
  try {
    const f = scan(stored, rawSize);
    let out;
    if (f.compressed === 0) rawBlocks(stored, f, out = new Uint8Array(rawSize));
    else if (Math.max(f.window, BLOCK_MAX) * f.blocks <= zstdTuning.streamCostLimit) streamed(stored, f, out = new Uint8Array(rawSize));
    else {
      // fzstd sizes its output from the (checked) Frame_Content_Size. Not decompress(stored, out):
      // fzstd 0.1.1 compares that buffer with 1 (`w != 1`), which stringifies the whole array.
      out = decompress(stored);
      if (!(out instanceof Uint8Array) || out.length !== rawSize) bad('content size differs from raw_size');
    }
    if (f.checksum) {
      const want = le(stored, f.blocksEnd, 4);
      const got = Number(xxh64(out) & 0xFFFFFFFFn);
      if (want !== got) bad('content checksum mismatch');
    }
    return out;
  } catch (e) {
    if (e instanceof GsdError) throw e;
    throw new GsdError('DECOMPRESSION_FAILED', `zstd: ${e && e.message}`);
  }
}
