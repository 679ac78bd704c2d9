#!/usr/bin/env bash
# Installs everything into .venv (idempotent). Usage: bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# pip's output without its location warnings; pip's own exit status (a failed install stops setup)
pip_quiet() {
  local log; log=$(mktemp)
  if ! "$@" >"$log" 2>&1; then cat "$log"; rm -f "$log"; return 1; fi
  grep -v "^WARNING: Location" "$log" || true
  rm -f "$log"
}
pip_quiet .venv/bin/python -m pip install -q --upgrade pip
# world = torch==2.13.0, which pip takes from a local CPU wheel (never a bare torch: that pulls CUDA)
# PYTHONWARNINGS: setuptools' notice that an editable install finds packages through a meta path
# finder (this project maps gsd/ to codec/_generated/gsd, so it always does) says nothing to act on.
pip_quiet env PYTHONWARNINGS="ignore:Editable installation" .venv/bin/python -m pip install -q -e '.[dev,world]'
# JavaScript tools the tests run: playwright-core (drives Debian's chromium for the viewer tests),
# splat-transform (interop), and the sources of the viewer's vendored runtime (zstddec, flatbuffers).
if command -v npm >/dev/null 2>&1; then
  npm ci --no-audit --no-fund --loglevel=error >/dev/null 2>&1 || echo "setup: npm ci failed; the browser and interop tests will say why they skip"
fi
# The viewer's browser tests use Debian's chromium (Playwright cannot download browsers here).
if ! command -v chromium >/dev/null 2>&1 && [ "${GSD_NO_APT:-0}" != 1 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
  if command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing chromium (apt) for the viewer's browser tests"
    { $SUDO apt-get install -y -q chromium >/dev/null 2>&1 || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q chromium >/dev/null 2>&1; }; } \
      || echo "setup: could not install chromium; the browser tests will say why they skip"
  fi
fi
# Compile the numba loops of the codec, the world and the server once (cached next to the modules), so
# no test, server or first joiner pays for it.
.venv/bin/python -m codec.warmup
.venv/bin/python -m reference_generator.warmup
.venv/bin/python -c "import codec, gsd.fb" && echo "setup: ok (.venv ready; try: .venv/bin/gsd --help)"
