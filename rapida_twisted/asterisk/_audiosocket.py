# -*- test-case-name: tests.test_audiosocket_codec -*-
"""
Asterisk AudioSocket framing (protocols.md §4).

Every message is C{kind:u8 | length:u16 big-endian | payload[length]}.
L{AudioSocketDecoder} turns a TCP byte stream, cut anywhere, into frames;
the C{encode*} functions build frames. Pure: no reactor, no logging, no I/O.

Direction matters: Asterisk accepts only hang-up and audio kinds
(L{SENDABLE_TO_ASTERISK}); any other kind, or an empty audio frame, makes
it fail the read and hang the call up. L{encodeAudio}, L{encodeHangup} and
L{encodeToAsterisk} are the server's encoders and enforce that;
L{encodeUuid}, L{encodeDtmf}, L{encodeError} and L{encodeFrame} play
Asterisk's part, for the simulator and tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final
from uuid import UUID

from ..errors import DTMF_DIGITS, WireError

#: Frame kinds.
KIND_HANGUP: Final = 0x00
KIND_UUID: Final = 0x01
KIND_DTMF: Final = 0x03
KIND_SLIN: Final = 0x10
KIND_ERROR: Final = 0xFF

#: Audio kind → sample rate of its signed 16-bit little-endian mono PCM.
#: 0x11-0x18 exist from Asterisk 20.17.0 / 21.12.0 / 22.7.0 / 23.1.0;
#: older builds label every rate 0x10.
SLIN_RATES: Final[Mapping[int, int]] = MappingProxyType(
    {
        0x10: 8000,
        0x11: 12000,
        0x12: 16000,
        0x13: 24000,
        0x14: 32000,
        0x15: 44100,
        0x16: 48000,
        0x17: 96000,
        0x18: 192000,
    }
)

#: Sample rate → audio kind (the inverse of L{SLIN_RATES}).
AUDIO_KINDS: Final[Mapping[int, int]] = MappingProxyType({r: k for k, r in SLIN_RATES.items()})

#: The only kinds the server may send: anything else ends the call.
SENDABLE_TO_ASTERISK: Final = frozenset({KIND_HANGUP, *SLIN_RATES})


HEADER_SIZE: Final = 3
#: The format's limit (a 16-bit length).
MAX_PAYLOAD: Final = 0xFFFF
#: L{AudioSocketDecoder}'s default limit: 20 ms at 192 kHz is 7,680 bytes,
#: so this allows 40 ms at the highest rate and refuses junk lengths early.
DEFAULT_MAX_PAYLOAD: Final = 16 * 1024

#: L{AudioSocketError.code} values.
TOO_LARGE: Final = "too_large"
BAD_LENGTH: Final = "bad_length"
BAD_VALUE: Final = "bad_value"
TRUNCATED: Final = "truncated"
NOT_SENDABLE: Final = "not_sendable"
FAILED: Final = "failed"


class AudioSocketError(WireError):
    """
    Bad AudioSocket data, or a frame that must not be built.

    @ivar code: L{TOO_LARGE}, L{BAD_LENGTH}, L{BAD_VALUE}, L{TRUNCATED},
        L{NOT_SENDABLE} or L{FAILED}.
    @ivar reason: a human-readable explanation.
    """


@dataclass(frozen=True, slots=True)
class Hangup:
    """
    0x00: terminate. Asterisk never sends it (it just closes the socket).
    """


@dataclass(frozen=True, slots=True)
class Uuid:
    """
    0x01: the call's UUID, always the first frame from Asterisk.
    """

    uuid: UUID


@dataclass(frozen=True, slots=True)
class Dtmf:
    """
    0x03: one key press (C{0-9 * # A-D}).
    """

    digit: str


@dataclass(frozen=True, slots=True)
class Audio:
    """
    0x10-0x18: signed 16-bit little-endian mono PCM at C{sampleRate}.
    """

    pcm: bytes
    sampleRate: int

    @property
    def kind(self) -> int:
        """
        The frame kind carrying this rate.
        """
        return AUDIO_KINDS[self.sampleRate]


@dataclass(frozen=True, slots=True)
class ErrorFrame:
    """
    0xff: an error report; C{code} is the first payload byte, if any.
    Current Asterisk never sends it; treat it as informational.
    """

    code: int | None
    payload: bytes = b""


@dataclass(frozen=True, slots=True)
class Unknown:
    """
    A well-framed message of a kind this codec does not know (e.g. 0x02).
    """

    kind: int
    payload: bytes


Frame = Hangup | Uuid | Dtmf | Audio | ErrorFrame | Unknown

_HANGUP: Final = Hangup()


def _checkHeader(kind: int, size: int, maxPayload: int) -> None:
    """
    Refuse a frame from its header alone, before its payload is buffered.
    """
    if kind in SLIN_RATES:
        if size & 1:
            raise AudioSocketError(BAD_LENGTH, f"audio frame of odd length {size}")
    elif kind == KIND_UUID:
        if size != 16:
            raise AudioSocketError(BAD_LENGTH, f"UUID frame of length {size}, not 16")
        return
    elif kind == KIND_DTMF:
        if size != 1:
            raise AudioSocketError(BAD_LENGTH, f"DTMF frame of length {size}, not 1")
        return
    if size > maxPayload:
        raise AudioSocketError(
            TOO_LARGE, f"frame kind 0x{kind:02x} of length {size} exceeds {maxPayload}"
        )


def _frame(kind: int, payload: bytes) -> Frame:
    rate = SLIN_RATES.get(kind)
    if rate is not None:
        return Audio(payload, rate)
    if kind == KIND_UUID:
        return Uuid(UUID(bytes=payload))
    if kind == KIND_DTMF:
        digit = chr(payload[0]).upper()
        if digit not in DTMF_DIGITS:
            raise AudioSocketError(BAD_VALUE, f"DTMF frame carries {payload!r}")
        return Dtmf(digit)
    if kind == KIND_HANGUP:
        return _HANGUP
    if kind == KIND_ERROR:
        return ErrorFrame(payload[0] if payload else None, payload)
    return Unknown(kind, payload)


class AudioSocketDecoder:
    """
    Incremental decoder of the AudioSocket byte stream.

    Feed it whatever TCP delivers; it returns each frame once complete.
    Lengths are checked as soon as a header is complete, before any of the
    payload is buffered. Work is linear in the bytes fed, however they are
    split: a partial frame is only appended to until it is complete.

    After it raises, the stream cannot be trusted: every later L{feed}
    raises too (close the connection). Frames completed earlier in the
    failing call are not returned.
    """

    def __init__(self, maxPayload: int = DEFAULT_MAX_PAYLOAD) -> None:
        """
        @param maxPayload: the longest audio, error or unknown payload
            accepted (at most L{MAX_PAYLOAD}).
        """
        if not 0 <= maxPayload <= MAX_PAYLOAD:
            raise ValueError(f"maxPayload must be within 0..{MAX_PAYLOAD}")
        self.maxPayload = maxPayload
        self._buffer = bytearray()
        self._need = HEADER_SIZE
        self._failure: AudioSocketError | None = None

    @property
    def pending(self) -> int:
        """
        Bytes of an incomplete frame held back.
        """
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame]:
        """
        Add bytes from the stream.

        @return: the frames completed by them, in order (often none).
        @raise AudioSocketError: an oversize or impossible length, a bad
            DTMF symbol, or an earlier failure (L{FAILED}).
        """
        if self._failure is not None:
            raise AudioSocketError(FAILED, f"stream already failed ({self._failure})")
        buffer = self._buffer
        view: bytes
        if buffer:
            buffer += data
            if len(buffer) < self._need:
                return []
            view = bytes(buffer)
            buffer.clear()
        else:
            view = bytes(data)
        frames: list[Frame] = []
        end = len(view)
        pos = 0
        need = HEADER_SIZE
        try:
            while end - pos >= HEADER_SIZE:
                kind = view[pos]
                size = (view[pos + 1] << 8) | view[pos + 2]
                _checkHeader(kind, size, self.maxPayload)
                stop = pos + HEADER_SIZE + size
                if stop > end:
                    need = HEADER_SIZE + size
                    break
                frames.append(_frame(kind, view[pos + HEADER_SIZE : stop]))
                pos = stop
        except AudioSocketError as e:
            self._failure = e
            raise
        if pos < end:
            buffer += memoryview(view)[pos:]
        self._need = need
        return frames

    def finish(self) -> None:
        """
        The stream ended (connection lost).

        @raise AudioSocketError: it ended inside a frame (L{TRUNCATED}).
        """
        if self._buffer:
            raise AudioSocketError(
                TRUNCATED, f"stream ended inside a frame ({len(self._buffer)} bytes)"
            )


def decodeFrames(data: bytes, maxPayload: int = DEFAULT_MAX_PAYLOAD) -> list[Frame]:
    """
    Decode a buffer holding whole frames only.

    @raise AudioSocketError: as L{AudioSocketDecoder.feed}, or L{TRUNCATED}
        if the buffer ends inside a frame.
    """
    decoder = AudioSocketDecoder(maxPayload)
    frames = decoder.feed(data)
    decoder.finish()
    return frames


def encodeFrame(kind: int, payload: bytes = b"") -> bytes:
    """
    Any frame, unchecked beyond the format itself (simulator and tests).

    @raise AudioSocketError: C{kind} outside 0..255 (L{BAD_VALUE}) or
        C{payload} over 65,535 bytes (L{TOO_LARGE}).
    """
    if not 0 <= kind <= 0xFF:
        raise AudioSocketError(BAD_VALUE, f"frame kind {kind} out of range")
    size = len(payload)
    if size > MAX_PAYLOAD:
        raise AudioSocketError(TOO_LARGE, f"payload of {size} exceeds {MAX_PAYLOAD}")
    return bytes((kind, size >> 8, size & 0xFF)) + payload


def encodeToAsterisk(kind: int, payload: bytes = b"") -> bytes:
    """
    A frame the server may send: only L{SENDABLE_TO_ASTERISK} kinds, and
    audio only non-empty and of even length.

    @raise AudioSocketError: any other frame (L{NOT_SENDABLE},
        L{BAD_LENGTH}), or as L{encodeFrame}.
    """
    if kind not in SENDABLE_TO_ASTERISK:
        raise AudioSocketError(NOT_SENDABLE, f"Asterisk hangs up on frame kind 0x{kind & 0xFF:02x}")
    if kind != KIND_HANGUP and (not payload or len(payload) & 1):
        raise AudioSocketError(BAD_LENGTH, f"audio frame of length {len(payload)}")
    return encodeFrame(kind, payload)


def encodeAudio(pcm: bytes, rate: int = 8000) -> bytes:
    """
    One audio frame for Asterisk (server side).

    @param pcm: signed 16-bit little-endian mono PCM, normally 20 ms.
    @param rate: its sample rate; 8000 → kind 0x10, 16000 → 0x12, ...
        Rates above 8000 need Asterisk 20.17 / 21.12 / 22.7 / 23.1 or later.
    @raise AudioSocketError: a rate with no kind (L{BAD_VALUE}); an empty,
        odd-length or oversized C{pcm} (L{BAD_LENGTH}, L{TOO_LARGE}).
    """
    kind = AUDIO_KINDS.get(rate)
    if kind is None:
        raise AudioSocketError(BAD_VALUE, f"no AudioSocket kind for {rate} Hz")
    size = len(pcm)
    if not size or size & 1:
        raise AudioSocketError(BAD_LENGTH, f"audio frame of length {size}")
    if size > MAX_PAYLOAD:
        raise AudioSocketError(TOO_LARGE, f"payload of {size} exceeds {MAX_PAYLOAD}")
    return bytes((kind, size >> 8, size & 0xFF)) + pcm


_HANGUP_FRAME: Final = b"\x00\x00\x00"


def encodeHangup() -> bytes:
    """
    The hang-up frame C{00 00 00} (server side).
    """
    return _HANGUP_FRAME


def encodeUuid(uuid: UUID) -> bytes:
    """
    The 0x01 UUID frame Asterisk sends first (simulator side).
    """
    return encodeFrame(KIND_UUID, uuid.bytes)


def encodeDtmf(digit: str) -> bytes:
    """
    A 0x03 DTMF frame as Asterisk sends it (simulator side).

    @raise AudioSocketError: not one DTMF symbol (L{BAD_VALUE}).
    """
    if len(digit) != 1 or digit.upper() not in DTMF_DIGITS:
        raise AudioSocketError(BAD_VALUE, f"not a DTMF digit: {digit[:8]!r}")
    return encodeFrame(KIND_DTMF, digit.upper().encode("ascii"))


def encodeError(code: int | None = None) -> bytes:
    """
    A 0xff error frame, with an optional one-byte code (simulator side;
    never send it to Asterisk, which hangs up on it).

    @raise AudioSocketError: C{code} outside 0..255 (L{BAD_VALUE}).
    """
    if code is None:
        return encodeFrame(KIND_ERROR)
    if not 0 <= code <= 0xFF:
        raise AudioSocketError(BAD_VALUE, f"error code {code} out of range")
    return encodeFrame(KIND_ERROR, bytes((code,)))
