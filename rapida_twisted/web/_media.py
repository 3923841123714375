# -*- test-case-name: tests.test_web -*-
"""
The media WebSocket: an Autobahn server protocol that the context route
hands an already-checked (and, where the provider says so, claimed) call
context, and that delegates every message to the provider's adapter.

Media streams carry about 50 small messages a second each way per call,
so once the stream is open the common case skips Autobahn's general
machinery (measured by C{benchmarks/profile_twilio.py} and
C{benchmarks/bench_twilio.py}):

  - in: whole, unfragmented, masked text or binary frames (text all
    ASCII) are parsed and unmasked here and handed to the adapter; any
    other frame (control frames, fragments, a frame split across reads,
    non-ASCII text that needs UTF-8 validation, oversized frames,
    protocol violations) and everything after it in the same read goes
    through Autobahn's own parser, which keeps its behaviour (close
    codes included);
  - out: a message becomes one pre-built frame, written straight to the
    socket when Twisted has nothing buffered for the connection (one
    C{send} instead of a buffered write's two C{epoll_ctl} and an extra
    reactor turn), through C{transport.write} otherwise and on any
    transport that is not plain TCP (TLS, tests);
  - C{TCP_NODELAY} is set, so a 20 ms frame never waits for the
    acknowledgement of the previous one.

Both paths keep Autobahn's traffic counters and auto-ping bookkeeping,
and step aside whenever an option they do not implement is on
(compression, frame or octet logging, timing tracking, masked server
frames, automatic fragmentation, observers of the C{message} event).
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.web import server
from zope.interface import implementer

from ..interfaces import IMediaChannel
from ..providers._base import BaseProvider, WebhookRequest
from ..store._model import CallContext

#: close codes (SPEC §4); 4501: the provider has no media adapter
CLOSE_MALFORMED = 4400
CLOSE_FORBIDDEN = 4403
CLOSE_UNKNOWN = 4404
CLOSE_CLAIMED = 4409
CLOSE_EXPIRED = 4410
CLOSE_NO_ADAPTER = 4501
#: Autobahn only sends 1000 or 3000-4999: our "internal error"
CLOSE_INTERNAL = 4500

#: a media message never needs more (chan_websocket frames are < 64 KiB)
MAX_MESSAGE = 128 * 1024

_OPEN = WebSocketProtocol.STATE_OPEN

#: the largest payload a pre-built outbound frame carries (16-bit length)
_FAST_OUT_MAX = 0xFFFF


def _limit(*sizes: int) -> int:
    """
    The smallest of the positive C{sizes} (0 means unlimited in Autobahn).
    """
    positive = [size for size in sizes if size > 0]
    return min(positive) if positive else 1 << 62


@implementer(IMediaChannel)
class MediaStreamProtocol(WebSocketServerProtocol):
    """
    One provider media stream. C{context}, C{provider}, C{gateway} and
    C{webhook} are set by L{_Handoff} before the handshake is processed.
    """

    _log = Logger()
    context: CallContext
    provider: BaseProvider
    gateway: Any
    webhook: WebhookRequest
    adapter: Any = None
    _closing = False
    #: the fast paths (see the module docstring), set up by L{onOpen}
    _fastIn = False
    _fastInMax = 0
    _fastOut = False
    _fastOutMax = 0
    _socket: Any = None

    def onConnect(self, request: Any) -> None:
        # accept with no subprotocol; extensions are never offered back
        return None

    def _setUpFastPaths(self) -> None:
        """
        Decide, once the stream is open, which fast paths its options allow.
        """
        # Autobahn's protocol options are attributes it sets at run time
        options: Any = self
        plain = (
            self._perMessageCompress is None
            and not options.logFrames
            and not options.logOctets
            and not self.trackedTimings
        )
        self._fastIn = plain and bool(options.applyMask) and self.websocket_version != 0
        self._fastInMax = _limit(options.maxFramePayloadSize, options.maxMessagePayloadSize)
        self._fastOut = plain and not options.maskServerFrames
        self._fastOutMax = min(
            _FAST_OUT_MAX, _limit(options.maxMessagePayloadSize, options.autoFragmentSize)
        )
        transport = self.transport
        # media is many small messages: never let Nagle hold one back
        # behind a delayed ACK (40 ms pairs)
        setNoDelay = getattr(transport, "setTcpNoDelay", None)
        if setNoDelay is not None:
            setNoDelay(True)
        # a plain TCP (or UNIX) transport of Twisted's: its socket, for
        # straight writes; never under TLS
        sock = getattr(transport, "socket", None)
        if (
            sock is not None
            and hasattr(transport, "_tempDataBuffer")
            and hasattr(transport, "dataBuffer")
            and not getattr(transport, "TLS", False)
        ):
            self._socket = sock

    def onOpen(self) -> None:
        self._setUpFastPaths()
        factory = self.provider.mediaAdapter()
        if factory is None:
            self._log.warn(
                "no media adapter for {provider}; closing stream of {context_id}",
                provider=self.provider.name,
                context_id=self.context.context_id,
            )
            self.close(CLOSE_NO_ADAPTER, f"no media adapter for provider {self.provider.name}")
            return
        try:
            self.adapter = factory(self, self.context, self.gateway, self.webhook)
            self.adapter.opened()
        except Exception:
            self._log.failure(
                "media adapter failed to open for {context_id}", context_id=self.context.context_id
            )
            self.close(CLOSE_INTERNAL, "internal error")

    def dataReceived(self, data: bytes) -> None:
        """
        Bytes from the connection: whole simple frames of an open stream
        are handled here, the rest by Autobahn. (Autobahn's own
        C{dataReceived} adds only a debug log line whose arguments it
        formats even when debug logging is off.)
        """
        if (
            self._fastIn
            and self.state == _OPEN
            and self.current_frame is None
            and not self.data
            and not self.inside_message
            and self._listeners is None
        ):
            self.trafficStats.incomingOctetsWireLevel += len(data)
            rest = self._fastMessages(data)
            if rest:
                # what Autobahn's _dataReceived does, minus counting again
                self.data += rest
                self.consumeData()
            return
        self._dataReceived(data)

    def _fastMessages(self, data: bytes) -> bytes:
        """
        Deliver the whole, unfragmented, masked data frames at the start
        of C{data} (text ones only when all ASCII, so that no UTF-8
        validation is needed); stop at anything else, or once the stream
        is no longer open.

        @return: what is left for Autobahn's parser.
        """
        end = len(data)
        pos = 0
        count = 0
        octets = 0
        limit = self._fastInMax
        fromBytes = int.from_bytes
        try:
            while end - pos >= 6:
                first = data[pos]
                if first == 0x81:
                    binary = False
                elif first == 0x82:
                    binary = True
                else:
                    break  # a fragment, a control frame, RSV bits...
                # the MASK bit must be set: otherwise size is 128 or more
                size = data[pos + 1] ^ 0x80
                if size < 126:
                    start = pos + 6
                elif size == 126 and end - pos >= 8:
                    size = (data[pos + 2] << 8) | data[pos + 3]
                    if size < 126:
                        break  # not the minimal encoding: Autobahn refuses it
                    start = pos + 8
                else:
                    break  # unmasked, 64-bit length, or header incomplete
                stop = start + size
                if stop > end or size > limit:
                    break
                if size:
                    key = data[start - 4 : start] * ((size >> 2) + 1)
                    payload = (
                        fromBytes(data[start:stop], "little") ^ fromBytes(key[:size], "little")
                    ).to_bytes(size, "little")
                    if not binary and not payload.isascii():
                        break
                else:
                    payload = b""
                pos = stop
                count += 1
                octets += size
                if self.autoPingTimeoutCall and self.autoPingRestartOnAnyTraffic:
                    self._cancelAutoPingTimeoutCall()
                self.onMessage(payload, binary)
                if self.state != _OPEN:
                    break
        finally:
            if count:
                stats = self.trafficStats
                stats.incomingOctetsWebSocketLevel += octets
                stats.incomingOctetsAppLevel += octets
                stats.incomingWebSocketFrames += count
                stats.incomingWebSocketMessages += count
        return data[pos:] if pos else data

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.adapter is None:
            return
        try:
            self.adapter.messageReceived(payload, isBinary)
        except Exception:
            self._log.failure(
                "media adapter failed on a message of {context_id}",
                context_id=self.context.context_id,
            )
            self.close(CLOSE_INTERNAL, "internal error")

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        adapter, self.adapter = self.adapter, None
        if adapter is not None:
            try:
                adapter.closed(code, reason or "")
            except Exception:
                self._log.failure(
                    "media adapter failed on close of {context_id}",
                    context_id=self.context.context_id,
                )

    # IMediaChannel

    def sendText(self, text: str) -> None:
        if not self._closing:
            self._sendMessage(text.encode("utf-8"), 0x81)

    def sendBinary(self, data: bytes) -> None:
        if not self._closing:
            self._sendMessage(data, 0x82)

    def _sendMessage(self, payload: bytes, first: int) -> None:
        """
        Send one unfragmented message (C{first}: the frame's first byte,
        0x81 text or 0x82 binary) as one pre-built frame when the fast
        path allows, else through Autobahn's C{sendMessage}.
        """
        size = len(payload)
        if not self._fastOut or size > self._fastOutMax or self.state != _OPEN or self.send_queue:
            self.sendMessage(bytes(payload), isBinary=first == 0x82)
            return
        if size < 126:
            frame = bytes((first, size)) + payload
            header = 2
        else:
            frame = bytes((first, 126, size >> 8, size & 0xFF)) + payload
            header = 4
        stats = self.trafficStats
        stats.outgoingWebSocketMessages += 1
        stats.outgoingOctetsAppLevel += size
        stats.outgoingOctetsWebSocketLevel += size
        stats.outgoingWebSocketFrames += 1
        stats.outgoingOctetsWireLevel += size + header
        self._write(frame)

    def _write(self, data: bytes) -> None:
        """
        Write C{data} straight to the socket when Twisted has nothing
        buffered for this connection; what the socket does not take (and
        everything on other transports) goes through C{transport.write}.
        """
        transport: Any = self.transport
        sock = self._socket
        if (
            sock is not None
            and transport.connected
            and not transport.disconnecting
            and not transport.dataBuffer
            and not transport._tempDataBuffer
        ):
            try:
                sent = sock.send(data)
            except OSError:
                # would block, or failed: Twisted meets the error on its
                # own write and closes the connection
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        transport.write(data)

    def close(self, code: int, reason: str) -> None:
        if self._closing:
            return
        self._closing = True
        # a close frame's reason is at most 123 bytes of UTF-8
        data = reason.encode("utf-8")[:123]
        self.sendClose(code, data.decode("utf-8", "ignore"))

    def pauseReading(self) -> None:
        if self.transport is not None:
            self.transport.pauseProducing()  # type: ignore[attr-defined]

    def resumeReading(self) -> None:
        if self.transport is not None:
            self.transport.resumeProducing()  # type: ignore[attr-defined]


class _Timer:
    """
    One of Autobahn's protocol timers: cancelling it twice, or after it
    ran, does nothing (as with txaio's batched calls).
    """

    __slots__ = ("_call",)

    def __init__(self, call: IDelayedCall) -> None:
        self._call = call

    def cancel(self) -> None:
        if self._call.active():
            self._call.cancel()


class _Timers:
    """
    Autobahn's timer interface (C{call_later}) as one timer each on the
    gateway's reactor.

    txaio's batched timer, which Autobahn uses by default, runs on the
    global reactor whatever C{reactor=} says, and rounds every deadline
    down to a whole second: the auto-pings of every stream opened within
    the same second all go out in one burst 20 s later (a 20-25 ms stall
    of the reactor, measured at 500 calls, every time). One timer each
    keeps every stream's pings at its own phase.
    """

    def __init__(self, reactor: IReactorTime) -> None:
        self._reactor = reactor

    def call_later(self, delay: float, func: Any, *args: Any, **kwargs: Any) -> _Timer:
        return _Timer(self._reactor.callLater(delay, func, *args, **kwargs))


def mediaFactory(reactor: IReactorTime) -> WebSocketServerFactory:
    """
    The WebSocket factory for every provider media stream.
    """
    factory = WebSocketServerFactory(reactor=reactor)
    # Autobahn's auto-ping and handshake timers: on our reactor (time
    # stays a parameter; tests pass a Clock), one timer each
    factory._batched_timer = _Timers(reactor)
    factory.protocol = MediaStreamProtocol
    factory.setProtocolOptions(
        maxMessagePayloadSize=MAX_MESSAGE,
        maxFramePayloadSize=MAX_MESSAGE,
        autoPingInterval=20,
        autoPingTimeout=20,
        openHandshakeTimeout=10,
        closeHandshakeTimeout=2,
        # Asterisk refuses extensions in the handshake: never accept one
        perMessageCompressionAccept=lambda offers: None,
    )
    return factory


class _Handoff:
    """
    Looks like a factory to L{WebSocketResource} for exactly one upgrade,
    attaching the checked context to the protocol it builds.
    """

    def __init__(
        self,
        factory: WebSocketServerFactory,
        context: CallContext,
        provider: BaseProvider,
        gateway: Any,
        webhook: WebhookRequest,
    ):
        self._factory = factory
        self._attach = dict(context=context, provider=provider, gateway=gateway, webhook=webhook)

    def buildProtocol(self, addr: Any) -> MediaStreamProtocol:
        proto = self._factory.buildProtocol(addr)
        assert isinstance(proto, MediaStreamProtocol)
        for name, value in self._attach.items():
            setattr(proto, name, value)
        return proto


def upgrade(
    request: server.Request,
    factory: WebSocketServerFactory,
    context: CallContext,
    provider: BaseProvider,
    gateway: Any,
    webhook: WebhookRequest,
) -> None:
    """
    Hand the request's connection to a L{MediaStreamProtocol} for
    C{context}.
    """
    WebSocketResource(_Handoff(factory, context, provider, gateway, webhook)).render(request)
