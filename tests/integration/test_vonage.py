"""
Vonage against the real server (a `twist rapida` process on PostgreSQL
when DATABASE_URL is set), driven by the simulator's Vonage caller: echo
correlation, DTMF rows, signed and unsigned answer webhooks, the context
finished within a second of the socket closing; and barge-in (clear)
against the same server built in this process, where a test assistant can
be plugged in.

Also the helpers the Exotel integration tests share: L{query},
L{contextOf}, L{waitForStatus}, L{startInProcess} and the L{Barger}
assistant.
"""

from __future__ import annotations

import json
import os
import sqlite3
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.web.http_headers import Headers
from zope.interface import implementer

from rapida_twisted.interfaces import IAssistant, IAssistantSession, ICallControl
from rapida_twisted.media.analysis import tone
from rapida_twisted.sim._analysis import echoCorrelation
from rapida_twisted.sim._base import CallOptions, CallPlan, CallResult
from rapida_twisted.sim._load import audioSource, placeCall
from rapida_twisted.sim._net import Environment
from rapida_twisted.sim._vonage import signedWebhook

from ._server import IntegrationTestCase, databaseURL, freePort, http

SECRET = "integration-signature-secret-0123456789"

NARROW = '[[assistants]]\nid = "narrow"\nkind = "echo"\nsample_rate = 8000\n'


# --- shared helpers -----------------------------------------------------------------


def query(database: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """
    Rows of C{sql} (C{%s} placeholders) on the gateway's database, either
    a C{postgresql://} URL or C{sqlite:PATH}; JSON text is decoded.
    """
    if database.startswith("sqlite:"):
        conn = sqlite3.connect(database[len("sqlite:") :])
        try:
            rows = conn.execute(sql.replace("%s", "?"), params).fetchall()
        finally:
            conn.close()
    else:
        import psycopg2

        with psycopg2.connect(database) as pg, pg.cursor() as cur:
            cur.execute(sql, params)
            rows = cur.fetchall()
        pg.close()
    return [
        tuple(json.loads(v) if isinstance(v, str) and v[:1] in ("{", "[") else v for v in row)
        for row in rows
    ]


def contextOf(database: str, contextId: str) -> dict[str, Any]:
    """
    The context's row: status, provider status, channel id, caller.
    """
    ((status, providerStatus, channel, caller),) = query(
        database,
        "SELECT status, provider_status, channel_uuid, caller FROM call_contexts"
        " WHERE context_id = %s",
        contextId,
    )
    return {
        "status": status,
        "provider_status": providerStatus,
        "channel": channel,
        "caller": caller,
    }


def events(database: str, contextId: str, kind: str | None = None) -> list[tuple[str, str, Any]]:
    """
    The call's events (source, kind, payload), oldest first.
    """
    sql = "SELECT source, kind, payload FROM call_events WHERE context_id = %s"
    args: list[Any] = [contextId]
    if kind is not None:
        sql += " AND kind = %s"
        args.append(kind)
    return [tuple(row) for row in query(database, sql + " ORDER BY id", *args)]


async def waitForStatus(database: str, contextId: str, status: str, within: float) -> float:
    """
    Poll until the context has C{status}; the seconds it took.

    @raise AssertionError: not within C{within} seconds.
    """
    started = reactor.seconds()
    while True:
        now = contextOf(database, contextId)["status"]
        waited = reactor.seconds() - started
        if now == status:
            return waited
        if waited > within:
            raise AssertionError(
                f"context {contextId} is {now!r}, not {status!r}, after {waited:.2f} s"
            )
        await deferLater(reactor, 0.02, lambda: None)


async def settle(limit: float = 2.5) -> None:
    """
    Wait for Autobahn's close timers left behind by a close race (both
    ends close at once; a close-handshake or connection-drop timer then
    outlives the connection, up to Autobahn's 2 s), so the test ends with
    a clean reactor.
    """
    waited = 0.0
    while waited < limit and any(
        name in repr(call) for call in reactor.getDelayedCalls() for name in _CLOSE_TIMERS
    ):
        await deferLater(reactor, 0.1, lambda: None)
        waited += 0.1


_CLOSE_TIMERS = ("_notify_bucket", "onCloseHandshakeTimeout", "onServerConnectionDropTimeout")


def environment() -> Environment:
    """
    The simulator on the real reactor, without persistent connections.
    """
    return Environment(reactor, http=http())


def echoScore(result: CallResult) -> float:
    """
    How well the audio the gateway sent back matches what was said, as
    one stream (the content of the media path, whatever the playout
    timing); the simulator's own L{CallResult.correlation} also weighs
    in playout gaps.
    """
    stream = result.stream
    assert stream is not None
    rate = stream.recorder.format.rate
    score, _ = echoCorrelation(stream.audio.reference, stream.recorder.receivedSamples(), 2 * rate)
    return score


@implementer(IAssistantSession)
class BargerSession:
    """
    Talks for 4 s at once; the first DTMF digit barges in (clear).
    """

    def __init__(self, control: ICallControl, rate: int) -> None:
        self.control = control
        control.play("long", tone(440.0, 4.0, rate))
        control.completeResponse("long")
        self.cleared = False

    def audioReceived(self, pcm: bytes) -> None:
        pass

    def dtmfReceived(self, digit: str) -> None:
        if not self.cleared:
            self.cleared = True
            self.control.clear()

    def playbackCompleted(self, responseId: str) -> None:
        pass

    def callEnded(self, reason: str) -> None:
        pass


@implementer(IAssistant)
class Barger:
    sampleRate = 16000

    def __init__(self, config: Any) -> None:
        self.id = config.id

    def startSession(self, details: Any, control: ICallControl) -> BargerSession:
        return BargerSession(control, self.sampleRate)


async def startInProcess(testCase: IntegrationTestCase, assistants: str) -> tuple[str, str]:
    """
    The gateway's service tree built in this process on the real reactor
    (same code as `twist rapida`), where C{kind = "python"} assistants
    such as L{BARGER} name their factory; stopped at cleanup.

    @return: its base URL and database.
    """
    from rapida_twisted.tap import Options, makeService

    workdir = os.path.abspath(testCase.mktemp())
    os.makedirs(workdir)
    path = os.path.join(workdir, "assistants.toml")
    with open(path, "w") as f:
        f.write(assistants)
    port = freePort()
    base = f"http://127.0.0.1:{port}"
    database = databaseURL() or "sqlite:" + os.path.join(workdir, "rapida.sqlite3")
    options = Options(environ={})
    options.parseOptions(
        [
            "--http", f"tcp:{port}:interface=127.0.0.1",
            "--sip", "none",
            "--audiosocket", "none",
            "--database", database,
            "--public-host", base,
            "--assistants", path,
        ]
    )  # fmt: skip
    top = makeService(options, reactor)
    top.startService()

    async def stop() -> None:
        # a write the database already shows may still be on its way back
        # to the gateway: let it land before the pool closes
        await deferLater(reactor, 0.5, lambda: None)
        await top.stopService()

    testCase.addCleanup(lambda: Deferred.fromCoroutine(stop()))
    for child in top:
        if hasattr(child, "whenReady"):
            await child.whenReady()  # the schema exists
    client = http()
    for _ in range(100):
        try:
            response = await client.get(base + "/healthz", timeout=2)
            await response.content()
            if response.code == 200:
                break
        except Exception:
            pass
        await deferLater(reactor, 0.05, lambda: None)
    return base, database


BARGER = (
    '[[assistants]]\nid = "barger"\nkind = "python"\n'
    'options = {factory = "tests.integration.test_vonage:Barger"}\n'
)


# --- the tests -------------------------------------------------------------------------


class VonageTests(IntegrationTestCase):
    async def test_echoSignedDtmfAndFinish(self) -> None:
        """
        With a signature secret: a signed call echoes (correlation ≥ 0.9,
        every frame exactly 20 ms), its digits are call events, and the
        context is completed within a second of the socket closing; an
        unsigned or stale-signed answer webhook gets 403.
        """
        gateway = await self.startGateway(
            assistants=f'[providers.vonage]\nsignature_secret = "{SECRET}"\n'
        )
        env = environment()
        options = CallOptions(
            gateway=gateway.base,
            signatureSecret=SECRET,
            plan=CallPlan(dtmf="12#", dtmfAt=0.5, dtmfInterval=0.2, linger=0.5),
        )
        result = await placeCall(env, "vonage", options, audioSource("vonage", options, None, 2.0))
        self.assertIsNone(result.failure)
        contextId = result.contextId
        assert contextId is not None
        waited = await waitForStatus(gateway.database, contextId, "completed", 1.0)
        self.assertLess(waited, 1.0)
        # what the caller heard, with playout gaps, depends on machine load
        self.assertGreater(result.correlation()[0], 0.5)
        self.assertGreaterEqual(echoScore(result), 0.9)
        echo = result.echo()
        assert echo is not None
        self.assertEqual(echo.lost, 0)
        self.assertEqual(result.counters["bad"], 0)
        self.assertGreaterEqual(result.framesReceived, 100)
        self.assertEqual(
            [(s, p) for s, _, p in events(gateway.database, contextId, "dtmf")],
            [("provider", {"digit": d}) for d in "12#"],
        )
        kinds = [k for _, k, _ in events(gateway.database, contextId)]
        self.assertEqual(kinds[:3], ["webhook", "claimed", "start"])
        self.assertEqual(kinds[-1], "ended")
        row = contextOf(gateway.database, contextId)
        self.assertEqual(row["caller"], options.caller)

        unsigned = await placeCall(
            env,
            "vonage",
            CallOptions(gateway=gateway.base),
            audioSource("vonage", options, None, 0.2),
        )
        self.assertIn("403", unsigned.failure or "")
        stale = signedWebhook(SECRET, reactor.seconds() - 3600)
        response = await self.http.get(
            gateway.base + "/v1/talk/vonage/call/echo?from=1",
            headers=Headers({"Authorization": [stale]}),
        )
        body = await response.content()
        self.assertEqual(response.code, 403)
        self.assertEqual(json.loads(body)["error"]["code"], "stale_signature")
        await settle()

    async def test_unsigned8k(self) -> None:
        """
        Without a secret an unsigned call is accepted; an 8 kHz assistant
        gets 320-byte frames both ways.
        """
        gateway = await self.startGateway(assistants=NARROW)
        options = CallOptions(gateway=gateway.base, assistant="narrow", plan=CallPlan(linger=0.5))
        result = await placeCall(
            environment(), "vonage", options, audioSource("vonage", options, None, 1.5)
        )
        self.assertIsNone(result.failure)
        assert result.stream is not None
        self.assertEqual(result.stream.recorder.format.rate, 8000)
        self.assertGreaterEqual(echoScore(result), 0.9)
        # what the caller heard, with playout gaps, depends on machine load
        self.assertGreater(result.correlation()[0], 0.5)
        assert result.contextId is not None
        await waitForStatus(gateway.database, result.contextId, "completed", 1.0)
        await settle()

    async def test_wrongToken(self) -> None:
        gateway = await self.startGateway()
        options = CallOptions(gateway=gateway.base, token="not-the-token")
        result = await placeCall(
            environment(), "vonage", options, audioSource("vonage", options, None, 0.5)
        )
        assert result.stream is not None
        self.assertEqual(result.stream.closeCode, 4403)
        assert result.contextId is not None
        self.assertEqual(contextOf(gateway.database, result.contextId)["status"], "pending")
        await settle()

    async def test_clear(self) -> None:
        """
        Barge-in: the assistant clears on the caller's digit; Vonage gets
        {"action":"clear"}, the rest of the 4 s response never comes, and
        the clear is a call event.
        """
        base, database = await startInProcess(self, BARGER)
        options = CallOptions(
            gateway=base, assistant="barger", plan=CallPlan(dtmf="5", dtmfAt=0.5, linger=0.5)
        )
        result = await placeCall(
            environment(), "vonage", options, audioSource("vonage", options, None, 2.0)
        )
        self.assertIsNone(result.failure)
        self.assertEqual(result.counters["clears"], 1)
        # at most what was sent before the clear: 0.5 s played + 1 s ahead
        self.assertLess(result.framesReceived, 0.5 * 50 + 50 + 10)
        self.assertGreater(result.framesReceived, 0)
        assert result.contextId is not None
        await waitForStatus(database, result.contextId, "completed", 1.0)
        ((source, _, payload),) = events(database, result.contextId, "clear")
        self.assertEqual(source, "assistant")
        self.assertGreater(payload["frames"], 0)
        await settle()
