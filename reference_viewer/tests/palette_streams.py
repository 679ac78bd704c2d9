"""Writes the SH palette streams (SPEC.md 5.9) that the viewer decoder's node tests read
(reference_viewer/tests/palette.test.mjs), into reference_viewer/tests/data/palette/:

- valid streams from the Python codec's Encoder (keyframes, moves, SH_REST updates, adds that earn
  new entries, deletes, PALETTE-only frames that change or clear entries live Gaussians use, a
  resync keyframe of the state), at SH degrees 1 and 3, with 1-byte and 2-byte entry codes;
- invalid streams, one defect each, written with conformance/craft.py: header feature bits and
  sh_palette domains, PALETTE blocks in a stream without a palette, the 6.2 index rules, entry and
  index code validity, section counts, a digest without the palette records; UPDATE_RANKED blocks
  (1.2) of palette indices, which follow UPDATE's palette rules.

``cases.json`` lists every stream with its expected protocol lines (conformance/README.md), which
are the Python reference decoder's and, for invalid streams, are checked here against the error the
stream was written to produce.

    .venv/bin/python reference_viewer/tests/palette_streams.py
"""
from __future__ import annotations

import dataclasses
import io
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from codec import Encoder, Grid, Limits, Profile  # noqa: E402
from codec.attributes import Attr  # noqa: E402
from codec.delta import Delta, PaletteSet  # noqa: E402
from codec.profile import Quantization  # noqa: E402
from codec.synthetic import synthetic_scene  # noqa: E402
from conformance import craft  # noqa: E402
from conformance.testee_python import decode  # noqa: E402

OUT = Path(__file__).resolve().parent / "data" / "palette"
U64 = np.uint64


def reference_lines(data: bytes, limits: dict | None = None) -> list[str]:
    buf = io.StringIO()
    decode(data, Limits.lowered(**(limits or {})), buf)
    return buf.getvalue().split("\n")[:-1]


def profile(d: int, palette: int, rest_bits=(6, 6, 6)) -> Profile:
    q = dataclasses.replace(Profile.preset("small", d).quant, palette=palette, rest_bits=rest_bits)
    return Profile(d, Grid.fit(synthetic_scene(4000, d, 0, 6.0).positions), q, "small")


def palette_frame(enc: Encoder, index, codes) -> bytes:
    """A frame that only sets palette entries (index ascending; codes (3K, n))."""
    st = enc.state
    d = Delta.empty_like(enc.profile, seq=st.seq + 1, base_seq=st.seq)
    d.palette = PaletteSet(np.asarray(index, np.uint16), np.ascontiguousarray(codes, enc.profile.rest_dtype))
    return enc.encode_delta(d)


def scene_stream(d: int, n: int, palette: int, rest_bits, seed: int) -> bytes:
    """A palette scene and its edits: every kind of frame a palette stream has."""
    enc = Encoder(profile(d, palette, rest_bits), gaussians_per_entry=6)
    g = synthetic_scene(n, d, seed, 6.0)
    out = enc.header_bytes() + enc.keyframe(g)
    rng = np.random.default_rng(seed)
    ids, cur = enc.state.to_gaussians()
    # a move of 10% (POSITION only), then new SH for 10% (new indices, some new entries)
    pick = np.sort(rng.choice(len(ids), len(ids) // 10, replace=False))
    out += enc.encode(update=(ids[pick], {Attr.POSITION: cur.positions[pick] + np.float32(0.05)}))
    pick = np.sort(rng.choice(len(ids), len(ids) // 10, replace=False))
    far = (rng.standard_normal((len(pick), 3 * ((d + 1) ** 2 - 1))) * 0.8).astype(np.float32)
    out += enc.encode(update=(ids[pick], {Attr.SH_REST: far}))
    # adds with SH unlike any entry (new entries), and deletes
    add = synthetic_scene(n // 8, d, seed + 1, 6.0)
    add.sh_rest = (rng.standard_normal(add.sh_rest.shape) * 0.9).astype(np.float32)
    dele = ids[np.sort(rng.choice(len(ids), n // 20, replace=False))]
    out += enc.encode(add=(enc.assign_ids(add.positions), add), delete=dele)
    # PALETTE only: change two entries live Gaussians use, clear one, set one nobody uses
    used = np.unique(enc.state.codes[Attr.SH_REST][0, enc.state.index.sorted_items()[1]])
    lim = enc.profile.rest_limits().astype(np.int64)
    chosen = np.sort(np.r_[used[:2], used[-1]])
    codes = enc.state.palette[:, chosen].astype(np.int64)
    codes[:, 0] = -codes[:, 0]
    codes[:, 1] = np.clip(codes[:, 1] + 3, -lim, lim)
    codes[:, 2] = 0
    free = np.setdiff1d(np.arange(palette), used)
    index = np.r_[chosen, free[-1]]
    extra = rng.integers(-1, 2, len(lim)) * lim
    order = np.argsort(index)
    out += palette_frame(enc, index[order], np.c_[codes, extra][:, order])
    # the state as a keyframe (a resync), then one more move
    out += enc.keyframe()
    ids, cur = enc.state.to_gaussians()
    pick = np.arange(0, len(ids), 7)
    out += enc.encode(update=(ids[pick], {Attr.POSITION: cur.positions[pick] - np.float32(0.03)}))
    return out


def crafted(d: int = 1, palette: int = 40) -> tuple[Encoder, bytes, dict]:
    """A degree-d palette stream of 24 Gaussians (header, keyframe with digest) to append defects to,
    with arrays for crafted blocks."""
    enc = Encoder(profile(d, palette, (5, 5, 5)), gaussians_per_entry=4)
    g = synthetic_scene(24, d, 3, 6.0)
    base = enc.header_bytes() + enc.keyframe(g)
    ids, codes = enc.state.sorted_codes()
    p = enc.profile
    k3 = 3 * ((d + 1) ** 2 - 1)
    a = {
        "ids": ids, "codes": [codes[x] for x in Attr], "new": [c[:, :2].copy() for c in (codes[x] for x in Attr)],
        "free_ids": np.array([ids.max() + U64(1), ids.max() + U64(2)], U64),
        "entries": np.zeros((k3, 2), p.rest_dtype), "lim": p.rest_limits().astype(np.int64),
    }
    a["entries"][0, :] = 1
    return enc, base, a


def invalid_streams() -> list[tuple[str, bytes, str, dict]]:
    """(name, bytes, expected error, limits): one defect each."""
    out = []
    H = craft.HeaderFields
    enc, base, a = crafted()
    hf = H.of(enc.profile)
    q = hf.quant
    for name, h, err in [
        ("hdr_bit0_without_palette", dataclasses.replace(hf, quant=dataclasses.replace(q, sh_palette=0)), "BAD_HEADER"),
        ("hdr_palette_without_bit0", dataclasses.replace(hf, required_features=0), "BAD_HEADER"),
        ("hdr_bit1", dataclasses.replace(hf, required_features=3), "UNSUPPORTED_FEATURE"),
        ("hdr_bit63_no_palette", dataclasses.replace(hf, required_features=1 << 63,
                                                       quant=dataclasses.replace(q, sh_palette=0)), "UNSUPPORTED_FEATURE"),
        ("hdr_palette_65537", dataclasses.replace(hf, quant=dataclasses.replace(q, sh_palette=65537)), "BAD_HEADER"),
        ("hdr_palette_deg0", dataclasses.replace(hf, sh_degree=0, quant=dataclasses.replace(q, rest_bits=(), rest_range=())),
         "BAD_HEADER"),
        ("hdr_lossless_bit0", dataclasses.replace(hf, quant=None), "BAD_HEADER"),
    ]:
        out.append((name, craft.header(h, minor=1), err, {}))
    out.append(("hdr_palette_65536_ok", craft.header(dataclasses.replace(hf, quant=dataclasses.replace(q, sh_palette=65536)), minor=1),
                None, {}))

    def frame(**ops):
        return craft.ops_frame(1, 2, 1, palette=True, **ops)

    e2, ids, codes, new, lim = a["entries"], a["ids"], a["codes"], a["new"], a["lim"]
    fresh = a["free_ids"]
    bad_entry = e2.copy()
    bad_entry[4, 1] = lim[4] + 1
    neg_entry = e2.copy()
    neg_entry[2, 0] = -lim[2] - 1
    big_index = [c.copy() for c in new]
    big_index[5][0, 1] = 40
    upd_res = [np.zeros_like(c[:, :1]) for c in codes]
    # UPDATE of the first Gaussian's index to 40 (the palette has 40 entries): residual 40 - old
    upd_res[5][0, 0] = (40 - int(codes[5][0, 0])) % 65536
    ok_res = [np.zeros_like(c[:, :1]) for c in codes]
    ok_res[5][0, 0] = (39 - int(codes[5][0, 0])) % 65536
    for name, f, err in [
        ("pal_ok", frame(palettes=[([3, 9], e2)]), None),
        ("pal_equal_indices", frame(palettes=[([3, 3], e2)]), "DUPLICATE_ID"),
        ("pal_descending", frame(palettes=[([9, 3], e2)]), "BAD_VALUE"),
        ("pal_index_outside", frame(palettes=[([3, 40], e2)]), "BAD_VALUE"),
        ("pal_index_max_ok", frame(palettes=[([0, 39], e2)]), None),
        ("pal_two_blocks", frame(palettes=[([3, 9], e2), ([1, 9], e2)]), "DUPLICATE_ID"),
        ("pal_two_blocks_ok", frame(palettes=[([3, 9], e2), ([1, 10], e2)]), None),
        ("pal_entry_code_high", frame(palettes=[([3, 9], bad_entry)]), "BAD_VALUE"),
        ("pal_entry_code_low", frame(palettes=[([3, 9], neg_entry)]), "BAD_VALUE"),
        ("add_index_outside", frame(adds=[(fresh, big_index)]), "BAD_VALUE"),
        ("add_with_entries_ok", frame(palettes=[([3, 9], e2)], adds=[(fresh, new)]), None),
        ("upd_index_outside", frame(updates=[(ids[:1], 0x20, upd_res)]), "BAD_VALUE"),
        ("upd_index_ok", frame(updates=[(ids[:1], 0x20, ok_res)]), None),
        # a good PALETTE block, then an ADD that fails: the palette must stay as it was
        ("pal_then_add_fails", frame(palettes=[([3, 9], e2)], adds=[(fresh, big_index)]), "BAD_VALUE"),
        ("pal_then_upd_missing", frame(palettes=[([3, 9], e2)], updates=[(fresh[:1], 0x20, ok_res)]), "ID_MISSING"),
        # ranked (1.2): rank 0 is the first id, whose index the residuals above change; 24 Gaussians live
        ("upd_ranked_index_ok", frame(palettes=[([3, 9], e2)], ranked_updates=[([0], 0x20, ok_res)]), None),
        ("upd_ranked_index_outside", frame(ranked_updates=[([0], 0x20, upd_res)]), "BAD_VALUE"),
        ("upd_ranked_rank_missing", frame(ranked_updates=[([24], 0x20, ok_res)]), "ID_MISSING"),
        ("upd_ranked_and_upd", frame(updates=[(ids[:1], 0x20, ok_res)], ranked_updates=[([0], 0x20, ok_res)]), "DUPLICATE_ID"),
    ]:
        out.append((name, base + f, err, {}))
    # section counts and kinds
    blocks, pl = craft.op_blocks(1, palettes=[([3, 9], e2)], palette=True)
    two = dataclasses.replace(blocks[0], sections=blocks[0].sections + [blocks[0].sections[1]])
    f = craft.frame_record(craft.frame_meta(craft.FrameFields(2, 1, 0, 0, None, [two], pl.descs)), pl.bytes())
    out.append(("pal_three_sections", base + f, "MALFORMED", {}))
    k10 = dataclasses.replace(blocks[0], kind=10)   # (8 and 9 are the ranked kinds of 1.2)
    f = craft.frame_record(craft.frame_meta(craft.FrameFields(2, 1, 0, 0, None, [k10], pl.descs)), pl.bytes())
    out.append(("kind_10", base + f, "UNSUPPORTED_FEATURE", {}))
    # an ADD with the d band sections of scalar SH_REST (1 + 5 + d = 7 at d = 1: the palette's count too)
    # at degree 3: 1 + 5 + 3 sections where a palette stream wants 1 + 5 + 1
    enc3, base3, a3 = crafted(3, 40)
    scal = [c.copy() for c in a3["new"]]
    scal[5] = np.zeros((45, 2), np.int8)
    blocks, pl = craft.op_blocks(3, adds=[(a3["free_ids"], scal)], palette=False)
    f = craft.frame_record(craft.frame_meta(craft.FrameFields(2, 1, 0, 0, None, blocks, pl.descs)), pl.bytes())
    out.append(("add_scalar_bands", base3 + f, "MALFORMED", {}))
    blocks, pl = craft.op_blocks(3, palettes=[([5], np.zeros((45, 1), np.int8))], palette=True)
    f = craft.frame_record(craft.frame_meta(craft.FrameFields(2, 1, 0, 0, None, blocks, pl.descs)), pl.bytes())
    out.append(("pal_deg3_ok", base3 + f, None, {}))
    # PALETTE in a stream without a palette (compact: scalar SH_REST)
    encs = Encoder(Profile.preset("compact", 1, grid=enc.profile.grid))
    bases = encs.header_bytes() + encs.keyframe(synthetic_scene(24, 1, 3, 6.0))
    blocks, pl = craft.op_blocks(1, palettes=[([3, 9], np.zeros((9, 2), np.int8))], palette=True)
    f = craft.frame_record(craft.frame_meta(craft.FrameFields(2, 1, 0, 0, None, blocks, pl.descs)), pl.bytes())
    out.append(("pal_in_scalar_stream", bases + f, "MALFORMED", {}))
    # PALETTE counts toward max_ids_per_frame (9.1): the keyframe's 24 ADDs and its entries
    key_meta, _ = craft.split_frame(base[len(enc.header_bytes()):])
    entries = sum(b.count for b in craft.parse_frame_meta(key_meta).blocks if b.kind == craft.PALETTE)
    out.append(("pal_ids_limit", base, "LIMIT_EXCEEDED", {"max_ids_per_frame": 24 + entries - 1}))
    out.append(("pal_ids_limit_ok", base, None, {"max_ids_per_frame": 24 + entries}))
    return out, (enc, base, a)


def digest_streams(enc: Encoder, base: bytes, a: dict) -> list[tuple[str, bytes, str | None, dict]]:
    """Frames whose digests must count the palette records: the right one passes, one without them fails."""
    out = []
    e2 = a["entries"]
    d = Delta.empty_like(enc.profile, seq=2, base_seq=1)
    d.palette = PaletteSet(np.array([3, 9], np.uint16), e2.copy())
    probe = Encoder(enc.profile)
    probe.state = enc.state.copy()
    right = probe.encode_delta(d)
    dig = probe.state.digest()
    wrong = craft.edit_frame(right, lambda f: setattr(f, "digest", (dig.count, enc.state.digest().lane0,
                                                                    enc.state.digest().lane1)))
    out.append(("digest_with_entries", base + right, None, {}))
    out.append(("digest_without_entries", base + wrong, "DIGEST_MISMATCH", {}))
    # setting an entry back to zero takes its record out of the digest
    d2 = Delta.empty_like(enc.profile, seq=3, base_seq=2)
    d2.palette = PaletteSet(np.array([9], np.uint16), np.zeros((e2.shape[0], 1), e2.dtype))
    cleared = probe.encode_delta(d2)
    out.append(("digest_entry_cleared", base + right + cleared, None, {}))
    # a keyframe starts from an all-zero palette: entries it does not set are gone
    kf = Delta.empty_like(enc.profile, seq=4, base_seq=3, keyframe=True)
    kf.palette = PaletteSet(np.array([9], np.uint16), e2[:, :1].copy())
    restart = probe.encode_delta(kf)
    out.append(("keyframe_resets_palette", base + right + cleared + restart, None, {}))
    return out


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    cases = []

    def add(name, data, err, limits, note=""):
        (OUT / f"{name}.gsd").write_bytes(data)
        lines = reference_lines(data, limits)
        if err is None:
            assert not any("error" in x for x in lines), (name, lines)
        else:
            assert lines[-1].endswith(f"error {err}"), (name, lines, err)
        cases.append({"name": name, "file": f"{name}.gsd", "limits": limits, "lines": lines, "error": err})

    add("scene_deg3_p4096", scene_stream(3, 900, 4096, (6, 6, 6), 11), None, {})
    add("scene_deg1_wide", scene_stream(1, 600, 300, (10, 9, 9), 12), None, {})
    add("scene_deg2_p65536", scene_stream(2, 500, 65536, (5, 5, 4), 13), None, {})
    inv, (enc, base, a) = invalid_streams()
    for name, data, err, limits in inv:
        add(name, data, err, limits)
    for name, data, err, limits in digest_streams(enc, base, a):
        add(name, data, err, limits)
    (OUT / "cases.json").write_text(json.dumps({"cases": cases}, indent=1) + "\n")
    print(f"wrote {len(cases)} streams to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
