"""Decoder: header and frames in, scene state out. Never trusts its input (SPEC.md 9)."""
from __future__ import annotations

from .delta import Delta
from .errors import ErrorCode, GsdError
from .limits import SPEC_LIMITS, Limits
from .state import SceneState
from .wire import StreamHeader, decode_frame, decode_header


class Decoder:
    """Holds one stream's header and state; ``decode_frame`` applies a frame all-or-nothing.

    ``verify_digest=False`` skips digest checks (a trusted local file, say);
    the state is still the same.
    """

    def __init__(self, header: bytes | StreamHeader | None = None, limits: Limits = SPEC_LIMITS,
                 verify_digest: bool = True):
        self.limits = limits
        self.verify_digest = verify_digest
        self.header: StreamHeader | None = None
        self.state: SceneState | None = None
        self.frames = 0
        if header is not None:
            self.set_header(header)

    def set_header(self, header: bytes | StreamHeader, message: bool = False) -> int:
        """Install the stream header (bytes or parsed); returns the bytes consumed.

        ``message=True``: the bytes are one WebSocket message, which must hold exactly the record."""
        used = 0
        if not isinstance(header, StreamHeader):
            header, used = decode_header(header, self.limits, message=message)
        self.header = header
        self.state = SceneState(header.profile, self.limits, header.max_gaussians)
        return used

    def decode_frame(self, buf, message: bool = False) -> Delta:
        """Decode and apply the frame at the start of ``buf``; returns the Delta."""
        d, _ = self.read_frame(buf, message)
        return d

    def read_frame(self, buf, message: bool = False, info: bool = False):
        """Decode and apply one frame record, all-or-nothing; returns (Delta, bytes used) and, with
        ``info``, the frame's FrameInfo. ``message=True``: ``buf`` is one WebSocket message and bytes
        after the record are MALFORMED before anything is applied."""
        if self.state is None:
            raise GsdError(ErrorCode.MALFORMED, "frame before stream header")
        try:
            out = decode_frame(buf, self.header.profile, self.limits, info=info, message=message)
            d = out[0]
            if not self.verify_digest:
                d.digest = None
            self.state.apply(d, adopt=True)
            if d.keyframe:
                self.state.grow_ahead()  # room for the ADDs a live stream brings next, made while it waits
        except GsdError as e:
            raise e.at_frame(self.frames)
        self.frames += 1
        return out
