"""
Tests for L{rapida_twisted.providers.exotel._codec}: the Exotel messages
and L{ExotelChunker}.
"""

from __future__ import annotations

import base64
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from rapida_twisted.providers.exotel import _codec as exotel
from rapida_twisted.providers.exotel._codec import (
    PCM16,
    ULAW,
    Clear,
    Connected,
    Dtmf,
    ExotelChunker,
    Mark,
    Media,
    ProtocolError,
    Start,
    Stop,
    Unknown,
    decode,
)
from rapida_twisted.providers.twilio._codec import (
    BAD_BASE64,
    BAD_JSON,
    BAD_VALUE,
    MISSING_FIELD,
    NOT_OBJECT,
    TOO_LARGE,
    WRONG_TYPE,
)

from .test_codec_twilio import CodecTestCase

PCM = bytes(range(256)) * 6 + bytes(64)  # 1600 bytes: 100 ms at 8 kHz
B64 = base64.b64encode(PCM).decode()

# protocols.md §3.2
START = {
    "event": "start",
    "sequence_number": "1",
    "stream_sid": "MZ1",
    "start": {
        "stream_sid": "MZ1",
        "call_sid": "CA1",
        "account_sid": "AC1",
        "from": "+919876543210",
        "to": "+918047491899",
        "custom_parameters": {"key1": "value1", "token": "t0k"},
        "media_format": {"encoding": "audio/x-raw", "sample_rate": "8000", "bit_rate": "16"},
    },
}


def start(**mediaFormat: object) -> str:
    """
    The documented C{start} with another C{media_format}.
    """
    return json.dumps({**START, "start": {**START["start"], "media_format": mediaFormat}})  # type: ignore[dict-item]


class DecodeTests(CodecTestCase):
    """
    Each Exotel → server message decodes to its object.
    """

    def test_connected(self) -> None:
        self.assertEqual(decode('{"event":"connected"}'), Connected())
        self.assertEqual(
            decode('{"event":"connected","protocol":"Call","version":"1"}'),
            Connected("Call", "1"),
        )

    def test_start(self) -> None:
        message = decode(json.dumps(START))
        self.assertEqual(
            message,
            Start(
                streamSid="MZ1",
                callSid="CA1",
                accountSid="AC1",
                from_="+919876543210",
                to="+918047491899",
                customParameters={"key1": "value1", "token": "t0k"},
                encoding=PCM16,
                sampleRate=8000,
                bitRate=16,
                mediaEncoding="audio/x-raw",
            ),
        )
        assert isinstance(message, Start)
        self.assertEqual(message.token, "t0k")

    def test_startStreamSidVariants(self) -> None:
        """
        C{stream_sid} or C{streamSid}, inside C{start} or at the top level.
        """
        for outer, inner in [
            ({"stream_sid": "MZ2"}, {}),
            ({"streamSid": "MZ2"}, {}),
            ({}, {"streamSid": "MZ2"}),
            ({"stream_sid": "other"}, {"stream_sid": "MZ2"}),
        ]:
            message = decode(json.dumps({"event": "start", **outer, "start": inner}))
            assert isinstance(message, Start)
            self.assertEqual(message.streamSid, "MZ2")

    def test_startDefaults(self) -> None:
        """
        No media format: 16-bit PCM at 8 kHz.
        """
        message = decode('{"event":"start","start":{"stream_sid":"MZ"}}')
        self.assertEqual(message, Start("MZ", None, None, None, None, {}, PCM16, 8000, None, None))

    def test_encodings(self) -> None:
        for encoding, expected, rate in [
            ("audio/x-raw", PCM16, 8000),
            ("raw", PCM16, 8000),
            ("linear16", PCM16, 8000),
            ("slin", PCM16, 8000),
            ("audio/L16;rate=16000", PCM16, 16000),
            ("audio/x-mulaw", ULAW, 8000),
            ("audio/x-mulaw;rate=8000", ULAW, 8000),
            ("mulaw", ULAW, 8000),
            ("ulaw", ULAW, 8000),
            ("", PCM16, 8000),
        ]:
            message = decode(start(encoding=encoding))
            assert isinstance(message, Start)
            self.assertEqual((message.encoding, message.sampleRate), (expected, rate), encoding)

    def test_sampleRates(self) -> None:
        for value, rate in [("16000", 16000), (24000, 24000), (8000.0, 8000)]:
            message = decode(start(sample_rate=value))
            assert isinstance(message, Start)
            self.assertEqual(message.sampleRate, rate)
        message = decode(start(encoding="audio/L16;rate=16000", sample_rate="24000"))
        assert isinstance(message, Start)
        self.assertEqual(message.sampleRate, 24000)
        message = decode(start(bit_rate=128))
        assert isinstance(message, Start)
        self.assertEqual(message.bitRate, 128)

    def test_startErrors(self) -> None:
        for code, text in [
            (MISSING_FIELD, '{"event":"start"}'),
            (MISSING_FIELD, '{"event":"start","start":{}}'),
            (WRONG_TYPE, '{"event":"start","start":{"stream_sid":1}}'),
            (BAD_VALUE, start(encoding="audio/opus")),
            (BAD_VALUE, start(encoding="audio/L16;rate=fast")),
            (WRONG_TYPE, start(encoding=16)),
            (BAD_VALUE, start(sample_rate="8k")),
            (BAD_VALUE, start(sample_rate=0)),
            (WRONG_TYPE, start(sample_rate=None, bit_rate=True)),
            (
                WRONG_TYPE,
                '{"event":"start","start":{"stream_sid":"MZ","media_format":"raw"}}',
            ),
            (
                WRONG_TYPE,
                '{"event":"start","start":{"stream_sid":"MZ","custom_parameters":"a=b"}}',
            ),
        ]:
            self.assertProtocolError(code, decode, text)

    def test_media(self) -> None:
        text = json.dumps(
            {
                "event": "media",
                "sequence_number": "3",
                "stream_sid": "MZ1",
                "media": {"chunk": "2", "timestamp": "200", "payload": B64},
            }
        )
        self.assertEqual(decode(text), Media(PCM, 2, 200))
        self.assertEqual(
            decode(
                json.dumps(
                    {"event": "media", "media": {"chunk": 2, "payload": B64, "stream_sid": "MZ"}}
                )
            ),
            Media(PCM, 2, None),
        )

    def test_mediaErrors(self) -> None:
        for code, text in [
            (MISSING_FIELD, '{"event":"media"}'),
            (MISSING_FIELD, '{"event":"media","media":{}}'),
            (BAD_BASE64, '{"event":"media","media":{"payload":"%%%%"}}'),
            (BAD_VALUE, '{"event":"media","media":{"payload":"","chunk":"x"}}'),
        ]:
            self.assertProtocolError(code, decode, text)

    def test_dtmf(self) -> None:
        self.assertEqual(
            decode(
                '{"event":"dtmf","sequence_number":"7","stream_sid":"MZ",'
                '"dtmf":{"digit":"5","duration":"100"}}'
            ),
            Dtmf("5", 100),
        )
        self.assertProtocolError(BAD_VALUE, decode, '{"event":"dtmf","dtmf":{"digit":"?"}}')

    def test_mark(self) -> None:
        self.assertEqual(
            decode(
                '{"event":"mark","sequence_number":"15","stream_sid":"MZ","mark":{"name":"my-label"}}'
            ),
            Mark("my-label"),
        )
        self.assertProtocolError(MISSING_FIELD, decode, '{"event":"mark","mark":{}}')

    def test_clear(self) -> None:
        self.assertEqual(decode('{"event":"clear","stream_sid":"MZ"}'), Clear())

    def test_stop(self) -> None:
        self.assertEqual(
            decode(
                '{"event":"stop","sequence_number":"20","stream_sid":"MZ",'
                '"stop":{"call_sid":"CA1","account_sid":"AC1","reason":"callended"}}'
            ),
            Stop("CA1", "AC1", "callended"),
        )
        self.assertEqual(decode('{"event":"stop"}'), Stop())
        self.assertProtocolError(WRONG_TYPE, decode, '{"event":"stop","stop":{"reason":1}}')

    def test_unknown(self) -> None:
        self.assertEqual(decode('{"event":"ping"}'), Unknown("ping", {"event": "ping"}))

    def test_malformed(self) -> None:
        self.assertProtocolError(BAD_JSON, decode, "media")
        self.assertProtocolError(NOT_OBJECT, decode, "[1]")
        self.assertProtocolError(MISSING_FIELD, decode, "{}")
        self.assertProtocolError(TOO_LARGE, decode, "{" + " " * exotel.MAX_MESSAGE_SIZE + "}")

    @settings(deadline=None)
    @given(
        st.sampled_from(["connected", "start", "media", "dtmf", "mark", "clear", "stop"]),
        st.dictionaries(
            st.sampled_from(["start", "media", "dtmf", "mark", "stop", "stream_sid"]),
            st.recursive(
                st.none() | st.booleans() | st.integers() | st.text(max_size=12),
                lambda c: (
                    st.lists(c, max_size=3)
                    | st.dictionaries(
                        st.sampled_from(
                            [
                                "stream_sid",
                                "streamSid",
                                "media_format",
                                "encoding",
                                "sample_rate",
                                "bit_rate",
                                "payload",
                                "chunk",
                                "digit",
                                "name",
                                "custom_parameters",
                            ]
                        ),
                        c,
                        max_size=4,
                    )
                ),
                max_leaves=10,
            ),
        ),
    )
    def test_fuzzStructure(self, event: str, obj: dict[str, object]) -> None:
        try:
            decode(json.dumps({**obj, "event": event}))
        except ProtocolError:
            pass


class EncodeTests(CodecTestCase):
    """
    Server → Exotel messages (§3.3).
    """

    def test_media(self) -> None:
        self.assertEqual(
            json.loads(exotel.encodeMedia("MZ1", PCM)),
            {"event": "media", "stream_sid": "MZ1", "media": {"payload": B64}},
        )

    def test_mediaCounters(self) -> None:
        text = exotel.encodeMedia("MZ1", PCM, sequenceNumber=4, chunk=3, timestamp=600)
        self.assertEqual(
            json.loads(text),
            {
                "event": "media",
                "stream_sid": "MZ1",
                "sequence_number": "4",
                "media": {"chunk": "3", "timestamp": "600", "payload": B64},
            },
        )
        self.assertEqual(decode(text), Media(PCM, 3, 600))

    def test_mark(self) -> None:
        text = exotel.encodeMark("MZ1", "turn-3-end")
        self.assertEqual(
            json.loads(text), {"event": "mark", "stream_sid": "MZ1", "mark": {"name": "turn-3-end"}}
        )

    def test_clear(self) -> None:
        self.assertEqual(exotel.encodeClear("MZ1"), '{"event":"clear","stream_sid":"MZ1"}')


class ChunkerTests(CodecTestCase):
    """
    L{ExotelChunker} follows §3.5 and holds audio back no longer than that
    forces.
    """

    def test_belowMinimum(self) -> None:
        chunker = ExotelChunker()
        self.assertEqual(chunker.feed(bytes(3199)), [])
        self.assertEqual(chunker.pending, 3199)
        self.assertEqual(chunker.feed(b"\x01"), [bytes(3199) + b"\x01"])
        self.assertEqual(chunker.pending, 0)

    def test_realTimeFrames(self) -> None:
        """
        20 ms frames at 8 kHz (320 bytes): a chunk every 10 frames.
        """
        chunker = ExotelChunker()
        out = [chunker.feed(bytes([i]) * 320) for i in range(25)]
        self.assertEqual([len(c) for c in out], [0] * 9 + [1] + [0] * 9 + [1] + [0] * 5)
        self.assertEqual(out[9][0], b"".join(bytes([i]) * 320 for i in range(10)))
        self.assertEqual(chunker.pending, 5 * 320)

    def test_everyWholeUnitGoes(self) -> None:
        """
        Once the minimum is reached, all whole units go out; only a tail
        shorter than a unit waits.
        """
        chunker = ExotelChunker()
        chunks = chunker.feed(bytes(5000))
        self.assertEqual([len(c) for c in chunks], [4800])
        self.assertEqual(chunker.pending, 200)

    def test_largeBurstSplitEvenly(self) -> None:
        chunker = ExotelChunker()
        data = bytes(range(256)) * 1000 + bytes(100)  # 800 units and 100 bytes
        chunks = chunker.feed(data)
        self.assertEqual([len(c) for c in chunks], [85440, 85440, 85120])
        self.assertEqual(b"".join(chunks), data[:256000])
        self.assertEqual(chunker.pending, 100)

    def test_smallMaximum(self) -> None:
        """
        With the chunk size setting at its minimum every chunk is 3.2 KB.
        """
        chunker = ExotelChunker(minimum=3200, maximum=3200)
        self.assertEqual([len(c) for c in chunker.feed(bytes(8000))], [3200, 3200])
        self.assertEqual(chunker.pending, 1600)

    def test_flushPads(self) -> None:
        chunker = ExotelChunker()
        chunker.feed(b"\x01" * 1000)
        self.assertEqual(chunker.flush(), [b"\x01" * 1000 + bytes(2200)])
        self.assertEqual(chunker.pending, 0)
        self.assertEqual(chunker.flush(), [])

    def test_flushToUnit(self) -> None:
        chunker = ExotelChunker(silence=b"\xff")
        chunker.feed(b"\x01" * 1000)
        self.assertEqual(chunker.flush(padToMinimum=False), [b"\x01" * 1000 + b"\xff" * 280])

    def test_flushAfterChunks(self) -> None:
        chunker = ExotelChunker()
        self.assertEqual(chunker.flush(), [])
        chunker.feed(bytes(3300))
        self.assertEqual(chunker.pending, 100)
        self.assertEqual([len(c) for c in chunker.flush()], [3200])

    def test_clear(self) -> None:
        chunker = ExotelChunker()
        chunker.feed(bytes(1000))
        self.assertEqual(chunker.clear(), 1000)
        self.assertEqual(chunker.pending, 0)
        self.assertEqual(chunker.feed(bytes(3200)), [bytes(3200)])

    def test_badSettings(self) -> None:
        for kwargs in [
            {"minimum": 3000},
            {"maximum": 100_000},
            {"minimum": 6400, "maximum": 3200},
            {"minimum": 0},
            {"silence": b""},
            {"silence": b"\x00\x00"},
        ]:
            self.assertRaises(ValueError, ExotelChunker, **kwargs)  # type: ignore[arg-type]

    @settings(deadline=None)
    @given(
        st.sampled_from([(3200, exotel.MAX_CHUNK), (3200, 3200), (3200, 4800), (640, 960)]),
        st.lists(st.integers(0, 40_000), max_size=20),
    )
    def test_rules(self, limits: tuple[int, int], sizes: list[int]) -> None:
        """
        Whatever is fed: every chunk obeys the rules, the bytes come out in
        order, and no more than the minimum is ever held back.
        """
        minimum, maximum = limits
        chunker = ExotelChunker(minimum, maximum)
        fed = bytearray()
        sent = bytearray()
        for i, size in enumerate(sizes):
            data = bytes([i % 251]) * size
            fed += data
            for chunk in chunker.feed(data):
                self.assertEqual(len(chunk) % 320, 0)
                self.assertTrue(minimum <= len(chunk) <= maximum, len(chunk))
                sent += chunk
            self.assertLess(chunker.pending, minimum)
            self.assertEqual(len(sent) + chunker.pending, len(fed))
        tail = chunker.flush()
        for chunk in tail:
            self.assertEqual(len(chunk) % 320, 0)
            self.assertTrue(minimum <= len(chunk) <= maximum)
            sent += chunk
        self.assertEqual(bytes(sent[: len(fed)]), bytes(fed))
        self.assertEqual(sent[len(fed) :], bytes(len(sent) - len(fed)))
