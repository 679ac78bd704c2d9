// The viewer's timeline on a 4D stream, in headless Chromium:
//   node tests/browser/timeline.mjs STREAM.gsd OUT.json K1 K2 ...
// Opens the viewer offline (?connect=0), loads STREAM through the file input, lets it play a few frames,
// pauses, then scrubs to each K (the range input, as a user drags it; the list may go back and forth)
// and records {frame, seq, digest, live} after each, plus the header's frameRate, the playback rate,
// and a toggle of loop and speed. OUT.json: {header, played, paused, seeks: [...], loop, speed, hud, log}.
import { launch, loggedPage, runRecorded, scrubTo, serve, timelineState, REPO } from './chromium.mjs';

const [stream, out, ...ks] = process.argv.slice(2);
const srv = await serve({ '/': REPO });
const { ctx, close } = await launch();
await runRecorded(out, async (result) => {
  result.seeks = [];
  const page = await loggedPage(ctx, result.log);
  await page.goto(`${srv.url}/reference_viewer/index.html?connect=0&size=160x120`);
  await page.waitForFunction(() => window.gsdViewer?.ready, null, { timeout: 60000 });
  await page.setInputFiles('#file', stream);
  await page.waitForFunction(() => window.gsdViewer.timeline.frame >= 2, null, { timeout: 30000 });
  const state = () => timelineState(page);
  result.header = await page.evaluate(() => ({ frameRate: window.gsdViewer.player.header.frameRate,
                                               frames: window.gsdViewer.timeline.frames }));
  result.played = await state();
  await page.click('#play');                       // pause, as a user does
  await page.waitForFunction(() => !window.gsdViewer.timeline.playing, null, { timeout: 5000 });
  result.paused = await state();
  await page.waitForTimeout(300);
  result.pausedLater = await state();              // nothing moves while paused
  for (const k of ks) {
    await scrubTo(page, k);
    result.seeks.push({ k: Number(k), ...(await state()) });
  }
  await page.selectOption('#speed', '2');
  await page.check('#loop');
  result.speed = await state();
  result.loopOn = await page.evaluate(() => window.gsdViewer.timeline.loop);
  await page.click('#play');                       // play on, through the end and round again
  const n = result.header.frames;
  await page.waitForFunction((n) => window.gsdViewer.timeline.frame === n - 1, n, { timeout: 30000 });
  await page.waitForFunction(() => { const f = window.gsdViewer.timeline.frame; return f >= 0 && f < 2; }, null,
                             { timeout: 30000 });
  result.looped = await state();
  await page.waitForTimeout(400);
  result.hud = await page.evaluate(() => document.getElementById('hud').innerText);
  result.label = await page.evaluate(() => document.getElementById('tframe').textContent);
}, async () => { await close(); srv.close(); });
