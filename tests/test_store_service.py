"""
Tests for L{rapida_twisted.store.StoreService} and
L{rapida_twisted.store.ContextExpiryService}: lifecycles on a
L{task.Clock}, against a scripted fake store and the in-memory store.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, task
from twisted.internet.defer import Deferred
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from rapida_twisted.store import (
    EXPIRED,
    ContextExpiryService,
    MemoryContextStore,
    StoreService,
    StoreUnavailable,
)


class FakeStore:
    """
    Records calls; each C{start}/C{expireUnclaimed} returns the next
    Deferred from a list the test controls.
    """

    def __init__(self) -> None:
        self.starts: list[Deferred[None]] = []
        self.expiries: list[Deferred[int]] = []
        self.closed = 0

    def start(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self.starts.append(d)
        return d

    def close(self) -> Deferred[None]:
        self.closed += 1
        return defer.succeed(None)

    def expireUnclaimed(self) -> Deferred[int]:
        d: Deferred[int] = Deferred()
        self.expiries.append(d)
        return d


class StoreServiceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.store = FakeStore()

    def test_ready(self) -> None:
        service = StoreService(self.store)  # type: ignore[arg-type]
        service.startService()
        waiting = service.whenReady()
        self.assertNoResult(waiting)
        self.assertEqual(len(self.store.starts), 1)
        self.store.starts[0].callback(None)
        self.assertIsNone(self.successResultOf(waiting))
        self.assertTrue(service.ready)
        self.assertIsNone(self.successResultOf(service.whenReady()))

    def test_retryWhileUnavailable(self) -> None:
        """
        With a clock, a store that is not up yet is retried with backoff.
        """
        service = StoreService(self.store, self.clock, retryDelay=1.0, maxRetryDelay=4.0)  # type: ignore[arg-type]
        service.startService()
        waiting = service.whenReady()
        with capturedLogs() as events:
            for attempt, delay in enumerate([1.0, 2.0, 4.0, 4.0]):
                self.store.starts[attempt].errback(StoreUnavailable("connection refused"))
                self.clock.advance(delay - 0.01)
                self.assertEqual(len(self.store.starts), attempt + 1)
                self.clock.advance(0.01)
                self.assertEqual(len(self.store.starts), attempt + 2)
        self.assertEqual([e["log_level"] for e in events], [LogLevel.warn] * 4)
        self.assertEqual(events[0]["error"], "connection refused")
        self.assertNoResult(waiting)
        self.store.starts[-1].callback(None)
        self.successResultOf(waiting)

    def test_noRetryWithoutClock(self) -> None:
        service = StoreService(self.store)  # type: ignore[arg-type]
        service.startService()
        waiting = service.whenReady()
        self.store.starts[0].errback(StoreUnavailable("down"))
        self.failureResultOf(waiting, StoreUnavailable)
        self.failureResultOf(service.whenReady(), StoreUnavailable)
        self.assertEqual(len(self.flushLoggedErrors(StoreUnavailable)), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_otherErrorsAreNotRetried(self) -> None:
        service = StoreService(self.store, self.clock)  # type: ignore[arg-type]
        service.startService()
        waiting = service.whenReady()
        self.store.starts[0].errback(ValueError("migration 2 is broken"))
        self.failureResultOf(waiting, ValueError)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop(self) -> None:
        """
        Stopping cancels a pending retry, fails waiters and closes the store.
        """
        service = StoreService(self.store, self.clock)  # type: ignore[arg-type]
        service.startService()
        waiting = service.whenReady()
        self.store.starts[0].errback(StoreUnavailable("down"))
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.successResultOf(service.stopService())
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.failureResultOf(waiting, StoreUnavailable)
        self.assertEqual(self.store.closed, 1)
        self.assertFalse(service.ready)

    def test_stopWhileStarting(self) -> None:
        service = StoreService(self.store, self.clock)  # type: ignore[arg-type]
        service.startService()
        self.successResultOf(service.stopService())
        # a late result is ignored, success or failure
        self.store.starts[0].errback(StoreUnavailable("down"))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertFalse(service.ready)

    def test_cancelWaiter(self) -> None:
        service = StoreService(self.store)  # type: ignore[arg-type]
        service.startService()
        waiting = service.whenReady()
        waiting.cancel()
        self.failureResultOf(waiting, defer.CancelledError)
        self.store.starts[0].callback(None)
        self.assertTrue(service.ready)

    def test_realStore(self) -> None:
        store = MemoryContextStore(self.clock)
        service = StoreService(store)
        service.startService()
        self.successResultOf(service.whenReady())
        self.successResultOf(service.stopService())
        self.failureResultOf(store.ping(), StoreUnavailable)


class ContextExpiryServiceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = task.Clock()
        self.store = FakeStore()

    def test_interval(self) -> None:
        with self.assertRaises(ValueError):
            ContextExpiryService(self.store, self.clock, interval=0)  # type: ignore[arg-type]

    def test_runsEveryInterval(self) -> None:
        service = ContextExpiryService(self.store, self.clock, interval=10)  # type: ignore[arg-type]
        service.startService()
        self.assertEqual(self.store.expiries, [])  # not at once: the store is starting
        self.clock.advance(10)
        self.assertEqual(len(self.store.expiries), 1)
        with capturedLogs() as events:
            self.store.expiries[0].callback(3)
        self.assertEqual(service.lastExpired, 3)
        self.assertEqual([(e["log_level"], e["count"]) for e in events], [(LogLevel.info, 3)])
        self.clock.advance(10)
        self.assertEqual(len(self.store.expiries), 2)
        with capturedLogs() as events:
            self.store.expiries[1].callback(0)
        self.assertEqual(events, [])  # nothing to say

    def test_noOverlap(self) -> None:
        """
        A slow run delays the next one instead of overlapping it.
        """
        service = ContextExpiryService(self.store, self.clock, interval=10)  # type: ignore[arg-type]
        service.startService()
        self.clock.advance(10)
        self.clock.advance(25)
        self.assertEqual(len(self.store.expiries), 1)
        self.store.expiries[0].callback(0)
        self.clock.advance(10)
        self.assertEqual(len(self.store.expiries), 2)

    def test_storeErrorsAreLogged(self) -> None:
        service = ContextExpiryService(self.store, self.clock, interval=5)  # type: ignore[arg-type]
        service.startService()
        self.clock.advance(5)
        with capturedLogs() as events:
            self.store.expiries[0].errback(StoreUnavailable("down"))
        self.assertEqual([(e["log_level"], e["error"]) for e in events], [(LogLevel.warn, "down")])
        self.clock.advance(5)
        self.store.expiries[1].errback(RuntimeError("bug"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        # still running
        self.clock.advance(5)
        self.assertEqual(len(self.store.expiries), 3)

    def test_stop(self) -> None:
        service = ContextExpiryService(self.store, self.clock, interval=5)  # type: ignore[arg-type]
        service.startService()
        self.clock.advance(5)
        stopping: Any = service.stopService()
        # the run in progress finishes before the store may close
        self.assertNoResult(stopping)
        self.store.expiries[0].callback(1)
        self.successResultOf(stopping)
        self.clock.advance(50)
        self.assertEqual(len(self.store.expiries), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stopIdle(self) -> None:
        service = ContextExpiryService(self.store, self.clock, interval=5)  # type: ignore[arg-type]
        service.startService()
        self.assertIsNone(service.stopService())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_expiresRealContexts(self) -> None:
        store = MemoryContextStore(self.clock, ttl=60)
        cid = self.successResultOf(store.create("twilio", "a")).context.context_id
        service = ContextExpiryService(store, self.clock, interval=15)
        service.startService()
        self.clock.pump([15] * 3)
        self.assertEqual(self.successResultOf(store.get(cid)).status, "pending")
        self.clock.advance(15)
        self.assertEqual(self.successResultOf(store.get(cid)).status, EXPIRED)
        self.assertEqual(service.lastExpired, 1)
        service.stopService()
