"""
Tests for L{rapida_twisted.media.pacer}, driven by L{task.Clock} only.
"""

from __future__ import annotations

import numpy as np
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from rapida_twisted.media.pacer import Pacer, PacerFactory, PacerGroup, PacerLike

EPS = 1e-6


class Recorder:
    """
    A tick function remembering when it was called.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.times: list[float] = []

    def __call__(self) -> None:
        self.times.append(self.clock.seconds())


class PacerTests(SynchronousTestCase):
    """
    L{Pacer}: one drift-free schedule.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.ticks = Recorder(self.clock)
        self.pacer = Pacer(self.clock, self.ticks)

    def test_startTicksAtOnce(self) -> None:
        self.pacer.start()
        self.assertEqual(self.ticks.times, [0.0])
        self.clock.advance(0.019)
        self.assertEqual(len(self.ticks.times), 1)
        self.clock.advance(0.001)
        self.assertEqual(len(self.ticks.times), 2)
        self.assertTrue(self.pacer.running)

    def test_startLater(self) -> None:
        self.pacer.start(now=False)
        self.assertEqual(self.ticks.times, [])
        self.clock.advance(0.02)
        self.assertEqual(len(self.ticks.times), 1)

    def test_driftFree(self) -> None:
        """
        Over 10,000 ticks with jittery, often late timer firings, tick
        C{n} comes at or after C{n * interval} but never more than the
        largest jitter after it: the lateness never accumulates.
        """
        rng = np.random.default_rng(7)
        self.pacer.start()
        steps = rng.uniform(0.0005, 0.03, 16000)
        for step in steps:
            self.clock.advance(float(step))
            if len(self.ticks.times) >= 10000:
                break
        times = np.array(self.ticks.times[:10000])
        deadlines = np.arange(len(times)) * 0.020
        self.assertGreaterEqual(float(np.min(times - deadlines)), -EPS)
        self.assertLess(float(np.max(times - deadlines)), 0.03 + EPS)
        self.assertEqual(len(self.ticks.times), int(self.clock.seconds() / 0.020 + EPS) + 1)
        stats = self.pacer.stats
        self.assertEqual((stats.reanchors, stats.skipped), (0, 0))
        self.assertEqual(stats.ticks, len(self.ticks.times))
        self.assertGreater(stats.late, 0)
        self.assertLess(stats.maxLateness, 0.03 + EPS)

    def test_catchUp(self) -> None:
        """
        A timer firing less than C{stallAfter} late makes up the due ticks
        at once, counts them late, and keeps the schedule.
        """
        self.pacer.start()
        self.clock.advance(0.055)
        self.assertEqual(self.ticks.times, [0.0, 0.055, 0.055])
        self.assertEqual(self.pacer.stats.late, 2)
        self.clock.advance(0.005)
        self.assertEqual(len(self.ticks.times), 4)
        self.assertEqual(self.pacer.stats.reanchors, 0)

    def test_stallReanchors(self) -> None:
        """
        After a stall the pacer ticks once, not once per missed deadline,
        and restarts its schedule from now.
        """
        self.pacer.start()
        self.clock.advance(0.5)
        self.assertEqual(self.ticks.times, [0.0, 0.5])
        stats = self.pacer.stats
        self.assertEqual((stats.reanchors, stats.skipped, stats.late), (1, 24, 1))
        self.assertAlmostEqual(stats.maxLateness, 0.48)
        self.clock.advance(0.019)
        self.assertEqual(len(self.ticks.times), 2)
        self.clock.advance(0.001)
        self.assertEqual(self.ticks.times[-1], 0.52)
        self.clock.advance(0.02)
        self.assertEqual(len(self.ticks.times), 4)

    def test_stopCancels(self) -> None:
        """
        C{stop} leaves no delayed call; it is idempotent, and harmless
        before C{start}.
        """
        self.pacer.stop()
        self.pacer.start()
        self.pacer.start()
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.pacer.stop()
        self.pacer.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertFalse(self.pacer.running)
        self.clock.advance(1)
        self.assertEqual(self.ticks.times, [0.0])

    def test_restartReanchors(self) -> None:
        self.pacer.start()
        self.pacer.stop()
        self.clock.advance(0.013)
        self.pacer.start()
        self.clock.advance(0.02)
        self.assertEqual(self.ticks.times, [0.0, 0.013, 0.033])

    def test_stopInsideTick(self) -> None:
        """
        A tick may stop its pacer, even during a catch-up.
        """

        def tick() -> None:
            self.ticks()
            if len(self.ticks.times) == 2:
                pacer.stop()

        pacer = Pacer(self.clock, tick)
        pacer.start()
        self.clock.advance(0.045)
        self.assertEqual(len(self.ticks.times), 2)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_restartInsideTick(self) -> None:
        """
        Stopping and starting inside a tick gives a fresh schedule, not
        the rest of the old catch-up as well.
        """

        def tick() -> None:
            self.ticks()
            if len(self.ticks.times) == 2:
                pacer.stop()
                pacer.start()

        pacer = Pacer(self.clock, tick)
        pacer.start()
        self.clock.advance(0.045)
        self.assertEqual(self.ticks.times, [0.0, 0.045, 0.045])
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(0.02)
        self.assertEqual(self.ticks.times[-1], 0.065)

    def test_tickErrorLogged(self) -> None:
        """
        A failing tick is logged and the schedule goes on.
        """
        calls = []

        def tick() -> None:
            calls.append(1)
            raise ZeroDivisionError()

        pacer = Pacer(self.clock, tick)
        pacer.start()
        self.clock.advance(0.02)
        self.assertEqual(len(calls), 2)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 2)
        pacer.stop()

    def test_badInterval(self) -> None:
        self.assertRaises(ValueError, Pacer, self.clock, self.ticks, 0)

    def test_customThresholds(self) -> None:
        pacer = Pacer(self.clock, self.ticks, interval=0.01, stallAfter=0.1, lateAfter=0.001)
        pacer.start()
        self.clock.advance(0.095)
        self.assertEqual(len(self.ticks.times), 10)
        self.assertEqual(pacer.stats.reanchors, 0)
        self.assertEqual(pacer.stats.late, 9)
        pacer.stop()


class PacerGroupTests(SynchronousTestCase):
    """
    L{PacerGroup}: one shared schedule for many members.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.group = PacerGroup(self.clock)

    def test_oneTimerForAll(self) -> None:
        """
        A hundred members share one delayed call, and each is ticked once
        per slot.
        """
        recorders = [Recorder(self.clock) for _ in range(100)]
        members = [self.group.pacer(r) for r in recorders]
        for m in members:
            m.start()
        self.assertEqual(self.group.members, 100)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.pump([0.02] * 5)
        self.assertEqual(recorders[0].times, [0.0, 0.02, 0.04, 0.06, 0.08, 0.1])
        self.assertEqual(recorders[99].times, [0.02, 0.04, 0.06, 0.08, 0.1])
        self.assertEqual(members[99].stats.ticks, 5)
        self.assertEqual(self.group.stats.ticks, 6)

    def test_joinAtNextSlot(self) -> None:
        first, second = Recorder(self.clock), Recorder(self.clock)
        self.group.pacer(first).start()
        self.clock.advance(0.007)
        self.group.pacer(second).start()
        self.assertEqual(second.times, [])
        self.clock.advance(0.013)
        self.assertEqual(second.times, [0.02])

    def test_lastLeaveStopsTimer(self) -> None:
        """
        The shared timer runs only while there are members, and stopping
        a member is idempotent.
        """
        a = self.group.pacer(Recorder(self.clock))
        b = self.group.pacer(Recorder(self.clock))
        a.start()
        b.start()
        a.stop()
        a.stop()
        self.assertTrue(self.group.running)
        b.stop()
        self.assertFalse(self.group.running)
        self.assertEqual(self.group.members, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        a.start()
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        a.stop()

    def test_stopOtherMemberInsideTick(self) -> None:
        """
        A member stopped by an earlier member's tick in the same slot is
        not ticked; a member started in a tick waits for the next slot.
        """
        late = Recorder(self.clock)
        fresh = Recorder(self.clock)
        lateMember = self.group.pacer(late)
        freshMember = self.group.pacer(fresh)

        def tick() -> None:
            if self.clock.seconds() == 0.02:
                lateMember.stop()
                freshMember.start()

        self.group.pacer(tick).start()
        lateMember.start()
        self.clock.advance(0.02)
        self.assertEqual(late.times, [])
        self.assertEqual(fresh.times, [])
        self.clock.advance(0.02)
        self.assertEqual(fresh.times, [0.04])

    def test_emptyAndRejoinInsideTick(self) -> None:
        """
        If a tick empties the group and rejoins, the group restarts at
        once (ticking the first to rejoin) and nobody is ticked twice in
        the slot.
        """
        others = [Recorder(self.clock) for _ in range(3)]
        othersMembers = [self.group.pacer(r) for r in others]

        def tick() -> None:
            if self.clock.seconds() == 0.02:
                for m in [*othersMembers, me]:
                    m.stop()
                for m in [*othersMembers, me]:
                    m.start()

        me = self.group.pacer(tick)
        me.start()
        for m in othersMembers:
            m.start()
        self.clock.advance(0.02)
        self.assertEqual([r.times for r in others], [[0.02], [], []])
        self.clock.advance(0.02)
        self.assertEqual([r.times for r in others], [[0.02, 0.04], [0.04], [0.04]])
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)

    def test_memberErrorIsolated(self) -> None:
        ok = Recorder(self.clock)

        def bad() -> None:
            raise ZeroDivisionError()

        self.group.pacer(bad).start()
        member = self.group.pacer(ok)
        member.start()
        self.clock.advance(0.02)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 2)
        self.assertEqual(ok.times, [0.02])

    def test_stallReanchorsMembers(self) -> None:
        r = Recorder(self.clock)
        member = self.group.pacer(r)
        member.start()
        self.clock.advance(0.3)
        self.assertEqual(r.times, [0.0, 0.3])
        self.assertEqual((member.stats.reanchors, member.stats.skipped), (1, 14))
        self.assertEqual(member.stats.late, 1)
        self.assertAlmostEqual(member.stats.maxLateness, 0.28)
        self.assertEqual(self.group.stats.reanchors, 1)

    def test_driftFree(self) -> None:
        rng = np.random.default_rng(3)
        r = Recorder(self.clock)
        self.group.pacer(r).start()
        for step in rng.uniform(0.001, 0.03, 3000):
            self.clock.advance(float(step))
        times = np.array(r.times)
        lateness = times - np.arange(len(times)) * 0.02
        self.assertGreaterEqual(float(lateness.min()), -EPS)
        self.assertLess(float(lateness.max()), 0.03 + EPS)

    def test_factoriesInterchangeable(self) -> None:
        """
        Both kinds of pacer come from a L{PacerFactory} and satisfy
        L{PacerLike}.
        """
        factories: list[PacerFactory] = [
            lambda tick: Pacer(self.clock, tick),
            self.group.pacer,
        ]
        for factory in factories:
            r = Recorder(self.clock)
            pacer: PacerLike = factory(r)
            self.assertFalse(pacer.running)
            pacer.start()
            self.assertTrue(pacer.running)
            self.assertEqual(pacer.stats.ticks, 1)
            pacer.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
