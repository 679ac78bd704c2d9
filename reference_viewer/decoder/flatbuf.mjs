// Hand-written FlatBuffers reader for the two root tables of codec/schema/gsd.fbs
// (StreamHeader, Frame), on the flatbuffers runtime's ByteBuffer. No generated code.
//
// SPEC.md 4.5: the buffer is verified before any field is read: every table's vtable, every
// scalar or struct field, every offset, vector and string must lie inside the buffer
// (what the FlatBuffers verifier checks; alignment is not checked, since records are not
// aligned in a stream and ByteBuffer reads bytewise). Any failure -> MALFORMED.
import { ByteBuffer } from '../vendor/flatbuffers/byte-buffer.js';
import { GsdError, fail } from './errors.mjs';

class Reader {
  constructor(u8) {
    this.bb = new ByteBuffer(u8);
    this.n = u8.length;
  }
  need(pos, size, what) {
    if (!(pos >= 0 && size >= 0 && pos + size <= this.n)) fail('MALFORMED', `${what} outside the metadata`);
  }
  u8(p) { return this.bb.readUint8(p); }
  u16(p) { return this.bb.readUint16(p); }
  u32(p) { return this.bb.readUint32(p); }
  f32(p) { return this.bb.readFloat32(p); }
  u64(p) { return this.bb.readUint64(p); }   // BigInt

  /** Verifies the table at absolute position t; returns a table handle. */
  table(t, what) {
    this.need(t, 4, `${what} table`);
    const vt = t - this.bb.readInt32(t);
    this.need(vt, 4, `${what} vtable`);
    const vsize = this.u16(vt), tsize = this.u16(vt + 2);
    if (vsize < 4 || (vsize & 1)) fail('MALFORMED', `${what} vtable size ${vsize}`);
    this.need(vt, vsize, `${what} vtable`);
    if (tsize < 4) fail('MALFORMED', `${what} table size ${tsize}`);
    this.need(t, tsize, `${what} table`);
    return { t, vt, vsize, what };
  }
  /** Absolute position of field `id` of table h, or 0 when absent. The field's bytes are checked. */
  field(h, id, size) {
    const o = 4 + 2 * id;
    if (o + 2 > h.vsize) return 0;
    const off = this.u16(h.vt + o);
    if (off === 0) return 0;
    this.need(h.t + off, size, `${h.what} field ${id}`);
    return h.t + off;
  }
  scalarU8(h, id) { const p = this.field(h, id, 1); return p ? this.u8(p) : 0; }
  scalarU32(h, id) { const p = this.field(h, id, 4); return p ? this.u32(p) : 0; }
  scalarF32(h, id) { const p = this.field(h, id, 4); return p ? this.f32(p) : 0; }
  scalarU64(h, id) { const p = this.field(h, id, 8); return p ? this.u64(p) : 0n; }
  /** Target of an offset field, or 0 when absent. */
  ref(h, id) {
    const p = this.field(h, id, 4);
    if (!p) return 0;
    const o = this.u32(p);
    if (o === 0) fail('MALFORMED', `${h.what} field ${id}: uoffset 0 (an offset never points to itself)`);
    const target = p + o;
    this.need(target, 0, `${h.what} field ${id} target`);
    return target;
  }
  /** Vector field: {start, length} of elements of elemSize bytes (absent: empty). */
  vector(h, id, elemSize) {
    const v = this.ref(h, id);
    if (!v) return { start: 0, length: 0 };
    this.need(v, 4, `${h.what} vector ${id} length`);
    const length = this.u32(v);
    this.need(v + 4, length * elemSize, `${h.what} vector ${id}`);
    return { start: v + 4, length };
  }
  string(h, id) {
    const v = this.ref(h, id);
    if (!v) return '';
    this.need(v, 4, `${h.what} string ${id} length`);
    const length = this.u32(v);
    this.need(v + 4, length + 1, `${h.what} string ${id}`);  // + the terminating 0
    if (this.u8(v + 4 + length) !== 0) fail('MALFORMED', `${h.what} string ${id}: terminator byte not 0`);
    return new TextDecoder('utf-8', { fatal: false }).decode(this.bb.bytes().subarray(v + 4, v + 4 + length));
  }
  root(what) {
    if (this.n < 8) fail('MALFORMED', `${what} metadata shorter than a FlatBuffers root`);
    if (this.u32(0) === 0) fail('MALFORMED', `${what} metadata: root uoffset 0`);
    return this.table(this.u32(0), what);
  }
}

function guard(fn) {
  try {
    return fn();
  } catch (e) {
    if (e instanceof GsdError) throw e;
    throw new GsdError('MALFORMED', `metadata unreadable: ${e && e.message}`);
  }
}

/**
 * StreamHeader (4.6). Returns raw fields; domain checks (H9, H10) are the caller's.
 * grid === null when absent (the caller reports MALFORMED at H8).
 */
export function readStreamHeader(u8) {
  return guard(() => {
    const r = new Reader(u8);
    const h = r.root('StreamHeader');
    const shDegree = r.scalarU8(h, 0);
    const g = r.field(h, 1, 20);
    const grid = g ? {
      originX: r.f32(g), originY: r.f32(g + 4), originZ: r.f32(g + 8), cellSize: r.f32(g + 12),
      cellBits: r.u8(g + 16), slotBits: r.u8(g + 17),
    } : null;
    let quantization = null;
    const qp = r.ref(h, 2);
    if (qp) {
      const q = r.table(qp, 'Quantization');
      const rb = r.vector(q, 9, 1), rr = r.vector(q, 10, 4);
      const restBits = [], restRange = [];
      for (let i = 0; i < rb.length && i < 64; i++) restBits.push(r.u8(rb.start + i));
      for (let i = 0; i < rr.length && i < 64; i++) restRange.push(r.f32(rr.start + 4 * i));
      quantization = {
        positionBits: r.scalarU8(q, 0), scaleBits: r.scalarU8(q, 1),
        scaleMin: r.scalarF32(q, 2), scaleMax: r.scalarF32(q, 3),
        rotationBits: r.scalarU8(q, 4), opacityBits: r.scalarU8(q, 5), dcBits: r.scalarU8(q, 6),
        dcMin: r.scalarF32(q, 7), dcMax: r.scalarF32(q, 8),
        restBits, restRange, restBitsLength: rb.length, restRangeLength: rr.length,
        shPalette: r.scalarU32(q, 11),   // 1.1: entries of the SH palette (SPEC 5.9), 0: none
      };
    }
    const profileName = r.string(h, 3);
    const requiredFeatures = r.scalarU64(h, 4);
    const maxGaussians = r.scalarU32(h, 5);
    const generator = r.string(h, 6);
    const frameRate = r.scalarF32(h, 7);   // 1.1, informative: playback rate; 0 = unset
    return { shDegree, grid, quantization, profileName, requiredFeatures, maxGaussians, generator, frameRate };
  });
}

/**
 * Frame (4.7), fully verified (every OpBlock table and its sections vector included).
 * blocks: [{kind, count, mask, level, sections: Uint32Array}]
 * sections: [{offset, stored, raw, compression, filters, width}]
 */
export function readFrameMeta(u8) {
  return guard(() => {
    const r = new Reader(u8);
    const h = r.root('Frame');
    const seq = r.scalarU64(h, 0);
    const baseSeq = r.scalarU64(h, 1);
    const flags = r.scalarU32(h, 2);
    const requiredFeatures = r.scalarU64(h, 3);
    const dp = r.field(h, 4, 16);
    const digest = dp ? { count: r.u64(dp), lane0: r.u32(dp + 8), lane1: r.u32(dp + 12) } : null;
    const bv = r.vector(h, 5, 4);
    const blocks = new Array(bv.length);
    for (let i = 0; i < bv.length; i++) {
      const p = bv.start + 4 * i;
      if (r.u32(p) === 0) fail('MALFORMED', `OpBlock ${i}: uoffset 0`);
      const b = r.table(p + r.u32(p), 'OpBlock');
      const sv = r.vector(b, 4, 4);
      const secs = new Uint32Array(sv.length);
      for (let k = 0; k < sv.length; k++) secs[k] = r.u32(sv.start + 4 * k);
      blocks[i] = { kind: r.scalarU8(b, 0), count: r.scalarU32(b, 1), mask: r.scalarU8(b, 2),
                    level: r.scalarU8(b, 3), sections: secs };
    }
    const sv = r.vector(h, 6, 16);
    const sections = new Array(sv.length);
    for (let i = 0; i < sv.length; i++) {
      const p = sv.start + 16 * i;
      sections[i] = { offset: r.u32(p), stored: r.u32(p + 4), raw: r.u32(p + 8),
                      compression: r.u8(p + 12), filters: r.u8(p + 13), width: r.u8(p + 14) };
    }
    return { seq, baseSeq, flags, requiredFeatures, digest, blocks, sections };
  });
}
