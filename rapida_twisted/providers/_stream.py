# -*- test-case-name: tests.test_twilio_media,tests.test_vonage_media,tests.test_exotel_media -*-
"""
What every WebSocket provider's media adapter shares (SPEC §4): the
stream's life cycle around one L{CallSession}, so that each provider's
adapter is only its wire translation.

L{StreamAdapter} is the base class. A stream goes C{waiting} (socket open,
no start message yet) → C{claiming} (the start message arrived: token
checked, the context being claimed) → C{running} (the call session is
up) → C{closed}. It owns:

  - the start timeout (close 4400 when no start message arrives);
  - the per-call token check (4403) and the claim, mapping the store's
    refusals to close codes (4409 claimed, 4410 expired or ended, 4404
    unknown, 4503 store unavailable) with an C{error} call event;
    providers whose context was claimed at the upgrade
    (C{claimsAtStart = False}, e.g. chan_websocket) skip both;
  - messages that arrive during the claim, held (at most L{MAX_HELD}) and
    replayed in order once the session runs;
  - malformed messages: logged, counted in
    C{rapida_protocol_errors{transport, reason}}; before the start, or
    L{MAX_BAD_IN_A_ROW} in a row, they close the stream with 4400;
    unknown events are counted and ignored;
  - a socket closed before, during or after the claim (the context is
    finished either way), the provider's own stop, the assistant's
    hang-up (the provider's REST hang-up if it has one, then a normal
    close), and containment of any exception (4500, the call fails).

A subclass sets C{name} (the metrics label), C{startEvent} (for refusal
reasons) and implements L{StreamAdapter.decode},
L{StreamAdapter.waiting}, L{StreamAdapter.running} and the
L{ICallTransport} senders; it calls L{StreamAdapter.begin} with the
start message's token and wire format, and L{StreamAdapter.stopped}
when the provider ends the stream.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, ClassVar, Final

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from zope.interface import implementer

from ..assistants import AssistantRegistry, UnknownAssistant
from ..call import AudioFormat, CallSession, EventLog, FormatError
from ..interfaces import ICallTransport, IMediaAdapter, IMediaChannel
from ..store._model import (
    CallContext,
    ContextAlreadyClaimed,
    ContextExpired,
    ContextFinished,
    ContextNotFound,
    StoreUnavailable,
    tokenMatches,
)
from ._base import WebhookRequest
from ._json import ProtocolError, Unknown

__all__ = [
    "CLOSE_CLAIMED",
    "CLOSE_EXPIRED",
    "CLOSE_FORBIDDEN",
    "CLOSE_INTERNAL",
    "CLOSE_MALFORMED",
    "CLOSE_NORMAL",
    "CLOSE_STORE_UNAVAILABLE",
    "CLOSE_UNKNOWN",
    "MAX_BAD_IN_A_ROW",
    "MAX_HELD",
    "REST_TIMEOUT",
    "START_TIMEOUT",
    "StreamAdapter",
    "closeReason",
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

#: seconds a provider REST request may take
REST_TIMEOUT: Final = 10.0

#: seconds to wait for the start message after the socket opens
START_TIMEOUT: Final = 10.0

#: messages held while the context is being claimed
MAX_HELD: Final = 100

#: malformed messages in a row that end a running stream
MAX_BAD_IN_A_ROW: Final = 10

#: distinct unknown event names logged per stream (all are counted)
MAX_UNKNOWN_LOGGED: Final = 16

_WAITING, _CLAIMING, _RUNNING, _CLOSED = "waiting", "claiming", "running", "closed"


def closeReason(reason: str) -> str:
    """
    A close reason Autobahn accepts (ASCII, at most 120 bytes).
    """
    return reason.encode("ascii", "replace").decode("ascii")[:120]


@implementer(IMediaAdapter, ICallTransport)
class StreamAdapter:
    """
    One provider media stream on a WebSocket; see the module docstring.
    Built by a provider's C{mediaAdapter()} factory as
    C{factory(channel, context, gateway, request)}.

    @param channel: the WebSocket (L{IMediaChannel}).
    @param context: the call context (checked at the upgrade; claimed
        already when C{claimsAtStart} is false).
    @param gateway: the L{rapida_twisted.gateway.Gateway}.
    @param request: the upgrade request (its C{query} may carry the
        token), or None.
    @param assistants: where the context's assistant is found.
    @param http: a treq-like HTTP client (C{request(method, url, **kw)})
        for the provider's REST API; None: C{gateway.http()} when needed.
    @param startTimeout: seconds to wait for the start message.
    @param sessionOptions: keyword arguments for L{CallSession} (for
        example C{maxLead}, or C{pacer} for a paced transport).

    @ivar context: the call context (the claimed one once claimed).
    @ivar session: the L{CallSession} once running, else None.
    @ivar channelId: the provider's call id (the context's
        C{channel_uuid} until the stream names it).
    @ivar events: the call's L{EventLog}.
    """

    #: the provider's name: the metrics' C{transport} label and log field
    name: ClassVar[str] = ""
    #: the message that starts a stream, as refusal reasons name it
    startEvent: ClassVar[str] = "start"
    #: check the token and claim the context at the start message; false
    #: for streams whose context the route claimed at the upgrade
    claimsAtStart: ClassVar[bool] = True
    #: message types dropped rather than held while the claim is on its way
    notHeld: ClassVar[tuple[type, ...]] = ()

    paced = False
    supportsMarks = True
    _log = Logger()

    def __init__(
        self,
        channel: IMediaChannel,
        context: CallContext,
        gateway: Any,
        request: WebhookRequest | None,
        *,
        assistants: AssistantRegistry,
        http: Any = None,
        startTimeout: float = START_TIMEOUT,
        sessionOptions: Mapping[str, Any] | None = None,
    ) -> None:
        self._channel = channel
        self.context = context
        self._gateway = gateway
        self._clock = gateway.clock
        self._request = request
        self._assistants = assistants
        self._http = http
        self._startTimeout = startTimeout
        self._sessionOptions = dict(sessionOptions or {})
        self._errors = gateway.metrics.protocolErrors
        self.events = EventLog(gateway, context.context_id)
        self.audioFormat: AudioFormat | None = None
        self.session: CallSession | None = None
        self.channelId = context.channel_uuid
        self._state = _WAITING
        self._held: deque[Any] = deque(maxlen=MAX_HELD)
        self._badInARow = 0
        self._unknownSeen: set[str] = set()
        self._startTimer: IDelayedCall | None = None
        self._stopped = False
        self._hangingUp = False
        self._claimed = False
        #: (reason, outcome) when the stream closed while the claim was on its way
        self._closedWhileClaiming: tuple[str, str] | None = None

    # --- the wire translation: subclasses implement these ----------------------

    def decode(self, payload: bytes, isBinary: bool) -> Any:
        """
        One WebSocket message as a message object (codec L{Unknown} for
        well-formed messages of unknown events).

        @raise ProtocolError: the message is malformed.
        """
        raise NotImplementedError

    def waiting(self, message: Any) -> bool:
        """
        A message before the stream started (never L{Unknown}): call
        L{begin} for the start message, ignore what may come before it.

        @return: False to refuse the message as arriving before the start
            (close 4400).
        """
        raise NotImplementedError

    def running(self, message: Any) -> None:
        """
        A message of the running stream (or one held during the claim):
        hand it to C{self.session}. L{Unknown} messages are the
        subclass's too (call L{unknown}).
        """
        raise NotImplementedError

    def describe(self, message: Any) -> str:
        """
        The message's event name, for refusal reasons.
        """
        return "message"

    def canHangUpRemotely(self) -> bool:
        """
        Whether L{hangUpRemotely} can end the call on the provider's side
        (credentials configured and the call's id known).
        """
        return False

    async def hangUpRemotely(self) -> None:
        """
        End the call through the provider's REST API (errors are logged
        and swallowed; the socket is closed afterwards either way).
        """

    # --- IMediaAdapter -------------------------------------------------------

    def opened(self) -> None:
        self._startTimer = self._clock.callLater(self._startTimeout, self._noStart)

    def messageReceived(self, payload: bytes, isBinary: bool) -> None:
        state = self._state
        if state is _CLOSED:
            return
        try:
            message = self.decode(payload, isBinary)
        except ProtocolError as e:
            self.malformed(e)
            return
        self._badInARow = 0
        try:
            if state is _RUNNING:
                self.running(message)
            elif state is _CLAIMING:
                self._hold(message)
            elif type(message) is Unknown:
                self.unknown(message)
            elif not self.waiting(message) and self._state is _WAITING:
                self.count("before_start")
                self.refuse(
                    CLOSE_MALFORMED,
                    "before_start",
                    f"{self.describe(message)} before {self.startEvent}",
                )
        except Exception:
            self._crashed(Failure(), "message")

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

    # --- for subclasses ----------------------------------------------------------

    def begin(
        self,
        token: str | None,
        wire: AudioFormat | FormatError,
        claimed: Mapping[str, Any],
        channelId: str | None = None,
    ) -> None:
        """
        The start message arrived: check C{token} (4403), take the wire
        format (4400 when it is a L{FormatError}), claim the context and
        start the call session.

        @param claimed: the payload of the C{claimed} call event (the
            provider's stream and call ids).
        @param channelId: the provider's call id, if the message names it.
        """
        if self._state is not _WAITING:
            return
        self._cancelStartTimer()
        if self.claimsAtStart and not tokenMatches(self.context, token):
            self.count("bad_token")
            self.refuse(
                CLOSE_FORBIDDEN,
                "bad_token",
                "the token parameter is missing"
                if not token
                else "the token parameter does not match this call",
            )
            return
        if isinstance(wire, FormatError):
            self.count("bad_format")
            self.refuse(CLOSE_MALFORMED, "bad_format", f"media format: {wire}")
            return
        self.audioFormat = wire
        if channelId:
            self.channelId = channelId
        self._state = _CLAIMING
        d = Deferred.fromCoroutine(self._claim(dict(claimed)))
        d.addErrback(self._crashed, "start")

    def stopped(self, reason: str = "stop") -> None:
        """
        The provider ended the stream (its stop message): the call is
        hung up from the provider's side, without a REST hang-up.
        """
        self._stopped = True
        session = self.session
        if session is not None:
            session.hangup(reason, source="provider")

    def duplicateStart(self) -> None:
        """
        A second start message: counted, logged, ignored.
        """
        self.count("duplicate_start")
        self._log.warn(
            "{provider} stream {context_id}: a second {event}, ignored",
            provider=self.name,
            context_id=self.context.context_id,
            event=self.startEvent,
        )

    def count(self, code: str) -> None:
        """
        Count one protocol error of this provider.
        """
        self._errors.labels(self.name, code).inc()

    def malformed(self, error: ProtocolError) -> None:
        """
        A message that cannot be decoded: logged and counted; it closes
        the stream (4400) before the start or after L{MAX_BAD_IN_A_ROW}
        in a row.
        """
        self._badInARow += 1
        self.count(error.code)
        self._log.warn(
            "{provider} stream {context_id}: malformed message ({code}): {reason}",
            provider=self.name,
            context_id=self.context.context_id,
            code=error.code,
            reason=error.reason,
        )
        if self._state is _WAITING or self._badInARow >= MAX_BAD_IN_A_ROW:
            self.refuse(CLOSE_MALFORMED, error.code, f"malformed message: {error.reason}")

    def unknown(self, message: Unknown) -> None:
        """
        An event this codec does not know: counted, logged once per name.
        """
        self.count("unknown_event")
        seen = self._unknownSeen
        if message.event not in seen and len(seen) < MAX_UNKNOWN_LOGGED:
            seen.add(message.event)
            self._log.info(
                "{provider} stream {context_id}: unknown event {event!r} ignored",
                provider=self.name,
                context_id=self.context.context_id,
                event=message.event,
            )

    def refuse(self, code: int, errorCode: str, reason: str, record: bool = True) -> None:
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
            "{provider} stream {context_id} closed with {close_code}: {error_code}: {reason}",
            provider=self.name,
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
        self._channel.close(code, closeReason(reason))

    def close(self, reason: str) -> None:
        """
        Close the socket normally (1000); what arrives afterwards is ignored.
        """
        self._state = _CLOSED
        self._cancelStartTimer()
        self._channel.close(CLOSE_NORMAL, closeReason(reason))

    @property
    def isRunning(self) -> bool:
        """
        Whether the call session is up (and the stream not closed).
        """
        return self._state is _RUNNING

    # --- claiming ------------------------------------------------------------------

    def _hold(self, message: Any) -> None:
        if type(message) is Unknown:
            self.unknown(message)
        elif type(message) not in self.notHeld:
            held = self._held
            if len(held) == held.maxlen:
                self._gateway.metrics.framesDropped.labels("inbound").inc()
            held.append(message)

    async def _claim(self, claimed: dict[str, Any]) -> None:
        gateway = self._gateway
        store = gateway.store
        contextId = self.context.context_id
        context = self.context
        if self.claimsAtStart:
            try:
                context = await gateway.storeOp("claim", store.claim, contextId)
            except ContextAlreadyClaimed:
                self.refuse(
                    CLOSE_CLAIMED, "already_claimed", "the call context was already claimed"
                )
                return
            except ContextExpired:
                self.refuse(
                    CLOSE_EXPIRED, "expired", "the call context expired before it was claimed"
                )
                return
            except ContextFinished:
                self.refuse(CLOSE_EXPIRED, "finished", "the call has already ended")
                return
            except ContextNotFound:
                self.refuse(CLOSE_UNKNOWN, "unknown_context", "no such call context", record=False)
                return
            except StoreUnavailable:
                self.refuse(
                    CLOSE_STORE_UNAVAILABLE,
                    "store_unavailable",
                    "the context store is unavailable",
                    record=False,
                )
                return
        self._claimed = True
        events = self.events
        events.append("gateway", "claimed", claimed)
        channelId = self.channelId
        if channelId and not context.channel_uuid:
            events.run("set_channel", store.setChannel, contextId, channelId)
            context = replace(context, channel_uuid=channelId)
        self.context = context
        if self._state is _CLOSED:
            # the stream ended while the claim was on its way
            reason, outcome = self._closedWhileClaiming or ("closed", "completed")
            self._finishUnstarted(reason, outcome)
            return
        try:
            assistant = self._assistants.get(context.assistant_id)
        except UnknownAssistant:
            self.refuse(
                CLOSE_UNKNOWN, "unknown_assistant", f"no assistant {context.assistant_id!r}"
            )
            return
        self.session = session = CallSession(
            self._clock, gateway, context, self, assistant, **self._sessionOptions
        )
        self._state = _RUNNING
        self._log.info(
            "{provider} stream of call {channel_id} claimed context {context_id}",
            provider=self.name,
            channel_id=self.channelId,
            context_id=contextId,
        )
        session.start()
        held = self._held
        while held and self._state is _RUNNING:
            self.running(held.popleft())

    def _finishUnstarted(self, reason: str, outcome: str) -> None:
        """
        End a claimed context that never got a call session.
        """
        source = "provider" if outcome == "completed" else "gateway"
        self.events.append(source, "ended", {"reason": reason, "outcome": outcome})
        self.events.run(
            "finish", self._gateway.store.finish, self.context.context_id, outcome, reason
        )

    # --- timers and failures ---------------------------------------------------------

    def _noStart(self) -> None:
        self._startTimer = None
        if self._state is _WAITING:
            self.count("no_start")
            self.refuse(
                CLOSE_MALFORMED,
                "no_start",
                f"no {self.startEvent} message within {self._startTimeout:g} s",
            )

    def _cancelStartTimer(self) -> None:
        timer, self._startTimer = self._startTimer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _crashed(self, failure: Failure, where: str) -> None:
        self._log.failure(
            "{provider} stream {context_id}: {where} failed",
            failure,
            LogLevel.error,
            provider=self.name,
            context_id=self.context.context_id,
            where=where,
        )
        self.refuse(CLOSE_INTERNAL, "internal_error", "internal error")

    # --- ICallTransport: the senders are the subclass's ---------------------------

    def sendAudio(self, frame: bytes) -> None:
        """
        Send one wire frame of C{audioFormat}.
        """
        raise NotImplementedError

    def sendMark(self, name: str) -> None:
        """
        Send a mark after the audio sent so far (if C{supportsMarks}).
        """
        raise NotImplementedError

    def sendClear(self) -> None:
        """
        Ask the provider to drop the audio it has buffered.
        """
        raise NotImplementedError

    def sendDtmf(self, digit: str) -> bool:
        """
        Provider media streams cannot send DTMF unless a subclass can.
        """
        return False

    def transfer(self, target: str) -> Deferred[bool]:
        """
        Unsupported unless a subclass can: fires False.
        """
        return succeed(False)

    def hangup(self, reason: str) -> None:
        """
        End the call: the provider's REST hang-up when it has one and the
        provider has not already ended the stream, then a normal close.
        """
        if self._hangingUp:
            return
        self._hangingUp = True
        if self._stopped or not self.canHangUpRemotely():
            self.close(reason)
            return
        d = Deferred.fromCoroutine(self._remoteHangup(reason))
        d.addErrback(self._crashed, "hangup")

    async def _remoteHangup(self, reason: str) -> None:
        try:
            await self.hangUpRemotely()
        finally:
            self.close(reason)

    # --- REST --------------------------------------------------------------------------

    def _client(self) -> Any:
        if self._http is None:
            self._http = self._gateway.http()
        return self._http

    async def restRequest(
        self, method: str, url: str, action: str, goneIsDone: bool = False, **kwargs: Any
    ) -> bool:
        """
        One provider REST request with L{REST_TIMEOUT}; failures are
        logged, never raised.

        @param action: what it does, for logs (C{hangup}, C{transfer}).
        @param goneIsDone: a 404 (the call no longer exists) counts as done.
        @param kwargs: for the client's C{request} (C{data}, C{json},
            C{auth}, C{headers}).
        @return: True when the provider accepted it (2xx).
        """
        try:
            d = self._client().request(method, url, **kwargs)
            d.addTimeout(REST_TIMEOUT, self._clock)
            response = await d
            body = await response.content()
        except Exception as e:
            self._log.error(
                "{provider} {action} of call {channel_id} failed: {error}",
                provider=self.name,
                action=action,
                channel_id=self.channelId,
                error=repr(e),
            )
            return False
        code = response.code
        if 200 <= code < 300:
            self._log.info(
                "{provider} {action} of call {channel_id} done",
                provider=self.name,
                action=action,
                channel_id=self.channelId,
            )
            return True
        if code == 404 and goneIsDone:
            self._log.info(
                "{provider} {action}: call {channel_id} had already ended",
                provider=self.name,
                action=action,
                channel_id=self.channelId,
            )
            return True
        self._log.error(
            "{provider} {action} of call {channel_id} refused: HTTP {status} {body}",
            provider=self.name,
            action=action,
            channel_id=self.channelId,
            status=code,
            body=body[:300].decode("utf-8", "replace"),
        )
        return False
