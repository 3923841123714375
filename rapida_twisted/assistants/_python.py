# -*- test-case-name: tests.test_assistants -*-
"""
The C{python} assistant kind: an assistant written in Python, loaded from
an importable factory named in the assistants file::

    [[assistants]]
    id = "bot"
    kind = "python"
    [assistants.options]
    factory = "mypackage.bots:makeBot"   # called with the AssistantConfig
"""

from __future__ import annotations

import importlib
from typing import Any

from ..config import AssistantConfig, ConfigError
from ..interfaces import IAssistant


def resolveFactory(spec: Any) -> Any:
    """
    The callable C{module:attribute} names.

    @raise ConfigError: not of that form, or not importable.
    """
    if not isinstance(spec, str) or ":" not in spec:
        raise ConfigError(f"options.factory must be 'module:callable', not {spec!r}")
    moduleName, _, attribute = spec.partition(":")
    try:
        target: Any = importlib.import_module(moduleName)
    except ImportError as e:
        raise ConfigError(f"options.factory {spec!r}: cannot import {moduleName!r}: {e}") from None
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError(f"options.factory {spec!r}: no {part!r} in {moduleName!r}") from None
    if not callable(target):
        raise ConfigError(f"options.factory {spec!r} is not callable")
    return target


def pythonAssistant(config: AssistantConfig) -> IAssistant:
    """
    Build a C{python}-kind assistant: call its factory with the config.

    @raise ConfigError: the factory cannot be found or returns no
        L{IAssistant}.
    """
    spec = config.options.get("factory")
    try:
        factory = resolveFactory(spec)
    except ConfigError as e:
        raise ConfigError(f"assistant {config.id!r}: {e}") from None
    try:
        assistant = factory(config)
    except Exception as e:
        raise ConfigError(f"assistant {config.id!r}: factory {spec!r} failed: {e!r}") from e
    if not IAssistant.providedBy(assistant):
        raise ConfigError(
            f"assistant {config.id!r}: factory {config.options.get('factory')!r} returned"
            f" {type(assistant).__name__}, which does not provide IAssistant"
        )
    return assistant  # type: ignore[no-any-return]
