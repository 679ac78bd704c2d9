#!/usr/bin/env bash
# Copies the reference viewer's runtime libraries from node_modules (npm ci) into
# reference_viewer/vendor/, as plain ES modules the browser loads by relative path
# (no bundler, no import map). Re-run after bumping zstddec or flatbuffers in package.json.
#   zstddec      -> reference_viewer/vendor/zstddec/LICENSE only: its build of zstd's decoder is merged
#                   into reference_viewer/decoder/wasm/kernel.wasm by that folder's build.mjs
#   flatbuffers  -> reference_viewer/vendor/flatbuffers/*.js       (+ LICENSE)   [package mjs/ build]
# tests/test_viewer_decoder.py checks the copies are byte-identical to node_modules'.
set -euo pipefail
cd "$(dirname "$0")/.."
NM=node_modules
DST=reference_viewer/vendor
for p in zstddec flatbuffers; do
  [ -f "$NM/$p/package.json" ] || { echo "vendor_viewer_deps: $NM/$p missing; run npm ci first" >&2; exit 1; }
done
rm -rf "$DST/fzstd" "$DST/zstddec" "$DST/flatbuffers"
mkdir -p "$DST/zstddec" "$DST/flatbuffers"
cp "$NM/zstddec/LICENSE" "$DST/zstddec/LICENSE"
# flatbuffers' mjs/ build: the runtime modules (relative imports among themselves, all ".js" ESM).
# flexbuffers is not needed; copy only the files flatbuffers.js reaches.
for f in flatbuffers.js constants.js utils.js builder.js byte-buffer.js encoding.js; do
  cp "$NM/flatbuffers/mjs/$f" "$DST/flatbuffers/$f"
done
cp "$NM/flatbuffers/LICENSE" "$DST/flatbuffers/LICENSE"
# .js files are ES modules only if the nearest package.json says so (Node); browsers go by the
# import statement. This marker is ours, not a copy.
printf '{\n  "type": "module"\n}\n' > "$DST/flatbuffers/package.json"
( cd "$DST" && { echo "zstddec $(node -p "require('../../$NM/zstddec/package.json').version" 2>/dev/null || echo '?')";
                 echo "flatbuffers $(node -p "require('../../$NM/flatbuffers/package.json').version" 2>/dev/null || echo '?')"; } > VERSIONS )
echo "vendor_viewer_deps: copied into $DST: $(cat "$DST/VERSIONS" | tr '\n' ' ')"
