# -*- test-case-name: tests.test_call_session -*-
"""
What a call session knows about its audio and its call: the wire format a
transport negotiated (L{AudioFormat}) and the call's description handed to
the assistant (L{CallDetails}).

Pure: no reactor, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from ..media.g711 import ALAW, PCM_DTYPE, ULAW, G711Law
from ..media.resample import SUPPORTED_RATES, Resampler
from ..store._model import CallContext

__all__ = ["CODECS", "AudioFormat", "CallDetails", "FormatError"]

#: the wire codecs a session can decode and encode
CODECS: Final = frozenset({"ulaw", "alaw", "l16"})

_LAWS: Final[Mapping[str, G711Law]] = {"ulaw": ULAW, "alaw": ALAW}

Int16Array = npt.NDArray[np.int16]


class FormatError(ValueError):
    """
    An audio format the session cannot handle (unknown codec, unsupported
    sample rate, a frame that is not a whole number of samples).
    """


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """
    One direction's audio as a transport carries it.

    @ivar codec: C{"ulaw"}, C{"alaw"} or C{"l16"} (16-bit little-endian
        signed linear PCM).
    @ivar sampleRate: Hz; one of 8000, 16000, 24000.
    @ivar frameMs: the frame duration the transport sends (20 by default).
    @ivar sampleWidth: bytes per sample (1 for G.711, 2 for L16).
    @ivar frameBytes: bytes in one frame of C{frameMs}.
    @ivar silence: one sample of codec silence (C{b"\\xff"} μ-law,
        C{b"\\xd5"} A-law, C{b"\\x00\\x00"} L16).
    @ivar silenceFrame: one whole frame of silence.
    """

    codec: str
    sampleRate: int
    frameMs: int = 20
    sampleWidth: int = field(init=False, repr=False, compare=False)
    frameBytes: int = field(init=False, repr=False, compare=False)
    silence: bytes = field(init=False, repr=False, compare=False)
    silenceFrame: bytes = field(init=False, repr=False, compare=False)
    _law: G711Law | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """
        @raise FormatError: unknown codec, unsupported rate, or a frame
            duration that is not a whole number of samples.
        """
        if self.codec not in CODECS:
            raise FormatError(f"codec {self.codec!r} is not one of {', '.join(sorted(CODECS))}")
        if self.sampleRate not in SUPPORTED_RATES:
            raise FormatError(f"sample rate {self.sampleRate} Hz is not supported")
        if (
            type(self.frameMs) is not int
            or self.frameMs <= 0
            or (self.sampleRate * self.frameMs) % 1000
        ):
            raise FormatError(f"a frame of {self.frameMs} ms is not a whole number of samples")
        law = _LAWS.get(self.codec)
        width = 1 if law is not None else 2
        silence = law.silence if law is not None else b"\x00\x00"
        frameBytes = self.sampleRate * self.frameMs // 1000 * width
        setattr_ = object.__setattr__
        setattr_(self, "_law", law)
        setattr_(self, "sampleWidth", width)
        setattr_(self, "frameBytes", frameBytes)
        setattr_(self, "silence", silence)
        setattr_(self, "silenceFrame", silence * (frameBytes // width))

    def bytesFor(self, ms: int) -> int:
        """
        How many bytes C{ms} milliseconds of this audio take.
        """
        return self.sampleRate * ms // 1000 * self.sampleWidth

    def decodeArray(self, data: bytes | bytearray | memoryview) -> Int16Array:
        """
        Wire bytes to an int16 sample array (a view of C{data} for L16,
        which must then have an even length).
        """
        law = self._law
        if law is None:
            return np.frombuffer(data, PCM_DTYPE)
        return law.decodeArray(np.frombuffer(data, np.uint8))

    def encodeArray(self, samples: Int16Array) -> bytes:
        """
        An int16 sample array to wire bytes.
        """
        law = self._law
        if law is None:
            return samples.astype(PCM_DTYPE, copy=False).tobytes()
        return law.encodeArray(samples).tobytes()

    def toCanonical(self, data: bytes | bytearray | memoryview, resampler: Resampler) -> bytes:
        """
        Wire bytes (whole samples) to 16-bit PCM at C{resampler.outRate},
        decoding and resampling in one pass (C{resampler.inRate} must be
        this format's rate).
        """
        law = self._law
        if law is None:
            if resampler.passthrough:
                return bytes(data)
            return resampler.processArray(np.frombuffer(data, PCM_DTYPE)).tobytes()
        codes = np.frombuffer(data, np.uint8)
        if resampler.passthrough:
            return law.decodeArray(codes).tobytes()
        return resampler.decodeArray(codes, law.floatDecodeTable).tobytes()

    def fromCanonical(self, pcm: bytes | bytearray | memoryview, resampler: Resampler) -> bytes:
        """
        16-bit PCM at C{resampler.inRate} (an even number of bytes) to
        wire bytes, resampling and encoding in one pass (C{resampler.outRate}
        must be this format's rate).
        """
        law = self._law
        if law is None:
            if resampler.passthrough:
                return bytes(pcm)
            return resampler.processArray(np.frombuffer(pcm, PCM_DTYPE)).tobytes()
        samples = np.frombuffer(pcm, PCM_DTYPE)
        if resampler.passthrough:
            return law.encodeArray(samples).tobytes()
        return resampler.encodeArray(samples, law.offsetEncodeTable).tobytes()


@dataclass(frozen=True)
class CallDetails:
    """
    What an assistant learns about its call at C{startSession}.

    @ivar sampleRate: the canonical rate of the audio the assistant gets
        and plays (its own rate).
    @ivar metadata: the context's metadata (provider fields kept from the
        webhook).
    """

    context_id: str
    conversation_id: str
    provider: str
    assistant_id: str
    caller: str
    callee: str
    direction: str
    channel_uuid: str
    sampleRate: int
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def fromContext(cls, context: CallContext, sampleRate: int) -> CallDetails:
        """
        The details of the call of C{context}, for an assistant speaking
        at C{sampleRate}.
        """
        return cls(
            context_id=context.context_id,
            conversation_id=context.conversation_id,
            provider=context.provider,
            assistant_id=context.assistant_id,
            caller=context.caller,
            callee=context.callee,
            direction=context.direction,
            channel_uuid=context.channel_uuid,
            sampleRate=sampleRate,
            metadata=dict(context.metadata),
        )
