"""
C{twistd rapida}: plugin discovery, options with environment defaults and
their validation, and the service tree makeService builds.
"""

from __future__ import annotations

import os

from twisted.application.service import IServiceMaker
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.testing import MemoryReactorClock
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from rapida_twisted.tap import Options, makeService, parsePortRange, parseUDPDescription


class PluginTests(SynchronousTestCase):
    def test_discovered(self) -> None:
        makers = {p.tapname: p for p in getPlugins(IServiceMaker)}
        self.assertIn("rapida", makers)
        self.assertIs(makers["rapida"].options, Options)


class OptionsTests(SynchronousTestCase):
    def parse(self, argv: list[str], environ: dict[str, str] | None = None) -> Options:
        options = Options(environ=environ or {})
        options.parseOptions(argv)
        return options

    def test_defaults(self) -> None:
        options = self.parse([])
        self.assertEqual(options["http"], "tcp:8080")
        self.assertEqual(options["sip"], "udp:5090")
        self.assertEqual(options["audiosocket"], "tcp:4573")
        self.assertEqual(options["database"], "sqlite:rapida.sqlite3")
        self.assertEqual(options["context-ttl"], 120.0)
        self.assertEqual(options.rtpPorts, (10000, 10999))
        self.assertTrue(options.publicHostDefaulted)
        self.assertEqual(options.urls.httpBase, "http://localhost:8080")

    def test_environment(self) -> None:
        env = {
            "RAPIDA_HTTP": "tcp:9000",
            "RAPIDA_SIP": "none",
            "RAPIDA_RTP_PORTS": "20000-20099",
            "RAPIDA_AUDIOSOCKET": "none",
            "RAPIDA_DATABASE_URL": "postgresql://u@h/db",
            "PUBLIC_ASSISTANT_HOST": "gw.example.com",
            "RAPIDA_CONTEXT_TTL": "30",
        }
        options = self.parse([], env)
        self.assertEqual(options["http"], "tcp:9000")
        self.assertIsNone(options.sipListen)
        self.assertEqual(options.rtpPorts, (20000, 20099))
        self.assertEqual(options["database"], "postgresql://u@h/db")
        self.assertEqual(options.urls.wsBase, "wss://gw.example.com")
        self.assertFalse(options.publicHostDefaulted)
        self.assertEqual(options["context-ttl"], 30.0)

    def test_flagWins(self) -> None:
        options = self.parse(["--http", "tcp:7000"], {"RAPIDA_HTTP": "tcp:9000"})
        self.assertEqual(options["http"], "tcp:7000")

    def assertUsage(self, argv: list[str], fragment: str) -> None:
        error = self.assertRaises(usage.UsageError, self.parse, argv)
        self.assertIn(fragment, str(error))

    def test_badEndpoint(self) -> None:
        self.assertUsage(["--http", "bogus:1"], "--http")
        self.assertUsage(["--audiosocket", "tcp:notaport"], "--audiosocket")

    def test_badSip(self) -> None:
        self.assertUsage(["--sip", "tcp:5060"], "--sip")
        self.assertUsage(["--sip", "udp:99999"], "--sip")

    def test_badPortRange(self) -> None:
        for bad in ["10001-10999", "10000", "20000-10000", "80-100", "a-b"]:
            self.assertUsage(["--rtp-ports", bad], "--rtp-ports")

    def test_unknownDatabaseScheme(self) -> None:
        self.assertUsage(["--database", "mysql://x"], "unknown database scheme 'mysql'")

    def test_badTTL(self) -> None:
        self.assertUsage(["--context-ttl", "-1"], "--context-ttl")
        self.assertUsage(["--context-ttl", "soon"], "--context-ttl")

    def test_badPublicHost(self) -> None:
        self.assertUsage(["--public-host", "https://x/path"], "--public-host")

    def test_unreadableAssistants(self) -> None:
        self.assertUsage(["--assistants", "/nonexistent/a.toml"], "cannot read assistants file")

    def test_invalidAssistants(self) -> None:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write('[[assistants]]\nid = "x"\nkind = "telepathy"\n')
        self.assertUsage(["--assistants", path], "telepathy")

    def test_secretsNotInHelp(self) -> None:
        text = str(Options(environ={"TWILIO_AUTH_TOKEN": "s3cr3t"}))
        self.assertNotIn("s3cr3t", text)


class ParserTests(SynchronousTestCase):
    def test_udp(self) -> None:
        self.assertEqual(parseUDPDescription("udp:5090"), (5090, ""))
        self.assertEqual(parseUDPDescription("udp:5060:interface=10.0.0.1"), (5060, "10.0.0.1"))
        self.assertEqual(parseUDPDescription(r"udp:5060:interface=\:\:1"), (5060, "::1"))
        self.assertRaises(ValueError, parseUDPDescription, "udp:5060:bogus=1")

    def test_ports(self) -> None:
        self.assertEqual(parsePortRange("10000-10999"), (10000, 10999))


@implementer(IReactorFromThreads)
class ThreadedMemoryReactor(MemoryReactorClock):
    """
    A memory reactor the SQLite store accepts (it is only built, not run).
    """

    def callFromThread(self, f, *args, **kw):  # type: ignore[no-untyped-def]
        self.callLater(0, f, *args, **kw)


class MakeServiceTests(SynchronousTestCase):
    def test_order(self) -> None:
        options = Options(environ={})
        options.parseOptions(
            ["--database", "sqlite:" + os.path.abspath(self.mktemp()), "--http", "tcp:0"]
        )
        reactor = ThreadedMemoryReactor()
        top = makeService(options, reactor=reactor)
        names = [type(s).__name__ for s in top]
        self.assertEqual(names[:2], ["StoreService", "ContextExpiryService"])
        self.assertIn("http", [s.name for s in top])
        self.assertLess(names.index("StoreService"), [s.name for s in top].index("http"))


class OrderedStopTests(SynchronousTestCase):
    def test_childrenStopOneAfterAnother(self) -> None:
        from twisted.application.service import Service
        from twisted.internet.defer import Deferred

        from rapida_twisted.tap import OrderedMultiService

        log: list[str] = []
        pending: dict[str, Deferred[None]] = {}

        class Child(Service):
            def stopService(self) -> Deferred[None]:
                super().stopService()
                log.append(self.name)
                pending[self.name] = Deferred()
                return pending[self.name]

        top = OrderedMultiService()
        for name in ["store", "calls", "http"]:
            child = Child()
            child.setName(name)
            child.setServiceParent(top)
        top.startService()
        done = top.stopService()
        self.assertEqual(log, ["http"])
        pending["http"].callback(None)
        self.assertEqual(log, ["http", "calls"])
        pending["calls"].callback(None)
        self.assertEqual(log, ["http", "calls", "store"])
        self.assertNoResult(done)
        pending["store"].callback(None)
        self.successResultOf(done)


class PythonAssistantOptionTests(SynchronousTestCase):
    def test_badFactoryIsUsageError(self) -> None:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write('[[assistants]]\nid = "py"\nkind = "python"\noptions = {factory = "nope.nope:x"}\n')
        options = Options(environ={})
        error = self.assertRaises(usage.UsageError, options.parseOptions, ["--assistants", path])
        self.assertIn("cannot import 'nope.nope'", str(error))
