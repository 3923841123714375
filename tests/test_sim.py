"""
Tests for L{rapida_twisted.sim}, the provider simulator behind
C{rapida-sim}, and for the provider-side encoders and command decoders it
added to the wire codecs.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import math
import re
import wave
from collections.abc import Callable, Iterable
from typing import Any
from uuid import UUID

import numpy as np
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase

from rapida_twisted.asterisk import _audiosocket as audiosocket
from rapida_twisted.asterisk import _chanws as chanws
from rapida_twisted.media import ULAW, Resampler
from rapida_twisted.media.analysis import correlation, speechLike, tone
from rapida_twisted.providers.exotel import _codec as exotel
from rapida_twisted.providers.twilio import _codec as twilio
from rapida_twisted.providers.twilio._codec import ProtocolError
from rapida_twisted.providers.twilio._webhook import validTwilioSignature
from rapida_twisted.providers.vonage import _codec as vonage
from rapida_twisted.sim.__main__ import buildParser, callOptions, main, runCall, runLoadCommand
from rapida_twisted.sim._analysis import (
    blockArrivals,
    delayed,
    echoCorrelation,
    interArrival,
    matchEcho,
    percentiles,
)
from rapida_twisted.sim._asterisk import AsteriskWsStream, AudioSocketStream
from rapida_twisted.sim._audio import (
    AudioSource,
    PreparedAudio,
    WavFormatError,
    loopTo,
    readWav,
    resample,
    wireFormat,
    writeWav,
)
from rapida_twisted.sim._base import (
    CallOptions,
    CallPlan,
    CallResult,
    HandshakeError,
    MediaStream,
    SimError,
    WebhookError,
)
from rapida_twisted.sim._exotel import ExotelStream, parseStreamURL
from rapida_twisted.sim._load import TRANSPORTS, audioSource, runLoad
from rapida_twisted.sim._net import (
    Environment,
    _AudioSocketProtocol,
    _StreamClientFactory,
    clientFrame,
    writeNow,
    wsURL,
)
from rapida_twisted.sim._record import Playout, Recorder
from rapida_twisted.sim._ticker import FrameClock, Ticker
from rapida_twisted.sim._twilio import TwilioCall, TwilioStream, parseTwiml
from rapida_twisted.sim._vonage import VonageStream, parseNcco, signedWebhook
from rapida_twisted.store._model import tokenMatches

from ._web import Harness

SID = "MZ18ad3ab5a668481ce02b83e7395059f0"
CALL = "CA18ad3ab5a668481ce02b83e7395059f0"
ACCOUNT = "AC18ad3ab5a668481ce02b83e7395059f0"
VONAGE_SECRET = "vonage-signature-secret-0123456789"
ULAW_BYTES = bytes(range(96, 256))


# ---------------------------------------------------------------------------
# Codec additions: what a provider sends, decoded by the server's decoders
# ---------------------------------------------------------------------------


class TwilioProviderSideTests(SynchronousTestCase):
    """
    The Twilio → server encoders round-trip through L{twilio.decode}.
    """

    def test_connected(self) -> None:
        self.assertEqual(twilio.decode(twilio.encodeConnected()), twilio.Connected("Call", "1.0.0"))

    def test_start(self) -> None:
        text = twilio.encodeStart(SID, CALL, ACCOUNT, {"token": "t0k", "x": "1"})
        start = twilio.decode(text)
        assert isinstance(start, twilio.Start)
        self.assertEqual(
            (start.streamSid, start.callSid, start.accountSid, start.token),
            (SID, CALL, ACCOUNT, "t0k"),
        )
        self.assertEqual(
            (start.encoding, start.sampleRate, start.channels), ("audio/x-mulaw", 8000, 1)
        )
        self.assertEqual(start.tracks, ("inbound",))
        obj = json.loads(text)
        self.assertEqual((obj["sequenceNumber"], obj["streamSid"]), ("1", SID))

    def test_inboundMedia(self) -> None:
        text = twilio.encodeInboundMedia(SID, ULAW_BYTES, 4, 2, 20)
        self.assertEqual(twilio.decode(text), twilio.Media(ULAW_BYTES, 2, 20, "inbound"))
        obj = json.loads(text)
        self.assertEqual((obj["sequenceNumber"], obj["streamSid"]), ("4", SID))

    def test_inboundMediaPrecomputed(self) -> None:
        """
        Base64 text given instead of bytes is used as it is.
        """
        b64 = twilio.base64Text(ULAW_BYTES)
        self.assertEqual(
            twilio.encodeInboundMedia(SID, b64, 4, 2, 20),
            twilio.encodeInboundMedia(SID, ULAW_BYTES, 4, 2, 20),
        )

    def test_dtmf(self) -> None:
        text = twilio.encodeDtmf(SID, "#", 7)
        self.assertEqual(twilio.decode(text), twilio.Dtmf("#"))
        self.assertEqual(json.loads(text)["dtmf"]["track"], "inbound_track")
        self.assertRaises(ProtocolError, twilio.encodeDtmf, SID, "12", 7)
        self.assertRaises(ProtocolError, twilio.encodeDtmf, SID, "x", 7)

    def test_markEcho(self) -> None:
        text = twilio.encodeMark(SID, "utt-1", 9)
        self.assertEqual(twilio.decode(text), twilio.Mark("utt-1"))
        self.assertEqual(json.loads(text)["sequenceNumber"], "9")
        self.assertNotIn("sequenceNumber", json.loads(twilio.encodeMark(SID, "utt-1")))

    def test_stop(self) -> None:
        self.assertEqual(
            twilio.decode(twilio.encodeStop(SID, 12, ACCOUNT, CALL)), twilio.Stop(ACCOUNT, CALL)
        )
        self.assertEqual(twilio.decode(twilio.encodeStop(SID, 12)), twilio.Stop())

    @settings(max_examples=50, deadline=None)
    @given(
        st.binary(max_size=400),
        st.text(max_size=40),
        st.integers(0, 10**9),
        st.integers(0, 10**9),
    )
    def test_mediaRoundTrip(self, payload: bytes, sid: str, chunk: int, timestamp: int) -> None:
        text = twilio.encodeInboundMedia(sid, payload, chunk + 1, chunk, timestamp)
        self.assertEqual(twilio.decode(text), twilio.Media(payload, chunk, timestamp, "inbound"))


class ExotelProviderSideTests(SynchronousTestCase):
    """
    The Exotel → server encoders round-trip through L{exotel.decode}.
    """

    def test_connected(self) -> None:
        self.assertEqual(exotel.decode(exotel.encodeConnected()), exotel.Connected())

    def test_start(self) -> None:
        text = exotel.encodeStart(SID, CALL, ACCOUNT, "+9100", "+9111", {"token": "t"})
        start = exotel.decode(text)
        assert isinstance(start, exotel.Start)
        self.assertEqual(
            (start.streamSid, start.callSid, start.accountSid, start.from_, start.to),
            (SID, CALL, ACCOUNT, "+9100", "+9111"),
        )
        self.assertEqual((start.token, start.encoding, start.sampleRate), ("t", exotel.PCM16, 8000))
        self.assertEqual(json.loads(text)["start"]["media_format"]["sample_rate"], "8000")

    def test_startFormat(self) -> None:
        start = exotel.decode(
            exotel.encodeStart(SID, CALL, ACCOUNT, "a", "b", {}, "audio/x-mulaw", 16000)
        )
        assert isinstance(start, exotel.Start)
        self.assertEqual((start.encoding, start.sampleRate), (exotel.ULAW, 16000))

    def test_media(self) -> None:
        pcm = bytes(320)
        text = exotel.encodeMedia(SID, pcm, 3, 2, 20)
        self.assertEqual(exotel.decode(text), exotel.Media(pcm, 2, 20))
        self.assertEqual(json.loads(text)["sequence_number"], "3")
        self.assertEqual(exotel.encodeMedia(SID, twilio.base64Text(pcm), 3, 2, 20), text)

    def test_dtmf(self) -> None:
        text = exotel.encodeDtmf(SID, "5", 4, 120)
        self.assertEqual(exotel.decode(text), exotel.Dtmf("5", 120))
        self.assertRaises(ProtocolError, exotel.encodeDtmf, SID, "", 4)

    def test_markEcho(self) -> None:
        text = exotel.encodeMark(SID, "m1", 8)
        self.assertEqual(exotel.decode(text), exotel.Mark("m1"))
        self.assertEqual(json.loads(text)["sequence_number"], "8")

    def test_stop(self) -> None:
        self.assertEqual(
            exotel.decode(exotel.encodeStop(SID, 9, CALL, ACCOUNT)),
            exotel.Stop(CALL, ACCOUNT, "callended"),
        )
        self.assertEqual(
            exotel.decode(exotel.encodeStop(SID, 9, reason="stopped")),
            exotel.Stop(reason="stopped"),
        )


class VonageProviderSideTests(SynchronousTestCase):
    """
    The Vonage → server encoders round-trip through L{vonage.decode}, and
    L{vonage.decodeCommand} reads what the server sends.
    """

    def test_connected(self) -> None:
        text = vonage.encodeConnected("audio/l16;rate=16000", {"token": "t", "n": 1})
        connected = vonage.decode(text)
        assert isinstance(connected, vonage.Connected)
        self.assertEqual((connected.sampleRate, connected.token), (16000, "t"))
        self.assertEqual(dict(connected.headers), {"token": "t", "n": 1})

    def test_connectedHeadersCannotOverride(self) -> None:
        """
        A header named like a reserved key does not replace it.
        """
        obj = json.loads(vonage.encodeConnected("audio/l16;rate=8000", {"event": "x"}))
        self.assertEqual(obj["event"], "websocket:connected")

    def test_dtmf(self) -> None:
        self.assertEqual(vonage.decode(vonage.encodeDtmf("7", 260)), vonage.Dtmf(("7",), 260))
        self.assertEqual(vonage.decode(vonage.encodeDtmf("*")), vonage.Dtmf(("*",)))
        self.assertRaises(ProtocolError, vonage.encodeDtmf, "77")

    def test_cleared(self) -> None:
        self.assertEqual(vonage.decode(vonage.encodeCleared()), vonage.Cleared())

    def test_notified(self) -> None:
        self.assertEqual(vonage.decode(vonage.encodeNotified({"a": 1})), vonage.Notify({"a": 1}))

    def test_decodeCommand(self) -> None:
        self.assertEqual(vonage.decodeCommand(vonage.encodeClear()), vonage.ClearCommand())
        self.assertEqual(
            vonage.decodeCommand(vonage.encodeNotify({"id": "m1"})),
            vonage.NotifyCommand({"id": "m1"}),
        )
        unknown = vonage.decodeCommand('{"action":"mute","x":1}')
        assert isinstance(unknown, vonage.UnknownCommand)
        self.assertEqual(unknown.action, "mute")

    def test_decodeCommandErrors(self) -> None:
        for text in ("{", "[]", '{"event":"x"}', '{"action":3}', "x" * 70000):
            self.assertRaises(ProtocolError, vonage.decodeCommand, text)

    @settings(max_examples=100, deadline=None)
    @given(st.one_of(st.text(max_size=60), st.binary(max_size=60)))
    def test_decodeCommandFuzz(self, text: str | bytes) -> None:
        try:
            vonage.decodeCommand(text)
        except ProtocolError:
            pass


class ChanWsCommandTests(SynchronousTestCase):
    """
    L{chanws.decodeCommand} reads every command L{chanws.encodeCommand}
    builds, in both control formats, as Asterisk would.
    """

    def test_roundTrip(self) -> None:
        for fmt in chanws.ControlFormat:
            for command in chanws.Command:
                self.assertEqual(
                    chanws.decodeCommand(chanws.encodeCommand(command, fmt)),
                    chanws.CommandMessage(command),
                )
            for command in chanws.CORRELATED:
                self.assertEqual(
                    chanws.decodeCommand(chanws.encodeCommand(command, fmt, "m-1.2")),
                    chanws.CommandMessage(command, "m-1.2"),
                )

    def test_setMediaDirection(self) -> None:
        self.assertEqual(
            chanws.decodeCommand(chanws.encodeSetMediaDirection("in")),
            chanws.SetMediaDirection("in"),
        )
        error = self.assertRaises(
            chanws.ChanWsError, chanws.decodeCommand, "SET_MEDIA_DIRECTION in"
        )
        self.assertEqual(error.code, chanws.UNSUPPORTED)
        error = self.assertRaises(
            chanws.ChanWsError,
            chanws.decodeCommand,
            '{"command":"SET_MEDIA_DIRECTION","direction":"up"}',
        )
        self.assertEqual(error.code, chanws.BAD_VALUE)

    def test_correlationIdIgnoredWhereNotTaken(self) -> None:
        self.assertEqual(
            chanws.decodeCommand("FLUSH_MEDIA x"), chanws.CommandMessage(chanws.Command.FLUSH_MEDIA)
        )

    def test_unknown(self) -> None:
        self.assertEqual(
            chanws.decodeCommand("FROB now"), chanws.UnknownCommand("FROB", "FROB now")
        )
        self.assertEqual(
            chanws.decodeCommand('{"command":"FROB"}'),
            chanws.UnknownCommand("FROB", '{"command":"FROB"}'),
        )

    def test_errors(self) -> None:
        cases = {
            "MARK_MEDIA " + "x" * 130: chanws.TOO_LARGE,
            "mark_media": chanws.GARBAGE,
            "": chanws.GARBAGE,
            "{": chanws.GARBAGE,
            '{"command":1}': chanws.GARBAGE,
            '["MARK_MEDIA"]': chanws.GARBAGE,
            "MARK_MEDIA a/b": chanws.BAD_VALUE,
            '{"command":"MARK_MEDIA","correlation_id":5}': chanws.BAD_VALUE,
        }
        for text, code in cases.items():
            error = self.assertRaises(chanws.ChanWsError, chanws.decodeCommand, text)
            self.assertEqual(error.code, code, text)
        error = self.assertRaises(chanws.ChanWsError, chanws.decodeCommand, b"\xff\xfe")
        self.assertEqual(error.code, chanws.GARBAGE)

    @settings(max_examples=200, deadline=None)
    @given(st.one_of(st.text(max_size=140), st.binary(max_size=140)))
    def test_fuzz(self, text: str | bytes) -> None:
        try:
            chanws.decodeCommand(text)
        except chanws.ChanWsError:
            pass


# ---------------------------------------------------------------------------
# The simulator
# ---------------------------------------------------------------------------


def pcm(samples: Iterable[int] | np.ndarray) -> bytes:
    return np.asarray(samples, np.int16).tobytes()


def prepared(codec: str = "ulaw", rate: int = 8000, seconds: float = 0.1, seed: int = 1):
    fmt = wireFormat(codec, rate)
    return PreparedAudio(fmt, speechLike(seconds, rate, seed=seed, level=0.5))


class FakeChannel:
    """
    A L{Channel} that records what a stream sends.
    """

    def __init__(self) -> None:
        self.messages: list[tuple[str, Any]] = []
        self.closedWith: tuple[int, str] | None = None

    def sendText(self, text: str) -> None:
        self.messages.append(("text", text))

    def sendBinary(self, data: bytes) -> None:
        self.messages.append(("binary", data))

    def close(self, code: int = 1000, reason: str = "") -> None:
        if self.closedWith is None:
            self.closedWith = (code, reason)

    def texts(self) -> list[str]:
        return [data for kind, data in self.messages if kind == "text"]

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(t) for t in self.texts()]

    def binaries(self) -> list[bytes]:
        return [data for kind, data in self.messages if kind == "binary"]

    def clear(self) -> None:
        self.messages.clear()


class AudioTests(SynchronousTestCase):
    """
    Wire formats, WAV files and prepared audio.
    """

    def test_wireFormats(self) -> None:
        ulaw = wireFormat("ulaw", 8000)
        self.assertEqual(
            (ulaw.frameBytes, ulaw.frameSamples, ulaw.bytesPerSecond), (160, 160, 8000)
        )
        self.assertEqual(ulaw.silence, b"\xff" * 160)
        slin16 = wireFormat("slin", 16000)
        self.assertEqual(
            (slin16.codec, slin16.frameBytes, slin16.silence), ("pcm16", 640, bytes(640))
        )
        self.assertEqual(wireFormat("alaw", 8000).silence, b"\xd5" * 160)
        for codec, rate in (("opus", 8000), ("ulaw", 0), ("pcm16", 8001)):
            self.assertRaises(ValueError, wireFormat, codec, rate)

    def test_encodeDecode(self) -> None:
        samples = pcm([0, 1000, -1000, 32767, -32768])
        ulaw = wireFormat("ulaw", 8000)
        self.assertEqual(ulaw.encode(samples), ULAW.encode(samples))
        self.assertEqual(
            ulaw.decode(ulaw.encode(samples)).tobytes(), ULAW.decode(ULAW.encode(samples))
        )
        linear = wireFormat("pcm16", 16000)
        self.assertEqual(linear.encode(samples), samples)
        self.assertEqual(linear.decode(samples + b"\x01").tobytes(), samples)

    def test_prepared(self) -> None:
        fmt = wireFormat("ulaw", 8000)
        signal = speechLike(0.05, 8000, seed=3, level=0.5)  # 2.5 frames
        audio = PreparedAudio(fmt, signal)
        self.assertEqual(len(audio), 3)
        self.assertEqual([len(f) for f in audio.frames], [160, 160, 160])
        self.assertEqual(audio.frames[2][80:], b"\xff" * 80)  # padded with silence
        self.assertEqual(len(audio.reference), 480)
        self.assertEqual(audio.base64[0], base64.b64encode(audio.frames[0]).decode())
        self.assertEqual(base64.b64decode(audio.silence64), fmt.silence)
        self.assertAlmostEqual(audio.seconds, 0.06)
        quiet = PreparedAudio(fmt, bytes(320) + pcm([3000, -3000] * 80))
        self.assertEqual(list(quiet.active), [False, True])

    def test_wavRoundTrip(self) -> None:
        path = self.mktemp()
        signal = speechLike(0.2, 11025, seed=2)
        writeWav(path, signal, 11025)
        self.assertEqual(readWav(path), (signal, 11025))

    def test_wavStereoMixedDown(self) -> None:
        path = self.mktemp()
        with wave.open(path, "wb") as f:
            f.setnchannels(2)
            f.setsampwidth(2)
            f.setframerate(8000)
            f.writeframes(pcm([100, 300, -100, -301]))
        self.assertEqual(readWav(path), (pcm([200, -200]), 8000))

    def test_wavRefused(self) -> None:
        path = self.mktemp()
        with wave.open(path, "wb") as f:
            f.setnchannels(1)
            f.setsampwidth(1)
            f.setframerate(8000)
            f.writeframes(b"\x80" * 100)
        self.assertRaises(WavFormatError, readWav, path)
        junk = self.mktemp()
        with open(junk, "wb") as f:
            f.write(b"not a wav file at all")
        self.assertRaises(WavFormatError, readWav, junk)
        self.assertRaises(OSError, readWav, self.mktemp())

    def test_audioSource(self) -> None:
        path = self.mktemp()
        writeWav(path, tone(440, 0.25, 44100), 44100)
        ulaw, slin16 = wireFormat("ulaw", 8000), wireFormat("pcm16", 16000)
        source = AudioSource(path)
        audio = source.prepared(ulaw)
        self.assertIs(source.prepared(ulaw), audio)  # once per format
        self.assertEqual(len(audio), 13)  # 0.25 s, the last frame padded
        self.assertEqual(len(source.prepared(slin16)), 13)
        looped = AudioSource(path, seconds=1.0).prepared(slin16)
        self.assertEqual(len(looped), 50)
        generated = AudioSource(seed=4)
        self.assertEqual(len(generated.prepared(ulaw)), 250)  # the default 5 s
        self.assertEqual(
            AudioSource(seconds=0.5, seed=4).prepared(slin16).frames[0],
            speechLike(0.5, 16000, seed=4)[:640],
        )
        fixed = AudioSource(fixed=audio)
        self.assertIs(fixed.prepared(ulaw), audio)
        self.assertRaises(ValueError, fixed.prepared, slin16)
        self.assertRaises(WavFormatError, AudioSource, __file__)

    def test_resampleAndLoop(self) -> None:
        self.assertEqual(len(resample(bytes(2 * 44100), 44100, 8000)), 2 * 8000)
        data = pcm([1, 2, 3])
        self.assertIs(resample(data, 8000, 8000), data)
        self.assertEqual(loopTo(data, 14), pcm([1, 2, 3, 1, 2, 3, 1]))
        self.assertEqual(loopTo(b"", 4), bytes(4))


class PlayoutTests(SynchronousTestCase):
    """
    The simulated provider playback buffer and the heard timeline.
    """

    def setUp(self) -> None:
        self.fmt = wireFormat("pcm16", 8000)
        self.recorder = Recorder(self.fmt)
        self.recorder.sent(10.0)
        self.playout: Playout[str] = Playout(self.recorder)
        self.frame = pcm([1000] * 160)

    def test_audioPlaysInOrderAtRealTime(self) -> None:
        self.playout.audio(10.0, self.frame)
        self.playout.audio(10.001, self.frame)  # a burst queues
        self.assertAlmostEqual(self.playout.end, 10.04)
        self.assertEqual(self.playout.underruns, 0)
        self.playout.audio(10.1, self.frame)  # a gap plays silence
        self.assertEqual(self.playout.underruns, 1)
        heard = np.frombuffer(self.recorder.heard(), np.int16)
        self.assertEqual(len(heard), 800 + 160)
        self.assertTrue((heard[:320] == 1000).all())
        self.assertTrue((heard[320:800] == 0).all())
        self.assertEqual(list(self.recorder.arrivals), [10.0, 10.001, 10.1])

    def test_markDueWhenPlayed(self) -> None:
        self.assertTrue(self.playout.mark(10.0, "now"))  # nothing queued
        self.playout.audio(10.0, self.frame * 3)
        self.assertFalse(self.playout.mark(10.01, "m1"))
        self.assertFalse(self.playout.mark(10.02, "m2"))
        self.assertEqual(self.playout.due(10.059), [])
        self.assertEqual(self.playout.due(10.06), ["m1", "m2"])
        self.assertEqual(self.playout.pendingMarks, 0)

    def test_clear(self) -> None:
        self.playout.audio(10.0, self.frame * 5)  # plays 10.00-10.10
        self.playout.mark(10.0, "m1")
        self.playout.audio(10.0, self.frame)
        self.assertEqual(self.playout.clear(10.03), ["m1"])
        self.assertEqual(len(self.recorder.heard()), 2 * 240)  # 30 ms were heard
        self.assertEqual(self.playout.end, 10.03)
        self.assertTrue(self.playout.mark(10.03, "m2"))

    def test_jitterBuffer(self) -> None:
        """
        With C{delay}, playback starts that late so a late frame still
        plays in turn; with C{maxAhead}, audio beyond that much queued
        plays at once, over what was playing (a burst on an AudioSocket
        call).
        """
        playout: Playout[None] = Playout(self.recorder, delay=0.02, maxAhead=0.04)
        playout.audio(10.0, self.frame)  # plays 10.02-10.04
        playout.audio(10.03, pcm([-5] * 160))  # 10 ms late, still in turn
        self.assertAlmostEqual(playout.end, 10.06)
        playout.audio(10.03, pcm([7] * 160))  # 30 ms ahead: queued
        playout.audio(10.03, pcm([9] * 160))  # 50 ms ahead: plays now
        heard = np.frombuffer(self.recorder.heard(), np.int16)
        self.assertEqual(len(heard), 160 * 4)
        self.assertEqual((heard[0], heard[160], heard[320], heard[480]), (0, 1000, 9, 7))

    def test_heardResampled(self) -> None:
        self.playout.audio(10.0, self.frame)
        self.assertEqual(len(self.recorder.heard(16000)), 640)

    def test_sentSkipped(self) -> None:
        recorder = Recorder(self.fmt)
        recorder.sent(1.0)
        recorder.sent(1.1, 3)
        times = list(recorder.sendTimes)
        self.assertEqual(times[0], 1.0)
        self.assertTrue(math.isnan(times[1]) and math.isnan(times[2]))
        self.assertEqual((times[3], recorder.origin), (1.1, 1.0))


def echoPath(
    audio: PreparedAudio,
    sendTimes: np.ndarray,
    delay: float = 0.003,
    insertAt: int | None = None,
    dropAt: int | None = None,
    chunk: int = 1,
    dropInputAt: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """
    What an echo gateway sends back: decoded, resampled 8k→16k→8k and
    re-encoded; optionally a silence frame inserted, an output frame
    dropped, or an input frame dropped before processing; C{chunk} frames
    per message. Returns the received samples and the arrival time of
    each 20 ms block.
    """
    law = audio.format.law
    assert law is not None
    up, down = Resampler(8000, 16000), Resampler(16000, 8000)
    payloads, arrivals, extra = [], [], 0.0
    for i, frame in enumerate(audio.frames):
        if i == dropInputAt:
            continue
        back = law.encode(down.process(up.process(law.decode(frame))))
        if i == insertAt:
            payloads.append(audio.format.silence)
            arrivals.append(sendTimes[i] + delay)
            extra += 0.020
        if i == dropAt:
            continue
        payloads.append(back)
        arrivals.append(sendTimes[i] + delay + extra)
    if chunk > 1:
        payloads = [b"".join(payloads[i : i + chunk]) for i in range(0, len(payloads), chunk)]
        arrivals = [
            arrivals[min(i + chunk, len(arrivals)) - 1] for i in range(0, len(arrivals), chunk)
        ]
    received = np.concatenate([audio.format.decode(p) for p in payloads])
    sizes = np.array([len(p) for p in payloads], np.int64)
    return received, blockArrivals(arrivals, sizes, 160)


class EchoMatchTests(SynchronousTestCase):
    """
    Matching an echo to what was sent, by content.
    """

    def setUp(self) -> None:
        self.audio = prepared(seconds=3.0, seed=5)
        self.times = 50.0 + np.arange(len(self.audio)) * 0.020

    def match(self, **kw: Any) -> Any:
        received, arrivals = echoPath(self.audio, self.times, **kw)
        return matchEcho(
            self.audio.reference, self.times, self.audio.active, received, arrivals, 160
        )

    def test_clean(self) -> None:
        m = self.match()
        self.assertEqual((m.lost, m.segments), (0, 1))
        self.assertEqual(m.echoed, int(self.audio.active.sum()))
        self.assertGreater(m.expected, 100)
        self.assertEqual(m.lag, 49)  # the resamplers' delay, 49.5 samples
        self.assertTrue(np.allclose(m.latencies, 0.003))
        self.assertEqual(m.matched, m.blocks)

    def test_insertedSilence(self) -> None:
        """
        A frame of silence inserted by the gateway delays the rest of the
        echo by 20 ms; nothing is lost.
        """
        m = self.match(insertAt=60)
        self.assertEqual((m.lost, m.segments), (0, 2))
        self.assertEqual(sorted(set(np.round(m.latencies, 6))), [0.003, 0.023])

    def steady(self) -> int:
        """
        A frame in the middle of a loud stretch (its neighbours as loud).
        """
        blocks = self.audio.reference.reshape(-1, 160).astype(np.float64)
        rms = np.sqrt((blocks * blocks).mean(axis=1))
        for i in range(len(rms) // 2, len(rms) - 2):
            if min(rms[i - 1 : i + 2]) > 0.7 * max(rms[i - 1 : i + 2]) > 1000:
                return i
        raise AssertionError("no steady stretch")

    def test_droppedFrame(self) -> None:
        """
        A frame the gateway dropped is lost; the frames around it are not.
        """
        m = self.match(dropAt=self.steady())
        self.assertEqual(m.lost, 1)
        self.assertTrue(np.allclose(m.latencies, 0.003))

    def test_droppedInputFrame(self) -> None:
        """
        Caller audio dropped before processing: exactly that frame is lost,
        even where its neighbours are quiet.
        """
        active = np.flatnonzero(self.audio.active)
        for dropped in (self.steady(), int(active[0]), int(active[-1])):
            m = self.match(dropInputAt=dropped)
            self.assertEqual(list(m.missing), [dropped])
        self.assertEqual(self.match(dropInputAt=self.steady()).segments, 2)

    def test_chunked(self) -> None:
        """
        Echo in 100 ms messages: latency includes the wait for the chunk.
        """
        m = self.match(chunk=5)
        self.assertEqual(m.lost, 0)
        self.assertAlmostEqual(float(m.latencies.max()), 0.083, places=6)
        self.assertAlmostEqual(float(m.latencies.min()), 0.003, places=6)

    def test_nothingCameBack(self) -> None:
        m = matchEcho(
            self.audio.reference,
            self.times,
            self.audio.active,
            np.zeros(0, np.int16),
            np.zeros(0),
            160,
        )
        self.assertEqual((m.echoed, m.lost, len(m.latencies)), (0, m.expected, 0))
        silence = np.zeros(160 * 20, np.int16)
        m = matchEcho(
            self.audio.reference, self.times, self.audio.active, silence, np.zeros(20), 160
        )
        self.assertEqual((m.blocks, m.lost), (0, m.expected))

    def test_somethingElseCameBack(self) -> None:
        other = prepared(seconds=3.0, seed=99)
        received, arrivals = echoPath(other, self.times)
        m = matchEcho(self.audio.reference, self.times, self.audio.active, received, arrivals, 160)
        self.assertEqual(m.echoed, 0)
        self.assertLess(m.matched, 3)

    def test_windowedCorrelation(self) -> None:
        """
        A 20 ms gap in the middle halves the whole-call correlation but
        costs one window little; other audio scores low either way.
        """
        x = np.frombuffer(speechLike(4.0, 8000, seed=6), np.int16).astype(np.float64)
        y = np.concatenate([np.zeros(40), x[:20000], np.zeros(160), x[20000:]])
        whole, _ = echoCorrelation(x, y, 4000)
        windowed, lag = echoCorrelation(x, y, 4000, window=2000)
        self.assertLess(whole, 0.8)
        self.assertGreater(windowed, 0.95)
        self.assertEqual(lag, 40)
        other = np.frombuffer(speechLike(4.0, 8000, seed=7), np.int16).astype(np.float64)
        self.assertLess(echoCorrelation(x, other, 4000, window=2000)[0], 0.5)
        self.assertEqual(echoCorrelation(x, np.zeros(0), 10), (0.0, 0.0))

    def test_correlationAllowsSubSampleDelay(self) -> None:
        x = np.frombuffer(speechLike(1.0, 8000, seed=2), np.int16).astype(np.float64)
        y = delayed(x, 0.5)
        score, lag = echoCorrelation(x, y, 100)
        self.assertGreater(score, 0.999)
        self.assertEqual(lag, 0.5)
        self.assertLess(correlation(x, y, 100)[0], score)
        self.assertIs(delayed(x, 0.0), x)


class StatsTests(SynchronousTestCase):
    """
    Inter-arrival jitter, block arrival times and percentiles.
    """

    def test_interArrival(self) -> None:
        gaps, jitter = interArrival([1.0, 1.02, 1.05, 1.05], np.array([160, 160, 320, 160]), 8000)
        self.assertTrue(np.allclose(gaps, [0.02, 0.03, 0.0]))
        self.assertTrue(np.allclose(jitter, [0.0, 0.01, 0.04]))
        self.assertEqual(len(interArrival([1.0], np.array([160]), 8000)[0]), 0)

    def test_blockArrivals(self) -> None:
        arrivals = blockArrivals([1.0, 2.0, 3.0], np.array([80, 240, 160]), 160)
        self.assertEqual(list(arrivals), [2.0, 2.0, 3.0])

    def test_percentiles(self) -> None:
        values = np.arange(101, dtype=np.float64) / 1000
        p = percentiles(values)
        self.assertEqual((p.count, p.p50, p.max), (101, 0.05, 0.1))
        self.assertAlmostEqual(p.p99 or 0, 0.099)
        self.assertEqual(p.asDict(1000), {"count": 101, "p50": 50.0, "p99": 99.0, "max": 100.0})
        joined = percentiles([np.array([1.0]), np.array([3.0, math.nan])])
        self.assertEqual((joined.count, joined.p50), (2, 2.0))
        empty = percentiles([])
        self.assertEqual(empty.asDict(), {"count": 0, "p50": None, "p99": None, "max": None})


class TickerTests(SynchronousTestCase):
    """
    The shared, slotted 20 ms ticker and each call's frame clock.
    """

    def test_spreadOverSlots(self) -> None:
        clock = Clock()
        ticker = Ticker(clock, slots=4)
        fired: list[tuple[str, float]] = []

        def member(name: str) -> Callable[[float], None]:
            return lambda now: fired.append((name, now))

        handles = [ticker.add(member(n)) for n in "abcde"]
        self.assertEqual(ticker.members, 5)
        self.assertEqual(len(clock.getDelayedCalls()), 1)  # one timer for all
        for _ in range(8):
            clock.advance(0.005)
        times: dict[str, list[float]] = {}
        for name, now in fired:
            times.setdefault(name, []).append(round(now, 6))
        self.assertEqual(times["a"], [0.005, 0.025])
        self.assertEqual(times["b"], [0.01, 0.03])
        self.assertEqual(times["e"], times["a"])  # the fifth shares the first slot
        for handle in handles:
            ticker.remove(handle)
        self.assertEqual(clock.getDelayedCalls(), [])
        ticker.remove(handles[0])  # no-op

    def test_removeInsideTick(self) -> None:
        clock = Clock()
        ticker = Ticker(clock, slots=1)
        calls: list[str] = []
        handles: list[int] = []

        def first(now: float) -> None:
            calls.append("first")
            ticker.remove(handles[1])

        handles.append(ticker.add(first))
        handles.append(ticker.add(lambda now: calls.append("second")))
        clock.advance(0.02)
        clock.advance(0.02)
        self.assertEqual(calls, ["first", "second", "first"])

    def test_frameClock(self) -> None:
        frames = FrameClock(maxBurst=5)
        self.assertEqual(frames.owed(10.0), 1)
        frames.take()
        self.assertEqual(frames.owed(10.019), 0)
        self.assertEqual(frames.owed(10.02), 1)
        frames.take()
        self.assertEqual(frames.owed(10.081), 3)  # late: catch up
        for _ in range(3):
            frames.take()
        self.assertEqual(frames.owed(10.3), 1)  # a long stall: skip, don't burst
        self.assertEqual((frames.skipped, frames.take()), (10, 15))
        self.assertRaises(ValueError, Ticker, Clock(), slots=0)


class StreamTestCase(SynchronousTestCase):
    """
    Base of the per-transport stream tests: a clock, a ticker, a fake
    channel, and 100 ms of audio plus 40 ms of silence.
    """

    PLAN = CallPlan(dtmf="1#", dtmfAt=0.04, dtmfInterval=0.02, linger=0.04)

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.ticker = Ticker(self.clock, slots=1)
        self.channel = FakeChannel()

    def advance(self, stream: MediaStream, seconds: float) -> None:
        """
        Advance the clock in 20 ms steps, each a hair long so float
        rounding never leaves a tick for the next step.
        """
        for _ in range(round(seconds / 0.020)):
            self.clock.advance(0.020 + 1e-7)

    def assertEndsCleanly(self, stream: MediaStream) -> None:
        self.assertEqual(self.channel.closedWith, (1000, ""))
        self.assertNoResult(stream.done)
        stream.closed(1000, "")
        self.successResultOf(stream.done)
        self.assertEqual((stream.failure, stream.endedBy), (None, "caller"))
        self.assertEqual(self.ticker.members, 0)


class TwilioStreamTests(StreamTestCase):
    def stream(self, audio: PreparedAudio | None = None) -> TwilioStream:
        stream = TwilioStream(
            self.clock,
            self.ticker,
            audio or prepared(),
            self.PLAN,
            {"token": "t0k"},
            callSid=CALL,
            accountSid=ACCOUNT,
            streamSid=SID,
        )
        stream.opened(self.channel)
        return stream

    def test_sequence(self) -> None:
        """
        connected, start, a media message per 20 ms (counters as Twilio
        sets them), the digits at their times, stop after the linger, close.
        """
        stream = self.stream()
        connected, start = self.channel.events()
        self.assertEqual(connected["event"], "connected")
        self.assertEqual(start["start"]["customParameters"], {"token": "t0k"})
        self.assertEqual((start["streamSid"], start["start"]["callSid"]), (SID, CALL))
        self.channel.clear()
        self.advance(stream, 0.02)
        (media,) = self.channel.events()
        self.assertEqual(
            (media["sequenceNumber"], media["media"]["chunk"], media["media"]["timestamp"]),
            ("2", "1", "0"),
        )
        self.assertEqual(base64.b64decode(media["media"]["payload"]), stream.audio.frames[0])
        self.channel.clear()
        self.advance(stream, 0.14)
        events = self.channel.events()
        self.assertEqual(
            [e["event"] for e in events],
            ["media", "media", "dtmf", "media", "dtmf"] + ["media"] * 3 + ["stop"],
        )
        self.assertEqual([e["dtmf"]["digit"] for e in events if e["event"] == "dtmf"], ["1", "#"])
        self.assertEqual(base64.b64decode(events[-2]["media"]["payload"]), b"\xff" * 160)
        self.assertEqual(events[-1]["stop"], {"accountSid": ACCOUNT, "callSid": CALL})
        sequence = [int(e["sequenceNumber"]) for e in events]
        self.assertEqual(sequence, list(range(3, 3 + len(events))))
        self.assertEqual(len(stream.recorder.sendTimes), 7)
        self.assertEqual(stream.counters["dtmf"], 2)
        self.assertEndsCleanly(stream)

    def test_realTime(self) -> None:
        """
        Frames go out one per 20 ms of the clock, drift-free: a late tick
        sends every frame owed.
        """
        stream = self.stream(prepared(seconds=1.0))
        self.clock.advance(0.020)
        self.assertEqual(len(stream.recorder.sendTimes), 1)
        self.clock.advance(0.065)  # late: three frames owed at once
        self.assertEqual(len(stream.recorder.sendTimes), 4)
        self.clock.advance(0.015)
        times = stream.recorder.sendTimes
        self.assertEqual(len(times), 5)
        self.assertAlmostEqual(times[4] - times[0], 0.080)

    def test_markEchoedWhenPlayed(self) -> None:
        stream = self.stream()
        self.advance(stream, 0.02)
        frame = bytes(range(160))
        for _ in range(3):
            stream.messageReceived(twilio.encodeMedia(SID, frame).encode(), False)
        stream.messageReceived(twilio.encodeMark(SID, "utt-1").encode(), False)
        self.channel.clear()
        self.advance(stream, 0.04)
        self.assertNotIn("mark", [e["event"] for e in self.channel.events()])
        self.advance(stream, 0.02)
        marks = [e for e in self.channel.events() if e["event"] == "mark"]
        self.assertEqual([m["mark"]["name"] for m in marks], ["utt-1"])
        self.assertIn("sequenceNumber", marks[0])
        self.assertEqual(stream.counters["marks"], 1)
        self.assertEqual(stream.recorder.receivedBytes, 480)

    def test_markWithNothingQueued(self) -> None:
        stream = self.stream()
        stream.messageReceived(twilio.encodeMark(SID, "m").encode(), False)
        self.assertEqual(self.channel.events()[-1]["mark"]["name"], "m")

    def test_clearEchoesPendingMarks(self) -> None:
        stream = self.stream()
        self.advance(stream, 0.02)
        stream.messageReceived(twilio.encodeMedia(SID, b"\x00" * 1600).encode(), False)
        stream.messageReceived(twilio.encodeMark(SID, "a").encode(), False)
        self.channel.clear()
        stream.messageReceived(twilio.encodeClear(SID).encode(), False)
        self.assertEqual([e["mark"]["name"] for e in self.channel.events()], ["a"])
        self.assertEqual(stream.counters["clears"], 1)
        self.assertEqual(stream.recorder.heard(), b"")  # cleared before it played

    def test_badMessages(self) -> None:
        stream = self.stream()
        stream.messageReceived(b"{not json", False)
        self.assertEqual(stream.counters["bad"], 1)
        self.assertIn("bad message from the gateway", stream.failure or "")
        stream.messageReceived(b"\x00\x01", True)
        stream.messageReceived(b'{"event":"surprise"}', False)
        self.assertEqual((stream.counters["bad"], stream.counters["unknown"]), (2, 1))

    def test_gatewayClosesFirst(self) -> None:
        stream = self.stream()
        self.advance(stream, 0.04)
        stream.closed(4403, "token does not match")
        self.successResultOf(stream.done)
        self.assertEqual(stream.endedBy, "gateway")
        self.assertEqual(
            stream.failure, "gateway ended the call early (code 4403: token does not match)"
        )
        self.assertEqual((stream.closeCode, self.ticker.members), (4403, 0))
        sent = len(stream.recorder.sendTimes)
        self.advance(stream, 0.1)
        self.assertEqual(len(stream.recorder.sendTimes), sent)

    def test_ignoresMessagesAfterHangup(self) -> None:
        stream = self.stream()
        self.advance(stream, 0.2)
        stream.messageReceived(b"garbage", False)
        self.assertEqual(stream.counters["bad"], 0)


class VonageStreamTests(StreamTestCase):
    def stream(self) -> VonageStream:
        stream = VonageStream(
            self.clock,
            self.ticker,
            prepared("pcm16", 16000),
            self.PLAN,
            "audio/l16;rate=16000",
            {"token": "t", "context_id": "c"},
        )
        stream.opened(self.channel)
        return stream

    def test_sequence(self) -> None:
        stream = self.stream()
        self.assertEqual(
            json.loads(self.channel.texts()[0]),
            {
                "event": "websocket:connected",
                "content-type": "audio/l16;rate=16000",
                "token": "t",
                "context_id": "c",
            },
        )
        self.advance(stream, 0.2)
        kinds = [kind for kind, _ in self.channel.messages[1:]]
        self.assertEqual(kinds, ["binary"] * 3 + ["text", "binary", "text"] + ["binary"] * 3)
        self.assertEqual({len(b) for b in self.channel.binaries()}, {640})
        digits = [json.loads(t) for t in self.channel.texts()[1:]]
        self.assertEqual(
            digits,
            [
                {"event": "websocket:dtmf", "digit": "1", "duration": 250},
                {"event": "websocket:dtmf", "digit": "#", "duration": 250},
            ],
        )
        self.assertEndsCleanly(stream)

    def test_notifyAndClear(self) -> None:
        stream = self.stream()
        self.advance(stream, 0.02)
        stream.messageReceived(bytes(640), True)
        stream.messageReceived(vonage.encodeNotify({"id": 1}).encode(), False)
        stream.messageReceived(bytes(640), True)
        stream.messageReceived(vonage.encodeNotify({"id": 2}).encode(), False)
        self.channel.clear()
        self.advance(stream, 0.02)
        self.assertEqual(
            self.channel.events(), [{"event": "websocket:notify", "payload": {"id": 1}}]
        )
        stream.messageReceived(bytes(640 * 5), True)  # wrong size, but played
        stream.messageReceived(vonage.encodeNotify({"id": 3}).encode(), False)
        self.channel.clear()
        stream.messageReceived(vonage.encodeClear().encode(), False)
        self.assertEqual(
            [e["event"] for e in self.channel.events()],
            ["websocket:notify", "websocket:notify", "websocket:cleared"],
        )
        self.assertIn("exactly 20 ms (640 bytes)", stream.failure or "")

    def test_badInput(self) -> None:
        stream = self.stream()
        stream.messageReceived(b"\x00" * 3, True)
        stream.messageReceived(b'{"event":"x"}', False)
        stream.messageReceived(b'{"action":"mute"}', False)
        self.assertEqual((stream.counters["bad"], stream.counters["unknown"]), (2, 1))


class ExotelStreamTests(StreamTestCase):
    def stream(self, chunkFrames: int = 1) -> ExotelStream:
        stream = ExotelStream(
            self.clock,
            self.ticker,
            prepared("pcm16", 8000),
            self.PLAN,
            {"token": "t"},
            "+9100",
            "+9111",
            chunkFrames,
        )
        stream.opened(self.channel)
        return stream

    def test_sequence(self) -> None:
        stream = self.stream()
        connected, start = self.channel.events()
        self.assertEqual(connected, {"event": "connected"})
        self.assertEqual(start["start"]["custom_parameters"], {"token": "t"})
        self.assertEqual(
            start["start"]["media_format"],
            {"encoding": "audio/x-raw", "sample_rate": "8000", "bit_rate": "16"},
        )
        self.advance(stream, 0.2)
        events = self.channel.events()[2:]
        self.assertEqual(
            [e["event"] for e in events],
            ["media"] * 3 + ["dtmf", "media", "dtmf"] + ["media"] * 3 + ["stop"],
        )
        media = [e for e in events if e["event"] == "media"]
        self.assertEqual([m["media"]["chunk"] for m in media], [str(i) for i in range(1, 8)])
        self.assertEqual({len(base64.b64decode(m["media"]["payload"])) for m in media}, {320})
        self.assertEqual(events[-1]["stop"]["reason"], "callended")
        self.assertEndsCleanly(stream)

    def test_hundredMillisecondChunks(self) -> None:
        stream = self.stream(chunkFrames=5)
        self.channel.clear()
        self.advance(stream, 0.08)
        self.assertEqual([e["event"] for e in self.channel.events()], ["dtmf", "dtmf"])
        self.advance(stream, 0.02)
        (media,) = [e for e in self.channel.events() if e["event"] == "media"]
        self.assertEqual(len(base64.b64decode(media["media"]["payload"])), 1600)
        self.assertEqual((media["media"]["chunk"], media["media"]["timestamp"]), ("1", "0"))
        self.advance(stream, 0.1)
        chunks = [e for e in self.channel.events() if e["event"] == "media"]
        self.assertEqual(
            [len(base64.b64decode(m["media"]["payload"])) for m in chunks], [1600, 640]
        )
        self.assertEqual(self.channel.events()[-1]["event"], "stop")

    def test_marksAndClear(self) -> None:
        stream = self.stream()
        self.advance(stream, 0.02)
        stream.messageReceived(exotel.encodeMedia(SID, bytes(320)).encode(), False)
        stream.messageReceived(exotel.encodeMark(SID, "m1").encode(), False)
        stream.messageReceived(exotel.encodeMedia(SID, bytes(100)).encode(), False)
        stream.messageReceived(exotel.encodeMark(SID, "m2").encode(), False)
        self.channel.clear()
        self.advance(stream, 0.02)
        self.assertEqual(
            [e["mark"]["name"] for e in self.channel.events() if e["event"] == "mark"], ["m1"]
        )
        stream.messageReceived(exotel.encodeClear(SID).encode(), False)
        marks = [e for e in self.channel.events() if e["event"] == "mark"]
        self.assertEqual([m["mark"]["name"] for m in marks], ["m1", "m2"])
        self.assertEqual((stream.counters["clears"], stream.counters["offChunkRule"]), (1, 1))
        stream.messageReceived(b"[]", False)
        stream.messageReceived(b"x", True)
        self.assertEqual(stream.counters["bad"], 2)


class AudioSocketStreamTests(StreamTestCase):
    UUID = UUID("12345678-1234-4678-9234-567812345678")

    def stream(self, plan: CallPlan | None = None) -> AudioSocketStream:
        stream = AudioSocketStream(
            self.clock, self.ticker, prepared("pcm16", 8000), plan or self.PLAN, self.UUID
        )
        stream.opened(self.channel)
        return stream

    def frames(self) -> list[Any]:
        return audiosocket.decodeFrames(b"".join(self.channel.binaries()))

    def test_sequence(self) -> None:
        """
        The UUID first, one 320-byte slin frame per 20 ms, DTMF as 0x03,
        then a plain close: exactly what Asterisk sends.
        """
        stream = self.stream()
        self.assertEqual(self.channel.binaries(), [b"\x01\x00\x10" + self.UUID.bytes])
        self.advance(stream, 0.02)
        self.assertEqual(self.channel.binaries()[1][:3], b"\x10\x01\x40")
        self.advance(stream, 0.18)
        frames = self.frames()
        self.assertEqual(frames[0], audiosocket.Uuid(self.UUID))
        kinds = [type(f).__name__ for f in frames[1:]]
        self.assertEqual(kinds, ["Audio"] * 3 + ["Dtmf", "Audio", "Dtmf"] + ["Audio"] * 3)
        self.assertEqual([f.digit for f in frames if isinstance(f, audiosocket.Dtmf)], ["1", "#"])
        self.assertEqual({len(f.pcm) for f in frames if isinstance(f, audiosocket.Audio)}, {320})
        self.assertEqual(frames[-1], audiosocket.Audio(bytes(320), 8000))
        self.assertEndsCleanly(stream)

    def test_hangupFrame(self) -> None:
        stream = self.stream(CallPlan(linger=0))
        self.advance(stream, 0.12)
        self.assertEqual(self.frames()[-1], audiosocket.Audio(stream.audio.frames[-1], 8000))
        stream = AudioSocketStream(
            self.clock,
            self.ticker,
            prepared("pcm16", 8000),
            CallPlan(linger=0, hangupFrame=True),
            self.UUID,
        )
        channel = FakeChannel()
        stream.opened(channel)
        self.advance(stream, 0.12)
        self.assertEqual(channel.binaries()[-1], b"\x00\x00\x00")

    def test_gatewayAudio(self) -> None:
        """
        Gateway audio in any TCP split is played through a phone-like
        40 ms jitter buffer.
        """
        stream = self.stream()
        self.advance(stream, 0.02)
        frame = audiosocket.encodeAudio(pcm([7] * 160), 8000)
        stream.messageReceived(frame[:100], True)
        stream.messageReceived(frame[100:] + frame, True)
        self.assertEqual(stream.recorder.receivedBytes, 640)
        heard = np.frombuffer(stream.recorder.heard(), np.int16)
        self.assertEqual(len(heard), 320 + 320)  # 40 ms late, then both in turn
        self.assertTrue((heard[320:] == 7).all())

    def test_gatewayHangsUp(self) -> None:
        stream = self.stream()
        self.advance(stream, 0.02)
        stream.messageReceived(audiosocket.encodeHangup(), True)
        self.assertEqual(stream.failure, "the gateway hung up (0x00)")
        self.assertEqual((stream.endedBy, self.channel.closedWith), ("gateway", (1000, "")))

    def test_forbiddenFrames(self) -> None:
        """
        What Asterisk refuses from the server ends the call.
        """
        cases = [
            audiosocket.encodeDtmf("1"),
            audiosocket.encodeError(1),
            audiosocket.encodeUuid(self.UUID),
            audiosocket.encodeFrame(0x10),
            audiosocket.encodeAudio(bytes(640), 16000),
            b"\x10\x00\x03abc",
        ]
        for data in cases:
            self.channel = FakeChannel()
            stream = self.stream()
            stream.messageReceived(data, True)
            self.assertEqual(stream.counters["bad"], 1, data)
            self.assertEqual(self.channel.closedWith, (1000, ""), data)
            self.assertNotIn(b"\x00\x00\x00", self.channel.binaries())


class AsteriskWsStreamTests(StreamTestCase):
    def stream(
        self, fmt: chanws.ControlFormat = chanws.ControlFormat.PLAIN, seconds: float = 0.1
    ) -> AsteriskWsStream:
        stream = AsteriskWsStream(
            self.clock,
            self.ticker,
            prepared("ulaw", 8000, seconds),
            self.PLAN,
            fmt,
            chanws.mediaFormat("ulaw"),
        )
        stream.opened(self.channel)
        return stream

    def events(self, dtmf: bool = False) -> list[chanws.Event]:
        """
        The control events sent (without the plan's DTMF unless asked).
        """
        events = [chanws.decodeEvent(t) for t in self.channel.texts()]
        return [e for e in events if dtmf or not isinstance(e, chanws.DtmfEnd)]

    def test_sequence(self) -> None:
        stream = self.stream()
        (start,) = self.events()
        assert isinstance(start, chanws.MediaStart)
        self.assertEqual(
            (start.connectionId, start.format, start.optimalFrameSize, start.ptime),
            ("rapida-sim", "ulaw", 160, 20),
        )
        self.assertEqual(start.channelId, stream.channelId)
        self.assertTrue(self.channel.texts()[0].startswith("MEDIA_START connection_id:rapida-sim "))
        self.advance(stream, 0.2)
        self.assertEqual(len(self.channel.binaries()), 7)
        self.assertEqual({len(b) for b in self.channel.binaries()}, {160})
        self.assertEqual(
            self.events(dtmf=True)[1:],
            [chanws.DtmfEnd("1", stream.channelId), chanws.DtmfEnd("#", stream.channelId)],
        )
        self.assertEndsCleanly(stream)

    def test_jsonControl(self) -> None:
        self.stream(chanws.ControlFormat.JSON)
        start = json.loads(self.channel.texts()[0])
        self.assertEqual((start["event"], start["channel_variables"]), ("MEDIA_START", {}))

    def test_queuePlaysOneFramePerTick(self) -> None:
        stream = self.stream(seconds=1.0)
        self.advance(stream, 0.02)
        stream.messageReceived(b"\x01" * 1000, True)  # 6 frames and 40 bytes dropped
        self.assertEqual((stream.queued, stream.counters["droppedBytes"]), (6, 40))
        self.advance(stream, 0.04)
        self.assertEqual(stream.queued, 4)
        # from the first frame sent: 20 ms of nothing, then two frames played
        self.assertEqual(len(stream.recorder.heard()), 3 * 320)
        self.advance(stream, 0.12)  # the queue runs dry: the gap is counted
        stream.messageReceived(b"\x01" * 160, True)
        self.advance(stream, 0.02)
        self.assertEqual(stream.underruns, 1)

    def test_bufferingAndMarks(self) -> None:
        stream = self.stream(seconds=1.0)
        self.advance(stream, 0.02)
        self.channel.clear()
        for text in ("START_MEDIA_BUFFERING", "MARK_MEDIA m0"):
            stream.messageReceived(text.encode(), False)
        stream.messageReceived(b"\x02" * 100, True)
        stream.messageReceived(b"\x02" * 100, True)  # 200: one frame, 40 kept
        self.assertEqual(stream.queued, 1)
        stream.messageReceived(b"STOP_MEDIA_BUFFERING b1", False)  # pads the 40
        stream.messageReceived(b"MARK_MEDIA m1", False)
        self.assertEqual(stream.queued, 2)
        self.advance(stream, 0.02)
        # plain-text completion events carry only the correlation id
        self.assertEqual(self.events(), [chanws.MediaMarkProcessed("m0")])
        self.advance(stream, 0.04)
        self.assertEqual(
            self.events()[1:],
            [chanws.MediaBufferingCompleted("b1"), chanws.MediaMarkProcessed("m1")],
        )
        heard = stream.recorder.heard()
        self.assertEqual(heard[-80:], ULAW.decode(b"\xff" * 40)[-80:])
        self.assertEqual(stream.counters["marks"], 2)

    def test_flowControl(self) -> None:
        """
        XOFF when the queue reaches 900 frames, XON below 800, nothing
        queued at 1000.
        """
        stream = self.stream(seconds=30.0)
        self.advance(stream, 0.02)
        for frames in (400, 400, 99):
            stream.messageReceived(b"\x03" * 160 * frames, True)
        self.assertEqual(self.events()[1:], [])
        stream.messageReceived(b"\x03" * 160, True)
        self.assertEqual(self.events()[1:], [chanws.MediaXoff(stream.channelId)])
        stream.messageReceived(b"\x03" * 160 * 100, True)
        stream.messageReceived(b"\x03" * 160, True)
        self.assertEqual((stream.queued, stream.counters["droppedMessages"]), (1000, 1))
        self.channel.clear()
        self.advance(stream, 0.02 * 200)
        self.assertEqual(self.events(), [])
        self.advance(stream, 0.02)
        self.assertEqual(self.events(), [chanws.MediaXon(stream.channelId)])
        self.assertEqual(stream.queued, 799)

    def test_flushAndStatus(self) -> None:
        stream = self.stream(chanws.ControlFormat.JSON, seconds=1.0)
        self.advance(stream, 0.02)
        stream.messageReceived(b"\x03" * 1600, True)
        stream.messageReceived(b'{"command":"MARK_MEDIA","correlation_id":"x"}', False)
        stream.messageReceived(b'{"command":"FLUSH_MEDIA"}', False)
        stream.messageReceived(b'{"command":"REPORT_QUEUE_DRAINED"}', False)
        stream.messageReceived(b'{"command":"GET_STATUS"}', False)
        status = self.events()[-1]
        assert isinstance(status, chanws.Status)
        self.assertEqual((status.queueLength, status.xoffLevel, status.queueFull), (0, 900, False))
        self.advance(stream, 0.02)
        self.assertEqual(self.events()[-1], chanws.QueueDrained(stream.channelId))
        self.assertEqual(stream.counters["marks"], 0)

    def test_pauseAndDirection(self) -> None:
        stream = self.stream(chanws.ControlFormat.JSON, seconds=1.0)
        self.advance(stream, 0.02)
        stream.messageReceived(b"\x03" * 320, True)
        stream.messageReceived(b'{"command":"PAUSE_MEDIA"}', False)
        self.advance(stream, 0.04)
        self.assertEqual(stream.queued, 2)
        stream.messageReceived(b'{"command":"CONTINUE_MEDIA"}', False)
        self.advance(stream, 0.02)
        self.assertEqual(stream.queued, 1)
        stream.messageReceived(b'{"command":"SET_MEDIA_DIRECTION","direction":"in"}', False)
        stream.messageReceived(b"\x03" * 160, True)
        self.assertEqual((stream.queued, stream.counters["droppedMessages"]), (1, 1))
        sent = len(self.channel.binaries())
        stream.messageReceived(b'{"command":"SET_MEDIA_DIRECTION","direction":"out"}', False)
        self.advance(stream, 0.04)
        self.assertEqual(len(self.channel.binaries()), sent)

    def test_hangupAndBadCommands(self) -> None:
        stream = self.stream()
        stream.messageReceived(b"MARK_MEDIA " + b"x" * 130, False)  # ignored, no ERROR
        self.assertEqual(self.events()[1:], [])
        stream.messageReceived(b"{nope", False)
        (error,) = self.events()[1:]
        assert isinstance(error, chanws.ErrorEvent)
        stream.messageReceived(b"FROB", False)
        self.assertEqual((stream.counters["bad"], stream.counters["unknown"]), (2, 1))
        stream.messageReceived(b"HANGUP", False)
        self.assertEqual((stream.endedBy, stream.failure), ("gateway", stream.failure))
        self.assertEqual(self.channel.closedWith, (1000, ""))

    def test_oversizedMedia(self) -> None:
        stream = self.stream()
        stream.messageReceived(bytes(65535), True)
        self.assertIn("1009", stream.failure or "")
        self.assertEqual(self.channel.closedWith, (1000, ""))


# ---------------------------------------------------------------------------
# Webhook to stream, against the real routes in memory
# ---------------------------------------------------------------------------


class EchoChannel(FakeChannel):
    """
    A fake media connection whose far end is an echo gateway: audio sent
    comes straight back (Twilio and Vonage framing); a close is answered.
    """

    def __init__(self, stream: MediaStream) -> None:
        super().__init__()
        self.stream = stream

    def sendText(self, text: str) -> None:
        super().sendText(text)
        obj = json.loads(text)
        if obj.get("event") == "media" and "streamSid" in obj:
            payload = base64.b64decode(obj["media"]["payload"])
            self.stream.messageReceived(
                twilio.encodeMedia(obj["streamSid"], payload).encode(), False
            )

    def sendBinary(self, data: bytes) -> None:
        super().sendBinary(data)
        self.stream.messageReceived(data, True)

    def close(self, code: int = 1000, reason: str = "") -> None:
        first = self.closedWith is None
        super().close(code, reason)
        if first:
            self.stream.closed(code, reason)


class FakeConnector:
    """
    A L{Connector} that opens every connection at once on a channel.
    """

    def __init__(self, channel: Callable[[MediaStream], FakeChannel] = lambda s: FakeChannel()):
        self.makeChannel = channel
        self.opened: list[tuple[str, Any, Any, MediaStream, FakeChannel]] = []

    def webSocket(
        self, url: str, headers: Any, stream: MediaStream, timeout: float
    ) -> Deferred[None]:
        channel = self.makeChannel(stream)
        self.opened.append(("ws", url, dict(headers), stream, channel))
        stream.opened(channel)
        return succeed(None)

    def tcp(self, host: str, port: int, stream: MediaStream, timeout: float) -> Deferred[None]:
        channel = self.makeChannel(stream)
        self.opened.append(("tcp", host, port, stream, channel))
        stream.opened(channel)
        return succeed(None)


class CallSetupTests(SynchronousTestCase):
    """
    Each transport's webhook and connection, through the gateway's real
    routes (StubTreq, memory store) and a fake connector.
    """

    GATEWAY = "https://gw.example.com"

    def setUp(self) -> None:
        self.h = Harness(
            '[providers.exotel]\nstream_username = "u ser"\nstream_password = "p@ss"\n',
            environ={"TWILIO_AUTH_TOKEN": "tw-secret", "VONAGE_SIGNATURE_SECRET": VONAGE_SECRET},
        )
        self.clock = self.h.clock
        self.connector = FakeConnector()
        self.env = Environment(self.clock, self.h.treq, Ticker(self.clock), self.connector)
        # Vonage's JWT freshness is checked against this clock, not the wall
        vonageProvider: Any = self.h.gateway.providers["vonage"]
        vonageProvider.now = self.clock.seconds

    def options(self, **kw: Any) -> CallOptions:
        kw.setdefault("plan", CallPlan(linger=0.0))
        return CallOptions(self.GATEWAY, **kw)

    def connect(self, transport: str, options: CallOptions) -> tuple[CallResult, Deferred[Any]]:
        call = TRANSPORTS[transport](self.env, options, AudioSource(seconds=0.04))
        d = Deferred.fromCoroutine(call.connect(call.result))
        for _ in range(5):
            self.h.treq.flush()
        return call.result, d

    def test_twilioSigned(self) -> None:
        result, d = self.connect("twilio", self.options(authToken="tw-secret"))
        stream = self.successResultOf(d)
        assert isinstance(stream, TwilioStream)
        (context,) = self.h.contexts(self)
        self.assertEqual(result.contextId, context.context_id)
        self.assertTrue(tokenMatches(context, stream.parameters["token"]))
        self.assertEqual((context.caller, context.channel_uuid), ("+15551230000", stream.callSid))
        kind, url, headers, _, _ = self.connector.opened[0]
        self.assertEqual(url, f"wss://gw.example.com/v1/talk/twilio/ctx/{context.context_id}")
        self.assertTrue(validTwilioSignature("tw-secret", headers["X-Twilio-Signature"], url, {}))

    def test_twilioUnsignedRefused(self) -> None:
        _, d = self.connect("twilio", self.options())
        error = self.failureResultOf(d, WebhookError).value
        self.assertEqual(
            str(error), "webhook answered 403 signature_missing: X-Twilio-Signature is missing"
        )

    def test_twilioTokenOverride(self) -> None:
        _, d = self.connect("twilio", self.options(authToken="tw-secret", token="wrong"))
        stream = self.successResultOf(d)
        assert isinstance(stream, TwilioStream)
        self.assertEqual(stream.parameters["token"], "wrong")

    def test_unknownAssistant(self) -> None:
        _, d = self.connect("twilio", self.options(authToken="tw-secret", assistant="nobody"))
        self.assertIn("404 unknown_assistant", str(self.failureResultOf(d, WebhookError).value))

    def test_vonage(self) -> None:
        result, d = self.connect("vonage", self.options(signatureSecret=VONAGE_SECRET))
        stream = self.successResultOf(d)
        assert isinstance(stream, VonageStream)
        (context,) = self.h.contexts(self)
        self.assertEqual(stream.contentType, "audio/l16;rate=16000")
        self.assertTrue(tokenMatches(context, stream.headers["token"]))
        self.assertEqual(stream.headers["context_id"], context.context_id)
        kind, url, headers, _, _ = self.connector.opened[0]
        self.assertEqual(
            (url, headers), (f"wss://gw.example.com/v1/talk/vonage/ctx/{context.context_id}", {})
        )

    def test_vonageSignatureAndRate(self) -> None:
        _, d = self.connect("vonage", self.options(signatureSecret="w" * 32))
        self.assertIn("403 bad_signature", str(self.failureResultOf(d, WebhookError).value))
        _, d = self.connect("vonage", self.options(signatureSecret=VONAGE_SECRET, rate=8000))
        stream = self.successResultOf(d)
        self.assertEqual(stream.audio.format.rate, 16000)  # the NCCO decides

    def test_exotel(self) -> None:
        result, d = self.connect("exotel", self.options())
        stream = self.successResultOf(d)
        assert isinstance(stream, ExotelStream)
        (context,) = self.h.contexts(self)
        kind, url, headers, _, _ = self.connector.opened[0]
        self.assertTrue(
            url.startswith(f"wss://gw.example.com/v1/talk/exotel/ctx/{context.context_id}?token=")
        )
        self.assertEqual(
            headers["Authorization"], "Basic " + base64.b64encode(b"u ser:p@ss").decode()
        )
        self.assertTrue(tokenMatches(context, stream.customParameters["token"]))
        self.assertNotIn("sample-rate", stream.customParameters)
        self.assertEqual(stream.audio.format.rate, 16000)  # the URL's sample-rate decides
        _, d = self.connect("exotel", self.options(username="me", password="pw", token="t2"))
        stream = self.successResultOf(d)
        kind, url, headers, _, _ = self.connector.opened[1]
        self.assertEqual(headers["Authorization"], "Basic " + base64.b64encode(b"me:pw").decode())
        self.assertIn("token=t2", url)

    def test_audiosocket(self) -> None:
        result, d = self.connect("audiosocket", self.options(audiosocketPort=4999))
        stream = self.successResultOf(d)
        assert isinstance(stream, AudioSocketStream)
        (context,) = self.h.contexts(self)
        self.assertEqual(str(stream.uuid), context.context_id)
        self.assertEqual(self.connector.opened[0][:3], ("tcp", "gw.example.com", 4999))
        self.assertEqual(context.caller, "+15551230000")

    def test_asteriskWs(self) -> None:
        result, d = self.connect("asterisk-ws", self.options(codec="slin16", controlFormat="json"))
        stream = self.successResultOf(d)
        assert isinstance(stream, AsteriskWsStream)
        (context,) = self.h.contexts(self)
        self.assertEqual(
            self.connector.opened[0][1],
            f"wss://gw.example.com/v1/talk/asterisk/ctx?contextId={context.context_id}",
        )
        self.assertEqual((stream.mediaFormat.name, stream.frameSize), ("slin16", 640))
        start = json.loads(self.connector.opened[0][4].texts()[0])
        self.assertEqual((start["format"], start["optimal_frame_size"]), ("slin16", 640))

    def test_audioInAnotherFormat(self) -> None:
        source = AudioSource(fixed=PreparedAudio(wireFormat("pcm16", 8000), b""))
        call = TwilioCall(self.env, self.options(authToken="tw-secret"), source)
        d = Deferred.fromCoroutine(call.connect(call.result))
        for _ in range(5):
            self.h.treq.flush()
        self.assertIn("not WireFormat(codec='ulaw'", str(self.failureResultOf(d, SimError).value))


class AnswerParsingTests(SynchronousTestCase):
    """
    The webhook answers each transport reads, and what it refuses.
    """

    def test_twiml(self) -> None:
        body = (
            b'<?xml version="1.0"?><Response><Connect><Stream url="wss://h/x">'
            b'<Parameter name="token" value="t"/><Parameter name="a" value=""/>'
            b"</Stream></Connect></Response>"
        )
        self.assertEqual(parseTwiml(body), ("wss://h/x", {"token": "t", "a": ""}))
        for bad in (
            b"<Response>",
            b"<Response><Say>hi</Say></Response>",
            b'<!DOCTYPE x [<!ENTITY a "b">]><Response/>',
            b"{}",
        ):
            self.assertRaises(WebhookError, parseTwiml, bad)

    def test_ncco(self) -> None:
        ncco = [
            {"action": "talk", "text": "hi"},
            {
                "action": "connect",
                "endpoint": [
                    {"type": "phone", "number": "1"},
                    {"type": "websocket", "uri": "wss://h/x", "headers": {"token": "t"}},
                ],
            },
        ]
        self.assertEqual(
            parseNcco(json.dumps(ncco).encode()),
            ("wss://h/x", "audio/l16;rate=16000", {"token": "t"}),
        )
        for bad in (
            b"[",
            b"{}",
            b"[1]",
            b'[{"action":"connect","endpoint":[{"type":"websocket"}]}]',
        ):
            self.assertRaises(WebhookError, parseNcco, bad)

    def test_exotelURL(self) -> None:
        self.assertEqual(
            parseStreamURL(b'{"url": "wss://k%40y:s%3Ac@h:8443/p?token=t&sample-rate=16000"}'),
            (
                "wss://h:8443/p?token=t&sample-rate=16000",
                {"token": "t", "sample-rate": "16000"},
                ("k@y", "s:c"),
            ),
        )
        self.assertEqual(parseStreamURL(b'{"url": "ws://[::1]/p"}'), ("ws://[::1]/p", {}, None))
        for bad in (b"[]", b'{"url": 5}', b'{"url": "https://h/p"}', b"nope"):
            self.assertRaises(WebhookError, parseStreamURL, bad)

    def test_signedVonageWebhook(self) -> None:
        from rapida_twisted.providers.vonage._webhook import verifyVonageJWT

        header = signedWebhook(VONAGE_SECRET, 1_800_000_000.0, b'{"a":1}')
        claims = verifyVonageJWT(VONAGE_SECRET, header, b'{"a":1}', 1_800_000_010.0)
        self.assertEqual(claims["iss"], "Vonage")

    def test_wsURL(self) -> None:
        self.assertEqual(wsURL("http://h:8080/", "/v1/x"), "ws://h:8080/v1/x")
        self.assertEqual(wsURL("https://h/base", "/v1/x"), "wss://h/base/v1/x")


class AutobahnAdapterTests(SynchronousTestCase):
    """
    The real Autobahn client protocol, against an Autobahn server in
    memory (iosim).
    """

    server: WebSocketServerProtocol

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.received: list[bytes] = []
        self.requests: list[Any] = []
        test = self

        class Server(WebSocketServerProtocol):
            def onConnect(self, request: Any) -> None:
                test.requests.append(request)

            def onMessage(self, payload: bytes, isBinary: bool) -> None:
                test.received.append(payload)
                if b'"start"' in payload:
                    test.server = self

        self.serverFactory = WebSocketServerFactory(reactor=self.clock)
        self.serverFactory.protocol = Server
        self.stream = TwilioStream(
            self.clock, Ticker(self.clock, slots=1), prepared(), CallPlan(linger=0), {"token": "t"}
        )
        self.ready: Deferred[None] = Deferred()
        factory = _StreamClientFactory(
            "ws://gw.example.com/v1/talk/twilio/ctx/x",
            {"X-Twilio-Signature": "sig"},
            self.clock,
            self.stream,
            self.ready,
        )
        factory.setProtocolOptions(perMessageCompressionOffers=[])
        self.client, _, self.pump = iosim.connectedServerAndClient(
            lambda: self.serverFactory.buildProtocol(None),
            lambda: factory.buildProtocol(None),
            clock=self.clock,
        )
        self.pump.flush()

    def test_callOverWebSocket(self) -> None:
        self.successResultOf(self.ready)
        (request,) = self.requests
        self.assertEqual(request.headers["x-twilio-signature"], "sig")
        self.assertNotIn("sec-websocket-extensions", request.headers)
        for _ in range(8):
            self.clock.advance(0.02)
            self.pump.flush()
        events = [json.loads(p)["event"] for p in self.received]
        self.assertEqual(events, ["connected", "start"] + ["media"] * 5 + ["stop"])
        self.successResultOf(self.stream.done)
        self.assertEqual((self.stream.failure, self.stream.closeCode), (None, 1000))

    def test_gatewayCloses(self) -> None:
        self.server.sendMessage(twilio.encodeMark("MZ1", "m").encode())
        self.server.sendClose(4403, "token does not match")
        self.pump.flush()
        self.successResultOf(self.stream.done)
        self.assertEqual(self.stream.closeCode, 4403)
        self.assertEqual(self.stream.counters["marks"], 1)
        self.assertIn("4403: token does not match", self.stream.failure or "")

    def test_handshakeRefused(self) -> None:
        """
        An upgrade refused with an HTTP status fails the connection attempt
        with that status and the gateway's JSON reason.
        """

        class Refuse(Protocol):
            def dataReceived(self, data: bytes) -> None:
                assert self.transport is not None
                body = b'{"error": {"code": "already_claimed", "message": "claimed"}}'
                self.transport.write(
                    b"HTTP/1.1 409 Conflict\r\nContent-Type: application/json\r\n\r\n" + body
                )
                self.transport.loseConnection()

        stream = TwilioStream(self.clock, Ticker(self.clock), prepared(), CallPlan(), {})
        ready: Deferred[None] = Deferred()
        factory = _StreamClientFactory("ws://h/x", {}, self.clock, stream, ready)
        _, _, pump = iosim.connectedServerAndClient(
            Refuse, lambda: factory.buildProtocol(None), clock=self.clock
        )
        pump.flush()
        error = self.failureResultOf(ready, HandshakeError).value
        self.assertEqual(
            str(error),
            "media upgrade failed: WebSocket connection upgrade failed [409]: Conflict"
            " already_claimed: claimed",
        )
        self.assertNoResult(stream.done)


class AudioSocketAdapterTests(SynchronousTestCase):
    """
    The AudioSocket TCP protocol feeding its stream.
    """

    def test_adapter(self) -> None:
        clock = Clock()
        uuid = UUID(int=7)
        stream = AudioSocketStream(clock, Ticker(clock), prepared("pcm16"), CallPlan(), uuid)
        proto = _AudioSocketProtocol(stream)
        transport = StringTransport()
        proto.makeConnection(transport)
        self.assertEqual(transport.value(), audiosocket.encodeUuid(uuid))
        proto.dataReceived(audiosocket.encodeAudio(bytes(320)))
        self.assertEqual(stream.recorder.receivedBytes, 320)
        self.assertRaises(TypeError, proto.sendText, "x")
        proto.close()
        self.assertTrue(transport.disconnecting)
        proto.connectionLost(Failure(ConnectionDone()))
        self.successResultOf(stream.done)
        self.assertEqual(stream.endedBy, "gateway")


# ---------------------------------------------------------------------------
# The command line and the load runner, in memory
# ---------------------------------------------------------------------------


class CommandLineTests(SynchronousTestCase):
    """
    C{rapida-sim}'s arguments.
    """

    def parse(self, *argv: str) -> Any:
        return buildParser().parse_args(list(argv))

    def refused(self, *argv: str) -> str:
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            exit = self.assertRaises(SystemExit, buildParser().parse_args, list(argv))
        self.assertEqual(exit.code, 2)
        return err.getvalue()

    def test_call(self) -> None:
        args = self.parse(
            "call", "twilio", "--gateway", "http://h:8080", "--assistant", "sales",
            "--wav", "in.wav", "--out", "heard.wav", "--dtmf", "12#a", "--auth-token", "T",
            "--duration", "2.5", "--min-correlation", "0.9",
        )  # fmt: skip
        self.assertEqual(
            (args.command, args.transport, args.out, args.wav, args.min_correlation),
            ("call", "twilio", "heard.wav", "in.wav", 0.9),
        )
        options = callOptions(args)
        self.assertEqual(
            (options.gateway, options.assistant, options.authToken, options.plan.dtmf),
            ("http://h:8080", "sales", "T", "12#A"),
        )
        self.assertEqual((options.plan.linger, options.timeout, options.chunkMs), (1.0, 10.0, 20))
        self.assertEqual(args.duration, 2.5)

    def test_load(self) -> None:
        args = self.parse(
            "load", "audiosocket", "--gateway", "http://h", "--calls", "500", "--ramp", "5",
            "--json", "--audiosocket-host", "pbx", "--audiosocket-port", "4000", "--hangup-frame",
        )  # fmt: skip
        self.assertEqual((args.calls, args.ramp, args.json), (500, 5.0, True))
        options = callOptions(args)
        self.assertEqual(
            (options.audiosocketHost, options.audiosocketPort, options.plan.hangupFrame),
            ("pbx", 4000, True),
        )
        args = self.parse(
            "load", "asterisk-ws", "--gateway", "http://h", "--calls", "2", "--codec", "slin16",
            "--control", "json", "--rate", "16000", "--chunk-ms", "100", "--token", "x",
        )  # fmt: skip
        options = callOptions(args)
        self.assertEqual(
            (options.codec, options.controlFormat, options.rate, options.chunkMs, options.token),
            ("slin16", "json", 16000, 100, "x"),
        )

    def test_refused(self) -> None:
        self.assertIn("--gateway", self.refused("call", "twilio"))
        self.assertIn("invalid choice", self.refused("call", "skype", "--gateway", "g"))
        self.assertIn("not DTMF", self.refused("call", "twilio", "--gateway", "g", "--dtmf", "1x"))
        self.assertIn("--calls", self.refused("load", "twilio", "--gateway", "g"))
        self.assertIn("positive", self.refused("load", "twilio", "--gateway", "g", "--calls", "0"))
        self.assertIn(
            "positive", self.refused("call", "twilio", "--gateway", "g", "--duration", "-1")
        )
        self.refused("call", "exotel", "--gateway", "g", "--chunk-ms", "50")
        self.refused()

    def test_mainRefusesBadAudio(self) -> None:
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"nope")
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            exit = self.assertRaises(
                SystemExit, main, ["call", "twilio", "--gateway", "http://h", "--wav", path]
            )
        self.assertEqual(exit.code, 2)
        self.assertIn("not a PCM WAV file", err.getvalue())
        with contextlib.redirect_stderr(io.StringIO()):
            exit = self.assertRaises(
                SystemExit,
                main,
                ["call", "vonage", "--gateway", "http://h", "--rate", "11025"],
            )
        self.assertEqual(exit.code, 2)


class InMemoryRunTests(SynchronousTestCase):
    """
    Whole calls and load runs against the real routes in memory, the media
    leg answered by an echo (L{EchoChannel}).
    """

    def setUp(self) -> None:
        self.h = Harness()
        self.clock = self.h.clock
        self.env = Environment(
            self.clock, self.h.treq, Ticker(self.clock), FakeConnector(EchoChannel)
        )

    def drive(self, d: Deferred[Any], limit: int = 5000) -> Any:
        for _ in range(limit):
            self.h.treq.flush()
            if d.called:
                return self.successResultOf(d)
            self.clock.advance(0.002)  # the ticker's slot period
        self.fail("did not finish")

    def command(self, *argv: str) -> tuple[Any, CallOptions, AudioSource]:
        args = buildParser().parse_args(list(argv))
        options = callOptions(args)
        return args, options, audioSource(args.transport, options, args.wav, args.duration)

    def test_call(self) -> None:
        out = io.StringIO()
        path = self.mktemp()
        args, options, source = self.command(
            "call", "twilio", "--gateway", "https://gw.example.com", "--duration", "0.4",
            "--linger", "0.1", "--dtmf", "1", "--dtmf-at", "0.1", "--out", path,
        )  # fmt: skip
        status = self.drive(Deferred.fromCoroutine(runCall(self.env, args, options, source, out)))
        text = out.getvalue()
        self.assertEqual(status, 0, text)
        self.assertIn("frames sent 25, received 25", text)
        self.assertIn("lost 0", text)
        self.assertIn("echo correlation 1.000", text)
        self.assertIn("result: ok", text)
        heard, rate = readWav(path)
        self.assertEqual(rate, 16000)
        self.assertTrue(0.48 < len(heard) / 32000 < 0.53, len(heard))
        (context,) = self.h.contexts(self)
        self.assertEqual(context.caller, "+15551230000")

    def test_callJsonAndThreshold(self) -> None:
        out = io.StringIO()
        args, options, source = self.command(
            "call", "vonage", "--gateway", "https://gw.example.com", "--duration", "0.2",
            "--linger", "0", "--json", "--min-correlation", "1.5",
        )  # fmt: skip
        status = self.drive(Deferred.fromCoroutine(runCall(self.env, args, options, source, out)))
        document = json.loads(out.getvalue())
        self.assertEqual(status, 1)
        self.assertEqual((document["transport"], document["framesSent"]), ("vonage", 10))
        self.assertEqual(document["failure"], "echo correlation below 1.5")
        self.assertGreater(document["correlation"]["coefficient"], 0.99)
        self.assertEqual(document["echo"]["lost"], 0)

    def test_load(self) -> None:
        out, err = io.StringIO(), io.StringIO()
        args, options, source = self.command(
            "load", "twilio", "--gateway", "https://gw.example.com", "--calls", "3",
            "--ramp", "0.06", "--duration", "0.3", "--linger", "0.1", "--json",
        )  # fmt: skip
        status = self.drive(
            Deferred.fromCoroutine(runLoadCommand(self.env, args, options, source, out, err))
        )
        report = json.loads(out.getvalue())
        self.assertEqual(status, 0)
        self.assertEqual((report["calls"], report["ok"], report["failed"]), (3, 3, 0))
        self.assertEqual((report["framesSent"], report["framesReceived"]), (60, 60))
        self.assertEqual(report["lost"], 0)
        self.assertEqual(report["latencyMs"]["p99"], 0.0)
        self.assertEqual(err.getvalue(), "")  # no terminal, no progress line
        self.assertEqual(len(self.h.contexts(self)), 3)

    def test_loadProgressAndFailures(self) -> None:
        updates: list[str] = []
        options = CallOptions("https://gw.example.com", assistant="nobody", plan=CallPlan(linger=0))
        d = Deferred.fromCoroutine(
            runLoad(
                self.env,
                "exotel",
                options,
                AudioSource(seconds=0.1),
                2,
                progress=lambda state: updates.append(state.line()),
                progressInterval=0.01,
            )
        )
        report = self.drive(d)
        self.assertEqual((report.calls, report.ok), (2, 0))
        (reason,) = report.failures
        self.assertIn("404 unknown_assistant", reason)
        self.assertEqual(report.failures[reason], 2)
        self.assertIn("failed 2", updates[-1])
        lines = report.lines()
        self.assertTrue(lines[0].startswith("exotel: 2 calls in"))
        self.assertIn("failed x2: webhook answered 404 unknown_assistant", "\n".join(lines))
        self.assertEqual(report.asDict()["failed"], 2)


class FastWriteTests(SynchronousTestCase):
    """
    The media fast path: pre-built client frames written straight to the
    socket when Twisted holds nothing for it.
    """

    def test_clientFrame(self) -> None:
        for size, header in (
            (0, b"\x81\x80"),
            (125, b"\x81\xfd"),
            (126, b"\x81\xfe\x00\x7e"),
            (65535, b"\x81\xfe\xff\xff"),
            (65536, b"\x81\xff" + (65536).to_bytes(8, "big")),
        ):
            frame = clientFrame(0x81, b"x" * size)
            self.assertEqual(frame[: len(header)], header, size)
            self.assertEqual(frame[len(header) : len(header) + 4], b"\x00" * 4)
            self.assertEqual(len(frame), len(header) + 4 + size)
        self.assertEqual(clientFrame(0x82, b"ab"), b"\x82\x82\x00\x00\x00\x00ab")

    class Socket:
        def __init__(self, accept: int | None) -> None:
            self.accept = accept
            self.sent: list[bytes] = []

        def send(self, data: bytes) -> int:
            if self.accept is None:
                raise BlockingIOError()
            taken = data[: self.accept]
            self.sent.append(taken)
            return len(taken)

    class Transport(StringTransport):
        def __init__(self, sock: Any) -> None:
            super().__init__()
            self.socket = sock
            self.dataBuffer = b""
            self._tempDataBuffer: list[bytes] = []
            self.connected = True

    def test_straightToTheSocket(self) -> None:
        sock = self.Socket(accept=1000)
        transport = self.Transport(sock)
        writeNow(transport, b"frame")
        self.assertEqual((sock.sent, transport.value()), ([b"frame"], b""))

    def test_partialAndBlocked(self) -> None:
        sock = self.Socket(accept=2)
        transport = self.Transport(sock)
        writeNow(transport, b"frame")
        self.assertEqual((sock.sent, transport.value()), ([b"fr"], b"ame"))
        transport = self.Transport(self.Socket(accept=None))
        writeNow(transport, b"frame")
        self.assertEqual(transport.value(), b"frame")

    def test_bufferedOrNotPlainTcp(self) -> None:
        """
        With data already buffered (order), while disconnecting, or on a
        transport without a socket (TLS, memory), Twisted writes.
        """
        sock = self.Socket(accept=1000)
        transport = self.Transport(sock)
        transport._tempDataBuffer.append(b"earlier")
        writeNow(transport, b"frame")
        transport = self.Transport(sock)
        transport.disconnecting = True
        writeNow(transport, b"frame")
        self.assertEqual(sock.sent, [])
        plain = StringTransport()
        writeNow(plain, b"frame")
        self.assertEqual(plain.value(), b"frame")


class CallTimeoutTests(SynchronousTestCase):
    """
    A call that does not end in time is given up on and closed.
    """

    def test_givenUp(self) -> None:
        h = Harness()
        clock = h.clock
        connector = FakeConnector()
        env = Environment(clock, h.treq, Ticker(clock), connector)
        options = CallOptions("https://gw.example.com", plan=CallPlan(linger=0))
        call = TwilioCall(env, options, AudioSource(seconds=0.1))
        d = Deferred.fromCoroutine(call.run())
        for _ in range(5):
            h.treq.flush()
        stream = connector.opened[0][3]
        channel = connector.opened[0][4]
        for _ in range(20):
            clock.advance(0.01)  # the caller hangs up; the gateway never closes
        self.assertEqual(channel.closedWith, (1000, ""))
        self.assertNoResult(d)
        clock.advance(31)
        result = self.successResultOf(d)
        self.assertEqual(result.failure, "call did not end within 31 s")
        stream.closed(1000, "")  # a late close is harmless
        self.assertEqual(result.failure, "call did not end within 31 s")


# ---------------------------------------------------------------------------
# SIP: the simulator's UAC calls against the SIP server, both in memory
# ---------------------------------------------------------------------------

from rapida_twisted.sim._sip import (  # noqa: E402
    SipCall,
    SipCallResult,
    SipOptions,
    SipStream,
    localAddressFor,
    resolveTarget,
    sipTarget,
    uacPool,
)
from rapida_twisted.sip._codec import SipRequest, parseMessage  # noqa: E402
from rapida_twisted.sip.uac import UserAgentClient  # noqa: E402

from .test_sip_server import USERS, USERS_OPEN  # noqa: E402
from .test_sip_server import Harness as SipHarness  # noqa: E402


class SipOptionTests(SynchronousTestCase):
    """
    The SIP options: codec, target, command line.
    """

    def test_codec(self) -> None:
        gateway = "http://127.0.0.1:8080"
        for name, codec in (("ulaw", "ulaw"), ("PCMU", "ulaw"), ("alaw", "alaw"), ("PCMA", "alaw")):
            fmt = SipCall.wireFormat(SipOptions(gateway, codec=name))
            self.assertEqual((fmt.codec, fmt.rate), (codec, 8000), name)
        self.assertRaises(ValueError, SipCall.wireFormat, SipOptions(gateway, codec="slin"))
        self.assertRaises(ValueError, SipCall.wireFormat, SipOptions(gateway, rate=16000))
        source = audioSource("sip", CallOptions(gateway, codec="alaw"), seconds=0.1)
        self.assertEqual(len(source.prepared(wireFormat("alaw", 8000))), 5)

    def test_target(self) -> None:
        self.assertEqual(sipTarget(CallOptions("http://gw:8080")), "sip:echo@gw:5090")
        self.assertEqual(
            sipTarget(SipOptions("https://[::1]:8443/x", assistant="bot", sipPort=5999)),
            "sip:bot@[::1]:5999",
        )
        self.assertEqual(
            sipTarget(SipOptions("http://gw", sipTarget="sip:+15550100@pbx:5060")),
            "sip:+15550100@pbx:5060",
        )

    def test_resolveTarget(self) -> None:
        class Resolver(Clock):
            def resolve(self, name: str) -> Deferred[str]:
                return succeed({"gw.example.com": "192.0.2.7"}[name])

        env = Environment(Resolver(), object(), connector=FakeConnector())
        self.assertEqual(
            self.successResultOf(Deferred.fromCoroutine(resolveTarget(env, "sip:a@10.0.0.1:5"))),
            ("sip:a@10.0.0.1:5", "10.0.0.1"),
        )
        self.assertEqual(
            self.successResultOf(
                Deferred.fromCoroutine(resolveTarget(env, "sip:echo@gw.example.com:5090"))
            ),
            ("sip:echo@192.0.2.7:5090", "192.0.2.7"),
        )
        for bad, why in (
            ("sip:x@nowhere.invalid", "cannot resolve 'nowhere.invalid'"),
            ("tel:+15550100", "a sip: URI with a host is required"),
            ("sip:x@[::1]:5090", "over IPv4"),
            ("not a uri", "bad SIP target"),
        ):
            d = Deferred.fromCoroutine(resolveTarget(env, bad))
            self.assertIn(why, str(self.failureResultOf(d, SimError).value), bad)

    def test_localAddress(self) -> None:
        self.assertEqual(localAddressFor("127.0.0.5"), "127.0.0.1")

    def test_commandLine(self) -> None:
        args = buildParser().parse_args(
            ["call", "sip", "--gateway", "http://h:8080", "--sip-port", "5099", "--codec", "PCMA",
             "--username", "alice", "--password", "pw", "--sip-local", "10.0.0.2", "--dtmf", "12#"]
        )  # fmt: skip
        options = callOptions(args)
        assert isinstance(options, SipOptions)
        self.assertEqual(
            (options.sipPort, options.sipTarget, options.sipLocal, options.codec),
            (5099, None, "10.0.0.2", "PCMA"),
        )
        self.assertEqual(
            (options.username, options.password, options.plan.dtmf), ("alice", "pw", "12#")
        )
        self.assertEqual(sipTarget(options), "sip:echo@h:5099")
        args = buildParser().parse_args(
            ["load", "sip", "--gateway", "http://h", "--calls", "2", "--sip-target", "sip:bot@h:7"]
        )
        self.assertEqual(sipTarget(callOptions(args)), "sip:bot@h:7")
        self.assertNotIsInstance(
            callOptions(buildParser().parse_args(["call", "twilio", "--gateway", "http://h"])),
            SipOptions,
        )


class SipStreamTests(SynchronousTestCase):
    """
    L{SipStream} alone: what it does with RTP that comes late or twice.
    """

    def test_lateAndDuplicatePackets(self) -> None:
        clock = Clock()
        stream = SipStream(clock, Ticker(clock), prepared(), CallPlan())
        frame = ULAW_BYTES
        for sequence in (70000, 70001, 70001, 69999, 70003, 70002):
            stream.audioReceived(clock.seconds(), sequence, frame)
            clock.advance(0.02)
        self.assertEqual(stream.counters["rtpLate"], 3)
        self.assertEqual(stream.recorder.receivedBytes, 3 * len(frame))
        self.assertRaises(TypeError, stream.received, b"", True)


class SipCallTests(SynchronousTestCase):
    """
    Whole SIP calls: the simulator's UAC and the gateway's SIP server on
    one in-memory UDP reactor that routes datagrams between their ports
    (the harness of C{tests.test_sip_server}).
    """

    GATEWAY = "http://127.0.0.1:8080"

    def setUp(self) -> None:
        self.h = SipHarness(USERS_OPEN, routing=True)
        self.addCleanup(self.h.stop)
        self.environment()

    def environment(self) -> None:
        """
        A fresh environment on the harness's reactor, noting the UACs its
        calls use.
        """
        self.clock = self.h.reactor
        self.env = Environment(self.clock, object(), Ticker(self.clock), FakeConnector())
        self.uacs: list[UserAgentClient] = []
        pool = uacPool(self.env)
        acquire = pool.acquire

        def noted(*args: Any, **kw: Any) -> UserAgentClient:
            uac = acquire(*args, **kw)
            self.uacs.append(uac)
            return uac

        pool.acquire = noted  # type: ignore[method-assign]

    def options(self, **kw: Any) -> SipOptions:
        kw.setdefault("plan", CallPlan(linger=0.5))
        return SipOptions(self.GATEWAY, **kw)

    def drive(self, d: Deferred[Any], limit: float = 60.0) -> Any:
        for _ in range(round(limit / 0.002)):
            if d.called:
                return self.successResultOf(d)
            self.clock.advance(0.002)  # the ticker's slot period
        self.fail("did not finish")

    def place(self, options: SipOptions, seconds: float = 1.0, limit: float = 60.0) -> CallResult:
        call = SipCall(self.env, options, AudioSource(seconds=seconds, seed=3))
        return self.drive(Deferred.fromCoroutine(call.run()), limit)

    def assertUacGone(self) -> None:
        self.clock.advance(0)
        ours = [p for p in self.clock.udpPorts if p != 5090 and not 20000 <= p <= 20099]
        self.assertEqual(ours, [])
        self.assertEqual(len(uacPool(self.env)), 0)
        for uac in self.uacs:
            self.assertEqual((uac._listening, uac._txns), (None, {}))
        # no INVITE transaction's timer left running (only the UAC sends INVITEs)
        timers = [repr(c) for c in self.clock.getDelayedCalls()]
        self.assertEqual([t for t in timers if re.search(r"\bInviteClientTransaction", t)], [])
        self.assertEqual(self.env.ticker.members, 0)

    def test_echoDtmfHangup(self) -> None:
        """
        An answered call: the echo comes back complete, DTMF reaches the
        gateway as RFC 4733 events in the audio's place (those frames are
        not expected back), and the caller hangs up with a BYE answered 200.
        """
        plan = CallPlan(dtmf="12#", dtmfAt=0.2, dtmfInterval=0.2, linger=0.5)
        call = SipCall(self.env, self.options(plan=plan), AudioSource(seconds=2.0, seed=3))
        result = self.drive(Deferred.fromCoroutine(call.run()))
        self.assertTrue(result.ok, result.failure)
        assert isinstance(result, SipCallResult) and isinstance(result.stream, SipStream)
        stream = result.stream
        self.assertEqual(
            (stream.closeCode, stream.closeReason, stream.endedBy), (200, "OK", "caller")
        )
        self.assertEqual(stream.call.codec if stream.call else None, "PCMU")
        self.assertEqual(result.framesSent, 125 - 3 * 7)  # 7 event packets per digit
        times = np.asarray(stream.recorder.sendTimes)
        self.assertEqual(np.isnan(times).sum(), 21)
        replaced = np.flatnonzero(np.isnan(times))
        self.assertEqual(replaced[0], 11)  # pressed at 0.2 s, after that tick's frame
        self.assertFalse(stream.audio.active[replaced[replaced < 100]].any())
        shared = call.source.prepared(stream.audio.format)
        self.assertIsNot(shared, stream.audio)
        self.assertTrue(shared.active[replaced[replaced < 100]].any())  # untouched
        self.assertGreater(result.framesReceived, 120)
        echo = result.echo()
        assert echo is not None
        self.assertGreater(echo.expected, 40)
        self.assertLessEqual(echo.lost, 3)  # the gateway's seam after each event
        score, lag = result.correlation()
        self.assertGreater(score, 0.8)
        self.assertTrue(0.04 < lag < 0.2, lag)
        (context,) = self.h.contexts()
        self.assertEqual(context[3], result.callId)
        self.assertEqual(context[4:6], ("completed", "remote_bye"))
        digits = [p["digit"] for k, p in self.h.events(context[0]) if k == "dtmf"]
        self.assertEqual(digits, ["1", "2", "#"])
        summary = result.summary()
        self.assertEqual((summary["callId"], summary["closeCode"]), (result.callId, 200))
        self.assertTrue(0 < (result.webhookSeconds or 0) < 0.02, result.webhookSeconds)
        self.assertUacGone()

    def test_echoWithoutLoss(self) -> None:
        result = self.place(self.options(), seconds=2.0)
        echo = result.echo()
        assert echo is not None
        self.assertEqual((result.ok, echo.lost, result.framesSent), (True, 0, 125))
        self.assertEqual(echo.expected, echo.echoed)
        self.assertLess(float(np.max(echo.latencies)), 0.1)
        gaps, jitter = result.jitter()
        self.assertLess(float(np.max(jitter)), 0.003)

    def test_pcma(self) -> None:
        result = self.place(self.options(codec="PCMA"), seconds=0.5)
        self.assertTrue(result.ok, result.failure)
        assert isinstance(result.stream, SipStream) and result.stream.call is not None
        self.assertEqual(result.stream.call.codec, "PCMA")
        self.assertEqual(result.stream.audio.format.codec, "alaw")
        self.assertGreater(result.correlation()[0], 0.8)

    def test_notFound(self) -> None:
        result = self.place(self.options(assistant="nobody"))
        self.assertEqual(result.failure, "INVITE answered 404 Not Found")
        self.assertIsNone(result.stream)
        self.assertEqual((result.framesSent, result.echo()), (0, None))
        self.assertUacGone()

    def test_digest(self) -> None:
        self.h = SipHarness(USERS, routing=True)
        self.addCleanup(self.h.stop)
        self.environment()
        result = self.place(self.options(username="alice", password="s3cret"), seconds=0.2)
        self.assertTrue(result.ok, result.failure)
        result = self.place(self.options(username="alice", password="wrong"), seconds=0.2)
        self.assertEqual(result.failure, "INVITE answered 403 Forbidden")
        result = self.place(self.options(), seconds=0.2)
        self.assertEqual(result.failure, "INVITE answered 401 Unauthorized")

    def test_noAnswer(self) -> None:
        """
        Nothing answers within the timeout: the INVITE is cancelled, the
        call fails, and the UAC goes once the transactions are over.
        """
        options = self.options(sipPort=5999, timeout=1.0)
        call = SipCall(self.env, options, AudioSource(seconds=0.2))
        d = Deferred.fromCoroutine(call.run())
        self.clock.advance(0.99)
        self.assertNoResult(d)
        self.clock.advance(0.02)
        self.assertEqual(self.successResultOf(d).failure, "no answer within 1 s")
        (uac,) = (p for n, p in self.clock.udpPorts.items() if n != 5090 and p.written)
        sent = [parseMessage(data) for data, _ in uac.written]
        self.assertEqual([m.method for m in sent if isinstance(m, SipRequest)][-1], "CANCEL")
        self.clock.advance(40)  # Timer B/F
        self.assertUacGone()

    def test_gatewayHangsUp(self) -> None:
        call = SipCall(self.env, self.options(), AudioSource(seconds=2.0))
        d = Deferred.fromCoroutine(call.run())
        for _ in range(100):
            self.clock.advance(0.002)
        [server] = self.h.core.calls.values()
        server.session.hangup("goodbye")
        result = self.drive(d)
        self.assertEqual(result.failure, "the gateway hung up (BYE)")
        assert result.stream is not None
        self.assertEqual(
            (result.stream.endedBy, result.stream.closeReason), ("gateway", "remote_bye")
        )
        self.assertUacGone()

    def test_byeNotAnswered(self) -> None:
        call = SipCall(self.env, self.options(plan=CallPlan(linger=0)), AudioSource(seconds=0.2))
        d = Deferred.fromCoroutine(call.run())
        for _ in range(50):
            self.clock.advance(0.002)
        server = self.clock.udpPorts.pop(5090)  # the gateway vanishes
        result = self.drive(d)
        self.assertEqual(result.failure, "the BYE was not answered")
        self.clock.udpPorts[5090] = server
        self.assertUacGone()

    def test_loadSharesOneUac(self) -> None:
        """
        Concurrent calls share one SIP socket; each has its own RTP socket.
        """
        ports: list[int] = []
        listenUDP = self.clock.listenUDP

        def watch(port: int, protocol: Any, interface: str = "", maxPacketSize: int = 8192) -> Any:
            transport = listenUDP(port, protocol, interface, maxPacketSize)
            ports.append(transport.port)
            return transport

        self.clock.listenUDP = watch  # type: ignore[method-assign]
        d = Deferred.fromCoroutine(
            runLoad(self.env, "sip", self.options(), AudioSource(seconds=0.5), 4, ramp=0.04)
        )
        report = self.drive(d)
        self.assertEqual((report.calls, report.ok, report.lost), (4, 4, 0))
        self.assertEqual(report.framesSent, 4 * 50)
        self.assertGreater(report.expected, 0)
        ours = [port for port in ports if not 20000 <= port <= 20099]  # not the server's RTP
        self.assertEqual(len(ours), 1 + 4)  # one UAC, four calls' RTP
        self.assertEqual(len(self.h.contexts()), 4)
        self.assertEqual(report.asDict()["setupMs"]["count"], 4)
        self.assertUacGone()

    def test_commandLineCall(self) -> None:
        out = io.StringIO()
        path = self.mktemp()
        args = buildParser().parse_args(
            ["call", "sip", "--gateway", self.GATEWAY, "--duration", "1", "--linger", "0.5",
             "--out", path]
        )  # fmt: skip
        options = callOptions(args)
        source = audioSource(args.transport, options, args.wav, args.duration)
        status = self.drive(Deferred.fromCoroutine(runCall(self.env, args, options, source, out)))
        text = out.getvalue()
        self.assertEqual(status, 0, text)
        self.assertIn("sip call, context -, Call-ID ", text)
        self.assertIn("lost 0", text)
        self.assertIn("result: ok", text)
        heard, rate = readWav(path)
        self.assertEqual(rate, 16000)
        self.assertGreater(len(heard) / 32000, 1.0)
