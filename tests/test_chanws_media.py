"""
Tests for L{rapida_twisted.asterisk._media}: the chan_websocket adapter,
end to end through the web site in memory with the dialplan's steps
(webhook → context id → C{Dial(WebSocket/...)} connects to
C{/v1/talk/asterisk/ctx/{id}} → C{MEDIA_START} → media), in both control
formats. The behaviour shared with AudioSocket is
L{tests.test_audiosocket_server.AsteriskCallSuite}.
"""

from __future__ import annotations

import struct
import uuid
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from rapida_twisted.asterisk._chanws import (
    MAX_COMMAND_BYTES,
    AnyCommand,
    Command,
    CommandMessage,
    ControlFormat,
    DtmfEnd,
    ErrorEvent,
    Event,
    MediaBufferingCompleted,
    MediaMarkProcessed,
    MediaStart,
    MediaXoff,
    MediaXon,
    QueueDrained,
    decodeCommand,
    encodeEvent,
)
from rapida_twisted.asterisk._media import MAX_PAUSED, ChanWebSocketAdapter, wireFormat
from rapida_twisted.call import FormatError
from rapida_twisted.interfaces import ICallTransport, IMediaAdapter
from rapida_twisted.media.analysis import correlation, rms, speechLike
from rapida_twisted.media.g711 import alawDecode, alawEncode, ulawDecode, ulawEncode
from rapida_twisted.providers._stream import START_TIMEOUT

from ._web import Harness, StreamClient, clientFrame, serverFrames
from .test_audiosocket_server import SILENCE_8K, AsteriskCallSuite, AsteriskHelpers

CHANNEL_ID = "pbx1-1700000000.42"


class AsteriskWs(StreamClient):
    """
    Asterisk's end of one chan_websocket connection: C{texts} are the
    commands the gateway sent (raw), C{commands} the same decoded as
    Asterisk reads them, C{binary} the media.
    """

    def __init__(self, harness: Harness, path: str, fmt: ControlFormat, **kw: Any) -> None:
        self.fmt = fmt
        self.texts: list[str] = []
        self.commands: list[AnyCommand] = []
        self.format = "ulaw"
        self.acked: set[str] = set()
        super().__init__(harness, path, **kw)

    def _read(self) -> None:
        self._pending += self.transport.value()
        self.transport.clear()
        frames, self._pending = serverFrames(self._pending)
        for opcode, payload in frames:
            if opcode == 1:
                self.texts.append(payload.decode())
                self.commands.append(decodeCommand(payload))
            elif opcode == 2:
                self.binary.append(payload)
            elif opcode == 8:
                self.closeCode = struct.unpack("!H", payload[:2])[0] if payload else None
                self.closeReason = payload[2:].decode()

    def event(self, event: Event) -> None:
        self.send(encodeEvent(event, self.fmt))

    def mediaStart(
        self,
        format: str = "ulaw",
        optimalFrameSize: int | None = None,
        ptime: int = 20,
        channelId: str | None = CHANNEL_ID,
    ) -> None:
        """
        The first message, as Asterisk sends it.
        """
        self.format = format
        if optimalFrameSize is None:
            optimalFrameSize = {"ulaw": 160, "alaw": 160, "slin": 320, "slin16": 640}.get(
                format, 160
            )
        self.event(
            MediaStart(
                connectionId="rapida",
                channel="WebSocket/rapida/0x7f0001",
                channelId=channelId,
                format=format,
                optimalFrameSize=optimalFrameSize,
                ptime=ptime,
                channelVariables={"CTX": "x"} if self.fmt is ControlFormat.JSON else {},
            )
        )

    def names(self) -> list[str]:
        """
        The commands sent so far, with their correlation ids.
        """
        self._read()
        out = []
        for c in self.commands:
            assert isinstance(c, CommandMessage)
            out.append(c.command.value + ("" if c.correlationId is None else " " + c.correlationId))
        return out

    def ackMarks(self) -> None:
        """
        Play everything: acknowledge each mark the gateway sent, as
        Asterisk does once it reaches the queue head.
        """
        self._read()
        for c in self.commands:
            if (
                isinstance(c, CommandMessage)
                and c.correlationId
                and c.correlationId not in self.acked
            ):
                self.acked.add(c.correlationId)
                if c.command is Command.MARK_MEDIA:
                    self.event(MediaMarkProcessed(c.correlationId, CHANNEL_ID))
                elif c.command is Command.STOP_MEDIA_BUFFERING:
                    self.event(MediaBufferingCompleted(c.correlationId, CHANNEL_ID))

    def close(self, code: int = 1000) -> None:
        """
        Asterisk hangs up: a close frame, then the socket goes.
        """
        self.transport.protocol.dataReceived(clientFrame(struct.pack("!H", code), 8))
        self.disconnect()

    # the shared suite's Peer

    def say(self, pcm: bytes) -> None:
        if self.format == "ulaw":
            data = ulawEncode(pcm)
        elif self.format == "alaw":
            data = alawEncode(pcm)
        else:
            data = pcm
        self.send(data, binary=True)

    def dtmf(self, digit: str) -> None:
        self.event(DtmfEnd(digit, CHANNEL_ID))

    def hangUp(self) -> None:
        self.close()

    def heard(self) -> bytes:
        self._read()
        data = b"".join(self.binary)
        if self.format == "ulaw":
            return ulawDecode(data)
        if self.format == "alaw":
            return alawDecode(data)
        return data

    @property
    def refused(self) -> bool:
        self._read()
        return not self.status.startswith("HTTP/1.1 101") or (
            self.closeCode is not None and self.closeCode >= 4000
        )

    @property
    def hungUpByGateway(self) -> bool:
        names = self.names()
        return bool(names) and names[-1] == "HANGUP" and self.closeCode == 1000


class ChanWsBase(SynchronousTestCase, AsteriskHelpers):
    fmt = ControlFormat.PLAIN
    transportName = "chan_websocket"
    #: the route refuses upgrades before the adapter exists
    refusalLabel = "websocket"

    def setUp(self) -> None:
        self.h = Harness('[[assistants]]\nid = "speaker"\nkind = "python"\n')

    def open(self, contextId: str, query: bool = True, **kw: Any) -> AsteriskWs:
        """
        C{Dial(WebSocket/rapida/...v(contextId=...))} as in the README: the
        upgrade to C{/v1/talk/asterisk/ctx?contextId=...} (C{query=False}:
        the path form), nothing sent yet.
        """
        path = (
            f"/v1/talk/asterisk/ctx?contextId={contextId}"
            if query
            else f"/v1/talk/asterisk/ctx/{contextId}"
        )
        return AsteriskWs(self.h, path, self.fmt, **kw)

    def connect(self, contextId: str, **start: Any) -> AsteriskWs:
        """
        The upgrade and, when it is accepted, C{MEDIA_START}.
        """
        peer = self.open(contextId)
        if peer.status.startswith("HTTP/1.1 101"):
            peer.mediaStart(**start)
        return peer

    def started(self, assistant: str = "speaker", **start: Any) -> tuple[str, AsteriskWs]:
        if assistant == "speaker":
            self.useSpeaker()
        contextId = self.webhook(assistant)
        return contextId, self.connect(contextId, **start)

    def adapter(self, peer: AsteriskWs) -> ChanWebSocketAdapter:
        adapter = peer.adapter
        assert isinstance(adapter, ChanWebSocketAdapter)
        return adapter


class PlainSuiteTests(ChanWsBase, AsteriskCallSuite):
    """
    The shared suite over chan_websocket, plain-text control (the
    default of every version).
    """

    def pump(self) -> None:
        for peer in getattr(self, "_peers", []):
            peer.ackMarks()

    def connect(self, contextId: str, **start: Any) -> AsteriskWs:
        peer = super().connect(contextId, **start)
        self.__dict__.setdefault("_peers", []).append(peer)
        return peer


class JsonSuiteTests(PlainSuiteTests):
    """
    The shared suite with C{f(json)} (20.18 / 22.8 / 23.2 and later).
    """

    fmt = ControlFormat.JSON


class ChanWsTests(ChanWsBase):
    """
    chan_websocket specifics, plain-text control.
    """

    def test_interfaces(self) -> None:
        _, peer = self.started()
        adapter = self.adapter(peer)
        verifyObject(IMediaAdapter, adapter)
        verifyObject(ICallTransport, adapter)
        self.assertFalse(adapter.paced)
        self.assertTrue(adapter.supportsMarks)

    def test_media_start_recorded(self) -> None:
        """
        C{MEDIA_START} is recorded in the C{claimed} event, and its
        C{channel_id} becomes the context's channel.
        """
        self.useSpeaker()
        contextId = self.webhook("speaker")
        peer = self.connect(contextId)
        ((_, _, claimed),) = self.events(contextId, "claimed")
        self.assertEqual(
            claimed,
            {
                "transport": "chan_websocket",
                "connection_id": "rapida",
                "channel": "WebSocket/rapida/0x7f0001",
                "channel_id": CHANNEL_ID,
                "format": "ulaw",
                "optimal_frame_size": 160,
                "ptime": 20,
                "control_format": self.fmt.value,
            },
        )
        self.assertEqual(self.context(contextId).channel_uuid, CHANNEL_ID)
        self.assertEqual(self.adapter(peer).controlFormat, self.fmt)

    def test_webhook_channel_kept(self) -> None:
        """
        A channel id the dialplan gave the webhook (C{${UNIQUEID}}) stays.
        """
        contextId = self.webhook("echo", channel_id="from-dialplan")
        self.connect(contextId)
        self.assertEqual(self.context(contextId).channel_uuid, "from-dialplan")

    def test_path_context_id(self) -> None:
        """
        The id in the path works too (a C{websocket_client.conf} section
        per call, or an ARI application building the URI).
        """
        contextId = self.webhook()
        peer = self.open(contextId, query=False)
        peer.mediaStart()
        self.assertIsNone(peer.closeCode)
        self.assertEqual(self.context(contextId).status, "claimed")

    def test_no_extensions_offered(self) -> None:
        """
        Asterisk refuses a handshake answered with extensions: none are
        accepted even when offered.
        """
        contextId = self.webhook()
        peer = self.open(contextId, headers={"Sec-WebSocket-Extensions": "permessage-deflate"})
        self.assertTrue(peer.status.startswith("HTTP/1.1 101"))
        self.assertNotIn(b"sec-websocket-extensions", peer.head.lower())

    # --- codecs -------------------------------------------------------------------------

    def echo(self, format: str, rate: int, frameBytes: int) -> None:
        contextId = self.webhook()
        peer = self.connect(contextId, format=format)
        said = speechLike(1.0, rate, seed=5)
        step = rate // 50 * 2
        for i in range(0, len(said), step):
            pcm = said[i : i + step]
            peer.send(
                pcm
                if format.startswith("slin")
                else ulawEncode(pcm)
                if format == "ulaw"
                else alawEncode(pcm),
                binary=True,
            )
            self.tick()
        self.tick(10)
        self.assertEqual({len(b) for b in peer.binary}, {frameBytes})
        score, _ = correlation(said, peer.heard(), 4000)
        self.assertGreaterEqual(score, 0.9, format)

    def test_ulaw(self) -> None:
        self.echo("ulaw", 8000, 160)

    def test_alaw(self) -> None:
        self.echo("alaw", 8000, 160)

    def test_slin(self) -> None:
        self.echo("slin", 8000, 320)

    def test_slin16(self) -> None:
        self.echo("slin16", 16000, 640)

    def test_unsupported_format(self) -> None:
        """
        A format the media core cannot handle (opus, g722, slin48):
        closed with 4400, the context fails.
        """
        for fmt in ("opus", "g722", "slin48"):
            contextId = self.webhook()
            peer = self.connect(contextId, format=fmt, optimalFrameSize=100)
            self.assertEqual(peer.closeCode, 4400, fmt)
            self.assertIn("media format", peer.closeReason)
            self.assertEqual(self.context(contextId).status, "failed")
            ((_, _, error),) = self.events(contextId, "error")
            self.assertEqual(error["code"], "bad_format")

    def test_wire_format(self) -> None:
        def start(fmt: str, ptime: int = 20) -> MediaStart:
            return MediaStart(None, None, None, fmt, 160, ptime, {})

        self.assertEqual(wireFormat(start("slin16")).frameBytes, 640)
        self.assertEqual(wireFormat(start("ulaw", 30)).frameBytes, 240)
        self.assertEqual(wireFormat(start("alaw", 7)).frameMs, 7)
        self.assertRaises(FormatError, wireFormat, start("slin12"))
        self.assertRaises(FormatError, wireFormat, start("opus"))

    # --- outbound: frames, marks, buffering -------------------------------------------------

    def test_whole_frames_no_buffering(self) -> None:
        """
        Frames of exactly C{optimal_frame_size}: one BINARY message each,
        no buffering commands, C{MARK_MEDIA} after the response, and its
        acknowledgement completes the playback.
        """
        contextId, peer = self.started()
        self.assertEqual(len(peer.binary), 5)
        self.assertEqual({len(b) for b in peer.binary}, {160})
        self.assertEqual(peer.names(), ["MARK_MEDIA m1"])
        self.assertFalse(self.adapter(peer).wrapped)
        self.assertEqual(self.speaker.sessions[0].completed, [])
        peer.ackMarks()
        self.assertEqual(self.speaker.sessions[0].completed, ["greeting"])
        self.assertEqual(
            self.events(contextId, "mark"), [("provider", "mark", {"name": "greeting"})]
        )

    def test_partial_frames_buffered(self) -> None:
        """
        Frames that are not whole C{optimal_frame_size} frames (Asterisk
        would drop them) are wrapped: START_MEDIA_BUFFERING before the
        audio, STOP_MEDIA_BUFFERING (flushing the tail) at its end, then
        the mark; again for the next response.
        """
        _, peer = self.started(optimalFrameSize=240)
        self.assertTrue(self.adapter(peer).wrapped)
        self.assertEqual(
            peer.names(), ["START_MEDIA_BUFFERING", "STOP_MEDIA_BUFFERING", "MARK_MEDIA m1"]
        )
        peer.dtmf("5")
        self.assertEqual(
            peer.names()[3:], ["START_MEDIA_BUFFERING", "STOP_MEDIA_BUFFERING", "MARK_MEDIA m2"]
        )
        peer.ackMarks()
        self.assertEqual(self.speaker.sessions[0].completed, ["greeting", "more"])

    def test_marks_on_old_asterisk(self) -> None:
        """
        Without C{channel_id} in MEDIA_START (20.16 / 21.11 / 22.6, no
        MARK_MEDIA), the mark is STOP_MEDIA_BUFFERING's correlation id and
        MEDIA_BUFFERING_COMPLETED acknowledges it.
        """
        _, peer = self.started(channelId=None)
        self.assertTrue(self.adapter(peer).marksByBuffering)
        self.assertEqual(peer.names(), ["START_MEDIA_BUFFERING", "STOP_MEDIA_BUFFERING m1"])
        peer.ackMarks()
        self.assertEqual(self.speaker.sessions[0].completed, ["greeting"])

    def test_named_mark(self) -> None:
        _, peer = self.started()
        peer.ackMarks()
        peer.dtmf("8")
        self.assertEqual(peer.names()[-1], "MARK_MEDIA m2")
        peer.ackMarks()
        self.assertEqual(self.speaker.sessions[0].completed, ["greeting", "named"])

    def test_unknown_ack_ignored(self) -> None:
        _, peer = self.started()
        peer.event(MediaMarkProcessed("nope", CHANNEL_ID))
        peer.event(MediaMarkProcessed("", CHANNEL_ID))
        peer.event(MediaBufferingCompleted("", CHANNEL_ID))
        self.assertIsNone(peer.closeCode)
        self.assertEqual(self.speaker.sessions[0].completed, [])

    def test_flush_on_barge_in(self) -> None:
        """
        The assistant clears: FLUSH_MEDIA, and the mark it flushed is never
        reported.
        """
        contextId, peer = self.started()
        peer.ackMarks()
        peer.dtmf("1")
        peer.dtmf("0")
        self.assertEqual(peer.names()[-1], "FLUSH_MEDIA")
        sent = len(peer.binary)
        self.tick(200)
        peer.ackMarks()
        self.assertEqual(len(peer.binary), sent)
        self.assertEqual(self.speaker.sessions[0].completed, ["greeting"])
        self.assertEqual(len(self.events(contextId, "clear")), 1)

    def test_commands_within_limits(self) -> None:
        """
        Every command fits Asterisk's 128 bytes, every media message is
        far below 65,535 bytes.
        """
        _, peer = self.started(optimalFrameSize=240)
        for digit in "58150":
            peer.dtmf(digit)
            self.tick(5)
        peer.dtmf("9")
        self.assertTrue(peer.texts)
        self.assertTrue(all(len(t.encode()) <= MAX_COMMAND_BYTES for t in peer.texts))
        self.assertTrue(all(len(b) < 65535 for b in peer.binary))

    # --- flow control ---------------------------------------------------------------------

    def test_xoff_xon(self) -> None:
        """
        After MEDIA_XOFF nothing is sent; MEDIA_XON sends what waited, in
        order (audio, then the mark after it).
        """
        _, peer = self.started()
        peer.ackMarks()
        peer.event(MediaXoff(CHANNEL_ID))
        sent, texts = len(peer.binary), len(peer.texts)
        peer.dtmf("5")
        self.tick(10)
        self.assertEqual((len(peer.binary), len(peer.texts)), (sent, texts))
        self.assertTrue(self.adapter(peer).paused)
        peer.event(MediaXon(CHANNEL_ID))
        self.assertEqual(len(peer.binary) - sent, 5)
        self.assertEqual(peer.names()[-1], "MARK_MEDIA m2")
        self.assertFalse(self.adapter(peer).paused)

    def test_xoff_bounded(self) -> None:
        """
        A peer that never says XON holds at most L{MAX_PAUSED} frames; the
        oldest go.
        """
        _, peer = self.started("echo")
        peer.event(MediaXoff(CHANNEL_ID))
        for _ in range(MAX_PAUSED + 20):
            peer.say(SILENCE_8K)
            self.tick()
        adapter = self.adapter(peer)
        self.assertEqual(adapter._heldFrames, MAX_PAUSED)
        dropped = self.h.gateway.metrics.registry.get_sample_value(
            "rapida_frames_dropped_total", {"direction": "outbound"}
        )
        self.assertGreaterEqual(dropped or 0.0, 20)
        before = len(peer.binary)
        peer.event(MediaXon(CHANNEL_ID))
        self.assertEqual(len(peer.binary) - before, MAX_PAUSED)

    def test_clear_during_xoff(self) -> None:
        """
        A barge-in while paused: FLUSH_MEDIA at once, what waited is
        dropped, and sending resumes (Asterisk's queue is empty).
        """
        _, peer = self.started()
        peer.ackMarks()
        peer.event(MediaXoff(CHANNEL_ID))
        peer.dtmf("1")
        sent = len(peer.binary)
        peer.dtmf("0")
        self.assertEqual(peer.names()[-1], "FLUSH_MEDIA")
        self.assertEqual(len(peer.binary), sent)
        peer.dtmf("5")
        self.assertEqual(len(peer.binary) - sent, 5)

    # --- inbound events -----------------------------------------------------------------

    def test_dtmf(self) -> None:
        contextId, peer = self.started("echo")
        for digit in "0123456789*#ABCD":
            peer.event(DtmfEnd(digit, CHANNEL_ID))
        self.assertEqual(
            [p["digit"] for _, _, p in self.events(contextId, "dtmf")], list("0123456789*#ABCD")
        )

    def test_error_event(self) -> None:
        contextId, peer = self.started()
        peer.event(ErrorEvent("Unable to parse JSON command", CHANNEL_ID))
        self.assertEqual(
            self.events(contextId, "error"),
            [
                (
                    "provider",
                    "error",
                    {"code": "asterisk_error", "reason": "Unable to parse JSON command"},
                )
            ],
        )
        self.assertIsNone(peer.closeCode)

    def test_other_events_ignored(self) -> None:
        _, peer = self.started()
        peer.event(QueueDrained(CHANNEL_ID))
        peer.send("STATUS channel_id:x queue_length:3 xon_level:800 xoff_level:900")
        peer.send("SOMETHING_NEW key:value")
        peer.mediaStart()
        self.assertIsNone(peer.closeCode)
        self.assertEqual(self.errorCount("unknown_event"), 1)
        self.assertEqual(self.errorCount("duplicate_start"), 1)

    def test_garbage_after_start(self) -> None:
        """
        Garbage control text is counted; ten in a row close the stream.
        """
        contextId, peer = self.started()
        peer.send("not a control message")
        peer.send("{nope")
        self.assertIsNone(peer.closeCode)
        self.assertEqual(self.errorCount("garbage"), 2)
        for _ in range(8):
            peer.send("\x00\x01")
        self.assertEqual(peer.closeCode, 4400)
        self.assertEqual(self.context(contextId).status, "failed")

    def test_odd_slin_counted(self) -> None:
        contextId, peer = self.started(format="slin")
        peer.send(b"\x00" * 321, binary=True)
        self.assertEqual(self.errorCount("bad_audio"), 1)
        self.assertIsNone(peer.closeCode)

    # --- before MEDIA_START -----------------------------------------------------------------

    def test_garbage_before_start(self) -> None:
        contextId = self.webhook()
        peer = self.open(contextId)
        peer.send("MEDIA_START format:ulaw")
        self.assertEqual(peer.closeCode, 4400)
        self.assertIn("optimal_frame_size", peer.closeReason)
        self.assertEqual(self.context(contextId).status, "failed")

    def test_media_before_start(self) -> None:
        contextId = self.webhook()
        peer = self.open(contextId)
        peer.send(b"\xff" * 160, binary=True)
        self.assertEqual(peer.closeCode, 4400)
        self.assertIn("before MEDIA_START", peer.closeReason)
        self.assertEqual(self.context(contextId).status, "failed")

    def test_no_media_start(self) -> None:
        contextId = self.webhook()
        peer = self.open(contextId)
        self.h.clock.advance(START_TIMEOUT)
        peer.read()
        self.assertEqual(peer.closeCode, 4400)
        self.assertEqual(self.context(contextId).status, "failed")

    def test_closed_before_start(self) -> None:
        """
        The context was claimed at the upgrade: a socket closed before
        MEDIA_START still finishes it (completed, once).
        """
        contextId = self.webhook()
        peer = self.open(contextId)
        peer.close()
        self.assertEqual(self.context(contextId).status, "completed")
        self.assertEqual(len(self.events(contextId, "ended")), 1)

    def test_unknown_context_404(self) -> None:
        peer = self.open(str(uuid.uuid4()))
        self.assertIn(" 404 ", peer.status)

    def test_claimed_context_409(self) -> None:
        contextId, first = self.started()
        second = self.open(contextId)
        self.assertIn(" 409 ", second.status)
        self.assertIsNone(first.closeCode)

    # --- hang-up -----------------------------------------------------------------------------

    def test_assistant_hangup(self) -> None:
        """
        HANGUP, then a normal close.
        """
        contextId, peer = self.started()
        peer.dtmf("9")
        self.assertEqual(
            peer.texts[-1], "HANGUP" if self.fmt is ControlFormat.PLAIN else '{"command":"HANGUP"}'
        )
        self.assertEqual(peer.closeCode, 1000)
        self.assertEqual(self.context(contextId).status, "completed")

    def test_caller_hangup_mid_response(self) -> None:
        contextId, peer = self.started()
        peer.dtmf("1")
        peer.close()
        self.assertEqual(self.context(contextId).status, "completed")
        self.assertEqual(self.speaker.sessions[0].ended, ["socket closed (1000)"])
        self.assertGreater(rms(peer.heard()), 1000)


class JsonChanWsTests(ChanWsTests):
    """
    The chan_websocket specifics again with the JSON control format.
    """

    fmt = ControlFormat.JSON

    def test_context_variable(self) -> None:
        """
        C{RAPIDA_CONTEXT_ID} in the channel variables must name the URL's
        context (4409 otherwise); the right one, inherited or not, is fine.
        """
        for name in ("RAPIDA_CONTEXT_ID", "__RAPIDA_CONTEXT_ID"):
            contextId = self.webhook()
            peer = self.open(contextId)
            peer.event(MediaStart("c", "ch", CHANNEL_ID, "ulaw", 160, 20, {name: contextId}))
            self.assertIsNone(peer.closeCode)
        other = self.webhook()
        contextId = self.webhook()
        peer = self.open(contextId)
        peer.event(MediaStart("c", "ch", CHANNEL_ID, "ulaw", 160, 20, {"RAPIDA_CONTEXT_ID": other}))
        self.assertEqual(peer.closeCode, 4409)
        self.assertEqual(self.context(contextId).status, "failed")
        self.assertEqual(self.context(other).status, "pending")

    def test_json_commands(self) -> None:
        _, peer = self.started(optimalFrameSize=240)
        self.assertEqual(
            peer.texts,
            [
                '{"command":"START_MEDIA_BUFFERING"}',
                '{"command":"STOP_MEDIA_BUFFERING"}',
                '{"command":"MARK_MEDIA","correlation_id":"m1"}',
            ],
        )


class FuzzTests(ChanWsBase):
    """
    Whatever Asterisk's side sends after MEDIA_START, nothing escapes the
    adapter: the stream stays up or is closed with a code.
    """

    @settings(max_examples=60, deadline=None)
    @given(
        st.lists(
            st.one_of(
                st.binary(max_size=400).map(lambda b: (b, True)),
                st.text(max_size=200).map(lambda t: (t.encode("utf-8"), False)),
                st.sampled_from(
                    [
                        b"MEDIA_XOFF",
                        b"MEDIA_XON",
                        b"DTMF_END digit:9",
                        b"DTMF_END digit:0",
                        b"MEDIA_MARK_PROCESSED m1",
                        b'{"event":"DTMF_END","digit":"1"}',
                        b'{"event":"MEDIA_START"}',
                        b"ERROR error_text:x",
                    ]
                ).map(lambda b: (b, False)),
            ),
            max_size=30,
        )
    )
    def test_fuzz(self, messages: list[tuple[bytes, bool]]) -> None:
        self.h = Harness('[[assistants]]\nid = "speaker"\nkind = "python"\n')
        contextId, peer = self.started(format="slin")
        for payload, binary in messages:
            peer.send(payload, binary=binary)
            self.tick()
        peer.read()
        self.assertTrue(peer.closeCode is None or peer.closeCode in (1000, 4400))
        self.assertEqual(self.flushLoggedErrors(), [])
