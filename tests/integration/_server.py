"""
Start the real gateway (`twist rapida` or `twistd -n rapida`) as a child
process on free loopback ports, wait until /healthz answers, stop it at
cleanup. The real reactor is used here on purpose: this is the
integration group.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from typing import Any

from treq.client import HTTPClient
from twisted.internet import defer, protocol, reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import SkipTest, TestCase
from twisted.web.client import Agent, HTTPConnectionPool

INTEGRATION = os.environ.get("RAPIDA_INTEGRATION") == "1"


def freePort(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def freeRtpRange(size: int = 200) -> tuple[int, int]:
    # an even base with room; collisions are unlikely in the 30000-60000 span
    import random

    base = random.randrange(30000, 60000 - size) & ~1
    return base, base + size - 1


def databaseURL() -> str:
    url = os.environ.get("DATABASE_URL", "")
    if not url and os.environ.get("RAPIDA_REQUIRE_PG") == "1":
        raise AssertionError("RAPIDA_REQUIRE_PG=1 but DATABASE_URL is not set")
    return url


class _Collect(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.output = bytearray()
        self.ended: defer.Deferred[int] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(getattr(reason.value, "exitCode", None))


def http() -> HTTPClient:
    """
    A treq client without persistent connections (no pool left behind).
    """
    return HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))


class GatewayProcess:
    """
    One running gateway. C{http}, C{sip}, C{audiosocket} are its ports.
    """

    def __init__(
        self,
        workdir: str,
        database: str | None = None,
        runner: str = "twist",
        assistants: str | None = None,
        env: dict[str, str] | None = None,
        sip: bool = False,
        audiosocket: bool = False,
        extra: list[str] | None = None,
    ):
        self.workdir = workdir
        self.http = freePort()
        self.sip = freePort(socket.SOCK_DGRAM) if sip else None
        self.audiosocket = freePort() if audiosocket else None
        self.rtp = freeRtpRange()
        self.base = f"http://127.0.0.1:{self.http}"
        self.database = (
            database or databaseURL() or "sqlite:" + os.path.join(workdir, "rapida.sqlite3")
        )
        args = [
            "rapida",
            "--http",
            f"tcp:{self.http}:interface=127.0.0.1",
            "--sip",
            f"udp:{self.sip}:interface=127.0.0.1" if sip else "none",
            "--audiosocket",
            f"tcp:{self.audiosocket}:interface=127.0.0.1" if audiosocket else "none",
            "--rtp-ports",
            f"{self.rtp[0]}-{self.rtp[1]}",
            "--database",
            self.database,
            "--public-host",
            self.base,
        ]
        if assistants is not None:
            path = os.path.join(workdir, "assistants.toml")
            with open(path, "w") as f:
                f.write(assistants)
            args += ["--assistants", path]
        args += extra or []
        if runner == "twist":
            self.argv = [sys.executable, "-m", "twisted", "--log-format=json", *args]
        else:
            twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
            self.argv = [twistd, "-n", "--pidfile=", *args]
        self.env = dict(os.environ)
        self.env.update(env or {})
        self.proto = _Collect()

    async def start(self, timeout: float = 20.0) -> None:
        self.transport = reactor.spawnProcess(  # type: ignore[attr-defined]
            self.proto, self.argv[0], self.argv, env=self.env, path=self.workdir
        )
        waited = 0.0
        while waited < timeout:
            if self.proto.ended.called:
                raise AssertionError(
                    f"gateway exited early ({self.proto.ended.result!r}): {self.argv} in {self.workdir}\n"
                    + self.output()
                )
            try:
                response = await http().get(self.base + "/healthz", timeout=2)
                await response.content()
                if response.code == 200:
                    return
            except Exception:
                pass
            await deferLater(reactor, 0.1, lambda: None)
            waited += 0.1
        raise AssertionError("gateway did not become healthy:\n" + self.output())

    async def stop(self) -> None:
        if not self.proto.ended.called:
            self.transport.signalProcess(signal.SIGINT)
            timer = reactor.callLater(10, self._kill)  # type: ignore[attr-defined]
            await self.proto.ended
            if timer.active():
                timer.cancel()

    def _kill(self) -> None:
        if not self.proto.ended.called:
            self.transport.signalProcess(signal.SIGKILL)

    def output(self) -> str:
        return self.proto.output.decode("utf-8", "replace")

    def logEvents(self) -> list[dict[str, Any]]:
        events = []
        for line in self.output().splitlines():
            line = line.strip().lstrip("\x1e")
            if line.startswith("{"):
                try:
                    events.append(json.loads(line))
                except ValueError:
                    pass
        return events


class IntegrationTestCase(TestCase):
    """
    Base of integration tests: skipped unless RAPIDA_INTEGRATION=1.
    """

    timeout = 120

    def setUp(self) -> None:
        if not INTEGRATION:
            raise SkipTest("integration tests run with RAPIDA_INTEGRATION=1 (.ci/test-all)")

    async def startGateway(self, **kw: Any) -> GatewayProcess:
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        gateway = GatewayProcess(workdir, **kw)
        self.addCleanup(lambda: defer.Deferred.fromCoroutine(gateway.stop()))
        self.http = http()
        await gateway.start()
        return gateway
