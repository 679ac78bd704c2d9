"""The action vocabulary of the reference world, and its JSON form for the session protocol.

SPEC.md 11.4 carries an action as ``{"type": "action", "seq": S, "kind": K, "params": P}`` and
leaves ``kind`` and ``params`` to the world model; this module is that vocabulary for the
reference world. Conventions: z is up; ``yaw`` is degrees counter-clockwise from +x seen from
above; ``pitch`` is degrees up from the horizon (clamped to +-89); distances are metres.

| kind       | params                                   | effect                                              |
| ---------- | ---------------------------------------- | --------------------------------------------------- |
| `move`     | `distance` (default 0.25)                | walk along the view heading; negative walks back    |
| `strafe`   | `distance` (default 0.25)                | step sideways, positive to the right                |
| `turn`     | `degrees` (default 10)                   | yaw; positive turns left                            |
| `look`     | `degrees` (default 5)                    | pitch; positive looks up                            |
| `jump`     | `speed` (default 4, m/s)                 | vertical take-off; ignored while airborne           |
| `interact` | `reach` (default 4)                      | toggle the nearest door within ``reach`` of the eye |
| `pose`     | `position` [x, y, z], `yaw`, `pitch`     | set the camera pose (continuous control, teleport)  |
| `idle`     | none                                     | time passes (foliage and water still move)          |

Every action also advances the world clock by one step. A server ignores kinds it does not know
(``from_json`` returns None for them) and rejects malformed parameters of known kinds.
``scripted_session`` is the scripted walk that ``gsd-world``, ``gsd-watch`` and the bench play.
This module, like ``client`` and ``watch``, imports without torch.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Union


def _finite(name: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{name} must be a number, got {v!r}")
    v = float(v)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite")
    return v


@dataclass(frozen=True)
class Move:
    """Walk ``distance`` metres along the view heading (yaw only; pitch does not lift you)."""
    distance: float = 0.25
    KIND = "move"

    def __post_init__(self):
        object.__setattr__(self, "distance", _finite("distance", self.distance))
        if abs(self.distance) > 100:
            raise ValueError("move distance limited to 100 m per step")


@dataclass(frozen=True)
class Strafe:
    """Step ``distance`` metres to the right of the heading (negative: to the left)."""
    distance: float = 0.25
    KIND = "strafe"

    def __post_init__(self):
        object.__setattr__(self, "distance", _finite("distance", self.distance))
        if abs(self.distance) > 100:
            raise ValueError("strafe distance limited to 100 m per step")


@dataclass(frozen=True)
class Turn:
    """Change yaw by ``degrees`` (positive: counter-clockwise seen from above, i.e. left)."""
    degrees: float = 10.0
    KIND = "turn"

    def __post_init__(self):
        object.__setattr__(self, "degrees", _finite("degrees", self.degrees))


@dataclass(frozen=True)
class Look:
    """Change pitch by ``degrees`` (positive: up); the result is clamped to [-89, 89]."""
    degrees: float = 5.0
    KIND = "look"

    def __post_init__(self):
        object.__setattr__(self, "degrees", _finite("degrees", self.degrees))


@dataclass(frozen=True)
class Jump:
    """Take off vertically at ``speed`` m/s (gravity brings the camera back to the ground)."""
    speed: float = 4.0
    KIND = "jump"

    def __post_init__(self):
        object.__setattr__(self, "speed", _finite("speed", self.speed))
        if not 0 <= self.speed <= 50:
            raise ValueError("jump speed must be in [0, 50] m/s")


@dataclass(frozen=True)
class Interact:
    """Toggle (open / close) the nearest door whose centre is within ``reach`` metres of the eye."""
    reach: float = 4.0
    KIND = "interact"

    def __post_init__(self):
        object.__setattr__(self, "reach", _finite("reach", self.reach))
        if not 0 < self.reach <= 50:
            raise ValueError("reach must be in (0, 50] m")


@dataclass(frozen=True)
class Pose:
    """Set the camera pose: eye ``position`` (x, y, z), ``yaw`` and ``pitch`` in degrees.

    The continuous control of a client that moves its own camera; a far pose is a teleport
    (the world streams the new surroundings in over the following steps).
    """
    position: tuple = (0.0, 0.0, 1.7)
    yaw: float = 0.0
    pitch: float = 0.0
    KIND = "pose"

    def __post_init__(self):
        p = tuple(self.position) if isinstance(self.position, (list, tuple)) else None
        if p is None or len(p) != 3:
            raise ValueError("position must be [x, y, z]")
        object.__setattr__(self, "position", tuple(_finite("position", v) for v in p))
        object.__setattr__(self, "yaw", _finite("yaw", self.yaw))
        object.__setattr__(self, "pitch", _finite("pitch", self.pitch))


@dataclass(frozen=True)
class Idle:
    """Let one step of time pass."""
    KIND = "idle"


Action = Union[Move, Strafe, Turn, Look, Jump, Interact, Pose, Idle]
ACTION_TYPES: dict[str, type] = {t.KIND: t for t in (Move, Strafe, Turn, Look, Jump, Interact, Pose, Idle)}
KINDS = tuple(ACTION_TYPES)


def coalesce(first: Action, then: Action) -> Action | None:
    """One action with the effect of ``first`` then ``then`` in one world step, or None.

    A server that falls behind folds queued input into fewer steps (latency stays bounded
    under load): walks, strafes and turns add up, a later pose replaces an earlier one, and
    idle adds nothing. Jumps, interactions and looks (pitch clamps) keep their own steps.
    """
    if isinstance(then, Idle):
        return first
    if isinstance(first, Idle):
        return then
    if type(first) is not type(then):
        return None
    if isinstance(first, (Move, Strafe)) and abs(first.distance + then.distance) <= 100:
        return type(first)(first.distance + then.distance)
    if isinstance(first, Turn):
        return Turn(first.degrees + then.degrees)
    if isinstance(first, Pose):
        return then
    return None


def params_of(action: Action) -> dict:
    d = asdict(action)
    if "position" in d:
        d["position"] = list(d["position"])
    return d


def to_json(action: Action, seq: int = 0) -> dict:
    """The SPEC.md 11.4 action message (a dict; ``json.dumps`` it to send)."""
    if type(action) not in ACTION_TYPES.values():
        raise TypeError(f"not an action: {action!r}")
    if not (isinstance(seq, int) and 0 <= seq < 2**53):
        raise ValueError("seq must be an integer in [0, 2^53)")
    return {"type": "action", "seq": seq, "kind": action.KIND, "params": params_of(action)}


def from_json(msg: dict | str | bytes) -> Action | None:
    """Parse an action message. None for a kind this world does not know (the server ignores it);
    ValueError for a malformed message or malformed parameters of a known kind."""
    if isinstance(msg, (str, bytes)):
        try:
            msg = json.loads(msg)
        except json.JSONDecodeError as e:
            raise ValueError(f"action is not JSON: {e}") from None
    if not isinstance(msg, dict) or msg.get("type") != "action":
        raise ValueError("not an action message")
    kind = msg.get("kind")
    if not isinstance(kind, str):
        raise ValueError("action kind must be a string")
    params = msg.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ValueError("action params must be an object")
    cls = ACTION_TYPES.get(kind)
    if cls is None:
        return None
    known = {f.name for f in fields(cls)}
    unknown = set(params) - known
    if unknown:
        raise ValueError(f"unknown parameter(s) for {kind}: {', '.join(sorted(unknown))}")
    try:
        return cls(**params)
    except TypeError as e:
        raise ValueError(str(e)) from None


def scripted_session(steps: int = 300) -> list[Action]:
    """Walk to the spawn house, open its door, look around, turn, walk and jump through new
    chunks, strafe, then glide under continuous camera poses (as a client-driven camera sends
    them), and idle. Positions follow from the spawn at (2.5, 6.5) facing +x."""
    s: list = []
    s += [Move(0.2)] * 15                     # to 3.5 m from the door
    s += [Interact()]                         # open it
    s += [Idle()] * 14                        # it swings for 12 steps
    s += [Look(-3.0)] * 5 + [Look(3.0)] * 5
    s += [Turn(9.0)] * 10                     # face +y
    s += [Move(0.3)] * 60                     # chunks stream in ahead, retire behind
    s += [Jump()] + [Move(0.3)] * 19
    s += [Strafe(0.3)] * 20
    s += [Turn(-6.0)] * 15                    # face +x
    s += [Move(0.3)] * 60
    x, y = 29.5, 30.2                         # where the walk above ends
    for k in range(1, 31):                    # a 14 m glide to the north-east
        s.append(Pose((x + k / 3, y + k / 3, 0.0), 45.0, -5.0 + k / 3))
    s += [Move(0.3)] * 20
    s += [Interact()]                         # nothing in reach out here: a no-op step
    s += [Idle()] * max(0, steps - len(s))
    return s[:steps]
