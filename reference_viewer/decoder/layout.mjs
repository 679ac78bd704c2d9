// The slot float layout: what the renderer uploads and its shaders read (render/shaders.mjs), defined
// once for the decoder's SceneStore (decoder/store.mjs, written by decoder/wasm/kernel.ts through
// the offsets the profile hands it) and the renderer's RawStore (render/raw_store.mjs).
//
// Float offsets within a slot: the DEQUANTIZED floats of the state's codes (SPEC 5.2 / 5.3,
// evaluated in f64 and rounded to f32), PLY conventions (pre-activation):
//   0,1,2   position x y z
//   3       opacity logit (a freed slot is written with FREED_OPACITY, so it renders with alpha 0)
//   4,5,6   log-scale
//   7       0
//   8..11   quaternion w x y z (as dequantized, not renormalized)
//   12..14  SH DC r g b
//   15      0
//   16 .. 16+3K-1   SH rest in SPEC order (channel-major: R coefficients 1..K, then G, then B)
//   (rest of the stride: 0)
// With an SH palette (SPEC 5.9) the SH rest floats are those of a palette entry, shared by every
// Gaussian that names it: slot float 16 is the entry's index (an integer below 65536, exact in f32),
// the stride is 20, and the entries' floats are the store's paletteData (3K per entry, the order
// of slot floats 16 .. 16+3K-1 above).
export const SLOT = Object.freeze({ POSITION: 0, OPACITY: 3, SCALE: 4, ROTATION: 8, SH_DC: 12, SH_REST: 16 });
/** The two floats among the attributes that are always 0. */
export const ZERO_FLOATS = Object.freeze([7, 15]);
export const FREED_OPACITY = -1e30;

/** K = (d+1)^2 - 1 SH rest coefficients per colour channel at SH degree d. */
export const restCount = (shDegree) => (shDegree + 1) * (shDegree + 1) - 1;

/** Slot float of a Gaussian's palette index in a stream with an SH palette. */
export const PALETTE_INDEX = 16;

/**
 * Floats per slot at SH degree d: 16 + 3K rounded up to a multiple of 4 -> 16, 28, 40, 64; with an
 * SH palette 20 (the index at 16).
 */
export const slotStride = (shDegree, palette = false) => (palette ? 20 : (16 + 3 * restCount(shDegree) + 3) & ~3);

/**
 * Float offset of each code component j (SPEC 7.1 order: POSITION x y z, SCALE 0..2, ROTATION 4,
 * OPACITY, SH_DC r g b, SH_REST 3K channel-major, or with an SH palette its one index) within a slot.
 */
export function componentOffsets(shDegree, palette = false) {
  const K = palette ? 0 : restCount(shDegree), out = new Uint8Array(14 + (palette ? 1 : 3 * K));
  if (palette) out[14] = PALETTE_INDEX;
  const P = SLOT.POSITION, S = SLOT.SCALE, Q = SLOT.ROTATION, C = SLOT.SH_DC;
  [P, P + 1, P + 2, S, S + 1, S + 2, Q, Q + 1, Q + 2, Q + 3, SLOT.OPACITY, C, C + 1, C + 2].forEach((o, j) => { out[j] = o; });
  for (let r = 0; r < 3 * K; r++) out[14 + r] = SLOT.SH_REST + r;
  return out;
}
