// Frame records written by the decoder's tests (SPEC 4.7): a parsed frame's metadata (flatbuf.mjs's
// readFrameMeta shape) written back with the vendored FlatBuffers builder, with sections appended to
// its payload (uncompressed or gap coded), so that a test can turn a vector's frame into another one
// (its UPDATE and DELETE_IDS blocks into ranked ones, its ascending sections gap coded, say) whose
// result it knows; the sections' roles (SPEC 4.4's table) and the gap code's encoder (4.4, format 1.4).
import { Builder } from '../vendor/flatbuffers/builder.js';
import { readFrameMeta } from '../decoder/flatbuf.mjs';
import { crc32 } from '../decoder/crc32.mjs';
import { ADD, UPDATE, PALETTE, ADD_IMPLICIT, UPDATE_RANKED } from '../decoder/frame.mjs';

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

/**
 * Appends the stored bytes of a section to {m, payload} with the descriptor fields desc
 * ({raw, compression, filters, width}); returns its index.
 */
export function addSection(f, bytes, desc) {
  const payload = new Uint8Array(f.payload.length + bytes.length);
  payload.set(f.payload); payload.set(bytes, f.payload.length);
  f.m.sections.push({ offset: f.payload.length, stored: bytes.length, ...desc });
  f.payload = payload;
  return f.m.sections.length - 1;
}

/**
 * [{si, C, n, w}]: the roles of block b's sections (SPEC 4.4's table) in a stream of profile p (a
 * Decoder's `profile`).
 */
export function sectionRoles(p, b) {
  const n = b.count, S = b.sections, out = [];
  if (b.kind === PALETTE) {
    out.push({ si: S[0], C: 1, n, w: 2 });
    for (let l = 1; l <= p.shDegree; l++) out.push({ si: S[l], C: 3 * (2 * l + 1), n, w: p.restWidth });
    return out;
  }
  if (b.kind !== ADD && b.kind !== UPDATE && b.kind !== ADD_IMPLICIT && b.kind !== UPDATE_RANKED) {
    return [{ si: S[0], C: b.kind === 4 ? 2 : 1, n, w: b.kind === 9 ? 4 : 8 }];
  }
  out.push({ si: S[0], C: 1, n, w: b.kind === UPDATE_RANKED ? 4 : 8 });
  const mask = b.kind === UPDATE || b.kind === UPDATE_RANKED ? b.mask : 0x3F;
  let k = 1;
  for (let a = b.kind === ADD_IMPLICIT ? 1 : 0; a < 5; a++) {
    if (mask & (1 << a)) out.push({ si: S[k++], C: p.attrComps[a], n, w: p.attrWidth[a] });
  }
  if ((mask & 0x20) && p.palette) out.push({ si: S[k++], C: 1, n, w: 2 });
  else if (mask & 0x20) for (let l = 1; l <= p.shDegree; l++) out.push({ si: S[k++], C: 3 * (2 * l + 1), n, w: p.attrWidth[5] });
  return out;
}

/**
 * {refs, first}: for each section of frame f (a parseRecord result) that the blocks of known kinds
 * reference, how many roles reference it and the first of them (sectionRoles), in a stream of
 * profile p. A test that rewrites a section in place takes only those referenced once.
 */
export function sectionUses(p, f) {
  const refs = new Map(), first = new Map();
  for (const blk of f.m.blocks) {
    if (blk.kind === 0 || blk.kind >= 10) continue;
    for (const r of sectionRoles(p, blk)) { refs.set(r.si, (refs.get(r.si) || 0) + 1); if (!first.has(r.si)) first.set(r.si, r); }
  }
  return { refs, first };
}

/**
 * The stored bytes of a gap-coded section (SPEC 4.4, compression 2, format 1.4) of the given gaps
 * (Numbers or BigInts >= 0) at order k, written from the spec's text with BigInt arithmetic: k, then
 * per gap v the Elias gamma code of q = (v >> k) + 1 (z zeros, then q's z + 1 bits) and v's k low
 * bits, most significant bit first, zero padding. Nothing is checked: gaps that make values past the
 * width, or a k past it, give the bytes a test of those rules needs.
 */
export function gapCodeOfGaps(gaps, k) {
  const bits = [];
  const put = (x, m) => { for (let j = m - 1; j >= 0; j--) bits.push(Number((x >> BigInt(j)) & 1n)); };
  for (const g of gaps) {
    const v = BigInt(g), q = (v >> BigInt(k)) + 1n, z = q.toString(2).length - 1;
    put(0n, z);
    put(q, z + 1);
    put(v & ((1n << BigInt(k)) - 1n), k);
  }
  const out = new Uint8Array(1 + Math.ceil(bits.length / 8));
  out[0] = k;
  bits.forEach((b, i) => { out[1 + (i >> 3)] |= b << (7 - (i & 7)); });
  return out;
}

/** The gaps of strictly ascending values (value 0 itself, then each value minus the one before, minus 1). */
export function gapsOf(values) {
  return values.map((x, i) => BigInt(x) - (i ? BigInt(values[i - 1]) + 1n : 0n));
}

/** The gap code of strictly ascending values at order k. */
export const gapCode = (values, k) => gapCodeOfGaps(gapsOf(values), k);

/** The order k < 8w that gives the fewest bytes for strictly ascending values (the first of equals). */
export function bestGapOrder(values, w) {
  let best = 0, size = Infinity;
  const gaps = gapsOf(values);
  for (let k = 0; k < 8 * w; k++) {
    let bits = 0;
    for (const v of gaps) bits += 2 * ((v >> BigInt(k)) + 1n).toString(2).length - 1 + k;
    if (bits < size) { size = bits; best = k; }
  }
  return best;
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
