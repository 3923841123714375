"""
Test helpers for the HTTP side: a gateway on a memory store and a
task.Clock, driven in memory through StubTreq and raw HTTP bytes.
"""

from __future__ import annotations

import base64
import os
from typing import Any

from treq.testing import StubTreq
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from rapida_twisted.config import GatewayConfig, parseConfig
from rapida_twisted.gateway import Gateway
from rapida_twisted.providers._base import PublicURLs
from rapida_twisted.store._memory import MemoryContextStore
from rapida_twisted.web import buildSite

PUBLIC = "gw.example.com"


class Harness:
    """
    One gateway: C{.clock}, C{.store}, C{.gateway}, C{.site}, C{.treq}.
    """

    def __init__(
        self, toml: str = "", environ: dict[str, str] | None = None, publicHost: str = PUBLIC
    ):
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.store = MemoryContextStore(self.clock, ttl=120)
        self.config: GatewayConfig = parseConfig(toml, environ or {})
        self.urls = PublicURLs(publicHost)
        self.gateway = Gateway(self.clock, self.store, self.config, self.urls)
        self.site = buildSite(self.gateway, self.clock)
        self.treq = StubTreq(self.site.resource)

    def contexts(self, testCase: Any) -> list[Any]:
        """
        Every stored context (oldest first).
        """
        rows = self.store._conn.execute(
            "SELECT context_id FROM call_contexts ORDER BY created_at, rowid"
        ).fetchall()
        return [testCase.successResultOf(self.store.get(row[0])) for row in rows]

    def url(self, path: str) -> str:
        return "http://" + PUBLIC + path

    def result(self, testCase: Any, d: Any) -> Any:
        self.treq.flush()
        return testCase.successResultOf(d)

    def request(self, testCase: Any, method: str, path: str, **kw: Any) -> tuple[Any, bytes]:
        d = self.treq.request(method, self.url(path), **kw)
        response = self.result(testCase, d)
        body = self.result(testCase, response.content())
        return response, body

    def raw(self, data: bytes, peer: str = "127.0.0.1") -> tuple[Any, StringTransport]:
        """
        Feed raw bytes to an HTTP channel of the site (for WebSocket
        upgrades, which StubTreq cannot do).
        """
        proto = self.site.buildProtocol(IPv4Address("TCP", peer, 40000))
        transport = StringTransport(peerAddress=IPv4Address("TCP", peer, 40000))
        transport.protocol = proto
        proto.makeConnection(transport)
        proto.dataReceived(data)
        return proto, transport


def upgradeRequest(path: str, headers: dict[str, str] | None = None) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {PUBLIC}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def statusLine(transport: StringTransport) -> str:
    return transport.value().split(b"\r\n", 1)[0].decode()
