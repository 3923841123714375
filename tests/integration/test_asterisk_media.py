"""
Both Asterisk transports against the real gateway process (integration
group, RAPIDA_INTEGRATION=1), played by the simulator's Asterisk side
(L{rapida_twisted.sim}) exactly as the README's dialplan examples do:

  - README "AudioSocket" (C{extensions.conf} context C{[rapida-audiosocket]}):
    C{CURL()} POSTs C{from}, C{to} and C{channel_id} to
    C{/v1/talk/asterisk/call/echo} and gets the context id;
    C{AudioSocket(${RAPIDA_CONTEXT_ID},host:port)} connects and sends it as
    the UUID frame → L{AudioSocketTests} (the simulator's
    C{AudioSocketCall}).
  - README "chan_websocket" (context C{[rapida-websocket]} with the
    C{[rapida]} section of C{websocket_client.conf}): the same C{CURL()},
    then C{Dial(WebSocket/rapida/c(ulaw)v(contextId=${RAPIDA_CONTEXT_ID}))}
    connects to C{/v1/talk/asterisk/ctx?contextId=...} and sends
    C{MEDIA_START} → L{ChanWebSocketTests} (L{AsteriskWsCall}, the
    simulator's C{AsteriskWsCall} with the query form of the URL).
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import time
import uuid
from typing import Any

import numpy as np
from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IReadDescriptor
from twisted.internet.task import LoopingCall, deferLater
from twisted.trial.unittest import SkipTest
from zope.interface import implementer

from rapida_twisted.asterisk._audiosocket import Audio, AudioSocketDecoder, Hangup, encodeUuid
from rapida_twisted.sim._asterisk import AsteriskWsCall
from rapida_twisted.sim._base import CallOptions, CallPlan, CallResult
from rapida_twisted.sim._load import audioSource, placeCall
from rapida_twisted.sim._net import Environment

from ._server import GatewayProcess, IntegrationTestCase, http
from .test_sip_interop import eventually, query, run

#: seconds of speech-like audio per echo call
SPEECH = 3.0


#: the kernel's receive timestamps (Linux)
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_FRAME_8K = 3 + 320


#: p99 lateness of a bare timer above which the machine itself is too
#: busy for a real-time measurement to mean anything
CONTROL_LIMIT = 0.002


class TimerControl:
    """
    A bare 20 ms timer in the (idle) test process: how late the machine
    lets an idle process's timers fire, the floor under any pacing
    measurement taken at the same time.
    """

    def __init__(self) -> None:
        self.times: list[float] = []
        self._call = LoopingCall(lambda: self.times.append(reactor.seconds()))
        self._call.clock = reactor
        self._call.start(0.020)

    def stop(self) -> None:
        self._call.stop()

    def lateness(self) -> float:
        """
        p99 of how far the gaps between firings were from 20 ms, seconds.
        """
        gaps = np.diff(np.asarray(self.times, np.float64))
        return float(np.percentile(np.abs(gaps - 0.020), 99)) if len(gaps) else 0.0


@implementer(IReadDescriptor)
class TimestampedProbe:
    """
    An AudioSocket connection that only sends its UUID and records when
    each frame the gateway sends reaches the kernel (C{SO_TIMESTAMPNS}),
    reading one 8 kHz frame per C{recvmsg} as soon as the reactor allows.
    An L{IReadDescriptor} on the real reactor.
    """

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        self.sock.setblocking(False)
        self.times: list[float] = []
        #: how long after its arrival each frame was read
        self.lags: list[float] = []
        self._pending = b""

    def start(self, contextId: uuid.UUID) -> None:
        self.sock.sendall(encodeUuid(contextId))
        reactor.addReader(self)

    def stop(self) -> None:
        reactor.removeReader(self)
        self.sock.close()

    def fileno(self) -> int:
        return self.sock.fileno()

    def logPrefix(self) -> str:
        return "TimestampedProbe"

    def connectionLost(self, reason: Any) -> None:
        pass

    def doRead(self) -> None:
        try:
            data, ancillary, _, _ = self.sock.recvmsg(_FRAME_8K, socket.CMSG_SPACE(16))
        except BlockingIOError:
            return
        now = time.time()
        if not data:
            reactor.removeReader(self)
            return
        stamp = None
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS:
                seconds, nanoseconds = struct.unpack("qq", payload[:16])
                stamp = seconds + nanoseconds / 1e9
        pending = self._pending + data
        while len(pending) >= 3:
            size = 3 + struct.unpack("!H", pending[1:3])[0]
            if len(pending) < size:
                break
            assert stamp is not None, "no kernel timestamp"
            self.times.append(stamp)
            self.lags.append(now - stamp)
            pending = pending[size:]
        self._pending = pending

    def gaps(self, skip: int = 0) -> Any:
        """
        Seconds between consecutive frames after the first C{skip}, left
        out where the probe read a frame more than 15 ms after it arrived:
        the kernel merges a frame left waiting with the next one under the
        later timestamp, which would show gaps the gateway never made.
        """
        fresh = np.asarray(self.lags[skip:], np.float64) < 0.015
        gaps = np.diff(np.asarray(self.times[skip:], np.float64))
        return gaps[fresh[1:] & fresh[:-1]]


class _Collect(protocol.Protocol):
    """
    A raw TCP peer: sends C{greeting}, keeps what comes back until closed.
    """

    def __init__(self, greeting: bytes) -> None:
        self.greeting = greeting
        self.data = bytearray()
        self.closed: defer.Deferred[None] = defer.Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self.greeting)

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Any = None) -> None:
        self.closed.callback(None)


async def exchange(port: int, greeting: bytes, limit: float = 5.0) -> tuple[bytes, bool]:
    """
    Connect to C{port}, send C{greeting}; return what came back and
    whether the gateway closed the connection within C{limit} seconds.
    """
    peer = _Collect(greeting)
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), peer)
    closed = peer.closed
    closed.addTimeout(limit, reactor)
    try:
        await closed
        return bytes(peer.data), True
    except defer.TimeoutError:
        assert peer.transport is not None
        peer.transport.loseConnection()
        return bytes(peer.data), False


class _AsteriskBase(IntegrationTestCase):
    timeout = 180

    async def gateway(self) -> GatewayProcess:
        return await self.startGateway(audiosocket=True)

    def options(self, gateway: GatewayProcess, **kw: Any) -> CallOptions:
        assert gateway.audiosocket is not None
        return CallOptions(
            gateway=gateway.base,
            audiosocketHost="127.0.0.1",
            audiosocketPort=gateway.audiosocket,
            **kw,
        )

    def env(self) -> Environment:
        env = Environment(reactor, http=http())
        return env

    def events(self, gateway: GatewayProcess, contextId: str, kind: str) -> list[Any]:
        rows = query(
            gateway.database,
            "SELECT payload FROM call_events WHERE context_id = ? AND kind = ? ORDER BY id",
            contextId,
            kind,
        )
        return [json.loads(p) if isinstance(p, str) else p for (p,) in rows]

    def status(self, gateway: GatewayProcess, contextId: str) -> str:
        rows = query(
            gateway.database, "SELECT status FROM call_contexts WHERE context_id = ?", contextId
        )
        return str(rows[0][0]) if rows else ""

    async def echoCall(
        self, gateway: GatewayProcess, transport: str, dtmf: str = "", **kw: Any
    ) -> CallResult:
        """
        One echo call of L{SPEECH} seconds; checks the correlation and,
        with C{dtmf}, the C{dtmf} rows; returns the result.
        """
        options = self.options(
            gateway, plan=CallPlan(dtmf=dtmf, dtmfAt=0.5, dtmfInterval=0.25, linger=1.0), **kw
        )
        audio = audioSource(transport, options, seconds=SPEECH, seed=11)
        env = self.env()
        if transport == "asterisk-ws":
            result = await AsteriskWsCall(env, options, audio).run()
        else:
            result = await placeCall(env, transport, options, audio)
        self.assertTrue(result.ok, f"{result.failure}\n{gateway.output()[-3000:]}")
        score, lag = result.correlation()
        self.assertGreaterEqual(score, 0.9, f"{transport} echo correlation {score:.3f}")
        contextId = result.contextId
        assert contextId is not None
        if dtmf:
            rows = await eventually(lambda: self.events(gateway, contextId, "dtmf"))
            self.assertEqual([r["digit"] for r in rows], list(dtmf))
        done = await eventually(lambda: self.status(gateway, contextId) == "completed")
        self.assertTrue(done, self.status(gateway, contextId))
        return result


class AudioSocketTests(_AsteriskBase):
    """
    README "AudioSocket": webhook, then C{AudioSocket()} with its answer.
    """

    async def test_echo_and_dtmf(self) -> None:
        gateway = await self.gateway()
        result = await self.echoCall(gateway, "audiosocket", dtmf="12#")
        # what the gateway sent was only audio frames (a 0x00 or another
        # kind would have failed the simulated call)
        self.assertGreater(result.framesReceived, SPEECH * 50)

    async def test_pacing_with_100_calls(self) -> None:
        """
        While 100 AudioSocket calls run (the simulator's load runner in a
        process of its own), the gaps between the frames we send to three
        more connections stay within 20 +- 3 ms for 99 % of them (kernel
        receive timestamps, so the probes' own scheduling does not count),
        and the 100 calls all go through with their echo.
        """
        gateway = await self.gateway()
        assert gateway.audiosocket is not None
        load = defer.Deferred.fromCoroutine(
            run(
                [
                    sys.executable,
                    "-m",
                    "rapida_twisted.sim",
                    "load",
                    "audiosocket",
                    "--gateway",
                    gateway.base,
                    "--audiosocket-host",
                    "127.0.0.1",
                    "--audiosocket-port",
                    str(gateway.audiosocket),
                    "--calls",
                    "100",
                    "--ramp",
                    "2",
                    "--duration",
                    "10",
                    "--json",
                ],
                gateway.workdir,
                90,
            )
        )
        await deferLater(reactor, 3.0, lambda: None)  # all 100 calls are up
        control = TimerControl()
        probes = [TimestampedProbe(gateway.audiosocket) for _ in range(3)]
        for probe in probes:
            response = await self.http.post(
                gateway.base + "/v1/talk/asterisk/call/echo", data={"from": "probe"}
            )
            probe.start(uuid.UUID((await response.content()).decode()))
        await deferLater(reactor, 6.0, lambda: None)
        control.stop()
        for probe in probes:
            probe.stop()
        gaps = np.concatenate([probe.gaps(skip=10) for probe in probes])
        deviation = np.abs(gaps - 0.020)
        summary = (
            f"{len(gaps)} gaps: p1 {np.percentile(gaps, 1) * 1000:.2f} ms,"
            f" p50 {np.percentile(gaps, 50) * 1000:.2f} ms,"
            f" p99 {np.percentile(gaps, 99) * 1000:.2f} ms,"
            f" max {gaps.max() * 1000:.2f} ms,"
            f" within 20 +- 3 ms: {np.mean(deviation <= 0.003):.4f}"
        )
        code, output = await load
        self.assertEqual(code, 0, output[-3000:])
        report = json.loads(output[output.index("{") :])
        self.assertEqual(report["ok"], 100, output[-3000:])
        # the gateway drops nothing (rapida_frames_dropped stays 0); the
        # simulator's echo matcher may miss a block where a reactor stall
        # longer than the cushion moved the echo by 20 ms
        self.assertLessEqual(report["lost"], report["echoExpected"] // 1000, output[-3000:])
        self.assertGreater(len(gaps), 600, summary)
        late = control.lateness()
        if late > CONTROL_LIMIT and float(np.percentile(deviation, 99)) > 0.003:
            raise SkipTest(
                f"this machine is too busy to judge 20 ms pacing: a bare 20 ms timer in the"
                f" test process was {late * 1000:.1f} ms late at p99 ({summary})"
            )
        self.assertLessEqual(float(np.percentile(deviation, 99)), 0.003, summary)

    async def test_unknown_uuid_refused(self) -> None:
        gateway = await self.gateway()
        assert gateway.audiosocket is not None
        data, closed = await exchange(gateway.audiosocket, encodeUuid(uuid.uuid4()))
        self.assertTrue(closed)
        self.assertEqual(data, b"\x00\x00\x00")

    async def test_claimed_uuid_refused(self) -> None:
        """
        A second connection with a context id already in use is refused
        (0x00, close); the first call goes on.
        """
        gateway = await self.gateway()
        assert gateway.audiosocket is not None
        response = await self.http.post(
            gateway.base + "/v1/talk/asterisk/call/echo", data={"from": "100", "to": "200"}
        )
        contextId = (await response.content()).decode()
        first = _Collect(encodeUuid(uuid.UUID(contextId)))
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", gateway.audiosocket), first)
        await eventually(lambda: self.status(gateway, contextId) == "claimed")
        data, closed = await exchange(gateway.audiosocket, encodeUuid(uuid.UUID(contextId)))
        self.assertTrue(closed)
        self.assertEqual(data, b"\x00\x00\x00")
        # the first connection gets paced silence at 8 kHz (it sent no audio)
        await deferLater(reactor, 1.5, lambda: None)
        frames = AudioSocketDecoder().feed(bytes(first.data))
        self.assertGreater(len(frames), 10)
        self.assertTrue(all(type(f) is Audio and f.kind == 0x10 for f in frames))
        self.assertFalse(first.closed.called)
        assert first.transport is not None
        first.transport.loseConnection()
        await first.closed
        self.assertNotIn(Hangup(), frames)
        errors = self.events(gateway, contextId, "error")
        self.assertEqual([e["code"] for e in errors], ["already_claimed"])


class ChanWebSocketTests(_AsteriskBase):
    """
    README "chan_websocket": webhook, then C{Dial(WebSocket/rapida/...)}.
    """

    async def test_echo_plain_ulaw(self) -> None:
        gateway = await self.gateway()
        result = await self.echoCall(gateway, "asterisk-ws", dtmf="47*")
        self.assertEqual(result.counters["bad"], 0)
        self.assertEqual(result.counters["droppedBytes"], 0)

    async def test_echo_json_slin16(self) -> None:
        gateway = await self.gateway()
        result = await self.echoCall(
            gateway, "asterisk-ws", dtmf="9", codec="slin16", controlFormat="json"
        )
        self.assertEqual(result.counters["bad"], 0)

    async def test_refusals(self) -> None:
        """
        An unknown context id gets 404 at the upgrade, a claimed one 409.
        """
        gateway = await self.gateway()
        env = self.env()
        options = self.options(gateway, plan=CallPlan(linger=3.0))
        audio = audioSource("asterisk-ws", options, seconds=1.0)
        call = AsteriskWsCall(env, options, audio)
        running = defer.Deferred.fromCoroutine(call.run())
        contextId = await eventually(lambda: call.result.contextId)
        await eventually(lambda: self.status(gateway, contextId) == "claimed")
        for target, status in ((str(uuid.uuid4()), 404), (contextId, 409)):
            request = (
                f"GET /v1/talk/asterisk/ctx?contextId={target} HTTP/1.1\r\n"
                f"Host: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                "Connection: close\r\n\r\n"
            )
            data, _ = await exchange(gateway.http, request.encode(), limit=3.0)
            self.assertTrue(data.startswith(f"HTTP/1.1 {status} ".encode()), data[:200])
        result = await running
        self.assertTrue(result.ok, result.failure)
