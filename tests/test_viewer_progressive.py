"""The browser viewer's progressive join (SPEC.md 11.9) against a live gsd-serve.

A real server (gsd-serve with small --first-bytes / --refine-bytes, so that a small world arrives
as stand-ins first) runs on 127.0.0.1; a Python client (the Python codec,
an ordinary join) holds the world's state at every seq; the viewer joins in headless Chromium
(playwright-core, WebGPU on SwiftShader), driven by tests/live/viewer_progressive.mjs. Checked:

* the viewer joins progressively by default, with the software adapter's default detail budget;
* its first frame is coarse: fewer live Gaussians than the world has, most of them stand-ins, and a
  picture with something in it, further from the world's reference render than the refined one;
* every frame's digest is the viewer's own state and checks (the frame's digest equals the state's),
  the server took every ack (no resync), the frames' `detail.held` is the viewer's live count;
* once no cube is coarse, the viewer's state and digest are the world's at the same seq, and its
  picture matches quality/rasterizer.py's render of the world's state from the same camera;
* a local camera move sends the eye (`detail` with `view`) and the session goes on;
* with ?budget=N below the world's size, no frame ever leaves the viewer holding more than N
  Gaussians, and the budget leaves cubes coarse; a smaller budget sent mid-session (a `detail`
  message) holds for every frame made after the server took it;
* SwiftShader's slow frames make the viewer's frame-time rule lower the adapter's budget: a `detail`
  message, and the next frame is made for the new budget.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from test_viewer_live import check_page, served

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "tests/live/viewer_progressive.mjs"
CHROMIUM = os.environ.get("GSD_CHROMIUM", "/usr/bin/chromium")
PLAYWRIGHT = REPO / "node_modules/playwright-core/index.mjs"
NODE = shutil.which("node")
WORLD, BUDGET_WORLD = "viewer-progressive", "viewer-progressive-budget"
TARGET_LIVE = 20000          # ~15,500 live Gaussians; SwiftShader draws them at 160x120 in ~0.2 s
FIRST_BYTES, REFINE_BYTES = 20_000, 40_000   # ~800 stand-ins first, then ~2,000 Gaussians a frame
BUDGET, BUDGET_AFTER = 6000, 4000
SOFTWARE_BUDGET = 100_000    # reference_viewer/app/detail.mjs ADAPTER_BUDGETS.software
PSNR_FINAL = 40.0

_missing = [what for what, ok in (("node", NODE), ("chromium", Path(CHROMIUM).exists()),
                                  ("playwright-core", PLAYWRIGHT.exists())) if not ok]
pytestmark = pytest.mark.skipif(bool(_missing), reason=f"viewer progressive test needs {', '.join(_missing)}")


async def _run(port: int, out: Path, path: str) -> tuple[dict, dict, str]:
    from reference_generator.client import Client

    seen: dict[int, tuple[str, object]] = {}     # seq -> (digest, Gaussians) of the world's state
    async with Client(f"ws://127.0.0.1:{port}/ws?world={WORLD}") as client:

        async def reader():
            while True:
                f = await client.next_frame(timeout=None)
                seen[f.seq] = (f.digest, client.decoder.state.to_gaussians()[1])

        task = asyncio.create_task(reader())
        proc = await asyncio.create_subprocess_exec(
            NODE, str(SCRIPT), "--url", f"http://127.0.0.1:{port}", "--world", WORLD, "--budget-world", BUDGET_WORLD,
            "--budget", str(BUDGET), "--budget-after", str(BUDGET_AFTER), "--out", str(out), "--size", "160x120", "--path", path,
            cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
        except asyncio.TimeoutError:
            proc.kill()
            raise
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert not client.stats.errors, client.stats.errors
    return json.loads((out / "result.json").read_text()), seen, (stdout + stderr).decode(errors="replace")


def _image(out: Path, name: str, snap: dict) -> np.ndarray:
    raw = np.frombuffer((out / f"{name}.rgba").read_bytes(), np.uint8)
    return raw.reshape(snap["height"], snap["width"], 4)[:, :, :3].astype(np.float64) / 255.0


def _reference(gaussians, snap: dict) -> np.ndarray:
    from quality.cameras import Camera
    from quality.rasterizer import render

    c = snap["camera"]
    cam = Camera(c["width"], c["height"], c["fx"], c["fy"], c["cx"], c["cy"], np.array(c["viewMatrix"], float).reshape(4, 4))
    return np.clip(render(gaussians, cam), 0, 1)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else -10.0 * np.log10(mse)


def _check_frames(log: list, budget: int | None) -> None:
    assert log and log[0]["keyframe"] and not any(e["keyframe"] for e in log[1:]), "one keyframe, then refinement"
    _check_digests(log, budget)


def _check_digests(log: list, budget: int | None) -> None:
    seqs = [e["seq"] for e in log]
    assert seqs == sorted(set(seqs)), seqs
    for e in log:
        assert e["serverDigestFromFrame"] is not None and e["digest"] == e["serverDigestFromFrame"], e
        assert int(e["digest"].split(":")[0]) == e["live"], e
        d = e["detail"]
        assert d["held"] == e["live"], e               # the server's count of what the viewer holds is right
        if budget is not None:
            assert d["budget"] == budget and e["live"] <= budget, e


@pytest.mark.parametrize("path", ["raster"])
def test_viewer_progressive_join(tmp_path, path):
    (result, seen, node_out), t_server, elapsed = served(
        ["--first-bytes", str(FIRST_BYTES), "--refine-bytes", str(REFINE_BYTES), "--target-live", str(TARGET_LIVE)],
        lambda port: _run(port, tmp_path, path))
    check_page(result, node_out)
    assert result["renderPath"] == path

    log, stats = result["log"], result["stats"]
    world_live = {s: len(g) for s, (d, g) in seen.items()}
    n_world = max(world_live.values())
    assert n_world > 10_000 and min(world_live.values()) == n_world, world_live   # idle steps: the scene holds still

    # --- the first frame: stand-ins, drawn; the default join is progressive with the adapter's budget
    coarse = result["coarse"]
    d0 = coarse["detail"]
    assert d0["join"] == "progressive" and d0["budget"] == SOFTWARE_BUDGET and d0["rule"].endswith("software adapter"), d0
    assert coarse["frames"] == 1 and coarse["seq"] == log[0]["seq"] and coarse["live"] == log[0]["live"], (coarse, log[0])
    assert result["gateHeld"] > 0, "refinement frames were on their way while the first frame was on screen"
    assert coarse["live"] < 0.2 * n_world and d0["coarse"] > 0.5 * coarse["live"], (coarse, n_world)
    img0 = _image(tmp_path, "coarse", coarse)
    lit0 = float(np.mean(img0.max(axis=2) > 0.05))
    assert img0.mean() > 0.05 and lit0 > 0.2, f"the coarse picture is empty: mean {img0.mean():.3f}, lit {lit0:.2f}"

    # --- every frame verified against the viewer's own state; the server took every ack
    _check_frames(log, SOFTWARE_BUDGET)
    assert stats["errors"] == {} and stats["resyncs"] == 0 and stats["acks"] == stats["frames"] == len(log)
    assert [e["live"] for e in log] == sorted(e["live"] for e in log), "refinement only adds"

    # --- refined: the world's state, digest and picture
    final = result["final"]
    assert final["detail"]["coarse"] == 0 and final["live"] == n_world
    assert final["seq"] in seen, (final["seq"], sorted(seen))
    digest, gaussians = seen[final["seq"]]
    assert final["digest"] == digest, (final["digest"], digest)
    assert coarse["pose"] == final["pose"], "both pictures from the world's camera"
    ref = _reference(gaussians, final)
    img1 = _image(tmp_path, "final", final)
    p_final, p_coarse = _psnr(img1, ref), _psnr(img0, ref)
    assert p_final >= PSNR_FINAL, f"refined picture {p_final:.2f} dB from the reference render"
    assert p_coarse < p_final - 3, f"the coarse picture ({p_coarse:.2f} dB) is not coarser than the refined ({p_final:.2f} dB)"
    assert f"held {n_world:,} (coarse 0) / budget {SOFTWARE_BUDGET:,}" in result["hudText"], result["hudText"]
    assert f"path {path}" in result["hudText"], result["hudText"]

    # --- the eye: one `detail` view for the moved camera; the session goes on
    v = result["view"]
    assert v["detailsAfter"] >= v["detailsBefore"] + 1 and v["state"] == "open"
    assert v["sent"]["view"] == {"position": v["pose"]["position"], "yaw": v["pose"]["yaw"], "pitch": v["pose"]["pitch"],
                                 "fov": 70, "aspect": pytest.approx(160 / 120)}   # the page's fov, the canvas's aspect
    assert v["sent"]["budget"] is None, "the budget rule sent no budget (frame_ms off)"

    # --- a budget in the URL is never exceeded
    log2, stats2 = result["log2"], result["stats2"]
    assert BUDGET < n_world
    n2 = result["framesAtBudget2"]
    _check_frames(log2[:n2], BUDGET)
    assert stats2["errors"] == {} and stats2["resyncs"] == 0 and stats2["details"] == 1
    h2 = result["hud2"]["detail"]
    assert h2["rule"] == "fixed (URL)" and h2["budget"] == BUDGET and h2["coarse"] > 0, h2
    assert 0.8 * BUDGET <= log2[n2 - 1]["live"] <= BUDGET, log2[n2 - 1]
    # the smaller budget: frames made for the old one may be in flight, every later frame keeps to it
    assert result["setBudget"] is True
    later = log2[n2:]
    k = next(i for i, e in enumerate(later) if e["detail"]["budget"] == BUDGET_AFTER)
    assert all(e["detail"]["budget"] == BUDGET for e in later[:k])
    _check_digests(later[:k], BUDGET)
    _check_digests(later[k:], BUDGET_AFTER)
    h2 = result["hud2after"]["detail"]
    assert h2["budget"] == BUDGET_AFTER and h2["held"] <= BUDGET_AFTER and h2["rule"] == "set by the page", h2
    assert result["live2"] <= BUDGET_AFTER

    # --- the frame-time rule: SwiftShader frames (~0.1-0.3 s) are far over 33 ms: the budget is halved
    rule = result["rule"]
    assert rule["sent"]["budget"] == rule["detail"]["asked"] == SOFTWARE_BUDGET // 2, rule
    assert rule["detail"]["rule"].startswith("frame ") and "over 33 ms" in rule["detail"]["rule"], rule["detail"]
    assert rule["after"]["budget"] == SOFTWARE_BUDGET // 2 and rule["log"][-1]["detail"]["budget"] == SOFTWARE_BUDGET // 2
    assert rule["stats"]["errors"] == {} and rule["stats"]["resyncs"] == 0 and rule["stats"]["state"] == "open"
    assert rule["sent"]["view"] is not None, "the turning camera's eye went out too"
    _check_digests(rule["log"], None)

    print(f"viewer progressive ({path}): first frame {coarse['live']} of {n_world} live ({d0['coarse']} stand-ins), "
          f"{p_coarse:.1f} dB -> {p_final:.1f} dB after {len(log)} frames; budget {BUDGET}: {log2[n2 - 1]['live']} held, then {BUDGET_AFTER}: {result['live2']}; "
          f"{elapsed:.1f} s (server start {t_server:.1f} s, browser script {result['ms'] / 1000:.1f} s)")
