# -*- test-case-name: tests.test_twilio_media -*-
"""
The Twilio Media Streams adapter (protocols.md §1.5-§1.9): translates the
stream's JSON messages into call-session events and the session's audio,
marks and clears back into Twilio messages. The stream's life cycle
(token, claim, close codes, malformed input, timeouts) is
L{rapida_twisted.providers._stream.StreamAdapter}'s.

  - C{connected}: noted. C{start}: the C{token} custom parameter must match
    the context (else close 4403), the context is claimed, the CallSid
    recorded, the format taken from C{mediaFormat}. Messages other than
    C{connected} before C{start}: close 4400.
  - C{media} → audio, C{dtmf} → digits, C{mark} → acknowledgements,
    C{stop} → a provider hang-up; a socket closed without C{stop} ends
    the session too. Binary messages are malformed.
  - Hang-up from the assistant: Twilio's REST API (C{Status=completed})
    when credentials are configured, then the socket is closed.
"""

from __future__ import annotations

from binascii import b2a_base64 as _b64encode
from typing import Any, Final
from urllib.parse import quote
from xml.sax.saxutils import escape

from twisted.internet.defer import Deferred, succeed

from ...call import AudioFormat, FormatError
from .._stream import (
    CLOSE_INTERNAL,
    CLOSE_STORE_UNAVAILABLE,
    MAX_BAD_IN_A_ROW,
    START_TIMEOUT,
    StreamAdapter,
)
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
    "MAX_BAD_IN_A_ROW",
    "REST_BASE",
    "START_TIMEOUT",
    "TwilioMediaAdapter",
]

#: Twilio's REST API root
REST_BASE: Final = "https://api.twilio.com/2010-04-01"

#: inbound tracks whose audio is the caller's
_CALLER_TRACKS: Final = frozenset({"inbound", "inbound_track"})

_ENCODINGS: Final = {
    "audio/x-mulaw": "ulaw",
    "audio/pcmu": "ulaw",
    "audio/x-alaw": "alaw",
    "audio/pcma": "alaw",
    "audio/l16": "l16",
}

_NAMES: Final = {
    Media: "media",
    Mark: "mark",
    Dtmf: "dtmf",
    Stop: "stop",
    Start: "start",
    Connected: "connected",
}

_BINARY: Final = ProtocolError(WRONG_TYPE, "binary message: Twilio Media Streams send JSON text")


class TwilioMediaAdapter(StreamAdapter):
    """
    One Twilio media stream (see L{StreamAdapter} for the constructor).

    @ivar streamSid: the stream's sid, from C{start}.
    """

    name = "twilio"
    startEvent = "start"
    notHeld = (Connected,)

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.audioFormat = AudioFormat("ulaw", 8000)
        self.streamSid = ""
        self._mediaSid: str | None = None
        self._mediaHead = ""

    @property
    def callSid(self) -> str:
        """
        The call's CallSid (L{StreamAdapter.channelId}).
        """
        return self.channelId

    # --- wire → session ----------------------------------------------------------

    def decode(self, payload: bytes, isBinary: bool) -> Message:
        if isBinary:
            raise _BINARY
        return decode(payload)

    def describe(self, message: Any) -> str:
        return _NAMES.get(type(message), "message")

    def waiting(self, message: Any) -> bool:
        kind = type(message)
        if kind is Connected:
            return True
        if kind is not Start:
            return False
        start: Start = message
        codec = _ENCODINGS.get(start.encoding.lower())
        wire: AudioFormat | FormatError
        try:
            if codec is None or start.channels != 1:
                raise FormatError(
                    f"{start.encoding} with {start.channels} channels is not supported"
                )
            wire = AudioFormat(codec, start.sampleRate)
        except FormatError as e:
            wire = e
        self.streamSid = start.streamSid
        self.begin(
            start.token,
            wire,
            {"stream_sid": start.streamSid, "call_sid": start.callSid or ""},
            start.callSid,
        )
        return True

    def running(self, message: Any) -> None:
        session = self.session
        assert session is not None
        kind = type(message)
        if kind is Media:
            if message.track is None or message.track in _CALLER_TRACKS:
                session.audioReceived(message.payload)
        elif kind is Mark:
            session.markAcknowledged(message.name)
        elif kind is Dtmf:
            session.dtmfReceived(message.digit)
        elif kind is Stop:
            if message.callSid and not self.channelId:
                self.channelId = message.callSid
            self.stopped("stop")
        elif kind is Unknown:
            self.unknown(message)
        elif kind is Start:
            self.duplicateStart()

    # --- session → wire ------------------------------------------------------------

    def sendAudio(self, frame: bytes) -> None:
        # encodeMedia's text, its constant head built once per streamSid
        sid = self.streamSid
        if sid is not self._mediaSid:
            head, _, _ = encodeMedia(sid, b"").rpartition('"}}')
            self._mediaHead = head
            self._mediaSid = sid
        self._channel.sendText(
            self._mediaHead + _b64encode(frame, newline=False).decode("ascii") + '"}}'
        )

    def sendMark(self, name: str) -> None:
        self._channel.sendText(encodeMark(self.streamSid, name))

    def sendClear(self) -> None:
        self._channel.sendText(encodeClear(self.streamSid))

    def transfer(self, target: str) -> Deferred[bool]:
        """
        Redirect the live call to C{<Dial>target</Dial>} through the REST
        API (False without credentials or a CallSid).
        """
        if not self.canHangUpRemotely():
            return succeed(False)
        twiml = f"<Response><Dial>{escape(target)}</Dial></Response>"
        return Deferred.fromCoroutine(self._updateCall({"Twiml": twiml}, "transfer"))

    # --- REST ------------------------------------------------------------------------

    def canHangUpRemotely(self) -> bool:
        credentials = self._gateway.config.twilio
        return bool(credentials.account_sid and credentials.auth_token and self.channelId)

    async def hangUpRemotely(self) -> None:
        await self._updateCall({"Status": "completed"}, "hangup", goneIsDone=True)

    async def _updateCall(
        self, params: dict[str, str], action: str, goneIsDone: bool = False
    ) -> bool:
        """
        POST to the call's REST resource; True when Twilio accepted it (or,
        with C{goneIsDone}, when the call no longer exists).
        """
        credentials = self._gateway.config.twilio
        sid = credentials.account_sid
        url = (
            f"{REST_BASE}/Accounts/{quote(sid, safe='')}"
            f"/Calls/{quote(self.channelId, safe='')}.json"
        )
        return await self.restRequest(
            "POST",
            url,
            action,
            goneIsDone=goneIsDone,
            data=params,
            auth=(sid, credentials.auth_token),
        )
