# -*- test-case-name: tests.test_media_g711 -*-
"""
G.711 μ-law and A-law, bit-exact with the ITU reference (Sun C{g711.c}, as
in CPython's removed C{audioop}) on every input, without C{audioop}.

Linear audio is 16-bit little-endian signed PCM. Encoding looks each
sample up in a 65,536-entry table and decoding looks each code up in a
256-entry table; all four tables are computed once, at import, from the
reference formulas (see C{protocols.md} §8).

The C{bytes} functions are for adapters; the C{...Array} variants let the
call session stay in numpy and skip copies (they accept an C{out} array).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import PcmLengthError

__all__ = [
    "ALAW",
    "ALAW_SILENCE",
    "G711Law",
    "ULAW",
    "ULAW_SILENCE",
    "alawDecode",
    "alawDecodeArray",
    "alawEncode",
    "alawEncodeArray",
    "ulawDecode",
    "ulawDecodeArray",
    "ulawEncode",
    "ulawEncodeArray",
]

PCM_DTYPE = np.dtype("<i2")
"""The dtype of linear PCM everywhere in the media layer."""

ULAW_SILENCE = 0xFF
"""The μ-law code for linear 0 (0x7F, "negative zero", also decodes to 0)."""

ALAW_SILENCE = 0xD5
"""The A-law code for linear 0 (it decodes to +8)."""

Int16Array = npt.NDArray[np.int16]
Uint8Array = npt.NDArray[np.uint8]


def _allLinear() -> npt.NDArray[np.int32]:
    """
    Every int16 value, indexed by its bit pattern read as uint16 (so that
    a table built from it is indexed by C{pcm.view(uint16)}).
    """
    return np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)


def _buildUlawEncode() -> Uint8Array:
    """
    μ-law encode table, the 14-bit form of the reference: drop two bits,
    fold the sign into an XOR mask, clip, bias, find the segment.
    """
    s = _allLinear() >> 2
    negative = s < 0
    mag = np.minimum(np.where(negative, -s, s), 8159) + 0x21
    ends = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
    seg = np.searchsorted(ends, mag)
    code = np.where(seg >= 8, 0x7F, (seg << 4) | ((mag >> (seg + 1)) & 0x0F))
    mask = np.where(negative, 0x7F, 0xFF)
    return (code ^ mask).astype(np.uint8)


def _buildUlawDecode() -> Int16Array:
    """
    μ-law decode table: invert, rebuild the biased magnitude, remove bias.
    """
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, 0x84 - t, t - 0x84).astype(PCM_DTYPE)


def _buildAlawEncode() -> Uint8Array:
    """
    A-law encode table: 13-bit magnitude, sign into an XOR mask (0x55 is
    the even-bit inversion, 0x80 the positive sign), segment, mantissa.
    """
    s = _allLinear() >> 3
    negative = s < 0
    mag = np.where(negative, -s - 1, s)
    ends = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])
    seg = np.searchsorted(ends, mag)
    shift = np.where(seg < 2, 1, seg)
    code = np.where(seg >= 8, 0x7F, (seg << 4) | ((mag >> shift) & 0x0F))
    mask = np.where(negative, 0x55, 0xD5)
    return (code ^ mask).astype(np.uint8)


def _buildAlawDecode() -> Int16Array:
    """
    A-law decode table: undo the even-bit inversion, rebuild the segment.
    """
    a = np.arange(256, dtype=np.int32) ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    t = np.where(
        seg == 0, t + 8, np.where(seg == 1, t + 0x108, (t + 0x108) << np.maximum(seg - 1, 0))
    )
    return np.where(a & 0x80, t, -t).astype(PCM_DTYPE)


_ULAW_ENCODE = _buildUlawEncode()
_ULAW_DECODE = _buildUlawDecode()
_ALAW_ENCODE = _buildAlawEncode()
_ALAW_DECODE = _buildAlawDecode()
for _table in (_ULAW_ENCODE, _ULAW_DECODE, _ALAW_ENCODE, _ALAW_DECODE):
    _table.flags.writeable = False
del _table


def _pcmIndex(pcm: bytes | bytearray | memoryview) -> npt.NDArray[np.uint16]:
    """
    View PCM bytes as uint16 table indices (no copy).

    @raise PcmLengthError: the length is odd.
    """
    if len(pcm) % 2:
        raise PcmLengthError(f"16-bit PCM of odd length {len(pcm)}")
    return np.frombuffer(pcm, dtype="<u2")


def ulawDecode(data: bytes | bytearray | memoryview) -> bytes:
    """
    μ-law codes to 16-bit little-endian PCM (twice as many bytes).
    """
    return _ULAW_DECODE.take(np.frombuffer(data, dtype=np.uint8)).tobytes()


def ulawEncode(pcm: bytes | bytearray | memoryview) -> bytes:
    """
    16-bit little-endian PCM to μ-law codes (half as many bytes).

    @raise PcmLengthError: C{pcm} has an odd length.
    """
    return _ULAW_ENCODE.take(_pcmIndex(pcm)).tobytes()


def alawDecode(data: bytes | bytearray | memoryview) -> bytes:
    """
    A-law codes to 16-bit little-endian PCM (twice as many bytes).
    """
    return _ALAW_DECODE.take(np.frombuffer(data, dtype=np.uint8)).tobytes()


def alawEncode(pcm: bytes | bytearray | memoryview) -> bytes:
    """
    16-bit little-endian PCM to A-law codes (half as many bytes).

    @raise PcmLengthError: C{pcm} has an odd length.
    """
    return _ALAW_ENCODE.take(_pcmIndex(pcm)).tobytes()


def ulawDecodeArray(codes: npt.NDArray[Any], out: Int16Array | None = None) -> Int16Array:
    """
    Decode a uint8 array of μ-law codes to an int16 array (into C{out}
    when given; it must have the same length).
    """
    return _ULAW_DECODE.take(codes, out=out)


def ulawEncodeArray(pcm: Int16Array, out: Uint8Array | None = None) -> Uint8Array:
    """
    Encode an int16 array to a uint8 array of μ-law codes (into C{out}
    when given; it must have the same length).
    """
    return _ULAW_ENCODE.take(pcm.view(np.uint16), out=out)


def alawDecodeArray(codes: npt.NDArray[Any], out: Int16Array | None = None) -> Int16Array:
    """
    Decode a uint8 array of A-law codes to an int16 array (into C{out}
    when given; it must have the same length).
    """
    return _ALAW_DECODE.take(codes, out=out)


def alawEncodeArray(pcm: Int16Array, out: Uint8Array | None = None) -> Uint8Array:
    """
    Encode an int16 array to a uint8 array of A-law codes (into C{out}
    when given; it must have the same length).
    """
    return _ALAW_ENCODE.take(pcm.view(np.uint16), out=out)


@dataclass(frozen=True)
class G711Law:
    """
    One G.711 law as a value, so a call session can hold "its codec"
    without branching on names.

    @ivar name: C{"ulaw"} or C{"alaw"}.
    @ivar payloadType: the static RTP payload type (0 PCMU, 8 PCMA).
    @ivar silence: one byte of codec silence (for padding frames).
    """

    name: str
    payloadType: int
    silence: bytes
    _encodeTable: Uint8Array = field(repr=False, compare=False)
    _decodeTable: Int16Array = field(repr=False, compare=False)
    #: the 256 decoded values as float32 (for decoding straight into a
    #: resampler's filter buffer)
    floatDecodeTable: npt.NDArray[np.float32] = field(init=False, repr=False, compare=False)
    #: the encode table indexed by C{sample + 32768} rather than by the
    #: sample's bit pattern, so that an index clipped to 0..65535 encodes
    #: a clipped sample (for encoding a resampler's output in one lookup)
    offsetEncodeTable: Uint8Array = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        decoded = self._decodeTable.astype(np.float32)
        byOffset = self._encodeTable[
            (np.arange(65536, dtype=np.int32) - 32768).astype(np.int16).view(np.uint16)
        ]
        for table in (decoded, byOffset):
            table.flags.writeable = False
        object.__setattr__(self, "floatDecodeTable", decoded)
        object.__setattr__(self, "offsetEncodeTable", byOffset)

    def decode(self, data: bytes | bytearray | memoryview) -> bytes:
        """
        Codes to 16-bit little-endian PCM.
        """
        return self._decodeTable.take(np.frombuffer(data, dtype=np.uint8)).tobytes()

    def encode(self, pcm: bytes | bytearray | memoryview) -> bytes:
        """
        16-bit little-endian PCM to codes.

        @raise PcmLengthError: C{pcm} has an odd length.
        """
        return self._encodeTable.take(_pcmIndex(pcm)).tobytes()

    def decodeArray(self, codes: npt.NDArray[Any], out: Int16Array | None = None) -> Int16Array:
        """
        uint8 codes to an int16 array (into C{out} when given).
        """
        return self._decodeTable.take(codes, out=out)

    def encodeArray(self, pcm: Int16Array, out: Uint8Array | None = None) -> Uint8Array:
        """
        An int16 array to uint8 codes (into C{out} when given).
        """
        return self._encodeTable.take(pcm.view(np.uint16), out=out)


ULAW = G711Law("ulaw", 0, bytes([ULAW_SILENCE]), _ULAW_ENCODE, _ULAW_DECODE)
"""μ-law (PCMU)."""

ALAW = G711Law("alaw", 8, bytes([ALAW_SILENCE]), _ALAW_ENCODE, _ALAW_DECODE)
"""A-law (PCMA)."""
