"""Stateful test: random add/update/delete/keyframe sequences through Encoder -> bytes -> Decoder.

The oracle is a plain dict {id: codes tuple} updated by the same operations in
plain Python: codes come from an independent quantization (float32 bits for
lossless, Profile.quantize for lossy), deletes by id, range and cell are set
arithmetic on integers. Decoder and encoder must both match it, with equal digests.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from codec import Decoder, Delta, Encoder, ErrorCode, Gaussians, GsdError, SceneState
from codec import id_index
from codec import state as state_module
from codec.attributes import ATTRS, Attr, full_mask, mask_attrs
from codec.delta import UpdateBlock
from codec.wire import FrameEncoder

from conftest import PROFILE_NAMES, SH_DEGREES, make_profile, random_gaussians

EXTENT = 4.0


def oracle_codes(profile, attr: Attr, values: np.ndarray, ids: np.ndarray) -> list[tuple]:
    """Per Gaussian, the tuple of codes of one attribute, as unsigned bit patterns."""
    if len(ids) == 0:
        return []
    values = np.asarray(values, np.float32).reshape(len(ids), -1)
    if profile.lossless:  # the float32 bit pattern, nothing else
        return [tuple(int(x) for x in row.view(np.uint32)) for row in values]
    if attr is Attr.SH_REST and profile.palette:  # the encoder's choice of entry: no oracle; decoder
        return [None] * len(ids)                   # and encoder states are compared whole instead
    codes = profile.quantize(attr, values, ids)  # (C, n)
    w = codes.dtype.itemsize
    u = codes.view(np.dtype(f"u{w}"))
    return [tuple(int(x) for x in u[:, j]) for j in range(len(ids))]


def decoded_rows(state) -> dict:
    """{id: (codes of attr 0, codes of attr 1, ...)} from a SceneState, as unsigned bit patterns."""
    ids, codes = state.sorted_codes()
    out = {}
    for j, i in enumerate(ids):
        row = []
        for a in ATTRS:
            if a is Attr.SH_REST and state.profile.palette:
                row.append(None)
                continue
            c = codes[a]
            u = c.view(np.dtype(f"u{c.dtype.itemsize}"))
            row.append(tuple(int(x) for x in u[:, j]))
        out[int(i)] = tuple(row)
    return out


class StreamMachine(RuleBasedStateMachine):
    @initialize(name=st.sampled_from(PROFILE_NAMES), degree=st.sampled_from(SH_DEGREES),
                cell_bits=st.integers(2, 4), slot_bits=st.integers(8, 12), seed=st.integers(0, 2**31),
                budget=st.sampled_from([0, 1 << 20]))
    def setup(self, name, degree, cell_bits, slot_bits, seed, budget):
        """``budget``: a stream that declares room for more than its keyframes, so the decoder grows
        its arrays ahead after each one (``GROW_AHEAD_MIN`` is 1 here), or one that does not."""
        self.rng = np.random.default_rng(seed)
        box = np.array([[-EXTENT] * 3, [EXTENT] * 3], np.float32)
        self.profile = make_profile(name, degree, box, cell_bits, slot_bits)
        self.enc = Encoder(self.profile, max_gaussians=budget)
        self.dec = Decoder(self.enc.header_bytes())
        self.fe = FrameEncoder(self.profile)
        self.model: dict[int, tuple] = {}
        self.frames = 0

    # -- helpers -------------------------------------------------------------------------
    def _gaussians(self, n):
        g = random_gaussians(self.rng, n, self.profile.sh_degree, extent=EXTENT / 2, specials=False)
        g.positions[:] = np.clip(g.positions, -EXTENT, EXTENT)
        return g

    def _model_rows(self, ids, g, attrs=ATTRS, base=None):
        per_attr = {a: oracle_codes(self.profile, a, g.attribute(a) if hasattr(g, "attribute") else g[a], ids)
                    for a in attrs}
        for j, i in enumerate(int(x) for x in ids):
            old = list(base[i]) if base is not None else [None] * len(ATTRS)
            for a in attrs:
                old[int(a)] = per_attr[a][j]
            self.model[i] = tuple(old)

    def _send(self, frame: bytes):
        self.dec.decode_frame(frame)
        self.frames += 1

    def _live(self) -> list[int]:
        return sorted(self.model)

    def _pick(self, frac: float, min_count: int = 1) -> np.ndarray:
        live = self._live()
        k = max(min_count, int(round(frac * len(live))))
        return np.array(sorted(self.rng.choice(live, min(k, len(live)), replace=False)), np.uint64)

    # -- rules ----------------------------------------------------------------------------
    @rule(n=st.integers(1, 40))
    def add(self, n):
        g = self._gaussians(n)
        ids = self.enc.assign_ids(g.positions)
        self._send(self.enc.encode(add=(ids, g)))
        self._model_rows(ids, g)

    @precondition(lambda self: self.model)
    @rule(frac=st.floats(0, 1), mask=st.integers(1, 63))
    def update(self, frac, mask):
        mask &= full_mask(self.profile.sh_degree)
        mask = mask or Attr.OPACITY.bit
        ids = self._pick(frac)
        g = self._gaussians(len(ids))
        vals = {a: g.attribute(a) for a in mask_attrs(mask)}
        self._send(self.enc.encode(update=(ids, vals, mask)))
        base = dict(self.model)
        self._model_rows(ids, vals, mask_attrs(mask), base)

    @precondition(lambda self: self.model)
    @rule(frac=st.floats(0, 1))
    def delete_ids(self, frac):
        ids = self._pick(frac)
        self._send(self.enc.encode(delete=ids))
        for i in ids:
            del self.model[int(i)]

    @rule(a=st.integers(0, 2**63), b=st.integers(0, 2**63), from_live=st.booleans())
    def delete_range(self, a, b, from_live):
        live = self._live()
        limit = self.profile.grid.id_limit
        if from_live and live:
            a, b = live[a % len(live)], live[b % len(live)]
        else:
            a, b = a % limit, b % limit
        first, last = min(a, b), max(a, b)
        self._send(self.enc.encode(delete_ranges=[[first, last]]))
        self.model = {i: v for i, v in self.model.items() if not (first <= i <= last)}

    @rule(level=st.integers(0, 4), pick=st.integers(0, 2**31))
    def delete_cell(self, level, pick):
        grid = self.profile.grid
        level = min(level, grid.cell_bits)
        shift = grid.slot_bits + 3 * level
        live = self._live()
        cell = (live[pick % len(live)] >> shift) if live else pick % (1 << (3 * (grid.cell_bits - level)))
        self._send(self.enc.encode(delete_cells={level: [cell]}))
        self.model = {i: v for i, v in self.model.items() if (i >> shift) != cell}

    @precondition(lambda self: self.model)
    @rule(frac_del=st.floats(0, 1), frac_readd=st.floats(0, 1), n_new=st.integers(0, 10), frac_upd=st.floats(0, 1))
    def mixed(self, frac_del, frac_readd, n_new, frac_upd):
        """One frame with deletes, replaces (delete + ADD of the same id), fresh adds and updates."""
        gone = self._pick(frac_del, 0)
        readd = gone[: int(len(gone) * frac_readd)]
        rest = sorted(set(self.model) - {int(i) for i in gone})
        upd = np.array(sorted(self.rng.choice(rest, int(frac_upd * len(rest)), replace=False)) if rest else [], np.uint64)
        gn = self._gaussians(n_new)
        new_ids = self.enc.assign_ids(gn.positions)
        gr = self._gaussians(len(readd))
        add_ids = np.concatenate([readd, new_ids]).astype(np.uint64)
        g_add = Gaussians.concat([gr, gn])
        gu = self._gaussians(len(upd))
        ops = {"delete": gone} if len(gone) else {}
        if len(add_ids):
            ops["add"] = (add_ids, g_add)
        if len(upd):
            ops["update"] = (upd, gu)
        self._send(self.enc.encode(**ops))
        for i in gone:
            del self.model[int(i)]
        self._model_rows(add_ids, g_add)
        base = dict(self.model)
        self._model_rows(upd, gu, ATTRS, base)

    @rule(n=st.integers(0, 60))
    def keyframe(self, n):
        g = self._gaussians(n)
        ids = self.enc.assign_ids(g.positions)
        self._send(self.enc.keyframe(g, ids))
        self.model = {}
        self._model_rows(ids, g)

    @rule()
    def late_joiner(self):
        """A resync keyframe of the encoder state gives a fresh decoder the same state."""
        frame = self.enc.keyframe()
        fresh = Decoder(self.enc.header_bytes())
        fresh.decode_frame(frame)
        assert decoded_rows(fresh.state) == self.model
        assert fresh.state.digest() == self.enc.state.digest()

    @rule(which=st.sampled_from(["update_missing", "delete_missing", "add_live", "gap"]))
    def rejected_frame(self, which):
        """A frame the state cannot take is refused with its code and changes nothing."""
        p, s = self.profile, self.dec.state
        d = Delta.empty_like(p, seq=s.seq + 1, base_seq=s.seq)
        absent = next(i for i in range(p.grid.id_limit) if i not in self.model)
        if which == "update_missing":
            d.updates = [UpdateBlock(Attr.OPACITY.bit, np.array([absent], np.uint64),
                                     {Attr.OPACITY: np.zeros((1, 1), p.dtype(Attr.OPACITY))})]
            code = ErrorCode.ID_MISSING
        elif which == "delete_missing":
            d.delete_ids = np.array([absent], np.uint64)
            code = ErrorCode.ID_MISSING
        elif which == "add_live" and self.model:
            live = self._live()[0]
            d.add_ids = np.array([live], np.uint64)
            d.add = {a: np.zeros((p.comps(a), 1), p.dtype(a)) for a in ATTRS}
            code = ErrorCode.ID_EXISTS
        else:
            d.base_seq = s.seq + 5
            d.seq = s.seq + 6
            code = ErrorCode.SEQUENCE_GAP
        before = (s.digest(), s.seq, decoded_rows(s))
        try:
            self.dec.decode_frame(self.fe.encode(d))
        except GsdError as e:
            assert e.code == code, (e.code, code)
        else:
            raise AssertionError(f"{which} frame was accepted")
        assert (self.dec.state.digest(), self.dec.state.seq, decoded_rows(self.dec.state)) == before

    # -- invariants -------------------------------------------------------------------------
    @invariant()
    def decoder_matches_model(self):
        if not hasattr(self, "dec"):
            return
        assert decoded_rows(self.dec.state) == self.model
        assert decoded_rows(self.enc.state) == self.model
        assert self.dec.state.equals(self.enc.state)  # palette indices and entries included
        assert self.dec.state.digest() == self.enc.state.digest()
        assert self.dec.state.digest().count == len(self.model)
        for st in (self.dec.state, self.enc.state):  # every slot below high is live or a counted hole
            assert st.holes == st.high - st.count
        assert self.dec.state.seq == self.enc.state.seq
        # the incrementally maintained digest equals one hashed from scratch (a fresh, unhashed load)
        ids, codes = self.dec.state.sorted_codes()
        kf = Delta.empty_like(self.profile, seq=1, keyframe=True)
        kf.add_ids, kf.add = ids, {a: c.copy() for a, c in codes.items()}
        kf.palette = self.dec.state.palette_set()
        fresh = SceneState(self.profile)
        fresh.apply(kf)
        assert fresh.digest() == self.dec.state.digest()


StreamMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=25, deadline=None)
TestStreamMachine = StreamMachine.TestCase


@pytest.fixture(autouse=True)
def _work_ahead_at_any_size(monkeypatch):
    """What a large scene does on worker threads (arrays grown and cell tables built ahead after a
    keyframe, index merges) happens here at every size."""
    monkeypatch.setattr(state_module, "GROW_AHEAD_MIN", 1)
    monkeypatch.setattr(id_index, "BACKGROUND_MIN", 0)
