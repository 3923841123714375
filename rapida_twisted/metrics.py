# -*- test-case-name: tests.test_web -*-
"""
Prometheus metrics, on a registry of their own (one per gateway, so tests
and several gateways in one process never share counters).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class Metrics:
    """
    The gateway's counters, gauges and histograms.
    """

    contentType = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.webhooks = Counter(
            "rapida_webhooks",
            "Webhook requests by provider, kind and outcome",
            ["provider", "kind", "outcome"],
            registry=self.registry,
        )
        self.activeCalls = Gauge(
            "rapida_active_calls",
            "Calls with a live media stream, by provider",
            ["provider"],
            registry=self.registry,
        )
        self.calls = Counter(
            "rapida_calls",
            "Media streams ended, by provider and outcome",
            ["provider", "outcome"],
            registry=self.registry,
        )
        self.storeLatency = Histogram(
            "rapida_store_latency_seconds",
            "Context store operation latency",
            ["operation"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.protocolErrors = Counter(
            "rapida_protocol_errors",
            "Malformed or refused messages, by transport and reason",
            ["transport", "reason"],
            registry=self.registry,
        )
        self.framesDropped = Counter(
            "rapida_frames_dropped",
            "Audio frames dropped from bounded queues, by direction",
            ["direction"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
