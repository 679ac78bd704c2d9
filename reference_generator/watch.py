"""`gsd-watch`: a headless client of `gsd-serve` -- connect, play scripted actions, verify every frame.

    gsd-watch                                       # ws://127.0.0.1:8765/ws, the 300-step scripted session
    gsd-watch ws://host:8765/ws --world lobby --steps 1000 --rate 10 --out session.gsd --reconnect 5
    gsd-watch ws://host:8765/ws --world lobby --token-file lobby.token --watch-only --steps 200

Every frame is decoded, applied to a local state and checked against the digest it carries; the
client acknowledges each with its own digest, so the server checks it too (SPEC.md 11.5). Prints
a line per ``--every`` frames and a summary (frames, bytes, resyncs, action-to-delta latency).
Exit status: 0 all frames verified, 1 a frame failed or the server closed the session, 2 bad
arguments or no server, 3 the server is busy and refused the session (close 1013, SPEC.md 11.7)
and ``--reconnect`` retries are spent; each refusal is printed with its delay, which gsd-watch
waits out before it tries again; 4 the server refused the token (close 4002 or 4003, SPEC.md 11.8).
A token (``--token``, ``--token-file`` or ``$GSD_TOKEN``) is sent as ``Authorization: Bearer``;
``--watch-only`` sends no actions and takes ``--steps`` frames instead.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
from pathlib import Path

import aiohttp

from .client import Client, NotAuthorised, ProtocolClosed, ServerBusy, run_script
from .metrics import percentile
from .actions import scripted_session


def summary(stats, client: Client) -> dict:
    lat = stats.latencies_ms
    return {"frames": stats.frames, "keyframes": stats.keyframes, "bytes": stats.bytes,
            "resyncs": stats.resyncs, "errors": stats.errors, "reconnects": stats.reconnects,
            "refusals": stats.refusals,
            "latency_ms": {"n": len(lat), "p50": round(percentile(lat, 50), 2), "p99": round(percentile(lat, 99), 2),
                           "mean": round(statistics.fmean(lat), 2) if lat else None},
            "seq": client.seq, "digest": client.digest}


TOKEN_ENV = "GSD_TOKEN"


async def watch_frames(client: Client, frames: int, on_frame, timeout: float):
    """Watch only: connect and take ``frames`` frames (keyframe included), sending no action."""
    await client.connect()
    for _ in range(frames):
        on_frame(await client.next_frame(timeout))
    return client.stats


async def watch(a) -> int:
    url = a.url + (("&" if "?" in a.url else "?") + f"world={a.world}" if a.world else "")
    client = Client(url, max_sh_degree=a.max_sh_degree, record=a.out, token=a.token)
    actions = scripted_session(a.steps)
    n = 0

    def on_frame(f):
        nonlocal n
        n += 1
        if not a.json and (n == 1 or n % a.every == 0):
            lat = f" latency {f.latency_ms[0]:.1f} ms" if f.latency_ms else ""
            print(f"frame {n:5d} seq {f.seq:6d} {'KEY ' if f.keyframe else ''}{f.nbytes:8d} B  "
                  f"digest {f.digest} ok{lat}", flush=True)

    def on_busy(e: ServerBusy, delay: float):
        print(f"gsd-watch: {e}; waiting {delay:.1f} s before trying again", file=sys.stderr, flush=True)

    try:
        if a.watch_only:
            stats = await watch_frames(client, max(1, a.steps), on_frame, a.timeout)
        else:
            stats = await run_script(client, actions, lockstep=a.rate <= 0, rate=a.rate, reconnects=a.reconnect,
                                     on_frame=on_frame, timeout=a.timeout, on_busy=on_busy)
        code = 0 if not stats.errors else 1
    except NotAuthorised as e:
        print(f"gsd-watch: token refused: {e.code} {e.reason}", file=sys.stderr)
        stats, code = client.stats, 4
    except ServerBusy as e:
        print(f"gsd-watch: {e} (no --reconnect attempts left)", file=sys.stderr)
        stats, code = client.stats, 3
    except ProtocolClosed as e:
        print(f"gsd-watch: server closed the session: {e.code} {e.reason}", file=sys.stderr)
        stats, code = client.stats, 1
    except asyncio.TimeoutError:                  # before OSError: TimeoutError is one since Python 3.11
        print(f"gsd-watch: no frame for {a.timeout:g} s", file=sys.stderr)
        stats, code = client.stats, 1
    except (aiohttp.ClientError, OSError) as e:
        print(f"gsd-watch: cannot reach {url}: {e}", file=sys.stderr)
        return 2
    finally:
        await client.close()
    s = summary(stats, client) if client.decoder else {"frames": 0, "refusals": stats.refusals}
    if a.json:
        print(json.dumps(s))
    elif not client.decoder:
        print(f"no session: 0 frames, refused {s['refusals']} times")
    else:
        lat = s.get("latency_ms", {})
        print(f"{s['frames']} frames ({s.get('keyframes', 0)} keyframes), {s.get('bytes', 0)} bytes, "
              f"{s.get('resyncs', 0)} resyncs, errors {s.get('errors', {})}; action-to-delta p50 "
              f"{lat.get('p50')} ms, p99 {lat.get('p99')} ms; final seq {s.get('seq')} digest {s.get('digest')}")
    return code


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="gsd-watch", description=__doc__.rstrip(),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url", nargs="?", default="ws://127.0.0.1:8765/ws",
                    help="the server's session endpoint (default: %(default)s)")
    ap.add_argument("--world", metavar="NAME",
                    help="join the shared world NAME, starting it if it is not running (default: a world of its own)")
    ap.add_argument("--steps", type=int, default=300, metavar="N",
                    help="scripted actions to send (actions.scripted_session; default: %(default)s)")
    ap.add_argument("--rate", type=float, default=0.0, metavar="HZ",
                    help="actions per second; 0: lockstep, each action waits for its frame (default: %(default)s)")
    ap.add_argument("--out", metavar="FILE", help="record the stream to this .gsd file (default: no recording)")
    ap.add_argument("--reconnect", type=int, default=0, metavar="N",
                    help="reconnect this many times if the connection drops or the server is busy (default: %(default)s)")
    ap.add_argument("--max-sh-degree", type=int, default=3, choices=range(4),
                    help="highest spherical-harmonics degree to ask the server for (default: %(default)s)")
    ap.add_argument("--timeout", type=float, default=30.0, metavar="S",
                    help="seconds to wait for a frame before giving up (default: %(default)s)")
    ap.add_argument("--every", type=int, default=25, metavar="N", help="print every Nth frame (default: %(default)s)")
    ap.add_argument("--json", action="store_true", help="print only the summary, as one JSON line (default: off)")
    ap.add_argument("--token", metavar="TOKEN",
                    help=f"session token for a server that requires one (gsd-token; default: ${TOKEN_ENV} if set)")
    ap.add_argument("--token-file", metavar="FILE", help="read the session token from FILE, instead of --token (default: none)")
    ap.add_argument("--watch-only", action="store_true",
                    help="send no actions: take --steps frames and verify them, what a watch-only token allows "
                         "(default: off, play the scripted actions)")
    a = ap.parse_args(argv)
    if a.steps < 0 or a.every < 1:
        ap.error("--steps >= 0 and --every >= 1")
    if a.token_file:
        try:
            a.token = Path(a.token_file).read_text().strip()
        except OSError as e:
            ap.error(f"--token-file: {e}")
    elif a.token is None:
        a.token = os.environ.get(TOKEN_ENV) or None
    return asyncio.run(watch(a))


if __name__ == "__main__":
    sys.exit(main())
