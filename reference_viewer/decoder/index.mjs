// GSD 1.4 decoder for the reference viewer: plain ES modules and one wasm module, no build step at
// load time; runs in Node 20+ and in browsers. The vendored flatbuffers runtime is imported by relative
// path; the decoder's own inner loops and zstd's decoder are the wasm kernel decoder/wasm/kernel.wasm
// (AssemblyScript source kernel.ts beside it, merged with zstddec's build of zstd's C decoder by
// decoder/wasm/build.mjs: one linear memory), loaded by decoder/kernel.mjs with a top-level await.
//
//   decoder.mjs   the Decoder: header and frame records in, state out
//   frame.mjs     frame checks: framing, CRC-32, FlatBuffers metadata, limits, block and section
//                 table, sections (sections.mjs, zstd.mjs), sequencing and id rules -> a plan
//   apply.mjs     the plan against the state: validation, all-or-nothing apply with undo, digest
//   store.mjs     the SceneStore the renderer reads; layout.mjs its slot float layout
//   order.mjs     the live ids in order, for ranked blocks (SPEC 6.1, 1.2), made at a stream's first one
// An independent implementation of SPEC.md (sections 1-9, Appendix A); passes every vector of
// conformance/ (node reference_viewer/tools/testee.mjs is its conformance testee).
//
//   import { Decoder, GsdError } from './decoder/index.mjs'
//   const dec = new Decoder({ limits: { max_gaussians: 2_000_000 }, verifyDigest: true })
//                             // limits: SPEC 9.1 names, lowered only (higher values are capped)
//   const h = dec.readHeader(u8)      // one header record at the start of u8 (H1..H10 of SPEC 4.9)
//       // -> { versionMajor, versionMinor, shDegree, grid, quantization (null: lossless), lossless,
//       //      profileName, generator, frameRate (informative, 0: unset), maxGaussians,
//       //      requiredFeatures, shPalette (0: none), used }
//       // starts a new stream: empty state, seq 0, dec.store reset (generation++)
//   const r = dec.readFrame(u8)       // decode + apply the frame record at the start of u8
//       // -> { seq, seqBig, baseSeq, keyframe, digest: 'count:lane0:lane1' | null, used,
//       //      counts: { add, update, deleteIds, deleteRanges, deleteCells, palette, deleted, live } }
//       // all-or-nothing: on any error it throws a GsdError and the state, dec.seq, the digest and
//       // dec.store (data, slots, dirty set, generation, SH palette) are exactly as before
//   SH palette streams (SPEC 5.9, header required_features bit 0): the palette is part of the state;
//       dec.store.paletteSize / paletteData / takePaletteDirty() give it to the renderer (store.mjs)
//   Ranked blocks (SPEC 6.1, 1.2: UPDATE_RANKED, DELETE_RANKED) resolve against the ids live before
//       the frame; their counts are those of the UPDATE and DELETE_IDS blocks they become
//   readHeader(u8, { message: true }) / readFrame(u8, { message: true }): u8 must hold exactly one
//       record (one WebSocket message, SPEC 11.3); bytes after it are MALFORMED
//   dec.digestText()                  // digest of the current state, text form (SPEC 7.4)
//   dec.seq                           // seq of the state (Number; dec.seqBig is the exact u64 BigInt)
//   dec.store                         // the SceneStore the renderer reads (contract in store.mjs)
//   dec.checkFrame(u8)                // the frame checks alone (F1..F13), state untouched
//   dec.dispose()                     // frees the decoder's wasm memory now (else when collected)
//   GsdError: .code is the SPEC 9.2 name ('BAD_CHECKSUM', ...), .number its numeric code
//
// A frame before any header is MALFORMED. Inputs are never trusted: every count, length, offset and
// index is checked before use; FlatBuffers metadata is fully verified before any field is read.
export { Decoder, SPEC_LIMITS, makeLimits } from './decoder.mjs';
export { GsdError, ERROR_CODES } from './errors.mjs';
export { SceneStore } from './store.mjs';
export { crc32 } from './crc32.mjs';
export { xxh64 } from './xxh64.mjs';
export { decodeStreamLines } from './stream.mjs';
export { fmix32, laneConstants, digestText, recordHashes } from './digest.mjs';
