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

export async function launch() {
  const { chromium } = await import(path.join(REPO, 'node_modules/playwright-core/index.mjs'));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gsd-chromium-'));
  const ctx = await chromium.launchPersistentContext(dir, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  const close = async () => { await ctx.close(); fs.rmSync(dir, { recursive: true, force: true }); };
  return { ctx, close };
}
