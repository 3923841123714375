"""
Tests for L{rapida_twisted.store}: one contract suite run against every
store (in-memory, SQLite, PostgreSQL), plus what is particular to each
backend, L{storeFromURL} and the input validation shared by all.

Time in the contract comes from a L{task.Clock} passed as the store's
C{clock}, so TTLs are driven without waiting; the SQLite and PostgreSQL
stores still do their I/O on the real reactor, so those classes are
integration tests (PostgreSQL ones need a server: see C{tests/_pg.py}).
"""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer, task
from twisted.python import threadable
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

import rapida_twisted.store as store_pkg
from rapida_twisted.interfaces import IContextStore
from rapida_twisted.store import (
    CLAIMED,
    COMPLETED,
    EXPIRED,
    EXPIRY_REASON,
    FAILED,
    PENDING,
    ContextAlreadyClaimed,
    ContextExpired,
    ContextFinished,
    ContextNotFound,
    MemoryContextStore,
    PostgresContextStore,
    SQLiteContextStore,
    StoreError,
    StoreUnavailable,
    _model,
    _ops,
    hashToken,
    storeFromURL,
    tokenMatches,
)

from ._pg import Scratch, closedPort, requirePostgres

T0 = 1_700_000_000.0
TTL = 120.0


def _reactor() -> Any:
    # Integration tests only: the SQL stores' I/O needs the real reactor.
    from twisted.internet import reactor

    return reactor


async def fails(d: Awaitable[Any], *errors: type[BaseException]) -> BaseException:
    """
    Await C{d}, which must fail with one of C{errors}; return the error.
    """
    try:
        result = await d
    except errors as e:
        return e
    raise AssertionError(f"expected {errors}, got result {result!r}")


def _isUUID4(text: str) -> bool:
    u = uuid.UUID(text)
    return u.version == 4 and str(u) == text


if TYPE_CHECKING:
    _ContractBase = TestCase
else:
    _ContractBase = object


class ContextStoreContract(_ContractBase):
    """
    The behaviour every L{IContextStore} shares. Subclasses provide
    L{makeStore} (a started store on C{self.clock}) and, where two stores
    can share one database, L{makeSecondStore}.
    """

    clock: task.Clock
    store: Any

    async def makeStore(self) -> Any:
        raise NotImplementedError()

    async def makeSecondStore(self) -> Any:
        """
        Another started store on the same database, or None.
        """
        return None

    async def setUp(self) -> None:  # type: ignore[override]
        self.clock = task.Clock()
        self.clock.advance(T0)
        self.store = await self.makeStore()

    async def create(self, **kw: Any) -> Any:
        args: dict[str, Any] = {"provider": "twilio", "assistant_id": "asst-1"}
        args.update(kw)
        return await self.store.create(**args)

    async def fails(self, d: Awaitable[Any], *errors: type[BaseException]) -> BaseException:
        return await fails(d, *errors)

    # --- create / get -------------------------------------------------------

    def test_interface(self) -> None:
        self.assertTrue(verifyObject(IContextStore, self.store))
        self.assertEqual(self.store.ttl, TTL)

    async def test_create(self) -> None:
        new = await self.create(
            direction="outbound",
            caller="+15550001",
            callee="+15550002",
            channel_uuid="CA123",
            metadata={"nested": {"list": [1, 2.5, None, True]}, "text": "héllo ☎ 😀"},
        )
        c = new.context
        self.assertTrue(_isUUID4(c.context_id))
        self.assertTrue(_isUUID4(c.conversation_id))
        self.assertNotEqual(c.context_id, c.conversation_id)
        self.assertEqual(
            (c.provider, c.assistant_id, c.direction, c.caller, c.callee, c.channel_uuid),
            ("twilio", "asst-1", "outbound", "+15550001", "+15550002", "CA123"),
        )
        self.assertEqual((c.status, c.provider_status, c.reason), (PENDING, "", ""))
        self.assertEqual((c.created_at, c.claimed_at, c.ended_at), (T0, None, None))
        self.assertEqual(
            c.metadata, {"nested": {"list": [1, 2.5, None, True]}, "text": "héllo ☎ 😀"}
        )
        # only the token's hash is stored
        self.assertEqual(c.token_hash, hashToken(new.token))
        self.assertNotIn(new.token, repr(c))
        self.assertTrue(tokenMatches(c, new.token))
        self.assertEqual(await self.store.get(c.context_id), c)

    async def test_createDefaults(self) -> None:
        a = (await self.create()).context
        b = await self.create()
        self.assertEqual(
            (a.direction, a.caller, a.callee, a.channel_uuid, a.metadata),
            ("inbound", "", "", "", {}),
        )
        self.assertNotEqual(a.context_id, b.context.context_id)
        self.assertNotEqual(a.token_hash, b.context.token_hash)

    async def test_createRejectsBadInput(self) -> None:
        bad: list[dict[str, Any]] = [
            {"direction": "sideways"},
            {"provider": ""},
            {"assistant_id": "  "},
            {"caller": "nul\x00byte"},
            {"callee": "lone \udc80 surrogate"},
            {"channel_uuid": 42},
            {"metadata": {"x": object()}},
            {"metadata": {"x": float("nan")}},
            {"metadata": {"x": "nul\x00"}},
            {"metadata": {"x": "\ud800"}},
            {"metadata": ["not", "a", "dict"]},
        ]
        for kw in bad:
            await self.fails(self.create(**kw), ValueError)

    async def test_getUnknown(self) -> None:
        await self.fails(self.store.get(str(uuid.uuid4())), ContextNotFound)
        for garbage in ("", "nope", "../../etc/passwd", "x" * 5000, "\x00", "\udc80"):
            await self.fails(self.store.get(garbage), ContextNotFound)

    async def test_getIgnoresCase(self) -> None:
        c = (await self.create()).context
        self.assertEqual(await self.store.get(c.context_id.upper()), c)

    # --- claim ----------------------------------------------------------------

    async def test_claimOnce(self) -> None:
        c = (await self.create()).context
        self.clock.advance(3)
        claimed = await self.store.claim(c.context_id)
        self.assertEqual((claimed.status, claimed.claimed_at), (CLAIMED, T0 + 3))
        self.assertEqual(await self.store.get(c.context_id), claimed)
        await self.fails(self.store.claim(c.context_id), ContextAlreadyClaimed)
        self.assertEqual((await self.store.get(c.context_id)).claimed_at, T0 + 3)

    async def test_claimUnknown(self) -> None:
        await self.fails(self.store.claim(str(uuid.uuid4())), ContextNotFound)
        await self.fails(self.store.claim("not-a-uuid"), ContextNotFound)

    async def test_claimWithinTTL(self) -> None:
        c = (await self.create()).context
        self.clock.advance(TTL - 0.5)
        self.assertEqual((await self.store.claim(c.context_id)).status, CLAIMED)

    async def test_claimPastTTL(self) -> None:
        c = (await self.create()).context
        self.clock.advance(TTL)
        await self.fails(self.store.claim(c.context_id), ContextExpired)
        # a failed claim changes nothing
        self.assertEqual((await self.store.get(c.context_id)).status, PENDING)

    async def test_claimExpired(self) -> None:
        c = (await self.create()).context
        self.clock.advance(TTL + 1)
        self.assertEqual(await self.store.expireUnclaimed(), 1)
        await self.fails(self.store.claim(c.context_id), ContextExpired)

    async def test_claimFinished(self) -> None:
        pending = (await self.create()).context
        self.assertTrue(await self.store.finish(pending.context_id, FAILED, "busy"))
        await self.fails(self.store.claim(pending.context_id), ContextFinished)
        claimed = (await self.create()).context
        await self.store.claim(claimed.context_id)
        await self.store.finish(claimed.context_id, COMPLETED)
        await self.fails(self.store.claim(claimed.context_id), ContextFinished)

    async def test_concurrentClaims(self) -> None:
        """
        Fifty simultaneous claims of one context: exactly one wins.
        """
        c = (await self.create()).context
        stores = [self.store]
        other = await self.makeSecondStore()
        if other is not None:
            stores.append(other)
        results = await defer.DeferredList(
            [stores[i % len(stores)].claim(c.context_id) for i in range(50)],
            consumeErrors=True,
        )
        winners = [r for ok, r in results if ok]
        losers = [r for ok, r in results if not ok]
        self.assertEqual(len(winners), 1)
        self.assertEqual(winners[0].status, CLAIMED)
        self.assertEqual([f.type for f in losers], [ContextAlreadyClaimed] * 49)

    # --- channel and provider status -----------------------------------------

    async def test_findByChannel(self) -> None:
        old = (await self.create(channel_uuid="CA1")).context
        self.clock.advance(1)
        new = (await self.create(channel_uuid="CA1")).context
        await self.create(provider="vonage", channel_uuid="CA2")
        self.assertEqual(await self.store.findByChannel("twilio", "CA1"), new)
        self.assertNotEqual(old, new)
        self.assertIsNone(await self.store.findByChannel("vonage", "CA1"))
        self.assertIsNone(await self.store.findByChannel("twilio", "CA-unknown"))

    async def test_findByChannelBlank(self) -> None:
        await self.create()  # channel_uuid ""
        self.assertIsNone(await self.store.findByChannel("twilio", ""))
        self.assertIsNone(await self.store.findByChannel("twilio", "   "))

    async def test_setChannel(self) -> None:
        c = (await self.create()).context
        self.assertTrue(await self.store.setChannel(c.context_id, "CA9"))
        self.assertEqual((await self.store.get(c.context_id)).channel_uuid, "CA9")
        # "True when a row changed": the same value again changes nothing
        self.assertFalse(await self.store.setChannel(c.context_id, "CA9"))
        found = await self.store.findByChannel("twilio", "CA9")
        self.assertEqual(found.context_id, c.context_id)
        await self.fails(self.store.setChannel(str(uuid.uuid4()), "CA9"), ContextNotFound)
        await self.fails(self.store.setChannel(c.context_id, "a\x00b"), ValueError)

    async def test_updateProviderStatus(self) -> None:
        c = (await self.create()).context
        cid = c.context_id
        self.assertTrue(await self.store.updateProviderStatus(cid, "ringing"))
        self.assertFalse(await self.store.updateProviderStatus(cid, "ringing"))
        self.assertTrue(
            await self.store.updateProviderStatus(cid, "in-progress", expected="ringing")
        )
        # compare-and-set mismatch: no change
        self.assertFalse(await self.store.updateProviderStatus(cid, "busy", expected="ringing"))
        self.assertEqual((await self.store.get(cid)).provider_status, "in-progress")
        # status callbacks still land after the call ended
        await self.store.finish(cid, COMPLETED)
        self.assertTrue(await self.store.updateProviderStatus(cid, "completed"))
        self.assertEqual((await self.store.get(cid)).status, COMPLETED)
        await self.fails(self.store.updateProviderStatus(str(uuid.uuid4()), "x"), ContextNotFound)

    # --- finish ---------------------------------------------------------------

    async def test_finish(self) -> None:
        c = (await self.create()).context
        await self.store.claim(c.context_id)
        self.clock.advance(42)
        self.assertTrue(await self.store.finish(c.context_id, COMPLETED, "caller hung up"))
        done = await self.store.get(c.context_id)
        self.assertEqual(
            (done.status, done.ended_at, done.reason, done.finished),
            (COMPLETED, T0 + 42, "caller hung up", True),
        )

    async def test_finishFromPending(self) -> None:
        c = (await self.create()).context
        self.assertTrue(await self.store.finish(c.context_id, FAILED, "no answer"))
        self.assertEqual((await self.store.get(c.context_id)).status, FAILED)

    async def test_finishNeverMovesBackwards(self) -> None:
        c = (await self.create()).context
        await self.store.claim(c.context_id)
        await self.store.finish(c.context_id, COMPLETED, "first")
        before = await self.store.get(c.context_id)
        self.clock.advance(TTL * 10)
        self.assertFalse(await self.store.finish(c.context_id, FAILED, "second"))
        self.assertFalse(await self.store.finish(c.context_id, COMPLETED, "third"))
        await self.fails(self.store.claim(c.context_id), ContextFinished)
        self.assertEqual(await self.store.expireUnclaimed(), 0)
        self.assertEqual(await self.store.get(c.context_id), before)

    async def test_finishExpiredIsNoOp(self) -> None:
        c = (await self.create()).context
        self.clock.advance(TTL)
        await self.store.expireUnclaimed()
        self.assertFalse(await self.store.finish(c.context_id, COMPLETED))
        self.assertEqual((await self.store.get(c.context_id)).status, EXPIRED)

    async def test_finishRejects(self) -> None:
        c = (await self.create()).context
        for outcome in (PENDING, CLAIMED, EXPIRED, "cancelled", ""):
            await self.fails(self.store.finish(c.context_id, outcome), ValueError)
        await self.fails(self.store.finish(str(uuid.uuid4()), COMPLETED), ContextNotFound)
        self.assertEqual((await self.store.get(c.context_id)).status, PENDING)

    # --- events ---------------------------------------------------------------

    async def test_events(self) -> None:
        a = (await self.create()).context.context_id
        b = (await self.create()).context.context_id
        first = await self.store.appendEvent(a, "provider", "webhook", {"CallSid": "CA1"})
        self.clock.advance(1)
        await self.store.appendEvent(b, "gateway", "claimed")
        second = await self.store.appendEvent(a, "provider", "dtmf", {"digit": "5"})
        third = await self.store.appendEvent(a, "assistant", "clear")
        self.assertTrue(first < second < third)
        events = await self.store.listEvents(a)
        self.assertEqual(
            [(e.id, e.context_id, e.at, e.source, e.kind, e.payload) for e in events],
            [
                (first, a, T0, "provider", "webhook", {"CallSid": "CA1"}),
                (second, a, T0 + 1, "provider", "dtmf", {"digit": "5"}),
                (third, a, T0 + 1, "assistant", "clear", {}),
            ],
        )
        dtmf = await self.store.listEvents(a, kind="dtmf")
        self.assertEqual([e.id for e in dtmf], [second])
        self.assertEqual(await self.store.listEvents(a, kind="hangup"), [])
        self.assertEqual([e.kind for e in await self.store.listEvents(b)], ["claimed"])

    async def test_eventsOnFinishedContext(self) -> None:
        cid = (await self.create()).context.context_id
        await self.store.finish(cid, FAILED)
        self.assertIsInstance(await self.store.appendEvent(cid, "gateway", "ended"), int)

    async def test_eventErrors(self) -> None:
        cid = (await self.create()).context.context_id
        await self.fails(self.store.appendEvent(cid, "carrier", "webhook"), ValueError)
        await self.fails(self.store.appendEvent(cid, "gateway", "teleport"), ValueError)
        await self.fails(self.store.appendEvent(cid, "gateway", "error", {"x": {1, 2}}), ValueError)
        await self.fails(self.store.appendEvent(cid, "gateway", "error", {"x": "\x00"}), ValueError)
        await self.fails(self.store.listEvents(cid, kind="teleport"), ValueError)
        unknown = str(uuid.uuid4())
        await self.fails(self.store.appendEvent(unknown, "gateway", "error"), ContextNotFound)
        await self.fails(self.store.listEvents(unknown), ContextNotFound)
        self.assertEqual(await self.store.listEvents(cid), [])

    # --- expiry ---------------------------------------------------------------

    async def test_expireUnclaimed(self) -> None:
        old = (await self.create()).context.context_id
        claimed = (await self.create()).context.context_id
        await self.store.claim(claimed)
        self.clock.advance(100)
        young = (await self.create()).context.context_id
        self.clock.advance(TTL - 100)
        self.assertEqual(await self.store.expireUnclaimed(), 1)
        expired = await self.store.get(old)
        self.assertEqual(
            (expired.status, expired.ended_at, expired.reason, expired.finished),
            (EXPIRED, T0 + TTL, EXPIRY_REASON, True),
        )
        # the expiry is recorded as an event
        (event,) = await self.store.listEvents(old)
        self.assertEqual(
            (event.source, event.kind, event.at, event.payload),
            ("gateway", "ended", T0 + TTL, {"status": EXPIRED, "reason": EXPIRY_REASON}),
        )
        self.assertEqual((await self.store.get(claimed)).status, CLAIMED)
        self.assertEqual((await self.store.get(young)).status, PENDING)
        self.assertEqual(await self.store.expireUnclaimed(), 0)
        self.clock.advance(100)
        self.assertEqual(await self.store.expireUnclaimed(), 1)
        self.assertEqual(len(await self.store.listEvents(old)), 1)

    async def test_expireMany(self) -> None:
        ids = [(await self.create()).context.context_id for _ in range(20)]
        self.clock.advance(TTL)
        self.assertEqual(await self.store.expireUnclaimed(), 20)
        for cid in ids[:3]:
            self.assertEqual([e.kind for e in await self.store.listEvents(cid)], ["ended"])

    # --- lifecycle --------------------------------------------------------------

    async def test_ping(self) -> None:
        await self.store.ping()

    async def test_startTwice(self) -> None:
        c = (await self.create()).context
        await self.store.start()
        self.assertEqual(await self.store.get(c.context_id), c)

    async def test_closed(self) -> None:
        c = (await self.create()).context
        await self.store.close()
        await self.fails(self.store.get(c.context_id), StoreUnavailable)
        await self.fails(self.store.ping(), StoreUnavailable)
        await self.store.close()  # twice is fine

    async def test_sharedDatabase(self) -> None:
        """
        A second store on the same database (a restart, or another node)
        re-applies no migration and sees the first one's rows.
        """
        other = await self.makeSecondStore()
        if other is None:
            raise SkipTest("this store's database is private")
        c = (await self.create()).context
        self.assertEqual(await other.get(c.context_id), c)
        await other.claim(c.context_id)
        await self.fails(self.store.claim(c.context_id), ContextAlreadyClaimed)


class MemoryStoreTests(ContextStoreContract, TestCase):
    """
    The contract on L{MemoryContextStore}.
    """

    async def makeStore(self) -> Any:
        store = MemoryContextStore(self.clock, ttl=TTL)
        self.addCleanup(store.close)
        return store

    def test_synchronous(self) -> None:
        """
        Usable at once without start(), and every Deferred has fired.
        """
        s = MemoryContextStore(self.clock)
        new = self.successResultOf(s.create("twilio", "a"))
        self.assertEqual(self.successResultOf(s.claim(new.context.context_id)).status, CLAIMED)

    def test_unavailable(self) -> None:
        self.store.unavailable = True
        self.failureResultOf(self.store.ping(), StoreUnavailable)
        self.failureResultOf(self.store.create("twilio", "a"), StoreUnavailable)


class SQLiteStoreTests(ContextStoreContract, TestCase):
    """
    The contract on L{SQLiteContextStore}, on a file.
    """

    async def makeStore(self) -> Any:
        self.path = self.mktemp()
        return await self._start(self.path)

    async def makeSecondStore(self) -> Any:
        return await self._start(self.path)

    async def _start(self, path: str) -> Any:
        store = SQLiteContextStore(_reactor(), path, ttl=TTL, clock=self.clock)
        self.addCleanup(store.close)
        await store.start()
        return store

    async def test_fileLayout(self) -> None:
        """
        WAL mode, the schema operators expect, one migration row.
        """
        await self.create()
        db = sqlite3.connect(self.path)
        self.addCleanup(db.close)
        self.assertEqual(db.execute("PRAGMA journal_mode").fetchone(), ("wal",))
        names = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        self.assertLessEqual(
            {
                "call_contexts",
                "call_events",
                "schema_migrations",
                "call_contexts_status_created_idx",
                "call_contexts_channel_idx",
                "call_events_context_idx",
            },
            names,
        )
        columns = [row[1] for row in db.execute("PRAGMA table_info(call_contexts)")]
        self.assertEqual(columns, list(_ops._CONTEXT_COLUMNS))
        self.assertEqual(db.execute("SELECT version FROM schema_migrations").fetchall(), [(1,)])

    async def test_migrationsRace(self) -> None:
        """
        Stores opening one new file at once apply each migration once.
        """
        path = self.mktemp()
        stores = [SQLiteContextStore(_reactor(), path, clock=self.clock) for _ in range(3)]
        for s in stores:
            self.addCleanup(s.close)
        await defer.gatherResults([s.start() for s in stores])
        db = sqlite3.connect(path)
        self.addCleanup(db.close)
        self.assertEqual(db.execute("SELECT version FROM schema_migrations").fetchall(), [(1,)])

    async def test_worksOffTheReactorThread(self) -> None:
        seen = []

        def probe() -> _ops.Script[None]:
            seen.append(threadable.isInIOThread())
            yield "SELECT 1", ()

        await self.store._run(probe())
        self.assertEqual(seen, [False])

    async def test_unopenable(self) -> None:
        store = SQLiteContextStore(_reactor(), os.path.join(self.mktemp(), "missing", "x.db"))
        await self.fails(store.start(), StoreUnavailable)
        await self.fails(store.ping(), StoreUnavailable)
        self.assertIsNone(store._pool)
        await store.close()

    async def test_notADatabase(self) -> None:
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"this is not an SQLite file" * 100)
        store = SQLiteContextStore(_reactor(), path)
        error = await self.fails(store.start(), StoreError)
        self.assertNotIsInstance(error, StoreUnavailable)
        await fails(store.ping(), StoreUnavailable)

    async def test_rollback(self) -> None:
        """
        A transactional script that fails half-way leaves nothing behind,
        and the connection is usable afterwards.
        """
        cid = (await self.create()).context.context_id

        def halfway() -> _ops.Script[None]:
            yield "UPDATE call_contexts SET reason = 'half' WHERE context_id = ?", (cid,)
            raise ValueError("boom")

        await self.fails(self.store._run(halfway(), transaction=True), ValueError)
        self.assertEqual((await self.store.get(cid)).reason, "")
        self.assertEqual(await self.store.expireUnclaimed(), 0)

    async def test_notStarted(self) -> None:
        store = SQLiteContextStore(_reactor(), self.mktemp())
        await self.fails(store.ping(), StoreUnavailable)

    async def test_memoryURL(self) -> None:
        s = storeFromURL(_reactor(), "sqlite::memory:", TTL, self.clock)
        self.addCleanup(s.close)
        await s.start()
        cid = (await s.create("twilio", "a")).context.context_id
        self.assertEqual((await s.claim(cid)).status, CLAIMED)


class PostgresStoreTests(ContextStoreContract, TestCase):
    """
    The contract on L{PostgresContextStore}, in a fresh schema per test.
    """

    async def makeStore(self) -> Any:
        self.scratch = Scratch(requirePostgres(self))
        self.addCleanup(self.scratch.drop)
        return await self._start()

    async def makeSecondStore(self) -> Any:
        return await self._start()

    async def _start(self, **kw: Any) -> Any:
        store = PostgresContextStore(
            _reactor(), self.scratch.dsn(), ttl=TTL, clock=self.clock, **kw
        )
        self.addCleanup(store.close)
        await store.start()
        return store

    async def test_schemaTypes(self) -> None:
        """
        Times are timestamptz, JSON is jsonb, and they read back right.
        """
        c = (await self.create(metadata={"k": [1]})).context
        types = dict(
            self.scratch.execute(
                "SELECT column_name, data_type FROM information_schema.columns"
                " WHERE table_schema = %s AND table_name = 'call_contexts'",
                (self.scratch.schema,),
            )
        )
        self.assertEqual(types["created_at"], "timestamp with time zone")
        self.assertEqual(types["metadata"], "jsonb")
        ((epoch, kind),) = self.scratch.execute(
            "SELECT extract(epoch FROM created_at)::float8, jsonb_typeof(metadata -> 'k')"
            " FROM call_contexts WHERE context_id = %s",
            (c.context_id,),
        )
        self.assertEqual((epoch, kind), (T0, "array"))

    async def test_migrationsRace(self) -> None:
        """
        Stores starting at once on a new schema apply each migration once.
        """
        scratch = Scratch(requirePostgres(self))
        self.addCleanup(scratch.drop)
        stores = [
            PostgresContextStore(_reactor(), scratch.dsn(), clock=self.clock, poolSize=1)
            for _ in range(4)
        ]
        for s in stores:
            self.addCleanup(s.close)
        await defer.gatherResults([s.start() for s in stores])
        self.assertEqual(scratch.execute("SELECT version FROM schema_migrations"), [(1,)])
        await stores[0].close()
        restarted = PostgresContextStore(_reactor(), scratch.dsn(), clock=self.clock)
        self.addCleanup(restarted.close)
        await restarted.start()
        self.assertEqual(scratch.execute("SELECT count(*) FROM schema_migrations"), [(1,)])

    async def test_manyNodesClaim(self) -> None:
        """
        Fifty concurrent claims from two nodes with eight connections each:
        one winner, forty-nine ContextAlreadyClaimed.
        """
        nodes = [await self._start(poolSize=8), await self._start(poolSize=8)]
        for _ in range(3):
            cid = (await self.create()).context.context_id
            results = await defer.DeferredList(
                [nodes[i % 2].claim(cid) for i in range(50)], consumeErrors=True
            )
            self.assertEqual(sum(ok for ok, _ in results), 1)
            self.assertEqual(
                sorted(r.type.__name__ for ok, r in results if not ok),
                ["ContextAlreadyClaimed"] * 49,
            )

    async def test_reconnect(self) -> None:
        """
        Killing every server connection (failover, operator) leaves the
        store working again promptly, with its data.
        """
        name = "rapida-test-" + uuid.uuid4().hex[:8]
        store = PostgresContextStore(
            _reactor(), self.scratch.dsn(application_name=name), clock=self.clock, poolSize=3
        )
        self.addCleanup(store.close)
        await store.start()
        cid = (await store.create("twilio", "a")).context.context_id
        before = self.scratch.backends(name)
        self.assertEqual(len(before), 3)
        self.assertEqual(self.scratch.terminate(name), 3)
        deadline = time.monotonic() + 10
        failures = 0
        while True:
            try:
                await store.claim(cid)
                break
            except StoreUnavailable:
                failures += 1
                self.assertLess(time.monotonic(), deadline, "the store never recovered")
                await task.deferLater(_reactor(), 0.05)
        after = self.scratch.backends(name)
        self.assertEqual(len(set(after) & set(before)), 0)
        self.assertLessEqual(failures, 20)
        self.assertEqual((await store.get(cid)).status, CLAIMED)
        await self._allConnectionsWork(store, 3)

    async def test_readSurvivesDeadConnection(self) -> None:
        """
        A read sent on a connection whose server side died unnoticed is
        retried on a fresh connection; a write fails with StoreUnavailable
        (it may or may not have happened) and the next one works.
        """
        name = "rapida-test-" + uuid.uuid4().hex[:8]
        store = PostgresContextStore(
            _reactor(), self.scratch.dsn(application_name=name), clock=self.clock, poolSize=1
        )
        self.addCleanup(store.close)
        await store.start()
        cid = (await store.create("twilio", "a")).context.context_id
        # Kill the backend and wait for it to be gone, blocking the reactor
        # so that the store cannot notice before the next statement.
        self._killAndWait(name)
        self.assertEqual((await store.get(cid)).status, PENDING)
        self._killAndWait(name)
        await self.fails(store.claim(cid), StoreUnavailable)
        self.assertEqual((await store.claim(cid)).status, CLAIMED)

    async def test_killedWhileBusy(self) -> None:
        """
        A connection killed in the middle of a statement fails that
        statement with StoreUnavailable, and is replaced.
        """
        name = "rapida-test-" + uuid.uuid4().hex[:8]
        store = PostgresContextStore(
            _reactor(), self.scratch.dsn(application_name=name), clock=self.clock, poolSize=1
        )
        self.addCleanup(store.close)
        await store.start()
        cid = (await store.create("twilio", "a")).context.context_id
        # hold the row so the claim blocks inside the server
        self.scratch.execute("BEGIN")
        self.scratch.execute("SELECT 1 FROM call_contexts WHERE context_id = %s FOR UPDATE", (cid,))
        claim = store.claim(cid)
        await self._waitFor(lambda: self._waiting(name))
        self.scratch.terminate(name)
        self.scratch.execute("ROLLBACK")
        await self.fails(claim, StoreUnavailable)
        await self._eventually(store.ping)
        self.assertEqual((await store.claim(cid)).status, CLAIMED)

    async def test_timeout(self) -> None:
        """
        A statement stuck behind a lock fails with StoreUnavailable after
        the store's timeout; the connection is reused once it is done.
        """
        store = PostgresContextStore(
            _reactor(), self.scratch.dsn(), clock=self.clock, poolSize=1, timeout=0.3
        )
        self.addCleanup(store.close)
        await store.start()
        cid = (await store.create("twilio", "a")).context.context_id
        self.scratch.execute("BEGIN")
        self.scratch.execute("SELECT 1 FROM call_contexts WHERE context_id = %s FOR UPDATE", (cid,))
        started = time.monotonic()
        error = await self.fails(store.claim(cid), StoreUnavailable)
        self.assertIn("did not answer within 0.3 s", str(error))
        self.assertLess(time.monotonic() - started, 2)
        self.scratch.execute("ROLLBACK")
        # the abandoned claim still ran to completion on its connection
        await self._waitFor(lambda: self._status(cid) == CLAIMED)
        await self.fails(store.claim(cid), ContextAlreadyClaimed)

    async def test_cancel(self) -> None:
        """
        Cancelling an operation (a caller's deadline) is safe.
        """
        cid = (await self.create()).context.context_id
        d = self.store.claim(cid)
        d.cancel()
        await self.fails(d, defer.CancelledError)
        await self._eventually(self.store.ping)
        self.assertIn((await self.store.get(cid)).status, (PENDING, CLAIMED))

    # helpers

    def _status(self, cid: str) -> str:
        ((status,),) = self.scratch.execute(
            "SELECT status FROM call_contexts WHERE context_id = %s", (cid,)
        )
        return str(status)

    def _waiting(self, name: str) -> bool:
        return bool(
            self.scratch.execute(
                "SELECT 1 FROM pg_stat_activity WHERE application_name = %s"
                " AND wait_event_type = 'Lock'",
                (name,),
            )
        )

    async def _waitFor(self, condition: Any, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            self.assertLess(time.monotonic(), deadline, "condition never held")
            await task.deferLater(_reactor(), 0.02)

    async def _eventually(self, op: Any, timeout: float = 5.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return await op()
            except StoreUnavailable:
                self.assertLess(time.monotonic(), deadline, "the store never recovered")
                await task.deferLater(_reactor(), 0.05)

    def _killAndWait(self, name: str) -> None:
        self.assertEqual(self.scratch.terminate(name), 1)
        deadline = time.monotonic() + 5
        while self.scratch.backends(name):
            self.assertLess(time.monotonic(), deadline, "the backend did not die")
            time.sleep(0.005)

    async def _allConnectionsWork(self, store: Any, n: int) -> None:
        await defer.gatherResults([store.ping() for _ in range(n * 3)])


class PostgresUnreachableTests(TestCase):
    """
    A PostgreSQL store whose server is not there (no server needed).
    """

    async def test_startFailsPromptly(self) -> None:
        store = PostgresContextStore(
            _reactor(), f"postgresql://postgres@127.0.0.1:{closedPort()}/postgres", timeout=5
        )
        started = time.monotonic()
        error = await fails(store.start(), StoreUnavailable)
        self.assertLess(time.monotonic() - started, 2)
        self.assertIn("127.0.0.1", str(error))
        await fails(store.ping(), StoreUnavailable)
        await fails(store.create("twilio", "a"), StoreUnavailable)
        await store.close()

    async def test_notStarted(self) -> None:
        store = PostgresContextStore(_reactor(), "postgresql://u:secret@127.0.0.1:1/db")
        await fails(store.get(str(uuid.uuid4())), StoreUnavailable)
        self.assertNotIn("secret", store.where)

    def test_badDSN(self) -> None:
        with self.assertRaises(ValueError):
            PostgresContextStore(_reactor(), "postgresql://[bad")
        with self.assertRaises(ValueError):
            PostgresContextStore(_reactor(), "", poolSize=0)
        with self.assertRaises(ValueError):
            PostgresContextStore(_reactor(), "", ttl=0)


class StoreFromURLTests(SynchronousTestCase):
    """
    L{storeFromURL} picks the backend from the URL's scheme.
    """

    def setUp(self) -> None:
        self.clock = task.Clock()

    def test_sqlite(self) -> None:
        for url, path in [
            ("sqlite:rapida.sqlite3", os.path.abspath("rapida.sqlite3")),
            ("sqlite:data/x.db", os.path.abspath("data/x.db")),
            ("sqlite:/var/lib/rapida/x.db", "/var/lib/rapida/x.db"),
            ("sqlite:///var/lib/rapida/x.db", "/var/lib/rapida/x.db"),
            ("SQLite::memory:", ":memory:"),
        ]:
            store = storeFromURL(_reactor(), url, 30.0, self.clock)
            self.assertIsInstance(store, SQLiteContextStore)
            assert isinstance(store, SQLiteContextStore)
            self.assertEqual((store.path, store.ttl), (path, 30.0))

    def test_postgres(self) -> None:
        for url in ("postgresql://u@db.example/rapida", "postgres://u:pw@10.0.0.1:6543/rapida"):
            store = storeFromURL(_reactor(), url, 60.0, poolSize=2)
            self.assertIsInstance(store, PostgresContextStore)
            self.assertEqual(store.ttl, 60.0)

    def test_unknown(self) -> None:
        for url in ("mysql://root:hunter2@db/rapida", "rapida.sqlite3", "sqlite:", "sqlite://"):
            with self.assertRaises(ValueError) as caught:
                storeFromURL(_reactor(), url)
            self.assertNotIn("hunter2", str(caught.exception))
        with self.assertRaises(ValueError) as caught:
            storeFromURL(_reactor(), "mysql://root:hunter2@db/rapida")
        self.assertIn("unknown database scheme 'mysql'", str(caught.exception))


class ValidationTests(SynchronousTestCase):
    """
    The input checks every store shares never let a non-ValueError escape.
    """

    @settings(max_examples=200, deadline=None)
    @given(st.text())
    def test_contextIds(self, text: str) -> None:
        try:
            cid = _ops.checkContextId(text)
        except ContextNotFound:
            return
        self.assertEqual(str(uuid.UUID(cid)), cid)

    @settings(max_examples=200, deadline=None)
    @given(
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
            lambda children: st.lists(children) | st.dictionaries(st.text(), children),
            max_leaves=10,
        )
    )
    def test_json(self, value: Any) -> None:
        try:
            _ops.dumpJSON("payload", {"v": value})
        except ValueError:
            pass

    @settings(max_examples=100, deadline=None)
    @given(st.text(), st.text(), st.dictionaries(st.text(max_size=5), st.text(max_size=20)))
    def test_memoryRoundTrip(self, caller: str, channel: str, metadata: dict[str, str]) -> None:
        """
        Any text is either stored exactly or refused with ValueError.
        """
        store = MemoryContextStore(task.Clock())
        results: list[Any] = []
        store.create("twilio", "a", caller=caller, channel_uuid=channel, metadata=metadata).addBoth(
            results.append
        )
        (new,) = results
        if isinstance(new, Failure):
            new.trap(ValueError)
            return
        c = self.successResultOf(store.get(new.context.context_id))
        self.assertEqual((c.caller, c.channel_uuid, c.metadata), (caller, channel, metadata))

    def test_exports(self) -> None:
        for name in store_pkg.__all__:
            self.assertTrue(hasattr(store_pkg, name), name)
        self.assertIs(store_pkg.StoreError, _model.StoreError)
        self.assertTrue(issubclass(StoreUnavailable, store_pkg.StoreError))
