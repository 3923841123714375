# -*- test-case-name: tests.test_chanws_codec -*-
"""
Asterisk chan_websocket control codec (protocols.md §5).

Media travels in BINARY frames as raw codec bytes and needs no codec here;
this module parses the TEXT control events Asterisk sends, in both control
formats (plain text C{NAME key:value ...} and JSON C{{"event": ...}}),
builds the commands the app sends (each at most 128 bytes, Asterisk's
limit), and maps Asterisk format names to codec and rate.

Pure: no reactor, no logging, no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Any, Final

from ..errors import DTMF_DIGITS, WireError

#: Asterisk ignores text messages longer than this (MAX_TEXT_MESSAGE_LEN).
MAX_COMMAND_BYTES: Final = 128
#: Largest inbound control message accepted (JSON MEDIA_START carries the
#: channel variables).
MAX_EVENT_SIZE: Final = 64 * 1024

#: Queue numbers of §5.7: XOFF at 900 frames, XON below 800, drops at 1000.
QUEUE_MAX: Final = 1000
XOFF_LEVEL: Final = 900
XON_LEVEL: Final = 800

#: L{ChanWsError.code} values.
TOO_LARGE: Final = "too_large"
GARBAGE: Final = "garbage"
MISSING_FIELD: Final = "missing_field"
BAD_VALUE: Final = "bad_value"
TOO_LONG: Final = "too_long"
UNSUPPORTED: Final = "unsupported"


class ChanWsError(WireError):
    """
    A control message that cannot be parsed, or a command that cannot be
    built.

    @ivar code: L{TOO_LARGE}, L{GARBAGE}, L{MISSING_FIELD}, L{BAD_VALUE},
        L{TOO_LONG} or L{UNSUPPORTED}.
    @ivar reason: a human-readable explanation.
    """


class ControlFormat(Enum):
    """
    The control message format chosen with C{f(...)} or
    C{control_message_format} (§5.4).
    """

    PLAIN = "plain-text"
    JSON = "json"


# ---------------------------------------------------------------------------
# Media formats
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MediaFormat:
    """
    What an Asterisk format name means for the bytes in BINARY frames.

    @ivar codec: C{ulaw}, C{alaw} or C{slin} (16-bit signed, little-endian
        on every platform Asterisk runs on).
    @ivar sampleWidth: bytes per sample.
    """

    name: str
    codec: str
    sampleRate: int
    sampleWidth: int

    def frameBytes(self, ptime: int = 20) -> int:
        """
        Bytes in C{ptime} milliseconds of this format.
        """
        return self.sampleRate * ptime // 1000 * self.sampleWidth


#: The formats the gateway can transcode, by Asterisk format name.
FORMATS: Final[Mapping[str, MediaFormat]] = MappingProxyType(
    {
        f.name: f
        for f in (
            MediaFormat("ulaw", "ulaw", 8000, 1),
            MediaFormat("alaw", "alaw", 8000, 1),
            MediaFormat("slin", "slin", 8000, 2),
            MediaFormat("slin12", "slin", 12000, 2),
            MediaFormat("slin16", "slin", 16000, 2),
            MediaFormat("slin24", "slin", 24000, 2),
            MediaFormat("slin32", "slin", 32000, 2),
            MediaFormat("slin44", "slin", 44100, 2),
            MediaFormat("slin48", "slin", 48000, 2),
            MediaFormat("slin96", "slin", 96000, 2),
            MediaFormat("slin192", "slin", 192000, 2),
        )
    }
)


def mediaFormat(name: str) -> MediaFormat:
    """
    The L{MediaFormat} for an Asterisk format name (as in C{MEDIA_START}).

    @raise ChanWsError: a format the gateway cannot handle, such as
        C{opus} or C{g722} (L{UNSUPPORTED}).
    """
    found = FORMATS.get(name)
    if found is None:
        raise ChanWsError(UNSUPPORTED, f"unsupported media format {name[:32]!r}")
    return found


# ---------------------------------------------------------------------------
# Events Asterisk → app
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MediaStart:
    """
    C{MEDIA_START}: the first message on every connection.

    @ivar connectionId: the C{websocket_client.conf} section (outgoing) or
        the ephemeral id (incoming).
    @ivar channelId: the channel's unique id; L{None} on 20.16 / 21.11 /
        22.6, which do not send it.
    @ivar format: the Asterisk format name (see L{mediaFormat}).
    @ivar optimalFrameSize: bytes per C{ptime} of media; send multiples.
    @ivar channelVariables: JSON format only; empty otherwise.
    """

    connectionId: str | None
    channel: str | None
    channelId: str | None
    format: str
    optimalFrameSize: int
    ptime: int
    channelVariables: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class DtmfEnd:
    """
    C{DTMF_END}: one key press.
    """

    digit: str
    channelId: str | None = None


@dataclass(frozen=True, slots=True)
class MediaXoff:
    """
    C{MEDIA_XOFF}: the queue reached L{XOFF_LEVEL}; stop sending media.
    """

    channelId: str | None = None


@dataclass(frozen=True, slots=True)
class MediaXon:
    """
    C{MEDIA_XON}: the queue fell below L{XON_LEVEL}; sending may resume.
    """

    channelId: str | None = None


@dataclass(frozen=True, slots=True)
class QueueDrained:
    """
    C{QUEUE_DRAINED}: the queue emptied after C{REPORT_QUEUE_DRAINED}.
    """

    channelId: str | None = None


@dataclass(frozen=True, slots=True)
class Status:
    """
    C{STATUS}: the reply to C{GET_STATUS}; absent fields are L{None}.
    """

    channelId: str | None = None
    queueLength: int | None = None
    xonLevel: int | None = None
    xoffLevel: int | None = None
    queueFull: bool | None = None
    bulkMedia: bool | None = None
    mediaPaused: bool | None = None


@dataclass(frozen=True, slots=True)
class MediaBufferingCompleted:
    """
    C{MEDIA_BUFFERING_COMPLETED}: a C{STOP_MEDIA_BUFFERING} point reached
    the queue head; C{correlationId} is C{""} if none was given.
    """

    correlationId: str = ""
    channelId: str | None = None


@dataclass(frozen=True, slots=True)
class MediaMarkProcessed:
    """
    C{MEDIA_MARK_PROCESSED}: a C{MARK_MEDIA} reached the queue head, i.e.
    everything sent before it has played.
    """

    correlationId: str = ""
    channelId: str | None = None


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """
    C{ERROR}: Asterisk refused a command.
    """

    errorText: str = ""
    channelId: str | None = None


@dataclass(frozen=True, slots=True)
class Unknown:
    """
    A well-formed event this codec does not know.

    @ivar raw: the message text as received.
    """

    event: str
    raw: str


Event = (
    MediaStart
    | DtmfEnd
    | MediaXoff
    | MediaXon
    | QueueDrained
    | Status
    | MediaBufferingCompleted
    | MediaMarkProcessed
    | ErrorEvent
    | Unknown
)

_NAME: Final = re.compile(r"[A-Z][A-Z0-9_]*")
_KEY: Final = re.compile(r"[a-z][a-z0-9_]*")
_TEXT_FIELDS: Final = ("error_text",)  # plain-text values that run to the end of the line
_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})

# Field readers: each takes the parsed fields (plain-text values are all
# strings; JSON values have their JSON types) and the key.


def _str(fields: Mapping[str, Any], key: str) -> str | None:
    value = fields.get(key)
    if value is None or type(value) is str:
        return value
    raise ChanWsError(BAD_VALUE, f"{key} must be a string")


def _int(fields: Mapping[str, Any], key: str) -> int | None:
    value = fields.get(key)
    if value is None or (type(value) is int and value >= 0):
        return value
    if type(value) is str and value.isascii() and value.isdigit() and len(value) < 10:
        return int(value)
    raise ChanWsError(BAD_VALUE, f"{key} must be a non-negative integer")


def _bool(fields: Mapping[str, Any], key: str) -> bool | None:
    value = fields.get(key)
    if value is None or type(value) is bool:
        return value
    if type(value) is str and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ChanWsError(BAD_VALUE, f"{key} must be true or false")


def _mediaStart(fields: Mapping[str, Any], positional: list[str]) -> MediaStart:
    fmt = _str(fields, "format")
    if not fmt:
        raise ChanWsError(MISSING_FIELD, "MEDIA_START has no format")
    size = _int(fields, "optimal_frame_size")
    if not size:
        raise ChanWsError(MISSING_FIELD, "MEDIA_START has no optimal_frame_size")
    ptime = _int(fields, "ptime")
    variables = fields.get("channel_variables")
    if variables is None:
        variables = _EMPTY
    elif type(variables) is dict:
        variables = MappingProxyType(variables)
    else:
        raise ChanWsError(BAD_VALUE, "channel_variables must be an object")
    return MediaStart(
        connectionId=_str(fields, "connection_id"),
        channel=_str(fields, "channel"),
        channelId=_str(fields, "channel_id"),
        format=fmt,
        optimalFrameSize=size,
        ptime=ptime or 20,
        channelVariables=variables,
    )


def _dtmfEnd(fields: Mapping[str, Any], positional: list[str]) -> DtmfEnd:
    digit = _str(fields, "digit")
    if digit is None:
        raise ChanWsError(MISSING_FIELD, "DTMF_END has no digit")
    if len(digit) != 1 or digit.upper() not in DTMF_DIGITS:
        raise ChanWsError(BAD_VALUE, f"DTMF_END digit {digit[:8]!r}")
    return DtmfEnd(digit.upper(), _str(fields, "channel_id"))


def _status(fields: Mapping[str, Any], positional: list[str]) -> Status:
    return Status(
        channelId=_str(fields, "channel_id"),
        queueLength=_int(fields, "queue_length"),
        xonLevel=_int(fields, "xon_level"),
        xoffLevel=_int(fields, "xoff_level"),
        queueFull=_bool(fields, "queue_full"),
        bulkMedia=_bool(fields, "bulk_media"),
        mediaPaused=_bool(fields, "media_paused"),
    )


def _correlationId(fields: Mapping[str, Any], positional: list[str]) -> str:
    # Plain text puts the id after the name (NAME[ <id>]); JSON has a key.
    cid = _str(fields, "correlation_id")
    if cid is None:
        cid = " ".join(positional)
    return cid


def _channelOnly(
    cls: type[MediaXoff] | type[MediaXon] | type[QueueDrained],
) -> Callable[[Mapping[str, Any], list[str]], Event]:
    def parse(fields: Mapping[str, Any], positional: list[str]) -> Event:
        return cls(_str(fields, "channel_id"))

    return parse


def _bufferingCompleted(
    fields: Mapping[str, Any], positional: list[str]
) -> MediaBufferingCompleted:
    return MediaBufferingCompleted(_correlationId(fields, positional), _str(fields, "channel_id"))


def _markProcessed(fields: Mapping[str, Any], positional: list[str]) -> MediaMarkProcessed:
    return MediaMarkProcessed(_correlationId(fields, positional), _str(fields, "channel_id"))


def _error(fields: Mapping[str, Any], positional: list[str]) -> ErrorEvent:
    return ErrorEvent(_str(fields, "error_text") or "", _str(fields, "channel_id"))


_EVENTS: Final[Mapping[str, Callable[[Mapping[str, Any], list[str]], Event]]] = {
    "MEDIA_START": _mediaStart,
    "DTMF_END": _dtmfEnd,
    "MEDIA_XOFF": _channelOnly(MediaXoff),
    "MEDIA_XON": _channelOnly(MediaXon),
    "QUEUE_DRAINED": _channelOnly(QueueDrained),
    "STATUS": _status,
    "MEDIA_BUFFERING_COMPLETED": _bufferingCompleted,
    "MEDIA_MARK_PROCESSED": _markProcessed,
    "ERROR": _error,
}


def _parsePlain(line: str) -> tuple[str, dict[str, Any], list[str]]:
    """
    C{NAME key:value key:value ...}; tokens without a C{key:} go to the
    positional list; C{error_text:} takes the rest of the line.
    """
    name, _, rest = line.partition(" ")
    if not _NAME.fullmatch(name):
        raise ChanWsError(GARBAGE, f"not a control message: {line[:40]!r}")
    fields: dict[str, Any] = {}
    positional: list[str] = []
    rest = rest.lstrip(" ")
    while rest:
        token, _, after = rest.partition(" ")
        key, colon, value = token.partition(":")
        if colon and _KEY.fullmatch(key):
            if key in _TEXT_FIELDS:
                fields[key] = (value + " " + after).strip(" ")
                break
            fields[key] = value
        else:
            positional.append(token)
        rest = after.lstrip(" ")
    return name, fields, positional


def _parseJson(text: str) -> tuple[str, dict[str, Any]]:
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        raise ChanWsError(GARBAGE, "control message is not valid JSON") from None
    if type(obj) is not dict:
        raise ChanWsError(GARBAGE, "JSON control message is not an object")
    name = obj.get("event")
    if name is None:
        raise ChanWsError(MISSING_FIELD, "JSON control message has no event")
    if type(name) is not str or not _NAME.fullmatch(name):
        raise ChanWsError(GARBAGE, "JSON control message has a bad event name")
    return name, obj


def decodeEvent(text: str | bytes, maxSize: int = MAX_EVENT_SIZE) -> Event:
    """
    Parse one TEXT control message from Asterisk, in either format.

    @param text: the message (C{str} or UTF-8 C{bytes}).
    @return: the event; L{Unknown} for a well-formed event of another name
        (there is no C{HANGUP} or C{ANSWER} event: Asterisk's hang-up is the
        socket closing).
    @raise ChanWsError: oversized (L{TOO_LARGE}), not text, not a control
        message (L{GARBAGE}), a missing required field (L{MISSING_FIELD}) or
        a bad value (L{BAD_VALUE}).
    """
    if len(text) > maxSize:
        raise ChanWsError(TOO_LARGE, f"control message of {len(text)} exceeds {maxSize}")
    if not isinstance(text, str):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise ChanWsError(GARBAGE, "control message is not valid UTF-8") from None
    line = text.strip()
    positional: list[str] = []
    fields: Mapping[str, Any]
    if line.startswith("{"):
        name, fields = _parseJson(line)
    elif line.isprintable() and line:
        name, fields, positional = _parsePlain(line)
    else:
        raise ChanWsError(GARBAGE, f"not a control message: {line[:40]!r}")
    parse = _EVENTS.get(name)
    if parse is None:
        return Unknown(name, text)
    return parse(fields, positional)


# ---------------------------------------------------------------------------
# Commands app → Asterisk
# ---------------------------------------------------------------------------


class Command(Enum):
    """
    The commands of §5.6 (case-sensitive on the wire).
    """

    ANSWER = "ANSWER"
    HANGUP = "HANGUP"
    START_MEDIA_BUFFERING = "START_MEDIA_BUFFERING"
    STOP_MEDIA_BUFFERING = "STOP_MEDIA_BUFFERING"
    FLUSH_MEDIA = "FLUSH_MEDIA"
    PAUSE_MEDIA = "PAUSE_MEDIA"
    CONTINUE_MEDIA = "CONTINUE_MEDIA"
    MARK_MEDIA = "MARK_MEDIA"
    REPORT_QUEUE_DRAINED = "REPORT_QUEUE_DRAINED"
    GET_STATUS = "GET_STATUS"


#: Commands that take an optional correlation id.
CORRELATED: Final = frozenset({Command.STOP_MEDIA_BUFFERING, Command.MARK_MEDIA})

#: Media directions for C{SET_MEDIA_DIRECTION}, from the app's view.
DIRECTIONS: Final = frozenset({"both", "in", "out"})

_CORRELATION_ID: Final = re.compile(r"[A-Za-z0-9._-]+")

#: Correlation ids up to this length always fit in L{MAX_COMMAND_BYTES}.
SAFE_CORRELATION_ID_LENGTH: Final = 64


def _checked(message: str) -> str:
    size = len(message.encode("utf-8"))
    if size > MAX_COMMAND_BYTES:
        raise ChanWsError(
            TOO_LONG, f"command of {size} bytes exceeds Asterisk's {MAX_COMMAND_BYTES}"
        )
    return message


def encodeCommand(command: Command, fmt: ControlFormat, correlationId: str | None = None) -> str:
    """
    One command as a TEXT message in the connection's control format.

    @param correlationId: for L{CORRELATED} commands only (C{MARK_MEDIA}'s
        mark name, C{STOP_MEDIA_BUFFERING}'s id): letters, digits, C{.},
        C{_} and C{-}; Asterisk echoes it in the completion event.
    @raise ChanWsError: a correlation id on another command, with other
        characters (L{BAD_VALUE}), or making the message longer than
        L{MAX_COMMAND_BYTES} (L{TOO_LONG}).
    """
    if correlationId is not None:
        if command not in CORRELATED:
            raise ChanWsError(BAD_VALUE, f"{command.value} takes no correlation id")
        if not _CORRELATION_ID.fullmatch(correlationId):
            raise ChanWsError(BAD_VALUE, f"bad correlation id {correlationId[:32]!r}")
    if fmt is ControlFormat.JSON:
        if correlationId is None:
            return '{"command":"' + command.value + '"}'
        return _checked(
            '{"command":"' + command.value + '","correlation_id":"' + correlationId + '"}'
        )
    if correlationId is None:
        return command.value
    return _checked(command.value + " " + correlationId)


def encodeSetMediaDirection(direction: str, fmt: ControlFormat = ControlFormat.JSON) -> str:
    """
    C{SET_MEDIA_DIRECTION} (JSON control format only; 20.19 / 22.9 / 23.3+).

    @param direction: C{both}, C{in} or C{out}, from the app's point of view.
    @raise ChanWsError: the plain-text format or another direction.
    """
    if fmt is not ControlFormat.JSON:
        raise ChanWsError(UNSUPPORTED, "SET_MEDIA_DIRECTION needs the JSON control format")
    if direction not in DIRECTIONS:
        raise ChanWsError(BAD_VALUE, f"bad media direction {direction[:16]!r}")
    return '{"command":"SET_MEDIA_DIRECTION","direction":"' + direction + '"}'


@dataclass(frozen=True, slots=True)
class CommandMessage:
    """
    A command as Asterisk reads it (the simulator's side).

    @ivar correlationId: for L{CORRELATED} commands, the id if one was
        given (plain text: the word after the name).
    """

    command: Command
    correlationId: str | None = None


@dataclass(frozen=True, slots=True)
class SetMediaDirection:
    """
    C{SET_MEDIA_DIRECTION} (JSON control format only).
    """

    direction: str


@dataclass(frozen=True, slots=True)
class UnknownCommand:
    """
    A well-formed command of a name Asterisk does not know (it only logs
    these).
    """

    name: str
    raw: str


AnyCommand = CommandMessage | SetMediaDirection | UnknownCommand

_COMMANDS: Final[Mapping[str, Command]] = MappingProxyType({c.value: c for c in Command})


def decodeCommand(text: str | bytes) -> AnyCommand:
    """
    Parse one TEXT message from the app as Asterisk would (simulator and
    tests): plain text C{NAME[ <correlation id>]} or JSON
    C{{"command": NAME, ...}}.

    @raise ChanWsError: longer than L{MAX_COMMAND_BYTES} (L{TOO_LARGE}:
        Asterisk ignores it), not a command (L{GARBAGE}), a bad correlation
        id or direction (L{BAD_VALUE}), or C{SET_MEDIA_DIRECTION} in plain
        text (L{UNSUPPORTED}: Asterisk answers C{ERROR}).
    """
    raw = text if isinstance(text, bytes) else text.encode("utf-8")
    if len(raw) > MAX_COMMAND_BYTES:
        raise ChanWsError(TOO_LARGE, f"command of {len(raw)} bytes exceeds {MAX_COMMAND_BYTES}")
    try:
        line = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ChanWsError(GARBAGE, "command is not valid UTF-8") from None
    correlationId: str | None
    if line.startswith("{"):
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):
            raise ChanWsError(GARBAGE, "Unable to parse JSON command") from None
        if type(obj) is not dict or type(obj.get("command")) is not str:
            raise ChanWsError(GARBAGE, "JSON command has no command name")
        name = obj["command"]
        if name == "SET_MEDIA_DIRECTION":
            direction = obj.get("direction")
            if direction not in DIRECTIONS:
                raise ChanWsError(BAD_VALUE, "bad media direction")
            return SetMediaDirection(direction)
        correlationId = _str(obj, "correlation_id")
    else:
        name, _, rest = line.partition(" ")
        if not _NAME.fullmatch(name):
            raise ChanWsError(GARBAGE, f"not a command: {line[:40]!r}")
        if name == "SET_MEDIA_DIRECTION":
            raise ChanWsError(UNSUPPORTED, "SET_MEDIA_DIRECTION needs the JSON control format")
        correlationId = rest.strip() or None
    command = _COMMANDS.get(name)
    if command is None:
        return UnknownCommand(name, line)
    if correlationId is not None and command in CORRELATED:
        if not _CORRELATION_ID.fullmatch(correlationId):
            raise ChanWsError(BAD_VALUE, f"bad correlation id {correlationId[:32]!r}")
        return CommandMessage(command, correlationId)
    return CommandMessage(command)


def encodeEvent(event: Event, fmt: ControlFormat) -> str:
    """
    An event as Asterisk would send it (simulator and tests).

    @raise ChanWsError: L{Unknown} events cannot be encoded.
    """
    if isinstance(event, Unknown):
        raise ChanWsError(UNSUPPORTED, "cannot encode an Unknown event")
    name, fields = _EVENT_FIELDS[type(event)](event)
    if fmt is ControlFormat.JSON:
        obj: dict[str, Any] = {"event": name}
        obj.update((k, v) for k, v in fields.items() if v is not None)
        return json.dumps(obj, separators=(",", ":"))
    if name in ("MEDIA_BUFFERING_COMPLETED", "MEDIA_MARK_PROCESSED"):
        cid = fields["correlation_id"]
        return name + (" " + cid if cid else "")
    parts = [name]
    for key, value in fields.items():
        if value is None or key == "channel_variables":
            continue
        if type(value) is bool:
            value = "true" if value else "false"
        parts.append(f"{key}:{value}")
    return " ".join(parts)


def _fieldsOf(name: str, **renames: str) -> Callable[[Any], tuple[str, dict[str, Any]]]:
    def fields(event: Any) -> tuple[str, dict[str, Any]]:
        return name, {wire: getattr(event, attr) for wire, attr in renames.items()}

    return fields


_EVENT_FIELDS: Final[Mapping[type, Callable[[Any], tuple[str, dict[str, Any]]]]] = {
    MediaStart: lambda e: (
        "MEDIA_START",
        {
            "connection_id": e.connectionId,
            "channel": e.channel,
            "channel_id": e.channelId,
            "format": e.format,
            "optimal_frame_size": e.optimalFrameSize,
            "ptime": e.ptime,
            "channel_variables": dict(e.channelVariables),
        },
    ),
    DtmfEnd: _fieldsOf("DTMF_END", digit="digit", channel_id="channelId"),
    MediaXoff: _fieldsOf("MEDIA_XOFF", channel_id="channelId"),
    MediaXon: _fieldsOf("MEDIA_XON", channel_id="channelId"),
    QueueDrained: _fieldsOf("QUEUE_DRAINED", channel_id="channelId"),
    Status: _fieldsOf(
        "STATUS",
        channel_id="channelId",
        queue_length="queueLength",
        xon_level="xonLevel",
        xoff_level="xoffLevel",
        queue_full="queueFull",
        bulk_media="bulkMedia",
        media_paused="mediaPaused",
    ),
    MediaBufferingCompleted: _fieldsOf(
        "MEDIA_BUFFERING_COMPLETED", channel_id="channelId", correlation_id="correlationId"
    ),
    MediaMarkProcessed: _fieldsOf(
        "MEDIA_MARK_PROCESSED", channel_id="channelId", correlation_id="correlationId"
    ),
    ErrorEvent: _fieldsOf("ERROR", channel_id="channelId", error_text="errorText"),
}
