# -*- test-case-name: tests.test_vonage_webhook -*-
"""
Vonage's webhook side: the answer_url answered with an NCCO C{connect} to
our WebSocket, event_url callbacks, and signed (JWT) webhooks.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import jwt

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
from ._media import VonageMediaAdapter

_FAILED = frozenset(
    {"failed", "busy", "timeout", "unanswered", "rejected", "cancelled", "canceled"}
)

#: how old a signed webhook's C{iat} may be, in seconds
MAX_JWT_AGE = 300.0


def verifyVonageJWT(
    secret: str, authorization: str, body: bytes, now: float, maxAge: float = MAX_JWT_AGE
) -> dict[str, object]:
    """
    Verify a Vonage signed webhook: HS256 over the signature secret, a
    fresh C{iat}, and C{payload_hash} matching the body when there is one.
    Returns the claims; raises L{Forbidden}.
    """
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Forbidden("Authorization: Bearer JWT is missing", code="signature_missing")
    try:
        claims = jwt.decode(
            token.strip(),
            secret,
            algorithms=["HS256"],
            options={"require": ["iat"], "verify_iat": False},
        )
    except jwt.PyJWTError as e:
        raise Forbidden(f"webhook JWT rejected: {e}", code="bad_signature") from None
    iat = claims.get("iat")
    if not isinstance(iat, int | float) or abs(now - float(iat)) > maxAge:
        raise Forbidden("webhook JWT is not fresh (iat)", code="stale_signature")
    if body:
        expected = hashlib.sha256(body).hexdigest()
        presented = claims.get("payload_hash")
        if not isinstance(presented, str) or not hmac.compare_digest(presented.lower(), expected):
            raise Forbidden("webhook payload_hash does not match the body", code="bad_signature")
    return claims


class VonageProvider(BaseProvider):
    name = "vonage"
    statusRanks = {
        "started": 1,
        "ringing": 2,
        "answered": 3,
        "human": 3,
        "machine": 3,
        "disconnected": 4,
        "completed": BaseProvider.terminalRank,
        **{s: BaseProvider.terminalRank for s in _FAILED},
    }

    #: wall clock for JWT freshness; tests replace it
    now: Callable[[], float] = staticmethod(time.time)

    def authenticateWebhook(self, request: WebhookRequest) -> None:
        secret = self.config.vonage.signature_secret
        if not secret:
            return
        verifyVonageJWT(secret, request.header("authorization"), request.body, self.now())

    def parseCall(self, request: WebhookRequest) -> CallInfo:
        fields = request.fields()
        caller = required(fields, "from")
        return CallInfo(
            caller=caller,
            callee=fields.get("to", ""),
            channel_uuid=fields.get("uuid", ""),
            metadata={k: fields[k] for k in ("conversation_uuid", "region_url") if k in fields},
        )

    def mediaAdapter(self) -> Any:
        """
        The factory of L{VonageMediaAdapter}s:
        C{factory(channel, context, gateway, request)}; the assistants and
        the REST client are the gateway's.
        """

        def build(channel: Any, context: Any, gateway: Any, request: Any) -> VonageMediaAdapter:
            return VonageMediaAdapter(
                channel, context, gateway, request, assistants=gateway.assistants
            )

        return build

    def contentType(self, assistant: AssistantConfig) -> str:
        rate = 8000 if assistant.sampleRate == 8000 else 16000
        return f"audio/l16;rate={rate}"

    def answer(self, context: CallContext, token: str, assistant: AssistantConfig) -> Answer:
        ncco = [
            {
                "action": "connect",
                "eventType": "synchronous",
                "eventUrl": [self.urls.eventURL(self.name, context.context_id)],
                "endpoint": [
                    {
                        "type": "websocket",
                        "uri": self.urls.mediaURL(self.name, context.context_id),
                        "content-type": self.contentType(assistant),
                        "headers": {
                            "token": token,
                            "context_id": context.context_id,
                            "assistant_id": context.assistant_id,
                        },
                    }
                ],
            }
        ]
        return Answer("application/json", json.dumps(ncco).encode("utf-8"))

    def parseStatus(self, request: WebhookRequest) -> StatusUpdate:
        fields = request.fields()
        status = fields.get("status", "").strip().lower()
        detail = fields.get("detail", "") or fields.get("reason", "")
        outcome = None
        if status in _FAILED:
            outcome = "failed"
        elif status == "completed":
            duration = fields.get("duration", "")
            outcome = "failed" if detail and duration in ("0", "") else "completed"
        reason = ""
        if outcome == "failed":
            reason = (
                detail or fields.get("disconnected_by", "") or fields.get("sip_code", "") or status
            )
        return StatusUpdate(
            provider_status=status,
            outcome=outcome,
            reason=reason,
            channel_uuid=fields.get("uuid", "") or fields.get("call_uuid", ""),
        )
