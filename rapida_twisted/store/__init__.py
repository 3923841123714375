"""
The call-context store (SPEC §5): which call is which, who may claim its
media leg, and what happened to it.

Two tables, C{call_contexts} and C{call_events}, in PostgreSQL
(L{PostgresContextStore}, production, shared by every node) or SQLite
(L{SQLiteContextStore}, the embedded default); L{MemoryContextStore} is the
same contract in memory for unit tests. Pick one with L{storeFromURL} and
run it under a L{StoreService}; L{ContextExpiryService} expires unclaimed
contexts.
"""

from ._memory import MemoryContextStore
from ._model import (
    CLAIMED,
    COMPLETED,
    DIRECTIONS,
    EVENT_KINDS,
    EXPIRED,
    FAILED,
    INBOUND,
    OUTBOUND,
    OUTCOMES,
    PENDING,
    SOURCES,
    TERMINAL_STATUSES,
    CallContext,
    CallEvent,
    ContextAlreadyClaimed,
    ContextExpired,
    ContextFinished,
    ContextNotFound,
    NewContext,
    StoreError,
    StoreUnavailable,
    hashToken,
    newToken,
    tokenMatches,
)
from ._ops import EXPIRY_REASON
from ._postgres import PostgresContextStore
from ._service import ContextExpiryService, StoreService
from ._sqlite import SQLiteContextStore
from ._url import storeFromURL

__all__ = [
    "CLAIMED",
    "COMPLETED",
    "DIRECTIONS",
    "EVENT_KINDS",
    "EXPIRED",
    "EXPIRY_REASON",
    "FAILED",
    "INBOUND",
    "OUTBOUND",
    "OUTCOMES",
    "PENDING",
    "SOURCES",
    "TERMINAL_STATUSES",
    "CallContext",
    "CallEvent",
    "ContextAlreadyClaimed",
    "ContextExpired",
    "ContextExpiryService",
    "ContextFinished",
    "ContextNotFound",
    "MemoryContextStore",
    "NewContext",
    "PostgresContextStore",
    "SQLiteContextStore",
    "StoreError",
    "StoreService",
    "StoreUnavailable",
    "hashToken",
    "newToken",
    "storeFromURL",
    "tokenMatches",
]
