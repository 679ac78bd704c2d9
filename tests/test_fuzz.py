"""Robustness of decode + apply on hostile input (SPEC.md 4.9, 6.3, 9.1).

- A bounded, hypothesis-driven mutation fuzzer seeded with the conformance vectors: any exception
  other than GsdError, a failed frame that changes the state, a disagreement with validate_stream,
  or an input past its time budget fails the test (hypothesis then shrinks the mutation program).
  GSD_FUZZ_SECONDS sets the budget (default 30); the execution count and the depth table (the stage
  each input reached, conformance/fuzz_structured.py) are printed. Byte mutations mostly stop at the
  framing and the checksum; tests/test_fuzz_structured.py runs the structure-aware fuzzer that gets
  beneath them. The long runs are ``python -m conformance.fuzz --seconds 600`` and
  ``python -m conformance.fuzz --structured --execs N --seed S --jobs J``.
- The harness's own oracle is tested: a planted crash, state change and hang are each caught.
- Small inputs that claim huge sizes (2^31 Gaussians, 4 GiB sections, 2^31-entry vectors) fail
  with a GsdError while Python allocations stay under a few MB (tracemalloc).
"""
from __future__ import annotations

import os
import struct
import time
import tracemalloc
from collections import Counter
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import codec.decoder
from codec import Decoder, GsdError, Limits
from codec.state import SceneState
from conformance import craft, fuzz
from conformance import fuzz_structured as fs
from conformance.craft import ADD, DELETE_IDS, DELETE_RANGES, UPDATE, BlockFields, FrameFields, HeaderFields, Section

CORPUS = fuzz.load_corpus()
SECONDS = float(os.environ.get("GSD_FUZZ_SECONDS", "30"))

# One op: (kind, a, b, c) integers; fuzz.op_from_ints maps them onto the engine's mutation ops.
OP = st.tuples(st.integers(0, len(fuzz.OPS) - 1), st.integers(0, 1 << 20), st.integers(0, 1 << 20),
               st.integers(0, 1 << 20))
# A program is applied to several seed vectors: hypothesis's per-example cost is several executions.
PROGRAM = st.tuples(st.lists(st.integers(0, len(CORPUS) - 1), min_size=1, max_size=8),
                    st.lists(OP, min_size=1, max_size=4), st.integers(0, 3), st.integers(0, 9))


def test_fuzz_decode_and_apply(capsys):
    outcomes: Counter = Counter()
    stats = fs.Stats()

    @settings(max_examples=300, deadline=None, database=None, phases=(Phase.generate, Phase.shrink),
              suppress_health_check=list(HealthCheck))
    @given(PROGRAM)
    def batch(program):
        indices, ints, fix_crc, validate = program
        ops = [fuzz.op_from_ints(*t) for t in ints]
        for index in indices:
            _, data, limits = CORPUS[index]
            case = fuzz.mutate(data, ops, CORPUS, fix=fix_crc != 0)  # CRCs repaired 3 times in 4
            o = fs.execute(case, limits, budget=5.0)  # a Crash fails the test
            stats.add(o, "bytes")
            outcomes[o.outcome] += 1
            if validate == 0:  # decode and validate_stream agree
                assert fuzz.execute(case, limits, budget=5.0, validate=True) == o.outcome

    t0 = time.monotonic()
    with fs.depth_probes():
        while time.monotonic() - t0 < SECONDS:
            batch()
    stats.seconds = time.monotonic() - t0
    with capsys.disabled():
        print(f"\nbyte fuzz: {stats.summary()}\n{stats.table()}\noutcomes: "
              + ", ".join(f"{k} {v}" for k, v in outcomes.most_common()))
    # The mutations must reach deep checks, not only the framing ones.
    assert {"ok", "DIGEST_MISMATCH", "BAD_VALUE", "DECOMPRESSION_FAILED"} <= set(outcomes)


def test_seed_vectors_give_their_manifest_outcome():
    """The harness decodes for real: unmutated vectors reproduce the manifest's results."""
    import json
    with open(os.path.join(fuzz.VECTORS, "manifest.json")) as f:
        expected = {v["id"]: v["expected"].get("error", "ok") for v in json.load(f)["vectors"]}
    got = {vid: fuzz.execute(data, limits, validate=True) for vid, data, limits in CORPUS}
    assert got == expected


# ------------------------------------------------------------------------------------------ oracle self-tests
def _one(vid: str):
    return next(c for c in CORPUS if c[0] == vid)


def test_oracle_catches_a_non_gsd_exception(monkeypatch):
    def boom(*a, **k):
        raise IndexError("planted")
    monkeypatch.setattr(codec.decoder, "decode_frame", boom)
    _, data, limits = _one("op_delete_ids")
    with pytest.raises(fuzz.Crash, match="exception: IndexError"):
        fuzz.execute(data, limits)


def test_oracle_catches_a_state_change_on_failure(monkeypatch):
    real = SceneState.apply

    def leaky(self, d, *a, **k):
        if self.seq >= 1:
            self.seq += 1  # partial commit, then failure
            raise GsdError(5, "planted")
        return real(self, d, *a, **k)
    monkeypatch.setattr(SceneState, "apply", leaky)
    _, data, limits = _one("op_delete_ids")
    with pytest.raises(fuzz.Crash, match="state_changed"):
        fuzz.execute(data, limits)


def test_oracle_catches_a_hang(monkeypatch):
    def slow(*a, **k):
        time.sleep(30)
    monkeypatch.setattr(codec.decoder, "decode_frame", slow)
    _, data, limits = _one("op_delete_ids")
    with pytest.raises(fuzz.Crash, match="hang"):
        fuzz.execute(data, limits, budget=0.3)


def test_mutations_with_crc_fixup_get_past_the_checksum():
    _, data, limits = _one("op_update_full_mask")
    fields = fuzz.numeric_fields(data)
    assert len(fields) > 20
    outcomes = {fuzz.execute(fuzz.mutate(data, [("field", k, v)], CORPUS, True), limits)
                for k in range(len(fields)) for v in (0, 7, 30)}
    assert "BAD_CHECKSUM" not in outcomes and len(outcomes) >= 5


# ------------------------------------------------------------------------------------------ memory bounds
HF = HeaderFields(1, ((-8.0, -8.0, -8.0), 1.0, 4, 8), craft.QuantFields(rest_bits=(5,), rest_range=(0.9,)), "c")
BIG = 1 << 31


def _frame(blocks, sections, payload=b"", **kw) -> bytes:
    return craft.frame_record(craft.frame_meta(FrameFields(1, 0, 0, 0, None, blocks, sections, **kw)), payload)


def _patch_vector_len(frame: bytes, field_id: int, n: int) -> bytes:
    """The Frame vector field_id claims n entries; the CRC is recomputed so the claim gets past it."""
    meta, payload = craft.split_frame(frame)
    out = bytearray(meta)
    struct.pack_into("<I", out, craft.frame_vector_len_at(meta, field_id), n)
    return craft.frame_record(bytes(out), payload)


def _claims() -> dict[str, bytes]:
    """Streams of at most 1 KB that claim far more than the limits allow."""
    fat = Section(0, 16, 0xFFFFFFFF, 1, 0, 8)
    zst = craft.zstd_header_only(1 << 27) + bytes(range(24))  # declares 128 MiB honestly; blocks are garbage
    honest = Section(0, len(zst), 1 << 27, 1, 0, 8)
    one = [Section(0, 8, 8, 0, 0, 8)]
    return {
        "add_2p31": _frame([BlockFields(ADD, BIG, 0, 0, list(range(7)))], [fat] * 7, bytes(16)),
        "update_2p31": _frame([BlockFields(UPDATE, BIG, 1, 0, [0, 1])], [fat] * 2, bytes(16)),
        "delete_2p31": _frame([BlockFields(DELETE_IDS, BIG, 0, 0, [0])], [fat], bytes(16)),
        "ranges_2p31": _frame([BlockFields(DELETE_RANGES, BIG, 0, 0, [0])], [fat], bytes(16)),
        "raw_4gib_one_id": _frame([BlockFields(DELETE_IDS, 1, 0, 0, [0])], [fat], bytes(16)),
        "raw_4gib_x_4096_sections": _frame([BlockFields(DELETE_IDS, 1, 0, 0, [0])], one + [fat] * 4095, bytes(16)),
        "zstd_128mib_at_id_limit": _frame([BlockFields(DELETE_IDS, 1 << 24, 0, 0, [0])], [honest], zst),
        "blocks_vector_2p31": _patch_vector_len(_frame([BlockFields(DELETE_IDS, 1, 0, 0, [0])], one, bytes(8)),
                                                craft.FRAME_BLOCKS, BIG),
        "sections_vector_2p31": _patch_vector_len(_frame([BlockFields(DELETE_IDS, 1, 0, 0, [0])], one, bytes(8)),
                                                  craft.FRAME_SECTIONS, BIG),
        "frame_len_2p31": craft.frame_prefix(BIG, 0) + bytes(64),
    }


CLAIM_ERRORS = {  # each claim is rejected by the check meant for it, not by an accident of the crafting
    "add_2p31": "LIMIT_EXCEEDED", "update_2p31": "LIMIT_EXCEEDED", "delete_2p31": "LIMIT_EXCEEDED",
    "ranges_2p31": "LIMIT_EXCEEDED", "raw_4gib_one_id": "MALFORMED", "raw_4gib_x_4096_sections": "LIMIT_EXCEEDED",
    "zstd_128mib_at_id_limit": "DECOMPRESSION_FAILED", "frame_len_2p31": "LIMIT_EXCEEDED",
    # F9: a vector longer than the metadata fails verification and the limit; either error (SPEC.md 4.9)
    "blocks_vector_2p31": "LIMIT_EXCEEDED MALFORMED", "sections_vector_2p31": "LIMIT_EXCEEDED MALFORMED",
}


@pytest.mark.parametrize("name", sorted(_claims()))
def test_huge_claims_fail_with_small_memory(name):
    frame = _claims()[name]
    data = craft.header(HF) + frame
    if name == "raw_4gib_x_4096_sections":  # 64 KB of descriptors: the claim is 2^44 raw bytes, not the size
        assert len(data) < 70_000
    else:
        assert len(data) <= 1024
    tracemalloc.start()
    try:
        dec = Decoder(limits=Limits())
        pos = dec.set_header(data)
        with pytest.raises(GsdError) as e:
            dec.read_frame(memoryview(data)[pos:])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert e.value.code.name in CLAIM_ERRORS[name].split()
    assert peak < 4 << 20, f"{name}: {peak / 1e6:.1f} MB traced for a {len(data)}-byte stream"


def test_header_claiming_2p31_gaussians_is_rejected():
    data = craft.header(replace(HF, max_gaussians=BIG))
    tracemalloc.start()
    try:
        with pytest.raises(GsdError) as e:
            Decoder(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert e.value.code.name == "BAD_HEADER" and peak < 1 << 20
