# -*- test-case-name: tests.test_store -*-
"""
An in-memory L{IContextStore}: synchronous Deferreds, no threads, no
database. For unit tests of everything above the store (and for
benchmarks that must not measure a database); it passes the same
contract suite as the SQL stores.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import replace
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from ..interfaces import IContextStore
from ._model import (
    CLAIMED,
    DIRECTIONS,
    EVENT_KINDS,
    EXPIRED,
    OUTCOMES,
    PENDING,
    SOURCES,
    CallContext,
    CallEvent,
    ContextAlreadyClaimed,
    ContextExpired,
    ContextFinished,
    ContextNotFound,
    NewContext,
    StoreUnavailable,
    hashToken,
    newToken,
)


def _deferred(fn: Any) -> Any:
    """
    Run a synchronous store method and return its result (or error) as an
    already-fired Deferred, as the SQL stores' callers expect.
    """

    def wrapper(self: MemoryContextStore, *args: Any, **kw: Any) -> Deferred[Any]:
        if self.unavailable:
            return defer.fail(StoreUnavailable("memory store marked unavailable"))
        try:
            return defer.succeed(fn(self, *args, **kw))
        except Exception:
            return defer.fail()

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


@implementer(IContextStore)
class MemoryContextStore:
    """
    The store contract in a dict.

    @ivar unavailable: set True to make every operation fail with
        L{StoreUnavailable} (to test how callers cope).
    """

    def __init__(self, clock: IReactorTime, ttl: float = 120.0):
        if not ttl > 0:
            raise ValueError(f"the context TTL must be positive, not {ttl!r}")
        self._clock = clock
        self.ttl = float(ttl)
        self.unavailable = False
        self._contexts: dict[str, CallContext] = {}
        self._events: dict[str, list[CallEvent]] = {}
        self._ids = itertools.count(1)

    def start(self) -> Deferred[None]:
        return defer.succeed(None)

    def close(self) -> Deferred[None]:
        return defer.succeed(None)

    @_deferred
    def ping(self) -> None:
        return None

    def _get(self, context_id: str) -> CallContext:
        try:
            return self._contexts[context_id]
        except KeyError:
            raise ContextNotFound(context_id) from None

    @_deferred
    def create(
        self,
        provider: str,
        assistant_id: str,
        direction: str = "inbound",
        caller: str = "",
        callee: str = "",
        channel_uuid: str = "",
        metadata: dict[str, Any] | None = None,
    ) -> NewContext:
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {sorted(DIRECTIONS)}, not {direction!r}")
        token = newToken()
        context = CallContext(
            context_id=str(uuid.uuid4()),
            provider=provider,
            assistant_id=assistant_id,
            conversation_id=str(uuid.uuid4()),
            token_hash=hashToken(token),
            direction=direction,
            caller=caller,
            callee=callee,
            channel_uuid=channel_uuid,
            status=PENDING,
            provider_status="",
            created_at=self._clock.seconds(),
            metadata=dict(metadata or {}),
        )
        self._contexts[context.context_id] = context
        self._events[context.context_id] = []
        return NewContext(context=context, token=token)

    @_deferred
    def get(self, context_id: str) -> CallContext:
        return self._get(context_id)

    @_deferred
    def claim(self, context_id: str) -> CallContext:
        context = self._get(context_id)
        now = self._clock.seconds()
        if context.status == CLAIMED:
            raise ContextAlreadyClaimed(context_id)
        if context.expired_at(now, self.ttl):
            raise ContextExpired(context_id)
        if context.finished:
            raise ContextFinished(context_id)
        context = replace(context, status=CLAIMED, claimed_at=now)
        self._contexts[context_id] = context
        return context

    @_deferred
    def findByChannel(self, provider: str, channel_uuid: str) -> CallContext | None:
        if not channel_uuid.strip():
            return None
        matches = [
            c
            for c in self._contexts.values()
            if c.provider == provider and c.channel_uuid == channel_uuid
        ]
        return max(matches, key=lambda c: c.created_at) if matches else None

    @_deferred
    def setChannel(self, context_id: str, channel_uuid: str) -> bool:
        context = self._get(context_id)
        if context.channel_uuid == channel_uuid:
            return False
        self._contexts[context_id] = replace(context, channel_uuid=channel_uuid)
        return True

    @_deferred
    def updateProviderStatus(
        self, context_id: str, provider_status: str, expected: str | None = None
    ) -> bool:
        context = self._get(context_id)
        if expected is not None and context.provider_status != expected:
            return False
        self._contexts[context_id] = replace(context, provider_status=provider_status)
        return True

    @_deferred
    def finish(self, context_id: str, outcome: str, reason: str = "") -> bool:
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {sorted(OUTCOMES)}, not {outcome!r}")
        context = self._get(context_id)
        if context.finished:
            return False
        self._contexts[context_id] = replace(
            context, status=outcome, ended_at=self._clock.seconds(), reason=reason
        )
        return True

    @_deferred
    def appendEvent(
        self,
        context_id: str,
        source: str,
        kind: str,
        payload: dict[str, Any] | None = None,
    ) -> int:
        if source not in SOURCES:
            raise ValueError(f"event source must be one of {sorted(SOURCES)}, not {source!r}")
        if kind not in EVENT_KINDS:
            raise ValueError(f"event kind must be one of {sorted(EVENT_KINDS)}, not {kind!r}")
        self._get(context_id)
        event = CallEvent(
            id=next(self._ids),
            context_id=context_id,
            at=self._clock.seconds(),
            source=source,
            kind=kind,
            payload=dict(payload or {}),
        )
        self._events[context_id].append(event)
        return event.id

    @_deferred
    def listEvents(self, context_id: str, kind: str | None = None) -> list[CallEvent]:
        events = self._events.get(context_id, [])
        return [e for e in events if kind is None or e.kind == kind]

    @_deferred
    def expireUnclaimed(self) -> int:
        now = self._clock.seconds()
        count = 0
        for context_id, context in list(self._contexts.items()):
            if context.status == PENDING and context.expired_at(now, self.ttl):
                self._contexts[context_id] = replace(context, status=EXPIRED, ended_at=now)
                count += 1
        return count
