"""
SIP against the real server (a `twist rapida --sip udp:PORT` process, on
PostgreSQL when DATABASE_URL is set, else SQLite), driven by
C{rapida-sim}'s SIP caller: an echo call whose echo correlates (≥ 0.8)
with nothing lost, DTMF rows in C{call_events}, a clean BYE completing
the context; an unknown user refused with 404; and a short load of 20
concurrent calls through one UAC, all ok.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater

from rapida_twisted.sim import AudioSource, CallPlan, Environment, placeCall, runLoad
from rapida_twisted.sim._sip import SipCallResult, SipOptions

from ._server import GatewayProcess, IntegrationTestCase, http
from .test_sim_twilio import payload, rows


class SipSimulatorTests(IntegrationTestCase):
    def environment(self) -> Environment:
        # non-persistent HTTP (unused by SIP): nothing left open at the end
        return Environment(reactor, http())

    def options(self, gateway: GatewayProcess, **kw: Any) -> SipOptions:
        assert gateway.sip is not None
        return SipOptions(gateway.base, sipPort=gateway.sip, **kw)

    async def context(self, gateway: GatewayProcess, callId: str, want: str) -> tuple[str, str]:
        """
        The id and status of the context of SIP call C{callId}, waiting up
        to a second for status C{want}.
        """
        found: tuple[str, str] = ("", "")
        for _ in range(20):
            found = rows(
                gateway.database,
                "SELECT context_id, status FROM call_contexts WHERE channel_uuid = %s",
                callId,
            )[0]
            if found[1] == want:
                break
            await deferLater(reactor, 0.05, lambda: None)
        return found

    async def test_echoAndDtmf(self) -> None:
        """
        The echo of 4 s of speech-like audio comes back whole; the digits,
        pressed in the silence after it (RFC 4733 events take the audio's
        place), are stored as C{dtmf} events.
        """
        gateway = await self.startGateway(sip=True)
        plan = CallPlan(dtmf="12#", dtmfAt=4.2, dtmfInterval=0.3, linger=1.5)
        result = await placeCall(
            self.environment(),
            "sip",
            self.options(gateway, plan=plan),
            AudioSource(seconds=4.0, seed=3),
        )
        self.assertTrue(result.ok, (result.failure, gateway.output()[-3000:]))
        assert isinstance(result, SipCallResult) and result.callId is not None
        score, lag = result.correlation()
        self.assertGreaterEqual(score, 0.8, (score, lag))
        echo = result.echo()
        assert echo is not None
        self.assertGreater(echo.expected, 100)
        self.assertEqual(echo.lost, 0, result.summary())
        self.assertEqual(result.framesSent, 275 - 3 * 7)  # 7 event packets per digit
        assert result.stream is not None
        self.assertEqual(result.stream.closeCode, 200)
        contextId, status = await self.context(gateway, result.callId, "completed")
        self.assertEqual(status, "completed")
        events = rows(
            gateway.database,
            "SELECT payload FROM call_events WHERE context_id = %s AND kind = 'dtmf' ORDER BY id",
            contextId,
        )
        self.assertEqual([payload(p)["digit"] for (p,) in events], ["1", "2", "#"])

    async def test_unknownUser(self) -> None:
        gateway = await self.startGateway(sip=True)
        result = await placeCall(
            self.environment(),
            "sip",
            self.options(gateway, assistant="nobody"),
            AudioSource(seconds=1.0),
        )
        self.assertEqual(result.failure, "INVITE answered 404 Not Found")
        self.assertIsNone(result.stream)

    async def test_load(self) -> None:
        gateway = await self.startGateway(sip=True)
        report = await runLoad(
            self.environment(),
            "sip",
            self.options(gateway, plan=CallPlan(linger=1.0)),
            AudioSource(seconds=3.0, seed=5),
            20,
            ramp=0.5,
        )
        self.assertEqual((report.calls, report.ok), (20, 20), report.lines())
        self.assertEqual(report.framesSent, 20 * 200)
        self.assertGreater(report.expected, 20 * 100)
        self.assertEqual(report.lost, 0, report.lines())
        assert report.latency.p99 is not None
        self.assertLess(report.latency.p99, 0.25, report.lines())
