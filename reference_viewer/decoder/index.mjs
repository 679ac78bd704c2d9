// Public entry of the GSD decoder for the reference viewer (plain ES modules; Node 20 and browsers).
export { Decoder, SPEC_LIMITS, makeLimits } from './decoder.mjs';
export { GsdError, ERROR_CODES } from './errors.mjs';
export { SceneStore } from './store.mjs';
export { crc32 } from './crc32.mjs';
export { xxh64 } from './xxh64.mjs';
export { decodeStreamLines } from './stream.mjs';
export { fmix32, laneConstants, digestText, recordHashes } from './digest.mjs';
