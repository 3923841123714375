"""
RFC 4475 torture messages through L{rapida_twisted.sip._codec}, plus fuzzing.

The messages live in C{tests/data/rfc4475/} in the RFC's own notation
(see the README there).  Valid ones must parse with the right fields;
invalid ones must raise L{SipParseError}, answerable (400, or 505 for the
version) when the RFC expects a response and the input is a request, not
answerable when it is a response (those are dropped).  Messages of RFC 4475
§3.2–3.4 are syntactically valid: rejecting them is the job of the
transaction layer or the TU, and each test says which.
"""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from rapida_twisted.sip._codec import (
    AbsoluteURI,
    SipParseError,
    SipRequest,
    SipResponse,
    SipURI,
    badRequestFor,
    parseMessage,
)

DATA = Path(__file__).parent / "data" / "rfc4475"


def load(name: str) -> bytes:
    """
    One torture message as wire bytes: RFC 4475 §2 notation expanded, CRLF
    line ends.
    """
    text = (DATA / f"{name}.dat").read_text(encoding="utf-8")
    text = re.sub(
        r"<allOneLine>\n(.*?)\n</allOneLine>",
        lambda m: m.group(1).replace("\n", ""),
        text,
        flags=re.S,
    )
    text = re.sub(
        r"<repeat count=(\d+)>(.*?)</repeat>",
        lambda m: m.group(2) * int(m.group(1)),
        text,
        flags=re.S,
    )
    text = text.replace("\n", "\r\n")
    out = []
    for i, part in enumerate(re.split(r"<hex>(.*?)</hex>", text, flags=re.S)):
        out.append(bytes.fromhex(part) if i % 2 else part.encode("utf-8"))
    return b"".join(out)


def _sansLength(message: SipRequest | SipResponse) -> SipRequest | SipResponse:
    """
    The message without Content-Length (which serialization normalises).
    """
    return message.withoutHeader("Content-Length")


def request(name: str) -> SipRequest:
    message = parseMessage(load(name))
    assert isinstance(message, SipRequest)
    return message


def response(name: str) -> SipResponse:
    message = parseMessage(load(name))
    assert isinstance(message, SipResponse)
    return message


VALID = [
    "wsinv",
    "intmeth",
    "esc01",
    "escnull",
    "esc02",
    "lwsdisp",
    "longreq",
    "dblreq",
    "semiuri",
    "transports",
    "mpart01",
    "unreason",
    "noreason",
]

#: name -> (status code of the answer, answerable?)
INVALID = {
    "badinv01": (400, True),
    "clerr": (400, True),
    "scalar02": (400, True),
    "scalarlg": (400, True),
    "scalar1l": (400, False),  # a response: dropped
    "quotbal": (400, True),
    "ltgtruri": (400, True),
    "lwsruri": (400, True),
    "lwsstart": (400, True),
    "trws": (400, True),
    "escruri": (400, True),
    "regbadct": (400, True),
    "badaston": (400, True),
    "baddn": (400, True),
    "badvers": (505, True),
    "mismatch01": (400, True),
    "mismatch02": (400, True),
    "bigcode": (400, False),  # a response: dropped
    # RFC 4475 §3.3, rejected by the parser here because the parser checks
    # mandatory and single-valued headers itself:
    "insuf": (400, True),
    "multi01": (400, True),
    "mcl01": (400, True),
}

#: syntactically valid; the transaction layer or TU rejects or handles them
SEMANTIC = [
    "badbranch",
    "unkscm",
    "novelsc",
    "unksm2",
    "bext01",
    "invut",
    "regaut01",
    "bcast",
    "zeromf",
    "cparam01",
    "cparam02",
    "regescrt",
    "sdp01",
    "inv2543",
    "baddate",
]


class CorpusTests(SynchronousTestCase):
    """
    The corpus is complete and well formed.
    """

    def test_allFilesClassified(self) -> None:
        names = {p.stem for p in DATA.glob("*.dat")}
        self.assertEqual(names, set(VALID) | set(INVALID) | set(SEMANTIC))
        self.assertEqual(len(names), 49)

    def test_trailingSpacesKept(self) -> None:
        """
        Trailing spaces in the start line survive the loader (they are
        written as hex so that no editor strips them).
        """
        self.assertTrue(
            load("trws").startswith(b"OPTIONS sip:remote-target@example.com SIP/2.0  \r\n")
        )
        self.assertTrue(load("noreason").startswith(b"SIP/2.0 100 \r\n"))


class ValidMessageTests(SynchronousTestCase):
    """
    RFC 4475 §3.1.1: these parse, with the right values.
    """

    def test_roundTrip(self) -> None:
        """
        Every valid message serializes to bytes that parse to an equal
        message.
        """
        for name in VALID + SEMANTIC:
            message = parseMessage(load(name))
            again = parseMessage(message.toBytes())
            self.assertEqual(_sansLength(again), _sansLength(message), name)

    def test_wsinv(self) -> None:
        m = request("wsinv")
        self.assertEqual(m.method, "INVITE")
        assert isinstance(m.uri, SipURI)
        self.assertIn("unknownparam", m.uri.params)
        self.assertEqual(m.toAddress.tag, "1918181833n")
        self.assertEqual(str(m.toAddress.uri), "sip:vivekg@chair-dnrc.example.com")
        self.assertEqual(m.fromAddress.displayName, 'J Rosenberg \\"')
        self.assertEqual(m.fromAddress.tag, "98asjd8")
        self.assertEqual(m.maxForwards, 68)
        self.assertEqual((m.cseq.number, m.cseq.method), (9, "INVITE"))
        self.assertEqual(
            [(v.transport, v.host, v.branch) for v in m.vias],
            [
                ("UDP", "192.0.2.2", "390skdjuw"),
                ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
                ("UDP", "192.168.255.111", "z9hG4bK30239"),
            ],
        )
        self.assertEqual(m.get("Subject"), "")
        self.assertEqual(m.get("NewFangledHeader"), "newfangled value continued newfangled value")
        self.assertEqual(m.get("UnknownHeaderWithUnusualValue"), ";;,,;;,;")
        (route,) = m.routes
        assert isinstance(route.uri, SipURI)
        self.assertEqual(route.uri.params.get("unknownwith"), "value")
        self.assertIn("unknown-no-value", route.uri.params)
        (contact,) = m.contacts
        self.assertEqual(contact.displayName, 'Quoted string ""')
        self.assertEqual(contact.params.get("newparam"), "newvalue")
        self.assertIn("secondparam", contact.params)
        self.assertEqual(contact.params.get("q"), "0.33")
        self.assertEqual(m.contentType, "application/sdp")
        self.assertEqual(len(m.body), 150)
        self.assertTrue(m.body.startswith(b"v=0\r\n"))

    def test_intmeth(self) -> None:
        m = request("intmeth")
        self.assertEqual(m.method, "!interesting-Method0123456789_*+`.%indeed'~")
        self.assertEqual(m.cseq.method, m.method)
        assert isinstance(m.uri, SipURI)
        self.assertEqual(m.uri.user, "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
        self.assertEqual(m.uri.password, "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
        self.assertEqual(m.uri.host, "example.com")
        self.assertEqual(m.toAddress.displayName, "BEL:\x07 NUL:\x00 DEL:\x7f")
        self.assertEqual(m.fromAddress.displayName, "token1~` token2'+_ token3*%!.-")
        self.assertEqual(m.fromAddress.params.get("fromParam''~+*_!.-%"), '"работающий"')
        self.assertEqual(m.fromAddress.tag, "_token~1'+`*%!-.")
        self.assertEqual(m.callId, "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{")
        self.assertEqual(m.maxForwards, 255)
        self.assertEqual(m.vias[0].branch, "z9hG4bK-.!%66*_+`'~")
        self.assertEqual(m.get("extensionHeader-!.%*+_`'~"), "\ufeff大停電")

    def test_esc01(self) -> None:
        m = request("esc01")
        assert isinstance(m.uri, SipURI)
        self.assertEqual(m.uri.user, "sips:user@example.com")
        self.assertEqual(m.uri.host, "example.net")
        assert isinstance(m.toAddress.uri, SipURI)
        self.assertEqual(m.toAddress.uri.user, "user")
        assert isinstance(m.fromAddress.uri, SipURI)
        self.assertEqual(m.fromAddress.uri.user, "I have spaces")
        uri = m.contacts[0].uri
        assert isinstance(uri, SipURI)
        self.assertEqual(uri.user, "caller")
        self.assertIn("lr", uri.params)
        self.assertEqual(uri.params.get("name"), "value%41")
        self.assertEqual(m.contentType, "application/sdp")
        self.assertEqual(m.callId, "esc01.239409asdfakjkn23onasd0-3234")

    def test_escnull(self) -> None:
        m = request("escnull")
        assert isinstance(m.toAddress.uri, SipURI)
        self.assertEqual(m.toAddress.uri.user, "null-\x00-null")
        self.assertEqual(
            [c.uri.user for c in m.contacts if isinstance(c.uri, SipURI)], ["\x00", "\x00\x00"]
        )
        self.assertEqual(m.body, b"")

    def test_esc02(self) -> None:
        """
        The method is C{RE%47IST%45R}, not REGISTER; C{C%6Fntact} is an
        extension header, not a Contact.
        """
        m = request("esc02")
        self.assertEqual(m.method, "RE%47IST%45R")
        self.assertEqual(len(m.contacts), 2)
        self.assertEqual(m.get("C%6Fntact"), "<sip:alias2@host2.example.com>")
        self.assertEqual(m.toAddress.displayName, "%Z%45")

    def test_lwsdisp(self) -> None:
        self.assertEqual(request("lwsdisp").fromAddress.displayName, "caller")

    def test_longreq(self) -> None:
        m = request("longreq")
        self.assertEqual(len(m.vias), 34)
        self.assertEqual(m.vias[0].host, "sip33.example.com")
        self.assertEqual(m.vias[-1].received, "192.0.2.5")
        self.assertEqual(m.vias[-1].branch, "verylonglongbranch" * 29 + "value")
        self.assertEqual(
            m.toAddress.displayName, "I have a user name of " + "extreme" * 10 + " proportion"
        )
        self.assertEqual(m.fromAddress.tag, "12" + "982" * 50 + "424")
        self.assertEqual(len(m.body), 150)

    def test_dblreq(self) -> None:
        """
        Only the first request counts; the bytes after its (empty) body are
        ignored.
        """
        m = request("dblreq")
        self.assertEqual(m.method, "REGISTER")
        self.assertEqual(m.body, b"")

    def test_semiuri(self) -> None:
        m = request("semiuri")
        assert isinstance(m.uri, SipURI)
        self.assertEqual(m.uri.user, "user;par=u@example.net")
        self.assertEqual(m.uri.host, "example.com")
        self.assertEqual(len(m.uri.params), 0)
        self.assertEqual(len(m.getAll("Accept")), 6)

    def test_transports(self) -> None:
        m = request("transports")
        self.assertEqual([v.transport for v in m.vias], ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"])
        self.assertEqual(m.callId, "transports.kijh4akdnaqjkwendsasfdj")

    def test_mpart01(self) -> None:
        m = request("mpart01")
        self.assertEqual(m.contentType, "multipart/mixed")
        self.assertEqual(len(m.body), int(m.get("Content-Length") or ""))
        self.assertIn(b"\x00", m.body)
        self.assertTrue(m.body.endswith(b"--7a9cbec02ceef655--\r\n"))

    def test_unreason(self) -> None:
        m = response("unreason")
        self.assertEqual(m.code, 200)
        self.assertEqual(m.reason, "= 2**3 * 5**2 но сто девяносто девять - простое")
        self.assertEqual(len(m.body), 154)

    def test_noreason(self) -> None:
        m = response("noreason")
        self.assertEqual((m.code, m.reason), (100, ""))


class InvalidMessageTests(SynchronousTestCase):
    """
    RFC 4475 §3.1.2 (and the syntax parts of §3.3): L{SipParseError},
    answerable exactly when the RFC expects an answer to a request.
    """

    def test_invalid(self) -> None:
        for name, (code, answerable) in INVALID.items():
            error = self.assertRaises(SipParseError, parseMessage, load(name))
            self.assertEqual((error.code, error.canAnswer), (code, answerable), name)
            if answerable:
                answer = badRequestFor(error)
                self.assertEqual(answer.code, code)
                self.assertTrue(answer.reason.startswith("Bad Request (") or code != 400)
                assert error.partial is not None
                self.assertEqual(answer.getAll("Via"), error.partial.headers.getAll("Via"))
                self.assertEqual(answer.get("CSeq"), error.partial.headers.get("CSeq"))
                self.assertEqual(answer.get("Call-ID"), error.partial.headers.get("Call-ID"))
                self.assertIn(b"\r\n\r\n", answer.toBytes())
            else:
                self.assertRaises(ValueError, badRequestFor, error)

    def test_reasons(self) -> None:
        """
        The reason names the problem.
        """
        expected = {
            "clerr": "Content-Length",
            "scalar02": "Content-Length",
            "scalarlg": "CSeq",
            "quotbal": "quoted",
            "ltgtruri": "Request-URI",
            "escruri": "Request-URI",
            "mismatch01": "CSeq method",
            "insuf": "missing",
            "multi01": "repeated",
            "mcl01": "Content-Length",
            "badvers": "version",
        }
        for name, word in expected.items():
            error = self.assertRaises(SipParseError, parseMessage, load(name))
            self.assertIn(word, error.reason, name)

    def test_badvers505(self) -> None:
        error = self.assertRaises(SipParseError, parseMessage, load("badvers"))
        self.assertEqual(badRequestFor(error).code, 505)
        self.assertEqual(badRequestFor(error).reason[:21], "Version Not Supported")


class SemanticTests(SynchronousTestCase):
    """
    RFC 4475 §3.2–3.4: these parse; what the upper layers need to reject
    them is exposed.
    """

    def test_badbranch(self) -> None:
        """
        Transaction layer: a bare magic cookie is not an RFC 3261 branch, so
        matching falls back to RFC 2543 rules.
        """
        via = request("badbranch").vias[0]
        self.assertEqual(via.branch, "z9hG4bK")
        self.assertFalse(via.isRfc3261Branch)

    def test_unknownSchemes(self) -> None:
        """
        TU: a Request-URI of an unknown scheme gets 416.
        """
        self.assertEqual(
            request("unkscm").uri, AbsoluteURI("nobodyknowsthisscheme", "totallyopaquecontent")
        )
        self.assertEqual(request("novelsc").uri, AbsoluteURI("soap.beep", "//192.0.2.103:3002"))

    def test_unksm2(self) -> None:
        """
        TU (a registrar would answer 400; we answer REGISTER 405): To, From
        and Contact of other schemes parse.
        """
        m = request("unksm2")
        self.assertEqual(m.toAddress.uri, AbsoluteURI("isbn", "2983792873"))
        self.assertEqual(m.fromAddress.uri, AbsoluteURI("http", "//www.example.com"))
        self.assertEqual(m.contacts[0].uri, AbsoluteURI("name", "John_Smith"))

    def test_bext01(self) -> None:
        """
        TU: 420 listing the Require options in Unsupported.
        """
        m = request("bext01")
        self.assertEqual(m.getAll("Require"), ("nothingSupportsThis", "nothingSupportsThisEither"))
        self.assertEqual(len(m.getAll("Proxy-Require")), 2)

    def test_invut(self) -> None:
        """
        TU: 415 for an unknown body type.
        """
        m = request("invut")
        self.assertEqual(m.contentType, "application/unknownformat")
        self.assertEqual(len(m.body), 40)

    def test_regaut01(self) -> None:
        """
        Digest layer: an unknown Authorization scheme is a DigestParseError.
        """
        self.assertEqual(
            request("regaut01").get("Authorization"), "NoOneKnowsThisScheme opaque-data=here"
        )

    def test_bcast(self) -> None:
        """
        Transport: a response with more than one Via is dropped by a UAC.
        """
        self.assertEqual(len(response("bcast").vias), 2)

    def test_zeromf(self) -> None:
        """
        TU: Max-Forwards 0 on an OPTIONS addressed to us may still be
        answered.
        """
        self.assertEqual(request("zeromf").maxForwards, 0)

    def test_cparam(self) -> None:
        """
        Without <> the parameter belongs to the Contact header; within, to
        the URI.
        """
        c1 = request("cparam01").contacts[0]
        self.assertIn("unknownparam", c1.params)
        assert isinstance(c1.uri, SipURI)
        self.assertNotIn("unknownparam", c1.uri.params)
        c2 = request("cparam02").contacts[0]
        self.assertNotIn("unknownparam", c2.params)
        assert isinstance(c2.uri, SipURI)
        self.assertIn("unknownparam", c2.uri.params)

    def test_regescrt(self) -> None:
        uri = request("regescrt").contacts[0].uri
        assert isinstance(uri, SipURI)
        self.assertEqual(uri.headers, (("Route", "<sip:sip.example.com>"),))

    def test_sdp01(self) -> None:
        """
        TU: 406 when the Accept list leaves nothing we can answer with.
        """
        self.assertEqual(request("sdp01").getAll("Accept"), ("text/nobodyKnowsThis",))

    def test_inv2543(self) -> None:
        """
        RFC 2543 syntax: no branch, no From tag, no Max-Forwards, no
        Content-Length (the body is the rest of the datagram).
        """
        m = request("inv2543")
        self.assertIsNone(m.vias[0].branch)
        self.assertIsNone(m.fromAddress.tag)
        self.assertIsNone(m.maxForwards)
        self.assertTrue(m.body.startswith(b"v=0"))
        self.assertEqual(len(m.body), 105)
        assert isinstance(m.toAddress.uri, SipURI)
        self.assertNotIn("user", m.toAddress.uri.params)
        self.assertEqual(m.toAddress.params.get("user"), "phone")

    def test_baddate(self) -> None:
        """
        Tolerated: a UAS that never interprets Date has no reason to refuse
        a bad time zone in it (RFC 4475 allows being liberal here).
        """
        self.assertEqual(request("baddate").get("Date"), "Fri, 01 Jan 2010 16:00:00 EST")


_SAMPLES = [load(name) for name in VALID + SEMANTIC + list(INVALID)]

_mutation = st.one_of(
    st.tuples(st.just("set"), st.integers(0, 10**6), st.integers(0, 255)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 40)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.just(0)),
    st.tuples(
        st.just("special"),
        st.integers(0, 10**6),
        st.sampled_from(
            [
                b"\r\n",
                b"\r\n ",
                b";",
                b",",
                b'"',
                b"<",
                b">",
                b":",
                b"%",
                b"\\",
                b"@",
                b"\x00",
                b"\xff",
                b" ",
            ]
        ),
    ),
)


def _mutate(data: bytes, mutations: list[tuple[str, int, object]]) -> bytes:
    buf = bytearray(data)
    for kind, position, arg in mutations:
        if not buf:
            break
        i = position % len(buf)
        if kind == "set":
            assert isinstance(arg, int)
            buf[i] = arg
        elif kind == "insert" or kind == "special":
            assert isinstance(arg, bytes)
            buf[i:i] = arg
        elif kind == "delete":
            assert isinstance(arg, int)
            del buf[i : i + arg]
        else:
            del buf[i:]
    return bytes(buf)


def _exercise(data: bytes) -> None:
    """
    Parse C{data}: either a message whose accessors and serialization work
    and which parses back to an equal message, or an L{SipParseError}.
    """
    try:
        message = parseMessage(data)
    except SipParseError as e:
        if e.canAnswer:
            badRequestFor(e).toBytes()
        return
    _ = (message.vias, message.fromAddress, message.toAddress, message.cseq, message.contacts)
    assert message.callId
    again = parseMessage(message.toBytes())
    assert _sansLength(again) == _sansLength(message), (message, again)


class FuzzTests(SynchronousTestCase):
    """
    Malformed input never raises anything but L{SipParseError}.
    """

    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.sampled_from(_SAMPLES), st.lists(_mutation, min_size=1, max_size=4))
    def test_mutations(self, sample: bytes, mutations: list[tuple[str, int, object]]) -> None:
        _exercise(_mutate(sample, mutations))

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=300))
    def test_garbage(self, data: bytes) -> None:
        _exercise(data)

    @settings(max_examples=200, deadline=None)
    @given(st.sampled_from(_SAMPLES), st.integers(0, 5000))
    def test_truncations(self, sample: bytes, cut: int) -> None:
        _exercise(sample[: cut % (len(sample) + 1)])

    def test_everyPrefix(self) -> None:
        """
        Every prefix of a typical INVITE (a torn datagram) is handled.
        """
        sample = load("esc01")
        for cut in range(len(sample) + 1):
            _exercise(sample[:cut])
