"""``python -m quality.progressive_join``: a client joining the live reference world progressively
(SPEC.md 11.9) against a plain join, on a simulated link.

Per world size, one world (``WorldCore``, the server's own: world, encoder and the clients' pending
changes, no sockets) steps 25 times a second of simulated time while its camera walks; three clients
are attached at once: a plain one (keyframe, then the world's deltas), a progressive one (stand-ins, then
refinement), and a progressive one with a detail budget of 30% of the world. Each client has a link
of its own of ``--rate`` Mbit/s, simulated by pacing bytes: a frame is cut at a world step when the
client's link is free (the byte budget of SPEC.md 11.6 does the same on a real server), leaves once
cut (server CPU time counted for the first frame) and arrives after its bytes (stream header
included) at the link rate; latency, acks and transport framing are left out. A fourth, progressive client joins
at ``--late-step``: the world serves it the cut it keeps (``CutCache``). Every frame is decoded and
digest-checked by a client decoder.

After each progressive frame arrives, the client's view (the world's camera, a small image) of its
state is rendered with ``quality.rasterizer`` and compared (PSNR) with the render of the world's own
state at that frame's seq, which is what a plain client shows there. The server's CPU time (process
time) of each client's ``push`` (fold a step) and ``take`` (cut a frame) is summed per world step.
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
import threading
import time

import numpy as np

from codec import Decoder
from codec.limits import SPEC_LIMITS
from reference_generator.actions import Move, Turn
from reference_generator.progressive_join import CUT_THREAD, eye_of
from reference_generator.warmup import warm_up
from reference_generator.world import WorldConfig
from reference_generator.worldhost import WorldCore

from .cameras import look_at, pinhole
from .metrics import psnr
from .rasterizer import render

BEGIN, END = "<!-- progressive_join: begin -->", "<!-- progressive_join: end -->"


def camera_of(cam: dict, width: int, height: int, fov: float = 75.0):
    """The world's camera dict (position, yaw, pitch in degrees; z up) as a pinhole camera."""
    eye, fwd = eye_of(cam)
    return pinhole(width, height, fov, look_at(eye, eye + fwd))


def cpu_s() -> float:
    """CPU seconds of this process (the codec's section workers included) less those of the world's
    cut thread (``CutCache``), which runs beside the steps and is reported on its own."""
    other = 0.0
    for t in threading.enumerate():
        if t.name.startswith(CUT_THREAD) and t.ident is not None:
            try:
                other += time.clock_gettime(time.pthread_getcpuclockid(t.ident))
            except (OSError, AttributeError):
                pass
    return time.process_time() - other


class Timed:
    """Wraps a pending's push and take with CPU-time counters (``cpu_s``: section workers too)."""

    def __init__(self, pending):
        self.p, self.push_s, self.take_s = pending, 0.0, 0.0
        pending.push, pending.take = self._timed(pending.push, "push_s"), self._timed(pending.take, "take_s")

    def _timed(self, fn, counter: str):
        def timed(*a, **k):
            t = cpu_s()
            try:
                return fn(*a, **k)
            finally:
                setattr(self, counter, getattr(self, counter) + cpu_s() - t)
        return timed

    def lap(self) -> float:
        s, self.push_s, self.take_s = self.push_s + self.take_s, 0.0, 0.0
        return s


class Link:
    def __init__(self, name: str, header: bytes, rate: float):
        self.name, self.rate = name, rate            # bytes per second
        self.dec = Decoder(header)
        self.free = 0.0                              # simulated time the link is free again
        self.total = len(header)
        self.frames = []                             # (seq, bytes, arrival s, total bytes, held, coarse, keyframe)

    def send(self, f, depart: float) -> float:
        self.dec.decode_frame(f.data)
        if str(self.dec.state.digest()) != f.digest:
            raise AssertionError(f"{self.name}: digest of frame {f.seq} does not match the client's state")
        self.total += len(f.data)
        arrive = max(depart, self.free) + len(f.data) / self.rate
        self.free = arrive
        d = f.detail or {}
        self.frames.append((f.seq, len(f.data), arrive, self.total, len(self.dec.state), d.get("coarse", 0), f.keyframe))
        return arrive


def run_world(n: int, rate_mbit: float, steps: int, width: int, height: int, budget_share: float, log,
              late_step: int = 100) -> dict:
    t = time.perf_counter()
    core = WorldCore(WorldConfig(target_live=n, prefetch_margin=0), 0, "cpu")
    live = len(core.encoder.state)
    log(f"world of target {n:,}: {live:,} live, built in {time.perf_counter() - t:.1f} s")
    t, c = time.perf_counter(), time.process_time()
    kept = core.cuts.prime(SPEC_LIMITS.max_frame_bytes)   # as the server's worlds do when they are made
    prime = {"kept": kept, "wall_s": time.perf_counter() - t, "cpu_s": time.process_time() - c}
    log(f"cut made with the world in {prime['wall_s']:.2f} s ({prime['cpu_s']:.2f} s CPU), kept: {kept}")
    header = core.encoder.header_bytes()
    rate = rate_mbit * 1e6 / 8
    budget = max(1, int(budget_share * live))
    core.attach(1, 1 << 26)
    core.attach(2, 1 << 26, {"budget": None})
    core.attach(3, 1 << 26, {"budget": budget})
    links = {1: Link("plain", header, rate), 2: Link("progressive", header, rate),
             3: Link(f"progressive, budget {budget:,}", header, rate)}
    timers = {k: Timed(core.pendings[k]) for k in (1, 2, 3)}
    for ln in links.values():
        ln.free = len(header) / rate                 # the header goes first, at once
    first = {}
    for k in (1, 2, 3):
        t0, c0, w0 = time.perf_counter(), time.process_time(), cpu_s()
        f = core.take(k, wait=True)
        cut, cpu, world_s = time.perf_counter() - t0, time.process_time() - c0, cpu_s() - w0
        timers[k].lap()
        arrive = links[k].send(f, cpu)               # leaves after the cut's CPU time (not wall: a shared box)
        first[k] = {"bytes": len(f.data), "cut_s": cut, "cpu_s": cpu, "world_s": world_s, "arrive_s": arrive,
                    "held": len(links[k].dec.state),
                    "coarse": (f.detail or {}).get("coarse", 0)}
        log(f"{links[k].name}: first frame {len(f.data):,} bytes, cut in {cut:.2f} s, arrives {arrive:.2f} s")
    curve = []                                        # progressive client: (total bytes, arrive, held, coarse, psnr)

    def score(seq: int, total: int, arrive: float, cam: dict) -> None:
        c = camera_of(cam, width, height)
        _, mine = links[2].dec.state.to_gaussians()
        _, world = core.encoder.state.to_gaussians()
        p = psnr(render(mine, c), render(world, c))
        curve.append({"seq": seq, "total": total, "arrive": arrive, "held": len(links[2].dec.state),
                      "coarse": links[2].frames[-1][5], "psnr": p})
        log(f"  progressive seq {seq}: {total:,} bytes in, arrives {arrive:.2f} s, {curve[-1]['held']:,} held, "
            f"{curve[-1]['coarse']:,} stand-ins, {p:.2f} dB")

    cam0 = core.world.camera().as_dict()
    score(links[2].frames[0][0], links[2].total, links[2].frames[0][2], cam0)
    cost = {k: [] for k in (1, 2, 3)}                 # CPU s per step, per client
    refining_cost = []
    done_at = None
    budget_last = 0                                   # the step of the budgeted client's last frame
    late = None                                       # a progressive client joining at late_step
    for s in range(1, steps + 1):
        now = first[2]["cpu_s"] + s / 25.0
        if s == late_step:
            late = join_late(core, header, rate, now, width, height, log)
            links[4] = late["link"]
        ready = tuple(k for k in links if links[k].free <= now)
        action = Turn(2.0) if s % 10 == 0 else Move(0.05)
        stats, frames = core.step(action, [], ready)
        for k in (1, 2, 3):
            cost[k].append(timers[k].lap())
        if core.pendings[2].tracked:
            refining_cost.append(cost[2][-1])
        for k, f in frames.items():
            if f is None:
                continue
            arrive = links[k].send(f, now)
            budget_last = s if k == 3 else budget_last
            if k == 2 and done_at is None:             # every frame while refining, and the last
                score(f.seq, links[2].total, arrive, core.world.camera().as_dict())
            if k == 4 and late["done"] is None and (f.detail or {}).get("coarse", 1) == 0:
                late["done"] = (arrive - late["at"], links[4].total, f.seq)
            if k == 2 and done_at is None and (f.detail or {}).get("coarse", 1) == 0:
                done_at = (arrive, links[2].total, f.seq)
                if str(links[2].dec.state.digest()) != str(core.encoder.state.digest()):
                    raise AssertionError("refinement over but the client's state is not the world's")
    steady = {k: cost[k][len(cost[k]) // 2:] for k in cost}
    world_live = len(core.encoder.state)
    budget_psnr = None                    # the budgeted client's view at the end (when its frame is the last step's)
    if budget_last == steps:
        c = camera_of(core.world.camera().as_dict(), width, height)
        held, world = links[3].dec.state.to_gaussians()[1], core.encoder.state.to_gaussians()[1]
        budget_psnr = psnr(render(held, c), render(world, c))
    out = {"n": n, "live": live, "live_end": world_live, "budget": budget, "first": first, "curve": curve, "prime": prime,
           "done": done_at, "rate_mbit": rate_mbit,
           "refine_ms": 1e3 * float(np.mean(refining_cost)) if refining_cost else 0.0,
           "refine_ms_max": 1e3 * float(np.max(refining_cost)) if refining_cost else 0.0,
           "refine_steps": len(refining_cost),
           "steady_ms": {k: 1e3 * float(np.mean(v)) for k, v in steady.items()},
           "plain_key": first[1], "budget_held_max": max(f[4] for f in links[3].frames),
           "budget_held_end": len(links[3].dec.state), "budget_psnr": budget_psnr,
           "tracked_after": {k: bool(core.pendings[k].tracked) for k in (2, 3)},
           "late": None if late is None else {k: v for k, v in late.items() if k != "link"},
           "cuts": {"made_ahead": core.cuts.made_ahead, "cpu_s": core.cuts.cut_cpu_s},
           "pictures": {"count": sum(core.pendings[k].pictures for k in (2, 3)), "cpu_s": core.cuts.picture_cpu_s}}
    core.close()
    return out


def join_late(core: WorldCore, header: bytes, rate: float, now: float, width: int, height: int, log) -> dict:
    """A progressive client (no budget) joining the running world at simulated time ``now``: the
    world serves it the cut it keeps (made for the first progressive client, or since on its worker
    thread). Its first frame leaves after the wall time of its cut on the world's thread (the worker
    thread competes for the cores meanwhile, as it would on a server)."""
    core.attach(4, 1 << 26, {"budget": None})
    link = Link("progressive, joining late", header, rate)
    link.free = now + len(header) / rate
    seq_kept = max((c.seq for c in core.cuts.cuts.values()), default=None)
    t0, c0 = time.perf_counter(), cpu_s()
    f = core.take(4, wait=True)
    cut, cpu = time.perf_counter() - t0, cpu_s() - c0
    arrive = link.send(f, now + cut)
    cam = core.world.camera().as_dict()
    c = camera_of(cam, width, height)
    _, mine = link.dec.state.to_gaussians()
    _, world = core.encoder.state.to_gaussians()
    p = psnr(render(mine, c), render(world, c))
    log(f"late joiner at seq {f.seq}: first frame {len(f.data):,} bytes, cut in {cut:.2f} s wall ({cpu:.2f} s CPU), arrives {arrive - now:.2f} s after joining, {p:.2f} dB; kept cut of seq {seq_kept}")
    return {"link": link, "at": now, "seq": f.seq, "cut_seq": seq_kept, "bytes": len(f.data), "held": len(link.dec.state),
            "coarse": (f.detail or {}).get("coarse", 0), "cut_s": cut, "cpu_s": cpu, "first_s": arrive - now,
            "psnr": p, "done": None}


def report(results: list, args, seconds: float, load: str) -> str:
    lines = [BEGIN, "## Live server: progressive join (`reference_generator/progressive_join.py`, SPEC.md 11.9)", "",
             f"- command: `python -m quality.progressive_join --sizes {args.sizes} --rate {args.rate:g} "
             f"--steps {args.steps} --size {args.size} --late-step {args.late_step}`",
             f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; total {seconds:.0f} s; "
             f"load average before / after: {load}",
             f"- link: {args.rate:g} Mbit/s per client, **simulated by pacing bytes** (a frame leaves when cut at a "
             "world step with the client's link free, and arrives after its bytes at the link rate; the header "
             "first; latency, acks and transport framing left out). The first frame leaves once the server has "
             "cut it: after the cut's CPU time (process time, the codec's section workers included), as the wall "
             "time on this shared box measures the other jobs too; both are listed.",
             "- world: the reference world (`WorldConfig(target_live=N)`, seed 0, CPU, chunk prefetch off), "
             "25 steps per simulated second, the camera walking 1.25 m/s and turning; one server-side `WorldCore` "
             "that cuts its stand-ins once as it is made (`CutCache.prime`, as the server's worlds do when they offer "
             "progressive joins), then three clients joining at once: plain, progressive, and progressive with a "
             "detail budget of 30% of the world; a fourth, progressive, joins later.",
             f"- PSNR: the progressive client's view (the world's camera, {args.size} pixels, `quality.rasterizer`) "
             "of its state against the render of the world's state at the same seq (what a plain client shows "
             "there); `inf` once identical.",
             "- server cost: CPU time (process time, section workers included, the world's cut thread left out) of "
             "each client's `push` and `take` per world step, on this 2-core box shared with other jobs; the cut "
             "thread's own CPU time is given with the later joiner.", ""]
    for r in results:
        f = r["first"]
        lines += [f"### World of target {r['n']:,}: {r['live']:,} live Gaussians at the join", ""]
        pr = r["prime"]
        lines += [(f"The world cut its stand-ins as it was made in {pr['cpu_s']:.2f} s of CPU ({pr['wall_s']:.2f} s "
                   "wall), and kept the cut: the progressive joiner without a budget takes it; a joiner that finds "
                   "no cut to take (another budget, or none kept) waits about that long for one, made on the world's "
                   "cut thread.") if pr["kept"] else
                  "The world is small enough for a plain first frame: it kept no cut.", ""]
        lines += ["| client | first frame bytes | Gaussians held | stand-ins | cut: CPU s | of it on the world's thread, s "
                  f"| cut: wall s | first image at {r['rate_mbit']:g} Mbit/s, s |", "|---|---|---|---|---|---|---|---|"]
        for k, name in ((1, "plain"), (2, "progressive"), (3, f"progressive, budget {r['budget']:,}")):
            lines.append(f"| {name} | {f[k]['bytes']:,} | {f[k]['held']:,} | {f[k]['coarse']:,} | {f[k]['cpu_s']:.2f} | "
                         f"{f[k]['world_s']:.2f} | {f[k]['cut_s']:.2f} | {f[k]['arrive_s']:.2f} |")
        lines.append("")
        plain, prog = f[1], f[2]
        lines.append(f"First image: progressive at {prog['arrive_s']:.2f} s against {plain['arrive_s']:.2f} s for the plain "
                     f"keyframe ({prog['arrive_s'] / plain['arrive_s']:.2f}x), its first frame {prog['bytes'] / plain['bytes']:.0%} "
                     f"of the plain keyframe's bytes; of its time, {prog['cpu_s']:.2f} s is the server making the stand-ins "
                     f"({prog['world_s']:.2f} s of it on the world's thread, which its other clients wait for; the rest "
                     "on the world's cut thread).")
        for goal in (30.0, 40.0):
            hit = next((c for c in r["curve"] if c["psnr"] >= goal), None)
            if hit:
                lines.append(f"The client's view reached {goal:g} dB against the world's render at {hit['arrive']:.2f} s, "
                             f"{hit['total']:,} bytes in ({hit['total'] / plain['bytes']:.0%} of the plain keyframe).")
        lines.append("")
        if r["done"]:
            lines.append(f"Refinement over at {r['done'][0]:.2f} s ({r['done'][1]:,} bytes in, seq {r['done'][2]}): the "
                         "client's digest is the world's; it is an ordinary client from then on"
                         f" (tracked after the run: {r['tracked_after'][2]}).")
        else:
            lines.append("Refinement not over within the run.")
        lines.append(f"The budgeted client held at most {r['budget_held_max']:,} Gaussians (budget {r['budget']:,}); "
                     f"the world had {r['live_end']:,} at the end."
                     + (f" Its view then, holding {r['budget_held_end'] / r['live_end']:.0%} of the world: "
                        f"{r['budget_psnr']:.2f} dB against the world's render." if r.get("budget_psnr") is not None else ""))
        lines += ["", "| seq | bytes in (header included) | arrives, s | Gaussians held | stand-ins | PSNR dB |",
                  "|---|---|---|---|---|---|"]
        for c in r["curve"]:
            lines.append(f"| {c['seq']} | {c['total']:,} | {c['arrive']:.2f} | {c['held']:,} | {c['coarse']:,} | "
                         f"{'inf' if not np.isfinite(c['psnr']) else format(c['psnr'], '.2f')} |")
        if r["late"]:
            L = r["late"]
            lines += ["", f"**Joining later** (a progressive client, no budget, at seq {L['seq']}, "
                          f"{L['seq'] - 1} steps after the first ones): the world served it the cut it keeps, "
                          f"of seq {L['cut_seq']} ({r['cuts']['made_ahead']} made ahead on the world's worker thread "
                          f"during the run, {r['cuts']['cpu_s']:.2f} s of CPU there).", "",
                      "| first frame bytes | Gaussians held | stand-ins | cut: wall s / CPU s "
                      f"| first image at {r['rate_mbit']:g} Mbit/s, s after joining | its PSNR dB | refinement over, s |",
                      "|---|---|---|---|---|---|---|",
                      f"| {L['bytes']:,} | {L['held']:,} | {L['coarse']:,} | {L['cut_s']:.2f} / {L['cpu_s']:.2f} | "
                      f"{L['first_s']:.2f} | {L['psnr']:.2f} | "
                      f"{'not within the run' if L['done'] is None else format(L['done'][0], '.2f')} |"]
        s = r["steady_ms"]
        lines += ["", f"Server CPU per client per world step: progressive while refining {r['refine_ms']:.1f} ms "
                      f"(mean over {r['refine_steps']} steps, max {r['refine_ms_max']:.0f} ms: a step that cuts a "
                      f"refinement frame); over the second half of the run: plain {s[1]:.2f} ms, progressive "
                      f"{s[2]:.2f} ms, progressive with a budget (frames made for it for good) {s[3]:.2f} ms. "
                      f"The two progressive clients' pictures (what each cube makes of the view, the order of "
                      f"refinement) were weighed {r['pictures']['count']} times on the world's cut thread: "
                      f"{r['pictures']['cpu_s']:.2f} s of CPU there in all.", ""]
    lines.append(END)
    return "\n".join(lines) + "\n"


def write(path: str, section: str) -> None:
    text = open(path).read() if os.path.exists(path) else ""
    if BEGIN in text and END in text:
        a, b = text.index(BEGIN), text.index(END) + len(END)
        text = text[:a] + section.rstrip("\n") + text[b:]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(path, "w") as fh:
        fh.write(text)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m quality.progressive_join", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="200000,1000000", help="world target_live values, comma separated")
    ap.add_argument("--rate", type=float, default=25.0, help="link rate per client, Mbit/s (simulated)")
    ap.add_argument("--steps", type=int, default=150, help="world steps after the join (25 a simulated second)")
    ap.add_argument("--size", default="128x80", help="render size WxH")
    ap.add_argument("--budget-share", type=float, default=0.3)
    ap.add_argument("--late-step", type=int, default=100, help="world step at which a fourth, progressive client joins")
    ap.add_argument("--out", default="PROGRESSIVE.md", help="file whose progressive-join section is written")
    a = ap.parse_args(argv)
    w, h = (int(x) for x in a.size.split("x"))
    load0 = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    t = time.perf_counter()
    warm_up()
    res = [run_world(int(n), a.rate, a.steps, w, h, a.budget_share, lambda m: print(m, file=sys.stderr, flush=True),
                     a.late_step) for n in a.sizes.split(",")]
    load = f"{load0} / " + "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    section = report(res, a, time.perf_counter() - t, load)
    write(a.out, section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
