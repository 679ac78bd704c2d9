"""Progressive join on the live server (SPEC.md 11.9): stand-ins first, refinement while the world
steps, a detail budget, a client's own eye. Real server on loopback, as tests/test_server.py."""
from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

pytest.importorskip("torch")

from codec import Decoder
from reference_generator.actions import Idle, Move, Turn
from reference_generator.client import Client, ProtocolClosed
from reference_generator.progressive_join import ProgressivePending
from reference_generator.server import parse_hello
from reference_generator.world import WorldConfig
from reference_generator.worldhost import WorldCore

from test_server import HELLO, SMALL, only_host, raw_ws, run, server, wait_until

# stand-ins keyframe ~8 kB for the ~3,000-Gaussian test world (about 300 cubes), ~6 kB refinements
PROG = {"first_bytes": 8_000, "refine_bytes": 6_000}
WALK = [Move(2.0), Turn(15.0), Idle()]


def _pending(s, c_sess=None) -> ProgressivePending:
    host = only_host(s) if c_sess is None else c_sess.host
    sess = c_sess or next(iter(s.sessions.values()))
    return host.backend.core.pendings[sess.link]


# ------------------------------------------------------------------------------- the hello
def test_hello_progressive_field_is_optional_and_checked():
    assert parse_hello(json.dumps(HELLO))["progressive"] is None
    h = dict(HELLO, progressive={"budget": 5000})
    assert parse_hello(json.dumps(h))["progressive"] == {"budget": 5000}
    assert parse_hello(json.dumps(dict(HELLO, progressive={})))["progressive"] == {"budget": None}
    for bad in ({"budget": 0}, {"budget": 1.5}, {"budget": True}, [1], "yes"):
        with pytest.raises(Exception, match="progressive"):
            parse_hello(json.dumps(dict(HELLO, progressive=bad)))


# ------------------------------------------------------------------------------- convergence
def test_progressive_client_converges_to_the_worlds_digest_while_actions_flow():
    async def go():
        async with server(**PROG) as s:
            async with Client(s.url, progressive=True) as c:
                key = await c.next_frame()
                host = only_host(s)
                world_live = len(host.encoder.state)
                assert c.session["progressive"]["budget"] == host.max_gaussians
                assert key.keyframe and key.detail["coarse"] > 0
                assert len(c.decoder.state) < world_live // 3          # stand-ins, not the scene
                assert key.nbytes < 0.5 * len(host.encoder.frames.encode(host.encoder.state_keyframe()))
                assert key.digest != str(host.encoder.state.digest())
                frames = [key]
                for k in range(40):                                    # the world moves meanwhile
                    frames += await c.step(WALK[k % 3])
                    if frames[-1].detail["coarse"] == 0:
                        break
                assert frames[-1].detail["coarse"] == 0, "refinement did not end"
                assert len(frames) > 3                                 # refinement took several frames
                refine = frames[1:]
                assert all(not f.keyframe for f in refine)
                # every frame's digest was the client's own and the server checked each ack
                (sess,) = s.sessions.values()
                await wait_until(lambda: sess.window.acked == c.seq)
                assert sess.resyncs == 0 and not c.stats.errors and c.stats.resyncs == 0
                # refinement over: an ordinary client on the world's own deltas, lockstep
                await wait_until(lambda: not host.refining)
                for act in [Move(0.5), Turn(5.0), Idle()] * 3:
                    await c.step(act)
                    assert c.digest == str(host.encoder.state.digest()) and c.seq == host.encoder.state.seq
                assert not _pending(s).tracked
    run(go(), 180)


def test_progressive_client_that_joins_a_running_world_mid_session():
    async def go():
        async with server(**PROG) as s:
            url = s.url + "?world=lobby"
            async with Client(url) as a:
                await a.next_frame()
                for act in [Move(1.0)] * 8 + [Turn(20.0)] * 4:
                    await a.step(act)
                async with Client(url, progressive=True) as b:
                    k = await b.next_frame()
                    assert k.keyframe and k.seq >= a.seq and k.detail["coarse"] > 0
                    assert b.digest != a.digest
                    coarse = [k.detail["coarse"]]
                    for i in range(60):                                # a drives, b refines
                        await a.step(WALK[i % 3])
                        while b.seq < a.seq:
                            f = await b.next_frame()
                            coarse.append(f.detail["coarse"])
                        if coarse[-1] == 0 and b.seq == a.seq and b.digest == a.digest:
                            break
                    assert coarse[-1] == 0 and b.digest == a.digest and b.seq == a.seq
                    assert b.stats.resyncs == 0 and a.stats.resyncs == 0 and not b.stats.errors
                    for act in [Move(0.5)] * 4:                        # same deltas from here on
                        await a.step(act)
                        while b.seq < a.seq:
                            await b.next_frame()
                        assert a.digest == b.digest
    run(go(), 180)


def test_a_progressive_session_resync_gets_stand_ins_again_and_refines():
    async def go():
        async with server(**PROG) as s:
            async with Client(s.url, progressive=True) as c:
                await c.next_frame()
                c.drop_next = 1                                        # a lost frame: SEQUENCE_GAP, resync
                frames = []
                for k in range(200):                                   # refinement steps the world idle
                    if k % 10 == 0:
                        await c.act(WALK[k % 3])
                    frames.append(await c.next_frame(10))
                    if c.stats.resyncs and frames[-1].detail["coarse"] == 0:
                        break
                assert c.stats.resyncs == 1
                keys = [f for f in frames if f.keyframe]
                assert len(keys) == 1 and keys[0].detail["coarse"] > 0
                host = only_host(s)
                await wait_until(lambda: not host.refining)
                await c.step(Idle())
                assert c.digest == str(host.encoder.state.digest())
    run(go(), 180)


# ------------------------------------------------------------------------------- the budget
def test_the_detail_budget_is_never_exceeded_while_the_world_streams_new_chunks():
    async def go():
        budget = 1200
        async with server(**PROG) as s:
            async with Client(s.url, progressive=True, budget=budget) as c:
                f = await c.next_frame()
                host = only_host(s)
                assert c.session["progressive"]["budget"] == budget
                held = [len(c.decoder.state)]
                for k in range(90):                                    # walk far: chunks stream in and out
                    frames = await c.step(WALK[k % 3])
                    held += [f.detail["held"] for f in frames]         # what the server made each frame for
                    assert all(f.detail["budget"] == budget for f in frames)
                    assert frames[-1].detail["held"] == len(c.decoder.state)   # ... is what the client holds
                assert max(held) <= budget
                assert max(held) >= 0.9 * budget                       # refined up to the budget
                assert len(host.encoder.state) > 2 * budget            # the world stayed bigger
                assert f.detail["coarse"] > 0 and c.digest != str(host.encoder.state.digest())
                (sess,) = s.sessions.values()
                await wait_until(lambda: sess.window.acked == c.seq)
                assert sess.resyncs == 0 and not c.stats.errors          # every digest matched the client's own
    run(go(), 240)


def test_budget_changes_mid_session_and_a_full_budget_converges():
    async def go():
        async with server(**PROG) as s:
            async with Client(s.url, progressive=True, budget=1000) as c:
                await c.next_frame()
                host = only_host(s)

                async def run_for(n):
                    out = []
                    for k in range(n):
                        frames = await c.step(WALK[k % 3])
                        out += [(f.detail["budget"], f.detail["held"], f.detail["coarse"]) for f in frames]
                        assert frames[-1].detail["held"] == len(c.decoder.state)
                    return out

                seen = await run_for(15)
                assert all(h <= 1000 for _, h, _ in seen)
                await c.detail(budget=2400)
                seen = await run_for(20)
                after = [h for b, h, _ in seen if b == 2400]
                assert after and max(after) > 1000 and all(h <= 2400 for _, h, _ in seen)
                await c.detail(budget=600)
                seen = await run_for(10)
                # frames cut after the server took the message keep to it; none before went over the old one
                assert all(h <= b for b, h, _ in seen) and seen[-1][0] == 600 and seen[-1][1] <= 600
                await c.detail(budget=host.max_gaussians)              # the whole world, always
                for k in range(60):
                    await c.step(WALK[k % 3])
                    if not host.refining and not _pending(s).tracked:
                        break
                await c.step(Idle())
                assert c.digest == str(host.encoder.state.digest())
                assert c.stats.resyncs == 0 and not c.stats.errors
    run(go(), 240)


def test_detail_needs_a_progressive_session_and_valid_fields():
    async def go():
        async with server(**PROG) as s:
            async with Client(s.url) as c:                              # not progressive
                await c.next_frame()
                await c.detail(budget=100)
                with pytest.raises(ProtocolClosed) as e:
                    for _ in range(20):
                        await c.next_frame(5)
                assert e.value.code == 1008 and "progressive" in e.value.reason
            async with Client(s.url, progressive=True) as c:
                await c.next_frame()
                await c.send_json({"type": "detail", "view": {"position": [0, 0], "yaw": 0, "pitch": 0}})
                with pytest.raises(ProtocolClosed) as e:
                    for _ in range(40):
                        await c.next_frame(5)
                assert e.value.code == 1008 and "view" in e.value.reason
            for bad in ({"fov": 180}, {"fov": 0}, {"fov": "wide"}, {"aspect": 0.05}, {"aspect": True}):
                async with Client(s.url, progressive=True) as c:
                    await c.next_frame()
                    await c.detail(view={"position": [0, 0, 1.7], "yaw": 10, "pitch": 0, **bad})
                    with pytest.raises(ProtocolClosed) as e:
                        for _ in range(40):
                            await c.next_frame(5)
                    assert e.value.code == 1008 and f"view.{next(iter(bad))}" in e.value.reason, (bad, e.value.reason)
    run(go(), 180)


def test_a_view_with_its_own_fov_and_aspect_is_taken():
    """A `view` with `fov` and `aspect` keeps the session open, reaches the client's pending, and makes
    the picture weighed again for that view (SPEC.md 11.9)."""
    async def go():
        async with server(**PROG) as s:
            async with Client(s.url, progressive=True) as c:
                await c.next_frame()
                await c.detail(view={"position": [0, 0, 1.7], "yaw": 10, "pitch": 0, "fov": 120, "aspect": 0.5})
                p = _pending(s)
                await wait_until(lambda: (p.eye or {}).get("fov") == 120.0, 30)
                assert p.eye["aspect"] == 0.5
                for _ in range(5):
                    await c.next_frame(10)
    run(go(), 120)


# ------------------------------------------------------------------------------- the eye
def test_refinement_goes_near_the_clients_eye_first_and_follows_it():
    """With a budget of a third of the world, the cubes refined are those near the eye the client
    names; when the eye moves to the other side, refinement follows it."""
    core = WorldCore(SMALL, 0, "cpu")
    n = len(core.encoder.state)
    core.attach(1, 1 << 24, {"budget": n // 3, **PROG})
    dec = Decoder(core.encoder.header_bytes())
    dec.decode_frame(core.take(1, wait=True).data)
    p = core.pendings[1]
    ids, g = core.encoder.state.to_gaussians()
    centre = g.positions.mean(0)
    lo = g.positions[:, 0].min()
    hi = g.positions[:, 0].max()

    def near_share(x: float) -> float:
        """Of the world's Gaussians the client holds themselves, the share nearer to x than the centre."""
        w_ids, wg = core.encoder.state.to_gaussians()
        mine = np.isin(w_ids, dec.state.ids())
        side = np.abs(wg.positions[:, 0] - x) < np.abs(wg.positions[:, 0] - centre[0])
        return float(side[mine].mean()), float(side.mean())

    for x, yaw in ((lo, 180.0), (hi, 0.0)):
        core.detail(1, None, {"position": [float(x), float(centre[1]), 1.7], "yaw": yaw, "pitch": 0.0})
        for _ in range(30):
            _, frames = core.step(Idle(), [], (1,))
            dec.decode_frame(frames[1].data)
            assert len(dec.state) <= n // 3
            assert str(dec.state.digest()) == frames[1].digest
        held_share, world_share = near_share(x)
        assert held_share > world_share + 0.25, (x, held_share, world_share)
    assert p.tracked
    core.close()


def test_a_world_stepping_on_actions_only_steps_idle_while_a_progressive_client_refines():
    async def go():
        async with server(tick_hz=0, **PROG) as s:
            async with Client(s.url, progressive=True) as c:
                k = await c.next_frame()
                host = only_host(s)
                f = k
                while f.detail["coarse"]:                              # no action sent
                    f = await c.next_frame(10)
                assert c.seq > k.seq
                await wait_until(lambda: not host.refining)
                seq = host.encoder.state.seq
                await asyncio.sleep(0.3)
                assert host.encoder.state.seq == seq                   # refinement over: no idle steps
    run(go(), 120)


def test_plain_clients_of_a_shared_world_are_untouched_by_a_progressive_one():
    async def go():
        async with server(**PROG) as s:
            url = s.url + "?world=w"
            async with Client(url) as a, Client(url, progressive=True, budget=900) as b:
                await a.next_frame()
                await b.next_frame()
                host = next(iter(s.sessions.values())).host
                for k in range(30):
                    await a.step(WALK[k % 3])
                    assert a.digest == str(host.encoder.state.digest()) or a.seq < host.encoder.state.seq
                    while b.seq < a.seq:
                        await b.next_frame()
                    assert len(b.decoder.state) <= 900
                assert a.stats.keyframes == 1 and not a.stats.errors and not b.stats.errors
    run(go(), 180)


def test_progressive_join_of_a_world_in_a_worker_process():
    """The client's pending change lives with its world in the world's process (worldhost.ProcessPool)."""
    async def go():
        async with server(workers=1, **PROG) as s:
            url = s.url + "?world=far"
            async with Client(url) as a:
                await a.next_frame()
                async with Client(url, progressive=True, budget=2000) as b:
                    k = await b.next_frame()
                    assert k.keyframe and k.detail["coarse"] > 0 and k.detail["held"] <= 2000
                    await b.detail(budget=10 ** 6)
                    f = k
                    for i in range(80):
                        await a.step(WALK[i % 3])
                        while b.seq < a.seq:
                            f = await b.next_frame()
                            assert f.detail["held"] <= max(2000, f.detail["budget"])
                        if f.detail["coarse"] == 0 and b.digest == a.digest:
                            break
                    assert b.seq == a.seq and b.digest == a.digest
                    assert not b.stats.errors and b.stats.resyncs == 0
    run(go(), 240)


def test_gsd_serve_flags_set_the_progressive_join():
    """`gsd-serve --progressive off|on --first-bytes N --refine-bytes N`; the defaults are the codec's."""
    from codec.progressive import FIRST_BYTES, REFINE_BYTES
    from reference_generator.server import parse_args

    cfg = parse_args([])
    assert cfg.progressive and (cfg.first_bytes, cfg.refine_bytes) == (FIRST_BYTES, REFINE_BYTES)
    cfg = parse_args(["--progressive", "off", "--first-bytes", "20000", "--refine-bytes", "40000"])
    assert not cfg.progressive and (cfg.first_bytes, cfg.refine_bytes) == (20_000, 40_000)
    for bad in (["--first-bytes", "0"], ["--refine-bytes", "-5"], ["--progressive", "maybe"]):
        with pytest.raises(SystemExit) as e:
            parse_args(bad)
        assert e.value.code == 2


def test_a_server_with_progressive_off_ignores_the_hello_field():
    """SPEC.md 11.9: a server that does not offer it ignores the field; the session is an ordinary one."""
    async def go():
        async with server(**{**PROG, "progressive": False}) as s:
            async with Client(s.url, progressive=True) as c:
                key = await c.next_frame()
                host = only_host(s)
                assert "progressive" not in c.session and key.keyframe and not key.detail
                assert len(c.decoder.state) == len(host.encoder.state)     # the whole scene at once
                assert c.digest == str(host.encoder.state.digest())
    run(go())


def test_the_picture_weight_of_a_cube_counts_only_what_the_eye_sees():
    """``_weigh``: per cube, what its Gaussians make of the client's picture. A dense wall ahead takes
    the picture; a cube behind the wall and a nearer cube behind the eye make none of it, although a
    rank by distance would put the one behind the eye first."""
    from reference_generator.progressive_join import _weigh
    rng = np.random.default_rng(3)
    yz = rng.uniform(-4, 4, (3000, 2))
    wall = np.c_[np.full(3000, 5.0), yz]                                 # x = 5, across the view
    hidden = np.c_[np.full(500, 10.0), rng.uniform(-1, 1, (500, 2))]     # behind the wall
    behind = np.c_[np.full(500, -3.0), rng.uniform(-1, 1, (500, 2))]     # behind the eye, nearer
    _, (_, _, pic, _) = _weigh(0, np.zeros(3), np.array([1.0, 0.0, 0.0]), *_cubes([wall, hidden, behind], -1.5, 4.0), 3)
    assert pic[0] > 0 and pic[1] < 1e-3 * pic[0] and pic[2] == 0


def _cubes(groups: list, log_scale: float, logit: float) -> tuple:
    """(ids, cube of each, their codes, profile) of a keyframe of round Gaussians at the positions of each
    group (group k is cube k), as ``_weigh`` takes them."""
    from codec import Encoder, Grid, Profile
    from codec.attributes import Gaussians
    pos = np.concatenate(groups).astype(np.float32)
    n = len(pos)
    g = Gaussians(pos, np.full((n, 3), log_scale, np.float32), np.tile([1.0, 0, 0, 0], (n, 1)).astype(np.float32),
                  np.full(n, logit, np.float32), np.zeros((n, 3), np.float32), np.zeros((n, 0), np.float32))
    enc = Encoder(Profile.preset("compact", 0, Grid.fit(g.positions)))
    ids = enc.assign_ids(g.positions)
    enc.keyframe(g, ids)
    order = np.argsort(ids)
    ids, cubes = ids[order], np.repeat(np.arange(len(groups)), [len(x) for x in groups])[order]
    return ids, cubes, enc.state.codes_of(ids), enc.profile


def test_the_picture_is_the_clients_field_of_view_and_aspect():
    """``View``: the default picture is 160x100 at 75 degrees within the 60-degree cone; a client's own
    fov and aspect change what its picture holds, and a wide view widens the cone to its corners."""
    from reference_generator.progressive_join import View, _weigh
    assert View.of(None) == View(75.0, 160, 100, 0.5)
    tall = View.of({"fov": 60.0, "aspect": 0.5})
    assert tall.width * tall.height == pytest.approx(16_000, rel=0.02) and tall.height > tall.width
    wide = View.of({"fov": 150.0})
    assert wide.cos_cone < 0.5 and np.degrees(np.arccos(wide.cos_cone)) < 90
    rng = np.random.default_rng(5)
    ahead = np.c_[np.full(400, 6.0), rng.uniform(-0.5, 0.5, (400, 2))]           # straight ahead
    side = np.c_[np.full(400, 6.0), rng.uniform(9.5, 10.5, 400), rng.uniform(-0.5, 0.5, 400)]  # 59 degrees left
    above = np.c_[np.full(400, 6.0), rng.uniform(-0.5, 0.5, 400), rng.uniform(4.5, 5.5, 400)]  # 40 degrees up
    scene = _cubes([ahead, side, above], -2.5, 2.0)

    def weights(view):
        return _weigh(0, np.zeros(3), np.array([1.0, 0.0, 0.0]), *scene, 3, view)[1][2]

    default, wide_w, tall_w = weights(View.of(None)), weights(wide), weights(tall)
    assert default[0] > 0 and default[1] == 0 and default[2] == 0         # 75 x 50 degrees: ahead only
    assert wide_w[1] > 0 and wide_w[2] > 0                                  # 150 degrees across: all three
    assert tall_w[2] > 0 and tall_w[1] == 0                                 # 60 across, 98 high: ahead and above
