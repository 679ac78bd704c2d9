"""Random bursts of client messages against one server (SPEC.md 11.4, 11.7): a fuzz target.

Each session sends a burst of random messages back to back: actions of every kind (and unknown
ones) with valid, out-of-range, mistyped and unknown parameters, with and without ids, any seq;
acks, resyncs and hellos with garbage fields; text that is not JSON; binary messages. Then it
sends one valid action. The oracle, per session: the server either closes it with a code SPEC
11.7 gives a misbehaving client (1008, 1009), or keeps it running and answers that last action
(a `frame` listing its id, or `ignored` with its id). Nothing hangs, a closed session leaves
`/sessions` at once, and a well-behaved client afterwards still agrees with the server's digest.

``GSD_ACTION_FUZZ_SESSIONS`` (default 24) and ``GSD_ACTION_FUZZ_SEED`` (default 1) make it a
longer campaign: ``GSD_ACTION_FUZZ_SESSIONS=2000 pytest tests/test_action_fuzz.py``.
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import time

import aiohttp
import pytest

pytest.importorskip("torch")

from reference_generator.actions import Idle, KINDS
from reference_generator.client import Client
from reference_generator.server import ACTIONS

from test_server import HELLO, raw_ws, run, server, wait_until

SESSIONS = int(os.environ.get("GSD_ACTION_FUZZ_SESSIONS", "24"))
SEED = int(os.environ.get("GSD_ACTION_FUZZ_SEED", "1"))
MISBEHAVING = {1008, 1009}            # SPEC.md 11.7: policy (bad message, rate) and message too big
SENTINEL = 2 ** 40                    # the id of each session's closing, valid action
ODD_VALUES = [0, -1, 1, 0.5, 1e308, -1e308, 2 ** 53, 2 ** 64, -2 ** 63, "", "x" * 300, None, True, [], {},
              [1, 2, 3], [0.0, 0.0, 0.0], {"a": 1}, float("nan"), float("inf")]


def _param(rng: random.Random, spec: dict, clean: bool):
    """A value for a declared parameter: its default, a value in its range, at or past a bound, or junk."""
    r = rng.random()
    if r < 0.3 or (clean and not ("min" in spec and "max" in spec)):
        return spec["default"]
    if (clean or r < 0.6) and "min" in spec and "max" in spec:
        return rng.uniform(spec["min"], spec["max"])
    if r < 0.8 and ("min" in spec or "max" in spec):
        bound = spec.get("max", spec.get("min"))
        return bound + rng.choice([-1e-3, 0.0, 1e-3, 1e6])
    return rng.choice(ODD_VALUES)


def _action(rng: random.Random, kind, k: int, clean: bool) -> dict:
    m = {"type": "action", "kind": kind}
    spec = ACTIONS.get(kind) if isinstance(kind, str) else None
    if rng.random() < 0.8:
        params = {}
        for name, p in (spec or {}).get("params", {}).items():
            if rng.random() < 0.6:
                params[name] = _param(rng, p, clean)
        if not clean and rng.random() < 0.1:
            params[rng.choice(["zzz", "speed", "", "degrees "])] = rng.choice(ODD_VALUES)
        m["params"] = params if clean or rng.random() < 0.95 else rng.choice(ODD_VALUES)
    if clean or rng.random() < 0.9:
        m["seq"] = rng.choice([0, 1, 10 ** 9]) if clean else rng.choice([0, 1, 10 ** 9, -1, "1", None])
    if rng.random() < 0.7:
        m["id"] = k if clean or rng.random() < 0.9 else rng.choice([-5, 2 ** 60, "a", 1.5, None])
    return m


def _burst(rng: random.Random) -> list:
    """One session's burst: (is_text, payload) messages. Half the bursts repeat one kind of action;
    a third are clean (well-formed actions of known kinds and of a kind the world does not have)."""
    clean = rng.random() < 0.35
    kinds = list(KINDS) + (["fly"] if clean else ["fly", "", "MOVE", 7, None])
    n = rng.choice([1, 5, 40, 200] if clean else [1, 5, 40, 300, 2000])
    one_kind = rng.choice(kinds) if rng.random() < 0.5 else None
    out = []
    for k in range(n):
        r = rng.random()
        if clean or one_kind is not None or r < 0.8:
            out.append((True, json.dumps(_action(rng, one_kind if one_kind is not None else rng.choice(kinds), k,
                                                 clean))))
        elif r < 0.9:
            m = {"type": rng.choice(["ack", "resync", "hello", "ping", "frame", "zzz", None])}
            for f in rng.sample(["seq", "digest", "reason", "protocol", "budgets"], rng.randrange(3)):
                m[f] = rng.choice(ODD_VALUES)
            out.append((True, json.dumps(m)))
        elif r < 0.97:
            out.append((True, rng.choice(["{", "null", "[]", '"action"', "1", "{\"type\": ", "\x00"])))
        else:
            out.append((False, rng.randbytes(rng.choice([0, 1, 64]))))
    return out


async def _outcome(ws, timeout: float = 30.0):
    """('answered', None) once the sentinel's id comes back, or ('closed', code); a hang fails."""
    end = time.monotonic() + timeout
    while True:
        left = end - time.monotonic()
        if left <= 0:
            raise AssertionError("no answer to the closing action and no close: the session hangs")
        msg = await asyncio.wait_for(ws.receive(), left)
        if msg.type == aiohttp.WSMsgType.TEXT:
            m = json.loads(msg.data)
            if (m.get("type") == "frame" and SENTINEL in m.get("actions", [])) or \
                    (m.get("type") == "ignored" and m.get("id") == SENTINEL):
                return "answered", None
        elif msg.type == aiohttp.WSMsgType.BINARY:
            await ws.send_str(json.dumps({"type": "resync", "reason": "CLIENT"}))   # keeps frames coming
        else:
            return "closed", ws.close_code


def test_random_message_bursts_end_in_a_spec_close_or_an_answer_and_never_hang():
    async def go():
        rng = random.Random(SEED)
        seen: dict = {}
        async with server(actions_per_second=120, action_burst=240) as s:
            async with aiohttp.ClientSession() as http:
                for i in range(SESSIONS):
                    burst = _burst(rng)
                    ws = await raw_ws(s.url, http)
                    await ws.send_str(json.dumps(HELLO))
                    assert (await ws.receive()).type == aiohttp.WSMsgType.TEXT      # session (11.3)
                    assert (await ws.receive()).type == aiohttp.WSMsgType.BINARY    # header
                    try:
                        for is_text, payload in burst:
                            await (ws.send_str(payload) if is_text else ws.send_bytes(payload))
                        await ws.send_str(json.dumps({"type": "action", "seq": 0, "kind": "idle", "id": SENTINEL}))
                    except (ConnectionResetError, aiohttp.ClientConnectionError):
                        pass                                   # closed mid-burst: the outcome says how
                    outcome, code = await _outcome(ws)
                    seen[(outcome, code)] = seen.get((outcome, code), 0) + 1
                    if outcome == "closed":
                        assert code in MISBEHAVING, (i, code, burst[:3])
                        await wait_until(lambda: not s.sessions, timeout=5)
                        rows = await (await http.get(s.http + "/sessions")).json()
                        assert rows == [], (i, rows)
                    await ws.close()
                    await wait_until(lambda: not s.sessions, timeout=5)
            # the server is unharmed: a client that follows the protocol agrees with it frame by frame
            async with Client(s.url) as c:
                await c.next_frame()
                for _ in range(5):
                    await c.step(Idle())
                host = next(iter(s.sessions.values())).host
                assert c.digest == str(host.encoder.state.digest()) and not c.stats.errors
        print(f"{SESSIONS} sessions, seed {SEED}: " + ", ".join(f"{o}{'' if c is None else ' ' + str(c)} {n}"
                                                                for (o, c), n in sorted(seen.items(), key=str)))
        assert ("answered", None) in seen and any(o == "closed" for o, _ in seen)   # both paths were taken
    run(go(), 600)
