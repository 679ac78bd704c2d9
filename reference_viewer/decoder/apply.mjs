// Apply (SPEC.md 6.3, 7): a parsed frame (decoder/frame.mjs) against the scene state, all-or-nothing.
// Steps 2-6 validate (ids live or not, code validity, budget, digest) while computing the new
// digest; UPDATE codes are written in place and undone exactly if anything later fails; the commit
// (step 7) writes only memory reserved beforehand, so it cannot fail half-way. The loops are the
// wasm kernel's (decoder/wasm/kernel.ts); blocks reach it as records in the frame arena (BL, PB).
// With an SH palette (SPEC 5.9) the palette is part of the state: PALETTE entries are checked and
// hashed against the entries they replace (step 2a) and written at the commit, a keyframe's into
// the new store's all-zero palette.
import { fail } from './errors.mjs';
import { digestText } from './digest.mjs';
import { SceneStore, H_MARK } from './store.mjs';
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
 * Applies plan (parseFrame's) to dec.store, all-or-nothing; dec: {profile, store, budget,
 * verifyDigest, stamp}. Returns the counts {add, update, deleteIds, deleteRanges, deleteCells,
 * palette, deleted, live}. Throws GsdError with the state (palette included) as it was.
 */
export function applyPlan(dec, { keyframe, m, adds, upds, dels, ranges, cells, pals = [] }) {
  const p = dec.profile, store = dec.store, st = store.st;
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
      delLists.push([sl, k]);
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
  let nAdd = 0, built = null;
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
    if (!keyframe) store.reserve(nAdd, live, deleted);
  } catch (e) {
    for (let u = undo.length - 1; u >= 0; u--) K.updUndo(st, undo[u]);
    if (built) built.release();
    throw e;
  }
  // ---- step 7: commit (nothing below can fail: memory was reserved above)
  if (keyframe) {
    store._adopt(built);
    for (const b of pals) store._paletteSet(b.ids, b.n);
  } else {
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
