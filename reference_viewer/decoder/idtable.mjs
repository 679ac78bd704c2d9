// Open-addressing hash table from a u64 id (two u32 halves) to a non-negative int32 value
// (a slot). Linear probing, backward-shift deletion, load factor <= 1/2. Entries are
// interleaved (lo, hi, value, -) in one Int32Array, so a probe touches one cache line.
const EMPTY = -1;

function hash(lo, hi) {
  let h = Math.imul(lo ^ Math.imul(hi, 0x9E3779B1), 0x85EBCA6B);
  h ^= h >>> 15;
  h = Math.imul(h, 0xC2B2AE35);
  return h ^ (h >>> 13);
}

export class IdTable {
  constructor(expected = 16) {
    this.size = 0;
    this._alloc(IdTable.capacityFor(expected));
  }
  static capacityFor(n) {
    let c = 16;
    while (c < 2 * n) c *= 2;
    return c;
  }
  _alloc(cap) {
    this.cap = cap;
    this.mask = cap - 1;
    this.e = new Int32Array(cap * 4);
    for (let i = 2; i < this.e.length; i += 4) this.e[i] = EMPTY;
  }
  clear() {
    const e = this.e;
    for (let i = 2; i < e.length; i += 4) e[i] = EMPTY;
    this.size = 0;
  }
  /** Makes room for `n` entries in total without rehashing later (may reallocate now). */
  reserve(n) {
    if (2 * n <= this.cap) return;
    const old = this.e;
    this._alloc(IdTable.capacityFor(n));
    this.size = 0;
    for (let i = 0; i < old.length; i += 4) if (old[i + 2] !== EMPTY) this.set(old[i] >>> 0, old[i + 1] >>> 0, old[i + 2]);
  }
  get(lo, hi) {
    const e = this.e, mask = this.mask;
    lo |= 0; hi |= 0;
    let i = hash(lo, hi) & mask;
    for (;;) {
      const p = i << 2, v = e[p + 2];
      if (v === EMPTY) return -1;
      if (e[p] === lo && e[p + 1] === hi) return v;
      i = (i + 1) & mask;
    }
  }
  /** out[i] = get(lo[i], hi[i]) for i < n (one tight loop: the probes of different ids overlap). */
  getMany(lo, hi, n, out) {
    const e = this.e, mask = this.mask;
    for (let k = 0; k < n; k++) {
      const l = lo[k] | 0, h = hi[k] | 0;
      let x = Math.imul(l ^ Math.imul(h, 0x9E3779B1), 0x85EBCA6B);
      x ^= x >>> 15;
      x = Math.imul(x, 0xC2B2AE35);
      let i = (x ^ (x >>> 13)) & mask, r = -1;
      for (;;) {
        const p = i << 2, v = e[p + 2];
        if (v === EMPTY) break;
        if (e[p] === l && e[p + 1] === h) { r = v; break; }
        i = (i + 1) & mask;
      }
      out[k] = r;
    }
  }
  /** Inserts or overwrites. Returns the previous value or -1. */
  set(lo, hi, value) {
    if (2 * (this.size + 1) > this.cap) this.reserve(this.size + 1);
    const e = this.e, mask = this.mask;
    lo |= 0; hi |= 0;
    let i = hash(lo, hi) & mask;
    for (;;) {
      const p = i << 2, v = e[p + 2];
      if (v === EMPTY) { e[p] = lo; e[p + 1] = hi; e[p + 2] = value; this.size++; return -1; }
      if (e[p] === lo && e[p + 1] === hi) { e[p + 2] = value; return v; }
      i = (i + 1) & mask;
    }
  }
  delete(lo, hi) {
    const e = this.e, mask = this.mask;
    lo |= 0; hi |= 0;
    let i = hash(lo, hi) & mask;
    for (;;) {
      const p = i << 2, v = e[p + 2];
      if (v === EMPTY) return -1;
      if (e[p] === lo && e[p + 1] === hi) break;
      i = (i + 1) & mask;
    }
    const old = e[(i << 2) + 2];
    // backward-shift deletion
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      const q = j << 2;
      if (e[q + 2] === EMPTY) break;
      const home = hash(e[q], e[q + 1]) & mask;
      // the entry at j may move to i unless its home lies cyclically in (i, j]
      if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
        const p = i << 2;
        e[p] = e[q]; e[p + 1] = e[q + 1]; e[p + 2] = e[q + 2];
        i = j;
      }
    }
    e[(i << 2) + 2] = EMPTY;
    this.size--;
    return old;
  }
}
