"""Encoder: floats in, frames out, with the decoder's state kept in step (closed loop, SPEC.md 5.5).

UPDATE residuals are taken against the quantized state the decoder holds, not
against the previous float input, so quantization error never accumulates.
"""
from __future__ import annotations

import numpy as np

from . import palette
from .attributes import ATTRS, Attr, Gaussians, full_mask
from .delta import Delta, PaletteSet, group_updates, mask_rows
from .digest import unsigned
from .jit import kernel
from .profile import Profile
from .quantize import placed_cells
from .spatial import assign_slots
from .id_index import ascending_problem, id_order, sorted_member, sorted_unique
from .state import SceneState
from .wire import FORMATS, FrameEncoder, StreamHeader, encode_header

U64 = np.uint64
# Which rows of a later frame earn new palette entries, judged by their distance to the nearest entry
# against the keyframe's distances: in a frame whose median is more than NOVEL times the keyframe's
# (new rows like the keyframe's fit 1.3-1.5 times worse than the rows the palette was built for),
# every row farther than the keyframe's median; in any frame, rows beyond its 99th percentile (heavy
# tails of content like the palette's mostly are not). They earn one entry per gaussians_per_entry,
# as the keyframe did.
NOVEL = 2.0


def _as_attr_dict(values) -> dict:
    if isinstance(values, Gaussians):
        return {a: values.attribute(a) for a in ATTRS}
    return {Attr(k): np.asarray(v, np.float32) for k, v in values.items()}


@kernel
def residuals(state, slots, new, res, mask, bit):
    """res = new - state[:, slots] (wrapping, unsigned views); mask[i] |= bit where a component moved."""
    for c in range(new.shape[0]):
        for i in range(new.shape[1]):
            r = new[c, i] - state[c, slots[i]]
            res[c, i] = r
            if res[c, i] != 0:
                mask[i] |= bit


def format_options(fmt: str) -> dict:
    """The Encoder options of a stream that decoders of format ``fmt`` (one of FORMATS) read (SPEC.md
    10): each minor version adds a way to send fewer bytes, and this uses every one it allows."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: this codec writes {', '.join(FORMATS)}")
    minor = int(fmt.split(".")[1])
    return {"implicit_ids": minor >= 1, "ranked_ids": minor >= 2, "channel_filter": minor >= 3, "gap_code": minor >= 4}


class Encoder:
    """Encodes frames of one stream. ``encoder.state`` is exactly what a decoder will hold."""

    def __init__(self, profile: Profile, *, max_gaussians: int = 0, generator: str = "gsd-python",
                 level: int = 1, digest: bool = True, gaussians_per_entry: int = 8,
                 weighted: bool = True, frame_rate: float = 0.0, implicit_ids: bool = True,
                 ranked_ids: bool = False, channel_filter: bool = False, gap_code: bool = False,
                 shape_rounding: bool = False, palette_search=None):
        self.profile = profile
        # SH palette streams: a scene's palette gets one entry per this many Gaussians (up to the
        # header's sh_palette), its k-means weighing each Gaussian's SH error by its alpha
        # (``weighted``, ``importance``); ``_search`` finds entries for new content. ``palette_search``:
        # a class with ``palette.PaletteSearch``'s constructor and methods that does the search
        # elsewhere, e.g. on the GPU that holds a generator's scene (rows in, indices out).
        self.gaussians_per_entry = gaussians_per_entry
        self.weighted = weighted
        self._search_type = palette_search or palette.PaletteSearch
        self._search: palette.PaletteSearch | None = None
        self._fit = None  # (median, 99th percentile) of the squared distances of the palette's own rows
        self._made = None    # the palette entries of the last delta built here
        self._planned = None  # (entries' codes, sent flags) of a palette fixed in advance (plan_palette)
        self.header = StreamHeader(profile, max_gaussians, generator, frame_rate=frame_rate)  # frame_rate: informative
        self.state = SceneState(profile, max_gaussians=max_gaussians)
        # implicit_ids=False: no ADD_IMPLICIT (1.0 readers). channel_filter: colour sections may be stored
        # as differences between the colour channels (the CHANNEL filter, format 1.3), where a trial finds
        # that smaller (a captured scene's SH_DC: 0.4-0.7 B per Gaussian; the synthetic scenes'
        # independent channels: never), at the cost of two more trial compressions per colour section
        self.frames = FrameEncoder(profile, level, implicit_ids, channel_filter, gap_code)
        # UPDATE and DELETE_IDS ids of deltas as ranks among the live ids (format 1.2, SPEC.md 6.1):
        # fewer bytes (a world session's ids 0.55-0.68x, a random 5k edit's 0.60x), but the encoder and
        # every decoder then keep the live ids in rank order (a random 5k edit at 1M: +1.3 ms encode,
        # +0.9 ms decode), so it is asked for where bytes count more than milliseconds (files).
        # gap_code: the ranks as exp-Golomb codes of their gaps where that is smaller than zstd (format
        # 1.4): a random 5k edit's ranks 1.54 -> 1.35 B, a world session's 0.35 -> 0.30 B per id
        self.ranked_ids = ranked_ids
        # shape_rounding: ROTATION codes chosen for each Gaussian's shape among the 27 within a step of
        # the nearest (``quantize.rotation_codes``): +2.3 dB of rotation-only render quality on a
        # captured scene at the same bytes, for about 0.3 us per rotated row, so it is asked for where
        # bytes and quality count more than microseconds (files)
        self.shape_rounding = shape_rounding
        self.with_digest = digest
        self._issued = np.zeros(0, U64)  # ids handed out by assign_ids, not yet added

    def header_bytes(self) -> bytes:
        return encode_header(self.header)

    # -- ids ------------------------------------------------------------------------------
    def assign_ids(self, positions: np.ndarray) -> np.ndarray:
        """Fresh spatial ids for Gaussians born at ``positions`` (SPEC.md 3.3). Where the profile allows
        ADD_IMPLICIT blocks, a Gaussian takes the cell its quantized position falls in and the
        Gaussians new to a cell are numbered in placement order, so that a block of them needs no ids."""
        p = self.profile
        g = p.grid
        positions = np.ascontiguousarray(np.asarray(positions, np.float32).reshape(-1, 3))
        key = None
        if p.implicit_ids:  # also when this encoder sends every id: the same scene, the same ids
            pb = p.quant.position_bits
            cells, key = np.empty(len(positions), U64), np.empty(len(positions), U64)
            placed_cells(positions, np.asarray(g.origin, np.float64), float(g.cell_size), g.cell_size / (1 << pb),
                         float((1 << g.cell_bits) - 1), float(1 << pb), U64(3 * pb), cells, key)
        else:
            cells = g.cells_of(positions)
        shift = U64(g.slot_bits)
        idx = self.state.index
        keysets = [idx.main_ids, idx.over_ids, idx.run_ids, self._issued]

        def next_slot(uniq: np.ndarray) -> np.ndarray:
            lo, hi = uniq << shift, (uniq + U64(1)) << shift
            best = np.zeros(len(uniq), U64)
            for keys in keysets:
                if len(keys) == 0:
                    continue
                pos = np.searchsorted(keys, hi) - 1
                ok = pos >= 0
                top = keys[np.maximum(pos, 0)]
                hit = ok & (top >= lo)
                best = np.where(hit, np.maximum(best, top - lo + U64(1)), best)
            return best

        slots = assign_slots(cells, next_slot, key)
        if len(slots) and slots.max() >= U64(1) << shift:
            raise ValueError("a grid cell ran out of slots; use more slot_bits or smaller cells")
        ids = (cells << shift) | slots
        self._issued = np.sort(np.concatenate([self._issued, ids]))  # disjoint by construction
        return ids

    def reserve(self, ids: np.ndarray) -> None:
        """Ids the caller will ADD later but did not get from assign_ids: assign_ids will not hand them out."""
        self._issued = np.union1d(self._issued, np.asarray(ids, U64).reshape(-1))

    # -- building deltas --------------------------------------------------------------------
    def make_delta(self, *, add=None, update=None, delete=None, delete_ranges=None, delete_cells=None,
                   keyframe: bool = False) -> Delta:
        """A code-space Delta against the current state (not applied).

        add: (ids, Gaussians); update: (ids, Gaussians or {Attr: (n, C) floats}) [, mask], or a list
        of such groups (distinct ids, each with its own attributes);
        delete: ids; delete_ranges: (R, 2) inclusive; delete_cells: {level: cell codes}.
        """
        p = self.profile
        d = Delta.empty_like(p, seq=self.state.seq + 1, base_seq=self.state.seq, keyframe=keyframe)
        if add is not None:
            ids, g = add
            ids = np.asarray(ids, U64)
            order = id_order(ids)
            vals = _as_attr_dict(g)
            d.add_ids = ids[order]
            for a in ATTRS:  # written in id order while quantizing
                if a is Attr.SH_REST and p.palette:
                    fresh = keyframe or self.state.count == 0
                    d.add[a] = self._palette_codes(vals[a][order], d, fresh, self._weights(vals, order))
                else:
                    d.add[a] = p.quantize(a, vals[a], ids, order, scales=self._shape(a, d.add, order))
        if update is not None:
            # one group (ids, values[, mask]) or a list of them: groups of distinct ids that carry
            # different attributes (each group's rows take residuals only in its own attributes)
            groups = update if isinstance(update, list) else [update]
            parts = []
            for ids_g, values_g, *rest in groups:
                parts.append((np.ascontiguousarray(ids_g, U64).reshape(-1), _as_attr_dict(values_g),
                              rest[0] if rest else full_mask(p.sh_degree)))
            given = parts[0][0] if len(parts) == 1 else np.concatenate([x[0] for x in parts])
            order = np.arange(len(given)) if not ascending_problem(given) else id_order(given)
            ids = given[order]
            slots = self.state.slots_of(ids)
            if (slots < 0).any():
                raise KeyError("UPDATE of an id that is not live")
            mask = np.zeros(len(ids), np.uint8)
            res = {}
            if len(parts) > 1:
                where = np.empty(len(given), np.int64)
                where[order] = np.arange(len(given))   # the sorted row of each given row
            start = 0
            for ids_g, vals, user_mask in parts:
                k = len(ids_g)
                if len(parts) == 1:
                    rows, order_g, slots_g, mask_g = None, order, slots, mask
                else:
                    order_g = np.argsort(where[start:start + k], kind="stable")
                    rows = where[start:start + k][order_g]
                    slots_g, mask_g = slots[rows], np.zeros(k, np.uint8)
                start += k
                made = {}  # the group's new codes (id order)
                for a in ATTRS:
                    if a in vals and user_mask & a.bit and p.comps(a):
                        if a is Attr.SH_REST and p.palette:
                            new = self._palette_codes(np.asarray(vals[a], np.float32)[order_g], d, False,
                                                      self._weights(vals, order_g))
                        else:
                            shape = self._shape(a, made, order_g, slots_g)
                            new = p.quantize(a, vals[a], ids_g, order_g, scales=shape,
                                             held=None if shape is None else self.state.codes[a][:, slots_g])
                            made[a] = new
                        r = np.empty_like(new)
                        residuals(unsigned(self.state.codes[a]), slots_g, unsigned(new), unsigned(r), mask_g, a.bit)
                        if rows is None:
                            res[a] = r
                        else:
                            res.setdefault(a, np.zeros((new.shape[0], len(ids)), new.dtype))[:, rows] = r
                if rows is not None:
                    mask[rows] |= mask_g
            groups = mask_rows(mask)
            d.updates = group_updates(ids, mask, res, groups)
            d.slot_hint = (self.state.token(), [slots[rows] for _, rows in groups])
        self._made = d.palette
        if delete is not None:
            d.delete_ids = sorted_unique(np.asarray(delete, U64).reshape(-1))
        if delete_ranges is not None:
            d.delete_ranges = np.asarray(delete_ranges, U64).reshape(-1, 2)
        if delete_cells:
            d.delete_cells = {int(k): sorted_unique(np.asarray(v, U64).reshape(-1)) for k, v in delete_cells.items()}
        return d

    def _shape(self, a: Attr, made: dict, order: np.ndarray, slots=None) -> np.ndarray | None:
        """The log-scales, per input row, that ROTATION codes are chosen for (None: the nearest codes):
        the ones the decoder will hold, so a rotation sent again unchanged keeps its code. They decode
        from ``made``'s SCALE codes (id order; column j is input row order[j]), or where the frame
        leaves scale as it is, from the state's at ``slots``."""
        if a is not Attr.ROTATION or not self.shape_rounding or self.profile.quant is None:
            return None
        codes = made[Attr.SCALE] if Attr.SCALE in made else self.state.codes[Attr.SCALE][:, slots]
        held = np.empty((len(order), 3), np.float32)
        held[order] = self.profile.dequantize(Attr.SCALE, codes, None)
        return held

    # -- SH palette --------------------------------------------------------------------------------
    def plan_palette(self, gaussians: Gaussians, ids: np.ndarray) -> None:
        """Fix the SH palette of a scene that goes out over several frames (a progressive keyframe):
        the entries, numbered alike, that a plain keyframe of ``gaussians`` with ``ids`` gets. Until
        ``end_palette_plan``, every Gaussian added takes its nearest entry of that palette, and a frame
        sends the entries its Gaussians are the first to use; so once all of the scene has arrived,
        the palette is the plain keyframe's, and so is the digest."""
        p = self.profile
        if not p.palette:
            return
        ids = np.asarray(ids, U64)
        order = id_order(ids)
        vals = _as_attr_dict(gaussians)
        scratch = Delta.empty_like(p, seq=0, base_seq=0, keyframe=True)
        self._palette_codes(vals[Attr.SH_REST][order], scratch, True, self._weights(vals, order))
        self._planned = (scratch.palette.codes, np.zeros(len(scratch.palette), bool))

    def end_palette_plan(self) -> None:
        """Back to the palette's own rules (SPEC.md Appendix C) for later frames."""
        self._planned = None

    def _planned_codes(self, values: np.ndarray, d: Delta, fresh: bool) -> np.ndarray:
        codes, sent = self._planned
        if fresh:
            sent[:] = False                          # a keyframe starts from an all-zero palette
        found, _ = self._search.nearest(values)
        new = np.unique(found[~sent[found]])
        if len(new):
            sent[new] = True
            entries = PaletteSet(new.astype(np.uint16), np.ascontiguousarray(codes[:, new]))
            d.palette = PaletteSet.merged(d.palette, entries)
        return found.astype(np.uint16)[None, :]

    def _palette_codes(self, values: np.ndarray, d: Delta, fresh: bool,
                       weights: np.ndarray | None = None) -> np.ndarray:
        """(1, n) palette indices for SH_REST float rows. ``fresh``: the frame starts the palette over
        (a keyframe, or an empty scene), so a palette is built for these rows; otherwise rows that
        no entry fits earn new entries in entries no live Gaussian uses (SPEC.md 5.9). ``weights``:
        how much each row's SH error shows (``importance``); None weighs rows alike."""
        p = self.profile
        values = np.ascontiguousarray(values, np.float32).reshape(-1, p.rest_comps)
        if not np.isfinite(values).all():
            raise ValueError("sh_rest has NaN or infinite values")
        reach = (p.rest_limits() * p.rest_steps()).astype(np.float32)  # what an entry can hold
        values = np.minimum(values, reach)              # np.clip with per-column bounds: 2.5x slower
        np.maximum(values, -reach, out=values)
        if self._planned is not None:
            return self._planned_codes(values, d, fresh)
        if fresh:
            k = min(p.palette, max(1, -(-len(values) // self.gaussians_per_entry)))
            codes = p.quantize_rest(palette.build(values, k, weights=weights))
            search = self._search_type(p.dequantize_rest(codes), np.arange(codes.shape[1]))
            found, dist = search.nearest(values)
            # Number the entries in the order of their first Gaussian (rows come in id order, i.e.
            # along the Morton curve), so that the index section delta-codes a little smaller;
            # entries that no row uses are dropped.
            _, first = np.unique(found, return_index=True)
            keep = found[np.sort(first)]
            renumber = np.full(codes.shape[1], -1, np.int64)
            renumber[keep] = np.arange(len(keep))
            search.relabel(renumber)
            d.palette = PaletteSet(np.arange(len(keep), dtype=np.uint16), np.ascontiguousarray(codes[:, keep]))
            self._search = search
            self._fit = tuple(np.quantile(dist, [0.5, 0.99])) if len(dist) else None
            return renumber[found].astype(np.uint16)[None, :]
        if self._search is None:  # a palette this encoder did not build: search the state's
            entries = self.state.palette_set()
            self._search = self._search_type(p.dequantize_rest(entries.codes), entries.index.astype(np.int64))
            self._fit = None
        found, dist = self._search.nearest(values)
        if self._fit is None and len(self._search) and len(dist):  # the first rows stand for the palette's
            self._fit = tuple(np.quantile(dist, [0.5, 0.99]))
        poor = np.zeros(0, np.int64)
        if self._fit is not None and len(dist):
            median, tail = self._fit
            poor = np.flatnonzero(dist > (median if np.median(dist) > NOVEL * median else tail))
        if len(poor):
            free = self._free_entries(d, found)
            k = min(len(free), len(poor) // self.gaussians_per_entry)
            if k:
                w = None if weights is None else weights[poor]
                codes = p.quantize_rest(palette.build(values[poor], k, weights=w))
                index = free[:codes.shape[1]].astype(np.uint16)
                d.palette = PaletteSet.merged(d.palette, PaletteSet(index, codes))
                fresh_entries = p.dequantize_rest(codes)
                self._search.add(fresh_entries, index)
                # any row of the frame may fit a new entry best: only the new entries need a look
                near, nd = palette.nearest(values, fresh_entries)
                better = nd < dist
                found[better], dist[better] = index[near[better]], nd[better]
        return found.astype(np.uint16)[None, :]

    def _weights(self, vals: dict, order: np.ndarray) -> np.ndarray | None:
        """Palette weights of rows given as {Attr: floats} (in ``order``); None without opacity."""
        if not self.weighted or Attr.OPACITY not in vals:
            return None
        return importance(vals[Attr.OPACITY])[order]

    def _free_entries(self, d: Delta, taken: np.ndarray = ()) -> np.ndarray:
        """Palette indices that no live Gaussian, no ADD of ``d``, no entry set by ``d`` and none of
        ``taken`` (indices this frame already gave) uses, ascending: the entries a frame may overwrite."""
        used = self.state.palette_uses > 0
        add = d.add.get(Attr.SH_REST)
        if add is not None and add.shape[1]:
            used[add[0]] = True
        if d.palette is not None:
            used[d.palette.index] = True
        used[np.asarray(taken, np.int64)] = True
        return np.flatnonzero(~used)

    # -- encoding ------------------------------------------------------------------------------
    def encode_delta(self, d: Delta) -> bytes:
        """Apply a code-space delta to the closed-loop state, then serialize it (with digest)."""
        return self._encode(d, adopt=False)

    def _encode(self, d: Delta, adopt: bool) -> bytes:
        """``adopt``: the delta is this encoder's own (never handed out), so a keyframe's arrays may
        become the state's storage without a copy."""
        d.digest = None
        if d.palette is not None and d.palette is not self._made:
            self._search = None  # entries set by someone else: search the state's palette afresh
        frame = []

        def begin():  # the delta is well-formed: a large frame's sections compress on a worker meanwhile
            # (ranks are taken now, against the state before the delta)
            ranked = self.ranked_ids and not d.keyframe and (len(d.delete_ids) or d.updates)
            frame.append(self.frames.start(d, rank=self.state.ranks_of if ranked else None))
        try:
            self.state.apply(d, track_digest=self.with_digest, adopt=adopt, on_valid=begin)
        except BaseException:
            if frame:
                frame[0].cancel()
            raise
        if len(d.add_ids) and len(self._issued):
            self._issued = self._issued[~sorted_member(self._issued, d.add_ids)]
        if self.with_digest:
            d.digest = self.state.digest()
        return frame[0].finish()

    def encode(self, **ops) -> bytes:
        """make_delta(**ops) then encode_delta: one call per frame."""
        return self._encode(self.make_delta(**ops), adopt=True)

    def keyframe(self, gaussians: Gaussians | None = None, ids: np.ndarray | None = None) -> bytes:
        """A keyframe: of new Gaussians (ids assigned if not given), or of the current state (resync)."""
        if gaussians is None:
            return self.frames.encode(self.state_keyframe())
        if ids is None:
            ids = self.assign_ids(gaussians.positions)
        return self.encode(add=(ids, gaussians), keyframe=True)

    def state_keyframe(self) -> Delta:
        """The current state as a keyframe Delta at the current seq (for late joiners and resync)."""
        ids, codes = self.state.sorted_codes()
        d = Delta.empty_like(self.profile, seq=max(self.state.seq, 1), base_seq=self.state.seq, keyframe=True)
        d.add_ids, d.add = ids, codes
        d.palette = self.state.palette_set()  # a keyframe starts from a zero palette: send the rest
        d.digest = self.state.digest() if self.with_digest else None
        return d


def importance(opacity: np.ndarray) -> np.ndarray:
    """How much a Gaussian's SH error shows, as the palette build weighs it: its alpha. Alpha times
    the area of its two largest axes (its world-space footprint; or that area's fourth root) lost
    6.5 dB (1.8 dB) on a captured scene: it hands most entries to the few large Gaussians, which
    are mostly faint or hidden, and starves the many small ones that make the picture."""
    return (0.5 + 0.5 * np.tanh(0.5 * np.asarray(opacity, np.float64).reshape(-1))).astype(np.float32)

