"""Worlds as Ray actors (ray_host.py) on a real two-node Ray cluster on this machine.

One cluster per module (a head and a worker node, 2 CPUs each, no dashboard); gateways are
``Server`` objects of this process with ``ray`` set, so each has its own gateway id, sessions
and step clocks while their worlds run in actors on either node. Every frame a client applies is
checked against the digest the gateway recorded for it (and the gateway checks every ack).
Faults: a world actor's process killed with SIGKILL (resume from the checkpoint with a keyframe,
or close 1011 when it may not restart), a node removed, a gateway stopped.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time

import pytest

pytest.importorskip("torch")
ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster                                   # noqa: E402
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy   # noqa: E402

from reference_generator.actions import Move, Turn                    # noqa: E402
from reference_generator.client import Client, ProtocolClosed           # noqa: E402
from reference_generator.server import Server, ServerConfig           # noqa: E402
from reference_generator.world import WorldConfig                     # noqa: E402

SMALL = WorldConfig(target_live=3000, view_radius=32, max_add_per_step=1024)
# a removed node is noticed within about 3 s (Ray's default: about 15 s); not faster, so that a
# node of a loaded 2-core box is never taken for dead
FAST_HEALTH = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
               "health_check_failure_threshold": 6}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "include_dashboard": False, "object_store_memory": 75 << 20, "_system_config": FAST_HEALTH})
    worker = c.add_node(num_cpus=2, object_store_memory=75 << 20)
    ray.init(address=c.address, namespace="gsd", log_to_driver=False)
    c.wait_for_nodes()
    c.ckpt = str(tmp_path_factory.mktemp("ckpt"))
    c.worker = worker
    yield c
    ray.shutdown()
    c.shutdown()


def gateway_config(cluster, tick_hz=0.0, **opts) -> ServerConfig:
    ray_options = {"world_cpus": 0.25, "checkpoint_dir": cluster.ckpt, "checkpoint_every": 5, "resume_timeout": 30}
    ray_options.update(opts)
    return ServerConfig(port=0, world=SMALL, tick_hz=tick_hz, admission=False, actions_per_second=10_000,
                        action_burst=10_000, ray="auto", ray_options=ray_options)


@contextlib.asynccontextmanager
async def gateway(cluster, **kw):
    s = Server(gateway_config(cluster, **kw))
    port = await s.start()
    s.url = f"ws://127.0.0.1:{port}/ws"
    try:
        yield s
    finally:
        await s.stop()


def run(coro, timeout=90):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def session_of(gw: Server, n: int = 0):
    return list(gw.sessions.values())[n]


async def frame_checked(c: Client, gw: Server, sess=None, timeout=30.0):
    """The next frame, its digest checked against the one the gateway sent with it."""
    f = await c.next_frame(timeout)
    sess = sess or session_of(gw)
    assert (f.seq, f.digest) in sess.window.history, (f.seq, f.digest)
    return f


async def steps_checked(c: Client, gw: Server, n: int, sess=None) -> list:
    got = []
    for i in range(n):
        aid = await c.act(Move(0.4) if i % 3 else Turn(15))
        while True:
            f = await frame_checked(c, gw, sess)
            got.append(f)
            if aid not in c._sent:
                break
    return got


def test_sessions_on_two_gateways_worlds_on_both_nodes(cluster):
    async def main():
        async with gateway(cluster) as g1, gateway(cluster) as g2:
            clients = []
            for gw in (g1, g1, g2, g2):
                c = Client(gw.url)
                await c.connect()
                clients.append((c, gw, len(gw.sessions) - 1))
            for c, gw, i in clients:
                k = await frame_checked(c, gw, session_of(gw, i))
                assert k.keyframe
            for _ in range(3):                       # interleaved, so worlds on both nodes work at once
                for c, gw, i in clients:
                    await steps_checked(c, gw, 2, session_of(gw, i))
            nodes = {s.host.backend.node for gw in (g1, g2) for s in gw.sessions.values()}
            assert len(nodes) == 2                   # SPREAD: worlds on the head and the worker node
            assert g1.pool.gateway != g2.pool.gateway
            for c, gw, i in clients:
                assert c.stats.resyncs == 0 and not c.stats.errors
                assert session_of(gw, i).resyncs == 0
                assert c.seq == 7                    # keyframe at 1, six acted steps
                await c.close()
    run(main())


def test_shared_world_on_two_gateways_same_digests(cluster):
    async def main():
        async with gateway(cluster, tick_hz=10) as g1:
            async with gateway(cluster, tick_hz=10) as g2:
                c1, c2 = Client(g1.url + "?world=plaza"), Client(g2.url + "?world=plaza")
                await c1.connect()
                await c2.connect()
                seen1, seen2 = {}, {}
                for c, gw, seen in ((c1, g1, seen1), (c2, g2, seen2)):
                    f = await frame_checked(c, gw)
                    seen[f.seq] = f.digest
                assert session_of(g1).host.backend.pid == session_of(g2).host.backend.pid   # one actor
                for f in await steps_checked(c1, g1, 6):
                    seen1[f.seq] = f.digest
                for f in await steps_checked(c2, g2, 6):                              # both act
                    seen2[f.seq] = f.digest
                deadline = time.monotonic() + 20
                while c1.seq < c2.seq and time.monotonic() < deadline:   # c1 sees c2's steps (idle ticks)
                    f = await frame_checked(c1, g1)
                    seen1[f.seq] = f.digest
                while c2.seq < c1.seq and time.monotonic() < deadline:
                    f = await frame_checked(c2, g2)
                    seen2[f.seq] = f.digest
                assert time.monotonic() < deadline or c1.seq == c2.seq, \
                    f"the clients did not catch up with each other within 20 s: seq {c1.seq} and {c2.seq}"
                common = set(seen1) & set(seen2)
                assert len(common) >= 2, (sorted(seen1), sorted(seen2))
                assert all(seen1[s] == seen2[s] for s in common)
                # the world's process dies: both gateways reattach their clients to the restarted
                # actor, both clients get a keyframe of the resumed world and agree again
                pid = session_of(g1).host.backend.pid
                os.kill(pid, signal.SIGKILL)
                assert any(f.keyframe for f in await steps_checked(c1, g1, 2))
                while not (f := await frame_checked(c2, g2)).keyframe:
                    pass
                after1, after2 = {c1.seq: c1.digest}, {f.seq: f.digest}
                for f in await steps_checked(c2, g2, 3):
                    after2[f.seq] = f.digest
                while c1.seq < c2.seq:
                    f = await frame_checked(c1, g1)
                    after1[f.seq] = f.digest
                common = set(after1) & set(after2)
                assert common and all(after1[s] == after2[s] for s in common)
                b1, b2 = session_of(g1).host.backend, session_of(g2).host.backend
                assert b1.pid == b2.pid != pid and b1.resumes == b2.resumes == 1
                assert c1.stats.resyncs == c2.stats.resyncs == 0
                await c2.close()
            # gateway 2 is gone: the world lives on for gateway 1's client
            before = c1.seq
            got = await steps_checked(c1, g1, 3)
            assert c1.seq > before and not any(f.keyframe for f in got)
            await c1.close()
        await asyncio.sleep(0.2)
        with pytest.raises(ValueError):            # the last gateway's last client left: actor ended
            ray.get_actor("world-plaza", namespace="gsd")
    run(main())


def test_killed_world_actor_resumes_with_keyframe(cluster):
    async def main():
        async with gateway(cluster) as g:
            c = Client(g.url)
            await c.connect()
            await frame_checked(c, g)
            await steps_checked(c, g, 7)             # a checkpoint at step 5
            b = session_of(g).host.backend
            pid, seq = b.pid, c.seq
            os.kill(pid, signal.SIGKILL)
            t0 = time.monotonic()
            frames = await steps_checked(c, g, 3)
            assert frames[0].keyframe                 # resync with a keyframe of the resumed world
            assert frames[0].seq > seq                # the stream goes on above every seq sent
            assert b.pid != pid and b.resumes == 1 and b.where["resumed_from"] == 6
            assert c.stats.resyncs == 0 and not c.stats.errors and session_of(g).resyncs == 0
            print(f"resumed in {time.monotonic() - t0:.2f} s")
            await c.close()
    run(main())


def test_world_that_cannot_restart_closes_1011(cluster):
    async def main():
        async with gateway(cluster, max_restarts=0) as g:
            c = Client(g.url)
            await c.connect()
            await frame_checked(c, g)
            await steps_checked(c, g, 2)
            os.kill(session_of(g).host.backend.pid, signal.SIGKILL)
            with pytest.raises(ProtocolClosed) as e:
                for _ in range(20):
                    await c.step(Move(0.2), timeout=20)
            assert e.value.code == 1011
            assert g.pool.lost == 1
            await c.close()
    run(main())


def test_node_removed_world_resumes_elsewhere(cluster):
    async def main():
        node = cluster.add_node(num_cpus=1, object_store_memory=75 << 20)
        cluster.wait_for_nodes()
        nid = node.node_id
        place = {"scheduling_strategy": NodeAffinitySchedulingStrategy(nid, soft=True)}
        async with gateway(cluster, actor_options=place, spread=False) as g:
            c = Client(g.url)
            await c.connect()
            await frame_checked(c, g)
            await steps_checked(c, g, 6)
            b = session_of(g).host.backend
            assert b.node == nid
            cluster.remove_node(node, allow_graceful=False)
            t0 = time.monotonic()
            while b.resumes == 0 and time.monotonic() - t0 < 60:    # the node's processes end soon after
                frames = await steps_checked(c, g, 1)
                await asyncio.sleep(0.05)
            assert frames[0].keyframe and b.node != nid and b.resumes == 1
            print(f"resumed on another node in {time.monotonic() - t0:.2f} s")
            await steps_checked(c, g, 2)
            assert c.stats.resyncs == 0 and not c.stats.errors
            await c.close()
    run(main(), timeout=120)


def test_shared_world_forgets_the_clients_of_a_dead_gateway(cluster):
    from reference_generator.actions import Idle
    from reference_generator.ray_host import RayPool

    async def main():
        opts = dict(tick_hz=10, world_cpus=0.25, checkpoint_dir=cluster.ckpt, gateway_timeout=1.0)
        b1, b2 = RayPool("auto", **opts).backend("orphans"), RayPool("auto", **opts).backend("orphans")
        await b1.create(SMALL, 0, "cpu")
        await b2.create(SMALL, 0, "cpu")
        assert b1.pid == b2.pid
        await b1.call("attach", 1, 1 << 26)
        await b2.call("attach", 1, 1 << 26)              # the same link id on another gateway: its own
        await b2.call("attach", 2, 1 << 26)
        assert await b1.call("links") == 3
        b2._beat.cancel()                                # gateway 2 dies: no detach, no heartbeat
        t0 = time.monotonic()
        while time.monotonic() - t0 < 2.5:
            await b1.call("step", Idle(), [], (1,))
            await asyncio.sleep(0.05)
        assert await b1.call("links") == 1               # gateway 1's client stays
        b1._beat.cancel()                                # gateway 1 dies too: the world ends itself
        await asyncio.sleep(2.0)
        with pytest.raises(ValueError):
            ray.get_actor("world-orphans", namespace="gsd")
        assert os.path.exists(b1._checkpoint_path())     # ... and the next session resumes it
        b3 = RayPool("auto", **opts).backend("orphans")
        await b3.create(SMALL, 0, "cpu")
        assert b3.where["resumed_from"] is not None and b3.pid != b1.pid
        await b3.close()                                 # no clients: ended, checkpoint removed
        assert not os.path.exists(b3._checkpoint_path())
    run(main())


def test_gateway_that_missed_a_restart_reattaches(cluster):
    """Ray restarted the world while this gateway had no call out: its next call finds its links
    unknown to the new incarnation, and the gateway attaches them again (each due a keyframe)."""
    from reference_generator.actions import Idle
    from reference_generator.ray_host import RayPool

    async def main():
        b = RayPool("auto", tick_hz=0, world_cpus=0.25, checkpoint_dir=cluster.ckpt, checkpoint_every=2).backend()
        await b.create(SMALL, 0, "cpu")
        await b.call("attach", 1, 1 << 26)
        assert (await b.call("take", 1)).keyframe
        for _ in range(3):
            await b.call("step", Move(0.3), [], ())
        pid = b.pid
        os.kill(pid, signal.SIGKILL)
        while True:                                   # the restart, seen by another caller only
            try:
                if (await b.actor.ready.remote())["pid"] != pid:
                    break
            except ray.exceptions.RayActorError:
                await asyncio.sleep(0.1)
        f = await b.call("take", 1)
        assert f.keyframe and b.resumes == 1 and b.pid != pid
        stats, frames = await b.call("step", Idle(), [], (1,))
        assert stats is not None and not frames[1].keyframe and frames[1].seq == f.seq + 1
        await b.close()
    run(main())
