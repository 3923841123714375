# -*- test-case-name: tests.test_codec_twilio -*-
"""
Twilio Media Streams wire codec (protocols.md §1.5-§1.6).

Pure: JSON text in, small frozen message objects out, and JSON text back.
No reactor, no logging, no I/O.

This module is also the home of the JSON wire helpers the Vonage and Exotel
codecs share (L{ProtocolError}, L{loadObject}, the field readers and
L{quote}); they are public here so the sibling codecs can import them
without reaching into private names.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, TypeVar

# ---------------------------------------------------------------------------
# Shared JSON wire helpers (used by the Vonage and Exotel codecs too)
# ---------------------------------------------------------------------------

#: L{ProtocolError.code} values.
TOO_LARGE: Final = "too_large"
BAD_JSON: Final = "bad_json"
NOT_OBJECT: Final = "not_object"
MISSING_FIELD: Final = "missing_field"
WRONG_TYPE: Final = "wrong_type"
BAD_VALUE: Final = "bad_value"
BAD_BASE64: Final = "bad_base64"
BAD_AUDIO: Final = "bad_audio"

#: The DTMF symbols a telephone keypad can send (RFC 4733 events 0-15).
DTMF_DIGITS: Final = frozenset("0123456789*#ABCD")

_EMPTY: Final[Mapping[str, str]] = MappingProxyType({})
_COMPACT: Final = (",", ":")
_JSON_SPACE: Final = " \t\n\r"
_rawDecode = json.JSONDecoder().raw_decode
_b64decode = binascii.a2b_base64
_b64encode = binascii.b2a_base64


class ProtocolError(ValueError):
    """
    A provider message that cannot be decoded.

    The WebSocket layer maps it to a close code (1007 or 4400).

    @ivar code: a short machine-readable code, one of L{TOO_LARGE},
        L{BAD_JSON}, L{NOT_OBJECT}, L{MISSING_FIELD}, L{WRONG_TYPE},
        L{BAD_VALUE}, L{BAD_BASE64}, L{BAD_AUDIO}.
    @ivar reason: a human-readable explanation naming the field.
    """

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.code}: {self.reason}"


def loadObject(text: str | bytes, maxSize: int) -> dict[str, Any]:
    """
    Parse one WebSocket text message that must hold a JSON object.

    @param text: the message, as C{str} or UTF-8 C{bytes}.
    @param maxSize: the largest accepted length (characters or bytes).
    @raise ProtocolError: oversized (L{TOO_LARGE}), not UTF-8 or not JSON
        (L{BAD_JSON}), or not an object (L{NOT_OBJECT}).
    """
    if len(text) > maxSize:
        raise ProtocolError(TOO_LARGE, f"message of {len(text)} exceeds {maxSize}")
    if not isinstance(text, str):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(BAD_JSON, "message is not valid UTF-8") from None
    start = 0
    if text and text[0] in _JSON_SPACE:
        start = len(text) - len(text.lstrip(_JSON_SPACE))
    try:
        obj, end = _rawDecode(text, start)
    except json.JSONDecodeError as e:
        raise ProtocolError(BAD_JSON, e.msg) from None
    except RecursionError:
        raise ProtocolError(BAD_JSON, "JSON nested too deeply") from None
    if end != len(text) and text[end:].strip(_JSON_SPACE):
        raise ProtocolError(BAD_JSON, "extra data after the JSON value")
    if type(obj) is not dict:
        raise ProtocolError(NOT_OBJECT, "message is not a JSON object")
    return obj


def eventName(obj: Mapping[str, Any], key: str = "event") -> str:
    """
    The message's event name.

    @raise ProtocolError: missing or not a string.
    """
    return requireStr(obj, key, key)


def requireObject(parent: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    """
    C{parent[key]}, which must be a JSON object.

    @param where: the field's dotted path, for error messages.
    @raise ProtocolError: missing (L{MISSING_FIELD}) or of another type
        (L{WRONG_TYPE}).
    """
    value = parent.get(key)
    if type(value) is dict:
        return value
    if value is None:
        raise ProtocolError(MISSING_FIELD, f"{where} is required")
    raise ProtocolError(WRONG_TYPE, f"{where} must be an object")


def optionalObject(parent: Mapping[str, Any], key: str, where: str) -> dict[str, Any] | None:
    """
    C{parent[key]} if it is a JSON object, L{None} if absent or null.

    @raise ProtocolError: present with another type (L{WRONG_TYPE}).
    """
    value = parent.get(key)
    if value is None or type(value) is dict:
        return value
    raise ProtocolError(WRONG_TYPE, f"{where} must be an object")


def requireStr(parent: Mapping[str, Any], key: str, where: str) -> str:
    """
    C{parent[key]}, which must be a string.

    @raise ProtocolError: missing (L{MISSING_FIELD}) or of another type
        (L{WRONG_TYPE}).
    """
    value = parent.get(key)
    if type(value) is str:
        return value
    if value is None:
        raise ProtocolError(MISSING_FIELD, f"{where} is required")
    raise ProtocolError(WRONG_TYPE, f"{where} must be a string")


def optionalStr(parent: Mapping[str, Any], key: str, where: str) -> str | None:
    """
    C{parent[key]} if it is a string, L{None} if absent or null.

    @raise ProtocolError: present with another type (L{WRONG_TYPE}).
    """
    value = parent.get(key)
    if value is None or type(value) is str:
        return value
    raise ProtocolError(WRONG_TYPE, f"{where} must be a string")


def toInt(value: object, where: str) -> int:
    """
    An integer sent as a JSON number or as a decimal string (providers do
    both, protocols.md §0).

    @raise ProtocolError: a boolean, container or non-integral number
        (L{WRONG_TYPE}), or a string that is not an integer (L{BAD_VALUE}).
    """
    if type(value) is int:
        return value
    if type(value) is str:
        try:
            return int(value)
        except ValueError:
            raise ProtocolError(BAD_VALUE, f"{where} is not an integer") from None
    if type(value) is float and value.is_integer():
        return int(value)
    raise ProtocolError(WRONG_TYPE, f"{where} must be an integer")


def optionalInt(parent: Mapping[str, Any], key: str, where: str) -> int | None:
    """
    C{parent[key]} as an integer (see L{toInt}), L{None} if absent or null.
    """
    value = parent.get(key)
    if value is None:
        return None
    return toInt(value, where)


def stringMap(parent: Mapping[str, Any], key: str, where: str) -> Mapping[str, str]:
    """
    A flat string-to-string object such as custom parameters, read-only.

    Numbers and booleans are turned into their JSON text; absent or null
    gives an empty mapping.

    @raise ProtocolError: not an object, or a value that is null, a list or
        an object (L{WRONG_TYPE}).
    """
    value = optionalObject(parent, key, where)
    if not value:
        return _EMPTY
    result: dict[str, str] = {}
    for name, item in value.items():
        if type(item) is str:
            result[name] = item
        elif type(item) in (int, float, bool):
            result[name] = json.dumps(item)
        else:
            raise ProtocolError(WRONG_TYPE, f"{where}.{name} must be a string")
    return MappingProxyType(result)


def splitMediaType(value: str) -> tuple[str, dict[str, str]]:
    """
    A media type such as C{audio/l16;rate=16000} as its lower-cased type
    and its parameters (names lower-cased, values stripped).
    """
    mime, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for param in rest.split(";"):
        name, _, text = param.partition("=")
        if name.strip():
            params[name.strip().lower()] = text.strip()
    return mime.strip().lower(), params


def decodeBase64(value: str, where: str) -> bytes:
    """
    Strict base64 (RFC 4648 alphabet, correct padding, nothing after it).

    @raise ProtocolError: anything else (L{BAD_BASE64}).
    """
    try:
        return _b64decode(value, strict_mode=True)
    except ValueError:  # binascii.Error, or non-ASCII text
        raise ProtocolError(BAD_BASE64, f"{where} is not valid base64") from None


def dtmfDigits(value: object, where: str) -> str:
    """
    One or more DTMF symbols (C{0-9 * # A-D}; lower-case letters and JSON
    numbers accepted), upper-cased.

    @raise ProtocolError: empty, of another type, or a symbol outside
        L{DTMF_DIGITS}.
    """
    if type(value) is int and value >= 0:
        value = str(value)
    if type(value) is not str:
        raise ProtocolError(WRONG_TYPE, f"{where} must be a string")
    digits = value.upper()
    if not digits or not DTMF_DIGITS.issuperset(digits):
        raise ProtocolError(BAD_VALUE, f"{where} is not a DTMF digit: {value[:8]!r}")
    return digits


def dtmfDigit(value: object, where: str) -> str:
    """
    Exactly one DTMF symbol (see L{dtmfDigits}).
    """
    digit = dtmfDigits(value, where)
    if len(digit) != 1:
        raise ProtocolError(BAD_VALUE, f"{where} must be a single DTMF digit")
    return digit


def quote(value: str) -> str:
    """
    C{value} as a JSON string literal; identifiers (ASCII letters and
    digits, such as Twilio and Exotel sids) skip the serializer.
    """
    if value.isascii() and value.isalnum():
        return '"' + value + '"'
    return json.dumps(value)


def base64Text(data: bytes) -> str:
    """
    C{data} base64-encoded as text, without a trailing newline.
    """
    return _b64encode(data, newline=False).decode("ascii")


def dumps(obj: object) -> str:
    """
    Compact JSON text (no spaces), as providers' examples show it.
    """
    return json.dumps(obj, separators=_COMPACT)


@dataclass(frozen=True, slots=True)
class Unknown:
    """
    A well-formed message with an event name this codec does not know.

    @ivar raw: the whole decoded JSON object (read-only).
    """

    event: str
    raw: Mapping[str, Any]


_M = TypeVar("_M")


def decodeEvent(
    text: str | bytes, maxSize: int, decoders: Mapping[str, Callable[[dict[str, Any]], _M]]
) -> _M | Unknown:
    """
    Parse a JSON event message and hand it to the decoder for its C{event}.

    @param decoders: event name to a function of the decoded object.
    @return: that function's result, or L{Unknown} for other event names.
    @raise ProtocolError: see L{loadObject}; a missing or non-string
        C{event}; whatever the decoder raises.
    """
    obj = loadObject(text, maxSize)
    event = obj.get("event")
    if type(event) is not str:
        event = eventName(obj)
    decoder = decoders.get(event)
    if decoder is not None:
        return decoder(obj)
    return Unknown(event, MappingProxyType(obj))


# ---------------------------------------------------------------------------
# Twilio messages
# ---------------------------------------------------------------------------

#: Largest inbound text message accepted. Twilio's are a few hundred bytes;
#: C{start} grows with custom parameters.
MAX_MESSAGE_SIZE: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class Connected:
    """
    C{connected}: the first message on the socket.
    """

    protocol: str | None = None
    version: str | None = None


@dataclass(frozen=True, slots=True)
class Start:
    """
    C{start}: stream metadata, sent once after L{Connected}.

    C{customParameters} holds the TwiML C{<Parameter>}s, including the
    per-call C{token}. The media format defaults to what Twilio always
    sends (C{audio/x-mulaw}, 8000 Hz, 1 channel).
    """

    streamSid: str
    callSid: str | None
    accountSid: str | None
    tracks: tuple[str, ...]
    encoding: str
    sampleRate: int
    channels: int
    customParameters: Mapping[str, str]

    @property
    def token(self) -> str | None:
        """
        The per-call C{token} custom parameter, if sent.
        """
        return self.customParameters.get("token")


@dataclass(frozen=True, slots=True)
class Media:
    """
    C{media}: one chunk of caller audio, raw bytes without a header (Twilio:
    μ-law, normally 160 bytes = 20 ms; Exotel: per its L{Start.encoding}).

    C{chunk} counts from 1; C{timestamp} is milliseconds since the stream
    started.
    """

    payload: bytes
    chunk: int | None = None
    timestamp: int | None = None
    track: str | None = None


@dataclass(frozen=True, slots=True)
class Mark:
    """
    C{mark}: the echo of a mark we sent, once the audio before it played
    (or a C{clear} flushed it).
    """

    name: str


@dataclass(frozen=True, slots=True)
class Dtmf:
    """
    C{dtmf}: one key press. Twilio sends no duration, so it is L{None}.
    """

    digit: str
    duration: int | None = None


@dataclass(frozen=True, slots=True)
class Stop:
    """
    C{stop}: the last message; the stream stopped or the call ended.
    """

    accountSid: str | None = None
    callSid: str | None = None


Message = Connected | Start | Media | Mark | Dtmf | Stop | Unknown


def connectedMessage(obj: dict[str, Any]) -> Connected:
    """
    L{Connected} from a decoded C{connected} object (Twilio and Exotel).
    """
    return Connected(
        optionalStr(obj, "protocol", "protocol"), optionalStr(obj, "version", "version")
    )


def _start(obj: dict[str, Any]) -> Start:
    start = requireObject(obj, "start", "start")
    streamSid = optionalStr(start, "streamSid", "start.streamSid")
    if streamSid is None:
        streamSid = requireStr(obj, "streamSid", "streamSid")
    tracks = start.get("tracks", ["inbound"])
    if type(tracks) is not list or not all(type(t) is str for t in tracks):
        raise ProtocolError(WRONG_TYPE, "start.tracks must be a list of strings")
    fmt = optionalObject(start, "mediaFormat", "start.mediaFormat") or {}
    encoding = optionalStr(fmt, "encoding", "start.mediaFormat.encoding")
    sampleRate = optionalInt(fmt, "sampleRate", "start.mediaFormat.sampleRate")
    channels = optionalInt(fmt, "channels", "start.mediaFormat.channels")
    if sampleRate is not None and sampleRate <= 0:
        raise ProtocolError(BAD_VALUE, "start.mediaFormat.sampleRate must be positive")
    if channels is not None and channels <= 0:
        raise ProtocolError(BAD_VALUE, "start.mediaFormat.channels must be positive")
    return Start(
        streamSid=streamSid,
        callSid=optionalStr(start, "callSid", "start.callSid"),
        accountSid=optionalStr(start, "accountSid", "start.accountSid"),
        tracks=tuple(tracks),
        encoding="audio/x-mulaw" if encoding is None else encoding,
        sampleRate=8000 if sampleRate is None else sampleRate,
        channels=1 if channels is None else channels,
        customParameters=stringMap(start, "customParameters", "start.customParameters"),
    )


def mediaMessage(obj: dict[str, Any]) -> Media:
    """
    L{Media} from a decoded C{media} object (Twilio and Exotel: C{media}
    holds C{payload}, C{chunk}, C{timestamp} and, for Twilio, C{track}).
    """
    media = obj.get("media")
    if type(media) is not dict:
        media = requireObject(obj, "media", "media")
    payload = media.get("payload")
    if type(payload) is not str:
        payload = requireStr(media, "payload", "media.payload")
    data = decodeBase64(payload, "media.payload")
    chunk = media.get("chunk")
    timestamp = media.get("timestamp")
    track = media.get("track")
    if track is not None and type(track) is not str:
        raise ProtocolError(WRONG_TYPE, "media.track must be a string")
    return Media(
        data,
        None if chunk is None else toInt(chunk, "media.chunk"),
        None if timestamp is None else toInt(timestamp, "media.timestamp"),
        track,
    )


def markMessage(obj: dict[str, Any]) -> Mark:
    """
    L{Mark} from a decoded C{mark} object (Twilio and Exotel).
    """
    return Mark(requireStr(requireObject(obj, "mark", "mark"), "name", "mark.name"))


def dtmfMessage(obj: dict[str, Any]) -> Dtmf:
    """
    L{Dtmf} from a decoded C{dtmf} object (Twilio and Exotel).
    """
    dtmf = requireObject(obj, "dtmf", "dtmf")
    if "digit" not in dtmf:
        raise ProtocolError(MISSING_FIELD, "dtmf.digit is required")
    return Dtmf(
        dtmfDigit(dtmf["digit"], "dtmf.digit"), optionalInt(dtmf, "duration", "dtmf.duration")
    )


def _stop(obj: dict[str, Any]) -> Stop:
    stop = optionalObject(obj, "stop", "stop") or {}
    return Stop(
        optionalStr(stop, "accountSid", "stop.accountSid"),
        optionalStr(stop, "callSid", "stop.callSid"),
    )


_DECODERS: Final[Mapping[str, Callable[[dict[str, Any]], Message]]] = {
    "media": mediaMessage,
    "connected": connectedMessage,
    "start": _start,
    "mark": markMessage,
    "dtmf": dtmfMessage,
    "stop": _stop,
}


def decode(text: str | bytes, maxSize: int = MAX_MESSAGE_SIZE) -> Message:
    """
    Decode one Twilio → server text message.

    Unknown event names give L{Unknown}; unknown keys are ignored.

    @param text: the WebSocket text message (C{str} or UTF-8 C{bytes}).
    @param maxSize: the largest accepted message length.
    @raise ProtocolError: oversized, not JSON, not an object, a missing
        required field, a field of the wrong type, or bad base64.
    """
    return decodeEvent(text, maxSize, _DECODERS)


def encodeMedia(streamSid: str, payload: bytes) -> str:
    """
    C{media} carrying raw μ-law 8 kHz bytes (no header) to play to the caller.
    """
    return (
        '{"event":"media","streamSid":'
        + quote(streamSid)
        + ',"media":{"payload":"'
        + base64Text(payload)
        + '"}}'
    )


def encodeMark(streamSid: str, name: str, sequenceNumber: int | None = None) -> str:
    """
    C{mark}: Twilio echoes it back as L{Mark} once the audio sent before it
    has played (or been cleared).

    @param sequenceNumber: given, the echo as Twilio sends it (simulator
        side); omitted for the server's own marks.
    """
    if sequenceNumber is None:
        return dumps({"event": "mark", "streamSid": streamSid, "mark": {"name": name}})
    return dumps(
        {
            "event": "mark",
            "sequenceNumber": str(sequenceNumber),
            "streamSid": streamSid,
            "mark": {"name": name},
        }
    )


def encodeClear(streamSid: str) -> str:
    """
    C{clear}: drop all audio Twilio has queued; pending marks are echoed.
    """
    return '{"event":"clear","streamSid":' + quote(streamSid) + "}"


# ---------------------------------------------------------------------------
# Twilio → server (the simulator's side, protocols.md §1.5)
# ---------------------------------------------------------------------------

_CONNECTED: Final = '{"event":"connected","protocol":"Call","version":"1.0.0"}'


def encodeConnected() -> str:
    """
    C{connected}, the first message Twilio sends on a stream.
    """
    return _CONNECTED


def encodeStart(
    streamSid: str,
    callSid: str,
    accountSid: str,
    customParameters: Mapping[str, str],
    sequenceNumber: int = 1,
    tracks: tuple[str, ...] = ("inbound",),
) -> str:
    """
    C{start} as Twilio sends it: μ-law 8 kHz mono, the TwiML
    C{<Parameter>}s in C{customParameters}.
    """
    return dumps(
        {
            "event": "start",
            "sequenceNumber": str(sequenceNumber),
            "streamSid": streamSid,
            "start": {
                "accountSid": accountSid,
                "streamSid": streamSid,
                "callSid": callSid,
                "tracks": list(tracks),
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                "customParameters": dict(customParameters),
            },
        }
    )


def encodeInboundMedia(
    streamSid: str,
    payload: bytes | str,
    sequenceNumber: int,
    chunk: int,
    timestamp: int,
    track: str = "inbound",
) -> str:
    """
    C{media} carrying caller audio as Twilio sends it.

    @param payload: raw μ-law bytes, or their base64 text when the caller
        encoded them ahead of time (a load generator does).
    @param chunk: counts from 1.
    @param timestamp: milliseconds since the stream started.
    """
    if not isinstance(payload, str):
        payload = base64Text(payload)
    return (
        '{"event":"media","sequenceNumber":"'
        + str(sequenceNumber)
        + '","streamSid":'
        + quote(streamSid)
        + ',"media":{"track":'
        + quote(track)
        + ',"chunk":"'
        + str(chunk)
        + '","timestamp":"'
        + str(timestamp)
        + '","payload":"'
        + payload
        + '"}}'
    )


def encodeDtmf(streamSid: str, digit: str, sequenceNumber: int) -> str:
    """
    C{dtmf}: one key press on the inbound track.

    @raise ProtocolError: not exactly one DTMF symbol (L{BAD_VALUE}).
    """
    return dumps(
        {
            "event": "dtmf",
            "streamSid": streamSid,
            "sequenceNumber": str(sequenceNumber),
            "dtmf": {"track": "inbound_track", "digit": dtmfDigit(digit, "digit")},
        }
    )


def encodeStop(
    streamSid: str, sequenceNumber: int, accountSid: str | None = None, callSid: str | None = None
) -> str:
    """
    C{stop}: the last message of a stream.
    """
    stop = {k: v for k, v in (("accountSid", accountSid), ("callSid", callSid)) if v is not None}
    return dumps(
        {
            "event": "stop",
            "sequenceNumber": str(sequenceNumber),
            "streamSid": streamSid,
            "stop": stop,
        }
    )
