"""Frame metadata written from per-shape templates is byte for byte what the FlatBuffers builder writes."""
from __future__ import annotations

import numpy as np

from codec import wire
from codec.delta import Delta
from codec.digest import Digest
from codec.sections import SectionDesc


def _random_frame(rng):
    blocks = []
    for _ in range(int(rng.integers(0, 6))):
        kind = int(rng.choice([1, 2, 3, 4, 5, 200]))
        blocks.append((kind, int(rng.choice([0, 1, 5, 70000])), int(rng.choice([0, 1, 0x3F])), int(rng.choice([0, 3])),
                       [int(x) for x in rng.integers(0, 50, int(rng.integers(0, 4)))]))
    descs = [SectionDesc(*(int(x) for x in rng.integers(0, 1 << 30, 3)), int(rng.integers(0, 2)),
                         int(rng.integers(0, 8)), int(rng.choice([1, 2, 4, 8]))) for _ in range(int(rng.integers(0, 20)))]
    digest = None if rng.integers(0, 2) else Digest(*(int(x) for x in rng.integers(0, 1 << 32, 3)))
    d = Delta(seq=int(rng.choice([0, 1, 7, 1 << 40])), base_seq=int(rng.choice([0, 3, 1 << 33])),
              keyframe=bool(rng.integers(0, 2)), digest=digest)
    return d, blocks, descs


def test_templates_write_the_builders_bytes():
    rng = np.random.default_rng(5)
    wire._TEMPLATES.clear()
    for _ in range(3000):
        d, blocks, descs = _random_frame(rng)
        assert wire.frame_metadata(d, blocks, descs) == wire._build_metadata(d, blocks, descs)
    reused = 3000 - len(wire._TEMPLATES)
    assert reused > 1000  # most frames came from a template, not the builder


def test_template_metadata_reads_back():
    rng = np.random.default_rng(6)
    for _ in range(200):
        d, blocks, descs = _random_frame(rng)
        meta = wire.frame_metadata(d, blocks, descs)
        f = wire._root(meta, wire._FRAME_FIELDS, "Frame")
        assert f[4] == 0 if d.digest is None else wire._DIGEST.unpack_from(meta, f[4]) == (
            d.digest.count, d.digest.lane0, d.digest.lane1)


def test_keyframe_flag_read_from_the_metadata_alone():
    from codec import Encoder, Profile
    from codec.synthetic import synthetic_scene

    g = synthetic_scene(200, 1, 0)
    enc = Encoder(Profile.preset("compact", 1))
    key = enc.keyframe(g)
    delta = enc.encode(delete=enc.state.ids()[:5])
    assert wire.frame_is_keyframe(key) and not wire.frame_is_keyframe(delta)
    assert wire.frame_is_keyframe(key + b"next record") and wire.frame_is_keyframe(enc.keyframe())
    for bad in (b"", b"GSDF", key[:20], b"GSDH" + key[4:]):
        assert not wire.frame_is_keyframe(bad)
