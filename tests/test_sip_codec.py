"""
Tests for L{rapida_twisted.sip._codec}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from rapida_twisted.sip._codec import (
    MAX_MESSAGE_SIZE,
    REASONS,
    AbsoluteURI,
    Address,
    CSeq,
    Headers,
    Params,
    PartialMessage,
    SipParseError,
    SipRequest,
    SipResponse,
    SipURI,
    SipURIError,
    Via,
    badRequestFor,
    canonicalName,
    frameLength,
    newBranch,
    newCallId,
    newTag,
    parseAddress,
    parseCSeq,
    parseMessage,
    parseParameterized,
    parseParams,
    parseURI,
    parseVia,
    quoteString,
    reasonPhrase,
    responseFor,
    unquoteString,
)

SDP = (
    b"v=0\r\no=- 1 1 IN IP4 192.0.2.2\r\ns=-\r\nc=IN IP4 192.0.2.2\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n"
)

INVITE = (
    b"INVITE sip:echo@192.0.2.1:5090 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.2:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKproxy1\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: <sip:echo@192.0.2.1:5090>\r\n"
    b'From: "Alice A." <sip:alice@example.com>;tag=1928301774\r\n'
    b"Call-ID: a84b4c76e66710@pc33.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Record-Route: <sip:proxy.example.com;lr>\r\n"
    b"Contact: <sip:alice@192.0.2.2:5060>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(SDP)).encode() + b"\r\n\r\n" + SDP
)


def invite(**replace: bytes) -> bytes:
    """
    L{INVITE} with some header lines replaced (by name, C{None} to delete).
    """
    head, _, body = INVITE.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    out = [lines[0]]
    for line in lines[1:]:
        name = line.split(b":")[0].decode()
        key = name.replace("-", "_")
        if key in replace:
            if replace[key]:
                out.append(name.encode() + b": " + replace[key])
        else:
            out.append(line)
    return b"\r\n".join(out) + b"\r\n\r\n" + body


class MessageParsingTests(SynchronousTestCase):
    """
    L{parseMessage} on ordinary traffic.
    """

    def test_invite(self) -> None:
        m = parseMessage(INVITE)
        assert isinstance(m, SipRequest)
        self.assertTrue(m.isRequest)
        self.assertEqual(m.method, "INVITE")
        self.assertEqual(m.uri, SipURI("sip", "192.0.2.1", user="echo", port=5090))
        self.assertEqual(m.callId, "a84b4c76e66710@pc33.example.com")
        self.assertEqual(m.cseq, CSeq(314159, "INVITE"))
        self.assertEqual(m.fromAddress.displayName, "Alice A.")
        self.assertEqual(m.fromAddress.tag, "1928301774")
        self.assertIsNone(m.toAddress.tag)
        self.assertEqual([v.sentBy for v in m.vias], ["192.0.2.2:5060", "proxy.example.com"])
        self.assertEqual(m.topVia.branch, "z9hG4bK776asdhds")
        self.assertTrue(m.topVia.hasRport)
        self.assertIsNone(m.topVia.rport)
        self.assertEqual(m.maxForwards, 70)
        self.assertEqual(m.contentType, "application/sdp")
        self.assertEqual(m.body, SDP)
        self.assertEqual(str(m.contacts[0].uri), "sip:alice@192.0.2.2:5060")
        self.assertEqual(str(m.recordRoutes[0]), "<sip:proxy.example.com;lr>")

    def test_response(self) -> None:
        data = (
            b"SIP/2.0 180 Ringing\r\n"
            b"Via: SIP/2.0/UDP 192.0.2.2:5060;branch=z9hG4bKx;rport=5062;received=198.51.100.7\r\n"
            b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n"
            b"Content-Length: 0\r\n\r\n"
        )
        m = parseMessage(data)
        assert isinstance(m, SipResponse)
        self.assertFalse(m.isRequest)
        self.assertFalse(m.isFinal)
        self.assertEqual((m.code, m.reason), (180, "Ringing"))
        self.assertEqual(m.topVia.rport, 5062)
        self.assertEqual(m.topVia.received, "198.51.100.7")
        self.assertEqual(m.toAddress.tag, "2")

    def test_compactForms(self) -> None:
        data = (
            b"OPTIONS sip:x@y SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\nf: <sip:a@b>;tag=1\r\n"
            b"t: sip:c@d\r\ni: cid\r\nCSeq: 2 OPTIONS\r\nm: <sip:a@h>\r\nk: timer, replaces\r\n"
            b"c: text/plain\r\ns: hello\r\ne: gzip\r\nu: refer\r\no: refer;id=3\r\nr: <sip:t@x>\r\n"
            b"b: <sip:r@x>\r\nx: 1800;refresher=uac\r\nl: 2\r\n\r\nhi"
        )
        m = parseMessage(data)
        self.assertEqual(
            [name for name, _ in m.headers],
            [
                "Via",
                "From",
                "To",
                "Call-ID",
                "CSeq",
                "Contact",
                "Supported",
                "Supported",
                "Content-Type",
                "Subject",
                "Content-Encoding",
                "Allow-Events",
                "Event",
                "Refer-To",
                "Referred-By",
                "Session-Expires",
                "Content-Length",
            ],
        )
        self.assertEqual(m.getAll("supported"), ("timer", "replaces"))
        self.assertEqual(m.body, b"hi")
        self.assertTrue(m.toBytes().startswith(b"OPTIONS sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP h;"))

    def test_caseInsensitiveNames(self) -> None:
        m = parseMessage(invite(Call_ID=b"abc").replace(b"Call-ID:", b"cAlL-iD:"))
        self.assertEqual(m.get("CALL-ID"), "abc")
        self.assertEqual(m.get("i"), "abc")
        self.assertIn("call-id", m.headers)
        self.assertEqual([n for n, _ in m.headers if n.lower() == "call-id"], ["Call-ID"])

    def test_unknownHeaderKeepsSpelling(self) -> None:
        m = parseMessage(invite(Max_Forwards=b"70\r\nX-Original-Called-Number: +15550100"))
        self.assertEqual(m.get("x-original-called-number"), "+15550100")
        self.assertIn(b"\r\nX-Original-Called-Number: +15550100\r\n", m.toBytes())

    def test_folding(self) -> None:
        m = parseMessage(invite(Max_Forwards=b"70\r\nSubject: first\r\n  second\r\n\tthird"))
        self.assertEqual(m.get("Subject"), "first second third")

    def test_listHeadersSplit(self) -> None:
        """
        Comma-separated values are split, but not inside quotes or <>.
        """
        m = parseMessage(
            invite(
                Contact=b'"Doe, John" <sip:j@h;x=a,b>;q=0.5, <sip:k@h>',
                Via=b"SIP/2.0/UDP a;branch=z9hG4bK1 , SIP/2.0/TCP b:5061;branch=z9hG4bK2",
            )
        )
        self.assertEqual(len(m.contacts), 2)
        self.assertEqual(m.contacts[0].displayName, "Doe, John")
        uri = m.contacts[0].uri
        assert isinstance(uri, SipURI)
        self.assertEqual(uri.params.get("x"), "a,b")
        self.assertEqual([v.port for v in m.vias], [None, 5061, None, 5061])

    def test_noSplitForAuthAndDate(self) -> None:
        m = parseMessage(
            invite(
                Max_Forwards=b'70\r\nAuthorization: Digest username="a", realm="b", nonce="c"\r\n'
                b'Date: Sat, 13 Nov 2010 23:29:00 GMT\r\nWWW-Authenticate: Digest realm="x", nonce="y"'
            )
        )
        self.assertEqual(len(m.getAll("Authorization")), 1)
        self.assertEqual(m.get("Date"), "Sat, 13 Nov 2010 23:29:00 GMT")
        self.assertEqual(len(m.getAll("WWW-Authenticate")), 1)

    def test_contentLengthTruncates(self) -> None:
        m = parseMessage(INVITE + b"trailing garbage")
        self.assertEqual(m.body, SDP)

    def test_contentLengthShort(self) -> None:
        error = self.assertRaises(SipParseError, parseMessage, INVITE[:-5])
        self.assertIn("Content-Length", error.reason)
        self.assertTrue(error.canAnswer)

    def test_noContentLengthDatagram(self) -> None:
        data = invite(Content_Length=b"")
        m = parseMessage(data)
        self.assertEqual(m.body, SDP)
        self.assertIsNone(m.get("Content-Length"))
        self.assertIn(b"Content-Length: %d\r\n" % len(SDP), m.toBytes())

    def test_noContentLengthStream(self) -> None:
        error = self.assertRaises(
            SipParseError, parseMessage, invite(Content_Length=b""), datagram=False
        )
        self.assertIn("Content-Length", error.reason)

    def test_tooLarge(self) -> None:
        data = invite(Content_Type=b"application/sdp\r\nX-Pad: " + b"a" * MAX_MESSAGE_SIZE)
        error = self.assertRaises(SipParseError, parseMessage, data)
        self.assertEqual(error.code, 513)
        self.assertTrue(error.canAnswer)
        self.assertEqual(badRequestFor(error).code, 513)
        # when the headers that matter are beyond the limit, no answer
        data = invite(Max_Forwards=b"70\r\nX-Pad: " + b"a" * MAX_MESSAGE_SIZE)
        self.assertFalse(self.assertRaises(SipParseError, parseMessage, data).canAnswer)

    def test_leadingCRLF(self) -> None:
        """
        CRLFs before the start line (keep-alives) are skipped; a message of
        only CRLFs is an error.
        """
        self.assertEqual(
            parseMessage(b"\r\n\r\n" + INVITE).callId, "a84b4c76e66710@pc33.example.com"
        )
        self.assertRaises(SipParseError, parseMessage, b"\r\n\r\n")
        self.assertRaises(SipParseError, parseMessage, b"")

    def test_bareLF(self) -> None:
        """
        Lenient peers ending header lines with a bare LF are understood.
        """
        head, _, body = INVITE.partition(b"\r\n\r\n")
        m = parseMessage(head.replace(b"\r\n", b"\n") + b"\n\n" + body)
        self.assertEqual(m.cseq.number, 314159)
        self.assertEqual(m.body, SDP)

    def test_noBlankLine(self) -> None:
        """
        A datagram ending after the last header (no blank line) is tolerated.
        """
        m = parseMessage(invite(Content_Length=b"0").partition(b"\r\n\r\n")[0])
        self.assertEqual(m.body, b"")

    def test_missingMandatory(self) -> None:
        for name in ("Via", "From", "To", "Call_ID", "CSeq"):
            error = self.assertRaises(SipParseError, parseMessage, invite(**{name: b""}))
            self.assertIn("missing", error.reason)
            self.assertEqual(error.canAnswer, name not in ("Via", "CSeq"))

    def test_badHeaderLine(self) -> None:
        error = self.assertRaises(
            SipParseError, parseMessage, invite(Max_Forwards=b"70\r\nno colon here")
        )
        self.assertTrue(error.canAnswer)
        assert error.partial is not None
        self.assertEqual(error.partial.method, "INVITE")
        self.assertEqual(error.partial.headers.get("Call-ID"), "a84b4c76e66710@pc33.example.com")

    def test_badValues(self) -> None:
        cases = {
            "Max_Forwards": [b"x", b"256", b"-1"],
            "CSeq": [b"1", b"x INVITE", b"2147483648 INVITE", b"1 BYE"],
            "Content_Length": [b"x", b"-1", b"1 2"],
            "Call_ID": [b"a b"],
            "From": [b"<sip:a@b", b"sip:a@b?x=y", b'"open <sip:a@b>', b"< sip:a@b>"],
            "Via": [
                b"SIP/2.0 host",
                b"SIP/2.0/UDP",
                b"SIP/2.0/UDP host;;",
                b"SIP/2.0/UDP host:99999",
            ],
            "Contact": [b"<sip:a@b>;=x", b"*, <sip:a@b>"],
        }
        for name, values in cases.items():
            for value in values:
                error = self.assertRaises(SipParseError, parseMessage, invite(**{name: value}))
                self.assertEqual(error.code, 400, (name, value))

    def test_ackCannotBeAnswered(self) -> None:
        data = (
            invite(CSeq=b"314159 ACK")
            .replace(b"INVITE sip:", b"ACK sip:")
            .replace(b"Max-Forwards: 70", b"Max-Forwards: x")
        )
        error = self.assertRaises(SipParseError, parseMessage, data)
        self.assertFalse(error.canAnswer)
        self.assertRaises(ValueError, badRequestFor, error)

    def test_badStartLines(self) -> None:
        for line in [
            b"INVITE sip:a@b SIP/2.0 extra",
            b"INVITE sip:a@b",
            b"INV ITE sip:a@b SIP/2.0",
            b"INVITE sip:a@b HTTP/1.1",
            b"INVITE <sip:a@b> SIP/2.0",
            b"INVITE a@b SIP/2.0",
            b"SIP/2.0 20 OK",
            b"SIP/2.0 999 Nope",
            b"SIP/2.0 abc OK",
            b"SIP/3.0 200 OK",
            b"\x00\x01",
        ]:
            data = line + INVITE[INVITE.index(b"\r\n") :]
            self.assertRaises(SipParseError, parseMessage, data)

    def test_maxForwardsZeroParses(self) -> None:
        self.assertEqual(parseMessage(invite(Max_Forwards=b"0")).maxForwards, 0)

    def test_headersImmutable(self) -> None:
        m = parseMessage(INVITE)
        self.assertRaises(AttributeError, setattr, m, "method", "BYE")


class SerializerTests(SynchronousTestCase):
    """
    C{toBytes} and the copy-modifiers.
    """

    def test_roundTrip(self) -> None:
        m = parseMessage(INVITE)
        self.assertEqual(m.toBytes(), INVITE)
        self.assertEqual(parseMessage(m.toBytes()), m)

    def test_contentLengthRewritten(self) -> None:
        m = parseMessage(INVITE)
        data = m.withBody(b"x=1\r\n", "text/plain").toBytes()
        self.assertIn(b"\r\nContent-Length: 5\r\n\r\nx=1\r\n", data)
        self.assertIn(b"\r\nContent-Type: text/plain\r\n", data)
        self.assertEqual(data.count(b"Content-Length"), 1)
        empty = m.withBody(b"")
        self.assertNotIn("Content-Type", empty.headers)
        self.assertIn(b"Content-Length: 0\r\n", empty.toBytes())

    def test_build(self) -> None:
        uri = SipURI("sip", "198.51.100.9", user="bob", port=5070)
        via = Via("UDP", "192.0.2.1", 5090, Params((("branch", "z9hG4bKabc"), ("rport", None))))
        request = SipRequest(
            "BYE",
            uri,
            [
                ("Via", str(via)),
                ("Max-Forwards", "70"),
                (
                    "From",
                    str(
                        Address(
                            SipURI("sip", "192.0.2.1", user="echo"), params=Params((("tag", "a"),))
                        )
                    ),
                ),
                ("To", str(Address(uri, "Bob", Params((("tag", "b"),))))),
                ("Call-ID", "c1"),
                ("CSeq", str(CSeq(2, "BYE"))),
            ],
        )
        data = request.toBytes()
        self.assertTrue(
            data.startswith(
                b"BYE sip:bob@198.51.100.9:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5090;branch=z9hG4bKabc;rport\r\n"
            )
        )
        self.assertIn(b"\r\nTo: Bob <sip:bob@198.51.100.9:5070>;tag=b\r\n", data)
        self.assertTrue(data.endswith(b"Content-Length: 0\r\n\r\n"))
        again = parseMessage(data)
        self.assertEqual(again, request.addHeader("Content-Length", "0"))

    def test_modifiers(self) -> None:
        m = parseMessage(INVITE)
        self.assertEqual(m.withHeader("Max-Forwards", "69").maxForwards, 69)
        self.assertEqual(m.withoutHeader("Record-Route").recordRoutes, ())
        self.assertEqual(m.addHeader("Supported", "timer").get("Supported"), "timer")
        self.assertEqual(m.maxForwards, 70)

    def test_response(self) -> None:
        r = SipResponse(486, headers=[("Call-ID", "x")])
        self.assertEqual(r.reason, "Busy Here")
        self.assertEqual(
            r.toBytes(), b"SIP/2.0 486 Busy Here\r\nCall-ID: x\r\nContent-Length: 0\r\n\r\n"
        )

    def test_utf8(self) -> None:
        r = SipResponse(200, "Всё хорошо", [("Subject", "café")])
        again = parseMessage(_withMandatory(r))
        assert isinstance(again, SipResponse)
        self.assertEqual(again.reason, "Всё хорошо")
        self.assertEqual(again.get("Subject"), "café")


def _withMandatory(r: SipResponse) -> bytes:
    return SipResponse(
        r.code,
        r.reason,
        [
            ("Via", "SIP/2.0/UDP h;branch=z9hG4bK1"),
            ("From", "<sip:a@b>;tag=1"),
            ("To", "<sip:a@b>"),
            ("Call-ID", "x"),
            ("CSeq", "1 INVITE"),
            *r.headers,
        ],
    ).toBytes()


class ResponseForTests(SynchronousTestCase):
    """
    L{responseFor} (RFC 3261 §8.2.6).
    """

    def test_copies(self) -> None:
        request = parseMessage(INVITE)
        assert isinstance(request, SipRequest)
        r = responseFor(
            request,
            200,
            toTag="xyz",
            headers=[("Contact", "<sip:echo@192.0.2.1:5090>")],
            body=b"v=0\r\n",
            contentType="application/sdp",
        )
        self.assertEqual((r.code, r.reason), (200, "OK"))
        self.assertEqual(r.getAll("Via"), request.getAll("Via"))
        self.assertEqual(r.get("From"), request.get("From"))
        self.assertEqual(r.get("To"), "<sip:echo@192.0.2.1:5090>;tag=xyz")
        self.assertEqual(r.get("Call-ID"), request.callId)
        self.assertEqual(r.get("CSeq"), "314159 INVITE")
        self.assertEqual(r.getAll("Record-Route"), ("<sip:proxy.example.com;lr>",))
        self.assertEqual(r.contentType, "application/sdp")
        again = parseMessage(r.toBytes())
        assert isinstance(again, SipResponse)
        self.assertEqual(again.toAddress.tag, "xyz")
        self.assertEqual(again.body, b"v=0\r\n")

    def test_trying(self) -> None:
        """
        100 gets no To tag and no Record-Route, but the Timestamp.
        """
        request = parseMessage(invite(Max_Forwards=b"70\r\nTimestamp: 54"))
        assert isinstance(request, SipRequest)
        r = responseFor(request, 100, toTag="xyz")
        self.assertEqual(r.get("To"), "<sip:echo@192.0.2.1:5090>")
        self.assertNotIn("Record-Route", r.headers)
        self.assertEqual(r.get("Timestamp"), "54")
        self.assertEqual(r.reason, "Trying")

    def test_existingTagKept(self) -> None:
        request = parseMessage(invite(To=b"<sip:echo@192.0.2.1>;tag=old"))
        assert isinstance(request, SipRequest)
        self.assertEqual(responseFor(request, 200, toTag="new").toAddress.tag, "old")

    def test_noRecordRouteForBye(self) -> None:
        request = parseMessage(invite(CSeq=b"2 BYE").replace(b"INVITE sip:", b"BYE sip:"))
        assert isinstance(request, SipRequest)
        self.assertNotIn("Record-Route", responseFor(request, 200).headers)

    def test_custom(self) -> None:
        request = parseMessage(INVITE)
        assert isinstance(request, SipRequest)
        r = responseFor(request, 503, headers=[("Retry-After", "1")])
        self.assertEqual(r.reason, "Service Unavailable")
        self.assertEqual(r.get("Retry-After"), "1")
        self.assertEqual(responseFor(request, 488, "No codec").reason, "No codec")

    def test_fromPartial(self) -> None:
        partial = PartialMessage(
            True, "INVITE", Headers([("Via", "x"), ("To", '"broken'), ("CSeq", "1 INVITE")])
        )
        r = responseFor(partial, 400, toTag="t")
        self.assertEqual(r.get("To"), '"broken;tag=t')
        self.assertIsNone(r.get("From"))

    def test_badRequestFor(self) -> None:
        error = self.assertRaises(SipParseError, parseMessage, invite(CSeq=b"1 BYE"))
        r = badRequestFor(error, toTag="t")
        self.assertEqual(r.code, 400)
        self.assertEqual(r.reason, "Bad Request (CSeq method does not match the request method)")
        self.assertEqual(r.get("CSeq"), "1 BYE")
        self.assertEqual(r.toAddress.tag, "t")
        error = SipParseError(
            "bad\r\nthing",
            PartialMessage(True, "OPTIONS", Headers([("Via", "v"), ("CSeq", "1 OPTIONS")])),
        )
        self.assertEqual(badRequestFor(error).reason, "Bad Request (bad  thing)")

    def test_reasons(self) -> None:
        self.assertEqual(REASONS[481], "Call/Transaction Does Not Exist")
        self.assertEqual(reasonPhrase(487), "Request Terminated")
        self.assertEqual(reasonPhrase(499), "Client Error")
        self.assertEqual(reasonPhrase(299), "OK")


class URITests(SynchronousTestCase):
    """
    L{parseURI} and L{SipURI}.
    """

    def test_full(self) -> None:
        uri = parseURI(
            "sips:alice:secret@Example.COM:5061;transport=TCP;lr?subject=hi%20there&priority=urgent"
        )
        self.assertEqual(
            uri,
            SipURI(
                "sips",
                "Example.COM",
                "alice",
                "secret",
                5061,
                Params((("transport", "TCP"), ("lr", None))),
                (("subject", "hi there"), ("priority", "urgent")),
            ),
        )
        assert isinstance(uri, SipURI)
        self.assertEqual(uri.transport, "tcp")
        self.assertEqual(uri.hostPort, "Example.COM:5061")
        self.assertEqual(
            str(uri),
            "sips:alice:secret@Example.COM:5061;transport=TCP;lr?subject=hi%20there&priority=urgent",
        )

    def test_ipv6(self) -> None:
        uri = parseURI("sip:bob@[2001:db8::10]:5070;maddr=[2001:db8::1]")
        assert isinstance(uri, SipURI)
        self.assertEqual((uri.host, uri.port), ("[2001:db8::10]", 5070))
        self.assertEqual(uri.params.get("maddr"), "[2001:db8::1]")
        self.assertEqual(parseURI(str(uri)), uri)
        self.assertEqual(parseURI("sip:[::1]"), SipURI("sip", "[::1]"))

    def test_noUser(self) -> None:
        self.assertEqual(parseURI("sip:example.com"), SipURI("sip", "example.com"))

    def test_tel(self) -> None:
        uri = parseURI("tel:+1-201-555-0123;phone-context=example.com")
        self.assertEqual(
            uri,
            SipURI(
                "tel", "", "+1-201-555-0123", params=Params((("phone-context", "example.com"),))
            ),
        )
        self.assertEqual(str(uri), "tel:+1-201-555-0123;phone-context=example.com")
        self.assertEqual(parseURI("tel:+15550100"), SipURI("tel", "", "+15550100"))

    def test_escaping(self) -> None:
        uri = SipURI("sip", "h", user="a b@c;d", password="p@ss")
        self.assertEqual(str(uri), "sip:a%20b%40c;d:p%40ss@h")
        self.assertEqual(parseURI(str(uri)), uri)

    def test_other(self) -> None:
        self.assertEqual(parseURI("urn:uuid:f81d4fae"), AbsoluteURI("urn", "uuid:f81d4fae"))
        self.assertEqual(str(AbsoluteURI("urn", "x")), "urn:x")

    def test_bad(self) -> None:
        for text in [
            "",
            "sip",
            ":x",
            "sip:",
            "1sip:x",
            "sip:a b",
            "sip:<x>",
            "sip:@h",
            "sip:u@",
            "sip:h:",
            "sip:h:x",
            "sip:h:70000",
            "sip:h;",
            "sip:h;=x",
            "sip:%zz@h",
            "sip:h?x",
            "sip:h?=x",
            "sip:h/x",
            "tel:",
            "tel:;x",
        ]:
            self.assertRaises(SipURIError, parseURI, text)
        self.assertTrue(issubclass(SipURIError, SipParseError))


class AddressTests(SynchronousTestCase):
    """
    L{parseAddress} and L{Address}.
    """

    def test_forms(self) -> None:
        uri = SipURI("sip", "b", "a")
        tag = Params((("tag", "1"),))
        self.assertEqual(parseAddress('"A" <sip:a@b>;tag=1'), Address(uri, "A", tag))
        self.assertEqual(parseAddress("A B <sip:a@b> ; tag = 1"), Address(uri, "A B", tag))
        self.assertEqual(parseAddress("<sip:a@b>;tag=1"), Address(uri, None, tag))
        self.assertEqual(parseAddress("sip:a@b;tag=1"), Address(uri, None, tag))
        self.assertEqual(parseAddress('"" <sip:a@b>'), Address(uri))

    def test_quotedEscapes(self) -> None:
        a = parseAddress(r'"a \"quoted\" \\ name" <sip:a@b>')
        self.assertEqual(a.displayName, 'a "quoted" \\ name')
        self.assertEqual(str(a), r'"a \"quoted\" \\ name" <sip:a@b>')
        self.assertEqual(parseAddress(str(a)), a)

    def test_withTag(self) -> None:
        a = parseAddress("<sip:a@b>;x=1").withTag("t")
        self.assertEqual(str(a), "<sip:a@b>;x=1;tag=t")
        self.assertEqual(a.withTag("u").tag, "u")

    def test_render(self) -> None:
        self.assertEqual(str(Address(SipURI("sip", "h"), "Bob Smith")), "Bob Smith <sip:h>")
        self.assertEqual(str(Address(SipURI("sip", "h"), "Smith, Bob")), '"Smith, Bob" <sip:h>')

    def test_quotedParamValue(self) -> None:
        a = parseAddress('<sip:a@b>;+sip.instance="<urn:uuid:1;2>";expires=60')
        self.assertEqual(a.params.get("+sip.instance"), '"<urn:uuid:1;2>"')
        self.assertEqual(unquoteString(a.params.get("+sip.instance") or ""), "<urn:uuid:1;2>")
        self.assertEqual(a.params.get("expires"), "60")

    def test_bad(self) -> None:
        for text in [
            "",
            '"x',
            '"x" sip:a@b',
            "<sip:a@b",
            "< sip:a@b>",
            "<>",
            "a, b <sip:a@b>",
            "<sip:a@b> x",
            "<sip:a@b>;",
            "sip:a@b,c",
        ]:
            self.assertRaises(SipParseError, parseAddress, text)


class ViaTests(SynchronousTestCase):
    """
    L{parseVia} and L{Via}.
    """

    def test_parse(self) -> None:
        via = parseVia(
            "SIP / 2.0 / udp  [2001:db8::1] : 5060 ; branch = z9hG4bKx ; rport ; received=2001:db8::2"
        )
        self.assertEqual(
            (via.protocol, via.transport, via.host, via.port),
            ("SIP/2.0", "UDP", "[2001:db8::1]", 5060),
        )
        self.assertEqual(via.branch, "z9hG4bKx")
        self.assertEqual(via.received, "2001:db8::2")
        self.assertTrue(via.hasRport)
        self.assertTrue(via.isRfc3261Branch)
        self.assertEqual(
            str(via), "SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bKx;rport;received=2001:db8::2"
        )

    def test_withReceived(self) -> None:
        via = parseVia("SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK1;rport")
        stamped = via.withReceived("198.51.100.7", 40000)
        self.assertEqual(
            str(stamped),
            "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK1;rport=40000;received=198.51.100.7",
        )
        self.assertEqual(stamped.rport, 40000)
        plain = parseVia("SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK1")
        self.assertEqual(plain.withReceived("10.0.0.2", 5060), plain)
        self.assertEqual(plain.withReceived("10.0.0.3", 5060).received, "10.0.0.3")

    def test_responseTarget(self) -> None:
        self.assertEqual(
            parseVia("SIP/2.0/UDP h.example.com").responseTarget(), ("h.example.com", 5060)
        )
        self.assertEqual(parseVia("SIP/2.0/TLS h:5071").responseTarget(), ("h", 5071))
        self.assertEqual(parseVia("SIP/2.0/TLS h").responseTarget(), ("h", 5061))
        via = parseVia("SIP/2.0/UDP 10.0.0.2:5062;rport").withReceived("198.51.100.7", 40000)
        self.assertEqual(via.responseTarget(), ("198.51.100.7", 40000))
        via = parseVia("SIP/2.0/UDP 10.0.0.2:5062").withReceived("198.51.100.7", 40000)
        self.assertEqual(via.responseTarget(), ("198.51.100.7", 5062))
        self.assertEqual(
            parseVia("SIP/2.0/UDP [2001:db8::1]:5070").responseTarget(), ("2001:db8::1", 5070)
        )

    def test_branchCookie(self) -> None:
        self.assertTrue(parseVia("SIP/2.0/UDP h;branch=z9hG4bKabc").isRfc3261Branch)
        self.assertFalse(parseVia("SIP/2.0/UDP h;branch=abc").isRfc3261Branch)
        self.assertFalse(parseVia("SIP/2.0/UDP h").isRfc3261Branch)

    def test_badRport(self) -> None:
        self.assertIsNone(parseVia("SIP/2.0/UDP h;rport=abc").rport)


class SmallPartsTests(SynchronousTestCase):
    """
    CSeq, parameters, headers, quoting and identifiers.
    """

    def test_cseq(self) -> None:
        self.assertEqual(parseCSeq(" 0009\t INVITE "), CSeq(9, "INVITE"))
        self.assertEqual(str(CSeq(1, "BYE")), "1 BYE")
        for text in ["", "1", "INVITE", "1 2 3", "99999999999 X"]:
            self.assertRaises(SipParseError, parseCSeq, text)

    def test_params(self) -> None:
        p = parseParams(' ; a = 1;B;c="x;y"')
        self.assertEqual(p.items, (("a", "1"), ("B", None), ("c", '"x;y"')))
        self.assertEqual(p.get("b", "absent"), None)
        self.assertEqual(p.get("z", "absent"), "absent")
        self.assertIn("A", p)
        self.assertEqual(str(p.set("a", "2").remove("B")), ';a=2;c="x;y"')
        self.assertEqual(parseParams(""), Params())
        for text in ["x", ";", ";a=", ";a=b c", ';a="x" y', ';a="x']:
            self.assertRaises(SipParseError, parseParams, text)

    def test_parameterized(self) -> None:
        reason = parseParameterized('Q.850;cause=16;text="Normal; clearing"')
        self.assertEqual(reason.value, "Q.850")
        self.assertEqual(reason.params.get("cause"), "16")
        self.assertEqual(unquoteString(reason.params.get("text") or ""), "Normal; clearing")
        self.assertEqual(parseParameterized("application/sdp").value, "application/sdp")

    def test_headers(self) -> None:
        h = Headers([("v", "a"), ("X-Foo", "1"), ("Via", "b")])
        self.assertEqual(h.getAll("VIA"), ("a", "b"))
        self.assertEqual(h.get("x-foo"), "1")
        self.assertIsNone(h.get("Route"))
        self.assertEqual(h.get("Route", "d"), "d")
        self.assertEqual(h.getAll("Route"), ())
        self.assertEqual(len(h), 3)
        self.assertEqual(h.set("via", "c").items(), (("Via", "c"), ("X-Foo", "1")))
        self.assertEqual(h.remove("X-FOO").items(), (("Via", "a"), ("Via", "b")))
        self.assertEqual(h.add("Route", "r").getAll("Route"), ("r",))
        self.assertEqual(h, Headers(h.items()))
        self.assertNotIn(3, h)
        self.assertEqual(canonicalName("WWW-AUTHENTICATE"), "WWW-Authenticate")
        self.assertEqual(canonicalName("cseq"), "CSeq")
        self.assertEqual(canonicalName("X-Thing"), "X-Thing")

    def test_quoting(self) -> None:
        self.assertEqual(quoteString('a"b\\c'), '"a\\"b\\\\c"')
        self.assertEqual(unquoteString(quoteString('a"b\\c')), 'a"b\\c')
        self.assertEqual(unquoteString("token"), "token")

    def test_identifiers(self) -> None:
        branch = newBranch()
        self.assertTrue(branch.startswith("z9hG4bK"))
        self.assertNotEqual(branch, newBranch())
        self.assertEqual(len(newTag()), 16)
        self.assertTrue(newCallId("192.0.2.1").endswith("@192.0.2.1"))
        self.assertNotIn("@", newCallId())


class FrameLengthTests(SynchronousTestCase):
    """
    L{frameLength} for stream transports.
    """

    def test_frames(self) -> None:
        self.assertEqual(frameLength(INVITE), len(INVITE))
        self.assertEqual(frameLength(b"\r\n\r\n" + INVITE + b"INVITE"), len(INVITE) + 4)
        self.assertIsNone(frameLength(INVITE[:-1]))
        self.assertIsNone(frameLength(INVITE[:40]))
        compact = INVITE.replace(b"Content-Length:", b"l :")
        self.assertEqual(frameLength(compact), len(compact))

    def test_errors(self) -> None:
        self.assertRaises(SipParseError, frameLength, invite(Content_Length=b""))
        self.assertRaises(SipParseError, frameLength, invite(Content_Length=b"-3"))
        self.assertRaises(SipParseError, frameLength, b"x" * (MAX_MESSAGE_SIZE + 1))
        self.assertRaises(SipParseError, frameLength, invite(Content_Length=b"70000"))
