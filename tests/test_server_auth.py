"""Who may join a session (SPEC.md 11.8): signed tokens, checked when the WebSocket opens.

The token rules are checked on their own (auth.py) and against a running server: every refusal
arrives as the close code SPEC 11.7 gives, before the stream header (or, for an action of a
watch-only session and a token that expires mid-session, as the session's close).
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import re
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

pytest.importorskip("torch")

from reference_generator.actions import Move
from reference_generator.auth import TokenError, mint, read_secret, verify
from reference_generator.client import Client, NotAuthorised, ProtocolClosed
from reference_generator.server import Server, parse_args

from test_server import HELLO, config, raw_ws, run, wait_until

ROOT = Path(__file__).resolve().parent.parent
SECRET = b"test-secret-0123456789abcdef"

# SPEC.md 11.8's worked example
EXAMPLE_SECRET = b"gsd-example-secret-0123456789abcdef"
EXAMPLE_PAYLOAD = b'{"v":1,"world":"lobby","watch_only":true,"exp":1893456000}'
EXAMPLE_TOKEN = ("eyJ2IjoxLCJ3b3JsZCI6ImxvYmJ5Iiwid2F0Y2hfb25seSI6dHJ1ZSwiZXhwIjoxODkzNDU2MDAwfQ"
                 ".90NoOPVezIaE39snMld6SrXxJKmcpsiJkjRTkC9F5_M")


ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def test_worked_example_of_spec_11_8_by_its_recipe_by_auth_py_and_in_the_text():
    # the recipe of SPEC 11.8 with the standard library alone, as a stranger would write it
    p = _b64(EXAMPLE_PAYLOAD)
    assert p + "." + _b64(hmac.new(EXAMPLE_SECRET, p.encode(), hashlib.sha256).digest()) == EXAMPLE_TOKEN
    # gsd-token's minting writes the same payload bytes
    assert mint(EXAMPLE_SECRET, world="lobby", watch_only=True, exp=1893456000) == EXAMPLE_TOKEN
    g = verify(EXAMPLE_SECRET, EXAMPLE_TOKEN, now=1893455999)
    assert (g.world, g.watch_only, g.exp) == ("lobby", True, 1893456000)
    # the spec's text carries the same secret, payload and token
    spec = (ROOT / "SPEC.md").read_text()
    sec = spec[spec.index("### 11.8"):]
    assert EXAMPLE_SECRET.decode() in sec and EXAMPLE_PAYLOAD.decode() in sec and EXAMPLE_TOKEN in sec
    assert "f7436838f55ecc8684dfdb2732577a4ab5f124a99ca6c889923453902f45e7f3" in sec   # the HMAC in hex
    assert hmac.new(EXAMPLE_SECRET, p.encode(), hashlib.sha256).hexdigest() in sec


def test_token_checks_refuse_malformed_forged_and_expired_tokens_with_4002():
    now = 1_800_000_000
    good = mint(SECRET, world="w", exp=now + 60)
    assert verify(SECRET, good, now=now).world == "w"
    p, s = good.split(".")
    forged_payload = _b64(json.dumps({"v": 1, "world": "other", "watch_only": False, "exp": now + 60}).encode())
    cases = {
        "missing": (None, "required"), "empty": ("", "required"),
        "no dot": (p + s, "malformed"), "two dots": (good + ".x", "malformed"),
        "padding": (good + "=", "malformed"), "not base64": (p + ".!!", "malformed"),
        "altered signature": (p + "." + ("A" if s[0] != "A" else "B") + s[1:], "signature"),
        "non-canonical signature": (p + "." + s[:-1] + ALPHABET[ALPHABET.index(s[-1]) + 1], "malformed"),
        "other secret": (mint(b"another-secret-0123456789", world="w", exp=now + 60), "signature"),
        "payload swapped": (forged_payload + "." + s, "signature"),
        "expired": (mint(SECRET, world="w", exp=now), "expired"),
        "too long": ("a" * 5000 + "." + s, "malformed"),
    }
    for name, (tok, why) in cases.items():
        with pytest.raises(TokenError) as e:
            verify(SECRET, tok, now=now)
        assert e.value.code == 4002 and why in e.value.reason, (name, e.value.reason)
    # a signed payload that breaks the payload rules is refused too
    for bad in ({"v": 2, "world": None, "watch_only": False, "exp": now + 60},
                {"v": 1, "world": "no spaces", "watch_only": False, "exp": now + 60},
                {"v": 1, "world": None, "watch_only": 1, "exp": now + 60},
                {"v": 1, "world": None, "watch_only": False, "exp": "soon"},
                ["not", "an", "object"]):
        q = _b64(json.dumps(bad).encode())
        tok = q + "." + _b64(hmac.new(SECRET, q.encode(), hashlib.sha256).digest())
        with pytest.raises(TokenError) as e:
            verify(SECRET, tok, now=now)
        assert e.value.code == 4002 and "payload" in e.value.reason, bad
    # members the server does not know are ignored (a minter may add its own)
    q = _b64(json.dumps({"v": 1, "world": None, "watch_only": False, "exp": now + 60, "sub": "ann"}).encode())
    assert verify(SECRET, q + "." + _b64(hmac.new(SECRET, q.encode(), hashlib.sha256).digest()), now=now).world is None


def test_secret_from_file_or_environment():
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "s"
        f.write_bytes(SECRET + b"\r\n")
        assert read_secret(f) == SECRET                                   # one line end dropped
        f.write_bytes(SECRET + b"\n\n")
        assert read_secret(f) == SECRET + b"\n"
        f.write_bytes(b"short\n")
        with pytest.raises(ValueError):
            read_secret(f)
    assert read_secret(None, env={"GSD_AUTH_SECRET": SECRET.decode()}) == SECRET
    assert read_secret(None, env={}) is None


async def _refusal(url: str, headers=None) -> tuple:
    """Connect, send a hello; (close code, reason) of a session closed before any stream header."""
    async with aiohttp.ClientSession() as http:
        ws = await raw_ws(url, http, headers=headers)
        try:
            await ws.send_str(json.dumps(HELLO))
        except ConnectionError:
            pass
        msg = await asyncio.wait_for(ws.receive(), 10)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), msg.type   # no header
        return ws.close_code, msg.extra


def test_server_refuses_missing_expired_forged_and_wrong_world_tokens_at_the_upgrade():
    async def go():
        s = Server(config(auth_secret=SECRET))
        port = await s.start()
        url = f"ws://127.0.0.1:{port}/ws"
        try:
            lobby = mint(SECRET, world="lobby", ttl=600)
            p, sig = lobby.split(".")
            cases = [
                (url + "?world=lobby", None, 4002, "token required"),
                (url + "?world=lobby&token=" + mint(SECRET, world="lobby", exp=int(time.time()) - 1), None, 4002,
                 "expired"),
                (url + "?world=lobby&token=" + mint(b"not-the-server-secret-000", world="lobby", ttl=600), None,
                 4002, "signature"),
                (url + "?world=lobby&token=" + p + "." + sig[::-1], None, 4002, ""),
                (url + "?world=lobby", {"Authorization": "Basic dXNlcjpwYXNz"}, 4002, "Bearer"),
                (url + "?world=kitchen&token=" + lobby, None, 4003, "grants world 'lobby'"),
                (url + "?token=" + lobby, None, 4003, "not a private world"),                 # no ?world=
                (url + "?world=lobby&token=" + mint(SECRET, world=None, ttl=600), None, 4003, "private world only"),
            ]
            for u, headers, code, why in cases:
                got = await _refusal(u, headers)
                assert got[0] == code and why in got[1], (u, headers, got)
            assert s.metrics.refused.labels("token")._value.get() == len(cases)
            assert not s.sessions and not s.shared            # no session, no world was started
            # the right token, by query or by header, gets a stream
            async with Client(url + "?world=lobby&token=" + lobby) as a:
                assert (await a.next_frame()).keyframe
                async with Client(url + "?world=lobby", token=lobby) as b:
                    assert (await b.next_frame()).keyframe
                    await b.step(Move(0.3))
            async with Client(url, token=mint(SECRET, world=None, ttl=600)) as c:     # a private world
                assert (await c.next_frame()).keyframe
            with pytest.raises(NotAuthorised) as e:           # the client names the refusal
                await Client(url + "?world=kitchen", token=lobby).connect()
            assert e.value.code == 4003
        finally:
            await s.stop()
    run(go())


def test_watch_only_token_watches_and_an_action_closes_it_with_4003():
    async def go():
        s = Server(config(auth_secret=SECRET))
        port = await s.start()
        url = f"ws://127.0.0.1:{port}/ws?world=hall"
        try:
            async with Client(url, token=mint(SECRET, world="hall", ttl=600)) as actor, \
                    Client(url, token=mint(SECRET, world="hall", watch_only=True, ttl=600)) as watcher:
                await actor.next_frame()
                await watcher.next_frame()
                await actor.step(Move(0.3))
                while watcher.seq < actor.seq:                # the watcher sees the actor's steps
                    await watcher.next_frame()
                assert watcher.digest == actor.digest
                await watcher.act(Move(0.3))
                with pytest.raises(ProtocolClosed) as e:
                    while True:
                        await watcher.next_frame()
                assert e.value.code == 4003 and "watch-only" in e.value.reason
                await actor.step(Move(0.3))                   # the other session goes on
                assert not actor.stats.errors
        finally:
            await s.stop()
    run(go())


def test_a_token_is_refused_once_expired_and_its_session_closes_at_expiry():
    async def go():
        s = Server(config(auth_secret=SECRET))
        port = await s.start()
        url = f"ws://127.0.0.1:{port}/ws"
        try:
            exp = int(time.time()) + 3
            tok = mint(SECRET, world=None, exp=exp)
            c = Client(url, token=tok)
            await c.connect()
            await c.next_frame()
            with pytest.raises(ProtocolClosed) as e:           # a running session ends when its token does
                while True:
                    await c.step(Move(0.1), timeout=10)
            assert e.value.code == 4002 and "expired" in e.value.reason and time.time() >= exp
            await c.close()
            assert await _refusal(url + "?token=" + tok) == (4002, "token expired")   # replayed: refused
            await wait_until(lambda: not s.sessions)
        finally:
            await s.stop()
    run(go())


def test_without_a_secret_the_server_is_local_only_and_says_so(caplog):
    async def go():
        with pytest.raises(ValueError, match="without session tokens"):
            await Server(config(host="0.0.0.0")).start()
        with caplog.at_level(logging.INFO, logger="gsd.server"):
            s = Server(config())
            await s.start()
            await s.stop()
            t = Server(config(auth_secret=SECRET, host="127.0.0.1"))
            await t.start()
            await t.stop()
        lines = [r.fields for r in caplog.records if r.getMessage() == "server.auth"]
        assert len(lines) == 2, lines                         # one line per start
        assert lines[0]["auth"] is False and "local-only on 127.0.0.1" in lines[0]["note"]
        assert lines[1]["auth"] is True and "need a token" in lines[1]["note"]
    run(go())
    with pytest.raises(SystemExit) as e:
        parse_args(["--host", "0.0.0.0"])
    assert e.value.code == 2


def test_gsd_token_cli_mints_the_spec_example_and_gsd_watch_uses_a_token(tmp_path):
    sf = tmp_path / "secret"
    sf.write_bytes(EXAMPLE_SECRET + b"\n")
    out = subprocess.run([sys.executable, "-m", "reference_generator.auth", "--secret-file", str(sf), "--world",
                          "lobby", "--watch-only", "--exp", "1893456000"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == EXAMPLE_TOKEN
    fresh = subprocess.run([sys.executable, "-m", "reference_generator.auth", "--secret-file", str(sf), "--ttl", "60"],
                           capture_output=True, text=True, check=True).stdout.strip()
    g = verify(EXAMPLE_SECRET, fresh)
    assert g.world is None and not g.watch_only and 55 <= g.exp - time.time() <= 61
    dec = subprocess.run([sys.executable, "-m", "reference_generator.auth", "--secret-file", str(sf), "--decode",
                          fresh[:-2] + ("AA" if not fresh.endswith("AA") else "BB")], capture_output=True, text=True)
    assert dec.returncode == 1 and "4002" in dec.stderr

    async def go():
        s = Server(config(auth_secret=SECRET, tick_hz=25))     # a watcher's frames come from the clock
        port = await s.start()
        url = f"ws://127.0.0.1:{port}/ws"
        try:
            (tmp_path / "tok").write_text(mint(SECRET, world="lobby", watch_only=True, ttl=600) + "\n")
            base = [sys.executable, "-m", "reference_generator.watch", url, "--world", "lobby", "--json",
                    "--timeout", "20"]
            runs = [base + ["--token-file", str(tmp_path / "tok"), "--watch-only", "--steps", "3"],
                    base + ["--steps", "3"],                                       # no token
                    base + ["--token-file", str(tmp_path / "tok"), "--steps", "3"]]  # watch-only, but acts
            procs = []
            for argv in runs:
                p = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                         stderr=asyncio.subprocess.PIPE, cwd=ROOT)
                procs.append((p, *(await p.communicate())))
            (ok, out_ok, _), (none, _, err_none), (acts, _, err_acts) = procs
            assert ok.returncode == 0 and json.loads(out_ok)["frames"] == 3, procs[0][2][-2000:]
            assert none.returncode == 4 and b"4002" in err_none
            assert acts.returncode == 1 and b"4003" in err_acts
        finally:
            await s.stop()
    run(go(), 180)
