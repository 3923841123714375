"""
An in-memory UDP reactor for unit tests: a L{task.Clock} that implements
L{IReactorUDP}, handing out L{MemoryDatagramTransport}s that record what
is written to them (no sockets).

Modelled on the idea of Twisted's names tests: the transport records
C{(datagram, addr)}; the reactor keeps C{udpPorts} by port number, can be
told that some ports are in use (C{busy}) and gives out ephemeral ports
for port 0.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IReactorUDP, IUDPTransport
from twisted.internet.protocol import AbstractDatagramProtocol
from twisted.internet.task import Clock
from zope.interface import implementer
from zope.interface.verify import verifyClass


@implementer(IUDPTransport, IListeningPort)
class MemoryDatagramTransport:
    """
    One bound UDP port in memory.

    @ivar written: every C{(data, addr)} written, in order.
    @ivar listening: False after C{stopListening}.
    """

    def __init__(self, reactor: MemoryUDPReactor, port: int, protocol: Any, interface: str) -> None:
        self.reactor = reactor
        self.port = port
        self.protocol = protocol
        self.interface = interface or "0.0.0.0"
        self.written: list[tuple[bytes, tuple[str, int]]] = []
        self.listening = True
        self.broadcast = False
        self.failWrites: type[Exception] | None = None

    def write(self, packet: bytes, addr: tuple[str, int] | None = None) -> None:
        if not self.listening:
            raise AssertionError(f"write on closed port {self.port}")
        if self.failWrites is not None:
            raise self.failWrites("simulated send failure")
        assert isinstance(packet, bytes), type(packet)
        assert addr is not None
        reactor = self.reactor
        if reactor.routing and addr[1] in reactor.udpPorts:
            # loopback: delivered on the next clock step, from our address
            source = (self.interface if self.interface != "0.0.0.0" else "127.0.0.1", self.port)
            reactor.callLater(0, reactor._route, packet, addr, source)
            return
        self.written.append((packet, addr))

    def connect(self, host: str, port: int) -> None:
        raise NotImplementedError("connected UDP is not used")

    def getHost(self) -> IPv4Address:
        return IPv4Address("UDP", self.interface, self.port)

    def startListening(self) -> None:
        pass

    def stopListening(self) -> None:
        if self.listening:
            self.listening = False
            self.reactor.udpPorts.pop(self.port, None)
            self.protocol.doStop()

    def setBroadcastAllowed(self, enabled: bool) -> None:
        self.broadcast = enabled

    def getBroadcastAllowed(self) -> bool:
        return self.broadcast

    # helpers for tests

    def deliver(self, data: bytes, addr: tuple[str, int]) -> None:
        """
        A datagram arrives from C{addr}.
        """
        assert self.listening, f"port {self.port} is closed"
        self.protocol.datagramReceived(data, addr)

    def take(self) -> list[tuple[bytes, tuple[str, int]]]:
        """
        What was written since the last C{take}.
        """
        out, self.written = self.written, []
        return out


@implementer(IReactorUDP)
class MemoryUDPReactor(Clock):
    """
    A clock that can bind UDP ports in memory.

    @ivar udpPorts: bound ports by number.
    @ivar busy: port numbers that fail with L{CannotListenError}.
    @ivar routing: when true, a datagram written to one of our ports is
        delivered to it on the next clock step (a loopback network).
    """

    def __init__(self, routing: bool = False) -> None:
        super().__init__()
        #: deliver datagrams between our own ports (by port number)
        self.routing = routing
        self.udpPorts: dict[int, MemoryDatagramTransport] = {}
        self.busy: set[int] = set()
        self.listenCalls = 0
        self._ephemeral = 40000

    def _route(self, packet: bytes, addr: tuple[str, int], source: tuple[str, int]) -> None:
        port = self.udpPorts.get(addr[1])
        if port is not None:
            port.protocol.datagramReceived(packet, source)

    def listenUDP(
        self,
        port: int,
        protocol: AbstractDatagramProtocol,
        interface: str = "",
        maxPacketSize: int = 8192,
    ) -> MemoryDatagramTransport:
        self.listenCalls += 1
        if port == 0:
            while self._ephemeral in self.udpPorts or self._ephemeral in self.busy:
                self._ephemeral += 1
            port = self._ephemeral
        if port in self.busy or port in self.udpPorts:
            raise CannotListenError(interface, port, OSError(98, "Address already in use"))
        transport = MemoryDatagramTransport(self, port, protocol, interface)
        self.udpPorts[port] = transport
        protocol.makeConnection(transport)
        return transport


verifyClass(IUDPTransport, MemoryDatagramTransport)
verifyClass(IListeningPort, MemoryDatagramTransport)
verifyClass(IReactorUDP, MemoryUDPReactor)


# --- SIP request text for tests -------------------------------------------------


def sipRequest(
    method: str,
    uri: str = "sip:echo@127.0.0.1:5090",
    *,
    branch: str = "z9hG4bKtest1",
    sentBy: str = "10.0.0.1:5060",
    rport: bool = False,
    callId: str = "call-1@test",
    fromTag: str = "ft1",
    toTag: str | None = None,
    cseq: int = 1,
    cseqMethod: str | None = None,
    contact: str | None = "<sip:alice@10.0.0.1:5060>",
    body: bytes = b"",
    contentType: str | None = None,
    extra: tuple[tuple[str, str], ...] = (),
) -> bytes:
    """
    The wire bytes of a well-formed request, with knobs for what tests vary.
    """
    via = f"SIP/2.0/UDP {sentBy};branch={branch}" + (";rport" if rport else "")
    to = "<sip:echo@127.0.0.1>" + (f";tag={toTag}" if toTag else "")
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: {via}",
        "Max-Forwards: 70",
        f"From: <sip:alice@10.0.0.1>;tag={fromTag}",
        f"To: {to}",
        f"Call-ID: {callId}",
        f"CSeq: {cseq} {cseqMethod or method}",
    ]
    if contact is not None:
        lines.append(f"Contact: {contact}")
    for name, value in extra:
        lines.append(f"{name}: {value}")
    if contentType is not None:
        lines.append(f"Content-Type: {contentType}")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def sdpOffer(
    port: int = 30000,
    address: str = "10.0.0.1",
    formats: tuple[int, ...] = (0, 8, 101),
    direction: str | None = None,
    version: int = 1,
    ptime: int | None = 20,
) -> bytes:
    """
    An SDP offer with one audio stream of the given payload types.
    """
    names = {
        0: "PCMU/8000",
        8: "PCMA/8000",
        9: "G722/8000",
        18: "G729/8000",
        101: "telephone-event/8000",
    }
    lines = [
        "v=0",
        f"o=alice 42 {version} IN IP4 {address}",
        "s=-",
        f"c=IN IP4 {address}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {' '.join(map(str, formats))}",
    ]
    lines += [f"a=rtpmap:{pt} {names[pt]}" for pt in formats]
    if 101 in formats:
        lines.append("a=fmtp:101 0-16")
    if ptime is not None:
        lines.append(f"a=ptime:{ptime}")
    if direction is not None:
        lines.append(f"a={direction}")
    return ("\r\n".join(lines) + "\r\n").encode()
