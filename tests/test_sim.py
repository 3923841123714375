"""
Tests for L{rapida_twisted.sim}, the provider simulator behind
C{rapida-sim}, and for the provider-side encoders and command decoders it
added to the wire codecs.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from rapida_twisted.asterisk import _chanws as chanws
from rapida_twisted.providers.exotel import _codec as exotel
from rapida_twisted.providers.twilio import _codec as twilio
from rapida_twisted.providers.twilio._codec import ProtocolError
from rapida_twisted.providers.vonage import _codec as vonage

SID = "MZ18ad3ab5a668481ce02b83e7395059f0"
CALL = "CA18ad3ab5a668481ce02b83e7395059f0"
ACCOUNT = "AC18ad3ab5a668481ce02b83e7395059f0"
ULAW = bytes(range(96, 256))


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
        text = twilio.encodeInboundMedia(SID, ULAW, 4, 2, 20)
        self.assertEqual(twilio.decode(text), twilio.Media(ULAW, 2, 20, "inbound"))
        obj = json.loads(text)
        self.assertEqual((obj["sequenceNumber"], obj["streamSid"]), ("4", SID))

    def test_inboundMediaPrecomputed(self) -> None:
        """
        Base64 text given instead of bytes is used as it is.
        """
        b64 = twilio.base64Text(ULAW)
        self.assertEqual(
            twilio.encodeInboundMedia(SID, b64, 4, 2, 20),
            twilio.encodeInboundMedia(SID, ULAW, 4, 2, 20),
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
