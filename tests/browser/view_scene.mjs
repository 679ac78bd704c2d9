// Opens a `gsd view` page in headless Chromium and reads what the viewer shows.
//   node tests/browser/view_scene.mjs URL OUT_DIR [BAD_FILE]
// URL: the server's root with viewer parameters (e.g. http://127.0.0.1:PORT/?size=160x120); the root
// redirects to the viewer playing the served stream. Waits for the first frame, then writes
// OUT_DIR/snapshot.rgba (RGBA8, row-major) and OUT_DIR/result.json: {snapshot: {width, height, camera,
// pose, live, digest}, hud / hudText (after the stream), badHud / badHudText (after BAD_FILE was picked in
// the file input), log}.
import path from 'node:path';
import { launch, loggedPage, runRecorded, saveSnapshot } from './chromium.mjs';

const [url, outDir, badFile] = process.argv.slice(2);
const { ctx, close } = await launch();
await runRecorded(path.join(outDir, 'result.json'), async (result) => {
  const page = await loggedPage(ctx, result.log);
  await page.goto(url);
  result.page = page.url();
  await page.waitForFunction(() => window.gsdViewer?.ready && window.gsdViewer.frames >= 1
    || /not a GSD|cannot open/.test(window.gsdViewer?.hud().error || ''), null, { timeout: 60000 });
  result.snapshot = await saveSnapshot(page, path.join(outDir, 'snapshot.rgba'));
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
}, close);
