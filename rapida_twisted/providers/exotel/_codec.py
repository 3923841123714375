# -*- test-case-name: tests.test_codec_exotel -*-
"""
Exotel Voicebot / Stream applet wire codec (protocols.md §3.2-§3.5).

Exotel's messages are Twilio's with snake_case keys, so L{Connected},
L{Media}, L{Mark}, L{Dtmf} and L{Unknown} are the Twilio codec's classes.
Payloads are 16-bit little-endian PCM unless C{start.media_format} says
μ-law (§3.4). L{ExotelChunker} cuts outbound audio to §3.5's chunk rules.

Pure: no reactor, no logging, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from .._json import (
    BAD_VALUE,
    MISSING_FIELD,
    ProtocolError,
    Unknown,
    base64Text,
    decodeEvent,
    dtmfDigit,
    dumps,
    optionalInt,
    optionalObject,
    optionalStr,
    quote,
    requireObject,
    splitMediaType,
    stringMap,
)
from ..twilio._codec import (
    Connected,
    Dtmf,
    Mark,
    Media,
    connectedMessage,
    dtmfMessage,
    markMessage,
    mediaMessage,
)

__all__ = [
    "PCM16",
    "ULAW",
    "MAX_MESSAGE_SIZE",
    "CHUNK_UNIT",
    "MIN_CHUNK",
    "MAX_CHUNK",
    "ProtocolError",
    "Connected",
    "Start",
    "Media",
    "Mark",
    "Dtmf",
    "Clear",
    "Stop",
    "Unknown",
    "Message",
    "decode",
    "parseEncoding",
    "encodeMedia",
    "encodeMark",
    "encodeClear",
    "encodeConnected",
    "encodeStart",
    "encodeDtmf",
    "encodeStop",
    "ExotelChunker",
]

#: L{Start.encoding}: 16-bit signed little-endian linear PCM (the default).
PCM16: Final = "pcm16"
#: L{Start.encoding}: G.711 μ-law.
ULAW: Final = "ulaw"

#: Largest inbound text message accepted: media arrives in chunks of about
#: 100 ms (6.4 KB of base64 at 24 kHz); this leaves a wide margin.
MAX_MESSAGE_SIZE: Final = 256 * 1024

#: §3.5: outbound payloads are a multiple of 320 bytes, at least 3.2 KB and
#: at most 100 KB (rounded down to a multiple of 320).
CHUNK_UNIT: Final = 320
MIN_CHUNK: Final = 3200
MAX_CHUNK: Final = 100_000 // CHUNK_UNIT * CHUNK_UNIT

# Media type names (without "audio/", lower-cased) per encoding, §3.4.
_ENCODINGS: Final[Mapping[str, str]] = {
    **dict.fromkeys(
        ("raw", "x-raw", "linear16", "l16", "x-l16", "slin", "pcm", "pcm16", "s16le"), PCM16
    ),
    **dict.fromkeys(("mulaw", "x-mulaw", "ulaw", "mu-law", "pcmu", "g711_ulaw"), ULAW),
}


@dataclass(frozen=True, slots=True)
class Start:
    """
    C{start}: stream metadata, sent once after L{Connected}.

    @ivar streamSid: from C{stream_sid} or C{streamSid}, in C{start} or at
        the top level.
    @ivar customParameters: the stream URL's extra query parameters,
        including the per-call C{token}.
    @ivar encoding: L{PCM16} or L{ULAW}, normalised from
        C{media_format.encoding} (L{PCM16} when absent).
    @ivar sampleRate: C{media_format.sample_rate}, else the encoding's
        C{rate=} parameter, else 8000.
    @ivar bitRate: C{media_format.bit_rate} as sent (C{16} or C{128}), if any.
    @ivar mediaEncoding: C{media_format.encoding} exactly as sent, for logs.
    """

    streamSid: str
    callSid: str | None
    accountSid: str | None
    from_: str | None
    to: str | None
    customParameters: Mapping[str, str]
    encoding: str
    sampleRate: int
    bitRate: int | None
    mediaEncoding: str | None

    @property
    def token(self) -> str | None:
        """
        The per-call C{token} custom parameter, if sent.
        """
        return self.customParameters.get("token")


@dataclass(frozen=True, slots=True)
class Clear:
    """
    C{clear}: Exotel reports that queued audio was cleared.
    """


@dataclass(frozen=True, slots=True)
class Stop:
    """
    C{stop}: the last message.

    @ivar reason: C{stopped} (the applet ended) or C{callended} (the caller
        hung up), if sent.
    """

    callSid: str | None = None
    accountSid: str | None = None
    reason: str | None = None


Message = Connected | Start | Media | Mark | Dtmf | Clear | Stop | Unknown


def parseEncoding(value: str) -> tuple[str, int | None]:
    """
    Normalise a C{media_format.encoding} (C{audio/x-raw}, C{raw},
    C{linear16}, C{audio/L16;rate=16000}, C{audio/x-mulaw;rate=8000}, ...).

    @return: L{PCM16} or L{ULAW}, and the C{rate=} parameter if present.
    @raise ProtocolError: an encoding that is neither (L{BAD_VALUE}).
    """
    mime, params = splitMediaType(value)
    name = mime.removeprefix("audio/")
    encoding = _ENCODINGS.get(name)
    if encoding is None:
        raise ProtocolError(BAD_VALUE, f"unsupported media encoding {value[:40]!r}")
    rate = params.get("rate")
    if rate is None:
        return encoding, None
    if rate.isascii() and rate.isdigit() and len(rate) <= 6 and int(rate) > 0:
        return encoding, int(rate)
    raise ProtocolError(BAD_VALUE, f"bad rate in media encoding {value[:40]!r}")


def _streamSid(obj: Mapping[str, Any], where: str) -> str | None:
    sid = optionalStr(obj, "stream_sid", where + "stream_sid")
    if sid is None:
        sid = optionalStr(obj, "streamSid", where + "streamSid")
    return sid


def _start(obj: dict[str, Any]) -> Start:
    start = requireObject(obj, "start", "start")
    streamSid = _streamSid(start, "start.") or _streamSid(obj, "")
    if streamSid is None:
        raise ProtocolError(MISSING_FIELD, "start.stream_sid is required")
    fmt = optionalObject(start, "media_format", "start.media_format") or {}
    mediaEncoding = optionalStr(fmt, "encoding", "start.media_format.encoding")
    encoding, rate = PCM16, None
    if mediaEncoding:
        encoding, rate = parseEncoding(mediaEncoding)
    sampleRate = optionalInt(fmt, "sample_rate", "start.media_format.sample_rate")
    if sampleRate is None:
        sampleRate = 8000 if rate is None else rate
    if sampleRate <= 0:
        raise ProtocolError(BAD_VALUE, "start.media_format.sample_rate must be positive")
    return Start(
        streamSid=streamSid,
        callSid=optionalStr(start, "call_sid", "start.call_sid"),
        accountSid=optionalStr(start, "account_sid", "start.account_sid"),
        from_=optionalStr(start, "from", "start.from"),
        to=optionalStr(start, "to", "start.to"),
        customParameters=stringMap(start, "custom_parameters", "start.custom_parameters"),
        encoding=encoding,
        sampleRate=sampleRate,
        bitRate=optionalInt(fmt, "bit_rate", "start.media_format.bit_rate"),
        mediaEncoding=mediaEncoding,
    )


_CLEAR: Final = Clear()


def _clear(obj: dict[str, Any]) -> Clear:
    return _CLEAR


def _stop(obj: dict[str, Any]) -> Stop:
    stop = optionalObject(obj, "stop", "stop") or {}
    return Stop(
        optionalStr(stop, "call_sid", "stop.call_sid"),
        optionalStr(stop, "account_sid", "stop.account_sid"),
        optionalStr(stop, "reason", "stop.reason"),
    )


_DECODERS: Final[Mapping[str, Callable[[dict[str, Any]], Message]]] = {
    "media": mediaMessage,
    "connected": connectedMessage,
    "start": _start,
    "dtmf": dtmfMessage,
    "mark": markMessage,
    "clear": _clear,
    "stop": _stop,
}


def decode(text: str | bytes, maxSize: int = MAX_MESSAGE_SIZE) -> Message:
    """
    Decode one Exotel → server text message.

    Unknown event names give L{Unknown}; unknown keys are ignored; numbers
    may arrive as JSON numbers or strings.

    @param text: the WebSocket text message (C{str} or UTF-8 C{bytes}).
    @raise ProtocolError: oversized, not JSON, not an object, a missing
        required field, a field of the wrong type, an unsupported encoding,
        or bad base64.
    """
    return decodeEvent(text, maxSize, _DECODERS)


def encodeMedia(
    streamSid: str,
    payload: bytes | str,
    sequenceNumber: int | None = None,
    chunk: int | None = None,
    timestamp: int | None = None,
) -> str:
    """
    C{media}: audio to play to the caller (Voicebot applet only), or, with
    the counters, caller audio as Exotel sends it (simulator side).

    The optional counters are emitted as decimal strings, the way Exotel
    sends its own, and omitted when L{None}.

    @param payload: one chunk, normally from L{ExotelChunker}; or its
        base64 text when encoded ahead of time.
    """
    if not isinstance(payload, str):
        payload = base64Text(payload)
    parts = ['{"event":"media","stream_sid":', quote(streamSid)]
    if sequenceNumber is not None:
        parts.append(f',"sequence_number":"{sequenceNumber:d}"')
    parts.append(',"media":{')
    if chunk is not None:
        parts.append(f'"chunk":"{chunk:d}",')
    if timestamp is not None:
        parts.append(f'"timestamp":"{timestamp:d}",')
    parts += ['"payload":"', payload, '"}}']
    return "".join(parts)


def encodeMark(streamSid: str, name: str, sequenceNumber: int | None = None) -> str:
    """
    C{mark}: Exotel echoes it back as L{Mark} once the audio before it has
    played.

    @param sequenceNumber: given, the echo as Exotel sends it (simulator
        side).
    """
    if sequenceNumber is None:
        return dumps({"event": "mark", "stream_sid": streamSid, "mark": {"name": name}})
    return dumps(
        {
            "event": "mark",
            "sequence_number": str(sequenceNumber),
            "stream_sid": streamSid,
            "mark": {"name": name},
        }
    )


def encodeClear(streamSid: str) -> str:
    """
    C{clear}: drop the queued audio that has not started playing.
    """
    return '{"event":"clear","stream_sid":' + quote(streamSid) + "}"


# Exotel → server (the simulator's side, protocols.md §3.2)

_CONNECTED: Final = '{"event":"connected"}'


def encodeConnected() -> str:
    """
    C{connected}, the first message Exotel sends on a stream.
    """
    return _CONNECTED


def encodeStart(
    streamSid: str,
    callSid: str,
    accountSid: str,
    from_: str,
    to: str,
    customParameters: Mapping[str, str],
    encoding: str = "audio/x-raw",
    sampleRate: int = 8000,
    bitRate: int = 16,
    sequenceNumber: int = 1,
) -> str:
    """
    C{start} as Exotel sends it; numbers in C{media_format} are decimal
    strings, as in Exotel's documentation.

    @param customParameters: the stream URL's query parameters (with the
        per-call C{token}).
    """
    return dumps(
        {
            "event": "start",
            "sequence_number": str(sequenceNumber),
            "stream_sid": streamSid,
            "start": {
                "stream_sid": streamSid,
                "call_sid": callSid,
                "account_sid": accountSid,
                "from": from_,
                "to": to,
                "custom_parameters": dict(customParameters),
                "media_format": {
                    "encoding": encoding,
                    "sample_rate": str(sampleRate),
                    "bit_rate": str(bitRate),
                },
            },
        }
    )


def encodeDtmf(streamSid: str, digit: str, sequenceNumber: int, duration: int = 100) -> str:
    """
    C{dtmf}: one key press, C{duration} in milliseconds.

    @raise ProtocolError: not exactly one DTMF symbol (L{BAD_VALUE}).
    """
    return dumps(
        {
            "event": "dtmf",
            "sequence_number": str(sequenceNumber),
            "stream_sid": streamSid,
            "dtmf": {"digit": dtmfDigit(digit, "digit"), "duration": str(duration)},
        }
    )


def encodeStop(
    streamSid: str,
    sequenceNumber: int,
    callSid: str | None = None,
    accountSid: str | None = None,
    reason: str = "callended",
) -> str:
    """
    C{stop}: the last message; C{reason} is C{callended} (the caller hung
    up) or C{stopped} (the applet ended).
    """
    stop = {
        k: v
        for k, v in (("call_sid", callSid), ("account_sid", accountSid), ("reason", reason))
        if v is not None
    }
    return dumps(
        {
            "event": "stop",
            "sequence_number": str(sequenceNumber),
            "stream_sid": streamSid,
            "stop": stop,
        }
    )


class ExotelChunker:
    """
    Cut outbound audio into chunks that follow Exotel's rules (§3.5): a
    multiple of C{unit} bytes, at least C{minimum}, at most C{maximum}.

    It holds audio back only as long as the rules force: as soon as at
    least C{minimum} bytes are buffered, every whole unit buffered goes
    out (split evenly into as few chunks as C{maximum} allows), and only a
    tail shorter than a unit, or shorter than C{minimum}, waits.

    Pure and synchronous: the caller feeds bytes and sends what comes out.
    Lower C{maximum} (the "outbound chunk size" setting) to make C{clear}
    crisper at the cost of more messages.
    """

    def __init__(
        self,
        minimum: int = MIN_CHUNK,
        maximum: int = MAX_CHUNK,
        silence: bytes = b"\x00",
        unit: int = CHUNK_UNIT,
    ) -> None:
        """
        @param silence: one byte of silence for padding: C{b"\\x00"} for
            PCM16, C{b"\\xff"} for μ-law.
        @raise ValueError: sizes that are not positive multiples of C{unit}
            with C{minimum <= maximum}, or C{silence} not one byte.
        """
        if unit <= 0 or minimum <= 0 or minimum % unit or maximum % unit:
            raise ValueError("chunk sizes must be positive multiples of the unit")
        if maximum < minimum:
            raise ValueError("maximum chunk size is below the minimum")
        if len(silence) != 1:
            raise ValueError("silence must be one byte")
        self.unit = unit
        self.minimum = minimum
        self.maximum = maximum
        self._silence = silence
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """
        Bytes held back, waiting for more audio or L{flush}.
        """
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """
        Add audio; return the chunks that may be sent now (often none).
        """
        buffer = self._buffer
        buffer += data
        if len(buffer) < self.minimum:
            return []
        unit = self.unit
        units = len(buffer) // unit
        minUnits = self.minimum // unit
        maxUnits = self.maximum // unit
        count = -(-units // maxUnits)
        if count * minUnits > units:
            # Only when maximum < 2 * minimum: fewer, full-size chunks.
            count = units // minUnits
            units = count * maxUnits
        base, extra = divmod(units, count)
        chunks = []
        offset = 0
        for i in range(count):
            size = (base + (i < extra)) * unit
            chunks.append(bytes(buffer[offset : offset + size]))
            offset += size
        del buffer[:offset]
        return chunks

    def flush(self, padToMinimum: bool = True) -> list[bytes]:
        """
        End of an utterance: send what is held back, padded with silence to
        a whole unit and, unless C{padToMinimum} is false, to C{minimum}.
        """
        chunks = self.feed(b"")
        tail = len(self._buffer)
        if tail:
            size = -(-tail // self.unit) * self.unit
            if padToMinimum:
                size = max(size, self.minimum)
            self._buffer += self._silence * (size - tail)
            chunks.append(bytes(self._buffer))
            self._buffer.clear()
        return chunks

    def clear(self) -> int:
        """
        Barge-in: drop what is held back.

        @return: the number of bytes dropped.
        """
        dropped = len(self._buffer)
        self._buffer.clear()
        return dropped
