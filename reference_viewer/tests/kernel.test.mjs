// The wasm kernel (decoder/wasm/kernel.wasm through decoder/kernel.mjs): allocations it cannot make are
// LIMIT_EXCEEDED and leave it working; a store that must grow past what a frame reserved keeps the
// state when the frame fails later; the frame arena survives frames larger than itself.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Decoder, GsdError, decodeStreamLines } from '../decoder/index.mjs';
import { K, alloc, allocating, arena, views, blockRecord } from '../decoder/kernel.mjs';
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

test("zstd's region and the kernel share the memory: the kernel's heap starts above it; the store's arrays start on a page", () => {
  const p = alloc(16);
  assert.ok(p >= 1 << 20, `kernel heap at ${p}`);   // build.mjs: ZSTD_REGION
  K.release(p);
  const dec = new Decoder();
  const u8 = vectorBytes('profile_compact_sh3');
  let pos = dec.readHeader(u8).used;
  pos += dec.readFrame(u8.subarray(pos)).used;
  const u = views().u32, st = dec.store.st >> 2;
  for (const w of [1, 2, 9]) assert.equal(u[st + w] % 4096, 0, `store word ${w}`);   // rows, floats, id table
  dec.store.reserve(dec.store.capacity * 4, dec.store.capacity * 4);                // grown: new arrays
  const v = views().u32;
  for (const w of [1, 2, 9]) assert.equal(v[st + w] % 4096, 0, `grown store word ${w}`);
  while (pos < u8.length) pos += dec.readFrame(u8.subarray(pos)).used;
  assert.equal(dec.digestText(), vector('profile_compact_sh3').expected.digests.at(-1));
  dec.dispose();
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

test('an id in two blocks: the bit set of sharedIds finds it, and only then; too many collisions leave it undecided', () => {
  arena.reset();
  const put = (ids) => { const p = arena.take(8 * ids.length); views().u64.set(ids, p >> 3); return p; };
  const check = (lists) => {
    const ptrs = lists.map(put), l = arena.take(8 * lists.length), u = views().u32;
    lists.forEach((ids, k) => { u[(l >> 2) + 2 * k] = ptrs[k]; u[(l >> 2) + 2 * k + 1] = ids.length; });
    return K.sharedIds(l, lists.length);
  };
  let seed = 11;
  const rnd = () => { seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0; return seed; };
  const all = new Set();
  while (all.size < 6000) all.add((BigInt(rnd()) << 20n) | BigInt(rnd() & 0xFFFFF));
  const ids = [...all].sort((x, y) => (x < y ? -1 : 1));
  const parts = [[], [], [], []];
  ids.forEach((id) => parts[rnd() % 4].push(id));
  assert.equal(check(parts), 0);
  assert.equal(check(parts), 0);   // the bits were cleared
  for (const [a, b] of [[0, 3], [3, 0], [1, 2], [2, 2]]) {
    if (a === b) continue;
    const x = parts[a][rnd() % parts[a].length], moved = parts.map((p) => p.slice());
    moved[b] = moved[b].concat([x]).sort((p, q) => (p < q ? -1 : p > q ? 1 : 0));
    assert.equal(check(moved), 1, `an id of list ${a} also in ${b}`);
  }
  assert.equal(check([[1n, 5n, 9n], [2n, 6n], [3n, 2n ** 40n], [7n, 8n, 2n ** 62n], [4n, 2n ** 40n]]), 1);
  assert.equal(check([[1n, 5n, 9n], [2n, 6n], [3n, 2n ** 40n], [7n, 8n, 2n ** 62n], [4n, 2n ** 41n]]), 0);
  // many ids in many lists: more collisions than the binary searches settle
  const big = new Set();
  while (big.size < 200000) big.add(BigInt(rnd()) * 7n);
  const bl = [...big].sort((x, y) => (x < y ? -1 : 1)), many = Array.from({ length: 16 }, () => []);
  bl.forEach((id) => many[rnd() % 16].push(id));
  assert.equal(check(many), 2);
  assert.equal(check(parts), 0);   // cleared after an undecided answer too
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

test('UPDATE blocks of many batches: floats derived in place, and undone exactly when a later Gaussian fails', () => {
  const u8 = vectorBytes('profile_compact_sh3');
  const make = () => {
    const dec = new Decoder();
    let pos = dec.readHeader(u8).used;
    pos += dec.readFrame(u8.subarray(pos)).used;
    return dec;
  };
  const dec = make(), s = dec.store, p = dec.profile, seedCodes = s.entries().map((e) => e.codes);
  const N = 150;   // several of updApply's batches
  const ids = Array.from({ length: N }, (_, i) => 1_000_000 + 7 * i);
  for (let i = 0; i < N; i++) assert.ok(s.addGaussian(ids[i], 0, seedCodes[i % seedCodes.length]) >= 0);
  s.takeDirty();
  const M = p.compMaxU[14];   // SH rest component 0: valid in [-M, M] (1-byte patterns)
  const block = (mask, res) => {   // an UPDATE record: residual res(i, j) per Gaussian i, component j
    arena.reset();
    const idp = arena.take(8 * N);
    views().u64.set(ids.map(BigInt), idp >> 3);
    const comps = [];
    for (let j = 0; j < p.NC; j++) {
      const a = j < 3 ? 0 : j < 6 ? 1 : j < 10 ? 2 : j === 10 ? 3 : j < 14 ? 4 : 5;
      if (!(mask & (1 << a))) continue;
      const w = p.ck[j], src = arena.take(w * N), v = views();
      for (let i = 0; i < N; i++) {
        const r = res(i, j);
        if (w === 4) v.u32[(src >> 2) + i] = r; else if (w === 2) v.u16[(src >> 1) + i] = r; else v.u8[src + i] = r;
      }
      comps.push({ j, src });
    }
    return blockRecord({ n: N, ids: idp, mask, comps }, true);
  };
  const state = () => [s.digestText(), s.data.slice(0, s.highWater * s.stride), s.rows.slice()];
  const before = state();
  for (const mask of [0x20, 0x21]) {   // one width (u8), mixed widths (u32 positions)
    // an invalid code in a late batch: BAD_VALUE, and the undo restores codes, sums and floats
    let bl = block(mask, (i, j) => (i === 130 && j === 14 ? (M + 1 - s.code(s.lookup(ids[i], 0), 14)) & 0xFF : 1));
    assert.equal(K.updApply(s.st, bl, 1), 2);
    K.updUndo(s.st, bl);
    assert.deepEqual(state(), before);
    // a missing id in a late batch: ID_MISSING, likewise
    const keep = ids[140];
    ids[140] = 999;
    bl = block(mask, () => 1);
    assert.equal(K.updApply(s.st, bl, 1), 1);
    K.updUndo(s.st, bl);
    ids[140] = keep;
    assert.deepEqual(state(), before);
  }
  // a valid block: each Gaussian's floats are those of a Gaussian added with the new codes
  const res = (i, j) => (j < 3 ? i : j === 14 ? (s.code(s.lookup(ids[i], 0), 14) === M ? 0 : 1) : 0);
  const want = make(), ws = want.store;
  for (let i = 0; i < N; i++) {
    const c = s.codesOf(s.lookup(ids[i], 0));
    for (let j = 0; j < 3; j++) c[j] = (c[j] + i) >>> 0;
    c[14] = (c[14] + res(i, 14)) & 0xFF;
    assert.ok(ws.addGaussian(ids[i], 0, c) >= 0);
  }
  const bl = block(0x21, res);
  assert.equal(K.updApply(s.st, bl, 1), 0);
  K.commitUpd(s.st, bl);
  for (let i = 0; i < N; i++) {
    const a = s.lookup(ids[i], 0), b = ws.lookup(ids[i], 0);
    assert.deepEqual(s.data.slice(a * s.stride, (a + 1) * s.stride), ws.data.slice(b * ws.stride, (b + 1) * ws.stride), `Gaussian ${i}`);
    assert.deepEqual(s.codesOf(a), ws.codesOf(b));
  }
  assert.equal(s.takeDirty().slots.length, N);
  want.dispose();
  dec.dispose();
});

test('keyframe ADD blocks of every tile shape: rows, floats and sums as Gaussians added one by one; an invalid code names the first column of its tile', () => {
  for (const name of ['profile_compact_sh3', 'profile_compact_sh2', 'profile_compact_sh1', 'profile_compact_sh0', 'pal_keyframe_sh2']) {
    const u8 = vectorBytes(name);
    const dec = new Decoder();
    let pos = dec.readHeader(u8).used;
    pos += dec.readFrame(u8.subarray(pos)).used;
    const p = dec.profile, seed = dec.store.entries().map((e) => e.codes);
    assert.ok(seed.length > 0, name);
    const Store = dec.store.constructor;
    // codes of Gaussian i: a seed Gaussian's, the one-byte SH rest codes varied over their valid range
    // (valid in [-M[j], M[j]], 1-byte patterns; with a palette, component 14 is an entry's index)
    const M = p.compMaxU;
    const codes = (i) => {
      const c = seed[i % seed.length].slice();
      if (!p.palette) for (let j = 14; j < p.NC; j++) c[j] = ((i * 7 + j * 3) % (2 * M[j] + 1) + 256 - M[j]) & 0xFF;
      return c;
    };
    const block = (N, bad = []) => {   // a keyframe's ADD record; bad: [i, j] codes made invalid
      arena.reset();
      const idp = arena.take(8 * N);
      views().u64.set(Array.from({ length: N }, (_, i) => BigInt(1000 + 3 * i)), idp >> 3);
      const all = Array.from({ length: N }, (_, i) => codes(i));
      for (const [i, j] of bad) all[i][j] = M[j] + 1;   // (j: ROTATION's index, 6, or an SH rest component)
      const comps = [];
      for (let j = 0; j < p.NC; j++) {
        const w = p.ck[j], src = arena.take(w * N), v = views();
        for (let i = 0; i < N; i++) {
          if (w === 4) v.u32[(src >> 2) + i] = all[i][j]; else if (w === 2) v.u16[(src >> 1) + i] = all[i][j]; else v.u8[src + i] = all[i][j];
        }
        comps.push({ j, src });
      }
      return blockRecord({ n: N, ids: idp, mask: p.fullMask, comps }, false, true);
    };
    for (const N of [1, 15, 16, 17, 63, 64, 65, 100, 150, 200]) {
      const s = new Store(p);
      s.reserve(N, N);
      assert.equal(K.keyframeBlock(s.st, block(N), 0), -1, `${name} N ${N}`);
      const want = new Store(p);
      for (let i = 0; i < N; i++) assert.equal(want.addGaussian(1000 + 3 * i, 0, codes(i)), i);
      assert.equal(s.digestText(), want.digestText(), `${name} N ${N}`);
      assert.deepEqual(s.data.slice(0, N * s.stride), want.data.slice(0, N * s.stride), `${name} N ${N}`);
      for (let i = 0; i < N; i++) assert.deepEqual(s.codesOf(i), want.codesOf(i), `${name} N ${N} Gaussian ${i}`);
      s.release(); want.release();
    }
    // invalid codes: the tile (64 Gaussians) of the first one decides, and in it the lowest component
    const cases = [[150, [[129, 6]], 6], [17, [[16, 6], [0, 6]], 6]];
    if (name === 'profile_compact_sh3') {
      cases.push([150, [[140, 30]], 30], [150, [[140, 30], [130, 20]], 20], [150, [[70, 40], [65, 50], [140, 15]], 40],
        [150, [[149, 58]], 58], [150, [[129, 17], [128, 6]], 6], [17, [[16, 6], [0, 58]], 6], [100, [[99, 14]], 14]);
    }
    for (const [N, bad, j] of cases) {
      const s = new Store(p);
      s.reserve(N, N);
      assert.equal(K.keyframeBlock(s.st, block(N, bad), 0), j, `${name} ${JSON.stringify(bad)}`);
      s.release();
    }
    dec.dispose();
  }
});
