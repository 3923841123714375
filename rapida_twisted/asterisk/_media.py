# -*- test-case-name: tests.test_chanws_media -*-
"""
The Asterisk chan_websocket media adapter (protocols.md §5): Asterisk
dials C{WebSocket/<connection>} and connects to
C{/v1/talk/asterisk/ctx/{contextId}} (or C{...?contextId=}); the route has
already claimed the context at the upgrade. The life cycle (close codes,
malformed input, start timeout, crash containment) is
L{rapida_twisted.providers._stream.StreamAdapter}'s; this module is the
wire translation:

  - C{MEDIA_START} (plain-text or JSON; always the first message): the
    C{format} (C{ulaw}, C{alaw}, C{slin}, C{slin16}, C{slin24}; others
    close the stream with 4400), C{ptime} (the frame duration),
    C{optimal_frame_size}, and C{channel_id} (recorded as the context's
    channel). Commands are then sent in the control format it came in.
  - BINARY messages are caller audio in that format; C{DTMF_END} → the
    session (one C{dtmf} event each); C{ERROR} → an C{error} event; the
    socket closing (Asterisk's hang-up) ends the call.
  - Outbound: one BINARY message per frame, as fast as the session's
    C{maxLead} allows (Asterisk re-times, §5.3). Frames are C{ptime} long,
    so each is a whole C{optimal_frame_size} frame; if they are not (a
    partial frame Asterisk would drop), audio is wrapped in
    C{START_MEDIA_BUFFERING} ... C{STOP_MEDIA_BUFFERING}, which keeps the
    partial tail and flushes it at each response's end.
  - Marks: C{MARK_MEDIA <id>} → C{MEDIA_MARK_PROCESSED <id>} once the
    audio before it has played (20.18 / 22.8 / 23.2 and later, which also
    send C{channel_id} in C{MEDIA_START}). Older builds (no C{channel_id})
    get the same from C{STOP_MEDIA_BUFFERING <id>} →
    C{MEDIA_BUFFERING_COMPLETED <id>}, which rides in the same queue.
  - Barge-in: C{FLUSH_MEDIA} (drops Asterisk's queue and partial data).
  - Flow control: after C{MEDIA_XOFF} nothing more is sent (audio and
    marks wait here, in order, at most L{MAX_PAUSED} frames; the oldest
    audio is dropped beyond) until C{MEDIA_XON}, or a barge-in, which
    empties Asterisk's queue.
  - Assistant hang-up: C{HANGUP}, then a normal close.
  - A JSON C{MEDIA_START} whose channel variables carry
    C{RAPIDA_CONTEXT_ID} naming another context than the URL's is closed
    with 4409: Asterisk stores C{v()} on the shared C{websocket_client}
    section just before connecting, so two concurrent Dials could swap
    ids.

Every command goes through L{encodeCommand}, which keeps it within
Asterisk's 128-byte limit.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Final

from ..call import AudioFormat, FormatError
from ..providers._json import BAD_AUDIO, ProtocolError
from ..providers._json import Unknown as UnknownMessage
from ..providers._stream import CLOSE_CLAIMED, CLOSE_MALFORMED, StreamAdapter
from ._chanws import (
    ChanWsError,
    Command,
    ControlFormat,
    DtmfEnd,
    ErrorEvent,
    Event,
    MediaBufferingCompleted,
    MediaMarkProcessed,
    MediaStart,
    MediaXoff,
    MediaXon,
    QueueDrained,
    Status,
    Unknown,
    decodeEvent,
    encodeCommand,
    mediaFormat,
)

__all__ = ["CONTEXT_VARIABLE", "MAX_PAUSED", "TRANSPORT", "ChanWebSocketAdapter", "wireFormat"]

#: the metrics' transport label
TRANSPORT: Final = "chan_websocket"

#: frames held while Asterisk has said MEDIA_XOFF (10 s at 20 ms)
MAX_PAUSED: Final = 500

#: Asterisk format codec → the session's codec name
_CODECS: Final = {"ulaw": "ulaw", "alaw": "alaw", "slin": "l16"}

_NAMES: Final = {
    bytes: "media",
    MediaStart: "MEDIA_START",
    DtmfEnd: "DTMF_END",
    MediaXoff: "MEDIA_XOFF",
    MediaXon: "MEDIA_XON",
    MediaMarkProcessed: "MEDIA_MARK_PROCESSED",
    MediaBufferingCompleted: "MEDIA_BUFFERING_COMPLETED",
    ErrorEvent: "ERROR",
}


#: the channel variable a dialplan may set (inherited, e.g.
#: C{__RAPIDA_CONTEXT_ID}) so JSON C{MEDIA_START} names the context too
CONTEXT_VARIABLE: Final = "RAPIDA_CONTEXT_ID"


def _namedContext(start: MediaStart) -> str | None:
    """
    The context id in C{MEDIA_START}'s channel variables (JSON control
    format only), with or without inheritance underscores.
    """
    variables = start.channelVariables
    for name in (CONTEXT_VARIABLE, "_" + CONTEXT_VARIABLE, "__" + CONTEXT_VARIABLE):
        value = variables.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def wireFormat(start: MediaStart) -> AudioFormat:
    """
    The session's wire format for a C{MEDIA_START}: its codec and rate,
    in frames of its C{ptime} (20 ms when that is unusable).

    @raise FormatError: a format the media core cannot handle.
    """
    try:
        fmt = mediaFormat(start.format)
    except ChanWsError as e:
        raise FormatError(e.reason) from None
    codec = _CODECS[fmt.codec]
    try:
        return AudioFormat(codec, fmt.sampleRate, start.ptime)
    except FormatError:
        return AudioFormat(codec, fmt.sampleRate)


class ChanWebSocketAdapter(StreamAdapter):
    """
    One chan_websocket connection (see L{StreamAdapter} for the
    constructor).

    @ivar start: the C{MEDIA_START} event, once received.
    @ivar controlFormat: the control format commands are sent in.
    @ivar wrapped: whether outbound audio is wrapped in
        C{START_MEDIA_BUFFERING}/C{STOP_MEDIA_BUFFERING}.
    @ivar marksByBuffering: whether marks are C{STOP_MEDIA_BUFFERING <id>}
        (Asterisk builds without C{MARK_MEDIA}).
    @ivar paused: Asterisk said C{MEDIA_XOFF} and not yet C{MEDIA_XON}.
    @ivar xoffs: how many times it did.
    @ivar asteriskErrors: C{ERROR} events received.
    """

    name = TRANSPORT
    startEvent = "MEDIA_START"
    claimsAtStart = False
    supportsMarks = True

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.start: MediaStart | None = None
        self.controlFormat = ControlFormat.PLAIN
        self.wrapped = False
        self.marksByBuffering = False
        self.paused = False
        self.xoffs = 0
        self.asteriskErrors = 0
        self._buffering = False
        #: (binary?, payload) waiting for MEDIA_XON
        self._heldOut: deque[tuple[bool, bytes | str]] = deque()
        self._heldFrames = 0
        self._dropped = self._gateway.metrics.framesDropped.labels("outbound")
        #: MEDIA_START handed to the base (the call session is its business)
        self._begun = False
        #: the stream is over (refused or closed)
        self._over = False
        self._evenOnly = False

    # --- wire → session ------------------------------------------------------------

    def decode(self, payload: bytes, isBinary: bool) -> Event | bytes | UnknownMessage:
        if isBinary:
            if self._evenOnly and len(payload) & 1:
                raise ProtocolError(BAD_AUDIO, f"slin media of odd length {len(payload)}")
            return payload
        try:
            event = decodeEvent(payload)
        except ChanWsError as e:
            raise ProtocolError(e.code, e.reason) from None
        if type(event) is Unknown:
            return UnknownMessage(event.event, {"raw": event.raw})
        if type(event) is MediaStart:
            isJson = payload.lstrip()[:1] == b"{"
            self.controlFormat = ControlFormat.JSON if isJson else ControlFormat.PLAIN
        return event

    def describe(self, message: Any) -> str:
        return _NAMES.get(type(message), "message")

    def waiting(self, message: Any) -> bool:
        if type(message) is not MediaStart:
            return False
        start: MediaStart = message
        self.start = start
        try:
            wire = wireFormat(start)
        except FormatError as e:
            self.count("bad_format")
            self.refuse(CLOSE_MALFORMED, "bad_format", f"media format: {e}")
            return True
        named = _namedContext(start)
        if named is not None and named != self.context.context_id:
            # Asterisk keeps v() on the shared websocket_client section:
            # a concurrent Dial can connect with another call's id
            self.count("context_mismatch")
            self.refuse(
                CLOSE_CLAIMED,
                "context_mismatch",
                f"the channel's {CONTEXT_VARIABLE} names another call context",
            )
            return True
        self._evenOnly = wire.sampleWidth == 2
        self.marksByBuffering = not start.channelId
        self.wrapped = self.marksByBuffering or wire.frameBytes % start.optimalFrameSize != 0
        self._begun = True
        self.begin(
            None,
            wire,
            {
                "transport": TRANSPORT,
                "connection_id": start.connectionId or "",
                "channel": start.channel or "",
                "channel_id": start.channelId or "",
                "format": start.format,
                "optimal_frame_size": start.optimalFrameSize,
                "ptime": start.ptime,
                "control_format": self.controlFormat.value,
            },
            start.channelId,
        )
        return True

    def running(self, message: Any) -> None:
        session = self.session
        assert session is not None
        kind = type(message)
        if kind is bytes:
            session.audioReceived(message)
        elif kind is DtmfEnd:
            session.dtmfReceived(message.digit)
        elif kind is MediaMarkProcessed:
            if message.correlationId:
                session.markAcknowledged(message.correlationId)
        elif kind is MediaBufferingCompleted:
            if message.correlationId and self.marksByBuffering:
                session.markAcknowledged(message.correlationId)
        elif kind is MediaXoff:
            self.paused = True
            self.xoffs += 1
        elif kind is MediaXon:
            self._resume()
        elif kind is ErrorEvent:
            self._asteriskError(message)
        elif kind is QueueDrained or kind is Status:
            pass
        elif kind is UnknownMessage:
            self.unknown(message)
        elif kind is MediaStart:
            self.duplicateStart()

    def _asteriskError(self, error: ErrorEvent) -> None:
        self.asteriskErrors += 1
        self.count("asterisk_error")
        self._log.warn(
            "chan_websocket stream {context_id}: Asterisk reports {error_text!r}",
            context_id=self.context.context_id,
            error_text=error.errorText,
        )
        self.events.append(
            "provider", "error", {"code": "asterisk_error", "reason": error.errorText[:200]}
        )

    # --- life cycle: a context claimed at the upgrade ----------------------------------

    def refuse(self, code: int, errorCode: str, reason: str, record: bool = True) -> None:
        first = not self._over
        self._over = True
        super().refuse(code, errorCode, reason, record)
        if first and not self._begun:
            # the route claimed the context; no session will finish it
            self._finishUnstarted(reason, "failed")

    def closed(self, code: int | None, reason: str) -> None:
        first = not self._over
        self._over = True
        super().closed(code, reason)
        if first and not self._begun:
            why = f"socket closed ({code}) before MEDIA_START"
            self._finishUnstarted(why, "completed")

    # --- session → wire ------------------------------------------------------------------

    def _command(self, command: Command, correlationId: str | None = None) -> None:
        """
        Send a command after everything sent before it (held while paused).
        """
        text = encodeCommand(command, self.controlFormat, correlationId)
        if self.paused:
            self._heldOut.append((False, text))
        else:
            self._channel.sendText(text)

    def sendAudio(self, frame: bytes) -> None:
        if self.wrapped and not self._buffering:
            self._buffering = True
            self._command(Command.START_MEDIA_BUFFERING)
        if not self.paused:
            self._channel.sendBinary(frame)
            return
        held = self._heldOut
        held.append((True, frame))
        self._heldFrames += 1
        if self._heldFrames > MAX_PAUSED:
            # drop the oldest audio; commands keep their places
            for i, (binary, _) in enumerate(held):
                if binary:
                    del held[i]
                    break
            self._heldFrames -= 1
            self._dropped.inc()

    def sendMark(self, name: str) -> None:
        if self.marksByBuffering:
            if not self._buffering:
                self._command(Command.START_MEDIA_BUFFERING)
            self._buffering = False
            self._command(Command.STOP_MEDIA_BUFFERING, name)
            return
        if self._buffering:
            self._buffering = False
            self._command(Command.STOP_MEDIA_BUFFERING)
        self._command(Command.MARK_MEDIA, name)

    def sendClear(self) -> None:
        """
        Barge-in: forget what waits for XON, and C{FLUSH_MEDIA} (which
        also ends buffering and empties Asterisk's queue, so sending may
        resume).
        """
        self._heldOut.clear()
        self._heldFrames = 0
        self.paused = False
        self._buffering = False
        self._command(Command.FLUSH_MEDIA)

    def _resume(self) -> None:
        """
        C{MEDIA_XON}: send what waited, in order.
        """
        self.paused = False
        held, self._heldOut = self._heldOut, deque()
        self._heldFrames = 0
        channel = self._channel
        for binary, payload in held:
            if binary:
                assert isinstance(payload, bytes)
                channel.sendBinary(payload)
            else:
                assert isinstance(payload, str)
                channel.sendText(payload)

    # --- hang-up -----------------------------------------------------------------------

    def canHangUpRemotely(self) -> bool:
        """
        C{HANGUP} works whenever the socket is open.
        """
        return not self._over

    async def hangUpRemotely(self) -> None:
        """
        C{HANGUP} (cause NORMAL); Asterisk then closes the socket too.
        """
        self._channel.sendText(encodeCommand(Command.HANGUP, self.controlFormat))
