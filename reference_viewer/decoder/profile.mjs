// The stream's profile (SPEC.md 5): code widths, code validity, dequantization, the SH palette (5.9);
// header domains (4.6, 3.1, 5.7).
// Also the profile's description for the wasm kernel (its layout P in decoder/wasm/kernel.ts): the
// row layout of the codes, the slot float offsets (decoder/layout.mjs), lane constants, tables.
import { fail } from './errors.mjs';
import { componentOffsets, slotStride, restCount, ZERO_FLOATS, FREED_OPACITY } from './layout.mjs';
import { laneConstants } from './digest.mjs';
import { K as W, alloc, views, finalizer } from './kernel.mjs';

/** Row words before the codes: id (2), the record's two lane sums, staging mark, flags. */
export const H_WORDS = 6;

export const ATTR = Object.freeze({ POSITION: 0, SCALE: 1, ROTATION: 2, OPACITY: 3, SH_DC: 4, SH_REST: 5 });
export const ATTR_NAMES = ['position', 'scale', 'rotation', 'opacity', 'sh_dc', 'sh_rest'];
const F32_MAX = 3.4028234663852886e38;
const finite = (x) => Number.isFinite(x) && Math.abs(x) <= F32_MAX;
const wb = (bits) => (bits <= 8 ? 1 : 2);
/** Header required_features bit 0: SH_REST codes are palette indices (SPEC 5.9). */
export const SH_PALETTE = 1n;
/** Most entries of an SH palette (its indices are u16 codes). */
export const MAX_PALETTE = 65536;

/** H10: every header parameter in its domain, else BAD_HEADER. */
export function checkHeaderDomain(h) {
  const bad = (m) => fail('BAD_HEADER', m);
  if (h.shDegree > 3) bad(`sh_degree ${h.shDegree}`);
  const g = h.grid;
  if (!finite(g.originX) || !finite(g.originY) || !finite(g.originZ)) bad('grid origin not finite');
  if (!finite(g.cellSize) || !(g.cellSize > 0)) bad('cell_size');
  if (g.cellBits < 1 || g.cellBits > 20) bad(`cell_bits ${g.cellBits}`);
  if (g.slotBits > 32) bad(`slot_bits ${g.slotBits}`);
  if (3 * g.cellBits + g.slotBits > 63) bad('3B + S > 63');
  if (h.maxGaussians > 2 ** 24) bad(`max_gaussians ${h.maxGaussians}`);
  const q = h.quantization, d = h.shDegree, pal = q ? q.shPalette : 0;
  if (((h.requiredFeatures & SH_PALETTE) !== 0n) !== (pal !== 0)) bad(`required feature SH_PALETTE ${h.requiredFeatures & SH_PALETTE} with sh_palette ${pal}`);
  if (pal > MAX_PALETTE) bad(`sh_palette ${pal}`);
  if (pal !== 0 && d < 1) bad('sh_palette at SH degree 0');
  if (q) {
    if (q.positionBits < 1 || q.positionBits > 24 || g.cellBits + q.positionBits > 30) bad('position_bits');
    if (q.scaleBits < 1 || q.scaleBits > 16) bad('scale_bits');
    if (!finite(q.scaleMin) || !finite(q.scaleMax) || !(q.scaleMin < q.scaleMax)) bad('scale range');
    if (q.rotationBits < 2 || q.rotationBits > 16) bad('rotation_bits');
    if (q.opacityBits < 1 || q.opacityBits > 16) bad('opacity_bits');
    if (q.dcBits < 1 || q.dcBits > 16) bad('dc_bits');
    if (!finite(q.dcMin) || !finite(q.dcMax) || !(q.dcMin < q.dcMax)) bad('dc range');
    if (q.restBitsLength < d || q.restBitsLength > 3) bad('rest_bits entries');
    if (q.restRangeLength < d || q.restRangeLength > 3) bad('rest_range entries');
    for (let l = 0; l < d; l++) {
      if (q.restBits[l] < 2 || q.restBits[l] > 16) bad(`rest_bits[${l}]`);
      if (!finite(q.restRange[l]) || !(q.restRange[l] > 0)) bad(`rest_range[${l}]`);
    }
  }
}

/**
 * Per-component description of the code record (SPEC 7.1 order: POSITION x y z, SCALE 0..2,
 * ROTATION 4, OPACITY, SH_DC r g b, SH_REST 3K channel-major). NC = 14 + 3K components; with an SH
 * palette (SPEC 5.9) NC = 15, SH_REST being one u16 palette index, and the palette's entries are 3K
 * codes each, described by restMaxU / restNeg / restWidth.
 */
export class Profile {
  constructor(h) {
    this.shDegree = h.shDegree;
    const d = h.shDegree, K = restCount(d);
    this.K = K;
    this.grid = h.grid;
    this.q = h.quantization;
    this.lossless = !this.q;
    this.fullMask = d >= 1 ? 0x3F : 0x1F;
    this.palette = this.q ? this.q.shPalette : 0;   // entries of the SH palette; 0: none
    this.restComps = this.palette ? 1 : 3 * K;      // SH_REST components of a Gaussian's codes
    this.NC = 14 + this.restComps;
    this.B = h.grid.cellBits;
    this.S = h.grid.slotBits;
    this.idBits = 3 * this.B + this.S;
    const q = this.q;
    this.positionBits = q ? q.positionBits : 0;
    this.implicitIds = !!q && 3 * (this.B + q.positionBits) <= 64;   // ADD_IMPLICIT possible (SPEC 6.1)
    // width of scalar SH_REST codes, and of palette entry codes
    this.restWidth = q ? (d ? wb(Math.max(...q.restBits.slice(0, d))) : 1) : 4;
    // attribute -> [first component, count, width]
    const C = [3, 3, 4, 1, 3, this.restComps];
    const W = q
      ? [4, wb(q.scaleBits), wb(q.rotationBits), wb(q.opacityBits), wb(q.dcBits), this.palette ? 2 : this.restWidth]
      : [4, 4, 4, 4, 4, 4];
    this.attrComps = C;
    this.attrWidth = W;
    this.attrFirst = [0, 3, 6, 10, 11, 14];
    const NC = this.NC;
    this.compWidth = new Uint8Array(NC);
    this.compMask = new Uint32Array(NC);     // 2^(8w) - 1
    // validity: lossless -> exponent check; lossy: valid iff u <= maxU, or (signed) u >= minNegU
    this.compMaxU = new Uint32Array(NC);
    this.compMinNegU = new Uint32Array(NC);  // 0 = no negative range
    for (let a = 0; a < 6; a++) {
      for (let c = 0; c < C[a]; c++) {
        const j = this.attrFirst[a] + c, w = W[a];
        this.compWidth[j] = w;
        this.compMask[j] = w === 4 ? 0xFFFFFFFF : (1 << (8 * w)) - 1;
      }
    }
    // float offset of component j within a store slot (decoder/layout.mjs)
    this.dataOff = componentOffsets(d, this.palette !== 0);
    this.stride = slotStride(d, this.palette !== 0);
    if (q) {
      const set = (j, maxU, minNeg = 0) => { this.compMaxU[j] = maxU; this.compMinNegU[j] = minNeg; };
      for (let j = 0; j < 3; j++) set(j, 0xFFFFFFFF);
      for (let j = 3; j < 6; j++) set(j, 2 ** q.scaleBits - 1);
      set(6, 3);
      for (let j = 7; j < 10; j++) set(j, 2 ** q.rotationBits - 1);
      set(10, 2 ** q.opacityBits - 1);
      for (let j = 11; j < 14; j++) set(j, 2 ** q.dcBits - 1);
      this.restM = [];
      for (let l = 1; l <= d; l++) this.restM.push(2 ** (q.restBits[l - 1] - 1) - 1);
      // SH_REST component r (of a Gaussian, or of a palette entry): -M <= code <= M (5.6)
      this.restMaxU = new Uint32Array(3 * K);
      this.restNeg = new Uint32Array(3 * K);
      for (let r = 0; r < 3 * K; r++) {
        const M = this.restM[this.degreeOf(r) - 1];
        this.restMaxU[r] = M; this.restNeg[r] = 2 ** (8 * this.restWidth) - M;
      }
      if (this.palette) set(14, this.palette - 1);
      else for (let r = 0; r < 3 * K; r++) set(14 + r, this.restMaxU[r], this.restNeg[r]);
      this.buildTables();
    }
    this._rowLayout();
    this.P = this._kernelProfile();
  }

  /** Floats of a palette entry: 3K. */
  get entryFloats() { return 3 * this.K; }

  /**
   * Row layout of the store (decoder/wasm/kernel.ts): H_WORDS header words, then the NC codes at
   * their width: 4-byte components as words, then 2-byte ones, then 1-byte ones; R (row words)
   * rounded up to a multiple of 16 (64 bytes: a row starts on a cache line). ck[j]: the width of
   * component j, ci[j]: its index within the row in units of that width.
   */
  _rowLayout() {
    const NC = this.NC, ck = new Uint8Array(NC), ci = new Int32Array(NC);
    for (let j = 0; j < NC; j++) ck[j] = this.compWidth[j];
    let word = H_WORDS;
    for (let j = 0; j < NC; j++) if (ck[j] === 4) ci[j] = word++;
    let half = 2 * word;
    for (let j = 0; j < NC; j++) if (ck[j] === 2) ci[j] = half++;
    let byte = 2 * half;
    for (let j = 0; j < NC; j++) if (ck[j] === 1) ci[j] = byte++;
    this.R = (((byte + 3) >> 2) + 15) & ~15;
    this.ck = ck; this.ci = ci;
  }

  /** Writes the profile record P of the kernel (and its tables) into the kernel heap; returns P. */
  _kernelProfile() {
    const NC = this.NC, g = this.grid, ptrs = [];
    const K0 = laneConstants(2 + NC, 0), K1 = laneConstants(2 + NC, 1);
    const put = (arr, minLen) => {   // a table, padded with zeros to minLen entries
      const bytes = Math.max(arr.length, minLen) * arr.BYTES_PER_ELEMENT, p = alloc(bytes, 'profile');
      ptrs.push(p);
      const v = views(), T = arr instanceof Float64Array ? v.f64 : v.f32, o = p / arr.BYTES_PER_ELEMENT;
      T.fill(0, o, o + bytes / arr.BYTES_PER_ELEMENT);
      T.set(arr, o);
      return p;
    };
    const tables = new Map();   // one copy of each table
    const tableOf = (t, w) => { if (!tables.has(t)) tables.set(t, put(t, 2 ** (8 * w) <= 256 ? 256 : 0)); return tables.get(t); };
    const rot = this.lossless ? 0 : tableOf(this.rotTable, this.attrWidth[2]);
    const tp = Array.from({ length: NC }, (_, j) => (this.lossless || !this.compTable[j] ? 0 : tableOf(this.compTable[j], this.ck[j])));
    // the palette's entry components: maxU, neg, the lane constants of words 2 + j, the float table
    const PN = 3 * this.K, PK0 = this.palette ? laneConstants(2 + PN, 0) : null, PK1 = this.palette ? laneConstants(2 + PN, 1) : null;
    const pt = this.palette ? Array.from({ length: PN }, (_, r) => tableOf(this.restCompTable[r], this.restWidth)) : [];
    const desc = this.palette ? alloc(32 * PN, 'profile') : 0;
    if (desc) ptrs.push(desc);
    const P = alloc(128 + 32 * NC, 'profile');   // the last allocation: the views below stay valid
    ptrs.push(P);
    const v = views(), u = v.u32, f = v.f64, w = P >> 2;
    u.fill(0, w, w + 32 + 8 * NC);
    u[w] = NC; u[w + 1] = this.R; u[w + 2] = this.stride; u[w + 3] = this.K; u[w + 4] = this.lossless ? 1 : 0;
    u[w + 5] = this.S; u[w + 6] = K0[0]; u[w + 7] = K0[1]; u[w + 8] = K1[0]; u[w + 9] = K1[1];
    u[w + 10] = rot; u[w + 11] = 16 + (this.palette ? 1 : 3 * this.K);
    const fo = (P + 48) >> 3;
    f[fo] = g.originX; f[fo + 1] = g.originY; f[fo + 2] = g.originZ; f[fo + 3] = g.cellSize; f[fo + 4] = this.posStep || 0;
    v.f32[(P + 88) >> 2] = FREED_OPACITY;
    v.u16[(P + 92) >> 1] = 4 * ZERO_FLOATS[0]; v.u16[(P + 94) >> 1] = 4 * ZERO_FLOATS[1];
    if (this.palette) {
      u[w + 24] = this.palette; u[w + 25] = PN; u[w + 26] = this.restWidth; u[w + 27] = desc;
      for (let r = 0; r < PN; r++) {
        const c = (desc >> 2) + 8 * r;
        u.fill(0, c, c + 8);
        u[c] = this.restMaxU[r]; u[c + 1] = this.restNeg[r]; u[c + 2] = PK0[r + 2]; u[c + 3] = PK1[r + 2]; u[c + 4] = pt[r];
      }
    }
    for (let j = 0; j < NC; j++) {
      const c = w + 32 + 8 * j;
      u[c] = this.ck[j]; u[c + 1] = this.ci[j]; u[c + 2] = this.dataOff[j]; u[c + 3] = K0[j + 2]; u[c + 4] = K1[j + 2];
      u[c + 5] = this.compMaxU[j]; u[c + 6] = this.compMinNegU[j];
      u[c + 7] = tp[j];
    }
    const own = { ptrs, free() { for (const p of this.ptrs) W.release(p); this.ptrs = []; } };
    this._own = own;
    if (finalizer) finalizer.register(this, own, own);
    return P;
  }

  /** Frees the kernel copy of the profile (the profile is unusable afterwards). */
  release() {
    if (finalizer) finalizer.unregister(this._own);
    this._own.free();
    this.P = 0;
  }

  /** degree(j) of SH_REST component j (2.3). */
  degreeOf(j) { return Math.floor(Math.sqrt((j % this.K) + 1)); }

  /** band_components(l) of 6.1: SH_REST component indices of band l. */
  bandComponents(l) {
    const out = [];
    for (let c = 0; c < 3; c++) for (let i = 0; i <= 2 * l; i++) out.push(c * this.K + l * l - 1 + i);
    return out;
  }

  buildTables() {
    const q = this.q;
    const uniform = (lo, hi, bits) => {
      const n = 2 ** bits - 1, step = (hi - lo) / n, t = new Float32Array(n + 1);
      for (let c = 0; c <= n; c++) t[c] = lo + c * step;
      return t;
    };
    this.scaleTable = uniform(q.scaleMin, q.scaleMax, q.scaleBits);
    this.dcTable = uniform(q.dcMin, q.dcMax, q.dcBits);
    const ob = 2 ** q.opacityBits;
    this.opacityTable = new Float32Array(ob);
    for (let c = 0; c < ob; c++) { const a = (c + 0.5) / ob; this.opacityTable[c] = Math.log(a / (1 - a)); }
    const rn = 2 ** q.rotationBits - 1;
    this.rotTable = new Float64Array(rn + 1);
    for (let c = 0; c <= rn; c++) this.rotTable[c] = c * Math.SQRT2 / rn - Math.SQRT1_2;
    this.posStep = this.grid.cellSize / 2 ** q.positionBits;
    // SH_REST (of a Gaussian, or of a palette entry): per degree, a table over the unsigned pattern
    // of width w (signed reading)
    this.restTables = [];
    const w = this.restWidth, size = 2 ** (8 * w);
    for (let l = 1; l <= this.shDegree; l++) {
      const M = this.restM[l - 1], step = q.restRange[l - 1] / M, t = new Float32Array(size);
      for (let u = 0; u < size; u++) { const c = u >= size / 2 ? u - size : u; t[u] = c * step; }
      this.restTables.push(t);
    }
    this.restCompTable = [];
    for (let r = 0; r < 3 * this.K; r++) this.restCompTable.push(this.restTables[this.degreeOf(r) - 1]);
    // a palette index's slot float is the index itself (layout.mjs)
    this.indexTable = null;
    if (this.palette) {
      this.indexTable = new Float32Array(this.palette);
      for (let e = 0; e < this.palette; e++) this.indexTable[e] = e;
    }
    // per component: the table from code to float (null for POSITION and ROTATION, computed)
    this.compTable = [];
    for (let j = 0; j < this.NC; j++) {
      this.compTable.push(j < 3 || (j >= 6 && j < 10) ? null : j < 6 ? this.scaleTable : j === 10 ? this.opacityTable
        : j < 14 ? this.dcTable : this.palette ? this.indexTable : this.restCompTable[j - 14]);
    }
  }
}
