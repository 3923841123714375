"""
Tests for L{rapida_twisted.sip._rtp}.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from rapida_twisted.sip._rtp import (
    DTMF_EVENTS,
    BufferedFrame,
    DtmfDigit,
    DtmfReceiver,
    Goodbye,
    JitterBuffer,
    ReceiverReport,
    ReceptionStatistics,
    ReportBlock,
    RtcpParseError,
    RtcpUnknown,
    RtpExtension,
    RtpPacket,
    RtpParseError,
    SdesChunk,
    SenderReport,
    SourceDescription,
    TelephoneEvent,
    buildRtcp,
    digitToEvent,
    dtmfPackets,
    eventToDigit,
    looksLikeRtcp,
    ntpFromUnix,
    ntpMiddle,
    packRtp,
    parseRtcp,
    parseRtp,
    parseTelephoneEvent,
    seqAdd,
    seqDiff,
    tsAdd,
    tsDiff,
)


class ArithmeticTests(SynchronousTestCase):
    """
    Sequence and timestamp wrap.
    """

    def test_seq(self) -> None:
        self.assertEqual(seqDiff(5, 3), 2)
        self.assertEqual(seqDiff(3, 5), -2)
        self.assertEqual(seqDiff(0, 65535), 1)
        self.assertEqual(seqDiff(65535, 0), -1)
        self.assertEqual(seqDiff(32767, 0), 32767)
        self.assertEqual(seqDiff(32768, 0), -32768)
        self.assertEqual(seqAdd(65535, 1), 0)
        self.assertEqual(seqAdd(0, -1), 65535)

    def test_ts(self) -> None:
        self.assertEqual(tsDiff(100, 4294967200), 196)
        self.assertEqual(tsDiff(4294967200, 100), -196)
        self.assertEqual(tsAdd(4294967200, 160), 64)


class RtpPacketTests(SynchronousTestCase):
    """
    L{parseRtp}, L{packRtp} and L{RtpPacket.toBytes}.
    """

    def test_plain(self) -> None:
        data = packRtp(8, 65535, 4294967295, 0xDEADBEEF, b"\xd5" * 160, marker=True)
        self.assertEqual(data[:2], b"\x80\x88")
        self.assertEqual(len(data), 172)
        packet = parseRtp(data)
        self.assertEqual(packet, RtpPacket(8, 65535, 4294967295, 0xDEADBEEF, b"\xd5" * 160, True))
        self.assertEqual(packet.toBytes(), data)
        self.assertFalse(parseRtp(packRtp(0, 1, 2, 3, b"")).marker)

    def test_full(self) -> None:
        packet = RtpPacket(
            101,
            7,
            8,
            9,
            b"\x01\x02\x03\x04",
            True,
            (10, 11),
            RtpExtension(0xBEDE, b"\x10\xaa\x00\x00"),
            4,
        )
        data = packet.toBytes()
        self.assertEqual(data[0], 0x80 | 0x20 | 0x10 | 2)
        self.assertEqual(data[-1], 4)
        self.assertEqual(parseRtp(data), packet)

    def test_extensionPadded(self) -> None:
        packet = RtpPacket(0, 1, 2, 3, b"x", extension=RtpExtension(1, b"\x01"))
        self.assertEqual(parseRtp(packet.toBytes()).extension, RtpExtension(1, b"\x01\x00\x00\x00"))

    def test_errors(self) -> None:
        good = RtpPacket(0, 1, 2, 3, b"abcd", csrcs=(1,), extension=RtpExtension(1, b"")).toBytes()
        for data in [
            b"",
            b"\x80" * 11,
            b"\x40" + good[1:],
            b"\x8f" + good[1:],
            good[:16],
            good[:18],
            bytes([good[0] | 0x20]) + good[1:-1] + b"\x00",
            bytes([good[0] | 0x20]) + good[1:-1] + b"\x09",
        ]:
            self.assertRaises(RtpParseError, parseRtp, data)

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=64))
    def test_fuzz(self, data: bytes) -> None:
        try:
            packet = parseRtp(data)
        except RtpParseError:
            return
        self.assertEqual(parseRtp(packet.toBytes()), packet)

    def test_rtcpDemux(self) -> None:
        self.assertTrue(looksLikeRtcp(ReceiverReport(1).toBytes()))
        self.assertFalse(looksLikeRtcp(packRtp(0, 1, 2, 3, b"")))
        self.assertFalse(looksLikeRtcp(packRtp(101, 1, 2, 3, b"", True)))
        self.assertFalse(looksLikeRtcp(b"\x80"))


class TelephoneEventTests(SynchronousTestCase):
    """
    RFC 4733 payloads and digits.
    """

    def test_roundTrip(self) -> None:
        event = TelephoneEvent(11, True, 10, 1600)
        self.assertEqual(event.toBytes(), b"\x0b\x8a\x06\x40")
        self.assertEqual(parseTelephoneEvent(event.toBytes() + b"extra"), event)
        self.assertRaises(RtpParseError, parseTelephoneEvent, b"\x01\x02\x03")

    def test_digits(self) -> None:
        self.assertEqual([eventToDigit(e) for e in range(17)], [*DTMF_EVENTS, None])
        self.assertEqual(digitToEvent("#"), 11)
        self.assertEqual(digitToEvent("d"), 15)
        self.assertRaises(ValueError, digitToEvent, "E")
        self.assertRaises(ValueError, digitToEvent, "")

    def test_dtmfPackets(self) -> None:
        packets = dtmfPackets("7")
        events = [parseTelephoneEvent(p.payload) for p in packets]
        self.assertEqual([e.duration for e in events], [160, 320, 480, 640, 800, 800, 800])
        self.assertEqual([e.end for e in events], [False] * 4 + [True] * 3)
        self.assertEqual([p.marker for p in packets], [True] + [False] * 6)
        self.assertEqual({e.event for e in events}, {7})
        self.assertEqual({e.volume for e in events}, {10})

    def test_dtmfPacketsShort(self) -> None:
        packets = dtmfPackets("*", duration=0.01, volume=5, endRepeats=2)
        self.assertEqual(
            [parseTelephoneEvent(p.payload) for p in packets],
            [
                TelephoneEvent(10, False, 5, 160),
                TelephoneEvent(10, True, 5, 160),
                TelephoneEvent(10, True, 5, 160),
            ],
        )
        self.assertRaises(ValueError, dtmfPackets, "x")

    def test_dtmfPacketsLong(self) -> None:
        """
        The duration field saturates at 16 bits.
        """
        packets = dtmfPackets("1", duration=10)
        self.assertEqual(parseTelephoneEvent(packets[-1].payload).duration, 0xFFFF)


def event(
    digit: str,
    ts: int,
    duration: int,
    end: bool = False,
    marker: bool = False,
    ssrc: int = 1,
    seq: int = 0,
) -> RtpPacket:
    return RtpPacket(
        101, seq, ts, ssrc, TelephoneEvent(digitToEvent(digit), end, 10, duration).toBytes(), marker
    )


class DtmfReceiverTests(SynchronousTestCase):
    """
    L{DtmfReceiver}: one digit per event.
    """

    def feed(self, receiver: DtmfReceiver, packets: list[RtpPacket]) -> list[str]:
        return [d.digit for d in map(receiver.receive, packets) if d is not None]

    def test_sentPackets(self) -> None:
        """
        What L{dtmfPackets} produces is detected once per digit, even sent
        twice in a row.
        """
        receiver = DtmfReceiver()
        packets: list[RtpPacket] = []
        for i, digit in enumerate("1223#"):
            packets.extend(
                RtpPacket(101, 0, 1000 * i, 5, p.payload, p.marker) for p in dtmfPackets(digit)
            )
        self.assertEqual(self.feed(receiver, packets), list("1223#"))

    def test_digitReported(self) -> None:
        receiver = DtmfReceiver()
        self.assertEqual(
            receiver.receive(event("9", 500, 160, marker=True, ssrc=3)), DtmfDigit("9", 9, 500, 3)
        )

    def test_lostStart(self) -> None:
        """
        Only the end packets arrive: still one digit.
        """
        receiver = DtmfReceiver()
        self.assertEqual(self.feed(receiver, [event("4", 100, 800, end=True)] * 3), ["4"])

    def test_reordered(self) -> None:
        receiver = DtmfReceiver()
        packets = [
            event("1", 100, 320),
            event("1", 100, 160, marker=True),
            event("1", 100, 800, end=True),
            event("2", 2000, 160, marker=True),
            event("1", 100, 800, end=True),
            event("2", 2000, 800, end=True),
        ]
        self.assertEqual(self.feed(receiver, packets), ["1", "2"])

    def test_longEventSegments(self) -> None:
        """
        A long event continues with a new timestamp and no marker: no new
        digit.
        """
        receiver = DtmfReceiver()
        packets = [
            event("0", 100, 65535, marker=True),
            event("0", 100 + 65535, 160),
            event("0", 100 + 65535, 800, end=True),
            event("0", 100 + 70000, 160, marker=True),
        ]
        self.assertEqual(self.feed(receiver, packets), ["0", "0"])

    def test_sameDigitWithoutMarkerAfterEnd(self) -> None:
        receiver = DtmfReceiver()
        packets = [event("5", 100, 800, end=True), event("5", 2000, 160)]
        self.assertEqual(self.feed(receiver, packets), ["5", "5"])

    def test_ssrcDistinguishes(self) -> None:
        receiver = DtmfReceiver()
        self.assertEqual(
            self.feed(
                receiver,
                [
                    event("3", 100, 160, marker=True, ssrc=1),
                    event("3", 100, 160, marker=True, ssrc=2),
                ],
            ),
            ["3", "3"],
        )

    def test_flashIgnored(self) -> None:
        receiver = DtmfReceiver()
        packet = RtpPacket(101, 0, 1, 1, TelephoneEvent(16, False, 10, 160).toBytes(), True)
        self.assertIsNone(receiver.receive(packet))

    def test_badPayload(self) -> None:
        self.assertRaises(RtpParseError, DtmfReceiver().receive, RtpPacket(101, 0, 1, 1, b"\x01"))


class JitterBufferTests(SynchronousTestCase):
    """
    L{JitterBuffer}.
    """

    def drain(self, buffer: JitterBuffer, ticks: int) -> list[int | None]:
        out: list[int | None] = []
        for _ in range(ticks):
            frame = buffer.pop()
            out.append(None if frame is None else frame.sequence)
        return out

    def test_inOrder(self) -> None:
        buffer = JitterBuffer(depth=2)
        self.assertIsNone(buffer.pop())
        buffer.push(10, 1600, b"a")
        self.assertIsNone(buffer.pop())
        self.assertFalse(buffer.playing)
        buffer.push(11, 1760, b"b")
        self.assertEqual(buffer.pop(), BufferedFrame(10, 1600, b"a"))
        self.assertTrue(buffer.playing)
        buffer.push(12, 1920, b"c")
        self.assertEqual(self.drain(buffer, 3), [11, 12, None])
        self.assertEqual(buffer.underruns, 1)
        self.assertFalse(buffer.playing)

    def test_reorder(self) -> None:
        buffer = JitterBuffer(depth=3)
        for seq in (1, 3, 2, 4):
            self.assertTrue(buffer.push(seq, seq * 160, b""))
        self.assertEqual(self.drain(buffer, 4), [1, 2, 3, 4])
        self.assertEqual(buffer.lost, 0)

    def test_earlierPacketWhileFilling(self) -> None:
        buffer = JitterBuffer(depth=3)
        for seq in (12, 11, 10):
            buffer.push(seq, 0, b"")
        self.assertEqual(self.drain(buffer, 3), [10, 11, 12])

    def test_duplicatesAndLate(self) -> None:
        buffer = JitterBuffer(depth=2)
        buffer.push(1, 0, b"")
        self.assertFalse(buffer.push(1, 0, b""))
        buffer.push(2, 0, b"")
        self.assertEqual(self.drain(buffer, 1), [1])
        self.assertFalse(buffer.push(1, 0, b""))
        self.assertEqual((buffer.duplicates, buffer.late, buffer.received), (1, 1, 4))

    def test_loss(self) -> None:
        """
        A missing packet is waited for while fewer than C{depth} packets are
        held, then skipped and counted.
        """
        buffer = JitterBuffer(depth=3)
        for seq in (1, 2, 3):
            buffer.push(seq, 0, b"")
        out = []
        for seq in range(4, 12):
            if seq != 5:
                buffer.push(seq, 0, b"")
            frame = buffer.pop()
            out.append(None if frame is None else frame.sequence)
        self.assertEqual(out, [1, 2, 3, 4, None, 6, 7, 8])
        self.assertEqual(buffer.lost, 1)

    def test_lateArrivalWithinDepth(self) -> None:
        buffer = JitterBuffer(depth=3)
        for seq in (1, 2, 3):
            buffer.push(seq, 0, b"")
        self.assertEqual(self.drain(buffer, 1), [1])
        buffer.push(5, 0, b"")
        self.assertEqual(self.drain(buffer, 1), [2])
        buffer.push(6, 0, b"")
        self.assertEqual(self.drain(buffer, 1), [3])
        self.assertEqual(self.drain(buffer, 1), [None])
        buffer.push(4, 0, b"")
        self.assertEqual(self.drain(buffer, 3), [4, 5, 6])
        self.assertEqual(buffer.lost, 0)

    def test_wrap(self) -> None:
        buffer = JitterBuffer(depth=2)
        for seq in (65534, 0, 65535, 1):
            buffer.push(seq, 0, b"")
        self.assertEqual(self.drain(buffer, 4), [65534, 65535, 0, 1])

    def test_resync(self) -> None:
        """
        A far jump confirmed by the next packet restarts the buffer.
        """
        buffer = JitterBuffer(depth=1)
        buffer.push(100, 0, b"")
        self.assertEqual(self.drain(buffer, 1), [100])
        self.assertFalse(buffer.push(30000, 0, b""))
        self.assertTrue(buffer.push(30001, 0, b""))
        self.assertEqual(self.drain(buffer, 3), [30000, 30001, None])
        self.assertEqual((buffer.resyncs, buffer.strays, buffer.lost), (1, 0, 0))

    def test_stray(self) -> None:
        """
        A single far packet is dropped.
        """
        buffer = JitterBuffer(depth=1)
        buffer.push(100, 0, b"")
        self.assertFalse(buffer.push(5000, 0, b""))
        self.assertFalse(buffer.push(9000, 0, b""))
        buffer.push(101, 0, b"")
        self.assertEqual(self.drain(buffer, 2), [100, 101])
        self.assertEqual((buffer.resyncs, buffer.strays), (0, 2))

    def test_overflow(self) -> None:
        buffer = JitterBuffer(depth=2, maxDepth=4)
        for seq in range(1, 8):
            buffer.push(seq, 0, b"")
        self.assertEqual(len(buffer), 4)
        self.assertEqual(buffer.overflows, 3)
        self.assertEqual(self.drain(buffer, 4), [4, 5, 6, 7])

    def test_reset(self) -> None:
        buffer = JitterBuffer(depth=1)
        buffer.push(1, 0, b"")
        buffer.reset()
        self.assertEqual(len(buffer), 0)
        buffer.push(500, 0, b"")
        self.assertEqual(self.drain(buffer, 1), [500])
        self.assertRaises(ValueError, JitterBuffer, 0)

    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.one_of(st.integers(0, 65535), st.integers(0, 10), st.integers(65530, 65535)),
                st.booleans(),
            ),
            max_size=100,
        ),
        st.integers(1, 5),
    )
    def test_playoutInOrder(self, events: list[tuple[int, bool]], depth: int) -> None:
        """
        Whatever arrives, playout moves forward (between resyncs) and the
        buffer stays bounded.
        """
        buffer = JitterBuffer(depth=depth)
        last: int | None = None
        resyncs = 0
        for seq, tick in events:
            buffer.push(seq, 0, b"")
            if buffer.resyncs != resyncs:
                resyncs, last = buffer.resyncs, None
            if tick:
                frame = buffer.pop()
                if frame is not None:
                    if last is not None:
                        self.assertGreater(seqDiff(frame.sequence, last), 0)
                    last = frame.sequence
            self.assertLessEqual(len(buffer), buffer.maxDepth)


class RtcpTests(SynchronousTestCase):
    """
    RTCP build and parse.
    """

    def test_compound(self) -> None:
        block = ReportBlock(0x22, 25, -3, 0x1FFFF, 40, 0x12345678, 65536)
        packets = (
            SenderReport(0x11, ntpFromUnix(1700000000.5), 160000, 1000, 160000, (block,)),
            SourceDescription.cname(0x11, "rapida@192.0.2.1"),
            Goodbye((0x11,), b"call ended"),
        )
        data = buildRtcp(packets)
        self.assertEqual(len(data) % 4, 0)
        self.assertEqual(data[1], 200)
        self.assertEqual(parseRtcp(data), packets)

    def test_receiverReport(self) -> None:
        rr = ReceiverReport(
            5, (ReportBlock(6, 0, 0, 100, 0, 0, 0), ReportBlock(7, 255, 8388607, 1, 2, 3, 4))
        )
        self.assertEqual(parseRtcp(rr.toBytes()), (rr,))
        self.assertEqual(parseRtcp(ReceiverReport(5).toBytes()), (ReceiverReport(5),))

    def test_sdesItems(self) -> None:
        for name in ["", "a", "ab", "abc", "abcd", "x" * 300]:
            sdes = SourceDescription(
                (SdesChunk(1, ((1, name.encode()), (6, b"tool"))), SdesChunk(2, ()))
            )
            (parsed,) = parseRtcp(sdes.toBytes())
            assert isinstance(parsed, SourceDescription)
            self.assertEqual(parsed.chunks[0].items[0][1], name.encode()[:255])
            self.assertEqual(parsed.chunks[1], SdesChunk(2, ()))

    def test_unknownAndPadding(self) -> None:
        app = RtcpUnknown(204, 1, b"\x00\x00\x00\x01name")
        self.assertEqual(parseRtcp(app.toBytes()), (app,))
        padded = bytearray(ReceiverReport(9).toBytes() + b"\x00\x00\x00\x04")
        padded[0] |= 0x20
        padded[3] += 1
        self.assertEqual(parseRtcp(bytes(padded)), (ReceiverReport(9),))

    def test_byeWithoutReason(self) -> None:
        self.assertEqual(parseRtcp(Goodbye((1, 2)).toBytes()), (Goodbye((1, 2)),))

    def test_ntp(self) -> None:
        ntp = ntpFromUnix(0.25)
        self.assertEqual(ntp >> 32, 2208988800)
        self.assertEqual(ntp & 0xFFFFFFFF, 2**30)
        self.assertEqual(ntpMiddle(ntp), (2208988800 & 0xFFFF) << 16 | 0x4000)

    def test_errors(self) -> None:
        rr = ReceiverReport(1, (ReportBlock(1, 0, 0, 0, 0, 0, 0),)).toBytes()
        for data in [
            b"",
            b"\x80\xc9",
            b"\x40" + rr[1:],
            rr[:-4],
            rr + b"\x80",
            b"\x81\xc9\x00\x01\x00\x00\x00\x01",
            b"\x80\xc8\x00\x01\x00\x00\x00\x01",
            b"\x81\xca\x00\x01\x00\x00\x00\x01",
            b"\x81\xca\x00\x01\x00\x00\x00\x01\x01\x09",
            b"\x82\xcb\x00\x01\x00\x00\x00\x01",
            b"\x81\xcb\x00\x02\x00\x00\x00\x01\x09abc",
            b"\xa0\xc9\x00\x01\x00\x00\x00\x00",
        ]:
            self.assertRaises(RtcpParseError, parseRtcp, data)

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=80))
    def test_fuzz(self, data: bytes) -> None:
        try:
            packets = parseRtcp(data)
        except RtcpParseError:
            return
        buildRtcp(packets)


class ReceptionStatisticsTests(SynchronousTestCase):
    """
    L{ReceptionStatistics}.
    """

    def test_lossAndWrap(self) -> None:
        stats = ReceptionStatistics()
        for i, seq in enumerate([65533, 65534, 0, 1, 2]):
            stats.update(seq, i * 160, i * 0.02)
        self.assertEqual(stats.extendedHighest, 0x10002)
        self.assertEqual(stats.expected, 6)
        self.assertEqual(stats.cumulativeLost, 1)
        block = stats.reportBlock(0xAB, now=1.0)
        self.assertEqual(block.ssrc, 0xAB)
        self.assertEqual(block.fractionLost, 256 // 6)
        self.assertEqual(block.cumulativeLost, 1)
        self.assertEqual(block.highestSequence, 0x10002)
        self.assertEqual(block.jitter, 0)
        stats.update(3, 5 * 160, 0.1)
        self.assertEqual(stats.reportBlock(0xAB, now=2.0).fractionLost, 0)

    def test_jitter(self) -> None:
        stats = ReceptionStatistics()
        stats.update(1, 0, 0.0)
        stats.update(2, 160, 0.03)
        self.assertAlmostEqual(stats.jitter, 80 / 16)

    def test_lastSr(self) -> None:
        stats = ReceptionStatistics()
        stats.update(1, 0, 0.0)
        ntp = ntpFromUnix(1700000000.0)
        stats.senderReportReceived(ntp, 10.0)
        block = stats.reportBlock(1, 10.5)
        self.assertEqual(block.lastSr, ntpMiddle(ntp))
        self.assertEqual(block.delaySinceLastSr, 32768)

    def test_empty(self) -> None:
        block = ReceptionStatistics().reportBlock(1, 0.0)
        self.assertEqual((block.fractionLost, block.cumulativeLost, block.lastSr), (0, 0, 0))
