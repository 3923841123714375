# -*- test-case-name: tests.test_store -*-
"""
The store's semantics, written once for both SQL dialects.

Every store operation is a I{script}: a generator that yields
C{(sql, params)} statements, receives each statement's result rows, and
returns the operation's result (or raises a L{StoreError}). Scripts do no
I/O of their own, so the same script runs synchronously on an SQLite
connection in a worker thread and asynchronously on a txpostgres
connection in the reactor thread. Each backend supplies a driver
(L{driveSync} or L{driveAsync}) and the dialect's L{Queries}.

Inputs are validated here, before any statement is issued, so both
backends reject the same bad data with the same L{ValueError}.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

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
)
from ._schema import POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS, Migration

T = TypeVar("T")

Params = Sequence[Any]
Statement = tuple[str, Params]
Rows = list[tuple[Any, ...]]
Script = Generator[Statement, Rows, T]

#: the reason recorded on contexts that were never claimed
EXPIRY_REASON = "not claimed within the context TTL"

_CONTEXT_COLUMNS = (
    "context_id",
    "provider",
    "assistant_id",
    "conversation_id",
    "token_hash",
    "direction",
    "caller",
    "callee",
    "channel_uuid",
    "status",
    "provider_status",
    "created_at",
    "claimed_at",
    "ended_at",
    "reason",
    "metadata",
)
_TIME_COLUMNS = frozenset({"created_at", "claimed_at", "ended_at", "at"})

#: a JSON \u0000 escape (an odd number of backslashes before u0000)
_JSON_NUL = re.compile(r"(?:^|[^\\])(?:\\\\)*\\u0000")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


@dataclass(frozen=True)
class Dialect:
    """
    How one SQL dialect spells the few things that differ.

    @ivar param: the parameter placeholder.
    @ivar timeParam: an expression turning a float-epoch parameter into
        the column's time type.
    @ivar jsonParam: an expression turning a JSON-text parameter into the
        column's JSON type.
    @ivar epoch: a format string reading a time column back as a float
        epoch (C{{col}} is the column).
    @ivar jsonIsText: whether JSON columns read back as text to decode.
    @ivar modifyingCTE: whether an C{UPDATE} may feed an C{INSERT} through
        C{WITH} in one statement.
    @ivar migrationLock: the statement that serialises migrations between
        processes inside the migration transaction, or None when the
        transaction itself is the lock.
    @ivar migrationsTable: creates C{schema_migrations} if it is missing.
    @ivar migrations: the dialect's schema versions, in order.
    """

    name: str
    param: str
    timeParam: str
    jsonParam: str
    epoch: str
    jsonIsText: bool
    modifyingCTE: bool
    migrationLock: str | None
    migrationsTable: str
    migrations: tuple[Migration, ...]


POSTGRES = Dialect(
    name="postgresql",
    param="%s",
    timeParam="to_timestamp(%s)",
    jsonParam="%s::jsonb",
    epoch="extract(epoch FROM {col})::float8",
    jsonIsText=False,
    modifyingCTE=True,
    migrationLock=(
        "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.rapida_schema_migrations'))"
    ),
    migrationsTable=(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version integer PRIMARY KEY,"
        " description text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    ),
    migrations=POSTGRES_MIGRATIONS,
)

SQLITE = Dialect(
    name="sqlite",
    param="?",
    timeParam="%s",
    jsonParam="%s",
    epoch="{col}",
    jsonIsText=True,
    modifyingCTE=False,
    migrationLock=None,
    migrationsTable=(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY NOT NULL,"
        " description TEXT NOT NULL,"
        " applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"
    ),
    migrations=SQLITE_MIGRATIONS,
)


class Queries:
    """
    Every statement of the store, rendered once for one L{Dialect}, plus
    the row decoders.
    """

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        ts, js = dialect.timeParam, dialect.jsonParam

        def col(name: str) -> str:
            return dialect.epoch.format(col=name) if name in _TIME_COLUMNS else name

        cols = ", ".join(col(c) for c in _CONTEXT_COLUMNS)
        eventCols = ", ".join(
            col(c) for c in ("id", "context_id", "at", "source", "kind", "payload")
        )
        self._loads: Callable[[Any], Any] = json.loads if dialect.jsonIsText else _identity

        def sql(text: str) -> str:
            return text.replace("%s", dialect.param)

        self.insertContext = sql(
            "INSERT INTO call_contexts (context_id, provider, assistant_id,"
            " conversation_id, token_hash, direction, caller, callee, channel_uuid,"
            f" status, created_at, metadata) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s,"
            f" '{PENDING}', {ts}, {js}) RETURNING {cols}"
        )
        self.getContext = sql(f"SELECT {cols} FROM call_contexts WHERE context_id = %s")
        self.claim = sql(
            f"UPDATE call_contexts SET status = '{CLAIMED}', claimed_at = {ts}"
            f" WHERE context_id = %s AND status = '{PENDING}' AND created_at > {ts}"
            f" RETURNING {cols}"
        )
        self.findByChannel = sql(
            f"SELECT {cols} FROM call_contexts WHERE provider = %s AND channel_uuid = %s"
            " ORDER BY created_at DESC LIMIT 1"
        )
        self.status = sql("SELECT status FROM call_contexts WHERE context_id = %s")
        # these match only when the value changes, so "True" means "changed"
        self.setChannel = sql(
            "UPDATE call_contexts SET channel_uuid = %s WHERE context_id = %s"
            " AND channel_uuid <> %s RETURNING context_id"
        )
        self.setProviderStatus = sql(
            "UPDATE call_contexts SET provider_status = %s WHERE context_id = %s"
            " AND provider_status <> %s RETURNING context_id"
        )
        self.swapProviderStatus = sql(
            "UPDATE call_contexts SET provider_status = %s WHERE context_id = %s"
            " AND provider_status <> %s AND provider_status = %s RETURNING context_id"
        )
        self.finish = sql(
            f"UPDATE call_contexts SET status = %s, ended_at = {ts}, reason = %s"
            f" WHERE context_id = %s AND status IN ('{PENDING}', '{CLAIMED}')"
            " RETURNING context_id"
        )
        self.appendEvent = sql(
            "INSERT INTO call_events (context_id, at, source, kind, payload)"
            f" SELECT context_id, {ts}, %s, %s, {js} FROM call_contexts"
            " WHERE context_id = %s RETURNING id"
        )
        self.listEvents = sql(
            f"SELECT {eventCols} FROM call_events WHERE context_id = %s ORDER BY id"
        )
        self.listEventsOfKind = sql(
            f"SELECT {eventCols} FROM call_events WHERE context_id = %s AND kind = %s ORDER BY id"
        )
        expire = (
            f"UPDATE call_contexts SET status = '{EXPIRED}', ended_at = {ts}, reason = %s"
            f" WHERE status = '{PENDING}' AND created_at <= {ts} RETURNING context_id"
        )
        insertEvent = "INSERT INTO call_events (context_id, at, source, kind, payload)"
        ended = f"{ts}, 'gateway', 'ended', {js}"
        #: PostgreSQL expires and records the events in one statement; SQLite
        #: (no data-modifying CTE) runs L{expire} then L{expiredEvent} per row
        #: inside one transaction.
        self.expireWithEvents: str | None = None
        if dialect.modifyingCTE:
            self.expireWithEvents = sql(
                f"WITH expired AS ({expire}) {insertEvent}"
                f" SELECT context_id, {ended} FROM expired RETURNING context_id"
            )
        self.expire = sql(expire)
        self.expiredEvent = sql(f"{insertEvent} VALUES (%s, {ended})")
        self.ping = "SELECT 1"

    def context(self, row: Sequence[Any]) -> CallContext:
        """
        A L{CallContext} from one row selected with the context columns.
        """
        values = list(row)
        # SQLite may hand back an integral REAL as an int
        values[11] = float(values[11])
        if values[12] is not None:
            values[12] = float(values[12])
        if values[13] is not None:
            values[13] = float(values[13])
        values[15] = self._loads(values[15])
        return CallContext(*values)

    def event(self, row: Sequence[Any]) -> CallEvent:
        """
        A L{CallEvent} from one row of L{listEvents}.
        """
        return CallEvent(row[0], row[1], float(row[2]), row[3], row[4], self._loads(row[5]))


def _identity(value: Any) -> Any:
    return value


# --- validation -------------------------------------------------------------


def checkText(name: str, value: object, required: bool = False) -> str:
    """
    Return C{value} if it is a string both databases can store (and, when
    C{required}, not blank), otherwise raise L{ValueError} (never a
    UnicodeError).
    """
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, not {type(value).__name__}")
    if required and not value.strip():
        raise ValueError(f"{name} must not be blank")
    if "\x00" in value:
        raise ValueError(f"{name} contains a NUL character")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{name} is not valid Unicode text") from None
    return value


def checkContextId(value: object) -> str:
    """
    The canonical (lower-case) form of a context id, or L{ContextNotFound}
    when C{value} cannot be one of ours, without asking the database.
    """
    if isinstance(value, str):
        cid = value.lower()
        if _UUID.match(cid):
            return cid
    raise ContextNotFound(value)


def dumpJSON(name: str, value: dict[str, Any] | None) -> str:
    """
    Serialise a metadata or payload dict to JSON text that both databases
    accept; L{ValueError} otherwise.
    """
    if value is None:
        return "{}"
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a dict, not {type(value).__name__}")
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as e:
        raise ValueError(f"{name} is not JSON serialisable: {e}") from None
    # PostgreSQL's jsonb refuses the \u0000 escape
    if "\\u0000" in text and _JSON_NUL.search(text):
        raise ValueError(f"{name} contains a NUL character")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{name} is not valid Unicode text") from None
    return text


def checkDirection(direction: object) -> str:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {sorted(DIRECTIONS)}, not {direction!r}")
    return cast(str, direction)


def checkOutcome(outcome: object) -> str:
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {sorted(OUTCOMES)}, not {outcome!r}")
    return cast(str, outcome)


def checkSource(source: object) -> str:
    if source not in SOURCES:
        raise ValueError(f"event source must be one of {sorted(SOURCES)}, not {source!r}")
    return cast(str, source)


def checkKind(kind: object) -> str:
    if kind not in EVENT_KINDS:
        raise ValueError(f"event kind must be one of {sorted(EVENT_KINDS)}, not {kind!r}")
    return cast(str, kind)


# --- scripts ----------------------------------------------------------------


def ping(q: Queries) -> Script[None]:
    yield q.ping, ()


def create(q: Queries, params: Params) -> Script[CallContext]:
    """
    Insert one pending context; C{params} are L{Queries.insertContext}'s.
    """
    rows = yield q.insertContext, params
    return q.context(rows[0])


def get(q: Queries, cid: str) -> Script[CallContext]:
    rows = yield q.getContext, (cid,)
    if not rows:
        raise ContextNotFound(cid)
    return q.context(rows[0])


def claim(q: Queries, cid: str, now: float, ttl: float) -> Script[CallContext]:
    """
    One conditional update; when it changes nothing, read the row to tell
    the caller why.
    """
    rows = yield q.claim, (now, cid, now - ttl)
    if rows:
        return q.context(rows[0])
    context = yield from get(q, cid)
    if context.status == CLAIMED:
        raise ContextAlreadyClaimed(cid)
    if context.status in (PENDING, EXPIRED):
        # a pending row the update skipped is past its TTL
        raise ContextExpired(cid)
    raise ContextFinished(cid)


def findByChannel(q: Queries, provider: str, channel: str) -> Script[CallContext | None]:
    rows = yield q.findByChannel, (provider, channel)
    return q.context(rows[0]) if rows else None


def _changed(q: Queries, cid: str, statement: Statement) -> Script[bool]:
    """
    Run a conditional C{UPDATE ... RETURNING}; True when it changed the
    row, False when the context exists but the condition did not hold,
    ContextNotFound when it is absent.
    """
    rows = yield statement
    if rows:
        return True
    rows = yield q.status, (cid,)
    if not rows:
        raise ContextNotFound(cid)
    return False


def setChannel(q: Queries, cid: str, channel: str) -> Script[bool]:
    return _changed(q, cid, (q.setChannel, (channel, cid, channel)))


def updateProviderStatus(
    q: Queries, cid: str, providerStatus: str, expected: str | None
) -> Script[bool]:
    if expected is None:
        return _changed(q, cid, (q.setProviderStatus, (providerStatus, cid, providerStatus)))
    return _changed(q, cid, (q.swapProviderStatus, (providerStatus, cid, providerStatus, expected)))


def finish(q: Queries, cid: str, outcome: str, reason: str, now: float) -> Script[bool]:
    return _changed(q, cid, (q.finish, (outcome, now, reason, cid)))


def appendEvent(
    q: Queries, cid: str, source: str, kind: str, payload: str, now: float
) -> Script[int]:
    rows = yield q.appendEvent, (now, source, kind, payload, cid)
    if not rows:
        raise ContextNotFound(cid)
    return int(rows[0][0])


def listEvents(q: Queries, cid: str, kind: str | None) -> Script[list[CallEvent]]:
    if kind is None:
        rows = yield q.listEvents, (cid,)
    else:
        rows = yield q.listEventsOfKind, (cid, kind)
    if not rows and not (yield q.status, (cid,)):
        raise ContextNotFound(cid)
    return [q.event(row) for row in rows]


def expireUnclaimed(q: Queries, now: float, ttl: float) -> Script[int]:
    """
    Expire pending contexts past their TTL and append one C{ended} event to
    each. On SQLite this must run inside one transaction.
    """
    payload = json.dumps({"status": EXPIRED, "reason": EXPIRY_REASON})
    if q.expireWithEvents is not None:
        rows = yield q.expireWithEvents, (now, EXPIRY_REASON, now - ttl, now, payload)
        return len(rows)
    rows = yield q.expire, (now, EXPIRY_REASON, now - ttl)
    for (cid,) in rows:
        yield q.expiredEvent, (cid, now, payload)
    return len(rows)


def migrate(q: Queries, migration: Migration) -> Script[bool]:
    """
    Apply one migration unless it was applied before; must run inside one
    transaction. True when this call applied it.
    """
    if q.dialect.migrationLock is not None:
        yield q.dialect.migrationLock, ()
    yield q.dialect.migrationsTable, ()
    p = q.dialect.param
    rows = yield f"SELECT version FROM schema_migrations WHERE version = {p}", (migration.version,)
    if rows:
        return False
    for statement in migration.statements:
        yield statement, ()
    yield (
        f"INSERT INTO schema_migrations (version, description) VALUES ({p}, {p})",
        (migration.version, migration.description),
    )
    return True


# --- drivers ----------------------------------------------------------------


def driveSync(script: Script[T], execute: Callable[[str, Params], Rows]) -> T:
    """
    Run a script to completion with a blocking C{execute}.
    """
    try:
        statement = next(script)
        while True:
            statement = script.send(execute(*statement))
    except StopIteration as stop:
        return cast(T, stop.value)


async def driveAsync(script: Script[T], execute: Callable[[str, Params], Awaitable[Rows]]) -> T:
    """
    Run a script to completion with an asynchronous C{execute}.
    """
    try:
        statement = next(script)
        while True:
            rows = await execute(*statement)
            statement = script.send(rows)
    except StopIteration as stop:
        return cast(T, stop.value)
