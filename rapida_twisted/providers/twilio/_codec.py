# -*- test-case-name: tests.test_codec_twilio -*-
"""
Twilio Media Streams wire codec (protocols.md §1.5-§1.6).

Pure: JSON text in, small frozen message objects out, and JSON text back.
No reactor, no logging, no I/O.

The JSON wire helpers every provider codec shares (L{ProtocolError},
L{loadObject}, the field readers, L{quote}, ...) live in
L{rapida_twisted.providers._json}; they are re-exported here unchanged.
The message classes Exotel shares with Twilio (L{Connected}, L{Media},
L{Mark}, L{Dtmf}) and their decoders stay here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

# The shared JSON wire helpers moved to ``providers/_json.py``; they stay
# importable from here so existing callers keep working.
from .._json import (  # noqa: F401  (re-exported)
    BAD_AUDIO,
    BAD_BASE64,
    BAD_JSON,
    BAD_VALUE,
    DTMF_DIGITS,
    MISSING_FIELD,
    NOT_OBJECT,
    TOO_LARGE,
    WRONG_TYPE,
    ProtocolError,
    Unknown,
    base64Text,
    decodeBase64,
    decodeEvent,
    dtmfDigit,
    dtmfDigits,
    dumps,
    eventName,
    loadObject,
    optionalInt,
    optionalObject,
    optionalStr,
    quote,
    requireObject,
    requireStr,
    splitMediaType,
    stringMap,
    toInt,
)

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


# A C{media} message laid out exactly as Twilio sends it (or as the
# simulator does, with C{streamSid} before C{media}), with no spaces and
# no escapes: 50 of them a second per call, so they skip the JSON parser.
# Any other text (another order, extra keys, escapes, numbers as JSON
# numbers...) goes through the parser, which gives the same message for
# these.
_MEDIA_FIELDS = (
    rb'"media":\{"track":"([A-Za-z_]{1,32})","chunk":"([0-9]{1,15})",'
    rb'"timestamp":"([0-9]{1,15})","payload":"([A-Za-z0-9+/=]*)"\}'
)
_SEQUENCE = rb'"sequenceNumber":"[0-9]{1,15}"'
_STREAM_SID = rb'"streamSid":"[A-Za-z0-9]{1,64}"'
_MEDIA_LAYOUTS: Final = (
    re.compile(
        rb'\{"event":"media",' + _SEQUENCE + b"," + _MEDIA_FIELDS + b"," + _STREAM_SID + rb"\}"
    ),
    re.compile(
        rb'\{"event":"media",' + _SEQUENCE + b"," + _STREAM_SID + b"," + _MEDIA_FIELDS + rb"\}"
    ),
)


def decode(text: str | bytes, maxSize: int = MAX_MESSAGE_SIZE) -> Message:
    """
    Decode one Twilio → server text message.

    Unknown event names give L{Unknown}; unknown keys are ignored.

    @param text: the WebSocket text message (C{str} or UTF-8 C{bytes}).
    @param maxSize: the largest accepted message length.
    @raise ProtocolError: oversized, not JSON, not an object, a missing
        required field, a field of the wrong type, or bad base64.
    """
    if type(text) is bytes and len(text) <= maxSize:
        for layout in _MEDIA_LAYOUTS:
            match = layout.fullmatch(text)
            if match is not None:
                track, chunk, timestamp, payload = match.groups()
                return Media(
                    decodeBase64(payload, "media.payload"),
                    int(chunk),
                    int(timestamp),
                    track.decode("ascii"),
                )
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
