"""A second, deliberately naive implementation of GSD state semantics, for the expected results.

The vectors' digests and states come from this pure-Python model (a dict of
id -> codes, the spec's apply steps written out one by one, GSD-HASH on Python
ints), not from the codec's vectorized SceneState. The generator then checks
that the codec agrees, so a vector is only written when two independent
readings of the spec give the same answer. ``check_records`` does the same for the record
framing and the FlatBuffers verification of SPEC.md 4.5 (H1..H9, F1..F9 of 4.9), byte by byte.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from math import isqrt

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
    """Per attribute: components, byte width, signedness, and the code domain check."""

    sh_degree: int
    quant: object  # craft.QuantFields or None (lossless)
    cell_bits: int
    slot_bits: int

    @classmethod
    def of_header(cls, h) -> "Layout":
        return cls(h.sh_degree, h.quant, h.grid[2], h.grid[3])

    @property
    def id_limit(self) -> int:
        return 1 << (3 * self.cell_bits + self.slot_bits)

    def comps(self, a: int) -> int:
        k = (self.sh_degree + 1) ** 2 - 1
        return (3, 3, 4, 1, 3, 3 * k)[a]

    def width(self, a: int) -> int:
        q = self.quant
        if q is None or a == 0:
            return 4
        bits = (None, q.scale_bits, q.rotation_bits, q.opacity_bits, q.dc_bits,
                max(q.rest_bits[: self.sh_degree], default=1))[a]
        return _width(bits)

    def signed(self, a: int) -> bool:
        return self.quant is not None and a in (0, 5)

    def wrap(self, a: int, v: int) -> int:
        """v reduced mod 2^(8w) and read back in the attribute's signedness."""
        bits = 8 * self.width(a)
        v &= (1 << bits) - 1
        if self.signed(a) and v >> (bits - 1):
            v -= 1 << bits
        return v

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
            k = (self.sh_degree + 1) ** 2 - 1
            return all(abs(c) <= (1 << (q.rest_bits[isqrt(j % k + 1) - 1] - 1)) - 1 for j, c in enumerate(codes))
        bits = (None, q.scale_bits, None, q.opacity_bits, q.dc_bits)[a]
        return all(0 <= c <= (1 << bits) - 1 for c in codes)


# ------------------------------------------------------------------------------------- digest
def fmix32(h: int) -> int:
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & M32
    return h ^ (h >> 16)


def _constants(lane: int, words: int) -> list[int]:
    return [fmix32(((j + 1) * 0x9E3779B1 + lane * 0x7F4A7C15) & M32) | 1 for j in range(words)]


def gaussian_words(layout: Layout, gid: int, codes: tuple) -> list[int]:
    words = [gid & M32, gid >> 32]
    for a, comp in enumerate(codes):
        mask = (1 << (8 * layout.width(a))) - 1
        words += [c & mask for c in comp]
    return words


def digest(layout: Layout, gaussians: dict) -> tuple[int, int, int]:
    lanes = [0, 0]
    consts = {}
    for gid, codes in gaussians.items():
        w = gaussian_words(layout, gid, codes)
        if len(w) not in consts:
            consts[len(w)] = (_constants(0, len(w)), _constants(1, len(w)))
        for lane in (0, 1):
            k = consts[len(w)][lane]
            lanes[lane] = (lanes[lane] + fmix32(sum(x * y for x, y in zip(w, k)) & M32)) & M32
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
    digest: tuple | None = None


def _ascending(ids: list[int]) -> None:
    for x, y in zip(ids, ids[1:]):
        if y == x:
            raise RefError("DUPLICATE_ID", "id repeated in a block")
        if y < x:
            raise RefError("BAD_VALUE", "ids not ascending")


class RefState:
    def __init__(self, layout: Layout, max_gaussians: int):
        self.layout = layout
        self.max_gaussians = max_gaussians
        self.g: dict[int, tuple] = {}
        self.seq = 0

    def digest(self) -> tuple[int, int, int]:
        return digest(self.layout, self.g)

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
        live = {} if f.keyframe else dict(self.g)
        dels = [i for b in f.delete_ids for i in b]
        if any(i not in live for i in dels):
            raise RefError("ID_MISSING", "DELETE_IDS of a missing id")
        shifts = [(level, L.slot_bits + 3 * level) for level, _ in f.cells]
        spans = list(f.ranges) + [(c << s, ((c + 1) << s) - 1) for (lv, c), (_, s) in zip(f.cells, shifts)]
        for i in list(live):
            if i in dels or any(a <= i <= b for a, b in spans):
                del live[i]
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
        if f.digest is not None and digest(L, live) != tuple(f.digest):
            raise RefError("DIGEST_MISMATCH")
        self.g = live
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


# ------------------------------------------------------------------------------------- records
# Record framing and metadata verification (SPEC.md 4.2, 4.3, 4.5 "Verification", 4.9 H1..H9 and
# F1..F9), written out from the spec text: plain byte reads, no FlatBuffers library.
HEADER_FIELDS = {  # StreamHeader / Quantization / Frame / OpBlock: field id -> (kind, size or type)
    "StreamHeader": {0: ("scalar", 1), 1: ("struct", 20), 2: ("table", "Quantization"), 3: ("string", None),
                     4: ("scalar", 8), 5: ("scalar", 4), 6: ("string", None)},
    "Quantization": {0: ("scalar", 1), 1: ("scalar", 1), 2: ("scalar", 4), 3: ("scalar", 4), 4: ("scalar", 1),
                     5: ("scalar", 1), 6: ("scalar", 1), 7: ("scalar", 4), 8: ("scalar", 4), 9: ("vector", 1),
                     10: ("vector", 4)},
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
                self.table(self.ref(p), arg)
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
                        for k in range(length):
                            self.table(self.ref(v + 4 + 4 * k), arg)
                self.vectors[(t, i)] = (v + 4, length)
        return t

    def scalar(self, t: int, i: int, k: int) -> int:
        p = self.fields.get((t, i))
        return 0 if p is None else self.uint(p, k)


def check_records(data: bytes, limits: dict) -> tuple[int, str] | None:
    """The first error of H1..H9 / F1..F9 in a stream (record -1 is the header), or None.

    Checks after F9 (frame limits, blocks, sections, ids, apply) and H10 (header domains) are not
    modelled here: a record that passes these is taken as far as its frame_len and the next record
    is read. ``limits``: the vector's limit overrides (names of SPEC.md 9.1).
    """
    lim = {"max_header_bytes": 1 << 16, "max_frame_bytes": 1 << 30, "max_blocks": 4096, "max_sections": 16384}
    lim.update({k: v for k, v in limits.items() if k in lim})

    def u32(p):
        return int.from_bytes(data[p:p + 4], "little")

    from zlib import crc32  # the CRC-32 of SPEC.md 4.8 (ISO-HDLC), as zlib computes it

    n = len(data)
    if n < 4:
        return -1, "TRUNCATED"
    if data[:4] != b"GSDH":
        return -1, "BAD_MAGIC"
    if n < 12:
        return -1, "TRUNCATED"
    if data[4] != 1:
        return -1, "UNSUPPORTED_VERSION"
    body_len = u32(8)
    if body_len > lim["max_header_bytes"]:
        return -1, "LIMIT_EXCEEDED"
    if n < 16 + body_len:
        return -1, "TRUNCATED"
    if crc32(data[:12 + body_len]) != u32(12 + body_len):
        return -1, "BAD_CHECKSUM"
    try:
        h = RefBuffer(data[12:12 + body_len], "StreamHeader")
    except RefError as e:
        return -1, e.code
    if (h.root, 1) not in h.fields:
        return -1, "MALFORMED"
    if h.scalar(h.root, 4, 8) != 0:
        return -1, "UNSUPPORTED_FEATURE"
    pos, k = 16 + body_len, 0
    while pos < n:
        rec = data[pos:]
        if len(rec) < 4:
            return k, "TRUNCATED"
        if rec[:4] != b"GSDF":
            return k, "BAD_MAGIC"
        if len(rec) < 12:
            return k, "TRUNCATED"
        frame_len, meta_len = u32(pos + 4), u32(pos + 8)
        if frame_len < 16:
            return k, "MALFORMED"
        if frame_len > lim["max_frame_bytes"]:
            return k, "LIMIT_EXCEEDED"
        if len(rec) < frame_len:
            return k, "TRUNCATED"
        if meta_len > frame_len - 16:
            return k, "MALFORMED"
        if crc32(rec[:frame_len - 4]) != u32(pos + frame_len - 4):
            return k, "BAD_CHECKSUM"
        try:
            f = RefBuffer(rec[12:12 + meta_len], "Frame")
        except RefError as e:
            return k, e.code
        if f.vectors.get((f.root, 5), (0, 0))[1] > lim["max_blocks"]:
            return k, "LIMIT_EXCEEDED"
        if f.vectors.get((f.root, 6), (0, 0))[1] > lim["max_sections"]:
            return k, "LIMIT_EXCEEDED"
        if f.scalar(f.root, 3, 8) != 0:
            return k, "UNSUPPORTED_FEATURE"
        pos, k = pos + frame_len, k + 1
    return None
