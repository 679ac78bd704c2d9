// The GSD decoder's inner loops (AssemblyScript, compiled to kernel.wasm by build.mjs). JavaScript
// (decoder/*.mjs) parses and checks the frame's structure, sizes every array it hands over and
// calls these functions with pointers into this module's memory; they never read outside the
// arrays they are given (every count they loop over was checked against the array's size in
// JavaScript, and every index they compute from data is checked here: a slot comes from the id
// table, which holds only slots < highWater; a code indexes a table only once its validity was
// checked, and the tables cover every valid code (all 256 for 1-byte codes). Wasm loads and stores are themselves
// bounds-checked against the linear memory. Memory is the TLSF heap of the AssemblyScript runtime
// (heap.alloc / heap.free); an allocation that cannot grow the memory traps, and the JavaScript
// caller turns that into a GsdError before any state has changed.
//
// Layouts (little-endian, byte offsets) shared with decoder/kernel.mjs:
//
// Profile P (written once per stream header by JavaScript):
//   0 NC, 4 R (row words), 8 stride (floats per slot), 12 K, 16 lossless, 20 S (slot bits),
//   24 K0[0], 28 K0[1], 32 K1[0], 36 K1[1] (lane constants of the id words),
//   40 rotTable (f64[2^rotationBits] pointer), 44 padFirst (16 + 3K: the first float after the SH rest),
//   48 originX, 56 originY, 64 originZ, 72 cellSize, 80 posStep (f64), 88 the freed slot's
//   opacity (f32), 92 the two zero floats among the attributes (byte offsets, u16 each),
//   96 palN (entries of the SH palette, SPEC 5.9; 0: none), 100 palNC (3K codes per entry),
//   104 palW (their width, 1 or 2), 108 palDesc (pointer: 32 bytes per entry component j: 0 maxU,
//     4 neg, 8 k0, 12 k1 (lane constants of word j + 2 of an entry's record), 16 table (f32 pointer,
//     one entry per pattern of width palW)),
//   128 + 32 j: component j: 0 width (1, 2, 4), 4 ci (index in the row in units of the width),
//     8 dataOff (float index in the slot), 12 k0, 16 k1 (lane constants of word j + 2),
//     20 maxU, 24 neg (0: none), 28 table (f32 pointer, one entry per valid code, 0: none).
//   A code v is invalid iff (lossless) its exponent bits are all ones, else iff v > maxU and
//   (neg == 0 or v < neg). With a palette, SH_REST is one component (14): the u16 index of an
//   entry, valid below palN, and its table maps the index to its value as a float.
//
// Store ST (allocated by storeNew):
//   0 P, 4 rows, 8 data, 12 capacity, 16 highWater, 20 live, 24 lane0, 28 lane1, 32 generation,
//   36 ids (id table), 40 idCap, 44 idShift, 48 idSize, 52 freeList, 56 freeCount, 60 dirtyBits,
//   64 dirtyList (capacity entries), 68 dirtyCount, 72 palCodes (palN x palNC codes of width palW,
//   entry e at palCodes + palW palNC e, channel-major), 76 palFloats (palN x palNC f32, likewise),
//   80 the id table's key stride (4 R: the key of slot s is the id in its row).
//   The palette starts all zero (SPEC 2.5); a keyframe's store is a new one.
//   Row of slot s: R u32 words at rows + 4 R s: 0-1 id (u64), 2 s0, 3 s1 (pre-fmix32 lane sums of
//   the record, SPEC 7.5), 4 mark (staged-delete stamp), 5 flags (bit 0 alive), then the codes.
//   Slot floats at data + 4 stride s (decoder/layout.mjs).
//   Id table: idCap entries of 8 bytes (u32 tag of the id, i32 slot or -1), linear probing,
//   backward-shift deletion, load <= 1/2; a tag match is confirmed by the slot's row (see idtGet).
//
// Block BL (one ADD or UPDATE block, written by JavaScript per frame):
//   0 n, 4 ids (u64[n]), 8 mask, 12 nc, 16 slots (i32[n]), 20 s0, 24 s1 (i32[n]), 28 ov (u32[n nc];
//   a keyframe's ADD block: its scratch, 8 n + 4096 + K8_ROOM bytes, for keyframeBlock's id-table
//   entries and region counts, then key8Setup's scratch),
//   32 os0, 36 os1 (i32[n]), 40 doneI, 44 doneC (UPDATE progress), 48 of (u32[n nc]: an UPDATE's old
//   floats), 52 errJ, 56 lane0, 60 lane1,
//   64 + 8 c: component c (ascending j): 0 j, 4 src (nc columns of n codes at the width of j);
//   then 32 bytes per component of the kernel's own (a table of the block's components).
//
// Palette block PB (one PALETTE block, written by JavaScript per frame): the layout of BL with
//   4 the entry indices (u16[n]) in place of the ids and nc = palNC components (entry code j).

const H_MARK: u32 = 4, H_FLAGS: u32 = 5;   // row words (the sums are words 2 and 3: bytes 8, 12)
const PC: usize = 128;

// the live ids in order, for ranked ids (SPEC 6.1, 1.2): order.ts; ordFromStore and ordRemoveSlots below
import { ordBuild, ordRemoveIds } from './order';
export { LB, ordWarm, ordNew, ordFree, ordSize, ordLeaves, ordPages, ordReserve, ordInsert, ordRemove, ordInsertIds,
  ordRemoveIds, ordRemoveHinted, ordSelect, ordSelectLists, ordAt, ordCopy, ordCheck, ordBuild } from './order';

// ------------------------------------------------------------------ memory
export function alloc(n: usize): usize { return heap.alloc(n > 0 ? n : 4); }
/**
 * A block of count * each bytes; a size past what the heap can give (its largest block is just under
 * 1 GiB) traps here, before the product could wrap around in 32 bits.
 */
function block(count: u64, each: u64): usize {
  const n = count * each;
  if (n > 0x3FF00000) unreachable();
  return heap.alloc(n > 0 ? <usize>n : 4);
}
export function release(p: usize): void { if (p) heap.free(p); }
/**
 * block(count, each) starting on a 4 KiB page (the store's rows and floats: a row of 128 bytes and a
 * slot of floats then span whole cache lines and one page, not one more of each at a random offset);
 * the heap's own pointer is kept in the word before it, for freeAligned.
 */
function blockAligned(count: u64, each: u64): usize {
  const n = count * each;
  if (n > 0x3FF00000) unreachable();
  const raw = heap.alloc(<usize>n + 4096), p = (raw + 4 + 4095) & ~<usize>4095;
  store<usize>(p - 4, raw);
  return p;
}
function freeAligned(p: usize): void { heap.free(load<usize>(p - 4)); }

// ------------------------------------------------------------------ CRC-32 (SPEC 4.8), slicing-by-16
let crcT: usize = 0;   // 16 tables of 256 u32: table t maps a byte to its CRC contribution t bytes later
function crcInit(): void {
  crcT = heap.alloc(16 * 256 * 4);
  for (let n: u32 = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = (c & 1) ? (c >>> 1) ^ 0xEDB88320 : c >>> 1;
    store<u32>(crcT + (<usize>n << 2), c);
  }
  for (let n: u32 = 0; n < 256; n++) {
    let c = load<u32>(crcT + (<usize>n << 2));
    for (let t: u32 = 1; t < 16; t++) {
      c = load<u32>(crcT + (<usize>(c & 0xFF) << 2)) ^ (c >>> 8);
      store<u32>(crcT + (<usize>(t * 256 + n) << 2), c);
    }
  }
}

/**
 * The running CRC-32 register c (start: 0xFFFFFFFF; the CRC is the final c ^ 0xFFFFFFFF) after n more
 * bytes at p. Each lookup takes its byte times 4 out of the word with one shift and one mask, and
 * its table's place is the load's constant offset from the one base T (no register per table).
 */
export function crc32(c: u32, p: usize, n: usize): u32 {
  if (!crcT) crcInit();
  const T = crcT, end = p + n, end16 = end - (n & 15);
  while (p < end16) {
    const a = c ^ load<u32>(p), b = load<u32>(p, 4), d = load<u32>(p, 8), e = load<u32>(p, 12);
    // the words after the first do not depend on c: their lookups are summed first, in a tree, so
    // that the chain from one c to the next is one lookup and three xors
    const rest = (((load<u32>(T + <usize>((b << 2) & 0x3FC), 11264) ^ load<u32>(T + <usize>((b >>> 6) & 0x3FC), 10240))
      ^ (load<u32>(T + <usize>((b >>> 14) & 0x3FC), 9216) ^ load<u32>(T + <usize>((b >>> 22) & 0x3FC), 8192)))
      ^ ((load<u32>(T + <usize>((d << 2) & 0x3FC), 7168) ^ load<u32>(T + <usize>((d >>> 6) & 0x3FC), 6144))
      ^ (load<u32>(T + <usize>((d >>> 14) & 0x3FC), 5120) ^ load<u32>(T + <usize>((d >>> 22) & 0x3FC), 4096))))
      ^ ((load<u32>(T + <usize>((e << 2) & 0x3FC), 3072) ^ load<u32>(T + <usize>((e >>> 6) & 0x3FC), 2048))
      ^ (load<u32>(T + <usize>((e >>> 14) & 0x3FC), 1024) ^ load<u32>(T + <usize>((e >>> 22) & 0x3FC), 0)));
    c = rest ^ ((load<u32>(T + <usize>((a << 2) & 0x3FC), 15360) ^ load<u32>(T + <usize>((a >>> 6) & 0x3FC), 14336))
      ^ (load<u32>(T + <usize>((a >>> 14) & 0x3FC), 13312) ^ load<u32>(T + <usize>((a >>> 22) & 0x3FC), 12288)));
    p += 16;
  }
  while (p < end) { c = load<u32>(T + (<usize>((c ^ <u32>load<u8>(p)) & 0xFF) << 2)) ^ (c >>> 8); p++; }
  return c;
}

// ------------------------------------------------------------------ sections (SPEC 4.4)
/**
 * raw (C n elements of w bytes, byte-shuffled when filters & 4) -> dst (C n elements of w bytes):
 * unzigzag (filters & 2), the per-component prefix sum (filters & 1), then the channel sum
 * (filters & 8, where C is a multiple of 3: component j plus component j - C/3, ascending j), modulo
 * 2^(8 w). dst may equal raw only without the shuffle.
 */
export function unfilter(raw: usize, dst: usize, C: u32, n: u32, w: u32, filters: u32): void {
  const N = <usize>C * n, shuffle = (filters & 4) != 0, zig = (filters & 2) != 0, delta = (filters & 1) != 0;
  if (w == 8) {
    if (shuffle) unshuffle64(raw, dst, N); else if (raw != dst) memory.copy(dst, raw, 8 * N);
    if (zig && delta) filter64(dst, C, n, true, true);
    else if (zig) filter64(dst, C, n, true, false);
    else if (delta) filter64(dst, C, n, false, true);
  } else if (w == 4) {
    if (shuffle) unshuffle32(raw, dst, N); else if (raw != dst) memory.copy(dst, raw, 4 * N);
    if (zig && delta) filter32(dst, C, n, true, true);
    else if (zig) filter32(dst, C, n, true, false);
    else if (delta) filter32(dst, C, n, false, true);
  } else if (w == 1) {   // (never shuffled: one byte plane)
    if (zig && delta) filter8(raw, dst, C, n, true, true);
    else if (zig) filter8(raw, dst, C, n, true, false);
    else if (delta) filter8(raw, dst, C, n, false, true);
    else if (raw != dst) memory.copy(dst, raw, N);
  } else if (!shuffle && !zig && !delta) {   // (the channel sum alone)
    if (raw != dst) memory.copy(dst, raw, 2 * N);
  } else {
    const mask: u32 = (1 << (8 * w)) - 1;
    for (let j: usize = 0; j < C; j++) {
      let prev: u32 = 0;
      for (let e = j * n, end = e + n; e < end; e++) {
        let v = shuffle ? (<u32>load<u8>(raw + e) | (<u32>load<u8>(raw + N + e) << 8)) : <u32>load<u16>(raw + 2 * e);
        if (zig) v = ((v >>> 1) ^ (0 - (v & 1))) & mask;
        if (delta) { v = (v + prev) & mask; prev = v; }
        store<u16>(dst + 2 * e, <u16>v);
      }
    }
  }
  if ((filters & 8) != 0 && C % 3 == 0) channelSum(dst, C, n, w);
}
/**
 * In place on C components of n elements of w bytes (C a multiple of 3, g = C / 3): component j plus
 * component j - g, element by element, for j = g .. C-1 ascending (the second channel gets the first's
 * values, then the third the second's), modulo 2^(8 w); 16 bytes at a time, lanes of w bytes.
 */
function channelSum(p: usize, C: u32, n: u32, w: u32): void {
  const row = <usize>n * w, g = C / 3, from = p + <usize>g * row, end = p + <usize>C * row;
  if (w == 8) channelRows<u64>(from, end, <usize>g * row);
  else if (w == 4) channelRows<u32>(from, end, <usize>g * row);
  else if (w == 2) channelRows<u16>(from, end, <usize>g * row);
  else channelRows<u8>(from, end, <usize>g * row);
}
/** [d, end) += [d - back, end - back) in lanes of T, ascending, so that every byte read is final (the
 * third channel reads the second's sums); 16 bytes at a time where those lie wholly below them. */
@inline function channelRows<T>(d: usize, end: usize, back: usize): void {
  const T_SIZE = <usize>sizeof<T>();
  if (back >= 16) for (; d + 16 <= end; d += 16) {
    const a = v128.load(d), b = v128.load(d - back);
    if (T_SIZE == 8) v128.store(d, i64x2.add(a, b));
    else if (T_SIZE == 4) v128.store(d, i32x4.add(a, b));
    else if (T_SIZE == 2) v128.store(d, i16x8.add(a, b));
    else v128.store(d, i8x16.add(a, b));
  }
  for (; d < end; d += T_SIZE) store<T>(d, <T>(load<T>(d) + load<T>(d - back)));
}
/** Byte planes (plane k: byte k of every element) -> N little-endian u32 (raw != dst), 16 at a time. */
function unshuffle32(raw: usize, dst: usize, N: usize): void {
  const p1 = raw + N, p2 = raw + 2 * N, p3 = raw + 3 * N;
  let e: usize = 0;
  for (; e + 16 <= N; e += 16) {
    const a = v128.load(raw + e), b = v128.load(p1 + e), c = v128.load(p2 + e), d = v128.load(p3 + e);
    const ab0 = i8x16.shuffle(a, b, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const ab1 = i8x16.shuffle(a, b, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    const cd0 = i8x16.shuffle(c, d, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const cd1 = i8x16.shuffle(c, d, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    const o = dst + 4 * e;
    v128.store(o, i8x16.shuffle(ab0, cd0, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23));
    v128.store(o, i8x16.shuffle(ab0, cd0, 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31), 16);
    v128.store(o, i8x16.shuffle(ab1, cd1, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23), 32);
    v128.store(o, i8x16.shuffle(ab1, cd1, 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31), 48);
  }
  for (; e < N; e++) {
    store<u32>(dst + 4 * e, <u32>load<u8>(raw + e) | (<u32>load<u8>(p1 + e) << 8) | (<u32>load<u8>(p2 + e) << 16) | (<u32>load<u8>(p3 + e) << 24));
  }
}
function unshuffle64(raw: usize, dst: usize, N: usize): void {
  const p1 = raw + N, p2 = raw + 2 * N, p3 = raw + 3 * N, p4 = raw + 4 * N, p5 = raw + 5 * N, p6 = raw + 6 * N, p7 = raw + 7 * N;
  let e: usize = 0;
  for (; e + 16 <= N; e += 16) {   // bytes -> 16-bit pairs -> 32-bit halves -> 64-bit elements
    const b0 = v128.load(raw + e), b1 = v128.load(p1 + e), b2 = v128.load(p2 + e), b3 = v128.load(p3 + e);
    const b4 = v128.load(p4 + e), b5 = v128.load(p5 + e), b6 = v128.load(p6 + e), b7 = v128.load(p7 + e);
    const h01l = i8x16.shuffle(b0, b1, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const h01h = i8x16.shuffle(b0, b1, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    const h23l = i8x16.shuffle(b2, b3, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const h23h = i8x16.shuffle(b2, b3, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    const h45l = i8x16.shuffle(b4, b5, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const h45h = i8x16.shuffle(b4, b5, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    const h67l = i8x16.shuffle(b6, b7, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const h67h = i8x16.shuffle(b6, b7, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    // low words (bytes 0-3) of elements e..e+3, e+4..e+7, e+8..e+11, e+12..e+15; then high words
    const l0 = i8x16.shuffle(h01l, h23l, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
    const l1 = i8x16.shuffle(h01l, h23l, 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31);
    const l2 = i8x16.shuffle(h01h, h23h, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
    const l3 = i8x16.shuffle(h01h, h23h, 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31);
    const g0 = i8x16.shuffle(h45l, h67l, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
    const g1 = i8x16.shuffle(h45l, h67l, 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31);
    const g2 = i8x16.shuffle(h45h, h67h, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
    const g3 = i8x16.shuffle(h45h, h67h, 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31);
    const o = dst + 8 * e;
    v128.store(o, i32x4.shuffle(l0, g0, 0, 4, 1, 5));
    v128.store(o, i32x4.shuffle(l0, g0, 2, 6, 3, 7), 16);
    v128.store(o, i32x4.shuffle(l1, g1, 0, 4, 1, 5), 32);
    v128.store(o, i32x4.shuffle(l1, g1, 2, 6, 3, 7), 48);
    v128.store(o, i32x4.shuffle(l2, g2, 0, 4, 1, 5), 64);
    v128.store(o, i32x4.shuffle(l2, g2, 2, 6, 3, 7), 80);
    v128.store(o, i32x4.shuffle(l3, g3, 0, 4, 1, 5), 96);
    v128.store(o, i32x4.shuffle(l3, g3, 2, 6, 3, 7), 112);
  }
  for (; e < N; e++) {
    const lo = <u32>load<u8>(raw + e) | (<u32>load<u8>(p1 + e) << 8) | (<u32>load<u8>(p2 + e) << 16) | (<u32>load<u8>(p3 + e) << 24);
    const hi = <u32>load<u8>(p4 + e) | (<u32>load<u8>(p5 + e) << 8) | (<u32>load<u8>(p6 + e) << 16) | (<u32>load<u8>(p7 + e) << 24);
    store<u32>(dst + 8 * e, lo); store<u32>(dst + 8 * e, hi, 4);
  }
}
/** In place on C components of n u64: unzigzag (ZIG) and prefix sum (DELTA), modulo 2^64. */
@inline function filter64(p: usize, C: u32, n: u32, ZIG: bool, DELTA: bool): void {
  for (let j: usize = 0; j < C; j++) {
    let prev: u64 = 0;
    for (let e = p + 8 * j * n, end = e + 8 * <usize>n; e < end; e += 8) {
      let v = load<u64>(e);
      if (ZIG) v = (v >>> 1) ^ (0 - (v & 1));
      if (DELTA) { v += prev; prev = v; }
      store<u64>(e, v);
    }
  }
}
/** C components of n u8 from raw to dst (the same or apart): unzigzag (ZIG) and prefix sum (DELTA), modulo 2^8. */
@inline function filter8(raw: usize, dst: usize, C: u32, n: u32, ZIG: bool, DELTA: bool): void {
  for (let j: usize = 0; j < C; j++) {
    let prev: u32 = 0;
    for (let e = j * n, end = e + <usize>n; e < end; e++) {
      let v = <u32>load<u8>(raw + e);
      if (ZIG) v = (v >>> 1) ^ (0 - (v & 1));
      if (DELTA) { v += prev; prev = v; }
      store<u8>(dst + e, <u8>v);
    }
  }
}
/** In place on C components of n u32: unzigzag (ZIG) and prefix sum (DELTA), modulo 2^32. */
@inline function filter32(p: usize, C: u32, n: u32, ZIG: bool, DELTA: bool): void {
  for (let j: usize = 0; j < C; j++) {
    let prev: u32 = 0;
    for (let e = p + 4 * j * n, end = e + 4 * <usize>n; e < end; e += 4) {
      let v = load<u32>(e);
      if (ZIG) v = (v >>> 1) ^ (0 - (v & 1));
      if (DELTA) { v += prev; prev = v; }
      store<u32>(e, v);
    }
  }
}

// ------------------------------------------------------------------ id rules (SPEC 6.2)
/** 0: ids valid (< 2^bits) and strictly ascending; 1: an id outside; 2: equal neighbours; 3: descending. */
export function checkIds(ids: usize, n: u32, bits: u32): i32 {
  const lim: u64 = bits >= 64 ? 0 : (<u64>1 << bits), top: u64 = lim - 1;   // (lim 0: top 2^64 - 1)
  // first one flag for any violation, without a branch on the ids; the loop below finds the first
  // one's kind when there is one
  if (n == 0) return 0;
  let last = load<u64>(ids), bad = <u32>(last > top);
  for (let i: usize = 1; i < <usize>n; i++) {
    const v = load<u64>(ids + 8 * i);
    bad |= <u32>(v > top) | <u32>(v <= last);
    last = v;
  }
  if (!bad) return 0;
  let prev: u64 = 0;
  for (let i: u32 = 0; i < n; i++) {
    const v = load<u64>(ids + <usize>8 * <usize>i);
    if (lim != 0 && v >= lim) return 1;
    if (i > 0) { if (v == prev) return 2; if (v < prev) return 3; }
    prev = v;
  }
  return 0;
}

let demortonT: usize = 0;   // 4096 u32: 12 interleaved bits -> their 4 x, 4 y and 4 z bits at bytes 0, 1, 2
function demortonInit(): void {
  demortonT = heap.alloc(4096 * 4);
  for (let m: u32 = 0; m < 4096; m++) {
    let x: u32 = 0, y: u32 = 0, z: u32 = 0;
    for (let k: u32 = 0; k < 4; k++) {
      x |= ((m >> (3 * k)) & 1) << k; y |= ((m >> (3 * k + 1)) & 1) << k; z |= ((m >> (3 * k + 2)) & 1) << k;
    }
    store<u32>(demortonT + (<usize>m << 2), x | (y << 8) | (z << 16));
  }
}

/**
 * The ids and POSITION codes of an ADD_IMPLICIT block (SPEC 6.1, implicit_ids): n u64 placements at
 * q, ids written to ids (n u64), the three position codes planar at pos (3n codes of w bytes).
 * bits = 3 (B + pb), shift = 3 pb, S = slot bits. 0: done; 1: a placement >= 2^bits; 2: placements
 * descending; 3: more placements in one cell than it has slots.
 */
export function implicitIds(q: usize, n: u32, bits: u32, shift: u32, S: u32, ids: usize, pos: usize, w: u32): i32 {
  if (!demortonT) demortonInit();
  const low: u64 = (<u64>1 << shift) - 1, full: u64 = <u64>1 << S;
  const px = pos, py = pos + <usize>w * <usize>n, pz = pos + <usize>2 * <usize>w * <usize>n;
  let first: u32 = 0, prev: u64 = 0;
  for (let i: u32 = 0; i < n; i++) {
    const v = load<u64>(q + <usize>8 * <usize>i);
    if (bits < 64 && (v >> bits) != 0) return 1;
    if (i > 0 && v < prev) return 2;
    const cell = v >> shift;
    if (i == 0 || cell != (prev >> shift)) first = i;
    const rank = <u64>(i - first);
    if (rank >= full) return 3;
    store<u64>(ids + <usize>8 * <usize>i, (cell << S) | rank);
    // the position codes: 12 bits of the Morton code at a time through the table (4 bits per axis)
    let m = v & low, xyz: u32 = 0, k: u32 = 0;
    let x: u32 = 0, y: u32 = 0, z: u32 = 0;
    while (m != 0) {
      xyz = load<u32>(demortonT + (<usize>(<u32>m & 0xFFF) << 2));
      x |= (xyz & 0xF) << k; y |= ((xyz >> 8) & 0xF) << k; z |= (xyz >> 16) << k;
      m >>= 12; k += 4;
    }
    const o = <usize>w * <usize>i;
    if (w == 4) { store<u32>(px + o, x); store<u32>(py + o, y); store<u32>(pz + o, z); }
    else if (w == 2) { store<u16>(px + o, <u16>x); store<u16>(py + o, <u16>y); store<u16>(pz + o, <u16>z); }
    else { store<u8>(px + o, <u8>x); store<u8>(py + o, <u8>y); store<u8>(pz + o, <u8>z); }
    prev = v;
  }
  return 0;
}

/** A bit set of 2^DUP_LOG bits for sharedIds, all zero between its calls (made at its first call). */
const DUP_LOG: u32 = 20, DUP_SEARCHES: i32 = 4096;
let dupBits: usize = 0;
@inline function dupWord(id: u64): usize { return dupBits + 4 * <usize>(<u32>((id * 0x9E3779B97F4A7C15) >>> (64 - DUP_LOG)) >>> 5); }
@inline function dupBit(id: u64): u32 { return <u32>1 << (<u32>((id * 0x9E3779B97F4A7C15) >>> (64 - DUP_LOG)) & 31); }
/** Whether the strictly ascending list of n ids at p holds id (binary search). */
function listHas(p: usize, n: u32, id: u64): bool {
  let a: i32 = 0, e: i32 = <i32>n - 1;
  while (a <= e) {
    const mid = (a + e) >> 1, v = load<u64>(p + <usize>8 * <usize>mid);
    if (v == id) return true;
    if (v < id) a = mid + 1; else e = mid - 1;
  }
  return false;
}
/**
 * Whether an id is in two of the k strictly ascending id lists (lists: k pairs u32 pointer, u32
 * count): 0 no, 1 yes, 2 undecided (more hash collisions than DUP_SEARCHES binary searches settle:
 * the caller checks with a scratch id table, insertIds). Each id tests, then sets, its bit of a hash
 * of the id in a bit set; a set bit (an id of an earlier list, or a collision: with the 5,000 ids
 * of a typical delta about 12 per frame) is settled by binary searches of the earlier lists. No
 * branch depends on the order of two ids, as a merge's does (its mispredictions made the pairwise
 * merges of a typical delta's three blocks 3 to 4 times slower). The bits are cleared before returning.
 */
export function sharedIds(lists: usize, k: u32): i32 {
  if (!dupBits) { dupBits = heap.alloc(<usize>1 << (DUP_LOG - 3)); memory.fill(dupBits, 0, <usize>1 << (DUP_LOG - 3)); }
  let found: i32 = 0, budget: i32 = DUP_SEARCHES;
  for (let m: u32 = 0; m < k && !found; m++) {
    const p = load<usize>(lists + <usize>8 * <usize>m), n = <usize>load<u32>(lists + <usize>8 * <usize>m, 4);
    for (let i: usize = 0; i < n; i++) {
      const id = load<u64>(p + 8 * i), w = dupWord(id), bit = dupBit(id), b = load<u32>(w);
      if (b & bit) {
        for (let q: u32 = 0; q < m && !found; q++) {
          if (--budget < 0) found = 2;
          else if (listHas(load<usize>(lists + <usize>8 * <usize>q), load<u32>(lists + <usize>8 * <usize>q, 4), id)) found = 1;
        }
        if (found) break;
      }
      store<u32>(w, b | bit);
    }
  }
  for (let m: u32 = 0; m < k; m++) {
    const p = load<usize>(lists + <usize>8 * <usize>m), n = <usize>load<u32>(lists + <usize>8 * <usize>m, 4);
    for (let i: usize = 0; i < n; i++) store<u32>(dupWord(load<u64>(p + 8 * i)), 0);
  }
  return found;
}

/**
 * Inserts ids[0..n) into the scratch id table t (idtNew, sized for every id it will get); 1 when one
 * of them is there already (an id in two blocks), else 0.
 */
export function insertIds(t: usize, ids: usize, n: u32): i32 {
  for (let i: usize = 0; i < n; i++) {
    const p = ids + 8 * i;   // the slot: the id's address / 8 (the table's keys are the ids in place)
    if (idtSet(t, load<u64>(p), <i32>(p >>> 3)) >= 0) return 1;
  }
  return 0;
}

/** The code at which gapDecode failed (its index), when it returns 1, 2 or 3. */
export let gapFailCode: u32 = 0;

/** The bits of st[0, len) from bit pos (most significant first), left-aligned: 57+ of them, zeros past len. */
// @ts-ignore: decorator
@inline function gapWord(st: usize, len: usize, pos: u64): u64 {
  const byte = <usize>(pos >> 3);
  let word: u64 = 0;
  if (byte + 8 <= len) word = bswap<u64>(load<u64>(st + byte));
  else for (let j = byte; j < len; j++) word |= <u64>load<u8>(st + j) << (<u64>(56 - 8 * (j - byte)));
  return word << (pos & 7);
}

/**
 * gap_decode of SPEC.md 4.4 (compression 2, format 1.4): the n codes of order k after the k byte of
 * the stored bytes st[0, len) (k < W = 8w, checked by the caller) as n w-byte values at out. Code i
 * is z zeros, a one, z + k bits t; its gap (2^z - 1) 2^k + t; value 0 the gap, value i value i-1
 * plus 1 plus the gap. Returns 0, or: 1 a code past the stored bytes, 2 a zero run longer than
 * W - k, 3 a value >= 2^W (for 1 to 3, gapFailCode is the code's index), 4 whole bytes after the
 * last code, 5 a one bit in the padding. It reads st only below len (8 bytes at a time where 8 are
 * there) and writes out[0, n w); values and bit positions are u64 (a value is below 2^34 before its
 * check), so nothing wraps for any len or n.
 */
export function gapDecode(st: usize, len: u32, n: u32, k: u32, w: u32, out: usize): i32 {
  const W: u32 = 8 * w, run = W - k, L = <usize>len, end: u64 = <u64>len << 3, top: u64 = <u64>1 << W;
  let pos: u64 = 8, prev: u64 = <u64>-1;
  for (let i: u32 = 0; i < n; i++) {
    const word = gapWord(st, L, pos);
    const z = <u32>clz<u64>(word);   // 64: no one among the bits at hand
    if (z > run) {   // the sequential reading meets the end or the (run + 1)th zero first
      gapFailCode = i;
      return pos + run + 1 <= end ? 2 : 1;
    }
    const m = z + k, used: u64 = <u64>(z + 1 + m);
    if (pos + used > end) { gapFailCode = i; return 1; }
    let t: u64 = 0;
    if (m != 0) {
      // the whole code in the word when it is at most 57 bits; else t from a word at its own start
      t = used <= 57 ? (word << (z + 1)) >> (64 - m) : gapWord(st, L, pos + z + 1) >> (64 - m);
    }
    const x = prev + 1 + ((((<u64>1) << z) - 1) << k) + t;   // < 2^34: z + k <= 32
    if (x >= top) { gapFailCode = i; return 3; }
    if (w == 4) store<u32>(out + 4 * <usize>i, <u32>x);
    else if (w == 2) store<u16>(out + 2 * <usize>i, <u16>x);
    else store<u8>(out + <usize>i, <u8>x);
    prev = x;
    pos += used;
  }
  if (end - pos >= 8) return 4;
  if (pos < end && (load<u8>(st + <usize>(pos >> 3)) & (0xFF >> <u32>(pos & 7))) != 0) return 5;
  return 0;
}

/** The u32 ranks of an UPDATE_RANKED or DELETE_RANKED block: 0 strictly ascending; 2 equal neighbours; 3 descending. */
export function checkRanks(r: usize, n: u32): i32 {
  for (let i: usize = 1; i < <usize>n; i++) {
    const a = load<u32>(r + 4 * (i - 1)), b = load<u32>(r + 4 * i);
    if (b <= a) return b == a ? 2 : 3;
  }
  return 0;
}

/** Ranges (C = 2: n firsts then n lasts): 0 ok, 1 an end outside 2^bits, 2 first > last. */
export function checkRanges(r: usize, n: u32, bits: u32): i32 {
  const lim: u64 = bits >= 64 ? 0 : (<u64>1 << bits);
  for (let i: usize = 0; i < n; i++) {
    const a = load<u64>(r + 8 * i), b = load<u64>(r + 8 * (i + n));
    if (lim != 0 && (a >= lim || b >= lim)) return 1;
    if (a > b) return 2;
  }
  return 0;
}

/** 0 when every cell code < 2^cb. */
export function checkCells(c: usize, n: u32, cb: u32): i32 {
  const lim: u64 = cb >= 64 ? 0 : (<u64>1 << cb);
  for (let i: usize = 0; i < n; i++) if (lim != 0 && load<u64>(c + 8 * i) >= lim) return 1;
  return 0;
}

/**
 * The indices of one PALETTE block (u16[n]): 0 when every index < palN and they are strictly
 * ascending; 1 an index outside the palette, 2 equal neighbours, 3 descending (SPEC 6.2).
 */
export function checkPalIdx(idx: usize, n: u32, palN: u32): i32 {
  let prev: u32 = 0;
  for (let i: usize = 0; i < n; i++) {
    const v = <u32>load<u16>(idx + 2 * i);
    if (v >= palN) return 1;
    if (i > 0) { if (v == prev) return 2; if (v < prev) return 3; }
    prev = v;
  }
  return 0;
}

/** Sets the bits of a block's indices in the bit set `bits`; 1 when one was set already (an index in two blocks). */
export function markPalIdx(bits: usize, idx: usize, n: u32): i32 {
  for (let i: usize = 0; i < n; i++) {
    const v = <usize>load<u16>(idx + 2 * i), w = bits + 4 * (v >>> 5), m: u32 = 1 << <u32>(v & 31), b = load<u32>(w);
    if (b & m) return 1;
    store<u32>(w, b | m);
  }
  return 0;
}

// ------------------------------------------------------------------ digest (SPEC 7)
@inline function fmix32(h: u32): u32 {
  h ^= h >>> 16; h *= 0x85EBCA6B; h ^= h >>> 13; h *= 0xC2B2AE35; h ^= h >>> 16;
  return h;
}
export function fmix(h: u32): u32 { return fmix32(h); }

// ------------------------------------------------------------------ id table
// idCap entries of 8 bytes: 0 tag (u32: the high 32 bits of h = id * GOLD), 4 slot (i32, -1: empty).
// An id's home entry is the top log2(idCap) bits of h, so the tag gives it back (rehash and
// backward-shift deletion need no id). The tag holds 32 of h's 64 bits (h is a bijection of the id);
// a tag match is confirmed by the id itself, the u64 key of the entry's slot: for a store its row's
// first word (rows + R4 slot: the row an UPDATE or DELETE reads next anyway), for a scratch table the
// id where the caller's array holds it (slot = its address / 8, key base 0). Entries of one home
// share the tag's bits below the home's, 32 - log2(idCap) of them (>= 5), so a false match,
// which only costs the key's read, is rare. Table fields of a store (or of a bare table): 4 key
// base (the store's rows), 36 entries, 40 idCap, 44 shift (64 - log2 idCap), 48 size, 80 key stride.
const GOLD: u64 = 0x9E3779B97F4A7C15;
@inline function tagOf(id: u64): u32 { return <u32>((id * GOLD) >>> 32); }
@inline function homeOf(tag: u32, shift: u32): usize { return <usize>(tag >>> (shift - 32)); }
@inline function hashIdx(id: u64, shift: u32): usize { return homeOf(tagOf(id), shift); }
@inline function keyOf(st: usize, slot: i32): u64 {
  return load<u64>(load<usize>(st, 4) + <usize>load<u32>(st, 80) * <usize>slot);
}

function idtFill(t: usize, cap: u32): void {
  memory.fill(t, 0xFF, 8 * <usize>cap);   // every entry's slot -1: empty
}
@inline function idtGet(st: usize, id: u64): i32 {
  const t = load<usize>(st, 36), m = <usize>load<u32>(st, 40) - 1, tag = tagOf(id);
  let i = homeOf(tag, load<u32>(st, 44));
  for (;;) {
    const e = load<u64>(t + 8 * i), v = <i32>(e >>> 32);
    if (v < 0) return -1;
    if (<u32>e == tag && keyOf(st, v) == id) return v;
    i = (i + 1) & m;
  }
  return -1;
}
/** Inserts or overwrites (the table has room: callers reserve); returns the previous value or -1. */
function idtSet(st: usize, id: u64, val: i32): i32 {
  const t = load<usize>(st, 36), m = <usize>load<u32>(st, 40) - 1, tag = tagOf(id);
  let i = homeOf(tag, load<u32>(st, 44));
  for (;;) {
    const p = t + 8 * i, e = load<u64>(p), v = <i32>(e >>> 32);
    if (v < 0) { store<u64>(p, (<u64>val << 32) | <u64>tag); store<u32>(st, load<u32>(st, 48) + 1, 48); return -1; }
    if (<u32>e == tag && keyOf(st, v) == id) { store<i32>(p, val, 4); return v; }
    i = (i + 1) & m;
  }
  return -1;
}
/** Places an entry whose id is not in the table (a rehash: no key is read). */
@inline function idtPlace(t: usize, m: usize, shift: u32, e: u64): void {
  let i = homeOf(<u32>e, shift);
  while (load<i32>(t + 8 * i, 4) >= 0) i = (i + 1) & m;
  store<u64>(t + 8 * i, e);
}
function idtDelete(st: usize, id: u64): i32 {
  const t = load<usize>(st, 36), m = <usize>load<u32>(st, 40) - 1, sh = load<u32>(st, 44), tag = tagOf(id);
  let i = homeOf(tag, sh);
  for (;;) {
    const e = load<u64>(t + 8 * i), v = <i32>(e >>> 32);
    if (v < 0) return -1;
    if (<u32>e == tag && keyOf(st, v) == id) break;
    i = (i + 1) & m;
  }
  const old = load<i32>(t + 8 * i, 4);
  let j = i;
  for (;;) {
    j = (j + 1) & m;
    const e = load<u64>(t + 8 * j);
    if (<i32>(e >>> 32) < 0) break;
    const home = homeOf(<u32>e, sh);
    // the entry at j may move to i unless its home lies cyclically in (i, j]
    if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
      store<u64>(t + 8 * i, e);
      i = j;
    }
  }
  store<i32>(t + 8 * i, -1, 4);
  store<u32>(st, load<u32>(st, 48) - 1, 48);
  return old;
}
function idCapFor(n: u32): u32 {
  if (n > 0x4000000) unreachable();   // 2^26 ids: a table of 1 GiB, more than the heap can give
  let c: u32 = 16; while (c < 2 * n) c <<= 1; return c;
}
/** Makes room for n entries: a table of idCapFor(n) entries, rehashed (may trap: nothing changed then). */
function idtReserve(st: usize, n: u32): void {
  const cap = load<u32>(st, 40);
  if (<u64>2 * n <= <u64>cap) return;
  const nc = idCapFor(n), nt = blockAligned(nc, 8), sh = 64 - ctz(nc), m = <usize>nc - 1;
  idtFill(nt, nc);
  const ot = load<usize>(st, 36);
  for (let i: usize = 0; i < cap; i++) {
    const e = load<u64>(ot + 8 * i);
    if (<i32>(e >>> 32) >= 0) idtPlace(nt, m, sh, e);
  }
  store<usize>(st, nt, 36); store<u32>(st, nc, 40); store<u32>(st, sh, 44);
  freeAligned(ot);
}

// a bare table (the scratch tables of the id checks, and decoder/idtable.mjs) is a store struct
// whose id-table fields alone are used: its key base 0 and stride 8, a slot the address of its id / 8
const ST_SIZE: usize = 84;
export function idtNew(expected: u32): usize {
  const st = heap.alloc(ST_SIZE);
  memory.fill(st, 0, ST_SIZE);
  const c = idCapFor(expected), t = blockAligned(c, 8);
  idtFill(t, c);
  store<usize>(st, t, 36); store<u32>(st, c, 40); store<u32>(st, 64 - ctz(c), 44); store<u32>(st, 8, 80);
  return st;
}
export function idtFree(st: usize): void { freeAligned(load<usize>(st, 36)); heap.free(st); }
export function idGet(st: usize, id: u64): i32 { return idtGet(st, id); }
export function idSet(st: usize, id: u64, v: i32): i32 { idtReserve(st, load<u32>(st, 48) + 1); return idtSet(st, id, v); }
export function idDelete(st: usize, id: u64): i32 { return idtDelete(st, id); }
export function idReserve(st: usize, n: u32): void { idtReserve(st, n); }
export function idCountOf(st: usize): u32 { return load<u32>(st, 48); }
/** A bare table's keys: slot s's id at base + 8 s (decoder/idtable.mjs; scratch tables keep base 0). */
export function idKeyBase(st: usize, base: usize): void { store<usize>(st, base, 4); }
/**
 * The slots of ids[0..n) into out as candidates: the first entry of each id's tag, or -1 when there
 * is none (the id is absent). The key is not read here, so that the table's misses of a batch
 * overlap (and its rows' misses after them): the caller, which reads the candidate's row anyway,
 * confirms it with confirmed().
 */
function lookupMany(st: usize, ids: usize, n: u32, out: usize): void {
  const t = load<usize>(st, 36), m = <usize>load<u32>(st, 40) - 1, sh = load<u32>(st, 44);
  for (let k: usize = 0; k < n; k++) {
    const tag = tagOf(load<u64>(ids + 8 * k));
    let i = homeOf(tag, sh), v: i32;
    for (;;) {
      const e = load<u64>(t + 8 * i);
      v = <i32>(e >>> 32);
      if (v < 0 || <u32>e == tag) break;
      i = (i + 1) & m;
    }
    store<i32>(out + 4 * k, v);
  }
}
/** A candidate slot s of lookupMany for id, confirmed: s when its key is id (or s < 0), else the id's slot or -1. */
@inline function confirmed(st: usize, id: u64, s: i32): i32 {
  return s < 0 || keyOf(st, s) == id ? s : idtGet(st, id);
}

// ------------------------------------------------------------------ store
export function storeNew(P: usize, cap: u32): usize {
  const st = heap.alloc(ST_SIZE);
  memory.fill(st, 0, ST_SIZE);
  store<usize>(st, P);
  if (cap < 64) cap = 64;
  const R = load<u32>(P, 4), stride = load<u32>(P, 8);
  const rows = blockAligned(cap, 4 * R), data = blockAligned(cap, 4 * stride);
  const bits = block((cap + 31) >>> 5, 4), list = block(cap, 4), free = block(cap, 4);
  const c = idCapFor(cap), t = blockAligned(c, 8);
  idtFill(t, c);
  store<u32>(st, 4 * R, 80);   // the id table's keys: each row's first word
  memory.fill(bits, 0, <usize>4 * <usize>((cap + 31) >>> 5));
  store<usize>(st, rows, 4); store<usize>(st, data, 8); store<u32>(st, cap, 12);
  store<usize>(st, t, 36); store<u32>(st, c, 40); store<u32>(st, 64 - ctz(c), 44);
  store<usize>(st, free, 52); store<usize>(st, bits, 60); store<usize>(st, list, 64);
  const pn = load<u32>(P, 96);
  if (pn) {   // the SH palette, all zero
    const pc = <u64>pn * <u64>load<u32>(P, 100), codes = block(pc, load<u32>(P, 104)), floats = block(pc, 4);
    memory.fill(codes, 0, <usize>(pc * load<u32>(P, 104))); memory.fill(floats, 0, <usize>(pc * 4));
    store<usize>(st, codes, 72); store<usize>(st, floats, 76);
  }
  return st;
}
export function storeFree(st: usize): void {
  freeAligned(load<usize>(st, 4)); freeAligned(load<usize>(st, 8)); freeAligned(load<usize>(st, 36));
  heap.free(load<usize>(st, 52)); heap.free(load<usize>(st, 60)); heap.free(load<usize>(st, 64));
  release(load<usize>(st, 72)); release(load<usize>(st, 76));
  heap.free(st);
}

/** Sets capacity to cap (>= highWater): new arrays, the used part copied (may trap: nothing changed then). */
function storeGrow(st: usize, cap: u32): void {
  const P = load<usize>(st), R = load<u32>(P, 4), stride = load<u32>(P, 8), hw = <usize>load<u32>(st, 16);
  const nw = (cap + 31) >>> 5;
  const rows = blockAligned(cap, 4 * R), data = blockAligned(cap, 4 * stride);
  const bits = block(nw, 4), free = block(cap, 4), list = block(cap, 4);
  const orows = load<usize>(st, 4), odata = load<usize>(st, 8), obits = load<usize>(st, 60), ofree = load<usize>(st, 52);
  const olist = load<usize>(st, 64);
  memory.copy(rows, orows, 4 * R * hw);
  memory.copy(data, odata, 4 * stride * hw);
  memory.copy(free, ofree, <usize>4 * <usize>load<u32>(st, 56));
  memory.fill(bits, 0, <usize>4 * <usize>nw);   // the dirty set is dropped: generation says everything
  store<u32>(st, 0, 68);
  store<usize>(st, rows, 4); store<usize>(st, data, 8); store<u32>(st, cap, 12);
  store<usize>(st, bits, 60); store<usize>(st, free, 52); store<usize>(st, list, 64);
  store<u32>(st, load<u32>(st, 32) + 1, 32);
  freeAligned(orows); freeAligned(odata); heap.free(obits); heap.free(ofree); heap.free(olist);
}

/**
 * Room for `adds` more Gaussians after `freedFirst` slots are freed, and an id table for
 * `liveAfter` ids, so that a commit cannot fail half-way; slack: extra slots when growing.
 */
export function storeReserve(st: usize, adds: u32, liveAfter: u32, freedFirst: u32, slack: u32): void {
  const free = load<u32>(st, 56) + freedFirst;
  const need = <u64>load<u32>(st, 16) + (adds > free ? adds - free : 0);
  const cap = load<u32>(st, 12);
  if (need > <u64>cap) {
    const grown = <u64>cap + (cap >>> 1), want = need + slack, to = want > grown ? want : grown;
    if (to > 0x10000000) unreachable();   // 2^28 slots: past the heap (and any limit of SPEC 9.1)
    storeGrow(st, <u32>to);
  }
  idtReserve(st, liveAfter);
}

@inline function touch(st: usize, s: u32): void {
  const bits = load<usize>(st, 60), w = bits + <usize>4 * <usize>(s >>> 5), m: u32 = 1 << (s & 31), b = load<u32>(w);
  if (b & m) return;
  store<u32>(w, b | m);
  const n = load<u32>(st, 68);   // < capacity: one entry per slot at most (its bit)
  store<u32>(load<usize>(st, 64) + <usize>4 * <usize>n, s);
  store<u32>(st, n + 1, 68);
}
/** Clears the dirty set (the caller has read it). */
export function clearDirty(st: usize): void {
  const n = load<u32>(st, 68), bits = load<usize>(st, 60), list = load<usize>(st, 64);
  const nw = (load<u32>(st, 12) + 31) >>> 5;
  if (n > (nw >>> 3)) memory.fill(bits, 0, <usize>4 * <usize>nw);
  else for (let i: usize = 0; i < n; i++) store<u32>(bits + <usize>4 * <usize>(load<u32>(list + 4 * i) >>> 5), 0);
  store<u32>(st, 0, 68);
}

@inline function codeAt(row: usize, w: u32, ci: u32): u32 {
  return w == 1 ? <u32>load<u8>(row + ci) : w == 2 ? <u32>load<u16>(row + 2 * ci) : load<u32>(row + 4 * ci);
}
@inline function putCode(row: usize, w: u32, ci: u32, v: u32): void {
  if (w == 1) store<u8>(row + ci, <u8>v); else if (w == 2) store<u16>(row + 2 * ci, <u16>v); else store<u32>(row + 4 * ci, v);
}
@inline function compact3(x: u64): u32 {
  x &= 0x1249249249249249;
  x = (x ^ (x >> 2)) & 0x10C30C30C30C30C3;
  x = (x ^ (x >> 4)) & 0x100F00F00F00F00F;
  x = (x ^ (x >> 8)) & 0x001F0000FF0000FF;
  x = (x ^ (x >> 16)) & 0x001F00000000FFFF;
  x = (x ^ (x >> 32)) & 0x00000000001FFFFF;
  return <u32>x;
}

/**
 * The dequantized floats (SPEC 5.2, 5.3; f64 then f32) of the attributes in mask of slot s from
 * its row; lossless: the float is the code's bit pattern.
 */
@inline function derive(P: usize, row: usize, d: usize, mask: u32): void {
  const NC = load<u32>(P);
  if (load<u32>(P, 16)) {
    for (let j: u32 = 0; j < NC; j++) {
      const c = P + PC + <usize>32 * <usize>j, a = j < 3 ? 0 : j < 6 ? 1 : j < 10 ? 2 : j == 10 ? 3 : j < 14 ? 4 : 5;
      if (mask & (1 << a)) store<u32>(d + <usize>4 * <usize>load<u32>(c, 8), load<u32>(row + <usize>4 * <usize>load<u32>(c, 4)));
    }
    return;
  }
  if (mask & 1) {   // origin_cell(id) + code * step per axis
    const m = load<u64>(row) >> load<u32>(P, 20), cs = load<f64>(P, 72), ps = load<f64>(P, 80);
    const pd = d + <usize>4 * <usize>load<u32>(P + PC, 8);   // x y z: consecutive floats (layout.mjs)
    store<f32>(pd, <f32>(load<f64>(P, 48) + <f64>compact3(m) * cs + <f64>load<i32>(row + <usize>4 * <usize>load<u32>(P + PC, 4)) * ps));
    store<f32>(pd, <f32>(load<f64>(P, 56) + <f64>compact3(m >> 1) * cs + <f64>load<i32>(row + <usize>4 * <usize>load<u32>(P + PC + 32, 4)) * ps), 4);
    store<f32>(pd, <f32>(load<f64>(P, 64) + <f64>compact3(m >> 2) * cs + <f64>load<i32>(row + <usize>4 * <usize>load<u32>(P + PC + 64, 4)) * ps), 8);
  }
  if (mask & 4) {   // smallest-three (5.3)
    const c6 = P + PC + 192, w = load<u32>(c6), rt = load<usize>(P, 40);
    const i = codeAt(row, w, load<u32>(c6, 4)) & 3;
    const a = load<f64>(rt + <usize>8 * <usize>codeAt(row, w, load<u32>(c6 + 32, 4)));
    const b = load<f64>(rt + <usize>8 * <usize>codeAt(row, w, load<u32>(c6 + 64, 4)));
    const e = load<f64>(rt + <usize>8 * <usize>codeAt(row, w, load<u32>(c6 + 96, 4)));
    const qi = Math.sqrt(Math.max(0, 1 - (a * a + b * b + e * e)));
    const q = d + <usize>4 * <usize>load<u32>(c6, 8);   // w x y z: consecutive floats (layout.mjs)
    quatStore(q, i, <f32>qi, <f32>a, <f32>b, <f32>e);
  }
  // table components: SCALE (bit 1), OPACITY (3), SH_DC (4), SH_REST (5)
  tableFloats(P, row, d, mask & 2 ? 3 : 0, mask & 2 ? 6 : 0);
  if (mask & 8) tableFloats(P, row, d, 10, 11);
  if (mask & 16) tableFloats(P, row, d, 11, 14);
  if (mask & 32) tableFloats(P, row, d, 14, NC);
}
/**
 * The quaternion w x y z at q: the largest component (index i) is big, the other three a, b, e in
 * order. Stores at computed places, without branches on i (random per Gaussian: branches on it
 * mispredicted three times in four).
 */
@inline function quatStore(q: usize, i: u32, big: f32, a: f32, b: f32, e: f32): void {
  store<f32>(q + (<usize>(i == 0) << 2), a);
  store<f32>(q + (<usize>(1 + <u32>(i <= 1)) << 2), b);
  store<f32>(q + (<usize>(2 + <u32>(i <= 2)) << 2), e);
  store<f32>(q + (<usize>i << 2), big);
}
@inline function tableFloats(P: usize, row: usize, d: usize, j0: u32, j1: u32): void {
  if (j0 >= j1) return;
  const c0 = P + PC + <usize>32 * <usize>j0, w = load<u32>(c0);
  if (w == 1) {
    for (let c = c0, e = P + PC + <usize>32 * <usize>j1; c < e; c += 32) {
      store<f32>(d + <usize>4 * <usize>load<u32>(c, 8), load<f32>(load<usize>(c, 28) + <usize>4 * <usize>load<u8>(row + load<u32>(c, 4))));
    }
  } else {
    for (let c = c0, e = P + PC + <usize>32 * <usize>j1; c < e; c += 32) {
      store<f32>(d + <usize>4 * <usize>load<u32>(c, 8), load<f32>(load<usize>(c, 28) + <usize>4 * <usize>load<u16>(row + 2 * load<u32>(c, 4))));
    }
  }
}
/** Zeros the slot's padding floats (7, 15 and those after the SH rest). */
@inline function zeroPad(P: usize, d: usize): void {
  store<f32>(d + <usize>load<u16>(P, 92), 0); store<f32>(d + <usize>load<u16>(P, 94), 0);
  for (let o = load<u32>(P, 44), e = load<u32>(P, 8); o < e; o++) store<f32>(d + <usize>4 * <usize>o, 0);
}

// ------------------------------------------------------------------ frame apply (SPEC 6.3)
/** Sum of words read only to bring cache lines in early (kept so the reads are not optimised away). */
export let touched: u32 = 0;
@inline function invalid(c: usize, lossless: u32, v: u32): bool {
  if (lossless) return (v & 0x7F800000) == 0x7F800000;
  const neg = load<u32>(c, 24);
  return v > load<u32>(c, 20) && (neg == 0 || v < neg);
}
@inline function colLoad(src: usize, w: u32, i: usize): u32 {
  return w == 1 ? <u32>load<u8>(src + i) : w == 2 ? <u32>load<u16>(src + 2 * i) : load<u32>(src + 4 * i);
}

/**
 * Staged DELETE_IDS: slots of ids[0..n) into out; each must be live and not staged (mark != stamp);
 * marks them. Returns -1, or the index of the first missing id (nothing is marked after it; the
 * caller's failure leaves the marks, which a later frame's new stamp ignores).
 */
export function stageDeletes(st: usize, ids: usize, n: u32, stamp: u32, out: usize): i32 {
  const rows = load<usize>(st, 4), R4 = <usize>4 * <usize>load<u32>(load<usize>(st), 4);
  lookupMany(st, ids, n, out);
  let warm: u32 = 0;   // the candidates' rows first (loads alone: their misses overlap)
  for (let i: usize = 0; i < n; i++) { const s = load<i32>(out + 4 * i); if (s >= 0) warm += load<u32>(rows + R4 * <usize>s); }
  touched += warm;
  for (let i: u32 = 0; i < n; i++) {
    const s = confirmed(st, load<u64>(ids + <usize>8 * <usize>i), load<i32>(out + <usize>4 * <usize>i));
    store<i32>(out + <usize>4 * <usize>i, s);
    if (s < 0) return i;
    const row = rows + R4 * <usize>s;
    if (load<u32>(row, 4 * H_MARK) == stamp) return i;
    store<u32>(row, stamp, 4 * H_MARK);
  }
  return -1;
}

/**
 * DELETE_RANGES / DELETE_CELLS: every live, unstaged slot whose id lies in one of the nIv merged,
 * sorted, disjoint intervals (u64 pairs first, last) is marked and appended to out (room for
 * highWater entries). Returns the count.
 */
export function stageIntervals(st: usize, iv: usize, nIv: u32, stamp: u32, out: usize): u32 {
  const rows = load<usize>(st, 4), R4 = <usize>4 * <usize>load<u32>(load<usize>(st), 4), hw = load<u32>(st, 16);
  let k: u32 = 0;
  for (let s: u32 = 0; s < hw; s++) {
    const row = rows + R4 * <usize>s;
    if (!(load<u32>(row, 4 * H_FLAGS) & 1) || load<u32>(row, 4 * H_MARK) == stamp) continue;
    const id = load<u64>(row);
    let a: i32 = 0, e: i32 = <i32>nIv - 1, f: i32 = -1;   // the greatest interval start <= id
    while (a <= e) {
      const mid = (a + e) >> 1;
      if (load<u64>(iv + <usize>16 * <usize>mid) <= id) { f = mid; a = mid + 1; } else e = mid - 1;
    }
    if (f >= 0 && id <= load<u64>(iv + <usize>16 * <usize>f, 8)) {
      store<u32>(row, stamp, 4 * H_MARK);
      store<u32>(out + <usize>4 * <usize>k, s); k++;
    }
  }
  return k;
}

/** Sums of fmix32 of the two record sums of slots[0..n), into out[0], out[1]. */
export function laneSums(st: usize, slots: usize, n: u32, out: usize): void {
  const rows = load<usize>(st, 4), R4 = <usize>4 * <usize>load<u32>(load<usize>(st), 4);
  let l0: u32 = 0, l1: u32 = 0;
  for (let i: usize = 0; i < n; i++) {
    const row = rows + R4 * <usize>load<u32>(slots + 4 * i);
    l0 += fmix32(load<u32>(row, 8)); l1 += fmix32(load<u32>(row, 12));
  }
  store<u32>(out, l0); store<u32>(out, l1, 4);
}

/**
 * Lane sums s0/s1 of the block's records from its ids (the words w_0, w_1); with counts (a keyframe's
 * id-table regions, keyframeBlock) each id's region counted too, in the same pass over the ids.
 */
function idSums(P: usize, bl: usize, n: u32, counts: usize = 0, rs: u32 = 0): void {
  const ids = load<usize>(bl, 4), s0 = load<usize>(bl, 20), s1 = load<usize>(bl, 24);
  const a0 = load<u32>(P, 24), a1 = load<u32>(P, 28), b0 = load<u32>(P, 32), b1 = load<u32>(P, 36);
  for (let i: usize = 0; i < n; i++) {
    const lo = load<u32>(ids + 8 * i), hi = load<u32>(ids + 8 * i, 4);
    store<u32>(s0 + 4 * i, lo * a0 + hi * a1); store<u32>(s1 + 4 * i, lo * b0 + hi * b1);
    if (counts) { const w = counts + 4 * <usize>(tagOf(load<u64>(ids + 8 * i)) >>> rs); store<u32>(w, load<u32>(w) + 1); }
  }
}
/** s0/s1 += the block's column c (validity checked): returns the first invalid index or -1. */
function columnSums(P: usize, bl: usize, c: usize, i0: usize, i1: usize): i32 {
  const n = <usize>load<u32>(bl), s0 = load<usize>(bl, 20), s1 = load<usize>(bl, 24), lossless = load<u32>(P, 16);
  const j = load<u32>(bl + 64 + 8 * c), src = load<usize>(bl + 64 + 8 * c, 4);
  const pc = P + PC + <usize>32 * <usize>j, w = load<u32>(pc), k0 = load<u32>(pc, 12), k1 = load<u32>(pc, 16);
  const maxU = load<u32>(pc, 20), neg = load<u32>(pc, 24);
  const check = lossless != 0 || maxU != 0xFFFFFFFF;
  for (let i = i0; i < i1; i++) {
    const v = colLoad(src, w, i);
    if (check && (lossless ? (v & 0x7F800000) == 0x7F800000 : v > maxU && (neg == 0 || v < neg))) return <i32>i;
    store<u32>(s0 + 4 * i, load<u32>(s0 + 4 * i) + v * k0);
    store<u32>(s1 + 4 * i, load<u32>(s1 + 4 * i) + v * k1);
  }
  return -1;
  // (n: the column's length; i1 <= n by the callers)
}

/**
 * ADD block of a delta, checked against the state (no writes): no id may be live unless staged
 * for deletion (1: ID_EXISTS), every code valid (2: BAD_VALUE, errJ = its component); computes the
 * records' sums (s0, s1) and their lanes (lane0, lane1). Returns 0 when it passes.
 */
export function addCheck(st: usize, bl: usize, stamp: u32): i32 {
  const P = load<usize>(st), n = load<u32>(bl), slots = load<usize>(bl, 16);
  const rows = load<usize>(st, 4), R4 = <usize>4 * <usize>load<u32>(P, 4);
  const ids = load<usize>(bl, 4);
  lookupMany(st, ids, n, slots);
  for (let i: usize = 0; i < n; i++) {
    const s = confirmed(st, load<u64>(ids + 8 * i), load<i32>(slots + 4 * i));
    if (s >= 0 && load<u32>(rows + R4 * <usize>s, 4 * H_MARK) != stamp) return 1;
  }
  idSums(P, bl, n);
  const nc = load<u32>(bl, 12), lossless = load<u32>(P, 16), s0p = load<usize>(bl, 20), s1p = load<usize>(bl, 24);
  for (let c: usize = 0; c < nc; c++) {
    const j = load<u32>(bl + 64 + 8 * c), pc = P + PC + <usize>32 * <usize>j;
    const bad = load<u32>(pc) == 1 && !lossless
      ? keyColumn8(load<usize>(bl + 64 + 8 * c, 4), 0, n, s0p, s1p, load<u32>(pc, 12), load<u32>(pc, 16), load<u32>(pc, 20), load<u32>(pc, 24))
      : columnSums(P, bl, c, 0, n) >= 0;
    if (bad) { store<u32>(bl, j, 52); return 2; }
  }
  let l0: u32 = 0, l1: u32 = 0;
  const s0 = load<usize>(bl, 20), s1 = load<usize>(bl, 24);
  for (let i: usize = 0; i < n; i++) { l0 += fmix32(load<u32>(s0 + 4 * i)); l1 += fmix32(load<u32>(s1 + 4 * i)); }
  store<u32>(bl, l0, 56); store<u32>(bl, l1, 60);
  return 0;
}

/**
 * UPDATE block, in place (SPEC 6.3 step 4): every id live and unstaged (1: ID_MISSING), new code =
 * old + residual (mod 2^(8 width)) valid (2: BAD_VALUE, errJ), and the slot's floats of the block's
 * attributes derived from the new codes. In batches of UB Gaussians: their id-table entries are
 * looked up, then their rows and slot floats read (independent loads: the misses overlap), then
 * each Gaussian's codes, sums and floats are written while its pages are still in the TLB (one
 * visit of each page per Gaussian). Old codes (ov, nc per Gaussian), sums (os0/os1) and floats (of,
 * nc per Gaussian: component c's float) are kept with the progress (doneI Gaussians complete,
 * doneC components of the next) so that updUndo restores them exactly. lane0/lane1: the change of
 * the lanes. Returns 0 when it passes (commitUpd then only marks the slots dirty).
 */
export function updApply(st: usize, bl: usize, stamp: u32): i32 {
  const P = load<usize>(st), n = <usize>load<u32>(bl), nc = <usize>load<u32>(bl, 12), slots = load<usize>(bl, 16);
  const rows = load<usize>(st, 4), R4 = <usize>4 * <usize>load<u32>(P, 4), lossless = load<u32>(P, 16);
  const os0 = load<usize>(bl, 32), os1 = load<usize>(bl, 36), ids = load<usize>(bl, 4);
  const data = load<usize>(st, 8), S4 = <usize>4 * <usize>load<u32>(P, 8);
  store<u32>(bl, 0, 40); store<u32>(bl, 0, 44); store<u32>(bl, 0, 56); store<u32>(bl, 0, 60);
  // the block's components: src, width, byte offset in the row, k0, k1, maxU, neg, byte offset in the slot floats (32 bytes each)
  const tab = bl + 64 + 8 * nc, end = tab + 32 * nc;
  for (let c: usize = 0; c < nc; c++) {
    const pc = P + PC + <usize>32 * <usize>load<u32>(bl + 64 + 8 * c), e = tab + 32 * c, w = load<u32>(pc);
    store<u32>(e, load<u32>(bl + 64 + 8 * c, 4)); store<u32>(e, w, 4); store<u32>(e, w * load<u32>(pc, 4), 8);
    store<u32>(e, load<u32>(pc, 12), 12); store<u32>(e, load<u32>(pc, 16), 16);
    store<u32>(e, load<u32>(pc, 20), 20); store<u32>(e, load<u32>(pc, 24), 24); store<u32>(e, 4 * load<u32>(pc, 8), 28);
  }
  let same = true;   // every component of one width: a loop without width branches
  for (let e = tab + 32; e < end; e += 32) if (load<u32>(e, 4) != load<u32>(tab, 4)) same = false;
  const w0 = load<u32>(tab, 4);
  let f0: usize = S4, f1: usize = 0;   // the cache lines of the floats written: [f0, f1] rounded to lines
  for (let e = tab; e < end; e += 32) { const o = <usize>load<u32>(e, 28); if (o < f0) f0 = o; if (o > f1) f1 = o; }
  f0 &= ~63;
  let warm: u32 = 0;
  for (let i0: usize = 0; i0 < n; i0 += UB) {
    const i1 = i0 + UB < n ? i0 + UB : n;
    lookupMany(st, ids + 8 * i0, <u32>(i1 - i0), slots + 4 * i0);
    // the candidates' rows and the cache lines of their floats, read now so that their misses
    // overlap (a loop of loads alone: the more of them in flight the better)
    for (let i = i0; i < i1; i++) {
      const s = load<i32>(slots + 4 * i);
      if (s < 0) { store<u32>(bl, <u32>i0, 40); return 1; }   // no entry of its tag: absent (Gaussians [0, i0) complete)
      const d = data + S4 * <usize>s;
      warm += load<u32>(rows + R4 * <usize>s);
      for (let o = f0; o <= f1; o += 64) warm += load<u32>(d + o);
    }
    // then each candidate confirmed from its row (now in the cache), live and not staged
    for (let i = i0; i < i1; i++) {
      let s = load<i32>(slots + 4 * i);
      const id = load<u64>(ids + 8 * i);
      if (load<u64>(rows + R4 * <usize>s) != id) {
        s = idtGet(st, id);
        store<i32>(slots + 4 * i, s);
        if (s < 0) { store<u32>(bl, <u32>i0, 40); return 1; }
      }
      const row = rows + R4 * <usize>s;
      if (load<u32>(row, 4 * H_MARK) == stamp) { store<u32>(bl, <u32>i0, 40); return 1; }
      store<u32>(os0 + 4 * i, load<u32>(row, 8)); store<u32>(os1 + 4 * i, load<u32>(row, 12));
    }
    const r = !same ? updRows<u32>(P, bl, tab, end, rows, data, R4, S4, lossless, 0, i0, i1)
      : w0 == 1 ? updRows<u8>(P, bl, tab, end, rows, data, R4, S4, lossless, 1, i0, i1)
      : w0 == 2 ? updRows<u16>(P, bl, tab, end, rows, data, R4, S4, lossless, 1, i0, i1)
      : updRows<u32>(P, bl, tab, end, rows, data, R4, S4, lossless, 1, i0, i1);
    if (r) return r;
  }
  touched += warm;
  store<u32>(bl, <u32>n, 40); store<u32>(bl, 0, 44);
  return 0;
}
/**
 * Gaussians per batch of updApply, commitAdd and commitDeletes: enough independent misses in flight,
 * few enough pages for the TLB (a 5k delta: 64 ~2-3% faster than 32, 128 ~5% slower).
 */
const UB: usize = 64;

/**
 * Gaussians [i0, i1) of updApply (their slots checked): with uniform (all components of type T) the
 * codes are read and written as T, else each by its width; then the old floats of the components
 * are kept and the new ones derived. Returns 0, or 2 on an invalid code (progress, errJ set).
 */
function updRows<T>(P: usize, bl: usize, tab: usize, end: usize, rows: usize, data: usize, R4: usize, S4: usize, lossless: u32, uniform: u32, i0: usize, i1: usize): i32 {
  const nc = <usize>load<u32>(bl, 12), slots = load<usize>(bl, 16), mask = load<u32>(bl, 8);
  const ov = load<usize>(bl, 28), os0 = load<usize>(bl, 32), os1 = load<usize>(bl, 36), ofl = load<usize>(bl, 48);
  let l0: u32 = 0, l1: u32 = 0;
  for (let i = i0; i < i1; i++) {
    const s = <usize>load<u32>(slots + 4 * i), row = rows + R4 * s, d = data + S4 * s, o = ov + 4 * nc * i;
    const b0 = load<u32>(os0 + 4 * i), b1 = load<u32>(os1 + 4 * i);
    let a0 = b0, a1 = b1, c: usize = 0;
    for (let e = tab; e < end; e += 32, c++) {
      const q = row + <usize>load<u32>(e, 8), src = load<usize>(e);
      let old: u32, v: u32;
      if (uniform) { old = <u32>load<T>(q); v = <u32><T>(old + <u32>load<T>(src + sizeof<T>() * i)); }
      else {
        const w = load<u32>(e, 4);
        if (w == 1) { old = load<u8>(q); v = (old + <u32>load<u8>(src + i)) & 0xFF; }
        else if (w == 2) { old = load<u16>(q); v = (old + <u32>load<u16>(src + 2 * i)) & 0xFFFF; }
        else { old = load<u32>(q); v = old + load<u32>(src + 4 * i); }
      }
      const maxU = load<u32>(e, 20), neg = load<u32>(e, 24);
      if (lossless ? (v & 0x7F800000) == 0x7F800000 : v > maxU && (neg == 0 || v < neg)) {
        store<u32>(bl, <u32>i, 40); store<u32>(bl, <u32>c, 44);
        store<u32>(bl, load<u32>(bl + 64 + 8 * c), 52);
        store<u32>(bl, load<u32>(bl, 56) + l0, 56); store<u32>(bl, load<u32>(bl, 60) + l1, 60);
        return 2;
      }
      store<u32>(o + 4 * c, old);
      if (uniform) store<T>(q, <T>v);
      else {
        const w = load<u32>(e, 4);
        if (w == 1) store<u8>(q, <u8>v); else if (w == 2) store<u16>(q, <u16>v); else store<u32>(q, v);
      }
      const dl = v - old;
      a0 += dl * load<u32>(e, 12); a1 += dl * load<u32>(e, 16);
    }
    store<u32>(row, a0, 8); store<u32>(row, a1, 12);
    l0 += fmix32(a0) - fmix32(b0); l1 += fmix32(a1) - fmix32(b1);
    const fo = ofl + 4 * nc * i;
    c = 0;
    for (let e = tab; e < end; e += 32, c++) store<u32>(fo + 4 * c, load<u32>(d + <usize>load<u32>(e, 28)));
    derive(P, row, d, mask);
  }
  store<u32>(bl, <u32>i1, 40);
  store<u32>(bl, load<u32>(bl, 56) + l0, 56); store<u32>(bl, load<u32>(bl, 60) + l1, 60);
  return 0;
}

/**
 * Restores what updApply wrote for this block: Gaussians [0, doneI) whole (codes, sums, floats),
 * doneC codes of Gaussian doneI (its floats were not written yet).
 */
export function updUndo(st: usize, bl: usize): void {
  const P = load<usize>(st), n = <usize>load<u32>(bl), nc = <usize>load<u32>(bl, 12), slots = load<usize>(bl, 16);
  const rows = load<usize>(st, 4), R4 = <usize>4 * <usize>load<u32>(P, 4), ov = load<usize>(bl, 28);
  const data = load<usize>(st, 8), S4 = <usize>4 * <usize>load<u32>(P, 8), ofl = load<usize>(bl, 48);
  const os0 = load<usize>(bl, 32), os1 = load<usize>(bl, 36), tab = bl + 64 + 8 * nc;
  const doneI = <usize>load<u32>(bl, 40), doneC = <usize>load<u32>(bl, 44);
  for (let i: usize = 0; i <= doneI && i < n; i++) {
    const s = <usize>load<u32>(slots + 4 * i), row = rows + R4 * s, d = data + S4 * s, o = ov + 4 * nc * i, m = i < doneI ? nc : doneC;
    for (let c: usize = 0; c < m; c++) {
      const e = tab + 32 * c, w = load<u32>(e, 4), q = row + <usize>load<u32>(e, 8), v = load<u32>(o + 4 * c);
      if (w == 1) store<u8>(q, <u8>v); else if (w == 2) store<u16>(q, <u16>v); else store<u32>(q, v);
    }
    if (i < doneI) {
      store<u32>(row, load<u32>(os0 + 4 * i), 8); store<u32>(row, load<u32>(os1 + 4 * i), 12);
      for (let c: usize = 0; c < nc; c++) store<u32>(d + <usize>load<u32>(tab + 32 * c, 28), load<u32>(ofl + 4 * nc * i + 4 * c));
    }
  }
  store<u32>(bl, 0, 40); store<u32>(bl, 0, 44);
}

// ------------------------------------------------------------------ SH palette (SPEC 5.9, 6.3 step 2a)
/**
 * A PALETTE block against the store's palette, without writing (SPEC 6.3 step 2a, 7.1): every
 * entry code valid (2: BAD_VALUE, errJ = its component j); lane0/lane1 of the record = the change
 * of the lanes: the records (w_0 = e, w_1 = 0xFFFFFFFF, the codes) of the non-zero new entries
 * added, those of the non-zero entries they replace subtracted. Returns 0 when it passes. The
 * indices were checked (< palN, none twice in the frame), so each entry is replaced once per frame.
 */
export function palStage(st: usize, pb: usize): i32 {
  const P = load<usize>(st), n = <usize>load<u32>(pb), idx = load<usize>(pb, 4), nc = <usize>load<u32>(pb, 12);
  const w = load<u32>(P, 104), desc = load<usize>(P, 108), pnc = <usize>load<u32>(P, 100), codes = load<usize>(st, 72);
  const a0 = load<u32>(P, 24), t0 = 0xFFFFFFFF * load<u32>(P, 28), a1 = load<u32>(P, 32), t1 = 0xFFFFFFFF * load<u32>(P, 36);
  let l0: u32 = 0, l1: u32 = 0;
  for (let i: usize = 0; i < n; i++) {
    const e = <u32>load<u16>(idx + 2 * i);
    // the new entry, from the block's columns
    let s0 = e * a0 + t0, s1 = e * a1 + t1, nz: u32 = 0;
    for (let c: usize = 0; c < nc; c++) {
      const j = <usize>load<u32>(pb + 64 + 8 * c), src = load<usize>(pb + 64 + 8 * c, 4), dj = desc + 32 * j;
      const v = w == 1 ? <u32>load<u8>(src + i) : <u32>load<u16>(src + 2 * i), neg = load<u32>(dj, 4);
      if (v > load<u32>(dj) && (neg == 0 || v < neg)) { store<u32>(pb, <u32>j, 52); return 2; }
      s0 += v * load<u32>(dj, 8); s1 += v * load<u32>(dj, 12); nz |= v;
    }
    if (nz) { l0 += fmix32(s0); l1 += fmix32(s1); }
    // the entry it replaces, from the state
    const row = codes + <usize>w * pnc * <usize>e;
    s0 = e * a0 + t0; s1 = e * a1 + t1; nz = 0;
    for (let j: usize = 0; j < pnc; j++) {
      const v = w == 1 ? <u32>load<u8>(row + j) : <u32>load<u16>(row + 2 * j), dj = desc + 32 * j;
      s0 += v * load<u32>(dj, 8); s1 += v * load<u32>(dj, 12); nz |= v;
    }
    if (nz) { l0 -= fmix32(s0); l1 -= fmix32(s1); }
  }
  store<u32>(pb, l0, 56); store<u32>(pb, l1, 60);
  return 0;
}

/** Writes a staged PALETTE block (palStage passed) into the store's palette: codes and floats. */
export function palCommit(st: usize, pb: usize): void {
  const P = load<usize>(st), n = <usize>load<u32>(pb), idx = load<usize>(pb, 4), nc = <usize>load<u32>(pb, 12);
  const w = <usize>load<u32>(P, 104), desc = load<usize>(P, 108), pnc = <usize>load<u32>(P, 100);
  const codes = load<usize>(st, 72), floats = load<usize>(st, 76);
  for (let i: usize = 0; i < n; i++) {
    const e = <usize>load<u16>(idx + 2 * i), row = codes + w * pnc * e, f = floats + 4 * pnc * e;
    for (let c: usize = 0; c < nc; c++) {
      const j = <usize>load<u32>(pb + 64 + 8 * c), src = load<usize>(pb + 64 + 8 * c, 4), T = load<usize>(desc + 32 * j, 16);
      const v = w == 1 ? <usize>load<u8>(src + i) : <usize>load<u16>(src + 2 * i);
      if (w == 1) store<u8>(row + j, <u8>v); else store<u16>(row + 2 * j, <u16>v);
      store<f32>(f + 4 * j, load<f32>(T + (v << 2)));
    }
  }
}

// ------------------------------------------------------------------ commit (after every check)
export function commitDeletes(st: usize, slots: usize, n: u32): void {
  const P = load<usize>(st), rows = load<usize>(st, 4), data = load<usize>(st, 8);
  const R4 = <usize>4 * <usize>load<u32>(P, 4), S4 = <usize>4 * <usize>load<u32>(P, 8), free = load<usize>(st, 52);
  const freed = load<f32>(P, 88), op = <usize>4 * <usize>load<u32>(P + PC + 32 * 10, 8);   // OPACITY's float
  const t = load<usize>(st, 36), sh = load<u32>(st, 44);
  let fc = load<u32>(st, 56), warm: u32 = 0;
  for (let i0: usize = 0; i0 < n; i0 += UB) {
    const i1 = i0 + UB < n ? i0 + UB : <usize>n;
    // the batch's id-table home entries and opacity floats first: their misses overlap
    for (let i = i0; i < i1; i++) {
      const s = <usize>load<u32>(slots + 4 * i);
      warm += load<u32>(t + 8 * hashIdx(load<u64>(rows + R4 * s), sh)) + load<u32>(data + S4 * s + op);
    }
    for (let i = i0; i < i1; i++) {
      const s = load<u32>(slots + 4 * i), row = rows + R4 * <usize>s;
      idtDelete(st, load<u64>(row));
      store<u32>(row, 0, 4 * H_FLAGS);
      store<f32>(data + S4 * <usize>s + op, freed);
      store<u32>(free + <usize>4 * <usize>fc, s); fc++;
      touch(st, s);
    }
  }
  touched += warm;
  store<u32>(st, fc, 56);
  store<u32>(st, load<u32>(st, 20) - n, 20);
}

@inline function allocSlot(st: usize): u32 {
  const fc = load<u32>(st, 56);
  if (fc > 0) { store<u32>(st, fc - 1, 56); return load<u32>(load<usize>(st, 52) + <usize>4 * <usize>(fc - 1)); }
  const hw = load<u32>(st, 16);
  store<u32>(st, hw + 1, 16);
  return hw;
}

/**
 * A delta's ADD block (addCheck passed, room reserved): slots, rows, id table, floats; in batches of
 * UB Gaussians whose slots, rows, floats and id-table home entries are read first (the misses overlap).
 */
export function commitAdd(st: usize, bl: usize): void {
  const P = load<usize>(st), n = <usize>load<u32>(bl), nc = <usize>load<u32>(bl, 12), lossless = load<u32>(P, 16);
  const ids = load<usize>(bl, 4), slots = load<usize>(bl, 16), s0 = load<usize>(bl, 20), s1 = load<usize>(bl, 24);
  const rows = load<usize>(st, 4), data = load<usize>(st, 8), R4 = <usize>4 * <usize>load<u32>(P, 4), S4 = <usize>4 * <usize>load<u32>(P, 8);
  const tab = bl + 64 + 8 * nc, ends = writerTable(P, bl, nc);
  const end4 = tab + 16 * <usize>(ends & 0xFF), end2 = tab + 16 * <usize>((ends >>> 8) & 0xFF), end1 = tab + 16 * nc;
  const t = load<usize>(st, 36), sh = load<u32>(st, 44);
  let warm: u32 = 0;
  for (let i0: usize = 0; i0 < n; i0 += UB) {
    const i1 = i0 + UB < n ? i0 + UB : n;
    for (let i = i0; i < i1; i++) {
      const s = allocSlot(st), row = rows + R4 * <usize>s, d = data + S4 * <usize>s;
      store<u32>(slots + 4 * i, s);
      warm += load<u32>(t + 8 * hashIdx(load<u64>(ids + 8 * i), sh));
      for (let o: usize = 0; o < R4; o += 64) warm += load<u32>(row + o);
      for (let o: usize = 0; o < S4; o += 64) warm += load<u32>(d + o);
    }
    for (let i = i0; i < i1; i++) {
      const s = load<u32>(slots + 4 * i), row = rows + R4 * <usize>s, d = data + S4 * <usize>s, id = load<u64>(ids + 8 * i);
      store<u64>(row, id); store<u32>(row, load<u32>(s0 + 4 * i), 8); store<u32>(row, load<u32>(s1 + 4 * i), 12);
      store<u32>(row, 0, 16); store<u32>(row, 1, 20);
      writeGaussian(tab, end4, end2, end1, i, row, d, lossless);
      if (!lossless) derive(P, row, d, 5);   // POSITION, ROTATION
      zeroPad(P, d);
      idtSet(st, id, <i32>s);
      touch(st, s);
    }
  }
  touched += warm;
  store<u32>(st, load<u32>(st, 20) + <u32>n, 20);
}

/** A delta's UPDATE block (codes and floats written by updApply): its slots marked dirty. */
export function commitUpd(st: usize, bl: usize): void {
  const n = <usize>load<u32>(bl), slots = load<usize>(bl, 16);
  for (let i: usize = 0; i < n; i++) touch(st, load<u32>(slots + 4 * i));
}

/**
 * The table of a block's components for writeGaussian, at bl + 64 + 8 nc (16 bytes each: src, byte
 * offset in the row, byte offset in the slot floats, f32 table or 0), grouped by width: 4-byte, then
 * 2-byte, then 1-byte ones. Returns the group ends as counts: n4 | (n4 + n2) << 8.
 */
function writerTable(P: usize, bl: usize, nc: usize): u32 {
  const tab = bl + 64 + 8 * nc;
  let n4: usize = 0, n2: usize = 0;
  for (let c: usize = 0; c < nc; c++) {
    const w = load<u32>(P + PC + <usize>32 * <usize>load<u32>(bl + 64 + 8 * c));
    if (w == 4) n4++; else if (w == 2) n2++;
  }
  let e4 = tab, e2 = tab + 16 * n4, e1 = tab + 16 * (n4 + n2);
  for (let c: usize = 0; c < nc; c++) {
    const j = load<u32>(bl + 64 + 8 * c), pc = P + PC + <usize>32 * <usize>j, w = load<u32>(pc);
    const e = w == 4 ? e4 : w == 2 ? e2 : e1;
    store<u32>(e, load<u32>(bl + 64 + 8 * c, 4)); store<u32>(e, w * load<u32>(pc, 4), 4);
    store<u32>(e, 4 * load<u32>(pc, 8), 8); store<u32>(e, load<u32>(pc, 28), 12);
    if (w == 4) e4 += 16; else if (w == 2) e2 += 16; else e1 += 16;
  }
  return <u32>n4 | (<u32>(n4 + n2) << 8);
}

/**
 * Gaussian i of a block (its codes in the columns of writerTable): its codes into its row and the
 * floats of its table components (lossless: of every component, the code's bits) into d.
 */
@inline function writeGaussian(tab: usize, end4: usize, end2: usize, end1: usize, i: usize, row: usize, d: usize, lossless: u32): void {
  for (let e = tab; e < end4; e += 16) {
    const v = load<u32>(load<usize>(e) + 4 * i);
    store<u32>(row + <usize>load<u32>(e, 4), v);
    if (lossless) store<u32>(d + <usize>load<u32>(e, 8), v);
  }
  for (let e = end4; e < end2; e += 16) {
    const v = <usize>load<u16>(load<usize>(e) + 2 * i), T = load<usize>(e, 12);
    store<u16>(row + <usize>load<u32>(e, 4), <u16>v);
    if (T) store<f32>(d + <usize>load<u32>(e, 8), load<f32>(T + (v << 2)));
  }
  for (let e = end2; e < end1; e += 16) {
    const v = <usize>load<u8>(load<usize>(e) + i), T = load<usize>(e, 12);
    store<u8>(row + <usize>load<u32>(e, 4), <u8>v);
    if (T) store<f32>(d + <usize>load<u32>(e, 8), load<f32>(T + (v << 2)));
  }
}

/**
 * One ADD block of a keyframe into the fresh store st (room reserved) at slots [first, first + n),
 * in tiles of 64 Gaussians: per component, validity and lane sums down the planar column; then per
 * Gaussian its row of codes and its floats, written in order (a tile's rows and floats stay in
 * cache, and stores never stride through them); then ids, sums, POSITION and ROTATION floats, padding,
 * and after the last tile the ids into the id table (bulkPlace, through the scratch at BL 28).
 * The block record has room for the kernel's table of components after them (BL + 64 + 8 nc:
 * 16 bytes each: src, byte offset in the row, byte offset in the slot floats, table). Returns -1, or
 * the component j of an invalid code (the store is then dropped by the caller).
 */
export function keyframeBlock(st: usize, bl: usize, first: u32): i32 {
  const P = load<usize>(st), n = <usize>load<u32>(bl), nc = <usize>load<u32>(bl, 12), lossless = load<u32>(P, 16);
  const ids = load<usize>(bl, 4), s0 = load<usize>(bl, 20), s1 = load<usize>(bl, 24);
  const rows = load<usize>(st, 4), data = load<usize>(st, 8), R4 = <usize>4 * <usize>load<u32>(P, 4), S4 = <usize>4 * <usize>load<u32>(P, 8);
  const tab = bl + 64 + 8 * nc, ends = writerTable(P, bl, nc);
  const end4 = tab + 16 * <usize>(ends & 0xFF), end2 = tab + 16 * <usize>((ends >>> 8) & 0xFF), end1 = tab + 16 * nc;
  // the id table's regions (up to 2^KR_LOG, by the top bits of the tag: 2,048 entries, 16 KiB, each for
  // a table of 1M ids): the ids of each counted here, their first indices in the scratch for bulkPlace
  const scr = load<usize>(bl, 28), counts = scr + 8 * n, lc = ctz(load<u32>(st, 40));
  const rb: u32 = lc > 12 ? (lc - 11 < KR_LOG ? lc - 11 : KR_LOG) : 1, rs = 32 - rb;
  memory.fill(counts, 0, <usize>4 << rb);
  idSums(P, bl, <u32>n, counts, rs);
  for (let r: usize = 0, sum: u32 = 0; r < (<usize>1 << rb); r++) { const c = load<u32>(counts + 4 * r); store<u32>(counts + 4 * r, sum); sum += c; }
  let l0 = load<u32>(st, 24), l1 = load<u32>(st, 28);
  const padFirst = <usize>4 * <usize>load<u32>(P, 44), padEnd = S4, z0 = <usize>load<u16>(P, 92), z1 = <usize>load<u16>(P, 94);
  const S = <u64>load<u32>(P, 20), ox = load<f64>(P, 48), oy = load<f64>(P, 56), oz = load<f64>(P, 64), cs = load<f64>(P, 72), ps = load<f64>(P, 80);
  const px = <usize>4 * <usize>load<u32>(P + PC, 4), py = <usize>4 * <usize>load<u32>(P + PC + 32, 4), pz = <usize>4 * <usize>load<u32>(P + PC + 64, 4);
  const rw = load<u32>(P + PC + 192), q0 = load<u32>(P + PC + 196), q1 = load<u32>(P + PC + 228), q2 = load<u32>(P + PC + 260), q3 = load<u32>(P + PC + 292);
  const rt = load<usize>(P, 40);
  const pf = <usize>4 * <usize>load<u32>(P + PC, 8), rf = <usize>4 * <usize>load<u32>(P + PC + 192, 8);   // POSITION x, ROTATION w
  const TILE: usize = 64;
  const k8: usize = lossless ? 0 : key8Setup(P, bl, tab, end2, end1, R4, (counts + 4096 + 15) & ~<usize>15);   // the one-byte codes' tile path, or 0
  for (let i0: usize = 0; i0 < n; i0 += TILE) {
    const i1 = i0 + TILE < n ? i0 + TILE : n;
    if (k8) {
      // the other components' validity and sums down their columns; then each Gaussian's row of
      // codes, its one-byte codes' validity and sums, and its table floats (key8Tile)
      let ok = true;
      for (let c: usize = 0; c < nc && ok; c++) {
        const w = load<u32>(P + PC + <usize>32 * <usize>load<u32>(bl + 64 + 8 * c));
        if (w != 1 && columnSums(P, bl, c, i0, i1) >= 0) ok = false;
      }
      if (ok) ok = key8Tile(k8, tab, end4, end2, s0, s1, i0, i1, rows + R4 * (<usize>first + i0), R4, data + S4 * (<usize>first + i0), S4);
      if (!ok) return tileFailure(P, bl, nc, lossless, s0, s1, i0, i1);
    } else {
      const j = tileFailure(P, bl, nc, lossless, s0, s1, i0, i1);   // (validity and sums, column by column)
      if (j >= 0) return j;
      // rows and floats, Gaussian by Gaussian
      for (let i = i0; i < i1; i++) {
        writeGaussian(tab, end4, end2, end1, i, rows + R4 * (<usize>first + i), data + S4 * (<usize>first + i), lossless);
      }
    }
    for (let i = i0; i < i1; i++) {
      const s = first + <u32>i, row = rows + R4 * <usize>s, d = data + S4 * <usize>s, a0 = load<u32>(s0 + 4 * i), a1 = load<u32>(s1 + 4 * i);
      const id = load<u64>(ids + 8 * i);
      store<u64>(row, id); store<u32>(row, a0, 8); store<u32>(row, a1, 12);
      store<u32>(row, 0, 16); store<u32>(row, 1, 20);
      l0 += fmix32(a0); l1 += fmix32(a1);
      store<f32>(d + z0, 0); store<f32>(d + z1, 0);
      for (let o = padFirst; o < padEnd; o += 4) store<f32>(d + o, 0);
      if (lossless) continue;
      // POSITION: origin_cell(id) + code * step per axis (f64, then f32)
      const m = id >> S;
      store<f32>(d + pf, <f32>(ox + <f64>compact3(m) * cs + <f64>load<i32>(row + px) * ps));
      store<f32>(d + pf, <f32>(oy + <f64>compact3(m >> 1) * cs + <f64>load<i32>(row + py) * ps), 4);
      store<f32>(d + pf, <f32>(oz + <f64>compact3(m >> 2) * cs + <f64>load<i32>(row + pz) * ps), 8);
      // ROTATION: smallest-three (5.3)
      const qi = codeAt(row, rw, q0) & 3;
      const a = load<f64>(rt + 8 * <usize>codeAt(row, rw, q1)), b = load<f64>(rt + 8 * <usize>codeAt(row, rw, q2));
      const e = load<f64>(rt + 8 * <usize>codeAt(row, rw, q3));
      quatStore(d + rf, qi, <f32>Math.sqrt(Math.max(0, 1 - (a * a + b * b + e * e))), <f32>a, <f32>b, <f32>e);
    }
  }
  bulkPlace(st, scr, counts, rs, ids, n, first);
  store<u32>(st, l0, 24); store<u32>(st, l1, 28);
  const hw = first + <u32>n;
  store<u32>(st, hw, 16); store<u32>(st, hw, 20);
  return -1;
}

/**
 * Validity and lane sums of the components of a keyframe block over [i0, i1), column by column in
 * ascending component order: -1, or the component j of the first column with an invalid code.
 */
function tileFailure(P: usize, bl: usize, nc: usize, lossless: u32, s0: usize, s1: usize, i0: usize, i1: usize): i32 {
  for (let c: usize = 0; c < nc; c++) {
    const j = load<u32>(bl + 64 + 8 * c), src = load<usize>(bl + 64 + 8 * c, 4);
    const pc = P + PC + <usize>32 * <usize>j, w = load<u32>(pc);
    if (w == 1 && !lossless) {
      if (keyColumn8(src, i0, i1, s0, s1, load<u32>(pc, 12), load<u32>(pc, 16), load<u32>(pc, 20), load<u32>(pc, 24))) return j;
    } else if (columnSums(P, bl, c, i0, i1) >= 0) return j;
  }
  return -1;
}

// The one-byte codes of a keyframe tile, Gaussian by Gaussian (key8Setup, key8Tile): the tile's
// one-byte columns (up to 64: K8_G groups of 16) are transposed 16 x 16 bytes at a time (four rounds
// of byte interleaves) into a scratch of 64 bytes per Gaussian, its codes in component order. Each
// Gaussian's codes are then stored into its row as 16-byte vectors (the one-byte codes are
// consecutive in the row), checked 16 at a time against per-lane bounds, and summed into its record
// sums with i32x4.dot_i16x8_s: a lane constant k (mod 2^32) is split into 16-bit halves kl + 2^16 kh,
// both taken as signed (kh carries kl's sign bit), so v k = v kl + 2^16 v kh (mod 2^32) with exact
// 16 x 16-bit products of the code (0..255) and each half.
// The scratch (K8 below): per group of 16 components (176 bytes): 0 the largest valid code, 16 the
// first negative code (0: none), 32 0xFF where a component has no negative codes, 48 kl of k0 (the
// 16 components as i16), 80 kh of k0, 112 kl of k1, 144 kh of k1; then the float table (T, byte
// offset in the slot floats per component), the column pointers (up to 16 G; the padding ones are set per tile), 64
// zero bytes (the padding columns), the count of one-byte components, a table of 256 zero floats
// and the transposed codes.
const K8_G: usize = 4, K8_FT: usize = 176 * K8_G, K8_SRC: usize = K8_FT + 8 * 16 * K8_G, K8_Z: usize = K8_SRC + 4 * 16 * K8_G;
const K8_NB: usize = K8_Z + 64, K8_T0: usize = K8_NB + 64, K8_X: usize = K8_T0 + 1024, K8_SIZE: usize = K8_X + 64 * 64;
/** Bytes of a keyframe block's scratch for key8Setup's, after the id-table entries and counts (kernel.mjs). */
export const K8_ROOM: usize = K8_SIZE + 16;

/**
 * key8Tile's scratch, written at k (16-aligned, K8_SIZE bytes of the block's scratch), for a block
 * (lossy profile) whose one-byte components (writerTable's entries [end2, end1)) lie in consecutive
 * bytes of the row with room for whole vectors after the first: returns k; else 0 (the column path).
 */
function key8Setup(P: usize, bl: usize, tab: usize, end2: usize, end1: usize, R4: usize, k: usize): usize {
  const nb = (end1 - end2) >> 4, G = (nb + 15) >> 4;
  if (nb == 0 || G > K8_G) return 0;
  const b1 = <usize>load<u32>(end2, 4);
  if (b1 + 16 * G > R4) return 0;
  for (let c: usize = 0; c < nb; c++) if (<usize>load<u32>(end2 + 16 * c, 4) != b1 + c) return 0;
  memory.fill(k, 0, K8_X);
  for (let c: usize = 0; c < 16 * G; c++) {   // defaults (also the padding lanes): any code valid, no sum
    const g = k + 176 * (c >> 4), l = c & 15;
    store<u8>(g + l, 255); store<u8>(g + 32 + l, 255);
  }
  // the one-byte components in writerTable's order (ascending c)
  const nc = <usize>load<u32>(bl, 12);
  let c: usize = 0;
  for (let b: usize = 0; b < nc; b++) {
    const pc = P + PC + <usize>32 * <usize>load<u32>(bl + 64 + 8 * b);
    if (load<u32>(pc) != 1) continue;
    const g = k + 176 * (c >> 4), l = c & 15, maxU = load<u32>(pc, 20), neg = load<u32>(pc, 24);
    store<u8>(g + l, <u8>(maxU < 255 ? maxU : 255));
    if (neg != 0 && neg < 256) { store<u8>(g + 16 + l, <u8>neg); store<u8>(g + 32 + l, 0); }
    const k0 = load<u32>(pc, 12), k1 = load<u32>(pc, 16);
    store<u16>(g + 48 + 2 * l, <u16>k0); store<u16>(g + 80 + 2 * l, <u16>((k0 >>> 16) + ((k0 >>> 15) & 1)));
    store<u16>(g + 112 + 2 * l, <u16>k1); store<u16>(g + 144 + 2 * l, <u16>((k1 >>> 16) + ((k1 >>> 15) & 1)));
    const e = end2 + 16 * c, j = load<u32>(bl + 64 + 8 * b);
    // a component without a table: ROTATION's, whose floats the caller derives afterwards (here
    // zeros from a table of zeros); any other: the column path
    const T = load<u32>(e, 12);
    if (!T && (j < 6 || j > 9)) return 0;
    store<u32>(k + K8_FT + 8 * c, T ? T : <u32>(k + K8_T0)); store<u32>(k + K8_FT + 8 * c, load<u32>(e, 8), 4);
    store<u32>(k + K8_SRC + 4 * c, load<u32>(e));
    c++;
  }
  for (; c < ((nb + 7) & ~7); c++) store<u32>(k + K8_FT + 8 * c, <u32>(k + K8_T0));   // (offset 0: POSITION x)
  store<u32>(k + K8_NB, <u32>nb);
  return k;
}

/**
 * Gaussians [i0, i1) of a keyframe block through key8Setup's scratch k: their one-byte codes
 * transposed, then per Gaussian its row codes (4-, 2-, then one-byte), its table floats, and the
 * one-byte codes' validity and sums (added to s0, s1). rows, data: the tile's first row and slot.
 * False when a one-byte code is invalid (the caller finds which).
 */
function key8Tile(k: usize, tab: usize, end4: usize, end2: usize, s0: usize, s1: usize, i0: usize, i1: usize,
                  rows: usize, R4: usize, data: usize, S4: usize): bool {
  const nb = <usize>load<u32>(k + K8_NB), G = (nb + 15) >> 4, X = k + K8_X;
  // the padding columns (up to 16 G) read zeros: K8_Z's 64 bytes for Gaussians i0..i0 + 63
  for (let c = nb; c < 16 * G; c++) store<usize>(k + K8_SRC + 4 * c, k + K8_Z - i0);
  const b1 = <usize>load<u32>(end2, 4);
  // the transpose, 16 Gaussians x 16 components at a time; the last Gaussians (fewer than 16) by bytes
  let i = i0;
  for (; i + 16 <= i1; i += 16) {
    for (let g: usize = 0; g < G; g++) transpose16(k + K8_SRC + 64 * g, i, X + 64 * (i - i0) + 16 * g);
  }
  for (; i < i1; i++) {
    const x = X + 64 * (i - i0);
    memory.fill(x, 0, 64);
    for (let c: usize = 0; c < nb; c++) store<u8>(x + c, load<u8>(<usize>load<u32>(k + K8_SRC + 4 * c) + i));
  }
  let bad = i64x2.splat(0);
  for (i = i0; i < i1; i++) {
    const x = X + 64 * (i - i0), row = rows + R4 * (i - i0), d = data + S4 * (i - i0);
    for (let e = tab; e < end4; e += 16) store<u32>(row + <usize>load<u32>(e, 4), load<u32>(load<usize>(e) + 4 * i));
    for (let e = end4; e < end2; e += 16) {
      const v = <usize>load<u16>(load<usize>(e) + 2 * i), T = load<usize>(e, 12);
      store<u16>(row + <usize>load<u32>(e, 4), <u16>v);
      if (T) store<f32>(d + <usize>load<u32>(e, 8), load<f32>(T + (v << 2)));
    }
    let a0 = i64x2.splat(0), h0 = i64x2.splat(0), a1 = i64x2.splat(0), h1 = i64x2.splat(0);
    for (let g: usize = 0; g < G; g++) {
      const v = v128.load(x + 16 * g), q = k + 176 * g;
      v128.store(row + b1 + 16 * g, v);
      bad = v128.or(bad, v128.and(i8x16.gt_u(v, v128.load(q)), v128.or(i8x16.lt_u(v, v128.load(q, 16)), v128.load(q, 32))));
      const lo = i16x8.extend_low_i8x16_u(v), hi = i16x8.extend_high_i8x16_u(v);
      a0 = i32x4.add(a0, i32x4.add(i32x4.dot_i16x8_s(lo, v128.load(q, 48)), i32x4.dot_i16x8_s(hi, v128.load(q, 64))));
      h0 = i32x4.add(h0, i32x4.add(i32x4.dot_i16x8_s(lo, v128.load(q, 80)), i32x4.dot_i16x8_s(hi, v128.load(q, 96))));
      a1 = i32x4.add(a1, i32x4.add(i32x4.dot_i16x8_s(lo, v128.load(q, 112)), i32x4.dot_i16x8_s(hi, v128.load(q, 128))));
      h1 = i32x4.add(h1, i32x4.add(i32x4.dot_i16x8_s(lo, v128.load(q, 144)), i32x4.dot_i16x8_s(hi, v128.load(q, 160))));
    }
    const t0 = i32x4.add(a0, i32x4.shl(h0, 16)), t1 = i32x4.add(a1, i32x4.shl(h1, 16));
    store<u32>(s0 + 4 * i, load<u32>(s0 + 4 * i) + <u32>(i32x4.extract_lane(t0, 0) + i32x4.extract_lane(t0, 1) + i32x4.extract_lane(t0, 2) + i32x4.extract_lane(t0, 3)));
    store<u32>(s1 + 4 * i, load<u32>(s1 + 4 * i) + <u32>(i32x4.extract_lane(t1, 0) + i32x4.extract_lane(t1, 1) + i32x4.extract_lane(t1, 2) + i32x4.extract_lane(t1, 3)));
    // the table floats: eight codes per load, a table and its float's offset per load (the entries
    // past nb, up to a multiple of 8, have code 0 and the table of zeros at offset 0, POSITION x, which
    // the caller writes afterwards)
    for (let c: usize = 0, f = k + K8_FT; c < nb; c += 8, f += 64) {
      const v = load<u64>(x + c);
      tableFloat(d, f, v); tableFloat(d, f + 8, v >> 8); tableFloat(d, f + 16, v >> 16); tableFloat(d, f + 24, v >> 24);
      tableFloat(d, f + 32, v >> 32); tableFloat(d, f + 40, v >> 40); tableFloat(d, f + 48, v >> 48); tableFloat(d, f + 56, v >> 56);
    }
  }
  return !v128.any_true(bad);
}
/** The float of the code in v's low byte from the table entry at f (u32 table, u32 byte offset in the slot d). */
@inline function tableFloat(d: usize, f: usize, v: u64): void {
  const e = load<u64>(f);
  store<f32>(d + <usize>(e >>> 32), load<f32>(<usize><u32>e + (<usize>(<u32>v & 0xFF) << 2)));
}
/**
 * The 16 x 16 byte transpose of key8Tile: the 16 bytes at each of the 16 column pointers cp[r] + i
 * (component r, Gaussians i..i + 15) -> 16 vectors at x + 64 l (Gaussian i + l, components 0..15).
 * Four rounds of byte interleaves, each vector 2k, 2k + 1 of a round from vectors k and k + 8 of the
 * one before (each round rotates the 8 bits of row and lane by one: after four, row and lane swap).
 */
@inline function transpose16(cp: usize, i: usize, x: usize): void {
  const r0 = v128.load(load<usize>(cp, 0) + i), r1 = v128.load(load<usize>(cp, 4) + i), r2 = v128.load(load<usize>(cp, 8) + i), r3 = v128.load(load<usize>(cp, 12) + i), r4 = v128.load(load<usize>(cp, 16) + i), r5 = v128.load(load<usize>(cp, 20) + i), r6 = v128.load(load<usize>(cp, 24) + i), r7 = v128.load(load<usize>(cp, 28) + i);
  const r8 = v128.load(load<usize>(cp, 32) + i), r9 = v128.load(load<usize>(cp, 36) + i), r10 = v128.load(load<usize>(cp, 40) + i), r11 = v128.load(load<usize>(cp, 44) + i), r12 = v128.load(load<usize>(cp, 48) + i), r13 = v128.load(load<usize>(cp, 52) + i), r14 = v128.load(load<usize>(cp, 56) + i), r15 = v128.load(load<usize>(cp, 60) + i);
  const a0 = i8x16.shuffle(r0, r8, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), a1 = i8x16.shuffle(r0, r8, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const a2 = i8x16.shuffle(r1, r9, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), a3 = i8x16.shuffle(r1, r9, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const a4 = i8x16.shuffle(r2, r10, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), a5 = i8x16.shuffle(r2, r10, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const a6 = i8x16.shuffle(r3, r11, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), a7 = i8x16.shuffle(r3, r11, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const a8 = i8x16.shuffle(r4, r12, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), a9 = i8x16.shuffle(r4, r12, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const a10 = i8x16.shuffle(r5, r13, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), a11 = i8x16.shuffle(r5, r13, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const a12 = i8x16.shuffle(r6, r14, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), a13 = i8x16.shuffle(r6, r14, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const a14 = i8x16.shuffle(r7, r15, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), a15 = i8x16.shuffle(r7, r15, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const b0 = i8x16.shuffle(a0, a8, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), b1 = i8x16.shuffle(a0, a8, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const b2 = i8x16.shuffle(a1, a9, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), b3 = i8x16.shuffle(a1, a9, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const b4 = i8x16.shuffle(a2, a10, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), b5 = i8x16.shuffle(a2, a10, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const b6 = i8x16.shuffle(a3, a11, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), b7 = i8x16.shuffle(a3, a11, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const b8 = i8x16.shuffle(a4, a12, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), b9 = i8x16.shuffle(a4, a12, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const b10 = i8x16.shuffle(a5, a13, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), b11 = i8x16.shuffle(a5, a13, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const b12 = i8x16.shuffle(a6, a14, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), b13 = i8x16.shuffle(a6, a14, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const b14 = i8x16.shuffle(a7, a15, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), b15 = i8x16.shuffle(a7, a15, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const c0 = i8x16.shuffle(b0, b8, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), c1 = i8x16.shuffle(b0, b8, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const c2 = i8x16.shuffle(b1, b9, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), c3 = i8x16.shuffle(b1, b9, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const c4 = i8x16.shuffle(b2, b10, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), c5 = i8x16.shuffle(b2, b10, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const c6 = i8x16.shuffle(b3, b11, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), c7 = i8x16.shuffle(b3, b11, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const c8 = i8x16.shuffle(b4, b12, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), c9 = i8x16.shuffle(b4, b12, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const c10 = i8x16.shuffle(b5, b13, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), c11 = i8x16.shuffle(b5, b13, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const c12 = i8x16.shuffle(b6, b14, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), c13 = i8x16.shuffle(b6, b14, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const c14 = i8x16.shuffle(b7, b15, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), c15 = i8x16.shuffle(b7, b15, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  v128.store(x, i8x16.shuffle(c0, c8, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), 0); v128.store(x, i8x16.shuffle(c0, c8, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31), 64);
  v128.store(x, i8x16.shuffle(c1, c9, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), 128); v128.store(x, i8x16.shuffle(c1, c9, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31), 192);
  v128.store(x, i8x16.shuffle(c2, c10, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), 256); v128.store(x, i8x16.shuffle(c2, c10, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31), 320);
  v128.store(x, i8x16.shuffle(c3, c11, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), 384); v128.store(x, i8x16.shuffle(c3, c11, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31), 448);
  v128.store(x, i8x16.shuffle(c4, c12, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), 512); v128.store(x, i8x16.shuffle(c4, c12, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31), 576);
  v128.store(x, i8x16.shuffle(c5, c13, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), 640); v128.store(x, i8x16.shuffle(c5, c13, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31), 704);
  v128.store(x, i8x16.shuffle(c6, c14, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), 768); v128.store(x, i8x16.shuffle(c6, c14, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31), 832);
  v128.store(x, i8x16.shuffle(c7, c15, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), 896); v128.store(x, i8x16.shuffle(c7, c15, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31), 960);
}

/**
 * Validity and lane sums of one 1-byte component over [i0, i1) of a keyframe block, 16 codes at a
 * time (SIMD; the tail one by one): s0[i] += v k0, s1[i] += v k1. True when a code is invalid.
 */
function keyColumn8(src: usize, i0: usize, i1: usize, s0: usize, s1: usize, k0: u32, k1: u32, maxU: u32, neg: u32): bool {
  const check = maxU < 255, hasNeg = neg != 0 && neg < 256;
  const maxV = i8x16.splat(<i8>(check ? maxU : 255)), negV = i8x16.splat(<i8>(hasNeg ? neg : 0));
  const k0v = i32x4.splat(k0), k1v = i32x4.splat(k1);
  let i = i0;
  for (; i + 16 <= i1; i += 16) {
    const v = v128.load(src + i);
    if (check) {
      let bad = i8x16.gt_u(v, maxV);
      if (hasNeg) bad = v128.and(bad, i8x16.lt_u(v, negV));
      if (v128.any_true(bad)) return true;
    }
    const l = i16x8.extend_low_i8x16_u(v), h = i16x8.extend_high_i8x16_u(v);
    const w0 = i32x4.extend_low_i16x8_u(l), w1 = i32x4.extend_high_i16x8_u(l);
    const w2 = i32x4.extend_low_i16x8_u(h), w3 = i32x4.extend_high_i16x8_u(h);
    const a = s0 + 4 * i, b = s1 + 4 * i;
    v128.store(a, i32x4.add(v128.load(a), i32x4.mul(w0, k0v)));
    v128.store(a, i32x4.add(v128.load(a, 16), i32x4.mul(w1, k0v)), 16);
    v128.store(a, i32x4.add(v128.load(a, 32), i32x4.mul(w2, k0v)), 32);
    v128.store(a, i32x4.add(v128.load(a, 48), i32x4.mul(w3, k0v)), 48);
    v128.store(b, i32x4.add(v128.load(b), i32x4.mul(w0, k1v)));
    v128.store(b, i32x4.add(v128.load(b, 16), i32x4.mul(w1, k1v)), 16);
    v128.store(b, i32x4.add(v128.load(b, 32), i32x4.mul(w2, k1v)), 32);
    v128.store(b, i32x4.add(v128.load(b, 48), i32x4.mul(w3, k1v)), 48);
  }
  for (; i < i1; i++) {
    const v = <u32>load<u8>(src + i);
    if (v > maxU && (neg == 0 || v < neg)) return true;
    store<u32>(s0 + 4 * i, load<u32>(s0 + 4 * i) + v * k0); store<u32>(s1 + 4 * i, load<u32>(s1 + 4 * i) + v * k1);
  }
  return false;
}

/** log2 of the most id-table regions of keyframeBlock (their counters: 4 KiB of its scratch). */
const KR_LOG: u32 = 10;
/**
 * Inserts ids[0..n) with slots first + i into the (reserved) id table: their entries (tag | slot <<
 * 32) grouped by region of the table into the scratch scr (counts: each region's first index, from
 * idSums), then placed region after region, so that each region's 16 KiB are written while in the
 * cache, where inserts in id order missed in the whole table. The ids are distinct and none is in
 * the table (F13: ascending in the block, none in two blocks; the table holds the earlier blocks'),
 * so no key is compared.
 */
function bulkPlace(st: usize, scr: usize, counts: usize, rs: u32, ids: usize, n: usize, first: u32): void {
  for (let i: usize = 0; i < n; i++) {
    const tag = tagOf(load<u64>(ids + 8 * i)), w = counts + 4 * <usize>(tag >>> rs), k = load<u32>(w);
    store<u32>(w, k + 1);
    store<u64>(scr + 8 * <usize>k, (<u64>(first + <u32>i) << 32) | <u64>tag);
  }
  // counts[r] is now the end of region r's entries; each region's table lines are read first, in
  // order (the prefetcher follows, and the loads do not wait on each other), then its entries placed
  const t = load<usize>(st, 36), C = <usize>load<u32>(st, 40), m = C - 1, sh = load<u32>(st, 44);
  const R: usize = <usize>1 << (32 - rs), RB: usize = 8 * (C / R);   // regions, bytes per region
  let k: usize = 0, warm: u32 = 0;
  for (let r: usize = 0; r < R; r++) {
    const end = <usize>load<u32>(counts + 4 * r), p = t + RB * r;
    if (end - k > 64) for (let o: usize = 0; o < RB; o += 64) warm += load<u32>(p + o);
    for (; k < end; k++) idtPlace(t, m, sh, load<u64>(scr + 8 * k));
  }
  touched += warm;
  store<u32>(st, load<u32>(st, 48) + <u32>n, 48);
}

/** Compacts when more slots are free than live (and more than minFree): live slots move down in slot order. */
export function maybeCompact(st: usize, minFree: u32): u32 {
  const fc = load<u32>(st, 56), live = load<u32>(st, 20);
  if (!(fc > live && fc > minFree)) return 0;
  const P = load<usize>(st), rows = load<usize>(st, 4), data = load<usize>(st, 8);
  const R4 = <usize>4 * <usize>load<u32>(P, 4), S4 = <usize>4 * <usize>load<u32>(P, 8), hw = load<u32>(st, 16);
  clearDirty(st);
  let dst: u32 = 0;
  for (let s: u32 = 0; s < hw; s++) {
    const row = rows + R4 * <usize>s;
    if (!(load<u32>(row, 4 * H_FLAGS) & 1)) continue;
    if (dst != s) {
      memory.copy(data + S4 * <usize>dst, data + S4 * <usize>s, S4);
      memory.copy(rows + R4 * <usize>dst, row, R4);
      store<u32>(row, 0, 4 * H_FLAGS);
      idtSet(st, load<u64>(rows + R4 * <usize>dst), <i32>dst);
    }
    dst++;
  }
  memory.fill(data + S4 * <usize>dst, 0, S4 * <usize>(hw - dst));
  memory.fill(rows + R4 * <usize>dst, 0, R4 * <usize>(hw - dst));
  store<u32>(st, dst, 16); store<u32>(st, 0, 56);
  store<u32>(st, load<u32>(st, 32) + 1, 32);
  return 1;
}

/**
 * The store's live ids into the empty order o (order.ts), from its rows in slot order (sorted there
 * unless they are ascending already, as after a keyframe of one ADD block): 0, or 1 when two rows
 * hold one id. May trap (out of memory): o stays empty then.
 */
export function ordFromStore(o: usize, st: usize): i32 {
  const rows = load<usize>(st, 4), R4 = <usize>4 * <usize>load<u32>(load<usize>(st), 4), hw = load<u32>(st, 16);
  const n = load<u32>(st, 20), ids = block(n, 8);
  let k: usize = 0;
  for (let s: u32 = 0; s < hw && k < <usize>n; s++) {
    const row = rows + R4 * <usize>s;
    if (load<u32>(row, 4 * H_FLAGS) & 1) store<u64>(ids + 8 * k++, load<u64>(row));
  }
  const r = k == <usize>n ? ordBuild(o, ids, n) : 1;
  heap.free(ids);
  return r;
}
/**
 * Removes the ids of the n slots at slots (their rows still hold them) from the order o, through the
 * scratch ids (n u64, the caller's): the count of those not there.
 */
export function ordRemoveSlots(o: usize, st: usize, slots: usize, n: u32, ids: usize): u32 {
  const rows = load<usize>(st, 4), R4 = <usize>4 * <usize>load<u32>(load<usize>(st), 4);
  for (let i: usize = 0; i < <usize>n; i++) store<u64>(ids + 8 * i, load<u64>(rows + R4 * <usize>load<u32>(slots + 4 * i)));
  return ordRemoveIds(o, ids, n);
}

/** The dirty slots, ascending, by a scan of the bits (when there are many), into out; returns the count. */
export function dirtyScan(st: usize, out: usize): u32 {
  const bits = load<usize>(st, 60), words = (load<u32>(st, 16) + 31) >>> 5;
  let k: usize = 0;
  for (let w: u32 = 0; w < words; w++) {
    let b = load<u32>(bits + <usize>4 * <usize>w);
    while (b) { store<u32>(out + 4 * k++, (w << 5) | ctz(b)); b &= b - 1; }
  }
  return <u32>k;
}
