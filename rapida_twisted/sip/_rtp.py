# -*- test-case-name: tests.test_sip_rtp -*-
"""
RTP (RFC 3550), RFC 4733 telephone events, RTCP and the pure parts of a
media receiver: sequence arithmetic, a jitter buffer, a DTMF detector and
reception statistics.

Pure: no reactor, no sockets, no clock (times are parameters).  Errors:
L{RtpParseError} and L{RtcpParseError}, both C{ValueError}.

Hot path: L{parseRtp} and L{packRtp} run 50 times a second per call; they
use one C{struct} call and one tuple each.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Iterable
from typing import NamedTuple

__all__ = [
    "DTMF_EVENTS",
    "BufferedFrame",
    "DtmfDigit",
    "DtmfPacket",
    "DtmfReceiver",
    "Goodbye",
    "JitterBuffer",
    "ReceiverReport",
    "ReceptionStatistics",
    "ReportBlock",
    "RtcpPacket",
    "RtcpParseError",
    "RtcpUnknown",
    "RtpExtension",
    "RtpPacket",
    "RtpParseError",
    "SdesChunk",
    "SenderReport",
    "SourceDescription",
    "TelephoneEvent",
    "buildRtcp",
    "digitToEvent",
    "dtmfPackets",
    "eventToDigit",
    "looksLikeRtcp",
    "ntpFromUnix",
    "ntpMiddle",
    "packRtp",
    "parseRtcp",
    "parseRtp",
    "parseTelephoneEvent",
    "seqAdd",
    "seqDiff",
    "tsAdd",
    "tsDiff",
]


class RtpParseError(ValueError):
    """
    Malformed RTP packet or RFC 4733 payload.
    """


class RtcpParseError(ValueError):
    """
    Malformed RTCP packet.
    """


# ---------------------------------------------------------------------------
# Sequence numbers and timestamps


def seqDiff(a: int, b: int) -> int:
    """
    C{a - b} for 16-bit sequence numbers, in [-32768, 32767] (positive when
    C{a} is newer, across the wrap).
    """
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


def seqAdd(seq: int, n: int) -> int:
    """
    C{seq + n} modulo 2**16.
    """
    return (seq + n) & 0xFFFF


def tsDiff(a: int, b: int) -> int:
    """
    C{a - b} for 32-bit RTP timestamps, signed (positive when C{a} is later).
    """
    return ((a - b + 0x80000000) & 0xFFFFFFFF) - 0x80000000


def tsAdd(ts: int, n: int) -> int:
    """
    C{ts + n} modulo 2**32.
    """
    return (ts + n) & 0xFFFFFFFF


# ---------------------------------------------------------------------------
# RTP packets

_HEADER = struct.Struct("!BBHII")


class RtpExtension(NamedTuple):
    """
    An RTP header extension: 16-bit profile value and the data (a multiple
    of 4 bytes).
    """

    profile: int
    data: bytes


class RtpPacket(NamedTuple):
    """
    An RTP packet (version 2).  C{padding} is the number of padding bytes
    (0 for none).
    """

    payloadType: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension: RtpExtension | None = None
    padding: int = 0

    def toBytes(self) -> bytes:
        """
        The wire form.
        """
        if not self.csrcs and self.extension is None and not self.padding:
            return (
                _HEADER.pack(
                    0x80,
                    self.payloadType | (0x80 if self.marker else 0),
                    self.sequence,
                    self.timestamp,
                    self.ssrc,
                )
                + self.payload
            )
        first = 0x80 | len(self.csrcs)
        if self.extension is not None:
            first |= 0x10
        if self.padding:
            first |= 0x20
        parts = [
            _HEADER.pack(
                first,
                self.payloadType | (0x80 if self.marker else 0),
                self.sequence,
                self.timestamp,
                self.ssrc,
            )
        ]
        if self.csrcs:
            parts.append(struct.pack(f"!{len(self.csrcs)}I", *self.csrcs))
        if self.extension is not None:
            data = self.extension.data
            if len(data) % 4:
                data += b"\x00" * (4 - len(data) % 4)
            parts.append(struct.pack("!HH", self.extension.profile, len(data) // 4))
            parts.append(data)
        parts.append(self.payload)
        if self.padding:
            parts.append(b"\x00" * (self.padding - 1) + bytes([self.padding]))
        return b"".join(parts)


def packRtp(
    payloadType: int, sequence: int, timestamp: int, ssrc: int, payload: bytes, marker: bool = False
) -> bytes:
    """
    A plain RTP packet (no CSRC, extension or padding), for the send path.
    C{sequence} and C{timestamp} must already be in range.
    """
    second = (payloadType | 0x80) if marker else payloadType
    return _HEADER.pack(0x80, second, sequence, timestamp, ssrc) + payload


def parseRtp(data: bytes) -> RtpPacket:
    """
    Parse an RTP packet.

    @raise RtpParseError: shorter than its header, not version 2, or with
        CSRCs, extension or padding that do not fit.
    """
    if len(data) < 12:
        raise RtpParseError("shorter than an RTP header")
    first, second, sequence, timestamp, ssrc = _HEADER.unpack_from(data)
    if first == 0x80:
        return RtpPacket(second & 0x7F, sequence, timestamp, ssrc, data[12:], second > 0x7F)
    if first >> 6 != 2:
        raise RtpParseError("not RTP version 2")
    count = first & 0x0F
    offset = 12 + 4 * count
    if len(data) < offset:
        raise RtpParseError("CSRC list longer than the packet")
    csrcs = struct.unpack_from(f"!{count}I", data, 12) if count else ()
    extension = None
    if first & 0x10:
        if len(data) < offset + 4:
            raise RtpParseError("truncated header extension")
        profile, words = struct.unpack_from("!HH", data, offset)
        end = offset + 4 + 4 * words
        if len(data) < end:
            raise RtpParseError("header extension longer than the packet")
        extension = RtpExtension(profile, data[offset + 4 : end])
        offset = end
    end = len(data)
    padding = 0
    if first & 0x20:
        padding = data[-1]
        if padding == 0 or offset + padding > len(data):
            raise RtpParseError("bad padding length")
        end -= padding
    return RtpPacket(
        second & 0x7F,
        sequence,
        timestamp,
        ssrc,
        data[offset:end],
        second > 0x7F,
        csrcs,
        extension,
        padding,
    )


def looksLikeRtcp(data: bytes) -> bool:
    """
    Whether a datagram on a muxed port is RTCP (RFC 5761 §4: second byte
    192–223).
    """
    return len(data) >= 2 and 192 <= data[1] <= 223


# ---------------------------------------------------------------------------
# RFC 4733 telephone events

#: events 0–15 as characters; 16 (flash) has no digit
DTMF_EVENTS = "0123456789*#ABCD"
_DIGIT_EVENTS = {digit: event for event, digit in enumerate(DTMF_EVENTS)}
_EVENT = struct.Struct("!BBH")


def eventToDigit(event: int) -> str | None:
    """
    The DTMF character of an event (C{0}–C{9}, C{*}, C{#}, C{A}–C{D}), or
    C{None} for other events.
    """
    return DTMF_EVENTS[event] if 0 <= event < 16 else None


def digitToEvent(digit: str) -> int:
    """
    The event code of a DTMF character (case-insensitive for C{A}–C{D}).

    @raise ValueError: not a DTMF character.
    """
    try:
        return _DIGIT_EVENTS[digit.upper()]
    except KeyError:
        raise ValueError(f"not a DTMF digit: {digit!r}") from None


class TelephoneEvent(NamedTuple):
    """
    An RFC 4733 event payload: event code, end bit, volume (0–63, as
    -dBm0) and duration in RTP clock units.
    """

    event: int
    end: bool
    volume: int
    duration: int

    def toBytes(self) -> bytes:
        """
        The 4-byte payload.
        """
        return _EVENT.pack(
            self.event, (0x80 if self.end else 0) | (self.volume & 0x3F), self.duration
        )


def parseTelephoneEvent(payload: bytes) -> TelephoneEvent:
    """
    Parse the (first) event of an RFC 4733 payload.

    @raise RtpParseError: shorter than 4 bytes.
    """
    if len(payload) < 4:
        raise RtpParseError("telephone-event payload shorter than 4 bytes")
    event, flags, duration = _EVENT.unpack_from(payload)
    return TelephoneEvent(event, flags > 0x7F, flags & 0x3F, duration)


class DtmfDigit(NamedTuple):
    """
    A detected digit: the character, the event code, and the RTP timestamp
    and SSRC that identify its event.
    """

    digit: str
    event: int
    timestamp: int
    ssrc: int


class DtmfReceiver:
    """
    Turns a stream of RFC 4733 packets into one digit per event.

    An event is identified by its SSRC and RTP timestamp: the digit is
    reported on the first packet of a new event (marker or not, end or not,
    so a lost start still yields the digit), and every other packet of that
    event (updates, the three end retransmissions) is ignored.  A packet
    with a new timestamp but the same event, without the marker, while the
    previous event has not ended, continues a long event (RFC 4733
    §2.5.1.3) and is not a new digit.  Events other than 0–15 are ignored.
    """

    def __init__(self, remember: int = 8) -> None:
        """
        @param remember: how many recent events to remember for
            deduplication (late retransmissions of older events).
        """
        self._seen: deque[tuple[int, int]] = deque(maxlen=remember)
        self._lastEvent: int | None = None
        self._lastSsrc: int | None = None
        self._lastEnded = True

    def receive(self, packet: RtpPacket) -> DtmfDigit | None:
        """
        Feed one packet of the negotiated telephone-event payload type.

        @return: the digit when this packet starts an event, else C{None}.
        @raise RtpParseError: the payload is not an RFC 4733 event.
        """
        event = parseTelephoneEvent(packet.payload)
        key = (packet.ssrc, packet.timestamp)
        if key in self._seen:
            if key == self._seen[-1] and event.end:
                self._lastEnded = True
            return None
        continuation = (
            not packet.marker
            and not self._lastEnded
            and event.event == self._lastEvent
            and packet.ssrc == self._lastSsrc
        )
        self._seen.append(key)
        self._lastEvent = event.event
        self._lastSsrc = packet.ssrc
        self._lastEnded = event.end
        if continuation:
            return None
        digit = eventToDigit(event.event)
        if digit is None:
            return None
        return DtmfDigit(digit, event.event, packet.timestamp, packet.ssrc)


class DtmfPacket(NamedTuple):
    """
    One packet of a digit to send: the payload, whether to set the marker,
    and whether it is an end packet.
    """

    payload: bytes
    marker: bool
    end: bool


def dtmfPackets(
    digit: str,
    *,
    duration: float = 0.1,
    volume: int = 10,
    interval: float = 0.02,
    clockRate: int = 8000,
    endRepeats: int = 3,
) -> tuple[DtmfPacket, ...]:
    """
    The RFC 4733 packets that send one digit, one per C{interval}: updates
    with a growing duration (the first with the marker), then C{endRepeats}
    end packets with the full duration.  Every packet carries the same RTP
    timestamp: the one of the event start, chosen by the sender (the audio
    timestamp continues from it plus the time the packets took).

    @param duration: tone length in seconds.
    @param volume: 0–63 (-dBm0).
    @raise ValueError: C{digit} is not a DTMF character.
    """
    event = digitToEvent(digit)
    step = max(1, round(interval * clockRate))
    total = min(0xFFFF, max(step, round(duration * clockRate)))
    updates = max(1, -(-total // step) - 1)
    packets = [
        DtmfPacket(
            TelephoneEvent(event, False, volume, min(i * step, total)).toBytes(), i == 1, False
        )
        for i in range(1, updates + 1)
    ]
    end = TelephoneEvent(event, True, volume, total).toBytes()
    packets.extend(DtmfPacket(end, False, True) for _ in range(endRepeats))
    return tuple(packets)


# ---------------------------------------------------------------------------
# Jitter buffer


class BufferedFrame(NamedTuple):
    """
    A frame out of the L{JitterBuffer}.
    """

    sequence: int
    timestamp: int
    payload: bytes


class JitterBuffer:
    """
    A small reordering buffer, pure: the caller pushes packets as they
    arrive and pops one frame per packet interval (its 20 ms tick).

    Playout starts (and restarts after running dry) once C{depth} packets
    are held.  L{pop} returns the next frame in sequence.  When that frame
    is missing, it waits while fewer than C{depth} packets are held, then
    gives that one frame up as lost; either way the tick gets C{None},
    which the caller conceals (silence), so the timeline is kept.

    Duplicates and packets older than the playout point are dropped.  A
    jump of more than C{resyncThreshold} packets either way is a stray
    packet unless the next packet follows it, in which case the stream
    restarted and the buffer restarts from it (RFC 3550 A.1 probation).
    When more than C{maxDepth} packets pile up, the oldest are dropped down
    to C{depth} to bound the delay.  The 16-bit sequence wraps.

    Counters: C{received}, C{duplicates}, C{late}, C{strays}, C{lost},
    C{overflows}, C{resyncs}, C{underruns}.
    """

    def __init__(
        self, depth: int = 3, maxDepth: int | None = None, resyncThreshold: int = 100
    ) -> None:
        if depth < 1:
            raise ValueError("depth must be at least 1")
        self.depth = depth
        self.maxDepth = max(depth, maxDepth if maxDepth is not None else 2 * depth + 2)
        self.resyncThreshold = resyncThreshold
        self._frames: dict[int, BufferedFrame] = {}
        self._next: int | None = None
        self._playing = False
        self._started = False
        self._stray: BufferedFrame | None = None
        self.received = 0
        self.duplicates = 0
        self.late = 0
        self.strays = 0
        self.lost = 0
        self.overflows = 0
        self.resyncs = 0
        self.underruns = 0

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def playing(self) -> bool:
        """
        Whether playout has started (C{False} while filling).
        """
        return self._playing

    def reset(self) -> None:
        """
        Forget every held packet and the playout point (counters are kept).
        """
        self._frames.clear()
        self._next = None
        self._playing = False
        self._started = False
        self._stray = None

    def push(self, sequence: int, timestamp: int, payload: bytes) -> bool:
        """
        Add an arrived packet.

        @return: whether it was kept (C{False} for duplicates, late and
            stray packets).
        """
        self.received += 1
        frame = BufferedFrame(sequence, timestamp, payload)
        nxt = self._next
        if nxt is None:
            self._next = sequence
        else:
            delta = seqDiff(sequence, nxt)
            if delta > self.resyncThreshold or delta < -self.resyncThreshold:
                stray = self._stray
                if stray is None or sequence != (stray.sequence + 1) & 0xFFFF:
                    self._stray = frame
                    self.strays += 1
                    return False
                self.strays -= 1
                self.resyncs += 1
                self.reset()
                self._next = stray.sequence
                self._frames[stray.sequence] = stray
            elif delta < 0:
                if self._started:
                    self.late += 1
                    return False
                # first fill: an earlier packet moves the start back
                self._next = sequence
        if sequence in self._frames:
            self.duplicates += 1
            return False
        self._frames[sequence] = frame
        if len(self._frames) > self.maxDepth:
            self._trim()
        return True

    def _trim(self) -> None:
        nxt = self._next
        assert nxt is not None
        order = sorted(self._frames, key=lambda s: seqDiff(s, nxt))
        for seq in order[: len(order) - self.depth]:
            del self._frames[seq]
            self.overflows += 1
        self._next = order[len(order) - self.depth]

    def pop(self) -> BufferedFrame | None:
        """
        The frame for this tick, or C{None} (filling, waiting for a late
        packet, a lost packet's slot, or empty).
        """
        frames = self._frames
        if not self._playing:
            if len(frames) < self.depth:
                return None
            self._playing = self._started = True
        nxt = self._next
        assert nxt is not None
        self._next = (nxt + 1) & 0xFFFF
        frame = frames.pop(nxt, None)
        if frame is not None:
            return frame
        if not frames:
            self._next = nxt
            self._playing = False
            self.underruns += 1
        elif len(frames) < self.depth:
            self._next = nxt
        else:
            self.lost += 1
        return None


# ---------------------------------------------------------------------------
# RTCP

_NTP_EPOCH_OFFSET = 2208988800


def ntpFromUnix(seconds: float) -> int:
    """
    The 64-bit NTP timestamp of a Unix time.
    """
    whole = int(seconds)
    fraction = int((seconds - whole) * 2**32) & 0xFFFFFFFF
    return (((whole + _NTP_EPOCH_OFFSET) & 0xFFFFFFFF) << 32) | fraction


def ntpMiddle(ntp: int) -> int:
    """
    The middle 32 bits of a 64-bit NTP timestamp (the LSR field).
    """
    return (ntp >> 16) & 0xFFFFFFFF


class ReportBlock(NamedTuple):
    """
    An RTCP reception report block (RFC 3550 §6.4.1).
    """

    ssrc: int
    fractionLost: int
    cumulativeLost: int
    highestSequence: int
    jitter: int
    lastSr: int
    delaySinceLastSr: int

    def toBytes(self) -> bytes:
        lost = self.cumulativeLost & 0xFFFFFF
        return struct.pack(
            "!IIIIII",
            self.ssrc,
            (self.fractionLost & 0xFF) << 24 | lost,
            self.highestSequence,
            self.jitter,
            self.lastSr,
            self.delaySinceLastSr,
        )


def _reportBlocks(body: bytes, offset: int, count: int) -> tuple[ReportBlock, ...]:
    if len(body) < offset + 24 * count:
        raise RtcpParseError("report blocks longer than the packet")
    blocks = []
    for i in range(count):
        ssrc, lost, highest, jitter, lsr, dlsr = struct.unpack_from(
            "!IIIIII", body, offset + 24 * i
        )
        cumulative = lost & 0xFFFFFF
        if cumulative & 0x800000:
            cumulative -= 0x1000000
        blocks.append(ReportBlock(ssrc, lost >> 24, cumulative, highest, jitter, lsr, dlsr))
    return tuple(blocks)


def _header(packetType: int, count: int, body: bytes) -> bytes:
    if len(body) % 4:
        body += b"\x00" * (-len(body) % 4)
    return struct.pack("!BBH", 0x80 | count, packetType, len(body) // 4) + body


class SenderReport(NamedTuple):
    """
    RTCP SR (type 200).
    """

    ssrc: int
    ntpTimestamp: int
    rtpTimestamp: int
    packetCount: int
    octetCount: int
    reports: tuple[ReportBlock, ...] = ()

    def toBytes(self) -> bytes:
        body = struct.pack(
            "!IQIII",
            self.ssrc,
            self.ntpTimestamp,
            self.rtpTimestamp,
            self.packetCount & 0xFFFFFFFF,
            self.octetCount & 0xFFFFFFFF,
        ) + b"".join(r.toBytes() for r in self.reports)
        return _header(200, len(self.reports), body)


class ReceiverReport(NamedTuple):
    """
    RTCP RR (type 201).
    """

    ssrc: int
    reports: tuple[ReportBlock, ...] = ()

    def toBytes(self) -> bytes:
        body = struct.pack("!I", self.ssrc) + b"".join(r.toBytes() for r in self.reports)
        return _header(201, len(self.reports), body)


class SdesChunk(NamedTuple):
    """
    One SDES chunk: an SSRC and its C{(type, value)} items (1 = CNAME).
    """

    ssrc: int
    items: tuple[tuple[int, bytes], ...]

    def toBytes(self) -> bytes:
        out = bytearray(struct.pack("!I", self.ssrc))
        for kind, value in self.items:
            value = value[:255]
            out += bytes([kind, len(value)]) + value
        out += b"\x00" * (4 - len(out) % 4)
        return bytes(out)


class SourceDescription(NamedTuple):
    """
    RTCP SDES (type 202).
    """

    chunks: tuple[SdesChunk, ...]

    @classmethod
    def cname(cls, ssrc: int, name: str) -> SourceDescription:
        """
        An SDES with one CNAME.
        """
        return cls((SdesChunk(ssrc, ((1, name.encode("utf-8")),)),))

    def toBytes(self) -> bytes:
        return _header(202, len(self.chunks), b"".join(c.toBytes() for c in self.chunks))


class Goodbye(NamedTuple):
    """
    RTCP BYE (type 203).
    """

    ssrcs: tuple[int, ...]
    reason: bytes | None = None

    def toBytes(self) -> bytes:
        body = struct.pack(f"!{len(self.ssrcs)}I", *self.ssrcs)
        if self.reason is not None:
            reason = self.reason[:255]
            text = bytes([len(reason)]) + reason
            body += text + b"\x00" * (-len(text) % 4)
        return _header(203, len(self.ssrcs), body)


class RtcpUnknown(NamedTuple):
    """
    An RTCP packet of another type (APP, feedback...), kept raw;
    C{subtype} is the 5-bit count/subtype field.
    """

    packetType: int
    subtype: int
    body: bytes

    def toBytes(self) -> bytes:
        return _header(self.packetType, self.subtype, self.body)


RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Goodbye | RtcpUnknown


def _parseSdes(body: bytes, count: int) -> SourceDescription:
    chunks = []
    offset = 0
    for _ in range(count):
        if len(body) < offset + 4:
            raise RtcpParseError("truncated SDES chunk")
        (ssrc,) = struct.unpack_from("!I", body, offset)
        offset += 4
        items = []
        while True:
            if offset >= len(body):
                raise RtcpParseError("unterminated SDES chunk")
            kind = body[offset]
            if kind == 0:
                offset += 4 - offset % 4
                break
            if offset + 2 > len(body) or offset + 2 + body[offset + 1] > len(body):
                raise RtcpParseError("truncated SDES item")
            length = body[offset + 1]
            items.append((kind, body[offset + 2 : offset + 2 + length]))
            offset += 2 + length
        chunks.append(SdesChunk(ssrc, tuple(items)))
    return SourceDescription(tuple(chunks))


def parseRtcp(data: bytes) -> tuple[RtcpPacket, ...]:
    """
    Parse a (compound) RTCP packet.

    @raise RtcpParseError: empty, not version 2, or a length or count that
        does not fit.
    """
    packets: list[RtcpPacket] = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < 4:
            raise RtcpParseError("truncated RTCP header")
        first, packetType, length = struct.unpack_from("!BBH", data, offset)
        if first >> 6 != 2:
            raise RtcpParseError("not RTCP version 2")
        end = offset + 4 * (length + 1)
        if end > len(data):
            raise RtcpParseError("RTCP length beyond the datagram")
        body = data[offset + 4 : end]
        count = first & 0x1F
        if first & 0x20:
            if not body or body[-1] == 0 or body[-1] > len(body):
                raise RtcpParseError("bad RTCP padding")
            body = body[: -body[-1]]
        if packetType == 200:
            if len(body) < 24:
                raise RtcpParseError("truncated SR")
            ssrc, ntp, rtp, packetCount, octets = struct.unpack_from("!IQIII", body)
            packets.append(
                SenderReport(ssrc, ntp, rtp, packetCount, octets, _reportBlocks(body, 24, count))
            )
        elif packetType == 201:
            if len(body) < 4:
                raise RtcpParseError("truncated RR")
            (ssrc,) = struct.unpack_from("!I", body)
            packets.append(ReceiverReport(ssrc, _reportBlocks(body, 4, count)))
        elif packetType == 202:
            packets.append(_parseSdes(body, count))
        elif packetType == 203:
            if len(body) < 4 * count:
                raise RtcpParseError("truncated BYE")
            ssrcs = struct.unpack_from(f"!{count}I", body)
            reason = None
            rest = body[4 * count :]
            if rest:
                if 1 + rest[0] > len(rest):
                    raise RtcpParseError("truncated BYE reason")
                reason = rest[1 : 1 + rest[0]]
            packets.append(Goodbye(ssrcs, reason))
        else:
            packets.append(RtcpUnknown(packetType, count, body))
        offset = end
    if not packets:
        raise RtcpParseError("empty RTCP packet")
    return tuple(packets)


def buildRtcp(packets: Iterable[RtcpPacket]) -> bytes:
    """
    A compound RTCP packet (RFC 3550 §6.1: start with an SR or RR, include
    an SDES CNAME).
    """
    return b"".join(p.toBytes() for p in packets)


# ---------------------------------------------------------------------------
# Reception statistics (RFC 3550 appendix A.1, A.3, A.8)


class ReceptionStatistics:
    """
    What an RTP receiver counts about one source, to build its report
    block: extended highest sequence, cumulative and fractional loss,
    interarrival jitter, and the last SR received.  Times are parameters
    (seconds, any monotonic origin).
    """

    def __init__(self, clockRate: int = 8000) -> None:
        self.clockRate = clockRate
        self.received = 0
        self._base: int | None = None
        self._max = 0
        self._cycles = 0
        self._transit: float | None = None
        self._jitter = 0.0
        self._expectedPrior = 0
        self._receivedPrior = 0
        self._lastSr = 0
        self._lastSrArrival: float | None = None

    @property
    def extendedHighest(self) -> int:
        """
        The extended highest sequence number received (cycles << 16 | max).
        """
        return self._cycles | self._max

    @property
    def expected(self) -> int:
        """
        How many packets were expected.
        """
        if self._base is None:
            return 0
        return self.extendedHighest - self._base + 1

    @property
    def cumulativeLost(self) -> int:
        """
        Expected minus received (negative with duplicates).
        """
        return self.expected - self.received

    @property
    def jitter(self) -> float:
        """
        The interarrival jitter estimate, in RTP clock units.
        """
        return self._jitter

    def update(self, sequence: int, timestamp: int, arrival: float) -> None:
        """
        Account for one packet arriving at C{arrival} seconds.
        """
        if self._base is None:
            self._base = sequence
            self._max = sequence
        else:
            delta = seqDiff(sequence, self._max)
            if delta > 0:
                if sequence < self._max:
                    self._cycles += 0x10000
                self._max = sequence
        self.received += 1
        transit = arrival * self.clockRate - timestamp
        if self._transit is not None:
            d = abs(transit - self._transit)
            if d < 2**31:
                self._jitter += (d - self._jitter) / 16
        self._transit = transit

    def senderReportReceived(self, ntpTimestamp: int, arrival: float) -> None:
        """
        Note an SR from this source (for LSR/DLSR).
        """
        self._lastSr = ntpMiddle(ntpTimestamp)
        self._lastSrArrival = arrival

    def reportBlock(self, ssrc: int, now: float) -> ReportBlock:
        """
        The report block about source C{ssrc} at time C{now}; the fraction
        lost covers the interval since the previous call.
        """
        expected = self.expected
        expectedInterval = expected - self._expectedPrior
        receivedInterval = self.received - self._receivedPrior
        self._expectedPrior = expected
        self._receivedPrior = self.received
        lostInterval = expectedInterval - receivedInterval
        fraction = (
            0
            if expectedInterval <= 0 or lostInterval <= 0
            else (lostInterval << 8) // expectedInterval
        )
        cumulative = max(-0x800000, min(0x7FFFFF, self.cumulativeLost))
        dlsr = 0
        if self._lastSrArrival is not None:
            dlsr = int(max(0.0, now - self._lastSrArrival) * 65536) & 0xFFFFFFFF
        return ReportBlock(
            ssrc,
            min(fraction, 255),
            cumulative,
            self.extendedHighest & 0xFFFFFFFF,
            int(self._jitter),
            self._lastSr,
            dlsr,
        )
