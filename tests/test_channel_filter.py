"""The CHANNEL section filter (SPEC.md 4.4, format 1.3): colour components stored as differences
between the colour channels. Pipeline round trips, the spec's example, and the encoder's choice."""
from __future__ import annotations

import numpy as np
import pytest

from codec import Decoder, Encoder, ErrorCode, GsdError, Profile
from codec.attributes import Attr, Gaussians
from codec.sections import CHANNEL, DELTA, NONE, SHUFFLE, ZIGZAG, SectionDesc, _filter, read_section, unfilter
from conformance import craft


def _read(raw: bytes, filters: int, comps: int, count: int, width: int) -> np.ndarray:
    desc = SectionDesc(0, len(raw), len(raw), NONE, filters, width)
    return read_section(memoryview(raw), desc, comps, count, width)


@pytest.mark.parametrize("filters", range(16))
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint64])
@pytest.mark.parametrize("comps", [1, 3, 4, 9])
def test_every_filter_combination_round_trips(filters, dtype, comps):
    rng = np.random.default_rng(filters * 7 + comps)
    a = rng.integers(0, np.iinfo(dtype).max, size=(comps, 257), dtype=dtype, endpoint=True)
    raw = _filter(a, filters).tobytes()
    assert np.array_equal(_read(raw, filters, comps, 257, a.itemsize), a)
    out = np.empty_like(a)
    with np.errstate(over="ignore"):              # modular arithmetic, as the kernel runs it
        unfilter.py_func(np.frombuffer(raw, np.uint8), 257, a.itemsize, filters, out)
    assert np.array_equal(out, a)


def test_channel_is_a_no_op_unless_the_components_make_three_channels():
    a = np.arange(4 * 5, dtype=np.uint8).reshape(4, 5)
    assert _filter(a, CHANNEL).tobytes() == a.tobytes()
    assert _filter(a[:1], CHANNEL | ZIGZAG).tobytes() == _filter(a[:1], ZIGZAG).tobytes()
    b = np.array([[1, 2], [4, 8], [9, 9], [10, 10], [20, 20], [30, 30]], np.uint16)  # g = 2
    d = np.frombuffer(_filter(b, CHANNEL).tobytes(), np.uint16).reshape(6, 2)
    assert np.array_equal(d, [[1, 2], [4, 8], [8, 7], [6, 2], [11, 11], [20, 20]])


def test_the_spec_example():
    """SPEC.md 4.4: SH_DC codes with CHANNEL and ZIGZAG."""
    dc = np.array([[200, 10], [203, 12], [201, 12]], np.uint8)
    raw = _filter(dc, CHANNEL | ZIGZAG).tobytes()
    assert raw == bytes.fromhex("6F14 0604 0300")
    assert np.array_equal(_read(raw, CHANNEL | ZIGZAG, 3, 2, 1), dc)


@pytest.mark.parametrize("bit", [4, 5, 6, 7])
def test_filter_bits_4_to_7_are_unsupported(bit):
    raw = bytes(6)
    with pytest.raises(GsdError) as e:
        _read(raw, CHANNEL | (1 << bit), 3, 2, 1)
    assert e.value.code == ErrorCode.UNSUPPORTED_FEATURE


def _captured_like(n: int, sh_degree: int, seed: int = 0) -> Gaussians:
    """Colour channels that move together, as in captured scenes: one brightness per Gaussian plus a
    small tint per channel (SH_REST likewise, per coefficient)."""
    rng = np.random.default_rng(seed)
    k = (sh_degree + 1) ** 2 - 1
    pos = rng.normal(0, 2, (n, 3)).astype(np.float32)
    scales = rng.normal(-4, 0.5, (n, 3)).astype(np.float32)
    rot = rng.normal(0, 1, (n, 4)).astype(np.float32)
    rot /= np.linalg.norm(rot, axis=1, keepdims=True)
    opac = rng.normal(0, 2, n).astype(np.float32)
    dc = (rng.normal(0, 0.8, (n, 1)) + rng.normal(0, 0.03, (n, 3))).astype(np.float32)
    lum = rng.normal(0, 0.15, (n, 1, k))
    rest = (lum + rng.normal(0, 0.01, (n, 3, k))).reshape(n, 3 * k).astype(np.float32)
    return Gaussians(pos, scales, rot, opac, dc, rest)


def _filters(frame: bytes) -> list[int]:
    meta, _ = craft.split_frame(frame)
    return [s.filters for s in craft.parse_frame_meta(meta).sections]


@pytest.mark.parametrize("name, sh_degree", [("small", 0), ("small", 1), ("compact", 1)])
def test_the_encoder_stores_correlated_colour_as_channel_differences(name, sh_degree):
    g = _captured_like(20_000, sh_degree)
    profile = Profile.fit(name, g)
    sizes = {}
    for on in (False, True):
        enc = Encoder(profile, channel_filter=on)
        ids = enc.assign_ids(g.positions)
        key = enc.keyframe(g, ids=ids)
        rng = np.random.default_rng(1)
        rows = rng.choice(len(g), 8000, replace=False)
        recolour = {Attr.SH_DC: g.sh_dc[rows] + rng.normal(0, 0.2, (8000, 1)).astype(np.float32)}
        delta = enc.encode(update=(ids[rows], recolour))
        dec = Decoder(enc.header_bytes())
        dec.decode_frame(key)
        dec.decode_frame(delta)
        assert dec.state.digest() == enc.state.digest()
        used = [f & CHANNEL for fr in (key, delta) for f in _filters(fr)]
        assert any(used) == on, (name, sh_degree, on)
        if on:  # the recolour's residuals too
            assert any(f & CHANNEL for f in _filters(delta))
        sizes[on] = len(key) + len(delta)
    assert sizes[True] < 0.95 * sizes[False]


def test_small_moves_bits_to_scale_and_opacity_without_sh_rest():
    g = _captured_like(3000, 1)
    with_rest, without = Profile.fit("small", g).quant, Profile.fit("small", g.with_sh_degree(0)).quant
    assert (without.scale_bits, without.opacity_bits, without.dc_bits) == \
        (with_rest.scale_bits + 1, with_rest.opacity_bits + 1, with_rest.dc_bits - 1)
    assert without.rotation_bits == with_rest.rotation_bits and without.position_bits == with_rest.position_bits
    compact = Profile.fit("compact", g.with_sh_degree(0)).quant
    assert compact.dc_bits == Profile.fit("compact", g).quant.dc_bits    # only the preset that asks for it
