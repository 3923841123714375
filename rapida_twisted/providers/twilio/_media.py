# -*- test-case-name: tests.test_twilio_media -*-
"""
The Twilio Media Streams adapter (protocols.md §1.5-§1.9): translates the
stream's JSON messages into call-session events and the session's audio,
marks and clears back into Twilio messages.

  - C{connected}: noted. C{start}: the C{token} custom parameter must match
    the context (else close 4403 and an C{error} event), the context is
    claimed (4409 already claimed, 4410 expired or ended, 4404 unknown),
    the CallSid recorded, the format taken from C{mediaFormat} and the
    L{CallSession} started. Messages other than C{connected} before
    C{start}: close 4400.
  - C{media} → audio, C{dtmf} → digits, C{mark} → acknowledgements,
    C{stop} → a provider hang-up; a socket closed without C{stop} ends
    the session too.
  - Malformed messages are logged and counted; before C{start}, or
    several in a row, they close the stream with 4400. Unknown events are
    counted and ignored. Nothing raises out of the adapter.
  - Hang-up from the assistant: Twilio's REST API (C{Status=completed})
    when credentials are configured, then the socket is closed.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from typing import Any, Final
from urllib.parse import quote
from xml.sax.saxutils import escape

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from zope.interface import implementer

from ...assistants import AssistantRegistry, UnknownAssistant
from ...call import AudioFormat, CallSession, EventLog, FormatError
from ...interfaces import ICallTransport, IMediaAdapter, IMediaChannel
from ...store._model import (
    CallContext,
    ContextAlreadyClaimed,
    ContextExpired,
    ContextFinished,
    ContextNotFound,
    StoreUnavailable,
    tokenMatches,
)
from .._base import WebhookRequest
from ._codec import (
    WRONG_TYPE,
    Connected,
    Dtmf,
    Mark,
    Media,
    Message,
    ProtocolError,
    Start,
    Stop,
    Unknown,
    decode,
    encodeClear,
    encodeMark,
    encodeMedia,
)

__all__ = [
    "CLOSE_INTERNAL",
    "CLOSE_STORE_UNAVAILABLE",
    "REST_BASE",
    "TwilioMediaAdapter",
]

#: close codes (SPEC §4); Autobahn only sends 1000 and 3000-4999
CLOSE_NORMAL: Final = 1000
CLOSE_MALFORMED: Final = 4400
CLOSE_FORBIDDEN: Final = 4403
CLOSE_UNKNOWN: Final = 4404
CLOSE_CLAIMED: Final = 4409
CLOSE_EXPIRED: Final = 4410
#: an unexpected failure inside the gateway
CLOSE_INTERNAL: Final = 4500
#: the context store did not answer
CLOSE_STORE_UNAVAILABLE: Final = 4503

#: Twilio's REST API root
REST_BASE: Final = "https://api.twilio.com/2010-04-01"

#: seconds a REST request may take
REST_TIMEOUT: Final = 10.0

#: seconds to wait for C{start} after the socket opens
START_TIMEOUT: Final = 10.0

#: messages held while the context is being claimed
MAX_HELD: Final = 100

#: malformed messages in a row that end a running stream
MAX_BAD_IN_A_ROW: Final = 10

#: inbound tracks whose audio is the caller's
_CALLER_TRACKS: Final = frozenset({"inbound", "inbound_track"})

_ENCODINGS: Final = {
    "audio/x-mulaw": "ulaw",
    "audio/pcmu": "ulaw",
    "audio/x-alaw": "alaw",
    "audio/pcma": "alaw",
    "audio/l16": "l16",
}

_WAITING, _CLAIMING, _RUNNING, _CLOSED = "waiting", "claiming", "running", "closed"


def _closeReason(reason: str) -> str:
    """
    A close reason Autobahn accepts (at most 123 bytes of UTF-8).
    """
    return reason.encode("ascii", "replace").decode("ascii")[:120]


@implementer(IMediaAdapter, ICallTransport)
class TwilioMediaAdapter:
    """
    One Twilio media stream. Built by L{TwilioProvider.mediaAdapter}'s
    factory as C{factory(channel, context, gateway, request)}.

    @param channel: the WebSocket (L{IMediaChannel}).
    @param context: the call context (checked, not yet claimed).
    @param gateway: the L{rapida_twisted.gateway.Gateway}.
    @param request: the upgrade request.
    @param assistants: where the context's assistant is found.
    @param http: a treq-like HTTP client (C{post(url, data=, auth=)}) for
        Twilio's REST API; None: one on the gateway's reactor.
    @param startTimeout: seconds to wait for C{start}.
    """

    paced = False
    supportsMarks = True
    _log = Logger()

    def __init__(
        self,
        channel: IMediaChannel,
        context: CallContext,
        gateway: Any,
        request: WebhookRequest,
        *,
        assistants: AssistantRegistry,
        http: Any = None,
        startTimeout: float = START_TIMEOUT,
    ) -> None:
        self._channel = channel
        self.context = context
        self._gateway = gateway
        self._clock = gateway.clock
        self._request = request
        self._assistants = assistants
        self._http = http
        self._startTimeout = startTimeout
        self._errors = gateway.metrics.protocolErrors
        self.events = EventLog(gateway, context.context_id)
        self.audioFormat = AudioFormat("ulaw", 8000)
        self.session: CallSession | None = None
        self.streamSid = ""
        self.callSid = context.channel_uuid
        self._state = _WAITING
        self._held: deque[Message] = deque(maxlen=MAX_HELD)
        self._badInARow = 0
        self._unknownSeen: set[str] = set()
        self._startTimer: IDelayedCall | None = None
        self._stopped = False
        self._hangingUp = False
        self._claimed = False
        #: (reason, outcome) when the stream closed while the claim was on its way
        self._closedWhileClaiming: tuple[str, str] | None = None

    # --- IMediaAdapter -------------------------------------------------------

    def opened(self) -> None:
        self._startTimer = self._clock.callLater(self._startTimeout, self._noStart)

    def messageReceived(self, payload: bytes, isBinary: bool) -> None:
        state = self._state
        if state is _CLOSED:
            return
        if isBinary:
            self._malformed(
                ProtocolError(WRONG_TYPE, "binary message: Twilio Media Streams send JSON text")
            )
            return
        try:
            message = decode(payload)
        except ProtocolError as e:
            self._malformed(e)
            return
        self._badInARow = 0
        if state is _RUNNING:
            if type(message) is Media:
                session = self.session
                assert session is not None
                if message.track is None or message.track in _CALLER_TRACKS:
                    session.audioReceived(message.payload)
                return
            self._dispatch(message)
        elif state is _CLAIMING:
            if type(message) is Unknown:
                self._unknown(message)
            elif type(message) is not Connected:
                held = self._held
                if len(held) == held.maxlen:
                    self._gateway.metrics.framesDropped.labels("inbound").inc()
                held.append(message)
        else:
            self._beforeStart(message)

    def closed(self, code: int | None, reason: str) -> None:
        state = self._state
        self._cancelStartTimer()
        if state is _CLOSED:
            return
        self._state = _CLOSED
        why = f"socket closed ({code})" if not reason else f"socket closed ({code}): {reason}"
        if state is _RUNNING:
            assert self.session is not None
            self.session.ended(why)
        elif state is _CLAIMING:
            self._closedWhileClaiming = (why, "completed")

    # --- messages --------------------------------------------------------------

    def _beforeStart(self, message: Message) -> None:
        kind = type(message)
        if kind is Connected:
            return
        if kind is Start:
            assert isinstance(message, Start)
            self._start(message)
        elif kind is Unknown:
            assert isinstance(message, Unknown)
            self._unknown(message)
        else:
            self._count("before_start")
            self._refuse(
                CLOSE_MALFORMED,
                "before_start",
                f"{_eventName(message)} before start",
            )

    def _dispatch(self, message: Message) -> None:
        """
        A message of a running stream (media has its own fast path).
        """
        session = self.session
        assert session is not None
        if isinstance(message, Media):
            if message.track is None or message.track in _CALLER_TRACKS:
                session.audioReceived(message.payload)
        elif isinstance(message, Mark):
            session.markAcknowledged(message.name)
        elif isinstance(message, Dtmf):
            session.dtmfReceived(message.digit)
        elif isinstance(message, Stop):
            self._stopped = True
            if message.callSid and not self.callSid:
                self.callSid = message.callSid
            session.hangup("stop", source="provider")
        elif isinstance(message, Unknown):
            self._unknown(message)
        elif isinstance(message, Start):
            self._count("duplicate_start")
            self._log.warn(
                "twilio stream {context_id}: a second start message, ignored",
                context_id=self.context.context_id,
            )

    def _start(self, start: Start) -> None:
        self._cancelStartTimer()
        if not tokenMatches(self.context, start.token):
            self._count("bad_token")
            self._refuse(
                CLOSE_FORBIDDEN,
                "bad_token",
                "the token parameter is missing" if not start.token
                else "the token parameter does not match this call",
            )
            return
        codec = _ENCODINGS.get(start.encoding.lower())
        try:
            if codec is None or start.channels != 1:
                raise FormatError(
                    f"{start.encoding} with {start.channels} channels is not supported"
                )
            audioFormat = AudioFormat(codec, start.sampleRate)
        except FormatError as e:
            self._count("bad_format")
            self._refuse(CLOSE_MALFORMED, "bad_format", f"media format: {e}")
            return
        self.audioFormat = audioFormat
        self.streamSid = start.streamSid
        if start.callSid:
            self.callSid = start.callSid
        self._state = _CLAIMING
        d = Deferred.fromCoroutine(self._claim(start))
        d.addErrback(self._crashed, "start")

    async def _claim(self, start: Start) -> None:
        gateway = self._gateway
        store = gateway.store
        contextId = self.context.context_id
        try:
            context: CallContext = await gateway.storeOp("claim", store.claim, contextId)
        except ContextAlreadyClaimed:
            self._refuse(CLOSE_CLAIMED, "already_claimed", "the call context was already claimed")
            return
        except ContextExpired:
            self._refuse(CLOSE_EXPIRED, "expired", "the call context expired before it was claimed")
            return
        except ContextFinished:
            self._refuse(CLOSE_EXPIRED, "finished", "the call has already ended")
            return
        except ContextNotFound:
            self._refuse(CLOSE_UNKNOWN, "unknown_context", "no such call context", record=False)
            return
        except StoreUnavailable:
            self._refuse(
                CLOSE_STORE_UNAVAILABLE, "store_unavailable", "the context store is unavailable",
                record=False,
            )
            return
        self._claimed = True
        events = self.events
        events.append(
            "gateway", "claimed", {"stream_sid": start.streamSid, "call_sid": start.callSid or ""}
        )
        if self.callSid and not context.channel_uuid:
            events.run("set_channel", store.setChannel, contextId, self.callSid)
            context = replace(context, channel_uuid=self.callSid)
        self.context = context
        if self._state is _CLOSED:
            # the stream ended while the claim was on its way
            reason, outcome = self._closedWhileClaiming or ("closed", "completed")
            self._finishUnstarted(reason, outcome)
            return
        try:
            assistant = self._assistants.get(context.assistant_id)
        except UnknownAssistant:
            self._refuse(
                CLOSE_UNKNOWN, "unknown_assistant", f"no assistant {context.assistant_id!r}"
            )
            return
        self.session = session = CallSession(self._clock, gateway, context, self, assistant)
        self._state = _RUNNING
        self._log.info(
            "twilio stream {stream_sid} of call {call_sid} claimed context {context_id}",
            stream_sid=self.streamSid,
            call_sid=self.callSid,
            context_id=contextId,
        )
        session.start()
        held = self._held
        while held and self._state is _RUNNING:
            self._dispatch(held.popleft())

    # --- errors ----------------------------------------------------------------

    def _count(self, code: str) -> None:
        self._errors.labels("twilio", code).inc()

    def _malformed(self, error: ProtocolError) -> None:
        self._badInARow += 1
        self._count(error.code)
        self._log.warn(
            "twilio stream {context_id}: malformed message ({code}): {reason}",
            context_id=self.context.context_id,
            code=error.code,
            reason=error.reason,
        )
        if self._state is _WAITING or self._badInARow >= MAX_BAD_IN_A_ROW:
            self._refuse(CLOSE_MALFORMED, error.code, f"malformed message: {error.reason}")

    def _unknown(self, message: Unknown) -> None:
        self._count("unknown_event")
        if message.event not in self._unknownSeen and len(self._unknownSeen) < 16:
            self._unknownSeen.add(message.event)
            self._log.info(
                "twilio stream {context_id}: unknown event {event!r} ignored",
                context_id=self.context.context_id,
                event=message.event,
            )

    def _noStart(self) -> None:
        self._startTimer = None
        if self._state is _WAITING:
            self._count("no_start")
            self._refuse(
                CLOSE_MALFORMED, "no_start", f"no start message within {self._startTimeout:g} s"
            )

    def _refuse(self, code: int, errorCode: str, reason: str, record: bool = True) -> None:
        """
        Close the stream with C{code} and C{reason}: an C{error} event
        (when C{record}), and a claimed call ends as failed.
        """
        state = self._state
        if state is _CLOSED:
            return
        self._state = _CLOSED
        self._cancelStartTimer()
        self._log.warn(
            "twilio stream {context_id} closed with {close_code}: {error_code}: {reason}",
            context_id=self.context.context_id,
            close_code=code,
            error_code=errorCode,
            reason=reason,
        )
        if record:
            self.events.append("gateway", "error", {"code": errorCode, "reason": reason})
        session = self.session
        if session is not None:
            session.ended(reason, "failed", source="gateway")
        elif state is _CLAIMING:
            if self._claimed:
                self._finishUnstarted(reason, "failed")
            else:
                self._closedWhileClaiming = (reason, "failed")
        self._channel.close(code, _closeReason(reason))

    def _finishUnstarted(self, reason: str, outcome: str) -> None:
        """
        End a claimed context that never got a call session.
        """
        source = "provider" if outcome == "completed" else "gateway"
        self.events.append(source, "ended", {"reason": reason, "outcome": outcome})
        self.events.run(
            "finish", self._gateway.store.finish, self.context.context_id, outcome, reason
        )

    def _crashed(self, failure: Failure, where: str) -> None:
        self._log.failure(
            "twilio stream {context_id}: {where} failed",
            failure,
            LogLevel.error,
            context_id=self.context.context_id,
            where=where,
        )
        self._refuse(CLOSE_INTERNAL, "internal_error", "internal error")

    def _cancelStartTimer(self) -> None:
        timer, self._startTimer = self._startTimer, None
        if timer is not None and timer.active():
            timer.cancel()

    # --- ICallTransport ----------------------------------------------------------

    def sendAudio(self, frame: bytes) -> None:
        self._channel.sendText(encodeMedia(self.streamSid, frame))

    def sendMark(self, name: str) -> None:
        self._channel.sendText(encodeMark(self.streamSid, name))

    def sendClear(self) -> None:
        self._channel.sendText(encodeClear(self.streamSid))

    def sendDtmf(self, digit: str) -> bool:
        """
        Media Streams cannot send DTMF.
        """
        return False

    def transfer(self, target: str) -> Deferred[bool]:
        """
        Redirect the live call to C{<Dial>target</Dial>} through the REST
        API (False without credentials or a CallSid).
        """
        if not self._canUseRest():
            return succeed(False)
        twiml = f"<Response><Dial>{escape(target)}</Dial></Response>"
        return Deferred.fromCoroutine(self._updateCall({"Twiml": twiml}, "transfer"))

    def hangup(self, reason: str) -> None:
        """
        End the call: Twilio's REST API when credentials are configured
        and the call is still up, then close the socket.
        """
        if self._hangingUp:
            return
        self._hangingUp = True
        if self._stopped or not self._canUseRest():
            self._close(reason)
            return
        d = Deferred.fromCoroutine(self._restHangup(reason))
        d.addErrback(self._crashed, "hangup")

    async def _restHangup(self, reason: str) -> None:
        try:
            await self._updateCall({"Status": "completed"}, "hangup", goneIsDone=True)
        finally:
            self._close(reason)

    def _close(self, reason: str) -> None:
        self._channel.close(CLOSE_NORMAL, _closeReason(reason))

    # --- REST ------------------------------------------------------------------

    def _canUseRest(self) -> bool:
        credentials = self._gateway.config.twilio
        return bool(credentials.account_sid and credentials.auth_token and self.callSid)

    def _client(self) -> Any:
        if self._http is None:
            from treq.client import HTTPClient
            from twisted.web.client import Agent

            self._http = HTTPClient(Agent(self._clock))
        return self._http

    async def _updateCall(
        self, params: dict[str, str], action: str, goneIsDone: bool = False
    ) -> bool:
        """
        POST to the call's REST resource; True when Twilio accepted it (or,
        with C{goneIsDone}, when the call no longer exists).
        """
        credentials = self._gateway.config.twilio
        sid = credentials.account_sid
        url = f"{REST_BASE}/Accounts/{quote(sid, safe='')}/Calls/{quote(self.callSid, safe='')}.json"
        try:
            d = self._client().post(url, data=params, auth=(sid, credentials.auth_token))
            d.addTimeout(REST_TIMEOUT, self._clock)
            response = await d
            body = await response.content()
        except Exception as e:
            self._log.error(
                "twilio {action} of call {call_sid} failed: {error}",
                action=action,
                call_sid=self.callSid,
                error=repr(e),
            )
            return False
        code = response.code
        if 200 <= code < 300:
            self._log.info("twilio {action} of call {call_sid} done", action=action, call_sid=self.callSid)
            return True
        if code == 404 and goneIsDone:
            self._log.info(
                "twilio {action}: call {call_sid} had already ended", action=action, call_sid=self.callSid
            )
            return True
        self._log.error(
            "twilio {action} of call {call_sid} refused: HTTP {status} {body}",
            action=action,
            call_sid=self.callSid,
            status=code,
            body=body[:300].decode("utf-8", "replace"),
        )
        return False


def _eventName(message: Message) -> str:
    return {
        Media: "media",
        Mark: "mark",
        Dtmf: "dtmf",
        Stop: "stop",
        Start: "start",
        Connected: "connected",
    }.get(type(message), "message")
