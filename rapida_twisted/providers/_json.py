# -*- test-case-name: tests.test_codec_twilio -*-
"""
The JSON wire helpers every provider codec shares (Twilio, Vonage, Exotel
and the simulator's clients): L{ProtocolError} and its codes, strict
message parsing (L{loadObject}, L{decodeEvent}), lenient field readers,
DTMF symbols, base64 and compact encoding.

Pure: no reactor, no logging, no I/O.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, TypeVar

from ..errors import DTMF_DIGITS, WireError

__all__ = [
    "BAD_AUDIO",
    "BAD_BASE64",
    "BAD_JSON",
    "BAD_VALUE",
    "DTMF_DIGITS",
    "MISSING_FIELD",
    "NOT_OBJECT",
    "TOO_LARGE",
    "WRONG_TYPE",
    "ProtocolError",
    "Unknown",
    "base64Text",
    "decodeBase64",
    "decodeEvent",
    "dtmfDigit",
    "dtmfDigits",
    "dumps",
    "eventName",
    "loadObject",
    "optionalInt",
    "optionalObject",
    "optionalStr",
    "quote",
    "requireObject",
    "requireStr",
    "splitMediaType",
    "stringMap",
    "toInt",
]

#: L{ProtocolError.code} values.
TOO_LARGE: Final = "too_large"
BAD_JSON: Final = "bad_json"
NOT_OBJECT: Final = "not_object"
MISSING_FIELD: Final = "missing_field"
WRONG_TYPE: Final = "wrong_type"
BAD_VALUE: Final = "bad_value"
BAD_BASE64: Final = "bad_base64"
BAD_AUDIO: Final = "bad_audio"


_EMPTY: Final[Mapping[str, str]] = MappingProxyType({})
_COMPACT: Final = (",", ":")
_JSON_SPACE: Final = " \t\n\r"
_rawDecode = json.JSONDecoder().raw_decode
_b64decode = binascii.a2b_base64
_b64encode = binascii.b2a_base64


class ProtocolError(WireError):
    """
    A provider message that cannot be decoded.

    The WebSocket layer maps it to a close code (1007 or 4400).

    @ivar code: a short machine-readable code, one of L{TOO_LARGE},
        L{BAD_JSON}, L{NOT_OBJECT}, L{MISSING_FIELD}, L{WRONG_TYPE},
        L{BAD_VALUE}, L{BAD_BASE64}, L{BAD_AUDIO}.
    @ivar reason: a human-readable explanation naming the field.
    """


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


def decodeBase64(value: str | bytes, where: str) -> bytes:
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
