"""
Tests for L{rapida_twisted.sip._txn}: RFC 3261 §17 transactions driven by
a L{task.Clock}, sending into a list.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from rapida_twisted.sip._codec import SipRequest, SipResponse, parseMessage, responseFor
from rapida_twisted.sip._txn import (
    ACCEPTED,
    COMPLETED,
    CONFIRMED,
    PROCEEDING,
    TERMINATED,
    TRYING,
    InviteClientTransaction,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    TimerValues,
    TransactionTable,
    TransactionTimeout,
    clientKey,
    serverKey,
)

from ._udp import sipRequest

PEER = ("10.0.0.1", 5060)


def request(method: str = "INVITE", **kw: object) -> SipRequest:
    message = parseMessage(sipRequest(method, **kw))  # type: ignore[arg-type]
    assert isinstance(message, SipRequest)
    return message


class Wire:
    """
    The send callable: records (parsed message, addr, time).
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.sent: list[tuple[bytes, tuple[str, int], float]] = []

    def __call__(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr, self.clock.seconds()))

    def codes(self) -> list[int]:
        out = []
        for data, _, _ in self.sent:
            message = parseMessage(data)
            out.append(message.code if isinstance(message, SipResponse) else 0)
        return out

    def times(self) -> list[float]:
        return [round(t, 3) for _, _, t in self.sent]


def advance(clock: Clock, seconds: float) -> None:
    """
    Advance to C{seconds} from now, stopping at every timer on the way so
    each fires at its own time.
    """
    end = clock.seconds() + seconds
    while True:
        due = [c.getTime() for c in clock.getDelayedCalls() if c.getTime() <= end + 1e-9]
        if not due:
            break
        clock.advance(max(0.0, min(due) - clock.seconds()))
    clock.advance(max(0.0, end - clock.seconds()))


class InviteServerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.wire = Wire(self.clock)
        self.invite = request("INVITE")
        self.noAck: list[InviteServerTransaction] = []
        self.terminated: list[object] = []
        self.txn = InviteServerTransaction(
            self.clock,
            self.wire,
            self.invite,
            PEER,
            onTerminated=self.terminated.append,
            onNoAck=self.noAck.append,
        )

    def test_tryingAtOnce(self) -> None:
        self.assertEqual(self.wire.codes(), [100])
        self.assertEqual(self.wire.sent[0][1], PEER)
        self.assertEqual(self.txn.state, PROCEEDING)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_noTrying(self) -> None:
        wire = Wire(self.clock)
        InviteServerTransaction(self.clock, wire, self.invite, PEER, sendTrying=False)
        self.assertEqual(wire.sent, [])

    def test_retransmittedInviteGetsLastProvisional(self) -> None:
        self.txn.respond(responseFor(self.invite, 180, toTag="x"))
        self.txn.requestReceived(self.invite, PEER)
        self.assertEqual(self.wire.codes(), [100, 180, 180])

    def test_2xxRetransmittedUntilAck(self) -> None:
        self.txn.respond(responseFor(self.invite, 200, toTag="x"))
        self.assertEqual(self.txn.state, ACCEPTED)
        advance(self.clock, 8)
        # 0 (first send), then 0.5, 1.5, 3.5, 7.5: T1 doubling
        self.assertEqual(self.wire.times(), [0, 0, 0.5, 1.5, 3.5, 7.5])
        advance(self.clock, 8)
        # capped at T2 = 4 s
        self.assertEqual(self.wire.times()[-2:], [11.5, 15.5])
        self.txn.ackReceived()
        count = len(self.wire.sent)
        advance(self.clock, 10)
        self.assertEqual(len(self.wire.sent), count)
        self.assertEqual(self.noAck, [])
        advance(self.clock, 20)
        self.assertEqual(self.txn.state, TERMINATED)
        self.assertEqual(self.terminated, [self.txn])
        self.assertEqual(self.noAck, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_2xxNoAckGivesUp(self) -> None:
        self.txn.respond(responseFor(self.invite, 200, toTag="x"))
        advance(self.clock, 31.9)
        self.assertEqual(self.noAck, [])
        advance(self.clock, 0.2)
        self.assertEqual(self.noAck, [self.txn])
        self.assertEqual(self.txn.state, TERMINATED)
        # 1 + 10 retransmissions at 0.5, 1.5, 3.5, 7.5, 11.5 ... 31.5
        self.assertEqual(self.wire.codes().count(200), 11)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_retransmittedInviteAbsorbedWhenAccepted(self) -> None:
        self.txn.respond(responseFor(self.invite, 200, toTag="x"))
        self.txn.requestReceived(self.invite, PEER)
        self.assertEqual(self.wire.codes(), [100, 200])

    def test_non2xxRetransmittedUntilAck(self) -> None:
        self.txn.respond(responseFor(self.invite, 486, toTag="x"))
        self.assertEqual(self.txn.state, COMPLETED)
        advance(self.clock, 2)
        self.assertEqual(self.wire.codes(), [100, 486, 486, 486])
        self.txn.requestReceived(self.invite, PEER)  # retransmitted INVITE
        self.assertEqual(self.wire.codes()[-1], 486)
        ack = request("ACK", cseqMethod="ACK", toTag="x")
        self.txn.requestReceived(ack, PEER)
        self.assertEqual(self.txn.state, CONFIRMED)
        self.assertEqual(self.txn.pendingTimers, ("I",))
        count = len(self.wire.sent)
        self.txn.requestReceived(ack, PEER)  # absorbed
        advance(self.clock, 5)
        self.assertEqual(len(self.wire.sent), count)
        self.assertEqual(self.txn.state, TERMINATED)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_non2xxTimerH(self) -> None:
        self.txn.respond(responseFor(self.invite, 404, toTag="x"))
        advance(self.clock, 32)
        self.assertEqual(self.txn.state, TERMINATED)
        self.assertEqual(self.noAck, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_responseAfterFinalIgnored(self) -> None:
        self.txn.respond(responseFor(self.invite, 487, toTag="x"))
        self.txn.respond(responseFor(self.invite, 200, toTag="x"))
        self.assertEqual(self.wire.codes(), [100, 487])

    def test_terminateCancelsTimers(self) -> None:
        self.txn.respond(responseFor(self.invite, 200, toTag="x"))
        self.txn.terminate()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.terminated, [self.txn])

    def test_shorterTimers(self) -> None:
        clock = Clock()
        wire = Wire(clock)
        txn = InviteServerTransaction(
            clock, wire, self.invite, PEER, timers=TimerValues(0.1, 0.4, 1)
        )
        txn.respond(responseFor(self.invite, 200, toTag="x"))
        advance(clock, 7)
        self.assertEqual(txn.state, TERMINATED)


class NonInviteServerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.wire = Wire(self.clock)
        self.bye = request("BYE", toTag="x", cseq=2)
        self.txn = NonInviteServerTransaction(self.clock, self.wire, self.bye, PEER)

    def test_retransmissionWhileTryingAbsorbed(self) -> None:
        self.assertEqual(self.txn.state, TRYING)
        self.txn.requestReceived(self.bye, PEER)
        self.assertEqual(self.wire.sent, [])

    def test_finalResentForRetransmissions(self) -> None:
        self.txn.respond(responseFor(self.bye, 200))
        self.txn.requestReceived(self.bye, PEER)
        self.assertEqual(self.wire.codes(), [200, 200])
        self.assertEqual(self.wire.sent[0][0], self.wire.sent[1][0])

    def test_provisionalThenFinal(self) -> None:
        self.txn.respond(responseFor(self.bye, 100))
        self.assertEqual(self.txn.state, PROCEEDING)
        self.txn.requestReceived(self.bye, PEER)
        self.txn.respond(responseFor(self.bye, 200))
        self.txn.respond(responseFor(self.bye, 500))
        self.assertEqual(self.wire.codes(), [100, 100, 200])

    def test_timerJ(self) -> None:
        self.txn.respond(responseFor(self.bye, 200))
        self.assertEqual(self.txn.pendingTimers, ("J",))
        self.clock.advance(31.9)
        self.assertEqual(self.txn.state, COMPLETED)
        self.clock.advance(0.1)
        self.assertEqual(self.txn.state, TERMINATED)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class NonInviteClientTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.wire = Wire(self.clock)
        self.bye = request("BYE", toTag="x", cseq=2)
        self.seen: list[SipResponse] = []
        self.txn = NonInviteClientTransaction(
            self.clock, self.wire, self.bye, PEER, onResponse=self.seen.append
        )

    def test_retransmitsTimerE(self) -> None:
        advance(self.clock, 12)
        self.assertEqual(self.wire.times(), [0, 0.5, 1.5, 3.5, 7.5, 11.5])

    def test_provisionalSlowsToT2(self) -> None:
        advance(self.clock, 0.6)
        self.txn.responseReceived(responseFor(self.bye, 100))
        self.assertEqual(self.txn.state, PROCEEDING)
        advance(self.clock, 9)
        # 1.5 was armed before the 100; then every T2
        self.assertEqual(self.wire.times(), [0, 0.5, 1.5, 5.5, 9.5])

    def test_finalResponse(self) -> None:
        ok = responseFor(self.bye, 200)
        self.txn.responseReceived(ok)
        self.assertEqual(self.successResultOf(self.txn.result), ok)
        self.assertEqual(self.txn.pendingTimers, ("K",))
        self.txn.responseReceived(ok)  # absorbed
        self.assertEqual(self.seen, [ok])
        self.clock.advance(5)
        self.assertEqual(self.txn.state, TERMINATED)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_timeout(self) -> None:
        advance(self.clock, 32)
        self.failureResultOf(self.txn.result, TransactionTimeout)
        self.assertEqual(self.txn.state, TERMINATED)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_terminateCancels(self) -> None:
        self.txn.terminate()
        self.failureResultOf(self.txn.result, defer.CancelledError)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class InviteClientTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.wire = Wire(self.clock)
        self.invite = request("INVITE", branch="z9hG4bKclient")
        self.seen: list[SipResponse] = []
        self.txn = InviteClientTransaction(
            self.clock, self.wire, self.invite, PEER, onResponse=self.seen.append
        )

    def test_timerADoublesWithoutCap(self) -> None:
        advance(self.clock, 16)
        self.assertEqual(self.wire.times(), [0, 0.5, 1.5, 3.5, 7.5, 15.5])

    def test_timerB(self) -> None:
        advance(self.clock, 32)
        self.failureResultOf(self.txn.result, TransactionTimeout)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_provisionalStopsRetransmission(self) -> None:
        self.txn.responseReceived(responseFor(self.invite, 100))
        advance(self.clock, 40)
        self.assertEqual(len(self.wire.sent), 1)
        self.assertNoResult(self.txn.result)

    def test_non2xxAcked(self) -> None:
        busy = responseFor(self.invite, 486, toTag="remote")
        self.txn.responseReceived(busy)
        self.assertEqual(self.successResultOf(self.txn.result), busy)
        ack = parseMessage(self.wire.sent[-1][0])
        assert isinstance(ack, SipRequest)
        self.assertEqual(ack.method, "ACK")
        self.assertEqual(ack.get("Via"), self.invite.get("Via"))
        self.assertEqual(ack.toAddress.tag, "remote")
        self.assertEqual(ack.cseq.number, self.invite.cseq.number)
        self.txn.responseReceived(busy)  # retransmitted final: ACK again
        self.assertEqual(len(self.wire.sent), 3)
        advance(self.clock, 32)
        self.assertEqual(self.txn.state, TERMINATED)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_2xxLeftToTheTU(self) -> None:
        ok = responseFor(self.invite, 200, toTag="remote")
        self.txn.responseReceived(ok)
        self.assertEqual(self.txn.state, ACCEPTED)
        self.assertEqual(len(self.wire.sent), 1)  # no ACK from the transaction
        self.txn.responseReceived(ok)  # retransmission reaches the TU
        self.assertEqual(self.seen, [ok, ok])
        advance(self.clock, 32)
        self.assertEqual(self.txn.state, TERMINATED)


class MatchingTests(SynchronousTestCase):
    def test_ackMatchesInvite(self) -> None:
        invite = request("INVITE")
        ack = request("ACK", cseqMethod="ACK", toTag="x")
        self.assertEqual(serverKey(invite), serverKey(ack))

    def test_cancelKeyedApart(self) -> None:
        invite = request("INVITE")
        cancel = request("CANCEL", cseqMethod="CANCEL")
        self.assertNotEqual(serverKey(invite), serverKey(cancel))
        self.assertEqual(serverKey(invite), serverKey(cancel, "INVITE"))

    def test_sentByMatters(self) -> None:
        a = request("INVITE", sentBy="10.0.0.1:5060")
        b = request("INVITE", sentBy="10.0.0.2:5060")
        self.assertNotEqual(serverKey(a), serverKey(b))

    def test_branchMatters(self) -> None:
        a = request("OPTIONS", branch="z9hG4bKa")
        b = request("OPTIONS", branch="z9hG4bKb")
        self.assertNotEqual(serverKey(a), serverKey(b))

    def test_rfc2543Fallback(self) -> None:
        invite = request("INVITE", branch="old1")
        ack = request("ACK", cseqMethod="ACK", branch="old1", toTag="x")
        self.assertEqual(serverKey(invite), serverKey(ack))
        other = request("INVITE", branch="old1", fromTag="zz")
        self.assertNotEqual(serverKey(invite), serverKey(other))

    def test_clientKey(self) -> None:
        self.assertEqual(clientKey("z9hG4bKx", "BYE"), clientKey("z9hG4bKx", "BYE"))
        self.assertNotEqual(clientKey("z9hG4bKx", "BYE"), clientKey("z9hG4bKx", "INFO"))


class TableTests(SynchronousTestCase):
    def test_removedWhenTerminated(self) -> None:
        clock = Clock()
        wire = Wire(clock)
        table = TransactionTable()
        bye = request("BYE", toTag="x")
        txn = NonInviteServerTransaction(clock, wire, bye, PEER)
        table.addServer(serverKey(bye), txn)
        self.assertIs(table.server[serverKey(bye)], txn)
        txn.respond(responseFor(bye, 200))
        clock.advance(32)
        self.assertEqual(len(table), 0)

    def test_terminateAll(self) -> None:
        clock = Clock()
        wire = Wire(clock)
        table = TransactionTable()
        invite = request("INVITE")
        stxn = InviteServerTransaction(clock, wire, invite, PEER)
        table.addServer(serverKey(invite), stxn)
        stxn.respond(responseFor(invite, 200, toTag="t"))
        bye = request("BYE", toTag="x", branch="z9hG4bKout")
        ctxn = NonInviteClientTransaction(clock, wire, bye, PEER)
        table.addClient(clientKey("z9hG4bKout", "BYE"), ctxn)
        table.terminateAll()
        self.assertEqual(len(table), 0)
        self.assertEqual(clock.getDelayedCalls(), [])
        self.failureResultOf(ctxn.result, defer.CancelledError)
