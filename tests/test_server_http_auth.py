"""The HTTP endpoints that show or steer gsd-serve need a token when it has a secret (SPEC.md 11.8).

``/metrics``, ``/sessions``, ``/admission`` (and any route but ``/ws``, ``/healthz`` and the static
viewer) answer 401 without a valid token (missing, forged, tampered, expired, malformed), 403 for a
valid token without the ``observe`` grant (a session token), and their content for a token with
``"observe": true``, by header or query. Without a secret they stay open, on loopback.
"""
from __future__ import annotations

import json
import time

import aiohttp
import pytest

pytest.importorskip("torch")

from reference_generator import auth
from reference_generator.auth import TokenError, b64url, mint, verify
from reference_generator.client import Client
from reference_generator.server import Server

from test_server import config, run

SECRET = b"test-secret-0123456789abcdef"
ENDPOINTS = ("/metrics", "/sessions", "/admission")


def _signed(payload: dict, secret: bytes = SECRET) -> str:
    """A token over any payload, signed as SPEC.md 11.8 says (to forge members gsd-token never writes)."""
    import hashlib
    import hmac
    p = b64url(json.dumps(payload).encode())
    return p + "." + b64url(hmac.new(secret, p.encode(), hashlib.sha256).digest())


def test_observe_member_is_an_optional_boolean_and_mint_writes_it_only_when_true():
    now = 1_800_000_000
    g = verify(SECRET, mint(SECRET, world=None, exp=now + 60, observe=True), now=now)
    assert g.observe and g.world is None and not g.watch_only
    assert not verify(SECRET, mint(SECRET, world="w", exp=now + 60), now=now).observe     # absent: false
    assert auth.payload_json("lobby", True, 1893456000) == \
        b'{"v":1,"world":"lobby","watch_only":true,"exp":1893456000}'                     # unchanged bytes
    assert auth.payload_json(None, False, 5, observe=True).endswith(b',"observe":true}')
    for bad in (1, "true", None, [True]):
        with pytest.raises(TokenError) as e:
            verify(SECRET, _signed({"v": 1, "world": None, "watch_only": False, "exp": now + 60, "observe": bad}),
                   now=now)
        assert e.value.code == 4002 and "observe" in e.value.reason


def test_gsd_token_observe_flag(tmp_path, capsys):
    sf = tmp_path / "secret"
    sf.write_bytes(SECRET + b"\n")
    assert auth.main(["--secret-file", str(sf), "--observe", "--ttl", "60"]) == 0
    tok = capsys.readouterr().out.strip()
    assert verify(SECRET, tok).observe
    assert auth.main(["--secret-file", str(sf), "--decode", tok]) == 0
    assert json.loads(capsys.readouterr().out)["observe"] is True


async def _get(http: aiohttp.ClientSession, url: str, headers=None):
    async with http.get(url, headers=headers or {}, allow_redirects=False) as r:
        return r.status, r.headers.get("WWW-Authenticate"), await r.text()


def test_observation_endpoints_need_an_observe_token_when_the_server_has_a_secret():
    async def go():
        s = Server(config(auth_secret=SECRET))
        port = await s.start()
        base = f"http://127.0.0.1:{port}"
        try:
            now = int(time.time())
            observe = mint(SECRET, world=None, ttl=600, observe=True)
            p, sig = observe.split(".")
            refused = {
                "missing": (None, None, 401, "token required"),
                "forged (another secret)": (mint(b"not-the-server-secret-000", world=None, ttl=600, observe=True),
                                            None, 401, "bad token signature"),
                "tampered payload": (b64url(json.dumps({"v": 1, "world": None, "watch_only": False,
                                                        "exp": now + 600, "observe": True}).encode()) + "." + sig,
                                     None, 401, "bad token signature"),
                "malformed": (p + sig, None, 401, "malformed token"),
                "expired": (mint(SECRET, world=None, exp=now - 1, observe=True), None, 401, "token expired"),
                "not Bearer": (None, {"Authorization": "Basic dXNlcjpwYXNz"}, 401, "Bearer"),
                "session token": (mint(SECRET, world=None, ttl=600), None, 403, "observe"),
                "watch-only session token": (mint(SECRET, world="lobby", watch_only=True, ttl=600), None, 403,
                                             "observe"),
            }
            async with aiohttp.ClientSession() as http:
                # a session runs, so that /sessions has something to show
                async with Client(f"ws://127.0.0.1:{port}/ws", token=mint(SECRET, world=None, ttl=600)) as c:
                    await c.next_frame()
                    for path in ENDPOINTS:
                        for name, (tok, headers, status, why) in refused.items():
                            for how in ("query", "header"):
                                if tok is None and how == "header":
                                    continue
                                url, h = base + path, dict(headers or {})
                                if tok is not None and how == "query":
                                    url += "?token=" + tok
                                elif tok is not None:
                                    h["Authorization"] = "Bearer " + tok
                                got, challenge, body = await _get(http, url, h)
                                assert got == status and why in body, (path, name, how, got, body)
                                assert challenge and challenge.startswith('Bearer realm="gsd-serve"'), challenge
                                if status == 403:
                                    assert 'error="insufficient_scope"' in challenge
                                assert "s1" not in body and "gsd_" not in body     # nothing of the server leaks
                        # an observe token opens it, by header or by query
                        for url, h in ((base + path, {"Authorization": "Bearer " + observe}),
                                       (base + path + "?token=" + observe, {})):
                            got, _, body = await _get(http, url, h)
                            assert got == 200, (path, got, body)
                            if path == "/sessions":
                                assert [x["session"] for x in json.loads(body)] == ["s1"]
                            if path == "/metrics":
                                assert "gsd_sessions" in body
                    # the health check and the static viewer stay open; any other route is closed
                    assert (await _get(http, base + "/healthz"))[0] == 200
                    assert (await _get(http, base + "/"))[0] == 302
                    if s.cfg.viewer_dir.is_dir():
                        assert (await _get(http, base + "/viewer/index.html"))[0] == 200
                    for path in ("/nope", "/metrics/", "/viewer/../sessions", "/viewer/%2e%2e/sessions",
                                 "//sessions", "/SESSIONS"):
                        got, _, body = await _get(http, base + path)
                        assert got in (401, 403, 404) and '"session"' not in body and "gsd_" not in body, (path, got)
                    assert (await _get(http, base + "/nope?token=" + observe))[0] == 404
                    # the session endpoint keeps its own checks: a session token, not an observe grant
                    assert not c.stats.errors
        finally:
            await s.stop()
    run(go())


def test_without_a_secret_the_observation_endpoints_stay_open_on_loopback():
    async def go():
        s = Server(config())
        port = await s.start()
        assert s.cfg.host == "127.0.0.1"
        try:
            async with aiohttp.ClientSession() as http:
                for path in ENDPOINTS + ("/healthz",):
                    got, challenge, _ = await _get(http, f"http://127.0.0.1:{port}{path}")
                    assert got == 200 and challenge is None, (path, got)
        finally:
            await s.stop()
    run(go())
