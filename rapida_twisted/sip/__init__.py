"""
The built-in SIP server (SIP over UDP, media over RTP), by layer:

  - pure codecs: L{_codec} (RFC 3261 messages), L{_sdp} (SDP offer/answer),
    L{_rtp} (RTP/RTCP, RFC 4733, jitter buffer), L{_digest} (digest auth);
  - state machines on C{IReactorTime}: L{_txn} (RFC 3261 §17 transactions),
    L{_dialog} (dialogs), L{_limits} (allowlist, rate limit), L{_auth}
    (digest with expiring single-use nonces);
  - the user-agent core: L{_core} (dispatch, routing, refusals) and
    L{_call} (one inbound call, INVITE to BYE);
  - media: L{_ports} (RTP/RTCP port pairs) and L{_rtp_session} (one
    call's RTP endpoint, the call session's transport);
  - adapters and public names: L{sip} (C{SipDatagramProtocol},
    C{sipService}) and L{uac} (a SIP client with RTP for the simulator,
    benchmarks and tests).
"""
