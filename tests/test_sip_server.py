"""
Tests for the SIP server: the safety guards (L{rapida_twisted.sip._limits}),
the user-agent core (L{rapida_twisted.sip._core}) driven through the UDP
adapter (L{rapida_twisted.sip.sip}) on an in-memory UDP reactor, and the
tap wiring.
"""

from __future__ import annotations

import ipaddress

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from rapida_twisted.sip._limits import AllowList, RateLimiter


class AllowListTests(SynchronousTestCase):
    def test_emptyAllowsAll(self) -> None:
        allow = AllowList()
        self.assertFalse(allow)
        self.assertTrue(allow.allows("203.0.113.9"))

    def test_networks(self) -> None:
        allow = AllowList(
            [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32")]
        )
        self.assertTrue(allow)
        self.assertTrue(allow.allows("10.1.2.3"))
        self.assertTrue(allow.allows("10.1.2.3"))  # cached
        self.assertTrue(allow.allows("2001:db8::1"))
        self.assertFalse(allow.allows("192.0.2.1"))
        self.assertFalse(allow.allows("not-an-ip"))


class RateLimiterTests(SynchronousTestCase):
    def test_burstThenRate(self) -> None:
        clock = Clock()
        limiter = RateLimiter(clock, rate=10, burst=20)
        self.assertEqual(sum(limiter.allow("a") for _ in range(30)), 20)
        clock.advance(1)
        self.assertEqual(sum(limiter.allow("a") for _ in range(30)), 10)

    def test_sourcesApart(self) -> None:
        clock = Clock()
        limiter = RateLimiter(clock, rate=1, burst=2)
        for _ in range(10):
            limiter.allow("flood")
        self.assertTrue(limiter.allow("other"))

    def test_disabled(self) -> None:
        limiter = RateLimiter(Clock(), rate=0)
        self.assertFalse(limiter.enabled)
        self.assertTrue(all(limiter.allow("a") for _ in range(1000)))

    def test_reportRateLimited(self) -> None:
        clock = Clock()
        limiter = RateLimiter(clock, rate=1, burst=1, logInterval=10)
        self.assertEqual(limiter.reportDue("a"), 0)
        limiter.allow("a")
        for _ in range(5):
            limiter.allow("a")
        self.assertEqual(limiter.reportDue("a"), 5)
        limiter.allow("a")
        self.assertEqual(limiter.reportDue("a"), 0)  # within the interval
        clock.advance(10)
        limiter.allow("a")
        limiter.allow("a")
        self.assertEqual(limiter.reportDue("a"), 2)

    def test_boundedSources(self) -> None:
        limiter = RateLimiter(Clock(), rate=1, maxSources=3)
        for host in "abcde":
            limiter.allow(host)
        self.assertEqual(len(limiter._buckets), 3)


class ThrottleTests(SynchronousTestCase):
    def test_firstThenEveryInterval(self) -> None:
        from rapida_twisted.sip._limits import Throttle

        clock = Clock()
        throttle = Throttle(clock, interval=10)
        self.assertEqual(throttle.due("a"), 1)
        self.assertEqual([throttle.due("a") for _ in range(4)], [0, 0, 0, 0])
        self.assertEqual(throttle.due("b"), 1)
        clock.advance(10)
        self.assertEqual(throttle.due("a"), 5)
        self.assertEqual(throttle.due("a"), 0)


# --- the core through the UDP adapter -------------------------------------------------

from typing import Any  # noqa: E402

from rapida_twisted.config import parseConfig  # noqa: E402
from rapida_twisted.gateway import Gateway  # noqa: E402
from rapida_twisted.providers._base import PublicURLs  # noqa: E402
from rapida_twisted.sip._codec import (  # noqa: E402
    SipRequest,
    SipResponse,
    parseMessage,
)
from rapida_twisted.sip._digest import buildAuthorization, chooseChallenge  # noqa: E402
from rapida_twisted.sip._rtp import packRtp, parseRtp  # noqa: E402
from rapida_twisted.sip._sdp import parseSdp  # noqa: E402
from rapida_twisted.sip.sip import sipService  # noqa: E402
from rapida_twisted.store import MemoryContextStore  # noqa: E402

from ._udp import MemoryUDPReactor, sdpOffer, sipRequest  # noqa: E402

PEER = ("10.0.0.1", 5060)
SIP_PORT = 5090

ASSISTANTS = """
[[assistants]]
id = "bot"
kind = "echo"
numbers = ["+15550100"]

[[assistants]]
id = "slow"
kind = "echo"
options = { sip_ring_ms = 2000 }
"""


class Harness:
    """
    A SIP server on an in-memory UDP reactor with an in-memory store.
    """

    def __init__(
        self,
        assistants: str = ASSISTANTS,
        rtp: tuple[int, int] = (20000, 20099),
        routing: bool = False,
    ) -> None:
        self.reactor = MemoryUDPReactor(routing)
        self.store = MemoryContextStore(self.reactor)
        config = parseConfig(assistants)
        self.gateway = Gateway(
            self.reactor, self.store, config, PublicURLs("http://localhost:8080")
        )
        self.service = sipService(
            self.gateway, self.reactor, SIP_PORT, "127.0.0.1", rtp, advertise="192.0.2.10"
        )
        self.service.startService()
        self.core = self.service.core  # type: ignore[attr-defined]
        self.sip = self.reactor.udpPorts[SIP_PORT]

    def send(self, data: bytes, addr: tuple[str, int] = PEER) -> None:
        self.sip.deliver(data, addr)

    def received(self) -> list[tuple[SipRequest | SipResponse, tuple[str, int]]]:
        return [(parseMessage(data), addr) for data, addr in self.sip.take()]

    def codes(self) -> list[int]:
        return [m.code if isinstance(m, SipResponse) else 0 for m, _ in self.received()]

    def contexts(self) -> list[Any]:
        conn = self.store._conn
        assert conn is not None
        rows = conn.execute(
            "SELECT context_id, provider, assistant_id, channel_uuid, status, reason, caller, callee"
            " FROM call_contexts ORDER BY created_at"
        ).fetchall()
        return [tuple(r) for r in rows]

    def events(self, contextId: str) -> list[tuple[str, Any]]:
        events = self.successResult(self.store.listEvents(contextId))
        return [(e.kind, e.payload) for e in events]

    @staticmethod
    def successResult(d: Any) -> Any:
        out: list[Any] = []
        d.addBoth(out.append)
        return out[0]

    def invite(self, **kw: Any) -> SipResponse:
        """
        Send an INVITE; return the final response after 100.
        """
        kw.setdefault("body", sdpOffer())
        kw.setdefault("contentType", "application/sdp")
        self.send(sipRequest("INVITE", **kw))
        messages = self.received()
        final = [m for m, _ in messages if isinstance(m, SipResponse) and m.code >= 200]
        assert final, messages
        return final[-1]

    def ack(self, response: SipResponse, **kw: Any) -> None:
        kw.setdefault("branch", "z9hG4bKack1")
        self.send(
            sipRequest("ACK", toTag=response.toAddress.tag, cseqMethod="ACK", contact=None, **kw)
        )

    def tick(self, count: int) -> None:
        """
        Advance C{count} pacer ticks of 20 ms.
        """
        for _ in range(count):
            self.reactor.advance(0.02)

    def rtpPort(self, response: SipResponse) -> int:
        return parseSdp(response.body).media[0].port

    def stop(self) -> None:
        self.service.stopService()


class CoreTestBase(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness()

    def tearDown(self) -> None:
        self.h.stop()
        self.h.reactor.advance(40)


class OptionsAndMethodsTests(CoreTestBase):
    def test_options(self) -> None:
        self.h.send(sipRequest("OPTIONS", contact=None))
        [(response, addr)] = self.h.received()
        assert isinstance(response, SipResponse)
        self.assertEqual(response.code, 200)
        self.assertEqual(addr, PEER)
        self.assertIn("INVITE", response.get("Allow") or "")
        self.assertEqual(response.get("Accept"), "application/sdp")
        self.assertTrue(response.toAddress.tag)

    def test_retransmittedOptionsSameAnswer(self) -> None:
        self.h.send(sipRequest("OPTIONS"))
        self.h.send(sipRequest("OPTIONS"))
        first, second = self.h.sip.take()
        self.assertEqual(first, second)

    def test_unknownMethod501(self) -> None:
        self.h.send(sipRequest("FROB"))
        self.assertEqual(self.h.codes(), [501])

    def test_knownUnsupported405(self) -> None:
        self.h.send(sipRequest("SUBSCRIBE"))
        [(response, _)] = self.h.received()
        assert isinstance(response, SipResponse)
        self.assertEqual(response.code, 405)
        self.assertIn("INVITE", response.get("Allow") or "")

    def test_registerWithoutUsers405(self) -> None:
        self.h.send(sipRequest("REGISTER", uri="sip:127.0.0.1"))
        self.assertEqual(self.h.codes(), [405])

    def test_unknownDialog481(self) -> None:
        for method in ("BYE", "INFO", "UPDATE"):
            self.h.send(sipRequest(method, toTag="nope", branch=f"z9hG4bK{method}"))
        self.h.send(sipRequest("BYE", branch="z9hG4bKnotag"))
        self.assertEqual(self.h.codes(), [481, 481, 481, 481])

    def test_cancelWithoutInvite481(self) -> None:
        self.h.send(sipRequest("CANCEL"))
        self.assertEqual(self.h.codes(), [481])

    def test_rportHonoured(self) -> None:
        self.h.send(sipRequest("OPTIONS", rport=True), ("203.0.113.5", 40123))
        [(response, addr)] = self.h.received()
        self.assertEqual(addr, ("203.0.113.5", 40123))
        via = response.vias[0]
        self.assertEqual(via.received, "203.0.113.5")
        self.assertEqual(via.rport, 40123)

    def test_noRportUsesViaPort(self) -> None:
        self.h.send(sipRequest("OPTIONS", sentBy="10.0.0.9:5070"), ("10.0.0.1", 40000))
        [(response, addr)] = self.h.received()
        self.assertEqual(addr, ("10.0.0.1", 5070))
        self.assertEqual(response.vias[0].received, "10.0.0.1")


class MalformedTests(CoreTestBase):
    def test_missingCallId400(self) -> None:
        raw = sipRequest("OPTIONS").replace(b"Call-ID: call-1@test\r\n", b"")
        self.h.send(raw)
        [(data, addr)] = self.h.sip.take()
        self.assertTrue(data.startswith(b"SIP/2.0 400 Bad Request (missing Call-ID)\r\n"), data)
        self.assertIn(b"CSeq: 1 OPTIONS\r\n", data)
        self.assertEqual(addr, PEER)

    def test_bodyShorterThanContentLength400(self) -> None:
        raw = sipRequest("INVITE", body=b"v=0\r\n", contentType="application/sdp")
        raw = raw.replace(b"Content-Length: 5", b"Content-Length: 500")
        self.h.send(raw)
        self.assertEqual(self.h.codes(), [400])

    def test_garbageDropped(self) -> None:
        for data in (b"\x00\x01garbage", b"SIP/2.0 200 OK\r\n\r\n", b"\r\n\r\n", b"ACK x"):
            self.h.send(data)
        self.assertEqual(self.h.sip.take(), [])

    def test_metricCounted(self) -> None:
        self.h.send(b"hello")
        value = self.h.gateway.metrics.protocolErrors.labels("sip", "malformed")._value.get()
        self.assertEqual(value, 1)


class InviteTests(CoreTestBase):
    def test_answerAndHangUp(self) -> None:
        self.h.send(sipRequest("INVITE", body=sdpOffer(), contentType="application/sdp"))
        messages = self.h.received()
        self.assertEqual([m.code for m, _ in messages], [100, 200])  # type: ignore[union-attr]
        ok = messages[1][0]
        assert isinstance(ok, SipResponse)
        self.assertEqual(ok.get("Contact"), "<sip:echo@192.0.2.10:5090>")
        self.assertEqual(ok.contentType, "application/sdp")
        sdp = parseSdp(ok.body)
        self.assertEqual(sdp.connection.address if sdp.connection else None, "192.0.2.10")
        media = sdp.media[0]
        self.assertEqual(media.formats, ("0", "101"))
        self.assertEqual(media.port % 2, 0)
        self.assertIn(media.port, self.h.reactor.udpPorts)
        self.assertIn(media.port + 1, self.h.reactor.udpPorts)
        [context] = self.h.contexts()
        self.assertEqual(context[1:5], ("sip", "echo", "call-1@test", "claimed"))
        self.h.ack(ok)
        # media flows: the session sends comfort silence every 20 ms
        rtp = self.h.reactor.udpPorts[media.port]
        self.h.tick(5)
        packets = [parseRtp(d) for d, _ in rtp.take()]
        self.assertGreaterEqual(len(packets), 4)
        self.assertEqual({p.payloadType for p in packets}, {0})
        self.assertEqual(rtp.written, [])
        self.h.send(sipRequest("BYE", toTag=ok.toAddress.tag, cseq=2, branch="z9hG4bKbye"))
        self.assertEqual(self.h.codes(), [200])
        [context] = self.h.contexts()
        self.assertEqual(context[4:6], ("completed", "remote_bye"))
        self.assertNotIn(media.port, self.h.reactor.udpPorts)
        kinds = [k for k, _ in self.h.events(context[0])]
        self.assertEqual(kinds[0], "start")
        self.assertEqual(kinds[-1], "ended")
        self.assertEqual(self.h.core.calls, {})

    def test_callerPreference(self) -> None:
        ok = self.h.invite(body=sdpOffer(formats=(8, 0, 101)))
        self.assertEqual(parseSdp(ok.body).media[0].formats, ("8", "101"))

    def test_noTelephoneEventWhenNotOffered(self) -> None:
        ok = self.h.invite(body=sdpOffer(formats=(0,)))
        self.assertEqual(parseSdp(ok.body).media[0].formats, ("0",))

    def test_noCommonCodec488(self) -> None:
        ports = dict(self.h.reactor.udpPorts)
        response = self.h.invite(body=sdpOffer(formats=(18,)))
        self.assertEqual(response.code, 488)
        self.assertEqual(self.h.reactor.udpPorts, ports)
        self.assertEqual(self.h.contexts(), [])

    def test_badSdp400(self) -> None:
        self.assertEqual(self.h.invite(body=b"v=1\r\nnonsense").code, 400)

    def test_wrongContentType415(self) -> None:
        response = self.h.invite(body=b"<xml/>", contentType="application/xml")
        self.assertEqual(response.code, 415)
        self.assertEqual(response.get("Accept"), "application/sdp")

    def test_unknownUser404(self) -> None:
        self.assertEqual(self.h.invite(uri="sip:nobody@127.0.0.1:5090").code, 404)
        self.assertEqual(self.h.contexts(), [])

    def test_numberRoutes(self) -> None:
        ok = self.h.invite(uri="sip:15550100@127.0.0.1:5090")
        self.assertEqual(ok.code, 200)
        self.assertEqual(self.h.contexts()[0][2], "bot")

    def test_assistantIdRoutes(self) -> None:
        self.h.invite(uri="sip:bot@127.0.0.1:5090")
        self.assertEqual(self.h.contexts()[0][2], "bot")

    def test_telUri416(self) -> None:
        self.assertEqual(self.h.invite(uri="tel:+15550100").code, 416)

    def test_require420(self) -> None:
        response = self.h.invite(extra=(("Require", "100rel"),))
        self.assertEqual(response.code, 420)
        self.assertEqual(response.get("Unsupported"), "100rel")

    def test_retransmittedInviteOneCall(self) -> None:
        raw = sipRequest("INVITE", body=sdpOffer(), contentType="application/sdp")
        self.h.send(raw)
        self.h.send(raw)
        self.assertEqual(self.h.codes(), [100, 200])
        self.assertEqual(len(self.h.contexts()), 1)
        self.assertEqual(len(self.h.core.calls), 1)

    def test_2xxRetransmittedThenNoAck(self) -> None:
        ok = self.h.invite()
        self.h.reactor.advance(0.5)
        self.assertEqual(self.h.codes(), [200])
        for _ in range(70):
            self.h.reactor.advance(0.5)
        messages = self.h.received()
        byes = [m for m, _ in messages if isinstance(m, SipRequest) and m.method == "BYE"]
        self.assertEqual(len({b.vias[0].branch for b in byes}), 1)  # one BYE, retransmitted
        bye = byes[0]
        self.assertEqual(bye.toAddress.tag, "ft1")
        self.assertEqual(bye.fromAddress.tag, ok.toAddress.tag)
        self.assertEqual(bye.uri.toString(), "sip:alice@10.0.0.1:5060")
        [context] = self.h.contexts()
        self.assertEqual(context[4:6], ("failed", "no_ack"))

    def test_maxDialogs503(self) -> None:
        h = Harness(ASSISTANTS + "\n[sip]\nmax_dialogs = 1\n")
        self.addCleanup(h.stop)
        self.assertEqual(h.invite(callId="a").code, 200)
        response = h.invite(callId="b", branch="z9hG4bKother", fromTag="other")
        self.assertEqual(response.code, 503)
        self.assertEqual(response.get("Retry-After"), "5")

    def test_portsExhausted503(self) -> None:
        h = Harness(rtp=(20000, 20001))
        self.addCleanup(h.stop)
        self.assertEqual(h.invite(callId="a").code, 200)
        response = h.invite(callId="b", branch="z9hG4bKother", fromTag="other")
        self.assertEqual(response.code, 503)

    def test_storeDown503(self) -> None:
        self.h.store.unavailable = True
        response = self.h.invite()
        self.assertEqual(response.code, 503)
        self.assertEqual(self.h.core.calls, {})
        self.assertEqual(self.h.core.ports.inUse, 0)

    def test_delayedOffer(self) -> None:
        ok = self.h.invite(body=b"", contentType=None)
        self.assertEqual(ok.code, 200)
        offer = parseSdp(ok.body)
        self.assertEqual(offer.media[0].formats, ("0", "8", "101"))
        answer = sdpOffer(formats=(8, 101))
        self.h.send(
            sipRequest(
                "ACK",
                toTag=ok.toAddress.tag,
                cseqMethod="ACK",
                branch="z9hG4bKack",
                body=answer,
                contentType="application/sdp",
            )
        )
        call = next(iter(self.h.core.calls.values()))
        self.assertEqual(call.rtp.audioFormat.codec, "alaw")
        self.assertEqual(call.state, "confirmed")

    def test_serverStopSendsBye(self) -> None:
        ok = self.h.invite()
        self.h.ack(ok)
        self.h.received()
        self.h.stop()
        [(bye, _)] = self.h.received()
        assert isinstance(bye, SipRequest)
        self.assertEqual(bye.method, "BYE")
        self.assertEqual(self.h.core.ports.inUse, 0)
        self.assertEqual(self.h.contexts()[0][4], "completed")


class CancelTests(CoreTestBase):
    def test_cancelWhileRinging(self) -> None:
        self.h.send(
            sipRequest(
                "INVITE",
                uri="sip:slow@127.0.0.1:5090",
                body=sdpOffer(),
                contentType="application/sdp",
            )
        )
        self.assertEqual(self.h.codes(), [100, 180])
        self.h.send(sipRequest("CANCEL", uri="sip:slow@127.0.0.1:5090", contact=None))
        messages = self.h.received()
        by = {(m.code, m.cseq.method) for m, _ in messages if isinstance(m, SipResponse)}
        self.assertEqual(by, {(200, "CANCEL"), (487, "INVITE")})
        [context] = self.h.contexts()
        self.assertEqual(context[4:6], ("failed", "cancelled"))
        self.assertEqual(self.h.core.ports.inUse, 0)
        # the ACK of the 487 is absorbed by the transaction
        self.h.send(sipRequest("ACK", uri="sip:slow@127.0.0.1:5090", cseqMethod="ACK", toTag="x"))
        self.h.reactor.advance(3)
        self.assertEqual(self.h.sip.take(), [])

    def test_cancelAfterAnswerDoesNothing(self) -> None:
        ok = self.h.invite()
        self.h.send(sipRequest("CANCEL", contact=None))
        self.assertEqual(self.h.codes(), [200])
        self.assertEqual(self.h.contexts()[0][4], "claimed")
        self.h.ack(ok)
        self.assertEqual(len(self.h.core.calls), 1)

    def test_ringThenAnswer(self) -> None:
        self.h.send(
            sipRequest(
                "INVITE",
                uri="sip:slow@127.0.0.1:5090",
                body=sdpOffer(),
                contentType="application/sdp",
            )
        )
        self.assertEqual(self.h.codes(), [100, 180])
        self.h.reactor.advance(2)
        self.assertEqual(self.h.codes(), [200])


class InDialogTests(CoreTestBase):
    def setUp(self) -> None:
        super().setUp()
        self.ok = self.h.invite()
        self.h.ack(self.ok)
        self.tag = self.ok.toAddress.tag
        self.call = next(iter(self.h.core.calls.values()))
        self.contextId = self.h.contexts()[0][0]

    def test_infoDtmf(self) -> None:
        self.h.send(
            sipRequest(
                "INFO",
                toTag=self.tag,
                cseq=2,
                branch="z9hG4bKinfo",
                body=b"Signal=5\r\nDuration=160\r\n",
                contentType="application/dtmf-relay",
            )
        )
        self.assertEqual(self.h.codes(), [200])
        self.assertIn(("dtmf", {"digit": "5"}), self.h.events(self.contextId))

    def test_infoOtherType415(self) -> None:
        self.h.send(
            sipRequest("INFO", toTag=self.tag, cseq=2, body=b"x", contentType="application/foo")
        )
        self.assertEqual(self.h.codes(), [415])

    def test_rfc4733Dtmf(self) -> None:
        port = self.h.rtpPort(self.ok)
        rtp = self.h.reactor.udpPorts[port]
        event = bytes([7, 0x0A, 0, 160])
        end = bytes([7, 0x8A, 3, 0x20])
        for i, (payload, marker) in enumerate(
            [(event, True), (event, False), (end, False), (end, False), (end, False)]
        ):
            rtp.deliver(packRtp(101, 100 + i, 8000, 1234, payload, marker), ("10.0.0.1", 30000))
        dtmf = [p for k, p in self.h.events(self.contextId) if k == "dtmf"]
        self.assertEqual(dtmf, [{"digit": "7"}])

    def test_lowerCSeq500(self) -> None:
        self.h.send(sipRequest("INFO", toTag=self.tag, cseq=0, branch="z9hG4bKlow"))
        self.assertEqual(self.h.codes(), [500])

    def test_optionsInDialog(self) -> None:
        self.h.send(sipRequest("OPTIONS", toTag=self.tag, cseq=2))
        self.assertEqual(self.h.codes(), [200])

    def test_holdAndResume(self) -> None:
        port = self.h.rtpPort(self.ok)
        rtp = self.h.reactor.udpPorts[port]
        version = parseSdp(self.ok.body).origin.sessionVersion
        self.h.send(
            sipRequest(
                "INVITE",
                toTag=self.tag,
                cseq=2,
                branch="z9hG4bKhold",
                body=sdpOffer(direction="sendonly", version=2),
                contentType="application/sdp",
            )
        )
        messages = self.h.received()
        ok = messages[-1][0]
        assert isinstance(ok, SipResponse)
        self.assertEqual(ok.code, 200)
        answer = parseSdp(ok.body)
        self.assertEqual(answer.media[0].direction, "recvonly")
        self.assertEqual(answer.origin.sessionVersion, version + 1)
        self.h.send(
            sipRequest("ACK", toTag=self.tag, cseq=2, cseqMethod="ACK", branch="z9hG4bKhack")
        )
        rtp.take()
        self.h.tick(10)
        self.assertEqual(rtp.take(), [])  # on hold: we do not send
        # session refresh without SDP change... then resume
        self.h.send(
            sipRequest(
                "INVITE",
                toTag=self.tag,
                cseq=3,
                branch="z9hG4bKresume",
                body=sdpOffer(version=3),
                contentType="application/sdp",
            )
        )
        ok = self.h.received()[-1][0]
        assert isinstance(ok, SipResponse)
        answer = parseSdp(ok.body)
        self.assertEqual(answer.media[0].direction, "sendrecv")
        self.assertEqual(answer.origin.sessionVersion, version + 2)
        self.h.send(
            sipRequest("ACK", toTag=self.tag, cseq=3, cseqMethod="ACK", branch="z9hG4bKrack")
        )
        self.h.tick(5)
        packets = [parseRtp(d) for d, _ in rtp.take()]
        self.assertTrue(packets)
        self.assertTrue(packets[0].marker)

    def test_refreshKeepsVersion(self) -> None:
        version = parseSdp(self.ok.body).origin.sessionVersion
        self.h.send(
            sipRequest(
                "UPDATE",
                toTag=self.tag,
                cseq=2,
                body=sdpOffer(),
                contentType="application/sdp",
            )
        )
        ok = self.h.received()[-1][0]
        assert isinstance(ok, SipResponse)
        self.assertEqual(parseSdp(ok.body).origin.sessionVersion, version)

    def test_reinviteOtherCodec488(self) -> None:
        self.h.send(
            sipRequest(
                "INVITE",
                toTag=self.tag,
                cseq=2,
                branch="z9hG4bKre",
                body=sdpOffer(formats=(8,)),
                contentType="application/sdp",
            )
        )
        self.assertEqual(self.h.codes(), [100, 488])
        self.assertEqual(self.call.state, "confirmed")

    def test_mediaTimeout(self) -> None:
        self.h.reactor.advance(31)
        byes = [m for m, _ in self.h.received() if isinstance(m, SipRequest)]
        self.assertEqual([b.method for b in byes], ["BYE"])
        self.assertEqual(self.h.contexts()[0][4:6], ("failed", "media_timeout"))

    def test_assistantHangup(self) -> None:
        assert self.call.session is not None
        self.call.session.hangup("done")
        byes = [m for m, _ in self.h.received() if isinstance(m, SipRequest)]
        self.assertEqual([b.method for b in byes], ["BYE"])
        self.assertEqual(self.h.contexts()[0][4], "completed")
        self.assertEqual(self.h.core.calls, {})

    def test_echo(self) -> None:
        port = self.h.rtpPort(self.ok)
        rtp = self.h.reactor.udpPorts[port]
        tone = bytes(range(0, 160))
        for i in range(20):
            rtp.deliver(packRtp(0, 500 + i, 1000 + 160 * i, 99, tone), ("10.0.0.1", 30000))
            self.h.tick(1)
        self.h.tick(10)
        sent = [parseRtp(d) for d, _ in rtp.take()]
        self.assertTrue(all(addr == ("10.0.0.1", 30000) for _, addr in rtp.written))
        loud = [p for p in sent if p.payload != b"\xff" * 160]
        self.assertGreater(len(loud), 10)
        seqs = [p.sequence for p in sent]
        self.assertEqual(seqs, [(seqs[0] + i) & 0xFFFF for i in range(len(seqs))])


class SafetyTests(SynchronousTestCase):
    def test_allowListDropsSilently(self) -> None:
        h = Harness(ASSISTANTS + '\n[sip]\nallow_from = ["10.0.0.0/8"]\n')
        self.addCleanup(h.stop)
        h.send(sipRequest("OPTIONS"), ("192.0.2.99", 5060))
        self.assertEqual(h.sip.take(), [])
        h.send(sipRequest("OPTIONS", branch="z9hG4bKok"), ("10.9.9.9", 5060))
        self.assertEqual(h.codes(), [200])

    def test_floodDroppedOthersServed(self) -> None:
        h = Harness(ASSISTANTS + "\n[sip]\nrate_limit = 10\n")
        self.addCleanup(h.stop)
        for i in range(100):
            h.send(sipRequest("OPTIONS", branch=f"z9hG4bKf{i}"), ("198.51.100.1", 5060))
        answered = len(h.sip.take())
        self.assertEqual(answered, 20)  # the burst
        h.send(sipRequest("OPTIONS", branch="z9hG4bKgood"), ("10.0.0.1", 5060))
        self.assertEqual(h.codes(), [200])
        h.reactor.advance(1)
        h.send(sipRequest("OPTIONS", branch="z9hG4bKlater"), ("198.51.100.1", 5060))
        self.assertEqual(h.codes(), [200])


USERS = ASSISTANTS + '\n[sip]\nrealm = "test"\nusers = { alice = "s3cret" }\n'
USERS_OPEN = ASSISTANTS


class DigestTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness(USERS)
        self.addCleanup(self.h.stop)

    def challenge(self, method: str, **kw: Any) -> SipResponse:
        self.h.send(sipRequest(method, **kw))
        response = self.h.received()[-1][0]
        assert isinstance(response, SipResponse)
        return response

    def authorised(
        self, method: str, response: SipResponse, password: str = "s3cret", **kw: Any
    ) -> SipResponse:
        challenge = chooseChallenge(response.getAll("WWW-Authenticate"))
        uri = kw.get("uri", "sip:echo@127.0.0.1:5090")
        credentials = buildAuthorization(
            challenge, method=method, uri=uri, username="alice", password=password
        )
        extra = kw.pop("extra", ())
        self.h.send(
            sipRequest(method, extra=(*extra, ("Authorization", credentials.toHeaderValue())), **kw)
        )
        final = [m for m, _ in self.h.received() if isinstance(m, SipResponse) and m.code >= 200]
        return final[-1]

    def test_registerChallengedWithBothAlgorithms(self) -> None:
        response = self.challenge("REGISTER", uri="sip:echo@127.0.0.1:5090")
        self.assertEqual(response.code, 401)
        values = response.getAll("WWW-Authenticate")
        self.assertEqual(len(values), 2)
        self.assertIn("algorithm=SHA-256", values[0])
        self.assertIn("algorithm=MD5", values[1])
        ok = self.authorised(
            "REGISTER", response, cseq=2, branch="z9hG4bKr2", extra=(("Expires", "7200"),)
        )
        self.assertEqual(ok.code, 200)
        self.assertEqual(ok.get("Expires"), "3600")

    def test_wrongPassword403(self) -> None:
        response = self.challenge("REGISTER", uri="sip:echo@127.0.0.1:5090")
        bad = self.authorised("REGISTER", response, password="nope", cseq=2, branch="z9hG4bKr2")
        self.assertEqual(bad.code, 403)

    def test_nonceSingleUse(self) -> None:
        response = self.challenge("REGISTER", uri="sip:echo@127.0.0.1:5090")
        self.assertEqual(
            self.authorised("REGISTER", response, cseq=2, branch="z9hG4bKr2").code, 200
        )
        again = self.authorised("REGISTER", response, cseq=3, branch="z9hG4bKr3")
        self.assertEqual(again.code, 401)
        self.assertIn("stale=true", again.getAll("WWW-Authenticate")[0])

    def test_nonceExpires(self) -> None:
        response = self.challenge("REGISTER", uri="sip:echo@127.0.0.1:5090")
        self.h.reactor.advance(301)
        late = self.authorised("REGISTER", response, cseq=2, branch="z9hG4bKr2")
        self.assertEqual(late.code, 401)

    def test_inviteAuthenticated(self) -> None:
        response = self.challenge("INVITE", body=sdpOffer(), contentType="application/sdp")
        self.assertEqual(response.code, 401)
        self.assertEqual(self.h.contexts(), [])
        ok = self.authorised(
            "INVITE",
            response,
            cseq=2,
            branch="z9hG4bKi2",
            body=sdpOffer(),
            contentType="application/sdp",
        )
        self.assertEqual(ok.code, 200)
        self.assertEqual(len(self.h.contexts()), 1)


class TapTests(SynchronousTestCase):
    """
    C{--sip}, C{--rtp-ports} and C{--sip-advertise} reach the SIP service.
    """

    def options(self, *argv: str, environ: dict[str, str] | None = None) -> Any:
        from rapida_twisted.tap import Options

        options = Options(environ=environ or {})
        options.parseOptions(["--audiosocket", "none", *argv])
        return options

    def test_advertiseFromEnvironment(self) -> None:
        options = self.options(environ={"RAPIDA_SIP_ADVERTISE": "203.0.113.7"})
        self.assertEqual(options.sipAdvertise, "203.0.113.7")
        self.assertEqual(self.options("--sip-advertise", "2001:db8::1").sipAdvertise, "2001:db8::1")

    def test_advertiseMustBeAnAddress(self) -> None:
        from twisted.python.usage import UsageError

        self.assertRaises(UsageError, self.options, "--sip-advertise", "example.com")

    def test_listener(self) -> None:
        from rapida_twisted.tap import _listeners

        options = self.options(
            "--sip",
            "udp:5999:interface=127.0.0.1",
            "--rtp-ports",
            "21000-21009",
            "--sip-advertise",
            "198.51.100.2",
        )
        h = Harness()
        self.addCleanup(h.stop)
        [sip] = _listeners(options, h.gateway, h.reactor)
        sip.startService()
        self.addCleanup(sip.stopService)
        self.assertEqual(h.reactor.udpPorts[5999].interface, "127.0.0.1")
        core = sip.core  # type: ignore[attr-defined]
        self.assertEqual(core.advertise, "198.51.100.2")
        self.assertEqual((core.ports.low, core.ports.high), (21000, 21009))
        self.assertEqual(core.port, 5999)

    def test_noSip(self) -> None:
        from rapida_twisted.tap import _listeners

        h = Harness()
        self.addCleanup(h.stop)
        self.assertEqual(_listeners(self.options("--sip", "none"), h.gateway, h.reactor), [])


class UacTests(SynchronousTestCase):
    """
    L{rapida_twisted.sip.uac} against the server, both on one in-memory
    UDP reactor that routes datagrams between their ports.
    """

    def setUp(self) -> None:
        from rapida_twisted.sip.uac import UserAgentClient

        self.h = Harness(USERS_OPEN, routing=True)
        self.addCleanup(self.h.stop)
        self.uac = UserAgentClient(self.h.reactor, "127.0.0.1")

    def elapse(self, seconds: float) -> None:
        # a hair over 20 ms per step: sums of floats never land just short
        # of a pacer deadline (which task.Clock would then fire a tick late)
        for _ in range(round(seconds / 0.02)):
            self.h.reactor.advance(0.0200001)

    def test_callEchoDtmfHangup(self) -> None:
        from rapida_twisted.media.analysis import correlation, speechLike

        source = speechLike(3.0, 8000, seed=3)
        call = self.uac.call("sip:echo@127.0.0.1:5090", source=source)
        self.elapse(0.1)
        self.assertIs(self.successResultOf(call.answered), call)
        self.assertEqual(call.codec, "PCMU")
        self.elapse(1.5)
        call.sendDtmf("7#")
        self.elapse(1.5)
        response = call.hangup()
        self.elapse(0.1)
        self.assertEqual(self.successResultOf(response).code, 200)  # type: ignore[union-attr]
        self.assertEqual(self.successResultOf(call.ended), "local_bye")
        [context] = self.h.contexts()
        self.assertEqual(context[4:6], ("completed", "remote_bye"))
        digits = [p["digit"] for k, p in self.h.events(context[0]) if k == "dtmf"]
        self.assertEqual(digits, ["7", "#"])
        heard = call.heard()
        self.assertGreater(len(heard), 2 * 8000 * 2)
        # before the DTMF (which takes the place of audio and shifts it)
        coefficient, lag = correlation(source[: 2 * 8000], heard[: 2 * 11200], 4000)
        self.assertGreater(coefficient, 0.8)
        self.assertGreater(lag, 0)
        self.assertEqual(call.stats.lost, 0)
        self.assertGreater(call.stats.packetsReceived, 140)
        self.assertLess(call.stats.jitterP99(), 0.001)

    def test_pcmaPreferred(self) -> None:
        call = self.uac.call("sip:echo@127.0.0.1:5090", codecs=("PCMA", "PCMU"))
        self.elapse(0.1)
        self.assertEqual(self.successResultOf(call.answered).codec, "PCMA")

    def test_notFound(self) -> None:
        from rapida_twisted.sip.uac import CallFailed

        call = self.uac.call("sip:nobody@127.0.0.1:5090")
        self.elapse(0.1)
        failure = self.failureResultOf(call.answered, CallFailed)
        self.assertEqual(failure.value.code, 404)
        self.assertTrue(self.successResultOf(call.ended).startswith("failed 404"))

    def test_cancelWhileRinging(self) -> None:
        from rapida_twisted.sip.uac import CallFailed

        call = self.uac.call("sip:slow@127.0.0.1:5090")
        self.elapse(0.1)
        self.assertEqual(call.provisional, [100, 180])
        call.hangup()
        self.elapse(0.1)
        self.assertEqual(self.failureResultOf(call.answered, CallFailed).value.code, 487)
        self.assertEqual(self.h.contexts()[0][4:6], ("failed", "cancelled"))

    def test_serverHangsUp(self) -> None:
        call = self.uac.call("sip:echo@127.0.0.1:5090")
        self.elapse(0.1)
        [server] = self.h.core.calls.values()
        assert server.session is not None
        server.session.hangup("goodbye")
        self.elapse(0.1)
        self.assertEqual(self.successResultOf(call.ended), "remote_bye")

    def test_digest(self) -> None:
        from rapida_twisted.sip.uac import CallFailed, UserAgentClient

        h = Harness(USERS, routing=True)
        self.addCleanup(h.stop)
        good = UserAgentClient(h.reactor, "127.0.0.1", username="alice", password="s3cret")
        call = good.call("sip:echo@127.0.0.1:5090")
        for _ in range(5):
            h.reactor.advance(0.02)
        self.assertEqual(self.successResultOf(call.answered).codec, "PCMU")
        bad = UserAgentClient(h.reactor, "127.0.0.1", username="alice", password="wrong")
        call = bad.call("sip:echo@127.0.0.1:5090")
        for _ in range(5):
            h.reactor.advance(0.02)
        self.assertEqual(self.failureResultOf(call.answered, CallFailed).value.code, 403)

    def test_stop(self) -> None:
        call = self.uac.call("sip:echo@127.0.0.1:5090")
        self.elapse(0.1)
        d = self.uac.stop()
        self.elapse(0.1)
        self.successResultOf(d)
        self.assertEqual(self.successResultOf(call.ended), "local_bye")
        self.assertEqual(self.h.core.calls, {})


class EarlyDialogTests(CoreTestBase):
    def test_byeWhileRinging(self) -> None:
        self.h.send(
            sipRequest(
                "INVITE",
                uri="sip:slow@127.0.0.1:5090",
                body=sdpOffer(),
                contentType="application/sdp",
            )
        )
        ringing = self.h.received()[-1][0]
        assert isinstance(ringing, SipResponse)
        self.assertEqual(ringing.code, 180)
        self.h.send(
            sipRequest(
                "BYE",
                uri="sip:slow@127.0.0.1:5090",
                toTag=ringing.toAddress.tag,
                cseq=2,
                branch="z9hG4bKearlybye",
            )
        )
        answers = {
            (m.code, m.cseq.method) for m, _ in self.h.received() if isinstance(m, SipResponse)
        }
        self.assertEqual(answers, {(200, "BYE"), (487, "INVITE")})
        self.assertEqual(self.h.contexts()[0][4], "failed")
        self.h.reactor.advance(3)
        later = {m.code for m, _ in self.h.received() if isinstance(m, SipResponse)}
        self.assertEqual(later, {487})  # retransmitted until ACKed; no 200 after the ring


class FuzzTests(SynchronousTestCase):
    """
    Whatever arrives, C{datagramReceived} neither raises nor logs a
    failure (trial fails a test that logs one), and what is sent back is
    a response (or our BYE).
    """

    TEMPLATES = [
        sipRequest("INVITE", body=sdpOffer(), contentType="application/sdp"),
        sipRequest("OPTIONS"),
        sipRequest("BYE", toTag="x", cseq=2),
        sipRequest("CANCEL"),
        sipRequest("ACK", cseqMethod="ACK", toTag="x"),
        sipRequest("REGISTER", extra=(("Authorization", 'Digest username="a", realm="r"'),)),
        sipRequest(
            "INFO",
            toTag="x",
            body=b"Signal=5\r\nDuration=100\r\n",
            contentType="application/dtmf-relay",
        ),
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKx\r\nCSeq: 1 BYE\r\n\r\n",
    ]

    def setUp(self) -> None:
        self.h = Harness(USERS + "rate_limit = 0\n")

    def tearDown(self) -> None:
        self.h.stop()
        self.h.reactor.advance(40)

    @settings(
        max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(
        template=st.integers(0, 7),
        edits=st.lists(
            st.tuples(st.integers(0, 2000), st.integers(0, 255), st.sampled_from("rdi")),
            max_size=6,
        ),
        cut=st.one_of(st.none(), st.integers(0, 2000)),
    )
    def test_mutatedDatagrams(
        self, template: int, edits: list[tuple[int, int, str]], cut: int | None
    ) -> None:
        data = bytearray(self.TEMPLATES[template])
        for position, value, kind in edits:
            position %= len(data) + 1
            if kind == "r" and position < len(data):
                data[position] = value
            elif kind == "d" and position < len(data):
                del data[position]
            else:
                data[position:position] = bytes([value])
        if cut is not None:
            data = data[:cut]
        self.h.send(bytes(data), ("10.0.0.7", 5060))
        self.h.reactor.advance(0.1)
        for sent, _ in self.h.sip.take():
            # responses echo the request's headers, malformed ones included
            # (a 400 copies what it could read): only the status line is ours
            self.assertRegex(sent.split(b"\r\n", 1)[0], rb"^(SIP/2\.0 [1-6]\d\d |BYE )")

    @settings(max_examples=100, deadline=None)
    @given(st.binary(max_size=1500))
    def test_randomBytes(self, data: bytes) -> None:
        self.h.send(data, ("10.0.0.8", 5060))
        for sent, _ in self.h.sip.take():
            self.assertTrue(sent.startswith(b"SIP/2.0 "))


class ReceiveBufferTests(SynchronousTestCase):
    def test_startProtocolAsksForALargeReceiveBuffer(self) -> None:
        import socket

        from rapida_twisted.sip.sip import SipDatagramProtocol

        calls: list[tuple[int, int, int]] = []

        class Sock:
            def setsockopt(self, level: int, name: int, value: int) -> None:
                calls.append((level, name, value))

        class Transport:
            socket = Sock()

        proto = SipDatagramProtocol.__new__(SipDatagramProtocol)
        proto.transport = Transport()  # type: ignore[assignment]
        proto.startProtocol()
        self.assertEqual(calls, [(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)])
