"""World hosting on a Ray cluster: each world is a Ray actor, placed by Ray on any node.

``gsd-serve --ray auto|ADDRESS|local`` builds a ``RayPool`` instead of the in-process backends
(worldhost.py). The gateway keeps everything of SPEC.md 11 as it is: the WebSocket sessions,
their windows and acks, the action queue and the step clock of each ``WorldHost``. What moves to
the actor is the ``WorldCore`` (world, closed-loop encoder and the pending delta of every client
of that world): a step goes out as one actor call (the action, its ids, the links whose senders
wait) and comes back as the step's stats and the frames (record bytes) cut for those links.
``RayBackend`` has the interface of ``ThreadBackend`` and ``ProcessBackend``: ``create``, ``call``,
``close``, ``pid``.

Names. A private world is an anonymous actor owned by its gateway. A shared world (``?world=NAME``)
is a named, detached actor in the fixed namespace ``gsd`` (``get_if_exists``): every gateway of the
cluster that is asked for NAME reaches the same actor, so their clients see one world and the same
digests. Link ids are the gateway's own; the actor keys a client's pending delta by (gateway,
link), and action ids travel as (gateway, session, id), so gateways never see each other's. Each
gateway runs its own step clock for a shared world; an idle step that comes less than half a
tick after the world's last step only collects frames (``WorldActor.step``), so two gateways do
not make time run twice as fast.

Faults. A world actor checkpoints every ``checkpoint_every`` steps to a file (``checkpoint_dir``:
local for one machine, a shared file system for a cluster): the world's seed, step index, camera
pose, jump and door states, and the stream seq. Ray restarts an actor whose process dies (up to
``max_restarts`` times, on any node with room); the new incarnation rebuilds the world from the
checkpoint and continues the stream at ``seq + checkpoint_every`` (above every seq sent before
the fault, so clients' acks never name a frame of the lost incarnation). Each gateway that had
clients on it attaches them again and every one of them gets a keyframe (SPEC.md 11.3: a
keyframe replaces the client's state whatever its seq). A world that cannot come back (restarts
used up, no node with room within ``resume_timeout``) raises ``WorldGone``: its sessions close
with 1011 (SPEC.md 11.7). A gateway that dies takes only its own sessions and private worlds
(owned actors end with their owner); shared worlds live on for the other gateways, and forget
the dead gateway's clients once it has been silent for ``gateway_timeout`` (live gateways send
a heartbeat at a quarter of it); one that no gateway has called for that long ends, and the
next session asking for it resumes it from its checkpoint.
"""
from __future__ import annotations

import asyncio
import logging
import os
import pickle
import tempfile
import threading
import time
import uuid
from pathlib import Path

from .actions import Idle, Pose
from .worldhost import StepStats, WorldGone

log = logging.getLogger("gsd.server")

UNATTACHED = "unattached"            # a link the actor's incarnation does not know
NAMESPACE = "gsd"                    # shared worlds are named actors of this namespace
PRIVATE_PREFIX = "private-"          # the server names private worlds so (server.py, world_for)


def _ray():
    import ray                       # imported on use: the in-process backends need no Ray
    return ray


# -- the actor ---------------------------------------------------------------------------------------


def _save(path: str, state: dict) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        pickle.dump(state, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)


def _load(path: str) -> dict | None:
    try:
        with open(path, "rb") as f:
            return pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError):
        return None


class WorldActor:
    """A ``WorldCore`` in a Ray actor (one call at a time: Ray runs an actor's calls in order)."""

    def __init__(self, name: str, config, seed: int, device: str, checkpoint: str, checkpoint_every: int,
                 tick_hz: float, gateway_timeout: float = 30.0):
        import torch
        torch.set_num_threads(1)
        from .worldhost import WorldCore
        t0 = time.perf_counter()
        self.name, self.seed, self.checkpoint, self.every = name, seed, checkpoint, max(1, checkpoint_every)
        self.min_idle_gap = 0.5 / tick_hz if tick_hz > 0 else 0.0
        self.gateway_timeout = gateway_timeout
        self.seen: dict = {}                 # gateway -> when it last called (its heartbeat included)
        self._swept = time.monotonic()
        self.core = WorldCore(config, seed, device)
        self.resumed_from: int | None = None
        self.incarnation = uuid.uuid4().hex      # a new one after every restart
        ck = _load(checkpoint)
        if ck is not None and ck.get("seed") == seed:
            self._restore(ck)
        self.last_step = time.monotonic()
        self.steps = 0
        self.start_ms = (time.perf_counter() - t0) * 1e3
        self._checkpoint()
        if not name.startswith(PRIVATE_PREFIX):    # a private world ends with its owner (Ray)
            threading.Thread(target=self._reaper, name="world-reaper", daemon=True).start()

    # -- checkpoints ---------------------------------------------------------------------------
    def _state(self) -> dict:
        w = self.core.world
        return {"seed": self.seed, "seq": self.core.encoder.state.seq, "step_index": w.step_index,
                "camera": w.camera().position, "yaw": w.yaw, "pitch": w.pitch, "jump_h": w.jump_h, "vz": w.vz,
                "doors": dict(w.door_state)}

    def _checkpoint(self) -> None:
        try:
            _save(self.checkpoint, self._state())
        except OSError as e:                 # a full disk must not stop the world; the next one tries again
            log.warning("world %s: checkpoint not written: %s", self.name, e)

    def _restore(self, ck: dict) -> None:
        """The world at the checkpoint's pose and time; the stream goes on above every seq sent."""
        from .protocol import to_delta
        core, w = self.core, self.core.world
        w.door_state.update(ck["doors"])
        for d in w.doors():
            d.angle, d.target = w.door_state.get(d.key, (d.angle, d.target))
        out = w.step(Pose(tuple(ck["camera"]), ck["yaw"], ck["pitch"]))
        core.encoder.encode_delta(to_delta(core.encoder, out))
        w.step_index = ck["step_index"]
        w.jump_h, w.vz = ck["jump_h"], ck["vz"]
        core.encoder.state.seq = max(core.encoder.state.seq, ck["seq"] + self.every)
        self.resumed_from = ck["seq"]

    # -- calls ---------------------------------------------------------------------------------
    def ready(self, gateway: str | None = None) -> dict:
        if gateway is not None:
            self.seen[gateway] = time.monotonic()
        ray = _ray()
        ctx = ray.get_runtime_context()
        return {"pid": os.getpid(), "node": ctx.get_node_id(), "resumed_from": self.resumed_from,
                "incarnation": self.incarnation,
                "seq": self.core.encoder.state.seq, "start_ms": self.start_ms}

    def info(self) -> dict:
        return self.core.info()

    def step(self, action, action_ids: list, ready: tuple, gateway: str | None = None):
        """One world step and the frames of the ``ready`` links; an idle step within half a tick of
        the last step (another gateway's clock) only collects frames: (None, frames)."""
        now = time.monotonic()
        if gateway is not None:
            self.seen[gateway] = now
        if now - self._swept > 1.0:
            self._sweep(now)
        if isinstance(action, Idle) and not action_ids and now - self.last_step < self.min_idle_gap:
            cam = self.core.world.camera().as_dict()
            p = self.core.pendings
            return None, {k: p[k].take(cam) for k in ready if k in p and p[k].ready}, self.incarnation
        self.last_step = now
        stats, frames = self.core.step(action, action_ids, ready)
        self.steps += 1
        if self.steps % self.every == 0:
            self._checkpoint()
        return stats, frames, self.incarnation

    def _sweep(self, now: float) -> None:
        """Forget the clients of gateways silent for ``gateway_timeout`` (a gateway that died
        without detaching them: they would keep the world alive and cost a pending delta each)."""
        self._swept = now
        dead = {g for g, t in self.seen.items() if now - t > self.gateway_timeout}
        for k in [k for k in self.core.pendings if k[0] in dead]:
            self.core.detach(k)
        for g in dead:
            del self.seen[g]

    def _reaper(self) -> None:
        """A shared world (a detached actor) ends once no gateway has called it for
        ``gateway_timeout``: every gateway that held it died. Its checkpoint stays: the next
        session that asks for the world resumes it from there."""
        born = time.monotonic()
        while True:
            time.sleep(self.gateway_timeout / 4)
            now = time.monotonic()
            last = max(list(self.seen.values()), default=born)
            if now - last > self.gateway_timeout:
                log.warning("world %s: no gateway for %.0f s, ending", self.name, now - last)
                ray = _ray()
                ray.kill(ray.get_runtime_context().current_actor, no_restart=True)
                return

    def touch(self, gateway: str) -> int:
        """A gateway's heartbeat; returns the clients attached (all gateways)."""
        self.seen[gateway] = time.monotonic()
        return len(self.core.pendings)

    def attach(self, link, max_frame_bytes: int) -> None:
        self.seen[link[0]] = time.monotonic()
        self.core.attach(link, max_frame_bytes)

    def detach(self, link) -> int:
        self.core.detach(link)
        return len(self.core.pendings)

    # A call for a link this incarnation does not know (made while Ray restarted the actor, before
    # its gateway saw the fault) answers UNATTACHED: the gateway then attaches its links again.
    def take(self, link):
        return self.core.take(link) if link in self.core.pendings else UNATTACHED

    def request_keyframe(self, link):
        if link not in self.core.pendings:
            return UNATTACHED
        self.core.request_keyframe(link)
        return None

    def links(self) -> int:
        return len(self.core.pendings)


_remote = None
_handles: dict = {}                  # shared world name -> this process's handle of its actor


def _actor_class():
    global _remote
    if _remote is None:
        _remote = _ray().remote(WorldActor)
    return _remote


# -- the gateway side ------------------------------------------------------------------------------


class RayPool:
    """The gateway's view of the cluster: where new worlds go and how they are declared.

    ``address``: ``auto`` (the cluster this machine belongs to), ``ray://`` or ``host:port`` of a
    head, ``local`` (start a one-machine cluster in this process; tests and trials). When Ray is
    already initialised in this process (a test's cluster) it is used as it is.
    """

    def __init__(self, address: str = "auto", *, tick_hz: float = 25.0, device: str = "cpu",
                 world_cpus: float = 1.0, world_gpus: float = 0.25, max_restarts: int = 3,
                 checkpoint_dir: str | None = None, checkpoint_every: int = 25, resume_timeout: float = 60.0,
                 spread: bool = True, actor_options: dict | None = None, gateway_timeout: float = 30.0,
                 init_kwargs: dict | None = None):
        ray = _ray()
        self.owns_ray = False
        if not ray.is_initialized():
            kw = dict(namespace=NAMESPACE, include_dashboard=False, log_to_driver=False,
                      configure_logging=False)
            if address == "local":
                kw.update(num_cpus=os.cpu_count(), object_store_memory=128 << 20)
            else:
                kw["address"] = address
            kw.update(init_kwargs or {})
            ray.init(**kw)
            self.owns_ray = True
        self.gateway = uuid.uuid4().hex[:12]     # this gateway's name in the actors' link keys
        self.tick_hz, self.device = tick_hz, device
        cuda = str(device).startswith("cuda")
        self.resources = {"num_cpus": world_cpus, "num_gpus": world_gpus if cuda else 0}
        self.max_restarts, self.resume_timeout, self.spread = max_restarts, resume_timeout, spread
        self.actor_options = dict(actor_options or {})   # more Ray actor options: placement, labels
        self.checkpoint_dir = Path(checkpoint_dir or os.path.join(tempfile.gettempdir(), "gsd-ray-checkpoints"))
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint_every = checkpoint_every
        self.gateway_timeout = gateway_timeout   # a shared world forgets a gateway silent this long
        self.meters: list = []       # world load is on the cluster: admission uses waits and loop lag
        self.restarts = 0            # worlds this gateway saw resume after their actor died
        self.lost = 0                # worlds that could not resume

    def backend(self, name: str | None = None) -> "RayBackend":
        return RayBackend(self, name or f"{PRIVATE_PREFIX}{uuid.uuid4().hex[:8]}")

    def close(self) -> None:
        if self.owns_ray:
            _ray().shutdown()


class _Restarted(Exception):
    """The world actor is a new incarnation that this gateway has not attached its links to."""


def _key_frame(f, gw: str):
    """A frame as the actor cut it, with the action ids of this gateway's sessions only."""
    if f is not None and f.actions:
        f.actions = [(a[1], a[2]) for a in f.actions if a[0] == gw]
    return f


class RayBackend:
    """One world as a Ray actor, with the interface of the in-process backends."""

    def __init__(self, pool: RayPool, name: str):
        self.pool, self.name = pool, name
        self.shared = not name.startswith(PRIVATE_PREFIX)
        self.gw = pool.gateway
        self.core = None                     # lives in the actor
        self.actor = None
        self.where: dict = {}                # the actor's last ready(): pid, node, resumed_from
        self.links: dict = {}                # link -> max_frame_bytes, to attach again after a restart
        self.generation = 0                  # incarnations of the actor this backend has seen
        self.resumes = 0
        self._recovering = asyncio.Lock()
        self._beat: asyncio.Task | None = None
        self.gone: WorldGone | None = None

    @property
    def pid(self) -> int | None:
        return self.where.get("pid")

    @property
    def node(self) -> str | None:
        return self.where.get("node")

    def _checkpoint_path(self) -> str:
        stem = f"shared-{self.name}" if self.shared else f"{self.gw}-{self.name}"
        return str(self.pool.checkpoint_dir / f"{stem}.ckpt")

    async def create(self, config, seed, device, progressive=None) -> None:
        # progressive joins are not offered for worlds hosted by Ray (server.py): nothing to prime
        ray = _ray()
        p = self.pool
        opts = dict(max_restarts=p.max_restarts, max_task_retries=0, max_concurrency=1, **p.resources)
        if p.spread:
            opts["scheduling_strategy"] = "SPREAD"
        opts.update(p.actor_options)
        if self.shared:
            opts.update(name=f"world-{self.name}", namespace=NAMESPACE, lifetime="detached", get_if_exists=True)
        # one handle per named actor and process: gateways of one process (tests) share it, so
        # that Ray orders all of the process's calls to the actor on one handle
        self.actor = _handles.get(self.name) if self.shared else None
        if self.actor is not None:
            try:
                self.where = await self.actor.ready.remote(self.gw)
            except ray.exceptions.RayActorError:     # ended since (no clients, or reaped): a new one
                _handles.pop(self.name, None)
                self.actor = None
        if self.actor is None:
            self.actor = _actor_class().options(**opts).remote(self.name, config, seed, device,
                                                                self._checkpoint_path(), p.checkpoint_every,
                                                                p.tick_hz, p.gateway_timeout)
            try:
                self.where = await self.actor.ready.remote(self.gw)
            except ray.exceptions.RayError as e:
                raise WorldGone(f"world actor did not start: {e}") from None
            if self.shared:
                _handles[self.name] = self.actor
        if self.shared:
            self._beat = asyncio.create_task(self._heartbeat(), name=f"heartbeat-{self.name}")

    async def _heartbeat(self) -> None:
        """Tell a shared world this gateway lives (its clients may be quiet for long with no clock)."""
        ray = _ray()
        while True:
            await asyncio.sleep(self.pool.gateway_timeout / 4)
            try:
                await self.actor.touch.remote(self.gw)
            except ray.exceptions.RayError:
                pass                          # a fault: the next world call recovers or fails it

    async def _call(self, method: str, args: tuple):
        gw = self.gw
        if method == "step":
            action, ids, ready = args
            stats, frames, incarnation = await self.actor.step.remote(
                action, [(gw,) + tuple(i) for i in ids], tuple((gw, link) for link in ready), gw)
            if incarnation != self.where.get("incarnation"):
                raise _Restarted(f"world {self.name} restarted")   # the step ran: not run again
            return stats, {k[1]: _key_frame(f, gw) for k, f in frames.items()}
        if method == "attach":
            link, mfb = args
            await self.actor.attach.remote((gw, link), mfb)
            self.links[link] = mfb
            return None
        if method == "detach":
            self.links.pop(args[0], None)
            return await self.actor.detach.remote((gw, args[0]))
        if method in ("take", "request_keyframe"):
            out = await getattr(self.actor, method).remote((gw, args[0]))
            if isinstance(out, str) and out == UNATTACHED:
                raise _Restarted(f"world {self.name} restarted")
            return _key_frame(out, gw)
        return await getattr(self.actor, method).remote(*args)

    async def call(self, method: str, *args):
        ray = _ray()
        if self.gone is not None:
            raise self.gone
        gen = self.generation
        try:
            return await self._call(method, args)
        except _Restarted as e:              # restarted without this gateway seeing it fail
            await self._recover(gen, e)
            if method == "step":             # it ran on the new incarnation: an idle step answers its ids
                args = (Idle(),) + tuple(args[1:])
        except ray.exceptions.RayActorError as e:
            await self._recover(gen, e)
        # the world is back (a new incarnation, every link of this gateway attached again and due
        # a keyframe): the call runs again there (a lost step's actions are answered by the keyframe).
        # A step runs again without cutting frames: the links it named as waiting were named before
        # the fault, and their senders may be taking their keyframes now (a frame cut here as well
        # could reach the client before the keyframe)
        if method == "step":
            args = (args[0], args[1], ())
        if method == "detach":
            self.links.pop(args[0], None)
            return 0
        return await self._call(method, args)

    async def _ready_again(self) -> dict:
        """The actor's next incarnation: calls made while Ray restarts it wait for it, or fail with
        ActorUnavailableError (asked again) or ActorDiedError (it will not come back)."""
        ray = _ray()
        while True:
            try:
                return await self.actor.ready.remote(self.gw)
            except ray.exceptions.ActorUnavailableError:
                await asyncio.sleep(0.05)

    async def _recover(self, gen: int, err: BaseException) -> None:
        ray = _ray()
        async with self._recovering:
            if self.gone is not None:
                raise self.gone
            if self.generation != gen:           # another call of this world recovered it already
                return
            t0 = time.monotonic()
            try:
                where = await asyncio.wait_for(self._ready_again(), self.pool.resume_timeout)
                for link, mfb in list(self.links.items()):
                    await self.actor.attach.remote((self.gw, link), mfb)
            except (ray.exceptions.RayError, asyncio.TimeoutError) as e:
                self.gone = WorldGone(f"world {self.name} lost: {err!r}; no restart: {e!r}")
                self.pool.lost += 1
                log.log(logging.ERROR, "world.actor_lost", extra={"fields": {"world": self.name, "why": repr(e)}})
                raise self.gone from None
            self.where = where
            self.generation += 1
            self.resumes += 1
            self.pool.restarts += 1
            log.log(logging.WARNING, "world.actor_resumed",
                    extra={"fields": {"world": self.name, "pid": where["pid"], "node": where["node"],
                                      "resumed_from": where["resumed_from"], "seq": where["seq"],
                                      "links": len(self.links), "ms": round((time.monotonic() - t0) * 1e3, 1)}})

    async def close(self) -> None:
        ray = _ray()
        if self._beat is not None:
            self._beat.cancel()
        if self.actor is None:
            return
        try:
            if self.shared and self.gone is None:
                left = await asyncio.wait_for(self.actor.links.remote(), 10)
                if left:                         # other gateways' clients still on it
                    return
            if _handles.get(self.name) is self.actor:
                del _handles[self.name]
            ray.kill(self.actor, no_restart=True)
        except (ray.exceptions.RayError, asyncio.TimeoutError):
            pass
        try:
            os.unlink(self._checkpoint_path())
        except OSError:
            pass
