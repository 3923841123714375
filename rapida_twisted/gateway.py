# -*- test-case-name: tests.test_web -*-
"""
The gateway: what every transport shares (store, configuration, providers,
public URLs, metrics, the clock). Built once by C{tap.makeService}.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from .assistants import AssistantRegistry
from .asterisk._webhook import AsteriskProvider
from .config import GatewayConfig
from .interfaces import IContextStore
from .media import PacerGroup
from .metrics import Metrics
from .providers._base import BaseProvider, PublicURLs
from .providers.exotel._webhook import ExotelProvider
from .providers.twilio._webhook import TwilioProvider
from .providers.vonage._webhook import VonageProvider
from .store._model import StoreUnavailable

T = TypeVar("T")

PROVIDERS: tuple[type[BaseProvider], ...] = (
    TwilioProvider,
    VonageProvider,
    ExotelProvider,
    AsteriskProvider,
)


class Gateway:
    """
    Shared state for every listener.

    @ivar clock: the reactor's time, for every timer and timestamp.
    @ivar store: the L{IContextStore}.
    @ivar assistants: the one L{AssistantRegistry} every transport uses.
    @ivar pacers: the one L{PacerGroup} pacing every real-time transport
        (one timer for all calls instead of one per call).
    @ivar httpClient: treq C{HTTPClient} for providers' REST APIs (None
        until L{http} first makes one on the reactor).
    @ivar storeService: the service that starts the store (None when the
        store needs no start, as in unit tests); operations wait for it.
    @ivar sessions: live call sessions, and ended ones whose event writes
        are still in flight (so a shutdown can end and flush them).
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        store: IContextStore,
        config: GatewayConfig,
        urls: PublicURLs,
        metrics: Metrics | None = None,
        storeTimeout: float = 5.0,
        assistants: AssistantRegistry | None = None,
        httpClient: Any = None,
    ):
        self.clock = clock
        self.store = store
        self.config = config
        self.urls = urls
        self.metrics = metrics if metrics is not None else Metrics()
        self.storeTimeout = storeTimeout
        self.assistants = assistants if assistants is not None else AssistantRegistry(config)
        self.pacers = PacerGroup(clock)
        self.httpClient = httpClient
        self.storeService: Any = None
        self.sessions: set[Any] = set()
        self.providers: Mapping[str, BaseProvider] = {
            cls.name: cls(config, urls) for cls in PROVIDERS
        }

    def http(self) -> Any:
        """
        The HTTP client for REST calls to providers (made on first use).
        """
        if self.httpClient is None:
            from treq.client import HTTPClient
            from twisted.web.client import Agent, HTTPConnectionPool

            pool = HTTPConnectionPool(self.clock)
            pool.maxPersistentPerHost = 4
            self.httpClient = HTTPClient(Agent(self.clock, pool=pool))
        return self.httpClient

    async def storeOp(self, name: str, op: Callable[..., Deferred[T]], *args: Any, **kw: Any) -> T:
        """
        Run one store operation with the gateway's deadline: a store that
        does not answer within C{storeTimeout} seconds fails the operation
        with L{StoreUnavailable} instead of hanging the request.
        """
        started = self.clock.seconds()
        service = self.storeService
        try:
            if service is not None and not service.ready:
                waiting = service.whenReady()
                waiting.addTimeout(self.storeTimeout, self.clock)
                await waiting
            d = op(*args, **kw)
            d.addTimeout(max(0.1, self.storeTimeout - (self.clock.seconds() - started)), self.clock)
            return await d
        except defer.TimeoutError:
            self._log.error(
                "store {operation} timed out after {timeout}s",
                operation=name,
                timeout=self.storeTimeout,
            )
            raise StoreUnavailable(
                f"the context store did not answer within {self.storeTimeout:g} s"
            ) from None
        finally:
            self.metrics.storeLatency.labels(name).observe(self.clock.seconds() - started)

    @property
    def storeReady(self) -> bool:
        return self.storeService is None or bool(self.storeService.ready)

    async def shutdown(self, timeout: float = 5.0) -> None:
        """
        End every live call (reason C{shutdown}) and wait, at most
        C{timeout} seconds, for their event writes to reach the store.
        """
        live = list(self.sessions)
        if live:
            self._log.info("shutting down: ending {count} calls", count=len(live))
        for session in live:
            session.hangup("shutdown", source="gateway")
        flushing = [session.events.flushed() for session in live]
        if flushing:
            done = defer.DeferredList(flushing, consumeErrors=True)
            done.addTimeout(timeout, self.clock)
            try:
                await done
            except defer.TimeoutError:
                self._log.warn(
                    "shutting down: call events still unwritten after {timeout}s",
                    timeout=timeout,
                )


class GatewayService(Service):
    """
    Owns the gateway's calls: on stop (before the store closes, since it
    is added after the store service) every live call is ended and its
    event writes are flushed, so nothing already recorded is lost.
    """

    def __init__(self, gateway: Gateway):
        self.gateway = gateway

    def stopService(self) -> Deferred[None]:
        super().stopService()
        return Deferred.fromCoroutine(self.gateway.shutdown())
