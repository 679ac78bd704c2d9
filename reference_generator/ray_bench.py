"""Benchmark of gsd-serve with worlds as Ray actors (ray_host.py) against the in-process backends.

    python -m reference_generator.ray_bench                      # -> RAY_BENCH.md
    python -m reference_generator.ray_bench --seconds 5 --sessions 4 8 --out -    # a quick look

On one machine: a Ray head started for the run (``ray start --head``, 2 CPUs, no dashboard),
gateways started as ``gsd-serve --ray 127.0.0.1:PORT`` processes, clients from this process
(``loadbench.run_round``: every frame decoded, digest-checked and acknowledged). Measured:

1. the Ray hop: the bare round trip of an actor call from an asyncio gateway; one world stepping
   back to back through the thread backend and through a Ray actor (steps/s where one world
   saturates, and what the backend adds to each step call); action-to-delta latency p50/p99 of
   one client at 20 actions/s through a gateway, same world, for threads, one world process
   (``--workers 1``) and a Ray actor;
2. (the same rows give the gateway's CPU with each backend);
3. sessions per gateway: N clients, private worlds as actors, 10 actions/s each; the gateway's
   CPU per session (the gateway process alone: the actors are the cluster's processes);
4. recovery: a world actor SIGKILLed (Ray restarts it, it resumes from its checkpoint) and a node
   removed, in a two-node ``ray.cluster_utils.Cluster``: time from the kill to the keyframe at the
   client, and the keyframe sizes on join and on recovery.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from .actions import Move, Turn
from .client import Client
from .loadbench import ROOT, generation_ms, run_round
from .metrics import percentile

RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _args(**kw) -> SimpleNamespace:
    a = dict(seconds=8.0, ramp=2.0, rate=10.0, target_live=3000, tick_hz=0.0, workers=0, max_sessions=1024,
             retry_after=10, server_args="", target_p99=60.0, trace=False)
    a.update(kw)
    return SimpleNamespace(**a)


def start_head(cpus: int) -> tuple[str, dict]:
    port = _free_port()
    # token auth on (the gateways this run starts and this process get the mode from the environment)
    os.environ.update(RAY_AUTH_MODE="token", RAY_USAGE_STATS_ENABLED="0")
    env = dict(os.environ)
    subprocess.run([RAY, "start", "--head", f"--port={port}", f"--num-cpus={cpus}",
                    "--include-dashboard=false",
                    f"--object-store-memory={100 << 20}", "--disable-usage-stats"],
                   check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return f"127.0.0.1:{port}", env


def stop_head(env: dict) -> None:
    subprocess.run([RAY, "stop", "--force"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.environ.pop("RAY_AUTH_MODE", None)     # the in-process cluster of the recovery runs has no token


def _row(label: str, r: dict) -> dict:
    print(f"{label}: N={r['clients']} admitted {r['admitted']}, {r['fps_mean']:.1f} frames/s per client, "
          f"p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, gateway CPU {r['cpu']:.2f}, errors {r['errors']}, "
          f"resyncs {r['resyncs']}, failed {len(r['failed'])}", flush=True)
    return {"label": label, **r}


async def _saturate(b, seconds: float) -> dict:
    """Steps back to back through a backend, one client attached and keeping up (each step cuts
    its frame): the rate one world steps at, and the time of each step call around the core's."""
    await b.call("attach", 1, 64 << 20)
    await b.call("take", 1)                           # its keyframe
    calls, i = [], 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds or i < 50:
        t = time.perf_counter()
        stats, frames = await b.call("step", Move(0.05) if i % 3 else Turn(3), [], (1,))
        calls.append(((time.perf_counter() - t) * 1e3, stats.call_ms))
        assert frames[1] is not None
        i += 1
    wall = time.monotonic() - t0
    over = [c - k for c, k in calls]
    return {"steps_s": i / wall, "call50": percentile([c for c, _ in calls], 50),
            "call99": percentile([c for c, _ in calls], 99), "core50": percentile([k for _, k in calls], 50),
            "over50": percentile(over, 50), "over99": percentile(over, 99)}


async def backends(address: str, seconds: float, target_live: int, calls: int = 300) -> dict:
    """The bare round trip of a small actor call (``links``: no world work) from an asyncio loop,
    and one world stepping back to back on a thread of this process and as a Ray actor."""
    import ray
    import torch
    from .ray_host import RayPool
    from .world import WorldConfig
    from .worldhost import ThreadBackend
    torch.set_num_threads(1)
    cfg = WorldConfig(target_live=target_live)
    out = {}
    t = ThreadBackend("bench")
    await t.create(cfg, 0, "cpu")
    out["threads"] = await _saturate(t, seconds)
    await t.close()
    ray.init(address=address, namespace="gsd", log_to_driver=False)
    try:
        pool = RayPool(address, tick_hz=0, world_cpus=0.05)
        b = pool.backend()
        await b.create(cfg, 0, "cpu")
        for _ in range(20):
            await b.call("links")
        hop = []
        for _ in range(calls):
            t0 = time.perf_counter()
            await b.call("links")
            hop.append((time.perf_counter() - t0) * 1e3)
        out["hop50"], out["hop99"] = percentile(hop, 50), percentile(hop, 99)
        out["ray actor"] = await _saturate(b, seconds)
        await b.close()
    finally:
        ray.shutdown()
    return out


# -- recovery -----------------------------------------------------------------------------------------


async def _until_keyframe(c: Client, t_kill: float, timeout: float = 90.0) -> tuple[float, int]:
    deadline = time.monotonic() + timeout
    i = 0
    while time.monotonic() < deadline:
        await c.act(Move(0.05) if i % 3 else Turn(3))
        i += 1
        try:
            f = await c.next_frame(0.05)
        except asyncio.TimeoutError:
            continue
        if f.keyframe:
            return time.monotonic() - t_kill, f.nbytes
    raise TimeoutError("no keyframe after the fault")


async def _recovery(cluster, ckpt: str, kills: int, target_live: int) -> dict:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    from .server import Server, ServerConfig
    from .world import WorldConfig
    out = {"kill": [], "kill_kf": [], "node": [], "node_kf": [], "join_kf": []}
    for fault in ["kill"] * kills + ["node"]:
        opts = {"world_cpus": 0.25, "checkpoint_dir": ckpt, "checkpoint_every": 25}
        node = None
        if fault == "node":
            node = cluster.add_node(num_cpus=1, object_store_memory=75 << 20)
            cluster.wait_for_nodes()
            opts.update(spread=False, actor_options={
                "scheduling_strategy": NodeAffinitySchedulingStrategy(node.node_id, soft=True)})
        s = Server(ServerConfig(port=0, world=WorldConfig(target_live=target_live), tick_hz=25, admission=False,
                                ray="auto", ray_options=opts))
        port = await s.start()
        try:
            async with Client(f"ws://127.0.0.1:{port}/ws") as c:
                k = await c.next_frame(120)
                out["join_kf"].append(k.nbytes)
                t_end = time.monotonic() + 1.5            # a second and a half of play: a checkpoint
                i = 0
                while time.monotonic() < t_end:
                    await c.step(Move(0.05) if i % 3 else Turn(3))
                    i += 1
                b = next(iter(s.sessions.values())).host.backend
                t0 = time.monotonic()
                if fault == "kill":
                    os.kill(b.pid, signal.SIGKILL)
                else:
                    cluster.remove_node(node, allow_graceful=False)
                dt, nbytes = await _until_keyframe(c, t0)
                out[fault].append(dt)
                out[f"{fault}_kf"].append(nbytes)
                assert c.stats.resyncs == 0 and not c.stats.errors, (c.stats.resyncs, c.stats.errors)
                print(f"recovery after {fault}: {dt:.2f} s, keyframe {nbytes} B (join {k.nbytes} B)", flush=True)
        finally:
            await s.stop()
    return out


def recovery(kills: int, target_live: int) -> dict:
    import ray
    from ray.cluster_utils import Cluster
    health = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 300, "health_check_failure_threshold": 3}
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False,
                                                        "object_store_memory": 75 << 20, "_system_config": health})
    ray.init(address=c.address, namespace="gsd", log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as ckpt:
            return asyncio.run(_recovery(c, ckpt, kills, target_live))
    finally:
        ray.shutdown()
        c.shutdown()


# -- report -------------------------------------------------------------------------------------------


def report(a, started: str, load: tuple, gen: dict, hop: dict, rows: list, rec: dict | None) -> str:
    cmd = (f"python -m reference_generator.ray_bench --seconds {a.seconds:g} --sessions "
           f"{' '.join(map(str, a.sessions))} --target-live {a.target_live}")
    L = ["# Ray world hosting benchmark", "",
         f"`{cmd}` on {platform.machine()}, {os.cpu_count()} cores, started {started}; load average (1 min) "
         f"{load[0]:.2f} at the start, {load[1]:.2f} at the end (a shared box: other work runs beside it). "
         "A Ray head (`ray start --head --num-cpus 2`, no dashboard) on the same machine; gateways are "
         "`gsd-serve` processes, clients one Python process that decodes, digest-checks and acknowledges every "
         "frame (`loadbench.run_round`). Worlds: about "
         f"{a.target_live} Gaussians in view, SH degree 3, compact; generation + encode of one step alone p50 "
         f"{gen['tot50']:.1f} ms / p99 {gen['tot99']:.1f} ms (one thread).", "",
         "## The Ray hop", "",
         f"Bare actor call from an asyncio gateway (`links`, no world work): p50 {hop['hop50']:.2f} ms, "
         f"p99 {hop['hop99']:.2f} ms.", "",
         "One world stepping back to back through its backend, one client attached and keeping up (each step "
         "cuts that client's frame, which comes back with the step): where one world saturates, and what the "
         "backend adds to each step call beyond the world core's own time (step, encode, fan-out).", "",
         "| backend | steps/s (one world, saturated) | step call p50 | p99 | in the world core p50 "
         "| added by the backend p50 | p99 |", "|---|---|---|---|---|---|---|"]
    for k in ("threads", "ray actor"):
        x = hop[k]
        L.append(f"| {k} | {x['steps_s']:.0f} | {x['call50']:.2f} ms | {x['call99']:.2f} ms | {x['core50']:.2f} ms | "
                 f"{x['over50']:.2f} ms | {x['over99']:.2f} ms |")
    L += ["", "Through the gateway (`gsd-serve` process, one client acting at 20/s; sessions rows: N clients at "
          "10/s each, every world an actor):", "",
         "| backend | clients | actions/s per client | frames/s per client | action-to-delta p50 | p99 "
         "| gateway CPU (cores) | gateway CPU per session | kB/s per client | bytes per frame | errors / resyncs | failed |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        bpf = r["kbps"] * 1e3 / r["fps_mean"] if r["fps_mean"] else 0.0
        L.append(f"| {r['label']} | {r['clients']} | {r['rate']:g} | {r['fps_mean']:.1f} | {r['p50']:.1f} ms | "
                 f"{r['p99']:.1f} ms | {r['cpu']:.2f} | {r['cpu'] / max(1, r['admitted']) * 1e3:.0f} m | "
                 f"{r['kbps']:.1f} | {bpf:.0f} | {r['errors']} / {r['resyncs']} | {len(r['failed'])} |")
    L += ["", "*Gateway CPU* is the gateway process (and its children) only: with `--ray` the worlds run in the "
          "cluster's worker processes, with `--workers 1` in the gateway's child (counted), with threads in the "
          "gateway itself (counted). The sessions rows run every world as an actor on the 2 CPUs of this box: the latency there "
          "shows the box saturating (worlds and gateway and clients share 2 cores), the gateway CPU per session is "
          "the figure that carries over to a cluster. Clients of the sessions rows arrive over 4 + 1.5 N s: a new "
          "world actor is a new Python process that imports torch (seconds on a loaded box).", ""]
    if rec:
        def s(x):
            return ", ".join(f"{v:.2f}" for v in x) + " s" if x else "-"
        L += ["## Recovery", "",
              "Two-node `ray.cluster_utils.Cluster` (head 2 CPUs; a 1-CPU node added for the node fault), GCS health "
              "checks every 0.3 s, 3 misses (Ray's defaults, 3 s and 5 misses, add about 15 s to the node case). One "
              "client acting at its own pace on a private world (tick 25 Hz, checkpoint every 25 steps); time from "
              "the fault to the keyframe of the resumed world at the client, no resync or decode error.", "",
              "| fault | recovery (each run) | keyframe on recovery | keyframe on join |", "|---|---|---|---|",
              f"| world actor SIGKILLed (Ray restarts it on its node) | {s(rec['kill'])} | "
              f"{', '.join(map(str, rec['kill_kf']))} B | {rec['join_kf'][0]} B |",
              f"| node removed (raylet killed; the actor restarts on the head) | {s(rec['node'])} | "
              f"{', '.join(map(str, rec['node_kf']))} B | {rec['join_kf'][-1]} B |", ""]
    return "\n".join(L)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="ray_bench", description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=8.0, help="measured seconds per round (default: %(default)s)")
    ap.add_argument("--sessions", type=int, nargs="+", default=[4, 8, 16],
                    help="clients per gateway, one round each, worlds as actors (default: %(default)s)")
    ap.add_argument("--target-live", type=int, default=3000, help="Gaussians in view per world (default: %(default)s)")
    ap.add_argument("--kills", type=int, default=3, help="world-actor kills timed (default: %(default)s)")
    ap.add_argument("--skip-recovery", action="store_true", help="no fault timing (default: timed)")
    ap.add_argument("--out", default=str(ROOT / "RAY_BENCH.md"), help="report file, or - (default: %(default)s)")
    ap.add_argument("--note", action="append", default=[], help="a line for the report's notes (repeatable; default: none)")
    ap.add_argument("--recovery-json", help=argparse.SUPPRESS)   # the recovery runs alone, into this file
    a = ap.parse_args(argv)
    if a.recovery_json:
        Path(a.recovery_json).write_text(json.dumps(recovery(a.kills, a.target_live)))
        return 0
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load0 = os.getloadavg()[0]
    gen = generation_ms(a.target_live, steps=150)
    address, env = start_head(2)
    rows = []
    try:
        ray_args = f"--ray {address} --ray-world-cpus 0.05"
        hop = asyncio.run(backends(address, a.seconds, a.target_live))
        print(f"backends: {hop}", flush=True)
        for label, kw in (("threads", {}), ("process (--workers 1)", {"workers": 1}),
                          ("ray actor", {"server_args": ray_args})):
            args = _args(seconds=a.seconds, rate=20.0, target_live=a.target_live, **kw)
            rows.append({**_row(label, run_round(1, "off", args)), "rate": 20.0})
        for n in a.sessions:
            args = _args(seconds=a.seconds, ramp=4.0 + n * 1.5, rate=10.0, target_live=a.target_live,
                         server_args=ray_args)
            rows.append({**_row("ray actor", run_round(n, "off", args)), "rate": 10.0})
    finally:
        stop_head(env)
    rec = None
    if not a.skip_recovery:
        # a fresh process: its Ray driver has only seen the test cluster it starts (no token mode)
        with tempfile.NamedTemporaryFile(suffix=".json") as f:
            subprocess.run([sys.executable, "-m", "reference_generator.ray_bench", "--kills", str(a.kills),
                            "--target-live", str(a.target_live), "--recovery-json", f.name], cwd=ROOT, check=True,
                           env={k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}, timeout=400)
            rec = json.loads(Path(f.name).read_text())
    text = report(a, started, (load0, os.getloadavg()[0]), gen, hop, rows, rec)
    if a.note:
        text += "\n## Notes\n\n" + "".join(f"- {n}\n" for n in a.note)
    print(text)
    if a.out != "-":
        Path(a.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
