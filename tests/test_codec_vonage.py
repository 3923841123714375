"""
Tests for L{rapida_twisted.providers.vonage._codec}.
"""

from __future__ import annotations

import json
import operator

from hypothesis import given, settings
from hypothesis import strategies as st

from rapida_twisted.providers.twilio._codec import (
    BAD_AUDIO,
    BAD_JSON,
    BAD_VALUE,
    MISSING_FIELD,
    NOT_OBJECT,
    TOO_LARGE,
    WRONG_TYPE,
)
from rapida_twisted.providers.vonage import _codec as vonage
from rapida_twisted.providers.vonage._codec import (
    Cleared,
    Connected,
    Dtmf,
    Notify,
    ProtocolError,
    Unknown,
    decode,
    decodeAudio,
)

from .test_codec_twilio import CodecTestCase

CONNECTED = (
    '{"event":"websocket:connected","content-type":"audio/l16;rate=16000",'
    '"call_uuid":"aaaaaaaa-bbbb","lang":"en-GB","token":"t0k"}'
)


class ConnectedTests(CodecTestCase):
    """
    C{websocket:connected}: content type, rate and flattened NCCO headers.
    """

    def test_documented(self) -> None:
        message = decode(CONNECTED)
        self.assertEqual(
            message,
            Connected(
                "audio/l16;rate=16000",
                16000,
                {"call_uuid": "aaaaaaaa-bbbb", "lang": "en-GB", "token": "t0k"},
            ),
        )
        assert isinstance(message, Connected)
        self.assertEqual(message.token, "t0k")
        self.assertRaises(TypeError, operator.setitem, message.headers, "token", "x")

    def test_rates(self) -> None:
        for contentType, rate in [
            ("audio/l16;rate=8000", 8000),
            ("audio/L16; rate=16000", 16000),
            ("AUDIO/l16 ;Rate = 24000 ; x=y", 24000),
        ]:
            message = decode(
                json.dumps({"event": "websocket:connected", "content-type": contentType})
            )
            assert isinstance(message, Connected)
            self.assertEqual(message.sampleRate, rate)
            self.assertEqual(message.headers, {})
            self.assertIsNone(message.token)

    def test_noContentType(self) -> None:
        self.assertEqual(decode('{"event":"websocket:connected"}'), Connected(None, None, {}))

    def test_nonStringToken(self) -> None:
        message = decode('{"event":"websocket:connected","token":5,"extra":{"a":1}}')
        assert isinstance(message, Connected)
        self.assertIsNone(message.token)
        self.assertEqual(message.headers, {"token": 5, "extra": {"a": 1}})

    def test_badContentType(self) -> None:
        for contentType in [
            "audio/pcmu;rate=8000",
            "audio/l16",
            "audio/l16;rate=",
            "audio/l16;rate=fast",
            "audio/l16;rate=0",
            "audio/l16;rate=9999999",
            "audio/l16;rate=١٦٠٠٠",
        ]:
            self.assertProtocolError(
                BAD_VALUE,
                decode,
                json.dumps({"event": "websocket:connected", "content-type": contentType}),
            )
        self.assertProtocolError(
            WRONG_TYPE, decode, '{"event":"websocket:connected","content-type":16000}'
        )


class EventTests(CodecTestCase):
    """
    DTMF, cleared, notify and unknown events.
    """

    def test_dtmfDocumented(self) -> None:
        self.assertEqual(
            decode('{"event":"websocket:dtmf","digit":"5","duration":260}'), Dtmf(("5",), 260)
        )

    def test_dtmfNested(self) -> None:
        self.assertEqual(
            decode('{"event":"websocket:dtmf","dtmf":{"digit":"#","duration":"100"}}'),
            Dtmf(("#",), 100),
        )

    def test_dtmfDigits(self) -> None:
        """
        A multi-digit C{dtmf.digits} string is split into digits.
        """
        self.assertEqual(
            decode('{"event":"websocket:dtmf","dtmf":{"digits":"12*a"}}'),
            Dtmf(("1", "2", "*", "A"), None),
        )

    def test_dtmfErrors(self) -> None:
        for code, text in [
            (MISSING_FIELD, '{"event":"websocket:dtmf"}'),
            (MISSING_FIELD, '{"event":"websocket:dtmf","dtmf":{}}'),
            (WRONG_TYPE, '{"event":"websocket:dtmf","dtmf":"5"}'),
            (BAD_VALUE, '{"event":"websocket:dtmf","digit":"x"}'),
            (BAD_VALUE, '{"event":"websocket:dtmf","dtmf":{"digits":""}}'),
            (WRONG_TYPE, '{"event":"websocket:dtmf","digit":["5"]}'),
            (BAD_VALUE, '{"event":"websocket:dtmf","digit":"5","duration":"long"}'),
        ]:
            self.assertProtocolError(code, decode, text)

    def test_cleared(self) -> None:
        self.assertEqual(decode('{"event":"websocket:cleared"}'), Cleared())

    def test_notify(self) -> None:
        self.assertEqual(
            decode('{"event":"websocket:notify","payload":{"mark":"utt-3"}}'),
            Notify({"mark": "utt-3"}),
        )
        self.assertEqual(decode('{"event":"websocket:notify"}'), Notify(None))

    def test_unknown(self) -> None:
        self.assertEqual(
            decode('{"event":"websocket:error","x":1}'),
            Unknown("websocket:error", {"event": "websocket:error", "x": 1}),
        )
        self.assertEqual(decode('{"event":"stop"}'), Unknown("stop", {"event": "stop"}))

    def test_malformed(self) -> None:
        self.assertProtocolError(BAD_JSON, decode, '{"event":')
        self.assertProtocolError(BAD_JSON, decode, b"\xc3\x28")
        self.assertProtocolError(NOT_OBJECT, decode, '["websocket:connected"]')
        self.assertProtocolError(MISSING_FIELD, decode, '{"digit":"5"}')
        self.assertProtocolError(WRONG_TYPE, decode, '{"event":5}')
        self.assertProtocolError(TOO_LARGE, decode, CONNECTED, 20)
        self.assertProtocolError(TOO_LARGE, decode, "{" + " " * 70_000 + "}")

    @settings(deadline=None)
    @given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
    def test_fuzz(self, text: str | bytes) -> None:
        try:
            decode(text)
        except ProtocolError:
            pass

    @settings(deadline=None)
    @given(
        st.sampled_from(["websocket:connected", "websocket:dtmf", "websocket:notify", "x"]),
        st.dictionaries(
            st.sampled_from(["content-type", "digit", "digits", "dtmf", "duration", "payload"]),
            st.recursive(
                st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                lambda c: (
                    st.lists(c, max_size=3)
                    | st.dictionaries(st.sampled_from(["digit", "digits", "duration"]), c)
                ),
                max_leaves=8,
            ),
        ),
    )
    def test_fuzzStructure(self, event: str, obj: dict[str, object]) -> None:
        try:
            decode(json.dumps({**obj, "event": event}))
        except ProtocolError:
            pass


class AudioTests(CodecTestCase):
    """
    Binary frames are 16-bit PCM: validated, passed through unchanged.
    """

    def test_expectedSizes(self) -> None:
        for rate, size in vonage.FRAME_BYTES.items():
            self.assertEqual(vonage.frameBytes(rate), size)
            frame = bytes(size)
            self.assertIs(decodeAudio(frame), frame)

    def test_evenSizesAccepted(self) -> None:
        self.assertEqual(decodeAudio(b""), b"")
        self.assertEqual(decodeAudio(bytes(100)), bytes(100))

    def test_oddLength(self) -> None:
        for size in (1, 319, 641):
            self.assertProtocolError(BAD_AUDIO, decodeAudio, bytes(size))

    def test_oversized(self) -> None:
        self.assertProtocolError(TOO_LARGE, decodeAudio, bytes(vonage.MAX_AUDIO_SIZE + 2))
        self.assertProtocolError(TOO_LARGE, decodeAudio, bytes(1000), 640)

    def test_encodeAudio(self) -> None:
        frame = bytes(640)
        self.assertIs(vonage.encodeAudio(frame, 16000), frame)
        self.assertEqual(vonage.encodeAudio(bytes(320), 8000), bytes(320))
        self.assertRaises(ValueError, vonage.encodeAudio, bytes(320), 16000)
        self.assertRaises(ValueError, vonage.encodeAudio, bytes(639), 16000)


class CommandTests(CodecTestCase):
    """
    Text commands to Vonage.
    """

    def test_clear(self) -> None:
        self.assertEqual(vonage.encodeClear(), '{"action":"clear"}')

    def test_notify(self) -> None:
        text = vonage.encodeNotify({"mark": "utt-3", "n": 1})
        self.assertEqual(
            json.loads(text), {"action": "notify", "payload": {"mark": "utt-3", "n": 1}}
        )
        self.assertNotIn(" ", text)

    def test_notifyRoundTrip(self) -> None:
        """
        Vonage echoes the payload back; decoding the echo returns it.
        """
        payload = {"mark": "utt-3"}
        echo = json.loads(vonage.encodeNotify(payload))
        self.assertEqual(
            decode(json.dumps({"event": "websocket:notify", "payload": echo["payload"]})),
            Notify(payload),
        )
