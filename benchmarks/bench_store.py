"""
Context-store benchmark: the store work of one call (create, claim, three
events, finish: six operations) for N calls, C at a time, against the
in-memory store, SQLite (a temp file, WAL) and, when DATABASE_URL or
PGHOST is set, PostgreSQL (a scratch schema, dropped afterwards).
Prints a table; not a timed test.

    .venv/bin/python benchmarks/bench_store.py [--calls 2000] [--concurrency 50] [--pool 8]
    .ci/with-postgres .venv/bin/python benchmarks/bench_store.py

Latency is measured per operation and per call from the caller's side
(queueing for a connection or the SQLite thread included).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import defer, task  # noqa: E402
from twisted.internet.defer import Deferred  # noqa: E402

from rapida_twisted.store import (  # noqa: E402
    COMPLETED,
    MemoryContextStore,
    PostgresContextStore,
    SQLiteContextStore,
)

OPS = ("create", "claim", "event", "finish")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def oneCall(store: Any, latencies: dict[str, list[float]]) -> None:
    clock = time.perf_counter

    async def timed(name: str, d: Deferred[Any]) -> Any:
        t = clock()
        result = await d
        latencies[name].append(clock() - t)
        return result

    t0 = clock()
    new = await timed("create", store.create("twilio", "bench", caller="+15550100"))
    cid = new.context.context_id
    await timed("claim", store.claim(cid))
    for kind, payload in (("start", {"streamSid": "MZ1"}), ("dtmf", {"digit": "5"}), ("mark", {})):
        await timed("event", store.appendEvent(cid, "provider", kind, payload))
    await timed("finish", store.finish(cid, COMPLETED, "bench"))
    latencies["call"].append(clock() - t0)


async def run(store: Any, calls: int, concurrency: int) -> dict[str, Any]:
    latencies: dict[str, list[float]] = {name: [] for name in (*OPS, "call")}
    # warm up (connections, caches, JIT-free but page cache)
    for _ in range(20):
        await oneCall(store, {name: [] for name in latencies})
    sem = defer.DeferredSemaphore(concurrency)
    start = time.perf_counter()
    await defer.gatherResults(
        [sem.run(lambda: Deferred.fromCoroutine(oneCall(store, latencies))) for _ in range(calls)]
    )
    elapsed = time.perf_counter() - start
    return {"elapsed": elapsed, "latencies": latencies, "calls": calls}


def report(name: str, result: dict[str, Any]) -> None:
    lat = result["latencies"]
    ops = sum(len(lat[n]) for n in OPS)
    ms = 1000.0
    print(
        f"{name:<22} {result['calls'] / result['elapsed']:>8.0f} {ops / result['elapsed']:>8.0f}"
        f" {percentile(lat['call'], 50) * ms:>8.2f} {percentile(lat['call'], 99) * ms:>8.2f}"
        + "".join(
            f" {percentile(lat[n], 50) * ms:>6.2f}/{percentile(lat[n], 99) * ms:<6.2f}" for n in OPS
        )
    )


async def main(reactor: Any, args: argparse.Namespace) -> None:
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs;"
        f" {args.calls} calls x 6 ops, concurrency {args.concurrency}"
    )
    print(
        f"{'store':<22} {'calls/s':>8} {'ops/s':>8} {'call p50':>8} {'call p99':>8}"
        + "".join(f" {n + ' p50/p99':>13}" for n in OPS)
        + "   (ms)"
    )
    clock = task.Clock()  # the stores' timestamps: TTL never matters here

    memory = MemoryContextStore(clock)
    report("memory (in-process)", await run(memory, args.calls, args.concurrency))
    await memory.close()

    with tempfile.TemporaryDirectory() as tmp:
        sqlite = SQLiteContextStore(reactor, os.path.join(tmp, "bench.sqlite3"), clock=clock)
        await sqlite.start()
        try:
            report("sqlite (file, WAL)", await run(sqlite, args.calls, args.concurrency))
        finally:
            await sqlite.close()

    dsn = os.environ.get("DATABASE_URL") or ("" if os.environ.get("PGHOST") else None)
    if dsn is None:
        print("postgresql: skipped (set DATABASE_URL or run under .ci/with-postgres)")
        return
    from tests._pg import Scratch

    scratch = Scratch(dsn)
    try:
        pg = PostgresContextStore(reactor, scratch.dsn(), clock=clock, poolSize=args.pool)
        await pg.start()
        try:
            report(f"postgresql (pool {args.pool})", await run(pg, args.calls, args.concurrency))
        finally:
            await pg.close()
    finally:
        scratch.drop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--pool", type=int, default=8, help="PostgreSQL connections")
    arguments = parser.parse_args()
    task.react(lambda reactor: Deferred.fromCoroutine(main(reactor, arguments)))
