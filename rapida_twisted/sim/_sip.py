# -*- test-case-name: tests.test_sim -*-
"""
A SIP phone's part (protocols.md §7): an INVITE to
C{sip:ASSISTANT@HOST:5090} offering one G.711 codec and
C{telephone-event} (digest authentication when challenged and given
credentials), the ACK, RTP at one packet per 20 ms on the simulator's
shared ticker, DTMF as RFC 4733 events in the audio's place (SIP INFO
when the answer has no C{telephone-event}), what comes back played
through a phone's small jitter buffer, and a BYE to hang up.

The signalling and the RTP sockets are L{rapida_twisted.sip.uac}'s: the
calls of one L{Environment} share one L{UserAgentClient} (one SIP
socket) per local address and credentials, each call getting its own RTP
socket from the OS. The UAC's own pacer is not used: L{SipStream} sends
each frame on the shared ticker (C{paced=False}) and records its send
time, so the echo is matched by content as on every other transport.

There is no webhook: the gateway's SIP port is the front door. C{--gateway}
names the host; L{SipOptions} adds the port, an explicit target and the
local address.
"""

from __future__ import annotations

import copy
import dataclasses
import ipaddress
import math
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit
from weakref import WeakKeyDictionary

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from ..sip._codec import SipResponse, SipURI, parseURI
from ..sip.uac import CallFailed, UacCall, UserAgentClient
from ._asterisk import JITTER_BUFFER
from ._audio import AudioSource, PreparedAudio, WireFormat, wireFormat
from ._base import CallOptions, CallPlan, CallResult, MediaStream, SimError
from ._call import SimCall
from ._net import Environment
from ._record import Playout
from ._ticker import Ticker

__all__ = [
    "DEFAULT_SIP_PORT",
    "SipCall",
    "SipCallResult",
    "SipOptions",
    "SipStream",
    "UacPool",
    "sipCodec",
    "sipTarget",
    "uacPool",
]

#: The gateway's usual SIP port.
DEFAULT_SIP_PORT = 5090

#: The codec a C{--codec} name stands for in the SDP offer.
_CODECS = {"ulaw": "PCMU", "pcmu": "PCMU", "alaw": "PCMA", "pcma": "PCMA"}


@dataclass(frozen=True)
class SipOptions(CallOptions):
    """
    L{CallOptions} with what a SIP call needs besides (C{username} and
    C{password} answer a digest challenge; C{codec} is C{ulaw}/C{PCMU} or
    C{alaw}/C{PCMA}; C{timeout} bounds the wait for the answer).

    @ivar sipPort: the gateway's SIP port.
    @ivar sipTarget: the Request-URI; default
        C{sip:ASSISTANT@GATEWAY-HOST:SIP-PORT}.
    @ivar sipLocal: the local IPv4 address to bind and advertise (Via,
        Contact, SDP); default: loopback for a loopback gateway, else the
        address the system routes to the gateway from.
    """

    sipPort: int = DEFAULT_SIP_PORT
    sipTarget: str | None = None
    sipLocal: str | None = None


def sipCodec(options: CallOptions) -> str:
    """
    The SDP codec name (C{PCMU} or C{PCMA}) of C{options.codec}.

    @raise ValueError: another codec, or a rate other than 8000 Hz.
    """
    codec = _CODECS.get(options.codec.lower())
    if codec is None:
        raise ValueError(f"SIP calls offer PCMU (ulaw) or PCMA (alaw), not {options.codec!r}")
    if options.rate not in (None, 8000):
        raise ValueError(f"SIP G.711 audio is 8000 Hz, not {options.rate}")
    return codec


def sipTarget(options: CallOptions) -> str:
    """
    The Request-URI a call is placed to: C{options.sipTarget}, else the
    assistant at the gateway's host on the SIP port.
    """
    if isinstance(options, SipOptions) and options.sipTarget:
        return options.sipTarget
    port = options.sipPort if isinstance(options, SipOptions) else DEFAULT_SIP_PORT
    host = urlsplit(options.gateway).hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"sip:{options.assistant}@{host}:{port}"


def _isAddress(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def localAddressFor(peer: str) -> str:
    """
    The local IPv4 address the system sends to C{peer} from (a UDP
    C{connect}, no packet sent); loopback for a loopback peer.

    @raise OSError: no route.
    """
    if ipaddress.ip_address(peer).is_loopback:
        return "127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((peer, 9))
        return str(probe.getsockname()[0])


async def resolveTarget(env: Environment, target: str) -> tuple[str, str]:
    """
    C{target} with its host as an IPv4 address (UDP is sent to addresses),
    and that address.

    @raise SimError: not a C{sip:} URI with a host, or a host that does
        not resolve.
    """
    try:
        uri = parseURI(target)
    except ValueError as e:
        raise SimError(f"bad SIP target {target!r}: {e}") from None
    if not isinstance(uri, SipURI) or uri.scheme != "sip" or not uri.host:
        raise SimError(f"bad SIP target {target!r}: a sip: URI with a host is required")
    host = uri.host.strip("[]")
    if _isAddress(host):
        if ipaddress.ip_address(host).version != 4:
            raise SimError(f"bad SIP target {target!r}: the simulator speaks SIP over IPv4")
        return target, host
    try:
        address = str(await env.reactor.resolve(host))
    except Exception as e:
        raise SimError(f"cannot resolve {host!r}: {e}") from None
    return dataclasses.replace(uri, host=address).toString(), address


@dataclass
class _Shared:
    uac: UserAgentClient
    users: int = 0


class UacPool:
    """
    The L{UserAgentClient}s an environment's SIP calls share: one per
    local address and credentials, started on first use and stopped when
    its last call is over.
    """

    _log = Logger()

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self._uacs: dict[tuple[str, str | None, str | None], _Shared] = {}

    def acquire(
        self, host: str, username: str | None = None, password: str | None = None
    ) -> UserAgentClient:
        """
        The UAC for these; L{release} it when the call is over.

        @raise OSError: the SIP port cannot be bound.
        """
        key = (host, username, password)
        entry = self._uacs.get(key)
        if entry is None:
            uac = UserAgentClient(self.reactor, host, username=username, password=password)
            uac.start()
            entry = self._uacs[key] = _Shared(uac)
        entry.users += 1
        return entry.uac

    def release(self, uac: UserAgentClient) -> None:
        """
        One call is done with C{uac}; the last one stops it, from the next
        reactor turn on (a CANCEL still unanswered may keep it a while).
        """
        for key, entry in self._uacs.items():
            if entry.uac is uac:
                entry.users -= 1
                if entry.users <= 0:
                    del self._uacs[key]
                    # next turn: a call often ends inside a transaction's
                    # callback, which still has timers to set
                    self.reactor.callLater(0, self._stop, uac)
                return

    def _stop(self, uac: UserAgentClient) -> None:
        uac.stop().addErrback(lambda f: self._log.failure("stopping the SIP UAC failed", f))

    def __len__(self) -> int:
        return len(self._uacs)


_POOLS: WeakKeyDictionary[Environment, UacPool] = WeakKeyDictionary()


def uacPool(env: Environment) -> UacPool:
    """
    The L{UacPool} of an environment (made on first use).
    """
    pool = _POOLS.get(env)
    if pool is None:
        pool = _POOLS[env] = UacPool(env.reactor)
    return pool


class _Channel:
    """
    The L{Channel} of a SIP call: closing it hangs up with a BYE and
    closes the stream when the BYE is answered, or after C{timeout}
    seconds without an answer (rather than the transaction's 32 s).
    """

    def __init__(self, stream: SipStream, call: UacCall, timeout: float) -> None:
        self.stream = stream
        self.call = call
        self.timeout = timeout
        self._closing = False

    def sendText(self, text: str) -> None:
        raise TypeError("a SIP call carries no text messages")

    def sendBinary(self, data: bytes) -> None:
        raise TypeError("SIP media is sent by the call (UacCall.sendFrame)")

    def close(self, code: int = 1000, reason: str = "") -> None:
        if self._closing:
            return
        self._closing = True
        stream = self.stream
        timer = stream.clock.callLater(self.timeout, stream.byeAnswered, None)

        def answered(response: SipResponse | None) -> None:
            if timer.active():
                timer.cancel()
                stream.byeAnswered(response)

        self.call.hangup().addCallback(answered)


class SipStream(MediaStream):
    """
    A SIP phone's media once the call is answered: one RTP packet per
    20 ms on the shared ticker, DTMF in the audio's place, the gateway's
    audio through a phone's jitter buffer (packets arriving after a later
    one, or twice, are dropped and counted as C{rtpLate}).

    Frames that went out as DTMF events instead of audio get no send time
    and their echo is not expected (see L{_forgetReplaced}).

    @ivar call: the L{UacCall} (set by L{attach}).
    @ivar closeCode: the final response to our BYE (200 when clean).
    """

    transport = "sip"

    def __init__(
        self, clock: IReactorTime, ticker: Ticker, audio: PreparedAudio, plan: CallPlan
    ) -> None:
        super().__init__(clock, ticker, audio, plan)
        # a phone's jitter buffer, as for AudioSocket (no buffer between)
        self.playout: Playout[None] = Playout(
            self.recorder, delay=JITTER_BUFFER, maxAhead=3 * JITTER_BUFFER
        )
        self.call: UacCall | None = None
        self._highest = -1
        self._replaced: list[int] = []
        self._ownAudio = False

    def attach(self, call: UacCall) -> None:
        """
        The call is placed: follow its end (a BYE from the gateway).
        """
        self.call = call
        call.ended.addCallback(self._callEnded)

    def sendFrame(self, index: int, now: float) -> None:
        call = self.call
        assert call is not None
        if not call.sendFrame(self.frameIndexPayload(index)):
            self._replaced.append(index)

    def ticked(self, now: float, frames: int) -> None:
        if self._replaced:
            self._forgetReplaced()

    def _forgetReplaced(self) -> None:
        """
        The frames that went out as DTMF events did not go out as audio:
        no send time, and no echo expected (this call gets its own copy
        of the shared audio's C{active} flags).
        """
        times = self.recorder.sendTimes
        audio = self.audio
        if not self._ownAudio:
            self._ownAudio = True
            audio = self.audio = copy.copy(audio)
            audio.active = audio.active.copy()
        active = audio.active
        for index in self._replaced:
            if index < len(times):
                times[index] = math.nan
            if index < len(active):
                active[index] = False
        self._replaced.clear()

    def sendDtmf(self, digit: str) -> None:
        assert self.call is not None
        self.call.sendDtmf(digit)

    def audioReceived(self, now: float, sequence: int, payload: bytes) -> None:
        """
        An audio packet from the gateway (the UAC's C{onAudio}).
        """
        if self._hungUp or self._closed:
            return
        if sequence <= self._highest:
            self.counters["rtpLate"] += 1
            return
        self._highest = sequence
        self.playout.audio(now, payload)

    def received(self, data: bytes, isBinary: bool) -> None:
        raise TypeError("SIP media arrives through audioReceived")

    def goodbye(self) -> None:
        self._forgetReplaced()
        super().goodbye()

    def byeAnswered(self, response: SipResponse | None) -> None:
        """
        Our BYE's final response (L{None}: none came in time).
        """
        if response is None:
            self.fail("the BYE was not answered")
            self.closed(None, "BYE not answered")
            return
        if response.code != 200:
            self.fail(f"BYE answered {response.code} {response.reason}")
        self.closed(response.code, response.reason)

    def _callEnded(self, reason: str) -> None:
        if reason == "local_bye":
            return  # byeAnswered closes
        if not self._hungUp:
            self.fail(
                "the gateway hung up (BYE)" if reason == "remote_bye" else f"call ended: {reason}"
            )
        self.closed(None, reason)


@dataclass
class SipCallResult(CallResult):
    """
    A SIP call's result: the gateway's context is not named on the wire;
    the SIP C{Call-ID} (the context's C{channel_uuid}) finds it.
    """

    callId: str | None = None

    def summary(self) -> dict[str, Any]:
        out = super().summary()
        out["callId"] = self.callId
        return out


class SipCall(SimCall):
    """
    A SIP phone calling the gateway: INVITE, ACK, RTP and DTMF, BYE.
    Failures name the SIP answer (C{INVITE answered 404 Not Found}), or
    C{no answer within N s} (then the INVITE is cancelled).
    """

    transport = "sip"

    def __init__(self, env: Environment, options: CallOptions, source: AudioSource) -> None:
        super().__init__(env, options, source)
        self.result: SipCallResult = SipCallResult(self.transport)
        self._uac: UserAgentClient | None = None

    @classmethod
    def wireFormat(cls, options: CallOptions) -> WireFormat:
        return wireFormat("ulaw" if sipCodec(options) == "PCMU" else "alaw", 8000)

    async def connect(self, result: CallResult) -> MediaStream:
        options, env = self.options, self.env
        try:
            codec = sipCodec(options)
        except ValueError as e:
            raise SimError(str(e)) from None
        audio = self.audio()
        target, address = await resolveTarget(env, sipTarget(options))
        local = options.sipLocal if isinstance(options, SipOptions) else None
        try:
            uac = uacPool(env).acquire(
                local or localAddressFor(address), options.username, options.password
            )
        except OSError as e:
            raise SimError(f"cannot open a SIP port: {e}") from None
        self._uac = uac
        stream = SipStream(env.clock, env.ticker, audio, options.plan)
        try:
            call = uac.call(
                target, codecs=(codec,), record=False, paced=False, onAudio=stream.audioReceived
            )
        except (ValueError, OSError) as e:
            raise SimError(f"cannot call {target}: {e}") from None
        if isinstance(result, SipCallResult):
            result.callId = call.callId
        stream.attach(call)
        await self._answered(call)
        result.stream = stream
        stream.opened(_Channel(stream, call, options.timeout))
        return stream

    async def _answered(self, call: UacCall) -> None:
        """
        Wait for the answer, at most C{options.timeout} seconds (then
        cancel the INVITE).

        @raise SimError: refused, or no answer in time.
        """
        timeout = self.options.timeout
        outcome: Deferred[None] = Deferred()

        def answered(_: object) -> None:
            if not outcome.called:
                outcome.callback(None)

        def refused(failure: Any) -> None:
            error = failure.value
            if not isinstance(error, CallFailed):
                reason = f"INVITE failed: {failure.getErrorMessage()}"
            elif error.code:
                reason = f"INVITE answered {error.code} {error.reason}"
            else:
                reason = f"INVITE failed: {error.reason}"
            if not outcome.called:
                outcome.errback(SimError(reason))

        def late() -> None:
            call.hangup()  # CANCEL
            outcome.errback(SimError(f"no answer within {timeout:g} s"))

        timer = self.env.clock.callLater(timeout, late)
        call.answered.addCallbacks(answered, refused)
        try:
            await outcome
        finally:
            if timer.active():
                timer.cancel()

    async def run(self) -> CallResult:
        try:
            return await super().run()
        finally:
            uac, self._uac = self._uac, None
            if uac is not None:
                uacPool(self.env).release(uac)
