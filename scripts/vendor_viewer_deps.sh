#!/usr/bin/env bash
# Copies the reference viewer's runtime libraries from node_modules (npm ci) into
# reference_viewer/vendor/, as plain ES modules the browser loads by relative path
# (no bundler, no import map). Re-run after bumping fzstd or flatbuffers in package.json.
#   fzstd        -> reference_viewer/vendor/fzstd/index.mjs        (+ LICENSE)   [package "module" build, + 1 export line]
#   flatbuffers  -> reference_viewer/vendor/flatbuffers/*.js       (+ LICENSE)   [package mjs/ build]
# tests/test_viewer_decoder.py checks the copies are byte-identical to node_modules' (fzstd: plus that line).
set -euo pipefail
cd "$(dirname "$0")/.."
NM=node_modules
DST=reference_viewer/vendor
FZSTD_SUFFIX='export { rzfh as _rzfh, rzb as _rzb }; // appended by scripts/vendor_viewer_deps.sh'
for p in fzstd flatbuffers; do
  [ -f "$NM/$p/package.json" ] || { echo "vendor_viewer_deps: $NM/$p missing; run npm ci first" >&2; exit 1; }
done
rm -rf "$DST/fzstd" "$DST/flatbuffers"
mkdir -p "$DST/fzstd" "$DST/flatbuffers"
# fzstd ships an ESM build (esm/index.mjs, no imports): one file.
cp "$NM/fzstd/esm/index.mjs" "$DST/fzstd/index.mjs"
# ... plus one appended line (the only change): exports of its frame-header and block readers,
# which reference_viewer/decoder/zstd.mjs drives block by block (exact produced sizes, no copies).
printf '%s\n' "$FZSTD_SUFFIX" >> "$DST/fzstd/index.mjs"
cp "$NM/fzstd/LICENSE" "$DST/fzstd/LICENSE"
# flatbuffers' mjs/ build: the runtime modules (relative imports among themselves, all ".js" ESM).
# flexbuffers is not needed; copy only the files flatbuffers.js reaches.
for f in flatbuffers.js constants.js utils.js builder.js byte-buffer.js encoding.js; do
  cp "$NM/flatbuffers/mjs/$f" "$DST/flatbuffers/$f"
done
cp "$NM/flatbuffers/LICENSE" "$DST/flatbuffers/LICENSE"
# .js files are ES modules only if the nearest package.json says so (Node); browsers go by the
# import statement. This marker is ours, not a copy.
printf '{\n  "type": "module"\n}\n' > "$DST/flatbuffers/package.json"
( cd "$DST" && { echo "fzstd $(node -p "require('../../$NM/fzstd/package.json').version" 2>/dev/null || echo '?')";
                 echo "flatbuffers $(node -p "require('../../$NM/flatbuffers/package.json').version" 2>/dev/null || echo '?')"; } > VERSIONS )
echo "vendor_viewer_deps: copied into $DST: $(cat "$DST/VERSIONS" | tr '\n' ' ')"
