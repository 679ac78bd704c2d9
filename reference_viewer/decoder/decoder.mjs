// GSD 1.0 decoder (SPEC.md 4, 5, 6, 7, 9): records -> validated plan -> all-or-nothing commit
// into a SceneStore. Written from SPEC.md; the Python codec is a separate implementation.
import { GsdError, fail } from './errors.mjs';
import { crc32 } from './crc32.mjs';
import { readStreamHeader, readFrameMeta } from './flatbuf.mjs';
import { decodeSection, U32Arena } from './sections.mjs';
import { Profile, checkHeaderDomain } from './profile.mjs';
import { SceneStore, cellOfId, writeRotation, FREED_OPACITY, H_LO, H_HI, H_S0, H_S1, H_MARK, H_FLAGS } from './store.mjs';
import { fmix32, digestText } from './digest.mjs';
import { IdTable } from './idtable.mjs';

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

const ADD = 1, UPDATE = 2, DELETE_IDS = 3, DELETE_RANGES = 4, DELETE_CELLS = 5;

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

export class Decoder {
  /**
   * @param {object} [opts]
   * @param {object} [opts.limits]  decoder limits (SPEC 9.1 names) lowered for this decoder
   * @param {boolean} [opts.verifyDigest=true]  check frames' digests (SPEC 6.3 step 6)
   */
  constructor({ limits = {}, verifyDigest = true } = {}) {
    this.limits = makeLimits(limits);
    this.verifyDigest = verifyDigest;
    this.header = null;
    this.profile = null;
    this.store = null;
    this.seqBig = 0n;
    this._stamp = 0;
    this._scratch = new IdTable(16);
    this._arena = new U32Arena();               // the decoded sections of the current frame
    this._work = new U32Arena(1 << 14, Int32Array);   // slots and undo records of the current frame
  }

  /** seq of the state (a Number; exact below 2^53, which the session protocol guarantees). */
  get seq() { return Number(this.seqBig); }

  digestText() {
    return this.store ? this.store.digestText() : digestText(0, 0, 0);
  }

  get digest() {
    const s = this.store;
    return s ? { count: s.live, lane0: s.lane0, lane1: s.lane1 } : { count: 0, lane0: 0, lane1: 0 };
  }

  /**
   * Reads the header record at the start of u8 (checks H1..H10 of SPEC 4.9) and starts a new
   * stream (empty state, seq 0). With {message: true}, u8 must hold exactly the record
   * (WebSocket, SPEC 11.3): bytes after it are MALFORMED. Returns the header info, with
   * `used` = bytes of the record.
   */
  readHeader(u8, { message = false } = {}) {
    u8 = asBytes(u8);   // a TypeError for a wrong argument type (a caller bug, not input)
    try {
      return this._readHeader(u8, message);
    } catch (e) {
      if (e instanceof GsdError) throw e;
      throw new GsdError('MALFORMED', `internal error while reading the header: ${e && e.message}`);
    }
  }

  _readHeader(u8, message) {
    const L = this.limits;
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
    if (h.requiredFeatures !== 0n) fail('UNSUPPORTED_FEATURE', `required header features 0x${h.requiredFeatures.toString(16)}`);
    checkHeaderDomain(h);
    const profile = new Profile(h);
    this.header = {
      versionMajor, versionMinor, shDegree: h.shDegree, grid: { ...h.grid }, quantization: h.quantization,
      lossless: !h.quantization, profileName: h.profileName, generator: h.generator,
      maxGaussians: h.maxGaussians, requiredFeatures: h.requiredFeatures, used,
    };
    this.profile = profile;
    this.budget = Math.min(h.maxGaussians !== 0 ? h.maxGaussians : 2 ** 24, L.max_gaussians);
    if (this.store) this.store.reset(profile); else this.store = new SceneStore(profile);
    this.seqBig = 0n;
    this.headerUsed = used;
    return this.header;
  }

  /**
   * Decodes the frame record at the start of u8 and applies it, all-or-nothing (SPEC 4.9 F1..F14).
   * Throws GsdError and leaves the state (store, seq, digest) as it was on any failure.
   * Returns {seq, seqBig, baseSeq, keyframe, digest: text|null, used, counts}.
   */
  readFrame(u8, { message = false } = {}) {
    u8 = asBytes(u8);   // a TypeError for a wrong argument type (a caller bug, not input)
    try {
      return this._readFrame(u8, message);
    } catch (e) {
      if (e instanceof GsdError) throw e;
      // a bug or an exhausted resource, never a silent partial apply: the plan is built before
      // the commit, and the commit only writes into memory reserved beforehand
      throw new GsdError('MALFORMED', `internal error while decoding: ${e && e.message}`);
    }
  }

  _readFrame(u8, message) {
    if (!this.profile) fail('MALFORMED', 'frame before any stream header');
    const L = this.limits, p = this.profile;
    // ---- F1..F8 framing
    if (u8.length < 4) fail('TRUNCATED', 'frame record shorter than its magic');
    if (u8[0] !== 0x47 || u8[1] !== 0x53 || u8[2] !== 0x44 || u8[3] !== 0x46) fail('BAD_MAGIC', 'not a GSDF record');
    if (u8.length < 12) fail('TRUNCATED', 'frame prefix');
    const frameLen = u32le(u8, 4), metaLen = u32le(u8, 8);
    if (frameLen < 16) fail('MALFORMED', `frame_len ${frameLen}`);
    if (frameLen > L.max_frame_bytes) fail('LIMIT_EXCEEDED', `frame_len ${frameLen}`);
    if (u8.length < frameLen) fail('TRUNCATED', 'frame record');
    if (metaLen > frameLen - 16) fail('MALFORMED', `meta_len ${metaLen}`);
    if (crc32(u8, 0, frameLen - 4) !== u32le(u8, frameLen - 4)) fail('BAD_CHECKSUM', 'frame CRC-32');
    if (message && u8.length !== frameLen) fail('MALFORMED', 'bytes after the frame record in its message');
    const meta = u8.subarray(12, 12 + metaLen);
    const payload = u8.subarray(12 + metaLen, frameLen - 4);
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
      if (b.kind >= 1 && b.kind <= 3) idSum += b.count;
      else if (b.kind === 4 || b.kind === 5) rangeSum += b.count;
    }
    if (idSum > L.max_ids_per_frame) fail('LIMIT_EXCEEDED', `${idSum} ids in the frame`);
    if (rangeSum > L.max_ranges_per_frame) fail('LIMIT_EXCEEDED', `${rangeSum} ranges and cells in the frame`);
    // ---- F11 block structure
    const d = p.shDegree, nsec = m.sections.length;
    const blocks = [];
    for (let bi = 0; bi < m.blocks.length; bi++) {
      const b = m.blocks[bi];
      if (b.kind === 0) fail('MALFORMED', `block ${bi}: kind 0`);
      if (b.kind >= 128) continue;
      if (b.kind > 5) fail('UNSUPPORTED_FEATURE', `block ${bi}: kind ${b.kind}`);
      let want = 1;
      if (b.kind === UPDATE) {
        if (b.mask === 0 || (b.mask & ~p.fullMask)) fail('MALFORMED', `block ${bi}: UPDATE mask 0x${b.mask.toString(16)}`);
        want = 1 + popcount(b.mask & 0x1F) + ((b.mask & 0x20) ? d : 0);
      } else if (b.kind === ADD) want = 1 + 5 + d;
      if (b.sections.length !== want) fail('MALFORMED', `block ${bi}: ${b.sections.length} sections, kind ${b.kind} needs ${want}`);
      for (const si of b.sections) if (si >= nsec) fail('MALFORMED', `block ${bi}: section index ${si} of ${nsec}`);
      blocks.push(b);
    }
    // ---- F12 sections, in block order
    const refs = new Int32Array(nsec);   // references to each section (those of 2+ are cached)
    for (const b of blocks) for (const si of b.sections) refs[si]++;
    this._arena.reset();
    this._work.reset();
    const ctx = { arena: this._arena, cache: new Map(), refs };
    const sec = (si, C, n, w) => decodeSection(payload, m.sections[si], si, C, n, w, ctx);
    const adds = [], upds = [], dels = [], ranges = [], cells = [];
    for (const b of blocks) {
      const n = b.count, S = b.sections;
      if (b.kind === ADD || b.kind === UPDATE) {
        const ids = sec(S[0], 1, n, 8);
        const mask = b.kind === ADD ? p.fullMask : b.mask;
        const comps = [];   // [j, array, offset]
        let k = 1;
        for (let a = 0; a < 5; a++) {
          if (!(mask & (1 << a))) continue;
          const C = p.attrComps[a], arr = sec(S[k++], C, n, p.attrWidth[a]);
          for (let c = 0; c < C; c++) comps.push([p.attrFirst[a] + c, arr, c * n]);
        }
        if (mask & 0x20) {
          for (let l = 1; l <= d; l++) {
            const bc = p.bandComponents(l), arr = sec(S[k++], bc.length, n, p.attrWidth[5]);
            for (let t = 0; t < bc.length; t++) comps.push([14 + bc[t], arr, t * n]);
          }
        }
        comps.sort((x, y) => x[0] - y[0]);
        // flat views of comps for row-major loops: component j, its array and offset
        const cj = Int32Array.from(comps, (c) => c[0]), cArr = comps.map((c) => c[1]), cOff = Int32Array.from(comps, (c) => c[2]);
        (b.kind === ADD ? adds : upds).push({ n, ids, mask, comps, cj, cArr, cOff });
      } else if (b.kind === DELETE_IDS) {
        dels.push({ n, ids: sec(S[0], 1, n, 8) });
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
      if (m.baseSeq !== this.seqBig) fail('SEQUENCE_GAP', `base_seq ${m.baseSeq}, state seq ${this.seqBig}`);
      if (!(m.seq > m.baseSeq)) fail('MALFORMED', `seq ${m.seq} <= base_seq ${m.baseSeq}`);
    }
    this._idRules(adds, upds, dels, ranges, cells);
    const plan = { keyframe, m, adds, upds, dels, ranges, cells, frameLen };
    if (this._parseOnly) return plan;   // benchmarks of F1..F13 alone
    // ---- F14 apply
    const counts = this._apply(keyframe, m, adds, upds, dels, ranges, cells);
    this.seqBig = m.seq;
    return {
      seq: Number(m.seq), seqBig: m.seq, baseSeq: Number(m.baseSeq), keyframe,
      digest: m.digest ? digestText(m.digest.count, m.digest.lane0, m.digest.lane1) : null,
      used: frameLen, counts,
    };
  }

  _idRules(adds, upds, dels, ranges, cells) {
    const p = this.profile, bits = p.idBits;
    const hiLimit = bits > 32 ? 2 ** (bits - 32) : 0;   // id valid iff hi < hiLimit, or hi == 0 && lo < 2^bits
    const loLimit = bits >= 32 ? 2 ** 32 : 2 ** bits;
    const valid = (lo, hi) => (bits > 32 ? hi < hiLimit : hi === 0 && lo < loLimit);
    const checkBlock = ({ n, ids: { lo, hi } }) => {
      let pl = 0, ph = 0;
      for (let i = 0; i < n; i++) {
        const l = lo[i], h = hi[i];
        if (bits > 32 ? h >= hiLimit : h !== 0 || l >= loLimit) fail('BAD_VALUE', `id outside the grid's ${bits} bits`);
        if (i > 0) {
          if (h === ph && l === pl) fail('DUPLICATE_ID', 'equal adjacent ids in a block');
          if (h < ph || (h === ph && l < pl)) fail('BAD_VALUE', 'ids not ascending in a block');
        }
        pl = l; ph = h;
      }
    };
    for (const b of adds) checkBlock(b);
    for (const b of upds) checkBlock(b);
    for (const b of dels) checkBlock(b);
    // an id in two blocks of a group: the blocks' ids are ascending (checked above), so a few blocks
    // are compared pairwise by merging; many blocks through a hash table
    const crossCheck = (group) => {
      const nonEmpty = group.filter((b) => b.n > 0);
      if (nonEmpty.length < 2) return;
      if (nonEmpty.length <= 8) {
        for (let a = 0; a < nonEmpty.length; a++) {
          for (let b = a + 1; b < nonEmpty.length; b++) mergeDuplicates(nonEmpty[a], nonEmpty[b]);
        }
        return;
      }
      const t = this._scratch;
      t.clear();
      t.reserve(nonEmpty.reduce((s, b) => s + b.n, 0));
      for (const { n, ids: { lo, hi } } of nonEmpty) {
        for (let i = 0; i < n; i++) if (t.set(lo[i], hi[i], 0) !== -1) fail('DUPLICATE_ID', 'an id in two blocks');
      }
    };
    crossCheck(adds.concat(upds));
    crossCheck(dels);
    for (const { n, r: { lo, hi } } of ranges) {
      for (let i = 0; i < n; i++) {
        const al = lo[i], ah = hi[i], bl = lo[n + i], bh = hi[n + i];
        if (!valid(al, ah) || !valid(bl, bh)) fail('BAD_VALUE', 'range end outside the grid');
        if (ah > bh || (ah === bh && al > bl)) fail('BAD_VALUE', 'range first > last');
      }
    }
    for (const { n, level, c: { lo, hi } } of cells) {
      if (level > p.B) fail('BAD_VALUE', `cell level ${level} > cell_bits ${p.B}`);
      const cb = 3 * (p.B - level);
      for (let i = 0; i < n; i++) {
        const ok = cb > 32 ? hi[i] < 2 ** (cb - 32) : hi[i] === 0 && lo[i] < 2 ** cb;
        if (!ok) fail('BAD_VALUE', `cell code outside level ${level}`);
      }
    }
  }

  /** Merged, sorted, disjoint id intervals of all ranges and cells: {n, sHi, sLo, eHi, eLo}. */
  _intervals(ranges, cells) {
    const p = this.profile, iv = [];
    const big = (lo, hi) => (BigInt(hi) << 32n) | BigInt(lo);
    for (const { n, r: { lo, hi } } of ranges) for (let i = 0; i < n; i++) iv.push([big(lo[i], hi[i]), big(lo[n + i], hi[n + i])]);
    for (const { n, level, c: { lo, hi } } of cells) {
      const sh = BigInt(p.S + 3 * level);
      for (let i = 0; i < n; i++) { const c = big(lo[i], hi[i]); iv.push([c << sh, ((c + 1n) << sh) - 1n]); }
    }
    iv.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    const merged = [];
    for (const [a, b] of iv) {
      const last = merged[merged.length - 1];
      if (last && a <= last[1] + 1n) { if (b > last[1]) last[1] = b; } else merged.push([a, b]);
    }
    const k = merged.length, M = 0xFFFFFFFFn;
    const out = { n: k, sHi: new Uint32Array(k), sLo: new Uint32Array(k), eHi: new Uint32Array(k), eLo: new Uint32Array(k) };
    merged.forEach(([a, b], i) => {
      out.sHi[i] = Number(a >> 32n); out.sLo[i] = Number(a & M); out.eHi[i] = Number(b >> 32n); out.eLo[i] = Number(b & M);
    });
    return out;
  }

  _apply(keyframe, m, adds, upds, dels, ranges, cells) {
    const p = this.profile, st = this.store;
    const K0 = st.K0, K1 = st.K1, R = st.R, ck = st.ck, ci = st.ci;
    const rows = st.rows, r16 = st.rows16, r8 = st.rows8, ids = st.ids;
    const work = this._work;   // Int32 scratch of this frame (slots, undo records)
    if (++this._stamp >= 0x7FFFFFFF) {   // stamps of staged deletes in the rows' mark word
      for (let s = 0; s < st.highWater; s++) rows[s * R + H_MARK] = 0;
      this._stamp = 1;
    }
    const sk = this._stamp;
    let lane0 = keyframe ? 0 : st.lane0, lane1 = keyframe ? 0 : st.lane1;
    let live = keyframe ? 0 : st.live;
    // ---- step 2: deletes (staged: a mark in the row, the stamp of this frame)
    const delSlots = [];
    let nDelIds = 0, nRanges = 0, nCells = 0;
    for (const { n, ids: { lo, hi } } of dels) {
      nDelIds += n;
      if (keyframe) { if (n > 0) fail('ID_MISSING', 'DELETE_IDS in a keyframe (the state is empty)'); continue; }
      const sl = work.take(n);
      ids.getMany(lo, hi, n, sl);
      for (let i = 0; i < n; i++) {
        const s = sl[i];
        if (s < 0 || rows[s * R + H_MARK] === sk) fail('ID_MISSING', 'DELETE_IDS of an id that is not live');
        rows[s * R + H_MARK] = sk;
        delSlots.push(s);
      }
    }
    for (const r of ranges) nRanges += r.n;
    for (const c of cells) nCells += c.n;
    if (!keyframe && nRanges + nCells > 0 && st.live > delSlots.length) {
      const iv = this._intervals(ranges, cells);
      if (iv.n) {
        const { sHi, sLo, eHi, eLo } = iv;
        for (let s = 0, b = 0; s < st.highWater; s++, b += R) {
          if (!(rows[b + H_FLAGS] & 1) || rows[b + H_MARK] === sk) continue;
          const h = rows[b + H_HI], l = rows[b + H_LO];
          // greatest interval start <= id
          let a = 0, e = iv.n - 1, f = -1;
          while (a <= e) {
            const mid = (a + e) >> 1;
            if (sHi[mid] < h || (sHi[mid] === h && sLo[mid] <= l)) { f = mid; a = mid + 1; } else e = mid - 1;
          }
          if (f >= 0 && (h < eHi[f] || (h === eHi[f] && l <= eLo[f]))) { rows[b + H_MARK] = sk; delSlots.push(s); }
        }
      }
    }
    for (let i = 0; i < delSlots.length; i++) {
      const b = delSlots[i] * R;
      lane0 = (lane0 - fmix32(rows[b + H_S0])) >>> 0;
      lane1 = (lane1 - fmix32(rows[b + H_S1])) >>> 0;
    }
    live -= delSlots.length;
    // ---- step 3: adds (checked and hashed here from the decoded arrays; written at commit)
    let nAdd = 0;
    let built = null;
    if (keyframe) {
      for (const b of adds) nAdd += b.n;
      // the result's size is known now: check the budget (step 5) before building anything
      if (nAdd > this.budget) fail('LIMIT_EXCEEDED', `${nAdd} live Gaussians, budget ${this.budget}`);
      built = this._buildKeyframe(adds, nAdd);   // validates codes (BAD_VALUE) into a new store
      lane0 = built.lane0; lane1 = built.lane1;
    }
    for (const b of (keyframe ? [] : adds)) {
      const { n, ids: { lo, hi }, comps } = b;
      nAdd += n;
      const sl = work.take(n);
      ids.getMany(lo, hi, n, sl);
      for (let i = 0; i < n; i++) {
        const s = sl[i];
        if (s >= 0 && rows[s * R + H_MARK] !== sk) fail('ID_EXISTS', 'ADD of a live id');
      }
      // lane sums of the new records, and the codes' validity (5.6), one pass per component
      const s0 = work.take(n), s1 = work.take(n);
      const k00 = K0[0], k01 = K0[1], k10 = K1[0], k11 = K1[1];
      for (let i = 0; i < n; i++) {
        s0[i] = (Math.imul(lo[i], k00) + Math.imul(hi[i], k01)) | 0;
        s1[i] = (Math.imul(lo[i], k10) + Math.imul(hi[i], k11)) | 0;
      }
      for (const [j, arr, off] of comps) {
        const maxU = p.compMaxU[j], mode = p.lossless ? 2 : maxU === 0xFFFFFFFF ? 0 : 1;
        if (sumColumn(arr, off, n, s0, s1, K0[j + 2], K1[j + 2], maxU, p.compMinNegU[j] || 2 ** 32, mode) >= 0) {
          fail('BAD_VALUE', `invalid code (component ${j}) in an ADD`);
        }
      }
      for (let i = 0; i < n; i++) { lane0 = (lane0 + fmix32(s0[i] >>> 0)) >>> 0; lane1 = (lane1 + fmix32(s1[i] >>> 0)) >>> 0; }
      b.s0 = s0; b.s1 = s1;
    }
    live += nAdd;
    // ---- step 4: updates: codes and sums in place (undone below if the frame fails from here
    // on); their floats are derived at commit
    let nUpd = 0;
    const lossless = p.lossless, undo = [];
    try {
    for (const b of upds) {
      const { n, ids: { lo, hi }, cj, cArr, cOff } = b;
      nUpd += n;
      if (n > 0 && keyframe) fail('ID_MISSING', 'UPDATE in a keyframe (the state is empty)');
      const nc = cj.length;
      const cMsk = new Int32Array(nc), cK0 = new Int32Array(nc), cK1 = new Int32Array(nc);
      const cMax = new Float64Array(nc), cNeg = new Float64Array(nc), cKind = new Int32Array(nc), cIdx = new Int32Array(nc);
      for (let c = 0; c < nc; c++) {
        const j = cj[c];
        cMsk[c] = p.compMask[j]; cK0[c] = K0[j + 2]; cK1[c] = K1[j + 2];
        cMax[c] = p.compMaxU[j]; cNeg[c] = p.compMinNegU[j] || 2 ** 32;
        cKind[c] = ck[j]; cIdx[c] = ci[j];
      }
      // The id-table probes first, in one loop (independent: their cache misses overlap); then a
      // pass over the rows (mark check, old sums), one pass per component (old code + delta, its
      // validity, the new code, the change of the sums: a loop of one element kind each), and the
      // new sums. Each slot is updated at most once per frame (the id rules forbid an id in two
      // ADD/UPDATE blocks); the old codes and sums are kept so that a later failure of this frame
      // undoes them exactly (_undoUpdates: components [0, doneC) of every Gaussian, then doneI
      // Gaussians of component doneC; the sums once sumsDone).
      const slots = work.take(n), ov = work.take(n * nc), os0 = work.take(n), os1 = work.take(n);
      const t0 = work.take(n), t1 = work.take(n);
      ids.getMany(lo, hi, n, slots);
      b.slots = slots; b.ov = ov; b.os0 = os0; b.os1 = os1; b.cKind = cKind; b.cIdx = cIdx;
      b.doneC = 0; b.doneI = 0; b.sumsDone = false;
      undo.push(b);
      for (let i = 0; i < n; i++) {
        const s = slots[i];
        const rb = s * R;
        if (s < 0 || rows[rb + H_MARK] === sk) fail('ID_MISSING', 'UPDATE of an id that is not live');
        const a0 = rows[rb + H_S0] | 0, a1 = rows[rb + H_S1] | 0;
        os0[i] = a0; os1[i] = a1; t0[i] = a0; t1[i] = a1;
      }
      updateCodes(b, rows, r16, r8, R, n, nc, slots, ov, t0, t1, cArr, cOff, cKind, cIdx, cK0, cK1, cMsk, cMax, cNeg, cj, lossless);
      b.doneC = nc; b.doneI = 0;
      for (let i = 0; i < n; i++) {
        const rb = slots[i] * R, a0 = t0[i], a1 = t1[i];
        lane0 = (lane0 - fmix32(os0[i] >>> 0) + fmix32(a0 >>> 0)) >>> 0;
        lane1 = (lane1 - fmix32(os1[i] >>> 0) + fmix32(a1 >>> 0)) >>> 0;
        rows[rb + H_S0] = a0; rows[rb + H_S1] = a1;
      }
      b.sumsDone = true;
    }
    // ---- step 5: budget
    if (live > this.budget) fail('LIMIT_EXCEEDED', `${live} live Gaussians, budget ${this.budget}`);
    // ---- step 6: digest
    if (m.digest && this.verifyDigest) {
      const g = m.digest;
      if (g.count !== BigInt(live) || g.lane0 !== lane0 || g.lane1 !== lane1) {
        fail('DIGEST_MISMATCH', `state ${digestText(live, lane0, lane1)}, frame says ${digestText(g.count, g.lane0, g.lane1)}`);
      }
    }
    // memory for the commit (may reallocate, or throw on exhaustion: then undone like any failure)
    if (!keyframe) st.reserve(nAdd, live, delSlots.length);
    } catch (e) {
      this._undoUpdates(undo);
      throw e;
    }
    // ---- step 7: commit (nothing below can fail: memory was reserved above)
    if (keyframe) this.store._adopt(built);
    else this._commitDelta(delSlots, adds, upds, live);
    st.lane0 = lane0; st.lane1 = lane1;
    if (st.live !== live) throw new Error(`internal: live ${st.live} != planned ${live}`);
    return { add: nAdd, update: nUpd, deleteIds: nDelIds, deleteRanges: nRanges, deleteCells: nCells,
             deleted: delSlots.length, live };
  }

  /**
   * Keyframe ADDs, fused: one pass per component validates the codes (5.6), accumulates the record
   * lane sums, stores the codes and writes the dequantized floats, all into a new SceneStore that
   * replaces the current one only at commit. Throws BAD_VALUE on an invalid code.
   */
  _buildKeyframe(adds, nAdd) {
    const p = this.profile;
    const t = new SceneStore(p);
    t.reserve(nAdd, nAdd, 0, Math.max(4096, nAdd >> 3));
    const K0 = t.K0, K1 = t.K1, stride = t.stride, data = t.data, dataU32 = t.dataU32;
    const R = t.R, rows = t.rows, r16 = t.rows16, r8 = t.rows8, ck = t.ck, ci = t.ci;
    let s = 0;
    for (const { n, ids: { lo, hi }, comps } of adds) {
      const s0 = new Int32Array(n), s1 = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        s0[i] = Math.imul(lo[i], K0[0]) + Math.imul(hi[i], K0[1]);
        s1[i] = Math.imul(lo[i], K1[0]) + Math.imul(hi[i], K1[1]);
      }
      // tiles of TILE Gaussians: the tile's rows and floats stay in cache across the component
      // passes, while each planar input component is read sequentially
      const TILE = 256;
      for (let i0 = 0; i0 < n; i0 += TILE) {
        const i1 = Math.min(n, i0 + TILE);
        for (const [j, arr, off] of comps) {
          const k0 = K0[j + 2], k1 = K1[j + 2], kind = ck[j];
          let di = (s + i0) * stride + p.dataOff[j];
          if (p.lossless) {
            for (let i = i0, ri = (s + i0) * R + ci[j]; i < i1; i++, ri += R, di += stride) {
              const v = arr[off + i];
              if ((v & 0x7F800000) === 0x7F800000) fail('BAD_VALUE', `invalid code (component ${j}) in an ADD`);
              s0[i] += Math.imul(v, k0); s1[i] += Math.imul(v, k1);
              rows[ri] = v; dataU32[di] = v;
            }
            continue;
          }
          const maxU = p.compMaxU[j], neg = p.compMinNegU[j] || 0x100000000, T = p.compTable[j];
          if (kind === 4) {   // POSITION (no table: computed below)
            for (let i = i0, ri = (s + i0) * R + ci[j]; i < i1; i++, ri += R) {
              const v = arr[off + i];
              if (v > maxU && v < neg) fail('BAD_VALUE', `invalid code (component ${j}) in an ADD`);
              s0[i] += Math.imul(v, k0); s1[i] += Math.imul(v, k1);
              rows[ri] = v;
            }
          } else if (kind === 1) {
            for (let i = i0, ri = 4 * (s + i0) * R + ci[j]; i < i1; i++, ri += 4 * R, di += stride) {
              const v = arr[off + i];
              if (v > maxU && v < neg) fail('BAD_VALUE', `invalid code (component ${j}) in an ADD`);
              s0[i] += Math.imul(v, k0); s1[i] += Math.imul(v, k1);
              r8[ri] = v;
              if (T !== null) data[di] = T[v];
            }
          } else {
            for (let i = i0, ri = 2 * (s + i0) * R + ci[j]; i < i1; i++, ri += 2 * R, di += stride) {
              const v = arr[off + i];
              if (v > maxU && v < neg) fail('BAD_VALUE', `invalid code (component ${j}) in an ADD`);
              s0[i] += Math.imul(v, k0); s1[i] += Math.imul(v, k1);
              r16[ri] = v;
              if (T !== null) data[di] = T[v];
            }
          }
        }
      }
      for (let i = 0, b = s * R; i < n; i++, b += R) {
        rows[b + H_LO] = lo[i]; rows[b + H_HI] = hi[i];
        rows[b + H_S0] = s0[i]; rows[b + H_S1] = s1[i]; rows[b + H_FLAGS] = 1;
        t.lane0 = (t.lane0 + fmix32(s0[i] >>> 0)) >>> 0;
        t.lane1 = (t.lane1 + fmix32(s1[i] >>> 0)) >>> 0;
      }
      if (!p.lossless) {   // POSITION (needs the id's cell) and ROTATION (needs all four codes)
        const c = new Uint32Array(3), g = p.grid, ps = p.posStep, rt = p.rotTable;
        const rv = ck[6] === 1 ? r8 : r16, rm = ck[6] === 1 ? 4 : 2;
        const x0 = ci[0], x1 = ci[1], x2 = ci[2], q0 = ci[6], q1 = ci[7], q2 = ci[8], q3 = ci[9];
        for (let i = 0, b = s * R, db = s * stride; i < n; i++, b += R, db += stride) {
          cellOfId(lo[i], hi[i], p.S, c);
          data[db] = g.originX + c[0] * g.cellSize + (rows[b + x0] | 0) * ps;
          data[db + 1] = g.originY + c[1] * g.cellSize + (rows[b + x1] | 0) * ps;
          data[db + 2] = g.originZ + c[2] * g.cellSize + (rows[b + x2] | 0) * ps;
          const vb = rm * b;
          writeRotation(data, db + 8, rv[vb + q0], rt[rv[vb + q1]], rt[rv[vb + q2]], rt[rv[vb + q3]]);
        }
      }
      for (let i = 0; i < n; i++) t.ids.set(lo[i], hi[i], s + i);
      s += n;
    }
    t.highWater = nAdd;
    t.live = nAdd;
    return t;
  }

  /** Restores the codes and sums of the UPDATEs applied in place by a frame that failed. */
  _undoUpdates(undo) {
    const st = this.store, R = st.R, rows = st.rows, r16 = st.rows16, r8 = st.rows8;
    for (let u = undo.length - 1; u >= 0; u--) {
      const b = undo[u], { n, slots, ov, os0, os1, cKind, cIdx, doneC, doneI, sumsDone } = b, nc = cKind.length;
      for (let c = Math.min(doneC, nc - 1); c >= 0; c--) {
        const k = cKind[c], x = cIdx[c], o = c * n, m = c < doneC ? n : doneI;
        for (let i = 0; i < m; i++) {
          const rb = slots[i] * R, v = ov[o + i];
          if (k === 1) r8[4 * rb + x] = v; else if (k === 4) rows[rb + x] = v; else r16[2 * rb + x] = v;
        }
      }
      if (sumsDone) for (let i = 0; i < n; i++) { const rb = slots[i] * R; rows[rb + H_S0] = os0[i]; rows[rb + H_S1] = os1[i]; }
      b.doneC = 0; b.doneI = 0; b.sumsDone = false;
    }
  }

  /** The commit of a delta (memory reserved beforehand): frees, ADDs' rows and floats, UPDATEs' floats. */
  _commitDelta(delSlots, adds, upds, liveAfter) {
    const st = this.store, R = st.R, ck = st.ck, ci = st.ci, stride = st.stride, ids = st.ids;
    const rows = st.rows, r16 = st.rows16, r8 = st.rows8, data = st.data;
    // deletes: id table, alive flag, freed opacity, free list (most recently freed on top), dirty
    const nd = delSlots.length;
    for (let i = 0; i < nd; i++) {
      const s = delSlots[i], b = s * R;
      ids.delete(rows[b + H_LO], rows[b + H_HI]);
      rows[b + H_FLAGS] = 0;
      data[s * stride + 3] = FREED_OPACITY;
      st.freeList[st.freeCount++] = s;
      st._touch(s);
    }
    st.live -= nd;
    // adds: slots from the free list (else past highWater), then rows column by column, floats
    for (const { n, ids: { lo, hi }, cj, cArr, cOff, s0, s1 } of adds) {
      const slots = this._work.take(n);
      for (let i = 0; i < n; i++) {
        const s = st.allocSlot(), b = s * R;
        slots[i] = s;
        rows[b + H_LO] = lo[i]; rows[b + H_HI] = hi[i]; rows[b + H_S0] = s0[i]; rows[b + H_S1] = s1[i];
        rows[b + H_MARK] = 0; rows[b + H_FLAGS] = 1;
        ids.set(lo[i], hi[i], s);
        st._touch(s);
      }
      const p = this.profile, dataOff = p.dataOff, u32 = st.dataU32, nc = cj.length;
      for (let c = 0; c < nc; c++) {
        const j = cj[c], k = ck[j], x = ci[j], arr = cArr[c], off = cOff[c];
        if (k === 4) putColumn32(rows, slots, n, R, x, arr, off);
        else if (k === 2) putColumn16(r16, slots, n, 2 * R, x, arr, off);
        else putColumn8(r8, slots, n, 4 * R, x, arr, off);
        // the float of a component with a table (not POSITION, not ROTATION: derived below)
        const T = p.lossless ? null : p.compTable[j];
        if (T) tableColumn(data, slots, n, stride, dataOff[j], T, arr, off);
        else if (p.lossless) putColumn32(u32, slots, n, stride, dataOff[j], arr, off);
      }
      if (!p.lossless) st.deriveSlots(slots, n, 1 | 4);
      for (let i = 0; i < n; i++) { const o = slots[i] * stride; data[o + 7] = 0; data[o + 15] = 0; }
      st.live += n;
    }
    // updates: codes were written in _apply; now their floats and the dirty set
    for (const { n, slots, mask } of upds) {
      st.deriveSlots(slots, n, mask);
      for (let i = 0; i < n; i++) st._touch(slots[i]);
    }
    st.maybeCompact();
    if (st.live !== liveAfter) throw new Error(`internal: live ${st.live} != planned ${liveAfter}`);
  }
}

/**
 * s0[i] += w_i * k0, s1[i] += w_i * k1 (mod 2^32) over one component's codes w_i = arr[off + i];
 * returns the first i whose code is invalid (mode 1: lossy range, 2: lossless exponent), or -1.
 */
function sumColumn(arr, off, n, s0, s1, k0, k1, maxU, neg, mode) {
  for (let i = 0; i < n; i++) {
    const w = arr[off + i];
    if (mode !== 0 && (mode === 1 ? w > maxU && w < neg : (w & 0x7F800000) === 0x7F800000)) return i;
    s0[i] = (s0[i] + Math.imul(w, k0)) | 0; s1[i] = (s1[i] + Math.imul(w, k1)) | 0;
  }
  return -1;
}

/** The per-component passes of an UPDATE block (see _apply). */
function updateCodes(b, rows, r16, r8, R, n, nc, slots, ov, t0, t1, cArr, cOff, cKind, cIdx, cK0, cK1, cMsk, cMax, cNeg, cj, lossless) {
  for (let c = 0; c < nc; c++) {
    const k = cKind[c], x = cIdx[c], arr = cArr[c], off = cOff[c], k0 = cK0[c], k1 = cK1[c], o = c * n;
    const msk = cMsk[c], max = cMax[c], neg = cNeg[c], check = lossless || max < 0xFFFFFFFF;
    b.doneC = c;
    if (k === 4) {
      for (let i = 0; i < n; i++) {
        const q = slots[i] * R + x, old = rows[q] | 0, v = (old + arr[off + i]) | 0;
        if (check && (lossless ? (v & 0x7F800000) === 0x7F800000 : (v >>> 0) > max && (v >>> 0) < neg)) {
          b.doneI = i;
          fail('BAD_VALUE', `UPDATE produces an invalid code (component ${cj[c]})`);
        }
        ov[o + i] = old; rows[q] = v;
        const dlt = (v - old) | 0;
        t0[i] = (t0[i] + Math.imul(dlt, k0)) | 0; t1[i] = (t1[i] + Math.imul(dlt, k1)) | 0;
      }
    } else if (k === 2) {
      for (let i = 0; i < n; i++) {
        const q = 2 * slots[i] * R + x, old = r16[q], v = (old + arr[off + i]) & msk;
        if (v > max && v < neg) { b.doneI = i; fail('BAD_VALUE', `UPDATE produces an invalid code (component ${cj[c]})`); }
        ov[o + i] = old; r16[q] = v;
        const dlt = v - old;
        t0[i] = (t0[i] + Math.imul(dlt, k0)) | 0; t1[i] = (t1[i] + Math.imul(dlt, k1)) | 0;
      }
    } else {
      for (let i = 0; i < n; i++) {
        const q = 4 * slots[i] * R + x, old = r8[q], v = (old + arr[off + i]) & msk;
        if (v > max && v < neg) { b.doneI = i; fail('BAD_VALUE', `UPDATE produces an invalid code (component ${cj[c]})`); }
        ov[o + i] = old; r8[q] = v;
        const dlt = v - old;
        t0[i] = (t0[i] + Math.imul(dlt, k0)) | 0; t1[i] = (t1[i] + Math.imul(dlt, k1)) | 0;
      }
    }
  }
}

// column writes of the ADD commit: view[slots[i] * m + x] = arr[off + i] (one per element kind)
function putColumn32(view, slots, n, m, x, arr, off) { for (let i = 0; i < n; i++) view[slots[i] * m + x] = arr[off + i]; }
function putColumn16(view, slots, n, m, x, arr, off) { for (let i = 0; i < n; i++) view[slots[i] * m + x] = arr[off + i]; }
function putColumn8(view, slots, n, m, x, arr, off) { for (let i = 0; i < n; i++) view[slots[i] * m + x] = arr[off + i]; }
function tableColumn(data, slots, n, stride, o, T, arr, off) { for (let i = 0; i < n; i++) data[slots[i] * stride + o] = T[arr[off + i]]; }

/** DUPLICATE_ID if two blocks (non-empty, ids strictly ascending) share an id. */
function mergeDuplicates({ n: na, ids: { lo: al, hi: ah } }, { n: nb, ids: { lo: bl, hi: bh } }) {
  const before = (h1, l1, h2, l2) => h1 < h2 || (h1 === h2 && l1 < l2);
  if (before(ah[na - 1], al[na - 1], bh[0], bl[0]) || before(bh[nb - 1], bl[nb - 1], ah[0], al[0])) return;
  let i = 0, j = 0;
  while (i < na && j < nb) {
    const x = ah[i], y = bh[j];
    if (x < y) i++;
    else if (x > y) j++;
    else {
      const u = al[i], v = bl[j];
      if (u < v) i++; else if (u > v) j++; else fail('DUPLICATE_ID', 'an id in two blocks');
    }
  }
}

function asBytes(u8) {
  if (u8 instanceof Uint8Array) return u8;
  if (u8 instanceof ArrayBuffer) return new Uint8Array(u8);
  if (ArrayBuffer.isView(u8)) return new Uint8Array(u8.buffer, u8.byteOffset, u8.byteLength);
  throw new TypeError('GSD decoder input must be a Uint8Array, an ArrayBuffer or a typed-array view');
}
