"""The reference generator: actions, the world's deltas, ids, doors, budgets, determinism, the CLI.

Worlds here are tiny (a few thousand Gaussians, SH degree 1) so the file runs in seconds on a
2-core CPU. The central check: after every step, the decoder's state holds exactly the codes of
``World.scene()`` quantized by the stream's profile (same ids, same codes), so the deltas say
everything that changed and nothing else is needed.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")  # the world needs the optional 'world' extra

from codec import ATTRS, Attr, Decoder, Encoder, validate_stream  # noqa: E402
from codec.errors import GsdError  # noqa: E402
from reference_generator import (  # noqa: E402
    ACTION_TYPES, Generator, Idle, Interact, Jump, Look, Move, Pose, Strafe, Turn, World, WorldConfig,
    attr_layout, encode_output, from_json, to_host, to_json,
)
from reference_generator.device_codes import mirror_of  # noqa: E402
from reference_generator.protocol import StepOutput, UpdateGroup  # noqa: E402
from reference_generator.simulate import main as simulate_main, scripted_session  # noqa: E402
from reference_generator.world import spatial_ids  # noqa: E402

torch.set_num_threads(1)  # small tensors: OpenMP wake-ups cost more than they save on 2 cores
U64 = np.uint64
SMALL = WorldConfig(sh_degree=1, target_live=5000, view_radius=36.0, retire_margin=12.0)


class Session:
    """A world, its encoder and a decoder fed every frame."""

    def __init__(self, cfg: WorldConfig = SMALL, seed: int = 0):
        self.world = World(cfg)
        self.enc = Encoder(self.world.profile, max_gaussians=cfg.max_gaussians)
        self.header = self.enc.header_bytes()
        self.dec = Decoder(self.header)
        self.frames = [self.header]
        self.out = self.world.reset(seed)
        self.delta = self._push(self.out)

    def _push(self, out):
        frame = encode_output(self.enc, out)
        self.frames.append(frame)
        d = self.dec.decode_frame(frame)
        assert self.dec.state.digest() == self.enc.state.digest()
        return d

    def step(self, action=None):
        self.out = self.world.step(action)
        self.delta = self._push(self.out)
        return self.out, self.delta

    def stream(self) -> bytes:
        return b"".join(self.frames)


def assert_state_is_scene(dec: Decoder, world: World) -> None:
    """The decoded state holds exactly the world's scene, quantized: same ids, same codes."""
    ids_t, x = world.scene()
    ids = ids_t.numpy().astype(U64)
    xs = x.numpy()
    order = np.argsort(ids)
    ids, xs = ids[order], xs[order]
    got_ids, codes = dec.state.sorted_codes()
    assert np.array_equal(got_ids, ids)
    p, lay = dec.header.profile, attr_layout(world.cfg.sh_degree)
    for a in ATTRS:
        if p.comps(a):
            assert np.array_equal(codes[a], p.quantize(a, xs[:, lay[a]], ids)), a.name


# ------------------------------------------------------------------------------------------ actions
def test_actions_round_trip_through_json():
    acts = [Move(0.5), Move(-1), Strafe(0.3), Turn(-15), Look(4), Jump(), Jump(2.5), Interact(), Interact(2.0),
            Pose((1.0, -2.0, 3.5), 30.0, -10.0), Idle()]
    assert {a.KIND for a in acts} == set(ACTION_TYPES)
    for seq, a in enumerate(acts):
        msg = to_json(a, seq)
        assert msg["type"] == "action" and msg["seq"] == seq and msg["kind"] == a.KIND
        wire = json.dumps(msg)
        assert from_json(wire) == a
        assert from_json(json.loads(wire)) == a


def test_action_json_rejects_malformed_and_ignores_unknown_kinds():
    assert from_json({"type": "action", "seq": 0, "kind": "teleport_to_mars", "params": {}}) is None
    assert from_json({"type": "action", "seq": 0, "kind": "idle"}) == Idle()
    bad = [
        {"type": "ack", "seq": 0, "kind": "move"},
        {"type": "action", "kind": 3},
        {"type": "action", "kind": "move", "params": {"distance": "far"}},
        {"type": "action", "kind": "move", "params": {"distance": float("nan")}},
        {"type": "action", "kind": "move", "params": {"distance": True}},
        {"type": "action", "kind": "move", "params": {"speed": 1}},
        {"type": "action", "kind": "move", "params": [1]},
        {"type": "action", "kind": "pose", "params": {"position": [1, 2]}},
        {"type": "action", "kind": "jump", "params": {"speed": -1}},
        {"type": "action", "kind": "interact", "params": {"reach": 0}},
        "{not json",
    ]
    for m in bad:
        with pytest.raises(ValueError):
            from_json(m)
    with pytest.raises(ValueError):
        to_json(Idle(), seq=2**53)


# ------------------------------------------------------------------------------------ the protocol
def test_world_is_a_generator_and_to_host_is_exact():
    w = World(SMALL)
    assert isinstance(w, Generator)
    big = torch.tensor([2**62 + 12345, 7, 2**40 + 1], dtype=torch.int64)
    f = 14 + 9
    add = torch.randn(3, f)
    add[0, 0] = -0.0
    out = StepOutput(1, False, big, add,
                     updates=[UpdateGroup(big[:2], {Attr.POSITION: torch.randn(2, 3), Attr.SH_DC: torch.randn(2, 3)})],
                     delete_ids=torch.tensor([5], dtype=torch.int64),
                     delete_cells={4: torch.tensor([2**40 + 3], dtype=torch.int64)})
    h = to_host(out, 1)
    assert h.add_ids.dtype == U64 and h.add_ids.tolist() == [2**62 + 12345, 7, 2**40 + 1]
    lay = attr_layout(1)
    for a in ATTRS:
        assert np.array_equal(h.add[a].view(np.uint32), add[:, lay[a]].numpy().view(np.uint32))
    ids, vals = h.updates[0]
    assert ids.tolist() == [2**62 + 12345, 7] and set(vals) == {Attr.POSITION, Attr.SH_DC}
    assert np.array_equal(vals[Attr.SH_DC], out.updates[0].values[Attr.SH_DC].numpy())
    assert h.delete_ids.tolist() == [5] and h.delete_cells[4].tolist() == [2**40 + 3]


# ----------------------------------------------------------------------------------------- the world
def test_ids_are_the_encoders_spatial_ids_and_chunks_own_their_cells():
    w = World(SMALL)
    out = w.reset(3)
    pos = out.add[:, :3].numpy()
    fresh = Encoder(w.profile)
    assert np.array_equal(fresh.assign_ids(pos), out.add_ids.numpy().astype(U64))
    shift = w.grid.slot_bits + 3 * SMALL.chunk_level
    all_cells = set()
    for ch in w.chunks.values():
        cells = set((ch.ids >> shift).tolist())
        assert cells == set(ch.cells.tolist())
        assert not cells & all_cells                     # no cell is shared between chunks
        all_cells |= cells
    # the torch id computation itself, against the codec's, on awkward positions
    g = w.grid
    p = torch.tensor([[0.0, 0.0, 0.0], [-0.0, 15.999999, 1e-7], [16.0, -1e-6, -3.5], [0.5, 0.5, 0.5]] * 3)
    assert np.array_equal(spatial_ids(p, g).numpy().astype(U64), Encoder(w.profile).assign_ids(p.numpy()))


def test_scripted_session_stream_is_valid_and_state_is_the_scene():
    s = Session()
    assert s.out.keyframe and s.dec.state.seq == 1
    assert_state_is_scene(s.dec, s.world)
    acts = scripted_session(300)
    # a compressed tour: the door, looking, turning, a long walk with a jump and a strafe, poses, idling
    tour = acts[:30] + acts[30:40:3] + acts[40:50:2] + [Move(2.0)] * 20 + [Jump()] + [Strafe(1.0)] * 4 \
        + acts[225:235] + [Interact()] + [Idle()] * 3
    kinds = set()
    for k, a in enumerate(tour):
        out, d = s.step(a)
        kinds.add(a.KIND)
        assert out.live <= s.world.max_gaussians
        if k % 9 == 0 or k == len(tour) - 1:
            assert_state_is_scene(s.dec, s.world)
    assert kinds == set(ACTION_TYPES)
    assert validate_stream(s.stream()) == []
    # the device mirror the frames were built against holds exactly the encoder's state
    ids = s.enc.state.ids()
    mirror, state = mirror_of(s.enc, "cpu").codes_of(ids), s.enc.state.codes_of(ids)
    assert all(np.array_equal(mirror[a], state[a]) for a in ATTRS)


def test_chunks_stream_in_and_are_retired_by_cells_within_budget():
    cfg = WorldConfig(sh_degree=0, target_live=4000, view_radius=36.0, retire_margin=12.0, max_gaussians=3500)
    s = Session(cfg)
    assert s.out.live <= 3500 and len(s.world.chunks) >= 4   # the budget stopped the keyframe early
    added = retired = 0
    for _ in range(40):
        out, d = s.step(Move(3.0))
        assert out.live <= 3500 and len(s.dec.state) == out.live
        added += d.n_add
        retired += sum(len(c) for c in d.delete_cells.values())
        if d.delete_cells:
            assert set(d.delete_cells) == {cfg.chunk_level} and len(d.delete_ids) == 0
    assert added > 0 and retired > 0
    assert_state_is_scene(s.dec, s.world)
    # teleport: everything around is retired at once, then streams back in a few chunks per step
    out, d = s.step(Pose((2000.0, -1500.0, 0.0), 0.0, 0.0))
    assert len(d.delete_cells[cfg.chunk_level]) > 0 and len(s.world.chunks) <= cfg.max_chunk_loads
    before = len(s.world.chunks)
    s.step(Idle())
    assert before < len(s.world.chunks) <= before + cfg.max_chunk_loads
    assert_state_is_scene(s.dec, s.world)


def test_new_chunks_stream_in_over_several_steps():
    """A per-step ADD budget spreads a chunk over steps (random row order: coarse to fine), while the
    visible part of a half-streamed chunk already sways and ripples (UPDATEs only of live rows)."""
    cfg = WorldConfig(sh_degree=0, target_live=8000, view_radius=36.0, retire_margin=12.0, max_add_per_step=150)
    s = Session(cfg)
    partial_seen = 0
    for k in range(70):
        out, d = s.step(Move(1.5) if k < 20 else Idle())
        assert d.n_add <= 150
        partial = [c for c in s.world.chunks.values() if 0 < c.emitted < c.n]
        partial_seen += bool(partial)
        if partial:
            assert len(s.dec.state) == s.world.live < s.world.reserved
        if k % 6 == 0:
            assert_state_is_scene(s.dec, s.world)
    assert partial_seen >= 5
    assert s.world.live == s.world.reserved and not s.world.pending     # everything arrived in the end
    assert_state_is_scene(s.dec, s.world)
    assert validate_stream(s.stream()) == []


def _walk_to_door(s: Session):
    for _ in range(15):
        s.step(Move(0.2))
    out, d = s.step(Interact())
    assert any("opening" in e for e in out.events), out.events
    return next(d for d in s.world.doors() if d.target)


def test_door_opens_on_interact_as_a_rigid_rotation():
    s = Session()
    door = _walk_to_door(s)
    ids = set(door.ids.tolist())
    lay = attr_layout(SMALL.sh_degree)
    masks_seen = set()
    for _ in range(SMALL.door_steps + 2):
        out, d = s.step(Idle())
        sel = np.isin(d.update_ids, np.array(sorted(ids), U64))
        masks_seen |= set(int(m) for m in d.update_mask[sel])
    assert door.angle == door.target == SMALL.door_open_degrees
    assert any(m & Attr.POSITION.bit and m & Attr.ROTATION.bit for m in masks_seen)
    ch = s.world.chunks[door.key[:2]]
    p = ch.attrs[door.rows][:, lay[Attr.POSITION]]
    # rigid: each door Gaussian is the closed offset from the hinge turned by 90 degrees about z
    rel = door.rel
    expect = door.hinge + torch.stack([-rel[:, 1], rel[:, 0], rel[:, 2]], 1)
    assert torch.allclose(p, expect, atol=1e-5)
    assert torch.allclose((p - door.hinge).norm(dim=1), rel.norm(dim=1), atol=1e-5)
    assert_state_is_scene(s.dec, s.world)
    # a second interact closes it again
    out, _ = s.step(Interact())
    assert any("closing" in e for e in out.events)
    for _ in range(SMALL.door_steps):
        s.step(Idle())
    assert door.angle == 0.0
    assert torch.allclose(ch.attrs[door.rows][:, lay[Attr.POSITION]], door.hinge + door.rel, atol=1e-5)
    assert_state_is_scene(s.dec, s.world)


def test_door_state_survives_unloading_and_reloading():
    s = Session()
    door = _walk_to_door(s)
    key = door.key
    s.step(Pose((900.0, 900.0, 0.0), 0.0, 0.0))           # far away: the spawn chunk is retired
    assert key[:2] not in s.world.chunks
    s.step(Pose((2.5, 6.5, 0.0), 0.0, 0.0))               # back: it is regenerated, door open
    assert key[:2] in s.world.chunks
    back = next(d for d in s.world.doors() if d.key == key)
    assert back.angle == back.target == SMALL.door_open_degrees
    lay = attr_layout(SMALL.sh_degree)
    p = s.world.chunks[key[:2]].attrs[back.rows][:, lay[Attr.POSITION]]
    assert torch.allclose(p, back.hinge + torch.stack([-back.rel[:, 1], back.rel[:, 0], back.rel[:, 2]], 1), atol=1e-5)
    assert_state_is_scene(s.dec, s.world)
    assert validate_stream(s.stream()) == []


def test_foliage_and_water_move_near_the_camera():
    s = Session()
    masks = set()
    moved_ids = set()
    for _ in range(6):
        out, d = s.step(Idle())
        masks |= set(int(m) for m in d.update_mask)
        moved_ids |= set(d.update_ids.tolist())
        assert d.n_add == 0 and not d.delete_cells       # standing still: only motion
    assert Attr.POSITION.bit in masks                                 # swaying crowns
    assert Attr.POSITION.bit | Attr.SH_DC.bit in masks                # rippling, shimmering pond
    cam = torch.tensor(s.world.camera().position[:2])
    ids_t, x = s.world.scene()
    near = ((x[:, :2] - cam).norm(dim=1) < SMALL.dyn_radius + 0.5)
    moved = torch.tensor(np.isin(ids_t.numpy(), np.array(sorted(moved_ids), np.int64)))
    assert moved.any() and not (moved & ~near).any()                  # nothing moves out of range
    assert_state_is_scene(s.dec, s.world)


def test_deterministic_for_a_seed():
    def run(seed):
        s = Session(seed=seed)
        for a in [Move(0.2)] * 5 + [Interact(), Idle(), Turn(30), Move(3.0), Move(3.0), Jump(), Idle()]:
            s.step(a)
        return s.frames
    a, b = run(7), run(7)
    assert a == b
    c = run(8)
    assert c[1] != a[1]


def test_generator_output_keeps_op_rules():
    """No id both added and updated, no update of a retired id: the encoder's own checks pass every step."""
    s = Session(WorldConfig(sh_degree=0, target_live=3000, view_radius=32.0, retire_margin=8.0, max_chunk_loads=3))
    for k in range(30):
        out, d = s.step(Move(1.5) if k % 3 else Turn(20))
        if d.n_update and d.n_add:
            assert not np.isin(d.update_ids, d.add_ids).any()
    assert validate_stream(s.stream()) == []


def test_bad_usage_is_refused():
    w = World(SMALL)
    with pytest.raises(RuntimeError):
        w.step(Idle())
    with pytest.raises(ValueError):
        WorldConfig(chunk_level=0)
    w.reset(0)
    with pytest.raises(TypeError):
        w.step("move")
    with pytest.raises(GsdError):
        World(WorldConfig(cell_bits=16, slot_bits=20))  # 3B + S > 63: the grid itself is invalid


def test_simulate_command_writes_a_valid_stream(tmp_path, capsys):
    out = tmp_path / "s.gsd"
    js = tmp_path / "s.json"
    rc = simulate_main(["--steps", "40", "--target-live", "3000", "--sh-degree", "0", "--out", str(out),
                        "--json", str(js), "--full-every", "20"])
    text = capsys.readouterr().out
    assert rc == 0
    assert "validate_stream: ok" in text and "door (0, 0, 0) opening" in text
    assert validate_stream(str(out)) == []
    rep = json.loads(js.read_text())
    assert rep["totals"]["steps"] == 40 and len(rep["steps"]) == 41
    assert rep["totals"]["stream_bytes"] == out.stat().st_size
    assert math.isfinite(rep["totals"]["delta_bytes_mean"])


def test_bench_kinds_only_prints_the_codec_split_and_writes_no_report(tmp_path, capsys):
    """``python -m reference_generator.bench --kinds-only``: the action kinds' codec split, quickly."""
    from reference_generator.bench import KIND_ORDER
    from reference_generator.bench import main as bench_main

    js, report = tmp_path / "k.json", tmp_path / "GENERATOR_BENCH.md"
    rc = bench_main(["--n", "3000", "--steps-per-kind", "2", "--kinds-only", "--threads", "1",
                     "--json", str(js), "--out", str(report)])
    text = capsys.readouterr().out
    assert rc == 0 and not report.exists()
    assert "ADD steps: n, codes, encode, codec" in text
    split = json.loads(js.read_text())["sizes"][0]["codec_split"]
    assert list(split) == list(KIND_ORDER)
    for row in split.values():
        assert all(math.isfinite(v) and v > 0 for v in row["all"])      # codes, encode, codec medians


def test_chunks_generated_ahead_change_nothing():
    """Chunks made on the worker thread ahead of need give the same stream as chunks made when needed."""
    def run(margin):
        s = Session(WorldConfig(sh_degree=1, target_live=5000, view_radius=36.0, retire_margin=12.0,
                                prefetch_margin=margin), seed=4)
        for a in [Move(2.0)] * 12 + [Turn(90)] + [Move(2.0)] * 8 + [Pose((-60.0, 20.0, 0.0), 0.0, 0.0)] + [Idle()] * 3:
            s.step(a)
        ahead = s.world._ahead
        s.world.close()
        return s.frames, ahead
    (a, ahead), (b, none) = run(16.0), run(0.0)
    assert ahead is not None and none is None
    assert a == b


def test_the_chunk_worker_lets_go_of_the_device_where_it_pauses():
    """A frame graph's capture takes ``device_codes.CAPTURE_LOCK`` (some CUDA calls refuse to run on any
    thread during a capture); the world's chunk worker holds it while it works and lets go while it
    waits at a pause point, so a capture waits for at most one of its operations, and the worker
    goes on only once the capture is over."""
    import threading
    import time

    from reference_generator import device_codes as dc
    from reference_generator import world as W

    w = W.World(W.WorldConfig(target_live=2000))
    w._gate.pause(30.0)
    went_on = threading.Event()

    def worker():
        W._WORKER.on = True
        with dc.CAPTURE_LOCK:
            w._pause_point()                    # waits at the paused gate
            went_on.set()

    t = threading.Thread(target=worker, daemon=True)
    t.start()
    time.sleep(0.1)
    assert dc.CAPTURE_LOCK.acquire(timeout=5)  # free while the worker waits
    w._gate.resume()
    time.sleep(0.1)
    assert not went_on.is_set()                # the worker waits for the capture to end
    dc.CAPTURE_LOCK.release()
    assert went_on.wait(5)
    t.join(5)
    assert not dc.CAPTURE_LOCK.locked()
