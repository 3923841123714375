"""
Correctness of the media WebSocket's fast paths (not their speed):
whatever bytes arrive, in whatever pieces, L{MediaStreamProtocol} with its
fast paths delivers the same messages, writes the same bytes and closes
the same way as Autobahn's own parser and sender; straight socket writes
fall back to the transport whenever they must. Also the Twilio codec's
media fast path and the adapter's cached media text.
"""

from __future__ import annotations

import base64
import json
import os
import struct
from types import SimpleNamespace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from rapida_twisted.providers._json import ProtocolError, decodeEvent
from rapida_twisted.providers.twilio import _codec
from rapida_twisted.providers.twilio._codec import Media, encodeInboundMedia, encodeMedia
from rapida_twisted.web._media import MAX_MESSAGE, MediaStreamProtocol, mediaFactory

from ._web import serverFrames, upgradeRequest

# --- a provider whose adapter records what the socket delivers ---------------------


class Recorder:
    """
    An adapter that records messages and closes; a message C{b"CLOSE"}
    makes it close the stream, C{b"BOOM"} makes it raise.
    """

    def __init__(self, channel: Any, context: Any, gateway: Any, request: Any) -> None:
        self.channel = channel
        self.messages: list[tuple[bytes, bool]] = []
        self.closes: list[tuple[int | None, str]] = []

    def opened(self) -> None:
        pass

    def messageReceived(self, payload: bytes, isBinary: bool) -> None:
        self.messages.append((payload, isBinary))
        if payload == b"CLOSE":
            self.channel.close(4400, "asked to")
        elif payload == b"BOOM":
            raise RuntimeError("boom")

    def closed(self, code: int | None, reason: str) -> None:
        self.closes.append((code, reason))


class Transport(StringTransport):
    """
    A string transport that, like TCP's, lets Autobahn unregister a
    producer it never registered when it drops the connection.
    """

    def unregisterProducer(self) -> None:
        self.producer = None


class FakeSocket:
    """
    A socket's C{send}: takes at most C{accept} bytes (all if None), or
    raises C{error}.
    """

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.accept: int | None = None
        self.error: Exception | None = None

    def send(self, data: bytes) -> int:
        if self.error is not None:
            raise self.error
        n = len(data) if self.accept is None else min(self.accept, len(data))
        self.sent.append(bytes(data[:n]))
        return n


class SocketTransport(Transport):
    """
    Looks like Twisted's TCP transport to the straight-write path: a
    socket, its two buffers, C{connected}, C{TLS}, C{setTcpNoDelay}.
    """

    TLS = False
    connected = True

    def __init__(self) -> None:
        super().__init__()
        self.socket = FakeSocket()
        self.dataBuffer = b""
        self._tempDataBuffer: list[bytes] = []
        self.noDelay: bool | None = None

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.noDelay = enabled


def openStream(
    transport: StringTransport | None = None, fast: bool = True, clock: Clock | None = None
) -> tuple[MediaStreamProtocol, StringTransport, Recorder]:
    """
    A media protocol after its handshake, on C{transport}; C{fast=False}
    turns both fast paths off (plain Autobahn).
    """
    clock = clock if clock is not None else Clock()
    factory = mediaFactory(clock)
    proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    assert isinstance(proto, MediaStreamProtocol)
    recorders: list[Recorder] = []

    def adapter(*args: Any) -> Recorder:
        recorders.append(Recorder(*args))
        return recorders[-1]

    proto.context = SimpleNamespace(context_id="ctx")  # type: ignore[assignment]
    proto.provider = SimpleNamespace(name="test", mediaAdapter=lambda: adapter)  # type: ignore[assignment]
    proto.gateway = None
    proto.webhook = None  # type: ignore[assignment]
    transport = transport if transport is not None else Transport()
    proto.makeConnection(transport)
    proto.dataReceived(upgradeRequest("/ws"))
    head = transport.value()
    assert head.startswith(b"HTTP/1.1 101"), head[:200]
    transport.clear()
    if not fast:
        proto._fastIn = proto._fastOut = False
    return proto, transport, recorders[0]


def frame(
    payload: bytes, opcode: int = 1, fin: bool = True, masked: bool = True, wide: bool = False
) -> bytes:
    """
    One client frame (C{wide}: a 16-bit length even when not needed, which
    RFC 6455 forbids).
    """
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    bit = 0x80 if masked else 0
    if n < 126 and not wide:
        header = bytes((first, bit | n))
    elif n < 65536:
        header = bytes((first, bit | 126)) + struct.pack("!H", n)
    else:
        header = bytes((first, bit | 127)) + struct.pack("!Q", n)
    if not masked:
        return header + payload
    mask = os.urandom(4)
    key = (mask * (n // 4 + 1))[:n]
    body = bytes(a ^ b for a, b in zip(payload, key, strict=True))
    return header + mask + body


# the kinds of frames a stream may see
_ASCII = st.binary(max_size=300).map(lambda b: bytes(c & 0x7F for c in b))
_SIZES = st.sampled_from([0, 1, 125, 126, 127, 200, 65535, 65536, MAX_MESSAGE + 1])
_FRAMES = st.one_of(
    _ASCII.map(lambda p: frame(p)),
    _SIZES.map(lambda n: frame(b"a" * n)),
    st.binary(max_size=300).map(lambda p: frame(p, opcode=2)),
    st.just(frame("héllo ☎".encode())),
    st.just(frame(b"\xff\xfe bad utf-8")),
    st.just(frame(b"\xe2\x98")),  # a code point cut short
    st.just(frame(b"ping", opcode=9)),
    st.just(frame(b"pong", opcode=10)),
    st.just(frame(b"abc", wide=True)),
    st.just(frame(b"unmasked", masked=False)),
    st.just(frame(b"part one ", fin=False) + frame(b"part two", opcode=0)),
    st.just(frame(b"frag ", fin=False) + frame(b"ping", opcode=9) + frame(b"end", opcode=0)),
    st.just(frame(b"CLOSE")),
    st.just(frame(b"BOOM")),
    st.just(frame(b"\x00\x01", opcode=8)),
    st.just(frame(b"x", opcode=3)),
    st.just(bytes((0xC1, 0x83)) + b"\x00\x00\x00\x00abc"),  # RSV1 without an extension
)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces = []
    last = 0
    for p in points:
        pieces.append(data[last:p])
        last = p
    pieces.append(data[last:])
    return [p for p in pieces if p]


def _stats(proto: MediaStreamProtocol) -> dict[str, int]:
    s = proto.trafficStats
    names = [n for n in vars(s) if n.startswith(("incoming", "outgoing")) and "Level" in n]
    names += ["incomingWebSocketFrames", "incomingWebSocketMessages"]
    names += ["outgoingWebSocketFrames", "outgoingWebSocketMessages"]
    return {n: getattr(s, n) for n in names}


class InboundDifferentialTests(SynchronousTestCase):
    """
    The fast parser against Autobahn's, byte for byte.
    """

    def assertSameOutcome(self, pieces: list[bytes]) -> Recorder:
        fast, fastT, fastR = openStream()
        slow, slowT, slowR = openStream(fast=False)
        for piece in pieces:
            fast.dataReceived(piece)
            slow.dataReceived(piece)
        self.assertEqual(fastR.messages, slowR.messages)
        self.assertEqual(fastT.value(), slowT.value())
        self.assertEqual(fast.state, slow.state)
        self.assertEqual(fastT.disconnecting, slowT.disconnecting)
        self.assertEqual(_stats(fast), _stats(slow))
        self.flushLoggedErrors(RuntimeError)
        return fastR

    @settings(max_examples=150, deadline=None)
    @given(frames=st.lists(_FRAMES, min_size=1, max_size=8), cuts=st.lists(st.integers(0, 1 << 20)))
    def test_anyFramesAnyPieces(self, frames: list[bytes], cuts: list[int]) -> None:
        self.assertSameOutcome(_split(b"".join(frames), cuts))

    def test_manyInOneRead(self) -> None:
        data = b"".join(frame(b'{"n":%d}' % i) for i in range(20)) + frame(b"\x01\x02", opcode=2)
        recorder = self.assertSameOutcome([data])
        self.assertEqual(len(recorder.messages), 21)
        self.assertEqual(recorder.messages[-1], (b"\x01\x02", True))

    def test_everySplitPoint(self) -> None:
        """
        A frame with a 16-bit length cut at every byte, next to a small
        one.
        """
        data = frame(b"x" * 300) + frame(b"tail")
        for cut in range(1, len(data)):
            recorder = self.assertSameOutcome([data[:cut], data[cut:]])
            self.assertEqual([m for m, _ in recorder.messages], [b"x" * 300, b"tail"])

    def test_invalidUtf8FailsTheConnection(self) -> None:
        """
        Autobahn's UTF-8 check still applies: the stream is dropped at the
        bad message and nothing after it is delivered.
        """
        fast, transport, recorder = openStream()
        fast.dataReceived(frame(b"ok") + frame(b"\xc3\x28") + frame(b"never"))
        self.assertEqual(recorder.messages, [(b"ok", False)])
        self.assertTrue(transport.disconnecting)
        self.assertTrue(fast.failedByMe)

    def test_messageObserversGetAutobahnsPath(self) -> None:
        """
        Observers of Autobahn's C{message} event still see every message.
        """
        proto, _, recorder = openStream()
        seen: list[bytes] = []
        proto.on("message", lambda payload, is_binary: seen.append(payload))
        proto.dataReceived(frame(b"one") + frame(b"two"))
        self.assertEqual(seen, [b"one", b"two"])
        self.assertEqual([m for m, _ in recorder.messages], [b"one", b"two"])

    def test_autoPingTimeoutCancelledByData(self) -> None:
        proto: Any
        proto, _, _ = openStream()
        cancelled: list[bool] = []
        proto.autoPingTimeoutCall = SimpleNamespace(cancel=lambda: cancelled.append(True))
        proto.dataReceived(frame(b"hello"))
        self.assertEqual(cancelled, [True])
        self.assertIsNone(proto.autoPingTimeoutCall)

    def test_optionsTurnItOff(self) -> None:
        proto: Any
        proto, _, _ = openStream()
        self.assertTrue(proto._fastIn and proto._fastOut)
        proto.logFrames = True
        proto._setUpFastPaths()
        self.assertFalse(proto._fastIn or proto._fastOut)


class OutboundTests(SynchronousTestCase):
    """
    Pre-built frames against Autobahn's, and the straight socket writes.
    """

    def test_sameFramesAsAutobahn(self) -> None:
        for size in (0, 1, 125, 126, 65535, 65536, 100_000):
            fast, fastT, _ = openStream()
            slow, slowT, _ = openStream(fast=False)
            text = "y" * size
            fast.sendText(text)
            slow.sendText(text)
            fast.sendBinary(b"\x00" * size)
            slow.sendBinary(b"\x00" * size)
            self.assertEqual(fastT.value(), slowT.value(), size)
            self.assertEqual(_stats(fast), _stats(slow), size)

    def test_nothingAfterClose(self) -> None:
        proto, transport, _ = openStream()
        proto.close(1000, "bye")
        transport.clear()
        proto.sendText("late")
        proto.sendBinary(b"late")
        self.assertEqual(transport.value(), b"")

    def test_straightToTheSocket(self) -> None:
        transport = SocketTransport()
        proto, _, _ = openStream(transport)
        self.assertTrue(transport.noDelay)
        proto.sendText('{"event":"media"}')
        self.assertEqual(transport.socket.sent, [b"\x81\x11" + b'{"event":"media"}'])
        self.assertEqual(transport.value(), b"")

    def test_partialSendBuffersTheRest(self) -> None:
        transport = SocketTransport()
        proto, _, _ = openStream(transport)
        transport.socket.accept = 3
        proto.sendBinary(b"abcdef")
        self.assertEqual(transport.socket.sent, [b"\x82\x06a"])
        self.assertEqual(transport.value(), b"bcdef")

    def test_wouldBlockOrErrorUsesTheTransport(self) -> None:
        for error in (BlockingIOError(), InterruptedError(), ConnectionResetError()):
            transport = SocketTransport()
            proto, _, _ = openStream(transport)
            transport.socket.error = error
            proto.sendBinary(b"abc")
            self.assertEqual(transport.value(), b"\x82\x03abc")

    def test_bufferedDataKeepsOrder(self) -> None:
        """
        While Twisted holds data for the connection, writes queue behind it.
        """
        for attribute, value in (("_tempDataBuffer", [b"queued"]), ("dataBuffer", b"queued")):
            transport = SocketTransport()
            proto, _, _ = openStream(transport)
            setattr(transport, attribute, value)
            proto.sendBinary(b"abc")
            self.assertEqual(transport.socket.sent, [])
            self.assertEqual(transport.value(), b"\x82\x03abc")

    def test_notWhileDisconnecting(self) -> None:
        transport = SocketTransport()
        proto, _, _ = openStream(transport)
        transport.disconnecting = True
        proto._write(b"xyz")
        self.assertEqual(transport.socket.sent, [])
        self.assertEqual(transport.value(), b"xyz")

    def test_neverUnderTLS(self) -> None:
        transport = SocketTransport()
        transport.TLS = True
        proto, _, _ = openStream(transport)
        proto.sendBinary(b"abc")
        self.assertEqual(transport.socket.sent, [])
        self.assertEqual(transport.value(), b"\x82\x03abc")

    def test_plainTransportsHaveNoSocket(self) -> None:
        proto, transport, _ = openStream()
        self.assertIsNone(proto._socket)
        proto.sendText("a")
        self.assertEqual(transport.value(), b"\x81\x01a")


class TimerTests(SynchronousTestCase):
    """
    Autobahn's timers run one each on the given reactor.
    """

    def test_autoPingsAtEachStreamsOwnTime(self) -> None:
        """
        Streams opened 300 ms apart ping 20 s after their own opening, not
        together at a whole second.
        """
        clock = Clock()
        clock.advance(1000.0)
        first = openStream(clock=clock)[1]
        clock.advance(0.3)
        second = openStream(clock=clock)[1]
        clock.advance(19.7 - 0.001)
        self.assertEqual(first.value(), b"")
        clock.advance(0.002)
        self.assertEqual(serverFrames(first.value())[0][0][0], 9)
        self.assertEqual(second.value(), b"")
        clock.advance(0.3)
        self.assertEqual(serverFrames(second.value())[0][0][0], 9)

    def test_cancelTwiceOrAfterRunning(self) -> None:
        clock = Clock()
        timers = mediaFactory(clock)._batched_timer
        ran: list[int] = []
        timer = timers.call_later(1.0, ran.append, 1)
        timer.cancel()
        timer.cancel()
        later = timers.call_later(1.0, ran.append, 2)
        clock.advance(1.0)
        later.cancel()
        self.assertEqual(ran, [2])
        self.assertEqual(clock.getDelayedCalls(), [])


# --- the Twilio codec's media fast path --------------------------------------------

_TOKEN = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", max_size=40)


def _general(text: bytes) -> object:
    try:
        return decodeEvent(text, _codec.MAX_MESSAGE_SIZE, _codec._DECODERS)
    except ProtocolError as e:
        return ("error", e.code, e.reason)


def _fast(text: str | bytes) -> object:
    try:
        return _codec.decode(text)
    except ProtocolError as e:
        return ("error", e.code, e.reason)


class TwilioMediaFastPathTests(SynchronousTestCase):
    """
    C{decode} of media messages as Twilio (or the simulator) lays them out
    gives exactly what the JSON parser gives, and everything else still
    goes to the parser.
    """

    def test_bothLayoutsTakeTheFastPath(self) -> None:
        sim = encodeInboundMedia("MZ1", b"\x01\x02\x03", 12, 11, 220).encode()
        twilio = (
            b'{"event":"media","sequenceNumber":"3","media":{"track":"inbound","chunk":"1",'
            b'"timestamp":"5","payload":"AQID"},"streamSid":"MZ18ad"}'
        )
        for text in (sim, twilio):
            self.assertTrue(any(layout.fullmatch(text) for layout in _codec._MEDIA_LAYOUTS))
            self.assertEqual(_fast(text), _general(text))
        self.assertEqual(_codec.decode(sim), Media(b"\x01\x02\x03", 11, 220, "inbound"))

    @settings(max_examples=200, deadline=None)
    @given(
        payload=st.one_of(
            st.binary(max_size=200).map(lambda b: base64.b64encode(b).decode()),
            st.text("ABCabc012+/=", max_size=12),
        ),
        sid=_TOKEN,
        track=st.sampled_from(["inbound", "outbound", "inbound_track", "x", ""]),
        chunk=st.one_of(st.integers(0, 10**16).map(str), st.sampled_from(["007", "", "-1", "1e3"])),
        twilioOrder=st.booleans(),
        tweak=st.sampled_from(["", "space", "escape", "extra", "number", "event"]),
    )
    def test_sameAsTheParser(
        self, payload: str, sid: str, track: str, chunk: str, twilioOrder: bool, tweak: str
    ) -> None:
        media = {"track": track, "chunk": chunk, "timestamp": "40", "payload": payload}
        if tweak == "number" and chunk.isdigit():
            media["chunk"] = int(chunk)  # type: ignore[assignment]
        if tweak == "escape":
            media["track"] = track + "é"
        doc: dict[str, Any] = {"event": "media", "sequenceNumber": "2"}
        if twilioOrder:
            doc["media"] = media
            doc["streamSid"] = sid
        else:
            doc["streamSid"] = sid
            doc["media"] = media
        if tweak == "extra":
            doc["extra"] = 1
        if tweak == "event":
            doc["event"] = "mark"
        separators = (", ", ": ") if tweak == "space" else (",", ":")
        text = json.dumps(doc, separators=separators).encode()
        self.assertEqual(_fast(text), _general(text))
        self.assertEqual(_fast(text), _fast(text.decode()))  # str always takes the parser

    def test_oversizedIsRefused(self) -> None:
        text = encodeInboundMedia("MZ1", b"\x00" * 60_000, 1, 1, 0).encode()
        self.assertEqual(_fast(text)[:2], ("error", "too_large"))  # type: ignore[index]


class TwilioSendAudioTests(SynchronousTestCase):
    """
    The adapter's cached media head gives C{encodeMedia}'s text.
    """

    def test_sameAsEncodeMedia(self) -> None:
        from rapida_twisted.providers.twilio._media import TwilioMediaAdapter

        sent: list[str] = []
        adapter = TwilioMediaAdapter.__new__(TwilioMediaAdapter)
        adapter._channel = SimpleNamespace(sendText=sent.append)  # type: ignore[assignment]
        adapter._mediaSid = None
        adapter._mediaHead = ""
        for sid in ("MZ1", "MZ1", 'odd "sid" é', "MZ2"):
            adapter.streamSid = sid
            adapter.sendAudio(b"\xff" * 160)
            self.assertEqual(sent[-1], encodeMedia(sid, b"\xff" * 160))
