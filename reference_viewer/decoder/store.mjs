// SceneStore: the decoder's scene state (SPEC.md 2.5: ids and their codes) plus the dequantized
// float view the WebGPU renderer uploads.
//
// ============================================================================================
// STORE CONTRACT (the renderer depends on exactly this)
//
//   export class SceneStore {
//     shDegree     // 0..3
//     restCount    // K = (shDegree+1)^2 - 1
//     stride       // floats per slot: 16 + 3K rounded up to a multiple of 4 -> 16, 28, 40, 64
//     capacity     // slots allocated in data
//     data         // Float32Array(capacity * stride); slot s occupies [s*stride, (s+1)*stride)
//     highWater    // every slot in use (live or freed) is < highWater; the renderer draws [0, highWater)
//     live         // number of live Gaussians
//     generation   // incremented whenever data is reallocated or compacted (slots move), and on a
//                  // keyframe or a new header: the renderer re-uploads everything
//     takeDirty()  // -> { full: boolean, slots: Uint32Array }: slots written since the last call,
//                  //    ascending, unique; full === true when the generation changed since the
//                  //    last call (then slots may be empty and everything < highWater is to be
//                  //    re-uploaded)
//   }
//
//   Slot layout (float offsets within a slot): the DEQUANTIZED floats of the state's codes
//   (SPEC 5.2 / 5.3, evaluated in f64 and rounded to f32), PLY conventions (pre-activation):
//     0,1,2   position x y z
//     3       opacity logit (a freed slot is written with -1e30, so it renders with alpha 0)
//     4,5,6   log-scale
//     7       0
//     8..11   quaternion w x y z (as dequantized, not renormalized)
//     12..14  SH DC r g b
//     15      0
//     16 .. 16+3K-1   SH rest in SPEC order (channel-major: R coefficients 1..K, then G, then B)
//     (rest of the stride: 0)
//
//   The store is mutated only by Decoder.readFrame after a frame has fully validated, so a
//   failed frame leaves data, highWater, live, generation and the dirty set untouched.
//   A keyframe replaces everything (generation++); ADDs reuse freed slots (free list, most
//   recently freed first) before growing highWater; when more slots are free than live (and more
//   than 4096), the live slots are compacted down in slot order (generation++).
// ============================================================================================
//
// Internals (not part of the contract): one row of R u32 words per slot in `rows` (with u16 and u8
// views of the same memory), so that a delta's random access to a slot touches one cache line of
// `rows` besides the slot's floats and its id-table entry:
//   word 0, 1   id (lo, hi u32 halves)
//   word 2, 3   the two pre-fmix32 lane sums of the record (SPEC 7.5)
//   word 4      the decoder's staging mark (a stamp)
//   word 5      flags (bit 0: alive)
//   then the NC = 14 + 3K codes (the record words w_2.. of SPEC 7.1) at their real width:
//   4-byte components as words, then 2-byte ones (u16), then 1-byte ones (u8); R is rounded up
//   to a multiple of 16 words (64 bytes), so a row starts on a cache line.
// Per component j: ck[j] (its width 4, 2 or 1) and ci[j] (its index within the row in units of
// that width). The dirty set is a list plus a bit per slot. An IdTable maps id -> slot.
import { IdTable } from './idtable.mjs';
import { fmix32, laneConstants, digestText } from './digest.mjs';

export const FREED_OPACITY = -1e30;
export const H_LO = 0, H_HI = 1, H_S0 = 2, H_S1 = 3, H_MARK = 4, H_FLAGS = 5, H_WORDS = 6;
const ALIVE = 1;
export const COMPACT_MIN_FREE = 4096;

function compact1by2(x) {
  x &= 0x09249249;
  x = (x ^ (x >>> 2)) & 0x030c30c3;
  x = (x ^ (x >>> 4)) & 0x0300f00f;
  x = (x ^ (x >>> 8)) & 0xff0000ff;
  x = (x ^ (x >>> 16)) & 0x000003ff;
  return x;
}
/** bits [start, start+30) of the u64 (hi:lo), start in 0..63 */
function bits30(lo, hi, start) {
  let v;
  if (start === 0) v = lo;
  else if (start < 32) v = (lo >>> start) | (hi << (32 - start));
  else v = hi >>> (start - 32);
  return v & 0x3FFFFFFF;
}
/** demorton(id >> S) (3.4) into out[0..2]. */
export function cellOfId(lo, hi, S, out) {
  const c0 = bits30(lo, hi, S);
  const c1 = S + 30 < 64 ? bits30(lo, hi, S + 30) : 0;
  out[0] = compact1by2(c0) | (compact1by2(c1) << 10);
  out[1] = compact1by2(c0 >>> 1) | (compact1by2(c1 >>> 1) << 10);
  out[2] = compact1by2(c0 >>> 2) | (compact1by2(c1 >>> 2) << 10);
  return out;
}

/** Row layout of a profile: {R, ck, ci} (see above). Cached on the profile. */
export function rowLayout(p) {
  if (p._rowLayout) return p._rowLayout;
  const NC = p.NC, ck = new Uint8Array(NC), ci = new Int32Array(NC);
  for (let j = 0; j < NC; j++) ck[j] = p.compWidth[j];
  let word = H_WORDS;
  for (let j = 0; j < NC; j++) if (ck[j] === 4) ci[j] = word++;
  let half = 2 * word;
  for (let j = 0; j < NC; j++) if (ck[j] === 2) ci[j] = half++;
  let byte = 2 * half;
  for (let j = 0; j < NC; j++) if (ck[j] === 1) ci[j] = byte++;
  const R = (((byte + 3) >> 2) + 15) & ~15;
  return (p._rowLayout = { R, ck, ci });
}

export class SceneStore {
  constructor(profile) {
    this.generation = 0;
    this._lastTakenGeneration = 0;
    this.reset(profile);
    this._lastTakenGeneration = this.generation;
  }

  /** Empties the store for a (new) profile; generation++. */
  reset(profile, capacity = 0) {
    this.profile = profile;
    this.shDegree = profile.shDegree;
    this.restCount = profile.K;
    this.NC = profile.NC;
    this.stride = (16 + 3 * profile.K + 3) & ~3;
    const L = rowLayout(profile);
    this.R = L.R; this.ck = L.ck; this.ci = L.ci;
    this.K0 = laneConstants(2 + this.NC, 0);
    this.K1 = laneConstants(2 + this.NC, 1);
    this._alloc(Math.max(capacity, 64));
    this.highWater = 0;
    this.live = 0;
    this.lane0 = 0;
    this.lane1 = 0;
    this.ids = new IdTable(Math.max(capacity, 16));
    this.freeList = new Int32Array(64);
    this.freeCount = 0;
    this._dirtyList = new Uint32Array(256);
    this._dirtyCount = 0;
    this.generation++;
  }

  _alloc(cap) {   // allocates everything before changing anything (an allocation may throw)
    const data = new Float32Array(cap * this.stride), rows = new Uint32Array(cap * this.R);
    const dirtyBits = new Int32Array((cap + 31) >>> 5);
    this.capacity = cap;
    this.data = data;
    this.dataU32 = new Uint32Array(data.buffer);
    this.rows = rows;
    this.rows16 = new Uint16Array(rows.buffer);
    this.rows8 = new Uint8Array(rows.buffer);
    this.dirtyBits = dirtyBits;
  }

  digestText() { return digestText(this.live, this.lane0, this.lane1); }

  // ------------------------------------------------------------------ renderer side
  takeDirty() {
    const full = this.generation !== this._lastTakenGeneration;
    this._lastTakenGeneration = this.generation;
    const n = this._dirtyCount, bits = this.dirtyBits;
    let slots;
    if (full) slots = new Uint32Array(0);
    else if (n > (bits.length >> 4)) {   // many: a scan of the bits gives them ascending
      slots = new Uint32Array(n);
      const words = Math.min(bits.length, (this.highWater + 31) >>> 5);
      for (let w = 0, k = 0; w < words; w++) {
        let b = bits[w];
        while (b !== 0) { const t = b & -b; slots[k++] = (w << 5) | (31 - Math.clz32(t)); b ^= t; }
      }
    } else slots = this._dirtyList.slice(0, n).sort();
    this._clearDirty();
    return { full, slots };
  }

  _touch(s) {
    const w = s >>> 5, m = 1 << (s & 31), bits = this.dirtyBits;
    if (bits[w] & m) return;
    bits[w] |= m;
    if (this._dirtyCount === this._dirtyList.length) {
      const grown = new Uint32Array(this._dirtyList.length * 2);
      grown.set(this._dirtyList);
      this._dirtyList = grown;
    }
    this._dirtyList[this._dirtyCount++] = s;
  }

  _clearDirty() {
    const bits = this.dirtyBits, l = this._dirtyList;
    if (this._dirtyCount > (bits.length >> 3)) bits.fill(0);
    else for (let i = 0; i < this._dirtyCount; i++) bits[l[i] >>> 5] = 0;
    this._dirtyCount = 0;
  }

  isAlive(s) { return (this.rows[s * this.R + H_FLAGS] & ALIVE) !== 0; }
  idLoOf(s) { return this.rows[s * this.R + H_LO]; }
  idHiOf(s) { return this.rows[s * this.R + H_HI]; }

  /** Code of component j of slot s (unsigned, zero-extended). */
  code(s, j) {
    const k = this.ck[j], i = this.ci[j], b = s * this.R;
    return k === 4 ? this.rows[b + i] : k === 2 ? this.rows16[2 * b + i] : this.rows8[4 * b + i];
  }
  setCode(s, j, v) {
    const k = this.ck[j], i = this.ci[j], b = s * this.R;
    if (k === 4) this.rows[b + i] = v; else if (k === 2) this.rows16[2 * b + i] = v; else this.rows8[4 * b + i] = v;
  }
  /** The NC codes of slot s as a Uint32Array. */
  codesOf(s) {
    const out = new Uint32Array(this.NC);
    for (let j = 0; j < this.NC; j++) out[j] = this.code(s, j);
    return out;
  }

  // ------------------------------------------------------------------ decoder side
  lookup(lo, hi) { return this.ids.get(lo, hi); }

  /**
   * Makes room for `adds` more Gaussians (after `freedFirst` slots are freed) and a table of `liveAfter` ids without touching the state
   * visible to the renderer (except by a reallocation, which bumps generation). Called before a
   * commit, so that the commit itself cannot fail half-way.
   */
  reserve(adds, liveAfter, freedFirst = 0, slack = 0) {
    const need = this.highWater + Math.max(0, adds - this.freeCount - freedFirst);
    if (need > this.capacity) this._grow(Math.max(need + slack, Math.ceil(this.capacity * 1.5)));
    this.ids.reserve(liveAfter);
    if (this.freeList.length < this.highWater) {
      const f = new Int32Array(Math.max(this.capacity, 64));
      f.set(this.freeList.subarray(0, this.freeCount));
      this.freeList = f;
    }
  }

  _grow(cap) {
    const old = { data: this.data, rows: this.rows, dirtyBits: this.dirtyBits };
    const hw = this.highWater;
    this._alloc(cap);   // first (it may throw): the state is untouched until it succeeds
    const fresh = this.dirtyBits;
    this.dirtyBits = old.dirtyBits;
    this._clearDirty();
    this.dirtyBits = fresh;
    this.data.set(old.data.subarray(0, hw * this.stride));
    this.rows.set(old.rows.subarray(0, hw * this.R));
    this.generation++;
  }

  allocSlot() {
    if (this.freeCount > 0) return this.freeList[--this.freeCount];
    return this.highWater++;
  }

  /** Marks slot s live with id (lo, hi) and enters it in the id table (codes and sums are the caller's). */
  initSlot(s, lo, hi) {
    const b = s * this.R;
    this.rows[b + H_LO] = lo; this.rows[b + H_HI] = hi;
    this.rows[b + H_MARK] = 0; this.rows[b + H_FLAGS] = ALIVE;
    this.ids.set(lo, hi, s);
  }

  /** Removes a live slot (id table, lane sums, freed opacity). */
  freeSlot(s) {
    const b = s * this.R, rows = this.rows;
    this.ids.delete(rows[b + H_LO], rows[b + H_HI]);
    this.lane0 = (this.lane0 - fmix32(rows[b + H_S0])) >>> 0;
    this.lane1 = (this.lane1 - fmix32(rows[b + H_S1])) >>> 0;
    rows[b + H_FLAGS] &= ~ALIVE;
    this.live--;
    this.data[s * this.stride + 3] = FREED_OPACITY;
    this.freeList[this.freeCount++] = s;
    this._touch(s);
  }

  /** Record lane sums of slot s from its id and codes. */
  rehash(s) {
    const { K0, K1, NC, rows } = this, b = s * this.R;
    let s0 = Math.imul(rows[b + H_LO], K0[0]) + Math.imul(rows[b + H_HI], K0[1]);
    let s1 = Math.imul(rows[b + H_LO], K1[0]) + Math.imul(rows[b + H_HI], K1[1]);
    for (let j = 0; j < NC; j++) {
      const w = this.code(s, j);
      s0 = (s0 + Math.imul(w, K0[j + 2])) | 0;
      s1 = (s1 + Math.imul(w, K1[j + 2])) | 0;
    }
    rows[b + H_S0] = s0;
    rows[b + H_S1] = s1;
  }

  /**
   * Writes the dequantized floats of the attributes in `mask` (bit a: attribute a, 0..5) of slot s
   * from its codes.
   */
  deriveMask(s, mask) {
    const p = this.profile, d = this.data, u = this.dataU32, base = s * this.stride;
    const rows = this.rows, r8 = this.rows8, r16 = this.rows16, b = s * this.R, ck = this.ck, ci = this.ci;
    if (p.lossless) {   // every component is a 4-byte word: the float is its bit pattern
      const off = p.dataOff;
      for (let a = 0; a < 6; a++) {
        if (!(mask & (1 << a))) continue;
        const j0 = p.attrFirst[a], j1 = j0 + p.attrComps[a];
        for (let j = j0; j < j1; j++) u[base + off[j]] = rows[b + ci[j]];
      }
      return;
    }
    if (mask & 1) {   // POSITION: origin_cell(id) + code * step per axis (3.4, 5.3), f64 then f32
      const g = p.grid, st = p.posStep, cs = g.cellSize, S = p.S;
      const lo = rows[b + H_LO], hi = rows[b + H_HI];
      const c0 = bits30(lo, hi, S), c1 = S + 30 < 64 ? bits30(lo, hi, S + 30) : 0;
      d[base] = g.originX + (compact1by2(c0) | (compact1by2(c1) << 10)) * cs + (rows[b + ci[0]] | 0) * st;
      d[base + 1] = g.originY + (compact1by2(c0 >>> 1) | (compact1by2(c1 >>> 1) << 10)) * cs + (rows[b + ci[1]] | 0) * st;
      d[base + 2] = g.originZ + (compact1by2(c0 >>> 2) | (compact1by2(c1 >>> 2) << 10)) * cs + (rows[b + ci[2]] | 0) * st;
    }
    if (mask & 0x3E) {
      const b2 = 2 * b, b8 = 4 * b;
      const cv = (j) => (ck[j] === 1 ? r8[b8 + ci[j]] : r16[b2 + ci[j]]);
      if (mask & 2) { const t = p.scaleTable; d[base + 4] = t[cv(3)]; d[base + 5] = t[cv(4)]; d[base + 6] = t[cv(5)]; }
      if (mask & 4) { const t = p.rotTable; writeRotation(d, base + 8, cv(6), t[cv(7)], t[cv(8)], t[cv(9)]); }
      if (mask & 8) d[base + 3] = p.opacityTable[cv(10)];
      if (mask & 16) { const t = p.dcTable; d[base + 12] = t[cv(11)]; d[base + 13] = t[cv(12)]; d[base + 14] = t[cv(13)]; }
      if (mask & 32) {
        const T = p.restCompTable, n = 3 * p.K;
        for (let r = 0; r < n; r++) d[base + 16 + r] = T[r][cv(14 + r)];
      }
    }
  }

  /**
   * deriveMask(slots[i], mask) for i < n, with the per-profile set-up hoisted out of the loop (the
   * decoder's commit of UPDATEs and ADDs).
   */
  deriveSlots(slots, n, mask) {
    const p = this.profile;
    if (p.lossless) { for (let i = 0; i < n; i++) this.deriveMask(slots[i], mask); return; }
    const d = this.data, rows = this.rows, r8 = this.rows8, r16 = this.rows16, R = this.R, stride = this.stride;
    const ck = this.ck, ci = this.ci;
    const g = p.grid, ps = p.posStep, cs = g.cellSize, S = p.S, wide = S + 30 < 64;
    const ox = g.originX, oy = g.originY, oz = g.originZ, x0 = ci[0], x1 = ci[1], x2 = ci[2];
    // 1- or 2-byte components (all but POSITION): their index in u8 or u16 units of the row
    const v8 = ck[3] === 1, i3 = ci[3], i4 = ci[4], i5 = ci[5];
    const rot8 = ck[6] === 1, q0 = ci[6], q1 = ci[7], q2 = ci[8], q3 = ci[9];
    const op8 = ck[10] === 1, o0 = ci[10];
    const dc8 = ck[11] === 1, c0i = ci[11], c1i = ci[12], c2i = ci[13];
    const st = p.scaleTable, rt = p.rotTable, ot = p.opacityTable, dt = p.dcTable;
    const nr = 3 * p.K, RT = p.restCompTable, rest8 = nr > 0 && ck[14] === 1, ri0 = nr > 0 ? ci[14] : 0;
    let restContiguous = true;   // the rest codes are consecutive in the row (rowLayout puts them so)
    for (let r = 1; r < nr; r++) if (ci[14 + r] !== ri0 + r || ck[14 + r] !== ck[14]) restContiguous = false;
    for (let i = 0; i < n; i++) {
      const s = slots[i], b = s * R, base = s * stride, b2 = 2 * b, b8 = 4 * b;
      if (mask & 1) {
        const lo = rows[b + H_LO], hi = rows[b + H_HI];
        const c0 = bits30(lo, hi, S), c1 = wide ? bits30(lo, hi, S + 30) : 0;
        d[base] = ox + (compact1by2(c0) | (compact1by2(c1) << 10)) * cs + (rows[b + x0] | 0) * ps;
        d[base + 1] = oy + (compact1by2(c0 >>> 1) | (compact1by2(c1 >>> 1) << 10)) * cs + (rows[b + x1] | 0) * ps;
        d[base + 2] = oz + (compact1by2(c0 >>> 2) | (compact1by2(c1 >>> 2) << 10)) * cs + (rows[b + x2] | 0) * ps;
      }
      if (mask & 2) {
        if (v8) { d[base + 4] = st[r8[b8 + i3]]; d[base + 5] = st[r8[b8 + i4]]; d[base + 6] = st[r8[b8 + i5]]; }
        else { d[base + 4] = st[r16[b2 + i3]]; d[base + 5] = st[r16[b2 + i4]]; d[base + 6] = st[r16[b2 + i5]]; }
      }
      if (mask & 4) {
        if (rot8) writeRotation(d, base + 8, r8[b8 + q0], rt[r8[b8 + q1]], rt[r8[b8 + q2]], rt[r8[b8 + q3]]);
        else writeRotation(d, base + 8, r16[b2 + q0], rt[r16[b2 + q1]], rt[r16[b2 + q2]], rt[r16[b2 + q3]]);
      }
      if (mask & 8) d[base + 3] = ot[op8 ? r8[b8 + o0] : r16[b2 + o0]];
      if (mask & 16) {
        if (dc8) { d[base + 12] = dt[r8[b8 + c0i]]; d[base + 13] = dt[r8[b8 + c1i]]; d[base + 14] = dt[r8[b8 + c2i]]; }
        else { d[base + 12] = dt[r16[b2 + c0i]]; d[base + 13] = dt[r16[b2 + c1i]]; d[base + 14] = dt[r16[b2 + c2i]]; }
      }
      if ((mask & 32) && nr > 0) {
        if (restContiguous && rest8) { const q = b8 + ri0, o = base + 16; for (let r = 0; r < nr; r++) d[o + r] = RT[r][r8[q + r]]; }
        else if (restContiguous) { const q = b2 + ri0, o = base + 16; for (let r = 0; r < nr; r++) d[o + r] = RT[r][r16[q + r]]; }
        else for (let r = 0; r < nr; r++) d[base + 16 + r] = RT[r][ck[14 + r] === 1 ? r8[b8 + ci[14 + r]] : r16[b2 + ci[14 + r]]];
      }
    }
  }

  /** Writes the dequantized floats of attribute a (0..5) of slot s. */
  deriveAttr(s, a) { this.deriveMask(s, 1 << a); }

  derive(s) {
    this.deriveMask(s, 0x3F);
    const base = s * this.stride;
    this.data[base + 7] = 0;
    this.data[base + 15] = 0;
  }

  /** Compacts when more slots are free than live (and more than COMPACT_MIN_FREE). */
  maybeCompact() {
    if (this.freeCount > this.live && this.freeCount > COMPACT_MIN_FREE) this.compact();
  }

  compact() {
    const { stride, R, rows } = this;
    this._clearDirty();
    let dst = 0;
    for (let s = 0; s < this.highWater; s++) {
      if (!(rows[s * R + H_FLAGS] & ALIVE)) continue;
      if (dst !== s) {
        this.data.copyWithin(dst * stride, s * stride, (s + 1) * stride);
        rows.copyWithin(dst * R, s * R, (s + 1) * R);
        rows[s * R + H_FLAGS] = 0;
        this.ids.set(rows[dst * R + H_LO], rows[dst * R + H_HI], dst);
      }
      dst++;
    }
    this.data.fill(0, dst * stride, this.highWater * stride);
    rows.fill(0, dst * R, this.highWater * R);
    this.highWater = dst;
    this.freeCount = 0;
    this.generation++;
  }

  /** Takes over the contents of another store of the same profile (a keyframe's); generation++. */
  _adopt(t) {
    for (const k of ['capacity', 'data', 'dataU32', 'rows', 'rows16', 'rows8', 'dirtyBits',
                     'highWater', 'live', 'lane0', 'lane1', 'ids', 'freeList', 'freeCount']) this[k] = t[k];
    this._dirtyList = new Uint32Array(256);   // t's slots are not flagged dirty: generation says all
    this._dirtyCount = 0;
    this.generation++;
  }

  /** The live Gaussians as {id: BigInt, slot, codes: Uint32Array(NC)}, ids ascending (tests, tools). */
  entries() {
    const out = [];
    for (let s = 0; s < this.highWater; s++) {
      if (!this.isAlive(s)) continue;
      out.push({ id: (BigInt(this.idHiOf(s)) << 32n) | BigInt(this.idLoOf(s)), slot: s, codes: this.codesOf(s) });
    }
    out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    return out;
  }
}

/** Smallest-three decode (5.3) into d[o..o+3] = w x y z. */
export function writeRotation(d, o, i, a, b, c) {
  const qi = Math.sqrt(Math.max(0, 1 - (a * a + b * b + c * c)));
  switch (i) {
    case 0: d[o] = qi; d[o + 1] = a; d[o + 2] = b; d[o + 3] = c; break;
    case 1: d[o] = a; d[o + 1] = qi; d[o + 2] = b; d[o + 3] = c; break;
    case 2: d[o] = a; d[o + 1] = b; d[o + 2] = qi; d[o + 3] = c; break;
    default: d[o] = a; d[o + 1] = b; d[o + 2] = c; d[o + 3] = qi;
  }
}
