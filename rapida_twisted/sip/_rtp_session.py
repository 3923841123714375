# -*- test-case-name: tests.test_sip_rtp_session -*-
"""
One call's RTP and RTCP endpoint: the call session's L{ICallTransport}
for SIP.

Sending.  C{paced} is true: the call session sends exactly one frame per
20 ms tick of its pacer (the gateway's shared L{PacerGroup}), never a
burst.  C{needsSilence} is true as well: while the assistant is quiet the
session hands us G.711 silence and we send it.  Why comfort silence
rather than nothing: trunks and PBXs hang up calls after 30–60 s without
RTP, NAT bindings for the media close after a few idle seconds, and
receivers' jitter buffers behave best with a continuous stream; the cost
is that of a talking call, which capacity plans must assume anyway.
Sequence numbers grow by one per packet sent and timestamps by one
frame per tick whether or not a packet goes out (on hold, during a
clear), so they stay continuous and in step with real time.  The marker
bit is set on the first packet, on the first audio frame after a run of
idle silence (a talkspurt), after a gap (hold, resume, clear) and on the
first packet of each DTMF event.

Receiving.  Symmetric RTP (RFC 4961): we send to the address the SDP
gave until the first valid packet arrives, then latch to its source (NAT)
and count and ignore packets from anywhere else.  Audio goes through the
pure L{JitterBuffer} (reordering, duplicates, late packets), drained on
the same 20 ms tick as the send (the call session calls L{sendAudio}
exactly once per tick), so one timer serves both directions; a lost
packet's slot is concealed with silence.  RFC 4733 events become one
digit per event (L{DtmfReceiver}); L{sendDtmf} sends events in place of
audio frames, paced by the same tick.

RTCP (RTP port + 1): a compound SR (or RR before we send) with an SDES
CNAME about every 5 s (randomised, RFC 3550 §6.2), reception statistics
from L{ReceptionStatistics}.  Media inactivity (no RTP for
C{MediaTimeouts.initial} seconds after the call starts, or
C{MediaTimeouts.established} once media flowed) ends the call with a BYE;
the check is suspended while the peer does not send (hold).
"""

from __future__ import annotations

import random
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from zope.interface import implementer

from ..call._format import AudioFormat
from ..interfaces import ICallTransport
from ._ports import PortPair, RtpPortAllocator
from ._rtp import (
    DtmfPacket,
    DtmfReceiver,
    JitterBuffer,
    ReceiverReport,
    ReceptionStatistics,
    ReportBlock,
    RtcpParseError,
    RtpParseError,
    SenderReport,
    SourceDescription,
    buildRtcp,
    dtmfPackets,
    looksLikeRtcp,
    ntpFromUnix,
    packRtp,
    parseRtcp,
    parseRtp,
)

if TYPE_CHECKING:
    from ._sdp import AudioNegotiation

__all__ = ["DTMF_GAP_TICKS", "AfterSends", "MediaTimeouts", "RtpOwner", "RtpSession", "RtpStats"]

Addr = tuple[str, int]

#: the payload type of comfort noise (RFC 3389), ignored when received
_CN = 13

#: audio ticks between two DTMF events we send
DTMF_GAP_TICKS = 3


@dataclass(frozen=True, slots=True)
class MediaTimeouts:
    """
    RTP inactivity limits, seconds.

    @ivar initial: no RTP at all since the call started.
    @ivar established: no RTP since the last packet, once media flowed.
    @ivar check: how often inactivity is checked.
    @ivar rtcpInterval: the mean RTCP report interval.
    """

    initial: float = 30.0
    established: float = 15.0
    check: float = 1.0
    rtcpInterval: float = 5.0


@dataclass(slots=True)
class RtpStats:
    """
    One call's RTP counters.
    """

    packetsIn: int = 0
    packetsOut: int = 0
    bytesOut: int = 0
    concealed: int = 0
    foreign: int = 0
    malformed: int = 0
    unexpectedPayload: int = 0
    dtmfIn: int = 0
    dtmfOut: int = 0
    rtcpIn: int = 0
    rtcpOut: int = 0
    sendErrors: int = 0


class RtpOwner(Protocol):
    """
    What the RTP session tells its call.
    """

    def mediaTimeout(self, seconds: float) -> None:
        """
        No RTP for C{seconds}: end the call.
        """

    def localHangup(self, reason: str) -> None:
        """
        The call session hangs up.
        """


class _Rtp(DatagramProtocol):
    """
    The RTP port: hands datagrams to the session, never raises.
    """

    _log = Logger()
    noisy = False

    def __init__(self, session: RtpSession) -> None:
        self.session = session

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        try:
            self.session.rtpReceived(datagram, addr)
        except Exception:
            self._log.failure("RTP datagram from {peer} failed", peer=addr)


class _Rtcp(DatagramProtocol):
    """
    The RTCP port.
    """

    _log = Logger()
    noisy = False

    def __init__(self, session: RtpSession) -> None:
        self.session = session

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        try:
            self.session.rtcpReceived(datagram, addr)
        except Exception:
            self._log.failure("RTCP datagram from {peer} failed", peer=addr)


class AfterSends:
    """
    Work to run once the current timer slot's sends are out.

    The call sessions of a L{PacerGroup} are ticked one after the other in
    one timer firing; each tick sends a packet, then plays out received
    audio (decoding, resampling, the assistant).  Run inline, that work
    delays every later call's send, by an amount that varies with the
    load: pacing jitter.  Deferred here, every send of the slot goes out
    first, and the play-outs follow in one C{callLater(0)}.
    """

    _log = Logger()

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._work: list[Callable[[], object]] = []
        self._call: IDelayedCall | None = None

    def add(self, work: Callable[[], object]) -> None:
        """
        Run C{work} after the current slot.
        """
        self._work.append(work)
        if self._call is None:
            self._call = self._clock.callLater(0, self._run)

    def _run(self) -> None:
        self._call = None
        work, self._work = self._work, []
        for fn in work:
            try:
                fn()
            except Exception:
                self._log.failure("RTP play-out failed")

    def cancel(self) -> None:
        """
        Drop pending work (shutdown).
        """
        self._work.clear()
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()


@implementer(ICallTransport)
class RtpSession:
    """
    The RTP side of one call.

    @param clock: timers and timestamps.
    @param audioFormat: the wire format (G.711 at 8 kHz, 20 ms frames).
    @param payloadType: the RTP payload type of the audio we send.
    @param timeouts: inactivity limits and report interval.
    @param metrics: the gateway's metrics (or C{None}).
    @param jitterDepth: packets held before playout.
    @param afterSends: where play-out work waits for the slot's sends
        (inline when C{None}).

    @ivar owner: the call (L{RtpOwner}), set by it.
    @ivar port: the local RTP port once bound.
    @ivar stats: an L{RtpStats}.
    """

    _log = Logger()

    paced = True
    supportsMarks = False
    needsSilence = True

    def __init__(
        self,
        clock: IReactorTime,
        audioFormat: AudioFormat,
        payloadType: int,
        timeouts: MediaTimeouts | None = None,
        metrics: Any = None,
        jitterDepth: int = 3,
        afterSends: AfterSends | None = None,
    ) -> None:
        self._clock = clock
        self._after = afterSends
        self._playoutLater = self._playout
        self.timeouts = timeouts or MediaTimeouts()
        self._metrics = metrics
        self.owner: RtpOwner | None = None
        self.stats = RtpStats()
        self.port = 0
        self._ports: RtpPortAllocator | None = None
        self._pair: PortPair | None = None
        self._rtpTransport: Any = None
        self._rtcpTransport: Any = None
        self._sendto: Any = None
        self.setFormat(audioFormat, payloadType)
        # sending
        self.ssrc = secrets.randbits(32)
        self._seq = secrets.randbits(16)
        self._ts = secrets.randbits(32)
        self._marker = True
        self._lastWasIdle = False
        self._sending = True
        self._remote: Addr | None = None
        self._dtmfQueue: deque[tuple[DtmfPacket, ...]] = deque()
        self._dtmfCurrent: list[DtmfPacket] = []
        self._dtmfTs = 0
        self._dtmfGap = 0
        self._eventPt: int | None = None
        self.remoteRtcp: Addr | None = None
        # receiving
        self._latched: Addr | None = None
        self._latchedRtcp: Addr | None = None
        self._receiving = True
        self._remoteSsrc: int | None = None
        self._jitter = JitterBuffer(jitterDepth)
        self._credit = 0
        self._lastSize = audioFormat.frameBytes
        self._reception = ReceptionStatistics(8000)
        self._dtmf = DtmfReceiver()
        self._session: Any = None
        # housekeeping
        self._timer: IDelayedCall | None = None
        self._started = 0.0
        self._lastRx = 0.0
        self._seen = 0
        self._nextRtcp = 0.0
        self._closed = False
        self._hungUp = False

    # -- set-up -------------------------------------------------------------------

    def setFormat(self, audioFormat: AudioFormat, payloadType: int) -> None:
        """
        The codec (before the call session starts).
        """
        self.audioFormat = audioFormat
        self.payloadType = payloadType
        self._silenceFrame = audioFormat.silenceFrame
        self._silence = audioFormat.silence
        self._samples = audioFormat.frameBytes // audioFormat.sampleWidth

    def bind(self, ports: RtpPortAllocator) -> int:
        """
        Bind an RTP/RTCP port pair; returns the RTP port.

        @raise rapida_twisted.sip._ports.PortsExhausted: none free.
        """
        pair = ports.allocate(_Rtp(self), _Rtcp(self))
        self._ports = ports
        self._pair = pair
        self._rtpTransport = pair.rtp
        self._rtcpTransport = pair.rtcp
        self.port = pair.port
        # hot path, 50 packets a second each way: a Twisted udp.Port reads
        # until EAGAIN (an exception per packet when packets come one at a
        # time) and checks the address three times per write; one read per
        # wake-up (epoll is level-triggered: more data wakes us again) and
        # the socket's own sendto (targets are IP addresses already: from
        # the SDP, checked, or a packet's source) cost far less
        if hasattr(pair.rtp, "maxThroughput"):
            pair.rtp.maxThroughput = 1
        sock = getattr(pair.rtp, "socket", None)
        self._sendto = getattr(sock, "sendto", None)
        return pair.port

    def configure(self, negotiation: AudioNegotiation) -> None:
        """
        Apply an offer/answer outcome: where to send, the telephone-event
        payload type, the direction.  A new remote address restarts the
        latching.
        """
        remote = (negotiation.remoteAddress, negotiation.remotePort)
        if remote != self._remote:
            self._remote = remote
            self._latched = None
            self._latchedRtcp = None
            self._marker = True
        self.remoteRtcp = (negotiation.remoteAddress, negotiation.remoteRtcpPort)
        self._eventPt = negotiation.telephoneEvent
        sending = negotiation.sending and not _isNull(negotiation.remoteAddress)
        if sending and not self._sending:
            self._marker = True
        self._sending = sending
        self._receiving = negotiation.receiving and not negotiation.onHold

    def attach(self, session: Any) -> None:
        """
        Where received audio and DTMF go (the call session).
        """
        self._session = session

    def startMedia(self) -> None:
        """
        The call is established: inactivity and RTCP timers start.
        """
        if self._closed or self._timer is not None:
            return
        now = self._clock.seconds()
        self._started = self._lastRx = now
        self._seen = self.stats.packetsIn
        self._nextRtcp = now + self.timeouts.rtcpInterval * random.uniform(0.5, 1.5)
        self._timer = self._clock.callLater(self.timeouts.check, self._housekeeping)

    def close(self) -> None:
        """
        Stop the timers and release the ports (idempotent).
        """
        if self._closed:
            return
        self._closed = True
        self._session = None
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        if self._ports is not None and self._pair is not None:
            self._ports.release(self._pair)
        self._rtpTransport = self._rtcpTransport = self._sendto = None
        stats = self.stats
        self._log.debug(
            "RTP {port} closed: {packets_in} in, {packets_out} out, {lost} lost,"
            " {foreign} foreign, {malformed} malformed",
            port=self.port,
            packets_in=stats.packetsIn,
            packets_out=stats.packetsOut,
            lost=self._jitter.lost,
            foreign=stats.foreign,
            malformed=stats.malformed,
        )

    @property
    def jitterBuffer(self) -> JitterBuffer:
        """
        The receive jitter buffer (its counters).
        """
        return self._jitter

    @property
    def remote(self) -> Addr | None:
        """
        Where RTP goes now: the latched source, else the SDP address.
        """
        return self._latched or self._remote

    # -- ICallTransport ---------------------------------------------------------------

    def sendAudio(self, frame: bytes) -> None:
        """
        One 20 ms tick: send C{frame} (or the next DTMF event packet in
        its place), then play out one frame of received audio.
        """
        ts = self._ts
        self._ts = (ts + self._samples) & 0xFFFFFFFF
        transport = self._rtpTransport
        if self._sending and transport is not None:
            target = self._latched or self._remote
            if target is not None:
                current = self._dtmfCurrent
                if not current and self._dtmfQueue and not self._dtmfGap:
                    current = self._dtmfCurrent = list(self._dtmfQueue.popleft())
                    self._dtmfTs = ts
                if current:
                    event = current.pop(0)
                    payload, marker = event.payload, event.marker
                    pt = self._eventPt
                    assert pt is not None
                    stamp = self._dtmfTs
                    self.stats.dtmfOut += 1
                    if not current:
                        self._dtmfGap = DTMF_GAP_TICKS
                        self._marker = True  # audio resumes: a new talkspurt
                else:
                    if self._dtmfGap:
                        self._dtmfGap -= 1
                    payload, pt, stamp = frame, self.payloadType, ts
                    idle = frame is self._silenceFrame
                    marker = self._marker or (self._lastWasIdle and not idle)
                    self._marker = False
                    self._lastWasIdle = idle
                seq = self._seq
                self._seq = (seq + 1) & 0xFFFF
                packet = packRtp(pt, seq, stamp, self.ssrc, payload, marker)
                sendto = self._sendto
                try:
                    if sendto is not None:
                        sendto(packet, target)
                    else:
                        transport.write(packet, target)
                except OSError:
                    self.stats.sendErrors += 1
                else:
                    self.stats.packetsOut += 1
                    self.stats.bytesOut += len(payload)
        after = self._after
        if after is None:
            self._playout()
        else:
            after.add(self._playoutLater)

    def _playout(self) -> None:
        """
        Hand the call session one tick (20 ms) of received audio from the
        jitter buffer; a lost packet's slot becomes silence.
        """
        session = self._session
        if session is None:
            return
        jitter = self._jitter
        credit = self._credit + self._samples
        popped = False
        while credit > 0:
            lost = jitter.lost
            frame = jitter.pop()
            if frame is not None:
                payload = frame.payload
                if not payload:
                    continue  # a non-audio packet's slot (see _skip)
                self._lastSize = len(payload)
                credit -= len(payload)
                popped = True
                session.audioReceived(payload)
            elif jitter.lost != lost:
                self.stats.concealed += 1
                credit -= self._lastSize
                popped = True
                session.audioReceived(self._silence * self._lastSize)
            else:
                break
        if not popped and credit > self._samples:
            credit = self._samples
        self._credit = credit

    def sendMark(self, name: str) -> None:
        """
        RTP has no marks (C{supportsMarks} is false).
        """

    def sendClear(self) -> None:
        """
        Nothing is buffered below the session: the next audio starts a
        new talkspurt.
        """
        self._marker = True
        self._dtmfQueue.clear()

    def sendDtmf(self, digit: str) -> bool:
        """
        Queue the RFC 4733 packets of C{digit}: sent one per tick in place
        of audio, each event with the timestamp of its start, events
        C{DTMF_GAP_TICKS} ticks apart.  C{False} when the peer did not
        negotiate telephone-event, we do not send (hold), or C{digit} is
        not a DTMF character.
        """
        if self._eventPt is None or not self._sending:
            return False
        try:
            packets = dtmfPackets(digit, clockRate=8000)
        except ValueError:
            return False
        self._dtmfQueue.append(packets)
        return True

    def transfer(self, target: str) -> Deferred[bool]:
        """
        Transfers are not supported on SIP calls (no REFER yet).
        """
        return defer.succeed(False)

    def hangup(self, reason: str) -> None:
        """
        The call session hangs up: the call sends BYE.
        """
        if self._hungUp:
            return
        self._hungUp = True
        owner = self.owner
        if owner is not None:
            owner.localHangup(reason)

    # -- receiving -------------------------------------------------------------------

    def rtpReceived(self, data: bytes, addr: Addr) -> None:
        """
        One datagram on the RTP port.
        """
        latched = self._latched
        if latched != addr:
            if latched is not None:
                self.stats.foreign += 1
                return
            if len(data) < 12 or data[0] >> 6 != 2:
                self.stats.malformed += 1
                return
            if looksLikeRtcp(data):
                self.rtcpReceived(data, addr)
                return
            self._latched = addr
            self._log.debug("RTP {port} latched to {peer}", port=self.port, peer=addr)
        try:
            packet = parseRtp(data)
        except RtpParseError:
            self.stats.malformed += 1
            return
        pt = packet.payloadType
        if pt == self.payloadType:
            self.stats.packetsIn += 1
            if not self._receiving:
                return
            ssrc = packet.ssrc
            if ssrc != self._remoteSsrc:
                if self._remoteSsrc is not None:
                    self._jitter.reset()
                    self._reception = ReceptionStatistics(8000)
                self._remoteSsrc = ssrc
            self._reception.update(packet.sequence, packet.timestamp, self._clock.seconds())
            self._jitter.push(packet.sequence, packet.timestamp, packet.payload)
        elif pt == self._eventPt and pt is not None:
            self.stats.packetsIn += 1
            try:
                detected = self._dtmf.receive(packet)
            except RtpParseError:
                self.stats.malformed += 1
                return
            self._skip(packet.sequence, packet.timestamp, packet.ssrc)
            if detected is not None:
                self.stats.dtmfIn += 1
                self._log.info(
                    "DTMF {digit} by RFC 4733 on RTP {port}", digit=detected.digit, port=self.port
                )
                session = self._session
                if session is not None:
                    session.dtmfReceived(detected.digit)
        elif pt == _CN:
            self.stats.packetsIn += 1
            self._skip(packet.sequence, packet.timestamp, packet.ssrc)
        elif 72 <= pt <= 76:
            self.rtcpReceived(data, addr)  # RTCP multiplexed on the RTP port
        else:
            self.stats.unexpectedPayload += 1

    def _skip(self, sequence: int, timestamp: int, ssrc: int) -> None:
        """
        A packet of the audio source's sequence space that is not audio
        (an RFC 4733 event, comfort noise): an empty entry in the jitter
        buffer, which playout steps over without spending a tick.  Some
        senders (baresip) interleave events with audio, others send them
        in its place; either way the sequence gap is not a loss, and
        concealing it would add 20 ms of delay per packet.
        """
        if self._receiving and ssrc == self._remoteSsrc:
            self._reception.update(sequence, timestamp, self._clock.seconds())
            self._jitter.push(sequence, timestamp, b"")

    def rtcpReceived(self, data: bytes, addr: Addr) -> None:
        """
        One datagram on the RTCP port (or multiplexed on the RTP port).
        """
        latched = self._latched
        if latched is not None and addr[0] != latched[0]:
            self.stats.foreign += 1
            return
        try:
            packets = parseRtcp(data)
        except RtcpParseError:
            self.stats.malformed += 1
            return
        self.stats.rtcpIn += 1
        if self._latchedRtcp is None:
            self._latchedRtcp = addr
        now = self._clock.seconds()
        for packet in packets:
            if isinstance(packet, SenderReport) and packet.ssrc == self._remoteSsrc:
                self._reception.senderReportReceived(packet.ntpTimestamp, now)

    # -- timers ------------------------------------------------------------------------

    def _housekeeping(self) -> None:
        self._timer = None
        if self._closed:
            return
        now = self._clock.seconds()
        timeouts = self.timeouts
        if self.stats.packetsIn != self._seen:
            self._seen = self.stats.packetsIn
            self._lastRx = now
        elif not self._receiving:
            self._lastRx = now  # on hold: the peer does not send
        else:
            limit = timeouts.established if self._seen else timeouts.initial
            idle = now - self._lastRx
            if idle >= limit:
                owner = self.owner
                if owner is not None:
                    owner.mediaTimeout(round(idle, 1))
                return
        if now >= self._nextRtcp:
            self._nextRtcp = now + timeouts.rtcpInterval * random.uniform(0.5, 1.5)
            self._sendReport(now)
        if not self._closed:
            self._timer = self._clock.callLater(timeouts.check, self._housekeeping)

    def _sendReport(self, now: float) -> None:
        transport = self._rtcpTransport
        if transport is None:
            return
        target = self._latchedRtcp
        if target is None:
            rtcp = self.remoteRtcp
            latched = self._latched
            if rtcp is None:
                return
            target = (latched[0], rtcp[1]) if latched is not None else rtcp
        blocks: tuple[ReportBlock, ...] = ()
        if self._remoteSsrc is not None:
            blocks = (self._reception.reportBlock(self._remoteSsrc, now),)
        report: SenderReport | ReceiverReport
        if self.stats.packetsOut:
            report = SenderReport(
                self.ssrc,
                ntpFromUnix(now),
                self._ts,
                self.stats.packetsOut,
                self.stats.bytesOut,
                blocks,
            )
        else:
            report = ReceiverReport(self.ssrc, blocks)
        data = buildRtcp((report, SourceDescription.cname(self.ssrc, f"rapida-{self.ssrc:08x}")))
        try:
            transport.write(data, target)
        except OSError:
            self.stats.sendErrors += 1
        else:
            self.stats.rtcpOut += 1


def _isNull(address: str) -> bool:
    return address in ("0.0.0.0", "::")
