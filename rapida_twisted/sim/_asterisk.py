# -*- test-case-name: tests.test_sim -*-
"""
Asterisk's part, both ways it reaches the gateway, after the dialplan's
C{CURL()} of C{/v1/talk/asterisk/call/{assistant}} returned the context id:

  - AudioSocket (protocols.md §4): TCP to the AudioSocket port, the UUID
    frame first, then one 0x10 frame of 320 bytes of slin every 20 ms,
    DTMF as 0x03; gateway audio is written out the moment it arrives (no
    buffer, as Asterisk does); caller hang-up is a plain close (or 0x00
    when asked); any kind Asterisk refuses from the server ends the call.
  - chan_websocket (protocols.md §5): C{MEDIA_START} in the control
    format, 20 ms media frames in BINARY messages, C{DTMF_END}; gateway
    media goes through a model of Asterisk's queue (re-framed to
    C{optimal_frame_size}, partial frames dropped unless buffering, played
    one frame per 20 ms, 1000 frames max with C{MEDIA_XOFF} at 900 and
    C{MEDIA_XON} below 800), and every command is answered as Asterisk
    answers it.
"""

from __future__ import annotations

import secrets
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit
from uuid import UUID

from twisted.internet.interfaces import IReactorTime

from ..asterisk import _audiosocket as audiosocket
from ..asterisk import _chanws as chanws
from ._audio import PreparedAudio, WireFormat, wireFormat
from ._base import CallOptions, CallPlan, CallResult, MediaStream, SimError, WebhookError
from ._call import SimCall
from ._net import webhook, wsURL
from ._record import Playout
from ._ticker import Ticker

__all__ = ["AsteriskWsCall", "AsteriskWsStream", "AudioSocketCall", "AudioSocketStream"]


async def _contextId(call: SimCall) -> str:
    """
    The dialplan's C{CURL()}: create the context, return its id.
    """
    options = call.options
    url = f"{options.gateway.rstrip('/')}/v1/talk/asterisk/call/{options.assistant}"
    form = {
        "from": options.caller,
        "to": options.callee,
        "channel_id": f"{int(call.env.clock.seconds())}.{secrets.randbelow(10**6)}",
    }
    _, body = await webhook(call.env, "POST", url, options.timeout, form)
    text = body.decode("ascii", "replace").strip()
    try:
        UUID(text)
    except ValueError:
        raise WebhookError(f"answer is not a context id: {text[:60]!r}") from None
    return text


#: The far phone's jitter buffer on an AudioSocket call (Asterisk itself
#: buffers nothing): playback starts this late, and a burst deeper than
#: three times this plays over itself.
JITTER_BUFFER = 0.040


class AudioSocketStream(MediaStream):
    """
    Asterisk's side of one AudioSocket connection.
    """

    transport = "audiosocket"

    def __init__(
        self,
        clock: IReactorTime,
        ticker: Ticker,
        audio: PreparedAudio,
        plan: CallPlan,
        uuid: UUID,
    ) -> None:
        super().__init__(clock, ticker, audio, plan)
        self.uuid = uuid
        self.playout: Playout[None] = Playout(
            self.recorder, delay=JITTER_BUFFER, maxAhead=3 * JITTER_BUFFER
        )
        self.decoder = audiosocket.AudioSocketDecoder()

    def _write(self, data: bytes) -> None:
        assert self.channel is not None
        self.channel.sendBinary(data)

    def started(self) -> None:
        self._write(audiosocket.encodeUuid(self.uuid))

    def sendFrame(self, index: int, now: float) -> None:
        self._write(audiosocket.encodeAudio(self.frameIndexPayload(index), self.audio.format.rate))

    def sendDtmf(self, digit: str) -> None:
        self._write(audiosocket.encodeDtmf(digit))

    def _hangUpOn(self, reason: str) -> None:
        """
        What Asterisk does with a frame it cannot take: end the call.
        """
        self.protocolError(reason)
        self.hangup()

    def received(self, data: bytes, isBinary: bool) -> None:
        try:
            frames = self.decoder.feed(data)
        except audiosocket.AudioSocketError as e:
            self._hangUpOn(f"bad AudioSocket stream from the gateway: {e}")
            return
        now = self.clock.seconds()
        rate = self.audio.format.rate
        for frame in frames:
            if isinstance(frame, audiosocket.Audio):
                if not frame.pcm:
                    self._hangUpOn("zero-length audio frame from the gateway (Asterisk hangs up)")
                    return
                if frame.sampleRate != rate:
                    self._hangUpOn(
                        f"{frame.sampleRate} Hz audio from the gateway on a {rate} Hz call"
                    )
                    return
                self.playout.audio(now, frame.pcm)
            elif isinstance(frame, audiosocket.Hangup):
                self.counters["hangup"] += 1
                self.fail("the gateway hung up (0x00)")
                self.hangup("gateway")
                return
            else:
                kind = getattr(frame, "kind", None)
                name = type(frame).__name__ if kind is None else f"0x{kind:02x}"
                self._hangUpOn(f"frame {name} from the gateway (Asterisk hangs up on it)")
                return

    def goodbye(self) -> None:
        if self.plan.hangupFrame and self.failure is None:
            self._write(audiosocket.encodeHangup())
        super().goodbye()


class AudioSocketCall(SimCall):
    """
    An Asterisk call through C{AudioSocket()}.
    """

    transport = "audiosocket"

    @classmethod
    def wireFormat(cls, options: CallOptions) -> WireFormat:
        rate = options.rate or 8000
        if rate not in audiosocket.AUDIO_KINDS:
            raise ValueError(f"AudioSocket has no slin kind for {rate} Hz")
        return wireFormat("pcm16", rate)

    async def connect(self, result: CallResult) -> MediaStream:
        options, env = self.options, self.env
        contextId = await _contextId(self)
        result.contextId = contextId
        stream = AudioSocketStream(
            env.clock, env.ticker, self.audio(), options.plan, UUID(contextId)
        )
        result.stream = stream
        host = options.audiosocketHost or urlsplit(options.gateway).hostname or "127.0.0.1"
        await env.connector.tcp(host, options.audiosocketPort, stream, options.timeout)
        return stream


@dataclass(frozen=True, slots=True)
class _Control:
    """
    A control item riding in Asterisk's queue: C{MARK_MEDIA}'s mark or
    C{STOP_MEDIA_BUFFERING}'s completion point.
    """

    mark: bool
    correlationId: str


class AsteriskWsStream(MediaStream):
    """
    Asterisk's side of one chan_websocket channel.

    @ivar queued: media frames in the playback queue.
    """

    transport = "asterisk-ws"

    def __init__(
        self,
        clock: IReactorTime,
        ticker: Ticker,
        audio: PreparedAudio,
        plan: CallPlan,
        controlFormat: chanws.ControlFormat,
        mediaFormat: chanws.MediaFormat,
        connectionId: str = "rapida-sim",
    ) -> None:
        super().__init__(clock, ticker, audio, plan)
        self.controlFormat = controlFormat
        self.mediaFormat = mediaFormat
        self.frameSize = mediaFormat.frameBytes(20)
        self.connectionId = connectionId
        self.channelId = f"sim-{secrets.randbelow(10**9)}.{secrets.randbelow(1000)}"
        self.queue: deque[bytes | _Control] = deque()
        self.queued = 0
        self.direction = "both"
        self._leftover = bytearray()
        self._bulk = False
        self._paused = False
        self._xoff = False
        self._reportDrained = False
        self._slot = 0
        self._lastPlayed: int | None = None
        self._dry = 0

    @property
    def underruns(self) -> int:
        """
        Times Asterisk's queue ran dry between two frames: a gap the caller
        heard because the gateway's audio came after Asterisk's 20 ms timer.
        """
        return self._dry

    def _event(self, event: chanws.Event) -> None:
        assert self.channel is not None
        self.channel.sendText(chanws.encodeEvent(event, self.controlFormat))

    def started(self) -> None:
        self._event(
            chanws.MediaStart(
                connectionId=self.connectionId,
                channel=f"WebSocket/{self.connectionId}/0x{secrets.token_hex(6)}",
                channelId=self.channelId,
                format=self.mediaFormat.name,
                optimalFrameSize=self.frameSize,
                ptime=20,
                channelVariables={},
            )
        )

    def sendFrame(self, index: int, now: float) -> None:
        if self.direction == "out":  # the app asked for no media from Asterisk
            return
        assert self.channel is not None
        self.channel.sendBinary(self.frameIndexPayload(index))

    def sendDtmf(self, digit: str) -> None:
        self._event(chanws.DtmfEnd(digit, self.channelId))

    # -- the playback queue ------------------------------------------------

    def ticked(self, now: float, frames: int) -> None:
        for _ in range(frames):
            self._dequeue(now)

    def _dequeue(self, now: float) -> None:
        queue = self.queue
        slot = self._slot
        self._slot += 1
        if self._paused:
            return
        while queue and isinstance(queue[0], _Control):
            control = queue.popleft()
            assert isinstance(control, _Control)
            if control.mark:
                self.counters["marks"] += 1
                self._event(chanws.MediaMarkProcessed(control.correlationId, self.channelId))
            else:
                self._event(chanws.MediaBufferingCompleted(control.correlationId, self.channelId))
        if queue:
            frame = queue.popleft()
            assert isinstance(frame, bytes)
            self.queued -= 1
            # played on Asterisk's 20 ms timer, not at our tick's jitter
            origin = self.frames.origin if self.frames.origin is not None else now
            self.recorder.play(origin + slot * 0.020, frame)
            if self._lastPlayed is not None and slot > self._lastPlayed + 1:
                self._dry += 1  # the queue ran dry between two frames
            self._lastPlayed = slot
        if self._xoff and self.queued < chanws.XON_LEVEL:
            self._xoff = False
            self._event(chanws.MediaXon(self.channelId))
        if self._reportDrained and not queue:
            self._reportDrained = False
            self._event(chanws.QueueDrained(self.channelId))

    def _enqueue(self, now: float, data: bytes) -> None:
        size = self.frameSize
        whole = len(data) - len(data) % size
        for offset in range(0, whole, size):
            frame = data[offset : offset + size]
            self.queue.append(frame)
            self.queued += 1
            self.recorder.received(now, frame)
        if not self._xoff and self.queued >= chanws.XOFF_LEVEL:
            self._xoff = True
            self.counters["xoff"] += 1
            self._event(chanws.MediaXoff(self.channelId))

    def _media(self, data: bytes) -> None:
        if len(data) > 65535 - 14:
            self.protocolError(f"BINARY message of {len(data)} bytes (Asterisk closes with 1009)")
            self.hangup()
            return
        if self.direction == "in":
            self.counters["droppedMessages"] += 1
            return
        if self.queued >= chanws.QUEUE_MAX:
            self.counters["droppedMessages"] += 1  # Asterisk discards while full
            return
        now = self.clock.seconds()
        if self._bulk:
            self._leftover += data
            data = bytes(self._leftover)
            keep = len(data) % self.frameSize
            self._leftover = bytearray(data[len(data) - keep :]) if keep else bytearray()
            self._enqueue(now, data[: len(data) - keep])
            return
        tail = len(data) % self.frameSize
        if tail:
            self.counters["droppedBytes"] += tail  # partial frame outside buffering
        self._enqueue(now, data)

    # -- commands ----------------------------------------------------------

    def received(self, data: bytes, isBinary: bool) -> None:
        if isBinary:
            self._media(data)
            return
        try:
            command = chanws.decodeCommand(data)
        except chanws.ChanWsError as e:
            self.protocolError(f"bad command from the gateway: {e}")
            if e.code != chanws.TOO_LARGE:  # a long one Asterisk silently ignores
                self._event(chanws.ErrorEvent(e.reason[:80], self.channelId))
            return
        if isinstance(command, chanws.SetMediaDirection):
            self.direction = command.direction
        elif isinstance(command, chanws.UnknownCommand):
            self.counters["unknown"] += 1
        else:
            self._command(command.command, command.correlationId or "")

    def _command(self, command: chanws.Command, correlationId: str) -> None:
        Command = chanws.Command
        self.counters[command.value] += 1
        if command is Command.HANGUP:
            self.fail("the gateway sent HANGUP")
            self.hangup("gateway")
        elif command is Command.START_MEDIA_BUFFERING:
            self._bulk = True
        elif command is Command.STOP_MEDIA_BUFFERING:
            if self._leftover:
                pad = self.frameSize - len(self._leftover)
                self._leftover += self.audio.format.silence[:1] * pad
                self._enqueue(self.clock.seconds(), bytes(self._leftover))
                self._leftover.clear()
            self._bulk = False
            self.queue.append(_Control(False, correlationId))
        elif command is Command.FLUSH_MEDIA:
            self.queue.clear()
            self.queued = 0
            self._leftover.clear()
            self._bulk = self._paused = False
        elif command is Command.PAUSE_MEDIA:
            self._paused = True
        elif command is Command.CONTINUE_MEDIA:
            self._paused = False
        elif command is Command.MARK_MEDIA:
            self.queue.append(_Control(True, correlationId))
        elif command is Command.REPORT_QUEUE_DRAINED:
            self._reportDrained = True
        elif command is Command.GET_STATUS:
            self._event(
                chanws.Status(
                    channelId=self.channelId,
                    queueLength=self.queued,
                    xonLevel=chanws.XON_LEVEL,
                    xoffLevel=chanws.XOFF_LEVEL,
                    queueFull=self.queued >= chanws.QUEUE_MAX,
                    bulkMedia=self._bulk,
                    mediaPaused=self._paused,
                )
            )


class AsteriskWsCall(SimCall):
    """
    An Asterisk call through C{Dial(WebSocket/...)} (chan_websocket).
    """

    transport = "asterisk-ws"

    @classmethod
    def wireFormat(cls, options: CallOptions) -> WireFormat:
        fmt = chanws.mediaFormat(options.codec)
        return wireFormat("pcm16" if fmt.codec == "slin" else fmt.codec, fmt.sampleRate)

    async def connect(self, result: CallResult) -> MediaStream:
        options, env = self.options, self.env
        contextId = await _contextId(self)
        result.contextId = contextId
        try:
            control = chanws.ControlFormat(options.controlFormat)
        except ValueError:
            raise SimError(f"unknown control format {options.controlFormat!r}") from None
        stream = AsteriskWsStream(
            env.clock,
            env.ticker,
            self.audio(),
            options.plan,
            control,
            chanws.mediaFormat(options.codec),
            connectionId="rapida",
        )
        result.stream = stream
        # as Dial(WebSocket/rapida/c(ulaw)v(contextId=...)) connects: the
        # section's fixed URI plus the context id that v() appends
        url = wsURL(options.gateway, f"/v1/talk/asterisk/ctx?contextId={contextId}")
        await env.connector.webSocket(url, {}, stream, options.timeout)
        return stream
