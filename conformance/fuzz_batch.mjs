#!/usr/bin/env node
// Many streams through the JS decoder in one process, for differential fuzzing (conformance/fuzz_diff.py).
//
//   node conformance/fuzz_batch.mjs < requests > transcripts
//
// A request is u32 LE length of a JSON object ({"limits": {NAME: VALUE}}; SPEC 9.1 names, lowered
// only), then u32 LE length of the stream, then the stream. For each request, in order, the reply is
// the conformance transcript (conformance/README.md: `header ok`, `frame K ok DIGEST`, `frame K error
// CODE`), one line each, then `end`. Beyond the protocol, a line `crash WHAT` reports what the
// protocol cannot: an exception that is not a GsdError, an internal error the decoder turned into a
// GsdError ("internal error while ..."), or a failed frame after which the decoder's digest or seq
// differ from before it (SPEC 6.3: all-or-nothing).
import { Decoder, GsdError } from '../reference_viewer/decoder/index.mjs';

function transcript(u8, limits) {
  const out = [];
  const dec = new Decoder({ limits });
  try {
    let pos;
    try {
      pos = dec.readHeader(u8).used;
    } catch (e) {
      if (!(e instanceof GsdError)) throw e;
      if (/internal error/.test(e.message)) out.push(`crash header ${e.code}: ${e.message}`);
      out.push(`header error ${e.code}`);
      return out;
    }
    out.push('header ok');
    for (let k = 0; pos < u8.length; k++) {
      const before = dec.digestText();
      const seq = dec.seqBig;
      let r;
      try {
        r = dec.readFrame(u8.subarray(pos));
      } catch (e) {
        if (!(e instanceof GsdError)) throw e;
        if (/internal error/.test(e.message)) out.push(`crash frame ${k} ${e.code}: ${e.message}`);
        if (dec.digestText() !== before || dec.seqBig !== seq) {
          out.push(`crash frame ${k} state changed after ${e.code}: ${before} -> ${dec.digestText()}`);
        }
        out.push(`frame ${k} error ${e.code}`);
        break;
      }
      out.push(`frame ${k} ok ${dec.digestText()}`);
      pos += r.used;
    }
  } catch (e) {
    out.push(`crash ${e && e.name}: ${e && e.message}`.replace(/\n/g, ' '));
  } finally {
    dec.dispose();
  }
  return out;
}

let buf = Buffer.alloc(0);
const pending = [];

function drain() {
  for (;;) {
    if (buf.length < 4) return;
    const jl = buf.readUInt32LE(0);
    if (buf.length < 8 + jl) return;
    const dl = buf.readUInt32LE(4 + jl);
    if (buf.length < 8 + jl + dl) return;
    const req = JSON.parse(buf.subarray(4, 4 + jl).toString('utf8'));
    const data = new Uint8Array(buf.subarray(8 + jl, 8 + jl + dl));   // a copy: buf is reused
    buf = buf.subarray(8 + jl + dl);
    pending.push(transcript(data, req.limits || {}).join('\n') + '\nend\n');
    if (pending.length >= 64) flush();
  }
}

function flush() {
  if (pending.length) process.stdout.write(pending.join(''));
  pending.length = 0;
}

process.stdin.on('data', (chunk) => {
  buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
  drain();
  flush();
});
process.stdin.on('end', () => { drain(); flush(); });
