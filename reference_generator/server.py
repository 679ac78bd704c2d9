"""`gsd-serve`: the reference world streamed to browsers over WebSocket (SPEC.md 11, protocol gsd/1).

    gsd-serve                                   # http://127.0.0.1:8765/ : viewer + /ws + /metrics
    gsd-serve --port 9000 --target-live 50000 --tick-hz 25 --device cuda

Routes: ``/`` redirects to the viewer (``reference_viewer/``, static), ``/ws`` is the session
endpoint (``/ws?world=NAME`` joins a shared world, starting it if needed; without it every
connection gets a private world), ``/metrics`` is Prometheus text, ``/sessions`` a JSON list
(with the admission state in its ``GSD-Admission`` header), ``/admission`` the admission state as
JSON, ``/healthz`` says ok.

Who may join (SPEC.md 11.8): with a secret (``--auth-secret-file`` or ``$GSD_AUTH_SECRET``) every
connection needs a token (auth.py, minted by ``gsd-token``) that grants the world it asks for; a
refused token closes the WebSocket at once with 4002 or 4003, and a watch-only session that sends
an action is closed with 4003. With a secret, the HTTP endpoints that show or steer the server
(``/metrics``, ``/sessions``, ``/admission``, and any route but ``/ws``, ``/healthz`` and the static
viewer) need a token with ``"observe": true`` (``gsd-token --observe``), else HTTP 401 (no valid
token) or 403 (a session token). Without a secret the server listens on loopback only and these
are open.

Each session: hello -> stream header -> keyframe -> deltas (flow.py). A hello with ``progressive``
gets a keyframe of stand-ins, then refinement frames made for its own state, within its detail
budget (SPEC.md 11.9, progressive_join.py). The world runs on its own
thread (worldhost.py); the event loop only parses small JSON messages and writes frames.

Admission control (``Admission``): while the worlds fall behind -- the world lanes (worker
processes, or the GIL of thread-hosted worlds) busy over ``admit_max_busy`` of the time, actions
waiting over ``admit_max_wait_ms`` for their step, or the event loop late by over
``admit_max_loop_lag_ms`` -- a new connection is closed at once with 1013 and
``retry-after=N`` in its reason (SPEC.md 11.7); the sessions already running are not touched.
"""
from __future__ import annotations

import argparse
import asyncio
import ipaddress
import itertools
import json
import logging
import math
import re
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

import torch
from aiohttp import WSMsgType, web

from codec.digest import Digest
from codec.encoder import format_options
from codec.limits import SPEC_LIMITS
from codec.progressive import FIRST_BYTES, REFINE_BYTES
from codec.wire import FORMATS

from .actions import from_json
from .auth import FORBIDDEN, SECRET_ENV, UNAUTHORISED, WORLD_NAME, Grant, TokenError, bearer, read_secret, verify
from .flow import FrameTooLarge, Window, wait_for
from .metrics import JsonFormatter, Metrics, Rate, event, percentile
from .world import WorldConfig
from .worldhost import BusyMeter, ProcessPool, WorldGone, WorldHost

log = logging.getLogger("gsd.server")
VIEWER_DIR = Path(__file__).resolve().parent.parent / "reference_viewer"
PROTOCOL = "gsd/1"
MAX_JSON_INT = 2 ** 53

# WebSocket close codes (SPEC.md 11.7)
NORMAL, GOING_AWAY, POLICY, TOO_BIG, SERVER_ERROR, IDLE = 1000, 1001, 1008, 1009, 1011, 4000
TRY_AGAIN_LATER = 1013           # a new session refused for load; the reason starts "retry-after=N"
# HTTP routes open without a token when the server has a secret (SPEC.md 11.8): the session
# endpoint checks its own, the health check says only "ok", "/" redirects to the static viewer
# (``/viewer/...``, open as well: the same files for everyone, nothing of the server's state)
OPEN_ROUTES = frozenset({"/ws", "/healthz", "/", "/viewer"})


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    world: WorldConfig = field(default_factory=WorldConfig)
    seed: int = 0
    device: str = "cpu"
    tick_hz: float = 25.0            # idle steps per second without actions; 0: step on actions only
    window: int = 3                  # W: unacknowledged frames in flight per client (11.6)
    max_message_bytes: int = 65536   # client messages above this close the session with 1009
    actions_per_second: float = 120.0
    action_burst: int = 240
    resyncs_per_minute: float = 12.0  # keyframes a client may ask for (resync, or an ack with a wrong digest) ...
    resync_burst: int = 6             # ... in bursts of this many; beyond: close 1008 (a keyframe costs the world)
    hello_timeout: float = 10.0
    idle_timeout: float = 60.0       # no message from the client for this long: close 4000
    ack_timeout: float = 5.0         # frames out, no ack for this long: next frame is a keyframe
    send_timeout: float = 30.0       # one frame not written for this long: close 4001
    max_sessions: int = 256          # sessions beyond this are refused with 1013
    admission: bool = True           # refuse new sessions (1013) while the worlds fall behind
    admit_max_busy: float = 0.7      # world lanes busy over this share of the time ...
    admit_max_wait_ms: float = 20.0  # ... or actions waiting this long for their step (p90; the oldest queued: 4x)
    admit_max_loop_lag_ms: float = 25.0   # ... or the event loop this late (p90 of its 0.1 s ticks)
    admit_window: float = 2.0        # seconds the signals are measured over
    admit_min_sessions: int = 4      # so many sessions are admitted whatever the load (up to max_sessions)
    retry_after: int = 10            # seconds a refused client is told to wait (the reason's retry-after)
    workers: int = 0                 # world processes; 0: worlds on threads of the server process
    ray: str | None = None           # a Ray cluster (auto, ADDRESS, local): worlds as Ray actors (ray_host.py)
    ray_options: dict = field(default_factory=dict)   # RayPool keywords (world_cpus, checkpoint_dir, ...)
    allowed_origins: tuple = ()      # extra Origin values accepted besides same-origin
    auth_secret: bytes | None = None  # HMAC key of session tokens (SPEC.md 11.8); None: no tokens, loopback only
    progressive: bool = True         # offer progressive join to clients that ask (SPEC.md 11.9)
    first_bytes: int = FIRST_BYTES   # ... the stand-ins keyframe's target size
    refine_bytes: int = REFINE_BYTES  # ... refinement per frame, about
    viewer_dir: Path = VIEWER_DIR


# The reference world's actions as declared to clients in the ``session`` message (SPEC.md 11.4):
# per kind, its parameters with type, unit, range and default (actions.py enforces them; a test
# holds the two together). ``min``/``max`` are inclusive unless ``min_exclusive``.
def _num(unit: str, default: float, lo: float | None = None, hi: float | None = None, doc: str = "", **kw) -> dict:
    d = {"type": "number", "unit": unit, "default": default, **kw}
    if lo is not None:
        d["min"] = lo
    if hi is not None:
        d["max"] = hi
    if doc:
        d["doc"] = doc
    return d


ACTIONS = {
    "move": {"doc": "walk along the view heading (yaw only); negative walks back",
             "params": {"distance": _num("m", 0.25, -100, 100)}},
    "strafe": {"doc": "step sideways, positive to the right of the heading",
               "params": {"distance": _num("m", 0.25, -100, 100)}},
    "turn": {"doc": "change yaw, positive counter-clockwise seen from above (left); yaw wraps to [-180, 180)",
             "params": {"degrees": _num("deg", 10.0)}},
    "look": {"doc": "change pitch, positive up; pitch is clamped to [-89, 89]",
             "params": {"degrees": _num("deg", 5.0)}},
    "jump": {"doc": "take off vertically; ignored while airborne",
             "params": {"speed": _num("m/s", 4.0, 0, 50)}},
    "interact": {"doc": "toggle the nearest door whose centre is within reach of the eye",
                 "params": {"reach": _num("m", 4.0, 0, 50, min_exclusive=True)}},
    "pose": {"doc": "set the camera pose (continuous control; a far pose is a teleport)",
             "params": {"position": {"type": "number[3]", "unit": "m", "default": [0.0, 0.0, 1.7],
                                     "doc": "eye x, y, z (z up); z below eye height above the ground is raised to it"},
                        "yaw": _num("deg", 0.0, doc="wrapped to [-180, 180)"),
                        "pitch": _num("deg", 0.0, doc="clamped to [-89, 89]")}},
    "idle": {"doc": "time passes (foliage and water still move)", "params": {}},
}


class SessionClosed(Exception):
    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason


def _finite(v) -> bool:
    """A JSON number (not a boolean) that is finite."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _json_int(v, name: str, lo: int = 0) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v < MAX_JSON_INT:
        raise SessionClosed(POLICY, f"{name} must be an integer in [{lo}, 2^53)")
    return v


def parse_hello(text: str) -> dict:
    """Validate the client hello of SPEC.md 11.2; SessionClosed(1008) names what is wrong."""
    try:
        m = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise SessionClosed(POLICY, "hello is not JSON") from None
    if not isinstance(m, dict) or m.get("type") != "hello":
        raise SessionClosed(POLICY, "first message must be a hello")
    if m.get("protocol") != PROTOCOL:
        raise SessionClosed(POLICY, f"protocol must be {PROTOCOL!r}")
    versions = m.get("versions")
    if not isinstance(versions, list) or not all(isinstance(v, str) for v in versions):
        raise SessionClosed(POLICY, "versions must be a list of \"major.minor\" strings")
    if not any(v.split(".")[0] == "1" for v in versions):
        raise SessionClosed(POLICY, "no common format version (server speaks 1.x)")
    minor = max((int(v.split(".")[1]) for v in versions if re.fullmatch(r"1\.\d{1,4}", v)), default=0)
    sh = _json_int(m.get("max_sh_degree"), "max_sh_degree")
    if sh > 3:
        raise SessionClosed(POLICY, "max_sh_degree must be 0..3")
    b = m.get("budgets")
    if not isinstance(b, dict):
        raise SessionClosed(POLICY, "budgets must be an object")
    prog = m.get("progressive")
    if prog is not None:
        if not isinstance(prog, dict):
            raise SessionClosed(POLICY, "progressive must be an object")
        budget = prog.get("budget")
        prog = {"budget": None if budget is None else _json_int(budget, "progressive.budget", 1)}
    return {"progressive": prog, "max_sh_degree": sh, "minor": minor,
            "max_gaussians": _json_int(b.get("max_gaussians"), "budgets.max_gaussians", 1),
            "max_bytes_per_second": _json_int(b.get("max_bytes_per_second"), "budgets.max_bytes_per_second", 1024),
            "max_frame_bytes": _json_int(b.get("max_frame_bytes"), "budgets.max_frame_bytes", 1024)}


class TokenBucket:
    def __init__(self, rate: float, burst: int, clock=time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens, self.stamp = float(burst), clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class Admission:
    """Whether a new session may start (SPEC.md 11.7, close code 1013).

    Signals, over the last ``admit_window`` seconds:

    * ``busy``: the share of the time the world lanes spent in world calls (``BusyMeter``: worker
      processes, or the one GIL of thread-hosted worlds), averaged over the lanes. A session
      admitted within the window may not show its load yet: each adds the mean share of one
      session (the last one measured), weighted by the part of the window it has not been
      measured over (``projected``).
    * ``wait``: the p90 of how long actions waited for their world step beyond the step's compute
      (a lone stall, such as a world being created, moves only a few samples), and the age of
      the oldest action still queued in any world, against four times the threshold (a world
      that has stopped stepping yields no samples).
    * ``loop``: the p90 lateness of the event loop's 0.1 s ticks (every message and frame of
      every session passes through the loop).

    Any signal over its threshold refuses new sessions once ``admit_min_sessions`` are running;
    sessions already running are untouched.
    Once refusing, admission reopens only when every signal is below ``REOPEN`` of its threshold,
    so that it does not flap at the edge, letting in one session at each dip of the load.
    """

    TICK = 0.1
    REOPEN = 0.8

    def __init__(self, cfg: ServerConfig, meters: list, hosts, clock=time.monotonic):
        self.cfg, self.meters, self.hosts, self.clock = cfg, meters, hosts, clock
        self.samples: deque = deque()        # (time, busy seconds summed over the lanes)
        self.waits: deque = deque()          # (time, seconds an action waited for its step)
        self.lags: deque = deque()           # (time, event-loop lateness in seconds)
        self.admitted: deque = deque()       # times of recent admissions
        self.share = 0.0                     # the last measured lane share of one session
        self.refusing = False                # refused for load at the last look (hysteresis)
        self.sample()

    def _prune(self, q: deque, now: float) -> None:
        cut = now - self.cfg.admit_window
        while q and q[0][0] < cut:
            q.popleft()

    def sample(self, lag: float | None = None) -> None:
        now = self.clock()
        self.samples.append((now, sum(m.seconds() for m in self.meters)))
        while len(self.samples) > 2 and self.samples[1][0] <= now - self.cfg.admit_window:
            self.samples.popleft()           # keep one sample at or before the window's start
        if lag is not None:
            self.lags.append((now, lag))
            self._prune(self.lags, now)

    def note_wait(self, seconds: float) -> None:
        now = self.clock()
        self.waits.append((now, seconds))
        self._prune(self.waits, now)

    def note_admit(self) -> None:
        self.admitted.append(self.clock())

    def signals(self, sessions: int) -> dict:
        now = self.clock()
        w = self.cfg.admit_window
        while self.admitted and self.admitted[0] < now - w:
            self.admitted.popleft()
        self._prune(self.waits, now)
        self._prune(self.lags, now)
        t0, b0 = self.samples[0]
        busy = (sum(m.seconds() for m in self.meters) - b0) / (max(now - t0, w) * max(1, len(self.meters)))
        fresh = sum(1.0 - (now - t) / w for t in self.admitted)      # recent admissions, not yet measured
        settled = sessions - fresh
        if settled >= 1 and busy > 0.05:
            self.share = busy / settled      # one session's share, remembered for when none is settled
        projected = busy + fresh * self.share
        waits = [x for _, x in self.waits]
        lags = [x for _, x in self.lags]
        age = max((h.queue_age(now) for h in self.hosts()), default=0.0)
        return {"busy": busy, "busy_projected": projected, "wait_p90_ms": percentile(waits, 90) * 1e3 if waits else 0.0,
                "queue_age_ms": age * 1e3, "loop_lag_ms": percentile(lags, 90) * 1e3 if lags else 0.0}

    def refusal(self, sessions: int) -> tuple[str, str] | None:
        """(metric label, reason text) when a new session must be refused now, else None."""
        c = self.cfg
        if sessions >= c.max_sessions:
            return "sessions", f"server full: {sessions} sessions"
        if not c.admission or sessions < c.admit_min_sessions:
            self.refusing = False
            return None
        why = self._overload(self.signals(sessions), self.REOPEN if self.refusing else 1.0)
        self.refusing = why is not None
        return why

    def _overload(self, g: dict, k: float) -> tuple[str, str] | None:
        c = self.cfg
        busy, wait, lag = k * c.admit_max_busy, k * c.admit_max_wait_ms, k * c.admit_max_loop_lag_ms
        if g["busy_projected"] > busy:
            return "busy", f"server busy: worlds {g['busy_projected']:.0%} busy > {busy:.0%}"
        if g["wait_p90_ms"] > wait:
            return "wait", f"server busy: actions wait {g['wait_p90_ms']:.0f} ms for a step > {wait:g} ms"
        if g["queue_age_ms"] > 4 * wait:
            return "wait", f"server busy: an action queued for {g['queue_age_ms']:.0f} ms > {4 * wait:g} ms"
        if g["loop_lag_ms"] > lag:
            return "loop", f"server busy: event loop {g['loop_lag_ms']:.0f} ms late > {lag:g} ms"
        return None


class Session:
    """One WebSocket connection: the protocol state machine of SPEC.md 11 on the server side."""

    def __init__(self, server: "Server", ws: web.WebSocketResponse, sid: str, world_name: str | None,
                 grant: Grant | None = None):
        self.server, self.ws, self.sid, self.world_name = server, ws, sid, world_name
        self.grant = grant                   # the session's token (None: the server checks none)
        self.cfg = server.cfg
        self.m = server.metrics
        self.series = self.m.session(sid)
        self.host: WorldHost | None = None
        self.link = None
        self.window: Window | None = None
        self.wake = asyncio.Event()
        self.rate = Rate()
        self.actions = TokenBucket(self.cfg.actions_per_second, self.cfg.action_burst)
        self.asked = TokenBucket(self.cfg.resyncs_per_minute / 60.0, self.cfg.resync_burst)   # client-caused keyframes
        self.received: dict = {}             # action id -> loop time it arrived (for latency)
        self.frames = 0
        self.bytes = 0
        self.resyncs = 0
        self.closing = False                 # set when the session ends: the sender stops at its next turn
        self.progressive: dict | None = None  # the session joined progressively (SPEC.md 11.9)
        self.last_heard = time.monotonic()

    # -- lifecycle ---------------------------------------------------------------------------
    async def run(self) -> None:
        code, reason = NORMAL, "bye"
        sender = None
        # kept now: the TCP connection to abort if the close cannot be written (aiohttp may let go of it)
        transport = self.ws._req.transport if self.ws._req is not None else None
        try:
            hello = await self._hello()
            self.host = await self.server.world_for(self.world_name, hello)
            if hello["progressive"] is not None and self.cfg.progressive and not self.cfg.ray:
                self.progressive = {"budget": hello["progressive"]["budget"], "first_bytes": self.cfg.first_bytes,
                                    "refine_bytes": self.cfg.refine_bytes}
            self.window = Window(self.cfg.window, hello["max_bytes_per_second"])
            await self.ws.send_str(json.dumps(self._session_message()))
            await self.ws.send_bytes(self.host.header)
            self.link = await self.host.attach(hello["max_frame_bytes"], self.wake, self.progressive)
            event(log, "session.start", session=self.sid, world=self.host.name, **hello)
            sender = asyncio.create_task(self._send_loop(), name=f"send-{self.sid}")
            await self._receive_loop(sender)
        except SessionClosed as e:
            code, reason = e.code, e.reason
        except asyncio.CancelledError:
            code, reason = GOING_AWAY, "server shutting down"
        except WorldGone:                                # its world process ended (killed, crashed)
            code, reason = SERVER_ERROR, "world failed"
        except Exception as e:                           # a bug: close this session only
            log.exception("session %s failed", self.sid)
            code, reason = SERVER_ERROR, f"server error: {type(e).__name__}"
        finally:
            self.closing = True
            if sender:
                # The sender ends on the cancel, or at its next turn of the loop if a cancel is ever
                # lost (it waits on ``wake``); the session never waits on it for more than 2 s.
                sender.cancel()
                self.wake.set()
                done, _ = await asyncio.wait({sender}, timeout=2.0)
                if done:
                    sender.cancelled() or sender.exception()
                else:
                    log.warning("session %s: sender still running 2 s after the session ended", self.sid)
            if self.host:
                await self.server.release(self.host, self.link)
            cancelled = None
            if not self.ws.closed:
                try:
                    await wait_for(self.ws.close(code=code, message=reason[:120].encode()), 2.0)
                except (asyncio.TimeoutError, ConnectionError, RuntimeError, asyncio.CancelledError) as e:
                    # the close frame cannot be written either (a client that stopped reading,
                    # 4001): abort the TCP connection; the client sees an abnormal closure (1006).
                    # A CancelledError is the close's wait for the socket to drain, cancelled with
                    # the abandoned stuck write (aiohttp's writes share one drain waiter) -- unless
                    # this task itself is being cancelled, which goes on once the session is ended
                    if transport is not None:
                        transport.abort()
                    if isinstance(e, asyncio.CancelledError) and asyncio.current_task().cancelling():
                        cancelled = e
            self.m.closes.labels(str(code)).inc()
            self.m.drop_session(self.sid)
            event(log, "session.end", session=self.sid, code=code, reason=reason, frames=self.frames,
                  bytes=self.bytes, resyncs=self.resyncs)
            if cancelled is not None:
                raise cancelled

    def _session_message(self) -> dict:
        """The server's first message (SPEC.md 11.3): flow-control settings and the world's actions."""
        c = self.cfg
        m = {"type": "session", "world": self.world_name, "window": c.window,
             "ack_timeout_s": c.ack_timeout, "idle_timeout_s": c.idle_timeout,
             "keepalive_s": c.idle_timeout / 2, "max_gaussians": self.host.max_gaussians,
             "watch_only": bool(self.grant and self.grant.watch_only),
             "actions": {} if self.grant and self.grant.watch_only else ACTIONS}
        if self.progressive is not None:
            m["progressive"] = {"budget": self.progressive["budget"] or self.host.max_gaussians,
                                "first_bytes": c.first_bytes, "refine_bytes": c.refine_bytes}
        return m

    async def _hello(self) -> dict:
        try:
            msg = await self.ws.receive(timeout=self.cfg.hello_timeout)
        except asyncio.TimeoutError:
            raise SessionClosed(POLICY, "no hello within the hello timeout") from None
        self._check_closed(msg)
        if msg.type != WSMsgType.TEXT:
            raise SessionClosed(POLICY, "hello must be a text message")
        return parse_hello(msg.data)

    def _check_closed(self, msg) -> None:
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
            raise SessionClosed(NORMAL, "client closed")
        if msg.type == WSMsgType.ERROR:
            exc = self.ws.exception()
            if getattr(exc, "code", None) == TOO_BIG:       # aiohttp's max_msg_size check
                raise SessionClosed(TOO_BIG, f"message over {self.cfg.max_message_bytes} bytes")
            raise SessionClosed(POLICY, f"bad WebSocket data: {exc}")

    # -- client -> server ----------------------------------------------------------------------
    async def _receive_loop(self, sender: asyncio.Task) -> None:
        self.last_heard = time.monotonic()
        while True:
            try:
                msg = await self.ws.receive(timeout=min(1.0, self.cfg.idle_timeout))
            except asyncio.TimeoutError:
                msg = None
            now = time.monotonic()
            if msg is None:
                # idle: nothing from the client for idle_timeout (a client with nothing to say sends
                # a keep-alive, a repeat of its last ack, every keepalive_s: SPEC.md 11.6)
                if now - self.last_heard >= self.cfg.idle_timeout:
                    raise SessionClosed(IDLE, f"idle for {self.cfg.idle_timeout:g} s")
            else:
                self._check_closed(msg)
                self.last_heard = now
                if msg.type != WSMsgType.TEXT:
                    raise SessionClosed(POLICY, "client messages must be JSON text")
                await self._on_message(msg.data)
            if self.host.failed is not None:
                raise SessionClosed(SERVER_ERROR, "world failed")
            if sender.done():
                exc = sender.exception()
                raise exc if exc else SessionClosed(SERVER_ERROR, "sender stopped")
            if self.grant is not None and time.time() >= self.grant.exp:
                raise SessionClosed(UNAUTHORISED, "token expired")
            if self.window.stalled(self.cfg.ack_timeout):
                await self._resync("ACK_TIMEOUT")

    async def _on_message(self, text: str) -> None:
        try:
            m = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise SessionClosed(POLICY, "malformed message: not JSON") from None
        kind = m.get("type") if isinstance(m, dict) else None
        if kind == "ack":
            seq = _json_int(m.get("seq"), "ack.seq")
            digest = m.get("digest")
            try:
                if not isinstance(digest, str) or len(digest) > 40:
                    raise ValueError
                Digest.parse(digest)
            except ValueError:
                raise SessionClosed(POLICY, "ack.digest is not a digest text (7.4)") from None
            why = self.window.ack(seq, digest)
            self.series.depth.set(self.window.depth)
            if why:
                self._take_keyframe_token()
                await self._resync(why)
            else:
                self.wake.set()
        elif kind == "action":
            if self.grant is not None and self.grant.watch_only:
                raise SessionClosed(FORBIDDEN, "watch-only token: actions are not allowed")
            _json_int(m.get("seq"), "action.seq")
            aid = m.get("id")
            if aid is not None:
                _json_int(aid, "action.id")
            if not self.actions.take():
                raise SessionClosed(POLICY, f"action rate over {self.cfg.actions_per_second:g}/s")
            try:
                action = from_json(m)
            except ValueError as e:
                raise SessionClosed(POLICY, f"bad action: {e}") from None
            if action is None:
                self.m.actions.labels("unknown_kind").inc()
                await self._ignored(aid, "unknown kind")
                return
            if self.host.submit(action, (self.sid, aid) if aid is not None else None):
                self.m.actions.labels("queued").inc()
                if aid is not None:
                    self.received[aid] = time.monotonic()
                    if len(self.received) > 1024:           # ids the world dropped: forget the oldest
                        self.received.pop(next(iter(self.received)))
            else:
                self.m.actions.labels("dropped").inc()
                await self._ignored(aid, "queue full")
        elif kind == "resync":
            reason = m.get("reason")
            if not isinstance(reason, str) or len(reason) > 64:
                raise SessionClosed(POLICY, "resync.reason must be a short string")
            self._take_keyframe_token()
            await self._resync(reason)
        elif kind == "detail":
            await self._detail(m)
        elif kind == "hello":
            raise SessionClosed(POLICY, "hello sent twice")
        else:
            raise SessionClosed(POLICY, f"unknown message type {kind!r}")

    async def _detail(self, m: dict) -> None:
        """A progressive client's detail budget and eye (SPEC.md 11.9)."""
        if self.progressive is None:
            raise SessionClosed(POLICY, "detail: the session did not join progressively")
        budget, view = m.get("budget"), m.get("view")
        if budget is None and view is None:
            raise SessionClosed(POLICY, "detail needs a budget or a view")
        if budget is not None:
            budget = _json_int(budget, "detail.budget", 1)
            self._take_keyframe_token()          # a smaller budget may cost a keyframe of stand-ins
        eye = None
        if view is not None:
            pos = view.get("position") if isinstance(view, dict) else None
            yaw, pitch = (view.get("yaw", 0.0), view.get("pitch", 0.0)) if isinstance(view, dict) else (None, None)
            nums = (pos if isinstance(pos, list) and len(pos) == 3 else [None]) + [yaw, pitch]
            if not all(_finite(v) for v in nums):
                raise SessionClosed(POLICY, "detail.view needs position [x, y, z], yaw and pitch: finite numbers")
            eye = {"position": [float(v) for v in pos], "yaw": float(yaw), "pitch": float(pitch)}
            for key, fits, shown in (("fov", lambda v: 0 < v < 180, "degrees, above 0 and below 180"),
                                     ("aspect", lambda v: 0.1 <= v <= 10, "from 0.1 to 10")):
                v = view.get(key)
                if v is not None:
                    if not (_finite(v) and fits(v)):
                        raise SessionClosed(POLICY, f"detail.view.{key} must be a number {shown}")
                    eye[key] = float(v)
        if not self.actions.take():
            raise SessionClosed(POLICY, f"action rate over {self.cfg.actions_per_second:g}/s")
        await self.host.detail(self.link, budget, eye)
        self.wake.set()

    async def _ignored(self, aid, reason: str) -> None:
        """An action that will never be run: its id comes back at once (SPEC.md 11.4), so that a
        client timing its actions does not wait for a frame that will not list it."""
        if aid is not None:
            try:
                await self.ws.send_str(json.dumps({"type": "ignored", "id": aid, "reason": reason}))
            except ConnectionError:
                pass

    def _take_keyframe_token(self) -> None:
        """A keyframe the client asked for (a resync, or an ack that does not match) costs the world an
        encode of its whole state: over the limit the session closes (SPEC.md 11.7)."""
        if not self.asked.take():
            raise SessionClosed(POLICY, f"resync rate over {self.cfg.resyncs_per_minute:g}/min")

    async def _resync(self, reason: str) -> None:
        self.resyncs += 1
        self.m.resyncs.labels(reason if reason.isupper() and len(reason) < 32 else "CLIENT").inc()
        event(log, "session.resync", session=self.sid, reason=reason)
        await self.host.request_keyframe(self.link)
        self.window.forget()
        self.wake.set()

    # -- server -> client ----------------------------------------------------------------------
    async def _send_loop(self) -> None:
        while not self.closing:
            self.host.waiting(self.link, self.window.open() and self.window.wait_for_budget(1) == 0)
            await self.wake.wait()
            self.wake.clear()
            self.host.waiting(self.link, False)
            while self.window.open() and self.host.failed is None and not self.closing:
                wait = self.window.wait_for_budget(1)
                if wait > 0:
                    await asyncio.sleep(wait)
                try:
                    f = await self.host.take(self.link)
                except FrameTooLarge as e:
                    raise SessionClosed(POLICY, str(e)) from None
                if f is None:
                    break
                await self._write(f)

    async def _write(self, f) -> None:
        mine = [a[1] for a in f.actions if a[0] == self.sid]
        info = {"type": "frame", "seq": f.seq, "keyframe": f.keyframe, "steps": f.composed,
                "actions": mine, "bytes": len(f.data), "camera": f.camera}
        if self.progressive is not None:
            info["detail"] = f.detail or {"held": None, "coarse": 0, "budget": None}
        try:
            await wait_for(self._send_pair(json.dumps(info), f.data), self.cfg.send_timeout)
        except asyncio.TimeoutError:
            raise SessionClosed(4001, f"client read nothing for {self.cfg.send_timeout:g} s") from None
        except ConnectionError:                              # the client went away mid-write: not a server error
            raise SessionClosed(NORMAL, "connection lost") from None
        now = time.monotonic()
        self.window.sent(f.seq, f.digest, len(f.data), f.keyframe)
        self.frames += 1
        self.bytes += len(f.data)
        self.rate.add(len(f.data))
        fr, br = self.rate.rates()
        m, ms = self.m, self.series
        ms.bytes.inc(len(f.data))
        ms.frames.inc()
        ms.frame_rate.set(fr)
        ms.byte_rate.set(br)
        ms.depth.set(self.window.depth)
        ms.step.set(self.host.step_ms / 1e3)
        ms.encode.set(self.host.encode_ms / 1e3)
        if f.keyframe:
            ms.keyframes.inc()
        if f.composed > 1:
            m.composed.inc(f.composed - 1)
        for aid in mine:
            t = self.received.pop(aid, None)
            if t is not None:
                m.latency.observe(now - t)

    async def _send_pair(self, text: str, data: bytes) -> None:
        await self.ws.send_str(text)
        await self.ws.send_bytes(data)

    def describe(self) -> dict:
        fr, br = self.rate.rates()
        return {"session": self.sid, "world": self.host.name if self.host else None, "frames": self.frames,
                "bytes": self.bytes, "frames_per_second": round(fr, 2), "bytes_per_second": round(br, 1),
                "queue_depth": self.window.depth if self.window else 0, "resyncs": self.resyncs,
                "world_pid": self.host.backend_pid if self.host else None,
                "step_ms": round(self.host.step_ms, 3) if self.host else None,
                "encode_ms": round(self.host.encode_ms, 3) if self.host else None,
                "wait_ms": round(self.host.wait_ms, 3) if self.host else None,
                "progressive": self.progressive is not None}


class _SessionSocket(web.WebSocketResponse):
    """aiohttp closes a connection whose message is over ``max_msg_size`` itself, with 1009 and no
    reason; SPEC.md 11.7 wants the cause named."""

    async def close(self, *, code: int = 1000, message: bytes = b"", drain: bool = True) -> bool:
        if code == TOO_BIG and not message:
            message = f"message over {self._max_msg_size} bytes".encode()
        return await super().close(code=code, message=message, drain=drain)


class Server:
    def __init__(self, cfg: ServerConfig | None = None):
        self.cfg = cfg or ServerConfig()
        self.metrics = Metrics()
        self.sessions: dict = {}
        self.shared: dict = {}               # name -> WorldHost
        self._sid = itertools.count(1)
        self._world_lock = asyncio.Lock()
        self.app = web.Application(middlewares=[self._http_auth])
        self.app.router.add_get("/ws", self.ws_handler)
        self.app.router.add_get("/metrics", self.metrics_handler)
        self.app.router.add_get("/sessions", self.sessions_handler)
        self.app.router.add_get("/admission", self.admission_handler)
        self.app.router.add_get("/healthz", self.health_handler)
        self.app.router.add_get("/", self.index_handler)
        if self.cfg.viewer_dir.is_dir():
            self.app.router.add_static("/viewer", self.cfg.viewer_dir, follow_symlinks=False)
        self.app.on_shutdown.append(self._on_shutdown)
        self.runner: web.AppRunner | None = None
        self.pool = ProcessPool(self.cfg.workers) if self.cfg.workers > 0 else None
        if self.cfg.ray:
            from .ray_host import RayPool
            self.pool = RayPool(self.cfg.ray, tick_hz=self.cfg.tick_hz, device=self.cfg.device, **self.cfg.ray_options)
        self.thread_lane = BusyMeter()       # thread-hosted worlds share one GIL: one lane
        self.admission = Admission(self.cfg, self.pool.meters if self.pool else [self.thread_lane], self._hosts)
        self._monitor: asyncio.Task | None = None

    # -- worlds ------------------------------------------------------------------------------------
    def _world_config(self, hello: dict) -> WorldConfig:
        w = self.cfg.world
        return replace(w, sh_degree=min(w.sh_degree, hello["max_sh_degree"]),
                       max_gaussians=min(w.max_gaussians, hello["max_gaussians"]))

    async def world_for(self, name: str | None, hello: dict) -> WorldHost:
        minor = self.cfg.world.format_minor()
        if minor > hello["minor"]:
            raise SessionClosed(POLICY, f"this server's worlds stream format 1.{minor} (the gap code, CHANNEL, ranked ids, "
                                        f"ADD_IMPLICIT or an SH palette); the client names only 1.{hello['minor']}")
        need = self.cfg.world.target_live
        if hello["max_gaussians"] < need and (name is None or name not in self.shared):
            raise SessionClosed(POLICY, f"the world's scene holds about {need} Gaussians, over the client's "
                                        f"max_gaussians {hello['max_gaussians']}")
        if name is None:
            host = self._new_host(f"private-{next(self._sid)}", self._world_config(hello))
            await self._start(host)
            host.users += 1
            return host
        async with self._world_lock:
            host = self.shared.get(name)
            if host is not None and host.failed is not None:
                del self.shared[name]            # lost (its process ended): its sessions are closing
                host = None
            if host is None:
                host = self._new_host(name, self._world_config(hello))
                await self._start(host)
                self.shared[name] = host
        if host.config.sh_degree > hello["max_sh_degree"]:
            raise SessionClosed(POLICY, f"world {name!r} streams SH degree {host.config.sh_degree}, "
                                        f"client renders up to {hello['max_sh_degree']}")
        if host.max_gaussians > hello["max_gaussians"]:
            raise SessionClosed(POLICY, f"world {name!r} may hold {host.max_gaussians} Gaussians, "
                                        f"over the client's max_gaussians")
        # the session holds the world from here (no await since it was looked up): a release by
        # the world's last attached session while this one is still on its way to attach keeps it
        host.users += 1
        return host

    async def _start(self, host: WorldHost) -> None:
        """Start a new world; one that fails to start is stopped (not counted, its slot freed)."""
        try:
            await host.start()
        except BaseException:
            await host.stop()
            self.metrics.worlds.dec()
            raise

    def _new_host(self, name: str, config: WorldConfig) -> WorldHost:
        self.metrics.worlds.inc()
        c = self.cfg
        offered = c.progressive and not c.ray        # then the world cuts its stand-ins as it is created
        return WorldHost(name, config, seed=c.seed, device=c.device, tick_hz=c.tick_hz,
                         on_step=self._on_step, pool=self.pool, meter=self.thread_lane,
                         progressive={"max_frame_bytes": SPEC_LIMITS.max_frame_bytes, "first_bytes": c.first_bytes,
                                      "refine_bytes": c.refine_bytes} if offered else None)

    def _on_step(self, host: WorldHost, s) -> None:
        self.metrics.step.observe(s.step_ms / 1e3)
        self.metrics.encode.observe(s.encode_ms / 1e3)
        if s.wait_ms is not None:
            self.metrics.step_wait.observe(s.wait_ms / 1e3)
            self.admission.note_wait(s.wait_ms / 1e3)

    def _hosts(self) -> set:
        return {x.host for x in self.sessions.values() if x.host is not None}

    # -- admission control (SPEC.md 11.7) ------------------------------------------------------
    async def _watch_load(self) -> None:
        """Sample the admission signals every 0.1 s (the sleep's lateness is the loop lag) and
        publish them as gauges."""
        loop = asyncio.get_running_loop()
        adm, m = self.admission, self.metrics
        k = 0
        while True:
            t = loop.time()
            await asyncio.sleep(adm.TICK)
            adm.sample(max(0.0, loop.time() - t - adm.TICK))
            k += 1
            if k % 5 == 0:                   # gauges twice a second
                g = adm.signals(len(self.sessions))
                m.lanes_busy.set(g["busy"])
                m.wait_p90.set(g["wait_p90_ms"] / 1e3)
                m.queue_age.set(g["queue_age_ms"] / 1e3)
                m.loop_lag.set(g["loop_lag_ms"] / 1e3)
                m.admission_open.set(0 if adm.refusal(len(self.sessions)) else 1)

    def admission_state(self) -> dict:
        c = self.cfg
        why = self.admission.refusal(len(self.sessions))
        return {"open": why is None, "reason": why[1] if why else None, "retry_after": c.retry_after,
                "enabled": c.admission, "sessions": len(self.sessions), "max_sessions": c.max_sessions,
                "signals": {k: round(v, 3) for k, v in self.admission.signals(len(self.sessions)).items()},
                "thresholds": {"busy": c.admit_max_busy, "wait_ms": c.admit_max_wait_ms,
                               "loop_lag_ms": c.admit_max_loop_lag_ms, "window_s": c.admit_window},
                "refused": {s.labels["reason"]: int(s.value) for mf in self.metrics.refused.collect()
                            for s in mf.samples if s.name.endswith("_total")}}

    async def _refuse(self, request: web.Request, label: str, why: str) -> web.WebSocketResponse:
        """Open the WebSocket and close it at once with 1013 and ``retry-after=N`` (SPEC.md 11.7):
        a browser sees a close code and reason, never the status of a refused handshake."""
        self.metrics.refused.labels(label).inc()
        event(log, "session.refused", why=why, sessions=len(self.sessions))
        return await self._close_at_once(request, TRY_AGAIN_LATER, f"retry-after={self.cfg.retry_after} {why}")

    async def _close_at_once(self, request: web.Request, code: int, reason: str) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=self.cfg.max_message_bytes, compress=False, timeout=2.0)
        await ws.prepare(request)
        await ws.close(code=code, message=reason.encode()[:123])
        return ws

    @staticmethod
    def _token(request: web.Request) -> str | None:
        """The request's token: ``Authorization: Bearer``, else ``?token=`` (SPEC.md 11.8);
        TokenError(4002) for an Authorization header of another form."""
        header = request.headers.get("Authorization")
        token = bearer(header)
        if header is not None and token is None:
            raise TokenError(UNAUTHORISED, "Authorization header is not 'Bearer TOKEN'")
        return token if token is not None else request.query.get("token")

    def _grant(self, request: web.Request, world: str | None) -> Grant:
        """The request's token, verified and checked against the world asked for (SPEC.md 11.8);
        TokenError(4002 or 4003) otherwise."""
        g = verify(self.cfg.auth_secret, self._token(request))
        g.check_world(world)
        return g

    @web.middleware
    async def _http_auth(self, request: web.Request, handler):
        """With a secret, every HTTP route but the session endpoint (its own checks), the health
        check and the static viewer needs a token with the ``observe`` grant (SPEC.md 11.8): 401
        without a valid token, 403 for a valid one without the grant. Routes added later are
        covered too: the open ones are listed, not the closed ones."""
        path = request.path
        resource = request.match_info.route.resource     # by the route matched, not the path's text
        if self.cfg.auth_secret is None or (resource is not None and resource.canonical in OPEN_ROUTES):
            return await handler(request)
        try:
            g = verify(self.cfg.auth_secret, self._token(request))
        except TokenError as e:
            status, why, err = 401, e.reason, "" if e.reason == "token required" else ', error="invalid_token"'
        else:
            if g.observe:
                return await handler(request)
            status, why, err = 403, "token does not grant observe", ', error="insufficient_scope"'
        event(log, "http.refused", path=path, status=status, why=why)
        return web.Response(status=status, text=why + "\n", headers={
            "WWW-Authenticate": f'Bearer realm="gsd-serve"{err}', "Cache-Control": "no-store"})

    async def release(self, host: WorldHost, link: int | None) -> None:
        """A session lets go of its world (``world_for`` gave it); the last one stops it."""
        if link is not None:
            await host.detach(link)
        host.users -= 1
        if host.users == 0 and not host.stopping:       # sessions leaving together stop it once
            host.stopping = True
            if self.shared.get(host.name) is host:
                del self.shared[host.name]
            await host.stop()
            self.metrics.worlds.dec()

    # -- HTTP ----------------------------------------------------------------------------------
    def _origin_ok(self, request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        if origin is None:                    # not a browser: origin checks protect browsers only
            return True
        if origin in self.cfg.allowed_origins:
            return True
        return urlsplit(origin).netloc == request.host

    async def ws_handler(self, request: web.Request) -> web.StreamResponse:
        if not self._origin_ok(request):
            event(log, "session.refused", origin=request.headers.get("Origin"), why="origin")
            raise web.HTTPForbidden(text="origin not allowed\n")
        world = request.query.get("world")
        if world is not None and not WORLD_NAME.fullmatch(world):      # SPEC.md 11.1: ASCII only
            raise web.HTTPBadRequest(text="world names are 1-64 ASCII letters, digits, - and _\n")
        grant = None
        if self.cfg.auth_secret is not None:
            try:
                grant = self._grant(request, world)
            except TokenError as e:
                self.metrics.refused.labels("token").inc()
                event(log, "session.refused", why=e.reason, code=e.code, world=world)
                return await self._close_at_once(request, e.code, e.reason)
        refusal = self.admission.refusal(len(self.sessions))
        if refusal:
            return await self._refuse(request, *refusal)
        self.admission.note_admit()
        ws = _SessionSocket(max_msg_size=self.cfg.max_message_bytes, compress=False, autoping=True)
        await ws.prepare(request)
        sid = f"s{next(self._sid)}"
        session = Session(self, ws, sid, world, grant)
        self.sessions[sid] = session
        self.metrics.sessions.inc()
        try:
            await session.run()
        finally:
            self.sessions.pop(sid, None)
            self.metrics.sessions.dec()
        return ws

    async def metrics_handler(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.text(), content_type="text/plain", charset="utf-8",
                            headers={"X-Content-Type-Options": "nosniff"})

    async def health_handler(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def index_handler(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/viewer/index.html" + (f"?{request.query_string}" if request.query_string else ""))

    async def sessions_handler(self, request: web.Request) -> web.Response:
        a = self.admission_state()
        head = "open" if a["open"] else f"refusing; retry-after={a['retry_after']}; {a['reason']}"
        return web.json_response([s.describe() for s in self.sessions.values()], headers={"GSD-Admission": head})

    async def admission_handler(self, request: web.Request) -> web.Response:
        return web.json_response(self.admission_state())

    async def _on_shutdown(self, app) -> None:
        """Close every session at once (1001), each given at most 2 s for its client's reply."""
        async def bye(s: Session) -> None:
            s.closing = True
            s.wake.set()
            if not s.ws.closed:
                try:
                    await wait_for(s.ws.close(code=GOING_AWAY, message=b"server shutting down"), 2.0)
                except (asyncio.TimeoutError, ConnectionError, RuntimeError):
                    pass
                except asyncio.CancelledError:     # the drain waiter of a stuck write (see Session.run)
                    if asyncio.current_task().cancelling():
                        raise
        await asyncio.gather(*(bye(s) for s in list(self.sessions.values())))

    # -- running -------------------------------------------------------------------------------
    async def start(self) -> int:
        """Listen; returns the bound port (useful with port 0). Without an auth secret only on a
        loopback address (ValueError otherwise)."""
        if self.cfg.auth_secret is None and not is_loopback(self.cfg.host):
            raise ValueError(f"refusing to listen on {self.cfg.host} without session tokens: "
                             f"give --auth-secret-file or ${SECRET_ENV} (SPEC.md 11.8)")
        # handlers still running 5 s after the sessions were told to close are cancelled
        self.runner = web.AppRunner(self.app, handle_signals=False, access_log=None, shutdown_timeout=5.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.cfg.host, self.cfg.port)
        await site.start()
        self._monitor = asyncio.create_task(self._watch_load(), name="admission")
        self.port = site._server.sockets[0].getsockname()[1]
        event(log, "server.listen", host=self.cfg.host, port=self.port, tick_hz=self.cfg.tick_hz,
              target_live=self.cfg.world.target_live, sh_degree=self.cfg.world.sh_degree)
        if self.cfg.auth_secret is None:
            event(log, "server.auth", auth=False,
                  note=f"no auth secret: local-only on {self.cfg.host}, every connection may join any world and act")
        else:
            event(log, "server.auth", auth=True, note="sessions need a token (SPEC.md 11.8; mint with gsd-token)")
        return self.port

    async def stop(self) -> None:
        if self._monitor:
            self._monitor.cancel()
            await asyncio.gather(self._monitor, return_exceptions=True)
        if self.runner:
            await self.runner.cleanup()
        for host in list(self.shared.values()):
            await host.stop()
        if self.pool:
            self.pool.close()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_args(argv=None) -> ServerConfig:
    ap = argparse.ArgumentParser(
        prog="gsd-serve", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Stream the reference world to browsers and headless clients (gsd/1 over WebSocket, SPEC.md 11).\n"
                    "Serves the viewer at /, sessions at /ws (/ws?world=NAME: a shared world), Prometheus text at\n"
                    "/metrics, open sessions at /sessions. Needs the world extra (torch): pip install '.[world]'.")
    ap.add_argument("--host", default="127.0.0.1",
                    help="address to listen on; 127.0.0.1 serves this machine only (default: %(default)s)")
    ap.add_argument("--port", type=int, default=8765, help="TCP port; 0 picks a free one and prints it (default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="seed of every world's procedural layout (default: %(default)s)")
    ap.add_argument("--device", default="cpu", help="torch device the worlds run on: cpu, cuda, cuda:1, ... (default: %(default)s)")
    ap.add_argument("--target-live", type=int, default=200_000, metavar="N",
                    help="Gaussians in view at steady state, per world (default: %(default)s)")
    ap.add_argument("--sh-degree", type=int, default=3, choices=range(4),
                    help="spherical-harmonics degree of the worlds' Gaussians (default: %(default)s)")
    ap.add_argument("--profile", default="compact", choices=("compact", "small", "high", "lossless"),
                    help="quantization profile of the streams (SPEC.md 5; default: %(default)s); small codes SH "
                         "through a palette (SPEC.md 5.9): about 0.6x the bytes of new content, format 1.1 clients only")
    ap.add_argument("--format", choices=FORMATS[1:], default="1.1",
                    help="format version of the streams: 1.2 sends the ids of UPDATEs and DELETEs as ranks among the "
                         "live ids (0.55-0.7x their bytes in a world session, about 2%% of its deltas at 1M, for about "
                         "0.4 ms more codec time per step; clients naming 1.2 only); 1.3 also lets colour sections be "
                         "stored as channel differences (smaller where a model's colours are like captured ones, not "
                         "the reference world's; clients naming 1.3 only); 1.4 also stores ranks as exp-Golomb codes of their gaps where that is "
                         "smaller (0.85x the ranks' bytes in a world session; clients naming 1.4 only); 1.1 sends ids "
                         "(default: %(default)s)")
    ap.add_argument("--tick-hz", type=float, default=25.0,
                    help="idle world steps per second when no action arrives (an action steps at once); "
                         "0: step on actions only (default: %(default)s)")
    ap.add_argument("--window", type=int, default=3, metavar="N",
                    help="frames in flight per client before the server waits for acks (default: %(default)s)")
    ap.add_argument("--max-sessions", type=int, default=256, metavar="N",
                    help="sessions beyond this are refused with close 1013 (default: %(default)s)")
    ap.add_argument("--admission", default="on", choices=("on", "off"),
                    help="refuse new sessions (close 1013, retry-after) while the worlds fall behind, by the "
                         "--admit-* limits below (default: %(default)s)")
    ap.add_argument("--admit-max-busy", type=float, default=0.7, metavar="SHARE",
                    help="refuse while the world lanes (worker processes, or the GIL of thread-hosted worlds) "
                         "are busy over this share of the time (default: %(default)s)")
    ap.add_argument("--admit-max-wait-ms", type=float, default=20.0, metavar="MS",
                    help="refuse while the p90 wait of actions for their step is over this; an action still "
                         "queued counts against 4 times this (default: %(default)s)")
    ap.add_argument("--admit-max-loop-lag-ms", type=float, default=25.0, metavar="MS",
                    help="refuse while the event loop runs this late, p90 (default: %(default)s)")
    ap.add_argument("--admit-window", type=float, default=2.0, metavar="S",
                    help="seconds the admission signals are measured over (default: %(default)s)")
    ap.add_argument("--admit-min-sessions", type=int, default=4, metavar="N",
                    help="admit this many sessions whatever the load (default: %(default)s)")
    ap.add_argument("--retry-after", type=int, default=10, metavar="S",
                    help="seconds a refused client is told to wait, 1..3600 (default: %(default)s)")
    ap.add_argument("--ray", metavar="ADDRESS",
                    help="run each world as a Ray actor on a cluster: auto (this machine's cluster), a head's "
                         "ADDRESS, or local (start one here); shared worlds are named actors every gateway "
                         "of the cluster joins, docs/scaling.md (default: none, worlds run in this process)")
    ap.add_argument("--ray-world-cpus", type=float, default=1.0, metavar="N",
                    help="CPUs each world actor declares (a torch world on cuda also takes 0.25 GPU) (default: %(default)s)")
    ap.add_argument("--ray-checkpoint-dir", metavar="DIR",
                    help="where world actors checkpoint, for resuming after a fault: a shared file system "
                         "on a multi-node cluster (default: the temp dir)")
    ap.add_argument("--workers", type=int, default=0, metavar="N",
                    help="world processes, each with its own GIL (under load: the core count); "
                         "0: worlds on threads of this process (default: %(default)s)")
    ap.add_argument("--idle-timeout", type=float, default=60.0, metavar="S",
                    help="close a session (4000) after this many seconds without a client message (default: %(default)s)")
    ap.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                    help="also accept browser WebSocket connections whose Origin is this (repeatable; default: "
                         "the server's own origin only; clients that send no Origin are not checked)")
    ap.add_argument("--auth-secret-file", metavar="FILE",
                    help=f"require a session token signed with this secret (the file's bytes less one trailing "
                         f"line end, at least 16; or ${SECRET_ENV}); mint tokens with gsd-token. Without a "
                         f"secret the server listens on loopback only (default: no tokens, loopback)")
    ap.add_argument("--progressive", default="on", choices=("on", "off"),
                    help="offer a progressive join (stand-ins first, SPEC.md 11.9) to clients that ask; off: "
                         "every client gets the whole keyframe (default: %(default)s)")
    ap.add_argument("--first-bytes", type=int, default=FIRST_BYTES, metavar="N",
                    help="a progressive join's keyframe of stand-ins: its target size in bytes (default: %(default)s)")
    ap.add_argument("--refine-bytes", type=int, default=REFINE_BYTES, metavar="N",
                    help="a progressive join's refinement per frame, about, in bytes (default: %(default)s)")
    ap.add_argument("--log-level", default="info", type=str.lower, choices=("debug", "info", "warning", "error", "critical"),
                    help="threshold of the JSON log lines on stderr (default: %(default)s)")
    a = ap.parse_args(argv)
    if a.window < 1 or a.tick_hz < 0 or a.target_live <= 0 or a.workers < 0:
        ap.error("--window >= 1, --tick-hz >= 0, --target-live > 0 and --workers >= 0 required")
    if not 1 <= a.retry_after <= 3600 or a.admit_window <= 0 or a.max_sessions < 0 or not 0 <= a.port <= 65535:
        ap.error("--retry-after 1..3600, --admit-window > 0, --max-sessions >= 0 and --port 0..65535 required")
    if a.first_bytes < 1 or a.refine_bytes < 1:
        ap.error("--first-bytes and --refine-bytes must be at least 1")
    try:
        secret = read_secret(a.auth_secret_file)
    except (OSError, ValueError) as e:
        ap.error(f"--auth-secret-file / ${SECRET_ENV}: {e}")
    if secret is None and not is_loopback(a.host):
        ap.error(f"--host {a.host} serves other machines: give --auth-secret-file or set ${SECRET_ENV} "
                 f"(without a secret the server is local-only)")
    # the format's Encoder options, but for ADD_IMPLICIT, which the world's profile decides
    options = {k: v for k, v in format_options(a.format).items() if k != "implicit_ids"}
    world = WorldConfig(sh_degree=a.sh_degree, profile=a.profile, target_live=a.target_live, **options)
    logging.basicConfig(level=a.log_level.upper(), stream=sys.stderr)
    logging.getLogger().handlers[0].setFormatter(JsonFormatter())
    return ServerConfig(host=a.host, port=a.port, world=world, seed=a.seed, device=a.device, tick_hz=a.tick_hz,
                        window=a.window, max_sessions=a.max_sessions, idle_timeout=a.idle_timeout, workers=a.workers,
                        ray=a.ray, ray_options={"world_cpus": a.ray_world_cpus, "checkpoint_dir": a.ray_checkpoint_dir},
                        allowed_origins=tuple(a.allow_origin), admission=a.admission == "on",
                        admit_max_busy=a.admit_max_busy, admit_max_wait_ms=a.admit_max_wait_ms,
                        admit_max_loop_lag_ms=a.admit_max_loop_lag_ms, admit_window=a.admit_window,
                        admit_min_sessions=a.admit_min_sessions, retry_after=a.retry_after, auth_secret=secret,
                        progressive=a.progressive == "on", first_bytes=a.first_bytes, refine_bytes=a.refine_bytes)


async def serve(cfg: ServerConfig) -> None:
    torch.set_num_threads(1)       # parallelism comes from sessions, one world thread (or process) each
    sys.setswitchinterval(0.001)   # world threads hand the GIL back to the event loop within 1 ms, not 5
    server = Server(cfg)
    port = await server.start()
    print(f"gsd-serve: open http://{cfg.host}:{port}/ (WebSocket ws://{cfg.host}:{port}/ws, "
          f"metrics http://{cfg.host}:{port}/metrics); Ctrl-C stops", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()


def main(argv=None) -> int:
    cfg = parse_args(argv)
    try:
        asyncio.run(serve(cfg))
    except (OSError, ValueError) as e:
        print(f"gsd-serve: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
