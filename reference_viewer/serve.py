"""``gsd view FILE``: the viewer on 127.0.0.1 with one scene, in one command.

A ``.gsd`` stream is served as it is; any scene file the codec reads (``codec.interop.read_scene``:
.ply, .compressed.ply, .spz, .splat, .sog) is first encoded with the codec's default profile, the
way ``gsd encode`` does (``codec.cli.read_input`` and ``encoder_for``). The page opens the stream
offline (``?stream=``), frames the camera on the scene's 2nd-98th percentile box and holds it upright
(``?up=``, default ``-y``: a COLMAP / 3DGS scene is y-down). Several scene files, a glob or a folder of
them are a 4D sequence: encoded as ``gsd encode A B C ... --fps`` writes it (a keyframe, then one delta
per later file) and played with the viewer's timeline.

The codec knows this command only as a plugin: ``register`` is the ``gsd.commands`` entry point of
pyproject.toml, which ``codec/cli.py`` calls with its subparsers. Needs aiohttp (a base dependency),
not torch.
"""
from __future__ import annotations

import argparse
import asyncio
import mimetypes
import os
import sys
import time
import webbrowser
from urllib.parse import quote

from . import VIEWER_DIR

HOST = "127.0.0.1"          # never another interface: the page and the scene are for this machine
UP_AXES = ("-y", "y", "z", "-z")
DEFAULT_UP = "-y"
STREAM_MAGIC = b"GSDH"


def register(sub, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``view`` to ``gsd``'s subparsers (the ``gsd.commands`` entry point); its own -q replaces ``parents``'."""
    v = sub.add_parser(
        "view", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="open a scene (.ply, .spz, .splat, .sog, .compressed.ply or .gsd) in the browser viewer",
        description="Serve the WebGPU viewer on 127.0.0.1 with one scene and print its address.\n"
                    "A .gsd stream is played as it is; any other scene file is encoded first with the default\n"
                    "profile (as 'gsd encode' would; progress on stderr). The camera starts on the scene's\n"
                    "2nd-98th percentile box, held upright by --up. Ctrl-C stops the server.\n"
                    "Open the address in a browser with WebGPU (Chrome / Edge 113+).",
        epilog="examples:\n"
               "  gsd view point_cloud.ply                # a trainer's PLY (COLMAP axes: y down)\n"
               "  gsd view scene.sog --open               # and open the default browser\n"
               "  gsd view world.gsd --up z --port 8800   # a z-up stream at a fixed port")
    v.add_argument("input", metavar="FILE", nargs="+",
                   help="a .gsd stream, or a scene file 'gsd encode' reads (a SOG folder too); several files, a "
                        "quoted glob or a folder of scene files: a 4D sequence, encoded as 'gsd encode' does and "
                        "played with the viewer's timeline")
    v.add_argument("--fps", type=float, default=None,
                   help="a sequence's frame rate for playback (default: 10 frames a second)")
    v.add_argument("--port", type=int, default=0,
                   help="port on 127.0.0.1 (default 0: a free one)")
    v.add_argument("--up", choices=UP_AXES, default=DEFAULT_UP,
                   help="the scene's up axis (default -y: COLMAP / 3DGS captures are y-down; z for the reference world)")
    v.add_argument("--open", action="store_true", help="open the address in the default browser")
    v.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                   help="no progress lines on stderr (reading, encoding)")
    v.set_defaults(func=cmd_view)


def _say(msg: str) -> None:
    print(f"gsd view: {msg}", file=sys.stderr, flush=True)


SEQUENCE_FPS = 10.0


def load_stream(path: str | list[str], say=None, fps: float | None = None) -> tuple[bytes, str]:
    """(stream bytes, name to serve them as) of ``path``: a GSD stream read, a scene file encoded, or
    a 4D sequence (several files, a glob, a folder of scene files) encoded into one stream.

    ``say(line)`` gets the progress lines (default: stderr).
    """
    from codec.cli import UsageError, build_parser, encoder_for, read_input
    from codec.sequence import frame_paths
    from codec.wire import decode_header

    if not isinstance(path, str):
        try:
            paths = frame_paths(list(path))
        except FileNotFoundError as e:
            raise UsageError(str(e)) from None
        if len(paths) > 1:
            return _sequence_stream(paths, say or _say, fps or SEQUENCE_FPS)
        path = paths[0]
    if not os.path.exists(path):
        raise UsageError(f"{path}: no such file")
    base = os.path.basename(os.path.normpath(path))
    head = b""
    if os.path.isfile(path):
        with open(path, "rb") as f:
            head = f.read(4)
    if head == STREAM_MAGIC:
        data = open(path, "rb").read()
        decode_header(data)                       # a damaged header fails here, not in the browser
        return data, base
    if path.lower().endswith(".gsd"):
        raise ValueError(f"{path}: not a GSD stream (it does not start with a GSDH header record)")
    enc_args = build_parser().parse_args(["encode", path, os.devnull])
    say = say or _say
    t0 = time.perf_counter()
    say(f"reading {path}")
    g, fmt, cleaning = read_input(enc_args)
    if len(g) == 0:
        raise ValueError(f"{path}: the scene has no Gaussians")
    for note in cleaning.notes():
        say(note)
    say(f"read {len(g):,} Gaussians ({fmt}, SH degree {g.sh_degree}) in {time.perf_counter() - t0:.1f} s; "
         f"encoding (profile {enc_args.profile})")
    t0 = time.perf_counter()
    g, enc = encoder_for(g, enc_args)
    data = enc.header_bytes() + enc.keyframe(g)
    say(f"encoded {len(data):,} bytes ({len(data) / len(g):.2f} B/Gaussian) in {time.perf_counter() - t0:.1f} s")
    return data, base + ".gsd"


def _sequence_stream(paths: list[str], say, fps: float) -> tuple[bytes, str]:
    """A 4D sequence encoded in memory as ``gsd encode A B C ... --fps`` writes it."""
    from codec.cli import build_parser, encode_sequence_files

    say(f"encoding a sequence of {len(paths)} scenes ({os.path.basename(paths[0])} first) at {fps:g} fps")
    args = build_parser().parse_args(["encode", *paths, os.devnull, "--fps", f"{fps:g}"])
    parts: list[bytes] = []
    t0 = time.perf_counter()
    encode_sequence_files(args, paths, parts.append, parts.append)
    data = b"".join(parts)
    say(f"encoded {len(data):,} bytes in {time.perf_counter() - t0:.1f} s")
    base = os.path.splitext(os.path.basename(os.path.normpath(paths[0])))[0]
    return data, f"{base}-sequence.gsd"


def page_path(stream_name: str, up: str) -> str:
    """The viewer's address (below the server root) that plays /stream/NAME held with ``up`` up."""
    return f"/viewer/index.html?stream=/stream/{quote(stream_name)}&up={quote(up)}&connect=0"


def make_app(data: bytes, name: str, up: str):
    from aiohttp import web

    mimetypes.add_type("text/javascript", ".mjs")   # module scripts need it; some systems' tables lack it
    mimetypes.add_type("application/wasm", ".wasm")
    target = page_path(name, up)

    async def index(request):         # /?size=WxH etc. are passed on to the viewer
        raise web.HTTPFound(target + (f"&{request.query_string}" if request.query_string else ""))

    async def stream(request):
        if request.match_info["name"] != name:
            raise web.HTTPNotFound()
        return web.Response(body=data, content_type="application/octet-stream",
                            headers={"Cache-Control": "no-store"})

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/stream/{name}", stream)
    app.router.add_static("/viewer", VIEWER_DIR, follow_symlinks=False)
    return app


async def serve(data: bytes, name: str, up: str, port: int, open_browser: bool) -> None:
    from aiohttp import web

    runner = web.AppRunner(make_app(data, name, up), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, HOST, port)
        await site.start()
        port = runner.addresses[0][1]
        url = f"http://{HOST}:{port}/"
        print(f"gsd view: {name} at {url}  (Ctrl-C stops)", flush=True)
        if open_browser:
            webbrowser.open(url)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def cmd_view(args) -> int:
    if not 0 <= args.port <= 65535:
        from codec.cli import UsageError
        raise UsageError(f"--port must be 0..65535, got {args.port}")
    data, name = load_stream(args.input, (lambda line: None) if getattr(args, "quiet", False) else None, args.fps)
    try:
        asyncio.run(serve(data, name, args.up, args.port, args.open))
    except KeyboardInterrupt:
        _say("stopped")
    return 0
