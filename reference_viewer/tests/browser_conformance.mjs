// Runs every conformance vector through the decoder inside Chromium (playwright-core, headless):
//   node reference_viewer/tests/browser_conformance.mjs [CHROMIUM_PATH]
// Serves the repository over a local HTTP server; prints {pass, fail, n} as JSON; exit 1 on any failure.
import { fileURLToPath } from 'node:url';
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';

const { chromium } = await import(new URL('../../node_modules/playwright-core/index.mjs', import.meta.url));
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const types = { '.mjs': 'text/javascript', '.js': 'text/javascript', '.html': 'text/html', '.gsd': 'application/octet-stream', '.json': 'application/json' };
const srv = http.createServer((req, res) => {
  const p = path.join(root, decodeURIComponent(new URL(req.url, 'http://x').pathname));
  if (!p.startsWith(root) || !fs.existsSync(p)) { res.writeHead(404); res.end(); return; }
  res.writeHead(200, { 'content-type': types[path.extname(p)] || 'text/plain' }); res.end(fs.readFileSync(p));
}).listen(0);
const port = srv.address().port;
const browser = await chromium.launch({ executablePath: process.argv[2] || '/usr/bin/chromium', args: ['--no-sandbox'] });
const page = await browser.newPage();

page.on('pageerror', (e) => console.log('pageerror:', e.message));
await page.goto(`http://127.0.0.1:${port}/conformance/vectors/manifest.json`);   // any same-origin page
const out = await page.evaluate(async () => {
  const m = await import('/reference_viewer/decoder/index.mjs');
  const manifest = (await (await fetch('/conformance/vectors/manifest.json')).json()).vectors;
  let pass = 0, fail = [];
  for (const v of manifest) {
    const u8 = new Uint8Array(await (await fetch('/conformance/vectors/' + v.file)).arrayBuffer());
    const e = v.expected;
    const want = e.result === 'invalid' && e.frame === -1 ? [`header error ${e.error}`]
      : ['header ok', ...e.digests.map((d, k) => `frame ${k} ok ${d}`), ...(e.result === 'invalid' ? [`frame ${e.frame} error ${e.error}`] : [])];
    const got = m.decodeStreamLines(u8, { limits: v.limits || {} });
    if (JSON.stringify(got) === JSON.stringify(want)) pass++; else fail.push(v.id);
  }
  return { pass, fail, n: manifest.length };
});
console.log(JSON.stringify(out));
process.exitCode = out.fail.length === 0 && out.pass === out.n ? 0 : 1;
await browser.close(); srv.close();
