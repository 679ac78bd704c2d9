// The wasm kernel of the decoder (decoder/wasm/kernel.ts, compiled to kernel.wasm by
// decoder/wasm/build.mjs): instantiated once per JavaScript realm (a top-level await), in Node from
// the file and in browsers by fetch, both relative to this module. One linear memory holds every
// store, profile and the frame arena, and below them zstd's decoder (decoder/zstd.mjs; build.mjs
// merges it in); its views (views()) are renewed after the memory grows.
import { GsdError } from './errors.mjs';

const url = new URL('./wasm/kernel.wasm', import.meta.url);
const bytes = typeof process !== 'undefined' && process.versions && process.versions.node && url.protocol === 'file:'
  ? (await import('node:fs')).readFileSync(url)
  : await (await fetch(url)).arrayBuffer();
const { instance } = await WebAssembly.instantiate(bytes, {});
/** The kernel's exports (functions take and return pointers into its memory). */
export const K = instance.exports;
const memory = K.memory;

let buf = null;
const V = {};
/** Typed views of the kernel's memory (u8, u16, u32, i32, f32, f64, u64), renewed after a growth. */
export function views() {
  if (memory.buffer !== buf) {
    buf = memory.buffer;
    V.u8 = new Uint8Array(buf); V.u16 = new Uint16Array(buf); V.u32 = new Uint32Array(buf); V.i32 = new Int32Array(buf);
    V.f32 = new Float32Array(buf); V.f64 = new Float64Array(buf); V.u64 = new BigUint64Array(buf);
  }
  return V;
}

/**
 * Runs f (kernel calls that may allocate): a trap there is the heap failing to grow (wasm32: 4 GiB
 * at most), reported as LIMIT_EXCEEDED. The kernel allocates before it changes any state.
 */
export function allocating(what, f) {
  try {
    return f();
  } catch (e) {
    if (e instanceof WebAssembly.RuntimeError || e instanceof RangeError) {
      throw new GsdError('LIMIT_EXCEEDED', `decoder memory exhausted (${what}): ${e.message}`);
    }
    throw e;
  }
}

/** A block of n bytes of the kernel heap (LIMIT_EXCEEDED when the memory cannot grow). */
export function alloc(n, what = 'allocation') {
  if (!(n >= 0 && n <= 2 ** 31)) throw new GsdError('LIMIT_EXCEEDED', `${what}: ${n} bytes`);
  return allocating(what, () => K.alloc(n));
}

/**
 * Scratch memory of the frame being decoded (sections, block records, slot lists): take() hands out
 * 8-aligned blocks valid until the next reset() (the decoder resets it at the start of every frame).
 * One block of the kernel heap, kept between frames; when a frame needs more, further blocks are
 * added and, at the next reset, replaced by one of their total size.
 */
class Arena {
  constructor() { this.blocks = []; this.ptr = 0; this.cap = 0; this.used = 0; }
  reset() {
    if (this.blocks.length > 1) {
      const total = this.blocks.reduce((s, b) => s + b.cap, 0);
      for (const b of this.blocks) K.release(b.ptr);
      this.blocks = [];
      this._add(total);
    }
    this.used = 0;
  }
  _add(cap) {
    const ptr = alloc(cap, 'frame scratch');
    this.blocks.push({ ptr, cap });
    this.ptr = ptr; this.cap = cap; this.used = 0;
  }
  /** n bytes, 8-aligned (LIMIT_EXCEEDED when the memory cannot grow). */
  take(n) {
    n = (n + 7) & ~7;
    if (this.used + n > this.cap) this._add(Math.max(n, 2 * this.cap, 1 << 20));
    const p = this.ptr + this.used;
    this.used += n;
    return p;
  }
  /** Copies the bytes u8 into the arena; returns their pointer. */
  put(u8) {
    const p = this.take(u8.length);
    views().u8.set(u8, p);
    return p;
  }
}
export const arena = new Arena();

const BL_HEAD = 64;   // bytes before the components of a block record (kernel.ts, BL)

/**
 * Writes the kernel record of an ADD or UPDATE block (an object {n, ids, mask, comps: [{j, src}]},
 * with 32 bytes of kernel scratch per component after them) and its scratch arrays (slots, sums; for an
 * UPDATE the undo records: old codes, sums and floats; for a keyframe's ADD block the scratch of its
 * id-table entries and of its tiles' one-byte codes, kernel.ts K8_ROOM); returns its pointer.
 */
export function blockRecord(b, update, keyframe = false) {
  const n = b.n, nc = b.comps.length;
  const bl = arena.take(BL_HEAD + 40 * nc), slots = arena.take(4 * n), s0 = arena.take(4 * n), s1 = arena.take(4 * n);
  const ov = update ? arena.take(4 * n * nc) : keyframe ? arena.take(8 * n + 4096 + K.K8_ROOM.value) : 0;
  const os0 = update ? arena.take(4 * n) : 0, os1 = update ? arena.take(4 * n) : 0;
  const of = update ? arena.take(4 * n * nc) : 0;
  const u = views().u32, w = bl >> 2;
  u.fill(0, w, w + BL_HEAD / 4);
  u[w] = n; u[w + 1] = b.ids; u[w + 2] = b.mask; u[w + 3] = nc; u[w + 4] = slots; u[w + 5] = s0; u[w + 6] = s1;
  u[w + 7] = ov; u[w + 8] = os0; u[w + 9] = os1; u[w + 12] = of;
  for (let c = 0; c < nc; c++) { u[w + 16 + 2 * c] = b.comps[c].j; u[w + 17 + 2 * c] = b.comps[c].src; }
  return bl;
}
/**
 * Writes the kernel record of a PALETTE block ({n, ids: its u16 indices, comps: [{j, src}]}, the
 * layout of a block record without the scratch arrays: kernel.ts, PB); returns its pointer.
 */
export function paletteRecord(b) {
  const nc = b.comps.length, pb = arena.take(BL_HEAD + 8 * nc), u = views().u32, w = pb >> 2;
  u.fill(0, w, w + BL_HEAD / 4);
  u[w] = b.n; u[w + 1] = b.ids; u[w + 3] = nc;
  for (let c = 0; c < nc; c++) { u[w + 16 + 2 * c] = b.comps[c].j; u[w + 17 + 2 * c] = b.comps[c].src; }
  return pb;
}

/** Word i of a block record. */
export const blockField = (bl, i) => views().u32[(bl >> 2) + i];

/**
 * Frees kernel memory when the JavaScript object owning it is collected (profiles and stores that
 * were not released explicitly): register(owner, own, own) with own = {free()} holding the
 * pointers (never the owner itself).
 */
export const finalizer = typeof FinalizationRegistry === 'function' ? new FinalizationRegistry((own) => own.free()) : null;
