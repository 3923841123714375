# -*- test-case-name: tests.test_audiosocket_server -*-
"""
The AudioSocket TCP server (protocols.md §4): Asterisk connects to us,
sends the call's UUID, then audio and DTMF; we send paced audio back.

Two layers, as STYLE.md §2 asks:

  - L{AudioSocketProtocol} is thin: TCP bytes → L{AudioSocketDecoder}
    frames → its L{AudioSocketCall}; it writes what the call gives it.
    Nothing raises out of C{dataReceived}.
  - L{AudioSocketCall} is the per-connection state machine and the
    L{ICallTransport} of the call's L{CallSession}:

      1. The first frame must be the 16-byte UUID (else the connection
         is refused). It is the context id the dialplan got from
         C{/v1/talk/asterisk/call/{assistant}}; the context is claimed
         (unknown, claimed, expired, finished or another provider's:
         refused; store down: refused). With
         C{GatewayConfig.audiosocket_assistant} set, an unknown UUID gets
         a new context on the fly instead (provider C{asterisk},
         C{channel_uuid} = the UUID, claimed at once) — once per UUID.
      2. Frames arriving while the claim is on its way are held (at most
         L{AudioSocketSettings.maxHeld}).
      3. The first audio frame's kind fixes the call's rate (0x10 8 kHz,
         0x12 16 kHz, 0x13 24 kHz; the dialplan app always sends 0x10);
         without audio within L{AudioSocketSettings.audioWait} seconds
         the call starts at 8 kHz. Rates the media core does not convert
         (0x11 12 kHz, 0x14-0x18) are refused with a clear error naming
         the C{c(...)} option to use.
      4. Audio (0x10-0x18) → session; DTMF (0x03) → session (a C{dtmf}
         event); error (0xff) → an C{error} event (informational); hang-up
         (0x00) or the socket closing → the call ends (caller hang-up).
      5. Outbound: C{paced}: the session's pacer (the gateway's shared
         L{PacerGroup}) sends one 20 ms frame per 20 ms tick, and silence
         when the assistant is quiet (C{needsSilence}): Asterisk neither
         re-times nor buffers, and hangs the call up when neither side has
         sent anything for 2 s (§4.4.5, observed on 23.4.1), so the
         stream must never stop while the call is up. A cushion of two
         frames per talkspurt absorbs jitter (see
         L{AudioSocketCall.sendAudio}).
      6. Only hang-up (0x00) and audio (0x10-0x18) frames are ever
         written: any other kind makes Asterisk fail the call. Assistant
         hang-up and every refusal: 0x00, then close.
      7. Bad input (truncated, oversize or impossible lengths, unknown
         kinds, a second UUID, a bad DTMF symbol): an C{error} event (when
         the context is known), a warning, 0x00 and close. Nothing reaches
         any other call.
      8. No data from Asterisk for L{AudioSocketSettings.inactivityTimeout}
         seconds ends the call (failed); no UUID within
         L{AudioSocketSettings.uuidTimeout} closes the connection.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Final
from uuid import UUID

from twisted.internet import protocol
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IAddress, IDelayedCall, IWriteDescriptor
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from zope.interface import implementer

from ..assistants import UnknownAssistant
from ..call import AudioFormat, CallSession, EventLog
from ..interfaces import ICallTransport
from ..media.resample import SUPPORTED_RATES
from ..store._model import (
    CallContext,
    ContextAlreadyClaimed,
    ContextExpired,
    ContextFinished,
    ContextNotFound,
    StoreUnavailable,
)
from ._audiosocket import (
    DEFAULT_MAX_PAYLOAD,
    Audio,
    AudioSocketDecoder,
    AudioSocketError,
    Dtmf,
    ErrorFrame,
    Frame,
    Hangup,
    Unknown,
    Uuid,
    encodeAudio,
    encodeHangup,
)

__all__ = [
    "PROVIDER",
    "TRANSPORT",
    "AudioSocketCall",
    "AudioSocketFactory",
    "AudioSocketProtocol",
    "AudioSocketSettings",
]

#: the provider name of AudioSocket contexts (the same as chan_websocket's)
PROVIDER: Final = "asterisk"
#: the transport label of this listener's metrics
TRANSPORT: Final = "audiosocket"

_HANGUP_FRAME: Final = encodeHangup()

_WAITING, _CLAIMING, _CLAIMED, _RUNNING, _CLOSED = (
    "waiting",
    "claiming",
    "claimed",
    "running",
    "closed",
)


@dataclass(frozen=True)
class AudioSocketSettings:
    """
    Limits and timers of the AudioSocket listener.

    @ivar uuidTimeout: seconds from connect to the UUID frame.
    @ivar inactivityTimeout: seconds without any data from Asterisk that
        end a call (Asterisk sends a frame every 20 ms while it is up).
    @ivar audioWait: seconds after the claim to wait for the first audio
        frame (whose kind fixes the rate) before starting at 8 kHz.
    @ivar maxHeld: frames held while the claim is on its way (the oldest
        audio is dropped beyond it).
    @ivar maxPayload: the longest frame payload accepted (see
        L{AudioSocketDecoder}).
    @ivar cushion: outbound frames held at the start of each talkspurt
        to absorb jitter (see L{AudioSocketCall.sendAudio}); 0 disables.
    """

    uuidTimeout: float = 5.0
    inactivityTimeout: float = 15.0
    audioWait: float = 1.0
    maxHeld: int = 100
    maxPayload: int = DEFAULT_MAX_PAYLOAD
    cushion: int = 2


class _Refusal(Exception):
    """
    Ends a connection: C{code} for metrics and the C{error} event.
    """

    def __init__(self, code: str, reason: str, record: bool = True) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason
        self.record = record


@implementer(ICallTransport)
class AudioSocketCall:
    """
    One AudioSocket connection: claims its context, runs its
    L{CallSession}, and is that session's L{ICallTransport}.

    @param wire: the connection (C{write(bytes)}, C{loseConnection()}).
    @param gateway: the L{rapida_twisted.gateway.Gateway}.
    @param peer: the remote address as text (for logs).
    @param settings: limits and timers.

    @ivar context: the claimed L{CallContext} (None before the claim).
    @ivar session: the L{CallSession} once started.
    @ivar uuid: the UUID Asterisk sent (None before it).
    @ivar lastActivity: when data last arrived (the protocol sets it).
    """

    paced = True
    needsSilence = True
    supportsMarks = False
    _log = Logger()

    def __init__(
        self,
        wire: Any,
        gateway: Any,
        peer: str,
        settings: AudioSocketSettings,
    ) -> None:
        self._wire = wire
        self._gateway = gateway
        self.peer = peer
        self.settings = settings
        self._errors = gateway.metrics.protocolErrors
        self._droppedIn = gateway.metrics.framesDropped.labels("inbound")
        self.context: CallContext | None = None
        self.session: CallSession | None = None
        self.events: EventLog | None = None
        self.uuid: UUID | None = None
        self.audioFormat = AudioFormat("l16", 8000)
        self._rate = 8000
        self._state = _WAITING
        self._held: deque[Frame] = deque()
        #: (reason, outcome, refusal) when the connection ended during the claim
        self._endedWhileClaiming: tuple[str, str, _Refusal | None] | None = None
        self._audioHeader = b""
        self._silence = b""
        self._silenceFrame = b""
        self._writing = True
        #: the jitter cushion (see L{sendAudio})
        self._cushion: deque[bytes] = deque()
        #: a talkspurt is playing (its cushion was filled)
        self._playing = False
        #: quiet ticks while filling the cushion
        self._waited = 0
        self._rateWarned = False
        self.clock = gateway.clock
        self.lastActivity = self.clock.seconds()
        self._timer: IDelayedCall | None = self.clock.callLater(settings.uuidTimeout, self._noUuid)

    @property
    def closed(self) -> bool:
        """
        Whether the connection is over (refused, hung up or lost).
        """
        return self._state is _CLOSED

    @property
    def contextId(self) -> str:
        """
        The context id (or the UUID Asterisk sent, before the claim).
        """
        if self.context is not None:
            return self.context.context_id
        return "" if self.uuid is None else str(self.uuid)

    # --- protocol → call ---------------------------------------------------

    def frameReceived(self, frame: Frame) -> None:
        """
        One complete frame from Asterisk.
        """
        state = self._state
        if state is _RUNNING:
            if type(frame) is Audio:
                assert isinstance(frame, Audio)
                if frame.sampleRate == self._rate:
                    session = self.session
                    assert session is not None
                    session.audioReceived(frame.pcm)
                else:
                    self._wrongRate(frame)
                return
            self._dispatch(frame)
        elif state is _WAITING:
            if type(frame) is not Uuid:
                self._refuse(
                    _Refusal("no_uuid", f"the first frame must be the UUID, not {_describe(frame)}")
                )
                return
            assert isinstance(frame, Uuid)
            self._uuidReceived(frame.uuid)
        elif type(frame) is Unknown or type(frame) is Uuid:
            # refused at once, even while the claim is on its way
            self._refuse(_Refusal(_badKind(frame), f"unexpected {_describe(frame)}"))
        elif state is _CLAIMING:
            self._hold(frame)
        elif state is _CLAIMED:
            if type(frame) is Audio:
                assert isinstance(frame, Audio)
                self._startSession(frame.sampleRate)
                if self._state is _RUNNING:
                    self.frameReceived(frame)
            else:
                self._hold(frame)

    def malformed(self, error: AudioSocketError) -> None:
        """
        The byte stream is broken (the decoder refused it).
        """
        self._refuse(_Refusal(error.code, f"malformed AudioSocket data: {error.reason}"))

    def connectionLost(self, truncated: AudioSocketError | None = None) -> None:
        """
        The socket closed: Asterisk's hang-up (§4.4.4: no 0x00, just a
        close), or the end of a connection we closed.

        @param truncated: the stream ended inside a frame.
        """
        state = self._state
        self._cancelTimer()
        self._writing = False
        if state is _CLOSED:
            return
        self._state = _CLOSED
        if truncated is not None:
            self._count(truncated.code)
            self._log.warn(
                "audiosocket {peer} {context_id}: {reason}",
                peer=self.peer,
                context_id=self.contextId,
                reason=truncated.reason,
            )
            if self.events is not None:
                self.events.append(
                    "gateway", "error", {"code": truncated.code, "reason": truncated.reason}
                )
        reason = "caller hung up (socket closed)"
        if state is _RUNNING:
            assert self.session is not None
            self.session.ended(reason)
        elif state is _CLAIMING:
            self._endedWhileClaiming = (reason, "completed", None)
        elif state is _CLAIMED:
            self._finishUnstarted(reason, "completed")

    # --- frames ------------------------------------------------------------

    def _dispatch(self, frame: Frame) -> None:
        """
        A non-audio frame of a running call (or a held one).
        """
        session = self.session
        assert session is not None
        kind = type(frame)
        if kind is Audio:
            assert isinstance(frame, Audio)
            if frame.sampleRate == self._rate:
                session.audioReceived(frame.pcm)
            else:
                self._wrongRate(frame)
        elif kind is Dtmf:
            assert isinstance(frame, Dtmf)
            session.dtmfReceived(frame.digit)
        elif kind is Hangup:
            session.hangup("caller hung up (0x00)", source="provider")
        elif kind is ErrorFrame:
            assert isinstance(frame, ErrorFrame)
            self._errorFrame(frame)
        else:
            self._refuse(_Refusal(_badKind(frame), f"unexpected {_describe(frame)}"))

    def _errorFrame(self, frame: ErrorFrame) -> None:
        """
        0xff: informational (current Asterisk never sends it).
        """
        self._count("error_frame")
        self._log.warn(
            "audiosocket {peer} {context_id}: error frame from Asterisk, code {code}",
            peer=self.peer,
            context_id=self.contextId,
            code=frame.code,
        )
        assert self.events is not None
        self.events.append("provider", "error", {"code": "error_frame", "error_code": frame.code})

    def _hold(self, frame: Frame) -> None:
        held = self._held
        if len(held) >= self.settings.maxHeld:
            # the oldest audio goes first; other frames are few and kept
            for i, item in enumerate(held):
                if type(item) is Audio:
                    del held[i]
                    break
            self._droppedIn.inc()
        held.append(frame)

    def _wrongRate(self, frame: Audio) -> None:
        self._droppedIn.inc()
        if not self._rateWarned:
            self._rateWarned = True
            self._count("rate_changed")
            self._log.warn(
                "audiosocket {context_id}: audio at {got} Hz in a call at {rate} Hz dropped",
                context_id=self.contextId,
                got=frame.sampleRate,
                rate=self._rate,
            )

    # --- the claim ---------------------------------------------------------

    def _uuidReceived(self, uuid: UUID) -> None:
        self.uuid = uuid
        self._state = _CLAIMING
        self._cancelTimer()
        d = Deferred.fromCoroutine(self._claim(uuid))
        d.addErrback(self._crashed, "claim")

    async def _claim(self, uuid: UUID) -> None:
        try:
            context = await self._claimContext(uuid)
        except _Refusal as refusal:
            self._refuse(refusal, claimed=True)
            return
        self.context = context
        self.events = events = EventLog(self._gateway, context.context_id)
        events.append(
            "gateway",
            "claimed",
            {"transport": TRANSPORT, "uuid": str(uuid), "peer": self.peer},
        )
        if self._state is _CLOSED:
            # the connection ended while the claim was on its way
            reason, outcome, why = self._endedWhileClaiming or ("closed", "completed", None)
            if why is not None and why.record:
                events.append("gateway", "error", {"code": why.code, "reason": why.reason})
            self._finishUnstarted(reason, outcome)
            return
        self._state = _CLAIMED
        self._log.info(
            "audiosocket {peer}: UUID {uuid} claimed context {context_id}",
            peer=self.peer,
            uuid=str(uuid),
            context_id=context.context_id,
        )
        self.lastActivity = self.clock.seconds()
        self._timer = self.clock.callLater(self.settings.audioWait, self._noAudio)
        held, self._held = self._held, deque()
        for frame in held:
            if self._state is not _CLAIMED and self._state is not _RUNNING:
                break
            self.frameReceived(frame)

    async def _claimContext(self, uuid: UUID) -> CallContext:
        """
        The claimed context of C{uuid}.

        @raise _Refusal: why the connection is refused.
        """
        gateway = self._gateway
        store = gateway.store
        contextId = str(uuid)
        try:
            try:
                found: CallContext | None = await gateway.storeOp("get", store.get, contextId)
            except ContextNotFound:
                found = None
            if found is None or found.provider != PROVIDER:
                return await self._unannounced(uuid)
            self.context = found
            self.events = EventLog(gateway, found.context_id)
            context: CallContext = await gateway.storeOp("claim", store.claim, contextId)
        except ContextAlreadyClaimed:
            raise _Refusal("already_claimed", "the call context was already claimed") from None
        except ContextExpired:
            raise _Refusal("expired", "the call context expired before it was claimed") from None
        except ContextFinished:
            raise _Refusal("finished", "the call has already ended") from None
        except ContextNotFound:
            raise _Refusal("unknown_context", "no such call context", record=False) from None
        except StoreUnavailable:
            raise _Refusal(
                "store_unavailable", "the context store is unavailable", record=False
            ) from None
        return context

    async def _unannounced(self, uuid: UUID) -> CallContext:
        """
        A UUID no context has: refused, unless an assistant is configured
        for unannounced calls; then a new context, claimed at once (a UUID
        already used for one is refused).
        """
        gateway = self._gateway
        store = gateway.store
        assistantId = gateway.config.audiosocket_assistant
        if not assistantId:
            raise _Refusal("unknown_context", "no such call context", record=False)
        previous = await gateway.storeOp(
            "find_by_channel", store.findByChannel, PROVIDER, str(uuid)
        )
        if previous is not None:
            self.context = previous
            self.events = EventLog(gateway, previous.context_id)
            raise _Refusal("already_claimed", "this AudioSocket UUID already had a call")
        new = await gateway.storeOp(
            "create",
            store.create,
            PROVIDER,
            assistantId,
            channel_uuid=str(uuid),
            metadata={"transport": TRANSPORT, "unannounced": True},
        )
        self._log.info(
            "audiosocket {peer}: unannounced UUID {uuid}: context {context_id} for assistant"
            " {assistant_id}",
            peer=self.peer,
            uuid=str(uuid),
            context_id=new.context.context_id,
            assistant_id=assistantId,
        )
        context: CallContext = await gateway.storeOp("claim", store.claim, new.context.context_id)
        return context

    # --- the session -------------------------------------------------------

    def _startSession(self, rate: int) -> None:
        """
        Start the call session with the wire at C{rate} Hz.
        """
        self._cancelTimer()
        context = self.context
        assert context is not None
        if rate not in SUPPORTED_RATES:
            self._refuse(
                _Refusal(
                    "unsupported_rate",
                    f"AudioSocket audio at {rate} Hz is not supported; use the AudioSocket()"
                    " application or c(slin), c(slin16) or c(slin24)",
                )
            )
            return
        try:
            assistant = self._gateway.assistants.get(context.assistant_id)
        except UnknownAssistant:
            self._refuse(_Refusal("unknown_assistant", f"no assistant {context.assistant_id!r}"))
            return
        self._rate = rate
        self.audioFormat = wire = AudioFormat("l16", rate)
        self._audioHeader = encodeAudio(wire.silenceFrame, rate)[:3]
        self._silence = wire.silenceFrame
        self._silenceFrame = encodeAudio(wire.silenceFrame, rate)
        self.session = session = CallSession(
            self.clock, self._gateway, context, self, assistant, pacer=self._gateway.pacers.pacer
        )
        self._state = _RUNNING
        self._timer = self.clock.callLater(self.settings.inactivityTimeout, self._checkActivity)
        session.start()
        # frames that came before the first audio one, in order
        held, self._held = self._held, deque()
        for frame in held:
            if self._state is not _RUNNING:
                break
            self._dispatch(frame)

    def _noAudio(self) -> None:
        """
        No audio arrived after the claim: start at 8 kHz (the dialplan
        application's rate).
        """
        self._timer = None
        if self._state is _CLAIMED:
            self._startSession(8000)

    # --- timers ------------------------------------------------------------

    def _noUuid(self) -> None:
        self._timer = None
        if self._state is _WAITING:
            self._refuse(
                _Refusal(
                    "no_uuid", f"no UUID frame within {self.settings.uuidTimeout:g} s", record=False
                )
            )

    def _checkActivity(self) -> None:
        self._timer = None
        if self._state is not _RUNNING:
            return
        timeout = self.settings.inactivityTimeout
        due = self.lastActivity + timeout
        now = self.clock.seconds()
        if now < due:
            self._timer = self.clock.callLater(due - now, self._checkActivity)
            return
        self._refuse(_Refusal("inactive", f"no data from Asterisk for {timeout:g} s"))

    def _cancelTimer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    # --- endings -----------------------------------------------------------

    def _count(self, code: str) -> None:
        self._errors.labels(TRANSPORT, code).inc()

    def _refuse(self, refusal: _Refusal, claimed: bool = False) -> None:
        """
        End the connection for C{refusal}: a warning, an C{error} event
        when the context is known, a failed call when it was claimed,
        then 0x00 and close.

        @param claimed: the claim itself was refused (so the C{error}
            event need not wait for it).
        """
        state = self._state
        if state is _CLOSED:
            return
        self._state = _CLOSED
        self._cancelTimer()
        self._count(refusal.code)
        # refusals no call event can record (unknown UUID, store down) are
        # logged as errors: the log is the only trace of them
        self._log.emit(
            LogLevel.warn if refusal.record else LogLevel.error,
            "audiosocket {peer} {context_id} refused: {error_code}: {reason}",
            peer=self.peer,
            context_id=self.contextId,
            error_code=refusal.code,
            reason=refusal.reason,
        )
        if refusal.record and self.events is not None and (claimed or state is not _CLAIMING):
            # (during the claim the event is written once the claim is done)
            self.events.append("gateway", "error", {"code": refusal.code, "reason": refusal.reason})
        session = self.session
        if session is not None:
            session.ended(refusal.reason, "failed", source="gateway")
        elif state is _CLAIMED:
            self._finishUnstarted(refusal.reason, "failed")
        elif state is _CLAIMING:
            self._endedWhileClaiming = (refusal.reason, "failed", refusal)
        self._close()

    def _finishUnstarted(self, reason: str, outcome: str) -> None:
        """
        End a claimed context that never got a call session.
        """
        context, events = self.context, self.events
        assert context is not None and events is not None
        source = "provider" if outcome == "completed" else "gateway"
        events.append(source, "ended", {"reason": reason, "outcome": outcome})
        events.run("finish", self._gateway.store.finish, context.context_id, outcome, reason)

    def _crashed(self, failure: Failure, where: str) -> None:
        self._log.failure(
            "audiosocket {peer} {context_id}: {where} failed",
            failure,
            LogLevel.error,
            peer=self.peer,
            context_id=self.contextId,
            where=where,
        )
        self._refuse(_Refusal("internal_error", "internal error"))

    def _close(self) -> None:
        """
        0x00, then close (once).
        """
        if self._writing:
            self._writing = False
            self._wire.write(_HANGUP_FRAME)
            self._wire.loseConnection()

    # --- ICallTransport ----------------------------------------------------

    def sendAudio(self, frame: bytes) -> None:
        """
        One 20 ms frame at the call's rate (called once per pacer tick;
        exactly one frame is written per call).

        A cushion of L{AudioSocketSettings.cushion} frames absorbs jitter:
        at the start of a talkspurt (audio after silence) that many frames
        are collected while silence goes out; then each new frame pushes
        the oldest held one out. When the session has nothing at a tick
        (its audio came in late: an echo of caller frames that reached us
        just after the tick, or after a reactor stall whose catch-up ticks
        ran before the frames were read), a held frame goes out instead of
        a gap, and the cushion stays one frame smaller for the rest of the
        talkspurt (the session's queue now holds that frame). A talkspurt
        shorter than the cushion is played after C{cushion} quiet ticks.
        Costs C{cushion} x 20 ms of latency per talkspurt.
        """
        if not self._writing:
            return
        write = self._wire.write
        cushion = self._cushion
        if frame is not self._silence:
            if self._playing:
                if cushion:
                    cushion.append(frame)
                    frame = cushion.popleft()
                write(self._audioHeader + frame)
                return
            if not cushion:
                self._waited = 0
            cushion.append(frame)
            if len(cushion) > self.settings.cushion:
                self._playing = True
                write(self._audioHeader + cushion.popleft())
            else:
                write(self._silenceFrame)
        elif self._playing:
            if cushion:
                write(self._audioHeader + cushion.popleft())
            else:
                self._playing = False
                write(self._silenceFrame)
        elif cushion:
            self._waited += 1
            if self._waited >= self.settings.cushion:
                self._playing = True
                write(self._audioHeader + cushion.popleft())
            else:
                write(self._silenceFrame)
        else:
            write(self._silenceFrame)

    def sendMark(self, name: str) -> None:
        """
        AudioSocket has no marks (the session reports playback itself).
        """

    def sendClear(self) -> None:
        """
        Barge-in: drop the held frame (Asterisk queues nothing, and the
        session stops sending at once).
        """
        self._cushion.clear()
        self._playing = False

    def sendDtmf(self, digit: str) -> bool:
        """
        The server cannot send DTMF over AudioSocket.
        """
        return False

    def transfer(self, target: str) -> Deferred[bool]:
        """
        AudioSocket has no transfer.
        """
        return succeed(False)

    def hangup(self, reason: str) -> None:
        """
        The assistant (or the gateway) ends the call: 0x00, then close.
        """
        if self._state is not _CLOSED:
            self._state = _CLOSED
            self._cancelTimer()
        self._close()


def _describe(frame: Frame) -> str:
    if type(frame) is Unknown:
        assert isinstance(frame, Unknown)
        return f"a frame of unknown kind 0x{frame.kind:02x}"
    return {
        Hangup: "a hang-up frame",
        Uuid: "a second UUID frame",
        Dtmf: "a DTMF frame",
        Audio: "an audio frame",
        ErrorFrame: "an error frame",
    }.get(type(frame), "a frame")


def _badKind(frame: Frame) -> str:
    return "unknown_kind" if type(frame) is Unknown else "unexpected_frame"


class AudioSocketProtocol(protocol.Protocol):
    """
    One TCP connection from Asterisk: bytes → frames → L{AudioSocketCall}.
    """

    _log = Logger()
    call: AudioSocketCall
    _flush: Any = None

    def __init__(self, factory: AudioSocketFactory, addr: IAddress | None) -> None:
        self.factory = factory
        self._peer = _peerText(addr)
        self._decoder = AudioSocketDecoder(factory.settings.maxPayload)

    def connectionMade(self) -> None:
        # one small frame every 20 ms: Nagle's algorithm against the peer's
        # delayed ACKs would hold frames back and send them in pairs
        setNoDelay = getattr(self.transport, "setTcpNoDelay", None)
        if setNoDelay is not None:
            setNoDelay(True)
        # a plain TCP transport is its own IWriteDescriptor (see write)
        if IWriteDescriptor.providedBy(self.transport):
            self._flush = self.transport.doWrite
        self.call = AudioSocketCall(self, self.factory.gateway, self._peer, self.factory.settings)
        self.factory.connections += 1

    def dataReceived(self, data: bytes) -> None:
        call = self.call
        if call.closed:
            return
        call.lastActivity = call.clock.seconds()
        try:
            frames = self._decoder.feed(data)
        except AudioSocketError as e:
            call.malformed(e)
            return
        try:
            for frame in frames:
                call.frameReceived(frame)
                if call.closed:
                    break
        except Exception:
            call._crashed(Failure(), "frame")

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.factory.connections -= 1
        truncated: AudioSocketError | None = None
        try:
            self._decoder.finish()
        except AudioSocketError as e:
            truncated = e
        try:
            self.call.connectionLost(truncated)
        except Exception:
            self._log.failure("audiosocket {peer}: connectionLost failed", peer=self._peer)

    # the wire the call writes to

    def write(self, data: bytes) -> None:
        """
        Write C{data} and hand it to the kernel now, inside the pacer's
        tick, rather than in the reactor's next pass: there a frame would
        wait behind every other call's writes and reads in whatever order
        the poller returns them, so its send time would wander by several
        milliseconds at a few hundred calls. Here the calls are sent in
        the pacer's fixed order, each at the same offset every tick.
        (What the kernel does not take stays buffered as usual.)
        """
        transport = self.transport
        if transport is not None:
            transport.write(data)
            flush = self._flush
            if flush is not None:
                flush()

    def loseConnection(self) -> None:
        transport = self.transport
        if transport is not None:
            transport.loseConnection()


def _peerText(addr: IAddress | None) -> str:
    host = getattr(addr, "host", None)
    port = getattr(addr, "port", None)
    if host is None:
        return str(addr)
    return f"{host}:{port}"


class AudioSocketFactory(protocol.Factory):
    """
    The C{--audiosocket} listener's factory.

    @param gateway: the L{rapida_twisted.gateway.Gateway}.
    @param settings: limits and timers (defaults: L{AudioSocketSettings}).
    @ivar connections: connections open now.
    """

    noisy = False

    def __init__(self, gateway: Any, settings: AudioSocketSettings | None = None) -> None:
        self.gateway = gateway
        self.settings = settings if settings is not None else AudioSocketSettings()
        self.connections = 0

    def buildProtocol(self, addr: IAddress | None) -> AudioSocketProtocol:
        proto = AudioSocketProtocol(self, addr)
        proto.factory = self
        return proto
