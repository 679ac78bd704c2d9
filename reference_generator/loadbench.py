"""Load benchmark of `gsd-serve`: N headless clients on loopback, arriving over a ramp, then S seconds measured.

    python -m reference_generator.loadbench                       # N = 64, 128, 256; 60 s each -> SERVER_BENCH.md
    python -m reference_generator.loadbench --clients 64 --admission on off   # with and without admission control
    python -m reference_generator.loadbench --clients 4 --seconds 5 --out -   # a quick look, table only

The server runs as its own process (as in production), each client has a private small world and
sends actions at ``--rate`` per second; every frame is decoded, digest-checked and acknowledged.
Client k arrives at ``k / N`` of the ``--ramp`` and starts acting as soon as it has its keyframe;
a client the server refuses (1013, SPEC.md 11.7) waits the retry-after delay it was given (N to
1.5 N s) and tries again, until the round ends. The measured window is the ``--seconds`` after
the ramp. Reported per round: sessions admitted and refused, frames/s per client, action-to-delta
latency percentiles (client clock: send of the action -> arrival of the frame that lists its id),
server CPU (cores) and memory, the CPU of the rest of the machine (other work on a shared box),
the load average, and the server's admission signals at the end.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from .actions import Move, Turn
from .client import Client, ServerBusy
from .metrics import percentile

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tree(pid: int) -> list:
    """The process and its descendants (the server's world processes)."""
    out = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids = (task / "children").read_text().split()
        for k in kids:
            out += _tree(int(k))
    return out


def _proc_cpu_seconds(pid: int) -> float:
    total = 0.0
    for p in _tree(pid):
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _proc_mem_mb(pid: int) -> tuple[float, float]:
    """RSS and peak RSS summed over the process tree, MB."""
    rss = hwm = 0.0
    for p in _tree(pid):
        txt = Path(f"/proc/{p}/status").read_text()
        rss += int(re.search(r"VmRSS:\s+(\d+)", txt).group(1)) / 1024
        hwm += int(re.search(r"VmHWM:\s+(\d+)", txt).group(1)) / 1024
    return rss, hwm


def _box_cpu_seconds() -> float:
    """CPU seconds the whole machine has been busy (all processes, all cores)."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")      # less idle and iowait


def generation_ms(target_live: int, steps: int = 400) -> dict:
    """Step (generation) and step+encode times of the bench world alone, one thread, under the
    clients' action mix: p50 and p99 of each."""
    import torch
    from codec import Encoder
    from .protocol import to_delta
    from .world import World, WorldConfig
    torch.set_num_threads(1)
    rng = random.Random(0)
    w = World(WorldConfig(target_live=target_live))
    enc = Encoder(w.profile, max_gaussians=w.max_gaussians)
    enc.encode_delta(to_delta(enc, w.reset(0)))
    gen, total = [], []
    for _ in range(steps):
        t0 = time.perf_counter()
        out = w.step(Move(0.05) if rng.random() < 0.7 else Turn(rng.uniform(-5, 5)))
        t1 = time.perf_counter()
        enc.encode_delta(to_delta(enc, out))
        t2 = time.perf_counter()
        gen.append((t1 - t0) * 1e3)
        total.append((t2 - t0) * 1e3)
    return {"gen50": percentile(gen, 50), "gen99": percentile(gen, 99), "tot50": percentile(total, 50), "tot99": percentile(total, 99)}


async def _client(url: str, k: int, n: int, a, t0: float, results: list) -> None:
    """One client: arrive, get in (waiting out refusals), act at the rate until the round ends."""
    rng = random.Random(k)
    w0, t_end = t0 + a.ramp, t0 + a.ramp + a.seconds
    r = {"refusals": 0, "admitted_at": None, "lat": [], "frames": 0, "bytes": 0}
    await asyncio.sleep(max(0.0, t0 + a.ramp * k / n - time.monotonic()))
    c = Client(url)
    try:
        while True:
            try:
                await c.connect()
                break
            except ServerBusy as e:
                r["refusals"] += 1
                delay = e.retry_after * (1.0 + 0.5 * rng.random())      # as SPEC.md 11.7 asks
                if time.monotonic() + delay >= t_end - 1.0:
                    return                                              # never admitted
                await asyncio.sleep(delay)
        await c.next_frame(120)                                         # keyframe (not counted)
        r["admitted_at"] = time.monotonic()
        next_act = time.monotonic() + rng.random() / a.rate           # spread the clients over a period
        while time.monotonic() < t_end:
            if time.monotonic() >= next_act:
                await c.act(Move(0.05) if rng.random() < 0.7 else Turn(rng.uniform(-5, 5)))
                next_act += 1.0 / a.rate
            try:
                f = await c.next_frame(max(0.001, min(next_act, t_end) - time.monotonic()))
            except asyncio.TimeoutError:
                continue
            if time.monotonic() >= w0:
                r["frames"] += 1
                r["bytes"] += f.nbytes
                r["lat"] += f.latency_ms
        r["active_s"] = t_end - max(w0, r["admitted_at"])
        r["errors"], r["resyncs"] = dict(c.stats.errors), c.stats.resyncs
    except Exception as e:                            # a failed client is a result, not a crash
        r["failed"] = f"{type(e).__name__}: {e}"
    finally:
        await c.close()
        results.append(r)


async def _round(url: str, http_url: str, pid: int, n: int, a) -> dict:
    results: list = []
    async with Client(url) as warm:                   # the world processes are up (imports done)
        await warm.next_frame(120)
    t0 = time.monotonic()
    marks: dict = {}

    async def probe():
        await asyncio.sleep(max(0.0, t0 + a.ramp - time.monotonic()))
        marks["start"] = (time.monotonic(), _proc_cpu_seconds(pid), time.process_time(), _box_cpu_seconds())
        await asyncio.sleep(max(0.0, t0 + a.ramp + a.seconds - 0.5 - time.monotonic()))
        marks["end"] = (time.monotonic(), _proc_cpu_seconds(pid), time.process_time(), _box_cpu_seconds())
        marks["mem"] = _proc_mem_mb(pid)
        try:
            async with aiohttp.ClientSession() as http:
                marks["admission"] = await (await http.get(http_url + "/admission")).json()
        except (aiohttp.ClientError, OSError, json.JSONDecodeError):
            marks["admission"] = None

    async def trace():                                # --trace: the server's signals once a second
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < t0 + a.ramp + a.seconds:
                await asyncio.sleep(1.0)
                try:
                    st = await (await http.get(http_url + "/admission")).json()
                except (aiohttp.ClientError, OSError, json.JSONDecodeError):
                    continue
                g = st["signals"]
                print(f"  t={time.monotonic() - t0:5.1f}s sessions {st['sessions']:3d} {'open   ' if st['open'] else 'refuses'} "
                      f"busy {g['busy']:.2f} ({g['busy_projected']:.2f}) wait p90 {g['wait_p90_ms']:6.1f} ms "
                      f"queued {g['queue_age_ms']:6.1f} ms loop {g['loop_lag_ms']:5.1f} ms load {os.getloadavg()[0]:.2f}",
                      file=sys.stderr, flush=True)

    await asyncio.gather(probe(), *([trace()] if a.trace else []), *[_client(url, k, n, a, t0, results) for k in range(n)])
    return {"results": results, **marks}


def run_round(n: int, mode: str, a) -> dict:
    port = _free_port()
    cmd = [sys.executable, "-m", "reference_generator.server", "--port", str(port), "--target-live",
           str(a.target_live), "--tick-hz", str(a.tick_hz), "--log-level", "warning",
           "--max-sessions", str(a.max_sessions), "--workers", str(a.workers), "--admission", mode,
           "--retry-after", str(a.retry_after)] + shlex.split(a.server_args)
    log = tempfile.TemporaryFile()
    load0 = os.getloadavg()
    srv = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), 0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        out = asyncio.run(_round(f"ws://127.0.0.1:{port}/ws", f"http://127.0.0.1:{port}", srv.pid, n, a))
    finally:
        srv.terminate()
        try:
            srv.wait(15)
        except subprocess.TimeoutExpired:
            srv.kill()
        log.seek(0)
        errors = [ln for ln in log.read().decode(errors="replace").splitlines() if '"level": "error"' in ln]
        if errors:
            print(f"server logged {len(errors)} errors; first: {errors[0][:400]}", file=sys.stderr)
    load1 = os.getloadavg()
    results = out["results"]
    (ta, sa, ca, ba), (tb, sb, cb, bb) = out["start"], out["end"]
    wall = tb - ta
    cpu, client_cpu = (sb - sa) / wall, (cb - ca) / wall
    admitted = [r for r in results if r["admitted_at"] is not None and "failed" not in r]
    lat = [x for r in admitted for x in r["lat"]]
    fps = [r["frames"] / r["active_s"] for r in admitted if r["active_s"] > 1.0]
    return {"clients": n, "admission": mode, "admitted": len(admitted),
            "never": sum(1 for r in results if r["admitted_at"] is None and "failed" not in r),
            "refusals": sum(r["refusals"] for r in results),
            "failed": [r["failed"] for r in results if "failed" in r],
            "fps_mean": statistics.fmean(fps) if fps else 0.0, "fps_min": min(fps, default=0.0),
            "p50": percentile(lat, 50), "p99": percentile(lat, 99), "n_lat": len(lat),
            "errors": sum(sum(r["errors"].values()) for r in admitted), "resyncs": sum(r["resyncs"] for r in admitted),
            "kbps": statistics.fmean(r["bytes"] / r["active_s"] for r in admitted if r["active_s"] > 1.0) / 1e3
            if fps else 0.0,
            "cpu": cpu, "client_cpu": client_cpu, "other_cpu": max(0.0, (bb - ba) / wall - cpu - client_cpu),
            "rss": out["mem"][0], "hwm": out["mem"][1], "load": (load0, load1), "server_log_errors": len(errors),
            "state": out.get("admission")}


def _target(r: dict, a) -> str:
    ok = r["p99"] <= a.target_p99 and r["errors"] == 0 and not r["failed"] and r["admitted"] > 0
    return "met" if ok else "missed"


def report(rows: list, gen: dict, a, started: str) -> str:
    lines = [
        "# Server load benchmark", "",
        f"`python -m reference_generator.loadbench --clients {' '.join(map(str, a.clients))} --seconds {a.seconds:g} "
        f"--rate {a.rate:g} --ramp {a.ramp:g} --target-live {a.target_live} --tick-hz {a.tick_hz:g} --workers {a.workers} "
        f"--admission {' '.join(a.admission)}"
        + (f" --server-args '{a.server_args}'" if a.server_args else "") + f"` on {platform.machine()}, "
        f"{os.cpu_count()} cores, started {started}. Server (main process + {a.workers} world processes) and "
        "clients share the machine: the clients decode, verify and acknowledge every frame in one Python process.", "",
        f"Each client has a private world of about {a.target_live} Gaussians in view (SH degree 3, compact) and "
        f"sends {a.rate:g} actions/s (70% move 5 cm, 30% turn). Client k of N arrives at k/N of a {a.ramp:g} s ramp "
        f"and acts from its keyframe on; then {a.seconds:g} s are measured. A client refused with 1013 waits the "
        f"server's retry-after ({a.retry_after} s) times 1 to 1.5 and tries again until the round ends. The same world "
        f"and action mix alone, one thread: generation p50 {gen['gen50']:.1f} ms / p99 {gen['gen99']:.1f} ms; "
        f"generation + encode p50 {gen['tot50']:.1f} ms / p99 {gen['tot99']:.1f} ms. Target: p99 action-to-delta "
        f"<= {a.target_p99:g} ms with 0 errors for the admitted sessions.", "",
        "| clients | admission | admitted / never admitted (refusals) | frames/s per client (mean / min) "
        "| action-to-delta p50 | p99 | target | server CPU (cores) | client CPU | other CPU on the box "
        "| server RSS / peak (all processes) | kB/s per client | errors / resyncs | failed | load avg (1 min) before / after |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['clients']} | {r['admission']} | {r['admitted']} / {r['never']} ({r['refusals']}) | "
            f"{r['fps_mean']:.1f} / {r['fps_min']:.1f} | {r['p50']:.1f} ms | {r['p99']:.1f} ms | {_target(r, a)} | "
            f"{r['cpu']:.2f} | {r['client_cpu']:.2f} | {r['other_cpu']:.2f} | {r['rss']:.0f} / {r['hwm']:.0f} MB | "
            f"{r['kbps']:.1f} | {r['errors']} / {r['resyncs']} | {len(r['failed'])} | "
            f"{r['load'][0][0]:.2f} / {r['load'][1][0]:.2f} |")
    lines += ["", "Latency is measured on the client clock from sending an action to the arrival of the frame that "
              "lists its id (SPEC.md 11.3), decoded and applied, for frames that arrive in the measured window. "
              "*Other CPU* is the machine's busy time less the server's and the clients' (work of other users). "
              + ", ".join(f"{r['n_lat']} actions at N={r['clients']} ({r['admission']})" for r in rows) + ".", ""]
    lines += ["Admission signals the server reported at the end of each round (`/admission`):", "",
              "| clients | admission | open | lanes busy (projected) | step wait p90 | oldest queued | loop lag p90 "
              "| refused by cause |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        st = r["state"]
        if not st:
            lines.append(f"| {r['clients']} | {r['admission']} | (no answer) | | | | | |")
            continue
        g = st["signals"]
        lines.append(f"| {r['clients']} | {r['admission']} | {'yes' if st['open'] else 'no'} | "
                     f"{g['busy']:.2f} ({g['busy_projected']:.2f}) | {g['wait_p90_ms']:.1f} ms | "
                     f"{g['queue_age_ms']:.1f} ms | {g['loop_lag_ms']:.1f} ms | "
                     f"{', '.join(f'{k} {v}' for k, v in sorted(st['refused'].items())) or 'none'} |")
    lines.append("")
    if a.note:
        lines += ["## Notes", ""] + [f"- {n}" for n in a.note] + [""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="loadbench", description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--seconds", type=float, default=60.0, help="measured seconds per round, after the ramp")
    ap.add_argument("--ramp", type=float, default=10.0, help="seconds over which the clients arrive")
    ap.add_argument("--rate", type=float, default=10.0, help="actions per second per client")
    ap.add_argument("--target-live", type=int, default=3000)
    ap.add_argument("--tick-hz", type=float, default=0.0, help="server idle tick (0: steps on actions only)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="server world processes (default: one per core); 0 = threads in the server process")
    ap.add_argument("--admission", nargs="+", default=["on"], choices=("on", "off"),
                    help="server admission control; 'on off' runs every N both ways")
    ap.add_argument("--max-sessions", type=int, default=1024)
    ap.add_argument("--retry-after", type=int, default=10, help="the server's retry-after for refused sessions")
    ap.add_argument("--server-args", default="", help="more gsd-serve options, e.g. '--admit-max-busy 0.7'")
    ap.add_argument("--target-p99", type=float, default=60.0, help="p99 action-to-delta target, ms")
    ap.add_argument("--trace", action="store_true", help="print the server's admission signals every second")
    ap.add_argument("--note", action="append", default=[], help="a line for the report's notes (repeatable)")
    ap.add_argument("--out", default=str(ROOT / "SERVER_BENCH.md"), help="report file, or - for stdout only")
    a = ap.parse_args(argv)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    gen = generation_ms(a.target_live)
    rows = []
    for n in a.clients:
        for mode in a.admission:
            r = run_round(n, mode, a)
            rows.append(r)
            print(f"N={n} admission {mode}: admitted {r['admitted']}, never {r['never']} ({r['refusals']} refusals), "
                  f"{r['fps_mean']:.1f} frames/s per client, p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, "
                  f"server CPU {r['cpu']:.2f} cores, clients {r['client_cpu']:.2f}, other {r['other_cpu']:.2f}, "
                  f"RSS {r['rss']:.0f} MB, errors {r['errors']}, failed {len(r['failed'])}, "
                  f"load {r['load'][0][0]:.2f} -> {r['load'][1][0]:.2f}", flush=True)
            if r["failed"]:
                print(f"  first failure: {r['failed'][0]}", flush=True)
    text = report(rows, gen, a, started)
    print(text)
    if a.out != "-":
        Path(a.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
