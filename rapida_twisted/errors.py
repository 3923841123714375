"""
What every pure wire codec shares: one error shape and the DTMF symbols.
"""

from __future__ import annotations

from typing import Final

#: The DTMF symbols a telephone keypad can send (RFC 4733 events 0-15).
DTMF_DIGITS: Final = frozenset("0123456789*#ABCD")


class WireError(ValueError):
    """
    Bytes or text a codec cannot decode, or a message it must not build.

    @ivar code: a short machine-readable code (each codec lists its own).
    @ivar reason: a human-readable explanation.
    """

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.code}: {self.reason}"
