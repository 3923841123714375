"""
Tests for the RTP side of the SIP server: L{rapida_twisted.sip._ports}
(port pairs from the range) and L{rapida_twisted.sip._rtp_session} (one
call's RTP/RTCP endpoint, the call session's L{ICallTransport}).
"""

from __future__ import annotations

from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import SynchronousTestCase

from rapida_twisted.sip._ports import PortsExhausted, RtpPortAllocator

from ._udp import MemoryUDPReactor


class PortAllocatorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryUDPReactor()

    def test_evenPortRtcpOnNext(self) -> None:
        ports = RtpPortAllocator(self.reactor, 20000, 20009, "127.0.0.1")
        self.assertEqual(ports.capacity, 5)
        rtp, rtcp = DatagramProtocol(), DatagramProtocol()
        pair = ports.allocate(rtp, rtcp)
        self.assertEqual((pair.port, pair.rtcpPort), (20000, 20001))
        self.assertIs(self.reactor.udpPorts[20000].protocol, rtp)
        self.assertIs(self.reactor.udpPorts[20001].protocol, rtcp)
        self.assertEqual(self.reactor.udpPorts[20000].interface, "127.0.0.1")
        self.assertEqual(ports.inUse, 1)

    def test_rotatesAndReleases(self) -> None:
        ports = RtpPortAllocator(self.reactor, 20000, 20005)
        a = ports.allocate(DatagramProtocol(), DatagramProtocol())
        b = ports.allocate(DatagramProtocol(), DatagramProtocol())
        ports.release(a)
        ports.release(a)  # idempotent
        self.assertNotIn(20000, self.reactor.udpPorts)
        self.assertNotIn(20001, self.reactor.udpPorts)
        c = ports.allocate(DatagramProtocol(), DatagramProtocol())
        self.assertEqual([a.port, b.port, c.port], [20000, 20002, 20004])
        # the one released first comes back only after the cursor wraps
        d = ports.allocate(DatagramProtocol(), DatagramProtocol())
        self.assertEqual(d.port, 20000)

    def test_exhausted(self) -> None:
        ports = RtpPortAllocator(self.reactor, 20000, 20003)
        ports.allocate(DatagramProtocol(), DatagramProtocol())
        ports.allocate(DatagramProtocol(), DatagramProtocol())
        self.assertRaises(PortsExhausted, ports.allocate, DatagramProtocol(), DatagramProtocol())

    def test_busyPortsSkipped(self) -> None:
        self.reactor.busy = {20000, 20003}
        ports = RtpPortAllocator(self.reactor, 20000, 20005)
        pair = ports.allocate(DatagramProtocol(), DatagramProtocol())
        self.assertEqual(pair.port, 20004)
        # the RTP half of the refused 20002/20003 pair was closed again
        self.assertNotIn(20002, self.reactor.udpPorts)
        self.assertRaises(PortsExhausted, ports.allocate, DatagramProtocol(), DatagramProtocol())

    def test_oddLowRoundedUp(self) -> None:
        ports = RtpPortAllocator(self.reactor, 20001, 20004)
        self.assertEqual(ports.allocate(DatagramProtocol(), DatagramProtocol()).port, 20002)
        self.assertRaises(ValueError, RtpPortAllocator, self.reactor, 20001, 20002)

    def test_releaseAll(self) -> None:
        ports = RtpPortAllocator(self.reactor, 20000, 20009)
        for _ in range(3):
            ports.allocate(DatagramProtocol(), DatagramProtocol())
        ports.releaseAll()
        self.assertEqual(self.reactor.udpPorts, {})
        self.assertEqual(ports.inUse, 0)


# --- the RTP session -----------------------------------------------------------------

from typing import Any  # noqa: E402

from rapida_twisted.call._format import AudioFormat  # noqa: E402
from rapida_twisted.interfaces import ICallTransport  # noqa: E402
from rapida_twisted.sip._rtp import (  # noqa: E402
    SenderReport,
    SourceDescription,
    TelephoneEvent,
    packRtp,
    parseRtcp,
    parseRtp,
    parseTelephoneEvent,
)
from rapida_twisted.sip._rtp_session import DTMF_GAP_TICKS, MediaTimeouts, RtpSession  # noqa: E402
from rapida_twisted.sip._sdp import AudioNegotiation, answerOffer, parseSdp  # noqa: E402

from ._udp import sdpOffer  # noqa: E402

PEER = ("10.0.0.1", 30000)
ULAW = AudioFormat("ulaw", 8000, 20)
TONE = bytes((i * 7) % 256 for i in range(160))


def negotiation(**kw: Any) -> AudioNegotiation:
    return answerOffer(
        parseSdp(sdpOffer(**kw)),
        localAddress="192.0.2.1",
        localPort=20000,
        sessionId=1,
        sessionVersion=1,
    )


class FakeCallSession:
    def __init__(self) -> None:
        self.audio: list[bytes] = []
        self.digits: list[str] = []

    def audioReceived(self, data: bytes) -> None:
        self.audio.append(data)

    def dtmfReceived(self, digit: str) -> None:
        self.digits.append(digit)


class FakeOwner:
    def __init__(self) -> None:
        self.timeouts: list[float] = []
        self.hangups: list[str] = []

    def mediaTimeout(self, seconds: float) -> None:
        self.timeouts.append(seconds)

    def localHangup(self, reason: str) -> None:
        self.hangups.append(reason)


class RtpSessionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryUDPReactor()
        self.ports = RtpPortAllocator(self.reactor, 20000, 20099)
        self.rtp = RtpSession(self.reactor, ULAW, 0, MediaTimeouts())
        self.owner = FakeOwner()
        self.rtp.owner = self.owner
        self.rtp.bind(self.ports)
        self.rtp.configure(negotiation())
        self.session = FakeCallSession()
        self.rtp.attach(self.session)
        self.port = self.reactor.udpPorts[self.rtp.port]
        self.rtcp = self.reactor.udpPorts[self.rtp.port + 1]

    def tearDown(self) -> None:
        self.rtp.close()

    def sent(self) -> list[Any]:
        return [(parseRtp(d), a) for d, a in self.port.take()]

    def deliver(
        self,
        seq: int,
        payload: bytes = TONE,
        pt: int = 0,
        ts: int | None = None,
        marker: bool = False,
        addr: tuple[str, int] = PEER,
        ssrc: int = 77,
    ) -> None:
        stamp = 1000 + 160 * seq if ts is None else ts
        self.port.deliver(packRtp(pt, seq & 0xFFFF, stamp, ssrc, payload, marker), addr)

    def test_interface(self) -> None:
        from zope.interface.verify import verifyObject

        verifyObject(ICallTransport, self.rtp)
        self.assertTrue(self.rtp.paced)
        self.assertTrue(self.rtp.needsSilence)
        self.assertFalse(self.rtp.supportsMarks)

    def test_sequenceTimestampMarker(self) -> None:
        for _ in range(5):
            self.rtp.sendAudio(TONE)
        packets = self.sent()
        self.assertEqual({a for _, a in packets}, {PEER})
        seqs = [p.sequence for p, _ in packets]
        stamps = [p.timestamp for p, _ in packets]
        self.assertEqual(seqs, [(seqs[0] + i) & 0xFFFF for i in range(5)])
        self.assertEqual(stamps, [(stamps[0] + 160 * i) & 0xFFFFFFFF for i in range(5)])
        self.assertEqual([p.marker for p, _ in packets], [True, False, False, False, False])
        self.assertEqual({p.ssrc for p, _ in packets}, {self.rtp.ssrc})
        self.assertEqual({p.payloadType for p, _ in packets}, {0})

    def test_talkspurtMarker(self) -> None:
        silence = ULAW.silenceFrame
        self.rtp.sendAudio(silence)
        self.rtp.sendAudio(silence)
        self.rtp.sendAudio(TONE)
        self.rtp.sendAudio(TONE)
        self.rtp.sendAudio(silence)
        self.rtp.sendAudio(TONE)
        self.assertEqual(
            [p.marker for p, _ in self.sent()], [True, False, True, False, False, True]
        )

    def test_clearStartsTalkspurt(self) -> None:
        self.rtp.sendAudio(TONE)
        self.rtp.sendClear()
        self.rtp.sendAudio(TONE)
        self.assertEqual([p.marker for p, _ in self.sent()], [True, True])

    def test_latchToSource(self) -> None:
        nat = ("203.0.113.9", 41000)
        self.deliver(1, addr=nat)
        self.rtp.sendAudio(TONE)
        [(_, addr)] = self.sent()
        self.assertEqual(addr, nat)
        self.deliver(2, addr=("198.51.100.1", 5000))
        self.assertEqual(self.rtp.stats.foreign, 1)
        self.assertEqual(self.rtp.stats.packetsIn, 1)

    def test_newRemoteRelatches(self) -> None:
        self.deliver(1, addr=("203.0.113.9", 41000))
        self.rtp.configure(negotiation(address="10.0.0.2", port=30002))
        self.rtp.sendAudio(TONE)
        [(packet, addr)] = self.sent()
        self.assertEqual(addr, ("10.0.0.2", 30002))
        self.assertTrue(packet.marker)

    def test_holdKeepsTimeline(self) -> None:
        self.rtp.sendAudio(TONE)
        [(first, _)] = self.sent()
        self.rtp.configure(negotiation(direction="sendonly"))  # we are on hold
        for _ in range(10):
            self.rtp.sendAudio(TONE)
        self.assertEqual(self.sent(), [])
        self.rtp.configure(negotiation())
        self.rtp.sendAudio(TONE)
        [(resumed, _)] = self.sent()
        self.assertEqual(resumed.sequence, (first.sequence + 1) & 0xFFFF)
        self.assertEqual(resumed.timestamp, (first.timestamp + 11 * 160) & 0xFFFFFFFF)
        self.assertTrue(resumed.marker)

    def test_jitterBufferReorders(self) -> None:
        for seq in (10, 12, 11, 11, 13, 14):
            self.deliver(seq, payload=bytes([seq]) * 160)
        for _ in range(6):
            self.rtp.sendAudio(TONE)
        self.assertEqual([a[0] for a in self.session.audio], [10, 11, 12, 13, 14])
        self.assertEqual(self.rtp.jitterBuffer.duplicates, 1)

    def test_lossConcealed(self) -> None:
        for seq in (1, 2, 4, 5, 6):
            self.deliver(seq, payload=bytes([seq]) * 160)
        for _ in range(6):
            self.rtp.sendAudio(TONE)
        self.assertEqual([a[0] for a in self.session.audio], [1, 2, 0xFF, 4, 5, 6])
        self.assertEqual(self.rtp.stats.concealed, 1)

    def test_interleavedEventsAddNoDelay(self) -> None:
        # baresip sends telephone-events between audio packets, one
        # sequence space: the event slots are stepped over
        seq = 100
        for i in range(12):
            self.deliver(seq, payload=bytes([i]) * 160)
            seq += 1
            if 3 <= i < 8:
                event = TelephoneEvent(5, False, 10, 160 * (i - 2)).toBytes()
                self.deliver(seq, payload=event, pt=101, ts=5000)
                seq += 1
            self.rtp.sendAudio(TONE)
        heard = [a[0] for a in self.session.audio]
        self.assertEqual(heard, list(range(len(heard))))
        self.assertGreaterEqual(len(heard), 9)
        self.assertEqual(self.rtp.stats.concealed, 0)
        self.assertEqual(self.session.digits, ["5"])

    def test_thirtyMsPackets(self) -> None:
        # 240-byte packets every 30 ms, 20 ms ticks: two per three ticks
        seq = 1
        for tick in range(30):
            while 30 * (seq - 1) <= 20 * tick:
                self.deliver(seq, payload=bytes([seq]) * 240, ts=240 * seq)
                seq += 1
            self.rtp.sendAudio(TONE)
        heard = [a[0] for a in self.session.audio]
        self.assertEqual(heard, list(range(1, len(heard) + 1)))
        self.assertGreaterEqual(len(heard), 17)
        self.assertEqual(self.rtp.stats.concealed, 0)

    def test_dtmfInOneDigitPerEvent(self) -> None:
        start, end = bytes([9, 0x0A, 0, 160]), bytes([9, 0x8A, 3, 0x20])
        for i, (payload, marker) in enumerate(
            [(start, True), (start, False), (end, False), (end, False), (end, False)]
        ):
            self.deliver(i, payload=payload, pt=101, ts=8000, marker=marker)
        self.deliver(5, payload=bytes([11, 0x0A, 0, 160]), pt=101, ts=9600, marker=True)
        self.assertEqual(self.session.digits, ["9", "#"])
        self.assertEqual(self.rtp.stats.dtmfIn, 2)

    def test_dtmfOut(self) -> None:
        self.assertTrue(self.rtp.sendDtmf("5"))
        self.assertTrue(self.rtp.sendDtmf("#"))
        self.assertFalse(self.rtp.sendDtmf("x"))
        for _ in range(30):
            self.rtp.sendAudio(TONE)
        packets = [p for p, _ in self.sent()]
        events = [p for p in packets if p.payloadType == 101]
        first = [p for p in events if parseTelephoneEvent(p.payload).event == 5]
        second = [p for p in events if parseTelephoneEvent(p.payload).event == 11]
        self.assertEqual(len({p.timestamp for p in first}), 1)
        self.assertEqual(len({p.timestamp for p in second}), 1)
        self.assertNotEqual(first[0].timestamp, second[0].timestamp)
        self.assertEqual([p.marker for p in first][:2], [True, False])
        self.assertEqual([parseTelephoneEvent(p.payload).end for p in first][-3:], [True] * 3)
        # audio in between the events: the gap, starting a talkspurt
        i = packets.index(first[-1])
        gap = packets[i + 1 : i + 1 + DTMF_GAP_TICKS]
        self.assertEqual({p.payloadType for p in gap}, {0})
        self.assertTrue(gap[0].marker)
        seqs = [p.sequence for p in packets]
        self.assertEqual(seqs, [(seqs[0] + i) & 0xFFFF for i in range(len(seqs))])

    def test_noDtmfWithoutTelephoneEvent(self) -> None:
        self.rtp.configure(negotiation(formats=(0,)))
        self.assertFalse(self.rtp.sendDtmf("1"))

    def test_rtcpReports(self) -> None:
        self.rtp.startMedia()
        for _ in range(8):
            self.reactor.advance(1)
        data, addr = self.rtcp.take()[0]  # every 2.5-7.5 s
        self.assertEqual(addr, ("10.0.0.1", 30001))
        report, sdes = parseRtcp(data)
        self.assertNotIsInstance(report, SenderReport)  # nothing sent yet: RR
        self.assertIsInstance(sdes, SourceDescription)
        self.rtp.sendAudio(TONE)
        self.deliver(1)
        for _ in range(8):
            self.reactor.advance(1)
        data, _ = self.rtcp.take()[-1]
        report = parseRtcp(data)[0]
        assert isinstance(report, SenderReport)
        self.assertEqual(report.packetCount, 1)
        self.assertEqual(report.reports[0].ssrc, 77)

    def test_mediaTimeoutInitial(self) -> None:
        self.rtp.startMedia()
        for _ in range(29):
            self.reactor.advance(1)
        self.assertEqual(self.owner.timeouts, [])
        self.reactor.advance(1)
        self.assertEqual(self.owner.timeouts, [30.0])

    def test_mediaTimeoutEstablished(self) -> None:
        self.rtp.startMedia()
        for i in range(5):
            self.deliver(i)
            self.reactor.advance(1)
        for _ in range(14):
            self.reactor.advance(1)
        self.assertEqual(self.owner.timeouts, [])
        self.reactor.advance(1)
        self.assertEqual(len(self.owner.timeouts), 1)

    def test_holdSuspendsTimeout(self) -> None:
        self.rtp.startMedia()
        self.rtp.configure(negotiation(direction="recvonly"))  # peer does not send
        for _ in range(60):
            self.reactor.advance(1)
        self.assertEqual(self.owner.timeouts, [])

    def test_closeReleases(self) -> None:
        self.rtp.startMedia()
        port = self.rtp.port
        self.rtp.close()
        self.assertNotIn(port, self.reactor.udpPorts)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.rtp.sendAudio(TONE)  # late ticks are harmless

    def test_malformedCounted(self) -> None:
        self.port.deliver(b"\x00" * 5, PEER)
        self.port.deliver(b"\x80\x00", PEER)
        self.deliver(1)
        self.port.deliver(b"\x90" + b"\x00" * 11, PEER)  # extension bit, truncated
        self.assertEqual(self.rtp.stats.malformed, 3)
        self.deliver(2, pt=96)
        self.assertEqual(self.rtp.stats.unexpectedPayload, 1)

    def test_hangupOnce(self) -> None:
        self.rtp.hangup("bye")
        self.rtp.hangup("again")
        self.assertEqual(self.owner.hangups, ["bye"])
        self.assertFalse(self.successResultOf(self.rtp.transfer("sip:x@y")))
