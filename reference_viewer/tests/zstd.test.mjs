// zstd sections through zstd's decoder in the wasm kernel (reference_viewer/decoder/zstd.mjs): the frame
// checks of SPEC 4.4 made before the wasm call, the exact size after, errors as DECOMPRESSION_FAILED,
// and a decoder that keeps working after a hostile frame.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { zstdDecompress } from '../decoder/zstd.mjs';
import { K } from '../decoder/kernel.mjs';
import { GsdError, xxh64 } from '../decoder/index.mjs';

// 3000 bytes (i*7 % 251), level 3, with Frame_Content_Size and a content checksum (python zstandard)
const HEX = '28b52ffd64b80a2d0800b40f00070e151c232a31383f464d545b626970777e858c939aa1a8afb6bdc4cbd2d9e0e7eef5' +
  '01080f161d242b323940474e555c636a71787f868d949ba2a9b0b7bec5ccd3dae1e8eff6020910171e252c333a41484f565d646b72' +
  '7980878e959ca3aab1b8bfc6cdd4dbe2e9f0f7030a11181f262d343b424950575e656c737a81888f969da4abb2b9c0c7ced5dce3ea' +
  'f1f8040b121920272e353c434a51585f666d747b828990979ea5acb3bac1c8cfd6dde4ebf2f9050c131a21282f363d444b52596067' +
  '6e757c838a91989fa6adb4bbc2c9d0d7dee5ecf3fa060d141b222930373e454c535a61686f767d848b9299a0a7aeb5bcc3cad1d8df' +
  'e6edf401007b5df97d2305fab0671f';
const FRAME = Uint8Array.from(HEX.match(/../g), (h) => parseInt(h, 16));
const RAW = Uint8Array.from({ length: 3000 }, (_, i) => (i * 7) % 251);

const fails = (f) => assert.throws(f, (e) => e instanceof GsdError && e.code === 'DECOMPRESSION_FAILED');

test('a valid frame gives exactly raw_size bytes; the result is a view valid until the next call', () => {
  const out = zstdDecompress(FRAME, 3000);
  assert.equal(out.length, 3000);
  assert.deepEqual(Array.from(out), Array.from(RAW));
  const kept = out.slice();
  zstdDecompress(FRAME, 3000);
  assert.deepEqual(Array.from(kept), Array.from(RAW));
});

test('size, trailing bytes, checksum, corrupt data, magic, dictionary: DECOMPRESSION_FAILED; then still decodes', () => {
  fails(() => zstdDecompress(FRAME, 2999));                       // Frame_Content_Size != raw_size
  fails(() => zstdDecompress(FRAME, 3001));
  const trailing = new Uint8Array(FRAME.length + 1); trailing.set(FRAME);
  fails(() => zstdDecompress(trailing, 3000));                    // a byte after the frame
  const two = new Uint8Array(2 * FRAME.length); two.set(FRAME); two.set(FRAME, FRAME.length);
  fails(() => zstdDecompress(two, 3000));                         // two frames
  const sum = FRAME.slice(); sum[sum.length - 1] ^= 1;
  fails(() => zstdDecompress(sum, 3000));                         // content checksum (zstd verifies it)
  fails(() => zstdDecompress(FRAME.subarray(0, FRAME.length - 1), 3000));   // truncated
  const magic = FRAME.slice(); magic[0] ^= 1;
  fails(() => zstdDecompress(magic, 3000));
  const skippable = FRAME.slice(); skippable.set([0x50, 0x2A, 0x4D, 0x18]);
  fails(() => zstdDecompress(skippable, 3000));
  const dict = FRAME.slice(); dict[4] |= 1;                        // Dictionary_ID_flag: a dictionary id byte
  fails(() => zstdDecompress(dict, 3000));
  const reserved = FRAME.slice(); reserved[4] |= 8;
  fails(() => zstdDecompress(reserved, 3000));
  let failed = 0;
  for (let p = 12; p < FRAME.length - 4; p++) {                    // corruption inside the compressed block
    const c = FRAME.slice(); c[p] ^= 0x5A;
    // with the checksum, a corruption that zstd decodes without error is caught unless the content is intact
    try { const out = zstdDecompress(c, 3000); assert.deepEqual(Array.from(out), Array.from(RAW)); } catch (e) {
      assert.ok(e instanceof GsdError && e.code === 'DECOMPRESSION_FAILED', String(e));
      failed++;
    }
  }
  assert.ok(failed > 0);
  assert.deepEqual(Array.from(zstdDecompress(FRAME, 3000)), Array.from(RAW));
});

test('a window above 2^27 is rejected before decompressing; a declared size the blocks cannot give too', () => {
  // header: magic, FHD = FCS 4 bytes (flag 2), not single segment; Window_Descriptor exponent 18 -> 2^28
  const big = Uint8Array.from([0x28, 0xB5, 0x2F, 0xFD, 0x80, 18 << 3, 0, 0, 0, 1, 0x01, 0x00, 0x00]);
  fails(() => zstdDecompress(big, 2 ** 24));
  // a raw block of 0 bytes, last, claiming 2^24 bytes of content: no allocation of 2^24 happens
  const short = Uint8Array.from([0x28, 0xB5, 0x2F, 0xFD, 0x80, 10 << 3, 0, 0, 0, 1, 0x01, 0x00, 0x00]);
  fails(() => zstdDecompress(short, 2 ** 24));
});

// A single-segment frame laid out by hand: FHD (4-byte Frame_Content_Size, single segment, checksum flag
// when `sumOf` is given, a 1-byte Dictionary_ID field when `dictId` is given), the blocks ([type, bytes]:
// 'raw' stores the bytes, 'rle' repeats the first byte bytes.length times), then the checksum of `sumOf`.
function laid(fcs, blocks, { dictId = null, sumOf = null } = {}) {
  const out = [0x28, 0xB5, 0x2F, 0xFD, 0xA0 | (sumOf ? 4 : 0) | (dictId === null ? 0 : 1)];
  if (dictId !== null) out.push(dictId);
  out.push(fcs & 255, (fcs >> 8) & 255, (fcs >> 16) & 255, fcs >>> 24);
  blocks.forEach(([type, bytes], k) => {
    const h = (bytes.length << 3) | ((type === 'rle' ? 1 : 0) << 1) | (k === blocks.length - 1 ? 1 : 0);
    out.push(h & 255, (h >> 8) & 255, h >> 16, ...(type === 'rle' ? [bytes[0]] : bytes));
  });
  if (sumOf) {
    const c = Number(xxh64(sumOf) & 0xFFFFFFFFn);
    out.push(c & 255, (c >> 8) & 255, (c >> 16) & 255, c >>> 24);
  }
  return Uint8Array.from(out);
}
const skippable = (nibble, data) => Uint8Array.from([0x50 + nibble, 0x2A, 0x4D, 0x18, data.length, 0, 0, 0, ...data]);
const cat = (...parts) => Uint8Array.from(parts.flatMap((p) => Array.from(p)));

test('the content checksum is verified when the blocks decode without error', () => {
  const raw = RAW.subarray(0, 100);
  assert.deepEqual(Array.from(zstdDecompress(laid(100, [['raw', raw]], { sumOf: raw }), 100)), Array.from(raw));
  const other = raw.slice(); other[50] ^= 1;
  fails(() => zstdDecompress(laid(100, [['raw', raw]], { sumOf: other }), 100));
  fails(() => zstdDecompress(laid(100, [['raw', other]], { sumOf: raw }), 100));
  assert.equal(zstdDecompress(laid(100, [['raw', raw]]), 100).length, 100);   // no checksum: still valid
});

test('skippable frames are not Zstandard frames, also for raw_size 0', () => {
  const empty = laid(0, [['raw', []]], { sumOf: new Uint8Array(0) });
  assert.equal(zstdDecompress(empty, 0).length, 0);
  for (const n of [0, 15]) {
    fails(() => zstdDecompress(skippable(n, [1, 2, 3, 4]), 0));
    fails(() => zstdDecompress(skippable(n, []), 0));
    fails(() => zstdDecompress(cat(skippable(n, []), empty), 0));
    fails(() => zstdDecompress(cat(empty, skippable(n, [9])), 0));
    fails(() => zstdDecompress(cat(skippable(n, [9]), FRAME), 3000));
    fails(() => zstdDecompress(cat(FRAME, skippable(n, [9])), 3000));
  }
});

test('a non-zero Dictionary_ID fails from the header even when the blocks need no dictionary', () => {
  const raw = RAW.subarray(0, 40);
  const blocks = [['raw', raw.subarray(0, 39)], ['rle', raw.subarray(39)]];
  assert.deepEqual(Array.from(zstdDecompress(laid(40, blocks, { dictId: 0, sumOf: raw }), 40)), Array.from(raw));
  fails(() => zstdDecompress(laid(40, blocks, { dictId: 1, sumOf: raw }), 40));
  fails(() => zstdDecompress(laid(40, [['rle', new Uint8Array(40)]], { dictId: 200 }), 40));
});

test("zstd's stack pointer and its malloc heap are where they were after failures and many frames", () => {
  const sp = K.emscripten_stack_get_current(), brk = new Uint32Array(K.memory.buffer)[3488 >> 2];   // emscripten's sbrk
  for (let k = 0; k < 50; k++) {
    fails(() => zstdDecompress(FRAME.subarray(0, FRAME.length - 1), 3000));
    const c = FRAME.slice(); c[20] ^= 0x5A;
    try { zstdDecompress(c, 3000); } catch { /* DECOMPRESSION_FAILED or the checksum */ }
    assert.deepEqual(Array.from(zstdDecompress(FRAME, 3000)), Array.from(RAW));
  }
  assert.equal(K.emscripten_stack_get_current(), sp);
  assert.equal(new Uint32Array(K.memory.buffer)[3488 >> 2], brk);
  assert.ok(brk < 1 << 20);   // below the kernel's data (build.mjs: ZSTD_REGION)
});
