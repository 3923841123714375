# -*- test-case-name: tests.test_exotel_webhook -*-
"""
Exotel's webhook side: the Voicebot applet's dynamic URL endpoint, status
callbacks, and Exotel's two authentication options (HTTP Basic on the
stream, source-IP allowlist).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import json
from typing import Any
from urllib.parse import urlencode

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
from ._media import ExotelMediaAdapter

_FAILED = frozenset({"failed", "busy", "no-answer", "canceled", "cancelled"})


def basicCredentials(authorization: str) -> tuple[str, str] | None:
    """
    The user and password of an HTTP Basic C{Authorization} header.
    """
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


class ExotelProvider(BaseProvider):
    name = "exotel"
    statusRanks = {
        "queued": 1,
        "ringing": 2,
        "in-progress": 3,
        "answered": 3,
        "completed": BaseProvider.terminalRank,
        **{s: BaseProvider.terminalRank for s in _FAILED},
    }

    def _checkSource(self, request: WebhookRequest) -> None:
        networks = self.config.exotel.allow_from
        if not networks:
            return
        try:
            peer = ipaddress.ip_address(request.peer)
        except ValueError:
            raise Forbidden("source address unknown", code="source_not_allowed") from None
        if not any(peer in net for net in networks):
            raise Forbidden(f"source {request.peer} is not allowed", code="source_not_allowed")

    def authenticateWebhook(self, request: WebhookRequest) -> None:
        self._checkSource(request)

    def authenticateUpgrade(self, request: WebhookRequest) -> None:
        self._checkSource(request)
        creds = self.config.exotel
        if not creds.stream_username:
            return
        presented = basicCredentials(request.header("authorization"))
        if presented is None:
            raise Forbidden("HTTP Basic credentials are required", code="credentials_missing")
        user, password = presented
        userOk = hmac.compare_digest(user.encode(), creds.stream_username.encode())
        passOk = hmac.compare_digest(password.encode(), creds.stream_password.encode())
        if not (userOk and passOk):
            raise Forbidden("HTTP Basic credentials do not match", code="bad_credentials")

    def parseCall(self, request: WebhookRequest) -> CallInfo:
        fields = request.fields()
        caller = required(fields, "CallFrom")
        direction = fields.get("Direction", "inbound") or "inbound"
        return CallInfo(
            caller=caller,
            callee=fields.get("CallTo", ""),
            channel_uuid=fields.get("CallSid", ""),
            direction="outbound" if direction.startswith("outbound") else "inbound",
            metadata={k: fields[k] for k in ("CustomField", "flow_id") if k in fields},
        )

    def mediaAdapter(self) -> Any:
        """
        The factory of L{ExotelMediaAdapter}s:
        C{factory(channel, context, gateway, request)}; the minimum chunk
        is C{[providers.exotel] chunk_ms} when it is set.
        """

        def build(channel: Any, context: Any, gateway: Any, request: Any) -> ExotelMediaAdapter:
            chunkMs = gateway.config.exotel.chunk_ms or None
            return ExotelMediaAdapter(
                channel, context, gateway, request, assistants=gateway.assistants, chunkMs=chunkMs
            )

        return build

    def answer(self, context: CallContext, token: str, assistant: AssistantConfig) -> Answer:
        query = {"token": token}
        if assistant.sampleRate != 8000:
            # ask for the assistant's rate (§3.1); start.media_format says what came
            query["sample-rate"] = str(assistant.sampleRate)
        url = self.urls.mediaURL(self.name, context.context_id) + "?" + urlencode(query)
        creds = self.config.exotel
        if creds.stream_username and url.startswith(("wss://", "ws://")):
            scheme, rest = url.split("://", 1)
            userinfo = (
                self.urls.segment(creds.stream_username)
                + ":"
                + self.urls.segment(creds.stream_password)
            )
            url = f"{scheme}://{userinfo}@{rest}"
        return Answer("application/json", json.dumps({"url": url}).encode("utf-8"))

    def parseStatus(self, request: WebhookRequest) -> StatusUpdate:
        fields = request.fields()
        status = (fields.get("Status", "") or fields.get("CallType", "")).strip().lower()
        error = fields.get("ErrorMessage", "") or fields.get("Cause", "")
        outcome = None
        if status in _FAILED:
            outcome = "failed"
        elif status == "completed":
            outcome = "completed"
        return StatusUpdate(
            provider_status=status,
            outcome=outcome,
            reason=(error or status) if outcome == "failed" else "",
            channel_uuid=fields.get("CallSid", ""),
        )
