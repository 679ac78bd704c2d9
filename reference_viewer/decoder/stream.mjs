// Whole-stream helper (a .gsd file in memory): header, then frames until the end of the data.
import { Decoder } from './decoder.mjs';
import { GsdError } from './errors.mjs';

/**
 * Decodes a stream record by record with `dec` (a Decoder; a new one by default, disposed at the
 * end) and returns the conformance transcript (conformance/README.md): ['header ok', 'frame 0 ok
 * 2:...', ...], stopping at the first error ('header error CODE' / 'frame K error CODE').
 * onFrame(k, result) is called after every applied frame.
 */
export function decodeStreamLines(u8, { decoder, limits, onFrame } = {}) {
  if (decoder) return transcript(decoder, u8, onFrame);
  const dec = new Decoder({ limits });
  try {
    return transcript(dec, u8, onFrame);
  } finally {
    dec.dispose();   // its wasm memory now, not when it is collected (a loop over many streams)
  }
}

function transcript(dec, u8, onFrame) {
  const out = [];
  let pos;
  try {
    pos = dec.readHeader(u8).used;
  } catch (e) {
    if (!(e instanceof GsdError)) throw e;
    out.push(`header error ${e.code}`);
    return out;
  }
  out.push('header ok');
  for (let k = 0; pos < u8.length; k++) {
    let r;
    try {
      r = dec.readFrame(u8.subarray(pos));
    } catch (e) {
      if (!(e instanceof GsdError)) throw e;
      out.push(`frame ${k} error ${e.code}`);
      break;
    }
    out.push(`frame ${k} ok ${dec.digestText()}`);
    if (onFrame) onFrame(k, r);
    pos += r.used;
  }
  return out;
}
