"""
Test helpers for the HTTP side: a gateway on a memory store and a
task.Clock, driven in memory through StubTreq and raw HTTP bytes.
"""

from __future__ import annotations

import base64
import json
import os
import struct
from typing import Any

import numpy as np
from treq.testing import StubTreq
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from rapida_twisted.config import GatewayConfig, parseConfig
from rapida_twisted.gateway import Gateway
from rapida_twisted.interfaces import IAssistant, IAssistantSession, ICallControl, IMediaChannel
from rapida_twisted.media.analysis import tone
from rapida_twisted.providers._base import PublicURLs
from rapida_twisted.store._memory import MemoryContextStore
from rapida_twisted.web import buildSite

PUBLIC = "gw.example.com"


class Harness:
    """
    One gateway: C{.clock}, C{.store}, C{.gateway}, C{.site}, C{.treq}.
    """

    def __init__(
        self, toml: str = "", environ: dict[str, str] | None = None, publicHost: str = PUBLIC
    ):
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.store = MemoryContextStore(self.clock, ttl=120)
        self.config: GatewayConfig = parseConfig(toml, environ or {})
        self.urls = PublicURLs(publicHost)
        self.gateway = Gateway(self.clock, self.store, self.config, self.urls)
        self.site = buildSite(self.gateway, self.clock)
        self.treq = StubTreq(self.site.resource)

    def contexts(self, testCase: Any) -> list[Any]:
        """
        Every stored context (oldest first).
        """
        rows = self.store._conn.execute(
            "SELECT context_id FROM call_contexts ORDER BY created_at, rowid"
        ).fetchall()
        return [testCase.successResultOf(self.store.get(row[0])) for row in rows]

    def url(self, path: str) -> str:
        return "http://" + PUBLIC + path

    def result(self, testCase: Any, d: Any) -> Any:
        self.treq.flush()
        return testCase.successResultOf(d)

    def request(self, testCase: Any, method: str, path: str, **kw: Any) -> tuple[Any, bytes]:
        d = self.treq.request(method, self.url(path), **kw)
        response = self.result(testCase, d)
        body = self.result(testCase, response.content())
        return response, body

    def raw(self, data: bytes, peer: str = "127.0.0.1") -> tuple[Any, StringTransport]:
        """
        Feed raw bytes to an HTTP channel of the site (for WebSocket
        upgrades, which StubTreq cannot do).
        """
        proto = self.site.buildProtocol(IPv4Address("TCP", peer, 40000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", peer, 40000))
        transport.protocol = proto
        proto.makeConnection(transport)
        proto.dataReceived(data)
        return proto, transport


def upgradeRequest(path: str, headers: dict[str, str] | None = None) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {PUBLIC}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def statusLine(transport: StringTransport) -> str:
    return transport.value().split(b"\r\n", 1)[0].decode()


# --- a tiny WebSocket client side ------------------------------------------------


def clientFrame(payload: bytes, opcode: int = 1) -> bytes:
    """
    One masked client → server frame (opcode 1 text, 2 binary, 8 close).
    """
    mask = b"\x11\x22\x33\x44"
    n = len(payload)
    if n < 126:
        header = bytes([0x80 | opcode, 0x80 | n])
    elif n < 65536:
        header = bytes([0x80 | opcode, 0x80 | 126]) + struct.pack("!H", n)
    else:
        header = bytes([0x80 | opcode, 0x80 | 127]) + struct.pack("!Q", n)
    data = np.frombuffer(payload, np.uint8)
    keys = np.resize(np.frombuffer(mask, np.uint8), n)
    return header + mask + (data ^ keys).tobytes()


def serverFrames(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """
    Parse unmasked server → client frames; returns them and what is left.
    """
    frames = []
    while len(data) >= 2:
        opcode, n = data[0] & 0x0F, data[1] & 0x7F
        offset = 2
        if n == 126:
            if len(data) < 4:
                break
            n, offset = struct.unpack("!H", data[2:4])[0], 4
        elif n == 127:
            if len(data) < 10:
                break
            n, offset = struct.unpack("!Q", data[2:10])[0], 10
        if len(data) < offset + n:
            break
        frames.append((opcode, data[offset : offset + n]))
        data = data[offset + n :]
    return frames, data


class StreamClient:
    """
    The provider's end of one media WebSocket, in memory: C{status} of the
    upgrade, server text messages decoded as JSON in C{messages}, binary
    ones in C{binary}, and the close frame's C{closeCode}/C{closeReason}.
    """

    def __init__(
        self,
        harness: Harness,
        path: str,
        headers: dict[str, str] | None = None,
        peer: str = "127.0.0.1",
    ):
        self.harness = harness
        _, transport = harness.raw(upgradeRequest(path, headers), peer)
        self.transport: Any = transport
        self.status = statusLine(self.transport)
        raw = self.transport.value()
        head, _, rest = raw.partition(b"\r\n\r\n")
        self.head = head
        self._pending = rest if self.status.startswith("HTTP/1.1 101") else b""
        self.transport.clear()
        self.messages: list[dict[str, Any]] = []
        self.binary: list[bytes] = []
        self.closeCode: int | None = None
        self.closeReason = ""
        self._read()

    @property
    def adapter(self) -> Any:
        return self.transport.protocol.adapter

    def _read(self) -> None:
        self._pending += self.transport.value()
        self.transport.clear()
        frames, self._pending = serverFrames(self._pending)
        for opcode, payload in frames:
            if opcode == 1:
                self.messages.append(json.loads(payload))
            elif opcode == 2:
                self.binary.append(payload)
            elif opcode == 8:
                self.closeCode = struct.unpack("!H", payload[:2])[0] if payload else None
                self.closeReason = payload[2:].decode()

    def send(self, message: dict[str, Any] | str | bytes, binary: bool = False) -> None:
        if isinstance(message, dict):
            message = json.dumps(message)
        if isinstance(message, str):
            message = message.encode()
        self.transport.protocol.dataReceived(clientFrame(message, 2 if binary else 1))
        self._read()

    def read(self) -> list[dict[str, Any]]:
        self._read()
        return self.messages

    def events(self, name: str) -> list[dict[str, Any]]:
        self._read()
        return [m for m in self.messages if m.get("event") == name]

    def disconnect(self) -> None:
        self.transport.protocol.connectionLost(Failure(ConnectionDone()))


# --- test doubles for provider media streams ------------------------------------


@implementer(IMediaChannel)
class FakeChannel:
    """
    An in-memory L{IMediaChannel}: what an adapter sent, and its closes.
    """

    peer = "test"

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.binary: list[bytes] = []
        self.closes: list[tuple[int, str]] = []

    def sendText(self, text: str) -> None:
        self.texts.append(text)

    def sendBinary(self, data: bytes) -> None:
        self.binary.append(data)

    def close(self, code: int, reason: str) -> None:
        self.closes.append((code, reason))

    def pauseReading(self) -> None:
        pass

    def resumeReading(self) -> None:
        pass

    def json(self) -> list[dict[str, Any]]:
        return [json.loads(text) for text in self.texts]


@implementer(IAssistantSession)
class SpeakerSession:
    """
    Says a 100 ms C{greeting} at once. DTMF: 0 clears, 1 says 3 s
    (C{long}), 5 says 100 ms more (C{more}), 8 sets a mark C{named},
    9 hangs up (C{goodbye}).
    """

    def __init__(self, control: ICallControl, sampleRate: int) -> None:
        self.control = control
        self.rate = sampleRate
        self.completed: list[str] = []
        self.digits: list[str] = []
        self.ended: list[str] = []
        self.frames = 0

    def say(self, responseId: str, seconds: float, freq: float = 300.0) -> None:
        self.control.play(responseId, tone(freq, seconds, self.rate))
        self.control.completeResponse(responseId)

    def audioReceived(self, pcm: bytes) -> None:
        self.frames += 1

    def dtmfReceived(self, digit: str) -> None:
        self.digits.append(digit)
        if digit == "0":
            self.control.clear()
        elif digit == "1":
            self.say("long", 3.0, 440.0)
        elif digit == "5":
            self.say("more", 0.1, 500.0)
        elif digit == "8":
            self.control.mark("named")
        elif digit == "9":
            self.control.hangup("goodbye")

    def playbackCompleted(self, responseId: str) -> None:
        self.completed.append(responseId)

    def callEnded(self, reason: str) -> None:
        self.ended.append(reason)


@implementer(IAssistant)
class Speaker:
    """
    The assistant of L{SpeakerSession}s; C{sessions} in order.
    """

    def __init__(self, id: str = "speaker", sampleRate: int = 16000) -> None:
        self.id = id
        self.sampleRate = sampleRate
        self.sessions: list[SpeakerSession] = []

    def startSession(self, details: Any, control: ICallControl) -> SpeakerSession:
        session = SpeakerSession(control, self.sampleRate)
        self.sessions.append(session)
        session.say("greeting", 0.1)
        return session
