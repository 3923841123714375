# -*- test-case-name: tests.test_store -*-
"""
Choose and build a context store from a database URL.
"""

from __future__ import annotations

import os

from twisted.internet.interfaces import IReactorFromThreads, IReactorTime

from ..interfaces import IContextStore
from ._postgres import PostgresContextStore
from ._sqlite import SQLiteContextStore

#: what storeFromURL understands, for error messages and --help
URL_FORMS = "sqlite:PATH (relative to the working directory), sqlite::memory: or postgresql://…"


def storeFromURL(
    reactor: IReactorTime,
    url: str,
    ttl: float = 120.0,
    clock: IReactorTime | None = None,
    poolSize: int = 4,
) -> IContextStore:
    """
    The store for a database URL (not started).

      - C{sqlite:PATH}: L{SQLiteContextStore} on PATH, relative to the
        current working directory (made absolute now) unless absolute (C{sqlite:///abs/path} also
        works); C{sqlite::memory:} is a private in-memory database.
      - C{postgresql://…} or C{postgres://…}: L{PostgresContextStore} with
        the URL as its DSN and C{poolSize} connections.

    @raise ValueError: for any other scheme, an empty path or an invalid
        PostgreSQL URL. The message never repeats the URL (it may hold a
        password).
    """
    scheme, colon, rest = url.partition(":")
    kind = scheme.strip().lower()
    if not colon:
        raise ValueError(f"the database URL has no scheme; use {URL_FORMS}")
    if kind == "sqlite":
        path = rest[2:] if rest.startswith("//") else rest
        if not path:
            raise ValueError("sqlite: needs a file name, e.g. sqlite:rapida.sqlite3")
        if path != ":memory:":
            # now, not when the store opens (a daemon may change directory)
            path = os.path.abspath(path)
        return SQLiteContextStore(IReactorFromThreads(reactor), path, ttl, clock)
    if kind in ("postgresql", "postgres"):
        return PostgresContextStore(reactor, url, ttl, clock, poolSize)
    raise ValueError(f"unknown database scheme {scheme!r}; use {URL_FORMS}")
