# -*- test-case-name: tests.test_exotel_media -*-
"""
The Exotel Voicebot applet adapter (protocols.md §3.2-§3.6): translates
the stream's JSON messages into call-session events and the session's
audio, marks and clears back. The life cycle (token, claim, close codes,
malformed input, timeouts) is
L{rapida_twisted.providers._stream.StreamAdapter}'s; HTTP Basic and the
source allowlist were checked at the upgrade.

  - C{connected}: noted. C{start} (C{stream_sid} or C{streamSid}): the
    per-call token, from C{custom_parameters.token} or else the upgrade
    URL's C{?token=}, must match the context (else close 4403); the
    context is claimed; the wire format follows C{media_format}: 16-bit
    little-endian PCM at 8 kHz by default, 16 k or 24 k, or μ-law when
    its encoding says so. Other messages before C{start}: close 4400.
  - C{media} → audio (PCM payloads of odd length are malformed),
    C{dtmf} → digits, C{mark} → acknowledgements, C{clear} noted,
    C{stop} → a provider hang-up. Binary messages are malformed.
  - Outbound audio goes through an L{ExotelChunker} (§3.5: a multiple of
    320 bytes, at least the minimum, at most 100 KB): a chunk leaves as
    soon as the minimum is buffered; before a mark (a response's end)
    the tail is padded with silence to the minimum and sent. C{clear}
    empties the chunker and Exotel's queue.
  - Hang-up: Exotel has no REST hang-up for a stream; the socket is
    closed (the Voicebot applet ends and the flow goes on).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ...call import AudioFormat, FormatError
from .._json import BAD_AUDIO, WRONG_TYPE, ProtocolError, Unknown
from .._stream import StreamAdapter
from ._codec import (
    CHUNK_UNIT,
    MAX_CHUNK,
    MIN_CHUNK,
    ULAW,
    Clear,
    Connected,
    Dtmf,
    ExotelChunker,
    Mark,
    Media,
    Message,
    Start,
    Stop,
    decode,
    encodeClear,
    encodeMark,
    encodeMedia,
)

__all__ = ["ExotelMediaAdapter", "minimumChunk"]

_NAMES: Final = {
    Media: "media",
    Mark: "mark",
    Dtmf: "dtmf",
    Clear: "clear",
    Stop: "stop",
    Start: "start",
    Connected: "connected",
}

_BINARY: Final = ProtocolError(WRONG_TYPE, "binary message: Exotel streams send JSON text")


def minimumChunk(wire: AudioFormat, chunkMs: int | None) -> int:
    """
    The smallest outbound chunk: Exotel's documented 3.2 KB, or
    C{chunkMs} of C{wire} audio rounded up to a multiple of 320 bytes.
    """
    if chunkMs is None:
        return MIN_CHUNK
    size = max(wire.bytesFor(chunkMs), 1)
    return min(-(-size // CHUNK_UNIT) * CHUNK_UNIT, MAX_CHUNK)


def _token(start: Start, query: Mapping[str, list[str]] | None) -> str | None:
    """
    The per-call token: the start message's custom parameter, else the
    upgrade URL's C{?token=}.
    """
    token = start.token
    if not token and query:
        values = query.get("token") or []
        token = values[0] if values else None
    return token


class ExotelMediaAdapter(StreamAdapter):
    """
    One Exotel Voicebot stream (see L{StreamAdapter} for the other
    parameters).

    @param chunkMs: the minimum outbound chunk in milliseconds of the
        stream's audio (rounded up to 320 bytes); None: Exotel's 3.2 KB.
    @param maxChunk: the largest outbound chunk in bytes (a multiple of
        320; lower it for crisper barge-in at the cost of more messages).

    @ivar streamSid: the stream's sid, from C{start}.
    @ivar chunker: the L{ExotelChunker} (once started).
    """

    name = "exotel"
    startEvent = "start"
    notHeld = (Connected,)

    def __init__(
        self, *args: Any, chunkMs: int | None = None, maxChunk: int = MAX_CHUNK, **kw: Any
    ) -> None:
        if chunkMs is not None and chunkMs <= 0:
            raise ValueError("chunkMs must be positive")
        if maxChunk <= 0 or maxChunk % CHUNK_UNIT:
            raise ValueError(f"maxChunk must be a positive multiple of {CHUNK_UNIT}")
        super().__init__(*args, **kw)
        self.streamSid = ""
        self.chunker: ExotelChunker | None = None
        self._chunkMs = chunkMs
        self._maxChunk = maxChunk
        self._pcm = True
        self.cleared = 0

    # --- wire → session ----------------------------------------------------------

    def decode(self, payload: bytes, isBinary: bool) -> Message:
        if isBinary:
            raise _BINARY
        message = decode(payload)
        if type(message) is Media and self._pcm and len(message.payload) & 1:
            raise ProtocolError(
                BAD_AUDIO, f"PCM media payload of odd length {len(message.payload)}"
            )
        return message

    def describe(self, message: Any) -> str:
        return _NAMES.get(type(message), "message")

    def waiting(self, message: Any) -> bool:
        kind = type(message)
        if kind is Connected:
            return True
        if kind is not Start:
            return False
        start: Start = message
        ulaw = start.encoding == ULAW
        wire: AudioFormat | FormatError
        try:
            wire = AudioFormat("ulaw" if ulaw else "l16", start.sampleRate)
            minimum = minimumChunk(wire, self._chunkMs)
            self.chunker = ExotelChunker(minimum, max(minimum, self._maxChunk), wire.silence[:1])
        except FormatError as e:
            wire = e
        self._pcm = not ulaw
        self.streamSid = start.streamSid
        self._log.info(
            "exotel stream {stream_sid}: media_format {encoding!r} at {sample_rate} Hz",
            stream_sid=start.streamSid,
            encoding=start.mediaEncoding,
            sample_rate=start.sampleRate,
        )
        query = self._request.query if self._request is not None else None
        self.begin(
            _token(start, query),
            wire,
            {"stream_sid": start.streamSid, "call_sid": start.callSid or ""},
            start.callSid,
        )
        return True

    def running(self, message: Any) -> None:
        session = self.session
        assert session is not None
        kind = type(message)
        if kind is Media:
            session.audioReceived(message.payload)
        elif kind is Mark:
            session.markAcknowledged(message.name)
        elif kind is Dtmf:
            session.dtmfReceived(message.digit)
        elif kind is Stop:
            if message.callSid and not self.channelId:
                self.channelId = message.callSid
            self.stopped(f"stop: {message.reason}" if message.reason else "stop")
        elif kind is Clear:
            self.cleared += 1
        elif kind is Unknown:
            self.unknown(message)
        elif kind is Start:
            self.duplicateStart()

    # --- session → wire --------------------------------------------------------------

    def sendAudio(self, frame: bytes) -> None:
        chunker = self.chunker
        assert chunker is not None
        for chunk in chunker.feed(frame):
            self._channel.sendText(encodeMedia(self.streamSid, chunk))

    def sendMark(self, name: str) -> None:
        """
        The audio held back goes first (padded to the minimum), then the
        mark.
        """
        chunker = self.chunker
        assert chunker is not None
        send = self._channel.sendText
        for chunk in chunker.flush():
            send(encodeMedia(self.streamSid, chunk))
        send(encodeMark(self.streamSid, name))

    def sendClear(self) -> None:
        if self.chunker is not None:
            self.chunker.clear()
        self._channel.sendText(encodeClear(self.streamSid))
