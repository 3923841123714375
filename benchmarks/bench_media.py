"""
Media-layer benchmark: G.711, resampling candidates, the per-call DSP
pipeline, the framer and the pacer. Prints tables; not a timed test.

    .venv/bin/python benchmarks/bench_media.py [--calls 1000] [--seconds 2]

Resampler candidates are measured on 20 ms chunks for: CPU per frame,
rejection (worst alias above the new Nyquist frequency when going down,
worst image when going up), passband flatness (100 Hz to 85% of the lower
Nyquist frequency), algorithmic delay (where an impulse comes out in the output stream),
burstiness (largest backlog of input not yet answered by output, and the
largest deviation of one chunk's output from its ideal length) and the
resulting real-time latency (delay + backlog: soxr compensates its filter
delay in the stream but holds output back instead).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import math
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
import numpy.typing as npt
import soxr

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rapida_twisted.media import (  # noqa: E402
    ALAW,
    ULAW,
    Framer,
    Pacer,
    PacerGroup,
    PacerLike,
    PacerStats,
    Resampler,
    ulawDecode,
    ulawDecodeArray,
    ulawEncode,
    ulawEncodeArray,
)
from rapida_twisted.media.analysis import speechLike, tone  # noqa: E402

Chunker = Callable[[npt.NDArray[np.int16]], npt.NDArray[np.int16]]

PAIRS = list(itertools.permutations((8000, 16000, 24000), 2))


def perCall(fn: Callable[[], object], number: int = 3000, repeat: int = 5) -> float:
    """
    Best-of-C{repeat} mean microseconds per call of C{fn}.
    """
    best = math.inf
    gc.disable()
    try:
        for _ in range(repeat):
            start = time.perf_counter()
            for _ in range(number):
                fn()
            best = min(best, (time.perf_counter() - start) / number)
    finally:
        gc.enable()
    return best * 1e6


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    print(f"\n{title}")
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(str(c).rjust(w) for c, w in zip(row, widths, strict=True)))


# --- G.711 -----------------------------------------------------------------


def benchG711() -> list[list[str]]:
    pcm = speechLike(0.02, 8000, seed=1)
    codes = ULAW.encode(pcm)
    pcmArray = np.frombuffer(pcm, np.int16)
    codeArray = np.frombuffer(codes, np.uint8)
    out16 = np.empty(160, np.int16)
    out8 = np.empty(160, np.uint8)
    rows: list[tuple[str, float]] = [
        ("μ-law decode (bytes)", perCall(lambda: ulawDecode(codes))),
        ("μ-law encode (bytes)", perCall(lambda: ulawEncode(pcm))),
        ("A-law decode (bytes)", perCall(lambda: ALAW.decode(codes))),
        ("A-law encode (bytes)", perCall(lambda: ALAW.encode(pcm))),
        ("μ-law decode (array, out=)", perCall(lambda: ulawDecodeArray(codeArray, out16))),
        ("μ-law encode (array, out=)", perCall(lambda: ulawEncodeArray(pcmArray, out8))),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import audioop
        except ImportError:
            audioop = None  # type: ignore[assignment]
    if audioop is not None:
        rows.append(("audioop.ulaw2lin (reference)", perCall(lambda: audioop.ulaw2lin(codes, 2))))
        rows.append(("audioop.lin2ulaw (reference)", perCall(lambda: audioop.lin2ulaw(pcm, 2))))
    return [[name, f"{us:.2f}"] for name, us in rows]


# --- Resampling candidates -------------------------------------------------


def candidates(inRate: int, outRate: int) -> dict[str, Callable[[], Chunker]]:
    def ours() -> Chunker:
        return Resampler(inRate, outRate).processArray

    def soxrStream(quality: str) -> Callable[[], Chunker]:
        def make() -> Chunker:
            stream = soxr.ResampleStream(inRate, outRate, 1, dtype="int16", quality=quality)
            return stream.resample_chunk

        return make

    return {
        "polyphase FIR (ours)": ours,
        "soxr QQ": soxrStream("QQ"),
        "soxr LQ": soxrStream("LQ"),
        "soxr MQ": soxrStream("MQ"),
    }


def stream(
    make: Callable[[], Chunker], x: npt.NDArray[np.int16], chunk: int
) -> list[npt.NDArray[np.int16]]:
    fn = make()
    return [fn(x[i : i + chunk]) for i in range(0, len(x), chunk)]


def fitTone(y: npt.NDArray[np.float64], rate: int, freq: float) -> tuple[float, float]:
    n = np.arange(len(y))
    w = 2 * np.pi * freq * n / rate
    basis = np.stack([np.sin(w), np.cos(w), np.ones(len(y))], axis=1)
    coef, *_ = np.linalg.lstsq(basis, y, rcond=None)
    rest = y - basis @ coef
    return math.hypot(coef[0], coef[1]), float(np.sqrt(np.mean(rest**2)))


def steady(
    make: Callable[[], Chunker], inRate: int, outRate: int, freq: float
) -> npt.NDArray[np.float64]:
    """
    A half-scale tone through 20 ms chunks; 0.2 s of warm-up dropped and
    the tail (which buffered resamplers may not have emitted) ignored.
    """
    x = np.frombuffer(tone(freq, 0.8, inRate), np.int16)
    y = np.concatenate(stream(make, x, inRate // 50)).astype(np.float64)
    return y[outRate // 5 : outRate // 5 + outRate // 2]


def quality(
    make: Callable[[], Chunker], inRate: int, outRate: int
) -> tuple[float, float, float, float, int]:
    """
    (rejection dB, passband deviation dB, delay ms, max backlog ms,
    worst chunk deviation in samples).
    """
    nyquist = min(inRate, outRate) / 2
    amplitude = 0.5 * 32767
    if outRate < inRate:
        worst = -math.inf
        for freq in np.linspace(nyquist * 1.05, inRate / 2 * 0.95, 9):
            y = steady(make, inRate, outRate, float(freq))
            level = float(np.sqrt(np.mean(y**2))) / (amplitude / math.sqrt(2))
            worst = max(worst, 20 * math.log10(max(level, 1e-9)))
    else:
        worst = -math.inf
        for freq in np.linspace(300, 0.85 * nyquist, 5):
            a, rest = fitTone(steady(make, inRate, outRate, float(freq)), outRate, float(freq))
            worst = max(worst, 20 * math.log10(max(rest, 1e-9) / (a / math.sqrt(2))))
    deviation = 0.0
    for freq in np.linspace(100, 0.85 * nyquist, 8):
        a, _ = fitTone(steady(make, inRate, outRate, float(freq)), outRate, float(freq))
        deviation = max(deviation, abs(20 * math.log10(a / amplitude)))
    # Delay: an impulse at 0.5 s, found in the concatenated output.
    x = np.zeros(inRate, np.int16)
    x[inRate // 2] = 20000
    chunks = stream(make, x, inRate // 50)
    y = np.concatenate(chunks)
    delay = (int(np.argmax(y)) - outRate // 2) / outRate * 1e3
    # Burstiness: input fed vs output emitted, chunk by chunk.
    backlog = 0.0
    worstChunk = 0
    fedIn = fedOut = 0
    ideal = outRate // 50
    for c in chunks:
        fedIn += inRate // 50
        fedOut += len(c)
        backlog = max(backlog, fedIn / inRate - fedOut / outRate)
        worstChunk = max(worstChunk, abs(len(c) - ideal))
    return worst, deviation, delay, backlog * 1e3, worstChunk


def benchResamplers() -> list[list[str]]:
    rows = []
    for inRate, outRate in PAIRS:
        x = np.frombuffer(speechLike(0.02, inRate, seed=2), np.int16)
        for name, make in candidates(inRate, outRate).items():
            us = perCall(partial(make(), x))
            rejection, flat, delay, backlog, worstChunk = quality(make, inRate, outRate)
            rows.append(
                [
                    f"{inRate // 1000}k→{outRate // 1000}k",
                    name,
                    f"{us:.2f}",
                    f"{rejection:.1f}",
                    f"{flat:.2f}",
                    f"{delay:.2f}",
                    f"{backlog:.1f}",
                    f"{delay + backlog:.1f}",
                    str(worstChunk),
                ]
            )
    return rows


def benchOurs() -> list[list[str]]:
    rows = []
    for inRate, outRate in PAIRS:
        r = Resampler(inRate, outRate)
        pcm = speechLike(0.02, inRate, seed=3)
        x = np.frombuffer(pcm, np.int16)
        rows.append(
            [
                f"{inRate // 1000}k→{outRate // 1000}k",
                f"{perCall(partial(r.process, pcm)):.2f}",
                f"{perCall(partial(r.processArray, x)):.2f}",
                f"{r.delay * 1e3:.2f}",
                str(r._poly.taps if r._poly else 0),
            ]
        )
    return rows


# --- Pipeline and framer ---------------------------------------------------


def benchPipeline() -> list[list[str]]:
    codes = ULAW.encode(speechLike(0.02, 8000, seed=4))
    up, down = Resampler(8000, 16000), Resampler(16000, 8000)

    def bytesPipeline() -> bytes:
        return ulawEncode(down.process(up.process(ulawDecode(codes))))

    codeArray = np.frombuffer(codes, np.uint8)
    pcm8 = np.empty(160, np.int16)
    out8 = np.empty(160, np.uint8)

    def arrayPipeline() -> bytes:
        ulawDecodeArray(codeArray, pcm8)
        return ulawEncodeArray(down.processArray(up.processArray(pcm8)), out8).tobytes()

    framer = Framer(160, ULAW.silence)
    frame = bytes(160)
    tts = bytes(4000)
    framer2 = Framer(640, b"\x00\x00")
    rows = []
    for name, fn in [
        ("pipeline μ-law→8k→16k→8k→μ-law (bytes API)", bytesPipeline),
        ("pipeline μ-law→8k→16k→8k→μ-law (array API)", arrayPipeline),
        ("Framer.push, exactly one 160 B frame", lambda: framer.push(frame)),
        ("Framer.push, 4000 B chunk into 640 B frames (per chunk)", lambda: framer2.push(tts)),
    ]:
        us = perCall(fn)
        extra = ""
        if name.startswith("pipeline"):
            extra = f"{us * 50 / 1e3:.2f} ms CPU per call-second, {1e6 / (us * 50):.0f} calls/core"
        rows.append([name, f"{us:.2f}", extra])
    return rows


# --- Pacer on a real reactor -----------------------------------------------


def benchPacers(calls: int, seconds: float) -> list[list[str]]:
    """
    C{calls} 20 ms schedules for C{seconds} each on the real reactor:
    first one L{Pacer} per call, then one L{PacerGroup} for all. CPU
    (process time, including the reactor's own work) per tick.
    """
    from twisted.internet import reactor

    results: list[list[str]] = []
    counter = [0]

    def tick() -> None:
        counter[0] += 1

    def phase(
        name: str, pacers: Sequence[PacerLike], stats: Callable[[], list[PacerStats]]
    ) -> Callable[[], None]:
        def begin() -> None:
            counter[0] = 0
            gc.collect()
            cpu0, wall0 = time.process_time(), time.perf_counter()
            for p in pacers:
                p.start()

            def end() -> None:
                for p in pacers:
                    p.stop()
                cpu = time.process_time() - cpu0
                wall = time.perf_counter() - wall0
                s = stats()
                late = sum(x.late for x in s)
                maxLate = max(x.maxLateness for x in s)
                reanchors = sum(x.reanchors for x in s)
                results.append(
                    [
                        name,
                        str(calls),
                        str(counter[0]),
                        f"{cpu / counter[0] * 1e6:.2f}",
                        f"{100 * cpu / wall:.1f}",
                        str(late),
                        str(reanchors),
                        f"{maxLate * 1e3:.1f}",
                    ]
                )

            reactor.callLater(seconds, end)

        return begin

    singles = [Pacer(reactor, tick) for _ in range(calls)]
    group = PacerGroup(reactor)
    members = [group.pacer(tick) for _ in range(calls)]
    reactor.callLater(0.1, phase("Pacer per call", singles, lambda: [p.stats for p in singles]))
    reactor.callLater(
        seconds + 0.3,
        phase("PacerGroup, shared", members, lambda: [m.stats for m in members]),
    )
    reactor.callLater(2 * seconds + 0.5, reactor.stop)
    reactor.run()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--calls", type=int, default=1000, help="paced calls in the pacer benchmark"
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="duration of each pacer phase")
    parser.add_argument("--no-pacer", action="store_true", help="skip the real-reactor pacer run")
    args = parser.parse_args()
    print(
        f"Python {platform.python_version()}, numpy {np.__version__}, soxr {soxr.__version__}, "
        f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs"
    )
    table("G.711, one 20 ms frame (160 samples)", ["operation", "µs/frame"], benchG711())
    table(
        "Resampling candidates, 20 ms chunks",
        [
            "direction",
            "method",
            "µs/frame",
            "reject dB",
            "passband ±dB",
            "delay ms",
            "backlog ms",
            "latency ms",
            "chunk dev",
        ],
        benchResamplers(),
    )
    table(
        "Chosen resampler (polyphase FIR), one 20 ms frame",
        ["direction", "µs bytes", "µs array", "delay ms", "taps"],
        benchOurs(),
    )
    table("Per-call pipeline and framer", ["operation", "µs", "note"], benchPipeline())
    if not args.no_pacer:
        table(
            f"Pacer cost on the real reactor ({args.seconds:g} s per phase)",
            [
                "scheme",
                "calls",
                "ticks",
                "CPU µs/tick",
                "CPU %",
                "late",
                "reanchors",
                "max late ms",
            ],
            benchPacers(args.calls, args.seconds),
        )


if __name__ == "__main__":
    main()
