# -*- test-case-name: tests.test_store -*-
"""
The part of L{IContextStore} both SQL backends share: validation, the
clock, and turning each call into a script for the backend's driver.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..interfaces import IContextStore
from . import _ops
from ._model import CallContext, CallEvent, NewContext, hashToken, newToken
from ._ops import Queries, Script

T = TypeVar("T")


@implementer(IContextStore)
class SQLContextStore:
    """
    Base class of the SQL stores. Subclasses implement L{start}, L{close}
    and L{_run}.

    @ivar ttl: seconds an unclaimed context lives.
    """

    _log = Logger()

    def __init__(self, queries: Queries, clock: IReactorTime, ttl: float) -> None:
        if not ttl > 0:
            raise ValueError(f"the context TTL must be positive, not {ttl!r}")
        self._q = queries
        self._clock = clock
        self.ttl = float(ttl)

    # --- what a backend provides ------------------------------------------

    def start(self) -> Deferred[None]:
        raise NotImplementedError()

    def close(self) -> Deferred[None]:
        raise NotImplementedError()

    def _run(self, script: Script[T], transaction: bool = False) -> Deferred[T]:
        """
        Run C{script} against the database. With C{transaction} all its
        statements commit or roll back together; otherwise each statement
        may commit on its own. Database unavailability fails with
        L{StoreUnavailable}.
        """
        raise NotImplementedError()

    # --- IContextStore ----------------------------------------------------

    def _retryRead(
        self, f: Failure, build: Callable[[], Script[T]], transaction: bool
    ) -> Deferred[T] | Failure:
        """
        A read-only operation failed with C{f}: return C{f}, or a Deferred
        that runs C{build()} again. The default never retries.
        """
        return f

    def _submit(
        self,
        build: Callable[[], Script[T]],
        transaction: bool = False,
        readOnly: bool = False,
    ) -> Deferred[T]:
        """
        Build a script (validating arguments) and run it; validation errors
        fail the returned Deferred instead of raising. A C{readOnly} script
        may be retried by L{_retryRead}.
        """
        try:
            script = build()
        except Exception:
            return defer.fail()
        d = self._run(script, transaction)
        if readOnly:
            d.addErrback(self._retryRead, build, transaction)
        return d

    def ping(self) -> Deferred[None]:
        return self._submit(lambda: _ops.ping(self._q), readOnly=True)

    def create(
        self,
        provider: str,
        assistant_id: str,
        direction: str = "inbound",
        caller: str = "",
        callee: str = "",
        channel_uuid: str = "",
        metadata: dict[str, Any] | None = None,
    ) -> Deferred[NewContext]:
        token = newToken()

        def build() -> Script[CallContext]:
            params = (
                str(uuid.uuid4()),
                _ops.checkText("provider", provider, required=True),
                _ops.checkText("assistant_id", assistant_id, required=True),
                str(uuid.uuid4()),
                hashToken(token),
                _ops.checkDirection(direction),
                _ops.checkText("caller", caller),
                _ops.checkText("callee", callee),
                _ops.checkText("channel_uuid", channel_uuid),
                self._clock.seconds(),
                _ops.dumpJSON("metadata", metadata),
            )
            return _ops.create(self._q, params)

        return self._submit(build).addCallback(NewContext, token)

    def get(self, context_id: str) -> Deferred[CallContext]:
        return self._submit(
            lambda: _ops.get(self._q, _ops.checkContextId(context_id)), readOnly=True
        )

    def claim(self, context_id: str) -> Deferred[CallContext]:
        return self._submit(
            lambda: _ops.claim(
                self._q, _ops.checkContextId(context_id), self._clock.seconds(), self.ttl
            )
        )

    def findByChannel(self, provider: str, channel_uuid: str) -> Deferred[CallContext | None]:
        try:
            _ops.checkText("provider", provider)
            if not _ops.checkText("channel_uuid", channel_uuid).strip():
                return defer.succeed(None)
        except ValueError:
            return defer.fail()
        return self._submit(
            lambda: _ops.findByChannel(self._q, provider, channel_uuid), readOnly=True
        )

    def setChannel(self, context_id: str, channel_uuid: str) -> Deferred[bool]:
        return self._submit(
            lambda: _ops.setChannel(
                self._q,
                _ops.checkContextId(context_id),
                _ops.checkText("channel_uuid", channel_uuid),
            )
        )

    def updateProviderStatus(
        self, context_id: str, provider_status: str, expected: str | None = None
    ) -> Deferred[bool]:
        return self._submit(
            lambda: _ops.updateProviderStatus(
                self._q,
                _ops.checkContextId(context_id),
                _ops.checkText("provider_status", provider_status),
                None if expected is None else _ops.checkText("expected", expected),
            )
        )

    def finish(self, context_id: str, outcome: str, reason: str = "") -> Deferred[bool]:
        return self._submit(
            lambda: _ops.finish(
                self._q,
                _ops.checkContextId(context_id),
                _ops.checkOutcome(outcome),
                _ops.checkText("reason", reason),
                self._clock.seconds(),
            )
        )

    def appendEvent(
        self,
        context_id: str,
        source: str,
        kind: str,
        payload: dict[str, Any] | None = None,
    ) -> Deferred[int]:
        return self._submit(
            lambda: _ops.appendEvent(
                self._q,
                _ops.checkContextId(context_id),
                _ops.checkSource(source),
                _ops.checkKind(kind),
                _ops.dumpJSON("payload", payload),
                self._clock.seconds(),
            )
        )

    def listEvents(self, context_id: str, kind: str | None = None) -> Deferred[list[CallEvent]]:
        return self._submit(
            lambda: _ops.listEvents(
                self._q,
                _ops.checkContextId(context_id),
                None if kind is None else _ops.checkKind(kind),
            ),
            readOnly=True,
        )

    def expireUnclaimed(self) -> Deferred[int]:
        return self._submit(
            lambda: _ops.expireUnclaimed(self._q, self._clock.seconds(), self.ttl),
            transaction=True,
        )
