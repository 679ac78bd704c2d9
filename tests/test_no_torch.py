"""The client side of reference_generator (actions, client, gsd-watch) runs where torch is absent.

Each check runs in a subprocess whose ``sitecustomize`` makes ``import torch`` raise ImportError,
so an import of torch anywhere on the client path fails the test. The server those clients talk
to runs in a separate process with torch, on 127.0.0.1. The last test installs the package with
no extras into a fresh venv (from the local wheel index, offline) and plays a session from it.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKER = '''\
import sys


class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")


sys.meta_path.insert(0, _NoTorch())
'''


@pytest.fixture(scope="module")
def no_torch_env(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("no_torch")
    (d / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(d), str(ROOT)])
    return env


def run_no_torch(env: dict, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def server_url():
    """A small gsd-serve (with torch) on a free loopback port, for the whole module."""
    pytest.importorskip("torch")
    proc = subprocess.Popen(
        [sys.executable, "-m", "reference_generator.server", "--host", "127.0.0.1", "--port", "0",
         "--target-live", "3000", "--tick-hz", "0", "--admission", "off", "--log-level", "warning"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        m = re.search(r"ws://127\.0\.0\.1:\d+/ws", line)
        assert m, f"gsd-serve did not print its address: {line!r}"
        yield m.group(0)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_the_blocker_blocks_torch(no_torch_env):
    r = run_no_torch(no_torch_env, sys.executable, "-c", "import torch")
    assert r.returncode != 0 and "torch is blocked" in r.stderr


def test_client_side_modules_import_without_torch(no_torch_env):
    code = (
        "import sys\n"
        "import reference_generator, reference_generator.actions, reference_generator.client\n"
        "import reference_generator.watch\n"
        "from reference_generator import Move, from_json, to_json\n"
        "from reference_generator.actions import scripted_session\n"
        "assert len(scripted_session(300)) == 300\n"
        "assert from_json(to_json(Move(0.3))) == Move(0.3)\n"
        "assert 'torch' not in sys.modules\n"
        "try:\n"
        "    reference_generator.World\n"
        "except ImportError:\n"
        "    print('world needs torch')\n")
    r = run_no_torch(no_torch_env, sys.executable, "-c", code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "world needs torch"


def test_gsd_watch_help_without_torch(no_torch_env):
    runs = [(sys.executable, "-m", "reference_generator.watch", "--help")]
    script = Path(sys.executable).with_name("gsd-watch")
    if script.exists():
        runs.append((str(script), "--help"))
    for args in runs:
        r = run_no_torch(no_torch_env, *args)
        assert r.returncode == 0, (args, r.stderr)
        assert "usage: gsd-watch" in r.stdout and "--steps" in r.stdout


def test_gsd_watch_plays_a_session_without_torch(no_torch_env, server_url):
    r = run_no_torch(no_torch_env, sys.executable, "-m", "reference_generator.watch", server_url,
                     "--steps", "20", "--json", "--timeout", "20")
    assert r.returncode == 0, r.stderr
    assert '"errors": {}' in r.stdout and '"frames": 21' in r.stdout


def readme_client_snippet() -> str:
    """The Python block under 'From Python, `reference_generator.client.Client`' in README.md."""
    text = (ROOT / "README.md").read_text()
    at = text.index("reference_generator.client.Client")
    m = re.compile(r"```python\n(.*?)```", re.S).search(text, at)
    assert m, "no python block after the client paragraph"
    return m.group(1)


def test_readme_client_snippet_compiles_as_a_script():
    src = readme_client_snippet()
    compile(src, "README.md", "exec")        # SyntaxError: top-level await or async with
    assert "asyncio.run(" in src and "ws://127.0.0.1:8765/ws" in src


def test_readme_client_snippet_runs_without_torch(no_torch_env, server_url, tmp_path):
    script = tmp_path / "snippet.py"
    script.write_text(readme_client_snippet().replace("ws://127.0.0.1:8765/ws", server_url))
    r = run_no_torch(no_torch_env, sys.executable, str(script), timeout=60)
    assert r.returncode == 0, r.stderr
    seq, digest, latency = r.stdout.split(maxsplit=2)
    assert int(seq) >= 2 and re.fullmatch(r"\d+:[0-9a-f]{8}:[0-9a-f]{8}", digest)


def test_pip_install_without_extras_gives_a_torch_free_client(tmp_path, server_url):
    """`pip install .` (no extras) into a fresh venv: no torch, yet the client, gsd-watch and gsd view work.
    Installs from the configured (local) index; about 20 s."""
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.nbi", "*.nbc", "build", "*.egg-info")
    for d in ("codec", "quality", "reference_generator", "reference_viewer"):
        shutil.copytree(ROOT / d, src / d, ignore=ignore)
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / f, src / f)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=60)
    py = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    t = time.monotonic()
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", str(src)], env=env, capture_output=True,
                       text=True, timeout=240)
    if r.returncode != 0 and re.search(r"No matching distribution|Could not find a version", r.stderr):
        pytest.skip(f"no package index reachable for a fresh venv: {r.stderr.strip().splitlines()[-1]}")
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t < 120
    elsewhere = tmp_path / "run"                     # not the repo root: only the installed package is seen
    elsewhere.mkdir()

    def venv_run(*args, **kw):
        return subprocess.run(args, env=env, cwd=elsewhere, capture_output=True, text=True, timeout=60, **kw)

    r = venv_run(str(py), "-c", "import importlib.util as u, reference_generator.client, reference_generator.actions;"
                                "print(u.find_spec('torch') is None, reference_generator.client.__file__)")
    assert r.returncode == 0, r.stderr
    no_torch, where = r.stdout.split()
    assert no_torch == "True" and where.startswith(str(venv))
    r = venv_run(str(venv / "bin" / "gsd-watch"), server_url, "--steps", "10", "--json")
    assert r.returncode == 0, r.stderr
    assert '"errors": {}' in r.stdout

    # `gsd view` (a plugin command) with the viewer's files as package data, no torch either
    r = venv_run(str(venv / "bin" / "gsd"), "demo", "--n", "300", "--frames", "2", "--out", "d.gsd", "--quiet")
    assert r.returncode == 0, r.stderr
    view = subprocess.Popen([str(venv / "bin" / "gsd"), "view", "d.gsd", "--up", "z"], env=env, cwd=elsewhere,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        m = re.search(r"http://127\.0\.0\.1:\d+/", view.stdout.readline())
        assert m, view.stderr.read() if view.poll() is not None else "no address"
        for path in ("viewer/index.html", "viewer/app/main.mjs", "viewer/decoder/wasm/kernel.wasm",
                     "viewer/vendor/flatbuffers/flatbuffers.js", "stream/d.gsd"):
            with urllib.request.urlopen(m.group(0) + path, timeout=10) as resp:
                assert resp.status == 200 and resp.read(), path
    finally:
        view.terminate()
        view.wait(10)
