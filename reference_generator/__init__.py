"""Reference generator: a causal, action-conditioned 3DGS world in torch that emits GSD deltas.

* ``actions``  -- the typed action vocabulary and its JSON form (SPEC.md 11.4 ``kind``/``params``);
* ``protocol`` -- the Generator protocol (``reset(seed)`` -> keyframe output, ``step(action)`` ->
  delta output) and the one-copy hand-off to ``codec.Encoder``;
* ``world``    -- the procedural world: chunks ADDed and retired by DELETE_CELLS around the
  camera, swaying crowns, rippling ponds and doors that open (UPDATE);
* ``differ``   -- any model's successive full scenes -> minimal deltas;
* ``simulate`` -- a scripted headless session -> a stream file, a per-step table and totals;
* ``bench``    -- step, extraction and encode times, and bytes per step (GENERATOR_BENCH.md);
* ``server``   -- ``gsd-serve``, the worlds streamed over WebSocket (SPEC.md 11);
* ``client``, ``watch`` -- the headless client and ``gsd-watch``, which verifies every frame.

torch is needed only by the world side (``pip install -e '.[world]'``): ``actions``, ``client`` and
``watch`` import without it, and so does this package; the torch names below load on first use.
The codec never imports torch.
"""
from importlib import import_module

from .actions import ACTION_TYPES, KINDS, Action, Idle, Interact, Jump, Look, Move, Pose, Strafe, Turn, from_json, to_json

_LAZY = {  # name -> module: these need torch, so they are imported when first asked for
    **dict.fromkeys(("Differ", "DiffStats"), "differ"),
    **dict.fromkeys(("Camera", "Generator", "StepOutput", "UpdateGroup", "attr_layout", "encode_output",
                     "to_delta", "to_host"), "protocol"),
    **dict.fromkeys(("World", "WorldConfig"), "world"),
}

__all__ = [
    "ACTION_TYPES", "KINDS", "Action", "Idle", "Interact", "Jump", "Look", "Move", "Pose", "Strafe", "Turn",
    "from_json", "to_json", "Differ", "DiffStats", "Camera", "Generator", "StepOutput", "UpdateGroup",
    "attr_layout", "encode_output", "to_delta", "to_host", "World", "WorldConfig",
]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
