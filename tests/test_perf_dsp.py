"""
Correctness of the media fast paths (not their speed): the resampler's
steady-state plans and its fused G.711 decode and encode, the G.711
tables they use, and L{AudioFormat.toCanonical} / L{AudioFormat.fromCanonical}.
Each must give exactly what the plain path gives.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from rapida_twisted.call import AudioFormat
from rapida_twisted.media import resample
from rapida_twisted.media.g711 import ALAW, ULAW, G711Law
from rapida_twisted.media.resample import Resampler

RATES = resample.SUPPORTED_RATES
PAIRS = list(itertools.permutations(RATES, 2))
LAWS = (ULAW, ALAW)


def _loud(n: int, seed: int) -> npt.NDArray[np.int16]:
    """
    Noise that often hits full scale (so that clipping is exercised).
    """
    rng = np.random.default_rng(seed)
    return np.clip(np.rint(rng.standard_normal(n) * 25000), -32768, 32767).astype(np.int16)


def _chunks(x: npt.NDArray[Any], sizes: list[int]) -> list[npt.NDArray[Any]]:
    out = []
    i = 0
    for size in itertools.cycle(sizes):
        if i >= len(x):
            break
        out.append(x[i : i + size])
        i += size
    return out


class TablesTests(SynchronousTestCase):
    """
    The float decode table and the offset-indexed encode table.
    """

    def test_floatDecode(self) -> None:
        codes = np.arange(256, dtype=np.uint8)
        for law in LAWS:
            table = law.floatDecodeTable
            self.assertEqual(table.dtype, np.float32)
            np.testing.assert_array_equal(table.take(codes), law.decodeArray(codes))
            self.assertFalse(table.flags.writeable)

    def test_offsetEncode(self) -> None:
        """
        Index C{sample + 32768} encodes C{sample}, for every sample.
        """
        samples = np.arange(-32768, 32768, dtype=np.int32)
        for law in LAWS:
            table = law.offsetEncodeTable
            self.assertEqual(len(table), 65536)
            np.testing.assert_array_equal(
                table.take(samples + 32768), law.encodeArray(samples.astype(np.int16))
            )
            self.assertFalse(table.flags.writeable)


class ResamplerFastPathTests(SynchronousTestCase):
    """
    Plans, fused decode and fused encode against the plain path.
    """

    def test_plansMatchGeneralPath(self) -> None:
        """
        20 ms chunks served by plans give exactly what the general path
        gives for the same chunks.
        """
        for inRate, outRate in PAIRS:
            x = _loud(inRate // 50 * 20, seed=inRate + outRate)
            plan = Resampler(inRate, outRate)
            general = Resampler(inRate, outRate)
            general._plan = lambda size: None  # type: ignore[method-assign]
            for chunk in _chunks(x, [inRate // 50]):
                np.testing.assert_array_equal(
                    plan.processArray(chunk), general.processArray(chunk), str((inRate, outRate))
                )
            self.assertTrue(plan._plans, "no plan was used")

    def test_mixedChunking(self) -> None:
        """
        Plans and the general path alternate (odd chunks leave input
        over): the stream stays within one LSB of one whole conversion
        (float sums in another order may round the other way).
        """
        for inRate, outRate in PAIRS:
            x = _loud(inRate // 50 * 20, seed=inRate * outRate)
            whole = Resampler(inRate, outRate).processArray(x).astype(np.int32)
            r = Resampler(inRate, outRate)
            size = inRate // 50
            out = np.concatenate(
                [r.processArray(c) for c in _chunks(x, [size, 1, size, size - 1, size])]
            ).astype(np.int32)
            n = min(len(out), len(whole))
            self.assertGreater(n, len(whole) - 3)
            self.assertLessEqual(int(np.abs(out[:n] - whole[:n]).max()), 1)

    def test_resultsAreNewArrays(self) -> None:
        """
        A plan's output buffer is reused: what the caller got earlier is
        never overwritten by a later chunk.
        """
        for law in LAWS:
            r = Resampler(8000, 16000)
            x = _loud(160, seed=1)
            codes = law.encodeArray(x)
            first = r.processArray(x)
            kept = first.copy()
            second = r.decodeArray(codes, law.floatDecodeTable)
            r.processArray(_loud(160, seed=2))
            np.testing.assert_array_equal(first, kept)
            self.assertFalse(np.shares_memory(first, second))
            down = Resampler(16000, 8000)
            a = down.encodeArray(_loud(320, seed=3), law.offsetEncodeTable)
            keptCodes = a.copy()
            down.encodeArray(_loud(320, seed=4), law.offsetEncodeTable)
            np.testing.assert_array_equal(a, keptCodes)

    @settings(max_examples=30, deadline=None)
    @given(
        pair=st.sampled_from(PAIRS),
        sizes=st.lists(st.sampled_from([0, 1, 2, 3, 80, 160, 240, 320, 480, 999]), min_size=1),
        law=st.sampled_from(LAWS),
        seed=st.integers(0, 1000),
    )
    def test_fusedDecode(
        self, pair: tuple[int, int], sizes: list[int], law: G711Law, seed: int
    ) -> None:
        """
        Decoding on the way in is bit-identical to decoding first, in any
        chunking (plans and the general path mixed).
        """
        if not any(sizes):
            sizes = [160]
        codes = law.encodeArray(_loud(3000, seed))
        fused, plain = Resampler(*pair), Resampler(*pair)
        for chunk in _chunks(codes, sizes):
            np.testing.assert_array_equal(
                fused.decodeArray(chunk, law.floatDecodeTable),
                plain.processArray(law.decodeArray(chunk)),
            )

    @settings(max_examples=30, deadline=None)
    @given(
        pair=st.sampled_from(PAIRS),
        sizes=st.lists(st.sampled_from([0, 1, 2, 3, 80, 160, 240, 320, 480, 999]), min_size=1),
        law=st.sampled_from(LAWS),
        seed=st.integers(0, 1000),
    )
    def test_fusedEncode(
        self, pair: tuple[int, int], sizes: list[int], law: G711Law, seed: int
    ) -> None:
        """
        Encoding on the way out (clipping by the table) is bit-identical
        to clipping to int16 and encoding afterwards.
        """
        if not any(sizes):
            sizes = [160]
        x = _loud(3000, seed)
        fused, plain = Resampler(*pair), Resampler(*pair)
        for chunk in _chunks(x, sizes):
            np.testing.assert_array_equal(
                fused.encodeArray(chunk, law.offsetEncodeTable),
                law.encodeArray(plain.processArray(chunk)),
            )

    def test_clipping(self) -> None:
        """
        A full-scale square wave overshoots after filtering: every path
        clips it the same way.
        """
        square = np.tile(np.repeat(np.array([32767, -32768], np.int16), 7), 160)
        for inRate, outRate in PAIRS:
            for law in LAWS:
                a, b = Resampler(inRate, outRate), Resampler(inRate, outRate)
                size = inRate // 50
                for chunk in _chunks(square, [size]):
                    pcm = b.processArray(chunk)
                    np.testing.assert_array_equal(
                        a.encodeArray(chunk, law.offsetEncodeTable), law.encodeArray(pcm)
                    )
                self.assertEqual(int(pcm.max()), 32767)

    def test_resetKeepsPlans(self) -> None:
        """
        After a reset the plans serve a fresh stream exactly as a new
        resampler would.
        """
        x = _loud(1600, seed=9)
        r = Resampler(8000, 16000)
        for chunk in _chunks(x, [160]):
            r.processArray(chunk)
        r.reset()
        fresh = Resampler(8000, 16000)
        for chunk in _chunks(x, [160]):
            np.testing.assert_array_equal(r.processArray(chunk), fresh.processArray(chunk))

    def test_plansBounded(self) -> None:
        r = Resampler(16000, 8000)
        for size in range(2, 200, 2):
            r.processArray(_loud(size, seed=size))
        self.assertLessEqual(len(r._plans), resample._MAX_PLANS)

    def test_passThrough(self) -> None:
        r = Resampler(8000, 8000)
        self.assertTrue(r.passthrough)
        x = _loud(160, seed=4)
        for law in LAWS:
            codes = law.encodeArray(x)
            np.testing.assert_array_equal(
                r.decodeArray(codes, law.floatDecodeTable), law.decodeArray(codes)
            )
            np.testing.assert_array_equal(
                r.encodeArray(x, law.offsetEncodeTable), law.encodeArray(x)
            )
        self.assertFalse(Resampler(8000, 16000).passthrough)


class AudioFormatConversionTests(SynchronousTestCase):
    """
    L{AudioFormat.toCanonical} and L{AudioFormat.fromCanonical} against
    decoding, resampling and encoding one after the other.
    """

    def test_everyCodecAndRate(self) -> None:
        for codec, wireRate, rate in itertools.product(("ulaw", "alaw", "l16"), RATES, RATES):
            wire = AudioFormat(codec, wireRate)
            inFused, inPlain = Resampler(wireRate, rate), Resampler(wireRate, rate)
            outFused, outPlain = Resampler(rate, wireRate), Resampler(rate, wireRate)
            x = _loud(wireRate // 50 * 5, seed=wireRate + rate)
            data = wire.encodeArray(x)
            for i in range(0, len(data), wire.frameBytes):
                frame = data[i : i + wire.frameBytes]
                canonical = wire.toCanonical(frame, inFused)
                expected = inPlain.processArray(wire.decodeArray(frame)).tobytes()
                self.assertEqual(canonical, expected, (codec, wireRate, rate))
                back = wire.fromCanonical(canonical, outFused)
                samples = np.frombuffer(canonical, np.int16)
                self.assertEqual(
                    back,
                    wire.encodeArray(outPlain.processArray(samples)),
                    (codec, wireRate, rate),
                )
                self.assertIsInstance(back, bytes)
                self.assertIsInstance(canonical, bytes)
