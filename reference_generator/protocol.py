"""The Generator protocol: any action-conditioned world model that emits GSD deltas.

A generator works in floats on its own device (torch): it names Gaussians by spatial ids
(SPEC.md 3, int64 tensors; every valid id is below 2^63) and says, per step, which Gaussians
appear (ADD: ids + all attributes), which change (UPDATE groups: ids + the attributes that
changed) and which go (DELETE_IDS, or whole spatial cells). ``to_delta`` turns a step's output
into the codec's code-space Delta where the floats live: quantization, residuals against the
closed-loop codes (a mirror of the encoder's state on the same device) and UPDATE masks run in
torch (``device_codes``), and only the codes cross to the host, in **one** device-to-host copy;
the host frames and compresses them (``Encoder.encode_delta``). ``to_host`` is the float
hand-off, for inspection.

Attributes of added Gaussians travel packed as one (n, F) float32 tensor in the order of
SPEC.md 2.1 (``attr_layout``): position 3, log-scale 3, quaternion w x y z 4, opacity logit 1,
SH DC 3, SH rest 3K channel-major.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from codec import ATTRS, Attr, Delta, Encoder, Profile
from codec.attributes import components

from .actions import Action
from .device_codes import FloatOps, build_delta, follow_host, palette_free
from .device_palette import DevicePaletteSearch

U64 = np.uint64


def attr_layout(sh_degree: int) -> dict[Attr, slice]:
    """Column slice of each attribute in the packed (n, F) float layout."""
    out, start = {}, 0
    for a in ATTRS:
        c = components(a, sh_degree)
        out[a] = slice(start, start + c)
        start += c
    return out


def n_floats(sh_degree: int) -> int:
    return 14 + 3 * ((sh_degree + 1) ** 2 - 1)


@dataclass
class Camera:
    """The player's eye: position (x, y, z), yaw and pitch in degrees (conventions: actions.py)."""
    position: tuple = (0.0, 0.0, 1.7)
    yaw: float = 0.0
    pitch: float = 0.0

    def as_dict(self) -> dict:
        return {"position": [round(float(v), 4) for v in self.position], "yaw": round(self.yaw, 3),
                "pitch": round(self.pitch, 3)}


@dataclass
class UpdateGroup:
    """Live Gaussians whose listed attributes changed: ids (n,) int64 and {Attr: (n, C) float32}."""
    ids: torch.Tensor
    values: dict

    @property
    def mask(self) -> int:
        return sum(a.bit for a in self.values)


def _empty_ids(device=None) -> torch.Tensor:
    return torch.zeros(0, dtype=torch.int64, device=device)


@dataclass
class StepOutput:
    """What one generator step (or reset) produced, in floats on the generator's device.

    A keyframe (``reset``) ADDs the whole scene. Ids within ``add_ids``, within each update
    group and across groups are distinct; no id is both added and updated; updated ids are live
    and not deleted by this step (SPEC.md 6.2, 6.3).
    """
    step: int
    keyframe: bool
    add_ids: torch.Tensor
    add: torch.Tensor                      # (n_add, F) packed floats, attr_layout order
    updates: list = field(default_factory=list)        # [UpdateGroup]
    delete_ids: torch.Tensor = field(default_factory=_empty_ids)
    delete_cells: dict = field(default_factory=dict)   # level -> (m,) int64 cell codes
    camera: Camera = field(default_factory=Camera)
    live: int = 0                          # Gaussians live after this step
    events: list = field(default_factory=list)          # human-readable notes ("door 3 opening", ...)

    def counts(self) -> dict:
        return {"add": int(self.add_ids.numel()), "update": int(sum(g.ids.numel() for g in self.updates)),
                "delete_ids": int(self.delete_ids.numel()),
                "delete_cells": int(sum(c.numel() for c in self.delete_cells.values()))}


@runtime_checkable
class Generator(Protocol):
    """Any causal, action-conditioned scene generator.

    ``profile`` fixes the grid its ids live on and the SH degree of what it emits;
    ``max_gaussians`` is the scene budget it promises to respect (the stream header's).
    """
    profile: Profile
    max_gaussians: int

    def reset(self, seed: int) -> StepOutput:
        """Start a fresh world; the output is a keyframe of the whole initial scene."""
        ...

    def step(self, action: Action | None) -> StepOutput:
        """Advance one step under ``action`` (None: no input, time still passes)."""
        ...


# ------------------------------------------------------------------------------------- to the host
@dataclass
class HostOutput:
    """A StepOutput as numpy arrays (views into the one buffer copied from the device)."""
    keyframe: bool
    add_ids: np.ndarray                    # uint64
    add: dict                              # Attr -> (n, C) float32
    updates: list                          # [(ids uint64, {Attr: (n, C) float32})]
    delete_ids: np.ndarray
    delete_cells: dict


def to_host(out: StepOutput, sh_degree: int) -> HostOutput:
    """A step's floats on the host, for inspection (frames are built on the device: ``to_delta``).

    Everything in one device-to-host copy: every tensor viewed as int32 words, concatenated.

    Integer words keep float bit patterns exact; the int64 parts go first so each lands
    8-byte aligned in the host buffer.
    """
    ints = [out.add_ids] + [g.ids for g in out.updates] + [out.delete_ids] + [out.delete_cells[k] for k in sorted(out.delete_cells)]
    floats = [out.add] + [g.values[a] for g in out.updates for a in ATTRS if a in g.values]
    dev = out.add.device      # parts built elsewhere (an empty default) may sit on the CPU
    parts = [t.to(dev).contiguous().reshape(-1).view(torch.int32) for t in ints]
    parts += [t.to(dev, torch.float32).contiguous().reshape(-1).view(torch.int32) for t in floats]
    flat = torch.cat(parts).cpu().numpy() if parts else np.zeros(0, np.int32)
    pos = 0

    def take(n_words: int) -> np.ndarray:
        nonlocal pos
        a = flat[pos:pos + n_words]
        pos += n_words
        return a

    def take_ids(t) -> np.ndarray:
        return take(2 * t.numel()).view(np.int64).astype(U64)

    add_ids = take_ids(out.add_ids)
    upd_ids = [take_ids(g.ids) for g in out.updates]
    del_ids = take_ids(out.delete_ids)
    cells = {int(k): take_ids(out.delete_cells[k]) for k in sorted(out.delete_cells)}
    f = n_floats(sh_degree)
    packed = take(out.add.shape[0] * f).view(np.float32).reshape(-1, f)
    lay = attr_layout(sh_degree)
    add = {a: packed[:, lay[a]] for a in ATTRS}
    updates = []
    for ids, g in zip(upd_ids, out.updates):
        vals = {}
        for a in ATTRS:
            if a in g.values:
                c = components(a, sh_degree)
                vals[a] = take(len(ids) * c).view(np.float32).reshape(len(ids), c)
        updates.append((ids, vals))
    return HostOutput(out.keyframe, add_ids, add, updates, del_ids, cells)


def to_ops(out: StepOutput) -> FloatOps:
    """A step's output as the frame builder's input (no copy: the tensors stay on their device)."""
    return FloatOps(keyframe=out.keyframe, add_ids=out.add_ids, add=out.add,
                    updates=[(g.ids, g.values) for g in out.updates], delete_ids=out.delete_ids,
                    delete_cells=out.delete_cells)


# Build a CPU world's frames as a GPU world's are (device_codes.build_delta, the device mirror): the
# GPU paths' own logic, exercised where there is no GPU (tests); slower than the host path on a CPU.
DEVICE_PATH_ON_CPU = False


def to_delta(encoder: Encoder, out: StepOutput) -> Delta:
    """The code-space Delta of one step against the encoder's current state (not yet applied).

    On a GPU, quantization, residuals against the closed-loop codes and UPDATE masks run in torch
    on the generator's device (``device_codes.build_delta``); one packed copy brings the codes to
    the host. A step on the CPU goes to the codec's own encoder as numpy arrays (``to_host``, then
    ``Encoder.make_delta``): the same codes, without a torch call per operation, which on the
    small frames of a CPU world cost more than the work (0.9 against 0.4 ms a step at 3,000
    Gaussians). With an SH palette (SPEC.md 5.9) a step that ADDs (or UPDATEs SH_REST) takes the
    host path on every device: its SH_REST codes are palette indices that the encoder chooses (and
    its palette grows) as it builds the delta; an encoder made by ``encoder_for`` searches the
    palette on the world's device. Its other steps take the device path, whose mirror reads the
    host-built frames back from the encoder's state (``device_codes.follow_host``).
    """
    on_device = out.add.device.type != "cpu" or DEVICE_PATH_ON_CPU
    if on_device:
        ops = to_ops(out)
        if not encoder.profile.palette or palette_free(ops):
            return build_delta(encoder, ops, out.add.device)
    h = to_host(out, encoder.profile.sh_degree)
    d = encoder.make_delta(add=(h.add_ids, h.add) if len(h.add_ids) or h.keyframe else None,
                           update=[(ids, vals) for ids, vals in h.updates if len(ids)] or None,
                           delete=h.delete_ids if len(h.delete_ids) else None,
                           delete_cells=h.delete_cells or None, keyframe=h.keyframe)
    if on_device:
        follow_host(encoder, d)
    return d


def encoder_for(profile: Profile, device, **kw) -> Encoder:
    """The encoder of a world on ``device``: ``Encoder(profile, **kw)``, whose SH palette (if the
    profile has one) is searched on that device when it is a GPU (``DevicePaletteSearch``)."""
    device = torch.device(device)
    if profile.palette and device.type != "cpu":
        kw.setdefault("palette_search", DevicePaletteSearch.on(device))
    return Encoder(profile, **kw)


def encode_output(encoder: Encoder, out: StepOutput) -> bytes:
    """to_delta then Encoder.encode_delta: the frame bytes of one step (the state advances)."""
    return encoder.encode_delta(to_delta(encoder, out))
