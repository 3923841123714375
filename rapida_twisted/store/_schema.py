# -*- test-case-name: tests.test_store -*-
"""
Versioned schema migrations for both SQL dialects.

Each migration has a version number, a one-line description and the DDL
statements that take the schema from the previous version to this one.
The two dialects list the same versions with the same table, column and
index names (operators query them by hand); only the types differ:
PostgreSQL keeps times as C{timestamptz} and JSON as C{jsonb}, SQLite keeps
times as C{REAL} seconds since the epoch and JSON as checked C{TEXT}.

Never edit a released migration: append a new version.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    """
    One schema version.
    """

    version: int
    description: str
    statements: tuple[str, ...]


_STATUSES = "('pending', 'claimed', 'completed', 'failed', 'expired')"
_SOURCES = "('provider', 'gateway', 'assistant')"

POSTGRES_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "call_contexts and call_events",
        (
            f"""
            CREATE TABLE call_contexts (
                context_id      text PRIMARY KEY,
                provider        text NOT NULL,
                assistant_id    text NOT NULL,
                conversation_id text NOT NULL,
                token_hash      text NOT NULL,
                direction       text NOT NULL,
                caller          text NOT NULL DEFAULT '',
                callee          text NOT NULL DEFAULT '',
                channel_uuid    text NOT NULL DEFAULT '',
                status          text NOT NULL DEFAULT 'pending'
                                CHECK (status IN {_STATUSES}),
                provider_status text NOT NULL DEFAULT '',
                created_at      timestamptz NOT NULL,
                claimed_at      timestamptz,
                ended_at        timestamptz,
                reason          text NOT NULL DEFAULT '',
                metadata        jsonb NOT NULL DEFAULT '{{}}'::jsonb
            )
            """,
            "CREATE INDEX call_contexts_status_created_idx ON call_contexts (status, created_at)",
            "CREATE INDEX call_contexts_channel_idx"
            " ON call_contexts (provider, channel_uuid, created_at)",
            f"""
            CREATE TABLE call_events (
                id         bigserial PRIMARY KEY,
                context_id text NOT NULL REFERENCES call_contexts (context_id),
                at         timestamptz NOT NULL,
                source     text NOT NULL CHECK (source IN {_SOURCES}),
                kind       text NOT NULL,
                payload    jsonb NOT NULL DEFAULT '{{}}'::jsonb
            )
            """,
            "CREATE INDEX call_events_context_idx ON call_events (context_id, id)",
        ),
    ),
)

SQLITE_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "call_contexts and call_events",
        (
            f"""
            CREATE TABLE call_contexts (
                context_id      TEXT PRIMARY KEY NOT NULL,
                provider        TEXT NOT NULL,
                assistant_id    TEXT NOT NULL,
                conversation_id TEXT NOT NULL,
                token_hash      TEXT NOT NULL,
                direction       TEXT NOT NULL,
                caller          TEXT NOT NULL DEFAULT '',
                callee          TEXT NOT NULL DEFAULT '',
                channel_uuid    TEXT NOT NULL DEFAULT '',
                status          TEXT NOT NULL DEFAULT 'pending'
                                CHECK (status IN {_STATUSES}),
                provider_status TEXT NOT NULL DEFAULT '',
                created_at      REAL NOT NULL,
                claimed_at      REAL,
                ended_at        REAL,
                reason          TEXT NOT NULL DEFAULT '',
                metadata        TEXT NOT NULL DEFAULT '{{}}' CHECK (json_valid(metadata))
            )
            """,
            "CREATE INDEX call_contexts_status_created_idx ON call_contexts (status, created_at)",
            "CREATE INDEX call_contexts_channel_idx"
            " ON call_contexts (provider, channel_uuid, created_at)",
            f"""
            CREATE TABLE call_events (
                id         INTEGER PRIMARY KEY AUTOINCREMENT,
                context_id TEXT NOT NULL REFERENCES call_contexts (context_id),
                at         REAL NOT NULL,
                source     TEXT NOT NULL CHECK (source IN {_SOURCES}),
                kind       TEXT NOT NULL,
                payload    TEXT NOT NULL DEFAULT '{{}}' CHECK (json_valid(payload))
            )
            """,
            "CREATE INDEX call_events_context_idx ON call_events (context_id, id)",
        ),
    ),
)
