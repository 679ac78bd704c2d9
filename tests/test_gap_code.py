"""The gap code (SPEC.md 4.4, compression 2, format 1.4): a section of strictly ascending values stored
as exp-Golomb codes of the gaps between them. The spec's example, round trips (compiled and Python),
every rule that refuses stored bytes, and the encoder's choice between it and zstd."""
from __future__ import annotations

import numpy as np
import pytest

from codec import Decoder, Encoder, ErrorCode, GsdError, Profile
from codec.attributes import Attr
from codec.encoder import format_options
from codec.stream import id_costs
from codec.sections import (DELTA, GAPS, NONE, SHUFFLE, ZSTD, SectionDesc, SectionWriter, gap_bits, gap_encode,
                            gap_order, gap_read, gap_write, read_section)
from codec.synthetic import synthetic_scene
from conformance import craft

UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32}


def _coded(values, k: int, width: int = 4) -> bytes:
    return gap_encode(np.asarray(values, UINT[width])[None, :], k)


def _read(stored: bytes, count: int, width: int = 4, comps: int = 1, filters: int = 0) -> np.ndarray:
    desc = SectionDesc(0, len(stored), comps * count * width, GAPS, filters, width)
    return read_section(memoryview(stored), desc, comps, count, width)


def _refused(stored: bytes, count: int, width: int = 4, **kw) -> ErrorCode:
    with pytest.raises(GsdError) as e:
        _read(stored, count, width, **kw)
    return e.value.code


def test_the_spec_example():
    """SPEC.md 4.4: the ranks 3, 4, 10 at k = 1."""
    assert _coded([3, 4, 10], 1) == bytes.fromhex("0159C0")
    assert _read(bytes.fromhex("0159C0"), 3).tolist() == [[3, 4, 10]]


def _sets(rng, width: int):
    top = 1 << (8 * width)
    yield np.zeros(0, np.int64)
    yield np.array([0])
    yield np.array([top - 1])                                   # one value at the very top
    yield np.arange(min(top, 5000))                              # a run: every gap 0
    yield np.array([0, top - 1])                                 # the largest gap
    for n in (10, 700, 4000):
        yield np.sort(rng.choice(top, min(n, top), replace=False))    # scattered
    runs = np.concatenate([np.arange(s, s + int(rng.integers(1, 9))) for s in
                           np.sort(rng.choice(top // 16, min(300, top // 16), replace=False)) * 16])
    yield runs[runs < top]                                       # short runs, as a world's updates


@pytest.mark.parametrize("width", [1, 2, 4])
def test_round_trips_at_every_order(width):
    rng = np.random.default_rng(width)
    for values in _sets(rng, width):
        row = values.astype(UINT[width])
        for k in sorted({0, 1, 4 * width, 8 * width - 1, int(gap_order(row, width))}):
            stored = _coded(row, k, width)
            assert stored[0] == k
            assert len(stored) == 1 + (gap_bits(row, k) + 7) // 8
            assert np.array_equal(_read(stored, len(row), width)[0], row), (width, k, len(row))


def test_the_compiled_and_python_kernels_agree():
    rng = np.random.default_rng(7)
    for width in (2, 4):
        for values in _sets(rng, width):
            row = values.astype(UINT[width])
            k = gap_order(row, width)
            assert gap_order.py_func(row, width) == k and gap_bits.py_func(row, k) == gap_bits(row, k)
            fast, slow = np.zeros(1 + (gap_bits(row, k) + 7) // 8, np.uint8), None
            gap_write(row, k, fast)
            slow = np.zeros_like(fast)
            gap_write.py_func(row, k, slow)
            assert fast.tobytes() == slow.tobytes()
            out = np.empty(len(row), UINT[width])
            assert gap_read.py_func(fast, len(row), width, out) == 0 and np.array_equal(out, row)


def test_the_order_is_near_the_best():
    """gap_order estimates from the gaps' bit lengths; the exact cost at its choice is within 2% of the
    best order's on scattered and on dense sets."""
    rng = np.random.default_rng(3)
    for values in (np.sort(rng.choice(1 << 20, 3000, replace=False)), np.flatnonzero(rng.random(60_000) < 0.4)):
        row = values.astype(np.uint32)
        best = min(gap_bits(row, k) for k in range(32))
        assert gap_bits(row, gap_order(row, 4)) <= 1.02 * best


def test_gap_encode_applies_only_to_one_row_of_ascending_narrow_values():
    assert gap_encode(np.array([[1, 5, 9]], np.uint32)) is not None
    assert gap_encode(np.array([[1, 5, 5]], np.uint32)) is None        # not strictly ascending
    assert gap_encode(np.array([[5, 1]], np.uint16)) is None
    assert gap_encode(np.array([[1, 5]], np.uint64)) is None           # 8-byte values
    assert gap_encode(np.array([[1, 5], [2, 6]], np.uint32)) is None   # two components


def test_every_invalid_code_is_decompression_failed():
    ok = _coded([3, 4, 10], 1)
    assert _refused(b"", 0) == ErrorCode.DECOMPRESSION_FAILED                      # no k byte
    assert _read(b"\x07", 0).shape == (1, 0)                                       # n = 0: the k byte alone
    assert _refused(bytes([32]), 0) == ErrorCode.DECOMPRESSION_FAILED               # k = 8w
    assert _read(bytes([7]), 0, width=1).shape == (1, 0)
    assert _refused(bytes([8]), 0, width=1) == ErrorCode.DECOMPRESSION_FAILED       # k = 8w at w = 1
    assert _refused(ok[:2], 3) == ErrorCode.DECOMPRESSION_FAILED                   # codes cut short
    assert _refused(ok, 4) == ErrorCode.DECOMPRESSION_FAILED                       # one code more than stored
    assert _refused(ok + b"\x00", 3) == ErrorCode.DECOMPRESSION_FAILED             # a whole byte after the codes
    assert _refused(ok[:2] + bytes([ok[2] | 1]), 3) == ErrorCode.DECOMPRESSION_FAILED  # a one among the padding
    # 33 zeros at k = 0 (z + k > 8w), then a one: refused at the 33rd zero, before the end of the data
    assert _refused(bytes([0, 0, 0, 0, 0, 0x40]) + bytes(8), 1) == ErrorCode.DECOMPRESSION_FAILED
    # z + k = 8w exactly is a valid length: the value 2^32 - 1 with k = 0 is 32 zeros, a one, 32 ones
    top = _coded([0xFFFFFFFF], 0)
    assert _read(top, 1).tolist() == [[0xFFFFFFFF]]
    # ... and one more than that is 2^(8w): the same code after the value 0 overflows
    assert _refused(_coded([0, 0xFFFFFFFF], 0)[:1] + _bits("1" + "0" * 32 + "1" + "1" * 32), 2) \
        == ErrorCode.DECOMPRESSION_FAILED


def _bits(s: str) -> bytes:
    s += "0" * (-len(s) % 8)
    return bytes(int(s[i:i + 8], 2) for i in range(0, len(s), 8))


def test_the_section_must_suit_the_code():
    ok = _coded([3, 4, 10], 1)
    assert _refused(ok, 3, width=8) == ErrorCode.MALFORMED            # ids are 8 bytes
    assert _refused(_coded([3], 1), 1, comps=3) == ErrorCode.MALFORMED
    assert _refused(ok, 3, filters=DELTA) == ErrorCode.MALFORMED
    desc = SectionDesc(0, len(ok), 12, 3, 0, 4)                         # compression 3 is unknown
    with pytest.raises(GsdError) as e:
        read_section(memoryview(ok), desc, 1, 3, 4)
    assert e.value.code == ErrorCode.UNSUPPORTED_FEATURE


def test_mutated_codes_decode_or_fail_typed():
    """Any byte changed, any length: the values of a valid code or DECOMPRESSION_FAILED, never
    anything else (and never past the stored bytes)."""
    rng = np.random.default_rng(11)
    row = np.sort(rng.choice(1 << 16, 200, replace=False)).astype(np.uint32)
    stored = bytearray(gap_encode(row[None, :]))
    for trial in range(2000):
        m = bytearray(stored)
        for _ in range(int(rng.integers(1, 4))):
            m[int(rng.integers(0, len(m)))] = int(rng.integers(0, 256))
        m = m[:int(rng.integers(1, len(m) + 2))]
        n = int(rng.integers(0, 260))
        try:
            out = _read(bytes(m), n)
        except GsdError as e:
            assert e.code == ErrorCode.DECOMPRESSION_FAILED
        else:
            assert (np.diff(out[0].astype(np.int64)) > 0).all()


def _stored_kinds(frame: bytes) -> list[int]:
    meta, _ = craft.split_frame(frame)
    return [s.compression for s in craft.parse_frame_meta(meta).sections]


def test_the_writer_keeps_the_smaller_of_the_gap_code_and_zstd():
    rng = np.random.default_rng(5)
    scattered = np.sort(rng.choice(1 << 20, 4000, replace=False)).astype(np.uint32)[None, :]
    run = np.arange(10, 20_010, dtype=np.uint32)[None, :]
    for values, want in ((scattered, GAPS), (run, ZSTD)):
        w = SectionWriter(1)
        w.add(values, DELTA | SHUFFLE, gaps=True)
        stored = w.parts()[0]
        assert w.descs[0].compression == want
        plain = SectionWriter(1)
        plain.add(values, DELTA | SHUFFLE)
        assert len(stored) <= len(plain.parts()[0])
        assert np.array_equal(read_section(memoryview(stored), w.descs[0], 1, values.shape[1], 4), values)
    assert w.descs[0].filters == DELTA | SHUFFLE           # zstd keeps the filters it was given
    level0 = SectionWriter(0)                                  # level 0 stores sections as they are
    level0.add(scattered, DELTA | SHUFFLE, gaps=True)
    level0.parts()
    assert level0.descs[0].compression == NONE


def test_an_encoder_with_the_gap_code_writes_ranks_with_it_and_stays_in_step():
    g = synthetic_scene(30_000, 1, 2)
    profile = Profile.fit("compact", g)
    sizes, kinds = {}, {}
    for gaps in (False, True):
        enc = Encoder(profile, ranked_ids=True, gap_code=gaps)
        ids = enc.assign_ids(g.positions)
        dec = Decoder(enc.header_bytes())
        frames = [enc.keyframe(g, ids)]
        rng = np.random.default_rng(9)
        alive = np.ones(len(ids), bool)
        for _ in range(4):
            rows = rng.choice(np.flatnonzero(alive), 1500, replace=False)
            moved = g.positions[rows[:1000]] + np.float32(0.05)
            frames.append(enc.encode(update=(ids[rows[:1000]], {Attr.POSITION: moved}), delete=ids[rows[1000:]]))
            alive[rows[1000:]] = False
        for f in frames:
            dec.decode_frame(f)
        assert dec.state.digest() == enc.state.digest()
        kinds[gaps] = {c for f in frames[1:] for c in _stored_kinds(f)}
        sizes[gaps] = sum(len(f) for f in frames[1:])
    assert GAPS in kinds[True] and GAPS not in kinds[False]
    assert sizes[True] < sizes[False]


def test_each_format_allows_what_its_readers_know():
    assert format_options("1.4") == {"implicit_ids": True, "ranked_ids": True, "channel_filter": True,
                                     "gap_code": True}
    assert format_options("1.3")["gap_code"] is False and format_options("1.3")["channel_filter"] is True
    assert format_options("1.0") == {"implicit_ids": False, "ranked_ids": False, "channel_filter": False,
                                     "gap_code": False}
    with pytest.raises(ValueError):
        format_options("1.9")


def test_id_costs_counts_every_update_and_delete_id_both_ways():
    g = synthetic_scene(20_000, 0, 4)
    enc = Encoder(Profile.fit("compact", g))
    ids = enc.assign_ids(g.positions)
    frames = [enc.keyframe(g, ids)]
    rng = np.random.default_rng(2)
    rows = rng.choice(len(ids), 3000, replace=False)
    frames.append(enc.encode(update=(ids[rows[:2000]], {Attr.POSITION: g.positions[rows[:2000]] + np.float32(0.1)}),
                             delete=ids[rows[2000:]]))
    c = id_costs(enc.header_bytes() + b"".join(frames))
    assert c["ids"] == 3000
    assert 0 < c["ranked_bytes"] < 0.7 * c["id_bytes"]
