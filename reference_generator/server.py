"""`gsd-serve`: the reference world streamed to browsers over WebSocket (SPEC.md 11, protocol gsd/1).

    gsd-serve                                   # http://127.0.0.1:8765/ : viewer + /ws + /metrics
    gsd-serve --port 9000 --target-live 50000 --tick-hz 25 --device cuda

Routes: ``/`` redirects to the viewer (``reference_viewer/``, static), ``/ws`` is the session
endpoint (``/ws?world=NAME`` joins a shared world, starting it if needed; without it every
connection gets a private world), ``/metrics`` is Prometheus text, ``/sessions`` a JSON list,
``/healthz`` says ok.

Each session: hello -> stream header -> keyframe -> deltas (flow.py). The world runs on its own
thread (worldhost.py); the event loop only parses small JSON messages and writes frames.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import signal
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

import torch
from aiohttp import WSMsgType, web

from codec.digest import Digest

from .actions import from_json
from .flow import FrameTooLarge, Window
from .metrics import JsonFormatter, Metrics, Rate, event
from .world import WorldConfig
from .worldhost import ProcessPool, WorldHost

log = logging.getLogger("gsd.server")
VIEWER_DIR = Path(__file__).resolve().parent.parent / "reference_viewer"
PROTOCOL = "gsd/1"
MAX_JSON_INT = 2 ** 53

# WebSocket close codes (SPEC.md 11.7)
NORMAL, GOING_AWAY, POLICY, TOO_BIG, SERVER_ERROR, IDLE = 1000, 1001, 1008, 1009, 1011, 4000


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
    hello_timeout: float = 10.0
    idle_timeout: float = 60.0       # no message from the client for this long: close 4000
    ack_timeout: float = 5.0         # frames out, no ack for this long: next frame is a keyframe
    send_timeout: float = 30.0       # one frame not written for this long: close 4001
    max_sessions: int = 256
    workers: int = 0                 # world processes; 0: worlds on threads of the server process
    allowed_origins: tuple = ()      # extra Origin values accepted besides same-origin
    viewer_dir: Path = VIEWER_DIR


class SessionClosed(Exception):
    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason


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
    sh = _json_int(m.get("max_sh_degree"), "max_sh_degree")
    if sh > 3:
        raise SessionClosed(POLICY, "max_sh_degree must be 0..3")
    b = m.get("budgets")
    if not isinstance(b, dict):
        raise SessionClosed(POLICY, "budgets must be an object")
    return {"max_sh_degree": sh,
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


class Session:
    """One WebSocket connection: the protocol state machine of SPEC.md 11 on the server side."""

    def __init__(self, server: "Server", ws: web.WebSocketResponse, sid: str, world_name: str | None):
        self.server, self.ws, self.sid, self.world_name = server, ws, sid, world_name
        self.cfg = server.cfg
        self.m = server.metrics
        self.host: WorldHost | None = None
        self.link = None
        self.window: Window | None = None
        self.wake = asyncio.Event()
        self.rate = Rate()
        self.actions = TokenBucket(self.cfg.actions_per_second, self.cfg.action_burst)
        self.received: dict = {}             # action id -> loop time it arrived (for latency)
        self.frames = 0
        self.bytes = 0
        self.resyncs = 0

    # -- lifecycle ---------------------------------------------------------------------------
    async def run(self) -> None:
        code, reason = NORMAL, "bye"
        sender = None
        try:
            hello = await self._hello()
            self.host = await self.server.world_for(self.world_name, hello)
            self.window = Window(self.cfg.window, hello["max_bytes_per_second"])
            await self.ws.send_bytes(self.host.header)
            self.link = await self.host.attach(hello["max_frame_bytes"], self.wake)
            event(log, "session.start", session=self.sid, world=self.host.name, **hello)
            sender = asyncio.create_task(self._send_loop(), name=f"send-{self.sid}")
            await self._receive_loop(sender)
        except SessionClosed as e:
            code, reason = e.code, e.reason
        except asyncio.CancelledError:
            code, reason = GOING_AWAY, "server shutting down"
        except Exception as e:                           # a bug: close this session only
            log.exception("session %s failed", self.sid)
            code, reason = SERVER_ERROR, f"server error: {type(e).__name__}"
        finally:
            if sender:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
            if self.host and self.link is not None:
                await self.server.release(self.host, self.link)
            if not self.ws.closed:
                try:
                    await asyncio.wait_for(self.ws.close(code=code, message=reason[:120].encode()), 2.0)
                except (asyncio.TimeoutError, ConnectionError, RuntimeError):
                    pass
            self.m.closes.labels(str(code)).inc()
            self.m.drop_session(self.sid)
            event(log, "session.end", session=self.sid, code=code, reason=reason, frames=self.frames,
                  bytes=self.bytes, resyncs=self.resyncs)

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
        last_check = time.monotonic()
        while True:
            try:
                msg = await self.ws.receive(timeout=min(1.0, self.cfg.idle_timeout))
            except asyncio.TimeoutError:
                msg = None
            now = time.monotonic()
            if msg is None:
                if now - last_check >= self.cfg.idle_timeout:
                    raise SessionClosed(IDLE, f"idle for {self.cfg.idle_timeout:g} s")
            else:
                self._check_closed(msg)
                last_check = now
                if msg.type != WSMsgType.TEXT:
                    raise SessionClosed(POLICY, "client messages must be JSON text")
                await self._on_message(msg.data)
            if sender.done():
                exc = sender.exception()
                raise exc if exc else SessionClosed(SERVER_ERROR, "sender stopped")
            if self.host.failed is not None:
                raise SessionClosed(SERVER_ERROR, "world failed")
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
            self.m.depth.labels(self.sid).set(self.window.depth)
            if why:
                await self._resync(why)
            else:
                self.wake.set()
        elif kind == "action":
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
                return
            if self.host.submit(action, (self.sid, aid) if aid is not None else None):
                self.m.actions.labels("queued").inc()
                if aid is not None:
                    self.received[aid] = time.monotonic()
                    if len(self.received) > 1024:           # ids the world dropped: forget the oldest
                        self.received.pop(next(iter(self.received)))
            else:
                self.m.actions.labels("dropped").inc()
        elif kind == "resync":
            reason = m.get("reason")
            if not isinstance(reason, str) or len(reason) > 64:
                raise SessionClosed(POLICY, "resync.reason must be a short string")
            await self._resync(reason)
        elif kind == "hello":
            raise SessionClosed(POLICY, "hello sent twice")
        else:
            raise SessionClosed(POLICY, f"unknown message type {kind!r}")

    async def _resync(self, reason: str) -> None:
        self.resyncs += 1
        self.m.resyncs.labels(reason if reason.isupper() and len(reason) < 32 else "CLIENT").inc()
        event(log, "session.resync", session=self.sid, reason=reason)
        await self.host.request_keyframe(self.link)
        self.window.forget()
        self.wake.set()

    # -- server -> client ----------------------------------------------------------------------
    async def _send_loop(self) -> None:
        while True:
            self.host.waiting(self.link, self.window.open() and self.window.wait_for_budget(1) == 0)
            await self.wake.wait()
            self.wake.clear()
            self.host.waiting(self.link, False)
            while self.window.open() and self.host.failed is None:
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
        try:
            await asyncio.wait_for(self._send_pair(json.dumps(info), f.data), self.cfg.send_timeout)
        except asyncio.TimeoutError:
            raise SessionClosed(4001, f"client read nothing for {self.cfg.send_timeout:g} s") from None
        now = time.monotonic()
        self.window.sent(f.seq, f.digest, len(f.data), f.keyframe)
        self.frames += 1
        self.bytes += len(f.data)
        self.rate.add(len(f.data))
        fr, br = self.rate.rates()
        m, sid = self.m, self.sid
        m.bytes.labels(sid).inc(len(f.data))
        m.frames.labels(sid).inc()
        m.frame_rate.labels(sid).set(fr)
        m.byte_rate.labels(sid).set(br)
        m.depth.labels(sid).set(self.window.depth)
        m.session_step.labels(sid).set(self.host.step_ms / 1e3)
        m.session_encode.labels(sid).set(self.host.encode_ms / 1e3)
        if f.keyframe:
            m.keyframes.labels(sid).inc()
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
                "step_ms": round(self.host.step_ms, 3) if self.host else None,
                "encode_ms": round(self.host.encode_ms, 3) if self.host else None}


class Server:
    def __init__(self, cfg: ServerConfig | None = None):
        self.cfg = cfg or ServerConfig()
        self.metrics = Metrics()
        self.sessions: dict = {}
        self.shared: dict = {}               # name -> WorldHost
        self._sid = itertools.count(1)
        self._world_lock = asyncio.Lock()
        self.app = web.Application()
        self.app.router.add_get("/ws", self.ws_handler)
        self.app.router.add_get("/metrics", self.metrics_handler)
        self.app.router.add_get("/sessions", self.sessions_handler)
        self.app.router.add_get("/healthz", self.health_handler)
        self.app.router.add_get("/", self.index_handler)
        if self.cfg.viewer_dir.is_dir():
            self.app.router.add_static("/viewer", self.cfg.viewer_dir, follow_symlinks=False)
        self.app.on_shutdown.append(self._on_shutdown)
        self.runner: web.AppRunner | None = None
        self.pool = ProcessPool(self.cfg.workers) if self.cfg.workers > 0 else None

    # -- worlds ------------------------------------------------------------------------------------
    def _world_config(self, hello: dict) -> WorldConfig:
        w = self.cfg.world
        return replace(w, sh_degree=min(w.sh_degree, hello["max_sh_degree"]),
                       max_gaussians=min(w.max_gaussians, hello["max_gaussians"]))

    async def world_for(self, name: str | None, hello: dict) -> WorldHost:
        if name is None:
            host = self._new_host(f"private-{next(self._sid)}", self._world_config(hello))
            await host.start()
            return host
        async with self._world_lock:
            host = self.shared.get(name)
            if host is None:
                host = self._new_host(name, self._world_config(hello))
                await host.start()
                self.shared[name] = host
        if host.config.sh_degree > hello["max_sh_degree"]:
            raise SessionClosed(POLICY, f"world {name!r} streams SH degree {host.config.sh_degree}, "
                                        f"client renders up to {hello['max_sh_degree']}")
        if host.max_gaussians > hello["max_gaussians"]:
            raise SessionClosed(POLICY, f"world {name!r} may hold {host.max_gaussians} Gaussians, "
                                        f"over the client's max_gaussians")
        return host

    def _new_host(self, name: str, config: WorldConfig) -> WorldHost:
        self.metrics.worlds.inc()
        return WorldHost(name, config, seed=self.cfg.seed, device=self.cfg.device, tick_hz=self.cfg.tick_hz,
                         on_step=self._on_step, pool=self.pool)

    def _on_step(self, host: WorldHost, s) -> None:
        self.metrics.step.observe(s.step_ms / 1e3)
        self.metrics.encode.observe(s.encode_ms / 1e3)

    async def release(self, host: WorldHost, link: int) -> None:
        await host.detach(link)
        if host.clients == 0:
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
        if len(self.sessions) >= self.cfg.max_sessions:
            raise web.HTTPServiceUnavailable(text="too many sessions\n")
        world = request.query.get("world")
        if world is not None and not (0 < len(world) <= 64 and world.replace("-", "").replace("_", "").isalnum()):
            raise web.HTTPBadRequest(text="world names are 1-64 letters, digits, - and _\n")
        ws = web.WebSocketResponse(max_msg_size=self.cfg.max_message_bytes, compress=False, autoping=True)
        await ws.prepare(request)
        sid = f"s{next(self._sid)}"
        session = Session(self, ws, sid, world)
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
        return web.json_response([s.describe() for s in self.sessions.values()])

    async def _on_shutdown(self, app) -> None:
        for s in list(self.sessions.values()):
            if not s.ws.closed:
                await s.ws.close(code=GOING_AWAY, message=b"server shutting down")

    # -- running -------------------------------------------------------------------------------
    async def start(self) -> int:
        """Listen; returns the bound port (useful with port 0)."""
        self.runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.cfg.host, self.cfg.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        event(log, "server.listen", host=self.cfg.host, port=self.port, tick_hz=self.cfg.tick_hz,
              target_live=self.cfg.world.target_live, sh_degree=self.cfg.world.sh_degree)
        return self.port

    async def stop(self) -> None:
        if self.runner:
            await self.runner.cleanup()
        for host in list(self.shared.values()):
            await host.stop()
        if self.pool:
            self.pool.close()


def parse_args(argv=None) -> ServerConfig:
    ap = argparse.ArgumentParser(prog="gsd-serve", description="Stream the reference world to browsers (gsd/1 over WebSocket).")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="torch device of the worlds (cpu, cuda)")
    ap.add_argument("--target-live", type=int, default=200_000, help="Gaussians in view at steady state")
    ap.add_argument("--sh-degree", type=int, default=3, choices=range(4))
    ap.add_argument("--profile", default="compact", choices=("compact", "high", "lossless"))
    ap.add_argument("--tick-hz", type=float, default=25.0, help="idle world steps per second when no action arrives (each action steps at once); 0 = on actions only")
    ap.add_argument("--window", type=int, default=3, help="unacknowledged frames in flight per client")
    ap.add_argument("--max-sessions", type=int, default=256)
    ap.add_argument("--workers", type=int, default=0,
                    help="world processes (each has its own GIL; use the core count under load); 0: threads")
    ap.add_argument("--idle-timeout", type=float, default=60.0)
    ap.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                    help="accept WebSocket connections from this Origin too (repeatable)")
    ap.add_argument("--log-level", default="info")
    a = ap.parse_args(argv)
    if a.window < 1 or a.tick_hz < 0 or a.target_live <= 0 or a.workers < 0:
        ap.error("--window >= 1, --tick-hz >= 0, --target-live > 0 and --workers >= 0 required")
    world = WorldConfig(sh_degree=a.sh_degree, profile=a.profile, target_live=a.target_live)
    logging.basicConfig(level=a.log_level.upper(), stream=sys.stderr)
    logging.getLogger().handlers[0].setFormatter(JsonFormatter())
    return ServerConfig(host=a.host, port=a.port, world=world, seed=a.seed, device=a.device, tick_hz=a.tick_hz,
                        window=a.window, max_sessions=a.max_sessions, idle_timeout=a.idle_timeout, workers=a.workers,
                        allowed_origins=tuple(a.allow_origin))


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
    except OSError as e:
        print(f"gsd-serve: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
