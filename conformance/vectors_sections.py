"""Vectors for SPEC.md 4.4 (sections): every filter combination, compression choices, payload
layouts the spec allows (reordered, shared, unreferenced sections), unknown optional fields and
minor versions; and zstd data that must fail decompression (lying sizes, bombs, trailing bytes).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from . import craft
from .craft import Encoding, Section
from .spec_index import S_DIGEST, S_FRAME, S_HEADER, S_HEADER_REC, S_OPS, S_SCHEMA, S_SECTIONS, S_VERSION
from .vector_stream import VectorWriter, hf_preset


def every_section_filtered(s, f: int) -> None:
    """Frames of ``s`` whose every section has filters ``f``: a keyframe of 40, then an UPDATE of every
    third Gaussian (all attributes) and a DELETE_RANGES of two single ids."""
    e = Encoding(ids=f, ranges=f, cells=f, attr=lambda a, w, r, f=f: f)
    s.frame(key=True, adds=[(s.fresh_ids(40), s.codes(40))], enc=e)
    ids = s.live()[2::3]
    live = s.live()
    s.frame(updates=[(ids, 0x3F, s.residuals(ids, 0x3F))], ranges=[[(int(live[-1]), int(live[-1])),
            (int(live[1]), int(live[1]))]], enc=e)


def gen_encoding(g: VectorWriter) -> None:
    sec = [S_SECTIONS]
    for f in range(8):
        s = g.stream(f"enc_filters_{f}", key_n=None, hf=hf_preset("high", 1))
        every_section_filtered(s, f)
        names = "+".join(n for b, n in ((1, "DELTA"), (2, "ZIGZAG"), (4, "SHUFFLE")) if f & b) or "none"
        s.valid("encoding", f"every section with filters {f} ({names})", sec, state=False)

    s = g.stream("enc_uncompressed", key_n=None, hf=hf_preset("compact", 2))
    s.frame(key=True, adds=[(s.fresh_ids(50), s.codes(50))], enc=Encoding(compression="none"))
    s.valid("encoding", "all sections stored without compression", sec, state=False)

    s = g.stream("enc_zstd_everywhere", key_n=None)
    e = Encoding(compression="zstd")
    s.frame(key=True, adds=[(s.fresh_ids(3), s.codes(3))], enc=e)
    s.frame(deletes=[s.live()[:1]], enc=e)
    s.valid("encoding", "zstd even for tiny sections where it is larger than the raw bytes", sec)

    s = g.stream("enc_zstd_checksum_flag", key_n=None, hf=hf_preset("compact", 3))
    s.frame(key=True, adds=[(s.fresh_ids(30), s.codes(30))],
            enc=Encoding(compression="zstd", zstd_args={"write_checksum": True}))
    s.valid("encoding", "zstd frames carrying their own content checksum", sec, state=False)

    s = g.stream("enc_zstd_level_19", key_n=None, hf=hf_preset("high", 2))
    s.frame(key=True, adds=[(s.fresh_ids(30), s.codes(30))], enc=Encoding(compression="zstd", level=19))
    s.valid("encoding", "zstd frames from compression level 19 (long matches)", sec, state=False)

    s = g.stream("enc_zstd_empty_section", key_n=3)
    s.frame(deletes=[np.zeros(0, np.uint64)], adds=[(s.fresh_ids(1), s.codes(1))],
            enc=Encoding(compression="zstd", zstd_args={"write_checksum": True}))
    s.valid("encoding", "DELETE_IDS block of count 0 whose ids section (raw_size 0) is a Zstandard frame of "
                        "0 bytes with a content checksum", sec)

    s = g.stream("enc_zstd_dictionary_id_zero", key_n=3)
    c = s.codes(3)
    s.frame(adds=[(s.fresh_ids(3), c)], tweak=lambda ff, pl: _set_stored(ff, pl, 1, _hand_laid(
        ff.sections[1].filters, c[0], dict_id=0)))
    s.valid("encoding", "zstd frame with a Dictionary_ID field holding 0 (no dictionary named), a raw and an "
                        "RLE block and a content checksum", sec)

    def reverse_payload(ff, pl):
        # Same sections, stored in the payload back to front with 3 bytes of padding before each.
        parts = pl.parts
        new, off, descs = [], 0, list(ff.sections)
        for i in reversed(range(len(parts))):
            new.append(b"\xAA\xBB\xCC" + parts[i])
            descs[i] = replace(descs[i], offset=off + 3)
            off += 3 + len(parts[i])
        pl.parts, ff.sections = new, descs

    s = g.stream("enc_payload_reordered_with_gaps", key_n=None)
    s.frame(key=True, adds=[(s.fresh_ids(8), s.codes(8))], tweak=reverse_payload)
    s.valid("encoding", "sections stored in reverse order with unused bytes between them", sec)

    def shuffle_table(ff, pl):
        n = len(ff.sections)
        perm = list(reversed(range(n)))
        ff.sections = [ff.sections[perm[i]] for i in range(n)]
        inv = {old: new for new, old in enumerate(perm)}
        for b in ff.blocks:
            b.sections = [inv[k] for k in b.sections]

    s = g.stream("enc_section_table_permuted", key_n=4)
    ids = s.live()[:2]
    s.frame(adds=[(s.fresh_ids(2), s.codes(2))], updates=[(ids, 0x21, s.residuals(ids, 0x21))], tweak=shuffle_table)
    s.valid("encoding", "blocks reference sections in descending table order", sec + [S_OPS])

    s = g.stream("enc_unknown_frame_field", key_n=4)
    s.frame(adds=[(s.fresh_ids(1), s.codes(1))], extra_field=0xC0FFEE)
    s.valid("encoding", "frame metadata with a field unknown to 1.0 (a later minor's optional field) is ignored",
            [S_SCHEMA, S_VERSION])

    hf = hf_preset("compact", 1, extra_field=77)
    s = g.stream("enc_unknown_header_field", hf=hf, key_n=3)
    s.valid("encoding", "stream header with a field unknown to 1.0 is ignored", [S_SCHEMA, S_VERSION])

    hf = hf_preset("compact", 1, frame_rate=30.0)
    s = g.stream("enc_header_frame_rate", hf=hf, header=craft.header(hf, minor=1), key_n=3)
    s.add_frame(1)
    s.valid("encoding", "stream header with the informative frame_rate field (1.1) set to 30: no effect on the "
            "state", [S_SCHEMA, S_HEADER])

    for minor in (1, 255):
        hf = hf_preset("compact", 1)
        s = g.stream(f"enc_minor_version_{minor}", hf=hf, header=craft.header(hf, minor=minor), key_n=3)
        s.valid("encoding", f"header version 1.{minor}: any minor version is accepted", [S_VERSION])

    s = g.stream("enc_reserved_flag_bits", key_n=None)
    s.frame(key=True, adds=[(s.fresh_ids(3), s.codes(3))], flags=0xFFFFFFFF)
    s.frame(adds=[(s.fresh_ids(1), s.codes(1))], flags=0xFFFFFFFE)
    s.valid("encoding", "reserved frame flag bits set: ignored (bit 0 alone decides keyframe)", [S_FRAME, S_VERSION])

    hf = replace(hf_preset("compact", 1), profile_name="\u00e9t\u00e9 \u2603", generator="")
    s = g.stream("enc_informative_strings", hf=hf, key_n=2)
    s.valid("encoding", "profile_name with non-ASCII UTF-8 and an empty generator string (informative only)",
            [S_HEADER])

    # SPEC 4.4: sections MAY share bytes and be referenced by several blocks; unreferenced ones are not decoded
    s = g.stream("enc_section_shared_by_two_blocks", key_n=5)
    x = s.live()[[1, 3]]
    s.frame(deletes=[x], adds=[(x, s.codes(2))], tweak=lambda ff, pl: setattr(ff.blocks[0], "sections",
                                                                                [ff.blocks[1].sections[0]]))
    s.valid("encoding", "DELETE_IDS and ADD of the same ids reference one ids section", sec + [S_OPS])

    s = g.stream("enc_sections_share_bytes", key_n=None)
    c = s.codes(4)
    c[4][:] = c[1]
    s.frame(key=True, adds=[(s.fresh_ids(4), c)], enc=Encoding(compression="none"),
            tweak=lambda ff, pl: ff.sections.__setitem__(5, ff.sections[2]))
    s.valid("encoding", "the SH_DC and SCALE descriptors point at the same payload bytes", sec)

    s = g.stream("enc_unreferenced_section_not_decoded", key_n=3)
    s.add_frame(1, tweak=lambda ff, pl: ff.sections.append(Section(0xFFFFFF00, 64, 64, 9, 0xF8, 3)))
    s.valid("encoding", "a descriptor no block references (bad offset, compression 9, filters 0xF8: CHANNEL and "
                        "the unknown bits 4..7, width 3) is not decoded", sec)

    hf = hf_preset("compact", 1)
    s = g.stream("enc_reserved_bytes_nonzero", hf=hf, header=craft.header(hf, reserved=0xBEEF), key_n=None)
    s.add_frame(3, key=True, tweak=lambda ff, pl: setattr(ff, "sections", [
        replace(d, reserved=0xFF) for d in ff.sections]))
    s.valid("encoding", "header reserved u16 0xBEEF and Section.reserved 0xFF: readers ignore them",
            [S_HEADER_REC, S_SECTIONS, S_VERSION])

    s = g.stream("enc_digest_omitted", key_n=None)
    s.add_frame(3, key=True, digest=None)
    s.add_frame(2, digest=None)
    s.add_frame(1)
    s.valid("encoding", "frames without the optional digest, then one with it", [S_DIGEST])


def gen_compression(g: VectorWriter) -> None:
    sec = [S_SECTIONS]

    def one(vid, desc, stored_fn, n=3):
        """Replace the ADD position section (index 1, raw_size 12 n) by stored_fn(raw) marked as zstd."""
        s = g.stream(vid, key_n=3)
        c = s.codes(n)

        def t(ff, pl):
            raw, _ = craft.Payload.filtered(c[0], ff.sections[1].filters)
            _set_stored(ff, pl, 1, stored_fn(raw))
        s.frame(adds=[(s.fresh_ids(n), c)], tweak=t, error="DECOMPRESSION_FAILED", model=False)
        s.invalid("compression", desc, sec)

    def empty(vid, desc, stored):
        """A DELETE_IDS block of count 0 whose ids section (raw_size 0) holds ``stored``, marked as zstd."""
        s = g.stream(vid, key_n=3)
        s.frame(deletes=[np.zeros(0, np.uint64)], enc=Encoding(compression="zstd"),
                tweak=lambda ff, pl: _set_stored(ff, pl, 0, stored), error="DECOMPRESSION_FAILED", model=False)
        s.invalid("compression", desc, sec)

    z = craft.zstd_chunks

    def zc(raw, frames=1):
        return craft.zstd_chunks(raw, frames, write_checksum=True)

    # Corrupt frames carry a content checksum (SPEC.md 4.4), so that every zstd library reports them.
    one("zstd_reserved_block_type", "zstd frame (declaring raw_size, with a content checksum) whose block header "
        "has the reserved type 3", lambda raw: craft.zstd_set_block_type(zc(raw), 3))
    one("zstd_block_past_end", "zstd frame (with a content checksum) whose block header claims more bytes than "
        "the frame holds", lambda raw: craft.zstd_set_block_size(zc(raw), 1000))
    one("zstd_wrong_magic", "zstd section starting with a wrong magic", lambda raw: b"GSDF" + z(raw)[4:])
    one("zstd_truncated", "zstd frame with a content checksum cut short by 3 bytes", lambda raw: zc(raw)[:-3])
    one("zstd_empty", "zstd section with 0 stored bytes for 36 raw bytes", lambda raw: b"")
    one("zstd_no_content_size", "zstd frame without the Frame_Content_Size field",
        lambda raw: z(raw, write_content_size=False))
    one("zstd_declares_fewer_bytes", "zstd frame honestly declaring and holding raw_size - 1 bytes",
        lambda raw: z(raw[:-1]))
    one("zstd_declares_more_bytes", "zstd frame honestly declaring and holding raw_size + 1 bytes",
        lambda raw: z(raw + b"\x00"))
    one("zstd_content_shorter_than_declared", "zstd frame (with a content checksum) declaring raw_size whose "
        "blocks hold one byte less", lambda raw: craft.zstd_set_content_size(zc(raw[:-1]), len(raw)))
    one("zstd_content_longer_than_declared", "zstd frame (with a content checksum) declaring raw_size whose "
        "blocks hold one byte more", lambda raw: craft.zstd_set_content_size(zc(raw + b"\x00"), len(raw)))
    one("zstd_bomb_declared", "2 KB zstd frame declaring (and holding) 64 MiB for a 36-byte section",
        lambda raw: zstd_bomb())
    one("zstd_bomb_undeclared", "2 KB zstd frame (with a content checksum) declaring 36 bytes whose blocks hold "
        "64 MiB: output must stay bounded", lambda raw: craft.zstd_set_content_size(zstd_bomb(), len(raw)))
    one("zstd_two_frames", "the section split into two zstd frames (exactly one is allowed)",
        lambda raw: z(raw, 2))
    one("zstd_trailing_garbage", "a valid zstd frame followed by 8 other bytes", lambda raw: z(raw) + b"garbage!")
    one("zstd_trailing_skippable_frame", "a valid zstd frame followed by a zstd skippable frame",
        lambda raw: z(raw) + craft.zstd_skippable_frame(b"skip"))
    one("zstd_bad_content_checksum", "zstd frame whose own content checksum is wrong",
        lambda raw: _flip_last(z(raw, write_checksum=True)))
    one("zstd_corrupt_raw_block", "zstd frame of one raw block with one byte changed: the frame parses and gives "
        "raw_size bytes, its content checksum does not match them",
        lambda raw: craft.zstd_block_frame(len(raw), [("raw", _flip_at(raw, 7))], checksum_of=raw))
    one("zstd_corrupt_compressed_block", "zstd frame (with a content checksum) with one byte of its compressed "
        "block changed such that zstd decodes the blocks without error into other bytes: only the checksum "
        "reveals it", lambda raw: craft.zstd_corrupt_undetected(_compressed(zc(raw)), raw), n=200)

    # SPEC.md 4.4: skippable frames (magic 0x184D2A50..0x184D2A5F) are not Zstandard frames
    empty("zstd_skippable_frame_alone", "a section of raw_size 0 whose stored bytes are one skippable frame "
          "(magic 0x184D2A50, 4 bytes of data)", craft.zstd_skippable_frame(b"skip"))
    empty("zstd_skippable_frame_before_empty", "a section of raw_size 0: a skippable frame (magic 0x184D2A5F), "
          "then a valid Zstandard frame of 0 bytes", craft.zstd_skippable_frame(b"", 15) + _empty_frame())
    empty("zstd_skippable_frame_after_empty", "a section of raw_size 0: a valid Zstandard frame of 0 bytes, "
          "then a skippable frame", _empty_frame() + craft.zstd_skippable_frame(b"skip", 7))
    one("zstd_skippable_frame_before", "a skippable frame (magic 0x184D2A5F), then a valid zstd frame of the "
        "section's raw_size bytes", lambda raw: craft.zstd_skippable_frame(b"skip", 15) + zc(raw))

    # SPEC.md 4.4: a non-zero Dictionary_ID fails, whether or not the blocks need a dictionary
    one("zstd_dictionary_id_raw_rle_blocks", "zstd frame whose header names Dictionary_ID 1 but whose blocks "
        "(one raw, one RLE) need no dictionary; content checksum correct", lambda raw: _hand_laid_raw(raw, 1))


def _set_stored(ff, pl, i: int, data: bytes, compression: int = 1) -> None:
    """Section ``i`` now stores ``data`` with ``compression`` (zstd unless told); the sections after it move
    along."""
    old = ff.sections[i]
    pl.parts[i] = data
    ff.sections[i] = replace(old, stored_size=len(data), compression=compression)
    for j in range(i + 1, len(ff.sections)):
        ff.sections[j] = replace(ff.sections[j], offset=ff.sections[j].offset + len(data) - old.stored_size)


def _hand_laid_raw(raw: bytes, dict_id: int | None) -> bytes:
    """A hand-laid frame of ``raw``: a raw block of all but its last byte, an RLE block of that byte, a checksum."""
    return craft.zstd_block_frame(len(raw), [("raw", raw[:-1]), ("rle", raw[-1:])], dict_id=dict_id,
                                  checksum_of=raw)


def _hand_laid(filters: int, planar, dict_id: int | None) -> bytes:
    raw, _ = craft.Payload.filtered(planar, filters)
    return _hand_laid_raw(raw, dict_id)


def _empty_frame() -> bytes:
    return craft.zstd_chunks(b"", write_checksum=True)


def _compressed(frame: bytes) -> bytes:
    """``frame``, checked to start with a compressed block (Block_Type 2)."""
    pos, size = craft._zstd_fcs_span(frame)
    assert (frame[pos + size] >> 1) & 3 == 2, "expected a compressed first block"
    return frame


def _flip_at(b: bytes, i: int) -> bytes:
    return b[:i] + bytes([b[i] ^ 0x5A]) + b[i + 1:]


_BOMB = None


def zstd_bomb() -> bytes:
    global _BOMB
    if _BOMB is None:
        _BOMB = craft.zstd_chunks(bytes(64 << 20), 1, 19, write_checksum=True)
    return _BOMB


def _flip_last(b: bytes) -> bytes:
    return b[:-1] + bytes([b[-1] ^ 0x5A])
