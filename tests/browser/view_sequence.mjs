// Opens a `gsd view` page of a 4D sequence in headless Chromium, goes to frames with the timeline and
// reads what the viewer shows there.
//   node tests/browser/view_sequence.mjs URL OUT_DIR K1 [K2 ...]
// URL: the server's root with viewer parameters (e.g. http://127.0.0.1:PORT/?size=160x120); the root
// redirects to the viewer playing the served stream. Waits until the stream has played past its first
// frame, pauses it with the play button as a user does (unless it already played to its end), then
// scrubs to each K in turn (the range input, as a user drags it) and records the state there; after the
// last K it waits a moment (nothing may move while paused) and takes a snapshot. Writes
// OUT_DIR/snapshot.rgba (RGBA8, row-major) and OUT_DIR/result.json: {header: {frameRate, frames},
// played, paused, seeks: [{k, frame, seq, digest, live, playing, error}], still, snapshot: {width, height,
// camera, pose, seq, digest, live}, label, hudText, log}.
import fs from 'node:fs';
import path from 'node:path';
import { launch } from './chromium.mjs';

const [url, outDir, ...ks] = process.argv.slice(2);
const { ctx, close } = await launch();
const result = { log: [], seeks: [] };
try {
  const page = await ctx.newPage();
  page.on('console', (m) => result.log.push(m.text()));
  page.on('pageerror', (e) => result.log.push('pageerror: ' + e.message));
  await page.goto(url);
  result.page = page.url();
  await page.waitForFunction(() => window.gsdViewer?.ready && window.gsdViewer.timeline.frame >= 1
    || /not a GSD|cannot open/.test(window.gsdViewer?.hud().error || ''), null, { timeout: 60000 });
  const state = () => page.evaluate(() => {
    const v = window.gsdViewer, t = v.timeline;
    return { frame: t.frame, seq: v.seq(), digest: v.digest(), live: v.live(), playing: t.playing,
             error: v.player?.error ? String(v.player.error.code || v.player.error) : null };
  });
  result.header = await page.evaluate(() => ({ frameRate: window.gsdViewer.player.header.frameRate,
                                               frames: window.gsdViewer.timeline.frames }));
  result.played = await state();
  if (result.played.playing) {                     // pause, as a user does
    await page.click('#play');
    await page.waitForFunction(() => !window.gsdViewer.timeline.playing, null, { timeout: 5000 });
  }
  result.paused = await state();
  for (const k of ks) {
    await page.$eval('#scrub', (el, v) => { el.value = String(v); el.dispatchEvent(new Event('input')); }, Number(k));
    result.seeks.push({ k: Number(k), ...(await state()) });
  }
  await page.waitForTimeout(400);                  // a few ticks and a HUD refresh
  result.still = await state();
  const snap = await page.evaluate(() => window.gsdViewer.snapshot());
  fs.writeFileSync(path.join(outDir, 'snapshot.rgba'), Buffer.from(snap.rgba, 'base64'));
  delete snap.rgba;
  result.snapshot = snap;
  result.label = await page.evaluate(() => document.getElementById('tframe').textContent);
  result.hudText = await page.evaluate(() => document.getElementById('hud').innerText);
} catch (e) {
  result.error = String(e && e.stack || e);
} finally {
  fs.writeFileSync(path.join(outDir, 'result.json'), JSON.stringify(result, null, 1));
  await close();
}
if (result.error) { console.error(result.error); console.error(result.log.join('\n')); process.exit(1); }
