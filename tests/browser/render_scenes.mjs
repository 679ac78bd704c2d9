// Renders scenes with the reference viewer's WebGPU renderer in headless Chromium.
//   node tests/browser/render_scenes.mjs JOB.json
// JOB = { dataDir, outDir, width, height, format?, query?: {name: value} (more render_test.html options:
//         path, maxSigma, tileCapacity), scenes: [ { name, raw: {shDegree, count, file} | stream: {file},
//         steps: [ { edit?: file, cameras: [camera...] } ] } ] }
// Writes outDir/<scene>_<step>_<cam>.f32 (RGBA float32, row-major) and outDir/result.json (per camera
// its file, visible count and the renderer's stats after the frame).
import fs from 'node:fs';
import path from 'node:path';
import { REPO, serve, launch } from './chromium.mjs';

const job = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const srv = await serve({ '/data/': job.dataDir, '/': REPO });
const { ctx, close } = await launch();
const result = { scenes: {}, log: [] };
try {
  const page = await ctx.newPage();
  page.on('console', (m) => result.log.push(m.text()));
  page.on('pageerror', (e) => result.log.push('pageerror: ' + e.message));
  const query = new URLSearchParams(Object.entries({ ...(job.format ? { format: job.format } : {}), ...job.query ?? {} }).map(([k, v]) => [k, String(v)]));
  await page.goto(`${srv.url}/reference_viewer/render_test.html?${query}`);
  await page.waitForFunction(() => window.gsdReady === true, null, { timeout: 30000 });
  result.init = await page.evaluate(([w, h]) => window.gsdRender.init(w, h), [job.width, job.height]);
  for (const sc of job.scenes) {
    const out = (result.scenes[sc.name] = { steps: [] });
    const t0 = Date.now();
    if (sc.raw) out.load = await page.evaluate((m) => window.gsdRender.loadRaw(m), { ...sc.raw, url: '/data/' + sc.raw.file });
    else out.load = await page.evaluate((m) => window.gsdRender.openStream(m), { ...sc.stream, url: '/data/' + sc.stream.file });
    for (const [si, step] of sc.steps.entries()) {
      const st = { cameras: [] };
      if (step.edit) st.sync = await page.evaluate((m) => window.gsdRender.editRaw(m), { url: '/data/' + step.edit });
      if (step.frames) st.sync = await page.evaluate((m) => window.gsdRender.pushFrames(m), { url: '/data/' + step.frames });
      for (const [ci, cam] of step.cameras.entries()) {
        const r = await page.evaluate((c) => window.gsdRender.render(c), cam);
        const file = `${sc.name}_${si}_${ci}.f32`;
        fs.writeFileSync(path.join(job.outDir, file), Buffer.from(r.pixels, 'base64'));
        st.cameras.push({ file, visible: r.visible, stats: r.stats });
      }
      out.steps.push(st);
    }
    out.ms = Date.now() - t0;
  }
} catch (e) {
  result.error = String(e && e.stack || e);
} finally {
  fs.writeFileSync(path.join(job.outDir, 'result.json'), JSON.stringify(result, null, 1));
  await close();
  srv.close();
}
if (result.error) { console.error(result.error); console.error(result.log.join('\n')); process.exit(1); }
