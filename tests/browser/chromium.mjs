// Headless Chromium with WebGPU (SwiftShader when there is no GPU) through playwright-core, plus a tiny
// static file server on 127.0.0.1 (WebGPU needs a secure context: http://127.0.0.1 is one, about:blank
// and file:// pages get no navigator.gpu).
//
// Recipe that works here (Debian chromium 150, no GPU): the flags in CHROMIUM_ARGS below; no Vulkan /
// ANGLE / adapter flags are needed -- navigator.gpu.requestAdapter() returns the SwiftShader adapter
// (vendor "google", architecture "swiftshader") and compute shaders run. A fresh user data dir per run.
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const CHROMIUM = process.env.GSD_CHROMIUM || '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--no-first-run', '--enable-unsafe-webgpu',
  '--disable-dawn-features=timestamp_quantization',
];

const MIME = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.json': 'application/json',
               '.wasm': 'application/wasm', '.css': 'text/css' };

/** Serve `mounts` ({urlPrefix: dir}) on 127.0.0.1 at a free port; resolves to {url, close}. */
export function serve(mounts) {
  const server = http.createServer((req, res) => {
    const u = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    const prefix = Object.keys(mounts).sort((a, b) => b.length - a.length).find((p) => u.startsWith(p));
    const file = prefix !== undefined ? path.join(mounts[prefix], u.slice(prefix.length)) : null;
    if (!file || !file.startsWith(path.resolve(mounts[prefix])) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
      res.writeHead(404); res.end(); return;
    }
    res.writeHead(200, { 'Content-Type': MIME[path.extname(file)] || 'application/octet-stream', 'Cache-Control': 'no-store' });
    fs.createReadStream(file).pipe(res);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => {
    resolve({ url: `http://127.0.0.1:${server.address().port}`, close: () => server.close() });
  }));
}

/** Chromium with a fresh user data dir; `options`: more context options (e.g. viewport). {ctx, close}. */
export async function launch(options = {}) {
  const { chromium } = await import(path.join(REPO, 'node_modules/playwright-core/index.mjs'));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gsd-chromium-'));
  const ctx = await chromium.launchPersistentContext(dir, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS,
                                                            ...options });
  const close = async () => { await ctx.close(); fs.rmSync(dir, { recursive: true, force: true }); };
  return { ctx, close };
}

/** A new page of `ctx` whose console lines and page errors are pushed to `log`. */
export async function loggedPage(ctx, log) {
  const page = await ctx.newPage();
  page.on('console', (m) => log.push(m.text()));
  page.on('pageerror', (e) => log.push('pageerror: ' + e.message));
  return page;
}

/** The viewer's snapshot(): its pixels written to `file` (RGBA8, row-major), the rest returned. */
export async function saveSnapshot(page, file) {
  const snap = await page.evaluate(() => window.gsdViewer.snapshot());
  fs.writeFileSync(file, Buffer.from(snap.rgba, 'base64'));
  delete snap.rgba;
  return snap;
}

/** Where the viewer's timeline stands: {frame, seq, digest, live, playing, fps, error}. */
export function timelineState(page) {
  return page.evaluate(() => {
    const v = window.gsdViewer, t = v.timeline;
    return { frame: t.frame, seq: v.seq(), digest: v.digest(), live: v.live(), playing: t.playing,
             fps: v.player?.fps, error: v.player?.error ? String(v.player.error.code || v.player.error) : null };
  });
}

/** Move the timeline's range input to frame k, as a user drags it. */
export function scrubTo(page, k) {
  return page.$eval('#scrub', (el, v) => { el.value = String(v); el.dispatchEvent(new Event('input')); }, Number(k));
}

/** Run `body(result)` (result = {log: [...]} plus what `body` adds); its error goes to result.error. Then
 *  write result as JSON to `file`, run `cleanup`, and exit 1 (error and log on stderr) if it failed. */
export async function runRecorded(file, body, cleanup) {
  const result = { log: [] };
  try {
    await body(result);
  } catch (e) {
    result.error = String(e && e.stack || e);
  } finally {
    fs.writeFileSync(file, JSON.stringify(result, null, 1));
    await cleanup();
  }
  if (result.error) { console.error(result.error); console.error(result.log.join('\n')); process.exit(1); }
}

/** `--name value` pairs of the command line as {name: value}. */
export function cliArgs(argv = process.argv.slice(2)) {
  return Object.fromEntries(argv.reduce((a, v, i, all) => (v.startsWith('--') ? [...a, [v.slice(2), all[i + 1]]] : a), []));
}

/** `page`'s console lines and page errors pushed to `lines`, console lines after `label`. */
export function logConsole(page, lines, label = '') {
  page.on('console', (m) => lines.push(`${label}${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => lines.push(`pageerror: ${e.message}`));
}

/** A live viewer test (tests/live/*.mjs): Chromium at `viewport`, then `body({ctx, page, result, step})`
 *  with result = {ok, steps, console} plus `fields` and step(name, extra) timing a checkpoint. Whatever
 *  happens, result.json in `out` gets result (ok once body returned, else its error; ms) and one summary
 *  line goes to stdout: the exit code stays 0, the Python test reads result.json and decides. */
export async function runLive(out, viewport, fields, body) {
  const t00 = Date.now();
  const result = { ok: false, steps: [], console: [], ...fields };
  const step = (name, extra = {}) => { result.steps.push({ name, ms: Date.now() - t00, ...extra }); };
  let browser = null;
  try {
    browser = await launch({ viewport });
    step('launched');
    const page = browser.ctx.pages()[0] || await browser.ctx.newPage();
    logConsole(page, result.console);
    await body({ ctx: browser.ctx, page, result, step });
    result.ok = true;
  } catch (e) {
    result.error = String(e && e.stack || e);
  } finally {
    result.ms = Date.now() - t00;
    fs.writeFileSync(path.join(out, 'result.json'), JSON.stringify(result, null, 1));
    if (browser) await browser.close().catch(() => {});
  }
  console.log(JSON.stringify({ ok: result.ok, error: result.error, ms: result.ms, out }));
}
