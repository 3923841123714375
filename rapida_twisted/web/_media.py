# -*- test-case-name: tests.test_web -*-
"""
The media WebSocket: an Autobahn server protocol that the context route
hands an already-checked (and, where the provider says so, claimed) call
context, and that delegates every message to the provider's adapter.
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web import server
from txaio._common import _BatchedTimer
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

    def onConnect(self, request: Any) -> None:
        # accept with no subprotocol; extensions are never offered back
        return None

    def onOpen(self) -> None:
        # media is many small messages: never let Nagle hold one back
        # behind a delayed ACK (40 ms pairs)
        setNoDelay = getattr(self.transport, "setTcpNoDelay", None)
        if setNoDelay is not None:
            setNoDelay(True)
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
            self.sendMessage(text.encode("utf-8"), isBinary=False)

    def sendBinary(self, data: bytes) -> None:
        if not self._closing:
            self.sendMessage(data, isBinary=True)

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


def mediaFactory(reactor: IReactorTime) -> WebSocketServerFactory:
    """
    The WebSocket factory for every provider media stream.
    """
    factory = WebSocketServerFactory(reactor=reactor)
    # Autobahn schedules auto-ping and handshake timers through a txaio
    # batched timer bound to the global reactor whatever reactor= says;
    # bind it to ours (time stays a parameter; tests pass a Clock)
    factory._batched_timer = _BatchedTimer(
        200.0, 1000, seconds_provider=reactor.seconds, delayed_call_creator=reactor.callLater
    )
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
