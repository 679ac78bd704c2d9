"""SH palette encoder (SPEC.md 5.9, codec/palette.py, Encoder._palette_codes).

The palette is the encoder's choice, so these tests hold it to what makes it useful: the k-means
build finds the clusters it is given, the two-level search finds (nearly) the nearest entry, and a
stream that keeps receiving new content grows its palette into unused entries without disturbing
the Gaussians that use the old ones, with encoder and decoder in step on every frame.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from codec import Decoder, Encoder, Grid, Profile, palette
from codec.attributes import Attr
from codec.synthetic import synthetic_scene


def _clusters(rng: np.random.Generator, m: int, per: int, dim: int, spread: float = 0.01):
    centres = rng.normal(0, 1, (m, dim)).astype(np.float32)
    x = np.repeat(centres, per, axis=0) + rng.normal(0, spread, (m * per, dim)).astype(np.float32)
    return centres, x[rng.permutation(len(x))]


def test_build_finds_the_clusters():
    rng = np.random.default_rng(1)
    centres, x = _clusters(rng, 40, 16, 24)
    e = palette.build(x, 40, seed=3)
    assert e.shape == (40, 24) and e.dtype == np.float32
    # every cluster has an entry at its centre (the mean of 16 rows of noise 0.01: ~0.0025 per component)
    _, d = palette.nearest(centres, e)
    assert d.max() < 24 * 0.005 ** 2, f"a cluster without an entry: {np.sqrt(d.max()):.3f}"
    assert len(palette.build(x[:10], 100)) <= 10
    assert len(palette.build(x, 0)) == 0
    duplicates = np.repeat(x[:5], 20, axis=0)  # 5 distinct rows: entries beyond 5 stay duplicates
    assert len(np.unique(palette.build(duplicates, 8), axis=0)) == 5


def test_build_weights_pull_entries():
    """A weighted row counts as many: with one entry for two clusters, it goes to the heavy one."""
    rng = np.random.default_rng(2)
    centres, _ = _clusters(rng, 2, 1, 9)
    x = np.repeat(centres, 100, axis=0)
    w = np.repeat(np.array([1.0, 50.0], np.float32), 100)
    e = palette.build(x, 1, weights=w)
    assert np.abs(e[0] - centres[1]).max() < np.abs(e[0] - centres[0]).max() / 10


def test_search_kernel_is_exact_and_blind_to_how_rows_are_blocked():
    """nearest_in takes up to four rows of a group at a time: the result is the exhaustive search of
    each row's group (a float64 reference picks the same entries), and bit for bit the same whether
    rows come one at a time, grouped, or unsorted (runs of 1 to 7 rows, three nearest kept)."""
    rng = np.random.default_rng(9)
    dim, n = 13, 300
    start = np.array([0, 5, 5, 17, 40, 41, 64])          # an empty group and a one-entry group
    c = rng.normal(size=(start[-1], dim)).astype(np.float32)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    group = np.repeat(rng.choice(6, 60), rng.integers(1, 8, 60))[:n]
    x = x[:len(group)]
    p = 3
    ct, cn = palette.prepared(c)

    def run(order, block):
        best, dist = np.full((len(x), p), -1, np.int64), np.full((len(x), p), np.inf, np.float32)
        g = group[order]
        for s in range(0, len(order), block):
            palette.nearest_in(x, order[s:s + block], g[s:s + block], start, ct, cn, best, dist)
        return best, dist
    rows = np.arange(len(x))
    best, dist = run(rows, len(x))
    for order, block in ((rows, 1), (np.argsort(group, kind="stable"), len(x)), (rng.permutation(len(x)), 5)):
        b, d = run(order, block)
        assert np.array_equal(b, best) and np.array_equal(d, dist)
    for i in range(len(x)):
        lo, hi = start[group[i]], start[group[i] + 1]
        ref = ((c[lo:hi].astype(np.float64) - x[i]) ** 2).sum(1)
        want = lo + np.argsort(ref, kind="stable")[:p]
        assert np.array_equal(best[i, :len(want)], want) and (best[i, len(want):] == -1).all()
        assert np.allclose(dist[i, :len(want)] + (x[i].astype(np.float64) ** 2).sum(), ref[want - lo], atol=1e-4)


def test_two_level_search_close_to_exhaustive():
    rng = np.random.default_rng(4)
    x = synthetic_scene(6000, sh_degree=2, seed=4).sh_rest
    entries = palette.build(x, 750, seed=0)
    index = rng.permutation(5000)[:len(entries)] + 7  # any indices, not 0..k-1
    search = palette.PaletteSearch(entries, index)
    got, d = search.nearest(x)
    exact, de = palette.nearest(x, entries)
    assert (got == index[exact]).mean() > 0.9
    assert d.mean() <= 1.05 * de.mean()
    assert np.isfinite(d).all() and (d >= de - 1e-5).all()
    # replacing entries: the search finds the new content under the old index
    search.add(x[:3] + 5, index[:3])
    got, d = search.nearest(x[:3] + 5)
    assert (got == index[:3]).all() and d.max() < 1e-3  # (float32 |c|^2 - 2 x.c + |x|^2 at |x|^2 ~ 600)


def _scene(n: int, seed: int, hue: float = 0.0):
    """Synthetic SH2 Gaussians; ``hue`` rotates the view-dependent colour between the R, G and B
    channels and brightens it: content unlike a palette built for ``hue`` 0."""
    g = synthetic_scene(n, sh_degree=2, seed=seed, extent=8)
    if hue:
        r, gg, b = np.split(g.sh_rest, 3, axis=1)
        g = dataclasses.replace(g, sh_rest=np.concatenate([b + hue, r - hue, gg + hue], axis=1))
    return g


def _profile(g) -> Profile:
    return Profile.fit("small", g, grid=Grid.fit(g.positions, cell_bits=8))


def _decoded_rest(dec: Decoder, ids: np.ndarray) -> np.ndarray:
    all_ids, g = dec.state.to_gaussians()
    return g.sh_rest[np.searchsorted(all_ids, ids)]


def _points_at_nearest(dec: Decoder, ids: np.ndarray, rest: np.ndarray) -> None:
    """The decoded SH_REST of ``ids`` is (about) the nearest entry of the palette as it now stands:
    no Gaussian was left on an entry that the same frame gave new content."""
    p = dec.state.profile
    entries = p.dequantize_rest(dec.state.palette[:, dec.state.palette.any(axis=0)])
    err = ((_decoded_rest(dec, ids) - rest) ** 2).sum(1)
    assert err.mean() <= 1.1 * palette.nearest(rest, entries)[1].mean() + 1e-6


def _step(enc: Encoder, dec: Decoder, **ops):
    """One frame through both ends: the decoder's state and digest must equal the encoder's."""
    d = enc.make_delta(**ops)
    frame = enc.encode_delta(d)
    dec.decode_frame(frame)
    assert dec.state.equals(enc.state) and dec.state.digest() == enc.state.digest()
    for st in (enc.state, dec.state):  # the per-entry use counts follow every add, delete and update
        _, codes = st.sorted_codes()
        assert np.array_equal(st.palette_uses, np.bincount(codes[Attr.SH_REST][0], minlength=len(st.palette_uses)))
    return d


def _started(n: int, seed: int):
    """A scene's keyframe through an encoder and a decoder: (scene, encoder, decoder, ids)."""
    base = _scene(n, seed=seed)
    enc = Encoder(_profile(base), max_gaussians=10000)
    dec = Decoder(enc.header_bytes())
    ids = enc.assign_ids(base.positions)
    dec.decode_frame(enc.keyframe(base, ids))
    return base, enc, dec, ids


def test_stream_extends_palette_for_new_content_only():
    base = _scene(3000, seed=1)
    profile = _profile(base)
    enc = Encoder(profile, max_gaussians=10000)
    dec = Decoder(enc.header_bytes())
    ids = enc.assign_ids(base.positions)
    dec.decode_frame(enc.keyframe(base, ids))
    assert dec.state.equals(enc.state)
    first = int(enc.state.palette.any(axis=0).sum())
    assert first <= -(-len(base) // enc.gaussians_per_entry)

    # more of the same content: found in the palette, no new entries
    same = _scene(4000, seed=1).take(np.arange(3000, 4000))
    same_ids = enc.assign_ids(same.positions)
    d = _step(enc, dec, add=(same_ids, same))
    assert d.palette is None or len(d.palette.index) <= 2

    # content shifted a little: each row within the keyframe's tail, but as a whole unlike it
    mild = _scene(1000, seed=4, hue=0.05)
    d = _step(enc, dec, add=(enc.assign_ids(mild.positions), mild))
    assert d.palette is not None and len(d.palette.index) >= 1000 // (2 * enc.gaussians_per_entry)

    # new content far from every entry earns new entries, in entries no Gaussian used
    before = _decoded_rest(dec, ids)
    new = _scene(1500, seed=2, hue=0.4)
    new_ids = enc.assign_ids(new.positions)
    d = _step(enc, dec, add=(new_ids, new))
    assert d.palette is not None and len(d.palette.index) >= 1500 // (4 * enc.gaussians_per_entry)
    assert np.array_equal(_decoded_rest(dec, ids), before), "an entry in use was overwritten"
    _points_at_nearest(dec, new_ids, new.sh_rest)
    assert not np.isin(d.palette.index, np.unique(enc.state.codes[Attr.SH_REST][0, enc.state.slots_of(ids)])).any()
    err_new = ((_decoded_rest(dec, new_ids) - new.sh_rest) ** 2).sum(1).mean()
    err_base = ((before - base.sh_rest) ** 2).sum(1).mean()
    assert err_new < 2.0 * err_base, "new content coded much worse than the first"


def _concat(a, b):
    return type(a)(*(np.concatenate([getattr(a, f.name), getattr(b, f.name)]) for f in dataclasses.fields(a)))


def test_freed_entries_are_reused_and_untouched_gaussians_keep_their_sh():
    base, enc, dec, ids = _started(3000, seed=3)
    size = int(enc.state.palette.any(axis=0).sum())
    gone, kept = ids[:1500], ids[1500:]
    _step(enc, dec, delete=gone)
    before = _decoded_rest(dec, kept)
    in_use = np.unique(enc.state.codes[Attr.SH_REST][0, enc.state.slots_of(kept)])
    reused = False
    for round_ in range(3):  # keeps bringing new content: freed entries are taken first (lowest index first)
        new = _scene(800, seed=10 + round_, hue=0.3 + 0.2 * round_)
        if round_ == 0:  # with Gaussians like the deleted ones, which fit the freed entries best
            new = _concat(base.take(np.arange(600)), new)
        new_ids = enc.assign_ids(new.positions)
        d = _step(enc, dec, add=(new_ids, new))
        assert d.palette is not None
        assert not np.isin(d.palette.index, in_use).any(), "an entry in use was overwritten"
        assert np.array_equal(_decoded_rest(dec, kept), before)
        _points_at_nearest(dec, new_ids, new.sh_rest)
        in_use = np.union1d(in_use, np.unique(enc.state.codes[Attr.SH_REST][0, enc.state.slots_of(new_ids)]))
        reused |= bool((d.palette.index < size).any())
    assert reused, "freed entries were not reused"


def test_update_to_new_sh_and_closed_loop():
    base, enc, dec, ids = _started(2000, seed=5)
    rows = np.arange(0, 2000, 3)
    other = _scene(2000, seed=6, hue=0.5).sh_rest[rows]
    before = _decoded_rest(dec, ids[1::3])
    _step(enc, dec, update=(ids[rows], {Attr.SH_REST: other}))
    assert np.array_equal(_decoded_rest(dec, ids[1::3]), before)
    err = ((_decoded_rest(dec, ids[rows]) - other) ** 2).sum(1).mean()
    assert err < 0.5 * (other ** 2).sum(1).mean()
    # a keyframe of the state (late joiner) carries every entry in use
    late = Decoder(enc.header_bytes())
    late.decode_frame(enc.keyframe())
    assert late.state.equals(enc.state)


def test_nan_rejected():
    g = _scene(500, seed=7)
    enc = Encoder(_profile(g))
    bad = dataclasses.replace(g, sh_rest=g.sh_rest.copy())
    bad.sh_rest[17, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        enc.keyframe(bad)
    ids = enc.assign_ids(g.positions)
    enc.keyframe(g, ids)
    with pytest.raises(ValueError, match="NaN"):
        enc.make_delta(update=(ids[:20], {Attr.SH_REST: bad.sh_rest[:20]}))
    with pytest.raises(ValueError, match="NaN"):
        palette.build(np.array([[np.nan, 0.0]], np.float32), 1)
