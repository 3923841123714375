"""
Assistants (SPEC §7): the registry of configured assistants and the
built-in C{echo}. The C{link} and C{python} kinds are not available yet:
their sessions fail to start with L{AssistantUnavailable}.
"""

from ._echo import ECHO_RESPONSE, EchoAssistant, EchoSession
from ._registry import (
    AssistantFactory,
    AssistantRegistry,
    AssistantUnavailable,
    UnavailableAssistant,
    UnknownAssistant,
)

__all__ = [
    "ECHO_RESPONSE",
    "AssistantFactory",
    "AssistantRegistry",
    "AssistantUnavailable",
    "EchoAssistant",
    "EchoSession",
    "UnavailableAssistant",
    "UnknownAssistant",
]
