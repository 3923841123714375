"""
Tests for L{rapida_twisted.providers.twilio._codec}: the Twilio Media
Streams messages and the JSON helpers the other provider codecs share.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import operator
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from rapida_twisted.providers.twilio import _codec as twilio
from rapida_twisted.providers.twilio._codec import (
    BAD_BASE64,
    BAD_JSON,
    BAD_VALUE,
    MISSING_FIELD,
    NOT_OBJECT,
    TOO_LARGE,
    WRONG_TYPE,
    Connected,
    Dtmf,
    Mark,
    Media,
    ProtocolError,
    Start,
    Stop,
    Unknown,
    decode,
)

SID = "MZ18ad3ab5a668481ce02b83e7395059f0"
PAYLOAD = bytes(range(160))
B64 = base64.b64encode(PAYLOAD).decode()

# The documented examples (protocols.md §1.5), and the order seen in the wild
# (streamSid after media).
CONNECTED = '{"event":"connected","protocol":"Call","version":"1.0.0"}'
START = json.dumps(
    {
        "event": "start",
        "sequenceNumber": "1",
        "streamSid": SID,
        "start": {
            "accountSid": "AC1",
            "streamSid": SID,
            "callSid": "CA1",
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": {"tenant": "acme", "token": "t0k"},
        },
    }
)
MEDIA = (
    '{"event":"media","sequenceNumber":"4","streamSid":"' + SID + '",'
    '"media":{"track":"inbound","chunk":"2","timestamp":"5","payload":"' + B64 + '"}}'
)
MEDIA_WILD = (
    '{"event":"media","sequenceNumber":"4","media":{"track":"inbound","chunk":"2",'
    '"timestamp":"5","payload":"' + B64 + '"},"streamSid":"' + SID + '"}'
)
DTMF = '{"event":"dtmf","streamSid":"MZ1","sequenceNumber":"5","dtmf":{"track":"inbound_track","digit":"1"}}'
MARK = '{"event":"mark","sequenceNumber":"4","streamSid":"MZ1","mark":{"name":"my label"}}'
STOP = '{"event":"stop","sequenceNumber":"5","streamSid":"MZ1","stop":{"accountSid":"AC1","callSid":"CA1"}}'


EVENTS = {"connected", "start", "media", "mark", "dtmf", "stop", "other"}
KEYS = [
    "start",
    "media",
    "mark",
    "dtmf",
    "stop",
    "payload",
    "chunk",
    "name",
    "digit",
    "streamSid",
    "mediaFormat",
    "sampleRate",
    "channels",
    "customParameters",
    "tracks",
    "timestamp",
    "track",
    "encoding",
]
JSON_OBJECTS = st.dictionaries(
    st.sampled_from(KEYS),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.sampled_from(KEYS), children, max_size=4)
        ),
        max_leaves=12,
    ),
    max_size=6,
)


def media(**fields: object) -> str:
    """
    A C{media} message with C{fields} as its C{media} object.
    """
    return json.dumps({"event": "media", "streamSid": SID, "media": fields})


class CodecTestCase(SynchronousTestCase):
    """
    Base: assert a call fails with a given L{ProtocolError} code.
    """

    def assertProtocolError(
        self, code: str, func: Callable[..., object], *args: object
    ) -> ProtocolError:
        error = self.assertRaises(ProtocolError, func, *args)
        self.assertEqual(error.code, code, str(error))
        return error


class DecodeTests(CodecTestCase):
    """
    Each Twilio → server message decodes to its object.
    """

    def test_connected(self) -> None:
        self.assertEqual(decode(CONNECTED), Connected("Call", "1.0.0"))
        self.assertEqual(decode('{"event":"connected"}'), Connected())

    def test_start(self) -> None:
        start = decode(START)
        self.assertEqual(
            start,
            Start(
                streamSid=SID,
                callSid="CA1",
                accountSid="AC1",
                tracks=("inbound",),
                encoding="audio/x-mulaw",
                sampleRate=8000,
                channels=1,
                customParameters={"tenant": "acme", "token": "t0k"},
            ),
        )
        assert isinstance(start, Start)
        self.assertEqual(start.token, "t0k")

    def test_startDefaults(self) -> None:
        """
        Only the stream sid is required (top level or inside C{start}); the
        media format defaults to Twilio's fixed one.
        """
        start = decode('{"event":"start","streamSid":"MZ9","start":{}}')
        self.assertEqual(
            start,
            Start("MZ9", None, None, ("inbound",), "audio/x-mulaw", 8000, 1, {}),
        )
        assert isinstance(start, Start)
        self.assertIsNone(start.token)

    def test_startNumbersAsStrings(self) -> None:
        start = decode(
            '{"event":"start","start":{"streamSid":"MZ9","mediaFormat":'
            '{"sampleRate":"16000","channels":"1"},"customParameters":{"n":1,"b":true}}}'
        )
        assert isinstance(start, Start)
        self.assertEqual((start.sampleRate, start.channels), (16000, 1))
        self.assertEqual(dict(start.customParameters), {"n": "1", "b": "true"})

    def test_startErrors(self) -> None:
        for code, text in [
            (MISSING_FIELD, '{"event":"start"}'),
            (WRONG_TYPE, '{"event":"start","start":[]}'),
            (MISSING_FIELD, '{"event":"start","start":{}}'),
            (WRONG_TYPE, '{"event":"start","start":{"streamSid":5}}'),
            (WRONG_TYPE, '{"event":"start","start":{"streamSid":"MZ","tracks":"inbound"}}'),
            (WRONG_TYPE, '{"event":"start","start":{"streamSid":"MZ","tracks":[1]}}'),
            (WRONG_TYPE, '{"event":"start","start":{"streamSid":"MZ","mediaFormat":"x"}}'),
            (
                BAD_VALUE,
                '{"event":"start","start":{"streamSid":"MZ","mediaFormat":{"sampleRate":"fast"}}}',
            ),
            (
                BAD_VALUE,
                '{"event":"start","start":{"streamSid":"MZ","mediaFormat":{"sampleRate":0}}}',
            ),
            (
                BAD_VALUE,
                '{"event":"start","start":{"streamSid":"MZ","mediaFormat":{"channels":-1}}}',
            ),
            (
                WRONG_TYPE,
                '{"event":"start","start":{"streamSid":"MZ","customParameters":{"a":{"b":1}}}}',
            ),
            (
                WRONG_TYPE,
                '{"event":"start","start":{"streamSid":"MZ","customParameters":["token"]}}',
            ),
        ]:
            self.assertProtocolError(code, decode, text)

    def test_media(self) -> None:
        expected = Media(PAYLOAD, chunk=2, timestamp=5, track="inbound")
        self.assertEqual(decode(MEDIA), expected)
        self.assertEqual(decode(MEDIA_WILD), expected)
        self.assertEqual(decode(MEDIA.encode("utf-8")), expected)

    def test_mediaOptionalFields(self) -> None:
        self.assertEqual(decode(media(payload="")), Media(b""))
        self.assertEqual(
            decode(media(payload=B64, chunk=7, timestamp=140.0)),
            Media(PAYLOAD, 7, 140, None),
        )

    def test_mediaErrors(self) -> None:
        for code, text in [
            (MISSING_FIELD, '{"event":"media"}'),
            (WRONG_TYPE, '{"event":"media","media":"AAAA"}'),
            (MISSING_FIELD, media()),
            (MISSING_FIELD, media(payload=None)),
            (WRONG_TYPE, media(payload=5)),
            (BAD_BASE64, media(payload="not-base64!")),
            (BAD_BASE64, media(payload="AAA")),
            (BAD_BASE64, media(payload="AA==AA")),
            (BAD_BASE64, media(payload="AAAA\nAAAA")),
            (BAD_BASE64, media(payload="ÀÀÀÀ")),
            (BAD_VALUE, media(payload=B64, chunk="two")),
            (WRONG_TYPE, media(payload=B64, chunk=True)),
            (WRONG_TYPE, media(payload=B64, timestamp=1.5)),
            (WRONG_TYPE, media(payload=B64, timestamp=[1])),
            (WRONG_TYPE, media(payload=B64, track=1)),
        ]:
            self.assertProtocolError(code, decode, text)

    def test_dtmf(self) -> None:
        self.assertEqual(decode(DTMF), Dtmf("1"))
        self.assertEqual(decode('{"event":"dtmf","dtmf":{"digit":"a"}}'), Dtmf("A"))
        self.assertEqual(decode('{"event":"dtmf","dtmf":{"digit":7}}'), Dtmf("7"))
        self.assertEqual(decode('{"event":"dtmf","dtmf":{"digit":"#"}}'), Dtmf("#"))

    def test_dtmfErrors(self) -> None:
        for code, text in [
            (MISSING_FIELD, '{"event":"dtmf"}'),
            (MISSING_FIELD, '{"event":"dtmf","dtmf":{}}'),
            (BAD_VALUE, '{"event":"dtmf","dtmf":{"digit":"x"}}'),
            (BAD_VALUE, '{"event":"dtmf","dtmf":{"digit":"12"}}'),
            (BAD_VALUE, '{"event":"dtmf","dtmf":{"digit":""}}'),
            (WRONG_TYPE, '{"event":"dtmf","dtmf":{"digit":null}}'),
            (WRONG_TYPE, '{"event":"dtmf","dtmf":{"digit":-1}}'),
        ]:
            self.assertProtocolError(code, decode, text)

    def test_mark(self) -> None:
        self.assertEqual(decode(MARK), Mark("my label"))
        self.assertProtocolError(MISSING_FIELD, decode, '{"event":"mark"}')
        self.assertProtocolError(MISSING_FIELD, decode, '{"event":"mark","mark":{}}')
        self.assertProtocolError(WRONG_TYPE, decode, '{"event":"mark","mark":{"name":3}}')

    def test_stop(self) -> None:
        self.assertEqual(decode(STOP), Stop("AC1", "CA1"))
        self.assertEqual(decode('{"event":"stop"}'), Stop())
        self.assertProtocolError(WRONG_TYPE, decode, '{"event":"stop","stop":1}')

    def test_unknown(self) -> None:
        """
        An unknown event name is not an error: it decodes to L{Unknown}
        holding the whole (read-only) object.
        """
        message = decode('{"event":"transcript","text":"hi"}')
        self.assertEqual(message, Unknown("transcript", {"event": "transcript", "text": "hi"}))
        assert isinstance(message, Unknown)
        self.assertRaises(TypeError, operator.setitem, message.raw, "x", 1)

    def test_eventErrors(self) -> None:
        self.assertProtocolError(MISSING_FIELD, decode, '{"streamSid":"MZ"}')
        self.assertProtocolError(MISSING_FIELD, decode, '{"event":null}')
        self.assertProtocolError(WRONG_TYPE, decode, '{"event":["media"]}')
        self.assertProtocolError(WRONG_TYPE, decode, '{"event":{"a":1}}')

    def test_unknownKeysIgnored(self) -> None:
        self.assertEqual(
            decode('{"event":"mark","mark":{"name":"m","new":1},"extra":[1,2]}'), Mark("m")
        )

    def test_immutable(self) -> None:
        message = decode(START)
        self.assertRaises(dataclasses.FrozenInstanceError, setattr, message, "streamSid", "x")
        assert isinstance(message, Start)
        self.assertRaises(TypeError, operator.setitem, message.customParameters, "token", "x")


class MalformedTests(CodecTestCase):
    """
    Input that is not a JSON object raises L{ProtocolError}, never another
    exception.
    """

    def test_badJson(self) -> None:
        for text in ["", "   ", "{", '{"event":"media"', "{'event':'media'}", "nope", '{"a":1}x']:
            self.assertProtocolError(BAD_JSON, decode, text)

    def test_whitespaceAround(self) -> None:
        self.assertEqual(decode(' \n{"event":"stop"}\r\n '), Stop())

    def test_notObject(self) -> None:
        for text in ["[]", '"media"', "1", "null", "true", '[{"event":"media"}]']:
            self.assertProtocolError(NOT_OBJECT, decode, text)

    def test_badUtf8(self) -> None:
        self.assertProtocolError(BAD_JSON, decode, b'{"event":"\xff"}')

    def test_controlCharacter(self) -> None:
        self.assertProtocolError(BAD_JSON, decode, '{"event":"mark\x00"}')

    def test_oversized(self) -> None:
        big = media(payload=base64.b64encode(bytes(60_000)).decode())
        self.assertProtocolError(TOO_LARGE, decode, big)
        self.assertProtocolError(TOO_LARGE, decode, big.encode())
        self.assertProtocolError(TOO_LARGE, decode, MEDIA, 100)
        self.assertIsInstance(decode(big, 10**6), Media)

    def test_deepNesting(self) -> None:
        deep = "[" * 50_000 + "]" * 50_000
        self.assertProtocolError(BAD_JSON, decode, deep, len(deep))
        deep = '{"a":' * 20_000 + "1" + "}" * 20_000
        self.assertProtocolError(BAD_JSON, decode, deep, len(deep))

    def test_errorShape(self) -> None:
        error = self.assertProtocolError(MISSING_FIELD, decode, '{"event":"mark","mark":{}}')
        self.assertIsInstance(error, ValueError)
        self.assertEqual(error.reason, "mark.name is required")
        self.assertEqual(str(error), "missing_field: mark.name is required")

    @settings(deadline=None)
    @given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
    def test_fuzzText(self, text: str | bytes) -> None:
        """
        Arbitrary input decodes or raises L{ProtocolError}, nothing else.
        """
        try:
            decode(text)
        except ProtocolError:
            pass

    @settings(deadline=None)
    @given(st.sampled_from(sorted(EVENTS)), JSON_OBJECTS)
    def test_fuzzStructure(self, event: str, obj: dict[str, object]) -> None:
        """
        Known events with arbitrary bodies decode or raise L{ProtocolError}.
        """
        try:
            decode(json.dumps({**obj, "event": event}))
        except ProtocolError:
            pass


class EncodeTests(SynchronousTestCase):
    """
    Server → Twilio messages are exactly the documented JSON (§1.6).
    """

    def test_media(self) -> None:
        text = twilio.encodeMedia(SID, PAYLOAD)
        self.assertEqual(
            json.loads(text), {"event": "media", "streamSid": SID, "media": {"payload": B64}}
        )
        self.assertNotIn(" ", text)

    def test_mediaEscapesSid(self) -> None:
        text = twilio.encodeMedia('M"Z\\1', b"\xff")
        self.assertEqual(json.loads(text)["streamSid"], 'M"Z\\1')

    def test_mark(self) -> None:
        text = twilio.encodeMark(SID, 'utt "17" ☎')
        self.assertEqual(
            json.loads(text),
            {"event": "mark", "streamSid": SID, "mark": {"name": 'utt "17" ☎'}},
        )
        self.assertEqual(decode(text), Mark('utt "17" ☎'))

    def test_clear(self) -> None:
        self.assertEqual(twilio.encodeClear(SID), '{"event":"clear","streamSid":"' + SID + '"}')
        self.assertEqual(json.loads(twilio.encodeClear("a b"))["streamSid"], "a b")

    @given(st.binary(max_size=400), st.text(max_size=40))
    def test_mediaRoundTrip(self, payload: bytes, sid: str) -> None:
        """
        What we send is what a Twilio-side decoder reads back.
        """
        self.assertEqual(decode(twilio.encodeMedia(sid, payload)), Media(payload))


class HelperTests(CodecTestCase):
    """
    The shared helpers the Vonage and Exotel codecs build on.
    """

    def test_toInt(self) -> None:
        self.assertEqual(twilio.toInt(5, "x"), 5)
        self.assertEqual(twilio.toInt("42", "x"), 42)
        self.assertEqual(twilio.toInt(8000.0, "x"), 8000)
        self.assertProtocolError(BAD_VALUE, twilio.toInt, "4 2", "x")
        self.assertProtocolError(BAD_VALUE, twilio.toInt, "9" * 5000, "x")
        self.assertProtocolError(WRONG_TYPE, twilio.toInt, False, "x")
        self.assertProtocolError(WRONG_TYPE, twilio.toInt, float("nan"), "x")
        self.assertProtocolError(WRONG_TYPE, twilio.toInt, float("inf"), "x")

    def test_splitMediaType(self) -> None:
        self.assertEqual(
            twilio.splitMediaType("Audio/L16 ; Rate=16000;x"),
            ("audio/l16", {"rate": "16000", "x": ""}),
        )
        self.assertEqual(twilio.splitMediaType(""), ("", {}))

    def test_quote(self) -> None:
        for value in ["MZ1", "", "a b", 'q"', "é", "\n"]:
            self.assertEqual(json.loads(twilio.quote(value)), value)

    def test_dtmfDigits(self) -> None:
        self.assertEqual(twilio.dtmfDigits("12*#abcd", "d"), "12*#ABCD")
        self.assertProtocolError(BAD_VALUE, twilio.dtmfDigits, "1 2", "d")
        self.assertProtocolError(BAD_VALUE, twilio.dtmfDigits, "", "d")
        self.assertProtocolError(BAD_VALUE, twilio.dtmfDigit, "12", "d")
