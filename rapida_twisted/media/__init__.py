# -*- test-case-name: tests.test_media_g711 -*-
"""
The media layer: pure audio building blocks for the call session.

  - L{g711}: μ-law / A-law, bit-exact, numpy lookup tables.
  - L{resample}: streaming 8/16/24 kHz polyphase resampler.
  - L{framer}: any chunks in, exact frames out.
  - L{pacer}: drift-free 20 ms schedule on C{IReactorTime}, single or shared.
  - L{analysis}: test signals and measurements (tests and benchmarks only).
"""

from .errors import MediaError, PcmLengthError, UnsupportedRateError
from .framer import Framer
from .g711 import (
    ALAW,
    ALAW_SILENCE,
    PCM_DTYPE,
    ULAW,
    ULAW_SILENCE,
    G711Law,
    alawDecode,
    alawDecodeArray,
    alawEncode,
    alawEncodeArray,
    ulawDecode,
    ulawDecodeArray,
    ulawEncode,
    ulawEncodeArray,
)
from .pacer import GroupPacer, Pacer, PacerFactory, PacerGroup, PacerLike, PacerStats
from .resample import SUPPORTED_RATES, Resampler

PCM_SILENCE = b"\x00\x00"
"""One sample of 16-bit PCM silence (the L{Framer} pattern for PCM)."""

__all__ = [
    "ALAW",
    "ALAW_SILENCE",
    "PCM_DTYPE",
    "PCM_SILENCE",
    "SUPPORTED_RATES",
    "ULAW",
    "ULAW_SILENCE",
    "Framer",
    "G711Law",
    "GroupPacer",
    "MediaError",
    "Pacer",
    "PacerFactory",
    "PacerGroup",
    "PacerLike",
    "PacerStats",
    "PcmLengthError",
    "Resampler",
    "UnsupportedRateError",
    "alawDecode",
    "alawDecodeArray",
    "alawEncode",
    "alawEncodeArray",
    "ulawDecode",
    "ulawDecodeArray",
    "ulawEncode",
    "ulawEncodeArray",
]
