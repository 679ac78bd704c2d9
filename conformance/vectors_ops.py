"""Vectors for SPEC.md 6.1-6.3 (op blocks and apply): every op kind, all UPDATE masks, block
order, optional kinds, empty frames and blocks, replace in one frame; and ops the state refuses.
"""
from __future__ import annotations

import numpy as np

from .craft import BlockFields, Section
from .spec_index import (S_APPLY, S_CODES, S_DIGEST, S_IDRULES, S_IDS, S_LIMITS, S_MODEL, S_OCTREE, S_OPS, S_RECORDS,
                         S_SECTIONS, S_VERSION)
from .vector_stream import VectorWriter, hf_preset


def gen_ops(g: VectorWriter) -> None:
    sec = [S_OPS, S_APPLY]
    s = g.stream("op_keyframe_add", key_n=None)
    s.add_frame(5, key=True)
    s.valid("op", "keyframe that ADDs 5 Gaussians to the empty state", sec)

    s = g.stream("op_add_without_keyframe", key_n=None)
    s.add_frame(3)
    s.add_frame(2)
    s.valid("op", "first frame is a plain ADD delta (base_seq 0), then a second ADD", sec)

    s = g.stream("op_update_full_mask", key_n=6)
    ids = s.live()[[0, 2, 5]]
    s.frame(updates=[(ids, 0x3F, s.residuals(ids, 0x3F))])
    s.valid("op", "UPDATE of 3 of 6 Gaussians with every attribute", sec)

    s = g.stream("op_delete_ids", key_n=6)
    s.frame(deletes=[s.live()[[1, 4]]])
    s.valid("op", "DELETE_IDS of 2 of 6 live Gaussians", sec)

    s = g.stream("op_delete_ranges", key_n=10)
    live = s.live()
    s.frame(ranges=[[(int(live[1]), int(live[3])), (int(live[7]), int(live[7])), (0, 0)]])
    s.valid("op", "DELETE_RANGES: a 3-id span, a single id, and a range with nothing live", sec + [S_IDS])

    s = g.stream("op_delete_cells", key_n=None)
    cell = 0b101101010  # some level-0 cell
    ids = np.array([(cell << 8) | k for k in (0, 1, 7)] + [((cell + 1) << 8) | 3], np.uint64)
    s.frame(key=True, adds=[(ids, s.codes(4))])
    s.frame(cells=[(0, [cell])])
    s.valid("op", "DELETE_CELLS at level 0 removes the 3 Gaussians of one cell, not its neighbour", sec + [S_OCTREE])

    s = g.stream("op_all_kinds_in_one_frame", key_n=12)
    live = s.live()
    new = s.fresh_ids(2)
    upd = live[[8, 9]]
    cell = int(live[5]) >> 8
    s.frame(deletes=[live[[0]]], ranges=[[(int(live[2]), int(live[3]))]], cells=[(0, [cell])],
            adds=[(new, s.codes(2))], updates=[(upd, 0x15, s.residuals(upd, 0x15))])
    s.valid("op", "one frame with DELETE_IDS, DELETE_RANGES, DELETE_CELLS, ADD and UPDATE blocks", sec)

    s = g.stream("op_two_add_blocks_interleaved", key_n=None)
    ids = s.fresh_ids(6)
    c = s.codes(6)
    a, b = [0, 2, 4], [1, 3, 5]
    s.frame(key=True, adds=[(ids[a], [x[:, a] for x in c]), (ids[b], [x[:, b] for x in c])])
    s.valid("op", "two ADD blocks whose ids interleave (each block ascending on its own)", sec)

    s = g.stream("op_update_blocks_per_mask", key_n=9)
    live = s.live()
    ups = []
    for rows, m in (([0, 3, 6], 0x01), ([1, 4, 7], 0x18), ([2, 5, 8], 0x26)):
        ups.append((live[rows], m, s.residuals(live[rows], m)))
    s.frame(updates=ups)
    s.valid("op", "three UPDATE blocks with different masks and interleaved ids", sec)

    s = g.stream("op_two_delete_blocks_each_kind", key_n=12)
    live = s.live()
    s.frame(deletes=[live[[0, 5]], live[[2]]],
            ranges=[[(int(live[7]), int(live[8]))], [(int(live[10]), int(live[10]))]])
    s.valid("op", "two DELETE_IDS blocks and two DELETE_RANGES blocks in one frame", sec)

    s = g.stream("op_blocks_in_reverse_order", key_n=6)
    live = s.live()
    new = s.fresh_ids(1)
    upd = live[[3]]
    s.frame(deletes=[live[[1]]], adds=[(np.sort(np.concatenate([live[[1]], new])), s.codes(2))],
            updates=[(upd, 0x3F, s.residuals(upd, 0x3F))], order=lambda bl: bl[::-1])
    s.valid("op", "UPDATE block first, DELETE_IDS last: apply order is by kind (delete, add, update), not block order",
            sec)

    s = g.stream("op_update_zero_residuals", key_n=4)
    ids = s.live()[:2]
    s.frame(updates=[(ids, 0x3F, s.residuals(ids, 0x3F, new=s.codes_of(ids)))])
    s.valid("op", "UPDATE whose residuals are all zero leaves the state (and digest) unchanged", sec)

    # residuals wrap modulo 2^(8*width)
    s = g.stream("op_update_wraps_modulo_width", key_n=None)
    ids = s.fresh_ids(2)
    c = s.codes(2)
    c[0][:, 0] = [2**31 - 1, -2**31, 5]        # position int32 extremes
    c[1][:, 0] = [250, 3, 255]                 # scale (8 bits, width 1)
    s.frame(key=True, adds=[(ids, c)])
    new = [x.copy() for x in s.codes_of(ids)]
    new[0][:, 0] = [-2**31, 2**31 - 1, -5]
    new[1][:, 0] = [4, 254, 0]
    s.frame(updates=[(ids[:1], 0x03, s.residuals(ids[:1], 0x03, new=[x[:, :1] for x in new]))])
    s.valid("op", "UPDATE residuals wrap: int32 position 2^31-1 -> -2^31, u8 scale 250 -> 4", sec + [S_CODES])

    s = g.stream("op_long_mixed_chain", key_n=16)
    for k in range(12):
        live = s.live()
        r = s.rng
        pick = r.permutation(len(live))
        dels, ups = live[np.sort(pick[:2])], live[np.sort(pick[2:6])]
        mask = int(r.integers(1, 64))
        s.frame(deletes=[dels], adds=[(s.fresh_ids(2), s.codes(2))], updates=[(ups, mask, s.residuals(ups, mask))],
                digest="auto" if k % 3 else None)
    s.valid("op", "keyframe then 12 deltas mixing deletes, adds and updates (every third without digest)", sec)

    s = g.stream("op_optional_block_kind_128", key_n=4)
    s.frame(adds=[(s.fresh_ids(1), s.codes(1))], ext=[(128, [np.arange(10, dtype=np.uint8)[None, :]])])
    s.valid("op", "optional extension block kind 128 (with a section) is skipped by a 1.0 decoder", sec + [S_VERSION])

    s = g.stream("op_optional_block_kind_255", key_n=4)
    s.frame(ext=[(255, [])])
    s.valid("op", "optional extension block kind 255 without sections is skipped", sec + [S_VERSION])

    def ext_bad_sections(ff, pl):
        ff.sections.append(Section(0, 999999, 5, 7, 0xFF, 5))
        ff.blocks.append(BlockFields(131, 7, 0xFF, 0xFF, [len(ff.sections) - 1, 4000]))
    s = g.stream("op_optional_block_sections_not_decoded", key_n=3)
    s.add_frame(1, tweak=ext_bad_sections)
    s.valid("op", "optional block kind 131 referencing an undecodable section and index 4000: skipped unread",
            sec + [S_VERSION])

    s = g.stream("op_optional_block_count_not_limited", key_n=3, limits={"max_ids_per_frame": 4})
    s.add_frame(2, tweak=lambda ff, pl: ff.blocks.append(BlockFields(250, 2**32 - 1, 0, 0, [])))
    s.valid("op", "optional block kind 250 with count 2^32-1 does not count toward max_ids_per_frame (4)",
            sec + [S_VERSION, S_LIMITS])

    s = g.stream("op_optional_block_between", key_n=4)
    ids = s.live()[:2]
    s.frame(adds=[(s.fresh_ids(2), s.codes(2))], updates=[(ids, 0x01, s.residuals(ids, 0x01))],
            ext=[(200, [np.arange(6, dtype=np.uint16)[None, :]])], order=lambda bl: [bl[0], bl[2], bl[1]])
    s.valid("op", "optional block kind 200 placed between the ADD and UPDATE blocks is skipped", sec + [S_VERSION])

    # SPEC.md 6.1 / 4.9 F11: an optional block is skipped as a whole, none of its fields checked
    s = g.stream("op_optional_block_skipped_whole", key_n=4)
    s.frame(tweak=lambda ff, pl: ff.blocks.append(BlockFields(129, 2**32 - 1, 0xFF, 0xFF, [2**32 - 1, 7, 0])))
    s.add_frame(1)
    s.valid("op", "a frame whose only block is optional kind 129 with count 2^32-1, mask 0xFF, level 0xFF and "
                  "section indices 2^32-1, 7, 0 in a frame of no sections: accepted, state and digest unchanged; "
                  "the next frame applies", sec + [S_VERSION, S_LIMITS])


def gen_masks(g: VectorWriter) -> None:
    hf = hf_preset("compact", 3)
    for mask in range(1, 64):
        s = g.stream(f"mask_sh3_{mask:02x}", hf=hf, key_n=3)
        ids = s.live()[[0, 2]]
        s.frame(updates=[(ids, mask, s.residuals(ids, mask))])
        names = "+".join(n for a, n in enumerate(("position", "scale", "rotation", "opacity", "sh_dc", "sh_rest"))
                         if mask >> a & 1)
        s.valid("update_mask", f"SH degree 3 UPDATE with mask {mask:#04x} ({names})", [S_MODEL, S_OPS])
    for mask in (0x01, 0x10, 0x1F):
        s = g.stream(f"mask_sh0_{mask:02x}", hf=hf_preset("compact", 0), key_n=3)
        ids = s.live()[[1]]
        s.frame(updates=[(ids, mask, s.residuals(ids, mask))])
        s.valid("update_mask", f"SH degree 0 (no SH_REST) UPDATE with mask {mask:#04x}", [S_MODEL, S_OPS])


def gen_empty(g: VectorWriter) -> None:
    sec = [S_OPS, S_RECORDS]
    s = g.stream("empty_header_only", key_n=None)
    s.valid("empty", "a header and no frames", sec)

    s = g.stream("empty_frames", key_n=4)
    s.frame()
    s.frame(digest=None)
    s.valid("empty", "frames without blocks, with and without a digest", sec)

    s = g.stream("empty_many_frames", key_n=3)
    for _ in range(10):
        s.frame()
    s.valid("empty", "ten empty frames in a row", sec)

    s = g.stream("empty_first_frame", key_n=None)
    s.frame()
    s.valid("empty", "the first frame is an empty delta on the empty state (digest 0:00000000:00000000)",
            sec + [S_DIGEST])

    s = g.stream("empty_blocks_count_zero", key_n=3)
    z = np.zeros(0, np.uint64)
    s.frame(adds=[(z, s.codes(0))], deletes=[z], updates=[(z, 0x01, s.codes(0))], ranges=[[]], cells=[(0, [])])
    s.valid("empty", "ADD, UPDATE, DELETE_IDS, DELETE_RANGES and DELETE_CELLS blocks of count 0 (empty sections)",
            sec + [S_SECTIONS])

    s = g.stream("empty_delete_everything", key_n=5)
    s.frame(deletes=[s.live()])
    s.frame(adds=[(s.fresh_ids(1), s.codes(1))])
    s.valid("empty", "delete every Gaussian (digest back to 0:00000000:00000000), then add one", sec + [S_DIGEST])


def gen_replace(g: VectorWriter) -> None:
    sec = [S_APPLY, S_IDRULES]
    s = g.stream("replace_delete_ids_then_add", key_n=5)
    x = s.live()[[1, 3]]
    s.frame(deletes=[x], adds=[(x, s.codes(2))])
    s.valid("replace", "DELETE_IDS x and ADD x in one frame replaces x", sec)

    s = g.stream("replace_range_then_add", key_n=5)
    live = s.live()
    s.frame(ranges=[[(int(live[0]), int(live[2]))]], adds=[(live[[1]], s.codes(1))])
    s.valid("replace", "a DELETE_RANGES covering x and ADD x in one frame", sec)

    s = g.stream("replace_cell_then_add", key_n=5)
    live = s.live()
    s.frame(cells=[(0, [int(live[2]) >> 8])], adds=[(live[[2]], s.codes(1))])
    s.valid("replace", "a DELETE_CELLS covering x and ADD x in one frame", sec)

    s = g.stream("replace_then_update_next_frame", key_n=4)
    x = s.live()[[0]]
    s.frame(deletes=[x], adds=[(x, s.codes(1))])
    s.frame(updates=[(x, 0x3F, s.residuals(x, 0x3F))])
    s.valid("replace", "replace x, then UPDATE x against its new codes", sec)


def gen_state_invalid(g: VectorWriter) -> None:
    sec = [S_APPLY, S_OPS]

    def one(vid, error, desc, build, key_n=6, pre=None):
        s = g.stream(vid, key_n=key_n)
        if pre:
            pre(s)
        s.frame(error=error, **build(s))
        s.invalid("state", desc, sec)

    def res(s, ids):
        """Residual +1 on opacity (mask 0x08) for ids that need not be live."""
        return [np.full((x.shape[0], len(ids)), 1 if k == 3 else 0, x.dtype) for k, x in enumerate(s.codes(0))]

    one("st_add_live_id", "ID_EXISTS", "ADD of a live id", lambda s: dict(adds=[(s.live()[2:3], s.codes(1))]))
    one("st_add_live_range_misses", "ID_EXISTS", "ADD of a live id next to a DELETE_RANGES that does not cover it",
        lambda s: dict(ranges=[[(int(s.live()[2]) + 1, int(s.live()[3]))]], adds=[(s.live()[2:3], s.codes(1))]))
    one("st_update_missing_id", "ID_MISSING", "UPDATE of an id that was never added",
        lambda s: dict(updates=[(s.fresh_ids(1), 0x08, res(s, [0]))]))
    one("st_update_deleted_same_frame", "ID_MISSING", "DELETE_IDS x and UPDATE x in one frame",
        lambda s: dict(deletes=[s.live()[:1]], updates=[(s.live()[:1], 0x08, res(s, [0]))]))
    one("st_update_range_deleted_same_frame", "ID_MISSING", "DELETE_RANGES covering x and UPDATE x in one frame",
        lambda s: dict(ranges=[[(int(s.live()[1]), int(s.live()[1]))]], updates=[(s.live()[1:2], 0x08, res(s, [0]))]))
    one("st_update_cell_deleted_same_frame", "ID_MISSING", "DELETE_CELLS covering x and UPDATE x in one frame",
        lambda s: dict(cells=[(0, [int(s.live()[1]) >> 8])], updates=[(s.live()[1:2], 0x08, res(s, [0]))]))
    one("st_delete_missing_id", "ID_MISSING", "DELETE_IDS of an id that is not live",
        lambda s: dict(deletes=[s.fresh_ids(1)]))
    one("st_delete_twice", "ID_MISSING", "DELETE_IDS of an id deleted by the previous frame",
        lambda s: dict(deletes=[np.array([s.gone], np.uint64)]),
        pre=lambda s: (setattr(s, "gone", int(s.live()[0])), s.frame(deletes=[s.live()[:1]])))
    one("st_keyframe_delete_ids", "ID_MISSING", "keyframe with DELETE_IDS of an id live before it (state is empty)",
        lambda s: dict(key=True, deletes=[s.live()[:1]], adds=[(s.fresh_ids(1), s.codes(1))]))
    one("st_keyframe_update", "ID_MISSING", "keyframe with UPDATE of an id live before it",
        lambda s: dict(key=True, adds=[(s.fresh_ids(1), s.codes(1))], updates=[(s.live()[:1], 0x08, res(s, [0]))]))
    one("st_update_after_keyframe_dropped_it", "ID_MISSING", "UPDATE of an id the previous keyframe did not keep",
        lambda s: dict(updates=[(np.array([s.old], np.uint64), 0x08, res(s, [0]))]),
        pre=lambda s: (setattr(s, "old", int(s.live()[0])), s.add_frame(2, key=True)))
