#!/usr/bin/env bash
# Installs everything into .venv (idempotent). Usage: bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
# world = torch==2.13.0, which pip takes from a local CPU wheel (never a bare torch: that pulls CUDA)
.venv/bin/python -m pip install -q -e '.[dev,world]' 2>&1 | grep -v "^WARNING: Location" || true
# Third-party interop tools the tests run (tests/test_interop.py); optional at run time.
if command -v npm >/dev/null 2>&1; then
  npm ci --no-audit --no-fund --loglevel=error >/dev/null 2>&1 || echo "setup: npm ci failed; splat-transform interop tests will say why they skip"
fi
.venv/bin/python -c "import codec, gsd.fb" && echo "setup: ok (.venv ready; try: .venv/bin/gsd --help)"
