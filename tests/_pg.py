"""
PostgreSQL test helpers.

Tests find the server through C{DATABASE_URL}, or the libpq C{PG*}
variables when only C{PGHOST} is set (C{.ci/with-postgres} sets both).
With neither, PostgreSQL tests skip, unless C{RAPIDA_REQUIRE_PG=1} (CI),
when they fail instead.

Each test works in a fresh schema of its own (L{Scratch}), dropped
afterwards, so runs never see each other's rows. Administration here uses
plain blocking psycopg2: it is test set-up against a local server, never
code under test.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any

import psycopg2
import psycopg2.extensions
from twisted.trial.unittest import SkipTest


def postgresDSN() -> str | None:
    """
    The DSN for the test server, C{""} for "use the PG* variables", or
    None when no server is configured.
    """
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    if os.environ.get("PGHOST"):
        return ""
    return None


def requirePostgres(testCase: Any) -> str:
    """
    The test server's DSN; skip the test (or fail it, under
    C{RAPIDA_REQUIRE_PG=1}) when there is none.
    """
    dsn = postgresDSN()
    if dsn is None:
        if os.environ.get("RAPIDA_REQUIRE_PG") == "1":
            testCase.fail("RAPIDA_REQUIRE_PG=1 but neither DATABASE_URL nor PGHOST is set")
        raise SkipTest("PostgreSQL tests need DATABASE_URL or PGHOST (see .ci/with-postgres)")
    return dsn


class Scratch:
    """
    A fresh schema on the test server, and an admin connection to it.
    """

    def __init__(self, dsn: str) -> None:
        self.baseDSN = dsn
        self.schema = "rapida_test_" + uuid.uuid4().hex[:12]
        self.admin = psycopg2.connect(self.dsn(application_name="rapida-test-admin"))
        self.admin.autocommit = True
        self.execute(f"CREATE SCHEMA {self.schema}")

    def dsn(self, **extra: Any) -> str:
        """
        A DSN whose connections use this schema (and any C{extra} settings,
        e.g. C{application_name}).
        """
        return psycopg2.extensions.make_dsn(
            self.baseDSN, options=f"-c search_path={self.schema}", **extra
        )

    def execute(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self.admin.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description is not None else []

    def backends(self, applicationName: str) -> list[int]:
        """
        Server pids of the connections with this application_name.
        """
        return [
            pid
            for (pid,) in self.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s ORDER BY pid",
                (applicationName,),
            )
        ]

    def terminate(self, applicationName: str) -> int:
        """
        Kill the server side of every connection with this
        application_name, as an operator (or a failover) would.
        """
        rows = self.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (applicationName,),
        )
        return len(rows)

    def drop(self) -> None:
        self.execute(f"DROP SCHEMA {self.schema} CASCADE")
        self.admin.close()


def closedPort() -> int:
    """
    A local TCP port nothing listens on (bound, then released).
    """
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
    finally:
        s.close()
