"""Coverage-guided fuzzing of the reference decoder with atheris (libFuzzer), using the structure-aware mutators.

    python -m conformance.fuzz_coverage --execs 200000 --seed 1 [--jobs J] [--report conformance/FUZZ.md]
    python -m conformance.fuzz_coverage --seconds 1800 --seed 1 -- -use_value_profile=1   # libFuzzer flags after --

The structure-aware fuzzer (fuzz_structured.py) steers by a behavioural signal (record kind, stage,
error code). This one steers by code coverage of the decoder itself: every module of ``codec`` and of
the generated FlatBuffers readers (``gsd``) is imported under ``atheris.instrument_imports``, so libFuzzer
sees each branch and comparison the decoder takes (its ``cov:`` and ``ft:`` counts), and an input that
takes a new one joins the corpus. Inputs are made beneath the CRC, zstd and gap-code framing by the
structure-aware mutators: ``fuzz_structured.mutate_stream`` is libFuzzer's custom mutator (its seed drives the random
choices), and one mutation in ten is libFuzzer's own byte mutator (which uses the comparisons it saw)
with the CRCs recomputed most of the time.

- Corpus: seeded with the conformance vectors (``fuzz.load_corpus``). ``--max-seed-bytes 65536`` leaves out
  the one larger vector, profile_compact_sh3_large, whose descendants take seconds each in the instrumented
  Python kernels: four times the executions a second, but fewer edges (its grown sections reach the
  streamed zstd decoding). An input is a GSD stream; one run under lowered decoder limits (a vector's
  manifest limits, the ``limits`` mutator) carries them in a prefix: ``GSDL``, a count byte, then (limit
  index u8, value u64 LE) pairs; values are clamped to the spec's maxima. Corpus files of default-limit
  inputs are therefore plain ``.gsd`` streams.
- Oracle: the structure-aware fuzzer's, ``fuzz_structured.execute`` (any exception but GsdError, a
  failed frame after which the state differs, an input past its time budget: 20 s here, as the instrumented
  Python kernels run several times slower than the compiled ones); crashers are saved by
  ``fuzz.save_crash`` (the stream and a note, the traceback appended to the note) and the run goes on.
- Depth: the same stage probes and table as the structure-aware fuzzer.
- The kernels run as Python (``GSD_JIT=0`` in the fuzzing processes): numba cannot compile the
  instrumented bytecode, and their per-element checks (the gap code's, 1.4, bit by bit among them) are
  then covered too. The compiled kernels run
  the same loops (tests/test_jit.py compares them); the structure-aware fuzzer runs them compiled on
  large inputs.
- Header decoding is not memoized here (fuzz_structured memoizes it for speed): an input's coverage
  must not depend on which inputs ran before it.

libFuzzer owns the process it runs in (it exits when done), so this command runs each job as a
``python -m conformance.fuzz_coverage --worker ...`` subprocess, reads libFuzzer's status lines from it
and its execution statistics from a JSON file it keeps (written every two seconds and at exit).
A worker that dies (a signal, libFuzzer's RSS limit, an error in the harness) is a finding too;
libFuzzer's own artifact for it goes to the crashers directory. Exit status 1 on any finding.

Without atheris (``pip install atheris``; the ``dev`` extra has it) the command says so and exits 2.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zlib
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTION = "## Coverage-guided fuzzing (atheris)"
MISSING = ("atheris is not installed: coverage-guided fuzzing needs it (pip install atheris, or "
           "pip install -e '.[dev]'); the structure-aware fuzzer runs without it: "
           "python -m conformance.fuzz --structured")
INSTRUMENTED = ("codec", "gsd")      # packages whose bytecode libFuzzer sees
LIBFUZZER_SHARE = 0.1                # mutations left to libFuzzer's own byte mutator
PREFIX = b"GSDL"
FLUSH_EVERY = 2.0


def have_atheris() -> bool:
    import importlib.util
    return importlib.util.find_spec("atheris") is not None


# ------------------------------------------------------------------------------------------ inputs
def _limit_fields():
    from codec import Limits
    from dataclasses import fields
    return [(f.name, f.default) for f in fields(Limits)]


def encode_input(data: bytes, limits) -> bytes:
    """A fuzzer input: the stream, prefixed with the limits that differ from the spec's (if any)."""
    pairs = [(i, getattr(limits, name)) for i, (name, default) in enumerate(_limit_fields())
             if getattr(limits, name) != default]
    if not pairs:
        return bytes(data)
    return PREFIX + bytes([len(pairs)]) + b"".join(struct.pack("<BQ", i, v) for i, v in pairs) + bytes(data)


def decode_input(buf: bytes):
    """(stream, Limits) of any byte string: without a well-formed prefix, the whole of it under the spec's limits."""
    from codec import Limits
    if len(buf) >= 5 and buf[:4] == PREFIX:
        n = buf[4]
        end = 5 + 9 * n
        names = _limit_fields()
        if n <= len(names) and len(buf) >= end:
            given = {}
            for k in range(n):
                i, v = struct.unpack_from("<BQ", buf, 5 + 9 * k)
                name, default = names[i % len(names)]
                given[name] = min(v, default)
            return bytes(buf[end:]), Limits(**given)
    return bytes(buf), Limits()


# ------------------------------------------------------------------------------------------ worker
class _NoMemo(dict):
    """Stands in for fuzz_structured's header memo during a coverage run: it keeps nothing."""

    def get(self, key, default=None):
        return default

    def __setitem__(self, key, value):
        pass


class Worker:
    """The libFuzzer target and custom mutator, with the structure-aware fuzzer's statistics."""

    def __init__(self, stats_path: str, vectors: str, crashers: str | None, budget: float, compare_rate: float,
                 max_seed_bytes: int = 0):
        from . import fuzz, fuzz_structured as fs
        self.fuzz, self.fs = fuzz, fs
        self.stats_path, self.crashers, self.budget = stats_path, crashers, budget
        self.compare_per_mille = int(round(1000 * compare_rate))
        self.seeds = [e for e in fs.seed_corpus(vectors) if not max_seed_bytes or len(e.data) <= max_seed_bytes]
        self.vid = {hash(encode_input(e.data, e.limits)): e.vid for e in self.seeds}
        self.entries: dict = {}
        self.stats = fs.Stats()
        self.behaviours: set = set()
        self.crash_notes: list = []
        self.mutator_errors: Counter = Counter()
        self.last: tuple | None = None          # (input, mutator name, seed vector) of the last mutation
        self.t0 = self.last_flush = time.monotonic()

    # -------------------------------------------------------------------------------- mutator
    def _entry(self, buf: bytes):
        h = hash(buf)
        e = self.entries.get(h)
        if e is None or e.data is None:
            data, limits = decode_input(buf)
            e = self.fs.Entry(self.vid.get(h, "corpus"), data, limits)
            if len(data) <= 1 << 16:
                if len(self.entries) >= 1024:
                    self.entries.clear()
                self.entries[h] = e
        return e

    def mutate(self, buf: bytes, max_size: int, seed: int) -> bytes:
        import atheris
        from .craft import fix_crcs
        rng = random.Random(seed)
        try:
            entry = self._entry(bytes(buf))
            if rng.random() < LIBFUZZER_SHARE and entry.data:
                room = max(max_size - (len(buf) - len(entry.data)), 1)
                data, limits, name = atheris.Mutate(entry.data, room), entry.limits, "libfuzzer"
                if rng.random() < 0.7:
                    data = fix_crcs(data)
            else:
                data, limits, name = self.fs.mutate_stream(rng, entry, self.seeds)
            out = encode_input(data, limits)[:max_size]
        except Exception as e:  # noqa: BLE001 -- a mutator's own error (not the decoder's): keep the input
            self.mutator_errors[type(e).__name__] += 1
            return bytes(buf)
        if len(self.vid) > 200_000:
            self.vid = {hash(encode_input(e.data, e.limits)): e.vid for e in self.seeds}
        self.vid[hash(out)] = entry.vid
        self.last = (out, name, entry.vid)
        return out

    # -------------------------------------------------------------------------------- target
    def test_one_input(self, buf: bytes) -> None:
        fuzz, fs = self.fuzz, self.fs
        last = self.last
        if last is not None and last[0] == buf:
            name, vid = last[1], last[2]
        else:
            name, vid = "seed", self.vid.get(hash(buf), "corpus")
        self.last = None
        data, limits = decode_input(buf)
        full = zlib.crc32(buf) % 1000 < self.compare_per_mille
        try:      # a hang: the budget spent in CPU time, not only on the wall clock (fs.execute)
            o = fs.execute(data, limits, self.budget, full_compare=full)
        except fuzz.Crash as c:
            self._crash(c, data, limits, vid, name)
        else:
            self.stats.add(o, name)
            self.behaviours |= o.features
        if time.monotonic() - self.last_flush >= FLUSH_EVERY:
            self.flush()

    def _crash(self, c, data: bytes, limits, vid: str, name: str) -> None:
        self.stats.execs += 1
        tb = "".join(traceback.format_exception(c.__cause__)) if c.__cause__ is not None else ""
        note = None
        if self.crashers:
            self.fuzz.save_crash(self.crashers, c, data, vid, limits)
            note = os.path.join(self.crashers, f"{c.kind}-{hashlib.sha1(data).hexdigest()[:16]}.txt")
            if tb:
                with open(note, "a", encoding="utf-8") as f:
                    f.write(f"mutator: {name}\n\n{tb}")
        self.stats.crashes.append((str(c), b"", vid))
        if len(self.crash_notes) < 50:
            self.crash_notes.append({"message": str(c), "vid": vid, "mutator": name, "note": note,
                                     "size": len(data), "traceback": tb[-4000:]})
        print(f"CRASH {c} (from {vid}, {name})" + (f" -> {note}" if note else ""), file=sys.stderr, flush=True)
        if tb:
            print(tb, file=sys.stderr, flush=True)

    def flush(self) -> None:
        st = self.stats
        out = {"execs": st.execs, "seconds": time.monotonic() - self.t0,
               "reached": {str(k): v for k, v in st.reached.items()},
               "failed": [[s, c, v] for (s, c), v in st.failed.items()],
               "outcomes": dict(st.outcomes), "mutators": dict(st.mutators),
               "crashes": self.crash_notes, "crash_count": len(st.crashes),
               "behaviours": sorted(repr(f) for f in self.behaviours),
               "mutator_errors": dict(self.mutator_errors)}
        tmp = self.stats_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(out, f)
        os.replace(tmp, self.stats_path)
        self.last_flush = time.monotonic()


def _at_c_exit(fn) -> object:
    """Run ``fn`` when the process exits through C's exit() (as libFuzzer ends a run: Python's atexit
    does not run then). Returns the callback object, which must be kept alive."""
    import ctypes
    cb = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(lambda _: fn())
    try:
        ctypes.CDLL(None).__cxa_atexit(cb, None, None)
    except (AttributeError, OSError):   # not glibc: the periodic flush alone
        return None
    return cb


def worker_main(args, libfuzzer_args: list[str]) -> int:
    """One libFuzzer process: instrument the codec, then fuzz (never returns: libFuzzer exits)."""
    import atheris
    os.environ["GSD_JIT"] = "0"
    if any(m == p or m.startswith(p + ".") for m in sys.modules for p in INSTRUMENTED):
        raise SystemExit("fuzz_coverage worker: the codec was imported before instrumentation")
    with atheris.instrument_imports(include=list(INSTRUMENTED)):
        import importlib
        import pkgutil

        import codec
        import gsd.fb
        for pkg in (codec, gsd.fb):
            for m in pkgutil.iter_modules(pkg.__path__, pkg.__name__ + "."):
                if m.name.split(".")[1] in ("cli", "warmup"):
                    continue
                try:
                    importlib.import_module(m.name)
                except Exception:  # noqa: BLE001 -- a module of an optional dependency: not the decoder's
                    pass
    for name in args.preload:
        importlib.import_module(name)
    w = Worker(args.worker, args.vectors, args.crashers, args.budget, args.compare_rate, args.max_seed_bytes)
    w.fs._HEADERS = _NoMemo()
    keep = _at_c_exit(w.flush)
    probes = w.fs.depth_probes()
    probes.__enter__()                   # stays installed until libFuzzer exits the process
    w.flush()
    atheris.Setup([sys.argv[0]] + libfuzzer_args, w.test_one_input, custom_mutator=w.mutate)
    atheris.Fuzz()
    del keep
    return 0


# ------------------------------------------------------------------------------------------ parent
_STATUS = re.compile(r"^#(\d+)\s+(\w+)\s+(.*)$")
_FIELD = re.compile(r"(cov|ft|corp|exec/s|rss): (\d+)")


class Job:
    """One worker process and what its output told."""

    def __init__(self, k: int, proc: subprocess.Popen, stats_path: str, log_path: str):
        self.k, self.proc, self.stats_path, self.log_path = k, proc, stats_path, log_path
        self.inited: dict | None = None
        self.status: dict = {}
        self.done: dict | None = None
        self.final: dict = {}
        self.artifacts: list[str] = []
        self.tail: list[str] = []


def _parse_status(line: str) -> tuple[str, dict] | None:
    m = _STATUS.match(line)
    if not m:
        return None
    vals = {k: int(v) for k, v in _FIELD.findall(m.group(3))}
    vals["runs"] = int(m.group(1))
    return m.group(2), vals


def _pump(job: Job, log, report_every: float) -> None:
    last = 0.0
    with open(job.log_path, "w", encoding="utf-8") as lf:
        for raw in job.proc.stdout:
            line = raw.rstrip("\n")
            lf.write(raw)
            job.tail = (job.tail + [line])[-40:]
            st = _parse_status(line)
            if st is not None:
                event, vals = st
                if event == "INITED":
                    job.inited = vals
                if event == "DONE":
                    job.done = vals
                if "ft" in vals:
                    job.status = vals
                now = time.monotonic()
                if log and (event in ("INITED", "DONE", "pulse") or now - last >= report_every):
                    log(f"  [job {job.k}] {line}")
                    last = now
                continue
            m = re.match(r"^stat::(\w+):\s+(\d+)", line)
            if m:
                job.final[m.group(1)] = int(m.group(2))
                continue
            m = re.search(r"(?:Test unit|artifact) written to (\S+)", line)
            if m:
                job.artifacts.append(m.group(1))
            if log and not line.startswith(("INFO:", "WARNING: Failed to find function")):
                log(f"  [job {job.k}] {line}")


class Result:
    """Statistics of a run: the structure-aware fuzzer's Stats plus libFuzzer's coverage counts."""

    def __init__(self, stats, jobs: list[Job], behaviours: int, crash_notes: list, deaths: list,
                 mutator_errors: Counter, seeds: int):
        self.stats, self.jobs, self.behaviours = stats, jobs, behaviours
        self.crash_notes, self.deaths, self.mutator_errors, self.seeds = crash_notes, deaths, mutator_errors, seeds

    def _cov(self, which: str, key: str) -> int:
        vals = [(getattr(j, which) or {}).get(key, 0) for j in self.jobs]
        return max(vals) if vals else 0

    @property
    def seed_cov(self) -> int:
        return self._cov("inited", "cov")

    @property
    def seed_ft(self) -> int:
        return self._cov("inited", "ft")

    @property
    def cov(self) -> int:
        return max(self._cov("done", "cov"), self._cov("status", "cov"))

    @property
    def ft(self) -> int:
        return max(self._cov("done", "ft"), self._cov("status", "ft"))

    @property
    def corpus(self) -> int:
        return max([max((j.done or {}).get("corp", 0), j.status.get("corp", 0)) for j in self.jobs] or [0])

    @property
    def findings(self) -> int:
        return len(self.stats.crashes) + len(self.deaths)

    def summary(self) -> str:
        per_job = "" if len(self.jobs) < 2 else " (the largest of the jobs)"
        return (f"{self.stats.summary()}; coverage cov {self.seed_cov} -> {self.cov}, ft {self.seed_ft} -> {self.ft}"
                f"{per_job} (seed corpus of {self.seeds} vectors -> end), corpus {self.corpus}; "
                f"{self.behaviours} behaviours; {len(self.deaths)} worker deaths")


def _stats_from(parts: list[dict]):
    from . import fuzz_structured as fs
    total = fs.Stats()
    behaviours: set = set()
    notes: list = []
    errors: Counter = Counter()
    for p in parts:
        st = fs.Stats()
        st.execs = p["execs"]
        st.seconds = p["seconds"]
        st.reached = Counter({int(k): v for k, v in p["reached"].items()})
        st.failed = Counter({(s, c): v for s, c, v in p["failed"]})
        st.outcomes = Counter(p["outcomes"])
        st.mutators = Counter(p["mutators"])
        st.crashes = [(n["message"], b"", n["vid"]) for n in p["crashes"]]
        st.crashes += [("(not kept)", b"", "")] * (p.get("crash_count", 0) - len(st.crashes))
        total.merge(st)
        behaviours |= set(p["behaviours"])
        notes += p["crashes"]
        errors.update(p.get("mutator_errors", {}))
    return total, behaviours, notes, errors


def run(execs: int | None, seconds: float | None, seed: int, jobs: int = 1, vectors: str | None = None,
        crashers: str | None = "fuzz-crashers", budget: float = 20.0, compare_rate: float = 0.05,
        max_seed_bytes: int = 0, workdir: str | None = None, max_len: int = 1 << 18, rss_limit_mb: int = 2048,
        preload: tuple = (), libfuzzer_args: tuple = (), log=print, report_every: float = 30.0) -> Result:
    """Run ``jobs`` libFuzzer workers (``execs`` executions in all, or for ``seconds``) and gather their results."""
    from . import fuzz
    vectors = vectors or fuzz.VECTORS
    own_dir = workdir is None
    work = tempfile.mkdtemp(prefix="gsd-fuzz-coverage-") if own_dir else workdir
    corpus_dir, seed_dir = os.path.join(work, "corpus"), os.path.join(work, "seeds")
    os.makedirs(corpus_dir, exist_ok=True)
    os.makedirs(seed_dir, exist_ok=True)
    seeds = fuzz.load_corpus(vectors)
    left = [(vid, len(data)) for vid, data, _ in seeds if max_seed_bytes and len(data) > max_seed_bytes]
    if left and log:
        log(f"seed vectors over {max_seed_bytes} bytes left out: " + ", ".join(f"{v} ({n} bytes)" for v, n in left))
    seeds = [s for s in seeds if not max_seed_bytes or len(s[1]) <= max_seed_bytes]
    for vid, data, limits in seeds:
        with open(os.path.join(seed_dir, vid), "wb") as f:
            f.write(encode_input(data, limits))
    max_len = max(max_len, max(len(encode_input(d, lim)) for _, d, lim in seeds) + 1024)
    made_crashers = False
    if crashers:
        crashers = os.path.abspath(crashers)
        made_crashers = not os.path.isdir(crashers)
        os.makedirs(crashers, exist_ok=True)
    per = None if execs is None else [execs // jobs + (1 if j < execs % jobs else 0) for j in range(jobs)]
    env = dict(os.environ, GSD_JIT="0", PYTHONPATH=os.pathsep.join(
        [ROOT] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
    running: list[Job] = []
    t0 = time.monotonic()
    try:
        for j in range(jobs):
            lf = ["-timeout=0", f"-seed={(seed * 1000 + j) % (1 << 31) or 1}", f"-max_len={max_len}",
                  "-len_control=0", f"-rss_limit_mb={rss_limit_mb}", "-print_final_stats=1"]
            if per is not None:
                lf.append(f"-runs={per[j]}")
            if seconds is not None:
                lf.append(f"-max_total_time={max(1, math.ceil(seconds))}")
            if jobs > 1:
                lf.append("-reload=1")
            if crashers:
                lf.append(f"-artifact_prefix={crashers}/libfuzzer-")
            lf += list(libfuzzer_args) + [corpus_dir, seed_dir]
            stats_path = os.path.join(work, f"job-{j}.json")
            cmd = [sys.executable, "-m", "conformance.fuzz_coverage", "--worker", stats_path, "--vectors", vectors,
                   "--budget", str(budget), "--compare-rate", str(compare_rate),
                   "--max-seed-bytes", str(max_seed_bytes or 0)]
            cmd += ["--crashers", crashers] if crashers else []
            for p in preload:
                cmd += ["--preload", p]
            proc = subprocess.Popen(cmd + ["--"] + lf, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, errors="replace")
            job = Job(j, proc, stats_path, os.path.join(work, f"job-{j}.log"))
            job.thread = threading.Thread(target=_pump, args=(job, log, report_every), daemon=True)
            job.thread.start()
            running.append(job)
        deadline = None if seconds is None else t0 + seconds + 120 + 2 * budget
        for job in running:
            while True:
                try:
                    job.proc.wait(timeout=1.0)
                    break
                except subprocess.TimeoutExpired:
                    if deadline is not None and time.monotonic() > deadline:
                        job.proc.kill()
                        job.killed = True
            job.thread.join(timeout=10)
        parts, deaths = [], []
        for job in running:
            rc = job.proc.returncode
            if os.path.exists(job.stats_path):
                with open(job.stats_path, encoding="utf-8") as f:
                    parts.append(json.load(f))
            if rc != 0 or getattr(job, "killed", False):
                why = "killed past its deadline (a hang outside Python code?)" if getattr(job, "killed", False) \
                    else f"exit status {rc}"
                deaths.append({"job": job.k, "why": why, "artifacts": job.artifacts, "tail": job.tail[-25:]})
        stats, behaviours, notes, errors = _stats_from(parts)
        stats.seconds = time.monotonic() - t0
        res = Result(stats, running, len(behaviours), notes, deaths, errors, len(seeds))
        stats.corpus = res.corpus
        return res
    finally:
        for job in running:
            if job.proc.poll() is None:
                job.proc.kill()
        if own_dir:
            shutil.rmtree(work, ignore_errors=True)
        if made_crashers and crashers and not os.listdir(crashers):
            os.rmdir(crashers)


# ------------------------------------------------------------------------------------------ report
def report_markdown(res: Result, command: str) -> str:
    st = res.stats
    outcome = ", ".join(f"{k} {v}" for k, v in st.outcomes.most_common())
    muts = ", ".join(f"{k} {v}" for k, v in st.mutators.most_common())
    return f"""{SECTION}

`{command}`

{res.summary()}

{st.table()}

Outcomes: {outcome}

Mutators: {muts}
"""


def write_section(path: str, text: str) -> None:
    """Put ``text`` (a section starting with SECTION) in place of that section of ``path``, the rest of the
    file untouched; a new section goes before "## Findings" (or at the end)."""
    old = open(path, encoding="utf-8").read() if os.path.exists(path) else "# Fuzzing results\n"
    text = text.rstrip("\n") + "\n"
    lines = old.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if ln.rstrip("\n") == SECTION), None)
    if start is not None:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        new = lines[:start] + [text + ("\n" if end < len(lines) else "")] + lines[end:]
    else:
        at = next((i for i, ln in enumerate(lines) if ln.startswith("## Findings")), None)
        if at is None:
            new = lines + ([] if old.endswith("\n\n") else ["\n"]) + [text]
        else:
            new = lines[:at] + [text + "\n"] + lines[at:]
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(new))


# ------------------------------------------------------------------------------------------ main
def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    own, lf = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    ap = argparse.ArgumentParser(prog="python -m conformance.fuzz_coverage", description=__doc__.split("\n")[0],
                                 epilog="Arguments after -- go to libFuzzer (e.g. -- -use_value_profile=1).")
    ap.add_argument("--coverage", action="store_true", help="(accepted for python -m conformance.fuzz)")
    ap.add_argument("--execs", type=int, default=None, help="executions in total (default: until --seconds)")
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--budget", type=float, default=20.0,
                    help="seconds per input before it counts as a hang (instrumented Python kernels: slower than "
                         "the structure-aware fuzzer's compiled ones)")
    ap.add_argument("--max-seed-bytes", type=int, default=0,
                    help="seed vectors larger than this are left out (default 0: none); 65536 leaves out the one "
                         "vector whose descendants take seconds each in the instrumented Python kernels")
    ap.add_argument("--compare-rate", type=float, default=0.05,
                    help="share of inputs whose state is compared in full around a failed frame")
    ap.add_argument("--crashers", default="fuzz-crashers")
    ap.add_argument("--vectors", default=None)
    ap.add_argument("--workdir", default=None, help="keep the corpus and the workers' logs here (default: a "
                                                    "temporary folder, removed afterwards)")
    ap.add_argument("--rss-limit-mb", type=int, default=2048)
    ap.add_argument("--preload", action="append", default=[],
                    help="a module each worker imports after instrumenting the codec (e.g. to plant a defect)")
    ap.add_argument("--report", default=None, help="markdown file to write the section into (conformance/FUZZ.md)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(own)
    if not have_atheris():
        print(MISSING, file=sys.stderr)
        return 2
    if a.worker:   # nothing of the codec may be imported before the worker instruments it
        a.vectors = a.vectors or os.path.join(ROOT, "conformance", "vectors")
        return worker_main(a, lf)
    if a.execs is None and a.seconds is None:
        a.execs = 100_000
    seed = a.seed if a.seed is not None else int(time.time())
    print(f"coverage-guided fuzzing (atheris): {a.execs or 'unbounded'} executions, {a.seconds or 'no'} time "
          f"limit, seed {seed}, {a.jobs} job(s), crashers -> {a.crashers}", flush=True)
    res = run(a.execs, a.seconds, seed, a.jobs, a.vectors, a.crashers, a.budget, a.compare_rate, a.max_seed_bytes,
              a.workdir,
              rss_limit_mb=a.rss_limit_mb, preload=tuple(a.preload), libfuzzer_args=tuple(lf),
              log=lambda m: print(m, flush=True))
    print(res.summary())
    print(res.stats.table())
    print("outcomes: " + ", ".join(f"{k} {v}" for k, v in res.stats.outcomes.most_common()))
    print("mutators: " + ", ".join(f"{k} {v}" for k, v in res.stats.mutators.most_common()))
    if res.mutator_errors:
        print("mutator errors (inputs left unmutated): " + ", ".join(f"{k} {v}" for k, v in res.mutator_errors.items()))
    for n in res.crash_notes[:20]:
        print(f"CRASH {n['message']} (from {n['vid']}, {n['mutator']})" + (f" -> {n['note']}" if n["note"] else ""))
    for d in res.deaths:
        print(f"WORKER {d['job']} DIED: {d['why']}; artifacts: {', '.join(d['artifacts']) or 'none'}")
        print("\n".join("    " + ln for ln in d["tail"]))
    if a.report:
        cmd = "python -m conformance.fuzz_coverage " + " ".join(
            x for x in (f"--execs {a.execs}" if a.execs else "", f"--seconds {a.seconds:g}" if a.seconds else "",
                        f"--seed {seed}", f"--jobs {a.jobs}", " ".join(["--"] + lf) if lf else "") if x)
        write_section(a.report, report_markdown(res, cmd))
    return 1 if res.findings else 0


if __name__ == "__main__":
    sys.exit(main())
