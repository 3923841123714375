# -*- test-case-name: tests.test_call_session -*-
"""
The one call session between every provider transport and an assistant
(SPEC §2, §6, §7).

A provider adapter builds a L{CallSession} once it knows the wire format
and feeds it its call's events (C{start}, C{audioReceived},
C{dtmfReceived}, C{markAcknowledged}, C{ended}); the session talks back
through the adapter's L{ICallTransport}. The assistant gets the session as
its L{ICallControl}.

Caller audio: wire bytes of any chunking → exact 20 ms wire frames →
decoded → resampled to the assistant's rate → one canonical 20 ms frame
each → the assistant.

Assistant audio: queued per response, in response order; the response
at the head is resampled to the wire rate, encoded and cut into wire
frames as it arrives. Paced transports get exactly one frame per pacer
tick; the others get frames as soon as they come, but never more than
C{maxLead} seconds ahead of what the caller can have heard. After each
response (and each named mark) comes a marker: transports with marks get
a provider mark and the acknowledgement reports completion; paced
transports report it when the pacer has sent the response's last frame;
other transports when the frames sent before it have had time to play.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Final

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from zope.interface import implementer

from ..interfaces import IAssistant, IAssistantSession, ICallControl, ICallTransport
from ..media.framer import Framer
from ..media.pacer import Pacer, PacerFactory, PacerLike
from ..media.resample import Resampler
from ..store._model import CallContext
from ._events import EventLog
from ._format import AudioFormat, CallDetails

__all__ = ["CANONICAL_FRAME_MS", "CallSession", "SessionStats"]

#: the duration of every frame the assistant receives
CANONICAL_FRAME_MS: Final = 20

#: idle pacer ticks (nothing to send, no silence wanted) before the pacer
#: stops; a restart after this long can never put two frames closer than
#: one interval
IDLE_TICKS: Final = 10

#: once a non-paced transport is C{maxLead} ahead, sending resumes when
#: it is this much below (so frames go out in small batches, not one
#: timer per frame)
RESUME_SLACK: Final = 0.2

#: response ids remembered as finished (late audio for them is dropped)
MAX_FINISHED: Final = 4096

_NEW, _RUNNING, _ENDED = "new", "running", "ended"


class _Marker:
    """
    A position in the outbound queue: a response's end or a named mark.
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class _Response:
    """
    A response waiting behind the one playing: its canonical audio so far
    and whether the assistant has completed it.
    """

    __slots__ = ("chunks", "completed", "id")

    def __init__(self, responseId: str) -> None:
        self.id = responseId
        self.chunks: list[bytes] = []
        self.completed = False


@dataclass(slots=True)
class SessionStats:
    """
    One call's counters.

    @ivar framesIn: caller frames handed (or queued) to the assistant.
    @ivar framesOut: audio frames sent to the transport.
    @ivar silenceOut: silence frames a paced transport asked for.
    @ivar inboundDropped: caller frames dropped from the bounded queue
        (the oldest, while the assistant was not ready).
    @ivar outboundDropped: assistant frames dropped because the output
        bound was reached (the oldest queued, or the newest of a waiting
        response).
    @ivar lateAudio: C{play} calls for a response already completed or
        cleared (dropped).
    @ivar unknownAcks: mark acknowledgements for no pending mark (for
        example echoes of marks flushed by a clear).
    @ivar clears: barge-ins.
    """

    framesIn: int = 0
    framesOut: int = 0
    silenceOut: int = 0
    inboundDropped: int = 0
    outboundDropped: int = 0
    lateAudio: int = 0
    unknownAcks: int = 0
    clears: int = 0


@implementer(ICallControl)
class CallSession:
    """
    One call, for every provider.

    @param clock: timers and the playout clock.
    @param gateway: the L{rapida_twisted.gateway.Gateway} (store, metrics).
    @param context: the claimed call context.
    @param transport: the provider adapter's wire side; its
        C{audioFormat} must be set by the time L{start} is called. An
        optional boolean attribute C{needsSilence} asks a paced transport
        for silence frames whenever nothing is queued.
    @param assistant: who answers the call.
    @param pacer: makes the pacer of a paced transport (default: a
        L{Pacer} of its own on C{clock}; pass C{group.pacer} of a shared
        L{rapida_twisted.media.pacer.PacerGroup} at scale).
    @param maxOutput: seconds of assistant audio held at most.
    @param maxInbound: caller frames held at most while the assistant
        session is not ready.
    @param maxLead: seconds a non-paced transport may be sent ahead of
        real time.

    @ivar stats: a L{SessionStats}.
    @ivar details: the L{CallDetails} the assistant got (after L{start}).
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        gateway: Any,
        context: CallContext,
        transport: ICallTransport,
        assistant: IAssistant,
        *,
        pacer: PacerFactory | None = None,
        maxOutput: float = 60.0,
        maxInbound: int = 50,
        maxLead: float = 1.0,
    ) -> None:
        self._clock = clock
        self._gateway = gateway
        self.context = context
        self._transport = transport
        self._assistant = assistant
        self._pacerFactory = pacer
        self._maxOutput = maxOutput
        self._maxLead = maxLead
        self.stats = SessionStats()
        self.events = EventLog(gateway, context.context_id)
        self.details: CallDetails | None = None
        self._state = _NEW
        #: start() has built the media pipelines (framers, resamplers)
        self._started = False
        self._hungUp = False
        self.endReason = ""
        metrics = gateway.metrics
        self._droppedIn = metrics.framesDropped.labels("inbound")
        self._droppedOut = metrics.framesDropped.labels("outbound")
        # the assistant side
        self._assistantSession: Any = None
        self._starting: Deferred[Any] | None = None
        self._pendingAudio: deque[bytes] = deque(maxlen=max(1, maxInbound))
        self._pendingCalls: list[tuple[str, str]] = []
        # outbound: what is queued for the wire, in order
        self._out: deque[bytes | _Marker] = deque()
        self._outFrames = 0
        self._active: _Response | None = None
        self._waiting: deque[_Response | _Marker] = deque()
        self._waitingById: dict[str, _Response] = {}
        self._waitingBytes = 0
        self._finished: dict[str, None] = {}
        self._outCarry = b""
        # playback tracking
        self._acks: dict[str, _Marker] = {}
        self._markSeq = 0
        self._timers: dict[_Marker, IDelayedCall] = {}
        self._playoutEnd = 0.0
        self._resume: IDelayedCall | None = None
        self._pacer: PacerLike | None = None
        self._idle = 0

    # --- adapter → session -------------------------------------------------

    def start(self) -> None:
        """
        The wire format is known (C{transport.audioFormat}): set up the
        media pipelines, record the C{start} event and start the
        assistant's session. Only the first call does anything.

        @raise rapida_twisted.call.FormatError: the transport's format
            cannot be converted to the assistant's rate.
        """
        if self._state is not _NEW:
            return
        transport = self._transport
        wire: AudioFormat = transport.audioFormat
        rate = int(self._assistant.sampleRate)
        canonical = AudioFormat("l16", rate, CANONICAL_FRAME_MS)
        self._wire = wire
        self._started = True
        # inbound: 20 ms of wire audio becomes exactly one canonical frame
        self._inBytes = wire.bytesFor(CANONICAL_FRAME_MS)
        self._inFramer = Framer(self._inBytes, wire.silence)
        self._inResampler = Resampler(wire.sampleRate, rate)
        self._inPassthrough = wire.codec == "l16" and wire.sampleRate == rate
        # outbound
        self._outResampler = Resampler(rate, wire.sampleRate)
        self._outPassthrough = wire.codec == "l16" and wire.sampleRate == rate
        self._outFramer = Framer(wire.frameBytes, wire.silence)
        self._frameBytes = wire.frameBytes
        self._frameSeconds = wire.frameMs / 1000.0
        self._maxOutFrames = max(1, int(self._maxOutput * 1000) // wire.frameMs)
        self._maxWaitingBytes = int(self._maxOutput * canonical.bytesFor(1000))
        self._canonicalFrameBytes = canonical.bytesFor(wire.frameMs)
        self._supportsMarks = bool(transport.supportsMarks)
        self._paced = bool(transport.paced)
        self._needsSilence = bool(getattr(transport, "needsSilence", False))
        if self._paced:
            factory = self._pacerFactory
            if factory is None:
                clock = self._clock
                self._pacer = Pacer(clock, self._tick)
            else:
                self._pacer = factory(self._tick)
        context = self.context
        self.details = details = CallDetails.fromContext(context, rate)
        self._state = _RUNNING
        self._gateway.sessions.add(self)
        self.events.append(
            "gateway",
            "start",
            {
                "codec": wire.codec,
                "sample_rate": wire.sampleRate,
                "assistant_id": context.assistant_id,
                "assistant_rate": rate,
            },
        )
        self._gateway.metrics.activeCalls.labels(context.provider).inc()
        self._log.info(
            "call {context_id} started: {provider} {codec}/{sample_rate} to assistant"
            " {assistant_id} at {assistant_rate} Hz",
            context_id=context.context_id,
            provider=context.provider,
            codec=wire.codec,
            sample_rate=wire.sampleRate,
            assistant_id=context.assistant_id,
            assistant_rate=rate,
        )
        if self._pacer is not None and self._needsSilence:
            self._pacer.start()
        try:
            result = self._assistant.startSession(details, self)
        except Exception:
            self._assistantFailed(Failure())
            return
        if isinstance(result, Deferred):
            self._starting = result
            result.addCallbacks(self._assistantReady, self._assistantFailed)
        else:
            self._assistantReady(result)

    def audioReceived(self, data: bytes) -> None:
        """
        Caller audio in the wire format, in chunks of any size.
        """
        if self._state is not _RUNNING:
            return
        framer = self._inFramer
        if len(data) == self._inBytes and not framer.pending:
            self._callerFrame(data)
        else:
            for frame in framer.push(data):
                self._callerFrame(frame)

    def _callerFrame(self, frame: bytes) -> None:
        if self._inPassthrough:
            pcm = frame
        else:
            pcm = self._wire.toCanonical(frame, self._inResampler)
        self.stats.framesIn += 1
        session = self._assistantSession
        if session is None:
            pending = self._pendingAudio
            if len(pending) == pending.maxlen:
                self.stats.inboundDropped += 1
                self._droppedIn.inc()
            pending.append(pcm)
            return
        try:
            session.audioReceived(pcm)
        except Exception:
            self._assistantError("audioReceived")

    def dtmfReceived(self, digit: str) -> None:
        """
        One DTMF digit from the caller: a C{dtmf} event, then the assistant.
        """
        if self._state is not _RUNNING:
            return
        self.events.append("provider", "dtmf", {"digit": digit})
        self._toAssistant("dtmf", digit)

    def markAcknowledged(self, name: str) -> None:
        """
        The provider played everything before the mark C{name} (the name
        the session gave C{transport.sendMark}). Reports every pending
        mark up to and including it, in order; unknown names (such as
        marks a clear flushed) are counted and ignored.
        """
        acks = self._acks
        if name not in acks:
            self.stats.unknownAcks += 1
            return
        while acks:
            key = next(iter(acks))
            marker = acks.pop(key)
            self._completed(marker, "provider")
            if key == name:
                break

    def ended(self, reason: str, outcome: str = "completed", source: str = "provider") -> None:
        """
        The call is over (stream stopped, socket closed, hung up). Only
        the first call does anything: stops sending, records the C{ended}
        event, finishes the context with C{outcome} (C{completed} or
        C{failed}) and tells the assistant once.
        """
        if self._state is _ENDED:
            return
        wasRunning = self._state is _RUNNING
        self._state = _ENDED
        self.endReason = reason
        self._stopOutput()
        self._pendingAudio.clear()
        self._pendingCalls.clear()
        context = self.context
        self.events.append(source, "ended", {"reason": reason, "outcome": outcome})
        self.events.run("finish", self._gateway.store.finish, context.context_id, outcome, reason)
        metrics = self._gateway.metrics
        if wasRunning:
            metrics.activeCalls.labels(context.provider).dec()
            sessions = self._gateway.sessions
            self.events.flushed().addBoth(lambda _: sessions.discard(self))
        metrics.calls.labels(context.provider, outcome).inc()
        self._log.info(
            "call {context_id} ended ({outcome}): {reason}; {frames_in} frames in,"
            " {frames_out} out, {dropped_in} in dropped, {dropped_out} out dropped",
            context_id=context.context_id,
            outcome=outcome,
            reason=reason,
            frames_in=self.stats.framesIn,
            frames_out=self.stats.framesOut,
            dropped_in=self.stats.inboundDropped,
            dropped_out=self.stats.outboundDropped,
        )
        session, self._assistantSession = self._assistantSession, None
        if session is not None:
            self._endAssistant(session)

    # --- the assistant side --------------------------------------------------

    def _assistantReady(self, session: Any) -> None:
        self._starting = None
        if self._state is _ENDED:
            self._endAssistant(session)
            return
        self._assistantSession = session
        pending = self._pendingAudio
        while pending and self._assistantSession is session:
            try:
                session.audioReceived(pending.popleft())
            except Exception:
                self._assistantError("audioReceived")
        calls, self._pendingCalls = self._pendingCalls, []
        for kind, arg in calls:
            self._toAssistant(kind, arg)

    def _assistantFailed(self, failure: Failure) -> None:
        self._starting = None
        self._log.failure(
            "assistant {assistant_id} failed to start for call {context_id}",
            failure,
            LogLevel.error,
            assistant_id=self.context.assistant_id,
            context_id=self.context.context_id,
        )
        if self._state is _ENDED:
            return
        self.events.append(
            "gateway",
            "error",
            {"reason": "assistant_failed", "message": failure.getErrorMessage()},
        )
        self.hangup("assistant failed to start", source="gateway")

    def _toAssistant(self, kind: str, arg: str) -> None:
        """
        Deliver a DTMF digit (C{"dtmf"}) or a completion (C{"done"}),
        holding it while the assistant session is not ready.
        """
        session = self._assistantSession
        if session is None:
            if self._state is _RUNNING:
                self._pendingCalls.append((kind, arg))
            return
        try:
            if kind == "dtmf":
                session.dtmfReceived(arg)
            else:
                session.playbackCompleted(arg)
        except Exception:
            self._assistantError("dtmfReceived" if kind == "dtmf" else "playbackCompleted")

    def _endAssistant(self, session: IAssistantSession) -> None:
        try:
            session.callEnded(self.endReason)
        except Exception:
            self._assistantError("callEnded")

    def _assistantError(self, method: str) -> None:
        self._log.failure(
            "assistant {assistant_id} failed in {method} for call {context_id}",
            level=LogLevel.error,
            assistant_id=self.context.assistant_id,
            method=method,
            context_id=self.context.context_id,
        )

    # --- ICallControl --------------------------------------------------------

    def play(self, responseId: str, pcm: bytes) -> None:
        """
        Queue canonical audio of one response (see L{ICallControl.play}).
        """
        if self._state is not _RUNNING:
            return
        active = self._active
        if active is not None and active.id == responseId:
            self._feed(pcm)
            return
        if responseId in self._finished:
            self.stats.lateAudio += 1
            return
        if active is None:
            self._active = _Response(responseId)
            self._feed(pcm)
            return
        waiting = self._waitingById.get(responseId)
        if waiting is None:
            waiting = self._waitingById[responseId] = _Response(responseId)
            self._waiting.append(waiting)
        if self._waitingBytes + len(pcm) > self._maxWaitingBytes:
            dropped = max(1, len(pcm) // self._canonicalFrameBytes)
            self.stats.outboundDropped += dropped
            self._droppedOut.inc(dropped)
            return
        waiting.chunks.append(bytes(pcm))
        self._waitingBytes += len(pcm)

    def completeResponse(self, responseId: str) -> None:
        """
        No more audio for C{responseId}; its completion is reported after
        every response queued before it.
        """
        if self._state is not _RUNNING or responseId in self._finished:
            return
        self._finish(responseId)
        active = self._active
        if active is not None and active.id == responseId:
            self._finishActive()
            self._advance()
        elif active is None:
            self._enqueue((), _Marker(responseId))
        else:
            waiting = self._waitingById.get(responseId)
            if waiting is None:
                waiting = self._waitingById[responseId] = _Response(responseId)
                self._waiting.append(waiting)
            waiting.completed = True

    def mark(self, name: str) -> None:
        """
        A named mark after the audio queued so far (after the audio of
        the playing response received so far, or after every waiting
        response).
        """
        if self._state is not _RUNNING:
            return
        marker = _Marker(name)
        if self._waiting:
            self._waiting.append(marker)
        else:
            self._enqueue((), marker)

    def clear(self) -> None:
        """
        Barge-in, in one step: drop every queued frame and response (their
        ids are finished: later audio for them is dropped), forget the
        resampler's history and pending marks (their acknowledgements are
        ignored), ask the transport to flush the provider's buffer, and
        record a C{clear} event.
        """
        if self._state is not _RUNNING:
            return
        dropped = self._outFrames
        active = self._active
        if active is not None:
            self._finish(active.id)
        for item in self._waiting:
            if type(item) is _Response:
                self._finish(item.id)
        self._stopOutput()
        self._outResampler.reset()
        self._playoutEnd = 0.0
        self.stats.clears += 1
        try:
            self._transport.sendClear()
        finally:
            self.events.append("assistant", "clear", {"frames": dropped})

    def sendDtmf(self, digits: str) -> None:
        """
        Send DTMF digits to the caller where the transport can (one
        C{dtmf} event each, source assistant).
        """
        if self._state is not _RUNNING:
            return
        for digit in digits:
            if not self._transport.sendDtmf(digit):
                self._log.warn(
                    "call {context_id}: the transport cannot send DTMF",
                    context_id=self.context.context_id,
                )
                return
            self.events.append("assistant", "dtmf", {"digit": digit})

    def transfer(self, target: str) -> Deferred[bool]:
        """
        Ask the transport to transfer the call; fires with its answer.
        """
        if self._state is not _RUNNING:
            return defer.succeed(False)
        self._log.info(
            "call {context_id}: assistant transfers to {target}",
            context_id=self.context.context_id,
            target=target,
        )
        return defer.maybeDeferred(self._transport.transfer, target)

    def hangup(self, reason: str = "assistant", source: str = "assistant") -> None:
        """
        End the call from either side (idempotent): a C{hangup} event, the
        transport hangs up, and the session ends.
        """
        if self._hungUp or self._state is _ENDED:
            return
        self._hungUp = True
        self.events.append(source, "hangup", {"reason": reason})
        try:
            self._transport.hangup(reason)
        except Exception:
            self._log.failure(
                "transport hangup failed for call {context_id}",
                level=LogLevel.error,
                context_id=self.context.context_id,
            )
        self.ended(reason, "completed", source=source)

    # --- outbound queue --------------------------------------------------------

    def _finish(self, responseId: str) -> None:
        finished = self._finished
        finished[responseId] = None
        if len(finished) > MAX_FINISHED:
            del finished[next(iter(finished))]

    def _feed(self, pcm: bytes) -> None:
        """
        Canonical audio of the playing response → wire frames queued.
        """
        if not pcm:
            return
        if self._outCarry or len(pcm) & 1:
            pcm = self._outCarry + bytes(pcm)
            cut = len(pcm) & ~1
            self._outCarry = pcm[cut:]
            pcm = pcm[:cut]
        if self._outPassthrough:
            wire = bytes(pcm)
        else:
            wire = self._wire.fromCanonical(pcm, self._outResampler)
        framer = self._outFramer
        if len(wire) == self._frameBytes and not framer.pending:
            if self._out or self._pacer is not None or self._resume is not None:
                self._enqueue((wire,))
                return
            # one frame, nothing queued, not paced, not held back: what
            # _enqueue and _drain would do, without the queue
            now = self._clock.seconds()
            playout = self._playoutEnd
            if playout < now:
                playout = now
            if playout >= now + self._maxLead - 1e-6:
                self._enqueue((wire,))  # _drain holds it back
                return
            self._transport.sendAudio(wire)
            self.stats.framesOut += 1
            self._playoutEnd = playout + self._frameSeconds
        else:
            frames = framer.push(wire)
            if frames:
                self._enqueue(frames)

    def _finishActive(self) -> None:
        """
        The playing response is complete: its padded tail frame and its
        marker are queued.
        """
        active = self._active
        assert active is not None
        self._active = None
        self._outCarry = b""
        tail = self._outFramer.flush()
        self._enqueue(() if tail is None else (tail,), _Marker(active.id))

    def _advance(self) -> None:
        """
        Start the next waiting responses (and marks) while nothing plays.
        """
        waiting = self._waiting
        while self._active is None and waiting:
            item = waiting.popleft()
            if type(item) is _Marker:
                self._enqueue((), item)
                continue
            assert type(item) is _Response
            del self._waitingById[item.id]
            self._active = item
            chunks, item.chunks = item.chunks, []
            for chunk in chunks:
                self._waitingBytes -= len(chunk)
                self._feed(chunk)
            if item.completed:
                self._finishActive()

    def _enqueue(
        self, frames: tuple[bytes, ...] | list[bytes], marker: _Marker | None = None
    ) -> None:
        out = self._out
        if frames:
            out.extend(frames)
            self._outFrames += len(frames)
            if self._outFrames > self._maxOutFrames:
                self._trim()
        if marker is not None:
            out.append(marker)
        pacer = self._pacer
        if pacer is None:
            self._drain()
        else:
            self._idle = 0
            if not pacer.running:
                pacer.start()

    def _trim(self) -> None:
        """
        Drop the oldest queued frames beyond the output bound (a marker
        whose audio is dropped counts as reached).
        """
        out = self._out
        excess = self._outFrames - self._maxOutFrames
        dropped = 0
        while excess > dropped and out:
            item = out.popleft()
            if type(item) is bytes:
                dropped += 1
            else:
                assert type(item) is _Marker
                self._reached(item, 0.0)
        self._outFrames -= dropped
        self.stats.outboundDropped += dropped
        self._droppedOut.inc(dropped)

    def _drain(self) -> None:
        """
        Non-paced transports: send what is queued, up to C{maxLead}
        seconds ahead of the estimated playout.
        """
        out = self._out
        if not out or self._resume is not None:
            return
        now = self._clock.seconds()
        playout = self._playoutEnd
        if playout < now:
            playout = now
        # a hair under the limit: float sums of 20 ms steps are inexact
        limit = now + self._maxLead - 1e-6
        step = self._frameSeconds
        send = self._transport.sendAudio
        sent = 0
        while out:
            item = out[0]
            if type(item) is bytes:
                if playout >= limit:
                    self._resume = self._clock.callLater(
                        playout - limit + RESUME_SLACK, self._resumeDrain
                    )
                    break
                out.popleft()
                sent += 1
                send(item)
                playout += step
            else:
                out.popleft()
                assert type(item) is _Marker
                self._outFrames -= sent
                self.stats.framesOut += sent
                sent = 0
                self._playoutEnd = playout
                self._reached(item, playout)
                # the assistant may have played, cleared or hung up meanwhile
                if self._resume is not None or self._state is not _RUNNING:
                    return
                playout = self._playoutEnd
                if playout < now:
                    playout = now
        self._outFrames -= sent
        self.stats.framesOut += sent
        self._playoutEnd = playout

    def _resumeDrain(self) -> None:
        self._resume = None
        self._drain()

    def _tick(self) -> None:
        """
        Paced transports: one pacer tick sends exactly one frame (or a
        silence frame when the transport wants one, or nothing).
        """
        out = self._out
        while out:
            item = out.popleft()
            if type(item) is bytes:
                self._outFrames -= 1
                self.stats.framesOut += 1
                self._idle = 0
                self._transport.sendAudio(item)
                while out and type(out[0]) is _Marker:
                    marker = out.popleft()
                    assert type(marker) is _Marker
                    self._reached(marker, 0.0)
                return
            assert type(item) is _Marker
            self._reached(item, 0.0)
        if self._needsSilence:
            self.stats.silenceOut += 1
            self._transport.sendAudio(self._wire.silenceFrame)
            return
        self._idle += 1
        if self._idle >= IDLE_TICKS and self._pacer is not None:
            self._pacer.stop()

    def _reached(self, marker: _Marker, playout: float) -> None:
        """
        Everything queued before C{marker} has been sent, the last of it
        playing until C{playout} (non-paced transports).
        """
        if self._supportsMarks:
            self._markSeq += 1
            wireName = f"m{self._markSeq}"
            self._acks[wireName] = marker
            self._transport.sendMark(wireName)
            return
        delay = playout - self._clock.seconds()
        if self._paced or delay <= 0:
            self._completed(marker, "gateway")
        else:
            self._timers[marker] = self._clock.callLater(delay, self._played, marker)

    def _played(self, marker: _Marker) -> None:
        del self._timers[marker]
        self._completed(marker, "gateway")

    def _completed(self, marker: _Marker, source: str) -> None:
        """
        The caller has heard everything up to C{marker}.
        """
        if self._state is not _RUNNING:
            return
        self.events.append(source, "mark", {"name": marker.name})
        self._toAssistant("done", marker.name)

    def _stopOutput(self) -> None:
        """
        Forget everything queued or awaited on the outbound side.
        """
        self._out.clear()
        self._outFrames = 0
        self._active = None
        self._waiting.clear()
        self._waitingById.clear()
        self._waitingBytes = 0
        self._outCarry = b""
        self._acks.clear()
        if self._started:
            self._outFramer.clear()
        timers, self._timers = self._timers, {}
        for call in timers.values():
            if call.active():
                call.cancel()
        resume, self._resume = self._resume, None
        if resume is not None and resume.active():
            resume.cancel()
        if self._state is _ENDED and self._pacer is not None:
            self._pacer.stop()
