"""
Tests for L{rapida_twisted.sip._sdp}.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from rapida_twisted.sip._sdp import (
    G722,
    PCMA,
    PCMU,
    STATIC_PAYLOAD_TYPES,
    AudioNegotiation,
    Codec,
    Connection,
    NoCommonCodec,
    SdpError,
    SdpParseError,
    answerDirection,
    answerOffer,
    buildOffer,
    negotiateAnswer,
    parseSdp,
)

OFFER = (
    b"v=0\r\n"
    b"o=- 3912345678 3912345678 IN IP4 203.0.113.10\r\n"
    b"s=-\r\n"
    b"c=IN IP4 203.0.113.10\r\n"
    b"t=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0 8 9 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:9 G722/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\n"
    b"a=ptime:20\r\n"
    b"a=sendrecv\r\n"
)


def offer(media: str, session: str = "c=IN IP4 203.0.113.10\r\n") -> bytes:
    """
    An offer with the given session-level extra lines and media section.
    """
    return (f"v=0\r\no=- 1 1 IN IP4 203.0.113.10\r\ns=-\r\n{session}t=0 0\r\n{media}").encode()


def answer(data: bytes, **kw: Any) -> AudioNegotiation:
    """
    Our answer to C{data}, with default local parameters.
    """
    args: dict[str, Any] = {
        "localAddress": "192.0.2.1",
        "localPort": 10000,
        "sessionId": 77,
        "sessionVersion": 1,
    }
    args.update(kw)
    return answerOffer(parseSdp(data), **args)


class ParseTests(SynchronousTestCase):
    """
    L{parseSdp}.
    """

    def test_offer(self) -> None:
        sdp = parseSdp(OFFER)
        self.assertEqual(sdp.origin.sessionId, "3912345678")
        self.assertEqual(sdp.origin.sessionVersion, 3912345678)
        self.assertEqual(sdp.connection, Connection("203.0.113.10"))
        (audio,) = sdp.media
        self.assertEqual((audio.media, audio.port, audio.protocol), ("audio", 40000, "RTP/AVP"))
        self.assertEqual(audio.formats, ("0", "8", "9", "101"))
        self.assertEqual(
            audio.codecs,
            (PCMU, PCMA, G722, Codec(101, "telephone-event", 8000, fmtp="0-16")),
        )
        self.assertEqual(audio.ptime, 20)
        self.assertEqual(sdp.directionOf(audio), "sendrecv")
        self.assertEqual(audio.direction, "sendrecv")
        self.assertFalse(audio.rtcpMux)
        self.assertIsNone(audio.rtcpPort)

    def test_roundTrip(self) -> None:
        self.assertEqual(parseSdp(OFFER).toBytes(), OFFER)
        sdp = parseSdp(
            offer(
                "m=audio 5004/2 RTP/AVP 0\r\ni=voice\r\nc=IN IP6 2001:db8::1/127\r\nb=AS:64\r\n"
                "a=rtcp:5009 IN IP4 192.0.2.9\r\na=rtcp-mux\r\n",
                session="i=info\r\nc=IN IP4 203.0.113.10\r\nb=CT:128\r\n",
            )
        )
        self.assertEqual(parseSdp(sdp.toBytes()), sdp)
        media = sdp.media[0]
        self.assertEqual(media.portCount, 2)
        self.assertEqual(media.connection, Connection("2001:db8::1", "IP6"))
        self.assertEqual(media.rtcpPort, 5009)
        self.assertTrue(media.rtcpMux)
        self.assertEqual(sdp.other, (("i", "info"), ("b", "CT:128")))

    def test_staticWithoutRtpmap(self) -> None:
        media = parseSdp(offer("m=audio 4000 RTP/AVP 18 8 0 3 96\r\n")).media[0]
        self.assertEqual([c.name for c in media.codecs], ["G729", "PCMA", "PCMU", "GSM"])
        self.assertEqual(STATIC_PAYLOAD_TYPES[0], PCMU)

    def test_lenient(self) -> None:
        """
        Bare LF, blank lines, missing s= and t= are accepted.
        """
        sdp = parseSdp(
            b"v=0\no=- 1 2 IN IP4 192.0.2.1\n\nc=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 0\n"
        )
        self.assertEqual(sdp.sessionName, "-")
        self.assertEqual(sdp.timing, "0 0")
        self.assertEqual(sdp.media[0].codecs, (PCMU,))

    def test_dynamicPcmu(self) -> None:
        media = parseSdp(offer("m=audio 4000 RTP/AVP 96\r\na=rtpmap:96 pcmu/8000\r\n")).media[0]
        self.assertEqual(media.codecs, (Codec(96, "pcmu", 8000),))

    def test_errors(self) -> None:
        for data in [
            b"",
            b"o=- 1 1 IN IP4 h\r\n",
            b"v=1\r\no=- 1 1 IN IP4 h\r\n",
            b"v=0\r\n",
            b"v=0\r\no=- 1 IN IP4 h\r\n",
            b"v=0\r\no=- 1 x IN IP4 h\r\n",
            offer("m=audio 70000 RTP/AVP 0\r\n"),
            offer("m=audio x RTP/AVP 0\r\n"),
            offer("m=audio 4000/x RTP/AVP 0\r\n"),
            offer("m=audio 4000\r\n"),
            offer("m=audio 4000 RTP/AVP 0\r\nc=IN IP4\r\n"),
            offer("m=audio 4000 RTP/AVP 0\r\nthis is not sdp\r\n"),
            offer("m=audio 4000 RTP/AVP 0\r\na=\r\n"),
        ]:
            self.assertRaises(SdpParseError, parseSdp, data)

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=200), st.integers(0, len(OFFER)))
    def test_fuzz(self, noise: bytes, at: int) -> None:
        """
        Any input gives a description or an L{SdpParseError}; answering it
        gives a negotiation or an L{SdpError}.
        """
        for data in (OFFER[:at] + noise + OFFER[at:], OFFER[:at], noise):
            try:
                sdp = parseSdp(data)
            except SdpParseError:
                continue
            parseSdp(sdp.toBytes())
            try:
                answerOffer(
                    sdp, localAddress="192.0.2.1", localPort=1, sessionId=1, sessionVersion=1
                )
            except SdpError:
                pass


class AnswerTests(SynchronousTestCase):
    """
    L{answerOffer} (RFC 3264 §6).
    """

    def test_basic(self) -> None:
        result = answer(OFFER, rtcpPort=10001)
        self.assertEqual(
            result.answer.toBytes(),
            b"v=0\r\no=- 77 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
            b"m=audio 10000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
            b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n"
            b"a=sendrecv\r\na=rtcp:10001\r\n",
        )
        self.assertEqual(result.codec, PCMU)
        self.assertEqual(result.telephoneEvent, 101)
        self.assertEqual((result.remoteAddress, result.remotePort), ("203.0.113.10", 40000))
        self.assertEqual(result.remoteRtcpPort, 40001)
        self.assertEqual(result.remotePtime, 20)
        self.assertEqual(result.direction, "sendrecv")
        self.assertTrue(result.sending and result.receiving)
        self.assertFalse(result.onHold)
        self.assertEqual(result.mediaIndex, 0)

    def test_callerPreference(self) -> None:
        """
        The first codec in the caller's order that we support wins,
        whatever our own order.
        """
        result = answer(offer("m=audio 4000 RTP/AVP 9 8 0\r\n"))
        self.assertEqual(result.codec, PCMA)
        self.assertEqual(result.answer.media[0].formats, ("8",))
        result = answer(offer("m=audio 4000 RTP/AVP 0 8\r\n"), supported=(PCMA, PCMU))
        self.assertEqual(result.codec, PCMU)
        result = answer(offer("m=audio 4000 RTP/AVP 0 8\r\n"), supported=(PCMA,))
        self.assertEqual(result.codec, PCMA)

    def test_telephoneEventPayloadKept(self) -> None:
        result = answer(
            offer(
                "m=audio 4000 RTP/AVP 8 96 97\r\na=rtpmap:96 telephone-event/16000\r\n"
                "a=rtpmap:97 telephone-event/8000\r\na=fmtp:97 0-15\r\n"
            )
        )
        self.assertEqual(result.telephoneEvent, 97)
        self.assertEqual(result.answer.media[0].formats, ("8", "97"))
        self.assertEqual(result.answer.media[0].attributeValues("fmtp"), ("97 0-16",))

    def test_noTelephoneEventUnlessOffered(self) -> None:
        result = answer(offer("m=audio 4000 RTP/AVP 0\r\n"))
        self.assertIsNone(result.telephoneEvent)
        self.assertEqual(result.answer.media[0].formats, ("0",))
        self.assertEqual(result.answer.media[0].attributeValues("fmtp"), ())
        self.assertIsNone(answer(OFFER, telephoneEvent=False).telephoneEvent)

    def test_ptimeAlwaysLocal(self) -> None:
        result = answer(offer("m=audio 4000 RTP/AVP 0\r\na=ptime:30\r\n"))
        self.assertEqual(result.remotePtime, 30)
        self.assertEqual(result.answer.media[0].ptime, 20)

    def test_directions(self) -> None:
        for offered, answered, hold in [
            ("sendrecv", "sendrecv", False),
            ("sendonly", "recvonly", True),
            ("recvonly", "sendonly", False),
            ("inactive", "inactive", True),
        ]:
            result = answer(offer(f"m=audio 4000 RTP/AVP 0\r\na={offered}\r\n"))
            self.assertEqual(result.direction, answered)
            self.assertEqual(result.answer.media[0].direction, answered)
            self.assertEqual(result.onHold, hold)

    def test_sessionLevelDirection(self) -> None:
        result = answer(
            offer("m=audio 4000 RTP/AVP 0\r\n", session="c=IN IP4 192.0.2.5\r\na=sendonly\r\n")
        )
        self.assertEqual(result.direction, "recvonly")
        self.assertTrue(result.onHold)

    def test_holdByNullAddress(self) -> None:
        result = answer(offer("m=audio 4000 RTP/AVP 0\r\n", session="c=IN IP4 0.0.0.0\r\n"))
        self.assertTrue(result.onHold)
        self.assertEqual(result.direction, "recvonly")
        self.assertFalse(result.sending)

    def test_weHold(self) -> None:
        result = answer(OFFER, direction="sendonly")
        self.assertEqual(result.direction, "sendonly")
        self.assertFalse(result.onHold)

    def test_answerDirection(self) -> None:
        self.assertEqual(answerDirection("sendrecv", "recvonly"), "recvonly")
        self.assertEqual(answerDirection("sendonly", "sendonly"), "inactive")
        self.assertEqual(answerDirection("recvonly", "inactive"), "inactive")

    def test_otherStreamsRejected(self) -> None:
        """
        Same number and order of m= lines; streams we do not take get port 0.
        """
        data = offer(
            "m=video 5000 RTP/AVP 31\r\n"
            "m=audio 4000 RTP/SAVP 0\r\n"
            "m=audio 4002 RTP/AVP 18\r\n"
            "m=audio 4004 RTP/AVP 8\r\nc=IN IP4 192.0.2.44\r\na=rtcp-mux\r\n"
            "m=audio 4006 RTP/AVP 0\r\n"
            "m=application 0 UDP/BFCP *\r\n"
        )
        result = answer(data)
        self.assertEqual(
            [(m.media, m.port, m.formats) for m in result.answer.media],
            [
                ("video", 0, ("31",)),
                ("audio", 0, ("0",)),
                ("audio", 0, ("18",)),
                ("audio", 10000, ("8",)),
                ("audio", 0, ("0",)),
                ("application", 0, ("*",)),
            ],
        )
        self.assertEqual(result.mediaIndex, 3)
        self.assertEqual(result.remoteAddress, "192.0.2.44")
        self.assertTrue(result.rtcpMux)
        self.assertEqual(result.remoteRtcpPort, 4004)
        self.assertEqual(parseSdp(result.answer.toBytes()), result.answer)

    def test_rtcpAttribute(self) -> None:
        self.assertEqual(
            answer(offer("m=audio 4000 RTP/AVP 0\r\na=rtcp:4100\r\n")).remoteRtcpPort, 4100
        )

    def test_avpf(self) -> None:
        result = answer(offer("m=audio 4000 RTP/AVPF 0\r\n"))
        self.assertEqual(result.answer.media[0].protocol, "RTP/AVPF")

    def test_ipv6(self) -> None:
        result = answer(
            offer("m=audio 4000 RTP/AVP 0\r\n", session="c=IN IP6 2001:db8::5\r\n"),
            localAddress="2001:db8::1",
        )
        self.assertEqual(result.remoteAddress, "2001:db8::5")
        self.assertIn(b"c=IN IP6 2001:db8::1\r\n", result.answer.toBytes())
        self.assertIn(b"o=- 77 1 IN IP6 2001:db8::1\r\n", result.answer.toBytes())

    def test_noCommonCodec(self) -> None:
        for media in [
            "m=audio 4000 RTP/AVP 18\r\n",
            "m=audio 4000 RTP/AVP\r\n",
            "m=audio 0 RTP/AVP 0\r\n",
            "m=audio 4000 RTP/SAVP 0\r\n",
            "m=video 4000 RTP/AVP 0\r\n",
            "",
        ]:
            self.assertRaises(NoCommonCodec, answer, offer(media))

    def test_badAddress(self) -> None:
        for session, media in [
            ("", "m=audio 4000 RTP/AVP 0\r\n"),
            ("c=IN IP4 not-an-ip\r\n", "m=audio 4000 RTP/AVP 0\r\n"),
            ("c=IN IP4 192.0.2.1\r\n", "m=audio 4000 RTP/AVP 0\r\nc=IN IP4 999.1.1.1\r\n"),
        ]:
            self.assertRaises(SdpParseError, answer, offer(media, session=session))


class OfferTests(SynchronousTestCase):
    """
    L{buildOffer} and L{negotiateAnswer} (the UAC side).
    """

    def test_offerAnswer(self) -> None:
        ours = buildOffer(localAddress="192.0.2.9", localPort=20000, sessionId=5, sessionVersion=1)
        self.assertEqual(
            ours.toBytes(),
            b"v=0\r\no=- 5 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\nt=0 0\r\n"
            b"m=audio 20000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
            b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n",
        )
        theirs = answerOffer(
            parseSdp(ours.toBytes()),
            localAddress="192.0.2.1",
            localPort=10000,
            sessionId=1,
            sessionVersion=1,
            supported=(PCMA,),
        )
        result = negotiateAnswer(ours, theirs.answer)
        self.assertEqual(result.codec, PCMA)
        self.assertEqual(result.telephoneEvent, 101)
        self.assertEqual((result.remoteAddress, result.remotePort), ("192.0.2.1", 10000))
        self.assertEqual(result.direction, "sendrecv")

    def test_heldByAnswer(self) -> None:
        ours = buildOffer(
            localAddress="192.0.2.9",
            localPort=20000,
            sessionId=5,
            sessionVersion=1,
            telephoneEvent=None,
        )
        self.assertNotIn(b"telephone-event", ours.toBytes())
        answer = parseSdp(offer("m=audio 4000 RTP/AVP 0\r\na=recvonly\r\n"))
        result = negotiateAnswer(ours, answer)
        self.assertEqual(result.direction, "sendonly")
        self.assertFalse(result.onHold)
        answer = parseSdp(offer("m=audio 4000 RTP/AVP 0\r\na=sendonly\r\n"))
        self.assertTrue(negotiateAnswer(ours, answer).onHold)

    def test_rejected(self) -> None:
        ours = buildOffer(localAddress="192.0.2.9", localPort=20000, sessionId=5, sessionVersion=1)
        for media in ["m=audio 0 RTP/AVP 0\r\n", "m=audio 4000 RTP/AVP 9\r\n", ""]:
            self.assertRaises(NoCommonCodec, negotiateAnswer, ours, parseSdp(offer(media)))
