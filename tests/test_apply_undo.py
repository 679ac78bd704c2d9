"""A frame that fails after its UPDATE blocks were applied in place leaves the state as it was.

SceneState.apply writes UPDATE blocks into the state (keeping the old codes and accumulators) and
only then checks the budget, the palette and the digest; a domain failure can also come in the
middle of a block. Each case here fails at one of those points, with the compiled loops and with
their Python originals, and the state, its digest and its seq must be exactly as before.
"""
from __future__ import annotations

import numpy as np
import pytest

import codec.state as state_module
from codec import Decoder, Encoder, ErrorCode, GsdError, Profile
from codec.attributes import Attr
from codec.digest import Digest
from codec.spatial import Grid
from codec.synthetic import synthetic_scene

N = 400
MASKS = (Attr.POSITION.bit, Attr.SH_DC.bit | Attr.SH_REST.bit)


def _setup():
    g = synthetic_scene(N, 3, 7)
    enc = Encoder(Profile.preset("compact", 3, Grid.fit(g.positions, cell_bits=6)))
    dec = Decoder(enc.header_bytes())
    ids = enc.assign_ids(g.positions)
    dec.decode_frame(enc.keyframe(g, ids))
    rng = np.random.default_rng(3)
    picked = rng.choice(ids, 120, replace=False)
    moved, recoloured = np.sort(picked[:60]), np.sort(picked[60:])
    rows = {int(i): r for r, i in enumerate(ids)}
    sel = lambda x: np.array([rows[int(i)] for i in x])
    values = {Attr.POSITION: g.positions[sel(moved)] + rng.normal(0, 0.05, (60, 3)).astype(np.float32)}
    colours = {Attr.SH_DC: g.sh_dc[sel(recoloured)] + 0.3, Attr.SH_REST: g.sh_rest[sel(recoloured)] * 0.5}
    born = g.take(np.arange(5))
    first = enc.make_delta(update=(moved, values, MASKS[0]))
    enc.encode_delta(first)
    dec.decode_frame(enc.frames.encode(first))
    d = enc.make_delta(update=(recoloured, colours, MASKS[1]), delete=np.sort(ids[~np.isin(ids, picked)])[:4],
                       add=(enc.assign_ids(born.positions), born))
    d.updates = [enc.make_delta(update=(moved, {Attr.POSITION: values[Attr.POSITION] + 0.01}, MASKS[0])).updates[0]] \
        + d.updates
    d.slot_hint = None
    enc.state.apply(d.__class__(**{**d.__dict__, "slot_hint": None}), track_digest=True)
    d.digest = enc.state.digest()
    return dec.state, d


def _python_loops(monkeypatch):
    """The state's update loops as Python, with wrapping arithmetic as codec.jit runs them."""
    for name in ("update_in_place", "add_accumulators", "scatter"):
        py = getattr(state_module, name).py_func

        def run(*args, py=py):
            with np.errstate(over="ignore", invalid="ignore"):
                return py(*args)
        monkeypatch.setattr(state_module, name, run)


@pytest.mark.parametrize("loops", ["compiled", "python"])
@pytest.mark.parametrize("failure", ["domain_mid_block", "budget", "digest"])
def test_failed_frame_puts_updated_rows_back(failure, loops, monkeypatch):
    st, d = _setup()
    if loops == "python":
        _python_loops(monkeypatch)
    assert [b.mask for b in d.updates] == list(MASKS)
    before, digest, seq = st.copy(), st.digest(), st.seq
    expect = {"domain_mid_block": ErrorCode.BAD_VALUE, "budget": ErrorCode.LIMIT_EXCEEDED,
              "digest": ErrorCode.DIGEST_MISMATCH}[failure]
    good = d.__class__(**{**d.__dict__, "updates": list(d.updates)})
    if failure == "domain_mid_block":  # the second block's second attribute, component 5, row 30
        rest = d.updates[1].res[Attr.SH_REST].copy()
        rest[5, 30] = np.int8(100) - st.codes_of(d.updates[1].ids[30:31], [Attr.SH_REST])[Attr.SH_REST][5, 0]
        d.updates[1] = d.updates[1].__class__(d.updates[1].mask, d.updates[1].ids,
                                              {**d.updates[1].res, Attr.SH_REST: rest})
    elif failure == "budget":
        st.max_gaussians = len(st)
    else:
        d.digest = Digest(d.digest.count, d.digest.lane0 ^ 1, d.digest.lane1)
    with pytest.raises(GsdError) as e:
        st.apply(d)
    assert e.value.code == expect
    assert st.equals(before) and st.digest() == digest and st.seq == seq
    st.max_gaussians = before.max_gaussians
    st.apply(good)  # the state still takes the good frame, and its digest checks
    assert st.digest() == good.digest


@pytest.mark.parametrize("fault", ["none", "add_live", "add_domain", "add_live_and_update_missing",
                                   "add_domain_and_delete_missing"])
def test_add_faults_are_found_in_the_order_of_the_checks(fault):
    """A delta's ADDs are checked after its deletes and before its UPDATEs: a frame with two faults
    gives the error of the first, and the state is untouched; a good one gives the same state and
    digest."""
    st, d = _setup()
    before, seq = st.digest(), st.seq
    live = st.ids()
    if fault in ("add_live", "add_live_and_update_missing"):
        d.add_ids = np.sort(np.concatenate([d.add_ids[1:], live[-1:]]))
    if fault == "add_domain" or fault == "add_domain_and_delete_missing":
        d.add[Attr.OPACITY] = d.add[Attr.OPACITY].copy()
        d.add[Attr.ROTATION] = d.add[Attr.ROTATION].copy()
        d.add[Attr.ROTATION][0, 0] = 7                  # the largest component's index is 0..3
    if fault == "add_live_and_update_missing":
        b = d.updates[0]
        b.ids = np.sort(np.concatenate([b.ids[1:], np.array([live.max() + np.uint64(1)])]))  # not live
    if fault == "add_domain_and_delete_missing":
        d.delete_ids = np.sort(np.concatenate([d.delete_ids[1:], np.array([live.max() + np.uint64(7)])]))
    want = {"none": None, "add_live": ErrorCode.ID_EXISTS, "add_domain": ErrorCode.BAD_VALUE,
            "add_live_and_update_missing": ErrorCode.ID_EXISTS, "add_domain_and_delete_missing": ErrorCode.ID_MISSING}[fault]
    if want is None:
        st.apply(d)
        assert st.digest() == d.digest
        return
    with pytest.raises(GsdError) as e:
        st.apply(d)
    assert e.value.code == want
    assert st.digest() == before and st.seq == seq
