# -*- test-case-name: tests.test_sim -*-
"""
Audio for the simulator: WAV files in and out, the wire formats a
provider speaks, and the frames of a call prepared once and shared by
every simulated call.

Pure: numpy and the media layer, no reactor.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt
import soxr

from ..media import ALAW, PCM_DTYPE, ULAW, G711Law
from ..media.analysis import speechLike
from ..providers.twilio._codec import base64Text
from ._analysis import delayed

__all__ = [
    "FRAME_SECONDS",
    "AudioSource",
    "PreparedAudio",
    "WavFormatError",
    "WireFormat",
    "loopTo",
    "readWav",
    "resample",
    "wireFormat",
    "writeWav",
]

Int16Array = npt.NDArray[np.int16]

#: Every transport's frame: 20 ms.
FRAME_SECONDS: Final = 0.020

#: Default length of the generated speech-like signal, seconds.
DEFAULT_SECONDS: Final = 5.0


class WavFormatError(ValueError):
    """
    A WAV file the simulator cannot read (not RIFF/WAVE PCM, or not 16-bit).
    """


def readWav(path: str) -> tuple[bytes, int]:
    """
    A 16-bit PCM WAV file as mono 16-bit little-endian PCM and its rate;
    several channels are mixed down by averaging.

    @raise WavFormatError: unreadable, not PCM, or not 16-bit.
    @raise OSError: the file cannot be opened.
    """
    try:
        with wave.open(path, "rb") as f:
            width, channels, rate = f.getsampwidth(), f.getnchannels(), f.getframerate()
            data = f.readframes(f.getnframes())
    except (wave.Error, EOFError) as e:
        raise WavFormatError(f"{path}: not a PCM WAV file ({e})") from None
    if width != 2:
        raise WavFormatError(f"{path}: {8 * width}-bit samples; 16-bit PCM is required")
    if rate <= 0 or channels <= 0:
        raise WavFormatError(f"{path}: bad header ({channels} channels at {rate} Hz)")
    samples = np.frombuffer(data[: len(data) - len(data) % (2 * channels)], PCM_DTYPE)
    if channels > 1:
        mixed = samples.reshape(-1, channels).astype(np.int32).mean(axis=1)
        samples = np.rint(mixed).astype(PCM_DTYPE)
    return samples.tobytes(), rate


def writeWav(path: str, pcm: bytes, rate: int) -> None:
    """
    Write mono 16-bit PCM as a WAV file.
    """
    with wave.open(path, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm)


def resample(pcm: bytes, inRate: int, outRate: int) -> bytes:
    """
    Resample a whole signal between any two rates (offline, high quality).
    """
    if inRate == outRate or not pcm:
        return pcm
    samples = np.frombuffer(pcm, PCM_DTYPE)
    out = soxr.resample(samples, inRate, outRate, quality="HQ")
    return np.asarray(out, PCM_DTYPE).tobytes()


def loopTo(pcm: bytes, size: int) -> bytes:
    """
    C{pcm} repeated or cut to exactly C{size} bytes (silence if empty).
    """
    if not pcm:
        return bytes(size)
    repeats = -(-size // len(pcm))
    return (pcm * repeats)[:size]


@dataclass(frozen=True)
class WireFormat:
    """
    How audio travels on one transport: the codec (C{ulaw}, C{alaw} or
    C{pcm16}, little-endian) and the rate.

    @ivar frameBytes: bytes in one 20 ms frame.
    @ivar silence: one frame of the codec's silence.
    """

    codec: str
    rate: int
    law: G711Law | None = field(default=None, repr=False, compare=False)

    @property
    def sampleWidth(self) -> int:
        """
        Bytes per sample on the wire.
        """
        return 1 if self.law is not None else 2

    @property
    def frameSamples(self) -> int:
        """
        Samples in one 20 ms frame.
        """
        return self.rate // 50

    @property
    def frameBytes(self) -> int:
        """
        Bytes in one 20 ms frame.
        """
        return self.frameSamples * self.sampleWidth

    @property
    def bytesPerSecond(self) -> int:
        """
        Wire bytes per second of audio.
        """
        return self.rate * self.sampleWidth

    @property
    def silence(self) -> bytes:
        """
        One 20 ms frame of silence.
        """
        if self.law is not None:
            return self.law.silence * self.frameBytes
        return bytes(self.frameBytes)

    def encode(self, pcm: bytes) -> bytes:
        """
        16-bit PCM at L{rate} to wire bytes.
        """
        return pcm if self.law is None else self.law.encode(pcm)

    def decode(self, data: bytes) -> Int16Array:
        """
        Wire bytes to int16 samples (an odd trailing byte of PCM is dropped).
        """
        if self.law is not None:
            return self.law.decodeArray(np.frombuffer(data, np.uint8))
        return np.frombuffer(data[: len(data) & ~1], PCM_DTYPE)


def wireFormat(codec: str, rate: int) -> WireFormat:
    """
    The L{WireFormat} for a codec name (C{ulaw}, C{alaw}, C{pcm16}/C{slin}).

    @raise ValueError: another codec, or a rate that is not a positive
        multiple of 50 Hz.
    """
    if rate <= 0 or rate % 50:
        raise ValueError(f"unsupported sample rate {rate}")
    if codec == "ulaw":
        return WireFormat("ulaw", rate, ULAW)
    if codec == "alaw":
        return WireFormat("alaw", rate, ALAW)
    if codec in ("pcm16", "slin"):
        return WireFormat("pcm16", rate)
    raise ValueError(f"unsupported codec {codec!r}")


class PreparedAudio:
    """
    One call's outbound audio, encoded once and shared by every call that
    sends it: the wire payload of each 20 ms frame (and its base64 text,
    made on first use), the PCM the gateway will decode from them (the
    reference an echo is compared with), and which frames carry sound.

    @ivar format: the L{WireFormat}.
    @ivar frames: wire payloads, one per 20 ms frame.
    @ivar reference: int16 samples of the decoded frames, concatenated.
    @ivar active: per frame, whether it is loud enough that its echo must
        come back (see L{ACTIVE_RMS}).
    """

    #: RMS level (int16 units, about -44 dBFS) above which a frame counts
    #: as sound whose echo is expected.
    ACTIVE_RMS: Final = 200.0

    def __init__(self, fmt: WireFormat, pcm: bytes) -> None:
        """
        @param pcm: 16-bit PCM at C{fmt.rate}; a partial last frame is
            padded with silence.
        """
        self.format = fmt
        frameBytes = 2 * fmt.frameSamples
        if len(pcm) % frameBytes:
            pcm = pcm + bytes(frameBytes - len(pcm) % frameBytes)
        wire = fmt.encode(pcm)
        size = fmt.frameBytes
        self.frames: tuple[bytes, ...] = tuple(
            wire[i : i + size] for i in range(0, len(wire), size)
        )
        self.reference: Int16Array = fmt.decode(wire)
        blocks = self.reference.reshape(-1, fmt.frameSamples).astype(np.float64)
        rms = np.sqrt(np.mean(blocks * blocks, axis=1)) if len(blocks) else np.zeros(0)
        self.active: npt.NDArray[np.bool_] = rms > self.ACTIVE_RMS
        self._base64: tuple[str, ...] | None = None
        self._silence64: str | None = None
        self._shifted: dict[float, npt.NDArray[np.float64]] = {}

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def seconds(self) -> float:
        """
        Length in seconds.
        """
        return len(self.frames) * FRAME_SECONDS

    def shifted(self, fraction: float) -> npt.NDArray[np.float64]:
        """
        L{reference} as floats delayed by C{fraction} of a sample, made once
        per fraction (every call that sent this audio shares it).
        """
        found = self._shifted.get(fraction)
        if found is None:
            found = self._shifted[fraction] = delayed(self.reference.astype(np.float64), fraction)
        return found

    @property
    def base64(self) -> tuple[str, ...]:
        """
        Each frame's payload as base64 text (for JSON transports).
        """
        if self._base64 is None:
            self._base64 = tuple(base64Text(f) for f in self.frames)
        return self._base64

    @property
    def silence64(self) -> str:
        """
        One frame of silence as base64 text.
        """
        if self._silence64 is None:
            self._silence64 = base64Text(self.format.silence)
        return self._silence64


class AudioSource:
    """
    What simulated callers say, prepared for each wire format on first
    use and then shared (a transport may learn its format only from the
    gateway's answer: a Vonage NCCO's rate, an Exotel URL's C{sample-rate}).

    Either a WAV file (resampled to each rate, looped or cut to
    C{seconds}), a generated speech-like signal (made at each rate from
    the same seed), or one fixed L{PreparedAudio}.
    """

    def __init__(
        self,
        wav: str | None = None,
        seconds: float | None = None,
        seed: int = 0,
        fixed: PreparedAudio | None = None,
    ) -> None:
        """
        @raise WavFormatError: see L{readWav} (the file is read now).
        @raise OSError: the file cannot be opened.
        """
        self.seconds = seconds
        self.seed = seed
        self._wav: tuple[bytes, int] | None = readWav(wav) if wav is not None else None
        self._cache: dict[WireFormat, PreparedAudio] = {}
        self._fixed = fixed
        if fixed is not None:
            self._cache[fixed.format] = fixed

    def _generated(self, rate: int) -> bytes:
        """
        The speech-like signal at C{rate}. A short one can come out silent
        (its first syllable unvoiced): the next seeds are tried, so a call
        always says something.
        """
        seconds = DEFAULT_SECONDS if self.seconds is None else self.seconds
        for seed in range(self.seed, self.seed + 20):
            pcm = speechLike(seconds, rate, seed=seed)
            if pcm.count(0) < len(pcm) * 3 // 4:
                break
        return pcm

    def prepared(self, fmt: WireFormat) -> PreparedAudio:
        """
        The audio in C{fmt}, encoded once.

        @raise ValueError: a fixed source asked for another format.
        """
        found = self._cache.get(fmt)
        if found is not None:
            return found
        if self._fixed is not None:
            raise ValueError(f"this audio is {self._fixed.format}, not {fmt}")
        if self._wav is None:
            pcm = self._generated(fmt.rate)
        else:
            data, rate = self._wav
            pcm = resample(data, rate, fmt.rate)
            if self.seconds is not None:
                pcm = loopTo(pcm, 2 * round(self.seconds * fmt.rate))
        audio = self._cache[fmt] = PreparedAudio(fmt, pcm)
        return audio
