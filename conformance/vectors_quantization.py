"""Vectors for SPEC.md 5 (quantization): every preset at every SH degree from the codec Encoder's
quantization and closed loop, custom bit widths, special floats; and codes outside 5.6's domains.
"""
from __future__ import annotations

import numpy as np

from codec import Encoder, Gaussians, Grid, Profile

from .attribute_codes import dtype_of
from .craft import HeaderFields, QuantFields
from .frame_reader import read_frame_ops
from .spec_index import S_APPLY, S_CODES, S_LOSSLESS, S_OPS, S_PRESETS, S_QDOMAIN, S_QUANT, S_SECTIONS, S_VALIDITY
from .vector_stream import G, NARROW, Stream, VectorWriter, hf_preset, hf_quant


def gen_profiles(g: VectorWriter) -> None:
    for i, name in enumerate(("lossless", "high", "compact")):
        for d in range(4):
            s = _encoder_stream(g, f"profile_{name}_sh{d}", name, d, 12, 100 + 10 * i + d)
            s.valid("profile", f"{name} profile, SH degree {d}: Encoder output (keyframe, update, add+delete, "
                               "range+cell delete)", [S_LOSSLESS if name == "lossless" else S_QUANT, S_PRESETS, S_CODES, S_APPLY])
    s = _encoder_stream(g, "profile_compact_sh3_large", "compact", 3, 3000, 7, frames=2)
    s.valid("profile", "3000-Gaussian compact SH3 keyframe and a 1000-Gaussian update from the Encoder",
            [S_QUANT, S_SECTIONS], state=False)

    # lossless special float values: -0.0, subnormals, extremes all survive bit-exactly
    s = g.stream("profile_lossless_special_floats", hf=hf_preset("lossless", 1), key_n=None)
    ids = s.fresh_ids(4)
    c = s.codes(4)
    specials = np.array([-0.0, 1e-45, -1.17549435e-38, 3.4028235e38, -3.4028235e38, 1.0, 0.0, 2.0**-149],
                        np.float32).view(np.uint32)
    for a in range(6):
        c[a][:] = specials[np.arange(c[a].size) % len(specials)].reshape(c[a].shape)
    s.frame(key=True, adds=[(ids, c)])
    s.valid("profile", "lossless profile keeps -0.0, subnormals and +-FLT_MAX bit-exactly", [S_LOSSLESS])

    cases = [
        ("profile_custom_widest", QuantFields(24, 16, -20.0, 8.0, 16, 16, 16, -8.0, 8.0, (16, 16, 16), (4.0, 3.0, 2.0)),
         ((-8.0, -8.0, -8.0), 1.0, 6, 8), "the widest bit counts (position 24, others 16: width-2 codes)"),
        ("profile_custom_narrowest", QuantFields(1, 1, -1.0, 1.0, 2, 1, 1, -1.0, 1.0, (2, 2, 2), (1.0, 1.0, 1.0)),
         G, "the narrowest bit counts (1 bit, rotation and SH_REST 2)"),
        ("profile_custom_mixed_rest", QuantFields(8, 9, -16.0, 6.0, 10, 7, 11, -4.0, 4.0, (16, 2, 9), (2.0, 1.0, 0.5)),
         G, "SH_REST bits (16, 2, 9): width 2 for all, per-degree code limits 32767, 1, 255"),
    ]
    for vid, q, grid, what in cases:
        s = g.stream(vid, hf=hf_quant(q, 3, grid), key_n=5)
        ids = s.live()[[0, 3]]
        s.frame(updates=[(ids, 0x3F, s.residuals(ids, 0x3F))])
        s.valid("profile", f"custom quantization with {what}", [S_QUANT, S_QDOMAIN, S_CODES])


def _encoder_stream(g: VectorWriter, vid: str, profile_name: str, d: int, n: int, seed: int, frames: int = 4) -> Stream:
    """Deltas made by the codec's Encoder from float Gaussians (its quantization and closed loop).

    They are serialized here with fixed section choices rather than taken as the Encoder's bytes, so
    the vectors do not change when the encoder's filter or compression heuristics are tuned or when it
    sends ids as ranks (read back against the state before each frame). Each
    frame carries the Encoder's digest, which the reference model must reproduce.
    """
    profile = Profile.preset(profile_name, d, Grid(*G))
    hf = HeaderFields.of(profile)
    enc = Encoder(profile, generator="gsd-conformance")
    s = Stream(g, vid, hf)
    rng = np.random.default_rng(seed)
    k = (d + 1) ** 2 - 1

    def gaussians(m):
        return Gaussians(rng.uniform(-6, 6, (m, 3)), rng.normal(-4, 0.5, (m, 3)), rng.normal(size=(m, 4)),
                         rng.normal(size=m), rng.normal(scale=0.6, size=(m, 3)), rng.normal(scale=0.15, size=(m, 3 * k)))

    def push(delta):
        ops = read_frame_ops(enc.encode_delta(delta), s.L, s.live())  # advances the closed loop; carries its digest
        s.frame(key=ops.keyframe, seq=ops.seq, base=ops.base_seq, digest=ops.digest, **ops.blocks())

    g0 = gaussians(n)
    ids = enc.assign_ids(g0.positions)
    push(enc.make_delta(add=(ids, g0), keyframe=True))
    if frames > 1:
        sub = np.sort(rng.choice(n, n // 3, replace=False))
        moved = g0.take(sub)
        moved = Gaussians(moved.positions + rng.normal(scale=0.3, size=moved.positions.shape), moved.scales + 0.2,
                          moved.rotations[:, [1, 0, 3, 2]], -moved.opacities, moved.sh_dc * 0.5, moved.sh_rest * -1)
        push(enc.make_delta(update=(ids[sub], moved)))
    if frames > 2:
        g1 = gaussians(3)
        push(enc.make_delta(add=(enc.assign_ids(g1.positions), g1), delete=ids[:2]))
    if frames > 3:
        live = s.live()
        cell = int(live[len(live) // 2]) >> (8 + 3)
        push(enc.make_delta(delete_ranges=[[int(live[-2]), int(live[-1])]], delete_cells={1: [cell]}))
    return s


def gen_values(g: VectorWriter) -> None:
    sec = [S_VALIDITY, S_APPLY]
    hf = hf_quant(NARROW, 3)

    def add_bad(vid, desc, edit, hf=hf):
        s = g.stream(vid, hf=hf, key_n=3)
        c = s.codes(2)
        edit(c)
        s.frame(adds=[(s.fresh_ids(2), c)], error="BAD_VALUE")
        s.invalid("value", desc, sec)

    def at(a, row, col, v):
        def e(c):
            c[a][row, col] = v
        return e
    # NARROW: scale 6 bits, rotation 7, opacity 5, dc 6, rest (5, 4, 3) -> M = 15, 7, 3
    add_bad("val_add_scale_64", "ADD scale code 64 with scale_bits 6", at(1, 2, 1, 64))
    add_bad("val_add_opacity_32", "ADD opacity code 32 with opacity_bits 5", at(3, 0, 0, 32))
    add_bad("val_add_dc_255", "ADD SH_DC code 255 with dc_bits 6", at(4, 1, 1, 255))
    add_bad("val_add_rotation_index_4", "ADD rotation largest-index 4", at(2, 0, 0, 4))
    add_bad("val_add_rotation_index_255", "ADD rotation largest-index 255", at(2, 0, 1, 255))
    add_bad("val_add_rotation_code_128", "ADD rotation small component 128 with rotation_bits 7", at(2, 3, 0, 128))
    add_bad("val_add_rest_degree1_16", "ADD SH_REST degree-1 code 16 (M = 15 for 5 bits)", at(5, 0, 0, 16))
    add_bad("val_add_rest_degree1_minus16", "ADD SH_REST degree-1 code -16", at(5, 2, 1, -16))
    add_bad("val_add_rest_degree2_8", "ADD SH_REST degree-2 code 8 (M = 7; valid for degree 1)", at(5, 4, 0, 8))
    add_bad("val_add_rest_degree3_minus4", "ADD SH_REST degree-3 code -4 (M = 3)", at(5, 14, 1, -4))
    add_bad("val_add_rest_blue_channel", "ADD SH_REST blue-channel degree-3 code 4 (component 44 of 45)",
            at(5, 44, 0, 4))
    add_bad("val_add_high_scale_4096", "ADD scale code 4096 with 12 scale bits (width 2)", at(1, 0, 0, 4096),
            hf=hf_preset("high", 1))
    cq = hf_preset("compact", 1).quant
    m1 = (1 << (cq.rest_bits[0] - 1)) - 1
    add_bad("val_add_compact_rest_over", f"compact preset: ADD SH_REST code {m1 + 1} with {cq.rest_bits[0]} rest bits "
            f"(M = {m1})", at(5, 1, 0, m1 + 1), hf=hf_preset("compact", 1))

    def upd_bad(vid, desc, a, row, target, hf=hf):
        s = g.stream(vid, hf=hf, key_n=3)
        ids = s.live()[[1]]
        new = [x.copy() for x in s.codes_of(ids)]
        new[a] = new[a].astype(np.int64)
        new[a][row, 0] = target
        mask = 1 << a
        old = s.codes_of(ids)[a]
        r = np.array([[s.L.wrap(a, int(x) - int(y))] for x, y in zip(new[a][:, 0], old[:, 0])], np.int64)
        res = s.residuals(ids, mask, new=s.codes_of(ids))
        res[a] = r.astype(dtype_of(s.L, a))
        s.frame(updates=[(ids, mask, res)], error="BAD_VALUE")
        s.invalid("value", desc, sec + [S_OPS])
    upd_bad("val_update_scale_to_64", "UPDATE residual takes a scale code to 64 (scale_bits 6)", 1, 0, 64)
    upd_bad("val_update_opacity_wraps_to_255", "UPDATE residual wraps an opacity code below 0 to 255", 3, 0, -1)
    upd_bad("val_update_rotation_index_to_4", "UPDATE residual takes rotation index to 4", 2, 0, 4)
    upd_bad("val_update_rest_degree3_to_4", "UPDATE residual takes a degree-3 SH_REST code to 4 (M = 3)", 5, 10, 4)

    lossless = hf_preset("lossless", 1)
    inf, nan, ninf = 0x7F800000, 0x7FC00000, 0xFF800000
    add_bad("val_lossless_add_nan", "lossless ADD with a NaN position", at(0, 1, 0, nan), hf=lossless)
    add_bad("val_lossless_add_inf", "lossless ADD with +Inf scale", at(1, 0, 1, inf), hf=lossless)
    add_bad("val_lossless_add_neg_inf", "lossless ADD with -Inf opacity", at(3, 0, 0, ninf), hf=lossless)
    add_bad("val_lossless_add_signalling_nan", "lossless ADD with a signalling NaN in SH_REST",
            at(5, 8, 1, 0x7F800001), hf=lossless)
    upd_bad("val_lossless_update_to_nan", "lossless UPDATE residual turns a rotation component into NaN", 2, 2,
            0x7FC00000, hf=lossless)
    upd_bad("val_lossless_update_to_inf", "lossless UPDATE residual turns an SH_DC component into -Inf", 4, 0,
            ninf, hf=lossless)
