# -*- test-case-name: tests.test_logging -*-
"""
JSON-lines logging for C{twistd --logger=rapida_twisted.logging.observer}.

(C{twist rapida} already writes JSON when its output is not a terminal, or
with C{--log-format=json}.) Every event keeps its named fields (call id,
provider, context id, ...), one JSON object per line.
"""

from __future__ import annotations

import os
import sys
from typing import IO

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    jsonFileLogObserver,
)


def observer(stream: IO[str] | None = None, level: str | None = None) -> ILogObserver:
    """
    A JSON-lines observer on C{stream} (stdout), at C{level} (env
    C{RAPIDA_LOG_LEVEL}, default info).
    """
    name = (level or os.environ.get("RAPIDA_LOG_LEVEL", "info")).lower()
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.levelWithName(name))
    return FilteringLogObserver(
        jsonFileLogObserver(stream if stream is not None else sys.stdout, recordSeparator=""),
        [predicate],
    )
