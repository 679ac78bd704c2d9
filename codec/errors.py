"""The one typed error of the codec and its stable codes (SPEC.md 9)."""
from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    TRUNCATED = 1             # the bytes end before the record they announce
    BAD_MAGIC = 2             # a record does not start with GSDH / GSDF
    UNSUPPORTED_VERSION = 3   # major version is not 1
    BAD_CHECKSUM = 4          # CRC-32 of a record does not match
    MALFORMED = 5             # metadata unreadable or inconsistent with itself
    UNSUPPORTED_FEATURE = 6   # unknown required feature, op kind, compression or filter
    LIMIT_EXCEEDED = 7        # a declared size or count is over a decoder limit
    DECOMPRESSION_FAILED = 8  # zstd data is corrupt or does not give raw_size bytes
    BAD_VALUE = 9             # an id, range, cell or attribute code outside its domain
    DUPLICATE_ID = 10         # one id twice among a frame's ADD/UPDATE/DELETE_IDS
    ID_EXISTS = 11            # ADD of an id that is live
    ID_MISSING = 12           # UPDATE or DELETE_IDS of an id that is not live
    SEQUENCE_GAP = 13         # base_seq is not the sequence of the current state
    DIGEST_MISMATCH = 14      # state after the frame does not hash to the frame's digest
    BAD_HEADER = 15           # stream header parameters outside their domain


class GsdError(Exception):
    """A stream that does not conform, with the spec's stable code.

    ``frame`` is the 0-based index of the frame within its stream when known
    (None for the stream header or a lone frame).
    """

    def __init__(self, code: ErrorCode, message: str, frame: int | None = None):
        self.code = ErrorCode(code)
        self.message = message
        self.frame = frame
        super().__init__(f"{self.code.name}: {message}" + (f" (frame {frame})" if frame is not None else ""))

    def at_frame(self, frame: int) -> "GsdError":
        self.frame = frame
        self.args = (f"{self.code.name}: {self.message} (frame {frame})",)
        return self

