"""Soak test of `gsd-serve`: many clients for a long time, with faults, against one server.

    python -m reference_generator.soak --clients 32 --minutes 30 --out SOAK.md
    python -m reference_generator.soak --clients 8 --minutes 2 --out -       # a short look, report on stdout

The server runs as its own process with world processes (``--workers``, 2 by default) and small
shared worlds (two clients per world). Every client decodes, digest-checks and acknowledges every
frame it applies (``client.Client``) and sends a few actions a second. Between stretches of normal
play each client does one disruption, drawn in turn from a shuffled cycle so that every kind
comes round:

* a clean disconnect (close 1000) or an abrupt one (the TCP connection dropped), then a reconnect;
* a slow reader: it stops reading and sending for 7-11 s (the window fills, the server's ack
  timeout sends a keyframe: SPEC.md 11.6), or for longer than the server's idle timeout (the
  server closes with 4000: SPEC.md 11.7);
* a malformed message (not JSON, an unknown type, a binary message, a second hello, an action with
  a parameter out of range: close 1008) or an oversize one (text or binary over the server's
  64 KiB cap: close 1009); the close code must be the one SPEC.md 11.7 names.

Halfway through, one world process is killed with SIGKILL (the one holding most sessions, found
in ``/sessions``' ``world_pid``). For some seconds around the kill no client disrupts anything, so
what each session sees then is the kill's doing alone. Checked:

1. the killed process's sessions end with 1011 (SPEC.md 11.7) and resume, on reconnection, on a
   new world (a new world process) that starts with a keyframe; the other sessions notice nothing:
   no close, no frame error, no resync, no keyframe, no gap in their frames;
2. the RSS of the server and its world processes at the end is at most 10% above the warm-up's;
3. after the clients close, the server has no more file descriptors open than before they came
   (and no world left running);
4. the server log holds no untyped error (an error line that is not one of its named events, or
   carries a traceback, or any stderr line that is not its JSON log); frame errors and unexpected
   closes seen by the clients count as errors too.

The report (``--out``) has a row per minute (sessions, frames/s, reconnects, closes by code as the
server counts them, RSS, fds, errors) and a verdict per requirement. ``tests/test_soak.py`` runs
the same code for two minutes with 8 clients.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from codec.wire import FORMATS

from .actions import Move, Turn
from .client import Client, ProtocolClosed, ServerBusy

ROOT = Path(__file__).resolve().parent.parent

IDLE_TIMEOUT = 20.0          # the server's --idle-timeout in the soak (the long pause outlasts it)
MAX_MESSAGE = 65536          # the server's cap on client messages (SPEC.md 11.7)
RSS_GROWTH = 0.10            # allowed growth of the server's RSS after warm-up
QUIET_BEFORE, QUIET_AFTER = 4.0, 16.0   # no disruption this long before / after the kill
KILL_CLOSE_S = 10.0          # the killed world's sessions must be closed within this
RESUME_S = 40.0              # ... and streaming again (keyframe first) within this of the kill
NOTICE_S = 12.0              # the other sessions are watched this long after the kill
MAX_GAP_S = 3.0              # ... and must get frames with no longer gap (the worlds tick at 10 Hz)
TYPED_EVENT = re.compile(r"^[a-z_]+(\.[a-z_]+)+$")

# disruption kind -> expected close code (None: the session must survive; "client": the client ends it)
MALFORMED = {
    "bad_json": 1008, "unknown_type": 1008, "binary": 1008, "second_hello": 1008, "bad_params": 1008,
    "oversize_text": 1009, "oversize_binary": 1009,
}
DISRUPTIONS = {"disconnect": "client", "abort": "client", "pause": None, "long_pause": 4000, **MALFORMED}


def _malformed(kind: str):
    """The message a misbehaving client sends: (text or bytes)."""
    if kind == "bad_json":
        return '{"type": "ack", "seq": 1,'
    if kind == "unknown_type":
        return json.dumps({"type": "teleport", "to": "moon"})
    if kind == "binary":
        return b"\x00gsd?"
    if kind == "second_hello":
        return json.dumps({"type": "hello", "protocol": "gsd/1", "versions": list(FORMATS), "max_sh_degree": 3,
                           "budgets": {"max_gaussians": 10 ** 6, "max_bytes_per_second": 10 ** 7,
                                       "max_frame_bytes": 1 << 24}})
    if kind == "bad_params":
        return json.dumps({"type": "action", "seq": 0, "kind": "move", "params": {"distance": 1e9}, "id": 1})
    if kind == "oversize_text":
        return json.dumps({"type": "resync", "reason": "CLIENT", "pad": "x" * (MAX_MESSAGE + 100)})
    if kind == "oversize_binary":
        return bytes(MAX_MESSAGE + 100)
    raise ValueError(kind)


# -- measurements of the server process -------------------------------------------------------------
def _tree(pid: int) -> list:
    out = [pid]
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            for k in (task / "children").read_text().split():
                out += _tree(int(k))
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


def rss_mb(pid: int) -> dict:
    """RSS of the process and of each descendant (the world processes), MB by pid."""
    out = {}
    for p in _tree(pid):
        try:
            m = re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{p}/status").read_text())
        except FileNotFoundError:
            continue
        if m:
            out[p] = int(m.group(1)) / 1024
    return out


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pids: list) -> float:
    t = 0.0
    for p in pids:
        try:
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        t += (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    return t


def box_cpu_seconds() -> float:
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def parse_metrics(text: str) -> dict:
    out = {"closes": Counter(), "resyncs": Counter(), "sessions": 0, "worlds": 0}
    for line in text.splitlines():
        if line.startswith("gsd_session_closes_total{"):
            code = re.search(r'code="([^"]*)"', line).group(1)
            out["closes"][code] = int(float(line.rsplit(" ", 1)[1]))
        elif line.startswith("gsd_resyncs_total{"):
            reason = re.search(r'reason="([^"]*)"', line).group(1)
            out["resyncs"][reason] = int(float(line.rsplit(" ", 1)[1]))
        elif line.startswith("gsd_sessions "):
            out["sessions"] = int(float(line.split()[1]))
        elif line.startswith("gsd_worlds "):
            out["worlds"] = int(float(line.split()[1]))
    return out


def classify_log(text: str) -> dict:
    """Server stderr: typed error events (by name), untyped errors (lines), warnings (by name)."""
    typed, warnings, untyped = Counter(), Counter(), []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            m = json.loads(line)
        except json.JSONDecodeError:
            m = None
        if not isinstance(m, dict) or "level" not in m:
            untyped.append(line)                 # a traceback or a print that bypassed the JSON log
            continue
        level, name = m.get("level"), str(m.get("event", ""))
        if level in ("error", "critical"):
            if "exc" in m or not TYPED_EVENT.match(name):
                untyped.append(line)
            else:
                typed[name] += 1
        elif level == "warning":
            warnings[name if TYPED_EVENT.match(name) else "other"] += 1
    return {"typed": typed, "untyped": untyped, "warnings": warnings}


# -- the clients ---------------------------------------------------------------------------------
@dataclass
class SessionRec:
    """One session of one client, as the client saw it."""
    client: int
    world: str
    connected: float                       # time (relative to t0) of the connect
    started: float | None = None           # first keyframe applied
    ended: float | None = None
    code: int | None = None                # close code the server sent (None: the client closed it)
    reason: str = ""
    expected: object = "client"            # close code the client expected, "client", or None
    disruption: str | None = None
    keyframes: list = field(default_factory=list)     # times of keyframes after the first
    window_frames: list = field(default_factory=list)  # times of frames applied near the kill
    frames: int = 0
    errors: int = 0                        # frame errors (digest, decode) and client resyncs


class Soak:
    def __init__(self, clients: int, seconds: float, *, seed: int = 0, workers: int = 2, host: str = "127.0.0.1",
                 row_s: float = 60.0, warmup_s: float | None = None, kill_at: float | None = None,
                 mean_play_s: float | None = None, rate: float = 2.0, target_live: int = 2000, log=print):
        self.n, self.seconds, self.seed, self.workers, self.host = clients, seconds, seed, workers, host
        self.row_s = row_s
        self.warmup_s = warmup_s if warmup_s is not None else min(120.0, max(20.0, 0.1 * seconds))
        self.kill_at = kill_at if kill_at is not None else 0.5 * seconds
        self.mean_play_s = mean_play_s if mean_play_s is not None else min(30.0, max(8.0, seconds / 12))
        self.rate, self.target_live, self.log = rate, target_live, log
        self.n_worlds = max(2, clients // 2)
        self.rng = random.Random(seed)
        self.kinds: list = []
        self.sessions: list = []
        self.counts = Counter()            # running totals: frames, reconnects, errors, by disruption kind
        self.problems: list = []           # (t, text) of everything that went wrong on the client side
        self.kill: dict = {}
        self.rows: list = []

    # time relative to the start of the load
    def now(self) -> float:
        return time.monotonic() - self.t0

    def problem(self, text: str) -> None:
        self.counts["errors"] += 1
        if len(self.problems) < 200:
            self.problems.append((round(self.now(), 1), text))

    def next_kind(self) -> str:
        if not self.kinds:
            self.kinds = list(DISRUPTIONS)
            self.rng.shuffle(self.kinds)
        return self.kinds.pop()

    def quiet(self, start: float, end: float) -> bool:
        """True when [start, end] overlaps the calm around the kill."""
        return start < self.kill_at + QUIET_AFTER and end > self.kill_at - QUIET_BEFORE

    # -- one client ------------------------------------------------------------------------------
    async def client(self, k: int) -> None:
        rng = random.Random(self.seed * 7919 + k)
        world = f"soak-{k % self.n_worlds}"
        url = f"{self.ws_url}?world={world}"
        first = True
        await asyncio.sleep(k * 0.2)
        while self.now() < self.seconds:
            c = Client(url, max_bytes_per_second=50_000_000)
            rec = SessionRec(k, world, self.now())
            try:
                try:
                    await c.connect()
                except ServerBusy as e:
                    self.counts["refused"] += 1
                    await asyncio.sleep(e.retry_after * (1 + 0.5 * rng.random()))
                    continue
                except (aiohttp.ClientError, OSError) as e:
                    self.problem(f"client {k}: connect failed: {type(e).__name__}: {e}")
                    await asyncio.sleep(1.0)
                    continue
                self.sessions.append(rec)
                f = await c.next_frame(60)
                if not f.keyframe:
                    self.problem(f"client {k}: first frame of a session is not a keyframe")
                rec.started = self.now()
                if not first:
                    self.counts["reconnects"] += 1
                first = False
                await self.play(c, rec, rng)
            except ProtocolClosed as e:
                rec.code, rec.reason = e.code, e.reason
                if rec.disruption is None or DISRUPTIONS.get(rec.disruption) != e.code:
                    rec.expected = None
            except (asyncio.TimeoutError, aiohttp.ClientError, ConnectionError, OSError) as e:
                rec.code, rec.reason, rec.expected = -1, f"{type(e).__name__}: {e}", None
            except Exception as e:                              # a bug of the soak: reported, the client goes on
                rec.code, rec.reason, rec.expected = -1, f"{type(e).__name__}: {e}", None
            finally:
                rec.ended = rec.ended or self.now()
                s = c.stats
                rec.errors += sum(s.errors.values()) + s.resyncs
                await c.close()
            if rec.errors:
                self.problem(f"client {k}: {rec.errors} frame errors / resyncs {dict(c.stats.errors)}")
            if rec.expected is None or (rec.code is not None and rec.expected != rec.code and rec.expected != "client"):
                if not self.kill_expected(rec):
                    self.problem(f"client {k}: session closed unexpectedly: {rec.code} {rec.reason!r}"
                                 + (f" (disruption {rec.disruption})" if rec.disruption else ""))
            if rec.code is not None and rec.code >= 1000:
                self.counts[f"close {rec.code}"] += 1
            await asyncio.sleep(0.05 + 0.2 * rng.random())

    def kill_expected(self, rec: SessionRec) -> bool:
        """A 1011 of a session of the killed world process, soon after the kill: expected."""
        kw = self.kill.get("worlds", ())
        return (rec.code == 1011 and rec.world in kw and self.kill["t"] <= rec.ended <= self.kill["t"] + KILL_CLOSE_S)

    async def play(self, c: Client, rec: SessionRec, rng: random.Random) -> None:
        next_act = self.now()
        next_dis = self.now() + self.mean_play_s * rng.uniform(0.3, 1.7)
        while True:
            now = self.now()
            if now >= self.seconds:
                rec.ended = now
                return                                           # the client closes it (1000)
            if now >= next_dis:
                kind = self.next_kind()
                plan = {"pause": 11.0, "long_pause": IDLE_TIMEOUT + 8}.get(kind, 3.0)
                if self.quiet(now, now + plan + 5.0):
                    next_dis = self.kill_at + QUIET_AFTER + rng.uniform(0, self.mean_play_s)
                    self.kinds.append(kind)                      # its turn comes again later
                    continue
                self.counts[f"disruption {kind}"] += 1
                if await self.disrupt(c, rec, kind, rng):
                    return
                next_dis = self.now() + self.mean_play_s * rng.uniform(0.3, 1.7)
                next_act = self.now()
                continue
            if now >= next_act:
                await c.act(Move(0.05) if rng.random() < 0.7 else Turn(rng.uniform(-10, 10)))
                next_act += 1.0 / self.rate
            try:
                f = await c.next_frame(max(0.01, min(next_act, next_dis, self.seconds) - self.now()))
            except asyncio.TimeoutError:
                continue
            t = self.now()
            rec.frames += 1
            self.counts["frames"] += 1
            if f.keyframe:
                rec.keyframes.append(t)
            if self.kill_at - 2 <= t <= self.kill_at + NOTICE_S + 20:
                rec.window_frames.append(t)

    async def disrupt(self, c: Client, rec: SessionRec, kind: str, rng: random.Random) -> bool:
        """Do one disruption; True when the session is over (the caller reconnects)."""
        rec.disruption = kind
        if kind == "disconnect":
            await c.close()
            rec.ended = self.now()
            return True
        if kind == "abort":
            await c._http.close()                                # TCP closed under the WebSocket, no close frame
            c._ws = c._http = None
            rec.ended = self.now()
            return True
        if kind == "pause":
            await asyncio.sleep(rng.uniform(7.0, 11.0))          # stop reading and sending
            rec.disruption = None                                # the session must carry on
            return False
        if kind == "long_pause":
            await asyncio.sleep(IDLE_TIMEOUT + rng.uniform(3.0, 6.0))
        else:
            msg = _malformed(kind)
            try:
                if isinstance(msg, bytes):
                    await c._ws.send_bytes(msg)
                else:
                    await c._ws.send_str(msg)
            except ConnectionError:
                pass
        code, reason = await self._close_of(c._ws, 10.0)
        rec.code, rec.reason, rec.ended = code, reason, self.now()
        want = DISRUPTIONS[kind]
        rec.expected = want if code == want else None
        self.counts[f"{kind} -> {code}"] += 1
        return True

    @staticmethod
    async def _close_of(ws, timeout: float) -> tuple:
        """Read (and discard) what is left until the server's close; its code and reason."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None, "no close within the timeout"
            try:
                msg = await ws.receive(timeout=left)
            except asyncio.TimeoutError:
                return None, "no close within the timeout"
            except RuntimeError:                 # a receive abandoned by a timeout is still unwinding
                await asyncio.sleep(0.01)
                continue
            if msg.type == aiohttp.WSMsgType.CLOSE:
                # the code the server sent: aiohttp's close_code turns 1006 when its reply cannot be
                # written (the server has already dropped a connection that did not answer its close)
                return msg.data, msg.extra or ""
            if msg.type in (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                return ws.close_code, msg.extra or ""
            if msg.type == aiohttp.WSMsgType.ERROR:
                return ws.close_code or 1006, str(ws.exception())

    # -- the orchestra ---------------------------------------------------------------------------
    async def _get(self, http: aiohttp.ClientSession, path: str):
        async with http.get(self.http_url + path) as r:
            return await (r.json() if path != "/metrics" else r.text())

    async def killer(self, http: aiohttp.ClientSession) -> None:
        await asyncio.sleep(max(0.0, self.kill_at - self.now()))
        sessions = await self._get(http, "/sessions")
        workers = set(_tree(self.pid)[1:])
        by_pid = Counter(s["world_pid"] for s in sessions if s.get("world_pid") in workers)
        if not by_pid:
            self.kill = {"t": self.now(), "error": f"no world process to kill (sessions: {len(sessions)})"}
            return
        pid = by_pid.most_common(1)[0][0]
        worlds = sorted({s["world"] for s in sessions if s.get("world_pid") == pid})
        t = self.now()
        before = sorted(workers)
        os.kill(pid, signal.SIGKILL)
        self.kill = {"t": t, "pid": pid, "worlds": worlds, "workers_before": before, "sessions_on_it": by_pid[pid],
                     "sessions_elsewhere": sum(v for p, v in by_pid.items() if p != pid)}
        self.log(f"  t={t:.0f}s killed world process {pid} (worlds {', '.join(worlds)}; "
                 f"{by_pid[pid]} sessions on it, {self.kill['sessions_elsewhere']} elsewhere)")
        await asyncio.sleep(RESUME_S)
        self.kill["workers_after"] = sorted(set(_tree(self.pid)[1:]))

    async def sampler(self, http: aiohttp.ClientSession) -> None:
        last = {"closes": Counter(), "frames": 0, "reconnects": 0, "errors": 0, "t": 0.0}
        k = 1
        while True:
            await asyncio.sleep(max(0.0, min(k * self.row_s, self.seconds) - self.now()))
            t = self.now()
            try:
                m = parse_metrics(await self._get(http, "/metrics"))
            except (aiohttp.ClientError, OSError) as e:
                self.problem(f"metrics unavailable: {e}")
                m = {"closes": last["closes"], "resyncs": Counter(), "sessions": -1, "worlds": -1}
            row = {"t": t, "sessions": m["sessions"], "worlds": m["worlds"],
                   "fps": (self.counts["frames"] - last["frames"]) / max(1e-9, t - last["t"]),
                   "reconnects": self.counts["reconnects"] - last["reconnects"],
                   "closes": m["closes"] - last["closes"], "rss_pids": rss_mb(self.pid), "fds": fds(self.pid),
                   "errors": self.counts["errors"] - last["errors"], "resyncs": m["resyncs"]}
            row["rss"] = sum(row["rss_pids"].values())
            self.rows.append(row)
            last = {"closes": m["closes"], "frames": self.counts["frames"], "reconnects": self.counts["reconnects"],
                    "errors": self.counts["errors"], "t": t}
            self.log(f"  t={t:5.0f}s sessions {row['sessions']:3d} worlds {row['worlds']:3d} "
                     f"frames/s {row['fps']:6.1f} reconnects {row['reconnects']:3d} RSS {row['rss']:6.0f} MB "
                     f"fds {row['fds']:3d} errors {row['errors']} load {os.getloadavg()[0]:.2f}")
            if t >= self.warmup_s and "warm_rss" not in self.kill_marks:
                self.kill_marks["warm_rss"] = row["rss"]
                self.kill_marks["warm_rss_pids"] = row["rss_pids"]
                self.kill_marks["warm_t"] = t
            if t >= self.seconds - 0.5:
                self.kill_marks["end_rss"] = row["rss"]
                self.kill_marks["end_rss_pids"] = row["rss_pids"]
                return
            k += 1

    async def _load(self) -> None:
        self.kill_marks: dict = {}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
            # warm: the world processes are up (a session opened and closed), nothing else running
            async with Client(f"{self.ws_url}?world=warm") as w:
                await w.next_frame(120)
            for _ in range(100):
                m = parse_metrics(await self._get(http, "/metrics"))
                if m["sessions"] == 0 and m["worlds"] == 0:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)
            self.fds_before = fds(self.pid)
            self.t0 = time.monotonic()
            self.cpu0 = (cpu_seconds(_tree(self.pid)), time.process_time(), box_cpu_seconds(), time.monotonic())
            await asyncio.gather(self.sampler(http), self.killer(http), *(self.client(k) for k in range(self.n)))
            self.cpu1 = (cpu_seconds(_tree(self.pid)), time.process_time(), box_cpu_seconds(), time.monotonic())
            # every client has closed: the server must let go of everything
            for _ in range(200):
                m = parse_metrics(await self._get(http, "/metrics"))
                if m["sessions"] == 0 and m["worlds"] == 0:
                    break
                await asyncio.sleep(0.1)
            self.end_metrics = m
        await asyncio.sleep(1.0)                    # the last HTTP connections closed on both sides
        self.fds_after = fds(self.pid)

    def run(self) -> dict:
        port = _free_port(self.host)
        self.ws_url, self.http_url = f"ws://{self.host}:{port}/ws", f"http://{self.host}:{port}"
        self.server_args = ["--host", self.host, "--port", str(port), "--workers", str(self.workers),
                            "--target-live", str(self.target_live), "--tick-hz", "10", "--seed", str(self.seed),
                            "--idle-timeout", f"{IDLE_TIMEOUT:g}", "--admit-min-sessions", str(4 * self.n + 8),
                            "--max-sessions", str(4 * self.n + 8), "--retry-after", "2", "--log-level", "info"]
        logf = tempfile.TemporaryFile()
        self.load_before = os.getloadavg()
        srv = subprocess.Popen([sys.executable, "-m", "reference_generator.server", *self.server_args], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=logf)
        self.pid = srv.pid
        try:
            for _ in range(600):
                try:
                    socket.create_connection((self.host, port), 0.1).close()
                    break
                except OSError:
                    if srv.poll() is not None:
                        raise RuntimeError("gsd-serve exited at start")
                    time.sleep(0.1)
            asyncio.run(self._load())
        finally:
            srv.send_signal(signal.SIGTERM)
            try:
                srv.wait(20)
            except subprocess.TimeoutExpired:
                srv.kill()
                srv.wait()
            logf.seek(0)
            self.server_log = logf.read().decode(errors="replace")
        self.load_after = os.getloadavg()
        return self.result()

    def result(self) -> dict:
        sv, pv, bv, tv = (b - a for a, b in zip(self.cpu0, self.cpu1))
        return {"clients": self.n, "seconds": self.seconds, "workers": self.workers, "seed": self.seed,
                "rows": self.rows, "sessions": self.sessions, "kill": self.kill, "counts": dict(self.counts),
                "problems": self.problems, "log": classify_log(self.server_log), "server_args": self.server_args,
                "fds_before": self.fds_before, "fds_after": self.fds_after, "end_metrics": self.end_metrics,
                "warm_rss": self.kill_marks.get("warm_rss"), "warm_t": self.kill_marks.get("warm_t"),
                "end_rss": self.kill_marks.get("end_rss"),
                "warm_rss_pids": self.kill_marks.get("warm_rss_pids", {}),
                "end_rss_pids": self.kill_marks.get("end_rss_pids", {}),
                "cpu": {"server": sv / tv, "clients": pv / tv, "other": max(0.0, bv / tv - sv / tv - pv / tv)},
                "load": (self.load_before, self.load_after), "exit_code": None}


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# -- verdicts ----------------------------------------------------------------------------------------
def kill_verdict(r: dict) -> tuple[bool, str, dict]:
    """The killed process's sessions closed with 1011 and resumed with a keyframe; the others noticed nothing."""
    kill = r["kill"]
    if "pid" not in kill:
        return False, kill.get("error", "no kill happened"), {}
    t, worlds = kill["t"], set(kill["worlds"])
    by_client: dict = {}
    for s in r["sessions"]:
        by_client.setdefault(s.client, []).append(s)
    affected, unaffected, bad = 0, 0, []
    for k, ss in by_client.items():
        live = [s for s in ss if s.started is not None and s.started < t - 0.5 and (s.ended is None or s.ended > t)]
        if not live:
            continue
        s = live[0]
        if s.world in worlds:
            affected += 1
            if s.code != 1011 or s.ended > t + KILL_CLOSE_S:
                bad.append(f"client {k} (world {s.world}, killed): ended {'at %.1f s' % (s.ended - t) if s.ended else 'never'}"
                           f" after the kill with {s.code} {s.reason!r}, not 1011 within {KILL_CLOSE_S:g} s")
                continue
            nxt = [x for x in ss if x.connected >= s.ended]
            if not nxt or nxt[0].started is None or nxt[0].started > t + RESUME_S:
                bad.append(f"client {k} (world {s.world}, killed): no new session streaming within {RESUME_S:g} s")
        else:
            unaffected += 1
            end = t + NOTICE_S
            why = []
            if s.ended is not None and s.ended < end:
                why.append(f"closed {s.ended - t:.1f} s after the kill ({s.code} {s.reason!r})")
            if s.errors:
                why.append(f"{s.errors} frame errors / resyncs")
            if any(t - 0.5 <= x <= end for x in s.keyframes):
                why.append("got a keyframe")
            ts = [t - 0.5] + [x for x in s.window_frames if t - 0.5 <= x <= end] + [min(end, s.ended or end)]
            gap = max(b - a for a, b in zip(ts, ts[1:]))
            if gap > MAX_GAP_S:
                why.append(f"no frame for {gap:.1f} s")
            if why:
                bad.append(f"client {k} (world {s.world}, not killed): " + "; ".join(why))
    ok = not bad and affected > 0 and unaffected > 0
    text = (f"killed process {kill['pid']} (worlds {', '.join(sorted(worlds))}) at t={t:.0f} s: {affected} sessions on "
            f"it, {unaffected} elsewhere")
    if affected == 0 or unaffected == 0:
        text += "; the check needs sessions on both sides"
    return ok, text + ("; " + "; ".join(bad[:6]) if bad else ""), {"affected": affected, "unaffected": unaffected,
                                                                  "bad": bad}


def verdicts(r: dict) -> list:
    """(requirement, met, detail) per requirement."""
    out = []
    ok, text, _ = kill_verdict(r)
    out.append(("killed world process: its sessions close with 1011 and resume with a keyframe; the others "
                "notice nothing", ok, text))
    w, e = r["warm_rss"], r["end_rss"]
    if w and e:
        g = e / w - 1
        text = f"all: {w:.0f} MB at t={r['warm_t']:.0f} s -> {e:.0f} MB at the end ({g:+.1%})"
        # the killed process's successor starts small: judge the processes that lived through too
        wp, ep = r.get("warm_rss_pids") or {}, r.get("end_rss_pids") or {}
        both = sorted(set(wp) & set(ep))
        if both:
            ws, es = sum(wp[p] for p in both), sum(ep[p] for p in both)
            g2 = es / ws - 1
            text += f"; the {len(both)} processes alive at both times (server + world processes not killed): " \
                    f"{ws:.0f} -> {es:.0f} MB ({g2:+.1%})"
            g = max(g, g2)
        out.append((f"server RSS (with world processes) after warm-up grows at most {RSS_GROWTH:.0%}",
                    g <= RSS_GROWTH, text))
    else:
        out.append((f"server RSS after warm-up grows at most {RSS_GROWTH:.0%}", False, "not measured"))
    em = r["end_metrics"]
    fd_ok = r["fds_after"] <= r["fds_before"] and em["sessions"] == 0 and em["worlds"] == 0
    out.append(("no file descriptor (or world) leaks", fd_ok,
                f"server fds {r['fds_before']} before the clients, {r['fds_after']} after they closed; "
                f"{em['sessions']} sessions and {em['worlds']} worlds left"))
    lg = r["log"]
    n_lost = lg["typed"].get("world.lost", 0)
    kw = len(r["kill"].get("worlds", ()))
    log_ok = not lg["untyped"] and not r["problems"] and n_lost <= kw and \
        set(lg["typed"]) <= {"world.lost"}
    detail = (f"{len(lg['untyped'])} untyped error lines in the server log; typed errors "
              f"{dict(lg['typed']) or 'none'} ({kw} worlds killed); {len(r['problems'])} client-side errors")
    if lg["untyped"]:
        detail += f"; first: {lg['untyped'][0][:300]}"
    if r["problems"]:
        detail += f"; first: {r['problems'][0]}"
    out.append(("no untyped errors in the server log, no frame errors or unexpected closes at the clients",
                log_ok, detail))
    c = r["counts"]
    missing = [k for k in DISRUPTIONS if not c.get(f"disruption {k}")]
    wrong = {k: v for k, v in c.items() if " -> " in k and k.split(" -> ")[1] != str(DISRUPTIONS[k.split(" -> ")[0]])}
    out.append(("every disruption happened, malformed / oversize messages and the idle timeout got their "
                "SPEC.md 11.7 close codes", not missing and not wrong,
                ", ".join(f"{k}: {c.get('disruption ' + k, 0)}" for k in DISRUPTIONS)
                + (f"; never: {', '.join(missing)}" if missing else "") + (f"; wrong codes: {wrong}" if wrong else "")))
    return out


def report(r: dict, command: str, started: str) -> str:
    cpu, (l0, l1) = r["cpu"], r["load"]
    lines = ["# Soak test of gsd-serve", "",
             f"`{command}` on {platform.machine()}, {os.cpu_count()} cores, started {started}; "
             f"{r['seconds'] / 60:g} minutes of load. Server: `gsd-serve {' '.join(r['server_args'])}` "
             f"(main process + {r['workers']} world processes; two clients per shared world, "
             f"{max(2, r['clients'] // 2)} worlds). The clients (one Python process) decode, digest-check and "
             "acknowledge every frame and send 2 actions/s each.", "",
             f"Load on the box: server {cpu['server']:.2f} cores, clients {cpu['clients']:.2f}, other work "
             f"{cpu['other']:.2f} (the box is shared); load average {l0[0]:.2f} before, {l1[0]:.2f} after.", "",
             "| t (s) | sessions | worlds | frames/s (all clients) | reconnects | closes by code (server) "
             "| keyframes for ack timeout (total) | RSS server + world processes | fds (server) | errors |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        closes = ", ".join(f"{k}: {v}" for k, v in sorted(row["closes"].items()) if v) or "-"
        lines.append(f"| {row['t']:.0f} | {row['sessions']} | {row['worlds']} | {row['fps']:.1f} | {row['reconnects']} "
                     f"| {closes} | {row['resyncs'].get('ACK_TIMEOUT', 0)} | {row['rss']:.0f} MB | {row['fds']} "
                     f"| {row['errors']} |")
    lines += ["", "## Requirements", "", "| requirement | verdict | detail |", "|---|---|---|"]
    vs = verdicts(r)
    for name, ok, detail in vs:
        lines.append(f"| {name} | {'met' if ok else '**missed**'} | {detail.replace('|', '/')} |")
    c = r["counts"]
    lines += ["", "## Disruptions and closes (client side)", "",
              ", ".join(f"{k}: {v}" for k, v in sorted(c.items())), ""]
    if r["kill"]:
        k = r["kill"]
        lines += [f"Kill: {json.dumps({x: k[x] for x in k if x != 'worlds'})}; worlds "
                  f"{', '.join(k.get('worlds', []))}.", ""]
    if r["problems"]:
        lines += ["Client-side errors (first 20):", ""] + [f"- t={t} s: {p}" for t, p in r["problems"][:20]] + [""]
    lg = r["log"]
    lines += [f"Server log: warnings {dict(lg['warnings']) or 'none'}; typed errors {dict(lg['typed']) or 'none'}; "
              f"untyped errors {len(lg['untyped'])}.", ""]
    for line in lg["untyped"][:3]:                   # in full: a soak's bug is found from its traceback
        try:
            m = json.loads(line)
            line = json.dumps({k: v for k, v in m.items() if k != "exc"}) + "\n" + str(m.get("exc", ""))
        except (json.JSONDecodeError, AttributeError):
            pass
        lines += ["```", line.strip()[:4000], "```", ""]
    lines += [f"Overall: {'all requirements met' if all(ok for _, ok, _ in vs) else 'requirements missed'}.", ""]
    return "\n".join(lines)


def run_soak(clients: int, seconds: float, **kw) -> dict:
    return Soak(clients, seconds, **kw).run()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="soak", description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2, help="world processes of the server (at least 2: one is killed)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--out", default=str(ROOT / "SOAK.md"), help="report file, or - for stdout only")
    a = ap.parse_args(argv)
    if a.workers < 2 or a.clients < 4 or a.minutes <= 0:
        ap.error("--workers >= 2, --clients >= 4 and --minutes > 0 required")
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    cmd = "python -m reference_generator.soak " + " ".join(argv if argv is not None else sys.argv[1:])
    seconds = a.minutes * 60
    r = run_soak(a.clients, seconds, seed=a.seed, workers=a.workers, host=a.host,
                 row_s=60.0 if seconds >= 300 else 15.0, log=lambda s: print(s, flush=True))
    text = report(r, cmd, started)
    print(text)
    if a.out != "-":
        Path(a.out).write_text(text)
    return 0 if all(ok for _, ok, _ in verdicts(r)) else 1


if __name__ == "__main__":
    sys.exit(main())
