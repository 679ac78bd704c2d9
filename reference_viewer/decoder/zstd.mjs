// One zstd frame -> exactly raw_size bytes, with the checks of SPEC.md 4.4:
// exactly one frame (magic FD2FB528; a skippable frame or anything after the frame fails),
// Frame_Content_Size present and == raw_size (checked before decompressing, so output is
// bounded by raw_size), no dictionary, window <= 2^27, every block inside the stored bytes,
// produced size == raw_size, and the content checksum (XXH64 low 32 bits) when the frame has one.
// Every failure, including any exception from fzstd, is DECOMPRESSION_FAILED.
//
// fzstd (vendored; scripts/vendor_viewer_deps.sh appends one line exporting its frame-header and
// block readers) is driven block by block here, into one buffer of raw_size bytes: its block reader
// reports how many bytes each block produced (st.y), so content longer or shorter than declared,
// and a block producing more than the block maximum, are caught exactly (writes past the buffer's
// end are dropped by the typed array; the frame then fails). Frames of raw and RLE blocks only
// are reassembled here.
import { _rzfh as rzfh, _rzb as rzb } from '../vendor/fzstd/index.mjs';
import { GsdError, fail } from './errors.mjs';
import { xxh64 } from './xxh64.mjs';

const MAGIC = 0xFD2FB528;
const MAX_WINDOW = 2 ** 27;
const BLOCK_MAX = 128 * 1024;
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

function direct(s, f, rawSize) {
  const st = rzfh(s, 1);   // with a single-segment or sized frame: st.w = new Uint8Array(raw_size)
  if (typeof st !== 'object' || st.u !== rawSize || st.w.length < rawSize) bad('frame header');
  const out = st.w, blockMax = Math.min(f.window || rawSize, BLOCK_MAX);
  st.e = 0;
  while (!st.l) {
    const y0 = st.y;
    if (!rzb(s, st, out)) bad('block past the end of the frame');
    st.e = st.y;
    if (st.y > rawSize) bad('content longer than declared');
    if (st.y - y0 > blockMax) bad('block produced more than the maximum block size');
  }
  if (st.b !== f.blocksEnd) bad('blocks end where the frame scan did not');
  if (st.y !== rawSize) bad('content shorter than declared');
  return out.length === rawSize ? out : out.subarray(0, rawSize);
}

/** Decompresses the stored bytes of one section (compression 1) into exactly rawSize bytes. */
export function zstdDecompress(stored, rawSize) {
  try {
    const f = scan(stored, rawSize);
    let out;
    if (f.compressed === 0) rawBlocks(stored, f, out = new Uint8Array(rawSize));
    else out = direct(stored, f, rawSize);
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
