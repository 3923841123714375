"""
Twilio against the real server (a `twist rapida` process, on PostgreSQL
when DATABASE_URL is set, else SQLite), driven by C{rapida-sim}'s Twilio
caller: a signed webhook, TwiML, a signed media upgrade, 5 s of
speech-like audio whose echo must correlate (≥ 0.9 after the G.711 round
trip), DTMF rows in C{call_events}, the context completed after C{stop};
a wrong token closed with 4403; a second connection to a claimed context
refused.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater

from rapida_twisted.providers.twilio._webhook import twilioSignature
from rapida_twisted.sim import (
    AudioSource,
    CallOptions,
    CallPlan,
    CallResult,
    Environment,
    HandshakeError,
    TwilioCall,
    TwilioStream,
    placeCall,
)

from ._server import GatewayProcess, IntegrationTestCase, http

AUTH_TOKEN = "integration-twilio-auth-token"


def rows(database: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """
    C{sql} (C{%s} placeholders) on the gateway's database: a
    C{postgresql://} URL or C{sqlite:PATH}.
    """
    if database.startswith("sqlite:"):
        conn = sqlite3.connect(database[len("sqlite:") :])
        try:
            return conn.execute(sql.replace("%s", "?"), params).fetchall()
        finally:
            conn.close()
    import psycopg2

    pg = psycopg2.connect(database)
    try:
        with pg.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())
    finally:
        pg.close()


def payload(value: Any) -> Any:
    """
    A JSON column as a value (SQLite returns text, PostgreSQL JSON).
    """
    return json.loads(value) if isinstance(value, str) else value


class TwilioSimulatorTests(IntegrationTestCase):
    async def gateway(self) -> GatewayProcess:
        return await self.startGateway(env={"TWILIO_AUTH_TOKEN": AUTH_TOKEN})

    def environment(self) -> Environment:
        # non-persistent HTTP: nothing left open when the test ends
        return Environment(reactor, http())

    async def status(self, gateway: GatewayProcess, contextId: str, want: str) -> str:
        """
        The context's status, waiting up to a second for C{want}.
        """
        status = ""
        for _ in range(20):
            ((status,),) = rows(
                gateway.database,
                "SELECT status FROM call_contexts WHERE context_id = %s",
                contextId,
            )
            if status == want:
                break
            await deferLater(reactor, 0.05, lambda: None)
        return status

    async def test_echoAndDtmf(self) -> None:
        gateway = await self.gateway()
        options = CallOptions(
            gateway.base, authToken=AUTH_TOKEN, plan=CallPlan(dtmf="12#", dtmfAt=1.0)
        )
        result: CallResult = await placeCall(
            self.environment(), "twilio", options, AudioSource(seconds=5.0, seed=3)
        )
        self.assertTrue(result.ok, (result.failure, gateway.output()[-3000:]))
        assert result.contextId is not None
        score, lag = result.correlation()
        self.assertGreaterEqual(score, 0.9, (score, lag))
        echo = result.echo()
        assert echo is not None
        self.assertGreater(echo.expected, 100)
        self.assertEqual(echo.lost, 0)
        self.assertEqual(result.framesSent, 300)  # 5 s and 1 s of linger
        events = rows(
            gateway.database,
            "SELECT payload FROM call_events WHERE context_id = %s AND kind = 'dtmf' ORDER BY id",
            result.contextId,
        )
        self.assertEqual([payload(p)["digit"] for (p,) in events], ["1", "2", "#"])
        self.assertEqual(await self.status(gateway, result.contextId, "completed"), "completed")

    async def test_wrongTokenAndSecondConnection(self) -> None:
        gateway = await self.gateway()
        env = self.environment()
        source = AudioSource(seconds=1.0)
        options = CallOptions(gateway.base, authToken=AUTH_TOKEN, token="not-the-token")
        refused = await placeCall(env, "twilio", options, source)
        assert refused.stream is not None
        self.assertEqual(refused.stream.closeCode, 4403, refused.failure)
        self.assertIn("code 4403", refused.failure or "")

        # a claimed context's media URL is single use
        call = TwilioCall(env, CallOptions(gateway.base, authToken=AUTH_TOKEN), source)
        stream = await call.connect(call.result)
        assert isinstance(stream, TwilioStream)
        for _ in range(40):
            if call.result.contextId and rows(
                gateway.database,
                "SELECT status FROM call_contexts WHERE context_id = %s",
                call.result.contextId,
            ) == [("claimed",)]:
                break
            await deferLater(reactor, 0.05, lambda: None)
        url = f"{gateway.base.replace('http', 'ws', 1)}/v1/talk/twilio/ctx/{call.result.contextId}"
        second = TwilioStream(
            reactor, env.ticker, source.prepared(TwilioCall.wireFormat(options)), CallPlan(), {}
        )
        signature = {"X-Twilio-Signature": twilioSignature(AUTH_TOKEN, url, {})}
        try:
            await env.connector.webSocket(url, signature, second, 5.0)
        except HandshakeError as e:
            self.assertIn("409", str(e))
        else:
            await second.done
            self.assertEqual(second.closeCode, 4409)
        await stream.done
        self.assertIsNone(stream.failure)
