"""WorldHost: one running world, its closed-loop encoder, and the pending deltas of its clients.

Two halves:

* ``WorldCore`` is everything that touches the world, the encoder state or a client's
  ``flow.Pending``. It is called one method at a time, so nothing races on the state.
* ``WorldHost`` lives on the event loop: the action queue, the step clock, the wake-ups of the
  clients' senders. It reaches its core through a backend: ``ThreadBackend`` (the core on a
  worker thread of this process: one GIL for all worlds) or ``ProcessPool`` (cores spread over
  worker processes, one GIL each: what lets a server use every core of the machine), or
  ``ray_host.RayPool`` (each core in a Ray actor anywhere in a cluster: ``gsd-serve --ray``,
  docs/scaling.md). Either way a world step never blocks the event loop.

A host steps at once for each queued action (oldest first; when it is behind, consecutive
actions that add up are folded into one step, ``actions.coalesce``), and when no action comes
for ``1 / tick_hz`` seconds it steps with ``Idle`` (time passes: foliage sways, doors swing);
``tick_hz`` == 0 steps on actions only. Each step is encoded once; a client that keeps up is
sent exactly those bytes, a lagging one a composed delta (flow.py).

Load, for admission control (server.py): every world call runs on a *lane* (a worker process,
or for thread-hosted worlds the one GIL they share), and a ``BusyMeter`` per lane adds up the
seconds that lane spent in world calls; each step reports how long its oldest action waited
beyond its own compute time (``StepStats.wait_ms``), and ``queue_age`` how long the oldest action
still queued has waited.

A world process that dies (killed, out of memory) fails the worlds it held: each of their calls
raises ``WorldGone``, their sessions close with 1011 (SPEC.md 11.7), and the pool starts a new
process in its place for the next world (``ProcessPool.backend``), so clients that reconnect get a
fresh world and its keyframe. The worlds of the other processes do not notice.
"""
from __future__ import annotations

import asyncio
import ctypes
import itertools
import logging
import multiprocessing
import sys
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from codec import Encoder

from .actions import Action, Idle, coalesce
from .flow import OutFrame, Pending, wait_for
from .progressive_join import CutCache, ProgressivePending, touched_ids
from .protocol import encoder_for, to_delta
from .world import World, WorldConfig

log = logging.getLogger("gsd.server")
REFINE_HZ = 25.0                         # idle steps per second while a progressive client refines (tick_hz 0)


class WorldGone(RuntimeError):
    """The process that held a world has ended (it was killed, or crashed): the world is lost."""


@dataclass
class StepStats:
    seq: int
    step_ms: float          # the generator step (torch), device synchronized
    encode_ms: float        # quantize + encode + digest on the host
    call_ms: float = 0.0    # the whole step call in the core (step, encode, fan-out to the clients)
    wait_ms: float | None = None   # set by the host for a step that serves actions: its oldest
                            # action, arrival to step done, less call_ms (time queued behind
                            # other steps and other worlds); None for an idle step
    refining: bool = False  # a progressive client still has refinement to do (SPEC.md 11.9)


class BusyMeter:
    """Seconds one lane spent in world calls, cumulative (thread safe).

    Calls may overlap (thread-hosted worlds each have a thread, all on one GIL): the lane counts
    as busy while at least one call is in progress, so the fraction read over a window is the
    lane's occupancy, never above 1.
    """

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self._lock = threading.Lock()
        self._active = 0
        self._since = 0.0
        self._total = 0.0

    def begin(self) -> None:
        with self._lock:
            if self._active == 0:
                self._since = self.clock()
            self._active += 1

    def end(self) -> None:
        with self._lock:
            self._active -= 1
            if self._active == 0:
                self._total += self.clock() - self._since

    def seconds(self) -> float:
        with self._lock:
            return self._total + (self.clock() - self._since if self._active else 0.0)

    def run(self, fn, *args):
        self.begin()
        try:
            return fn(*args)
        finally:
            self.end()


class WorldCore:
    """The world, its encoder and its clients' pending deltas; every method runs on one thread."""

    def __init__(self, config: WorldConfig, seed: int, device: str, progressive: dict | None = None):
        """``progressive``: the progressive join the server offers ({"max_frame_bytes", "first_bytes",
        "refine_bytes"}): the world cuts its stand-ins once as it is created (``CutCache.prime``)."""
        self.device = torch.device(device)
        self.world = World(config, self.device)
        self.encoder = encoder_for(self.world.profile, self.device, max_gaussians=self.world.max_gaussians,
                               generator=f"gsd reference world (seed {seed})",
                               **config.encoder_options())
        self.encoder.encode_delta(to_delta(self.encoder, self.world.reset(seed)))
        self.encoder.state.reserve(self.world.max_gaussians)   # its budget now, not a copy mid-session
        self.pendings: dict = {}             # link id -> Pending
        self.cuts = CutCache(self.encoder, ahead=True)   # stand-in cuts, made off this thread, shared by joiners
        if progressive is not None:
            self.cuts.prime(**progressive)

    def info(self) -> dict:
        return {"header": self.encoder.header_bytes(), "max_gaussians": self.world.max_gaussians}

    def step(self, action: Action, action_ids: list, ready: tuple = ()) -> tuple:
        """One world step, folded into every client's pending delta; returns its StepStats and
        the frames of the ``ready`` links (clients waiting to send), saving each a ``take`` call."""
        t0 = time.perf_counter()
        out = self.world.step(action)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t1 = time.perf_counter()
        d = to_delta(self.encoder, out)
        follow = self.cuts.active or any(p.tracked for p in self.pendings.values())
        touched = touched_ids(self.encoder.state, d) if follow else None   # before the step applies
        data = self.encoder.encode_delta(d)
        if self.cuts.active:                   # (then follow: touched was found)
            self.cuts.note(d.seq, touched)
        t2 = time.perf_counter()
        cam = out.camera.as_dict()
        for p in self.pendings.values():
            p.push(d, data, action_ids, cam, touched)
        frames = {link: self.pendings[link].take(cam) for link in ready if link in self.pendings}
        stats = StepStats(d.seq, (t1 - t0) * 1e3, (t2 - t1) * 1e3, (time.perf_counter() - t0) * 1e3,
                          refining=self.refining())
        return stats, frames

    def refining(self) -> bool:
        """A progressive client has refinement to do: a world that steps on actions only steps idle
        meanwhile, as refinement frames take the world's seq (SPEC.md 11.9)."""
        return any(p.busy for p in self.pendings.values())

    def attach(self, link: int, max_frame_bytes: int, progressive: dict | None = None) -> None:
        """A client's pending change; ``progressive`` ({"budget", "first_bytes", "refine_bytes"}):
        it joins progressively (SPEC.md 11.9)."""
        if progressive is None:
            self.pendings[link] = Pending(self.encoder, max_frame_bytes)
        else:
            self.pendings[link] = ProgressivePending(self.encoder, max_frame_bytes, **progressive, cuts=self.cuts)

    def detail(self, link: int, budget: int | None, eye: dict | None) -> bool:
        """A progressive client's detail message (SPEC.md 11.9); returns ``refining``."""
        p = self.pendings.get(link)
        if isinstance(p, ProgressivePending):
            p.set_detail(budget, eye)
        return self.refining()

    def detach(self, link: int) -> None:
        self.pendings.pop(link, None)

    def take(self, link: int, wait: bool = False) -> OutFrame | None:
        """The next frame for one client: its pending delta, or a keyframe, or None (also while the
        cut thread makes a progressive client's keyframe: a later step's ``take`` sends it).
        ``wait``: block for that cut instead (callers with no world stepping: tests, benches)."""
        p, cam = self.pendings[link], self.world.camera().as_dict()
        f = p.take(cam)
        while f is None and wait and self.cuts.job is not None:
            self.cuts.wait()
            f = p.take(cam)
        return f

    def request_keyframe(self, link: int) -> bool:
        """The client's next frame is a keyframe; returns ``refining``."""
        self.pendings[link].request_keyframe()
        return self.refining()

    def close(self) -> None:
        """Stop the world's chunk prefetch thread now: a dropped world left to the cycle collector
        keeps its thread and chunks alive meanwhile (a world process whose worlds come and go grew
        by a thread and megabytes per dropped world until a full collection)."""
        self.pendings.clear()
        self.cuts.close()
        self.world.close()


class ThreadBackend:
    """A core on a worker thread of this process; ``meter``: the lane of all thread-hosted worlds
    (world calls count as busy; creating the world, a one-off, does not)."""

    def __init__(self, name: str, meter: BusyMeter | None = None):
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"world-{name}")
        self.meter = meter or BusyMeter()
        self.core: WorldCore | None = None

    async def create(self, config, seed, device, progressive=None) -> None:
        loop = asyncio.get_running_loop()
        self.core = await loop.run_in_executor(self.executor, WorldCore, config, seed, device, progressive)

    async def call(self, method: str, *args):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.meter.run, getattr(self.core, method), *args)

    async def close(self) -> None:
        if self.core is not None:
            core, self.core = self.core, None
            self.executor.submit(core.close)          # after any call still queued on the world's thread
        self.executor.shutdown(wait=False, cancel_futures=False)


def _answer(conn, fn, *args) -> None:
    """Run one request and send (ok, result) back; an error goes back to the caller, the worker lives on."""
    try:
        conn.send((True, fn(*args)))
    except Exception as e:
        try:
            conn.send((False, e))
        except Exception:
            conn.send((False, RuntimeError(f"{type(e).__name__}: {e}")))


def _creator(conn, cores: dict) -> None:
    """A world process's second thread: builds new worlds, so that creating one (70 ms for a
    small world, 0.5 s for 200k Gaussians) does not stop the steps of the worlds already there."""
    def create(wid, args):
        cores[wid] = WorldCore(*args)

    while True:
        try:
            wid, args = conn.recv()
        except (EOFError, OSError):
            return
        _answer(conn, create, wid, args)


def _worker_main(conn, create_conn) -> None:
    """A world process: cores by id, one request at a time, (ok, result) back; new worlds are
    built on a second thread (``_creator``), sharing the CPU with the steps instead of blocking them."""
    torch.set_num_threads(1)
    sys.setswitchinterval(0.001)         # steps get the interpreter back within 1 ms of a creation
    cores: dict = {}
    threading.Thread(target=_creator, args=(create_conn, cores), name="world-create", daemon=True).start()
    while True:
        try:
            wid, method, args = conn.recv()
        except (EOFError, OSError):
            return
        if method == "quit":
            return
        _answer(conn, _call, cores, wid, method, args)


def _trim_heap() -> None:
    """Hand freed heap pages back to the OS (glibc's ``malloc_trim``; elsewhere nothing). A world
    is built on the creator thread and freed on the main one, which scatters its memory over two
    malloc arenas: without a trim a process whose worlds come and go keeps growing (about 2 MB a
    minute per process in the soak test, ``reference_generator/soak.py``)."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _call(cores: dict, wid: int, method: str, args: tuple):
    if method == "close":
        core = cores.pop(wid, None)
        if core is not None:
            core.close()
            _trim_heap()
        return None
    return getattr(cores[wid], method)(*args)


def _settle(fut: asyncio.Future, ok: bool, res) -> None:
    if fut.cancelled():                      # its caller went away (a session ended)
        return
    if ok:
        fut.set_result(res)
    else:
        fut.set_exception(res)


class _Worker:
    """One world process, seen from the server. Requests are written straight from the event loop
    and may queue in the pipe (the process works through them back to back, not idling while the
    server reads each reply); a reader thread hands each reply to the future of its request, in
    order. New worlds go over a second pipe to the process's creator thread."""

    def __init__(self, ctx, index: int, meter: BusyMeter | None = None):
        self.index = index
        self.conn, child = ctx.Pipe()
        self.create_conn, create_child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, create_child), name=f"gsd-world-{index}",
                                daemon=True)
        self.proc.start()
        child.close()
        create_child.close()
        self.create_io = ThreadPoolExecutor(1, thread_name_prefix=f"world-create-{index}")
        self.worlds = 0
        self.meter = meter or BusyMeter()    # busy while a request is out: the process works on them
        self._lock = threading.Lock()
        self._waiting: deque = deque()       # (loop, future) of each request sent, oldest first
        self._gone: BaseException | None = None
        threading.Thread(target=self._read, name=f"world-replies-{index}", daemon=True).start()

    def request(self, wid: int, method: str, args: tuple) -> asyncio.Future:
        """Send a request now (event loop thread); the future resolves with its reply
        (``WorldGone`` when the process has ended)."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with self._lock:
            if self._gone is not None:
                raise WorldGone(f"world process gone: {self._gone!r}")
            self.meter.begin()
            self._waiting.append((loop, fut))
            try:
                self.conn.send((wid, method, args))
            except (OSError, EOFError) as e:
                self._waiting.pop()
                self.meter.end()
                raise WorldGone(f"world process gone: {e!r}") from None
            except BaseException:
                self._waiting.pop()
                self.meter.end()
                raise
        return fut

    def _read(self) -> None:
        while True:
            try:
                ok, res = self.conn.recv()
            except (EOFError, OSError) as e:
                with self._lock:
                    self._gone = e
                    waiting = list(self._waiting)
                    self._waiting.clear()
                for loop, fut in waiting:
                    self.meter.end()
                    try:
                        loop.call_soon_threadsafe(_settle, fut, False, WorldGone("world process ended"))
                    except RuntimeError:      # that loop is closed (the server stopped)
                        pass
                return
            with self._lock:
                loop, fut = self._waiting.popleft()
                self.meter.end()
            loop.call_soon_threadsafe(_settle, fut, ok, res)

    def create(self, wid: int, args: tuple) -> None:
        """Build a world (a one-off, not counted as service load: steps that wait behind it show it)."""
        try:
            self.create_conn.send((wid, args))
            ok, res = self.create_conn.recv()
        except (EOFError, OSError) as e:
            raise WorldGone(f"world process {self.proc.pid} ended: {e!r}") from None
        if not ok:
            raise res

    @property
    def alive(self) -> bool:
        """False once the process has ended (``is_alive`` also reaps it) or its pipe broke."""
        return self._gone is None and self.proc.is_alive()

    def dispose(self) -> None:
        """Release what the server holds of an ended process: its pipes, its sentinel, its threads
        (the reply reader ends on the closed pipe). Requests still made on it raise at once."""
        with self._lock:
            if self._gone is None:
                self._gone = EOFError("world process replaced")
        self.proc.join(1)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(1)
        for c in (self.conn, self.create_conn):
            c.close()
        self.create_io.shutdown(wait=False, cancel_futures=True)
        try:
            self.proc.close()
        except ValueError:                    # still running (join timed out): leave it to the OS
            pass


class ProcessPool:
    """Worker processes shared by all worlds of a server; each world lives in one of them."""

    _wids = itertools.count(1)

    def __init__(self, processes: int):
        self.ctx = multiprocessing.get_context("spawn")   # fork after threads (torch, asyncio) is unsafe
        self.workers = [_Worker(self.ctx, i) for i in range(processes)]
        self.restarts = 0                    # processes started in place of ones that ended

    @property
    def meters(self) -> list:
        return [w.meter for w in self.workers]

    def backend(self, name: str | None = None) -> "ProcessBackend":
        self.replace_dead()
        w = min(self.workers, key=lambda w: w.worlds)
        return ProcessBackend(self, w, next(self._wids))

    def replace_dead(self) -> list:
        """Start a new process in place of each one that has ended (its busy meter carries on, so
        admission control keeps one lane per slot); returns the (old pid, exit code) of those replaced."""
        out = []
        for i, w in enumerate(self.workers):
            if w.alive:
                continue
            pid, code = w.proc.pid, w.proc.exitcode
            w.dispose()
            self.workers[i] = _Worker(self.ctx, w.index, meter=w.meter)
            self.restarts += 1
            out.append((pid, code))
            log.log(logging.WARNING, "world.process_restarted",
                    extra={"fields": {"old_pid": pid, "exitcode": code, "pid": self.workers[i].proc.pid}})
        return out

    def close(self) -> None:
        for w in self.workers:
            try:
                w.conn.send((0, "quit", ()))     # the process exits; the reply reader then sees the end
            except (OSError, ValueError):
                pass
            w.proc.join(2)
            w.conn.close()
            w.create_conn.close()
            if w.proc.is_alive():
                w.proc.terminate()
            w.create_io.shutdown(wait=False, cancel_futures=True)


class ProcessBackend:
    def __init__(self, pool: ProcessPool, worker: _Worker, wid: int):
        self.pool, self.worker, self.wid = pool, worker, wid
        self.core = None                     # lives in the worker process

    async def _req(self, method, args):
        return await self.worker.request(self.wid, method, args)

    @property
    def pid(self) -> int | None:
        return self.worker.proc.pid

    async def create(self, config, seed, device, progressive=None) -> None:
        self.worker.worlds += 1
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.worker.create_io, self.worker.create, self.wid,
                                   (config, seed, device, progressive))

    async def call(self, method: str, *args):
        return await self._req(method, args)

    async def close(self) -> None:
        self.worker.worlds -= 1
        try:
            await self._req("close", ())
        except (EOFError, OSError, RuntimeError):   # WorldGone included: nothing left to close
            pass


class WorldHost:
    """One world; ``attach`` clients and ``submit`` their actions (event loop side)."""

    _ids = itertools.count(1)

    def __init__(self, name: str, config: WorldConfig, *, seed: int = 0, device: str = "cpu",
                 tick_hz: float = 25.0, max_queued_actions: int = 64, on_step=None, pool: ProcessPool | None = None,
                 meter: BusyMeter | None = None, progressive: dict | None = None):
        self.name = name
        self.config = config
        self.seed = seed
        self.device = device
        self.tick_hz = tick_hz
        self.queue: deque = deque()          # (action, (session, id) or None, arrival time)
        self.max_queued = max_queued_actions
        self.on_step = on_step               # callback(host, StepStats) after each step
        self.wakers: dict = {}               # link id -> asyncio.Event
        self.ready: set = set()              # links whose sender waits with an open window
        self.prefetched: dict = {}           # link id -> OutFrame cut by the last step for it
        # pool: a ProcessPool, or a ray_host.RayPool (worlds as Ray actors); same backend interface
        self.backend = pool.backend(name) if pool else ThreadBackend(name, meter)
        self.progressive = progressive       # WorldCore's: the progressive join offered, for its first cut
        self._kick = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.failed: BaseException | None = None
        self.stopping = False                # the server is stopping it (its last client left)
        self.users = 0                       # sessions holding it, attached or on their way (server.py)
        self.step_ms = self.encode_ms = 0.0  # moving averages of the world's steps
        self.wait_ms = 0.0                   # ... and of the wait of the steps that serve actions
        self.header: bytes = b""
        self.max_gaussians = 0
        self.refining = False                # a progressive client refines: step idle even with tick_hz 0

    @property
    def encoder(self) -> Encoder:
        """The world's encoder, when the core is in this process (thread backend; tests)."""
        return self.backend.core.encoder

    async def call(self, method: str, *args):
        return await self.backend.call(method, *args)

    async def start(self) -> None:
        await self.backend.create(self.config, self.seed, self.device, self.progressive)
        info = await self.call("info")
        self.header, self.max_gaussians = info["header"], info["max_gaussians"]
        self._task = asyncio.create_task(self._run(), name=f"world-{self.name}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.backend.close()

    def submit(self, action: Action, action_id=None) -> bool:
        """Queue a client's action. False when the queue is full (the action is dropped)."""
        if len(self.queue) >= self.max_queued:
            return False
        self.queue.append((action, action_id, time.monotonic()))
        self._kick.set()
        return True

    def queue_age(self, now: float | None = None) -> float:
        """Seconds the oldest queued action has waited (0 with none queued)."""
        q = self.queue
        return max(0.0, (time.monotonic() if now is None else now) - q[0][2]) if q else 0.0

    async def _next_actions(self, deadline: float | None) -> list:
        """Wait for the next step's input: a queued action at once, else (on a clock) Idle at the deadline."""
        while not self.queue:
            self._kick.clear()
            if deadline is None:
                await self._kick.wait()
                if not self.queue and self.refining:
                    return []                # an idle step: a progressive client refines
                continue
            delay = deadline - time.monotonic()
            if delay <= 0:
                return []
            try:
                await wait_for(self._kick.wait(), delay)
            except asyncio.TimeoutError:
                return []
        taken = [self.queue.popleft()]
        merged = taken[0][0]
        while self.queue:                    # behind: fold what else is queued into this step
            m = coalesce(merged, self.queue[0][0])
            if m is None:
                break
            merged = m
            taken.append(self.queue.popleft())
        taken[0] = (merged,) + taken[0][1:]
        return taken

    async def _run(self) -> None:
        period = 1.0 / self.tick_hz if self.tick_hz > 0 else 0.0
        try:
            while True:
                # refinement frames take the world's seq, one per step (SPEC.md 11.9): a world that
                # steps on actions only steps idle while a progressive client refines
                tick = period or (1.0 / REFINE_HZ if self.refining else 0.0)
                taken = await self._next_actions(time.monotonic() + tick if tick else None)
                action = taken[0][0] if taken else Idle()
                ids = [t[1] for t in taken if t[1] is not None]
                ready = tuple(self.ready)
                self.ready.clear()
                stats, frames = await self.call("step", action, ids, ready)
                if stats is not None:    # None: no step ran (a shared Ray world another gateway just
                                         # stepped, or a world that resumed after a fault), frames only
                    k = 0.1 if self.step_ms else 1.0     # exponential moving averages over ~10 steps
                    self.step_ms += k * (stats.step_ms - self.step_ms)
                    self.encode_ms += k * (stats.encode_ms - self.encode_ms)
                    if taken:
                        waited = time.monotonic() - min(t[2] for t in taken)
                        stats.wait_ms = max(0.0, waited * 1e3 - stats.call_ms)
                        self.wait_ms += 0.1 * (stats.wait_ms - self.wait_ms)
                    self.refining = stats.refining
                    if self.on_step:
                        self.on_step(self, stats)
                for link, f in frames.items():
                    if f is not None and link in self.wakers:
                        self.prefetched[link] = f
                for ev in self.wakers.values():
                    ev.set()
        except asyncio.CancelledError:
            raise
        except WorldGone as e:                # its process ended: its sessions close with 1011
            self.failed = e
            log.log(logging.ERROR, "world.lost", extra={"fields": {"world": self.name, "pid": self.backend_pid,
                                                                    "why": str(e)}})
            for ev in self.wakers.values():
                ev.set()
        except BaseException as e:            # a broken world: its sessions close with 1011
            self.failed = e
            log.exception("world %s failed", self.name)
            for ev in self.wakers.values():
                ev.set()

    # -- clients ---------------------------------------------------------------------------------
    async def attach(self, max_frame_bytes: int, wake: asyncio.Event, progressive: dict | None = None) -> int:
        link = next(self._ids)
        if progressive is None:
            await self.call("attach", link, max_frame_bytes)
        else:
            await self.call("attach", link, max_frame_bytes, progressive)
            self._refine_started()
        self.wakers[link] = wake
        wake.set()
        return link

    def _refine_started(self) -> None:
        self.refining = True
        self._kick.set()                     # a world waiting for an action takes up the idle tick

    async def detail(self, link: int, budget: int | None, eye: dict | None) -> None:
        """A progressive client's detail message (SPEC.md 11.9)."""
        if await self.call("detail", link, budget, eye):
            self._refine_started()

    async def detach(self, link: int) -> None:
        self.wakers.pop(link, None)
        self.ready.discard(link)
        self.prefetched.pop(link, None)
        try:
            await self.call("detach", link)
        except (RuntimeError, EOFError, OSError):   # backend already closed
            pass

    async def take(self, link: int) -> OutFrame | None:
        """The next frame for a client: the one the last step cut for it, else ask the core."""
        f = self.prefetched.pop(link, None)
        return f if f is not None else await self.call("take", link)

    def waiting(self, link: int, ready: bool) -> None:
        """A client's sender is idle with an open window (the next step cuts its frame) or not."""
        if ready:
            self.ready.add(link)
        else:
            self.ready.discard(link)

    async def request_keyframe(self, link: int) -> None:
        self.prefetched.pop(link, None)      # a delta cut before the request is superseded
        if await self.call("request_keyframe", link):
            self._refine_started()               # a progressive client's keyframe: refinement follows

    @property
    def clients(self) -> int:
        return len(self.wakers)

    @property
    def backend_pid(self) -> int | None:
        """The pid of the world process that holds this world (None: a thread of this process)."""
        return getattr(self.backend, "pid", None)
