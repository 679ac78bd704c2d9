// The gsd/1 session client (SPEC.md 11): hello, stream header, frames decoded and applied with the
// Decoder, an ack with the state digest after every applied frame, one resync on a frame error and
// then non-keyframes dropped until a keyframe (11.4), `frame` text messages for the world camera and
// action-to-delta latency, actions with ids. Reconnects (a fresh hello and decoder) after a close.
// A progressive join (SPEC.md 11.9) asks for stand-ins first in the hello and sends `detail`
// messages (detail budget, eye); its frames are ordinary frames whose digest is this client's state.
import { Decoder, GsdError } from '../decoder/index.mjs';
import { peekFrame, digestText } from './records.mjs';

export const DEFAULT_BUDGETS = { max_gaussians: 2_000_000, max_bytes_per_second: 25_000_000, max_frame_bytes: 16 << 20 };
const LOG_MAX = 20000;

/** ws(s)://host/ws for the page's location, with ?world= and ?token= (a session token, SPEC.md
 * 11.8: a browser cannot set an Authorization header on a WebSocket) taken from the page URL when
 * present. */
export function sessionUrl(loc = globalThis.location) {
  const q = new URLSearchParams(loc.search);
  let url = q.get('ws') || `${loc.protocol === 'https:' ? 'wss' : 'ws'}://${loc.host}/ws`;
  for (const name of ['world', 'token']) {
    const v = q.get(name);
    if (v) url += `${url.includes('?') ? '&' : '?'}${name}=${encodeURIComponent(v)}`;
  }
  return url;
}

export function makeDecoder(budgets) {
  const limits = { max_gaussians: budgets.max_gaussians, max_frame_bytes: budgets.max_frame_bytes };
  return new Decoder({ limits, verifyDigest: true });
}

export class Session {
  /**
   * opts: url, budgets, maxShDegree (3), reconnect (true), onFrame(ev), onHeader(info), onState(),
   * onCamera(cam), progressive (null: an ordinary join; {budget?}: a progressive join, SPEC.md 11.9)
   */
  constructor(opts = {}) {
    this.url = opts.url ?? sessionUrl();
    this.budgets = { ...DEFAULT_BUDGETS, ...(opts.budgets || {}) };
    this.maxShDegree = opts.maxShDegree ?? 3;
    this.reconnect = opts.reconnect ?? true;
    this.cb = opts;
    this.progressive = opts.progressive ?? null;
    this.sessionInfo = null;      // the server's `session` message (11.3), if it sent one
    this.detailInfo = null;       // the last frame's `detail` (held / coarse / budget) in a progressive session
    this.detailSent = null;       // {budget, view, t} of the last `detail` message sent
    this.ws = null;
    this.decoder = null;
    this.header = null;
    this.state = 'idle';          // idle | connecting | open | closed
    this.closeInfo = null;        // {code, reason}
    this.resyncing = false;
    this.info = null;             // the last `frame` text message, until its record arrives
    this.worldCamera = null;
    this.nextId = 1;
    this.sentAt = new Map();      // action id -> performance.now() at send
    this.stopped = false;
    this.retryMs = 1000;
    this.corrupt = 0;             // test hook: flip a byte in this many of the next frames
    this.resetStats();
  }

  resetStats() {
    this.stats = { frames: 0, keyframes: 0, bytes: 0, lastBytes: 0, lastSteps: 0, resyncs: 0, dropped: 0,
                   errors: {}, latencies: [], lastLatency: null, actionsSent: 0, acks: 0, connects: 0,
                   digestOk: 0, digestUnchecked: 0, lastError: null, details: 0 };
    this.log = [];
    this.byteWindow = [];         // [t, bytes] over the last second
  }

  get seq() { return this.decoder ? Number(this.decoder.seq) : 0; }
  digest() { return this.decoder && this.header ? this.decoder.digestText() : null; }
  get store() { return this.decoder ? this.decoder.store : null; }

  bytesPerSecond(now = performance.now()) {
    const w = this.byteWindow;
    while (w.length && now - w[0][0] > 1000) w.shift();
    return w.reduce((s, x) => s + x[1], 0);
  }

  connect() {
    this.stopped = false;
    this.state = 'connecting';
    this.header = null;
    if (this.decoder) this.decoder.dispose();   // a reconnect starts from a new decoder
    this.decoder = null;
    this.resyncing = false;
    this.info = null;
    this.sessionInfo = null;
    this.detailInfo = null;
    this.detailSent = null;
    this.sentAt.clear();
    const ws = new WebSocket(this.url);
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    ws.onopen = () => {
      this.stats.connects += 1;
      // 1.1: SH palette streams and implicit ids; 1.2: ranked ids; 1.3: CHANNEL sections; 1.4: gap-coded
      // sections (SPEC 11.2)
      const hello = { type: 'hello', protocol: 'gsd/1', versions: ['1.0', '1.1', '1.2', '1.3', '1.4'],
                      max_sh_degree: this.maxShDegree, budgets: this.budgets };
      if (this.progressive) {
        const b = this.progressive.budget;
        hello.progressive = b ? { budget: Math.max(1, Math.floor(b)) } : {};
      }
      ws.send(JSON.stringify(hello));
      this.state = 'open';
      this.closeInfo = null;
      this.cb.onState?.();
    };
    ws.onmessage = (ev) => {
      if (ws !== this.ws) return;
      if (typeof ev.data === 'string') this._onText(ev.data);
      else this._onBinary(new Uint8Array(ev.data));
    };
    ws.onclose = (ev) => {
      if (ws !== this.ws) return;
      this.state = 'closed';
      this.closeInfo = { code: ev.code, reason: ev.reason };
      this.cb.onState?.();
      if (this.reconnect && !this.stopped) {
        // 1013 (server busy, SPEC.md 11.7): wait the server's retry-after=N, N to 1.5 N seconds.
        const busy = ev.code === 1013 ? /^retry-after=(\d+(?:\.\d+)?)/.exec(ev.reason || '') : null;
        const wait = busy ? Number(busy[1]) * 1000 * (1 + 0.5 * Math.random()) : this.retryMs;
        this.closeInfo.busy = !!busy;
        this.closeInfo.retryAfterMs = busy ? Math.round(wait) : null;
        setTimeout(() => { if (!this.stopped && this.ws === ws) this.connect(); }, wait);
        if (!busy) this.retryMs = Math.min(this.retryMs * 2, 15000);
      }
    };
    ws.onerror = () => {};
  }

  close(code = 1000, reason = 'bye') {
    this.stopped = true;
    if (this.ws && this.ws.readyState <= 1) this.ws.close(code, reason);
    this.state = 'closed';
    this.cb.onState?.();
  }

  _send(msg) {
    if (this.ws && this.ws.readyState === 1) { this.ws.send(JSON.stringify(msg)); return true; }
    return false;
  }

  /** Send a world action; returns its id (echoed in `frame` messages), or null when not connected. */
  act(kind, params = {}) {
    if (!this.header) return null;
    const id = this.nextId++;
    if (!this._send({ type: 'action', seq: this.seq, kind, params, id })) return null;
    this.sentAt.set(id, performance.now());
    if (this.sentAt.size > 1024) this.sentAt.delete(this.sentAt.keys().next().value);
    this.stats.actionsSent += 1;
    return id;
  }

  /** True once the server took this session as a progressive join (its `session` message says so). */
  get isProgressive() { return !!(this.progressive && this.sessionInfo && this.sessionInfo.progressive); }

  /** The detail budget in force: the last one sent, else the server's (`session`), else the hello's. */
  get detailBudget() {
    return this.detailSent?.budget ?? this.sessionInfo?.progressive?.budget ?? this.progressive?.budget ?? null;
  }

  /**
   * A progressive session's `detail` message (SPEC.md 11.9): a new detail budget (an integer >= 1)
   * and/or the client's eye ({position: [x, y, z], yaw, pitch}, degrees; optionally its `fov`, degrees
   * across, and `aspect`, width / height, so that the server weighs the picture this client sees).
   * Sent only in a session the server took as progressive (elsewhere the server closes it with
   * 1008); false when not sent.
   */
  detail({ budget = null, view = null } = {}) {
    if (!this.isProgressive || !this.header || (budget == null && view == null)) return false;
    const msg = { type: 'detail' };
    if (budget != null) msg.budget = Math.max(1, Math.floor(budget));
    if (view != null) {
      const v = { position: view.position.map(Number), yaw: Number(view.yaw) || 0, pitch: Number(view.pitch) || 0 };
      if (![...v.position, v.yaw, v.pitch].every(Number.isFinite)) return false;
      if (view.fov != null) {
        v.fov = Number(view.fov);
        if (!(v.fov > 0 && v.fov < 180)) return false;
      }
      if (view.aspect != null) {
        v.aspect = Number(view.aspect);
        if (!(v.aspect >= 0.1 && v.aspect <= 10)) return false;
      }
      msg.view = v;
    }
    if (!this._send(msg)) return false;
    if (msg.budget != null) this.progressive.budget = msg.budget;   // a reconnect's hello asks for it
    const prev = this.detailSent || {};
    this.detailSent = { budget: msg.budget ?? prev.budget ?? null, view: msg.view ?? prev.view ?? null, t: performance.now() };
    this.stats.details += 1;
    return true;
  }

  resync(reason = 'CLIENT') {
    this.stats.resyncs += 1;
    this.resyncing = true;
    this._send({ type: 'resync', reason });
  }

  _onText(text) {
    let m;
    try { m = JSON.parse(text); } catch { return; }
    if (m && m.type === 'frame') this.info = m;        // unknown types are ignored (11.1)
    else if (m && m.type === 'session') this.sessionInfo = m;
  }

  _onBinary(u8) {
    const now = performance.now();
    const info = this.info;
    this.info = null;
    if (!this.header) {
      try {
        if (this.decoder) this.decoder.dispose();   // its wasm memory goes back to the kernel's heap now
        this.decoder = makeDecoder(this.budgets);
        this.header = this.decoder.readHeader(u8, { message: true }) || {};   // one record per message
        this.retryMs = 1000;
        this.cb.onHeader?.(this.header);
      } catch (e) {
        this.stats.lastError = `header: ${e.code || e.message}`;
        this.ws.close(1000, 'bad stream header');
      }
      return;
    }
    if (this.corrupt > 0) {                             // test hook: a damaged frame (BAD_CHECKSUM)
      this.corrupt -= 1;
      u8 = u8.slice();
      u8[u8.length >> 1] ^= 0x5a;
    }
    let keyframeHint = false;
    if (this.resyncing) {                              // 11.4: drop non-keyframes until a keyframe
      const p = peekFrame(u8);
      if (!p || !p.keyframe) { this.stats.dropped += 1; return; }
      keyframeHint = true;
    }
    let r;
    try {
      r = this.decoder.readFrame(u8, { message: true });   // trailing bytes: MALFORMED (11.3)
    } catch (e) {
      const code = e instanceof GsdError || (e && typeof e.code === 'string') ? e.code : 'CLIENT';
      this.stats.errors[code] = (this.stats.errors[code] || 0) + 1;
      this.stats.lastError = `${code}: ${e.message}`;
      if (!this.resyncing || keyframeHint) this.resync(code);
      return;
    }
    this.resyncing = false;
    const seq = Number(r.seq);
    const digest = this.decoder.digestText();
    this._send({ type: 'ack', seq, digest });
    this.stats.acks += 1;
    const matched = info && Number(info.seq) === seq && (info.bytes === undefined || info.bytes === u8.length);
    const lat = [];
    if (matched) {
      for (const id of info.actions || []) {
        const t = this.sentAt.get(id);
        if (t !== undefined) { lat.push(now - t); this.sentAt.delete(id); }
      }
      if (info.camera) { this.worldCamera = info.camera; this.cb.onCamera?.(info.camera); }
      if (info.detail) this.detailInfo = info.detail;
    }
    const s = this.stats;
    s.frames += 1;
    s.keyframes += r.keyframe ? 1 : 0;
    s.bytes += u8.length;
    s.lastBytes = u8.length;
    s.lastSteps = matched ? info.steps ?? 1 : 1;
    if (lat.length) { s.lastLatency = lat[lat.length - 1]; s.latencies.push(...lat); if (s.latencies.length > 256) s.latencies.splice(0, s.latencies.length - 256); }
    const frameDigest = digestText(r.digest ?? null);
    if (frameDigest) s.digestOk += 1; else s.digestUnchecked += 1;
    this.byteWindow.push([now, u8.length]);
    const ev = { seq, baseSeq: Number(r.baseSeq ?? 0), keyframe: !!r.keyframe, bytes: u8.length, digest,
                 serverDigestFromFrame: frameDigest, steps: s.lastSteps, actions: matched ? info.actions || [] : [],
                 latencyMs: lat, live: this.decoder.store.live, t: now,
                 ...(matched && info.detail ? { detail: info.detail } : {}) };
    this.log.push(ev);
    if (this.log.length > LOG_MAX) this.log.splice(0, this.log.length - LOG_MAX);
    this.cb.onFrame?.(ev);
  }
}
