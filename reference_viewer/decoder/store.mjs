// SceneStore: the decoder's scene state (SPEC.md 2.5: ids and their codes) plus the dequantized
// float view the WebGPU renderer uploads.
//
// ============================================================================================
// STORE CONTRACT (the renderer depends on exactly this)
//
//   export class SceneStore {
//     shDegree     // 0..3
//     restCount    // K = (shDegree+1)^2 - 1
//     stride       // floats per slot: decoder/layout.mjs slotStride -> 16, 28, 40, 64
//     capacity     // slots allocated in data
//     data         // Float32Array(capacity * stride); slot s occupies [s*stride, (s+1)*stride)
//                  // (a view of the decoder's wasm memory: read it again after every frame)
//     highWater    // every slot in use (live or freed) is < highWater; the renderer draws [0, highWater)
//     live         // number of live Gaussians
//     generation   // incremented whenever data is reallocated or compacted (slots move), and on a
//                  // keyframe or a new header: the renderer re-uploads everything
//     takeDirty()  // -> { full: boolean, slots: Uint32Array }: slots written since the last call,
//                  //    ascending, unique; full === true when the generation changed since the
//                  //    last call (then slots may be empty and everything < highWater is to be
//                  //    re-uploaded)
//     paletteSize  // P, entries of the stream's SH palette (SPEC 5.9); 0: none
//     paletteData  // with a palette: Float32Array(P * 3K), entry e's dequantized SH rest floats at
//                  //    [e * 3K, (e + 1) * 3K), channel-major (a view of the decoder's wasm memory,
//                  //    like data); a slot's float 16 is then the index of its entry
//     paletteUsed  // entries at or past it are all zero (the highest entry set since the palette
//                  //    started, + 1)
//     takePaletteDirty() // -> Uint32Array: the entries set since the last call, ascending, unique;
//                  //    after a generation change the whole palette is to be re-uploaded
//   }
//
//   Slot layout: decoder/layout.mjs (the dequantized floats of the state's codes, PLY conventions).
//   A palette entry that changes changes the SH of every Gaussian that names it: their slots are not
//   rewritten (they hold the index), so the renderer resolves the index at draw time.
//
//   The store is mutated only by Decoder.readFrame after a frame has fully validated, so a
//   failed frame leaves data, highWater, live, generation, the palette and the dirty sets untouched.
//   A keyframe replaces everything (generation++); ADDs reuse freed slots (free list, most
//   recently freed first) before growing highWater; when more slots are free than live (and more
//   than 4096), the live slots are compacted down in slot order (generation++).
// ============================================================================================
//
// Internals (not part of the contract): the state lives in the wasm kernel's memory
// (decoder/wasm/kernel.ts, store record ST): one row of R u32 words per slot (id, the record's two
// lane sums, a staging mark, flags, then the codes at their width: profile.mjs _rowLayout), so that a
// delta's random access to a slot touches one cache line of the rows besides the slot's floats and
// its id-table entry; the floats; the id table; the free list; the dirty set (a bit per slot and a
// list). This class reads them through views and calls the kernel for every change. A stream that
// sends ranked blocks (SPEC 6.1, 1.2) also gets the live ids in order (order.mjs), made at its first
// one and kept by every change from then on.
import { K, views, allocating, arena, finalizer, blockRecord, blockField } from './kernel.mjs';
import { LiveOrder } from './order.mjs';

const NONE = new Uint32Array(0);
import { digestText } from './digest.mjs';
import { H_WORDS } from './profile.mjs';

export { FREED_OPACITY } from './layout.mjs';
export const H_LO = 0, H_HI = 1, H_S0 = 2, H_S1 = 3, H_MARK = 4, H_FLAGS = 5;
export { H_WORDS };
export const COMPACT_MIN_FREE = 4096;
const ALIVE = 1;
// ST field word indices (kernel.ts)
const F_ROWS = 1, F_DATA = 2, F_CAP = 3, F_HW = 4, F_LIVE = 5, F_LANE0 = 6, F_LANE1 = 7, F_GEN = 8;
const F_IDSIZE = 12, F_FREE = 13, F_FREECOUNT = 14, F_DIRTYLIST = 16, F_DIRTYCOUNT = 17, F_PALCODES = 18, F_PALFLOATS = 19;

const big = (lo, hi) => (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);

/** A kernel store record for the profile with room for `capacity` slots (LIMIT_EXCEEDED when out of memory). */
function newRecord(profile, capacity) {
  return allocating('scene store', () => K.storeNew(profile.P, capacity));
}

export class SceneStore {
  constructor(profile, capacity = 0) {
    this._gen = 0;
    this._lastTakenGeneration = 0;
    this._order = null;
    this._own = { st: 0, free() { if (this.st) K.storeFree(this.st); this.st = 0; } };
    if (finalizer) finalizer.register(this, this._own, this._own);
    this.reset(profile, capacity);
    this._lastTakenGeneration = this.generation;
  }

  /** Empties the store for a (new) profile; generation++. */
  reset(profile, capacity = 0) {
    const st = newRecord(profile, capacity);
    const before = this._own.st ? this.generation : this._gen;
    this._setOrder(null);
    this._own.free();
    this._own.st = st;
    this._gen = before + 1;   // the new record counts from 0
    this.profile = profile;
    this.shDegree = profile.shDegree;
    this.restCount = profile.K;
    this.NC = profile.NC;
    this.stride = profile.stride;
    this.R = profile.R; this.ck = profile.ck; this.ci = profile.ci;
    this.paletteSize = profile.palette;
    this._dataView = null;
    this._palView = null;
    // entries set since the renderer last took them: a flag per entry and their list (made when
    // the first entry is set: a keyframe's store under construction has none)
    this._palMark = null; this._palList = null;
    this._palCount = 0; this._palUsed = 0;
  }

  /** Frees the store's kernel memory (the store is unusable afterwards). */
  release() {
    this._setOrder(null);
    this._own.free();
    if (finalizer) finalizer.unregister(this._own);
  }

  get st() { return this._own.st; }
  _f(i) { return this._own.st ? views().u32[(this._own.st >> 2) + i] : 0; }   // released: an empty store
  _set(i, v) { views().u32[(this._own.st >> 2) + i] = v; }

  get capacity() { return this._f(F_CAP); }
  get highWater() { return this._f(F_HW); }
  get live() { return this._f(F_LIVE); }
  get lane0() { return this._f(F_LANE0); }
  get lane1() { return this._f(F_LANE1); }
  set lane0(v) { this._set(F_LANE0, v >>> 0); }
  set lane1(v) { this._set(F_LANE1, v >>> 0); }
  get generation() { return this._gen + this._f(F_GEN); }
  get freeCount() { return this._f(F_FREECOUNT); }
  /** The free list (most recently freed last). */
  get freeList() { const p = this._f(F_FREE) >> 2; return views().i32.subarray(p, p + this.freeCount); }
  /** The dirty slots in the order they were written (not yet taken). */
  get dirtyList() { const p = this._f(F_DIRTYLIST) >> 2; return views().u32.subarray(p, p + this._f(F_DIRTYCOUNT)); }
  /** Entries of the id table. */
  get idCount() { return this._f(F_IDSIZE); }

  /** The slot floats (contract above): a view of the kernel memory, renewed when it moved. */
  get data() {
    if (!this._own.st) return new Float32Array(0);
    const v = views(), p = this._f(F_DATA), n = this.capacity * this.stride, d = this._dataView;
    if (d && d.buffer === v.f32.buffer && d.byteOffset === p && d.length === n) return d;
    return (this._dataView = new Float32Array(v.f32.buffer, p, n));
  }
  /** The palette's floats (contract above), or an empty array without a palette. */
  get paletteData() {
    const p = this._own.st ? this._f(F_PALFLOATS) : 0;
    if (!p) return new Float32Array(0);
    const v = views(), n = this.paletteSize * this.profile.entryFloats, d = this._palView;
    if (d && d.buffer === v.f32.buffer && d.byteOffset === p && d.length === n) return d;
    return (this._palView = new Float32Array(v.f32.buffer, p, n));
  }
  /** The 3K codes of palette entry e (unsigned patterns of the entry code width), a copy. */
  paletteCodes(e) {
    const n = this.profile.entryFloats, w = this.profile.restWidth, p = this._f(F_PALCODES), v = views();
    return Uint32Array.from(w === 1 ? v.u8.subarray(p + n * e, p + n * (e + 1)) : v.u16.subarray((p >> 1) + n * e, (p >> 1) + n * (e + 1)));
  }
  get paletteUsed() { return this._palUsed; }
  /** Records that the n palette entries whose u16 indices are at `idx` (kernel memory, ascending) were set. */
  _paletteSet(idx, n) {
    if (n === 0) return;
    if (!this._palMark) { this._palMark = new Uint8Array(this.paletteSize); this._palList = new Uint32Array(this.paletteSize); }
    const u16 = views().u16, o = idx >> 1, mark = this._palMark, list = this._palList;
    let c = this._palCount;
    for (let i = 0; i < n; i++) {
      const e = u16[o + i];
      if (!mark[e]) { mark[e] = 1; list[c++] = e; }
    }
    this._palCount = c;
    if (u16[o + n - 1] + 1 > this._palUsed) this._palUsed = u16[o + n - 1] + 1;
  }
  takePaletteDirty() {
    const c = this._palCount;
    if (c === 0) return NONE;
    const out = this._palList.slice(0, c).sort();
    for (let i = 0; i < c; i++) this._palMark[out[i]] = 0;
    this._palCount = 0;
    return out;
  }
  _paletteClean() {
    for (let i = 0; i < this._palCount; i++) this._palMark[this._palList[i]] = 0;
    this._palCount = 0;
  }

  /** The rows (u32 words, R per slot): tests and tools. */
  get rows() { const p = this._f(F_ROWS) >> 2; return views().u32.subarray(p, p + this.capacity * this.R); }
  _word(s, i) { return views().u32[(this._f(F_ROWS) >> 2) + s * this.R + i]; }

  digestText() { return digestText(this.live, this.lane0, this.lane1); }

  // ------------------------------------------------------------------ renderer side
  takeDirty() {
    const gen = this.generation, full = gen !== this._lastTakenGeneration;
    this._lastTakenGeneration = gen;
    const n = this._f(F_DIRTYCOUNT), st = this._own.st;
    if (!st) return { full, slots: new Uint32Array(0) };   // released
    let slots;
    if (full) slots = new Uint32Array(0);
    else if (n > ((this.capacity + 31) >>> 9)) {   // many: a scan of the bits gives them ascending
      const tmp = arena.take(4 * n);
      const k = K.dirtyScan(st, tmp);
      slots = views().u32.slice(tmp >> 2, (tmp >> 2) + k);
    } else slots = this.dirtyList.slice().sort();
    K.clearDirty(st);
    return { full, slots };
  }

  isAlive(s) { return (this._word(s, H_FLAGS) & ALIVE) !== 0; }
  idLoOf(s) { return this._word(s, H_LO); }
  idHiOf(s) { return this._word(s, H_HI); }

  /** Code of component j of slot s (unsigned, zero-extended). */
  code(s, j) {
    const k = this.ck[j], i = this.ci[j], b = this._f(F_ROWS) + 4 * s * this.R, v = views();
    return k === 4 ? v.u32[(b >> 2) + i] : k === 2 ? v.u16[(b >> 1) + i] : v.u8[b + i];
  }
  /** The NC codes of slot s as a Uint32Array. */
  codesOf(s) {
    const out = new Uint32Array(this.NC);
    for (let j = 0; j < this.NC; j++) out[j] = this.code(s, j);
    return out;
  }

  // ------------------------------------------------------------------ decoder side
  lookup(lo, hi) { return K.idGet(this._own.st, big(lo, hi)); }

  /** The live ids in order (a LiveOrder), or null: none was needed since the stream or its last keyframe began. */
  get order() { return this._order || null; }
  /** The live ids in order, made now from the store's rows when there is none (LIMIT_EXCEEDED when out of memory). */
  liveOrder() { return this._order || (this._order = LiveOrder.ofStore(this._own.st)); }
  /** Replaces the order (null: none; made again when a ranked block needs it). */
  _setOrder(ord) {
    if (this._order && this._order !== ord) this._order.release();
    this._order = ord;
  }

  /**
   * Makes room for `adds` more Gaussians (after `freedFirst` slots are freed) and a table of
   * `liveAfter` ids without touching the state visible to the renderer (except by a reallocation,
   * which bumps generation). Called before a commit, so that the commit itself cannot fail half-way.
   */
  reserve(adds, liveAfter, freedFirst = 0, slack = 0) {
    allocating('scene store', () => K.storeReserve(this._own.st, adds, liveAfter, freedFirst, slack));
  }

  /**
   * Adds the Gaussian `id` (lo, hi) with the given codes (NC values, valid) the way a frame's ADD
   * does (the kernel's addCheck and commitAdd, room reserved): a freed slot or a new one, row, id
   * table, record sums, lanes, floats, dirty. Returns its slot, or -1 when the id is live or a code
   * invalid (then nothing changed). Tools and tests; frames go through Decoder.readFrame.
   */
  addGaussian(lo, hi, codes) {
    const p = this.profile, ids = arena.take(8), comps = [];
    for (let j = 0; j < this.NC; j++) {
      const w = this.ck[j], src = arena.take(w);
      comps.push({ j, src });
      const v = views();
      if (w === 4) v.u32[src >> 2] = codes[j]; else if (w === 2) v.u16[src >> 1] = codes[j]; else v.u8[src] = codes[j];
    }
    const u = views().u32;
    u[ids >> 2] = lo; u[(ids >> 2) + 1] = hi;
    const bl = blockRecord({ n: 1, ids, mask: p.fullMask, comps }, false);
    if (K.addCheck(this._own.st, bl, 0xFFFFFFFF) !== 0) return -1;   // (no row carries that stamp)
    this.reserve(1, this.live + 1);
    if (this._order) this._order.reserve(1);
    this.lane0 = this.lane0 + blockField(bl, 14); this.lane1 = this.lane1 + blockField(bl, 15);
    if (this._order) this._order.insertIds(ids, 1);
    K.commitAdd(this._own.st, bl);
    return views().u32[(blockField(bl, 4) >> 2)];
  }

  /** Removes a live slot (id table, lane sums, freed opacity, free list, dirty): a DELETE's commit. */
  freeSlot(s) {
    const one = arena.take(12);
    views().u32[one >> 2] = s;
    K.laneSums(this._own.st, one, 1, one + 4);
    const u = views().u32;
    this.lane0 = this.lane0 - u[(one >> 2) + 1]; this.lane1 = this.lane1 - u[(one >> 2) + 2];
    if (this._order) this._order.removeSlots(this._own.st, one, 1, arena.take(8));
    K.commitDeletes(this._own.st, one, 1);
  }

  /** Compacts when more slots are free than live (and more than COMPACT_MIN_FREE). */
  maybeCompact() { K.maybeCompact(this._own.st, COMPACT_MIN_FREE); }

  /**
   * Takes over the contents of another store of the same profile (a keyframe's), with `order` as its
   * live ids in order (or none); generation++.
   */
  _adopt(t, order = null) {
    const before = this.generation;
    this._setOrder(order);
    this._own.free();
    this._own.st = t._own.st;
    t._own.st = 0;
    if (finalizer) finalizer.unregister(t._own);
    this._gen = before + 1 - this._f(F_GEN);
    this._dataView = null;
    this._palView = null;
    if (this._palMark) this._paletteClean();   // the generation changed: the whole palette is new
    this._palUsed = 0;
  }

  /** The live Gaussians as {id: BigInt, slot, codes: Uint32Array(NC)}, ids ascending (tests, tools). */
  entries() {
    const out = [];
    for (let s = 0; s < this.highWater; s++) {
      if (!this.isAlive(s)) continue;
      out.push({ id: big(this.idLoOf(s), this.idHiOf(s)), slot: s, codes: this.codesOf(s) });
    }
    out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    return out;
  }
}
