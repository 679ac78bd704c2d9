"""Structure-aware fuzzing (conformance/fuzz_structured.py): the CI smoke run and the fuzzer's own parts.

- A bounded coverage-guided run (GSD_FUZZ_STRUCTURED_SECONDS, default 45) seeded with the conformance
  vectors: no crash, hang, untyped exception or state change after a failed frame; it prints the depth
  table and must get at least 60% of its executions past the CRC and 20% to apply. The long run is
  ``python -m conformance.fuzz --structured --execs N --seed S --jobs J --report conformance/FUZZ.md``.
- The mutators do what they claim: unfiltering inverts the section filters, content mutations keep
  the zstd frames valid and reach the id and code checks, a coherent resize decodes, rewriting the seq
  chain passes sequencing, recomputed digests let mutated frames decode to the end.
- The depth probes put known vectors at their known stage, and are removed after a run.
"""
from __future__ import annotations

import os
import random

import numpy as np
import pytest

import codec.decoder
import codec.wire
from codec import Decoder, GsdError
from codec.state import SceneState
from conformance import craft, fuzz
from conformance import fuzz_structured as fs

SECONDS = float(os.environ.get("GSD_FUZZ_STRUCTURED_SECONDS", "45"))
SEEDS = fs.seed_corpus()
BY_ID = {e.vid: e for e in SEEDS}


def test_structured_smoke_run_reaches_deep_with_no_crash(capsys):
    stats = fs.campaign(None, seed=20261205, seconds=SECONDS)
    with capsys.disabled():
        print(f"\nstructured fuzz: {stats.summary()}\n{stats.table()}\noutcomes: "
              + ", ".join(f"{k} {v}" for k, v in stats.outcomes.most_common()))
    assert not stats.crashes, stats.crashes[0][0]
    assert stats.execs > 500
    assert stats.at_least(fs.METADATA) >= 0.6 * stats.execs, "under 60% of executions got past the CRC"
    assert stats.at_least(fs.APPLY) >= 0.2 * stats.execs, "under 20% of executions reached apply"
    # the checks behind the framing all fire, apply's included
    assert {"ok", "DIGEST_MISMATCH", "BAD_VALUE", "DUPLICATE_ID", "ID_MISSING", "SEQUENCE_GAP", "MALFORMED",
            "DECOMPRESSION_FAILED", "UNSUPPORTED_FEATURE", "LIMIT_EXCEEDED", "BAD_HEADER"} <= set(stats.outcomes)
    assert stats.reached[fs.DONE] > 0 and len(stats.features) > 100


# ------------------------------------------------------------------------------------------ depth probes
@pytest.mark.parametrize("vid, stage, code", [
    ("op_delete_ids", fs.DONE, "ok"),
    ("crc_frame_payload_bit", fs.CRC, "BAD_CHECKSUM"),
    ("zstd_truncated", fs.SECTIONS, "DECOMPRESSION_FAILED"),
    ("id_repeated_in_add", fs.APPLY, "DUPLICATE_ID"),
    ("id_in_two_add_blocks", fs.APPLY, "DUPLICATE_ID"),
    ("dig_lane0_wrong", fs.DIGEST, "DIGEST_MISMATCH"),
])
def test_probes_put_vectors_at_their_stage(vid, stage, code):
    e = BY_ID[vid]
    with fs.depth_probes() as complete:
        assert complete, "a probe of fs.PROBES no longer finds its function in the reference decoder"
        o = fs.execute(e.data, e.limits)
    assert (o.outcome, o.failed if o.failed is not None else fs.DONE) == (code, stage)
    assert o.reached >= stage


def test_probes_are_removed_after_a_run():
    before = (codec.wire._read_blocks, codec.wire._read_sections, codec.decoder.decode_frame)
    with fs.depth_probes():
        assert codec.wire._read_blocks is not before[0]
    assert (codec.wire._read_blocks, codec.wire._read_sections, codec.decoder.decode_frame) == before


def test_oracle_catches_a_state_change(monkeypatch):
    real = SceneState.apply

    def leaky(self, d, *a, **k):
        if self.seq >= 1:
            self.seq += 1
            raise GsdError(5, "planted")
        return real(self, d, *a, **k)
    monkeypatch.setattr(SceneState, "apply", leaky)
    e = BY_ID["op_delete_ids"]
    with pytest.raises(fuzz.Crash, match="state_changed"):
        fs.execute(e.data, e.limits)


def test_a_hang_is_cpu_spent_by_the_decoder_not_wall_time_taken_by_other_work(monkeypatch):
    """Over the wall-clock budget, an input runs again on a CPU-time budget: a decoder that only waited
    (a loaded machine) is not a hang, one that spends the budget is; the transcript is not doubled."""
    import time
    real, calls = fs._execute, []

    def slow_once(data, limits, full_compare, lines=None):
        calls.append(1)
        if len(calls) == 1:
            time.sleep(0.6)                               # the first run loses its time to "other work"
        return real(data, limits, full_compare, lines)
    monkeypatch.setattr(fs, "_execute", slow_once)
    e = BY_ID["op_delete_ids"]
    lines: list = []
    assert fs.execute(e.data, e.limits, budget=0.3, lines=lines).outcome == "ok" and len(calls) == 2
    expected: list = []
    real(e.data, e.limits, False, expected)
    assert lines == expected

    def spin(data, limits, full_compare, lines=None):
        while True:
            pass
    monkeypatch.setattr(fs, "_execute", spin)
    t = time.monotonic()
    with pytest.raises(fuzz.Crash, match="hang"):
        fs.execute(e.data, e.limits, budget=0.3)
    assert time.monotonic() - t < 5


def test_oracle_catches_an_untyped_exception(monkeypatch):
    def boom(*a, **k):
        raise KeyError("planted")
    monkeypatch.setattr(codec.wire, "_read_sections", boom)
    e = BY_ID["op_delete_ids"]
    with pytest.raises(fuzz.Crash, match="exception: KeyError"):
        fs.execute(e.data, e.limits)


# ------------------------------------------------------------------------------------------ mutators
@pytest.mark.parametrize("filters", range(16))
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.uint64])
def test_unfilter_inverts_the_section_filters(filters, dtype):
    rng = np.random.default_rng(filters)
    a = rng.integers(0, np.iinfo(dtype).max, size=(3, 17), dtype=dtype, endpoint=True)
    raw, width = craft.Payload.filtered(a, filters)
    assert np.array_equal(fs.unfilter(raw, width, filters, 17), a)


def _frames_of(vid):
    return fs.split_stream(BY_ID[vid].data)


def test_content_mutation_keeps_zstd_valid_and_reaches_the_id_checks():
    header, frames, _ = _frames_of("op_long_mixed_chain")
    outcomes = set()
    rng = random.Random(5)
    for k in range(300):
        p = fs.parse_frame(frames[k % len(frames)])
        assert fs.mutate_content(rng, p, [])
        rec = fs.build_frame(p)
        for s, d in zip(p.fields.sections, p.stored):   # every section decompresses to its raw size
            assert fs.decompress(s, d) is not None
        dec = Decoder(verify_digest=False)
        dec.set_header(header)
        for r in frames[:k % len(frames)]:
            dec.read_frame(r)
        try:
            dec.read_frame(rec)
            outcomes.add("ok")
        except GsdError as e:
            outcomes.add(e.code.name)
    assert "BAD_CHECKSUM" not in outcomes and "DECOMPRESSION_FAILED" not in outcomes
    assert {"BAD_VALUE", "DUPLICATE_ID"} <= outcomes and outcomes & {"ID_MISSING", "ID_EXISTS"}


def test_resize_keeps_the_frame_well_formed():
    header, frames, _ = _frames_of("op_keyframe_add")
    rng = random.Random(1)
    seen = set()
    for _ in range(40):
        p = fs.parse_frame(frames[0])
        assert fs.mutate_resize(rng, p)
        dec = Decoder(verify_digest=False)
        dec.set_header(header)
        try:
            dec.read_frame(fs.build_frame(p))
            seen.add(("ok", p.fields.blocks[0].count))
        except GsdError as e:
            seen.add((e.code.name, p.fields.blocks[0].count))
    assert {c for c, _ in seen} <= {"ok", "BAD_VALUE"}, seen   # fresh ids may leave the grid; nothing else
    assert len({n for c, n in seen if c == "ok"}) > 3


def test_reseq_and_fixed_digests_decode_reordered_frames_to_the_end():
    e = BY_ID["op_long_mixed_chain"]
    header, frames, _ = e.split()
    swapped = [frames[0]] + frames[1:][::-1]
    data = header + b"".join(fs.reseq(swapped))
    assert fuzz.execute(header + b"".join(swapped), e.limits) == "SEQUENCE_GAP"
    assert fuzz.execute(data, e.limits) in ("DIGEST_MISMATCH", "ID_MISSING", "ID_EXISTS", "ok")
    fixed = fs.fix_digests(data, e.limits)
    assert fuzz.execute(fixed, e.limits) in ("ID_MISSING", "ID_EXISTS", "ok")


def test_header_mutations_rebuild_a_header_that_verifies():
    rng = random.Random(3)
    codes = set()
    for e in SEEDS[:60]:
        h = fs.mutate_header(rng, e.split()[0])
        if h is None:
            continue
        assert fs.split_stream(h)[0] == h   # framing and CRC intact
        try:
            Decoder(h)
            codes.add("ok")
        except GsdError as err:
            codes.add(err.code.name)
    assert "BAD_CHECKSUM" not in codes and {"ok", "BAD_HEADER"} <= codes


def test_parse_header_reads_back_what_craft_writes():
    h = craft.HeaderFields(2, ((-1.0, 2.0, 3.0), 0.5, 6, 10), craft.QuantFields(rest_bits=(6, 5), rest_range=(1.0, 0.5)),
                           "p", 0, 1000, "g", None, 30.0)
    back, major, minor = fs.parse_header(craft.header(h, minor=1))
    assert (major, minor) == (1, 1) and craft.header(back, minor=1) == craft.header(h, minor=1)


def test_depth_table_counts_each_execution_once_per_stage():
    st = fs.Stats()
    st.add(fs.Outcome("BAD_CHECKSUM", fs.CRC, fs.CRC), "bytes")
    st.add(fs.Outcome("ID_MISSING", fs.APPLY, fs.APPLY), "content")
    st.add(fs.Outcome("ok", fs.DONE, None), "meta")
    table = st.table()
    assert "| crc | 3 | 100.0 | 1 | BAD_CHECKSUM 1 |" in table
    assert "| metadata | 2 | 66.7 | 0 |  |" in table
    assert "| apply | 2 | 66.7 | 1 | ID_MISSING 1 |" in table
    assert "| done | 1 | 33.3 | 1 |  |" in table
