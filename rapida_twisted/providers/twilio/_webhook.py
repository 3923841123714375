# -*- test-case-name: tests.test_twilio_webhook -*-
"""
Twilio's webhook side: the voice webhook answered with TwiML
C{<Connect><Stream>}, status callbacks, and C{X-Twilio-Signature}.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit
from xml.sax.saxutils import quoteattr

from ...config import AssistantConfig
from ...store._model import CallContext
from .._base import (
    Answer,
    BaseProvider,
    CallInfo,
    Forbidden,
    StatusUpdate,
    WebhookRequest,
    required,
)
from ._media import TwilioMediaAdapter

_FAILED = frozenset({"failed", "busy", "no-answer", "canceled", "cancelled"})


def twilioSignature(authToken: str, url: str, params: Mapping[str, list[str]]) -> str:
    """
    Twilio's request signature: base64 HMAC-SHA1 over the URL followed by
    each sorted parameter name and its sorted values.
    """
    data = url + "".join(name + value for name in sorted(params) for value in sorted(params[name]))
    digest = hmac.new(authToken.encode("utf-8"), data.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def _urlVariants(url: str) -> list[str]:
    """
    The URL as given, without its port and with the default port: Twilio
    signs with or without the port depending on how it was configured.
    """
    parts = urlsplit(url)
    default = {"https": 443, "wss": 443, "http": 80, "ws": 80}.get(parts.scheme)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    bare = urlunsplit(parts._replace(netloc=host))
    variants = [url, bare]
    if default is not None:
        variants.append(urlunsplit(parts._replace(netloc=f"{host}:{default}")))
    return list(dict.fromkeys(variants))


def validTwilioSignature(
    authToken: str,
    signature: str,
    url: str,
    params: Mapping[str, list[str]],
    body: bytes = b"",
) -> bool:
    """
    Check an C{X-Twilio-Signature} the way Twilio computes it: form
    parameters appended for form posts, the C{bodySHA256} query variant for
    JSON bodies, and with and without the default port.
    """
    if not signature or not authToken:
        return False
    query = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    if "bodySHA256" in query:
        if hashlib.sha256(body).hexdigest() != query["bodySHA256"]:
            return False
        params = {}
    for candidate in _urlVariants(url):
        expected = twilioSignature(authToken, candidate, params)
        if hmac.compare_digest(expected, signature):
            return True
    return False


class TwilioProvider(BaseProvider):
    name = "twilio"
    statusRanks = {
        "queued": 1,
        "initiated": 1,
        "ringing": 2,
        "in-progress": 3,
        "answered": 3,
        "completed": BaseProvider.terminalRank,
        **{s: BaseProvider.terminalRank for s in _FAILED},
    }

    def mediaAdapter(self) -> Any:
        """
        The factory of L{TwilioMediaAdapter}s:
        C{factory(channel, context, gateway, request)}; the assistants and
        the REST client are the gateway's.
        """

        def build(channel: Any, context: Any, gateway: Any, request: Any) -> TwilioMediaAdapter:
            return TwilioMediaAdapter(
                channel, context, gateway, request, assistants=gateway.assistants, http=gateway.http()
            )

        return build

    @property
    def authToken(self) -> str:
        return self.config.twilio.auth_token

    def _check(self, request: WebhookRequest, params: Mapping[str, list[str]]) -> None:
        if not self.authToken:
            return
        signature = request.header("x-twilio-signature")
        if not signature:
            raise Forbidden("X-Twilio-Signature is missing", code="signature_missing")
        if not validTwilioSignature(self.authToken, signature, request.url, params, request.body):
            raise Forbidden("X-Twilio-Signature does not match", code="bad_signature")

    def authenticateWebhook(self, request: WebhookRequest) -> None:
        self._check(request, request.form if request.method == "POST" else {})

    def authenticateUpgrade(self, request: WebhookRequest) -> None:
        self._check(request, {})

    def parseCall(self, request: WebhookRequest) -> CallInfo:
        fields = request.fields()
        caller = required(fields, "From")
        direction = fields.get("Direction", "inbound") or "inbound"
        return CallInfo(
            caller=caller,
            callee=fields.get("To", ""),
            channel_uuid=fields.get("CallSid", ""),
            direction="outbound" if direction.startswith("outbound") else "inbound",
            metadata={
                k: fields[k] for k in ("AccountSid", "CallStatus", "Direction") if k in fields
            },
        )

    def answer(self, context: CallContext, token: str, assistant: AssistantConfig) -> Answer:
        media = self.urls.mediaURL(self.name, context.context_id)
        events = self.urls.eventURL(self.name, context.context_id)
        params = {
            "token": token,
            "assistant_id": context.assistant_id,
            "conversation_id": context.conversation_id,
        }
        parameters = "".join(
            f"<Parameter name={quoteattr(k)} value={quoteattr(v)}/>" for k, v in params.items()
        )
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            "<Response><Connect>"
            f"<Stream url={quoteattr(media)} name={quoteattr(context.context_id)}"
            f' statusCallback={quoteattr(events)} statusCallbackMethod="POST">'
            f"{parameters}</Stream></Connect></Response>"
        )
        return Answer("text/xml; charset=utf-8", xml.encode("utf-8"))

    def parseStatus(self, request: WebhookRequest) -> StatusUpdate:
        fields = request.fields()
        status = fields.get("CallStatus", "").strip().lower()
        error = fields.get("ErrorMessage") or fields.get("StreamError") or ""
        if fields.get("ErrorCode"):
            error = error or f"error {fields['ErrorCode']}"
        outcome = None
        if status in _FAILED:
            outcome = "failed"
        elif status == "completed":
            outcome = "failed" if error else "completed"
        stream = fields.get("StreamEvent", "").strip().lower()
        if not status and stream:
            # a <Stream> statusCallback: recorded, the call status unchanged
            status = ""
            if stream == "stream-error":
                error = error or "stream error"
        return StatusUpdate(
            provider_status=status,
            outcome=outcome,
            reason=error or (status if outcome == "failed" else ""),
            channel_uuid=fields.get("CallSid", ""),
        )
