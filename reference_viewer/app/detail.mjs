// The detail budget and eye of a progressive session (SPEC.md 11.9): how many live Gaussians the
// viewer asks to hold, chosen from the adapter and the measured frame time, and when its `detail`
// messages go out.
//
// Budget rule (README.md, "Progressive join"):
//   * start: a default per adapter class (ADAPTER_BUDGETS: software 100k, mobile 300k, integrated
//     1M, other 2M), never above the hello's max_gaussians; a budget given in the URL is used as is
//     and never changed;
//   * lower: when the median frame time over the last WINDOW_MS is over 1.2x the target frame time
//     (33 ms by default), to budget x target / median (at most halved, at least 10% less);
//   * raise: when that median is under 0.6x the target and the client holds at least 90% of the
//     budget (the budget is what limits the picture), x1.5 up to max_gaussians;
//   * at most one change per MIN_CHANGE_MS (a new budget may cost the server a keyframe, and the
//     server allows 12 such a minute), frame times measured again after each change, never under
//     MIN_BUDGET.
// The eye (the local camera's pose) goes out when it moved over VIEW_MOVE_M or turned over
// VIEW_TURN_DEG since the last one sent, at most once per VIEW_MIN_MS.

export const ADAPTER_BUDGETS = { software: 100_000, mobile: 300_000, integrated: 1_000_000, other: 2_000_000 };
export const MIN_BUDGET = 10_000;
export const WINDOW_MS = 2000;
export const MIN_CHANGE_MS = 10_000;
export const VIEW_MIN_MS = 250;
export const VIEW_MOVE_M = 0.25;
export const VIEW_TURN_DEG = 5;

/** 'software' | 'mobile' | 'integrated' | 'other' from a GPUAdapter (or null) and a user agent string. */
export function adapterClass(adapter, userAgent = '') {
  if (!adapter) return 'software';
  const info = adapter.info || {};
  const text = `${info.vendor || ''} ${info.architecture || ''} ${info.device || ''} ${info.description || ''}`.toLowerCase();
  if (adapter.isFallbackAdapter || info.isFallbackAdapter || /swiftshader|llvmpipe|software/.test(text)) return 'software';
  if (/android|iphone|ipad|mobile/i.test(userAgent) || /\b(arm|qualcomm|imgtec|img-tec|mali|adreno|powervr)\b/.test(text)) return 'mobile';
  if (/\b(intel|apple)\b/.test(text)) return 'integrated';
  return 'other';
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[s.length >> 1] : null;
};

export class DetailBudget {
  /**
   * opts: fixed (a budget from the URL: never changed), start (the adapter default), max (the hello's
   * max_gaussians), targetMs (the frame time aimed at; 33).
   */
  constructor({ fixed = null, start = ADAPTER_BUDGETS.other, max = Infinity, targetMs = 1000 / 30 } = {}) {
    this.fixed = fixed != null;
    this.max = max;
    this.budget = Math.floor(this.fixed ? fixed : Math.max(MIN_BUDGET, Math.min(start, max)));
    this.targetMs = targetMs;
    this.samples = [];          // [t, ms]
    this.changedAt = -Infinity;
    this.changes = 0;
    this.reason = this.fixed ? 'fixed (URL)' : 'adapter default';
  }

  /** A drawn frame's time. */
  sample(t, ms) {
    if (!Number.isFinite(ms) || ms < 0) return;
    this.samples.push([t, ms]);
    while (this.samples.length && t - this.samples[0][0] > WINDOW_MS) this.samples.shift();
  }

  /** The new budget when the rule asks for one at time t (the client holding `held`), else null. */
  update(t, held) {
    if (this.fixed || t - this.changedAt < MIN_CHANGE_MS) return null;
    const s = this.samples;
    if (s.length < 5 || s[s.length - 1][0] - s[0][0] < 0.75 * WINDOW_MS) return null;   // not a full window yet
    const m = median(s.map((x) => x[1]));
    let next = null;
    if (m > 1.2 * this.targetMs) {
      next = Math.max(MIN_BUDGET, Math.floor(this.budget * Math.min(0.9, Math.max(0.5, this.targetMs / m))));
      this.reason = `frame ${m.toFixed(0)} ms over ${this.targetMs.toFixed(0)} ms`;
    } else if (m < 0.6 * this.targetMs && held != null && held >= 0.9 * this.budget) {
      next = Math.floor(Math.min(this.max, this.budget * 1.5));
      this.reason = `frame ${m.toFixed(0)} ms under ${this.targetMs.toFixed(0)} ms`;
    }
    if (next == null || next === this.budget) return null;
    this.budget = next;
    this.changedAt = t;
    this.changes += 1;
    this.samples = [];
    return next;
  }
}

/** Whether pose `p` moved or turned enough from `q` (the last eye sent) to send it again. */
export function viewMoved(p, q) {
  if (!q) return true;
  const d = Math.hypot(p.position[0] - q.position[0], p.position[1] - q.position[1], p.position[2] - q.position[2]);
  const dyaw = Math.abs((((p.yaw - q.yaw + 180) % 360) + 360) % 360 - 180);
  return d > VIEW_MOVE_M || dyaw > VIEW_TURN_DEG || Math.abs(p.pitch - q.pitch) > VIEW_TURN_DEG;
}
