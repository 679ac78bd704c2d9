// The live-id order of ranked ids (decoder/order.mjs, decoder/wasm/order.ts) against a plain sorted array.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LiveOrder, ORDER_LEAF } from '../decoder/order.mjs';
import { K, alloc, views } from '../decoder/kernel.mjs';

function rng(seed) {
  let s = seed >>> 0;
  return () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s; };
}
/** A random id below 2^bits (bits <= 63). */
const randomId = (r, bits) => BigInt.asUintN(bits, (BigInt(r()) << 32n) | BigInt(r()));
const cmp = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

/** The index of the first element >= x of the ascending array a. */
function lowerBound(a, x) {
  let lo = 0, hi = a.length;
  while (lo < hi) { const m = (lo + hi) >> 1; if (a[m] < x) lo = m + 1; else hi = m; }
  return lo;
}

/** n BigInt ids into kernel memory: {p, n, free()}. */
function kernelIds(ids) {
  const p = alloc(8 * ids.length + 8);
  views().u64.set(ids, p >> 3);
  return { p, n: ids.length, free: () => K.release(p) };
}

test('one id at a time: inserts, removes and ranks match a sorted array; leaves split and merge', () => {
  for (const [seed, bits, rounds] of [[1, 16, 40000], [2, 63, 30000], [3, 12, 30000]]) {
    const r = rng(seed), ord = new LiveOrder(), ref = [];
    let maxLeaves = 0;
    for (let it = 0; it < rounds; it++) {
      // phases: mostly inserts, then mostly removes, then mixed (so the order grows, shrinks and churns)
      const phase = Math.floor((3 * it) / rounds), pIns = phase === 0 ? 0.8 : phase === 1 ? 0.25 : 0.5;
      const id = randomId(r, bits);
      const k = lowerBound(ref, id), present = k < ref.length && ref[k] === id;
      if (r() / 2 ** 32 < pIns) {
        assert.equal(ord.insert(id), !present);
        if (!present) ref.splice(k, 0, id);
      } else {
        // remove a live id most of the time, an absent one otherwise
        const x = ref.length && r() % 4 ? ref[r() % ref.length] : id;
        const j = lowerBound(ref, x), live = j < ref.length && ref[j] === x;
        assert.equal(ord.remove(x), live);
        if (live) ref.splice(j, 1);
      }
      maxLeaves = Math.max(maxLeaves, ord.leaves);
      if (it % 997 === 0) {
        assert.equal(ord.check(), 0, `invariants, seed ${seed} round ${it}`);
        assert.deepEqual([...ord.toArray()], ref);
        for (let q = 0; q < 20 && ref.length; q++) { const rank = r() % ref.length; assert.equal(ord.at(rank), ref[rank]); }
      }
      assert.equal(ord.size, ref.length);
    }
    assert.equal(ord.check(), 0);
    assert.deepEqual([...ord.toArray()], ref);
    if (bits > 12) assert.ok(maxLeaves > 100, `seed ${seed}: ${maxLeaves} leaves at most (few splits exercised)`);
    ord.release();
  }
});

test('batches: a frame\'s rank lists selected together, removeHinted or removeIds, reserve + insertIds; rounds that shrink and grow the order (pages merge and split)', () => {
  const r = rng(7), bits = 40;
  // start from a build of unsorted ids (the kernel sorts them)
  const live = new Set();
  while (live.size < 30000) live.add(randomId(r, bits));
  let ref = [...live].sort(cmp);
  const shuffled = [...live];
  for (let i = shuffled.length - 1; i > 0; i--) { const j = r() % (i + 1); [shuffled[i], shuffled[j]] = [shuffled[j], shuffled[i]]; }
  const s = kernelIds(shuffled);
  const ord = LiveOrder.ofIds(s.p, s.n);
  s.free();
  assert.equal(ord.check(), 0);
  assert.deepEqual([...ord.toArray()], ref);
  const pages = [ord.pages];
  // (deletes, adds) per round: 60 rounds that shrink the order to ~3,000 ids, 60 that grow it to ~48,000, 40 mixed
  const plan = [...Array(60).fill([500, 50]), ...Array(60).fill([50, 800]), ...Array(40).fill([300, 300])];
  plan.forEach(([nd, na], round) => {
    // a frame's ranked blocks, resolved together (before the changes): two UPDATE_RANKED lists and a
    // DELETE_RANKED one, ascending each, the deletes' places kept as hints
    const ascending = (k) => { const x = new Set(); while (x.size < Math.min(k, ref.length)) x.add(r() % ref.length); return [...x].sort((a, b) => a - b); };
    const lists = [ascending(r() % 400), ascending(r() % 200), ascending(nd)];
    const p = alloc(lists.reduce((t, l) => t + 20 * l.length + 24, 0)), blocks = [], outs = [];
    let at = p;
    for (const l of lists) {
      views().u32.set(l, at >> 2);
      blocks.push({ ranks: at, n: l.length });
      outs.push((at + 4 * l.length + 7) & ~7);
      at = outs.at(-1) + 8 * l.length;
    }
    const hints = [0, 0, at];
    assert.equal(ord.selectLists(blocks, outs, hints), -1);
    lists.forEach((l, j) => assert.deepEqual([...views().u64.subarray(outs[j] >> 3, (outs[j] >> 3) + l.length)], l.map((x) => ref[x]), `round ${round} list ${j}`));
    // deletes: the DELETE_RANKED list's ids, at their places (or, every other round, by id: a DELETE_IDS block)
    const dels = lists[2].map((x) => ref[x]);
    if (round % 2 === 0) assert.equal(ord.removeHinted(outs[2], hints[2], dels.length), 0);
    else assert.equal(ord.removeIds(outs[2], dels.length), 0);
    K.release(p);
    for (const x of dels) live.delete(x);
    const kept = ref.filter((x) => live.has(x));
    // adds: an ascending batch of absent ids, some of them just deleted (a replace)
    const add = new Set();
    while (add.size < na) { const x = r() % 8 === 0 && dels.length ? dels[r() % dels.length] : randomId(r, bits); if (!live.has(x)) add.add(x); }
    const adds = [...add].sort(cmp), a = kernelIds(adds);
    for (const x of adds) live.add(x);
    ord.reserve(adds.length);
    assert.equal(ord.insertIds(a.p, a.n), 0);
    a.free();
    ref = [];
    for (let i = 0, j = 0; i < kept.length || j < adds.length;) ref.push(j >= adds.length || (i < kept.length && kept[i] < adds[j]) ? kept[i++] : adds[j++]);
    assert.equal(ord.size, ref.length);
    pages.push(ord.pages);
    if (round % 10 === 0) { assert.equal(ord.check(), 0, `round ${round}`); assert.deepEqual([...ord.toArray()], ref); }
  });
  assert.equal(ord.check(), 0);
  assert.deepEqual([...ord.toArray()], ref);
  assert.ok(pages[60] < pages[0] && pages[120] > 2 * pages[60], `pages ${pages[0]} -> ${pages[60]} -> ${pages[120]}`);
  // absent ids: counted, nothing changed
  const absent = kernelIds([ref[0] + 1n === ref[1] ? 2n ** 62n : ref[0] + 1n]);
  assert.equal(ord.removeIds(absent.p, 1), 1);
  absent.free();
  const twice = kernelIds([ref[3]]);
  ord.reserve(1);
  assert.equal(ord.insertIds(twice.p, 1), 1);
  twice.free();
  assert.deepEqual([...ord.toArray()], ref);
  ord.release();
});

test('selectLists: lists merged in one walk; a list with a rank past the last id is named; empty lists', () => {
  const ids = Array.from({ length: 5000 }, (_, i) => BigInt(11 * i + 1));
  const s = kernelIds(ids), ord = LiveOrder.ofIds(s.p, s.n);
  s.free();
  const run = (lists) => {
    const p = alloc(lists.reduce((t, l) => t + 12 * l.length + 8, 8)), blocks = [], outs = [];
    let at = p;
    for (const l of lists) { views().u32.set(l, at >> 2); blocks.push({ ranks: at, n: l.length }); outs.push((at + 4 * l.length + 7) & ~7); at = outs.at(-1) + 8 * l.length; }
    const r = ord.selectLists(blocks, outs);
    const got = lists.map((l, j) => [...views().u64.subarray(outs[j] >> 3, (outs[j] >> 3) + l.length)]);
    K.release(p);
    return { r, got };
  };
  const lists = [[0, 7, 4999], [], [1, 7, 2500, 2501], [3000]];
  const { r, got } = run(lists);
  assert.equal(r, -1);
  assert.deepEqual(got, lists.map((l) => l.map((x) => ids[x])));
  assert.equal(run([[1, 2], [3, 5000], [4]]).r, 1);
  assert.equal(run([]).r, -1);
  ord.release();
});

test('select: a rank past the last id names its index; descending ranks still select right; the empty order', () => {
  const ids = Array.from({ length: 3000 }, (_, i) => BigInt(7 * i + 3));
  const s = kernelIds(ids), ord = LiveOrder.ofIds(s.p, s.n);
  s.free();
  assert.deepEqual([...ord.selectArray(Uint32Array.from([0, 1, 2999]))], [3n, 10n, 7n * 2999n + 3n]);
  assert.equal(ord.selectArray(Uint32Array.from([0, 3000])), null);
  assert.deepEqual([...ord.selectArray(Uint32Array.from([2000, 5, 1999]))], [ids[2000], ids[5], ids[1999]]);
  const p = alloc(4 * 3 + 8 * 3 + 8), out = (p + 12 + 7) & ~7;
  views().u32.set([1, 3000, 4], p >> 2);
  assert.equal(ord.select(p, 3, out), 1);
  K.release(p);
  const empty = new LiveOrder();
  assert.equal(empty.size, 0);
  assert.equal(empty.selectArray(Uint32Array.from([0])), null);
  assert.deepEqual([...empty.selectArray(new Uint32Array(0))], []);
  assert.equal(empty.remove(5n), false);
  assert.equal(empty.insert(5n), true);
  assert.equal(empty.at(0), 5n);
  assert.equal(empty.remove(5n), true);
  assert.equal(empty.size, 0);
  assert.equal(empty.check(), 0);
  empty.release();
  ord.release();
});

test('a build with an id twice is refused; a build of ascending ids fills leaves and pages three quarters full', () => {
  const s = kernelIds([5n, 9n, 5n]);
  assert.throws(() => LiveOrder.ofIds(s.p, s.n), /an id twice/);
  s.free();
  const n = 100000, t = kernelIds(Array.from({ length: n }, (_, i) => BigInt(i) * 3n));
  const ord = LiveOrder.ofIds(t.p, t.n);
  t.free();
  assert.equal(ord.size, n);
  assert.equal(ord.leaves, Math.ceil(n / ((3 * ORDER_LEAF) / 4)));
  assert.equal(ord.pages, Math.ceil(ord.leaves / 192));
  assert.equal(ord.check(), 0);
  ord.release();
});
