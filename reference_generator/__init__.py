"""Reference generator: a causal, action-conditioned 3DGS world in torch that emits GSD deltas.

* ``actions``  -- the typed action vocabulary and its JSON form (SPEC.md 11.4 ``kind``/``params``);
* ``protocol`` -- the Generator protocol (``reset(seed)`` -> keyframe output, ``step(action)`` ->
  delta output) and the one-copy hand-off to ``codec.Encoder``;
* ``world``    -- the procedural world: chunks ADDed and retired by DELETE_CELLS around the
  camera, swaying crowns, rippling ponds and doors that open (UPDATE);
* ``differ``   -- any model's successive full scenes -> minimal deltas;
* ``simulate`` -- a scripted headless session -> a stream file, a per-step table and totals;
* ``bench``    -- step, extraction and encode times, and bytes per step (GENERATOR_BENCH.md).

torch is an optional dependency (``pip install -e '.[world]'``); the codec never imports it.
"""
from .actions import ACTION_TYPES, KINDS, Action, Idle, Interact, Jump, Look, Move, Pose, Strafe, Turn, from_json, to_json
from .differ import Differ, DiffStats
from .protocol import Camera, Generator, StepOutput, UpdateGroup, attr_layout, encode_output, to_delta, to_host
from .world import World, WorldConfig

__all__ = [
    "ACTION_TYPES", "KINDS", "Action", "Idle", "Interact", "Jump", "Look", "Move", "Pose", "Strafe", "Turn",
    "from_json", "to_json", "Differ", "DiffStats", "Camera", "Generator", "StepOutput", "UpdateGroup",
    "attr_layout", "encode_output", "to_delta", "to_host", "World", "WorldConfig",
]
