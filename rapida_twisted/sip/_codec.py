# -*- test-case-name: tests.test_sip_codec -*-
"""
SIP message codec (RFC 3261): bytes in, immutable objects out, and back.

Pure: no reactor, no transport, no logging.  Everything that goes wrong with
bytes from the network is reported as L{SipParseError} (a C{ValueError});
nothing else escapes L{parseMessage}.

What the parser checks on every message (so that a message it returns can be
used without further syntax checks):

 - the start line (method token, Request-URI, C{SIP/2.0}; or status code and
   reason phrase); a request line with another SIP version gets code 505;
 - header lines (token names, folding), compact forms mapped to canonical
   names, comma-separated values of list headers split into entries;
 - C{Via}, C{From}, C{To}, C{Call-ID}, C{CSeq} present and well formed;
   C{CSeq} method equal to the request method; C{Contact} well formed;
   C{Max-Forwards} and C{Content-Length} decimal; no headers in a SIP
   Request-URI;
 - C{Content-Length} honoured (extra bytes after the body are ignored, as on
   UDP; a body shorter than announced is an error); without it the body is
   the rest of the datagram.

The structured accessors of a parsed message (C{vias}, C{fromAddress},
C{toAddress}, C{cseq}, C{contacts}, C{callId}) therefore never raise.  Other
structured accessors (C{routes}, C{recordRoutes}) parse on first use and
raise L{SipParseError} for a malformed value.

When a request fails to parse, L{SipParseError.partial} carries the request
method and the raw header values that could be read, so that the caller can
answer (L{badRequestFor}) when L{SipParseError.canAnswer} is true.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import ClassVar, Self
from urllib.parse import quote as _urlquote
from urllib.parse import unquote as _urlunquote

__all__ = [
    "BRANCH_COOKIE",
    "MAX_MESSAGE_SIZE",
    "REASONS",
    "AbsoluteURI",
    "Address",
    "CSeq",
    "Headers",
    "Parameterized",
    "Params",
    "PartialMessage",
    "SipMessage",
    "SipParseError",
    "SipRequest",
    "SipResponse",
    "SipURI",
    "SipURIError",
    "URI",
    "Via",
    "badRequestFor",
    "canonicalName",
    "frameLength",
    "newBranch",
    "newCallId",
    "newTag",
    "parseAddress",
    "parseCSeq",
    "parseMessage",
    "parseParameterized",
    "parseParams",
    "parseURI",
    "parseVia",
    "quoteString",
    "reasonPhrase",
    "responseFor",
    "unquoteString",
]

#: The largest message accepted (RFC 3261 §18.1.1 leaves it to us; 64 KiB).
MAX_MESSAGE_SIZE = 65536

#: RFC 3261 §7.1 magic cookie that starts every RFC 3261 branch.
BRANCH_COOKIE = "z9hG4bK"

_SIP_VERSION = "SIP/2.0"


# ---------------------------------------------------------------------------
# Errors


class SipParseError(ValueError):
    """
    Malformed SIP input.

    @ivar reason: what is wrong, in words (safe to put in a reason phrase).
    @ivar partial: what could be read of the message (C{None} when not even
        the start line was found), see L{PartialMessage}.
    @ivar code: the status code a UAS answers with when it can answer: 400
        normally, 505 for an unsupported SIP version, 513 for a message too
        large.
    """

    def __init__(self, reason: str, partial: PartialMessage | None = None, code: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.partial = partial
        self.code = code

    @property
    def canAnswer(self) -> bool:
        """
        C{True} when the input was a request (not C{ACK}) with enough headers
        (a C{Via} and a C{CSeq}) for a response to reach and match it.
        """
        return self.partial is not None and self.partial.canAnswer


class SipURIError(SipParseError):
    """
    A malformed URI.
    """


# ---------------------------------------------------------------------------
# Header names

_CANONICAL_NAMES = [
    "Accept",
    "Accept-Contact",
    "Accept-Encoding",
    "Accept-Language",
    "Alert-Info",
    "Allow",
    "Allow-Events",
    "Authentication-Info",
    "Authorization",
    "Call-ID",
    "Call-Info",
    "Contact",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Content-Length",
    "Content-Type",
    "CSeq",
    "Date",
    "Error-Info",
    "Event",
    "Expires",
    "From",
    "Identity",
    "Identity-Info",
    "In-Reply-To",
    "Max-Forwards",
    "MIME-Version",
    "Min-Expires",
    "Min-SE",
    "Organization",
    "P-Asserted-Identity",
    "P-Preferred-Identity",
    "Path",
    "Priority",
    "Privacy",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Require",
    "RAck",
    "Reason",
    "Record-Route",
    "Refer-Sub",
    "Refer-To",
    "Referred-By",
    "Reject-Contact",
    "Replaces",
    "Reply-To",
    "Request-Disposition",
    "Require",
    "Retry-After",
    "Route",
    "RSeq",
    "Server",
    "Service-Route",
    "Session-Expires",
    "SIP-ETag",
    "SIP-If-Match",
    "Subject",
    "Subscription-State",
    "Supported",
    "Timestamp",
    "To",
    "Unsupported",
    "User-Agent",
    "Via",
    "Warning",
    "WWW-Authenticate",
]

#: compact forms (RFC 3261 §7.3.3 and later extensions)
_COMPACT = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

_CANON: dict[str, str] = {name.lower(): name for name in _CANONICAL_NAMES}
_CANON.update(_COMPACT)

#: headers whose comma-separated values are separate entries (RFC 3261 §7.3.1)
_LIST_HEADERS = frozenset(
    {
        "Accept",
        "Accept-Contact",
        "Accept-Encoding",
        "Accept-Language",
        "Alert-Info",
        "Allow",
        "Allow-Events",
        "Call-Info",
        "Contact",
        "Content-Encoding",
        "Content-Language",
        "Error-Info",
        "In-Reply-To",
        "P-Asserted-Identity",
        "P-Preferred-Identity",
        "Path",
        "Privacy",
        "Proxy-Require",
        "Reason",
        "Record-Route",
        "Reject-Contact",
        "Require",
        "Route",
        "Service-Route",
        "Supported",
        "Unsupported",
        "Via",
        "Warning",
    }
)


def canonicalName(name: str) -> str:
    """
    The canonical spelling of a header name: compact forms are expanded and
    known names get their RFC capitalisation; unknown names are returned
    unchanged (they still compare case-insensitively).
    """
    return _CANON.get(name.lower(), name)


# ---------------------------------------------------------------------------
# Headers


class Headers:
    """
    An immutable ordered list of C{(name, value)} header entries.

    Names are canonical (see L{canonicalName}) and compared
    case-insensitively.  A list header received as C{Via: a, b} is two
    entries.  The modifiers (L{add}, L{set}, L{remove}) return new objects.
    """

    __slots__ = ("_items", "_index")

    _items: tuple[tuple[str, str], ...]
    _index: dict[str, list[str]]

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        entries: list[tuple[str, str]] = []
        index: dict[str, list[str]] = {}
        for name, value in items:
            lower = name.lower()
            name = _CANON.get(lower, name)
            entries.append((name, value))
            key = name.lower()
            bucket = index.get(key)
            if bucket is None:
                index[key] = [value]
            else:
                bucket.append(value)
        self._items = tuple(entries)
        self._index = index

    @classmethod
    def _trusted(cls, items: list[tuple[str, str]], index: dict[str, list[str]]) -> Headers:
        self = cls.__new__(cls)
        self._items = tuple(items)
        self._index = index
        return self

    def get(self, name: str, default: str | None = None) -> str | None:
        """
        The first value of header C{name}, or C{default}.
        """
        bucket = self._index.get(_CANON.get(name.lower(), name).lower())
        return bucket[0] if bucket else default

    def getAll(self, name: str) -> tuple[str, ...]:
        """
        Every value of header C{name}, in order (empty when absent).
        """
        bucket = self._index.get(_CANON.get(name.lower(), name).lower())
        return tuple(bucket) if bucket else ()

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return _CANON.get(name.lower(), name).lower() in self._index

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return self._items == other._items

    def __hash__(self) -> int:
        return hash(self._items)

    def __repr__(self) -> str:
        return f"Headers({list(self._items)!r})"

    def items(self) -> tuple[tuple[str, str], ...]:
        """
        The entries as a tuple of C{(name, value)}.
        """
        return self._items

    def add(self, name: str, value: str) -> Headers:
        """
        A copy with C{name: value} appended.
        """
        return Headers((*self._items, (name, value)))

    def set(self, name: str, *values: str) -> Headers:
        """
        A copy where header C{name} has exactly C{values}: they take the place
        of the first existing entry, or are appended.
        """
        key = canonicalName(name).lower()
        out: list[tuple[str, str]] = []
        placed = False
        for entry in self._items:
            if entry[0].lower() == key:
                if not placed:
                    out.extend((name, v) for v in values)
                    placed = True
            else:
                out.append(entry)
        if not placed:
            out.extend((name, v) for v in values)
        return Headers(out)

    def remove(self, name: str) -> Headers:
        """
        A copy without any entry of header C{name}.
        """
        key = canonicalName(name).lower()
        return Headers(entry for entry in self._items if entry[0].lower() != key)


# ---------------------------------------------------------------------------
# Lexical helpers

_TOKEN_CHARS = "A-Za-z0-9\\-.!%*_+`'~"
_TOKEN = re.compile(f"[{_TOKEN_CHARS}]+")
_DISPLAY_TOKENS = re.compile(f"[{_TOKEN_CHARS}\\s\u0080-\U0010ffff]*")
_PARAM_VALUE = re.compile(r'[^\s;,"<>]+')
_FOLD = re.compile(r"[ \t]*\n[ \t]+")
_HEADER_LINE = re.compile(f"([{_TOKEN_CHARS}]+)[ \\t]*:(.*)", re.S)
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
_HOST = re.compile(r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_\-.]+")
_SENT_BY = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_\-.]+)(?:[ \t]*:[ \t]*([0-9]{1,5}))?")
_SENT_PROTOCOL = re.compile(
    f"([{_TOKEN_CHARS}]+)[ \\t]*/[ \\t]*([{_TOKEN_CHARS}]+)[ \\t]*/[ \\t]*([{_TOKEN_CHARS}]+)[ \\t]+(.*)",
    re.S,
)
_CSEQ = re.compile(f"([0-9]+)[ \\t]+([{_TOKEN_CHARS}]+)")
_DIGITS = re.compile(r"[0-9]+")
_VERSION = re.compile(r"SIP/[0-9]+\.[0-9]+", re.I)
_WHITESPACE = re.compile(r"\s")
_URI_FORBIDDEN = re.compile(r'[\s<>"]')
_SPLIT_SCAN = {
    ",": re.compile(r'[\\",<>]'),
    ";": re.compile(r'[\\";<>]'),
}


def _split(text: str, sep: str, angles: bool) -> list[str] | None:
    """
    Split C{text} on C{sep} outside quoted strings (and outside C{<...>} when
    C{angles}); C{None} when a quote or bracket is left open.
    """
    if '"' not in text and not (angles and "<" in text):
        return text.split(sep)
    parts: list[str] = []
    start = 0
    pos = 0
    inQuote = False
    inAngle = False
    search = _SPLIT_SCAN[sep].search
    while True:
        m = search(text, pos)
        if m is None:
            break
        c = m.group()
        i = m.start()
        if inQuote:
            if c == "\\":
                pos = i + 2
                continue
            if c == '"':
                inQuote = False
        elif c == '"':
            inQuote = True
        elif angles and c == "<":
            inAngle = True
        elif angles and c == ">":
            inAngle = False
        elif c == sep and not inAngle:
            parts.append(text[start:i])
            start = i + 1
        pos = i + 1
    if inQuote or inAngle:
        return None
    parts.append(text[start:])
    return parts


def _quotedEnd(text: str, start: int) -> int:
    """
    Index just after the quoted string starting at C{text[start] == '"'}.
    """
    i = start + 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            if i + 1 >= n or text[i + 1] in "\r\n":
                break
            i += 2
            continue
        if c == '"':
            return i + 1
        i += 1
    raise SipParseError("unterminated quoted string")


def unquoteString(text: str) -> str:
    """
    The content of a quoted string (C{'"a \\\\"b\\\\""'} → C{'a "b"'});
    text that is not quoted is returned unchanged.
    """
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        inner = text[1:-1]
        if "\\" not in inner:
            return inner
        return re.sub(r"\\(.)", r"\1", inner, flags=re.S)
    return text


def quoteString(text: str) -> str:
    """
    C{text} as a quoted string, escaping C{\\} and C{"}.
    """
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unescape(text: str, what: str) -> str:
    if "%" not in text:
        return text
    if _BAD_ESCAPE.search(text):
        raise SipURIError(f"bad escape in URI {what}")
    return _urlunquote(text, errors="surrogateescape")


#: characters left unescaped (RFC 3261 §25.1 unreserved plus part-specific sets)
_SAFE_USER = "-_.!~*'()&=+$,;?/"
_SAFE_PASSWORD = "-_.!~*'()&=+$,"
_SAFE_PARAM = "-_.!~*'()[]/:&+$"
_SAFE_HEADER = "-_.!~*'()[]/?:+$"


def _escape(text: str, safe: str) -> str:
    return _urlquote(text, safe=safe, errors="surrogateescape")


# ---------------------------------------------------------------------------
# Parameters


@dataclass(frozen=True, slots=True)
class Params:
    """
    An ordered list of C{;name=value} parameters.

    Names compare case-insensitively; a value of C{None} is a parameter
    without value (C{;lr}).  Header parameter values are kept as received
    (a quoted value keeps its quotes, see L{unquoteString}); URI parameter
    values are unescaped.
    """

    items: tuple[tuple[str, str | None], ...] = ()

    def get(self, name: str, default: str | None = None) -> str | None:
        """
        The value of parameter C{name}: C{default} when absent, C{None} when
        present without a value.
        """
        key = name.lower()
        for k, v in self.items:
            if k.lower() == key:
                return v
        return default

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = name.lower()
        return any(k.lower() == key for k, _ in self.items)

    def __iter__(self) -> Iterator[tuple[str, str | None]]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def set(self, name: str, value: str | None = None) -> Params:
        """
        A copy with C{name} set to C{value} (replacing an existing one in
        place, else appended).
        """
        key = name.lower()
        out: list[tuple[str, str | None]] = []
        placed = False
        for k, v in self.items:
            if k.lower() == key:
                if not placed:
                    out.append((name, value))
                    placed = True
            else:
                out.append((k, v))
        if not placed:
            out.append((name, value))
        return Params(tuple(out))

    def remove(self, name: str) -> Params:
        """
        A copy without parameter C{name}.
        """
        key = name.lower()
        return Params(tuple((k, v) for k, v in self.items if k.lower() != key))

    def toString(self, escape: str | None = None) -> str:
        """
        C{;a=b;c} form (C{""} when empty).  With C{escape}, names and values
        are %-escaped keeping the characters of C{escape} (URI parameters).
        """
        out = []
        for k, v in self.items:
            if escape is not None:
                k = _escape(k, escape)
                v = None if v is None else _escape(v, escape)
            out.append(f";{k}" if v is None else f";{k}={v}")
        return "".join(out)

    __str__ = toString


def parseParams(text: str) -> Params:
    """
    Parse header parameters C{;a=b ; c ;d="x;y"} (leading LWS allowed).

    @raise SipParseError: empty or malformed parameter.
    """
    text = text.strip()
    if not text:
        return _NO_PARAMS
    if text[0] != ";":
        raise SipParseError("parameters must start with ';'")
    parts = _split(text, ";", angles=False)
    if parts is None:
        raise SipParseError("unterminated quoted string in parameters")
    items: list[tuple[str, str | None]] = []
    for part in parts[1:]:
        eq = part.find("=")
        if eq < 0:
            name = part.strip()
            value: str | None = None
        else:
            name = part[:eq].strip()
            value = part[eq + 1 :].strip()
            if value[:1] == '"':
                if _quotedEnd(value, 0) != len(value):
                    raise SipParseError("garbage after quoted parameter value")
            elif not _PARAM_VALUE.fullmatch(value):
                raise SipParseError(f"bad value for parameter {name!r}")
        if not _TOKEN.fullmatch(name):
            raise SipParseError("empty or malformed parameter name")
        items.append((name, value))
    return Params(tuple(items))


_NO_PARAMS = Params()


@dataclass(frozen=True, slots=True)
class Parameterized:
    """
    A header value of the shape C{value;param=...} (C{Reason},
    C{Content-Type}, C{Event}, C{Subscription-State}, C{Session-Expires}...).
    """

    value: str
    params: Params = _NO_PARAMS


def parseParameterized(text: str) -> Parameterized:
    """
    Split C{text} into its main value and its parameters.

    @raise SipParseError: malformed parameters.
    """
    parts = _split(text, ";", angles=False)
    if parts is None:
        raise SipParseError("unterminated quoted string")
    main = parts[0].strip()
    if len(parts) == 1:
        return Parameterized(main)
    return Parameterized(main, parseParams(text[len(parts[0]) :]))


# ---------------------------------------------------------------------------
# URIs


@dataclass(frozen=True, slots=True)
class SipURI:
    """
    A C{sip:}, C{sips:} or C{tel:} URI.

    C{user}, C{password}, parameter values and header values are unescaped.
    For C{tel:} the number is in C{user} and C{host} is empty.
    """

    scheme: str
    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    params: Params = _NO_PARAMS
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def transport(self) -> str | None:
        """
        The C{transport} parameter, lower case, or C{None}.
        """
        value = self.params.get("transport")
        return value.lower() if value else None

    @property
    def hostPort(self) -> str:
        """
        C{host} or C{host:port}.
        """
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def toString(self) -> str:
        """
        The URI text, escaped.
        """
        if self.scheme == "tel":
            return f"tel:{self.user or ''}{self.params.toString(_SAFE_PARAM)}"
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(_escape(self.user, _SAFE_USER))
            if self.password is not None:
                out.append(":")
                out.append(_escape(self.password, _SAFE_PASSWORD))
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out.append(f":{self.port}")
        if self.params.items:
            out.append(self.params.toString(_SAFE_PARAM))
        if self.headers:
            out.append("?")
            out.append(
                "&".join(
                    f"{_escape(k, _SAFE_HEADER)}={_escape(v, _SAFE_HEADER)}"
                    for k, v in self.headers
                )
            )
        return "".join(out)

    __str__ = toString


@dataclass(frozen=True, slots=True)
class AbsoluteURI:
    """
    A URI of a scheme this codec does not interpret (C{http:}, C{urn:}...).
    A UAS answers a Request-URI of this kind with 416.
    """

    scheme: str
    opaque: str

    def toString(self) -> str:
        """
        The URI text.
        """
        return f"{self.scheme}:{self.opaque}"

    __str__ = toString


URI = SipURI | AbsoluteURI


def _parseURIParams(text: str) -> Params:
    items: list[tuple[str, str | None]] = []
    for part in text.split(";")[1:]:
        name, eq, value = part.partition("=")
        if not name:
            raise SipURIError("empty URI parameter")
        items.append((_unescape(name, "parameter"), _unescape(value, "parameter") if eq else None))
    return Params(tuple(items))


def parseURI(text: str) -> SipURI | AbsoluteURI:
    """
    Parse a URI: C{sip:}, C{sips:} and C{tel:} into L{SipURI}, any other
    scheme into L{AbsoluteURI}.

    @raise SipURIError: malformed URI.
    """
    colon = text.find(":")
    if colon <= 0 or not _SCHEME.fullmatch(text, 0, colon):
        raise SipURIError("URI without a valid scheme")
    if _URI_FORBIDDEN.search(text):
        raise SipURIError('URI contains whitespace or <>"')
    scheme = text[:colon].lower()
    rest = text[colon + 1 :]
    if not rest:
        raise SipURIError("empty URI")
    if scheme == "tel":
        number, telSemi, telParams = rest.partition(";")
        if not number:
            raise SipURIError("tel URI without a number")
        return SipURI(
            "tel",
            "",
            user=_unescape(number, "number"),
            params=_parseURIParams(";" + telParams) if telSemi else _NO_PARAMS,
        )
    if scheme not in ("sip", "sips"):
        return AbsoluteURI(scheme, rest)
    at = rest.find("@")
    user = password = None
    if at >= 0:
        userinfo = rest[:at]
        rest = rest[at + 1 :]
        name, colon2, secret = userinfo.partition(":")
        if not name:
            raise SipURIError("empty user part")
        user = _unescape(name, "user")
        if colon2:
            password = _unescape(secret, "password")
    rest, question, headerText = rest.partition("?")
    hostport, semi, paramText = rest.partition(";")
    headers: tuple[tuple[str, str], ...] = ()
    if question:
        pairs = []
        for pair in headerText.split("&"):
            hname, eq, hvalue = pair.partition("=")
            if not hname or not eq:
                raise SipURIError("malformed URI header")
            pairs.append((_unescape(hname, "header"), _unescape(hvalue, "header")))
        headers = tuple(pairs)
    m = _HOST.match(hostport)
    if m is None:
        raise SipURIError("URI without a valid host")
    host = m.group()
    port = None
    tail = hostport[m.end() :]
    if tail:
        if tail[0] != ":" or not _DIGITS.fullmatch(tail, 1):
            raise SipURIError("malformed host or port in URI")
        port = int(tail[1:])
        if port > 65535:
            raise SipURIError("URI port out of range")
    params = _parseURIParams(";" + paramText) if semi else _NO_PARAMS
    return SipURI(scheme, host, user, password, port, params, headers)


# ---------------------------------------------------------------------------
# Addresses (From, To, Contact, Route, Record-Route, Refer-To ...)


@dataclass(frozen=True, slots=True)
class Address:
    """
    A name-addr or addr-spec with header parameters:
    C{"Display" <sip:user@host>;tag=abc}.
    """

    uri: SipURI | AbsoluteURI
    displayName: str | None = None
    params: Params = _NO_PARAMS

    @property
    def tag(self) -> str | None:
        """
        The C{tag} parameter, or C{None}.
        """
        return self.params.get("tag")

    def withTag(self, tag: str) -> Address:
        """
        A copy with C{tag} set.
        """
        return replace(self, params=self.params.set("tag", tag))

    def toString(self) -> str:
        """
        Name-addr form (the URI always within C{<>}).
        """
        name = ""
        if self.displayName:
            if _TOKEN_WORDS.fullmatch(self.displayName):
                name = self.displayName + " "
            else:
                name = quoteString(self.displayName) + " "
        return f"{name}<{self.uri.toString()}>{self.params.toString()}"

    __str__ = toString


_TOKEN_WORDS = re.compile(f"[{_TOKEN_CHARS}]+(?: [{_TOKEN_CHARS}]+)*")


def parseAddress(text: str) -> Address:
    """
    Parse a name-addr (C{"Bob" <sip:bob@host>;tag=1}, C{Bob <sip:...>}) or
    an addr-spec (C{sip:bob@host;tag=1}; the parameters then belong to the
    header, and the URI may not contain C{;}, C{,} or C{?}).

    @raise SipParseError: malformed address.
    """
    text = text.strip()
    if not text:
        raise SipParseError("empty address")
    display: str | None
    if text[0] == '"':
        end = _quotedEnd(text, 0)
        display = unquoteString(text[:end])
        rest = text[end:].lstrip()
        if rest[:1] != "<":
            raise SipParseError("quoted display name not followed by <URI>")
    else:
        lt = text.find("<")
        if lt >= 0:
            display = text[:lt].strip()
            if not _DISPLAY_TOKENS.fullmatch(display):
                raise SipParseError("display name must be quoted")
            rest = text[lt:]
        else:
            semi = text.find(";")
            uriText = (text if semi < 0 else text[:semi]).rstrip()
            if "?" in uriText or "," in uriText:
                raise SipParseError("URI with ',' or '?' must be enclosed in <>")
            params = parseParams(text[semi:]) if semi >= 0 else _NO_PARAMS
            return Address(parseURI(uriText), None, params)
    gt = rest.find(">")
    if gt < 0:
        raise SipParseError("unterminated <URI>")
    uriText = rest[1:gt]
    if not uriText or uriText != uriText.strip():
        raise SipParseError("whitespace inside <URI>")
    params = parseParams(rest[gt + 1 :]) if gt + 1 < len(rest) else _NO_PARAMS
    return Address(parseURI(uriText), display or None, params)


def _parseAddressList(values: Iterable[str]) -> tuple[Address, ...]:
    return tuple(parseAddress(v) for v in values)


# ---------------------------------------------------------------------------
# Via and CSeq


@dataclass(frozen=True, slots=True)
class Via:
    """
    One C{Via} entry: C{SIP/2.0/UDP host:port;branch=...;rport;received=...}.
    """

    transport: str
    host: str
    port: int | None = None
    params: Params = _NO_PARAMS
    protocol: str = _SIP_VERSION

    @property
    def branch(self) -> str | None:
        """
        The C{branch} parameter, or C{None}.
        """
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        """
        The C{received} parameter, or C{None}.
        """
        return self.params.get("received")

    @property
    def hasRport(self) -> bool:
        """
        Whether the C{rport} parameter is present (RFC 3581), with or without
        a value.
        """
        return "rport" in self.params

    @property
    def rport(self) -> int | None:
        """
        The numeric C{rport} value, or C{None} (absent, valueless or bad).
        """
        value = self.params.get("rport")
        return int(value) if value and value.isdigit() and len(value) <= 5 else None

    @property
    def sentBy(self) -> str:
        """
        C{host} or C{host:port}.
        """
        return self.host if self.port is None else f"{self.host}:{self.port}"

    @property
    def isRfc3261Branch(self) -> bool:
        """
        Whether the branch starts with the magic cookie and has more after it.
        """
        branch = self.branch
        return branch is not None and len(branch) > 7 and branch.startswith(BRANCH_COOKIE)

    def withReceived(self, host: str, port: int) -> Via:
        """
        The entry as a server stamps it (RFC 3261 §18.2.1, RFC 3581 §4):
        C{received} when the source host differs from the sent-by host (or
        when C{rport} is present), C{rport} filled with C{port} when present.
        """
        params = self.params
        rport = self.hasRport
        if rport or host != self.host:
            params = params.set("received", host)
        if rport:
            params = params.set("rport", str(port))
        return replace(self, params=params)

    def responseTarget(self) -> tuple[str, int]:
        """
        Where a response to a request with this (top) entry goes over UDP
        (RFC 3261 §18.2.2, RFC 3581 §4): the C{received} host (else the
        sent-by host, IPv6 without brackets), and the C{rport} port (else
        the sent-by port, else 5060, or 5061 for TLS).
        """
        host = self.received or self.host
        if host.startswith("["):
            host = host[1:-1]
        port = self.rport or self.port or (5061 if self.transport == "TLS" else 5060)
        return host, port

    def toString(self) -> str:
        """
        The entry as text.
        """
        return f"{self.protocol}/{self.transport} {self.sentBy}{self.params.toString()}"

    __str__ = toString


def parseVia(text: str) -> Via:
    """
    Parse one C{Via} entry (LWS allowed around C{/}, C{:}, C{;} and C{=}).

    @raise SipParseError: malformed entry.
    """
    m = _SENT_PROTOCOL.fullmatch(text.strip())
    if m is None:
        raise SipParseError("malformed Via")
    name, version, transport, rest = m.groups()
    sentBy, semi, paramText = rest.partition(";")
    sb = _SENT_BY.fullmatch(sentBy.strip())
    if sb is None:
        raise SipParseError("malformed Via sent-by")
    host, portText = sb.groups()
    port = int(portText) if portText else None
    if port is not None and port > 65535:
        raise SipParseError("Via port out of range")
    params = parseParams(";" + paramText) if semi else _NO_PARAMS
    return Via(transport.upper(), host, port, params, f"{name.upper()}/{version}")


@dataclass(frozen=True, slots=True)
class CSeq:
    """
    A C{CSeq} value: sequence number and method.
    """

    number: int
    method: str

    def toString(self) -> str:
        """
        C{"<number> <method>"}.
        """
        return f"{self.number} {self.method}"

    __str__ = toString


def parseCSeq(text: str) -> CSeq:
    """
    Parse a C{CSeq} value; the number must be below 2**31.

    @raise SipParseError: malformed value.
    """
    m = _CSEQ.fullmatch(text.strip())
    if m is None:
        raise SipParseError("malformed CSeq")
    digits = m.group(1)
    if len(digits) > 10 or int(digits) >= 2**31:
        raise SipParseError("CSeq number too large")
    return CSeq(int(digits), m.group(2))


# ---------------------------------------------------------------------------
# Messages


@dataclass(frozen=True, eq=True)
class SipMessage:
    """
    What requests and responses share: headers, body and structured header
    accessors (parsed once, on first use, then cached).
    """

    isRequest: ClassVar[bool]

    headers: Headers
    body: bytes

    def get(self, name: str, default: str | None = None) -> str | None:
        """
        The first value of header C{name}, or C{default}.
        """
        return self.headers.get(name, default)

    def getAll(self, name: str) -> tuple[str, ...]:
        """
        Every value of header C{name}.
        """
        return self.headers.getAll(name)

    def _required(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise SipParseError(f"missing {name}")
        return value

    @cached_property
    def vias(self) -> tuple[Via, ...]:
        """
        The C{Via} entries, top first.
        """
        return tuple(parseVia(v) for v in self.headers.getAll("Via"))

    @property
    def topVia(self) -> Via:
        """
        The first C{Via} entry.

        @raise SipParseError: no C{Via}.
        """
        vias = self.vias
        if not vias:
            raise SipParseError("missing Via")
        return vias[0]

    @cached_property
    def fromAddress(self) -> Address:
        """
        The C{From} address.
        """
        return parseAddress(self._required("From"))

    @cached_property
    def toAddress(self) -> Address:
        """
        The C{To} address.
        """
        return parseAddress(self._required("To"))

    @property
    def callId(self) -> str:
        """
        The C{Call-ID}.
        """
        return self._required("Call-ID")

    @cached_property
    def cseq(self) -> CSeq:
        """
        The C{CSeq}.
        """
        return parseCSeq(self._required("CSeq"))

    @cached_property
    def contacts(self) -> tuple[Address, ...]:
        """
        The C{Contact} addresses (a C{*} wildcard is left out).
        """
        return _parseAddressList(v for v in self.headers.getAll("Contact") if v != "*")

    @cached_property
    def routes(self) -> tuple[Address, ...]:
        """
        The C{Route} addresses.
        """
        return _parseAddressList(self.headers.getAll("Route"))

    @cached_property
    def recordRoutes(self) -> tuple[Address, ...]:
        """
        The C{Record-Route} addresses, in received order.
        """
        return _parseAddressList(self.headers.getAll("Record-Route"))

    @property
    def contentType(self) -> str | None:
        """
        The media type of C{Content-Type}, lower case, without parameters
        (C{"application/sdp"}), or C{None}.
        """
        value = self.headers.get("Content-Type")
        if value is None:
            return None
        return value.partition(";")[0].strip().lower()

    @property
    def maxForwards(self) -> int | None:
        """
        The C{Max-Forwards} value, or C{None}.
        """
        value = self.headers.get("Max-Forwards")
        return int(value) if value is not None and value.isdigit() else None

    def _startLine(self) -> str:
        raise NotImplementedError()

    def toBytes(self) -> bytes:
        """
        The wire form: canonical header names, one entry per line, and a
        correct C{Content-Length} (in place of the first one, or last).
        """
        lines = [self._startLine()]
        length = f"Content-Length: {len(self.body)}"
        placed = False
        for name, value in self.headers._items:
            if name == "Content-Length":
                if not placed:
                    lines.append(length)
                    placed = True
                continue
            lines.append(f"{name}: {value}")
        if not placed:
            lines.append(length)
        lines.append("")
        lines.append("")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + self.body

    def withHeader(self, name: str, *values: str) -> Self:
        """
        A copy where header C{name} has exactly C{values}.
        """
        return replace(self, headers=self.headers.set(name, *values))

    def addHeader(self, name: str, value: str) -> Self:
        """
        A copy with C{name: value} appended.
        """
        return replace(self, headers=self.headers.add(name, value))

    def withoutHeader(self, name: str) -> Self:
        """
        A copy without header C{name}.
        """
        return replace(self, headers=self.headers.remove(name))

    def withBody(self, body: bytes, contentType: str | None = None) -> Self:
        """
        A copy with C{body} (and C{Content-Type} when given; removed when the
        body is empty and no type is given).
        """
        headers = self.headers
        if contentType is not None:
            headers = headers.set("Content-Type", contentType)
        elif not body:
            headers = headers.remove("Content-Type")
        return replace(self, headers=headers, body=body)


@dataclass(frozen=True, eq=True)
class SipRequest(SipMessage):
    """
    A SIP request.  C{uri} is the Request-URI.
    """

    isRequest: ClassVar[bool] = True

    method: str
    uri: SipURI | AbsoluteURI

    def __init__(
        self,
        method: str,
        uri: SipURI | AbsoluteURI,
        headers: Headers | Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> None:
        object.__setattr__(self, "method", method)
        object.__setattr__(self, "uri", uri)
        object.__setattr__(
            self, "headers", headers if isinstance(headers, Headers) else Headers(headers)
        )
        object.__setattr__(self, "body", body)

    def _startLine(self) -> str:
        return f"{self.method} {self.uri.toString()} {_SIP_VERSION}"

    def __repr__(self) -> str:
        return f"<SipRequest {self.method} {self.uri.toString()} call-id={self.get('Call-ID')!r}>"


@dataclass(frozen=True, eq=True)
class SipResponse(SipMessage):
    """
    A SIP response.
    """

    isRequest: ClassVar[bool] = False

    code: int
    reason: str

    def __init__(
        self,
        code: int,
        reason: str | None = None,
        headers: Headers | Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> None:
        object.__setattr__(self, "code", code)
        object.__setattr__(self, "reason", reasonPhrase(code) if reason is None else reason)
        object.__setattr__(
            self, "headers", headers if isinstance(headers, Headers) else Headers(headers)
        )
        object.__setattr__(self, "body", body)

    @property
    def isFinal(self) -> bool:
        """
        Whether this is a final (non-1xx) response.
        """
        return self.code >= 200

    def _startLine(self) -> str:
        return f"{_SIP_VERSION} {self.code} {self.reason}"

    def __repr__(self) -> str:
        return f"<SipResponse {self.code} {self.reason!r} call-id={self.get('Call-ID')!r}>"


@dataclass(frozen=True, slots=True)
class PartialMessage:
    """
    What a failed parse could read: whether it was a request, its method
    (C{None} when unknown) and the header entries whose lines were readable
    (raw values, unchecked).
    """

    isRequest: bool
    method: str | None
    headers: Headers = field(default_factory=Headers)

    @property
    def canAnswer(self) -> bool:
        """
        Whether a response can be built and matched: a request other than
        C{ACK} with a C{Via} and a C{CSeq}.
        """
        return (
            self.isRequest
            and self.method is not None
            and self.method != "ACK"
            and "Via" in self.headers
            and "CSeq" in self.headers
        )


# ---------------------------------------------------------------------------
# The parser


def _headerEnd(data: bytes) -> tuple[int, int]:
    """
    Where the header section ends and the body starts (CRLF CRLF, or a bare
    LF LF from lenient peers); the whole input when there is no blank line.
    """
    crlf = data.find(b"\r\n\r\n")
    lf = data.find(b"\n\n")
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return crlf, crlf + 4
    if lf >= 0:
        return lf, lf + 2
    return len(data), len(data)


def _splitStartLine(line: str) -> tuple[bool, str | None, str | None]:
    """
    (isRequest, method or None, error or None) for the start line.
    """
    if line[:4].upper() == "SIP/":
        return False, None, None
    parts = line.split(" ")
    method = parts[0] if _TOKEN.fullmatch(parts[0]) else None
    words = [p for p in parts if p]
    looksLikeRequest = method is not None and bool(_VERSION.fullmatch(words[-1]))
    if len(parts) != 3 or not all(parts):
        if looksLikeRequest:
            return True, method, "malformed Request-Line (extra or missing spaces)"
        return False, None, "malformed start line"
    if method is None:
        return False, None, "malformed method"
    return True, method, None


def parseMessage(
    data: bytes, *, datagram: bool = True, maxSize: int = MAX_MESSAGE_SIZE
) -> SipRequest | SipResponse:
    """
    Parse one SIP message.

    @param data: the bytes of one datagram (or one framed stream message).
    @param datagram: C{True} for UDP: a missing C{Content-Length} means the
        body is the rest of C{data}.  C{False} (TCP/TLS): C{Content-Length}
        is required.
    @param maxSize: messages larger than this are refused (code 513).

    @raise SipParseError: anything malformed (see the module docstring).
    """
    if len(data) > maxSize:
        headEnd, _ = _headerEnd(data[:maxSize])
        raise SipParseError("message too large", _partialOf(data[:headEnd]), code=513)
    start = 0
    n = len(data)
    while start < n and data[start] in b"\r\n":
        start += 1
    if start:
        data = data[start:]
    if not data:
        raise SipParseError("empty message")
    headEnd, bodyStart = _headerEnd(data)
    lines = _headLines(data[:headEnd])
    startLine = lines[0]
    isRequest, method, error = _splitStartLine(startLine)
    items, index, headerError = _readHeaders(lines)
    if error is None:
        error = headerError

    def fail(reason: str, code: int = 400) -> SipParseError:
        return SipParseError(
            reason, PartialMessage(isRequest, method, Headers._trusted(items, index)), code
        )

    if error is not None:
        raise fail(error)

    message: SipRequest | SipResponse
    if isRequest:
        assert method is not None
        target, version = startLine.split(" ")[1:]
        if version.upper() != _SIP_VERSION:
            if _VERSION.fullmatch(version):
                raise fail(f"unsupported version {version}", 505)
            raise fail("malformed SIP version")
        try:
            uri = parseURI(target)
        except SipParseError as e:
            raise fail(f"bad Request-URI: {e.reason}") from None
        if isinstance(uri, SipURI) and uri.headers:
            raise fail("headers are not allowed in a Request-URI")
        message = SipRequest(method, uri, Headers._trusted(items, index))
    else:
        parts = startLine.split(" ", 2)
        if parts[0].upper() != _SIP_VERSION:
            raise fail("unsupported version in Status-Line")
        if len(parts) < 2 or len(parts[1]) != 3 or not parts[1].isdigit():
            raise fail("malformed status code")
        code = int(parts[1])
        if not 100 <= code <= 699:
            raise fail("status code out of range")
        message = SipResponse(
            code, parts[2] if len(parts) > 2 else "", Headers._trusted(items, index)
        )

    # Content-Length and body
    lengths = index.get("content-length")
    if lengths:
        text = lengths[0]
        if not _DIGITS.fullmatch(text) or len(text) > 9:
            raise fail("malformed Content-Length")
        if any(v != text for v in lengths[1:]):
            raise fail("conflicting Content-Length values")
        length = int(text)
        if bodyStart + length > len(data):
            raise fail("body shorter than Content-Length")
        body = data[bodyStart : bodyStart + length]
    elif datagram:
        body = data[bodyStart:]
    else:
        raise fail("missing Content-Length on a stream transport")
    object.__setattr__(message, "body", body)

    # mandatory and structured headers
    cache = message.__dict__
    try:
        for name in ("Via", "From", "To", "Call-ID", "CSeq"):
            if name.lower() not in index:
                raise SipParseError(f"missing {name}")
        cache["vias"] = tuple(parseVia(v) for v in index["via"])
        cache["fromAddress"] = parseAddress(index["from"][0])
        cache["toAddress"] = parseAddress(index["to"][0])
        if len(index["from"]) > 1 or len(index["to"]) > 1 or len(index["call-id"]) > 1:
            raise SipParseError("repeated From, To or Call-ID")
        callId = index["call-id"][0]
        if not callId or _WHITESPACE.search(callId):
            raise SipParseError("malformed Call-ID")
        if len(index["cseq"]) > 1:
            raise SipParseError("repeated CSeq")
        cseq = cache["cseq"] = parseCSeq(index["cseq"][0])
        if isRequest and cseq.method != method:
            raise SipParseError("CSeq method does not match the request method")
        contacts = index.get("contact")
        if contacts:
            if "*" in contacts and len(contacts) > 1:
                raise SipParseError("wildcard Contact mixed with addresses")
            cache["contacts"] = _parseAddressList(v for v in contacts if v != "*")
        forwards = index.get("max-forwards")
        if forwards and (not _DIGITS.fullmatch(forwards[0]) or int(forwards[0]) > 255):
            raise SipParseError("malformed Max-Forwards")
    except SipParseError as e:
        raise fail(e.reason) from None
    return message


def _readHeaders(
    lines: list[str],
) -> tuple[list[tuple[str, str]], dict[str, list[str]], str | None]:
    """
    Read the (unfolded) header lines after the start line.  Returns the
    entries, an index by lower-case canonical name and the first error.
    """
    items: list[tuple[str, str]] = []
    index: dict[str, list[str]] = {}
    error = None
    canon = _CANON
    match = _HEADER_LINE.match
    for line in lines[1:]:
        m = match(line)
        if m is None:
            if error is None:
                error = "malformed header line"
            continue
        name, value = m.groups()
        name = canon.get(name.lower(), name)
        value = value.strip(" \t")
        key = name.lower()
        bucket = index.get(key)
        if bucket is None:
            bucket = index[key] = []
        if name in _LIST_HEADERS and "," in value:
            parts = _split(value, ",", angles=True)
            if parts is None:
                if error is None:
                    error = f"unbalanced quotes or brackets in {name}"
                parts = [value]
            for part in parts:
                part = part.strip()
                if part:
                    items.append((name, part))
                    bucket.append(part)
        else:
            items.append((name, value))
            bucket.append(value)
    return items, index, error


def _headLines(head: bytes) -> list[str]:
    """
    The lines of a header section: decoded, CRLF or LF line ends, folded
    lines joined with one space.
    """
    text = head.decode("utf-8", "surrogateescape")
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    if "\n " in text or "\n\t" in text:
        text = _FOLD.sub(" ", text)
    return text.split("\n")


def _partialOf(head: bytes) -> PartialMessage | None:
    lines = _headLines(head.lstrip(b"\r\n"))
    if not lines[0]:
        return None
    isRequest, method, _ = _splitStartLine(lines[0])
    items, index, _ = _readHeaders(lines)
    return PartialMessage(isRequest, method, Headers._trusted(items, index))


def frameLength(data: bytes, maxSize: int = MAX_MESSAGE_SIZE) -> int | None:
    """
    For stream transports: the length of the first complete message at the
    start of C{data} (leading CRLF keep-alives included), or C{None} when
    more bytes are needed.

    @raise SipParseError: no or malformed C{Content-Length}, or a message
        larger than C{maxSize}.
    """
    start = 0
    while start < len(data) and data[start] in b"\r\n":
        start += 1
    end = data.find(b"\r\n\r\n", start)
    if end < 0:
        if len(data) - start > maxSize:
            raise SipParseError("message too large", code=513)
        return None
    head = data[start:end].decode("utf-8", "surrogateescape")
    length = None
    for line in head.split("\r\n")[1:]:
        name, colon, value = line.partition(":")
        if colon and name.strip().lower() in ("content-length", "l"):
            value = value.strip()
            if not _DIGITS.fullmatch(value) or len(value) > 9:
                raise SipParseError("malformed Content-Length")
            length = int(value)
    if length is None:
        raise SipParseError("missing Content-Length on a stream transport")
    total = end + 4 + length
    if total - start > maxSize:
        raise SipParseError("message too large", code=513)
    return total if total <= len(data) else None


# ---------------------------------------------------------------------------
# Responses


#: Reason phrases (RFC 3261 §21 and later RFCs).
REASONS: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    199: "Early Dialog Terminated",
    200: "OK",
    202: "Accepted",
    204: "No Notification",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    412: "Conditional Request Failed",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    417: "Unknown Resource-Priority",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",
    423: "Interval Too Brief",
    428: "Use Identity Header",
    429: "Provide Referrer Identity",
    433: "Anonymity Disallowed",
    436: "Bad Identity-Info",
    437: "Unsupported Certificate",
    438: "Invalid Identity Header",
    439: "First Hop Lacks Outbound Support",
    440: "Max-Breadth Exceeded",
    469: "Bad Info Package",
    470: "Consent Needed",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    493: "Undecipherable",
    494: "Security Agreement Required",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    555: "Push Notification Service Not Supported",
    580: "Precondition Failure",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
    607: "Unwanted",
    608: "Rejected",
}

_CLASS_REASONS = {
    1: "Trying",
    2: "OK",
    3: "Redirect",
    4: "Client Error",
    5: "Server Error",
    6: "Global Failure",
}


def reasonPhrase(code: int) -> str:
    """
    The usual reason phrase for C{code} (the class name for unknown codes).
    """
    return REASONS.get(code) or _CLASS_REASONS.get(code // 100, "Unknown")


#: methods whose 1xx/2xx responses create dialogs (Record-Route is copied)
_DIALOG_METHODS = frozenset({"INVITE", "SUBSCRIBE", "REFER", "NOTIFY"})


def _withTag(to: str, parsed: Address | None, tag: str) -> str:
    if parsed is None:
        try:
            parsed = parseAddress(to)
        except SipParseError:
            return f"{to};tag={tag}"
    if "tag" in parsed.params:
        return to
    return f"{to};tag={tag}"


def responseFor(
    request: SipRequest | PartialMessage,
    code: int,
    reason: str | None = None,
    *,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    contentType: str | None = None,
    toTag: str | None = None,
) -> SipResponse:
    """
    A response to C{request} (RFC 3261 §8.2.6): the C{Via} entries (same
    order), C{From}, C{To} (with C{toTag} added when it has no tag and the
    code is above 100), C{Call-ID} and C{CSeq} copied; C{Record-Route}
    copied into 101–299 responses to dialog-creating methods;
    C{Timestamp} copied into 100.  C{headers} are appended, then
    C{Content-Type} when given.

    C{request} may be the L{PartialMessage} of a failed parse: raw values
    are copied as they were.
    """
    src = request.headers
    method = request.method
    items: list[tuple[str, str]] = [("Via", v) for v in src.getAll("Via")]
    for name in ("From", "To", "Call-ID", "CSeq"):
        value = src.get(name)
        if value is None:
            continue
        if name == "To" and toTag is not None and code > 100:
            parsed = request.toAddress if isinstance(request, SipRequest) else None
            value = _withTag(value, parsed, toTag)
        items.append((name, value))
    if 100 < code < 300 and method in _DIALOG_METHODS:
        items.extend(("Record-Route", v) for v in src.getAll("Record-Route"))
    if code == 100:
        stamp = src.get("Timestamp")
        if stamp is not None:
            items.append(("Timestamp", stamp))
    items.extend(headers)
    if contentType is not None:
        items.append(("Content-Type", contentType))
    return SipResponse(code, reason, Headers(items), body)


_REASON_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


def badRequestFor(error: SipParseError, toTag: str | None = None) -> SipResponse:
    """
    The response to a request that failed to parse: C{error.code} (400, 505
    or 513) with the problem in the reason phrase.

    @raise ValueError: C{error.canAnswer} is false.
    """
    if error.partial is None or not error.canAnswer:
        raise ValueError("this input cannot be answered")
    detail = _REASON_UNSAFE.sub(" ", error.reason)[:120]
    return responseFor(
        error.partial, error.code, f"{reasonPhrase(error.code)} ({detail})", toTag=toTag
    )


# ---------------------------------------------------------------------------
# Identifiers


def newBranch() -> str:
    """
    A fresh RFC 3261 branch (C{z9hG4bK} + 96 random bits).
    """
    return BRANCH_COOKIE + secrets.token_hex(12)


def newTag() -> str:
    """
    A fresh From/To tag (64 random bits).
    """
    return secrets.token_hex(8)


def newCallId(host: str | None = None) -> str:
    """
    A fresh Call-ID (128 random bits, C{@host} appended when given).
    """
    value = secrets.token_hex(16)
    return f"{value}@{host}" if host else value
