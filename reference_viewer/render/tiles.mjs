// Tile-based compute rasterizer (the approach of the 3DGS / gsplat CUDA kernels) behind the renderer's
// path 'tiles' (index.mjs). Per frame, after projectWGSL(true) and the depth sort of all slots:
//
//   count   one workgroup per block of 4096 depth-sorted slots: the sum of their tile counts -> blockSums.
//           A slot's tiles (16x16 pixels): within the rect of tiles its pixel box overlaps (from the
//           projection), per tile row the columns its footprint ellipse meets (rowSpan)
//   scan    one workgroup: exclusive prefix of blockSums; the total number of (tile, Gaussian) entries;
//           n = min(total, capacity); the tile sort's params
//   emit    the blocks again, each thread from the offset count left for it: each slot, in depth
//           order, writes one entry per tile at its offset
//           (key = tile id, value = slot); entries at or past the capacity are not written, so an
//           overflow drops the farthest Gaussians' entries (see capacity below)
//   sort    a stable LSD radix sort of the n entries by tile id (2 passes of 8 bits up to 65536 tiles,
//           4 beyond), its count the GPU's (dispatched for the capacity, direct: Dawn validates every
//           indirect dispatch with a pass of its own); depth order holds within each tile because the
//           entries were emitted
//           in depth order
//   ranges  one thread per entry (a grid-stride loop past 65535 workgroups): where each tile's run starts and ends
//   raster  one 16x16 workgroup per tile: batches of 256 entries are loaded into workgroup memory
//           (mean, opacity, conic, colour) and each pixel composites them front to back exactly as
//           SPEC.md Appendix B says, stopping before the first contribution that would take T below
//           1e-4; the workgroup leaves as soon as all of its pixels have stopped. One textureStore per
//           pixel of (C, 1 - T): the target is written, not blended, so rgba16float rounds once.
//
// Footprint: a Gaussian covers the pixels where D^T S^-1 D <= min(2 ln(255 alpha), cap2) (cap2 = 9,
// 3 sigma, by default): the opacity bound is where alpha exp(-m^2 / 2) falls below 1/255, past which
// Appendix B skips every contribution, so it costs nothing; the cap (3.33 sigma at alpha = 1 otherwise)
// drops contributions beyond 3 sigma, each below alpha * exp(-4.5) = 0.011 alpha. The per-pixel test
// applies the same cap, so the image does not depend on the tiling (tests/test_viewer_render_tiles.py
// measures the cap's PSNR cost). cap2 = Infinity gives the reference's footprint exactly.
//
// Capacity: the entry buffers hold `capacity` entries (initially max(4 per slot, 65536)). Each frame
// copies the total to a readback buffer; when a frame needed more, the next frame first grows the
// buffers to 1.25x that total (at most the device's storage binding size; past it the farthest
// Gaussians' entries stay dropped, counted in stats.tileOverflows) and Renderer.readPixels renders an
// overflowed frame again before reading it.
import { RadixSort, SORT_CALLER_OFFSET } from './sort.mjs';
import { PART_SCAN_WGSL, SORT_BLOCK, exclusiveScanWGSL } from './shaders.mjs';

const U = GPUBufferUsage;
export const TILE = 16;
const EPT = 16;                     // slots per thread in count / emit
const BIN_BLOCK = 256 * EPT;

const BIN_WGSL = /* wgsl */ `
struct BinParams { n: u32, tilesX: u32, capacity: u32, numBlocks: u32, passes: u32, pad0: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<uniform> B: BinParams;
@group(0) @binding(1) var<storage, read> order: array<u32>;      // slots in increasing depth
@group(0) @binding(2) var<storage, read> rects: array<vec4u>;    // tile rect per slot (x0 > x1: none)
@group(0) @binding(7) var<storage, read> proj: array<vec4f>;     // [4 s] mean, alpha, e; [4 s + 1] conic
@group(0) @binding(3) var<storage, read_write> blockSums: array<u32>;
@group(0) @binding(8) var<storage, read_write> threadOffs: array<u32>;   // count's: each thread's offset in its block
// the tile sort's params (RadixSort): [64 k + 0..2] pass k's n, shift, blocks; past them (the caller's
// part) [264] the total entries, [265] n = min(total, capacity)
@group(0) @binding(4) var<storage, read_write> control: array<u32>;
@group(0) @binding(5) var<storage, read_write> keys: array<u32>;
@group(0) @binding(6) var<storage, read_write> vals: array<u32>;

const EPT = ${EPT}u;
const SORT_BLOCK = ${SORT_BLOCK}u;
${PART_SCAN_WGSL}

struct Foot { mean: vec2f, e: f32, conic: vec3f, dyStar: f32 }

fn foot(s: u32) -> Foot {
  let m = proj[4u * s];
  let c = proj[4u * s + 1u].xyz;
  let det = max(c.x * c.z - c.y * c.y, 1e-30);
  // a hair of margin keeps the tile test conservative under rounding (an extra tile costs an entry,
  // never a pixel); the ellipse's rightmost point is at dy = -b sqrt(e) / sqrt(c det) from the mean
  let e = m.w * 1.0001 + 1e-4;
  return Foot(m.xy, e, c, -c.y * sqrt(e / max(c.z * det, 1e-30)));
}

// The tiles of row ty that the ellipse a dx^2 + 2 b dx dy + c dy^2 <= e (the footprint) meets, within
// the rect's columns: over the row's pixel-centre band of dy, the largest x of the ellipse is at dy
// clamped to its rightmost point's (x_max(dy) is concave), the smallest likewise.
fn rowSpan(f: Foot, r: vec4u, ty: u32) -> vec2u {
  let a = f.conic.x; let b = f.conic.y; let c = f.conic.z;
  let det = max(a * c - b * b, 1e-30);
  let e = f.e;
  let ymax = sqrt(e * a / det);              // the ellipse's half-height
  let dya = max(f32(ty * ${TILE}u) + 0.5 - f.mean.y, -ymax);
  let dyb = min(f32(ty * ${TILE}u) + ${TILE - 0.5} - f.mean.y, ymax);
  if (dya > dyb) { return vec2u(1u, 0u); }
  let yr = clamp(f.dyStar, dya, dyb);
  let yl = clamp(-f.dyStar, dya, dyb);
  let xr = (-b * yr + sqrt(max(a * e - det * yr * yr, 0.0))) / a;
  let xl = (-b * yl - sqrt(max(a * e - det * yl * yl, 0.0))) / a;
  let u0 = ceil(f.mean.x + xl - 0.5);
  let u1 = floor(f.mean.x + xr - 0.5);
  if (u1 < u0 || u1 < f32(r.x * ${TILE}u)) { return vec2u(1u, 0u); }
  let t0 = max(u32(max(u0, 0.0)) / ${TILE}u, r.x);
  let t1 = min(u32(u1) / ${TILE}u, r.z);
  return vec2u(t0, t1);
}

fn tileCount(s: u32) -> u32 {
  let r = rects[s];
  if (r.x > r.z || r.y > r.w) { return 0u; }
  if (r.x == r.z && r.y == r.w) { return 1u; }
  let f = foot(s);
  var n = 0u;
  for (var ty = r.y; ty <= r.w; ty++) {
    let sp = rowSpan(f, r, ty);
    if (sp.y >= sp.x) { n += sp.y - sp.x + 1u; }
  }
  return n;
}

// this thread's EPT slots' entry count; part = the workgroup's inclusive scan of those counts
fn threadSum(wg: u32, t: u32) -> u32 {
  let j0 = wg * 256u * EPT + t * EPT;
  var sum = 0u;
  for (var k = 0u; k < EPT; k++) {
    let j = j0 + k;
    if (j < B.n) { sum += tileCount(order[j]); }
  }
  part[t] = sum;
  scanPart(t);
  return sum;
}

@compute @workgroup_size(256)
fn count(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wg: vec3u) {
  let sum = threadSum(wg.x, t);
  threadOffs[wg.x * 256u + t] = part[t] - sum;   // so that emit need not count again
  if (t == 255u) { blockSums[wg.x] = part[255]; }
}

@compute @workgroup_size(256)
fn scan(@builtin(local_invocation_index) t: u32) {
${exclusiveScanWGSL('blockSums', 'B.numBlocks')}
  if (t == 255u) {
    let total = part[255];
    let n = min(total, B.capacity);
    control[264] = total;
    control[265] = n;
    let blocks = (n + SORT_BLOCK - 1u) / SORT_BLOCK;
    for (var k = 0u; k < B.passes; k++) {
      control[64u * k] = n;
      control[64u * k + 1u] = 8u * k;
      control[64u * k + 2u] = blocks;
    }
  }
}

@compute @workgroup_size(256)
fn emit(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wg: vec3u) {
  var off = blockSums[wg.x] + threadOffs[wg.x * 256u + t];
  let j0 = wg.x * 256u * EPT + t * EPT;
  for (var k = 0u; k < EPT; k++) {
    let j = j0 + k;
    if (j >= B.n || off >= B.capacity) { break; }
    let s = order[j];
    let r = rects[s];
    if (r.x > r.z || r.y > r.w) { continue; }
    let single = r.x == r.z && r.y == r.w;
    let f = foot(s);
    for (var ty = r.y; ty <= r.w; ty++) {
      var sp = r.xz;
      if (!single) { sp = rowSpan(f, r, ty); }
      for (var tx = sp.x; tx <= sp.y; tx++) {
        if (off < B.capacity) { keys[off] = ty * B.tilesX + tx; vals[off] = s; }
        off += 1u;
      }
    }
  }
}

`;

// where each tile's run of the tile-sorted keys starts and ends (ranges cleared to 0 before)
const RANGES_WGSL = /* wgsl */ `
struct SortParams { n: u32, shift: u32, numBlocks: u32, pad: u32 }
@group(0) @binding(0) var<uniform> S: SortParams;
@group(0) @binding(1) var<storage, read> keys: array<u32>;
@group(0) @binding(2) var<storage, read_write> ranges: array<vec2u>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let n = S.n;
  for (var i = gid.x; i < n; i += nwg.x * 256u) {
    let t = keys[i];
    if (i == 0u || keys[i - 1u] != t) { ranges[t].x = i; }
    if (i + 1u == n || keys[i + 1u] != t) { ranges[t].y = i + 1u; }
  }
}
`;

const rasterWGSL = (format) => /* wgsl */ `
struct RasterParams { W: u32, H: u32, tilesX: u32, cap2: f32 }
@group(0) @binding(0) var<uniform> R: RasterParams;
@group(0) @binding(1) var<storage, read> proj: array<vec4f>;
@group(0) @binding(2) var<storage, read> vals: array<u32>;      // slots, grouped by tile, front to back
@group(0) @binding(3) var<storage, read> ranges: array<vec2u>;
@group(0) @binding(4) var outTex: texture_storage_2d<${format}, write>;

const ALPHA_MIN = 0.00392156862745098;  // 1/255
const T_MIN = 0.0001;
var<workgroup> sMean: array<vec4f, 256>;   // mean, opacity
var<workgroup> sConic: array<vec4f, 256>;
var<workgroup> sCol: array<vec4f, 256>;
var<workgroup> doneCount: atomic<u32>;
var<workgroup> uni: vec2u;                 // the tile's range, then the done count, read uniformly

@compute @workgroup_size(${TILE}, ${TILE})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u,
        @builtin(local_invocation_index) li: u32) {
  let px = wg.xy * ${TILE}u + lid.xy;
  let inside = px.x < R.W && px.y < R.H;
  let centre = vec2f(px) + 0.5;
  if (li == 0u) { atomicStore(&doneCount, 0u); uni = ranges[wg.y * R.tilesX + wg.x]; }
  let range = workgroupUniformLoad(&uni);
  var done = !inside;
  if (done) { atomicAdd(&doneCount, 1u); }
  var T = 1.0;
  var C = vec3f(0.0);
  for (var b = range.x; b < range.y; b += 256u) {
    workgroupBarrier();
    if (li == 0u) { uni.x = atomicLoad(&doneCount); }
    if (workgroupUniformLoad(&uni).x == 256u) { break; }
    let e = b + li;
    if (e < range.y) {
      let s = vals[e];
      sMean[li] = proj[4u * s];
      sConic[li] = proj[4u * s + 1u];
      sCol[li] = proj[4u * s + 2u];
    }
    workgroupBarrier();
    if (!done) {
      let cnt = min(256u, range.y - b);
      for (var k = 0u; k < cnt; k++) {
        let m = sMean[k];
        let c = sConic[k];
        let d = centre - m.xy;
        let m2 = c.x * d.x * d.x + c.z * d.y * d.y + 2.0 * c.y * d.x * d.y;
        if (m2 > R.cap2) { continue; }
        let a = min(0.99, m.z * exp(-0.5 * m2));
        if (a < ALPHA_MIN) { continue; }
        let Tn = T * (1.0 - a);
        if (Tn < T_MIN) { done = true; atomicAdd(&doneCount, 1u); break; }
        C += sCol[k].rgb * (a * T);
        T = Tn;
      }
    }
  }
  if (inside) { textureStore(outTex, vec2i(px), vec4f(C, 1.0 - T)); }
}
`;

export class TilePath {
  /** opts: maxSigma (footprint cap in standard deviations, default 3; Infinity: the opacity bound only),
   *  tileCapacity (initial entry capacity; default max(4 per slot, 65536)) */
  constructor(device, format, opts = {}) {
    this.device = device;
    const d = device;
    this.maxSigma = opts.maxSigma ?? 3;
    this.cap2 = Number.isFinite(this.maxSigma) ? this.maxSigma * this.maxSigma : 3.0e38;
    this.initialCapacity = opts.tileCapacity ?? 0;
    this.sorter = new RadixSort(d, { label: 'tile sort' });
    this.binParams = d.createBuffer({ size: 32, usage: U.UNIFORM | U.COPY_DST, label: 'bin params' });
    this.rasterParams = d.createBuffer({ size: 16, usage: U.UNIFORM | U.COPY_DST, label: 'tile raster params' });
    this.infoRead = d.createBuffer({ size: 16, usage: U.MAP_READ | U.COPY_DST, label: 'tile info read' });
    const e = (binding, type) => ({ binding, visibility: GPUShaderStage.COMPUTE, buffer: { type } });
    this.binLayout = d.createBindGroupLayout({
      entries: [e(0, 'uniform'), e(1, 'read-only-storage'), e(2, 'read-only-storage'), ...[3, 4, 5, 6].map((b) => e(b, 'storage')),
                e(7, 'read-only-storage'), e(8, 'storage')],
    });
    const module = d.createShaderModule({ code: BIN_WGSL, label: 'tile binning' });
    const layout = d.createPipelineLayout({ bindGroupLayouts: [this.binLayout] });
    const mk = (entryPoint) => d.createComputePipeline({ layout, compute: { module, entryPoint } });
    this.pCount = mk('count');
    this.pScan = mk('scan');
    this.pEmit = mk('emit');
    const rg = d.createShaderModule({ code: RANGES_WGSL, label: 'tile ranges' });
    this.pRanges = d.createComputePipeline({ layout: 'auto', compute: { module: rg, entryPoint: 'main' } });
    const rm = d.createShaderModule({ code: rasterWGSL(format), label: 'tile raster' });
    this.pRaster = d.createComputePipeline({ layout: 'auto', compute: { module: rm, entryPoint: 'main' } });
    const L = device.limits;
    this.maxCapacity = Math.floor(Math.min(L.maxStorageBufferBindingSize, L.maxBufferSize) / 4);
    this.slots = 0;
    this.capacity = 0;
    this.tiles = 0;
    this.pending = null;        // the readback of the last frame's entry total
    this.needed = 0;            // the largest total read back that did not fit
    this.stats = { tileEntries: 0, tileCapacity: 0, tileGrows: 0, tileOverflows: 0 };
  }

  /** Buffers for `slots` slots (rects, block sums) and the entry buffers; false when nothing changed. */
  ensure(slots, proj, order) {
    const d = this.device;
    let changed = proj !== this.proj || order !== this.order;
    if (!this.rects || slots > this.slots) {
      this.rects?.destroy();
      this.blockSums?.destroy();
      this.threadOffs?.destroy();
      this.slots = Math.max(slots, 1);
      this.rects = d.createBuffer({ size: this.slots * 16, usage: U.STORAGE, label: 'tile rects' });
      this.blockSums = d.createBuffer({ size: Math.ceil(this.slots / BIN_BLOCK) * 4, usage: U.STORAGE, label: 'bin block sums' });
      this.threadOffs = d.createBuffer({ size: Math.ceil(this.slots / BIN_BLOCK) * BIN_BLOCK / EPT * 4, usage: U.STORAGE,
                                         label: 'bin thread offsets' });
      changed = true;
    }
    if (!this.capacity) {
      this.capacity = Math.min(this.maxCapacity, Math.max(this.initialCapacity || Math.max(4 * slots, 65536), 1));
      changed = true;
    } else if (this.needed > this.capacity && this.capacity < this.maxCapacity) {
      this.capacity = Math.min(this.maxCapacity, Math.ceil(this.needed * 1.25));
      this.stats.tileGrows += 1;
      changed = true;
    }
    if (this.sorter.ensure(this.capacity)) changed = true;
    this.proj = proj;
    this.order = order;
    this.stats.tileCapacity = this.capacity;
    if (changed) this.rasterGroup = null;
    if (changed) this.binGroup = null;
    return changed;
  }

  _ranges(tiles) {
    if (tiles <= this.tiles) return;
    this.rangesBuf?.destroy();
    this.tiles = tiles;
    this.rangesBuf = this.device.createBuffer({ size: tiles * 8, usage: U.STORAGE | U.COPY_DST, label: 'tile ranges' });
    this.binGroup = null;
    this.rasterGroup = null;
  }

  /** Record count .. raster for n slots into `enc` (passes with timestamp writes tw(a, b) when given). */
  encode(enc, n, width, height, targetView, tw) {
    const d = this.device, q = d.queue;
    const tilesX = Math.ceil(width / TILE), tilesY = Math.ceil(height / TILE), tiles = tilesX * tilesY;
    this._ranges(tiles);
    const passes = tiles <= 65536 ? 2 : 4;
    const numBlocks = Math.ceil(n / BIN_BLOCK);
    q.writeBuffer(this.binParams, 0, new Uint32Array([n, tilesX, this.capacity, numBlocks, passes, 0, 0, 0]));
    q.writeBuffer(this.rasterParams, 0, new Uint32Array([width, height, tilesX, 0]));
    q.writeBuffer(this.rasterParams, 12, new Float32Array([this.cap2]));
    if (!this.binGroup) {
      const bufs = [this.binParams, this.order, this.rects, this.blockSums, this.sorter.params, this.sorter.keysA, this.sorter.valsA,
                    this.proj, this.threadOffs];
      this.binGroup = d.createBindGroup({ layout: this.binLayout, entries: bufs.map((buffer, binding) => ({ binding, resource: { buffer } })) });
      this.rangeGroup = d.createBindGroup({
        layout: this.pRanges.getBindGroupLayout(0),
        entries: [{ buffer: this.sorter.params, offset: 0, size: 16 }, { buffer: this.sorter.keysA }, { buffer: this.rangesBuf }]
          .map((resource, binding) => ({ binding, resource })),
      });
    }
    if (this.rasterGroup?.view !== targetView || !this.rasterGroup) {
      this.rasterGroup = {
        view: targetView,
        group: d.createBindGroup({
          layout: this.pRaster.getBindGroupLayout(0),
          entries: [this.rasterParams, this.proj, this.sorter.valsA, this.rangesBuf].map((buffer, binding) => ({ binding, resource: { buffer } }))
            .concat([{ binding: 4, resource: targetView }]),
        }),
      };
    }
    enc.clearBuffer(this.rangesBuf, 0, tiles * 8);
    const p = enc.beginComputePass(tw(4, 5));
    if (n > 0) {
      p.setBindGroup(0, this.binGroup);
      p.setPipeline(this.pCount);
      p.dispatchWorkgroups(numBlocks);
      p.setPipeline(this.pScan);
      p.dispatchWorkgroups(1);
      p.setPipeline(this.pEmit);
      p.dispatchWorkgroups(numBlocks);
      this.sorter.encodeUpTo(p, passes);
      p.setBindGroup(0, this.rangeGroup);
      p.setPipeline(this.pRanges);
      p.dispatchWorkgroups(Math.min(Math.ceil(this.capacity / 256), 65535));   // a grid-stride loop over n
    }
    p.end();
    const r = enc.beginComputePass(tw(6, 7));
    r.setPipeline(this.pRaster);
    r.setBindGroup(0, this.rasterGroup.group);
    r.dispatchWorkgroups(tilesX, tilesY);
    r.end();
    this.frameId = (this.frameId ?? 0) + 1;
    this.lastN = n;
    this.copied = !this.pending;
    if (this.copied) this.copiedFrame = this.frameId;
    if (this.copied) enc.copyBufferToBuffer(this.sorter.params, SORT_CALLER_OFFSET + 32, this.infoRead, 0, 8);
  }

  /** After submitting a frame encoded by encode(): read its entry total back (one readback in flight). */
  afterSubmit() {
    if (this.pending || !this.copied) return this.pending;
    this.copied = false;
    const cap = this.capacity, frame = this.copiedFrame;
    this.pending = this.infoRead.mapAsync(GPUMapMode.READ).then(() => {
      const [total] = new Uint32Array(this.infoRead.getMappedRange().slice(0));
      this.infoRead.unmap();
      this.stats.tileEntries = total;
      const over = total > cap;
      if (over && frame !== this.overflowFrame) { this.stats.tileOverflows += 1; this.overflowFrame = frame; }
      if (over) this.needed = Math.max(this.needed, total);
      this.pending = null;
      return over;
    }, () => { this.pending = null; return false; });
    return this.pending;
  }

  /** Reads the entry total of the last frame submitted; true when it did not fit the capacity it ran with
   *  (the next frame grows the buffers). */
  async settle() {
    if (this.pending) await this.pending;
    if (!this.lastN) return false;   // no entries were made (and the totals in the buffer are older)
    const enc = this.device.createCommandEncoder();
    enc.copyBufferToBuffer(this.sorter.params, SORT_CALLER_OFFSET + 32, this.infoRead, 0, 8);
    this.device.queue.submit([enc.finish()]);
    this.copied = true;
    this.copiedFrame = this.frameId;
    return await this.afterSubmit();
  }

  destroy() {
    for (const b of [this.rects, this.blockSums, this.threadOffs, this.infoRead, this.rangesBuf, this.binParams, this.rasterParams,
                     this.sorter.keysA, this.sorter.valsA, this.sorter.keysB, this.sorter.valsB, this.sorter.hist, this.sorter.params]) b?.destroy();
  }
}
