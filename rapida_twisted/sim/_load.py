# -*- test-case-name: tests.test_sim -*-
"""
Running simulated calls: one, or many at once for a load test, and the
report that sums them up.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from twisted.internet import defer
from twisted.internet.task import LoopingCall, deferLater

from ._analysis import Percentiles, percentiles
from ._asterisk import AsteriskWsCall, AudioSocketCall
from ._audio import AudioSource
from ._base import CallOptions, CallResult
from ._call import SimCall
from ._exotel import ExotelCall
from ._net import Environment
from ._sip import SipCall
from ._twilio import TwilioCall
from ._vonage import VonageCall

__all__ = ["TRANSPORTS", "LoadProgress", "LoadReport", "audioSource", "placeCall", "runLoad"]

#: The transports by the name C{rapida-sim} uses.
TRANSPORTS: Mapping[str, type[SimCall]] = {
    "twilio": TwilioCall,
    "vonage": VonageCall,
    "exotel": ExotelCall,
    "audiosocket": AudioSocketCall,
    "asterisk-ws": AsteriskWsCall,
    "sip": SipCall,
}


def callClass(transport: str) -> type[SimCall]:
    """
    The L{SimCall} subclass of a transport name.

    @raise ValueError: an unknown name.
    """
    try:
        return TRANSPORTS[transport]
    except KeyError:
        raise ValueError(
            f"unknown transport {transport!r}; choose from {', '.join(TRANSPORTS)}"
        ) from None


def audioSource(
    transport: str,
    options: CallOptions,
    wav: str | None = None,
    seconds: float | None = None,
    seed: int = 0,
) -> AudioSource:
    """
    What a transport's calls say (the WAV file or a speech-like signal),
    already encoded in the transport's usual wire format.

    @raise ValueError: an unknown transport or wire format; a bad WAV
        (L{WavFormatError}).
    @raise OSError: the WAV cannot be read.
    """
    source = AudioSource(wav, seconds, seed)
    source.prepared(callClass(transport).wireFormat(options))
    return source


async def placeCall(
    env: Environment, transport: str, options: CallOptions, source: AudioSource
) -> CallResult:
    """
    Place one call and wait until it has ended.
    """
    return await callClass(transport)(env, options, source).run()


@dataclass
class LoadProgress:
    """
    Where a load run is, for a progress display.
    """

    calls: int
    started: int = 0
    done: int = 0
    failed: int = 0
    framesSent: int = 0
    framesReceived: int = 0
    elapsed: float = 0.0

    @property
    def active(self) -> int:
        """
        Calls started and not yet ended.
        """
        return self.started - self.done

    def line(self) -> str:
        """
        One line for a terminal.
        """
        return (
            f"[{self.elapsed:6.1f}s] calls {self.started}/{self.calls} active {self.active}"
            f" done {self.done} failed {self.failed} | frames sent {self.framesSent}"
            f" received {self.framesReceived}"
        )


@dataclass
class LoadReport:
    """
    The sum of many simulated calls.

    @ivar failures: failure reasons and how many calls failed with each.
    @ivar latency: added latency of the echo, seconds (see
        L{rapida_twisted.sim._analysis}).
    @ivar late: late firings of the simulator's own ticker (the simulator
        was the bottleneck if this is not small).
    """

    transport: str
    calls: int
    seconds: float
    ok: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    framesSent: int = 0
    framesReceived: int = 0
    expected: int = 0
    echoed: int = 0
    jitter: Percentiles = field(default_factory=lambda: percentiles([]))
    gaps: Percentiles = field(default_factory=lambda: percentiles([]))
    latency: Percentiles = field(default_factory=lambda: percentiles([]))
    setup: Percentiles = field(default_factory=lambda: percentiles([]))
    skippedFrames: int = 0
    underruns: int = 0
    late: int = 0
    maxLateness: float = 0.0
    cpuSeconds: float = 0.0
    analysisCpuSeconds: float = 0.0
    counters: Counter[str] = field(default_factory=Counter)

    @property
    def lost(self) -> int:
        """
        Frames whose echo never came back.
        """
        return self.expected - self.echoed

    @classmethod
    def of(
        cls, transport: str, results: list[CallResult], seconds: float, env: Environment | None
    ) -> LoadReport:
        """
        Sum up C{results} (this runs the echo analysis of every call).
        """
        report = cls(transport, len(results), seconds)
        jitter, gaps, latency, setup = [], [], [], []
        for result in results:
            if result.ok:
                report.ok += 1
            else:
                report.failures[(result.failure or "")[:120]] += 1
            report.framesSent += result.framesSent
            report.framesReceived += result.framesReceived
            report.counters.update(result.counters)
            if result.webhookSeconds is not None:
                setup.append(result.webhookSeconds)
            if result.stream is None:
                continue
            report.skippedFrames += result.stream.frames.skipped
            report.underruns += result.stream.underruns
            g, j = result.jitter()
            gaps.append(g)
            jitter.append(j)
            echo = result.echo()
            if echo is not None:
                report.expected += echo.expected
                report.echoed += echo.echoed
                latency.append(echo.latencies)
        report.jitter = percentiles(jitter)
        report.gaps = percentiles(gaps)
        report.latency = percentiles(latency)
        report.setup = percentiles(np.asarray(setup, np.float64))
        if env is not None:
            report.late = env.ticker.stats.late
            report.maxLateness = env.ticker.stats.maxLateness
        return report

    def asDict(self) -> dict[str, Any]:
        """
        The report as one JSON-ready document (times in milliseconds).
        """
        return {
            "transport": self.transport,
            "calls": self.calls,
            "ok": self.ok,
            "failed": self.calls - self.ok,
            "failures": dict(self.failures),
            "seconds": round(self.seconds, 3),
            "framesSent": self.framesSent,
            "framesReceived": self.framesReceived,
            "echoExpected": self.expected,
            "echoReceived": self.echoed,
            "lost": self.lost,
            "underruns": self.underruns,
            "jitterMs": self.jitter.asDict(1000),
            "gapMs": self.gaps.asDict(1000),
            "latencyMs": self.latency.asDict(1000),
            "setupMs": self.setup.asDict(1000),
            "counters": dict(self.counters),
            "simulator": {
                "skippedFrames": self.skippedFrames,
                "lateTicks": self.late,
                "maxLatenessMs": round(self.maxLateness * 1000, 3),
                "cpuSeconds": round(self.cpuSeconds, 3),
                "analysisCpuSeconds": round(self.analysisCpuSeconds, 3),
            },
        }

    def lines(self) -> list[str]:
        """
        The report for people.
        """

        def ms(p: Percentiles) -> str:
            if p.p50 is None or p.p99 is None:
                return "n/a"
            return f"p50 {p.p50 * 1000:.2f} ms, p99 {p.p99 * 1000:.2f} ms"

        out = [
            f"{self.transport}: {self.calls} calls in {self.seconds:.1f} s,"
            f" {self.ok} ok, {self.calls - self.ok} failed",
            f"  frames sent {self.framesSent}, received {self.framesReceived},"
            f" lost {self.lost} (of {self.expected} with sound),"
            f" {self.underruns} playback gaps",
            f"  inter-arrival jitter {ms(self.jitter)}",
            f"  added latency        {ms(self.latency)}",
            f"  call setup           {ms(self.setup)}",
            f"  simulator: {self.late} late ticks (max {self.maxLateness * 1000:.1f} ms),"
            f" {self.skippedFrames} frames skipped, {self.cpuSeconds:.1f} s CPU"
            f" (+{self.analysisCpuSeconds:.1f} s analysing)",
        ]
        for reason, count in self.failures.most_common(10):
            out.append(f"  failed x{count}: {reason}")
        return out


async def runLoad(
    env: Environment,
    transport: str,
    options: CallOptions,
    source: AudioSource,
    calls: int,
    ramp: float = 0.0,
    progress: Callable[[LoadProgress], None] | None = None,
    progressInterval: float = 0.5,
) -> LoadReport:
    """
    Run C{calls} calls at once, their starts spread evenly over C{ramp}
    seconds, and sum them up.

    @param progress: called every C{progressInterval} seconds while running.
    """
    clock = env.clock
    cls = callClass(transport)
    state = LoadProgress(calls)
    live: list[SimCall] = []
    started = clock.seconds()
    cpu = time.process_time()

    async def one(index: int) -> None:
        if ramp > 0 and calls > 1:
            await deferLater(clock, ramp * index / calls, lambda: None)
        call = cls(env, options, source)
        live.append(call)
        state.started += 1
        result = await call.run()
        state.done += 1
        if not result.ok:
            state.failed += 1

    def report() -> None:
        state.elapsed = clock.seconds() - started
        sent = received = 0
        for call in live:
            stream = call.result.stream
            if stream is not None:
                sent += len(stream.recorder.sendTimes)
                received += stream.recorder.receivedBytes // stream.recorder.format.frameBytes
        state.framesSent, state.framesReceived = sent, received
        assert progress is not None
        progress(state)

    ticker = None
    if progress is not None:
        ticker = LoopingCall(report)
        ticker.clock = clock
        ticker.start(progressInterval, now=False)
    try:
        await defer.gatherResults(
            [defer.Deferred.fromCoroutine(one(i)) for i in range(calls)], consumeErrors=True
        )
    finally:
        if ticker is not None and ticker.running:
            ticker.stop()
    if progress is not None:
        report()
    seconds = clock.seconds() - started
    runCpu = time.process_time() - cpu
    result = LoadReport.of(transport, [call.result for call in live], seconds, env)
    result.cpuSeconds = runCpu
    result.analysisCpuSeconds = time.process_time() - cpu - runCpu
    return result


def isTerminal(stream: Any) -> bool:
    """
    Whether C{stream} is an interactive terminal.
    """
    try:
        return bool(stream.isatty()) and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False
