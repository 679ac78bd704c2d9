// The stream's profile (SPEC.md 5): code widths, code validity, dequantization; header domains (4.6, 3.1, 5.7).
import { fail } from './errors.mjs';

export const ATTR = Object.freeze({ POSITION: 0, SCALE: 1, ROTATION: 2, OPACITY: 3, SH_DC: 4, SH_REST: 5 });
export const ATTR_NAMES = ['position', 'scale', 'rotation', 'opacity', 'sh_dc', 'sh_rest'];
const F32_MAX = 3.4028234663852886e38;
const finite = (x) => Number.isFinite(x) && Math.abs(x) <= F32_MAX;
const wb = (bits) => (bits <= 8 ? 1 : 2);

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
  const q = h.quantization, d = h.shDegree;
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
 * ROTATION 4, OPACITY, SH_DC r g b, SH_REST 3K channel-major). NC = 14 + 3K components.
 */
export class Profile {
  constructor(h) {
    this.shDegree = h.shDegree;
    const d = h.shDegree, K = (d + 1) * (d + 1) - 1;
    this.K = K;
    this.NC = 14 + 3 * K;
    this.grid = h.grid;
    this.q = h.quantization;
    this.lossless = !this.q;
    this.fullMask = d >= 1 ? 0x3F : 0x1F;
    this.B = h.grid.cellBits;
    this.S = h.grid.slotBits;
    this.idBits = 3 * this.B + this.S;
    const q = this.q;
    // attribute -> [first component, count, width]
    const C = [3, 3, 4, 1, 3, 3 * K];
    const W = q
      ? [4, wb(q.scaleBits), wb(q.rotationBits), wb(q.opacityBits), wb(q.dcBits),
         d ? wb(Math.max(...q.restBits.slice(0, d))) : 1]
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
    // float offset of component j within a store slot (store.mjs contract)
    this.dataOff = new Uint8Array(NC);
    [0, 1, 2, 4, 5, 6, 8, 9, 10, 11, 3, 12, 13, 14].forEach((o, j) => { this.dataOff[j] = o; });
    for (let r = 0; r < 3 * K; r++) this.dataOff[14 + r] = 16 + r;
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
      for (let r = 0; r < 3 * K; r++) {
        const M = this.restM[this.degreeOf(r) - 1];
        set(14 + r, M, this.compMask[14 + r] + 1 - M);
      }
      this.buildTables();
    }
  }

  /** degree(j) of SH_REST component j (2.3). */
  degreeOf(j) { return Math.floor(Math.sqrt((j % this.K) + 1)); }

  /** band_components(l) of 6.1: SH_REST component indices of band l. */
  bandComponents(l) {
    const out = [];
    for (let c = 0; c < 3; c++) for (let i = 0; i <= 2 * l; i++) out.push(c * this.K + l * l - 1 + i);
    return out;
  }

  /** Index (into the first `n` entries) of the first invalid code of component j in `u`, or -1. */
  firstInvalid(j, u, n, off = 0) {
    if (this.lossless) {
      for (let i = 0; i < n; i++) if ((u[off + i] & 0x7F800000) === 0x7F800000) return i;
      return -1;
    }
    const maxU = this.compMaxU[j], neg = this.compMinNegU[j];
    if (maxU === 0xFFFFFFFF) return -1;
    if (neg) { for (let i = 0; i < n; i++) { const v = u[off + i]; if (v > maxU && v < neg) return i; } }
    else { for (let i = 0; i < n; i++) if (u[off + i] > maxU) return i; }
    return -1;
  }

  validCode(j, v) {
    if (this.lossless) return (v & 0x7F800000) !== 0x7F800000;
    const maxU = this.compMaxU[j], neg = this.compMinNegU[j];
    return v <= maxU || (neg !== 0 && v >= neg);
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
    // SH_REST: per degree, a table over the unsigned pattern of width w (signed reading)
    this.restTables = [];
    const w = this.attrWidth[5], size = 2 ** (8 * w);
    for (let l = 1; l <= this.shDegree; l++) {
      const M = this.restM[l - 1], step = q.restRange[l - 1] / M, t = new Float32Array(size);
      for (let u = 0; u < size; u++) { const c = u >= size / 2 ? u - size : u; t[u] = c * step; }
      this.restTables.push(t);
    }
    this.restCompTable = [];
    for (let r = 0; r < 3 * this.K; r++) this.restCompTable.push(this.restTables[this.degreeOf(r) - 1]);
    // per component: the table from code to float (null for POSITION and ROTATION, computed)
    this.compTable = [];
    for (let j = 0; j < this.NC; j++) {
      this.compTable.push(j < 3 || (j >= 6 && j < 10) ? null : j < 6 ? this.scaleTable : j === 10 ? this.opacityTable
        : j < 14 ? this.dcTable : this.restCompTable[j - 14]);
    }
  }
}
