# -*- test-case-name: tests.test_web -*-
"""
The gateway: what every transport shares (store, configuration, providers,
public URLs, metrics, the clock). Built once by C{tap.makeService}.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

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
        d = op(*args, **kw)
        d.addTimeout(self.storeTimeout, self.clock)
        try:
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
