# -*- test-case-name: tests.test_store -*-
"""
An in-memory L{IContextStore} for unit tests of everything above the
store: synchronous Deferreds, no threads, no files.

It is the SQLite store's schema and statements on a private C{:memory:}
database, run in the calling thread, so it has exactly the semantics of
the real stores (it runs the same contract suite) while every Deferred it
returns has already fired (C{successResultOf}, C{task.Clock}). It blocks
while it works, so it is not for production.
"""

from __future__ import annotations

from typing import TypeVar

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from ._model import StoreUnavailable
from ._ops import Script
from ._sqlite import SQLiteBase

T = TypeVar("T")


class MemoryContextStore(SQLiteBase):
    """
    The store contract in memory, usable as soon as it is constructed
    (L{start} is optional).

    @param clock: where timestamps come from.
    @param ttl: seconds an unclaimed context lives.
    @ivar unavailable: set True to make every operation fail with
        L{StoreUnavailable} (to test how callers cope).
    """

    def __init__(self, clock: IReactorTime, ttl: float = 120.0) -> None:
        super().__init__(":memory:", clock, ttl)
        self.unavailable = False
        self._openSync()

    def start(self) -> Deferred[None]:
        if self._conn is None:
            self._openSync()
        return defer.succeed(None)

    def close(self) -> Deferred[None]:
        self._closeSync()
        return defer.succeed(None)

    def _run(self, script: Script[T], transaction: bool = False) -> Deferred[T]:
        if self.unavailable:
            return defer.fail(StoreUnavailable("memory store marked unavailable"))
        try:
            return defer.succeed(self._runSync(script, transaction))
        except Exception:
            return defer.fail()
