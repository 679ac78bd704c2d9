"""Raw array sections of a frame payload: filters, zstd and the gap code (SPEC.md 4.4).

Decode pipeline: decompress -> unshuffle -> unzigzag -> delta prefix-sum -> channel sum (the
components of a colour section as three channels: each channel plus the one before it). The encoder
runs it backwards. Arrays are planar (C, N): component-major. A gap-coded section (format 1.4: one
component of ascending values, such as ranks) holds exp-Golomb codes of the gaps between its values
instead, with no filter.
"""
from __future__ import annotations

import os
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import zstandard

from .errors import ErrorCode, GsdError
from .jit import kernel

DELTA, ZIGZAG, SHUFFLE, CHANNEL = 1, 2, 4, 8  # CHANNEL: format 1.3
KNOWN_FILTERS = DELTA | ZIGZAG | SHUFFLE | CHANNEL
NONE, ZSTD, GAPS = 0, 1, 2  # GAPS: format 1.4
UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


@dataclass(frozen=True)
class SectionDesc:
    offset: int
    stored_size: int
    raw_size: int
    compression: int
    filters: int
    width: int


_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)
_ONE = np.uint64(1)
_BYTE = np.uint64(0xFF)


@kernel(inline=True)
def shuffled_value(raw, k, n, width):
    """Value k of a byte-shuffled section of n values: byte b at raw[b * n + k]. The common widths are
    spelled out, so that the compiled loops that call this read byte planes without an inner loop."""
    if width == 2:
        return np.uint64(raw[k]) | np.uint64(raw[n + k]) << np.uint64(8)
    if width == 4:
        return (np.uint64(raw[k]) | np.uint64(raw[n + k]) << np.uint64(8)
                | np.uint64(raw[2 * n + k]) << np.uint64(16) | np.uint64(raw[3 * n + k]) << np.uint64(24))
    if width == 8:
        return (np.uint64(raw[k]) | np.uint64(raw[n + k]) << np.uint64(8)
                | np.uint64(raw[2 * n + k]) << np.uint64(16) | np.uint64(raw[3 * n + k]) << np.uint64(24)
                | np.uint64(raw[4 * n + k]) << np.uint64(32) | np.uint64(raw[5 * n + k]) << np.uint64(40)
                | np.uint64(raw[6 * n + k]) << np.uint64(48) | np.uint64(raw[7 * n + k]) << np.uint64(56))
    v = np.uint64(0)
    for b in range(width):
        v |= np.uint64(raw[b * n + k]) << np.uint64(8 * b)
    return v


@kernel(inline=True)
def channel_stride(filters, comps):
    """Components per channel g = C / 3 where the CHANNEL filter applies (bit 3 set, C a multiple of
    3: SH_DC, an SH_REST band, a palette entry band), else 0."""
    if (filters & 8) != 0 and comps % 3 == 0:
        return comps // 3
    return 0


@kernel
def unfilter(raw, count, width, filters, out):
    """SPEC.md 4.4 decode pipeline for one section: bytes -> (C, count) values of ``width`` bytes.

    Unshuffle (byte plane b of value k at raw[b * C * count + k]), unzigzag, a running sum along each
    component's row, then (CHANNEL, where C is a multiple of 3) each component plus the one C/3
    before it, element by element: channel 1 plus channel 0, then channel 2 plus channel 1; all
    arithmetic modulo 2^(8 * width)."""
    n = out.shape[0] * count
    shuffle = (filters & 4) != 0 and width > 1
    zigzag = (filters & 2) != 0
    delta = (filters & 1) != 0
    g = channel_stride(filters, out.shape[0])
    wmask = _ONES >> np.uint64(64 - 8 * width)
    for c in range(out.shape[0]):
        if shuffle and not zigzag and not delta and g == 0:  # positions: byte planes to values
            for i in range(count):
                out[c, i] = shuffled_value(raw, c * count + i, n, width)
            continue
        acc = np.uint64(0)
        for i in range(count):
            k = c * count + i
            if shuffle:
                v = shuffled_value(raw, k, n, width)
            else:
                v = np.uint64(0)
                for b in range(width):
                    v |= np.uint64(raw[k * width + b]) << np.uint64(8 * b)
            if zigzag:
                v = (v >> _ONE) ^ ((np.uint64(0) - (v & _ONE)) & wmask)
            if delta:
                acc = (acc + v) & wmask
                v = acc
            out[c, i] = v
        if g and c >= g:
            for i in range(count):
                out[c, i] = (np.uint64(out[c, i]) + np.uint64(out[c - g, i])) & wmask


@kernel
def filter_bytes(a, width, filters, out):
    """SPEC.md 4.4 encode pipeline: (C, N) unsigned values -> ``out`` bytes (channel differences,
    delta per row, zigzag, shuffle).

    A row at a time, each step its own loop over the row (the filters are fixed for the call), so
    that the compiler vectorizes them: byte plane b of value k goes to out[b * C * N + k]."""
    count = a.shape[1]
    n = a.shape[0] * count
    shuffle = (filters & 4) != 0 and width > 1
    zigzag = (filters & 2) != 0
    delta = (filters & 1) != 0
    g = channel_stride(filters, a.shape[0])
    wmask = _ONES >> np.uint64(64 - 8 * width)
    top = np.uint64(8 * width - 1)
    v = np.empty(count, np.uint64)
    for c in range(a.shape[0]):
        if g and c >= g:  # each channel's component minus the previous channel's, then delta
            prev = np.uint64(0)
            for i in range(count):
                cur = (np.uint64(a[c, i]) - np.uint64(a[c - g, i])) & wmask
                v[i] = (cur - prev) & wmask if delta else cur
                prev = cur
        elif delta:
            prev = np.uint64(0)
            for i in range(count):
                cur = np.uint64(a[c, i])
                v[i] = (cur - prev) & wmask
                prev = cur
        else:
            for i in range(count):
                v[i] = np.uint64(a[c, i])
        if zigzag:
            for i in range(count):
                x = v[i]
                v[i] = ((x << _ONE) & wmask) ^ ((np.uint64(0) - ((x >> top) & _ONE)) & wmask)
        base = c * count
        if shuffle:
            for b in range(width):
                shift = np.uint64(8 * b)
                at = b * n + base
                for i in range(count):
                    out[at + i] = np.uint8((v[i] >> shift) & _BYTE)
        elif width == 1:
            for i in range(count):
                out[base + i] = np.uint8(v[i] & _BYTE)
        else:
            for i in range(count):
                for b in range(width):
                    out[(base + i) * width + b] = np.uint8((v[i] >> np.uint64(8 * b)) & _BYTE)


# ------------------------------------------------------------------------------------- gap code
@kernel(inline=True)
def _bit_length(v):
    """Bits of v (0 <= v < 2^63): 0 for 0, by halving steps rather than one bit at a time. The steps
    are written out: a loop over the shifts is not unrolled by numba, and codes and decodes ranks
    1.2-1.4x slower."""
    b = 0
    if v >= np.int64(1) << 32:
        v >>= 32
        b += 32
    if v >= 1 << 16:
        v >>= 16
        b += 16
    if v >= 1 << 8:
        v >>= 8
        b += 8
    if v >= 1 << 4:
        v >>= 4
        b += 4
    if v >= 1 << 2:
        v >>= 2
        b += 2
    if v >= 2:
        v >>= 1
        b += 1
    return b + np.int64(v)


@kernel
def gap_order(values, width):
    """The order k of the gap code for ``values`` (strictly ascending), or -1 where they are not.
    Chosen from the histogram of the gaps' bit lengths, not by coding every order: a gap of b bits
    costs 1 + k bits where b <= k, else about 2b - k - 1 (exactly, unless its top b - k bits are all
    ones)."""
    hist = np.zeros(66, np.int64)
    prev = np.int64(-1)
    for i in range(values.shape[0]):
        x = np.int64(values[i])
        if x <= prev:
            return -1
        hist[_bit_length(x - prev - 1)] += 1
        prev = x
    best_k = 0
    best = np.int64(-1)
    for k in range(8 * width):
        bits = np.int64(0)
        for b in range(66):
            bits += hist[b] * (1 + k if b <= k else 2 * b - k - 1)
        if best < 0 or bits < best:
            best = bits
            best_k = k
    return best_k


@kernel
def gap_bits(values, k):
    """Bits of the gap code of ``values`` (strictly ascending) at order k, its k byte excluded."""
    total = np.int64(0)
    prev = np.int64(-1)
    for i in range(values.shape[0]):
        x = np.int64(values[i])
        total += 2 * (_bit_length(((x - prev - 1) >> k) + 1) - 1) + 1 + k
        prev = x
    return total


@kernel
def gap_write(values, k, out):
    """SPEC.md 4.4 gap code: ``out`` (zeros, 1 + ceil(gap_bits / 8) bytes) gets k, then per gap v the
    Elias gamma code of q = (v >> k) + 1 (z zeros, then q's z + 1 bits) and v's k low bits, most
    significant bit first. Bits go through an accumulator that never holds more than 41 of them."""
    out[0] = k
    acc = np.int64(0)
    held = 0
    at = 1
    prev = np.int64(-1)
    low = (np.int64(1) << k) - 1
    for i in range(values.shape[0]):
        x = np.int64(values[i])
        v = x - prev - 1
        prev = x
        q = (v >> k) + 1
        z = _bit_length(q) - 1
        for part in range(2):  # z zeros; then q and the low bits, z + 1 + k bits
            if part == 0:
                acc <<= z
                held += z
            else:
                acc = (acc << (z + 1 + k)) | (q << k) | (v & low)
                held += z + 1 + k
            while held >= 8:
                out[at] = (acc >> (held - 8)) & 0xFF
                at += 1
                held -= 8
            acc &= (np.int64(1) << held) - 1
    if held:
        out[at] = (acc << (8 - held)) & 0xFF


@kernel
def gap_read(stored, n, width, out):
    """SPEC.md 4.4 gap_decode: the n values of a gap-coded section into ``out``. Returns 0, or 1 where
    the stored bytes are not a valid code (k too large, a zero run or a value too long, codes past
    the end, bytes or one bits after the last code). Bits are taken a byte's worth at a time: a
    code's zeros by the bit length of what is left of its byte, its z + k bits in up to 5 pieces."""
    size = stored.shape[0]
    if size < 1:
        return 1
    k = np.int64(stored[0])
    limit = 8 * width
    if k >= limit:
        return 1
    end = 8 * size
    top = np.int64(1) << limit
    pos = 8
    prev = np.int64(-1)
    for i in range(n):
        z = 0
        while True:  # the zeros before the code's one bit
            if pos >= end:
                return 1
            left = 8 - (pos & 7)
            rest = np.int64(stored[pos >> 3]) & ((1 << left) - 1)
            if rest == 0:
                z += left
                pos += left
                if z + k > limit:
                    return 1
                continue
            lead = left - _bit_length(rest)
            z += lead
            pos += lead + 1
            break
        if z + k > limit:
            return 1
        m = z + k
        if pos + m > end:
            return 1
        t = np.int64(0)
        while m > 0:
            left = 8 - (pos & 7)
            take = min(left, m)
            t = (t << take) | ((np.int64(stored[pos >> 3]) >> (left - take)) & ((1 << take) - 1))
            pos += take
            m -= take
        x = prev + 1 + (((np.int64(1) << z) - 1) << k) + t
        if x >= top:
            return 1
        out[i] = x
        prev = x
    if end - pos >= 8:
        return 1
    if pos < end and (np.int64(stored[pos >> 3]) & ((1 << (8 - (pos & 7))) - 1)) != 0:
        return 1
    return 0


def gap_encode(planar: np.ndarray, k: int | None = None) -> bytes | None:
    """The stored bytes of a (1, N) array of strictly ascending values as a gap-coded section
    (compression 2, format 1.4): at the order its gaps favour, of values of 1, 2 or 4 bytes; or at
    order ``k`` as given, whatever the width (values below 2^63: test data for sections a decoder
    must refuse). None where the code does not apply (more than one component, 8-byte values without
    a given k, values not strictly ascending)."""
    if planar.ndim != 2 or planar.shape[0] != 1 or (k is None and planar.dtype.itemsize > 4):
        return None
    row = planar[0]
    if k is None:
        k = gap_order(row, planar.dtype.itemsize)   # -1: not strictly ascending
    elif len(row) > 1 and not (row[1:] > row[:-1]).all():
        k = -1
    if k < 0:
        return None
    out = np.zeros(1 + (gap_bits(row, k) + 7) // 8, np.uint8)
    gap_write(row, k, out)
    return out.tobytes()


_local = threading.local()


def _cctx(level: int, threads: int = 0) -> "zstandard.ZstdCompressor":
    cache = _local.__dict__.setdefault("c", {})
    if (level, threads) not in cache:
        # SPEC.md 4.4: writers set the Content_Checksum_flag on every zstd frame.
        cache[level, threads] = zstandard.ZstdCompressor(level=level, threads=threads, write_checksum=True)
    return cache[level, threads]


def _dctx() -> "zstandard.ZstdDecompressor":
    if not hasattr(_local, "d"):
        _local.d = zstandard.ZstdDecompressor()
    return _local.d


_PREFIX = "gsd-sections"
_CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)  # usable here
_POOL = ThreadPoolExecutor(max_workers=min(8, _CPUS), thread_name_prefix=_PREFIX)
PARALLEL_MIN_BYTES = 1 << 20  # below this, thread hand-off costs more than it saves
MT_MIN_BYTES = 8 << 20  # one section this big is compressed by zstd's own worker threads
# SectionWriter.start: a frame's sections compress in up to this many worker jobs of at least
# START_JOB_BYTES each, when the machine has cores to spare beside the encoder's own thread
START_JOBS, START_JOB_BYTES = max(1, min(4, _CPUS - 1)), 128 << 10


def on_worker() -> bool:
    """True on a section worker thread: work it hands to the pool and waits for could deadlock it."""
    return threading.current_thread().name.startswith(_PREFIX)


def submit(fn, *args):
    """Run ``fn(*args)`` on a section worker thread; returns its future."""
    return _POOL.submit(fn, *args)


SPAN = 1 << 16  # columns per worker job when one array's columns are computed in parallel


def column_spans(n: int) -> list[tuple[int, int]]:
    """(start, stop) ranges covering 0..n, one worker job each."""
    return [(i, min(n, i + SPAN)) for i in range(0, n, SPAN)] or [(0, 0)]


def parallel_map(fn, items: list, total_bytes: int) -> list:
    """Map over sections (or other independent ranges) on worker threads (zstd, numpy and the
    compiled loops release the GIL) when the work is large. A worker that maps again runs its
    items itself: waiting on its own pool could deadlock it."""
    if total_bytes < PARALLEL_MIN_BYTES or len(items) < 2 or on_worker():
        return [fn(x) for x in items]
    return list(_POOL.map(fn, items))


_CRC_POLY = 0xEDB88320  # CRC-32 (SPEC.md 4.8), reflected


def _mult_mod_p(a: int, b: int) -> int:
    """a * b modulo the CRC-32 polynomial (reflected bit order: bit 31 is x^0)."""
    m = 1 << 31
    p = 0
    while a:
        if a & m:
            p ^= b
            a ^= m
        m >>= 1
        b = (b >> 1) ^ _CRC_POLY if b & 1 else b >> 1
    return p


_X2N = [1 << 30]  # x^(2^k) modulo the polynomial: x^1, x^2, x^4, ...
for _ in range(31):
    _X2N.append(_mult_mod_p(_X2N[-1], _X2N[-1]))


COMBINE_MIN_BYTES = 256 << 10  # smaller parts are checksummed again on the frame's thread


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """The CRC-32 of A + B from crc1 = CRC(A), crc2 = CRC(B) and len(B) (zlib's crc32_combine): crc1
    times x^(8 len2), plus crc2. Lets section workers checksum their own output; about 20 us in
    Python, so worth it only for parts larger than that takes zlib to checksum (COMBINE_MIN_BYTES)."""
    p, n, k = 1 << 31, len2, 3
    while n:
        if n & 1:
            p = _mult_mod_p(_X2N[k & 31], p)
        n >>= 1
        k += 1
    return _mult_mod_p(p, crc1) ^ crc2


SAMPLE_COLUMNS = 16384
TRIAL_MIN_BYTES = 16384  # smaller sections take the first candidate filter
RETRIAL = 15  # frames that reuse a role's trial winner before it is trialled again


def is_plain(filters: int, width: int, comps: int) -> bool:
    """True where the filters leave the values as they are (SHUFFLE of 1-byte values and CHANNEL of a
    section whose component count is not a multiple of 3 are no-ops): the stored bytes are the array."""
    return (not filters & (DELTA | ZIGZAG) and not (filters & SHUFFLE and width > 1)
            and not (filters & CHANNEL and comps % 3 == 0))


def _filter(planar: np.ndarray, filters: int) -> np.ndarray:
    """Encoder side of the pipeline: channel differences, delta, zigzag, shuffle -> raw bytes (a
    uint8 array)."""
    a = np.ascontiguousarray(planar)
    width = a.dtype.itemsize
    if a.dtype.kind != "u":
        a = a.view(UINT[width])
    if is_plain(filters, width, a.shape[0]):
        return a.reshape(-1).view(np.uint8)
    out = np.empty(a.size * width, np.uint8)
    filter_bytes(a, width, filters, out)
    return out


def _compress_all(level: int, raws: list) -> list:
    """Each of ``raws`` as a zstd frame, in one call that holds no GIL (python-zstandard's C backend;
    others compress them one by one)."""
    cctx = _cctx(level)
    try:
        return [seg.tobytes() for seg in cctx.multi_compress_to_buffer(raws, threads=0)]
    except NotImplementedError:  # the CFFI backend has no such call
        return [cctx.compress(r) for r in raws]


class SectionWriter:
    """Accumulates filtered, compressed sections into one payload."""

    def __init__(self, level: int = 1, min_compress: int = 64, choices: dict | None = None):
        self._level = level
        self._min = min_compress
        self._queue: list = []
        self._choices = choices
        self._crc_parts = False
        self._started = None
        self.descs: list[SectionDesc] = []
        self.crcs: list[int] | None = None

    def add(self, planar: np.ndarray, filters: int | tuple[int, ...], rows: np.ndarray | None = None,
            role=None, gaps: bool = False) -> int:
        """Queue a (C, N) array, or those ``rows`` of it; returns its section index. Sections are built
        by parts() (on worker threads for a big frame, which also gather the rows).

        ``filters`` may be a tuple of candidates: the one that compresses a sample of the array best is
        used (an encoder choice; decoders read any). With a ``role`` (any hashable naming what the
        section holds) and the writer's ``choices`` (a dict kept from frame to frame), the winner of a
        trial is reused for that role in the next RETRIAL frames: sections of one role keep their
        statistics through a stream, and the trial compresses the sample once per candidate.

        ``gaps``: the array is one row of strictly ascending values (ranks); it is also gap coded
        (compression 2, format 1.4), and stored that way where that is smaller.
        """
        self._queue.append((planar, filters, rows, role, gaps))
        return len(self._queue) - 1

    def _choose(self, planar: np.ndarray, candidates: tuple[int, ...]) -> tuple[int, tuple | None]:
        """The candidate whose filtered sample compresses smallest. When the sample is the whole array
        (up to SAMPLE_COLUMNS columns), also that candidate's (raw, compressed) bytes: the trial was
        the real thing, so it is not done again."""
        if len(candidates) == 1 or self._level <= 0:
            return candidates[0], None
        whole = planar.shape[1] <= SAMPLE_COLUMNS
        sample = planar if whole else np.ascontiguousarray(planar[:, :SAMPLE_COLUMNS])
        raws = [_filter(sample, f) for f in candidates]
        zs = [_cctx(self._level).compress(r) for r in raws]
        best = int(np.argmin([len(z) for z in zs]))
        return candidates[best], ((raws[best], zs[best]) if whole else None)

    def _raw(self, job) -> tuple:
        """Filter one queued section: (raw bytes, filters, width, its compressed bytes when the filter
        trial already compressed the whole array, else None, its gap code or None)."""
        planar, filters, rows, role, gaps = job
        if rows is not None:
            planar = planar[rows]
        done = None
        if isinstance(filters, tuple):
            if planar.nbytes < TRIAL_MIN_BYTES:
                filters = filters[0]
            else:
                key = (role, filters) if self._choices is not None and role is not None else None
                kept = self._choices.get(key) if key is not None else None
                if kept is not None and kept[1] > 0:
                    self._choices[key] = (kept[0], kept[1] - 1)
                    filters = kept[0]
                else:
                    filters, done = self._choose(planar, filters)
                    if key is not None:
                        self._choices[key] = (filters, RETRIAL)
        raw = _filter(planar, filters) if done is None else done[0]
        return raw, filters, planar.dtype.itemsize, None if done is None else done[1], \
            gap_encode(planar) if gaps and self._level > 0 else None

    def _compresses(self, raw) -> bool:
        return self._level > 0 and len(raw) >= self._min

    def _stored(self, raw, filters: int, width: int, z, gap=None) -> tuple:
        """(stored bytes, raw size, compression, filters, width, CRC-32 or None): the compressed bytes
        ``z`` where they are smaller than the raw ones, the gap code ``gap`` where it is smaller still."""
        comp, data = (ZSTD, z) if z is not None and len(z) < len(raw) else (NONE, raw)
        if gap is not None and len(gap) < len(data):
            comp, data, filters = GAPS, gap, 0
        return data, len(raw), comp, filters, width, \
            zlib.crc32(data) if self._crc_parts and len(data) >= COMBINE_MIN_BYTES else None

    def _build(self, job) -> tuple:
        raw, filters, width, z, gap = self._raw(job)
        if z is None and self._compresses(raw):
            z = _cctx(self._level, -1 if len(raw) >= MT_MIN_BYTES else 0).compress(raw)
        return self._stored(raw, filters, width, z, gap)

    def raw_bytes(self) -> int:
        """The queued sections' size before compression."""
        return sum(p.nbytes if r is None else p.nbytes * len(r) // max(1, len(p)) for p, _, r, _, _ in self._queue)

    def start(self) -> None:
        """Filter every queued section on this thread, and compress them on section workers from now on
        (parts() collects them). A worker compresses its share in one zstd call, so it takes the GIL
        back once, not once per section: a thread that does that per section waits each time for the
        Python running on the caller's thread (an encoder's apply, meanwhile). Where cores are spare,
        a large frame's sections are shared out (largest first, to the job with the fewest bytes)."""
        raws = [self._raw(job) for job in self._queue]
        todo = [k for k, (raw, _, _, z, _) in enumerate(raws) if z is None and self._compresses(raw)]
        total = sum(len(raws[k][0]) for k in todo)
        shares = [[] for _ in range(max(1, min(START_JOBS, total // START_JOB_BYTES)))]
        load = [0] * len(shares)
        for k in sorted(todo, key=lambda k: -len(raws[k][0])):
            j = load.index(min(load))
            shares[j].append(k)
            load[j] += len(raws[k][0])
        jobs = [(share, submit(_compress_all, self._level, [raws[k][0] for k in share])) for share in shares if share]
        self._started = (raws, jobs)

    @property
    def started(self) -> bool:
        """start() handed the sections to a worker."""
        return self._started is not None

    def cancel(self) -> None:
        """The parts will not be wanted: after start(), wait for the worker to let go of the sections."""
        for _, job in self._started[1] if self._started else ():
            if not job.cancel():
                job.exception()  # waits; an error of its own does not matter now

    def parts(self) -> list:
        """Filter and compress every queued section (in parallel for big frames; or collect what start()
        began); fills ``descs``. Returns the stored sections in payload order (the caller joins them once,
        into its record). For a frame built on the workers, ``crcs`` then holds each section's CRC-32,
        taken on the worker that built it where the part has COMBINE_MIN_BYTES or more (``crc32_combine``
        joins it to the record's without reading it again), else None; otherwise ``crcs`` is None."""
        if self.started:
            raws, jobs = self._started
            zs = [r[3] for r in raws]
            for share, job in jobs:
                for k, z in zip(share, job.result()):
                    zs[k] = z
            built = [self._stored(raw, f, w, z, gap) for (raw, f, w, _, gap), z in zip(raws, zs)]
        else:
            total = self.raw_bytes()
            self._crc_parts = total >= PARALLEL_MIN_BYTES
            built = parallel_map(self._build, self._queue, total)
        offset = 0
        self.descs = []
        for data, raw_len, comp, filters, width, _ in built:
            self.descs.append(SectionDesc(offset, len(data), raw_len, comp, filters, width))
            offset += len(data)
        self.crcs = [b[5] for b in built] if self._crc_parts else None
        return [b[0] for b in built]

    def payload(self) -> bytes:
        """parts() joined."""
        return b"".join(self.parts())




def read_section(payload: memoryview, desc: SectionDesc, comps: int, count: int, width: int,
                 into: tuple | None = None) -> np.ndarray:
    """Decode one section into a new, writable (comps, count) unsigned array. Every field is checked
    before use.

    ``into=(array, rows)`` writes the values into those rows of ``array`` instead (an SH band into
    its attribute's rows: runs of rows) and returns ``array``; ``array`` may be a ``LazyArray``, made
    only once this section has passed its checks (a frame that claims more than it holds reserves
    nothing). An unfiltered section is decompressed
    straight into place, with no copy; on the worker threads, a large keyframe's sections land where
    the state keeps them."""
    if desc.width != width:
        raise GsdError(ErrorCode.MALFORMED, f"section width {desc.width}, expected {width}")
    if desc.filters & ~KNOWN_FILTERS:
        raise GsdError(ErrorCode.UNSUPPORTED_FEATURE, f"unknown section filter bits {desc.filters:#x}")
    expected = comps * count * width
    if desc.raw_size != expected:
        raise GsdError(ErrorCode.MALFORMED, f"section raw_size {desc.raw_size}, expected {expected}")
    if desc.offset + desc.stored_size > len(payload):
        raise GsdError(ErrorCode.MALFORMED, "section extends past the payload")
    if desc.compression not in (NONE, ZSTD, GAPS):
        raise GsdError(ErrorCode.UNSUPPORTED_FEATURE, f"unknown compression {desc.compression}")
    if desc.compression == NONE and desc.stored_size != desc.raw_size:
        raise GsdError(ErrorCode.MALFORMED, "uncompressed section with stored_size != raw_size")
    stored = payload[desc.offset: desc.offset + desc.stored_size]
    if desc.compression == GAPS:
        if comps != 1 or width == 8 or desc.filters:
            raise GsdError(ErrorCode.MALFORMED, "a gap-coded section needs one component of 1, 2 or 4 bytes "
                           "and no filter")
        values = np.empty((1, count), UINT[width])
        if gap_read(np.frombuffer(stored, np.uint8), count, width, values[0]):
            raise GsdError(ErrorCode.DECOMPRESSION_FAILED, "gap code: not a valid code of the section's values")
        if into is None:
            return values
        dest, rows = into
        dest = dest.get() if isinstance(dest, LazyArray) else dest
        dest.view(UINT[width])[rows] = values
        return dest
    plain = is_plain(desc.filters, width, comps)
    # Memory follows the data: the output is allocated before decompressing only where the stored
    # bytes can plausibly hold it; otherwise the frame is decompressed (or refused) first.
    raw = None
    if desc.compression == NONE:
        raw = stored
    elif not plain or expected > ONE_SHOT_RATIO * len(stored) or expected < STREAM_INTO_MIN:
        raw = _decompress(stored, expected)
    if into is None:
        dest = view = np.empty((comps, count), UINT[width])
        runs = [(0, comps, 0)]
    else:
        dest, rows = into
        if isinstance(dest, LazyArray):
            dest = dest.get()
        view = dest.view(UINT[width])
        runs = row_runs(rows)
    if plain:
        if raw is None:  # the values themselves: decompressed straight into place
            _decompress(stored, expected, [view[s:e] for s, e, _ in runs])
        else:
            values = np.frombuffer(raw, UINT[width]).reshape(comps, count)
            for s, e, at in runs:
                view[s:e] = values[at:at + e - s]
        return dest
    a = dest if into is None else np.empty((comps, count), UINT[width])
    unfilter(np.frombuffer(raw, np.uint8), count, width, desc.filters, a)
    if into is not None:
        for s, e, at in runs:
            view[s:e] = a[at:at + e - s]
    return dest


class LazyArray:
    """An array that several sections fill (an SH attribute's bands), allocated by the first of them
    to pass its checks, on whichever worker that is."""

    def __init__(self, shape: tuple, dtype):
        self.shape, self.dtype = shape, dtype
        self._array = None
        self._lock = threading.Lock()

    def get(self) -> np.ndarray:
        with self._lock:
            if self._array is None:
                self._array = np.empty(self.shape, self.dtype)
            return self._array


def row_runs(rows: np.ndarray) -> list[tuple[int, int, int]]:
    """(first, end, position in ``rows``) of each run of consecutive row numbers (an SH band: 3 runs)."""
    r = rows.tolist()
    out, start = [], 0
    for i in range(1, len(r) + 1):
        if i == len(r) or r[i] != r[i - 1] + 1:
            out.append((r[start], r[i - 1] + 1, start))
            start = i
    return out


STREAM_INTO_MIN = 1 << 16  # smaller sections: one call into bytes and a copy beats a stream reader's set-up
ONE_SHOT_RATIO = 64  # real sections compress 1-15x; a higher claim is streamed (memory follows the data)
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"  # 0xFD2FB528, little-endian: a Zstandard frame (skippable frames are not)


def _decompress(stored: memoryview, expected: int, into: list | None = None) -> bytes | None:
    """Exactly one Zstandard frame that declares Frame_Content_Size == raw_size, names no dictionary,
    and has nothing after it; its content checksum, when present, matches (SPEC.md 4.4). ``into``:
    contiguous arrays whose sizes add up to ``expected`` receive the content (returns None)."""
    check_zstd_header(stored, expected)
    return _zstd_one_frame(stored, expected, into)


def check_zstd_header(stored: memoryview, expected: int) -> None:
    """The frame-header checks of SPEC.md 4.4, made on the stored bytes before any decompression: the
    Zstandard magic (a skippable frame is not one), no Dictionary_ID, Frame_Content_Size == raw_size."""
    if bytes(stored[:4]) != ZSTD_MAGIC:
        raise GsdError(ErrorCode.DECOMPRESSION_FAILED, "stored bytes do not start with a Zstandard frame "
                       "(magic 0xFD2FB528; a skippable frame is not one)")
    try:
        params = zstandard.get_frame_parameters(stored)
        declared = params.content_size  # ZSTD_CONTENTSIZE_UNKNOWN when absent, which no raw_size equals
    except zstandard.ZstdError as e:
        raise GsdError(ErrorCode.DECOMPRESSION_FAILED, f"zstd frame header: {e}") from None
    if params.dict_id != 0:
        raise GsdError(ErrorCode.DECOMPRESSION_FAILED, f"zstd frame header names dictionary {params.dict_id}")
    if declared != expected:
        said = "no content size" if declared >= 1 << 63 else f"{declared} bytes"
        raise GsdError(ErrorCode.DECOMPRESSION_FAILED, f"zstd frame declares {said}, section raw_size is {expected}")


def _zstd_one_frame(stored: memoryview, expected: int, into: list | None = None) -> bytes | None:
    """Decompress the one frame (header checked) into exactly ``expected`` bytes, nothing after it:
    returned, or written into the arrays of ``into`` in order.

    Usually libzstd writes the content straight into an output sized from the checked header: a
    quarter faster than streaming it in chunks. That output is allocated first, so a frame that
    claims far more than its data can plausibly hold (over ONE_SHOT_RATIO times its stored size)
    is streamed instead and memory follows the data actually decompressed. Bytes after the frame
    are refused (libzstd's ``allow_extra_data=False``, or the frame's end found from its block
    headers). libzstd verifies the content checksum whenever the frame has one (python-zstandard
    never turns that off: tests/test_bad_input.py checks it), so content that does not hash to it
    fails here."""
    try:
        if 0 < expected <= ONE_SHOT_RATIO * len(stored):
            if into is None:
                return _checked(_dctx().decompress(stored, max_output_size=expected, allow_extra_data=False),
                                expected)
            if frame_end(stored) != len(stored):
                raise GsdError(ErrorCode.DECOMPRESSION_FAILED, "zstd frame cut short or followed by extra bytes")
            reader = _dctx().stream_reader(stored, read_across_frames=False)
            for a in into:
                buf = memoryview(a).cast("B")
                got = 0
                while got < len(buf):
                    n = reader.readinto(buf[got:])
                    if n == 0:
                        raise GsdError(ErrorCode.DECOMPRESSION_FAILED, "zstd frame incomplete")
                    got += n
            if reader.read(1):  # also reads the frame to its end: its checksum is checked there
                raise GsdError(ErrorCode.DECOMPRESSION_FAILED, "zstd frame oversize")
            return None
        dobj = _dctx().decompressobj()  # also an empty frame: python-zstandard answers b"" for one without reading on
        out = _checked(dobj.decompress(stored), expected)
        if not dobj.eof or dobj.unused_data:
            raise GsdError(ErrorCode.DECOMPRESSION_FAILED, "zstd frame incomplete or followed by extra bytes")
    except zstandard.ZstdError as e:
        raise GsdError(ErrorCode.DECOMPRESSION_FAILED, f"zstd: {e}") from None
    if into is not None:
        fill(into, out)
        return None
    return out


def fill(into: list, data: bytes) -> None:
    """Copy ``data`` into the contiguous arrays of ``into``, in order (their sizes add up to its length)."""
    at = 0
    for a in into:
        buf = memoryview(a).cast("B")
        buf[:] = data[at:at + len(buf)]
        at += len(buf)


def _checked(out: bytes, expected: int) -> bytes:
    if len(out) != expected:
        raise GsdError(ErrorCode.DECOMPRESSION_FAILED, "zstd frame incomplete or oversize")
    return out


def frame_end(stored: memoryview) -> int:
    """Where the Zstandard frame at the start of ``stored`` ends (RFC 8878 3.1.1: its header, its blocks
    up to the one marked last, then the 4-byte checksum if the header has one), or -1 if its blocks
    run past the end. Each block header is 3 bytes: last-block bit, type (1 = RLE: one stored byte),
    size."""
    pos = zstandard.frame_header_size(stored)
    n = len(stored)
    last = 0
    while not last:
        if pos + 3 > n:
            return -1
        h = stored[pos] | stored[pos + 1] << 8 | stored[pos + 2] << 16
        last = h & 1
        pos += 3 + (1 if (h >> 1) & 3 == 1 else h >> 3)
    return pos + 4 * zstandard.get_frame_parameters(stored).has_checksum
