# -*- test-case-name: tests.test_sip_digest -*-
"""
HTTP Digest authentication for SIP (RFC 2617, RFC 7616, RFC 8760).

Pure: challenges and credentials are values; time is a parameter of
L{NonceManager}.  Parsing errors are L{DigestParseError} (a
C{ValueError}).

A UAS that authenticates a request:

 1. no C{Authorization} → 401 with L{NonceManager.challenges} as
    C{WWW-Authenticate} (one header per algorithm, strongest first);
 2. L{parseAuthorization} (error → 401 again, or 400);
 3. C{credentials.realm} is ours and C{credentials.uri} is the
    Request-URI, L{verifyResponse} with the user's password (or stored
    HA1) → false: 403 or 401;
 4. only then L{NonceManager.check} (which records the use): C{VALID} →
    accept; C{STALE} or C{REPLAYED} → 401 with C{stale=true}; C{INVALID} →
    401.

Checking the hash before the nonce means a forged response never uses up
a nonce.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import re
import secrets
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import unquote

__all__ = [
    "ALGORITHMS",
    "DigestChallenge",
    "DigestCredentials",
    "DigestParseError",
    "NonceManager",
    "NonceStatus",
    "buildAuthorization",
    "chooseChallenge",
    "computeHA1",
    "computeResponse",
    "parseAuthorization",
    "parseChallenge",
    "verifyResponse",
]


class DigestParseError(ValueError):
    """
    A malformed or non-Digest challenge or authorization header.
    """


def _sha512_256(data: bytes) -> str:
    return hashlib.new("sha512_256", data).hexdigest()


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


#: algorithm name (upper case, without C{-sess}) → hex digest function
_HASHES: dict[str, Callable[[bytes], str]] = {
    "MD5": _md5,
    "SHA-256": _sha256,
    "SHA-512-256": _sha512_256,
}

#: the algorithms understood, strongest first (RFC 8760 §2.4)
ALGORITHMS = ("SHA-512-256", "SHA-256", "MD5")

_STRENGTH = {name: rank for rank, name in enumerate(reversed(ALGORITHMS))}


def _hashOf(algorithm: str) -> tuple[Callable[[bytes], str], bool] | None:
    name = algorithm.upper()
    session = name.endswith("-SESS")
    if session:
        name = name[:-5]
    fn = _HASHES.get(name)
    return None if fn is None else (fn, session)


# ---------------------------------------------------------------------------
# auth-param lists

_TOKEN = r"[A-Za-z0-9!#$%&'*+.^_`|~-]+"
_SCHEME = re.compile(rf"\s*({_TOKEN})(?:\s+|$)")
_PARAM = re.compile(rf'\s*({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,"]+)\s*(?:,|$)', re.S)
_SEPARATOR = re.compile(r"\s*,")
_HEX = re.compile(r"[0-9a-fA-F]+")
_ESCAPED = re.compile(r"\\(.)", re.S)


def _parseParams(value: str) -> tuple[str, dict[str, str]]:
    """
    The scheme and the auth-params (names lower case, quoted values
    unquoted) of a challenge or credentials header.
    """
    m = _SCHEME.match(value)
    if m is None:
        raise DigestParseError("no authentication scheme")
    scheme = m.group(1)
    params: dict[str, str] = {}
    pos = m.end()
    while pos < len(value):
        sep = _SEPARATOR.match(value, pos)
        if sep is not None:
            pos = sep.end()
            continue
        if not value[pos:].strip():
            break
        pm = _PARAM.match(value, pos)
        if pm is None:
            raise DigestParseError(f"malformed auth-param near {value[pos : pos + 20]!r}")
        name = pm.group(1).lower()
        raw = pm.group(2)
        if name in params:
            raise DigestParseError(f"repeated auth-param {name}")
        params[name] = _ESCAPED.sub(r"\1", raw[1:-1]) if raw[:1] == '"' else raw
        pos = pm.end()
    return scheme, params


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ---------------------------------------------------------------------------
# Challenge


@dataclass(frozen=True, slots=True)
class DigestChallenge:
    """
    A C{WWW-Authenticate} / C{Proxy-Authenticate} Digest challenge.
    """

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ("auth",)
    opaque: str | None = None
    stale: bool = False
    domain: str | None = None

    def toHeaderValue(self) -> str:
        """
        The header value: C{Digest realm="...", nonce="...", ...}.
        """
        parts = [f"realm={_quote(self.realm)}"]
        if self.domain is not None:
            parts.append(f"domain={_quote(self.domain)}")
        parts.append(f"nonce={_quote(self.nonce)}")
        if self.opaque is not None:
            parts.append(f"opaque={_quote(self.opaque)}")
        if self.stale:
            parts.append("stale=true")
        parts.append(f"algorithm={self.algorithm}")
        if self.qop:
            parts.append(f"qop={_quote(','.join(self.qop))}")
        return "Digest " + ", ".join(parts)


def parseChallenge(value: str) -> DigestChallenge:
    """
    Parse a C{WWW-Authenticate} / C{Proxy-Authenticate} value.

    @raise DigestParseError: not Digest, malformed, or without realm or
        nonce.
    """
    scheme, params = _parseParams(value)
    if scheme.lower() != "digest":
        raise DigestParseError(f"not a Digest challenge: {scheme}")
    if "realm" not in params or "nonce" not in params:
        raise DigestParseError("challenge without realm or nonce")
    qop = tuple(q.strip() for q in params.get("qop", "").split(",") if q.strip())
    return DigestChallenge(
        realm=params["realm"],
        nonce=params["nonce"],
        algorithm=params.get("algorithm", "MD5"),
        qop=qop,
        opaque=params.get("opaque"),
        stale=params.get("stale", "").lower() == "true",
        domain=params.get("domain"),
    )


def chooseChallenge(values: Iterable[str]) -> DigestChallenge:
    """
    The challenge to answer among several header values: the strongest
    algorithm we support (RFC 8760), first one on a tie; values we cannot
    parse or whose algorithm we do not know are skipped.

    @raise DigestParseError: no usable Digest challenge.
    """
    best: DigestChallenge | None = None
    for value in values:
        try:
            challenge = parseChallenge(value)
        except DigestParseError:
            continue
        known = _hashOf(challenge.algorithm)
        if known is None:
            continue
        name = challenge.algorithm.upper().removesuffix("-SESS")
        if (
            best is None
            or _STRENGTH[name] > _STRENGTH[best.algorithm.upper().removesuffix("-SESS")]
        ):
            best = challenge
    if best is None:
        raise DigestParseError("no usable Digest challenge")
    return best


# ---------------------------------------------------------------------------
# Credentials


@dataclass(frozen=True, slots=True)
class DigestCredentials:
    """
    An C{Authorization} / C{Proxy-Authorization} Digest response.
    C{nc} is the 8 hex digits as sent.
    """

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str = "MD5"
    cnonce: str | None = None
    qop: str | None = None
    nc: str | None = None
    opaque: str | None = None
    userhash: bool = False

    @property
    def nonceCount(self) -> int | None:
        """
        C{nc} as a number, or C{None}.
        """
        return None if self.nc is None else int(self.nc, 16)

    def toHeaderValue(self) -> str:
        """
        The header value: C{Digest username="...", ...}.
        """
        parts = [
            f"username={_quote(self.username)}",
            f"realm={_quote(self.realm)}",
            f"nonce={_quote(self.nonce)}",
            f"uri={_quote(self.uri)}",
            f"response={_quote(self.response)}",
            f"algorithm={self.algorithm}",
        ]
        if self.cnonce is not None:
            parts.append(f"cnonce={_quote(self.cnonce)}")
        if self.opaque is not None:
            parts.append(f"opaque={_quote(self.opaque)}")
        if self.qop is not None:
            parts.append(f"qop={self.qop}")
        if self.nc is not None:
            parts.append(f"nc={self.nc}")
        if self.userhash:
            parts.append("userhash=true")
        return "Digest " + ", ".join(parts)


def _extendedValue(value: str) -> str:
    charset, _, rest = value.partition("'")
    _, _, encoded = rest.partition("'")
    if charset.upper() != "UTF-8" or not rest:
        raise DigestParseError("username* must be UTF-8''...")
    return unquote(encoded, encoding="utf-8", errors="strict")


def parseAuthorization(value: str) -> DigestCredentials:
    """
    Parse an C{Authorization} / C{Proxy-Authorization} value.

    @raise DigestParseError: not Digest, malformed, a required parameter
        missing (username, realm, nonce, uri, response; cnonce and nc with
        qop), or a malformed nc or response.
    """
    scheme, params = _parseParams(value)
    if scheme.lower() != "digest":
        raise DigestParseError(f"not Digest credentials: {scheme}")
    username = params.get("username")
    if username is None and "username*" in params:
        try:
            username = _extendedValue(params["username*"])
        except (UnicodeDecodeError, ValueError) as e:
            raise DigestParseError(f"bad username*: {e}") from None
    missing = [n for n in ("realm", "nonce", "uri", "response") if n not in params]
    if username is None or missing:
        raise DigestParseError(f"missing {', '.join(missing or ['username'])}")
    if not _HEX.fullmatch(params["response"]):
        raise DigestParseError("response is not hexadecimal")
    qop = params.get("qop")
    nc = params.get("nc")
    if qop is not None:
        if "cnonce" not in params or nc is None:
            raise DigestParseError("qop without cnonce or nc")
    if nc is not None and (len(nc) != 8 or not _HEX.fullmatch(nc)):
        raise DigestParseError("nc must be 8 hex digits")
    return DigestCredentials(
        username=username,
        realm=params["realm"],
        nonce=params["nonce"],
        uri=params["uri"],
        response=params["response"].lower(),
        algorithm=params.get("algorithm", "MD5"),
        cnonce=params.get("cnonce"),
        qop=qop,
        nc=nc,
        opaque=params.get("opaque"),
        userhash=params.get("userhash", "").lower() == "true",
    )


# ---------------------------------------------------------------------------
# Computation


def computeHA1(username: str, realm: str, password: str, algorithm: str = "MD5") -> str:
    """
    C{H(username:realm:password)} (what a server may store instead of the
    password).

    @raise ValueError: unknown algorithm.
    """
    known = _hashOf(algorithm)
    if known is None:
        raise ValueError(f"unknown digest algorithm {algorithm}")
    return known[0](f"{username}:{realm}:{password}".encode())


def computeResponse(
    *,
    ha1: str,
    nonce: str,
    method: str,
    uri: str,
    algorithm: str = "MD5",
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """
    The C{response} value (RFC 7616 §3.4.1): with C{qop},
    C{H(HA1:nonce:nc:cnonce:qop:HA2)}, else C{H(HA1:nonce:HA2)};
    C{-sess} algorithms use C{H(HA1:nonce:cnonce)} as HA1; C{auth-int}
    hashes the body into HA2.

    @raise ValueError: unknown algorithm.
    """
    known = _hashOf(algorithm)
    if known is None:
        raise ValueError(f"unknown digest algorithm {algorithm}")
    h, session = known
    if session:
        ha1 = h(f"{ha1}:{nonce}:{cnonce or ''}".encode())
    a2 = f"{method}:{uri}"
    if qop == "auth-int":
        a2 += ":" + h(body)
    ha2 = h(a2.encode())
    if qop:
        return h(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}".encode())
    return h(f"{ha1}:{nonce}:{ha2}".encode())


def verifyResponse(
    credentials: DigestCredentials,
    method: str,
    *,
    password: str | None = None,
    ha1: str | None = None,
    body: bytes = b"",
) -> bool:
    """
    Whether C{credentials.response} is right for C{method} and the
    password (or the stored C{ha1}, which must be for the same algorithm).
    False for an unknown algorithm or qop.  The caller checks the realm,
    the uri against the Request-URI, and the nonce (L{NonceManager}).
    """
    if (password is None) == (ha1 is None):
        raise TypeError("give exactly one of password and ha1")
    if _hashOf(credentials.algorithm) is None or credentials.qop not in (None, "auth", "auth-int"):
        return False
    if ha1 is None:
        assert password is not None
        ha1 = computeHA1(credentials.username, credentials.realm, password, credentials.algorithm)
    expected = computeResponse(
        ha1=ha1,
        nonce=credentials.nonce,
        method=method,
        uri=credentials.uri,
        algorithm=credentials.algorithm,
        qop=credentials.qop,
        nc=credentials.nc,
        cnonce=credentials.cnonce,
        body=body,
    )
    return hmac.compare_digest(expected, credentials.response.lower())


def buildAuthorization(
    challenge: DigestChallenge,
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    nc: int = 1,
    cnonce: str | None = None,
    body: bytes = b"",
) -> DigestCredentials:
    """
    The client's answer to C{challenge} (use C{.toHeaderValue()}): qop
    C{auth} when offered (C{auth-int} when it is the only one offered),
    else none.

    @raise ValueError: the challenge's algorithm is unknown.
    """
    qop = None
    if "auth" in challenge.qop:
        qop = "auth"
    elif "auth-int" in challenge.qop:
        qop = "auth-int"
    if qop is not None and cnonce is None:
        cnonce = secrets.token_hex(8)
    ncText = f"{nc:08x}" if qop is not None else None
    ha1 = computeHA1(username, challenge.realm, password, challenge.algorithm)
    response = computeResponse(
        ha1=ha1,
        nonce=challenge.nonce,
        method=method,
        uri=uri,
        algorithm=challenge.algorithm,
        qop=qop,
        nc=ncText,
        cnonce=cnonce,
        body=body,
    )
    return DigestCredentials(
        username=username,
        realm=challenge.realm,
        nonce=challenge.nonce,
        uri=uri,
        response=response,
        algorithm=challenge.algorithm,
        cnonce=cnonce if qop is not None else None,
        qop=qop,
        nc=ncText,
        opaque=challenge.opaque,
    )


# ---------------------------------------------------------------------------
# Nonces


class NonceStatus(enum.Enum):
    """
    The verdict of L{NonceManager.check}.
    """

    #: issued by us, fresh, first use: accept
    VALID = "valid"
    #: issued by us but expired: challenge again with C{stale=true}
    STALE = "stale"
    #: issued by us and already used: challenge again with C{stale=true}
    REPLAYED = "replayed"
    #: not one of ours (or tampered): challenge again
    INVALID = "invalid"


_NONCE_BODY = struct.Struct("!Q8s")


class NonceManager:
    """
    Issues nonces that carry their issue time and an HMAC, so that issued
    nonces need no storage, and remembers used ones until they expire, so
    that each is accepted once.

    Pure: every method takes the time (seconds, any clock) as a parameter.
    """

    def __init__(self, secret: bytes, lifetime: float = 300.0, maxTracked: int = 100_000) -> None:
        """
        @param secret: the HMAC key (keep it across restarts to honour
            outstanding nonces; any length).
        @param lifetime: seconds a nonce stays valid.
        @param maxTracked: bound on remembered used nonces; beyond it the
            oldest are forgotten early (and then count as stale).
        """
        self._secret = secret
        self.lifetime = lifetime
        self.maxTracked = maxTracked
        self._used: dict[str, float] = {}
        self._forgottenBefore = float("-inf")

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._secret, body, hashlib.sha256).digest()[:16]

    def issue(self, now: float, salt: bytes | None = None) -> str:
        """
        A new nonce issued at C{now} (C{salt}: 8 random bytes by default).
        """
        body = _NONCE_BODY.pack(
            int(now * 1000) & 0xFFFFFFFFFFFFFFFF,
            (salt or secrets.token_bytes(8))[:8].ljust(8, b"\0"),
        )
        return base64.urlsafe_b64encode(body + self._mac(body)).decode("ascii").rstrip("=")

    def issuedAt(self, nonce: str) -> float | None:
        """
        When C{nonce} was issued, or C{None} when it is not one of ours.
        """
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except (ValueError, UnicodeEncodeError):
            return None
        if len(raw) != _NONCE_BODY.size + 16:
            return None
        body, mac = raw[: _NONCE_BODY.size], raw[_NONCE_BODY.size :]
        if not hmac.compare_digest(mac, self._mac(body)):
            return None
        millis, _ = _NONCE_BODY.unpack(body)
        return float(millis / 1000)

    def check(self, nonce: str, nc: str | int | None, now: float) -> NonceStatus:
        """
        Judge a nonce presented at C{now} (with its C{nc}, when qop was
        used: it must be a positive count) and, when C{VALID}, record its
        use so it is never accepted again.  Call it after the response
        verified.
        """
        issued = self.issuedAt(nonce)
        if issued is None or issued > now + 60:
            return NonceStatus.INVALID
        if nc is not None:
            try:
                count = int(nc, 16) if isinstance(nc, str) else nc
            except ValueError:
                return NonceStatus.INVALID
            if count < 1:
                return NonceStatus.INVALID
        self._prune(now)
        if now - issued > self.lifetime or issued <= self._forgottenBefore:
            return NonceStatus.STALE
        if nonce in self._used:
            return NonceStatus.REPLAYED
        self._used[nonce] = issued + self.lifetime
        if len(self._used) > self.maxTracked:
            oldest = next(iter(self._used))
            self._forgottenBefore = max(
                self._forgottenBefore, self._used.pop(oldest) - self.lifetime
            )
        return NonceStatus.VALID

    def _prune(self, now: float) -> None:
        used = self._used
        while used:
            first = next(iter(used))
            if used[first] >= now:
                break
            del used[first]

    def challenges(
        self,
        realm: str,
        now: float,
        algorithms: Iterable[str] = ("SHA-256", "MD5"),
        stale: bool = False,
        opaque: str | None = None,
    ) -> list[DigestChallenge]:
        """
        One challenge per algorithm, in the order given (strongest first,
        RFC 8760 §2.4), sharing a fresh nonce; put each in its own
        C{WWW-Authenticate} (or C{Proxy-Authenticate}) header.
        """
        nonce = self.issue(now)
        return [
            DigestChallenge(realm, nonce, algorithm, ("auth",), opaque, stale)
            for algorithm in algorithms
        ]
