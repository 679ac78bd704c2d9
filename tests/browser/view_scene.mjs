// Opens a `gsd view` page in headless Chromium and reads what the viewer shows.
//   node tests/browser/view_scene.mjs URL OUT_DIR [BAD_FILE]
// URL: the server's root with viewer parameters (e.g. http://127.0.0.1:PORT/?size=160x120); the root
// redirects to the viewer playing the served stream. Waits for the first frame, then writes
// OUT_DIR/snapshot.rgba (RGBA8, row-major) and OUT_DIR/result.json: {snapshot: {width, height, camera,
// pose, live, digest}, hud / hudText (after the stream), badHud / badHudText (after BAD_FILE was picked in
// the file input), log}.
import fs from 'node:fs';
import path from 'node:path';
import { launch } from './chromium.mjs';

const [url, outDir, badFile] = process.argv.slice(2);
const { ctx, close } = await launch();
const result = { log: [] };
try {
  const page = await ctx.newPage();
  page.on('console', (m) => result.log.push(m.text()));
  page.on('pageerror', (e) => result.log.push('pageerror: ' + e.message));
  await page.goto(url);
  result.page = page.url();
  await page.waitForFunction(() => window.gsdViewer?.ready && window.gsdViewer.frames >= 1
    || /not a GSD|cannot open/.test(window.gsdViewer?.hud().error || ''), null, { timeout: 60000 });
  const snap = await page.evaluate(() => window.gsdViewer.snapshot());
  fs.writeFileSync(path.join(outDir, 'snapshot.rgba'), Buffer.from(snap.rgba, 'base64'));
  delete snap.rgba;
  result.snapshot = snap;
  await page.waitForFunction(() => !window.gsdViewer.player?.playing, null, { timeout: 10000 });
  result.hud = await page.evaluate(() => window.gsdViewer.hud());
  result.hudText = await page.evaluate(() => document.getElementById('hud').innerText);
  if (badFile) {                     // through the file input, as a user picks one
    await page.setInputFiles('#file', badFile);
    await page.waitForFunction(() => window.gsdViewer.hud().error, null, { timeout: 10000 });
    await page.waitForTimeout(400);  // one HUD refresh (every 250 ms)
    result.badHud = await page.evaluate(() => window.gsdViewer.hud());
    result.badHudText = await page.evaluate(() => document.getElementById('hud').innerText);
  }
} catch (e) {
  result.error = String(e && e.stack || e);
} finally {
  fs.writeFileSync(path.join(outDir, 'result.json'), JSON.stringify(result, null, 1));
  await close();
}
if (result.error) { console.error(result.error); console.error(result.log.join('\n')); process.exit(1); }
