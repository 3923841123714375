# -*- test-case-name: tests.test_sip_server -*-
"""
The SIP server's public face: the UDP adapter and the service.

L{SipDatagramProtocol} is thin: it drops what the core's guards refuse,
parses each datagram (L{parseMessage}), hands parse failures and messages
to the L{SipCore}, and never lets an exception out of
C{datagramReceived}.  L{sipService} wires the core, the RTP port
allocator and C{internet.UDPServer} into one service for C{tap}.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.application import internet, service
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from ._codec import SipParseError, parseMessage
from ._core import ALLOW, SipCore
from ._limits import Throttle
from ._ports import RtpPortAllocator
from ._rtp_session import MediaTimeouts
from ._txn import Addr, TimerValues

__all__ = ["ALLOW", "MediaTimeouts", "SipCore", "SipDatagramProtocol", "TimerValues", "sipService"]


class SipDatagramProtocol(DatagramProtocol):
    """
    SIP over UDP: one datagram, one message.

    @ivar core: the L{SipCore} messages go to.
    @ivar sendErrors: writes the OS refused.
    """

    _log = Logger()

    def __init__(self, core: SipCore) -> None:
        self.core = core
        self.sendErrors = 0
        self._throttle = Throttle(core.clock)

    #: kernel receive buffer asked for: a burst of INVITEs (hundreds at
    #: once from a trunk) must queue, not be dropped and resent 500 ms later
    receiveBuffer = 4 * 1024 * 1024

    def startProtocol(self) -> None:
        sock = getattr(self.transport, "socket", None)
        if sock is None:
            return
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receiveBuffer)
        except OSError as e:
            self._log.warn("SIP socket receive buffer left as is: {why}", why=str(e))

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        """
        Guard, parse, dispatch; nothing escapes.
        """
        core = self.core
        try:
            if not core.admit(addr):
                return
            if not datagram.strip(b"\r\n"):
                return  # CRLF keep-alive (RFC 5626 §4.4.1)
            try:
                message = parseMessage(datagram)
            except SipParseError as e:
                core.parseErrorReceived(e, self, addr)
                return
            core.messageReceived(message, self, addr)
        except Exception:
            self._log.failure("SIP datagram from {peer} failed", peer=f"{addr[0]}:{addr[1]}")

    def sendDatagram(self, data: bytes, addr: Addr) -> None:
        """
        Send one message (a refused write is counted and logged, throttled).
        """
        transport = self.transport
        if transport is None:
            return
        try:
            transport.write(data, addr)
        except OSError as e:
            self.sendErrors += 1
            count = self._throttle.due(addr[0])
            if count:
                self._log.warn(
                    "SIP send to {peer} failed: {why} ({count})",
                    peer=f"{addr[0]}:{addr[1]}",
                    why=str(e),
                    count=count,
                )


class _CoreService(service.Service):
    """
    Stops the core (BYE to every call, ports released) before the SIP
    port closes: it is added after the L{internet.UDPServer}, and a
    MultiService stops its children in reverse order.
    """

    def __init__(self, core: SipCore, udp: internet.UDPServer) -> None:
        self.core = core
        self.udp = udp

    def startService(self) -> None:
        super().startService()
        bound = getattr(self.udp, "_port", None)
        if self.core.port == 0 and bound is not None:
            # bound to an ephemeral port: Contact and Via need the real one
            self.core.port = bound.getHost().port

    def stopService(self) -> None:
        super().stopService()
        self.core.stop()


def sipService(
    gateway: Any,
    reactor: Any,
    port: int,
    interface: str = "",
    rtpPorts: tuple[int, int] = (10000, 10999),
    advertise: str | None = None,
    timers: TimerValues | None = None,
    mediaTimeouts: MediaTimeouts | None = None,
) -> service.MultiService:
    """
    The SIP listener as a service: a L{SipCore} with an RTP allocator on
    C{rtpPorts} (bound on C{interface}), served by
    C{internet.UDPServer(port, ...)} on C{reactor}.  The core is the
    service's C{core} attribute.
    """
    ports = RtpPortAllocator(reactor, rtpPorts[0], rtpPorts[1], interface)
    kw: dict[str, Any] = {}
    if timers is not None:
        kw["timers"] = timers
    core = SipCore(
        reactor,
        gateway,
        ports,
        port=port,
        interface=interface,
        advertise=advertise,
        mediaTimeouts=mediaTimeouts,
        **kw,
    )
    top = service.MultiService()
    top.setName("sip")
    udp = internet.UDPServer(port, SipDatagramProtocol(core), interface=interface, reactor=reactor)
    udp.setServiceParent(top)
    _CoreService(core, udp).setServiceParent(top)
    top.core = core  # type: ignore[attr-defined]
    return top
