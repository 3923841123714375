# -*- test-case-name: tests.test_sim -*-
"""
Measurements on what a simulated call sent and received: inter-arrival
jitter, and for the echo assistant, which sent frame each received frame
carries, hence added latency and lost frames.

How an echo is matched to what was sent (content, not counting)
----------------------------------------------------------------
The gateway decodes, resamples and re-encodes the audio, may insert
silence (a paced transport with nothing queued) and may drop frames, so
neither message counts nor sample positions line up with what was sent.
Instead the received stream is cut into 20 ms blocks and each block is
matched by its content to a position in the sent stream:

  1. The dominant lag (received sample index minus sent sample index) is
     found by normalised cross-correlation of the whole streams
     (L{rapida_twisted.media.analysis.correlation}).
  2. Every block with sound is checked against the sent samples at that
     lag (normalised correlation of the 20 ms block, vectorised over all
     blocks); those at or above L{MATCH} are assigned the lag.
  3. At the first block that does not match, the lag changed (silence
     inserted, audio dropped): a new lag is found by correlating a longer
     window from there against the sent stream within L{SEARCH_SECONDS}
     of the previous lag, and step 2 repeats for the blocks left.

A block with lag C{L} ending at received sample C{e} carries sent samples
up to C{e - 1 - L}; its latency is its arrival time minus the send time of
the frame holding that newest sample, i.e. the time from sending audio to
hearing it back. A sent frame counts as echoed when matched blocks carry
more than half of its energy; frames too quiet to matter (see
L{PreparedAudio.active}) are not expected back, so silences cannot count
as lost.

Pure numpy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from ..media.analysis import correlation

__all__ = [
    "EchoMatch",
    "Percentiles",
    "blockArrivals",
    "delayed",
    "echoCorrelation",
    "fractionalLag",
    "interArrival",
    "matchEcho",
    "percentiles",
]

FloatArray = npt.NDArray[np.float64]

#: Normalised correlation at or above which a 20 ms block matches (G.711
#: twice plus resampling leaves about 0.999 on real matches).
MATCH: Final = 0.95
#: A block quieter than this RMS (int16 units) is not matched.
QUIET_RMS: Final = 30.0
#: How far (seconds) a new lag is looked for around the previous one.
SEARCH_SECONDS: Final = 1.0
#: Blocks in the window used to find a new lag.
WINDOW_BLOCKS: Final = 10
#: Longest stretch (seconds) used to find the first lag.
GLOBAL_SECONDS: Final = 4.0
#: Unmatched blocks this close (in blocks) to a matched one are bridged
#: (see L{matchEcho}).
BRIDGE: Final = 4
#: Most new-lag searches per call (each costs one small FFT).
MAX_SEARCHES: Final = 64


@dataclass(frozen=True)
class EchoMatch:
    """
    The echo of one call, matched to what was sent.

    @ivar latencies: seconds from sending audio to receiving it back, one
        per matched received block.
    @ivar expected: sent frames with sound (whose echo must come back).
    @ivar echoed: of those, frames found in the received audio.
    @ivar blocks: received 20 ms blocks with sound.
    @ivar matched: of those, blocks matched to sent audio.
    @ivar lag: the dominant lag in samples (received minus sent index).
    @ivar segments: how many distinct lags were found (1 when the echo is
        one unbroken copy).
    @ivar missing: indices of the expected frames that never came back.
    """

    latencies: FloatArray
    expected: int
    echoed: int
    blocks: int
    matched: int
    lag: int
    segments: int
    missing: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def lost(self) -> int:
        """
        Expected frames that never came back.
        """
        return self.expected - self.echoed


#: Sub-sample delays are estimated to this step (a polyphase resampler's
#: group delay is often half a sample at the wire rate, which costs high
#: frequencies much correlation at whole-sample lags).
FRACTION_STEP: Final = 0.25

Shifter = Callable[[float], FloatArray]
"""C{shifted(fraction)}: the sent samples delayed by C{fraction} of a sample."""


def delayed(x: FloatArray, fraction: float) -> FloatArray:
    """
    C{x} delayed by C{fraction} of a sample (band-limited, via the FFT):
    C{out[n] = x(n - fraction)}.
    """
    if not fraction or not len(x):
        return x
    size = 1 << math.ceil(math.log2(len(x) + 64))
    spectrum = np.fft.rfft(x, size)
    spectrum *= np.exp(-2j * np.pi * np.arange(len(spectrum)) * fraction / size)
    return np.fft.irfft(spectrum, size)[: len(x)]


def _correlationAt(x: FloatArray, y: FloatArray, lag: int) -> float:
    """
    Normalised correlation of C{x} with C{y} at one lag (C{y[n + lag] ~
    x[n]}), over their overlap.
    """
    n0, n1 = max(0, -lag), min(len(x), len(y) - lag)
    if n1 - n0 <= 0:
        return 0.0
    a, b = x[n0:n1], y[n0 + lag : n1 + lag]
    # einsum, not dot/vdot: BLAS threads spin on this box's two cores
    power = float(np.einsum("i,i->", a, a) * np.einsum("i,i->", b, b))
    return float(np.einsum("i,i->", a, b)) / math.sqrt(power) if power > 0 else 0.0


def fractionalLag(x: FloatArray, y: FloatArray, maxLag: int) -> float:
    """
    The delay of C{y} relative to C{x} in samples, to L{FRACTION_STEP}: the
    best whole-sample lag by cross-correlation, refined by a parabola
    through the correlation at that lag and its two neighbours.
    """
    _, lag = correlation(x, y, maxLag)
    before, at, after = (_correlationAt(x, y, lag + d) for d in (-1, 0, 1))
    curve = before - 2 * at + after
    offset = 0.5 * (before - after) / curve if curve < 0 else 0.0
    offset = max(-0.5, min(0.5, offset))
    return lag + round(offset / FRACTION_STEP) * FRACTION_STEP


def echoCorrelation(
    sent: npt.NDArray[np.integer] | FloatArray,
    heard: npt.NDArray[np.integer] | FloatArray,
    maxLag: int,
    window: int | None = None,
) -> tuple[float, float]:
    """
    How alike C{heard} is to C{sent} delayed: the normalised
    cross-correlation at the best lag within C{maxLag} samples, allowing
    for a sub-sample delay (see L{fractionalLag}).

    With C{window}, C{heard} is scored window by window, each window at its
    own best lag within C{window} samples of the overall one, and the
    scores averaged weighted by each window's energy: a playback gap that
    shifts the rest of the call by 20 ms costs one window a little instead
    of halving the score, while noise, distortion or missing audio still
    count in full. (Gaps are reported on their own, as underruns.)

    @return: C{(coefficient, overall lag in samples)}, the lag possibly
        fractional.
    """
    x = np.asarray(sent, np.float64)
    y = np.asarray(heard, np.float64)
    if not len(x) or not len(y):
        return 0.0, 0.0
    exact = fractionalLag(x, y, maxLag)
    whole = math.floor(exact)
    x = delayed(x, exact - whole)
    if window is None or len(y) <= window:
        return _correlationAt(x, y, whole), exact
    y = y[: max(0, len(x) + whole)]  # what came after the echo of the last sample is not compared
    total = weight = 0.0
    for start in range(0, len(y) - window // 2, window):
        piece = y[start : start + window]
        energy = float(np.einsum("i,i->", piece, piece))
        if not energy:
            continue
        lo = max(0, start - whole - window)
        hi = min(len(x), start + len(piece) - whole + window)
        if hi <= lo:
            continue
        score, _ = correlation(x[lo:hi], piece, hi - lo)
        total += score * energy
        weight += energy
    return (total / weight if weight else 0.0), exact


def _blockCorrelation(
    blocks: FloatArray,
    energy: FloatArray,
    which: npt.NDArray[np.int64],
    sent: FloatArray,
    lag: int,
    pad: int = 0,
) -> FloatArray:
    """
    Normalised correlation of received blocks C{which} with the sent
    samples C{lag} earlier (0 where those samples do not exist).

    @param pad: C{sent} has this many zeros before the first sent sample.
    """
    n = blocks.shape[1]
    starts = which * n - lag + pad
    valid = (starts >= 0) & (starts + n <= len(sent))
    out = np.zeros(len(which))
    if not valid.any():
        return out
    index = starts[valid, None] + np.arange(n)
    reference = sent[index]
    received = blocks[which[valid]]
    dot = np.einsum("ij,ij->i", received, reference)
    power = energy[which[valid]] * np.einsum("ij,ij->i", reference, reference)
    scores = np.zeros(len(dot))
    np.divide(dot, np.sqrt(power), out=scores, where=power > 0)
    out[valid] = scores
    return out


def _findLag(
    sent: FloatArray, received: FloatArray, start: int, size: int, around: int, span: int
) -> tuple[float, int]:
    """
    The lag of C{received[start:start + size]} in C{sent}, looked for
    within C{span} samples of C{around}.
    """
    window = received[start : start + size]
    lo = max(0, start - around - span)
    hi = min(len(sent), start + size - around + span)
    if hi - lo < len(window) // 2 or not len(window):
        return 0.0, around
    score, rel = correlation(sent[lo:hi], window, hi - lo)
    # window[k + rel] ~ segment[k]: received index start + k' ~ sent lo + k' - rel
    return score, start - lo + rel


def matchEcho(
    sent: npt.NDArray[np.integer],
    sendTimes: Sequence[float] | npt.NDArray[np.floating[Any]],
    active: npt.NDArray[np.bool_],
    received: npt.NDArray[np.integer],
    blockArrivals: npt.NDArray[np.floating[Any]],
    frame: int,
    shifted: Shifter | None = None,
) -> EchoMatch:
    """
    Match the received stream to the sent one (see the module docstring).

    @param sent: the sent samples (what the gateway decoded).
    @param sendTimes: when each C{frame}-sample frame of C{sent} was sent.
    @param active: per sent frame, whether its echo is expected.
    @param received: the received samples, concatenated in arrival order.
    @param blockArrivals: the arrival time of each C{frame}-sample block of
        C{received} (the arrival of the payload holding its last sample).
    @param frame: samples per 20 ms.
    @param shifted: C{sent} as floats delayed by a fraction of a sample,
        e.g. from a cache shared by calls that sent the same audio.
    """
    times = np.asarray(sendTimes, np.float64)
    frames = min(len(times), len(sent) // frame)
    sentF = np.asarray(sent[: frames * frame], np.float64)
    activeSent = np.asarray(active[:frames], bool)
    count = min(len(received) // frame, len(blockArrivals))
    blocks = np.asarray(received[: count * frame], np.float64).reshape(count, frame)
    energy = np.einsum("ij,ij->i", blocks, blocks)
    loud = energy > QUIET_RMS * QUIET_RMS * frame
    todo = np.flatnonzero(loud)
    lags = np.zeros(count, np.int64)
    resolved = np.zeros(count, bool)
    receivedF = blocks.reshape(-1)
    expected = int(activeSent.sum())
    if not len(todo) or not frames:
        return EchoMatch(np.zeros(0), expected, 0, len(todo), 0, 0, 0, np.flatnonzero(activeSent))
    limit = int(GLOBAL_SECONDS * frame * 50)
    span = int(SEARCH_SECONDS * frame * 50)
    reach = max(span, 3 * frame * 50)
    exact = fractionalLag(sentF[: limit + reach], receivedF[:limit], reach)
    lag = math.floor(exact)
    if exact != lag:
        sentF = (shifted or (lambda f: delayed(sentF, f)))(exact - lag)[: frames * frame]
    # zeros around the sent stream: a block may hold the resampler's run-in
    # before the first sent sample, or silence after the last
    pad = frame + span
    padded = np.concatenate([np.zeros(pad), sentF, np.zeros(pad)])
    firstLag = lag
    seen: set[int] = set()
    searches = 0
    while len(todo):
        scores = _blockCorrelation(blocks, energy, todo, padded, lag, pad)
        good = scores >= MATCH
        if good.any():
            lags[todo[good]] = lag
            resolved[todo[good]] = True
            seen.add(lag)
            todo = todo[~good]
        if not len(todo) or searches >= MAX_SEARCHES:
            break
        searches += 1
        first = int(todo[0])
        score, found = _findLag(sentF, receivedF, first * frame, WINDOW_BLOCKS * frame, lag, span)
        if score < MATCH or found == lag:
            todo = todo[1:]  # this block matches nothing near: give up on it
        else:
            lag = found
    which = np.flatnonzero(resolved)
    wl = lags[which]
    newest = (which + 1) * frame - 1 - wl
    sentFrame = newest // frame
    ok = (sentFrame >= 0) & (sentFrame < frames)
    latencies = blockArrivals[which[ok]] - times[sentFrame[ok]]
    # Unmatched blocks with sound shortly before a run of matches are taken
    # to carry the content just before it: a block holding the seam of a
    # drop, where the resampler blends both sides, then covers what it
    # does carry, and what stays uncovered is what the lag change says was
    # skipped. (Nothing is bridged after the last match: with no later
    # match there is no lag to tell a drop from a pause.)
    gaps = np.flatnonzero(loud & ~resolved)
    # only next to a run of matches: a lone chance match bridges nothing
    steady = resolved & (np.roll(resolved, 1) | np.roll(resolved, -1))
    which = np.flatnonzero(steady)
    if len(gaps) and len(which):
        after = np.searchsorted(which, gaps)
        inside = after < len(which)
        gaps, after = gaps[inside], after[inside]
        nextTo = which[after]
        near = nextTo - gaps <= BRIDGE
        gaps, nextTo = gaps[near], nextTo[near]
    else:
        gaps = nextTo = np.zeros(0, np.int64)
    which = np.concatenate([np.flatnonzero(resolved), gaps])
    wl = np.concatenate([lags[resolved], lags[nextTo]])
    # A sent frame counts as echoed when those blocks carry more than half
    # of its energy: a frame dropped on the way loses (nearly) all of it,
    # while a syllable's quiet onset, too faint to match in its own block,
    # does not make its loud frame count as lost.
    starts = np.clip(which * frame - wl, 0, frames * frame)
    ends = np.clip(starts + frame, 0, frames * frame)
    edges = np.zeros(frames * frame + 1, np.int64)
    np.add.at(edges, starts, 1)
    np.add.at(edges, ends, -1)
    covered = np.cumsum(edges[:-1]) > 0
    power = (sentF * sentF).reshape(frames, frame)
    total = power.sum(axis=1)
    echoedFrames = (power * covered.reshape(frames, frame)).sum(axis=1) > 0.5 * total
    echoed = int((echoedFrames & activeSent).sum())
    return EchoMatch(
        missing=np.flatnonzero(activeSent & ~echoedFrames),
        latencies=latencies,
        expected=expected,
        echoed=echoed,
        blocks=int(loud.sum()),
        matched=int(resolved.sum()),
        lag=firstLag,
        segments=len(seen),
    )


def blockArrivals(
    arrivals: Sequence[float] | npt.NDArray[np.floating[Any]],
    payloadSamples: npt.NDArray[np.int64],
    frame: int,
) -> FloatArray:
    """
    The arrival time of each C{frame}-sample block of the concatenated
    received stream: that of the payload holding the block's last sample.
    """
    ends = np.cumsum(payloadSamples)
    total = int(ends[-1]) if len(ends) else 0
    lastSample = np.arange(1, total // frame + 1) * frame - 1
    holder = np.searchsorted(ends, lastSample, side="right")
    return np.asarray(arrivals, np.float64)[holder]


def interArrival(
    arrivals: Sequence[float] | npt.NDArray[np.floating[Any]],
    payloadSamples: npt.NDArray[np.int64],
    rate: int,
) -> tuple[FloatArray, FloatArray]:
    """
    Gaps between consecutive received payloads and their jitter: how far
    each gap is from the duration of the audio in the payload before it.

    @return: C{(gaps, jitter)} in seconds, one per payload after the first.
    """
    times = np.asarray(arrivals, np.float64)
    if len(times) < 2:
        return np.zeros(0), np.zeros(0)
    gaps = np.diff(times)
    durations = np.asarray(payloadSamples[:-1], np.float64) / rate
    return gaps, np.abs(gaps - durations)


@dataclass(frozen=True)
class Percentiles:
    """
    Summary of a sample of values (seconds in, reported as given).
    """

    count: int
    p50: float | None
    p99: float | None
    max: float | None

    def asDict(self, scale: float = 1.0, digits: int = 3) -> dict[str, float | int | None]:
        """
        JSON-ready, values multiplied by C{scale} (1000 for milliseconds).
        """

        def fmt(value: float | None) -> float | None:
            return None if value is None else round(value * scale, digits)

        return {
            "count": self.count,
            "p50": fmt(self.p50),
            "p99": fmt(self.p99),
            "max": fmt(self.max),
        }


def percentiles(values: FloatArray | Sequence[FloatArray]) -> Percentiles:
    """
    p50, p99 and max of C{values} (one array, or several concatenated).
    """
    if isinstance(values, np.ndarray):
        data = values
    else:
        arrays = [np.asarray(v, np.float64) for v in values]
        data = np.concatenate(arrays) if arrays else np.zeros(0)
    data = data[np.isfinite(data)]
    if not len(data):
        return Percentiles(0, None, None, None)
    p50, p99 = np.percentile(data, [50, 99])
    return Percentiles(len(data), float(p50), float(p99), float(data.max()))
