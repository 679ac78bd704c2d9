// Apply (SPEC.md 6.3, 7): a parsed frame (decoder/frame.mjs) against the scene state, all-or-nothing.
// Steps 2-6 validate (ids live or not, code validity, budget, digest) while computing the new
// digest; UPDATE codes are written in place and undone exactly if anything later fails; the commit
// (step 7) writes only memory reserved beforehand, so it cannot fail half-way. The loops are the
// wasm kernel's (decoder/wasm/kernel.ts); blocks reach it as records in the frame arena (BL, PB).
// With an SH palette (SPEC 5.9) the palette is part of the state: PALETTE entries are checked and
// hashed against the entries they replace (step 2a) and written at the commit, a keyframe's into
// the new store's all-zero palette. Ranked blocks (SPEC 6.1, 1.2) become UPDATE and DELETE_IDS blocks
// first (step 0), their ranks resolved against the ids live before the frame (the store's LiveOrder,
// order.mjs); where the store has that order, the commit keeps it up to date and a keyframe rebuilds it.
import { fail } from './errors.mjs';
import { digestText } from './digest.mjs';
import { SceneStore, H_MARK } from './store.mjs';
import { LiveOrder } from './order.mjs';
import { crossCheck } from './frame.mjs';
import { K, arena, views, blockRecord, paletteRecord, blockField as field } from './kernel.mjs';

/** Merged, sorted, disjoint id intervals of all ranges and cells, as u64 pairs in the arena: {iv, n}. */
function intervals(p, ranges, cells) {
  const iv = [], u64 = views().u64;
  for (const { n, r } of ranges) for (let i = 0; i < n; i++) iv.push([u64[(r >> 3) + i], u64[(r >> 3) + n + i]]);
  for (const { n, level, c } of cells) {
    const sh = BigInt(p.S + 3 * level);
    for (let i = 0; i < n; i++) { const x = u64[(c >> 3) + i]; iv.push([x << sh, ((x + 1n) << sh) - 1n]); }
  }
  iv.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const merged = [];
  for (const [a, b] of iv) {
    const last = merged[merged.length - 1];
    if (last && a <= last[1] + 1n) { if (b > last[1]) last[1] = b; } else merged.push([a, b]);
  }
  const ptr = arena.take(16 * merged.length), v = views().u64;
  merged.forEach(([a, b], i) => { v[(ptr >> 3) + 2 * i] = a; v[(ptr >> 3) + 2 * i + 1] = b; });
  return { iv: ptr, n: merged.length };
}

/**
 * Step 0 of a frame with ranked blocks (SPEC 6.1): each block's ranks name the ids at those places
 * among the ids live before the frame (none for a keyframe); the blocks join upds and dels as the
 * UPDATE and DELETE_IDS blocks of those ids, and an id in two blocks of a group is DUPLICATE_ID (the
 * parse checked the unranked blocks alone). The store's order is made here at the stream's first
 * ranked block. Reads the state, changes nothing.
 */
function resolveRanked(store, keyframe, adds, upds, dels, rupds, rdels) {
  const ru = rupds.filter((b) => b.n > 0), rd = rdels.filter((b) => b.n > 0);
  if (!ru.length && !rd.length) return { upds, dels };   // empty blocks: nothing to update or delete
  if (keyframe) fail('ID_MISSING', 'a rank in a keyframe (no ids are live before it)');
  // (the deletes' places in the order too: the commit removes them there without a search)
  const ord = store.liveOrder(), all = ru.concat(rd), outs = all.map((b) => arena.take(8 * b.n));
  const hints = all.map((b, j) => (j < ru.length ? 0 : arena.take(8 * b.n)));
  if (ord.selectLists(all, outs, hints) >= 0) fail('ID_MISSING', `a rank not below ${ord.size}, the number of live ids`);
  const rus = ru.map((b, j) => ({ ...b, ids: outs[j] }));
  const rds = rd.map((b, j) => ({ ...b, ids: outs[ru.length + j], hints: hints[ru.length + j] }));
  if (rus.length) crossCheck(adds.concat(upds, rus));
  if (rds.length) crossCheck(dels.concat(rds));
  return { upds: upds.concat(rus), dels: dels.concat(rds) };
}

/** A keyframe's live ids in order, from its ADD blocks' ids (each block's ascending, none in two: F13). */
function orderOfAdds(adds, nAdd) {
  const full = adds.filter((b) => b.n > 0);
  if (full.length === 0) return new LiveOrder();
  if (full.length === 1) return LiveOrder.ofIds(full[0].ids, full[0].n);
  const all = arena.take(8 * nAdd), u8 = views().u8;   // one list, sorted by the kernel
  let at = all;
  for (const b of full) { u8.copyWithin(at, b.ids, b.ids + 8 * b.n); at += 8 * b.n; }
  return LiveOrder.ofIds(all, nAdd);
}

/**
 * Applies plan (parseFrame's) to dec.store, all-or-nothing; dec: {profile, store, budget,
 * verifyDigest, stamp}. Returns the counts {add, update, deleteIds, deleteRanges, deleteCells,
 * palette, deleted, live} (a ranked block counts as the UPDATE or DELETE_IDS block it becomes).
 * Throws GsdError with the state (palette included) as it was.
 */
export function applyPlan(dec, { keyframe, m, adds, upds, dels, ranges, cells, pals = [], rupds = [], rdels = [] }) {
  const p = dec.profile, store = dec.store, st = store.st;
  // ---- step 0: ranked blocks resolved against the state before the frame
  if (rupds.length || rdels.length) ({ upds, dels } = resolveRanked(store, keyframe, adds, upds, dels, rupds, rdels));
  if (++dec.stamp >= 0x7FFFFFFF) {   // stamps of staged deletes in the rows' mark word
    const rows = store.rows, R = store.R;
    for (let s = 0; s < store.highWater; s++) rows[s * R + H_MARK] = 0;
    dec.stamp = 1;
  }
  const stamp = dec.stamp, out = arena.take(8);
  let lane0 = keyframe ? 0 : store.lane0, lane1 = keyframe ? 0 : store.lane1;
  let live = keyframe ? 0 : store.live;
  // ---- step 2: deletes (staged: a mark in the row, the stamp of this frame)
  const delLists = [];   // [slots pointer, count]
  let ivList = null;     // the slots of the ranges and cells (one of delLists), and room for their ids
  let deleted = 0, nDelIds = 0, nRanges = 0, nCells = 0;
  for (const { n, ids } of dels) {
    nDelIds += n;
    if (keyframe) { if (n > 0) fail('ID_MISSING', 'DELETE_IDS in a keyframe (the state is empty)'); continue; }
    const sl = arena.take(4 * n);
    if (K.stageDeletes(st, ids, n, stamp, sl) >= 0) fail('ID_MISSING', 'DELETE_IDS of an id that is not live');
    delLists.push([sl, n]);
    deleted += n;
  }
  for (const r of ranges) nRanges += r.n;
  for (const c of cells) nCells += c.n;
  if (!keyframe && nRanges + nCells > 0 && store.live > deleted) {
    const { iv, n } = intervals(p, ranges, cells);
    if (n) {
      const sl = arena.take(4 * store.highWater);
      const k = K.stageIntervals(st, iv, n, stamp, sl);
      ivList = [sl, k, store.order ? arena.take(8 * k) : 0];
      delLists.push(ivList);
      deleted += k;
    }
  }
  for (const [sl, n] of delLists) {
    K.laneSums(st, sl, n, out);
    const u = views().u32;
    lane0 = (lane0 - u[out >> 2]) >>> 0; lane1 = (lane1 - u[(out >> 2) + 1]) >>> 0;
  }
  live -= deleted;
  // ---- step 2a: palette entries (a keyframe's below, into the new store)
  let nPal = 0;
  const palRecs = [];
  for (const b of pals) {
    nPal += b.n;
    if (b.n > 0) palRecs.push(paletteRecord(b));
  }
  const stagePalette = (target) => {   // -> the change of the lanes
    let d0 = 0, d1 = 0;
    for (const pb of palRecs) {
      if (K.palStage(target, pb) !== 0) fail('BAD_VALUE', `invalid palette entry code (component ${field(pb, 13)})`);
      d0 += field(pb, 14); d1 += field(pb, 15);
    }
    return [d0 >>> 0, d1 >>> 0];
  };
  if (!keyframe && palRecs.length) {
    const [d0, d1] = stagePalette(st);
    lane0 = (lane0 + d0) >>> 0; lane1 = (lane1 + d1) >>> 0;
  }
  // ---- step 3: adds (checked and hashed here; written at commit; a keyframe's into a new store)
  let nAdd = 0, built = null, order = null;   // (order: a keyframe's new live-id order)
  const addRecs = [];
  if (keyframe) {
    for (const b of adds) nAdd += b.n;
    // the result's size is known now: check the budget (step 5) before building anything
    if (nAdd > dec.budget) fail('LIMIT_EXCEEDED', `${nAdd} live Gaussians, budget ${dec.budget}`);
    built = new SceneStore(p);
    try {
      built.reserve(nAdd, nAdd, 0, Math.max(4096, nAdd >> 3));
      if (palRecs.length) {   // step 2a into the new store's all-zero palette (dropped on failure)
        const [d0, d1] = stagePalette(built.st);
        for (const pb of palRecs) K.palCommit(built.st, pb);
        built.lane0 = d0; built.lane1 = d1;
      }
      let first = 0;
      for (const b of adds) {
        const j = K.keyframeBlock(built.st, blockRecord(b, false, true), first);
        if (j >= 0) fail('BAD_VALUE', `invalid code (component ${j}) in an ADD`);
        first += b.n;
      }
      if (store.order) order = orderOfAdds(adds, nAdd);   // the stream sends ranked blocks: keep the order
    } catch (e) {
      built.release();
      throw e;
    }
    lane0 = built.lane0; lane1 = built.lane1;
  } else {
    for (const b of adds) {
      nAdd += b.n;
      const bl = blockRecord(b, false), r = K.addCheck(st, bl, stamp);
      if (r === 1) fail('ID_EXISTS', 'ADD of a live id');
      if (r === 2) fail('BAD_VALUE', `invalid code (component ${field(bl, 13)}) in an ADD`);
      lane0 = (lane0 + field(bl, 14)) >>> 0; lane1 = (lane1 + field(bl, 15)) >>> 0;
      addRecs.push(bl);
    }
  }
  live += nAdd;
  // ---- step 4: updates: codes and sums in place (undone below if the frame fails from here on);
  // their floats are derived at commit
  let nUpd = 0;
  const undo = [];
  try {
    for (const b of upds) {
      nUpd += b.n;
      if (b.n > 0 && keyframe) fail('ID_MISSING', 'UPDATE in a keyframe (the state is empty)');
      const bl = blockRecord(b, true);
      undo.push(bl);
      const r = K.updApply(st, bl, stamp);
      if (r === 1) fail('ID_MISSING', 'UPDATE of an id that is not live');
      if (r === 2) fail('BAD_VALUE', `UPDATE produces an invalid code (component ${field(bl, 13)})`);
      lane0 = (lane0 + field(bl, 14)) >>> 0; lane1 = (lane1 + field(bl, 15)) >>> 0;
    }
    // ---- step 5: budget
    if (live > dec.budget) fail('LIMIT_EXCEEDED', `${live} live Gaussians, budget ${dec.budget}`);
    // ---- step 6: digest
    if (m.digest && dec.verifyDigest) {
      const g = m.digest;
      if (g.count !== BigInt(live) || g.lane0 !== lane0 || g.lane1 !== lane1) {
        fail('DIGEST_MISMATCH', `state ${digestText(live, lane0, lane1)}, frame says ${digestText(g.count, g.lane0, g.lane1)}`);
      }
    }
    // memory for the commit (may grow the store, or fail: then undone like any failure)
    if (!keyframe) {
      store.reserve(nAdd, live, deleted);
      if (store.order) store.order.reserve(nAdd);
    }
  } catch (e) {
    for (let u = undo.length - 1; u >= 0; u--) K.updUndo(st, undo[u]);
    if (built) built.release();
    if (order) order.release();
    throw e;
  }
  // ---- step 7: commit (nothing below can fail: memory was reserved above)
  if (keyframe) {
    store._adopt(built, order);
    for (const b of pals) store._paletteSet(b.ids, b.n);
  } else {
    const ord = store.order;
    if (ord) {   // the live-id order first: the rows of the deleted slots still hold their ids
      let missed = 0;
      for (const b of dels) if (b.hints) missed += ord.removeHinted(b.ids, b.hints, b.n);   // (first: their places hold)
      for (const b of dels) if (!b.hints) missed += ord.removeIds(b.ids, b.n);
      if (ivList) missed += ord.removeSlots(st, ivList[0], ivList[1], ivList[2]);
      for (const b of adds) missed += ord.insertIds(b.ids, b.n);
      if (missed) store._setOrder(null);   // (never expected; it would be made again when needed)
    }
    for (const [sl, n] of delLists) K.commitDeletes(st, sl, n);
    for (const bl of addRecs) K.commitAdd(st, bl);
    for (const bl of undo) K.commitUpd(st, bl);
    for (const pb of palRecs) K.palCommit(st, pb);
    for (const b of pals) store._paletteSet(b.ids, b.n);
    store.maybeCompact();
  }
  store.lane0 = lane0; store.lane1 = lane1;
  if (store.live !== live) throw new Error(`internal: live ${store.live} != planned ${live}`);
  return { add: nAdd, update: nUpd, deleteIds: nDelIds, deleteRanges: nRanges, deleteCells: nCells, palette: nPal, deleted, live };
}
