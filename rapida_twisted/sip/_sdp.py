# -*- test-case-name: tests.test_sip_sdp -*-
"""
SDP (RFC 4566) and the offer/answer model (RFC 3264) for one audio stream.

Pure: bytes in, immutable objects out, and back.  Errors:

 - L{SdpParseError}: the SDP (or the part of it we need) is malformed; a UAS
   answers 400;
 - L{NoCommonCodec}: well formed, but no audio stream we can accept; a UAS
   answers 488.

Both are L{SdpError}, a C{ValueError}.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, replace

__all__ = [
    "CN",
    "DIRECTIONS",
    "G722",
    "PCMA",
    "PCMU",
    "STATIC_PAYLOAD_TYPES",
    "TELEPHONE_EVENT",
    "AudioNegotiation",
    "Codec",
    "Connection",
    "Media",
    "NoCommonCodec",
    "Origin",
    "SdpError",
    "SdpParseError",
    "SessionDescription",
    "answerDirection",
    "answerOffer",
    "buildOffer",
    "negotiateAnswer",
    "parseSdp",
]


class SdpError(ValueError):
    """
    Base class of the SDP errors.
    """


class SdpParseError(SdpError):
    """
    Malformed SDP, or an accepted stream without a usable address or port
    (answer 400).
    """


class NoCommonCodec(SdpError):
    """
    No audio stream with a codec we support (answer 488).
    """


# ---------------------------------------------------------------------------
# Codecs


@dataclass(frozen=True, slots=True)
class Codec:
    """
    One RTP payload format: payload type, encoding name, RTP clock rate,
    channels and format parameters (C{a=fmtp}).
    """

    payloadType: int
    name: str
    clockRate: int
    channels: int = 1
    fmtp: str | None = None

    @property
    def rtpmap(self) -> str:
        """
        The C{a=rtpmap} value after the payload type: C{PCMU/8000}.
        """
        base = f"{self.name}/{self.clockRate}"
        return base if self.channels == 1 else f"{base}/{self.channels}"

    def sameFormat(self, other: Codec) -> bool:
        """
        Whether C{other} is the same encoding (name case-insensitively, clock
        rate and channels), whatever its payload type.
        """
        return (
            self.name.lower() == other.name.lower()
            and self.clockRate == other.clockRate
            and self.channels == other.channels
        )


PCMU = Codec(0, "PCMU", 8000)
PCMA = Codec(8, "PCMA", 8000)
#: G.722: the RTP clock is 8000 although it samples at 16 kHz (RFC 3551 §4.5.2)
G722 = Codec(9, "G722", 8000)
CN = Codec(13, "CN", 8000)
#: RFC 4733 events; 101 is only the usual dynamic payload type
TELEPHONE_EVENT = Codec(101, "telephone-event", 8000, fmtp="0-16")

#: RFC 3551 static audio payload types, known without an rtpmap
STATIC_PAYLOAD_TYPES: dict[int, Codec] = {
    codec.payloadType: codec
    for codec in [
        PCMU,
        Codec(3, "GSM", 8000),
        Codec(4, "G723", 8000),
        Codec(5, "DVI4", 8000),
        Codec(6, "DVI4", 16000),
        Codec(7, "LPC", 8000),
        PCMA,
        G722,
        Codec(10, "L16", 44100, 2),
        Codec(11, "L16", 44100),
        Codec(12, "QCELP", 8000),
        CN,
        Codec(14, "MPA", 90000),
        Codec(15, "G728", 8000),
        Codec(16, "DVI4", 11025),
        Codec(17, "DVI4", 22050),
        Codec(18, "G729", 8000),
    ]
}

#: media directions (RFC 3264 §5.1)
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


# ---------------------------------------------------------------------------
# The description


@dataclass(frozen=True, slots=True)
class Connection:
    """
    A C{c=} line.  C{address} is without any C{/ttl} suffix.
    """

    address: str
    addressType: str = "IP4"
    netType: str = "IN"

    @property
    def isNull(self) -> bool:
        """
        Whether this is the RFC 2543 hold address (C{0.0.0.0} or C{::}).
        """
        return self.address in ("0.0.0.0", "::")

    def toString(self) -> str:
        """
        The C{c=} value.
        """
        return f"{self.netType} {self.addressType} {self.address}"


@dataclass(frozen=True, slots=True)
class Origin:
    """
    An C{o=} line.
    """

    username: str
    sessionId: str
    sessionVersion: int
    address: str
    addressType: str = "IP4"
    netType: str = "IN"

    def toString(self) -> str:
        """
        The C{o=} value.
        """
        return (
            f"{self.username} {self.sessionId} {self.sessionVersion} "
            f"{self.netType} {self.addressType} {self.address}"
        )


Attribute = tuple[str, "str | None"]


def _attribute(attributes: tuple[Attribute, ...], name: str) -> str | None:
    for key, value in attributes:
        if key == name:
            return "" if value is None else value
    return None


def _direction(attributes: tuple[Attribute, ...]) -> str | None:
    for key, _ in attributes:
        if key in DIRECTIONS:
            return key
    return None


@dataclass(frozen=True, slots=True)
class Media:
    """
    One media description (C{m=} and its lines).

    C{attributes} are C{(name, value)} with C{None} for a flag
    (C{a=sendrecv}); C{other} keeps C{i=}, C{b=} and C{k=} lines.
    """

    media: str
    port: int
    protocol: str
    formats: tuple[str, ...]
    connection: Connection | None = None
    attributes: tuple[Attribute, ...] = ()
    portCount: int | None = None
    other: tuple[tuple[str, str], ...] = ()

    def attribute(self, name: str) -> str | None:
        """
        The value of the first C{a=name} (C{""} for a flag), or C{None}.
        """
        return _attribute(self.attributes, name)

    def attributeValues(self, name: str) -> tuple[str, ...]:
        """
        The values of every C{a=name}.
        """
        return tuple(v or "" for k, v in self.attributes if k == name)

    @property
    def direction(self) -> str | None:
        """
        The media-level direction attribute, or C{None}.
        """
        return _direction(self.attributes)

    @property
    def codecs(self) -> tuple[Codec, ...]:
        """
        The offered formats in order, resolved through C{a=rtpmap} (or the
        static table) with their C{a=fmtp}; formats that cannot be resolved
        are left out.
        """
        maps: dict[str, tuple[str, int, int]] = {}
        fmtps: dict[str, str] = {}
        for key, value in self.attributes:
            if key == "rtpmap" and value:
                fmt, _, encoding = value.partition(" ")
                parts = encoding.strip().split("/")
                if len(parts) >= 2 and parts[1].isdigit():
                    count = parts[2] if len(parts) > 2 else "1"
                    maps[fmt] = (parts[0], int(parts[1]), int(count) if count.isdigit() else 1)
            elif key == "fmtp" and value:
                fmt, _, params = value.partition(" ")
                fmtps[fmt] = params.strip()
        out = []
        for fmt in self.formats:
            if not fmt.isdigit() or int(fmt) > 127:
                continue
            if fmt in maps:
                name, rate, channels = maps[fmt]
                out.append(Codec(int(fmt), name, rate, channels, fmtps.get(fmt)))
            elif int(fmt) in STATIC_PAYLOAD_TYPES:
                out.append(replace(STATIC_PAYLOAD_TYPES[int(fmt)], fmtp=fmtps.get(fmt)))
        return tuple(out)

    @property
    def ptime(self) -> int | None:
        """
        C{a=ptime} in milliseconds, or C{None} (absent or not a number).
        """
        value = self.attribute("ptime")
        if value is None:
            return None
        value = value.strip().split(".")[0]
        return int(value) if value.isdigit() and 0 < int(value) <= 1000 else None

    @property
    def rtcpMux(self) -> bool:
        """
        Whether C{a=rtcp-mux} (RFC 5761) is present.
        """
        return self.attribute("rtcp-mux") is not None

    @property
    def rtcpPort(self) -> int | None:
        """
        The port of C{a=rtcp} (RFC 3605), or C{None}.
        """
        value = self.attribute("rtcp")
        if not value:
            return None
        port = value.split()[0]
        return int(port) if port.isdigit() and int(port) <= 65535 else None

    def toLines(self) -> list[str]:
        """
        The lines of this media description.
        """
        port = str(self.port) if self.portCount is None else f"{self.port}/{self.portCount}"
        lines = [f"m={self.media} {port} {' '.join((self.protocol, *self.formats))}"]
        lines.extend(f"{k}={v}" for k, v in self.other if k == "i")
        if self.connection is not None:
            lines.append(f"c={self.connection.toString()}")
        lines.extend(f"{k}={v}" for k, v in self.other if k != "i")
        lines.extend(f"a={k}" if v is None else f"a={k}:{v}" for k, v in self.attributes)
        return lines


@dataclass(frozen=True, slots=True)
class SessionDescription:
    """
    A session description.  C{other} keeps the session-level lines this
    module does not interpret (C{i= u= e= p= b= z= k= r=}).
    """

    origin: Origin
    media: tuple[Media, ...] = ()
    connection: Connection | None = None
    sessionName: str = "-"
    timing: str = "0 0"
    attributes: tuple[Attribute, ...] = ()
    other: tuple[tuple[str, str], ...] = ()
    version: int = 0

    def attribute(self, name: str) -> str | None:
        """
        The value of the first session-level C{a=name}, or C{None}.
        """
        return _attribute(self.attributes, name)

    def connectionFor(self, media: Media) -> Connection | None:
        """
        The connection of C{media}: its own C{c=}, else the session's.
        """
        return media.connection or self.connection

    def directionOf(self, media: Media) -> str:
        """
        The direction of C{media}: its attribute, else the session's, else
        C{sendrecv}.
        """
        return media.direction or _direction(self.attributes) or "sendrecv"

    def toBytes(self) -> bytes:
        """
        The SDP text, CRLF line ends.
        """
        lines = [f"v={self.version}", f"o={self.origin.toString()}", f"s={self.sessionName}"]
        lines.extend(f"{k}={v}" for k, v in self.other if k in "iuep")
        if self.connection is not None:
            lines.append(f"c={self.connection.toString()}")
        lines.extend(f"{k}={v}" for k, v in self.other if k == "b")
        lines.append(f"t={self.timing}")
        lines.extend(f"{k}={v}" for k, v in self.other if k in "rzk")
        lines.extend(f"a={k}" if v is None else f"a={k}:{v}" for k, v in self.attributes)
        for media in self.media:
            lines.extend(media.toLines())
        lines.append("")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape")


# ---------------------------------------------------------------------------
# Parsing


def _parseConnection(value: str) -> Connection:
    parts = value.split()
    if len(parts) != 3:
        raise SdpParseError("malformed c= line")
    return Connection(parts[2].split("/")[0], parts[1].upper(), parts[0].upper())


def _parseAttribute(value: str) -> Attribute:
    name, colon, rest = value.partition(":")
    if not name or " " in name:
        raise SdpParseError("malformed a= line")
    return (name, rest if colon else None)


class _MediaBuilder:
    """
    The lines of the media description being read.
    """

    def __init__(self, value: str) -> None:
        parts = value.split()
        if len(parts) < 3:
            raise SdpParseError("malformed m= line")
        portText, slash, countText = parts[1].partition("/")
        if not portText.isdigit() or int(portText) > 65535:
            raise SdpParseError("bad port in m= line")
        if slash and not countText.isdigit():
            raise SdpParseError("bad port count in m= line")
        self.media = parts[0]
        self.port = int(portText)
        self.portCount = int(countText) if slash else None
        self.protocol = parts[2]
        self.formats = tuple(parts[3:])
        self.connection: Connection | None = None
        self.attributes: list[Attribute] = []
        self.other: list[tuple[str, str]] = []

    def build(self) -> Media:
        return Media(
            self.media,
            self.port,
            self.protocol,
            self.formats,
            self.connection,
            tuple(self.attributes),
            self.portCount,
            tuple(self.other),
        )


def parseSdp(data: bytes | str) -> SessionDescription:
    """
    Parse a session description.

    Lenient where real peers are sloppy (bare LF, blank lines, missing
    C{s=}/C{t=}, unknown line types), strict where it matters (C{v=0}
    first, a well formed C{o=}, C{m=} ports and C{c=} lines).

    @raise SdpParseError: malformed.
    """
    text = data.decode("utf-8", "surrogateescape") if isinstance(data, bytes) else data
    lines = [line.rstrip("\r") for line in text.split("\n")]
    lines = [line for line in lines if line.strip()]
    if not lines or lines[0].strip() != "v=0":
        raise SdpParseError("SDP must start with v=0")
    origin: Origin | None = None
    sessionName = "-"
    timing = "0 0"
    connection: Connection | None = None
    attributes: list[Attribute] = []
    other: list[tuple[str, str]] = []
    media: list[Media] = []
    current: _MediaBuilder | None = None
    for line in lines[1:]:
        if len(line) < 2 or line[1] != "=" or not line[0].isalpha():
            raise SdpParseError(f"malformed SDP line {line[:20]!r}")
        kind, value = line[0], line[2:].strip()
        if kind == "m":
            if current is not None:
                media.append(current.build())
            current = _MediaBuilder(value)
        elif current is not None:
            if kind == "c":
                current.connection = _parseConnection(value)
            elif kind == "a":
                current.attributes.append(_parseAttribute(value))
            else:
                current.other.append((kind, value))
        elif kind == "o":
            fields = value.split()
            if len(fields) != 6 or not fields[2].isdigit():
                raise SdpParseError("malformed o= line")
            origin = Origin(
                fields[0],
                fields[1],
                int(fields[2]),
                fields[5],
                fields[4].upper(),
                fields[3].upper(),
            )
        elif kind == "s":
            sessionName = value or "-"
        elif kind == "c":
            connection = _parseConnection(value)
        elif kind == "t":
            timing = value
        elif kind == "a":
            attributes.append(_parseAttribute(value))
        elif kind != "v":
            other.append((kind, value))
    if current is not None:
        media.append(current.build())
    if origin is None:
        raise SdpParseError("SDP without o= line")
    return SessionDescription(
        origin, tuple(media), connection, sessionName, timing, tuple(attributes), tuple(other)
    )


# ---------------------------------------------------------------------------
# Offer / answer

#: RTP profiles we can answer (plain RTP; no SRTP)
_PROFILES = ("RTP/AVP", "RTP/AVPF")

_SENDS = {"sendrecv": True, "sendonly": True, "recvonly": False, "inactive": False}
_RECEIVES = {"sendrecv": True, "sendonly": False, "recvonly": True, "inactive": False}


def _directionFrom(sends: bool, receives: bool) -> str:
    if sends:
        return "sendrecv" if receives else "sendonly"
    return "recvonly" if receives else "inactive"


def answerDirection(offered: str, wanted: str = "sendrecv") -> str:
    """
    The direction to answer with (RFC 3264 §6.1): we send only if the
    offerer receives and we want to send, and receive only if the offerer
    sends and we want to receive.  C{sendonly} → C{recvonly},
    C{recvonly} → C{sendonly}, C{inactive} → C{inactive}.
    """
    return _directionFrom(
        _RECEIVES.get(offered, True) and _SENDS.get(wanted, True),
        _SENDS.get(offered, True) and _RECEIVES.get(wanted, True),
    )


@dataclass(frozen=True, slots=True)
class AudioNegotiation:
    """
    The outcome of an offer/answer exchange, from our side.

    @ivar answer: the answer (ours from L{answerOffer}; the peer's from
        L{negotiateAnswer}).
    @ivar codec: the audio codec, with the payload type to put in the RTP
        we send.
    @ivar telephoneEvent: the RFC 4733 payload type, or C{None} when not
        negotiated.
    @ivar remoteAddress: where to send RTP.
    @ivar remotePort: the peer's RTP port.
    @ivar remoteRtcpPort: the peer's RTCP port (C{a=rtcp}, else RTP + 1, or
        the RTP port with C{a=rtcp-mux}).
    @ivar rtcpMux: whether the peer multiplexes RTCP on the RTP port.
    @ivar remotePtime: the peer's C{a=ptime}, or C{None}.
    @ivar direction: our direction (C{sendrecv}, C{sendonly}...).
    @ivar onHold: the peer put us on hold (C{sendonly}/C{inactive} offer or
        the C{0.0.0.0} address).
    @ivar mediaIndex: the index of the audio C{m=} line.
    """

    answer: SessionDescription
    codec: Codec
    telephoneEvent: int | None
    remoteAddress: str
    remotePort: int
    remoteRtcpPort: int
    rtcpMux: bool
    remotePtime: int | None
    direction: str
    onHold: bool
    mediaIndex: int

    @property
    def sending(self) -> bool:
        """
        Whether we should send RTP.
        """
        return _SENDS[self.direction]

    @property
    def receiving(self) -> bool:
        """
        Whether we expect RTP.
        """
        return _RECEIVES[self.direction]


def _checkAddress(connection: Connection | None) -> str:
    if connection is None:
        raise SdpParseError("no connection address for the audio stream")
    try:
        ipaddress.ip_address(connection.address)
    except ValueError:
        raise SdpParseError(
            f"connection address {connection.address[:40]!r} is not an IP address"
        ) from None
    return connection.address


def _telephoneEvent(codecs: Sequence[Codec], clockRate: int) -> Codec | None:
    for codec in codecs:
        if codec.name.lower() == "telephone-event" and codec.clockRate == clockRate:
            return codec
    return None


def _addressType(address: str) -> str:
    return "IP6" if ":" in address else "IP4"


def _audioMedia(
    port: int,
    codecs: Sequence[Codec],
    ptime: int | None,
    direction: str,
    rtcpPort: int | None,
    protocol: str = "RTP/AVP",
) -> Media:
    attributes: list[Attribute] = [("rtpmap", f"{c.payloadType} {c.rtpmap}") for c in codecs]
    attributes.extend(("fmtp", f"{c.payloadType} {c.fmtp}") for c in codecs if c.fmtp)
    if ptime is not None:
        attributes.append(("ptime", str(ptime)))
    attributes.append((direction, None))
    if rtcpPort is not None:
        attributes.append(("rtcp", str(rtcpPort)))
    return Media(
        "audio", port, protocol, tuple(str(c.payloadType) for c in codecs), None, tuple(attributes)
    )


def _session(
    address: str,
    sessionId: int | str,
    sessionVersion: int,
    username: str,
    sessionName: str,
    media: tuple[Media, ...],
) -> SessionDescription:
    kind = _addressType(address)
    return SessionDescription(
        Origin(username, str(sessionId), sessionVersion, address, kind),
        media,
        Connection(address, kind),
        sessionName,
    )


def answerOffer(
    offer: SessionDescription,
    *,
    localAddress: str,
    localPort: int,
    sessionId: int | str,
    sessionVersion: int,
    supported: Sequence[Codec] = (PCMU, PCMA),
    telephoneEvent: bool = True,
    ptime: int = 20,
    direction: str = "sendrecv",
    rtcpPort: int | None = None,
    username: str = "-",
    sessionName: str = "-",
) -> AudioNegotiation:
    """
    Answer an offer (RFC 3264 §6): the first audio stream on plain RTP with
    a codec of C{supported} is accepted, every other stream rejected (port
    0, same formats).  The codec is the first one in the caller's order that
    we support; the answer lists only it (with the offered payload type)
    and C{telephone-event} when offered at the same clock rate and
    C{telephoneEvent} is true (with C{0-16}), then C{a=ptime}, the answered
    direction (see L{answerDirection}; a C{0.0.0.0} offer counts as the
    offerer not receiving) and C{a=rtcp} when C{rtcpPort} is given.

    @param sessionId: our C{o=} session id (keep it for the dialog).
    @param sessionVersion: our C{o=} version (bump it when a later answer
        differs).
    @param direction: what we want (C{sendrecv}; C{sendonly} to hold).

    @raise NoCommonCodec: no acceptable audio stream (answer 488).
    @raise SdpParseError: the accepted stream has no usable IP address
        (answer 400).
    """
    answered: list[Media] = []
    result: tuple[Codec, Codec | None, Media, Connection, int, str] | None = None
    for index, media in enumerate(offer.media):
        if (
            result is None
            and media.media == "audio"
            and media.port != 0
            and media.protocol.upper() in _PROFILES
        ):
            offered = media.codecs
            chosen = next((c for c in offered for s in supported if c.sameFormat(s)), None)
            if chosen is not None:
                connection = offer.connectionFor(media)
                _checkAddress(connection)
                assert connection is not None
                event = _telephoneEvent(offered, chosen.clockRate) if telephoneEvent else None
                codecs = [chosen]
                if event is not None:
                    codecs.append(
                        Codec(event.payloadType, event.name, event.clockRate, fmtp="0-16")
                    )
                offeredDirection = offer.directionOf(media)
                if connection.isNull:
                    offeredDirection = _directionFrom(_SENDS[offeredDirection], False)
                ours = answerDirection(offeredDirection, direction)
                answered.append(
                    _audioMedia(localPort, codecs, ptime, ours, rtcpPort, media.protocol)
                )
                result = (chosen, event, media, connection, index, ours)
                continue
        answered.append(Media(media.media, 0, media.protocol, media.formats or ("0",)))
    if result is None:
        raise NoCommonCodec("no audio stream with a supported codec")
    chosen, event, media, connection, index, ours = result
    answer = _session(
        localAddress, sessionId, sessionVersion, username, sessionName, tuple(answered)
    )
    return AudioNegotiation(
        answer=answer,
        codec=chosen,
        telephoneEvent=None if event is None else event.payloadType,
        remoteAddress=connection.address,
        remotePort=media.port,
        remoteRtcpPort=media.port if media.rtcpMux else (media.rtcpPort or media.port + 1),
        rtcpMux=media.rtcpMux,
        remotePtime=media.ptime,
        direction=ours,
        onHold=connection.isNull or offer.directionOf(media) in ("sendonly", "inactive"),
        mediaIndex=index,
    )


def buildOffer(
    *,
    localAddress: str,
    localPort: int,
    sessionId: int | str,
    sessionVersion: int,
    codecs: Sequence[Codec] = (PCMU, PCMA),
    telephoneEvent: int | None = 101,
    ptime: int = 20,
    direction: str = "sendrecv",
    rtcpPort: int | None = None,
    username: str = "-",
    sessionName: str = "-",
) -> SessionDescription:
    """
    An offer with one audio stream: C{codecs} in preference order, then
    C{telephone-event/8000} with C{0-16} at payload type C{telephoneEvent}
    (none when C{None}).
    """
    offered = list(codecs)
    if telephoneEvent is not None:
        offered.append(replace(TELEPHONE_EVENT, payloadType=telephoneEvent))
    media = _audioMedia(localPort, offered, ptime, direction, rtcpPort)
    return _session(localAddress, sessionId, sessionVersion, username, sessionName, (media,))


def negotiateAnswer(offer: SessionDescription, answer: SessionDescription) -> AudioNegotiation:
    """
    Read the answer to our C{offer} (the UAC side): the first audio stream
    the answer accepted (port not 0) and, in the answer's order, the first
    codec we offered.

    @raise NoCommonCodec: every audio stream rejected, or no codec of ours.
    @raise SdpParseError: the accepted stream has no usable IP address.
    """
    for index, media in enumerate(answer.media):
        if media.media != "audio" or media.port == 0 or index >= len(offer.media):
            continue
        ours = offer.media[index].codecs
        codecs = media.codecs
        chosen = next(
            (
                c
                for c in codecs
                if c.name.lower() != "telephone-event" and any(c.sameFormat(o) for o in ours)
            ),
            None,
        )
        if chosen is None:
            continue
        connection = answer.connectionFor(media)
        _checkAddress(connection)
        assert connection is not None
        event = _telephoneEvent(codecs, chosen.clockRate)
        theirs = answer.directionOf(media)
        if connection.isNull:
            theirs = _directionFrom(_SENDS[theirs], False)
        return AudioNegotiation(
            answer=answer,
            codec=chosen,
            telephoneEvent=None if event is None else event.payloadType,
            remoteAddress=connection.address,
            remotePort=media.port,
            remoteRtcpPort=media.port if media.rtcpMux else (media.rtcpPort or media.port + 1),
            rtcpMux=media.rtcpMux,
            remotePtime=media.ptime,
            direction=_directionFrom(_RECEIVES[theirs], _SENDS[theirs]),
            onHold=connection.isNull or theirs in ("sendonly", "inactive"),
            mediaIndex=index,
        )
    raise NoCommonCodec("the answer accepted no audio stream with our codecs")
