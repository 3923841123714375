"""
Exotel against the real server (a `twist rapida` process on PostgreSQL
when DATABASE_URL is set), driven by the simulator's Exotel caller: echo
correlation, chunk rules, DTMF rows, HTTP Basic and the source allowlist
on the stream, the context finished within a second of the caller's
stop; and barge-in (clear) against the same server built in this process.
"""

from __future__ import annotations

from rapida_twisted.sim._base import CallOptions, CallPlan
from rapida_twisted.sim._load import audioSource, placeCall

from ._server import IntegrationTestCase
from .test_vonage import (
    BARGER,
    NARROW,
    contextOf,
    echoScore,
    environment,
    events,
    settle,
    startInProcess,
    waitForStatus,
)

CREDENTIALS = (
    '[providers.exotel]\nstream_username = "exo"\nstream_password = "s3cret"\n'
    'allow_from = ["127.0.0.0/8"]\n'
)


class ExotelTests(IntegrationTestCase):
    async def test_echoDtmfAndFinish(self) -> None:
        """
        A 16 kHz call (the URL asks for the echo assistant's rate) with
        Exotel's ~100 ms media messages: the audio comes back whole in
        chunks that keep Exotel's rules, the digits are call events, and
        the stop finishes the context within a second.
        """
        gateway = await self.startGateway()
        options = CallOptions(
            gateway=gateway.base,
            chunkMs=100,
            plan=CallPlan(dtmf="7*", dtmfAt=0.5, dtmfInterval=0.2, linger=0.5),
        )
        result = await placeCall(
            environment(), "exotel", options, audioSource("exotel", options, None, 2.0)
        )
        self.assertIsNone(result.failure)
        stream = result.stream
        assert stream is not None and result.contextId is not None
        self.assertEqual(stream.recorder.format.rate, 16000)
        waited = await waitForStatus(gateway.database, result.contextId, "completed", 1.0)
        self.assertLess(waited, 1.0)
        self.assertGreaterEqual(echoScore(result), 0.9)
        echo = result.echo()
        assert echo is not None
        self.assertEqual(echo.lost, 0)
        sizes = {len(p) for p in stream.recorder.payloads}
        self.assertTrue(sizes)
        self.assertTrue(all(s % 320 == 0 and 3200 <= s <= 100_000 for s in sizes), sizes)
        self.assertEqual(result.counters["offChunkRule"], 0)
        self.assertEqual(result.counters["bad"], 0)
        self.assertEqual(
            [(s, p) for s, _, p in events(gateway.database, result.contextId, "dtmf")],
            [("provider", {"digit": d}) for d in "7*"],
        )
        hangups = events(gateway.database, result.contextId, "hangup")
        self.assertEqual(
            [(s, p["reason"]) for s, _, p in hangups], [("provider", "stop: callended")]
        )
        self.assertTrue(contextOf(gateway.database, result.contextId)["channel"])
        await settle()

    async def test_8kAssistant(self) -> None:
        """
        An 8 kHz assistant keeps Exotel's default rate; 20 ms messages.
        """
        gateway = await self.startGateway(assistants=NARROW)
        options = CallOptions(gateway=gateway.base, assistant="narrow", plan=CallPlan(linger=0.5))
        result = await placeCall(
            environment(), "exotel", options, audioSource("exotel", options, None, 1.5)
        )
        self.assertIsNone(result.failure)
        assert result.stream is not None and result.contextId is not None
        self.assertEqual(result.stream.recorder.format.rate, 8000)
        self.assertGreaterEqual(echoScore(result), 0.9)
        await waitForStatus(gateway.database, result.contextId, "completed", 1.0)
        await settle()

    async def test_streamAuthentication(self) -> None:
        """
        HTTP Basic from the answered URL's user info opens the stream;
        wrong credentials get 403 at the upgrade and leave the context
        pending; so does a wrong token.
        """
        gateway = await self.startGateway(assistants=CREDENTIALS)
        env = environment()
        options = CallOptions(gateway=gateway.base, plan=CallPlan(linger=0.3))
        source = audioSource("exotel", options, None, 0.6)
        good = await placeCall(env, "exotel", options, source)
        self.assertIsNone(good.failure)
        self.assertGreaterEqual(echoScore(good), 0.9)

        wrong = CallOptions(gateway=gateway.base, username="exo", password="nope")
        bad = await placeCall(env, "exotel", wrong, source)
        self.assertIn("403", bad.failure or "")
        assert bad.contextId is not None
        self.assertEqual(contextOf(gateway.database, bad.contextId)["status"], "pending")

        token = CallOptions(gateway=gateway.base, token="not-the-token")
        refused = await placeCall(env, "exotel", token, source)
        assert refused.stream is not None
        self.assertEqual(refused.stream.closeCode, 4403)
        await settle()

    async def test_sourceNotAllowed(self) -> None:
        gateway = await self.startGateway(
            assistants='[providers.exotel]\nallow_from = ["192.0.2.0/24"]\n'
        )
        options = CallOptions(gateway=gateway.base)
        result = await placeCall(
            environment(), "exotel", options, audioSource("exotel", options, None, 0.5)
        )
        self.assertIn("403", result.failure or "")
        await settle()

    async def test_clear(self) -> None:
        """
        Barge-in: Exotel gets a clear, the rest of the 4 s response never
        comes, and the clear is a call event.
        """
        base, database = await startInProcess(self, BARGER)
        options = CallOptions(
            gateway=base, assistant="barger", plan=CallPlan(dtmf="5", dtmfAt=0.5, linger=0.5)
        )
        result = await placeCall(
            environment(), "exotel", options, audioSource("exotel", options, None, 2.0)
        )
        self.assertIsNone(result.failure)
        self.assertEqual(result.counters["clears"], 1)
        self.assertLess(result.framesReceived, 0.5 * 50 + 50 + 10)
        self.assertGreater(result.framesReceived, 0)
        assert result.contextId is not None
        await waitForStatus(database, result.contextId, "completed", 1.0)
        ((source, _, payload),) = events(database, result.contextId, "clear")
        self.assertEqual(source, "assistant")
        await settle()
