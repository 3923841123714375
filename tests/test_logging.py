"""
JSON-lines logging keeps named fields.
"""

from __future__ import annotations

import io
import json

from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from rapida_twisted.logging import observer


class ObserverTests(SynchronousTestCase):
    def test_jsonLinesWithFields(self) -> None:
        out = io.StringIO()
        log = Logger(namespace="rapida.test", observer=observer(out, "info"))
        log.info("call {context_id} on {provider}", context_id="c-1", provider="twilio")
        log.debug("hidden {x}", x=1)
        lines = out.getvalue().splitlines()
        self.assertEqual(len(lines), 1)
        event = json.loads(lines[0])
        self.assertEqual((event["context_id"], event["provider"]), ("c-1", "twilio"))
        self.assertEqual(event["log_namespace"], "rapida.test")
