"""SPEC.md 11 as a stranger reads it: each point the text settles, checked against the server."""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import fields

import aiohttp
import pytest

pytest.importorskip("torch")

from reference_generator.actions import ACTION_TYPES, KINDS, Move, from_json
from reference_generator.client import Client
from reference_generator.server import ACTIONS, SessionClosed, parse_hello

from test_server import HELLO, raw_ws, run, server, wait_until


async def _open(url: str, http, hello=HELLO):
    """A raw session: (ws, session message, header bytes)."""
    ws = await raw_ws(url, http)
    await ws.send_str(json.dumps(hello))
    first = await ws.receive()
    second = await ws.receive()
    return ws, first, second


async def _close(ws, timeout=10) -> tuple:
    while True:
        msg = await asyncio.wait_for(ws.receive(), timeout)
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
            return ws.close_code, msg.extra


def test_declared_actions_match_what_the_server_accepts():
    """11.4: the session message's vocabulary (defaults, ranges) is what from_json enforces."""
    assert set(ACTIONS) == set(KINDS)
    for kind, spec in ACTIONS.items():
        cls = ACTION_TYPES[kind]
        assert set(spec["params"]) == {f.name for f in fields(cls)}, kind
        inst = cls()
        for name, p in spec["params"].items():
            d = getattr(inst, name)
            assert (list(d) if isinstance(d, tuple) else d) == p["default"], (kind, name)
            if "max" in p:
                from_json({"type": "action", "kind": kind, "params": {name: p["max"]}})
                with pytest.raises(ValueError):
                    from_json({"type": "action", "kind": kind, "params": {name: p["max"] + 0.001}})
            if "min" in p:
                if p.get("min_exclusive"):
                    with pytest.raises(ValueError):
                        from_json({"type": "action", "kind": kind, "params": {name: p["min"]}})
                else:
                    from_json({"type": "action", "kind": kind, "params": {name: p["min"]}})
                with pytest.raises(ValueError):
                    from_json({"type": "action", "kind": kind, "params": {name: p["min"] - 0.001}})
        with pytest.raises(ValueError, match="unknown parameter"):
            from_json({"type": "action", "kind": kind, "params": {"zzz": 1}})
        assert isinstance(from_json({"type": "action", "kind": kind}), cls)      # every parameter defaults


def test_session_message_comes_first_and_announces_window_and_actions():
    """11.3: the server's first message is the `session` text message (W, timeouts, keep-alive,
    actions), then the header record; a watch-only session is offered no actions (11.8)."""
    async def go():
        async with server(window=2, idle_timeout=40) as s:
            async with aiohttp.ClientSession() as http:
                ws, first, second = await _open(s.url, http)
                assert first.type == aiohttp.WSMsgType.TEXT and second.type == aiohttp.WSMsgType.BINARY
                m = json.loads(first.data)
                assert m["type"] == "session" and m["window"] == 2 and m["idle_timeout_s"] == 40
                assert m["keepalive_s"] == 20 and m["actions"] == json.loads(json.dumps(ACTIONS))
                assert m["watch_only"] is False and m["max_gaussians"] >= 1
                assert second.data[:4] == b"GSDH" or len(second.data) > 16
                await ws.close()
    run(go())


def test_unknown_kind_and_dropped_actions_get_their_id_back_and_seq_is_not_checked():
    """11.4: an action that will never run is answered at once with `ignored` and its id; every
    other id is listed by a `frame`; an action's seq, ahead of or behind the client, is not used."""
    async def go():
        async with server() as s:
            async with aiohttp.ClientSession() as http:
                ws, _, _ = await _open(s.url, http)
                await ws.send_str(json.dumps({"type": "action", "seq": 0, "kind": "fly", "params": {}, "id": 7}))
                await ws.send_str(json.dumps({"type": "action", "seq": 10 ** 9, "kind": "move", "id": 8}))
                await ws.send_str(json.dumps({"type": "action", "seq": 0, "kind": "move", "id": 9}))
                n = 400                               # looks do not fold: the world's queue (64) overflows
                for i in range(n):
                    await ws.send_str(json.dumps({"type": "action", "seq": 1, "kind": "look", "params":
                                                  {"degrees": 0.1}, "id": 100 + i}))
                answered, ignored = [], {}
                end = time.monotonic() + 30
                while len(answered) + len(ignored) < n + 3 and time.monotonic() < end:
                    msg = await asyncio.wait_for(ws.receive(), 10)
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        m = json.loads(msg.data)
                        if m["type"] == "frame":
                            answered += m["actions"]
                        elif m["type"] == "ignored":
                            ignored[m["id"]] = m["reason"]
                    elif msg.type == aiohttp.WSMsgType.BINARY:
                        pass
                    else:
                        raise AssertionError(f"closed: {ws.close_code} {msg.extra}")
                    # ack nothing: the window (3) would stall; resync keeps frames coming
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        await ws.send_str(json.dumps({"type": "resync", "reason": "CLIENT"}))
                assert ignored.pop(7) == "unknown kind"
                assert 8 in answered and 9 in answered            # seq ahead and seq behind both ran
                assert set(answered) | set(ignored) == {8, 9} | set(range(100, 100 + n))
                assert not set(answered) & set(ignored) and len(answered) == len(set(answered))
                assert set(ignored.values()) <= {"queue full"}
                await ws.close()
    run(go())


def test_private_world_beyond_the_clients_max_gaussians_is_refused_not_emptied():
    """11.2: a scene larger than the client's max_gaussians closes 1008 (it is not shrunk to fit)."""
    async def go():
        async with server() as s:
            async with aiohttp.ClientSession() as http:
                hello = {**HELLO, "budgets": {**HELLO["budgets"], "max_gaussians": 100}}
                ws = await raw_ws(s.url, http)
                await ws.send_str(json.dumps(hello))
                code, reason = await _close(ws)
                assert code == 1008 and "max_gaussians" in reason
            async with Client(s.url, max_gaussians=1_500_000) as c:   # header: min(world's, client's)
                await c.next_frame()
                assert c.decoder.header.max_gaussians <= 1_500_000 and len(c.decoder.state) > 0
    run(go())


def test_budget_minimums_of_11_2():
    b = HELLO["budgets"]
    for field_, low in (("max_frame_bytes", 1023), ("max_bytes_per_second", 1023), ("max_gaussians", 0)):
        with pytest.raises(SessionClosed) as e:
            parse_hello(json.dumps({**HELLO, "budgets": {**b, field_: low}}))
        assert e.value.code == 1008 and field_ in e.value.reason
        parse_hello(json.dumps({**HELLO, "budgets": {**b, field_: low + 1}}))


def test_keyframe_steps_and_a_resync_keyframe_at_the_clients_own_seq():
    """11.3/11.5: `steps` of the first keyframe is 0; a resync with no step since gives a keyframe
    whose seq is the client's own (legal under 6.5) and steps 0; after k steps, steps is k."""
    async def go():
        async with server() as s:
            async with Client(s.url) as c:
                k = await c.next_frame()
                assert k.keyframe and k.steps == 0
                for _ in range(3):
                    await c.step(Move(0.2))
                seq = c.seq
                await c.resync()
                f = await c.next_frame()
                assert f.keyframe and f.seq == seq and f.steps == 0 and not c.stats.errors
        async with server(ack_timeout=0.3, window=2) as s:           # an ack timeout's keyframe
            async with Client(s.url, ack=False) as c:
                await c.next_frame()
                await c.send_json({"type": "ack", "seq": c.seq, "digest": c.digest})   # the keyframe only
                got = []
                for _ in range(2):
                    await c.act(Move(0.2))
                    got.append(await c.next_frame())
                last = await c.act(Move(0.2))          # the window (2) is full: this step stays pending
                f = await c.next_frame(10)             # no ack for 0.3 s: a keyframe of the newest state
                assert f.keyframe and f.seq == got[-1].seq + 1 and f.steps == 1
                assert f.latency_ms and last not in c._sent      # the pending step's action id is listed
    run(go())


def test_a_client_paced_by_its_byte_budget_stays_alive_with_keepalives():
    """11.6/11.7: at max_bytes_per_second 1024 the keyframe goes at once and the next frame waits
    until the balance is repaid (about a minute); the client's keep-alives (its last ack again)
    keep the session past the idle timeout, and cost no resync."""
    async def go():
        async with server(idle_timeout=1.5, tick_hz=25) as s:
            async with Client(s.url, max_bytes_per_second=1024) as c:
                k = await c.next_frame()
                assert k.keyframe and k.nbytes > 10_000 and c.session["keepalive_s"] == 0.75
                with pytest.raises(asyncio.TimeoutError):
                    await c.next_frame(timeout=4)          # paced: nothing for seconds; no 4000 either
                (sess,) = s.sessions.values()
                assert sess.frames == 1 and sess.resyncs == 0
                # a client that stays silent is closed as idle
                async with aiohttp.ClientSession() as http:
                    ws, _, _ = await _open(s.url, http, {**HELLO, "budgets": {**HELLO["budgets"],
                                                                             "max_bytes_per_second": 1024}})
                    code, _ = await _close(ws)
                    assert code == 4000
    run(go())


def test_an_oversized_message_closes_1009_with_a_reason():
    async def go():
        async with server() as s:
            async with aiohttp.ClientSession() as http:
                ws, _, _ = await _open(s.url, http)
                await ws.send_str("x" * 70_000)
                code, reason = await _close(ws)
                assert code == 1009 and "65536" in reason
    run(go())


def test_malformed_world_names_get_http_400():
    async def go():
        async with server() as s:
            async with aiohttp.ClientSession() as http:
                for bad in ("", "caf%C3%A9", "a" * 65, "a%20b", "x.y"):
                    with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                        await raw_ws(s.url + "?world=" + bad, http)
                    assert e.value.status == 400, bad
                ws, first, _ = await _open(s.url + "?world=Ok-name_9", http)
                assert json.loads(first.data)["world"] == "Ok-name_9"
                await ws.close()
    run(go())


def test_keyframes_a_client_asks_for_are_rate_limited():
    """11.7: resyncs, and acks whose digest does not match (each asks for a keyframe of the whole state),
    beyond the limit close the session 1008 naming the rate; the limit's burst goes through."""
    async def go():
        async with server(resyncs_per_minute=6, resync_burst=3) as s:
            async with aiohttp.ClientSession() as http:
                for how in ("resync", "ack"):
                    ws, _, _ = await _open(s.url, http)
                    for i in range(4):
                        if how == "resync":
                            await ws.send_str(json.dumps({"type": "resync", "reason": "CLIENT"}))
                        else:
                            wrong = {"type": "ack", "seq": 1, "digest": "1:00000000:00000000"}
                            await ws.send_str(json.dumps(wrong))
                        if i < 3:
                            await asyncio.sleep(0.05)
                            assert not ws.closed, (how, i)
                    code, reason = await _close(ws)
                    assert code == 1008 and "resync rate" in reason, (how, code, reason)
                    await wait_until(lambda: not s.sessions, timeout=5)
    run(go())
