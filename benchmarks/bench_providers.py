"""
WebSocket-provider load benchmark: the real gateway (`twist rapida` in a
child process, echo assistant) under N concurrent simulated calls of
Twilio, Vonage and Exotel, driven by the simulator's load runner
(`rapida-sim load`'s library) in this process. Prints one table; not a
timed test.

    .venv/bin/python benchmarks/bench_providers.py [--calls 10,50] [--seconds 10]
        [--providers twilio,vonage,exotel] [--database URL]
    .ci/with-postgres .venv/bin/python benchmarks/bench_providers.py

Columns, per provider and number of concurrent calls:

  - ok: calls that went as planned (of all).
  - CPU/call: the gateway process's CPU time (user + system, from
    /proc) over the run, divided by the calls' total length, as a share
    of one core per concurrent call; "calls/core" is its inverse.
  - lost: echoed frames with sound that never came back (of those sent).
  - jitter p50/p99: inter-arrival jitter of the audio the caller got.
  - added p50/p99: added latency of the echo (the gateway's queueing and
    the provider's framing; Exotel's 3.2 KB chunks add up to 100 ms at
    16 kHz by themselves).

The simulator runs in this process and shares the machine: its own late
ticks are reported, and numbers from a loaded machine are upper bounds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _table import formatTable  # noqa: E402
from twisted.internet import defer, task  # noqa: E402

from rapida_twisted.sim._base import CallOptions, CallPlan  # noqa: E402
from rapida_twisted.sim._load import LoadReport, audioSource, runLoad  # noqa: E402
from rapida_twisted.sim._net import Environment  # noqa: E402

PROVIDERS = ("twilio", "vonage", "exotel")
_TICK = os.sysconf("SC_CLK_TCK")


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpuSeconds(pid: int) -> float:
    """
    User + system CPU time of process C{pid} so far.
    """
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


class Gateway:
    """
    `twist rapida` on a free port, echo only, logging warnings and worse.
    """

    def __init__(self, workdir: str, database: str | None) -> None:
        self.port = freePort()
        self.base = f"http://127.0.0.1:{self.port}"
        self.database = database or "sqlite:" + os.path.join(workdir, "bench.sqlite3")
        argv = [
            sys.executable, "-m", "twisted", "--log-format=json", "--log-level=warn",
            "rapida",
            "--http", f"tcp:{self.port}:interface=127.0.0.1:backlog=1024",
            "--sip", "none",
            "--audiosocket", "none",
            "--database", self.database,
            "--public-host", self.base,
        ]  # fmt: skip
        self.log = open(os.path.join(workdir, "gateway.log"), "wb")
        self.process = subprocess.Popen(argv, cwd=workdir, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(self.base + "/healthz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"gateway did not start; see {self.log.name}")
            time.sleep(0.1)

    def cpu(self) -> float:
        return cpuSeconds(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


async def measure(
    reactor: Any, gateway: Gateway, provider: str, calls: int, seconds: float
) -> tuple[LoadReport, float]:
    """
    One load run: the simulator's report and the gateway's CPU seconds.
    """
    options = CallOptions(gateway=gateway.base, plan=CallPlan(linger=0.5), timeout=30.0)
    source = audioSource(provider, options, None, seconds, seed=1)
    env = Environment(reactor)
    before = gateway.cpu()
    report = await runLoad(env, provider, options, source, calls, ramp=min(2.0, calls * 0.02))
    return report, gateway.cpu() - before


def row(provider: str, calls: int, seconds: float, report: LoadReport, cpu: float) -> list[str]:
    perCall = cpu / (calls * (seconds + 0.5))

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value * 1000:.1f}"

    return [
        provider,
        str(calls),
        f"{report.ok}/{report.calls}",
        f"{perCall * 100:.2f}%",
        f"{1 / perCall:.0f}" if perCall > 0 else "-",
        f"{report.lost}/{report.expected}",
        f"{ms(report.jitter.p50)}/{ms(report.jitter.p99)}",
        f"{ms(report.latency.p50)}/{ms(report.latency.p99)}",
        str(report.late),
    ]


HEADER = [
    "provider",
    "calls",
    "ok",
    "CPU/call",
    "calls/core",
    "lost",
    "jitter ms p50/p99",
    "added ms p50/p99",
    "sim late ticks",
]


def table(rows: list[list[str]]) -> str:
    return formatTable(HEADER, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", default="10,50", help="concurrent calls, comma-separated")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio per call")
    parser.add_argument("--providers", default=",".join(PROVIDERS))
    parser.add_argument(
        "--database", default=os.environ.get("DATABASE_URL"), help="default: a temp SQLite file"
    )
    parser.add_argument("--json", help="also write the reports to this file")
    args = parser.parse_args()
    levels = [int(n) for n in args.calls.split(",") if n]
    providers = [p for p in args.providers.split(",") if p]
    workdir = tempfile.mkdtemp(prefix="bench-providers-")
    gateway = Gateway(workdir, args.database)
    rows: list[list[str]] = []
    documents: list[dict[str, Any]] = []

    async def run(reactor: Any) -> None:
        for provider in providers:
            for calls in levels:
                report, cpu = await measure(reactor, gateway, provider, calls, args.seconds)
                rows.append(row(provider, calls, args.seconds, report, cpu))
                document = report.asDict()
                document["gatewayCpuSeconds"] = round(cpu, 3)
                documents.append(document)
                print("  " + "  ".join(rows[-1]), flush=True)
                for reason, count in report.failures.most_common(3):
                    print(f"    failed x{count}: {reason}", flush=True)

    try:
        print(
            f"{platform.python_implementation()} {platform.python_version()},"
            f" {os.cpu_count()} CPUs, database {gateway.database.split(':')[0]},"
            f" {args.seconds:g} s of speech per call",
            flush=True,
        )
        task.react(lambda reactor: defer.Deferred.fromCoroutine(run(reactor)))
    except SystemExit as e:
        if e.code not in (0, None):
            raise
    finally:
        gateway.stop()
    print()
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(documents, f, indent=1)


if __name__ == "__main__":
    main()
