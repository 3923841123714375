# -*- test-case-name: tests.test_sip_server -*-
"""
Digest authentication of the requests a UAS receives (INVITE, REGISTER),
with the users of C{[sip] users} in the assistants file: the pure
L{rapida_twisted.sip._digest} functions on the reactor's clock.

Challenges offer SHA-256 and MD5 (RFC 8760, strongest first) with one
fresh nonce; nonces expire after C{lifetime} seconds and are accepted once
(a reused or expired one gets a new challenge with C{stale=true}).  A
known user with a wrong password, or an unknown user, gets 403.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from twisted.internet.interfaces import IReactorTime

from ._codec import SipParseError, SipRequest, parseURI
from ._digest import (
    DigestCredentials,
    DigestParseError,
    NonceManager,
    NonceStatus,
    parseAuthorization,
    verifyResponse,
)

__all__ = ["AuthOutcome", "DigestAuthenticator"]

#: algorithms offered, strongest first
ALGORITHMS: Final = ("SHA-256", "MD5")


@dataclass(frozen=True, slots=True)
class AuthOutcome:
    """
    The verdict on one request.

    @ivar ok: accept it.
    @ivar challenge: answer 401 with C{headers} (else, when not C{ok}, 403).
    @ivar headers: the C{WWW-Authenticate} headers of a challenge.
    @ivar reason: why (for logs).
    @ivar username: the authenticated user when C{ok}.
    """

    ok: bool
    challenge: bool = False
    headers: tuple[tuple[str, str], ...] = ()
    reason: str = ""
    username: str = ""


class DigestAuthenticator:
    """
    Checks C{Authorization} headers against C{users} (name → password).

    @param clock: nonce issue and expiry times.
    @param realm: our realm.
    @param users: the credentials.
    @param lifetime: seconds a nonce stays valid.
    """

    def __init__(
        self,
        clock: IReactorTime,
        realm: str,
        users: Mapping[str, str],
        lifetime: float = 300.0,
    ) -> None:
        self._clock = clock
        self.realm = realm
        self._users = dict(users)
        self.nonces = NonceManager(secrets.token_bytes(32), lifetime)

    def challenge(self, reason: str, stale: bool = False) -> AuthOutcome:
        """
        A 401 with one challenge per algorithm.
        """
        challenges = self.nonces.challenges(
            self.realm, self._clock.seconds(), ALGORITHMS, stale=stale
        )
        return AuthOutcome(
            False,
            True,
            tuple(("WWW-Authenticate", c.toHeaderValue()) for c in challenges),
            reason,
        )

    def check(self, request: SipRequest) -> AuthOutcome:
        """
        Judge C{request}'s credentials.
        """
        credentials: DigestCredentials | None = None
        for value in request.getAll("Authorization"):
            try:
                parsed = parseAuthorization(value)
            except DigestParseError as e:
                return self.challenge(f"malformed credentials: {e}")
            if parsed.realm == self.realm:
                credentials = parsed
                break
        if credentials is None:
            return self.challenge("no credentials for our realm")
        if not self._sameUri(credentials.uri, request):
            return AuthOutcome(False, reason="credentials for another Request-URI")
        password = self._users.get(credentials.username)
        if password is None:
            return AuthOutcome(False, reason=f"unknown user {credentials.username[:64]!r}")
        if not verifyResponse(credentials, request.method, password=password, body=request.body):
            return AuthOutcome(False, reason=f"wrong password for {credentials.username[:64]!r}")
        status = self.nonces.check(credentials.nonce, credentials.nc, self._clock.seconds())
        if status is NonceStatus.VALID:
            return AuthOutcome(True, reason="authenticated", username=credentials.username)
        if status is NonceStatus.INVALID:
            return self.challenge("not our nonce")
        return self.challenge(f"nonce {status.value}", stale=True)

    @staticmethod
    def _sameUri(uri: str, request: SipRequest) -> bool:
        target = request.uri.toString()
        if uri == target:
            return True
        try:
            return parseURI(uri) == request.uri
        except SipParseError:
            return False
