"""A second, deliberately naive implementation of GSD state semantics, for the expected results.

The vectors' digests and states come from this pure-Python model (a dict of
id -> codes, the spec's apply steps written out one by one, GSD-HASH on Python
ints), not from the codec's vectorized SceneState. The generator then checks
that the codec agrees, so a vector is only written when two independent
readings of the spec give the same answer.
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
