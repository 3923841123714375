"""
Tests for L{rapida_twisted.asterisk._chanws}: chan_websocket control
messages in both control formats.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from rapida_twisted.asterisk import _chanws as c
from rapida_twisted.asterisk._chanws import (
    ChanWsError,
    Command,
    ControlFormat,
    DtmfEnd,
    ErrorEvent,
    Event,
    MediaBufferingCompleted,
    MediaMarkProcessed,
    MediaStart,
    MediaXoff,
    MediaXon,
    QueueDrained,
    Status,
    Unknown,
    decodeEvent,
    encodeCommand,
)

PLAIN = ControlFormat.PLAIN
JSON = ControlFormat.JSON

# What a live Asterisk 23.4.1 sent (protocols.md §5.9) and the JSON shape of §5.5.
START_PLAIN = (
    "MEDIA_START connection_id:media_connection1 channel:WebSocket/media_connection1/0x7f3c"
    " channel_id:pbx1-1234.99 format:ulaw optimal_frame_size:160 ptime:20"
)
START_JSON = json.dumps(
    {
        "event": "MEDIA_START",
        "connection_id": "e226",
        "channel": "WebSocket/connection1/0x7f3c",
        "channel_id": "pbx1-1234.99",
        "format": "slin16",
        "optimal_frame_size": 640,
        "ptime": 20,
        "channel_variables": {"CONTEXT_ID": "abc"},
    },
    indent=2,
)


class ChanWsTestCase(SynchronousTestCase):
    """
    Base: assert a L{ChanWsError} with a given code.
    """

    def assertChanWsError(
        self, code: str, func: Callable[..., object], *args: object
    ) -> ChanWsError:
        error = self.assertRaises(ChanWsError, func, *args)
        self.assertEqual(error.code, code, str(error))
        return error


class PlainTextEventTests(ChanWsTestCase):
    """
    Events in the plain-text control format (the default).
    """

    def test_mediaStart(self) -> None:
        self.assertEqual(
            decodeEvent(START_PLAIN),
            MediaStart(
                connectionId="media_connection1",
                channel="WebSocket/media_connection1/0x7f3c",
                channelId="pbx1-1234.99",
                format="ulaw",
                optimalFrameSize=160,
                ptime=20,
                channelVariables={},
            ),
        )

    def test_mediaStartOld(self) -> None:
        """
        20.16 / 21.11 / 22.6 send no channel_id; ptime defaults to 20.
        """
        message = decodeEvent(
            "MEDIA_START connection_id:x channel:W/x/0 format:slin optimal_frame_size:320"
        )
        assert isinstance(message, MediaStart)
        self.assertIsNone(message.channelId)
        self.assertEqual(
            (message.format, message.optimalFrameSize, message.ptime), ("slin", 320, 20)
        )

    def test_mediaStartErrors(self) -> None:
        for code, text in [
            (c.MISSING_FIELD, "MEDIA_START connection_id:x optimal_frame_size:160"),
            (c.MISSING_FIELD, "MEDIA_START format:ulaw"),
            (c.MISSING_FIELD, "MEDIA_START format:ulaw optimal_frame_size:0"),
            (c.BAD_VALUE, "MEDIA_START format:ulaw optimal_frame_size:big"),
            (c.BAD_VALUE, "MEDIA_START format:ulaw optimal_frame_size:-160"),
            (c.BAD_VALUE, "MEDIA_START format:ulaw optimal_frame_size:160 ptime:twenty"),
        ]:
            self.assertChanWsError(code, decodeEvent, text)

    def test_dtmfEnd(self) -> None:
        self.assertEqual(
            decodeEvent("DTMF_END digit:5 channel_id:pbx1-1.2"), DtmfEnd("5", "pbx1-1.2")
        )
        self.assertEqual(decodeEvent("DTMF_END digit:#"), DtmfEnd("#"))
        self.assertChanWsError(c.MISSING_FIELD, decodeEvent, "DTMF_END channel_id:x")
        self.assertChanWsError(c.BAD_VALUE, decodeEvent, "DTMF_END digit:55")
        self.assertChanWsError(c.BAD_VALUE, decodeEvent, "DTMF_END digit:z")

    def test_bareWords(self) -> None:
        self.assertEqual(decodeEvent("MEDIA_XOFF"), MediaXoff())
        self.assertEqual(decodeEvent("MEDIA_XON\r\n"), MediaXon())
        self.assertEqual(decodeEvent("QUEUE_DRAINED"), QueueDrained())
        self.assertEqual(decodeEvent("MEDIA_XOFF channel_id:c1"), MediaXoff("c1"))

    def test_status(self) -> None:
        self.assertEqual(
            decodeEvent(
                "STATUS channel_id:c1 queue_length:12 xon_level:800 xoff_level:900"
                " queue_full:false bulk_media:true media_paused:FALSE"
            ),
            Status("c1", 12, 800, 900, False, True, False),
        )
        self.assertEqual(decodeEvent("STATUS"), Status())
        self.assertChanWsError(c.BAD_VALUE, decodeEvent, "STATUS queue_full:maybe")
        self.assertChanWsError(c.BAD_VALUE, decodeEvent, "STATUS queue_length:1e3")

    def test_correlated(self) -> None:
        self.assertEqual(decodeEvent("MEDIA_BUFFERING_COMPLETED"), MediaBufferingCompleted(""))
        self.assertEqual(
            decodeEvent("MEDIA_BUFFERING_COMPLETED b-7"), MediaBufferingCompleted("b-7")
        )
        self.assertEqual(decodeEvent("MEDIA_MARK_PROCESSED m7"), MediaMarkProcessed("m7"))
        self.assertEqual(
            decodeEvent("MEDIA_MARK_PROCESSED channel_id:c1 correlation_id:m7"),
            MediaMarkProcessed("m7", "c1"),
        )

    def test_error(self) -> None:
        self.assertEqual(
            decodeEvent("ERROR channel_id:c1 error_text:Unable to parse: JSON  command"),
            ErrorEvent("Unable to parse: JSON  command", "c1"),
        )
        self.assertEqual(decodeEvent("ERROR"), ErrorEvent(""))

    def test_unknown(self) -> None:
        """
        There is no HANGUP or ANSWER event; those and other well-formed
        names are L{Unknown}.
        """
        for text in ["HANGUP", "ANSWER", "MEDIA_STOP reason:x", "X9"]:
            message = decodeEvent(text)
            self.assertEqual(message, Unknown(text.split()[0], text))

    def test_extraSpaces(self) -> None:
        self.assertEqual(decodeEvent("  DTMF_END   digit:1  channel_id:c  "), DtmfEnd("1", "c"))

    def test_garbage(self) -> None:
        for text in [
            "",
            "   ",
            "hello world",
            "media_start format:ulaw",
            "MEDIA-START format:ulaw",
            "1MEDIA",
            "MEDIA_XOFF\x00",
            "DTMF_END digit:1\nDTMF_END digit:2",
            "\x10\x01\x40",
            "Ω",
        ]:
            self.assertChanWsError(c.GARBAGE, decodeEvent, text)
        self.assertChanWsError(c.GARBAGE, decodeEvent, b"\xff\xfe")

    def test_bytes(self) -> None:
        self.assertEqual(decodeEvent(b"MEDIA_XON"), MediaXon())


class JsonEventTests(ChanWsTestCase):
    """
    Events in the JSON control format.
    """

    def test_mediaStart(self) -> None:
        message = decodeEvent(START_JSON)
        self.assertEqual(
            message,
            MediaStart(
                "e226",
                "WebSocket/connection1/0x7f3c",
                "pbx1-1234.99",
                "slin16",
                640,
                20,
                {"CONTEXT_ID": "abc"},
            ),
        )
        assert isinstance(message, MediaStart)
        self.assertRaises(TypeError, operator.setitem, message.channelVariables, "X", "y")

    def test_events(self) -> None:
        for obj, expected in [
            ({"event": "DTMF_END", "channel_id": "c", "digit": "*"}, DtmfEnd("*", "c")),
            ({"event": "MEDIA_XOFF", "channel_id": "c"}, MediaXoff("c")),
            ({"event": "MEDIA_XON", "channel_id": "c"}, MediaXon("c")),
            ({"event": "QUEUE_DRAINED", "channel_id": "c"}, QueueDrained("c")),
            (
                {
                    "event": "STATUS",
                    "channel_id": "c",
                    "queue_length": 0,
                    "xon_level": 800,
                    "xoff_level": 900,
                    "queue_full": False,
                    "bulk_media": False,
                    "media_paused": True,
                },
                Status("c", 0, 800, 900, False, False, True),
            ),
            (
                {"event": "MEDIA_BUFFERING_COMPLETED", "channel_id": "c", "correlation_id": ""},
                MediaBufferingCompleted("", "c"),
            ),
            (
                {"event": "MEDIA_MARK_PROCESSED", "channel_id": "c", "correlation_id": "m7"},
                MediaMarkProcessed("m7", "c"),
            ),
            ({"event": "ERROR", "channel_id": "c", "error_text": "nope"}, ErrorEvent("nope", "c")),
        ]:
            self.assertEqual(decodeEvent(json.dumps(obj)), expected)

    def test_unknown(self) -> None:
        text = '{"event":"MEDIA_PAUSED","channel_id":"c"}'
        self.assertEqual(decodeEvent(text), Unknown("MEDIA_PAUSED", text))

    def test_badValues(self) -> None:
        for code, obj in [
            (c.MISSING_FIELD, {"event": "MEDIA_START", "optimal_frame_size": 160}),
            (c.BAD_VALUE, {"event": "MEDIA_START", "format": 1, "optimal_frame_size": 160}),
            (c.BAD_VALUE, {"event": "MEDIA_START", "format": "ulaw", "optimal_frame_size": True}),
            (c.BAD_VALUE, {"event": "MEDIA_START", "format": "ulaw", "optimal_frame_size": 1.5}),
            (
                c.BAD_VALUE,
                {
                    "event": "MEDIA_START",
                    "format": "ulaw",
                    "optimal_frame_size": 160,
                    "channel_variables": [],
                },
            ),
            (c.BAD_VALUE, {"event": "STATUS", "queue_full": 1}),
            (c.BAD_VALUE, {"event": "DTMF_END", "digit": 5}),
            (c.BAD_VALUE, {"event": "MEDIA_XOFF", "channel_id": 5}),
            (c.MISSING_FIELD, {"channel_id": "c"}),
        ]:
            self.assertChanWsError(code, decodeEvent, json.dumps(obj))

    def test_garbage(self) -> None:
        for text in [
            "{",
            '{"event":"MEDIA_XON"',
            "[1]",
            "{}x",
            '{"event":"media_xon"}',
            '{"event":5}',
        ]:
            self.assertChanWsError(c.GARBAGE, decodeEvent, text)
        deep = "{" + '"a":{' * 10_000 + "}" * 10_001
        self.assertChanWsError(c.GARBAGE, decodeEvent, deep)

    def test_oversized(self) -> None:
        self.assertChanWsError(c.TOO_LARGE, decodeEvent, "MEDIA_XON" + " " * c.MAX_EVENT_SIZE)
        self.assertChanWsError(c.TOO_LARGE, decodeEvent, START_PLAIN, 50)

    @settings(deadline=None)
    @given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
    def test_fuzz(self, text: str | bytes) -> None:
        """
        Arbitrary text is an event or a L{ChanWsError}, nothing else.
        """
        try:
            decodeEvent(text)
        except ChanWsError:
            pass

    @settings(deadline=None)
    @given(
        st.sampled_from(sorted(c._EVENTS)),
        st.dictionaries(
            st.sampled_from(
                [
                    "format",
                    "optimal_frame_size",
                    "ptime",
                    "digit",
                    "channel_id",
                    "queue_full",
                    "queue_length",
                    "correlation_id",
                    "error_text",
                    "channel_variables",
                ]
            ),
            st.none()
            | st.booleans()
            | st.integers()
            | st.text(max_size=10)
            | st.lists(st.integers()),
        ),
    )
    def test_fuzzJson(self, event: str, obj: dict[str, object]) -> None:
        try:
            decodeEvent(json.dumps({**obj, "event": event}))
        except ChanWsError:
            pass


EVENTS: list[Event] = [
    MediaStart("conn", "WebSocket/conn/0x1", "pbx-1.2", "ulaw", 160, 20, {}),
    DtmfEnd("9", "pbx-1.2"),
    MediaXoff("pbx-1.2"),
    MediaXon(),
    QueueDrained("q"),
    Status("pbx-1.2", 901, 800, 900, True, False, False),
    MediaBufferingCompleted("b1"),
    MediaMarkProcessed("m-3"),
    ErrorEvent("Unable to parse JSON command", "pbx-1.2"),
]


class EncodeEventTests(ChanWsTestCase):
    """
    L{c.encodeEvent} writes what Asterisk writes, for the simulator.
    """

    def test_roundTrip(self) -> None:
        for fmt in ControlFormat:
            for event in EVENTS:
                self.assertEqual(decodeEvent(c.encodeEvent(event, fmt)), event, (fmt, event))

    def test_plainShapes(self) -> None:
        self.assertEqual(
            c.encodeEvent(EVENTS[0], PLAIN),
            "MEDIA_START connection_id:conn channel:WebSocket/conn/0x1 channel_id:pbx-1.2"
            " format:ulaw optimal_frame_size:160 ptime:20",
        )
        self.assertEqual(c.encodeEvent(MediaXon(), PLAIN), "MEDIA_XON")
        self.assertEqual(
            c.encodeEvent(MediaMarkProcessed("m-3", "c"), PLAIN), "MEDIA_MARK_PROCESSED m-3"
        )
        self.assertEqual(
            c.encodeEvent(MediaBufferingCompleted(), PLAIN), "MEDIA_BUFFERING_COMPLETED"
        )

    def test_jsonVariables(self) -> None:
        event = MediaStart("c", "W/c/0", "id", "slin16", 640, 20, {"A": "b"})
        self.assertEqual(json.loads(c.encodeEvent(event, JSON))["channel_variables"], {"A": "b"})
        self.assertEqual(decodeEvent(c.encodeEvent(event, JSON)), event)

    def test_unknown(self) -> None:
        self.assertChanWsError(c.UNSUPPORTED, c.encodeEvent, Unknown("X", "X"), PLAIN)


class CommandTests(ChanWsTestCase):
    """
    Commands, in each control format, within Asterisk's 128-byte limit.
    """

    def test_plain(self) -> None:
        for command in Command:
            self.assertEqual(encodeCommand(command, PLAIN), command.value)

    def test_json(self) -> None:
        for command in Command:
            self.assertEqual(json.loads(encodeCommand(command, JSON)), {"command": command.value})

    def test_names(self) -> None:
        self.assertEqual(
            {command.value for command in Command},
            {
                "ANSWER",
                "HANGUP",
                "START_MEDIA_BUFFERING",
                "STOP_MEDIA_BUFFERING",
                "FLUSH_MEDIA",
                "PAUSE_MEDIA",
                "CONTINUE_MEDIA",
                "MARK_MEDIA",
                "REPORT_QUEUE_DRAINED",
                "GET_STATUS",
            },
        )

    def test_correlated(self) -> None:
        self.assertEqual(encodeCommand(Command.MARK_MEDIA, PLAIN, "m7"), "MARK_MEDIA m7")
        self.assertEqual(
            encodeCommand(Command.MARK_MEDIA, JSON, "m7"),
            '{"command":"MARK_MEDIA","correlation_id":"m7"}',
        )
        self.assertEqual(
            encodeCommand(Command.STOP_MEDIA_BUFFERING, PLAIN, "utt-3.1_a"),
            "STOP_MEDIA_BUFFERING utt-3.1_a",
        )

    def test_correlationErrors(self) -> None:
        self.assertChanWsError(c.BAD_VALUE, encodeCommand, Command.FLUSH_MEDIA, PLAIN, "x")
        for bad in ["", "a b", 'a"b', "a\\b", "é", "a:b", "x\n"]:
            self.assertChanWsError(c.BAD_VALUE, encodeCommand, Command.MARK_MEDIA, JSON, bad)

    def test_limit(self) -> None:
        """
        Every command fits in 128 bytes; a correlation id that would not
        is refused; ids up to L{c.SAFE_CORRELATION_ID_LENGTH} always fit.
        """
        safe = "m" * c.SAFE_CORRELATION_ID_LENGTH
        for fmt in ControlFormat:
            for command in Command:
                self.assertLessEqual(len(encodeCommand(command, fmt)), c.MAX_COMMAND_BYTES)
            for command in c.CORRELATED:
                self.assertLessEqual(len(encodeCommand(command, fmt, safe)), c.MAX_COMMAND_BYTES)
                self.assertChanWsError(c.TOO_LONG, encodeCommand, command, fmt, "m" * 120)
        longest = "m" * (128 - len('{"command":"MARK_MEDIA","correlation_id":""}'))
        self.assertEqual(len(encodeCommand(Command.MARK_MEDIA, JSON, longest)), 128)
        self.assertChanWsError(c.TOO_LONG, encodeCommand, Command.MARK_MEDIA, JSON, longest + "m")

    def test_setMediaDirection(self) -> None:
        for direction in ("both", "in", "out"):
            self.assertEqual(
                json.loads(c.encodeSetMediaDirection(direction)),
                {"command": "SET_MEDIA_DIRECTION", "direction": direction},
            )
        self.assertChanWsError(c.UNSUPPORTED, c.encodeSetMediaDirection, "in", PLAIN)
        self.assertChanWsError(c.BAD_VALUE, c.encodeSetMediaDirection, "sideways")


class FormatTests(ChanWsTestCase):
    """
    Asterisk format names map to codec, rate and frame size.
    """

    def test_formats(self) -> None:
        for name, codec, rate, frame in [
            ("ulaw", "ulaw", 8000, 160),
            ("alaw", "alaw", 8000, 160),
            ("slin", "slin", 8000, 320),
            ("slin12", "slin", 12000, 480),
            ("slin16", "slin", 16000, 640),
            ("slin24", "slin", 24000, 960),
            ("slin32", "slin", 32000, 1280),
            ("slin44", "slin", 44100, 1764),
            ("slin48", "slin", 48000, 1920),
            ("slin96", "slin", 96000, 3840),
            ("slin192", "slin", 192000, 7680),
        ]:
            fmt = c.mediaFormat(name)
            self.assertEqual((fmt.codec, fmt.sampleRate, fmt.frameBytes()), (codec, rate, frame))
        self.assertEqual(c.mediaFormat("ulaw").frameBytes(30), 240)

    def test_unsupported(self) -> None:
        for name in ["opus", "g722", "g729", "sln16", "ULAW", ""]:
            self.assertChanWsError(c.UNSUPPORTED, c.mediaFormat, name)
