"""Raw array sections of a frame payload: filters and zstd (SPEC.md 4.4).

Decode pipeline: decompress -> unshuffle -> unzigzag -> delta prefix-sum.
The encoder runs it backwards. Arrays are planar (C, N): component-major.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import zstandard

from .errors import ErrorCode, GsdError

DELTA, ZIGZAG, SHUFFLE = 1, 2, 4
KNOWN_FILTERS = DELTA | ZIGZAG | SHUFFLE
NONE, ZSTD = 0, 1
UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


@dataclass(frozen=True)
class SectionDesc:
    offset: int
    stored_size: int
    raw_size: int
    compression: int
    filters: int
    width: int


def _zigzag(u: np.ndarray, width: int) -> np.ndarray:
    bits = 8 * width
    s = u.view(np.dtype(f"i{width}"))
    return ((u << UINT[width](1)) ^ (s >> (bits - 1)).view(u.dtype))


def _unzigzag(z: np.ndarray, width: int) -> np.ndarray:
    one = UINT[width](1)
    return (z >> one) ^ (UINT[width](0) - (z & one))


class SectionWriter:
    """Accumulates filtered, compressed sections into one payload."""

    def __init__(self, level: int = 3, min_compress: int = 64):
        self._cctx = zstandard.ZstdCompressor(level=level) if level > 0 else None
        self._min = min_compress
        self.parts: list[bytes] = []
        self.descs: list[SectionDesc] = []
        self._offset = 0

    def add(self, planar: np.ndarray, filters: int) -> int:
        """Append a (C, N) unsigned array; returns its section index."""
        a = np.ascontiguousarray(planar)
        width = a.dtype.itemsize
        if a.dtype.kind != "u":
            a = a.view(UINT[width])
        if filters & DELTA and a.shape[-1] > 1:
            d = a.copy()
            d[..., 1:] = a[..., 1:] - a[..., :-1]
            a = d
        if filters & ZIGZAG:
            a = _zigzag(a, width)
        raw = a.tobytes() if not (filters & SHUFFLE and width > 1) else \
            np.ascontiguousarray(a.reshape(-1).view(np.uint8).reshape(-1, width).T).tobytes()
        comp = NONE
        data = raw
        if self._cctx is not None and len(raw) >= self._min:
            z = self._cctx.compress(raw)
            if len(z) < len(raw):
                comp, data = ZSTD, z
        self.descs.append(SectionDesc(self._offset, len(data), len(raw), comp, filters, width))
        self.parts.append(data)
        self._offset += len(data)
        return len(self.descs) - 1

    def payload(self) -> bytes:
        return b"".join(self.parts)


_dctx = zstandard.ZstdDecompressor()


def read_section(payload: memoryview, desc: SectionDesc, comps: int, count: int, width: int) -> np.ndarray:
    """Decode one section into a (comps, count) unsigned array. Every field is checked before use."""
    if desc.width != width:
        raise GsdError(ErrorCode.MALFORMED, f"section width {desc.width}, expected {width}")
    if desc.filters & ~KNOWN_FILTERS:
        raise GsdError(ErrorCode.UNSUPPORTED_FEATURE, f"unknown section filter bits {desc.filters:#x}")
    expected = comps * count * width
    if desc.raw_size != expected:
        raise GsdError(ErrorCode.MALFORMED, f"section raw_size {desc.raw_size}, expected {expected}")
    if desc.offset + desc.stored_size > len(payload):
        raise GsdError(ErrorCode.MALFORMED, "section extends past the payload")
    stored = payload[desc.offset: desc.offset + desc.stored_size]
    if desc.compression == NONE:
        if desc.stored_size != desc.raw_size:
            raise GsdError(ErrorCode.MALFORMED, "uncompressed section with stored_size != raw_size")
        raw = stored
    elif desc.compression == ZSTD:
        raw = _decompress(stored, expected)
    else:
        raise GsdError(ErrorCode.UNSUPPORTED_FEATURE, f"unknown compression {desc.compression}")
    if desc.filters & SHUFFLE and width > 1:
        planes = np.frombuffer(raw, np.uint8).reshape(width, -1)
        a = np.ascontiguousarray(planes.T).view(UINT[width]).reshape(comps, count)
    else:
        a = np.frombuffer(raw, UINT[width]).reshape(comps, count)
    if desc.filters & ZIGZAG:
        a = _unzigzag(a, width)
    if desc.filters & DELTA:
        a = np.cumsum(a, axis=1, dtype=UINT[width])
    return a


def _decompress(stored: memoryview, expected: int) -> bytes:
    """zstd with the output bounded to ``expected`` bytes (the zstd frame's own size field is not trusted)."""
    try:
        with _dctx.stream_reader(stored, read_across_frames=True) as reader:
            out = reader.read(expected + 1)
    except zstandard.ZstdError as e:
        raise GsdError(ErrorCode.DECOMPRESSION_FAILED, f"zstd: {e}") from None
    if len(out) != expected:
        raise GsdError(ErrorCode.DECOMPRESSION_FAILED, f"zstd gave {len(out)}+ bytes, expected {expected}")
    return out
