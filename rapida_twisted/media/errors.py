# -*- test-case-name: tests.test_media_g711 -*-
"""
Exceptions raised by the media layer for input it cannot process.

All are L{ValueError} subclasses so callers that only care about "bad
audio" can catch L{MediaError} (or C{ValueError}).
"""

from __future__ import annotations


class MediaError(ValueError):
    """
    Base class of every media-layer input error.
    """


class PcmLengthError(MediaError):
    """
    16-bit PCM given as bytes had an odd length (half a sample).
    """


class UnsupportedRateError(MediaError):
    """
    A sample rate the resampler does not support was requested.
    """
