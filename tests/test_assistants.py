"""
Tests for L{rapida_twisted.assistants}: the registry and the echo
assistant (alone and behind a real call session).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from rapida_twisted.assistants import (
    ECHO_RESPONSE,
    AssistantRegistry,
    AssistantUnavailable,
    EchoAssistant,
    EchoSession,
    UnavailableAssistant,
    UnknownAssistant,
)
from rapida_twisted.call import CallSession
from rapida_twisted.config import ConfigError, parseConfig
from rapida_twisted.gateway import Gateway
from rapida_twisted.interfaces import IAssistant, IAssistantSession
from rapida_twisted.media.analysis import correlation, speechLike
from rapida_twisted.media.g711 import ulawDecode, ulawEncode
from rapida_twisted.providers._base import PublicURLs
from rapida_twisted.store._memory import MemoryContextStore

from .test_call_session import FakeTransport

TOML = """
[[assistants]]
id = "wide"
kind = "echo"
sample_rate = 24000

[[assistants]]
id = "bot"
kind = "link"
"""


class Control:
    """
    Records what an assistant session asks of its call.
    """

    def __init__(self) -> None:
        self.played: list[tuple[str, bytes]] = []

    def play(self, responseId: str, pcm: bytes) -> None:
        self.played.append((responseId, pcm))


class RegistryTests(SynchronousTestCase):
    def test_echo_always(self) -> None:
        registry = AssistantRegistry(parseConfig(""))
        self.assertIn("echo", registry)
        echo = registry.get("echo")
        verifyObject(IAssistant, echo)
        self.assertIsInstance(echo, EchoAssistant)
        self.assertEqual((echo.id, echo.sampleRate), ("echo", 16000))
        self.assertIs(registry.get("echo"), echo)
        self.assertEqual(registry.ids(), ["echo"])
        self.assertEqual(registry.unavailable(), [])
        registry.check()

    def test_configured(self) -> None:
        registry = AssistantRegistry(parseConfig(TOML))
        self.assertEqual(registry.ids(), ["bot", "echo", "wide"])
        wide = registry.get("wide")
        self.assertEqual((wide.id, wide.sampleRate), ("wide", 24000))
        self.assertRaises(UnknownAssistant, registry.get, "nobody")
        self.assertNotIn("nobody", registry)

    def test_unavailable_kind(self) -> None:
        """
        Kinds without an implementation (link) are reported at
        start-up and fail clearly when a call starts.
        """
        registry = AssistantRegistry(parseConfig(TOML))
        self.assertEqual(registry.unavailable(), ["bot"])
        error = self.assertRaises(AssistantUnavailable, registry.check)
        self.assertIn("'link' is not available yet", str(error))
        self.assertIsInstance(error, ConfigError)
        bot = registry.get("bot")
        verifyObject(IAssistant, bot)
        self.assertIsInstance(bot, UnavailableAssistant)
        error = self.assertRaises(AssistantUnavailable, bot.startSession, None, Control())
        self.assertIn("'bot'", str(error))

    def test_factories(self) -> None:
        """
        A factory for a kind replaces the stand-in.
        """
        built: list[Any] = []

        def link(config: Any) -> EchoAssistant:
            built.append(config)
            return EchoAssistant(config.id, config.sampleRate)

        registry = AssistantRegistry(parseConfig(TOML), {"link": link})
        self.assertEqual(registry.unavailable(), [])
        self.assertIsInstance(registry.get("bot"), EchoAssistant)
        self.assertEqual([c.id for c in built], ["bot"])


class EchoTests(SynchronousTestCase):
    def test_session(self) -> None:
        control = Control()
        session = EchoAssistant().startSession(None, control)  # type: ignore[arg-type]
        verifyObject(IAssistantSession, session)
        self.assertIsInstance(session, EchoSession)
        session.audioReceived(b"\x01\x02" * 320)
        session.audioReceived(b"\x03\x04" * 320)
        session.dtmfReceived("5")
        session.playbackCompleted(ECHO_RESPONSE)
        self.assertEqual(
            control.played, [(ECHO_RESPONSE, b"\x01\x02" * 320), (ECHO_RESPONSE, b"\x03\x04" * 320)]
        )
        self.assertEqual((session.frames, session.digits), (2, ["5"]))
        session.callEnded("stop")
        session.audioReceived(b"\x00" * 640)
        self.assertEqual(len(control.played), 2)
        self.assertEqual(session.endReason, "stop")

    def test_through_a_session(self) -> None:
        """
        Behind a call session on μ-law 8 kHz, what the caller hears
        correlates with what they said, delayed by the filters only.
        """
        clock = Clock()
        store = MemoryContextStore(clock)
        gateway = Gateway(clock, store, parseConfig(TOML), PublicURLs("gw.example.com"))
        for assistantId in ("echo", "wide"):
            context = self.successResultOf(store.create("twilio", assistantId)).context
            context = self.successResultOf(store.claim(context.context_id))
            transport = FakeTransport()
            assistant = AssistantRegistry(gateway.config).get(assistantId)
            session = CallSession(clock, gateway, context, transport, assistant)
            session.start()
            said = ulawEncode(speechLike(1.0, 8000, seed=3))
            for i in range(0, len(said), 160):
                session.audioReceived(said[i : i + 160])
            heard = b"".join(transport.frames())
            self.assertEqual(len(heard), len(said))
            score, lag = correlation(ulawDecode(said), ulawDecode(heard), 200)
            self.assertGreater(score, 0.9)
            self.assertLess(abs(lag), 80)


def makeTestEcho(config: Any) -> EchoAssistant:
    """
    A C{python}-kind factory the tests name in TOML.
    """
    return EchoAssistant(config.id, config.sampleRate)


class PythonKindTests(SynchronousTestCase):
    def registry(self, factory: str) -> AssistantRegistry:
        return AssistantRegistry(
            parseConfig(
                f'[[assistants]]\nid = "py"\nkind = "python"\n'
                f'[assistants.options]\nfactory = "{factory}"\n'
            )
        )

    def test_loaded(self) -> None:
        registry = self.registry("tests.test_assistants:makeTestEcho")
        self.assertEqual(registry.unavailable(), [])
        registry.load()
        self.assertIsInstance(registry.get("py"), EchoAssistant)
        self.assertEqual(registry.get("py").id, "py")

    def test_errors(self) -> None:
        for factory, fragment in [
            ("no-colon", "module:callable"),
            ("no.such.module:x", "cannot import"),
            ("tests.test_assistants:nothing", "no 'nothing'"),
            ("tests.test_assistants:TOML", "not callable"),
            ("builtins:dict", "failed: TypeError"),
            ("builtins:str", "does not provide IAssistant"),
        ]:
            error = self.assertRaises(ConfigError, self.registry(factory).load)
            self.assertIn(fragment, str(error), factory)


class BrokenFactoryAtCallTimeTests(SynchronousTestCase):
    def test_getNeverRaisesForABadFactory(self) -> None:
        """
        A python factory that fails is refused at start-up by load(); if a
        call reaches it anyway, get() gives a stand-in whose session start
        fails with the reason, so the call ends cleanly.
        """
        registry = AssistantRegistry(
            parseConfig('[[assistants]]\nid = "py"\nkind = "python"\noptions = {factory = "x"}\n')
        )
        assistant = registry.get("py")
        self.assertIsInstance(assistant, UnavailableAssistant)
        error = self.assertRaises(AssistantUnavailable, assistant.startSession, None, Control())
        self.assertIn("module:callable", str(error))
