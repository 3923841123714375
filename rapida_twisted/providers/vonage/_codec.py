# -*- test-case-name: tests.test_codec_vonage -*-
"""
Vonage Voice API WebSocket wire codec (protocols.md §2.3-§2.4).

Text frames are JSON events; binary frames are signed 16-bit little-endian
linear PCM, mono, 20 ms each. Pure: no reactor, no logging, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from .._json import (
    BAD_AUDIO,
    BAD_VALUE,
    MISSING_FIELD,
    TOO_LARGE,
    ProtocolError,
    Unknown,
    decodeEvent,
    dtmfDigit,
    dtmfDigits,
    dumps,
    loadObject,
    optionalInt,
    optionalObject,
    optionalStr,
    requireStr,
    splitMediaType,
)

#: Largest inbound text message accepted (NCCO headers are ≤ 512 bytes).
MAX_MESSAGE_SIZE: Final = 64 * 1024

#: Largest inbound binary (audio) message accepted: 20 ms is 960 bytes at
#: 24 kHz; this leaves room for longer packetisation but refuses junk.
MAX_AUDIO_SIZE: Final = 16 * 1024

#: 20 ms of L16 mono at the rates Vonage offers (24 kHz is unconfirmed).
FRAME_BYTES: Final[Mapping[int, int]] = MappingProxyType({8000: 320, 16000: 640, 24000: 960})


@dataclass(frozen=True, slots=True)
class Connected:
    """
    C{websocket:connected}: the first text message.

    @ivar contentType: the C{content-type} as sent, e.g.
        C{audio/l16;rate=16000}, or L{None} if absent.
    @ivar sampleRate: the rate parsed from it, or L{None} if absent.
    @ivar headers: the NCCO endpoint C{headers}, which Vonage flattens into
        top-level keys (every key except C{event} and C{content-type}).
    """

    contentType: str | None
    sampleRate: int | None
    headers: Mapping[str, Any]

    @property
    def token(self) -> str | None:
        """
        The per-call C{token} header, if sent as a string.
        """
        token = self.headers.get("token")
        return token if type(token) is str else None


@dataclass(frozen=True, slots=True)
class Dtmf:
    """
    C{websocket:dtmf}: one or more key presses, in order.

    @ivar digits: each symbol separately (C{0-9 * # A-D}).
    @ivar duration: milliseconds, if sent.
    """

    digits: tuple[str, ...]
    duration: int | None = None


@dataclass(frozen=True, slots=True)
class Cleared:
    """
    C{websocket:cleared}: Vonage acknowledges a C{clear}.
    """


@dataclass(frozen=True, slots=True)
class Notify:
    """
    C{websocket:notify}: the echo of a C{notify} command, sent once the
    audio queued before it has played.

    @ivar payload: the payload we sent, as decoded JSON (L{None} if absent).
    """

    payload: Any = None


Message = Connected | Dtmf | Cleared | Notify | Unknown


def parseContentType(value: str) -> int:
    """
    The sample rate of an L16 content type such as C{audio/l16;rate=16000}.

    @raise ProtocolError: not C{audio/l16}, or no positive C{rate}
        (L{BAD_VALUE}).
    """
    mime, params = splitMediaType(value)
    if mime != "audio/l16":
        raise ProtocolError(BAD_VALUE, f"content-type is not audio/l16: {value[:40]!r}")
    rate = params.get("rate", "")
    if rate.isascii() and rate.isdigit() and len(rate) <= 6 and 0 < int(rate) <= 192000:
        return int(rate)
    raise ProtocolError(BAD_VALUE, f"content-type has no valid rate: {value[:40]!r}")


def _connected(obj: dict[str, Any]) -> Connected:
    contentType = optionalStr(obj, "content-type", "content-type")
    headers = {k: v for k, v in obj.items() if k != "event" and k != "content-type"}
    return Connected(
        contentType,
        None if contentType is None else parseContentType(contentType),
        MappingProxyType(headers),
    )


def _dtmf(obj: dict[str, Any]) -> Dtmf:
    # The documented shape has "digit" and "duration" at the top level;
    # some integrations see them nested in a "dtmf" object, possibly as a
    # multi-digit "digits" string (protocols.md §2.3).
    source: dict[str, Any] = obj
    nested = optionalObject(obj, "dtmf", "dtmf")
    where = ""
    if "digit" not in obj and "digits" not in obj and nested is not None:
        source, where = nested, "dtmf."
    for key in ("digit", "digits"):
        value = source.get(key)
        if value is not None:
            digits = dtmfDigits(value, where + key)
            duration = optionalInt(source, "duration", where + "duration")
            return Dtmf(tuple(digits), duration)
    raise ProtocolError(MISSING_FIELD, "websocket:dtmf carries no digit")


def _cleared(obj: dict[str, Any]) -> Cleared:
    return _CLEARED


def _notify(obj: dict[str, Any]) -> Notify:
    return Notify(obj.get("payload"))


_CLEARED: Final = Cleared()

_DECODERS: Final[Mapping[str, Callable[[dict[str, Any]], Message]]] = {
    "websocket:connected": _connected,
    "websocket:dtmf": _dtmf,
    "websocket:cleared": _cleared,
    "websocket:notify": _notify,
}


def decode(text: str | bytes, maxSize: int = MAX_MESSAGE_SIZE) -> Message:
    """
    Decode one Vonage → server text message.

    Unknown event names give L{Unknown}; unknown keys are ignored.

    @param text: the WebSocket text message (C{str} or UTF-8 C{bytes}).
    @raise ProtocolError: oversized, not JSON, not an object, a missing
        required field, a field of the wrong type, or a bad value.
    """
    return decodeEvent(text, maxSize, _DECODERS)


def decodeAudio(data: bytes, maxSize: int = MAX_AUDIO_SIZE) -> bytes:
    """
    Validate one binary message of caller audio and return it unchanged.

    Expected sizes are L{FRAME_BYTES} (320/640/960); other even sizes are
    accepted, since sizing is the framer's business.

    @raise ProtocolError: an odd length (L{BAD_AUDIO}: not 16-bit samples)
        or longer than C{maxSize} (L{TOO_LARGE}).
    """
    size = len(data)
    if size & 1:
        raise ProtocolError(BAD_AUDIO, f"binary frame of odd length {size}")
    if size > maxSize:
        raise ProtocolError(TOO_LARGE, f"binary frame of {size} exceeds {maxSize}")
    return data


def frameBytes(sampleRate: int) -> int:
    """
    The size of one 20 ms L16 mono message at C{sampleRate}.
    """
    return sampleRate // 50 * 2


def encodeAudio(pcm: bytes, sampleRate: int) -> bytes:
    """
    Check one outbound binary message: Vonage wants exactly 20 ms each.

    @return: C{pcm} unchanged.
    @raise ValueError: C{pcm} is not exactly 20 ms at C{sampleRate}.
    """
    if len(pcm) != frameBytes(sampleRate):
        raise ValueError(
            f"Vonage audio must be 20 ms ({frameBytes(sampleRate)} bytes at "
            f"{sampleRate} Hz), got {len(pcm)}"
        )
    return pcm


_CLEAR: Final = '{"action":"clear"}'


def encodeClear() -> str:
    """
    C{clear}: stop playback and discard Vonage's buffer; Vonage answers
    with L{Cleared}.
    """
    return _CLEAR


def encodeNotify(payload: Mapping[str, Any]) -> str:
    """
    C{notify}: Vonage echoes C{payload} back in a L{Notify} once all the
    audio sent before it has played.

    @param payload: a JSON-serialisable object.
    """
    return dumps({"action": "notify", "payload": payload})


# ---------------------------------------------------------------------------
# The simulator's side: Vonage → server events, server → Vonage commands
# ---------------------------------------------------------------------------


def encodeConnected(contentType: str, headers: Mapping[str, Any]) -> str:
    """
    C{websocket:connected} as Vonage sends it: the NCCO endpoint's
    C{headers} flattened into top-level keys next to C{content-type}.
    """
    obj: dict[str, Any] = {"event": "websocket:connected", "content-type": contentType}
    for name, value in headers.items():
        if name not in obj:
            obj[name] = value
    return dumps(obj)


def encodeDtmf(digit: str, duration: int | None = None) -> str:
    """
    C{websocket:dtmf}: one key press, C{duration} in milliseconds.

    @raise ProtocolError: not exactly one DTMF symbol (L{BAD_VALUE}).
    """
    obj: dict[str, Any] = {"event": "websocket:dtmf", "digit": dtmfDigit(digit, "digit")}
    if duration is not None:
        obj["duration"] = duration
    return dumps(obj)


_CLEARED_EVENT: Final = '{"event":"websocket:cleared"}'


def encodeCleared() -> str:
    """
    C{websocket:cleared}: Vonage's acknowledgement of a C{clear}.
    """
    return _CLEARED_EVENT


def encodeNotified(payload: Any) -> str:
    """
    C{websocket:notify}: the echo of a C{notify} command's payload, once
    the audio queued before it has played.
    """
    return dumps({"event": "websocket:notify", "payload": payload})


@dataclass(frozen=True, slots=True)
class ClearCommand:
    """
    C{{"action":"clear"}}: stop playback and discard the buffer.
    """


@dataclass(frozen=True, slots=True)
class NotifyCommand:
    """
    C{{"action":"notify","payload":...}}: echo C{payload} once the audio
    sent before it has played.
    """

    payload: Any = None


@dataclass(frozen=True, slots=True)
class UnknownCommand:
    """
    A well-formed command with an C{action} this codec does not know.
    """

    action: str
    raw: Mapping[str, Any]


Command = ClearCommand | NotifyCommand | UnknownCommand

_CLEAR_COMMAND: Final = ClearCommand()


def decodeCommand(text: str | bytes, maxSize: int = MAX_MESSAGE_SIZE) -> Command:
    """
    Decode one server → Vonage text message (the simulator's side).

    @raise ProtocolError: oversized, not JSON, not an object, or no string
        C{action}.
    """
    obj = loadObject(text, maxSize)
    action = requireStr(obj, "action", "action")
    if action == "clear":
        return _CLEAR_COMMAND
    if action == "notify":
        return NotifyCommand(obj.get("payload"))
    return UnknownCommand(action, MappingProxyType(obj))
