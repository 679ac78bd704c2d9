"""Decoders never trust input (SPEC.md 4, 6, 9; docs/format-notes.md 4 and 9).

A small stream (header + keyframe, update, delete frames) is truncated at every
byte, bit-flipped at every bit, corrupted behind a recomputed CRC, and crafted
into frames that each provoke one error code. Every failure must be one
GsdError with the documented code, and must leave the decoder state exactly as
it was; nothing else may escape (warnings are errors here).

Error codes produced from bytes by the tests below (test_every_error_code_is_covered
checks the table): TRUNCATED, BAD_MAGIC, UNSUPPORTED_VERSION, BAD_CHECKSUM,
MALFORMED, UNSUPPORTED_FEATURE, LIMIT_EXCEEDED, DECOMPRESSION_FAILED, BAD_VALUE,
DUPLICATE_ID, ID_EXISTS, ID_MISSING, SEQUENCE_GAP, DIGEST_MISMATCH, BAD_HEADER.
"""
from __future__ import annotations

import functools
import struct
import tracemalloc
from dataclasses import dataclass, replace

import numpy as np
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from codec import Decoder, Encoder, ErrorCode, GsdError, Limits, read_stream, wire
from codec.attributes import Attr
from codec.wire import decode_header
from conformance import craft, refmodel
from conformance.craft import (ADD, ADD_IMPLICIT, DELETE_CELLS, DELETE_IDS, DELETE_RANGES, UPDATE, BlockFields, HeaderFields,
                               QuantFields, Section, edit_frame, fix_crc, frame_record, header_record, split_frame)

from conftest import make_profile, random_gaussians

pytestmark = pytest.mark.filterwarnings("error")

E = ErrorCode
U64 = np.uint64

# Crafted headers start from this one (lossless, 2^8 cells a side, 16 slot bits); COMPACT is the
# compact preset's quantization at SH degree 1.
HDR = HeaderFields(1, ((-8.0, -8.0, -8.0), 0.25, 8, 16), None, "compact", generator="tests")
COMPACT = QuantFields(rest_bits=(6,), rest_range=(1.2,))


# ------------------------------------------------------------------------------------ the stream
@dataclass
class Stream:
    profile: object
    header: bytes
    frames: list
    states: list  # SceneState before frame i (states[-1]: after the last frame)
    ids: np.ndarray

    @property
    def data(self) -> bytes:
        return self.header + b"".join(self.frames)

    def decoder(self, at: int, limits: Limits | None = None) -> Decoder:
        dec = Decoder(self.header, **({"limits": limits} if limits else {}))
        for f in self.frames[:at]:
            dec.decode_frame(f)
        return dec


def build_stream(name="compact", degree=1, n=48, seed=0) -> Stream:
    rng = np.random.default_rng(seed)
    g = random_gaussians(rng, n, degree)
    profile = make_profile(name, degree, g.positions, cell_bits=4, slot_bits=12)
    enc = Encoder(profile)
    ids = enc.assign_ids(g.positions)
    if profile.implicit_ids:
        ids += np.uint64(1)   # slots 1, 2, ...: not ranks, so the keyframe is an ADD block with its ids
    frames, states = [], [enc.state.copy()]
    frames.append(enc.keyframe(g, ids)); states.append(enc.state.copy())
    moved = g.take(np.arange(0, n, 3))
    moved.positions[:] += 0.3
    moved.sh_dc[::2] += 0.3
    enc.ranked_ids = False  # ids as ids here, as ranks in the last frames (format 1.2)
    frames.append(enc.encode(update=(ids[::3], moved))); states.append(enc.state.copy())
    grid = profile.grid
    srt = np.sort(ids)
    cell = int(ids[n - 8]) >> grid.slot_bits
    frames.append(enc.encode(delete=ids[1:6], delete_ranges=[[int(srt[10]), int(srt[13])]], delete_cells={0: [cell]}))
    states.append(enc.state.copy())
    if profile.implicit_ids:  # three Gaussians in the grid's empty top corner cell: an ADD_IMPLICIT block
        corner = g.take(np.arange(3))
        corner.positions[:] = np.asarray(grid.origin) + grid.cell_size * ((1 << grid.cell_bits) - 0.5)
        corner.positions[:, 0] += np.arange(3) * grid.cell_size / 8
        frames.append(enc.encode(add=(enc.assign_ids(corner.positions), corner)))
        states.append(enc.state.copy())
    enc.ranked_ids = True   # the last frame: UPDATE_RANKED and DELETE_RANKED
    live = enc.state.ids()
    dc = enc.state.floats(live[::4], enc.state.codes_of(live[::4]))[Attr.SH_DC] + 0.2
    frames.append(enc.encode(update=(live[::4], {Attr.SH_DC: dc}), delete=live[1:3]))
    states.append(enc.state.copy())
    return Stream(profile, enc.header_bytes(), frames, states, ids)


@pytest.fixture(scope="module")
def S() -> Stream:
    return build_stream()


@pytest.fixture(scope="module")
def S_lossless() -> Stream:
    return build_stream("lossless", 2, 24, seed=1)


def test_stream_uses_every_block_kind(S):
    kinds = set()
    for f in S.frames:
        kinds |= set(craft.block_kinds(f))
    assert kinds == {ADD, UPDATE, DELETE_IDS, DELETE_RANGES, DELETE_CELLS, ADD_IMPLICIT, wire.UPDATE_RANKED, wire.DELETE_RANKED}
    assert len(S.states[-1]) < len(S.states[1])


# ------------------------------------------------------------------------------------- helpers
def snapshot(dec: Decoder):
    return dec.state.copy(), dec.state.digest(), dec.state.seq, dec.frames


def assert_unchanged(dec: Decoder, snap) -> None:
    state, digest, seq, frames = snap
    assert dec.state.equals(state), "a failed frame changed the state"
    assert dec.state.digest() == digest and dec.state.seq == seq and dec.frames == frames


def decode_error(dec: Decoder, buf: bytes) -> GsdError:
    """Decode a bad frame: it must raise GsdError (anything else propagates and fails the test)."""
    try:
        dec.decode_frame(buf)
    except GsdError as e:
        return e
    raise AssertionError("bad frame accepted")


# ----------------------------------------------------------------------------------- truncation
@pytest.mark.parametrize("fixture", ["S", "S_lossless"])
def test_truncated_frame_at_every_byte(fixture, request):
    s = request.getfixturevalue(fixture)
    for i, frame in enumerate(s.frames):
        dec = s.decoder(i)
        snap = snapshot(dec)
        for k in range(len(frame)):
            e = decode_error(dec, frame[:k])
            assert e.code == E.TRUNCATED, (i, k, e)
            if k % 16 == 0:
                assert_unchanged(dec, snap)
        assert_unchanged(dec, snap)
        dec.decode_frame(frame)  # the decoder still works after all those failures
        assert dec.state.equals(s.states[i + 1]) and dec.state.digest() == s.states[i + 1].digest()


def test_truncated_header_at_every_byte(S):
    for k in range(len(S.header)):
        with pytest.raises(GsdError) as e:
            decode_header(S.header[:k])
        assert e.value.code == E.TRUNCATED, k
    assert decode_header(S.header)[1] == len(S.header)


def test_truncated_stream_at_every_byte(S):
    data = S.data
    bounds = np.cumsum([len(S.header)] + [len(f) for f in S.frames])
    for k in range(len(data) + 1):
        done = 0
        err = None
        try:
            for dec, fr in read_stream(data[:k]):
                done += 1
                assert dec.state.digest() == S.states[done].digest()
        except GsdError as e:
            err = e
        if k < len(S.header):
            assert err is not None and err.code == E.TRUNCATED and err.frame is None, k
        elif k in bounds:
            assert err is None and done == int(np.searchsorted(bounds, k)), k
        else:
            assert err is not None and err.code == E.TRUNCATED, (k, err)
            assert err.frame == done, (k, err.frame, done)


# -------------------------------------------------------------------------------------- bit flips
def expected_frame_prefix_code(buf: bytes, limits: Limits = Limits()) -> ErrorCode | None:
    """The code the check order of format-notes 4 gives for a frame's prefix, or None if it passes."""
    if len(buf) < 4:
        return E.TRUNCATED
    if buf[:4] != b"GSDF":
        return E.BAD_MAGIC
    if len(buf) < 12:
        return E.TRUNCATED
    _, flen, mlen = struct.unpack_from("<4sII", buf)
    if flen < 16:
        return E.MALFORMED
    if flen > limits.max_frame_bytes:
        return E.LIMIT_EXCEEDED
    if len(buf) < flen:
        return E.TRUNCATED
    if mlen > flen - 16:
        return E.MALFORMED
    return None


@pytest.mark.parametrize("fixture", ["S", "S_lossless"])
def test_single_bit_flip_in_every_frame_bit(fixture, request):
    s = request.getfixturevalue(fixture)
    seen = set()
    for i, frame in enumerate(s.frames):
        dec = s.decoder(i)
        snap = snapshot(dec)
        buf = bytearray(frame)
        for bit in range(8 * len(frame)):
            buf[bit >> 3] ^= 1 << (bit & 7)
            e = decode_error(dec, bytes(buf))
            pos = bit >> 3
            want = expected_frame_prefix_code(bytes(buf)) or E.BAD_CHECKSUM
            assert e.code == want, (i, pos, bit & 7, e, want)
            seen.add(e.code)
            if bit % 61 == 0:
                assert_unchanged(dec, snap)
            buf[bit >> 3] ^= 1 << (bit & 7)
        assert_unchanged(dec, snap)
        dec.decode_frame(frame)
    assert {E.BAD_MAGIC, E.MALFORMED, E.LIMIT_EXCEEDED, E.TRUNCATED, E.BAD_CHECKSUM} <= seen


def test_single_bit_flip_in_every_header_bit(S):
    buf = bytearray(S.header)
    for bit in range(8 * len(buf)):
        pos = bit >> 3
        buf[pos] ^= 1 << (bit & 7)
        with pytest.raises(GsdError) as e:
            decode_header(bytes(buf))
        body_len = struct.unpack_from("<I", buf, 8)[0]
        if pos < 4:
            want = {E.BAD_MAGIC}
        elif pos == 4:
            want = {E.UNSUPPORTED_VERSION}
        elif 8 <= pos < 12:
            want = {E.LIMIT_EXCEEDED} if body_len > 65536 else {E.TRUNCATED} if 12 + body_len + 4 > len(buf) \
                else {E.BAD_CHECKSUM}
        else:
            want = {E.BAD_CHECKSUM}  # minor version, reserved, body, CRC
        assert e.value.code in want, (pos, bit & 7, e.value)
        buf[pos] ^= 1 << (bit & 7)


def test_prefix_check_order_of_format_notes(S):
    """Two prefix fields wrong at once: the notes' order decides (frame_len checks before meta_len)."""
    frame = S.frames[0]
    n = len(frame)
    dec = S.decoder(0)
    for flen, mlen, want in [(n + 100, n + 100, E.TRUNCATED),        # short bytes beat a bad meta_len
                             (2**31, 2**31, E.LIMIT_EXCEEDED),        # the frame limit beats a bad meta_len
                             (8, 0, E.MALFORMED),                     # frame_len < 16
                             (n, n - 15, E.MALFORMED)]:               # meta_len > frame_len - 16
        buf = bytearray(frame)
        struct.pack_into("<II", buf, 4, flen, mlen)
        assert decode_error(dec, bytes(buf)).code == want, (flen, mlen)


# ------------------------------------------------------------------- corruption behind a good CRC
def check_corrupt(s: Stream, i: int, buf: bytes, dec: Decoder | None = None) -> ErrorCode | None:
    """Decode a CRC-valid corrupted frame i: GsdError and untouched state, or a correct result."""
    dec = dec or s.decoder(i)
    snap = snapshot(dec)
    try:
        d = dec.decode_frame(buf)
    except GsdError as e:
        assert e.code not in (E.TRUNCATED, E.BAD_MAGIC, E.BAD_CHECKSUM), e
        assert_unchanged(dec, snap)
        return e.code
    if d.digest is not None:  # the frame vouched for its result: it must be the true one
        assert dec.state.equals(s.states[i + 1]) and dec.state.digest() == s.states[i + 1].digest()
    return None


@pytest.mark.parametrize("fixture", ["S", "S_lossless"])
def test_every_metadata_byte_corrupted_behind_good_crc(fixture, request):
    s = request.getfixturevalue(fixture)
    codes = set()
    for i, frame in enumerate(s.frames):
        _, flen, mlen = struct.unpack_from("<4sII", frame)
        for pos in range(12, 12 + mlen):
            for val in {frame[pos] ^ 0xFF, 0, 0xFF, (frame[pos] + 1) & 0xFF, frame[pos] ^ 0x80} - {frame[pos]}:
                buf = bytearray(frame)
                buf[pos] = val
                codes.add(check_corrupt(s, i, fix_crc(buf)))
    assert {E.MALFORMED, E.DIGEST_MISMATCH} <= codes


@pytest.mark.parametrize("fixture", ["S", "S_lossless"])
def test_every_payload_byte_corrupted_behind_good_crc(fixture, request):
    s = request.getfixturevalue(fixture)
    codes = set()
    for i, frame in enumerate(s.frames):
        _, flen, mlen = struct.unpack_from("<4sII", frame)
        dec = s.decoder(i)
        for pos in range(12 + mlen, flen - 4):
            for val in (frame[pos] ^ 0xFF, frame[pos] ^ 0x01)[: 2 if pos % 4 == 0 else 1]:
                buf = bytearray(frame)
                buf[pos] = val
                codes.add(check_corrupt(s, i, fix_crc(buf), dec))
    assert E.DIGEST_MISMATCH in codes


@settings(max_examples=300)
@given(data=st.data(), which=st.sampled_from([0, 1, 2]), nmut=st.integers(1, 6))
def test_random_corruption_behind_good_crc(S, data, which, nmut):
    frame = S.frames[which]
    buf = bytearray(frame)
    for _ in range(nmut):
        pos = data.draw(st.integers(12, len(frame) - 5))
        buf[pos] = data.draw(st.integers(0, 255))
    check_corrupt(S, which, fix_crc(buf))


@settings(max_examples=150)
@given(data=st.data(), which=st.sampled_from([0, 1, 2]))
def test_random_metadata_and_meta_len_behind_good_crc(S, data, which):
    """Random metadata bytes of random length (and so a shifted payload), CRC fixed."""
    meta, payload = split_frame(S.frames[which])
    mode = data.draw(st.sampled_from(["random", "truncate", "extend"]))
    if mode == "random":
        meta = data.draw(st.binary(min_size=0, max_size=len(meta) + 8))
    elif mode == "truncate":
        meta = meta[: data.draw(st.integers(0, len(meta)))]
    else:
        meta = meta + data.draw(st.binary(min_size=1, max_size=64))
    check_corrupt(S, which, frame_record(meta, payload))


# ------------------------------------------------------------------ oversize counts, bombs, memory
def peak_bytes(fn) -> tuple[object, int]:
    tracemalloc.start()
    try:
        result = fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return result, peak


MB = 1 << 20


@pytest.mark.parametrize("kind,count,code", [
    (ADD, 2**31, E.LIMIT_EXCEEDED),
    (ADD, 2**32 - 1, E.LIMIT_EXCEEDED),
    (UPDATE, 2**24 + 1, E.LIMIT_EXCEEDED),
    (DELETE_IDS, 2**31, E.LIMIT_EXCEEDED),
    (DELETE_RANGES, 2**20 + 1, E.LIMIT_EXCEEDED),
    (DELETE_CELLS, 2**31, E.LIMIT_EXCEEDED),
])
def test_oversize_declared_count_fails_without_allocating(S, kind, count, code):
    frame = S.frames[0] if kind == ADD else S.frames[1] if kind == UPDATE else S.frames[2]
    bad = edit_frame(frame, lambda m: setattr(_first_block(m, kind), "count", count))
    dec = S.decoder(S.frames.index(frame))
    snap = snapshot(dec)
    e, peak = peak_bytes(lambda: decode_error(dec, bad))
    assert e.code == code
    assert peak < 4 * MB, f"{peak} bytes allocated to reject a count of {count}"
    assert_unchanged(dec, snap)


@functools.lru_cache(maxsize=None)
def _bomb(total: int, declare_size: bool) -> bytes:
    """zstd data that expands to ``total`` zero bytes, built without holding them in memory."""
    cctx = zstandard.ZstdCompressor(level=1, write_content_size=declare_size)
    chunk = bytes(MB)
    co = cctx.compressobj(size=total if declare_size else -1)
    parts = [co.compress(chunk) for _ in range(total // MB)]
    parts.append(co.flush())
    return b"".join(parts)


BOMBS = {
    "no_content_size": lambda raw: _bomb(256 * MB, False),
    "true_content_size": lambda raw: _bomb(256 * MB, True),
    "content_size_lies": lambda raw: craft.zstd_set_content_size(_bomb(256 * MB, True), raw),
    "bomb_after_a_good_frame": lambda raw: zstandard.ZstdCompressor().compress(bytes(raw)) + _bomb(256 * MB, False),
}


@pytest.mark.parametrize("bomb", sorted(BOMBS))
def test_zstd_bomb_section_is_decompression_failed_with_bounded_memory(S, bomb):
    """A DELETE_IDS section of 5 ids (40 raw bytes) whose zstd data expands to 256 MiB."""
    frame = S.frames[2]
    meta, payload0 = split_frame(frame)
    data = BOMBS[bomb](_ids_section(craft.parse_frame_meta(meta)).raw_size)

    def edit(m: craft.FrameFields):
        sec = _ids_section(m)
        sec.offset, sec.stored_size, sec.compression = len(payload0), len(data), craft.ZSTD

    bad = edit_frame(frame, edit, payload0 + data)
    assert len(bad) < 64 * 1024
    dec = S.decoder(2)
    snap = snapshot(dec)
    e, peak = peak_bytes(lambda: decode_error(dec, bad))
    assert e.code == E.DECOMPRESSION_FAILED, e
    assert peak < 8 * MB, f"peak {peak / MB:.1f} MiB while rejecting a zstd bomb"
    assert_unchanged(dec, snap)


@pytest.mark.parametrize("declare", [False, True])
def test_large_declared_raw_size_with_tiny_zstd_data_has_bounded_memory(S, declare):
    """A count within limits (2^24 ids, 128 MiB raw) backed by ~100 bytes: memory follows the data."""
    frame = S.frames[2]
    count = 1 << 24
    tiny = craft.zstd_raw_block_frame(8 * count, bytes(100)) if declare else zstandard.ZstdCompressor().compress(bytes(100))
    payload0 = split_frame(frame)[1]

    def edit(m: craft.FrameFields):
        _first_block(m, DELETE_IDS).count = count
        sec = _ids_section(m)
        sec.offset, sec.stored_size, sec.raw_size, sec.compression = len(payload0), len(tiny), 8 * count, craft.ZSTD

    bad = edit_frame(frame, edit, payload0 + tiny)
    dec = S.decoder(2)
    snap = snapshot(dec)
    e, peak = peak_bytes(lambda: decode_error(dec, bad))
    assert e.code == E.DECOMPRESSION_FAILED
    assert peak < 8 * MB, f"peak {peak / MB:.1f} MiB for a {len(bad)}-byte frame"
    assert_unchanged(dec, snap)


# ---------------------------------------------------------------- one case per error code (table)
def _frame(S, at: int, digest: tuple | None = None, **ops) -> bytes:
    """A frame after S.states[at] holding ``ops`` (as craft.op_blocks takes them), written as given."""
    seq = S.states[at].seq
    return craft.ops_frame(S.profile.sh_degree, seq + 1, seq, digest=digest, **ops)


def _codes(S, n, over=None):
    """n valid codes (copied from live Gaussians) with some attributes overridden."""
    ids = S.states[1].ids()[:n]
    c = {a: v.copy() for a, v in S.states[1].codes_of(ids).items()}
    c.update(over or {})
    return c


def _free_ids(S, n):
    live = set(int(i) for i in S.states[1].ids())
    return np.array([i for i in range(1, 10**6) if i not in live][:n], U64)


def _first_block(m: craft.FrameFields, kind: int) -> BlockFields:
    return next(b for b in m.blocks if b.kind == kind)


def _ids_section(m: craft.FrameFields) -> Section:
    """The section of the first DELETE_IDS block."""
    return m.sections[_first_block(m, DELETE_IDS).sections[0]]


def _hdr(**kw):
    return ("header", craft.header(replace(HDR, **kw)))


CASES = {
    # framing
    "truncated_frame": (E.TRUNCATED, lambda S: (0, S.frames[0][:-1])),
    "truncated_header": (E.TRUNCATED, lambda S: ("header", S.header[:-1])),
    "bad_frame_magic": (E.BAD_MAGIC, lambda S: (0, b"GSDX" + S.frames[0][4:])),
    "bad_header_magic": (E.BAD_MAGIC, lambda S: ("header", b"XSDH" + S.header[4:])),
    "header_major_2": (E.UNSUPPORTED_VERSION, lambda S: ("header", fix_crc(S.header[:4] + b"\x02" + S.header[5:]))),
    "frame_crc": (E.BAD_CHECKSUM, lambda S: (0, S.frames[0][:-1] + bytes([S.frames[0][-1] ^ 1]))),
    "header_crc": (E.BAD_CHECKSUM, lambda S: ("header", S.header[:-1] + bytes([S.header[-1] ^ 1]))),
    "frame_len_15": (E.MALFORMED, lambda S: (0, S.frames[0][:4] + struct.pack("<I", 15) + S.frames[0][8:])),
    "frame_over_limit": (E.LIMIT_EXCEEDED, lambda S: (0, S.frames[0][:4] + struct.pack("<I", 2**30 + 1) + S.frames[0][8:])),
    "header_body_over_limit": (E.LIMIT_EXCEEDED, lambda S: ("header", header_record(b"", body_len=65537))),
    # metadata
    "meta_garbage": (E.MALFORMED, lambda S: (0, frame_record(b"\xff" * 16, split_frame(S.frames[0])[1]))),
    "meta_empty": (E.MALFORMED, lambda S: (0, frame_record(b"", b""))),
    "block_kind_0": (E.MALFORMED, lambda S: (2, edit_frame(S.frames[2], lambda m: setattr(_first_block(m, DELETE_IDS), "kind", 0)))),
    "update_mask_0": (E.MALFORMED, lambda S: (1, edit_frame(S.frames[1], lambda m: setattr(_first_block(m, UPDATE), "mask", 0)))),
    "update_mask_bit6": (E.MALFORMED, lambda S: (1, edit_frame(S.frames[1], lambda m: setattr(_first_block(m, UPDATE), "mask", _first_block(m, UPDATE).mask | 0x40)))),
    "add_missing_section": (E.MALFORMED, lambda S: (0, edit_frame(S.frames[0], lambda m: _first_block(m, ADD).sections.pop()))),
    "implicit_with_position_section": (E.MALFORMED, lambda S: (3, edit_frame(S.frames[3], lambda m: _first_block(m, ADD_IMPLICIT).sections.insert(1, 1)))),
    "implicit_block_twice": (E.DUPLICATE_ID, lambda S: (3, edit_frame(S.frames[3], lambda m: m.blocks.append(replace(_first_block(m, ADD_IMPLICIT)))))),
    "section_index_out_of_range": (E.MALFORMED, lambda S: (2, edit_frame(S.frames[2], lambda m: _first_block(m, DELETE_IDS).sections.__setitem__(0, 999)))),
    "raw_size_mismatch": (E.MALFORMED, lambda S: (2, edit_frame(S.frames[2], lambda m: setattr(_ids_section(m), "raw_size", 8)))),
    "width_mismatch": (E.MALFORMED, lambda S: (2, edit_frame(S.frames[2], lambda m: setattr(_ids_section(m), "width", 4)))),
    "section_past_payload": (E.MALFORMED, lambda S: (2, edit_frame(S.frames[2], lambda m: setattr(_ids_section(m), "offset", 10**6)))),
    "uncompressed_stored_ne_raw": (E.MALFORMED, lambda S: (2, edit_frame(
        S.frames[2], lambda m: setattr(_ids_section(m), "stored_size", _ids_section(m).raw_size - 1)))),
    "keyframe_seq_0": (E.MALFORMED, lambda S: (0, edit_frame(S.frames[0], lambda m: setattr(m, "seq", 0)))),
    "seq_not_after_base": (E.MALFORMED, lambda S: (1, edit_frame(S.frames[1], lambda m: setattr(m, "seq", m.base_seq)))),
    # features
    "frame_required_feature": (E.UNSUPPORTED_FEATURE, lambda S: (0, edit_frame(S.frames[0], lambda m: setattr(m, "required_features", 1 << 5)))),
    "header_required_feature": (E.UNSUPPORTED_FEATURE, lambda S: _hdr(quant=COMPACT, required_features=2)),
    "header_palette_bit_without_palette": (E.BAD_HEADER, lambda S: _hdr(quant=COMPACT, required_features=1)),
    "op_kind_10": (E.UNSUPPORTED_FEATURE, lambda S: (2, edit_frame(S.frames[2], lambda m: setattr(_first_block(m, DELETE_IDS), "kind", 10)))),
    "op_palette_without_palette": (E.MALFORMED, lambda S: (2, edit_frame(S.frames[2], lambda m: setattr(_first_block(m, DELETE_IDS), "kind", 6)))),
    "compression_3": (E.UNSUPPORTED_FEATURE, lambda S: (2, edit_frame(S.frames[2], lambda m: setattr(_ids_section(m), "compression", 3)))),
    "compression_2_ids": (E.MALFORMED, lambda S: (2, edit_frame(S.frames[2], lambda m: setattr(_ids_section(m), "compression", 2)))),
    "filter_bit_4": (E.UNSUPPORTED_FEATURE, lambda S: (2, edit_frame(S.frames[2], lambda m: setattr(_ids_section(m), "filters", 16)))),
    # limits
    "add_count_2^31": (E.LIMIT_EXCEEDED, lambda S: (0, edit_frame(S.frames[0], lambda m: setattr(_first_block(m, ADD), "count", 2**31)))),
    "too_many_blocks": (E.LIMIT_EXCEEDED, lambda S: (2, edit_frame(S.frames[2], lambda m: m.blocks.extend([BlockFields(200, 0)] * 4097)))),
    "too_many_sections": (E.LIMIT_EXCEEDED, lambda S: (2, edit_frame(S.frames[2], lambda m: m.sections.extend([Section(0, 0, 0, 0, 0, 1)] * 16385)))),
    "raw_bytes_over_2^32": (E.LIMIT_EXCEEDED, lambda S: (2, edit_frame(S.frames[2], lambda m: m.sections.extend([Section(0, 0, 2**31 + 1, 1, 0, 8)] * 2)))),
    "scene_budget": (E.LIMIT_EXCEEDED, lambda S: ("stream", craft.header(replace(HDR, grid=_grid(S), quant=COMPACT, max_gaussians=10)) + S.frames[0])),
    # decompression
    "zstd_garbage": (E.DECOMPRESSION_FAILED, lambda S: _zstd_case(S, b"\x28\xb5\x2f\xfd" + bytes(range(60)))),
    "zstd_short": (E.DECOMPRESSION_FAILED, lambda S: _zstd_case(S, zstandard.ZstdCompressor().compress(bytes(8)))),
    "zstd_long": (E.DECOMPRESSION_FAILED, lambda S: _zstd_case(S, zstandard.ZstdCompressor().compress(bytes(4096)))),
    "zstd_no_content_size": (E.DECOMPRESSION_FAILED, lambda S: _zstd_case(S, zstandard.ZstdCompressor(write_content_size=False).compress(bytes(40)))),
    "zstd_trailing_bytes": (E.DECOMPRESSION_FAILED, lambda S: _zstd_case(S, zstandard.ZstdCompressor().compress(bytes(40)) + b"\0")),
    "zstd_data_short_of_content_size": (E.DECOMPRESSION_FAILED, lambda S: _zstd_case(S, craft.zstd_raw_block_frame(40, bytes(39)))),
    "zstd_skippable_frame_first": (E.DECOMPRESSION_FAILED, lambda S: _zstd_case(S, craft.zstd_skippable_frame(b"x") + zstandard.ZstdCompressor().compress(bytes(40)))),
    "zstd_dictionary_id": (E.DECOMPRESSION_FAILED, lambda S: _zstd_case(S, craft.zstd_block_frame(40, [("raw", bytes(40))], dict_id=1))),
    "zstd_checksum_mismatch": (E.DECOMPRESSION_FAILED, lambda S: _zstd_case(S, craft.zstd_block_frame(40, [("raw", bytes(40))], checksum_of=bytes(39) + b"\1"))),
    # values
    "ids_descending": (E.BAD_VALUE, lambda S: (1, _frame(S, 1, deletes=[S.states[1].ids()[[3, 1]]]))),
    "id_outside_id_space": (E.BAD_VALUE, lambda S: (1, _frame(S, 1, deletes=[np.array([S.profile.grid.id_limit], U64)]))),
    "range_first_gt_last": (E.BAD_VALUE, lambda S: (1, _frame(S, 1, ranges=[[(9, 3)]]))),
    "cell_outside_grid": (E.BAD_VALUE, lambda S: (1, _frame(S, 1, cells=[(0, [1 << (3 * S.profile.grid.cell_bits)])]))),
    "cell_level_over_B": (E.BAD_VALUE, lambda S: (1, _frame(S, 1, cells=[(S.profile.grid.cell_bits + 1, [0])]))),
    "rotation_index_4": (E.BAD_VALUE, lambda S: (1, _frame(S, 1, adds=[(_free_ids(S, 1), _codes(S, 1, {Attr.ROTATION: np.array([[4], [0], [0], [0]], np.uint8)}))]))),
    "rest_over_M": (E.BAD_VALUE, lambda S: (1, _frame(S, 1, adds=[(_free_ids(S, 1), _codes(S, 1, {Attr.SH_REST: np.full((9, 1), 100, np.int8)}))]))),
    "update_makes_invalid_code": (E.BAD_VALUE, lambda S: (1, _upd_invalid(S))),
    # ids
    "add_equal_ids": (E.DUPLICATE_ID, lambda S: (1, _frame(S, 1, adds=[(np.repeat(_free_ids(S, 1), 2), _codes(S, 2))]))),
    "id_in_add_and_update": (E.DUPLICATE_ID, lambda S: (1, _add_and_update(S))),
    "two_delete_id_blocks": (E.DUPLICATE_ID, lambda S: (2, edit_frame(S.frames[2], lambda m: m.blocks.append(replace(_first_block(m, DELETE_IDS)))))),
    "add_live_id": (E.ID_EXISTS, lambda S: (1, _frame(S, 1, adds=[(S.states[1].ids()[:1], _codes(S, 1))]))),
    "delete_absent_id": (E.ID_MISSING, lambda S: (1, _frame(S, 1, deletes=[_free_ids(S, 1)]))),
    "update_deleted_id": (E.ID_MISSING, lambda S: (3, _upd(S, 3, np.setdiff1d(S.states[1].ids(), S.states[3].ids())[:1]))),
    "base_seq_gap": (E.SEQUENCE_GAP, lambda S: (0, S.frames[1])),
    "replayed_frame": (E.SEQUENCE_GAP, lambda S: (2, S.frames[1])),
    "digest_mismatch": (E.DIGEST_MISMATCH, lambda S: (1, edit_frame(S.frames[1], lambda m: setattr(m, "digest", (m.digest[0], m.digest[1] ^ 1, m.digest[2]))))),
    "digest_count_mismatch": (E.DIGEST_MISMATCH, lambda S: (1, _frame(S, 1, digest=(1, 0, 0)))),
    # header parameters
    "header_cell_bits_0": (E.BAD_HEADER, lambda S: _hdr(grid=((0.0, 0.0, 0.0), 1.0, 0, 8), quant=COMPACT)),
    "header_id_bits_over_63": (E.BAD_HEADER, lambda S: _hdr(grid=((0.0, 0.0, 0.0), 1.0, 20, 8), quant=COMPACT)),
    "header_cell_size_0": (E.BAD_HEADER, lambda S: _hdr(grid=((0.0, 0.0, 0.0), 0.0, 8, 8), quant=COMPACT)),
    "header_sh_degree_4": (E.BAD_HEADER, lambda S: _hdr(sh_degree=4)),
    "header_max_gaussians": (E.BAD_HEADER, lambda S: _hdr(quant=COMPACT, max_gaussians=2**24 + 1)),
    "header_position_bits_0": (E.BAD_HEADER, lambda S: _hdr(quant=replace(COMPACT, position_bits=0))),
    "header_rest_bits_short": (E.BAD_HEADER, lambda S: _hdr(sh_degree=2, quant=COMPACT)),
    "header_scale_range_empty": (E.BAD_HEADER, lambda S: _hdr(quant=replace(COMPACT, scale_min=4.0))),
}


def _grid(S):
    g = S.profile.grid
    return (tuple(g.origin), g.cell_size, g.cell_bits, g.slot_bits)


def _zstd_case(S, data: bytes):
    frame = S.frames[2]
    payload0 = split_frame(frame)[1]

    def edit(m: craft.FrameFields):
        sec = _ids_section(m)
        sec.offset, sec.stored_size, sec.compression = len(payload0), len(data), craft.ZSTD

    return 2, edit_frame(frame, edit, payload0 + data)


def _upd_invalid(S):
    """UPDATE residual taking rotation's largest-component index to 7."""
    ids = S.states[1].ids()[:1]
    old = S.states[1].codes_of(ids)[Attr.ROTATION]
    res = (np.array([[7], [0], [0], [0]], np.uint8) - np.array([[old[0, 0]], [0], [0], [0]], np.uint8)).astype(np.uint8)
    return _frame(S, 1, updates=[(ids, Attr.ROTATION.bit, {Attr.ROTATION: res})])


def _opacity_plus_one(S, ids):
    p = S.profile
    return {Attr.OPACITY: np.ones((p.comps(Attr.OPACITY), len(ids)), p.dtype(Attr.OPACITY))}


def _upd(S, at, ids):
    return _frame(S, at, updates=[(ids, Attr.OPACITY.bit, _opacity_plus_one(S, ids))])


def _add_and_update(S):
    ids = S.states[1].ids()[:1]
    return _frame(S, 1, deletes=[ids], adds=[(ids, _codes(S, 1))],
                  updates=[(ids, Attr.OPACITY.bit, _opacity_plus_one(S, ids))])


@pytest.mark.parametrize("case", sorted(CASES))
def test_error_code_case(S, case):
    code, make = CASES[case]
    where, buf = make(S)
    if where == "header":
        with pytest.raises(GsdError) as e:
            Decoder(buf)
        assert e.value.code == code, e.value
        return
    if where == "stream":
        with pytest.raises(GsdError) as e:
            for _ in read_stream(buf):
                pass
        assert e.value.code == code and e.value.frame == 0, e.value
        return
    dec = S.decoder(where)
    snap = snapshot(dec)
    e = decode_error(dec, buf)
    assert e.code == code, (case, e)
    assert_unchanged(dec, snap)
    if where < len(S.frames):
        dec.decode_frame(S.frames[where])  # still usable afterwards
        assert dec.state.digest() == S.states[where + 1].digest()


def test_every_error_code_is_covered():
    assert {code for code, _ in CASES.values()} == set(ErrorCode)


def test_lowered_decoder_limits_apply(S):
    """A decoder MAY lower limits: the same valid keyframe is refused with LIMIT_EXCEEDED."""
    for limits in (Limits(max_ids_per_frame=10), Limits(max_gaussians=10), Limits(max_frame_bytes=64),
                   Limits(max_frame_raw_bytes=100), Limits(max_sections=2)):
        dec = Decoder(S.header, limits=limits)
        snap = snapshot(dec)
        assert decode_error(dec, S.frames[0]).code == E.LIMIT_EXCEEDED, limits
        assert_unchanged(dec, snap)


@pytest.mark.parametrize("edit", [
    lambda m: m.blocks.append(BlockFields(200, 5, 0, 0, [0])),        # extension kind: skipped with its sections
    lambda m: setattr(m, "flags", m.flags | 0x80),                     # reserved flag bits: ignored
    lambda m: m.blocks.append(replace(_first_block(m, DELETE_CELLS))), # repeated cells/level: allowed (SPEC 6.1)
    lambda m: m.blocks.append(replace(_first_block(m, DELETE_RANGES))),  # overlapping ranges: allowed
    lambda m: m.blocks.reverse(),                                      # block order does not matter
], ids=["extension_kind", "flag_bits", "repeated_cells", "repeated_ranges", "block_order"])
def test_frames_the_spec_allows_are_accepted(S, edit):
    """Forward compatibility and freedoms of SPEC.md 6.1/10: these edited frames give the same state."""
    dec = S.decoder(2)
    dec.decode_frame(edit_frame(S.frames[2], edit))
    assert dec.state.equals(S.states[3]) and dec.state.digest() == S.states[3].digest()


# ------------------------------------------------------------------------------ FlatBuffers verification
# SPEC.md 4.5 "Verification": the reader checks every offset and length of the header body and the
# frame metadata against the buffer before use; refmodel.RefBuffer is the spec's algorithm written
# out naively, so random edits must give the codec and it the same verdict.


def _ref_verdict(buf: bytes, root: str) -> bool:
    try:
        refmodel.RefBuffer(buf, root)
    except refmodel.RefError:
        return False
    return True


def _codec_verdict(fn, *args) -> bool:
    try:
        fn(*args)
    except GsdError as e:
        if e.code is E.MALFORMED:
            return False
        return True   # verified, then rejected by a later check (limits, features, grid)
    return True


def test_header_vtable_before_the_body_is_malformed_not_wrapped(S):
    """The fuzzing find: a positive soffset larger than the table position puts the vtable before
    the body; struct.unpack_from would read it from the end (negative offsets wrap)."""
    tree = craft.header_tree(craft.HeaderFields.of(S.profile))
    body, pos = craft.fb_layout(tree, pad=0)
    for target in (-4, -len(body), -(1 << 31) + 4096):
        out = bytearray(body)
        t = pos[id(tree.fields[2][1])]
        struct.pack_into("<i", out, t, t - target)
        with pytest.raises(GsdError) as e:
            decode_header(header_record(bytes(out)))
        assert e.value.code is E.MALFORMED, e.value


@pytest.mark.parametrize("field,fid", [("profile_name", 3), ("generator", 6)])
def test_header_strings_running_past_the_body(S, field, fid):
    tree = craft.header_tree(craft.HeaderFields.of(S.profile))
    body, pos = craft.fb_layout(tree)
    v = pos[id(tree.fields[fid][1])]
    for length in (len(body) - v - 4, len(body), 2**32 - 1):   # terminator outside, past, huge
        out = bytearray(body)
        struct.pack_into("<I", out, v, length)
        with pytest.raises(GsdError) as e:
            decode_header(header_record(bytes(out)))
        assert e.value.code is E.MALFORMED, (field, length)


def test_header_misaligned_and_terminators(S):
    hf = craft.HeaderFields.of(S.profile)
    tree = craft.header_tree(hf)
    body, _ = craft.fb_layout(tree, pad=1)
    h, _ = decode_header(header_record(body))                      # alignment is not checked
    assert h.profile == decode_header(S.header)[0].profile
    tree.fields[6] = ("ref", craft.FbString(b"x", terminator=1))
    with pytest.raises(GsdError) as e:
        decode_header(header_record(craft.fb_layout(tree)[0]))
    assert e.value.code is E.MALFORMED


def test_f9_verification_comes_before_the_vector_limits(S):
    """SPEC.md 4.9 F9: a blocks/sections vector over its limit and past the buffer is MALFORMED."""
    meta, payload = split_frame(S.frames[2])
    for field_id, count in ((craft.FRAME_BLOCKS, 5000), (craft.FRAME_SECTIONS, 20000)):
        out = bytearray(meta)
        struct.pack_into("<I", out, craft.frame_vector_len_at(meta, field_id), count)
        dec = S.decoder(2)
        assert decode_error(dec, frame_record(bytes(out), payload)).code is E.MALFORMED


@pytest.mark.parametrize("nb", [3, 30, 300])
def test_block_verification_python_and_numpy_paths_agree(S, nb):
    """OpBlock tables are verified one by one (few blocks) or with numpy (many): same verdicts and
    rows, and the same verdict as refmodel, under random edits of the metadata bytes."""
    ff = craft.FrameFields(seq=5, base_seq=4, blocks=[craft.BlockFields(200 + k % 50, k, k % 7, k % 3, [k, k + 1][: k % 3])
                                                      for k in range(nb)])
    tree = craft.frame_tree(ff)
    meta, _ = craft.fb_layout(tree, pad=1)
    rng = np.random.default_rng(nb)
    for trial in range(150):
        out = bytearray(meta)
        for _ in range(rng.integers(1, 4)):
            out[rng.integers(0, len(out))] = rng.integers(0, 256)
        buf = bytes(out)
        results = []
        for threshold in (1 << 30, 0):
            wire._BLOCK_NP_MIN, saved = threshold, wire._BLOCK_NP_MIN
            try:
                try:
                    results.append(("ok", [b[:4] + (tuple(b[4]),) for b in wire._read_meta(buf, Limits())[0]]))
                except GsdError as e:
                    results.append((e.code, None))
            finally:
                wire._BLOCK_NP_MIN = saved
        assert results[0] == results[1], trial
        ref_ok = _ref_verdict(buf, "Frame")
        assert (results[0][0] is not E.MALFORMED) == ref_ok, (trial, results[0])


def test_header_random_edits_agree_with_refmodel(S):
    hf = craft.HeaderFields.of(S.profile)
    body, _ = craft.fb_layout(craft.header_tree(hf), pad=1)
    rng = np.random.default_rng(7)
    for trial in range(400):
        out = bytearray(body)
        for _ in range(rng.integers(1, 3)):
            out[rng.integers(0, len(out))] = rng.integers(0, 256)
        buf = bytes(out)
        ok = _codec_verdict(decode_header, header_record(buf))
        ref = _ref_verdict(buf, "StreamHeader")
        if ref:  # an absent grid is MALFORMED too (H8), after verification
            tree_ok = refmodel.RefBuffer(buf, "StreamHeader")
            ref = (tree_ok.root, 1) in tree_ok.fields
        assert ok == ref, trial


def test_huge_blocks_vector_is_verified_in_linear_time(S):
    """2^20 block references to one table (4 MiB of metadata): verified with numpy, then over the limit."""
    import time
    ff = craft.FrameFields(seq=5, base_seq=4, blocks=[craft.BlockFields(200, 0)])
    tree = craft.frame_tree(ff)
    blocks = tree.fields[5][1]
    blocks.elems = blocks.elems * (1 << 20)
    meta, _ = craft.fb_layout(tree, pad=0)
    t0 = time.perf_counter()
    with pytest.raises(GsdError) as e:
        wire._read_meta(meta, Limits())
    assert e.value.code is E.LIMIT_EXCEEDED
    assert time.perf_counter() - t0 < 20


def test_message_mode_rejects_bytes_after_the_record(S):
    """SPEC.md 4.9 H7a/F8a: in a WebSocket message, bytes after the record are MALFORMED, after the CRC."""
    with pytest.raises(GsdError) as e:
        decode_header(S.header + b"\0", message=True)
    assert e.value.code is E.MALFORMED
    decode_header(S.header, message=True)
    assert decode_header(S.header + b"\0")[1] == len(S.header)    # a file: the next record's first byte
    bad_crc = S.header[:-1] + bytes([S.header[-1] ^ 1]) + b"\0"
    with pytest.raises(GsdError) as e:
        decode_header(bad_crc, message=True)
    assert e.value.code is E.BAD_CHECKSUM                        # the CRC comes first
    with pytest.raises(GsdError) as e:
        wire.decode_frame(S.frames[0] + b"x", S.profile, message=True)
    assert e.value.code is E.MALFORMED
    wire.decode_frame(S.frames[0], S.profile, message=True)
