# -*- test-case-name: tests.test_sim -*-
"""
What every simulated transport shares: the call plan and options, the
media stream state machine (frames on the shared ticker, DTMF, hang-up,
close), the errors, and the result of a call.

A L{MediaStream} is the provider's side of one media connection. It is
driven by three things only: the L{Ticker} (C{tick(now)}), the
connection (C{opened(channel)}, C{messageReceived}, C{closed}) and its
clock, so tests run it on a C{task.Clock} with a fake channel.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ._analysis import (
    EchoMatch,
    FloatArray,
    blockArrivals,
    echoCorrelation,
    interArrival,
    matchEcho,
    percentiles,
)
from ._audio import FRAME_SECONDS, PreparedAudio
from ._record import Recorder
from ._ticker import FrameClock, Ticker

__all__ = [
    "CallOptions",
    "CallPlan",
    "CallResult",
    "Channel",
    "HandshakeError",
    "MediaStream",
    "SimError",
    "WebhookError",
]


class SimError(Exception):
    """
    A simulated call could not go on; C{str()} is the failure reason.
    """


class WebhookError(SimError):
    """
    The gateway's webhook refused the call or answered something unusable.
    """


class HandshakeError(SimError):
    """
    The media connection could not be opened (refused, HTTP error status).
    """


class Channel(Protocol):
    """
    Where a L{MediaStream} writes: a WebSocket (text and binary messages)
    or, for AudioSocket, a TCP connection (C{sendBinary} writes bytes).
    """

    def sendText(self, text: str) -> None:
        """
        Send one text message.
        """

    def sendBinary(self, data: bytes) -> None:
        """
        Send one binary message (or raw bytes on TCP).
        """

    def close(self, code: int = 1000, reason: str = "") -> None:
        """
        Close the connection (idempotent).
        """


@dataclass(frozen=True)
class CallPlan:
    """
    What the simulated caller does once media flows.

    @ivar dtmf: digits to press, in order.
    @ivar dtmfAt: seconds after the first frame to press the first digit.
    @ivar dtmfInterval: seconds between digits.
    @ivar linger: seconds of silence sent after the audio, so the last
        echo can come back before hanging up.
    @ivar hangupFrame: AudioSocket: send C{00 00 00} before closing (a
        real Asterisk just closes).
    """

    dtmf: str = ""
    dtmfAt: float = 1.0
    dtmfInterval: float = 0.3
    linger: float = 1.0
    hangupFrame: bool = False


@dataclass(frozen=True)
class CallOptions:
    """
    Everything a simulated call needs to know besides its audio.

    @ivar gateway: the gateway's base URL, e.g. C{http://127.0.0.1:8080}
        (the URL providers use: webhooks are signed over it).
    @ivar authToken: Twilio: sign webhooks and the media upgrade with it.
    @ivar token: send this per-call token on the stream instead of the
        one the gateway issued (to test refusals).
    @ivar signatureSecret: Vonage: sign the answer webhook (HS256 JWT).
    @ivar username: Exotel: HTTP Basic user for the stream (else the one
        in the answered URL, if any).
    @ivar rate: the wire sample rate where the transport has a choice
        (Vonage 8000/16000, Exotel 8000/16000/24000, AudioSocket slin
        rates); L{None} for the transport's default.
    @ivar chunkMs: Exotel: milliseconds of audio per C{media} message.
    @ivar codec: chan_websocket: C{ulaw}, C{alaw}, C{slin} or C{slin16}.
    @ivar controlFormat: chan_websocket: C{plain-text} or C{json}.
    @ivar timeout: seconds allowed for the webhook and for connecting.
    """

    gateway: str
    assistant: str = "echo"
    caller: str = "+15551230000"
    callee: str = "+15557650000"
    plan: CallPlan = field(default_factory=CallPlan)
    authToken: str | None = None
    token: str | None = None
    signatureSecret: str | None = None
    username: str | None = None
    password: str | None = None
    rate: int | None = None
    chunkMs: int = 20
    audiosocketHost: str | None = None
    audiosocketPort: int = 4573
    codec: str = "ulaw"
    controlFormat: str = "plain-text"
    timeout: float = 10.0


class MediaStream:
    """
    The provider's side of one media connection (base class).

    Subclasses implement L{started} (first messages), L{sendFrame},
    L{sendDtmf}, L{received} (gateway messages), L{goodbye} (the caller
    hangs up) and may use L{ticked} (per-tick work such as due marks).

    @ivar done: fires (with L{None}) once the connection has closed.
    @ivar failure: the first failure reason, or L{None}.
    @ivar endedBy: C{"caller"} when we hung up, C{"gateway"} when it
        closed or hung up first, L{None} while up.
    @ivar counters: message counts (C{dtmf}, C{marks}, C{clears},
        C{bad}, C{unknown}, ...).
    """

    transport: ClassVar[str] = ""
    _log = Logger()

    def __init__(
        self, clock: IReactorTime, ticker: Ticker, audio: PreparedAudio, plan: CallPlan
    ) -> None:
        self.clock = clock
        self.ticker = ticker
        self.audio = audio
        self.plan = plan
        self.recorder = Recorder(audio.format)
        self.frames = FrameClock()
        self.totalFrames = len(audio) + math.ceil(plan.linger / FRAME_SECONDS - 1e-9)
        self.done: Deferred[None] = Deferred()
        self.failure: str | None = None
        self.endedBy: str | None = None
        self.closeCode: int | None = None
        self.closeReason = ""
        self.counters: Counter[str] = Counter()
        self.channel: Channel | None = None
        self._handle: int | None = None
        self._digits = 0
        self._hungUp = False
        self._closed = False

    # -- lifecycle ---------------------------------------------------------

    def opened(self, channel: Channel) -> None:
        """
        The connection is up: send the opening messages and join the ticker.
        """
        self.channel = channel
        self.started()
        if not self._closed and not self._hungUp:
            self._handle = self.ticker.add(self.tick)

    def tick(self, now: float) -> None:
        """
        The shared ticker's call: send the frames due, the digits due, then
        L{ticked}; hang up after the last frame.
        """
        frames = self.frames
        owed = frames.owed(now)
        for _ in range(owed):
            index = frames.take()
            if index >= self.totalFrames:
                self.hangup()
                return
            self.sendFrame(index, now)
            self.recorder.sent(now, index)
        digits = self.plan.dtmf
        if self._digits < len(digits) and frames.origin is not None:
            due = frames.origin + self.plan.dtmfAt + self._digits * self.plan.dtmfInterval
            if now >= due - 1e-6:
                self.sendDtmf(digits[self._digits])
                self._digits += 1
                self.counters["dtmf"] += 1
        self.ticked(now, owed)

    def hangup(self, by: str = "caller") -> None:
        """
        End the call from our side (idempotent): the caller hangs up, or,
        C{by="gateway"}, the gateway asked us to.
        """
        if self._hungUp or self._closed:
            return
        self._hungUp = True
        self.endedBy = by
        self._leaveTicker()
        self.goodbye()

    def closed(self, code: int | None, reason: str) -> None:
        """
        The connection closed (by either side); fires L{done}.
        """
        if self._closed:
            return
        self._closed = True
        self._leaveTicker()
        self.closeCode, self.closeReason = code, reason or ""
        if not self._hungUp:
            self.endedBy = "gateway"
            detail = f"code {code}" if code is not None else "connection lost"
            self.fail(f"gateway ended the call early ({detail}{': ' + reason if reason else ''})")
        if not self.done.called:  # a call given up on timed it out already
            self.done.callback(None)

    def fail(self, reason: str) -> None:
        """
        Record a failure (the first one is kept).
        """
        if self.failure is None:
            self.failure = reason
            self._log.info(
                "{transport} simulated call failed: {reason}",
                transport=self.transport,
                reason=reason,
            )

    def protocolError(self, reason: str) -> None:
        """
        The gateway sent something a real provider would refuse: count it
        and record it as the failure.
        """
        self.counters["bad"] += 1
        self.fail(reason)

    def _leaveTicker(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            self.ticker.remove(handle)

    def messageReceived(self, data: bytes, isBinary: bool) -> None:
        """
        A message from the gateway (ignored once we hung up).
        """
        if self._hungUp or self._closed:
            return
        self.received(data, isBinary)

    @property
    def underruns(self) -> int:
        """
        Gaps the caller heard because gateway audio came too late for the
        provider's playback (see L{Playout.underruns}).
        """
        playout = getattr(self, "playout", None)
        return playout.underruns if playout is not None else 0

    def frameIndexPayload(self, index: int) -> bytes:
        """
        The wire payload of frame C{index}: audio, then silence.
        """
        audio = self.audio
        return audio.frames[index] if index < len(audio) else audio.format.silence

    # -- transport hooks ---------------------------------------------------

    def started(self) -> None:
        """
        Send the opening messages.
        """

    def sendFrame(self, index: int, now: float) -> None:
        """
        Send frame C{index}.
        """
        raise NotImplementedError

    def sendDtmf(self, digit: str) -> None:
        """
        Press C{digit}.
        """
        raise NotImplementedError

    def ticked(self, now: float, frames: int) -> None:
        """
        Per-tick work after sending (C{frames} frames were due).
        """

    def received(self, data: bytes, isBinary: bool) -> None:
        """
        Handle a message from the gateway.
        """
        raise NotImplementedError

    def goodbye(self) -> None:
        """
        Hang up: final messages, then close.
        """
        if self.channel is not None:
            self.channel.close(1000, "")


@dataclass
class CallResult:
    """
    One simulated call, after it ended.

    @ivar failure: why it failed, L{None} if it went as planned.
    @ivar contextId: the gateway's call context, when the webhook told.
    """

    transport: str
    failure: str | None = None
    contextId: str | None = None
    stream: MediaStream | None = None
    webhookSeconds: float | None = None
    _echo: EchoMatch | None = field(default=None, repr=False)
    _jitter: tuple[FloatArray, FloatArray] | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """
        Whether the call went as planned.
        """
        return self.failure is None

    @property
    def framesSent(self) -> int:
        """
        Frames sent (audio and trailing silence).
        """
        if self.stream is None:
            return 0
        return int(np.isfinite(np.asarray(self.stream.recorder.sendTimes)).sum())

    @property
    def framesReceived(self) -> int:
        """
        20 ms frames of gateway audio received.
        """
        if self.stream is None:
            return 0
        recorder = self.stream.recorder
        return recorder.receivedBytes // recorder.format.frameBytes

    @property
    def counters(self) -> Counter[str]:
        """
        The stream's message counters (empty if it never connected).
        """
        return self.stream.counters if self.stream is not None else Counter()

    def echo(self) -> EchoMatch | None:
        """
        The received audio matched to the sent audio (computed once), or
        L{None} if there was no media.
        """
        stream = self.stream
        if stream is None or not stream.recorder.sendTimes:
            return None
        if self._echo is None:
            recorder = stream.recorder
            fmt = recorder.format
            self._echo = matchEcho(
                stream.audio.reference,
                np.asarray(recorder.sendTimes),
                stream.audio.active,
                recorder.receivedSamples(),
                blockArrivals(recorder.arrivals, recorder.payloadSamples(), fmt.frameSamples),
                fmt.frameSamples,
                stream.audio.shifted,
            )
        return self._echo

    def jitter(self) -> tuple[FloatArray, FloatArray]:
        """
        Inter-arrival gaps and jitter of the received audio, seconds.
        """
        if self._jitter is None:
            if self.stream is None:
                self._jitter = (np.zeros(0), np.zeros(0))
            else:
                recorder = self.stream.recorder
                self._jitter = interArrival(
                    recorder.arrivals, recorder.payloadSamples(), recorder.format.rate
                )
        return self._jitter

    def heard(self, rate: int | None = None) -> bytes:
        """
        What the caller heard (16-bit PCM at C{rate}, default the wire rate).
        """
        return self.stream.recorder.heard(rate) if self.stream is not None else b""

    def correlation(self) -> tuple[float, float]:
        """
        How well what the caller heard matches what it said, for the echo
        assistant: C{(coefficient, lag in seconds)}, scored in quarter-second
        windows (see L{echoCorrelation}).
        """
        stream = self.stream
        if stream is None:
            return 0.0, 0.0
        rate = stream.recorder.format.rate
        pcm = np.frombuffer(stream.recorder.heard(), np.int16)
        score, lag = echoCorrelation(stream.audio.reference, pcm, 2 * rate, window=rate // 4)
        return score, lag / rate

    def summary(self) -> dict[str, Any]:
        """
        The call as a JSON-ready dictionary (times in milliseconds).
        """
        echo = self.echo()
        gaps, jitter = self.jitter()
        out: dict[str, Any] = {
            "transport": self.transport,
            "ok": self.ok,
            "failure": self.failure,
            "contextId": self.contextId,
            "framesSent": self.framesSent,
            "framesReceived": self.framesReceived,
            "jitterMs": percentiles(jitter).asDict(1000),
            "gapMs": percentiles(gaps).asDict(1000),
            "counters": dict(self.counters),
        }
        if echo is not None:
            out["echo"] = {
                "expected": echo.expected,
                "echoed": echo.echoed,
                "lost": echo.lost,
                "latencyMs": percentiles(echo.latencies).asDict(1000),
                "lagMs": round(echo.lag * 1000 / self.stream.recorder.format.rate, 3)
                if self.stream is not None
                else None,
                "segments": echo.segments,
            }
        if self.stream is not None:
            out["closeCode"] = self.stream.closeCode
            out["closeReason"] = self.stream.closeReason
            out["skippedFrames"] = self.stream.frames.skipped
            out["underruns"] = self.stream.underruns
        return out
