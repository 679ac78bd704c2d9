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
// Internals (not part of the contract): per slot the id (two u32 halves), the NC = 14 + 3K
// integer codes as zero-extended u32 words (exactly the record words w_2.. of SPEC 7.1), and
// `meta` (4 int32 per slot, one cache line for 4 slots): the two pre-fmix32 lane sums of the
// record (SPEC 7.5), the decoder's staging mark, and flags (alive, dirty); an IdTable id -> slot.
import { IdTable } from './idtable.mjs';
import { fmix32, laneConstants, digestText } from './digest.mjs';

const FREED_OPACITY = -1e30;
export const M_SUM0 = 0, M_SUM1 = 1, M_MARK = 2, M_FLAGS = 3;   // meta[4*s + ...]
const ALIVE = 1, DIRTY = 2;
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

  _alloc(cap) {
    this.capacity = cap;
    this.data = new Float32Array(cap * this.stride);
    this.dataU32 = new Uint32Array(this.data.buffer);
    this.codes = new Uint32Array(cap * this.NC);
    this.idLo = new Uint32Array(cap);
    this.idHi = new Uint32Array(cap);
    this.meta = new Int32Array(cap * 4);
  }

  digestText() { return digestText(this.live, this.lane0, this.lane1); }

  // ------------------------------------------------------------------ renderer side
  takeDirty() {
    const full = this.generation !== this._lastTakenGeneration;
    this._lastTakenGeneration = this.generation;
    const n = this._dirtyCount;
    const slots = this._dirtyList.slice(0, n).sort();
    for (let i = 0; i < n; i++) this.meta[4 * slots[i] + M_FLAGS] &= ~DIRTY;
    this._dirtyCount = 0;
    return { full, slots: full ? new Uint32Array(0) : slots };
  }

  _touch(s) {
    const f = 4 * s + M_FLAGS;
    if (this.meta[f] & DIRTY) return;
    this.meta[f] |= DIRTY;
    if (this._dirtyCount === this._dirtyList.length) {
      const grown = new Uint32Array(this._dirtyList.length * 2);
      grown.set(this._dirtyList);
      this._dirtyList = grown;
    }
    this._dirtyList[this._dirtyCount++] = s;
  }

  _clearDirty() {
    for (let i = 0; i < this._dirtyCount; i++) this.meta[4 * this._dirtyList[i] + M_FLAGS] &= ~DIRTY;
    this._dirtyCount = 0;
  }

  isAlive(s) { return (this.meta[4 * s + M_FLAGS] & ALIVE) !== 0; }

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
    this._clearDirty();
    const old = { data: this.data, codes: this.codes, idLo: this.idLo, idHi: this.idHi, meta: this.meta };
    const hw = this.highWater;
    this._alloc(cap);
    this.data.set(old.data.subarray(0, hw * this.stride));
    this.codes.set(old.codes.subarray(0, hw * this.NC));
    this.meta.set(old.meta.subarray(0, hw * 4));
    for (const k of ['idLo', 'idHi']) this[k].set(old[k].subarray(0, hw));
    this.generation++;
  }

  allocSlot() {
    if (this.freeCount > 0) return this.freeList[--this.freeCount];
    return this.highWater++;
  }

  /** Removes a live slot (id table, lane sums, freed opacity). */
  freeSlot(s) {
    this.ids.delete(this.idLo[s], this.idHi[s]);
    const m = 4 * s;
    this.lane0 = (this.lane0 - fmix32(this.meta[m + M_SUM0] >>> 0)) >>> 0;
    this.lane1 = (this.lane1 - fmix32(this.meta[m + M_SUM1] >>> 0)) >>> 0;
    this.meta[m + M_FLAGS] &= ~ALIVE;
    this.live--;
    this.data[s * this.stride + 3] = FREED_OPACITY;
    this.freeList[this.freeCount++] = s;
    this._touch(s);
  }

  /** Record lane sums of slot s from its id and codes. */
  rehash(s) {
    const { K0, K1, codes, NC } = this;
    let s0 = Math.imul(this.idLo[s], K0[0]) + Math.imul(this.idHi[s], K0[1]);
    let s1 = Math.imul(this.idLo[s], K1[0]) + Math.imul(this.idHi[s], K1[1]);
    const b = s * NC;
    for (let j = 0; j < NC; j++) {
      const w = codes[b + j];
      s0 = (s0 + Math.imul(w, K0[j + 2])) | 0;
      s1 = (s1 + Math.imul(w, K1[j + 2])) | 0;
    }
    this.meta[4 * s + M_SUM0] = s0;
    this.meta[4 * s + M_SUM1] = s1;
  }

  /** Writes the dequantized floats of attribute a (0..5) of slot s. */
  deriveAttr(s, a) {
    const p = this.profile, d = this.data, base = s * this.stride, cb = s * this.NC, c = this.codes;
    if (p.lossless) {
      const u = this.dataU32;
      switch (a) {
        case 0: u[base] = c[cb]; u[base + 1] = c[cb + 1]; u[base + 2] = c[cb + 2]; break;
        case 1: u[base + 4] = c[cb + 3]; u[base + 5] = c[cb + 4]; u[base + 6] = c[cb + 5]; break;
        case 2: for (let k = 0; k < 4; k++) u[base + 8 + k] = c[cb + 6 + k]; break;
        case 3: u[base + 3] = c[cb + 10]; break;
        case 4: u[base + 12] = c[cb + 11]; u[base + 13] = c[cb + 12]; u[base + 14] = c[cb + 13]; break;
        default: for (let r = 0; r < 3 * p.K; r++) u[base + 16 + r] = c[cb + 14 + r];
      }
      return;
    }
    switch (a) {
      case 0: this._derivePos(s, base, cb); break;
      case 1: { const t = p.scaleTable; d[base + 4] = t[c[cb + 3]]; d[base + 5] = t[c[cb + 4]]; d[base + 6] = t[c[cb + 5]]; break; }
      case 2: writeRotation(d, base + 8, c[cb + 6], p.rotTable[c[cb + 7]], p.rotTable[c[cb + 8]], p.rotTable[c[cb + 9]]); break;
      case 3: d[base + 3] = p.opacityTable[c[cb + 10]]; break;
      case 4: { const t = p.dcTable; d[base + 12] = t[c[cb + 11]]; d[base + 13] = t[c[cb + 12]]; d[base + 14] = t[c[cb + 13]]; break; }
      default: { const T = p.restCompTable; for (let r = 0; r < 3 * p.K; r++) d[base + 16 + r] = T[r][c[cb + 14 + r]]; }
    }
  }

  /** Lossy POSITION: origin_cell(id) + code * step per axis (3.4, 5.3), f64 then f32. */
  _derivePos(s, base, cb) {
    const p = this.profile, g = p.grid, st = p.posStep, cs = g.cellSize, S = p.S;
    const lo = this.idLo[s], hi = this.idHi[s];
    const c0 = bits30(lo, hi, S), c1 = S + 30 < 64 ? bits30(lo, hi, S + 30) : 0;
    const c = this.codes, d = this.data;
    d[base] = g.originX + (compact1by2(c0) | (compact1by2(c1) << 10)) * cs + (c[cb] | 0) * st;
    d[base + 1] = g.originY + (compact1by2(c0 >>> 1) | (compact1by2(c1 >>> 1) << 10)) * cs + (c[cb + 1] | 0) * st;
    d[base + 2] = g.originZ + (compact1by2(c0 >>> 2) | (compact1by2(c1 >>> 2) << 10)) * cs + (c[cb + 2] | 0) * st;
  }

  derive(s) {
    for (let a = 0; a < 6; a++) this.deriveAttr(s, a);
    const base = s * this.stride;
    this.data[base + 7] = 0;
    this.data[base + 15] = 0;
  }

  /** Compacts when more slots are free than live (and more than COMPACT_MIN_FREE). */
  maybeCompact() {
    if (this.freeCount > this.live && this.freeCount > COMPACT_MIN_FREE) this.compact();
  }

  compact() {
    const { stride, NC } = this;
    this._clearDirty();
    const meta = this.meta;
    let dst = 0;
    for (let s = 0; s < this.highWater; s++) {
      if (!(meta[4 * s + M_FLAGS] & ALIVE)) continue;
      if (dst !== s) {
        this.data.copyWithin(dst * stride, s * stride, (s + 1) * stride);
        this.codes.copyWithin(dst * NC, s * NC, (s + 1) * NC);
        this.idLo[dst] = this.idLo[s]; this.idHi[dst] = this.idHi[s];
        meta.copyWithin(4 * dst, 4 * s, 4 * s + 4);
        meta[4 * s + M_FLAGS] = 0;
        this.ids.set(this.idLo[dst], this.idHi[dst], dst);
      }
      dst++;
    }
    this.data.fill(0, dst * stride, this.highWater * stride);
    meta.fill(0, 4 * dst, 4 * this.highWater);
    this.highWater = dst;
    this.freeCount = 0;
    this.generation++;
  }

  /** Takes over the contents of another store of the same profile (a keyframe's); generation++. */
  _adopt(t) {
    for (const k of ['capacity', 'data', 'dataU32', 'codes', 'idLo', 'idHi', 'meta',
                     'highWater', 'live', 'lane0', 'lane1', 'ids', 'freeList', 'freeCount']) this[k] = t[k];
    this._dirtyList = new Uint32Array(256);   // t's slots are not flagged dirty: generation says all
    this._dirtyCount = 0;
    this.generation++;
  }

  /** The live Gaussians as {id: BigInt, codes: Uint32Array(NC)}, ids ascending (tests, tools). */
  entries() {
    const out = [];
    for (let s = 0; s < this.highWater; s++) {
      if (!this.isAlive(s)) continue;
      out.push({ id: (BigInt(this.idHi[s]) << 32n) | BigInt(this.idLo[s]), slot: s,
                 codes: this.codes.slice(s * this.NC, (s + 1) * this.NC) });
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
