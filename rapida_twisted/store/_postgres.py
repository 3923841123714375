# -*- test-case-name: tests.test_store -*-
"""
The production store: PostgreSQL through txpostgres, shared by every
gateway node.

txpostgres gives non-blocking psycopg2 connections driven by the reactor.
Its pool has a fixed size and never reconnects, so L{_Pool} keeps the
txpostgres pool's construction (and its reactor injection) but owns the
checkout:

  - live idle connections serve requests; requests queue (FIFO) while all
    are busy;
  - a connection that dies (noticed while idle, or under a statement) is
    set aside and reconnected at once, then with backoff up to 10 s;
  - once reconnecting has failed and no connection is alive, requests fail
    at once with L{StoreUnavailable} instead of queueing behind a server
    that is not there;
  - a read-only operation that fails because its connection died is run
    once more (after a reactor turn, on a live or reconnected connection);
    writes are not retried, since they may have happened;
  - every operation has a deadline (C{timeout}); cancelling an operation
    stops the wait, never the query (txpostgres cannot cancel cleanly),
    which finishes before its connection is reused.

libpq resolves host names synchronously when it starts connecting: give
an IP address (or a Unix socket directory) where that matters.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg2
import psycopg2.extensions
from twisted.internet import defer, task
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from txpostgres import txpostgres

from . import _ops
from ._base import SQLContextStore
from ._model import StoreUnavailable
from ._ops import POSTGRES, Params, Queries, Rows, Script

T = TypeVar("T")

#: connection settings added unless the DSN sets them
_CONNECT_DEFAULTS: dict[str, Any] = {
    "application_name": "rapida-twisted",
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}

#: failures meaning "the database is not there (right now)"
_UNAVAILABLE = (
    psycopg2.OperationalError,
    psycopg2.InterfaceError,
    txpostgres.RollbackFailed,
    ConnectionDone,
    ConnectionLost,
)


class _ConnectionFailed(StoreUnavailable):
    """
    The connection failed under an operation (so a read may be retried).
    """


def _firstLine(error: object) -> str:
    """
    The first line of an error's message (psycopg2's run over several).
    """
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _fetch(cursor: Any) -> Rows:
    return cursor.fetchall() if cursor.description is not None else []


def _shield(d: Deferred[T]) -> Deferred[T]:
    """
    A Deferred with C{d}'s result whose cancellation does not reach C{d}:
    txpostgres cannot cancel a query cleanly (it would send a blocking
    cancel request), so a cancelled caller just stops waiting while the
    query finishes on its connection.
    """
    outer: Deferred[T] = Deferred(lambda _: None)

    def forward(result: Any) -> None:
        if not outer.called:
            if isinstance(result, Failure):
                outer.errback(result)
            else:
                outer.callback(result)

    d.addBoth(forward)
    return outer


class _Connection(txpostgres.Connection):
    """
    A txpostgres connection that tells its pool when the server goes away,
    and can run one statement returning its rows (or none).
    """

    def __init__(self, reactor: Any, cooperator: Any, pool: _Pool) -> None:
        super().__init__(reactor=reactor, cooperator=cooperator)
        self._pool = pool
        self._closing = False

    @property
    def broken(self) -> bool:
        """
        Is the underlying psycopg2 connection closed or broken?
        """
        return self._connection is None or bool(self._connection.closed)

    def connect(self, *args: Any, **kwargs: Any) -> Deferred[Any]:
        self._closing = False
        return super().connect(*args, **kwargs)

    def close(self) -> None:
        self._closing = True
        if self._connection is not None:
            super().close()

    def doRead(self) -> BaseException | None:
        # While idle, the connection is a reader (for NOTIFY). When the server
        # closes it, poll() raises here; txpostgres would let that reach the
        # reactor, which logs it as an unhandled error. Hand it back as the
        # disconnection reason instead.
        try:
            super().doRead()
        except psycopg2.Error as e:
            return e
        if self.broken:
            return ConnectionLost("the server closed the connection")
        return None

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
        if not self._closing:
            self._pool.connectionDied(self, reason)

    def runStatement(self, sql: str, params: Params) -> Deferred[Rows]:
        return self._doit(self._runStatement, sql, params)

    def _runStatement(self, sql: str, params: Params) -> Deferred[Rows]:
        # no parameters: None, so that psycopg2 does not %-interpolate
        return self.cursor().execute(sql, params or None).addCallback(_fetch)


class _Pool(txpostgres.ConnectionPool):
    """
    A fixed number of connections, checked out one request at a time,
    reconnected when they die.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: IReactorTime,
        dsn: str,
        size: int,
        connectTimeout: float,
        maxDelay: float = 10.0,
        **connectKw: Any,
    ) -> None:
        # txpostgres builds its connections in __init__ with self.reactor
        self.reactor = reactor
        self._connectTimeout = connectTimeout
        self._maxDelay = maxDelay
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()
        self._dead: set[_Connection] = set()
        self._waiters: deque[Deferred[_Connection]] = deque()
        self._timers: dict[_Connection, IDelayedCall] = {}
        self._delays: dict[_Connection, float] = {}
        self._running = False
        self._closed = False
        #: True after a connection attempt failed, until one succeeds
        self._unreachable = False
        super().__init__(None, dsn, min=size, **connectKw)
        self._all: list[_Connection] = list(self.connections)

    def connectionFactory(self, reactor: Any, cooperator: Any) -> _Connection:
        # cooperator: txpostgres uses it only for NOTIFY, which we never LISTEN to
        return _Connection(reactor, cooperator, self)

    # --- lifecycle ---------------------------------------------------------

    def start(self) -> Deferred[None]:
        """
        Connect every connection; fail with StoreUnavailable only when none
        could connect (the others are then reconnected in the background).
        """
        results = DeferredList([self._connect(c) for c in self._all], consumeErrors=True)
        return results.addCallback(self._started)

    def _started(self, results: list[tuple[bool, Any]]) -> None:
        if self._closed:
            raise StoreUnavailable("the store was closed while starting")
        failures = [r for ok, r in results if not ok]
        if len(failures) == len(self._all):
            self.close()
            failures[0].raiseException()
        self._running = True
        for conn, (ok, _) in zip(self._all, results, strict=True):
            if ok:
                self._give(conn)
            else:
                self._dead.add(conn)
                self._scheduleReconnect(conn)

    def close(self) -> None:
        self._closed = True
        self._running = False
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        waiters, self._waiters = self._waiters, deque()
        for waiter in waiters:
            waiter.errback(StoreUnavailable("the store is closed"))
        for conn in self._all:
            conn.close()

    def _connect(self, conn: _Connection) -> Deferred[Any]:
        """
        Connect C{conn}, giving up after the connect timeout (libpq ignores
        C{connect_timeout} for asynchronous connections).
        """
        timedOut = []

        def abandon() -> None:
            timedOut.append(True)
            conn.close()

        timer = self.reactor.callLater(self._connectTimeout, abandon)

        def done(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            if timedOut:
                return Failure(
                    StoreUnavailable(f"connecting took longer than {self._connectTimeout:g} s")
                )
            return result

        return conn.connect(*self.connargs, **self.connkw).addBoth(done)

    # --- checkout ----------------------------------------------------------

    def acquire(self) -> Deferred[_Connection]:
        """
        A live connection for one request; release it with L{release}.
        """
        if not self._running:
            return defer.fail(StoreUnavailable("the PostgreSQL store is not started"))
        if self._idle:
            conn = self._idle.pop()
            self._busy.add(conn)
            return defer.succeed(conn)
        if self._unreachable and len(self._dead) == len(self._all):
            # don't queue behind a server that is not there
            return defer.fail(StoreUnavailable("PostgreSQL is unreachable; reconnecting"))
        waiter: Deferred[_Connection] = Deferred(self._waiters.remove)
        self._waiters.append(waiter)
        return waiter

    def release(self, conn: _Connection, failure: Failure | None = None) -> None:
        """
        Return a connection after a request; C{failure} is how the request
        failed, if it did.
        """
        self._busy.discard(conn)
        if self._closed:
            return
        if failure is not None and failure.check(txpostgres.RollbackFailed):
            # a transaction may be left open: start afresh
            self.connectionDied(conn, failure)
        if conn.broken:
            self.connectionDied(conn, failure)
        if conn in self._dead:
            if conn not in self._timers:
                self._scheduleReconnect(conn)
            return
        self._give(conn)

    def withConnection(self, work: Callable[[_Connection], Deferred[T]]) -> Deferred[T]:
        """
        Run C{work} on a checked-out connection. Cancelling the result stops
        the wait, not the work, which finishes before the connection is
        released.
        """

        def run(conn: _Connection) -> Deferred[T]:
            try:
                d = work(conn)
            except Exception:
                d = defer.fail()

            def release(result: Any) -> Any:
                self.release(conn, result if isinstance(result, Failure) else None)
                return result

            return _shield(d.addBoth(release))

        return self.acquire().addCallback(run)

    def _give(self, conn: _Connection) -> None:
        if self._waiters:
            self._busy.add(conn)
            self._waiters.popleft().callback(conn)
        else:
            self._idle.append(conn)

    # --- death and resurrection -------------------------------------------

    def connectionDied(self, conn: _Connection, reason: Failure | None) -> None:
        """
        C{conn} lost its server: set it aside and reconnect it (once it is
        no longer in use).
        """
        if self._closed or conn in self._dead:
            return
        self._dead.add(conn)
        if conn in self._idle:
            self._idle.remove(conn)
        self._log.warn(
            "lost a PostgreSQL connection ({reason}); reconnecting",
            reason=_firstLine(reason.value) if reason is not None else "broken",
        )
        if conn not in self._busy:
            self._scheduleReconnect(conn)
        self._failWaitersIfUnreachable()

    def _failWaitersIfUnreachable(self) -> None:
        if self._unreachable and len(self._dead) == len(self._all):
            waiters, self._waiters = self._waiters, deque()
            for waiter in waiters:
                waiter.errback(StoreUnavailable("PostgreSQL is unreachable; reconnecting"))

    def _scheduleReconnect(self, conn: _Connection) -> None:
        delay = self._delays.get(conn, 0.0)
        self._delays[conn] = min(max(delay * 2, 0.25), self._maxDelay)
        self._timers[conn] = self.reactor.callLater(delay, self._reconnect, conn)

    def _reconnect(self, conn: _Connection) -> None:
        del self._timers[conn]
        conn.close()
        self._connect(conn).addCallbacks(
            self._reconnected, self._reconnectFailed, callbackArgs=(conn,), errbackArgs=(conn,)
        )

    def _reconnected(self, _: object, conn: _Connection) -> None:
        if self._closed:
            conn.close()
            return
        self._dead.discard(conn)
        self._delays.pop(conn, None)
        self._unreachable = False
        self._log.info("reconnected to PostgreSQL")
        self._give(conn)

    def _reconnectFailed(self, reason: Failure, conn: _Connection) -> None:
        if self._closed:
            return
        self._unreachable = True
        self._failWaitersIfUnreachable()
        self._log.debug(
            "reconnecting to PostgreSQL failed ({reason}); retrying in {delay}s",
            reason=_firstLine(reason.value),
            delay=self._delays.get(conn, 0.0),
        )
        self._scheduleReconnect(conn)


class PostgresContextStore(SQLContextStore):
    """
    The production store: PostgreSQL via txpostgres.

    @param reactor: the reactor (file descriptors and timeouts).
    @param dsn: a libpq connection string or C{postgresql://} URL; C{""}
        means the libpq C{PG*} environment variables.
    @param ttl: seconds an unclaimed context lives.
    @param clock: where timestamps come from; the reactor when None.
    @param poolSize: how many connections to keep open.
    @param timeout: seconds before an operation (or a connection attempt)
        fails with L{StoreUnavailable}.
    @raise ValueError: if C{dsn} cannot be parsed.
    """

    _log = Logger()

    def __init__(
        self,
        reactor: IReactorTime,
        dsn: str,
        ttl: float = 120.0,
        clock: IReactorTime | None = None,
        poolSize: int = 4,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(Queries(POSTGRES), clock if clock is not None else reactor, ttl)
        try:
            parsed = psycopg2.extensions.parse_dsn(dsn)
        except psycopg2.Error as e:
            raise ValueError(f"invalid PostgreSQL DSN: {_firstLine(e)}") from None
        if poolSize < 1:
            raise ValueError(f"poolSize must be at least 1, not {poolSize!r}")
        self._reactor = reactor
        self._dsn = dsn
        self._connectKw = {k: v for k, v in _CONNECT_DEFAULTS.items() if k not in parsed}
        self._poolSize = poolSize
        self._timeout = timeout
        #: where we connect, for logs (never the password)
        self.where = "{}:{}/{}".format(
            parsed.get("host", "(PGHOST)"),
            parsed.get("port", "(PGPORT)"),
            parsed.get("dbname", "(PGDATABASE)"),
        )
        self._pool: _Pool | None = None

    def start(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._start())

    async def _start(self) -> None:
        if self._pool is not None:
            return
        pool = self._pool = _Pool(
            self._reactor, self._dsn, self._poolSize, self._timeout, **self._connectKw
        )
        try:
            await pool.start().addErrback(self._translate)
            applied = []
            for migration in self._q.dialect.migrations:
                if await self._run(_ops.migrate(self._q, migration), transaction=True):
                    applied.append(migration.version)
        except BaseException:
            if self._pool is pool:
                self._pool = None
            pool.close()
            raise
        self._log.info(
            "PostgreSQL store ready at {where} ({size} connections, migrations applied: {versions})",
            where=self.where,
            size=self._poolSize,
            versions=applied,
        )

    def close(self) -> Deferred[None]:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
        return defer.succeed(None)

    def _run(self, script: Script[T], transaction: bool = False) -> Deferred[T]:
        pool = self._pool
        if pool is None:
            return defer.fail(StoreUnavailable("the PostgreSQL store is not started"))

        def work(conn: _Connection) -> Deferred[T]:
            if transaction:
                return conn.runInteraction(self._interaction, script)
            return Deferred.fromCoroutine(_ops.driveAsync(script, conn.runStatement))

        d = pool.withConnection(work)
        d.addTimeout(self._timeout, self._reactor)
        return d.addErrback(self._translate)

    @staticmethod
    def _interaction(cursor: Any, script: Script[T]) -> Deferred[T]:
        def execute(sql: str, params: Params) -> Deferred[Rows]:
            return cursor.execute(sql, params or None).addCallback(_fetch)

        return Deferred.fromCoroutine(_ops.driveAsync(script, execute))

    def _translate(self, f: Failure) -> Failure:
        if f.check(defer.TimeoutError):
            raise StoreUnavailable(
                f"PostgreSQL at {self.where} did not answer within {self._timeout:g} s"
            ) from None
        if f.check(*_UNAVAILABLE):
            raise _ConnectionFailed(
                f"PostgreSQL at {self.where}: {_firstLine(f.value)}"
            ) from f.value
        return f

    def _retryRead(
        self, f: Failure, build: Callable[[], Script[T]], transaction: bool
    ) -> Deferred[T] | Failure:
        # A connection can die under a statement before the pool notices
        # (a failover, a killed backend): reads are safe to run once more.
        # Let the reactor turn first, so the pool hears of every other
        # connection that died in the same event and the retry gets a live
        # (or reconnected) one.
        if f.check(_ConnectionFailed):
            turn: Deferred[None] = task.deferLater(self._reactor, 0, lambda: None)
            return turn.addCallback(lambda _: self._run(build(), transaction))
        return f
