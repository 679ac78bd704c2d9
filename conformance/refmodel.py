"""A second, deliberately naive implementation of GSD, for the expected results.

The vectors' digests and states come from this pure-Python model (a dict of
id -> codes and a dict of palette entries, the spec's apply steps written out one
by one, GSD-HASH on Python ints), not from the codec's vectorized SceneState. The
generator then checks that the codec agrees, so a vector is only written when two
independent readings of the spec give the same answer. ``check_records`` does the
same for the record framing and the FlatBuffers verification of SPEC.md 4.5 (H1..H9,
F1..F9 of 4.9), byte by byte, and ``decode_stream`` reads a whole stream from its
bytes (header domains, frame limits, block structure, the section pipeline of 4.4,
then apply), so every vector's expected outcome is also the outcome of reading its
file here.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace
from functools import lru_cache
from math import isfinite, isqrt

import zstandard

from .craft import QuantFields, Section  # plain field records, as a header or frame holds them

M32 = 0xFFFFFFFF
ATTR_NAMES = ("position", "scale", "rotation", "opacity", "sh_dc", "sh_rest")


class RefError(Exception):
    def __init__(self, code: str, why: str = ""):
        super().__init__(f"{code}: {why}")
        self.code = code


def _width(bits: int) -> int:
    return 1 if bits <= 8 else 2


@dataclass(frozen=True)
class Layout:
    """Per attribute: components, byte width, signedness, and the code domain check.

    ``palette``: the header's ``sh_palette`` (SPEC.md 5.9). When it is not 0, a Gaussian's SH_REST is
    one u16 component, the index of a palette entry (valid below ``palette``), and the entries hold
    the ``3K`` component codes that SH_REST has without a palette (``entry_*``).
    """

    sh_degree: int
    quant: object  # craft.QuantFields or None (lossless)
    cell_bits: int
    slot_bits: int
    palette: int = 0

    @classmethod
    def of_header(cls, h) -> "Layout":
        return cls(h.sh_degree, h.quant, h.grid[2], h.grid[3], h.quant.sh_palette if h.quant is not None else 0)

    @property
    def id_limit(self) -> int:
        return 1 << (3 * self.cell_bits + self.slot_bits)

    @property
    def rest_comps(self) -> int:
        """3K: SH_REST components of a Gaussian without a palette, of a palette entry with one."""
        return 3 * ((self.sh_degree + 1) ** 2 - 1)

    def comps(self, a: int) -> int:
        if a == 5 and self.palette:
            return 1
        return (3, 3, 4, 1, 3, self.rest_comps)[a]

    @property
    def entry_width(self) -> int:
        """Width of SH_REST component codes (5.1): a Gaussian's without a palette, an entry's with one."""
        return _width(max(self.quant.rest_bits[: self.sh_degree], default=1))

    def width(self, a: int) -> int:
        q = self.quant
        if q is None or a == 0:
            return 4
        if a == 5:
            return 2 if self.palette else self.entry_width
        bits = (None, q.scale_bits, q.rotation_bits, q.opacity_bits, q.dc_bits)[a]
        return _width(bits)

    def signed(self, a: int) -> bool:
        return self.quant is not None and (a == 0 or (a == 5 and not self.palette))

    def wrap(self, a: int, v: int) -> int:
        """v reduced mod 2^(8w) and read back in the attribute's signedness."""
        return _read(v, self.width(a), self.signed(a))

    def entry_valid(self, codes: tuple) -> bool:
        """Lossy SH_REST component codes (of a Gaussian, or of a palette entry): |code| <= M of its degree."""
        q = self.quant
        k = (self.sh_degree + 1) ** 2 - 1
        return all(abs(c) <= (1 << (q.rest_bits[isqrt(j % k + 1) - 1] - 1)) - 1 for j, c in enumerate(codes))

    def valid(self, a: int, codes: tuple) -> bool:
        q = self.quant
        if q is None:  # float32 bit patterns: NaN and Inf are not values
            return all((c >> 23) & 0xFF != 0xFF for c in codes)
        if a == 0:
            return True
        if a == 2:
            top = (1 << q.rotation_bits) - 1
            return codes[0] <= 3 and all(c <= top for c in codes[1:])
        if a == 5:
            return all(0 <= c < self.palette for c in codes) if self.palette else self.entry_valid(codes)
        bits = (None, q.scale_bits, None, q.opacity_bits, q.dc_bits)[a]
        return all(0 <= c <= (1 << bits) - 1 for c in codes)


def _read(v: int, width: int, signed: bool) -> int:
    """v mod 2^(8 width), read as two's complement when ``signed``."""
    bits = 8 * width
    v &= (1 << bits) - 1
    if signed and v >> (bits - 1):
        v -= 1 << bits
    return v


# ------------------------------------------------------------------------------------- digest
def fmix32(h: int) -> int:
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & M32
    return h ^ (h >> 16)


@lru_cache(maxsize=None)
def _constants(lane: int, words: int) -> tuple[int, ...]:
    return tuple(fmix32(((j + 1) * 0x9E3779B1 + lane * 0x7F4A7C15) & M32) | 1 for j in range(words))


def record_hashes(words: list[int]) -> tuple[int, int]:
    """(h_0, h_1) of one record's words (SPEC.md 7.2)."""
    return tuple(fmix32(sum(x * y for x, y in zip(words, _constants(lane, len(words)))) & M32) for lane in (0, 1))


def gaussian_words(layout: Layout, gid: int, codes: tuple) -> list[int]:
    words = [gid & M32, gid >> 32]
    for a, comp in enumerate(codes):
        mask = (1 << (8 * layout.width(a))) - 1
        words += [c & mask for c in comp]
    return words


def entry_words(layout: Layout, index: int, codes: tuple) -> list[int]:
    """SPEC.md 7.1: a palette entry's record, w_0 = index, w_1 = 0xFFFFFFFF, then its codes zero-extended."""
    mask = (1 << (8 * layout.entry_width)) - 1
    return [index, M32] + [c & mask for c in codes]


def digest(layout: Layout, gaussians: dict, palette: dict | None = None) -> tuple[int, int, int]:
    """GSD-HASH of live Gaussians (id -> codes) and palette entries (index -> codes; an entry that is
    absent or all zero is no record)."""
    lanes = [0, 0]
    records = [gaussian_words(layout, gid, codes) for gid, codes in gaussians.items()]
    records += [entry_words(layout, e, c) for e, c in (palette or {}).items() if any(c)]
    for w in records:
        h = record_hashes(w)
        lanes = [(lanes[lane] + h[lane]) & M32 for lane in (0, 1)]
    return (len(gaussians), lanes[0], lanes[1])


def digest_text(d: tuple[int, int, int]) -> str:
    return f"{d[0]}:{d[1]:08x}:{d[2]:08x}"


# ------------------------------------------------------------------------------------- frames
@dataclass
class RefFrame:
    """One frame's operations as plain Python values (codes per Gaussian: tuple per attribute)."""

    seq: int
    base_seq: int
    keyframe: bool = False
    adds: list = field(default_factory=list)        # [[(id, codes)], ...] one list per ADD block
    updates: list = field(default_factory=list)     # [[(id, mask, residuals)], ...] per UPDATE block
    delete_ids: list = field(default_factory=list)  # [[id, ...], ...] per DELETE_IDS block
    ranges: list = field(default_factory=list)      # [(first, last), ...]
    cells: list = field(default_factory=list)       # [(level, code), ...]
    palettes: list = field(default_factory=list)    # [[(index, entry codes), ...], ...] per PALETTE block
    implicit: list = field(default_factory=list)    # [[(placement, codes), ...], ...] per ADD_IMPLICIT block
    ranked_updates: list = field(default_factory=list)  # [[(rank, mask, residuals)], ...] per UPDATE_RANKED block
    ranked_deletes: list = field(default_factory=list)  # [[rank, ...], ...] per DELETE_RANKED block
    digest: tuple | None = None


def _ascending(ids: list[int], what: str = "ids") -> None:
    for x, y in zip(ids, ids[1:]):
        if y == x:
            raise RefError("DUPLICATE_ID", f"{what} repeated in a block")
        if y < x:
            raise RefError("BAD_VALUE", f"{what} not ascending")


def implicit_ids(L: Layout, q: list[int]) -> list[int]:
    """SPEC.md 6.1: the ids of an ADD_IMPLICIT block's placements."""
    B, S, pb = L.cell_bits, L.slot_bits, L.quant.position_bits
    ids, first = [], 0
    for i, v in enumerate(q):
        if v >= 1 << (3 * (B + pb)):
            raise RefError("BAD_VALUE", "placement outside the grid")
        if i > 0 and v < q[i - 1]:
            raise RefError("BAD_VALUE", "placements descending")
        if i == 0 or v >> (3 * pb) != q[i - 1] >> (3 * pb):
            first = i
        if i - first >= 1 << S:
            raise RefError("BAD_VALUE", "more placements in a cell than it has slots")
        ids.append(((v >> (3 * pb)) << S) | (i - first))
    return ids


def resolve_ranks(live: list[int], ranks: list[int]) -> list[int]:
    """SPEC.md 6.1 resolve_ranked for one block: the ids its ranks name in ``live`` (the ids live before the
    frame, ascending), each rank checked in turn as the spec's loop does."""
    ids = []
    for i, r in enumerate(ranks):
        if i > 0 and r == ranks[i - 1]:
            raise RefError("DUPLICATE_ID", "ranks repeated in a block")
        if i > 0 and r < ranks[i - 1]:
            raise RefError("BAD_VALUE", "ranks not ascending")
        if r >= len(live):
            raise RefError("ID_MISSING", f"rank {r} with {len(live)} live ids")
        ids.append(live[r])
    return ids


def placement_codes(L: Layout, v: int) -> tuple[int, int, int]:
    """SPEC.md 6.1: the POSITION codes of a placement (demorton of its low 3 pb bits)."""
    c = [0, 0, 0]
    for i in range(L.quant.position_bits):
        for a in range(3):
            c[a] |= ((v >> (3 * i + a)) & 1) << i
    return tuple(c)


def implicit_adds(L: Layout, block: list) -> list:
    """An ADD_IMPLICIT block [(placement, codes)] as the ADD block it stands for [(id, codes)]."""
    ids = implicit_ids(L, [v for v, _ in block])
    return [(x, (placement_codes(L, v),) + tuple(codes[1:])) for x, (v, codes) in zip(ids, block)]


class RefState:
    def __init__(self, layout: Layout, max_gaussians: int):
        self.layout = layout
        self.max_gaussians = max_gaussians
        self.g: dict[int, tuple] = {}
        self.palette: dict[int, tuple] = {}   # entries ever set since the last keyframe; the rest are zero
        self.seq = 0

    def copy(self) -> "RefState":
        m = RefState(self.layout, self.max_gaussians)
        m.g, m.palette, m.seq = dict(self.g), dict(self.palette), self.seq
        return m

    def digest(self) -> tuple[int, int, int]:
        return digest(self.layout, self.g, self.palette)

    def apply(self, f: RefFrame) -> None:
        """The spec's apply steps in order; raises RefError and leaves the state alone on any problem."""
        L = self.layout
        if f.keyframe:
            if f.seq < 1:
                raise RefError("MALFORMED", "keyframe seq 0")
        else:
            if f.base_seq != self.seq:
                raise RefError("SEQUENCE_GAP")
            if f.seq <= f.base_seq:
                raise RefError("MALFORMED", "seq <= base_seq")
        if f.ranked_updates or f.ranked_deletes:
            # 0. ranked blocks become UPDATE and DELETE_IDS blocks, all against the ids live before the frame
            before = [] if f.keyframe else sorted(self.g)
            upd = [[(x, m, r) for x, (_, m, r) in zip(resolve_ranks(before, [k for k, _, _ in b]), b)]
                   for b in f.ranked_updates]
            gone = [resolve_ranks(before, b) for b in f.ranked_deletes]
            f = replace(f, updates=f.updates + upd, delete_ids=f.delete_ids + gone, ranked_updates=[],
                        ranked_deletes=[])
        if f.implicit:
            f = replace(f, adds=f.adds + [implicit_adds(L, b) for b in f.implicit], implicit=[])
        blocks = [[i for i, _ in b] for b in f.adds] + [[i for i, _, _ in b] for b in f.updates] + f.delete_ids
        for ids in blocks:
            _ascending(ids)
            if any(i >= L.id_limit for i in ids):
                raise RefError("BAD_VALUE", "id outside the id space")
        au = [i for b in blocks[: len(f.adds) + len(f.updates)] for i in b]
        if len(set(au)) != len(au) or len({i for b in f.delete_ids for i in b}) != sum(map(len, f.delete_ids)):
            raise RefError("DUPLICATE_ID", "id in two blocks")
        for first, last in f.ranges:
            if first > last or last >= L.id_limit:
                raise RefError("BAD_VALUE", "bad range")
        for level, code in f.cells:
            if level > L.cell_bits or code >= 1 << (3 * (L.cell_bits - level)):
                raise RefError("BAD_VALUE", "bad cell")
        if f.palettes and not L.palette:
            raise RefError("MALFORMED", "PALETTE block in a stream without an SH palette")
        for b in f.palettes:
            _ascending([e for e, _ in b], "palette indices")
            if any(e >= L.palette for e, _ in b):
                raise RefError("BAD_VALUE", "palette index >= sh_palette")
        entries = [e for b in f.palettes for e, _ in b]
        if len(set(entries)) != len(entries):
            raise RefError("DUPLICATE_ID", "palette index in two PALETTE blocks")
        # 1. a keyframe starts from the empty state and an all-zero palette
        live = {} if f.keyframe else dict(self.g)
        palette = {} if f.keyframe else dict(self.palette)
        dels = [i for b in f.delete_ids for i in b]
        if any(i not in live for i in dels):
            raise RefError("ID_MISSING", "DELETE_IDS of a missing id")
        shifts = [(level, L.slot_bits + 3 * level) for level, _ in f.cells]
        spans = list(f.ranges) + [(c << s, ((c + 1) << s) - 1) for (lv, c), (_, s) in zip(f.cells, shifts)]
        for i in list(live):
            if i in dels or any(a <= i <= b for a, b in spans):
                del live[i]
        # 2a. palette entries
        for b in f.palettes:
            for e, codes in b:
                if not L.entry_valid(codes):
                    raise RefError("BAD_VALUE", "palette entry code outside its domain")
                palette[e] = codes
        added = set()
        for b in f.adds:
            for i, codes in b:
                if i in live:
                    raise RefError("ID_EXISTS")
                if not all(L.valid(a, c) for a, c in enumerate(codes)):
                    raise RefError("BAD_VALUE", "ADD code outside its domain")
                live[i] = codes
                added.add(i)
        for b in f.updates:
            for i, mask, res in b:
                if i in added:
                    raise RefError("DUPLICATE_ID")
                if i not in live:
                    raise RefError("ID_MISSING", "UPDATE of a missing id")
                new = []
                for a, (old, r) in enumerate(zip(live[i], res)):
                    c = tuple(L.wrap(a, o + x) for o, x in zip(old, r)) if mask >> a & 1 else old
                    if not L.valid(a, c):
                        raise RefError("BAD_VALUE", "UPDATE result outside its domain")
                    new.append(c)
                live[i] = tuple(new)
        if len(live) > self.max_gaussians:
            raise RefError("LIMIT_EXCEEDED", "scene budget")
        if f.digest is not None and digest(L, live, palette) != tuple(f.digest):
            raise RefError("DIGEST_MISMATCH")
        self.g = live
        self.palette = palette
        self.seq = f.seq

    def state_json(self) -> list[dict]:
        """The state as the manifest lists it: Gaussians in id order, ids as decimal strings (they pass 2^53)."""
        out = []
        for gid in sorted(self.g):
            rec = {"id": str(gid)}
            for name, comp in zip(ATTR_NAMES, self.g[gid]):
                rec[name] = list(comp)
            out.append(rec)
        return out

    def palette_json(self) -> list[dict]:
        """The non-zero palette entries, indices ascending: {"index": e, "sh_rest": [3K codes, channel-major]}."""
        return [{"index": e, "sh_rest": list(c)} for e, c in sorted(self.palette.items()) if any(c)]


# ------------------------------------------------------------------------------------- records
# Record framing and metadata verification (SPEC.md 4.2, 4.3, 4.5 "Verification", 4.9 H1..H9 and
# F1..F9), written out from the spec text: plain byte reads, no FlatBuffers library.
HEADER_FIELDS = {  # StreamHeader / Quantization / Frame / OpBlock: field id -> (kind, size or type)
    "StreamHeader": {0: ("scalar", 1), 1: ("struct", 20), 2: ("table", "Quantization"), 3: ("string", None),
                     4: ("scalar", 8), 5: ("scalar", 4), 6: ("string", None), 7: ("scalar", 4)},
    "Quantization": {0: ("scalar", 1), 1: ("scalar", 1), 2: ("scalar", 4), 3: ("scalar", 4), 4: ("scalar", 1),
                     5: ("scalar", 1), 6: ("scalar", 1), 7: ("scalar", 4), 8: ("scalar", 4), 9: ("vector", 1),
                     10: ("vector", 4), 11: ("scalar", 4)},
    "Frame": {0: ("scalar", 8), 1: ("scalar", 8), 2: ("scalar", 4), 3: ("scalar", 8), 4: ("struct", 16),
              5: ("tables", "OpBlock"), 6: ("vector", 16)},
    "OpBlock": {0: ("scalar", 1), 1: ("scalar", 4), 2: ("scalar", 1), 3: ("scalar", 1), 4: ("vector", 4)},
}


class RefBuffer:
    """verify(B, T) of SPEC.md 4.5; ``fields[(t, id)]`` keeps each present field's position."""

    def __init__(self, data: bytes, root_type: str):
        self.b = data
        self.n = len(data)
        self.fields: dict = {}
        self.vectors: dict = {}   # (t, id) -> (first element position, length)
        self.tables: dict = {}    # (t, id) -> position of the table a table field refers to
        self.table_lists: dict = {}  # (t, id) -> positions of the tables of a vector of tables
        if self.n < 8:
            raise RefError("MALFORMED", "buffer shorter than 8 bytes")
        self.root = self.table(self.ref(0), root_type)

    def inside(self, p: int, k: int) -> None:
        if not (0 <= p and p + k <= self.n):
            raise RefError("MALFORMED", f"[{p}, {p + k}) outside the {self.n}-byte buffer")

    def uint(self, p: int, k: int) -> int:
        self.inside(p, k)
        return int.from_bytes(self.b[p:p + k], "little")

    def ref(self, p: int) -> int:
        o = self.uint(p, 4)
        if o == 0:
            raise RefError("MALFORMED", "offset 0")
        return p + o

    def table(self, t: int, type_name: str) -> int:
        self.inside(t, 4)
        s = self.uint(t, 4)
        vt = t - (s - (1 << 32) if s >= 1 << 31 else s)
        self.inside(vt, 4)
        vsize, tsize = self.uint(vt, 2), self.uint(vt + 2, 2)
        if vsize % 2 or vsize < 4:
            raise RefError("MALFORMED", f"vtable size {vsize}")
        self.inside(vt, vsize)
        if tsize < 4:
            raise RefError("MALFORMED", f"table size {tsize}")
        self.inside(t, tsize)
        for i, (kind, arg) in HEADER_FIELDS[type_name].items():
            if 4 + 2 * i + 2 > vsize:
                continue
            off = self.uint(vt + 4 + 2 * i, 2)
            if off == 0:
                continue
            p = t + off
            self.inside(p, arg if kind in ("scalar", "struct") else 4)
            self.fields[(t, i)] = p
            if kind == "table":
                self.tables[(t, i)] = self.table(self.ref(p), arg)
            elif kind in ("vector", "tables", "string"):
                v = self.ref(p)
                self.inside(v, 4)
                length = self.uint(v, 4)
                if kind == "string":
                    self.inside(v + 4, length + 1)
                    if self.b[v + 4 + length] != 0:
                        raise RefError("MALFORMED", "string terminator not 0")
                else:
                    self.inside(v + 4, length * (4 if kind == "tables" else arg))
                    if kind == "tables":
                        self.table_lists[(t, i)] = [self.table(self.ref(v + 4 + 4 * k), arg) for k in range(length)]
                self.vectors[(t, i)] = (v + 4, length)
        return t

    def scalar(self, t: int, i: int, k: int) -> int:
        p = self.fields.get((t, i))
        return 0 if p is None else self.uint(p, k)


SPEC_LIMITS = {"max_header_bytes": 1 << 16, "max_frame_bytes": 1 << 30, "max_gaussians": 1 << 24,
               "max_ids_per_frame": 1 << 24, "max_ranges_per_frame": 1 << 20, "max_blocks": 4096,
               "max_sections": 16384, "max_frame_raw_bytes": 1 << 32}   # SPEC.md 9.1
SH_PALETTE = 1   # StreamHeader.required_features bit 0 (SPEC.md 4.6, 5.9)


def _limits(limits: dict) -> dict:
    lim = dict(SPEC_LIMITS)
    lim.update({k: v for k, v in limits.items() if k in lim})
    return lim


def _u32(data: bytes, p: int) -> int:
    return int.from_bytes(data[p:p + 4], "little")


def _header_record(data: bytes, lim: dict) -> tuple[str | None, int, RefBuffer | None]:
    """H1..H9 of SPEC.md 4.9: (error or None, record length, the verified body)."""
    from zlib import crc32  # the CRC-32 of SPEC.md 4.8 (ISO-HDLC), as zlib computes it

    n = len(data)
    if n < 4:
        return "TRUNCATED", 0, None
    if data[:4] != b"GSDH":
        return "BAD_MAGIC", 0, None
    if n < 12:
        return "TRUNCATED", 0, None
    if data[4] != 1:
        return "UNSUPPORTED_VERSION", 0, None
    body_len = _u32(data, 8)
    if body_len > lim["max_header_bytes"]:
        return "LIMIT_EXCEEDED", 0, None
    if n < 16 + body_len:
        return "TRUNCATED", 0, None
    if crc32(data[:12 + body_len]) != _u32(data, 12 + body_len):
        return "BAD_CHECKSUM", 0, None
    try:
        h = RefBuffer(data[12:12 + body_len], "StreamHeader")
    except RefError as e:
        return e.code, 0, None
    if (h.root, 1) not in h.fields:
        return "MALFORMED", 0, None
    if h.scalar(h.root, 4, 8) & ~SH_PALETTE:
        return "UNSUPPORTED_FEATURE", 0, None
    return None, 16 + body_len, h


def _frame_record(data: bytes, pos: int, lim: dict) -> tuple[str | None, int, RefBuffer | None]:
    """F1..F9 of SPEC.md 4.9 for the record at ``pos``: (error or None, frame_len, the verified metadata)."""
    from zlib import crc32

    rec = data[pos:]
    if len(rec) < 4:
        return "TRUNCATED", 0, None
    if rec[:4] != b"GSDF":
        return "BAD_MAGIC", 0, None
    if len(rec) < 12:
        return "TRUNCATED", 0, None
    frame_len, meta_len = _u32(rec, 4), _u32(rec, 8)
    if frame_len < 16:
        return "MALFORMED", 0, None
    if frame_len > lim["max_frame_bytes"]:
        return "LIMIT_EXCEEDED", 0, None
    if len(rec) < frame_len:
        return "TRUNCATED", 0, None
    if meta_len > frame_len - 16:
        return "MALFORMED", 0, None
    if crc32(rec[:frame_len - 4]) != _u32(rec, frame_len - 4):
        return "BAD_CHECKSUM", 0, None
    try:
        f = RefBuffer(rec[12:12 + meta_len], "Frame")
    except RefError as e:
        return e.code, 0, None
    if f.vectors.get((f.root, 5), (0, 0))[1] > lim["max_blocks"]:
        return "LIMIT_EXCEEDED", 0, None
    if f.vectors.get((f.root, 6), (0, 0))[1] > lim["max_sections"]:
        return "LIMIT_EXCEEDED", 0, None
    if f.scalar(f.root, 3, 8) != 0:
        return "UNSUPPORTED_FEATURE", 0, None
    return None, frame_len, f


def check_records(data: bytes, limits: dict) -> tuple[int, str] | None:
    """The first error of H1..H9 / F1..F9 in a stream (record -1 is the header), or None.

    Checks after F9 (frame limits, blocks, sections, ids, apply) and H10 (header domains) are not
    looked at here (``decode_stream`` does them): a record that passes these is taken as far as its
    frame_len and the next record is read. ``limits``: the vector's limit overrides (names of SPEC.md 9.1).
    """
    lim = _limits(limits)
    err, pos, _ = _header_record(data, lim)
    if err:
        return -1, err
    k = 0
    while pos < len(data):
        err, frame_len, _ = _frame_record(data, pos, lim)
        if err:
            return k, err
        pos, k = pos + frame_len, k + 1
    return None


# ------------------------------------------------------------------------------------- reading a stream
# H10 and F10..F14 from the bytes: the header's parameter domains, the frame limits, op block
# structure (SPEC.md 6.1), the section pipeline (4.4), then apply (RefState). Written from the spec
# text with plain Python; zstd frames are opened by the zstandard library after the header checks
# of 4.4 are done here; gap codes (compression 2, 1.4) are read here bit by bit.

def _f32(b: bytes, p: int) -> float:
    return struct.unpack_from("<f", b, p)[0]


def read_header(h: RefBuffer) -> tuple[Layout, int]:
    """H10 on a verified StreamHeader (SPEC.md 4.6, 3.1, 5.7): (layout, header max_gaussians); BAD_HEADER
    for any parameter outside its domain."""
    b, t = h.b, h.root
    d = h.scalar(t, 0, 1)
    gp = h.fields[(t, 1)]
    origin, cell_size = [_f32(b, gp + 4 * i) for i in range(3)], _f32(b, gp + 12)
    cell_bits, slot_bits = b[gp + 16], b[gp + 17]
    features, max_gaussians = h.scalar(t, 4, 8), h.scalar(t, 5, 4)
    q = None
    qt = h.tables.get((t, 2))
    if qt is not None:
        def f32(i):
            p = h.fields.get((qt, i))
            return 0.0 if p is None else _f32(b, p)
        bits_at, nb = h.vectors.get((qt, 9), (0, 0))
        range_at, nr = h.vectors.get((qt, 10), (0, 0))
        q = QuantFields(h.scalar(qt, 0, 1), h.scalar(qt, 1, 1), f32(2), f32(3), h.scalar(qt, 4, 1),
                        h.scalar(qt, 5, 1), h.scalar(qt, 6, 1), f32(7), f32(8), tuple(b[bits_at:bits_at + nb]),
                        tuple(_f32(b, range_at + 4 * k) for k in range(nr)), h.scalar(qt, 11, 4))
    palette = q.sh_palette if q is not None else 0
    rules = [
        (d <= 3, "sh_degree > 3"),
        (all(isfinite(x) for x in origin), "grid origin not finite"),
        (isfinite(cell_size) and cell_size > 0, "cell_size not finite and > 0"),
        (1 <= cell_bits <= 20 and slot_bits <= 32 and 3 * cell_bits + slot_bits <= 63, "grid bits"),
        (max_gaussians <= 1 << 24, "max_gaussians > 2^24"),
        (bool(features & SH_PALETTE) == (palette != 0), "required_features bit 0 iff sh_palette != 0"),
    ]
    if q is not None:
        rules += [
            (1 <= q.position_bits <= 24 and cell_bits + q.position_bits <= 30, "position_bits"),
            (1 <= q.scale_bits <= 16, "scale_bits"),
            (isfinite(q.scale_min) and isfinite(q.scale_max) and q.scale_min < q.scale_max, "scale range"),
            (2 <= q.rotation_bits <= 16, "rotation_bits"),
            (1 <= q.opacity_bits <= 16, "opacity_bits"),
            (1 <= q.dc_bits <= 16, "dc_bits"),
            (isfinite(q.dc_min) and isfinite(q.dc_max) and q.dc_min < q.dc_max, "dc range"),
            (d <= len(q.rest_bits) <= 3 and d <= len(q.rest_range) <= 3, "rest_bits / rest_range entries"),
            (all(2 <= q.rest_bits[l] <= 16 for l in range(min(d, len(q.rest_bits)))), "rest_bits"),
            (all(isfinite(r) and r > 0 for r in q.rest_range[:d]), "rest_range"),
            (palette <= 1 << 16, "sh_palette > 65536"),
            (palette == 0 or d >= 1, "sh_palette at SH degree 0"),
        ]
    for ok, why in rules:
        if not ok:
            raise RefError("BAD_HEADER", why)
    return Layout(d, q, cell_bits, slot_bits, palette), max_gaussians



def zstd_content(stored: bytes, raw_size: int) -> bytes:
    """The content of exactly one Zstandard frame of ``raw_size`` bytes (SPEC.md 4.4 zstd rules); the frame
    header is read here, the blocks are decoded (and a content checksum verified) by the zstandard library."""
    def fail(why):
        return RefError("DECOMPRESSION_FAILED", why)

    if stored[:4] != b"\x28\xb5\x2f\xfd" or len(stored) < 5:
        raise fail("not a Zstandard frame")
    fhd = stored[4]
    fcs_flag, single, did_flag = fhd >> 6, fhd >> 5 & 1, fhd & 3
    p = 5 + (0 if single else 1)                      # Window_Descriptor unless single-segment
    did_size, fcs_size = (0, 1, 2, 4)[did_flag], (1 if single else 0, 2, 4, 8)[fcs_flag]
    if len(stored) < p + did_size + fcs_size:
        raise fail("frame header cut short")
    if int.from_bytes(stored[p:p + did_size], "little") != 0:
        raise fail("Dictionary_ID not 0")
    p += did_size
    if fcs_size == 0:
        raise fail("no Frame_Content_Size")
    fcs = int.from_bytes(stored[p:p + fcs_size], "little") + (256 if fcs_size == 2 else 0)
    if fcs != raw_size:
        raise fail("Frame_Content_Size != raw_size")
    dobj = zstandard.ZstdDecompressor().decompressobj()
    try:
        out = dobj.decompress(stored)
    except zstandard.ZstdError as e:
        raise fail(str(e)) from None
    if not dobj.eof or dobj.unused_data or len(out) != raw_size:
        raise fail("not exactly one frame of raw_size bytes")
    return out


def gap_decode(stored: bytes, n: int, w: int) -> list[int]:
    """gap_decode of SPEC.md 4.4 (compression 2, 1.4): the n values of a section stored as the order byte k,
    then per value the exp-Golomb code of order k of its gap (z zero bits, a one bit, z + k bits t, most
    significant first; gap (2^z - 1) * 2^k + t; value = previous value + 1 + gap, the first one its gap),
    then zero bits to the end of the last byte. Read one bit at a time."""
    def fail(why):
        return RefError("DECOMPRESSION_FAILED", "gap code: " + why)

    bits = 8 * w
    if len(stored) < 1:
        raise fail("no order byte")
    k = stored[0]
    if k >= bits:
        raise fail(f"order {k} not below {bits}")
    end = 8 * len(stored)
    pos = 8

    def bit(p: int) -> int:
        return (stored[p >> 3] >> (7 - (p & 7))) & 1

    u: list[int] = []
    prev = -1
    for _ in range(n):
        z = 0
        while True:
            if pos >= end:
                raise fail("a code runs past the stored bytes")
            b = bit(pos)
            pos += 1
            if b == 1:
                break
            z += 1
            if z + k > bits:
                raise fail(f"a run of {z} zeros at order {k}")
        if pos + z + k > end:
            raise fail("a code runs past the stored bytes")
        t = 0
        for _ in range(z + k):
            t = (t << 1) | bit(pos)
            pos += 1
        value = prev + 1 + ((1 << z) - 1) * (1 << k) + t
        if value >= 1 << bits:
            raise fail(f"a value of {bits} bits or more")
        u.append(value)
        prev = value
    if end - pos >= 8:
        raise fail("a whole byte after the last code")
    if any(bit(p) for p in range(pos, end)):
        raise fail("a one among the padding bits")
    return u


def decode_section(payload: bytes, s: Section, comps: int, n: int, w: int) -> list[int]:
    """decode_section of SPEC.md 4.4: the unsigned values, component j of element i at j*n + i."""
    if s.width != w:
        raise RefError("MALFORMED", f"section width {s.width}, role width {w}")
    if s.filters & 0xF0:
        raise RefError("UNSUPPORTED_FEATURE", "filter bits 4..7")
    if s.raw_size != comps * n * w:
        raise RefError("MALFORMED", "raw_size")
    if s.offset + s.stored_size > len(payload):
        raise RefError("MALFORMED", "section past the payload")
    stored = payload[s.offset:s.offset + s.stored_size]
    if s.compression == 0:
        if s.stored_size != s.raw_size:
            raise RefError("MALFORMED", "uncompressed stored_size != raw_size")
        raw = stored
    elif s.compression == 2:                          # gap code (1.4): the values themselves, no filter to undo
        if comps != 1 or w == 8 or s.filters != 0:
            raise RefError("MALFORMED", "gap code on a section of C != 1, width 8 or with filters")
        return gap_decode(stored, n, w)
    elif s.compression == 1:
        raw = zstd_content(stored, s.raw_size)
    else:
        raise RefError("UNSUPPORTED_FEATURE", f"compression {s.compression}")
    N = comps * n
    if s.filters & 4 and w > 1:                       # SHUFFLE: plane k holds byte k of every element
        tmp = bytearray(N * w)
        for k in range(w):
            tmp[k::w] = raw[k * N:(k + 1) * N]
        raw = bytes(tmp)
    u = [int.from_bytes(raw[e * w:(e + 1) * w], "little") for e in range(N)]
    top = (1 << (8 * w)) - 1
    if s.filters & 2:                                 # ZIGZAG
        u = [(x >> 1) ^ ((0 - (x & 1)) & top) for x in u]
    if s.filters & 1:                                 # DELTA, restarting at each component
        for j in range(comps):
            for i in range(1, n):
                u[j * n + i] = (u[j * n + i] + u[j * n + i - 1]) & top
    if s.filters & 8 and comps % 3 == 0:              # CHANNEL (1.3): three channels of g components
        g = comps // 3
        for j in range(g, comps):                     # ascending: green gets red's decoded value, then blue green's
            for i in range(n):
                u[j * n + i] = (u[j * n + i] + u[(j - g) * n + i]) & top
    return u


def band_components(L: Layout, l: int) -> list[int]:
    """SPEC.md 6.1: the channel-major SH_REST components of band l."""
    k = (L.sh_degree + 1) ** 2 - 1
    return [c * k + l * l - 1 + i for c in range(3) for i in range(2 * l + 1)]


def _attribute_parts(L: Layout, mask: int) -> list[tuple]:
    """(attribute, component list, width) of each section carrying the attributes of ``mask`` (6.1)."""
    parts = []
    for a in range(6):
        if not mask >> a & 1 or L.comps(a) == 0:
            continue
        if a == 5 and not L.palette:
            parts += [(5, band_components(L, l), L.width(5)) for l in range(1, L.sh_degree + 1)]
        else:
            parts.append((a, list(range(L.comps(a))), L.width(a)))
    return parts


def read_frame(f: RefBuffer, payload: bytes, L: Layout, lim: dict) -> RefFrame:
    """F10..F12 on a frame whose records checks passed: its ops as a RefFrame (F13, F14 are RefState.apply)."""
    b, t = f.b, f.root
    digest_at = f.fields.get((t, 4))
    rf = RefFrame(f.scalar(t, 0, 8), f.scalar(t, 1, 8), bool(f.scalar(t, 2, 4) & 1),
                  digest=struct.unpack_from("<QII", b, digest_at) if digest_at is not None else None)
    at, ns = f.vectors.get((t, 6), (0, 0))
    sections = [Section(*struct.unpack_from("<3I4B", b, at + 16 * k)) for k in range(ns)]
    blocks = []
    for bt in f.table_lists.get((t, 5), []):
        sat, nsec = f.vectors.get((bt, 4), (0, 0))
        blocks.append((f.scalar(bt, 0, 1), f.scalar(bt, 1, 4), f.scalar(bt, 2, 1), f.scalar(bt, 3, 1),
                       [_u32(b, sat + 4 * k) for k in range(nsec)]))
    # F10: frame limits, before anything is decoded
    if sum(s.raw_size for s in sections) > lim["max_frame_raw_bytes"]:
        raise RefError("LIMIT_EXCEEDED", "max_frame_raw_bytes")
    if sum(c for k, c, *_ in blocks if k in (1, 2, 3, 6, 7, 8, 9)) > lim["max_ids_per_frame"]:
        raise RefError("LIMIT_EXCEEDED", "max_ids_per_frame")
    if sum(c for k, c, *_ in blocks if k in (4, 5)) > lim["max_ranges_per_frame"]:
        raise RefError("LIMIT_EXCEEDED", "max_ranges_per_frame")
    # F11: block structure; each block's sections as (role, components, width)
    full_mask = 0x3F if L.sh_degree >= 1 else 0x1F
    plans = []
    for kind, count, mask, level, secs in blocks:
        if kind == 0:
            raise RefError("MALFORMED", "block kind 0")
        if kind >= 128:
            continue
        if kind > 9:
            raise RefError("UNSUPPORTED_FEATURE", f"block kind {kind}")
        if kind == 7 and (L.quant is None or 3 * (L.cell_bits + L.quant.position_bits) > 64):
            raise RefError("MALFORMED", "ADD_IMPLICIT block in a lossless stream or with placements over 64 bits")
        if kind == 6 and not L.palette:
            raise RefError("MALFORMED", "PALETTE block in a stream without an SH palette")
        if kind in (2, 8) and (mask == 0 or mask & ~full_mask):
            raise RefError("MALFORMED", f"UPDATE mask {mask:#x}")
        if kind in (3, 5):
            parts = [("ids", [0], 8)]
        elif kind == 9:
            parts = [("ranks", [0], 4)]
        elif kind == 8:
            parts = [("ranks", [0], 4)] + _attribute_parts(L, mask)
        elif kind == 4:
            parts = [("ranges", [0, 1], 8)]
        elif kind == 7:
            parts = [("placements", [0], 8)] + _attribute_parts(L, 0x3E)
        elif kind == 6:
            parts = [("index", [0], 2)] + [("entry", band_components(L, l), L.entry_width)
                                           for l in range(1, L.sh_degree + 1)]
        else:
            parts = [("ids", [0], 8)] + _attribute_parts(L, 0x3F if kind == 1 else mask)
        if len(secs) != len(parts):
            raise RefError("MALFORMED", f"block kind {kind} with {len(secs)} sections, needs {len(parts)}")
        if any(i >= len(sections) for i in secs):
            raise RefError("MALFORMED", "section index out of range")
        plans.append((kind, count, mask, level, list(zip(secs, parts))))
    # F12: every referenced section, in block order
    decoded = [[decode_section(payload, sections[i], len(comps), count, w) for i, (_, comps, w) in refs]
               for _, count, _, _, refs in plans]
    for (kind, n, mask, level, refs), values in zip(plans, decoded):
        first = values[0]
        if kind == 3:
            rf.delete_ids.append(first)
        elif kind == 9:
            rf.ranked_deletes.append(first)
        elif kind == 4:
            rf.ranges += [(first[i], first[n + i]) for i in range(n)]
        elif kind == 5:
            rf.cells += [(level, c) for c in first]
        elif kind == 6:
            entries = [[0] * L.rest_comps for _ in range(n)]
            for (_, (_, comps, w)), u in zip(refs[1:], values[1:]):
                for jj, comp in enumerate(comps):
                    for i in range(n):
                        entries[i][comp] = _read(u[jj * n + i], w, True)
            rf.palettes.append([(first[i], tuple(entries[i])) for i in range(n)])
        else:
            codes = [[[0] * L.comps(a) for a in range(6)] for _ in range(n)]
            for (_, (a, comps, w)), u in zip(refs[1:], values[1:]):
                for jj, comp in enumerate(comps):
                    for i in range(n):
                        # ADD: codes in the attribute's type; UPDATE: residuals, unsigned (apply wraps)
                        codes[i][a][comp] = L.wrap(a, u[jj * n + i]) if kind in (1, 7) else u[jj * n + i]
            rows = [tuple(tuple(c) for c in g) for g in codes]
            if kind == 1:
                rf.adds.append(list(zip(first, rows)))
            elif kind == 7:
                rf.implicit.append(list(zip(first, rows)))
            elif kind == 8:
                rf.ranked_updates.append([(x, mask, r) for x, r in zip(first, rows)])
            else:
                rf.updates.append([(x, mask, r) for x, r in zip(first, rows)])
    return rf


def decode_stream(data: bytes, limits: dict) -> tuple[list[str], tuple[int, str] | None]:
    """Read a whole stream as a conforming decoder does: the digest text after every frame that applies,
    and the first error as (record, code) with record -1 for the header, or None."""
    lim = _limits(limits)
    err, pos, h = _header_record(data, lim)
    if err:
        return [], (-1, err)
    try:
        L, header_budget = read_header(h)
    except RefError as e:
        return [], (-1, e.code)
    state = RefState(L, min(header_budget or 1 << 24, lim["max_gaussians"]))
    digests: list[str] = []
    k = 0
    while pos < len(data):
        err, frame_len, f = _frame_record(data, pos, lim)
        if err:
            return digests, (k, err)
        meta_len = _u32(data, pos + 8)
        try:
            state.apply(read_frame(f, data[pos + 12 + meta_len:pos + frame_len - 4], L, lim))
        except RefError as e:
            return digests, (k, e.code)
        digests.append(digest_text(state.digest()))
        pos, k = pos + frame_len, k + 1
    return digests, None
