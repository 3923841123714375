"""
Tests for L{rapida_twisted.media.g711}: bit-exact G.711 on every input.
"""

from __future__ import annotations

import warnings
from types import ModuleType

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from rapida_twisted.media import errors, g711

ALL_PCM = np.arange(-32768, 32768, dtype="<i2").tobytes()
ALL_CODES = bytes(range(256))


def _audioop() -> ModuleType | None:
    """
    The stdlib oracle where it still exists (removed in Python 3.13).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import audioop
        except ImportError:
            return None
    return audioop


def _refUlawEncode(s: int) -> int:
    """
    Scalar μ-law reference (14-bit form of Sun's g711.c), written
    independently of the table builder.
    """
    s >>= 2
    mask = 0xFF
    if s < 0:
        s, mask = -s, 0x7F
    s = min(s, 8159) + 0x21
    for seg, end in enumerate((0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)):
        if s <= end:
            return ((seg << 4) | ((s >> (seg + 1)) & 0x0F)) ^ mask
    return 0x7F ^ mask


def _refUlawDecode(u: int) -> int:
    u = ~u & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return (0x84 - t) if u & 0x80 else (t - 0x84)


def _refAlawEncode(s: int) -> int:
    s >>= 3
    mask = 0xD5
    if s < 0:
        s, mask = -s - 1, 0x55
    for seg, end in enumerate((0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)):
        if s <= end:
            mant = (s >> 1) if seg < 2 else (s >> seg)
            return ((seg << 4) | (mant & 0x0F)) ^ mask
    return 0x7F ^ mask


def _refAlawDecode(a: int) -> int:
    a ^= 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if a & 0x80 else -t


class ReferenceTests(SynchronousTestCase):
    """
    Every one of the 65,536 linear inputs and 256 codes, both laws, against
    an independent scalar implementation of the reference formulas.
    """

    def test_ulawEncodeAll(self) -> None:
        expected = bytes(_refUlawEncode(s) for s in range(-32768, 32768))
        self.assertEqual(g711.ulawEncode(ALL_PCM), expected)

    def test_alawEncodeAll(self) -> None:
        expected = bytes(_refAlawEncode(s) for s in range(-32768, 32768))
        self.assertEqual(g711.alawEncode(ALL_PCM), expected)

    def test_ulawDecodeAll(self) -> None:
        expected = np.array([_refUlawDecode(u) for u in range(256)], "<i2").tobytes()
        self.assertEqual(g711.ulawDecode(ALL_CODES), expected)

    def test_alawDecodeAll(self) -> None:
        expected = np.array([_refAlawDecode(a) for a in range(256)], "<i2").tobytes()
        self.assertEqual(g711.alawDecode(ALL_CODES), expected)


class AudioopOracleTests(SynchronousTestCase):
    """
    Bit-exact with CPython's C{audioop} on all inputs (Python ≤ 3.12 only).
    """

    def setUp(self) -> None:
        oracle = _audioop()
        if oracle is None:
            self.skipTest("audioop is not available on this Python")
        self.audioop = oracle

    def test_ulawEncode(self) -> None:
        self.assertEqual(g711.ulawEncode(ALL_PCM), self.audioop.lin2ulaw(ALL_PCM, 2))

    def test_alawEncode(self) -> None:
        self.assertEqual(g711.alawEncode(ALL_PCM), self.audioop.lin2alaw(ALL_PCM, 2))

    def test_ulawDecode(self) -> None:
        self.assertEqual(g711.ulawDecode(ALL_CODES), self.audioop.ulaw2lin(ALL_CODES, 2))

    def test_alawDecode(self) -> None:
        self.assertEqual(g711.alawDecode(ALL_CODES), self.audioop.alaw2lin(ALL_CODES, 2))


class ApiTests(SynchronousTestCase):
    """
    Silence constants, byte-like inputs, array variants, errors.
    """

    def test_silence(self) -> None:
        """
        Linear zero encodes to the silence bytes; they decode to (near) zero.
        """
        zero = b"\x00\x00" * 4
        self.assertEqual(g711.ulawEncode(zero), bytes([g711.ULAW_SILENCE]) * 4)
        self.assertEqual(g711.alawEncode(zero), bytes([g711.ALAW_SILENCE]) * 4)
        self.assertEqual(g711.ULAW.silence, b"\xff")
        self.assertEqual(g711.ALAW.silence, b"\xd5")
        self.assertEqual(g711.ulawDecode(b"\xff\x7f"), b"\x00\x00\x00\x00")
        self.assertEqual(g711.alawDecode(b"\xd5\x55"), np.array([8, -8], "<i2").tobytes())

    def test_oddLength(self) -> None:
        """
        Half a sample of PCM is a L{PcmLengthError}, a L{ValueError}.
        """
        for encode in (g711.ulawEncode, g711.alawEncode, g711.ULAW.encode, g711.ALAW.encode):
            exc = self.assertRaises(errors.PcmLengthError, encode, b"\x00\x00\x00")
            self.assertIsInstance(exc, ValueError)

    def test_empty(self) -> None:
        self.assertEqual(g711.ulawEncode(b""), b"")
        self.assertEqual(g711.alawDecode(b""), b"")

    def test_bytesLike(self) -> None:
        """
        C{bytearray} and C{memoryview} are accepted as well as C{bytes}.
        """
        pcm = ALL_PCM[:640]
        self.assertEqual(g711.ulawEncode(bytearray(pcm)), g711.ulawEncode(pcm))
        self.assertEqual(g711.alawEncode(memoryview(pcm)), g711.alawEncode(pcm))
        self.assertEqual(g711.ulawDecode(memoryview(ALL_CODES)), g711.ulawDecode(ALL_CODES))

    def test_arrays(self) -> None:
        """
        The array variants agree with the bytes variants, with and without
        C{out}.
        """
        pcm = np.frombuffer(ALL_PCM, "<i2")
        codes = np.frombuffer(ALL_CODES, np.uint8)
        for law, enc, dec, encA, decA in (
            (
                g711.ULAW,
                g711.ulawEncode,
                g711.ulawDecode,
                g711.ulawEncodeArray,
                g711.ulawDecodeArray,
            ),
            (
                g711.ALAW,
                g711.alawEncode,
                g711.alawDecode,
                g711.alawEncodeArray,
                g711.alawDecodeArray,
            ),
        ):
            self.assertEqual(encA(pcm).tobytes(), enc(ALL_PCM))
            self.assertEqual(decA(codes).tobytes(), dec(ALL_CODES))
            self.assertEqual(law.encodeArray(pcm).tobytes(), enc(ALL_PCM))
            self.assertEqual(law.decodeArray(codes).tobytes(), dec(ALL_CODES))
            self.assertEqual(law.decode(ALL_CODES), dec(ALL_CODES))
            out8 = np.empty(len(pcm), np.uint8)
            self.assertIs(encA(pcm, out=out8), out8)
            self.assertEqual(out8.tobytes(), enc(ALL_PCM))
            out16 = np.empty(256, np.int16)
            self.assertIs(decA(codes, out=out16), out16)
            self.assertEqual(out16.tobytes(), dec(ALL_CODES))

    def test_laws(self) -> None:
        self.assertEqual((g711.ULAW.name, g711.ULAW.payloadType), ("ulaw", 0))
        self.assertEqual((g711.ALAW.name, g711.ALAW.payloadType), ("alaw", 8))
        self.assertNotEqual(g711.ULAW, g711.ALAW)

    @given(st.binary(max_size=400))
    def test_decodeEncodeIdempotent(self, codes: bytes) -> None:
        """
        A decoded code re-encodes to a code that decodes to the same value
        (μ-law's two zeros and nothing else may change the code).
        """
        for law in (g711.ULAW, g711.ALAW):
            pcm = law.decode(codes)
            self.assertEqual(len(pcm), 2 * len(codes))
            self.assertEqual(law.decode(law.encode(pcm)), pcm)
