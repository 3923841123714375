"""
The call layer: the one call session every transport shares (SPEC §2, §6).

  - L{AudioFormat}: a transport's wire audio (codec, rate, frame size).
  - L{CallDetails}: what an assistant learns about its call.
  - L{CallSession}: between a provider adapter (L{ICallTransport}) and an
    assistant (L{IAssistant}); it is the assistant's L{ICallControl}.
  - L{EventLog}: ordered, fire-and-forget call-event writes.
"""

from ._events import EventLog
from ._format import CODECS, AudioFormat, CallDetails, FormatError
from ._session import CANONICAL_FRAME_MS, CallSession, SessionStats

__all__ = [
    "CANONICAL_FRAME_MS",
    "CODECS",
    "AudioFormat",
    "CallDetails",
    "CallSession",
    "EventLog",
    "FormatError",
    "SessionStats",
]
