// Renderer benchmark: frame time and sort time of the WebGPU renderer at N Gaussians.
//   node reference_viewer/render/bench.mjs [--webgpu PATH/TO/webgpu/index.js] [--n 100000,1000000]
//        [--width 1920] [--height 1080] [--sh 3] [--frames 50] [--format rgba16float,rgba8unorm,rgba32float]
//        [--raw FILE.f32] [--radius 14] [--varyings conic,uv]
// --format takes a comma list (one renderer per format, same scene). --raw FILE: slot floats (N x stride
// float32, the RawStore layout, e.g. from tests/browser/synthetic_raw.py = codec/synthetic.py's
// trained-scene statistics) instead of the generated scene; --n then caps N.
// Runs the same modules as the browser (render/index.mjs, shaders.mjs, sort.mjs) in node on Dawn (the
// `webgpu` npm package, node_modules/webgpu by default), on whatever adapter Dawn picks (Vulkan on a
// GPU machine). The scene is synthetic, generated here (seeded): a 20 m x 20 m ground plus 150 boxes,
// splats with ~1.5 cm std-dev (log-normal, flattened along one axis), random orientations, opacity
// logits 60% high / 25% low / 15% uniform, SH up to --sh with 3DGS-like band energies; the camera orbits
// at 14 m, 60 degree horizontal fov, looking at the centre from 30 degrees up.

const args = Object.fromEntries(process.argv.slice(2).reduce((a, v, i, all) => (v.startsWith('--') ? [...a, [v.slice(2), all[i + 1]]] : a), []));
const webgpuPath = args.webgpu ?? new URL('../../node_modules/webgpu/index.js', import.meta.url).href;
const { create, globals } = await import(webgpuPath.startsWith('file:') || webgpuPath.startsWith('/') ? webgpuPath : new URL(webgpuPath, `file://${process.cwd()}/`).href);
Object.assign(globalThis, globals);
const { Renderer } = await import('./index.mjs');   // after the globals: the modules read GPUBufferUsage
const { RawStore } = await import('./raw_store.mjs');
const gpu = create([]);
const W = Number(args.width ?? 1920), H = Number(args.height ?? 1080);
const SH = Number(args.sh ?? 3);
const FRAMES = Number(args.frames ?? 50);
const sizes = (args.n ?? '100000,1000000').split(',').map(Number);

function rng(seed) {
  let a = seed >>> 0;
  const u = () => { a = (a + 0x6D2B79F5) >>> 0; let t = a; t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
  const n = () => Math.sqrt(-2 * Math.log(u() + 1e-12)) * Math.cos(2 * Math.PI * u());
  return { u, n };
}

function scene(N, sh, seed = 1) {
  const st = new RawStore(sh, N);
  const { u, n } = rng(seed);
  const S = st.stride, K = st.restCount, d = new Float32Array(N * S);
  const E = 10;
  const boxes = Array.from({ length: 150 }, () => ({ c: [(u() * 2 - 1) * 0.8 * E, (u() * 2 - 1) * 0.8 * E], h: [0.3 + 1.7 * u(), 0.3 + 1.7 * u(), 0.3 + 2.5 * u()], col: [n() * 0.6, n() * 0.6, n() * 0.6] }));
  const bandStd = [0, 0.12, 0.12, 0.12, 0.06, 0.06, 0.06, 0.06, 0.06, 0.03, 0.03, 0.03, 0.03, 0.03, 0.03, 0.03];
  for (let i = 0; i < N; i++) {
    const o = i * S;
    let x, y, z, col;
    if (u() < 0.35) { x = (u() * 2 - 1) * E; y = (u() * 2 - 1) * E; z = 0.05 * Math.sin(x) * Math.cos(0.7 * y); col = [0.3 + 0.2 * n(), 0.5 + 0.2 * n(), -0.2 + 0.2 * n()]; }
    else {
      const b = boxes[(u() * boxes.length) | 0];
      const f = (u() * 5) | 0, s1 = u() * 2 - 1, s2 = u() * 2 - 1;
      const p = [s1, s2, 1];
      const ax = f < 2 ? [2, 0, 1] : f < 4 ? [0, 2, 1] : [1, 0, 2];  // faces: +-x, +-y, top
      const q = [0, 0, 0];
      q[ax[0]] = f === 1 || f === 3 ? -1 : 1; q[ax[1]] = p[0]; q[ax[2]] = p[1];
      if (f === 4) { q[2] = 1; q[0] = s1; q[1] = s2; }
      x = b.c[0] + q[0] * b.h[0]; y = b.c[1] + q[1] * b.h[1]; z = b.h[2] + q[2] * b.h[2];
      col = b.col.map((c) => c + 0.15 * n());
    }
    d[o] = x; d[o + 1] = y; d[o + 2] = z;
    const r = u();
    d[o + 3] = r < 0.6 ? 3 + 2 * u() : r < 0.85 ? -4 + 2 * u() : -3 + 6 * u();
    const base = Math.log(0.015) + 0.6 * n();
    d[o + 4] = base + 0.3 * n(); d[o + 5] = base + 0.3 * n(); d[o + 6] = base - Math.log(3 + 7 * u());
    const qw = n(), qx = n(), qy = n(), qz = n(), qn = Math.hypot(qw, qx, qy, qz);
    d[o + 8] = qw / qn; d[o + 9] = qx / qn; d[o + 10] = qy / qn; d[o + 11] = qz / qn;
    d[o + 12] = col[0]; d[o + 13] = col[1]; d[o + 14] = col[2];
    for (let k = 0; k < K; k++) { const v = bandStd[k + 1] * n(); for (let c = 0; c < 3; c++) d[o + 16 + c * K + k] = v * (0.7 + 0.3 * n()); }
  }
  st.load(d, N);
  return st;
}

function camera(azDeg) {
  const az = (azDeg * Math.PI) / 180, el = (30 * Math.PI) / 180, R = RADIUS;
  const eye = [R * Math.cos(el) * Math.cos(az), R * Math.cos(el) * Math.sin(az), 1 + R * Math.sin(el)];
  const tgt = [0, 0, 1], up = [0, 0, 1];
  const sub = (a, b) => a.map((v, i) => v - b[i]), nrm = (a) => { const l = Math.hypot(...a); return a.map((v) => v / l); };
  const cross = (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
  const f = nrm(sub(tgt, eye)), r = nrm(cross(f, up)), dn = cross(f, r);
  const t = [r, dn, f].map((row) => -(row[0] * eye[0] + row[1] * eye[1] + row[2] * eye[2]));
  const fx = 0.5 * W / Math.tan(Math.PI / 6);
  return { viewMatrix: [...r, t[0], ...dn, t[1], ...f, t[2], 0, 0, 0, 1], fx, fy: fx, cx: W / 2, cy: H / 2, width: W, height: H };
}

function rawScene(file, sh, cap) {
  const buf = (await_fs()).readFileSync(file);
  const st0 = new RawStore(sh, 1);
  const f = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
  const N = Math.min(cap, f.length / st0.stride);
  const st = new RawStore(sh, N);
  st.load(f, N);
  return st;
}
let fsMod = null;
const await_fs = () => fsMod;
if (args.raw) fsMod = await import('node:fs');
const RADIUS = Number(args.radius ?? 14);
const formats = (args.format ?? 'rgba16float').split(',');
const varyingsList = (args.varyings ?? 'conic').split(',');
const out = { width: W, height: H, sh: SH, scene: args.raw ?? 'bench', results: [] };
for (const N0 of sizes) for (const fmt of formats) for (const varyings of varyingsList) {
  const r = await Renderer.create(null, { gpu, width: W, height: H, format: fmt, varyings });
  const info = r.adapter?.info ?? {};
  out.adapter = `${info.vendor} ${info.architecture} ${info.description}`.trim();
  const t0 = performance.now();
  const st = args.raw ? rawScene(args.raw, SH, N0) : scene(N0, SH);
  const N = st.highWater;
  const tGen = performance.now() - t0;
  const t1 = performance.now();
  r.sync(st);
  await r.device.queue.onSubmittedWorkDone();
  const tUpload = performance.now() - t1;
  const res = { n: N, format: r.format, varyings, genMs: +tGen.toFixed(1), uploadMs: +tUpload.toFixed(1), frameMs: [], sortMs: [] };
  for (const az of [20, 110, 200]) {
    const cam = camera(az);
    r.render(cam);
    res.visible = (res.visible ?? []).concat([await r.readVisibleCount()]);
    res.frameMs.push(+(await r.timeFrames(cam, FRAMES)).toFixed(3));
    res.sortMs.push(+(await r.timeFrames(cam, FRAMES, { sortOnly: true })).toFixed(3));
    r.render(cam);
    await r.device.queue.onSubmittedWorkDone();
    await new Promise((ok) => setTimeout(ok, 50));
    res.gpuTimestamps = (res.gpuTimestamps ?? []).concat([{ projectMs: r.stats.projectMs, sortMs: r.stats.sortMs, rasterMs: r.stats.rasterMs }]);
  }
  res.fps = res.frameMs.map((m) => +(1000 / m).toFixed(1));
  if (r.errors.length) res.errors = r.errors;
  out.results.push(res);
  console.log(JSON.stringify(res));
  r.destroy();
}
console.log(JSON.stringify(out));
