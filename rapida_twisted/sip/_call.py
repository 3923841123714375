# -*- test-case-name: tests.test_sip_server -*-
"""
One inbound SIP call, from INVITE to the end of its dialog: the UAS side
of RFC 3261 §13 on top of the transaction layer, with its RTP session and
its call session.

Lifecycle::

    admitting ──(context created + claimed, session built)──► [ringing] ──► answered
        │                                                                    │ ACK
        ├─ CANCEL ─► 487, context failed "cancelled"                          ▼
        └─ store down ─► 503, context failed                              confirmed
                                                                             │
     BYE in / BYE out / no ACK / media timeout ──────────────────────────► ended

The context is created and claimed at admission (provider C{sip},
C{channel_uuid} = Call-ID), the assistant's session starts at the ACK
(media before the ACK is latched but not played), and every way out
finishes the context exactly once through the call session.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from ..call._format import AudioFormat
from ..call._session import CallSession
from ..config import AssistantConfig
from ..store._model import StoreError, StoreUnavailable
from ._codec import SipRequest, SipResponse, responseFor
from ._dialog import CONFIRMED, TERMINATED, Dialog
from ._rtp_session import RtpSession
from ._sdp import (
    PCMA,
    PCMU,
    AudioNegotiation,
    NoCommonCodec,
    SdpError,
    SdpParseError,
    SessionDescription,
    buildOffer,
    negotiateAnswer,
    parseSdp,
)
from ._sdp import answerOffer as _answerOffer
from ._txn import Addr, InviteServerTransaction, ServerTransaction, TransactionTimeout

if TYPE_CHECKING:
    from ._core import SipCore

__all__ = ["InboundCall", "dtmfFromInfo"]

ADMITTING: Final = "admitting"
RINGING: Final = "ringing"
ANSWERED: Final = "answered"
CONFIRMED_CALL: Final = "confirmed"
ENDED: Final = "ended"

#: the G.711 codec names we answer with, by SDP encoding name
_WIRE_CODECS: Final = {"pcmu": "ulaw", "pcma": "alaw"}

#: RFC 4733 / dtmf-relay event numbers to digits
_INFO_DIGITS: Final = {str(i): str(i) for i in range(10)} | {
    "10": "*",
    "11": "#",
    "12": "A",
    "13": "B",
    "14": "C",
    "15": "D",
}
_VALID_DIGITS: Final = frozenset("0123456789*#ABCD")

#: the codecs we answer with, ours in no order: the caller's preference wins
SUPPORTED: Final = (PCMU, PCMA)


def dtmfFromInfo(contentType: str | None, body: bytes) -> str | None:
    """
    The digit of a SIP INFO body: C{application/dtmf-relay}
    (C{Signal=5}, C{Signal=*} or an event number) or C{application/dtmf}
    (the digit or event number alone); C{None} when there is none.
    """
    if contentType not in ("application/dtmf-relay", "application/dtmf"):
        return None
    text = body.decode("ascii", "replace")
    value = text.strip()
    if contentType == "application/dtmf-relay":
        value = ""
        for line in text.splitlines():
            name, sep, rest = line.partition("=")
            if sep and name.strip().lower() == "signal":
                value = rest.strip()
                break
    value = value.upper()
    if value in _INFO_DIGITS:
        return _INFO_DIGITS[value]
    if len(value) == 1 and value in _VALID_DIGITS:
        return value
    return None


class InboundCall:
    """
    One call a peer placed to us.

    Built by the core once the INVITE passed every check (route, auth,
    SDP, RTP ports); L{admit} then runs asynchronously.

    @ivar dialog: the dialog (our tag chosen at construction).
    @ivar state: C{admitting}, C{ringing}, C{answered}, C{confirmed} or
        C{ended}.
    @ivar session: the L{CallSession}, once built.
    """

    _log = Logger()

    def __init__(
        self,
        core: SipCore,
        txn: InviteServerTransaction,
        dialog: Dialog,
        assistant: AssistantConfig,
        rtp: RtpSession,
        offer: SessionDescription | None,
        localHost: str,
        contact: str,
        send: Callable[[bytes, Addr], None],
    ) -> None:
        self.core = core
        self.txn = txn
        self.request = txn.request
        self.dialog = dialog
        self.assistant = assistant
        self.rtp = rtp
        self.negotiation: AudioNegotiation | None = None
        self.localHost = localHost
        self.contact = contact
        self.send = send
        self.callId = dialog.callId
        self.state = ADMITTING
        self.session: CallSession | None = None
        self.contextId: str | None = None
        self.endReason = ""
        self._sessionId = secrets.randbelow(2**31)
        self._sdpVersion = self._sessionId
        self._localSdp: bytes = b""
        self._ourOffer: SessionDescription | None = None
        self._pendingInvite: InviteServerTransaction | None = None
        self._ring: IDelayedCall | None = None
        self._admitting = False
        self._started = core.clock.seconds()
        rtp.owner = self
        txn.onNoAck = self.inviteNotAcked
        if offer is not None:
            # the core checked the offer; this is the answer with our port
            self.negotiation = self._answerOffer(offer, SUPPORTED)
            rtp.configure(self.negotiation)

    # -- admission -------------------------------------------------------------

    def admit(self) -> None:
        """
        Create and claim the context, build the call session, then ring
        and answer (asynchronously; errors answer 5xx).
        """
        self._admitting = True
        d = Deferred.fromCoroutine(self._admit())
        d.addErrback(self._admitFailed)

    async def _admit(self) -> None:
        core = self.core
        gateway = core.gateway
        store = gateway.store
        request = self.request
        caller = request.fromAddress.uri
        callee = request.uri
        try:
            new = await gateway.storeOp(
                "create",
                store.create,
                "sip",
                self.assistant.id,
                direction="inbound",
                caller=getattr(caller, "user", None) or "",
                callee=getattr(callee, "user", None) or "",
                channel_uuid=self.callId,
                metadata={"sip": self._metadata()},
            )
            self.contextId = new.context.context_id
            if self.state == ENDED:
                await self._finishUnstarted()
                return
            context = await gateway.storeOp("claim", store.claim, self.contextId)
            if self.state == ENDED:
                await self._finishUnstarted()
                return
        finally:
            self._admitting = False
        assistant = core.assistantFor(self.assistant)
        session = self.session = CallSession(
            core.clock, gateway, context, self.rtp, assistant, pacer=core.pacerFactory
        )
        self.rtp.attach(session)
        self._log.info(
            "SIP call {call_id} from {peer}: context {context_id} for assistant {assistant_id}",
            call_id=self.callId,
            peer=self.dialog.peer[0],
            context_id=self.contextId,
            assistant_id=self.assistant.id,
        )
        ring = core.ringDelay(self.assistant)
        if ring > 0:
            self.state = RINGING
            self._respond(180, headers=[("Contact", self.contact)])
            self._ring = core.clock.callLater(ring, self._answer)
        else:
            self._answer()

    def _metadata(self) -> dict[str, Any]:
        request = self.request
        out: dict[str, Any] = {
            "call_id": self.callId,
            "from": request.get("From") or "",
            "to": request.get("To") or "",
            "request_uri": request.uri.toString(),
            "peer": f"{self.dialog.peer[0]}:{self.dialog.peer[1]}",
        }
        agent = request.get("User-Agent")
        if agent:
            out["user_agent"] = agent[:200]
        extra = {
            name.lower(): value[:200]
            for name, value in request.headers
            if name.lower().startswith("x-") and len(name) < 64
        }
        if extra:
            out["headers"] = dict(list(extra.items())[:20])
        return out

    def _admitFailed(self, failure: Failure) -> None:
        if failure.check(CancelledError):
            return
        if failure.check(StoreUnavailable):
            self._log.error(
                "SIP call {call_id}: the context store is unavailable ({why}): 503",
                call_id=self.callId,
                why=failure.getErrorMessage(),
            )
            code, reason = 503, "store_unavailable"
        elif failure.check(StoreError):
            self._log.error(
                "SIP call {call_id}: context store refused ({why}): 500",
                call_id=self.callId,
                why=failure.getErrorMessage(),
            )
            code, reason = 500, "store_error"
        else:
            self._log.failure(
                "SIP call {call_id}: setting up the call failed",
                failure,
                LogLevel.error,
                call_id=self.callId,
            )
            code, reason = 500, "setup_failed"
        if self.state in (ADMITTING, RINGING):
            headers = [("Retry-After", str(self.core.retryAfter))] if code == 503 else []
            self._respond(code, headers=headers)
        self._end(reason, "failed", source="gateway", bye=self.state != ADMITTING)

    async def _finishUnstarted(self, outcome: str = "failed", source: str = "provider") -> None:
        """
        The call ended before its session started: record the end and
        finish the context.
        """
        if self.contextId is None:
            return
        gateway = self.core.gateway
        store = gateway.store
        await gateway.storeOp(
            "append_event",
            store.appendEvent,
            self.contextId,
            source,
            "ended",
            {"reason": self.endReason, "outcome": outcome},
        )
        await gateway.storeOp("finish", store.finish, self.contextId, outcome, self.endReason)

    def _finishFailed(self, failure: Failure) -> None:
        self._log.failure(
            "SIP call {call_id}: finishing context {context_id} failed",
            failure,
            LogLevel.error,
            call_id=self.callId,
            context_id=self.contextId,
        )

    # -- answering ---------------------------------------------------------------

    def _answer(self) -> None:
        self._ring = None
        if self.state not in (ADMITTING, RINGING):
            return
        body = self._sdpBody()
        self.state = ANSWERED
        self._respond(200, headers=self._dialogHeaders(), body=body, contentType="application/sdp")

    def _sdpBody(self) -> bytes:
        """
        Our SDP: the answer to the offer (its version bumped only when it
        changed since the last one we sent), or an offer when the INVITE
        had none.
        """
        negotiation = self.negotiation
        if negotiation is None:
            offer = self._ourOffer = buildOffer(
                localAddress=self.localHost,
                localPort=self.rtp.port,
                rtcpPort=self.rtp.port + 1,
                sessionId=self._sessionId,
                sessionVersion=self._sdpVersion,
                username="rapida",
                sessionName="rapida",
            )
            body = offer.toBytes()
        else:
            body = negotiation.answer.toBytes()
        self._localSdp = body
        return body

    def _dialogHeaders(self) -> list[tuple[str, str]]:
        core = self.core
        return [("Contact", self.contact), ("Allow", core.allow)]

    def _respond(
        self,
        code: int,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        contentType: str | None = None,
        txn: ServerTransaction | None = None,
    ) -> None:
        txn = txn or self.txn
        txn.respond(
            responseFor(
                txn.request,
                code,
                headers=[*headers, ("Server", self.core.userAgent)],
                body=body,
                contentType=contentType,
                toTag=self.dialog.localTag,
            )
        )

    # -- in-dialog requests ------------------------------------------------------------

    def ackReceived(self, request: SipRequest) -> None:
        """
        The ACK of our 2xx (a separate transaction, matched by dialog).
        """
        pending = self._pendingInvite
        if pending is not None and request.cseq.number == pending.request.cseq.number:
            pending.ackReceived()
            self._pendingInvite = None
            if self._ourOffer is not None and request.body:
                self._reofferAnswered(request)
            return
        if self.state != ANSWERED or request.cseq.number != self.request.cseq.number:
            return
        self.txn.ackReceived()
        if self.negotiation is None:
            if not self._delayedAnswer(request):
                return
        self.state = CONFIRMED_CALL
        self.dialog.state = CONFIRMED
        self._log.debug(
            "SIP call {call_id} confirmed ({codec}) after {setup_ms} ms",
            call_id=self.callId,
            codec=self.rtp.audioFormat.codec,
            setup_ms=round((self.core.clock.seconds() - self._started) * 1000),
        )
        assert self.session is not None
        self.rtp.startMedia()
        self.session.start()

    def _delayedAnswer(self, ack: SipRequest) -> bool:
        """
        The INVITE had no offer: the ACK carries the answer to ours.
        """
        offer = self._ourOffer
        assert offer is not None
        try:
            if ack.contentType != "application/sdp" or not ack.body:
                raise SdpParseError("the ACK carries no SDP answer")
            negotiation = negotiateAnswer(offer, parseSdp(ack.body))
            self._useFormat(negotiation)
        except SdpError as e:
            self._log.warn(
                "SIP call {call_id}: bad answer in ACK ({why}); hanging up",
                call_id=self.callId,
                why=str(e),
            )
            self._ourOffer = None
            self._end("bad_sdp_answer", "failed", source="gateway", bye=True)
            return False
        self._ourOffer = None
        self.negotiation = negotiation
        self.rtp.configure(negotiation)
        return True

    def _useFormat(self, negotiation: AudioNegotiation) -> None:
        """
        Check the answer picked one of the codecs we can speak and that it
        is the one our session uses.
        """
        wire = _WIRE_CODECS.get(negotiation.codec.name.lower())
        if wire is None:
            raise NoCommonCodec(f"the answer chose {negotiation.codec.name}")
        if wire != self.rtp.audioFormat.codec:
            self.rtp.setFormat(AudioFormat(wire, 8000, 20), negotiation.codec.payloadType)

    def _reofferAnswered(self, ack: SipRequest) -> None:
        offer = self._ourOffer
        self._ourOffer = None
        assert offer is not None
        try:
            negotiation = negotiateAnswer(offer, parseSdp(ack.body))
        except SdpError as e:
            self._log.warn(
                "SIP call {call_id}: bad answer in ACK of re-INVITE ({why})",
                call_id=self.callId,
                why=str(e),
            )
            return
        self._applyNegotiation(negotiation)

    def requestReceived(self, request: SipRequest, txn: ServerTransaction) -> None:
        """
        An in-dialog request other than ACK and CANCEL.
        """
        if not self.dialog.acceptRemoteSeq(request):
            self._respond(500, txn=txn, headers=[("Retry-After", "1")])
            return
        method = request.method
        if method == "BYE":
            self._respond(200, txn=txn)
            if self.state in (ADMITTING, RINGING):
                # BYE in an early dialog (RFC 3261 §15.1.2): the INVITE ends too
                self._respond(487)
            reason = request.get("Reason")
            self._end(
                "remote_bye" if not reason else f"remote_bye ({reason[:80]})",
                "completed" if self.state == CONFIRMED_CALL else "failed",
                source="provider",
                bye=False,
            )
        elif method in ("INVITE", "UPDATE"):
            self._reinvite(request, txn)
        elif method == "INFO":
            self._info(request, txn)
        elif method == "OPTIONS":
            self._respond(200, txn=txn, headers=self.core.optionsHeaders())
        else:
            self.core.rejectMethod(request, txn, toTag=self.dialog.localTag)

    def _info(self, request: SipRequest, txn: ServerTransaction) -> None:
        contentType = request.contentType
        if not request.body:
            self._respond(200, txn=txn)  # keep-alive INFO
            return
        digit = dtmfFromInfo(contentType, request.body)
        if digit is None:
            if contentType in ("application/dtmf-relay", "application/dtmf"):
                self._respond(400, txn=txn)
            else:
                self._respond(
                    415,
                    txn=txn,
                    headers=[("Accept", "application/dtmf-relay, application/dtmf")],
                )
            return
        self._respond(200, txn=txn)
        if self.session is not None and self.state == CONFIRMED_CALL:
            self._log.info(
                "SIP call {call_id}: DTMF {digit} by INFO", call_id=self.callId, digit=digit
            )
            self.session.dtmfReceived(digit)

    def _reinvite(self, request: SipRequest, txn: ServerTransaction) -> None:
        """
        A re-INVITE or UPDATE: session refresh, hold/unhold, new remote
        address.  The codec cannot change under a running session: an
        offer without it gets 488 and the call goes on as before.
        """
        isInvite = request.method == "INVITE"
        if self.state != CONFIRMED_CALL or (isInvite and self._pendingInvite is not None):
            # RFC 3261 §14.2: a second INVITE before the first is answered
            self._respond(
                500 if isInvite else 491,
                txn=txn,
                headers=[("Retry-After", str(1 + secrets.randbelow(9)))],
            )
            return
        self.dialog.refreshTarget(request)
        headers = self._dialogHeaders()
        if not request.body:
            if isInvite:
                # no offer: ours in the 200, the answer comes in the ACK
                self._ourOffer = buildOffer(
                    localAddress=self.localHost,
                    localPort=self.rtp.port,
                    rtcpPort=self.rtp.port + 1,
                    sessionId=self._sessionId,
                    sessionVersion=self._sdpVersion,
                    codecs=(self._currentCodec(),),
                    telephoneEvent=self._telephoneEventPt(),
                    username="rapida",
                    sessionName="rapida",
                )
                body = self._ourOffer.toBytes()
                self._acceptReinvite(txn, headers, body)
            else:
                self._respond(200, txn=txn, headers=headers)
            return
        if request.contentType != "application/sdp":
            self._respond(415, txn=txn, headers=[("Accept", "application/sdp")])
            return
        try:
            offer = parseSdp(request.body)
            negotiation = self._answerOffer(offer, (self._currentCodec(),))
        except NoCommonCodec as e:
            self._respond(488, txn=txn, headers=[("Warning", f'304 - "{e}"')])
            return
        except SdpError as e:
            self._respond(400, txn=txn, headers=[("Warning", f'399 - "{e}"')])
            return
        body = negotiation.answer.toBytes()
        if body != self._localSdp:
            # the answer changed (hold, new port...): bump the o= version
            self._sdpVersion += 1
            negotiation = self._answerOffer(offer, (self._currentCodec(),))
            body = negotiation.answer.toBytes()
        self._localSdp = body
        self._applyNegotiation(negotiation)
        if isInvite:
            self._acceptReinvite(txn, headers, body)
        else:
            self._respond(200, txn=txn, headers=headers, body=body, contentType="application/sdp")

    def _acceptReinvite(
        self, txn: ServerTransaction, headers: list[tuple[str, str]], body: bytes
    ) -> None:
        assert isinstance(txn, InviteServerTransaction)
        self._pendingInvite = txn
        self._respond(200, txn=txn, headers=headers, body=body, contentType="application/sdp")

    def _answerOffer(self, offer: SessionDescription, codecs: Iterable[Any]) -> AudioNegotiation:
        return _answerOffer(
            offer,
            localAddress=self.localHost,
            localPort=self.rtp.port,
            rtcpPort=self.rtp.port + 1,
            sessionId=self._sessionId,
            sessionVersion=self._sdpVersion,
            supported=tuple(codecs),
            username="rapida",
            sessionName="rapida",
        )

    def _currentCodec(self) -> Any:
        negotiation = self.negotiation
        assert negotiation is not None
        return negotiation.codec

    def _telephoneEventPt(self) -> int | None:
        negotiation = self.negotiation
        return None if negotiation is None else negotiation.telephoneEvent or 101

    def _applyNegotiation(self, negotiation: AudioNegotiation) -> None:
        was = self.negotiation
        self.negotiation = negotiation
        self.rtp.configure(negotiation)
        if was is None or was.onHold != negotiation.onHold:
            self._log.info(
                "SIP call {call_id} {what}",
                call_id=self.callId,
                what="on hold" if negotiation.onHold else "resumed",
            )

    # -- CANCEL, timeouts, hang-up -------------------------------------------------

    def cancel(self) -> bool:
        """
        A CANCEL matched our INVITE: 487 if it is not answered yet.
        Returns whether the call was cancelled.
        """
        if self.state not in (ADMITTING, RINGING) or self.txn.finalSent:
            return False
        self._respond(487)
        self._end("cancelled", "failed", source="provider", bye=False)
        return True

    def inviteNotAcked(self, txn: InviteServerTransaction) -> None:
        """
        A 2xx of ours (to the INVITE or a re-INVITE) got no ACK within
        64·T1: BYE, and the call fails (RFC 3261 §13.3.1.4).
        """
        if txn is self._pendingInvite:
            self._pendingInvite = None
        elif txn is not self.txn or self.state != ANSWERED:
            return
        self._end("no_ack", "failed", source="gateway", bye=True)

    def mediaTimeout(self, seconds: float) -> None:
        """
        No RTP for too long: BYE, and the call fails.
        """
        self._log.info(
            "SIP call {call_id}: no RTP for {seconds}s, hanging up",
            call_id=self.callId,
            seconds=seconds,
        )
        self._end("media_timeout", "failed", source="gateway", bye=True)

    def localHangup(self, reason: str) -> None:
        """
        The call session hangs up (the assistant or a failure): BYE.  The
        session records the end itself.
        """
        self._end(reason, None, source="assistant", bye=True)

    def shutdown(self) -> None:
        """
        The server stops: BYE and end (completed).
        """
        self._end("server_stop", "completed", source="gateway", bye=True)

    def _end(self, reason: str, outcome: str | None, *, source: str, bye: bool) -> None:
        """
        The one way out (idempotent): stop timers and media, send BYE when
        asked and the dialog exists, leave the core's tables, and end the
        call session (which finishes the context) unless C{outcome} is
        C{None} (the session is ending itself).
        """
        if self.state == ENDED:
            return
        state = self.state
        self.state = ENDED
        self.endReason = reason
        ring, self._ring = self._ring, None
        if ring is not None and ring.active():
            ring.cancel()
        # the INVITE transactions outlive the call (Timer L, 64·T1): they
        # must not keep it (its media pipelines) alive
        self.txn.onNoAck = None
        pending, self._pendingInvite = self._pendingInvite, None
        if pending is not None:
            pending.onNoAck = None
        self.rtp.close()
        if bye and state in (ANSWERED, CONFIRMED_CALL) and self.dialog.state != TERMINATED:
            self._sendBye(reason)
        self.dialog.state = TERMINATED
        self.core.callEnded(self)
        session = self.session
        if outcome is not None:
            if session is not None and session.details is not None:
                session.ended(reason, outcome, source=source)
            elif self.contextId is not None and not self._admitting:
                # set up but never started (cancelled while ringing, no
                # ACK...): no assistant to tell, finish the context here
                d = Deferred.fromCoroutine(self._finishUnstarted(outcome, source))
                d.addErrback(self._finishFailed)
        # a started call's end is logged by its call session (context id,
        # reason, frame counts); the others' here
        log = (
            self._log.debug
            if session is not None and session.details is not None
            else self._log.info
        )
        log("SIP call {call_id} ended: {reason}", call_id=self.callId, reason=reason)

    def _sendBye(self, reason: str) -> None:
        core = self.core
        headers = [("User-Agent", core.userAgent)]
        if reason in ("no_ack", "media_timeout"):
            headers.append(("Reason", f'SIP;cause=408;text="{reason}"'))
        bye = self.dialog.request("BYE", core.sentBy(self.localHost), headers=headers)
        txn = core.sendRequest(bye, self.dialog.peer, self.send)
        txn.result.addCallbacks(self._byeAnswered, self._byeFailed)

    def _byeAnswered(self, response: SipResponse) -> None:
        if response.code >= 300:
            self._log.info(
                "SIP call {call_id}: BYE answered {code}", call_id=self.callId, code=response.code
            )

    def _byeFailed(self, failure: Failure) -> None:
        if failure.check(TransactionTimeout):
            self._log.info("SIP call {call_id}: BYE not answered", call_id=self.callId)
        elif not failure.check(CancelledError):
            self._log.failure(
                "SIP call {call_id}: BYE failed", failure, LogLevel.error, call_id=self.callId
            )

    @property
    def peer(self) -> Addr:
        """
        Where the call's signalling goes.
        """
        return self.dialog.peer
