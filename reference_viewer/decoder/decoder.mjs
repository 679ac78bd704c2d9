// GSD 1.4 decoder (SPEC.md 4, 5, 6, 7, 9; the SH palette of 5.9, ranked ids of 6.1, the CHANNEL filter
// and the gap code of 4.4): records -> checked plan (decoder/frame.mjs) -> all-or-nothing apply into a
// SceneStore (decoder/apply.mjs).
// Written from SPEC.md; the Python codec is a separate implementation.
import { GsdError, fail } from './errors.mjs';
import { Profile } from './profile.mjs';
import { SceneStore } from './store.mjs';
import { digestText } from './digest.mjs';
import { SPEC_LIMITS, makeLimits, readHeaderRecord, parseFrame } from './frame.mjs';
import { applyPlan } from './apply.mjs';

export { SPEC_LIMITS, makeLimits };

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
    this.stamp = 0;   // the staging mark of the frame being applied (apply.mjs)
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
    return guarded('reading the header', () => {
      const { versionMajor, versionMinor, h, used } = readHeaderRecord(u8, message, this.limits);
      const profile = new Profile(h);
      const old = this.profile;
      if (this.store) this.store.reset(profile); else this.store = new SceneStore(profile);
      if (old) old.release();
      this.header = {
        versionMajor, versionMinor, shDegree: h.shDegree, grid: { ...h.grid }, quantization: h.quantization,
        lossless: !h.quantization, profileName: h.profileName, generator: h.generator,
        // informative (SPEC 4.6): a positive finite rate or 0; never acted on beyond playback timing
        frameRate: h.frameRate > 0 && h.frameRate < Infinity ? h.frameRate : 0,
        maxGaussians: h.maxGaussians, requiredFeatures: h.requiredFeatures, shPalette: profile.palette, used,
      };
      this.profile = profile;
      this.budget = Math.min(h.maxGaussians !== 0 ? h.maxGaussians : 2 ** 24, this.limits.max_gaussians);
      this.seqBig = 0n;
      this.headerUsed = used;
      return this.header;
    });
  }

  /**
   * Decodes the frame record at the start of u8 and applies it, all-or-nothing (SPEC 4.9 F1..F14).
   * Throws GsdError and leaves the state (store, seq, digest) as it was on any failure.
   * Returns {seq, seqBig, baseSeq, keyframe, digest: text|null, used, counts}.
   */
  readFrame(u8, { message = false } = {}) {
    u8 = asBytes(u8);
    return guarded('decoding', () => {
      const plan = this._plan(u8, message);
      const counts = applyPlan(this, plan);
      const m = plan.m;
      this.seqBig = m.seq;
      return {
        seq: Number(m.seq), seqBig: m.seq, baseSeq: Number(m.baseSeq), keyframe: plan.keyframe,
        digest: m.digest ? digestText(m.digest.count, m.digest.lane0, m.digest.lane1) : null,
        used: plan.frameLen, counts,
      };
    });
  }

  /**
   * The frame checks alone (F1..F13: framing, CRC, metadata, sections, sequencing, id rules),
   * without touching the state: the plan that readFrame applies (benchmarks, tests). Its arrays are
   * valid until the next frame is read. Ranked blocks stay ranks there (rupds, rdels): their ids
   * depend on the state, and readFrame resolves them (F14).
   */
  checkFrame(u8, { message = false } = {}) {
    u8 = asBytes(u8);
    return guarded('decoding', () => this._plan(u8, message));
  }

  _plan(u8, message) {
    if (!this.profile) fail('MALFORMED', 'frame before any stream header');
    return parseFrame(u8, message, this.limits, this.profile, this.seqBig);
  }

  /** Frees the decoder's memory in the wasm kernel now (else when the decoder is collected). */
  dispose() {
    if (this.store) this.store.release();
    if (this.profile) this.profile.release();
    this.store = null;
    this.profile = null;
    this.header = null;
  }
}

// A bug or an exhausted resource is never a silent partial apply: the plan is built before the
// commit, and the commit only writes into memory reserved beforehand.
function guarded(what, f) {
  try {
    return f();
  } catch (e) {
    if (e instanceof GsdError) throw e;
    throw new GsdError('MALFORMED', `internal error while ${what}: ${e && e.message}`);
  }
}

function asBytes(u8) {
  if (u8 instanceof Uint8Array) return u8;
  if (u8 instanceof ArrayBuffer) return new Uint8Array(u8);
  if (ArrayBuffer.isView(u8)) return new Uint8Array(u8.buffer, u8.byteOffset, u8.byteLength);
  throw new TypeError('GSD decoder input must be a Uint8Array, an ArrayBuffer or a typed-array view');
}
