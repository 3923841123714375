# -*- test-case-name: tests.test_sim -*-
"""
C{rapida-sim}: play a provider's part against a running gateway.

  rapida-sim call twilio --gateway http://host:8080 --assistant echo \\
      --wav in.wav --out heard.wav --dtmf 12#
  rapida-sim load twilio --gateway http://host:8080 --calls 200 --duration 30 --json
  rapida-sim call sip --gateway http://host:8080 --sip-port 5090 --dtmf 12# --out heard.wav

Exit status 0 when every call went as planned (and, with
C{--min-correlation}, the echo was that faithful), 1 otherwise, 2 for a
usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from twisted.internet import defer, task

from ._audio import AudioSource, writeWav
from ._base import CallOptions, CallPlan, CallResult
from ._load import TRANSPORTS, LoadProgress, audioSource, isTerminal, placeCall, runLoad
from ._net import Environment
from ._sip import DEFAULT_SIP_PORT, SipOptions

__all__ = ["buildParser", "callOptions", "main", "runCall", "runLoadCommand"]

#: Sample rate of the WAV written by C{--out}.
OUT_RATE = 16000


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
        return value

    return parse


def _dtmf(text: str) -> str:
    digits = text.upper()
    if not set(digits) <= set("0123456789*#ABCD"):
        raise argparse.ArgumentTypeError(f"not DTMF digits (0-9 * # A-D): {text!r}")
    return digits


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("transport", choices=sorted(TRANSPORTS), help="whose part to play")
    parser.add_argument(
        "--gateway",
        required=True,
        help="the gateway's public base URL, e.g. http://127.0.0.1:8080 (webhooks are signed over it)",
    )
    parser.add_argument("--assistant", default="echo", help="assistant id (default: echo)")
    parser.add_argument(
        "--wav",
        help="what the caller says: a 16-bit WAV, any rate (default: a generated speech-like signal)",
    )
    parser.add_argument(
        "--duration",
        type=_positive(float),
        help="seconds of caller audio (the WAV is looped or cut; default: the WAV's length, or 5 s)",
    )
    parser.add_argument("--dtmf", type=_dtmf, default="", help="digits to press, e.g. 12#")
    parser.add_argument(
        "--dtmf-at",
        type=float,
        default=1.0,
        help="seconds into the call of the first digit (default 1.0)",
    )
    parser.add_argument(
        "--linger",
        type=float,
        default=1.0,
        help="seconds of silence after the audio before hanging up (default 1.0)",
    )
    parser.add_argument("--from", dest="caller", default="+15551230000", help="the caller's number")
    parser.add_argument("--to", dest="callee", default="+15557650000", help="the number called")
    parser.add_argument(
        "--auth-token", help="twilio: sign the webhook and the media upgrade (X-Twilio-Signature)"
    )
    parser.add_argument("--signature-secret", help="vonage: sign the answer webhook (HS256 JWT)")
    parser.add_argument(
        "--token", help="send this per-call token instead of the gateway's (to test refusals)"
    )
    parser.add_argument(
        "--username",
        help="exotel: HTTP Basic user for the stream (default: from the answered URL);"
        " sip: digest user (also the From user)",
    )
    parser.add_argument("--password", help="exotel: HTTP Basic password; sip: digest password")
    parser.add_argument(
        "--rate",
        type=int,
        help="wire sample rate: vonage 8000|16000, exotel 8000|16000|24000, audiosocket slin rates",
    )
    parser.add_argument(
        "--chunk-ms",
        type=int,
        choices=(20, 100),
        default=20,
        help="exotel: audio per media message (Exotel documents ~100 ms)",
    )
    parser.add_argument(
        "--codec",
        default="ulaw",
        choices=("ulaw", "alaw", "slin", "slin16", "PCMU", "PCMA"),
        help="asterisk-ws: media format; sip: the one codec offered, ulaw|PCMU or alaw|PCMA"
        " (default ulaw)",
    )
    parser.add_argument(
        "--control",
        default="plain-text",
        choices=("plain-text", "json"),
        help="asterisk-ws: control message format",
    )
    parser.add_argument("--audiosocket-host", help="audiosocket: host (default: the gateway's)")
    parser.add_argument(
        "--audiosocket-port", type=int, default=4573, help="audiosocket: port (default 4573)"
    )
    parser.add_argument(
        "--sip-port",
        type=_positive(int),
        default=DEFAULT_SIP_PORT,
        help=f"sip: the gateway's SIP port (default {DEFAULT_SIP_PORT})",
    )
    parser.add_argument(
        "--sip-target",
        help="sip: the Request-URI (default sip:ASSISTANT@GATEWAY-HOST:SIP-PORT)",
    )
    parser.add_argument(
        "--sip-local",
        help="sip: local IPv4 address to bind and advertise"
        " (default: the one the system reaches the gateway from)",
    )
    parser.add_argument(
        "--hangup-frame",
        action="store_true",
        help="audiosocket: send 00 00 00 before closing (Asterisk itself just closes)",
    )
    parser.add_argument(
        "--timeout",
        type=_positive(float),
        default=10.0,
        help="seconds allowed for the webhook and the connection, or for the SIP answer (default 10)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated signal")
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def buildParser() -> argparse.ArgumentParser:
    """
    The C{rapida-sim} command line.
    """
    parser = argparse.ArgumentParser(
        prog="rapida-sim",
        description="Play a telephony provider's part against a running rapida gateway.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    call = commands.add_parser("call", help="place one call and report what came back")
    _common(call)
    call.add_argument("--out", help="write what the caller heard to this WAV (16 kHz)")
    call.add_argument(
        "--min-correlation",
        type=float,
        help="echo check: fail unless what was heard correlates at least this well with what was said",
    )
    load = commands.add_parser("load", help="run many calls at once and report the totals")
    _common(load)
    load.add_argument("--calls", type=_positive(int), required=True, help="concurrent calls")
    load.add_argument(
        "--ramp",
        type=float,
        default=0.0,
        help="seconds over which the calls start (default 0: all at once)",
    )
    return parser


def callOptions(args: argparse.Namespace) -> CallOptions:
    """
    The L{CallOptions} of parsed arguments (L{SipOptions} for C{sip}).
    """
    extra: dict[str, Any] = {}
    cls = CallOptions
    if args.transport == "sip":
        cls = SipOptions
        extra = {"sipPort": args.sip_port, "sipTarget": args.sip_target, "sipLocal": args.sip_local}
    return cls(
        gateway=args.gateway,
        assistant=args.assistant,
        caller=args.caller,
        callee=args.callee,
        plan=CallPlan(
            dtmf=args.dtmf,
            dtmfAt=args.dtmf_at,
            linger=max(0.0, args.linger),
            hangupFrame=args.hangup_frame,
        ),
        authToken=args.auth_token,
        token=args.token,
        signatureSecret=args.signature_secret,
        username=args.username,
        password=args.password,
        rate=args.rate,
        chunkMs=args.chunk_ms,
        audiosocketHost=args.audiosocket_host,
        audiosocketPort=args.audiosocket_port,
        codec=args.codec,
        controlFormat=args.control,
        timeout=args.timeout,
        **extra,
    )


def callLines(result: CallResult, correlation: tuple[float, float] | None) -> list[str]:
    """
    A call's summary for people.
    """
    summary = result.summary()
    callId = summary.get("callId")
    out = [
        f"{result.transport} call, context {result.contextId or '-'}"
        + (f", Call-ID {callId}" if callId else "")
    ]
    out.append(f"  frames sent {summary['framesSent']}, received {summary['framesReceived']}")
    jitter = summary["jitterMs"]
    if jitter["p50"] is not None:
        out.append(f"  inter-arrival jitter p50 {jitter['p50']:.2f} ms, p99 {jitter['p99']:.2f} ms")
    echo = summary.get("echo")
    if echo is not None and echo["expected"]:
        latency = echo["latencyMs"]
        line = f"  echo: {echo['echoed']} of {echo['expected']} frames with sound came back, lost {echo['lost']}"
        out.append(line)
        if latency["p50"] is not None:
            out.append(
                f"  added latency p50 {latency['p50']:.2f} ms, p99 {latency['p99']:.2f} ms"
                f" (echo offset in the stream {echo['lagMs']:.2f} ms)"
            )
    if correlation is not None:
        out.append(f"  echo correlation {correlation[0]:.3f} at {correlation[1] * 1000:.1f} ms")
    if summary.get("underruns"):
        out.append(f"  {summary['underruns']} gaps heard: gateway audio came too late for playback")
    counters = summary["counters"]
    if counters:
        out.append("  " + ", ".join(f"{k} {v}" for k, v in sorted(counters.items())))
    out.append("  result: ok" if result.ok else f"  result: FAILED: {result.failure}")
    return out


async def runCall(
    env: Environment,
    args: argparse.Namespace,
    options: CallOptions,
    source: AudioSource,
    out: TextIO,
) -> int:
    """
    C{rapida-sim call}: place the call, print its summary, write C{--out}.

    @return: the exit status.
    """
    result = await placeCall(env, args.transport, options, source)
    correlation = result.correlation() if result.framesReceived else None
    status = 0 if result.ok else 1
    if (
        args.min_correlation is not None
        and (correlation is None or correlation[0] < args.min_correlation)
        and result.ok
    ):
        result.failure = f"echo correlation below {args.min_correlation}"
        status = 1
    if args.out and result.stream is not None:
        writeWav(args.out, result.heard(OUT_RATE), OUT_RATE)
    if args.json:
        document = result.summary()
        if correlation is not None:
            document["correlation"] = {
                "coefficient": round(correlation[0], 4),
                "lagMs": round(correlation[1] * 1000, 3),
            }
        json.dump(document, out)
        out.write("\n")
    else:
        for line in callLines(result, correlation):
            out.write(line + "\n")
        if args.out and result.stream is not None:
            out.write(f"  wrote {args.out} ({OUT_RATE} Hz)\n")
    return status


async def runLoadCommand(
    env: Environment,
    args: argparse.Namespace,
    options: CallOptions,
    source: AudioSource,
    out: TextIO,
    err: TextIO,
) -> int:
    """
    C{rapida-sim load}: run the calls (a progress line on C{err} when it
    is a terminal), print the report.

    @return: the exit status.
    """
    progress = None
    if isTerminal(err) and not args.json:

        def progress(state: LoadProgress) -> None:
            err.write("\r\x1b[2K" + state.line())
            err.flush()

    report = await runLoad(env, args.transport, options, source, args.calls, args.ramp, progress)
    if progress is not None:
        err.write("\n")
    if args.json:
        json.dump(report.asDict(), out)
        out.write("\n")
    else:
        for line in report.lines():
            out.write(line + "\n")
    return 0 if report.ok == report.calls else 1


def main(argv: Sequence[str] | None = None) -> int:
    """
    The console script: parse, run on the global reactor, exit 0/1 (2 for
    a usage error).
    """
    parser = buildParser()
    args = parser.parse_args(argv)
    try:
        options = callOptions(args)
        source = audioSource(args.transport, options, args.wav, args.duration, args.seed)
    except (OSError, ValueError) as e:
        parser.error(str(e))
    outcome: list[int] = []

    async def run(reactor: Any) -> None:
        env = Environment(reactor)
        if args.command == "call":
            outcome.append(await runCall(env, args, options, source, sys.stdout))
        else:
            outcome.append(await runLoadCommand(env, args, options, source, sys.stdout, sys.stderr))

    try:
        task.react(lambda reactor: defer.Deferred.fromCoroutine(run(reactor)))
    except SystemExit as e:
        if e.code not in (0, None):
            return e.code if isinstance(e.code, int) else 1
    return outcome[0] if outcome else 1


if __name__ == "__main__":
    sys.exit(main())
