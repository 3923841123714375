"""
The gateway as `twist rapida` runs it, plus two probes for load tests:
how late the reactor runs a 10 ms timer (a stall anywhere in the process
shows up here) and how long Python's cyclic garbage collector pauses it.
Used by C{benchmarks/bench_twilio.py --probe}; not a timed test.

    .venv/bin/python benchmarks/profile_gateway.py --stats out.json -- \\
        --http tcp:8080 --sip none --audiosocket none --database sqlite::memory:

Everything after C{--} is C{rapida}'s own options. On SIGTERM or SIGINT
the gateway stops and the probes' summary is written to C{--stats}
(JSON: timer lateness and GC pauses, percentiles and maxima in ms,
collections per generation, and the time of every probe more than 2 ms
late and of every full collection, on the system's monotonic clock).

C{rapida_twisted} comes from the Python path as it stands (the editable
install, or C{PYTHONPATH} for an older tree), never from next to this
script.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from typing import Any


def _summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"count": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

    return {
        "count": len(values),
        "p50": at(0.5),
        "p99": at(0.99),
        "p999": at(0.999),
        "max": round(ordered[-1] * 1000, 3),
        "totalMs": round(sum(values) * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stats", required=True, help="write the probes' summary here")
    parser.add_argument("--interval", type=float, default=0.010, help="probe timer, seconds")
    parser.add_argument("rapida", nargs=argparse.REMAINDER, help="-- then rapida's options")
    args = parser.parse_args()
    rapidaArgs = args.rapida[1:] if args.rapida[:1] == ["--"] else args.rapida

    from twisted.internet import reactor
    from twisted.internet.task import LoopingCall
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        jsonFileLogObserver,
    )

    from rapida_twisted.tap import Options, makeService

    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)
    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(jsonFileLogObserver(sys.stdout), [predicate])],
        redirectStandardIO=False,
    )
    options = Options()
    options.parseOptions(rapidaArgs)
    top = makeService(options, reactor)

    late: list[float] = []
    pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
    gcStart = [0.0]
    expected = [0.0]

    stalls: list[tuple[float, float]] = []

    def probe() -> None:
        now = time.monotonic()
        if expected[0]:
            lateness = max(0.0, now - expected[0])
            late.append(lateness)
            if lateness > 0.002:
                stalls.append((round(now, 4), round(lateness * 1000, 3)))
        expected[0] = now + args.interval

    fullGcs: list[tuple[float, float]] = []

    def onGc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gcStart[0] = time.perf_counter()
        else:
            pause = time.perf_counter() - gcStart[0]
            pauses[info["generation"]].append(pause)
            if info["generation"] == 2:
                fullGcs.append((round(time.monotonic(), 4), round(pause * 1000, 3)))

    gc.callbacks.append(onGc)
    loop = LoopingCall(probe)
    loop.clock = reactor

    # the reactor's own SIGTERM/SIGINT handlers stop it; then the summary
    reactor.callWhenRunning(top.startService)
    reactor.callWhenRunning(loop.start, args.interval)
    reactor.addSystemEventTrigger("before", "shutdown", top.stopService)
    reactor.run()
    summary = {
        "timerLateness": _summary(late),
        "gcPauses": {str(g): _summary(v) for g, v in pauses.items()},
        "gcThresholds": gc.get_threshold(),
        "intervalMs": args.interval * 1000,
        #: (monotonic time, ms late) of every probe more than 2 ms late
        "stalls": stalls,
        #: (monotonic time at the end, ms) of every full collection
        "fullGcs": fullGcs,
    }
    with open(args.stats, "w") as f:
        json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
