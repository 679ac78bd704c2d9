/**
 * GSD reference viewer: WebGPU renderer of a SceneStore (the decoder's slot array), SPEC.md Appendix B.
 *
 * API
 *   const r = await Renderer.create(canvas, { width, height });   // canvas may be null (offscreen)
 *       options: width, height (render size; default canvas size), gpu (default navigator.gpu),
 *                device (an existing GPUDevice), format ('rgba16float' (default) | 'rgba32float',
 *                the latter when the adapter can blend it, 'float32-blendable';
 *                'rgba8unorm': 8-bit premultiplied, blended by the hardware like most web splat renderers),
 *                varyings ('conic' (default) | 'uv', see RASTER_UV_WGSL), timing (GPU timestamps
 *                when the adapter has 'timestamp-query'; default true),
 *                path ('raster' (default): instanced quads blended by the fixed-function pipeline;
 *                'tiles': the compute tile rasterizer of tiles.mjs; 'auto': 'raster' until the first
 *                frame with a scene, which times both (measurePaths) and keeps the faster),
 *                maxSigma (the tile path's footprint cap, default 3; Infinity: the opacity bound only,
 *                the reference's footprint), tileCapacity (the tile path's first entry capacity)
 *   r.sync(store)        upload what changed in the store since the last sync: coalesced runs of
 *                        store.takeDirty().slots through queue.writeBuffer (past SCATTER_MIN_RUNS runs,
 *                        the dirty rows packed into one upload that a compute pass scatters to their
 *                        slots); a full upload when takeDirty()
 *                        says full, when store.generation changed, or when capacity/stride grew. With an
 *                        SH palette (store.paletteSize > 0, SPEC 5.9) also the palette: the entries of
 *                        store.takePaletteDirty(), or on a full upload the entries that are not zero or
 *                        were not zero on the GPU (store.paletteUsed and what was uploaded before); the
 *                        shader resolves each slot's index there, so an entry that changes changes every
 *                        Gaussian naming it without a write to their slots.
 *                        Returns { full, runs, bytes, paletteBytes, scattered }. Call it when the store
 *                        changed (the viewer does on each applied frame), not only before render(): a 5k
 *                        delta of a 1M scene reads 5k scattered rows (1.5-6 ms of CPU on the H100 hosts),
 *                        which then falls between frames instead of into one. Safe with a frame in flight
 *                        (queue order: that frame draws the store as it was).
 *   r.render(camera)     draw slots [0, store.highWater) into the linear float target and, with a canvas,
 *                        present it (clipped to [0, 1]). camera = { viewMatrix, fx, fy, cx, cy, width, height }
 *                        with viewMatrix the world-to-camera 4x4 [R | t; 0 0 0 1] in OpenCV axes (+x right,
 *                        +y down, +z forward), ROW-MAJOR: 16 numbers, viewMatrix[4 * row + col] (or an array
 *                        of 4 rows). width/height default to the renderer's size; another size resizes.
 *   await r.readPixels() -> Float32Array(width * height * 4), RGBA of the last linear render, row 0 at the
 *                        top, not clipped (rgb = composited colour, a = 1 - final transmittance). On the
 *                        tile path a frame whose entries overflowed the buffers is drawn again first.
 *   r.stats              { visible, frames, sortMs, projectMs, binMs, rasterMs, gpuFrameMs } (GPU timestamps
 *                        of the last measured frame, when available; binMs: the tile path's binning;
 *                        Chromium quantizes them to 100 us unless started with
 *                        --enable-dawn-features=allow_unsafe_apis or developer features), upload counters
 *                        { uploads, fullUploads, uploadRuns, uploadBytes }, path (the one drawing),
 *                        pathChoice (measurePaths' result), and after a tile path readPixels its entry
 *                        counters { tileEntries, tileCapacity, tileGrows, tileOverflows }.
 *   r.setPath(path)      'raster' or 'tiles' from the next frame on.
 *   await r.measurePaths(camera, frames) -> { raster, tiles, path }: ms per frame of each path on this
 *                        scene and camera (timeFrames); keeps the faster when the option was 'auto'.
 *   await r.timeFrames(camera, n, { sortOnly }) -> mean ms per frame (or per sort) over n frames, measured
 *                        on the CPU around queue.onSubmittedWorkDone (works without timestamp queries).
 *   await r.readVisibleCount() -> number of splats that passed culling in the last render.
 *   r.destroy()
 *
 * Pipeline per frame: compute "project" (one thread per slot: cull at z < 0.01 and alpha < 1/255, EWA
 * covariance with the 1.3 half-fov clamp and +0.3 px^2, SH up to degree 3 at the view direction camera
 * centre -> mean, colour max(SH + 0.5, 0), culling by the pixel box of the ellipse D^T S^-1 D <= 2 ln(255 alpha)
 * and an oriented quad circumscribing that ellipse (outside it every a < 1/255, so same image), depth
 * key); GPU radix sort of (depth bits, slot) over all slots (culled ones sort last); an indirect instanced
 * draw of one quad per visible splat in increasing depth, blended front to back ("under" operator) into
 * the float target cleared to black; a present pass to the canvas. The one deviation from Appendix B:
 * there is no early stop at T < 1e-4, so a pixel keeps adding contributions after its transmittance
 * falls below 1e-4; together they weigh less than 1e-4 (their sum of a*T is < T_stop), i.e. at most
 * 1e-4 * the brightest colour behind, invisible at 8 bits.
 * Path 'tiles' (tiles.mjs): the same projection, bounded at maxSigma, with each splat's range of 16x16
 * tiles; the same depth sort; then (tile, splat) entries in depth order, a stable sort by tile, per-tile
 * ranges and one compute workgroup per tile compositing front to back with Appendix B's early stop,
 * writing the target (a storage texture) once per pixel. Its deviation is the cap: contributions beyond
 * maxSigma standard deviations are dropped (the image test measures what that costs).
 */
import { PROJECT_WGSL, RASTER_WGSL, RASTER_UV_WGSL, PRESENT_WGSL, projectWGSL, DEPTH_KEY_PASSES } from './shaders.mjs';
import { RadixSort } from './sort.mjs';
import { TilePath } from './tiles.mjs';

const U = globalThis.GPUBufferUsage;
const MERGE_GAP = 8; // dirty runs closer than this many slots are uploaded as one write
// More runs than this go up as one packed upload of the dirty rows and their slots, which a compute
// pass scatters into the slot buffer: a writeBuffer per run costs a few microseconds of CPU each, and
// a 5,000-Gaussian delta over a 1M scene is ~5,000 runs (an H100 frame went from 6 to 28 ms).
const SCATTER_MIN_RUNS = 64;
const SCATTER_WGSL = /* wgsl */`
struct P { count: u32, stride: u32, width: u32, pad: u32 };
@group(0) @binding(0) var<storage, read> rows: array<f32>;
@group(0) @binding(1) var<storage, read> slots: array<u32>;
@group(0) @binding(2) var<storage, read_write> splats: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let t = g.x + g.y * p.width;           // one float of one dirty row
  if (t >= p.count * p.stride) { return; }
  let row = t / p.stride;
  splats[slots[row] * p.stride + t % p.stride] = rows[t];
}`;

export function rowMajor16(m) {
  const flat = Array.isArray(m?.[0]) || ArrayBuffer.isView(m?.[0]) ? m.flat() : Array.from(m);
  if (flat.length !== 16) throw new Error('viewMatrix must have 16 entries');
  return flat.map(Number);
}

export class Renderer {
  static async create(canvas, opts = {}) {
    const gpu = opts.gpu ?? globalThis.navigator?.gpu;
    let device = opts.device;
    let adapter = null;
    if (!device) {
      if (!gpu) throw new Error('WebGPU is not available (navigator.gpu missing)');
      adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
      if (!adapter) throw new Error('no WebGPU adapter');
      const features = [];
      for (const f of ['float32-blendable', 'timestamp-query']) if (adapter.features.has(f)) features.push(f);
      const L = adapter.limits;
      device = await adapter.requestDevice({
        requiredFeatures: features,
        requiredLimits: {
          maxStorageBufferBindingSize: L.maxStorageBufferBindingSize,
          maxBufferSize: L.maxBufferSize,
        },
      });
    }
    const r = new Renderer(canvas, device, gpu, opts);
    r.adapter = adapter;  // keep the adapter (and its instance) alive as long as the renderer
    return r;
  }

  constructor(canvas, device, gpu, opts) {
    this.device = device;
    this.canvas = canvas;
    this.errors = [];
    device.addEventListener?.('uncapturederror', (e) => { this.errors.push(e.error.message); console.error('WebGPU error: ' + e.error.message); });
    device.lost?.then((info) => { this.errors.push('device lost: ' + info.message); console.error('WebGPU device lost: ' + info.message); });
    this.width = opts.width ?? canvas?.width ?? 256;
    this.height = opts.height ?? canvas?.height ?? 256;
    // rgba16float by default: blending rgba32float ran 5.5x slower on an H200 (RENDER_BENCH.md)
    this.format = opts.format ?? 'rgba16float';
    if (this.format === 'rgba32float' && !device.features.has('float32-blendable')) this.format = 'rgba16float';
    if (!['rgba32float', 'rgba16float', 'rgba8unorm'].includes(this.format)) throw new Error('unsupported format ' + this.format);
    this.timing = (opts.timing ?? true) && device.features.has('timestamp-query');
    this.pathOption = opts.path ?? 'raster';
    if (!['raster', 'tiles', 'auto'].includes(this.pathOption)) throw new Error('unknown path ' + this.pathOption);
    this.path = this.pathOption === 'tiles' ? 'tiles' : 'raster';   // 'auto' draws with 'raster' until measured
    this.tileOpts = { maxSigma: opts.maxSigma, tileCapacity: opts.tileCapacity };
    this.tiles = null;
    this.stats = { visible: 0, frames: 0, sortMs: null, projectMs: null, rasterMs: null, binMs: null, gpuFrameMs: null,
                   uploads: 0, fullUploads: 0, uploadRuns: 0, uploadBytes: 0, path: this.path, pathChoice: null };
    if (canvas) {
      this.context = canvas.getContext('webgpu');
      this.canvasFormat = gpu?.getPreferredCanvasFormat?.() ?? 'bgra8unorm';
      this.context.configure({ device, format: this.canvasFormat, alphaMode: 'opaque' });
    }
    this.sorter = new RadixSort(device);
    this.params = device.createBuffer({ size: 144, usage: U.UNIFORM | U.COPY_DST });
    // the SH palette's floats (a stand-in of 16 bytes while the scene has none)
    this.palette = device.createBuffer({ size: 16, usage: U.STORAGE | U.COPY_DST, label: 'palette' });
    this.paletteBytes = 0;   // the palette buffer's size for the current stream's P and K
    this.paletteGpuHi = 0;   // entries at or past it are zero in the buffer
    this.paletteOn = false;
    this.viewport = device.createBuffer({ size: 16, usage: U.UNIFORM | U.COPY_DST });
    this.drawArgs = device.createBuffer({ size: 16, usage: U.INDIRECT | U.STORAGE | U.COPY_DST | U.COPY_SRC });
    this.countRead = device.createBuffer({ size: 4, usage: U.MAP_READ | U.COPY_DST });

    // made with the others, not at the first scattered delta, whose frame would wait for its compile
    const scatterModule = device.createShaderModule({ code: SCATTER_WGSL, label: 'scatter' });
    this.scatterPipeline = device.createComputePipeline({ layout: 'auto', compute: { module: scatterModule, entryPoint: 'main' } });
    this.scatterParams = device.createBuffer({ size: 16, usage: U.UNIFORM | U.COPY_DST, label: 'scatter params' });
    const projModule = device.createShaderModule({ code: PROJECT_WGSL, label: 'project' });
    this.projectPipeline = device.createComputePipeline({ layout: 'auto', compute: { module: projModule, entryPoint: 'main' } });
    this.varyings = opts.varyings ?? 'conic';
    const rasterModule = device.createShaderModule({ code: this.varyings === 'uv' ? RASTER_UV_WGSL : RASTER_WGSL, label: 'raster' });
    const blend = { srcFactor: 'one-minus-dst-alpha', dstFactor: 'one', operation: 'add' };
    this.rasterPipeline = device.createRenderPipeline({
      layout: 'auto',
      vertex: { module: rasterModule, entryPoint: 'vs' },
      fragment: { module: rasterModule, entryPoint: 'fs', targets: [{ format: this.format, blend: { color: blend, alpha: blend } }] },
      primitive: { topology: 'triangle-strip', cullMode: 'none' },
    });
    if (canvas) {
      const pm = device.createShaderModule({ code: PRESENT_WGSL, label: 'present' });
      this.presentPipeline = device.createRenderPipeline({
        layout: 'auto',
        vertex: { module: pm, entryPoint: 'vs' },
        fragment: { module: pm, entryPoint: 'fs', targets: [{ format: this.canvasFormat }] },
        primitive: { topology: 'triangle-list' },
      });
    }
    if (this.timing) {
      this.querySet = device.createQuerySet({ type: 'timestamp', count: 8 });
      this.queryResolve = device.createBuffer({ size: 64, usage: U.QUERY_RESOLVE | U.COPY_SRC });
      this.queryRead = device.createBuffer({ size: 64, usage: U.MAP_READ | U.COPY_DST });
      this.queryBusy = false;
    }
    this.capacity = 0;
    this.stride = 0;
    this.highWater = 0;
    this.generation = null;
    this._allocTarget(this.width, this.height);
    if (this.path === 'tiles') this._ensureTiles();
  }

  /** The tile path's pipelines and buffers, made on first use (see tiles.mjs). */
  _ensureTiles() {
    if (this.tiles) return;
    const d = this.device;
    this.tiles = new TilePath(d, this.format, this.tileOpts);
    const m = d.createShaderModule({ code: projectWGSL(true), label: 'project (tiles)' });
    this.projectTilesPipeline = d.createComputePipeline({ layout: 'auto', compute: { module: m, entryPoint: 'main' } });
    if (this.splats) this._bindProject();
  }

  _allocTarget(w, h) {
    this.target?.destroy();
    this.width = w;
    this.height = h;
    this.target = this.device.createTexture({
      size: [w, h], format: this.format,
      usage: GPUTextureUsage.RENDER_ATTACHMENT | GPUTextureUsage.COPY_SRC | GPUTextureUsage.TEXTURE_BINDING
        | GPUTextureUsage.STORAGE_BINDING,   // the tile path writes it from a compute shader
    });
    this.targetView = this.target.createView();
    this.device.queue.writeBuffer(this.viewport, 0, new Float32Array([w, h, 0, 0]));
    this.presentGroup = null;
  }

  _allocScene(capacity, stride) {
    const d = this.device;
    for (const b of [this.splats, this.proj]) b?.destroy();
    const cap = Math.max(capacity, 1);
    this.splats = d.createBuffer({ size: cap * stride * 4, usage: U.STORAGE | U.COPY_DST, label: 'splats' });
    this.proj = d.createBuffer({ size: cap * 64, usage: U.STORAGE, label: 'projected' });
    this.sorter.ensure(cap);
    this.capacity = capacity;
    this.stride = stride;
    this._bindProject();
    this.rasterGroup = d.createBindGroup({
      layout: this.rasterPipeline.getBindGroupLayout(0),
      entries: [this.proj, this.sorter.valsA, this.viewport].map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
  }

  _bindProject() {
    const bufs = [this.params, this.splats, this.proj, ...this.sorter.input(DEPTH_KEY_PASSES), this.drawArgs, this.palette];
    this.projectGroup = this.device.createBindGroup({
      layout: this.projectPipeline.getBindGroupLayout(0),
      entries: bufs.map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
    if (this.tiles) {
      this.tiles.ensure(this.capacity, this.proj, this.sorter.valsA);
      this.projectTilesGroup = this.device.createBindGroup({
        layout: this.projectTilesPipeline.getBindGroupLayout(0),
        entries: [...bufs, this.tiles.rects].map((buffer, binding) => ({ binding, resource: { buffer } })),
      });
    }
  }

  /**
   * Uploads the palette entries set since the last sync; `all`: every entry that is not zero in
   * the store or may not be zero in the buffer. A new buffer (a stream of another palette size) is
   * zero-initialized by WebGPU.
   */
  _syncPalette(store, all) {
    const P = store.paletteSize || 0;
    this.paletteOn = P > 0;
    if (!P) return 0;
    const n3 = 3 * store.restCount, size = P * n3 * 4, q = this.device.queue;
    if (size !== this.paletteBytes) {
      this.palette.destroy();
      this.palette = this.device.createBuffer({ size, usage: U.STORAGE | U.COPY_DST, label: 'palette' });
      this.paletteBytes = size;
      this.paletteGpuHi = 0;
      if (this.splats) this._bindProject();
      all = true;
    }
    const dirty = store.takePaletteDirty(), pd = store.paletteData, e4 = n3 * 4;
    let bytes = 0;
    const write = (e0, e1) => {   // entries [e0, e1)
      q.writeBuffer(this.palette, e0 * e4, pd.buffer, pd.byteOffset + e0 * e4, (e1 - e0) * e4);
      bytes += (e1 - e0) * e4;
    };
    if (all) {
      const used = Math.min(store.paletteUsed ?? P, P), hi = Math.max(used, this.paletteGpuHi);
      if (hi > 0) write(0, hi);
      this.paletteGpuHi = used;
      return bytes;
    }
    for (let i = 0; i < dirty.length;) {   // runs of entries, closer than MERGE_GAP merged
      const e0 = dirty[i];
      let e1 = e0 + 1;
      for (i++; i < dirty.length && dirty[i] < e1 + MERGE_GAP; i++) e1 = dirty[i] + 1;
      write(e0, e1);
    }
    if (dirty.length && dirty[dirty.length - 1] + 1 > this.paletteGpuHi) this.paletteGpuHi = dirty[dirty.length - 1] + 1;
    return bytes;
  }

  /** Upload the store's changes since the last sync (see the module comment). */
  sync(store) {
    const { stride, capacity, data } = store;
    const q = this.device.queue;
    let full = false;
    if (capacity > this.capacity || stride !== this.stride || !this.splats) {
      this._allocScene(Math.max(capacity, Math.ceil(this.capacity * 1.25)) , stride);
      full = true;
    }
    if (store.generation !== this.generation) full = true;
    const dirty = store.takeDirty();
    if (dirty.full) full = true;
    this.generation = store.generation;
    this.shDegree = store.shDegree;
    this.restCount = store.restCount;
    this.highWater = store.highWater;
    const s4 = stride * 4;
    let runs = 0, bytes = 0, scattered = false;
    const write = (s0, s1) => {  // slots [s0, s1)
      if (s1 <= s0) return;
      q.writeBuffer(this.splats, s0 * s4, data.buffer, data.byteOffset + s0 * s4, (s1 - s0) * s4);
      runs += 1;
      bytes += (s1 - s0) * s4;
    };
    if (full) {
      write(0, Math.min(store.highWater, capacity));
    } else {
      const slots = dirty.slots, starts = [], ends = [];
      let i = 0;
      while (i < slots.length) {
        const s0 = slots[i];
        let s1 = s0 + 1;
        i++;
        while (i < slots.length && slots[i] < s1 + MERGE_GAP) { s1 = slots[i] + 1; i++; }
        starts.push(s0);
        ends.push(Math.min(s1, capacity));
      }
      if (starts.length > SCATTER_MIN_RUNS) {
        bytes += this._scatter(store, slots);
        runs += starts.length;
        scattered = true;
      } else {
        for (let k = 0; k < starts.length; k++) write(starts[k], ends[k]);
      }
    }
    const paletteBytes = this._syncPalette(store, full);
    const st = this.stats;
    st.uploads += 1;
    st.fullUploads += full ? 1 : 0;
    st.uploadRuns += runs;
    st.uploadBytes += bytes + paletteBytes;
    return { full, runs, bytes, paletteBytes, scattered };
  }

  /** The rows of `slots` (ascending, all below capacity) packed into one upload, then written into
   * the slot buffer by a compute pass (SCATTER_WGSL). Returns the bytes uploaded. */
  _scatter(store, slots) {
    const d = this.device, q = d.queue, S = store.stride, n = slots.length;
    const rowBytes = n * S * 4;
    if (!this.scatterRows || this.scatterRows.size < rowBytes) {
      this.scatterRows?.destroy();
      this.scatterSlots?.destroy();
      const cap = Math.max(64, 2 ** Math.ceil(Math.log2(n)));
      this.scatterRows = d.createBuffer({ size: cap * S * 4, usage: U.STORAGE | U.COPY_DST, label: 'scatter rows' });
      this.scatterSlots = d.createBuffer({ size: cap * 4, usage: U.STORAGE | U.COPY_DST, label: 'scatter slots' });
      this.scatterStage = new Float32Array(cap * S);   // kept with them: a delta allocates nothing here
      this.scatterGroup = null;
    }
    if (!this.scatterGroup || this.scatterGroupFor !== this.splats) {
      this.scatterGroup = d.createBindGroup({
        layout: this.scatterPipeline.getBindGroupLayout(0),
        entries: [this.scatterRows, this.scatterSlots, this.splats, this.scatterParams]
          .map((buffer, binding) => ({ binding, resource: { buffer } })),
      });
      this.scatterGroupFor = this.splats;
    }
    const rows = this.scatterStage, data = store.data;
    for (let k = 0; k < n; k++) rows.set(data.subarray(slots[k] * S, slots[k] * S + S), k * S);   // a memcpy per row
    const groups = Math.ceil((n * S) / 256), gx = Math.min(groups, 65535), gy = Math.ceil(groups / gx);
    q.writeBuffer(this.scatterRows, 0, rows.buffer, 0, rowBytes);
    q.writeBuffer(this.scatterSlots, 0, slots.buffer, slots.byteOffset, n * 4);
    q.writeBuffer(this.scatterParams, 0, new Uint32Array([n, S, gx * 256, 0]));
    const enc = d.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(this.scatterPipeline);
    pass.setBindGroup(0, this.scatterGroup);
    pass.dispatchWorkgroups(gx, gy);
    pass.end();
    q.submit([enc.finish()]);
    return rowBytes + n * 4;
  }

  _writeCamera(cam) {
    const m = rowMajor16(cam.viewMatrix);
    const W = cam.width ?? this.width, H = cam.height ?? this.height;
    if (W !== this.width || H !== this.height) this._allocTarget(W, H);
    const { fx, fy, cx, cy } = cam;
    const R = [[m[0], m[1], m[2]], [m[4], m[5], m[6]], [m[8], m[9], m[10]]];
    const t = [m[3], m[7], m[11]];
    const centre = [0, 1, 2].map((j) => -(R[0][j] * t[0] + R[1][j] * t[1] + R[2][j] * t[2]));
    const hx = 0.5 * W / fx, hy = 0.5 * H / fy;
    const lim = [(W - cx) / fx + 0.3 * hx, cx / fx + 0.3 * hx, (H - cy) / fy + 0.3 * hy, cy / fy + 0.3 * hy];
    const buf = new ArrayBuffer(144);
    const f = new Float32Array(buf);
    f.set([m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7], m[8], m[9], m[10], m[11]], 0);
    f.set(centre, 12);
    f.set([fx, fy, cx, cy], 16);
    f.set(lim, 20);
    f.set([W, H, 0, 0], 24);
    new Uint32Array(buf, 112, 8).set([this.highWater, this.stride, this.restCount, this.shDegree, this.paletteOn ? 1 : 0]);
    if (this.tiles) f[33] = this.tiles.cap2;   // the tile path's footprint cap (projectWGSL(true))
    this.device.queue.writeBuffer(this.params, 0, buf);
  }

  _encodeFrame(enc, opts = {}) {
    const { sortOnly = false, present = true } = opts;
    const n = this.highWater;
    const tiles = this.path === 'tiles' && !sortOnly;
    if (tiles && this.tiles.ensure(this.capacity, this.proj, this.sorter.valsA)) this._bindProject();
    const ts = this.timing && !this.queryBusy && !opts.noTimestamps;
    const tw = (a, b) => (ts ? { timestampWrites: { querySet: this.querySet, beginningOfPassWriteIndex: a, endOfPassWriteIndex: b } } : {});
    if (!sortOnly) {
      this.device.queue.writeBuffer(this.drawArgs, 0, new Uint32Array([4, 0, 0, 0]));
      const p = enc.beginComputePass(tw(0, 1));
      if (n > 0) {
        p.setPipeline(tiles ? this.projectTilesPipeline : this.projectPipeline);
        p.setBindGroup(0, tiles ? this.projectTilesGroup : this.projectGroup);
        p.dispatchWorkgroups(Math.ceil(n / 256));
      }
      p.end();
    }
    const s = enc.beginComputePass(tw(2, 3));
    this.sorter.encode(s, n, DEPTH_KEY_PASSES);
    s.end();
    if (sortOnly) return false;
    if (tiles) {
      this.tiles.encode(enc, n, this.width, this.height, this.targetView, tw);
    } else {
      const r = enc.beginRenderPass({
        colorAttachments: [{ view: this.targetView, clearValue: [0, 0, 0, 0], loadOp: 'clear', storeOp: 'store' }],
        ...tw(4, 5),
      });
      if (n > 0) {
        r.setPipeline(this.rasterPipeline);
        r.setBindGroup(0, this.rasterGroup);
        r.drawIndirect(this.drawArgs, 0);
      }
      r.end();
    }
    if (this.canvas && present) {
      if (!this.presentGroup) {
        this.presentGroup = this.device.createBindGroup({
          layout: this.presentPipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: this.targetView }],
        });
      }
      const pr = enc.beginRenderPass({
        colorAttachments: [{ view: this.context.getCurrentTexture().createView(), clearValue: [0, 0, 0, 1], loadOp: 'clear', storeOp: 'store' }],
      });
      pr.setPipeline(this.presentPipeline);
      pr.setBindGroup(0, this.presentGroup);
      pr.draw(3);
      pr.end();
    }
    if (ts) {
      const q = tiles ? 8 : 6;
      enc.resolveQuerySet(this.querySet, 0, q, this.queryResolve, 0);
      enc.copyBufferToBuffer(this.queryResolve, 0, this.queryRead, 0, 8 * q);
    }
    return ts ? (tiles ? 'tiles' : 'raster') : null;
  }

  render(camera, opts = {}) {
    if (!this.splats) this._allocScene(0, 16);
    if (this.pathOption === 'auto' && !this.pathChoice && this.highWater > 0 && !opts.noAuto) this.pathChoice = this.measurePaths(camera);
    this._writeCamera(camera);
    this.lastCamera = camera;
    const enc = this.device.createCommandEncoder();
    const measured = this._encodeFrame(enc, opts);
    this.device.queue.submit([enc.finish()]);
    if (this.path === 'tiles') this.tiles.afterSubmit();
    this.stats.frames += 1;
    if (measured) {
      this.queryBusy = true;
      this.queryRead.mapAsync(GPUMapMode.READ).then(() => {
        const t = new BigUint64Array(this.queryRead.getMappedRange().slice(0));
        this.queryRead.unmap();
        const ms = (a, b) => Number(t[b] - t[a]) / 1e6;
        const last = measured === 'tiles' ? 7 : 5;
        this.stats.projectMs = ms(0, 1);
        this.stats.sortMs = ms(2, 3);
        this.stats.binMs = measured === 'tiles' ? ms(4, 5) : null;
        this.stats.rasterMs = measured === 'tiles' ? ms(6, 7) : ms(4, 5);
        this.stats.gpuFrameMs = ms(0, last);
        this.queryBusy = false;
      }, () => { this.queryBusy = false; });
    }
  }

  /** Use path 'raster' or 'tiles' from the next frame on. */
  setPath(path) {
    if (path !== 'raster' && path !== 'tiles') throw new Error('unknown path ' + path);
    if (path === 'tiles') this._ensureTiles();
    this.path = path;
    this.stats.path = path;
  }

  /**
   * Times both paths on this scene and camera (timeFrames, `frames` each, after one frame that lets the
   * tile path size its buffers) and keeps the faster; what path 'auto' runs once, at its first frame
   * with a scene. -> { raster, tiles, path } (ms per frame).
   */
  async measurePaths(camera, frames = 5) {
    const prev = this.path;
    const out = {};
    for (const p of ['raster', 'tiles']) {
      this.setPath(p);
      this.render(camera, { noAuto: true, noTimestamps: true });
      if (p === 'tiles') await this.tiles.settle();
      out[p] = await this.timeFrames(camera, frames);
    }
    out.path = out.tiles < out.raster ? 'tiles' : 'raster';
    this.setPath(this.pathOption === 'auto' ? out.path : prev);
    if (this.path === 'raster') {   // the tile path's buffers go until it is asked for again
      this.tiles.destroy();
      this.tiles = null;
    }
    this.stats.pathChoice = out;
    return out;
  }

  async readVisibleCount() {
    const enc = this.device.createCommandEncoder();
    enc.copyBufferToBuffer(this.drawArgs, 4, this.countRead, 0, 4);
    this.device.queue.submit([enc.finish()]);
    await this.countRead.mapAsync(GPUMapMode.READ);
    const n = new Uint32Array(this.countRead.getMappedRange())[0];
    this.countRead.unmap();
    this.stats.visible = n;
    return n;
  }

  async readPixels() {
    // the tile path: a frame whose entries overflowed the buffers is drawn again, grown, before reading
    if (this.path === 'tiles' && this.lastCamera && await this.tiles.settle()) {
      this.render(this.lastCamera, { noAuto: true });
      await this.tiles.settle();
    }
    if (this.tiles) Object.assign(this.stats, this.tiles.stats);
    const W = this.width, H = this.height;
    const bpp = { rgba32float: 16, rgba16float: 8, rgba8unorm: 4 }[this.format];
    const bytesPerRow = Math.ceil((W * bpp) / 256) * 256;
    const buf = this.device.createBuffer({ size: bytesPerRow * H, usage: U.MAP_READ | U.COPY_DST });
    const enc = this.device.createCommandEncoder();
    enc.copyTextureToBuffer({ texture: this.target }, { buffer: buf, bytesPerRow }, [W, H]);
    this.device.queue.submit([enc.finish()]);
    await buf.mapAsync(GPUMapMode.READ);
    const raw = buf.getMappedRange();
    const out = new Float32Array(W * H * 4);
    for (let y = 0; y < H; y++) {
      if (bpp === 16) {
        out.set(new Float32Array(raw, y * bytesPerRow, W * 4), y * W * 4);
      } else if (bpp === 4) {
        const b = new Uint8Array(raw, y * bytesPerRow, W * 4);
        for (let i = 0; i < W * 4; i++) out[y * W * 4 + i] = b[i] / 255;
      } else {
        const h = new Uint16Array(raw, y * bytesPerRow, W * 4);
        for (let i = 0; i < W * 4; i++) out[y * W * 4 + i] = half(h[i]);
      }
    }
    buf.unmap();
    buf.destroy();
    return out;
  }

  async timeFrames(camera, n = 20, { sortOnly = false } = {}) {
    this._writeCamera(camera);
    const once = () => {
      const enc = this.device.createCommandEncoder();
      this._encodeFrame(enc, { sortOnly, present: !!this.canvas, noTimestamps: true });
      this.device.queue.submit([enc.finish()]);
      if (this.path === 'tiles' && !sortOnly) this.tiles.afterSubmit();
    };
    once();
    await this.device.queue.onSubmittedWorkDone();
    const now = () => globalThis.performance.now();
    const t0 = now();
    for (let i = 0; i < n; i++) once();
    await this.device.queue.onSubmittedWorkDone();
    return (now() - t0) / n;
  }

  destroy() {
    for (const b of [this.splats, this.proj, this.params, this.viewport, this.drawArgs, this.countRead, this.target, this.palette,
      this.scatterRows, this.scatterSlots, this.scatterParams]) b?.destroy();
    this.tiles?.destroy();
  }
}

function half(h) {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 31, f = h & 1023;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}
