"""The viewer's detail budget rule for a progressive join (reference_viewer/app/detail.mjs, SPEC.md
11.9), run in node by tests/live/detail_rule.mjs over scripted frame times: the adapter classes and
their default budgets, lowering on slow frames and raising on fast ones where the budget binds, at most
one change per MIN_CHANGE_MS, a URL budget never changed, and when the eye is sent again."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="needs node")


@pytest.fixture(scope="module")
def rule() -> dict:
    p = subprocess.run([NODE, str(REPO / "tests/live/detail_rule.mjs")], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_adapter_classes_and_defaults(rule):
    assert rule["classes"] == {"none": "software", "fallback": "software", "swiftshader": "software", "nvidia": "other",
                               "intel": "integrated", "apple": "integrated", "qualcomm": "mobile", "androidUA": "mobile"}
    b = rule["budgets"]
    assert b["software"] < b["mobile"] < b["integrated"] < b["other"]
    assert rule["capped"] == 300_000, "the default never exceeds the hello's max_gaussians"


def _spaced(changes, gap):
    return all(t1 - t0 >= gap for (t0, _), (t1, _) in zip(changes, changes[1:]))


def test_slow_frames_lower_the_budget(rule):
    c = rule["constants"]
    slow = rule["slow"]
    budgets = [slow["start"]] + [n for _, n in slow["changes"]]
    assert len(slow["changes"]) >= 4 and _spaced(slow["changes"], c["MIN_CHANGE_MS"])
    assert all(b1 < b0 and b1 >= 0.5 * b0 for b0, b1 in zip(budgets, budgets[1:]))   # down, at most halved
    assert min(budgets) >= c["MIN_BUDGET"]
    # frame time proportional to the budget: settles where the frame time meets the target (33 ms)
    last = rule["scaled"]["changes"][-1][1]
    assert 1 <= len(rule["scaled"]["changes"]) <= 3 and abs(66e-6 * last - 1000 / 30) < 0.2 * 1000 / 30, rule["scaled"]


def test_fast_frames_raise_a_binding_budget_only(rule):
    fast = rule["fast"]
    budgets = [fast["start"]] + [n for _, n in fast["changes"]]
    assert budgets[:4] == [100_000, 150_000, 225_000, 337_500] and budgets[-1] == 400_000   # x1.5 up to max
    assert _spaced(fast["changes"], rule["constants"]["MIN_CHANGE_MS"])
    assert rule["fastSmallWorld"]["changes"] == [], "the world fits the budget: nothing to raise"
    assert rule["steady"]["changes"] == [], "frame time near the target: kept"


def test_url_budget_is_fixed_and_sparse_frames_decide_nothing(rule):
    assert rule["fixed"] == {"start": 7000, "changes": []}
    assert rule["sparse"] == []


def test_eye_threshold(rule):
    assert rule["view"] == {"first": True, "same": False, "small": False, "moved": True, "turned": True,
                            "wrap": False, "pitched": True}
