"""
Twilio media load benchmark (issue 3 item 7): one gateway process
(`twist rapida`, echo assistant at the canonical 16 kHz, so every frame
goes μ-law 8 k → 16 k → assistant → 16 k → 8 k μ-law) pinned to one core,
and `rapida-sim load twilio` in another process pinned to the other core,
at several numbers of concurrent calls. Prints one table; not a timed
test.

    .venv/bin/python benchmarks/bench_twilio.py [--calls 50,200,500]
        [--seconds 30] [--database sqlite::memory:] [--server-cpu 0]
        [--sim-cpu 1] [--json out.json]

Each level gets a fresh gateway. The calls start spread over a ramp
(C{--ramp} seconds per 100 calls), then all of them stream for the rest
of their C{--seconds} of audio. Columns:

  - ok: calls that went as planned, of all.
  - steady CPU: the gateway's CPU (user + system, from /proc/<pid>/stat)
    while every call was streaming (the window between the last call's
    start and the first call's end, found by polling the gateway's
    C{rapida_active_calls}), as a share of one core; "ms/call-s" is that
    divided by the number of calls, in ms of CPU per second of call.
  - run ms/call-s: the same over the whole run (webhooks, handshakes,
    claims and the store's writes included), per second of call.
  - calls/core: 1000 divided by the steady ms/call-s: an EXTRAPOLATION
    to a saturated core (latency grows long before that point).
  - frames sent/recv/lost: what the callers sent and received, and the
    echoed frames with sound that never came back.
  - jitter, added: the callers' inter-arrival jitter and the echo's added
    latency (the gateway's queueing and processing), p50/p99 in ms.
  - sim late, sim CPU: the load generator's own late ticks (max lateness)
    over the whole run and its CPU share of its core in the steady window;
    if either is high, the load generator was the bottleneck and the row
    measures it, not the gateway.
  - others' CPU: what every other process on the machine used in the
    steady window (as a share of one core; from /proc/*/stat, so kernel
    work outside processes is not in it); the row is only clean when this
    is small, since taskset keeps our processes on their cores but not
    other people's off them.

The machine is shared: run it on a quiet box; the load average before
each level is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

from _table import formatTable  # the benchmarks folder is the script's path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable
_TICK = os.sysconf("SC_CLK_TCK")
_ACTIVE = re.compile(rb'^rapida_active_calls\{provider="twilio"\} ([0-9.e+]+)$', re.M)


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


def _raiseFileLimit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def pinned(cpu: int | None, argv: list[str]) -> list[str]:
    return argv if cpu is None else ["taskset", "-c", str(cpu), *argv]


class Gateway:
    """
    `twist rapida` on a free port, echo only, logging warnings and worse.
    """

    def __init__(
        self,
        workdir: str,
        database: str,
        cpu: int | None,
        path: str | None = None,
        probe: bool = False,
    ) -> None:
        self.port = freePort()
        self.base = f"http://127.0.0.1:{self.port}"
        rapida = [
            "--http", f"tcp:{self.port}:interface=127.0.0.1:backlog=4096",
            "--sip", "none",
            "--audiosocket", "none",
            "--database", database,
            "--public-host", self.base,
        ]  # fmt: skip
        self.stats: str | None = None
        if probe:
            self.stats = os.path.join(workdir, f"probe-{self.port}.json")
            script = os.path.join(ROOT, "benchmarks", "profile_gateway.py")
            argv = [PYTHON, script, "--stats", self.stats, "--", *rapida]
        else:
            argv = [PYTHON, "-m", "twisted", "--log-format=json", "--log-level=warn", "rapida"]
            argv += rapida
        self.log = open(os.path.join(workdir, f"gateway-{self.port}.log"), "wb")
        env = dict(os.environ)
        if path:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [path, env.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            pinned(cpu, argv),
            cwd=workdir,
            env=env,
            stdout=self.log,
            stderr=self.log,
            preexec_fn=_raiseFileLimit,
        )
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

    def active(self) -> int | None:
        try:
            with urllib.request.urlopen(self.base + "/metrics", timeout=2) as response:
                body = response.read()
        except OSError:
            return None
        match = _ACTIVE.search(body)
        return int(float(match.group(1))) if match else 0

    def stop(self) -> dict[str, Any] | None:
        """
        Stop the gateway; the probes' summary when it ran with them.
        """
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()
        if self.stats is None:
            return None
        try:
            with open(self.stats) as f:
                result: dict[str, Any] = json.load(f)
        except (OSError, ValueError):
            return None
        return result


def processCpu() -> dict[int, float]:
    """
    CPU seconds of every process on the machine.
    """
    cpu: dict[int, float] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                cpu[int(name)] = cpuSeconds(int(name))
            except (OSError, ValueError, IndexError):
                pass
    return cpu


@dataclass
class Sample:
    """
    One look at the machine: time, the gateway's and the simulator's CPU
    seconds, and every process's.
    """

    time: float
    gateway: float
    sim: float
    processes: dict[int, float]


@dataclass
class Steady:
    """
    Samples while every call streams: the first and the last.
    """

    calls: int
    start: Sample | None = None
    end: Sample | None = None
    maxActive: int = 0
    left: bool = False
    #: every process's CPU when the window was seen to end
    othersEnd: tuple[float, dict[int, float]] | None = None

    @property
    def seconds(self) -> float:
        if self.start is None or self.end is None:
            return 0.0
        return self.end.time - self.start.time

    def share(self, what: str, exclude: frozenset[int] = frozenset()) -> float | None:
        """
        CPU share of one core over the window: of the gateway, of the
        simulator, or (C{what="others"}) of every other process that ran
        through the window (C{exclude}: our own pids).
        """
        if self.seconds < 1.0:
            return None
        assert self.start is not None and self.end is not None
        if what == "others":
            if self.othersEnd is None:
                return None
            seconds = self.othersEnd[0] - self.start.time
            before, after = self.start.processes, self.othersEnd[1]
            used = sum(after[p] - before[p] for p in after.keys() & before.keys() - exclude)
            return float(used / seconds)
        else:
            used = getattr(self.end, what) - getattr(self.start, what)
        return float(used / self.seconds)


def watch(
    gateway: Gateway, simPid: int, steady: Steady, done: threading.Event, interval: float
) -> None:
    """
    Poll the gateway's active calls; keep the first and last samples taken
    while all of them were up.
    """
    while not done.is_set():
        active = gateway.active()
        if active is not None and not steady.left:
            try:
                sample = Sample(time.monotonic(), gateway.cpu(), cpuSeconds(simPid), {})
            except OSError:  # the simulator has exited
                break
            steady.maxActive = max(steady.maxActive, active)
            if active >= steady.calls:
                if steady.start is None:
                    sample.processes = processCpu()
                    steady.start = sample
                steady.end = sample
            elif steady.start is not None:
                steady.left = True
                steady.othersEnd = (time.monotonic(), processCpu())
        done.wait(interval)


def loadAverage() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def sharedStalls(
    gateway: dict[str, Any], sim: dict[str, Any], window: list[float], least: float = 10.0
) -> int:
    """
    Gateway stalls of more than C{least} ms in the window that the
    simulator, on the other core, also had within 50 ms: the whole
    machine stopped (the hypervisor, other tenants), or the gateway was
    catching up on the burst a stalled simulator sent.
    """
    theirs = [t for t, ms in sim["stalls"] if ms > least]
    return sum(
        1
        for t, ms in gateway["stalls"]
        if ms > least and window[0] <= t <= window[1] and any(abs(t - u) < 0.05 for u in theirs)
    )


def probeLine(probes: dict[str, Any], window: list[float] | None) -> str:
    """
    One process's probes, summed up (times relative to the steady window).
    """
    late = probes["timerLateness"]
    full = probes["gcPauses"]["2"]
    inWindow = [ms for t, ms in probes["stalls"] if window and window[0] <= t <= window[1]]
    where = ""
    if window:
        worst = sorted(probes["stalls"], key=lambda s: -s[1])[:3]
        where = ", worst at " + ", ".join(
            f"{t - window[0]:+.2f} s ({ms:.0f} ms)" for t, ms in worst
        )
        gcs = ", ".join(f"{t - window[0]:+.2f} s ({ms:.0f} ms)" for t, ms in probes["fullGcs"])
        where += f"; full GCs at {gcs or '-'}"
    return (
        f"10 ms timer late p50 {late.get('p50')} p99 {late.get('p99')} max {late.get('max')} ms;"
        f" {len(inWindow)} probes > 2 ms late in the steady window"
        f" (max {max(inWindow, default=0):.1f} ms){where};"
        f" {full.get('count')} full GCs (max {full.get('max')} ms),"
        f" {probes['gcPauses']['0'].get('count')} young"
    )


def waitQuiet(limit: float, most: float = 0.05, probe: float = 3.0) -> float:
    """
    Wait (at most C{limit} seconds) until the rest of the machine uses
    less than C{most} of a core over C{probe} seconds; returns that share.
    """
    deadline = time.monotonic() + limit
    me = os.getpid()
    while True:
        before, start = processCpu(), time.monotonic()
        time.sleep(probe)
        after, seconds = processCpu(), time.monotonic() - start
        share = sum(after[p] - before[p] for p in after.keys() & before.keys() - {me}) / seconds
        if share < most or time.monotonic() > deadline:
            return share
        print(f"  (others use {share * 100:.0f}% of a core: waiting)", flush=True)


def runLevel(args: argparse.Namespace, workdir: str, calls: int) -> dict[str, Any]:
    """
    One level: a fresh gateway, the simulator, the numbers.
    """
    if args.wait_quiet:
        waitQuiet(args.wait_quiet)
    load = loadAverage()
    gateway = Gateway(workdir, args.database, args.server_cpu, args.gateway_path, args.probe)
    ramp = max(1.0, args.ramp * calls / 100)
    simStats = os.path.join(workdir, f"sim-{calls}-{gateway.port}.json")
    if args.probe or args.sim_no_full_gc:
        launcher = [PYTHON, os.path.join(ROOT, "benchmarks", "profile_sim.py"), "--stats", simStats]
        if args.sim_no_full_gc:
            launcher.append("--no-full-gc")
        launcher.append("--")
    else:
        launcher = [PYTHON, "-m", "rapida_twisted.sim"]
    argv = [
        *launcher, "load", "twilio",
        "--gateway", gateway.base,
        "--calls", str(calls),
        "--ramp", f"{ramp:g}",
        "--duration", f"{args.seconds:g}",
        "--linger", "0.5",
        "--timeout", "60",
        "--json",
    ]  # fmt: skip
    steady = Steady(calls)
    done = threading.Event()
    try:
        cpuBefore = gateway.cpu()
        started = time.monotonic()
        sim = subprocess.Popen(
            pinned(args.sim_cpu, argv),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=_raiseFileLimit,
        )
        watcher = threading.Thread(
            target=watch, args=(gateway, sim.pid, steady, done, 0.5), daemon=True
        )
        watcher.start()
        try:
            out, err = sim.communicate(timeout=args.seconds + ramp + 300)
        except subprocess.TimeoutExpired:
            sim.kill()
            out, err = sim.communicate()
        wall = time.monotonic() - started
        done.set()
        watcher.join()
        cpuRun = gateway.cpu() - cpuBefore
    finally:
        done.set()
        probes = gateway.stop()
    if sim.returncode not in (0, 1) or not out.strip():
        raise SystemExit(
            f"rapida-sim failed ({sim.returncode}): {err.decode(errors='replace')[-2000:]}"
        )
    report: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    report["bench"] = {
        "loadAverageBefore": load,
        "rampSeconds": ramp,
        "wallSeconds": round(wall, 3),
        "gatewayCpuSeconds": round(cpuRun, 3),
        "steadySeconds": round(steady.seconds, 3),
        "steadyWindow": None
        if steady.start is None or steady.end is None
        else [steady.start.time, steady.end.time],
        "steadyCpuShare": _round(steady.share("gateway")),
        "steadySimCpuShare": _round(steady.share("sim")),
        # every other process on the machine (other people's work): the
        # gateway's figures are only clean when this is small
        "steadyOthersCpuShare": _round(
            steady.share("others", frozenset({gateway.process.pid, sim.pid, os.getpid()}))
        ),
        "maxActive": steady.maxActive,
        "probes": probes,
        "simProbes": _load(simStats) if args.probe or args.sim_no_full_gc else None,
    }
    return report


def _load(path: str) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def row(calls: int, seconds: float, report: dict[str, Any]) -> list[str]:
    bench = report["bench"]
    share = bench["steadyCpuShare"]
    perCall = None if share is None else share / calls * 1000  # ms per call-second
    runPerCall = bench["gatewayCpuSeconds"] / (calls * (seconds + 0.5)) * 1000
    sim = report["simulator"]

    def pair(d: dict[str, Any]) -> str:
        if d.get("p50") is None:
            return "-"
        return f"{d['p50']:.1f}/{d['p99']:.1f}"

    return [
        str(calls),
        f"{report['ok']}/{report['calls']}",
        "-" if share is None else f"{share * 100:.0f}%",
        "-" if perCall is None else f"{perCall:.2f}",
        f"{runPerCall:.2f}",
        "-" if not perCall else f"{1000 / perCall:.0f}",
        f"{report['framesSent']}/{report['framesReceived']}/{report['lost']}",
        pair(report["jitterMs"]),
        pair(report["latencyMs"]),
        f"{sim['lateTicks']} ({sim['maxLatenessMs']:.0f} ms)",
        _pct(bench["steadySimCpuShare"]),
        _pct(bench["steadyOthersCpuShare"]),
    ]


HEADER = [
    "calls",
    "ok",
    "steady CPU",
    "ms/call-s",
    "run ms/call-s",
    "calls/core (extrap.)",
    "frames sent/recv/lost",
    "jitter ms p50/p99",
    "added ms p50/p99",
    "sim late ticks (max)",
    "sim CPU",
    "others' CPU",
]


def table(rows: list[list[str]]) -> str:
    return formatTable(HEADER, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", default="50,200,500", help="concurrent calls, comma-separated")
    parser.add_argument("--seconds", type=float, default=30.0, help="audio per call")
    parser.add_argument(
        "--ramp", type=float, default=1.0, help="seconds of ramp per 100 calls (at least 1 s)"
    )
    parser.add_argument("--database", default="sqlite::memory:", help="the gateway's store")
    parser.add_argument("--server-cpu", type=int, default=0, help="core for the gateway")
    parser.add_argument("--sim-cpu", type=int, default=1, help="core for the load generator")
    parser.add_argument("--no-pin", action="store_true", help="do not use taskset")
    parser.add_argument(
        "--probe",
        action="store_true",
        help="run the gateway under benchmarks/profile_gateway.py: report its reactor's"
        " timer lateness and its garbage collector's pauses",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        help="before each level, wait up to this many seconds for the rest of the machine"
        " to go quiet (under 5%% of a core)",
    )
    parser.add_argument(
        "--sim-no-full-gc",
        action="store_true",
        help="keep the load generator's own full garbage collections (tens of ms each at"
        " 500 calls, seen as the gateway's latency) out of the measurement",
    )
    parser.add_argument(
        "--gateway-path",
        help="run the gateway from this source tree (e.g. an older `git archive`), for comparisons",
    )
    parser.add_argument("--json", help="also write the reports to this file")
    args = parser.parse_args()
    if args.no_pin:
        args.server_cpu = args.sim_cpu = None
    levels = [int(n) for n in args.calls.split(",") if n]
    workdir = tempfile.mkdtemp(prefix="bench-twilio-")
    # this process only polls: keep it off the gateway's core
    if args.sim_cpu is not None:
        os.sched_setaffinity(0, {args.sim_cpu})
    print(
        f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs"
        f" ({platform.processor() or platform.machine()}), gateway on CPU {args.server_cpu},"
        f" simulator on CPU {args.sim_cpu}, database {args.database},"
        f" {args.seconds:g} s of audio per call, echo at 16 kHz"
        + (f", gateway from {args.gateway_path}" if args.gateway_path else "")
        + (", simulator without full GCs" if args.sim_no_full_gc else ""),
        flush=True,
    )
    rows: list[list[str]] = []
    documents: list[dict[str, Any]] = []
    for calls in levels:
        report = runLevel(args, workdir, calls)
        documents.append(report)
        rows.append(row(calls, args.seconds, report))
        bench = report["bench"]
        print(
            f"  {calls} calls: load average before {bench['loadAverageBefore']},"
            f" steady window {bench['steadySeconds']:.1f} s (max active {bench['maxActive']})"
            f" | " + "  ".join(rows[-1]),
            flush=True,
        )
        for who, probes in (("gateway", bench["probes"]), ("simulator", bench["simProbes"])):
            if probes:
                print(f"    {who} probes: {probeLine(probes, bench['steadyWindow'])}", flush=True)
        if bench["probes"] and bench["simProbes"] and bench["steadyWindow"]:
            both = sharedStalls(bench["probes"], bench["simProbes"], bench["steadyWindow"])
            print(
                f"    gateway stalls > 10 ms in the steady window that the simulator shared"
                f" (within 50 ms; the machine stopping both, or the gateway catching up on"
                f" what a stalled simulator sent at once): {both}",
                flush=True,
            )
        for reason, count in sorted(report["failures"].items(), key=lambda kv: -kv[1])[:3]:
            print(f"    failed x{count}: {reason}", flush=True)
    print()
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(documents, f, indent=1)


if __name__ == "__main__":
    main()
