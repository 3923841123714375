# -*- test-case-name: tests.test_sip_txn -*-
"""
RFC 3261 §17 transactions over UDP, as explicit state machines on
L{IReactorTime}.

Every transaction keeps its timers in one place: each state transition
cancels all of them before arming the ones the new state needs, and the
C{terminated} state holds none (so nothing is left behind on the
reactor).  A transaction sends through a C{send(data, addr)} callable it
is given; it serialises each message once and retransmits the same bytes.

Server transactions:

  - L{InviteServerTransaction}: C{100 Trying} at once; provisional
    responses; a 2xx moves it to I{Accepted} (RFC 6026), where it
    retransmits the 2xx from T1 doubling up to T2 until the TU reports the
    ACK (L{InviteServerTransaction.ackReceived}); after 64·T1 without ACK
    it tells the TU (C{onNoAck}); retransmitted INVITEs are absorbed.  A
    300–699 response moves it to I{Completed}: Timer G retransmits until
    the ACK (same branch) arrives, Timer H gives up after 64·T1, Timer I
    absorbs ACK retransmissions for T4.
  - L{NonInviteServerTransaction}: retransmitted requests get the last
    response; Timer J (64·T1) keeps it after the final response.

Client transactions:

  - L{NonInviteClientTransaction} (the BYE and INFO we send): Timer E
    retransmits from T1 doubling up to T2, Timer F gives up after 64·T1,
    Timer K absorbs response retransmissions for T4.
  - L{InviteClientTransaction} (the UAC's INVITE): Timer A from T1
    doubling, Timer B after 64·T1; a non-2xx final response is ACKed by
    the transaction (Timer D absorbs its retransmissions); a 2xx is left
    to the TU (RFC 6026 Accepted state, Timer M).

L{TransactionTable} matches requests to server transactions (RFC 3261
§17.2.3: branch + sent-by + method, ACK to its INVITE, with the RFC 2543
fallback for branches without the magic cookie) and responses to client
transactions (§17.1.3: branch + CSeq method).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Final

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from ._codec import SipRequest, SipResponse, responseFor

__all__ = [
    "DEFAULT_TIMERS",
    "Addr",
    "ClientTransaction",
    "InviteClientTransaction",
    "InviteServerTransaction",
    "NonInviteClientTransaction",
    "NonInviteServerTransaction",
    "SendFn",
    "ServerTransaction",
    "TimerValues",
    "TransactionTable",
    "TransactionTimeout",
    "clientKey",
    "serverKey",
]

Addr = tuple[str, int]
SendFn = Callable[[bytes, Addr], None]


@dataclass(frozen=True, slots=True)
class TimerValues:
    """
    RFC 3261 Table 4 base values, in seconds.
    """

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    @property
    def timeout(self) -> float:
        """
        64·T1: Timers B, F, H, J, L and M.
        """
        return 64 * self.t1


DEFAULT_TIMERS: Final = TimerValues()


class TransactionTimeout(Exception):
    """
    A client transaction got no final response within 64·T1 (Timer B/F).
    """


# states
CALLING: Final = "calling"
TRYING: Final = "trying"
PROCEEDING: Final = "proceeding"
ACCEPTED: Final = "accepted"
COMPLETED: Final = "completed"
CONFIRMED: Final = "confirmed"
TERMINATED: Final = "terminated"


class _Transaction:
    """
    What every transaction shares: state, named timers, the send callable.
    """

    _log = Logger()

    state: str

    def __init__(
        self,
        clock: IReactorTime,
        send: SendFn,
        addr: Addr,
        timers: TimerValues,
        onTerminated: Callable[[_Transaction], object] | None,
    ) -> None:
        self._clock = clock
        self._send = send
        self.addr = addr
        self.timers = timers
        self._onTerminated = onTerminated
        self._calls: dict[str, IDelayedCall] = {}
        self.key: Hashable = None

    # -- timers --

    def _arm(self, name: str, delay: float, fn: Callable[[], None]) -> None:
        self._calls[name] = self._clock.callLater(delay, self._fire, name, fn)

    def _fire(self, name: str, fn: Callable[[], None]) -> None:
        self._calls.pop(name, None)
        fn()

    def _cancelTimers(self) -> None:
        calls, self._calls = self._calls, {}
        for call in calls.values():
            if call.active():
                call.cancel()

    @property
    def pendingTimers(self) -> tuple[str, ...]:
        """
        Names of the timers armed now (for tests and diagnostics).
        """
        return tuple(self._calls)

    def _goto(self, state: str) -> None:
        """
        Transition: every timer of the old state is cancelled.
        """
        self._cancelTimers()
        self.state = state
        if state == TERMINATED and self._onTerminated is not None:
            callback, self._onTerminated = self._onTerminated, None
            callback(self)

    def terminate(self) -> None:
        """
        Stop at once (shutdown): no more sends, no timers.
        """
        if self.state != TERMINATED:
            self._goto(TERMINATED)

    def _write(self, data: bytes) -> None:
        self._send(data, self.addr)


# ---------------------------------------------------------------------------
# Server transactions


class ServerTransaction(_Transaction):
    """
    Base of the server transactions.

    @ivar request: the request that created the transaction.
    @ivar lastResponse: the last response sent (or C{None}).
    """

    def __init__(
        self,
        clock: IReactorTime,
        send: SendFn,
        request: SipRequest,
        addr: Addr,
        timers: TimerValues = DEFAULT_TIMERS,
        onTerminated: Callable[[_Transaction], object] | None = None,
    ) -> None:
        super().__init__(clock, send, addr, timers, onTerminated)
        self.request = request
        self.lastResponse: SipResponse | None = None
        self._lastBytes: bytes | None = None

    @property
    def finalSent(self) -> bool:
        """
        Whether a final response has been sent.
        """
        return self.lastResponse is not None and self.lastResponse.code >= 200

    def _sendResponse(self, response: SipResponse) -> None:
        self.lastResponse = response
        data = self._lastBytes = response.toBytes()
        self._write(data)

    def _resend(self) -> None:
        if self._lastBytes is not None:
            self._write(self._lastBytes)

    def respond(self, response: SipResponse) -> None:
        raise NotImplementedError()

    def requestReceived(self, request: SipRequest, addr: Addr) -> None:
        raise NotImplementedError()


class InviteServerTransaction(ServerTransaction):
    """
    RFC 3261 §17.2.1 with RFC 6026's Accepted state; the 2xx
    retransmission of §13.3.1.4 is done here on the TU's behalf.

    @param onNoAck: called with the transaction when a 2xx got no ACK
        within 64·T1 (the TU then sends BYE and fails the call).
    @param sendTrying: send C{100 Trying} at once.
    """

    def __init__(
        self,
        clock: IReactorTime,
        send: SendFn,
        request: SipRequest,
        addr: Addr,
        timers: TimerValues = DEFAULT_TIMERS,
        onTerminated: Callable[[_Transaction], object] | None = None,
        onNoAck: Callable[[InviteServerTransaction], object] | None = None,
        sendTrying: bool = True,
    ) -> None:
        super().__init__(clock, send, request, addr, timers, onTerminated)
        #: called with the transaction when a 2xx got no ACK (settable)
        self.onNoAck = onNoAck
        self.state = PROCEEDING
        self.acked = False
        if sendTrying:
            self._sendResponse(responseFor(request, 100))

    def respond(self, response: SipResponse) -> None:
        """
        Send C{response} (only while proceeding; later calls are ignored).
        """
        if self.state != PROCEEDING:
            self._log.debug(
                "INVITE transaction {state}: response {code} not sent",
                state=self.state,
                code=response.code,
            )
            return
        self._sendResponse(response)
        code = response.code
        if code < 200:
            return
        timers = self.timers
        if code < 300:
            self._goto(ACCEPTED)
            self._arm("2xx", timers.t1, lambda: self._retransmit(timers.t1))
            self._arm("L", timers.timeout, self._timerL)
        else:
            self._goto(COMPLETED)
            self._arm("G", timers.t1, lambda: self._retransmit(timers.t1))
            self._arm("H", timers.timeout, self._timerH)

    def _retransmit(self, interval: float) -> None:
        self._resend()
        interval = min(2 * interval, self.timers.t2)
        name = "2xx" if self.state == ACCEPTED else "G"
        self._arm(name, interval, lambda: self._retransmit(interval))

    def _timerL(self) -> None:
        if not self.acked:
            self._log.info(
                "no ACK for {code} to INVITE {call_id} within {timeout}s",
                code=self.lastResponse.code if self.lastResponse else 0,
                call_id=self.request.get("Call-ID"),
                timeout=self.timers.timeout,
            )
            callback, self.onNoAck = self.onNoAck, None
            self._goto(TERMINATED)
            if callback is not None:
                callback(self)
            return
        self._goto(TERMINATED)

    def _timerH(self) -> None:
        self._log.info(
            "no ACK for {code} to INVITE {call_id}: transaction ends",
            code=self.lastResponse.code if self.lastResponse else 0,
            call_id=self.request.get("Call-ID"),
        )
        self._goto(TERMINATED)

    def requestReceived(self, request: SipRequest, addr: Addr) -> None:
        """
        A retransmitted INVITE, or the ACK of a non-2xx final response
        (same branch).
        """
        if request.method == "ACK":
            if self.state == COMPLETED:
                self.acked = True
                self._goto(CONFIRMED)
                self._arm("I", self.timers.t4, lambda: self._goto(TERMINATED))
            return
        if self.state in (PROCEEDING, COMPLETED):
            self._resend()
        # ACCEPTED and CONFIRMED absorb retransmitted INVITEs (RFC 6026)

    def ackReceived(self) -> None:
        """
        The TU matched an ACK to the 2xx: stop retransmitting it (the
        transaction stays until Timer L to absorb INVITE retransmissions).
        """
        if self.state == ACCEPTED and not self.acked:
            self.acked = True
            call = self._calls.pop("2xx", None)
            if call is not None and call.active():
                call.cancel()


class NonInviteServerTransaction(ServerTransaction):
    """
    RFC 3261 §17.2.2.
    """

    def __init__(
        self,
        clock: IReactorTime,
        send: SendFn,
        request: SipRequest,
        addr: Addr,
        timers: TimerValues = DEFAULT_TIMERS,
        onTerminated: Callable[[_Transaction], object] | None = None,
    ) -> None:
        super().__init__(clock, send, request, addr, timers, onTerminated)
        self.state = TRYING

    def respond(self, response: SipResponse) -> None:
        """
        Send C{response} (ignored once a final response was sent).
        """
        if self.state not in (TRYING, PROCEEDING):
            return
        self._sendResponse(response)
        if response.code < 200:
            self.state = PROCEEDING
            return
        self._goto(COMPLETED)
        self._arm("J", self.timers.timeout, lambda: self._goto(TERMINATED))

    def requestReceived(self, request: SipRequest, addr: Addr) -> None:
        """
        A retransmission: the last response again (nothing while trying).
        """
        if self.state in (PROCEEDING, COMPLETED):
            self._resend()


# ---------------------------------------------------------------------------
# Client transactions


class ClientTransaction(_Transaction):
    """
    Base of client transactions.

    @ivar request: the request sent.
    @ivar result: fires with the final response, or fails with
        L{TransactionTimeout} (or C{CancelledError} when terminated first).
    @ivar onResponse: called with every response (provisional too) before
        C{result} fires.
    """

    def __init__(
        self,
        clock: IReactorTime,
        send: SendFn,
        request: SipRequest,
        addr: Addr,
        timers: TimerValues = DEFAULT_TIMERS,
        onTerminated: Callable[[_Transaction], object] | None = None,
        onResponse: Callable[[SipResponse], object] | None = None,
    ) -> None:
        super().__init__(clock, send, addr, timers, onTerminated)
        self.request = request
        self.onResponse = onResponse
        self.result: Deferred[SipResponse] = Deferred()
        self._requestBytes = request.toBytes()

    def _finish(self, response: SipResponse | None) -> None:
        if self.result.called:
            return
        if response is None:
            self.result.errback(
                TransactionTimeout(
                    f"no final response to {self.request.method} within {self.timers.timeout:g}s"
                )
            )
        else:
            self.result.callback(response)

    def terminate(self) -> None:
        super().terminate()
        if not self.result.called:
            self.result.errback(defer.CancelledError())

    def responseReceived(self, response: SipResponse) -> None:
        raise NotImplementedError()


class NonInviteClientTransaction(ClientTransaction):
    """
    RFC 3261 §17.1.2 (BYE, INFO, OPTIONS, REGISTER...).  The request is
    sent at construction.
    """

    def __init__(
        self,
        clock: IReactorTime,
        send: SendFn,
        request: SipRequest,
        addr: Addr,
        timers: TimerValues = DEFAULT_TIMERS,
        onTerminated: Callable[[_Transaction], object] | None = None,
        onResponse: Callable[[SipResponse], object] | None = None,
    ) -> None:
        super().__init__(clock, send, request, addr, timers, onTerminated, onResponse)
        self.state = TRYING
        self._write(self._requestBytes)
        self._interval = timers.t1
        self._arm("E", timers.t1, self._timerE)
        self._arm("F", timers.timeout, self._timerF)

    def _timerE(self) -> None:
        self._write(self._requestBytes)
        if self.state == TRYING:
            self._interval = min(2 * self._interval, self.timers.t2)
        else:
            self._interval = self.timers.t2
        self._arm("E", self._interval, self._timerE)

    def _timerF(self) -> None:
        self._goto(TERMINATED)
        self._finish(None)

    def responseReceived(self, response: SipResponse) -> None:
        """
        A response matched to this transaction.
        """
        if self.state in (COMPLETED, TERMINATED):
            return  # retransmission absorbed
        if self.onResponse is not None:
            self.onResponse(response)
        if response.code < 200:
            self.state = PROCEEDING
            return
        self._goto(COMPLETED)
        self._arm("K", self.timers.t4, lambda: self._goto(TERMINATED))
        self._finish(response)


class InviteClientTransaction(ClientTransaction):
    """
    RFC 3261 §17.1.1 with RFC 6026: the INVITE is sent at construction.
    A 300–699 response is ACKed here; a 2xx is handed on (the TU sends the
    ACK, and gets every 2xx retransmission through C{onResponse}).
    """

    def __init__(
        self,
        clock: IReactorTime,
        send: SendFn,
        request: SipRequest,
        addr: Addr,
        timers: TimerValues = DEFAULT_TIMERS,
        onTerminated: Callable[[_Transaction], object] | None = None,
        onResponse: Callable[[SipResponse], object] | None = None,
    ) -> None:
        super().__init__(clock, send, request, addr, timers, onTerminated, onResponse)
        self.state = CALLING
        self._ackBytes: bytes | None = None
        self._write(self._requestBytes)
        self._arm("A", timers.t1, lambda: self._timerA(timers.t1))
        self._arm("B", timers.timeout, self._timerB)

    def _timerA(self, interval: float) -> None:
        self._write(self._requestBytes)
        interval *= 2
        self._arm("A", interval, lambda: self._timerA(interval))

    def _timerB(self) -> None:
        self._goto(TERMINATED)
        self._finish(None)

    def _ackFor(self, response: SipResponse) -> bytes:
        """
        The ACK of a non-2xx final response (RFC 3261 §17.1.1.3).
        """
        request = self.request
        headers = [
            ("Via", request.getAll("Via")[0]),
            ("Max-Forwards", "70"),
            ("From", request.get("From") or ""),
            ("To", response.get("To") or ""),
            ("Call-ID", request.callId),
            ("CSeq", f"{request.cseq.number} ACK"),
        ]
        headers.extend(("Route", r) for r in request.getAll("Route"))
        return SipRequest("ACK", request.uri, headers).toBytes()

    def responseReceived(self, response: SipResponse) -> None:
        """
        A response matched to this transaction.
        """
        code = response.code
        state = self.state
        if state == COMPLETED:
            if code >= 300 and self._ackBytes is not None:
                self._write(self._ackBytes)
            return
        if state == TERMINATED:
            return
        if state == ACCEPTED:
            if 200 <= code < 300 and self.onResponse is not None:
                self.onResponse(response)
            return
        if self.onResponse is not None:
            self.onResponse(response)
        if code < 200:
            if state == CALLING:
                self._cancelTimers()
                self.state = PROCEEDING
                # Timer B no longer applies once a provisional arrived; a
                # UAC that wants a ringing limit CANCELs on its own.
            return
        if code < 300:
            self._goto(ACCEPTED)
            self._arm("M", self.timers.timeout, lambda: self._goto(TERMINATED))
        else:
            self._ackBytes = self._ackFor(response)
            self._write(self._ackBytes)
            self._goto(COMPLETED)
            self._arm("D", max(32.0, self.timers.timeout), lambda: self._goto(TERMINATED))
        self._finish(response)


# ---------------------------------------------------------------------------
# Matching


def serverKey(request: SipRequest, method: str | None = None) -> Hashable:
    """
    The server-transaction key of C{request} (RFC 3261 §17.2.3): the top
    C{Via} branch, sent-by and method, C{ACK} counting as C{INVITE}.  For
    a branch without the RFC 3261 magic cookie, the RFC 2543 rules: the
    Request-URI, From tag, Call-ID, CSeq number and top C{Via}.

    @param method: match as this method instead (C{"INVITE"} to find the
        transaction a C{CANCEL} cancels).
    """
    if method is None:
        method = request.method
        if method == "ACK":
            method = "INVITE"
    via = request.vias[0]
    branch = via.branch
    if branch is not None and via.isRfc3261Branch:
        return (branch, via.host.lower(), via.port, method)
    return (
        "rfc2543",
        request.uri.toString(),
        request.fromAddress.tag,
        request.callId,
        request.cseq.number,
        via.toString(),
        method,
    )


def clientKey(branch: str, method: str) -> Hashable:
    """
    The client-transaction key (RFC 3261 §17.1.3): our branch and the
    CSeq method (C{ACK}... never: ACKs have no client transaction).
    """
    return (branch, method)


class TransactionTable:
    """
    The live transactions of one core, by key; terminated transactions
    remove themselves.
    """

    def __init__(self) -> None:
        self.server: dict[Hashable, ServerTransaction] = {}
        self.client: dict[Hashable, ClientTransaction] = {}

    def __len__(self) -> int:
        return len(self.server) + len(self.client)

    def addServer(self, key: Hashable, txn: ServerTransaction) -> None:
        """
        Register C{txn} under C{key} until it terminates.
        """
        txn.key = key
        self.server[key] = txn
        txn._onTerminated = self._serverDone

    def addClient(self, key: Hashable, txn: ClientTransaction) -> None:
        """
        Register C{txn} under C{key} until it terminates (if it has not
        already).
        """
        if txn.state == TERMINATED:
            return
        txn.key = key
        self.client[key] = txn
        txn._onTerminated = self._clientDone

    def _serverDone(self, txn: _Transaction) -> None:
        if self.server.get(txn.key) is txn:
            del self.server[txn.key]

    def _clientDone(self, txn: _Transaction) -> None:
        if self.client.get(txn.key) is txn:
            del self.client[txn.key]

    def terminateAll(self) -> None:
        """
        Shutdown: every transaction stops (their timers are cancelled).
        """
        for txn in list(self.server.values()):
            txn.terminate()
        for ctxn in list(self.client.values()):
            ctxn.terminate()
