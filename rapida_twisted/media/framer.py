# -*- test-case-name: tests.test_media_framer -*-
"""
Cut a byte stream arriving in chunks of any size into frames of exactly
one size (for example 160 bytes of μ-law or 640 bytes of 16 kHz PCM, each
20 ms), padding the tail with the codec's silence when asked.
"""

from __future__ import annotations

__all__ = ["Framer"]


class Framer:
    """
    Any chunk sizes in, exact frames out.

    Holds fewer than C{frameBytes} bytes between calls, so it is bounded
    by construction; each byte is copied at most twice (into the pending
    buffer, then into its frame), never re-copied per chunk.

    @ivar frameBytes: the size of every frame returned.
    @ivar silence: the codec's silence pattern (one sample: C{b"\\xff"}
        for μ-law, C{b"\\xd5"} for A-law, C{b"\\x00\\x00"} for 16-bit
        PCM), repeated to pad the last frame.
    """

    def __init__(self, frameBytes: int, silence: bytes) -> None:
        """
        @raise ValueError: C{frameBytes} is not positive, C{silence} is
            empty, or C{frameBytes} is not a whole number of silence
            patterns.
        """
        if frameBytes <= 0:
            raise ValueError(f"frameBytes must be positive, not {frameBytes}")
        if not silence or frameBytes % len(silence):
            raise ValueError(f"{frameBytes}-byte frames cannot be filled with {silence!r}")
        self.frameBytes = frameBytes
        self.silence = bytes(silence)
        self._silenceFrame = self.silence * (frameBytes // len(silence))
        self._pending = bytearray()

    @property
    def pending(self) -> int:
        """
        Bytes held back, waiting for the rest of their frame.
        """
        return len(self._pending)

    def push(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """
        Add a chunk; return every frame now complete, oldest first.
        """
        size = self.frameBytes
        pending = self._pending
        if not pending:
            if len(data) == size and isinstance(data, bytes):
                return [data]
            view = memoryview(data).cast("B")
            whole = len(view) - len(view) % size
            pending += view[whole:]
            return [bytes(view[i : i + size]) for i in range(0, whole, size)]
        pending += data
        whole = len(pending) - len(pending) % size
        if not whole:
            return []
        with memoryview(pending) as view:
            frames = [bytes(view[i : i + size]) for i in range(0, whole, size)]
        del pending[:whole]
        return frames

    def flush(self) -> bytes | None:
        """
        Complete the pending tail with silence and return it as a frame
        (the silence pattern stays aligned to the frame, so PCM samples
        stay whole), or C{None} when nothing is pending.
        """
        pending = self._pending
        if not pending:
            return None
        frame = bytes(pending) + self._silenceFrame[len(pending) :]
        pending.clear()
        return frame

    def clear(self) -> int:
        """
        Drop the pending tail (barge-in); return how many bytes were dropped.
        """
        dropped = len(self._pending)
        self._pending.clear()
        return dropped
