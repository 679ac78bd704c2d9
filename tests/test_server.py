"""The streaming server and the Python client on loopback (SPEC.md 11): agreement, flow control, faults.

Each test runs a server and its clients in one event loop; worlds step on their own threads.
Worlds are small (a few thousand Gaussians) so the suite stays fast on 2 cores.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import subprocess
import sys
import time
from dataclasses import replace

import aiohttp
import pytest

pytest.importorskip("torch")

from codec import Digest
from reference_generator.actions import Idle, Interact, Move, Turn
from reference_generator.client import Client, ProtocolClosed, ServerBusy, run_script
from reference_generator.server import Server, ServerConfig, parse_hello, SessionClosed
from reference_generator.simulate import scripted_session
from reference_generator.world import WorldConfig

SMALL = WorldConfig(target_live=3000, view_radius=32, max_add_per_step=1024)


def config(**kw) -> ServerConfig:
    kw.setdefault("world", SMALL)
    kw.setdefault("tick_hz", 0)
    kw.setdefault("actions_per_second", 10_000)
    kw.setdefault("action_burst", 10_000)
    kw.setdefault("resyncs_per_minute", 1e6)   # tests resync at will; the limit is tested on its own
    kw.setdefault("resync_burst", 10_000)
    kw.setdefault("admission", False)        # load-based refusals are tested on their own (below)
    return ServerConfig(port=kw.pop("port", 0), **kw)


@contextlib.asynccontextmanager
async def server(**kw):
    s = Server(config(**kw))
    port = await s.start()
    s.url = f"ws://127.0.0.1:{port}/ws"
    s.http = f"http://127.0.0.1:{port}"
    try:
        yield s
    finally:
        await s.stop()


def run(coro, timeout=120):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def only_host(s: Server):
    (sess,) = s.sessions.values()
    return sess.host


async def raw_ws(url: str, http: aiohttp.ClientSession, **kw):
    return await http.ws_connect(url, **kw)


HELLO = {"type": "hello", "protocol": "gsd/1", "versions": ["1.0", "1.1", "1.2"], "max_sh_degree": 3,
         "budgets": {"max_gaussians": 2_000_000, "max_bytes_per_second": 100_000_000, "max_frame_bytes": 1 << 24}}


async def wait_until(pred, timeout=10.0):
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


# ------------------------------------------------------------------------------ agreement
def test_300_step_session_digests_agree_after_every_frame():
    async def go():
        async with server() as s:
            async with Client(s.url) as c:
                key = await c.next_frame()
                host = only_host(s)
                assert key.keyframe and key.digest == str(host.encoder.state.digest())
                for k, action in enumerate(scripted_session(300)):
                    frames = await c.step(action)
                    # lockstep on an action-driven world: nothing else moved the server's state
                    assert c.digest == str(host.encoder.state.digest()), f"step {k}"
                    assert c.seq == host.encoder.state.seq
                    assert all(f.digest == c.digest for f in frames[-1:])
                st = c.stats
                assert st.frames == 301 and st.resyncs == 0 and not st.errors
                assert len(st.latencies_ms) == 300
                await asyncio.sleep(0.1)
                (sess,) = s.sessions.values()
                assert sess.resyncs == 0                     # every ack matched the server's digest
                assert sess.window.acked == c.seq
    run(go(), 240)


def test_late_joiner_gets_keyframe_of_running_world_then_same_deltas():
    async def go():
        async with server() as s:
            url = s.url + "?world=lobby"
            async with Client(url) as a:
                await a.next_frame()
                for act in [Move(0.3)] * 10 + [Turn(5.0)] * 5:
                    await a.step(act)
                async with Client(url) as b:
                    k = await b.next_frame()
                    assert k.keyframe and k.seq == a.seq and b.digest == a.digest
                    for act in [Move(0.3)] * 10:
                        await b.step(act)                    # b drives, a watches
                        while a.seq < b.seq:
                            await a.next_frame()
                        assert a.digest == b.digest
                assert len(s.shared) == 1
            await wait_until(lambda: not s.shared)           # the last client gone: the world stops
    run(go())


def test_shared_world_refuses_client_with_lower_sh_degree():
    async def go():
        async with server() as s:
            async with Client(s.url + "?world=w") as a:
                await a.next_frame()
                with pytest.raises(ProtocolClosed) as e:
                    c = Client(s.url + "?world=w", max_sh_degree=1)
                    await c.connect()
                    await c.next_frame()
                assert e.value.code == 1008 and "SH degree" in e.value.reason
                await c.close()
            # a private world drops the SH degree instead (11.3)
            async with Client(s.url, max_sh_degree=1) as low:
                await low.next_frame()
                assert low.decoder.header.profile.sh_degree == 1
    run(go())


# ------------------------------------------------------------------------------ flow control
def test_lagging_client_gets_composed_frames_and_stays_in_step():
    async def go():
        async with server(tick_hz=50, window=2) as s:
            async with Client(s.url) as c:
                await c.next_frame()
                host = only_host(s)
                for _ in range(5):
                    await c.act(Move(0.3))
                await asyncio.sleep(1.0)                     # not reading: ~50 steps pass, W=2 frames out
                start = host.encoder.state.seq
                got = []
                while c.seq < start:
                    got.append(await c.next_frame())
                assert any(f.steps > 1 for f in got), [f.steps for f in got]
                assert len(got) < start - 1                  # fewer, larger frames
                # every composed frame carried the world's digest at its seq and the decoder checked
                # it; the server checked every ack against its record of what it sent
                assert not c.stats.errors and c.stats.resyncs == 0
                await asyncio.sleep(0.1)
                (sess,) = s.sessions.values()
                assert sess.resyncs == 0 and s.metrics.composed._value.get() > 0
    run(go())


def test_slow_consumer_is_bounded_and_does_not_stall_others():
    async def go():
        async with server(tick_hz=100, send_timeout=3.0, ack_timeout=0.5, idle_timeout=4.0) as s:
            async with aiohttp.ClientSession() as http:
                # a client that says hello and never reads a byte
                slow = await raw_ws(s.url, http)
                await slow.send_str(json.dumps(HELLO))
                await wait_until(lambda: len(s.sessions) == 1)
                slow_sess = next(iter(s.sessions.values()))
                # attached to its world (a loaded box may take a while to start the world)
                await wait_until(lambda: slow_sess.link is not None, timeout=30)
                async with Client(s.url) as fast:
                    await fast.next_frame()
                    t0 = time.monotonic()
                    for _ in range(40):
                        await fast.step(Move(0.25))
                    elapsed = time.monotonic() - t0
                    assert not fast.stats.errors and fast.stats.resyncs == 0
                    fast_sess = next(x for x in s.sessions.values() if x is not slow_sess)
                    # the fast client's acks reach the server (a loaded box may hold the last few in flight)
                    await wait_until(lambda: fast_sess.window.acked >= fast.seq - 1, timeout=10)
                    assert fast_sess.resyncs == 0
                    # bounded: at most one pending delta, never more Gaussians in it than a keyframe
                    p = slow_sess.host.backend.core.pendings[slow_sess.link]
                    if p.delta is not None:
                        assert p.delta.n_add + p.delta.n_update <= len(p.enc.state) + 4096
                    assert slow_sess.window.depth <= slow_sess.window.size
                    assert elapsed < 30, elapsed
                # its window filled and stayed full: W frames sent, the rest composed into one pending
                # delta (its first frame, the keyframe, is unacknowledged, so no keyframe storm either)
                assert slow_sess.frames <= slow_sess.window.size and slow_sess.resyncs == 0
                # the never-reading client is closed once its writes stall (4001) or it idles (4000)
                await wait_until(lambda: slow_sess.sid not in s.sessions, timeout=20)
                await slow.close()
    run(go())


# ------------------------------------------------------------------------------ faults
def test_dropped_frame_gives_sequence_gap_then_resync_keyframe():
    async def go():
        async with server() as s:
            async with Client(s.url) as c:
                await c.next_frame()
                await c.step(Move(0.3))
                (sess,) = s.sessions.values()
                sent = sess.frames
                c.drop_next = 1                              # the network loses the next frame
                await c.act(Move(0.3))
                await wait_until(lambda: sess.frames == sent + 1)
                await c.act(Move(0.3))                       # its successor no longer links: SEQUENCE_GAP
                f = await c.next_frame()
                assert f.keyframe
                assert c.stats.errors == {"SEQUENCE_GAP": 1} and c.stats.resyncs == 1
                await c.step(Idle())
                assert c.digest == str(only_host(s).encoder.state.digest())
    run(go())


def test_bad_ack_digest_gets_a_keyframe():
    async def go():
        async with server() as s:
            async with Client(s.url, ack=False) as c:
                await c.next_frame()
                await c.act(Move(0.3))
                f = await c.next_frame()
                await c.send_json({"type": "ack", "seq": f.seq, "digest": "1:00000000:00000000"})
                f2 = await c.next_frame()
                assert f2.keyframe and f2.digest == c.digest
                (sess,) = s.sessions.values()
                assert sess.resyncs == 1
                await c.send_json({"type": "ack", "seq": 10 ** 9, "digest": c.digest})   # never sent
                assert (await c.next_frame()).keyframe
    run(go())


def test_server_restart_client_reconnects_and_resyncs():
    async def go():
        port = free_port()
        s1 = Server(config(port=port)); await s1.start()
        c = Client(f"ws://127.0.0.1:{port}/ws")
        seen = []
        ten_frames = asyncio.Event()

        def on_frame(f):
            seen.append(f)
            if c.stats.frames >= 10:
                ten_frames.set()

        # The restart waits for the 10th frame itself, not for a deadline: the first connection
        # builds a world and a loaded box can take longer than any fixed time for those frames
        # (the run's own timeout bounds the whole test).
        async def restart_later():
            await ten_frames.wait()
            await s1.stop()
            await asyncio.sleep(0.3)
            s2 = Server(config(port=port))
            await s2.start()
            return s2

        restarter = asyncio.create_task(restart_later())
        try:
            stats = await run_script(c, [Move(0.2)] * 40, reconnects=2, on_frame=on_frame, timeout=30)
            assert ten_frames.is_set()
            s2 = await asyncio.wait_for(restarter, 30)
            assert stats.reconnects == 1 and not stats.errors
            assert sum(f.keyframe for f in seen) == 2           # one per connection
            await c.step(Idle())
            assert c.digest == str(only_host(s2).encoder.state.digest())
        finally:
            await c.close()
            if not restarter.done():
                restarter.cancel()
            elif not restarter.cancelled() and not restarter.exception():
                await restarter.result().stop()
    run(go())


def free_port() -> int:
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        return sk.getsockname()[1]


BAD_MESSAGES = [
    ("binary", b"\x00\x01", 1008),
    ("not json", "{nope", 1008),
    ("unknown type", json.dumps({"type": "teleport"}), 1008),
    ("second hello", json.dumps(HELLO), 1008),
    ("bad params", json.dumps({"type": "action", "seq": 0, "kind": "move", "params": {"distance": "far"}}), 1008),
    ("huge seq", json.dumps({"type": "ack", "seq": 2 ** 60, "digest": "0:00000000:00000000"}), 1008),
    ("bad digest text", json.dumps({"type": "ack", "seq": 1, "digest": "zz"}), 1008),
    ("oversize", "x" * 100_000, 1009),
]


@pytest.mark.parametrize("name,payload,code", BAD_MESSAGES, ids=[b[0] for b in BAD_MESSAGES])
def test_malformed_client_message_closes_that_session_only(name, payload, code):
    async def go():
        async with server() as s:
            async with Client(s.url) as good:
                await good.next_frame()
                async with aiohttp.ClientSession() as http:
                    bad = await raw_ws(s.url, http)
                    await bad.send_str(json.dumps(HELLO))
                    await bad.receive()                       # header
                    if isinstance(payload, bytes):
                        await bad.send_bytes(payload)
                    else:
                        await bad.send_str(payload)
                    while True:
                        msg = await asyncio.wait_for(bad.receive(), 10)
                        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                            break
                    assert bad.close_code == code, (bad.close_code, msg.extra)
                for _ in range(5):                            # the other session is unaffected
                    await good.step(Move(0.3))
                assert not good.stats.errors
                assert good.digest == str(only_host(s).encoder.state.digest())
    run(go())


@pytest.mark.parametrize("hello,why", [
    ("[]", "first message must be a hello"),
    (json.dumps({**HELLO, "protocol": "gsd/9"}), "protocol"),
    (json.dumps({**HELLO, "versions": ["2.0"]}), "no common format version"),
    (json.dumps({**HELLO, "max_sh_degree": 7}), "max_sh_degree"),
    (json.dumps({**HELLO, "budgets": {"max_gaussians": True}}), "budgets.max_gaussians"),
])
def test_bad_hello_is_refused_with_reason(hello, why):
    with pytest.raises(SessionClosed) as e:
        parse_hello(hello)
    assert e.value.code == 1008 and why in e.value.reason


def test_hello_minor_version_is_the_highest_of_major_1():
    assert parse_hello(json.dumps({**HELLO, "versions": ["1.0"]}))["minor"] == 0
    assert parse_hello(json.dumps({**HELLO, "versions": ["2.0", "1.1", "1.0", "1.x"]}))["minor"] == 1
    assert parse_hello(json.dumps(HELLO))["minor"] == 2


def test_worlds_that_may_stream_implicit_ids_refuse_a_1_0_client():
    world = WorldConfig(cell_bits=12, target_live=20000, view_radius=32, ranked_ids=False)  # 3 (12 + 8) <= 64: ADD_IMPLICIT
    assert world.format_minor() == 1 and WorldConfig(ranked_ids=False).format_minor() == 0

    async def go():
        async with server(world=world) as s:
            async with aiohttp.ClientSession() as http:
                ws = await raw_ws(s.url, http)
                await ws.send_str(json.dumps({**HELLO, "versions": ["1.0"]}))
                msg = await ws.receive()
                assert msg.type == aiohttp.WSMsgType.CLOSE and ws.close_code == 1008, msg
                assert "1.1" in msg.extra
            async with Client(s.url) as c:                                 # names 1.1: served
                await c.next_frame()
                assert not c.stats.errors
    run(go())


@pytest.mark.parametrize("flags, minor, feature", [({"channel_filter": True}, 3, "CHANNEL"),
                                                     ({"channel_filter": True, "gap_code": True}, 4, "gap code")])
def test_worlds_of_a_newer_format_refuse_an_older_client_and_serve_theirs(flags, minor, feature):
    world = replace(SMALL, ranked_ids=True, **flags)
    assert world.format_minor() == minor

    async def go():
        async with server(world=world) as s:
            async with aiohttp.ClientSession() as http:
                ws = await raw_ws(s.url, http)
                await ws.send_str(json.dumps({**HELLO, "versions": [f"1.{m}" for m in range(minor)]}))
                msg = await ws.receive()
                assert msg.type == aiohttp.WSMsgType.CLOSE and ws.close_code == 1008, msg
                assert f"1.{minor}" in msg.extra and feature in msg.extra
            async with Client(s.url) as c:                                 # the client names every version: served
                for _ in range(3):
                    await c.step(Move(0.5))
                assert not c.stats.errors and c.decoder.state.seq >= 4
    run(go())


def test_worlds_with_ranked_ids_refuse_a_1_1_client_and_serve_1_2():
    world = WorldConfig(ranked_ids=True)
    assert world.format_minor() == 2 and WorldConfig().format_minor() == 0

    async def go():
        async with server(world=world) as s:
            async with aiohttp.ClientSession() as http:
                ws = await raw_ws(s.url, http)
                await ws.send_str(json.dumps({**HELLO, "versions": ["1.0", "1.1"]}))
                msg = await ws.receive()
                assert msg.type == aiohttp.WSMsgType.CLOSE and ws.close_code == 1008, msg
                assert "1.2" in msg.extra and "ranked ids" in msg.extra
            async with Client(s.url) as c:                                 # names 1.2: served ranked frames
                for _ in range(3):
                    await c.step(Move(0.5))
                assert not c.stats.errors
                assert c.decoder.state.order() is not None and len(c.decoder.state.order()) == len(c.decoder.state)
    run(go())


def test_disconnect_mid_frame_cleans_up():
    async def go():
        async with server(world=WorldConfig(target_live=20000, view_radius=32)) as s:
            async with Client(s.url) as good:
                await good.next_frame()
                for _ in range(3):
                    async with aiohttp.ClientSession() as http:
                        ws = await raw_ws(s.url, http)
                        await ws.send_str(json.dumps(HELLO))
                        await ws.receive()                    # header; the keyframe is on its way
                        ws._response.connection.transport.abort()   # TCP reset mid-keyframe
                await wait_until(lambda: len(s.sessions) == 1)
                for _ in range(5):
                    await good.step(Move(0.3))
                assert not good.stats.errors
                assert s.metrics.worlds._value.get() == 1     # the aborted sessions' worlds stopped
    run(go())


def test_origin_rate_limit_and_idle_timeout():
    async def go():
        async with server(actions_per_second=5, action_burst=5, idle_timeout=1.0) as s:
            async with aiohttp.ClientSession() as http:
                with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                    await raw_ws(s.url, http, headers={"Origin": "http://evil.example"})
                assert e.value.status == 403
                host = s.url.split("/")[2]
                ok = await raw_ws(s.url, http, headers={"Origin": f"http://{host}"})   # same origin
                await ok.close()
            c = Client(s.url)
            await c.connect()
            await c.next_frame()
            with pytest.raises(ProtocolClosed) as e:
                for _ in range(50):
                    await c.act(Idle())
                while True:
                    await c.next_frame()
            assert e.value.code == 1008 and "rate" in e.value.reason
            await c.close()
            c = Client(s.url, ack=False)                      # says nothing after its hello
            await c.connect()
            with pytest.raises(ProtocolClosed) as e:
                while True:
                    await c.next_frame(timeout=10)
            assert e.value.code == 4000
            await c.close()
    run(go())


def test_metrics_and_sessions_endpoints():
    async def go():
        async with server() as s:
            async with Client(s.url) as c:
                await c.next_frame()
                for _ in range(5):
                    await c.step(Move(0.3))
                async with aiohttp.ClientSession() as http:
                    text = await (await http.get(s.http + "/metrics")).text()
                    sessions = await (await http.get(s.http + "/sessions")).json()
                    index = await http.get(s.http + "/", allow_redirects=False)
            for name in ("gsd_sessions 1.0", "gsd_step_seconds_count", "gsd_encode_seconds_count",
                         "gsd_action_to_delta_seconds_count 5.0", "gsd_session_bytes_sent_total{session=",
                         "gsd_session_frames_per_second{session=", "gsd_session_queue_depth{session=",
                         "gsd_session_step_seconds{session=", "gsd_session_encode_seconds{session="):
                assert name in text, name
            (row,) = sessions
            assert row["frames"] == 6 and row["bytes"] > 0 and row["resyncs"] == 0
            assert row["step_ms"] > 0 and row["encode_ms"] > 0
            assert index.status == 302 and index.headers["Location"].startswith("/viewer/")
    run(go())


# ------------------------------------------------------------------------------ units
def test_pending_composes_steps_into_one_delta_equal_to_the_steps():
    import torch
    from codec import Decoder, Encoder
    from reference_generator.flow import Pending
    from reference_generator.protocol import to_delta
    from reference_generator.world import World
    torch.manual_seed(0)
    w = World(SMALL)
    enc = Encoder(w.profile, max_gaussians=w.max_gaussians)
    enc.encode_delta(to_delta(enc, w.reset(3)))
    p = Pending(enc, 1 << 26)
    key = p.take()
    assert key.keyframe
    dec = Decoder(enc.header_bytes())
    dec.decode_frame(key.data)
    for k in range(12):
        d = to_delta(enc, w.step([Move(0.4), Turn(10.0), Interact()][k % 3]))
        p.push(d, enc.encode_delta(d), [k])
    f = p.take()
    assert not f.keyframe and f.composed == 12 and f.actions == list(range(12))
    dec.decode_frame(f.data)                               # checks the digest the frame carries
    assert dec.state.digest() == enc.state.digest()
    assert p.take() is None


def test_pending_that_touches_every_live_gaussian_becomes_a_keyframe():
    """SPEC 11.6 rule 3: composing past the size of a keyframe replaces the delta by a keyframe."""
    from codec import Attr, Decoder, Encoder, Grid, Profile
    from codec.synthetic import synthetic_scene
    from reference_generator.flow import Pending
    g = synthetic_scene(200, sh_degree=0, seed=1)
    enc = Encoder(Profile.preset("compact", 0, Grid.fit(g.positions)))
    dec = Decoder(enc.header_bytes())
    ids = enc.assign_ids(g.positions)
    enc.keyframe(g, ids)
    p = Pending(enc, 1 << 26)
    dec.decode_frame(p.take().data)
    for k in (1, 2):                                         # each step moves every Gaussian
        d = enc.make_delta(update=(ids, {Attr.POSITION: g.positions + 0.05 * k}))
        p.push(d, enc.encode_delta(d), [])
    assert p.need_keyframe and p.delta is None               # one pending keyframe, no delta kept
    f = p.take()
    assert f.keyframe and f.seq == enc.state.seq
    dec.decode_frame(f.data)
    assert dec.state.digest() == enc.state.digest()


def test_window_ack_rules():
    from reference_generator.flow import Window
    t = [0.0]
    w = Window(2, 1000, clock=lambda: t[0])
    assert w.open()
    w.sent(5, "3:00000001:00000002", 100, False)
    w.sent(6, "3:00000003:00000004", 100, False)
    assert not w.open() and w.depth == 2
    assert w.ack(5, "3:00000001:00000002") is None and w.open()
    assert w.ack(6, "3:00000009:00000004") == "DIGEST_MISMATCH"
    assert w.ack(99, "0:00000000:00000000") == "UNKNOWN_SEQ"
    assert w.ack(5, "3:00000001:00000002") is None           # a repeated ack of the last one
    t[0] = 10.0
    assert w.stalled(5.0)
    assert w.wait_for_budget(10) == 0.0
    w.tokens = -500.0
    w.stamp = t[0]
    assert w.wait_for_budget(10) > 0.4
    w.forget()                                               # a keyframe is on its way ...
    w.sent(9, "4:00000001:00000001", 100, True)
    assert w.ack(6, "3:00000003:00000004") is None           # ... a late ack of an older frame is no resync
    assert w.ack(6, "3:00000003:00000005") == "DIGEST_MISMATCH"
    t[0] = 20.0
    assert not w.stalled(5.0)                                # one keyframe per stall: it is still out


def test_watch_cli_against_a_server_and_without_one(tmp_path):
    from codec import read_stream, validate_stream
    rec = tmp_path / "session.gsd"

    async def go():
        async with server() as s:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "reference_generator.watch", s.url, "--steps", "20", "--json",
                "--out", str(rec), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, err.decode()
            summary = json.loads(out.decode().strip().splitlines()[-1])
            assert summary["frames"] == 21 and summary["resyncs"] == 0 and summary["latency_ms"]["n"] == 20
            Digest.parse(summary["digest"])
            return summary
    summary = run(go())
    data = rec.read_bytes()
    assert validate_stream(data) == []                       # the recording is a valid stream file ...
    frames = list(read_stream(data))
    assert len(frames) == 21 and str(frames[-1][0].state.digest()) == summary["digest"]   # ... of that session
    r = subprocess.run([sys.executable, "-m", "reference_generator.watch", f"ws://127.0.0.1:{free_port()}/ws"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "cannot reach" in r.stderr


# ------------------------------------------------------------------------------ property: any message
from hypothesis import HealthCheck, given, settings, strategies as st

_json = st.recursive(st.none() | st.booleans() | st.integers(-2 ** 64, 2 ** 64) | st.floats(allow_nan=False)
                     | st.text(max_size=20),
                     lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                     max_leaves=12)
_typed = st.fixed_dictionaries({"type": st.sampled_from(["ack", "action", "resync", "hello", "x"])},
                               optional={"seq": _json, "digest": _json, "kind": st.sampled_from(["move", "pose", "fly"]) | _json,
                                         "params": _json, "id": _json, "reason": _json})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(msgs=st.lists(_typed | _json, min_size=1, max_size=4))
def test_any_client_message_is_handled_or_refused_cleanly(msgs):
    """Whatever JSON a client sends, its session either goes on or closes with 1008; never 1011,
    and a second session on the server keeps stepping with verified frames."""
    async def go():
        async with server() as s:
            async with Client(s.url) as good:
                await good.next_frame()
                async with aiohttp.ClientSession() as http:
                    ws = await raw_ws(s.url, http)
                    await ws.send_str(json.dumps(HELLO))
                    for m in msgs:
                        await ws.send_str(json.dumps(m))
                    await good.step(Move(0.2))
                    await ws.close()
                    assert ws.close_code in (1000, 1008), ws.close_code
                await wait_until(lambda: len(s.sessions) == 1)
                assert not good.stats.errors
                assert s.metrics.closes.labels("1011")._value.get() == 0
    run(go(), 60)


def test_worlds_in_worker_processes_stream_the_same_frames():
    """--workers: worlds live in spawned processes (one GIL each); a session ends in the state a
    thread-hosted world of the same seed reaches, and errors cross the process boundary."""
    async def go():
        script = scripted_session(40)
        async with server() as ref:
            async with Client(ref.url) as c:
                await c.next_frame()
                for a in script:
                    await c.step(a)
                want = c.digest
        async with server(workers=2) as s:
            async with Client(s.url) as a, Client(s.url + "?world=shared") as b:
                await a.next_frame()
                await b.next_frame()
                for act in script:
                    await a.step(act)
                assert a.digest == want and not a.stats.errors
                await b.step(Idle())
                (sa,) = [x for x in s.sessions.values() if x.world_name is None]
                assert sa.resyncs == 0
                assert {w.worlds for w in s.pool.workers} == {1}       # spread over both processes
            with pytest.raises(ProtocolClosed) as e:                  # FrameTooLarge, raised in a worker
                small = Client(s.url, max_frame_bytes=4096)
                try:
                    await small.connect()
                    await small.next_frame()
                finally:
                    await small.close()
            assert e.value.code == 1008 and "max_frame_bytes" in e.value.reason
    run(go(), 180)


def test_coalesce_folds_additive_actions_only():
    from reference_generator.actions import Jump, Look, Pose, Strafe, coalesce
    assert coalesce(Move(0.2), Move(0.3)) == Move(0.5)
    assert coalesce(Turn(5), Turn(-2)) == Turn(3)
    assert coalesce(Idle(), Strafe(1)) == Strafe(1) and coalesce(Strafe(1), Idle()) == Strafe(1)
    assert coalesce(Pose((1, 2, 3)), Pose((4, 5, 6))) == Pose((4, 5, 6))
    for a, b in [(Move(1), Turn(1)), (Jump(), Jump()), (Look(1), Look(1)), (Move(60), Move(60))]:
        assert coalesce(a, b) is None


def test_a_world_behind_folds_queued_actions_into_one_step():
    from reference_generator.worldhost import WorldHost

    async def go():
        h = WorldHost("t", SMALL, tick_hz=0)
        for k, a in enumerate([Move(0.1), Move(0.2), Turn(3), Turn(4), Interact(), Move(1)]):
            h.submit(a, k)
        steps = []
        while h.queue:
            taken = await h._next_actions(None)
            steps.append((taken[0][0], [t[1] for t in taken]))
        assert steps == [(Move(0.30000000000000004), [0, 1]), (Turn(7), [2, 3]), (Interact(), [4]), (Move(1), [5])]
        await h.backend.close()
    run(go())


def test_client_rejects_bytes_after_a_record_before_applying_it():
    """SPEC 11.3 / 4.9 F8a: a message with bytes after its record is MALFORMED and changes nothing."""
    async def go():
        async with server() as s:
            async with Client(s.url) as c:
                await c.next_frame()
                before = c.digest
                await c.act(Move(0.3))
                data = await c._receive_binary()
                assert await c._apply(data + b"\0", None) is None
                assert c.stats.errors == {"MALFORMED": 1} and c.digest == before
                assert (await c.next_frame()).keyframe               # the resync it sent was answered
    run(go())


# ------------------------------------------------------------------------------ admission control
async def _refused(url: str) -> tuple:
    """Open a raw session that sends its hello; (close code, reason) of the server's close."""
    async with aiohttp.ClientSession() as http:
        ws = await raw_ws(url, http)
        await ws.send_str(json.dumps(HELLO))
        msg = await asyncio.wait_for(ws.receive(), 10)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), msg.type  # no stream header
        return ws.close_code, msg.extra


def test_unsaturated_server_admits_and_says_so():
    async def go():
        # an idle server: default world-busy threshold; wait and loop-lag limits a loaded test machine
        # cannot trip (they are the machine's signals, not this session's)
        async with server(admission=True, admit_min_sessions=1, admit_max_wait_ms=2000.0,
                          admit_max_loop_lag_ms=2000.0) as s:
            async with Client(s.url) as c:
                await c.next_frame()
                for _ in range(5):
                    await c.step(Move(0.3))
                async with Client(s.url) as d:                # a second session is admitted
                    assert (await d.next_frame()).keyframe
                await wait_until(lambda: len(s.sessions) == 1)
                async with aiohttp.ClientSession() as http:
                    state = await (await http.get(s.http + "/admission")).json()
                    r = await http.get(s.http + "/sessions")
                    assert r.headers["GSD-Admission"] == "open" and len(await r.json()) == 1
            assert state["open"] and state["reason"] is None and state["refused"] == {}
            assert 0 <= state["signals"]["busy"] < 0.8 and c.stats.refusals == 0
    run(go())


# Each case trips one signal; the other two get limits a loaded test machine cannot reach, so the
# refusal names the signal under test.
@pytest.mark.parametrize("limits,label", [
    ({"admit_max_busy": 0.0, "admit_max_wait_ms": 5000.0, "admit_max_loop_lag_ms": 5000.0}, "busy"),
    ({"admit_max_busy": 1.0, "admit_max_wait_ms": 2.0, "admit_max_loop_lag_ms": 5000.0}, "wait"),
    ({"admit_max_busy": 1.0, "admit_max_wait_ms": 5000.0, "admit_max_loop_lag_ms": 30.0}, "loop"),
], ids=["busy", "wait", "loop"])
def test_saturated_server_refuses_new_sessions_with_1013_and_keeps_serving_the_others(limits, label):
    async def go():
        async with server(admission=True, retry_after=7, admit_min_sessions=1, **limits) as s:
            async with Client(s.url) as a:
                await a.next_frame()
                for _ in range(3):
                    await a.step(Move(0.3))
                if label == "wait":                           # a burst that cannot fold: steps queue up
                    for k in range(60):
                        await a.act(Move(0.05) if k % 2 else Turn(1.0))
                    await wait_until(lambda: s.admission.refusal(len(s.sessions)) is not None)
                if label == "loop":                           # the event loop blocked, again and again
                    for _ in range(8):
                        time.sleep(0.2)
                        await asyncio.sleep(0.03)
                code, reason = await _refused(s.url)
                assert code == 1013, (code, reason)
                assert re.match(r"retry-after=7 server busy: ", reason), reason
                with pytest.raises(ServerBusy) as e:          # the client reports it, with the delay
                    b = Client(s.url)
                    try:
                        await b.connect()
                    finally:
                        await b.close()
                assert e.value.retry_after == 7 and "server busy" in str(e.value) and b.stats.refusals == 1
                while a._sent:                                # the running session keeps its service
                    await a.next_frame()
                await a.step(Move(0.3))
                assert not a.stats.errors and a.stats.resyncs == 0
                assert a.digest == str(only_host(s).encoder.state.digest())
                async with aiohttp.ClientSession() as http:
                    text = await (await http.get(s.http + "/metrics")).text()
                    state = await (await http.get(s.http + "/admission")).json()
                    r = await http.get(s.http + "/sessions")
                    head = r.headers["GSD-Admission"]
            assert f'gsd_sessions_refused_total{{reason="{label}"}} 2.0' in text, text
            for name in ("gsd_admission_open", "gsd_world_lanes_busy", "gsd_admission_step_wait_seconds",
                         "gsd_admission_queue_age_seconds", "gsd_event_loop_lag_seconds", "gsd_step_wait_seconds_count"):
                assert name in text, name
            assert state["refused"] == {label: 2} and state["retry_after"] == 7
            if not state["open"]:                             # still saturated: the header says why
                assert head.startswith("refusing; retry-after=7; server busy")
    run(go())


def test_admission_projects_the_load_of_sessions_not_yet_measured():
    """Sessions admitted within the window count with the mean load of one session, so a burst of
    arrivals is not all admitted before its load shows; the session cap refuses too."""
    from reference_generator.server import Admission

    class Lane:
        def __init__(self):
            self.busy = 0.0

        def seconds(self):
            return self.busy

    t = [100.0]
    lanes = [Lane(), Lane()]
    cfg = config(admission=True, admit_max_busy=0.8, admit_window=2.0, max_sessions=30, admit_min_sessions=4)
    adm = Admission(cfg, lanes, hosts=lambda: [], clock=lambda: t[0])
    for _ in range(20):                                      # 2 s at 50% on both lanes
        t[0] += 0.1
        for ln in lanes:
            ln.busy += 0.05
        adm.sample(0.0)
    assert adm.signals(10)["busy"] == pytest.approx(0.5) and adm.refusal(10) is None
    for _ in range(6):                                       # 6 arrivals at once, not measured yet
        adm.note_admit()
    g = adm.signals(16)
    assert g["busy"] == pytest.approx(0.5) and g["busy_projected"] == pytest.approx(0.5 + 6 * 0.05)
    assert adm.refusal(16)[0] == "busy"
    for _ in range(20):                                      # their load never came: 50% is under 80% of
        t[0] += 0.1                                          # 0.8, where a refusing server reopens
        for ln in lanes:
            ln.busy += 0.05
        adm.sample(0.0)
    assert adm.signals(16)["busy_projected"] == pytest.approx(0.5) and adm.refusal(16) is None
    for _ in range(16):                                      # a burst with none settled: the remembered share
        adm.note_admit()
    assert adm.signals(16)["busy_projected"] == pytest.approx(0.5 + 16 * 0.5 / 16)
    for _ in range(25):                                      # the burst leaves the window
        t[0] += 0.1
        for ln in lanes:
            ln.busy += 0.05
        adm.sample(0.0)
    assert adm.refusal(30) == ("sessions", "server full: 30 sessions")
    for busy, refused in ((0.85, True), (0.7, True), (0.66, True), (0.6, False), (0.7, False), (0.85, True)):
        for _ in range(20):                                  # 2 s at this load: refused from over 0.8 until
            t[0] += 0.1                                      # under 0.64 (no flapping at the edge)
            for ln in lanes:
                ln.busy += busy / 10
            adm.sample(0.0)
        assert (adm.refusal(16) is not None) == refused, busy
    assert adm.refusal(3) is None                            # the first sessions get in whatever the load
    adm.cfg = replace(cfg, admission=False)
    for _ in range(6):
        adm.note_admit()
    assert adm.refusal(16) is None and adm.refusal(30)[0] == "sessions"   # the cap holds without admission


def test_refused_client_waits_the_retry_delay_then_gets_in():
    async def go():
        async with server(max_sessions=1, retry_after=1) as s:
            holder = Client(s.url)
            await holder.connect()
            await holder.next_frame()
            told = []

            def on_busy(e, delay):                            # the slot frees while b waits
                told.append((e.retry_after, delay))
                asyncio.get_running_loop().create_task(holder.close())

            b = Client(s.url)
            try:
                stats = await run_script(b, [Move(0.2)] * 5, reconnects=1, on_busy=on_busy)
            finally:
                await b.close()
                await holder.close()
            assert stats.refusals == 1 and len(told) == 1 and told[0][0] == 1.0
            assert 1.0 <= stats.waited_s[0] <= 1.5 and stats.waited_s[0] == told[0][1]
            assert stats.frames == 6 and not stats.errors
            assert s.metrics.refused.labels("sessions")._value.get() == 1
    run(go())


def test_watch_reports_a_busy_server_and_retries_after_its_delay():
    async def go():
        async with server(max_sessions=0, retry_after=1) as s:   # refuses every session
            out = []
            for extra in ([], ["--reconnect", "1"]):
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "reference_generator.watch", s.url, "--steps", "3", "--json", *extra,
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
                o, e = await asyncio.wait_for(proc.communicate(), 60)
                out.append((proc.returncode, e.decode(), json.loads(o.decode().strip().splitlines()[-1])))
            return out
    (rc0, err0, sum0), (rc1, err1, sum1) = run(go())
    assert rc0 == 3 and "server busy (1013): server full" in err0 and "retry after 1 s" in err0, err0
    assert sum0 == {"frames": 0, "refusals": 1}
    assert rc1 == 3 and re.search(r"waiting 1(\.\d)? s before trying again", err1), err1
    assert sum1["refusals"] == 2


def test_client_reads_the_keyframe_flag_from_metadata_and_decodes_a_frame_once():
    """While resyncing, non-keyframes are dropped unread (flag from the frame metadata); the
    awaited keyframe is decoded once, and a damaged one asks for another keyframe."""
    from codec.wire import frame_is_keyframe

    async def go():
        async with server() as s:
            async with Client(s.url) as c:
                await c.next_frame()
                await c.act(Move(0.3))
                delta = await c._receive_binary()             # a delta, left unapplied
                calls = []
                read = c.decoder.read_frame
                c.decoder.read_frame = lambda *a, **k: (calls.append(1), read(*a, **k))[1]
                await c.resync("CLIENT")
                key = await c._receive_binary()
                assert frame_is_keyframe(key) and not frame_is_keyframe(delta)
                assert not frame_is_keyframe(key[:20]) and not frame_is_keyframe(b"GSDH" + key[4:])
                assert await c._apply(delta, None) is None and calls == []       # skipped, never decoded
                bad = bytearray(key)
                bad[len(bad) // 2] ^= 0x5A                    # payload damage: the flag still reads KEYFRAME
                assert await c._apply(bytes(bad), None) is None and len(calls) == 1
                assert c.stats.errors == {"BAD_CHECKSUM": 1} and c.stats.resyncs == 2   # asked again
                f = await c.next_frame()
                assert f.keyframe and len(calls) == 2
                assert c.digest == str(only_host(s).encoder.state.digest())
    run(go())


def test_a_client_that_stops_reading_holds_one_pending_delta_of_all_the_steps():
    """SPEC 11.6: per client at most one pending delta, composed from every step since the last
    frame sent -- never a queue of frames or deltas, however many steps pass."""
    from codec import Delta

    async def go():
        async with server(window=1) as s:
            async with Client(s.url, ack=False) as c:        # never acknowledges: its window stays shut
                await c.next_frame()                          # the keyframe: the one frame in flight
                sess = next(iter(s.sessions.values()))
                host = sess.host
                for k in range(40):
                    await c.act(Move(0.05) if k % 2 else Turn(2.0))
                p = host.backend.core.pendings[sess.link]
                # the world's thread advances the encoder's seq before it folds the step into the
                # pendings: wait for both, or the last step is read half done
                await wait_until(lambda: not host.queue and host.encoder.state.seq >= 41
                                 and p.delta is not None and p.delta.seq == host.encoder.state.seq)
                kept = [v for v in vars(p).values() if isinstance(v, (list, tuple, dict, set)) and
                        any(isinstance(x, (Delta, bytes)) for x in (v.values() if isinstance(v, dict) else v))]
                assert isinstance(p.delta, Delta) and kept == []        # one delta, no collection of them
                assert p.steps == 40 and p.delta.seq == host.encoder.state.seq
                assert sess.frames == 1 and sess.link not in host.prefetched   # nothing cut ahead either
    run(go())


def test_server_busy_reads_the_retry_delay_of_spec_11_7():
    e = ServerBusy(1013, "retry-after=7 server busy: worlds 90% busy > 70%")
    assert e.retry_after == 7 and e.cause == "server busy: worlds 90% busy > 70%"
    assert "retry after 7 s" in str(e) and "worlds 90% busy" in str(e)
    assert ServerBusy(1013, "retry-after=12").retry_after == 12 and ServerBusy(1013, "retry-after=12").cause == ""
    for reason in ("server busy", "retry-after=0 x", "retry-after=x", "retry-after=12s", "retry-after=99999 x"):
        assert ServerBusy(1013, reason).retry_after == 10.0, reason   # no readable N: 10 s
    assert ServerBusy(1013, "retry-after=9000 x").retry_after == 3600  # beyond the range: its upper end


# ------------------------------------------------------------------------------ bursts and ending sessions
def test_wait_for_passes_on_a_cancel_that_arrives_as_the_operation_completes():
    """flow.wait_for: the cancel of a task whose awaited operation completes in the same loop
    iteration reaches the task (asyncio.wait_for of Python 3.10/3.11 returns the result instead,
    and a session's sender cancelled that way went on for ever)."""
    from reference_generator.flow import wait_for

    async def go():
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        t = asyncio.create_task(wait_for(fut, 10))
        await asyncio.sleep(0)                               # t now waits on fut
        fut.set_result(1)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        slow = loop.create_future()
        with pytest.raises(asyncio.TimeoutError):
            await wait_for(slow, 0.05)
        assert slow.cancelled()                              # a timed-out operation is cancelled
        assert await wait_for(asyncio.sleep(0, "ok"), 1) == "ok"
    run(go())


def _burst(kind: str, n: int, ids: bool) -> list:
    from reference_generator.actions import ACTION_TYPES, to_json
    cls = ACTION_TYPES.get(kind)
    base = to_json(cls()) if cls else {"type": "action", "seq": 0, "kind": kind, "params": {}}
    return [json.dumps({**base, **({"id": i} if ids else {})}) for i in range(n)]


async def _close_of(ws, timeout=10.0) -> tuple:
    """Read (and drop) frames until the server closes; (code, reason)."""
    end = time.monotonic() + timeout
    while True:
        msg = await asyncio.wait_for(ws.receive(), max(0.01, end - time.monotonic()))
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
            return ws.close_code, msg.extra


BURSTS = [(k, n, ids) for k in ("move", "strafe", "turn", "look", "jump", "interact", "pose", "idle", "fly")
          for n, ids in ((300, True), (2000, False))]


def test_a_burst_of_any_action_kind_over_the_rate_limit_closes_1008_and_ends_the_session():
    """A burst of one kind of action, back to back (every kind of the reference world, and one it
    does not know), over the default rate limit (120/s, bursts of 240), while the world ticks and
    frames flow: close 1008 naming the rate, and the session is gone from /sessions at once."""
    async def go():
        async with server(actions_per_second=120, action_burst=240, tick_hz=25) as s:
            async with aiohttp.ClientSession() as http:
                for kind, n, ids in BURSTS:
                    ws = await raw_ws(s.url, http)
                    await ws.send_str(json.dumps(HELLO))
                    assert (await ws.receive()).type == aiohttp.WSMsgType.TEXT        # session (11.3)
                    assert (await ws.receive()).type == aiohttp.WSMsgType.BINARY      # header
                    for text in _burst(kind, n, ids):
                        await ws.send_str(text)
                    code, reason = await _close_of(ws)
                    assert (code, "rate" in reason) == (1008, True), (kind, n, code, reason)
                    await wait_until(lambda: not s.sessions, timeout=3)
                    rows = await (await http.get(s.http + "/sessions")).json()
                    assert rows == [], (kind, rows)
                    await ws.close()
    run(go())


def test_a_session_ends_even_when_its_sender_loses_the_cancel(monkeypatch):
    """The session's end does not depend on its sender task honouring a cancel: a sender parked
    in a write that swallows the cancel (what asyncio.wait_for of Python <= 3.11 does when the
    write completes as the cancel arrives) still stops, the close reaches the client and the
    session leaves /sessions."""
    from reference_generator.server import Session
    write = Session._write

    async def write_losing_cancel(self, f):
        try:
            await write(self, f)
            await asyncio.Event().wait()                     # parked here until cancelled
        except asyncio.CancelledError:
            pass                                             # ... and the cancel is lost

    monkeypatch.setattr(Session, "_write", write_losing_cancel)

    async def go():
        async with server(actions_per_second=5, action_burst=5) as s:
            async with aiohttp.ClientSession() as http:
                ws = await raw_ws(s.url, http)
                await ws.send_str(json.dumps(HELLO))
                await ws.receive()                           # header
                await wait_until(lambda: any(x.frames for x in s.sessions.values()))
                t0 = time.monotonic()
                for text in _burst("idle", 20, True):
                    await ws.send_str(text)
                code, reason = await _close_of(ws, 5)
                assert code == 1008 and "rate" in reason
                await wait_until(lambda: not s.sessions, timeout=3)
                assert time.monotonic() - t0 < 4
    run(go())


def test_shutdown_ends_sessions_within_seconds_even_with_stuck_senders(monkeypatch):
    """Server.stop (SIGTERM) with sessions whose senders lost their cancel (as above) and whose
    clients never read, so never answer the close: every session gets 1001 at once and at most
    2 s for the answer; the stop is not held for aiohttp's 60 s shutdown wait."""
    from reference_generator.server import Session
    write = Session._write

    async def write_losing_cancel(self, f):
        try:
            await write(self, f)
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            pass

    monkeypatch.setattr(Session, "_write", write_losing_cancel)

    async def go():
        s = Server(config(tick_hz=25))
        port = await s.start()
        async with aiohttp.ClientSession() as http:
            socks = []                                        # held: a dropped client socket closes
            for _ in range(3):
                ws = await raw_ws(f"ws://127.0.0.1:{port}/ws", http)
                await ws.send_str(json.dumps(HELLO))
                await ws.receive()                            # from here on nobody reads
                socks.append(ws)
            await wait_until(lambda: len(s.sessions) == 3 and all(x.frames for x in s.sessions.values()), 30)
            t0 = time.monotonic()
            await s.stop()
            took = time.monotonic() - t0
            assert took < 5, took
            assert not s.sessions
    run(go())
