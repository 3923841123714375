"""
Tests for L{rapida_twisted.providers.exotel._media}: the Exotel Voicebot
adapter end to end through the web site in memory (applet webhook → URL
→ WebSocket upgrade with HTTP Basic / allowlist → messages), with the
echo assistant and a test assistant that speaks, clears and hangs up.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from rapida_twisted.assistants import AssistantRegistry
from rapida_twisted.call import AudioFormat
from rapida_twisted.interfaces import ICallTransport, IMediaAdapter
from rapida_twisted.media.analysis import correlation, speechLike
from rapida_twisted.media.g711 import ulawDecode, ulawEncode
from rapida_twisted.providers._stream import MAX_BAD_IN_A_ROW, START_TIMEOUT
from rapida_twisted.providers.exotel import ExotelMediaAdapter, ExotelProvider
from rapida_twisted.providers.exotel._codec import MAX_CHUNK, MIN_CHUNK
from rapida_twisted.providers.exotel._media import minimumChunk

from ._web import FakeChannel, Harness, Speaker, StreamClient

CALL_SID = "c0ffee00c0ffee00c0ffee00c0ffee00"
STREAM_SID = "MZ" + "5" * 30

ASSISTANTS = """
[[assistants]]
id = "speaker"
kind = "python"

[[assistants]]
id = "narrow"
kind = "echo"
sample_rate = 8000
"""


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class ExotelStream(StreamClient):
    """
    Exotel's end of one Voicebot WebSocket, in memory.
    """

    sid = STREAM_SID

    def connected(self) -> None:
        self.send({"event": "connected"})

    def start(
        self,
        token: str | None,
        encoding: str | None = "audio/x-raw",
        sampleRate: int | str | None = "8000",
        sidKey: str = "stream_sid",
    ) -> None:
        fmt: dict[str, Any] = {"bit_rate": "16"}
        if encoding is not None:
            fmt["encoding"] = encoding
        if sampleRate is not None:
            fmt["sample_rate"] = sampleRate
        params = {} if token is None else {"token": token}
        self.send(
            {
                "event": "start",
                "sequence_number": "1",
                sidKey: self.sid,
                "start": {
                    sidKey: self.sid,
                    "call_sid": CALL_SID,
                    "account_sid": "acc",
                    "from": "09876543210",
                    "to": "08047491899",
                    "custom_parameters": params,
                    "media_format": fmt,
                },
            }
        )

    def media(self, payload: bytes, chunk: int = 1) -> None:
        self.send(
            {
                "event": "media",
                "sequence_number": str(chunk + 1),
                "stream_sid": self.sid,
                "media": {
                    "chunk": str(chunk),
                    "timestamp": str(chunk * 100),
                    "payload": base64.b64encode(payload).decode(),
                },
            }
        )

    def dtmf(self, digit: str) -> None:
        self.send(
            {"event": "dtmf", "stream_sid": self.sid, "dtmf": {"digit": digit, "duration": "100"}}
        )

    def mark(self, name: str) -> None:
        self.send({"event": "mark", "stream_sid": self.sid, "mark": {"name": name}})

    def stop(self, reason: str = "callended") -> None:
        self.send(
            {
                "event": "stop",
                "stream_sid": self.sid,
                "stop": {"call_sid": CALL_SID, "account_sid": "acc", "reason": reason},
            }
        )

    def chunks(self) -> list[bytes]:
        return [base64.b64decode(m["media"]["payload"]) for m in self.events("media")]

    def heard(self) -> bytes:
        return b"".join(self.chunks())


class Base(SynchronousTestCase):
    toml = ASSISTANTS
    speakerRate = 16000

    def setUp(self) -> None:
        self.h = Harness(self.toml)
        self.speaker = Speaker("speaker", self.speakerRate)
        self.h.gateway.assistants = AssistantRegistry(
            self.h.config, {"python": lambda config: self.speaker}
        )

    def call(self, assistant: str = "echo") -> tuple[str, str, str, dict[str, list[str]]]:
        """
        The Voicebot applet's URL request: (context id, path with query,
        token, query).
        """
        response, body = self.h.request(
            self,
            "GET",
            f"/v1/talk/exotel/call/{assistant}",
            params={"CallSid": CALL_SID, "CallFrom": "09876543210", "CallTo": "08047491899"},
        )
        self.assertEqual(response.code, 200, body)
        parts = urlsplit(json.loads(body)["url"])
        query = parse_qs(parts.query)
        return (
            parts.path.rsplit("/", 1)[1],
            parts.path + "?" + parts.query,
            query["token"][0],
            query,
        )

    def open(self, path: str, **kw: Any) -> ExotelStream:
        return ExotelStream(self.h, path, **kw)

    def started(self, assistant: str = "echo", **fmt: Any) -> tuple[str, ExotelStream]:
        contextId, path, token, _ = self.call(assistant)
        stream = self.open(path)
        self.assertEqual(stream.status, "HTTP/1.1 101 Switching Protocols")
        stream.connected()
        stream.start(token, **fmt)
        return contextId, stream

    def context(self, contextId: str) -> Any:
        return self.successResultOf(self.h.store.get(contextId))

    def events(self, contextId: str, kind: str | None = None) -> list[tuple[str, str, Any]]:
        rows = self.successResultOf(self.h.store.listEvents(contextId, kind))
        return [(e.source, e.kind, e.payload) for e in rows]

    def errors(self, reason: str) -> float:
        value = self.h.gateway.metrics.registry.get_sample_value(
            "rapida_protocol_errors_total", {"transport": "exotel", "reason": reason}
        )
        return 0.0 if value is None else value


class EchoTests(Base):
    def test_interfaces(self) -> None:
        _, stream = self.started()
        self.assertIsInstance(stream.adapter, ExotelMediaAdapter)
        verifyObject(IMediaAdapter, stream.adapter)
        verifyObject(ICallTransport, stream.adapter)
        self.assertTrue(stream.adapter.supportsMarks)

    def test_answerAsksForTheAssistantRate(self) -> None:
        _, _, _, query = self.call("echo")
        self.assertEqual(query["sample-rate"], ["16000"])
        _, _, _, query = self.call("narrow")
        self.assertNotIn("sample-rate", query)

    def echo(self, rate: int, encoding: str = "audio/x-raw", chunkMs: int = 100) -> None:
        contextId, stream = self.started(encoding=encoding, sampleRate=str(rate))
        context = self.context(contextId)
        self.assertEqual((context.status, context.channel_uuid), ("claimed", CALL_SID))
        said = speechLike(1.0, rate, seed=11)
        ulaw = "mulaw" in encoding
        wire = ulawEncode(said) if ulaw else said
        step = rate * chunkMs // 1000 * (1 if ulaw else 2)
        for i in range(0, len(wire), step):
            stream.media(wire[i : i + step], chunk=i // step + 1)
        chunks = stream.chunks()
        self.assertTrue(chunks)
        for chunk in chunks:
            self.assertEqual(len(chunk) % 320, 0)
            self.assertGreaterEqual(len(chunk), MIN_CHUNK)
            self.assertLessEqual(len(chunk), MAX_CHUNK)
        # only what the minimum forces is held back
        self.assertLess(len(wire) - len(stream.heard()), MIN_CHUNK)
        self.assertEqual({m["stream_sid"] for m in stream.events("media")}, {STREAM_SID})
        heard = ulawDecode(stream.heard()) if ulaw else stream.heard()
        score, _ = correlation(said, heard, rate // 40)
        self.assertGreaterEqual(score, 0.9)
        ((_, _, start),) = self.events(contextId, "start")
        self.assertEqual((start["codec"], start["sample_rate"]), ("ulaw" if ulaw else "l16", rate))

    def test_echoPCM8k(self) -> None:
        self.echo(8000)

    def test_echoPCM16k(self) -> None:
        self.echo(16000, "raw", chunkMs=20)

    def test_echoPCM24k(self) -> None:
        self.echo(24000, "linear16")

    def test_echoMulaw(self) -> None:
        self.echo(8000, "audio/x-mulaw;rate=8000")

    def test_defaultFormat(self) -> None:
        """
        No media_format: PCM16 at 8 kHz.
        """
        contextId, stream = self.started(encoding=None, sampleRate=None)
        ((_, _, start),) = self.events(contextId, "start")
        self.assertEqual((start["codec"], start["sample_rate"]), ("l16", 8000))

    def test_streamSidCamelCase(self) -> None:
        contextId, path, token, _ = self.call()
        stream = self.open(path)
        stream.start(token, sidKey="streamSid")
        stream.media(b"\x00" * 3200)
        (media,) = stream.events("media")
        self.assertEqual(media["stream_sid"], STREAM_SID)
        ((_, _, claimed),) = self.events(contextId, "claimed")
        self.assertEqual(claimed, {"stream_sid": STREAM_SID, "call_sid": CALL_SID})

    def test_tokenFromQuery(self) -> None:
        """
        Without the custom parameter the upgrade URL's ?token= is used.
        """
        contextId, path, token, _ = self.call()
        stream = self.open(path)
        stream.start(None)
        self.assertIsNone(stream.closeCode)
        self.assertEqual(self.context(contextId).status, "claimed")

    def test_dtmfRows(self) -> None:
        contextId, stream = self.started()
        for digit in "90*":
            stream.dtmf(digit)
        self.assertEqual(
            self.events(contextId, "dtmf"), [("provider", "dtmf", {"digit": d}) for d in "90*"]
        )

    def test_stop(self) -> None:
        contextId, stream = self.started()
        stream.media(b"\x00" * 320)
        stream.stop()
        self.assertEqual(self.context(contextId).status, "completed")
        self.assertEqual(stream.closeCode, 1000)
        kinds = [(s, k, p.get("reason")) for s, k, p in self.events(contextId)]
        self.assertEqual(
            kinds[-2:],
            [("provider", "hangup", "stop: callended"), ("provider", "ended", "stop: callended")],
        )
        stream.disconnect()
        self.assertEqual(len(self.events(contextId, "ended")), 1)

    def test_socketClosedFinishes(self) -> None:
        contextId, stream = self.started()
        stream.disconnect()
        self.assertEqual(self.context(contextId).status, "completed")
        ((source, _, payload),) = self.events(contextId, "ended")
        self.assertEqual(source, "provider")
        self.assertIn("socket closed", payload["reason"])

    def test_clearNotice(self) -> None:
        _, stream = self.started()
        stream.send({"event": "clear", "stream_sid": STREAM_SID})
        self.assertEqual(stream.adapter.cleared, 1)
        self.assertIsNone(stream.closeCode)

    def test_secondStart(self) -> None:
        contextId, path, token, _ = self.call()
        stream = self.open(path)
        stream.start(token)
        stream.start(token)
        self.assertIsNone(stream.closeCode)
        self.assertEqual(self.errors("duplicate_start"), 1)


class RefusalTests(Base):
    def test_wrongToken(self) -> None:
        contextId, path, token, _ = self.call()
        bare = path.split("?", 1)[0]
        for streamPath, bad in [(path, "nope"), (bare, None), (bare, "nope")]:
            stream = self.open(streamPath)
            stream.start(bad)
            self.assertEqual(stream.closeCode, 4403, streamPath)
            self.assertIn("token", stream.closeReason)
        self.assertEqual(self.context(contextId).status, "pending")
        self.assertEqual(self.errors("bad_token"), 3)
        stream = self.open(bare)
        stream.start(token)
        self.assertIsNone(stream.closeCode)

    def test_mediaBeforeStart(self) -> None:
        contextId, path, token, _ = self.call()
        stream = self.open(path)
        stream.connected()
        stream.media(b"\x00" * 320)
        self.assertEqual(stream.closeCode, 4400)
        self.assertIn("media before start", stream.closeReason)
        self.assertEqual(self.context(contextId).status, "pending")

    def test_badJSONBeforeStart(self) -> None:
        contextId, path, token, _ = self.call()
        stream = self.open(path)
        stream.send("{nope")
        self.assertEqual(stream.closeCode, 4400)
        self.assertEqual(self.errors("bad_json"), 1)

    def test_binaryBeforeStart(self) -> None:
        contextId, path, token, _ = self.call()
        stream = self.open(path)
        stream.send(b"\x00" * 320, binary=True)
        self.assertEqual(stream.closeCode, 4400)
        self.assertEqual(self.errors("wrong_type"), 1)

    def test_unsupportedEncoding(self) -> None:
        contextId, path, token, _ = self.call()
        stream = self.open(path)
        stream.start(token, encoding="audio/opus")
        self.assertEqual(stream.closeCode, 4400)
        self.assertEqual(self.errors("bad_value"), 1)

    def test_unsupportedRate(self) -> None:
        contextId, path, token, _ = self.call()
        stream = self.open(path)
        stream.start(token, sampleRate="11025")
        self.assertEqual(stream.closeCode, 4400)
        self.assertIn("media format", stream.closeReason)
        self.assertEqual(self.context(contextId).status, "pending")

    def test_noStart(self) -> None:
        contextId, path, token, _ = self.call()
        stream = self.open(path)
        stream.connected()
        self.h.clock.advance(START_TIMEOUT + 0.1)
        stream.read()
        self.assertEqual(stream.closeCode, 4400)
        self.assertIn("no start message", stream.closeReason)

    def test_badInputWhileRunning(self) -> None:
        """
        Bad JSON, binary messages, odd-length PCM, bad base64, oversized
        text and unknown events are counted and skipped; a run of them
        closes the call (failed), while another goes on.
        """
        badId, bad = self.started()
        goodId, good = self.started()
        bad.send("{garbage")
        bad.send(b"\x00\x01", binary=True)
        bad.media(b"\x00" * 321)
        bad.send({"event": "media", "stream_sid": STREAM_SID, "media": {"payload": "!!"}})
        bad.send({"event": "mystery"})
        bad.send({"event": "dtmf", "dtmf": {"digit": "12"}})
        self.assertIsNone(bad.closeCode)
        for reason in ["bad_json", "wrong_type", "bad_audio", "bad_base64", "bad_value"]:
            self.assertEqual(self.errors(reason), 1, reason)
        self.assertEqual(self.errors("unknown_event"), 1)
        bad.media(b"\x00" * 3200)
        self.assertEqual(len(bad.chunks()), 1)
        for n in range(MAX_BAD_IN_A_ROW):
            good.media(bytes([n]) * 320)
            bad.send("nope")
        self.assertEqual(bad.closeCode, 4400)
        self.assertEqual(self.context(badId).status, "failed")
        self.assertIsNone(good.closeCode)
        self.assertEqual(self.context(goodId).status, "claimed")

    def test_ignoredAfterStop(self) -> None:
        """
        Once the stream is over (stop, then our close), nothing that still
        arrives is held against the call.
        """
        h = Harness()
        new = self.successResultOf(h.store.create("exotel", "echo"))
        channel = FakeChannel()
        adapter = ExotelMediaAdapter(
            channel, new.context, h.gateway, None, assistants=h.gateway.assistants
        )
        adapter.opened()
        start = {
            "event": "start",
            "stream_sid": "S",
            "start": {"custom_parameters": {"token": new.token}},
        }
        adapter.messageReceived(json.dumps(start).encode(), False)
        adapter.messageReceived(b'{"event":"stop"}', False)
        for _ in range(MAX_BAD_IN_A_ROW + 2):
            adapter.messageReceived(b"nope", False)
        adapter.closed(1000, "")
        self.assertEqual([code for code, _ in channel.closes], [1000])
        context = self.successResultOf(h.store.get(new.context.context_id))
        self.assertEqual(context.status, "completed")

    def test_oversized(self) -> None:
        """
        A text message over the codec's limit is refused (the web layer's
        own, smaller limit applies before it on a real socket).
        """
        h = Harness()
        new = self.successResultOf(h.store.create("exotel", "echo"))
        channel = FakeChannel()
        adapter = ExotelMediaAdapter(
            channel, new.context, h.gateway, None, assistants=h.gateway.assistants
        )
        adapter.opened()
        adapter.messageReceived(b'{"event":"x","pad":"' + b"x" * 300_000 + b'"}', False)
        self.assertEqual(channel.closes[0][0], 4400)
        self.assertIn("exceeds", channel.closes[0][1])


class SpeakerTests(Base):
    def session(self) -> Any:
        (session,) = self.speaker.sessions
        return session

    def test_markRoundTrip(self) -> None:
        """
        A 100 ms greeting at 8 kHz (1600 bytes) is padded to the 3.2 KB
        minimum and followed by a mark; its echo completes the response.
        """
        contextId, stream = self.started("speaker")
        messages = stream.read()
        self.assertEqual([m["event"] for m in messages], ["media", "mark"])
        (chunk,) = stream.chunks()
        self.assertEqual(len(chunk), MIN_CHUNK)
        self.assertEqual(chunk[1600:], b"\x00" * 1600)
        name = messages[-1]["mark"]["name"]
        self.assertEqual(messages[-1]["stream_sid"], STREAM_SID)
        self.assertEqual(self.session().completed, [])
        stream.mark(name)
        self.assertEqual(self.session().completed, ["greeting"])
        self.assertEqual(
            self.events(contextId, "mark"), [("provider", "mark", {"name": "greeting"})]
        )

    def test_mulawPadding(self) -> None:
        contextId, stream = self.started("speaker", encoding="audio/x-mulaw")
        (chunk,) = stream.chunks()
        self.assertEqual(len(chunk), MIN_CHUNK)
        self.assertEqual(chunk[800:], b"\xff" * 2400)

    def test_noAddedDelay(self) -> None:
        """
        A long response leaves in minimum-size chunks as soon as each is
        full (about a second ahead of real time), not held until its end.
        """
        contextId, stream = self.started("speaker")
        stream.mark(stream.events("mark")[0]["mark"]["name"])
        self.h.clock.advance(0.2)
        stream.dtmf("1")
        chunks = stream.chunks()[1:]
        self.assertEqual({len(c) for c in chunks}, {MIN_CHUNK})
        # 1 s of lead = 50 frames of 320 bytes = 5 chunks, none held back
        self.assertEqual(len(chunks), 5)
        self.assertEqual(stream.adapter.chunker.pending, 0)
        for _ in range(35):
            self.h.clock.advance(0.1)
        stream.read()
        self.assertEqual(sum(len(c) for c in stream.chunks()[1:]), 3 * 16000)
        self.assertEqual(stream.messages[-1]["event"], "mark")

    def test_namedMarkFlushes(self) -> None:
        contextId, stream = self.started("speaker")
        stream.dtmf("8")
        self.assertEqual([m["event"] for m in stream.read()], ["media", "mark", "mark"])

    def test_clear(self) -> None:
        """
        Barge-in: the chunker's tail is dropped, a clear goes to Exotel,
        pending marks are forgotten, a clear event is recorded.
        """
        contextId, stream = self.started("speaker")
        stream.mark(stream.events("mark")[0]["mark"]["name"])
        stream.dtmf("1")
        sent = len(stream.chunks())
        stream.dtmf("0")
        self.assertEqual(stream.read()[-1], {"event": "clear", "stream_sid": STREAM_SID})
        self.assertEqual(stream.adapter.chunker.pending, 0)
        self.h.clock.advance(5)
        self.assertEqual(len(stream.chunks()), sent)
        self.assertEqual(len(self.events(contextId, "clear")), 1)
        self.assertEqual(self.session().completed, ["greeting"])
        stream.dtmf("5")
        stream.mark(stream.events("mark")[-1]["mark"]["name"])
        self.assertEqual(self.session().completed, ["greeting", "more"])

    def test_clearDropsHeldTail(self) -> None:
        """
        Audio held back by the chunker (below the minimum) is dropped by a
        clear, never sent afterwards.
        """
        contextId, stream = self.started("speaker")
        adapter = stream.adapter
        adapter.sendAudio(b"\x01\x00" * 160)
        self.assertEqual(adapter.chunker.pending, 320)
        stream.dtmf("0")
        self.assertEqual(adapter.chunker.pending, 0)

    def test_hangupCloses(self) -> None:
        """
        Exotel has no REST hang-up: the socket closes normally.
        """
        contextId, stream = self.started("speaker")
        stream.dtmf("9")
        self.assertEqual((stream.closeCode, stream.closeReason), (1000, "goodbye"))
        self.assertEqual(self.context(contextId).status, "completed")
        self.assertEqual(self.session().ended, ["goodbye"])


class ChunkSettingTests(SynchronousTestCase):
    def test_minimumChunk(self) -> None:
        pcm8 = AudioFormat("l16", 8000)
        self.assertEqual(minimumChunk(pcm8, None), MIN_CHUNK)
        self.assertEqual(minimumChunk(pcm8, 100), 1600)
        self.assertEqual(minimumChunk(pcm8, 30), 640)
        self.assertEqual(minimumChunk(AudioFormat("ulaw", 8000), 20), 320)
        self.assertEqual(minimumChunk(AudioFormat("l16", 24000), 20), 960)
        self.assertEqual(minimumChunk(pcm8, 10_000), MAX_CHUNK)

    def test_badSettings(self) -> None:
        h = Harness()
        new = self.successResultOf(h.store.create("exotel", "echo"))
        for kw in [{"chunkMs": 0}, {"maxChunk": 1000}, {"maxChunk": 0}]:
            self.assertRaises(
                ValueError,
                ExotelMediaAdapter,
                FakeChannel(),
                new.context,
                h.gateway,
                None,
                assistants=h.gateway.assistants,
                **kw,
            )

    def test_chunkMs(self) -> None:
        """
        A smaller minimum: 40 ms chunks of PCM 8 kHz (640 bytes).
        """
        h = Harness()
        new = self.successResultOf(h.store.create("exotel", "echo"))
        channel = FakeChannel()
        adapter = ExotelMediaAdapter(
            channel, new.context, h.gateway, None, assistants=h.gateway.assistants, chunkMs=40
        )
        adapter.opened()
        start = {
            "event": "start",
            "stream_sid": "S",
            "start": {"stream_sid": "S", "custom_parameters": {"token": new.token}},
        }
        adapter.messageReceived(json.dumps(start).encode(), False)
        media = {"event": "media", "media": {"payload": base64.b64encode(b"\x00" * 640).decode()}}
        adapter.messageReceived(json.dumps(media).encode(), False)
        sizes = [len(base64.b64decode(m["media"]["payload"])) for m in channel.json()]
        self.assertEqual(sizes, [640])

    def test_configChunkMs(self) -> None:
        """
        The factory takes C{chunk_ms} from C{[providers.exotel]} when the
        configuration carries it.
        """
        h = Harness()

        class Exotel:
            chunk_ms = 60

        class Config:
            exotel = Exotel()

        h.gateway.config = Config()  # type: ignore[assignment]
        new = self.successResultOf(h.store.create("exotel", "echo"))
        provider = ExotelProvider(h.config, h.urls)
        adapter = provider.mediaAdapter()(FakeChannel(), new.context, h.gateway, None)
        self.assertEqual(adapter._chunkMs, 60)


class UpgradeAuthTests(SynchronousTestCase):
    """
    Exotel's own authentication is checked at the upgrade: HTTP Basic
    credentials and the source allowlist (403 otherwise).
    """

    def upgrade(self, toml: str, peer: str = "127.0.0.1", **headers: str) -> ExotelStream:
        h = Harness(toml)
        new = self.successResultOf(h.store.create("exotel", "echo"))
        path = f"/v1/talk/exotel/ctx/{new.context.context_id}?token={new.token}"
        return ExotelStream(h, path, headers, peer=peer)

    CREDS = '[providers.exotel]\nstream_username = "exo"\nstream_password = "s3cret"\n'
    ALLOW = '[providers.exotel]\nallow_from = ["10.1.0.0/16"]\n'

    def test_basicRequired(self) -> None:
        self.assertEqual(self.upgrade(self.CREDS).status, "HTTP/1.1 403 Forbidden")

    def test_basicWrong(self) -> None:
        for value in [basic("exo", "nope"), basic("other", "s3cret"), "Bearer x", "Basic !!"]:
            stream = self.upgrade(self.CREDS, Authorization=value)
            self.assertEqual(stream.status, "HTTP/1.1 403 Forbidden", value)

    def test_basicRight(self) -> None:
        stream = self.upgrade(self.CREDS, Authorization=basic("exo", "s3cret"))
        self.assertEqual(stream.status, "HTTP/1.1 101 Switching Protocols")

    def test_answerCarriesCredentials(self) -> None:
        h = Harness(self.CREDS)
        _, body = h.request(self, "GET", "/v1/talk/exotel/call/echo", params={"CallFrom": "0981"})
        parts = urlsplit(json.loads(body)["url"])
        self.assertEqual((parts.username, parts.password), ("exo", "s3cret"))

    def test_sourceDenied(self) -> None:
        stream = self.upgrade(self.ALLOW, peer="192.0.2.7")
        self.assertEqual(stream.status, "HTTP/1.1 403 Forbidden")

    def test_sourceAllowed(self) -> None:
        stream = self.upgrade(self.ALLOW, peer="10.1.2.3")
        self.assertEqual(stream.status, "HTTP/1.1 101 Switching Protocols")

    def test_both(self) -> None:
        toml = self.CREDS + 'allow_from = ["10.1.0.0/16"]\n'
        good = basic("exo", "s3cret")
        self.assertEqual(
            self.upgrade(toml, peer="10.1.2.3", Authorization=good).status,
            "HTTP/1.1 101 Switching Protocols",
        )
        self.assertEqual(
            self.upgrade(toml, peer="192.0.2.7", Authorization=good).status,
            "HTTP/1.1 403 Forbidden",
        )
        self.assertEqual(self.upgrade(toml, peer="10.1.2.3").status, "HTTP/1.1 403 Forbidden")


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)

_MESSAGES = st.one_of(
    st.binary(max_size=40).map(lambda b: (b, True)),
    st.binary(max_size=40).map(lambda b: (b, False)),
    st.builds(
        lambda event, body: (json.dumps({"event": event, **body}).encode(), False),
        st.sampled_from(["connected", "start", "media", "mark", "dtmf", "clear", "stop", "x"]),
        st.dictionaries(
            st.sampled_from(["start", "media", "mark", "dtmf", "stop", "stream_sid"]),
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
        new = self.successResultOf(h.store.create("exotel", "echo"))
        channel = FakeChannel()
        adapter = h.gateway.providers["exotel"].mediaAdapter()(
            channel, new.context, h.gateway, None
        )
        adapter.opened()
        if started:
            start = {
                "event": "start",
                "stream_sid": "S",
                "start": {"stream_sid": "S", "custom_parameters": {"token": new.token}},
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
