# -*- test-case-name: tests.test_vonage_media -*-
"""
The Vonage Voice API WebSocket adapter (protocols.md §2.3-§2.4, §2.7):
translates the stream's messages into call-session events and the
session's audio and clears back. The life cycle (token, claim, close
codes, malformed input, timeouts) is
L{rapida_twisted.providers._stream.StreamAdapter}'s.

  - The first text message, C{websocket:connected}, carries the NCCO
    endpoint's headers flattened: its C{token} must match the context
    (else close 4403); the context is claimed; the wire format is L16 at
    the C{content-type}'s rate (8000 or 16000; 24000 where Vonage sends
    it). Anything else first (binary audio included): close 4400.
  - Binary messages are caller audio (L16, 20 ms each; odd lengths are
    malformed). C{websocket:dtmf} → one call event and one assistant
    call per digit. C{websocket:cleared} acknowledges our C{clear}.
  - Outbound: one binary message per 20 ms frame (the session frames
    them exactly and keeps them within its C{maxLead} of real time, far
    inside Vonage's buffer of 1024-3072 messages). Barge-in sends
    C{{"action":"clear"}}.
  - Marks: Vonage has none. Its C{notify} command (echoed as
    C{websocket:notify} once earlier audio has played) is only known from
    third-party code (protocols.md §2.4 [?]), so by default
    C{supportsMarks} is false and the session estimates playout from the
    frames it sent; C{notifyMarks=True} uses C{notify} as the mark.
  - Assistant hang-up: C{PUT /v1/calls/{uuid}} C{{"action":"hangup"}}
    with an application JWT (RS256 over the private key file) when
    C{application_id} and C{private_key_file} are configured, then a
    normal close. Without them, closing the socket ends Vonage's
    WebSocket leg (and the call when the NCCO has nothing after it).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote, urlsplit

import jwt

from ...call import AudioFormat, FormatError
from .._json import Unknown
from .._stream import StreamAdapter
from ._codec import (
    Cleared,
    Connected,
    Dtmf,
    Message,
    Notify,
    decode,
    decodeAudio,
    encodeClear,
    encodeNotify,
)

__all__ = [
    "API_BASE",
    "APPLICATION_JWT_TTL",
    "DEFAULT_RATE",
    "PrivateKeyError",
    "VonageMediaAdapter",
    "applicationJWT",
    "loadPrivateKey",
]

#: the Voice API's root (a call's C{region_url} is used when it is Vonage's)
API_BASE: Final = "https://api.nexmo.com"

#: seconds an application JWT is valid (Vonage: 30 s to 24 h)
APPLICATION_JWT_TTL: Final = 300

#: the rate assumed when C{websocket:connected} has no C{content-type}
DEFAULT_RATE: Final = 16000

_REGION_HOSTS: Final = (".nexmo.com", ".vonage.com")

_NAMES: Final = {
    bytes: "audio",
    Connected: "websocket:connected",
    Dtmf: "websocket:dtmf",
    Cleared: "websocket:cleared",
    Notify: "websocket:notify",
}


class PrivateKeyError(ValueError):
    """
    The Vonage application's private key cannot be read or used.
    """


_keys: dict[str, bytes] = {}


def loadPrivateKey(path: str) -> bytes:
    """
    The PEM private key in C{path}, read once per process.

    @raise PrivateKeyError: the file cannot be read.
    """
    key = _keys.get(path)
    if key is None:
        try:
            with open(path, "rb") as f:
                key = f.read()
        except OSError as e:
            raise PrivateKeyError(
                f"cannot read the Vonage private key file: {e.strerror}"
            ) from None
        _keys[path] = key
    return key


def applicationJWT(
    applicationId: str,
    privateKey: bytes | str,
    now: float,
    ttl: int = APPLICATION_JWT_TTL,
    jti: str | None = None,
) -> str:
    """
    A Vonage application JWT for the Voice REST API (protocols.md §2.7):
    RS256 over the application's private key, claims C{application_id},
    C{iat}, C{jti} and C{exp}.

    @param now: the wall-clock time, in seconds.
    @raise PrivateKeyError: C{privateKey} is not a usable RSA private key.
    """
    iat = int(now)
    claims = {
        "application_id": applicationId,
        "iat": iat,
        "jti": jti or uuid.uuid4().hex,
        "exp": iat + ttl,
    }
    try:
        return jwt.encode(claims, privateKey, algorithm="RS256")
    except (ValueError, TypeError, jwt.PyJWTError) as e:
        raise PrivateKeyError(f"the Vonage private key cannot sign: {e}") from None


class VonageMediaAdapter(StreamAdapter):
    """
    One Vonage WebSocket (see L{StreamAdapter} for the constructor).

    @param notifyMarks: use C{notify}/C{websocket:notify} as marks
        (C{supportsMarks}); otherwise the session estimates playout.

    @ivar contentType: the C{content-type} of C{websocket:connected}.
    @ivar headers: its other keys (the NCCO endpoint headers).
    @ivar cleared: C{websocket:cleared} acknowledgements received.
    """

    name = "vonage"
    startEvent = "websocket:connected"
    supportsMarks = False

    def __init__(self, *args: Any, notifyMarks: bool = False, **kw: Any) -> None:
        super().__init__(*args, **kw)
        if notifyMarks:
            self.supportsMarks = True
        self.contentType = ""
        self.headers: Mapping[str, Any] = {}
        self.cleared = 0

    # --- wire → session ----------------------------------------------------------

    def decode(self, payload: bytes, isBinary: bool) -> Message | bytes:
        if isBinary:
            return decodeAudio(payload)
        return decode(payload)

    def describe(self, message: Any) -> str:
        return _NAMES.get(type(message), "message")

    def waiting(self, message: Any) -> bool:
        if type(message) is not Connected:
            return False
        connected: Connected = message
        rate = connected.sampleRate or DEFAULT_RATE
        wire: AudioFormat | FormatError
        try:
            wire = AudioFormat("l16", rate)
        except FormatError as e:
            wire = e
        self.contentType = connected.contentType or ""
        self.headers = connected.headers
        callId = connected.headers.get("uuid") or connected.headers.get("call_uuid")
        channelId = callId if type(callId) is str else None
        self.begin(
            connected.token,
            wire,
            {"content_type": self.contentType, "call_uuid": channelId or self.channelId},
            channelId,
        )
        return True

    def running(self, message: Any) -> None:
        session = self.session
        assert session is not None
        kind = type(message)
        if kind is bytes:
            session.audioReceived(message)
        elif kind is Dtmf:
            for digit in message.digits:
                session.dtmfReceived(digit)
        elif kind is Notify:
            payload = message.payload
            if self.supportsMarks and type(payload) is dict:
                name = payload.get("mark")
                if type(name) is str:
                    session.markAcknowledged(name)
        elif kind is Cleared:
            self.cleared += 1
        elif kind is Unknown:
            self.unknown(message)
        elif kind is Connected:
            self.duplicateStart()

    # --- session → wire --------------------------------------------------------------

    def sendAudio(self, frame: bytes) -> None:
        self._channel.sendBinary(frame)

    def sendMark(self, name: str) -> None:
        self._channel.sendText(encodeNotify({"mark": name}))

    def sendClear(self) -> None:
        self._channel.sendText(encodeClear())

    # --- REST ------------------------------------------------------------------------

    def canHangUpRemotely(self) -> bool:
        credentials = self._gateway.config.vonage
        return bool(credentials.application_id and credentials.private_key_file and self.channelId)

    def _apiBase(self) -> str:
        """
        The call's C{region_url} when it is a Vonage HTTPS host, else
        L{API_BASE}.
        """
        region = self.context.metadata.get("region_url")
        if isinstance(region, str) and region.startswith("https://"):
            host = urlsplit(region).hostname or ""
            if host.endswith(_REGION_HOSTS) and "@" not in region:
                return region.rstrip("/")
        return API_BASE

    async def hangUpRemotely(self) -> None:
        credentials = self._gateway.config.vonage
        try:
            token = applicationJWT(
                credentials.application_id,
                loadPrivateKey(credentials.private_key_file),
                self._clock.seconds(),
            )
        except PrivateKeyError as e:
            self._log.error(
                "vonage hangup of call {channel_id} impossible: {error}",
                channel_id=self.channelId,
                error=str(e),
            )
            return
        url = f"{self._apiBase()}/v1/calls/{quote(self.channelId, safe='')}"
        await self.restRequest(
            "PUT",
            url,
            "hangup",
            goneIsDone=True,
            json={"action": "hangup"},
            headers={"Authorization": "Bearer " + token},
        )
