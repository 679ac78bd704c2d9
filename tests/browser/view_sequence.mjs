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
// camera, pose, seq, digest, live}, label, hudText, arrival: {keyframe, dirty} (the store's dirty slots
// right after one more frame is applied), log}.
import path from 'node:path';
import { launch, loggedPage, runRecorded, saveSnapshot, scrubTo, timelineState } from './chromium.mjs';

const [url, outDir, ...ks] = process.argv.slice(2);
const { ctx, close } = await launch();
await runRecorded(path.join(outDir, 'result.json'), async (result) => {
  result.seeks = [];
  const page = await loggedPage(ctx, result.log);
  await page.goto(url);
  result.page = page.url();
  await page.waitForFunction(() => window.gsdViewer?.ready && window.gsdViewer.timeline.frame >= 1
    || /not a GSD|cannot open/.test(window.gsdViewer?.hud().error || ''), null, { timeout: 60000 });
  result.header = await page.evaluate(() => ({ frameRate: window.gsdViewer.player.header.frameRate,
                                               frames: window.gsdViewer.timeline.frames }));
  result.played = await timelineState(page);
  if (result.played.playing) {                     // pause, as a user does
    await page.click('#play');
    await page.waitForFunction(() => !window.gsdViewer.timeline.playing, null, { timeout: 5000 });
  }
  result.paused = await timelineState(page);
  for (const k of ks) {
    await scrubTo(page, k);
    result.seeks.push({ k: Number(k), ...(await timelineState(page)) });
  }
  await page.waitForTimeout(400);                  // a few ticks and a HUD refresh
  result.still = await timelineState(page);
  result.snapshot = await saveSnapshot(page, path.join(outDir, 'snapshot.rgba'));
  result.label = await page.evaluate(() => document.getElementById('tframe').textContent);
  result.hudText = await page.evaluate(() => document.getElementById('hud').innerText);
  // one more frame applied in a single task, so no draw comes between: the viewer uploads a frame's
  // changes as it is applied, which leaves the store nothing dirty
  result.arrival = await page.evaluate(() => {
    const p = window.gsdViewer.player;
    if (!p.step()) return null;
    return { keyframe: p.log.at(-1).keyframe, dirty: p.store.dirtyList.length };
  });
}, close);
