"""Coverage-guided fuzzing with atheris (conformance/fuzz_coverage.py): the CI smoke run and the harness's oracle.

- A bounded run (GSD_FUZZ_COVERAGE_SECONDS, default 25) of one libFuzzer worker seeded with the conformance
  vectors: it executes inputs, libFuzzer's coverage of the instrumented decoder grows above what the seed
  corpus gave, and nothing crashes, hangs, raises an untyped exception or changes the state after a failed
  frame. The long run is ``python -m conformance.fuzz_coverage --seconds S --seed S --report conformance/FUZZ.md``.
- The harness can fail: a decoder planted with a plain KeyError on every frame that is not one of the
  vectors' own is caught as a crash (saved with its traceback, exit status 1); a decoder that spends its
  time budget in CPU time is a hang, one that only waits past it in wall time is not.
- Inputs carry lowered limits in a prefix that round-trips; the report replaces its section in place.

The fuzzing tests skip only where atheris is not installed (the ``dev`` extra installs it).
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

import codec.decoder
from codec import Limits
from conformance import fuzz
from conformance import fuzz_coverage as fc
from conformance import fuzz_structured as fs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECONDS = float(os.environ.get("GSD_FUZZ_COVERAGE_SECONDS", "25"))
needs_atheris = pytest.mark.skipif(not fc.have_atheris(), reason=fc.MISSING)


@needs_atheris
def test_coverage_smoke_run_grows_coverage_with_no_crash(tmp_path, capsys):
    res = fc.run(None, SECONDS, seed=20261205, crashers=str(tmp_path / "crashers"), log=None)
    with capsys.disabled():
        print(f"\ncoverage fuzz: {res.summary()}\n{res.stats.table()}")
    assert not res.deaths, res.deaths
    assert not res.stats.crashes, res.crash_notes[:1]
    assert res.stats.execs > res.seeds, "no execution beyond the seed corpus"
    assert res.seed_cov > 100 and res.seed_ft > 100, "libFuzzer saw no coverage: is the codec instrumented?"
    assert res.ft > res.seed_ft and res.cov >= res.seed_cov, "coverage did not grow above the seed corpus"
    assert res.stats.reached[fs.DONE] > 0 and res.stats.at_least(fs.APPLY) > 0
    assert {"seed", "content", "meta"} <= set(res.stats.mutators)
    assert not (tmp_path / "crashers").exists()


PLANTED = '''
import codec.decoder
from conformance import craft, fuzz

OWN = set()
for _, data, _ in fuzz.load_corpus():
    for kind, off, n in craft.record_spans(data):
        OWN.add(bytes(data[off:off + n]))
real = codec.decoder.decode_frame


def planted(buf, *a, **k):
    out = real(buf, *a, **k)
    if bytes(buf[:int.from_bytes(bytes(buf[4:8]), "little")]) not in OWN:
        raise KeyError("planted: a frame that is not a vector's")
    return out


codec.decoder.decode_frame = planted
'''


@needs_atheris
def test_a_planted_untyped_exception_is_caught_as_a_crash(tmp_path):
    (tmp_path / "planted_defect.py").write_text(textwrap.dedent(PLANTED))
    crashers = tmp_path / "crashers"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), ROOT]))
    p = subprocess.run([sys.executable, "-m", "conformance.fuzz_coverage", "--execs", "1200", "--seed", "3",
                        "--crashers", str(crashers), "--preload", "planted_defect"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    out = p.stdout + p.stderr
    assert p.returncode == 1, out[-3000:]
    assert "CRASH exception: KeyError" in out and "0 worker deaths" in out, out[-3000:]
    notes = sorted(crashers.glob("exception-*.txt"))
    assert notes and len(notes) == len(list(crashers.glob("exception-*.gsd")))
    note = notes[0].read_text()
    assert note.startswith("exception: KeyError") and "planted" in note and "Traceback" in note
    # the saved stream, under the limits of its note, replays to the same crash through the oracle
    stream = notes[0].with_suffix(".gsd").read_bytes()
    limits = eval(note.splitlines()[2].removeprefix("limits: "), {"Limits": Limits})
    real = codec.decoder.decode_frame
    try:
        exec(textwrap.dedent(PLANTED), {"__name__": "planted_defect"})
        with pytest.raises(fuzz.Crash, match="exception: KeyError"):
            fs.execute(stream, limits)
    finally:
        codec.decoder.decode_frame = real


def test_a_hang_is_a_decoder_spending_its_budget_in_cpu_time(monkeypatch, tmp_path):
    """The budget is wall-clock time first (fuzz_structured.execute); an input past it runs again with the
    budget in CPU time, so a worker starved of the CPU on a loaded machine reports no hang."""
    w = fc.Worker(str(tmp_path / "stats.json"), fuzz.VECTORS, str(tmp_path / "crashers"), budget=0.3,
                  compare_rate=0)
    e = next(e for e in w.seeds if e.vid == "op_delete_ids")
    buf = fc.encode_input(e.data, e.limits)
    real = codec.decoder.decode_frame

    def stalls(*a, **k):
        time.sleep(0.4)
        return real(*a, **k)
    monkeypatch.setattr(codec.decoder, "decode_frame", stalls)
    w.test_one_input(buf)
    assert (w.stats.crashes, w.stats.outcomes["ok"]) == ([], 1)

    def busy(*a, **k):
        t = time.process_time()
        while time.process_time() - t < 0.4:
            pass
        return real(*a, **k)
    monkeypatch.setattr(codec.decoder, "decode_frame", busy)
    w.test_one_input(buf)
    assert len(w.stats.crashes) == 1 and w.stats.crashes[0][0].startswith("hang"), w.stats.crashes
    assert list((tmp_path / "crashers").glob("hang-*.gsd"))


def test_input_prefix_round_trips_limits():
    data = b"GSDH" + bytes(range(40))
    assert fc.decode_input(fc.encode_input(data, Limits())) == (data, Limits())
    assert fc.encode_input(data, Limits()) == data        # spec limits: the input is the stream itself
    low = Limits(max_blocks=4, max_frame_bytes=495)
    assert fc.decode_input(fc.encode_input(data, low)) == (data, low)
    # any bytes decode: a bad prefix is a stream; values past the spec's are clamped to it
    assert fc.decode_input(b"GSDL\xff") == (b"GSDL\xff", Limits())
    raw = b"GSDL\x01" + bytes([5]) + (1 << 40).to_bytes(8, "little") + data
    assert fc.decode_input(raw) == (data, Limits())


def test_report_section_is_replaced_in_place(tmp_path):
    md = tmp_path / "FUZZ.md"
    md.write_text("# Fuzzing results\n\n## A\n\ntext a\n\n## Findings\n\nnone\n")
    fc.write_section(str(md), f"{fc.SECTION}\n\nfirst\n")
    assert md.read_text() == f"# Fuzzing results\n\n## A\n\ntext a\n\n{fc.SECTION}\n\nfirst\n\n## Findings\n\nnone\n"
    fc.write_section(str(md), f"{fc.SECTION}\n\nsecond\n")
    assert md.read_text() == f"# Fuzzing results\n\n## A\n\ntext a\n\n{fc.SECTION}\n\nsecond\n\n## Findings\n\nnone\n"


def test_without_atheris_the_command_says_so(monkeypatch, capsys):
    monkeypatch.setattr(fc, "have_atheris", lambda: False)
    assert fc.main(["--execs", "10"]) == 2
    assert "atheris is not installed" in capsys.readouterr().err
