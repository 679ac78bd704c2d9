// Frame checks (SPEC.md 4.9): record framing, CRC-32, FlatBuffers verification, frame limits, the
// block and section table, section decoding, sequencing and id rules (H1..H10, F1..F13). Nothing
// here reads or changes the scene state: parseFrame returns a plan that decoder/apply.mjs applies.
import { fail } from './errors.mjs';
import { crc32, crc32Into } from './crc32.mjs';
import { readStreamHeader, readFrameMeta } from './flatbuf.mjs';
import { decodeSection } from './sections.mjs';
import { checkHeaderDomain, SH_PALETTE } from './profile.mjs';
import { K, arena, allocating, views } from './kernel.mjs';

export const SPEC_LIMITS = Object.freeze({
  max_header_bytes: 65536,
  max_frame_bytes: 2 ** 30,
  max_blocks: 4096,
  max_sections: 16384,
  max_frame_raw_bytes: 2 ** 32,
  max_ids_per_frame: 2 ** 24,
  max_ranges_per_frame: 2 ** 20,
  max_gaussians: 2 ** 24,
});

export const ADD = 1, UPDATE = 2, DELETE_IDS = 3, DELETE_RANGES = 4, DELETE_CELLS = 5, PALETTE = 6, ADD_IMPLICIT = 7;
export const UPDATE_RANKED = 8, DELETE_RANKED = 9;   // 1.2: ranks among the live ids instead of ids (SPEC 6.1)

const u32le = (u8, p) => (u8[p] | (u8[p + 1] << 8) | (u8[p + 2] << 16) | (u8[p + 3] << 24)) >>> 0;
const popcount = (x) => { let c = 0; for (; x; x &= x - 1) c++; return c; };

/** Limits of SPEC 9.1, lowered by `given` (names as in 9.1); a decoder never raises them. */
export function makeLimits(given = {}) {
  const out = { ...SPEC_LIMITS };
  for (const [k, v] of Object.entries(given || {})) {
    if (!(k in SPEC_LIMITS)) throw new TypeError(`unknown GSD limit ${k}`);
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new TypeError(`bad value for limit ${k}: ${v}`);
    out[k] = Math.min(n, SPEC_LIMITS[k]);
  }
  return Object.freeze(out);
}

/**
 * H1..H9 of the header record at the start of u8: returns {versionMajor, versionMinor, h (the
 * StreamHeader fields), used}; H10 (the domains) is checkHeaderDomain's.
 */
export function readHeaderRecord(u8, message, L) {
  if (u8.length < 4) fail('TRUNCATED', 'header record shorter than its magic');
  if (u8[0] !== 0x47 || u8[1] !== 0x53 || u8[2] !== 0x44 || u8[3] !== 0x48) fail('BAD_MAGIC', 'not a GSDH record');
  if (u8.length < 12) fail('TRUNCATED', 'header prefix');
  const versionMajor = u8[4], versionMinor = u8[5];
  if (versionMajor !== 1) fail('UNSUPPORTED_VERSION', `version ${versionMajor}.${versionMinor}`);
  const bodyLen = u32le(u8, 8);
  if (bodyLen > L.max_header_bytes) fail('LIMIT_EXCEEDED', `header body_len ${bodyLen}`);
  const used = 16 + bodyLen;
  if (u8.length < used) fail('TRUNCATED', 'header record');
  if (crc32(u8, 0, 12 + bodyLen) !== u32le(u8, 12 + bodyLen)) fail('BAD_CHECKSUM', 'header CRC-32');
  if (message && u8.length !== used) fail('MALFORMED', 'bytes after the header record in its message');
  const h = readStreamHeader(u8.subarray(12, 12 + bodyLen));
  if (!h.grid) fail('MALFORMED', 'StreamHeader.grid absent');
  if (h.requiredFeatures & ~SH_PALETTE) fail('UNSUPPORTED_FEATURE', `required header features 0x${h.requiredFeatures.toString(16)}`);
  checkHeaderDomain(h);
  return { versionMajor, versionMinor, h, used };
}

/**
 * F1..F13 of the frame record at the start of u8 for a stream of profile p whose state is at seq
 * `seqBig`. Returns the plan {keyframe, m (the metadata), adds, upds (blocks: {n, ids, mask, comps:
 * [{j, src}] by ascending j}), dels ({n, ids}), ranges ({n, r}), cells ({n, level, c}), pals
 * (PALETTE blocks: {n, ids: the u16 entry indices, comps: [{j, src}], j the entry component}),
 * rupds and rdels (UPDATE_RANKED and DELETE_RANKED blocks: as upds and dels with `ranks`, u32
 * ascending, in place of ids: apply resolves them against the state, SPEC 6.1), frameLen}; ids,
 * ranks, r, c and src are pointers into the frame arena (decoder/kernel.mjs), valid until the next
 * frame.
 */
export function parseFrame(u8, message, L, p, seqBig) {
  // ---- F1..F8 framing
  if (u8.length < 4) fail('TRUNCATED', 'frame record shorter than its magic');
  if (u8[0] !== 0x47 || u8[1] !== 0x53 || u8[2] !== 0x44 || u8[3] !== 0x46) fail('BAD_MAGIC', 'not a GSDF record');
  if (u8.length < 12) fail('TRUNCATED', 'frame prefix');
  const frameLen = u32le(u8, 4), metaLen = u32le(u8, 8);
  if (frameLen < 16) fail('MALFORMED', `frame_len ${frameLen}`);
  if (frameLen > L.max_frame_bytes) fail('LIMIT_EXCEEDED', `frame_len ${frameLen}`);
  if (u8.length < frameLen) fail('TRUNCATED', 'frame record');
  if (metaLen > frameLen - 16) fail('MALFORMED', `meta_len ${metaLen}`);
  // the record is copied into the frame arena as its CRC-32 is computed: zstd reads the sections there
  arena.reset();
  const rec = arena.take(frameLen);
  if (crc32Into(u8, frameLen, frameLen - 4, rec) !== u32le(u8, frameLen - 4)) fail('BAD_CHECKSUM', 'frame CRC-32');
  if (message && u8.length !== frameLen) fail('MALFORMED', 'bytes after the frame record in its message');
  const meta = u8.subarray(12, 12 + metaLen);
  const payload = u8.subarray(12 + metaLen, frameLen - 4), payloadAt = rec + 12 + metaLen;
  // ---- F9 metadata
  const m = readFrameMeta(meta);
  if (m.blocks.length > L.max_blocks) fail('LIMIT_EXCEEDED', `${m.blocks.length} blocks`);
  if (m.sections.length > L.max_sections) fail('LIMIT_EXCEEDED', `${m.sections.length} sections`);
  if (m.requiredFeatures !== 0n) fail('UNSUPPORTED_FEATURE', `required frame features 0x${m.requiredFeatures.toString(16)}`);
  // ---- F10 frame limits
  let rawSum = 0, idSum = 0, rangeSum = 0;
  for (const s of m.sections) rawSum += s.raw;
  if (rawSum > L.max_frame_raw_bytes) fail('LIMIT_EXCEEDED', `frame raw bytes ${rawSum}`);
  for (const b of m.blocks) {
    if ((b.kind >= 1 && b.kind <= 3) || (b.kind >= PALETTE && b.kind <= DELETE_RANKED)) idSum += b.count;
    else if (b.kind === 4 || b.kind === 5) rangeSum += b.count;
  }
  if (idSum > L.max_ids_per_frame) fail('LIMIT_EXCEEDED', `${idSum} ids in the frame`);
  if (rangeSum > L.max_ranges_per_frame) fail('LIMIT_EXCEEDED', `${rangeSum} ranges and cells in the frame`);
  // ---- F11 block structure
  const d = p.shDegree, nsec = m.sections.length;
  const restSecs = p.palette ? 1 : d;   // SH_REST sections of an ADD or UPDATE: one of indices, or d bands
  const blocks = [];
  for (let bi = 0; bi < m.blocks.length; bi++) {
    const b = m.blocks[bi];
    if (b.kind === 0) fail('MALFORMED', `block ${bi}: kind 0`);
    if (b.kind >= 128) continue;
    if (b.kind > DELETE_RANKED) fail('UNSUPPORTED_FEATURE', `block ${bi}: kind ${b.kind}`);
    if (b.kind === PALETTE && !p.palette) fail('MALFORMED', `block ${bi}: PALETTE in a stream without an SH palette`);
    if (b.kind === ADD_IMPLICIT && !p.implicitIds) {
      fail('MALFORMED', `block ${bi}: ADD_IMPLICIT in a lossless stream or with placements over 64 bits`);
    }
    let want = 1;
    if (b.kind === UPDATE || b.kind === UPDATE_RANKED) {
      if (b.mask === 0 || (b.mask & ~p.fullMask)) fail('MALFORMED', `block ${bi}: UPDATE mask 0x${b.mask.toString(16)}`);
      want = 1 + popcount(b.mask & 0x1F) + ((b.mask & 0x20) ? restSecs : 0);
    } else if (b.kind === ADD) want = 1 + 5 + restSecs;
    else if (b.kind === ADD_IMPLICIT) want = 1 + 4 + restSecs;
    else if (b.kind === PALETTE) want = 1 + d;
    if (b.sections.length !== want) fail('MALFORMED', `block ${bi}: ${b.sections.length} sections, kind ${b.kind} needs ${want}`);
    for (const si of b.sections) if (si >= nsec) fail('MALFORMED', `block ${bi}: section index ${si} of ${nsec}`);
    blocks.push(b);
  }
  // ---- F12 sections, in block order
  const refs = new Int32Array(nsec);   // references to each section (those of 2+ are cached)
  for (const b of blocks) for (const si of b.sections) refs[si]++;
  const ctx = { cache: new Map(), refs };
  const sec = (si, C, n, w) => decodeSection(payload, payloadAt, m.sections[si], si, C, n, w, ctx);
  const adds = [], upds = [], dels = [], ranges = [], cells = [], pals = [], rupds = [], rdels = [];
  for (const b of blocks) {
    const n = b.count, S = b.sections;
    if (b.kind === ADD || b.kind === UPDATE || b.kind === ADD_IMPLICIT || b.kind === UPDATE_RANKED) {
      const ranked = b.kind === UPDATE_RANKED, first = sec(S[0], 1, n, ranked ? 4 : 8);
      const mask = b.kind === UPDATE || ranked ? b.mask : p.fullMask;
      const comps = [];   // {j, src}: component j's n codes at src
      let k = 1, ids = first;
      if (b.kind === ADD_IMPLICIT) {   // ids and position codes from the placements (6.1)
        const w = p.attrWidth[0], pos = arena.take(3 * n * w);
        ids = arena.take(8 * n);
        implicitIds(p, first, n, ids, pos);
        for (let c = 0; c < 3; c++) comps.push({ j: c, src: pos + c * n * w });
      }
      for (let a = b.kind === ADD_IMPLICIT ? 1 : 0; a < 5; a++) {
        if (!(mask & (1 << a))) continue;
        const C = p.attrComps[a], w = p.attrWidth[a], arr = sec(S[k++], C, n, w);
        for (let c = 0; c < C; c++) comps.push({ j: p.attrFirst[a] + c, src: arr + c * n * w });
      }
      if ((mask & 0x20) && p.palette) {
        comps.push({ j: 14, src: sec(S[k++], 1, n, 2) });   // palette indices (5.9)
      } else if (mask & 0x20) {
        const w = p.attrWidth[5];
        for (let l = 1; l <= d; l++) {
          const bc = p.bandComponents(l), arr = sec(S[k++], bc.length, n, w);
          for (let t = 0; t < bc.length; t++) comps.push({ j: 14 + bc[t], src: arr + t * n * w });
        }
      }
      comps.sort((x, y) => x.j - y.j);
      if (ranked) rupds.push({ n, ranks: first, mask, comps });
      else (b.kind === UPDATE ? upds : adds).push({ n, ids, mask, comps });
    } else if (b.kind === PALETTE) {
      const ids = sec(S[0], 1, n, 2), w = p.restWidth, comps = [];
      for (let l = 1; l <= d; l++) {
        const bc = p.bandComponents(l), arr = sec(S[l], bc.length, n, w);
        for (let t = 0; t < bc.length; t++) comps.push({ j: bc[t], src: arr + t * n * w });
      }
      comps.sort((x, y) => x.j - y.j);
      pals.push({ n, ids, mask: 0, comps });
    } else if (b.kind === DELETE_IDS) {
      dels.push({ n, ids: sec(S[0], 1, n, 8) });
    } else if (b.kind === DELETE_RANKED) {
      rdels.push({ n, ranks: sec(S[0], 1, n, 4) });
    } else if (b.kind === DELETE_RANGES) {
      ranges.push({ n, r: sec(S[0], 2, n, 8) });
    } else {
      cells.push({ n, level: b.level, c: sec(S[0], 1, n, 8) });
    }
  }
  // ---- F13 sequencing (6.5) and id rules (6.2)
  const keyframe = (m.flags & 1) !== 0;
  if (keyframe) {
    if (m.seq < 1n) fail('MALFORMED', 'keyframe seq 0');
  } else {
    if (m.baseSeq !== seqBig) fail('SEQUENCE_GAP', `base_seq ${m.baseSeq}, state seq ${seqBig}`);
    if (!(m.seq > m.baseSeq)) fail('MALFORMED', `seq ${m.seq} <= base_seq ${m.baseSeq}`);
  }
  idRules(p, adds, upds, dels, ranges, cells);
  paletteRules(p, pals);
  for (const b of rupds.concat(rdels)) rankRules(b);
  return { keyframe, m, adds, upds, dels, ranges, cells, pals, rupds, rdels, frameLen };
}

/** The ranks of a ranked block strictly ascending (6.2); that they name live ids is apply's (6.1, F14). */
function rankRules({ n, ranks }) {
  const r = K.checkRanks(ranks, n);
  if (r === 2) fail('DUPLICATE_ID', 'equal adjacent ranks in a ranked block');
  if (r === 3) fail('BAD_VALUE', 'ranks not ascending in a ranked block');
}

/** The ids and position codes of an ADD_IMPLICIT block's n placements at q (6.1), written at ids and pos. */
function implicitIds(p, q, n, ids, pos) {
  const r = allocating('implicit ids', () =>
    K.implicitIds(q, n, 3 * (p.B + p.positionBits), 3 * p.positionBits, p.S, ids, pos, p.attrWidth[0]));
  if (r === 1) fail('BAD_VALUE', `ADD_IMPLICIT placement outside the grid's ${3 * (p.B + p.positionBits)} bits`);
  if (r === 2) fail('BAD_VALUE', 'ADD_IMPLICIT placements not ascending');
  if (r === 3) fail('BAD_VALUE', 'ADD_IMPLICIT: more placements in a cell than it has slots');
}

/** The index rules of PALETTE blocks (6.2): ascending in a block, inside the palette, none in two blocks. */
function paletteRules(p, pals) {
  for (const { n, ids } of pals) {
    const r = K.checkPalIdx(ids, n, p.palette);
    if (r === 1) fail('BAD_VALUE', `PALETTE index outside the palette of ${p.palette}`);
    if (r === 2) fail('DUPLICATE_ID', 'equal adjacent indices in a PALETTE block');
    if (r === 3) fail('BAD_VALUE', 'indices not ascending in a PALETTE block');
  }
  if (pals.filter((b) => b.n > 0).length < 2) return;
  const words = (p.palette + 31) >>> 5, bits = arena.take(4 * words);
  views().u32.fill(0, bits >> 2, (bits >> 2) + words);
  for (const { n, ids } of pals) if (K.markPalIdx(bits, ids, n)) fail('DUPLICATE_ID', 'a palette index in two PALETTE blocks');
}

/**
 * DUPLICATE_ID when an id is in two blocks of a group (ADD and UPDATE blocks; DELETE_IDS blocks),
 * each block's ids ascending: the kernel's bit set of the ids' hashes, its collisions settled by
 * binary searches; where there are too many of those (many ids), a scratch id table of them all.
 */
export function crossCheck(group) {
  const nonEmpty = group.filter((b) => b.n > 0);
  if (nonEmpty.length < 2) return;
  const lists = arena.take(8 * nonEmpty.length), u = views().u32;
  nonEmpty.forEach((b, k) => { u[(lists >> 2) + 2 * k] = b.ids; u[(lists >> 2) + 2 * k + 1] = b.n; });
  const r = allocating('id check', () => K.sharedIds(lists, nonEmpty.length));
  if (r === 1) fail('DUPLICATE_ID', 'an id in two blocks');
  if (r === 0) return;
  const t = allocating('id check', () => K.idtNew(nonEmpty.reduce((s, b) => s + b.n, 0)));
  try {
    for (const { n, ids } of nonEmpty) if (K.insertIds(t, ids, n)) fail('DUPLICATE_ID', 'an id in two blocks');
  } finally { K.idtFree(t); }
}

function idRules(p, adds, upds, dels, ranges, cells) {
  const bits = p.idBits;
  const checkBlock = ({ n, ids }) => {
    const r = K.checkIds(ids, n, bits);
    if (r === 1) fail('BAD_VALUE', `id outside the grid's ${bits} bits`);
    if (r === 2) fail('DUPLICATE_ID', 'equal adjacent ids in a block');
    if (r === 3) fail('BAD_VALUE', 'ids not ascending in a block');
  };
  for (const b of adds) checkBlock(b);
  for (const b of upds) checkBlock(b);
  for (const b of dels) checkBlock(b);
  crossCheck(adds.concat(upds));
  crossCheck(dels);
  for (const { n, r } of ranges) {
    const e = K.checkRanges(r, n, bits);
    if (e === 1) fail('BAD_VALUE', 'range end outside the grid');
    if (e === 2) fail('BAD_VALUE', 'range first > last');
  }
  for (const { n, level, c } of cells) {
    if (level > p.B) fail('BAD_VALUE', `cell level ${level} > cell_bits ${p.B}`);
    if (K.checkCells(c, n, 3 * (p.B - level))) fail('BAD_VALUE', `cell code outside level ${level}`);
  }
}
