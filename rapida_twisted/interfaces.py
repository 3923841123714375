"""
Every zope interface of rapida-twisted, in one module (so type checking
and C{verifyObject} find them in one place).
"""

from __future__ import annotations

from typing import Any

from zope.interface import Attribute, Interface


class IContextStore(Interface):
    """
    The call-context store (SPEC §5): PostgreSQL through txpostgres or the
    embedded SQLite.

    Every method returns a L{Deferred}. Deliberate failures are the
    L{rapida_twisted.store.StoreError} subclasses; a database that cannot
    be reached fails with L{rapida_twisted.store.StoreUnavailable}.
    """

    ttl = Attribute("Seconds an unclaimed context lives (float).")

    def start() -> Any:
        """
        Connect and apply schema migrations. Deferred fires with None.
        """

    def close() -> Any:
        """
        Release connections. Deferred fires with None.
        """

    def ping() -> Any:
        """
        Check the database answers. Deferred fires with None or fails with
        StoreUnavailable.
        """

    def create(
        provider: str,
        assistant_id: str,
        direction: str = "inbound",
        caller: str = "",
        callee: str = "",
        channel_uuid: str = "",
        metadata: dict[str, Any] | None = None,
    ) -> Any:
        """
        Create a C{pending} context with new UUID4 context and conversation
        ids and a random token of which only the hash is stored.
        Deferred fires with a L{NewContext}.
        """

    def get(context_id: str) -> Any:
        """
        Deferred fires with the L{CallContext} or fails with
        ContextNotFound. Never claims.
        """

    def claim(context_id: str) -> Any:
        """
        Atomically move C{pending} to C{claimed}; single use. Deferred
        fires with the claimed L{CallContext} or fails with
        ContextNotFound, ContextAlreadyClaimed, ContextExpired or
        ContextFinished.
        """

    def findByChannel(provider: str, channel_uuid: str) -> Any:
        """
        Deferred fires with the newest context of this provider whose
        C{channel_uuid} matches, or None.
        """

    def setChannel(context_id: str, channel_uuid: str) -> Any:
        """
        Record the provider's call id once it is known (for example a
        Twilio CallSid first seen on the media stream). Deferred fires
        with True when a row changed.
        """

    def updateProviderStatus(
        context_id: str, provider_status: str, expected: str | None = None
    ) -> Any:
        """
        Set C{provider_status}; when C{expected} is not None only if the
        current value equals it (compare-and-set). Deferred fires with
        True when the row changed.
        """

    def finish(context_id: str, outcome: str, reason: str = "") -> Any:
        """
        End a context with outcome C{completed} or C{failed}. A context
        already finished is left as it is. Deferred fires with True when
        this call finished it.
        """

    def appendEvent(
        context_id: str, source: str, kind: str, payload: dict[str, Any] | None = None
    ) -> Any:
        """
        Append one row to C{call_events}. Deferred fires with its id.
        """

    def listEvents(context_id: str, kind: str | None = None) -> Any:
        """
        Deferred fires with the context's L{CallEvent}s in order.
        """

    def expireUnclaimed() -> Any:
        """
        Mark C{pending} contexts older than the TTL as C{expired}.
        Deferred fires with how many were expired.
        """


class IProvider(Interface):
    """
    A provider's webhook side: how its inbound-call and status webhooks
    look, how it is answered, and how its requests are authenticated.
    """

    name = Attribute("The provider's path segment, e.g. 'twilio'.")
    claimAtUpgrade = Attribute(
        "True when the media stream carries no token, so the context is "
        "claimed at the WebSocket upgrade."
    )

    def authenticateWebhook(request: Any) -> None:
        """
        Raise Forbidden unless the webhook request is authentic.
        """

    def authenticateUpgrade(request: Any) -> None:
        """
        Raise Forbidden unless the media WebSocket upgrade is authentic.
        """

    def parseCall(request: Any) -> Any:
        """
        A CallInfo from an inbound-call webhook; MissingField (400) when a
        required field is absent.
        """

    def answer(context: Any, token: str, assistant: Any) -> Any:
        """
        The provider's answer document (an Answer) for a new context.
        """

    def parseStatus(request: Any) -> Any:
        """
        A StatusUpdate from a status callback.
        """

    def statusRank(providerStatus: str) -> int:
        """
        Order of provider status words; terminal ones rank highest.
        """

    def mediaAdapter() -> Any:
        """
        The media-stream adapter factory, or None while there is none.
        """


class IMediaChannel(Interface):
    """
    The WebSocket a provider's media adapter writes to.
    """

    peer = Attribute("The remote address as text.")

    def sendText(text: str) -> None:
        """
        Send one text message.
        """

    def sendBinary(data: bytes) -> None:
        """
        Send one binary message.
        """

    def close(code: int, reason: str) -> None:
        """
        Close the WebSocket with a code and a reason (idempotent).
        """

    def pauseReading() -> None:
        """
        Stop reading from the peer (flow control).
        """

    def resumeReading() -> None:
        """
        Resume reading from the peer.
        """


class IMediaAdapter(Interface):
    """
    A provider's media-stream adapter: translates its wire messages into
    call-session events and back. Built per WebSocket by the provider's
    C{mediaAdapter()} factory as C{factory(channel, context, gateway, request)}.
    """

    def opened() -> None:
        """
        The WebSocket is open.
        """

    def messageReceived(payload: bytes, isBinary: bool) -> None:
        """
        One WebSocket message arrived.
        """

    def closed(code: int | None, reason: str) -> None:
        """
        The WebSocket closed (from either side).
        """


# --- the call session, its provider transports and the assistants (SPEC §6, §7) ---


class ICallControl(Interface):
    """
    What an assistant session may do to its call. Audio is canonical PCM:
    16-bit little-endian mono at the assistant's sample rate.
    """

    def play(responseId: str, pcm: bytes) -> None:
        """
        Queue audio of one response (any length; framed and encoded by the
        session). Audio for a response that was cleared or completed is
        dropped.
        """

    def completeResponse(responseId: str) -> None:
        """
        No more audio will come for C{responseId}: the assistant session's
        C{playbackCompleted(responseId)} fires once the caller has heard it
        all (provider mark acknowledged, or the paced frames sent).
        """

    def clear() -> None:
        """
        Barge-in: drop everything queued, here and in the provider's
        buffer, in one step.
        """

    def mark(name: str) -> None:
        """
        Insert a named mark after the audio queued so far; the assistant
        session's C{playbackCompleted(name)} fires when the caller reaches it.
        """

    def sendDtmf(digits: str) -> None:
        """
        Send DTMF to the caller where the transport allows it.
        """

    def transfer(target: str) -> Any:
        """
        Transfer the call where the provider allows it. Deferred fires
        with True when done, False when unsupported.
        """

    def hangup(reason: str = "assistant") -> None:
        """
        End the call (idempotent).
        """


class IAssistantSession(Interface):
    """
    One call as the assistant sees it.
    """

    def audioReceived(pcm: bytes) -> None:
        """
        One 20 ms frame of the caller's audio, canonical PCM.
        """

    def dtmfReceived(digit: str) -> None:
        """
        One DTMF digit from the caller.
        """

    def playbackCompleted(responseId: str) -> None:
        """
        The caller has heard all of a response (or reached a mark).
        """

    def callEnded(reason: str) -> None:
        """
        The call is over (either side hung up). Called once.
        """


class IAssistant(Interface):
    """
    A voice assistant: builds one session per call.
    """

    id = Attribute("The assistant id (path segment / assistants file id).")
    sampleRate = Attribute("Canonical sample rate it speaks: 8000, 16000 or 24000.")

    def startSession(details: Any, control: ICallControl) -> Any:
        """
        Start a session for the call described by C{details} (a
        L{rapida_twisted.call.CallDetails}); returns an L{IAssistantSession}
        or a Deferred of one.
        """


class ICallTransport(Interface):
    """
    What the call session needs from a provider adapter: the provider's
    wire side of one call. Everything here is already provider-specific
    wire work; the session never looks inside.
    """

    audioFormat = Attribute(
        "The wire audio: a rapida_twisted.call.AudioFormat (codec, sample rate, "
        "frame size) negotiated at start."
    )
    paced = Attribute(
        "True when the peer plays what it receives at once (RTP, AudioSocket), "
        "so the session sends one frame per 20 ms from its pacer; False when the "
        "provider buffers (Twilio, Vonage, Exotel, chan_websocket), so frames go "
        "as fast as flow control allows."
    )
    supportsMarks = Attribute(
        "True when the provider acknowledges marks (Twilio, Exotel, chan_websocket)."
    )

    def sendAudio(frame: bytes) -> None:
        """
        Send one wire-encoded frame.
        """

    def sendMark(name: str) -> None:
        """
        Send a mark after the audio sent so far (only if supportsMarks).
        """

    def sendClear() -> None:
        """
        Ask the provider to drop its buffered audio.
        """

    def sendDtmf(digit: str) -> bool:
        """
        Send one DTMF digit; False when the transport cannot.
        """

    def transfer(target: str) -> Any:
        """
        Deferred firing True when transferred, False when unsupported.
        """

    def hangup(reason: str) -> None:
        """
        End the call on the provider's side and close the transport.
        """
