// Open-addressing hash table from a u64 id (two u32 halves) to a non-negative int32 value
// (a slot). Linear probing, backward-shift deletion, load factor <= 1/2.
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
    this.klo = new Uint32Array(cap);
    this.khi = new Uint32Array(cap);
    this.val = new Int32Array(cap).fill(EMPTY);
  }
  clear() { this.val.fill(EMPTY); this.size = 0; }
  /** Makes room for `n` entries in total without rehashing later (may reallocate now). */
  reserve(n) {
    if (2 * n <= this.cap) return;
    const { klo, khi, val, cap } = this;
    this._alloc(IdTable.capacityFor(n));
    this.size = 0;
    for (let i = 0; i < cap; i++) if (val[i] !== EMPTY) this.set(klo[i], khi[i], val[i]);
  }
  get(lo, hi) {
    const { klo, khi, val, mask } = this;
    let i = hash(lo, hi) & mask;
    for (;;) {
      const v = val[i];
      if (v === EMPTY) return -1;
      if (klo[i] === lo && khi[i] === hi) return v;
      i = (i + 1) & mask;
    }
  }
  /** Inserts or overwrites. Returns the previous value or -1. */
  set(lo, hi, value) {
    if (2 * (this.size + 1) > this.cap) this.reserve(this.size + 1);
    const { klo, khi, val, mask } = this;
    let i = hash(lo, hi) & mask;
    for (;;) {
      const v = val[i];
      if (v === EMPTY) { klo[i] = lo; khi[i] = hi; val[i] = value; this.size++; return -1; }
      if (klo[i] === lo && khi[i] === hi) { val[i] = value; return v; }
      i = (i + 1) & mask;
    }
  }
  delete(lo, hi) {
    const { klo, khi, val, mask } = this;
    let i = hash(lo, hi) & mask;
    for (;;) {
      const v = val[i];
      if (v === EMPTY) return -1;
      if (klo[i] === lo && khi[i] === hi) break;
      i = (i + 1) & mask;
    }
    const old = val[i];
    // backward-shift deletion
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      if (val[j] === EMPTY) break;
      const home = hash(klo[j], khi[j]) & mask;
      // can the entry at j move to i? yes unless home lies cyclically in (i, j]
      if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
        klo[i] = klo[j]; khi[i] = khi[j]; val[i] = val[j];
        i = j;
      }
    }
    val[i] = EMPTY;
    this.size--;
    return old;
  }
}
