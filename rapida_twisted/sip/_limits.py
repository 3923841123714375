# -*- test-case-name: tests.test_sip_server -*-
"""
The SIP listener's guards against abuse, on the injected clock: a source
allowlist and a per-source token-bucket rate limit.

Both are decisions only; the core logs and counts what they refuse.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable

from twisted.internet.interfaces import IReactorTime

__all__ = ["AllowList", "RateLimiter", "Throttle", "TokenBucket"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AllowList:
    """
    Source networks allowed to talk to the listener; empty allows all.

    Sources outside it are B{dropped silently} by the core (with a
    rate-limited log event and a metric), not answered 403: an answer
    would confirm to scanners that a SIP server listens here and can be
    abused for reflection, while a legitimate peer that is refused is
    found in the log.
    """

    def __init__(self, networks: Iterable[Network] = ()) -> None:
        self.networks = tuple(networks)
        self._cache: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self.networks)

    def allows(self, host: str) -> bool:
        """
        Whether C{host} (an IP address as text) is inside an allowed
        network; an unparsable host is refused when a list is set.
        """
        if not self.networks:
            return True
        cached = self._cache.get(host)
        if cached is not None:
            return cached
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            result = False
        else:
            result = any(address in net for net in self.networks)
        if len(self._cache) >= 4096:
            self._cache.clear()
        self._cache[host] = result
        return result


class TokenBucket:
    """
    C{rate} tokens per second, at most C{burst} saved up; one token per
    request.
    """

    __slots__ = ("burst", "dropped", "lastLog", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now
        self.dropped = 0
        self.lastLog = float("-inf")

    def take(self, now: float) -> bool:
        """
        Spend one token if there is one.
        """
        tokens = self.tokens + (now - self.stamp) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        self.stamp = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return True
        self.tokens = tokens
        self.dropped += 1
        return False


class RateLimiter:
    """
    One L{TokenBucket} per source host (ports do not matter: a flood from
    many ports of one host is one source).

    @param rate: requests per second per source; 0 or less disables.
    @param burst: bucket size (default: two seconds' worth, at least 20).
    @param maxSources: buckets kept at most (the oldest are forgotten).
    @param logInterval: a refused source is reported at most this often.
    """

    def __init__(
        self,
        clock: IReactorTime,
        rate: float,
        burst: float | None = None,
        maxSources: int = 8192,
        logInterval: float = 10.0,
    ) -> None:
        self._seconds: Callable[[], float] = clock.seconds
        self.rate = rate
        self.burst = max(20.0, 2 * rate) if burst is None else burst
        self.maxSources = maxSources
        self.logInterval = logInterval
        self._buckets: dict[str, TokenBucket] = {}

    @property
    def enabled(self) -> bool:
        """
        Whether requests are limited at all.
        """
        return self.rate > 0

    def allow(self, host: str) -> bool:
        """
        Whether one more request from C{host} is within its rate.
        """
        if self.rate <= 0:
            return True
        now = self._seconds()
        buckets = self._buckets
        bucket = buckets.get(host)
        if bucket is None:
            if len(buckets) >= self.maxSources:
                del buckets[next(iter(buckets))]
            bucket = buckets[host] = TokenBucket(self.rate, self.burst, now)
        return bucket.take(now)

    def reportDue(self, host: str) -> int:
        """
        When C{host} has been refused and was not reported within
        C{logInterval}: how many requests were refused since the last
        report (the count restarts); else 0.
        """
        bucket = self._buckets.get(host)
        if bucket is None or not bucket.dropped:
            return 0
        now = self._seconds()
        if now - bucket.lastLog < self.logInterval:
            return 0
        bucket.lastLog = now
        dropped, bucket.dropped = bucket.dropped, 0
        return dropped


class Throttle:
    """
    Rate-limits log events by key: L{due} says when to report again and
    how many occurrences the report covers.

    @param interval: seconds between two reports of one key.
    @param maxKeys: keys remembered at most (all are forgotten beyond).
    """

    def __init__(self, clock: IReactorTime, interval: float = 10.0, maxKeys: int = 4096) -> None:
        self._seconds = clock.seconds
        self.interval = interval
        self.maxKeys = maxKeys
        self._keys: dict[object, list[float]] = {}

    def due(self, key: object) -> int:
        """
        Count one occurrence of C{key}; when its last report is older than
        C{interval}, return how many occurrences this report covers (the
        count restarts), else 0.
        """
        now = self._seconds()
        entry = self._keys.get(key)
        if entry is None:
            if len(self._keys) >= self.maxKeys:
                self._keys.clear()
            self._keys[key] = [now, 0.0]
            return 1
        entry[1] += 1
        if now - entry[0] < self.interval:
            return 0
        count = int(entry[1])
        entry[0] = now
        entry[1] = 0.0
        return count
