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
