"""GSD: a causal delta stream for 3D Gaussian Splatting scenes -- the Python reference codec.

Five lines for a pipeline::

    from codec import Encoder, Decoder, Profile
    enc = Encoder(Profile.fit("compact", g))  # preset bit depths; grid and ranges fitted to g
    frames = [enc.header_bytes(), enc.keyframe(g)]
    dec = Decoder(frames[0]); dec.decode_frame(frames[1])
    assert dec.state.digest() == enc.state.digest()
"""
from .attributes import ALL_MASK, ATTRS, SH_C0, Attr, Gaussians, full_mask
from .compose import compose
from .decoder import Decoder
from .delta import Delta
from .digest import Digest
from .encoder import Encoder
from .errors import ErrorCode, GsdError
from .limits import SPEC_LIMITS, Limits
from .profile import DEFAULT_PROFILE, PRESETS, STREAM_PROFILE, Profile, Quantization
from .spatial import Grid
from .state import SceneState
from .stream import StreamWriter, read_stream, validate_stream
from . import wire
from .wire import StreamHeader, decode_frame, decode_header, encode_header

__version__ = "1.1.0"
FORMAT_VERSION = "%d.%d" % wire.VERSION


def apply(state: SceneState, delta: Delta) -> None:
    """Apply a delta to a state, all-or-nothing (SceneState.apply)."""
    state.apply(delta)


__all__ = [
    "ALL_MASK", "ATTRS", "SH_C0", "Attr", "Gaussians", "full_mask", "compose", "Decoder", "Delta", "Digest",
    "Encoder", "ErrorCode", "GsdError", "SPEC_LIMITS", "Limits", "DEFAULT_PROFILE", "STREAM_PROFILE", "PRESETS", "Profile",
    "Quantization", "Grid", "SceneState", "StreamWriter", "read_stream", "validate_stream", "StreamHeader",
    "decode_frame", "decode_header", "encode_header", "apply",
]
