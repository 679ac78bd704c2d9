#!/usr/bin/env node
// Conformance testee (conformance/README.md):
//   node reference_viewer/tools/testee.mjs decode FILE [--limit NAME=VALUE ...]
// Prints `header ok|error CODE`, then `frame K ok DIGEST|error CODE` per record; exits 0.
import { readFileSync } from 'node:fs';
import { decodeStreamLines } from '../decoder/stream.mjs';

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
  const lines = decodeStreamLines(new Uint8Array(readFileSync(argv[1])), { limits });
  process.stdout.write(lines.join('\n') + '\n');
  return 0;
}

process.exitCode = main(process.argv.slice(2));
