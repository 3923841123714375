# -*- test-case-name: tests.test_web -*-
"""
Asterisk's webhook side: a dialplan C{CURL()} creates the context and
gets its id back as C{text/plain}; the id then travels as the AudioSocket
UUID or in the chan_websocket URL.
"""

from __future__ import annotations

from typing import Any

from ..config import AssistantConfig
from ..providers._base import Answer, BaseProvider, CallInfo, StatusUpdate, WebhookRequest, required
from ..store._model import CallContext


class AsteriskProvider(BaseProvider):
    name = "asterisk"
    #: neither AudioSocket nor chan_websocket carries our token: the context
    #: id (random, single use, expiring) is the media leg's credential
    claimAtUpgrade = True
    statusRanks = {
        "ringing": 2,
        "up": 3,
        "answered": 3,
        "completed": BaseProvider.terminalRank,
        "hangup": BaseProvider.terminalRank,
        "failed": BaseProvider.terminalRank,
    }

    def parseCall(self, request: WebhookRequest) -> CallInfo:
        fields = request.fields()
        caller = required(fields, "from")
        return CallInfo(
            caller=caller,
            callee=fields.get("to", ""),
            channel_uuid=fields.get("channel_id", ""),
        )

    def answer(self, context: CallContext, token: str, assistant: AssistantConfig) -> Answer:
        return Answer("text/plain; charset=utf-8", context.context_id.encode("ascii"))

    def parseStatus(self, request: WebhookRequest) -> StatusUpdate:
        fields = request.fields()
        status = fields.get("status", "").strip().lower()
        outcome = {"completed": "completed", "hangup": "completed", "failed": "failed"}.get(status)
        return StatusUpdate(
            provider_status=status,
            outcome=outcome,
            reason=fields.get("reason", "") if outcome == "failed" else "",
            channel_uuid=fields.get("channel_id", ""),
        )

    def mediaAdapter(self) -> Any:
        """
        The factory of chan_websocket adapters:
        C{factory(channel, context, gateway, request)}, with the gateway's
        assistants. (AudioSocket is a TCP listener of its own.)
        """
        from ._media import ChanWebSocketAdapter

        def build(channel: Any, context: Any, gateway: Any, request: Any) -> ChanWebSocketAdapter:
            return ChanWebSocketAdapter(
                channel, context, gateway, request, assistants=gateway.assistants
            )

        return build
