// The live ids in ascending order (rank -> id), which ranked blocks need (SPEC 6.1, 1.2: UPDATE_RANKED
// and DELETE_RANKED name Gaussians by their rank among the ids live before the frame). The store keeps
// id -> slot in a hash table, which has no order, so this is a second structure beside it, in the wasm
// kernel (decoder/wasm/order.ts: a B+ tree of fixed height with counts, leaves of up to 64 ids; a
// select walks the counts, an insert or delete touches the one leaf it lands in). A store
// makes it only when a stream sends its first ranked block (SceneStore.liveOrder), so streams without
// them never pay for it; from then on every frame's commit keeps it up to date (apply.mjs), and a
// keyframe rebuilds it from its ADD blocks' ids.
import { GsdError } from './errors.mjs';
import { K, allocating, finalizer, views, alloc, arena } from './kernel.mjs';

/** Ids per leaf of the kernel's structure. */
export const ORDER_LEAF = K.LB.value;

export class LiveOrder {
  constructor() {
    this._own = { o: K.ordNew(), free() { if (this.o) K.ordFree(this.o); this.o = 0; } };
    if (finalizer) finalizer.register(this, this._own, this._own);
  }

  /** The live ids of a kernel store st, ascending (LIMIT_EXCEEDED when out of memory). */
  static ofStore(st) {
    const ord = new LiveOrder();
    ord._build(() => K.ordFromStore(ord.o, st), 'a store row');
    return ord;
  }
  /** The n ids at ids (kernel memory; sorted there in place unless ascending), all distinct. */
  static ofIds(ids, n) {
    const ord = new LiveOrder();
    ord._build(() => K.ordBuild(ord.o, ids, n), 'the ids');
    return ord;
  }
  _build(f, what) {
    let r;
    try { r = allocating('live id order', f); } catch (e) { this.release(); throw e; }
    if (r !== 0) { this.release(); throw new GsdError('MALFORMED', `internal: an id twice in ${what}`); }
  }

  get o() { return this._own.o; }
  get size() { return K.ordSize(this._own.o); }
  /** Leaves and pages in use (tests, tools). */
  get leaves() { return K.ordLeaves(this._own.o); }
  get pages() { return K.ordPages(this._own.o); }

  /** Room for `adds` inserts, so that insertIds cannot fail half-way (LIMIT_EXCEEDED when out of memory). */
  reserve(adds) { allocating('live id order', () => K.ordReserve(this._own.o, adds)); }
  /** The ids of n ascending u32 ranks (kernel memory) into out (n u64): -1, or the index of the first rank >= size. */
  select(ranks, n, out) { return K.ordSelect(this._own.o, ranks, n, out); }
  /**
   * The ids of several lists of ascending ranks ([{ranks, n}], kernel memory) into outs (a pointer of
   * n u64 per list), in one walk (a frame's ranked blocks), and where a list has hints (a pointer of n
   * u64, or 0), their places for removeHinted: -1, or the index of a list with a rank >= size.
   */
  selectLists(lists, outs, hints = []) {
    const k = lists.length, rec = arena.take(32 * k), u = views().u32;
    lists.forEach((b, j) => {
      const w = (rec >> 2) + 6 * j;
      u[w] = b.ranks; u[w + 1] = b.n; u[w + 2] = outs[j]; u[w + 3] = 0; u[w + 4] = hints[j] || 0; u[w + 5] = 0;
    });
    return K.ordSelectLists(this._own.o, rec, k, rec + 24 * k);
  }
  /** Inserts n ids (kernel memory; room reserved): the count of those present already. */
  insertIds(ids, n) { return K.ordInsertIds(this._own.o, ids, n); }
  /** Removes n ids (kernel memory): the count of those absent. */
  removeIds(ids, n) { return K.ordRemoveIds(this._own.o, ids, n); }
  /**
   * Removes n ascending ids selected by ranks, at the places selectLists gave for them (first, before
   * other changes, so that the places mostly hold): the count of those absent.
   */
  removeHinted(ids, hints, n) { return K.ordRemoveHinted(this._own.o, ids, hints, n); }
  /** Removes the ids of n slots (kernel memory) of the kernel store st, through a scratch of n u64: the count of those absent. */
  removeSlots(st, slots, n, scratch) { return K.ordRemoveSlots(this._own.o, st, slots, n, scratch); }

  // ---- one id at a time (tests and tools): ids are BigInts below 2^63
  insert(id) { this.reserve(1); return K.ordInsert(this._own.o, id) === 0; }
  remove(id) { return K.ordRemove(this._own.o, id) === 0; }
  /** The id of rank r (0 <= r < size). */
  at(r) {
    if (!(Number.isInteger(r) && r >= 0 && r < this.size)) throw new RangeError(`rank ${r} of ${this.size}`);
    return BigInt.asUintN(64, K.ordAt(this._own.o, r));
  }
  /** Every id, ascending, as a BigUint64Array. */
  toArray() {
    const n = this.size, p = alloc(8 * n, 'live id order copy');
    try {
      K.ordCopy(this._own.o, p);
      return views().u64.slice(p >> 3, (p >> 3) + n);
    } finally { K.release(p); }
  }
  /** The ids of the ranks of an array (ascending u32 values): a BigUint64Array, or null when one is >= size. */
  selectArray(ranks) {
    const n = ranks.length, p = alloc(12 * n + 8, 'live id order select');
    try {
      views().u32.set(ranks, p >> 2);
      const out = (p + 4 * n + 7) & ~7;
      if (this.select(p, n, out) >= 0) return null;
      return views().u64.slice(out >> 3, (out >> 3) + n);
    } finally { K.release(p); }
  }
  /** The kernel's invariant check: 0 when they hold (order.ts ordCheck). */
  check() { return allocating('live id order check', () => K.ordCheck(this._own.o)); }

  release() { this._own.free(); if (finalizer) finalizer.unregister(this._own); }
}
