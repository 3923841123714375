# -*- test-case-name: tests.test_sim -*-
"""
One shared 20 ms clock for every simulated call.

Five hundred calls must not cost five hundred timers, nor send all their
frames in the same instant (the gateway would see a burst every 20 ms,
which real providers never produce): the L{Ticker} runs one drift-free
schedule (L{rapida_twisted.media.Pacer}) at C{interval / slots} and ticks
one slot of calls at each firing, so calls are spread evenly over the
20 ms. Each call keeps its own drift-free frame schedule from the time of
its first tick (see L{FrameClock}), so a late firing never loses a frame:
the call sends what it owes.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IReactorTime

from ..media import Pacer, PacerStats
from ._audio import FRAME_SECONDS

__all__ = ["FrameClock", "Ticker"]

Tick = Callable[[float], object]


class Ticker:
    """
    Calls C{tick(now)} of every member once per C{interval}, members spread
    over C{slots} evenly spaced phases; the timer runs only while there
    are members.

    @ivar stats: the shared schedule's counters (late firings mean the
        simulator itself is overloaded).
    """

    def __init__(self, clock: IReactorTime, interval: float = FRAME_SECONDS, slots: int = 10):
        """
        @raise ValueError: C{slots} below 1 or C{interval} not positive.
        """
        if slots < 1:
            raise ValueError("slots must be at least 1")
        self._clock = clock
        self._slots: list[dict[int, Tick]] = [{} for _ in range(slots)]
        self._frozen: list[tuple[Tick, ...] | None] = [() for _ in range(slots)]
        self._where: dict[int, int] = {}
        self._next = 0
        self._members = 0
        self._pacer = Pacer(
            clock, self._fire, interval / slots, stallAfter=1.0, lateAfter=interval / 2
        )
        self.stats: PacerStats = self._pacer.stats

    @property
    def members(self) -> int:
        """
        How many ticks are registered.
        """
        return self._members

    def add(self, tick: Tick) -> int:
        """
        Register C{tick} in the least-used slot.

        @return: a handle for L{remove}.
        """
        index = min(range(len(self._slots)), key=lambda i: len(self._slots[i]))
        handle = self._next
        self._next += 1
        self._slots[index][handle] = tick
        self._frozen[index] = None
        self._where[handle] = index
        self._members += 1
        if not self._pacer.running:
            self._slot = 0
            self._pacer.start(now=False)
        return handle

    def remove(self, handle: int) -> None:
        """
        Unregister a tick (no-op if unknown); safe inside a tick.
        """
        index = self._where.pop(handle, None)
        if index is None:
            return
        del self._slots[index][handle]
        self._frozen[index] = None
        self._members -= 1
        if not self._members:
            self._pacer.stop()

    def _fire(self) -> None:
        index = self._slot
        self._slot = (index + 1) % len(self._slots)
        ticks = self._frozen[index]
        if ticks is None:
            ticks = self._frozen[index] = tuple(self._slots[index].values())
        if ticks:
            now = self._clock.seconds()
            for tick in ticks:
                tick(now)


class FrameClock:
    """
    One call's frame schedule: frame C{n} is due at C{origin + n * 20 ms},
    the origin being the call's first tick.

    @ivar sent: frames accounted for so far.
    @ivar skipped: frames given up after a stall longer than C{maxBurst}.
    """

    def __init__(self, maxBurst: int = 50) -> None:
        self.origin: float | None = None
        self.sent = 0
        self.skipped = 0
        self.maxBurst = maxBurst

    def owed(self, now: float) -> int:
        """
        How many frames to send now (normally 1); after a stall of more
        than C{maxBurst} frames the schedule skips ahead and counts the
        frames skipped instead of bursting them.
        """
        if self.origin is None:
            self.origin = now
        due = int((now - self.origin) / FRAME_SECONDS + 1e-6) + 1
        owed = due - self.sent
        if owed > self.maxBurst:
            self.skipped += owed - 1
            self.sent = due - 1
            owed = 1
        return max(0, owed)

    def take(self) -> int:
        """
        Account for one frame sent; returns its index.
        """
        index = self.sent
        self.sent += 1
        return index
