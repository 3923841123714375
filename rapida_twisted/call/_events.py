# -*- test-case-name: tests.test_call_session -*-
"""
Fire-and-forget, ordered store writes for one call: call events and the
lifecycle updates (finish, channel id) a media stream makes.

Audio never waits for the database: every write is queued behind the
call's previous one and runs when that one is done, with the gateway's
store deadline. A failed write is logged (never silently dropped) and
the queue goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

__all__ = ["EventLog"]


class EventLog:
    """
    One call's ordered queue of store writes.

    @param gateway: a L{rapida_twisted.gateway.Gateway} (its C{store} and
        C{storeOp}).
    @param contextId: the call's context id.
    """

    _log = Logger()

    def __init__(self, gateway: Any, contextId: str) -> None:
        self._gateway = gateway
        self.contextId = contextId
        self._tail: Deferred[None] = defer.succeed(None)
        #: writes queued and not yet done
        self.pending = 0
        #: writes that failed (logged)
        self.failures = 0

    def append(self, source: str, kind: str, payload: dict[str, Any] | None = None) -> None:
        """
        Append a call event (C{source} provider, gateway or assistant;
        C{kind} one of SPEC §5's) after every write queued before it.
        """
        store = self._gateway.store
        self.run("append_event", store.appendEvent, self.contextId, source, kind, payload)

    def run(self, name: str, op: Callable[..., Deferred[Any]], *args: Any, **kw: Any) -> None:
        """
        Queue one store operation C{op(*args, **kw)}, named C{name} for
        metrics and logs.
        """
        self.pending += 1

        def step(_: object) -> Deferred[None]:
            d: Deferred[Any] = Deferred.fromCoroutine(self._gateway.storeOp(name, op, *args, **kw))
            d.addCallbacks(self._done, self._failed, errbackArgs=(name,))
            return d

        self._tail.addCallback(step)

    def _done(self, result: object) -> None:
        self.pending -= 1

    def _failed(self, failure: Failure, name: str) -> None:
        self.pending -= 1
        self.failures += 1
        self._log.failure(
            "store {operation} failed for call {context_id}",
            failure,
            LogLevel.error,
            operation=name,
            context_id=self.contextId,
        )

    def flushed(self) -> Deferred[None]:
        """
        A Deferred that fires once every write queued so far is done.
        """
        d: Deferred[None] = Deferred()

        def fire(result: None) -> None:
            d.callback(None)
            return result

        self._tail.addCallback(fire)
        return d
