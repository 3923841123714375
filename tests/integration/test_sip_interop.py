"""
The SIP server against real peers (integration group, RAPIDA_INTEGRATION=1).

  - SIPp UAC scenarios (C{tests/integration/sipp/}): OPTIONS; a PCMU call
    with a μ-law RTP stream; a PCMA call (SIPp's built-in C{uac_pcap},
    which also plays an RFC 4733 '1'); a CANCEL while ringing.  Each must
    exit 0: no failed call, no unexpected message.
  - baresip (headless: C{aufile} source, C{sndfile} recording, C{ctrl_tcp}
    control) calling C{sip:echo@127.0.0.1:PORT}: what it hears correlates
    with what it sent (≥ 0.8), and the DTMF it sends reaches
    C{call_events}.

Every peer runs under C{timeout -k}, on ports of its own, in the test's
temporary directory.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import tempfile
import wave
from typing import Any

from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import deferLater
from twisted.protocols.basic import NetstringReceiver

from rapida_twisted.media.analysis import correlation, rms, speechLike

from ._server import GatewayProcess, IntegrationTestCase, freePort

SCENARIOS = os.path.join(os.path.dirname(__file__), "sipp")

ASSISTANTS = """
[[assistants]]
id = "ringing"
kind = "echo"
options = { sip_ring_ms = 5000 }
"""


class _Output(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.output = bytearray()
        self.ended: defer.Deferred[int | None] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(getattr(reason.value, "exitCode", None))


def spawn(argv: list[str], cwd: str, limit: float) -> tuple[_Output, Any]:
    """
    Start C{argv} under C{timeout -k 2 limit}.
    """
    proto = _Output()
    full = ["timeout", "-k", "2", str(int(limit)), *argv]
    transport = reactor.spawnProcess(
        proto, shutil.which("timeout") or "timeout", full, env=dict(os.environ), path=cwd
    )
    return proto, transport


async def run(argv: list[str], cwd: str, limit: float) -> tuple[int | None, str]:
    """
    Run C{argv} to the end (at most C{limit} seconds).
    """
    proto, _ = spawn(argv, cwd, limit)
    code = await proto.ended
    return code, proto.output.decode("utf-8", "replace")


def query(database: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """
    Rows from the gateway's database (C{?} placeholders), SQLite or
    PostgreSQL.
    """
    if database.startswith("sqlite:"):
        import sqlite3

        with sqlite3.connect(database[len("sqlite:") :]) as conn:
            return [tuple(r) for r in conn.execute(sql, args).fetchall()]
    import psycopg2

    with psycopg2.connect(database) as conn, conn.cursor() as cur:
        cur.execute(sql.replace("?", "%s"), args)
        return [tuple(r) for r in cur.fetchall()]


async def eventually(check: Any, limit: float = 5.0) -> Any:
    """
    Poll C{check()} until it returns something true (the store writes are
    asynchronous in the gateway).
    """
    waited = 0.0
    while True:
        result = check()
        if result or waited >= limit:
            return result
        await deferLater(reactor, 0.1, lambda: None)
        waited += 0.1


class _SipTestCase(IntegrationTestCase):
    timeout = 90

    async def gateway(self) -> GatewayProcess:
        if shutil.which("sipp") is None or shutil.which("baresip") is None:
            self.skipTest("sipp and baresip are installed by .ci/bootstrap --test")
        self.workdir = os.path.abspath(self.mktemp())
        os.makedirs(self.workdir)
        gateway = await self.startGateway(sip=True, assistants=ASSISTANTS)
        # a PostgreSQL database is shared by the whole run: earlier tests' rows
        self._earlier = {row[0] for row in self.contexts(gateway)}
        return gateway

    async def sipp(
        self, gateway: GatewayProcess, scenario: list[str], service: str = "echo", limit: int = 30
    ) -> str:
        assert gateway.sip is not None
        argv = [
            "sipp",
            f"127.0.0.1:{gateway.sip}",
            *scenario,
            "-s",
            service,
            "-i",
            "127.0.0.1",
            "-p",
            str(freePort(socket.SOCK_DGRAM)),
            "-mi",
            "127.0.0.1",
            "-mp",
            str(freePort(socket.SOCK_DGRAM) & ~1),
            "-m",
            "1",
            "-nostdin",
            "-timeout",
            str(limit - 5),
            "-timeout_error",
            "-trace_err",
        ]
        code, output = await run(argv, self.workdir, limit)
        errors = "".join(
            open(p, errors="replace").read()
            for p in glob.glob(os.path.join(self.workdir, "*_errors.log"))
        )
        self.assertEqual(
            code,
            0,
            f"sipp exit {code}\n{output[-3000:]}\n{errors[-3000:]}\n{gateway.output()[-3000:]}",
        )
        return output

    def contexts(self, gateway: GatewayProcess) -> list[tuple[Any, ...]]:
        """
        This test's SIP contexts: C{(context_id, assistant_id, status,
        reason, channel_uuid)}.
        """
        rows = query(
            gateway.database,
            "SELECT context_id, assistant_id, status, reason, channel_uuid FROM call_contexts"
            " WHERE provider = ? ORDER BY created_at",
            "sip",
        )
        earlier: set[str] = getattr(self, "_earlier", set())
        return [row for row in rows if row[0] not in earlier]

    def events(self, gateway: GatewayProcess, contextId: str) -> list[tuple[str, Any]]:
        rows = query(
            gateway.database,
            "SELECT kind, payload FROM call_events WHERE context_id = ? ORDER BY id",
            contextId,
        )
        return [(k, json.loads(p) if isinstance(p, str) else p) for k, p in rows]


class SippTests(_SipTestCase):
    async def test_options(self) -> None:
        gateway = await self.gateway()
        await self.sipp(gateway, ["-sf", os.path.join(SCENARIOS, "options.xml")])

    async def test_pcmuCall(self) -> None:
        gateway = await self.gateway()
        code, output = await run(
            [
                "sox",
                "-n",
                "-r",
                "8000",
                "-c",
                "1",
                "-e",
                "u-law",
                "tone_ulaw.wav",
                "synth",
                "3",
                "sine",
                "440",
            ],
            self.workdir,
            20,
        )
        self.assertEqual(code, 0, output)
        await self.sipp(gateway, ["-sf", os.path.join(SCENARIOS, "uac_pcmu.xml")])
        rows = await eventually(lambda: [r for r in self.contexts(gateway) if r[2] == "completed"])
        self.assertEqual(len(rows), 1, self.contexts(gateway))
        contextId = rows[0][0]
        events = self.events(gateway, contextId)
        start = [p for k, p in events if k == "start"]
        self.assertEqual(start[0]["codec"], "ulaw")

    async def test_pcmaCallWithDtmf(self) -> None:
        gateway = await self.gateway()
        os.symlink("/usr/share/sip-tester", os.path.join(self.workdir, "pcap"))
        await self.sipp(gateway, ["-sn", "uac_pcap"], limit=40)
        rows = await eventually(lambda: [r for r in self.contexts(gateway) if r[2] == "completed"])
        self.assertEqual(len(rows), 1, self.contexts(gateway))
        events = self.events(gateway, rows[0][0])
        self.assertEqual([p for k, p in events if k == "start"][0]["codec"], "alaw")
        self.assertEqual([p for k, p in events if k == "dtmf"], [{"digit": "1"}])

    async def test_cancelWhileRinging(self) -> None:
        gateway = await self.gateway()
        await self.sipp(gateway, ["-sf", os.path.join(SCENARIOS, "uac_cancel.xml")], "ringing")
        rows = await eventually(lambda: [r for r in self.contexts(gateway) if r[2] == "failed"])
        self.assertEqual([r[1:4] for r in rows], [("ringing", "failed", "cancelled")])


class _Control(NetstringReceiver):
    """
    baresip's ctrl_tcp: JSON in netstrings; events are collected.
    """

    MAX_LENGTH = 1 << 20

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._waiters: list[tuple[str, defer.Deferred[dict[str, Any]]]] = []
        self._count = 0

    def stringReceived(self, string: bytes) -> None:
        message = json.loads(string)
        self.events.append(message)
        kind = message.get("type")
        for waiter in list(self._waiters):
            if waiter[0] == kind:
                self._waiters.remove(waiter)
                waiter[1].callback(message)

    def command(self, name: str, params: str = "") -> None:
        self._count += 1
        payload = {"command": name, "params": params, "token": f"t{self._count}"}
        self.sendString(json.dumps(payload).encode())

    def wait(self, kind: str, limit: float = 10.0) -> defer.Deferred[dict[str, Any]]:
        for event in self.events:
            if event.get("type") == kind:
                return defer.succeed(event)
        d: defer.Deferred[dict[str, Any]] = defer.Deferred()
        self._waiters.append((kind, d))
        d.addTimeout(limit, reactor)
        return d


def readWav(path: str) -> bytes:
    with wave.open(path) as w:
        assert (w.getframerate(), w.getsampwidth(), w.getnchannels()) == (8000, 2, 1), path
        return w.readframes(w.getnframes())


class BaresipTests(_SipTestCase):
    async def test_echoAndDtmf(self) -> None:
        gateway = await self.gateway()
        # baresip truncates long paths (sndfile, aufile): a short directory
        base = tempfile.mkdtemp(prefix="rbs-")
        self.addCleanup(shutil.rmtree, base, True)
        records = os.path.join(base, "rec")
        os.makedirs(records)
        source = os.path.join(base, "speech.wav")
        with wave.open(source, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(speechLike(30.0, 8000, seed=7))  # longer than the call
        sipPort = freePort(socket.SOCK_DGRAM)
        ctrlPort = freePort()
        rtpLow = gateway.rtp[1] + 2  # a range of its own, after the gateway's
        config = f"""poll_method epoll
sip_listen 127.0.0.1:{sipPort}
net_interface 127.0.0.1
audio_player aubridge,nil
audio_alert aubridge,nil
audio_source aufile,{source}
rtp_ports {rtpLow}-{rtpLow + 20}
rtp_stats yes
module_path /usr/lib/baresip/modules
module g711.so
module aufile.so
module aubridge.so
module sndfile.so
module ctrl_tcp.so
module_tmp uuid.so
module_tmp account.so
module_app contact.so
module_app menu.so
ctrl_tcp_listen 127.0.0.1:{ctrlPort}
snd_path {records}
"""
        with open(os.path.join(base, "config"), "w") as f:
            f.write(config)
        with open(os.path.join(base, "accounts"), "w") as f:
            f.write(
                f"<sip:tester@127.0.0.1:{sipPort}>;regint=0;answermode=auto;"
                "audio_codecs=PCMU,PCMA\n"
            )
        open(os.path.join(base, "contacts"), "w").close()
        peer, transport = spawn(["baresip", "-f", base], base, 40)
        self.addCleanup(self._stopPeer, peer, transport)
        control = await self._connect(ctrlPort, peer)
        control.command("dial", f"sip:echo@127.0.0.1:{gateway.sip}")
        try:
            await control.wait("CALL_ESTABLISHED")
            await control.wait("CALL_RTPESTAB")
        except defer.TimeoutError:
            self.fail(
                f"baresip events {control.events}\n"
                f"{peer.output.decode('utf-8', 'replace')[-3000:]}\n{gateway.output()[-3000:]}"
            )
        await deferLater(reactor, 4.0, lambda: None)
        control.command("sndcode", "5")
        await deferLater(reactor, 1.0, lambda: None)
        control.command("sndcode", "#")
        await deferLater(reactor, 1.0, lambda: None)
        control.command("hangup")
        await control.wait("CALL_CLOSED")
        transport.signalProcess("TERM")  # timeout(1) passes it on, KILL 2 s later
        rows = await eventually(lambda: [r for r in self.contexts(gateway) if r[2] == "completed"])
        self.assertEqual(len(rows), 1, self.contexts(gateway))
        contextId = rows[0][0]
        digits = await eventually(
            lambda: [p["digit"] for k, p in self.events(gateway, contextId) if k == "dtmf"]
        )
        self.assertEqual(digits, ["5", "#"])
        await peer.ended
        [sent] = glob.glob(os.path.join(records, "*-enc.wav"))
        [heard] = glob.glob(os.path.join(records, "*-dec.wav"))
        sentPcm, heardPcm = readWav(sent), readWav(heard)
        self.assertGreater(len(heardPcm), 2 * 8000 * 3, "less than 3 s heard")
        self.assertGreater(rms(heardPcm), 100)
        coefficient, lag = correlation(sentPcm, heardPcm, 8000)
        self.assertGreaterEqual(
            coefficient, 0.8, f"echo correlation {coefficient:.3f} at lag {lag}"
        )
        self.assertGreater(lag, 0)

    async def _connect(self, port: int, peer: _Output) -> _Control:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        for _ in range(50):
            if peer.ended.called:
                raise AssertionError("baresip exited:\n" + peer.output.decode("utf-8", "replace"))
            try:
                control = await connectProtocol(endpoint, _Control())
            except Exception:
                await deferLater(reactor, 0.1, lambda: None)
                continue
            self.addCleanup(control.transport.loseConnection)
            return control
        raise AssertionError("baresip ctrl_tcp did not come up")

    async def _stopPeer(self, peer: _Output, transport: Any) -> None:
        if not peer.ended.called:
            transport.signalProcess("TERM")
            await peer.ended
