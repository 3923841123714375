# -*- test-case-name: tests.test_tap -*-
"""
C{twistd rapida} / C{twist rapida}: the options and the service tree.

C{makeService} only builds objects (store service first, then the web
site, then the listeners); everything asynchronous happens in
C{startService}. It is the one place that reaches the global reactor.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from typing import Any

from twisted.application import internet, service, strports
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.testing import MemoryReactor
from twisted.logger import Logger
from twisted.python import usage

from .config import ConfigError, GatewayConfig, loadConfig
from .providers._base import PublicURLs

_log = Logger()

#: (flag, environment variable, default, help)
_PARAMETERS: tuple[tuple[str, str, str | None, str], ...] = (
    ("http", "RAPIDA_HTTP", "tcp:8080", "endpoint for webhooks and media WebSockets"),
    ("sip", "RAPIDA_SIP", "udp:5090", "SIP listener udp:PORT[:interface=ADDR], or none"),
    ("rtp-ports", "RAPIDA_RTP_PORTS", "10000-10999", "RTP port range (even ports, RTCP on +1)"),
    (
        "sip-advertise",
        "RAPIDA_SIP_ADVERTISE",
        None,
        "IP address put in SIP Contact and SDP c= (behind NAT); default: the SIP interface,"
        " or the local address that routes to the caller",
    ),
    ("audiosocket", "RAPIDA_AUDIOSOCKET", "tcp:4573", "AudioSocket endpoint, or none"),
    (
        "database",
        "RAPIDA_DATABASE_URL",
        "sqlite:rapida.sqlite3",
        "postgresql://... (txpostgres) or sqlite:PATH (embedded)",
    ),
    (
        "public-host",
        "PUBLIC_ASSISTANT_HOST",
        None,
        "host[:port] providers reach us at (https/wss); http://host for local use",
    ),
    ("assistants", "RAPIDA_ASSISTANTS", None, "TOML file of assistants and provider credentials"),
    ("context-ttl", "RAPIDA_CONTEXT_TTL", "120", "seconds an unclaimed context lives"),
)

DEFAULT_PUBLIC_HOST = "http://localhost:8080"


def parseUDPDescription(description: str) -> tuple[int, str]:
    """
    Parse C{udp:PORT[:interface=ADDR]} (colons in ADDR escaped as C{\\:}).
    Returns C{(port, interface)}; raises ValueError.
    """
    parts: list[str] = []
    current = ""
    escaped = False
    for ch in description:
        if escaped:
            current += ch
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ":":
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    if len(parts) < 2 or parts[0] != "udp":
        raise ValueError(f"{description!r} is not udp:PORT[:interface=ADDR]")
    try:
        port = int(parts[1])
    except ValueError:
        raise ValueError(f"{description!r}: port {parts[1]!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{description!r}: port {port} is out of range")
    interface = ""
    for option in parts[2:]:
        key, sep, value = option.partition("=")
        if key == "interface" and sep:
            interface = value
        else:
            raise ValueError(f"{description!r}: unknown option {option!r}")
    return port, interface


def parsePortRange(text: str) -> tuple[int, int]:
    """
    Parse C{LOW-HIGH} for RTP: LOW even, both within 1024..65535, room for
    at least one RTP/RTCP pair. Raises ValueError.
    """
    low_text, sep, high_text = text.partition("-")
    try:
        low, high = int(low_text), int(high_text)
    except ValueError:
        raise ValueError(f"{text!r} is not LOW-HIGH") from None
    if not sep:
        raise ValueError(f"{text!r} is not LOW-HIGH")
    if not 1024 <= low < high <= 65535:
        raise ValueError(f"{text!r}: need 1024 <= LOW < HIGH <= 65535")
    if low % 2:
        raise ValueError(f"{text!r}: LOW must be even (RTP on even ports, RTCP on +1)")
    if high - low < 1:
        raise ValueError(f"{text!r}: no room for an RTP/RTCP pair")
    return low, high


def _checkStreamEndpoint(description: str) -> None:
    # parsing only binds nothing; a memory reactor keeps the global one out
    endpoints.serverFromString(MemoryReactor(), description)


class Options(usage.Options):
    """
    Every flag has an environment default (SPEC §3); a flag wins.
    """

    synopsis = "[options]"
    longdesc = (
        "Telephony gateway for voice assistants: Twilio, Vonage, Exotel webhooks and media "
        "WebSockets, Asterisk AudioSocket and chan_websocket, and SIP/RTP."
    )
    optParameters = [
        [flag, None, None, f"{doc} [env {env}; default {default}]"]
        for flag, env, default, doc in _PARAMETERS
    ]

    def __init__(self, environ: Mapping[str, str] | None = None):
        super().__init__()
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        for flag, env, default, _ in _PARAMETERS:
            self[flag] = self.environ.get(env, default)
        self.publicHostDefaulted = False
        self.gatewayConfig: GatewayConfig | None = None
        self.assistantRegistry: Any = None
        self.urls: PublicURLs | None = None
        self.rtpPorts: tuple[int, int] = (10000, 10999)
        self.sipListen: tuple[int, str] | None = None
        self.sipAdvertise: str | None = None

    def postOptions(self) -> None:
        try:
            _checkStreamEndpoint(self["http"])
        except (ValueError, KeyError, TypeError) as e:
            raise usage.UsageError(f"--http {self['http']!r}: bad endpoint ({e})") from None
        if self["audiosocket"] != "none":
            try:
                _checkStreamEndpoint(self["audiosocket"])
            except (ValueError, KeyError, TypeError) as e:
                raise usage.UsageError(
                    f"--audiosocket {self['audiosocket']!r}: bad endpoint ({e})"
                ) from None
        if self["sip"] != "none":
            try:
                self.sipListen = parseUDPDescription(self["sip"])
            except ValueError as e:
                raise usage.UsageError(f"--sip: {e}") from None
        try:
            self.rtpPorts = parsePortRange(self["rtp-ports"])
        except ValueError as e:
            raise usage.UsageError(f"--rtp-ports: {e}") from None
        advertise = (self["sip-advertise"] or "").strip()
        if advertise:
            try:
                self.sipAdvertise = str(ipaddress.ip_address(advertise.strip("[]")))
            except ValueError:
                raise usage.UsageError(
                    f"--sip-advertise {advertise!r} is not an IP address"
                ) from None
        database = self["database"] or ""
        if not (
            database.startswith("sqlite:")
            or database.startswith("postgresql://")
            or database.startswith("postgres://")
        ):
            scheme = database.split(":", 1)[0]
            raise usage.UsageError(
                f"--database: unknown database scheme {scheme!r}; use postgresql://... or sqlite:PATH"
            )
        if database.startswith("sqlite:") and not database[len("sqlite:") :]:
            raise usage.UsageError("--database: sqlite: needs a path, e.g. sqlite:rapida.sqlite3")
        try:
            ttl = float(self["context-ttl"])
        except ValueError:
            raise usage.UsageError(
                f"--context-ttl {self['context-ttl']!r} is not a number"
            ) from None
        if not ttl > 0:
            raise usage.UsageError("--context-ttl must be positive")
        self["context-ttl"] = ttl
        if self["public-host"] is None:
            self.publicHostDefaulted = True
            self["public-host"] = DEFAULT_PUBLIC_HOST
        try:
            self.urls = PublicURLs(self["public-host"])
        except ValueError as e:
            raise usage.UsageError(f"--public-host: {e}") from None
        try:
            self.gatewayConfig = loadConfig(self["assistants"], self.environ)
            # python-kind factories are imported now: a typo fails here,
            # not on the first call
            from .assistants import AssistantRegistry

            self.assistantRegistry = AssistantRegistry(self.gatewayConfig)
            self.assistantRegistry.load()
        except ConfigError as e:
            raise usage.UsageError(f"--assistants: {e}") from None


def _warnings(options: Options, config: GatewayConfig) -> None:
    if options.publicHostDefaulted:
        _log.warn(
            "--public-host is not set: using {public_host}; cloud providers (Twilio, Vonage, "
            "Exotel) need a public HTTPS host",
            public_host=DEFAULT_PUBLIC_HOST,
        )
    unsigned = []
    if not config.twilio.auth_token:
        unsigned.append("twilio")
    if not config.vonage.signature_secret:
        unsigned.append("vonage")
    if not (config.exotel.stream_username or config.exotel.allow_from):
        unsigned.append("exotel")
    if unsigned:
        _log.warn(
            "webhooks of {providers} are not authenticated: configure their signing "
            "secrets in the assistants file or the environment",
            providers=", ".join(unsigned),
        )


class OrderedMultiService(service.MultiService):
    """
    A MultiService whose children stop one after another, last added
    first, each waited for: listeners and calls are done before the store
    closes. (Twisted's MultiService starts every child's stop at once.)
    """

    def stopService(self) -> Deferred[None]:
        service.Service.stopService(self)
        return Deferred.fromCoroutine(self._stopInOrder())

    async def _stopInOrder(self) -> None:
        for child in reversed(list(self)):
            try:
                await maybeDeferred(child.stopService)
            except Exception:
                _log.failure("stopping {service} failed", service=child.name or repr(child))


def makeService(options: Options, reactor: Any = None) -> service.MultiService:
    """
    Build the service tree: store, expiry timer, web site, listeners.
    """
    if reactor is None:
        from twisted.internet import reactor as _reactor

        reactor = _reactor
    from .gateway import Gateway, GatewayService
    from .store import ContextExpiryService, StoreService, storeFromURL
    from .web import buildSite

    config = options.gatewayConfig
    urls = options.urls
    assert config is not None and urls is not None, "postOptions() was not run"
    _warnings(options, config)
    top = OrderedMultiService()
    store = storeFromURL(reactor, options["database"], ttl=options["context-ttl"])
    storeService = StoreService(store, clock=reactor)
    storeService.setServiceParent(top)
    ContextExpiryService(
        store, reactor, interval=min(10.0, options["context-ttl"] / 4)
    ).setServiceParent(top)
    gateway = Gateway(reactor, store, config, urls, assistants=options.assistantRegistry)
    gateway.storeService = storeService
    GatewayService(gateway).setServiceParent(top)
    unavailable = gateway.assistants.unavailable()
    if unavailable:
        _log.warn(
            "assistants {assistants} are of a kind this gateway cannot run yet; their calls "
            "will be refused",
            assistants=", ".join(unavailable),
        )
    top.gateway = gateway  # type: ignore[attr-defined]
    site = buildSite(gateway, reactor)
    web = strports.service(options["http"], site, reactor=reactor)
    web.setName("http")
    web.setServiceParent(top)
    for listener in _listeners(options, gateway, reactor):
        listener.setServiceParent(top)
    return top


def _listeners(options: Options, gateway: Any, reactor: Any) -> list[service.Service]:
    """
    The AudioSocket and SIP listeners, when enabled and available.
    """
    listeners: list[service.Service] = []
    if options["audiosocket"] != "none":
        from .asterisk import AudioSocketFactory

        audiosocket = strports.service(
            options["audiosocket"], AudioSocketFactory(gateway), reactor=reactor
        )
        audiosocket.setName("audiosocket")
        listeners.append(audiosocket)
    if options.sipListen is not None:
        from .sip.sip import sipService

        port, interface = options.sipListen
        listeners.append(
            sipService(
                gateway,
                reactor,
                port,
                interface,
                options.rtpPorts,
                advertise=options.sipAdvertise,
            )
        )
    return listeners


__all__ = ["Options", "makeService", "internet"]
