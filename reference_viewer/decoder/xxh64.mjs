// XXH64 (seed 0 by default): the zstd frame content checksum is its low 32 bits over the
// decompressed content (RFC 8878 3.1.1). The decoder does not call it: zstddec (libzstd) verifies
// the checksum of every frame that has one (SPEC 4.4; tests/zstd.test.mjs checks that), faster than
// this BigInt version would. Kept for tests and tools that lay out or check frames by hand.
const M = (1n << 64n) - 1n;
const P1 = 0x9E3779B185EBCA87n, P2 = 0xC2B2AE3D27D4EB4Fn, P3 = 0x165667B19E3779F9n;
const P4 = 0x85EBCA77C2B2AE63n, P5 = 0x27D4EB2F165667C5n;
const rotl = (x, r) => ((x << r) | (x >> (64n - r))) & M;
const round = (acc, lane) => (rotl((acc + lane * P2) & M, 31n) * P1) & M;
const merge = (acc, v) => ((((acc ^ round(0n, v)) * P1) & M) + P4) & M;

function u64(u8, i) {
  const lo = (u8[i] | (u8[i + 1] << 8) | (u8[i + 2] << 16) | (u8[i + 3] << 24)) >>> 0;
  const hi = (u8[i + 4] | (u8[i + 5] << 8) | (u8[i + 6] << 16) | (u8[i + 7] << 24)) >>> 0;
  return (BigInt(hi) << 32n) | BigInt(lo);
}
function u32(u8, i) {
  return BigInt((u8[i] | (u8[i + 1] << 8) | (u8[i + 2] << 16) | (u8[i + 3] << 24)) >>> 0);
}

/** XXH64 of u8 as a BigInt. */
export function xxh64(u8, seed = 0n) {
  const len = u8.length;
  let i = 0, h;
  if (len >= 32) {
    let v1 = (seed + P1 + P2) & M, v2 = (seed + P2) & M, v3 = seed, v4 = (seed - P1) & M;
    for (; i + 32 <= len; i += 32) {
      v1 = round(v1, u64(u8, i)); v2 = round(v2, u64(u8, i + 8));
      v3 = round(v3, u64(u8, i + 16)); v4 = round(v4, u64(u8, i + 24));
    }
    h = (rotl(v1, 1n) + rotl(v2, 7n) + rotl(v3, 12n) + rotl(v4, 18n)) & M;
    h = merge(h, v1); h = merge(h, v2); h = merge(h, v3); h = merge(h, v4);
  } else {
    h = (seed + P5) & M;
  }
  h = (h + BigInt(len)) & M;
  for (; i + 8 <= len; i += 8) h = ((rotl(h ^ round(0n, u64(u8, i)), 27n) * P1) & M) + P4 & M;
  if (i + 4 <= len) { h = ((rotl(h ^ ((u32(u8, i) * P1) & M), 23n) * P2) & M) + P3 & M; i += 4; }
  for (; i < len; i++) h = (rotl(h ^ ((BigInt(u8[i]) * P5) & M), 11n) * P1) & M;
  h ^= h >> 33n; h = (h * P2) & M;
  h ^= h >> 29n; h = (h * P3) & M;
  h ^= h >> 32n;
  return h;
}
