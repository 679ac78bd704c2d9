// SceneStore: slots, free list, dirty sets, generation, compaction, freed slots; IdTable.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Decoder } from '../decoder/index.mjs';
import { IdTable } from '../decoder/idtable.mjs';
import { COMPACT_MIN_FREE } from '../decoder/store.mjs';
import { vectorBytes, records } from './helpers.mjs';

function frames(id) {
  const u8 = vectorBytes(id);
  const recs = records(u8);
  const dec = new Decoder();
  dec.readHeader(u8.subarray(...recs[0]));
  return { dec, frames: recs.slice(1).map(([a, b]) => u8.subarray(a, b)) };
}

test('contract shape: stride, restCount, data size per SH degree', () => {
  for (const [id, K, stride] of [['profile_compact_sh0', 0, 16], ['profile_compact_sh1', 3, 28],
                                 ['profile_compact_sh2', 8, 40], ['profile_compact_sh3', 15, 64]]) {
    const { dec, frames: fr } = frames(id);
    for (const f of fr) dec.readFrame(f);
    const s = dec.store;
    assert.equal(s.restCount, K, id);
    assert.equal(s.stride, stride, id);
    assert.equal(s.data.length, s.capacity * s.stride, id);
    assert.ok(s.highWater <= s.capacity && s.live <= s.highWater, id);
  }
});

test('keyframe: generation changes, takeDirty says full; then a delta gives ascending unique slots', () => {
  const { dec, frames: fr } = frames('op_delete_ids');
  const s = dec.store;
  s.takeDirty();
  const g0 = s.generation;
  dec.readFrame(fr[0]);
  assert.ok(s.generation > g0);
  const d0 = s.takeDirty();
  assert.equal(d0.full, true);
  assert.equal(s.live, 6);
  assert.equal(s.highWater, 6);
  assert.deepEqual(s.takeDirty(), { full: false, slots: new Uint32Array(0) });
  dec.readFrame(fr[1]);   // deletes 2 of 6
  const d1 = s.takeDirty();
  assert.equal(d1.full, false);
  assert.equal(d1.slots.length, 2);
  assert.ok(d1.slots[0] < d1.slots[1]);
  for (const slot of d1.slots) {
    assert.equal(s.data[slot * s.stride + 3], Math.fround(-1e30));   // freed slot renders with alpha 0
    assert.equal(s.isAlive(slot), false);
  }
  assert.equal(s.live, 4);
  assert.equal(s.highWater, 6);
});

test('delete then add in one frame reuses the freed slot; highWater stays', () => {
  const { dec, frames: fr } = frames('replace_delete_ids_then_add');
  dec.readFrame(fr[0]);
  const s = dec.store, hw = s.highWater, live = s.live;
  s.takeDirty();
  const r = dec.readFrame(fr[1]);
  assert.ok(r.counts.deleted >= 1 && r.counts.add === r.counts.deleted);
  assert.equal(s.highWater, hw);
  assert.equal(s.live, live);
  const { slots } = s.takeDirty();
  assert.ok(slots.length >= r.counts.add);
  for (const slot of slots) {
    assert.equal(s.isAlive(slot), true);
    assert.ok(s.data[slot * s.stride + 3] > -1e29);
  }
});

test('updates mark only their slots dirty and rewrite only derived floats', () => {
  const { dec, frames: fr } = frames('op_update_full_mask');
  dec.readFrame(fr[0]);
  const s = dec.store;
  s.takeDirty();
  const before = s.data.slice();
  dec.readFrame(fr[1]);   // UPDATE of 3 of 6
  const { full, slots } = s.takeDirty();
  assert.equal(full, false);
  assert.equal(slots.length, 3);
  for (let slot = 0; slot < s.highWater; slot++) {
    const same = s.data.subarray(slot * s.stride, (slot + 1) * s.stride).every((x, i) => Object.is(x, before[slot * s.stride + i]));
    assert.equal(same, !slots.includes(slot), `slot ${slot}`);
  }
});

test('compaction moves live slots down in order, keeps ids and floats, bumps generation', () => {
  const { dec, frames: fr } = frames('profile_compact_sh1');
  dec.readFrame(fr[0]);
  const s = dec.store;
  const n = 3 * COMPACT_MIN_FREE;
  // grow the store with copies of slot 0's codes under fresh ids, through the store's own API
  s.reserve(n, s.live + n);
  const codes = s.codesOf(0), digest0 = s.digestText();
  const base = s.highWater;
  for (let i = 0; i < n; i++) assert.equal(s.addGaussian(0x10000000 + i, 0, codes), base + i);
  assert.equal(s.addGaussian(0x10000000, 0, codes), -1);   // a live id
  const keep = [];
  for (let i = 0; i < n; i++) if (i % 3 === 0) keep.push(base + i); else s.freeSlot(base + i);
  const want = new Map(keep.map((slot) => [s.idLoOf(slot), s.data.slice(slot * s.stride, (slot + 1) * s.stride)]));
  // same codes: the same floats but for the position (which also depends on the id's cell)
  for (const floats of want.values()) assert.deepEqual(floats.subarray(3), s.data.slice(3, s.stride));
  const gen = s.generation;
  s.maybeCompact();
  assert.ok(s.generation > gen);
  assert.equal(s.highWater, s.live);
  assert.equal(s.freeCount, 0);
  for (const [lo, floats] of want) {
    const slot = s.lookup(lo, 0);
    assert.ok(slot >= 0 && slot < s.highWater);
    assert.deepEqual(s.data.slice(slot * s.stride, (slot + 1) * s.stride), floats);
    assert.deepEqual(s.codesOf(slot), codes);
  }
  assert.equal(s.takeDirty().full, true);
  // freeing the copies again gives the keyframe's digest back (sums added and removed per slot)
  for (const [lo] of want) s.freeSlot(s.lookup(lo, 0));
  assert.equal(s.digestText(), digest0);
});

test('IdTable against a Map: inserts, overwrites, deletes (backward shift), reserve', () => {
  const t = new IdTable(4), m = new Map();
  let seed = 7;
  const rnd = (k) => { seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0; return seed % k; };
  for (let it = 0; it < 60000; it++) {
    const lo = rnd(3000) * 0x10001 >>> 0, hi = rnd(3), key = `${hi}:${lo}`, op = rnd(3);
    if (op < 2) { const prev = t.set(lo, hi, it); assert.equal(prev, m.has(key) ? m.get(key) : -1); m.set(key, it); }
    else { const prev = t.delete(lo, hi); assert.equal(prev, m.has(key) ? m.get(key) : -1); m.delete(key); }
    if (it % 5000 === 0) t.reserve(t.size + 10000);
  }
  assert.equal(t.size, m.size);
  for (const [key, v] of m) { const [hi, lo] = key.split(':').map(Number); assert.equal(t.get(lo, hi), v); }
});
