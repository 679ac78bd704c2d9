// Check values: CRC-32 (SPEC 4.8), XXH64, fmix32 and K constants (SPEC 7.2), the 7.6 worked example.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { crc32, xxh64, fmix32, laneConstants, recordHashes, digestText } from '../decoder/index.mjs';

const ascii = (s) => new TextEncoder().encode(s);

test('crc32 check value and table-driven == bitwise for every length and offset', () => {
  assert.equal(crc32(ascii('123456789')), 0xCBF43926);
  assert.equal(crc32(new Uint8Array(0)), 0);
  const slow = (u8) => {
    let c = 0xFFFFFFFF;
    for (const b of u8) { c ^= b; for (let k = 0; k < 8; k++) c = (c & 1) ? (c >>> 1) ^ 0xEDB88320 : c >>> 1; }
    return (c ^ 0xFFFFFFFF) >>> 0;
  };
  const data = new Uint8Array(64).map((_, i) => (i * 151 + 7) & 0xFF);
  for (let a = 0; a < 9; a++) for (let b = a; b <= 64; b += 3) assert.equal(crc32(data, a, b), slow(data.subarray(a, b)));
});

test('xxh64 check values', () => {
  assert.equal(xxh64(new Uint8Array(0)), 0xEF46DB3751D8E999n);
  assert.equal(xxh64(ascii('a')), 0xD24EC4F1A98C6E5Bn);
  assert.equal(xxh64(ascii('abc')), 0x44BC2CF5AD770999n);
  assert.equal(xxh64(ascii('Nobody inspects the spammish repetition')), 0xFBCEA83C8A378BF1n);
});

test('fmix32 check values and the K tables of SPEC 7.2', () => {
  assert.equal(fmix32(0), 0);
  assert.equal(fmix32(1), 0x514E28B7);
  const k0 = ' 11fd02eb bb2aafdf d6a3deed f5ce2edf 9982f0bb 80d754bd 9158634d f8114cc3 b1352e99 3304e177 9664b36b 5e5b692d b75a794d 22b1c699 ee637f79 d97b8fef';
  const k1 = 'be1bc733 e98b9527 d4e50d57 c3f4fcd1 ebdbf77b e4fb31fd 50a75f31 a20b780d 146a2a7b 2924a283 f4037a75 5ff3e8f7 1c2d6791 952d4d5f 915588e7 aeffd043';
  assert.deepEqual([...laneConstants(16, 0)].map((x) => x.toString(16).padStart(8, '0')), k0.trim().split(' '));
  assert.deepEqual([...laneConstants(16, 1)].map((x) => x.toString(16).padStart(8, '0')), k1.trim().split(' '));
  // K_L[j] does not depend on m
  assert.deepEqual([...laneConstants(61, 1)].slice(0, 16), [...laneConstants(16, 1)]);
});

test('SPEC 7.6 worked example: record sums, lane hashes and digests', () => {
  const A = [848, 0, 5, 10, 2, 133, 133, 125, 0, 184, 53, 165, 225, 146, 118, 164];
  const B = [0, 0, 3, 14, 6, 156, 149, 142, 3, 109, 164, 109, 68, 129, 131, 124];
  const hex = (x) => x.toString(16).padStart(8, '0');
  const [a0, a1, as0, as1] = recordHashes(A), [b0, b1, bs0, bs1] = recordHashes(B);
  assert.deepEqual([as0, as1, a0, a1].map(hex), ['ebd0a727', '4124f19b', 'd2076ae6', '492dc7c0']);
  assert.deepEqual([bs0, bs1, b0, b1].map(hex), ['1a0956e9', 'd394009f', '0e71f8ba', 'b94b2f75']);
  assert.equal(digestText(0, 0, 0), '0:00000000:00000000');
  assert.equal(digestText(1, a0, a1), '1:d2076ae6:492dc7c0');
  assert.equal(digestText(2, (a0 + b0) >>> 0, (a1 + b1) >>> 0), '2:e07963a0:0278f735');
  const A2 = A.slice(); A2[2] = 6;
  const [c0, c1] = recordHashes(A2);
  assert.equal(digestText(2, (c0 + b0) >>> 0, (c1 + b1) >>> 0), '2:e711aeef:36aff9f3');
});
