"""
Stopping the server (SIGINT) while a call is live: the call is ended, its
context is finished and its events are written before the store closes.
"""

from __future__ import annotations

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater

from rapida_twisted.sim import AudioSource, CallOptions, Environment, placeCall

from ._server import IntegrationTestCase, http
from .test_sim_twilio import payload, rows


class ShutdownTests(IntegrationTestCase):
    async def test_liveCallFinishedOnStop(self) -> None:
        gateway = await self.startGateway()
        env = Environment(reactor, http())
        call = defer.Deferred.fromCoroutine(
            placeCall(env, "twilio", CallOptions(gateway.base), AudioSource(seconds=20.0))
        )
        contextId = None
        for _ in range(100):
            found = rows(gateway.database, "SELECT context_id, status FROM call_contexts")
            claimed = [c for c, s in found if s == "claimed"]
            if claimed:
                contextId = claimed[-1]
                break
            await deferLater(reactor, 0.05, lambda: None)
        self.assertIsNotNone(contextId, gateway.output()[-2000:])
        await deferLater(reactor, 0.5, lambda: None)
        await gateway.stop()
        await call
        ((status, reason),) = rows(
            gateway.database,
            "SELECT status, reason FROM call_contexts WHERE context_id = %s",
            contextId,
        )
        self.assertEqual(status, "completed", gateway.output()[-4000:])
        self.assertIn("shutdown", reason)
        kinds = [
            (k, payload(p))
            for k, p in rows(
                gateway.database,
                "SELECT kind, payload FROM call_events WHERE context_id = %s ORDER BY id",
                contextId,
            )
        ]
        self.assertIn("hangup", [k for k, _ in kinds])
        self.assertEqual(kinds[-1][0], "ended")
