# -*- test-case-name: tests.test_sip_rtp_session -*-
"""
RTP/RTCP port pairs from the C{--rtp-ports} range: an even port for RTP
and the next one for RTCP, bound per call on the L{IReactorUDP} the
allocator holds, released (C{stopListening}) at hang-up.

The search starts after the pair handed out last (a rotating cursor), so
a pair just released is the last to be reused and stray packets of an
ended call rarely reach a new one.  A pair the system refuses (a port in
use by another process) is skipped; when no pair can be bound,
L{PortsExhausted} is raised (the SIP core answers 503).
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IReactorUDP
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

__all__ = ["PortPair", "PortsExhausted", "RtpPortAllocator"]


class PortsExhausted(Exception):
    """
    No RTP/RTCP pair of the range could be bound.
    """


@dataclass(slots=True)
class PortPair:
    """
    One bound pair: C{port} (RTP, even) and C{port + 1} (RTCP).
    """

    port: int
    rtp: IListeningPort
    rtcp: IListeningPort

    @property
    def rtcpPort(self) -> int:
        """
        The RTCP port (C{port + 1}).
        """
        return self.port + 1


class RtpPortAllocator:
    """
    Hands out even RTP ports (with RTCP on +1) from C{low..high}.

    @param reactor: binds the ports.
    @param low: first port of the range (even).
    @param high: last port of the range (inclusive).
    @param interface: the address to bind (C{""} for all).
    """

    _log = Logger()

    def __init__(self, reactor: IReactorUDP, low: int, high: int, interface: str = "") -> None:
        """
        @raise ValueError: the range holds no pair.
        """
        if low % 2:
            low += 1
        if high < low + 1:
            raise ValueError(f"the RTP range {low}-{high} holds no even/odd port pair")
        self._reactor = reactor
        self.low = low
        self.high = high
        self.interface = interface
        self.capacity = (high - low + 1) // 2
        self._cursor = 0
        self._inUse: dict[int, PortPair] = {}

    @property
    def inUse(self) -> int:
        """
        How many pairs are bound now.
        """
        return len(self._inUse)

    def allocate(self, rtp: DatagramProtocol, rtcp: DatagramProtocol) -> PortPair:
        """
        Bind the next free pair: C{rtp} on the even port, C{rtcp} on +1.

        @raise PortsExhausted: every pair is in use or refused.
        """
        reactor = self._reactor
        capacity = self.capacity
        for _ in range(capacity):
            index = self._cursor
            self._cursor = (index + 1) % capacity
            port = self.low + 2 * index
            if port in self._inUse:
                continue
            try:
                rtpPort = reactor.listenUDP(port, rtp, self.interface, 2048)
            except CannotListenError:
                self._log.debug("RTP port {port} refused, skipped", port=port)
                continue
            try:
                rtcpPort = reactor.listenUDP(port + 1, rtcp, self.interface, 2048)
            except CannotListenError:
                rtpPort.stopListening()
                self._log.debug("RTCP port {port} refused, skipped", port=port + 1)
                continue
            pair = self._inUse[port] = PortPair(port, rtpPort, rtcpPort)
            return pair
        raise PortsExhausted(
            f"no free RTP port pair in {self.low}-{self.high} ({len(self._inUse)} in use)"
        )

    def release(self, pair: PortPair) -> None:
        """
        Stop listening on both ports of C{pair} (idempotent).
        """
        if self._inUse.get(pair.port) is not pair:
            return
        del self._inUse[pair.port]
        pair.rtp.stopListening()
        pair.rtcp.stopListening()

    def releaseAll(self) -> None:
        """
        Shutdown: release every pair.
        """
        for pair in list(self._inUse.values()):
            self.release(pair)
