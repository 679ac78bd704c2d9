"""Vectors for ADD_IMPLICIT (SPEC.md 6.1, 1.1): ids and POSITION codes that follow from placement
codes, the block's id rules (6.2) and its place among the other ops (6.3), its structure (F11) and
the frame limit it counts toward (9.1). Every stream's header is written with version_minor 1."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from . import craft
from .attribute_codes import rand_entries
from .spec_index import S_APPLY, S_IDRULES, S_IDS, S_LIMITS, S_OPS, S_PALETTE, S_SECTIONS
from .vector_stream import G, G63, NARROW, Stream, VectorWriter, hf_preset, hf_quant

CAT = "implicit"
SEC = [S_OPS, S_IDRULES, S_APPLY]


def stream(g: VectorWriter, vid: str, hf, limits: dict | None = None) -> Stream:
    return g.stream(vid, hf=hf, limits=limits, header=craft.header(hf, minor=1), key_n=None)


def placement(s: Stream, cell: int, code: tuple[int, int, int]) -> int:
    """The placement of position code ``code`` in cell ``cell`` (a Morton cell code): SPEC.md 6.1."""
    pb = s.L.quant.position_bits
    m = 0
    for i in range(pb):
        for a in range(3):
            m |= ((code[a] >> i) & 1) << (3 * i + a)
    return (cell << (3 * pb)) | m


def placed(s: Stream, cells: list[int], per_cell: int | list[int]) -> np.ndarray:
    """Sorted random placements: ``per_cell`` Gaussians in each of ``cells``."""
    top = 1 << s.L.quant.position_bits
    counts = per_cell if isinstance(per_cell, list) else [per_cell] * len(cells)
    q = [placement(s, c, tuple(int(x) for x in s.rng.integers(0, top, 3))) for c, k in zip(cells, counts)
         for _ in range(k)]
    return np.array(sorted(q), np.uint64)


def implicit(s: Stream, q) -> tuple[np.ndarray, list]:
    q = np.asarray(q, np.uint64)
    return q, s.codes(len(q))


def placements_width(w: int):
    """A frame tweak: the last block's first section (an ADD_IMPLICIT's placements) declares width w."""
    def t(ff, pl):
        k = ff.blocks[-1].sections[0]
        ff.sections[k] = replace(ff.sections[k], width=w)
    return t


def gen_implicit(g: VectorWriter) -> None:
    """Valid streams with ADD_IMPLICIT blocks."""
    S = G[3]
    s = stream(g, "imp_keyframe_and_deltas", hf_preset("compact", 1))
    q = placed(s, [0, 5, 6, 4095], [4, 1, 7, 1])
    q[1] = q[0]                                     # two Gaussians at one placement: ranks 0 and 1
    q[-1] = (1 << 36) - 1                           # the largest placement of a 4-bit grid at pb 8
    s.frame(key=True, implicit=[implicit(s, q)])
    live = s.live()
    assert [int(x) >> S for x in live[:5]] == [0, 0, 0, 0, 5] and int(live[-1]) == 4095 << S
    s.frame(deletes=[live[[2]]], updates=[(live[[0, 6]], 0x3F, s.residuals(live[[0, 6]], 0x3F))])
    s.frame(implicit=[implicit(s, placed(s, [7, 9], 2))], adds=[(s.fresh_ids(2, lo=10 << S, hi=11 << S), s.codes(2))])
    s.valid(CAT, "compact SH 1: a keyframe of 13 Gaussians in 4 cells sent as one ADD_IMPLICIT block (two share "
                 "a placement; the last is 2^36 - 1, the largest at B = 4, pb = 8), then DELETE_IDS and UPDATE of "
                 "implicit ids, then ADD_IMPLICIT and ADD in one frame", SEC + [S_IDS])

    s = stream(g, "imp_spec_example", hf_quant(replace(NARROW, position_bits=1), 0, grid=((0.0, 0.0, 0.0), 1.0, 2, 2)))
    s.frame(key=True, implicit=[implicit(s, [8, 9, 9, 64])])
    assert [int(x) for x in s.live()] == [4, 5, 6, 32]
    s.valid(CAT, "SPEC.md 6.1's example: B = 2, S = 2, pb = 1, placements 8, 9, 9, 64 give ids 4, 5, 6, 32",
            SEC + [S_IDS])

    s = stream(g, "imp_into_a_live_cell", hf_preset("compact", 0))
    s.frame(key=True, adds=[(np.array([(3 << S) | 5, (3 << S) | 6], np.uint64), s.codes(2))])
    s.frame(implicit=[implicit(s, placed(s, [3], 3))])
    assert [int(x) & 0xFF for x in s.live()] == [0, 1, 2, 5, 6]
    s.valid(CAT, "ADD_IMPLICIT of 3 Gaussians into a cell whose slots 5 and 6 are live: ranks 0, 1, 2 are free ids",
            SEC)

    s = stream(g, "imp_replaces_deleted", hf_preset("compact", 1))
    s.frame(key=True, implicit=[implicit(s, placed(s, [2], 2))])
    s.frame(deletes=[s.live()], implicit=[implicit(s, placed(s, [2], 3))])
    s.valid(CAT, "a frame deleting a cell's two Gaussians and adding three there by ADD_IMPLICIT: ids 0 and 1 are "
                 "replaced (deletes apply first, 6.3)", SEC)

    s = stream(g, "imp_palette", hf_preset("small", 2))
    used = [0, 7, 300]
    index = np.asarray(used, np.uint16)
    q, c = implicit(s, placed(s, [1, 2, 3], 2))
    c[5] = s.rng.choice(np.asarray(used), size=(1, len(q))).astype(np.uint16)
    s.frame(key=True, palettes=[(index, rand_entries(s.L, 3, s.rng))], implicit=[(q, c)])
    s.valid(CAT, "'small' preset SH 2 (an SH palette): ADD_IMPLICIT with its SH_REST as one section of palette "
                 "indices (1 + 4 + 1 sections)", SEC + [S_PALETTE])

    s = stream(g, "imp_high_preset", hf_preset("high", 3))
    s.frame(key=True, implicit=[implicit(s, placed(s, [0, 4095], 3))])
    s.valid(CAT, "'high' preset SH 3 (pb 12, 48-bit placements), codes of width 2, SH_REST in 3 bands", SEC)

    s = stream(g, "imp_63_bit_placements", hf_quant(replace(NARROW, position_bits=1), 1, grid=G63))
    top = (1 << 63) - 1
    s.frame(key=True, implicit=[implicit(s, [top - 8, top - 1, top])])
    assert [int(x) for x in s.live()] == [((top - 8) >> 3) << 3, (top >> 3) << 3, ((top >> 3) << 3) | 1]
    s.valid(CAT, "B = 20, pb = 1: 63-bit placements up to 2^63 - 1 (ids up to 2^63 - 7)", SEC + [S_IDS])

    s = stream(g, "imp_empty_block", hf_preset("compact", 1))
    s.add_frame(2, key=True)
    s.frame(implicit=[implicit(s, [])])
    s.valid(CAT, "an ADD_IMPLICIT block of count 0", SEC)


def gen_implicit_invalid(g: VectorWriter) -> None:
    """One defect each: placements, ids against other blocks and the state, structure, limits."""
    S = G[3]
    value = SEC + [S_IDS]
    for vid, q, desc in [
        ("imp_placements_descending", lambda s: [placement(s, 2, (1, 0, 0)), placement(s, 2, (0, 0, 0))],
         "placements descending within a cell"),
        ("imp_placements_descending_cells", lambda s: [placement(s, 3, (0, 0, 0)), placement(s, 2, (5, 5, 5))],
         "placements descending across cells"),
        ("imp_placement_past_grid", lambda s: [placement(s, 2, (0, 0, 0)), 1 << 36],
         "placement 2^36 at B = 4, pb = 8"),
    ]:
        s = stream(g, vid, hf_preset("compact", 1))
        s.add_frame(2, key=True)
        s.frame(implicit=[implicit(s, q(s))], error="BAD_VALUE")
        s.invalid(CAT, f"ADD_IMPLICIT with {desc}", value)

    s = stream(g, "imp_cell_past_its_slots", hf_preset("compact", 0, grid=(G[0], G[1], G[2], 1)))
    s.frame(key=True, implicit=[implicit(s, [placement(s, 6, (k, 0, 0)) for k in range(3)])], error="BAD_VALUE")
    s.invalid(CAT, "3 placements in one cell with 1 slot bit (2 slots)", value)

    s = stream(g, "imp_id_exists", hf_preset("compact", 1))
    s.frame(key=True, adds=[(np.array([(4 << S) | 1], np.uint64), s.codes(1))])
    s.frame(implicit=[implicit(s, placed(s, [4], 2))], error="ID_EXISTS")
    s.invalid(CAT, "ADD_IMPLICIT of 2 Gaussians into a cell whose slot 1 is live: the second's id exists", SEC)

    s = stream(g, "imp_id_also_in_add", hf_preset("compact", 1))
    s.add_frame(2, key=True)
    s.frame(implicit=[implicit(s, placed(s, [9], 1))], adds=[(np.array([9 << S], np.uint64), s.codes(1))],
            error="DUPLICATE_ID")
    s.invalid(CAT, "one id in an ADD_IMPLICIT block (rank 0 of cell 9) and in an ADD block", SEC)

    s = stream(g, "imp_two_blocks_one_cell", hf_preset("compact", 1))
    s.add_frame(2, key=True)
    s.frame(implicit=[implicit(s, placed(s, [9], 1)), implicit(s, placed(s, [9], 2))], error="DUPLICATE_ID")
    s.invalid(CAT, "two ADD_IMPLICIT blocks into cell 9: both give its rank 0", SEC)

    s = stream(g, "imp_id_also_updated", hf_preset("compact", 1))
    s.frame(key=True, adds=[(np.array([9 << S], np.uint64), s.codes(1))])
    s.frame(deletes=[s.live()], implicit=[implicit(s, placed(s, [9], 1))],
            updates=[(s.live(), 0x1, s.residuals(s.live(), 0x1))], error="DUPLICATE_ID")
    s.invalid(CAT, "one id added by ADD_IMPLICIT and updated in the same frame", SEC)

    # structure (F11)
    s = stream(g, "imp_lossless", hf_preset("lossless", 1))
    s.add_frame(2, key=True)
    s.frame(implicit=[implicit(s, [5])], error="MALFORMED", model=False)
    s.invalid(CAT, "ADD_IMPLICIT in a lossless stream", [S_OPS])

    s = stream(g, "imp_placements_over_64_bits", hf_preset("compact", 1, grid=G63))
    s.add_frame(2, key=True)
    s.frame(implicit=[implicit(s, [0])], error="MALFORMED", model=False)
    s.invalid(CAT, "ADD_IMPLICIT where 3 (B + pb) = 3 (20 + 8) > 64", [S_OPS])

    for vid, tweak, desc in [
        ("imp_block_with_position_section", lambda ff: ff.blocks[-1].sections.insert(1, ff.blocks[-1].sections[1]),
         "ADD_IMPLICIT with 1 + 5 + d sections (as ADD: a POSITION section too)"),
        ("imp_block_missing_band", lambda ff: ff.blocks[-1].sections.pop(), "ADD_IMPLICIT missing its SH band section"),
    ]:
        s = stream(g, vid, hf_preset("compact", 1))
        s.add_frame(2, key=True)
        s.frame(implicit=[implicit(s, placed(s, [9], 2))], tweak=lambda ff, pl, t=tweak: t(ff), error="MALFORMED",
                model=False)
        s.invalid(CAT, desc, [S_OPS, S_SECTIONS])

    s = stream(g, "imp_placements_width_4", hf_preset("compact", 1))
    s.add_frame(2, key=True)
    s.frame(implicit=[implicit(s, placed(s, [9], 2))], tweak=placements_width(4), error="MALFORMED", model=False)
    s.invalid(CAT, "ADD_IMPLICIT placements section declaring width 4 (u64: 8)", [S_OPS, S_SECTIONS])

    s = stream(g, "imp_counts_toward_max_ids", hf_preset("compact", 1), limits={"max_ids_per_frame": 4})
    s.add_frame(2, key=True)
    s.frame(implicit=[implicit(s, placed(s, [9], 3))], adds=[(s.fresh_ids(2, lo=10 << S, hi=11 << S), s.codes(2))],
            error="LIMIT_EXCEEDED", model=False)
    s.invalid(CAT, "ADD_IMPLICIT of 3 and ADD of 2 with max_ids_per_frame 4", [S_LIMITS, S_OPS])
