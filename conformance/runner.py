"""Runs an implementation under test over the vectors through the testee protocol (README.md).

Each vector is one process: ``IMPL decode FILE [--limit NAME=VALUE ...]``. The
testee's stdout must be exactly the lines the manifest implies; a nonzero exit
is a crash, running past the timeout a hang, and both count as failures.

``--limit`` only ever lowers a limit (SPEC.md 9.1: a decoder MAY lower a limit and MUST NOT raise
it): the runner refuses, before starting any testee, a manifest whose vector names an unknown
limit or a value that is not an integer in [0, spec default] (``UsageError``, exit status 2).
"""
from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_VECTORS = os.path.join(HERE, "vectors")
# SPEC.md 9.1: the limits a vector may lower, with the spec defaults (also the maxima)
SPEC_DEFAULT_LIMITS = {
    "max_header_bytes": 65536,
    "max_frame_bytes": 2**30,
    "max_gaussians": 2**24,
    "max_ids_per_frame": 2**24,
    "max_ranges_per_frame": 2**20,
    "max_blocks": 4096,
    "max_sections": 16384,
    "max_frame_raw_bytes": 2**32,
}
_LINE = re.compile(r"^(header (ok|error [A-Z_]+)|frame (\d+) (ok \d+:[0-9a-f]{8}:[0-9a-f]{8}|error [A-Z_]+))$")


@dataclass
class Result:
    id: str
    category: str
    status: str       # PASS / FAIL
    expected: str
    got: str
    detail: str
    seconds: float


class UsageError(ValueError):
    """The runner was asked for something the testee protocol does not allow (a limit above the spec's)."""


def limit_args(v: dict) -> list[str]:
    """The ``--limit NAME=VALUE`` arguments of a vector; UsageError unless each lowers a limit of SPEC.md 9.1."""
    args = []
    for name, value in v.get("limits", {}).items():
        if name not in SPEC_DEFAULT_LIMITS:
            raise UsageError(f"vector {v.get('id')!r}: unknown limit {name!r}")
        if type(value) is not int or not 0 <= value <= SPEC_DEFAULT_LIMITS[name]:
            raise UsageError(f"vector {v.get('id')!r}: limit {name}={value!r} is not an integer in "
                             f"[0, {SPEC_DEFAULT_LIMITS[name]}] (a vector may lower a limit, never raise it)")
        args += ["--limit", f"{name}={value}"]
    return args


def check_manifest(m: dict) -> None:
    """UsageError when the manifest's default limits are not the spec's or a vector raises a limit."""
    if "default_limits" in m and m["default_limits"] != SPEC_DEFAULT_LIMITS:
        raise UsageError(f"manifest default_limits {m['default_limits']} differ from SPEC.md 9.1")
    for v in m["vectors"]:
        limit_args(v)


def load_manifest(vectors: str) -> dict:
    with open(os.path.join(vectors, "manifest.json"), encoding="utf-8") as f:
        return json.load(f)


def expected_lines(v: dict) -> list[str]:
    exp = v["expected"]
    if exp["result"] == "invalid" and exp["frame"] == -1:
        return [f"header error {exp['error']}"]
    lines = ["header ok"] + [f"frame {k} ok {d}" for k, d in enumerate(exp["digests"])]
    if exp["result"] == "invalid":
        lines.append(f"frame {exp['frame']} error {exp['error']}")
    return lines


def summarize(lines: list[str]) -> str:
    """A short form of a testee transcript for the table: 'valid (N frames)', 'frame K CODE' or 'header CODE'."""
    if not lines:
        return "no output"
    last = lines[-1].split()
    if last[0] == "header":
        return "valid (0 frames)" if last[1] == "ok" else f"header {last[2]}"
    if len(last) >= 3 and last[2] == "error":
        return f"frame {last[1]} {last[3]}"
    return f"valid ({len(lines) - 1} frames)"


def judge(v: dict, rc: int | None, out: str, err: str, timeout: float) -> tuple[str, str, str]:
    """(status, got, detail) of one testee run against the vector's expectation."""
    want = expected_lines(v)
    if rc is None:
        return "FAIL", "hang", f"no exit within {timeout:g} s"
    if rc != 0:
        tail = (err.strip().splitlines() or [""])[-1][:120]
        return "FAIL", f"crash (exit {rc})", tail
    got = [ln.strip() for ln in out.splitlines() if ln.strip()]
    for ln in got:
        if not _LINE.match(ln):
            return "FAIL", "protocol error", f"unparseable line {ln[:80]!r}"
    if got == want:
        return "PASS", summarize(got), ""
    for k, (a, b) in enumerate(zip(got, want)):
        if a != b:
            detail = f"line {k + 1}: got {a!r}, expected {b!r}"
            break
    else:
        detail = f"{len(got)} lines, expected {len(want)}" + (f" (extra {got[len(want)]!r})" if len(got) > len(want)
                                                              else f" (missing {want[len(got)]!r})")
    return "FAIL", summarize(got), detail


def run_one(cmd: list[str], v: dict, vectors: str, timeout: float) -> Result:
    args = cmd + ["decode", os.path.join(vectors, v["file"])] + limit_args(v)
    t0 = time.monotonic()
    try:
        # Own session, so a hang is ended with everything the testee started (a shell wrapper, say).
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    except OSError as e:
        return Result(v["id"], v["category"], "FAIL", summarize(expected_lines(v)), "cannot start", str(e), 0.0)
    try:
        out, err = p.communicate(timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = p.communicate()
        rc = None
    status, got, detail = judge(v, rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), timeout)
    return Result(v["id"], v["category"], status, summarize(expected_lines(v)), got, detail,
                  round(time.monotonic() - t0, 3))


def run(impl: str, vectors: str = DEFAULT_VECTORS, pattern: str | None = None, timeout: float = 10.0,
        jobs: int | None = None) -> list[Result]:
    m = load_manifest(vectors)
    check_manifest(m)  # refuses the whole vector file before any testee runs
    vs = [v for v in m["vectors"] if pattern is None or re.search(pattern, v["id"])]
    cmd = shlex.split(impl)
    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        return list(pool.map(lambda v: run_one(cmd, v, vectors, timeout), vs))


def print_table(results: list[Result]) -> None:
    w = max([len(r.id) for r in results] + [2])
    cw = max([len(r.category) for r in results] + [8])
    ew = max([len(r.expected) for r in results] + [8])
    print(f"{'id':<{w}}  {'category':<{cw}}  {'expected':<{ew}}  {'got':<24}  result")
    for r in results:
        line = f"{r.id:<{w}}  {r.category:<{cw}}  {r.expected:<{ew}}  {r.got:<24}  {r.status}"
        print(line + (f"  ({r.detail})" if r.status == "FAIL" and r.detail else ""))


def main(args) -> int:
    try:
        results = run(args.impl, args.vectors, args.filter, args.timeout, args.jobs)
    except UsageError as e:
        print(f"python -m conformance run: error: {e}", file=sys.stderr)
        return 2
    passed = sum(r.status == "PASS" for r in results)
    failed = len(results) - passed
    if args.json:
        print(json.dumps({"impl": args.impl, "passed": passed, "failed": failed,
                          "results": [asdict(r) for r in results]}, indent=1))
    else:
        print_table(results)
        print(f"{passed} passed, {failed} failed")
    return 1 if failed or not results else 0
