// Runs reference_viewer/app/detail.mjs (the viewer's detail budget rule and eye threshold) over
// scripted frame times and adapters, and prints what it decided as JSON for
// tests/test_viewer_progressive_rule.py to check.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const D = await import(path.join(REPO, 'reference_viewer/app/detail.mjs'));

/** Frames every `dt` ms of `ms` each from t0 to t1, the rule asked after each; the budgets it set. */
function drive(b, t0, t1, ms, held, dt = 50) {
  const out = [];
  for (let t = t0; t <= t1; t += dt) {
    b.sample(t, typeof ms === 'function' ? ms(t, b.budget) : ms);
    const n = b.update(t, typeof held === 'function' ? held(b.budget) : held);
    if (n != null) out.push([t, n]);
  }
  return out;
}

const r = {};
const fake = (info, fallback = false) => ({ info, isFallbackAdapter: fallback });
r.classes = {
  none: D.adapterClass(null),
  fallback: D.adapterClass(fake({ vendor: 'google', architecture: 'swiftshader' }, true)),
  swiftshader: D.adapterClass(fake({ vendor: 'google', description: 'SwiftShader Device (Subzero)' })),
  nvidia: D.adapterClass(fake({ vendor: 'nvidia', architecture: 'hopper' })),
  intel: D.adapterClass(fake({ vendor: 'intel', architecture: 'gen-12lp' })),
  apple: D.adapterClass(fake({ vendor: 'apple', architecture: 'metal-3' })),
  qualcomm: D.adapterClass(fake({ vendor: 'qualcomm', architecture: 'adreno-7xx' })),
  androidUA: D.adapterClass(fake({ vendor: 'nvidia' }), 'Mozilla/5.0 (Linux; Android 14) Mobile'),
};
r.budgets = D.ADAPTER_BUDGETS;
r.constants = { MIN_BUDGET: D.MIN_BUDGET, MIN_CHANGE_MS: D.MIN_CHANGE_MS, WINDOW_MS: D.WINDOW_MS };

// slow frames (80 ms for a 33 ms target): lowered, at most once per MIN_CHANGE_MS, never under MIN_BUDGET
let b = new D.DetailBudget({ start: 1_000_000, max: 2_000_000 });
r.slow = { start: b.budget, changes: drive(b, 0, 60_000, 80, 1_000_000) };
// a slow frame that scales with the budget settles: 66 ms per million Gaussians
b = new D.DetailBudget({ start: 2_000_000, max: 2_000_000 });
r.scaled = { start: b.budget, changes: drive(b, 0, 120_000, (t, bud) => 66e-6 * bud, (bud) => bud) };
// fast frames, the budget binding (held = budget): raised x1.5 up to max
b = new D.DetailBudget({ start: 100_000, max: 400_000 });
r.fast = { start: b.budget, changes: drive(b, 0, 60_000, 5, (bud) => bud) };
// fast frames with the world smaller than the budget (held 20k): kept
b = new D.DetailBudget({ start: 100_000, max: 400_000 });
r.fastSmallWorld = { start: b.budget, changes: drive(b, 0, 60_000, 5, 20_000) };
// in between (25 ms for 33 ms): kept
b = new D.DetailBudget({ start: 500_000, max: 2_000_000 });
r.steady = { changes: drive(b, 0, 60_000, 25, 500_000) };
// a URL budget: never changed, whatever the frame time
b = new D.DetailBudget({ fixed: 7000, start: 1_000_000, max: 2_000_000 });
r.fixed = { start: b.budget, changes: [...drive(b, 0, 30_000, 500, 7000), ...drive(b, 30_000, 60_000, 1, 7000)] };
// the adapter default is capped by the hello's max_gaussians
r.capped = new D.DetailBudget({ start: 2_000_000, max: 300_000 }).budget;
// too few frames for a window (one every 1.5 s): no decision
b = new D.DetailBudget({ start: 1_000_000 });
r.sparse = drive(b, 0, 30_000, 500, 1_000_000, 1500);

const p = { position: [0, 0, 1.7], yaw: 0, pitch: 0 };
r.view = {
  first: D.viewMoved(p, null),
  same: D.viewMoved(p, p),
  small: D.viewMoved({ position: [0.1, 0.1, 1.7], yaw: 3, pitch: -3 }, p),
  moved: D.viewMoved({ position: [0.3, 0, 1.7], yaw: 0, pitch: 0 }, p),
  turned: D.viewMoved({ position: [0, 0, 1.7], yaw: 6, pitch: 0 }, p),
  wrap: D.viewMoved({ position: [0, 0, 1.7], yaw: 178, pitch: 0 }, { ...p, yaw: -179 }),
  pitched: D.viewMoved({ position: [0, 0, 1.7], yaw: 0, pitch: 6 }, p),
};
console.log(JSON.stringify(r));
