"""
Asterisk transports under load: the real gateway (C{twist rapida}, SQLite)
in one process, the simulator's load runner (C{rapida-sim load}, one shared
ticker for all its calls) in another, on the same machine. Prints a table;
not a timed test.

    .venv/bin/python benchmarks/bench_audiosocket.py [--calls 100,250,500] \\
        [--transports audiosocket,asterisk-ws] [--seconds 12]

For each transport and call count:

  - the gateway's CPU while every call is up (user + system time from
    C{/proc}, as a share of one core) and the calls one core would carry
    at that cost;
  - AudioSocket pacing of what the gateway sends: three more connections
    that only send their UUID record the kernel's receive time of every
    frame (C{SO_TIMESTAMPNS}), so neither the prober's nor the load
    runner's scheduling counts; reported as the share of inter-frame gaps
    within 20 +- 3 ms and their 1st / 99th percentiles (gaps around a
    frame the probe read more than 15 ms late are left out, and their
    share shown: the kernel merges queued frames under one timestamp);
  - from the load runner: calls that failed, echo frames lost (the echo
    assistant; a frame is lost when its echo never comes back), and its
    own late ticks (if many, the load runner was the bottleneck).

The target is 1,000 AudioSocket calls per core with that pacing and no
lost frames; the load runner shares the machine, so the largest count it
can generate is part of the result.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from typing import Any

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
TICKS = os.sysconf("SC_CLK_TCK")
#: a frame read later than this after its arrival may have been merged
#: with the next one (see L{Probe.gaps})
READ_IN_TIME = 0.015


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpuSeconds(pid: int) -> float:
    """
    User + system CPU seconds of process C{pid} so far.
    """
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class Gateway:
    """
    C{twist rapida} on free loopback ports with an embedded SQLite store.
    """

    def __init__(self, workdir: str) -> None:
        self.http = freePort()
        self.audiosocket = freePort()
        self.base = f"http://127.0.0.1:{self.http}"
        self.log = open(os.path.join(workdir, "gateway.log"), "wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "twisted",
                "--log-format=json",
                "--log-level=warn",
                "rapida",
                "--http",
                f"tcp:{self.http}:interface=127.0.0.1",
                "--audiosocket",
                f"tcp:{self.audiosocket}:interface=127.0.0.1",
                "--sip",
                "none",
                "--database",
                "sqlite:" + os.path.join(workdir, "rapida.sqlite3"),
                "--public-host",
                self.base,
            ],
            cwd=workdir,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(self.base + "/healthz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise SystemExit("the gateway did not start")

    def contextId(self) -> str:
        request = urllib.request.Request(
            self.base + "/v1/talk/asterisk/call/echo", data=b"from=probe&to=bench"
        )
        with urllib.request.urlopen(request, timeout=5) as r:
            return str(r.read().decode())

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


class Probe(threading.Thread):
    """
    One AudioSocket connection that sends its UUID only and records the
    kernel receive time of each 8 kHz frame sent to it.
    """

    def __init__(self, gateway: Gateway, seconds: float) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", gateway.audiosocket))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.sendall(b"\x01\x00\x10" + uuid.UUID(gateway.contextId()).bytes)
        self.seconds = seconds
        self.times: list[float] = []
        #: how long after its arrival each frame was read
        self.lags: list[float] = []

    def run(self) -> None:
        end = time.time() + self.seconds
        pending = b""
        while time.time() < end:
            ready, _, _ = select.select([self.sock], [], [], 0.1)
            if not ready:
                continue
            data, ancillary, _, _ = self.sock.recvmsg(323, socket.CMSG_SPACE(16))
            now = time.time()
            if not data:
                break
            stamp = None
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", payload[:16])
                    stamp = sec + nsec / 1e9
            pending += data
            while len(pending) >= 3:
                size = 3 + struct.unpack("!H", pending[1:3])[0]
                if len(pending) < size or stamp is None:
                    break
                self.times.append(stamp)
                self.lags.append(now - stamp)
                pending = pending[size:]
        self.sock.close()

    def gaps(self) -> tuple[Any, int]:
        """
        Gaps between frames (after the first ten) that the probe read in
        time, and how many it did not: a frame left in the socket while
        the next arrives is merged with it by the kernel and takes its
        timestamp, so a late reader would see a 0 ms and a 40 ms gap the
        gateway never made.
        """
        times = np.asarray(self.times[10:], np.float64)
        fresh = np.asarray(self.lags[10:], np.float64) < READ_IN_TIME
        valid = fresh[1:] & fresh[:-1]
        return np.diff(times)[valid], int((~valid).sum())


def runOnce(transport: str, calls: int, seconds: float, workdir: str) -> dict[str, Any]:
    """
    One load run against a fresh gateway; the row's figures.
    """
    gateway = Gateway(workdir)
    ramp = max(1.0, calls / 100)
    args = [
        sys.executable,
        "-m",
        "rapida_twisted.sim",
        "load",
        transport,
        "--gateway",
        gateway.base,
        "--calls",
        str(calls),
        "--ramp",
        f"{ramp:g}",
        "--duration",
        f"{seconds:g}",
        "--linger",
        "0.5",
        "--json",
    ]
    if transport == "audiosocket":
        args += ["--audiosocket-host", "127.0.0.1", "--audiosocket-port", str(gateway.audiosocket)]
    try:
        load = subprocess.Popen(
            args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        # the steady window: every call up, none ended
        window = max(2.0, seconds - 3.0)
        time.sleep(ramp + 1.0)
        probes = []
        if transport == "audiosocket":
            probes = [Probe(gateway, window) for _ in range(3)]
            for probe in probes:
                probe.start()
        cpu0, wall0 = cpuSeconds(gateway.proc.pid), time.time()
        time.sleep(window)
        cpu1, wall1 = cpuSeconds(gateway.proc.pid), time.time()
        for probe in probes:
            probe.join()
        out, _ = load.communicate(timeout=seconds + ramp + 120)
    finally:
        gateway.stop()
    report = json.loads(out[out.index("{") :])
    share = (cpu1 - cpu0) / (wall1 - wall0)
    row: dict[str, Any] = {
        "transport": transport,
        "calls": calls,
        "cpu": share,
        "perCore": calls / share if share else float("inf"),
        "failed": report["failed"],
        "lost": report["lost"],
        "expected": report["echoExpected"],
        "simLate": report["simulator"]["lateTicks"],
        "simCpu": report["simulator"]["cpuSeconds"],
    }
    if probes:
        measured = [p.gaps() for p in probes]
        gaps = np.concatenate([g for g, _ in measured])
        row["unread"] = sum(n for _, n in measured) / max(1, sum(len(p.times) for p in probes))
        row["within"] = float(np.mean(np.abs(gaps - 0.020) <= 0.003)) if len(gaps) else 0.0
        row["p1"], row["p99"] = (
            np.percentile(gaps, [1, 99]) * 1000 if len(gaps) else (float("nan"),) * 2
        )
    return row


def table(rows: list[dict[str, Any]]) -> None:
    header = [
        "transport",
        "calls",
        "gateway CPU",
        "calls/core",
        "gaps 20+-3ms",
        "gap p1 / p99",
        "probe late",
        "failed",
        "lost / expected",
        "sim late ticks",
    ]
    lines = []
    for r in rows:
        lines.append(
            [
                r["transport"],
                str(r["calls"]),
                f"{r['cpu'] * 100:.0f}%",
                f"{r['perCore']:.0f}",
                f"{r['within'] * 100:.2f}%" if "within" in r else "-",
                f"{r['p1']:.1f} / {r['p99']:.1f} ms" if "p1" in r else "-",
                f"{r['unread'] * 100:.1f}%" if "unread" in r else "-",
                str(r["failed"]),
                f"{r['lost']} / {r['expected']}",
                str(r["simLate"]),
            ]
        )
    widths = [max(len(c) for c in col) for col in zip(header, *lines, strict=True)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("-" * (sum(widths) + 2 * len(widths)))
    for line in lines:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--calls", default="100,250,500", help="comma-separated call counts")
    parser.add_argument("--transports", default="audiosocket,asterisk-ws")
    parser.add_argument("--seconds", type=float, default=12.0, help="seconds of audio per call")
    args = parser.parse_args()
    print(
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f};"
        " gateway, load runner and probes share them"
    )
    rows = []
    for transport in args.transports.split(","):
        for calls in (int(c) for c in args.calls.split(",")):
            workdir = tempfile.mkdtemp(prefix="bench-asterisk-")
            try:
                rows.append(runOnce(transport, calls, args.seconds, workdir))
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
            print(f"  {transport} {calls} calls done", file=sys.stderr)
    table(rows)


if __name__ == "__main__":
    main()
