# -*- test-case-name: tests.test_media_resample -*-
"""
Signal helpers for tests and benchmarks: deterministic test signals and
measurements of what came back (levels, cross-correlation with a lag).

Not used on the media path itself.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from .errors import PcmLengthError
from .g711 import PCM_DTYPE

__all__ = ["asSamples", "correlation", "rms", "speechLike", "tone"]

PcmLike = bytes | bytearray | memoryview | npt.NDArray[np.integer] | npt.NDArray[np.floating]


def asSamples(pcm: PcmLike) -> npt.NDArray[np.float64]:
    """
    16-bit little-endian PCM bytes (or any 1-D numeric array) as float64
    samples.

    @raise PcmLengthError: PCM bytes of odd length.
    """
    if isinstance(pcm, np.ndarray):
        return pcm.astype(np.float64)
    if len(pcm) % 2:
        raise PcmLengthError(f"16-bit PCM of odd length {len(pcm)}")
    return np.frombuffer(pcm, PCM_DTYPE).astype(np.float64)


def _toPcm(x: npt.NDArray[np.float64]) -> bytes:
    return np.clip(np.rint(x), -32768, 32767).astype(PCM_DTYPE).tobytes()


def rms(pcm: PcmLike) -> float:
    """
    Root-mean-square level in sample units (0.0 for no samples).
    """
    x = asSamples(pcm)
    return float(np.sqrt(np.mean(x * x))) if len(x) else 0.0


def tone(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> bytes:
    """
    A sine tone as 16-bit PCM, C{amplitude} a fraction of full scale.
    """
    n = np.arange(round(seconds * rate))
    return _toPcm(amplitude * 32767 * np.sin(2 * np.pi * freq * n / rate))


def speechLike(
    seconds: float,
    rate: int = 8000,
    seed: int = 0,
    level: float = 0.25,
    bandwidth: float = 3400.0,
) -> bytes:
    """
    Deterministic speech-like 16-bit PCM: a harmonic voice whose pitch
    wanders between about 90 and 260 Hz, shaped by three moving formants,
    in syllables of 80–300 ms with an amplitude envelope and short pauses,
    plus a little breath noise. Band-limited to C{bandwidth} Hz so it
    survives a G.711 telephone path.

    @param level: peak amplitude as a fraction of full scale.
    @param seed: same seed, same samples.
    """
    rng = np.random.default_rng(seed)
    n = round(seconds * rate)
    if n == 0:
        return b""
    # Syllable boundaries and per-syllable targets.
    lengths = []
    total = 0
    while total < n:
        length = int(rng.uniform(0.08, 0.30) * rate)
        lengths.append(length)
        total += length
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    count = len(lengths)
    voiced = rng.random(count) > 0.15
    loudness = rng.uniform(0.4, 1.0, count) * voiced
    pitchTargets = rng.uniform(90.0, 260.0, count + 1)
    formantTargets = np.stack(
        [
            rng.uniform(300, 900, count),
            rng.uniform(900, 2200, count),
            rng.uniform(2200, 3200, count),
        ]
    )
    t = np.arange(n)
    # Smooth contours: pitch glides between targets, formants too.
    knots = np.append(starts, total)
    f0 = np.interp(t, knots, pitchTargets)
    formants = np.stack([np.interp(t, starts, f) for f in formantTargets])
    # Syllable envelope: raised sine per syllable times its loudness.
    envelope = np.zeros(n)
    for start, length, loud in zip(starts, lengths, loudness, strict=True):
        end = min(start + length, n)
        phase = (np.arange(end - start) + 0.5) / length
        envelope[start:end] = loud * np.sin(np.pi * phase) ** 0.6
    phase = 2 * np.pi * np.cumsum(f0) / rate
    harmonics = np.arange(1, int(bandwidth / 90.0) + 1)[:, None]
    freqs = harmonics * f0[None, :]
    weights = np.zeros_like(freqs)
    for f, width in zip(formants, (120.0, 180.0, 250.0), strict=True):
        weights += np.exp(-0.5 * ((freqs - f[None, :]) / width) ** 2)
    weights += 0.05
    weights[freqs >= bandwidth] = 0.0
    weights /= harmonics  # a falling glottal spectrum
    voice = np.sum(weights * np.sin(harmonics * phase[None, :]), axis=0)
    noise = rng.standard_normal(n) * 0.02
    signal = envelope * voice + noise * envelope
    peak = np.max(np.abs(signal)) or 1.0
    return _toPcm(signal * (level * 32767 / peak))


def correlation(a: PcmLike, b: PcmLike, maxLag: int) -> tuple[float, int]:
    """
    The best normalised cross-correlation between C{a} and C{b} over lags
    C{-maxLag..maxLag}, and that lag.

    A positive lag means C{b} is C{a} delayed: C{b[n + lag] ≈ a[n]} (as
    for an echo of C{a}). At each lag only the overlapping samples count,
    normalised by their energies, so a perfect delayed copy scores 1.0.
    Lags whose overlap is shorter than half the shorter signal, or has no
    energy, score 0 (a few samples of overlap would otherwise correlate
    perfectly by accident).

    @return: C{(coefficient, lag)}; C{(0.0, 0)} when nothing qualifies.
    """
    x = asSamples(a)
    y = asSamples(b)
    la, lb = len(x), len(y)
    if la == 0 or lb == 0:
        return 0.0, 0
    size = 1 << math.ceil(math.log2(la + lb))
    cross = np.fft.irfft(np.conj(np.fft.rfft(x, size)) * np.fft.rfft(y, size), size)
    cx = np.concatenate([[0.0], np.cumsum(x * x)])
    cy = np.concatenate([[0.0], np.cumsum(y * y)])
    lags = np.arange(max(-maxLag, -(la - 1)), min(maxLag, lb - 1) + 1)
    # Overlap of a[n] with b[n + lag]: n from max(0, -lag) to min(la, lb - lag).
    n0 = np.maximum(0, -lags)
    n1 = np.minimum(la, lb - lags)
    ea = cx[n1] - cx[n0]
    eb = cy[n1 + lags] - cy[n0 + lags]
    values = cross[lags % size]
    denominator = np.sqrt(ea * eb)
    floor = 1e-9 * math.sqrt(cx[-1] * cy[-1])
    valid = (denominator > floor) & (n1 - n0 >= min(la, lb) // 2)
    if not valid.any():
        return 0.0, 0
    coefficients = np.zeros_like(values)
    np.divide(values, denominator, out=coefficients, where=valid)
    np.clip(coefficients, -1.0, 1.0, out=coefficients)
    best = int(np.argmax(coefficients))
    return float(coefficients[best]), int(lags[best])
