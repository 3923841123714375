# -*- test-case-name: tests.test_store_service -*-
"""
Services around a context store: start/close it with the application
(L{StoreService}) and expire unclaimed contexts periodically
(L{ContextExpiryService}).
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from ..interfaces import IContextStore
from ._model import StoreError, StoreUnavailable


class StoreService(Service):
    """
    Starts the store with the application and closes it on shutdown.

    Add it to the application's MultiService I{first}, so that it stops
    last, after everything that uses the store.

    @param store: the store.
    @param clock: when given, a start that fails with L{StoreUnavailable}
        (the database is not up yet) is retried with exponential backoff
        from C{retryDelay} to C{maxRetryDelay} seconds; when None, it is
        not retried and L{whenReady} fails.
    """

    _log = Logger()

    def __init__(
        self,
        store: IContextStore,
        clock: IReactorTime | None = None,
        retryDelay: float = 1.0,
        maxRetryDelay: float = 30.0,
    ) -> None:
        self.store = store
        self._clock = clock
        self._firstDelay = retryDelay
        self._maxDelay = maxRetryDelay
        self._delay = retryDelay
        self._retry: IDelayedCall | None = None
        self._waiters: list[Deferred[None]] = []
        #: True once the store has started
        self.ready = False
        self._error: Failure | None = None

    def startService(self) -> None:
        super().startService()
        self.ready = False
        self._error = None
        self._delay = self._firstDelay
        self._attempt()

    def _attempt(self) -> None:
        self._retry = None
        d: Deferred[None] = defer.maybeDeferred(self.store.start)
        d.addCallbacks(self._started, self._failed)

    def _started(self, _: object) -> None:
        if not self.running:
            return
        self.ready = True
        self._log.info("context store ready")
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def _failed(self, f: Failure) -> None:
        if not self.running:
            return
        if self._clock is not None and f.check(StoreUnavailable):
            self._log.warn(
                "context store unavailable ({error}); retrying in {delay}s",
                error=str(f.value),
                delay=self._delay,
            )
            self._retry = self._clock.callLater(self._delay, self._attempt)
            self._delay = min(self._delay * 2, self._maxDelay)
            return
        self._log.failure("context store failed to start", f, level=LogLevel.error)
        self._error = f
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.errback(f)

    def whenReady(self) -> Deferred[None]:
        """
        A new Deferred that fires once the store has started, or fails with
        the reason it could not start (not retried) or StoreUnavailable if
        the service stops first.
        """
        if self.ready:
            return defer.succeed(None)
        if self._error is not None:
            return defer.fail(self._error)
        waiter: Deferred[None] = Deferred(self._waiters.remove)
        self._waiters.append(waiter)
        return waiter

    def stopService(self) -> Deferred[None]:
        super().stopService()
        self.ready = False
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.errback(StoreUnavailable("the context store service stopped"))
        return defer.maybeDeferred(self.store.close)


class ContextExpiryService(Service):
    """
    Every C{interval} seconds of C{clock}, mark unclaimed contexts past
    their TTL as expired. Store errors are logged, never raised: the next
    run tries again.

    @ivar lastExpired: how many contexts the last successful run expired.
    """

    _log = Logger()

    def __init__(self, store: IContextStore, clock: IReactorTime, interval: float = 30.0) -> None:
        if not interval > 0:
            raise ValueError(f"the expiry interval must be positive, not {interval!r}")
        self.store = store
        self.clock = clock
        self.interval = float(interval)
        self.lastExpired = 0
        self._loop: LoopingCall | None = None
        self._current: Deferred[None] | None = None

    def startService(self) -> None:
        super().startService()
        loop = self._loop = LoopingCall(self._run)
        loop.clock = self.clock
        # the first run waits one interval: the store is starting meanwhile
        loop.start(self.interval, now=False)

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        loop, self._loop = self._loop, None
        if loop is not None and loop.running:
            loop.stop()
        # let a run in progress finish before the store closes
        current = self._current
        return current

    def _run(self) -> Deferred[None]:
        d: Deferred[Any] = defer.maybeDeferred(self.store.expireUnclaimed)
        d.addCallbacks(self._expired, self._failed)
        self._current = d

        def done(result: None) -> None:
            if self._current is d:
                self._current = None
            return result

        return d.addBoth(done)

    def _expired(self, count: int) -> None:
        self.lastExpired = count
        if count:
            self._log.info("expired {count} unclaimed call contexts", count=count)

    def _failed(self, f: Failure) -> None:
        if f.check(StoreError):
            self._log.warn("context expiry failed: {error}", error=str(f.value))
        else:
            self._log.failure("context expiry failed", f, level=LogLevel.error)
