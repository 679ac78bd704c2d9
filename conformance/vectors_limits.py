"""Vectors for SPEC.md 9.1 (limits): each decoder limit exactly at and one past, claims far over
the defaults (checked before decompression), and header parameters at their bounds.
"""
from __future__ import annotations

from dataclasses import replace

from . import craft
from .craft import DELETE_IDS, DELETE_RANGES, DELTA, SHUFFLE, BlockFields, Section
from .spec_index import S_FRAME_REC, S_GRID, S_HEADER, S_HEADER_REC, S_LIMITS, S_ORDER, S_QDOMAIN
from .vector_stream import G63, NARROW, VectorWriter, hf_preset, hf_quant


def gen_limits_valid_and_invalid(g: VectorWriter) -> None:
    sec = [S_LIMITS]

    def pair(name, desc_at, desc_past, build):
        """build(stream, past: bool) -> None; the limits live on the stream."""
        for past in (False, True):
            s = build(past)
            if past:
                s.invalid("limits", desc_past, sec)
            else:
                s.valid("limits", desc_at, sec)

    def ids_limit(past):
        s = g.stream(f"lim_ids_per_frame_{'past' if past else 'at'}", limits={"max_ids_per_frame": 16}, key_n=10)
        live = s.live()
        up = live[2:8 + past]
        s.frame(deletes=[live[:2]], adds=[(s.fresh_ids(8), s.codes(8))], updates=[(up, 0x01, s.residuals(up, 0x01))],
                error="LIMIT_EXCEEDED" if past else None, model=False)
        return s
    pair("ids", "max_ids_per_frame 16: 2 deletes + 8 adds + 6 updates = 16", "17 ids in a frame, limit 16", ids_limit)

    def ranges_limit(past):
        s = g.stream(f"lim_ranges_per_frame_{'past' if past else 'at'}", limits={"max_ranges_per_frame": 4}, key_n=6)
        rs = [(1, 2), (10, 20)] + ([(30, 40)] if past else [])
        s.frame(ranges=[rs], cells=[(0, [100, 200])], error="LIMIT_EXCEEDED" if past else None, model=False)
        return s
    pair("ranges", "max_ranges_per_frame 4: 2 ranges + 2 cells", "3 ranges + 2 cells, limit 4", ranges_limit)

    def blocks_limit(past):
        s = g.stream(f"lim_blocks_{'past' if past else 'at'}", limits={"max_blocks": 4}, key_n=6)
        live = s.live()
        s.frame(deletes=[live[:1]], ranges=[[(1, 1)]], adds=[(s.fresh_ids(1), s.codes(1))],
                updates=[(live[1:2], 0x01, s.residuals(live[1:2], 0x01))], cells=[(0, [5])] if past else [],
                error="LIMIT_EXCEEDED" if past else None, model=False)
        return s
    pair("blocks", "max_blocks 4: a frame with 4 blocks", "5 blocks, limit 4", blocks_limit)

    def sections_limit(past):
        s = g.stream(f"lim_sections_{'past' if past else 'at'}", limits={"max_sections": 8}, key_n=4)
        s.frame(deletes=[s.live()[:1]], adds=[(s.fresh_ids(2), s.codes(2))], ranges=[[(1, 1)]] if past else [],
                error="LIMIT_EXCEEDED" if past else None, model=False)
        return s
    pair("sections", "max_sections 8: DELETE_IDS (1) + ADD at SH 1 (7) = 8 sections",
         "9 sections, limit 8", sections_limit)

    def frame_bytes(past):
        s = g.stream(f"lim_frame_bytes_{'past' if past else 'at'}", key_n=2)
        rec = s.add_frame(6, error="LIMIT_EXCEEDED" if past else None, model=False) if past else s.add_frame(6)
        s.limits = {"max_frame_bytes": len(rec) - past}
        return s
    pair("frame_bytes", "max_frame_bytes equal to the largest frame's frame_len",
         "max_frame_bytes one below the second frame's frame_len", frame_bytes)

    def header_bytes(past):
        hf = hf_preset("compact", 1)
        body = craft.header_body(hf)
        lim = {"max_header_bytes": len(body) - past}
        if past:
            g.header_invalid("lim_header_bytes_past", "limits", "max_header_bytes one below the header's body_len",
                             sec + [S_HEADER_REC], craft.header(hf), "LIMIT_EXCEEDED", lim)
            return None
        s = g.stream("lim_header_bytes_at", hf=hf, limits=lim, key_n=2)
        return s
    s = header_bytes(False)
    s.valid("limits", "max_header_bytes equal to the header's body_len", sec + [S_HEADER_REC])
    header_bytes(True)

    def gaussians(past):
        s = g.stream(f"lim_scene_gaussians_{'past' if past else 'at'}", limits={"max_gaussians": 32}, key_n=30)
        s.add_frame(2 + past, error="LIMIT_EXCEEDED" if past else None)
        return s
    pair("gaussians", "decoder limit max_gaussians 32 reached exactly", "33 live Gaussians, decoder limit 32",
         gaussians)

    def budget(past):
        hf = hf_preset("compact", 1, max_gaussians=20)
        s = g.stream(f"lim_header_budget_{'past' if past else 'at'}", hf=hf, key_n=18)
        live = s.live()
        s.frame(deletes=[live[:1]], adds=[(s.fresh_ids(3 + past), s.codes(3 + past))],
                error="LIMIT_EXCEEDED" if past else None)
        return s
    pair("budget", "header max_gaussians 20 reached exactly (after a delete and adds in one frame)",
         "21 live Gaussians with header max_gaussians 20", budget)

    def keyframe_budget(past):
        hf = hf_preset("compact", 1, max_gaussians=8)
        s = g.stream(f"lim_keyframe_budget_{'past' if past else 'at'}", hf=hf, key_n=8)
        s.frame(key=True, adds=[(s.fresh_ids(8 + past), s.codes(8 + past))], error="LIMIT_EXCEEDED" if past else None)
        return s
    pair("kbudget", "a keyframe replacing 8 Gaussians by 8 under budget 8 (old ones do not count)",
         "a keyframe of 9 Gaussians under budget 8", keyframe_budget)

    def raw_bytes(past):
        s = g.stream(f"lim_frame_raw_bytes_{'past' if past else 'at'}", key_n=1)
        s.add_frame(5, error="LIMIT_EXCEEDED" if past else None, model=False) if past else s.add_frame(5)
        s.limits = {"max_frame_raw_bytes": s.last_raw - past}
        return s
    pair("raw", "max_frame_raw_bytes equal to the sum of the frame's raw_size",
         "sum of raw_size one above max_frame_raw_bytes (checked before decompressing)", raw_bytes)

    # Default limits, claimed by counts. The section is consistent up to the zstd frame header (which
    # declares raw_size); only its blocks are garbage. F10 must be finished before decompressing, so
    # LIMIT_EXCEEDED is the one acceptable answer: DECOMPRESSION_FAILED means the decoder decompressed first.
    def claim(vid, kind, count, comps, desc):
        s = g.stream(vid, key_n=2)
        raw = count * comps * 8
        stored = craft.zstd_header_only(raw) + bytes(range(16))

        def t(ff, pl):
            pl.parts = [stored]
            ff.sections = [Section(0, len(stored), raw, 1, DELTA | SHUFFLE, 8)]
            ff.blocks = [BlockFields(kind, count, 0, 0, [0])]
        s.frame(tweak=t, error="LIMIT_EXCEEDED", model=False)
        s.invalid("limits", desc, sec + [S_ORDER])
    claim("order_limit_before_decompress_ids", DELETE_IDS, (1 << 24) + 1, 1,
          "DELETE_IDS claiming 2^24+1 ids: zstd header declares the 128 MiB raw_size, blocks are garbage; "
          "LIMIT_EXCEEDED before any decompression")
    claim("order_limit_before_decompress_ranges", DELETE_RANGES, (1 << 20) + 1, 2,
          "DELETE_RANGES claiming 2^20+1 ranges over a zstd header and garbage blocks; LIMIT_EXCEEDED before "
          "any decompression")

    rec_head = craft.frame_prefix((1 << 30) + 1, 8)
    s = g.stream("lim_claim_frame_bytes_default", key_n=2)
    s.raw(rec_head + bytes(40), error="LIMIT_EXCEEDED")
    s.invalid("limits", "frame_len 2^30+1 with 52 bytes present: LIMIT_EXCEEDED (checked before TRUNCATED)",
              sec + [S_FRAME_REC, S_ORDER])

    body = craft.header_body(hf_preset("compact", 1))
    g.header_invalid("lim_claim_header_bytes_default", "limits",
                     "header body_len 65537 with a short body: LIMIT_EXCEEDED (checked before TRUNCATED)",
                     sec + [S_HEADER_REC, S_ORDER], craft.header_record(body, body_len=65537), "LIMIT_EXCEEDED")

    # header parameters exactly at their bounds
    bounds = [
        ("lim_header_max_gaussians_2p24", hf_preset("compact", 1, max_gaussians=1 << 24),
         "header max_gaussians 2^24 (the spec maximum)"),
        ("lim_grid_63_bits", hf_preset("compact", 1, G63), "cell_bits 20 + slot_bits 3: 63-bit ids"),
        ("lim_grid_smallest", hf_preset("compact", 1, ((0.0, 0.0, 0.0), 1.0, 1, 0)), "cell_bits 1, slot_bits 0"),
        ("lim_cell_plus_position_bits_30",
         hf_quant(replace(NARROW, position_bits=10), 1, ((-8.0, -8.0, -8.0), 0.5, 20, 0)),
         "cell_bits 20 + position_bits 10 = 30"),
    ]
    for vid, hf, desc in bounds:
        s = g.stream(vid, hf=hf, key_n=3)
        s.valid("limits", desc, sec + [S_GRID, S_HEADER, S_QDOMAIN])
