// The renderer's palette upload (render/index.mjs, _syncPalette) without a GPU: a stand-in device
// records the buffer writes into a mirror of the GPU buffer, which must equal the store's palette
// floats after every frame's sync (keyframes that set fewer entries than the one before included).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Decoder } from '../decoder/index.mjs';
import { splitStream } from '../app/records.mjs';

globalThis.GPUBufferUsage ??= { MAP_READ: 1, MAP_WRITE: 2, COPY_SRC: 4, COPY_DST: 8, INDEX: 16, VERTEX: 32, UNIFORM: 64, STORAGE: 128, INDIRECT: 256, QUERY_RESOLVE: 512 };
const { Renderer } = await import('../render/index.mjs');

const DIR = join(dirname(fileURLToPath(import.meta.url)), 'data', 'palette');
const { cases } = JSON.parse(readFileSync(join(DIR, 'cases.json'), 'utf8'));

/** A Renderer whose device only creates buffers (zero-filled mirrors) and records writes into them. */
function fakeRenderer() {
  const r = Object.create(Renderer.prototype);
  const mk = ({ size }) => ({ size, mirror: new Uint8Array(size), destroy() { this.destroyed = true; } });
  r.device = {
    createBuffer: mk,
    queue: { writeBuffer: (buf, off, src, srcOff, n) => { buf.mirror.set(new Uint8Array(src, srcOff, n), off); r.written += n; } },
  };
  r.palette = mk({ size: 16 });
  r.paletteBytes = 0; r.paletteGpuHi = 0; r.paletteOn = false; r.written = 0;
  return r;
}

test('the palette buffer equals the store palette after every sync; a sync uploads only what changed', () => {
  for (const name of ['scene_deg3_p4096', 'scene_deg1_wide', 'keyframe_resets_palette', 'digest_entry_cleared']) {
    const c = cases.find((x) => x.name === name), u8 = new Uint8Array(readFileSync(join(DIR, c.file)));
    const { frames } = splitStream(u8), dec = new Decoder(), r = fakeRenderer();
    dec.readHeader(u8);
    const s = dec.store, n3 = 3 * s.restCount;
    for (const [k, f] of frames.entries()) {
      const res = dec.readFrame(f);
      r.written = 0;
      const { full } = s.takeDirty();
      const bytes = r._syncPalette(s, full);
      assert.equal(bytes, r.written, `${name} frame ${k}`);
      assert.equal(r.paletteOn, true);
      const gpu = new Float32Array(r.palette.mirror.buffer);
      assert.deepEqual(gpu, s.paletteData, `${name} frame ${k}: GPU palette`);
      if (!res.keyframe && !res.counts.palette) assert.equal(bytes, 0, `${name} frame ${k}`);
      // runs of the entries set (gaps below MERGE_GAP = 8 entries merged)
      if (!res.keyframe && res.counts.palette) assert.ok(bytes <= 4 * n3 * res.counts.palette * 8, `${name} frame ${k}`);
      // entries past paletteUsed are zero
      assert.ok(s.paletteData.subarray(s.paletteUsed * n3).every((x) => x === 0), `${name} frame ${k}`);
      if (res.keyframe) assert.ok(bytes < s.paletteSize * n3 * 4 || s.paletteUsed === s.paletteSize, `${name} frame ${k}: the keyframe uploads the used entries`);
    }
    dec.dispose();
  }
});

test('a stream of another palette size gets a new (zeroed) buffer; a stream without a palette turns it off', () => {
  const r = fakeRenderer();
  const open = (name) => {
    const c = cases.find((x) => x.name === name), u8 = new Uint8Array(readFileSync(join(DIR, c.file)));
    const dec = new Decoder();
    dec.readHeader(u8);
    dec.readFrame(splitStream(u8).frames[0]);
    r._syncPalette(dec.store, dec.store.takeDirty().full);
    return dec;
  };
  const a = open('scene_deg3_p4096');
  const bufA = r.palette;
  const b = open('scene_deg1_wide');
  assert.ok(bufA.destroyed && r.palette !== bufA);
  assert.deepEqual(new Float32Array(r.palette.mirror.buffer), b.store.paletteData);
  const c = open('pal_in_scalar_stream');
  assert.equal(r.paletteOn, false);
  for (const d of [a, b, c]) d.dispose();
});
