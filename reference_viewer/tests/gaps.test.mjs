// The gap code (SPEC.md 4.4, compression 2, format 1.4) in the decoder: a section of C = 1 strictly
// ascending values of 1, 2 or 4 bytes stored as exp-Golomb codes of their gaps. SPEC 4.4's example,
// the Python reference's bytes (tests/data/gaps, written by tests/gap_streams.py with codec.sections'
// gap_write) and its streams (Encoder(ranked_ids=True, gap_code=True)), round trips at every order
// against an encoder written here from the spec (frame_writer.mjs), every rule that refuses stored
// bytes (DECOMPRESSION_FAILED) and every use that is MALFORMED, with the state untouched after a
// refused frame, and the conformance vectors' ascending sections rewritten as gap code.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Decoder, GsdError, decodeStreamLines } from '../decoder/index.mjs';
import { decodeSection } from '../decoder/sections.mjs';
import { arena, views } from '../decoder/kernel.mjs';
import { manifest, vectorBytes, expectedLines, snapshot } from './helpers.mjs';
import {
  parseRecord, frameRecord, recordSpans, concat, sectionRoles, sectionUses, addSection, gapCode, gapCodeOfGaps, gapsOf, bestGapOrder,
} from './frame_writer.mjs';

const GAPS = 2;
const DIR = join(dirname(fileURLToPath(import.meta.url)), 'data', 'gaps');
const DATA = JSON.parse(readFileSync(join(DIR, 'cases.json'), 'utf8'));
const hex = (s) => Uint8Array.from(s.match(/../g) || [], (b) => parseInt(b, 16));

/** decodeSection on the stored bytes alone as the payload: the C n values (Numbers) and their pointer. */
function decode(stored, { n, w, C = 1, compression = GAPS, filters = 0, width = w, raw = C * n * w,
  ctx = { cache: new Map(), refs: [1] } }) {
  const plAt = arena.put(stored);
  const s = { offset: 0, stored: stored.length, raw, compression, filters, width };
  const p = decodeSection(stored, plAt, s, 0, C, n, w, ctx);
  const V = views(), arr = w === 1 ? V.u8 : w === 2 ? V.u16 : w === 4 ? V.u32 : V.u64;
  return { p, values: Array.from(arr.subarray(p / w, p / w + C * n), Number) };
}
/** The error code decodeSection gives (null: none). */
function refusal(stored, opts) {
  arena.reset();
  try {
    decode(stored, opts);
  } catch (e) {
    assert.ok(e instanceof GsdError, String(e));
    return e.code;
  }
  return null;
}

test("SPEC 4.4's example: ranks 3, 4, 10 at k = 1 are 01 59 C0, read at widths 1, 2 and 4 as little-endian elements", () => {
  const bytes = hex('0159c0');
  assert.deepEqual(gapCode([3, 4, 10], 1), bytes);
  for (const w of [1, 2, 4]) {
    arena.reset();
    const { p, values } = decode(bytes, { n: 3, w });
    assert.deepEqual(values, [3, 4, 10]);
    const le = Array.from(views().u8.subarray(p, p + 3 * w));
    assert.deepEqual(le, [3, 4, 10].flatMap((x) => [x, ...new Array(w - 1).fill(0)]), `w ${w}`);
  }
});

test('the Python reference\'s gap_write bytes at widths 1, 2 and 4 and several orders decode to their values, and are this encoder\'s', () => {
  let cases = 0;
  for (const c of DATA.sections) {
    arena.reset();
    const stored = hex(c.hex);
    assert.equal(stored[0], c.k);
    assert.deepEqual(decode(stored, { n: c.values.length, w: c.width }).values, c.values, `w ${c.width} k ${c.k}`);
    assert.deepEqual(gapCode(c.values, c.k), stored, `encoder, w ${c.width} k ${c.k}`);
    if (c.best) assert.ok(gapCode(c.values, bestGapOrder(c.values, c.width)).length <= stored.length);
    cases++;
  }
  assert.ok(cases >= 90, `${cases} sections`);
  for (const w of [1, 2, 4]) assert.ok(DATA.sections.some((c) => c.width === w && c.values.length > 50));
});

test('round trips at every order k < 8w: widths 1, 2, 4; empty, single, top, runs, scattered, the largest gaps', () => {
  let seed = 9;
  const rnd = () => {   // mulberry32: [0, 1)
    seed = (seed + 0x6D2B79F5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  let cases = 0;
  for (const w of [1, 2, 4]) {
    const top = 2 ** (8 * w);
    const pick = (m, span) => {   // m distinct ascending values below span
      const s = new Set();
      while (s.size < Math.min(m, span)) s.add(Math.floor(rnd() * span));
      return [...s].sort((a, b) => a - b);
    };
    const sets = [[], [0], [top - 1], [0, top - 1], [top - 2, top - 1], Array.from({ length: Math.min(top, 700) }, (_, i) => i),
      pick(40, top), pick(400, top), pick(300, Math.min(top, 5000)), pick(3, 7 < top ? 7 : top)];
    const runs = [];
    for (const s of pick(60, Math.floor(top / 16))) for (let j = 0, r = 1 + Math.floor(rnd() * 8); j < r; j++) runs.push(16 * s + j);
    sets.push(runs.filter((x) => x < top));
    for (const values of sets) {
      for (let k = 0; k < 8 * w; k++) {
        arena.reset();
        const stored = gapCode(values, k);
        assert.deepEqual(decode(stored, { n: values.length, w }).values, values, `w ${w} k ${k} n ${values.length}`);
        cases++;
      }
    }
  }
  assert.equal(cases, 11 * (8 + 16 + 32));
});

test('codes at the longest (z + k = 8w) and past the fast window: values up to 2^(8w) - 1 at every k', () => {
  for (const w of [1, 2, 4]) {
    const top = 2 ** (8 * w);
    for (let k = 0; k < 8 * w; k++) {
      // first value top - 1: z = 8w - k zeros (the longest run), then 8w bits; a few small gaps after
      // it cannot follow, so the largest gap comes second here: 0 then top - 1
      for (const values of [[top - 1], [0, top - 1], [1, 2, top - 1], [2 ** (8 * w - 1), top - 2, top - 1]]) {
        arena.reset();
        assert.deepEqual(decode(gapCode(values, k), { n: values.length, w }).values, values, `w ${w} k ${k} ${values}`);
      }
    }
  }
});

test('a section of n = 0 is the k byte alone', () => {
  for (const w of [1, 2, 4]) {
    for (const k of [0, 8 * w - 1]) {
      arena.reset();
      assert.deepEqual(decode(Uint8Array.of(k), { n: 0, w }).values, []);
    }
  }
});

// ---- every rule of gap_decode that fails: DECOMPRESSION_FAILED

test('no stored bytes (no k): DECOMPRESSION_FAILED, for n = 0 too', () => {
  for (const w of [1, 2, 4]) {
    assert.equal(refusal(new Uint8Array(0), { n: 0, w }), 'DECOMPRESSION_FAILED');
    assert.equal(refusal(new Uint8Array(0), { n: 3, w }), 'DECOMPRESSION_FAILED');
  }
});

test('k >= 8w: DECOMPRESSION_FAILED (k = 8w - 1 is an order)', () => {
  for (const w of [1, 2, 4]) {
    for (const k of [8 * w, 8 * w + 1, 255]) {
      assert.equal(refusal(Uint8Array.of(k), { n: 0, w }), 'DECOMPRESSION_FAILED', `w ${w} k ${k}`);
      const codes = gapCode([3, 4, 10], 0);
      codes[0] = k;
      assert.equal(refusal(codes, { n: 3, w }), 'DECOMPRESSION_FAILED', `w ${w} k ${k} with codes`);
    }
    assert.equal(refusal(gapCode([3, 4, 10], 8 * w - 1), { n: 3, w }), null);
  }
});

test('a zero run longer than 8w - k: DECOMPRESSION_FAILED, whether or not a one and bits follow', () => {
  for (const w of [1, 2, 4]) {
    for (const k of [0, 1, 3, 8 * w - 1]) {
      const run = 8 * w - k;
      // run + 1 zeros, a one, then the run + 1 + k bits of t (zeros, or ones), padded to a byte: only
      // the run breaks a rule (with no value check after it, t = 0 would be a gap of 2^(8w + 1) - 2^k)
      for (const t of [0, 1]) {
        const bits = [...new Array(run + 1).fill(0), 1, ...new Array(run + 1 + k).fill(t)];
        const bytes = new Uint8Array(1 + Math.ceil(bits.length / 8));
        bytes[0] = k;
        bits.forEach((b, i) => { bytes[1 + (i >> 3)] |= b << (7 - (i & 7)); });
        assert.equal(refusal(bytes, { n: 1, w }), 'DECOMPRESSION_FAILED', `w ${w} k ${k} t ${t}`);
        assert.equal(refusal(concat([bytes, new Uint8Array(8)]), { n: 1, w }), 'DECOMPRESSION_FAILED');
      }
      // zeros to the end of the data: the run never ends
      const zeros = new Uint8Array(2 + w * 2);
      zeros[0] = k;
      assert.equal(refusal(zeros, { n: 1, w }), 'DECOMPRESSION_FAILED');
      // exactly 8w - k zeros is the longest valid run: the value (2^run - 1) 2^k + t, t = 0
      const ok = gapCodeOfGaps([(2 ** run - 1) * 2 ** k], k);
      assert.equal(refusal(ok, { n: 1, w }), null, `w ${w} k ${k}: the longest run`);
    }
  }
  // the spec pseudo-code's case at w = 4: 33 zeros at k = 0, then a one and data
  assert.equal(refusal(Uint8Array.of(0, 0, 0, 0, 0, 0x40, 0, 0, 0, 0, 0, 0, 0, 0), { n: 1, w: 4 }), 'DECOMPRESSION_FAILED');
});

test('codes past the stored bytes: DECOMPRESSION_FAILED (cut in the zero run, in t, one code short)', () => {
  const ok = gapCode([3, 4, 10], 1);
  assert.equal(refusal(ok.subarray(0, 2), { n: 3, w: 4 }), 'DECOMPRESSION_FAILED');
  assert.equal(refusal(ok.subarray(0, 1), { n: 3, w: 4 }), 'DECOMPRESSION_FAILED');
  assert.equal(refusal(ok, { n: 4, w: 4 }), 'DECOMPRESSION_FAILED');   // 10 bits and 6 zero bits: no fourth code
  assert.equal(refusal(ok, { n: 9, w: 4 }), 'DECOMPRESSION_FAILED');
  for (const w of [1, 2, 4]) {
    for (const k of [0, 5, 8 * w - 1]) {
      // long codes (the byte-by-byte path): every cut of the stored bytes fails
      const values = [0, 2 ** (8 * w) - 1], full = gapCode(values, k);
      for (let cut = 1; cut < full.length; cut++) {
        const r = refusal(full.subarray(0, cut), { n: 2, w });
        assert.equal(r, 'DECOMPRESSION_FAILED', `w ${w} k ${k} cut ${cut}`);
      }
    }
  }
  // a last code that ends 1 to 7 bits into the last byte, that byte cut: 1 to 7 bits of it missing
  let short = 0;
  for (const w of [1, 2, 4]) {
    for (const k of [0, 1, 3]) {
      for (let v = 0; v < 2 ** Math.min(8 * w, 9); v++) {
        for (const lead of [[], [1, 0]]) {
          const gaps = [...lead, v], full = gapCodeOfGaps(gaps, k);
          if (gaps.reduce((a, b) => a + b + 1, -1) >= 2 ** (8 * w)) continue;
          assert.equal(refusal(full, { n: gaps.length, w }), null);
          assert.equal(refusal(full.subarray(0, full.length - 1), { n: gaps.length, w }), 'DECOMPRESSION_FAILED', `w ${w} k ${k} gaps ${gaps}`);
          short++;
        }
      }
    }
  }
  assert.ok(short > 2000);
  // many codes: every cut of a 200-value section fails (the fast window's path near the end)
  const vals = Array.from({ length: 200 }, (_, i) => 37 * i + (i % 5)), full = gapCode(vals, 4);
  for (let cut = 1; cut < full.length; cut++) assert.equal(refusal(full.subarray(0, cut), { n: 200, w: 4 }), 'DECOMPRESSION_FAILED', `cut ${cut}`);
  assert.equal(refusal(full, { n: 200, w: 4 }), null);
});

test('a value of 2^(8w) or more: DECOMPRESSION_FAILED (2^(8w) - 1 is a value)', () => {
  for (const w of [1, 2, 4]) {
    const top = 2 ** (8 * w);
    for (const k of [0, 1, 4, 8 * w - 1]) {
      const over = [
        [top],                   // the first value itself (gap top)
        [top - 1, 0],            // top - 1, then the next one
        [1, top - 2],            // 1 + 1 + (top - 2) = top
        [0, top - 1, 0],         // past top - 1 at the third
      ];
      if (w === 4) over.push([top - 1, top - 1]);   // 2^33 - 1: past 2^32, exact in a Number
      for (const gaps of over) {
        assert.equal(refusal(gapCodeOfGaps(gaps, k), { n: gaps.length, w }), 'DECOMPRESSION_FAILED', `w ${w} k ${k} gaps ${gaps}`);
      }
      assert.equal(refusal(gapCodeOfGaps([top - 1], k), { n: 1, w }), null);
      assert.equal(refusal(gapCodeOfGaps([top - 2, 0], k), { n: 2, w }), null);
    }
  }
});

test('a whole byte after the last code: DECOMPRESSION_FAILED', () => {
  const ok = gapCode([3, 4, 10], 1);
  for (const extra of [[0], [0, 0], [0x80]]) {
    assert.equal(refusal(concat([ok, Uint8Array.from(extra)]), { n: 3, w: 4 }), 'DECOMPRESSION_FAILED', `${extra}`);
  }
  assert.equal(refusal(Uint8Array.of(3, 0), { n: 0, w: 2 }), 'DECOMPRESSION_FAILED');   // n = 0: k and a byte
  // codes that end on a byte boundary: no padding, and a zero byte after them is refused
  const even = gapCode([0, 1, 2, 3, 4, 5, 6, 7], 0);   // eight one-bit codes: one byte
  assert.equal(even.length, 2);
  assert.equal(refusal(even, { n: 8, w: 1 }), null);
  assert.equal(refusal(concat([even, Uint8Array.of(0)]), { n: 8, w: 1 }), 'DECOMPRESSION_FAILED');
  // fewer values than the codes hold: the rest is bytes or bits after the last code
  const vals = Array.from({ length: 64 }, (_, i) => 3 * i), many = gapCode(vals, 1);
  assert.equal(refusal(many, { n: 40, w: 2 }), 'DECOMPRESSION_FAILED');
});

test('a one bit in the padding: DECOMPRESSION_FAILED, each of the six padding bits of the example', () => {
  const ok = gapCode([3, 4, 10], 1);
  for (let b = 0; b < 6; b++) {
    const bad = ok.slice();
    bad[2] |= 1 << b;
    assert.equal(refusal(bad, { n: 3, w: 4 }), 'DECOMPRESSION_FAILED', `bit ${b}`);
  }
  assert.equal(refusal(ok, { n: 3, w: 4 }), null);
});

// ---- uses that are MALFORMED, and the order of the section checks (SPEC 4.4 decode_section)

test('compression 2 with C != 1, width 8 or filters != 0: MALFORMED, before the codes are read', () => {
  const ok = gapCode([3, 4, 10], 1), empty = new Uint8Array(0);
  for (const stored of [ok, empty]) {
    for (const w of [1, 2, 4]) {
      for (const [C, n] of [[3, 1], [2, 1], [3, 3], [9, 2], [45, 1]]) {
        assert.equal(refusal(stored, { n, w, C }), 'MALFORMED', `C ${C} w ${w}`);
      }
      for (const filters of [1, 2, 4, 8, 3, 15]) assert.equal(refusal(stored, { n: 3, w, filters }), 'MALFORMED', `filters ${filters}`);
    }
    assert.equal(refusal(stored, { n: 3, w: 8 }), 'MALFORMED', 'width 8 (ids)');
    assert.equal(refusal(stored, { n: 1, w: 8, C: 2 }), 'MALFORMED', 'width 8 (ranges)');
  }
  // the checks before it keep their order: unknown filter bits, width, raw_size, bounds
  assert.equal(refusal(ok, { n: 3, w: 4, filters: 0x10 }), 'UNSUPPORTED_FEATURE');
  assert.equal(refusal(ok, { n: 1, w: 4, C: 3, filters: 0x80 }), 'UNSUPPORTED_FEATURE');
  assert.equal(refusal(ok, { n: 3, w: 4, width: 2 }), 'MALFORMED');
  assert.equal(refusal(ok, { n: 3, w: 4, raw: 11 }), 'MALFORMED');
  assert.equal(refusal(ok, { n: 3, w: 4, raw: 3 }), 'MALFORMED');
  arena.reset();
  assert.throws(() => decodeSection(ok, arena.put(ok), { offset: 1, stored: 3, raw: 12, compression: GAPS, filters: 0, width: 4 }, 0, 1, 3, 4,
    { cache: new Map(), refs: [1] }), (e) => e instanceof GsdError && e.code === 'MALFORMED');
  // compression ids past the gap code
  for (const compression of [3, 4, 127, 255]) assert.equal(refusal(ok, { n: 3, w: 4, compression }), 'UNSUPPORTED_FEATURE');
});

test('a gap-coded section shared by two roles: the cached values for C = 1, MALFORMED for C = 3', () => {
  arena.reset();
  const stored = gapCode([3, 4, 10], 1), ctx = { cache: new Map(), refs: [3] };
  const a = decode(stored, { n: 3, w: 4, ctx }), b = decode(stored, { n: 3, w: 4, ctx });
  assert.deepEqual(a.values, [3, 4, 10]);
  assert.equal(b.p, a.p);
  assert.deepEqual(b.values, [3, 4, 10]);
  // the same 12 bytes as one element of three components (raw_size 3 * 1 * 4): cached, still refused
  assert.throws(() => decode(stored, { n: 1, w: 4, C: 3, ctx }), (e) => e instanceof GsdError && e.code === 'MALFORMED');
});

test('memory follows the stored bytes: a count no codes of the stored size can hold fails before the arena grows', () => {
  arena.reset();
  // 2^28 one-bit codes claimed in 2 bytes: 1 GiB of values not taken from the arena
  const stored = Uint8Array.of(0, 0xFF), plAt = arena.put(stored), used = arena.used, blocks = arena.blocks.length;
  const s = { offset: 0, stored: 2, raw: 2 ** 30, compression: GAPS, filters: 0, width: 4 };
  assert.throws(() => decodeSection(stored, plAt, s, 0, 1, 2 ** 28, 4, { cache: new Map(), refs: [1] }),
    (e) => e instanceof GsdError && e.code === 'DECOMPRESSION_FAILED');
  assert.equal(arena.used, used);
  assert.equal(arena.blocks.length, blocks);
  // 16 one-bit codes in 2 bytes: 64 bytes taken
  const ok = decode(Uint8Array.of(0, 0xFF, 0xFF), { n: 16, w: 4 });
  assert.deepEqual(ok.values, Array.from({ length: 16 }, (_, i) => i));
});

// ---- streams of the Python codec: Encoder(ranked_ids=True, gap_code=True)

/** [frame index, section index, role] of every gap-coded section that a block of the stream references. */
function gapSections(u8) {
  const spans = recordSpans(u8), dec = new Decoder();
  dec.readHeader(u8);
  const out = [];
  spans.slice(1).forEach(([a, b], fi) => {
    const f = parseRecord(u8.subarray(a, b));
    for (const blk of f.m.blocks) {
      if (blk.kind === 0 || blk.kind >= 10) continue;
      for (const r of sectionRoles(dec.profile, blk)) if (f.m.sections[r.si].compression === GAPS) out.push([fi, r.si, r]);
    }
  });
  dec.dispose();
  return out;
}

test('the Python encoder\'s ranked streams with gap-coded ranks give the reference decoder\'s lines', () => {
  let gapped = 0;
  for (const c of DATA.cases) {
    const u8 = new Uint8Array(readFileSync(join(DIR, c.file)));
    assert.deepEqual(decodeStreamLines(u8), c.lines, c.name);
    const g = gapSections(u8);
    assert.ok(g.length >= 5, `${c.name}: ${g.length} gap-coded sections`);
    assert.ok(g.every(([, , r]) => r.C === 1 && r.w === 4), 'ranks');
    gapped += g.length;
  }
  assert.ok(gapped >= 15, `${gapped} gap-coded sections`);
});

/**
 * Each stream's gap-coded sections, one at a time, replaced by edit(stored, role, desc) -> {bytes, desc
 * changes} | null: the frame is refused with `code` and the state is as before it; the original frame
 * then applies and gives the reference's digest. Returns the number of frames tried.
 */
function refusedFrames(edit, code) {
  let tried = 0;
  for (const c of DATA.cases) {
    const u8 = new Uint8Array(readFileSync(join(DIR, c.file))), spans = recordSpans(u8);
    const targets = gapSections(u8);
    for (const [fi, si, role] of targets) {
      const dec = new Decoder();
      dec.readHeader(u8);
      for (let i = 0; i < fi; i++) dec.readFrame(u8.subarray(spans[i + 1][0], spans[i + 1][1]));
      const fr = u8.subarray(spans[fi + 1][0], spans[fi + 1][1]), f = parseRecord(fr), s = f.m.sections[si];
      const changed = edit(f.payload.slice(s.offset, s.offset + s.stored), role, s);
      if (!changed) { dec.dispose(); continue; }
      const idx = addSection(f, changed.bytes, { raw: s.raw, compression: s.compression, filters: s.filters, width: s.width, ...changed.desc });
      for (const blk of f.m.blocks) blk.sections = Uint32Array.from(blk.sections, (x) => (x === si ? idx : x));
      const before = snapshot(dec);
      assert.throws(() => dec.readFrame(frameRecord(f.m, f.payload)), (e) => e instanceof GsdError && e.code === code,
        `${c.name} frame ${fi}: ${code}`);
      assert.deepEqual(snapshot(dec), before, `${c.name} frame ${fi}: the state moved`);
      dec.readFrame(fr);
      assert.equal(`frame ${fi} ok ${dec.digestText()}`, c.lines[fi + 1]);
      dec.dispose();
      tried++;
    }
  }
  return tried;
}

test('the streams\' gap-coded ranks broken by each rule: the frame is DECOMPRESSION_FAILED, the state untouched', () => {
  const pad = (b) => { const x = b.slice(); x[x.length - 1] |= 1; return x; };
  const edits = {
    'no k byte': () => ({ bytes: new Uint8Array(0) }),
    'k = 8w': (b) => { const x = b.slice(); x[0] = 32; return { bytes: x }; },
    'cut short': (b) => ({ bytes: b.subarray(0, b.length - 1) }),
    'a byte after the codes': (b) => ({ bytes: concat([b, Uint8Array.of(0)]) }),
    // a one in the padding where there is padding; else (codes to the byte's end) the last code changed
    'a one bit in the padding': (b) => ({ bytes: pad(b) }),
    'a zero run too long': (b) => ({ bytes: concat([Uint8Array.of(b[0]), new Uint8Array(5), b.subarray(1)]) }),
    // 2^32 - 1 then 2^32 (a single rank: 2^32 itself, a code of z + k = 32 bits)
    'a value of 2^32': (b, role) => ({ bytes: gapCodeOfGaps(role.n === 1 ? [2 ** 32] : [2 ** 32 - 1, ...new Array(role.n - 1).fill(0)], b[0]) }),
  };
  for (const [what, edit] of Object.entries(edits)) {
    const tried = refusedFrames((b, role) => {
      const r = edit(b, role);
      if (what === 'a one bit in the padding') {   // keep only sections whose codes leave padding bits
        arena.reset();
        try { decode(r.bytes, { n: role.n, w: 4 }); return null; } catch (e) { if (e.code !== 'DECOMPRESSION_FAILED') throw e; }
      }
      return r;
    }, 'DECOMPRESSION_FAILED');
    assert.ok(tried >= (what === 'a one bit in the padding' ? 8 : 15), `${what}: ${tried} frames`);
  }
});

test('the streams\' gap-coded ranks with a filter: MALFORMED; compression 3: UNSUPPORTED_FEATURE; the state untouched', () => {
  let tried = 0;
  for (const filters of [1, 4, 5, 8]) tried += refusedFrames((b) => ({ bytes: b, desc: { filters } }), 'MALFORMED');
  tried += refusedFrames((b) => ({ bytes: b, desc: { compression: 3 } }), 'UNSUPPORTED_FEATURE');
  tried += refusedFrames((b) => ({ bytes: b, desc: { filters: 0x10 } }), 'UNSUPPORTED_FEATURE');
  assert.ok(tried >= 6 * 15, `${tried} frames`);
});

// ---- the conformance vectors with their ascending one-component sections gap coded

/** The C n values of a section (Numbers), decoded as it is; null where it does not decode. */
function valuesOf(f, s, si, r) {
  arena.reset();
  try {
    const p = decodeSection(f.payload, arena.put(f.payload), s, si, r.C, r.n, r.w, { cache: new Map(), refs: [] });
    const V = views(), arr = r.w === 1 ? V.u8 : r.w === 2 ? V.u16 : V.u32;
    return Array.from(arr.subarray(p / r.w, p / r.w + r.C * r.n));
  } catch (e) {
    if (e instanceof GsdError) return null;
    throw e;
  }
}

/**
 * The stream u8 with every section that one block references in a role of C = 1 and width 1, 2 or 4
 * (ranks, palette indices, one-component attributes) and whose values are strictly ascending stored
 * as gap code, at the best order or at rotating ones. Returns {bytes, rewritten, widths}.
 */
function withGaps(u8, limits, { rotate = false } = {}) {
  const spans = recordSpans(u8), dec = new Decoder({ limits });
  dec.readHeader(u8);
  const p = dec.profile, parts = [u8.subarray(0, spans[0][1])], widths = new Set();
  let rewritten = 0, turn = 0;
  for (const [a, b] of spans.slice(1)) {
    const f = parseRecord(u8.subarray(a, b)), { refs, first } = sectionUses(p, f);
    for (const [si, r] of first) {
      const s = f.m.sections[si];
      if (refs.get(si) !== 1 || r.C !== 1 || r.w > 4 || s.width !== r.w || s.raw !== r.n * r.w || (s.filters & 0xF0)) continue;
      const values = valuesOf(f, s, si, r);
      if (!values || values.some((x, i) => i > 0 && x <= values[i - 1])) continue;
      const k = rotate ? turn++ % (8 * r.w) : bestGapOrder(values, r.w);
      f.m.sections[si] = f.m.sections[addSection(f, gapCode(values, k), { raw: s.raw, compression: GAPS, filters: 0, width: r.w })];
      f.m.sections.pop();
      rewritten++;
      widths.add(r.w);
    }
    parts.push(frameRecord(f.m, f.payload));
  }
  dec.dispose();
  return { bytes: concat(parts), rewritten, widths };
}

test('the conformance vectors\' ascending one-component sections rewritten as gap code give the same lines', () => {
  let rewritten = 0, streams = 0;
  const bad = [], widths = new Set();
  // (not the vectors that test decoder limits: the sections' sizes change)
  for (const v of manifest.filter((x) => x.expected.result === 'valid' && !x.limits)) {
    for (const rotate of [false, true]) {
      const r = withGaps(vectorBytes(v), {}, { rotate });
      if (!r.rewritten) continue;
      const got = decodeStreamLines(r.bytes);
      if (JSON.stringify(got) !== JSON.stringify(expectedLines(v))) bad.push([v.id, rotate, got.at(-1), expectedLines(v).at(-1)]);
      rewritten += r.rewritten;
      streams++;
      for (const w of r.widths) widths.add(w);
    }
  }
  assert.deepEqual(bad, []);
  assert.ok(streams > 100 && rewritten > 400, `${streams} streams, ${rewritten} sections`);
  assert.deepEqual([...widths].sort(), [1, 2, 4]);
  console.log(`# gap rewrites: ${streams} streams, ${rewritten} sections`);
});
