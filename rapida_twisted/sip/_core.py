# -*- test-case-name: tests.test_sip_server -*-
"""
The SIP user-agent core: everything between a parsed message and the
calls it belongs to, independent of the transport.

A transport adapter (the UDP L{rapida_twisted.sip.sip.SipDatagramProtocol},
later TCP or TLS) asks L{SipCore.admit} before parsing (allowlist and
per-source rate limit), then hands every parsed message to
L{SipCore.messageReceived}C{(message, proto, addr)} and every parse failure
to L{SipCore.parseErrorReceived}.  The C{proto} only needs
C{sendDatagram(data, addr)}.

What the core does:

  - transactions: matches requests to server transactions and responses
    to client transactions (L{rapida_twisted.sip._txn}); responses go to
    the request's source honouring C{rport}/C{received} (RFC 3581);
  - new INVITEs: URI scheme (416), C{Require} (420), dialog bound (503 +
    C{Retry-After}), digest authentication when users are configured
    (401/403), routing by Request-URI user to an assistant id or a
    listed number (404), SDP (415/400/488), RTP ports (503), then an
    L{InboundCall};
  - in-dialog requests go to their call; unknown dialogs get 481;
  - CANCEL (200 + 487), OPTIONS (200 with C{Allow}/C{Accept}), REGISTER
    (405 without users, else digest-authenticated 200 with C{Expires}),
    known but unsupported methods 405, unknown methods 501;
  - every refusal is a structured log event and a metric.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Hashable, Iterable
from typing import Any, Final, Protocol

from twisted.internet.interfaces import IReactorTime, IReactorUDP
from twisted.logger import Logger

from ..call._format import AudioFormat
from ..config import AssistantConfig
from ..interfaces import IAssistant
from ..media.pacer import PacerFactory
from ._auth import DigestAuthenticator
from ._call import InboundCall
from ._codec import (
    SipParseError,
    SipRequest,
    SipResponse,
    SipURI,
    badRequestFor,
    newTag,
    responseFor,
)
from ._dialog import Dialog, DialogError, DialogId
from ._limits import AllowList, RateLimiter, Throttle
from ._ports import PortsExhausted, RtpPortAllocator
from ._rtp_session import AfterSends, MediaTimeouts, RtpSession
from ._sdp import (
    AudioNegotiation,
    NoCommonCodec,
    SdpError,
    SessionDescription,
    answerOffer,
    parseSdp,
)
from ._txn import (
    DEFAULT_TIMERS,
    Addr,
    ClientTransaction,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    ServerTransaction,
    TimerValues,
    TransactionTable,
    clientKey,
    serverKey,
)

__all__ = ["ALLOW", "SipCore", "SipSender"]

#: the methods we implement
ALLOW: Final = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE"

#: methods we know but do not implement here (405, not 501)
_KNOWN: Final = frozenset(
    {"REGISTER", "SUBSCRIBE", "NOTIFY", "PUBLISH", "MESSAGE", "REFER", "PRACK"}
)

#: encoding names of the codecs we answer with → wire codec of the session
_WIRE: Final = {"pcmu": "ulaw", "pcma": "alaw"}

#: Expires granted to REGISTER at most (seconds)
MAX_EXPIRES: Final = 3600


class SipSender(Protocol):
    """
    What the core needs of a transport adapter.
    """

    def sendDatagram(self, data: bytes, addr: Addr) -> None:
        """
        Send one message to C{addr}.
        """


class SipCore:
    """
    One SIP server: its transactions, its calls and its guards.

    @param reactor: time, and UDP for the RTP ports.
    @param gateway: the L{rapida_twisted.gateway.Gateway} (store, config,
        assistants, pacers, metrics).
    @param ports: the RTP port allocator.
    @param port: our SIP port (for C{Contact} and C{Via}).
    @param interface: the address the SIP port is bound to.
    @param advertise: the address put in C{Contact} and SDP C{c=} (NAT);
        default: C{interface} unless it is a wildcard, else the local
        address that routes to the peer.
    @param timers: T1/T2/T4.
    @param assistantFor: assistant config → L{IAssistant} (default: the
        gateway's registry).
    @param pacer: pacer factory of the call sessions (default: the
        gateway's shared L{PacerGroup}).
    @param mediaTimeouts: RTP inactivity limits.
    """

    _log = Logger()

    userAgent = "rapida-twisted"
    retryAfter = 5

    def __init__(
        self,
        reactor: Any,
        gateway: Any,
        ports: RtpPortAllocator,
        *,
        port: int = 5090,
        interface: str = "",
        advertise: str | None = None,
        timers: TimerValues = DEFAULT_TIMERS,
        assistantFor: Callable[[AssistantConfig], IAssistant] | None = None,
        pacer: PacerFactory | None = None,
        mediaTimeouts: MediaTimeouts | None = None,
    ) -> None:
        self.reactor = reactor
        self.clock: IReactorTime = reactor
        self.udp: IReactorUDP = reactor
        self.gateway = gateway
        self.ports = ports
        self.port = port
        self.interface = interface
        self.advertise = advertise
        self.timers = timers
        self.mediaTimeouts = mediaTimeouts or MediaTimeouts()
        settings = gateway.config.sip
        self.settings = settings
        self.allowList = AllowList(settings.allow_from)
        self.limiter = RateLimiter(reactor, settings.rate_limit)
        self.maxDialogs = settings.max_dialogs
        self.auth: DigestAuthenticator | None = (
            DigestAuthenticator(reactor, settings.realm, settings.users) if settings.users else None
        )
        self.allow = ALLOW + (", REGISTER" if self.auth is not None else "")
        self._assistantFor = assistantFor
        self.pacerFactory: PacerFactory = pacer if pacer is not None else gateway.pacers.pacer
        self.afterSends = AfterSends(reactor)
        self.txns = TransactionTable()
        self.calls: dict[DialogId, InboundCall] = {}
        self._invites: dict[Hashable, InboundCall] = {}
        self._throttle = Throttle(reactor)
        self._localHosts: dict[str, str] = {}
        metrics = gateway.metrics
        self._errors = metrics.protocolErrors
        self.stopped = False

    # -- guards ----------------------------------------------------------------------

    def admit(self, addr: Addr) -> bool:
        """
        Whether a datagram from C{addr} may be processed at all: sources
        outside the allowlist and sources over their rate are dropped
        (silently on the wire; logged at most every 10 s per source).
        """
        host = addr[0]
        if self.allowList and not self.allowList.allows(host):
            self._errors.labels("sip", "not_allowed").inc()
            count = self._throttle.due(("allow", host))
            if count:
                self._log.warn(
                    "SIP from {peer} dropped: not in sip.allow_from ({count} datagrams)",
                    peer=host,
                    count=count,
                )
            return False
        if not self.limiter.allow(host):
            self._errors.labels("sip", "rate_limited").inc()
            dropped = self.limiter.reportDue(host)
            if dropped:
                self._log.warn(
                    "SIP flood from {peer}: {dropped} datagrams over {rate}/s dropped",
                    peer=host,
                    dropped=dropped,
                    rate=self.limiter.rate,
                )
            return False
        return True

    def parseErrorReceived(self, error: SipParseError, proto: SipSender, addr: Addr) -> None:
        """
        A datagram that is not a valid SIP message: 400 (or 505/513) when
        it can be answered, else dropped; logged either way (throttled).
        """
        self._errors.labels("sip", "malformed").inc()
        answer = error.canAnswer
        count = self._throttle.due(("parse", addr[0]))
        if count:
            self._log.warn(
                "malformed SIP from {peer}: {why} ({action}; {count} so far)",
                peer=f"{addr[0]}:{addr[1]}",
                why=error.reason,
                action=f"answered {error.code}" if answer else "dropped",
                count=count,
            )
        if answer:
            response = badRequestFor(error, toTag=newTag())
            proto.sendDatagram(response.toBytes(), self._replyAddr(response, addr))

    def _replyAddr(self, message: SipRequest | SipResponse, addr: Addr) -> Addr:
        """
        Where to send a response to a request from C{addr} (RFC 3261
        §18.2.2 with RFC 3581): the source address when the top C{Via}
        has C{rport}, else the source host and the C{Via} port.
        """
        try:
            via = message.vias[0]
        except (SipParseError, IndexError):
            return addr
        if via.hasRport:
            return addr
        return (addr[0], via.port or 5060)

    # -- dispatch ------------------------------------------------------------------------

    def messageReceived(
        self, message: SipRequest | SipResponse, proto: SipSender, addr: Addr
    ) -> None:
        """
        One parsed message from C{addr}.
        """
        if self.stopped:
            return
        if isinstance(message, SipResponse):
            self._responseReceived(message)
            return
        request = message
        via = request.vias[0]
        if via.hasRport or via.host != addr[0]:
            # RFC 3261 §18.2.1 / RFC 3581: stamp where it really came from
            stamped = via.withReceived(addr[0], addr[1])
            request = request.withHeader("Via", stamped.toString(), *request.getAll("Via")[1:])
            replyTo = addr if via.hasRport else (addr[0], via.port or 5060)
        else:
            replyTo = (addr[0], via.port or 5060)
        key = serverKey(request)
        txn = self.txns.server.get(key)
        if txn is not None:
            txn.requestReceived(request, replyTo)
            return
        method = request.method
        if method == "ACK":
            self._ackReceived(request)
            return
        send = proto.sendDatagram
        if method == "INVITE":
            itxn = InviteServerTransaction(self.clock, send, request, replyTo, self.timers)
            self.txns.addServer(key, itxn)
            stxn: ServerTransaction = itxn
        else:
            stxn = NonInviteServerTransaction(self.clock, send, request, replyTo, self.timers)
            self.txns.addServer(key, stxn)
        if method == "CANCEL":
            self._cancelReceived(request, stxn)
            return
        toTag = request.toAddress.tag
        if toTag:
            fromTag = request.fromAddress.tag or ""
            call = self.calls.get((request.callId, toTag, fromTag))
            if call is None:
                if method == "OPTIONS":
                    self._options(stxn, toTag)
                else:
                    self.reject(stxn, 481, "no such dialog", toTag=toTag)
                return
            call.requestReceived(request, stxn)
            return
        if method == "INVITE":
            assert isinstance(stxn, InviteServerTransaction)
            self._newInvite(request, stxn, proto, addr)
        elif method == "OPTIONS":
            self._options(stxn, newTag())
        elif method == "REGISTER" and self.auth is not None:
            self._register(request, stxn)
        elif method in ("BYE", "INFO", "UPDATE"):
            self.reject(stxn, 481, "no such dialog")
        else:
            self.rejectMethod(request, stxn)

    def _responseReceived(self, response: SipResponse) -> None:
        try:
            branch = response.vias[0].branch
        except (IndexError, SipParseError):
            return
        if branch is None:
            return
        txn = self.txns.client.get(clientKey(branch, response.cseq.method))
        if txn is None:
            self._log.debug(
                "stray SIP response {code} for {method}",
                code=response.code,
                method=response.cseq.method,
            )
            return
        txn.responseReceived(response)

    def _ackReceived(self, request: SipRequest) -> None:
        toTag = request.toAddress.tag or ""
        call = self.calls.get((request.callId, toTag, request.fromAddress.tag or ""))
        if call is None:
            self._log.debug("ACK for no dialog ({call_id})", call_id=request.callId)
            return
        call.ackReceived(request)

    def _cancelReceived(self, request: SipRequest, txn: ServerTransaction) -> None:
        inviteKey = serverKey(request, "INVITE")
        invite = self.txns.server.get(inviteKey)
        if invite is None:
            self.reject(txn, 481, "CANCEL matches no transaction")
            return
        call = self._invites.get(inviteKey)
        tag = call.dialog.localTag if call is not None else newTag()
        txn.respond(responseFor(request, 200, toTag=tag, headers=self._server()))
        if call is not None:
            if call.cancel():
                self._log.info(
                    "SIP call {call_id} cancelled by {peer}",
                    call_id=call.callId,
                    peer=call.peer[0],
                )
        elif not invite.finalSent:
            # an INVITE refused before a call existed may still be pending
            invite.respond(responseFor(invite.request, 487, toTag=tag, headers=self._server()))

    # -- simple answers ----------------------------------------------------------------

    def _server(self) -> list[tuple[str, str]]:
        return [("Server", self.userAgent)]

    def optionsHeaders(self) -> list[tuple[str, str]]:
        """
        The headers of a 200 to OPTIONS.
        """
        return [("Allow", self.allow), ("Accept", "application/sdp")]

    def _options(self, txn: ServerTransaction, toTag: str) -> None:
        txn.respond(
            responseFor(
                txn.request, 200, toTag=toTag, headers=[*self.optionsHeaders(), *self._server()]
            )
        )

    def reject(
        self,
        txn: ServerTransaction,
        code: int,
        why: str,
        *,
        headers: Iterable[tuple[str, str]] = (),
        toTag: str | None = None,
        metric: str | None = None,
    ) -> None:
        """
        Answer C{txn} with the error C{code}, logging why.
        """
        request = txn.request
        self._errors.labels("sip", metric or str(code)).inc()
        self._log.info(
            "SIP {method} {call_id} from {peer} refused {code}: {why}",
            method=request.method,
            call_id=request.get("Call-ID"),
            peer=txn.addr[0],
            code=code,
            why=why,
        )
        txn.respond(
            responseFor(
                request,
                code,
                toTag=toTag or newTag(),
                headers=[*headers, *self._server()],
            )
        )

    def rejectMethod(
        self, request: SipRequest, txn: ServerTransaction, toTag: str | None = None
    ) -> None:
        """
        405 (with C{Allow}) for methods we know, 501 for the others.
        """
        if request.method in _KNOWN:
            self.reject(
                txn, 405, "method not allowed", headers=[("Allow", self.allow)], toTag=toTag
            )
        else:
            self.reject(txn, 501, "method not implemented", toTag=toTag)

    def _register(self, request: SipRequest, txn: ServerTransaction) -> None:
        assert self.auth is not None
        tag = newTag()
        if not self._authorised(request, txn, tag):
            return
        expires = request.get("Expires")
        contacts = request.getAll("Contact")
        granted = MAX_EXPIRES
        if expires is not None and expires.isdigit():
            granted = min(int(expires), MAX_EXPIRES)
        headers = [("Contact", c) for c in contacts if c != "*"]
        headers.append(("Expires", str(granted)))
        self._log.info(
            "SIP REGISTER of {aor} from {peer}: {expires}s",
            aor=request.get("To"),
            peer=txn.addr[0],
            expires=granted,
        )
        txn.respond(responseFor(request, 200, toTag=tag, headers=[*headers, *self._server()]))

    def _authorised(self, request: SipRequest, txn: ServerTransaction, toTag: str) -> bool:
        """
        Digest authentication (when users are configured): C{True} to go
        on, else the challenge (401) or refusal (403) has been sent.
        """
        auth = self.auth
        if auth is None:
            return True
        outcome = auth.check(request)
        if outcome.ok:
            return True
        if outcome.challenge:
            self._errors.labels("sip", "auth_challenge").inc()
            self._log.info(
                "SIP {method} {call_id} from {peer}: digest challenge ({why})",
                method=request.method,
                call_id=request.callId,
                peer=txn.addr[0],
                why=outcome.reason,
            )
            txn.respond(
                responseFor(
                    request,
                    401,
                    toTag=toTag,
                    headers=[*outcome.headers, *self._server()],
                )
            )
        else:
            self.reject(txn, 403, outcome.reason, toTag=toTag, metric="auth_failed")
        return False

    # -- new calls ----------------------------------------------------------------------

    def route(self, user: str | None) -> AssistantConfig | None:
        """
        The assistant a Request-URI user selects: an assistant id, or a
        number listed for one.
        """
        if not user:
            return None
        config = self.gateway.config
        assistant: AssistantConfig | None = config.assistant(user)
        if assistant is None:
            assistant = config.assistantForNumber(user)
        return assistant

    def assistantFor(self, config: AssistantConfig) -> IAssistant:
        """
        The L{IAssistant} of C{config}.
        """
        if self._assistantFor is not None:
            return self._assistantFor(config)
        assistant: IAssistant = self.gateway.assistants.get(config.id)
        return assistant

    def ringDelay(self, assistant: AssistantConfig) -> float:
        """
        Seconds to ring (180) before answering: the assistant's
        C{options.sip_ring_ms} (0 by default: answer at once).
        """
        value = assistant.options.get("sip_ring_ms", 0)
        try:
            return max(0.0, min(float(value), 60000.0)) / 1000.0
        except (TypeError, ValueError):
            return 0.0

    def localHostFor(self, peer: str) -> str:
        """
        The address we give C{peer} for signalling and media.
        """
        if self.advertise:
            return self.advertise
        if self.interface not in ("", "0.0.0.0", "::"):
            return self.interface
        host = self._localHosts.get(peer)
        if host is None:
            family = socket.AF_INET6 if ":" in peer else socket.AF_INET
            try:
                with socket.socket(family, socket.SOCK_DGRAM) as probe:
                    probe.connect((peer, 9))  # no packet is sent: a route lookup
                    host = str(probe.getsockname()[0])
            except OSError:
                host = "127.0.0.1" if family == socket.AF_INET else "::1"
            if len(self._localHosts) > 1024:
                self._localHosts.clear()
            self._localHosts[peer] = host
        return host

    def sentBy(self, host: str) -> str:
        """
        Our C{Via} sent-by.
        """
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    def _newInvite(
        self, request: SipRequest, txn: InviteServerTransaction, proto: SipSender, addr: Addr
    ) -> None:
        tag = newTag()
        uri = request.uri
        if not isinstance(uri, SipURI) or uri.scheme not in ("sip", "sips"):
            self.reject(txn, 416, f"unsupported URI scheme {uri.scheme}", toTag=tag)
            return
        required = [r for r in request.getAll("Require") if r]
        if required:
            self.reject(
                txn,
                420,
                "unsupported extension",
                headers=[("Unsupported", ", ".join(required))],
                toTag=tag,
            )
            return
        if len(self.calls) >= self.maxDialogs:
            self.reject(
                txn,
                503,
                f"{len(self.calls)} dialogs (sip.max_dialogs)",
                headers=[("Retry-After", str(self.retryAfter))],
                toTag=tag,
                metric="overloaded",
            )
            return
        if not self._authorised(request, txn, tag):
            return
        assistant = self.route(uri.user)
        if assistant is None:
            self.reject(txn, 404, f"no assistant or number {uri.user!r}", toTag=tag)
            return
        offer: SessionDescription | None = None
        if request.body:
            if request.contentType != "application/sdp":
                self.reject(
                    txn,
                    415,
                    f"body of type {request.contentType}",
                    headers=[("Accept", "application/sdp")],
                    toTag=tag,
                )
                return
        localHost = self.localHostFor(addr[0])
        negotiation: AudioNegotiation | None = None
        try:
            if request.body:
                offer = parseSdp(request.body)
                # checked before ports are bound: 400 or 488 cost nothing
                negotiation = self._answer(offer, localHost)
        except NoCommonCodec as e:
            self.reject(txn, 488, str(e), headers=[("Warning", f'304 - "{e}"')], toTag=tag)
            return
        except SdpError as e:
            self.reject(txn, 400, f"bad SDP: {e}", toTag=tag, metric="bad_sdp")
            return
        try:
            dialog = Dialog.fromRequest(request, tag, txn.addr)
        except DialogError as e:
            self.reject(txn, 400, str(e), toTag=tag)
            return
        if negotiation is None:
            fmt, payloadType = AudioFormat("ulaw", 8000, 20), 0
        else:
            fmt = AudioFormat(_WIRE[negotiation.codec.name.lower()], 8000, 20)
            payloadType = negotiation.codec.payloadType
        rtp = RtpSession(
            self.clock,
            fmt,
            payloadType,
            self.mediaTimeouts,
            self.gateway.metrics,
            afterSends=self.afterSends,
        )
        try:
            rtp.bind(self.ports)
        except PortsExhausted as e:
            self.reject(
                txn,
                503,
                str(e),
                headers=[("Retry-After", str(self.retryAfter))],
                toTag=tag,
                metric="rtp_ports",
            )
            return
        host = f"[{localHost}]" if ":" in localHost else localHost
        contact = SipURI("sip", host, uri.user, port=self.port)
        call = InboundCall(
            self,
            txn,
            dialog,
            assistant,
            rtp,
            offer,
            localHost,
            f"<{contact.toString()}>",
            proto.sendDatagram,
        )
        self.calls[dialog.id] = call
        self._invites[txn.key] = call
        call.admit()

    def _answer(self, offer: SessionDescription, localHost: str) -> AudioNegotiation:
        """
        A trial answer (no port yet): raises what the real one would.
        """
        return answerOffer(
            offer, localAddress=localHost, localPort=0, sessionId=0, sessionVersion=0
        )

    # -- calls' services ------------------------------------------------------------------

    def callEnded(self, call: InboundCall) -> None:
        """
        C{call} is over: forget it.
        """
        if self.calls.get(call.dialog.id) is call:
            del self.calls[call.dialog.id]
        if self._invites.get(call.txn.key) is call:
            del self._invites[call.txn.key]

    def sendRequest(
        self, request: SipRequest, addr: Addr, send: Callable[[bytes, Addr], None]
    ) -> ClientTransaction:
        """
        Send an in-dialog request (BYE, INFO) in a client transaction.
        """
        txn = NonInviteClientTransaction(self.clock, send, request, addr, self.timers)
        branch = request.vias[0].branch
        assert branch is not None
        self.txns.addClient(clientKey(branch, request.method), txn)
        return txn

    def stop(self) -> None:
        """
        Shutdown: every call gets a BYE and ends, every transaction stops,
        every RTP port is released.  Later messages are ignored.
        """
        if self.stopped:
            return
        for call in list(self.calls.values()):
            call.shutdown()
        self.stopped = True
        self.txns.terminateAll()
        self.ports.releaseAll()
        self.afterSends.cancel()
