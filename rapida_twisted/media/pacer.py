# -*- test-case-name: tests.test_media_pacer -*-
"""
A drift-free 20 ms clock for sending audio in real time, on
L{IReactorTime}.

Deadlines are C{anchor + n * interval}, never C{now + interval}, so
lateness of the reactor never accumulates. A few late deadlines are caught
up at once (one C{tick()} each); after a stall longer than C{stallAfter}
the schedule re-anchors to now instead of bursting out everything it
owes, and counts what it skipped.

Two ways to pace many calls:

  - L{Pacer}: one C{callLater} per call per tick.
  - L{PacerGroup}: one shared schedule; each call's L{GroupPacer} is
    ticked in the same timer firing as every other call in that slot,
    which is much cheaper with thousands of calls (see
    C{benchmarks/bench_media.py}).

Both hand out objects with the same small surface (L{PacerLike}: C{start},
C{stop}, C{running}, C{stats}), so a call session can take a
L{PacerFactory} (C{lambda tick: Pacer(clock, tick)} or
C{group.pacer}) and not care which.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger, LogLevel

__all__ = ["GroupPacer", "Pacer", "PacerFactory", "PacerGroup", "PacerLike", "PacerStats"]

_EPSILON = 1e-6
"""Deadlines within this many seconds of now count as due (float slack)."""

Tick = Callable[[], object]


@dataclass(slots=True)
class PacerStats:
    """
    What a pacer has done so far (cumulative over restarts).

    @ivar ticks: C{tick()} calls made.
    @ivar late: ticks made more than C{lateAfter} after their deadline.
    @ivar skipped: deadlines given up (not ticked) at re-anchors.
    @ivar reanchors: stalls after which the schedule restarted at now.
    @ivar maxLateness: the largest lateness of any deadline, seconds.
    """

    ticks: int = 0
    late: int = 0
    skipped: int = 0
    reanchors: int = 0
    maxLateness: float = 0.0


class PacerLike(Protocol):
    """
    The part of a pacer a call session uses.
    """

    @property
    def running(self) -> bool:
        """
        Whether ticks are scheduled.
        """

    @property
    def stats(self) -> PacerStats:
        """
        Counters so far.
        """

    def start(self) -> None:
        """
        Begin ticking (no-op when running).
        """

    def stop(self) -> None:
        """
        Stop ticking (no-op when stopped).
        """


PacerFactory = Callable[[Tick], PacerLike]
"""Makes a pacer for one tick function (e.g. L{PacerGroup.pacer})."""


class Pacer:
    """
    Call C{tick()} once per C{interval}, drift-free, on C{clock}.

    @ivar interval: seconds between deadlines.
    @ivar stallAfter: a deadline missed by more than this re-anchors the
        schedule (default three intervals).
    @ivar lateAfter: a tick more than this after its deadline counts as
        late (default half an interval).
    """

    _log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        tick: Tick,
        interval: float = 0.020,
        stallAfter: float | None = None,
        lateAfter: float | None = None,
    ) -> None:
        """
        @raise ValueError: C{interval} is not positive.
        """
        if not interval > 0:
            raise ValueError(f"interval must be positive, not {interval}")
        self._clock = clock
        self._tick = tick
        self.interval = interval
        self.stallAfter = 3 * interval if stallAfter is None else stallAfter
        self.lateAfter = interval / 2 if lateAfter is None else lateAfter
        self._stats = PacerStats()
        self._call: IDelayedCall | None = None
        self._running = False
        self._anchor = 0.0
        self._count = 0
        self._generation = 0

    @property
    def running(self) -> bool:
        """
        Whether ticks are scheduled.
        """
        return self._running

    @property
    def stats(self) -> PacerStats:
        """
        Counters so far.
        """
        return self._stats

    def start(self, now: bool = True) -> None:
        """
        Anchor the schedule at the current time and start ticking: the
        first tick at once (inside this call) when C{now}, else one
        interval from now. No-op when already running.
        """
        if self._running:
            return
        self._running = True
        self._generation += 1
        self._anchor = self._clock.seconds()
        self._count = 0
        if now:
            self._fire()
        else:
            self._count = 1
            self._call = self._clock.callLater(self.interval, self._fire)

    def stop(self) -> None:
        """
        Stop ticking and cancel the pending timer. Safe to call at any
        time, including from inside C{tick()}, and more than once.
        """
        self._running = False
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()

    def _fire(self) -> None:
        """
        The timer went off: tick once per due deadline (or once and
        re-anchor after a stall), then schedule the next deadline.
        """
        self._call = None
        now = self._clock.seconds()
        interval = self.interval
        first = self._anchor + self._count * interval
        lateness = now - first
        stats = self._stats
        if lateness > stats.maxLateness:
            stats.maxLateness = lateness
        if lateness > self.stallAfter:
            owed = math.floor((lateness + _EPSILON) / interval) + 1
            stats.skipped += owed - 1
            stats.reanchors += 1
            self._reanchored(owed - 1)
            self._anchor = now
            self._count = 1
            latenesses = [lateness]
        elif lateness >= -_EPSILON:
            due = math.floor((lateness + _EPSILON) / interval) + 1
            latenesses = [lateness - i * interval for i in range(due)]
            self._count += due
        else:
            latenesses = []
        self._call = self._clock.callLater(
            max(0.0, self._anchor + self._count * interval - now), self._fire
        )
        generation = self._generation
        for late in latenesses:
            if not self._running or self._generation != generation:
                break
            self._runTick(late)

    def _reanchored(self, skipped: int) -> None:
        """
        Hook: the schedule re-anchored, giving up C{skipped} deadlines.
        """

    def _runTick(self, lateness: float) -> None:
        """
        Make one tick, C{lateness} seconds after its deadline. A tick that
        raises is logged and the schedule goes on.
        """
        stats = self._stats
        stats.ticks += 1
        if lateness > self.lateAfter:
            stats.late += 1
        try:
            self._tick()
        except Exception:
            self._log.failure("Pacer tick failed", level=LogLevel.error)


class GroupPacer:
    """
    One call's membership of a L{PacerGroup}: the L{PacerLike} surface, ticked
    in the group's shared timer firings.

    Its first tick comes at the group's next slot (at once when the group
    was idle), so starting costs at most one interval of latency.
    """

    def __init__(self, group: PacerGroup, tick: Tick) -> None:
        self._group = group
        self._tick = tick
        self._stats = PacerStats()
        self._running = False

    @property
    def running(self) -> bool:
        """
        Whether this member is in the group's schedule.
        """
        return self._running

    @property
    def stats(self) -> PacerStats:
        """
        This member's counters (only slots while it was a member).
        """
        return self._stats

    def start(self) -> None:
        """
        Join the group's schedule (no-op when running).
        """
        if not self._running:
            self._running = True
            self._group._join(self)

    def stop(self) -> None:
        """
        Leave the group's schedule (no-op when stopped); safe inside a tick.
        """
        if self._running:
            self._running = False
            self._group._leave(self)


class _GroupSchedule(Pacer):
    """
    The group's own drift-free schedule, fanning each tick out to members.
    """

    def __init__(
        self,
        group: PacerGroup,
        clock: IReactorTime,
        interval: float,
        stallAfter: float | None,
        lateAfter: float | None,
    ) -> None:
        super().__init__(clock, _noTick, interval, stallAfter, lateAfter)
        self._group = group

    def _reanchored(self, skipped: int) -> None:
        for member in self._group._snapshot():
            member._stats.skipped += skipped
            member._stats.reanchors += 1

    def _runTick(self, lateness: float) -> None:
        stats = self._stats
        stats.ticks += 1
        late = lateness > self.lateAfter
        if late:
            stats.late += 1
        log = self._log
        generation = self._generation
        for member in self._group._snapshot():
            if self._generation != generation:
                break  # the group emptied and restarted inside a tick
            if not member._running:
                continue
            memberStats = member._stats
            memberStats.ticks += 1
            if late:
                memberStats.late += 1
            if lateness > memberStats.maxLateness:
                memberStats.maxLateness = lateness
            try:
                member._tick()
            except Exception:
                log.failure("Pacer tick failed", level=LogLevel.error)


def _noTick() -> None:
    """
    Placeholder tick of a group schedule (members are ticked instead).
    """


class PacerGroup:
    """
    A shared drift-free schedule: every member is ticked in the same timer
    firing, so N calls cost one C{callLater} per slot instead of N.

    The group's timer runs only while it has members.

    @ivar stats: the shared schedule's own counters.
    """

    def __init__(
        self,
        clock: IReactorTime,
        interval: float = 0.020,
        stallAfter: float | None = None,
        lateAfter: float | None = None,
    ) -> None:
        """
        @raise ValueError: C{interval} is not positive.
        """
        self._members: dict[GroupPacer, None] = {}
        self._frozen: tuple[GroupPacer, ...] | None = ()
        self._schedule = _GroupSchedule(self, clock, interval, stallAfter, lateAfter)
        self.stats = self._schedule.stats

    @property
    def members(self) -> int:
        """
        How many pacers are running in this group.
        """
        return len(self._members)

    @property
    def running(self) -> bool:
        """
        Whether the shared timer is scheduled.
        """
        return self._schedule.running

    def pacer(self, tick: Tick) -> GroupPacer:
        """
        A new (stopped) member that calls C{tick} on the group's slots.
        """
        return GroupPacer(self, tick)

    def _snapshot(self) -> tuple[GroupPacer, ...]:
        """
        The members as of now, stable while ticks add or remove members.
        """
        if self._frozen is None:
            self._frozen = tuple(self._members)
        return self._frozen

    def _join(self, member: GroupPacer) -> None:
        self._members[member] = None
        self._frozen = None
        if not self._schedule.running:
            self._schedule.start()

    def _leave(self, member: GroupPacer) -> None:
        self._members.pop(member, None)
        self._frozen = None
        if not self._members:
            self._schedule.stop()
