"""zstd sections (SPEC.md 4.4): what the reference writes and what its reader refuses.

The writer sets the Content_Checksum_flag on every compressed section; the reader takes exactly one
Zstandard frame (a skippable frame is not one, also for raw_size 0), refuses a non-zero Dictionary_ID
from the frame header alone, and verifies the content checksum (libzstd does, through python-zstandard:
checked here on frames whose blocks decode without error into other bytes).
"""
from __future__ import annotations

import zlib

import numpy as np
import pytest
import zstandard

from codec import Encoder, ErrorCode, GsdError, Limits
from codec.sections import (DELTA, RETRIAL, SHUFFLE, ZIGZAG, SectionWriter, _decompress, crc32_combine, frame_end,
                            read_section)
from conformance import craft
from conformance.craft import split_frame

from conftest import make_profile, random_gaussians

RAW = bytes((i * 7) % 251 for i in range(3000))


def fails(data: bytes, n: int) -> GsdError:
    """Refused both ways a section is decompressed: into new bytes, and straight into arrays."""
    with pytest.raises(GsdError) as into:
        _decompress(memoryview(data), n, [np.empty(n // 2, np.uint8), np.empty(n - n // 2, np.uint8)])
    assert into.value.code == ErrorCode.DECOMPRESSION_FAILED
    with pytest.raises(GsdError) as e:
        _decompress(memoryview(data), n)
    assert e.value.code == ErrorCode.DECOMPRESSION_FAILED
    return e.value


def into_arrays(data: bytes, n: int) -> bytes:
    parts = [np.empty(n // 3, np.uint8), np.empty(n - n // 3, np.uint8)]
    assert _decompress(memoryview(data), n, parts) is None
    return b"".join(p.tobytes() for p in parts)


def test_frame_end_walks_the_blocks_and_the_arrays_get_the_content():
    content = bytes(np.random.default_rng(3).integers(0, 4, 700_000, dtype=np.uint8)) + bytes(300_000)
    for level, checksum in [(1, True), (19, True), (3, False)]:
        z = zstandard.ZstdCompressor(level=level, write_checksum=checksum).compress(content)
        assert frame_end(memoryview(z)) == len(z)          # several blocks (content > 128 KiB), RLE among them
        assert frame_end(memoryview(z)[:-1]) in (-1, len(z))
        assert into_arrays(z, len(content)) == content
        fails(z + b"\0", len(content))
        fails(z[:-1], len(content))
    for blocks in [[("raw", RAW)], [("rle", b"\7" * 40)], [("raw", RAW[:-1]), ("rle", RAW[-1:])]]:
        body = b"".join(d if k == "raw" else d[:1] * len(d) for k, d in blocks)
        frame = craft.zstd_block_frame(len(body), blocks, checksum_of=body)
        assert frame_end(memoryview(frame)) == len(frame)
        assert into_arrays(frame, len(body)) == body


def _has_checksum(frame: bytes) -> bool:
    return zstandard.get_frame_parameters(frame).has_checksum


def test_section_writer_sets_the_content_checksum_on_every_compressed_section():
    w = SectionWriter(level=3)
    rng = np.random.default_rng(1)
    arrays = [np.cumsum(rng.integers(0, 9, (c, n)), axis=1).astype(t) for c, n, t in
              [(1, 5000, np.uint64), (3, 2000, np.int32), (4, 700, np.uint8), (1, 3 << 20, np.uint32)]]
    for a in arrays:
        w.add(a, 1)
    payload = w.payload()
    zstd = [d for d in w.descs if d.compression == 1]
    assert len(zstd) == len(arrays)   # all compressible: the big one goes through zstd's worker threads
    for d in zstd:
        frame = payload[d.offset:d.offset + d.stored_size]
        assert _has_checksum(frame)
        assert len(_decompress(memoryview(frame), d.raw_size)) == d.raw_size


def test_encoder_frames_carry_checksums():
    rng = np.random.default_rng(2)
    g = random_gaussians(rng, 500, 2)
    enc = Encoder(make_profile("compact", 2, g.positions, cell_bits=5, slot_bits=10))
    meta, payload = split_frame(enc.keyframe(g, enc.assign_ids(g.positions)))
    secs = [s for s in craft.parse_frame_meta(meta).sections if s.compression == 1]
    assert secs
    assert all(_has_checksum(payload[s.offset:s.offset + s.stored_size]) for s in secs)


def test_content_checksum_is_verified():
    ok = craft.zstd_block_frame(len(RAW), [("raw", RAW)], checksum_of=RAW)
    assert _decompress(memoryview(ok), len(RAW)) == RAW
    # the blocks decode without error; only the checksum says the content is not what was written
    fails(craft.zstd_block_frame(len(RAW), [("raw", RAW)], checksum_of=RAW[:-1] + b"\0"), len(RAW))
    z = zstandard.ZstdCompressor(level=3, write_checksum=True).compress(RAW)
    bad = craft.zstd_corrupt_undetected(z, RAW)
    out = zstandard.ZstdDecompressor().decompress(craft.zstd_strip_checksum(bad), max_output_size=len(RAW))
    assert len(out) == len(RAW) and out != RAW      # without its checksum the corruption goes unnoticed
    fails(bad, len(RAW))


def test_frames_without_checksum_stay_valid():
    z = zstandard.ZstdCompressor(level=3, write_checksum=False).compress(RAW)
    assert not _has_checksum(z)
    assert _decompress(memoryview(z), len(RAW)) == RAW


@pytest.mark.parametrize("nibble", [0, 7, 15])
def test_skippable_frames_are_not_zstandard_frames(nibble):
    empty = zstandard.ZstdCompressor(write_checksum=True).compress(b"")
    assert _decompress(memoryview(empty), 0) == b""
    skip = craft.zstd_skippable_frame(b"skip", nibble)
    assert "Zstandard frame" in str(fails(skip, 0))                   # raw_size 0: still refused
    fails(craft.zstd_skippable_frame(b"", nibble), 0)
    fails(skip + empty, 0)
    fails(empty + skip, 0)
    z = zstandard.ZstdCompressor().compress(RAW)
    fails(skip + z, len(RAW))
    fails(z + skip, len(RAW))


@pytest.mark.parametrize("blocks", [[("raw", RAW)], [("rle", b"\7" * 40)], [("raw", RAW[:-1]), ("rle", RAW[-1:])]])
def test_dictionary_id_is_refused_from_the_header(blocks):
    content = b"".join(d if k == "raw" else d[:1] * len(d) for k, d in blocks)
    zero = craft.zstd_block_frame(len(content), blocks, dict_id=0, checksum_of=content)
    assert _decompress(memoryview(zero), len(content)) == content      # field present, 0: no dictionary named
    for did in (1, 255):
        e = fails(craft.zstd_block_frame(len(content), blocks, dict_id=did, checksum_of=content), len(content))
        assert "dictionary" in str(e)


def test_limits_may_only_be_lowered():
    assert Limits(max_blocks=0).max_blocks == 0
    assert Limits(max_blocks=4096) == Limits()
    for name, value in [("max_blocks", 4097), ("max_frame_raw_bytes", 2**32 + 1), ("max_gaussians", -1)]:
        with pytest.raises(ValueError):
            Limits(**{name: value})
    assert Limits.lowered(max_blocks=10**9, max_sections=7) == Limits(max_sections=7)
    with pytest.raises(TypeError):
        Limits.lowered(max_widgets=1)


@pytest.mark.parametrize("la,lb", [(0, 0), (0, 7), (7, 0), (1, 1), (100, 3000), (12345, 1 << 20)])
def test_crc32_combine_is_the_crc_of_the_concatenation(la, lb):
    """Section workers checksum their own output; the record's CRC-32 is combined from those."""
    rng = np.random.default_rng(la * 7 + lb)
    a, b = rng.bytes(la), rng.bytes(lb)
    assert crc32_combine(zlib.crc32(a), zlib.crc32(b), lb) == zlib.crc32(a + b)


def test_a_large_frames_crc_joins_worker_crcs_and_its_own():
    """A frame built on the section workers takes the CRC of each part of COMBINE_MIN_BYTES or more from
    its worker and checksums the smaller parts itself: the record's CRC-32 is that of its bytes."""
    from codec.sections import COMBINE_MIN_BYTES, PARALLEL_MIN_BYTES
    from codec.wire import FRAME_MAGIC
    rng = np.random.default_rng(11)
    g = random_gaussians(rng, 40_000, 3, specials=False)
    g.sh_rest[:] = rng.normal(0, 0.3, g.sh_rest.shape)      # noise: SH sections that stay large
    enc = Encoder(make_profile("high", 3, g.positions))
    sizes = []
    orig = SectionWriter.parts

    def parts(self):
        out = orig(self)
        sizes.append((sum(len(x) for x in out), [len(x) for x in out], self.crcs))
        return out
    SectionWriter.parts = parts
    try:
        frame = enc.keyframe(g)
    finally:
        SectionWriter.parts = orig
    total, lens, crcs = sizes[-1]
    assert crcs is not None and total >= PARALLEL_MIN_BYTES // 4
    assert any(n >= COMBINE_MIN_BYTES for n in lens) and any(n < COMBINE_MIN_BYTES for n in lens)
    assert [c is not None for c in crcs] == [n >= COMBINE_MIN_BYTES for n in lens]
    assert frame[:4] == FRAME_MAGIC
    assert zlib.crc32(frame[:-4]) == int.from_bytes(frame[-4:], "little")


def test_filter_trial_winner_is_reused_for_a_role_then_trialled_again(monkeypatch):
    """A stream's sections of one role are trialled on the first frame and every RETRIAL + 1 frames
    after; between trials the writer reuses the winner (the frames still decode to the same codes)."""
    trials = []
    choose = SectionWriter._choose

    def counted(self, planar, candidates):
        trials.append(planar.shape)
        return choose(self, planar, candidates)
    monkeypatch.setattr(SectionWriter, "_choose", counted)
    choices: dict = {}
    rng = np.random.default_rng(5)
    for frame in range(2 * (RETRIAL + 1)):
        a = np.cumsum(rng.integers(-3, 4, (3, 8000)), axis=1).astype(np.int32)
        w = SectionWriter(level=1, choices=choices)
        w.add(a, (ZIGZAG | SHUFFLE, DELTA | ZIGZAG | SHUFFLE), role="positions")
        payload = w.payload()
        d = w.descs[0]
        got = read_section(memoryview(payload), d, 3, 8000, 4)
        assert np.array_equal(got.view(np.int32), a)
        assert len(trials) == 1 + frame // (RETRIAL + 1)


@pytest.mark.parametrize("filters", range(16))
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.uint64])
@pytest.mark.parametrize("shape", [(1, 1), (3, 17), (45, 300), (2, 5000)])
def test_section_filter_matches_the_spec_pipeline_compiled_and_as_python(filters, dtype, shape):
    """The encoder's filter (a compiled loop per step) against conformance/craft's numpy rendering of
    SPEC.md 4.4, and its Python original against both."""
    from codec.sections import filter_bytes
    from conformance.craft import Payload

    rng = np.random.default_rng(filters + 8 * shape[1])
    a = rng.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype, endpoint=True)
    want, width = Payload.filtered(a, filters)
    out = np.empty(a.size * width, np.uint8)
    filter_bytes(a, width, filters, out)
    assert out.tobytes() == want
    if a.size <= 1000:
        out[:] = 0
        with np.errstate(over="ignore"):           # modular arithmetic, as the kernel runs it
            filter_bytes.py_func(a, width, filters, out)
        assert out.tobytes() == want
