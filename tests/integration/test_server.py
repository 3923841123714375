"""
The real server: `twist rapida` on PostgreSQL and `twistd -n rapida` on the
embedded SQLite answer webhooks whose contexts land in the database.
"""

from __future__ import annotations

import base64
import os
import re
import sqlite3

from ._server import IntegrationTestCase, databaseURL

FORM = {"CallSid": "CA1", "AccountSid": "AC1", "From": "+15551230000", "To": "+15557650000"}
UPGRADE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
}


def contextIdOf(twiml: bytes) -> str:
    match = re.search(rb'/v1/talk/twilio/ctx/([0-9a-f-]{36})"', twiml)
    assert match, twiml
    return match.group(1).decode()


class ServerTests(IntegrationTestCase):
    async def test_twistOnPostgreSQL(self) -> None:
        url = databaseURL()
        if not url:
            self.skipTest("no DATABASE_URL")
        gateway = await self.startGateway(database=url)
        response = await self.http.post(gateway.base + "/v1/talk/twilio/call/echo", data=FORM)
        body = await response.content()
        self.assertEqual(response.code, 200, body)
        contextId = contextIdOf(body)
        import psycopg2

        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT status, provider, caller, channel_uuid FROM call_contexts WHERE context_id = %s",
                (contextId,),
            )
            self.assertEqual(cur.fetchone(), ("pending", "twilio", "+15551230000", "CA1"))
            cur.execute("SELECT kind FROM call_events WHERE context_id = %s", (contextId,))
            self.assertEqual(cur.fetchall(), [("webhook",)])
        # JSON log lines with named fields
        events = [e for e in gateway.logEvents() if e.get("context_id") == contextId]
        self.assertTrue(events, gateway.output()[-2000:])
        self.assertEqual(events[0]["provider"], "twilio")

    async def test_twistdOnSQLite(self) -> None:
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        path = os.path.join(workdir, "calls.sqlite3")
        gateway = await self.startGateway(database="sqlite:" + path, runner="twistd")
        response = await self.http.post(gateway.base + "/v1/talk/twilio/call/echo", data=FORM)
        contextId = contextIdOf(await response.content())
        row = (
            sqlite3.connect(path)
            .execute("SELECT status FROM call_contexts WHERE context_id = ?", (contextId,))
            .fetchone()
        )
        self.assertEqual(row, ("pending",))

    async def test_healthMetricsAndRefusals(self) -> None:
        gateway = await self.startGateway()
        response = await self.http.get(gateway.base + "/healthz")
        self.assertEqual((response.code, (await response.json())["store"]), (200, "ok"))
        response = await self.http.get(gateway.base + "/metrics")
        self.assertIn(b"rapida_active_calls", await response.content())
        response = await self.http.get(
            gateway.base + "/v1/talk/twilio/ctx/00000000-0000-4000-8000-000000000000",
            headers=UPGRADE,
        )
        self.assertEqual(response.code, 404)
        self.assertEqual((await response.json())["error"]["code"], "unknown_context")
        response = await self.http.post(
            gateway.base + "/v1/talk/twilio/call/echo", data={"CallSid": "x"}
        )
        self.assertEqual(response.code, 400)
