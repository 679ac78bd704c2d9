"""SPEC.md section numbers by topic, as the manifest's "sections" lists them.

One table, so a renumbering of SPEC.md is one edit here and a regeneration.
"""
S_MODEL, S_STATE, S_GRID, S_IDS, S_OCTREE = "2.1", "2.5", "3.1", "3.2", "3.5"
S_RECORDS, S_HEADER_REC, S_FRAME_REC, S_SECTIONS, S_SCHEMA = "4.1", "4.2", "4.3", "4.4", "4.5"
S_HEADER, S_FRAME, S_CRC, S_ORDER = "4.6", "4.7", "4.8", "4.9"
S_CODES, S_LOSSLESS, S_QUANT, S_VALIDITY, S_QDOMAIN = "5.1", "5.2", "5.3", "5.6", "5.7"
S_PRESETS, S_PALETTE = "5.8", "5.9"
S_OPS, S_IDRULES, S_APPLY, S_KEYFRAME, S_SEQ = "6.1", "6.2", "6.3", "6.4", "6.5"
S_DIGEST, S_COMPOSE, S_LIMITS, S_ERRORS, S_VERSION = "7", "8", "9.1", "9.2", "10"
