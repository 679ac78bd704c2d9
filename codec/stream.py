"""Stream files: a header record followed by frame records (SPEC.md 4.1)."""
from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO, Iterator

import numpy as np

from .decoder import Decoder
from .delta import Delta
from .errors import ErrorCode, GsdError
from .limits import SPEC_LIMITS, Limits
from .sections import DELTA, SHUFFLE, SectionWriter
from .wire import FrameInfo, StreamHeader, decode_frame, decode_header, frame_length


class StreamWriter:
    """Writes a header then frames to a file or binary stream."""

    def __init__(self, target: str | os.PathLike | BinaryIO, header_bytes: bytes):
        self._own = not hasattr(target, "write")
        self._f = open(target, "wb") if self._own else target
        self._f.write(header_bytes)
        self.bytes_written = len(header_bytes)
        self.frames = 0

    def write(self, frame_bytes: bytes) -> None:
        self._f.write(frame_bytes)
        self.bytes_written += len(frame_bytes)
        self.frames += 1

    def close(self) -> None:
        if self._own:
            self._f.close()
        else:
            self._f.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@dataclass
class DecodedFrame:
    index: int
    offset: int
    delta: Delta
    info: FrameInfo


def _load(source) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return source
    with open(source, "rb") as f:
        return f.read()


def split_frames(data, limits: Limits = SPEC_LIMITS) -> tuple[StreamHeader, int, list[tuple[int, int]]]:
    """Header and the (offset, length) of each frame record, checking only the framing."""
    header, pos = decode_header(data, limits)
    spans = []
    while pos < len(data):
        try:
            n = frame_length(memoryview(data)[pos:], limits)
        except GsdError as e:
            raise e.at_frame(len(spans))
        spans.append((pos, n))
        pos += n
    return header, pos, spans


def read_stream(source, limits: Limits = SPEC_LIMITS, verify_digest: bool = True) -> Iterator[tuple[Decoder, DecodedFrame]]:
    """Decode and apply every frame of a stream file (or bytes), yielding the decoder after each.

    Raises GsdError (with .frame set) at the first bad frame.
    """
    data = _load(source)
    dec = Decoder(limits=limits, verify_digest=verify_digest)
    pos = dec.set_header(data)
    index = 0
    mv = memoryview(data)
    while pos < len(data):
        d, used, info = dec.read_frame(mv[pos:], info=True)
        yield dec, DecodedFrame(index, pos, d, info)
        pos += used
        index += 1


def validate_stream(source, limits: Limits = SPEC_LIMITS) -> list[GsdError]:
    """Every problem in a stream: the first decode error, then framing errors of later records.

    After a frame fails, later frames cannot be applied (their base state is unknown),
    so only their framing and checksums are checked; each problem carries its frame index.
    """
    data = _load(source)
    problems: list[GsdError] = []
    failed_at = None
    try:
        for _ in read_stream(data, limits):
            pass
    except GsdError as e:
        problems.append(e)
        failed_at = e.frame
    if failed_at is None:
        return problems
    # Walk the remaining records for framing/CRC problems.
    try:
        _, pos = decode_header(data, limits)
    except GsdError:
        return problems
    index = 0
    mv = memoryview(data)
    while pos < len(data):
        try:
            n = frame_length(mv[pos:], limits)
        except GsdError as e:
            if index != failed_at:
                problems.append(e.at_frame(index))
            break
        (crc,) = struct.unpack_from("<I", mv, pos + n - 4)
        if index > failed_at and zlib.crc32(mv[pos: pos + n - 4]) != crc:
            problems.append(GsdError(ErrorCode.BAD_CHECKSUM, "frame CRC-32 mismatch", index))
        pos += n
        index += 1
    return problems


def id_costs(source, level: int = 1) -> dict:
    """What the UPDATE and DELETE ids of a stream's deltas (keyframes have none) cost, each block
    stored as the encoder writes it (DELTA and SHUFFLE, zstd at ``level``), two ways: as ranks among
    the ids live before the frame (format 1.2, SPEC.md 6.1; gap coded where that is smaller, 1.4) and
    as ids (format 1.1). The same deltas, whichever way the stream sent them. ``source``: a stream
    file or its bytes. Returns {"ids", "ranked_bytes", "id_bytes"}."""
    def nbytes(values) -> int:
        w = SectionWriter(level)
        w.add(values[None, :], DELTA | SHUFFLE, gaps=True)   # ids (8 bytes) are never gap coded
        return len(w.parts()[0])
    data = _load(source)
    header, end, spans = split_frames(data)
    dec, n, as_ranks, as_ids = Decoder(data[:spans[0][0]] if spans else data[:end]), 0, 0, 0
    for at, size in spans:
        d = decode_frame(data[at:at + size], header.profile)[0]
        if not d.keyframe:
            order = dec.state.order()
            blocks = [b.ranks.astype(np.int64) for b in d.ranked]
            blocks += [order.rank(ids) for ids in [b.ids for b in d.updates] + [d.delete_ids] if len(ids)]
            for r in blocks:
                n += len(r)
                as_ranks += nbytes(r.astype(np.uint32))
                as_ids += nbytes(order.select(r))
        dec.state.apply(d)   # the frame parsed once: applied (digest checked) as parsed
    return {"ids": n, "ranked_bytes": as_ranks, "id_bytes": as_ids}
