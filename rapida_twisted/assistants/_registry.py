# -*- test-case-name: tests.test_assistants -*-
"""
The assistants the gateway can run, by id (SPEC §7): the ones the
assistants file declares, plus the built-in C{echo}, which always exists.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from zope.interface import implementer

from ..config import ECHO, AssistantConfig, ConfigError, GatewayConfig
from ..interfaces import IAssistant, ICallControl
from ._echo import EchoAssistant
from ._python import pythonAssistant

__all__ = [
    "AssistantFactory",
    "AssistantRegistry",
    "AssistantUnavailable",
    "UnavailableAssistant",
    "UnknownAssistant",
]

AssistantFactory = Callable[[AssistantConfig], IAssistant]
"""Builds the assistant of one C{[[assistants]]} entry."""


class UnknownAssistant(LookupError):
    """
    No assistant has this id.
    """


class AssistantUnavailable(ConfigError):
    """
    The assistant's kind has no implementation in this gateway (yet).
    """


@implementer(IAssistant)
class UnavailableAssistant:
    """
    Stands in for an assistant whose kind cannot run: every session start
    fails with L{AssistantUnavailable}, which the call session records as
    an C{error} event before hanging up.
    """

    def __init__(self, config: AssistantConfig, reason: str = "") -> None:
        self.id = config.id
        self.sampleRate = config.sampleRate
        self.kind = config.kind
        self.reason = reason or f"assistant {self.id!r}: kind {self.kind!r} is not available yet"

    def startSession(self, details: object, control: ICallControl) -> object:
        raise AssistantUnavailable(self.reason)


_BUILTIN: Mapping[str, AssistantFactory] = {
    "echo": EchoAssistant.fromConfig,
    "python": pythonAssistant,
}


class AssistantRegistry:
    """
    Assistant id → L{IAssistant}, each built once on first use.

    @param config: the gateway configuration (its C{assistants}).
    @param factories: kind → factory, added to (and overriding) the
        built-in ones; kinds without a factory (today C{link}) get an
        L{UnavailableAssistant}.
    """

    def __init__(
        self, config: GatewayConfig, factories: Mapping[str, AssistantFactory] | None = None
    ) -> None:
        self._configs = dict(config.assistants)
        self._configs.setdefault(ECHO.id, ECHO)
        self._factories = {**_BUILTIN, **(factories or {})}
        self._built: dict[str, IAssistant] = {}

    def __contains__(self, assistantId: object) -> bool:
        return assistantId in self._configs

    def ids(self) -> list[str]:
        """
        Every configured assistant id, sorted.
        """
        return sorted(self._configs)

    def unavailable(self) -> list[str]:
        """
        Ids of configured assistants whose kind cannot run here (for a
        start-up warning).
        """
        return sorted(
            ident for ident, conf in self._configs.items() if conf.kind not in self._factories
        )

    def check(self) -> None:
        """
        Raise L{AssistantUnavailable} naming every configured assistant
        that cannot run (for start-up checks that must be strict).
        """
        missing = self.unavailable()
        if missing:
            kinds = sorted({self._configs[i].kind for i in missing})
            raise AssistantUnavailable(
                f"assistant kind {', '.join(map(repr, kinds))} is not available yet"
                f" (assistants {', '.join(missing)})"
            )

    def get(self, assistantId: str) -> IAssistant:
        """
        The assistant with this id.

        @raise UnknownAssistant: no such id.
        """
        assistant = self._built.get(assistantId)
        if assistant is not None:
            return assistant
        conf = self._configs.get(assistantId)
        if conf is None:
            raise UnknownAssistant(assistantId)
        try:
            assistant = self._build(conf)
        except ConfigError as e:
            # a call must not crash on it: its session records the reason
            # as an error event and hangs up (tap's load() refuses it first)
            assistant = UnavailableAssistant(conf, str(e))
        self._built[assistantId] = assistant
        return assistant

    def _build(self, conf: AssistantConfig) -> IAssistant:
        factory = self._factories.get(conf.kind)
        return UnavailableAssistant(conf) if factory is None else factory(conf)

    def load(self) -> None:
        """
        Build every assistant now (for start-up): a C{python} factory that
        cannot be imported is an error before the first call, not during it.

        @raise ConfigError: an assistant cannot be built.
        """
        for assistantId in self.ids():
            if assistantId not in self._built:
                self._built[assistantId] = self._build(self._configs[assistantId])
