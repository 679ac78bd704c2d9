// Drives the reference viewer's progressive join (SPEC.md 11.9) against a running gsd-serve in headless
// Chromium (WebGPU on SwiftShader) through playwright-core, and writes what it saw for
// tests/test_viewer_progressive.py to check.
//
//   node tests/live/viewer_progressive.mjs --url http://127.0.0.1:PORT --world NAME --budget-world NAME2
//        --budget N [--budget-after M] --out DIR [--size 160x120] [--path raster|tiles]
//
// Page 1 joins NAME with the viewer's defaults (a progressive join, the adapter's detail budget). Its
// WebSocket goes through playwright's routeWebSocket: after the stream header and the first frame the
// server's messages are held until the first frame's picture is taken (DIR/coarse.rgba), then flow
// again; the page refines until its last frame's `detail` says no cube is coarse, and the settled state
// is rendered again (DIR/final.rgba). Then the local camera moves (the viewer sends its eye in a
// `detail` message) and the session must go on. Page 2 joins NAME2 with ?budget=N and runs until the
// frames stop coming (refinement within the budget done); with --budget-after M it then asks for a
// budget of M (setDetailBudget: a `detail` message) and waits for a frame made for it. Page 3 joins
// NAME with no frame_ms and turns its camera (frames are drawn): the frame-time rule lowers the
// budget, and an idle step's frame is made for the new one (result.rule). DIR/result.json: {ok, error, steps, coarse,
// final (snapshot facts), log / log2 (the pages' per-frame logs), hud / hud2, stats / stats2, console}.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { cliArgs, logConsole, runLive, saveSnapshot } from '../browser/chromium.mjs';

const args = cliArgs();
const url = args.url, out = args.out || fs.mkdtempSync(path.join(os.tmpdir(), 'gsd-prog-'));
const size = args.size || '160x120', renderPath = args.path || 'raster';

/** Server -> page messages pass through, except that after `after` binary messages they are queued
 * until release(). */
function gate(after) {
  const g = { held: [], open: true, binaries: 0, heldCount: 0, page: null };
  g.release = () => { g.open = true; for (const m of g.held.splice(0)) g.page.send(m); };
  g.handler = (ws) => {
    g.page = ws;
    const server = ws.connectToServer();
    ws.onMessage((m) => server.send(m));
    server.onMessage((m) => {
      if (!g.open) { g.held.push(m); g.heldCount += 1; return; }
      ws.send(m);
      if (typeof m !== 'string' && ++g.binaries === after) g.open = false;
    });
  };
  return g;
}

const snapshot = (page, name) => saveSnapshot(page, path.join(out, `${name}.rgba`));

await runLive(out, { width: 320, height: 240 }, {}, async ({ ctx, page, result, step }) => {
  const V = (fn, arg) => page.evaluate(fn, arg);

  // ---- page 1: the default join, its first frame held on screen until its picture is taken
  const g = gate(2);                                 // the stream header, then the first frame
  await page.routeWebSocket(/\/ws/, g.handler);
  // frame_ms: no frame-time rule here (SwiftShader's readback frames are slow; a new budget would
  // restart refinement), so the budget is the adapter's default throughout
  await page.goto(`${url}/viewer/index.html?world=${encodeURIComponent(args.world)}&size=${size}&follow=1`
                  + `&path=${renderPath}&frame_ms=100000`);
  await page.waitForFunction(() => window.gsdViewer && window.gsdViewer.ready && window.gsdViewer.frames >= 1
                             && window.gsdViewer.rendered >= 1, null, { timeout: 30000, polling: 20 });
  result.rendererError = await V(() => window.gsdViewer.rendererError);
  if (result.rendererError) throw new Error(`renderer: ${result.rendererError}`);
  result.coarse = await snapshot(page, 'coarse');
  result.coarse.frames = await V(() => window.gsdViewer.frames);
  result.coarse.detail = await V(() => window.gsdViewer.detail());
  result.renderPath = await V(() => window.gsdViewer.renderPath);
  step('coarse', { held: g.held.length });
  g.release();
  result.gateHeld = g.heldCount;

  // refinement: until the last frame's detail has no coarse cube, then until the frames stop
  await page.waitForFunction(() => { const d = window.gsdViewer.detail(); return d && d.coarse === 0 && d.held === window.gsdViewer.live(); },
                             null, { timeout: 60000, polling: 50 });
  step('refined', { seq: await V(() => window.gsdViewer.seq()) });
  let n = -1;
  for (let i = 0; i < 40; i++) {
    const m = await V(() => window.gsdViewer.frames);
    if (m === n) break;
    n = m;
    await page.waitForTimeout(400);
  }
  result.final = await snapshot(page, 'final');
  result.final.detail = await V(() => window.gsdViewer.detail());
  result.hud = await V(() => window.gsdViewer.hud());
  result.hudText = await page.locator('#hud').innerText();
  step('final', { seq: result.final.seq });

  // the eye: a local camera pose away from the world's goes to the server as a `detail` view
  const before = await V(() => window.gsdViewer.stats().details);
  await V(() => { const p = window.gsdViewer.pose(); window.gsdViewer.setPose({ ...p, yaw: p.yaw + 60, position: [p.position[0] + 1, p.position[1], p.position[2]] }); });
  await page.waitForFunction((b) => window.gsdViewer.stats().details > b, before, { timeout: 5000, polling: 20 });
  await page.waitForTimeout(500);
  result.view = { detailsBefore: before, detailsAfter: await V(() => window.gsdViewer.stats().details),
                  sent: await V(() => window.gsdViewer.session.detailSent), pose: await V(() => window.gsdViewer.pose()),
                  state: await V(() => window.gsdViewer.stats().state) };
  result.stats = await V(() => window.gsdViewer.stats());
  result.log = await V(() => window.gsdViewer.log.map(({ t, ...e }) => e));
  step('view');
  await page.close();

  // ---- page 2: a detail budget in the URL
  const page2 = await ctx.newPage();
  logConsole(page2, result.console, 'page2 ');
  await page2.goto(`${url}/viewer/index.html?world=${encodeURIComponent(args['budget-world'])}&size=${size}&follow=1`
                   + `&path=${renderPath}&budget=${args.budget}`);
  await page2.waitForFunction(() => window.gsdViewer && window.gsdViewer.frames >= 1, null, { timeout: 30000, polling: 50 });
  n = -1;
  for (let i = 0; i < 60; i++) {
    await page2.waitForTimeout(500);
    const m = await page2.evaluate(() => window.gsdViewer.frames);
    if (m === n) break;
    n = m;
  }
  result.hud2 = await page2.evaluate(() => window.gsdViewer.hud());
  result.framesAtBudget2 = await page2.evaluate(() => window.gsdViewer.frames);
  // a smaller budget mid-session (a `detail` message with `budget`): frames cut after it keep to it
  if (args['budget-after']) {
    result.setBudget = await page2.evaluate((b) => window.gsdViewer.setDetailBudget(b), Number(args['budget-after']));
    await page2.waitForFunction((b) => { const d = window.gsdViewer.detail(); return d && d.budget === b && d.held <= b; },
                                Number(args['budget-after']), { timeout: 20000, polling: 50 });
    await page2.waitForTimeout(300);
    result.hud2after = await page2.evaluate(() => window.gsdViewer.hud());
  }
  result.stats2 = await page2.evaluate(() => window.gsdViewer.stats());
  result.log2 = await page2.evaluate(() => window.gsdViewer.log.map(({ t, ...e }) => e));
  result.live2 = await page2.evaluate(() => window.gsdViewer.live());
  step('budget');
  await page2.close();

  // ---- page 3: the frame-time rule (SwiftShader's frames are far over 33 ms): a lower budget goes out
  // as a `detail` message, and the next frame (an idle step) is made for it
  const page3 = await ctx.newPage();
  logConsole(page3, result.console, 'page3 ');
  await page3.goto(`${url}/viewer/index.html?world=${encodeURIComponent(args.world)}&size=${size}&follow=1&path=${renderPath}`);
  await page3.waitForFunction(() => window.gsdViewer && window.gsdViewer.frames >= 1, null, { timeout: 30000, polling: 50 });
  // frames are drawn only when something changes: the local camera turns 1 degree every 50 ms
  for (let i = 0; i < 300 && !(await page3.evaluate(() => window.gsdViewer.session.detailSent?.budget)); i++) {
    await page3.evaluate(() => { const p = window.gsdViewer.pose(); window.gsdViewer.setPose({ ...p, yaw: p.yaw + 1 }); });
    await page3.waitForTimeout(50);
  }
  result.rule = { detail: await page3.evaluate(() => window.gsdViewer.detail()),
                  sent: await page3.evaluate(() => window.gsdViewer.session.detailSent) };
  const frames3 = await page3.evaluate(() => window.gsdViewer.frames);
  await page3.keyboard.press('.');
  await page3.waitForFunction((n) => window.gsdViewer.frames > n, frames3, { timeout: 10000, polling: 20 });
  result.rule.after = await page3.evaluate(() => window.gsdViewer.detail());
  result.rule.stats = await page3.evaluate(() => window.gsdViewer.stats());
  result.rule.log = await page3.evaluate(() => window.gsdViewer.log.map(({ t, ...e }) => e));
  step('rule');
});
