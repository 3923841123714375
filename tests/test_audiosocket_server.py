"""
Tests for L{rapida_twisted.asterisk._server}: the AudioSocket TCP server,
driven through its Protocol in memory (StringTransport, task.Clock), with
the dialplan's steps: the webhook's context id is the UUID Asterisk sends.

L{AsteriskCallSuite} is the behaviour both Asterisk transports share
(echo, DTMF, hang-up both ways, refusals); it runs here over AudioSocket
and in C{tests.test_chanws_media} over chan_websocket (STYLE.md §2: one
suite, two transports). L{ByteByByteTests} re-runs every framing test of
L{AudioSocketServerTests} with the bytes fed one at a time (STYLE.md §2).
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IWriteDescriptor
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.logger import LogLevel, capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from rapida_twisted.assistants import AssistantRegistry
from rapida_twisted.asterisk import (
    AudioSocketCall,
    AudioSocketFactory,
    AudioSocketProtocol,
    AudioSocketSettings,
)
from rapida_twisted.asterisk._audiosocket import (
    KIND_HANGUP,
    MAX_PAYLOAD,
    SENDABLE_TO_ASTERISK,
    Audio,
    AudioSocketDecoder,
    Frame,
    Hangup,
    encodeAudio,
    encodeDtmf,
    encodeError,
    encodeFrame,
    encodeUuid,
)
from rapida_twisted.config import parseConfig
from rapida_twisted.interfaces import ICallTransport
from rapida_twisted.media.analysis import correlation, rms, speechLike, tone
from rapida_twisted.tap import Options, _listeners

from ._web import Harness, Speaker

SPEAKER_TOML = """
[[assistants]]
id = "speaker"
kind = "python"
"""

FRAME_8K = 320
#: one pacer slot, plus float slack (see L{AsteriskCallSuite.tick})
TICK = 0.02 + 1e-6
SILENCE_8K = b"\x00" * FRAME_8K


# --- the suite both Asterisk transports share -----------------------------------------


class Peer(Protocol):
    """
    Asterisk's end of one media connection, in memory.
    """

    @property
    def refused(self) -> bool:
        """
        The gateway refused the connection (an HTTP refusal, or closed
        before any audio was sent).
        """

    @property
    def hungUpByGateway(self) -> bool:
        """
        The gateway ended the call the transport's way (AudioSocket 0x00
        then close; chan_websocket HANGUP then close).
        """

    def say(self, pcm: bytes) -> None:
        """
        One 20 ms frame of the caller's audio (8 kHz signed linear).
        """

    def dtmf(self, digit: str) -> None:
        """
        The caller presses a key.
        """

    def hangUp(self) -> None:
        """
        The caller hangs up (the socket closes).
        """

    def heard(self) -> bytes:
        """
        Everything the gateway sent, as 8 kHz signed linear.
        """


class AsteriskHelpers:
    """
    What tests of both Asterisk transports use: the dialplan's webhook,
    the clock, the store's rows and the error counters. Mixed into a
    C{SynchronousTestCase} that sets C{self.h} (a L{Harness}).
    """

    h: Harness
    speaker: Speaker
    #: the C{transport} label of C{rapida_protocol_errors}
    transportName = ""
    #: ... and of the refusals counted before any call starts
    refusalLabel = ""

    # provided by SynchronousTestCase
    assertEqual: Any
    assertTrue: Any
    assertFalse: Any
    assertGreaterEqual: Any
    assertIn: Any
    successResultOf: Any

    def useSpeaker(self) -> None:
        self.speaker = Speaker()
        self.h.gateway.assistants = AssistantRegistry(
            self.h.config, {"python": lambda config: self.speaker}
        )

    def webhook(self, assistant: str = "echo", **fields: str) -> str:
        """
        The dialplan's C{CURL()} (README "Asterisk"): the context id, as
        text.
        """
        response, body = self.h.request(
            self,
            "POST",
            f"/v1/talk/asterisk/call/{assistant}",
            data={"from": "+15550001", "to": "100", **fields},
        )
        self.assertEqual(response.code, 200, body)
        return str(body.decode("ascii"))

    def tick(self, n: int = 1) -> None:
        """
        Let C{n} pacer slots of 20 ms pass. (A hair over 20 ms each: the
        harness clock stands at 1.8e9 s, where C{now + 0.02} and the
        pacer's C{anchor + k * 0.02} round differently, and a timer due
        1e-7 s after the advance would slip to the next one.)
        """
        for _ in range(n):
            self.h.clock.advance(TICK)

    def context(self, contextId: str) -> Any:
        return self.successResultOf(self.h.store.get(contextId))

    def events(self, contextId: str, kind: str | None = None) -> list[tuple[str, str, Any]]:
        rows = self.successResultOf(self.h.store.listEvents(contextId, kind))
        return [(e.source, e.kind, e.payload) for e in rows]

    def errorCount(self, reason: str, transport: str | None = None) -> float:
        value = self.h.gateway.metrics.registry.get_sample_value(
            "rapida_protocol_errors_total",
            {"transport": transport or self.transportName, "reason": reason},
        )
        return 0.0 if value is None else value


class AsteriskCallSuite(AsteriskHelpers):
    """
    The behaviour AudioSocket and chan_websocket share. A subclass is a
    C{SynchronousTestCase} (listed before this mixin) that defines
    C{connect(contextId) -> Peer}: the dialplan's media step after the
    webhook.
    """

    def connect(self, contextId: str) -> Peer:
        raise NotImplementedError

    def pump(self) -> None:
        """
        Let the transport's playback confirmations come back (nothing to
        do for AudioSocket).
        """

    def test_echo(self) -> None:
        """
        The caller hears what they said (echo assistant, through the
        session's resampling both ways).
        """
        contextId = self.webhook()
        peer = self.connect(contextId)
        said = speechLike(1.0, 8000, seed=3)
        for i in range(0, len(said), FRAME_8K):
            peer.say(said[i : i + FRAME_8K])
            self.tick()
        self.tick(10)
        heard = peer.heard()
        score, lag = correlation(said, heard, 2000)
        self.assertGreaterEqual(score, 0.9)
        self.assertEqual(self.context(contextId).status, "claimed")
        kinds = [kind for _, kind, _ in self.events(contextId)]
        self.assertEqual(kinds[:3], ["webhook", "claimed", "start"])

    def test_dtmf_rows(self) -> None:
        """
        Every digit is one C{dtmf} event (source provider) and reaches the
        assistant.
        """
        self.useSpeaker()
        contextId = self.webhook("speaker")
        peer = self.connect(contextId)
        peer.say(SILENCE_8K)
        for digit in "12*#":
            peer.dtmf(digit)
        self.tick()
        self.assertEqual(
            self.events(contextId, "dtmf"),
            [("provider", "dtmf", {"digit": d}) for d in "12*#"],
        )
        self.assertEqual(self.speaker.sessions[0].digits, list("12*#"))

    def test_caller_hangs_up(self) -> None:
        """
        The socket closing is the caller's hang-up: the context completes.
        """
        self.useSpeaker()
        contextId = self.webhook("speaker")
        peer = self.connect(contextId)
        peer.say(SILENCE_8K)
        self.tick(3)
        peer.hangUp()
        context = self.context(contextId)
        self.assertEqual(context.status, "completed")
        ((source, _, payload),) = self.events(contextId, "ended")
        self.assertEqual((source, payload["outcome"]), ("provider", "completed"))
        self.assertEqual(len(self.speaker.sessions[0].ended), 1)
        self.assertFalse(peer.hungUpByGateway)
        gauge = self.h.gateway.metrics.registry.get_sample_value(
            "rapida_active_calls", {"provider": "asterisk"}
        )
        self.assertEqual(gauge, 0)

    def test_assistant_hangs_up(self) -> None:
        """
        The assistant hangs up: the gateway ends the call the transport's
        way, with C{hangup} and C{ended} events.
        """
        self.useSpeaker()
        contextId = self.webhook("speaker")
        peer = self.connect(contextId)
        peer.say(SILENCE_8K)
        self.tick()
        peer.dtmf("9")
        self.tick()
        self.assertTrue(peer.hungUpByGateway)
        self.assertEqual(self.context(contextId).status, "completed")
        kinds = [(s, k) for s, k, _ in self.events(contextId)]
        self.assertIn(("assistant", "hangup"), kinds)
        self.assertEqual(kinds[-1], ("assistant", "ended"))
        peer.hangUp()
        self.assertEqual(len(self.events(contextId, "ended")), 1)

    def test_greeting_played(self) -> None:
        """
        The assistant's greeting reaches the caller and its completion
        reaches the assistant.
        """
        self.useSpeaker()
        contextId = self.webhook("speaker")
        peer = self.connect(contextId)
        for _ in range(15):
            peer.say(SILENCE_8K)
            self.tick()
        self.pump()
        self.assertGreaterEqual(rms(peer.heard()), 1000)
        self.assertEqual(self.speaker.sessions[0].completed, ["greeting"])

    def test_unknown_context_refused(self) -> None:
        peer = self.connect(str(uuid.uuid4()))
        self.assertTrue(peer.refused)
        self.assertEqual(self.errorCount("unknown_context", self.refusalLabel), 1)

    def test_claimed_context_refused(self) -> None:
        """
        A context is claimed once: a second connection is refused and the
        first call goes on.
        """
        contextId = self.webhook()
        first = self.connect(contextId)
        first.say(SILENCE_8K)
        self.tick()
        second = self.connect(contextId)
        self.assertTrue(second.refused)
        self.assertFalse(first.refused)
        self.assertEqual(self.context(contextId).status, "claimed")
        first.say(SILENCE_8K)
        self.tick()
        self.assertEqual(self.context(contextId).status, "claimed")

    def test_finished_context_refused(self) -> None:
        contextId = self.webhook()
        first = self.connect(contextId)
        first.say(SILENCE_8K)
        first.hangUp()
        self.assertTrue(self.connect(contextId).refused)
        self.assertEqual(self.context(contextId).status, "completed")

    def test_expired_context_refused(self) -> None:
        contextId = self.webhook()
        self.h.clock.advance(121)
        self.assertTrue(self.connect(contextId).refused)


# --- AudioSocket -----------------------------------------------------------------------


class AudioSocketPeer:
    """
    Asterisk's end of one AudioSocket connection.

    @param feed: how bytes reach the protocol (whole, or one at a time).
    """

    def __init__(self, proto: AudioSocketProtocol, transport: StringTransport, feed: Any) -> None:
        self.proto = proto
        self.transport = transport
        self._feed = feed
        self._decoder = AudioSocketDecoder(MAX_PAYLOAD)
        self.frames: list[Frame] = []
        self.lost = False

    def send(self, data: bytes) -> None:
        self._feed(self.proto, data)

    def read(self) -> list[Frame]:
        self.frames += self._decoder.feed(self.transport.value())
        self.transport.clear()
        return self.frames

    # Peer

    def say(self, pcm: bytes) -> None:
        self.send(encodeAudio(pcm, 8000))

    def dtmf(self, digit: str) -> None:
        self.send(encodeDtmf(digit))

    def hangUp(self) -> None:
        if not self.lost:
            self.lost = True
            self.proto.connectionLost(Failure(ConnectionDone()))

    def heard(self) -> bytes:
        return b"".join(f.pcm for f in self.read() if type(f) is Audio)

    @property
    def closedByGateway(self) -> bool:
        """
        The gateway sent 0x00 and closed (nothing after the 0x00).
        """
        frames = self.read()
        return bool(self.transport.disconnecting and frames and frames[-1] == Hangup())

    @property
    def hungUpByGateway(self) -> bool:
        return self.closedByGateway

    @property
    def refused(self) -> bool:
        frames = self.read()
        return self.closedByGateway and not any(type(f) is Audio for f in frames)

    def audioKinds(self) -> set[int]:
        return {f.kind for f in self.read() if type(f) is Audio}


class AudioSocketBase(SynchronousTestCase, AsteriskHelpers):
    toml = SPEAKER_TOML
    transportName = "audiosocket"
    refusalLabel = "audiosocket"
    settings = AudioSocketSettings()

    def setUp(self) -> None:
        self.h = Harness(self.toml)
        self.factory = AudioSocketFactory(self.h.gateway, self.settings)
        self.port = 50000

    def feed(self, proto: AudioSocketProtocol, data: bytes) -> None:
        """
        How bytes reach the protocol: overridden by L{ByteByByteTests}.
        """
        proto.dataReceived(data)

    def open(self) -> AudioSocketPeer:
        """
        A new TCP connection from Asterisk (nothing sent yet).
        """
        self.port += 1
        addr = IPv4Address("TCP", "127.0.0.1", self.port)
        proto = self.factory.buildProtocol(addr)
        transport = StringTransport(peerAddress=addr)
        proto.makeConnection(transport)
        return AudioSocketPeer(proto, transport, self.feed)

    def connect(self, contextId: str) -> AudioSocketPeer:
        """
        C{AudioSocket(${CTX},host:4573)}: connect and send the UUID.
        """
        peer = self.open()
        peer.send(encodeUuid(uuid.UUID(contextId)))
        return peer

    def call(self, peer: AudioSocketPeer) -> AudioSocketCall:
        return peer.proto.call


class AudioSocketSuiteTests(AudioSocketBase, AsteriskCallSuite):
    """
    The shared suite over AudioSocket.
    """

    def test_interfaces(self) -> None:
        contextId = self.webhook()
        peer = self.connect(contextId)
        verifyObject(ICallTransport, self.call(peer))
        self.assertTrue(self.call(peer).paced)
        self.assertTrue(self.call(peer).needsSilence)


class AudioSocketServerTests(AudioSocketBase):
    """
    Framing, every frame type, bad input, refusals, pacing, rates and
    timers. Every test feeds bytes through L{feed}.
    """

    def started(self, assistant: str = "echo") -> tuple[str, AudioSocketPeer]:
        """
        A call through the dialplan's steps, its first audio frame sent.
        """
        if assistant == "speaker":
            self.useSpeaker()
        contextId = self.webhook(assistant)
        peer = self.connect(contextId)
        peer.say(SILENCE_8K)
        return contextId, peer

    # --- framing and frame types ------------------------------------------------------

    def test_uuid_claims(self) -> None:
        contextId, peer = self.started()
        context = self.context(contextId)
        self.assertEqual(context.status, "claimed")
        self.assertEqual(str(self.call(peer).uuid), contextId)
        ((_, _, payload),) = self.events(contextId, "claimed")
        self.assertEqual(payload["transport"], "audiosocket")
        self.assertEqual(payload["uuid"], contextId)

    def test_frames_in_one_write(self) -> None:
        """
        UUID, audio and DTMF frames arriving in one TCP segment.
        """
        self.useSpeaker()
        contextId = self.webhook("speaker")
        peer = self.open()
        peer.send(
            encodeUuid(uuid.UUID(contextId))
            + encodeAudio(SILENCE_8K)
            + encodeDtmf("7")
            + encodeAudio(SILENCE_8K)
        )
        session = self.call(peer).session
        assert session is not None
        self.assertEqual(session.stats.framesIn, 2)
        self.assertEqual(self.speaker.sessions[0].digits, ["7"])

    def test_audio_frame_sizes(self) -> None:
        """
        Audio frames of any even size (Asterisk sends short ones at the end
        of a prompt) reach the session as a continuous stream.
        """
        contextId, peer = self.started()
        for size in (90, 320, 640, 2):
            peer.send(encodeAudio(b"\x01\x00" * (size // 2)))
        session = self.call(peer).session
        assert session is not None
        # 320 + 90 + 320 + 640 + 2 bytes = 1372: four whole 20 ms frames
        self.assertEqual(session.stats.framesIn, 4)

    def test_dtmf(self) -> None:
        contextId, peer = self.started()
        for digit in "0123456789*#ABCD":
            peer.dtmf(digit)
        self.assertEqual(
            [p["digit"] for _, _, p in self.events(contextId, "dtmf")], list("0123456789*#ABCD")
        )

    def test_lowercase_dtmf(self) -> None:
        contextId, peer = self.started()
        peer.send(encodeFrame(0x03, b"a"))
        self.assertEqual(self.events(contextId, "dtmf"), [("provider", "dtmf", {"digit": "A"})])

    def test_error_frame(self) -> None:
        """
        0xff is informational: an C{error} event, and the call goes on.
        """
        contextId, peer = self.started()
        peer.send(encodeError(0x02))
        peer.send(encodeError())
        self.assertEqual(
            [p for _, _, p in self.events(contextId, "error")],
            [
                {"code": "error_frame", "error_code": 2},
                {"code": "error_frame", "error_code": None},
            ],
        )
        self.assertFalse(peer.transport.disconnecting)
        self.assertEqual(self.errorCount("error_frame"), 2)

    def test_hangup_frame(self) -> None:
        """
        0x00 from Asterisk's side (it never sends one, but a peer may): the
        caller hung up; the gateway answers 0x00 and closes.
        """
        contextId, peer = self.started()
        peer.send(encodeFrame(KIND_HANGUP))
        self.assertTrue(peer.closedByGateway)
        self.assertEqual(self.context(contextId).status, "completed")
        self.assertIn(("provider", "hangup"), [(s, k) for s, k, _ in self.events(contextId)])

    def test_rate_16k(self) -> None:
        """
        0x12 audio (the channel driver with c(slin16)): the call runs at
        16 kHz and everything sent back is 0x12 with 640-byte frames.
        """
        contextId = self.webhook()
        peer = self.open()
        peer.send(encodeUuid(uuid.UUID(contextId)))
        said = speechLike(0.5, 16000, seed=1)
        for i in range(0, len(said), 640):
            peer.send(encodeAudio(said[i : i + 640], 16000))
            self.tick()
        self.tick(5)
        frames = [f for f in peer.read() if type(f) is Audio]
        self.assertEqual({f.kind for f in frames}, {0x12})
        self.assertEqual({len(f.pcm) for f in frames}, {640})
        self.assertEqual(self.call(peer).audioFormat.sampleRate, 16000)
        score, _ = correlation(said, peer.heard(), 4000)
        self.assertGreaterEqual(score, 0.9)
        ((_, _, start),) = self.events(contextId, "start")
        self.assertEqual(start["sample_rate"], 16000)

    def test_rate_24k(self) -> None:
        contextId = self.webhook()
        peer = self.connect(contextId)
        peer.send(encodeAudio(b"\x00" * 960, 24000))
        self.tick()
        self.assertEqual(peer.audioKinds(), {0x13})

    def test_unsupported_rate_refused(self) -> None:
        """
        Rates the media core does not convert (12 kHz, 32 kHz and above)
        are refused with a reason naming what to use instead.
        """
        for rate in (12000, 32000, 44100, 48000, 96000, 192000):
            contextId = self.webhook()
            peer = self.connect(contextId)
            peer.send(encodeAudio(b"\x00" * 64, rate))
            self.assertTrue(peer.refused, rate)
            self.assertEqual(self.context(contextId).status, "failed")
            ((_, _, payload),) = self.events(contextId, "error")
            self.assertEqual(payload["code"], "unsupported_rate")
            self.assertIn("c(slin16)", payload["reason"])

    def test_no_audio_starts_at_8k(self) -> None:
        """
        Without audio after the claim, the call starts at 8 kHz after
        C{audioWait} (the dialplan application's rate).
        """
        contextId = self.webhook()
        peer = self.connect(contextId)
        peer.dtmf("3")
        self.assertIsNone(self.call(peer).session)
        self.h.clock.advance(self.settings.audioWait)
        self.assertIsNotNone(self.call(peer).session)
        self.tick(2)
        self.assertEqual(peer.audioKinds(), {0x10})
        self.assertEqual(self.events(contextId, "dtmf"), [("provider", "dtmf", {"digit": "3"})])

    def test_rate_change_dropped(self) -> None:
        contextId, peer = self.started()
        session = self.call(peer).session
        assert session is not None
        peer.send(encodeAudio(b"\x00" * 640, 16000))
        peer.send(encodeAudio(b"\x00" * 640, 16000))
        self.assertEqual(session.stats.framesIn, 1)
        self.assertEqual(self.errorCount("rate_changed"), 1)
        self.assertFalse(peer.transport.disconnecting)

    # --- outbound: pacing and kinds -----------------------------------------------------

    def test_one_frame_per_tick(self) -> None:
        """
        Exactly one 20 ms frame per 20 ms (silence when the assistant is
        quiet), whatever the assistant queued.
        """
        self.useSpeaker()
        contextId = self.webhook("speaker")
        peer = self.connect(contextId)
        peer.say(SILENCE_8K)
        sent = len(peer.read())
        for _ in range(30):
            self.tick()
            frames = peer.read()
            self.assertEqual(len(frames) - sent, 1)
            sent = len(frames)
        frames = [f for f in peer.read() if type(f) is Audio]
        self.assertEqual({len(f.pcm) for f in frames}, {FRAME_8K})  # type: ignore[union-attr]
        # the 100 ms greeting: five loud frames, then silence
        loud = [rms(f.pcm) > 1000 for f in frames]  # type: ignore[union-attr]
        self.assertEqual(sum(loud), 5)
        self.assertEqual(self.speaker.sessions[0].completed, ["greeting"])

    def test_no_burst_after_stall(self) -> None:
        """
        A reactor stall is not made up with a burst: the frames owed are
        skipped, and sending resumes at one per tick.
        """
        self.useSpeaker()
        contextId = self.webhook("speaker")
        peer = self.connect(contextId)
        peer.say(SILENCE_8K)
        sent = len(peer.read())
        self.h.clock.advance(1.0)
        self.assertEqual(len(peer.read()) - sent, 1)
        sent = len(peer.read())
        self.tick()
        self.assertEqual(len(peer.read()) - sent, 1)

    def test_only_sendable_kinds(self) -> None:
        """
        Whatever happens (audio, DTMF, error frames, hang-up), only 0x00
        and audio kinds go to Asterisk.
        """
        self.useSpeaker()
        contextId = self.webhook("speaker")
        peer = self.connect(contextId)
        peer.say(SILENCE_8K)
        peer.send(encodeError(1))
        peer.dtmf("5")
        self.tick(20)
        peer.dtmf("0")
        self.tick(2)
        peer.dtmf("9")
        kinds = {f.kind if type(f) is Audio else 0 for f in peer.read()}
        self.assertTrue(kinds <= SENDABLE_TO_ASTERISK)
        self.assertTrue(peer.closedByGateway)

    def test_clear_stops_at_once(self) -> None:
        """
        Barge-in: the next tick is silence (nothing is queued in Asterisk).
        """
        self.useSpeaker()
        contextId = self.webhook("speaker")
        peer = self.connect(contextId)
        peer.say(SILENCE_8K)
        self.tick()
        peer.dtmf("0")
        sent = len(peer.read())
        self.tick(3)
        after = peer.read()[sent:]
        self.assertEqual([rms(f.pcm) for f in after], [0.0, 0.0, 0.0])  # type: ignore[union-attr]
        self.assertEqual(len(self.events(contextId, "clear")), 1)

    def echoWithLateFrames(self, late: int) -> list[bool]:
        """
        An echoed talkspurt of 20 loud frames whose frames 10.. reach the
        gateway C{late} ticks late (together); which frames sent after the
        first loud one were loud.
        """
        contextId, peer = self.started()
        loud = tone(400, 0.02, 8000)
        sent = len(peer.read())
        for k in range(20):
            if k == 10:
                self.tick(late)
            peer.say(loud)
            if not 10 <= k < 10 + late:
                self.tick()
        self.tick(8)
        levels = [rms(f.pcm) > 1000 for f in peer.read()[sent:] if type(f) is Audio]
        first = levels.index(True)
        return levels[first : first + 20]

    def test_late_frames_absorbed(self) -> None:
        """
        The jitter cushion: echoed audio reaching the gateway after its
        ticks (here three ticks late: the session's own standing frame and
        the two-frame cushion) puts no silence into the talkspurt.
        """
        self.assertEqual(self.echoWithLateFrames(3), [True] * 20)

    def test_without_cushion(self) -> None:
        """
        With C{cushion=0} the same late frames leave a gap.
        """
        self.factory.settings = AudioSocketSettings(cushion=0)
        self.assertIn(False, self.echoWithLateFrames(3))

    def greetingLevels(self) -> list[bool]:
        self.useSpeaker()
        peer = self.connect(self.webhook("speaker"))
        peer.say(SILENCE_8K)
        self.tick(10)
        peer.hangUp()  # (the shared pacer group idles again)
        return [rms(f.pcm) > 1000 for f in peer.read() if type(f) is Audio]

    def test_cushion_latency(self) -> None:
        """
        The cushion delays a talkspurt by two ticks, and it plays whole.
        """
        levels = self.greetingLevels()
        self.factory.settings = AudioSocketSettings(cushion=0)
        direct = self.greetingLevels()
        first = levels.index(True)
        self.assertEqual(first, direct.index(True) + 2)
        self.assertEqual(levels[first : first + 6], [True] * 5 + [False])

    def test_transport_cannot_dtmf_or_transfer(self) -> None:
        contextId, peer = self.started()
        call = self.call(peer)
        self.assertFalse(call.sendDtmf("1"))
        self.assertFalse(self.successResultOf(call.transfer("sip:x@y")))

    # --- bad input ----------------------------------------------------------------------

    def assertRefused(self, peer: AudioSocketPeer, code: str, contextId: str | None = None) -> None:
        self.assertTrue(peer.closedByGateway, "not closed with 0x00")
        self.assertEqual(self.errorCount(code), 1, code)
        if contextId is not None:
            self.assertIn(code, [p["code"] for _, _, p in self.events(contextId, "error")])

    def test_first_frame_not_uuid(self) -> None:
        peer = self.open()
        peer.say(SILENCE_8K)
        self.assertRefused(peer, "no_uuid")

    def test_uuid_wrong_length(self) -> None:
        peer = self.open()
        peer.send(encodeFrame(0x01, b"\x01" * 15))
        self.assertRefused(peer, "bad_length")

    def test_oversize_length(self) -> None:
        """
        A length beyond the limit is refused from the header alone.
        """
        contextId, peer = self.started()
        peer.send(b"\x10\xff\xfe")
        self.assertRefused(peer, "too_large", contextId)
        self.assertEqual(self.context(contextId).status, "failed")

    def test_odd_audio_length(self) -> None:
        contextId, peer = self.started()
        peer.send(b"\x10\x00\x03abc")
        self.assertRefused(peer, "bad_length", contextId)

    def test_unknown_kind(self) -> None:
        contextId, peer = self.started()
        peer.send(encodeFrame(0x02, b""))
        self.assertRefused(peer, "unknown_kind", contextId)
        self.assertEqual(self.context(contextId).status, "failed")

    def test_second_uuid(self) -> None:
        contextId, peer = self.started()
        peer.send(encodeUuid(uuid.uuid4()))
        self.assertRefused(peer, "unexpected_frame", contextId)

    def test_bad_dtmf(self) -> None:
        contextId, peer = self.started()
        peer.send(encodeFrame(0x03, b"x"))
        self.assertRefused(peer, "bad_value", contextId)

    def test_truncated_frame(self) -> None:
        """
        The socket closes inside a frame: an C{error} event, and the call
        still ends as the caller's hang-up.
        """
        contextId, peer = self.started()
        peer.send(encodeAudio(SILENCE_8K)[:100])
        peer.hangUp()
        self.assertEqual(self.errorCount("truncated"), 1)
        self.assertIn("truncated", [p["code"] for _, _, p in self.events(contextId, "error")])
        self.assertEqual(self.context(contextId).status, "completed")

    def test_data_after_refusal_ignored(self) -> None:
        contextId, peer = self.started()
        peer.send(encodeFrame(0x02))
        peer.send(encodeAudio(SILENCE_8K) + b"\xee\xee")
        self.assertEqual(self.errorCount("unknown_kind"), 1)
        self.assertEqual(len(self.events(contextId, "error")), 1)

    def test_other_calls_unaffected(self) -> None:
        """
        One connection sending garbage is closed; another goes on.
        """
        goodId, good = self.started()
        badId, bad = self.started()
        bad.send(b"\x10\xff\xff" + b"\x00" * 50)
        self.assertTrue(bad.closedByGateway)
        before = len(good.read())
        good.say(SILENCE_8K)
        self.tick(5)
        self.assertEqual(len(good.read()) - before, 5)
        self.assertFalse(good.transport.disconnecting)
        self.assertEqual(self.context(goodId).status, "claimed")

    def test_crash_contained(self) -> None:
        """
        An unexpected exception handling a frame closes that connection
        (logged), never escaping dataReceived.
        """
        contextId, peer = self.started()
        session = self.call(peer).session
        assert session is not None

        def broken(data: bytes) -> None:
            raise RuntimeError("boom")

        session.audioReceived = broken  # type: ignore[method-assign]
        peer.say(SILENCE_8K)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertTrue(peer.closedByGateway)
        self.assertEqual(self.context(contextId).status, "failed")

    # --- refusals and the claim -----------------------------------------------------------

    def test_unknown_uuid_refused(self) -> None:
        """
        An unknown UUID: 0x00 and close, and an error in the log (there is
        no call to record it on).
        """
        with capturedLogs() as events:
            peer = self.connect(str(uuid.uuid4()))
        self.assertRefused(peer, "unknown_context")
        self.assertEqual(self.h.contexts(self), [])
        (event,) = [e for e in events if e.get("error_code") == "unknown_context"]
        self.assertEqual(event["log_level"], LogLevel.error)

    def test_other_providers_context_refused(self) -> None:
        """
        A Twilio context id is no AudioSocket credential.
        """
        response, body = self.h.request(
            self,
            "POST",
            "/v1/talk/twilio/call/echo",
            data={"From": "+1", "To": "+2", "CallSid": "CA1"},
        )
        self.assertEqual(response.code, 200)
        (context,) = self.h.contexts(self)
        peer = self.connect(context.context_id)
        self.assertRefused(peer, "unknown_context")
        self.assertEqual(self.context(context.context_id).status, "pending")

    def test_already_claimed_refused(self) -> None:
        contextId, first = self.started()
        second = self.connect(contextId)
        self.assertRefused(second, "already_claimed", contextId)
        self.assertFalse(first.transport.disconnecting)

    def test_store_down_refused(self) -> None:
        contextId = self.webhook()
        self.h.store.unavailable = True
        peer = self.connect(contextId)
        self.assertRefused(peer, "store_unavailable")

    def slowClaim(self) -> list[Deferred[Any]]:
        waiting: list[Deferred[Any]] = []
        claim = self.h.store.claim

        def slow(contextId: str) -> Deferred[Any]:
            d: Deferred[Any] = Deferred()
            waiting.append(d)
            d.addCallback(lambda _: claim(contextId))
            return d

        self.h.store.claim = slow  # type: ignore[method-assign, assignment]
        return waiting

    def test_frames_held_during_claim(self) -> None:
        """
        Frames arriving while the claim is on its way are handled, in
        order, once it is done.
        """
        self.useSpeaker()
        waiting = self.slowClaim()
        contextId = self.webhook("speaker")
        peer = self.connect(contextId)
        peer.dtmf("1")
        peer.say(SILENCE_8K)
        peer.dtmf("2")
        self.assertEqual(peer.read(), [])
        waiting.pop().callback(None)
        self.assertEqual(self.speaker.sessions[0].digits, ["1", "2"])
        session = self.call(peer).session
        assert session is not None
        self.assertEqual(session.stats.framesIn, 1)

    def test_held_frames_bounded(self) -> None:
        waiting = self.slowClaim()
        contextId = self.webhook()
        peer = self.connect(contextId)
        for _ in range(self.settings.maxHeld + 10):
            peer.say(SILENCE_8K)
        self.assertEqual(len(self.call(peer)._held), self.settings.maxHeld)
        waiting.pop().callback(None)
        dropped = self.h.gateway.metrics.registry.get_sample_value(
            "rapida_frames_dropped_total", {"direction": "inbound"}
        )
        self.assertEqual(dropped, 10)

    def test_closed_during_claim(self) -> None:
        waiting = self.slowClaim()
        contextId = self.webhook()
        peer = self.connect(contextId)
        peer.hangUp()
        waiting.pop().callback(None)
        self.assertEqual(self.context(contextId).status, "completed")
        self.assertEqual(
            [kind for _, kind, _ in self.events(contextId)], ["webhook", "claimed", "ended"]
        )

    def test_garbage_during_claim(self) -> None:
        waiting = self.slowClaim()
        contextId = self.webhook()
        peer = self.connect(contextId)
        peer.send(encodeFrame(0x02))
        self.assertTrue(peer.closedByGateway)
        waiting.pop().callback(None)
        self.assertEqual(self.context(contextId).status, "failed")
        self.assertEqual(
            [kind for _, kind, _ in self.events(contextId)],
            ["webhook", "claimed", "error", "ended"],
        )

    def test_unknown_assistant(self) -> None:
        contextId = self.webhook("speaker")
        # the assistant was removed from the configuration meanwhile
        self.h.gateway.assistants = AssistantRegistry(parseConfig("", {}))
        peer = self.connect(contextId)
        peer.say(SILENCE_8K)
        self.assertRefused(peer, "unknown_assistant", contextId)

    # --- timers ---------------------------------------------------------------------------

    def test_no_uuid_timeout(self) -> None:
        peer = self.open()
        self.h.clock.advance(self.settings.uuidTimeout)
        self.assertRefused(peer, "no_uuid")

    def test_inactivity_timeout(self) -> None:
        """
        No data from Asterisk for C{inactivityTimeout} seconds ends the
        call as failed (0x00, close); data keeps it alive.
        """
        contextId, peer = self.started()
        timeout = self.settings.inactivityTimeout
        for _ in range(3):
            self.h.clock.advance(timeout / 2)
            peer.say(SILENCE_8K)
        self.assertFalse(peer.transport.disconnecting)
        self.h.clock.advance(timeout)
        self.assertRefused(peer, "inactive", contextId)
        self.assertEqual(self.context(contextId).status, "failed")

    def test_no_timers_left(self) -> None:
        """
        A finished call leaves no timer behind (the pacer stops too).
        """
        contextId, peer = self.started()
        peer.hangUp()
        self.assertEqual(self.h.clock.getDelayedCalls(), [])
        self.assertEqual(self.factory.connections, 0)


class FuzzTests(AudioSocketBase):
    """
    Whatever follows the UUID, nothing escapes the protocol: the call
    goes on or is closed with 0x00, and only sendable kinds are written.
    """

    @settings(max_examples=80, deadline=None)
    @given(
        st.lists(
            st.one_of(
                st.binary(max_size=700),
                st.builds(
                    encodeFrame,
                    st.sampled_from([0x00, 0x02, 0x03, 0x10, 0x12, 0x13, 0x16, 0xFF]),
                    st.binary(max_size=700),
                ),
                st.sampled_from([encodeAudio(SILENCE_8K), encodeDtmf("9"), encodeDtmf("0")]),
            ),
            max_size=20,
        )
    )
    def test_fuzz(self, chunks: list[bytes]) -> None:
        self.setUp()
        self.useSpeaker()
        peer = self.connect(self.webhook("speaker"))
        for chunk in chunks:
            peer.send(chunk)
            self.h.clock.advance(TICK)
        frames = peer.read()
        kinds = {f.kind if type(f) is Audio else 0 for f in frames}
        self.assertTrue(kinds <= SENDABLE_TO_ASTERISK)
        if peer.transport.disconnecting:
            self.assertEqual(frames[-1], Hangup())
        peer.hangUp()
        self.assertEqual(self.flushLoggedErrors(), [])


class ByteByByteTests(AudioSocketServerTests):
    """
    Every test of L{AudioSocketServerTests} again, with TCP delivering one
    byte at a time.
    """

    def feed(self, proto: AudioSocketProtocol, data: bytes) -> None:
        for i in range(len(data)):
            proto.dataReceived(data[i : i + 1])


class _NoDelayTransport(StringTransport):
    noDelay = False

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.noDelay = enabled


@implementer(IWriteDescriptor)
class _FlushingTransport(_NoDelayTransport):
    """
    A transport that is its own write descriptor, like a TCP connection.
    """

    flushedAt: list[int]

    def doWrite(self) -> None:
        self.flushedAt.append(len(self.value()))

    def fileno(self) -> int:
        return -1

    def logPrefix(self) -> str:
        return "test"

    def connectionLost(self, reason: Failure) -> None:
        pass


class TransportTests(AudioSocketBase):
    def test_frames_flushed_in_tick(self) -> None:
        """
        Every frame is handed to the kernel at once (C{doWrite} right after
        the write), not in the reactor's next pass.
        """
        contextId = self.webhook()
        proto = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        transport = _FlushingTransport()
        transport.flushedAt = []
        proto.makeConnection(transport)
        proto.dataReceived(encodeUuid(uuid.UUID(contextId)) + encodeAudio(SILENCE_8K))
        self.tick(3)
        self.assertEqual(transport.flushedAt, [323, 646, 969, 1292])
        proto.connectionLost(Failure(ConnectionDone()))

    def test_no_delay(self) -> None:
        """
        TCP_NODELAY is set, as Asterisk does on its side: Nagle's algorithm
        would otherwise hold frames back and send them in pairs.
        """
        proto = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        transport = _NoDelayTransport()
        proto.makeConnection(transport)
        self.assertTrue(transport.noDelay)
        proto.connectionLost(Failure(ConnectionDone()))


class UnannouncedTests(AudioSocketBase):
    """
    C{[audiosocket] assistant = ...}: unknown UUIDs get a context on the
    fly.
    """

    toml = '[audiosocket]\nassistant = "echo"\n'

    def test_context_created(self) -> None:
        channel = uuid.uuid4()
        peer = self.connect(str(channel))
        peer.say(SILENCE_8K)
        self.h.clock.advance(TICK)
        (context,) = self.h.contexts(self)
        self.assertEqual(
            (context.provider, context.assistant_id, context.channel_uuid, context.status),
            ("asterisk", "echo", str(channel), "claimed"),
        )
        self.assertEqual(context.metadata, {"transport": "audiosocket", "unannounced": True})
        self.assertFalse(peer.transport.disconnecting)
        self.assertEqual(len(peer.read()), 2)

    def test_uuid_used_once(self) -> None:
        channel = uuid.uuid4()
        first = self.connect(str(channel))
        first.hangUp()
        second = self.connect(str(channel))
        self.assertTrue(second.refused)
        self.assertEqual(len(self.h.contexts(self)), 1)

    def test_announced_still_claimed(self) -> None:
        """
        A known context id is claimed as usual (no second context).
        """
        _, body = self.h.request(self, "GET", "/v1/talk/asterisk/call/echo?from=1")
        peer = self.connect(body.decode())
        peer.say(SILENCE_8K)
        self.assertEqual(len(self.h.contexts(self)), 1)
        self.assertFalse(peer.transport.disconnecting)


class ListenerTests(SynchronousTestCase):
    """
    The C{--audiosocket} listener in the service tree.
    """

    def listeners(self, value: str) -> list[Any]:
        options = Options({"RAPIDA_AUDIOSOCKET": value, "RAPIDA_SIP": "none"})
        options.parseOptions([])
        reactor = MemoryReactor()
        gateway = Harness().gateway
        services = _listeners(options, gateway, reactor)
        for service in services:
            service.startService()
        return [(s.name, reactor) for s in services]

    def test_listener(self) -> None:
        ((name, reactor),) = self.listeners("tcp:4573:interface=127.0.0.1")
        self.assertEqual(name, "audiosocket")
        ((port, factory, _, interface),) = reactor.tcpServers
        self.assertEqual((port, interface), (4573, "127.0.0.1"))
        self.assertIsInstance(factory, AudioSocketFactory)

    def test_none(self) -> None:
        self.assertEqual(self.listeners("none"), [])
