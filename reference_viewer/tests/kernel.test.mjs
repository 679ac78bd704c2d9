// The wasm kernel (decoder/wasm/kernel.wasm through decoder/kernel.mjs): allocations it cannot make are
// LIMIT_EXCEEDED and leave it working; a store that must grow past what a frame reserved keeps the
// state when the frame fails later; the frame arena survives frames larger than itself.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Decoder, GsdError, decodeStreamLines } from '../decoder/index.mjs';
import { K, alloc, allocating, arena, views } from '../decoder/kernel.mjs';
import { manifest, vectorBytes, expectedLines, vector } from './helpers.mjs';

const limitExceeded = (e) => e instanceof GsdError && e.code === 'LIMIT_EXCEEDED';

test('an allocation the heap cannot make is LIMIT_EXCEEDED, and the kernel keeps working', () => {
  assert.throws(() => alloc(2 ** 31 + 1), limitExceeded);                 // refused before the kernel
  assert.throws(() => alloc(2 ** 30 + 4096), limitExceeded);              // above the heap's largest block: a trap
  const dec = new Decoder();
  const u8 = vectorBytes('profile_compact_sh3');
  let pos = dec.readHeader(u8).used;
  pos += dec.readFrame(u8.subarray(pos)).used;
  // sizes whose bytes do not fit 32 bits: refused, never wrapped around
  assert.throws(() => allocating('test', () => K.storeNew(dec.profile.P, 2 ** 27)), limitExceeded);
  const s = dec.store, before = [s.capacity, s.generation, s.digestText(), s.data.slice(0, s.highWater * s.stride)];
  assert.throws(() => s.reserve(2 ** 26, 2 ** 26), limitExceeded);
  assert.deepEqual([s.capacity, s.generation, s.digestText(), s.data.slice(0, s.highWater * s.stride)], before);
  while (pos < u8.length) pos += dec.readFrame(u8.subarray(pos)).used;   // the decoder goes on
  assert.equal(dec.digestText(), vector('profile_compact_sh3').expected.digests.at(-1));
  const p = alloc(1 << 20);                                               // the heap is consistent afterwards
  views().u8.fill(7, p, p + (1 << 20));
  K.release(p);
  const v = vector('op_long_mixed_chain') || manifest.find((m) => m.expected.result === 'valid');
  assert.deepEqual(decodeStreamLines(vectorBytes(v), { limits: v.limits || {} }), expectedLines(v));
});

test('arena: blocks stay valid within a frame across growth, and one block replaces them at reset', () => {
  arena.reset();
  const a = arena.take(16);
  views().u32[a >> 2] = 0xDEADBEEF;
  const big = arena.take(arena.cap * 3);   // forces a new block
  views().u8.fill(1, big, big + 64);
  assert.equal(views().u32[a >> 2], 0xDEADBEEF);
  assert.ok(arena.blocks.length >= 2);
  arena.reset();
  assert.equal(arena.blocks.length, 1);
  assert.equal(arena.take(8) % 8, 0);
});

test('a decoder disposed, then new decoders: the same vectors decode alike', () => {
  const ids = manifest.filter((m) => m.expected.result === 'valid').slice(0, 12);
  for (let round = 0; round < 2; round++) {
    for (const v of ids) {
      const dec = new Decoder({ limits: v.limits || {} });
      assert.deepEqual(decodeStreamLines(vectorBytes(v), { decoder: dec }), expectedLines(v), v.id);
      const store = dec.store;
      dec.dispose();
      assert.equal(dec.store, null);
      // a store someone still holds reads as empty, never as freed memory
      assert.deepEqual([store.capacity, store.highWater, store.live, store.data.length], [0, 0, 0, 0]);
      assert.equal(store.takeDirty().slots.length, 0);
    }
  }
});

test('unfilter: byte-shuffled 2-, 4- and 8-byte elements, every length around the 16-element steps', () => {
  let seed = 99;
  const rnd = () => { seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0; return seed >>> 24; };
  for (const w of [2, 4, 8]) {
    for (const N of [1, 15, 16, 17, 31, 32, 33, 100]) {
      arena.reset();
      const raw = arena.take(N * w), dst = arena.take(N * w);
      const bytes = Uint8Array.from({ length: N * w }, rnd);
      views().u8.set(bytes, raw);
      K.unfilter(raw, dst, 1, N, w, 4);   // shuffle only
      const out = views().u8.slice(dst, dst + N * w);
      for (let e = 0; e < N; e++) for (let k = 0; k < w; k++) assert.equal(out[e * w + k], bytes[k * N + e], `w ${w} N ${N} e ${e} k ${k}`);
    }
  }
});

test('an id in two of many blocks: the scratch id table finds it, and only then', () => {
  const lists = [[1n, 5n, 9n], [2n, 6n], [3n, 2n ** 40n], [7n, 8n, 2n ** 62n]];
  arena.reset();
  const put = (ids) => { const p = arena.take(8 * ids.length); views().u64.set(ids, p >> 3); return p; };
  const ptrs = lists.map(put);
  const t = K.idtNew(16);
  try {
    lists.forEach((ids, k) => assert.equal(K.insertIds(t, ptrs[k], ids.length), 0));
    assert.equal(K.insertIds(t, put([4n, 2n ** 40n]), 2), 1);   // 2^40 is in the third list
  } finally { K.idtFree(t); }
});
