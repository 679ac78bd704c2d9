// Ranked ids (SPEC 6.1, 1.2: UPDATE_RANKED, DELETE_RANKED) in the decoder, on frames made from the
// conformance vectors' own: their UPDATE and DELETE_IDS blocks rewritten as ranked blocks of the same
// ids (tests/frame_writer.mjs) must give the same states, and rewritten wrongly, the errors of 6.1, 6.2,
// 9.1 and 9.2; a rejected frame leaves the state (and the live-id order) as it was.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Decoder, GsdError, decodeStreamLines, makeLimits } from '../decoder/index.mjs';
import { views } from '../decoder/kernel.mjs';
import { manifest, vector, vectorBytes, expectedLines, snapshot } from './helpers.mjs';
import { parseRecord, frameRecord, addU32Section, recordSpans, concat } from './frame_writer.mjs';

const UPDATE = 2, DELETE_IDS = 3, UPDATE_RANKED = 8, DELETE_RANKED = 9;

/** The live ids of dec's state, ascending (BigInts). */
const liveIds = (dec) => dec.store.entries().map((e) => e.id);
/** The ids of a plan block (BigInts), read at once (the frame arena is reused). */
const idsOf = (b) => Array.from(views().u64.subarray(b.ids >> 3, (b.ids >> 3) + b.n));
/** Where two id lists first differ (null: equal): no deep diff of long lists in a failure message. */
function firstDifference(a, b) {
  for (let i = 0; i < Math.max(a.length, b.length); i++) if (a[i] !== b[i]) return `at ${i} of ${a.length} / ${b.length}: ${a[i]} vs ${b[i]}`;
  return null;
}
function rankOf(live, id) {
  let lo = 0, hi = live.length;
  while (lo < hi) { const m = (lo + hi) >> 1; if (live[m] < id) lo = m + 1; else hi = m; }
  assert.equal(live[lo], id, 'an UPDATE or DELETE_IDS id that is not live');
  return lo;
}

/**
 * The frame record fr (one that dec, at the state before it, accepts) parsed, with the ids of its
 * UPDATE and DELETE_IDS blocks (in block order), the live ids and their ranks: ctx for edit(f, ctx),
 * which changes f = {m, payload}; returns the new record.
 */
function edited(dec, fr, edit) {
  const plan = dec.checkFrame(fr), upd = plan.upds.map(idsOf), del = plan.dels.map(idsOf);
  const live = liveIds(dec), f = parseRecord(fr);
  let ku = 0, kd = 0;
  const blockIds = f.m.blocks.map((b) => (b.kind === UPDATE ? upd[ku++] : b.kind === DELETE_IDS ? del[kd++] : null));
  edit(f, { live, blockIds, ranks: (ids) => ids.map((id) => rankOf(live, id)) });
  return frameRecord(f.m, f.payload);
}

/** Block i of f as its ranked kind, with the given ranks (default: its ids' ranks). */
function makeRanked(f, ctx, i, ranks = ctx.ranks(ctx.blockIds[i])) {
  const b = f.m.blocks[i], s = addU32Section(f, ranks);
  b.kind = b.kind === UPDATE ? UPDATE_RANKED : DELETE_RANKED;
  b.count = ranks.length;
  b.sections = Uint32Array.from([s, ...Array.from(b.sections).slice(1)]);
}

/** A DELETE_RANKED block appended to f, naming the first id of block i. */
function addRankedDeleteOfFirst(f, ctx, i) {
  f.m.blocks.push({ kind: DELETE_IDS, count: 1, mask: 0, level: 0, sections: Uint32Array.from([0]) });
  ctx.blockIds.push(ctx.blockIds[i].slice(0, 1));
  makeRanked(f, ctx, f.m.blocks.length - 1);
}

/** A stream's records with every delta's UPDATE and DELETE_IDS blocks that pick(i) chooses made ranked. */
function rankedStream(u8, limits, stopAt, pick) {
  const spans = recordSpans(u8), dec = new Decoder({ limits }), parts = [u8.subarray(0, spans[0][1])];
  dec.readHeader(u8);
  let pos = spans[0][1], ranked = 0, named = 0;
  for (let k = 0; k + 1 < spans.length && k < stopAt; k++) {
    const fr = u8.subarray(spans[k + 1][0], spans[k + 1][1]);
    if (dec.checkFrame(fr).keyframe) parts.push(fr);
    else {
      parts.push(edited(dec, fr, (f, ctx) => f.m.blocks.forEach((b, i) => {
        if ((b.kind === UPDATE || b.kind === DELETE_IDS) && pick(i)) { makeRanked(f, ctx, i); ranked++; named += b.count; }
      })));
    }
    dec.readFrame(fr);
    pos = spans[k + 1][1];
  }
  dec.dispose();
  parts.push(u8.subarray(pos));
  return { bytes: concat(parts), ranked, named };
}

test('every vector with its deltas\' UPDATE and DELETE_IDS blocks ranked gives its lines; the order follows the state', () => {
  let streams = 0, blocks = 0, checks = 0;
  for (const v of manifest) {
    const e = v.expected;
    if ((e.result === 'invalid' && e.frame < 1) || (v.limits && Object.keys(v.limits).length)) continue;   // (limits: sizes change)
    const u8 = vectorBytes(v), stopAt = e.result === 'invalid' ? e.frame : Infinity;
    for (const [variant, pick] of [['all', () => true], ['every other', (i) => i % 2 === 1]]) {
      const { bytes, ranked, named } = rankedStream(u8, {}, stopAt, pick);
      if (!ranked) continue;
      const dec = new Decoder();
      const lines = decodeStreamLines(bytes, {
        decoder: dec,
        onFrame: () => {   // the live-id order, once made, is the state's ids in order after every frame
          if (dec.store.order) { assert.equal(firstDifference([...dec.store.order.toArray()], liveIds(dec)), null, v.id); checks++; }
        },
      });
      assert.deepEqual(lines, expectedLines(v), `${v.id} (${variant} ranked)`);
      // made at the first ranked block that names an id (nothing to resolve in empty ones); a
      // keyframe after it rebuilds it
      if (named > 0) assert.ok(dec.store.order, `${v.id}: no live-id order after ranked blocks`);
      dec.dispose();
      streams++; blocks += ranked;
    }
  }
  assert.ok(streams > 50 && blocks > 200, `${streams} streams, ${blocks} ranked blocks`);
  assert.ok(checks > 100);
  console.log(`# ranked rewrites: ${streams} streams, ${blocks} blocks, ${checks} order checks`);
});

test('a stream without ranked blocks never makes the order', () => {
  const dec = new Decoder();
  decodeStreamLines(vectorBytes('op_long_mixed_chain'), { decoder: dec });
  assert.equal(dec.store.order, null);
});

// ---- one defect each, on a delta with an UPDATE block of 3+ ids and a DELETE_IDS block, after ranked frames

/** A vector, frame index and block indices (UPDATE of 3+ ids, DELETE_IDS) for the defects; found once. */
const target = (() => {
  for (const v of manifest) {
    if (v.expected.result !== 'valid' || (v.limits && Object.keys(v.limits).length)) continue;
    const u8 = vectorBytes(v), spans = recordSpans(u8), dec = new Decoder();
    dec.readHeader(u8);
    for (let k = 0; k + 1 < spans.length; k++) {
      const fr = u8.subarray(spans[k + 1][0], spans[k + 1][1]), plan = dec.checkFrame(fr);
      if (!plan.keyframe && k >= 2 && plan.upds.some((b) => b.n >= 3) && plan.dels.some((b) => b.n >= 1)) {
        const m = parseRecord(fr).m;
        const upd = m.blocks.findIndex((b) => b.kind === UPDATE && b.count >= 3), del = m.blocks.findIndex((b) => b.kind === DELETE_IDS && b.count >= 1);
        dec.dispose();
        return { v, k, upd, del };
      }
      dec.readFrame(fr);
    }
    dec.dispose();
  }
  return null;
})();

/**
 * The target vector's frames before frame k ranked (so the order exists and was kept up to date),
 * then frame k edited by edit(f, ctx): the error code of that frame (null: applied), the decoder after
 * it, and whether the state (and order) is as before it when it fails.
 */
function tryEdited(edit, limits = null) {
  const { v, k } = target, u8 = vectorBytes(v);
  const { bytes } = rankedStream(u8, {}, k, () => true);
  const dec = new Decoder();
  const spans = recordSpans(bytes);
  dec.readHeader(bytes);
  for (let i = 0; i < k; i++) dec.readFrame(bytes.subarray(spans[i + 1][0], spans[i + 1][1]));
  assert.ok(dec.store.order, 'ranked frames before the defect');
  const orig = recordSpans(u8)[k + 1], fr = edited(dec, u8.subarray(orig[0], orig[1]), edit);
  if (limits) dec.limits = makeLimits(limits);   // (for this frame only: the earlier ones may hold more)
  const before = snapshot(dec);
  try {
    dec.readFrame(fr);
  } catch (err) {
    assert.ok(err instanceof GsdError, String(err));
    assert.deepEqual(snapshot(dec), before, `${err.code}: the state moved`);
    return { code: err.code, dec };
  }
  return { code: null, dec };
}

test('defects: equal ranks, descending ranks, a rank past the live ids; the same frame ranked right applies', () => {
  assert.ok(target, 'a vector with an UPDATE block of 3+ ids and a DELETE_IDS block in a delta');
  const { upd, del } = target;
  const ok = tryEdited((f, c) => { makeRanked(f, c, upd); makeRanked(f, c, del); });
  assert.equal(ok.code, null);
  assert.equal(ok.dec.digestText(), vector(target.v.id).expected.digests[target.k]);
  const r = (f, c, change) => { const x = c.ranks(c.blockIds[upd]); change(x, c); makeRanked(f, c, upd, x); };
  assert.equal(tryEdited((f, c) => r(f, c, (x) => { x[1] = x[0]; })).code, 'DUPLICATE_ID');
  assert.equal(tryEdited((f, c) => r(f, c, (x) => { [x[0], x[1]] = [x[1], x[0]]; })).code, 'BAD_VALUE');
  assert.equal(tryEdited((f, c) => r(f, c, (x, cc) => { x[x.length - 1] = cc.live.length; })).code, 'ID_MISSING');
  // a DELETE_RANKED rank past the live ids, and one of 2^32 - 1
  assert.equal(tryEdited((f, c) => makeRanked(f, c, del, [c.live.length])).code, 'ID_MISSING');
  assert.equal(tryEdited((f, c) => makeRanked(f, c, del, [0xFFFFFFFF])).code, 'ID_MISSING');
});

test('defects: an id named by a ranked and an unranked block of one group; an update of an id the frame deletes', () => {
  const { upd, del } = target;
  // UPDATE kept, the same ids again as UPDATE_RANKED (same mask and residuals)
  const twiceU = tryEdited((f, c) => {
    const b = f.m.blocks[upd];
    f.m.blocks.push({ ...b, sections: Uint32Array.from(b.sections) });
    c.blockIds.push(c.blockIds[upd]);
    makeRanked(f, c, f.m.blocks.length - 1);
  });
  assert.equal(twiceU.code, 'DUPLICATE_ID');
  // DELETE_IDS kept, its first id again as DELETE_RANKED
  const twiceD = tryEdited((f, c) => {
    addRankedDeleteOfFirst(f, c, del);
  });
  assert.equal(twiceD.code, 'DUPLICATE_ID');
  // both ranked, both naming one id
  const twiceR = tryEdited((f, c) => {
    makeRanked(f, c, del);
    addRankedDeleteOfFirst(f, c, del);
  });
  assert.equal(twiceR.code, 'DUPLICATE_ID');
  // the UPDATE's first id deleted by a DELETE_RANKED of the same frame: the UPDATE_RANKED misses it (6.3 step 4)
  const gone = tryEdited((f, c) => {
    makeRanked(f, c, upd);
    addRankedDeleteOfFirst(f, c, upd);
  });
  assert.equal(gone.code, 'ID_MISSING');
});

test('block structure (F11, F12) and the ids limit (F10) count ranked blocks', () => {
  const { upd, del } = target;
  const ranked = (f, c) => { makeRanked(f, c, upd); makeRanked(f, c, del); };
  assert.equal(tryEdited((f, c) => { ranked(f, c); f.m.blocks[upd].mask = 0; }).code, 'MALFORMED');
  assert.equal(tryEdited((f, c) => { ranked(f, c); f.m.blocks[upd].mask |= 0x80; }).code, 'MALFORMED');
  assert.equal(tryEdited((f, c) => { ranked(f, c); f.m.blocks[upd].sections = f.m.blocks[upd].sections.slice(0, -1); }).code, 'MALFORMED');
  assert.equal(tryEdited((f, c) => { ranked(f, c); f.m.blocks[del].sections = Uint32Array.from([...f.m.blocks[del].sections, 0]); }).code, 'MALFORMED');
  assert.equal(tryEdited((f, c) => { ranked(f, c); f.m.blocks[del].kind = 10; }).code, 'UNSUPPORTED_FEATURE');
  assert.equal(tryEdited((f, c) => { ranked(f, c); f.m.blocks[del].kind = 127; }).code, 'UNSUPPORTED_FEATURE');
  // ranks at width 8 (the ids' width) instead of 4
  assert.equal(tryEdited((f, c) => {
    makeRanked(f, c, upd);
    const s = addU32Section(f, c.ranks(c.blockIds[del]), { width: 8 });
    Object.assign(f.m.blocks[del], { kind: DELETE_RANKED, sections: Uint32Array.from([s]) });
  }).code, 'MALFORMED');
  // max_ids_per_frame: the frame's ids, ranks included
  let ids = 0;
  tryEdited((f, c) => { ranked(f, c); ids = f.m.blocks.filter((b) => [1, 2, 3, 6, 7, 8, 9].includes(b.kind)).reduce((s, b) => s + b.count, 0); });
  assert.ok(ids > 0);
  assert.equal(tryEdited(ranked, { max_ids_per_frame: ids }).code, null);
  assert.equal(tryEdited(ranked, { max_ids_per_frame: ids - 1 }).code, 'LIMIT_EXCEEDED');
});

test('a keyframe\'s ranks name no id: ID_MISSING; empty ranked blocks are fine there, and the order is rebuilt', () => {
  const u8 = vectorBytes(target.v), spans = recordSpans(u8);
  const { bytes } = rankedStream(u8, {}, target.k, () => true);
  const dec = new Decoder();
  dec.readHeader(bytes);
  const rs = recordSpans(bytes);
  for (let i = 0; i < target.k; i++) dec.readFrame(bytes.subarray(rs[i + 1][0], rs[i + 1][1]));
  // frame 0 is a keyframe in these vectors: sent again as the next frame (seq after the state's)
  const key = u8.subarray(spans[1][0], spans[1][1]);
  assert.ok(dec.checkFrame(key).keyframe);
  const again = (extra) => {
    const f = parseRecord(key);
    f.m.seq = dec.seqBig + 1n;
    extra(f);
    return frameRecord(f.m, f.payload);
  };
  const withRank = again((f) => {
    const s = addU32Section(f, [0]);
    f.m.blocks.push({ kind: DELETE_RANKED, count: 1, mask: 0, level: 0, sections: Uint32Array.from([s]) });
  });
  const before = snapshot(dec);
  assert.throws(() => dec.readFrame(withRank), (e) => e instanceof GsdError && e.code === 'ID_MISSING');
  assert.deepEqual(snapshot(dec), before);
  const empty = again((f) => {
    const s = addU32Section(f, []);
    f.m.blocks.push({ kind: DELETE_RANKED, count: 0, mask: 0, level: 0, sections: Uint32Array.from([s]) });
  });
  dec.readFrame(empty);
  assert.equal(dec.digestText(), vector(target.v.id).expected.digests[0]);
  assert.ok(dec.store.order, 'the order is kept through a keyframe');
  assert.equal(firstDifference([...dec.store.order.toArray()], liveIds(dec)), null);
  dec.dispose();
});
