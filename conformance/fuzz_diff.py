"""Differential fuzzing: the Python reference decoder and the JS decoder read the same mutated streams.

    python -m conformance.fuzz_diff --streams 100000 --seed 1 [--save DIR] [--report conformance/FUZZ.md]

Streams come from the structure-aware mutators of fuzz_structured.py (coverage-guided the same way,
seeded with the conformance vectors, the unmutated vectors first). Each stream is decoded in this
process by the reference codec (the fuzzer's oracle included: no exception but GsdError, no state
change after a failed frame) and by the JS decoder of reference_viewer/decoder in one long-lived node
process (conformance/fuzz_batch.mjs, streams piped in batches while Python prepares the next batch).
The two transcripts of the conformance protocol (conformance/README.md) must be equal line for line:
the same digest after every frame, the same error code at the same frame. Only corrupt zstd data has
leeway (SPEC.md 4.4 leaves its detection to the zstd library); the gap code (compression 2, 1.4) has
none, so the mutators' broken gap codes (an order byte out of range, a code bit flipped, bytes cut or
added, padding bits set) must fail alike in both decoders. Every disagreement and every crash is saved
(stream, limits and both transcripts) to the save directory.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import random
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, fields as dc_fields

from codec import Limits

from . import fuzz, fuzz_structured as fs

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BATCH = os.path.join(HERE, "fuzz_batch.mjs")
DEFAULTS = Limits()
# Codes a frame may report when it fails several checks of F11..F14 (SPEC.md 4.9: a decoder MAY report
# the error of any one of them).
LATE_CODES = {"MALFORMED", "UNSUPPORTED_FEATURE", "DECOMPRESSION_FAILED", "DUPLICATE_ID", "BAD_VALUE", "SEQUENCE_GAP",
              "ID_MISSING", "ID_EXISTS", "LIMIT_EXCEEDED", "DIGEST_MISMATCH"}


def f10_fails(record: bytes, limits: Limits) -> bool:
    """Whether a frame (that verifies) fails F10: its declared raw bytes, id counts or range counts."""
    f = fs.parse_frame(record).fields
    ids = sum(b.count for b in f.blocks if b.kind in (1, 2, 3, 6, 7, 8, 9))
    rng = sum(b.count for b in f.blocks if b.kind in (4, 5))
    return (sum(s.raw_size for s in f.sections) > limits.max_frame_raw_bytes or ids > limits.max_ids_per_frame
            or rng > limits.max_ranges_per_frame)


def zstd_frames(record: bytes) -> list[bytes]:
    """The stored bytes of a frame's zstd sections (compression 1)."""
    p = fs.parse_frame(record)
    return [d for sec, d in zip(p.fields.sections, p.stored) if sec.compression == 1]


def first_difference(py: list[str], js: list[str]) -> int | None:
    """The frame index of the first line where two transcripts differ (None: the header line)."""
    for a, b in zip(py + [""] * len(js), js + [""] * len(py)):
        if a != b:
            words = (a or b).split()
            return int(words[1]) if words and words[0] == "frame" else None
    return None


def classify(py: list[str], js: list[str], py_stage: int | None, data: bytes, limits: Limits,
             pristine: set | None = None) -> str:
    """'same'; 'zstd': the transcripts part at a frame holding a zstd frame that no compressor wrote
    (``pristine``: hashes of the zstd frames of the seed vectors and of the mutators' compressor) --
    corrupt zstd data, which SPEC.md 4.4 lets each zstd library detect or decode as it does (a gap-coded
    section, whoever wrote it, earns no such leeway);
    'permitted': both stop at the same frame with different codes, the frame passed F1..F10 (the
    reference decoder got to its blocks, F10 rechecked here) and both codes are of F11..F14, so
    SPEC.md 4.9 lets a frame with several defects report either; else 'disagree'."""
    if py == js:
        return "same"
    if pristine is not None:
        k = first_difference(py, js)
        frames = fs.split_stream(data)[1]
        if k is not None and k < len(frames):
            try:
                if any(hash(z) not in pristine for z in zstd_frames(frames[k])):
                    return "zstd"
            except Exception:  # noqa: BLE001 -- metadata the flatbuffers reader cannot follow
                pass
    if len(py) != len(js) or py[:-1] != js[:-1] or py_stage is None or py_stage < fs.SECTIONS:
        return "disagree"
    a, b = py[-1].split(), js[-1].split()
    if len(a) != 4 or len(b) != 4 or a[:3] != b[:3] or a[2] != "error" or a[0] != "frame":
        return "disagree"
    if a[3] not in LATE_CODES or b[3] not in LATE_CODES:
        return "disagree"
    frames = fs.split_stream(data)[1]
    k = int(a[1])
    if k >= len(frames):
        return "disagree"
    try:
        if f10_fails(frames[k], limits):
            return "disagree"
    except Exception:  # noqa: BLE001 -- metadata the flatbuffers reader cannot follow
        return "disagree"
    return "permitted"


def lowered(limits: Limits) -> dict:
    return {f.name: getattr(limits, f.name) for f in dc_fields(Limits)
            if getattr(limits, f.name) != getattr(DEFAULTS, f.name)}


class NodeDecoder:
    """One node process running fuzz_batch.mjs: streams in, transcripts out, in order."""

    def __init__(self, node: str = "node", timeout: float = 120.0):
        self.timeout = timeout
        self.proc = subprocess.Popen([node, BATCH], stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT)
        self.results: queue.Queue = queue.Queue()
        self.writes: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._write, daemon=True).start()

    def _read(self) -> None:
        cur: list[str] = []
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if line == "end":
                self.results.put(cur)
                cur = []
            elif line:
                cur.append(line)
        self.results.put(None)  # the process ended

    def _write(self) -> None:
        while True:
            item = self.writes.get()
            if item is None:
                break
            try:
                self.proc.stdin.write(item)
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError):
                break
        try:
            self.proc.stdin.close()
        except OSError:
            pass

    def send(self, data: bytes, limits: Limits) -> None:
        req = json.dumps({"limits": lowered(limits)}).encode()
        self.writes.put(struct.pack("<I", len(req)) + req + struct.pack("<I", len(data)) + data)

    def get(self) -> list[str]:
        try:
            out = self.results.get(timeout=self.timeout)
        except queue.Empty:
            raise TimeoutError(f"the JS decoder gave no transcript within {self.timeout:g} s") from None
        if out is None:
            raise RuntimeError(f"the JS decoder's process ended (status {self.proc.wait()})")
        return out

    def close(self) -> None:
        self.writes.put(None)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class DiffStats:
    streams: int = 0
    disagreements: list = field(default_factory=list)    # (kind, py lines, js lines, data, limits, vid)
    permitted: Counter = field(default_factory=Counter)   # (python code, js code) of frames with several defects
    zstd_dependent: Counter = field(default_factory=Counter)  # (python line, js line) at corrupt zstd data
    crashes: list = field(default_factory=list)          # (who, message, data, vid)
    reached: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)      # (stage, code) where the Python side stopped
    outcomes: Counter = field(default_factory=Counter)
    frames_compared: int = 0
    seconds: float = 0.0

    def table(self) -> str:
        """The depth table of fuzz_structured (Python side)."""
        s = fs.Stats(execs=sum(self.reached.values()), reached=self.reached, failed=self.failed)
        return s.table()

    def summary(self) -> str:
        n = max(self.streams, 1)
        apply = sum(v for s, v in self.reached.items() if s >= fs.APPLY)
        return (f"{self.streams} streams through both decoders in {self.seconds:.0f} s "
                f"({self.streams / max(self.seconds, 1e-9):.0f}/s), {self.frames_compared} transcript lines compared; "
                f"{len(self.disagreements)} disagreements, {sum(self.permitted.values())} permitted check-order "
                f"differences, {sum(self.zstd_dependent.values())} at corrupt zstd data, {len(self.crashes)} crashes; "
                f"reached apply {100 * apply / n:.1f}%")


def _save(save: str | None, name: str, data: bytes, note: str) -> None:
    if not save:
        return
    os.makedirs(save, exist_ok=True)
    with open(os.path.join(save, name + ".gsd"), "wb") as f:
        f.write(data)
    with open(os.path.join(save, name + ".txt"), "w", encoding="utf-8") as f:
        f.write(note)


def run(streams: int, seed: int, save: str | None = None, chunk: int = 256, vectors: str = fuzz.VECTORS,
        log=None, node: str = "node", report_every: float = 60.0) -> DiffStats:
    rng = random.Random(seed)
    seeds = fs.seed_corpus(vectors)
    weights = [1.0 / (1.0 + len(e.data) / 4096) for e in seeds]
    finds: list[fs.Entry] = []
    features: set = set()
    st = DiffStats()
    js = NodeDecoder(node)
    # zstd frames a compressor wrote: those of the seed vectors, and per stream those its mutations wrote
    seed_written = frozenset(hash(z) for e in seeds for rec in e.split()[1] for z in _zstd_or_none(rec))
    written_of: dict[int, frozenset] = {}   # id of a find's Entry -> zstd frames its mutations wrote
    t0 = last = time.monotonic()
    pending: list = []   # (py lines or None, data, limits, vid) in the order sent
    todo = list(seeds)   # the unmutated vectors first

    def compare(batch) -> None:
        for py, py_stage, data, limits, vid, pristine in batch:
            try:
                theirs = js.get()
            except TimeoutError as e:   # a hang (the streams before it came back): saved, then the run stops
                st.crashes.append(("js", f"hang: {e}", data, vid))
                _save(save, "js-hang", data, f"{e}\nlimits {lowered(limits)}\nseed vector {vid}\n")
                raise
            st.streams += 1
            crash = [x for x in theirs if x.startswith("crash")]
            theirs = [x for x in theirs if not x.startswith("crash")]
            if crash:
                st.crashes.append(("js", "; ".join(crash), data, vid))
                _save(save, f"js-crash-{len(st.crashes)}", data, f"{crash}\nlimits {lowered(limits)}\nseed vector {vid}\n")
                if log:
                    log(f"JS CRASH {crash} (from {vid})")
            if py is None:
                continue
            st.frames_compared += len(py)
            verdict = classify(py, theirs, py_stage, data, limits, pristine)
            if verdict == "zstd":
                k = first_difference(py, theirs)
                st.zstd_dependent[(_outcome_at(py, k), _outcome_at(theirs, k))] += 1
                if save and sum(st.zstd_dependent.values()) <= 20:
                    _save(save, f"zstd-{sum(st.zstd_dependent.values())}", data,
                          "\n".join(["python:"] + py + ["", "js:"] + theirs) + "\n")
            elif verdict == "permitted":
                st.permitted[(py[-1].split()[-1], theirs[-1].split()[-1])] += 1
                if save and sum(st.permitted.values()) <= 50:
                    _save(save, f"permitted-{sum(st.permitted.values())}", data,
                          f"python {py[-1]} / js {theirs[-1]}\nlimits {json.dumps(lowered(limits))}\nseed vector {vid}\n")
            elif verdict == "disagree":
                kind = _kind(py, theirs)
                st.disagreements.append((kind, py, theirs, data, limits, vid))
                note = (f"{kind}\nlimits {json.dumps(lowered(limits))}\nseed vector {vid}\n\npython:\n" + "\n".join(py)
                        + "\n\njs:\n" + "\n".join(theirs) + "\n")
                _save(save, f"disagree-{len(st.disagreements)}", data, note)
                if log:
                    log(f"DISAGREE {kind} (from {vid})")

    try:
        while st.streams + len(pending) < streams:
            batch = []
            for _ in range(min(chunk, streams - st.streams - len(pending))):
                written, parent = frozenset(), None
                if todo:
                    e = todo.pop(0)
                    data, limits, vid = e.data, e.limits, e.vid
                else:
                    parent = rng.choices(seeds, weights)[0] if not finds or rng.random() < 0.5 else \
                        finds[-1 - min(int(rng.expovariate(1 / 300)), len(finds) - 1)]
                    fs.WRITTEN_ZSTD = set(written_of.get(id(parent), ()))
                    data, limits, _ = fs.mutate_stream(rng, parent, seeds)
                    written = frozenset(fs.WRITTEN_ZSTD)
                    vid = parent.vid
                lines: list[str] = []
                try:
                    o = fs.execute(data, limits, 5.0, full_compare=rng.random() < 0.02, lines=lines)
                except fuzz.Crash as c:
                    st.crashes.append(("python", str(c), data, vid))
                    _save(save, f"py-crash-{len(st.crashes)}", data, f"{c}\nlimits {lowered(limits)}\nseed vector {vid}\n")
                    if log:
                        log(f"PYTHON CRASH {c} (from {vid})")
                    lines, o = None, None
                else:
                    st.reached[o.reached] += 1
                    st.outcomes[o.outcome] += 1
                    if o.failed is not None:
                        st.failed[(o.failed, o.outcome)] += 1
                    new = o.features - features
                    if new:
                        features |= new
                        finds.append(fs.Entry(vid, data, limits, _ids=parent._ids if parent else None))
                        written_of[id(finds[-1])] = written
                        if len(finds) > 4000:
                            for gone in finds[:1000]:
                                written_of.pop(id(gone), None)
                            del finds[:1000]
                js.send(data, limits)
                batch.append((lines, o.failed if o is not None else None, data, limits, vid, seed_written | written))
            compare(pending)     # the previous batch, decoded by node while this one was prepared
            pending = batch
            now = time.monotonic()
            if log and now - last >= report_every:
                st.seconds = now - t0
                log(f"  {st.summary()}")
                last = now
        compare(pending)
    finally:
        js.close()
        fs.WRITTEN_ZSTD = None
    st.seconds = time.monotonic() - t0
    return st


def _outcome_at(lines: list[str], k: int | None) -> str:
    """'ok', 'error CODE' or '-' (no line) for frame k of a transcript."""
    for x in lines:
        w = x.split()
        if w[0] == "frame" and int(w[1]) == k:
            return "ok" if w[2] == "ok" else f"error {w[3]}"
    return "-"


def _zstd_or_none(rec: bytes) -> list[bytes]:
    try:
        return zstd_frames(rec)
    except Exception:  # noqa: BLE001 -- metadata the flatbuffers reader cannot follow
        return []


def _kind(py: list[str], js: list[str]) -> str:
    """Where two transcripts part: the first differing line of each."""
    for a, b in zip(py, js):
        if a != b:
            return f"python '{a}' / js '{b}'"
    return f"python {len(py)} lines / js {len(js)} lines"


def report_markdown(st: DiffStats, command: str) -> str:
    kinds = Counter(k for k, *_ in st.disagreements)
    dis = "\n".join(f"- {k}: {v}" for k, v in kinds.most_common()) or "none"
    zs = ", ".join(f"python {a} / js {b}: {v}" for (a, b), v in st.zstd_dependent.most_common()) or "none"
    perm = ", ".join(f"python {a} / js {b}: {v}" for (a, b), v in st.permitted.most_common()) or "none"
    reached = " | ".join(f"{fs.STAGES[s]} {sum(v for t, v in st.reached.items() if t >= s)}" for s in range(len(fs.STAGES)))
    return f"""## Differential fuzzing (Python reference decoder vs JS decoder)

`{command}`

{st.summary()}

Streams reaching each stage (Python side): {reached}

{st.table()}

Outcomes: {", ".join(f"{k} {v}" for k, v in st.outcomes.most_common())}

Disagreements: {dis}

Differences at corrupt zstd data (a frame whose zstd bytes a mutation changed, no compressor wrote them:
SPEC.md 4.4 lets each zstd library detect such corruption or decode it as it does):
{zs}

Permitted check-order differences (same frame, both codes of F11..F14, the frame past F10: SPEC.md 4.9 lets a
frame that fails several of those checks report any of their errors): {perm}
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m conformance.fuzz_diff", description=__doc__.split("\n")[0])
    ap.add_argument("--streams", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--save", default="fuzz-diff", help="directory for disagreeing and crashing inputs")
    ap.add_argument("--chunk", type=int, default=256, help="streams per batch sent to node")
    ap.add_argument("--node", default="node")
    ap.add_argument("--vectors", default=fuzz.VECTORS)
    ap.add_argument("--report", default=None, help="markdown file to write the result into (e.g. conformance/FUZZ.md)")
    a = ap.parse_args(argv)
    seed = a.seed if a.seed is not None else int(time.time())
    print(f"differential fuzzing: {a.streams} streams, seed {seed}, findings -> {a.save}", flush=True)
    with fs.depth_probes():
        st = run(a.streams, seed, a.save, a.chunk, a.vectors, log=lambda m: print(m, flush=True), node=a.node)
    print(st.summary())
    print(st.table())
    for kind, v in Counter(k for k, *_ in st.disagreements).most_common():
        print(f"  {v} x {kind}")
    if a.report:
        fs.write_report(a.report, "## Differential fuzzing",
                        report_markdown(st, f"python -m conformance.fuzz_diff --streams {a.streams} --seed {seed}"))
    return 1 if st.disagreements or st.crashes else 0


if __name__ == "__main__":
    sys.exit(main())
