// Drives the reference viewer (reference_viewer/index.html) against a running gsd-serve in headless
// Chromium (WebGPU on SwiftShader when there is no GPU) through playwright-core, with scripted key
// presses, and writes what it saw for tests/test_viewer_live.py to check.
//
//   node tests/live/viewer_live.mjs --url http://127.0.0.1:PORT --world NAME --out DIR [--size 320x240]
//        [--offline FILE.gsd]   (then also plays FILE through the file input: offline playback)
//        [--path raster|tiles]  (the renderer's path, ?path=; default raster)
//        [--progressive 0|1]    (?progressive=: 0, an ordinary join, by default: the test compares digests
//                                with a Python client's at the same seq from the first frame on)
//
// DIR/result.json: {ok, error, steps: [...], log (the page's per-frame log), sessions (the server's
// /sessions at checkpoints), snapshots: {before, after} (camera, seq, digest; pixels in DIR/*.rgba as
// RGBA8), console}. Exit 0 also when an assertion-level expectation fails: the Python test decides.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cliArgs, runLive, saveSnapshot } from '../browser/chromium.mjs';

const args = cliArgs();
const url = args.url, world = args.world || 'live', out = args.out || fs.mkdtempSync(path.join(os.tmpdir(), 'gsd-live-'));
const size = args.size || '320x240';
const renderPath = args.path || 'raster', progressive = args.progressive || '0';

async function sessions() {
  const r = await fetch(`${url}/sessions`);
  return r.json();
}

await runLive(out, { width: 480, height: 360 }, { sessions: {}, snapshots: {} }, async ({ page, result, step }) => {
  const V = (fn, arg) => page.evaluate(fn, arg);
  const waitSeq = async (seq, timeout = 20000) => {
    await page.waitForFunction((s) => window.gsdViewer.seq() >= s, seq, { timeout, polling: 20 });
  };

  await page.goto(`${url}/`);                      // / redirects to /viewer/index.html
  result.redirected = page.url();
  await page.goto(`${url}/viewer/index.html?world=${encodeURIComponent(world)}&size=${size}&follow=1`
                  + `&path=${renderPath}&progressive=${progressive}`);
  await page.waitForFunction(() => window.gsdViewer && window.gsdViewer.ready && window.gsdViewer.frames >= 1,
                             null, { timeout: 30000, polling: 50 });
  result.rendererError = await V(() => window.gsdViewer.rendererError);
  if (result.rendererError) throw new Error(`renderer: ${result.rendererError}`);
  await page.waitForFunction(() => window.gsdViewer.rendered >= 1, null, { timeout: 30000, polling: 50 });
  result.renderPath = await V(() => window.gsdViewer.renderPath);
  let seq = await V(() => window.gsdViewer.seq());
  step('connected', { seq, live: await V(() => window.gsdViewer.live()) });

  // Local keys move only the local camera: no action is sent.
  const sent0 = (await V(() => window.gsdViewer.stats())).actionsSent;
  for (const k of ['w', 'a', 's', 'd', 'r', 'f']) await page.keyboard.press(k);
  await page.waitForTimeout(150);
  result.localKeys = { actionsSent: (await V(() => window.gsdViewer.stats())).actionsSent - sent0,
                       seq: (await V(() => window.gsdViewer.seq())) - seq, follow: await V(() => window.gsdViewer.follow) };
  await page.keyboard.press('c');                 // follow the world camera again
  result.localKeys.followAfterC = await V(() => window.gsdViewer.follow);
  result.localKeys.poseMoved = await V(() => window.gsdViewer.pose());

  // World keys: turn left and back (J, L), then walk 12 x 0.25 m toward the spawn house door.
  const walk = ['j', 'l', ...Array(6).fill('ArrowUp'), ...Array(6).fill('i')];
  for (const k of walk) {
    await page.keyboard.press(k);
    seq += 1;
    await waitSeq(seq);
  }
  step('walked', { seq, camera: await V(() => window.gsdViewer.worldCamera()) });
  await page.waitForTimeout(100);
  result.snapshots.before = await saveSnapshot(page, path.join(out, 'before.rgba'));
  await page.screenshot({ path: path.join(out, 'before.png') }).catch(() => {});
  step('before');

  // Interact opens the door; it swings over 12 world steps: idle ('.') steps let them pass.
  await page.keyboard.press('e');
  seq += 1;
  await waitSeq(seq);
  for (let i = 0; i < 14; i++) {
    await page.keyboard.press('.');
    seq += 1;
    await waitSeq(seq);
  }
  step('door', { seq });
  result.snapshots.after = await saveSnapshot(page, path.join(out, 'after.rgba'));
  await page.screenshot({ path: path.join(out, 'after.png') }).catch(() => {});
  result.sessions.beforeCorruption = await sessions();
  result.statsBeforeCorruption = await V(() => window.gsdViewer.stats());
  step('after');

  // A damaged frame: the viewer must reject it (BAD_CHECKSUM), send one resync, and recover on the keyframe.
  await V(() => window.gsdViewer.corruptNext(1));
  await page.keyboard.press('.');
  seq += 1;
  await waitSeq(seq);
  for (let i = 0; i < 2; i++) {
    await page.keyboard.press('Space');           // jump, then idle
    seq += 1;
    await waitSeq(seq);
  }
  await page.waitForTimeout(200);
  step('recovered', { seq });
  result.sessions.end = await sessions();
  result.stats = await V(() => window.gsdViewer.stats());
  result.log = await V(() => window.gsdViewer.log.map(({ t, ...e }) => e));
  result.final = { seq: await V(() => window.gsdViewer.seq()), digest: await V(() => window.gsdViewer.digest()),
                   live: await V(() => window.gsdViewer.live()), hud: await V(() => window.gsdViewer.hud()) };
  // Offline playback: the file input (as a dropped file would) plays a .gsd stream at a fixed rate.
  if (args.offline) {
    const renderedBefore = await V(() => window.gsdViewer.rendered);
    await page.setInputFiles('#file', args.offline);
    await page.waitForFunction(() => window.gsdViewer.mode() === 'offline' && window.gsdViewer.player
                                 && (window.gsdViewer.player.done || window.gsdViewer.player.error), null, { timeout: 20000, polling: 50 });
    // playback can finish while the last frame is still being drawn (software WebGPU is slow): wait for a draw
    await page.waitForFunction((before) => window.gsdViewer.player.error || window.gsdViewer.rendered > before,
                               renderedBefore, { timeout: 20000, polling: 50 });
    result.offline = await V(() => ({ frames: window.gsdViewer.player.frames.length, error: String(window.gsdViewer.player.error || ''),
                                      log: window.gsdViewer.player.log, live: window.gsdViewer.live(),
                                      rendered: window.gsdViewer.rendered }));
    result.offline.renderedBefore = renderedBefore;
    step('offline');
  }
});
