// Frame records written by the decoder's tests (SPEC 4.7): a parsed frame's metadata (flatbuf.mjs's
// readFrameMeta shape) written back with the vendored FlatBuffers builder, with sections appended to
// its payload (uncompressed), so that a test can turn a vector's frame into another one (its UPDATE
// and DELETE_IDS blocks into ranked ones, say) whose result it knows.
import { Builder } from '../vendor/flatbuffers/builder.js';
import { readFrameMeta } from '../decoder/flatbuf.mjs';
import { crc32 } from '../decoder/crc32.mjs';

const u32le = (u8, p) => (u8[p] | (u8[p + 1] << 8) | (u8[p + 2] << 16) | (u8[p + 3] << 24)) >>> 0;

/** {m (readFrameMeta's), payload (a copy)} of the frame record at the start of u8. */
export function parseRecord(u8) {
  const frameLen = u32le(u8, 4), metaLen = u32le(u8, 8);
  return { m: readFrameMeta(u8.subarray(12, 12 + metaLen)), payload: u8.slice(12 + metaLen, frameLen - 4) };
}

/** Frame metadata bytes of m: {seq, baseSeq, flags, requiredFeatures, digest, blocks, sections}. */
export function frameMeta(m) {
  const b = new Builder(1024);
  const blockOffs = m.blocks.map((blk) => {
    b.startVector(4, blk.sections.length, 4);
    for (let i = blk.sections.length - 1; i >= 0; i--) b.addInt32(blk.sections[i]);
    const secs = b.endVector();
    b.startObject(5);
    b.addFieldInt8(0, blk.kind, 0); b.addFieldInt32(1, blk.count, 0); b.addFieldInt8(2, blk.mask, 0);
    b.addFieldInt8(3, blk.level, 0); b.addFieldOffset(4, secs, 0);
    return b.endObject();
  });
  b.startVector(4, blockOffs.length, 4);
  for (let i = blockOffs.length - 1; i >= 0; i--) b.addOffset(blockOffs[i]);
  const blocks = b.endVector();
  b.startVector(16, m.sections.length, 4);
  for (let i = m.sections.length - 1; i >= 0; i--) {   // struct Section, its fields written last to first
    const s = m.sections[i];
    b.prep(4, 16);
    b.writeInt8(0); b.writeInt8(s.width); b.writeInt8(s.filters); b.writeInt8(s.compression);
    b.writeInt32(s.raw); b.writeInt32(s.stored); b.writeInt32(s.offset);
  }
  const sections = b.endVector();
  b.startObject(7);
  b.addFieldInt64(0, BigInt(m.seq), 0n); b.addFieldInt64(1, BigInt(m.baseSeq), 0n);
  b.addFieldInt32(2, m.flags, 0); b.addFieldInt64(3, BigInt(m.requiredFeatures || 0n), 0n);
  if (m.digest) {   // struct Digest, inline
    b.prep(8, 16);
    b.writeInt32(m.digest.lane1); b.writeInt32(m.digest.lane0); b.writeInt64(BigInt(m.digest.count));
    b.addFieldStruct(4, b.offset(), 0);
  }
  b.addFieldOffset(5, blocks, 0); b.addFieldOffset(6, sections, 0);
  b.finish(b.endObject());
  return b.asUint8Array().slice();
}

/** A frame record of metadata m and payload bytes, its CRC-32 correct. */
export function frameRecord(m, payload) {
  const meta = frameMeta(m), n = 12 + meta.length + payload.length + 4, out = new Uint8Array(n), dv = new DataView(out.buffer);
  out.set([0x47, 0x53, 0x44, 0x46]);
  dv.setUint32(4, n, true); dv.setUint32(8, meta.length, true);
  out.set(meta, 12); out.set(payload, 12 + meta.length);
  dv.setUint32(n - 4, crc32(out, 0, n - 4), true);
  return out;
}

/**
 * Appends a section of u32 values (ranks: one component) to {m, payload}: filters DELTA | SHUFFLE
 * (as the reference encoder writes ranks) or `filters`, uncompressed; returns its index.
 */
export function addU32Section(f, values, { filters = 5, width = 4 } = {}) {
  const n = values.length, raw = new Uint8Array(width * n), v = Uint32Array.from(values);
  if (filters & 1) for (let i = n - 1; i > 0; i--) v[i] = (v[i] - v[i - 1]) >>> 0;
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < width; k++) {
      const byte = k < 4 ? (v[i] >>> (8 * k)) & 0xFF : 0;
      raw[filters & 4 ? k * n + i : width * i + k] = byte;
    }
  }
  const payload = new Uint8Array(f.payload.length + raw.length);
  payload.set(f.payload); payload.set(raw, f.payload.length);
  f.m.sections.push({ offset: f.payload.length, stored: raw.length, raw: raw.length, compression: 0, filters, width });
  f.payload = payload;
  return f.m.sections.length - 1;
}

/** Record boundaries of a stream: [[start, end], ...], header first, up to the first record that does not fit. */
export function recordSpans(u8) {
  const out = [[0, 16 + u32le(u8, 8)]];
  for (let p = out[0][1]; p + 12 <= u8.length;) {
    const n = u32le(u8, p + 4);
    if (n < 16 || p + n > u8.length) break;
    out.push([p, p + n]);
    p += n;
  }
  return out;
}

/** Concatenates byte arrays. */
export function concat(parts) {
  const out = new Uint8Array(parts.reduce((s, x) => s + x.length, 0));
  let p = 0;
  for (const x of parts) { out.set(x, p); p += x.length; }
  return out;
}
