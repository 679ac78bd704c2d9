"""A client that stops reading is dropped: close code 4001 of SPEC.md 11.7 (11.6: a slow consumer).

The stalled client here is a raw TCP socket with a small receive buffer: it opens the WebSocket,
says hello and then never reads another byte, while it keeps *sending* (resync requests), so the
idle timeout (4000) never fires and every resync asks for one more keyframe. The server's writes
to it back up until one waits ``send_timeout``; the session then ends with 4001, and since the
close frame cannot get through a connection that does not drain either, the TCP connection is
aborted (the client's socket is reset). A second client in the same shared world steps the whole
time and notices nothing.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import time

import pytest

pytest.importorskip("torch")

from reference_generator.actions import Move, Turn
from reference_generator.client import Client

from test_server import HELLO, run, server, wait_until


def _frame(text: str) -> bytes:
    """A masked client text frame (RFC 6455 5.2)."""
    data = text.encode()
    mask = os.urandom(4)
    n = len(data)
    head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack("!H", n))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def _stalled_socket(port: int, query: str) -> socket.socket:
    """A WebSocket opened by hand, hello sent; the caller never reads from it again."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)       # before connect: a small window
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /ws{query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    reply = b""
    while not reply.endswith(b"\r\n\r\n"):          # the server sends nothing after it until the hello
        reply += s.recv(1)
    assert reply.startswith(b"HTTP/1.1 101"), reply
    s.sendall(_frame(json.dumps(HELLO)))
    s.setblocking(False)
    return s


def test_a_client_that_stops_reading_is_dropped_with_4001_in_time_and_others_go_on():
    send_timeout = 2.0

    async def go():
        async with server(send_timeout=send_timeout, idle_timeout=60.0) as s:
            port = int(s.http.rsplit(":", 1)[1])
            async with Client(s.url + "?world=hall") as fast:
                await fast.next_frame()
                (fast_sid,) = s.sessions
                stalled = await asyncio.to_thread(_stalled_socket, port, "?world=hall")
                await wait_until(lambda: len(s.sessions) == 2)
                (sess,) = [x for x in s.sessions.values() if x.sid != fast_sid]
                progress = [(time.monotonic(), 0)]            # (when, bytes written) at each change
                reset_at = None
                gaps = []
                t_end = time.monotonic() + 60
                while time.monotonic() < t_end:
                    # the stalled client asks for keyframes (and so stays un-idle) and reads nothing
                    if reset_at is None:
                        try:
                            stalled.send(_frame(json.dumps({"type": "resync", "reason": "CLIENT"})))
                        except BlockingIOError:
                            pass
                        except (ConnectionResetError, BrokenPipeError):
                            reset_at = time.monotonic()
                    if sess.bytes != progress[-1][1]:
                        progress.append((time.monotonic(), sess.bytes))
                    # the other client steps on, in the same world
                    t0 = time.monotonic()
                    await fast.step(Move(0.1) if len(gaps) % 2 else Turn(3.0), timeout=10)
                    gaps.append(time.monotonic() - t0)
                    if sess.sid not in s.sessions and reset_at is not None:
                        break
                    await asyncio.sleep(0.05)
                ended = time.monotonic()
                assert sess.sid not in s.sessions, "the stalled session was never dropped"
                closes = {x.labels["code"]: x.value for mf in s.metrics.closes.collect() for x in mf.samples
                          if x.name.endswith("_total")}
                assert closes.get("4001") == 1, (closes, ended - progress[-1][0], reset_at and ended - reset_at,
                                                 progress[-3:], sess.bytes)
                assert s.metrics.closes.labels("4000")._value.get() == 0       # not for idleness
                # dropped within send_timeout (+ the 2 s the close frame is given) of its last write
                last_write = progress[-1][0]
                assert sess.bytes > 64 * 1024, sess.bytes           # it did back up: its buffers are full
                assert send_timeout * 0.9 <= ended - last_write <= send_timeout + 2.0 + 4.0, \
                    (ended - last_write, progress[-3:])
                # the connection was aborted (the close frame could not get through): the socket is reset
                assert reset_at is not None
                # the other session noticed nothing: every step answered, no error, no resync
                await fast.step(Move(0.1))
                assert not fast.stats.errors and fast.stats.resyncs == 0
                assert max(gaps) < 5.0, max(gaps)         # each step answered (a shared 2-core box: slack)
                assert len(s.sessions) == 1
            stalled.close()
    run(go(), timeout=180)
