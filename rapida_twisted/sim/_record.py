# -*- test-case-name: tests.test_sim -*-
"""
What a simulated caller sent and heard, and the provider's playout clock.

L{Recorder} keeps, per call, the time each frame was sent, each piece of
gateway audio as it arrived (content and arrival time, for the echo and
jitter analysis), and where each piece was played (for the WAV of what the
caller heard). L{Playout} models a provider's playback buffer: audio plays
in order at real time, marks are echoed when the audio before them has
played, and C{clear} drops what has not started.

Pure: times are passed in.
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt

from ..media import PCM_DTYPE
from ._audio import WireFormat, resample

__all__ = ["Playout", "Recorder"]

Int16Array = npt.NDArray[np.int16]
_T = TypeVar("_T")

#: Times this close count as equal (float sums of 20 ms steps differ).
_SLACK = 1e-6


class Recorder:
    """
    One call's media record.

    @ivar format: the wire format of the audio received.
    @ivar origin: when the media started (the first frame was sent), or
        L{None} before.
    @ivar sendTimes: the time each frame was sent, by frame index.
    @ivar arrivals: the arrival time of each received audio payload.
    @ivar payloads: the received payloads (wire bytes), in order.
    """

    def __init__(self, fmt: WireFormat) -> None:
        self.format = fmt
        self.origin: float | None = None
        self.sendTimes = array("d")
        self.arrivals = array("d")
        self.payloads: list[bytes] = []
        self.receivedBytes = 0
        # heard timeline: (start time, payload, bytes kept)
        self._heard: list[tuple[float, bytes, int]] = []

    def sent(self, now: float, index: int | None = None) -> None:
        """
        Frame C{index} (by default the next one) went out at C{now}; frames
        skipped before it get a NaN time.
        """
        if self.origin is None:
            self.origin = now
        times = self.sendTimes
        if index is not None and index > len(times):
            times.extend([math.nan] * (index - len(times)))
        times.append(now)

    def received(self, now: float, payload: bytes) -> None:
        """
        Gateway audio arrived at C{now}.
        """
        self.arrivals.append(now)
        self.payloads.append(payload)
        self.receivedBytes += len(payload)

    def play(self, at: float, payload: bytes) -> None:
        """
        Audio starts playing to the caller at C{at}.
        """
        self._heard.append((at, payload, len(payload)))

    def truncate(self, now: float) -> None:
        """
        Playback stopped at C{now}: audio that had not started is not
        heard; the piece playing is cut where it was.
        """
        heard = self._heard
        while heard and heard[-1][0] >= now:
            heard.pop()
        if heard:
            start, payload, kept = heard[-1]
            width = self.format.sampleWidth
            played = round((now - start) * self.format.rate) * width
            if played < kept:
                heard[-1] = (start, payload, max(0, played))

    def receivedSamples(self) -> Int16Array:
        """
        Everything received, decoded and concatenated (the gateway's stream).
        """
        return self.format.decode(b"".join(self.payloads))

    def payloadSamples(self) -> npt.NDArray[np.int64]:
        """
        The number of samples in each received payload.
        """
        sizes = np.fromiter((len(p) for p in self.payloads), np.int64, len(self.payloads))
        return sizes // self.format.sampleWidth

    def heard(self, rate: int | None = None) -> bytes:
        """
        What the caller heard as 16-bit PCM, from L{origin}, each piece at
        the time it played (silence between), resampled to C{rate} (the
        wire rate by default).
        """
        fmt = self.format
        origin = self.origin if self.origin is not None else 0.0
        if not self._heard:
            return b""
        pieces = []
        end = 0
        for start, payload, kept in self._heard:
            samples = fmt.decode(payload[:kept])
            at = max(0, round((start - origin) * fmt.rate))
            pieces.append((at, samples))
            end = max(end, at + len(samples))
        timeline = np.zeros(end, PCM_DTYPE)
        for at, samples in pieces:
            timeline[at : at + len(samples)] = samples
        pcm = timeline.tobytes()
        return pcm if rate is None else resample(pcm, fmt.rate, rate)


class Playout(Generic[_T]):
    """
    A provider's playback buffer on a simulated clock.

    Audio plays in arrival order, each piece from when it arrived (plus
    C{delay} when the buffer had run dry) or when the one before it ends,
    whichever is later. C{delay} and C{maxAhead} model a phone's small
    jitter buffer where the provider buffers nothing (Asterisk AudioSocket
    writes every frame out at once): playback starts C{delay} late so a
    late frame still plays in turn, and a piece arriving while more than
    C{maxAhead} is queued plays at once, over what was playing, as a
    burst sounds on a real call. Marks (any value: a Twilio
    mark name, a Vonage notify payload) become due when the audio queued
    before them has played.
    """

    def __init__(
        self, recorder: Recorder, delay: float = 0.0, maxAhead: float | None = None
    ) -> None:
        self.recorder = recorder
        self.delay = delay
        self.maxAhead = maxAhead
        #: times the buffer ran dry between two pieces (a gap the caller
        #: heard, beyond the expected pauses of the far end)
        self.underruns = 0
        self._started = False
        self.end = 0.0
        self._marks: deque[tuple[float, _T]] = deque()
        self._rate = float(recorder.format.bytesPerSecond)

    @property
    def pendingMarks(self) -> int:
        """
        Marks not yet due.
        """
        return len(self._marks)

    def audio(self, now: float, payload: bytes) -> None:
        """
        Gateway audio arrived at C{now}: record it and queue it for playing.
        """
        recorder = self.recorder
        recorder.received(now, payload)
        end = self.end
        if end < now:
            if self._started and now - end > _SLACK:
                self.underruns += 1
            start = now + self.delay
        elif self.maxAhead is not None and end - now > self.maxAhead:
            start = now
        else:
            start = end
        recorder.play(start, payload)
        self._started = True
        self.end = start + len(payload) / self._rate

    def mark(self, now: float, value: _T) -> bool:
        """
        Queue a mark behind the audio queued so far.

        @return: whether it is due at once (nothing left to play); if so it
            is not queued.
        """
        if self.end <= now and not self._marks:
            return True
        self._marks.append((max(self.end, now), value))
        return False

    def due(self, now: float) -> list[_T]:
        """
        The marks whose audio has played by C{now}, oldest first.
        """
        marks = self._marks
        now += _SLACK
        if not marks or marks[0][0] > now:
            return []
        out = []
        while marks and marks[0][0] <= now:
            out.append(marks.popleft()[1])
        return out

    def clear(self, now: float) -> list[_T]:
        """
        Drop what has not played; every pending mark is due at once.
        """
        if self.end > now:
            self.recorder.truncate(now)
        self.end = now
        out = [value for _, value in self._marks]
        self._marks.clear()
        return out
