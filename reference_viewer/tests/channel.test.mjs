// The CHANNEL filter (SPEC.md 4.4, format 1.3: section filter bit 3) in the decoder: sections of
// C = 3g components decode as three channels of g, each channel plus the one before it after the
// other filters, and other C leave it a no-op. Byte strings of the Python reference encoder
// (codec/sections.py), a round trip of every filter combination against an encoder written here
// from the pipeline of 4.4, shared sections read under two roles, the reserved bits 4..7, and the
// conformance vectors' and palette streams' colour sections rewritten with CHANNEL.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Decoder, GsdError, decodeStreamLines } from '../decoder/index.mjs';
import { decodeSection } from '../decoder/sections.mjs';
import { arena, views } from '../decoder/kernel.mjs';
import { manifest, vectorBytes, expectedLines } from './helpers.mjs';
import { parseRecord, frameRecord, recordSpans, concat, sectionUses } from './frame_writer.mjs';

const DELTA = 1, ZIGZAG = 2, SHUFFLE = 4, CHANNEL = 8;
const hex = (s) => Uint8Array.from(s.match(/../g), (b) => parseInt(b, 16));

/** The C n values (BigInt, planar) of a section of the bytes pl, read as one role of C, n, w. */
function decode(pl, { C, n, w, filters, compression = 0, ctx = { cache: new Map(), refs: [1] } }) {
  const plAt = arena.put(pl);
  const s = { offset: 0, stored: pl.length, raw: C * n * w, compression, filters, width: w };
  const p = decodeSection(pl, plAt, s, 0, C, n, w, ctx);
  return { p, values: read(p, C * n, w) };
}
function read(p, N, w) {
  const v = views(), arr = w === 1 ? v.u8 : w === 2 ? v.u16 : w === 4 ? v.u32 : v.u64;
  return Array.from(arr.subarray(p / w, p / w + N), BigInt);
}

/** SPEC 4.4's encoder side: channel differences, delta, zigzag, shuffle (values: C n BigInt, planar). */
function encode(values, C, n, w, f) {
  const bits = BigInt(8 * w), M = (1n << bits) - 1n, half = 1n << (bits - 1n);
  const v = values.map((x) => x & M);
  if ((f & CHANNEL) && C % 3 === 0) {
    const g = C / 3;
    for (let j = g; j < C; j++) for (let i = 0; i < n; i++) v[j * n + i] = (values[j * n + i] - values[(j - g) * n + i]) & M;
  }
  if (f & DELTA) for (let j = 0; j < C; j++) for (let i = n - 1; i > 0; i--) v[j * n + i] = (v[j * n + i] - v[j * n + i - 1]) & M;
  if (f & ZIGZAG) for (let e = 0; e < v.length; e++) { const s = v[e] >= half ? v[e] - (1n << bits) : v[e]; v[e] = (s >= 0n ? 2n * s : -2n * s - 1n) & M; }
  const N = C * n, out = new Uint8Array(N * w);
  for (let e = 0; e < N; e++) {
    for (let k = 0; k < w; k++) out[(f & SHUFFLE) ? k * N + e : e * w + k] = Number((v[e] >> BigInt(8 * k)) & 0xFFn);
  }
  return out;
}

test("SPEC 4.4's example: SH_DC red 200, 10, green 203, 12, blue 201, 12 with CHANNEL and ZIGZAG", () => {
  arena.reset();
  const bytes = hex('6f1406040300');
  assert.deepEqual(encode([200n, 10n, 203n, 12n, 201n, 12n], 3, 2, 1, CHANNEL | ZIGZAG), bytes);
  assert.deepEqual(decode(bytes, { C: 3, n: 2, w: 1, filters: CHANNEL | ZIGZAG }).values, [200n, 10n, 203n, 12n, 201n, 12n]);
  // without CHANNEL the same bytes are the channels' zigzagged values themselves
  assert.deepEqual(decode(bytes, { C: 3, n: 2, w: 1, filters: ZIGZAG }).values, [200n, 10n, 3n, 2n, 254n, 0n]);
});

test('the reference encoder\'s width-2 sections with SHUFFLE, ZIGZAG, DELTA and CHANNEL: C = 3 and C = 9 (g = 3), stored and zstd', () => {
  arena.reset();
  const B = [30000, 65530, 12, 40000, 40010, 30003, 65533, 15, 40003, 40013, 29993, 65523, 5, 39993, 40003].map(BigInt);
  const b15 = hex('606b24971406000000001300000000eaea00c70000000000000000000000');
  assert.deepEqual(encode(B, 3, 5, 2, 15), b15);
  assert.deepEqual(decode(b15, { C: 3, n: 5, w: 2, filters: 15 }).values, B);
  const z = hex('28b52ffd241ec5000080606b249714060000000013eaea00c7000200b8d5b08a170957e0fc');
  assert.deepEqual(decode(z, { C: 3, n: 5, w: 2, filters: 15, compression: 1 }).values, B);
  const C9 = [[61925, 40966, 44838, 58799], [37898, 50835, 54634, 14759], [3639, 19671, 18682, 57249],
    [59809, 345, 32754, 53820], [8614, 52236, 7804, 30666], [53507, 19859, 22387, 18246],
    [47151, 16703, 64910, 29168], [31335, 33066, 38177, 36274], [33387, 65241, 52931, 51947]].flat().map(BigInt);
  const c15 = hex('35bd4012eb12ae7a6e40b9b1872ef282c7ba32dd67e07a58e3b06c3082baf1792f43ebaa1ca31e6dd7651dc81c7d07d210d3de37e4ef87157a7b1bb262e27b44b1b87cc19d007318');
  assert.deepEqual(encode(C9, 9, 4, 2, 15), c15);
  assert.deepEqual(decode(c15, { C: 9, n: 4, w: 2, filters: 15 }).values, C9);
});

test('every filter combination round trips: widths 1, 2, 4, 8, C = 1 .. 45, lengths around the 16-byte steps', () => {
  let seed = 5;
  const rnd = () => { seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0; return seed; };
  let cases = 0;
  for (const w of [1, 2, 4, 8]) {
    const bits = BigInt(8 * w), M = (1n << bits) - 1n;
    for (const C of [1, 2, 3, 4, 6, 9, 15, 21, 45]) {
      for (const n of [0, 1, 2, 5, 16, 17, 40]) {
        // colour-like values: channels near each other (small differences), and some far apart
        const base = Array.from({ length: (C / 3 | 0) * n || C * n }, () => (BigInt(rnd()) << 32n | BigInt(rnd())) & M);
        const values = Array.from({ length: C * n }, (_, e) => (rnd() & 3) === 0
          ? (BigInt(rnd()) << 32n | BigInt(rnd())) & M
          : (base[e % base.length] + BigInt((rnd() % 17) - 8)) & M);
        for (let f = 0; f < 16; f++) {
          arena.reset();
          const got = decode(encode(values, C, n, w, f), { C, n, w, filters: f }).values;
          assert.deepEqual(got, values, `w ${w} C ${C} n ${n} filters ${f}`);
          cases++;
        }
      }
    }
  }
  assert.equal(cases, 4 * 9 * 7 * 16);
});

test('CHANNEL where C is not a multiple of 3 is a no-op: the stored bytes are the values (C = 1, 2, 4)', () => {
  for (const [C, n] of [[1, 6], [2, 3], [4, 5]]) {
    arena.reset();
    const bytes = Uint8Array.from({ length: C * n * 2 }, (_, k) => (37 * k + 11) & 0xFF);
    const plain = decode(bytes, { C, n, w: 2, filters: 0 }).values;
    assert.deepEqual(decode(bytes, { C, n, w: 2, filters: CHANNEL }).values, plain, `C ${C}`);
    assert.deepEqual(decode(bytes, { C, n, w: 2, filters: CHANNEL | ZIGZAG }).values,
      decode(bytes, { C, n, w: 2, filters: ZIGZAG }).values, `C ${C} zigzag`);
  }
  const C4 = [1, 2, 3, 4, 5, 6, 7, 8].map(BigInt);   // C = 4, n = 2: no channel sum
  assert.deepEqual(decode(Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]), { C: 4, n: 2, w: 1, filters: CHANNEL }).values, C4);
});

test('a shared section under roles of different C: the channel sum where C is a multiple of 3, the raw bytes as they are otherwise', () => {
  arena.reset();
  const bytes = Uint8Array.from([10, 20, 1, 2, 3, 4]);
  const ctx = { cache: new Map(), refs: [4] };
  const as = (C, n) => decode(bytes, { C, n, w: 1, filters: CHANNEL, ctx });
  const c3 = as(3, 2);   // g = 1: 10, 20 | 11, 22 | 14, 26
  assert.deepEqual(c3.values, [10n, 20n, 11n, 22n, 14n, 26n]);
  const raw = ctx.cache.get(0);
  assert.notEqual(c3.p, raw);
  const c6 = as(6, 1);   // g = 2: 10, 20 | 11, 22 | 14, 26 element by element
  assert.deepEqual(c6.values, [10n, 20n, 11n, 22n, 14n, 26n]);
  const c2 = as(2, 3);   // no-op: the cached bytes themselves
  assert.equal(c2.p, raw);
  assert.deepEqual(c2.values, [10n, 20n, 1n, 2n, 3n, 4n]);
  assert.deepEqual(as(1, 6).values, [10n, 20n, 1n, 2n, 3n, 4n]);
  assert.deepEqual(read(raw, 6, 1), [10n, 20n, 1n, 2n, 3n, 4n]);   // the cache was not summed into
});

test('filter bits 4..7 are UNSUPPORTED_FEATURE; bit 3 alone is not', () => {
  const bytes = new Uint8Array(6);
  for (const filters of [0x10, 0x20, 0x40, 0x80, 0x18, 0x8F, 0xFF]) {
    arena.reset();
    assert.throws(() => decode(bytes, { C: 3, n: 2, w: 1, filters }),
      (e) => e instanceof GsdError && e.code === 'UNSUPPORTED_FEATURE', `filters 0x${filters.toString(16)}`);
  }
  arena.reset();
  assert.deepEqual(decode(bytes, { C: 3, n: 2, w: 1, filters: CHANNEL }).values, [0n, 0n, 0n, 0n, 0n, 0n]);
});

const CHOICES = [CHANNEL | ZIGZAG, CHANNEL | ZIGZAG | DELTA, CHANNEL | ZIGZAG | DELTA | SHUFFLE, CHANNEL, CHANNEL | SHUFFLE];

/**
 * The stream u8 with every section of C = 3g components (SH_DC, SH_REST bands, palette entry bands;
 * POSITION, whose 3 components CHANNEL treats alike) that one block references rewritten with a
 * filter set that includes CHANNEL, uncompressed; the sections' values are those the decoder reads
 * from the original. Returns {bytes, rewritten}.
 */
function withChannel(u8, limits) {
  const spans = recordSpans(u8), dec = new Decoder({ limits });
  dec.readHeader(u8);
  const p = dec.profile, parts = [u8.subarray(0, spans[0][1])];
  let rewritten = 0, pick = 0;
  for (const [a, b] of spans.slice(1)) {
    const f = parseRecord(u8.subarray(a, b)), { refs, first } = sectionUses(p, f);
    const extra = [];
    let end = f.payload.length;
    for (const [si, r] of first) {
      const s = f.m.sections[si];
      if (refs.get(si) !== 1 || r.C % 3 !== 0 || s.width !== r.w || s.raw !== r.C * r.n * r.w || (s.filters & 0xF0)) continue;
      arena.reset();
      let values;
      try {
        values = read(decodeSection(f.payload, arena.put(f.payload), s, si, r.C, r.n, r.w, { cache: new Map(), refs: [] }), r.C * r.n, r.w);
      } catch (e) { continue; }   // a section the vector means to be refused stays as it is
      const filters = CHOICES[pick++ % CHOICES.length], bytes = encode(values, r.C, r.n, r.w, filters);
      f.m.sections[si] = { offset: end, stored: bytes.length, raw: bytes.length, compression: 0, filters, width: r.w };
      extra.push(bytes);
      end += bytes.length;
      rewritten++;
    }
    f.payload = concat([f.payload, ...extra]);
    parts.push(frameRecord(f.m, f.payload));
  }
  dec.dispose();
  return { bytes: concat(parts), rewritten };
}

test("the conformance vectors' colour sections rewritten with CHANNEL give the same lines", () => {
  let rewritten = 0, streams = 0;
  const bad = [];
  // (not the vectors that test decoder limits: the rewritten sections are stored uncompressed)
  for (const v of manifest.filter((x) => x.expected.result === 'valid' && !x.limits)) {
    const { bytes, rewritten: k } = withChannel(vectorBytes(v), {});
    if (!k) continue;
    const got = decodeStreamLines(bytes);
    if (JSON.stringify(got) !== JSON.stringify(expectedLines(v))) bad.push([v.id, got.at(-1), expectedLines(v).at(-1)]);
    rewritten += k;
    streams++;
  }
  assert.deepEqual(bad, []);
  assert.ok(streams > 100 && rewritten > 500, `${streams} streams, ${rewritten} sections`);
});

test("the palette streams' entry bands and SH_DC rewritten with CHANNEL give the same lines", () => {
  const DIR = join(dirname(fileURLToPath(import.meta.url)), 'data', 'palette');
  const { cases } = JSON.parse(readFileSync(join(DIR, 'cases.json'), 'utf8'));
  let rewritten = 0;
  for (const c of cases.filter((x) => !x.error)) {
    const { bytes, rewritten: k } = withChannel(new Uint8Array(readFileSync(join(DIR, c.file))), c.limits);
    assert.deepEqual(decodeStreamLines(bytes, { limits: c.limits }), c.lines, c.name);
    rewritten += k;
  }
  assert.ok(rewritten > 20, `${rewritten} sections`);
});
