// The timeline of an offline stream (a 4D sequence: a keyframe, then one delta per time step): play,
// pause, scrub, loop and speed over a Player (playback.mjs). "Frame i" is the state after frame record
// i (0-based, as `gsd info` and `gsd decode --frame i` count). Seeking decodes from the last keyframe
// at or before i up to i (deltas are small; a forward seek applies only the frames after the current
// one); every frame is checked as in playback. The play rate is the header's frame_rate when set
// (SPEC 4.6, informative), else the fps box; speed multiplies it.
import { peekFrame } from './records.mjs';

const $ = (id) => document.getElementById(id);

export class Timeline {
  /** ids: {scrub, label, speed, fps, loop} element ids (absent elements are skipped). */
  constructor(ids = { scrub: 'scrub', label: 'tframe', speed: 'speed', fps: 'fps', loop: 'loop' }) {
    this.el = Object.fromEntries(Object.entries(ids).map(([k, id]) => [k, $(id)]));
    this.player = null;
    this.speed = 1;
    this.rate = 25;
    this.keyframes = [];
    const { scrub, speed, fps } = this.el;
    scrub?.addEventListener('input', () => this.seek(Number(scrub.value)));
    speed?.addEventListener('change', () => this.setSpeed(Number(speed.value) || 1));
    fps?.addEventListener('change', () => { this.rate = Number(fps.value) || this.rate; this._applyRate(); });
    setInterval(() => this._show(), 100);
  }

  /** A new stream is playing: read its keyframes and rate. */
  attach(player) {
    this.player = player;
    this.keyframes = player.frames.map((u8) => peekFrame(u8)?.keyframe === true);
    const hr = player.header?.frameRate;
    if (hr > 0) { this.rate = hr; if (this.el.fps) this.el.fps.value = String(Math.round(hr * 100) / 100); }
    else this.rate = Number(this.el.fps?.value) || 25;
    if (this.el.scrub) { this.el.scrub.max = String(Math.max(0, player.frames.length - 1)); this.el.scrub.disabled = false; }
    this._applyRate();
    this._show();
  }

  get frames() { return this.player?.frames.length ?? 0; }
  /** Index of the frame whose state is shown (-1: none applied yet). */
  get frame() { return this.player ? this.player.index - 1 : -1; }
  get playing() { return !!this.player?.playing; }
  get loop() { return !!this.player?.loop; }

  play() { this.player?.play(); }
  pause() { this.player?.pause(); }
  toggle() { this.player?.toggle(); }
  setLoop(on) { if (this.player) this.player.loop = !!on; if (this.el.loop) this.el.loop.checked = !!on; }
  setSpeed(s) {
    this.speed = Math.max(0.05, Math.min(16, Number(s) || 1));
    if (this.el.speed) this.el.speed.value = String(this.speed);
    this._applyRate();
  }

  /** Show the state after frame i (clamped to the stream); true when it was reached without an error. */
  seek(i) {
    const p = this.player;
    if (!p || !p.frames.length) return false;
    i = Math.max(0, Math.min(p.frames.length - 1, Math.trunc(Number(i)) || 0));
    const wasPlaying = p.playing;
    p.pause();
    let k = i;                                        // the last keyframe at or before i
    while (k > 0 && !this.keyframes[k]) k -= 1;
    if (!(i >= p.index - 1 && !p.error && k < p.index)) { // behind us, past a keyframe, or after an error
      p.restart();
      p.index = k;                                    // a keyframe replaces any state: start there
    }
    while (p.index <= i && p.step()) { /* apply up to frame i */ }
    if (wasPlaying && !p.error) p.play();
    this._show();
    return !p.error && p.index === i + 1;
  }

  _applyRate() { this.player?.setFps(this.rate * this.speed); }

  _show() {
    const { scrub, label } = this.el;
    const p = this.player;
    if (!p) return;
    if (scrub && document.activeElement !== scrub) scrub.value = String(Math.max(0, this.frame));
    if (label) {
      const t = Math.max(0, this.frame) / this.rate;
      label.textContent = `${this.frame}/${p.frames.length - 1} ${t.toFixed(2)} s @ ${+(this.rate * this.speed).toFixed(2)} fps`;
    }
  }

  /** One line for the HUD. */
  describe() {
    const p = this.player;
    if (!p) return '-';
    return `frame ${this.frame} of ${p.frames.length} (keyframes ${this.keyframes.filter(Boolean).length}), `
      + `${+(this.rate).toFixed(2)} fps x ${this.speed}${p.playing ? '' : ', paused'}${p.loop ? ', loop' : ''}`;
  }
}
