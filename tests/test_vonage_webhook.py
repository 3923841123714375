"""
Tests for L{rapida_twisted.providers.vonage._webhook}: the answer webhook's
NCCO, event callbacks mapped onto the context, and signed (JWT) webhooks,
through the site in memory and on L{verifyVonageJWT} directly.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import jwt
from twisted.trial.unittest import SynchronousTestCase

from rapida_twisted.providers._base import Forbidden
from rapida_twisted.providers.vonage import VonageProvider, verifyVonageJWT
from rapida_twisted.store._model import COMPLETED, FAILED, PENDING, tokenMatches

from ._web import Harness

SECRET = "vonage-signature-secret-0123456789"
SIGNED = f'[providers.vonage]\nsignature_secret = "{SECRET}"\n'
NARROW = '[[assistants]]\nid = "narrow"\nsample_rate = 8000\n'
ANSWER = {"from": "447700900000", "to": "447700900001", "uuid": "u-1", "conversation_uuid": "CON-1"}


def sign(body: bytes = b"", iat: float | None = None, secret: str = SECRET, **claims: Any) -> str:
    """
    A Vonage-style webhook signature header.
    """
    payload: dict[str, Any] = {
        "iat": int(1_800_000_000 if iat is None else iat),
        "jti": "jti-1",
        "iss": "Vonage",
        "api_key": "key",
        "application_id": "app",
        **claims,
    }
    if body and "payload_hash" not in claims:
        payload["payload_hash"] = hashlib.sha256(body).hexdigest()
    return "Bearer " + jwt.encode(payload, secret, algorithm="HS256")


def errorCode(body: bytes) -> str:
    return str(json.loads(body)["error"]["code"])


class Base(SynchronousTestCase):
    toml = ""

    def setUp(self) -> None:
        self.h = Harness(self.toml)
        provider = self.h.gateway.providers["vonage"]
        assert isinstance(provider, VonageProvider)
        provider.now = self.h.clock.seconds
        self.provider = provider

    def only(self) -> Any:
        (context,) = self.h.contexts(self)
        return context

    def answerGET(
        self, headers: dict[str, str] | None = None, path: str = "echo"
    ) -> tuple[Any, bytes]:
        return self.h.request(
            self, "GET", f"/v1/talk/vonage/call/{path}", params=ANSWER, headers=headers or {}
        )

    def answerPOST(self, body: bytes, headers: dict[str, str] | None = None) -> tuple[Any, bytes]:
        return self.h.request(
            self,
            "POST",
            "/v1/talk/vonage/call/echo",
            data=body,
            headers={"content-type": "application/json", **(headers or {})},
        )

    def event(
        self, contextId: str, body: bytes, headers: dict[str, str] | None = None
    ) -> tuple[Any, bytes]:
        return self.h.request(
            self,
            "POST",
            f"/v1/talk/vonage/ctx/{contextId}/event",
            data=body,
            headers={"content-type": "application/json", **(headers or {})},
        )


class NCCOTests(Base):
    toml = NARROW

    def test_shape16k(self) -> None:
        response, body = self.answerGET()
        self.assertEqual(response.code, 200)
        self.assertIn("application/json", response.headers.getRawHeaders("content-type")[0])
        context = self.only()
        ncco = json.loads(body)
        self.assertEqual(len(ncco), 1)
        (action,) = ncco
        self.assertEqual(
            set(action), {"action", "eventType", "eventUrl", "endpoint"}, "no stray keys"
        )
        self.assertEqual(action["action"], "connect")
        self.assertEqual(action["eventType"], "synchronous")
        ctx = context.context_id
        self.assertEqual(
            action["eventUrl"], [f"https://gw.example.com/v1/talk/vonage/ctx/{ctx}/event"]
        )
        (endpoint,) = action["endpoint"]
        self.assertEqual(endpoint["type"], "websocket")
        self.assertEqual(endpoint["uri"], f"wss://gw.example.com/v1/talk/vonage/ctx/{ctx}")
        self.assertEqual(endpoint["content-type"], "audio/l16;rate=16000")
        headers = endpoint["headers"]
        self.assertTrue(tokenMatches(context, headers["token"]))
        self.assertEqual((headers["context_id"], headers["assistant_id"]), (ctx, "echo"))
        self.assertLessEqual(len(json.dumps(headers)), 512)
        self.assertEqual(
            (context.provider, context.caller, context.callee, context.channel_uuid),
            ("vonage", "447700900000", "447700900001", "u-1"),
        )
        self.assertEqual(context.metadata["conversation_uuid"], "CON-1")
        self.assertEqual(context.status, PENDING)

    def test_shape8k(self) -> None:
        _, body = self.answerGET(path="narrow")
        (endpoint,) = json.loads(body)[0]["endpoint"]
        self.assertEqual(endpoint["content-type"], "audio/l16;rate=8000")

    def test_postJSON(self) -> None:
        response, body = self.answerPOST(json.dumps(ANSWER).encode())
        self.assertEqual(response.code, 200)
        self.assertEqual(self.only().channel_uuid, "u-1")

    def test_fromRequired(self) -> None:
        response, body = self.h.request(
            self, "GET", "/v1/talk/vonage/call/echo", params={"uuid": "u"}
        )
        self.assertEqual((response.code, errorCode(body)), (400, "missing_field"))


class EventTests(Base):
    def context(self) -> Any:
        return self.successResultOf(self.h.store.create("vonage", "echo")).context

    def current(self, contextId: str) -> Any:
        return self.successResultOf(self.h.store.get(contextId))

    def post(self, contextId: str, **fields: str) -> int:
        response, _ = self.event(contextId, json.dumps(fields).encode())
        return int(response.code)

    def test_lifecycle(self) -> None:
        ctx = self.context()
        for status in ["started", "ringing", "answered"]:
            self.assertEqual(self.post(ctx.context_id, status=status, uuid="u-9"), 204)
            self.assertEqual(self.current(ctx.context_id).provider_status, status)
        self.post(ctx.context_id, status="completed", uuid="u-9", duration="12")
        now = self.current(ctx.context_id)
        self.assertEqual(
            (now.status, now.provider_status, now.channel_uuid), (COMPLETED, "completed", "u-9")
        )
        # late callbacks never move the call back
        self.post(ctx.context_id, status="ringing")
        self.assertEqual(self.current(ctx.context_id).provider_status, "completed")
        events = self.successResultOf(self.h.store.listEvents(ctx.context_id, "status"))
        self.assertEqual(len(events), 5)

    def test_failures(self) -> None:
        for fields, reason in [
            ({"status": "busy"}, "busy"),
            ({"status": "timeout"}, "timeout"),
            ({"status": "failed", "detail": "cannot_route"}, "cannot_route"),
            ({"status": "unanswered", "detail": "unavailable"}, "unavailable"),
            ({"status": "rejected", "detail": "declined"}, "declined"),
            ({"status": "cancelled"}, "cancelled"),
            ({"status": "completed", "detail": "no_answer", "duration": "0"}, "no_answer"),
        ]:
            ctx = self.context()
            self.post(ctx.context_id, **fields)
            now = self.current(ctx.context_id)
            self.assertEqual((now.status, now.reason), (FAILED, reason), fields)

    def test_disconnectedIsNotTheEnd(self) -> None:
        """
        disconnected (our socket closed) is recorded; the call may go on.
        """
        ctx = self.context()
        self.post(ctx.context_id, status="disconnected")
        now = self.current(ctx.context_id)
        self.assertEqual((now.status, now.provider_status), (PENDING, "disconnected"))

    def test_humanMachineUseCallUUID(self) -> None:
        ctx = self.context()
        self.post(ctx.context_id, status="human", call_uuid="u-7")
        self.assertEqual(self.current(ctx.context_id).channel_uuid, "u-7")

    def test_getEvents(self) -> None:
        ctx = self.context()
        response, _ = self.h.request(
            self, "GET", f"/v1/talk/vonage/ctx/{ctx.context_id}/event", params={"status": "ringing"}
        )
        self.assertEqual(response.code, 204)


class UnsignedTests(Base):
    """
    Without a signature secret, unsigned webhooks are accepted (and a
    bogus Authorization header is not even looked at).
    """

    def test_answerUnsigned(self) -> None:
        response, _ = self.answerGET()
        self.assertEqual(response.code, 200)

    def test_answerBogusHeaderIgnored(self) -> None:
        response, _ = self.answerGET({"Authorization": "Bearer nonsense"})
        self.assertEqual(response.code, 200)

    def test_eventUnsigned(self) -> None:
        ctx = self.successResultOf(self.h.store.create("vonage", "echo")).context
        response, _ = self.event(ctx.context_id, b'{"status":"ringing"}')
        self.assertEqual(response.code, 204)


class SignedTests(Base):
    toml = SIGNED

    def test_answerGETSigned(self) -> None:
        response, body = self.answerGET({"Authorization": sign()})
        self.assertEqual(response.code, 200, body)

    def test_answerPOSTSigned(self) -> None:
        body = json.dumps(ANSWER).encode()
        response, _ = self.answerPOST(body, {"Authorization": sign(body)})
        self.assertEqual(response.code, 200)

    def test_eventSigned(self) -> None:
        ctx = self.successResultOf(self.h.store.create("vonage", "echo")).context
        body = b'{"status":"answered","uuid":"u-1"}'
        response, _ = self.event(ctx.context_id, body, {"Authorization": sign(body)})
        self.assertEqual(response.code, 204)
        self.assertEqual(
            self.successResultOf(self.h.store.get(ctx.context_id)).provider_status, "answered"
        )

    def refused(self, result: tuple[Any, bytes], code: str) -> None:
        response, body = result
        self.assertEqual((response.code, errorCode(body)), (403, code))
        self.assertEqual(self.h.contexts(self), [])

    def test_unsigned(self) -> None:
        self.refused(self.answerGET(), "signature_missing")

    def test_notBearer(self) -> None:
        self.refused(self.answerGET({"Authorization": "Basic dXNlcjpwYXNz"}), "signature_missing")

    def test_badSignature(self) -> None:
        self.refused(
            self.answerGET({"Authorization": sign(secret="another-secret-of-thirty-two-bytes!")}),
            "bad_signature",
        )

    def test_garbageToken(self) -> None:
        self.refused(self.answerGET({"Authorization": "Bearer a.b.c"}), "bad_signature")

    def test_noneAlgorithmRefused(self) -> None:
        token = jwt.encode({"iat": 1_800_000_000}, "", algorithm="none")
        self.refused(self.answerGET({"Authorization": "Bearer " + token}), "bad_signature")

    def test_staleIat(self) -> None:
        for iat in [1_800_000_000 - 301, 1_800_000_000 + 301]:
            self.refused(self.answerGET({"Authorization": sign(iat=iat)}), "stale_signature")

    def test_freshEnough(self) -> None:
        response, _ = self.answerGET({"Authorization": sign(iat=1_800_000_000 - 299)})
        self.assertEqual(response.code, 200)

    def test_missingIat(self) -> None:
        token = jwt.encode({"jti": "x"}, SECRET, algorithm="HS256")
        self.refused(self.answerGET({"Authorization": "Bearer " + token}), "bad_signature")

    def test_payloadHashMismatch(self) -> None:
        body = json.dumps(ANSWER).encode()
        other = sign(b"something else")
        self.refused(self.answerPOST(body, {"Authorization": other}), "bad_signature")

    def test_payloadHashMissing(self) -> None:
        body = json.dumps(ANSWER).encode()
        token = sign()  # signed without a payload_hash
        self.refused(self.answerPOST(body, {"Authorization": token}), "bad_signature")

    def test_eventRefused(self) -> None:
        ctx = self.successResultOf(self.h.store.create("vonage", "echo")).context
        body = b'{"status":"completed"}'
        for headers in [{}, {"Authorization": sign(b"{}")}]:
            response, raw = self.event(ctx.context_id, body, headers)
            self.assertEqual(response.code, 403)
        self.assertEqual(self.successResultOf(self.h.store.get(ctx.context_id)).status, PENDING)

    def test_mediaUpgradeNotSigned(self) -> None:
        """
        Vonage does not sign its WebSocket: the token alone authorises it
        (SPEC §4), so the upgrade is not refused for want of a JWT.
        """
        from ._web import statusLine, upgradeRequest

        new = self.successResultOf(self.h.store.create("vonage", "echo"))
        _, transport = self.h.raw(upgradeRequest(f"/v1/talk/vonage/ctx/{new.context.context_id}"))
        self.assertIn(" 101 ", statusLine(transport))


class VerifyTests(SynchronousTestCase):
    """
    L{verifyVonageJWT} on its own.
    """

    def test_claims(self) -> None:
        body = b'{"a":1}'
        claims = verifyVonageJWT(SECRET, sign(body), body, 1_800_000_000)
        self.assertEqual(claims["iss"], "Vonage")

    def test_hashCaseInsensitive(self) -> None:
        body = b"x"
        header = sign(body, payload_hash=hashlib.sha256(body).hexdigest().upper())
        verifyVonageJWT(SECRET, header, body, 1_800_000_000)

    def test_refusals(self) -> None:
        body = b"x"
        for header, now, code in [
            ("", 1_800_000_000, "signature_missing"),
            ("Bearer ", 1_800_000_000, "signature_missing"),
            (
                sign(body, secret="a-wrong-secret-of-thirty-two-bytes"),
                1_800_000_000,
                "bad_signature",
            ),
            (sign(body), 1_800_001_000, "stale_signature"),
            (sign(body, payload_hash=123), 1_800_000_000, "bad_signature"),
        ]:
            with self.assertRaises(Forbidden) as raised:
                verifyVonageJWT(SECRET, header, body, now)
            self.assertEqual(raised.exception.code, code, header)

    def test_maxAge(self) -> None:
        verifyVonageJWT(SECRET, sign(), b"", 1_800_000_050, maxAge=60)
        self.assertRaises(Forbidden, verifyVonageJWT, SECRET, sign(), b"", 1_800_000_061, 60)
