# -*- test-case-name: tests.test_store -*-
"""
The embedded SQLite store, for one machine.

L{SQLiteContextStore} never touches the database from the reactor thread:
one connection lives in a private one-thread pool, which serialises every
statement (so a claim is trivially atomic inside the process) while WAL
mode and C{BEGIN IMMEDIATE} keep other processes sharing the file safe.
"""

from __future__ import annotations

import sqlite3
from typing import Any, TypeVar

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorCore, IReactorFromThreads, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from . import _ops
from ._base import SQLContextStore
from ._model import StoreError, StoreUnavailable
from ._ops import SQLITE, Params, Queries, Rows, Script

T = TypeVar("T")

#: how long a writer waits for another process's lock before giving up (ms)
_BUSY_TIMEOUT_MS = 5000


class SQLiteBase(SQLContextStore):
    """
    The blocking half of the SQLite stores (this one and
    L{rapida_twisted.store._memory.MemoryContextStore}): a connection and a
    way to run scripts on it. Subclasses decide which thread this runs in.
    """

    def __init__(self, path: str, clock: IReactorTime, ttl: float) -> None:
        super().__init__(Queries(SQLITE), clock, ttl)
        self.path = path
        self._conn: sqlite3.Connection | None = None

    def _openSync(self) -> list[int]:
        """
        Open the database, configure it and apply pending migrations.
        Returns the versions applied.

        @raise StoreUnavailable: it cannot be opened (now).
        @raise StoreError: the file is not an SQLite database.
        """
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=_BUSY_TIMEOUT_MS / 1000,
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            self._conn = conn
            applied = []
            for migration in self._q.dialect.migrations:
                if self._runSync(_ops.migrate(self._q, migration), transaction=True):
                    applied.append(migration.version)
            return applied
        except BaseException as e:
            self._conn = None
            if conn is not None:
                conn.close()
            if isinstance(e, sqlite3.OperationalError):
                raise StoreUnavailable(f"cannot open SQLite database {self.path!r}: {e}") from e
            if isinstance(e, sqlite3.DatabaseError):
                raise StoreError(f"{self.path!r} is not a usable SQLite database: {e}") from e
            raise

    def _closeSync(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _runSync(self, script: Script[T], transaction: bool) -> T:
        conn = self._conn
        if conn is None:
            raise StoreUnavailable("the SQLite store is not started")

        def execute(sql: str, params: Params) -> Rows:
            return conn.execute(sql, params).fetchall()

        try:
            if transaction:
                conn.execute("BEGIN IMMEDIATE")
            result = _ops.driveSync(script, execute)
            if transaction:
                conn.execute("COMMIT")
            return result
        except BaseException as e:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # the original error says more
            if isinstance(e, sqlite3.OperationalError):
                # locked beyond the busy timeout, disk full, I/O error...
                raise StoreUnavailable(f"SQLite: {e}") from e
            raise

    def _logApplied(self, applied: list[int]) -> None:
        if applied:
            self._log.info(
                "applied schema migrations {versions} to {path}", versions=applied, path=self.path
            )


class SQLiteContextStore(SQLiteBase):
    """
    The embedded store: one SQLite file, all work in a private thread.

    @param reactor: the reactor (for threads and, by default, time).
    @param path: the database file (created if missing), or C{":memory:"}.
    @param ttl: seconds an unclaimed context lives.
    @param clock: where timestamps come from; the reactor when None.
    """

    def __init__(
        self,
        reactor: IReactorFromThreads,
        path: str,
        ttl: float = 120.0,
        clock: IReactorTime | None = None,
    ) -> None:
        super().__init__(path, clock if clock is not None else IReactorTime(reactor), ttl)
        self._reactor = reactor
        #: the worker pool while started (None otherwise)
        self._pool: ThreadPool | None = None
        self._closing = False
        self._trigger: Any = None

    def start(self) -> Deferred[None]:
        if self._pool is not None:
            return defer.succeed(None)
        pool = self._pool = ThreadPool(minthreads=1, maxthreads=1, name="rapida-sqlite")
        pool.start()
        core = IReactorCore(self._reactor, None)
        if core is not None:
            # "before" so that shutdown waits for the close to finish
            self._trigger = core.addSystemEventTrigger("before", "shutdown", self.close)
        d = deferToThreadPool(self._reactor, pool, self._openSync)

        def failed(f: Any) -> Any:
            self._stopped(None, pool)
            return f

        return d.addCallbacks(self._logApplied, failed)

    def close(self) -> Deferred[None]:
        pool = self._pool
        if pool is None or self._closing:
            return defer.succeed(None)
        # refuse new work at once; work already queued runs before the close
        self._closing = True
        return deferToThreadPool(self._reactor, pool, self._closeSync).addBoth(self._stopped, pool)

    def _stopped(self, result: Any, pool: ThreadPool) -> Any:
        self._pool = None
        self._closing = False
        trigger, self._trigger = self._trigger, None
        if trigger is not None:
            try:
                IReactorCore(self._reactor).removeSystemEventTrigger(trigger)
            except ValueError:
                pass  # it is firing: this close is the shutdown's
        pool.stop()
        return result

    def _run(self, script: Script[T], transaction: bool = False) -> Deferred[T]:
        pool = self._pool
        if pool is None or self._closing:
            return defer.fail(StoreUnavailable("the SQLite store is not started"))
        return deferToThreadPool(self._reactor, pool, self._runSync, script, transaction)
