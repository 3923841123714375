# -*- test-case-name: tests.test_sim -*-
"""
Twilio's part (protocols.md §1): the voice webhook (signed with
C{X-Twilio-Signature} when an auth token is given), the TwiML
C{<Connect><Stream>} answer, and the Media Stream: C{connected}, C{start},
C{media} (160 bytes of μ-law every 20 ms), C{dtmf}, mark echoes on a
simulated playout clock, C{clear}, C{stop}.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from urllib.parse import urlsplit
from xml.etree import ElementTree

from twisted.internet.interfaces import IReactorTime

from ..providers.twilio import _codec as twilio
from ..providers.twilio._webhook import twilioSignature
from ._audio import PreparedAudio, WireFormat, wireFormat
from ._base import CallOptions, CallPlan, CallResult, MediaStream, WebhookError
from ._call import SimCall
from ._net import webhook
from ._record import Playout
from ._ticker import Ticker

__all__ = ["TwilioCall", "TwilioStream", "parseTwiml", "sid"]


def sid(prefix: str) -> str:
    """
    A random Twilio-style id: C{prefix} and 32 hex digits.
    """
    return prefix + secrets.token_hex(16)


def parseTwiml(body: bytes) -> tuple[str, dict[str, str]]:
    """
    The C{<Connect><Stream url>} and its C{<Parameter>}s from TwiML.

    @raise WebhookError: not XML, a DTD (never expanded), or no stream.
    """
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise WebhookError("TwiML with a DTD is refused")
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as e:
        raise WebhookError(f"answer is not TwiML: {e}") from None
    stream = root.find("./Connect/Stream")
    url = stream.get("url") if stream is not None else None
    if stream is None or not url:
        raise WebhookError("TwiML has no <Connect><Stream url=...>")
    params = {}
    for param in stream.findall("Parameter"):
        name = param.get("name")
        if name:
            params[name] = param.get("value", "")
    return url, params


class TwilioStream(MediaStream):
    """
    Twilio's side of one Media Stream.
    """

    transport = "twilio"

    def __init__(
        self,
        clock: IReactorTime,
        ticker: Ticker,
        audio: PreparedAudio,
        plan: CallPlan,
        parameters: Mapping[str, str],
        callSid: str | None = None,
        accountSid: str | None = None,
        streamSid: str | None = None,
    ) -> None:
        super().__init__(clock, ticker, audio, plan)
        self.parameters = dict(parameters)
        self.callSid = callSid or sid("CA")
        self.accountSid = accountSid or sid("AC")
        self.streamSid = streamSid or sid("MZ")
        self.playout: Playout[str] = Playout(self.recorder)
        self._sequence = 1

    def _next(self) -> int:
        number = self._sequence
        self._sequence += 1
        return number

    def _send(self, text: str) -> None:
        assert self.channel is not None
        self.channel.sendText(text)

    def started(self) -> None:
        self._send(twilio.encodeConnected())
        self._send(
            twilio.encodeStart(
                self.streamSid, self.callSid, self.accountSid, self.parameters, self._next()
            )
        )

    def sendFrame(self, index: int, now: float) -> None:
        audio = self.audio
        payload = audio.base64[index] if index < len(audio) else audio.silence64
        self._send(
            twilio.encodeInboundMedia(self.streamSid, payload, self._next(), index + 1, index * 20)
        )

    def sendDtmf(self, digit: str) -> None:
        self._send(twilio.encodeDtmf(self.streamSid, digit, self._next()))

    def _echoMark(self, name: str) -> None:
        self.counters["marks"] += 1
        self._send(twilio.encodeMark(self.streamSid, name, self._next()))

    def ticked(self, now: float, frames: int) -> None:
        for name in self.playout.due(now):
            self._echoMark(name)

    def received(self, data: bytes, isBinary: bool) -> None:
        if isBinary:
            self.protocolError("binary message on a Twilio stream (Twilio sends and takes text)")
            return
        try:
            message = twilio.decode(data)
        except twilio.ProtocolError as e:
            self.protocolError(f"bad message from the gateway: {e}")
            return
        now = self.clock.seconds()
        if isinstance(message, twilio.Media):
            self.playout.audio(now, message.payload)
        elif isinstance(message, twilio.Mark):
            if self.playout.mark(now, message.name):
                self._echoMark(message.name)
        elif isinstance(message, twilio.Unknown) and message.event == "clear":
            self.counters["clears"] += 1
            for name in self.playout.clear(now):
                self._echoMark(name)
        else:
            self.counters["unknown"] += 1

    def goodbye(self) -> None:
        self._send(twilio.encodeStop(self.streamSid, self._next(), self.accountSid, self.callSid))
        super().goodbye()


class TwilioCall(SimCall):
    """
    A Twilio inbound call: voice webhook, TwiML, Media Stream.
    """

    transport = "twilio"

    @classmethod
    def wireFormat(cls, options: CallOptions) -> WireFormat:
        return wireFormat("ulaw", 8000)

    async def connect(self, result: CallResult) -> MediaStream:
        options, env = self.options, self.env
        url = f"{options.gateway.rstrip('/')}/v1/talk/twilio/call/{options.assistant}"
        callSid, accountSid = sid("CA"), sid("AC")
        form = {
            "CallSid": callSid,
            "AccountSid": accountSid,
            "From": options.caller,
            "To": options.callee,
            "CallStatus": "ringing",
            "Direction": "inbound",
            "ApiVersion": "2010-04-01",
        }
        headers = {}
        if options.authToken:
            signed = {k: [v] for k, v in form.items()}
            headers["X-Twilio-Signature"] = twilioSignature(options.authToken, url, signed)
        _, body = await webhook(env, "POST", url, options.timeout, form, headers)
        streamURL, parameters = parseTwiml(body)
        result.contextId = urlsplit(streamURL).path.rstrip("/").rsplit("/", 1)[-1] or None
        if options.token is not None:
            parameters["token"] = options.token
        stream = TwilioStream(
            env.clock, env.ticker, self.audio(), options.plan, parameters, callSid, accountSid
        )
        result.stream = stream
        upgrade = {}
        if options.authToken:
            upgrade["X-Twilio-Signature"] = twilioSignature(options.authToken, streamURL, {})
        await env.connector.webSocket(streamURL, upgrade, stream, options.timeout)
        return stream
