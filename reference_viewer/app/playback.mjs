// Offline playback of a .gsd stream file (SPEC.md 4.1: the records back to back): the header is
// decoded at once, then one frame per tick at a fixed rate, each verified (digest) and applied.
import { splitStream, digestText } from './records.mjs';
import { makeDecoder, DEFAULT_BUDGETS } from './session.mjs';

export class Player {
  /** opts: fps (25), loop (false), onFrame(ev), onEnd(), onError(err) */
  constructor(bytes, opts = {}) {
    this.opts = opts;
    this.fps = opts.fps ?? 25;
    this.loop = opts.loop ?? false;
    const { header, frames } = splitStream(bytes);
    this.headerBytes = header;
    this.frames = frames;
    this.totalBytes = bytes.length;
    this.timer = null;
    this.error = null;
    this.log = [];
    this._open();
  }

  _open() {
    if (this.decoder) this.decoder.dispose();   // a restart: the old state's wasm memory goes back now
    this.decoder = makeDecoder(DEFAULT_BUDGETS);
    this.header = this.decoder.readHeader(this.headerBytes) || {};
    this.index = 0;
  }

  get store() { return this.decoder.store; }
  get seq() { return Number(this.decoder.seq); }
  get playing() { return this.timer !== null; }
  get done() { return this.index >= this.frames.length; }
  digest() { return this.decoder.digestText(); }

  /** Apply the next frame; false at the end or after an error. */
  step() {
    if (this.error || this.done) return false;
    const u8 = this.frames[this.index];
    let r;
    try {
      r = this.decoder.readFrame(u8);
    } catch (e) {
      this.error = e;
      this.pause();
      this.opts.onError?.(e, this.index);
      return false;
    }
    const ev = { index: this.index, seq: Number(r.seq), keyframe: !!r.keyframe, bytes: u8.length,
                 digest: this.decoder.digestText(), serverDigestFromFrame: digestText(r.digest ?? null) };
    this.index += 1;
    this.log.push(ev);
    this.opts.onFrame?.(ev);
    return true;
  }

  play() {
    if (this.timer !== null || this.error) return;
    if (this.done) this.restart();
    this.timer = setInterval(() => {
      if (!this.step()) {
        if (this.loop && !this.error) { this.restart(); this.step(); return; }   // no empty frame between rounds
        this.pause();
        this.opts.onEnd?.();
      }
    }, 1000 / this.fps);
  }

  pause() { if (this.timer !== null) { clearInterval(this.timer); this.timer = null; } }
  toggle() { if (this.playing) this.pause(); else this.play(); }
  setFps(fps) { this.fps = Math.max(0.5, Math.min(240, fps)); if (this.playing) { this.pause(); this.play(); } }
  restart() { this.error = null; this.log = []; this._open(); this.opts.onRestart?.(); }
  /** Stops for good (the page moves to another stream): the decoder's memory is freed. */
  stop() { this.pause(); if (this.decoder) this.decoder.dispose(); }
}
