// The id table of the scene store (u64 id -> slot, in the wasm kernel: linear probing, backward-shift
// deletion, load <= 1/2; decoder/wasm/kernel.ts) as a standalone object, for its tests and tools.
import { K, allocating, finalizer } from './kernel.mjs';

const big = (lo, hi) => (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);

export class IdTable {
  constructor(expected = 16) {
    this._own = { t: allocating('id table', () => K.idtNew(expected)), free() { if (this.t) K.idtFree(this.t); this.t = 0; } };
    if (finalizer) finalizer.register(this, this._own, this._own);
  }
  get size() { return K.idCountOf(this._own.t); }
  get(lo, hi) { return K.idGet(this._own.t, big(lo, hi)); }
  /** Inserts or overwrites. Returns the previous value or -1. */
  set(lo, hi, value) { return allocating('id table', () => K.idSet(this._own.t, big(lo, hi), value)); }
  delete(lo, hi) { return K.idDelete(this._own.t, big(lo, hi)); }
  /** Makes room for `n` entries in total (may reallocate now). */
  reserve(n) { allocating('id table', () => K.idReserve(this._own.t, n)); }
  release() { this._own.free(); if (finalizer) finalizer.unregister(this._own); }
}
