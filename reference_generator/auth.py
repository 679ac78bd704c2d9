"""Session tokens of SPEC.md 11.8, and `gsd-token`, which mints them.

    gsd-token --secret-file secret.txt --world lobby --watch-only --ttl 3600

A token is ``base64url(payload) "." base64url(HMAC-SHA256(secret, base64url(payload)))``
(base64url without padding, RFC 4648 section 5): the payload is a UTF-8 JSON object

    {"v": 1, "world": "lobby", "watch_only": true, "exp": 1893456000}

``world`` the shared world it grants (``null``: a private world of its own), ``watch_only``
whether its session may send actions, ``exp`` the Unix time (seconds) it expires; an optional
``"observe": true`` also grants the server's HTTP endpoints that show or steer it (``/metrics``,
``/sessions``, ``/admission``: ``gsd-token --observe``), which no other token opens. ``gsd-serve
--auth-secret-file F`` (or the environment variable ``GSD_AUTH_SECRET``) checks tokens with the
same secret; a client passes its token as ``Authorization: Bearer TOKEN`` or ``?token=TOKEN``.

Standard library only (hmac, hashlib): minting needs neither torch nor the server.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

VERSION = 1
SECRET_ENV = "GSD_AUTH_SECRET"
MIN_SECRET_BYTES = 16
MAX_TOKEN_CHARS = 4096
WORLD_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_B64URL = re.compile(r"[A-Za-z0-9_-]+")

# WebSocket close codes of SPEC.md 11.7 for refused tokens
UNAUTHORISED = 4002     # no token, or one that is malformed, forged or expired
FORBIDDEN = 4003        # a valid token that does not grant this: another world, or actions when watch-only


class TokenError(Exception):
    """A token refused; ``code`` is the close code (4002 or 4003), ``str()`` the reason."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason


@dataclass(frozen=True)
class Grant:
    """What a verified token allows."""
    world: str | None        # the shared world it grants; None: a private world
    watch_only: bool
    exp: int                 # Unix seconds
    observe: bool = False    # also the server's observation endpoints (/metrics, /sessions, /admission)

    def check_world(self, world: str | None) -> None:
        """TokenError(4003) unless this grant covers joining ``world`` (None: a private world)."""
        if world != self.world:
            what = f"world {self.world!r}" if self.world is not None else "a private world only"
            asked = f"world {world!r}" if world is not None else "a private world"
            raise TokenError(FORBIDDEN, f"token grants {what}, not {asked}")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64url(data) != text:                 # unused low bits set: not the one encoding of these bytes
        raise ValueError("not canonical base64url")
    return data


def _sign(secret: bytes, payload_b64: str) -> bytes:
    return hmac.new(secret, payload_b64.encode("ascii"), hashlib.sha256).digest()


def payload_json(world: str | None, watch_only: bool, exp: int, observe: bool = False) -> bytes:
    """The payload as gsd-token writes it: compact JSON, members in this order, ``observe`` only
    when true (any JSON that carries the same members verifies as well: the signature covers the
    bytes sent)."""
    m = {"v": VERSION, "world": world, "watch_only": bool(watch_only), "exp": int(exp)}
    if observe:
        m["observe"] = True
    return json.dumps(m, separators=(",", ":")).encode("utf-8")


def mint(secret: bytes, *, world: str | None, watch_only: bool = False, exp: int | None = None,
         ttl: float = 3600.0, now: float | None = None, observe: bool = False) -> str:
    """A token for ``world`` (None: a private world), expiring at ``exp`` or ``ttl`` seconds from
    now; ``observe``: it also opens the server's observation endpoints (SPEC.md 11.8)."""
    check_secret(secret)
    if world is not None and not WORLD_NAME.fullmatch(world):
        raise ValueError("world names are 1-64 letters, digits, - and _")
    if exp is None:
        exp = int((time.time() if now is None else now) + ttl)
    if not 0 < exp < 2 ** 53:
        raise ValueError("exp must be in (0, 2^53)")
    p = b64url(payload_json(world, watch_only, exp, observe))
    return p + "." + b64url(_sign(secret, p))


def verify(secret: bytes, token: str | None, now: float | None = None) -> Grant:
    """The grant of a token, checked in the order of SPEC.md 11.8; TokenError(4002) if there is
    none, it is malformed, its signature is wrong or it has expired."""
    if not token:
        raise TokenError(UNAUTHORISED, "token required")
    if len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
        raise TokenError(UNAUTHORISED, "malformed token")
    p, sig = token.split(".")
    try:
        given = _unb64url(sig)
        _unb64url(p)
    except (ValueError, binascii.Error):
        raise TokenError(UNAUTHORISED, "malformed token") from None
    if not hmac.compare_digest(given, _sign(secret, p)):      # constant time
        raise TokenError(UNAUTHORISED, "bad token signature")
    try:
        m = json.loads(_unb64url(p).decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise TokenError(UNAUTHORISED, "malformed token payload") from None
    if not isinstance(m, dict) or m.get("v") != VERSION or isinstance(m.get("v"), bool):
        raise TokenError(UNAUTHORISED, "token payload: v must be 1")
    exp, world, watch = m.get("exp"), m.get("world"), m.get("watch_only")
    if isinstance(exp, bool) or not isinstance(exp, int) or not 0 < exp < 2 ** 53:
        raise TokenError(UNAUTHORISED, "token payload: exp must be an integer in (0, 2^53)")
    if world is not None and not (isinstance(world, str) and WORLD_NAME.fullmatch(world)):
        raise TokenError(UNAUTHORISED, "token payload: world must be a world name or null")
    if not isinstance(watch, bool):
        raise TokenError(UNAUTHORISED, "token payload: watch_only must be true or false")
    observe = m.get("observe", False)
    if not isinstance(observe, bool):
        raise TokenError(UNAUTHORISED, "token payload: observe must be true or false")
    if (time.time() if now is None else now) >= exp:
        raise TokenError(UNAUTHORISED, "token expired")
    return Grant(world, watch, exp, observe)


def check_secret(secret: bytes) -> bytes:
    if not isinstance(secret, bytes) or len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"the auth secret must be at least {MIN_SECRET_BYTES} bytes")
    return secret


def read_secret(path: str | os.PathLike | None = None, env: dict | None = None) -> bytes | None:
    """The secret: the bytes of the file at ``path`` less one trailing line end (``\\n`` or
    ``\\r\\n``), else the UTF-8 bytes of ``$GSD_AUTH_SECRET``, else None (no auth)."""
    if path is not None:
        data = Path(path).read_bytes()
        data = data[:-2] if data.endswith(b"\r\n") else data[:-1] if data.endswith(b"\n") else data
        return check_secret(data)
    value = (os.environ if env is None else env).get(SECRET_ENV)
    return check_secret(value.encode("utf-8")) if value else None


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header (scheme case-insensitive), or None."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="gsd-token", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Mint a session token for gsd-serve (SPEC.md 11.8) and print it. The secret is the one\n"
                    "gsd-serve was given (--auth-secret-file, or $GSD_AUTH_SECRET). Pass the token as\n"
                    "ws://HOST/ws?token=TOKEN, Authorization: Bearer TOKEN, or gsd-watch --token TOKEN.")
    ap.add_argument("--secret-file", metavar="FILE",
                    help=f"file holding the server's secret (default: ${SECRET_ENV})")
    ap.add_argument("--world", metavar="NAME",
                    help="the shared world the token grants, ?world=NAME (default: a private world only)")
    ap.add_argument("--watch-only", action="store_true",
                    help="the session may only watch: an action closes it with 4003 (default: it may act)")
    ap.add_argument("--observe", action="store_true",
                    help="the token also opens the server's /metrics, /sessions and /admission (with a secret "
                         "they need such a token; default: session only)")
    ap.add_argument("--ttl", type=float, default=3600.0, metavar="S",
                    help="seconds until the token expires (default: %(default)s)")
    ap.add_argument("--exp", type=int, metavar="UNIX", help="expiry as Unix seconds, instead of --ttl (default: now + --ttl)")
    ap.add_argument("--decode", metavar="TOKEN", help="verify TOKEN with the secret and print its grant instead of minting (default: mint)")
    a = ap.parse_args(argv)
    try:
        secret = read_secret(a.secret_file)
    except (OSError, ValueError) as e:
        print(f"gsd-token: {e}", file=sys.stderr)
        return 2
    if secret is None:
        ap.error(f"no secret: give --secret-file or set ${SECRET_ENV}")
    if a.decode:
        try:
            g = verify(secret, a.decode)
        except TokenError as e:
            print(f"gsd-token: refused ({e.code}): {e.reason}", file=sys.stderr)
            return 1
        print(json.dumps({"world": g.world, "watch_only": g.watch_only, "exp": g.exp, "observe": g.observe}))
        return 0
    if a.exp is None and a.ttl <= 0:
        ap.error("--ttl must be > 0")
    try:
        print(mint(secret, world=a.world, watch_only=a.watch_only, exp=a.exp, ttl=a.ttl, observe=a.observe))
    except ValueError as e:
        ap.error(str(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
