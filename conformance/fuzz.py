"""Mutation fuzzing of header decode, frame decode and apply, seeded with the conformance vectors.

    python -m conformance.fuzz --seconds 600 [--seed N] [--crashers DIR]
    python -m conformance.fuzz --structured --execs N --seed S --jobs J [--report conformance/FUZZ.md]

The second form is the structure-aware, coverage-guided fuzzer of fuzz_structured.py (mutations
beneath the framing, a depth table of how far inputs got); python -m conformance.fuzz_diff runs
its streams through the Python and the JS decoder and compares their transcripts.

An input fails if decoding it raises anything but GsdError, if a frame that
fails to apply leaves the state different from before (digest, contents or
seq), or if one input runs past the per-input time budget (a hang). Mutations
are byte flips, interesting-value writes, insertions, deletions, splices from
other vectors, and edits of the numeric fields that framing and metadata
declare (lengths, counts, section descriptors, seqs), each optionally followed
by recomputing every CRC so the mutation reaches the checks behind the
checksum. tests/test_fuzz.py drives the same engine from hypothesis.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import struct
import sys
import time
from collections import Counter

from codec import Decoder, GsdError, Limits, validate_stream

from .craft import fix_crcs, record_spans

HERE = os.path.dirname(os.path.abspath(__file__))
VECTORS = os.path.join(HERE, "vectors")
INTERESTING = (0, 1, 2, 3, 4, 5, 7, 8, 15, 16, 31, 32, 63, 64, 127, 128, 255, 256, 0x7FFF, 0x8000, 0xFFFF, 0x10000,
               (1 << 20) + 1, (1 << 24), (1 << 24) + 1, (1 << 30) + 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFF0, 0xFFFFFFFF,
               (1 << 63), (1 << 64) - 1)
OPS = ("flip", "byte", "insert", "delete", "splice", "dup", "field", "nudge")


class Crash(Exception):
    """An input the decoder mishandled; ``kind`` is exception / state_changed / hang."""

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind = kind


class _Hang(BaseException):
    """Raised by the alarm; a BaseException so no ``except Exception`` in the decoder can swallow it."""


def load_corpus(vectors: str = VECTORS) -> list[tuple[str, bytes, Limits]]:
    with open(os.path.join(vectors, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    out = []
    for v in manifest["vectors"]:
        with open(os.path.join(vectors, v["file"]), "rb") as f:
            out.append((v["id"], f.read(), Limits(**v.get("limits", {}))))
    return out


# ------------------------------------------------------------------------------------------ fields
def numeric_fields(data: bytes) -> list[tuple[int, int]]:
    """(offset, size) of the integers that framing and metadata declare: the fields worth lying in."""
    from gsd.fb import Frame as FbFrame
    fields: list[tuple[int, int]] = []
    for kind, off, n in record_spans(data):
        if kind == "header":
            fields += [(off + 4, 1), (off + 8, 4)]
            continue
        fields += [(off + 4, 4), (off + 8, 4)]
        (meta_len,) = struct.unpack_from("<I", data, off + 8)
        meta = data[off + 12: off + 12 + meta_len]
        base = off + 12
        try:
            fb = FbFrame.Frame.GetRootAs(meta, 0)
            for slot, size in ((4, 8), (6, 8), (8, 4), (10, 8)):  # seq, base_seq, flags, required_features
                o = fb._tab.Offset(slot)
                if o:
                    fields.append((base + fb._tab.Pos + o, size))
            for slot in (14, 16):  # blocks / sections vector lengths
                o = fb._tab.Offset(slot)
                if o:
                    fields.append((base + fb._tab.Vector(o) - 4, 4))
            for j in range(min(fb.SectionsLength(), 64)):
                p = base + fb.Sections(j)._tab.Pos
                fields += [(p, 4), (p + 4, 4), (p + 8, 4), (p + 12, 1), (p + 13, 1), (p + 14, 1)]
            for j in range(min(fb.BlocksLength(), 64)):
                ob = fb.Blocks(j)
                for slot, size in ((4, 1), (6, 4), (8, 1), (10, 1)):  # kind, count, mask, level
                    o = ob._tab.Offset(slot)
                    if o:
                        fields.append((base + ob._tab.Pos + o, size))
                o = ob._tab.Offset(12)
                if o:
                    v = ob._tab.Vector(o)
                    fields.append((base + v - 4, 4))
                    for k in range(min(ob.SectionsLength(), 8)):
                        fields.append((base + v + 4 * k, 4))
        except Exception:  # a mutated meta may not parse; its prefix fields are still listed
            pass
    return [(o, s) for o, s in fields if o + s <= len(data)]


# ------------------------------------------------------------------------------------------ mutation
def mutate(data: bytes, ops: list[tuple], corpus: list, fix: bool) -> bytes:
    """Apply mutation ops (tuples of ints after the op name; positions taken modulo the length)."""
    buf = bytearray(data)
    for op in ops:
        name, args = op[0], op[1:]
        n = len(buf)
        if name == "flip" and n:
            buf[args[0] % n] ^= 1 << (args[1] % 8)
        elif name == "byte" and n:
            buf[args[0] % n] = INTERESTING[args[1] % len(INTERESTING)] & 0xFF
        elif name == "insert":
            p = args[0] % (n + 1)
            buf[p:p] = bytes(args[1])
        elif name == "delete" and n:
            p = args[0] % n
            del buf[p:p + 1 + args[1] % 64]
        elif name == "splice" and corpus:
            other = corpus[args[0] % len(corpus)][1]
            if other:
                src = args[1] % len(other)
                dst = args[2] % (n + 1)
                buf[dst:dst + args[3] % 512] = other[src:src + args[3] % 512]
        elif name == "dup" and n:
            p = args[0] % n
            buf[p:p] = buf[p:p + 1 + args[1] % 256]
        elif name in ("field", "nudge"):
            fields = numeric_fields(bytes(buf))
            if not fields:
                continue
            off, size = fields[args[0] % len(fields)]
            cur = int.from_bytes(buf[off:off + size], "little")
            val = INTERESTING[args[1] % len(INTERESTING)] if name == "field" else cur + (args[1] % 33) - 16
            buf[off:off + size] = (val % (1 << (8 * size))).to_bytes(size, "little")
    out = bytes(buf)
    return fix_crcs(out) if fix else out


def op_from_ints(kind: int, a: int, b: int, c: int) -> tuple:
    """A mutation op from four integers (what a hypothesis strategy draws cheaply)."""
    name = OPS[kind % len(OPS)]
    if name == "insert":
        return (name, a, bytes((b >> (8 * (i % 3)) ^ (c >> i)) & 0xFF for i in range(1 + c % 16)))
    if name == "splice":
        return (name, a, b, c, (a ^ b ^ c) % 512)
    return (name, a, b)


def random_ops(rng: random.Random, k: int | None = None) -> list[tuple]:
    ops = []
    for _ in range(k or rng.choice((1, 1, 1, 2, 2, 3, 4))):
        name = rng.choice(OPS)
        if name == "insert":
            ops.append((name, rng.getrandbits(20), bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 16)))))
        elif name == "splice":
            ops.append((name, rng.getrandbits(16), rng.getrandbits(20), rng.getrandbits(20), rng.getrandbits(10)))
        else:
            ops.append((name, rng.getrandbits(20), rng.getrandbits(8)))
    return ops


# ------------------------------------------------------------------------------------------ execution
def _alarm(signum, frame):
    raise _Hang()


def execute(data: bytes, limits: Limits, budget: float = 5.0, validate: bool = False) -> str:
    """Decode and apply ``data`` frame by frame; returns the outcome ('ok' or an error code), raises Crash."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, budget)
    try:
        outcome = _execute(data, limits)
        if validate:
            problems = validate_stream(data, limits)
            first = problems[0].code.name if problems else "ok"
            if first != outcome.split(" ")[0]:
                raise Crash("validate_mismatch", f"decode says {outcome}, validate_stream says {first}")
        return outcome
    except _Hang:
        raise Crash("hang", f"no result within {budget:g} s") from None
    except (Crash, GsdError):
        raise
    except BaseException as e:  # noqa: BLE001 -- any other exception is the finding
        if isinstance(e, KeyboardInterrupt):
            raise
        raise Crash("exception", f"{type(e).__name__}: {e}") from e
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _execute(data: bytes, limits: Limits) -> str:
    dec = Decoder(limits=limits)
    try:
        pos = dec.set_header(data)
    except GsdError as e:
        return e.code.name
    mv = memoryview(data)
    while pos < len(data):
        state = dec.state
        before, seq, snap = state.digest(), state.seq, state.copy()
        try:
            _, used = dec.read_frame(mv[pos:])
        except GsdError as e:
            if dec.state is not state or state.seq != seq or state.digest() != before or not state.equals(snap):
                raise Crash("state_changed", f"{e.code.name} at frame {e.frame} but the state changed") from None
            return e.code.name
        pos += used
    return "ok"


def save_crash(crashers: str | None, c: Crash, data: bytes, vid: str, limits: Limits) -> None:
    """Keep a crashing input in ``crashers`` (if given): the stream, and a note of what it did,
    which vector it came from and the limits it ran under."""
    if not crashers:
        return
    os.makedirs(crashers, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(crashers, f"{c.kind}-{name}.gsd"), "wb") as f:
        f.write(data)
    with open(os.path.join(crashers, f"{c.kind}-{name}.txt"), "w") as f:
        f.write(f"{c}\nseed vector: {vid}\nlimits: {limits}\n")


def run_for(seconds: float, seed: int, corpus: list, crashers: str | None = None, budget: float = 5.0,
            report_every: float = 30.0, log=print) -> tuple[int, list[tuple[str, bytes]], Counter]:
    """Random mutation loop for ``seconds``; returns (executions, crashes, outcome histogram)."""
    rng = random.Random(seed)
    t0 = time.monotonic()
    last = t0
    execs = 0
    crashes: list[tuple[str, bytes]] = []
    outcomes: Counter = Counter()
    while time.monotonic() - t0 < seconds:
        vid, data, limits = corpus[rng.randrange(len(corpus))]
        case = mutate(data, random_ops(rng), corpus, fix=rng.random() < 0.7)
        try:
            outcomes[execute(case, limits, budget, validate=rng.random() < 0.1)] += 1
        except Crash as c:
            crashes.append((str(c), case))
            save_crash(crashers, c, case, vid, limits)
            log(f"CRASH {c} (from {vid})")
        execs += 1
        now = time.monotonic()
        if now - last >= report_every:
            log(f"{now - t0:6.0f} s  {execs} execs  {execs / (now - t0):.0f}/s  {len(crashes)} crashes")
            last = now
    return execs, crashes, outcomes


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--structured" in argv:
        from . import fuzz_structured
        return fuzz_structured.main(argv)
    if "--coverage" in argv:
        from . import fuzz_coverage
        return fuzz_coverage.main(argv)
    ap = argparse.ArgumentParser(prog="python -m conformance.fuzz", description=__doc__.split("\n")[0],
                                 epilog="--structured: the structure-aware fuzzer (conformance/fuzz_structured.py); "
                                        "--coverage: coverage-guided by atheris (conformance/fuzz_coverage.py)")
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: time-based, printed)")
    ap.add_argument("--crashers", default="fuzz-crashers", help="directory for crashing inputs")
    ap.add_argument("--budget", type=float, default=5.0, help="seconds per input before it counts as a hang")
    ap.add_argument("--vectors", default=VECTORS)
    a = ap.parse_args(argv)
    seed = a.seed if a.seed is not None else int(time.time())
    corpus = load_corpus(a.vectors)
    print(f"fuzzing {len(corpus)} seed vectors for {a.seconds:g} s, seed {seed}, crashers -> {a.crashers}")
    t0 = time.monotonic()
    execs, crashes, outcomes = run_for(a.seconds, seed, corpus, a.crashers, a.budget)
    dt = time.monotonic() - t0
    print(f"{execs} executions in {dt:.0f} s ({execs / dt:.0f}/s), {len(crashes)} crashes")
    print("outcomes: " + ", ".join(f"{k} {v}" for k, v in outcomes.most_common()))
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
