# -*- test-case-name: tests.test_sip_server -*-
"""
A minimal SIP user agent client with RTP, for the simulator
(C{rapida-sim call|load sip}), benchmarks and tests.

It places calls (INVITE with an SDP offer of PCMU, PCMA and
telephone-event; digest authentication when challenged and credentials
are given), ACKs the 2xx (again for each retransmission), sends audio
paced at one 20 ms frame per tick on a shared L{PacerGroup}, sends DTMF
as RFC 4733 events (SIP INFO when the answer has no telephone-event),
records what it hears, answers the server's BYE, OPTIONS and INFO, and
hangs up with BYE (or CANCEL before the answer).

A caller with its own clock (C{rapida-sim}'s shared ticker) places the
call with C{paced=False} and calls L{UacCall.sendFrame} once per 20 ms
with the payload to send, and takes each audio packet as it arrives with
C{onAudio(now, sequence, payload)}.

Usage (on any reactor with time and UDP)::

    uac = UserAgentClient(reactor, host="127.0.0.1")
    uac.start()
    call = uac.call("sip:echo@127.0.0.1:5090", source=pcm8k)
    await call.answered            # fails with CallFailed(code, reason)
    call.sendDtmf("42#")
    ...
    await call.hangup()
    pcm = call.heard()             # 16-bit PCM, 8 kHz, in sequence order
    print(call.stats.lost, call.stats.jitterP99())
    await uac.stop()
"""

from __future__ import annotations

import secrets
from array import array
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from ..media.g711 import ALAW, ULAW, G711Law
from ..media.pacer import PacerGroup
from ._codec import (
    SipParseError,
    SipRequest,
    SipResponse,
    SipURI,
    newBranch,
    newCallId,
    newTag,
    parseMessage,
    parseURI,
    responseFor,
)
from ._dialog import Dialog, DialogError
from ._digest import DigestParseError, buildAuthorization, chooseChallenge
from ._rtp import DtmfPacket, dtmfPackets, packRtp, parseRtp
from ._sdp import (
    PCMA,
    PCMU,
    AudioNegotiation,
    SdpError,
    SessionDescription,
    buildOffer,
    negotiateAnswer,
    parseSdp,
)
from ._txn import (
    DEFAULT_TIMERS,
    Addr,
    ClientTransaction,
    InviteClientTransaction,
    NonInviteClientTransaction,
    TimerValues,
    TransactionTimeout,
    clientKey,
)

__all__ = ["AudioListener", "CallFailed", "UacCall", "UacStats", "UserAgentClient"]

_CODECS: Final = {"PCMU": PCMU, "PCMA": PCMA}
_LAWS: Final = {"PCMU": ULAW, "PCMA": ALAW}
FRAME: Final = 160  # samples per 20 ms at 8 kHz

#: C{onAudio(arrival time, sequence number extended to 32 bits, payload)}.
AudioListener = Callable[[float, int, bytes], object]


class CallFailed(Exception):
    """
    The call was not answered: C{code} (0 for a timeout or a bad answer)
    and C{reason}.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason


@dataclass
class UacStats:
    """
    One call's media counters.

    @ivar arrivals: the arrival time of every audio packet received.
    """

    packetsSent: int = 0
    packetsReceived: int = 0
    duplicates: int = 0
    dtmfSent: int = 0
    arrivals: array = field(default_factory=lambda: array("d"))
    _first: int | None = None
    _highest: int = 0

    @property
    def expected(self) -> int:
        """
        Audio packets expected from the sequence numbers seen.
        """
        if self._first is None:
            return 0
        return self._highest - self._first + 1

    @property
    def lost(self) -> int:
        """
        Expected minus received (duplicates not counted).
        """
        return max(0, self.expected - (self.packetsReceived - self.duplicates))

    def intervals(self) -> np.ndarray:
        """
        Inter-arrival times of the audio packets, seconds.
        """
        times = np.frombuffer(self.arrivals, dtype=np.float64)
        return np.diff(times) if len(times) > 1 else np.zeros(0)

    def jitterP99(self, interval: float = 0.020) -> float:
        """
        The 99th percentile of |inter-arrival - C{interval}|, seconds.
        """
        deltas = self.intervals()
        if not len(deltas):
            return 0.0
        return float(np.percentile(np.abs(deltas - interval), 99))


class _Rtp(DatagramProtocol):
    noisy = False

    def __init__(self, call: UacCall) -> None:
        self.call = call

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.call._rtpReceived(datagram)


class UacCall:
    """
    One call placed by a L{UserAgentClient}.

    @ivar answered: fires with the call once ACKed, or fails with
        L{CallFailed}.
    @ivar ended: fires with the reason when the call is over.
    @ivar codec: C{"PCMU"} or C{"PCMA"} once answered.
    @ivar provisional: the 1xx codes received.
    """

    _log = Logger()

    def __init__(
        self,
        uac: UserAgentClient,
        target: SipURI,
        peer: Addr,
        codecs: Sequence[str],
        source: bytes,
        record: bool,
        paced: bool = True,
        onAudio: AudioListener | None = None,
    ) -> None:
        self.uac = uac
        self.target = target
        self.peer = peer
        self.callId = newCallId(uac.host)
        self.tag = newTag()
        self.state = "calling"
        self.codec = ""
        self.provisional: list[int] = []
        self.answered: Deferred[UacCall] = Deferred()
        self.ended: Deferred[str] = Deferred()
        self.stats = UacStats()
        self.dialog: Dialog | None = None
        self.negotiation: AudioNegotiation | None = None
        self._codecs = [_CODECS[c.upper()] for c in codecs]
        self._record = record
        self._paced = paced
        self._onAudio = onAudio
        self._heard: dict[int, bytes] = {}
        self._cseq = 1
        self._invite: SipRequest | None = None
        self._inviteTxn: InviteClientTransaction | None = None
        self._ack: bytes | None = None
        self._authTried = False
        self._offer: SessionDescription | None = None
        self._law: G711Law = ULAW
        self._silence = ULAW.silence * FRAME
        self._source = np.frombuffer(source, np.int16) if source else np.zeros(0, np.int16)
        self._sourcePos = 0
        self._encoded: bytes | None = None
        self._dtmf: deque[tuple[DtmfPacket, ...]] = deque()
        self._dtmfCurrent: list[DtmfPacket] = []
        self._dtmfTs = 0
        self._ssrc = secrets.randbits(32)
        self._seq = secrets.randbits(16)
        self._ts = secrets.randbits(32)
        self._first = True
        self._pacer = uac.pacers.pacer(self._tick)
        self._rtp = uac.reactor.listenUDP(0, _Rtp(self), uac.host)
        self.rtpPort: int = self._rtp.getHost().port

    # -- signalling ------------------------------------------------------------

    def _sendInvite(self, authorization: str | None = None) -> None:
        uac = self.uac
        offer = self._offer = buildOffer(
            localAddress=uac.host,
            localPort=self.rtpPort,
            sessionId=secrets.randbelow(2**31),
            sessionVersion=1,
            codecs=self._codecs,
        )
        headers = [
            ("Via", f"SIP/2.0/UDP {uac.sentBy};branch={newBranch()};rport"),
            ("Max-Forwards", "70"),
            ("From", f"<sip:{uac.user}@{uac.sentBy}>;tag={self.tag}"),
            ("To", f"<{self.target.toString()}>"),
            ("Call-ID", self.callId),
            ("CSeq", f"{self._cseq} INVITE"),
            ("Contact", f"<sip:{uac.user}@{uac.sentBy}>"),
            ("User-Agent", uac.userAgent),
        ]
        if authorization is not None:
            headers.append(("Authorization", authorization))
        headers.append(("Content-Type", "application/sdp"))
        invite = self._invite = SipRequest("INVITE", self.target, headers, offer.toBytes())
        self._inviteTxn = uac._clientTxn(
            InviteClientTransaction, invite, self.peer, self._inviteResponse
        )
        self._inviteTxn.result.addErrback(self._inviteFailed)

    def _inviteFailed(self, failure: Any) -> None:
        if failure.check(TransactionTimeout):
            self._fail(0, "no answer")
        elif not failure.check(defer.CancelledError):
            self._fail(0, failure.getErrorMessage())

    def _inviteResponse(self, response: SipResponse) -> None:
        code = response.code
        if code < 200:
            self.provisional.append(code)
            if code in (180, 183) and self.state == "calling":
                self.state = "ringing"
            return
        if code >= 300:
            if code in (401, 407) and not self._authTried and self.uac.username:
                self._authTried = True
                self._retryWithAuth(response)
                return
            self._fail(code, response.reason)
            return
        if self.state == "established" or self.state == "ended":
            if self._ack is not None:
                self.uac._send(self._ack, self.peer)  # a retransmitted 2xx
            return
        assert self._invite is not None and self._offer is not None
        try:
            dialog = Dialog.fromResponse(self._invite, response, self.peer)
            negotiation = negotiateAnswer(self._offer, parseSdp(response.body))
        except (DialogError, SdpError, SipParseError) as e:
            self._fail(0, f"bad 200: {e}")
            return
        self.dialog = dialog
        self.negotiation = negotiation
        self.codec = negotiation.codec.name.upper()
        self._ack = dialog.request("ACK", self.uac.sentBy, cseq=self._invite.cseq.number).toBytes()
        self.uac._send(self._ack, self.peer)
        self.state = "established"
        self.uac._dialogs[dialog.id] = self
        law = _LAWS[self.codec]
        self._law = law
        self._encoded = law.encode(self._source.tobytes()) if len(self._source) else None
        self._silence = law.silence * FRAME
        if self._paced:
            self._pacer.start()
        self.answered.callback(self)

    def _retryWithAuth(self, response: SipResponse) -> None:
        header = "WWW-Authenticate" if response.code == 401 else "Proxy-Authenticate"
        try:
            challenge = chooseChallenge(response.getAll(header))
        except DigestParseError as e:
            self._fail(response.code, f"bad challenge: {e}")
            return
        uac = self.uac
        assert uac.username is not None and uac.password is not None
        credentials = buildAuthorization(
            challenge,
            method="INVITE",
            uri=self.target.toString(),
            username=uac.username,
            password=uac.password,
        )
        self._cseq += 1
        self._sendInvite(credentials.toHeaderValue())

    def _fail(self, code: int, reason: str) -> None:
        if self.state in ("ended",):
            return
        self._end(f"failed {code} {reason}")
        if not self.answered.called:
            self.answered.errback(CallFailed(code, reason))

    def requestReceived(self, request: SipRequest, addr: Addr) -> None:
        """
        An in-dialog request from the server.
        """
        method = request.method
        if method == "ACK":
            return
        if method == "BYE":
            self.uac._respond(request, 200, addr)
            self._end("remote_bye")
            return
        if method == "INVITE" and request.body:
            # a re-INVITE: answer with what we have (no hold support)
            self.uac._respond(request, 488, addr)
            return
        self.uac._respond(request, 200, addr)

    def hangup(self) -> Deferred[SipResponse | None]:
        """
        End the call: BYE when established, CANCEL while ringing.  Fires
        with the final response (or C{None} when there was nothing to send).
        """
        dialog = self.dialog
        if self.state == "established" and dialog is not None:
            self._end("local_bye")
            bye = dialog.request("BYE", self.uac.sentBy)
            txn = self.uac._clientTxn(NonInviteClientTransaction, bye, self.peer, None)
            return self._result(txn)
        if self.state in ("calling", "ringing") and self._invite is not None:
            invite = self._invite
            cancel = SipRequest(
                "CANCEL",
                invite.uri,
                [
                    ("Via", invite.getAll("Via")[0]),
                    ("Max-Forwards", "70"),
                    ("From", invite.get("From") or ""),
                    ("To", invite.get("To") or ""),
                    ("Call-ID", self.callId),
                    ("CSeq", f"{invite.cseq.number} CANCEL"),
                ],
            )
            txn = self.uac._clientTxn(NonInviteClientTransaction, cancel, self.peer, None)
            return self._result(txn)
        return defer.succeed(None)

    def _result(self, txn: ClientTransaction) -> Deferred[SipResponse | None]:
        out: Deferred[SipResponse | None] = Deferred()
        txn.result.addCallbacks(out.callback, lambda f: out.callback(None))
        return out

    def _end(self, reason: str) -> None:
        if self.state == "ended":
            return
        self.state = "ended"
        self._pacer.stop()
        if self.dialog is not None:
            self.uac._dialogs.pop(self.dialog.id, None)
        self.uac._calls.discard(self)
        self._rtp.stopListening()
        self.ended.callback(reason)

    # -- media -----------------------------------------------------------------------

    def play(self, pcm: bytes) -> None:
        """
        Replace the source: 16-bit PCM at 8 kHz, looped.
        """
        self._source = np.frombuffer(pcm, np.int16)
        self._sourcePos = 0
        if self.codec:
            self._encoded = self._law.encode(pcm) if pcm else None

    def sendDtmf(self, digits: str) -> None:
        """
        Send DTMF: RFC 4733 events when negotiated (paced with the audio,
        in its place), else one SIP INFO per digit.
        """
        negotiation = self.negotiation
        if negotiation is None or self.dialog is None:
            return
        for digit in digits:
            if negotiation.telephoneEvent is not None:
                self._dtmf.append(dtmfPackets(digit))
            else:
                info = self.dialog.request(
                    "INFO",
                    self.uac.sentBy,
                    body=f"Signal={digit}\r\nDuration=160\r\n".encode(),
                    contentType="application/dtmf-relay",
                )
                self.uac._clientTxn(NonInviteClientTransaction, info, self.peer, None)

    def _tick(self) -> None:
        self.sendFrame()

    def sendFrame(self, payload: bytes | None = None) -> bool:
        """
        Send the next RTP packet now (the UAC's own pacer does this every
        20 ms; a call placed with C{paced=False} leaves it to its owner):
        the next packet of a queued DTMF event, which takes the audio's
        place, or else C{payload} (the source's next frame when L{None})
        as audio.  The RTP timestamp advances one frame either way.

        @param payload: one 20 ms frame in the answered codec.
        @return: whether the audio went out (not before the answer nor
            after the end, not in a DTMF packet's place, not on a send error).
        """
        negotiation = self.negotiation
        if negotiation is None or self.state != "established":
            return False
        ts = self._ts
        self._ts = (ts + FRAME) & 0xFFFFFFFF
        current = self._dtmfCurrent
        if not current and self._dtmf:
            current = self._dtmfCurrent = list(self._dtmf.popleft())
            self._dtmfTs = ts
        audio = not current
        if not audio:
            event = current.pop(0)
            assert negotiation.telephoneEvent is not None
            packet = packRtp(
                negotiation.telephoneEvent,
                self._seq,
                self._dtmfTs,
                self._ssrc,
                event.payload,
                event.marker,
            )
            self.stats.dtmfSent += 1
        else:
            if payload is None:
                payload = self._nextSourceFrame()
            packet = packRtp(
                negotiation.codec.payloadType, self._seq, ts, self._ssrc, payload, self._first
            )
            self._first = False
        self._seq = (self._seq + 1) & 0xFFFF
        try:
            self._rtp.write(packet, (negotiation.remoteAddress, negotiation.remotePort))
        except OSError:
            return False
        self.stats.packetsSent += 1
        return audio

    def _nextSourceFrame(self) -> bytes:
        """
        The source's next 20 ms frame, looped (silence without a source).
        """
        encoded = self._encoded
        if encoded is None:
            return self._silence
        pos = self._sourcePos
        payload = encoded[pos : pos + FRAME]
        if len(payload) < FRAME:
            payload += encoded[: FRAME - len(payload)]
        self._sourcePos = (pos + FRAME) % len(encoded)
        return payload

    def _rtpReceived(self, data: bytes) -> None:
        negotiation = self.negotiation
        if negotiation is None:
            return
        try:
            packet = parseRtp(data)
        except ValueError:
            return
        if packet.payloadType != negotiation.codec.payloadType:
            return
        stats = self.stats
        now = self.uac.reactor.seconds()
        stats.arrivals.append(now)
        stats.packetsReceived += 1
        seq = packet.sequence
        if stats._first is None:
            stats._first = stats._highest = seq
        else:
            # extend to 32 bits around the highest seen
            base = stats._highest
            delta = ((seq - base + 0x8000) & 0xFFFF) - 0x8000
            seq = base + delta
            if seq > stats._highest:
                stats._highest = seq
        if self._onAudio is not None:
            self._onAudio(now, seq, packet.payload)
        if self._record:
            if seq in self._heard:
                stats.duplicates += 1
            else:
                self._heard[seq] = packet.payload

    def heard(self) -> bytes:
        """
        What was received, decoded to 16-bit PCM at 8 kHz, in sequence
        order, with silence for missing packets.
        """
        if not self._heard or not self.codec:
            return b""
        law = _LAWS[self.codec]
        first, last = min(self._heard), max(self._heard)
        silence = law.silence * FRAME
        wire = b"".join(self._heard.get(s, silence) for s in range(first, last + 1))
        return law.decode(wire)


class _Sip(DatagramProtocol):
    noisy = False
    _log = Logger()

    def __init__(self, uac: UserAgentClient) -> None:
        self.uac = uac

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        try:
            message = parseMessage(datagram)
        except SipParseError:
            return
        try:
            self.uac._messageReceived(message, addr)
        except Exception:
            self._log.failure("UAC message from {peer} failed", peer=addr)


class UserAgentClient:
    """
    A SIP endpoint placing calls.

    @param reactor: time and UDP (the real reactor, or a test fake).
    @param host: the local IP address (bound, and put in Via/Contact/SDP).
    @param port: the local SIP port (0: any).
    @param username: digest user for challenged INVITEs (and the From
        user, default C{sim}).
    @param password: digest password.
    @param timers: T1/T2/T4.
    """

    userAgent = "rapida-twisted-uac"

    def __init__(
        self,
        reactor: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        username: str | None = None,
        password: str | None = None,
        timers: TimerValues = DEFAULT_TIMERS,
    ) -> None:
        self.reactor = reactor
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.user = username or "sim"
        self.timers = timers
        self.pacers = PacerGroup(reactor)
        self._listening: Any = None
        self._txns: dict[Any, ClientTransaction] = {}
        self._dialogs: dict[Any, UacCall] = {}
        self._calls: set[UacCall] = set()

    @property
    def sentBy(self) -> str:
        """
        C{host:port} of our SIP port.
        """
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        """
        Bind the SIP port.
        """
        if self._listening is None:
            self._listening = self.reactor.listenUDP(self.port, _Sip(self), self.host)
            self.port = self._listening.getHost().port

    def stop(self) -> Deferred[None]:
        """
        Hang up every call, stop every transaction, close the SIP port
        (after the BYEs had a moment to be answered).
        """
        pending = [call.hangup() for call in list(self._calls)]
        done: Deferred[Any] = defer.DeferredList(pending) if pending else defer.succeed(None)

        def close(_: object) -> None:
            for txn in list(self._txns.values()):
                txn.terminate()
            self._txns.clear()
            for call in list(self._calls):
                call._end("stopped")
            if self._listening is not None:
                self._listening.stopListening()
                self._listening = None

        done.addCallback(close)
        return done

    def call(
        self,
        target: str,
        *,
        codecs: Sequence[str] = ("PCMU", "PCMA"),
        source: bytes = b"",
        record: bool = True,
        paced: bool = True,
        onAudio: AudioListener | None = None,
    ) -> UacCall:
        """
        Place a call to C{target} (C{sip:user@host:port}); the INVITE goes
        at once.

        @param codecs: the offer's codecs, in preference order.
        @param source: 16-bit PCM at 8 kHz sent in a loop (silence when
            empty).
        @param record: keep what is heard (for L{UacCall.heard}).
        @param paced: send on the UAC's own 20 ms pacer once answered;
            when false the caller calls L{UacCall.sendFrame} every 20 ms.
        @param onAudio: told of every audio packet received (see
            L{AudioListener}).
        @raise ValueError: C{target} is not a sip: URI with a host.
        """
        self.start()
        uri = parseURI(target)
        if not isinstance(uri, SipURI) or uri.scheme not in ("sip", "sips"):
            raise ValueError(f"not a SIP URI: {target!r}")
        peer = (uri.host, uri.port or 5060)
        call = UacCall(self, uri, peer, codecs, source, record, paced, onAudio)
        self._calls.add(call)
        call._sendInvite()
        return call

    # -- transport and transactions --------------------------------------------

    def _send(self, data: bytes, addr: Addr) -> None:
        if self._listening is not None:
            try:
                self._listening.write(data, addr)
            except OSError:
                pass

    def _clientTxn(
        self, kind: type[ClientTransaction], request: SipRequest, peer: Addr, onResponse: Any
    ) -> Any:
        txn = kind(self.reactor, self._send, request, peer, self.timers, onResponse=onResponse)
        branch = request.vias[0].branch
        assert branch is not None
        key = clientKey(branch, request.method)
        self._txns[key] = txn
        txn._onTerminated = lambda t, key=key: self._txns.pop(key, None)
        if txn.state == "terminated":
            self._txns.pop(key, None)
        return txn

    def _respond(self, request: SipRequest, code: int, addr: Addr) -> None:
        self._send(responseFor(request, code).toBytes(), addr)

    def _messageReceived(self, message: SipRequest | SipResponse, addr: Addr) -> None:
        if isinstance(message, SipResponse):
            branch = message.vias[0].branch if message.vias else None
            txn = self._txns.get(clientKey(branch or "", message.cseq.method))
            if txn is not None:
                txn.responseReceived(message)
            return
        key = (
            message.callId,
            message.toAddress.tag or "",
            message.fromAddress.tag or "",
        )
        call = self._dialogs.get(key)
        if call is None:
            if message.method != "ACK":
                self._respond(message, 481, addr)
            return
        call.requestReceived(message, addr)
