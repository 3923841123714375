# -*- test-case-name: tests.test_sim -*-
"""
The simulator's network edge: webhooks through treq, media connections
through Autobahn (WebSocket providers, chan_websocket) or plain TCP
(AudioSocket), each handing its connection to a L{MediaStream}.

Everything takes the reactor as a parameter; tests replace the HTTP
client (C{treq.testing.StubTreq}) and the L{Connector}.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, cast
from typing import Protocol as TypingProtocol
from urllib.parse import urlsplit

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.util import parse_url
from treq.client import HTTPClient
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.ssl import optionsForClientTLS
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool

from ._base import HandshakeError, MediaStream, WebhookError
from ._ticker import Ticker

__all__ = ["Connector", "Environment", "NetworkConnector", "webhook"]

#: The largest webhook answer read (TwiML, NCCO, JSON, a context id).
MAX_ANSWER = 64 * 1024


class Connector(TypingProtocol):
    """
    Opens a media connection and hands it to a stream.
    """

    def webSocket(
        self, url: str, headers: Mapping[str, str], stream: MediaStream, timeout: float
    ) -> Deferred[None]:
        """
        Connect a WebSocket to C{url}; fires once open (the stream has
        been told), fails with L{HandshakeError}.
        """

    def tcp(self, host: str, port: int, stream: MediaStream, timeout: float) -> Deferred[None]:
        """
        Connect TCP to C{host:port}; fires once connected, fails with
        L{HandshakeError}.
        """


#: First byte of a final, unfragmented text / binary frame.
_TEXT = 0x81
_BINARY = 0x82
#: Our masking key (see L{clientFrame}).
_MASK = b"\x00\x00\x00\x00"


def clientFrame(first: int, payload: bytes) -> bytes:
    """
    One complete client-to-server WebSocket frame (RFC 6455 §5.2).

    The masking key is all zeros, so the masked payload is the payload
    itself and a frame costs one concatenation instead of a per-byte XOR
    with a fresh random key. Any server unmasks it like any other key;
    what RFC 6455 §5.3 guards against with unpredictable keys (a hostile
    script poisoning a proxy's cache) does not arise for a simulator
    talking to its operator's own gateway.

    @param first: the first byte: FIN and the opcode (0x81 text, 0x82
        binary).
    """
    size = len(payload)
    if size < 126:
        header = bytes((first, 0x80 | size))
    elif size < 0x10000:
        header = bytes((first, 0xFE, size >> 8, size & 0xFF))
    else:
        header = bytes((first, 0xFF)) + size.to_bytes(8, "big")
    return header + _MASK + payload


def writeNow(transport: Any, data: bytes) -> None:
    """
    Write C{data} to a TCP transport, straight to its socket when Twisted
    has nothing buffered for it (saving the two C{epoll_ctl} calls and the
    extra reactor turn of a buffered write); through C{transport.write}
    otherwise, and on any transport that is not plain TCP (TLS, tests).
    """
    try:
        direct = (
            transport.connected
            and not transport.disconnecting
            and not transport.dataBuffer
            and not transport._tempDataBuffer
        )
        sock = transport.socket
    except AttributeError:  # not a plain TCP transport
        direct = False
    if direct:
        try:
            sent = sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            sent = 0  # let Twisted meet the error and close the connection
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)


class _StreamClientProtocol(WebSocketClientProtocol):
    """
    An Autobahn client connection feeding one L{MediaStream}; also the
    stream's L{Channel}.
    """

    stream: MediaStream
    ready: Deferred[None]
    _open = False
    _closing = False

    def onOpen(self) -> None:
        self._open = True
        self.ready.callback(None)
        self.stream.opened(self)

    # The two overrides below keep Autobahn's framing and checks but drop
    # per-message work the simulator does not use (eagerly formatted debug
    # arguments, the "message" observer and its futures): at 25,000
    # messages a second they cost more than the rest of a call.

    def dataReceived(self, data: bytes) -> None:
        self._dataReceived(data)

    def onMessageEnd(self) -> None:
        if not self.failedByMe:
            self.stream.messageReceived(b"".join(self.message_data), self.message_is_binary)
        self.message_data = None  # type: ignore[assignment]  # as Autobahn does

    _refused: str | None = None

    def failHandshake(self, reason: str) -> None:
        # keep Autobahn's reason (it names the HTTP status) and the
        # gateway's JSON error, if its body came in the same read
        _, _, body = bytes(getattr(self, "data", b"")).partition(b"\r\n\r\n")
        self._refused = reason + _errorDetail(body)
        super().failHandshake(reason)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not self._open:
            why = self._refused or reason or "connection closed"
            if not self.ready.called:
                self.ready.errback(Failure(HandshakeError(f"media upgrade failed: {why}")))
            return
        self.stream.closed(code, reason or "")

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        # Autobahn leaves its closing-handshake timer pending when the peer
        # drops the connection instead of answering our close
        call, self.closeHandshakeTimeoutCall = self.closeHandshakeTimeoutCall, None
        if call is not None:
            call.cancel()

    # Channel: media messages skip Autobahn's per-message machinery (see
    # clientFrame); control (close) still goes through Autobahn.

    def sendText(self, text: str) -> None:
        if not self._closing:
            writeNow(self.transport, clientFrame(_TEXT, text.encode("utf-8")))

    def sendBinary(self, data: bytes) -> None:
        if not self._closing:
            writeNow(self.transport, clientFrame(_BINARY, data))

    def close(self, code: int = 1000, reason: str = "") -> None:
        if not self._closing:
            self._closing = True
            self.sendClose(code, reason or None)


class _Timeout:
    """
    A pending timer Autobahn may cancel after it fired (a no-op then).
    """

    def __init__(self, call: IDelayedCall) -> None:
        self._call = call

    def cancel(self) -> None:
        if self._call.active():
            self._call.cancel()


class _ReactorTimer:
    """
    Autobahn's timer interface (C{call_later}) on the given reactor.

    Autobahn's own batched timer runs on txaio's global reactor and keeps
    its bucket timer pending after every entry is cancelled; this one uses
    the reactor the simulator was given and leaves nothing behind.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock

    def call_later(self, delay: float, func: Any, *args: Any, **kwargs: Any) -> _Timeout:
        return _Timeout(self._clock.callLater(delay, func, *args, **kwargs))


class _StreamClientFactory(WebSocketClientFactory):
    """
    Builds the one L{_StreamClientProtocol} of a media connection.
    """

    protocol = _StreamClientProtocol

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str],
        reactor: Any,
        stream: MediaStream,
        ready: Deferred[None],
    ) -> None:
        super().__init__(url, headers=dict(headers), reactor=reactor)
        self._batched_timer = _ReactorTimer(reactor)
        self.stream = stream
        self.ready = ready

    def buildProtocol(self, addr: Any) -> _StreamClientProtocol:
        proto = cast(_StreamClientProtocol, super().buildProtocol(addr))
        proto.stream = self.stream
        proto.ready = self.ready
        return proto


class _AudioSocketProtocol(Protocol):
    """
    A TCP connection to the AudioSocket listener feeding one
    L{MediaStream}; also its L{Channel} (binary writes go straight out).
    """

    def __init__(self, stream: MediaStream) -> None:
        self.stream = stream
        self._closing = False

    def connectionMade(self) -> None:
        assert self.transport is not None
        setNoDelay = getattr(self.transport, "setTcpNoDelay", None)
        if setNoDelay is not None:
            setNoDelay(True)  # as Asterisk does
        self.stream.opened(self)

    def dataReceived(self, data: bytes) -> None:
        self.stream.messageReceived(data, True)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.stream.closed(None, reason.getErrorMessage())

    def sendText(self, text: str) -> None:
        raise TypeError("AudioSocket carries no text messages")

    def sendBinary(self, data: bytes) -> None:
        if not self._closing and self.transport is not None:
            writeNow(self.transport, data)

    def close(self, code: int = 1000, reason: str = "") -> None:
        if not self._closing and self.transport is not None:
            self._closing = True
            self.transport.loseConnection()


class NetworkConnector:
    """
    The real L{Connector}: Autobahn over TCP (TLS for C{wss://}) and raw TCP.
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor

    def _endpoint(self, secure: bool, host: str, port: int, timeout: float) -> Any:
        endpoint: Any = HostnameEndpoint(self.reactor, host, port, timeout=timeout)
        if secure:
            endpoint = wrapClientTLS(optionsForClientTLS(host), endpoint)
        return endpoint

    def webSocket(
        self, url: str, headers: Mapping[str, str], stream: MediaStream, timeout: float
    ) -> Deferred[None]:
        try:
            secure, host, port, _, _, _ = parse_url(url)
        except Exception as e:  # autobahn raises plain Exception on bad URLs
            return defer.fail(HandshakeError(f"bad media URL {url!r}: {e}"))
        ready: Deferred[None] = Deferred()
        factory = _StreamClientFactory(url, headers, self.reactor, stream, ready)
        factory.setProtocolOptions(
            openHandshakeTimeout=timeout,
            closeHandshakeTimeout=2,
            perMessageCompressionOffers=[],  # Asterisk refuses extensions
            autoPingInterval=0,
            # the codecs' decoders refuse bad UTF-8 themselves
            utf8validateIncoming=False,
        )
        connecting = self._endpoint(secure, host, port, timeout).connect(factory)

        def refused(failure: Failure) -> None:
            if not ready.called:
                ready.errback(
                    Failure(HandshakeError(f"cannot connect to {url}: {failure.getErrorMessage()}"))
                )

        connecting.addErrback(refused)
        return ready

    def tcp(self, host: str, port: int, stream: MediaStream, timeout: float) -> Deferred[None]:
        factory = Factory.forProtocol(lambda: _AudioSocketProtocol(stream))
        connecting = self._endpoint(False, host, port, timeout).connect(factory)

        def failed(failure: Failure) -> None:
            raise HandshakeError(
                f"cannot connect to {host}:{port}: {failure.getErrorMessage()}"
            ) from None

        return connecting.addCallbacks(lambda _: None, failed)


class Environment:
    """
    What simulated calls share: the reactor, the HTTP client for webhooks,
    the ticker and the connector.
    """

    def __init__(
        self,
        reactor: Any,
        http: HTTPClient | Any | None = None,
        ticker: Ticker | None = None,
        connector: Connector | None = None,
    ) -> None:
        self.reactor = reactor
        self.clock: IReactorTime = reactor
        if http is None:
            pool = HTTPConnectionPool(reactor, persistent=True)
            pool.maxPersistentPerHost = 16
            http = HTTPClient(Agent(reactor, pool=pool))
        self.http = http
        self.ticker = ticker if ticker is not None else Ticker(reactor)
        self.connector: Connector = (
            connector if connector is not None else NetworkConnector(reactor)
        )


async def webhook(
    env: Environment,
    method: str,
    url: str,
    timeout: float,
    form: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[str, bytes]:
    """
    Call a gateway webhook; return the answer's content type and body.

    @raise WebhookError: no answer within C{timeout}, or a status other
        than 200 (the reason names the gateway's JSON error code).
    """
    try:
        response = await env.http.request(
            method,
            url,
            data=dict(form) if form is not None and method == "POST" else None,
            headers=_headers(headers),
            timeout=timeout,
        )
        body = await response.content()
    except defer.CancelledError:
        raise WebhookError(f"webhook {url} timed out after {timeout} s") from None
    except Exception as e:
        raise WebhookError(f"webhook {url} failed: {e}") from None
    if response.code != 200:
        raise WebhookError(f"webhook answered {response.code}{_errorDetail(body)}")
    contentType = (response.headers.getRawHeaders(b"content-type") or [b""])[0]
    if len(body) > MAX_ANSWER:
        raise WebhookError(f"webhook answer of {len(body)} bytes is too large")
    return contentType.decode("latin-1"), body


def _headers(headers: Mapping[str, str] | None) -> dict[bytes | str, list[bytes | str]]:
    return {k: [v] for k, v in (headers or {}).items()}


def _errorDetail(body: bytes) -> str:
    """
    The gateway's C{{"error": {"code", "message"}}} as C{" code: message"}.
    """
    try:
        error = json.loads(body)["error"]
        return f" {error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return ""


def wsURL(gateway: str, path: str) -> str:
    """
    The WebSocket URL of C{path} on the gateway (C{http} → C{ws},
    C{https} → C{wss}).
    """
    parts = urlsplit(gateway)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}{path}"
