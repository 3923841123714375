"""
Tests for L{rapida_twisted.media.analysis} and the package's exports.
"""

from __future__ import annotations

import numpy as np
from twisted.trial.unittest import SynchronousTestCase

import rapida_twisted.media as media
from rapida_twisted.media import errors
from rapida_twisted.media.analysis import asSamples, correlation, rms, speechLike, tone


class SignalTests(SynchronousTestCase):
    """
    Generated test signals.
    """

    def test_speechLikeDeterministic(self) -> None:
        a = speechLike(1.0, 8000, seed=5)
        self.assertEqual(a, speechLike(1.0, 8000, seed=5))
        self.assertNotEqual(a, speechLike(1.0, 8000, seed=6))
        self.assertEqual(len(a), 16000)
        self.assertEqual(len(speechLike(0.5, 16000)), 16000)
        self.assertEqual(speechLike(0.0), b"")

    def test_speechLikeShape(self) -> None:
        """
        Peak at the requested level, energy in the speech band, and an
        envelope that moves (syllables and pauses), not a steady tone.
        """
        x = asSamples(speechLike(3.0, 16000, level=0.25))
        self.assertAlmostEqual(float(np.max(np.abs(x))) / 32767, 0.25, places=3)
        spectrum = np.abs(np.fft.rfft(x)) ** 2
        freqs = np.fft.rfftfreq(len(x), 1 / 16000)
        inBand = spectrum[(freqs > 80) & (freqs < 3400)].sum() / spectrum.sum()
        self.assertGreater(inBand, 0.99)
        frames = x[: len(x) // 320 * 320].reshape(-1, 320)
        levels = np.sqrt(np.mean(frames**2, axis=1))
        self.assertGreater(levels.max(), 20 * np.percentile(levels, 5))

    def test_tone(self) -> None:
        t = asSamples(tone(1000, 0.1, 8000, amplitude=0.5))
        self.assertEqual(len(t), 800)
        self.assertLess(abs(rms(tone(1000, 1, 8000, 0.5)) - 0.5 * 32767 / np.sqrt(2)), 2)

    def test_rms(self) -> None:
        self.assertEqual(rms(b""), 0.0)
        self.assertEqual(rms(np.array([3, -3], np.int16)), 3.0)
        self.assertRaises(errors.PcmLengthError, rms, b"\x00")


class CorrelationTests(SynchronousTestCase):
    """
    L{correlation} finds echoes and their delay.
    """

    def setUp(self) -> None:
        self.speech = speechLike(2.0, 8000, seed=1)

    def test_delayedCopy(self) -> None:
        echo = b"\x00\x00" * 123 + self.speech
        self.assertEqual(correlation(self.speech, echo, 400), (1.0, 123))
        self.assertEqual(correlation(echo, self.speech, 400), (1.0, -123))

    def test_scaledNoisyCopy(self) -> None:
        """
        Scaling does not matter; added noise lowers the score a little.
        """
        x = asSamples(self.speech)
        noisy = 0.5 * x + np.random.default_rng(0).normal(0, 0.1 * rms(self.speech), len(x))
        value, lag = correlation(self.speech, np.concatenate([np.zeros(40), noisy]), 100)
        self.assertEqual(lag, 40)
        self.assertTrue(0.95 < value < 1.0)

    def test_unrelated(self) -> None:
        value, _ = correlation(self.speech, speechLike(2.0, 8000, seed=2), 200)
        self.assertLess(value, 0.3)

    def test_lagOutOfRange(self) -> None:
        echo = b"\x00\x00" * 500 + self.speech
        value, _ = correlation(self.speech, echo, 100)
        self.assertLess(value, 0.5)

    def test_silenceAndEmpty(self) -> None:
        self.assertEqual(correlation(self.speech, bytes(800), 10), (0.0, 0))
        self.assertEqual(correlation(b"", self.speech, 10), (0.0, 0))

    def test_shortOverlapIgnored(self) -> None:
        """
        Lags that leave only a sliver of overlap cannot win by accident.
        """
        a = np.array([1.0, 5.0, -3.0, 2.0, 7.0, 0.5, -1.0, 4.0])
        b = np.array([7.0, 2.0, 9.0, -4.0, 0.0, 3.0, 1.0, -6.0])
        value, lag = correlation(a, b, 7)
        self.assertLessEqual(abs(lag), 4)
        self.assertLess(value, 1.0)


class ExportTests(SynchronousTestCase):
    """
    The package re-exports its public names as the same objects.
    """

    def test_exports(self) -> None:
        from rapida_twisted.media import framer, g711, pacer, resample

        for name in media.__all__:
            self.assertTrue(hasattr(media, name), name)
        self.assertIs(media.Framer, framer.Framer)
        self.assertIs(media.ULAW, g711.ULAW)
        self.assertIs(media.Pacer, pacer.Pacer)
        self.assertIs(media.Resampler, resample.Resampler)
        self.assertTrue(issubclass(media.MediaError, ValueError))
