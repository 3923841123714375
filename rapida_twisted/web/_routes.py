# -*- test-case-name: tests.test_web -*-
"""
The HTTP routes of SPEC §4 as a twisted.web resource tree:

  /v1/talk/{provider}/call/{assistantId}     inbound-call webhook
  /v1/talk/{provider}/ctx/{contextId}        media WebSocket (claims once)
  /v1/talk/{provider}/ctx/{contextId}/event  status callbacks
  /v1/talk/{provider}/ctx?contextId=...      media WebSocket (chan_websocket form)
  /healthz, /metrics
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory
from twisted.logger import Logger
from twisted.web import resource, server

from ..gateway import Gateway
from ..providers._base import BaseProvider, NotFound, WebError, WebhookRequest
from ..store._model import CLAIMED, EXPIRED, CallContext, ContextNotFound
from ._media import mediaFactory, upgrade
from ._request import (
    ErrorResource,
    LimitedRequest,
    notFound,
    renderAsync,
    webhookRequest,
    writeBody,
    writeJSON,
)

_WEBHOOK_METHODS = (b"GET", b"POST")


def _segment(name: bytes) -> str:
    return name.decode("utf-8", "replace")


class _Route(resource.Resource):
    """
    A route node: unknown children are JSON 404s, not HTML pages.
    """

    def getChild(self, path: bytes, request: server.Request) -> resource.Resource:
        return notFound(f"no route {request.path.decode('utf-8', 'replace')}")

    def render(self, request: server.Request) -> bytes:
        return notFound(f"no route {request.path.decode('utf-8', 'replace')}").render(request)


class _Webhook(resource.Resource):
    """
    A leaf answering GET and POST through an async handler.
    """

    isLeaf = True
    _log = Logger()
    kind = ""

    def __init__(self, gateway: Gateway, provider: BaseProvider):
        super().__init__()
        self.gateway = gateway
        self.provider = provider

    def render(self, request: server.Request) -> bytes | int:
        if request.postpath and request.postpath != [b""]:
            return notFound(f"no route {request.path.decode('utf-8', 'replace')}").render(request)
        if request.method not in _WEBHOOK_METHODS:
            request.setHeader(b"allow", b"GET, POST")
            return ErrorResource(405, "method_not_allowed", "use GET or POST").render(request)

        def counted(error: WebError) -> None:
            self._count(error.code)
            self._log.warn(
                "{provider} {kind} webhook refused: {status} {code} {message}",
                provider=self.provider.name,
                kind=self.kind,
                status=error.status,
                code=error.code,
                message=error.message,
            )

        return renderAsync(request, self.handle, counted)

    def _count(self, outcome: str) -> None:
        self.gateway.metrics.webhooks.labels(self.provider.name, self.kind, outcome).inc()

    async def handle(self, request: server.Request) -> None:
        raise NotImplementedError


class CallWebhook(_Webhook):
    """
    C{/v1/talk/{provider}/call/{assistantId}}: create the context, record
    the webhook, answer in the provider's own document.
    """

    kind = "call"

    def __init__(self, gateway: Gateway, provider: BaseProvider, assistantId: str):
        super().__init__(gateway, provider)
        self.assistantId = assistantId

    async def handle(self, request: server.Request) -> None:
        webhook = webhookRequest(request, self.gateway.urls)
        self.provider.authenticateWebhook(webhook)
        assistant = self.gateway.config.assistant(self.assistantId)
        if assistant is None:
            raise NotFound(f"no assistant {self.assistantId!r}", code="unknown_assistant")
        info = self.provider.parseCall(webhook)
        store = self.gateway.store
        new = await self.gateway.storeOp(
            "create",
            store.create,
            self.provider.name,
            assistant.id,
            direction=info.direction,
            caller=info.caller,
            callee=info.callee,
            channel_uuid=info.channel_uuid,
            metadata=dict(info.metadata),
        )
        context = new.context
        await self.gateway.storeOp(
            "append_event",
            store.appendEvent,
            context.context_id,
            "provider",
            "webhook",
            {"method": webhook.method, "fields": webhook.rawFields()},
        )
        self._log.info(
            "{provider} call {channel_uuid} from {caller} to {callee}: context {context_id}"
            " for assistant {assistant_id}",
            provider=self.provider.name,
            channel_uuid=info.channel_uuid,
            caller=info.caller,
            callee=info.callee,
            context_id=context.context_id,
            assistant_id=assistant.id,
        )
        answer = self.provider.answer(context, new.token, assistant)
        self._count("ok")
        writeBody(request, 200, answer.content_type, answer.body)


class EventWebhook(_Webhook):
    """
    C{/v1/talk/{provider}/ctx/{contextId}/event}: record every callback as
    a C{status} event and move the context forward, never backwards.
    """

    kind = "event"

    def __init__(self, gateway: Gateway, provider: BaseProvider, contextId: str):
        super().__init__(gateway, provider)
        self.contextId = contextId

    async def handle(self, request: server.Request) -> None:
        gateway, store = self.gateway, self.gateway.store
        webhook = webhookRequest(request, gateway.urls)
        self.provider.authenticateWebhook(webhook)
        context = await _contextFor(gateway, self.provider, self.contextId)
        update = self.provider.parseStatus(webhook)
        await gateway.storeOp(
            "append_event",
            store.appendEvent,
            context.context_id,
            "provider",
            "status",
            {"method": webhook.method, "fields": webhook.rawFields()},
        )
        if update.channel_uuid and not context.channel_uuid:
            await gateway.storeOp(
                "set_channel", store.setChannel, context.context_id, update.channel_uuid
            )
        await _advanceStatus(gateway, self.provider, context, update.provider_status)
        if update.outcome is not None:
            await gateway.storeOp(
                "finish", store.finish, context.context_id, update.outcome, update.reason
            )
        self._count("ok")
        request.setResponseCode(204)
        request.finish()


async def _contextFor(gateway: Gateway, provider: BaseProvider, contextId: str) -> CallContext:
    """
    The context, which must belong to C{provider}: a context id is no
    use on another provider's routes.
    """
    try:
        context: CallContext = await gateway.storeOp("get", gateway.store.get, contextId)
    except ContextNotFound:
        raise NotFound("no such call context", code="unknown_context") from None
    if context.provider != provider.name:
        raise NotFound("no such call context for this provider", code="unknown_context")
    return context


async def _advanceStatus(
    gateway: Gateway, provider: BaseProvider, context: CallContext, status: str
) -> None:
    """
    Set C{provider_status} unless the current one ranks higher: a late
    C{ringing} never replaces C{completed}. Compare-and-set, retried
    when another node moved it meanwhile.
    """
    if not status:
        return
    current = context.provider_status
    for _ in range(3):
        currentRank = provider.statusRank(current)
        if (
            status == current
            or currentRank >= provider.terminalRank
            or provider.statusRank(status) < currentRank
        ):
            return
        changed = await gateway.storeOp(
            "update_status",
            gateway.store.updateProviderStatus,
            context.context_id,
            status,
            expected=current,
        )
        if changed:
            return
        current = (
            await gateway.storeOp("get", gateway.store.get, context.context_id)
        ).provider_status


class MediaRoute(resource.Resource):
    """
    C{/v1/talk/{provider}/ctx/{contextId}} (or C{.../ctx?contextId=}): check
    the context before the upgrade, so refusals are plain HTTP with a JSON
    reason (403 / 404 / 409 / 410 / 503), claim it when the provider's
    stream carries no token, then hand the connection to Autobahn.
    """

    _log = Logger()

    def __init__(
        self,
        gateway: Gateway,
        provider: BaseProvider,
        factory: WebSocketServerFactory,
        contextId: str | None,
    ):
        super().__init__()
        self.gateway = gateway
        self.provider = provider
        self.factory = factory
        self.contextId = contextId

    def getChild(self, path: bytes, request: server.Request) -> resource.Resource:
        if path == b"event" and self.contextId is not None:
            return EventWebhook(self.gateway, self.provider, self.contextId)
        return notFound(f"no route {request.path.decode('utf-8', 'replace')}")

    def render(self, request: server.Request) -> bytes | int:
        if (request.getHeader("upgrade") or "").lower() != "websocket":
            request.setHeader(b"upgrade", b"websocket")
            return ErrorResource(
                426, "upgrade_required", "this is a media WebSocket: send an Upgrade request"
            ).render(request)

        def refused(error: WebError) -> None:
            self.gateway.metrics.protocolErrors.labels("websocket", error.code).inc()
            self._log.warn(
                "{provider} media upgrade for {context_id} refused: {status} {code} {message}",
                provider=self.provider.name,
                context_id=self.contextId,
                status=error.status,
                code=error.code,
                message=error.message,
            )

        return renderAsync(request, self.handle, refused)

    async def handle(self, request: server.Request) -> None:
        gateway = self.gateway
        webhook = webhookRequest(request, gateway.urls, websocket=True)
        contextId = _queryContextId(webhook) or self.contextId
        if not contextId:
            raise WebError("contextId is required", code="missing_field")
        self.provider.authenticateUpgrade(webhook)
        context = await _contextFor(gateway, self.provider, contextId)
        now = gateway.clock.seconds()
        if context.status == CLAIMED:
            raise WebError(
                "the call context was already claimed", code="already_claimed", status=409
            )
        if context.status == EXPIRED or context.expired_at(now, gateway.store.ttl):
            raise WebError(
                "the call context expired before it was claimed", code="expired", status=410
            )
        if context.finished:
            raise WebError("the call has already ended", code="finished", status=410)
        if self.provider.claimAtUpgrade:
            context = await gateway.storeOp("claim", gateway.store.claim, context.context_id)
        upgrade(request, self.factory, context, self.provider, gateway, webhook)


def _queryContextId(webhook: WebhookRequest) -> str:
    values = webhook.query.get("contextId") or []
    return values[0].strip() if values else ""


class ProviderRoute(_Route):
    """
    C{/v1/talk/{provider}}: C{call/} and C{ctx/} below it.
    """

    def __init__(self, gateway: Gateway, provider: BaseProvider, factory: WebSocketServerFactory):
        super().__init__()
        self.gateway = gateway
        self.provider = provider
        self.factory = factory

    def getChild(self, path: bytes, request: server.Request) -> resource.Resource:
        if path == b"call":
            return _Lookup(lambda name: CallWebhook(self.gateway, self.provider, name))
        if path == b"ctx":
            if not request.postpath or request.postpath == [b""]:
                return MediaRoute(self.gateway, self.provider, self.factory, None)
            return _Lookup(lambda name: MediaRoute(self.gateway, self.provider, self.factory, name))
        return super().getChild(path, request)


class _Lookup(_Route):
    """
    A path segment that names something (an assistant, a context).
    """

    def __init__(self, make: Any):
        super().__init__()
        self.make = make

    def getChild(self, path: bytes, request: server.Request) -> resource.Resource:
        if not path:
            return super().getChild(path, request)
        return self.make(_segment(path))


class TalkRoute(_Route):
    """
    C{/v1/talk}: one child per provider.
    """

    def __init__(self, gateway: Gateway, factory: WebSocketServerFactory):
        super().__init__()
        self.children_ = {
            name.encode(): ProviderRoute(gateway, provider, factory)
            for name, provider in gateway.providers.items()
        }

    def getChild(self, path: bytes, request: server.Request) -> resource.Resource:
        child = self.children_.get(path)
        if child is None:
            return ErrorResource(404, "unknown_provider", f"no provider {_segment(path)!r}")
        return child


class Health(resource.Resource):
    """
    C{/healthz}: liveness plus store reachability (503 when the store is not).
    """

    isLeaf = True

    def __init__(self, gateway: Gateway):
        super().__init__()
        self.gateway = gateway

    def render_GET(self, request: server.Request) -> int:
        async def check(request: server.Request) -> None:
            if not self.gateway.storeReady:
                writeJSON(request, 503, {"status": "starting", "store": "starting"})
                return
            try:
                await self.gateway.storeOp("ping", self.gateway.store.ping)
            except Exception as e:
                writeJSON(
                    request, 503, {"status": "degraded", "store": "unreachable", "error": str(e)}
                )
            else:
                writeJSON(request, 200, {"status": "ok", "store": "ok"})

        return renderAsync(request, check)


class Metrics(resource.Resource):
    """
    C{/metrics}: Prometheus text exposition.
    """

    isLeaf = True

    def __init__(self, gateway: Gateway):
        super().__init__()
        self.gateway = gateway

    def render_GET(self, request: server.Request) -> bytes:
        request.setHeader(b"content-type", self.gateway.metrics.contentType.encode("ascii"))
        return self.gateway.metrics.render()


def buildRoot(gateway: Gateway, reactor: Any) -> resource.Resource:
    """
    The whole resource tree for C{--http}.
    """
    root = _Route()
    v1 = _Route()
    root.putChild(b"v1", v1)
    v1.putChild(b"talk", TalkRoute(gateway, mediaFactory(reactor)))
    root.putChild(b"healthz", Health(gateway))
    root.putChild(b"metrics", Metrics(gateway))
    return root


def buildSite(gateway: Gateway, reactor: Any) -> server.Site:
    site = server.Site(buildRoot(gateway, reactor), timeout=60, reactor=reactor)
    site.requestFactory = LimitedRequest
    site.displayTracebacks = False
    site.noisy = False
    return site


__all__ = ["buildRoot", "buildSite"]
