# -*- test-case-name: tests.test_sim -*-
"""
Exotel's part (protocols.md §3): the Voicebot applet's dynamic-URL
webhook (C{{"url": "wss://..."}}), HTTP Basic from the URL's user info,
and the stream: C{connected}, C{start} (the URL's query parameters as
C{custom_parameters}, PCM16 8 kHz by default), base64 PCM C{media} in
20 ms chunks (or Exotel's documented ~100 ms), C{dtmf}, mark echoes,
C{clear}, C{stop}.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from twisted.internet.interfaces import IReactorTime

from ..providers.exotel import _codec as exotel
from ..providers.twilio._codec import ProtocolError, base64Text
from ._audio import PreparedAudio, WireFormat, wireFormat
from ._base import CallOptions, CallPlan, CallResult, MediaStream, SimError, WebhookError
from ._call import SimCall
from ._net import webhook
from ._record import Playout
from ._ticker import Ticker
from ._twilio import sid

__all__ = ["ExotelCall", "ExotelStream", "parseStreamURL"]


def parseStreamURL(body: bytes) -> tuple[str, dict[str, str], tuple[str, str] | None]:
    """
    The Voicebot applet's answer: the stream URL (user info removed), its
    query parameters, and the HTTP Basic credentials from its user info.

    @raise WebhookError: not C{{"url": "ws(s)://..."}}.
    """
    try:
        url = json.loads(body)["url"]
    except (ValueError, KeyError, TypeError):
        raise WebhookError('answer is not {"url": ...}') from None
    if type(url) is not str or not url.startswith(("ws://", "wss://")):
        raise WebhookError(f"answer URL is not a WebSocket URL: {str(url)[:60]!r}")
    parts = urlsplit(url)
    credentials = None
    if parts.username is not None:
        credentials = (unquote(parts.username), unquote(parts.password or ""))
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit(parts._replace(netloc=netloc)), params, credentials


class ExotelStream(MediaStream):
    """
    Exotel's side of one Voicebot stream.

    @ivar chunkFrames: 20 ms frames per C{media} message.
    """

    transport = "exotel"

    def __init__(
        self,
        clock: IReactorTime,
        ticker: Ticker,
        audio: PreparedAudio,
        plan: CallPlan,
        customParameters: Mapping[str, str],
        caller: str,
        callee: str,
        chunkFrames: int = 1,
    ) -> None:
        super().__init__(clock, ticker, audio, plan)
        if chunkFrames < 1:
            raise ValueError("chunkFrames must be at least 1")
        self.customParameters = dict(customParameters)
        self.caller, self.callee = caller, callee
        self.streamSid, self.callSid, self.accountSid = sid("MZ"), sid("CA"), sid("AC")
        self.chunkFrames = chunkFrames
        self.playout: Playout[str] = Playout(self.recorder)
        self._sequence = 1
        self._chunk = 0
        self._pending: list[bytes] = []
        self._pendingFrom = 0

    def _next(self) -> int:
        number = self._sequence
        self._sequence += 1
        return number

    def _send(self, text: str) -> None:
        assert self.channel is not None
        self.channel.sendText(text)

    def started(self) -> None:
        fmt = self.audio.format
        self._send(exotel.encodeConnected())
        self._send(
            exotel.encodeStart(
                self.streamSid,
                self.callSid,
                self.accountSid,
                self.caller,
                self.callee,
                self.customParameters,
                "audio/x-mulaw" if fmt.codec == "ulaw" else "audio/x-raw",
                fmt.rate,
                sequenceNumber=self._next(),
            )
        )

    def _media(self, payload: bytes | str, firstFrame: int) -> None:
        self._chunk += 1
        self._send(
            exotel.encodeMedia(self.streamSid, payload, self._next(), self._chunk, firstFrame * 20)
        )

    def sendFrame(self, index: int, now: float) -> None:
        if self.chunkFrames == 1:
            audio = self.audio
            self._media(audio.base64[index] if index < len(audio) else audio.silence64, index)
            return
        if not self._pending:
            self._pendingFrom = index
        self._pending.append(self.frameIndexPayload(index))
        if len(self._pending) == self.chunkFrames:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._media(base64Text(b"".join(self._pending)), self._pendingFrom)
            self._pending.clear()

    def sendDtmf(self, digit: str) -> None:
        self._send(exotel.encodeDtmf(self.streamSid, digit, self._next()))

    def _echoMark(self, name: str) -> None:
        self.counters["marks"] += 1
        self._send(exotel.encodeMark(self.streamSid, name, self._next()))

    def ticked(self, now: float, frames: int) -> None:
        for name in self.playout.due(now):
            self._echoMark(name)

    def received(self, data: bytes, isBinary: bool) -> None:
        if isBinary:
            self.protocolError("binary message on an Exotel stream (Exotel takes JSON text)")
            return
        try:
            message = exotel.decode(data)
        except ProtocolError as e:
            self.protocolError(f"bad message from the gateway: {e}")
            return
        now = self.clock.seconds()
        if isinstance(message, exotel.Media):
            if len(message.payload) % exotel.CHUNK_UNIT:
                self.counters["offChunkRule"] += 1  # Exotel waits 20 ms after a short chunk
            self.playout.audio(now, message.payload)
        elif isinstance(message, exotel.Mark):
            if self.playout.mark(now, message.name):
                self._echoMark(message.name)
        elif isinstance(message, exotel.Clear):
            self.counters["clears"] += 1
            for name in self.playout.clear(now):
                self._echoMark(name)
        else:
            self.counters["unknown"] += 1

    def goodbye(self) -> None:
        self._flush()
        self._send(exotel.encodeStop(self.streamSid, self._next(), self.callSid, self.accountSid))
        super().goodbye()


class ExotelCall(SimCall):
    """
    An Exotel call through a Voicebot applet with a dynamic URL.
    """

    transport = "exotel"

    @classmethod
    def wireFormat(cls, options: CallOptions) -> WireFormat:
        return wireFormat("pcm16", options.rate or 8000)

    async def connect(self, result: CallResult) -> MediaStream:
        options, env = self.options, self.env
        callSid = sid("")
        query = urlencode(
            {
                "CallSid": callSid,
                "CallFrom": options.caller,
                "CallTo": options.callee,
                "Direction": "incoming",
            }
        )
        url = f"{options.gateway.rstrip('/')}/v1/talk/exotel/call/{options.assistant}?{query}"
        _, body = await webhook(env, "GET", url, options.timeout)
        streamURL, params, credentials = parseStreamURL(body)
        result.contextId = urlsplit(streamURL).path.rstrip("/").rsplit("/", 1)[-1] or None
        fmt = self.wireFormat(options)
        rate = params.get("sample-rate")
        if rate is not None:
            # the applet URL's sample-rate decides, as on Exotel
            try:
                fmt = wireFormat(fmt.codec, int(rate))
            except ValueError:
                raise SimError(f"the stream URL asks for sample-rate {rate[:12]!r}") from None
        if options.token is not None:
            params["token"] = options.token
            streamURL = urlunsplit(urlsplit(streamURL)._replace(query=urlencode(params)))
        custom = {k: v for k, v in params.items() if k != "sample-rate"}
        if options.username is not None:
            credentials = (options.username, options.password or "")
        headers = {}
        if credentials is not None:
            basic = base64.b64encode(":".join(credentials).encode("utf-8")).decode("ascii")
            headers["Authorization"] = "Basic " + basic
        stream = ExotelStream(
            env.clock,
            env.ticker,
            self.audio(fmt),
            options.plan,
            custom,
            options.caller,
            options.callee,
            max(1, options.chunkMs // 20),
        )
        result.stream = stream
        await env.connector.webSocket(streamURL, headers, stream, options.timeout)
        return stream
