// The live ids of a store in ascending order, for ranked ids (SPEC 6.1, 1.2: an UPDATE_RANKED or
// DELETE_RANKED block names Gaussians by their rank among the ids live before the frame). The store's
// id table is a hash table, with no order; this order is kept beside it only for streams that send
// ranked blocks (decoder/order.mjs makes it at the first one), so it costs nothing elsewhere, and its
// cost per frame follows the frame's changes, not the scene: a B+ tree of fixed height with counts.
// Leaves hold up to LB ids (512 bytes, eight cache lines); pages up to PB leaf entries (first id, id
// count, leaf) in 4 KiB; the root lists the pages (first id, id count, page). A frame's ranks are
// selected in one walk over the counts. An insert or a delete finds its leaf (at the place its rank
// was selected, or on from the id before it in an ascending batch, or by a search through the root
// and its page) and moves the ids after it in that leaf only; a batch reads its leaves first, so that
// their misses overlap (one search at a time waits for each of a leaf's lines in turn). A full leaf
// or page splits in two; one merges with a neighbour when the two hold at most half of one, so any
// two neighbours hold more than that. Compiled as part of
// kernel.ts (which exports these functions), on its rules: every count looped over was sized by the
// caller, and memory is allocated (ordReserve, ordBuild) before anything changes.
//
// Record O (O_SIZE bytes): 0 n (ids), 4 np (pages in use), 8 pcap (pages of the pool = root entries),
//   12 nl (leaves in use), 16 lcap (leaves of the pool), 20 rfirst (u64[pcap]: each page's first id),
//   24 rcnt (u32[pcap]: its ids), 28 rpage (u32[pcap]: its pool index), 32 pages (pcap pages of PS
//   bytes), 36 pfree (u32[pcap]: unused pages, a stack), 40 pfc, 44 leaves (lcap leaves of LB u64),
//   48 lfree (u32[lcap]), 52 lfc. The pools are page-aligned (their heap pointer in the word before).
// Page (PS bytes): 0 m (entries), 16 first (u64[PB]), P_CNT cnt (u32[PB]), P_LEAF leaf (u32[PB]).

/** Ids per leaf. */
export const LB: u32 = 64;
const LB8: usize = 8 * <usize>LB;
/** Leaf entries per page. */
const PB: u32 = 255;
const PS: usize = 4096, P_FIRST: usize = 16, P_CNT: usize = P_FIRST + 8 * <usize>PB, P_LEAF: usize = P_CNT + 4 * <usize>PB;
/** Ids per leaf and entries per page of a build: room for inserts before anything splits. */
const LF: u32 = 48, PF: u32 = 192;
/** Ids per batch of ordInsertIds and ordRemoveIds whose leaves are read first. */
const BATCH: usize = 64;
const O_SIZE: usize = 56;

/** Sum of the words read only to bring leaves into the cache (kept so the reads are not optimised away). */
export let ordWarm: u32 = 0;

export function ordNew(): usize {
  const o = heap.alloc(O_SIZE);
  memory.fill(o, 0, O_SIZE);
  return o;
}

export function ordFree(o: usize): void {
  if (load<u32>(o, 8)) {
    heap.free(load<usize>(o, 20)); heap.free(load<usize>(o, 24)); heap.free(load<usize>(o, 28));
    heap.free(load<usize>(load<usize>(o, 32) - 4)); heap.free(load<usize>(o, 36));
  }
  if (load<u32>(o, 16)) { heap.free(load<usize>(load<usize>(o, 44) - 4)); heap.free(load<usize>(o, 48)); }
  heap.free(o);
}

export function ordSize(o: usize): u32 { return load<u32>(o); }
/** Leaves in use. */
export function ordLeaves(o: usize): u32 { return load<u32>(o, 12); }
/** Pages in use. */
export function ordPages(o: usize): u32 { return load<u32>(o, 4); }

@inline function pageAt(o: usize, k: u32): usize { return load<usize>(o, 32) + PS * <usize>k; }
@inline function leafAt(o: usize, k: u32): usize { return load<usize>(o, 44) + LB8 * <usize>k; }

/** count blocks of `each` bytes on a 4 KiB page; traps past what the heap can give. */
function poolAlloc(count: u32, each: usize): usize {
  const n = <u64>count * <u64>each;
  if (n > 0x3FF00000) unreachable();
  const raw = heap.alloc(<usize>n + 4096), p = (raw + 4 + 4095) & ~<usize>4095;
  store<usize>(p - 4, raw);
  return p;
}
/** A stack of the indices [used, cap) (the lowest on top) under the old stack's fc entries at old. */
function freeStack(cap: u32, used: u32, old: usize, fc: u32): usize {
  const s = heap.alloc(4 * <usize>cap);
  let k: usize = 0;
  for (let j = cap; j > used; j--) store<u32>(s + 4 * k++, j - 1);
  if (fc) memory.copy(s + 4 * k, old, 4 * <usize>fc);
  return s;
}

/** The page pool and root at capacity cap (> the current one), the used part copied (may trap: nothing changed then). */
function growPages(o: usize, cap: u32): void {
  const old = load<u32>(o, 8), np = <usize>load<u32>(o, 4), fc = load<u32>(o, 40);
  const rf = heap.alloc(8 * <usize>cap), rc = heap.alloc(4 * <usize>cap), rp = heap.alloc(4 * <usize>cap);
  const pages = poolAlloc(cap, PS), free = freeStack(cap, old, old ? load<usize>(o, 36) : 0, fc);
  if (old) {
    memory.copy(rf, load<usize>(o, 20), 8 * np); memory.copy(rc, load<usize>(o, 24), 4 * np);
    memory.copy(rp, load<usize>(o, 28), 4 * np); memory.copy(pages, load<usize>(o, 32), PS * <usize>old);
    heap.free(load<usize>(o, 20)); heap.free(load<usize>(o, 24)); heap.free(load<usize>(o, 28));
    heap.free(load<usize>(load<usize>(o, 32) - 4)); heap.free(load<usize>(o, 36));
  }
  store<usize>(o, rf, 20); store<usize>(o, rc, 24); store<usize>(o, rp, 28); store<usize>(o, pages, 32);
  store<usize>(o, free, 36); store<u32>(o, cap, 8); store<u32>(o, fc + cap - old, 40);
}
/** The leaf pool at capacity cap (> the current one), likewise. */
function growLeaves(o: usize, cap: u32): void {
  const old = load<u32>(o, 16), fc = load<u32>(o, 52);
  const leaves = poolAlloc(cap, LB8), free = freeStack(cap, old, old ? load<usize>(o, 48) : 0, fc);
  if (old) {
    memory.copy(leaves, load<usize>(o, 44), LB8 * <usize>old);
    heap.free(load<usize>(load<usize>(o, 44) - 4)); heap.free(load<usize>(o, 48));
  }
  store<usize>(o, leaves, 44); store<usize>(o, free, 48); store<u32>(o, cap, 16); store<u32>(o, fc + cap - old, 52);
}
@inline function takePage(o: usize): u32 {
  const fc = load<u32>(o, 40) - 1;
  store<u32>(o, fc, 40);
  return load<u32>(load<usize>(o, 36) + 4 * <usize>fc);
}
@inline function putPage(o: usize, k: u32): void {
  const fc = load<u32>(o, 40);
  store<u32>(load<usize>(o, 36) + 4 * <usize>fc, k);
  store<u32>(o, fc + 1, 40);
}
@inline function takeLeaf(o: usize): u32 {
  const fc = load<u32>(o, 52) - 1;
  store<u32>(o, fc, 52);
  store<u32>(o, load<u32>(o, 12) + 1, 12);
  return load<u32>(load<usize>(o, 48) + 4 * <usize>fc);
}
@inline function putLeaf(o: usize, k: u32): void {
  const fc = load<u32>(o, 52);
  store<u32>(load<usize>(o, 48) + 4 * <usize>fc, k);
  store<u32>(o, fc + 1, 52);
  store<u32>(o, load<u32>(o, 12) - 1, 12);
}

/**
 * Room for `adds` inserts, so that inserting them cannot fail half-way (may trap: nothing changed
 * then). Each insert splits at most one leaf; a split takes a leaf of LB ids to two of LB / 2, so with
 * the ids over LB / 2 per leaf as potential (at most nl LB / 2 to start with, one more per insert,
 * LB / 2 less per split) there are at most nl + 2 adds / LB leaf splits; likewise for pages, whose
 * entries are one per leaf.
 */
export function ordReserve(o: usize, adds: u32): void {
  if (adds == 0) return;
  const nl = <u64>load<u32>(o, 12), np = <u64>load<u32>(o, 4);
  let ls = nl + (<u64>2 * <u64>adds) / <u64>LB + 1;
  if (ls > <u64>adds) ls = <u64>adds;
  let ps = np + (<u64>2 * ls) / <u64>PB + 1;
  if (ps > ls) ps = ls;
  const needL = nl + ls + 1, needP = np + ps + 1;   // (+ 1: the first leaf and page of an empty order)
  const lcap = <u64>load<u32>(o, 16), pcap = <u64>load<u32>(o, 8);
  if (needL > 0x200000 || needP > 0x40000) unreachable();   // past the heap
  if (needP > pcap) growPages(o, <u32>(needP > pcap + (pcap >>> 1) ? needP : pcap + (pcap >>> 1)));
  if (needL > lcap) growLeaves(o, <u32>(needL > lcap + (lcap >>> 1) ? needL : lcap + (lcap >>> 1)));
}

/** The index of the last of the m ascending u64 at p that is <= id, else 0 (m > 0). */
@inline function lastAtMost(p: usize, m: u32, id: u64): usize {
  let b: usize = 0, len = <usize>m;
  while (len > 1) {
    const h = len >> 1;
    b = load<u64>(p + 8 * (b + h)) <= id ? b + h : b;
    len -= h;
  }
  return b;
}
/** The index of the first of the c ascending ids at p that is >= id (c when none). */
@inline function lowerBound(p: usize, c: u32, id: u64): usize {
  if (c == 0) return 0;
  let b: usize = 0, len = <usize>c;
  while (len > 1) {
    const h = len >> 1;
    b = load<u64>(p + 8 * (b + h - 1)) < id ? b + h : b;
    len -= h;
  }
  return b + <usize>(load<u64>(p + 8 * b) < id);
}

/** Root entry r and its page's entry e where id belongs (the order is not empty): r | e << 32. */
@inline function find(o: usize, id: u64): u64 {
  const r = lastAtMost(load<usize>(o, 20), load<u32>(o, 4), id);
  const P = pageAt(o, load<u32>(load<usize>(o, 28) + 4 * r));
  return <u64>r | (<u64>lastAtMost(P + P_FIRST, load<u32>(P), id) << 32);
}
/**
 * find(o, id), given where it was before the batch's earlier changes (re, from warmLeaves or a
 * select's hints): kept when it is still the place (its first id <= id < the next entry's), else
 * searched again (a split or merge moved it). An re of no place (r >= np) searches.
 */
@inline function refind(o: usize, id: u64, re: u64): u64 {
  const r = <usize><u32>re, e = <usize>(re >>> 32), np = <usize>load<u32>(o, 4);
  if (r < np) {
    const P = pageAt(o, load<u32>(load<usize>(o, 28) + 4 * r)), m = <usize>load<u32>(P);
    if (e < m && (load<u64>(P + P_FIRST + 8 * e) <= id || (r | e) == 0)
        && (e + 1 < m ? id < load<u64>(P + P_FIRST + 8 * (e + 1)) : r + 1 == np || id < load<u64>(load<usize>(o, 20) + 8 * (r + 1)))) {
      return re;
    }
  }
  return find(o, id);
}
/** The places of a batch's ids (warmLeaves), for refind. */
const HINTS: usize = memory.data(8 * <i32>BATCH, 8);

/** Entries [at, m) of the arrays of a page (or the root: first u64, then two u32 arrays) moved by d (+1 or -1). */
function shiftEntries(first: usize, cnt: usize, idx: usize, at: usize, m: usize, d: i32): void {
  const to = <usize>(<isize>at + d), k = m - at;
  memory.copy(first + 8 * to, first + 8 * at, 8 * k);
  memory.copy(cnt + 4 * to, cnt + 4 * at, 4 * k);
  memory.copy(idx + 4 * to, idx + 4 * at, 4 * k);
}
function rootInsert(o: usize, r: usize, first: u64, cnt: u32, page: u32): void {
  const np = <usize>load<u32>(o, 4), rf = load<usize>(o, 20), rc = load<usize>(o, 24), rp = load<usize>(o, 28);
  shiftEntries(rf, rc, rp, r, np, 1);
  store<u64>(rf + 8 * r, first); store<u32>(rc + 4 * r, cnt); store<u32>(rp + 4 * r, page);
  store<u32>(o, <u32>np + 1, 4);
}
function rootRemove(o: usize, r: usize): void {
  const np = <usize>load<u32>(o, 4);
  putPage(o, load<u32>(load<usize>(o, 28) + 4 * r));
  shiftEntries(load<usize>(o, 20), load<usize>(o, 24), load<usize>(o, 28), r + 1, np, -1);
  store<u32>(o, <u32>np - 1, 4);
}
function pageInsert(P: usize, e: usize, first: u64, cnt: u32, leaf: u32): void {
  const m = <usize>load<u32>(P);
  shiftEntries(P + P_FIRST, P + P_CNT, P + P_LEAF, e, m, 1);
  store<u64>(P + P_FIRST + 8 * e, first); store<u32>(P + P_CNT + 4 * e, cnt); store<u32>(P + P_LEAF + 4 * e, leaf);
  store<u32>(P, <u32>m + 1);
}
function pageRemove(o: usize, P: usize, e: usize): void {
  const m = <usize>load<u32>(P);
  putLeaf(o, load<u32>(P + P_LEAF + 4 * e));
  shiftEntries(P + P_FIRST, P + P_CNT, P + P_LEAF, e + 1, m, -1);
  store<u32>(P, <u32>m - 1);
}
/** Entries [from, m) of page P appended to page Q's. */
function moveEntries(P: usize, from: usize, Q: usize): u32 {
  const m = <usize>load<u32>(P), q = <usize>load<u32>(Q), k = m - from;
  memory.copy(Q + P_FIRST + 8 * q, P + P_FIRST + 8 * from, 8 * k);
  memory.copy(Q + P_CNT + 4 * q, P + P_CNT + 4 * from, 4 * k);
  memory.copy(Q + P_LEAF + 4 * q, P + P_LEAF + 4 * from, 4 * k);
  let ids: u32 = 0;
  for (let e = from; e < m; e++) ids += load<u32>(P + P_CNT + 4 * e);
  store<u32>(P, <u32>from); store<u32>(Q, <u32>(q + k));
  return ids;
}

/** Inserts id (room reserved): 0, or 1 when it is there already (nothing changed). */
export function ordInsert(o: usize, id: u64): u32 { return insertAt(o, id, 0xFFFFFFFF); }
/** ordInsert, with where id was found before (refind's re). */
function insertAt(o: usize, id: u64, hint: u64): u32 {
  if (load<u32>(o, 4) == 0) {   // the first page and leaf
    const k = takePage(o), l = takeLeaf(o), P = pageAt(o, k);
    store<u64>(leafAt(o, l), id);
    store<u32>(P, 1); store<u64>(P + P_FIRST, id); store<u32>(P + P_CNT, 1); store<u32>(P + P_LEAF, l);
    rootInsert(o, 0, id, 1, k);
    store<u32>(o, 1);
    return 0;
  }
  const re = refind(o, id, hint);
  let r = <usize><u32>re, e = <usize>(re >>> 32);
  let P = pageAt(o, load<u32>(load<usize>(o, 28) + 4 * r));
  let L = leafAt(o, load<u32>(P + P_LEAF + 4 * e)), c = load<u32>(P + P_CNT + 4 * e);
  let i = lowerBound(L, c, id);
  if (i < <usize>c && load<u64>(L + 8 * i) == id) return 1;
  if (c == LB) {   // a full leaf: its upper half to a new leaf after it (in a page with room)
    if (load<u32>(P) == PB) {   // a full page: its upper half to a new page after it
      const k = takePage(o), Q = pageAt(o, k), h: usize = PB / 2;
      store<u32>(Q, 0);
      const moved = moveEntries(P, h, Q);
      rootInsert(o, r + 1, load<u64>(Q + P_FIRST), moved, k);
      store<u32>(load<usize>(o, 24) + 4 * r, load<u32>(load<usize>(o, 24) + 4 * r) - moved);
      if (e >= h) { r++; e -= h; P = Q; }
    }
    const l = takeLeaf(o), q = leafAt(o, l), h: usize = LB / 2;
    memory.copy(q, L + 8 * h, 8 * (<usize>LB - h));
    pageInsert(P, e + 1, load<u64>(q), LB - <u32>h, l);
    store<u32>(P + P_CNT + 4 * e, <u32>h);
    c = <u32>h;
    if (i > h) { e++; L = q; i -= h; c = LB - <u32>h; }
  }
  memory.copy(L + 8 * (i + 1), L + 8 * i, 8 * (<usize>c - i));
  store<u64>(L + 8 * i, id);
  store<u32>(P + P_CNT + 4 * e, c + 1);
  if (i == 0) {
    store<u64>(P + P_FIRST + 8 * e, id);
    if (e == 0) store<u64>(load<usize>(o, 20) + 8 * r, id);
  }
  const rc = load<usize>(o, 24) + 4 * r;
  store<u32>(rc, load<u32>(rc) + 1);
  store<u32>(o, load<u32>(o) + 1);
  return 0;
}

/** Removes id: 0, or 1 when it is not there. Never allocates. */
export function ordRemove(o: usize, id: u64): u32 { return removeAt(o, id, 0xFFFFFFFF); }
/** ordRemove, with where id was found before (refind's re). */
function removeAt(o: usize, id: u64, hint: u64): u32 {
  if (load<u32>(o, 4) == 0) return 1;
  const re = refind(o, id, hint), r = <usize><u32>re, e = <usize>(re >>> 32);
  const P = pageAt(o, load<u32>(load<usize>(o, 28) + 4 * r));
  const L = leafAt(o, load<u32>(P + P_LEAF + 4 * e));
  let c = load<u32>(P + P_CNT + 4 * e);
  const i = lowerBound(L, c, id);
  if (i >= <usize>c || load<u64>(L + 8 * i) != id) return 1;
  c--;
  memory.copy(L + 8 * i, L + 8 * (i + 1), 8 * (<usize>c - i));
  store<u32>(P + P_CNT + 4 * e, c);
  const rc = load<usize>(o, 24) + 4 * r;
  store<u32>(rc, load<u32>(rc) - 1);
  store<u32>(o, load<u32>(o) - 1);
  if (c == 0) {
    pageRemove(o, P, e);
    if (load<u32>(P) == 0) { rootRemove(o, r); return 0; }
  } else {   // (a leaf that empties had neighbours of LB / 2 or more: no merge is due then)
    if (i == 0) store<u64>(P + P_FIRST + 8 * e, load<u64>(L));
    if (e + 1 < <usize>load<u32>(P) && c + load<u32>(P + P_CNT + 4 * (e + 1)) <= LB / 2) mergeLeaves(o, P, e);
    if (e > 0 && load<u32>(P + P_CNT + 4 * (e - 1)) + load<u32>(P + P_CNT + 4 * e) <= LB / 2) mergeLeaves(o, P, e - 1);
  }
  store<u64>(load<usize>(o, 20) + 8 * r, load<u64>(P + P_FIRST));
  if (r + 1 < <usize>load<u32>(o, 4) && load<u32>(P) + pageSize(o, r + 1) <= PB / 2) mergePages(o, r);
  if (r > 0 && pageSize(o, r - 1) + load<u32>(P) <= PB / 2) mergePages(o, r - 1);
  return 0;
}
/** Entries of the page of root entry r. */
@inline function pageSize(o: usize, r: usize): u32 { return load<u32>(pageAt(o, load<u32>(load<usize>(o, 28) + 4 * r))); }
/** Leaf e + 1 of page P appended to leaf e, its entry removed. */
function mergeLeaves(o: usize, P: usize, e: usize): void {
  const c = load<u32>(P + P_CNT + 4 * e), d = load<u32>(P + P_CNT + 4 * (e + 1));
  memory.copy(leafAt(o, load<u32>(P + P_LEAF + 4 * e)) + 8 * <usize>c, leafAt(o, load<u32>(P + P_LEAF + 4 * (e + 1))), 8 * <usize>d);
  store<u32>(P + P_CNT + 4 * e, c + d);
  pageRemove(o, P, e + 1);
}
/** Page r + 1's entries appended to page r's, its root entry removed; the two leaves now side by side merged when due. */
function mergePages(o: usize, r: usize): void {
  const rp = load<usize>(o, 28), rc = load<usize>(o, 24), P = pageAt(o, load<u32>(rp + 4 * r)), j = <usize>load<u32>(P);
  moveEntries(pageAt(o, load<u32>(rp + 4 * (r + 1))), 0, P);
  store<u32>(rc + 4 * r, load<u32>(rc + 4 * r) + load<u32>(rc + 4 * (r + 1)));
  rootRemove(o, r + 1);
  if (load<u32>(P + P_CNT + 4 * (j - 1)) + load<u32>(P + P_CNT + 4 * j) <= LB / 2) mergeLeaves(o, P, j - 1);
}

/** Reads the cache lines of leaf e of page P (a sum the caller keeps, so the reads stay). */
@inline function touchLeaf(o: usize, P: usize, e: usize): u32 {
  const L = leafAt(o, load<u32>(P + P_LEAF + 4 * e));
  let w: u32 = 0;
  for (let b: usize = 0; b < LB8; b += 64) w += load<u32>(L + b);
  return w;
}

/**
 * Reads the lines of the leaves of ids [i0, i1) (the order is not empty), so that their misses
 * overlap; their places into HINTS: the first one's by a search, each next one's by a walk on from
 * the one before (a block's ids ascend: the walk reads the pages' first ids in order, where searches
 * wait on each other's misses), or by a search where the ids descend.
 */
function warmLeaves(o: usize, ids: usize, i0: usize, i1: usize): void {
  let w: u32 = 0;
  const rp = load<usize>(o, 28), rf = load<usize>(o, 20), np = <usize>load<u32>(o, 4);
  let re = find(o, load<u64>(ids + 8 * i0)), r = <usize><u32>re, e = <usize>(re >>> 32), prev = load<u64>(ids + 8 * i0);
  let P = pageAt(o, load<u32>(rp + 4 * r)), m = <usize>load<u32>(P);
  for (let i = i0; i < i1; i++) {
    const x = load<u64>(ids + 8 * i);
    if (x < prev) {   // (not ascending: a search)
      re = find(o, x); r = <usize><u32>re; e = <usize>(re >>> 32); P = pageAt(o, load<u32>(rp + 4 * r)); m = <usize>load<u32>(P);
    } else {   // ascending: on from the place of the id before it
      if (r + 1 < np && load<u64>(rf + 8 * (r + 1)) <= x) {
        do r++; while (r + 1 < np && load<u64>(rf + 8 * (r + 1)) <= x);
        P = pageAt(o, load<u32>(rp + 4 * r)); m = <usize>load<u32>(P); e = 0;
      }
      while (e + 1 < m && load<u64>(P + P_FIRST + 8 * (e + 1)) <= x) e++;
    }
    prev = x;
    store<u64>(HINTS + 8 * (i - i0), <u64>r | (<u64>e << 32));
    w += touchLeaf(o, P, e);
  }
  ordWarm += w;
}
/**
 * Inserts (``insert``) or removes the n ids at ids, a batch at a time, each batch's leaves read
 * first: the count of those that were there already (insert) or were not (remove).
 */
@inline function changeIds(o: usize, ids: usize, n: u32, insert: bool): u32 {
  let bad: u32 = 0;
  for (let i0: usize = 0; i0 < <usize>n; i0 += BATCH) {
    const i1 = i0 + BATCH < <usize>n ? i0 + BATCH : <usize>n;
    const warm = load<u32>(o, 4) != 0;
    if (warm) warmLeaves(o, ids, i0, i1);
    for (let i = i0; i < i1; i++) {
      const id = load<u64>(ids + 8 * i), hint = warm ? load<u64>(HINTS + 8 * (i - i0)) : 0xFFFFFFFF;
      bad += insert ? insertAt(o, id, hint) : removeAt(o, id, hint);
    }
  }
  return bad;
}
/** Inserts the n ids at ids (room reserved): the count of those that were there already. */
export function ordInsertIds(o: usize, ids: usize, n: u32): u32 { return changeIds(o, ids, n, true); }
/**
 * Removes the n ascending ids at ids, each at the place hints gives (ordSelectLists' hints of the
 * ranks that named them, before any change), last first, so that the places of the ids before it
 * stay (refind checks each, and searches where a merge moved it): the count of those not there.
 */
export function ordRemoveHinted(o: usize, ids: usize, hints: usize, n: u32): u32 {
  let bad: u32 = 0;
  for (let i1 = <isize>n; i1 > 0; i1 -= <isize>BATCH) {
    const i0 = i1 > <isize>BATCH ? i1 - <isize>BATCH : 0;
    // the batch's leaves first (their misses overlap), found from the hints as they are now
    let w: u32 = 0;
    const np = <usize>load<u32>(o, 4), rp = load<usize>(o, 28);
    for (let i = i0; i < i1; i++) {
      const re = load<u64>(hints + 8 * i), r = <usize><u32>re, e = <usize>(re >>> 32);
      if (r >= np) continue;
      const P = pageAt(o, load<u32>(rp + 4 * r));
      if (e >= <usize>load<u32>(P)) continue;
      w += touchLeaf(o, P, e);
    }
    ordWarm += w;
    for (let i = i1 - 1; i >= i0; i--) bad += removeAt(o, load<u64>(ids + 8 * i), load<u64>(hints + 8 * i));
  }
  return bad;
}
/** Removes the n ids at ids: the count of those that were not there. */
export function ordRemoveIds(o: usize, ids: usize, n: u32): u32 { return changeIds(o, ids, n, false); }

/**
 * The ids of the n ranks at ranks (u32) into out (n u64): -1, or the index of the first rank >= the
 * number of ids (the ranks before it selected). Ascending ranks take one walk; others restart it.
 */
export function ordSelect(o: usize, ranks: usize, n: u32, out: usize): i32 {
  const total = load<u32>(o);
  let m: u32 = 0;
  while (m < n && load<u32>(ranks + 4 * <usize>m) < total) m++;
  if (m) {
    store<usize>(ONE, ranks); store<u32>(ONE, m, 4); store<usize>(ONE, out, 8); store<u32>(ONE, 0, 12); store<usize>(ONE, 0, 16);
    store<u64>(ONE, <u64>load<u32>(ranks) << 32, LIST);
    selectWalk(o, ONE, 1, ONE + LIST, 1);
  }
  return m < n ? <i32>m : -1;
}
/** Bytes of a list record of ordSelectLists. */
const LIST: usize = 24;
/** ordSelect's list record and heap. */
const ONE: usize = memory.data(<i32>LIST + 8, 8);

/**
 * The ids of the ranks of k lists (lists: LIST bytes each: 0 ranks (u32, ascending), 4 n, 8 out (n
 * u64), 12 a word of scratch, 16 hints (n u64, or 0: none): each id's place for ordRemoveHinted) into
 * their outs, all in one walk: -1, or the index of a list with a rank >= the number of ids (outs
 * unwritten then). heapMem: 8 k bytes of scratch. A frame's ranked blocks are resolved together, so
 * that the walk over the counts is made once (their ranks merged in order: selectWalk).
 */
export function ordSelectLists(o: usize, lists: usize, k: u32, heapMem: usize): i32 {
  const total = load<u32>(o);
  let size: usize = 0;
  for (let j: usize = 0; j < <usize>k; j++) {
    const L = lists + LIST * j, n = load<u32>(L, 4);
    store<u32>(L, 0, 12);
    if (n == 0) continue;
    if (load<u32>(load<usize>(L) + 4 * <usize>(n - 1)) >= total) return <i32>j;   // (each list ascending)
    store<u64>(heapMem + 8 * size++, (<u64>load<u32>(load<usize>(L)) << 32) | <u64>j);
  }
  for (let i = size >> 1; i > 0; i--) siftDown(heapMem, size, i - 1);
  selectWalk(o, lists, k, heapMem, size);
  return -1;
}
/** Lists up to which selectWalk takes their heads' minimum by a scan; more are a heap. */
const FEW: usize = 8;
/** selectWalk's running sums of eight counts, after a word 0. */
const PRE: usize = memory.data(40, 16);

/** Restores the min-heap property of the u64 heap h of `size` entries below entry i. */
@inline function siftDown(h: usize, size: usize, i: usize): void {
  const v = load<u64>(h + 8 * i);
  for (;;) {
    let c: usize = 2 * i + 1;
    if (c >= size) break;
    if (c + 1 < size && load<u64>(h + 8 * (c + 1)) < load<u64>(h + 8 * c)) c++;
    const w = load<u64>(h + 8 * c);
    if (v <= w) break;
    store<u64>(h + 8 * i, w);
    i = c;
  }
  store<u64>(h + 8 * i, v);
}

/**
 * The walk of ordSelect and ordSelectLists, over the ranks of the k lists in ascending order (their
 * heads in h, rank << 32 | list: a heap where there are more than FEW): each rank's place is found
 * by a walk over the counts (the root's, then a page's, eight at a time) and written to its out as
 * the address of its id; then the ids are read from there, loads alone, so that the leaves' misses
 * overlap. A rank below the one before it (only ordSelect's may be) restarts the walk.
 */
function selectWalk(o: usize, lists: usize, k: u32, h: usize, size: usize): void {
  const rc = load<usize>(o, 24), rp = load<usize>(o, 28);
  let r: usize = 0, rbase: u32 = 0, e: usize = 0, ebase: u32 = 0, P: usize = pageAt(o, load<u32>(rp));
  while (size > 0) {
    // the smallest head: a heap's top; of a few lists, their heads' minimum without branches (a
    // heap's compares of the lists' ranks mispredict about half the time)
    let top = load<u64>(h), at: usize = 0;
    if (size <= FEW) {
      for (let q: usize = 1; q < size; q++) {
        const v = load<u64>(h + 8 * q), lt = v < top;
        top = lt ? v : top; at = lt ? q : at;
      }
    }
    const L = lists + LIST * <usize><u32>top, i = <usize>load<u32>(L, 12), x = <u32>(top >>> 32);
    const dst = load<usize>(L, 8) + 8 * i;
    store<u32>(L, <u32>i + 1, 12);
    if (i + 1 < <usize>load<u32>(L, 4)) store<u64>(h + 8 * at, (<u64>load<u32>(load<usize>(L) + 4 * (i + 1)) << 32) | (top & 0xFFFFFFFF));
    else { size--; store<u64>(h + 8 * at, load<u64>(h + 8 * size)); }
    if (size > FEW) siftDown(h, size, 0);
    if (x < ebase) { r = 0; rbase = 0; e = 0; ebase = 0; P = pageAt(o, load<u32>(rp)); }
    if (x - rbase >= load<u32>(rc + 4 * r)) {
      do { rbase += load<u32>(rc + 4 * r); r++; } while (x - rbase >= load<u32>(rc + 4 * r));
      P = pageAt(o, load<u32>(rp + 4 * r)); e = 0; ebase = rbase;
    }
    // the first entry whose counts from e on add up past x - ebase: eight at a time, their running
    // sums in two vectors (lanes past the page's entries read the page's other arrays, but the
    // answer lies before them); the counts before it from the sums, kept in PRE
    for (;;) {
      const d = i32x4.splat(<i32>(x - ebase)), a = v128.load(P + P_CNT + 4 * e), b = v128.load(P + P_CNT + 4 * e, 16);
      const a1 = i32x4.add(a, i8x16.shuffle(v128.splat<i32>(0), a, 0, 1, 2, 3, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27));
      const a2 = i32x4.add(a1, i8x16.shuffle(v128.splat<i32>(0), a1, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23));
      const b1 = i32x4.add(b, i8x16.shuffle(v128.splat<i32>(0), b, 0, 1, 2, 3, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27));
      const b2 = i32x4.add(i32x4.add(b1, i8x16.shuffle(v128.splat<i32>(0), b1, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23)),
        i32x4.splat(i32x4.extract_lane(a2, 3)));
      const hit = i32x4.bitmask(i32x4.gt_u(a2, d)) | (i32x4.bitmask(i32x4.gt_u(b2, d)) << 4);
      if (hit) {
        const j = <usize>ctz(hit);
        v128.store(PRE, a2, 4); v128.store(PRE, b2, 20);
        ebase += load<u32>(PRE + 4 * j);   // (PRE's word 0 is 0: nothing before the first)
        e += j;
        break;
      }
      ebase += <u32>i32x4.extract_lane(b2, 3);
      e += 8;
    }
    store<u64>(dst, <u64>(leafAt(o, load<u32>(P + P_LEAF + 4 * e)) + 8 * <usize>(x - ebase)));
    const hints = load<usize>(L, 16);
    if (hints) store<u64>(hints + 8 * i, <u64>r | (<u64>e << 32));
  }
  for (let L = lists, end = lists + LIST * <usize>k; L < end; L += LIST) {
    const out = load<usize>(L, 8), n = <usize>load<u32>(L, 4);
    for (let i: usize = 0; i < n; i++) store<u64>(out + 8 * i, load<u64>(<usize>load<u64>(out + 8 * i)));
  }
}
/** The id of rank r (< the number of ids). */
export function ordAt(o: usize, r: u32): u64 {
  const out = heap.alloc(8);
  store<u32>(out, r);
  ordSelect(o, out, 1, out);
  const v = load<u64>(out);
  heap.free(out);
  return v;
}
/** Every id, ascending, into out (n u64). */
export function ordCopy(o: usize, out: usize): void {
  const np = <usize>load<u32>(o, 4), rp = load<usize>(o, 28);
  let k: usize = 0;
  for (let r: usize = 0; r < np; r++) {
    const P = pageAt(o, load<u32>(rp + 4 * r)), m = <usize>load<u32>(P);
    for (let e: usize = 0; e < m; e++) {
      const c = <usize>load<u32>(P + P_CNT + 4 * e);
      memory.copy(out + 8 * k, leafAt(o, load<u32>(P + P_LEAF + 4 * e)), 8 * c);
      k += c;
    }
  }
}

/**
 * The structure's invariants (tests): 0 when they hold; 1 a count outside its bounds (a leaf's 1..LB,
 * a page's 1..PB), 2 a first id that is not its leaf's or page's, 3 ids not strictly ascending, 4 two
 * neighbours (leaves of a page, or pages) with at most half of one, 5 counts that do not add up, 6
 * the pools' leaves or pages not each used once or free once.
 */
export function ordCheck(o: usize): i32 {
  const np = <usize>load<u32>(o, 4), pcap = <usize>load<u32>(o, 8), lcap = <usize>load<u32>(o, 16);
  const rf = load<usize>(o, 20), rc = load<usize>(o, 24), rp = load<usize>(o, 28);
  if (np + <usize>load<u32>(o, 40) != pcap) return 6;
  if (<usize>load<u32>(o, 12) + <usize>load<u32>(o, 52) != lcap) return 6;
  const seen = heap.alloc(pcap + lcap + 1);
  memory.fill(seen, 0, pcap + lcap + 1);
  let total: u32 = 0, last: u64 = 0, first = true, err: i32 = 0, leaves: u32 = 0;
  for (let r: usize = 0; r < np && !err; r++) {
    const k = <usize>load<u32>(rp + 4 * r);
    if (k >= pcap || load<u8>(seen + k)) { err = 6; break; }
    store<u8>(seen + k, 1);
    const P = pageAt(o, <u32>k), m = load<u32>(P);
    if (m == 0 || m > PB) { err = 1; break; }
    if (load<u64>(rf + 8 * r) != load<u64>(P + P_FIRST)) { err = 2; break; }
    if (r > 0 && load<u32>(pageAt(o, load<u32>(rp + 4 * (r - 1)))) + m <= PB / 2) { err = 4; break; }
    let ids: u32 = 0;
    for (let e: usize = 0; e < <usize>m && !err; e++) {
      const l = <usize>load<u32>(P + P_LEAF + 4 * e), c = load<u32>(P + P_CNT + 4 * e);
      if (l >= lcap || load<u8>(seen + pcap + l)) { err = 6; break; }
      store<u8>(seen + pcap + l, 1);
      if (c == 0 || c > LB) { err = 1; break; }
      const L = leafAt(o, <u32>l);
      if (load<u64>(P + P_FIRST + 8 * e) != load<u64>(L)) { err = 2; break; }
      if (e > 0 && load<u32>(P + P_CNT + 4 * (e - 1)) + c <= LB / 2) { err = 4; break; }
      for (let i: usize = 0; i < <usize>c; i++) {
        const v = load<u64>(L + 8 * i);
        if (!first && v <= last) { err = 3; break; }
        first = false; last = v;
      }
      ids += c; leaves++;
    }
    if (!err && ids != load<u32>(rc + 4 * r)) err = 5;
    total += ids;
  }
  if (!err && (total != load<u32>(o) || leaves != load<u32>(o, 12))) err = 5;
  if (!err) {
    const pf = load<usize>(o, 36), lf = load<usize>(o, 48);
    for (let j: usize = 0; j < <usize>load<u32>(o, 40); j++) {
      const k = <usize>load<u32>(pf + 4 * j);
      if (k >= pcap || load<u8>(seen + k)) err = 6; else store<u8>(seen + k, 1);
    }
    for (let j: usize = 0; j < <usize>load<u32>(o, 52); j++) {
      const l = <usize>load<u32>(lf + 4 * j);
      if (l >= lcap || load<u8>(seen + pcap + l)) err = 6; else store<u8>(seen + pcap + l, 1);
    }
  }
  heap.free(seen);
  return err;
}

/**
 * Fills the empty order o with the n ids at ids (may trap: o stays empty then): 0, or 1 when an id
 * is there twice (o stays empty). Ids that are not ascending are sorted first, in place.
 */
export function ordBuild(o: usize, ids: usize, n: u32): i32 {
  let sorted = true;
  for (let i: usize = 1; i < <usize>n; i++) if (load<u64>(ids + 8 * i) <= load<u64>(ids + 8 * (i - 1))) { sorted = false; break; }
  if (!sorted) {
    radixSort(ids, n);
    for (let i: usize = 1; i < <usize>n; i++) if (load<u64>(ids + 8 * i) == load<u64>(ids + 8 * (i - 1))) return 1;
  }
  if (n == 0) return 0;
  const nl = (n + LF - 1) / LF, np = (nl + PF - 1) / PF;
  growPages(o, np + (np >>> 1) + 2);
  growLeaves(o, nl + (nl >>> 1) + 2);
  for (let r: u32 = 0; r < np; r++) {
    const k = takePage(o), P = pageAt(o, k), e0 = r * PF, e1 = e0 + PF < nl ? e0 + PF : nl;
    let pageIds: u32 = 0;
    for (let e = e0; e < e1; e++) {
      const l = takeLeaf(o), from = <usize>e * <usize>LF, c = <usize>n - from < <usize>LF ? <usize>n - from : <usize>LF;
      memory.copy(leafAt(o, l), ids + 8 * from, 8 * c);
      const j = <usize>(e - e0);
      store<u64>(P + P_FIRST + 8 * j, load<u64>(ids + 8 * from)); store<u32>(P + P_CNT + 4 * j, <u32>c); store<u32>(P + P_LEAF + 4 * j, l);
      pageIds += <u32>c;
    }
    store<u32>(P, e1 - e0);
    rootInsert(o, r, load<u64>(P + P_FIRST), pageIds, k);
  }
  store<u32>(o, n);
  return 0;
}

/**
 * Sorts the n u64 at a ascending: LSD radix sort, one byte per pass, the passes whose byte is the
 * same in every value skipped (ids use 3 B + S <= 63 bits, and a scene's ids share their high ones);
 * a scratch of n u64 (may trap: a is unchanged then).
 */
function radixSort(a: usize, n: u32): void {
  const N = <usize>n, tmp = heap.alloc(8 * N + 8), h = heap.alloc(8 * 256 * 4);
  memory.fill(h, 0, 8 * 256 * 4);
  for (let i: usize = 0; i < N; i++) {
    const v = load<u64>(a + 8 * i);
    for (let d: usize = 0; d < 8; d++) {
      const c = h + 1024 * d + 4 * <usize>(<u32>(v >> (8 * d)) & 0xFF);
      store<u32>(c, load<u32>(c) + 1);
    }
  }
  let src = a, dst = tmp;
  for (let d: usize = 0; d < 8; d++) {
    const hd = h + 1024 * d;
    if (load<u32>(hd + 4 * <usize>(<u32>(load<u64>(a) >> (8 * d)) & 0xFF)) == n) continue;   // one value of this byte
    for (let k: usize = 0, sum: u32 = 0; k < 256; k++) { const c = load<u32>(hd + 4 * k); store<u32>(hd + 4 * k, sum); sum += c; }
    for (let i: usize = 0; i < N; i++) {
      const v = load<u64>(src + 8 * i), c = hd + 4 * <usize>(<u32>(v >> (8 * d)) & 0xFF), pos = load<u32>(c);
      store<u32>(c, pos + 1);
      store<u64>(dst + 8 * <usize>pos, v);
    }
    const t = src; src = dst; dst = t;
  }
  if (src != a) memory.copy(a, src, 8 * N);
  heap.free(h); heap.free(tmp);
}
