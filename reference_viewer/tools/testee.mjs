#!/usr/bin/env node
// Conformance testee (conformance/README.md): node reference_viewer/tools/testee.mjs decode FILE [--limit NAME=VALUE ...]
// Prints `header ok|error CODE`, then `frame K ok DIGEST|error CODE` per record; exits 0.
import { readFileSync } from 'node:fs';
import { Decoder, GsdError } from '../decoder/index.mjs';

function main(argv) {
  if (argv[0] !== 'decode' || argv.length < 2) {
    process.stderr.write('usage: testee.mjs decode FILE [--limit NAME=VALUE ...]\n');
    return 2;
  }
  const limits = {};
  for (let i = 2; i < argv.length; i++) {
    if (argv[i] === '--limit' && i + 1 < argv.length) {
      const [k, v] = argv[++i].split('=');
      limits[k] = Number(v);
    } else {
      process.stderr.write(`unknown argument ${argv[i]}\n`);
      return 2;
    }
  }
  const data = new Uint8Array(readFileSync(argv[1]));
  const dec = new Decoder({ limits });
  const out = [];
  const code = (e) => {
    if (e instanceof GsdError) return e.code;
    throw e;
  };
  let pos;
  try {
    pos = dec.readHeader(data).used;
    out.push('header ok');
  } catch (e) {
    out.push(`header error ${code(e)}`);
    pos = -1;
  }
  for (let k = 0; pos >= 0 && pos < data.length; k++) {
    try {
      const r = dec.readFrame(data.subarray(pos));
      out.push(`frame ${k} ok ${dec.digestText()}`);
      pos += r.used;
    } catch (e) {
      out.push(`frame ${k} error ${code(e)}`);
      break;
    }
  }
  process.stdout.write(out.join('\n') + '\n');
  return 0;
}

process.exitCode = main(process.argv.slice(2));
