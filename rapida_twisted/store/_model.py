# -*- test-case-name: tests.test_store -*-
"""
The call-context model shared by every store implementation.

Pure data and pure helpers: no reactor, no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any

#: context status values (SPEC §5)
PENDING = "pending"
CLAIMED = "claimed"
COMPLETED = "completed"
FAILED = "failed"
EXPIRED = "expired"

TERMINAL_STATUSES = frozenset({COMPLETED, FAILED, EXPIRED})
OUTCOMES = frozenset({COMPLETED, FAILED})

#: call directions
INBOUND = "inbound"
OUTBOUND = "outbound"
DIRECTIONS = frozenset({INBOUND, OUTBOUND})

#: call event sources
SOURCES = frozenset({"provider", "gateway", "assistant"})

#: call event kinds (SPEC §5)
EVENT_KINDS = frozenset(
    {
        "webhook",
        "claimed",
        "start",
        "dtmf",
        "mark",
        "clear",
        "hangup",
        "status",
        "error",
        "ended",
    }
)


class StoreError(Exception):
    """
    Base class of every error a context store raises on purpose.
    """


class ContextNotFound(StoreError):
    """
    No context has this id.
    """


class ContextAlreadyClaimed(StoreError):
    """
    The context was claimed before: a media URL is single use.
    """


class ContextExpired(StoreError):
    """
    The context was not claimed within its time to live.
    """


class ContextFinished(StoreError):
    """
    The context has already ended (completed or failed).
    """


class StoreUnavailable(StoreError):
    """
    The backing database cannot be reached.
    """


@dataclass(frozen=True)
class CallContext:
    """
    One row of C{call_contexts}.

    Times are seconds since the epoch (float), as given by the store's
    clock.
    """

    context_id: str
    provider: str
    assistant_id: str
    conversation_id: str
    token_hash: str
    direction: str
    caller: str
    callee: str
    channel_uuid: str
    status: str
    provider_status: str
    created_at: float
    claimed_at: float | None = None
    ended_at: float | None = None
    reason: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def expired_at(self, now: float, ttl: float) -> bool:
        """
        Is this context past its claim deadline at C{now}?
        """
        return self.status == EXPIRED or (self.status == PENDING and now >= self.created_at + ttl)


@dataclass(frozen=True)
class NewContext:
    """
    What C{IContextStore.create} returns: the stored context and the
    clear-text per-call token, which is never stored and exists only here.
    """

    context: CallContext
    token: str


@dataclass(frozen=True)
class CallEvent:
    """
    One row of C{call_events}.
    """

    id: int
    context_id: str
    at: float
    source: str
    kind: str
    payload: dict[str, Any]


def newToken() -> str:
    """
    A fresh random per-call token (192 bits, URL safe).
    """
    return secrets.token_urlsafe(24)


def hashToken(token: str) -> str:
    """
    The stored form of a per-call token: hex SHA-256.
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def tokenMatches(context: CallContext, token: str | None) -> bool:
    """
    Constant-time check of a presented token against a context's hash.
    """
    if not token or not context.token_hash:
        return False
    return hmac.compare_digest(hashToken(token), context.token_hash)
