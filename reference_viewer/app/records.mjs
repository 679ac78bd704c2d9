// Record framing helpers (SPEC.md 4.1-4.3, 7.4): split a .gsd file into records, read a frame's
// length and KEYFRAME flag without applying it, and format digests in text form.
import { readFrameMeta } from '../decoder/flatbuf.mjs';

const MAGIC_H = 0x47534448; // "GSDH"
const MAGIC_F = 0x47534446; // "GSDF"

const u32 = (u8, o) => (u8[o] | (u8[o + 1] << 8) | (u8[o + 2] << 16) | (u8[o + 3] << 24)) >>> 0;
const be32 = (u8, o) => ((u8[o] << 24) | (u8[o + 1] << 16) | (u8[o + 2] << 8) | u8[o + 3]) >>> 0;

/** Length a record announces in its prefix (header: 16 + body_len, frame: frame_len), or -1. */
export function recordLength(u8, o = 0) {
  if (u8.length - o < 12) return -1;
  const m = be32(u8, o);
  if (m === MAGIC_H) return 16 + u32(u8, o + 8);
  if (m === MAGIC_F) return u32(u8, o + 4);
  return -1;
}

/**
 * Split a stream file into { header: Uint8Array, frames: Uint8Array[], tail } (views into u8).
 * A record that does not fit is passed on whole (the decoder then reports TRUNCATED / BAD_MAGIC).
 */
export function splitStream(u8) {
  const recs = [];
  let o = 0;
  while (o < u8.length) {
    const n = recordLength(u8, o);
    if (n < 16 || o + n > u8.length) { recs.push(u8.subarray(o)); break; }
    recs.push(u8.subarray(o, o + n));
    o += n;
  }
  return { header: recs[0] ?? new Uint8Array(0), frames: recs.slice(1) };
}

/** {seq, baseSeq, keyframe} of a frame record from its metadata alone (no apply); null if unreadable. */
export function peekFrame(u8) {
  try {
    if (u8.length < 16 || be32(u8, 0) !== MAGIC_F) return null;
    const metaLen = u32(u8, 8);
    if (12 + metaLen > u8.length) return null;
    const meta = u8.slice(12, 12 + metaLen); // aligned copy
    const f = readFrameMeta(meta);
    return { seq: Number(f.seq), baseSeq: Number(f.baseSeq), keyframe: (Number(f.flags) & 1) === 1,
             digest: f.digest ? digestText(f.digest) : null };
  } catch (e) {
    return null;
  }
}

/** SPEC 7.4 text form of a digest given as text, {count, lane0, lane1} or [count, lane0, lane1]. */
export function digestText(d) {
  if (d == null) return null;
  if (typeof d === 'string') return d.toLowerCase();
  const [c, a, b] = Array.isArray(d) ? d : [d.count, d.lane0, d.lane1];
  const hex = (x) => (Number(x) >>> 0).toString(16).padStart(8, '0');
  return `${BigInt(c)}:${hex(a)}:${hex(b)}`;
}
