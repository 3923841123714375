"""
Micro-benchmark of the wire codecs' hot paths: µs per inbound media decode
and per outbound media encode for each provider, per AudioSocket frame, and
the design alternatives the codecs were chosen against (stdlib C{json.loads}
and C{json.dumps} against the codecs' parse and string template).

Run from the repository root:

    .venv/bin/python benchmarks/bench_codecs.py [--quick]

Not a test: figures depend on the machine and its load. Each figure is the
best of several repeats, which is the least noisy estimate of the cost.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import sys
import timeit
import uuid
from collections.abc import Callable
from pathlib import Path


def measure(func: Callable[[], object], repeat: int, budget: float) -> float:
    """
    Best-of-C{repeat} microseconds per call, each repeat running about
    C{budget} seconds.
    """
    timer = timeit.Timer(func)
    number, elapsed = timer.autorange()
    number = max(1, int(number * budget / max(elapsed, 1e-9)))
    best = min(timer.repeat(repeat=repeat, number=number))
    return best / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter repeats")
    options = parser.parse_args()
    repeat, budget = (3, 0.02) if options.quick else (9, 0.05)

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from rapida_twisted.asterisk import _audiosocket as audiosocket
    from rapida_twisted.asterisk import _chanws as chanws
    from rapida_twisted.providers.exotel import _codec as exotel
    from rapida_twisted.providers.twilio import _codec as twilio
    from rapida_twisted.providers.vonage import _codec as vonage

    sid = "MZ18ad3ab5a668481ce02b83e7395059f0"
    ulaw = os.urandom(160)
    pcm8k20 = os.urandom(320)
    pcm16k20 = os.urandom(640)
    pcm8k100 = os.urandom(1600)
    chunk = os.urandom(3200)

    # Twilio's real key order (streamSid last), as logged from live streams.
    twilioMedia = json.dumps(
        {
            "event": "media",
            "sequenceNumber": "102",
            "media": {
                "track": "inbound",
                "chunk": "101",
                "timestamp": "2088",
                "payload": base64.b64encode(ulaw).decode(),
            },
            "streamSid": sid,
        },
        separators=(",", ":"),
    )
    twilioMediaBytes = twilioMedia.encode()
    exotelMedia = exotel.encodeMedia(sid, pcm8k100, 3, 2, 200)
    exotelMedia20 = exotel.encodeMedia(sid, pcm8k20, 3, 2, 200)
    audioFrame = audiosocket.encodeAudio(pcm8k20)
    tenFrames = audioFrame * 10
    half = len(audioFrame) // 2

    def stdlibTwilioDecode() -> object:
        obj = json.loads(twilioMedia)
        media = obj["media"]
        return twilio.Media(
            binascii.a2b_base64(media["payload"]),
            int(media["chunk"]),
            int(media["timestamp"]),
            media["track"],
        )

    def stdlibTwilioEncode() -> str:
        return json.dumps(
            {
                "event": "media",
                "streamSid": sid,
                "media": {"payload": base64.b64encode(ulaw).decode()},
            },
            separators=(",", ":"),
        )

    decoder = audiosocket.AudioSocketDecoder()

    def audioSocketSplit() -> object:
        decoder.feed(audioFrame[:half])
        return decoder.feed(audioFrame[half:])

    chunker = exotel.ExotelChunker()

    rows: list[tuple[str, str, Callable[[], object], int]] = [
        (
            "twilio",
            "decode inbound media (160 B μ-law, str)",
            lambda: twilio.decode(twilioMedia),
            1,
        ),
        ("twilio", "decode inbound media (bytes)", lambda: twilio.decode(twilioMediaBytes), 1),
        ("twilio", "  baseline: json.loads, no checks, Media()", stdlibTwilioDecode, 1),
        ("twilio", "  baseline: json.loads alone", lambda: json.loads(twilioMedia), 1),
        ("twilio", "encode outbound media (160 B)", lambda: twilio.encodeMedia(sid, ulaw), 1),
        ("twilio", "  baseline: json.dumps", stdlibTwilioEncode, 1),
        ("twilio", "encode mark", lambda: twilio.encodeMark(sid, "utt-17"), 1),
        ("vonage", "decode inbound binary (640 B)", lambda: vonage.decodeAudio(pcm16k20), 1),
        (
            "vonage",
            "encode outbound binary (640 B)",
            lambda: vonage.encodeAudio(pcm16k20, 16000),
            1,
        ),
        (
            "vonage",
            "decode websocket:dtmf",
            lambda: vonage.decode('{"event":"websocket:dtmf","digit":"5","duration":260}'),
            1,
        ),
        ("exotel", "decode inbound media (1600 B = 100 ms)", lambda: exotel.decode(exotelMedia), 1),
        ("exotel", "decode inbound media (320 B = 20 ms)", lambda: exotel.decode(exotelMedia20), 1),
        (
            "exotel",
            "encode outbound media (3200 B chunk)",
            lambda: exotel.encodeMedia(sid, chunk, 4, 3, 600),
            1,
        ),
        ("exotel", "chunker feed, per 20 ms frame (320 B)", lambda: chunker.feed(pcm8k20), 1),
        ("audiosocket", "decode, one 320 B frame per feed", lambda: decoder.feed(audioFrame), 1),
        (
            "audiosocket",
            "decode, 10 frames per feed (per frame)",
            lambda: decoder.feed(tenFrames),
            10,
        ),
        ("audiosocket", "decode, frame split in two feeds", audioSocketSplit, 1),
        ("audiosocket", "encode audio frame (320 B)", lambda: audiosocket.encodeAudio(pcm8k20), 1),
        ("audiosocket", "encode UUID frame", lambda: audiosocket.encodeUuid(uuid.UUID(int=7)), 1),
        (
            "chanws",
            "decode MEDIA_MARK_PROCESSED (plain)",
            lambda: chanws.decodeEvent("MEDIA_MARK_PROCESSED m7"),
            1,
        ),
        (
            "chanws",
            "decode MEDIA_MARK_PROCESSED (json)",
            lambda: chanws.decodeEvent(
                '{"event":"MEDIA_MARK_PROCESSED","channel_id":"c","correlation_id":"m7"}'
            ),
            1,
        ),
        (
            "chanws",
            "encode MARK_MEDIA (json)",
            lambda: chanws.encodeCommand(
                chanws.Command.MARK_MEDIA, chanws.ControlFormat.JSON, "m7"
            ),
            1,
        ),
    ]

    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; best of {repeat}")
    print(f"{'codec':<12} {'operation':<44} {'µs/op':>8}")
    for codec, name, func, per in rows:
        micros = measure(func, repeat, budget) / per
        print(f"{codec:<12} {name:<44} {micros:8.2f}")


if __name__ == "__main__":
    main()
