"""The soak test (reference_generator/soak.py) in two minutes: 8 clients with disconnects, slow
readers, malformed and oversize messages and a world process killed with SIGKILL, against a
`gsd-serve --workers 2`; and the soak's verdicts shown to fail on the faults they are for."""
from __future__ import annotations

import copy
from collections import Counter

import pytest

pytest.importorskip("torch")

from reference_generator.soak import DISRUPTIONS, SessionRec, run_soak, verdicts


def _verdict(r: dict, start: str) -> tuple:
    (v,) = [v for v in verdicts(r) if v[0].startswith(start)]
    return v[1], v[2]


def _good_result() -> dict:
    """A soak result in which everything went right: client 0 on the killed world (1011, then a
    new session from a keyframe), client 1 elsewhere streaming through the kill."""
    kill_t = 50.0
    frames = [kill_t - 1 + 0.1 * i for i in range(200)]
    s0 = SessionRec(0, "soak-0", 1.0, started=2.0, ended=kill_t + 0.8, code=1011, reason="world failed",
                    expected=None, window_frames=[f for f in frames if f < kill_t])
    s0b = SessionRec(0, "soak-0", kill_t + 1.0, started=kill_t + 6.0, ended=100.0)
    s1 = SessionRec(1, "soak-1", 1.0, started=2.0, ended=100.0, window_frames=frames)
    counts = Counter({f"disruption {k}": 1 for k in DISRUPTIONS})
    counts.update({f"{k} -> {v}": 1 for k, v in DISRUPTIONS.items() if isinstance(v, int)})
    return {"kill": {"t": kill_t, "pid": 1234, "worlds": ["soak-0"]}, "sessions": [s0, s0b, s1],
            "warm_rss": 1000.0, "warm_t": 20.0, "end_rss": 1040.0, "fds_before": 30, "fds_after": 30,
            "end_metrics": {"sessions": 0, "worlds": 0, "closes": Counter(), "resyncs": Counter()},
            "log": {"typed": Counter({"world.lost": 1}), "untyped": [], "warnings": Counter()},
            "problems": [], "counts": counts}


def test_soak_verdicts_fail_on_the_faults_they_are_for():
    r = _good_result()
    assert all(ok for _, ok, _ in verdicts(r)), verdicts(r)

    bad = copy.deepcopy(r)                                 # a killed world's session that never noticed
    bad["sessions"][0].code, bad["sessions"][0].ended = None, 100.0
    bad["sessions"][0].window_frames = [50 + 0.1 * i for i in range(150)]
    assert not _verdict(bad, "killed world")[0]
    bad = copy.deepcopy(r)                                 # closed with 1011 but never resumed
    del bad["sessions"][1]
    assert not _verdict(bad, "killed world")[0]
    bad = copy.deepcopy(r)                                 # another session got a keyframe from the kill
    bad["sessions"][2].keyframes = [50.5]
    assert not _verdict(bad, "killed world")[0]
    bad = copy.deepcopy(r)                                 # ... or stalled
    bad["sessions"][2].window_frames = [f for f in r["sessions"][2].window_frames if not 50 < f < 55]
    assert "no frame for" in _verdict(bad, "killed world")[1]
    bad = copy.deepcopy(r)                                 # ... or was closed
    bad["sessions"][2].ended, bad["sessions"][2].code = 52.0, 1011
    assert not _verdict(bad, "killed world")[0]
    bad = copy.deepcopy(r)
    bad["fds_after"] = 31                                  # one descriptor leaked
    assert not _verdict(bad, "no file descriptor")[0]
    bad = copy.deepcopy(r)
    bad["end_metrics"]["worlds"] = 1                       # a world left running with no session
    assert not _verdict(bad, "no file descriptor")[0]
    bad = copy.deepcopy(r)
    bad["end_rss"] = 1120.0                                # 12% growth
    assert not _verdict(bad, "server RSS")[0]
    bad = copy.deepcopy(r)                                 # the survivors grew, hidden by a fresh process
    bad["warm_rss_pids"], bad["end_rss_pids"] = {1: 250.0, 2: 450.0, 3: 300.0}, {1: 250.0, 2: 540.0, 4: 250.0}
    assert not _verdict(bad, "server RSS")[0]
    bad = copy.deepcopy(r)
    bad["log"]["untyped"] = ['{"level": "error", "event": "session s3 failed", "exc": "Traceback ..."}']
    assert not _verdict(bad, "no untyped errors")[0]
    bad = copy.deepcopy(r)
    bad["problems"] = [(12.0, "client 3: 1 frame errors / resyncs {'DIGEST_MISMATCH': 1}")]
    assert not _verdict(bad, "no untyped errors")[0]
    bad = copy.deepcopy(r)
    bad["counts"]["oversize_text -> 1008"] = 1             # the wrong close code for an oversize message
    assert not _verdict(bad, "every disruption")[0]


def test_soak_two_minutes():
    """8 clients for 100 s; every requirement of the soak met."""
    r = run_soak(8, 90.0, seed=1, workers=2, row_s=15.0, warmup_s=25.0, kill_at=48.0, mean_play_s=6.0,
                 log=lambda s: None)
    vs = verdicts(r)
    assert all(ok for _, ok, _ in vs), "\n".join(f"{name}: {'met' if ok else 'MISSED'}: {d}" for name, ok, d in vs)
    assert r["counts"].get("reconnects", 0) >= 8
    assert r["log"]["typed"].get("world.lost", 0) >= 1      # the kill was seen by the server as a lost world
    k = r["kill"]                                          # and a new world process took the killed one's place
    assert k["pid"] not in k["workers_after"] and len(k["workers_after"]) == len(k["workers_before"])
    assert r["log"]["warnings"].get("world.process_restarted", 0) == 1


def test_a_shared_world_joined_while_its_last_session_leaves_is_kept():
    """Found by the soak: session B joins a shared world while its last session A is releasing it
    (A's detach in flight); the world must stay up for B, not be closed under it (KeyError in its
    world process, an untyped 'session failed')."""
    import asyncio
    import json

    from reference_generator.server import Server, ServerConfig, parse_hello
    from reference_generator.world import WorldConfig

    hello = parse_hello(json.dumps({"type": "hello", "protocol": "gsd/1", "versions": ["1.0", "1.1", "1.2"],
                                    "max_sh_degree": 3, "budgets": {"max_gaussians": 10 ** 6,
                                    "max_bytes_per_second": 10 ** 8, "max_frame_bytes": 1 << 24}}))

    async def go():
        srv = Server(ServerConfig(world=WorldConfig(target_live=500), tick_hz=0))
        h = await srv.world_for("w", hello)                  # session A
        link = await h.attach(1 << 24, asyncio.Event())
        leaving = asyncio.create_task(srv.release(h, link))  # A leaves ...
        await asyncio.sleep(0)                               # ... its detach in flight
        h2 = await srv.world_for("w", hello)                 # B joins meanwhile
        await leaving
        assert h2 is h and not h.stopping and srv.shared.get("w") is h
        link2 = await h2.attach(1 << 24, asyncio.Event())
        assert (await h2.take(link2)).keyframe
        await srv.release(h2, link2)
        assert h.stopping and "w" not in srv.shared
    asyncio.run(go())
