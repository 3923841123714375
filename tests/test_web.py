"""
The /v1/talk routes, /healthz and /metrics, in memory (StubTreq and raw
HTTP bytes into the Site), on a MemoryContextStore and a task.Clock.
"""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlsplit
from xml.etree import ElementTree

from twisted.trial.unittest import SynchronousTestCase

from rapida_twisted.store._model import COMPLETED, FAILED, PENDING, tokenMatches
from rapida_twisted.web import MAX_BODY

from ._web import Harness, statusLine, upgradeRequest

FORM = {"CallSid": "CA1", "AccountSid": "AC1", "From": "+15551230000", "To": "+15557650000"}


def errorCode(body: bytes) -> str:
    return json.loads(body)["error"]["code"]


class CallWebhookTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness()

    def only(self):
        (context,) = self.h.contexts(self)
        return context

    def test_twilioPostFormAnswersTwiML(self) -> None:
        response, body = self.h.request(self, "POST", "/v1/talk/twilio/call/echo", data=FORM)
        self.assertEqual(response.code, 200)
        self.assertIn("text/xml", response.headers.getRawHeaders("content-type")[0])
        root = ElementTree.fromstring(body)
        stream = root.find("./Connect/Stream")
        context = self.only()
        self.assertEqual(
            stream.get("url"), f"wss://gw.example.com/v1/talk/twilio/ctx/{context.context_id}"
        )
        self.assertEqual(
            stream.get("statusCallback"),
            f"https://gw.example.com/v1/talk/twilio/ctx/{context.context_id}/event",
        )
        params = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
        self.assertTrue(tokenMatches(context, params["token"]))
        self.assertEqual(context.status, PENDING)
        self.assertEqual(
            (context.provider, context.caller, context.callee, context.channel_uuid),
            ("twilio", "+15551230000", "+15557650000", "CA1"),
        )

    def test_twilioGetQuery(self) -> None:
        response, _ = self.h.request(self, "GET", "/v1/talk/twilio/call/echo", params=FORM)
        self.assertEqual(response.code, 200)
        self.assertEqual(self.only().caller, "+15551230000")

    def test_webhookEventKeepsRawFields(self) -> None:
        self.h.request(self, "POST", "/v1/talk/twilio/call/echo", data=dict(FORM, Extra="x"))
        (event,) = self.successResultOf(self.h.store.listEvents(self.only().context_id))
        self.assertEqual((event.source, event.kind), ("provider", "webhook"))
        self.assertEqual(event.payload["fields"]["Extra"], "x")
        self.assertEqual(event.payload["method"], "POST")

    def test_escapesEverything(self) -> None:
        h = Harness(publicHost="gw.example.com")
        _, body = h.request(
            self, "POST", "/v1/talk/twilio/call/echo", data=dict(FORM, From="\"<&>'")
        )
        ElementTree.fromstring(body)  # well formed despite the hostile caller id

    def test_vonageGetAnswersNCCO(self) -> None:
        response, body = self.h.request(
            self,
            "GET",
            "/v1/talk/vonage/call/echo",
            params={
                "from": "447700900000",
                "to": "447700900001",
                "uuid": "u-1",
                "conversation_uuid": "CON-1",
            },
        )
        self.assertEqual(response.code, 200)
        (action,) = json.loads(body)
        context = self.only()
        self.assertEqual(action["action"], "connect")
        self.assertEqual(
            action["eventUrl"],
            [f"https://gw.example.com/v1/talk/vonage/ctx/{context.context_id}/event"],
        )
        (endpoint,) = action["endpoint"]
        self.assertEqual(endpoint["type"], "websocket")
        self.assertEqual(
            endpoint["uri"], f"wss://gw.example.com/v1/talk/vonage/ctx/{context.context_id}"
        )
        self.assertEqual(endpoint["content-type"], "audio/l16;rate=16000")
        self.assertTrue(tokenMatches(context, endpoint["headers"]["token"]))
        self.assertEqual(context.channel_uuid, "u-1")

    def test_vonagePostJSON(self) -> None:
        response, _ = self.h.request(
            self,
            "POST",
            "/v1/talk/vonage/call/echo",
            json={"from": "447700900000", "to": "447700900001", "uuid": "u-2"},
        )
        self.assertEqual(response.code, 200)
        self.assertEqual(self.only().channel_uuid, "u-2")

    def test_vonage8k(self) -> None:
        h = Harness('[[assistants]]\nid = "narrow"\nsample_rate = 8000\n')
        _, body = h.request(self, "GET", "/v1/talk/vonage/call/narrow", params={"from": "1"})
        self.assertEqual(json.loads(body)[0]["endpoint"][0]["content-type"], "audio/l16;rate=8000")

    def test_exotelAnswersURLWithToken(self) -> None:
        response, body = self.h.request(
            self,
            "GET",
            "/v1/talk/exotel/call/echo",
            params={"CallSid": "e1", "CallFrom": "0981", "CallTo": "0802"},
        )
        self.assertEqual(response.code, 200)
        url = json.loads(body)["url"]
        context = self.only()
        parts = urlsplit(url)
        self.assertEqual((parts.scheme, parts.netloc), ("wss", "gw.example.com"))
        self.assertEqual(parts.path, f"/v1/talk/exotel/ctx/{context.context_id}")
        self.assertTrue(tokenMatches(context, parse_qs(parts.query)["token"][0]))

    def test_asteriskAnswersContextIdText(self) -> None:
        response, body = self.h.request(
            self,
            "POST",
            "/v1/talk/asterisk/call/echo",
            data={"from": "100", "to": "200", "channel_id": "ch-1"},
        )
        self.assertEqual(response.code, 200)
        self.assertIn("text/plain", response.headers.getRawHeaders("content-type")[0])
        context = self.only()
        self.assertEqual(body.decode(), context.context_id)
        self.assertEqual(context.channel_uuid, "ch-1")

    def test_localPublicHostGivesPlainURLs(self) -> None:
        h = Harness(publicHost="http://localhost:8080")
        _, body = h.request(self, "POST", "/v1/talk/twilio/call/echo", data=FORM)
        self.assertIn(b'url="ws://localhost:8080/v1/talk/twilio/ctx/', body)

    def test_unknownProvider(self) -> None:
        response, body = self.h.request(self, "POST", "/v1/talk/skype/call/echo", data=FORM)
        self.assertEqual((response.code, errorCode(body)), (404, "unknown_provider"))

    def test_unknownAssistant(self) -> None:
        response, body = self.h.request(self, "POST", "/v1/talk/twilio/call/nobody", data=FORM)
        self.assertEqual((response.code, errorCode(body)), (404, "unknown_assistant"))
        self.assertEqual(self.h.contexts(self), [])

    def test_missingFieldNamed(self) -> None:
        for provider, data, name in [
            ("twilio", {"CallSid": "CA1"}, "From"),
            ("vonage", {"uuid": "x"}, "from"),
            ("exotel", {"CallSid": "x"}, "CallFrom"),
            ("asterisk", {"to": "1"}, "from"),
        ]:
            response, body = self.h.request(
                self, "POST", f"/v1/talk/{provider}/call/echo", data=data
            )
            self.assertEqual(response.code, 400, provider)
            self.assertEqual(
                json.loads(body)["error"],
                {"code": "missing_field", "message": f"{name} is required"},
            )

    def test_badJSON(self) -> None:
        response, body = self.h.request(
            self,
            "POST",
            "/v1/talk/vonage/call/echo",
            data=b"{nope",
            headers={"content-type": "application/json"},
        )
        self.assertEqual((response.code, errorCode(body)), (400, "bad_json"))

    def test_bodyTooLarge(self) -> None:
        response, body = self.h.request(
            self,
            "POST",
            "/v1/talk/twilio/call/echo",
            data=b"From=" + b"x" * MAX_BODY,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        self.assertEqual((response.code, errorCode(body)), (413, "body_too_large"))

    def test_methodNotAllowed(self) -> None:
        response, body = self.h.request(self, "PUT", "/v1/talk/twilio/call/echo", data=FORM)
        self.assertEqual((response.code, errorCode(body)), (405, "method_not_allowed"))

    def test_storeUnavailable503(self) -> None:
        self.h.store.unavailable = True
        response, body = self.h.request(self, "POST", "/v1/talk/twilio/call/echo", data=FORM)
        self.assertEqual((response.code, errorCode(body)), (503, "store_unavailable"))

    def test_storeHang503Within5s(self) -> None:
        from twisted.internet.defer import Deferred

        self.h.store.create = lambda *a, **k: Deferred()  # type: ignore[method-assign]
        d = self.h.treq.post(self.h.url("/v1/talk/twilio/call/echo"), data=FORM)
        self.h.treq.flush()
        self.assertNoResult(d)
        self.h.clock.advance(5)
        self.h.treq.flush()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 503)

    def test_unknownRoute(self) -> None:
        for path in [
            "/",
            "/v1",
            "/v1/talk/twilio",
            "/v1/talk/twilio/nope",
            "/v1/talk/twilio/call/echo/extra",
        ]:
            response, body = self.h.request(self, "GET", path)
            self.assertEqual(response.code, 404, path)
            self.assertEqual(errorCode(body), "not_found", path)

    def test_metricsCountWebhooks(self) -> None:
        self.h.request(self, "POST", "/v1/talk/twilio/call/echo", data=FORM)
        self.h.request(self, "POST", "/v1/talk/twilio/call/echo", data={})
        _, body = self.h.request(self, "GET", "/metrics")
        text = body.decode()
        self.assertIn('rapida_webhooks_total{kind="call",outcome="ok",provider="twilio"} 1.0', text)
        self.assertIn(
            'rapida_webhooks_total{kind="call",outcome="missing_field",provider="twilio"} 1.0', text
        )
        self.assertIn("rapida_store_latency_seconds_bucket", text)
        self.assertIn("rapida_active_calls", text)

    def test_healthz(self) -> None:
        response, body = self.h.request(self, "GET", "/healthz")
        self.assertEqual((response.code, json.loads(body)["store"]), (200, "ok"))
        self.h.store.unavailable = True
        response, body = self.h.request(self, "GET", "/healthz")
        self.assertEqual((response.code, json.loads(body)["store"]), (503, "unreachable"))


class TwilioSignatureTests(SynchronousTestCase):
    """
    With an auth token configured, Twilio webhooks must be signed.
    """

    TOKEN = "12345"

    def setUp(self) -> None:
        self.h = Harness(environ={"TWILIO_AUTH_TOKEN": self.TOKEN})

    def sign(self, url: str, params: dict[str, list[str]]) -> str:
        from rapida_twisted.providers.twilio._webhook import twilioSignature

        return twilioSignature(self.TOKEN, url, params)

    def test_missing403(self) -> None:
        response, body = self.h.request(self, "POST", "/v1/talk/twilio/call/echo", data=FORM)
        self.assertEqual((response.code, errorCode(body)), (403, "signature_missing"))

    def test_bad403(self) -> None:
        response, body = self.h.request(
            self,
            "POST",
            "/v1/talk/twilio/call/echo",
            data=FORM,
            headers={"X-Twilio-Signature": "AAAA"},
        )
        self.assertEqual((response.code, errorCode(body)), (403, "bad_signature"))

    def test_goodForm(self) -> None:
        sig = self.sign(
            "https://gw.example.com/v1/talk/twilio/call/echo", {k: [v] for k, v in FORM.items()}
        )
        response, _ = self.h.request(
            self,
            "POST",
            "/v1/talk/twilio/call/echo",
            data=FORM,
            headers={"X-Twilio-Signature": sig},
        )
        self.assertEqual(response.code, 200)

    def test_portQuirk(self) -> None:
        sig = self.sign(
            "https://gw.example.com:443/v1/talk/twilio/call/echo", {k: [v] for k, v in FORM.items()}
        )
        response, _ = self.h.request(
            self,
            "POST",
            "/v1/talk/twilio/call/echo",
            data=FORM,
            headers={"X-Twilio-Signature": sig},
        )
        self.assertEqual(response.code, 200)

    def test_jsonBodySHA256(self) -> None:
        import hashlib

        body = json.dumps({"From": "+1555"}).encode()
        path = "/v1/talk/twilio/call/echo?bodySHA256=" + hashlib.sha256(body).hexdigest()
        sig = self.sign("https://gw.example.com" + path, {})
        response, _ = self.h.request(
            self,
            "POST",
            path,
            data=body,
            headers={"X-Twilio-Signature": sig, "content-type": "application/json"},
        )
        self.assertEqual(response.code, 200)
        tampered, _ = self.h.request(
            self,
            "POST",
            path,
            data=body + b" ",
            headers={"X-Twilio-Signature": sig, "content-type": "application/json"},
        )
        self.assertEqual(tampered.code, 403)

    def test_eventRouteSigned(self) -> None:
        new = self.successResultOf(self.h.store.create("twilio", "echo"))
        path = f"/v1/talk/twilio/ctx/{new.context.context_id}/event"
        response, _ = self.h.request(self, "POST", path, data={"CallStatus": "ringing"})
        self.assertEqual(response.code, 403)

    def test_upgradeSigned(self) -> None:
        new = self.successResultOf(self.h.store.create("twilio", "echo"))
        path = f"/v1/talk/twilio/ctx/{new.context.context_id}"
        _, transport = self.h.raw(upgradeRequest(path))
        self.assertIn(" 403 ", statusLine(transport))
        sig = self.sign("wss://gw.example.com" + path, {})
        _, transport = self.h.raw(upgradeRequest(path, {"X-Twilio-Signature": sig}))
        self.assertIn(" 101 ", statusLine(transport))


class EventWebhookTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness()

    def context(self, provider: str = "twilio"):
        return self.successResultOf(self.h.store.create(provider, "echo")).context

    def post(self, provider: str, contextId: str, **kw):
        return self.h.request(self, "POST", f"/v1/talk/{provider}/ctx/{contextId}/event", **kw)

    def current(self, contextId: str):
        return self.successResultOf(self.h.store.get(contextId))

    def test_recordsEveryCallbackRaw(self) -> None:
        ctx = self.context()
        for status in ["ringing", "ringing", "in-progress"]:
            response, _ = self.post(
                "twilio", ctx.context_id, data={"CallStatus": status, "CallSid": "CA9"}
            )
            self.assertEqual(response.code, 204)
        events = self.successResultOf(self.h.store.listEvents(ctx.context_id, "status"))
        self.assertEqual(
            [e.payload["fields"]["CallStatus"] for e in events],
            ["ringing", "ringing", "in-progress"],
        )
        now = self.current(ctx.context_id)
        self.assertEqual(now.provider_status, "in-progress")
        self.assertEqual(now.channel_uuid, "CA9")

    def test_neverBackwards(self) -> None:
        ctx = self.context()
        self.post("twilio", ctx.context_id, data={"CallStatus": "completed"})
        self.post("twilio", ctx.context_id, data={"CallStatus": "ringing"})
        self.post("twilio", ctx.context_id, data={"CallStatus": "failed"})
        now = self.current(ctx.context_id)
        self.assertEqual((now.status, now.provider_status), (COMPLETED, "completed"))
        self.assertEqual(
            len(self.successResultOf(self.h.store.listEvents(ctx.context_id, "status"))), 3
        )

    def test_twilioFailure(self) -> None:
        ctx = self.context()
        self.post("twilio", ctx.context_id, data={"CallStatus": "busy"})
        now = self.current(ctx.context_id)
        self.assertEqual((now.status, now.provider_status, now.reason), (FAILED, "busy", "busy"))

    def test_twilioCompletedWithError(self) -> None:
        ctx = self.context()
        self.post(
            "twilio",
            ctx.context_id,
            data={
                "CallStatus": "completed",
                "ErrorCode": "11200",
                "ErrorMessage": "HTTP retrieval failure",
            },
        )
        now = self.current(ctx.context_id)
        self.assertEqual((now.status, now.reason), (FAILED, "HTTP retrieval failure"))

    def test_vonageJSONEvents(self) -> None:
        ctx = self.context("vonage")
        for status in ["started", "ringing", "answered", "completed"]:
            response, _ = self.post(
                "vonage", ctx.context_id, json={"status": status, "uuid": "u", "duration": "5"}
            )
            self.assertEqual(response.code, 204)
        now = self.current(ctx.context_id)
        self.assertEqual((now.status, now.provider_status), (COMPLETED, "completed"))

    def test_vonageUnanswered(self) -> None:
        ctx = self.context("vonage")
        self.post("vonage", ctx.context_id, json={"status": "unanswered", "detail": "timeout"})
        now = self.current(ctx.context_id)
        self.assertEqual((now.status, now.reason), (FAILED, "timeout"))

    def test_exotelStatus(self) -> None:
        ctx = self.context("exotel")
        self.post("exotel", ctx.context_id, data={"Status": "no-answer", "CallSid": "e"})
        self.assertEqual(self.current(ctx.context_id).status, FAILED)

    def test_unknownContext404(self) -> None:
        response, body = self.post(
            "twilio", "00000000-0000-4000-8000-000000000000", data={"CallStatus": "ringing"}
        )
        self.assertEqual((response.code, errorCode(body)), (404, "unknown_context"))

    def test_otherProvidersContext404(self) -> None:
        ctx = self.context("vonage")
        response, _ = self.post("twilio", ctx.context_id, data={"CallStatus": "ringing"})
        self.assertEqual(response.code, 404)

    def test_getAccepted(self) -> None:
        ctx = self.context("vonage")
        response, _ = self.h.request(
            self, "GET", f"/v1/talk/vonage/ctx/{ctx.context_id}/event", params={"status": "ringing"}
        )
        self.assertEqual(response.code, 204)
        self.assertEqual(self.current(ctx.context_id).provider_status, "ringing")


class MediaUpgradeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness()

    def body(self, transport) -> dict:
        raw = transport.value()
        head, _, rest = raw.partition(b"\r\n\r\n")
        match = re.search(rb"\{.*\}", rest, re.S)
        return json.loads(match.group(0))

    def test_unknown404(self) -> None:
        _, transport = self.h.raw(
            upgradeRequest("/v1/talk/twilio/ctx/00000000-0000-4000-8000-000000000000")
        )
        self.assertIn(" 404 ", statusLine(transport))
        self.assertEqual(self.body(transport)["error"]["code"], "unknown_context")

    def test_claimed409(self) -> None:
        ctx = self.successResultOf(self.h.store.create("twilio", "echo")).context
        self.successResultOf(self.h.store.claim(ctx.context_id))
        _, transport = self.h.raw(upgradeRequest(f"/v1/talk/twilio/ctx/{ctx.context_id}"))
        self.assertIn(" 409 ", statusLine(transport))
        self.assertEqual(self.body(transport)["error"]["code"], "already_claimed")

    def test_expired410(self) -> None:
        ctx = self.successResultOf(self.h.store.create("twilio", "echo")).context
        self.h.clock.advance(121)
        _, transport = self.h.raw(upgradeRequest(f"/v1/talk/twilio/ctx/{ctx.context_id}"))
        self.assertIn(" 410 ", statusLine(transport))
        self.assertEqual(self.body(transport)["error"]["code"], "expired")

    def test_finished410(self) -> None:
        ctx = self.successResultOf(self.h.store.create("twilio", "echo")).context
        self.successResultOf(self.h.store.finish(ctx.context_id, "failed", "busy"))
        _, transport = self.h.raw(upgradeRequest(f"/v1/talk/twilio/ctx/{ctx.context_id}"))
        self.assertIn(" 410 ", statusLine(transport))

    def test_storeDown503(self) -> None:
        self.h.store.unavailable = True
        _, transport = self.h.raw(
            upgradeRequest("/v1/talk/twilio/ctx/00000000-0000-4000-8000-000000000000")
        )
        self.assertIn(" 503 ", statusLine(transport))

    def test_plainGet426(self) -> None:
        ctx = self.successResultOf(self.h.store.create("twilio", "echo")).context
        response, body = self.h.request(self, "GET", f"/v1/talk/twilio/ctx/{ctx.context_id}")
        self.assertEqual((response.code, errorCode(body)), (426, "upgrade_required"))

    def test_asteriskClaimsAtUpgradeQueryFirst(self) -> None:
        ctx = self.successResultOf(self.h.store.create("asterisk", "echo")).context
        _, transport = self.h.raw(
            upgradeRequest(f"/v1/talk/asterisk/ctx?contextId={ctx.context_id}")
        )
        self.assertIn(" 101 ", statusLine(transport))
        self.assertEqual(self.successResultOf(self.h.store.get(ctx.context_id)).status, "claimed")
        _, transport = self.h.raw(upgradeRequest(f"/v1/talk/asterisk/ctx/{ctx.context_id}"))
        self.assertIn(" 409 ", statusLine(transport))

    def test_noExtensionsAccepted(self) -> None:
        ctx = self.successResultOf(self.h.store.create("asterisk", "echo")).context
        _, transport = self.h.raw(
            upgradeRequest(
                f"/v1/talk/asterisk/ctx/{ctx.context_id}",
                {"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"},
            )
        )
        self.assertIn(" 101 ", statusLine(transport))
        head = transport.value().split(b"\r\n\r\n")[0].lower()
        self.assertNotIn(b"sec-websocket-extensions", head)


class _FakeStoreService:
    def __init__(self) -> None:
        from twisted.internet.defer import Deferred

        self.ready = False
        self.waiter: Deferred[None] = Deferred()

    def whenReady(self):  # type: ignore[no-untyped-def]
        return self.waiter


class StoreStartingTests(SynchronousTestCase):
    """
    Before the store has started (migrations applied), health says so and
    webhooks wait for it, answering 503 if it does not come within 5 s.
    """

    def setUp(self) -> None:
        self.h = Harness()
        self.service = _FakeStoreService()
        self.h.gateway.storeService = self.service

    def test_healthStarting(self) -> None:
        response, body = self.h.request(self, "GET", "/healthz")
        self.assertEqual((response.code, json.loads(body)["status"]), (503, "starting"))

    def test_webhookWaitsForStore(self) -> None:
        d = self.h.treq.post(self.h.url("/v1/talk/twilio/call/echo"), data=FORM)
        self.h.treq.flush()
        self.assertNoResult(d)
        self.service.ready = True
        self.service.waiter.callback(None)
        self.h.treq.flush()
        self.assertEqual(self.successResultOf(d).code, 200)

    def test_webhook503WhenStoreNeverStarts(self) -> None:
        d = self.h.treq.post(self.h.url("/v1/talk/twilio/call/echo"), data=FORM)
        self.h.treq.flush()
        self.h.clock.advance(5)
        self.h.treq.flush()
        self.assertEqual(self.successResultOf(d).code, 503)
