"""
Tests for L{rapida_twisted.sip._digest}.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from rapida_twisted.sip._digest import (
    ALGORITHMS,
    DigestChallenge,
    DigestCredentials,
    DigestParseError,
    NonceManager,
    NonceStatus,
    buildAuthorization,
    chooseChallenge,
    computeHA1,
    computeResponse,
    parseAuthorization,
    parseChallenge,
    verifyResponse,
)

RFC7616_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


class VectorTests(SynchronousTestCase):
    """
    The published examples.
    """

    def test_rfc2617(self) -> None:
        ha1 = computeHA1("Mufasa", "testrealm@host.com", "Circle Of Life")
        response = computeResponse(
            ha1=ha1,
            nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
            method="GET",
            uri="/dir/index.html",
            qop="auth",
            nc="00000001",
            cnonce="0a4f113b",
        )
        self.assertEqual(response, "6629fae49393a05397450978507c4ef1")

    def test_rfc7616(self) -> None:
        for algorithm, expected in [
            ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
            ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
        ]:
            ha1 = computeHA1("Mufasa", "http-auth@example.org", "Circle of Life", algorithm)
            response = computeResponse(
                ha1=ha1,
                nonce=RFC7616_NONCE,
                method="GET",
                uri="/dir/index.html",
                algorithm=algorithm,
                qop="auth",
                nc="00000001",
                cnonce=RFC7616_CNONCE,
            )
            self.assertEqual(response, expected, algorithm)

    def test_unknownAlgorithm(self) -> None:
        self.assertRaises(ValueError, computeHA1, "a", "b", "c", "SHA-1")
        self.assertRaises(
            ValueError, computeResponse, ha1="x", nonce="n", method="M", uri="u", algorithm="X"
        )


class ChallengeTests(SynchronousTestCase):
    """
    Challenges: build, parse, choose.
    """

    def test_roundTrip(self) -> None:
        challenge = DigestChallenge('rap"ida', "n1", "SHA-256", ("auth",), "op", True, "sip:x")
        value = challenge.toHeaderValue()
        self.assertEqual(
            value,
            'Digest realm="rap\\"ida", domain="sip:x", nonce="n1", opaque="op", stale=true, '
            'algorithm=SHA-256, qop="auth"',
        )
        self.assertEqual(parseChallenge(value), challenge)

    def test_parseLoose(self) -> None:
        challenge = parseChallenge(
            'digest  nonce = "abc" ,realm="r",, qop="auth,auth-int", stale=TRUE'
        )
        self.assertEqual(
            challenge, DigestChallenge("r", "abc", "MD5", ("auth", "auth-int"), None, True)
        )

    def test_parseErrors(self) -> None:
        for value in [
            "",
            'Basic realm="x"',
            'Digest realm="x"',
            'Digest nonce="x"',
            'Digest realm="x", nonce="y", realm="z"',
            'Digest realm="x, nonce="y"',
            "Digest realm x nonce y",
            "Digest realm=",
        ]:
            self.assertRaises(DigestParseError, parseChallenge, value)

    def test_choose(self) -> None:
        values = [
            'Digest realm="r", nonce="a", algorithm=MD5, qop="auth"',
            'Basic realm="r"',
            'Digest realm="r", nonce="b", algorithm=SHA-256, qop="auth"',
            'Digest realm="r", nonce="c", algorithm=SHA-1, qop="auth"',
            "garbage",
        ]
        self.assertEqual(chooseChallenge(values).nonce, "b")
        self.assertEqual(chooseChallenge(values[:1]).algorithm, "MD5")
        self.assertEqual(
            chooseChallenge(['Digest realm="r", nonce="d", algorithm=SHA-512-256-sess']).nonce, "d"
        )
        self.assertRaises(DigestParseError, chooseChallenge, values[1:2] + values[3:])
        self.assertEqual(ALGORITHMS[0], "SHA-512-256")


class AuthorizationTests(SynchronousTestCase):
    """
    Credentials: parse, build, verify.
    """

    def test_parse(self) -> None:
        value = (
            'Digest username="bob \\"the\\" builder", realm="rapida", nonce="n", '
            'uri="sip:echo@192.0.2.1:5090", response="0123ABCD", algorithm=SHA-256, '
            'cnonce="c", qop=auth, nc=0000000a, opaque="o", userhash=false'
        )
        credentials = parseAuthorization(value)
        self.assertEqual(
            credentials,
            DigestCredentials(
                'bob "the" builder',
                "rapida",
                "n",
                "sip:echo@192.0.2.1:5090",
                "0123abcd",
                "SHA-256",
                "c",
                "auth",
                "0000000a",
                "o",
            ),
        )
        self.assertEqual(credentials.nonceCount, 10)
        self.assertEqual(parseAuthorization(credentials.toHeaderValue()), credentials)

    def test_extendedUsername(self) -> None:
        value = 'Digest username*=UTF-8\'\'J%C3%A4s%C3%B8n, realm="r", nonce="n", uri="u", response="ab"'
        self.assertEqual(parseAuthorization(value).username, "Jäsøn")
        bad = 'Digest username*=latin1\'\'x, realm="r", nonce="n", uri="u", response="ab"'
        self.assertRaises(DigestParseError, parseAuthorization, bad)

    def test_parseErrors(self) -> None:
        base = 'username="u", realm="r", nonce="n", uri="sip:x", response="ab"'
        for value in [
            "NoOneKnowsThisScheme opaque-data=here",
            "Digest",
            'Digest realm="r", nonce="n", uri="sip:x", response="ab"',
            'Digest username="u", realm="r", nonce="n", uri="sip:x"',
            f"Digest {base.replace('ab', 'xyz')}",
            f"Digest {base}, qop=auth",
            f'Digest {base}, qop=auth, cnonce="c"',
            f'Digest {base}, qop=auth, cnonce="c", nc=1',
            f'Digest {base}, qop=auth, cnonce="c", nc=0000000g',
            f'Digest {base}, username="v"',
            'Digest username="unterminated',
        ]:
            self.assertRaises(DigestParseError, parseAuthorization, value)

    def test_buildAndVerify(self) -> None:
        for algorithm in ("MD5", "SHA-256", "SHA-512-256", "MD5-sess", "SHA-256-sess"):
            challenge = DigestChallenge("rapida", "nonce1", algorithm, ("auth",), "opq")
            credentials = buildAuthorization(
                challenge,
                method="INVITE",
                uri="sip:echo@192.0.2.1",
                username="alice",
                password="s3cret",
            )
            self.assertEqual(
                (credentials.qop, credentials.nc, credentials.opaque), ("auth", "00000001", "opq")
            )
            parsed = parseAuthorization(credentials.toHeaderValue())
            self.assertTrue(verifyResponse(parsed, "INVITE", password="s3cret"), algorithm)
            self.assertFalse(verifyResponse(parsed, "INVITE", password="wrong"))
            self.assertFalse(verifyResponse(parsed, "REGISTER", password="s3cret"))
            ha1 = computeHA1("alice", "rapida", "s3cret", algorithm)
            self.assertTrue(verifyResponse(parsed, "INVITE", ha1=ha1))

    def test_noQop(self) -> None:
        challenge = DigestChallenge("r", "n", qop=())
        credentials = buildAuthorization(
            challenge, method="BYE", uri="sip:a@b", username="u", password="p"
        )
        self.assertIsNone(credentials.qop)
        self.assertIsNone(credentials.cnonce)
        self.assertIsNone(credentials.nc)
        self.assertNotIn("qop", credentials.toHeaderValue())
        self.assertTrue(
            verifyResponse(parseAuthorization(credentials.toHeaderValue()), "BYE", password="p")
        )

    def test_authInt(self) -> None:
        challenge = DigestChallenge("r", "n", qop=("auth-int",))
        credentials = buildAuthorization(
            challenge,
            method="INVITE",
            uri="sip:a@b",
            username="u",
            password="p",
            body=b"v=0\r\n",
            nc=2,
            cnonce="cc",
        )
        self.assertEqual(
            (credentials.qop, credentials.nc, credentials.cnonce), ("auth-int", "00000002", "cc")
        )
        self.assertTrue(verifyResponse(credentials, "INVITE", password="p", body=b"v=0\r\n"))
        self.assertFalse(verifyResponse(credentials, "INVITE", password="p", body=b"v=1\r\n"))

    def test_unknownAlgorithmOrQop(self) -> None:
        credentials = DigestCredentials("u", "r", "n", "sip:x", "ab", algorithm="SHA-1")
        self.assertFalse(verifyResponse(credentials, "INVITE", password="p"))
        credentials = DigestCredentials(
            "u", "r", "n", "sip:x", "ab", qop="weird", nc="00000001", cnonce="c"
        )
        self.assertFalse(verifyResponse(credentials, "INVITE", password="p"))
        self.assertRaises(TypeError, verifyResponse, credentials, "INVITE")
        self.assertRaises(TypeError, verifyResponse, credentials, "INVITE", password="p", ha1="x")
        self.assertRaises(
            ValueError,
            buildAuthorization,
            DigestChallenge("r", "n", "SHA-1"),
            method="M",
            uri="u",
            username="u",
            password="p",
        )

    @settings(max_examples=300, deadline=None)
    @given(st.text(max_size=120))
    def test_fuzz(self, value: str) -> None:
        for parse in (parseAuthorization, parseChallenge):
            try:
                parse(value)
            except DigestParseError:
                pass

    @settings(max_examples=200, deadline=None)
    @given(st.text(min_size=1, max_size=20), st.text(max_size=20), st.text(max_size=20))
    def test_quotingRoundTrip(self, username: str, realm: str, password: str) -> None:
        """
        Any username and realm survive quoting, and the response verifies.
        """
        challenge = DigestChallenge(realm, "n", "SHA-256")
        credentials = buildAuthorization(
            challenge, method="INVITE", uri="sip:x", username=username, password=password
        )
        parsed = parseAuthorization(credentials.toHeaderValue())
        self.assertEqual(parsed, credentials)
        self.assertTrue(verifyResponse(parsed, "INVITE", password=password))


class NonceManagerTests(SynchronousTestCase):
    """
    L{NonceManager}.
    """

    def setUp(self) -> None:
        self.nonces = NonceManager(b"secret", lifetime=300)

    def test_singleUse(self) -> None:
        nonce = self.nonces.issue(1000.0)
        self.assertEqual(self.nonces.issuedAt(nonce), 1000.0)
        self.assertEqual(self.nonces.check(nonce, "00000001", 1001.0), NonceStatus.VALID)
        self.assertEqual(self.nonces.check(nonce, "00000002", 1002.0), NonceStatus.REPLAYED)
        self.assertEqual(self.nonces.check(nonce, None, 1002.0), NonceStatus.REPLAYED)

    def test_expiry(self) -> None:
        nonce = self.nonces.issue(1000.0)
        self.assertEqual(self.nonces.check(nonce, None, 1300.0), NonceStatus.VALID)
        other = self.nonces.issue(1000.0)
        self.assertEqual(self.nonces.check(other, None, 1300.5), NonceStatus.STALE)
        # a used nonce stays refused after it is forgotten: it is stale by then
        self.assertEqual(self.nonces.check(nonce, None, 5000.0), NonceStatus.STALE)

    def test_invalid(self) -> None:
        nonce = self.nonces.issue(1000.0)
        for bad in [
            "",
            "abc",
            "%%%",
            "é",
            nonce[:-2] + ("AA" if nonce[-2:] != "AA" else "BB"),
            nonce + "A",
        ]:
            self.assertEqual(self.nonces.check(bad, None, 1000.0), NonceStatus.INVALID, bad)
        self.assertIsNone(NonceManager(b"other").issuedAt(nonce))
        self.assertEqual(
            self.nonces.check(self.nonces.issue(2000.0), None, 1000.0), NonceStatus.INVALID
        )
        self.assertEqual(self.nonces.check(nonce, "00000000", 1000.0), NonceStatus.INVALID)
        self.assertEqual(self.nonces.check(nonce, "xyz", 1000.0), NonceStatus.INVALID)
        self.assertEqual(self.nonces.check(nonce, 1, 1000.0), NonceStatus.VALID)

    def test_unique(self) -> None:
        self.assertNotEqual(self.nonces.issue(1.0), self.nonces.issue(1.0))
        self.assertEqual(self.nonces.issue(1.0, b"salt"), self.nonces.issue(1.0, b"salt"))

    def test_bounded(self) -> None:
        nonces = NonceManager(b"k", lifetime=300, maxTracked=3)
        issued = [nonces.issue(100.0 + i) for i in range(5)]
        for i, nonce in enumerate(issued):
            self.assertEqual(nonces.check(nonce, None, 110.0 + i), NonceStatus.VALID)
        self.assertLessEqual(len(nonces._used), 3)
        for nonce in issued:
            self.assertIn(
                nonces.check(nonce, None, 120.0), (NonceStatus.STALE, NonceStatus.REPLAYED)
            )

    def test_pruned(self) -> None:
        for i in range(10):
            self.nonces.check(self.nonces.issue(float(i)), None, float(i))
        self.nonces.check(self.nonces.issue(1000.0), None, 1000.0)
        self.assertEqual(len(self.nonces._used), 1)

    def test_challenges(self) -> None:
        sha, md5 = self.nonces.challenges("rapida", 50.0, stale=True, opaque="o")
        self.assertEqual((sha.algorithm, md5.algorithm), ("SHA-256", "MD5"))
        self.assertEqual(sha.nonce, md5.nonce)
        self.assertTrue(sha.stale)
        self.assertEqual(sha.qop, ("auth",))
        self.assertEqual(self.nonces.issuedAt(sha.nonce), 50.0)

    def test_uasFlow(self) -> None:
        """
        The sequence in the module docstring, with a client answering the
        strongest challenge.
        """
        headers = [c.toHeaderValue() for c in self.nonces.challenges("rapida", 10.0)]
        challenge = chooseChallenge(headers)
        value = buildAuthorization(
            challenge, method="INVITE", uri="sip:echo@192.0.2.1", username="alice", password="pw"
        ).toHeaderValue()
        credentials = parseAuthorization(value)
        self.assertEqual(credentials.algorithm, "SHA-256")
        self.assertTrue(verifyResponse(credentials, "INVITE", password="pw"))
        self.assertEqual(
            self.nonces.check(credentials.nonce, credentials.nc, 11.0), NonceStatus.VALID
        )
        self.assertEqual(
            self.nonces.check(credentials.nonce, credentials.nc, 12.0), NonceStatus.REPLAYED
        )
