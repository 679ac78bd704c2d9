// The GSD reference viewer app: a live gsd/1 session (or an offline .gsd file) decoded into a
// SceneStore and drawn by the WebGPU renderer every animation frame from a local free camera
// (or the world's camera). Exposes window.gsdViewer for tests (see README.md).
import { Renderer } from '../render/index.mjs';
import { Session, sessionUrl, DEFAULT_BUDGETS } from './session.mjs';
import { Player } from './playback.mjs';
import { Timeline } from './timeline.mjs';
import { FreeCamera, renderCamera, storeBounds, copyPose, setUpAxis, upAxis } from './camera.mjs';
import { Input } from './input.mjs';
import { Hud } from './hud.mjs';
import { DetailBudget, ADAPTER_BUDGETS, adapterClass, viewMoved, VIEW_MIN_MS } from './detail.mjs';

const q = new URLSearchParams(location.search);
const canvas = document.getElementById('view');
const hud = new Hud(document.getElementById('hud'), document.getElementById('help'));
const fixedSize = /^(\d+)x(\d+)$/.exec(q.get('size') || '');
const fov = Number(q.get('fov')) || 70;
const cam = new FreeCamera();
try { setUpAxis(q.get('up') || 'z'); } catch (e) { console.warn(e.message); }   // ?up=-y: a COLMAP / 3DGS scene
let follow = q.get('follow') !== '0';
let renderer = null, rendererError = null;
let session = null, player = null, mode = 'live', offlineName = '', openError = null;
let gpuBusy = false, lastStore = null, rendered = 0, frameMs = null, lastRenderCam = null;
let fpsCount = 0, fpsT0 = performance.now(), fps = null, lastT = performance.now();
// Live sessions join progressively (SPEC.md 11.9: stand-ins first, refined while the world steps,
// within a detail budget; README.md) unless ?progressive=0; ?budget=N fixes the detail budget.
const urlBudget = /^\d+$/.test(q.get('budget') || '') && +q.get('budget') >= 1 ? +q.get('budget') : null;
const progressiveJoin = q.get('progressive') !== '0';
// the renderer's path: raster | tiles | auto (render/index.mjs). 'auto' times both on this adapter at the
// first frame with a scene and keeps the faster: the tile path was 4-10x faster at 1080p on H100 and H200
// (RENDER_BENCH.md), the raster path can win on small scenes and other adapters
const renderPath = q.get('path') || 'auto';
let detail = null, adapterKind = null;

// ------------------------------------------------------------------------------ canvas and renderer
function resize() {
  let w, h;
  if (fixedSize) { w = +fixedSize[1]; h = +fixedSize[2]; }
  else {
    const dpr = Math.min(window.devicePixelRatio || 1, 2);
    const st = document.getElementById('stage');
    w = Math.max(16, Math.round(st.clientWidth * dpr)); h = Math.max(16, Math.round(st.clientHeight * dpr));
    const s = Math.min(1, 1920 / w); w = Math.round(w * s); h = Math.round(h * s);
  }
  if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
}
if (fixedSize) {
  for (const c of [canvas, document.getElementById('view2d')]) { c.style.width = `${fixedSize[1]}px`; c.style.height = `${fixedSize[2]}px`; }
}
window.addEventListener('resize', resize);
resize();

// How frames reach the screen: 'canvas' (the renderer presents to a WebGPU canvas) or 'readback'
// (render offscreen, read the pixels back, draw them on a 2D canvas). Headless Chromium on
// SwiftShader destroys the device at the first getCurrentTexture() of a WebGPU canvas, so 'auto'
// picks readback for a fallback (software) adapter and headless browsers, canvas otherwise.
let presentMode = q.get('present') || 'auto';
const canvas2d = document.getElementById('view2d');
const ctx2d = canvas2d.getContext('2d');

let adapterPromise = null;
const adapter = () => (adapterPromise ??= (async () => {
  try { return (await navigator.gpu?.requestAdapter()) ?? null; } catch { return null; }   // Renderer.create reports it
})());

async function choosePresent() {
  if (presentMode !== 'auto') return presentMode;
  if (/HeadlessChrome/.test(navigator.userAgent)) return 'readback';
  return adapterClass(await adapter()) === 'software' ? 'readback' : 'canvas';
}

const rendererReady = (async () => {
  try {
    presentMode = await choosePresent();
    const onCanvas = presentMode === 'canvas';
    canvas.style.display = onCanvas ? '' : 'none';
    canvas2d.style.display = onCanvas ? 'none' : '';
    // On a real GPU the 8-bit target with the light fragment shader is ~2x faster at 1M Gaussians
    // and still within ~50 dB of the reference rasterizer (reference_viewer/RENDER_BENCH.md); ?render=exact
    // keeps the float target (72+ dB), which readback (tests, software adapters) always uses.
    const fast = onCanvas && (q.get('render') || 'fast') === 'fast';
    renderer = await Renderer.create(onCanvas ? canvas : null, {
      width: canvas.width, height: canvas.height, path: renderPath,
      ...(fast ? { format: 'rgba8unorm', varyings: 'uv' } : {}),
    });
    renderer.device.lost?.then((info) => { rendererError = `GPU device lost: ${info.message}`; renderer = null; });
  } catch (e) {
    rendererError = String(e && e.message || e);
    console.warn('renderer unavailable:', rendererError);
  }
})();

/** Readback presentation: linear RGBA float -> RGBA8 (clipped) on the 2D canvas. */
async function blit(r) {
  const px = await r.readPixels();
  const W = r.width, H = r.height;
  if (canvas2d.width !== W || canvas2d.height !== H) { canvas2d.width = W; canvas2d.height = H; }
  const img = ctx2d.createImageData(W, H);
  const d = img.data;
  for (let i = 0; i < px.length; i += 4) {
    d[i] = px[i] * 255 + 0.5; d[i + 1] = px[i + 1] * 255 + 0.5; d[i + 2] = px[i + 2] * 255 + 0.5; d[i + 3] = 255;
  }
  ctx2d.putImageData(img, 0, 0);
  return px;
}

const currentStore = () => (mode === 'live' ? session?.store : player?.store) ?? null;

/** Uploads the store's changes as a frame is applied, so that the next draw() only draws (see
 *  Renderer.sync); draw() still syncs whatever came in by other paths. */
function upload() {
  const store = currentStore();
  if (!renderer || !store) return;
  if (store !== lastStore) { renderer.generation = null; lastStore = store; }  // a new decoder: full upload
  renderer.sync(store);
}

let lastKey = '', idle = false;
function draw() {
  if (!renderer || gpuBusy) return false;
  const store = currentStore();
  // nothing new to show (same frames, camera and size): skip the frame (SwiftShader is slow)
  const p = cam.pose;
  const key = `${mode}|${api.frames}|${api.seq()}|${store?.generation}|${p.position}|${p.yaw}|${p.pitch}|${canvas.width}x${canvas.height}`;
  idle = key === lastKey;
  if (idle) return false;
  lastKey = key;
  upload();
  const rc = renderCamera(cam.pose, canvas.width, canvas.height, fov);
  const t0 = performance.now();
  try {
    renderer.render(rc);
  } catch (e) {
    rendererError = String(e && e.message || e);
    return false;
  }
  lastRenderCam = rc;
  rendered += 1;
  gpuBusy = true;                                         // at most one frame in flight on the GPU
  const r = renderer;
  const done = presentMode === 'canvas' ? r.device.queue.onSubmittedWorkDone() : blit(r);
  done.then(() => {
    frameMs = performance.now() - t0; gpuBusy = false; fpsCount += 1;
    // the detail budget follows the GPU's frame time where measured, else the time to the frame on screen
    detail?.sample(performance.now(), r.stats?.gpuFrameMs ?? frameMs);
  },
            (e) => { gpuBusy = false; if (!rendererError) rendererError = String(e && e.message || e); });
  return true;
}

function tick(t) {
  requestAnimationFrame(tick);
  const dt = Math.min(0.1, (t - lastT) / 1000);
  lastT = t;
  if (t - fpsT0 >= 1000) { fps = (fpsCount * 1000) / (t - fpsT0); fpsCount = 0; fpsT0 = t; }
  const { axes, fast } = input.flyAxes();
  if (axes[0] || axes[1] || axes[2]) {
    follow = false;
    const v = cam.speed * (fast ? 4 : 1) * dt;
    cam.fly(axes[0] * v, axes[1] * v, axes[2] * v);
  }
  if (follow && mode === 'live' && session?.worldCamera) applyWorldCamera(session.worldCamera);
  draw();
  if (mode === 'live') sendDetail(t);
}

/**
 * A progressive session's `detail` messages (SPEC.md 11.9): a new budget when DetailBudget's rule
 * asks for one, and the local camera's pose as the eye (with the page's field of view and the
 * canvas's aspect) when it moved or turned enough (viewMoved), at most every VIEW_MIN_MS. While following the world's camera with no eye sent yet, the server
 * already orders refinement from that camera: nothing is sent. The eye is sent in the reference
 * world's conventions, so only while the page's up axis is the world's z.
 */
let lastViewT = -Infinity;
function sendDetail(t) {
  if (!session?.isProgressive || !session.header || session.stats.frames < 1) return;
  const budget = detail?.update(t, session.detailInfo?.held ?? session.store?.live ?? null) ?? null;
  const p = cam.pose;
  let view = null;
  if (upAxis() === 'z' && t - lastViewT >= VIEW_MIN_MS && (session.detailSent?.view || !follow)
      && viewMoved(p, session.detailSent?.view ?? session.worldCamera)) {
    view = { position: [...p.position], yaw: p.yaw, pitch: p.pitch, fov: Math.min(179, Math.max(1, fov)),
             aspect: Math.min(10, Math.max(0.1, canvas.width / Math.max(1, canvas.height))) };
  }
  if ((budget != null || view) && session.detail({ budget, view }) && view) lastViewT = t;
}

function applyWorldCamera(c) {
  if (!c || !Array.isArray(c.position)) return;
  cam.set({ position: c.position.map(Number), yaw: Number(c.yaw) || 0, pitch: Number(c.pitch) || 0 });
}

// ------------------------------------------------------------------------------------ live session
async function startLive() {
  player?.stop();
  player = null;
  mode = 'live';
  session?.close();
  session = null;
  api.session = null;
  const budgets = {
    ...DEFAULT_BUDGETS,
    ...(q.get('max_gaussians') ? { max_gaussians: +q.get('max_gaussians') } : {}),
    ...(q.get('max_bytes_per_second') ? { max_bytes_per_second: +q.get('max_bytes_per_second') } : {}),
  };
  detail = null;
  if (progressiveJoin) {
    adapterKind = urlBudget != null ? null : adapterClass(await adapter(), navigator.userAgent);
    if (mode !== 'live' || session) return;                 // a file was opened (or live pressed again) meanwhile
    detail = new DetailBudget({ fixed: urlBudget, start: ADAPTER_BUDGETS[adapterKind] ?? ADAPTER_BUDGETS.other,
                                max: budgets.max_gaussians, targetMs: Number(q.get('frame_ms')) || 1000 / 30 });
  }
  session = new Session({ url: sessionUrl(), budgets, progressive: detail ? { budget: detail.budget } : null,
                          onFrame: upload });
  session.connect();
  api.session = session;
}

// -------------------------------------------------------------------------------- offline playback
const timeline = new Timeline();   // play / pause / scrub / loop / speed of the offline stream

function openBytes(bytes, name = 'stream.gsd') {
  session?.close(1000, 'offline playback');
  player?.stop();
  player = null;                         // a file that fails below leaves no stopped player behind
  mode = 'offline';
  offlineName = name;
  openError = null;
  follow = false;
  player = new Player(bytes, {
    fps: Number(document.getElementById('fps').value) || 25,
    loop: document.getElementById('loop').checked,
    onRestart: () => {},
    onFrame: upload,
  });
  if (player.step()) {
    const box = storeBounds(player.store);
    if (box) cam.frameBox(box);
  }
  player.play();
  timeline.attach(player);
  api.player = player;
  return { frames: player.frames.length, header: player.header };
}

/** A file that could not be opened: one HUD line naming it (the old stream is already stopped). */
function openFailed(name, e) {
  player = null;
  api.player = null;
  mode = 'offline';
  offlineName = name;
  const msg = String(e && e.message || e);
  openError = e && e.code === 'BAD_MAGIC' && /GSDH/.test(msg)   // the first record is not a header
    ? `${name} is not a GSD stream (no GSDH header); open a .gsd file, or run: gsd view ${name}`
    : `cannot open ${name}: ${e && e.code && !msg.startsWith(e.code) ? `${e.code} ` : ''}${msg}`;
  console.warn(openError);
}

async function openFile(file) {
  try {
    openBytes(new Uint8Array(await file.arrayBuffer()), file.name);
  } catch (e) {
    openFailed(file.name, e);
  }
}

/** Offline playback of a stream fetched from `url` (?stream=URL, what `gsd view` opens). */
async function openUrl(url) {
  const name = decodeURIComponent(url.split(/[?#]/)[0].split('/').pop() || 'stream.gsd');
  offlineName = name;
  try {
    const r = await fetch(url);
    if (!r.ok) throw new Error(`HTTP ${r.status} ${r.statusText}`);
    openBytes(new Uint8Array(await r.arrayBuffer()), name);
  } catch (e) {
    openFailed(name, e);
  }
}

document.getElementById('file').addEventListener('change', (e) => { if (e.target.files[0]) openFile(e.target.files[0]); });
window.addEventListener('dragover', (e) => { e.preventDefault(); document.body.classList.add('drop'); });
window.addEventListener('dragleave', () => document.body.classList.remove('drop'));
window.addEventListener('drop', (e) => {
  e.preventDefault();
  document.body.classList.remove('drop');
  const f = e.dataTransfer?.files?.[0];
  if (f) openFile(f);
});
document.getElementById('play').addEventListener('click', () => player?.toggle());
document.getElementById('fps').addEventListener('change', (e) => player?.setFps(Number(e.target.value) || 25));
document.getElementById('loop').addEventListener('change', (e) => { if (player) player.loop = e.target.checked; });
document.getElementById('live').addEventListener('click', () => startLive());
const followBox = document.getElementById('follow');
followBox.addEventListener('change', (e) => { follow = e.target.checked; });

// ----------------------------------------------------------------------------------------- input
function home() {
  if (mode === 'live' && session?.worldCamera) { applyWorldCamera(session.worldCamera); return; }
  const box = storeBounds(currentStore());
  if (box) cam.frameBox(box);
}

const input = new Input(document.getElementById('stage'), {
  localKey: () => {                      // a tap moves one 60 Hz frame's worth; holding keeps flying (tick)
    follow = false;
    const { axes, fast } = input.flyAxes();
    const v = (cam.speed * (fast ? 4 : 1)) / 60;
    cam.fly(axes[0] * v, axes[1] * v, axes[2] * v);
  },
  world: (kind, params) => { if (mode === 'live') session?.act(kind, params); },
  drag: (dx, dy, look) => {
    follow = false;
    if (look) cam.look(-dx * 0.2, -dy * 0.2); else cam.orbit(-dx * 0.3, -dy * 0.3);
  },
  wheel: (dy) => { follow = false; cam.dolly(Math.exp(dy * 0.001)); },
  command: (c) => {
    if (c === 'follow') follow = !follow;
    else if (c === 'home') home();
    else if (c === 'help') hud.toggleHelp();
    else if (c === 'hud') hud.toggle();
    else if (c === 'resync') { if (mode === 'live') session?.resync('CLIENT'); }
    else if (c === 'playpause') player?.toggle();
    else if (c === 'pose' && mode === 'live') {
      const p = copyPose(cam.pose);
      session?.act('pose', { position: p.position, yaw: p.yaw, pitch: p.pitch });
    }
  },
});

// ------------------------------------------------------------------------------------------- HUD
function digestStatus() {
  if (mode === 'offline') {
    if (!player) return '-';
    if (player.error) return `ERROR ${player.error.code || ''} at frame ${player.index}`;
    const last = player.log[player.log.length - 1];
    return last ? (last.serverDigestFromFrame ? `ok ${last.digest}` : `unchecked ${last.digest}`) : '-';
  }
  if (!session) return '-';
  if (session.resyncing) return `resyncing (${session.stats.lastError || ''})`;
  const last = session.log[session.log.length - 1];
  if (!last) return '-';
  return `${last.serverDigestFromFrame ? 'verified' : 'unchecked'} ${last.digest}`;
}

/** The progressive join as the HUD shows it: what the last frame's `detail` says, and the budget rule. */
function detailState() {
  if (!session) return null;
  if (!session.progressive) return { join: 'ordinary' };
  if (session.header && !session.isProgressive) return { join: 'ordinary (the server does not join progressively)' };
  const d = session.detailInfo;
  return { join: 'progressive', held: d?.held ?? null, coarse: d?.coarse ?? null, budget: d?.budget ?? session.detailBudget,
           asked: detail?.budget ?? null, rule: detail ? `${detail.reason}${adapterKind ? `, ${adapterKind} adapter` : ''}` : null,
           views: session.stats.details };
}

function hudState() {
  const store = currentStore();
  const p = cam.pose;
  const r = renderer?.stats;
  const common = {
    error: mode === 'offline' ? openError : null,
    mode: mode === 'live' ? 'live' : `offline ${offlineName} ${player ? `${player.index}/${player.frames.length}${player.playing ? '' : ' (paused)'}` : ''}`,
    fps: idle && fps === 0 ? 'idle (no change)' : fps, live: store ? store.live : null, digestStatus: digestStatus(),
    render: renderer ? `${canvas.width}x${canvas.height} ${presentMode}, path ${r?.path ?? renderPath}${renderPath === 'auto' ? ' (auto)' : ''}, frame ${frameMs == null ? '-' : frameMs.toFixed(1)} ms, sort ${r?.sortMs == null ? '-' : r.sortMs.toFixed(2)} ms, gpu ${r?.gpuFrameMs == null ? '-' : r.gpuFrameMs.toFixed(2)} ms`
      : rendererError ? `unavailable: ${rendererError}` : 'starting',
    camera: `${follow ? 'following world' : 'local'} (${p.position.map((v) => v.toFixed(2)).join(', ')}) yaw ${p.yaw.toFixed(1)} pitch ${p.pitch.toFixed(1)}`,
  };
  if (mode === 'offline') {
    return { ...common, link: player ? `${player.frames.length} frames, ${player.totalBytes} bytes` : '-',
             timeline: player ? timeline.describe() : null,
             seq: player?.seq, frames: player?.index, keyframes: player?.log.filter((e) => e.keyframe).length,
             bytesPerSecond: 0, lastBytes: player?.log.at(-1)?.bytes };
  }
  if (!session) return { ...common, link: 'starting' };
  const s = session.stats;
  const link = session.state === 'open' ? `open ${session.url}` :
    session.state === 'closed' && session.closeInfo?.busy
      ? `server busy: retrying in ${(session.closeInfo.retryAfterMs / 1000).toFixed(0)} s`
      : session.state === 'closed' && session.closeInfo ? `closed ${session.closeInfo.code} ${session.closeInfo.reason || ''}` : session.state;
  return { ...common, link, seq: session.header ? session.seq : null, frames: s.frames, keyframes: s.keyframes,
           resyncs: s.resyncs, bytesPerSecond: session.bytesPerSecond(), lastBytes: s.lastBytes,
           lastSteps: s.lastSteps, lastLatency: s.lastLatency, latencies: s.latencies, detail: detailState() };
}
setInterval(() => { hud.update(hudState()); followBox.checked = follow; }, 250);

// ------------------------------------------------------------------------------------- test hooks
function b64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

const api = {
  ready: false,
  session: null,
  player: null,
  get frames() { return mode === 'live' ? session?.stats.frames ?? 0 : player?.index ?? 0; },
  get log() { return mode === 'live' ? session?.log ?? [] : player?.log ?? []; },
  get rendered() { return rendered; },
  get timeline() { return timeline; },
  get rendererError() { return rendererError; },
  get presentMode() { return presentMode; },
  get follow() { return follow; },
  setFollow(v) { follow = !!v; },
  mode: () => mode,
  digest: () => (mode === 'live' ? session?.digest() : player?.digest()) ?? null,
  seq: () => (mode === 'live' ? session?.seq : player?.seq) ?? 0,
  live: () => currentStore()?.live ?? 0,
  stats: () => (session ? { ...session.stats, state: session.state, closeInfo: session.closeInfo, resyncing: session.resyncing } : null),
  detail: () => detailState(),
  get renderPath() { return renderer?.stats?.path ?? null; },
  worldCamera: () => session?.worldCamera ?? null,
  pose: () => copyPose(cam.pose),
  setPose: (p) => { follow = false; cam.set(p); },
  /** A progressive session's detail budget set from outside (fixed from then on); sent at once. */
  setDetailBudget: (n) => {
    if (!detail || !session?.isProgressive) return false;
    detail.fixed = true;
    detail.budget = Math.max(1, Math.floor(n));
    detail.reason = 'set by the page';
    return session.detail({ budget: detail.budget });
  },
  act: (kind, params = {}) => session?.act(kind, params),
  corruptNext: (n = 1) => { if (session) session.corrupt = n; },
  openBytes: (u8, name) => openBytes(u8 instanceof Uint8Array ? u8 : new Uint8Array(u8), name),
  hud: () => hudState(),
  /** Render the current state from the current camera now; RGBA8 (clipped linear), base64. */
  async snapshot() {
    await rendererReady;
    if (!renderer) throw new Error(`no renderer: ${rendererError}`);
    while (gpuBusy) await new Promise((r) => setTimeout(r, 5));
    // this frame is the one in flight: no draw() meanwhile (two readbacks at once would both map the
    // tile path's entry-count buffer)
    gpuBusy = true;
    let px, rc;
    try {
      if (follow && mode === 'live' && session?.worldCamera) applyWorldCamera(session.worldCamera);
      upload();
      rc = renderCamera(cam.pose, canvas.width, canvas.height, fov);
      renderer.render(rc);
      px = await renderer.readPixels();
    } finally {
      gpuBusy = false;
      lastKey = '';                                       // the screen shows the draw before: draw again
    }
    const out = new Uint8Array(px.length);
    for (let i = 0; i < px.length; i++) out[i] = Math.round(Math.min(1, Math.max(0, px[i])) * 255);
    return { width: renderer.width, height: renderer.height, rgba: b64(out), camera: rc, pose: copyPose(cam.pose),
             seq: api.seq(), digest: api.digest(), live: api.live() };
  },
};
window.gsdViewer = api;

if (q.get('stream')) { mode = 'offline'; follow = false; openUrl(q.get('stream')); }
else if (q.get('connect') !== '0') startLive();
else { mode = 'offline'; }
requestAnimationFrame(tick);
rendererReady.then(() => { api.ready = true; });
