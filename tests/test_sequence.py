"""4D sequences: several scene files -> one stream (codec.sequence, `gsd encode A B C`, `--fps`, `gsd info`).

Ids carried by a PLY `id` property, rows matched by order or by identical values, the frame rate in the
header, info's per-frame rows, and every decoded frame equal to its input scene within quantization.
"""
from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest

from codec import Encoder, Profile, cli
from codec.attributes import Attr
from codec.ply import read_ply_with_ids, write_ply
from codec.sequence import SequenceEncoder, file_ids, frame_paths, match_rows
from codec.sections import GAPS
from codec.stream import read_stream, split_frames
from codec.synthetic import synthetic_scene
from codec.wire import decode_header, encode_header
from conformance import craft

N = 1500


def scenes(frames: int = 5, n: int = N, seed: int = 0):
    """A scene whose first tenth drifts along x and whose next tenth changes colour each frame."""
    g = synthetic_scene(n, 1, seed)
    out = []
    for i in range(frames):
        h = g.take(np.arange(n))
        h.positions[: n // 10, 0] += 0.05 * i
        h.sh_dc[n // 10: n // 5] += 0.1 * i
        out.append(h)
    return out


def run(argv, capsys):
    code = cli.main(["-q", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


def decoded_frames(path):
    """(ids, Gaussians) of the state after each frame, and the header."""
    out, header = [], None
    for dec, _ in read_stream(path.read_bytes()):
        header = dec.header
        out.append(dec.state.to_gaussians())
    return header, out


def assert_close(profile, want, got, order=None):
    """Decoded Gaussians equal the input within the profile's error (positions: half a step)."""
    got_pos = got.positions if order is None else got.positions[order]
    step = profile.grid.cell_size / (1 << profile.quant.position_bits)
    assert np.abs(got_pos - want.positions).max() <= step * 0.5 + 1e-5
    got_dc = got.sh_dc if order is None else got.sh_dc[order]
    assert np.abs(got_dc - want.sh_dc).max() <= profile.error_bound(Attr.SH_DC) * 1.0001 + 1e-6


def by_position(want, got) -> np.ndarray:
    """Rows of ``got`` in the order of ``want``'s rows (nearest decoded position; scenes here are small)."""
    d = ((want.positions[:, None, :] - got.positions[None, :, :]) ** 2).sum(-1)
    idx = d.argmin(1)
    assert len(np.unique(idx)) == len(idx)
    return idx


def min_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance from each row of ``a`` to its nearest row of ``b`` (in blocks: bounded memory)."""
    return np.concatenate([np.sqrt(((a[i:i + 512, None, :] - b[None, :, :]) ** 2).sum(-1).min(1))
                           for i in range(0, len(a), 512)])


# ------------------------------------------------------------------------------------ matching
def test_frame_paths_pattern_folder_natural_order(tmp_path):
    for i in (10, 2, 1):
        (tmp_path / f"f_{i}.ply").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    want = [str(tmp_path / f"f_{i}.ply") for i in (1, 2, 10)]
    assert frame_paths([str(tmp_path / "f_*.ply")]) == want
    assert frame_paths([str(tmp_path)]) == want
    with pytest.raises(FileNotFoundError):
        frame_paths([str(tmp_path / "none_*.ply")])


def test_match_rows_pairs_copies_in_order():
    a = np.array([[1, 2], [3, 4], [1, 2], [5, 6]], np.uint32)
    b = np.array([[1, 2], [7, 8], [3, 4], [1, 2], [1, 2]], np.uint32)
    pa, pb = match_rows(a, b)
    assert sorted(zip(pa.tolist(), pb.tolist())) == [(0, 0), (1, 2), (2, 3)]


def test_file_ids_checked():
    assert file_ids(np.array([3.0, 1.0]), 2).tolist() == [3, 1]
    for bad in (np.array([1, 1]), np.array([-1, 2]), np.array([0.5, 2.0]), np.array([np.nan, 1.0])):
        with pytest.raises(ValueError):
            file_ids(bad, 2)


def test_rows_matched_updates_only_what_moved():
    frames = scenes(3)
    enc = Encoder(Profile.fit("compact", frames[0]))
    seq = SequenceEncoder(enc)
    reps = [seq.push(g)[1] for g in frames]
    assert reps[0].keyframe and reps[0].add == N
    for r in reps[1:]:
        assert (r.matched_by, r.add, r.delete) == ("rows", 0, 0)
        assert 0 < r.update <= N // 5 and r.unchanged == N - r.update


def test_values_matched_when_counts_differ():
    g = synthetic_scene(N, 1, 3)
    later = g.take(np.r_[np.arange(100, N), np.arange(100, 105)])  # 100 gone; 5 second copies born
    enc = Encoder(Profile.fit("compact", g))
    seq = SequenceEncoder(enc)
    seq.push(g)
    _, r = seq.push(later)
    assert (r.matched_by, r.delete, r.add, r.update, r.gaussians) == ("values", 100, 5, 0, N - 95)


def test_ids_carried_through_ply(tmp_path, capsys):
    frames = scenes(4)
    ids = np.arange(N) * 7 + 1000
    paths = []
    for i, g in enumerate(frames):
        keep = np.arange(N) if i < 2 else np.arange(50, N)       # frame 2: ids of the first 50 gone
        rng = np.random.default_rng(i)
        order = rng.permutation(keep)                            # rows shuffled: only ids can match them
        p = tmp_path / f"frame_{i:04d}.ply"
        write_ply(p, g.take(order), ids=ids[order])
        paths.append(p)
    g1, got = read_ply_with_ids(paths[1])
    assert got is not None and set(got.tolist()) == set(ids.tolist())
    out = tmp_path / "seq.gsd"
    code, text, _ = run(["encode", *paths, out, "--profile", "compact", "--json"], capsys)
    assert code == 0
    res = json.loads(text)
    per = res["per_frame"]
    assert [f["matched_by"] for f in per] == ["-", "ids", "ids", "ids"]
    assert per[2]["delete"] == 50 and per[2]["add"] == 0 and per[3]["delete"] == 0
    assert per[1]["update"] <= N // 5    # shuffled rows, yet only the moving and recoloured ones change
    header, states = decoded_frames(out)
    prof = header.profile
    for want_i, (_, got_g) in zip(range(4), states):
        want = frames[want_i].take(np.arange(N) if want_i < 2 else np.arange(50, N))
        assert_close(prof, want, got_g, by_position(want, got_g))


# ------------------------------------------------------------------------------------ the command
def test_encode_sequence_fps_info_and_decoded_frames(tmp_path, capsys):
    frames = scenes(6)
    for i, g in enumerate(frames):
        write_ply(tmp_path / f"frame_{i:04d}.ply", g)
    out = tmp_path / "seq.gsd"
    code, text, _ = run(["encode", str(tmp_path / "frame_*.ply"), out, "--fps", "12.5", "--profile", "compact"],
                        capsys)
    assert code == 0, text
    assert "12.5 fps" in text and "rows" in text
    header, states = decoded_frames(out)
    assert header.frame_rate == 12.5 and len(states) == 6
    for want, (ids, got) in zip(frames, states):
        assert len(got) == N
        assert_close(header.profile, want, got, by_position(want, got))

    code, text, _ = run(["info", out], capsys)
    assert code == 0
    assert "frame rate   12.5 fps" in text and "6 frames play in 0.48 s" in text
    code, text, _ = run(["info", out, "--json"], capsys)
    info = json.loads(text)
    assert info["header"]["frame_rate"] == 12.5
    fr = info["frames"]
    assert [f["index"] for f in fr] == list(range(6)) and [f["keyframe"] for f in fr] == [True] + [False] * 5
    assert fr[0]["ops"]["add"] == N and all(f["ops"]["add"] == 0 and f["ops"]["update"] > 0 for f in fr[1:])
    assert sum(f["bytes"] for f in fr) + info["header"]["bytes"] == out.stat().st_size
    # a folder of the same files gives the same stream
    code, _, _ = run(["encode", tmp_path, tmp_path / "again.gsd", "--fps", "12.5", "--profile", "compact"], capsys)
    assert code == 0 and (tmp_path / "again.gsd").read_bytes() == out.read_bytes()


def test_sh0_sequence_with_the_default_profile(tmp_path, capsys):
    """Scenes without SH_REST through `gsd encode`'s defaults (an SH palette profile at degree 0):
    the clamp report of each delta has no SH_REST components to count, and every frame decodes."""
    g = synthetic_scene(N, 0, 4)
    moved = g.take(np.arange(N))
    moved.positions[: N // 10] += 0.05
    moved.scales[: N // 10] += 0.3
    for i, h in enumerate((g, moved)):
        write_ply(tmp_path / f"f{i}.ply", h)
    out = tmp_path / "seq.gsd"
    code, text, _ = run(["encode", str(tmp_path / "f*.ply"), out], capsys)
    assert code == 0, text
    header, states = decoded_frames(out)
    assert header.profile.sh_degree == 0 and len(states) == 2
    for want, (ids, got) in zip((g, moved), states):
        assert_close(header.profile, want, got, by_position(want, got))


def test_one_file_with_fps_and_without(tmp_path, capsys):
    g = synthetic_scene(500, 0, 1)
    write_ply(tmp_path / "a.ply", g)
    assert run(["encode", tmp_path / "a.ply", tmp_path / "a.gsd"], capsys)[0] == 0
    assert run(["encode", tmp_path / "a.ply", tmp_path / "b.gsd", "--fps", "30"], capsys)[0] == 0
    ha, _ = decode_header((tmp_path / "a.gsd").read_bytes())
    hb, _ = decode_header((tmp_path / "b.gsd").read_bytes())
    assert ha.frame_rate == 0 and hb.frame_rate == 30
    assert "frame rate   unset" in run(["info", tmp_path / "a.gsd"], capsys)[1]


def test_sequence_refuses_row_dropping_options(tmp_path, capsys):
    for i in range(2):
        write_ply(tmp_path / f"f{i}.ply", synthetic_scene(100, 0, i))
    code, _, err = run(["encode", tmp_path / "f0.ply", tmp_path / "f1.ply", tmp_path / "o.gsd", "--drop-outliers"],
                       capsys)
    assert code == 2 and "--drop-outliers" in err


def test_header_frame_rate_not_trusted():
    """A frame_rate that is not a positive finite number reads as unset; the rest of the header as written."""
    enc = Encoder(Profile.fit("compact", synthetic_scene(50, 0, 0)), frame_rate=24.0)
    rec = bytearray(encode_header(enc.header))
    good, _ = decode_header(bytes(rec))
    at = bytes(rec).find(struct.pack("<f", 24.0))
    assert at > 0 and good.frame_rate == 24
    for bad in (float("nan"), float("inf"), -5.0):
        rec[at:at + 4] = struct.pack("<f", bad)
        rec[-4:] = struct.pack("<I", zlib.crc32(bytes(rec[:-4])))
        h, _ = decode_header(bytes(rec))
        assert h.frame_rate == 0 and h.profile == good.profile


def test_reference_world_steps_round_trip_as_a_sequence(tmp_path, capsys):
    """The reference world's per-step states (gsd-world's stream, each step decoded to a PLY with
    gsd decode --frame) encode back into one sequence whose frames hold the same Gaussians."""
    pytest.importorskip("torch")
    from reference_generator import simulate

    world = tmp_path / "world.gsd"
    assert simulate.main(["--steps", "4", "--target-live", "3000", "--out", str(world), "--quiet"]) == 0
    capsys.readouterr()
    states = decoded_frames(world)[1]
    for k in range(len(states)):
        assert run(["decode", world, tmp_path / f"step_{k}.ply", "--frame", k], capsys)[0] == 0
    code, out, _ = run(["encode", str(tmp_path / "step_*.ply"), tmp_path / "seq.gsd", "--fps", 25], capsys)
    assert code == 0 and "frame rate     25 fps" in out
    header, frames = decoded_frames(tmp_path / "seq.gsd")
    assert header.frame_rate == 25.0 and len(frames) == len(states)
    for (_, want), (_, got) in zip(states, frames):
        assert len(got) == len(want)
        near = min_distances(want.positions, got.positions)
        assert near.max() < 0.01          # every step's Gaussian is there, within two quantizations


@pytest.mark.parametrize("fmt, gapped", [(None, True), ("1.3", False)])
def test_a_sequence_sends_scattered_ranks_gap_coded_unless_an_older_format_is_asked(tmp_path, capsys, fmt, gapped):
    """`gsd encode` of a sequence ranks its UPDATE ids; by default (format 1.4) a scattered rank list is
    stored as the gap code, with --format 1.3 as zstd."""
    g = synthetic_scene(N, 0, 6)
    moved = g.take(np.arange(N))
    rows = np.random.default_rng(1).choice(N, N // 20, replace=False)  # scattered over the id space
    moved.positions[rows] += 0.05
    for i, h in enumerate((g, moved)):
        write_ply(tmp_path / f"f{i}.ply", h)
    out = tmp_path / "seq.gsd"
    code, text, _ = run(["encode", str(tmp_path / "f*.ply"), out, *(["--format", fmt] if fmt else [])], capsys)
    assert code == 0, text
    data = out.read_bytes()
    _, _, spans = split_frames(data)
    at, size = spans[1]
    meta, _ = craft.split_frame(data[at:at + size])
    assert (GAPS in {s.compression for s in craft.parse_frame_meta(meta).sections}) == gapped
    assert len(decoded_frames(out)[1]) == 2
