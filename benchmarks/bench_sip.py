"""
SIP server benchmark: prints a table.

  1. Call rate, media off: SIPp's built-in C{uac} (INVITE, ACK, BYE at
     once) at increasing rates; the highest rate with 0 failed calls.
  2. Call rate, media on: C{tests/integration/sipp/uac_stream.xml} (each
     call streams μ-law RTP for C{--hold-media} seconds and the echo
     assistant sends it back, so calls in flight = rate × hold).
  3. Concurrent echo calls with transcoding (G.711 8 kHz ↔ the echo
     assistant's 16 kHz, both ways): SIPp holds N − K streaming calls, and
     K calls of L{rapida_twisted.sip.uac} in this process measure what
     they hear: lost packets and the p99 of |inter-arrival − 20 ms|.

The gateway runs as its own process (C{python -m twisted rapida}, SQLite,
JSON logs to a file); its CPU use is read from C{/proc}.  Everything
shares this machine's cores with the load generators: see the notes the
script prints.

Usage::

    .venv/bin/python benchmarks/bench_sip.py            # everything (~6 min)
    .venv/bin/python benchmarks/bench_sip.py --quick    # a smaller sweep
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

from twisted.internet import defer, task
from twisted.internet.task import deferLater

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from rapida_twisted.media.analysis import speechLike  # noqa: E402
from rapida_twisted.sip.uac import UserAgentClient  # noqa: E402

SCENARIOS = os.path.join(ROOT, "tests", "integration", "sipp")
TICKS = os.sysconf("SC_CLK_TCK")


def freePort(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpuSeconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class Gateway:
    """
    The gateway under test, as a child process.
    """

    def __init__(self, workdir: str, rtp: tuple[int, int]) -> None:
        self.workdir = workdir
        self.http = freePort(socket.SOCK_STREAM)
        self.sip = freePort()
        config = os.path.join(workdir, "bench.toml")
        with open(config, "w") as f:
            f.write("[sip]\nrate_limit = 0\nmax_dialogs = 50000\n")
        argv = [
            sys.executable, "-m", "twisted", "--log-format=json",
            "--log-file", os.path.join(workdir, "gateway.log"),
            "rapida",
            "--http", f"tcp:{self.http}:interface=127.0.0.1",
            "--sip", f"udp:{self.sip}:interface=127.0.0.1",
            "--audiosocket", "none",
            "--rtp-ports", f"{rtp[0]}-{rtp[1]}",
            "--database", "sqlite:" + os.path.join(workdir, "bench.sqlite3"),
            "--public-host", f"http://127.0.0.1:{self.http}",
            "--assistants", config,
        ]  # fmt: skip
        self.process = subprocess.Popen(argv, cwd=workdir, stdout=subprocess.DEVNULL)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.http), 0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the gateway did not start")

    def cpu(self) -> float:
        return cpuSeconds(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


class Sipp:
    """
    One SIPp run; its screen goes to a file (a pipe left unread could
    fill up and stall it).
    """

    count = 0

    def __init__(self, argv: list[str], workdir: str) -> None:
        Sipp.count += 1
        self.path = os.path.join(workdir, f"sipp-{Sipp.count}.out")
        with open(self.path, "wb") as out:
            self.process = subprocess.Popen(argv, cwd=workdir, stdout=out, stderr=subprocess.STDOUT)

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def output(self) -> str:
        with open(self.path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def wait(self) -> str:
        self.process.wait()
        return self.output()


def sipp(gateway: Gateway, workdir: str, args: list[str], limit: float) -> Sipp:
    argv = [
        "timeout", "-k", "2", str(int(limit)), "sipp", f"127.0.0.1:{gateway.sip}",
        "-s", "echo", "-i", "127.0.0.1", "-p", str(freePort()),
        "-mi", "127.0.0.1", "-mp", str(freePort() & ~1),
        "-nostdin", "-timeout", str(int(limit) - 3), *args,
    ]  # fmt: skip
    return Sipp(argv, workdir)


def sippResult(output: str) -> tuple[int, int, float]:
    """
    (successful, failed, cumulative call rate) from SIPp's final screen.
    """

    def last(label: str) -> float:
        values = re.findall(label + r"\s*\|\s*[\d.]+\s*(?:cps)?\s*\|\s*([\d.]+)", output)
        return float(values[-1]) if values else 0.0

    return int(last("Successful call")), int(last("Failed call")), last("Call Rate")


def callRate(
    gateway: Gateway, workdir: str, rate: int, seconds: float, media: float
) -> dict[str, Any]:
    count = int(rate * seconds)
    if media:
        args = ["-sf", os.path.join(SCENARIOS, "uac_stream.xml"), "-d", str(int(media * 1000))]
    else:
        args = ["-sn", "uac", "-d", "0"]
    cpu0, t0 = gateway.cpu(), time.time()
    proc = sipp(gateway, workdir, [*args, "-r", str(rate), "-m", str(count)], seconds + media + 40)
    output = proc.wait()
    cpu1, t1 = gateway.cpu(), time.time()
    ok, failed, achieved = sippResult(output)
    return {
        "rate": rate,
        "achieved": achieved,
        "ok": ok,
        "failed": failed + (count - ok - failed),
        "exit": proc.returncode,
        "cpu": 100 * (cpu1 - cpu0) / (t1 - t0),
    }


async def concurrent(
    reactor: Any, gateway: Gateway, workdir: str, total: int, probes: int, window: float
) -> dict[str, Any]:
    background = max(0, total - probes)
    ramp = 100.0
    hold = background / ramp + window + 8
    proc = None
    if background:
        proc = sipp(
            gateway,
            workdir,
            [
                "-sf",
                os.path.join(SCENARIOS, "uac_stream.xml"),
                "-d",
                str(int(hold * 1000)),
                "-r",
                str(int(ramp)),
                "-m",
                str(background),
            ],  # fmt: skip
            hold + background / ramp + 40,
        )
        await deferLater(reactor, background / ramp + 2, lambda: None)
    uac = UserAgentClient(reactor, "127.0.0.1")
    source = speechLike(5.0, 8000, seed=11)
    calls = [uac.call(f"sip:echo@127.0.0.1:{gateway.sip}", source=source) for _ in range(probes)]
    results = await defer.DeferredList([c.answered for c in calls], consumeErrors=True)
    answered = [c for (ok, _), c in zip(results, calls, strict=True) if ok]
    await deferLater(reactor, 2.0, lambda: None)  # past the jitter buffer fill
    marks = {
        c: (c.stats.packetsReceived, c.stats.expected, len(c.stats.arrivals)) for c in answered
    }
    cpu0, t0 = gateway.cpu(), time.time()
    await deferLater(reactor, window, lambda: None)
    cpu1, t1 = gateway.cpu(), time.time()
    lost = 0
    jitters = []
    import numpy as np

    for c in answered:
        received0, expected0, index = marks[c]
        received = c.stats.packetsReceived - received0
        expected = c.stats.expected - expected0
        lost += max(0, expected - received)
        times = np.frombuffer(c.stats.arrivals, dtype=np.float64)[index:]
        jitters.append(np.abs(np.diff(times) - 0.020))
    await uac.stop()
    allJitter = np.concatenate(jitters) if jitters else np.zeros(1)
    failed = probes - len(answered)
    if proc is not None:
        output, _ = await deferToProcess(reactor, proc)
        ok, bad, _ = sippResult(output)
        failed += bad + (background - ok - bad)
    return {
        "calls": total,
        "failed": failed,
        "lost": lost,
        "p99": 1000 * float(np.percentile(allJitter, 99)),
        "max": 1000 * float(np.max(allJitter)),
        "cpu": 100 * (cpu1 - cpu0) / (t1 - t0),
    }


async def deferToProcess(reactor: Any, proc: Sipp) -> tuple[str, int | None]:
    while proc.returncode is None:
        await deferLater(reactor, 0.5, lambda: None)
    return proc.output(), proc.returncode


async def main(reactor: Any, options: argparse.Namespace) -> None:
    for tool in ("sipp", "sox", "timeout"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed (bash .ci/bootstrap --test)")
    workdir = tempfile.mkdtemp(prefix="bench-sip-")
    subprocess.run(
        ["sox", "-n", "-r", "8000", "-c", "1", "-e", "u-law", "tone_ulaw.wav", "synth", "10",
         "sine", "440"],
        cwd=workdir,
        check=True,
    )  # fmt: skip
    gateway = Gateway(workdir, (options.rtp_low, options.rtp_low + 3999))
    rows: list[tuple[str, ...]] = []
    try:
        if not options.skip_cps:
            for rate in options.rates:
                r = callRate(gateway, workdir, rate, options.seconds, 0)
                rows.append(
                    ("call rate, media off", f"{rate} cps offered", f"{r['achieved']:.0f} cps",
                     f"{r['ok']} ok / {r['failed']} failed", f"{r['cpu']:.0f}%", "")
                )  # fmt: skip
                print(rows[-1], flush=True)
                if r["failed"]:
                    break
            for rate in options.media_rates:
                r = callRate(gateway, workdir, rate, options.seconds, options.hold_media)
                rows.append(
                    ("call rate, media on", f"{rate} cps offered",
                     f"{r['achieved']:.0f} cps (~{rate * options.hold_media:.0f} in flight)",
                     f"{r['ok']} ok / {r['failed']} failed", f"{r['cpu']:.0f}%", "")
                )  # fmt: skip
                print(rows[-1], flush=True)
                if r["failed"]:
                    break
        if not options.skip_media:
            for total in options.calls:
                r = await concurrent(
                    reactor, gateway, workdir, total, options.probes, options.window
                )
                rows.append(
                    ("concurrent echo + transcoding", f"{total} calls", "",
                     f"{r['failed']} failed, {r['lost']} lost",
                     f"{r['cpu']:.0f}%", f"p99 {r['p99']:.2f} ms, max {r['max']:.1f} ms")
                )  # fmt: skip
                print(rows[-1], flush=True)
                await deferLater(reactor, 5, lambda: None)
    finally:
        gateway.stop()
    header = ("benchmark", "load", "achieved", "calls", "gateway CPU", "pacing jitter")
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    print()
    for row in (header, tuple("-" * w for w in widths), *rows):
        print(" | ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)))
    print(
        f"\n{os.cpu_count()} cores shared by the gateway (one process, one core at most),"
        " SIPp and this process (the probe UAC).\n'gateway CPU' is the gateway process's CPU"
        " time over wall time (100% = one core).\nPacing jitter: |inter-arrival − 20 ms| of the"
        " echo at the probe calls, measured in this process."
    )
    shutil.rmtree(workdir, ignore_errors=True)


def parse() -> argparse.Namespace:
    def ints(text: str) -> list[int]:
        return [int(x) for x in text.split(",") if x]

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller sweep")
    parser.add_argument("--rates", type=ints, default=[100, 200, 300, 350, 400, 500])
    parser.add_argument("--media-rates", type=ints, default=[50, 100, 150, 200])
    parser.add_argument("--hold-media", type=float, default=2.0, help="seconds of RTP per call")
    parser.add_argument("--calls", type=ints, default=[250, 500, 750, 1000])
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument("--window", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=10.0, help="per call-rate step")
    parser.add_argument("--rtp-low", type=int, default=12000)
    parser.add_argument("--skip-cps", action="store_true")
    parser.add_argument("--skip-media", action="store_true")
    options = parser.parse_args()
    if options.quick:
        options.rates = [100, 300]
        options.media_rates = [50]
        options.calls = [100, 300]
        options.seconds = 5.0
        options.window = 5.0
    return options


if __name__ == "__main__":
    opts = parse()
    task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor, opts)))
