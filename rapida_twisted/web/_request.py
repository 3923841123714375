# -*- test-case-name: tests.test_web -*-
"""
twisted.web plumbing shared by every route: a request that refuses bodies
over 64 KiB, the conversion to a provider-neutral L{WebhookRequest}, and
the one way an asynchronous handler answers (JSON errors included).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import parse_qs, urlsplit

from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, resource, server

from ..providers._base import PublicURLs, WebError, WebhookRequest, errorBody
from ..store._model import (
    ContextAlreadyClaimed,
    ContextExpired,
    ContextFinished,
    ContextNotFound,
    StoreUnavailable,
)

#: the largest request body any route accepts
MAX_BODY = 64 * 1024

_log = Logger(namespace="rapida_twisted.web")


class LimitedRequest(server.Request):
    """
    A request that stops buffering its body past L{MAX_BODY} and remembers
    it did, so the resource answers 413 instead of reading megabytes.
    """

    tooLarge = False
    _received = 0

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > MAX_BODY:
            self.tooLarge = True
            length = 0
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.tooLarge:
            return
        self._received += len(data)
        if self._received > MAX_BODY:
            self.tooLarge = True
            return
        super().handleContentChunk(data)


class TooLarge(WebError):
    status = 413
    code = "body_too_large"


def _decodePairs(raw: bytes) -> dict[str, list[str]]:
    return parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)


def peerHost(request: server.Request) -> str:
    peer = request.getClientAddress()
    return getattr(peer, "host", "") or ""


def webhookRequest(
    request: server.Request, urls: PublicURLs, websocket: bool = False
) -> WebhookRequest:
    """
    Read a twisted.web request into a L{WebhookRequest}: query, form or
    JSON body (bad JSON is a 400), headers and the public URL the provider
    used (C{wss://} form for a WebSocket upgrade, as Twilio signs it).
    """
    if getattr(request, "tooLarge", False):
        raise TooLarge(f"request body exceeds {MAX_BODY} bytes")
    uri = (request.uri or b"/").decode("utf-8", "replace")
    query = _decodePairs(urlsplit(uri).query.encode("utf-8"))
    body = b""
    if request.content is not None:
        request.content.seek(0)
        body = request.content.read(MAX_BODY + 1)
        request.content.seek(0)
    if len(body) > MAX_BODY:
        raise TooLarge(f"request body exceeds {MAX_BODY} bytes")
    ctype = (request.getHeader("content-type") or "").split(";")[0].strip().lower()
    form: dict[str, list[str]] = {}
    parsed: Any = None
    if body:
        if ctype == "application/x-www-form-urlencoded":
            form = _decodePairs(body)
        elif ctype == "application/json" or ctype.endswith("+json"):
            try:
                parsed = json.loads(body)
            except (ValueError, UnicodeDecodeError) as e:
                raise WebError(f"body is not valid JSON: {e}", code="bad_json") from None
        elif ctype.startswith("multipart/"):
            args = request.args or {}
            form = {
                k.decode("utf-8", "replace"): [v.decode("utf-8", "replace") for v in vs]
                for k, vs in args.items()
            }
            for key in query:
                form.pop(key, None)
    headers = {
        name.decode("latin-1").lower(): b",".join(values).decode("latin-1")
        for name, values in request.requestHeaders.getAllRawHeaders()
    }
    base = urls.wsBase if websocket else urls.httpBase
    return WebhookRequest(
        method=(request.method or b"GET").decode("ascii", "replace"),
        url=base + uri,
        path=urlsplit(uri).path,
        query=query,
        headers=headers,
        body=body,
        form=form,
        json=parsed,
        peer=peerHost(request),
    )


def errorFor(failure: Failure) -> WebError | None:
    """
    The HTTP error a known failure maps to, or None for a bug.
    """
    exc = failure.value
    if isinstance(exc, WebError):
        return exc
    if isinstance(exc, ContextNotFound):
        return WebError("no such call context", code="unknown_context", status=404)
    if isinstance(exc, ContextAlreadyClaimed):
        return WebError("the call context was already claimed", code="already_claimed", status=409)
    if isinstance(exc, ContextExpired):
        return WebError(
            "the call context expired before it was claimed", code="expired", status=410
        )
    if isinstance(exc, ContextFinished):
        return WebError("the call has already ended", code="finished", status=410)
    if isinstance(exc, StoreUnavailable):
        return WebError(
            str(exc) or "the context store is unavailable", code="store_unavailable", status=503
        )
    return None


def writeJSON(request: server.Request, status: int, document: Any) -> None:
    body = json.dumps(document).encode("utf-8")
    writeBody(request, status, "application/json", body)


def writeBody(request: server.Request, status: int, contentType: str, body: bytes) -> None:
    if request.finished or request._disconnected:
        return
    request.setResponseCode(status)
    request.setHeader(b"content-type", contentType.encode("ascii"))
    request.setHeader(b"cache-control", b"no-store")
    request.write(body)
    request.finish()


def writeError(request: server.Request, error: WebError) -> None:
    writeBody(request, error.status, "application/json", error.body())


def renderAsync(
    request: server.Request,
    handler: Callable[[server.Request], Coroutine[Any, Any, Any]],
    onError: Callable[[WebError], None] | None = None,
) -> int:
    """
    Run C{handler(request)} (which writes its own answer) and make sure
    every failure still answers: known errors as their JSON body, bugs as
    a logged 500. Cancels the work when the client goes away.
    """
    d = Deferred.fromCoroutine(handler(request))

    def failed(failure: Failure) -> None:
        if failure.check(CancelledError) and request._disconnected:
            return
        error = errorFor(failure)
        if error is None:
            _log.failure(
                "unhandled error answering {method} {path}",
                failure,
                method=request.method,
                path=request.path,
            )
            error = WebError("internal error", code="internal_error", status=500)
        if onError is not None:
            onError(error)
        writeError(request, error)

    d.addErrback(failed)
    request.notifyFinish().addErrback(lambda _: d.cancel())
    return server.NOT_DONE_YET


class ErrorResource(resource.Resource):
    """
    A leaf that answers one JSON error to every method and every path below.
    """

    isLeaf = True

    def __init__(self, status: int, code: str, message: str):
        super().__init__()
        self.status = status
        self.code = code
        self.message = message

    def render(self, request: server.Request) -> bytes:
        request.setResponseCode(self.status)
        request.setHeader(b"content-type", b"application/json")
        return errorBody(self.code, self.message)


def notFound(message: str) -> ErrorResource:
    return ErrorResource(http.NOT_FOUND, "not_found", message)
