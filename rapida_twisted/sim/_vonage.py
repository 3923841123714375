# -*- test-case-name: tests.test_sim -*-
"""
Vonage's part (protocols.md §2): the answer_url (optionally signed with an
HS256 JWT), the NCCO C{connect} to a C{websocket} endpoint, and the
stream: C{websocket:connected} with the NCCO headers flattened, binary
L16 frames of exactly 20 ms both ways, C{websocket:dtmf}, and the answers
to C{clear} (C{websocket:cleared}) and C{notify} (C{websocket:notify} once
the audio before it has played).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import jwt
from twisted.internet.interfaces import IReactorTime

from ..providers.twilio._codec import ProtocolError
from ..providers.vonage import _codec as vonage
from ._audio import PreparedAudio, WireFormat, wireFormat
from ._base import CallOptions, CallPlan, CallResult, MediaStream, SimError, WebhookError
from ._call import SimCall
from ._net import webhook
from ._record import Playout
from ._ticker import Ticker

__all__ = ["VonageCall", "VonageStream", "parseNcco"]


def parseNcco(body: bytes) -> tuple[str, str, dict[str, Any]]:
    """
    The websocket endpoint of an NCCO's C{connect} action: its C{uri},
    C{content-type} and C{headers}.

    @raise WebhookError: not an NCCO, or no websocket endpoint.
    """
    try:
        ncco = json.loads(body)
    except ValueError:
        raise WebhookError("answer is not JSON (an NCCO)") from None
    if type(ncco) is not list:
        raise WebhookError("NCCO is not a JSON array")
    for action in ncco:
        if type(action) is not dict or action.get("action") != "connect":
            continue
        for endpoint in action.get("endpoint") or ():
            if type(endpoint) is dict and endpoint.get("type") == "websocket":
                uri = endpoint.get("uri")
                contentType = endpoint.get("content-type", "audio/l16;rate=16000")
                headers = endpoint.get("headers") or {}
                if type(uri) is str and type(contentType) is str and type(headers) is dict:
                    return uri, contentType, headers
    raise WebhookError("NCCO has no connect action with a websocket endpoint")


def signedWebhook(secret: str, now: float, body: bytes = b"") -> str:
    """
    An C{Authorization} value as Vonage signs webhooks: C{Bearer} and an
    HS256 JWT over the signature secret (C{payload_hash} when there is a
    body).
    """
    claims: dict[str, Any] = {"iat": int(now), "jti": str(uuid.uuid4()), "iss": "Vonage"}
    if body:
        claims["payload_hash"] = hashlib.sha256(body).hexdigest()
    return "Bearer " + jwt.encode(claims, secret, algorithm="HS256")


class VonageStream(MediaStream):
    """
    Vonage's side of one WebSocket call leg.
    """

    transport = "vonage"

    def __init__(
        self,
        clock: IReactorTime,
        ticker: Ticker,
        audio: PreparedAudio,
        plan: CallPlan,
        contentType: str,
        headers: Mapping[str, Any],
    ) -> None:
        super().__init__(clock, ticker, audio, plan)
        self.contentType = contentType
        self.headers = dict(headers)
        self.playout: Playout[Any] = Playout(self.recorder)

    def _send(self, text: str) -> None:
        assert self.channel is not None
        self.channel.sendText(text)

    def started(self) -> None:
        self._send(vonage.encodeConnected(self.contentType, self.headers))

    def sendFrame(self, index: int, now: float) -> None:
        assert self.channel is not None
        self.channel.sendBinary(self.frameIndexPayload(index))

    def sendDtmf(self, digit: str) -> None:
        self._send(vonage.encodeDtmf(digit, 250))

    def _notified(self, payload: Any) -> None:
        self.counters["marks"] += 1
        self._send(vonage.encodeNotified(payload))

    def ticked(self, now: float, frames: int) -> None:
        for payload in self.playout.due(now):
            self._notified(payload)

    def received(self, data: bytes, isBinary: bool) -> None:
        now = self.clock.seconds()
        if isBinary:
            try:
                vonage.decodeAudio(data)
            except ProtocolError as e:
                self.protocolError(f"bad audio from the gateway: {e}")
                return
            if len(data) != self.audio.format.frameBytes:
                self.protocolError(
                    f"Vonage takes exactly 20 ms ({self.audio.format.frameBytes} bytes) per"
                    f" message, got {len(data)}"
                )
            self.playout.audio(now, data)
            return
        try:
            command = vonage.decodeCommand(data)
        except ProtocolError as e:
            self.protocolError(f"bad command from the gateway: {e}")
            return
        if isinstance(command, vonage.ClearCommand):
            self.counters["clears"] += 1
            for payload in self.playout.clear(now):
                self._notified(payload)
            self._send(vonage.encodeCleared())
        elif isinstance(command, vonage.NotifyCommand):
            if self.playout.mark(now, command.payload):
                self._notified(command.payload)
        else:
            self.counters["unknown"] += 1


class VonageCall(SimCall):
    """
    A Vonage inbound call: answer_url, NCCO, WebSocket leg.
    """

    transport = "vonage"

    @classmethod
    def wireFormat(cls, options: CallOptions) -> WireFormat:
        # the NCCO's content-type decides; this is Vonage's usual one
        return wireFormat("pcm16", options.rate or 16000)

    async def connect(self, result: CallResult) -> MediaStream:
        options, env = self.options, self.env
        query = urlencode(
            {
                "from": options.caller,
                "to": options.callee,
                "uuid": str(uuid.uuid4()),
                "conversation_uuid": "CON-" + str(uuid.uuid4()),
            }
        )
        url = f"{options.gateway.rstrip('/')}/v1/talk/vonage/call/{options.assistant}?{query}"
        headers = {}
        if options.signatureSecret:
            headers["Authorization"] = signedWebhook(options.signatureSecret, env.clock.seconds())
        _, body = await webhook(env, "GET", url, options.timeout, headers=headers)
        uri, contentType, endpointHeaders = parseNcco(body)
        result.contextId = urlsplit(uri).path.rstrip("/").rsplit("/", 1)[-1] or None
        try:
            rate = vonage.parseContentType(contentType)
        except ProtocolError as e:
            raise WebhookError(f"NCCO content-type: {e}") from None
        try:
            fmt = wireFormat("pcm16", rate)
        except ValueError as e:
            raise SimError(f"NCCO content-type {contentType!r}: {e}") from None
        if options.token is not None:
            endpointHeaders["token"] = options.token
        stream = VonageStream(
            env.clock, env.ticker, self.audio(fmt), options.plan, contentType, endpointHeaders
        )
        result.stream = stream
        await env.connector.webSocket(uri, {}, stream, options.timeout)
        return stream
