"""
In-process cost of the Twilio media path, per 20 ms frame: raw WebSocket
frames into the gateway's site (Autobahn, the Twilio adapter, the call
session, the echo assistant) and the echoed frame back out to the
transport, with no sockets and no reactor. Not a timed test.

    .venv/bin/python benchmarks/profile_twilio.py [--calls 100] [--frames 500]
        [--rate 16000] [--profile] [--socket]

  - µs/frame: the whole path for one caller frame and its echo.
  - --profile: a cProfile of the same run, top functions by own time.
  - --socket: each call's transport is a real C{tcp.Server} on one end
    of a loopback TCP connection (its other end drained), so the gateway's write path
    (Twisted's buffer or a straight socket write) is included.

Complements C{benchmarks/bench_twilio.py}, which measures the real server
under real load (sockets, epoll, the kernel).
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import gc
import os
import pstats
import socket
import struct
import sys
import time
from typing import Any
from urllib.parse import urlsplit
from xml.etree import ElementTree

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from treq.testing import StubTreq  # noqa: E402
from twisted.internet import tcp  # noqa: E402
from twisted.internet.address import IPv4Address  # noqa: E402
from twisted.internet.task import Clock  # noqa: E402
from twisted.internet.testing import StringTransport  # noqa: E402

from rapida_twisted.config import parseConfig  # noqa: E402
from rapida_twisted.gateway import Gateway  # noqa: E402
from rapida_twisted.media.analysis import speechLike  # noqa: E402
from rapida_twisted.media.g711 import ulawEncode  # noqa: E402
from rapida_twisted.providers._base import PublicURLs  # noqa: E402
from rapida_twisted.providers.twilio._codec import encodeInboundMedia, encodeStart  # noqa: E402
from rapida_twisted.store._memory import MemoryContextStore  # noqa: E402
from rapida_twisted.web import buildSite  # noqa: E402

HOST = "gw.example.com"


class NullTransport(StringTransport):
    """
    A transport that forgets what is written (counting it).
    """

    written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def writeSequence(self, seq: Any) -> None:
        for data in seq:
            self.write(data)


class _FakeReactor:
    """
    Just enough reactor for a C{tcp.Server} that never needs the loop.
    """

    def __init__(self) -> None:
        self.writers: set[Any] = set()

    def addWriter(self, w: Any) -> None:
        self.writers.add(w)

    def removeWriter(self, w: Any) -> None:
        self.writers.discard(w)

    def addReader(self, r: Any) -> None:
        pass

    def removeReader(self, r: Any) -> None:
        pass

    def callLater(self, *a: Any, **kw: Any) -> Any:
        raise AssertionError("no timers")


def clientFrame(payload: bytes) -> bytes:
    """
    One masked text frame, as a browser or Twilio sends it.
    """
    mask = os.urandom(4)
    n = len(payload)
    header = bytes([0x81, 0x80 | n]) if n < 126 else bytes([0x81, 0xFE]) + struct.pack("!H", n)
    key = (mask * (n // 4 + 1))[:n]
    body = (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")
    return header + mask + body


class Bench:
    def __init__(self, calls: int, rate: int, useSocket: bool) -> None:
        toml = f'[[assistants]]\nid = "echo{rate}"\nkind = "echo"\nsample_rate = {rate}\n'
        self.assistant = f"echo{rate}"
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.store = MemoryContextStore(self.clock, ttl=120)
        self.config = parseConfig(toml, {})
        self.gateway = Gateway(self.clock, self.store, self.config, PublicURLs(HOST))
        self.site = buildSite(self.gateway, self.clock)
        self.treq: Any = StubTreq(self.site.resource)
        self.useSocket = useSocket
        self.reactor = _FakeReactor()
        self.drains: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=4096)
        self.calls = [self.open(i) for i in range(calls)]

    def webhook(self) -> tuple[str, str]:
        d = self.treq.request(
            "POST",
            f"http://{HOST}/v1/talk/twilio/call/{self.assistant}",
            data={"From": "+1555", "To": "+1556", "CallSid": "CA" + os.urandom(16).hex()},
        )
        self.treq.flush()
        response: list[Any] = []
        d.addCallback(lambda r: r.content()).addCallback(response.append)
        self.treq.flush()
        root = ElementTree.fromstring(response[0])
        stream = root.find("./Connect/Stream")
        assert stream is not None
        params = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
        return urlsplit(stream.get("url", "")).path, params["token"] or ""

    def open(self, i: int) -> Any:
        path, token = self.webhook()
        proto = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000 + i))
        transport: Any
        if self.useSocket:
            theirs = socket.create_connection(self.listener.getsockname())
            ours, _ = self.listener.accept()
            ours.setblocking(False)
            theirs.setblocking(False)
            theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            self.drains.append(theirs)
            transport = tcp.Server(
                ours,
                proto,
                ("127.0.0.1", 40000 + i),
                None,  # type: ignore[arg-type]
                i,
                self.reactor,  # type: ignore[arg-type]
            )
            proto.makeConnection(transport)
        else:
            transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000 + i))
            transport.protocol = proto
            proto.makeConnection(transport)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        proto.dataReceived(request.encode())
        ws = transport.protocol if not self.useSocket else proto
        # after the upgrade the transport's protocol is the WebSocket protocol
        ws = getattr(transport, "protocol", ws)
        sid = "MZ" + os.urandom(16).hex()
        ws.dataReceived(clientFrame(b'{"event":"connected","protocol":"Call","version":"1.0.0"}'))
        ws.dataReceived(clientFrame(encodeStart(sid, "CA1", "AC1", {"token": token}).encode()))
        self.clock.advance(0)
        if not self.useSocket:
            transport.clear()
            nullT = NullTransport()
            ws.transport = nullT
        return ws, sid

    def frames(self, count: int) -> list[list[bytes]]:
        audio = ulawEncode(speechLike(count * 0.02 + 0.1, 8000, seed=3))
        out = []
        for _ws, sid in self.calls:
            out.append(
                [
                    clientFrame(
                        encodeInboundMedia(
                            sid, audio[k * 160 : (k + 1) * 160], k + 2, k + 1, k * 20
                        ).encode()
                    )
                    for k in range(count)
                ]
            )
        return out

    def flush(self) -> None:
        """
        What the reactor would do next: write out the transports' buffers.
        """
        for w in list(self.reactor.writers):
            w.doWrite()

    def drain(self) -> None:
        for s in self.drains:
            try:
                while s.recv(1 << 20):
                    pass
            except BlockingIOError:
                pass

    def run(self, frames: list[list[bytes]]) -> float:
        protos = [ws for ws, _ in self.calls]
        count = len(frames[0])
        gc.collect()
        gc.disable()
        busy = 0.0
        try:
            for k in range(count):
                start = time.process_time()
                for proto, mine in zip(protos, frames, strict=True):
                    proto.dataReceived(mine[k])
                if self.useSocket:
                    self.flush()
                busy += time.process_time() - start
                self.clock.advance(0.02)
                if self.useSocket:
                    self.drain()
        finally:
            gc.enable()
        return busy / (count * len(protos)) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--rate", type=int, default=16000, help="the echo assistant's rate")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--socket", action="store_true")
    parser.add_argument("--top", type=int, default=35)
    args = parser.parse_args()
    bench = Bench(args.calls, args.rate, args.socket)
    frames = bench.frames(args.frames)
    bench.run([f[:50] for f in frames])  # warm up
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        perFrame = bench.run(frames)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(args.top)
    else:
        perFrame = bench.run(frames)
    sessions = list(bench.gateway.sessions)
    framesOut = sum(s.stats.framesOut for s in sessions)
    print(
        f"{args.calls} calls x {args.frames} frames, echo at {args.rate} Hz"
        f"{' (loopback TCP transports)' if args.socket else ''}: {perFrame:.1f} µs/frame"
        f" (in and echo out), {perFrame * 50 / 1000:.2f} ms CPU per call-second,"
        f" {sessions and framesOut} frames out"
    )


if __name__ == "__main__":
    main()
