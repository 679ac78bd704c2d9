// The decoder against the conformance vectors in-process, the final states, and all-or-nothing apply.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Decoder, GsdError, decodeStreamLines } from '../decoder/index.mjs';
import { H_MARK } from '../decoder/store.mjs';
import { applyPlan } from '../decoder/apply.mjs';
import { views } from '../decoder/kernel.mjs';
import { manifest, vector, vectorBytes, records, expectedLines } from './helpers.mjs';

const ATTRS = ['position', 'scale', 'rotation', 'opacity', 'sh_dc', 'sh_rest'];

test('every conformance vector, in-process', () => {
  const bad = [];
  for (const v of manifest) {
    const got = decodeStreamLines(vectorBytes(v), { limits: v.limits || {} });
    if (JSON.stringify(got) !== JSON.stringify(expectedLines(v))) bad.push(v.id);
  }
  assert.deepEqual(bad, []);
});

test('final code state equals the manifest state (ids ascending, codes per attribute; palette entries)', () => {
  let checked = 0, palettes = 0;
  for (const v of manifest) {
    if (!v.expected.state) continue;
    const dec = new Decoder({ limits: v.limits || {} });
    decodeStreamLines(vectorBytes(v), { decoder: dec });
    const p = dec.profile;
    const got = dec.store.entries();
    assert.equal(got.length, v.expected.state.length, v.id);
    got.forEach((g, i) => {
      const want = v.expected.state[i];
      assert.equal(g.id.toString(), want.id, v.id);
      for (let a = 0; a < 6; a++) {
        const first = p.attrFirst[a], w = p.attrWidth[a];
        const mine = [...g.codes.slice(first, first + p.attrComps[a])];
        const theirs = want[ATTRS[a]].map((x) => (x < 0 ? x + 2 ** (8 * w) : x));
        assert.deepEqual(mine, theirs, `${v.id} id ${want.id} ${ATTRS[a]}`);
      }
    });
    if (v.expected.palette) {   // the non-zero entries of an SH palette, indices ascending (codes signed)
      const mine = [], w = p.restWidth;
      for (let e = 0; e < p.palette; e++) {
        const c = dec.store.paletteCodes(e);
        if (c.some((x) => x !== 0)) mine.push({ index: e, sh_rest: [...c].map((x) => (x >= 2 ** (8 * w - 1) ? x - 2 ** (8 * w) : x)) });
      }
      assert.deepEqual(mine, v.expected.palette, `${v.id} palette`);
      palettes++;
    }
    checked++;
  }
  assert.ok(checked > 100, `only ${checked} vectors carry a state`);
  assert.ok(palettes > 0 || !manifest.some((v) => v.expected.palette), 'palette states checked');
});

// every row of the store but its staging mark word (a stamp the failed frame may leave behind)
function rowsState(s) {
  const out = [];
  for (let slot = 0; slot < s.highWater; slot++) {
    const r = s.rows.slice(slot * s.R, (slot + 1) * s.R);
    r[H_MARK] = 0;
    out.push(r);
  }
  return out;
}

function snapshot(dec) {
  const s = dec.store;
  return {
    seq: dec.seqBig, digest: dec.digestText(), live: s.live, highWater: s.highWater, capacity: s.capacity,
    generation: s.generation, data: s.data.slice(0, s.highWater * s.stride), rows: rowsState(s),
    dirty: s.dirtyList.slice(), free: s.freeList.slice(), ids: s.idCount,
    palette: s.paletteData.slice(), paletteDirty: s._palList ? s._palList.slice(0, s._palCount) : null, paletteUsed: s.paletteUsed,
  };
}

test('a rejected frame leaves the state, the store and its dirty set exactly as they were', () => {
  let checked = 0;
  for (const v of manifest) {
    const e = v.expected;
    if (e.result !== 'invalid' || e.frame < 1) continue;
    const u8 = vectorBytes(v);
    const dec = new Decoder({ limits: v.limits || {} });
    let pos = dec.readHeader(u8).used;
    for (let k = 0; k < e.frame; k++) pos += dec.readFrame(u8.subarray(pos)).used;
    const before = snapshot(dec);
    assert.throws(() => dec.readFrame(u8.subarray(pos)), (err) => err instanceof GsdError && err.code === e.error, v.id);
    assert.deepEqual(snapshot(dec), before, v.id);
    checked++;
  }
  assert.ok(checked > 40, `only ${checked} vectors fail after a good frame`);
});

test('SPEC 7.6 example: dequantized floats in the store', () => {
  const dec = new Decoder();
  const lines = decodeStreamLines(vectorBytes('spec_example_7_6_digest'), { decoder: dec });
  assert.equal(lines.at(-1), 'frame 2 ok 2:e711aeef:36aff9f3');
  const s = dec.store, A = dec.store.lookup(848, 0);
  assert.ok(A >= 0);
  const f = s.data.subarray(A * s.stride, (A + 1) * s.stride);
  assert.equal(s.stride, 16);
  // after the UPDATE, A's position code is (6, 10, 2): (1 + 6/16, 2 + 10/16, 3 + 2/16)
  assert.deepEqual([f[0], f[1], f[2]], [1.375, 2.625, 3.125]);
  assert.ok(Math.abs(f[3] - Math.log(0.880859375 / 0.119140625)) < 1e-6);
  assert.ok(Math.abs(f[3] - 2.000593) < 1e-5);
  assert.equal(f[7], 0);
  assert.equal(f[15], 0);
  // rotation (0, 184, 53, 165), rb = 8: stored components x, y, z; w from the norm
  const c = (k) => Math.fround(k * Math.SQRT2 / 255 - Math.SQRT1_2);
  assert.deepEqual([f[9], f[10], f[11]], [c(184), c(53), c(165)]);
  assert.ok(Math.abs(f[8] ** 2 + f[9] ** 2 + f[10] ** 2 + f[11] ** 2 - 1) < 1e-6);
  // scale code 133 of [-14, 4] at 8 bits; DC code 146 of [-3.5, 3.5]
  assert.equal(f[4], Math.fround(-14 + 133 * (18 / 255)));
  assert.equal(f[12], Math.fround(-3.5 + 146 * (7 / 255)));
});

test('frame before any header, trailing bytes in message mode, non-Uint8Array input', () => {
  const u8 = vectorBytes('op_keyframe_add');
  const [[h0, h1], [f0, f1]] = records(u8);
  assert.throws(() => new Decoder().readFrame(u8.subarray(f0, f1)), { code: 'MALFORMED' });
  const dec = new Decoder();
  assert.throws(() => dec.readHeader(u8, { message: true }), { code: 'MALFORMED' });
  assert.equal(dec.readHeader(u8.subarray(h0, h1), { message: true }).used, h1);
  const msg = new Uint8Array(f1 - f0 + 1);
  msg.set(u8.subarray(f0, f1));
  assert.throws(() => dec.readFrame(msg, { message: true }), { code: 'MALFORMED' });
  const r = dec.readFrame(u8.buffer.slice(u8.byteOffset + f0, u8.byteOffset + f1), { message: true });
  assert.equal(r.used, f1 - f0);
  assert.equal(r.keyframe, true);
  assert.equal(dec.digestText(), vector('op_keyframe_add').expected.digests[0]);
  assert.equal(typeof dec.seq, 'number');
  assert.throws(() => dec.readFrame('nope'), TypeError);
});

test('limits: names of SPEC 9.1, lowered only', () => {
  assert.throws(() => new Decoder({ limits: { max_bogus: 1 } }), TypeError);
  const dec = new Decoder({ limits: { max_gaussians: 2 ** 40, max_blocks: 3 } });
  assert.equal(dec.limits.max_gaussians, 2 ** 24);
  assert.equal(dec.limits.max_blocks, 3);
});

test('truncated prefixes of a valid stream: every cut is TRUNCATED at the record it cuts, never a crash', () => {
  const u8 = vectorBytes('op_long_mixed_chain');
  const recs = records(u8);
  for (let cut = 0; cut < u8.length; cut += 7) {
    const lines = decodeStreamLines(u8.subarray(0, cut));
    const k = recs.findIndex(([a, b]) => cut > a && cut < b);
    if (cut === 0 || k === 0) assert.deepEqual(lines, ['header error TRUNCATED']);
    else if (k > 0) assert.equal(lines.at(-1), `frame ${k - 1} error TRUNCATED`);
  }
});

test('random byte corruption: only GsdErrors, and a rejected frame leaves the state as it was', () => {
  let seed = 12345;
  const rnd = (n) => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return seed % n; };
  for (const id of ['op_all_kinds_in_one_frame', 'profile_compact_sh3', 'enc_filters_7', 'op_long_mixed_chain', 'ranked_many', 'ranked_several_blocks']) {
    const v = vector(id);
    if (!v) continue;
    const orig = vectorBytes(v);
    for (let it = 0; it < 150; it++) {
      const u8 = orig.slice();
      for (let k = 1 + rnd(3); k > 0; k--) u8[rnd(u8.length)] ^= 1 << rnd(8);
      // anything but a GsdError escaping fails the test; so does a rejected frame that moved the state
      const dec = new Decoder();
      let pos;
      try { pos = dec.readHeader(u8).used; } catch (e) { assert.ok(e instanceof GsdError); continue; }
      while (pos < u8.length) {
        const before = snapshot(dec);
        try { pos += dec.readFrame(u8.subarray(pos)).used; } catch (e) {
          assert.ok(e instanceof GsdError, String(e));
          assert.deepEqual(snapshot(dec), before, `${id} iteration ${it}`);
          break;
        }
      }
    }
  }
});

// A frame that fails inside an UPDATE block's per-component pass (component c > 0, element i > 0)
// after other codes of it, and of earlier blocks, were written in place: the undo restores them.
test('an invalid code late in an UPDATE block: the codes written before it are undone', () => {
  let checked = 0;
  for (const v of manifest) {
    if (v.expected.result !== 'valid') continue;
    const u8 = vectorBytes(v), recs = records(u8);
    const dec = new Decoder({ limits: v.limits || {} });
    dec.readHeader(u8);
    if (dec.profile.lossless) continue;
    for (let k = 1; k < recs.length; k++) {
      const fr = u8.subarray(recs[k][0], recs[k][1]);
      const plan = dec.checkFrame(fr);
      const b = plan.upds.length ? plan.upds[plan.upds.length - 1] : null;
      const p = dec.profile;
      const c = b ? b.comps.length - 1 : -1, j = b ? b.comps[c].j : -1;
      // (a component with invalid patterns: maxU + 1 below the width's range and the negative range)
      if (b && !plan.keyframe && b.n >= 2 && c >= 1 && p.compMaxU[j] < p.compMask[j] && p.compMaxU[j] + 1 < (p.compMinNegU[j] || 2 ** 32)) {
        const i = b.n - 1, ids = views().u32, id = (b.ids >> 2) + 2 * i;
        const s = dec.store.lookup(ids[id], ids[id + 1]);
        if (s >= 0) {
          const before = snapshot(dec);
          // the residual that turns this Gaussian's code into maxU + 1 (invalid), mod 2^(8w)
          const w = p.compWidth[j], at = b.comps[c].src + w * i;
          const residual = (p.compMaxU[j] + 1 - dec.store.code(s, j)) & p.compMask[j];
          const mem = views();
          if (w === 1) mem.u8[at] = residual; else if (w === 2) mem.u16[at >> 1] = residual; else mem.u32[at >> 2] = residual;
          assert.throws(() => applyPlan(dec, plan), (e) => e instanceof GsdError && e.code === 'BAD_VALUE', v.id);
          assert.deepEqual(snapshot(dec), before, v.id);
          checked++;
        }
      }
      dec.readFrame(fr);
    }
  }
  assert.ok(checked > 0, 'no vector has a multi-component UPDATE block to break');
  console.log(`# partial-undo cases: ${checked}`);
});
