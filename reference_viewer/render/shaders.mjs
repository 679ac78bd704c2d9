// WGSL sources of the renderer (plain strings so the module loads in a browser and in node alike).
// Conventions: SPEC.md Appendix B, the same as quality/rasterizer.py. The slot floats they read
// (data[b + k]) are laid out as decoder/layout.mjs says; with an SH palette (SPEC 5.9) a slot's SH
// rest floats are those of the palette entry whose index is its float 16 (pal[e * 3K + k]).

// ---------------------------------------------------------------------------------------- project
// One invocation per slot in [0, n): cull, EWA-project, evaluate SH, write the screen-space splat,
// its 24-bit depth key (depthKey below; culled = DEPTH_CULLED, after every visible key) and the
// slot as the sort value, and count the visible ones into the indirect draw's instanceCount.
// Two variants: the raster path's (projectWGSL(false) = PROJECT_WGSL) writes the oriented quad around
// the ellipse D^T S^-1 D <= 2 ln(255 alpha); the tile path's (projectWGSL(true)) bounds that ellipse
// further by D^T S^-1 D <= P.cap2 (the footprint's largest Mahalanobis radius squared, 9 = 3 sigma by
// default, see tiles.mjs) and writes the inclusive range of 16x16 tiles its pixel box overlaps
// (rects[i]; x0 > x1 when culled).
// A slot is read as vec4s (its stride is a multiple of 4 floats, decoder/layout.mjs): one thread reads
// a whole slot, so scalar loads would touch each 32-byte sector up to eight times over a warp's
// 256-byte-strided addresses. The SH rest floats are read per degree with constant offsets (shRestWGSL),
// and the visible count is summed per workgroup before its one atomic add.
export const DEPTH_KEY_PASSES = 3;   // 8-bit radix passes of a depth key
const DEPTH_CULLED = 0xffffff;        // the key of a culled slot
const XYZW = 'xyzw';

// SH basis functions of degrees 1..3 (k = 0..14), of the unit direction (x, y, z0) and its products
const SH_BASIS = [
  '-C1 * y', 'C1 * zz0', '-C1 * x',
  'C20 * xy', 'C21 * yz', 'C22 * (2.0 * zz - xx - yy)', 'C23 * xz', 'C24 * (xx - yy)',
  'C30 * y * (3.0 * xx - yy)', 'C31 * xy * zz0', 'C32 * y * (4.0 * zz - xx - yy)',
  'C33 * zz0 * (2.0 * zz - 3.0 * xx - 3.0 * yy)', 'C34 * x * (4.0 * zz - xx - yy)', 'C35 * zz0 * (xx - yy)',
  'C36 * x * (xx - 3.0 * yy)',
];

/** WGSL adding the SH rest terms of degree `deg` to `col`: from the slot's vec4s (sv4, sv5, ...: slot
 *  floats 16..) or, with a palette, from entry floats at `o` (palc). */
function shRestWGSL(deg) {
  const K = (deg + 1) * (deg + 1) - 1;
  const f = (j) => `sv${(16 + j) >> 2}.${XYZW[(16 + j) & 3]}`;
  const loads = [];
  for (let v = 4; v <= (16 + 3 * K - 1) >> 2; v++) loads.push(`let sv${v} = data[b4 + ${v}u];`);
  const slot = [], palette = [];
  for (let k = 0; k < K; k++) {
    slot.push(`(${SH_BASIS[k]}) * vec3f(${f(k)}, ${f(K + k)}, ${f(2 * K + k)})`);
    palette.push(`(${SH_BASIS[k]}) * palc(o, ${k}u)`);
  }
  return `if (P.deg == ${deg}u) {
      if (P.pal != 0u) {
        let o = u32(data[b4 + 4u].x) * 3u * P.K;
        col += ${palette.join('\n             + ')};
      } else {
        ${loads.join(' ')}
        col += ${slot.join('\n             + ')};
      }
    }`;
}

export const projectWGSL = (tiles) => /* wgsl */ `
struct Params {
  r0: vec4f, r1: vec4f, r2: vec4f,   // world-to-camera rows [R | t]
  centre: vec4f,                     // camera centre -R^T t (world)
  intr: vec4f,                       // fx fy cx cy
  lim: vec4f,                        // x' upper, x' lower (magnitude), y' upper, y' lower
  size: vec4f,                       // W H
  n: u32, stride: u32, K: u32, deg: u32,
  pal: u32, cap2: f32, pad1: u32, pad2: u32,   // pal != 0: SH rest from the palette; cap2: see above
}
struct DrawArgs { vertexCount: u32, instanceCount: atomic<u32>, firstVertex: u32, firstInstance: u32 }

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> data: array<vec4f>;
@group(0) @binding(2) var<storage, read_write> proj: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> keys: array<u32>;
@group(0) @binding(4) var<storage, read_write> vals: array<u32>;
@group(0) @binding(5) var<storage, read_write> draw: DrawArgs;
@group(0) @binding(6) var<storage, read> pal: array<f32>;   // palette entries, 3K floats each
${tiles ? '@group(0) @binding(7) var<storage, read_write> rects: array<vec4u>;' : ''}

var<workgroup> visibleHere: atomic<u32>;

const NEAR = 0.01;
const ALPHA_MIN = 0.00392156862745098;  // 1/255
const LOW_PASS = 0.3;
const C0 = 0.28209479177387814;
const C1 = 0.4886025119029199;
const C20 = 1.0925484305920792;
const C21 = -1.0925484305920792;
const C22 = 0.31539156525252005;
const C23 = -1.0925484305920792;
const C24 = 0.5462742152960396;
const C30 = -0.5900435899266435;
const C31 = 2.890611442640554;
const C32 = -0.4570457994644658;
const C33 = 0.3731763325901154;
const C34 = -0.4570457994644658;
const C35 = 1.445305721320277;
const C36 = -0.5900435899266435;

// SH rest coefficient k (0-based) of R, G, B (channel-major) of the palette entry whose first float is o
fn palc(o: u32, k: u32) -> vec3f {
  return vec3f(pal[o + k], pal[o + k + P.K], pal[o + k + 2u * P.K]);
}

// The sort key of a camera-space depth z > 0: its float bits from 2^-16 to 2^16 (32 octaves of 2^19
// steps each, a relative step of 2^-19) in 24 bits, so the depth sort takes three 8-bit passes
// instead of four. Monotonic in z; depths outside that range share the end keys.
fn depthKey(z: f32) -> u32 {
  let lo = 111u << 23u;
  let b = clamp(bitcast<u32>(z), lo, lo + (1u << 28u) - 1u);
  return min((b - lo) >> 4u, ${DEPTH_CULLED - 1}u);
}

// Projects slot i; true when it is visible (its splat, key and rect written).
fn project(i: u32) -> bool {
  keys[i] = ${DEPTH_CULLED}u;
  vals[i] = i;
  ${tiles ? 'rects[i] = vec4u(1u, 1u, 0u, 0u);' : ''}
  let b4 = i * (P.stride >> 2u);
  let v0 = data[b4];                 // position, opacity logit
  let p = v0.xyz;
  let alpha = 1.0 / (1.0 + exp(-clamp(v0.w, -80.0, 80.0)));
  let w0 = P.r0.xyz; let w1 = P.r1.xyz; let w2 = P.r2.xyz;
  let t = vec3f(dot(w0, p) + P.r0.w, dot(w1, p) + P.r1.w, dot(w2, p) + P.r2.w);
  if (!(t.z >= NEAR) || !(alpha >= ALPHA_MIN)) { return false; }

  // rotation R(q/|q|), q = (w, x, y, z); zero quaternion = identity
  var q = data[b4 + 2u];
  let qn = length(q);
  q = select(vec4f(1.0, 0.0, 0.0, 0.0), q / qn, qn > 0.0);
  let qw = q.x; let qx = q.y; let qy = q.z; let qz = q.w;
  let s = exp(data[b4 + 1u].xyz);
  // rows of M = R diag(s); Sigma = M M^T
  let m0 = vec3f(1.0 - 2.0 * (qy * qy + qz * qz), 2.0 * (qx * qy - qw * qz), 2.0 * (qx * qz + qw * qy)) * s;
  let m1 = vec3f(2.0 * (qx * qy + qw * qz), 1.0 - 2.0 * (qx * qx + qz * qz), 2.0 * (qy * qz - qw * qx)) * s;
  let m2 = vec3f(2.0 * (qx * qz - qw * qy), 2.0 * (qy * qz + qw * qx), 1.0 - 2.0 * (qx * qx + qy * qy)) * s;

  let fx = P.intr.x; let fy = P.intr.y;
  let z = t.z;
  let tx = clamp(t.x / z, -P.lim.y, P.lim.x);
  let ty = clamp(t.y / z, -P.lim.w, P.lim.z);
  // rows of T = J W (2x3)
  let j0 = (fx / z) * w0 - (fx * tx / z) * w2;
  let j1 = (fy / z) * w1 - (fy * ty / z) * w2;
  // Sigma2 = T M M^T T^T: g = M^T T^T columns
  let g0 = j0.x * m0 + j0.y * m1 + j0.z * m2;
  let g1 = j1.x * m0 + j1.y * m1 + j1.z * m2;
  let ca = dot(g0, g0) + LOW_PASS;
  let cb = dot(g0, g1);
  let cc = dot(g1, g1) + LOW_PASS;
  let det = ca * cc - cb * cb;
  let mean = vec2f(fx * t.x / z + P.intr.z, fy * t.y / z + P.intr.w);
  // pixels whose centre can get alpha >= 1/255: the ellipse D^T S^-1 D <= 2 ln(255 alpha), its box
  let e = ${tiles ? 'min(2.0 * log(alpha / ALPHA_MIN), P.cap2)' : '2.0 * log(alpha / ALPHA_MIN)'};
  let rx = sqrt(e * ca);
  let ry = sqrt(e * cc);
  let u0 = max(ceil(mean.x - rx - 0.5), 0.0);
  let u1 = min(floor(mean.x + rx - 0.5), P.size.x - 1.0);
  let v0y = max(ceil(mean.y - ry - 0.5), 0.0);
  let v1y = min(floor(mean.y + ry - 0.5), P.size.y - 1.0);
  if (!(det > 0.0) || !(u1 >= u0) || !(v1y >= v0y)) { return false; }

  // colour: SH at the unit direction camera centre -> mean
  var d = p - P.centre.xyz;
  let dn = length(d);
  d = select(d, d / dn, dn > 0.0);
  var col = C0 * data[b4 + 3u].xyz;
  {
    let x = d.x; let y = d.y; let zz0 = d.z;
    let xx = x * x; let yy = y * y; let zz = zz0 * zz0;
    let xy = x * y; let yz = y * zz0; let xz = x * zz0;
    ${shRestWGSL(1)} else ${shRestWGSL(2)} else ${shRestWGSL(3)}
  }
  col = max(col + 0.5, vec3f(0.0));

  proj[4u * i] = vec4f(mean, alpha, ${tiles ? 'e' : '0.0'});   // the tile path keeps the footprint's m^2 bound
  proj[4u * i + 1u] = vec4f(cc / det, -cb / det, ca / det, 1.0 / cc);
  proj[4u * i + 2u] = vec4f(col, alpha);
${tiles ? `  rects[i] = vec4u(u32(u0) / 16u, u32(v0y) / 16u, u32(u1) / 16u, u32(v1y) / 16u);
  keys[i] = depthKey(z);
  return true;
}
` : `  // the quad: the rectangle circumscribing that ellipse along its axes (half-axes sqrt(e l) v for the
  // eigenpairs (l, v) of S); every pixel centre it misses has a < 1/255, so the image is the same as
  // with the reference's axis-aligned box, with fewer fragments for elongated splats
  let mid = 0.5 * (ca + cc);
  let dd = sqrt(max(0.25 * (ca - cc) * (ca - cc) + cb * cb, 0.0));
  let l1 = mid + dd;
  let l2 = max(mid - dd, 0.0);
  var v = select(vec2f(cb, l1 - ca), vec2f(l1 - cc, cb), ca >= cc);
  let vn = length(v);
  v = select(vec2f(1.0, 0.0), v / vn, vn > 0.0);
  let e1 = sqrt(e * l1) * v;
  let e2 = sqrt(e * l2) * vec2f(-v.y, v.x);
  proj[4u * i + 3u] = vec4f(e1, e2);
  keys[i] = depthKey(z);
  return true;
}
`}
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(local_invocation_index) t: u32) {
  if (gid.x < P.n && project(gid.x)) { atomicAdd(&visibleHere, 1u); }
  workgroupBarrier();
  if (t == 0u) {
    let c = atomicLoad(&visibleHere);
    if (c > 0u) { atomicAdd(&draw.instanceCount, c); }
  }
}`;
export const PROJECT_WGSL = projectWGSL(false);

// ---------------------------------------------------------------------------------------- scans
/** Module-scope WGSL of a 256-thread workgroup scan: `part` (one u32 per thread) and scanPart(t), which
 *  turns part into its inclusive prefix sums (part[255]: the total). Every thread must call it. */
export const PART_SCAN_WGSL = /* wgsl */ `
var<workgroup> part: array<u32, 256>;

fn scanPart(t: u32) {
  workgroupBarrier();
  for (var off = 1u; off < 256u; off *= 2u) {
    var v = 0u;
    if (t >= off) { v = part[t - off]; }
    workgroupBarrier();
    part[t] += v;
    workgroupBarrier();
  }
}
`;

/** Statements of a one-workgroup exclusive prefix sum over `arr[0..count)` in place (256 threads, each
 *  a run of the array, then scanPart over the runs' sums; part[255] ends as the total). Needs
 *  PART_SCAN_WGSL in the module; `t` is the local invocation index. */
export const exclusiveScanWGSL = (arr, count) => /* wgsl */ `
  let L = ${count};
  let chunk = (L + 255u) / 256u;
  let s0 = min(t * chunk, L);
  let s1 = min(s0 + chunk, L);
  var sum = 0u;
  for (var i = s0; i < s1; i++) { sum += ${arr}[i]; }
  part[t] = sum;
  scanPart(t);
  var run = part[t] - sum;
  for (var i = s0; i < s1; i++) { let v = ${arr}[i]; ${arr}[i] = run; run += v; }`;

// ---------------------------------------------------------------------------------------- radix sort
// LSD radix sort of (u32 key, u32 value) pairs, 8 bits per pass, up to 4 passes. A block is BLOCK =
// 256 * EPT elements, one workgroup each. hist: per-block digit counts, digit-major (count[d * numBlocks
// + b]); their exclusive prefix sums, in two steps: scanChunks (numBlocks workgroups, each one chunk of
// 256 counts, coalesced: the prefix within the chunk, and the chunk's sum) and scanSums (one workgroup:
// the exclusive prefix of the numBlocks chunk sums); a count's global offset is its prefix in its chunk
// plus its chunk's; scatter: each block walks its elements in rounds of 256, ranking each among equal
// digits of the round (stable), and writes to its offset.
export const SORT_EPT = 16;
export const SORT_BLOCK = 256 * SORT_EPT;
export const SORT_WGSL = /* wgsl */ `
struct SortParams { n: u32, shift: u32, numBlocks: u32, pad: u32 }
@group(0) @binding(0) var<uniform> S: SortParams;
@group(0) @binding(1) var<storage, read> keysIn: array<u32>;
@group(0) @binding(2) var<storage, read> valsIn: array<u32>;
@group(0) @binding(3) var<storage, read_write> keysOut: array<u32>;
@group(0) @binding(4) var<storage, read_write> valsOut: array<u32>;
@group(0) @binding(5) var<storage, read_write> blockHist: array<u32>;
@group(0) @binding(6) var<storage, read_write> chunkSums: array<u32>;

const EPT = ${SORT_EPT}u;
const BLOCK = ${SORT_BLOCK}u;

var<workgroup> h: array<atomic<u32>, 256>;
${PART_SCAN_WGSL}
var<workgroup> offs: array<u32, 256>;
var<workgroup> sd: array<u32, 256>;

@compute @workgroup_size(256)
fn hist(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wg: vec3u) {
  if (wg.x >= S.numBlocks) { return; }   // dispatched for a capacity past the count (RadixSort.encodeUpTo)
  atomicStore(&h[t], 0u);
  workgroupBarrier();
  let start = wg.x * BLOCK;
  for (var r = 0u; r < EPT; r++) {
    let i = start + r * 256u + t;
    if (i < S.n) { atomicAdd(&h[(keysIn[i] >> S.shift) & 255u], 1u); }
  }
  workgroupBarrier();
  blockHist[t * S.numBlocks + wg.x] = atomicLoad(&h[t]);
}

@compute @workgroup_size(256)
fn scanChunks(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wg: vec3u) {
  if (wg.x >= S.numBlocks) { return; }
  let i = wg.x * 256u + t;   // 256 * numBlocks counts: numBlocks whole chunks
  let v = blockHist[i];
  part[t] = v;
  scanPart(t);
  blockHist[i] = part[t] - v;
  if (t == 255u) { chunkSums[wg.x] = part[255]; }
}

@compute @workgroup_size(256)
fn scanSums(@builtin(local_invocation_index) t: u32) {
${exclusiveScanWGSL('chunkSums', 'S.numBlocks')}
}

@compute @workgroup_size(256)
fn scatter(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) wg: vec3u) {
  if (wg.x >= S.numBlocks) { return; }
  let c = t * S.numBlocks + wg.x;
  offs[t] = blockHist[c] + chunkSums[c / 256u];
  workgroupBarrier();
  let start = wg.x * BLOCK;
  for (var r = 0u; r < EPT; r++) {
    if (start + r * 256u >= S.n) { break; }
    let i = start + r * 256u + t;
    let valid = i < S.n;
    var k = 0u;
    var d = 256u;
    if (valid) { k = keysIn[i]; d = (k >> S.shift) & 255u; }
    sd[t] = d;
    workgroupBarrier();
    var before = 0u;
    var after = 0u;
    for (var j = 0u; j < 256u; j++) {
      let same = sd[j] == d;
      before += select(0u, 1u, same && j < t);
      after += select(0u, 1u, same && j > t);
    }
    if (valid) {
      let dst = offs[d] + before;
      keysOut[dst] = k;
      valsOut[dst] = valsIn[i];
    }
    workgroupBarrier();
    if (valid && after == 0u) { offs[d] += before + 1u; }
    workgroupBarrier();
  }
}
`;

// ---------------------------------------------------------------------------------------- rasterize
// One instanced quad per visible splat, drawn front to back (sorted ascending depth). The quad is the
// oriented rectangle around the ellipse the reference enumerates pixels in (see project), so the same
// contributions are shaded.
// Blending is front-to-back "under": C += (1 - A) a c, A += (1 - A) a (T = 1 - A), black background.
// Two variants of the same arithmetic: 'conic' (default) evaluates D^T S^-1 D at the exact pixel centre
// (flat mean, conic, colour: 12 floats of varyings); 'uv' interpolates uv = L^T D (L the Cholesky factor
// of the conic) linearly over the quad, 6 floats, no per-fragment quadratic form, but the rasterizer's
// vertex snapping (1/256 px) shifts it slightly (see RENDER_BENCH.md for the PSNR of each).
export const RASTER_WGSL = /* wgsl */ `
@group(0) @binding(0) var<storage, read> proj: array<vec4f>;
@group(0) @binding(1) var<storage, read> order: array<u32>;
@group(0) @binding(2) var<uniform> V: vec4f;   // W H

struct VOut {
  @builtin(position) pos: vec4f,
  @location(0) @interpolate(flat) meanOp: vec4f,
  @location(1) @interpolate(flat) conic: vec4f,
  @location(2) @interpolate(flat) col: vec4f,
}

@vertex
fn vs(@builtin(vertex_index) vi: u32, @builtin(instance_index) ii: u32) -> VOut {
  let s = order[ii];
  let ax = proj[4u * s + 3u];
  let m = proj[4u * s];
  let sx = select(-1.0, 1.0, (vi & 1u) == 1u);
  let sy = select(-1.0, 1.0, (vi & 2u) == 2u);
  let px = m.xy + sx * ax.xy + sy * ax.zw;
  var o: VOut;
  o.pos = vec4f(2.0 * px.x / V.x - 1.0, 1.0 - 2.0 * px.y / V.y, 0.0, 1.0);
  o.meanOp = m;
  o.conic = proj[4u * s + 1u];
  o.col = proj[4u * s + 2u];
  return o;
}

@fragment
fn fs(in: VOut) -> @location(0) vec4f {
  let d = in.pos.xy - in.meanOp.xy;
  let power = -0.5 * (in.conic.x * d.x * d.x + in.conic.z * d.y * d.y) - in.conic.y * d.x * d.y;
  let a = min(0.99, in.meanOp.z * exp(power));
  if (a < 0.00392156862745098) { discard; }
  return vec4f(in.col.rgb * a, a);
}
`;

export const RASTER_UV_WGSL = /* wgsl */ `
@group(0) @binding(0) var<storage, read> proj: array<vec4f>;
@group(0) @binding(1) var<storage, read> order: array<u32>;
@group(0) @binding(2) var<uniform> V: vec4f;   // W H

struct VOut {
  @builtin(position) pos: vec4f,
  // uv = L^T D for the pixel offset D from the mean and the Cholesky factor L of the conic S^-1 = L L^T
  // (S^-1 = [A B; B C] -> L^T = [sqrt A, B / sqrt A; 0, sqrt(C - B^2 / A)], C - B^2 / A = 1 / Sigma2_yy):
  // D^T S^-1 D = dot(uv, uv), affine in screen space, so linear interpolation is exact
  @location(0) @interpolate(linear) uv: vec2f,
  @location(1) @interpolate(flat) colOp: vec4f,   // colour, opacity
}

@vertex
fn vs(@builtin(vertex_index) vi: u32, @builtin(instance_index) ii: u32) -> VOut {
  let s = order[ii];
  let ax = proj[4u * s + 3u];
  let m = proj[4u * s];          // mean, opacity
  let c = proj[4u * s + 1u];     // conic A B C, 1 / Sigma2_yy
  let sx = select(-1.0, 1.0, (vi & 1u) == 1u);
  let sy = select(-1.0, 1.0, (vi & 2u) == 2u);
  let d = sx * ax.xy + sy * ax.zw;
  let px = m.xy + d;
  var o: VOut;
  o.pos = vec4f(2.0 * px.x / V.x - 1.0, 1.0 - 2.0 * px.y / V.y, 0.0, 1.0);
  let sa = sqrt(c.x);
  o.uv = vec2f(sa * d.x + (c.y / sa) * d.y, sqrt(c.w) * d.y);
  o.colOp = proj[4u * s + 2u];
  return o;
}

@fragment
fn fs(in: VOut) -> @location(0) vec4f {
  let a = min(0.99, in.colOp.a * exp(-0.5 * dot(in.uv, in.uv)));
  if (a < 0.00392156862745098) { discard; }
  return vec4f(in.colOp.rgb * a, a);
}
`;

// ---------------------------------------------------------------------------------------- present
// Copies the linear float target to the canvas, clipped to [0, 1] (no transfer curve: 3DGS colours are
// display values already), opaque.
export const PRESENT_WGSL = /* wgsl */ `
@group(0) @binding(0) var src: texture_2d<f32>;
@vertex
fn vs(@builtin(vertex_index) vi: u32) -> @builtin(position) vec4f {
  let x = f32((vi << 1u) & 2u);
  let y = f32(vi & 2u);
  return vec4f(2.0 * x - 1.0, 1.0 - 2.0 * y, 0.0, 1.0);
}
@fragment
fn fs(@builtin(position) pos: vec4f) -> @location(0) vec4f {
  let c = textureLoad(src, vec2i(pos.xy), 0);
  return vec4f(clamp(c.rgb, vec3f(0.0), vec3f(1.0)), 1.0);
}
`;
