"""
Every zope interface of rapida-twisted, in one module (so type checking
and C{verifyObject} find them in one place).
"""

from __future__ import annotations

from typing import Any

from zope.interface import Attribute, Interface


class IContextStore(Interface):
    """
    The call-context store (SPEC §5): PostgreSQL through txpostgres or the
    embedded SQLite.

    Every method returns a L{Deferred}. Deliberate failures are the
    L{rapida_twisted.store.StoreError} subclasses; a database that cannot
    be reached fails with L{rapida_twisted.store.StoreUnavailable}.
    """

    ttl = Attribute("Seconds an unclaimed context lives (float).")

    def start() -> Any:
        """
        Connect and apply schema migrations. Deferred fires with None.
        """

    def close() -> Any:
        """
        Release connections. Deferred fires with None.
        """

    def ping() -> Any:
        """
        Check the database answers. Deferred fires with None or fails with
        StoreUnavailable.
        """

    def create(
        provider: str,
        assistant_id: str,
        direction: str = "inbound",
        caller: str = "",
        callee: str = "",
        channel_uuid: str = "",
        metadata: dict[str, Any] | None = None,
    ) -> Any:
        """
        Create a C{pending} context with new UUID4 context and conversation
        ids and a random token of which only the hash is stored.
        Deferred fires with a L{NewContext}.
        """

    def get(context_id: str) -> Any:
        """
        Deferred fires with the L{CallContext} or fails with
        ContextNotFound. Never claims.
        """

    def claim(context_id: str) -> Any:
        """
        Atomically move C{pending} to C{claimed}; single use. Deferred
        fires with the claimed L{CallContext} or fails with
        ContextNotFound, ContextAlreadyClaimed, ContextExpired or
        ContextFinished.
        """

    def findByChannel(provider: str, channel_uuid: str) -> Any:
        """
        Deferred fires with the newest context of this provider whose
        C{channel_uuid} matches, or None.
        """

    def setChannel(context_id: str, channel_uuid: str) -> Any:
        """
        Record the provider's call id once it is known (for example a
        Twilio CallSid first seen on the media stream). Deferred fires
        with True when a row changed.
        """

    def updateProviderStatus(
        context_id: str, provider_status: str, expected: str | None = None
    ) -> Any:
        """
        Set C{provider_status}; when C{expected} is not None only if the
        current value equals it (compare-and-set). Deferred fires with
        True when the row changed.
        """

    def finish(context_id: str, outcome: str, reason: str = "") -> Any:
        """
        End a context with outcome C{completed} or C{failed}. A context
        already finished is left as it is. Deferred fires with True when
        this call finished it.
        """

    def appendEvent(
        context_id: str, source: str, kind: str, payload: dict[str, Any] | None = None
    ) -> Any:
        """
        Append one row to C{call_events}. Deferred fires with its id.
        """

    def listEvents(context_id: str, kind: str | None = None) -> Any:
        """
        Deferred fires with the context's L{CallEvent}s in order.
        """

    def expireUnclaimed() -> Any:
        """
        Mark C{pending} contexts older than the TTL as C{expired}.
        Deferred fires with how many were expired.
        """
