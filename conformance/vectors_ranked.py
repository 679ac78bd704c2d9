"""Vectors for ranked ids (SPEC.md 6.1, 1.2): UPDATE_RANKED and DELETE_RANKED blocks whose ranks name
ids among those live before the frame, resolved once against that state whatever the frame's other
blocks do (6.3 step 0), the ascending rules on ranks and the id rules on the resolved ids (6.2), ranks
in keyframes (6.4), block structure (F11), the ranks role (4.4) and the frame limit they count toward
(9.1). Every stream's header is written with version_minor 2, except the one that shows readers do not
act on it."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from . import craft
from .craft import DELTA, SHUFFLE, ZIGZAG, Encoding
from .refmodel import RefError
from .spec_index import (S_APPLY, S_HEADER_REC, S_IDRULES, S_IDS, S_KEYFRAME, S_LIMITS, S_OPS, S_PALETTE,
                         S_SECTIONS, S_VERSION)
from .vector_stream import G63, NARROW, Stream, VectorWriter, both, hf_preset, hf_quant, set_block
from .vectors_palette import entries, using

CAT = "ranked"
SEC = [S_OPS, S_IDRULES, S_APPLY]
SPEC_EXAMPLE = hf_quant(replace(NARROW, position_bits=1), 0, grid=((0.0, 0.0, 0.0), 1.0, 2, 2))   # B = 2, S = 2


def stream(g: VectorWriter, vid: str, hf=None, limits: dict | None = None, minor: int = 2) -> Stream:
    hf = hf or hf_preset("compact", 1)
    return g.stream(vid, hf=hf, limits=limits, header=craft.header(hf, minor=minor), key_n=None)


def keyed(g: VectorWriter, vid: str, n: int, hf=None, limits: dict | None = None) -> Stream:
    """A stream holding a keyframe of n Gaussians."""
    s = stream(g, vid, hf, limits)
    s.add_frame(n, key=True)
    return s


def ranked_update(s: Stream, ranks, mask: int, new=None) -> tuple:
    """An UPDATE_RANKED block's arrays: the ranks and residuals taking the Gaussians they name now (in the
    state before the next frame) to fresh valid codes (or ``new``) on ``mask``."""
    ranks = np.asarray(ranks, np.uint32)
    return ranks, mask, s.residuals(s.live()[ranks.astype(np.int64)], mask, new)


def names(s: Stream, ranks) -> list[int]:
    """The ids the ranks name in the state before the next frame."""
    return [int(x) for x in s.live()[np.asarray(ranks, np.int64)]]


def misread(g: VectorWriter, s: Stream, ids_at, **ops) -> str:
    """The digest, or the error, a decoder reaches that resolves the ranks of ``ops`` against the ascending
    list ``ids_at`` instead of the state before the frame."""
    t = Stream(g, s.vid + "/misread", s.hf)
    t.model = s.model.copy()
    ops = dict(ops)
    upd = [(np.array([ids_at[int(k)] for k in r], np.uint64), m, res) for r, m, res in ops.pop("ranked_updates", ())]
    dels = [np.array([ids_at[int(k)] for k in r], np.uint64) for r in ops.pop("ranked_deletes", ())]
    ops["updates"] = list(ops.get("updates", ())) + upd
    ops["deletes"] = list(ops.get("deletes", ())) + dels
    try:
        t.frame(**ops)
    except RefError as e:
        return e.code
    return t.digests[-1]


def ranks_as_u64(ff, pl):
    """A frame tweak: the last block's ranks section, stored plain, rewritten as u64 values (width 8, raw_size
    8 n), as an ids section is; the sections after it move along."""
    k = ff.blocks[-1].sections[0]
    d = ff.sections[k]
    assert d.compression == craft.NONE and d.filters == 0, "ranks stored plain"
    pl.parts[k] = np.frombuffer(pl.parts[k], np.uint32).astype(np.uint64).tobytes()
    ff.sections[k] = replace(d, stored_size=len(pl.parts[k]), raw_size=len(pl.parts[k]), width=8)
    off = 0
    for i, part in enumerate(pl.parts):
        ff.sections[i] = replace(ff.sections[i], offset=off)
        off += len(part)


def gen_ranked(g: VectorWriter) -> None:
    """Valid streams with ranked blocks."""
    s = keyed(g, "ranked_update", 8, hf_preset("compact", 3))
    L, before = s.live(), dict(s.model.g)
    s.frame(ranked_updates=[ranked_update(s, [0, 3, 7], 0x3F)])
    assert [int(x) for x in L if s.model.g[int(x)] != before[int(x)]] == [int(x) for x in L[[0, 3, 7]]]
    s.valid(CAT, "compact SH 3: a keyframe of 8, then UPDATE_RANKED of ranks 0, 3 and 7 (the first and last live "
                 "ids) with every attribute: 1 + 5 + 3 sections, as UPDATE", SEC)

    s = keyed(g, "ranked_delete", 8)
    live = s.live()
    s.frame(ranked_deletes=[np.array([0, 5, 7], np.uint32)])
    assert [int(x) for x in s.live()] == [int(live[k]) for k in (1, 2, 3, 4, 6)]
    s.frame(ranked_deletes=[np.array([4], np.uint32)], ranked_updates=[ranked_update(s, [0], 0x09)])
    assert [int(x) for x in s.live()] == [int(live[k]) for k in (1, 2, 3, 4)]
    s.valid(CAT, "a keyframe of 8, DELETE_RANKED of ranks 0, 5, 7; then DELETE_RANKED of rank 4 (the last of the 5 "
                 "left) with UPDATE_RANKED of rank 0: ranks follow the state each frame applies to", SEC)

    s = stream(g, "ranked_spec_example", SPEC_EXAMPLE)
    s.frame(key=True, adds=[(np.array([4, 5, 6, 32, 40], np.uint64), s.codes(5))])
    assert names(s, [0, 3]) == [4, 32]
    s.frame(ranked_updates=[ranked_update(s, [0, 3], 0x01)])
    s.valid(CAT, "SPEC.md 6.1's example: with live ids 4, 5, 6, 32, 40 the ranks 0, 3 name ids 4 and 32 "
                 "(UPDATE_RANKED of their positions)", SEC + [S_IDS])

    # Ranks against the state before the frame, whatever the frame deletes and adds: decoders that resolve them
    # after the deletes, after the adds, or after both apply the same ops to other Gaussians and end at another
    # state (position residuals only, so every misreading still applies).
    s = keyed(g, "ranked_against_state_before_frame", 12)
    L = s.live()
    new = np.concatenate([s.fresh_ids(1, lo=int(L[0]) + 1, hi=int(L[1])),
                          s.fresh_ids(1, lo=int(L[10]) + 1, hi=int(L[11]))])
    ops = dict(deletes=[L[[1]]], ranges=[[(int(L[2]), int(L[3]))]], adds=[(new, s.codes(2))],
               ranked_updates=[ranked_update(s, [0, 5, 6], 0x01)], ranked_deletes=[np.array([4, 7], np.uint32)])
    gone = {int(x) for x in L[[1, 2, 3]]}
    after_deletes = [int(x) for x in L if int(x) not in gone]
    after_adds = sorted([int(x) for x in L] + [int(x) for x in new])
    after_both = [x for x in after_adds if x not in gone]
    wrong = [misread(g, s, ids_at, **ops) for ids_at in (after_deletes, after_adds, after_both)]
    s.frame(**ops)
    assert sorted(s.model.g) == sorted({int(x) for x in L} - gone - {int(L[4]), int(L[7])} | {int(x) for x in new})
    assert all(w.count(":") == 2 and w != s.digests[-1] for w in wrong), wrong
    s.valid(CAT, "live ids L0..L11; one frame with DELETE_IDS of L1, DELETE_RANGES [L2, L3], ADD of an id between "
                 "L0 and L1 and one between L10 and L11, UPDATE_RANKED of ranks 0, 5, 6 (L0, L5, L6) and "
                 "DELETE_RANKED of ranks 4, 7 (L4, L7): ranks name ids of the state before the frame (resolved "
                 "after the deletes, the adds or both they name other live ids)", SEC)

    s = keyed(g, "ranked_and_unranked", 10)
    L = s.live()
    s.frame(updates=[(L[[1, 6]], 0x05, s.residuals(L[[1, 6]], 0x05))], deletes=[L[[3]]],
            ranked_updates=[ranked_update(s, [0, 2, 9], 0x05)], ranked_deletes=[np.array([4, 8], np.uint32)])
    assert [int(x) for x in s.live()] == [int(L[k]) for k in (0, 1, 2, 5, 6, 7, 9)]
    s.valid(CAT, "UPDATE of L1, L6 and UPDATE_RANKED of ranks 0, 2, 9 (same mask), DELETE_IDS of L3 and "
                 "DELETE_RANKED of ranks 4, 8, in one frame: ranked and unranked blocks of one kind, different ids",
            SEC)

    s = keyed(g, "ranked_several_blocks", 12)
    L = s.live()
    s.frame(ranked_updates=[ranked_update(s, [1, 4, 6], 0x01), ranked_update(s, [0, 2, 5], 0x02),
                            ranked_update(s, [3], 0x3F)],
            ranked_deletes=[np.array([9, 11], np.uint32), np.array([7, 10], np.uint32)])
    assert [int(x) for x in s.live()] == [int(L[k]) for k in (0, 1, 2, 3, 4, 5, 6, 8)]
    s.valid(CAT, "three UPDATE_RANKED blocks (ranks 1, 4, 6 / 0, 2, 5 / 3, different masks) and two DELETE_RANKED "
                 "blocks (ranks 9, 11 / 7, 10): ranks ascend within a block, not across blocks", SEC)

    s = keyed(g, "ranked_delete_and_readd", 6)
    L = s.live()
    s.frame(ranked_deletes=[np.array([1, 4], np.uint32)], adds=[(L[[1]], s.codes(1))])
    assert [int(x) for x in s.live()] == [int(L[k]) for k in (0, 1, 2, 3, 5)]
    s.valid(CAT, "DELETE_RANKED of ranks 1, 4 with ADD of L1 in one frame: L1 is replaced (deletes apply first, "
                 "6.3), L4 is gone", SEC)

    s = stream(g, "ranked_empty_blocks")
    s.frame(ranked_deletes=[np.array([], np.uint32)], ranked_updates=[ranked_update(s, [], 0x01)])
    s.frame(key=True, adds=[(s.fresh_ids(4), s.codes(4))], ranked_deletes=[np.array([], np.uint32)],
            ranked_updates=[ranked_update(s, [], 0x3F)])
    s.frame(ranked_updates=[ranked_update(s, [], 0x20)], ranked_deletes=[np.array([], np.uint32)])
    s.valid(CAT, "UPDATE_RANKED and DELETE_RANKED blocks of count 0: against the empty state of a first frame, in "
                 "a keyframe (no ranks to resolve) and in a delta", SEC + [S_KEYFRAME])

    s = stream(g, "ranked_palette", hf_preset("small", 2))
    used = [0, 5, 300, 65535]
    s.frame(key=True, palettes=[entries(s, used)], adds=[(s.fresh_ids(8), using(s, 8, used))])
    s.frame(palettes=[entries(s, [5, 77])],
            ranked_updates=[ranked_update(s, [0, 3, 7], 0x21, new=using(s, 3, [77, 300])),
                            ranked_update(s, [2, 5], 0x20, new=using(s, 2, [65535]))])
    s.valid(CAT, "'small' preset SH 2 (an SH palette): UPDATE_RANKED of masks 0x21 and 0x20 with SH_REST as one "
                 "section of palette index residuals (1 + popcount(mask) sections), beside a PALETTE block",
            SEC + [S_PALETTE])

    s = keyed(g, "ranked_lossless", 6, hf_preset("lossless", 2))
    s.frame(ranked_updates=[ranked_update(s, [1, 5], 0x3F)], ranked_deletes=[np.array([0], np.uint32)])
    s.valid(CAT, "lossless SH 2: UPDATE_RANKED residuals of float32 bit patterns and DELETE_RANKED", SEC)

    s = keyed(g, "ranked_63_bit_ids", 6, hf_preset("compact", 1, grid=G63))
    s.frame(ranked_updates=[ranked_update(s, [0, 5], 0x01)], ranked_deletes=[np.array([2, 3], np.uint32)])
    s.valid(CAT, "63-bit ids (B = 20, S = 3): ranks 0..5 name ids near 2^63", SEC + [S_IDS])

    s = keyed(g, "ranked_many", 2000, hf_preset("compact", 0))
    rng = s.rng
    up = np.sort(rng.choice(2000, 600, replace=False)).astype(np.uint32)
    rest = np.setdiff1d(np.arange(2000), up)
    dl = np.sort(rng.choice(rest, 300, replace=False)).astype(np.uint32)
    s.frame(ranked_updates=[ranked_update(s, up, 0x09)], ranked_deletes=[dl],
            enc=Encoding(ranks=DELTA | ZIGZAG | SHUFFLE, compression="zstd"))
    s.frame(ranked_updates=[ranked_update(s, [0, 1, 1699], 0x01)], enc=Encoding(ranks=0, compression="none"))
    s.valid(CAT, "2,000 Gaussians: UPDATE_RANKED of 600 ranks and DELETE_RANKED of 300 (ranks DELTA, ZIGZAG, "
                 "SHUFFLE, zstd), then ranks 0, 1, 1699 (the last of 1,700) unfiltered and uncompressed",
            SEC + [S_SECTIONS])

    s = stream(g, "ranked_header_minor_0", minor=0)
    s.add_frame(5, key=True)
    s.frame(ranked_updates=[ranked_update(s, [1, 2], 0x01)], ranked_deletes=[np.array([4], np.uint32)])
    s.valid(CAT, "ranked blocks in a stream whose header says version 1.0: readers do not act on version_minor",
            SEC + [S_HEADER_REC, S_VERSION])

    s = keyed(g, "ranked_ids_limit_at", 5, limits={"max_ids_per_frame": 5})
    s.frame(ranked_updates=[ranked_update(s, [0, 1, 2], 0x01)], ranked_deletes=[np.array([3, 4], np.uint32)])
    s.valid(CAT, "UPDATE_RANKED of 3 and DELETE_RANKED of 2 with max_ids_per_frame 5", [S_LIMITS, S_OPS])


def gen_ranked_invalid(g: VectorWriter) -> None:
    """One defect each: ranks against the state, the ascending rules, resolved ids against other blocks,
    keyframes, structure, the ranks role, limits."""
    # ranks against the state (apply step 0)
    s = stream(g, "ranked_rank_equals_live_count", SPEC_EXAMPLE)
    s.frame(key=True, adds=[(np.array([4, 5, 6, 32, 40], np.uint64), s.codes(5))])
    s.frame(ranked_updates=[(np.array([0, 5], np.uint32), 0x01, s.residuals(s.live()[[0, 1]], 0x01))],
            error="ID_MISSING")
    s.invalid(CAT, "SPEC.md 6.1's example: live ids 4, 5, 6, 32, 40 and UPDATE_RANKED of ranks 0, 5 (rank 5 = the "
                   "number of live ids)", SEC)

    s = keyed(g, "ranked_delete_rank_past_live", 6)
    s.frame(ranked_deletes=[np.array([2, 6], np.uint32)], error="ID_MISSING")
    s.invalid(CAT, "DELETE_RANKED of ranks 2, 6 with 6 live ids", SEC)

    s = keyed(g, "ranked_rank_u32_max", 6)
    s.frame(ranked_deletes=[np.array([0, 0xFFFFFFFF], np.uint32)], error="ID_MISSING")
    s.invalid(CAT, "DELETE_RANKED of ranks 0, 2^32 - 1 (u32: not -1)", SEC)

    s = keyed(g, "ranked_update_in_keyframe", 4)
    s.frame(key=True, adds=[(s.fresh_ids(3), s.codes(3))],
            ranked_updates=[(np.array([0], np.uint32), 0x01, s.residuals(s.live()[:1], 0x01))], error="ID_MISSING")
    s.invalid(CAT, "a keyframe of 3 ADDs with UPDATE_RANKED of rank 0 (a keyframe's ranks resolve against no ids; "
                   "4 were live before it)", SEC + [S_KEYFRAME])

    s = keyed(g, "ranked_delete_in_keyframe", 4)
    s.frame(key=True, adds=[(s.fresh_ids(3), s.codes(3))], ranked_deletes=[np.array([0], np.uint32)],
            error="ID_MISSING")
    s.invalid(CAT, "a keyframe of 3 ADDs with DELETE_RANKED of rank 0 (4 were live before it)", SEC + [S_KEYFRAME])

    # the ascending rules on ranks (6.2: no state needed)
    for vid, kind, ranks, code, desc in [
        ("ranked_update_ranks_equal", "update", [1, 3, 3], "DUPLICATE_ID", "UPDATE_RANKED of ranks 1, 3, 3"),
        ("ranked_delete_ranks_equal", "delete", [0, 0], "DUPLICATE_ID", "DELETE_RANKED of ranks 0, 0"),
        ("ranked_update_ranks_descending", "update", [2, 1, 4], "BAD_VALUE", "UPDATE_RANKED of ranks 2, 1, 4"),
        ("ranked_delete_ranks_descending", "delete", [5, 3], "BAD_VALUE", "DELETE_RANKED of ranks 5, 3"),
    ]:
        s = keyed(g, vid, 6)
        r = np.array(ranks, np.uint32)
        if kind == "update":
            ids = s.live()[r.astype(np.int64)]
            s.frame(ranked_updates=[(r, 0x01, s.residuals(ids, 0x01))], error=code)
        else:
            s.frame(ranked_deletes=[r], error=code)
        s.invalid(CAT, f"{desc} among 6 live ids", SEC)

    # the resolved ids against the frame's other blocks (6.2, 6.3)
    s = keyed(g, "ranked_update_also_unranked", 6)
    L = s.live()
    s.frame(updates=[(L[[2]], 0x01, s.residuals(L[[2]], 0x01))], ranked_updates=[ranked_update(s, [1, 2], 0x02)],
            error="DUPLICATE_ID")
    s.invalid(CAT, "UPDATE of L2 and UPDATE_RANKED of ranks 1, 2 (L1, L2): one id in two UPDATE blocks", SEC)

    s = keyed(g, "ranked_delete_also_unranked", 6)
    L = s.live()
    s.frame(deletes=[L[[4]]], ranked_deletes=[np.array([0, 4], np.uint32)], error="DUPLICATE_ID")
    s.invalid(CAT, "DELETE_IDS of L4 and DELETE_RANKED of ranks 0, 4 (L0, L4): one id in two DELETE_IDS blocks", SEC)

    s = keyed(g, "ranked_two_update_blocks_one_rank", 6)
    s.frame(ranked_updates=[ranked_update(s, [0, 3], 0x01), ranked_update(s, [3, 5], 0x02)], error="DUPLICATE_ID")
    s.invalid(CAT, "two UPDATE_RANKED blocks both naming rank 3", SEC)

    s = keyed(g, "ranked_two_delete_blocks_one_rank", 6)
    s.frame(ranked_deletes=[np.array([1, 2], np.uint32), np.array([2], np.uint32)], error="DUPLICATE_ID")
    s.invalid(CAT, "two DELETE_RANKED blocks both naming rank 2", SEC)

    s = keyed(g, "ranked_update_of_deleted", 6)
    L = s.live()
    s.frame(deletes=[L[[3]]], ranked_updates=[ranked_update(s, [3], 0x01)], error="ID_MISSING")
    s.invalid(CAT, "DELETE_IDS of L3 and UPDATE_RANKED of rank 3 (L3, live before the frame): the update finds it "
                   "deleted (6.3 step 4)", SEC)

    s = keyed(g, "ranked_update_of_deleted_rank", 6)
    s.frame(ranked_deletes=[np.array([1, 4], np.uint32)], ranked_updates=[ranked_update(s, [0, 4], 0x01)],
            error="ID_MISSING")
    s.invalid(CAT, "DELETE_RANKED of ranks 1, 4 and UPDATE_RANKED of ranks 0, 4: L4 deleted and updated", SEC)

    s = keyed(g, "ranked_update_of_deleted_range", 6)
    L = s.live()
    s.frame(ranges=[[(int(L[2]), int(L[3]))]], ranked_updates=[ranked_update(s, [3], 0x01)], error="ID_MISSING")
    s.invalid(CAT, "DELETE_RANGES [L2, L3] and UPDATE_RANKED of rank 3 (L3)", SEC)

    s = keyed(g, "ranked_update_of_replaced", 6)
    L = s.live()
    s.frame(deletes=[L[[2]]], adds=[(L[[2]], s.codes(1))], ranked_updates=[ranked_update(s, [2], 0x01)],
            error="DUPLICATE_ID")
    s.invalid(CAT, "DELETE_IDS and ADD of L2 (a replace) with UPDATE_RANKED of rank 2 (L2): one id in an ADD and an "
                   "UPDATE block", SEC)

    # structure (F11) and the ranks role (F12)
    struct_sec = [S_OPS, S_SECTIONS]
    for vid, build, desc, sec in [
        ("ranked_update_mask_0", lambda s: dict(ranked_updates=[ranked_update(s, [1], 0x01)],
                                                tweak=both(set_block(0, mask=0), set_block(0, sections=[0]))),
         "UPDATE_RANKED with mask 0 (and only its ranks section)", [S_OPS]),
        ("ranked_update_mask_bit_6", lambda s: dict(ranked_updates=[ranked_update(s, [1], 0x01)],
                                                    tweak=set_block(0, mask=0x41)),
         "UPDATE_RANKED mask 0x41 (bit 6 names no attribute)", [S_OPS]),
        ("ranked_update_missing_band", lambda s: dict(ranked_updates=[ranked_update(s, [1, 2], 0x21)],
                                                      tweak=lambda ff, pl: ff.blocks[0].sections.pop()),
         "UPDATE_RANKED mask 0x21 at SH degree 1 with 2 sections (needs 1 + 1 + 1)", struct_sec),
        ("ranked_update_extra_section", lambda s: dict(ranked_updates=[ranked_update(s, [1, 2], 0x01)],
                                                       tweak=lambda ff, pl: ff.blocks[0].sections.insert(0, 0)),
         "UPDATE_RANKED mask 0x01 with 3 sections (needs 2)", struct_sec),
        ("ranked_delete_two_sections", lambda s: dict(ranked_deletes=[np.array([1, 2], np.uint32)],
                                                      tweak=set_block(0, sections=[0, 0])),
         "DELETE_RANKED with 2 sections", struct_sec),
        ("ranked_delete_no_section", lambda s: dict(ranked_deletes=[np.array([1, 2], np.uint32)],
                                                    tweak=set_block(0, sections=[])),
         "DELETE_RANKED without its section", struct_sec),
    ]:
        s = keyed(g, vid, 4)
        s.frame(error="MALFORMED", model=False, **build(s))
        s.invalid(CAT, desc, sec)

    s = keyed(g, "ranked_update_mask_past_degree", 4, hf_preset("compact", 0))
    s.frame(ranked_updates=[ranked_update(s, [1], 0x01)], tweak=set_block(0, mask=0x20, sections=[0]),
            error="MALFORMED", model=False)
    s.invalid(CAT, "UPDATE_RANKED mask 0x20 at SH degree 0 (full mask 0x1F; 1 section, as the mask asks)", [S_OPS])

    s = keyed(g, "ranked_ranks_width_8", 4)
    s.frame(ranked_deletes=[np.array([1, 3], np.uint32)], enc=Encoding(ranks=0, compression="none"),
            tweak=ranks_as_u64, error="MALFORMED", model=False)
    s.invalid(CAT, "DELETE_RANKED whose ranks are written as u64 ids (width 8, raw_size 16; the ranks role is u32, "
                   "width 4)", struct_sec)

    s = keyed(g, "ranked_update_ranks_width_2", 4)
    s.frame(ranked_updates=[ranked_update(s, [1, 3], 0x01)], enc=Encoding(compression="none"),
            tweak=lambda ff, pl: ff.sections.__setitem__(0, replace(ff.sections[0], width=2)), error="MALFORMED",
            model=False)
    s.invalid(CAT, "UPDATE_RANKED ranks section declaring width 2 (u32: 4)", struct_sec)

    # the frame limit (F10)
    s = keyed(g, "ranked_ids_limit_past", 4, limits={"max_ids_per_frame": 4})
    s.add_frame(2)
    s.frame(ranked_updates=[ranked_update(s, [0, 1, 2], 0x01)], ranked_deletes=[np.array([3, 4], np.uint32)],
            error="LIMIT_EXCEEDED", model=False)
    s.invalid(CAT, "UPDATE_RANKED of 3 and DELETE_RANKED of 2 with max_ids_per_frame 4 (kinds 8 and 9 count)",
              [S_LIMITS, S_OPS])

    s = keyed(g, "ranked_delete_ids_limit_past", 2, limits={"max_ids_per_frame": 2})
    s.add_frame(2)
    s.frame(ranked_deletes=[np.array([0, 1, 2], np.uint32)], error="LIMIT_EXCEEDED", model=False)
    s.invalid(CAT, "a frame whose only block is DELETE_RANKED of 3, with max_ids_per_frame 2", [S_LIMITS, S_OPS])

