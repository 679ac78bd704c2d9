"""One conformance vector under construction, and the writer that files it in the manifest.

``Stream`` builds a header and frames with craft and applies every frame to the reference model
(conformance.refmodel) as it goes, so a valid vector's digests and final state come from a second
reading of the spec, never from the codec; a frame declared invalid must be refused by the model
with the declared code. ``VectorWriter`` writes each stream file and its manifest entry, after
refmodel.check_records has walked its records through the checks of SPEC.md 4.9 and
refmodel.decode_stream has read the file from its bytes to the same digests and error.
"""
from __future__ import annotations

import dataclasses
import os
import zlib
from dataclasses import replace

import numpy as np

from codec import Limits, Profile

from . import craft
from .attribute_codes import dtype_of, per_gaussian, planar, rand_codes
from .craft import KEYFRAME, Encoding, FrameFields, HeaderFields, QuantFields
from .refmodel import Layout, RefError, RefFrame, RefState, check_records, decode_stream, digest_text


LIMIT_NAMES = [f.name for f in dataclasses.fields(Limits)]
DEFAULT_LIMITS = Limits()
G = ((-8.0, -8.0, -8.0), 1.0, 4, 8)          # default grid: 16^3 cells of 1.0, 8 slot bits, ids < 2^20
G63 = ((-1024.0, -1024.0, -1024.0), 0.001953125, 20, 3)   # 63-bit ids
NARROW = QuantFields(4, 6, -14.0, 4.0, 7, 5, 6, -3.5, 3.5, (5, 4, 3), (1.2, 1.0, 0.8))
STATE_MAX = 64   # manifest lists the full final state when it has at most this many Gaussians


def hf_preset(name: str, d: int, grid=G, **kw) -> HeaderFields:
    """A preset's header at SH degree d (the codec's Profile.preset: a palette preset has none at d = 0);
    with an SH palette, required_features bit 0 is set unless kw says otherwise."""
    q = Profile.preset(name, d).quant
    qf = QuantFields.of(q, d) if q is not None else None
    kw.setdefault("required_features", craft.SH_PALETTE if qf is not None and qf.sh_palette else 0)
    return HeaderFields(d, grid, qf, name, **kw)


def hf_quant(q: QuantFields, d: int, grid=G, name="custom", **kw) -> HeaderFields:
    return HeaderFields(d, grid, replace(q, rest_bits=tuple(q.rest_bits[:d]), rest_range=tuple(q.rest_range[:d])),
                        name, **kw)


class Stream:
    """A header and frames under construction, with the reference model kept in step."""

    def __init__(self, writer: "VectorWriter", vid: str, hf: HeaderFields | None = None, limits: dict | None = None,
                 header: bytes | None = None):
        self.writer, self.vid = writer, vid
        self.hf = hf or hf_preset("compact", 1)
        self.L = Layout.of_header(self.hf)
        self.limits = dict(limits or {})
        lim = Limits(**self.limits)
        budget = min(self.hf.max_gaussians or lim.max_gaussians, lim.max_gaussians)
        self.model = RefState(self.L, budget)
        self.rng = np.random.default_rng(zlib.crc32(vid.encode()))
        self.records = [header if header is not None else craft.header(self.hf)]
        self.digests: list[str] = []
        self.fail: tuple[int, str] | None = None
        self.last_raw = 0

    # -- helpers on the model --------------------------------------------------------------------
    @property
    def seq(self) -> int:
        return self.model.seq

    def live(self) -> np.ndarray:
        return np.array(sorted(self.model.g), np.uint64)

    def fresh_ids(self, n: int, lo: int = 0, hi: int | None = None) -> np.ndarray:
        hi = self.L.id_limit if hi is None else hi
        taken = set(self.model.g)
        out: set[int] = set()
        while len(out) < n:
            for x in self.rng.integers(lo, hi, size=n, dtype=np.uint64, endpoint=False):
                if int(x) not in taken and len(out) < n:
                    out.add(int(x))
        return np.array(sorted(out), np.uint64)

    def codes(self, n: int) -> list[np.ndarray]:
        return rand_codes(self.L, n, self.rng)

    def codes_of(self, ids) -> list[np.ndarray]:
        return planar(self.L, [self.model.g[int(i)] for i in ids])

    def residuals(self, ids, mask: int, new: list[np.ndarray] | None = None) -> list[np.ndarray]:
        """Residuals taking ``ids`` to fresh valid codes (or ``new``) on the masked attributes."""
        old = self.codes_of(ids)
        new = new or self.codes(len(ids))
        out = []
        for a in range(6):
            if mask >> a & 1:
                r = [[self.L.wrap(a, int(x) - int(y)) for x, y in zip(nr, orow)] for nr, orow in zip(new[a], old[a])]
                out.append(np.array(r, np.int64).reshape(old[a].shape).astype(dtype_of(self.L, a)))
            else:
                out.append(np.zeros(old[a].shape, dtype_of(self.L, a)))
        return out

    def add_frame(self, n: int, key: bool = False, **kw) -> bytes:
        ids = self.fresh_ids(n)
        return self.frame(key=key, adds=[(ids, self.codes(n))], **kw)

    # -- frames ----------------------------------------------------------------------------------
    def frame(self, *, key=False, adds=(), updates=(), deletes=(), ranges=(), cells=(), palettes=(), implicit=(), ext=(), seq=None,
              base=None, digest="auto", flags=None, features=0, extra_field=None, enc: Encoding | None = None,
              order=None, tweak=None, post=None, record=None, error: str | None = None, model: bool = True,
              layout=None, ranked_updates=(), ranked_deletes=()) -> bytes:
        """Build, model and append one frame. ``error`` marks it as the frame where decoding must fail.
        ``palettes``: PALETTE blocks, [(indices, (3K, n) entry codes)] (streams with an SH palette);
        ``implicit``: ADD_IMPLICIT blocks, [(placements, codes)] (POSITION's codes unused);
        ``ranked_updates``: UPDATE_RANKED blocks, [(ranks, mask, residuals)]; ``ranked_deletes``: DELETE_RANKED
        blocks, [ranks]. Ranks go to the model as ranks: it resolves them against its own state (SPEC.md 6.1)."""
        assert self.fail is None, "no frames after the failing one"
        enc = enc or Encoding()
        L = self.L
        seq = self.seq + 1 if seq is None else seq
        base = (self.seq if not key else 0) if base is None else base
        blocks, pl = craft.op_blocks(L.sh_degree, enc, deletes=deletes, ranges=ranges, cells=cells, palettes=palettes,
                                     adds=adds, updates=updates, ext=ext, palette=bool(L.palette), implicit=implicit,
                                     ranked_updates=ranked_updates, ranked_deletes=ranked_deletes)
        if order is not None:
            blocks = order(blocks)

        rf = RefFrame(seq, base, key,
                      adds=[[(int(i), per_gaussian(c, j)) for j, i in enumerate(ids)] for ids, c in adds],
                      updates=[[(int(i), m, per_gaussian(r, j)) for j, i in enumerate(ids)] for ids, m, r in updates],
                      delete_ids=[[int(i) for i in ids] for ids in deletes],
                      ranges=[(int(a), int(b)) for rs in ranges for a, b in rs],
                      cells=[(lv, int(c)) for lv, cs in cells for c in cs],
                      palettes=[[(int(e), tuple(int(x) for x in codes[:, j])) for j, e in enumerate(index)]
                                for index, codes in palettes],
                      implicit=[[(int(v), per_gaussian(c, j)) for j, v in enumerate(q)] for q, c in implicit],
                      ranked_updates=[[(int(k), m, per_gaussian(r, j)) for j, k in enumerate(ranks)]
                                      for ranks, m, r in ranked_updates],
                      ranked_deletes=[[int(k) for k in ranks] for ranks in ranked_deletes])
        if error is None:
            trial = self._copy_model()
            trial.apply(rf)
            rf.digest = trial.digest() if digest == "auto" else digest
            self.model.apply(rf)
            self.digests.append(digest_text(self.model.digest()))
        else:
            rf.digest = None if digest == "auto" else digest
            if model:
                try:
                    self._copy_model().apply(rf)
                except RefError as e:
                    if e.code != error:
                        raise AssertionError(f"{self.vid}: model says {e.code}, vector declares {error}") from None
                else:
                    raise AssertionError(f"{self.vid}: model accepts a frame declared {error}")
            self.fail = (len(self.records) - 1, error)
        ff = FrameFields(seq, base, (KEYFRAME if key else 0) if flags is None else flags, features,
                         rf.digest, blocks, list(pl.descs), extra_field)
        if tweak is not None:
            tweak(ff, pl)
        self.last_raw = sum(s.raw_size for s in ff.sections)
        rec = craft.frame_record((layout or craft.frame_meta)(ff), pl.bytes(), **(record or {}))
        if post is not None:
            rec = post(rec)
        self.records.append(rec)
        return rec

    def raw(self, rec: bytes, error: str) -> None:
        """Append hand-made record bytes at which decoding must fail with ``error``."""
        assert self.fail is None
        self.fail = (len(self.records) - 1, error)
        self.records.append(rec)

    def _copy_model(self) -> RefState:
        return self.model.copy()

    # -- results ---------------------------------------------------------------------------------
    def data(self) -> bytes:
        return b"".join(self.records)

    def valid(self, category: str, desc: str, sections: list[str], state: bool = True) -> None:
        assert self.fail is None
        exp = {"result": "valid", "digests": self.digests}
        if state and len(self.model.g) <= STATE_MAX:
            exp["state"] = self.model.state_json()
            if self.L.palette:
                exp["palette"] = self.model.palette_json()
        self.writer.emit(self.vid, category, desc, sections, self.data(), exp, self.limits)

    def invalid(self, category: str, desc: str, sections: list[str], ref_records: bool = False) -> None:
        assert self.fail is not None, self.vid
        frame, code = self.fail
        exp = {"result": "invalid", "frame": frame, "error": code, "digests": self.digests[:frame]}
        self.writer.emit(self.vid, category, desc, sections, self.data(), exp, self.limits, ref_records)


class VectorWriter:
    def __init__(self, out: str):
        self.out = out
        self.entries: list[dict] = []

    def stream(self, vid, hf=None, limits=None, header=None, key_n: int | None = 4) -> Stream:
        """A new stream, by default already holding a keyframe of ``key_n`` Gaussians."""
        s = Stream(self, vid, hf, limits, header)
        if key_n is not None:
            s.add_frame(key_n, key=True)
        return s

    def emit(self, vid, category, desc, sections, data: bytes, expected: dict, limits: dict | None = None,
             ref_records: bool = False) -> None:
        """``ref_records``: the expected error is one of H1..H9 / F1..F9, which refmodel.check_records
        must find by itself; for every other vector it must find nothing, or the same error."""
        assert "\n" not in desc and vid not in {e["id"] for e in self.entries}, vid
        found = check_records(data, limits or {})
        want = None if expected["result"] == "valid" else (expected["frame"], expected["error"])
        if found != want and (ref_records or found is not None):
            raise AssertionError(f"{vid}: refmodel.check_records says {found}, vector declares {want}")
        digests, failed = decode_stream(data, limits or {})
        if (digests, failed) != (expected["digests"], want):
            raise AssertionError(f"{vid}: refmodel.decode_stream reads {failed} after {digests[-2:]}, vector "
                                 f"declares {want} after {expected['digests'][-2:]}")
        entry = {"id": vid, "file": vid + ".gsd", "category": category, "description": desc,
                 "sections": sorted(set(sections), key=lambda s: [int(x) for x in s.split(".")])}
        if limits:
            assert set(limits) <= set(LIMIT_NAMES), limits
            # SPEC.md 9.1: a vector may only lower a limit (the runner refuses a manifest that raises one)
            assert all(0 <= v <= getattr(DEFAULT_LIMITS, k) for k, v in limits.items()), limits
            entry["limits"] = dict(sorted(limits.items()))
        entry["expected"] = expected
        self.entries.append(entry)
        with open(os.path.join(self.out, entry["file"]), "wb") as f:
            f.write(data)

    def header_invalid(self, vid, category, desc, sections, data: bytes, error: str, limits=None,
                       ref_records: bool = False) -> None:
        self.emit(vid, category, desc, sections, data,
                  {"result": "invalid", "frame": -1, "error": error, "digests": []}, limits, ref_records)

    def manifest(self) -> dict:
        return {
            "format": "GSD 1.4",
            "generator": "python -m conformance.generate",
            "digest_text": "count:lane0hex8:lane1hex8",
            "default_limits": dataclasses.asdict(DEFAULT_LIMITS),
            "vectors": self.entries,
        }


def set_block(i, **kw):
    def t(ff, pl):
        for k, v in kw.items():
            setattr(ff.blocks[i], k, v)
    return t


def set_section(i, **kw):
    def t(ff, pl):
        ff.sections[i] = replace(ff.sections[i], **kw)
    return t


def both(*fns):
    def t(ff, pl):
        for f in fns:
            f(ff, pl)
    return t


def flip(offset_fn, bit=0):
    """post(): flip one bit at offset_fn(rec) without fixing the CRC."""
    def p(rec):
        out = bytearray(rec)
        out[offset_fn(rec)] ^= 1 << bit
        return bytes(out)
    return p
