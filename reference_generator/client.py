"""A headless gsd/1 client: connect, send actions, apply frames to a local state, verify digests.

    async with Client("ws://127.0.0.1:8765/ws") as c:
        await c.act(Move(0.3))
        f = await c.next_frame()            # decoded, applied, digest-checked and acknowledged
        print(f.seq, c.digest, f.latency_ms)

Used by the tests, by ``gsd-watch`` and by anyone who needs a non-browser client (a recorder, a
robot simulator). The client follows SPEC.md 11: it acknowledges every applied frame with its
digest, and on a frame error keeps its state, sends one ``resync`` and drops non-keyframes until
a keyframe arrives. ``run_script`` adds reconnection (a restarted server gets a new hello).

``Client(url, progressive=True, budget=N)`` joins progressively (SPEC.md 11.9): stand-ins first,
refined while the world steps, never more than ``N`` Gaussians held; ``detail(budget=, view=)``
changes the budget or names the client's eye. Every frame is still applied and digest-checked.

A server that checks session tokens (SPEC.md 11.8) gets one from ``Client(url, token=...)``, sent
as ``Authorization: Bearer TOKEN``; a refused token raises ``NotAuthorised`` (close 4002 or 4003).

A server that is too busy for a new session closes it at once with 1013 and ``retry-after=N``
in the reason (SPEC.md 11.7): ``connect`` raises ``ServerBusy`` with that delay, and
``run_script`` waits it out (plus up to half again, at random) before trying again.
"""
from __future__ import annotations

import asyncio
import json
import random
import re
import time
from dataclasses import dataclass, field

import aiohttp

from codec import Decoder, GsdError, StreamWriter
from codec.limits import SPEC_LIMITS, Limits
from codec.wire import FORMATS, frame_is_keyframe

from .actions import Action, to_json
from .flow import wait_for


@dataclass
class FrameEvent:
    seq: int
    keyframe: bool
    nbytes: int
    digest: str
    steps: int                      # world steps this frame covers
    latency_ms: list                # action-to-delta latency of each of our actions it answers
    receive_ms: float               # decode + apply + digest check time
    detail: dict | None = None      # progressive sessions: the server's held / coarse / budget (SPEC.md 11.9)


@dataclass
class Stats:
    frames: int = 0
    keyframes: int = 0
    bytes: int = 0
    resyncs: int = 0
    errors: dict = field(default_factory=dict)      # error code name -> count
    latencies_ms: list = field(default_factory=list)
    reconnects: int = 0
    refusals: int = 0               # connections the server refused as busy (1013)
    waited_s: list = field(default_factory=list)     # delay honoured after each refusal


class ProtocolClosed(Exception):
    """The server closed the session (code and reason as it sent them)."""

    def __init__(self, code, reason: str):
        super().__init__(f"closed by server: {code} {reason}")
        self.code, self.reason = code, reason


TRY_AGAIN_LATER = 1013
UNAUTHORISED, FORBIDDEN = 4002, 4003     # SPEC.md 11.8: no valid token; a token that does not grant this


class NotAuthorised(ProtocolClosed):
    """The server refused the token (4002: none, malformed, forged or expired; 4003: it does not
    grant this world, or a watch-only session acted). Retrying with the same token does not help."""
DEFAULT_RETRY_AFTER = 10.0          # SPEC.md 11.7: a 1013 without a readable delay


class ServerBusy(ProtocolClosed):
    """The server refused the session for load (1013); ``retry_after``: seconds to wait first."""

    def __init__(self, code, reason: str):
        super().__init__(code, reason)
        m = re.match(r"retry-after=(\d{1,4})(?:\s|$)", reason)
        self.retry_after = float(min(int(m.group(1)), 3600)) if m and int(m.group(1)) >= 1 else DEFAULT_RETRY_AFTER
        self.cause = reason[m.end():].strip() if m else reason

    def __str__(self) -> str:
        return f"server busy ({self.code}): {self.cause or 'no reason given'}; retry after {self.retry_after:g} s"


class Client:
    def __init__(self, url: str, *, max_sh_degree: int = 3, max_gaussians: int = 2_000_000,
                 max_bytes_per_second: int = 250_000_000, max_frame_bytes: int = 64 << 20,
                 ack: bool = True, origin: str | None = None, record: str | None = None, token: str | None = None,
                 progressive: bool = False, budget: int | None = None):
        self.url = url
        self.token = token                   # session token (SPEC.md 11.8), sent as Authorization: Bearer
        self.hello = {"type": "hello", "protocol": "gsd/1", "versions": list(FORMATS), "max_sh_degree": max_sh_degree,
                      "budgets": {"max_gaussians": max_gaussians, "max_bytes_per_second": max_bytes_per_second,
                                  "max_frame_bytes": max_frame_bytes}}
        if progressive:                      # join coarse first, refined after (SPEC.md 11.9)
            self.hello["progressive"] = {} if budget is None else {"budget": budget}
        self.limits = Limits(max_gaussians=min(max_gaussians, SPEC_LIMITS.max_gaussians),
                             max_frame_bytes=min(max_frame_bytes, SPEC_LIMITS.max_frame_bytes))
        self.ack = ack
        self.origin = origin
        self.record = record
        self.stats = Stats()
        self.decoder: Decoder | None = None
        self.drop_next = 0                   # test hook: discard this many frames unread (a lossy link)
        self._http: aiohttp.ClientSession | None = None
        self._ws = None
        self._writer = None
        self._next_id = 1
        self._sent: dict = {}                # action id -> send time
        self._info: dict | None = None
        self._resyncing = False
        self.ignored: dict = {}              # action id -> why the server will never run it (11.4)
        self.session: dict = {}              # the server's session message (SPEC.md 11.3), if it sent one
        self._last_ack: str | None = None    # the last ack sent: repeated as a keep-alive (11.6)
        self._last_sent = time.monotonic()

    # -- connection ---------------------------------------------------------------------------
    async def __aenter__(self) -> "Client":
        await self.connect()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the WebSocket, send the hello, read the stream header. ``ServerBusy`` when the
        server refuses the session for load (SPEC.md 11.7)."""
        await self._drop_connection()
        self.session, self._last_ack = {}, None
        self._http = aiohttp.ClientSession()
        headers = {}
        if self.origin:
            headers["Origin"] = self.origin
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self._ws = await self._http.ws_connect(self.url, max_msg_size=self.limits.max_frame_bytes + 1024,
                                               headers=headers, autoping=True)
        try:
            await self._ws.send_str(json.dumps(self.hello))
        except ConnectionError:
            pass                                             # closed first (refused): read why below
        try:
            data = await self._receive_binary()
        except ProtocolClosed as e:
            if e.code == TRY_AGAIN_LATER:
                self.stats.refusals += 1
                await self._drop_connection()
                raise ServerBusy(e.code, e.reason) from None
            if e.code in (UNAUTHORISED, FORBIDDEN):
                await self._drop_connection()
                raise NotAuthorised(e.code, e.reason) from None
            raise
        self.decoder = Decoder(limits=self.limits)
        self.decoder.set_header(data, message=True)
        self._last_ack = None                                # acks of an earlier connection mean nothing here
        self._resyncing = False
        if self.record and self._writer is None and not self.stats.reconnects:
            self._writer = StreamWriter(self.record, data)   # the first connection's stream only
        elif self._writer is not None:
            self._writer.close()                             # a new stream restarts seq: stop recording
            self._writer = None
            self.record = None

    async def close(self) -> None:
        await self._drop_connection()
        if self._writer:
            self._writer.close()
            self._writer = None

    async def _drop_connection(self) -> None:
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()
        if self._http is not None:
            await self._http.close()
        self._ws = self._http = None

    @property
    def digest(self) -> str:
        return str(self.decoder.state.digest())

    @property
    def seq(self) -> int:
        return self.decoder.state.seq

    # -- messages -----------------------------------------------------------------------------
    async def act(self, action: Action) -> int:
        """Send an action; returns its id (the server echoes it with the frame that answers it)."""
        aid = self._next_id
        self._next_id += 1
        msg = to_json(action, self.seq)
        msg["id"] = aid
        self._sent[aid] = time.perf_counter()
        await self._send(json.dumps(msg))
        return aid

    async def step(self, action: Action, timeout: float = 30.0) -> list:
        """Send an action and receive frames until the one that answers it; returns those frames."""
        aid = await self.act(action)
        got = []
        deadline = time.monotonic() + timeout
        while True:
            f = await self.next_frame(max(0.01, deadline - time.monotonic()))
            got.append(f)
            if aid not in self._sent:               # its latency was taken: this frame answers it
                return got

    async def send_json(self, msg) -> None:
        await self._send(msg if isinstance(msg, str) else json.dumps(msg))

    async def detail(self, budget: int | None = None, view: dict | None = None) -> None:
        """A progressive session's new detail budget and/or eye ({"position", "yaw", "pitch"}, optionally "fov"
        and "aspect" of the client's picture), SPEC.md 11.9."""
        msg = {"type": "detail"}
        if budget is not None:
            msg["budget"] = budget
        if view is not None:
            msg["view"] = view
        await self._send(json.dumps(msg))

    async def resync(self, reason: str = "CLIENT") -> None:
        self.stats.resyncs += 1
        self._resyncing = True
        await self._send(json.dumps({"type": "resync", "reason": reason}))

    async def _send(self, text: str) -> None:
        await self._ws.send_str(text)
        self._last_sent = time.monotonic()

    async def _receive_binary(self) -> bytes:
        while True:
            keepalive = float(self.session.get("keepalive_s") or 30.0)
            left = self._last_sent + keepalive - time.monotonic()
            if left <= 0 and self._last_ack is not None:
                await self._send(self._last_ack)             # keep-alive: the last ack again (11.6)
                continue
            try:
                msg = await self._ws.receive(timeout=max(0.05, left))
            except asyncio.TimeoutError:
                continue
            if msg.type == aiohttp.WSMsgType.BINARY:
                return msg.data
            if msg.type == aiohttp.WSMsgType.TEXT:
                try:
                    m = json.loads(msg.data)
                except json.JSONDecodeError:
                    continue
                if isinstance(m, dict) and m.get("type") == "frame":
                    self._info = m
                elif isinstance(m, dict) and m.get("type") == "session":
                    self.session = m
                elif isinstance(m, dict) and m.get("type") == "ignored":
                    self.ignored[m.get("id")] = m.get("reason")
                    self._sent.pop(m.get("id"), None)
                continue                                     # unknown text messages are ignored
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                # the server's code from its close frame: the socket's own reads 1006 when our reply
                # could not be written, which would hide why the server closed
                code = msg.data if msg.type == aiohttp.WSMsgType.CLOSE else self._ws.close_code
                raise ProtocolClosed(code, msg.extra or "")
            if msg.type == aiohttp.WSMsgType.ERROR:
                raise ConnectionError(f"WebSocket error: {self._ws.exception()}")

    async def next_frame(self, timeout: float | None = 30.0) -> FrameEvent:
        """Receive frames until one applies; returns it (errors trigger a resync, as SPEC.md 11.4 says).

        Only the wait for bytes is subject to ``timeout``: a frame that has arrived is always
        applied and acknowledged, never abandoned half way (that would leave the server
        waiting for an ack that never comes)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            data = await wait_for(self._receive_binary(), left)
            info, self._info = self._info, None
            if self.drop_next:
                self.drop_next -= 1
                continue
            ev = await asyncio.shield(self._apply(data, info))
            if ev is not None:
                return ev

    async def _apply(self, data: bytes, info: dict | None) -> FrameEvent | None:
        t0 = time.perf_counter()
        if self._resyncing and not frame_is_keyframe(data, self.limits):
            return None                                       # waiting for the keyframe (11.4)
        try:
            d, _ = self.decoder.read_frame(data, message=True)   # one record per message (SPEC 11.3)
        except GsdError as e:
            self.stats.errors[e.code.name] = self.stats.errors.get(e.code.name, 0) + 1
            # the first failure asks for a keyframe; so does a failed keyframe awaited after a
            # resync (else the client would wait for ever); other frames while resyncing do not
            await self.resync(e.code.name)
            return None
        t1 = time.perf_counter()
        self._resyncing = False
        if self._writer:
            self._writer.write(data)
        lat = []
        for aid in (info or {}).get("actions", []):
            t = self._sent.pop(aid, None)
            if t is not None:
                lat.append((t1 - t) * 1e3)
        s = self.stats
        s.frames += 1
        s.keyframes += d.keyframe
        s.bytes += len(data)
        s.latencies_ms += lat
        digest = str(self.decoder.state.digest())
        if self.ack:
            self._last_ack = json.dumps({"type": "ack", "seq": d.seq, "digest": digest})
            await self._send(self._last_ack)
        return FrameEvent(d.seq, d.keyframe, len(data), digest, (info or {}).get("steps", 1), lat, (t1 - t0) * 1e3,
                          (info or {}).get("detail"))


async def run_script(client: Client, actions: list, *, lockstep: bool = True, rate: float = 0.0,
                     reconnects: int = 0, on_frame=None, timeout: float = 30.0, on_busy=None) -> Stats:
    """Play ``actions`` against the server; reconnect (fresh hello, header, keyframe) up to
    ``reconnects`` times when the connection drops or the server refuses it as busy (1013: after
    waiting its retry-after delay; ``on_busy(ServerBusy, delay)`` is told first). ``lockstep``:
    wait for each action's frame before the next; else send at ``rate`` actions/s and take frames
    as they come."""
    i, attempts = 0, 0

    async def honour(e: ServerBusy) -> None:
        delay = e.retry_after * (1.0 + 0.5 * random.random())    # jitter: refused clients spread out
        client.stats.waited_s.append(delay)
        if on_busy:
            on_busy(e, delay)
        await asyncio.sleep(delay)

    async def open_session(first: bool) -> None:
        """Connect and take the keyframe. A refusal (1013) waits its delay and tries again, within
        ``reconnects``; after a drop, a server that cannot be reached is retried for ~10 s."""
        nonlocal attempts
        down = 0
        while True:
            try:
                await client.connect()
                break
            except ServerBusy as e:
                if attempts >= reconnects:
                    raise
                attempts += 1
                client.stats.reconnects += 1
                await honour(e)
            except (aiohttp.ClientError, ConnectionError, OSError):
                if first or down >= 50:
                    raise
                down += 1
                await asyncio.sleep(0.2)
        f = await client.next_frame(timeout)                   # the new stream's keyframe
        if on_frame:
            on_frame(f)

    if client.decoder is None:
        await open_session(first=True)
    while i < len(actions):
        try:
            if lockstep:
                for f in await client.step(actions[i], timeout):
                    if on_frame:
                        on_frame(f)
            else:
                await client.act(actions[i])
                t_next = time.monotonic() + (1.0 / rate if rate > 0 else 0.0)
                while True:
                    left = t_next - time.monotonic()
                    if left <= 0:
                        break
                    try:
                        f = await client.next_frame(left)
                    except asyncio.TimeoutError:
                        break
                    if on_frame:
                        on_frame(f)
            i += 1
        except (ProtocolClosed, ConnectionError, aiohttp.ClientError) as e:
            if isinstance(e, ProtocolClosed) and e.code not in (1001, 1006, TRY_AGAIN_LATER, None):
                raise                                          # the server refused us: not a network fault
            if attempts >= reconnects:
                raise
            attempts += 1
            client.stats.reconnects += 1
            if isinstance(e, ProtocolClosed) and e.code == TRY_AGAIN_LATER:
                await honour(e if isinstance(e, ServerBusy) else ServerBusy(e.code, e.reason))
            await open_session(first=False)
    return client.stats
