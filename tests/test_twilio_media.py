"""
Tests for L{rapida_twisted.providers.twilio._media}: the Twilio Media
Streams adapter end to end through the web site in memory (webhook →
TwiML → WebSocket upgrade → messages), with the echo assistant and a test
assistant that speaks, clears and hangs up.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import urlsplit
from xml.etree import ElementTree

from hypothesis import given, settings
from hypothesis import strategies as st
from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase
from twisted.web import resource
from twisted.web.server import Request
from zope.interface import implementer
from zope.interface.verify import verifyObject

from rapida_twisted.assistants import AssistantRegistry
from rapida_twisted.config import AssistantConfig
from rapida_twisted.interfaces import (
    IAssistant,
    IAssistantSession,
    ICallControl,
    ICallTransport,
    IMediaAdapter,
    IMediaChannel,
)
from rapida_twisted.media.analysis import correlation, speechLike, tone
from rapida_twisted.media.g711 import ulawDecode, ulawEncode
from rapida_twisted.providers.twilio import TwilioMediaAdapter, TwilioProvider, twilioSignature
from rapida_twisted.providers.twilio._media import MAX_BAD_IN_A_ROW, START_TIMEOUT

from ._web import Harness, StreamClient

SID = "AC" + "1" * 32
TOKEN = "twilio-auth-token"
CALL_SID = "CA" + "2" * 32

SPEAKER_TOML = f"""
[[assistants]]
id = "speaker"
kind = "python"

[providers.twilio]
account_sid = "{SID}"
auth_token = "{TOKEN}"
"""


# --- the Twilio side of a stream ----------------------------------------------------


class Stream(StreamClient):
    """
    Twilio's end of one media WebSocket, in memory.
    """

    def heard(self) -> bytes:
        return b"".join(base64.b64decode(m["media"]["payload"]) for m in self.events("media"))

    # the Twilio side of the conversation

    def connected(self) -> None:
        self.send({"event": "connected", "protocol": "Call", "version": "1.0.0"})

    def start(self, token: str | None, callSid: str = CALL_SID, **fmt: Any) -> None:
        params = {} if token is None else {"token": token}
        mediaFormat = {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1, **fmt}
        self.send(
            {
                "event": "start",
                "sequenceNumber": "1",
                "streamSid": "MZ1",
                "start": {
                    "accountSid": SID,
                    "streamSid": "MZ1",
                    "callSid": callSid,
                    "tracks": ["inbound"],
                    "mediaFormat": mediaFormat,
                    "customParameters": params,
                },
            }
        )

    def media(self, payload: bytes, chunk: int = 1) -> None:
        self.send(
            {
                "event": "media",
                "sequenceNumber": str(chunk + 1),
                "streamSid": "MZ1",
                "media": {
                    "track": "inbound",
                    "chunk": str(chunk),
                    "timestamp": str(chunk * 20),
                    "payload": base64.b64encode(payload).decode(),
                },
            }
        )

    def dtmf(self, digit: str) -> None:
        self.send(
            {"event": "dtmf", "streamSid": "MZ1", "dtmf": {"track": "inbound_track", "digit": digit}}
        )

    def mark(self, name: str) -> None:
        self.send({"event": "mark", "streamSid": "MZ1", "mark": {"name": name}})

    def stop(self) -> None:
        self.send(
            {"event": "stop", "streamSid": "MZ1", "stop": {"accountSid": SID, "callSid": CALL_SID}}
        )


# --- a test assistant -------------------------------------------------------------


@implementer(IAssistantSession)
class SpeakerSession:
    """
    Says a 100 ms greeting; DTMF 0 clears, 9 hangs up, 5 says more.
    """

    def __init__(self, control: ICallControl) -> None:
        self.control = control
        self.completed: list[str] = []
        self.digits: list[str] = []
        self.ended: list[str] = []
        self.frames = 0

    def audioReceived(self, pcm: bytes) -> None:
        self.frames += 1

    def dtmfReceived(self, digit: str) -> None:
        self.digits.append(digit)
        if digit == "0":
            self.control.clear()
        elif digit == "9":
            self.control.hangup("goodbye")
        elif digit == "5":
            self.control.play("more", tone(500, 0.1, 16000))
            self.control.completeResponse("more")

    def playbackCompleted(self, responseId: str) -> None:
        self.completed.append(responseId)

    def callEnded(self, reason: str) -> None:
        self.ended.append(reason)


@implementer(IAssistant)
class Speaker:
    sampleRate = 16000

    def __init__(self, config: AssistantConfig) -> None:
        self.id = config.id
        self.sessions: list[SpeakerSession] = []

    def startSession(self, details: Any, control: ICallControl) -> SpeakerSession:
        session = SpeakerSession(control)
        self.sessions.append(session)
        control.play("greeting", tone(300, 0.1, 16000))
        control.completeResponse("greeting")
        return session


class TwilioREST(resource.Resource):
    """
    Records REST calls; answers with C{code}.
    """

    isLeaf = True

    def __init__(self, code: int = 200) -> None:
        super().__init__()
        self.code = code
        self.requests: list[tuple[str, str, dict[bytes, list[bytes]], str]] = []

    def render_POST(self, request: Request) -> bytes:
        self.requests.append(
            (
                request.uri.decode(),
                (request.getHeader("authorization") or ""),
                dict(request.args),
                request.getHeader("host") or "",
            )
        )
        request.setResponseCode(self.code)
        if self.code == 404:
            return b'{"code": 20404, "message": "not found"}'
        return b'{"status": "completed"}'


# --- tests ---------------------------------------------------------------------------


class Base(SynchronousTestCase):
    toml = ""

    def setUp(self) -> None:
        self.h = Harness(self.toml)
        provider = self.h.gateway.providers["twilio"]
        assert isinstance(provider, TwilioProvider)
        self.provider = provider
        self.speaker = Speaker(AssistantConfig(id="speaker"))
        self.h.gateway.assistants = AssistantRegistry(
            self.h.config, {"python": lambda config: self.speaker}
        )
        self.rest = TwilioREST()
        self.stub = StubTreq(self.rest)
        self.h.gateway.httpClient = self.stub

    def call(self, assistant: str = "echo") -> tuple[str, str, str]:
        """
        The voice webhook: returns (context id, media path, token).
        """
        url = f"https://gw.example.com/v1/talk/twilio/call/{assistant}"
        form = {"From": "+15550001", "To": "+15550002", "CallSid": CALL_SID}
        headers = {}
        if self.h.config.twilio.auth_token:
            headers["X-Twilio-Signature"] = twilioSignature(
                TOKEN, url, {k: [v] for k, v in form.items()}
            )
        response, body = self.h.request(
            self, "POST", f"/v1/talk/twilio/call/{assistant}", data=form, headers=headers
        )
        self.assertEqual(response.code, 200, body)
        root = ElementTree.fromstring(body)
        stream = root.find("./Connect/Stream")
        assert stream is not None
        params = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
        path = urlsplit(stream.get("url", "")).path
        return path.rsplit("/", 1)[1], path, params["token"] or ""

    def open(self, path: str) -> Stream:
        headers = {}
        if self.h.config.twilio.auth_token:
            headers["X-Twilio-Signature"] = twilioSignature(TOKEN, "wss://gw.example.com" + path, {})
        return Stream(self.h, path, headers)

    def started(self, assistant: str = "echo") -> tuple[str, Stream]:
        contextId, path, token = self.call(assistant)
        stream = self.open(path)
        self.assertEqual(stream.status, "HTTP/1.1 101 Switching Protocols")
        stream.connected()
        stream.start(token)
        return contextId, stream

    def context(self, contextId: str) -> Any:
        return self.successResultOf(self.h.store.get(contextId))

    def events(self, contextId: str, kind: str | None = None) -> list[tuple[str, str, Any]]:
        rows = self.successResultOf(self.h.store.listEvents(contextId, kind))
        return [(e.source, e.kind, e.payload) for e in rows]

    def errors(self, reason: str) -> float:
        value = self.h.gateway.metrics.registry.get_sample_value(
            "rapida_protocol_errors_total", {"transport": "twilio", "reason": reason}
        )
        return 0.0 if value is None else value


class EchoCallTests(Base):
    def test_interfaces(self) -> None:
        contextId, stream = self.started()
        adapter = stream.transport.protocol.adapter
        assert adapter is not None
        self.assertIsInstance(adapter, TwilioMediaAdapter)
        verifyObject(IMediaAdapter, adapter)
        verifyObject(ICallTransport, adapter)

    def test_echo(self) -> None:
        """
        The caller hears what they said: media frames of 160 bytes with the
        stream's sid, correlating with the caller's audio.
        """
        contextId, stream = self.started()
        context = self.context(contextId)
        self.assertEqual(context.status, "claimed")
        self.assertEqual(context.channel_uuid, CALL_SID)
        said = ulawEncode(speechLike(1.0, 8000, seed=7))
        for i in range(0, len(said), 160):
            stream.media(said[i : i + 160], chunk=i // 160 + 1)
        media = stream.events("media")
        self.assertEqual(len(media), 50)
        self.assertEqual({m["streamSid"] for m in media}, {"MZ1"})
        self.assertEqual({len(base64.b64decode(m["media"]["payload"])) for m in media}, {160})
        score, lag = correlation(ulawDecode(said), ulawDecode(stream.heard()), 200)
        self.assertGreaterEqual(score, 0.9)
        self.assertEqual(
            [kind for _, kind, _ in self.events(contextId)], ["webhook", "claimed", "start"]
        )

    def test_dtmf_events(self) -> None:
        contextId, stream = self.started()
        for digit in "12#":
            stream.dtmf(digit)
        self.assertEqual(
            self.events(contextId, "dtmf"), [("provider", "dtmf", {"digit": d}) for d in "12#"]
        )

    def test_stop(self) -> None:
        """
        stop finishes the context (completed), with hangup and ended events,
        and the gateway closes the socket normally.
        """
        contextId, stream = self.started()
        stream.media(b"\xff" * 160)
        stream.stop()
        context = self.context(contextId)
        self.assertEqual(context.status, "completed")
        self.assertEqual(stream.closeCode, 1000)
        self.assertEqual(
            [(s, k) for s, k, _ in self.events(contextId)][-2:],
            [("provider", "hangup"), ("provider", "ended")],
        )
        self.assertEqual(self.rest.requests, [])
        stream.disconnect()
        self.assertEqual(len(self.events(contextId, "ended")), 1)

    def test_socket_closed_without_stop(self) -> None:
        contextId, stream = self.started()
        stream.disconnect()
        self.assertEqual(self.context(contextId).status, "completed")
        ((source, _, payload),) = self.events(contextId, "ended")
        self.assertEqual(source, "provider")
        self.assertIn("socket closed", payload["reason"])
        gauge = self.h.gateway.metrics.registry.get_sample_value(
            "rapida_active_calls", {"provider": "twilio"}
        )
        self.assertEqual(gauge, 0)

    def test_second_stream_refused(self) -> None:
        contextId, path, token = self.call()
        first = self.open(path)
        first.connected()
        first.start(token)
        second = self.open(path)
        self.assertEqual(second.status, "HTTP/1.1 409 Conflict")
        self.assertEqual(self.context(contextId).status, "claimed")

    def test_claimed_between_upgrade_and_start(self) -> None:
        """
        Two sockets upgraded before either started: the second start is
        closed with 4409.
        """
        contextId, path, token = self.call()
        first, second = self.open(path), self.open(path)
        first.start(token)
        second.start(token)
        self.assertEqual(second.closeCode, 4409)
        self.assertIsNone(first.closeCode)

    def test_expired_before_start(self) -> None:
        contextId, path, token = self.call()
        stream = self.open(path)
        # the context outlives its TTL between the upgrade and start
        self.h.store.ttl = 5
        self.h.clock.advance(6)
        stream.start(token)
        self.assertEqual(stream.closeCode, 4410)
        self.assertIn("expired", stream.closeReason)

    def slowClaim(self) -> list[Deferred[Any]]:
        """
        Make the store's claim wait until the test fires it.
        """
        waiting: list[Deferred[Any]] = []
        claim = self.h.store.claim

        def slow(contextId: str) -> Deferred[Any]:
            d: Deferred[Any] = Deferred()
            waiting.append(d)
            d.addCallback(lambda _: claim(contextId))
            return d

        self.h.store.claim = slow  # type: ignore[method-assign, assignment]
        return waiting

    def test_messages_during_claim(self) -> None:
        """
        What arrives while the claim is on its way is handled, in order,
        once it is done.
        """
        waiting = self.slowClaim()
        contextId, stream = self.started()
        stream.media(b"\x00" * 160)
        stream.dtmf("4")
        stream.stop()
        self.assertEqual(stream.events("media"), [])
        waiting.pop().callback(None)
        stream.read()
        self.assertEqual(len(stream.events("media")), 1)
        self.assertEqual(self.events(contextId, "dtmf"), [("provider", "dtmf", {"digit": "4"})])
        self.assertEqual(self.context(contextId).status, "completed")
        self.assertEqual(stream.closeCode, 1000)

    def test_closed_during_claim(self) -> None:
        waiting = self.slowClaim()
        contextId, stream = self.started()
        stream.disconnect()
        waiting.pop().callback(None)
        self.assertEqual(self.context(contextId).status, "completed")
        self.assertEqual(
            [kind for _, kind, _ in self.events(contextId)], ["webhook", "claimed", "ended"]
        )

    def test_wrong_token(self) -> None:
        contextId, path, token = self.call()
        for bad in ["nope", None]:
            stream = self.open(path)
            stream.connected()
            stream.start(bad)
            self.assertEqual(stream.closeCode, 4403)
            self.assertIn("token", stream.closeReason)
        self.assertEqual(self.context(contextId).status, "pending")
        errors = self.events(contextId, "error")
        self.assertEqual([p["code"] for _, _, p in errors], ["bad_token", "bad_token"])
        self.assertEqual(self.errors("bad_token"), 2)
        # the right token still works afterwards
        stream = self.open(path)
        stream.start(token)
        self.assertIsNone(stream.closeCode)
        self.assertEqual(self.context(contextId).status, "claimed")

    def test_message_before_start(self) -> None:
        contextId, path, token = self.call()
        stream = self.open(path)
        stream.connected()
        stream.media(b"\xff" * 160)
        self.assertEqual(stream.closeCode, 4400)
        self.assertIn("media before start", stream.closeReason)

    def test_bad_json_before_start(self) -> None:
        contextId, path, token = self.call()
        stream = self.open(path)
        stream.send("{not json")
        self.assertEqual(stream.closeCode, 4400)
        self.assertEqual(self.errors("bad_json"), 1)

    def test_unsupported_format(self) -> None:
        contextId, path, token = self.call()
        stream = self.open(path)
        stream.start(token, encoding="audio/opus")
        self.assertEqual(stream.closeCode, 4400)
        self.assertEqual(self.context(contextId).status, "pending")

    def test_no_start(self) -> None:
        contextId, path, token = self.call()
        stream = self.open(path)
        stream.connected()
        self.h.clock.advance(START_TIMEOUT + 0.1)
        stream.read()
        self.assertEqual(stream.closeCode, 4400)
        self.assertIn("no start", stream.closeReason)

    def test_bad_messages_isolated(self) -> None:
        """
        Garbage on one call is logged and counted; enough of it in a row
        closes that call (failed) while another call goes on untouched.
        """
        badId, bad = self.started()
        goodId, good = self.started()
        bad.send("{garbage")
        bad.send(b"\x00\x01", binary=True)
        bad.send({"event": "media", "media": {"payload": "!!!"}})
        bad.send({"event": "surprise"})
        self.assertIsNone(bad.closeCode)
        bad.media(b"\xff" * 160)
        self.assertEqual(len(bad.events("media")), 1)
        self.assertEqual(self.errors("unknown_event"), 1)
        for n in range(MAX_BAD_IN_A_ROW):
            good.media(bytes([n]) * 160, chunk=n)
            bad.send("nope")
        self.assertEqual(bad.closeCode, 4400)
        self.assertEqual(self.context(badId).status, "failed")
        self.assertIsNone(good.closeCode)
        self.assertEqual(len(good.events("media")), MAX_BAD_IN_A_ROW)
        self.assertEqual(self.context(goodId).status, "claimed")
        self.assertGreaterEqual(self.errors("bad_json"), MAX_BAD_IN_A_ROW)


class SpeakerTests(Base):
    toml = SPEAKER_TOML

    def session(self) -> SpeakerSession:
        (session,) = self.speaker.sessions
        return session

    def test_mark_round_trip(self) -> None:
        """
        After a response's frames comes a mark; its echo tells the
        assistant the caller heard it.
        """
        contextId, stream = self.started("speaker")
        messages = stream.read()
        self.assertEqual([m["event"] for m in messages], ["media"] * 5 + ["mark"])
        name = messages[-1]["mark"]["name"]
        self.assertEqual(messages[-1]["streamSid"], "MZ1")
        self.assertEqual(self.session().completed, [])
        stream.mark(name)
        self.assertEqual(self.session().completed, ["greeting"])
        stream.mark(name)
        self.assertEqual(self.session().completed, ["greeting"])
        self.assertEqual(self.events(contextId, "mark"), [("provider", "mark", {"name": "greeting"})])

    def test_clear(self) -> None:
        contextId, stream = self.started("speaker")
        stream.dtmf("0")
        self.assertEqual(stream.read()[-1], {"event": "clear", "streamSid": "MZ1"})
        # Twilio echoes the flushed mark at once: not reported
        stream.mark(stream.events("mark")[0]["mark"]["name"])
        self.assertEqual(self.session().completed, [])
        stream.dtmf("5")
        stream.mark(stream.events("mark")[-1]["mark"]["name"])
        self.assertEqual(self.session().completed, ["more"])
        self.assertEqual(len(self.events(contextId, "clear")), 1)

    def test_hangup_rest(self) -> None:
        """
        The assistant hangs up: Twilio's REST API completes the call, then
        the socket closes and the context is completed.
        """
        contextId, stream = self.started("speaker")
        stream.dtmf("9")
        self.stub.flush()
        ((uri, auth, args, host),) = self.rest.requests
        self.assertEqual(uri, f"/2010-04-01/Accounts/{SID}/Calls/{CALL_SID}.json")
        self.assertEqual(host, "api.twilio.com")
        self.assertEqual(auth, "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode())
        self.assertEqual(args, {b"Status": [b"completed"]})
        stream.read()
        self.assertEqual((stream.closeCode, stream.closeReason), (1000, "goodbye"))
        self.assertEqual(self.context(contextId).status, "completed")
        self.assertEqual(self.events(contextId, "hangup"), [("assistant", "hangup", {"reason": "goodbye"})])
        self.assertEqual(self.session().ended, ["goodbye"])

    def test_hangup_rest_gone(self) -> None:
        """
        A 404 (the call already ended) counts as done.
        """
        self.rest.code = 404
        contextId, stream = self.started("speaker")
        stream.dtmf("9")
        self.stub.flush()
        stream.read()
        self.assertEqual(stream.closeCode, 1000)
        self.assertEqual(len(self.rest.requests), 1)

    def test_hangup_rest_fails(self) -> None:
        """
        A REST error is logged and the socket is closed anyway.
        """
        self.rest.code = 500
        contextId, stream = self.started("speaker")
        stream.dtmf("9")
        self.stub.flush()
        stream.read()
        self.assertEqual(stream.closeCode, 1000)


class NoCredentialsHangupTests(Base):
    toml = '[[assistants]]\nid = "speaker"\nkind = "python"\n'

    def test_hangup_closes(self) -> None:
        contextId, stream = self.started("speaker")
        stream.dtmf("9")
        self.assertEqual(self.rest.requests, [])
        self.assertEqual((stream.closeCode, stream.closeReason), (1000, "goodbye"))
        self.assertEqual(self.context(contextId).status, "completed")

    def test_unavailable_assistant(self) -> None:
        """
        An assistant that cannot run (here: a python kind without its
        factory): error event, the call ends.
        """
        self.h.gateway.assistants = AssistantRegistry(self.h.config)
        contextId, stream = self.started("speaker")
        self.assertEqual(stream.closeCode, 1000)
        ((_, _, payload),) = self.events(contextId, "error")
        self.assertIn("assistant 'speaker': options.factory", payload["message"])
        self.assertEqual(len(self.flushLoggedErrors()), 1)


@implementer(IMediaChannel)
class FakeChannel:
    """
    An in-memory IMediaChannel.
    """

    peer = "test"

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.closes: list[tuple[int, str]] = []

    def sendText(self, text: str) -> None:
        self.texts.append(text)

    def sendBinary(self, data: bytes) -> None:
        raise AssertionError("Twilio streams are text only")

    def close(self, code: int, reason: str) -> None:
        self.closes.append((code, reason))

    def pauseReading(self) -> None:
        pass

    def resumeReading(self) -> None:
        pass


verifyObject(IMediaChannel, FakeChannel())

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)

_MESSAGES = st.one_of(
    st.binary(max_size=40).map(lambda b: (b, True)),
    st.binary(max_size=40).map(lambda b: (b, False)),
    st.builds(
        lambda event, body: (json.dumps({"event": event, **body}).encode(), False),
        st.sampled_from(["connected", "start", "media", "mark", "dtmf", "stop", "other"]),
        st.dictionaries(
            st.sampled_from(["start", "media", "mark", "dtmf", "stop", "streamSid"]), _JSON, max_size=3
        ),
    ),
)


class AdapterFuzzTests(SynchronousTestCase):
    """
    Whatever arrives, nothing raises out of the adapter and it only ever
    closes with a documented code.
    """

    @settings(max_examples=150, deadline=None)
    @given(st.lists(_MESSAGES, max_size=12), st.booleans())
    def test_never_raises(self, messages: list[tuple[bytes, bool]], started: bool) -> None:
        h = Harness()
        new = self.successResultOf(h.store.create("twilio", "echo"))
        channel = FakeChannel()
        provider = h.gateway.providers["twilio"]
        factory = provider.mediaAdapter()
        adapter = factory(channel, new.context, h.gateway, None)
        adapter.opened()
        if started:
            start = {
                "event": "start",
                "streamSid": "MZ1",
                "start": {"streamSid": "MZ1", "customParameters": {"token": new.token}},
            }
            adapter.messageReceived(json.dumps(start).encode(), False)
            self.assertEqual(channel.closes, [])
        for payload, isBinary in messages:
            adapter.messageReceived(payload, isBinary)
        adapter.closed(1000, "")
        h.clock.advance(START_TIMEOUT + 1)
        self.assertLessEqual(len(channel.closes), 1)
        self.assertEqual({code for code, _ in channel.closes} - {1000, 4400, 4403}, set())
        context = self.successResultOf(h.store.get(new.context.context_id))
        if not started:
            self.assertEqual(context.status, "pending")
        elif channel.closes and channel.closes[0][0] == 4400:
            self.assertEqual(context.status, "failed")
        else:
            self.assertEqual(context.status, "completed")
