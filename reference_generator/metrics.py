"""Server metrics (Prometheus text format, prometheus-client) and structured JSON logs.

One registry per server, so tests can run several servers in one process. Per-session series
carry a ``session`` label and are removed when the session ends.
"""
from __future__ import annotations

import json
import logging
import time
from collections import deque
from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

def percentile(xs: list, p: float) -> float:
    """Nearest-rank percentile (nan for no samples): what gsd-watch, the load bench and admission
    control use."""
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


_MS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.04, 0.06, 0.1, 0.2, 0.5, 1.0, 2.0)


class Metrics:
    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.sessions = Gauge("gsd_sessions", "open sessions", registry=r)
        self.worlds = Gauge("gsd_worlds", "running worlds", registry=r)
        self.step = Histogram("gsd_step_seconds", "world generator step time", buckets=_MS, registry=r)
        self.encode = Histogram("gsd_encode_seconds", "quantize+encode+digest time of a world step", buckets=_MS, registry=r)
        self.latency = Histogram("gsd_action_to_delta_seconds", "action received -> its frame written to the socket",
                                 buckets=_MS, registry=r)
        self.bytes = Counter("gsd_session_bytes_sent", "record bytes sent", ["session"], registry=r)
        self.frames = Counter("gsd_session_frames_sent", "frames sent", ["session"], registry=r)
        self.keyframes = Counter("gsd_session_keyframes_sent", "keyframes sent", ["session"], registry=r)
        self.byte_rate = Gauge("gsd_session_bytes_per_second", "bytes/s over the last few seconds", ["session"], registry=r)
        self.frame_rate = Gauge("gsd_session_frames_per_second", "frames/s over the last few seconds", ["session"], registry=r)
        self.depth = Gauge("gsd_session_queue_depth", "frames sent and not yet acknowledged", ["session"], registry=r)
        self.session_step = Gauge("gsd_session_step_seconds", "recent mean step time of the session's world",
                                  ["session"], registry=r)
        self.session_encode = Gauge("gsd_session_encode_seconds", "recent mean encode time of the session's world",
                                    ["session"], registry=r)
        self.composed = Counter("gsd_composed_steps", "world steps folded into a larger frame for a lagging client",
                                registry=r)
        self.actions = Counter("gsd_actions", "actions received", ["result"], registry=r)
        self.resyncs = Counter("gsd_resyncs", "keyframes sent to resynchronise a client", ["reason"], registry=r)
        self.closes = Counter("gsd_session_closes", "sessions closed", ["code"], registry=r)
        # admission control (server.Admission): the signals over its window, and the refusals
        self.step_wait = Histogram("gsd_step_wait_seconds", "an action's wait for its world step beyond the "
                                   "step's own compute", buckets=_MS, registry=r)
        self.admission_open = Gauge("gsd_admission_open", "1 while new sessions are admitted, 0 while they are "
                                    "refused with 1013", registry=r)
        self.lanes_busy = Gauge("gsd_world_lanes_busy", "share of the time the world lanes (worker processes, or "
                                "the GIL of thread-hosted worlds) spent in world calls", registry=r)
        self.wait_p90 = Gauge("gsd_admission_step_wait_seconds", "p90 of the step waits over the admission window",
                              registry=r)
        self.queue_age = Gauge("gsd_admission_queue_age_seconds", "age of the oldest action queued in any world",
                               registry=r)
        self.loop_lag = Gauge("gsd_event_loop_lag_seconds", "p90 lateness of the event loop's 0.1 s ticks over the "
                              "admission window", registry=r)
        self.refused = Counter("gsd_sessions_refused", "new sessions refused with 1013 (try again later), by the "
                               "signal that refused them", ["reason"], registry=r)
        self.admission_open.set(1)

    def text(self) -> bytes:
        return generate_latest(self.registry)

    def session(self, sid: str) -> "SessionSeries":
        """The per-session series of one session, looked up once (each frame updates eight)."""
        return SessionSeries(*(m.labels(sid) for m in (self.bytes, self.frames, self.keyframes, self.byte_rate,
                                                       self.frame_rate, self.depth, self.session_step,
                                                       self.session_encode)))

    def drop_session(self, sid: str) -> None:
        for m in (self.bytes, self.frames, self.keyframes, self.byte_rate, self.frame_rate, self.depth,
                  self.session_step, self.session_encode):
            try:
                m.remove(sid)
            except KeyError:
                pass


class SessionSeries(NamedTuple):
    bytes: Counter
    frames: Counter
    keyframes: Counter
    byte_rate: Gauge
    frame_rate: Gauge
    depth: Gauge
    step: Gauge
    encode: Gauge


class Rate:
    """Events and bytes per second over a sliding window of whole seconds."""

    def __init__(self, seconds: float = 3.0, clock=time.monotonic):
        self.seconds, self.clock = seconds, clock
        self.marks: deque = deque()         # (time, nbytes)

    def add(self, nbytes: int) -> None:
        now = self.clock()
        self.marks.append((now, nbytes))
        cut = now - self.seconds
        while self.marks and self.marks[0][0] < cut:
            self.marks.popleft()

    def rates(self) -> tuple[float, float]:
        now = self.clock()
        recent = [m for m in self.marks if m[0] >= now - self.seconds]
        return len(recent) / self.seconds, sum(b for _, b in recent) / self.seconds


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, event, and the record's ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"t": round(record.created, 3), "level": record.levelname.lower(), "event": record.getMessage()}
        out.update(getattr(record, "fields", {}))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def event(log: logging.Logger, name: str, level: int = logging.INFO, **fields) -> None:
    log.log(level, name, extra={"fields": fields})
