"""
Tests for L{rapida_twisted.media.resample}: streaming polyphase resampling.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from rapida_twisted.media import errors, resample
from rapida_twisted.media.analysis import tone
from rapida_twisted.media.resample import Resampler, polyphase

PAIRS = [(a, b) for a, b in itertools.permutations(resample.SUPPORTED_RATES, 2)]


def _noise(n: int, seed: int = 1, amplitude: float = 6000.0) -> npt.NDArray[np.int16]:
    rng = np.random.default_rng(seed)
    return np.rint(rng.standard_normal(n) * amplitude).clip(-32768, 32767).astype(np.int16)


def _reference(x: npt.NDArray[np.int16], inRate: int, outRate: int) -> npt.NDArray[np.float64]:
    """
    Direct float64 rate conversion with the same prototype filter: stuff
    zeros, convolve from silence, keep every C{down}-th sample.
    """
    poly = polyphase(inRate, outRate)
    nyquist = min(inRate, outRate) / 2
    h = resample.kaiserLowpass(
        inRate * poly.up, resample.PASSBAND * nyquist, nyquist, resample.STOPBAND_DB, poly.down
    )
    u = np.zeros(len(x) * poly.up)
    u[:: poly.up] = x
    return (np.convolve(u, h * poly.up)[: len(u)])[:: poly.down]


def _stream(r: Resampler, x: npt.NDArray[np.int16], sizes: list[int]) -> list[bytes]:
    """
    Feed C{x} as bytes in chunks of the given sizes (cycled), return the
    output chunks.
    """
    out = []
    i = 0
    for size in itertools.cycle(sizes):
        if i >= len(x):
            break
        out.append(r.process(x[i : i + size].tobytes()))
        i += size
    return out


def _samples(chunks: list[bytes]) -> npt.NDArray[np.float64]:
    return np.frombuffer(b"".join(chunks), "<i2").astype(np.float64)


def _fitTone(y: npt.NDArray[np.float64], rate: int, freq: float) -> tuple[float, float]:
    """
    Least-squares fit of a sinusoid at C{freq}; returns its amplitude and
    the RMS of everything else (images, aliases, noise).
    """
    n = np.arange(len(y))
    basis = np.stack(
        [np.sin(2 * np.pi * freq * n / rate), np.cos(2 * np.pi * freq * n / rate), np.ones(len(y))],
        axis=1,
    )
    coef, *_ = np.linalg.lstsq(basis, y, rcond=None)
    residual = y - basis @ coef
    return float(math.hypot(coef[0], coef[1])), float(np.sqrt(np.mean(residual**2)))


def _db(ratio: float) -> float:
    return 20 * math.log10(max(ratio, 1e-12))


class StreamingTests(SynchronousTestCase):
    """
    Output is right, whatever the chunking, and comes out as it goes in.
    """

    def test_matchesReference(self) -> None:
        """
        Streamed in irregular chunks, every direction matches a direct
        float64 conversion to within one LSB.
        """
        x = _noise(4000)
        for inRate, outRate in PAIRS:
            y = _samples(_stream(Resampler(inRate, outRate), x, [1, 0, 7, 160, 333, 2, 999]))
            ref = _reference(x, inRate, outRate)
            self.assertLessEqual(
                abs(len(y) - len(x) * outRate / inRate), polyphase(inRate, outRate).up
            )
            self.assertLessEqual(float(np.max(np.abs(y - ref[: len(y)]))), 1.0, (inRate, outRate))

    def test_twentyMillisecondChunks(self) -> None:
        """
        Every 20 ms chunk yields exactly 20 ms, from the very first one.
        """
        for inRate, outRate in PAIRS:
            r = Resampler(inRate, outRate)
            x = _noise(inRate // 50 * 25)
            lengths = {len(c) for c in _stream(r, x, [inRate // 50])}
            self.assertEqual(lengths, {outRate // 50 * 2}, (inRate, outRate))

    def test_neverBursts(self) -> None:
        """
        With arbitrary chunk sizes, output so far never differs from input
        so far times the ratio by more than one output period.
        """
        sizes = [1, 2, 3, 5, 77, 160, 161, 480, 13]
        for inRate, outRate in PAIRS:
            r = Resampler(inRate, outRate)
            up = polyphase(inRate, outRate).up
            fedIn = fedOut = 0
            for size in sizes * 3:
                fedOut += len(r.process(bytes(2 * size))) // 2
                fedIn += size
                self.assertLessEqual(abs(fedOut - fedIn * outRate / inRate), up)

    @settings(max_examples=25, deadline=None)
    @given(
        st.sampled_from(PAIRS),
        st.lists(st.integers(min_value=0, max_value=600), min_size=1, max_size=12),
    )
    def test_chunkingInvariant(self, pair: tuple[int, int], sizes: list[int]) -> None:
        """
        The output does not depend on how the input was chunked.
        """
        x = _noise(sum(sizes) + 50, seed=3)
        whole = _samples([Resampler(*pair).process(x.tobytes())])
        chunked = _samples(_stream(Resampler(*pair), x, [*sizes, 50]))
        np.testing.assert_array_equal(chunked, whole)

    def test_largeChunk(self) -> None:
        """
        A chunk longer than one internal piece gives the same result as
        20 ms chunks.
        """
        x = _noise(24000 * 2, seed=4)
        whole = _samples([Resampler(24000, 8000).process(x.tobytes())])
        chunked = _samples(_stream(Resampler(24000, 8000), x, [480]))
        np.testing.assert_array_equal(whole, chunked)

    def test_arrayVariant(self) -> None:
        x = _noise(960)
        r1, r2 = Resampler(24000, 16000), Resampler(24000, 16000)
        out = r1.processArray(x)
        self.assertEqual(out.dtype, np.dtype("<i2"))
        self.assertEqual(out.tobytes(), r2.process(x.tobytes()))

    def test_empty(self) -> None:
        self.assertEqual(Resampler(8000, 16000).process(b""), b"")

    def test_clipsInsteadOfWrapping(self) -> None:
        """
        A full-scale square wave overshoots the filter and is clipped, not
        wrapped round to the other sign.
        """
        square = np.tile(np.repeat(np.array([32767, -32768], np.int16), 40), 20)
        y = Resampler(8000, 16000).processArray(square)[200:]
        self.assertEqual(int(y.max()), 32767)
        self.assertEqual(int(y.min()), -32768)
        reference = _reference(square, 8000, 16000)[200 : 200 + len(y)]
        strong = np.abs(reference) > 20000
        np.testing.assert_array_equal(np.sign(y[strong]), np.sign(reference[strong]))


class QualityTests(SynchronousTestCase):
    """
    Anti-aliasing, anti-imaging, passband flatness and delay.
    """

    def _toneThrough(self, inRate: int, outRate: int, freq: float) -> npt.NDArray[np.float64]:
        """
        A 0.5 s tone at half scale through 20 ms chunks; the first 40 ms
        of output (run-in from silence) dropped.
        """
        x = np.frombuffer(tone(freq, 0.5, inRate), np.int16)
        y = _samples(_stream(Resampler(inRate, outRate), x, [inRate // 50]))
        return y[outRate // 25 :]

    def _assertRejected(self, inRate: int, outRate: int, freq: float, floor: float) -> None:
        level = np.sqrt(np.mean(self._toneThrough(inRate, outRate, freq) ** 2))
        ratio = level / (0.5 * 32767 / math.sqrt(2))
        self.assertLess(_db(ratio), -floor, (inRate, outRate, freq))

    def test_sixKilohertz16to8(self) -> None:
        """
        A 6 kHz tone taken 16 k→8 k is at least 50 dB down (60 in fact).
        """
        self._assertRejected(16000, 8000, 6000, 60)

    def test_aliasing24to8(self) -> None:
        for freq in (4300, 5000, 6000, 9000, 11500):
            self._assertRejected(24000, 8000, freq, 55)

    def test_aliasing24to16(self) -> None:
        for freq in (8600, 9000, 10000, 11500):
            self._assertRejected(24000, 16000, freq, 55)

    def test_aliasingBelowStopEdgeOnlyPartial(self) -> None:
        """
        The filter is real: just below the new Nyquist frequency a tone is
        attenuated but not removed, so the tests above measure the filter.
        """
        level = np.sqrt(np.mean(self._toneThrough(16000, 8000, 3800) ** 2))
        self.assertGreater(level, 10.0)

    def test_imaging(self) -> None:
        """
        Upsampling leaves no images: everything but the tone itself is at
        least 55 dB below it.
        """
        for inRate, outRate, freq in [
            (8000, 16000, 3000),
            (8000, 24000, 3000),
            (16000, 24000, 6000),
            (8000, 16000, 500),
        ]:
            amplitude, residual = _fitTone(self._toneThrough(inRate, outRate, freq), outRate, freq)
            self.assertLess(_db(residual / (amplitude / math.sqrt(2))), -55, (inRate, outRate))

    def test_passbandFlat(self) -> None:
        """
        Within 0.1 dB from 100 Hz to 85% of the lower Nyquist frequency.
        """
        for inRate, outRate in PAIRS:
            top = 0.85 * min(inRate, outRate) / 2
            for freq in (100.0, 1000.0, top):
                amplitude, _ = _fitTone(self._toneThrough(inRate, outRate, freq), outRate, freq)
                gain = _db(amplitude / (0.5 * 32767))
                self.assertLess(abs(gain), 0.1, (inRate, outRate, freq, gain))

    def test_delay(self) -> None:
        """
        The advertised delay is at most 5 ms and is where an impulse comes
        out.
        """
        for inRate, outRate in PAIRS:
            r = Resampler(inRate, outRate)
            self.assertLessEqual(r.delay, 0.005)
            x = np.zeros(inRate // 10, np.int16)
            x[inRate // 50] = 20000
            y = r.processArray(x)
            expected = outRate // 50 + round(r.delay * outRate)
            self.assertEqual(int(np.argmax(y)), expected, (inRate, outRate))


class LifecycleTests(SynchronousTestCase):
    """
    Reset, pass-through, shared filters and bad input.
    """

    def test_reset(self) -> None:
        """
        After C{reset} the output is that of a fresh resampler; the filter
        is the same object.
        """
        x = _noise(1600, seed=5)
        for inRate, outRate in PAIRS:
            r = Resampler(inRate, outRate)
            poly = r._poly
            r.process(_noise(333, seed=6).tobytes())
            r.reset()
            self.assertIs(r._poly, poly)
            self.assertEqual(
                r.process(x.tobytes()), Resampler(inRate, outRate).process(x.tobytes())
            )

    def test_filtersShared(self) -> None:
        """
        Filters are designed once per direction, not per call.
        """
        self.assertIs(Resampler(8000, 16000)._poly, Resampler(8000, 16000)._poly)
        self.assertIs(polyphase(24000, 16000), polyphase(24000, 16000))
        self.assertFalse(polyphase(24000, 16000).matrix.flags.writeable)

    def test_passThrough(self) -> None:
        r = Resampler(16000, 16000)
        pcm = _noise(320).tobytes()
        self.assertEqual(r.process(pcm), pcm)
        x = _noise(320)
        self.assertIs(r.processArray(x), x)
        r.reset()
        self.assertEqual(r.delay, 0.0)

    def test_unsupportedRate(self) -> None:
        for inRate, outRate in [(44100, 8000), (8000, 11025), (0, 16000)]:
            exc = self.assertRaises(errors.UnsupportedRateError, Resampler, inRate, outRate)
            self.assertIsInstance(exc, ValueError)
        self.assertRaises(errors.UnsupportedRateError, polyphase, 8000, 8000)

    def test_oddBytes(self) -> None:
        for rates in [(8000, 16000), (8000, 8000)]:
            self.assertRaises(errors.PcmLengthError, Resampler(*rates).process, b"\x00\x01\x02")
