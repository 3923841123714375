"""
Tests for L{rapida_twisted.providers.vonage._media}: the Vonage WebSocket
adapter end to end through the web site in memory (answer webhook → NCCO
→ WebSocket upgrade → messages), with the echo assistant and a test
assistant that speaks, clears and hangs up; and the application JWT.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase
from twisted.web import resource
from twisted.web.server import Request
from zope.interface.verify import verifyObject

from rapida_twisted.assistants import AssistantRegistry
from rapida_twisted.interfaces import ICallTransport, IMediaAdapter
from rapida_twisted.media.analysis import correlation, speechLike
from rapida_twisted.providers._stream import MAX_BAD_IN_A_ROW, MAX_HELD, START_TIMEOUT
from rapida_twisted.providers.vonage import (
    PrivateKeyError,
    VonageMediaAdapter,
    VonageProvider,
    applicationJWT,
)
from rapida_twisted.providers.vonage._media import API_BASE, loadPrivateKey

from ._web import FakeChannel, Harness, Speaker, StreamClient

CALL_UUID = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
APP_ID = "11111111-2222-4333-8444-555555555555"

_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PRIVATE_PEM = _KEY.private_bytes(
    serialization.Encoding.PEM,
    serialization.PrivateFormat.PKCS8,
    serialization.NoEncryption(),
)
PUBLIC_PEM = _KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)

ASSISTANTS = """
[[assistants]]
id = "speaker"
kind = "python"

[[assistants]]
id = "narrow"
kind = "echo"
sample_rate = 8000
"""


class VonageStream(StreamClient):
    """
    Vonage's end of one WebSocket, in memory.
    """

    def connected(self, token: str | None, rate: int | None = 16000, **headers: Any) -> None:
        message: dict[str, Any] = {"event": "websocket:connected"}
        if rate is not None:
            message["content-type"] = f"audio/l16;rate={rate}"
        if token is not None:
            message["token"] = token
        message.update(headers)
        self.send(message)

    def audio(self, pcm: bytes) -> None:
        self.send(pcm, binary=True)

    def dtmf(self, digit: str, duration: int = 260) -> None:
        self.send({"event": "websocket:dtmf", "digit": digit, "duration": duration})

    def heard(self) -> bytes:
        self._read()
        return b"".join(self.binary)


class VonageREST(resource.Resource):
    """
    Records Voice API requests; answers with C{code}.
    """

    isLeaf = True

    def __init__(self, code: int = 204) -> None:
        super().__init__()
        self.code = code
        self.requests: list[dict[str, Any]] = []

    def render_PUT(self, request: Request) -> bytes:
        assert request.content is not None
        self.requests.append(
            {
                "uri": request.uri.decode(),
                "host": request.getHeader("host") or "",
                "authorization": request.getHeader("authorization") or "",
                "content-type": request.getHeader("content-type") or "",
                "body": json.loads(request.content.read()),
            }
        )
        request.setResponseCode(self.code)
        return b"" if self.code == 204 else b'{"title": "nope"}'


class Base(SynchronousTestCase):
    toml = ASSISTANTS
    speakerRate = 16000

    def setUp(self) -> None:
        self.h = Harness(self.toml)
        self.speaker = Speaker("speaker", self.speakerRate)
        self.h.gateway.assistants = AssistantRegistry(
            self.h.config, {"python": lambda config: self.speaker}
        )
        self.rest = VonageREST()
        self.stub = StubTreq(self.rest)
        self.h.gateway.httpClient = self.stub

    def call(self, assistant: str = "echo", **params: str) -> tuple[str, str, str, str]:
        """
        The answer webhook: (context id, media path, token, content-type).
        """
        query = {"from": "447700900000", "to": "447700900001", "uuid": CALL_UUID, **params}
        response, body = self.h.request(
            self, "GET", f"/v1/talk/vonage/call/{assistant}", params=query
        )
        self.assertEqual(response.code, 200, body)
        ((action,)) = json.loads(body)
        ((endpoint,)) = action["endpoint"]
        path = urlsplit(endpoint["uri"]).path
        return (
            path.rsplit("/", 1)[1],
            path,
            endpoint["headers"]["token"],
            endpoint["content-type"],
        )

    def started(self, assistant: str = "echo", **params: str) -> tuple[str, VonageStream]:
        contextId, path, token, contentType = self.call(assistant, **params)
        stream = VonageStream(self.h, path)
        self.assertEqual(stream.status, "HTTP/1.1 101 Switching Protocols")
        stream.send({"event": "websocket:connected", "content-type": contentType, "token": token})
        return contextId, stream

    def context(self, contextId: str) -> Any:
        return self.successResultOf(self.h.store.get(contextId))

    def events(self, contextId: str, kind: str | None = None) -> list[tuple[str, str, Any]]:
        rows = self.successResultOf(self.h.store.listEvents(contextId, kind))
        return [(e.source, e.kind, e.payload) for e in rows]

    def errors(self, reason: str) -> float:
        value = self.h.gateway.metrics.registry.get_sample_value(
            "rapida_protocol_errors_total", {"transport": "vonage", "reason": reason}
        )
        return 0.0 if value is None else value


class EchoTests(Base):
    def test_interfaces(self) -> None:
        _, stream = self.started()
        self.assertIsInstance(stream.adapter, VonageMediaAdapter)
        verifyObject(IMediaAdapter, stream.adapter)
        verifyObject(ICallTransport, stream.adapter)
        self.assertFalse(stream.adapter.supportsMarks)
        self.assertFalse(stream.adapter.paced)

    def test_echo16k(self) -> None:
        """
        The caller hears what they said: binary frames of exactly 640
        bytes (20 ms at 16 kHz), correlating with the caller's audio.
        """
        contextId, stream = self.started()
        context = self.context(contextId)
        self.assertEqual((context.status, context.channel_uuid), ("claimed", CALL_UUID))
        said = speechLike(1.0, 16000, seed=3)
        for i in range(0, len(said), 640):
            stream.audio(said[i : i + 640])
        self.assertEqual(len(stream.binary), 50)
        self.assertEqual({len(frame) for frame in stream.binary}, {640})
        self.assertEqual(stream.messages, [])
        score, _ = correlation(said, stream.heard(), 200)
        self.assertGreaterEqual(score, 0.9)
        self.assertEqual(
            [kind for _, kind, _ in self.events(contextId)], ["webhook", "claimed", "start"]
        )
        ((_, _, claimed),) = self.events(contextId, "claimed")
        self.assertEqual(claimed["content_type"], "audio/l16;rate=16000")
        ((_, _, start),) = self.events(contextId, "start")
        self.assertEqual((start["codec"], start["sample_rate"]), ("l16", 16000))

    def test_echo8k(self) -> None:
        """
        An 8 kHz assistant gets an 8 kHz NCCO and 320-byte frames.
        """
        contextId, path, token, contentType = self.call("narrow")
        self.assertEqual(contentType, "audio/l16;rate=8000")
        stream = VonageStream(self.h, path)
        stream.connected(token, 8000)
        said = speechLike(0.6, 8000, seed=5)
        for i in range(0, len(said), 320):
            stream.audio(said[i : i + 320])
        self.assertEqual({len(frame) for frame in stream.binary}, {320})
        score, _ = correlation(said, stream.heard(), 100)
        self.assertGreaterEqual(score, 0.9)

    def test_wireRateWins(self) -> None:
        """
        The rate Vonage announces is the wire's, whatever the NCCO asked:
        16 kHz frames for an 8 kHz assistant (resampled both ways).
        """
        contextId, path, token, _ = self.call("narrow")
        stream = VonageStream(self.h, path)
        stream.connected(token, 16000)
        said = speechLike(0.6, 16000, seed=6)
        for i in range(0, len(said), 640):
            stream.audio(said[i : i + 640])
        self.assertEqual({len(frame) for frame in stream.binary}, {640})
        score, _ = correlation(said, stream.heard(), 200)
        self.assertGreaterEqual(score, 0.8)

    def test_anyChunking(self) -> None:
        """
        Frames of another (even) size are reframed into 20 ms.
        """
        _, stream = self.started()
        stream.audio(b"\x01\x00" * 100)
        stream.audio(b"\x01\x00" * 500)
        self.assertEqual([len(frame) for frame in stream.binary], [640])

    def test_noContentType(self) -> None:
        """
        Without a content-type the wire is taken as 16 kHz.
        """
        contextId, path, token, _ = self.call()
        stream = VonageStream(self.h, path)
        stream.connected(token, None)
        stream.audio(b"\x00" * 640)
        self.assertEqual([len(frame) for frame in stream.binary], [640])

    def test_dtmfRows(self) -> None:
        """
        One call event per digit, whatever shape the event takes.
        """
        contextId, stream = self.started()
        stream.dtmf("1")
        stream.dtmf("#")
        stream.send({"event": "websocket:dtmf", "dtmf": {"digit": "7", "duration": 100}})
        stream.send({"event": "websocket:dtmf", "digits": "42"})
        self.assertEqual(
            self.events(contextId, "dtmf"),
            [("provider", "dtmf", {"digit": d}) for d in "1#742"],
        )

    def test_socketClosedFinishes(self) -> None:
        contextId, stream = self.started()
        stream.audio(b"\x00" * 640)
        stream.disconnect()
        self.assertEqual(self.context(contextId).status, "completed")
        ((source, _, payload),) = self.events(contextId, "ended")
        self.assertEqual((source, payload["outcome"]), ("provider", "completed"))
        self.assertIn("socket closed", payload["reason"])
        gauge = self.h.gateway.metrics.registry.get_sample_value(
            "rapida_active_calls", {"provider": "vonage"}
        )
        self.assertEqual(gauge, 0)

    def test_secondStreamRefused(self) -> None:
        contextId, path, token, _ = self.call()
        first = VonageStream(self.h, path)
        first.connected(token)
        second = VonageStream(self.h, path)
        self.assertEqual(second.status, "HTTP/1.1 409 Conflict")

    def test_claimedBetweenUpgradeAndConnected(self) -> None:
        contextId, path, token, _ = self.call()
        first, second = VonageStream(self.h, path), VonageStream(self.h, path)
        first.connected(token)
        second.connected(token)
        self.assertEqual(second.closeCode, 4409)
        self.assertIsNone(first.closeCode)

    def test_duplicateConnected(self) -> None:
        _, stream = self.started()
        stream.connected("whatever")
        self.assertIsNone(stream.closeCode)
        self.assertEqual(self.errors("duplicate_start"), 1)

    def test_messagesDuringClaim(self) -> None:
        """
        Audio and DTMF that arrive while the claim is on its way are held
        (at most MAX_HELD) and handled in order once it is done.
        """
        waiting: list[Deferred[Any]] = []
        claim = self.h.store.claim

        def slow(contextId: str) -> Deferred[Any]:
            d: Deferred[Any] = Deferred()
            waiting.append(d)
            d.addCallback(lambda _: claim(contextId))
            return d

        self.h.store.claim = slow  # type: ignore[method-assign, assignment]
        contextId, stream = self.started()
        for _ in range(MAX_HELD + 5):
            stream.audio(b"\x00" * 640)
        stream.dtmf("4")
        self.assertEqual(stream.binary, [])
        waiting.pop().callback(None)
        stream.read()
        # echoed as fast as flow control allows: a second ahead, then the rest
        self.assertEqual(len(stream.binary), 50)
        self.h.clock.advance(2)
        stream.read()
        self.assertEqual(len(stream.binary), MAX_HELD - 1)
        self.assertEqual(self.events(contextId, "dtmf"), [("provider", "dtmf", {"digit": "4"})])
        dropped = self.h.gateway.metrics.registry.get_sample_value(
            "rapida_frames_dropped_total", {"direction": "inbound"}
        )
        self.assertEqual(dropped, 6)


class RefusalTests(Base):
    def test_wrongToken(self) -> None:
        contextId, path, token, _ = self.call()
        for bad in ["nope", None]:
            stream = VonageStream(self.h, path)
            stream.connected(bad)
            self.assertEqual(stream.closeCode, 4403)
            self.assertIn("token", stream.closeReason)
        self.assertEqual(self.context(contextId).status, "pending")
        self.assertEqual(
            [p["code"] for _, _, p in self.events(contextId, "error")], ["bad_token"] * 2
        )
        self.assertEqual(self.errors("bad_token"), 2)
        stream = VonageStream(self.h, path)
        stream.connected(token)
        self.assertIsNone(stream.closeCode)
        self.assertEqual(self.context(contextId).status, "claimed")

    def test_tokenNotAString(self) -> None:
        contextId, path, token, _ = self.call()
        stream = VonageStream(self.h, path)
        stream.send({"event": "websocket:connected", "token": 12345})
        self.assertEqual(stream.closeCode, 4403)

    def test_audioBeforeConnected(self) -> None:
        contextId, path, token, _ = self.call()
        stream = VonageStream(self.h, path)
        stream.audio(b"\x00" * 640)
        self.assertEqual(stream.closeCode, 4400)
        self.assertIn("audio before websocket:connected", stream.closeReason)
        self.assertEqual(self.errors("before_start"), 1)
        self.assertEqual(self.context(contextId).status, "pending")

    def test_dtmfBeforeConnected(self) -> None:
        contextId, path, token, _ = self.call()
        stream = VonageStream(self.h, path)
        stream.dtmf("1")
        self.assertEqual(stream.closeCode, 4400)
        self.assertIn("websocket:dtmf before websocket:connected", stream.closeReason)

    def test_unknownBeforeConnectedIgnored(self) -> None:
        contextId, path, token, _ = self.call()
        stream = VonageStream(self.h, path)
        stream.send({"event": "websocket:surprise"})
        self.assertIsNone(stream.closeCode)
        stream.connected(token)
        self.assertEqual(self.context(contextId).status, "claimed")
        self.assertEqual(self.errors("unknown_event"), 1)

    def test_badJSONBeforeConnected(self) -> None:
        contextId, path, token, _ = self.call()
        stream = VonageStream(self.h, path)
        stream.send("{nope")
        self.assertEqual(stream.closeCode, 4400)
        self.assertEqual(self.errors("bad_json"), 1)

    def test_oddAudioBeforeConnected(self) -> None:
        contextId, path, token, _ = self.call()
        stream = VonageStream(self.h, path)
        stream.audio(b"\x00" * 639)
        self.assertEqual(stream.closeCode, 4400)
        self.assertEqual(self.errors("bad_audio"), 1)

    def test_notL16(self) -> None:
        contextId, path, token, _ = self.call()
        stream = VonageStream(self.h, path)
        stream.send({"event": "websocket:connected", "content-type": "audio/pcmu", "token": token})
        self.assertEqual(stream.closeCode, 4400)
        self.assertEqual(self.errors("bad_value"), 1)

    def test_unsupportedRate(self) -> None:
        contextId, path, token, _ = self.call()
        stream = VonageStream(self.h, path)
        stream.connected(token, 11025)
        self.assertEqual(stream.closeCode, 4400)
        self.assertIn("media format", stream.closeReason)
        self.assertEqual(self.context(contextId).status, "pending")

    def test_noConnected(self) -> None:
        contextId, path, token, _ = self.call()
        stream = VonageStream(self.h, path)
        self.h.clock.advance(START_TIMEOUT + 0.1)
        stream.read()
        self.assertEqual(stream.closeCode, 4400)
        self.assertIn("no websocket:connected message", stream.closeReason)

    def test_badInputWhileRunning(self) -> None:
        """
        Odd-length and oversized binary frames, garbage and oversized text
        and unknown events are counted and skipped; a run of
        MAX_BAD_IN_A_ROW bad messages closes the call (failed), while
        another call goes on.
        """
        badId, bad = self.started()
        goodId, good = self.started()
        bad.audio(b"\x00" * 641)
        bad.audio(b"\x00" * (16 * 1024 + 2))
        bad.send("{garbage")
        bad.send("[1, 2]")
        bad.send(json.dumps({"event": "websocket:dtmf", "pad": "x" * (64 * 1024)}))
        bad.send({"event": "websocket:dtmf", "digit": "X"})
        bad.send({"event": "websocket:surprise"})
        self.assertIsNone(bad.closeCode)
        bad.audio(b"\x00" * 640)
        self.assertEqual(len(bad.binary), 1)
        for reason in ["bad_audio", "too_large", "bad_json", "not_object", "bad_value"]:
            self.assertGreaterEqual(self.errors(reason), 1, reason)
        self.assertEqual(self.errors("too_large"), 2)
        self.assertEqual(self.errors("unknown_event"), 1)
        for _ in range(MAX_BAD_IN_A_ROW):
            good.audio(b"\x00" * 640)
            bad.audio(b"\x00" * 3)
        self.assertEqual(bad.closeCode, 4400)
        self.assertEqual(self.context(badId).status, "failed")
        self.assertIsNone(good.closeCode)
        self.assertEqual(len(good.binary), MAX_BAD_IN_A_ROW)
        self.assertEqual(self.context(goodId).status, "claimed")


class SpeakerTests(Base):
    def session(self) -> Any:
        (session,) = self.speaker.sessions
        return session

    def test_playoutEstimated(self) -> None:
        """
        Without marks the greeting's completion comes when its frames have
        had time to play, recorded as a gateway mark.
        """
        contextId, stream = self.started("speaker")
        self.assertEqual([len(f) for f in stream.binary], [640] * 5)
        self.assertEqual(stream.messages, [])
        self.assertEqual(self.session().completed, [])
        self.h.clock.advance(0.11)
        self.assertEqual(self.session().completed, ["greeting"])
        self.assertEqual(
            self.events(contextId, "mark"), [("gateway", "mark", {"name": "greeting"})]
        )

    def test_flowControl(self) -> None:
        """
        A long response goes out no more than about a second ahead of real
        time (far inside Vonage's buffer), each message one 20 ms frame.
        """
        contextId, stream = self.started("speaker")
        stream.dtmf("1")
        sent = len(stream.binary)
        self.assertLessEqual(sent, 51)
        self.assertGreaterEqual(sent, 45)
        for _ in range(40):
            self.h.clock.advance(0.1)
            stream.read()
            lead = len(stream.binary) * 0.02 - (self.h.clock.seconds() - 1_800_000_000)
            self.assertLessEqual(lead, 1.0 + 0.001 + 0.02)
        self.assertEqual(len(stream.binary), 5 + 150)
        self.assertEqual({len(f) for f in stream.binary}, {640})
        self.h.clock.advance(1.5)
        self.assertEqual(self.session().completed, ["greeting", "long"])

    def test_clear(self) -> None:
        """
        Barge-in: {"action":"clear"}, nothing more of the response is sent,
        a clear event; Vonage's websocket:cleared is accepted.
        """
        contextId, stream = self.started("speaker")
        self.h.clock.advance(0.2)
        stream.dtmf("1")
        before = len(stream.binary)
        stream.dtmf("0")
        self.assertEqual(stream.read(), [{"action": "clear"}])
        stream.send({"event": "websocket:cleared"})
        self.assertEqual(stream.adapter.cleared, 1)
        self.h.clock.advance(5)
        stream.read()
        self.assertEqual(len(stream.binary), before)
        self.assertEqual(self.session().completed, ["greeting"])
        ((source, _, payload),) = self.events(contextId, "clear")
        self.assertEqual(source, "assistant")
        self.assertGreater(payload["frames"], 0)
        # the next response plays normally
        stream.dtmf("5")
        self.assertEqual(len(stream.binary), before + 5)
        self.h.clock.advance(0.2)
        self.assertEqual(self.session().completed, ["greeting", "more"])
        self.assertIsNone(stream.closeCode)

    def test_hangupWithoutCredentials(self) -> None:
        contextId, stream = self.started("speaker")
        stream.dtmf("9")
        self.assertEqual(self.rest.requests, [])
        self.assertEqual((stream.closeCode, stream.closeReason), (1000, "goodbye"))
        self.assertEqual(self.context(contextId).status, "completed")
        self.assertEqual(self.session().ended, ["goodbye"])


class RESTHangupTests(Base):
    def setUp(self) -> None:
        keyFile = self.mktemp()
        with open(keyFile, "wb") as f:
            f.write(PRIVATE_PEM)
        self.keyFile = keyFile
        self.toml = ASSISTANTS + (
            f'\n[providers.vonage]\napplication_id = "{APP_ID}"\nprivate_key_file = "{keyFile}"\n'
        )
        super().setUp()

    def hangup(self, **params: str) -> tuple[str, VonageStream]:
        contextId, stream = self.started("speaker", **params)
        stream.dtmf("9")
        self.stub.flush()
        stream.read()
        return contextId, stream

    def test_hangup(self) -> None:
        """
        PUT /v1/calls/{uuid} {"action":"hangup"} with an RS256 application
        JWT, then a normal close; the context is completed.
        """
        contextId, stream = self.hangup()
        ((request,)) = self.rest.requests
        self.assertEqual(request["uri"], f"/v1/calls/{CALL_UUID}")
        self.assertEqual(request["host"], "api.nexmo.com")
        self.assertEqual(request["body"], {"action": "hangup"})
        self.assertIn("application/json", request["content-type"])
        scheme, _, token = request["authorization"].partition(" ")
        self.assertEqual(scheme, "Bearer")
        self.assertEqual(jwt.get_unverified_header(token)["alg"], "RS256")
        claims = jwt.decode(
            token,
            PUBLIC_PEM,
            algorithms=["RS256"],
            options={"verify_exp": False, "verify_iat": False},
        )
        self.assertEqual(claims["application_id"], APP_ID)
        self.assertEqual(claims["iat"], int(self.h.clock.seconds()))
        self.assertEqual(claims["exp"] - claims["iat"], 300)
        self.assertTrue(claims["jti"])
        self.assertEqual((stream.closeCode, stream.closeReason), (1000, "goodbye"))
        self.assertEqual(self.context(contextId).status, "completed")
        self.assertEqual(
            self.events(contextId, "hangup"), [("assistant", "hangup", {"reason": "goodbye"})]
        )

    def test_regionURL(self) -> None:
        self.hangup(region_url="https://api-us-3.vonage.com")
        ((request,)) = self.rest.requests
        self.assertEqual(request["host"], "api-us-3.vonage.com")

    def test_foreignRegionIgnored(self) -> None:
        self.hangup(region_url="https://evil.example.com")
        ((request,)) = self.rest.requests
        self.assertEqual(request["host"], "api.nexmo.com")

    def test_gone(self) -> None:
        self.rest.code = 404
        contextId, stream = self.hangup()
        self.assertEqual(len(self.rest.requests), 1)
        self.assertEqual(stream.closeCode, 1000)

    def test_refused(self) -> None:
        """
        A REST error is logged; the socket is closed anyway.
        """
        self.rest.code = 401
        contextId, stream = self.hangup()
        self.assertEqual(stream.closeCode, 1000)
        self.assertEqual(self.context(contextId).status, "completed")

    def test_noCallId(self) -> None:
        """
        Without the call's uuid there is nothing to hang up: just close.
        """
        contextId, stream = self.hangup(uuid="")
        self.assertEqual(self.rest.requests, [])
        self.assertEqual(stream.closeCode, 1000)

    def test_callIdFromHeaders(self) -> None:
        contextId, path, token, _ = self.call("speaker", uuid="")
        stream = VonageStream(self.h, path)
        stream.connected(token, call_uuid="from-headers")
        self.assertEqual(self.context(contextId).channel_uuid, "from-headers")
        stream.dtmf("9")
        self.stub.flush()
        ((request,)) = self.rest.requests
        self.assertEqual(request["uri"], "/v1/calls/from-headers")

    def test_badKey(self) -> None:
        with open(self.keyFile, "wb") as f:
            f.write(b"not a key")
        from rapida_twisted.providers.vonage import _media

        _media._keys.pop(self.keyFile, None)
        contextId, stream = self.hangup()
        self.assertEqual(self.rest.requests, [])
        self.assertEqual(stream.closeCode, 1000)
        _media._keys.pop(self.keyFile, None)


class NotifyMarkTests(SynchronousTestCase):
    """
    With C{notifyMarks}, C{notify} is the mark and its echo the
    acknowledgement.
    """

    def test_notifyMarks(self) -> None:
        h = Harness()
        speaker = Speaker()
        new = self.successResultOf(h.store.create("vonage", "echo"))
        channel = FakeChannel()
        adapter = VonageMediaAdapter(
            channel,
            new.context,
            h.gateway,
            None,
            assistants=AssistantRegistry(h.config, {}),
            notifyMarks=True,
        )
        adapter._assistants = _Fixed(speaker)  # type: ignore[assignment]
        self.assertTrue(adapter.supportsMarks)
        adapter.opened()
        adapter.messageReceived(
            json.dumps({"event": "websocket:connected", "token": new.token}).encode(), False
        )
        self.assertEqual(len(channel.binary), 5)
        (notify,) = channel.json()
        self.assertEqual(notify["action"], "notify")
        name = notify["payload"]["mark"]
        h.clock.advance(1)
        self.assertEqual(speaker.sessions[0].completed, [])
        adapter.messageReceived(
            json.dumps({"event": "websocket:notify", "payload": {"mark": name}}).encode(), False
        )
        self.assertEqual(speaker.sessions[0].completed, ["greeting"])
        # notify echoes of other shapes are ignored
        adapter.messageReceived(b'{"event":"websocket:notify","payload":[1]}', False)
        adapter.messageReceived(b'{"event":"websocket:notify"}', False)
        self.assertEqual(channel.closes, [])


class _Fixed:
    def __init__(self, assistant: Any) -> None:
        self.assistant = assistant

    def get(self, assistantId: str) -> Any:
        return self.assistant


class ApplicationJWTTests(SynchronousTestCase):
    def test_claims(self) -> None:
        token = applicationJWT(APP_ID, PRIVATE_PEM, 1_700_000_000.7, ttl=60, jti="j1")
        claims = jwt.decode(
            token,
            PUBLIC_PEM,
            algorithms=["RS256"],
            options={"verify_exp": False, "verify_iat": False},
        )
        self.assertEqual(
            claims,
            {"application_id": APP_ID, "iat": 1_700_000_000, "jti": "j1", "exp": 1_700_000_060},
        )

    def test_uniqueJti(self) -> None:
        a, b = (
            jwt.decode(
                applicationJWT(APP_ID, PRIVATE_PEM, 1.0),
                options={"verify_signature": False},
            )["jti"]
            for _ in range(2)
        )
        self.assertNotEqual(a, b)

    def test_badKey(self) -> None:
        for key in [b"nope", "", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"]:
            self.assertRaises(PrivateKeyError, applicationJWT, APP_ID, key, 1.0)

    def test_loadPrivateKey(self) -> None:
        path = self.mktemp()
        self.assertRaises(PrivateKeyError, loadPrivateKey, path)
        with open(path, "wb") as f:
            f.write(PRIVATE_PEM)
        self.assertEqual(loadPrivateKey(path), PRIVATE_PEM)
        os.remove(path)
        self.assertEqual(loadPrivateKey(path), PRIVATE_PEM)

    def test_apiBase(self) -> None:
        self.assertEqual(API_BASE, "https://api.nexmo.com")


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)

_MESSAGES = st.one_of(
    st.binary(max_size=64).map(lambda b: (b, True)),
    st.binary(max_size=40).map(lambda b: (b, False)),
    st.builds(
        lambda event, body: (json.dumps({"event": event, **body}).encode(), False),
        st.sampled_from(
            [
                "websocket:connected",
                "websocket:dtmf",
                "websocket:cleared",
                "websocket:notify",
                "other",
            ]
        ),
        st.dictionaries(
            st.sampled_from(["content-type", "digit", "digits", "dtmf", "payload", "token"]),
            _JSON,
            max_size=3,
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
    def test_neverRaises(self, messages: list[tuple[bytes, bool]], started: bool) -> None:
        h = Harness()
        new = self.successResultOf(h.store.create("vonage", "echo"))
        channel = FakeChannel()
        provider = h.gateway.providers["vonage"]
        assert isinstance(provider, VonageProvider)
        adapter = provider.mediaAdapter()(channel, new.context, h.gateway, None)
        adapter.opened()
        if started:
            connected = {
                "event": "websocket:connected",
                "content-type": "audio/l16;rate=16000",
                "token": new.token,
            }
            adapter.messageReceived(json.dumps(connected).encode(), False)
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


class _UpgradeClaimed(VonageMediaAdapter):
    """
    A stream whose context the route claimed at the upgrade (as
    chan_websocket's will be): no token, no claim at the start message.
    """

    claimsAtStart = False


class _Crashing(VonageMediaAdapter):
    def running(self, message: Any) -> None:
        if type(message) is bytes:
            raise RuntimeError("boom")
        super().running(message)


class StreamAdapterTests(SynchronousTestCase):
    """
    L{rapida_twisted.providers._stream.StreamAdapter}'s paths the provider
    adapters above do not take.
    """

    def setUp(self) -> None:
        self.h = Harness()
        self.new = self.successResultOf(self.h.store.create("vonage", "echo"))
        self.channel = FakeChannel()

    def adapter(self, cls: type[VonageMediaAdapter]) -> VonageMediaAdapter:
        adapter = cls(
            self.channel,
            self.new.context,
            self.h.gateway,
            None,
            assistants=self.h.gateway.assistants,
        )
        adapter.opened()
        return adapter

    def test_claimedAtUpgrade(self) -> None:
        contextId = self.new.context.context_id
        claims: list[str] = []
        claim = self.h.store.claim

        def counting(cid: str) -> Deferred[Any]:
            claims.append(cid)
            return claim(cid)

        self.h.store.claim = counting  # type: ignore[method-assign, assignment]
        adapter = self.adapter(_UpgradeClaimed)
        adapter.context = self.successResultOf(claim(contextId))
        adapter.messageReceived(b'{"event":"websocket:connected"}', False)
        self.assertEqual(claims, [])
        self.assertTrue(adapter.isRunning)
        adapter.messageReceived(b"\x00" * 640, True)
        self.assertEqual(len(self.channel.binary), 1)
        kinds = [e.kind for e in self.successResultOf(self.h.store.listEvents(contextId))]
        self.assertEqual(kinds, ["claimed", "start"])

    def test_crashContained(self) -> None:
        """
        An exception in the adapter closes that stream with 4500 and fails
        its call; it never reaches the WebSocket layer.
        """
        adapter = self.adapter(_Crashing)
        adapter.messageReceived(
            json.dumps({"event": "websocket:connected", "token": self.new.token}).encode(), False
        )
        adapter.messageReceived(b"\x00" * 640, True)
        self.assertEqual(self.channel.closes, [(4500, "internal error")])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        context = self.successResultOf(self.h.store.get(self.new.context.context_id))
        self.assertEqual(context.status, "failed")
        adapter.messageReceived(b"\x00" * 640, True)
        adapter.closed(1006, "")
        self.assertEqual(len(self.channel.closes), 1)

    def test_storeUnavailable(self) -> None:
        from rapida_twisted.store._model import StoreUnavailable

        self.h.store.claim = lambda cid: _failed(StoreUnavailable("down"))  # type: ignore[method-assign, assignment]
        adapter = self.adapter(VonageMediaAdapter)
        adapter.messageReceived(
            json.dumps({"event": "websocket:connected", "token": self.new.token}).encode(), False
        )
        self.assertEqual(self.channel.closes[0][0], 4503)
        self.assertEqual(
            self.successResultOf(self.h.store.get(self.new.context.context_id)).status, "pending"
        )

    def test_unknownContext(self) -> None:
        from rapida_twisted.store._model import ContextNotFound

        self.h.store.claim = lambda cid: _failed(ContextNotFound(cid))  # type: ignore[method-assign, assignment]
        adapter = self.adapter(VonageMediaAdapter)
        adapter.messageReceived(
            json.dumps({"event": "websocket:connected", "token": self.new.token}).encode(), False
        )
        self.assertEqual(self.channel.closes[0][0], 4404)

    def test_unknownAssistant(self) -> None:
        self.h.gateway.assistants = AssistantRegistry(self.h.config)
        new = self.successResultOf(self.h.store.create("vonage", "nobody"))
        adapter = VonageMediaAdapter(
            self.channel, new.context, self.h.gateway, None, assistants=self.h.gateway.assistants
        )
        adapter.opened()
        adapter.messageReceived(
            json.dumps({"event": "websocket:connected", "token": new.token}).encode(), False
        )
        self.assertEqual(self.channel.closes[0][0], 4404)
        context = self.successResultOf(self.h.store.get(new.context.context_id))
        self.assertEqual(context.status, "failed")


def _failed(error: Exception) -> Deferred[Any]:
    from twisted.internet.defer import fail

    return fail(error)
