"""
Tests for L{rapida_twisted.providers.exotel._webhook}: the Voicebot
applet's URL answer, status callbacks mapped onto the context, and the
source allowlist on webhooks, through the site in memory.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

from twisted.trial.unittest import SynchronousTestCase

from rapida_twisted.providers._base import WebhookRequest
from rapida_twisted.providers.exotel import ExotelProvider, basicCredentials
from rapida_twisted.store._model import COMPLETED, FAILED, PENDING, tokenMatches

from ._web import Harness

APPLET = {
    "CallSid": "c0ffee",
    "CallFrom": "09876543210",
    "CallTo": "08047491899",
    "Direction": "incoming",
    "flow_id": "42",
}
NARROW = '[[assistants]]\nid = "narrow"\nsample_rate = 8000\n'


def errorCode(body: bytes) -> str:
    return str(json.loads(body)["error"]["code"])


class Base(SynchronousTestCase):
    toml = ""

    def setUp(self) -> None:
        self.h = Harness(self.toml)

    def only(self) -> Any:
        (context,) = self.h.contexts(self)
        return context

    def applet(self, assistant: str = "echo", **extra: str) -> tuple[Any, bytes]:
        return self.h.request(
            self, "GET", f"/v1/talk/exotel/call/{assistant}", params={**APPLET, **extra}
        )


class AnswerTests(Base):
    toml = NARROW

    def test_url(self) -> None:
        response, body = self.applet()
        self.assertEqual(response.code, 200)
        self.assertIn("application/json", response.headers.getRawHeaders("content-type")[0])
        answer = json.loads(body)
        self.assertEqual(list(answer), ["url"])
        context = self.only()
        parts = urlsplit(answer["url"])
        self.assertEqual((parts.scheme, parts.netloc), ("wss", "gw.example.com"))
        self.assertEqual(parts.path, f"/v1/talk/exotel/ctx/{context.context_id}")
        query = parse_qs(parts.query)
        self.assertTrue(tokenMatches(context, query["token"][0]))
        self.assertEqual(query["sample-rate"], ["16000"])
        self.assertEqual(
            (context.provider, context.caller, context.callee, context.channel_uuid),
            ("exotel", "09876543210", "08047491899", "c0ffee"),
        )
        self.assertEqual((context.direction, context.status), ("inbound", PENDING))
        self.assertEqual(context.metadata["flow_id"], "42")

    def test_8kAssistantKeepsTheDefaultRate(self) -> None:
        _, body = self.applet("narrow")
        query = parse_qs(urlsplit(json.loads(body)["url"]).query)
        self.assertNotIn("sample-rate", query)

    def test_post(self) -> None:
        response, body = self.h.request(self, "POST", "/v1/talk/exotel/call/echo", data=APPLET)
        self.assertEqual(response.code, 200)
        self.assertEqual(self.only().caller, "09876543210")

    def test_outbound(self) -> None:
        self.applet(Direction="outbound-api", CustomField="v1/talk/exotel/ctx/x")
        context = self.only()
        self.assertEqual(context.direction, "outbound")
        self.assertEqual(context.metadata["CustomField"], "v1/talk/exotel/ctx/x")

    def test_callFromRequired(self) -> None:
        response, body = self.h.request(
            self, "GET", "/v1/talk/exotel/call/echo", params={"CallSid": "x"}
        )
        self.assertEqual((response.code, errorCode(body)), (400, "missing_field"))

    def test_localHost(self) -> None:
        h = Harness(publicHost="http://localhost:8080")
        _, body = h.request(self, "GET", "/v1/talk/exotel/call/echo", params=APPLET)
        self.assertTrue(
            json.loads(body)["url"].startswith("ws://localhost:8080/v1/talk/exotel/ctx/")
        )


class StreamCredentialsTests(Base):
    toml = '[providers.exotel]\nstream_username = "exo user"\nstream_password = "p@ss:word"\n'

    def test_credentialsInURL(self) -> None:
        """
        HTTP Basic credentials ride in the URL (escaped), as Exotel expects.
        """
        _, body = self.applet()
        url = json.loads(body)["url"]
        self.assertTrue(url.startswith("wss://exo%20user:p%40ss%3Aword@gw.example.com/"), url)

    def test_basicCredentials(self) -> None:
        self.assertEqual(basicCredentials("Basic ZXhvOnMzY3JldA=="), ("exo", "s3cret"))
        self.assertEqual(basicCredentials("basic ZXhvOnMzY3JldA=="), ("exo", "s3cret"))
        self.assertEqual(basicCredentials("Basic ZXhvOjo="), ("exo", ":"))
        for bad in ["", "Bearer x", "Basic !!", "Basic ZXhv", "Basic //79"]:
            self.assertIsNone(basicCredentials(bad), bad)


class StatusTests(Base):
    def context(self) -> Any:
        return self.successResultOf(self.h.store.create("exotel", "echo")).context

    def current(self, contextId: str) -> Any:
        return self.successResultOf(self.h.store.get(contextId))

    def post(self, contextId: str, **fields: str) -> int:
        response, _ = self.h.request(
            self, "POST", f"/v1/talk/exotel/ctx/{contextId}/event", data=fields
        )
        return int(response.code)

    def test_completed(self) -> None:
        ctx = self.context()
        for status in ["ringing", "in-progress"]:
            self.assertEqual(self.post(ctx.context_id, Status=status, CallSid="e1"), 204)
        self.post(ctx.context_id, Status="completed", CallSid="e1", ConversationDuration="31")
        now = self.current(ctx.context_id)
        self.assertEqual(
            (now.status, now.provider_status, now.channel_uuid), (COMPLETED, "completed", "e1")
        )
        self.post(ctx.context_id, Status="ringing")
        self.assertEqual(self.current(ctx.context_id).provider_status, "completed")
        events = self.successResultOf(self.h.store.listEvents(ctx.context_id, "status"))
        self.assertEqual(events[2].payload["fields"]["ConversationDuration"], "31")

    def test_failures(self) -> None:
        for fields, reason in [
            ({"Status": "busy"}, "busy"),
            ({"Status": "no-answer"}, "no-answer"),
            ({"Status": "failed", "ErrorMessage": "Invalid number"}, "Invalid number"),
            ({"Status": "failed", "Cause": "network"}, "network"),
            ({"Status": "canceled"}, "canceled"),
        ]:
            ctx = self.context()
            self.post(ctx.context_id, **fields)
            now = self.current(ctx.context_id)
            self.assertEqual((now.status, now.reason), (FAILED, reason), fields)

    def test_passthruCallType(self) -> None:
        """
        A Passthru applet after the Voicebot reports C{CallType}.
        """
        ctx = self.context()
        response, _ = self.h.request(
            self,
            "GET",
            f"/v1/talk/exotel/ctx/{ctx.context_id}/event",
            params={"CallType": "completed", "CallSid": "e2"},
        )
        self.assertEqual(response.code, 204)
        self.assertEqual(self.current(ctx.context_id).status, COMPLETED)

    def test_unknownStatusRecorded(self) -> None:
        ctx = self.context()
        self.post(ctx.context_id, Status="mystery")
        now = self.current(ctx.context_id)
        self.assertEqual((now.status, now.provider_status), (PENDING, "mystery"))


class AllowlistTests(SynchronousTestCase):
    """
    C{allow_from} applies to webhooks as well as the stream upgrade.
    """

    def provider(self, networks: str) -> ExotelProvider:
        h = Harness(f"[providers.exotel]\nallow_from = {networks}\n")
        provider = h.gateway.providers["exotel"]
        assert isinstance(provider, ExotelProvider)
        return provider

    def request(self, peer: str) -> WebhookRequest:
        return WebhookRequest("GET", "https://gw/x", "/x", {}, {}, peer=peer)

    def test_allowed(self) -> None:
        provider = self.provider('["10.0.0.0/8", "2001:db8::/32"]')
        provider.authenticateWebhook(self.request("10.9.8.7"))
        provider.authenticateWebhook(self.request("2001:db8::1"))

    def test_denied(self) -> None:
        from rapida_twisted.providers._base import Forbidden

        provider = self.provider('["10.0.0.0/8"]')
        for peer in ["192.0.2.1", "", "not-an-ip"]:
            with self.assertRaises(Forbidden) as raised:
                provider.authenticateWebhook(self.request(peer))
            self.assertEqual(raised.exception.code, "source_not_allowed")

    def test_throughTheSite(self) -> None:
        h = Harness('[providers.exotel]\nallow_from = ["192.0.2.0/24"]\n')
        response, body = h.request(self, "GET", "/v1/talk/exotel/call/echo", params=APPLET)
        self.assertEqual((response.code, errorCode(body)), (403, "source_not_allowed"))
        self.assertEqual(h.contexts(self), [])
