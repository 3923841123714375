"""
Tests for L{rapida_twisted.media.framer}.
"""

from __future__ import annotations

import array

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from rapida_twisted.media.framer import Framer


class FramerTests(SynchronousTestCase):
    """
    Exact frames out of arbitrary chunks.
    """

    def test_exactFrame(self) -> None:
        """
        A chunk of exactly one frame comes straight back, as bytes.
        """
        f = Framer(4, b"\xff")
        frame = f.push(bytearray(b"abcd"))
        self.assertEqual(frame, [b"abcd"])
        self.assertIsInstance(frame[0], bytes)
        self.assertEqual(f.pending, 0)

    def test_exactBytesFrameNotCopied(self) -> None:
        data = b"wxyz"
        self.assertIs(Framer(4, b"\xff").push(data)[0], data)

    def test_wideMemoryview(self) -> None:
        """
        A memoryview of 16-bit items is framed by bytes, not items.
        """
        samples = array.array("h", range(6))
        f = Framer(4, b"\x00\x00")
        frames = f.push(memoryview(samples))
        self.assertEqual(b"".join(frames), samples.tobytes()[:12])
        self.assertEqual(len(frames), 3)
        self.assertEqual(f.pending, 0)

    def test_smallChunks(self) -> None:
        f = Framer(4, b"\xff")
        self.assertEqual(f.push(b"ab"), [])
        self.assertEqual(f.pending, 2)
        self.assertEqual(f.push(b"c"), [])
        self.assertEqual(f.push(b"defghij"), [b"abcd", b"efgh"])
        self.assertEqual(f.pending, 2)

    def test_largeChunk(self) -> None:
        f = Framer(3, b"\x00")
        self.assertEqual(f.push(b"0123456789"), [b"012", b"345", b"678"])
        self.assertEqual(f.pending, 1)
        self.assertEqual(f.push(memoryview(b"ab")), [b"9ab"])

    def test_flushPads(self) -> None:
        """
        C{flush} completes the tail with the codec's silence.
        """
        f = Framer(5, b"\xd5")
        f.push(b"xy")
        self.assertEqual(f.flush(), b"xy\xd5\xd5\xd5")
        self.assertEqual(f.pending, 0)
        self.assertIsNone(f.flush())

    def test_flushKeepsSamplesAligned(self) -> None:
        """
        With a multi-byte silence pattern the padding follows the frame's
        sample grid.
        """
        f = Framer(6, b"\x01\x02")
        f.push(b"abc")
        self.assertEqual(f.flush(), b"abc\x02\x01\x02")

    def test_clear(self) -> None:
        f = Framer(4, b"\xff")
        f.push(b"abcdef")
        self.assertEqual(f.clear(), 2)
        self.assertEqual(f.pending, 0)
        self.assertEqual(f.push(b"wxyz"), [b"wxyz"])
        self.assertEqual(f.clear(), 0)

    def test_emptyPush(self) -> None:
        f = Framer(4, b"\xff")
        self.assertEqual(f.push(b""), [])
        f.push(b"a")
        self.assertEqual(f.push(b""), [])
        self.assertEqual(f.pending, 1)

    def test_badArguments(self) -> None:
        self.assertRaises(ValueError, Framer, 0, b"\xff")
        self.assertRaises(ValueError, Framer, 4, b"")
        self.assertRaises(ValueError, Framer, 5, b"\x00\x00")

    def test_linearCost(self) -> None:
        """
        One byte at a time never holds more than a frame.
        """
        f = Framer(160, b"\xff")
        frames = []
        for i in range(1000):
            frames += f.push(bytes([i % 256]))
            self.assertLess(f.pending, 160)
        self.assertEqual(len(frames), 6)
        self.assertEqual(b"".join(frames), bytes(i % 256 for i in range(960)))

    @given(
        st.lists(st.binary(max_size=700), max_size=20),
        st.integers(min_value=1, max_value=320),
    )
    def test_anyChunking(self, chunks: list[bytes], size: int) -> None:
        """
        Whatever the chunking, the frames are the stream cut every
        C{size} bytes, and the flushed tail is the rest padded.
        """
        f = Framer(size, b"\x7f")
        frames = [frame for chunk in chunks for frame in f.push(chunk)]
        stream = b"".join(chunks)
        whole = len(stream) - len(stream) % size
        self.assertTrue(all(len(frame) == size for frame in frames))
        self.assertEqual(b"".join(frames), stream[:whole])
        tail = f.flush()
        if whole == len(stream):
            self.assertIsNone(tail)
        else:
            self.assertEqual(tail, stream[whole:] + b"\x7f" * (size - len(stream) + whole))
