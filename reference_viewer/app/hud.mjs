// The heads-up display: connection, FPS, live Gaussians, bytes/s, last delta size, action-to-delta
// latency, seq and digest status, a progressive join's detail (held / coarse / budget), renderer path
// and timings; plus the help panel.
import { HELP } from './input.mjs';

const fmtBytes = (n) => (n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(2)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`);
const esc = (v) => String(v).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);
const fmtN = (n) => (n == null ? '-' : Number(n).toLocaleString('en'));
const fmtMs = (x) => (x == null || !Number.isFinite(x) ? '-' : `${x.toFixed(1)} ms`);

/** A progressive join's `detail` (SPEC.md 11.9): held (coarse stand-ins) / budget, and the budget rule. */
export function describeDetail(d) {
  if (d.join !== 'progressive') return d.join;
  const asked = d.asked != null && d.asked !== d.budget ? `, asked ${fmtN(d.asked)}` : '';
  return `held ${fmtN(d.held)} (coarse ${fmtN(d.coarse)}) / budget ${fmtN(d.budget)}${asked}${d.rule ? ` [${d.rule}]` : ''}`;
}

export class Hud {
  constructor(el, helpEl) {
    this.el = el;
    this.helpEl = helpEl;
    this.visible = true;
    helpEl.innerHTML = '<b>GSD viewer keys</b><table>' + HELP.map(([k, v]) => (v
      ? `<tr><td>${k}</td><td>${v}</td></tr>` : `<tr><th colspan="2">${k}</th></tr>`)).join('') + '</table>';
  }
  toggle() { this.visible = !this.visible; this.el.style.display = this.visible ? '' : 'none'; }
  toggleHelp() { this.helpEl.style.display = this.helpEl.style.display === 'block' ? 'none' : 'block'; }

  /** s: a plain object of what to show (see app/main.mjs). */
  update(s) {
    if (!this.visible) return;
    const lat = s.latencies && s.latencies.length ? s.latencies.slice(-32) : [];
    const mean = lat.length ? lat.reduce((a, b) => a + b, 0) / lat.length : null;
    const rows = [
      ...(s.error ? [['error', s.error]] : []),
      ['mode', s.mode],
      ['link', s.link],
      ['fps', s.fps == null ? '-' : typeof s.fps === 'number' ? s.fps.toFixed(1) : s.fps],
      ['live Gaussians', s.live == null ? '-' : s.live.toLocaleString('en')],
      ...(s.detail ? [['detail', describeDetail(s.detail)]] : []),
      ['bytes/s', fmtBytes(s.bytesPerSecond || 0)],
      ['last delta', s.lastBytes ? `${fmtBytes(s.lastBytes)}${s.lastSteps > 1 ? ` (${s.lastSteps} steps)` : ''}` : '-'],
      ['latency', s.mode === 'live' ? `${fmtMs(s.lastLatency)} (mean ${fmtMs(mean)})` : '-'],
      ...(s.timeline ? [['timeline', s.timeline]] : []),
      ['seq', s.seq ?? '-'],
      ['digest', s.digestStatus],
      ['frames', `${s.frames ?? 0} (${s.keyframes ?? 0} key, ${s.resyncs ?? 0} resyncs)`],
      ['render', s.render],
      ['camera', s.camera],
    ];
    this.el.innerHTML = '<table>' + rows.map(([k, v]) => `<tr><td>${k}</td><td>${esc(v)}</td></tr>`).join('')
      + '</table><div class="hint">H: help</div>';
  }
}
