"""Vectors for SPEC.md 4.1-4.3 and 4.8 (records, their framing and CRC-32), with the prefix
check order of 4.9: truncation at every part of a record, wrong magics, impossible lengths,
checksums off by one bit.
"""
from __future__ import annotations

import struct
from dataclasses import replace

from . import craft
from .spec_index import S_CRC, S_LIMITS, S_ORDER, S_RECORDS, S_VERSION
from .vector_stream import Stream, VectorWriter, flip, hf_preset


def gen_framing(g: VectorWriter) -> None:
    sec = [S_RECORDS, S_ORDER]
    hdr = craft.header(hf_preset("compact", 1))
    for vid, data, desc in [
        ("trunc_empty_file", b"", "zero-byte file"),
        ("trunc_header_magic", hdr[:2], "file ends inside the header magic"),
        ("trunc_header_prefix", hdr[:9], "file ends inside the 12-byte header prefix"),
        ("trunc_header_body", hdr[:40], "file ends inside the header body"),
        ("trunc_header_crc", hdr[:-2], "file ends inside the header CRC"),
    ]:
        g.header_invalid(vid, "framing", desc, sec, data, "TRUNCATED")

    def trunc(vid, cut, desc, at=1):
        s = g.stream(vid, key_n=3)
        for _ in range(at - 1):
            s.add_frame(1)
        tmp = Stream(g, vid + "/tmp")
        tmp.model = s._copy_model()
        rec = tmp.add_frame(2)
        s.raw(rec[:cut(rec)], error="TRUNCATED")
        s.invalid("framing", desc, sec)
    trunc("trunc_frame_magic", lambda r: 2, "stream ends 2 bytes into a frame magic")
    trunc("trunc_frame_prefix", lambda r: 10, "stream ends inside a frame prefix")
    trunc("trunc_frame_meta", lambda r: 20, "stream ends inside a frame's metadata")
    trunc("trunc_frame_payload", lambda r: len(r) - 12, "stream ends inside a frame's payload")
    trunc("trunc_frame_crc", lambda r: len(r) - 1, "stream ends inside a frame's CRC")
    trunc("trunc_frame_later", lambda r: len(r) // 2, "fourth frame cut in half", at=3)

    s = g.stream("trunc_first_frame", key_n=None)
    tmp = Stream(g, "tmp")
    rec = tmp.add_frame(2, key=True)
    s.raw(rec[:-5], error="TRUNCATED")
    s.invalid("framing", "first frame cut short", sec)

    for vid, magic, desc in [("magic_header_bad", b"GSDX", "header magic GSDX"),
                             ("magic_header_lowercase", b"gsdh", "header magic gsdh"),
                             ("magic_header_is_frame_magic", b"GSDF", "stream starts with a frame magic")]:
        g.header_invalid(vid, "framing", desc, sec, magic + hdr[4:], "BAD_MAGIC")

    s = g.stream("magic_frame_bad", key_n=3)
    s.add_frame(1, record={"magic": b"GSDG"}, error="BAD_MAGIC", model=False)
    s.invalid("framing", "second frame's magic is GSDG", sec)

    s = g.stream("magic_frame_is_header", key_n=3)
    s.raw(hdr, error="BAD_MAGIC")
    s.invalid("framing", "a second stream header where a frame must be", sec)

    s = g.stream("magic_trailing_garbage", key_n=3)
    s.add_frame(1)
    s.raw(b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", error="BAD_MAGIC")
    s.invalid("framing", "16 zero bytes after the last frame", sec)

    s = g.stream("frame_len_below_minimum", key_n=3)
    s.raw(craft.frame_prefix(15, 0) + bytes(3), error="MALFORMED")
    s.invalid("framing", "frame_len 15 (< 16, the smallest record)", sec)

    s = g.stream("frame_len_zero", key_n=3)
    s.raw(craft.frame_prefix(0, 0) + bytes(4), error="MALFORMED")
    s.invalid("framing", "frame_len 0", sec)

    s = g.stream("frame_meta_len_too_big", key_n=3)
    s.add_frame(1, post=lambda r: craft.frame_record(*craft.split_frame(r), meta_len=len(r) - 15),
                error="MALFORMED", model=False)
    s.invalid("framing", "meta_len = frame_len - 15 (one past the room between prefix and CRC)", sec)

    # check order fixed by the spec
    s = g.stream("order_frame_truncated_before_meta_len", key_n=3)
    s.raw(craft.frame_prefix(400, 999) + bytes(30), error="TRUNCATED")
    s.invalid("framing", "frame_len 400 with 42 bytes present and a bad meta_len: TRUNCATED comes first", sec)

    s = g.stream("order_frame_limit_before_meta_len", key_n=3, limits={"max_frame_bytes": 1000})
    s.raw(craft.frame_prefix(2000, 5000) + bytes(100), error="LIMIT_EXCEEDED")
    s.invalid("framing", "frame_len over max_frame_bytes and a bad meta_len: LIMIT_EXCEEDED comes first",
              sec + [S_LIMITS])

    body = craft.header_body(hf_preset("compact", 1))
    g.header_invalid("order_header_version_before_checksum", "framing",
                     "major version 2 and a wrong CRC: UNSUPPORTED_VERSION comes first", sec + [S_VERSION],
                     craft.header_record(body, major=2, crc=0), "UNSUPPORTED_VERSION")
    g.header_invalid("order_header_truncated_before_checksum", "framing",
                     "header cut inside its body (so no CRC to check): TRUNCATED", sec,
                     craft.header_record(body)[:-6], "TRUNCATED")
    g.header_invalid("order_header_feature_before_params", "framing",
                     "unknown required feature and sh_degree 4: UNSUPPORTED_FEATURE comes first", sec + [S_VERSION],
                     craft.header(replace(hf_preset("compact", 1), required_features=2, sh_degree=4)),
                     "UNSUPPORTED_FEATURE")


def gen_checksum(g: VectorWriter) -> None:
    sec = [S_CRC, S_ORDER]
    hf = hf_preset("compact", 1)
    body = craft.header_body(hf)
    good = craft.header_record(body)
    crc = struct.unpack_from("<I", good, len(good) - 4)[0]
    g.header_invalid("crc_header_value", "checksum", "header CRC off by one", sec,
                     craft.header_record(body, crc=(crc + 1) & 0xFFFFFFFF), "BAD_CHECKSUM")
    bad = bytearray(good)
    bad[12 + len(body) // 2] ^= 0x10
    g.header_invalid("crc_header_body_bit", "checksum", "one bit flipped in the header body", sec, bytes(bad),
                     "BAD_CHECKSUM")
    bad = bytearray(good)
    bad[5] ^= 0x01
    g.header_invalid("crc_header_minor_version_bit", "checksum",
                     "minor version byte changed after the CRC was computed", sec, bytes(bad), "BAD_CHECKSUM")

    cases = [
        ("crc_frame_value_first", 0, lambda r: len(r) - 4, "first frame's CRC field corrupted"),
        ("crc_frame_meta_bit", 1, lambda r: 20, "a bit flipped in the second frame's metadata"),
        ("crc_frame_payload_bit", 1, lambda r: len(r) - 10, "a bit flipped in the second frame's payload"),
        ("crc_frame_meta_len_bit", 1, lambda r: 8, "meta_len changed by one after the CRC was computed"),
        ("crc_frame_last_crc_bit", 3, lambda r: len(r) - 1, "the top bit of the fourth frame's CRC flipped"),
    ]
    for vid, at, off, desc in cases:
        s = g.stream(vid, key_n=None if at == 0 else 3)
        for _ in range(max(0, at - 1)):
            s.add_frame(1)
        s.add_frame(2, key=at == 0, post=flip(off, 7 if vid.endswith("crc_bit") else 0), error="BAD_CHECKSUM",
                    model=False)
        s.invalid("checksum", desc, sec)

    s = g.stream("crc_frame_zeroed", key_n=3)
    s.add_frame(1, record={"crc": 0}, error="BAD_CHECKSUM", model=False)
    s.invalid("checksum", "frame CRC field zero", sec)

    s = g.stream("order_frame_checksum_before_meta", key_n=3)
    s.raw(craft.frame_record(b"\xFF" * 24, b"", crc=0x12345678), error="BAD_CHECKSUM")
    s.invalid("checksum", "unparseable metadata and a wrong CRC: BAD_CHECKSUM comes first", sec)

    s = g.stream("crc_frame_mid_stream", key_n=3)
    for _ in range(3):
        s.add_frame(1)
    s.add_frame(1, post=flip(lambda r: 30, 3), error="BAD_CHECKSUM", model=False)
    s.invalid("checksum", "fifth frame corrupted after four good ones", sec)
