"""
Tests for the SIP server: the safety guards (L{rapida_twisted.sip._limits}),
the user-agent core (L{rapida_twisted.sip._core}) driven through the UDP
adapter (L{rapida_twisted.sip.sip}) on an in-memory UDP reactor, and the
tap wiring.
"""

from __future__ import annotations

import ipaddress

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from rapida_twisted.sip._limits import AllowList, RateLimiter


class AllowListTests(SynchronousTestCase):
    def test_emptyAllowsAll(self) -> None:
        allow = AllowList()
        self.assertFalse(allow)
        self.assertTrue(allow.allows("203.0.113.9"))

    def test_networks(self) -> None:
        allow = AllowList(
            [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32")]
        )
        self.assertTrue(allow)
        self.assertTrue(allow.allows("10.1.2.3"))
        self.assertTrue(allow.allows("10.1.2.3"))  # cached
        self.assertTrue(allow.allows("2001:db8::1"))
        self.assertFalse(allow.allows("192.0.2.1"))
        self.assertFalse(allow.allows("not-an-ip"))


class RateLimiterTests(SynchronousTestCase):
    def test_burstThenRate(self) -> None:
        clock = Clock()
        limiter = RateLimiter(clock, rate=10, burst=20)
        self.assertEqual(sum(limiter.allow("a") for _ in range(30)), 20)
        clock.advance(1)
        self.assertEqual(sum(limiter.allow("a") for _ in range(30)), 10)

    def test_sourcesApart(self) -> None:
        clock = Clock()
        limiter = RateLimiter(clock, rate=1, burst=2)
        for _ in range(10):
            limiter.allow("flood")
        self.assertTrue(limiter.allow("other"))

    def test_disabled(self) -> None:
        limiter = RateLimiter(Clock(), rate=0)
        self.assertFalse(limiter.enabled)
        self.assertTrue(all(limiter.allow("a") for _ in range(1000)))

    def test_reportRateLimited(self) -> None:
        clock = Clock()
        limiter = RateLimiter(clock, rate=1, burst=1, logInterval=10)
        self.assertEqual(limiter.reportDue("a"), 0)
        limiter.allow("a")
        for _ in range(5):
            limiter.allow("a")
        self.assertEqual(limiter.reportDue("a"), 5)
        limiter.allow("a")
        self.assertEqual(limiter.reportDue("a"), 0)  # within the interval
        clock.advance(10)
        limiter.allow("a")
        limiter.allow("a")
        self.assertEqual(limiter.reportDue("a"), 2)

    def test_boundedSources(self) -> None:
        limiter = RateLimiter(Clock(), rate=1, maxSources=3)
        for host in "abcde":
            limiter.allow(host)
        self.assertEqual(len(limiter._buckets), 3)
