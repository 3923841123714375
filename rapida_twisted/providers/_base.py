# -*- test-case-name: tests.test_web -*-
"""
What every provider's webhook side shares: the parsed request, the answers
it builds, the errors it raises, and the public URLs it hands out.

Pure: no reactor, no twisted.web; the web layer builds a L{WebhookRequest}
from a twisted.web request and turns L{WebError}s into JSON bodies.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from zope.interface import implementer

from ..config import AssistantConfig, GatewayConfig
from ..interfaces import IProvider
from ..store._model import CallContext


class WebError(Exception):
    """
    A request the gateway refuses, with its HTTP status and a machine code.
    """

    status = 400
    code = "bad_request"

    def __init__(self, message: str, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    def body(self) -> bytes:
        return errorBody(self.code, self.message)


class MissingField(WebError):
    code = "missing_field"

    def __init__(self, name: str):
        super().__init__(f"{name} is required")
        self.field = name


class Forbidden(WebError):
    status = 403
    code = "forbidden"


class NotFound(WebError):
    status = 404
    code = "not_found"


def errorBody(code: str, message: str) -> bytes:
    """
    The one JSON error document of SPEC §4.
    """
    return json.dumps({"error": {"code": code, "message": message}}).encode("utf-8")


@dataclass(frozen=True)
class WebhookRequest:
    """
    A provider's HTTP request, reduced to what providers look at.

    C{url} is the public URL the provider requested (scheme and host from
    C{--public-host}), which is what signatures are computed over.
    """

    method: str
    url: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    body: bytes = b""
    form: Mapping[str, list[str]] = field(default_factory=dict)
    json: Any = None
    peer: str = ""

    def fields(self) -> dict[str, str]:
        """
        Query, form and top-level JSON scalars merged (first value each;
        body wins over query).
        """
        merged = {k: v[0] for k, v in self.query.items() if v}
        merged.update({k: v[0] for k, v in self.form.items() if v})
        if isinstance(self.json, dict):
            for k, v in self.json.items():
                if isinstance(v, str):
                    merged[k] = v
                elif isinstance(v, bool):
                    merged[k] = "true" if v else "false"
                elif isinstance(v, int | float):
                    merged[k] = str(v)
        return merged

    def rawFields(self) -> dict[str, Any]:
        """
        Everything the provider sent, kept for the events table.
        """
        raw: dict[str, Any] = {k: v[0] if len(v) == 1 else v for k, v in self.query.items()}
        raw.update({k: v[0] if len(v) == 1 else v for k, v in self.form.items()})
        if isinstance(self.json, dict):
            raw.update(self.json)
        elif self.json is not None:
            raw["_json"] = self.json
        return raw

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


@dataclass(frozen=True)
class CallInfo:
    """
    What an inbound-call webhook tells us about the call.
    """

    caller: str = ""
    callee: str = ""
    channel_uuid: str = ""
    direction: str = "inbound"
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StatusUpdate:
    """
    A provider status callback mapped onto the context: the provider's own
    status word, and the outcome when it ends the call.
    """

    provider_status: str = ""
    outcome: str | None = None
    reason: str = ""
    channel_uuid: str = ""


@dataclass(frozen=True)
class Answer:
    content_type: str
    body: bytes


class PublicURLs:
    """
    Builds provider-facing URLs from C{--public-host}.

    A bare C{host[:port]} is the production form and gives C{https://} and
    C{wss://}; a value starting with C{http://} gives C{http://} and
    C{ws://} for local use; C{https://host} is accepted too.
    """

    def __init__(self, publicHost: str):
        value = publicHost.strip().rstrip("/")
        if value.startswith("http://"):
            self.secure = False
            value = value[len("http://") :]
        elif value.startswith("https://"):
            self.secure = True
            value = value[len("https://") :]
        else:
            self.secure = True
        if not value or "/" in value or "?" in value or "#" in value or "@" in value:
            raise ValueError(
                f"public host {publicHost!r} must be host[:port] or http://host[:port]"
            )
        parsed = urlsplit("//" + value)
        if not parsed.hostname:
            raise ValueError(f"public host {publicHost!r} has no host name")
        try:
            _ = parsed.port
        except ValueError:
            raise ValueError(f"public host {publicHost!r} has a bad port") from None
        self.host = value

    @property
    def httpBase(self) -> str:
        return ("https://" if self.secure else "http://") + self.host

    @property
    def wsBase(self) -> str:
        return ("wss://" if self.secure else "ws://") + self.host

    def http(self, path: str) -> str:
        return self.httpBase + path

    def ws(self, path: str) -> str:
        return self.wsBase + path

    @staticmethod
    def segment(value: str) -> str:
        return quote(value, safe="")

    def mediaPath(self, provider: str, contextId: str) -> str:
        return f"/v1/talk/{self.segment(provider)}/ctx/{self.segment(contextId)}"

    def mediaURL(self, provider: str, contextId: str) -> str:
        return self.ws(self.mediaPath(provider, contextId))

    def eventURL(self, provider: str, contextId: str) -> str:
        return self.http(self.mediaPath(provider, contextId) + "/event")


def required(fields: Mapping[str, str], name: str) -> str:
    """
    A field that must be present and non-blank, else L{MissingField}.
    """
    value = fields.get(name, "").strip()
    if not value:
        raise MissingField(name)
    return value


@implementer(IProvider)
class BaseProvider:
    """
    Defaults shared by the provider webhook sides; subclasses set C{name}
    and override what differs.
    """

    name = ""
    #: claim the context at the WebSocket upgrade (providers whose stream
    #: carries no token); otherwise at the first message carrying it
    claimAtUpgrade = False
    #: provider status word -> rank; a status never replaces one of a
    #: higher rank, so late or repeated callbacks never move a call back
    statusRanks: Mapping[str, int] = {}
    terminalRank = 100

    def __init__(self, config: GatewayConfig, urls: PublicURLs):
        self.config = config
        self.urls = urls

    def authenticateWebhook(self, request: WebhookRequest) -> None:
        """
        Raise L{Forbidden} unless the request is authentic. Default: no
        signing configured, accept.
        """

    def authenticateUpgrade(self, request: WebhookRequest) -> None:
        """
        Raise L{Forbidden} unless the media upgrade is authentic.
        """

    def parseCall(self, request: WebhookRequest) -> CallInfo:
        raise NotImplementedError

    def answer(self, context: CallContext, token: str, assistant: AssistantConfig) -> Answer:
        raise NotImplementedError

    def parseStatus(self, request: WebhookRequest) -> StatusUpdate:
        raise NotImplementedError

    def statusRank(self, providerStatus: str) -> int:
        if not providerStatus:
            return -1
        return self.statusRanks.get(providerStatus.lower(), 0)

    def mediaAdapter(self) -> Any:
        """
        The factory of this provider's media-stream adapter, or None while
        the provider has none.
        """
        return None
