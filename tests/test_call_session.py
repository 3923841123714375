"""
Tests for L{rapida_twisted.call}: the audio format, the event log and the
one call session, driven through a fake transport and a fake assistant
on a memory store and a task.Clock.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from rapida_twisted.call import (
    AudioFormat,
    CallDetails,
    CallSession,
    EventLog,
    FormatError,
)
from rapida_twisted.config import parseConfig
from rapida_twisted.gateway import Gateway
from rapida_twisted.interfaces import (
    IAssistant,
    IAssistantSession,
    ICallControl,
    ICallTransport,
)
from rapida_twisted.media.analysis import correlation, tone
from rapida_twisted.media.g711 import ulawDecode, ulawEncode
from rapida_twisted.media.pacer import PacerGroup
from rapida_twisted.media.resample import Resampler
from rapida_twisted.providers._base import PublicURLs
from rapida_twisted.store._memory import MemoryContextStore
from rapida_twisted.store._model import COMPLETED, StoreUnavailable

ULAW8K = AudioFormat("ulaw", 8000)


@implementer(ICallTransport)
class FakeTransport:
    """
    Records what the session sends.
    """

    def __init__(
        self,
        audioFormat: AudioFormat = ULAW8K,
        paced: bool = False,
        supportsMarks: bool = True,
        needsSilence: bool = False,
        dtmf: bool = True,
    ) -> None:
        self.audioFormat = audioFormat
        self.paced = paced
        self.supportsMarks = supportsMarks
        self.needsSilence = needsSilence
        self.dtmf = dtmf
        #: ("audio", frame) / ("mark", name) / ("clear", None) in order
        self.sent: list[tuple[str, Any]] = []
        self.digits: list[str] = []
        self.hangups: list[str] = []
        self.transfers: list[str] = []

    def frames(self) -> list[bytes]:
        return [data for kind, data in self.sent if kind == "audio"]

    def marks(self) -> list[str]:
        return [data for kind, data in self.sent if kind == "mark"]

    def sendAudio(self, frame: bytes) -> None:
        self.sent.append(("audio", frame))

    def sendMark(self, name: str) -> None:
        self.sent.append(("mark", name))

    def sendClear(self) -> None:
        self.sent.append(("clear", None))

    def sendDtmf(self, digit: str) -> bool:
        if self.dtmf:
            self.digits.append(digit)
        return self.dtmf

    def transfer(self, target: str) -> Deferred[bool]:
        self.transfers.append(target)
        return defer.succeed(False)

    def hangup(self, reason: str) -> None:
        self.hangups.append(reason)


@implementer(IAssistantSession)
class RecordingSession:
    """
    An assistant session that records every call it gets.
    """

    def __init__(self) -> None:
        self.audio: list[bytes] = []
        self.digits: list[str] = []
        self.completed: list[str] = []
        self.ended: list[str] = []
        self.onCompleted: Any = None

    def audioReceived(self, pcm: bytes) -> None:
        self.audio.append(pcm)

    def dtmfReceived(self, digit: str) -> None:
        self.digits.append(digit)

    def playbackCompleted(self, responseId: str) -> None:
        self.completed.append(responseId)
        if self.onCompleted is not None:
            self.onCompleted(responseId)

    def callEnded(self, reason: str) -> None:
        self.ended.append(reason)


@implementer(IAssistant)
class FakeAssistant:
    """
    Starts L{RecordingSession}s (or returns C{result} when set: a Deferred
    or an exception to raise).
    """

    id = "fake"

    def __init__(self, sampleRate: int = 16000, result: Any = None) -> None:
        self.sampleRate = sampleRate
        self.result = result
        self.session = RecordingSession()
        self.details: CallDetails | None = None
        self.control: ICallControl | None = None

    def startSession(self, details: CallDetails, control: ICallControl) -> Any:
        self.details = details
        self.control = control
        if isinstance(self.result, Exception):
            raise self.result
        if self.result is not None:
            return self.result
        return self.session


verifyObject(ICallTransport, FakeTransport())
verifyObject(IAssistantSession, RecordingSession())
verifyObject(IAssistant, FakeAssistant())


class Base(SynchronousTestCase):
    """
    A gateway on a memory store with a claimed context.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.store = MemoryContextStore(self.clock, ttl=120)
        self.gateway = Gateway(
            self.clock, self.store, parseConfig(""), PublicURLs("gw.example.com")
        )
        new = self.successResultOf(
            self.store.create("twilio", "fake", caller="+15550001", callee="+15550002",
                              channel_uuid="CA1", metadata={"k": "v"})
        )
        self.context = self.successResultOf(self.store.claim(new.context.context_id))

    def session(
        self,
        transport: FakeTransport | None = None,
        assistant: FakeAssistant | None = None,
        start: bool = True,
        **kw: Any,
    ) -> tuple[CallSession, FakeTransport, FakeAssistant]:
        transport = transport or FakeTransport()
        assistant = assistant or FakeAssistant()
        session = CallSession(self.clock, self.gateway, self.context, transport, assistant, **kw)
        if start:
            session.start()
        return session, transport, assistant

    def events(self, kind: str | None = None) -> list[tuple[str, str, dict[str, Any]]]:
        rows = self.successResultOf(self.store.listEvents(self.context.context_id, kind))
        return [(e.source, e.kind, e.payload) for e in rows]

    def metric(self, name: str, **labels: str) -> float:
        value = self.gateway.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


def canonicalTone(seconds: float, rate: int = 16000, freq: float = 440.0) -> bytes:
    return tone(freq, seconds, rate, 0.3)


class AudioFormatTests(SynchronousTestCase):
    def test_sizes(self) -> None:
        self.assertEqual(ULAW8K.frameBytes, 160)
        self.assertEqual(ULAW8K.silenceFrame, b"\xff" * 160)
        alaw = AudioFormat("alaw", 8000)
        self.assertEqual(alaw.silence, b"\xd5")
        l16 = AudioFormat("l16", 16000)
        self.assertEqual((l16.frameBytes, l16.sampleWidth), (640, 2))
        self.assertEqual(l16.silenceFrame, bytes(640))
        self.assertEqual(AudioFormat("l16", 24000, 10).frameBytes, 480)
        self.assertEqual(ULAW8K.bytesFor(100), 800)

    def test_invalid(self) -> None:
        for args in [("opus", 8000), ("ulaw", 44100), ("l16", 8000, 0), ("l16", 8000, -20)]:
            self.assertRaises(FormatError, AudioFormat, *args)
        self.assertTrue(issubclass(FormatError, ValueError))

    def test_codec(self) -> None:
        pcm = canonicalTone(0.02, 8000)
        codes = ulawEncode(pcm)
        samples = ULAW8K.decodeArray(codes)
        self.assertEqual(samples.tobytes(), ulawDecode(codes))
        self.assertEqual(ULAW8K.encodeArray(samples), codes)
        l16 = AudioFormat("l16", 8000)
        self.assertEqual(l16.encodeArray(l16.decodeArray(pcm)), pcm)

    def test_details(self) -> None:
        clock = Clock()
        store = MemoryContextStore(clock)
        context = self.successResultOf(store.create("vonage", "a1", caller="1", callee="2")).context
        details = CallDetails.fromContext(context, 24000)
        self.assertEqual(details.context_id, context.context_id)
        self.assertEqual(details.conversation_id, context.conversation_id)
        self.assertEqual((details.provider, details.assistant_id), ("vonage", "a1"))
        self.assertEqual((details.caller, details.callee, details.direction), ("1", "2", "inbound"))
        self.assertEqual(details.sampleRate, 24000)


class LifecycleTests(Base):
    def test_start(self) -> None:
        session, transport, assistant = self.session()
        verifyObject(ICallControl, session)
        self.assertIs(assistant.control, session)
        details = assistant.details
        assert details is not None
        self.assertEqual(details.context_id, self.context.context_id)
        self.assertEqual(details.channel_uuid, "CA1")
        self.assertEqual(details.sampleRate, 16000)
        self.assertEqual(details.metadata, {"k": "v"})
        self.assertEqual(
            self.events(),
            [("gateway", "start", {"codec": "ulaw", "sample_rate": 8000,
                                   "assistant_id": "fake", "assistant_rate": 16000})],
        )
        self.assertEqual(self.metric("rapida_active_calls", provider="twilio"), 1)
        session.start()
        self.assertEqual(len(self.events("start")), 1)

    def test_ended_idempotent(self) -> None:
        session, transport, assistant = self.session()
        session.ended("stop")
        session.ended("closed", "failed")
        self.assertEqual(assistant.session.ended, ["stop"])
        self.assertEqual(
            self.events("ended"), [("provider", "ended", {"reason": "stop", "outcome": "completed"})]
        )
        context = self.successResultOf(self.store.get(self.context.context_id))
        self.assertEqual(context.status, COMPLETED)
        self.assertEqual(context.reason, "stop")
        self.assertEqual(self.metric("rapida_active_calls", provider="twilio"), 0)
        self.assertEqual(self.metric("rapida_calls_total", provider="twilio", outcome="completed"), 1)
        self.assertEqual(transport.hangups, [])
        # nothing flows after the end
        session.audioReceived(b"\xff" * 160)
        assistant.session.audio.clear()
        session.play("r", canonicalTone(0.1))
        self.assertEqual(transport.frames(), [])
        self.assertEqual(assistant.session.audio, [])

    def test_ended_failed(self) -> None:
        session, _, _ = self.session()
        session.ended("protocol error", "failed", source="gateway")
        context = self.successResultOf(self.store.get(self.context.context_id))
        self.assertEqual(context.status, "failed")
        self.assertEqual(self.events("ended")[0][0], "gateway")

    def test_hangup_idempotent(self) -> None:
        session, transport, assistant = self.session()
        session.hangup("goodbye")
        session.hangup("again")
        session.ended("closed")
        self.assertEqual(transport.hangups, ["goodbye"])
        self.assertEqual(assistant.session.ended, ["goodbye"])
        self.assertEqual(self.events("hangup"), [("assistant", "hangup", {"reason": "goodbye"})])
        self.assertEqual(len(self.events("ended")), 1)
        self.assertEqual(
            [kind for _, kind, _ in self.events()], ["start", "hangup", "ended"]
        )

    def test_hangup_from_provider(self) -> None:
        session, transport, _ = self.session()
        session.hangup("caller hung up", source="provider")
        self.assertEqual(self.events("hangup")[0][0], "provider")
        self.assertEqual(transport.hangups, ["caller hung up"])

    def test_assistant_fails_to_start(self) -> None:
        _, transport, _ = self.session(assistant=FakeAssistant(result=RuntimeError("boom")))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(transport.hangups, ["assistant failed to start"])
        (error,) = self.events("error")
        self.assertEqual(error[2]["reason"], "assistant_failed")
        self.assertIn("boom", error[2]["message"])
        self.assertEqual(len(self.events("ended")), 1)

    def test_assistant_errors_contained(self) -> None:
        session, transport, assistant = self.session()

        def broken(pcm: bytes) -> None:
            raise ValueError("bad assistant")

        assistant.session.audioReceived = broken  # type: ignore[method-assign]
        session.audioReceived(b"\xff" * 160)
        session.audioReceived(b"\xff" * 160)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 2)
        self.assertEqual(session.stats.framesIn, 2)


class InboundTests(Base):
    def test_odd_chunks(self) -> None:
        """
        Any chunking of the wire audio gives exactly one 20 ms canonical
        frame per 20 ms, the same samples as the whole stream converted
        at once.
        """
        session, _, assistant = self.session()
        wire = ulawEncode(tone(700, 0.2, 8000, 0.4))
        sizes = [1, 7, 159, 160, 161, 33, 320, 100, 3]
        i = 0
        for n in sizes * 10:
            if i >= len(wire):
                break
            session.audioReceived(wire[i : i + n])
            i += n
        frames = assistant.session.audio
        self.assertEqual(len(frames), 10)
        self.assertEqual({len(f) for f in frames}, {640})
        expected = Resampler(8000, 16000).process(ulawDecode(wire))
        self.assertEqual(b"".join(frames), expected)

    def test_resampled(self) -> None:
        """
        A 1 kHz tone at 8 kHz μ-law reaches a 24 kHz assistant as a 1 kHz
        tone in 960-byte frames.
        """
        session, _, assistant = self.session(assistant=FakeAssistant(24000))
        wire = ulawEncode(tone(1000, 0.5, 8000, 0.4))
        for i in range(0, len(wire), 160):
            session.audioReceived(wire[i : i + 160])
        frames = assistant.session.audio
        self.assertEqual((len(frames), {len(f) for f in frames}), (25, {960}))
        got = np.frombuffer(b"".join(frames), np.int16).astype(float)[2400:]
        spectrum = np.abs(np.fft.rfft(got))
        peak = np.argmax(spectrum) * 24000 / len(got)
        self.assertAlmostEqual(peak, 1000, delta=10)
        score, _ = correlation(tone(1000, 0.5, 24000, 0.4), b"".join(frames), 200)
        self.assertGreater(score, 0.99)

    def test_passthrough(self) -> None:
        """
        L16 at the assistant's rate reaches it untouched.
        """
        transport = FakeTransport(AudioFormat("l16", 16000))
        session, _, assistant = self.session(transport)
        pcm = canonicalTone(0.06)
        session.audioReceived(pcm[:1000])
        session.audioReceived(pcm[1000:])
        self.assertEqual(b"".join(assistant.session.audio), pcm)
        self.assertEqual(len(assistant.session.audio), 3)

    def test_bounded_while_assistant_starts(self) -> None:
        """
        While the assistant session is not ready caller frames wait in a
        bounded queue; the oldest are dropped and counted.
        """
        starting: Deferred[Any] = Deferred()
        assistant = FakeAssistant(result=starting)
        session, _, _ = self.session(assistant=assistant, maxInbound=5)
        frames = [bytes([i]) * 160 for i in range(8)]
        for frame in frames:
            session.audioReceived(frame)
        session.dtmfReceived("7")
        self.assertEqual(session.stats.inboundDropped, 3)
        self.assertEqual(self.metric("rapida_frames_dropped_total", direction="inbound"), 3)
        starting.callback(assistant.session)
        resampler = Resampler(8000, 16000)
        converted = [resampler.process(ulawDecode(frame)) for frame in frames]
        self.assertEqual(assistant.session.audio, converted[3:])
        self.assertEqual(assistant.session.digits, ["7"])

    def test_dtmf(self) -> None:
        session, _, assistant = self.session()
        for digit in "12#":
            session.dtmfReceived(digit)
        self.assertEqual(assistant.session.digits, ["1", "2", "#"])
        self.assertEqual(
            self.events("dtmf"),
            [("provider", "dtmf", {"digit": d}) for d in "12#"],
        )

    def test_before_start_ignored(self) -> None:
        session, _, assistant = self.session(start=False)
        session.audioReceived(b"\xff" * 160)
        session.dtmfReceived("1")
        self.assertEqual(self.events(), [])
        session.start()
        self.assertEqual(assistant.session.audio, [])


class OutboundTests(Base):
    def test_frames(self) -> None:
        """
        Canonical audio comes out as the wire codec, resampled and cut in
        exact frames, the tail padded with codec silence.
        """
        session, transport, _ = self.session()
        pcm = canonicalTone(0.105)
        pieces = [pcm[:333], pcm[333:2001], pcm[2001:]]
        for piece in pieces:
            session.play("r1", piece)
        self.assertEqual(len(transport.frames()), 5)
        session.completeResponse("r1")
        frames = transport.frames()
        self.assertEqual(len(frames), 6)
        self.assertEqual({len(f) for f in frames}, {160})
        expected = ulawEncode(Resampler(16000, 8000).process(pcm))
        self.assertEqual(b"".join(frames)[: len(expected)], expected)
        self.assertEqual(frames[-1][len(expected) - 800 :], b"\xff" * (960 - len(expected)))
        self.assertEqual(transport.sent[-1], ("mark", "m1"))

    def test_odd_byte_chunks(self) -> None:
        """
        Chunks of an odd byte length (half a sample) are joined, not
        rejected.
        """
        session, transport, _ = self.session(transport=FakeTransport(AudioFormat("l16", 16000)))
        pcm = canonicalTone(0.04)
        session.play("r", pcm[:101])
        session.play("r", pcm[101:])
        self.assertEqual(b"".join(transport.frames()), pcm)

    def test_marks_in_response_order(self) -> None:
        """
        A later response's audio waits behind the playing one; completions
        are reported in response order, once each, when acknowledged.
        """
        session, transport, assistant = self.session()
        a, b = canonicalTone(0.04, freq=300), canonicalTone(0.04, freq=900)
        session.play("A", a)
        session.play("B", b)
        session.completeResponse("B")
        session.play("A", a)
        self.assertEqual(len(transport.frames()), 4)
        self.assertEqual(transport.marks(), [])
        session.completeResponse("A")
        kinds = [kind for kind, _ in transport.sent]
        self.assertEqual(kinds, ["audio"] * 4 + ["mark"] + ["audio"] * 2 + ["mark"])
        self.assertEqual(transport.marks(), ["m1", "m2"])
        session.markAcknowledged("m1")
        self.assertEqual(assistant.session.completed, ["A"])
        session.markAcknowledged("m1")
        session.markAcknowledged("m2")
        self.assertEqual(assistant.session.completed, ["A", "B"])
        self.assertEqual(session.stats.unknownAcks, 1)
        self.assertEqual(
            self.events("mark"),
            [("provider", "mark", {"name": "A"}), ("provider", "mark", {"name": "B"})],
        )

    def test_later_ack_reports_earlier(self) -> None:
        session, transport, assistant = self.session()
        for rid in "ABC":
            session.play(rid, canonicalTone(0.02))
            session.completeResponse(rid)
        session.markAcknowledged("m2")
        self.assertEqual(assistant.session.completed, ["A", "B"])
        session.markAcknowledged("m3")
        session.markAcknowledged("m1")
        self.assertEqual(assistant.session.completed, ["A", "B", "C"])

    def test_never_reopened(self) -> None:
        """
        Audio for a completed response is dropped; completing it again
        sends no second mark.
        """
        session, transport, _ = self.session()
        session.play("A", canonicalTone(0.02))
        session.completeResponse("A")
        sent = len(transport.sent)
        session.play("A", canonicalTone(0.02))
        session.completeResponse("A")
        self.assertEqual(len(transport.sent), sent)
        self.assertEqual(session.stats.lateAudio, 1)

    def test_empty_response_and_named_marks(self) -> None:
        session, transport, assistant = self.session()
        session.completeResponse("nothing")
        session.play("A", canonicalTone(0.04))
        session.mark("half")
        session.play("A", canonicalTone(0.04))
        session.play("B", canonicalTone(0.02))
        session.mark("after-B")
        session.completeResponse("A")
        session.completeResponse("B")
        self.assertEqual(
            [data if kind == "mark" else kind for kind, data in transport.sent],
            ["m1", "audio", "audio", "m2", "audio", "audio", "m3", "audio", "m4", "m5"],
        )
        for name in transport.marks():
            session.markAcknowledged(name)
        self.assertEqual(assistant.session.completed, ["nothing", "half", "A", "B", "after-B"])

    def test_clear(self) -> None:
        """
        clear() empties the queue, forgets pending marks and the
        resampler's history, flushes the provider, and records an event,
        in one step; acknowledgements of flushed marks change nothing.
        """
        session, transport, assistant = self.session(maxLead=0.1)
        session.play("A", canonicalTone(1.0))
        session.completeResponse("A")
        session.play("B", canonicalTone(0.5))
        self.assertEqual(len(transport.frames()), 5)
        session.clear()
        self.assertEqual(transport.sent[-1], ("clear", None))
        self.clock.advance(5)
        self.assertEqual(len(transport.frames()), 5)
        session.markAcknowledged("m1")
        self.assertEqual(assistant.session.completed, [])
        self.assertEqual(self.events("clear"), [("assistant", "clear", {"frames": 70})])
        # the old responses are finished; new audio starts from clean state
        session.play("B", canonicalTone(0.1))
        self.assertEqual(len(transport.frames()), 5)
        self.clock.advance(1)
        session.play("C", bytes(640))
        self.assertEqual(transport.frames()[-1], b"\xff" * 160)

    def test_clear_with_marks_acked_at_once(self) -> None:
        """
        A provider that echoes pending marks on clear does not make the
        session report the cleared responses.
        """
        session, transport, assistant = self.session()
        session.play("A", canonicalTone(0.04))
        session.completeResponse("A")
        session.clear()
        for name in transport.marks():
            session.markAcknowledged(name)
        self.assertEqual(assistant.session.completed, [])
        session.play("B", canonicalTone(0.02))
        session.completeResponse("B")
        session.markAcknowledged(transport.marks()[-1])
        self.assertEqual(assistant.session.completed, ["B"])

    def test_flow_control(self) -> None:
        """
        A buffering provider gets frames at once, but never more than
        maxLead seconds ahead of real time.
        """
        session, transport, _ = self.session(maxLead=1.0)
        session.play("A", canonicalTone(3.0))
        self.assertEqual(len(transport.frames()), 50)
        for _ in range(100):
            self.clock.advance(0.02)
            ahead = len(transport.frames()) * 0.02 - (_ + 1) * 0.02
            self.assertLessEqual(ahead, 1.0 + 1e-9)
        self.assertGreaterEqual(len(transport.frames()), 140)
        self.clock.advance(0.5)
        self.assertEqual(len(transport.frames()), 150)

    def test_output_bounded(self) -> None:
        """
        Assistant audio beyond maxOutput seconds: the oldest queued frames
        are dropped and counted.
        """
        session, transport, _ = self.session(maxOutput=1.0, maxLead=0.2)
        session.play("A", canonicalTone(3.0))
        self.assertEqual(session.stats.outboundDropped, 100)
        self.assertEqual(self.metric("rapida_frames_dropped_total", direction="outbound"), 100)
        self.clock.pump([0.02] * 200)
        frames = transport.frames()
        self.assertEqual(len(frames), 50)
        # the newest second survived
        expected = ulawEncode(Resampler(16000, 8000).process(canonicalTone(3.0)))
        self.assertEqual(b"".join(frames), expected[-8000:])

    def test_waiting_bounded(self) -> None:
        session, _, _ = self.session(maxOutput=1.0)
        session.play("A", canonicalTone(0.02))
        session.play("B", canonicalTone(0.5))
        session.play("B", canonicalTone(0.6))
        self.assertEqual(session.stats.outboundDropped, 30)

    def test_no_marks_transport(self) -> None:
        """
        Without provider marks a buffering transport's completion comes
        when the audio sent before it has had time to play.
        """
        transport = FakeTransport(supportsMarks=False)
        session, _, assistant = self.session(transport)
        session.play("A", canonicalTone(0.1))
        session.completeResponse("A")
        self.assertEqual(assistant.session.completed, [])
        self.clock.advance(0.099)
        self.assertEqual(assistant.session.completed, [])
        self.clock.advance(0.002)
        self.assertEqual(assistant.session.completed, ["A"])
        self.assertEqual(self.events("mark"), [("gateway", "mark", {"name": "A"})])

    def test_reentrant_completion(self) -> None:
        """
        An assistant that plays from inside playbackCompleted (reported
        while the queue drains) gets its audio sent once, in order.
        """
        transport = FakeTransport(supportsMarks=False)
        session, _, assistant = self.session(transport, maxLead=0.1)

        def again(responseId: str) -> None:
            if responseId == "empty":
                session.play("next", canonicalTone(0.2))
                session.completeResponse("next")

        assistant.session.onCompleted = again
        session.completeResponse("empty")
        self.assertEqual(assistant.session.completed, ["empty"])
        self.assertEqual(len(transport.frames()), 5)
        self.clock.pump([0.02] * 30)
        self.assertEqual(len(transport.frames()), 10)
        self.assertEqual(assistant.session.completed, ["empty", "next"])

    def test_dtmf_out_and_transfer(self) -> None:
        session, transport, _ = self.session()
        session.sendDtmf("12")
        self.assertEqual(transport.digits, ["1", "2"])
        self.assertEqual(self.events("dtmf"), [("assistant", "dtmf", {"digit": d}) for d in "12"])
        self.assertFalse(self.successResultOf(session.transfer("+1555")))
        self.assertEqual(transport.transfers, ["+1555"])
        transport.dtmf = False
        session.sendDtmf("3")
        self.assertEqual(len(self.events("dtmf")), 2)


class PacedTests(Base):
    def paced(self, **kw: Any) -> tuple[CallSession, FakeTransport, FakeAssistant]:
        transport = FakeTransport(paced=True, supportsMarks=False, **kw)
        return self.session(transport)

    def test_one_frame_per_tick(self) -> None:
        session, transport, assistant = self.paced()
        session.play("A", canonicalTone(0.1))
        session.completeResponse("A")
        self.assertEqual(len(transport.frames()), 1)
        for n in range(2, 6):
            self.clock.advance(0.02)
            self.assertEqual(len(transport.frames()), n)
            self.assertEqual(assistant.session.completed, [] if n < 5 else ["A"])
        self.clock.advance(0.02)
        self.assertEqual(len(transport.frames()), 5)

    def test_no_burst_after_stall(self) -> None:
        session, transport, _ = self.paced()
        session.play("A", canonicalTone(2.0))
        self.assertEqual(len(transport.frames()), 1)
        self.clock.advance(1.0)
        self.assertEqual(len(transport.frames()), 2)
        self.clock.advance(0.02)
        self.assertEqual(len(transport.frames()), 3)

    def test_silence_when_asked(self) -> None:
        session, transport, _ = self.paced(needsSilence=True)
        self.assertEqual(transport.frames(), [b"\xff" * 160])
        self.clock.pump([0.02] * 4)
        self.assertEqual(transport.frames(), [b"\xff" * 160] * 5)
        self.assertEqual(session.stats.silenceOut, 5)
        session.play("A", canonicalTone(0.02, freq=1000))
        self.assertEqual(len(transport.frames()), 5)
        self.clock.advance(0.02)
        self.assertNotEqual(transport.frames()[-1], b"\xff" * 160)

    def test_idle_without_silence(self) -> None:
        """
        With nothing queued and no silence wanted nothing is sent, and the
        pacer stops after a while; new audio restarts it.
        """
        session, transport, _ = self.paced()
        session.play("A", canonicalTone(0.02))
        self.clock.pump([0.02] * 20)
        self.assertEqual(len(transport.frames()), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        session.play("A", canonicalTone(0.04))
        self.assertEqual(len(transport.frames()), 2)
        self.clock.advance(0.02)
        self.assertEqual(len(transport.frames()), 3)

    def test_clear_and_end_stop(self) -> None:
        session, transport, _ = self.paced()
        session.play("A", canonicalTone(1.0))
        session.clear()
        self.clock.pump([0.02] * 5)
        self.assertEqual(len(transport.frames()), 1)
        session.play("B", canonicalTone(1.0))
        session.ended("stop")
        self.clock.pump([0.02] * 5)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_group_pacer(self) -> None:
        group = PacerGroup(self.clock)
        transport = FakeTransport(paced=True, supportsMarks=False)
        session, _, _ = self.session(transport, pacer=group.pacer)
        session.play("A", canonicalTone(0.1))
        self.clock.pump([0.02] * 10)
        self.assertEqual(len(transport.frames()), 5)


class StoreTests(Base):
    def test_writes_do_not_block_audio(self) -> None:
        """
        A store that never answers holds no audio back; the writes stay
        queued in order.
        """
        slow: list[Deferred[Any]] = []
        original = self.store.appendEvent

        def appendEvent(*args: Any, **kw: Any) -> Deferred[Any]:
            d: Deferred[Any] = Deferred()
            slow.append(d)
            d.addCallback(lambda _: original(*args, **kw))
            return d

        self.store.appendEvent = appendEvent  # type: ignore[method-assign]
        session, transport, assistant = self.session()
        session.dtmfReceived("1")
        session.dtmfReceived("2")
        session.audioReceived(b"\xff" * 160)
        session.play("A", canonicalTone(0.04))
        self.assertEqual(len(transport.frames()), 2)
        self.assertEqual(len(assistant.session.audio), 1)
        self.assertEqual(len(slow), 1)
        self.assertEqual(session.events.pending, 3)
        while slow:
            slow.pop(0).callback(None)
        self.assertEqual([p for _, _, p in self.events("dtmf")], [{"digit": "1"}, {"digit": "2"}])

    def test_failures_logged(self) -> None:
        session, transport, _ = self.session()
        self.store.unavailable = True
        session.dtmfReceived("1")
        session.play("A", canonicalTone(0.02))
        self.assertEqual(len(transport.frames()), 1)
        self.assertEqual(len(self.flushLoggedErrors(StoreUnavailable)), 1)
        self.assertEqual(session.events.failures, 1)
        self.store.unavailable = False
        session.dtmfReceived("2")
        self.assertEqual(len(self.events("dtmf")), 1)

    def test_timeout(self) -> None:
        """
        A write that hangs is given up after the gateway's deadline and
        the queue goes on.
        """
        log = EventLog(self.gateway, self.context.context_id)
        log.run("hang", lambda: Deferred())
        log.append("gateway", "status", {"n": 1})
        self.assertEqual(self.events("status"), [])
        self.clock.advance(5.1)
        self.assertEqual(len(self.flushLoggedErrors(StoreUnavailable)), 1)
        self.assertEqual(self.events("status"), [("gateway", "status", {"n": 1})])
        self.successResultOf(log.flushed())


_OPS = st.one_of(
    st.tuples(st.just("play"), st.sampled_from("ABCD"), st.integers(0, 900)),
    st.tuples(st.just("complete"), st.sampled_from("ABCD"), st.just(0)),
    st.tuples(st.just("mark"), st.just(""), st.just(0)),
    st.tuples(st.just("clear"), st.just(""), st.just(0)),
    st.tuples(st.just("ack"), st.just(""), st.integers(0, 3)),
    st.tuples(st.just("wait"), st.just(""), st.integers(1, 30)),
)


class PropertyTests(SynchronousTestCase):
    """
    Random sequences of assistant and provider actions keep the session's
    promises.
    """

    def check(self, ops: list[tuple[str, str, int]], transport: FakeTransport) -> None:
        clock = Clock()
        store = MemoryContextStore(clock)
        gateway = Gateway(clock, store, parseConfig(""), PublicURLs("gw.example.com"))
        context = self.successResultOf(store.create("twilio", "fake")).context
        assistant = FakeAssistant()
        session = CallSession(clock, gateway, context, transport, assistant, maxOutput=2.0)
        session.start()
        firstSeen: dict[str, int] = {}
        forbidden: set[str] = set()
        queued: set[str] = set()
        marks = 0
        done = assistant.session.completed
        for op, rid, n in ops:
            if op == "play":
                session.play(rid, tone(440, n / 16000, 16000) + (b"\x01" if n % 7 == 0 else b""))
            elif op == "complete":
                session.completeResponse(rid)
            elif op == "mark":
                marks += 1
                rid = f"mark{marks}"
                session.mark(rid)
            elif op == "clear":
                forbidden |= queued - set(done)
                session.clear()
            elif op == "ack":
                names = transport.marks()
                if names:
                    session.markAcknowledged(names[min(n, len(names) - 1)])
            else:
                clock.advance(n * 0.02)
            if op in ("play", "complete", "mark") and rid not in firstSeen:
                firstSeen[rid] = len(firstSeen)
                queued.add(rid)
        clock.advance(5)
        for name in transport.marks():
            session.markAcknowledged(name)
        self.assertEqual(len(done), len(set(done)), done)
        self.assertFalse(forbidden & set(done), (forbidden, done))
        responses = [r for r in done if not r.startswith("mark")]
        self.assertEqual(responses, sorted(responses, key=firstSeen.__getitem__))
        self.assertEqual({len(f) for f in transport.frames()} - {160}, set())
        session.ended("done")

    @settings(max_examples=60, deadline=None)
    @given(st.lists(_OPS, max_size=40))
    def test_marks_transport(self, ops: list[tuple[str, str, int]]) -> None:
        self.check(ops, FakeTransport())

    @settings(max_examples=40, deadline=None)
    @given(st.lists(_OPS, max_size=40))
    def test_buffering_transport(self, ops: list[tuple[str, str, int]]) -> None:
        self.check(ops, FakeTransport(supportsMarks=False))

    @settings(max_examples=40, deadline=None)
    @given(st.lists(_OPS, max_size=40))
    def test_paced_transport(self, ops: list[tuple[str, str, int]]) -> None:
        self.check(ops, FakeTransport(paced=True, supportsMarks=False))


class EndedBeforeStartTests(SynchronousTestCase):
    def test_endedBeforeStart(self) -> None:
        """
        A stream that ends before its format was known (e.g. closed while
        claiming) ends cleanly: the context is finished, no exception.
        """
        from rapida_twisted.assistants import EchoAssistant
        from rapida_twisted.config import parseConfig
        from rapida_twisted.gateway import Gateway
        from rapida_twisted.providers._base import PublicURLs
        from rapida_twisted.store import MemoryContextStore

        clock = Clock()
        store = MemoryContextStore(clock)
        gateway = Gateway(clock, store, parseConfig(""), PublicURLs("gw.example.com"))
        context = self.successResultOf(store.create("twilio", "echo")).context
        context = self.successResultOf(store.claim(context.context_id))

        class Transport:
            audioFormat = None
            paced = False
            supportsMarks = False

        session = CallSession(clock, gateway, context, Transport(), EchoAssistant())  # type: ignore[arg-type]
        session.ended("closed before start", "failed")
        session.ended("again", "completed")
        now = self.successResultOf(store.get(context.context_id))
        self.assertEqual((now.status, now.reason), ("failed", "closed before start"))
