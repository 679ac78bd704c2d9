// The SH palette (SPEC.md 5.9) in the decoder: the streams of tests/data/palette (written by
// tests/palette_streams.py with the Python codec and conformance/craft.py, expected lines from the
// Python reference), the palette state, its floats, the digest's entry records and all-or-nothing apply.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Decoder, GsdError, decodeStreamLines, recordHashes, digestText } from '../decoder/index.mjs';
import { H_MARK } from '../decoder/store.mjs';
import { splitStream } from '../app/records.mjs';

const DIR = join(dirname(fileURLToPath(import.meta.url)), 'data', 'palette');
const { cases } = JSON.parse(readFileSync(join(DIR, 'cases.json'), 'utf8'));
const bytes = (c) => new Uint8Array(readFileSync(join(DIR, c.file)));
const byName = (n) => cases.find((c) => c.name === n);
const signed = (u, w) => (u >= 2 ** (8 * w - 1) ? u - 2 ** (8 * w) : u);

test('every palette stream gives the Python reference lines', () => {
  const bad = [];
  for (const c of cases) {
    const got = decodeStreamLines(bytes(c), { limits: c.limits });
    if (JSON.stringify(got) !== JSON.stringify(c.lines)) bad.push([c.name, got.at(-1), c.lines.at(-1)]);
  }
  assert.deepEqual(bad, []);
  assert.ok(cases.filter((c) => c.error).length >= 20, 'invalid palette streams');
});

test('each defect gives its error, at the frame after the keyframe (or the header)', () => {
  for (const c of cases.filter((x) => x.error)) {
    const last = c.lines.at(-1);
    assert.ok(last.endsWith(`error ${c.error}`), `${c.name}: ${last}`);
    if (!c.name.startsWith('hdr_')) assert.ok(last.startsWith('frame '), c.name);
  }
});

/** The digest of the state from scratch (SPEC 7): every Gaussian's record and every non-zero entry's. */
function digestFromScratch(dec) {
  const s = dec.store, p = dec.profile;
  let l0 = 0, l1 = 0;
  for (const { id, codes } of s.entries()) {
    const [h0, h1] = recordHashes(Uint32Array.from([Number(id & 0xFFFFFFFFn), Number(id >> 32n), ...codes]));
    l0 = (l0 + h0) >>> 0; l1 = (l1 + h1) >>> 0;
  }
  for (let e = 0; e < p.palette; e++) {
    const codes = s.paletteCodes(e);
    if (!codes.some((x) => x !== 0)) continue;
    const [h0, h1] = recordHashes(Uint32Array.from([e, 0xFFFFFFFF, ...codes]));
    l0 = (l0 + h0) >>> 0; l1 = (l1 + h1) >>> 0;
  }
  return digestText(s.live, l0, l1);
}

test('valid streams: digest from scratch after every frame, index floats, entry floats', () => {
  for (const name of ['scene_deg3_p4096', 'scene_deg1_wide', 'scene_deg2_p65536', 'digest_entry_cleared', 'keyframe_resets_palette']) {
    const c = byName(name), dec = new Decoder();
    let frames = 0;
    decodeStreamLines(bytes(c), {
      decoder: dec,
      onFrame: () => { assert.equal(digestFromScratch(dec), dec.digestText(), `${name} frame ${frames}`); frames++; },
    });
    assert.equal(frames, c.lines.length - 1, name);
    const s = dec.store, p = dec.profile, n3 = 3 * p.K;
    assert.equal(s.paletteSize, p.palette);
    assert.equal(s.stride, 20);
    assert.equal(p.NC, 15);
    const pd = s.paletteData;
    assert.equal(pd.length, p.palette * n3);
    // slot float 16: the Gaussian's index; the entry's floats: its codes times the step of their degree
    for (const { slot, codes } of s.entries()) {
      assert.equal(s.data[slot * s.stride + 16], codes[14], name);
      assert.ok(codes[14] < p.palette);
    }
    for (let e = 0; e < p.palette; e += Math.max(1, p.palette >> 9)) {
      const codes = s.paletteCodes(e);
      for (let j = 0; j < n3; j++) {
        const l = p.degreeOf(j), M = 2 ** (p.q.restBits[l - 1] - 1) - 1;
        const want = Math.fround(signed(codes[j], p.restWidth) * (p.q.restRange[l - 1] / M));
        assert.equal(pd[e * n3 + j], want, `${name} entry ${e} component ${j}`);
      }
    }
    dec.dispose();
  }
});

test('a keyframe starts from an all-zero palette', () => {
  const c = byName('keyframe_resets_palette'), u8 = bytes(c), { frames } = splitStream(u8), dec = new Decoder();
  dec.readHeader(u8);
  for (const f of frames.slice(0, -1)) dec.readFrame(f);
  const s = dec.store;
  assert.ok(s.paletteCodes(3).some((x) => x !== 0));
  const gen = s.generation;
  dec.readFrame(frames.at(-1));
  assert.notEqual(s.generation, gen);
  assert.equal(s.live, 0);
  assert.ok(s.paletteCodes(9).some((x) => x !== 0));
  for (let e = 0; e < dec.profile.palette; e++) if (e !== 9) assert.ok(s.paletteCodes(e).every((x) => x === 0), `entry ${e}`);
  assert.ok(s.paletteData.every((x, i) => x === 0 || Math.floor(i / (3 * dec.profile.K)) === 9));
  dec.dispose();
});

function snapshot(dec) {
  const s = dec.store, rows = [];
  for (let slot = 0; slot < s.highWater; slot++) {
    const r = s.rows.slice(slot * s.R, (slot + 1) * s.R);
    r[H_MARK] = 0;
    rows.push(r);
  }
  const codes = [];
  for (let e = 0; e < dec.profile.palette; e++) codes.push(...s.paletteCodes(e));
  return {
    seq: dec.seqBig, digest: dec.digestText(), live: s.live, highWater: s.highWater, generation: s.generation,
    data: s.data.slice(0, s.highWater * s.stride), rows, dirty: s.dirtyList.slice(), palette: s.paletteData.slice(),
    paletteCodes: codes, paletteDirty: s._palList ? s._palList.slice(0, s._palCount) : null, paletteUsed: s.paletteUsed,
  };
}

test('a rejected frame leaves the state, the palette and its floats exactly as they were', () => {
  let checked = 0;
  for (const c of cases.filter((x) => x.error && !x.name.startsWith('hdr_'))) {
    const u8 = bytes(c), { frames } = splitStream(u8), dec = new Decoder({ limits: c.limits });
    dec.readHeader(u8);
    for (const f of frames.slice(0, -1)) dec.readFrame(f);
    const before = snapshot(dec);
    assert.throws(() => dec.readFrame(frames.at(-1)), (e) => e instanceof GsdError && e.code === c.error, c.name);
    assert.deepEqual(snapshot(dec), before, c.name);
    dec.dispose();
    checked++;
  }
  assert.ok(checked >= 15, `${checked}`);
});

test('PALETTE frames mark the entries they set for the renderer; slots of the Gaussians using them are not rewritten', () => {
  const c = byName('scene_deg3_p4096'), u8 = bytes(c), { frames } = splitStream(u8), dec = new Decoder();
  dec.readHeader(u8);
  const s = dec.store;
  for (const [k, f] of frames.entries()) {
    s.takeDirty();
    s.takePaletteDirty();
    const pd = s.paletteData.slice();
    const r = dec.readFrame(f);
    const dirty = s.takePaletteDirty(), now = s.paletteData, n3 = 3 * dec.profile.K;
    assert.ok(s.paletteData.subarray(s.paletteUsed * n3).every((x) => x === 0), `frame ${k}: zero past paletteUsed`);
    if (r.keyframe) { assert.equal(s.takeDirty().full, true); continue; }
    // the entries set, ascending and unique; every entry whose floats changed is among them
    assert.equal(dirty.length, r.counts.palette, `frame ${k}`);
    for (let i = 1; i < dirty.length; i++) assert.ok(dirty[i] > dirty[i - 1]);
    const set = new Set(dirty);
    for (let i = 0; i < now.length; i++) if (now[i] !== pd[i]) assert.ok(set.has(Math.floor(i / n3)), `frame ${k}`);
    assert.equal(s.takePaletteDirty().length, 0);
    if (r.counts.palette && !r.counts.add && !r.counts.update) assert.equal(s.takeDirty().slots.length, 0, `frame ${k}`);
  }
  dec.dispose();
});

test('a stream without a palette: no palette data, the stride of its degree', () => {
  const c = byName('pal_in_scalar_stream'), u8 = bytes(c), dec = new Decoder();
  dec.readHeader(u8);
  assert.equal(dec.store.paletteSize, 0);
  assert.equal(dec.store.paletteData.length, 0);
  assert.equal(dec.store.stride, 28);
  dec.dispose();
});
