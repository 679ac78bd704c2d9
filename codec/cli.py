"""`gsd`: the command line of the GSD reference codec.

Subcommands: encode (a splat file -> stream), decode (stream -> .ply/.spz/.splat), info (what each
frame costs), validate (conformance check with stable error codes) and demo
(a synthetic scene streamed as a keyframe plus deltas, verified by decoding).

Exit status: 0 success, 1 a stream/codec error (GsdError: its code name is
printed) or bad input data, 2 usage errors (bad arguments, missing or
unwritable files). Output cut short by a closed pipe (``gsd info x | head``)
ends quietly with status 141, as a C tool killed by SIGPIPE.
Progress bars go to stderr, only on a terminal and never with --quiet.
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import sys
import time
from contextlib import ExitStack, contextmanager

import numpy as np
from tqdm import tqdm

from . import FORMAT_VERSION, __version__
from . import ply
from .attributes import ATTRS, Attr, Gaussians, rest_coeffs
from .encoder import Encoder, format_options
from .errors import GsdError
from .fit import CLAMPING, DEFAULT_CELL_BITS, clamp_mask, fit_grid
from .interop.clean import clean_scene
from .interop.scene import SceneFileError, output_format, read_scene, read_scene_with_ids, scene_bytes, write_scene
from .profile import DEFAULT_PROFILE, PRESETS, STREAM_PROFILE, Profile
from .progressive import FIRST_BYTES, Frame, progressive_keyframe
from .sequence import encode_sequence, file_ids, frame_paths
from .spatial import Grid
from .state import SceneState
from .stream import StreamWriter, read_stream, split_frames, validate_stream
from .wire import FORMATS, StreamHeader, decode_header

U64 = np.uint64
PROG = "gsd"
ZSTD_LEVEL = inspect.signature(Encoder).parameters["level"].default  # one source of truth: the encoder's


class UsageError(Exception):
    """A problem with the command line itself (exit status 2)."""


# ------------------------------------------------------------------------------------ helpers
_QUIET = False


def _bar(**kw) -> tqdm:
    """A tqdm bar on stderr; off when --quiet or stderr is not a terminal (logs stay clean)."""
    disable = _QUIET or not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty())
    return tqdm(file=sys.stderr, disable=disable, leave=False, dynamic_ncols=True, **kw)


@contextmanager
def _step(desc: str, total: int | None = None, unit: str = "B"):
    """A bar for one opaque step (a PLY read, a big keyframe): shows elapsed time, then completes."""
    extra = {} if total is not None else {"bar_format": "{desc}: {elapsed}"}  # no total: just a clock
    bar = _bar(desc=desc, total=total, unit=unit, unit_scale=True, **extra)
    try:
        yield bar
        if total is not None:
            bar.update(total - bar.n)
    finally:
        bar.close()


def _fmt_bytes(n: float) -> str:
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= div:
            return f"{n / div:.2f} {unit}"
    return f"{int(n)} B"


def _table(headers: list[str], rows: list[list], align: str | None = None) -> str:
    """Plain-text table; columns right-aligned except where ``align`` has an 'l'."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = align or "r" * len(headers)
    out = []
    for k, r in enumerate(cells):
        out.append("  ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(r, widths, align)).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def _input_file(path: str, folder_ok: bool = False) -> str:
    """Missing or unreadable input is a usage error (exit 2), reported in one line."""
    if not os.path.exists(path):
        raise UsageError(f"{path}: no such file")
    if os.path.isdir(path) and not folder_ok:
        raise UsageError(f"{path}: is a directory")
    if not os.access(path, os.R_OK):
        raise UsageError(f"{path}: permission denied")
    return path


def _output_file(path: str) -> str:
    """An output that cannot be written is a usage error (exit 2, one line), found before any work is done."""
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UsageError(f"{path}: is a directory")
    if not os.path.isdir(parent):
        raise UsageError(f"{path}: no such directory: {os.path.dirname(path) or parent}")
    if os.path.exists(path) and not os.access(path, os.W_OK) or not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{path}: permission denied")
    return path


@contextmanager
def _writing(path: str):
    """Turn an OS error while writing ``path`` (disk full, a race) into a one-line usage error."""
    try:
        yield
    except OSError as e:
        if isinstance(e, BrokenPipeError):
            raise
        raise UsageError(f"{path}: cannot write: {e.strerror or e}") from None


def _read_bytes(path: str) -> bytes:
    size = os.path.getsize(_input_file(path))
    with _step(f"read {os.path.basename(path)}", size) as bar, open(path, "rb") as f:
        chunks = []
        while True:
            c = f.read(1 << 24)
            if not c:
                break
            chunks.append(c)
            bar.update(len(c))
    return b"".join(chunks)


def _ply_size(n: int, sh_degree: int) -> int:
    """Bytes of a standard float32 3DGS PLY holding n Gaussians (what the stream is compared with)."""
    return int(ply.ply_size_bytes(n, sh_degree))


def _profile_numbers(profile: Profile) -> dict:
    q = profile.quant
    if q is None:
        return {"name": profile.name, "lossless": True}
    d = profile.sh_degree
    return {"name": profile.name, "lossless": False,
            "position_bits": q.position_bits, "position_step": profile.grid.cell_size / (1 << q.position_bits),
            "scale_bits": q.scale_bits, "scale_range": [q.scale_min, q.scale_max],
            "rotation_bits": q.rotation_bits, "opacity_bits": q.opacity_bits,
            "dc_bits": q.dc_bits, "dc_range": [q.dc_min, q.dc_max],
            "rest_bits": list(q.rest_bits[:d]), "rest_range": list(q.rest_range[:d]), "sh_palette": q.palette}


def _profile_line(profile: Profile) -> str:
    n = _profile_numbers(profile)
    if n["lossless"]:
        return f"{n['name'] or 'lossless'} (float32, bit-exact)"
    rest = ""
    if profile.sh_degree:
        rest = " rest " + "/".join(f"{b}b±{r:g}" for b, r in zip(n["rest_bits"], n["rest_range"]))
        if profile.palette:
            rest += f" in a palette of up to {profile.palette:,} entries"
    return (f"{n['name']}: position {n['position_bits']}b (step {n['position_step']:.3g}), "
            f"scale {n['scale_bits']}b [{n['scale_range'][0]:g},{n['scale_range'][1]:g}], rotation {n['rotation_bits']}b, "
            f"opacity {n['opacity_bits']}b, dc {n['dc_bits']}b [{n['dc_range'][0]:g},{n['dc_range'][1]:g}]{rest}")


def _grid_dict(g: Grid) -> dict:
    return {"origin": list(g.origin), "cell_size": g.cell_size, "cell_bits": g.cell_bits,
            "slot_bits": g.slot_bits, "extent": g.cell_size * (1 << g.cell_bits)}


def _floats_of(state: SceneState, ids: np.ndarray) -> dict:
    """Dequantized {Attr: (n, C) float32} of live ids: what a decoder shows for them."""
    return state.floats(ids, state.codes_of(ids))


def _attr_errors(profile: Profile, source: Gaussians, decoded: dict) -> list[dict]:
    """Per-attribute max/mean abs error of the decoded values against the input.

    Opacity is measured on alpha = sigmoid(opacity) and rotation on the unit
    quaternion up to sign, the quantities the profile's error bounds speak of.
    ``clamped`` counts the components outside the profile's range (their code was
    clipped: the quantizer's own test), with the max/mean error among them;
    ``over_bound`` counts components beyond the bound (plus float32 rounding of the
    result), which only clamped ones can be.
    """
    out = []
    for a in ATTRS:
        if profile.comps(a) == 0:
            continue
        x = source.attribute(a).astype(np.float64)
        y = decoded[a].astype(np.float64)
        mask = clamp_mask(profile, a, source.attribute(a))
        if a is Attr.OPACITY:
            x, y = 1 / (1 + np.exp(-x)), 1 / (1 + np.exp(-y))
        elif a is Attr.ROTATION:
            norm = np.linalg.norm(x, axis=1, keepdims=True)
            x = np.where(norm > 0, x / np.where(norm > 0, norm, 1), np.array([1.0, 0, 0, 0]))
            y = y * np.where((x * y).sum(1) < 0, -1.0, 1.0)[:, None]
        err = np.abs(x - y)
        bound = profile.error_bound(a)
        hit = err[mask] if mask is not None else err[:0]
        out.append({"attribute": a.name.lower() + (" (alpha)" if a is Attr.OPACITY else ""),
                    "max": float(err.max()) if err.size else 0.0, "mean": float(err.mean()) if err.size else 0.0,
                    "bound": bound, "over_bound": int((err > bound * (1 + 1e-6) + 2.4e-7 * np.abs(x)).sum()),
                    "components": int(err.size), "clamped": int(hit.size),
                    "clamped_max": float(hit.max()) if hit.size else 0.0,
                    "clamped_mean": float(hit.mean()) if hit.size else 0.0})
    return out


def _clamp_lines(errors: list[dict]) -> list[str]:
    """One line per attribute with clamped components: how many, and the error they cost."""
    return [f"{e['clamped']:,} of {e['components']:,} {e['attribute']} components "
            f"({100 * e['clamped'] / max(e['components'], 1):.2g}%), error max {e['clamped_max']:.3g} "
            f"mean {e['clamped_mean']:.3g}" for e in errors if e["clamped"]]


def _print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")


# ------------------------------------------------------------------------------------ encode
FILE_GAUSSIANS_PER_ENTRY = 2


def encoder_for(g: Gaussians, args: argparse.Namespace, sequence: bool = False) -> tuple[Gaussians, Encoder]:
    """The scene at the SH degree kept and the encoder ``gsd encode`` builds for it from its parsed arguments.

    One place for the grid fit and the profile choice, so tools that report what
    the CLI produces (quality.compare) measure exactly the CLI's streams:
    ``encoder_for(g, build_parser().parse_args(["encode", "in.ply", "out.gsd"]))``.
    """
    degree = g.sh_degree if args.sh_degree is None else args.sh_degree
    if degree != g.sh_degree:
        g = g.with_sh_degree(degree)
    if not getattr(args, "fixed_ranges", False):
        profile = Profile.fit(args.profile, g, cell_bits=args.cell_bits)
    else:  # the preset's streaming defaults, on the same grid and position step
        q = PRESETS[args.profile]
        grid, pb = fit_grid(g.positions, q.position_bits if q else 8, args.cell_bits)
        profile = Profile(degree, grid, dataclasses.replace(q, position_bits=pb) if q else None, args.profile)
    # One scene in a file: a palette as dense as SOG's (one entry per 2 Gaussians, up to 65,536) pays
    # for itself. A sequence keeps the Encoder's one per 8: a palette fitted that tightly to its
    # keyframe would judge later frames' content of the same kind novel and give it entries of its own.
    per_entry = {} if sequence else {"gaussians_per_entry": FILE_GAUSSIANS_PER_ENTRY}
    return g, Encoder(profile, level=args.level, generator=f"gsd {__version__} encode",
                      frame_rate=getattr(args, "fps", None) or 0.0, shape_rounding=True,
                      **format_options(getattr(args, "format", FORMATS[-1])), **per_entry)


def _check_format(args) -> None:
    """``--format 1.0``: a stream every 1.0 decoder reads, so no 1.1 feature (SPEC.md 10)."""
    if args.format == "1.0" and PRESETS[args.profile] is not None and PRESETS[args.profile].palette:
        raise UsageError(f"--format 1.0: the {args.profile!r} profile's stream header declares an SH palette for "
                         f"SH_REST (also where a scene has none), a format 1.1 feature; use --profile compact (or high, "
                         f"lossless) for a 1.0 stream")


def read_input(args) -> tuple[Gaussians, str, dict]:
    """The scene ``gsd encode`` encodes: any READ_FORMATS file read, then cleaned (codec.interop.clean's policy).

    Returns (Gaussians, format name, the ``CleanReport``).
    """
    src = _input_file(args.input if isinstance(args.input, str) else args.input[0], folder_ok=True)
    g, fmt = read_scene(src, spz_frame=args.spz_frame)
    g, report = clean_scene(g, drop_invalid=args.drop_invalid, drop_outliers=args.drop_outliers)
    return g, fmt, report


def cmd_encode(args) -> int:
    try:
        paths = frame_paths(args.input)
    except FileNotFoundError as e:
        raise UsageError(str(e)) from None
    _check_format(args)
    if len(paths) > 1:
        return cmd_encode_sequence(args, paths)
    args = argparse.Namespace(**{**vars(args), "input": paths[0]})
    src = _input_file(args.input, folder_ok=True)
    _output_file(args.output)
    t0 = time.perf_counter()
    with _step(f"read {os.path.basename(src)}", None):
        g, fmt, cleaning = read_input(args)
    t_read = time.perf_counter() - t0
    if len(g) == 0:
        raise ValueError(f"{src}: the scene has no Gaussians" + (" left" if cleaning.rows_in else ""))
    notes = cleaning.notes()
    if cleaning.outliers and not cleaning.outliers_dropped:
        print(f"{PROG} encode: warning: {notes[-1]}", file=sys.stderr)

    t0 = time.perf_counter()  # the grid and range fit count as encoding
    with _step(f"encode {len(g):,} Gaussians", len(g), unit="G"):
        g, enc = encoder_for(g, args)
        degree, profile, grid = g.sh_degree, enc.profile, enc.profile.grid
        ids = enc.assign_ids(g.positions)
        if getattr(args, "progressive", None):
            frames = list(progressive_keyframe(enc, g, ids, first_bytes=int(args.progressive * 1e6)))
        else:
            frames = [Frame(enc.keyframe(g, ids=ids), len(g), len(g))]
    t_enc = time.perf_counter() - t0
    header = enc.header_bytes()
    size = sum(len(f.data) for f in frames)
    with _step(f"write {os.path.basename(args.output)}", len(header) + size) as bar, _writing(args.output):
        with StreamWriter(args.output, header) as w:
            for f in frames:
                w.write(f.data)
        bar.update(len(header) + size)
    frame = frames[0].data

    total = len(header) + size
    ply_bytes = _ply_size(len(g), degree)
    input_bytes = scene_bytes(src)
    errors = _attr_errors(profile, g, _floats_of(enc.state, ids)) if not profile.lossless else []
    clamped = {a.name.lower(): 0 for a in CLAMPING if profile.comps(a) and not profile.lossless}
    clamped.update({e["attribute"]: e["clamped"] for e in errors if e["attribute"] in clamped})
    result = {"input": src, "input_format": fmt, "input_bytes": input_bytes, "input_cleaning": cleaning.as_dict(),
              "output": args.output, "gaussians": len(g), "sh_degree": degree,
              "profile": profile.name,
              "ranges": "lossless" if profile.lossless else "fixed" if getattr(args, "fixed_ranges", False) else "fitted",
              "clamped": clamped, "clamped_total": sum(clamped.values()), "bytes": total, "header_bytes": len(header), "frame_bytes": len(frame),
              "bytes_per_gaussian": total / max(len(g), 1), "ply_bytes": ply_bytes,
              "ratio": input_bytes / total, "ratio_vs_float_ply": ply_bytes / total,
              "read_s": t_read, "encode_s": t_enc, "frame_rate": enc.header.frame_rate,
              "frames": len(frames), "first_frame_gaussians": frames[0].live,
              "digest": str(enc.state.digest()), "grid": _grid_dict(grid), "errors": errors}
    if args.json:
        _print_json(result)
        return 0
    print(f"{src} -> {args.output}")
    print(f"  Gaussians      {len(g):,} (SH degree {degree}), read as {fmt}")
    for k, note in enumerate(notes):
        print(f"  {'input' if k == 0 else '':<15}{note}")
    print(f"  profile        {_profile_line(profile)}" + ("" if profile.lossless else f"; {result['ranges']} ranges"))
    print(f"  grid           cell {grid.cell_size:g}, {grid.cell_bits} cell bits, {grid.slot_bits} slot bits")
    print(f"  stream         {total:,} bytes ({_fmt_bytes(total)}), {result['bytes_per_gaussian']:.2f} B/Gaussian")
    if len(frames) > 1:
        print(f"  progressive    {len(frames)} frames: the first {len(header) + len(frame):,} bytes with the header "
              f"({frames[0].live:,} Gaussians standing in for the scene), then {len(frames) - 1} refining it")
    as_ply = "" if fmt == "ply" else f"; a float PLY would be {_fmt_bytes(ply_bytes)}, {ply_bytes / total:.2f}x"
    print(f"  input file     {input_bytes:,} bytes ({_fmt_bytes(input_bytes)}, {fmt}): ratio {result['ratio']:.2f}x "
          f"(input file size / stream size){as_ply}")
    print(f"  time           read {t_read * 1e3:.0f} ms, encode {t_enc * 1e3:.0f} ms "
          f"({len(g) / max(t_enc, 1e-9) / 1e6:.2f} M Gaussians/s)")
    print(f"  digest         {result['digest']}")
    if result["frame_rate"]:
        print(f"  frame rate     {result['frame_rate']:g} fps (informative, in the header)")
    if profile.lossless:
        print("  error          none (lossless: float32 bit patterns round trip exactly)")
    else:
        lines = _clamp_lines(errors)
        print(f"  clamped        {lines[0] if lines else 'none (every value inside the profile ranges)'}")
        for line in lines[1:]:
            print(f"                 {line}")
        rows = [[e["attribute"], f"{e['max']:.3g}", f"{e['mean']:.3g}", f"{e['bound']:.3g}", f"{e['clamped']:,}"]
                for e in errors]
        print("  error vs input (clamped = components outside the profile's range: error beyond the bound):")
        print("\n".join("    " + line for line in _table(["attribute", "max", "mean", "bound", "clamped"],
                                                          rows, "lrrrr").splitlines()))
    return 0


def encode_sequence_files(args, paths: list[str], start, write):
    """The scene files of a 4D sequence, read one at a time, through one SequenceEncoder: ``start(header)``
    gets the stream header once the first scene fixed the profile, ``write(frame)`` each frame.
    Returns (encoder, header bytes, first file's format, per-frame reports). ``gsd encode`` and
    ``gsd view`` both encode sequences this way."""
    def scenes():
        for path in paths:
            g, fmt, raw_ids = read_scene_with_ids(path, spz_frame=args.spz_frame)
            g, _ = clean_scene(g)
            if len(g) == 0:
                raise ValueError(f"{path}: the scene has no Gaussians")
            yield g, file_ids(raw_ids, len(g), f"{path}: "), fmt

    it = scenes()
    first, keys, fmt = next(it)
    first, enc = encoder_for(first, args, sequence=True)
    degree = first.sh_degree

    def frames():
        yield first, keys
        for g, k, _ in it:
            yield (g if g.sh_degree == degree else g.with_sh_degree(degree)), k

    header = enc.header_bytes()
    start(header)
    return enc, header, fmt, encode_sequence(frames(), enc, write)


def _megabytes(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of megabytes: {text!r}") from None
    if not 0.001 <= v <= 1e6:
        raise argparse.ArgumentTypeError(f"must be in [0.001, 1e6] megabytes, got {text}")
    return v


def cmd_encode_sequence(args, paths: list[str]) -> int:
    """Several scenes (a 4D sequence) -> one stream: a keyframe of the first, one delta per later one."""
    if args.drop_invalid or args.drop_outliers:
        raise UsageError("--drop-invalid and --drop-outliers work on one scene: dropping rows per frame would "
                         "break matching rows between frames")
    for p in paths:
        _input_file(p, folder_ok=True)
    _output_file(args.output)

    t0 = time.perf_counter()
    with _writing(args.output), ExitStack() as files, _bar(desc="encode", total=len(paths), unit="frame") as bar:
        out: list[StreamWriter] = []

        def write(frame):
            out[0].write(frame)
            bar.update(1)

        enc, header, fmt, reports = encode_sequence_files(
            args, paths, lambda header: out.append(files.enter_context(StreamWriter(args.output, header))), write)
    degree, profile = enc.profile.sh_degree, enc.profile
    t_enc = time.perf_counter() - t0
    total = len(header) + sum(r.bytes for r in reports)
    clamped = {}
    for r in reports:
        for a, k in r.as_dict()["clamped"].items():
            clamped[a] = clamped.get(a, 0) + k
    result = {"inputs": paths, "input_format": fmt, "output": args.output, "frames": len(reports),
              "sh_degree": degree, "profile": profile.name, "frame_rate": enc.header.frame_rate,
              "bytes": total, "header_bytes": len(header), "time_s": t_enc,
              "clamped": clamped, "final_gaussians": len(enc.state), "digest": str(enc.state.digest()),
              "grid": _grid_dict(profile.grid), "per_frame": [dict(r.as_dict(), file=p) for r, p in zip(reports, paths)]}
    if args.json:
        _print_json(result)
        return 0
    print(f"{len(paths)} scenes ({fmt} first) -> {args.output}: {total:,} bytes ({_fmt_bytes(total)}), "
          f"{t_enc:.2f} s")
    print(f"  profile        {_profile_line(profile)}; ranges fitted to the first scene")
    rate = enc.header.frame_rate
    print(f"  frame rate     {f'{rate:g} fps (informative, in the header)' if rate else 'unset (--fps N records one)'}")
    rows = [[r.index, "key" if r.keyframe else "delta", r.matched_by, r.add, r.update, r.delete, r.unchanged,
             r.bytes, r.gaussians, os.path.basename(p)] for r, p in zip(reports, paths)]
    print(_table(["#", "kind", "matched", "add", "upd", "del", "same", "bytes", "live", "file"], rows,
                 "rllrrrrrrl"))
    print(f"  clamped        {', '.join(f'{k:,} {a}' for a, k in clamped.items()) + ' components' if clamped else 'none'}"
          " (values outside the ranges fitted to the first scene)")
    print(f"  digest         {result['digest']}")
    return 0


# ------------------------------------------------------------------------------------ decode
def cmd_decode(args) -> int:
    _input_file(args.input)
    _output_file(args.output)
    try:
        out_fmt = output_format(args.output)
    except SceneFileError as e:
        raise UsageError(str(e)) from None
    data = _read_bytes(args.input)
    try:
        n = len(split_frames(data)[2])
    except GsdError as e:
        # A damaged record after the requested frame does not stop us from decoding up to it.
        if args.frame is None or args.frame < 0 or e.frame is None or args.frame >= e.frame:
            raise
        n = e.frame
    if n == 0:
        raise UsageError(f"{args.input}: the stream has no frames")
    target = n - 1 if args.frame is None else args.frame
    if target < 0:
        target += n
    if not 0 <= target < n:
        raise UsageError(f"--frame {args.frame}: the stream has frames 0..{n - 1}")
    t0 = time.perf_counter()
    dec = None
    with _bar(desc="decode", total=target + 1, unit="frame") as bar:
        for dec, fr in read_stream(data, verify_digest=not args.no_verify):
            bar.update(1)
            if fr.index == target:
                break
    t_dec = time.perf_counter() - t0
    ids, g = dec.state.to_gaussians()
    t0 = time.perf_counter()
    with _step(f"write {os.path.basename(args.output)}", len(g), unit="G"), _writing(args.output):
        write_scene(args.output, g, spz_frame=args.spz_frame, spz_version=args.spz_version)
    t_write = time.perf_counter() - t0
    print(f"{args.input} -> {args.output} ({out_fmt}): frame {target} (seq {dec.state.seq}) of {n}, "
          f"{len(g):,} Gaussians, SH degree {dec.header.profile.sh_degree}, profile {dec.header.profile.name}")
    print(f"  decode {t_dec * 1e3:.0f} ms, write {t_write * 1e3:.0f} ms, "
          f"{os.path.getsize(args.output):,} bytes written, digest {dec.state.digest()}")
    return 0


# ------------------------------------------------------------------------------------ info
_ROLES = ("ids", "position", "placements", "scale", "rotation", "opacity", "sh_dc", "sh_rest", "palette", "delete")
_ROLE_SHORT = {"ids": "ids", "position": "pos", "placements": "place", "scale": "scale", "rotation": "rot",
               "opacity": "opac", "sh_dc": "dc", "sh_rest": "rest", "palette": "palette", "delete": "del"}


def _header_dict(header: StreamHeader, header_bytes: int) -> dict:
    p = header.profile
    return {"version": f"{header.version[0]}.{header.version[1]}", "bytes": header_bytes,
            "generator": header.generator, "max_gaussians": header.max_gaussians,
            "frame_rate": header.frame_rate or None, "sh_degree": p.sh_degree, "profile": _profile_numbers(p), "grid": _grid_dict(p.grid)}


def cmd_info(args) -> int:
    data = _read_bytes(args.input)
    header, header_len = decode_header(data)  # a bad header is a GsdError: nothing to show
    try:
        total = len(split_frames(data)[2])
    except GsdError:
        total = None  # a framing problem further on: reported when decoding reaches it
    frames, error = [], None
    prev_count = 0
    sh = header.profile.sh_degree
    with _bar(desc="info", total=total, unit="frame") as bar:
        try:
            for dec, fr in read_stream(data):
                d, fi = fr.delta, fr.info
                live = len(dec.state)
                c = d.counts()
                removed = (prev_count if d.keyframe else prev_count + c["add"] - live)
                touched = c["add"] + c["update"] + (0 if d.keyframe else removed)
                changed = c["add"] + c["update"]
                ply_bytes = _ply_size(changed, sh) if changed else 0
                frames.append({
                    "index": fr.index, "offset": fr.offset, "seq": d.seq, "base_seq": d.base_seq,
                    "keyframe": d.keyframe,
                    "ops": {"add": c["add"], "update": c["update"], "delete_ids": c["delete_ids"],
                            "delete_ranges": c["delete_ranges"], "delete_cells": c["delete_cells"]},
                    "removed": removed, "gaussians": live, "bytes": fi.frame_bytes, "meta_bytes": fi.meta_bytes,
                    "section_bytes": {r: int(fi.section_bytes.get(r, 0)) for r in
                                      sorted(fi.section_bytes, key=lambda r: _ROLES.index(r) if r in _ROLES else 99)},
                    "raw_bytes": fi.raw_bytes,
                    "bytes_per_touched": fi.frame_bytes / touched if touched else None,
                    "ply_bytes_changed": ply_bytes, "ratio_vs_ply": ply_bytes / fi.frame_bytes if changed else None,
                    "digest": str(dec.state.digest()), "digest_carried": d.digest is not None})
                prev_count = live
                bar.update(1)
        except GsdError as e:
            error = e
    totals = _info_totals(frames, header_len, len(data), header.profile.sh_degree)
    out = {"file": args.input, "file_bytes": len(data), "header": _header_dict(header, header_len),
           "frames": frames, "totals": totals,
           "error": None if error is None else _problem_dict(error)}
    if args.json:
        _print_json(out)
    else:
        _print_info(out, header)
        if error is not None:
            print(f"stopped: {_problem_line(error)}")
    return 0 if error is None else 1


def _info_totals(frames: list[dict], header_len: int, file_bytes: int, sh: int) -> dict:
    ops = {k: sum(f["ops"][k] for f in frames) for k in ("add", "update", "delete_ids", "delete_ranges", "delete_cells")}
    roles: dict = {}
    for f in frames:
        for r, b in f["section_bytes"].items():
            roles[r] = roles.get(r, 0) + b
    changed = ops["add"] + ops["update"]
    frame_bytes = sum(f["bytes"] for f in frames)
    deltas = [f for f in frames if not f["keyframe"]]
    return {"frames": len(frames), "keyframes": len(frames) - len(deltas), "bytes": header_len + frame_bytes,
            "header_bytes": header_len, "frame_bytes": frame_bytes, "trailing_bytes": file_bytes - header_len - frame_bytes,
            "meta_bytes": sum(f["meta_bytes"] for f in frames), "section_bytes": roles, "ops": ops,
            "delta_bytes": sum(f["bytes"] for f in deltas),
            "mean_delta_bytes": sum(f["bytes"] for f in deltas) / len(deltas) if deltas else None,
            "ratio_vs_ply": _ply_size(changed, sh) / frame_bytes if changed and frame_bytes else None,
            "final_gaussians": frames[-1]["gaussians"] if frames else 0,
            "final_ply_bytes": _ply_size(frames[-1]["gaussians"], sh) if frames else 0,
            "final_digest": frames[-1]["digest"] if frames else "0:00000000:00000000"}


def _print_info(out: dict, header: StreamHeader) -> None:
    h = out["header"]
    p = header.profile
    g = h["grid"]
    print(f"{out['file']}: {out['file_bytes']:,} bytes ({_fmt_bytes(out['file_bytes'])})")
    print(f"  format       GSD {h['version']} (header {h['bytes']} bytes), generator {h['generator']!r}")
    print(f"  profile      {_profile_line(p)}")
    print(f"  SH degree    {h['sh_degree']} ({3 * rest_coeffs(h['sh_degree'])} rest coefficients)")
    print(f"  grid         origin ({', '.join(f'{v:g}' for v in g['origin'])}), cell {g['cell_size']:g}, "
          f"{g['cell_bits']} cell bits, {g['slot_bits']} slot bits, extent {g['extent']:g}")
    print(f"  budget       max Gaussians {h['max_gaussians'] or 'unset (the spec limit applies)'}")
    rate, n = h["frame_rate"], len(out["frames"])
    print(f"  frame rate   {f'{rate:g} fps (informative): {n} frames play in {n / rate:.2f} s' if rate else 'unset'}")
    print()
    roles = [r for r in _ROLES if any(r in f["section_bytes"] for f in out["frames"])]
    heads = ["#", "seq", "base", "K", "add", "upd", "del", "rng", "cells", "bytes", "meta"]
    heads += [_ROLE_SHORT[r] for r in roles] + ["B/touched", "ratio", "live", "digest"]
    rows = []
    for f in out["frames"]:
        o = f["ops"]
        row = [f["index"], f["seq"], f["base_seq"], "K" if f["keyframe"] else "", o["add"], o["update"],
               o["delete_ids"], o["delete_ranges"], o["delete_cells"], f["bytes"], f["meta_bytes"]]
        row += [f["section_bytes"].get(r, 0) for r in roles]
        row += ["-" if f["bytes_per_touched"] is None else f"{f['bytes_per_touched']:.2f}",
                "-" if f["ratio_vs_ply"] is None else f"{f['ratio_vs_ply']:.1f}x", f["gaussians"], f["digest"]]
        rows.append(row)
    t = out["totals"]
    o = t["ops"]
    total_row = ["all", "", "", t["keyframes"], o["add"], o["update"], o["delete_ids"], o["delete_ranges"],
                 o["delete_cells"], t["frame_bytes"], t["meta_bytes"]]
    total_row += [t["section_bytes"].get(r, 0) for r in roles]
    total_row += ["", "-" if t["ratio_vs_ply"] is None else f"{t['ratio_vs_ply']:.1f}x", t["final_gaussians"],
                  t["final_digest"]]
    if rows:
        print(_table(heads, rows + [total_row], "r" * (len(heads) - 1) + "l"))
        print()
    print(f"totals: {t['frames']} frames ({t['keyframes']} keyframes), {t['bytes']:,} bytes "
          f"(header {t['header_bytes']:,}, frames {t['frame_bytes']:,}, metadata {t['meta_bytes']:,})")
    if t["mean_delta_bytes"] is not None:
        print(f"  deltas: {t['delta_bytes']:,} bytes, mean {t['mean_delta_bytes']:,.0f} bytes/frame")
    print(f"  final scene: {t['final_gaussians']:,} Gaussians, digest {t['final_digest']}, "
          f"float PLY {t['final_ply_bytes']:,} bytes ({_fmt_bytes(t['final_ply_bytes'])})")
    if t["trailing_bytes"]:
        print(f"  {t['trailing_bytes']:,} bytes after the last good frame")
    print("  (ratio = float PLY bytes of the Gaussians added/updated / frame bytes; "
          "B/touched counts added + updated + removed)")


# ------------------------------------------------------------------------------------ validate
def _problem_dict(e: GsdError) -> dict:
    return {"frame": e.frame, "code": int(e.code), "name": e.code.name, "message": e.message}


def _problem_line(e: GsdError) -> str:
    where = "header" if e.frame is None else f"frame {e.frame}"
    return f"{where}: {e.code.name} (code {int(e.code)}): {e.message}"


def cmd_validate(args) -> int:
    data = _read_bytes(args.input)
    frames, final, failed = 0, None, False
    with _bar(desc="validate", unit="frame") as bar:
        try:
            for dec, _ in read_stream(data):
                frames += 1
                final = dec.state
                bar.update(1)
            if final is None:  # header only: still check that the header decodes
                decode_header(data)
        except GsdError:
            failed = True
    # validate_stream is the authority on the list (the first decode error, then later framing problems).
    problems = validate_stream(data) if failed else []
    digest = str(final.digest()) if final is not None else "0:00000000:00000000"
    if args.json:
        _print_json({"file": args.input, "ok": not problems, "frames": frames if not problems else None,
                     "frames_decoded": frames, "final_digest": digest if not problems else None,
                     "problems": [_problem_dict(e) for e in problems]})
    elif problems:
        for e in problems:
            print(_problem_line(e))
    else:
        print(f"OK: {frames} frames, final digest {digest}")
    return 1 if problems else 0


# ------------------------------------------------------------------------------------ demo
def _cell_around(ids: np.ndarray, grid: Grid, at: int, target: int) -> tuple[int, int, int, int]:
    """The finest octree cell around ``ids[at]`` holding at least ``target`` live ids.

    Returns (level, cell code, lo, hi) with ids[lo:hi] the ids in the cell. Adapting
    the level keeps the deleted count near the target whatever the local density.
    """
    for level in range(grid.cell_bits + 1):
        shift = U64(grid.slot_bits + 3 * level)
        cell = ids[at] >> shift
        lo, hi = np.searchsorted(ids, [cell << shift, (cell + U64(1)) << shift])
        if hi - lo >= target or level == grid.cell_bits:
            return level, int(cell), int(lo), int(hi)
    raise AssertionError("unreachable")


def _demo_frame(enc: Encoder, rng: np.random.Generator, k_move: int, k_colour: int, k_add: int,
                velocity: np.ndarray, jitter: float) -> dict:
    """The ops of one synthetic world-model step, as make_delta keywords.

    Morton-ordered ids make a contiguous run of live ids a spatial cluster, so a run
    is an object: one run moves rigidly, one changes colour, one cell is dropped,
    and new Gaussians grow near another run.
    """
    ids = enc.state.ids()
    level, cell, lo, hi = _cell_around(ids, enc.profile.grid, int(rng.integers(len(ids))), max(1, k_add // 4))
    keep = np.r_[ids[:lo], ids[hi:]]  # candidates for UPDATE: not in the dropped cell

    def run(pool, k):
        k = min(k, len(pool))
        s = int(rng.integers(0, len(pool) - k + 1))
        return pool[s:s + k]

    movers, recolour = run(keep, k_move), run(keep, k_colour)
    upd = np.union1d(movers, recolour)
    cur = _floats_of(enc.state, upd)
    pos, dc = cur[Attr.POSITION], cur[Attr.SH_DC]
    pos[np.isin(upd, movers, assume_unique=True)] += velocity.astype(np.float32)
    tint = rng.normal(0, 0.4, 3).astype(np.float32)
    dc[np.isin(upd, recolour, assume_unique=True)] += tint
    # Growth: clones of a cluster, jittered (new detail generated next to what is there).
    tmpl = run(ids, k_add)  # may lie in the dropped cell: clones get fresh ids, and the scene never empties
    src = _floats_of(enc.state, tmpl)
    src[Attr.POSITION] = src[Attr.POSITION] + rng.normal(0, jitter, src[Attr.POSITION].shape).astype(np.float32)
    new = Gaussians.from_attributes(src)
    new_ids = enc.assign_ids(new.positions)
    return {"update": (upd, {Attr.POSITION: pos, Attr.SH_DC: dc}), "delete_cells": {level: [cell]},
            "add": (new_ids, new)}


def cmd_demo(args) -> int:
    try:
        from .synthetic import synthetic_scene
    except ImportError as e:
        print(f"{PROG} demo: the synthetic scene generator (codec.synthetic.synthetic_scene) is not available: {e}",
              file=sys.stderr)
        return 1
    t0 = time.perf_counter()
    with _step(f"synthetic scene of {args.n:,}", None):
        scene = synthetic_scene(args.n, args.sh_degree, args.seed)
    t_gen = time.perf_counter() - t0
    profile = Profile.fit(args.profile, scene)  # ranges fitted to the first scene; later frames may clamp (counted)
    grid = profile.grid
    enc = Encoder(profile, level=args.level, generator=f"gsd {__version__} demo")
    clamps = {a: 0 for a in CLAMPING}
    rng = np.random.default_rng(args.seed + 1)
    extent = float((scene.positions.max(0) - scene.positions.min(0)).max()) if len(scene) else 1.0
    velocity = np.array([1.0, 0.2, 0.0]) * extent * 0.002
    n = len(scene)
    k_move, k_colour, k_add = max(1, n // 100), max(1, n // 200), max(1, n // 200)

    rows, sizes, enc_ms, touched, changed = [], [], [], [], []
    header = enc.header_bytes()
    with StreamWriter(args.out, header) as w, _bar(desc="encode", total=args.frames, unit="frame") as bar:
        for f in range(args.frames):
            if f == 0:
                t = time.perf_counter()
                frame = enc.keyframe(scene)
                dt = time.perf_counter() - t
                counted = [profile.clamped(scene)]
                c = {"add": n, "update": 0, "delete_cells": 0}
                removed = 0
            else:
                ops = _demo_frame(enc, rng, k_move, k_colour, k_add, velocity, grid.cell_size * 4)
                counted = [profile.clamped(ops["update"][1]), profile.clamped(ops["add"][1])]
                before = len(enc.state)
                t = time.perf_counter()
                d = enc.make_delta(**ops)
                frame = enc.encode_delta(d)
                dt = time.perf_counter() - t
                c = d.counts()
                removed = before + c["add"] - len(enc.state)
            w.write(frame)
            for c_ in counted:
                for a, k in c_.items():
                    clamps[a] += k
            sizes.append(len(frame))
            enc_ms.append(dt * 1e3)
            touched.append(c["add"] + c["update"] + removed)
            changed.append(c["add"] + c["update"])
            rows.append([f, "key" if f == 0 else "delta",
                         f"+{c['add']} ~{c['update']} -{removed}" + (f" (cell L{next(iter(d.delete_cells))})"
                                                                     if f else ""),
                         len(frame), f"{dt * 1e3:.1f}"])
            bar.update(1)
    final_digest = enc.state.digest()

    # Verify: decode the file from disk and compare with the encoder's (closed-loop) state.
    data = _read_bytes(args.out)
    dec_ms = []
    with _bar(desc="verify", total=args.frames, unit="frame") as bar:
        it = read_stream(data)
        while True:
            t = time.perf_counter()
            try:
                dec, _ = next(it)
            except StopIteration:
                break
            dec_ms.append((time.perf_counter() - t) * 1e3)
            bar.update(1)
    ok = len(dec_ms) == args.frames and dec.state.digest() == final_digest and dec.state.equals(enc.state)
    for r, ms in zip(rows, dec_ms):
        r.append(f"{ms:.1f}")
    sh = profile.sh_degree
    print(f"demo: {n:,} Gaussians (SH degree {sh}, synthetic scene in {t_gen:.2f} s), {args.frames} frames, "
          f"profile {_profile_line(profile)}")
    print(_table(["frame", "kind", "ops (+add ~update -removed)", "bytes", "encode ms", "decode ms"], rows, "rllrrr"))
    total = len(header) + sum(sizes)
    ply_scene = _ply_size(n, sh)
    print(f"stream: {args.out}, {total:,} bytes ({_fmt_bytes(total)}); keyframe {sizes[0]:,} bytes "
          f"= {sizes[0] / max(n, 1):.2f} B/Gaussian vs float PLY {ply_scene:,} bytes ({_fmt_bytes(ply_scene)}), "
          f"{ply_scene / sizes[0]:.1f}x smaller")
    if len(sizes) > 1:
        ds, dt = sizes[1:], touched[1:]
        changed_ply = _ply_size(int(sum(changed[1:])), sh)
        print(f"deltas: mean {np.mean(ds):,.0f} bytes for {np.mean(dt):,.0f} Gaussians touched "
              f"({sum(ds) / max(sum(dt), 1):.2f} B/Gaussian); float PLY of the Gaussians added/updated "
              f"{changed_ply / sum(ds):.1f}x larger; encode mean {np.mean(enc_ms[1:]):.1f} ms, "
              f"decode mean {np.mean(dec_ms[1:]):.1f} ms")
    clamp_text = ", ".join(f"{k:,} {a.name.lower()}" for a, k in clamps.items() if k)
    print(f"clamped: {clamp_text + ' components, over all frames' if clamp_text else 'none'} (ranges fitted to the "
          f"first frame's scene; values outside them are clamped to the nearest end)")
    print(f"verified: {'OK' if ok else 'MISMATCH'}: decoded {len(dec_ms)} frames, final digest {dec.state.digest()}"
          f" (encoder {final_digest}), {len(dec.state):,} Gaussians live")
    return 0 if ok else 1


# ------------------------------------------------------------------------------------ parser
class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keep hand-made line breaks in descriptions/epilogs; show defaults that say something."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _positive(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _frame_rate(text: str) -> float:
    v = float(text)
    if not 0 < v <= 1000:
        raise argparse.ArgumentTypeError(f"must be in (0, 1000] frames per second, got {text}")
    return v


def _zstd_level(text: str) -> int:
    v = int(text)
    if not 0 <= v <= 22:
        raise argparse.ArgumentTypeError(f"zstd level must be 0..22, got {v}")
    return v


def _spz_frame_option(parser: argparse.ArgumentParser, verb: str) -> None:
    parser.add_argument("--spz-frame", choices=("raw", "rub"), default="raw",
                        help=f"how to {verb} SPZ coordinates (a file's coordinate-system extension wins when reading): "
                             "raw = the PLY frame as stored (what splat-transform and the SPZ tools write; default), "
                             "rub = the SPZ README's RUB frame")


def build_parser() -> argparse.ArgumentParser:
    quiet = argparse.ArgumentParser(add_help=False)
    quiet.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                       help="no progress bars (they are also off when stderr is not a terminal)")
    profiles = list(PRESETS)
    p = argparse.ArgumentParser(
        prog=PROG, formatter_class=_Formatter,
        description="GSD (Gaussian Scene Delta): convert, inspect, validate and demo streams of 3D Gaussian "
                    "Splatting scenes.",
        epilog="examples:\n"
               "  gsd demo                          # synthetic scene -> demo.gsd, verified\n"
               "  gsd encode scene.ply scene.gsd --profile high\n"
               "  gsd info scene.gsd\n"
               "  gsd validate scene.gsd && gsd decode scene.gsd back.ply\n\n"
               "exit status: 0 ok, 1 stream or data error (GSD error code printed), 2 usage error.\n"
               "'gsd COMMAND --help' explains each command.")
    p.add_argument("--version", action="version",
                   version=f"gsd-codec {__version__} (GSD format {FORMAT_VERSION})")
    p.add_argument("-q", "--quiet", action="store_true", default=False, help="no progress bars")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    e = sub.add_parser(
        "encode", parents=[quiet], formatter_class=_Formatter,
        help="splat file (.ply, .compressed.ply, .spz, .splat, .sog) -> GSD stream (one keyframe); "
             "several (a 4D sequence) -> keyframe + deltas",
        description="Encode a 3DGS scene (a trainer's float PLY, a PlayCanvas compressed PLY, SPZ, .splat or SOG)\n"
                    "into a GSD stream holding one keyframe.\n"
                    "The spatial-id grid is fitted to the scene's bounding box, and the profile's scale, DC and\n"
                    "SH ranges to its values (the preset's bit depths kept; SPEC.md 5.8). Prints size, bytes per\n"
                    "Gaussian, the ratio to the input file's size, time, and for lossy profiles the components\n"
                    "clamped (outside the ranges) and the error per attribute against the input (max, mean, the\n"
                    "bound). Non-finite values and far outliers: see --drop-invalid and --drop-outliers.\n\n"
                    "Several inputs (files, a glob pattern in quotes, or a folder of scene files; natural order) are\n"
                    "a 4D sequence and become ONE stream: a keyframe of the first scene, then one delta per later\n"
                    "scene. A Gaussian of one scene is the same as one of the next when both files carry an 'id'\n"
                    "(PLY vertex property) and it is equal; else, with the same row count, when it is the same row;\n"
                    "else when all its float values are identical. Matched Gaussians that changed are UPDATEs,\n"
                    "the rest DELETEs and ADDs. Ranges and grid are fitted to the first scene.",
        epilog="examples:\n"
               "  gsd encode point_cloud.ply scene.gsd                  # compact profile\n"
               "  gsd encode point_cloud.ply scene.gsd --fixed-ranges   # the preset's fixed ranges\n"
               "  gsd encode point_cloud.ply scene.gsd --profile lossless\n"
               "  gsd encode point_cloud.ply small.gsd --sh-degree 1 --level 19\n"
               "  gsd encode scene.sog scene.gsd --drop-outliers     # also .spz, .splat, .compressed.ply, SOG folders\n"
               "  gsd encode frame_*.ply seq.gsd --fps 24            # a 4D sequence: keyframe + one delta per file\n"
               "  gsd encode 'frames/*.ply' seq.gsd                  # a quoted pattern, or a folder: frames/")
    e.add_argument("input", metavar="IN", nargs="+",
                   help="input scene: a float 3DGS .ply, a PlayCanvas .compressed.ply, .spz (v2-v4), an antimatter15 "
                        ".splat, a .sog or a SOG folder/meta.json (format told by content, then extension); "
                        "several, a glob pattern or a folder of scene files: a sequence, one frame each")
    e.add_argument("output", metavar="OUT.gsd", help="output stream (overwritten)")
    e.add_argument("--profile", choices=profiles, default=DEFAULT_PROFILE,
                   help="quantization preset: lossless = float32 exact; high; compact; small (default: "
                        "fewer bits, SH_REST through an SH palette, format 1.1)")
    e.add_argument("--sh-degree", type=int, choices=range(4), default=None, metavar="N",
                   help="SH degree 0..3 to keep (higher-order coefficients dropped or zero-padded); default: the input's")
    e.add_argument("--level", type=_zstd_level, default=ZSTD_LEVEL, metavar="ZSTD_LEVEL",
                   help="zstd level 0..22 for the sections (0 = store uncompressed)")
    e.add_argument("--cell-bits", type=int, choices=range(1, 21), default=DEFAULT_CELL_BITS, metavar="B",
                   help="grid cells per axis = 2^B (1..20). The position bits follow (the preset's + 10 - B, at least 1; "
                        "'small' takes no finer a step than 1/16 of a small Gaussian's largest axis), "
                        "so the position step stays the same relative to the scene and B only moves bits between "
                        "ids and position codes. Default 10: at that step 10, 12 and 14 gave files within 0.6%% of each "
                        "other on a 500k captured scene and a 200k synthetic one, and fewer cells keep more slots per "
                        "cell for Gaussians born later (14 with the preset's position bits, the old default, was 6%% "
                        "larger for positions 16x finer than the preset's)")
    e.add_argument("--format", choices=FORMATS[::-1], default=FORMATS[-1],
                   help="format version the stream needs: 1.4 (default) may also store a sequence's ranks as "
                        "exp-Golomb codes of their gaps; 1.3 may store colour sections as differences "
                        "between the colour channels; 1.2 sends the ids of a sequence's UPDATEs "
                        "and DELETEs as ranks among the live ids; 1.1 sends a block's ids implicitly where its "
                        "Gaussians' positions give them (ADD_IMPLICIT) and allows the 'small' profile's SH palette; "
                        "1.0 sends every id, for decoders of 1.0 (with --profile compact, high or lossless)")
    e.add_argument("--fixed-ranges", action="store_true",
                   help="use the preset's fixed scale/DC/SH ranges (the streaming defaults) instead of ranges fitted to "
                        "the scene; values outside them are clamped (and reported)")
    e.add_argument("--drop-invalid", action="store_true",
                   help="drop rows holding a NaN or infinite value (default: opacity logits of +-inf are clamped to "
                        "+-20 and counted; any other non-finite value is an error naming the attribute and row count)")
    e.add_argument("--drop-outliers", action="store_true",
                   help="drop Gaussians far outside the rest (beyond the 1st-99th percentile box widened 10x its size "
                        "on each side; default: keep them and warn, since they stretch the grid)")
    _spz_frame_option(e, "read")
    e.add_argument("--fps", type=_frame_rate, default=None, metavar="N",
                   help="frame rate recorded in the stream header (informative: viewers play at it); default: unset")
    e.add_argument("--progressive", type=_megabytes, nargs="?", const=FIRST_BYTES / 1e6, default=None, metavar="MB",
                   help=f"send the scene coarse first: a first frame of about MB megabytes (default {FIRST_BYTES / 1e6:g}) of stand-ins "
                        "for it, then frames that refine it to the full scene (the stream ends on the same scene "
                        "and digest; SPEC.md Appendix C)")
    e.add_argument("--json", action="store_true", help="print the summary as JSON")
    e.set_defaults(func=cmd_encode)

    d = sub.add_parser(
        "decode", parents=[quiet], formatter_class=_Formatter,
        help="GSD stream -> .ply, .spz or .splat (state after a frame)",
        description="Decode a stream up to a frame and write the scene state as a standard 3DGS PLY (or .spz,\n"
                    ".splat, by the output's extension): dequantized float32 attributes, Gaussians in ascending id\n"
                    "(Morton) order.\n"
                    "Every frame's digest is checked on the way.",
        epilog="examples:\n"
               "  gsd decode scene.gsd back.ply                 # state after the last frame\n"
               "  gsd decode world.gsd step10.ply --frame 10    # state after frame 10 (0-based, as in 'gsd info')\n"
               "  gsd decode scene.gsd scene.spz                # SPZ v3 for web viewers")
    d.add_argument("input", metavar="IN.gsd", help="input stream")
    d.add_argument("output", metavar="OUT", help="output scene (overwritten), format by extension: .ply (float 3DGS), "
                                                 ".spz or .splat")
    d.add_argument("--frame", type=int, default=None, metavar="N",
                   help="0-based frame index to stop after (negative counts from the end); default: the last")
    d.add_argument("--no-verify", action="store_true", help="skip the per-frame digest checks")
    d.add_argument("--spz-version", type=int, choices=(2, 3, 4), default=3, help="SPZ version written to a .spz output")
    _spz_frame_option(d, "write")
    d.set_defaults(func=cmd_decode)

    i = sub.add_parser(
        "info", parents=[quiet], formatter_class=_Formatter,
        help="header summary and per-frame costs",
        description="Summarize a stream: format version, profile and its numbers, SH degree, grid; then one row\n"
                    "per frame: index, seq, base seq, keyframe flag (K), ops by kind (add, update, delete ids,\n"
                    "ranges, cells), frame bytes, metadata bytes and stored bytes by section role, bytes per\n"
                    "Gaussian touched, ratio of the float PLY size of the added/updated Gaussians to the frame,\n"
                    "live count and state digest; then totals. Exits 1 (after printing what it read) at a bad frame.",
        epilog="examples:\n"
               "  gsd info demo.gsd\n"
               "  gsd info demo.gsd --json | jq '.frames[] | .bytes'")
    i.add_argument("input", metavar="IN.gsd", help="input stream")
    i.add_argument("--json", action="store_true", help="the same as JSON on stdout")
    i.set_defaults(func=cmd_info)

    v = sub.add_parser(
        "validate", parents=[quiet], formatter_class=_Formatter,
        help="check a stream against the spec",
        description="Decode every frame with all checks (framing, CRC-32, limits, ids, codes, sequence, digests).\n"
                    "Valid: prints 'OK: N frames, final digest D' and exits 0. Invalid: prints every problem as\n"
                    "'frame K: CODE_NAME (code N): message' (the first decode error, then framing/CRC problems of\n"
                    "later frames) and exits 1. Exits 2 if the file cannot be read.",
        epilog="examples:\n"
               "  gsd validate demo.gsd\n"
               "  gsd validate suspect.gsd --json")
    v.add_argument("input", metavar="IN.gsd", help="input stream")
    v.add_argument("--json", action="store_true", help="print the result as JSON")
    v.set_defaults(func=cmd_validate)

    m = sub.add_parser(
        "demo", parents=[quiet], formatter_class=_Formatter,
        help="synthetic scene -> keyframe + deltas, verified",
        description="The built-in end-to-end job: generate a synthetic scene, stream it as a keyframe then delta\n"
                    "frames the way a world model would change it (a cluster moves, one changes colour, a spatial\n"
                    "cell is deleted, new Gaussians grow next to existing ones), write the stream, decode it back\n"
                    "and check the decoder's state equals the encoder's. Prints per-frame bytes and times, totals,\n"
                    "and the float PLY size for comparison.",
        epilog="examples:\n"
               "  gsd demo\n"
               "  gsd demo --n 1000000 --frames 60 --profile high --out big.gsd\n"
               "  gsd demo --n 2000 --frames 5 --quiet")
    m.add_argument("--n", type=_positive, default=200_000, help="Gaussians in the synthetic scene")
    m.add_argument("--frames", type=_positive, default=30, help="frames in all (1 keyframe + deltas)")
    m.add_argument("--out", default="demo.gsd", metavar="OUT.gsd", help="stream file to write")
    m.add_argument("--profile", choices=profiles, default=STREAM_PROFILE, help="quantization preset (a stream's default)")
    m.add_argument("--sh-degree", type=int, choices=range(4), default=3, metavar="N", help="SH degree 0..3")
    m.add_argument("--level", type=_zstd_level, default=ZSTD_LEVEL, metavar="ZSTD_LEVEL",
                   help="zstd level 0..22 (0 = store uncompressed)")
    m.add_argument("--seed", type=int, default=0, help="random seed (scene and edits)")
    m.set_defaults(func=cmd_demo)

    _plugin_commands(sub, [quiet])
    return p


PLUGIN_GROUP = "gsd.commands"


def _plugin_commands(sub, parents: list[argparse.ArgumentParser]) -> None:
    """Subcommands that packages above the codec add (``gsd view``: reference_viewer/serve.py).

    Each entry point of the group ``gsd.commands`` is a ``register(subparsers, parents)`` that adds its
    parser and sets ``func``; the codec imports none of them by name. A plugin that fails to load is
    left out with a warning, so the codec's own commands still work. Every distribution on the path is
    read (not only the first of a name: a stale ``*.egg-info`` in the working directory would hide the
    installed one's entry points).
    """
    from importlib.metadata import distributions

    found = {}
    for dist in distributions():
        for ep in dist.entry_points:
            if ep.group == PLUGIN_GROUP:
                found.setdefault(ep.name, ep)
    for name, ep in sorted(found.items()):
        if name in sub.choices:
            continue
        try:
            ep.load()(sub, parents)
        except Exception as e:  # noqa: BLE001 - any failure of foreign code
            print(f"{PROG}: warning: command {ep.name!r} ({ep.value}) unavailable: {e}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    global _QUIET
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    _QUIET = bool(args.quiet)
    try:
        status = args.func(args)
        sys.stdout.flush()            # inside the try: a closed pipe is met here, not at interpreter exit
        return status
    except UsageError as e:
        print(f"{PROG} {args.command}: error: {e}", file=sys.stderr)
        return 2
    except GsdError as e:
        print(f"{PROG} {args.command}: {_problem_line(e)}", file=sys.stderr)
        return 1
    except BrokenPipeError:       # the reader of stdout went away (| head): stop quietly, as a C tool would
        _silence_stdout()
        return 141
    except (ValueError, OSError) as e:  # bad input data (a malformed PLY, NaN values) or an unwritable output
        print(f"{PROG} {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not raise BrokenPipeError again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    # run as codec.cli, not __main__: a plugin command's codec.cli.UsageError is then the one main() catches
    from codec.cli import main as _main
    sys.exit(_main())
