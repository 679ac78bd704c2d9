"""Per-client flow control of SPEC.md 11.6: one pending delta, a window of unacknowledged frames.

Two halves with one owner each, so no lock is needed:

* ``Pending`` lives on its world's thread (``worldhost.WorldHost``): every world step is composed
  into it, and it turns into frame bytes when the client's window opens. It never holds more than
  one delta, and it becomes "send a keyframe" when the delta would outgrow one (rule 3).
* ``Window`` lives on the event loop: the seq and digest of each frame sent and not yet
  acknowledged (at most ``W``), the byte-rate budget, and the ack checks of 11.5.

Neither does I/O; the server (``server.py``) wires them to a WebSocket. ``wait_for`` is the
timeout both sides of the session use (server and client): ``asyncio.wait_for`` of Python 3.10
and 3.11 loses a cancellation that arrives as the awaited operation completes, which would leave a
session's sender running after its session ended.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass

from codec import Delta, Encoder, compose
from codec.digest import Digest


async def wait_for(aw, timeout: float | None):
    """``await aw`` with a timeout (``asyncio.TimeoutError``), never swallowing a cancellation.

    ``asyncio.wait_for`` before Python 3.12 returns the result when the task awaiting it is
    cancelled in the same loop iteration as ``aw`` completes: the cancel is lost and the task goes
    on. Here a cancelled caller always gets ``CancelledError`` (``aw`` cancelled if unfinished)."""
    task = asyncio.ensure_future(aw)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:
        _abandon(task)
        raise
    if not done:
        _abandon(task)
        raise asyncio.TimeoutError
    return task.result()


def _abandon(task: asyncio.Future) -> None:
    """Cancel ``task`` without waiting for it (a write stuck on a dead socket may take long to
    unwind); its outcome is read when it ends, so it logs no 'exception never retrieved'."""
    task.cancel()
    task.add_done_callback(lambda t: t.cancelled() or t.exception())


@dataclass
class OutFrame:
    """One frame ready to send: its record bytes and what the client's state will be after it."""
    data: bytes
    seq: int
    digest: str
    keyframe: bool
    actions: list          # client action ids whose steps this frame covers
    composed: int          # world steps folded into this frame (1 when the client keeps up)
    camera: dict | None    # the world's camera after the frame (Camera.as_dict)
    detail: dict | None = None   # a progressive client's held, coarse and budget (SPEC.md 11.9)


class Pending:
    """The one pending delta of a client, from the last frame sent to the world's current state.

    ``head`` is the seq the client will be at once everything sent and pending has arrived.
    Owned by the world thread.
    """
    tracked = False    # frames are made for this client alone (a progressive join, progressive_join.py)
    busy = False       # ... and it has refinement to do: the world steps idle meanwhile

    def __init__(self, encoder: Encoder, max_frame_bytes: int):
        self.enc = encoder
        self.max_frame_bytes = max_frame_bytes
        self.delta: Delta | None = None
        self.data: bytes | None = None      # the world's own encoding of ``delta`` when it is one step
        self.need_keyframe = True            # a new client starts with a keyframe (11.3)
        self.head = -1
        self.last_sent = -1                  # seq of the last frame taken for sending (-1: none yet)
        self.actions: list = []
        self.steps = 0
        self.camera = None

    def push(self, d: Delta, data: bytes, action_ids: list, camera: dict | None = None, touched=None) -> None:
        """Fold one world step (already applied to the world's encoder) into the pending delta.
        ``touched``: the ids the step names, resolved (progressive clients use it; here unused)."""
        if self.need_keyframe:
            self.actions += action_ids       # the keyframe, cut from the newest state, answers them
            return
        if d.base_seq != self.head:
            if d.seq <= self.head:           # a keyframe cut after this step already covers it
                return
            self.need_keyframe = True        # cannot happen with one world thread; stay safe
            return
        self.actions += action_ids
        self.steps += 1
        self.camera = camera
        if self.delta is None:
            self.delta, self.data = d, data
        else:
            self.delta, self.data = compose(self.delta, d, self.enc.profile), None
            # Rule 3: a pending delta that touches as many Gaussians as are live costs a keyframe or more.
            if self.delta.n_add + self.delta.n_update >= max(len(self.enc.state), 1):
                self.request_keyframe()
                return
        self.head = d.seq

    def request_keyframe(self) -> None:
        self.need_keyframe = True
        self.delta, self.data = None, None

    @property
    def ready(self) -> bool:
        return self.need_keyframe or self.delta is not None

    def take(self, camera: dict | None = None) -> OutFrame | None:
        """The frame to send now (the pending delta, or a keyframe of the current state), or None."""
        if not self.ready:
            return None
        state = self.enc.state
        if not self.need_keyframe:
            data = self.data if self.data is not None else self.enc.frames.encode(self.delta)
            if len(data) <= self.max_frame_bytes:
                out = OutFrame(data, self.delta.seq, str(self.delta.digest), False, self.actions, self.steps,
                               self.camera)
                self._clear(self.delta.seq)
                return out
        k = self.enc.state_keyframe()
        data = self.enc.frames.encode(k)
        if len(data) > self.max_frame_bytes:
            raise FrameTooLarge(len(data), self.max_frame_bytes)
        # steps (SPEC.md 11.3): world steps from the previous frame sent to this client, 0 for a
        # session's first frame; a keyframe's seq is the current one, so seq - previous seq
        steps = k.seq - self.last_sent if self.last_sent >= 0 else 0
        out = OutFrame(data, k.seq, str(state.digest()), True, self.actions, steps, camera)
        self._clear(k.seq)
        return out

    def _clear(self, head: int) -> None:
        self.delta, self.data, self.need_keyframe = None, None, False
        self.head = self.last_sent = head
        self.actions, self.steps, self.camera = [], 0, None


class FrameTooLarge(Exception):
    def __init__(self, size: int, limit: int):
        super().__init__(size, limit)           # args as given: picklable across world processes
        self.size, self.limit = size, limit

    def __str__(self) -> str:
        return f"a keyframe of the scene is {self.size} bytes, over the client's max_frame_bytes {self.limit}"


class Window:
    """What the event loop knows of one client: unacknowledged frames and its byte budget."""

    def __init__(self, window: int, max_bytes_per_second: int, clock=time.monotonic):
        self.size = window
        self.rate = float(max_bytes_per_second)
        self.clock = clock
        self.unacked: deque = deque()        # (seq, digest text, sent time, keyframe)
        self.history: deque = deque(maxlen=4 * window)   # (seq, digest) of recent frames, kept across forget()
        self.acked = -1
        self.last_ack = clock()
        self.tokens = self.rate              # token bucket: about one second of budget
        self.stamp = clock()

    @property
    def depth(self) -> int:
        return len(self.unacked)

    def open(self) -> bool:
        return len(self.unacked) < self.size

    def wait_for_budget(self, nbytes: int) -> float:
        """Seconds to wait before ``nbytes`` fit the byte rate (0: send now)."""
        now = self.clock()
        self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= min(nbytes, self.rate):
            return 0.0
        return (min(nbytes, self.rate) - self.tokens) / self.rate

    def sent(self, seq: int, digest: str, nbytes: int, keyframe: bool) -> None:
        if keyframe:                        # acks for frames before a keyframe no longer matter
            self.unacked.clear()
            self.last_ack = self.clock()
        self.tokens -= nbytes
        self.unacked.append((seq, digest, self.clock(), keyframe))
        self.history.append((seq, digest))

    def ack(self, seq: int, digest: str) -> str | None:
        """Check an ack (11.5). None if it is good, else the reason the client needs a keyframe."""
        for i, (s, d, _, _) in enumerate(self.unacked):
            if s == seq:
                if Digest.parse(digest) != Digest.parse(d):
                    return "DIGEST_MISMATCH"
                for _ in range(i + 1):
                    self.unacked.popleft()
                self.acked = seq
                self.last_ack = self.clock()
                return None
        for s, d in self.history:            # a late ack of a frame sent before a keyframe or forget()
            if s == seq:
                return "DIGEST_MISMATCH" if Digest.parse(digest) != Digest.parse(d) else None
        return "UNKNOWN_SEQ"

    def stalled(self, timeout: float) -> bool:
        """Frames are out and nothing was acknowledged for ``timeout`` seconds (rule 3).

        Not after a keyframe already went out unacknowledged: one keyframe per stall, then the
        client is left to catch up (or to time out), not fed a keyframe every few seconds."""
        return (bool(self.unacked) and not self.unacked[0][3]
                and self.clock() - self.last_ack > timeout)

    def forget(self) -> None:
        """Drop the unacknowledged frames (a keyframe is on its way: the old acks say nothing)."""
        self.unacked.clear()
        self.last_ack = self.clock()
