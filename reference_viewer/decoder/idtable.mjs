// The id table of the scene store (u64 id -> slot, in the wasm kernel: 8-byte entries of a tag and a
// slot, linear probing, backward-shift deletion, load <= 1/2; a tag match is confirmed by the slot's
// key, its id; decoder/wasm/kernel.ts) as a standalone object, for its tests and tools. As in a
// store, a slot belongs to one id at a time: the table keeps the id of each slot (its keys array,
// in the kernel heap, grown as slots need), as the store's rows do.
import { K, alloc, allocating, finalizer, views } from './kernel.mjs';

const big = (lo, hi) => (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);

export class IdTable {
  constructor(expected = 16) {
    this._own = {
      t: allocating('id table', () => K.idtNew(expected)), keys: 0,
      free() { if (this.t) K.idtFree(this.t); if (this.keys) K.release(this.keys); this.t = 0; this.keys = 0; },
    };
    this._cap = 0;
    if (finalizer) finalizer.register(this, this._own, this._own);
  }
  get size() { return K.idCountOf(this._own.t); }
  get(lo, hi) { return K.idGet(this._own.t, big(lo, hi)); }
  /** Inserts or overwrites with slot `value` (>= 0; a slot of another live id must not be reused). Returns the previous value or -1. */
  set(lo, hi, value) {
    if (!(Number.isInteger(value) && value >= 0 && value < 2 ** 28)) throw new RangeError(`IdTable slot ${value}`);
    if (value >= this._cap) this._grow(value + 1);
    // the slot's key first: the table confirms a tag match against it (an overwrite finds the id's
    // entry through its old slot's key, which stays as it was)
    const v = views().u32, k = (this._own.keys >> 2) + 2 * value;
    v[k] = lo >>> 0; v[k + 1] = hi >>> 0;
    return allocating('id table', () => K.idSet(this._own.t, big(lo, hi), value));
  }
  delete(lo, hi) { return K.idDelete(this._own.t, big(lo, hi)); }
  /** Makes room for `n` entries in total (may reallocate now). */
  reserve(n) { allocating('id table', () => K.idReserve(this._own.t, n)); }
  release() { this._own.free(); if (finalizer) finalizer.unregister(this._own); }
  _grow(need) {
    const cap = Math.max(need, 2 * this._cap, 64), p = alloc(8 * cap, 'id table keys'), v = views().u8;
    if (this._own.keys) { v.copyWithin(p, this._own.keys, this._own.keys + 8 * this._cap); K.release(this._own.keys); }
    this._own.keys = p; this._cap = cap;
    K.idKeyBase(this._own.t, p);
  }
}
