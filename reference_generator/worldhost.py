"""WorldHost: one running world, its closed-loop encoder, and the pending deltas of its clients.

Everything that touches the world, the encoder state or a client's ``flow.Pending`` runs on the
host's own worker thread, one call at a time, so a world step (torch) never blocks the event
loop and no two calls race on the state. The event loop only awaits ``call`` and moves bytes.

A host steps at once for each queued action (oldest first), and when no action comes for
``1 / tick_hz`` seconds it steps with ``Idle`` (time passes: foliage sways, doors swing);
``tick_hz`` == 0 steps on actions only. Each step is encoded once; a
client that keeps up is sent exactly those bytes, a lagging one a composed delta (flow.py).
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch

from codec import Encoder

from .actions import Action, Idle
from .flow import Pending
from .protocol import to_delta
from .world import World, WorldConfig

log = logging.getLogger("gsd.server")


@dataclass
class StepStats:
    seq: int
    step_ms: float          # the generator step (torch), device synchronized
    encode_ms: float        # quantize + encode + digest on the host
    nbytes: int
    live: int
    action_ids: list = field(default_factory=list)
    received: list = field(default_factory=list)   # loop time each covered action arrived


class WorldHost:
    """One world; ``attach`` clients (Pending objects) and ``submit`` their actions."""

    _ids = itertools.count(1)

    def __init__(self, name: str, config: WorldConfig, *, seed: int = 0, device: str = "cpu",
                 tick_hz: float = 25.0, max_queued_actions: int = 64, on_step=None):
        self.name = name
        self.config = config
        self.seed = seed
        self.device = torch.device(device)
        self.tick_hz = tick_hz
        self.queue: deque = deque()
        self.max_queued = max_queued_actions
        self.dropped = 0
        self.on_step = on_step               # loop-side callback(host, StepStats) after each step
        self.pendings: dict = {}             # link id -> Pending   (world thread only)
        self.wakers: dict = {}               # link id -> asyncio.Event (loop only)
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"world-{name}")
        self.world: World | None = None
        self.encoder: Encoder | None = None
        self._kick = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.failed: BaseException | None = None
        self.last = None                     # StepStats of the newest step

    # -- running ------------------------------------------------------------------------------
    async def call(self, fn, *args):
        """Run ``fn(*args)`` on this world's thread."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def start(self) -> None:
        await self.call(self._reset)
        self._task = asyncio.create_task(self._run(), name=f"world-{self.name}")

    def _reset(self) -> None:
        self.world = World(self.config, self.device)
        self.encoder = Encoder(self.world.profile, max_gaussians=self.world.max_gaussians,
                               generator=f"gsd reference world (seed {self.seed})")
        out = self.world.reset(self.seed)
        self.encoder.encode_delta(to_delta(self.encoder, out))

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        self.executor.shutdown(wait=False, cancel_futures=True)

    def submit(self, action: Action, action_id=None) -> bool:
        """Queue a client's action (loop side). False when the queue is full (the action is dropped)."""
        if len(self.queue) >= self.max_queued:
            self.dropped += 1
            return False
        self.queue.append((action, action_id, time.monotonic()))
        self._kick.set()
        return True

    async def _next_actions(self, deadline: float | None) -> list:
        """Wait for the next step's input: a queued action at once, else (on a clock) Idle at the deadline."""
        while not self.queue:
            self._kick.clear()
            if deadline is None:
                await self._kick.wait()
                continue
            delay = deadline - time.monotonic()
            if delay <= 0:
                return []
            try:
                await asyncio.wait_for(self._kick.wait(), delay)
            except asyncio.TimeoutError:
                return []
        return [self.queue.popleft()]

    async def _run(self) -> None:
        period = 1.0 / self.tick_hz if self.tick_hz > 0 else 0.0
        try:
            while True:
                taken = await self._next_actions(time.monotonic() + period if period else None)
                action = taken[0][0] if taken else Idle()
                ids = [t[1] for t in taken if t[1] is not None]
                stats = await self.call(self._step, action, ids)
                stats.received = [t[2] for t in taken]
                self.last = stats
                if self.on_step:
                    self.on_step(self, stats)
                for ev in self.wakers.values():
                    ev.set()
        except asyncio.CancelledError:
            raise
        except Exception as e:                # a broken world: its sessions close with 1011
            self.failed = e
            log.exception("world %s failed", self.name)
            for ev in self.wakers.values():
                ev.set()

    def _step(self, action: Action, action_ids: list) -> StepStats:
        t0 = time.perf_counter()
        out = self.world.step(action)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t1 = time.perf_counter()
        d = to_delta(self.encoder, out)
        data = self.encoder.encode_delta(d)
        t2 = time.perf_counter()
        cam = out.camera.as_dict()
        for p in self.pendings.values():
            p.push(d, data, action_ids, cam)
        return StepStats(d.seq, (t1 - t0) * 1e3, (t2 - t1) * 1e3, len(data), len(self.encoder.state), action_ids)

    # -- clients ---------------------------------------------------------------------------------
    async def attach(self, max_frame_bytes: int, wake: asyncio.Event) -> tuple[int, Pending]:
        link = next(self._ids)
        pending = Pending(self.encoder, max_frame_bytes)

        def add():
            self.pendings[link] = pending

        await self.call(add)
        self.wakers[link] = wake
        wake.set()
        return link, pending

    async def detach(self, link: int) -> None:
        self.wakers.pop(link, None)
        try:
            await self.call(self.pendings.pop, link, None)
        except RuntimeError:                  # executor already shut down
            self.pendings.pop(link, None)

    @property
    def clients(self) -> int:
        return len(self.wakers)

    def take(self, pending: Pending):
        """The next frame for one client (world thread: call it through ``call``)."""
        return pending.take(self.world.camera().as_dict())

    def header_bytes(self) -> bytes:
        return self.encoder.header_bytes()
