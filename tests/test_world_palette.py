"""World streams with an SH palette (SPEC.md 5.9): the host encoder picks the entries, on the host or
with the search on the world's device (``DevicePaletteSearch``, exercised here on the CPU)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

torch = pytest.importorskip("torch")  # the world needs the optional 'world' extra

from codec import Attr, Decoder, Encoder, Profile, palette, validate_stream  # noqa: E402
from reference_generator import Move, Turn, World, WorldConfig  # noqa: E402
from reference_generator import device_palette  # noqa: E402
from reference_generator.device_codes import FloatOps, build_delta  # noqa: E402
from reference_generator.device_palette import DevicePaletteSearch  # noqa: E402
from reference_generator.protocol import encoder_for, to_delta, to_host  # noqa: E402

torch.set_num_threads(1)
CFG = WorldConfig(sh_degree=1, profile="small", target_live=5000, view_radius=36.0, retire_margin=12.0)
WALK = [Move(3.0)] * 10 + [Turn(90)] + [Move(3.0)] * 10


def test_device_search_is_exhaustive_through_adds_replacements_and_relabels(monkeypatch):
    """Same answers as the host's exhaustive ``palette.nearest`` over the same entries, with the
    distance matrix cut into blocks smaller than the rows and the entries."""
    monkeypatch.setattr(device_palette, "BLOCK", 700)
    rng = np.random.default_rng(3)
    entries = rng.normal(size=(300, 9)).astype(np.float32)
    s = DevicePaletteSearch(entries, np.arange(300) * 2)                  # labels 0, 2, 4, ...
    table = dict(zip(np.arange(300) * 2, entries))
    new = rng.normal(size=(50, 9)).astype(np.float32)
    s.add(new, np.arange(50) * 4)                                         # 50 labels 0..196: all replace
    table.update(zip(np.arange(50) * 4, new))
    remap = np.where(np.arange(600) % 3 == 0, -1, np.arange(600) + 1000)  # drop every third label
    s.relabel(remap)
    table = {int(remap[k]): v for k, v in table.items() if remap[k] >= 0}
    mixed = rng.normal(size=(40, 9)).astype(np.float32)                   # 20 replace, 20 are new
    labels = np.concatenate([rng.choice(sorted(table), 20, replace=False), 5000 + np.arange(20) * 7])
    s.add(mixed, labels)
    table.update(zip(labels.tolist(), mixed))
    assert len(s) == len(table) and sorted(s.index) == sorted(table)
    labels = np.array(sorted(table))
    host = np.stack([table[k] for k in labels])
    x = rng.normal(size=(1000, 9)).astype(np.float32)
    got, dist = s.nearest(x)
    want, wdist = palette.nearest(x, host)
    assert (got == labels[want]).all()
    np.testing.assert_allclose(dist, wdist, rtol=1e-4, atol=1e-4)
    empty = DevicePaletteSearch(np.zeros((0, 9), np.float32), np.zeros(0, np.int64))
    i, d = empty.nearest(x[:3])
    assert (i == 0).all() and np.isinf(d).all()


@given(ops=st.lists(st.tuples(st.sampled_from(["add", "relabel"]), st.integers(1, 40), st.integers(0, 2**32 - 1)),
                    min_size=1, max_size=8))
def test_device_search_follows_any_sequence_of_adds_and_relabels(ops):
    """Against a model (palette index -> entry): adds of new, replaced and mixed indices, relabels that
    drop and renumber; after each, the same nearest entries as an exhaustive search of the model."""
    rng = np.random.default_rng(len(ops))
    s = DevicePaletteSearch(np.zeros((0, 5), np.float32), np.zeros(0, np.int64))
    table = {}
    for kind, k, seed in ops:
        r = np.random.default_rng(seed)
        if kind == "add":
            index = r.choice(120, size=min(k, 120), replace=False)
            entries = r.normal(size=(len(index), 5)).astype(np.float32)
            s.add(entries, index)
            table.update(zip(index.tolist(), entries))
        else:
            remap = np.where(r.random(120) < 0.3, -1, r.permutation(120))
            s.relabel(remap)
            table = {int(remap[i]): v for i, v in table.items() if remap[i] >= 0}
        assert sorted(s.index.tolist()) == sorted(table) and len(s) == len(table)
        if table:
            labels = np.array(sorted(table))
            x = rng.normal(size=(30, 5)).astype(np.float32)
            got, _ = s.nearest(x)
            _, best = palette.nearest(x, np.stack([table[i] for i in labels]))
            chosen = ((x - np.stack([table[int(i)] for i in got])) ** 2).sum(1)   # ties (equal entries) may go either way
            np.testing.assert_allclose(chosen, best, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("on_device", [False, True])
def test_a_palette_world_streams_decodes_and_takes_the_nearest_entries(on_device):
    """A world walking into new chunks under the ``small`` profile: every frame decodes to the
    encoder's state, the palette grows past the keyframe's, and with the exhaustive device search
    every added Gaussian gets an entry at least as near as any entry of the palette it met."""
    w = World(CFG)
    kw = {"palette_search": DevicePaletteSearch.on("cpu")} if on_device else {}
    enc = Encoder(w.profile, max_gaussians=CFG.max_gaussians, **kw) if on_device else \
        encoder_for(w.profile, "cpu", max_gaussians=CFG.max_gaussians)
    dec = Decoder(enc.header_bytes())
    p = enc.profile
    frames, grew = [enc.header_bytes()], 0
    for k, a in enumerate([None] + WALK):
        out = w.reset(0) if a is None else w.step(a)
        h = to_host(out, CFG.sh_degree)
        before = enc.state.palette_set()
        d = to_delta(enc, out)
        frame = enc.encode_delta(d)
        frames.append(frame)
        dec.decode_frame(frame)
        assert dec.state.digest() == enc.state.digest()
        grew += k > 0 and d.palette is not None and len(d.palette) > 0
        if on_device and k > 0 and len(h.add_ids):
            after = enc.state.palette_set()
            entries = p.dequantize_rest(after.codes)
            order = np.argsort(h.add_ids)
            rows = np.clip(h.add[Attr.SH_REST][order], -(p.rest_limits() * p.rest_steps()),
                           p.rest_limits() * p.rest_steps()).astype(np.float32)
            chosen = d.add[Attr.SH_REST][0].astype(np.int64)
            pos = np.searchsorted(after.index, chosen)
            d_chosen = ((rows - entries[pos]) ** 2).sum(1)
            met = np.isin(after.index, before.index) if before is not None else np.ones(len(after.index), bool)
            _, d_best = palette.nearest(rows, entries[met])
            assert (d_chosen <= d_best + 1e-5).all()
    w.close()
    assert grew > 0
    assert validate_stream(b"".join(frames)) == []


def test_a_palette_world_on_the_device_path_builds_only_its_adds_on_the_host(monkeypatch):
    """The path of a GPU world (here on the CPU): steps that ADD go to the host encoder, the others to
    the device frame builder, whose mirror follows the host's frames without reloading the state."""
    from reference_generator import device_codes, protocol

    monkeypatch.setattr(protocol, "DEVICE_PATH_ON_CPU", True)
    built, reloads = [], []
    real_build, real_reload = protocol.build_delta, device_codes.DeviceCodes.reload
    monkeypatch.setattr(protocol, "build_delta", lambda *a, **k: built.append(1) or real_build(*a, **k))
    monkeypatch.setattr(device_codes.DeviceCodes, "reload", lambda m, e: reloads.append(1) or real_reload(m, e))
    w = World(CFG)
    enc = encoder_for(w.profile, "cpu", max_gaussians=CFG.max_gaussians)
    dec = Decoder(enc.header_bytes())
    frames, adds = [enc.header_bytes()], 0
    for a in [None] + WALK + [Turn(30)] * 4:
        out = w.reset(0) if a is None else w.step(a)
        d = to_delta(enc, out)
        adds += a is not None and d.n_add > 0
        frames.append(enc.encode_delta(d))
        dec.decode_frame(frames[-1])
        assert dec.state.digest() == enc.state.digest()
    w.close()
    assert adds and len(built) == len(WALK) + 4 - adds
    assert len(reloads) == 1                     # the first device frame's, after the keyframe
    assert validate_stream(b"".join(frames)) == []


def test_the_device_frame_builder_leaves_palette_entries_to_the_host():
    enc = Encoder(Profile.preset("small", 1))
    with pytest.raises(ValueError, match="palette"):
        build_delta(enc, FloatOps(keyframe=True, add_ids=np.zeros(0, np.int64), add=np.zeros((0, 23), np.float32)))


def test_bench_runs_the_session_again_with_a_palette(tmp_path, capsys):
    """``python -m reference_generator.bench``: the scripted session, then the same with an SH palette,
    both validated, reported side by side."""
    from reference_generator.bench import main as bench_main

    report = tmp_path / "GENERATOR_BENCH.md"
    rc = bench_main(["--n", "3000", "--steps-per-kind", "1", "--session-steps", "30", "--walk-steps", "0",
                     "--differ-steps", "0", "--sh-degree", "1", "--threads", "1", "--out", str(report)])
    text = capsys.readouterr().out
    assert rc == 0 and "session (compact)" in text and "session (small)" in text
    md = report.read_text()
    assert "**The same session with an SH palette** (profile `small`" in md
    assert md.count("validate_stream: ok") == 2


def test_a_server_streams_a_palette_world_to_a_late_joiner_too():
    """``gsd-world --profile small``: clients agree with the world's encoder after every frame, and a
    client joining later starts from a keyframe that carries the palette its Gaussians use."""
    import asyncio

    from reference_generator.client import Client
    from reference_generator.server import Server, ServerConfig

    world = WorldConfig(sh_degree=1, profile="small", target_live=3000, view_radius=32, max_add_per_step=1024)

    async def go():
        s = Server(ServerConfig(port=0, world=world, tick_hz=0, actions_per_second=10_000, action_burst=10_000,
                                admission=False))
        url = f"ws://127.0.0.1:{await s.start()}/ws?world=lobby"
        try:
            async with Client(url) as a:
                await a.next_frame()
                (sess,) = s.sessions.values()
                enc = sess.host.encoder
                assert enc.profile.palette
                for act in [Move(3.0)] * 8:
                    await a.step(act)
                    assert a.digest == str(enc.state.digest())
                async with Client(url) as b:
                    k = await b.next_frame()
                    assert k.keyframe and b.digest == a.digest
                    for act in [Move(3.0)] * 4:
                        await b.step(act)
                        while a.seq < b.seq:
                            await a.next_frame()
                        assert a.digest == b.digest == str(enc.state.digest())
        finally:
            await s.stop()
    asyncio.run(asyncio.wait_for(go(), 120))
