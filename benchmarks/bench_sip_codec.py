"""
Micro-benchmark of the pure SIP-side codecs: µs per SIP message parse and
serialize (a typical INVITE with SDP, a 200 OK), per SDP offer/answer, per
RTP packet (parse, pack, jitter buffer, DTMF detector) and per digest
verification.

Run from the repository root:

    .venv/bin/python benchmarks/bench_sip_codec.py [--quick]

Not a test: figures depend on the machine and its load. Each figure is the
best of several repeats, which is the least noisy estimate of the cost.
"""

from __future__ import annotations

import argparse
import os
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

SDP = (
    b"v=0\r\n"
    b"o=- 3912345678 3912345678 IN IP4 203.0.113.10\r\n"
    b"s=-\r\n"
    b"c=IN IP4 203.0.113.10\r\n"
    b"t=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0 8 9 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:9 G722/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\n"
    b"a=ptime:20\r\n"
    b"a=sendrecv\r\n"
)

#: an INVITE as a trunk sends it: two Vias, Record-Route, Allow, Supported...
INVITE = (
    b"INVITE sip:echo@192.0.2.1:5090 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bK3a8f2c1d9e;rport\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK77ac91ee;received=10.0.0.5\r\n"
    b"Max-Forwards: 69\r\n"
    b"Record-Route: <sip:203.0.113.10;lr>\r\n"
    b'From: "+15550100" <sip:+15550100@trunk.example.com>;tag=as5f1c3b2e\r\n'
    b"To: <sip:echo@192.0.2.1:5090>\r\n"
    b"Contact: <sip:+15550100@203.0.113.10:5060>\r\n"
    b"Call-ID: 4f8a0c3b1e9d2a7c@203.0.113.10\r\n"
    b"CSeq: 102 INVITE\r\n"
    b"User-Agent: Trunk/1.0\r\n"
    b"Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, INFO\r\n"
    b"Supported: replaces, timer\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(SDP)).encode() + b"\r\n\r\n" + SDP
)


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
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter repeats")
    options = parser.parse_args()
    repeat, budget = (3, 0.02) if options.quick else (9, 0.05)

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from rapida_twisted.sip import _codec as codec
    from rapida_twisted.sip import _digest as digest
    from rapida_twisted.sip import _rtp as rtp
    from rapida_twisted.sip import _sdp as sdp

    invite = codec.parseMessage(INVITE)
    assert isinstance(invite, codec.SipRequest)

    def answer() -> bytes:
        negotiation = sdp.answerOffer(
            sdp.parseSdp(invite.body),
            localAddress="192.0.2.1",
            localPort=10000,
            sessionId=1,
            sessionVersion=1,
        )
        return negotiation.answer.toBytes()

    answerBody = answer()
    ok = codec.responseFor(
        invite,
        200,
        toTag="8a7b6c5d",
        headers=[("Contact", "<sip:echo@192.0.2.1:5090>")],
        body=answerBody,
        contentType="application/sdp",
    )
    okBytes = ok.toBytes()
    trying = codec.responseFor(invite, 100)

    payload = os.urandom(160)
    packet = rtp.packRtp(0, 1234, 987654, 0x11223344, payload)
    parsed = rtp.parseRtp(packet)
    event = rtp.RtpPacket(101, 1, 8000, 5, rtp.TelephoneEvent(5, False, 10, 320).toBytes())
    dtmf = rtp.DtmfReceiver()
    dtmf.receive(event)

    jitter = rtp.JitterBuffer(depth=3)
    state = {"seq": 0}

    def jitterStep() -> object:
        seq = state["seq"] = (state["seq"] + 1) & 0xFFFF
        jitter.push(seq, seq * 160, payload)
        return jitter.pop()

    challenge = digest.DigestChallenge("rapida", "n0nce", "SHA-256")
    credentials = digest.parseAuthorization(
        digest.buildAuthorization(
            challenge, method="INVITE", uri="sip:echo@192.0.2.1", username="alice", password="pw"
        ).toHeaderValue()
    )
    authValue = credentials.toHeaderValue()

    rows: list[tuple[str, Callable[[], object]]] = [
        (f"SIP parse INVITE+SDP ({len(INVITE)} B)", lambda: codec.parseMessage(INVITE)),
        ("SIP serialize INVITE", invite.toBytes),
        (f"SIP parse 200 OK+SDP ({len(okBytes)} B)", lambda: codec.parseMessage(okBytes)),
        ("SIP responseFor 100 + serialize", lambda: codec.responseFor(invite, 100).toBytes()),
        ("SIP serialize 100 Trying", trying.toBytes),
        (
            "SIP responseFor 200+SDP + serialize",
            lambda: codec.responseFor(
                invite, 200, toTag="x", body=answerBody, contentType="application/sdp"
            ).toBytes(),
        ),
        ("SDP parse offer + answer + serialize", answer),
        ("RTP parse (172 B)", lambda: rtp.parseRtp(packet)),
        ("RTP packRtp", lambda: rtp.packRtp(0, 1234, 987654, 0x11223344, payload)),
        ("RTP RtpPacket.toBytes", parsed.toBytes),
        ("RTP jitter buffer push+pop", jitterStep),
        ("RTP DTMF receive (duplicate)", lambda: dtmf.receive(event)),
        (
            "Digest parse + verify SHA-256",
            lambda: digest.verifyResponse(
                digest.parseAuthorization(authValue), "INVITE", password="pw"
            ),
        ),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"{'operation':<{width}}  µs/op")
    for name, func in rows:
        print(f"{name:<{width}}  {measure(func, repeat, budget):8.2f}")


if __name__ == "__main__":
    main()
