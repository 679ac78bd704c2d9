"""Vectors for SPEC.md 3 (spatial ids) and the id rules of 6.2: ranges, cells at every octree
level, 63-bit ids, slot_bits 0 and 32; repeated, unsorted and out-of-space ids.
"""
from __future__ import annotations

import numpy as np

from .spec_index import S_IDRULES, S_IDS, S_OCTREE, S_OPS, S_SECTIONS
from .vector_stream import G63, VectorWriter, hf_preset


def gen_ids(g: VectorWriter) -> None:
    sec = [S_IDS, S_OPS]
    s = g.stream("ids_range_full_space", key_n=8)
    s.frame(ranges=[[(0, s.L.id_limit - 1)]])
    s.valid("ids", "one range [0, 2^(3B+S)-1] deletes every live Gaussian", sec)

    s = g.stream("ids_ranges_overlapping_unsorted", key_n=12)
    live = s.live()
    s.frame(ranges=[[(int(live[8]), int(live[10])), (int(live[1]), int(live[4])), (int(live[3]), int(live[6]))]])
    s.valid("ids", "overlapping DELETE_RANGES given out of order (negative deltas through ZIGZAG)", sec + [S_SECTIONS])

    s = g.stream("ids_range_between_live", key_n=6)
    live = s.live()
    s.frame(ranges=[[(int(live[2]) + 1, int(live[3]) - 1)]])
    s.valid("ids", "a range strictly between two live ids deletes nothing", sec)

    # cells at every level of a B=4 grid
    for level in (0, 1, 2, 3, 4):
        s = g.stream(f"ids_cells_level_{level}", key_n=None)
        ids = s.fresh_ids(24)
        s.frame(key=True, adds=[(ids, s.codes(24))])
        shift = 8 + 3 * level
        cs = sorted({int(i) >> shift for i in ids[[0, 5, 11]]})
        s.frame(cells=[(level, cs)])
        s.valid("ids", f"DELETE_CELLS at octree level {level} of a cell_bits=4 grid"
                       + (" (the single root cell: deletes all)" if level == 4 else ""), sec)

    s = g.stream("ids_cells_several_levels", key_n=None)
    ids = s.fresh_ids(30)
    s.frame(key=True, adds=[(ids, s.codes(30))])
    s.frame(cells=[(0, [int(ids[0]) >> 8]), (1, sorted({int(ids[10]) >> 11, int(ids[20]) >> 11})),
                   (3, [int(ids[29]) >> 17])])
    s.valid("ids", "DELETE_CELLS blocks at levels 0, 1 and 3 in one frame", sec)

    s = g.stream("ids_cells_same_level_twice", key_n=None)
    ids = s.fresh_ids(20)
    s.frame(key=True, adds=[(ids, s.codes(20))])
    s.frame(cells=[(1, [int(ids[0]) >> 11]), (1, sorted({int(ids[0]) >> 11, int(ids[7]) >> 11}))])
    s.valid("ids", "two DELETE_CELLS blocks of the same level with overlapping cells", sec + [S_OCTREE])

    s = g.stream("ids_extremes", key_n=None)
    ids = np.array([0, 1, s.L.id_limit - 2, s.L.id_limit - 1], np.uint64)
    s.frame(key=True, adds=[(ids, s.codes(4))])
    s.frame(updates=[(ids[[0, 3]], 0x08, s.residuals(ids[[0, 3]], 0x08))])
    s.frame(deletes=[ids[[3]]], cells=[(0, [0])])
    s.valid("ids", "ids 0, 1, 2^20-2 and 2^20-1 (the largest valid id)", sec)

    s = g.stream("ids_63_bit", hf=hf_preset("compact", 1, G63), key_n=None)
    top = 1 << 63
    ids = np.array(sorted({top - 1, top - 2, top - 9, (top >> 1) + 12345, 2**53 + 1, 2**53, 2**32 + 7}), np.uint64)
    s.frame(key=True, adds=[(ids, s.codes(len(ids)))])
    s.frame(updates=[(ids[[0, 4, 6]], 0x3F, s.residuals(ids[[0, 4, 6]], 0x3F))])
    s.frame(ranges=[[(2**53, 2**53)]], cells=[(0, [(top - 9) >> 3])])
    s.frame(deletes=[ids[[0]]], cells=[(20, [0])])
    s.valid("ids", "63-bit ids (cell_bits 20, slot_bits 3) above 2^53 and up to 2^63-1; cell deletes at level 0 "
                   "and 20", sec)

    s = g.stream("ids_slot_bits_0", hf=hf_preset("compact", 1, ((-8.0, -8.0, -8.0), 1.0, 4, 0)), key_n=None)
    ids = np.array([0, 7, 100, 4095], np.uint64)
    s.frame(key=True, adds=[(ids, s.codes(4))])
    s.frame(cells=[(1, [100 >> 3])], deletes=[ids[[0]]])
    s.valid("ids", "slot_bits 0: an id is just the Morton cell code", sec)

    s = g.stream("ids_slot_bits_32", hf=hf_preset("compact", 1, ((-8.0, -8.0, -8.0), 1.0, 10, 32)), key_n=None)
    ids = np.array([5, 2**32 - 1, 2**32, 2**62 - 1], np.uint64)
    s.frame(key=True, adds=[(ids, s.codes(4))])
    s.frame(cells=[(0, [0])], updates=[(ids[[3]], 0x01, s.residuals(ids[[3]], 0x01))])
    s.valid("ids", "slot_bits 32, cell_bits 10 (62-bit ids); a level-0 cell holds 2^32 ids", sec)


def gen_ids_invalid(g: VectorWriter) -> None:
    sec = [S_IDRULES, S_IDS]

    def one(vid, error, desc, build, hf=None, key_n=6):
        s = g.stream(vid, hf=hf, key_n=key_n)
        s.frame(error=error, **build(s))
        s.invalid("ids", desc, sec)

    def upd(s, ids, mask=0x01):
        return s.residuals(np.asarray(ids, np.uint64), mask)

    one("id_repeated_in_add", "DUPLICATE_ID", "ADD block lists an id twice",
        lambda s: dict(adds=[(np.repeat(s.fresh_ids(1), 2), s.codes(2))]))
    one("id_repeated_in_update", "DUPLICATE_ID", "UPDATE block lists an id twice",
        lambda s: dict(updates=[(s.live()[[1, 1]], 0x01, upd(s, s.live()[[1, 1]]))]))
    one("id_repeated_in_delete", "DUPLICATE_ID", "DELETE_IDS block lists an id twice",
        lambda s: dict(deletes=[s.live()[[2, 2]]]))
    one("id_descending_in_add", "BAD_VALUE", "ADD block ids not ascending",
        lambda s: dict(adds=[(s.fresh_ids(2)[::-1].copy(), s.codes(2))]))
    one("id_descending_in_update", "BAD_VALUE", "UPDATE block ids not ascending",
        lambda s: dict(updates=[(s.live()[[3, 1]], 0x01, upd(s, s.live()[[3, 1]]))]))
    one("id_descending_in_delete", "BAD_VALUE", "DELETE_IDS block ids not ascending",
        lambda s: dict(deletes=[s.live()[[4, 0]]]))
    one("id_in_two_add_blocks", "DUPLICATE_ID", "the same id in two ADD blocks",
        lambda s: (lambda x: dict(adds=[(x, s.codes(1)), (x, s.codes(1))]))(s.fresh_ids(1)))
    one("id_in_two_update_blocks", "DUPLICATE_ID", "the same id in two UPDATE blocks",
        lambda s: dict(updates=[(s.live()[:1], 0x01, upd(s, s.live()[:1])),
                                (s.live()[:2], 0x02, upd(s, s.live()[:2], 0x02))]))
    one("id_in_add_and_update", "DUPLICATE_ID", "an id both ADDed and UPDATEd in one frame (after its DELETE)",
        lambda s: dict(deletes=[s.live()[:1]], adds=[(s.live()[:1], s.codes(1))],
                       updates=[(s.live()[:1], 0x01, upd(s, s.live()[:1]))]))
    one("id_in_two_delete_blocks", "DUPLICATE_ID", "the same id in two DELETE_IDS blocks",
        lambda s: dict(deletes=[s.live()[:2], s.live()[1:3]]))
    lim = 1 << 20
    one("id_add_outside_space", "BAD_VALUE", "ADD of id 2^(3B+S) (one past the largest)",
        lambda s: dict(adds=[(np.array([lim], np.uint64), s.codes(1))]))
    one("id_update_outside_space", "BAD_VALUE", "UPDATE of id 2^64-1",
        lambda s: dict(updates=[(np.array([2**64 - 1], np.uint64), 0x01, [np.zeros((x.shape[0], 1), x.dtype)
                                                                           for x in s.codes(1)])]))
    one("id_delete_outside_space", "BAD_VALUE", "DELETE_IDS of id 2^(3B+S)",
        lambda s: dict(deletes=[np.array([lim], np.uint64)]))
    one("id_add_2p63_in_63_bit_grid", "BAD_VALUE", "ADD of id 2^63 on a 63-bit grid",
        lambda s: dict(adds=[(np.array([2**63], np.uint64), s.codes(1))]), hf=hf_preset("compact", 1, G63))
    one("range_first_after_last", "BAD_VALUE", "DELETE_RANGES with first > last",
        lambda s: dict(ranges=[[(1, 2), (9, 8)]]))
    one("range_last_outside_space", "BAD_VALUE", "DELETE_RANGES with last = 2^(3B+S)",
        lambda s: dict(ranges=[[(0, lim)]]))
    one("cell_code_outside_grid_level_0", "BAD_VALUE", "DELETE_CELLS level 0 code 2^12 (grid has 2^12 cells)",
        lambda s: dict(cells=[(0, [1 << 12])]))
    one("cell_code_outside_grid_level_2", "BAD_VALUE", "DELETE_CELLS level 2 code 2^6",
        lambda s: dict(cells=[(2, [5, 1 << 6])]))
    one("cell_level_above_cell_bits", "BAD_VALUE", "DELETE_CELLS level 5 on a cell_bits=4 grid",
        lambda s: dict(cells=[(5, [0])]))
