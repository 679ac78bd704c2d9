// Renderer benchmark: frame time, FPS and the GPU timestamp split of the WebGPU renderer's two paths.
//   node reference_viewer/render/bench.mjs [--webgpu PATH/TO/webgpu/index.js] [--n 100000,1000000]
//        [--width 1920] [--height 1080] [--sh 3] [--frames 50] [--format rgba16float,rgba8unorm,rgba32float]
//        [--raw FILE.f32[,FILE2.f32...]] [--radius 14] [--varyings conic,uv] [--path raster,tiles]
//        [--max-sigma 3] [--views 20,110,200] [--psnr DIR] [--save-raw FILE.f32] [--stream 5000,30[,500]]
// --path: the renderer paths to measure, each on the same scene and views (default both): 'raster'
// (instanced quads, fixed-function blending) and 'tiles' (the compute tile rasterizer, tiles.mjs;
// --max-sigma its footprint cap, default 3, 'inf' for none). Per path and view: frame ms (CPU wall time
// around queue.onSubmittedWorkDone over --frames frames), FPS, sort ms (the depth sort alone), the GPU
// timestamps (project / sort / bin / raster; bin = the tile path's count, scan, emit, tile sort and
// ranges), the visible count, the tile path's (tile, Gaussian) entries, and the PSNR of each path's
// image against the first path's (images clipped to [0, 1]).
// --format takes a comma list (one renderer per format, same scene). --raw FILE: slot floats (N x stride
// float32, the RawStore layout: tests/browser/synthetic_raw.py = codec/synthetic.py's trained-scene
// statistics, or reference_viewer/render/scene_raw.py from a real scene file, whose FILE.json gives the
// SH degree and an orbit that frames the scene) instead of the generated scene; a comma list measures
// each ('bench' in it: the generated scene); --n then caps N (the largest of its list). --save-raw FILE writes the generated scene's floats (with FILE.json), for
// gsplat_bench.py. --psnr DIR writes each scene's floats, the cameras and both paths' images there and
// runs reference_viewer/render/bench_psnr.py on them (PSNR against quality/rasterizer.py; it needs the
// project's Python with numpy, and the numpy reference is slow past ~1M fragments x 1080p).
// --stream K,R[,F] (per path, first view): frame times while the scene changes. Each frame is timed alone
// (sync + encode + submit + onSubmittedWorkDone, no pipelining, as a viewer's frame loop): F frames
// (default 500, so that a p99 is not simply the slowest frame) of the still scene (steady p50 / p99)
// and as many while deltas of K Gaussians arrive R times a second by the streaming frames' wall clock,
// in alternating blocks of 50 frames. A delta arrives between two frames, as a viewer receives one: it
// writes K random live slots with moved positions and turned rotations into the store, as the decoder
// applies a delta, and sync() uploads them then, as the viewer does on a frame's arrival (its CPU time
// is reported, not part of a frame); the frame after it draws the changed scene. 5 untimed frames of
// each kind come first (V8 runs a function's first calls unoptimized: a cold sync() of 5k rows takes
// 20-50x its warm time). Before each block the harness collects garbage (a full V8 GC, untimed): Dawn's
// node binding polls with setImmediate while a frame is on the GPU, and the garbage of that polling
// (not the viewer's) brought a 6-8 ms collection into about every 80th frame of either sample; a
// browser has no such polling and collects in idle time. Prints both p99s and their ratio, the p50 /
// p99 of the frames right after a delta, sync()'s CPU time per delta, and the V8 collections that still
// fell inside timed frames, per sample.
// GSD_DAWN_FLAGS (space-separated Dawn flags, e.g. 'enable-dawn-features=skip_validation') is passed to
// webgpu's create(): for finding what a frame spends outside its passes, not for the figures.
// Runs the same modules as the browser (render/index.mjs, shaders.mjs, sort.mjs, tiles.mjs) in node on
// Dawn (the `webgpu` npm package, node_modules/webgpu by default), on whatever adapter Dawn picks (Vulkan
// on a GPU machine). The generated scene is synthetic (seeded): a 20 m x 20 m ground plus 150 boxes,
// splats with ~1.5 cm std-dev (log-normal, flattened along one axis), random orientations, opacity
// logits 60% high / 25% low / 15% uniform, SH up to --sh with 3DGS-like band energies; the camera orbits
// at 14 m, 60 degree horizontal fov, looking at the centre from 30 degrees up.
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import v8 from 'node:v8';
import vm from 'node:vm';

const args = Object.fromEntries(process.argv.slice(2).reduce((a, v, i, all) => (v.startsWith('--') ? [...a, [v.slice(2), all[i + 1]]] : a), []));
const webgpuPath = args.webgpu ?? new URL('../../node_modules/webgpu/index.js', import.meta.url).href;
const { create, globals } = await import(webgpuPath.startsWith('file:') || webgpuPath.startsWith('/') ? webgpuPath : new URL(webgpuPath, `file://${process.cwd()}/`).href);
Object.assign(globalThis, globals);
const { Renderer } = await import('./index.mjs');   // after the globals: the modules read GPUBufferUsage
const { RawStore } = await import('./raw_store.mjs');
const { SLOT } = await import('../decoder/layout.mjs');
const gpu = create(process.env.GSD_DAWN_FLAGS ? process.env.GSD_DAWN_FLAGS.split(' ') : []);   // e.g. 'enable-dawn-features=skip_validation'
const W = Number(args.width ?? 1920), H = Number(args.height ?? 1080);
const SH = Number(args.sh ?? 3);
const PATHS = (args.path ?? 'raster,tiles').split(',');
const MAX_SIGMA = args['max-sigma'] === undefined ? undefined : args['max-sigma'] === 'inf' ? Infinity : Number(args['max-sigma']);
const VIEWS = (args.views ?? '20,110,200').split(',').map(Number);
const FRAMES = Number(args.frames ?? 50);
const sizes = (args.n ?? '100000,1000000').split(',').map(Number);
const STREAM = args.stream ? args.stream.split(',').map(Number) : null;

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

// an orbit camera: azimuth azDeg around `target`, 30 degrees above the plane normal to `up`, at `radius`
function camera(azDeg, frame = {}) {
  const up = frame.up ?? [0, 0, 1], tgt = frame.target ?? [0, 0, 1], R = frame.radius ?? RADIUS;
  const sub = (a, b) => a.map((v, i) => v - b[i]), nrm = (a) => { const l = Math.hypot(...a); return a.map((v) => v / l); };
  const cross = (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
  // a basis (e1, e2, up) of the orbit
  const ref = Math.abs(up[0]) < 0.9 ? [1, 0, 0] : [0, 1, 0];
  const ru = ref[0] * up[0] + ref[1] * up[1] + ref[2] * up[2];
  const e1 = nrm(ref.map((v, i) => v - ru * up[i])), e2 = cross(up, e1);   // up = z: e1 = x, e2 = y
  const az = (azDeg * Math.PI) / 180, el = (30 * Math.PI) / 180;
  const eye = [0, 1, 2].map((i) => tgt[i] + R * (Math.cos(el) * (Math.cos(az) * e1[i] + Math.sin(az) * e2[i]) + Math.sin(el) * up[i]));
  const f = nrm(sub(tgt, eye)), r = nrm(cross(f, up)), dn = cross(f, r);
  const t = [r, dn, f].map((row) => -(row[0] * eye[0] + row[1] * eye[1] + row[2] * eye[2]));
  const fx = 0.5 * W / Math.tan(Math.PI / 6);
  return { viewMatrix: [...r, t[0], ...dn, t[1], ...f, t[2], 0, 0, 0, 1], fx, fy: fx, cx: W / 2, cy: H / 2, width: W, height: H };
}

function rawScene(file, cap) {
  const metaFile = file.replace(/\.f32$/, '') + '.json';
  const meta = fs.existsSync(metaFile) ? JSON.parse(fs.readFileSync(metaFile, 'utf8')) : {};
  const sh = meta.shDegree ?? SH;
  const buf = fs.readFileSync(file);
  const stride = new RawStore(sh, 1).stride;
  const f = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
  const N = Math.min(cap, f.length / stride);
  const st = new RawStore(sh, N);
  st.load(f, N);
  return { st, frame: meta.target ? meta : {}, name: path.basename(file) };
}

function psnr(a, b) {
  let m = 0, c = 0;
  for (let i = 0; i < a.length; i++) {
    if ((i & 3) === 3) continue;
    const d = Math.min(1, Math.max(0, a[i])) - Math.min(1, Math.max(0, b[i]));
    m += d * d; c++;
  }
  return m === 0 ? Infinity : -10 * Math.log10(m / c);
}

function saveRaw(file, st, frame) {
  fs.writeFileSync(file, Buffer.from(st.data.buffer, st.data.byteOffset, st.highWater * st.stride * 4));
  fs.writeFileSync(file.replace(/\.f32$/, '') + '.json', JSON.stringify({ ...frame, n: st.highWater, shDegree: st.shDegree }));
}

const pct = (xs, q) => { const a = [...xs].sort((x, y) => x - y); return a[Math.min(a.length - 1, Math.floor(q * a.length))]; };

/** Frame times (each frame alone) of the still scene and while deltas of `k` Gaussians arrive `rate`
 *  times a second, in alternating blocks of STREAM_BLOCK frames (so that both samples share whatever
 *  slows the process over time); the store is restored afterwards, so the next path draws the same scene. */
const STREAM_BLOCK = 50;
async function streamFrames(r, st, cam, k, rate, frames) {
  const { PerformanceObserver } = await import('node:perf_hooks');
  const gcs = [];   // [start, end] of each V8 collection
  const obs = new PerformanceObserver((list) => { for (const e of list.getEntries()) gcs.push([e.startTime, e.startTime + e.duration]); });
  obs.observe({ entryTypes: ['gc'] });
  const collect = fullGc();
  const spans = { steady: [], during: [] };   // [start, end] of each timed frame
  let sample = null;
  const frame = async () => {
    const t0 = performance.now();
    r.sync(st);
    r.render(cam);
    await r.device.queue.onSubmittedWorkDone();
    const t1 = performance.now();
    spans[sample]?.push([t0, t1]);
    return t1 - t0;
  };
  const { u, n } = rng(7);
  const S = st.stride, row = new Float32Array(S), N = st.highWater;
  const saved = st.data.slice(0, N * S);   // before any timed frame: the copy's memory weighs on both samples
  const delta = () => {
    for (let j = 0; j < k; j++) {
      const slot = Math.floor(u() * N);
      row.set(st.data.subarray(slot * S, slot * S + S));
      for (let c = 0; c < 3; c++) row[c] += 0.01 * n();
      row[SLOT.ROTATION + 1] += 0.05 * n();   // a turn: the projection normalises the quaternion
      st.write(slot, row);
    }
  };
  const uploads = [];
  const arrive = () => {   // a delta between two frames: applied, then uploaded
    const ta = performance.now();
    delta();
    const tb = performance.now();
    r.sync(st);
    uploads.push(performance.now() - tb);
    return tb - ta;
  };
  for (let i = 0; i < 5; i++) await frame();
  for (let i = 0; i < 5; i++) { arrive(); await frame(); }   // the delta path warmed up too (JIT tiers)
  uploads.length = 0;
  const steady = [], during = [], deltaFrames = [];
  let deltas = 0, applyMs = 0, streamed = 0;   // streamed: ms of streaming blocks so far (the deltas' clock)
  while (steady.length < frames || during.length < frames) {
    collect();
    sample = 'steady';
    for (let i = 0; i < STREAM_BLOCK && steady.length < frames; i++) steady.push(await frame());
    collect();
    sample = 'during';
    const t0 = performance.now() - streamed;
    for (let i = 0; i < STREAM_BLOCK && during.length < frames; i++) {
      const arrived = performance.now() - t0 >= (deltas * 1000) / rate;
      if (arrived) { applyMs += arrive(); deltas += 1; }
      during.push(await frame());
      if (arrived) deltaFrames.push(during[during.length - 1]);
    }
    streamed = performance.now() - t0;
    sample = null;
  }
  obs.disconnect();
  st.load(saved, N);
  const inFrames = (name) => spans[name].filter(([a, b]) => gcs.some(([c, d]) => c < b && d > a)).length;
  const r2 = (x) => +x.toFixed(2);
  const out = { k, rate, frames, deltas, applyMsPerDelta: r2(applyMs / deltas),
                steadyP50: r2(pct(steady, 0.5)), steadyP99: r2(pct(steady, 0.99)),
                streamP50: r2(pct(during, 0.5)), streamP99: r2(pct(during, 0.99)),
                // the frames right after a delta, and sync()'s CPU time for each delta (between frames)
                deltaFrameP50: r2(pct(deltaFrames, 0.5)), deltaFrameP99: r2(pct(deltaFrames, 0.99)),
                syncMsP50: r2(pct(uploads, 0.5)), syncMsP99: r2(pct(uploads, 0.99)),
                gcFramesSteady: inFrames('steady'), gcFramesStream: inFrames('during') };
  out.p99Ratio = r2(out.streamP99 / out.steadyP99);
  return out;
}

/** A full V8 collection, for the harness to run between timed blocks (node exposes one only behind a
 *  flag, which the process may set for itself before making the function). */
function fullGc() {
  if (typeof globalThis.gc === 'function') return globalThis.gc;
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc');
}

const RADIUS = Number(args.radius ?? 14);
const formats = (args.format ?? 'rgba16float').split(',');
const varyingsList = (args.varyings ?? 'conic').split(',');
const sceneList = args.raw ? args.raw.split(',') : ['bench'];
const out = { width: W, height: H, frames: FRAMES, results: [] };
const psnrJobs = [];
const r3 = (x) => (x == null ? null : +x.toFixed(3));
for (const sceneName of sceneList) for (const N0 of (args.raw ? [Math.max(...sizes)] : sizes)) {
  const t0 = performance.now();
  const { st, frame, name } = sceneName === 'bench' ? { st: scene(N0, SH), frame: {}, name: 'bench' } : rawScene(sceneName, N0);
  const N = st.highWater;
  const tGen = performance.now() - t0;
  if (args['save-raw']) saveRaw(args['save-raw'], st, frame.target ? frame : { target: [0, 0, 1], radius: RADIUS, up: [0, 0, 1] });
  const cams = VIEWS.map((az) => camera(az, frame));
  let dump = null;
  if (args.psnr) {
    dump = path.join(args.psnr, `${name}_${N}`);
    fs.mkdirSync(dump, { recursive: true });
    saveRaw(path.join(dump, 'scene.f32'), st, frame);
    fs.writeFileSync(path.join(dump, 'cameras.json'), JSON.stringify(cams));
    psnrJobs.push(dump);
  }
  for (const fmt of formats) for (const varyings of varyingsList) {
    const firstImages = [];
    for (const p of PATHS) {
      const r = await Renderer.create(null, { gpu, width: W, height: H, format: fmt, varyings, path: p, maxSigma: MAX_SIGMA });
      const info = r.adapter?.info ?? {};
      out.adapter = `${info.vendor} ${info.architecture} ${info.description}`.trim();
      const t1 = performance.now();
      r.sync(st);
      await r.device.queue.onSubmittedWorkDone();
      const tUpload = performance.now() - t1;
      const res = { scene: name, n: N, sh: st.shDegree, format: r.format, varyings, path: p, genMs: +tGen.toFixed(1), uploadMs: +tUpload.toFixed(1),
                    frameMs: [], fps: [], sortMs: [], gpu: [], visible: [], tileEntries: [], psnrVsFirst: [] };
      for (const [vi, cam] of cams.entries()) {
        r.render(cam);
        const img = await r.readPixels();   // the tile path settles its entry buffers here
        res.visible.push(await r.readVisibleCount());
        if (p === 'tiles') res.tileEntries.push(r.stats.tileEntries);
        if (firstImages.length <= vi) firstImages.push(img); else res.psnrVsFirst.push(+psnr(img, firstImages[vi]).toFixed(2));
        if (dump) fs.writeFileSync(path.join(dump, `${p}_${fmt}_${varyings}_${vi}.f32`), Buffer.from(img.buffer));
        const ms = await r.timeFrames(cam, FRAMES);
        res.frameMs.push(r3(ms));
        res.fps.push(+(1000 / ms).toFixed(1));
        res.sortMs.push(r3(await r.timeFrames(cam, FRAMES, { sortOnly: true })));
        r.render(cam);
        await r.device.queue.onSubmittedWorkDone();
        await new Promise((ok) => setTimeout(ok, 50));
        const s = r.stats;
        res.gpu.push({ projectMs: r3(s.projectMs), sortMs: r3(s.sortMs), binMs: r3(s.binMs), rasterMs: r3(s.rasterMs) });
      }
      if (STREAM) res.stream = await streamFrames(r, st, cams[0], STREAM[0], STREAM[1], STREAM[2] ?? 500);
      if (p !== 'tiles') delete res.tileEntries;
      if (!res.psnrVsFirst.length) delete res.psnrVsFirst; else res.psnrVsFirstPath = PATHS[0];
      if (r.errors.length) res.errors = r.errors;
      out.results.push(res);
      console.log(JSON.stringify(res));
      r.destroy();
    }
  }
}
console.log(JSON.stringify(out));
for (const dir of psnrJobs) {
  const py = fs.existsSync('.venv/bin/python') ? '.venv/bin/python' : 'python3';
  const p = spawnSync(py, [new URL('./bench_psnr.py', import.meta.url).pathname, dir], { stdio: 'inherit' });
  if (p.status !== 0) console.error(`bench_psnr.py ${dir} failed (${p.status})`);
}
// Leave without Dawn's teardown, which can abort, segfault or hang once the results are out (seen on
// the H200 and on SwiftShader).
process.exit(0);
