"""
Tests for L{rapida_twisted.asterisk._audiosocket}: AudioSocket framing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from rapida_twisted.asterisk import _audiosocket as a
from rapida_twisted.asterisk._audiosocket import (
    Audio,
    AudioSocketDecoder,
    AudioSocketError,
    Dtmf,
    ErrorFrame,
    Frame,
    Hangup,
    Unknown,
    Uuid,
)

CALL = uuid.UUID("6ba7b810-9dad-11d1-80b4-00c04fd430c8")
PCM = bytes(range(256)) + bytes(64)  # 320 bytes: 20 ms at 8 kHz


class ErrorAssertions(SynchronousTestCase):
    """
    Base: assert an L{AudioSocketError} with a given code.
    """

    def assertAudioSocketError(
        self, code: str, func: Callable[..., object], *args: object
    ) -> AudioSocketError:
        error = self.assertRaises(AudioSocketError, func, *args)
        self.assertEqual(error.code, code, str(error))
        return error


class DecoderTests(ErrorAssertions):
    """
    Frames fed as whole TCP segments. L{ByteByByteDecoderTests} runs the
    same tests feeding one byte at a time.
    """

    def feed(self, decoder: AudioSocketDecoder, data: bytes) -> list[Frame]:
        return decoder.feed(data)

    def decode(self, data: bytes) -> list[Frame]:
        decoder = AudioSocketDecoder()
        frames = self.feed(decoder, data)
        self.assertEqual(decoder.pending, 0)
        return frames

    def test_observedSession(self) -> None:
        """
        What a live Asterisk sends (§4.5): the UUID, 320-byte slin frames,
        a DTMF frame and a short last frame.
        """
        data = (
            b"\x01\x00\x10"
            + CALL.bytes
            + b"\x10\x01\x40"
            + PCM
            + b"\x03\x00\x01"
            + b"7"
            + b"\x10\x00\x5a"
            + PCM[:90]
        )
        self.assertEqual(
            self.decode(data),
            [Uuid(CALL), Audio(PCM, 8000), Dtmf("7"), Audio(PCM[:90], 8000)],
        )

    def test_everyAudioKind(self) -> None:
        for kind, rate in a.SLIN_RATES.items():
            frames = self.decode(a.encodeFrame(kind, PCM))
            self.assertEqual(frames, [Audio(PCM, rate)])
            assert isinstance(frames[0], Audio)
            self.assertEqual(frames[0].kind, kind)
        self.assertEqual(a.SLIN_RATES[0x11], 12000)
        self.assertEqual(a.SLIN_RATES[0x12], 16000)
        self.assertEqual(a.SLIN_RATES[0x15], 44100)

    def test_hangup(self) -> None:
        self.assertEqual(self.decode(b"\x00\x00\x00"), [Hangup()])

    def test_dtmf(self) -> None:
        for digit in "0123456789*#ABCD":
            self.assertEqual(self.decode(b"\x03\x00\x01" + digit.encode()), [Dtmf(digit)])
        self.assertEqual(self.decode(b"\x03\x00\x01a"), [Dtmf("A")])

    def test_error(self) -> None:
        self.assertEqual(self.decode(b"\xff\x00\x01\x02"), [ErrorFrame(2, b"\x02")])
        self.assertEqual(self.decode(b"\xff\x00\x00"), [ErrorFrame(None, b"")])

    def test_unknownKind(self) -> None:
        self.assertEqual(
            self.decode(b"\x02\x00\x02ab" + b"\x10\x00\x02\x01\x00"),
            [Unknown(2, b"ab"), Audio(b"\x01\x00", 8000)],
        )

    def test_emptyAudio(self) -> None:
        self.assertEqual(self.decode(b"\x10\x00\x00"), [Audio(b"", 8000)])

    def test_partialFrame(self) -> None:
        """
        A truncated frame is held back until the rest arrives.
        """
        decoder = AudioSocketDecoder()
        frame = a.encodeAudio(PCM)
        self.assertEqual(self.feed(decoder, frame + frame[:100]), [Audio(PCM, 8000)])
        self.assertEqual(decoder.pending, 100)
        self.assertAudioSocketError(a.TRUNCATED, decoder.finish)
        self.assertEqual(self.feed(decoder, frame[100:]), [Audio(PCM, 8000)])
        self.assertEqual(decoder.pending, 0)
        decoder.finish()

    def test_truncatedHeader(self) -> None:
        decoder = AudioSocketDecoder()
        self.assertEqual(self.feed(decoder, b"\x10\x01"), [])
        self.assertEqual(decoder.pending, 2)
        self.assertAudioSocketError(a.TRUNCATED, decoder.finish)

    def test_oversizeRefusedBeforePayload(self) -> None:
        """
        An oversize length fails as soon as the header is complete, before
        any of its payload has arrived.
        """
        decoder = AudioSocketDecoder(maxPayload=640)
        self.assertEqual(self.feed(decoder, a.encodeAudio(PCM)), [Audio(PCM, 8000)])
        self.assertAudioSocketError(a.TOO_LARGE, self.feed, decoder, b"\x10\x02\x82")
        self.assertAudioSocketError(a.FAILED, decoder.feed, a.encodeAudio(PCM))

    def test_defaultLimit(self) -> None:
        decoder = AudioSocketDecoder()
        self.assertAudioSocketError(a.TOO_LARGE, self.feed, decoder, b"\x10\xff\xfe")
        decoder = AudioSocketDecoder()
        self.assertAudioSocketError(a.TOO_LARGE, self.feed, decoder, b"\x02\xff\xff")
        decoder = AudioSocketDecoder()
        self.assertAudioSocketError(a.TOO_LARGE, self.feed, decoder, b"\xff\x40\x01")
        limit = a.DEFAULT_MAX_PAYLOAD
        self.assertEqual(
            self.decode(a.encodeFrame(0x18, bytes(limit))), [Audio(bytes(limit), 192000)]
        )

    def test_impossibleLengths(self) -> None:
        for header in [
            b"\x01\x00\x0f",
            b"\x01\x00\x11",
            b"\x03\x00\x00",
            b"\x03\x00\x02",
            b"\x10\x01\x41",
        ]:
            self.assertAudioSocketError(a.BAD_LENGTH, self.feed, AudioSocketDecoder(), header)

    def test_badDtmf(self) -> None:
        for payload in [b"x", b"\x00", b"\xff", b" "]:
            self.assertAudioSocketError(
                a.BAD_VALUE, self.feed, AudioSocketDecoder(), b"\x03\x00\x01" + payload
            )

    def test_failedStaysFailed(self) -> None:
        decoder = AudioSocketDecoder()
        self.assertAudioSocketError(a.BAD_LENGTH, self.feed, decoder, b"\x01\x00\x01x")
        self.assertAudioSocketError(a.FAILED, decoder.feed, b"")
        self.assertAudioSocketError(a.FAILED, decoder.feed, a.encodeHangup())


class ByteByByteDecoderTests(DecoderTests):
    """
    The same, with the stream delivered one byte per C{dataReceived}.
    """

    def feed(self, decoder: AudioSocketDecoder, data: bytes) -> list[Frame]:
        frames: list[Frame] = []
        for i in range(len(data)):
            frames += decoder.feed(data[i : i + 1])
        return frames


FRAMES = st.one_of(
    st.builds(lambda: a.encodeHangup()),
    st.uuids().map(a.encodeUuid),
    st.sampled_from("0123456789*#ABCD").map(a.encodeDtmf),
    st.tuples(
        st.binary(max_size=400).map(lambda b: b[: len(b) & ~1] or b"\0\0"),
        st.sampled_from(sorted(a.AUDIO_KINDS)),
    ).map(lambda t: a.encodeAudio(*t)),
    st.integers(0, 255).map(a.encodeError),
)


class SplitTests(ErrorAssertions):
    """
    Any split of a stream yields the same frames.
    """

    @settings(deadline=None)
    @given(st.lists(FRAMES, max_size=12), st.data())
    def test_randomSplits(self, frames: list[bytes], data: st.DataObject) -> None:
        stream = b"".join(frames)
        expected = a.decodeFrames(stream)
        self.assertEqual(len(expected), len(frames))
        cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20), label="cuts"))
        decoder = AudioSocketDecoder()
        got: list[Frame] = []
        for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
            got += decoder.feed(stream[start:end])
        self.assertEqual(got, expected)
        self.assertEqual(decoder.pending, 0)

    @settings(deadline=None)
    @given(st.binary(max_size=300), st.integers(1, 7))
    def test_fuzz(self, stream: bytes, step: int) -> None:
        """
        Arbitrary bytes produce frames or L{AudioSocketError}, nothing else.
        """
        decoder = AudioSocketDecoder(maxPayload=200)
        try:
            for i in range(0, len(stream), step):
                decoder.feed(stream[i : i + step])
        except AudioSocketError:
            pass

    def test_largestFrameFedSlowly(self) -> None:
        """
        The largest possible frame, delivered byte by byte, comes out once,
        at its last byte (the partial frame is only appended to meanwhile).
        """
        payload = bytes(range(256)) * 255 + bytes(254)
        frame = a.encodeFrame(0x10, payload)
        self.assertEqual(len(frame), 3 + a.MAX_PAYLOAD - 1)
        decoder = AudioSocketDecoder(maxPayload=a.MAX_PAYLOAD)
        for i in range(len(frame) - 1):
            if decoder.feed(frame[i : i + 1]):
                self.fail(f"frame produced early, at byte {i}")
        self.assertEqual(decoder.feed(frame[-1:]), [Audio(payload, 8000)])

    def test_decodeFrames(self) -> None:
        self.assertEqual(a.decodeFrames(a.encodeHangup() * 2), [Hangup(), Hangup()])
        self.assertAudioSocketError(a.TRUNCATED, a.decodeFrames, a.encodeAudio(PCM)[:-1])

    def test_maxPayloadSetting(self) -> None:
        self.assertRaises(ValueError, AudioSocketDecoder, 70_000)
        self.assertRaises(ValueError, AudioSocketDecoder, -1)


class EncoderTests(ErrorAssertions):
    """
    Server-side encoders send only what Asterisk accepts.
    """

    def test_audio(self) -> None:
        self.assertEqual(a.encodeAudio(PCM), b"\x10\x01\x40" + PCM)
        self.assertEqual(a.encodeAudio(bytes(640), 16000), b"\x12\x02\x80" + bytes(640))
        self.assertEqual(a.encodeAudio(bytes(960), rate=24000)[:3], b"\x13\x03\xc0")

    def test_audioErrors(self) -> None:
        self.assertAudioSocketError(a.BAD_VALUE, a.encodeAudio, PCM, 11025)
        self.assertAudioSocketError(a.BAD_LENGTH, a.encodeAudio, b"")
        self.assertAudioSocketError(a.BAD_LENGTH, a.encodeAudio, b"\x00")
        self.assertAudioSocketError(a.TOO_LARGE, a.encodeAudio, bytes(65536))

    def test_hangup(self) -> None:
        self.assertEqual(a.encodeHangup(), b"\x00\x00\x00")

    def test_sendable(self) -> None:
        self.assertEqual(a.SENDABLE_TO_ASTERISK, frozenset({0x00, *range(0x10, 0x19)}))
        self.assertEqual(a.encodeToAsterisk(0x00), b"\x00\x00\x00")
        self.assertEqual(a.encodeToAsterisk(0x16, b"\x01\x02"), b"\x16\x00\x02\x01\x02")
        for kind in (0x01, 0x02, 0x03, 0x0F, 0x19, 0xFF):
            self.assertAudioSocketError(a.NOT_SENDABLE, a.encodeToAsterisk, kind, b"\x00\x00")
        self.assertAudioSocketError(a.BAD_LENGTH, a.encodeToAsterisk, 0x10, b"")
        self.assertAudioSocketError(a.BAD_LENGTH, a.encodeToAsterisk, 0x10, b"\x00")

    def test_simulatorSide(self) -> None:
        self.assertEqual(a.encodeUuid(CALL), b"\x01\x00\x10" + CALL.bytes)
        self.assertEqual(a.encodeDtmf("#"), b"\x03\x00\x01#")
        self.assertEqual(a.encodeDtmf("b"), b"\x03\x00\x01B")
        self.assertEqual(a.encodeError(), b"\xff\x00\x00")
        self.assertEqual(a.encodeError(4), b"\xff\x00\x01\x04")
        self.assertAudioSocketError(a.BAD_VALUE, a.encodeDtmf, "12")
        self.assertAudioSocketError(a.BAD_VALUE, a.encodeDtmf, "x")
        self.assertAudioSocketError(a.BAD_VALUE, a.encodeError, 256)

    def test_frame(self) -> None:
        self.assertEqual(a.encodeFrame(0x02, b"ab"), b"\x02\x00\x02ab")
        self.assertAudioSocketError(a.BAD_VALUE, a.encodeFrame, 256)
        self.assertAudioSocketError(a.BAD_VALUE, a.encodeFrame, -1)
        self.assertAudioSocketError(a.TOO_LARGE, a.encodeFrame, 0x10, bytes(65536))
        self.assertEqual(len(a.encodeFrame(0x10, bytes(65535))), 65538)
