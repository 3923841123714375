"""
`rapida-sim` with the same probes as C{benchmarks/profile_gateway.py}:
how late its reactor runs a 10 ms timer, and its garbage collector's
pauses, so that a load test can tell the load generator's stalls from the
gateway's. Used by C{benchmarks/bench_twilio.py --probe}; not a timed test.

    .venv/bin/python benchmarks/profile_sim.py --stats out.json -- \\
        load twilio --gateway http://127.0.0.1:8080 --calls 100 --json

Everything after C{--} is C{rapida-sim}'s own arguments; its output is
unchanged. The summary is written to C{--stats} when it exits.
C{--no-full-gc} keeps the load generator's own full collections (tens of
ms each at 500 calls) out of the measurement.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from typing import Any

from profile_gateway import _summary  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stats", required=True, help="write the probes' summary here")
    parser.add_argument("--interval", type=float, default=0.010, help="probe timer, seconds")
    parser.add_argument(
        "--no-full-gc",
        action="store_true",
        help="no full garbage collections in the load generator (its recordings grow all run"
        " and each full collection pauses it for tens of ms, which shows up as the gateway's"
        " latency); young collections go on",
    )
    parser.add_argument("sim", nargs=argparse.REMAINDER, help="-- then rapida-sim's arguments")
    args = parser.parse_args()
    simArgs = args.sim[1:] if args.sim[:1] == ["--"] else args.sim

    from twisted.internet import reactor
    from twisted.internet.task import LoopingCall

    from rapida_twisted.sim.__main__ import main as simMain

    late: list[float] = []
    stalls: list[tuple[float, float]] = []
    fullGcs: list[tuple[float, float]] = []
    pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
    gcStart = [0.0]
    expected = [0.0]

    def probe() -> None:
        now = time.monotonic()
        if expected[0]:
            lateness = max(0.0, now - expected[0])
            late.append(lateness)
            if lateness > 0.002:
                stalls.append((round(now, 4), round(lateness * 1000, 3)))
        expected[0] = now + args.interval

    def onGc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gcStart[0] = time.perf_counter()
        else:
            pause = time.perf_counter() - gcStart[0]
            pauses[info["generation"]].append(pause)
            if info["generation"] == 2:
                fullGcs.append((round(time.monotonic(), 4), round(pause * 1000, 3)))

    if args.no_full_gc:
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, 1_000_000)
    gc.callbacks.append(onGc)
    loop = LoopingCall(probe)
    loop.clock = reactor
    reactor.callWhenRunning(loop.start, args.interval)
    try:
        return simMain(simArgs)
    finally:
        with open(args.stats, "w") as f:
            json.dump(
                {
                    "timerLateness": _summary(late),
                    "gcPauses": {str(g): _summary(v) for g, v in pauses.items()},
                    "stalls": stalls,
                    "fullGcs": fullGcs,
                },
                f,
            )


if __name__ == "__main__":
    sys.exit(main())
