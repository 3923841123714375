"""
Asterisk: the webhook a dialplan C{CURL()}s for a context id
(L{AsteriskProvider}), the AudioSocket TCP server (L{AudioSocketFactory})
and the chan_websocket media adapter; the pure wire codecs are in
C{_audiosocket} and C{_chanws}.
"""

from ._media import ChanWebSocketAdapter
from ._server import (
    AudioSocketCall,
    AudioSocketFactory,
    AudioSocketProtocol,
    AudioSocketSettings,
)
from ._webhook import AsteriskProvider

__all__ = [
    "AsteriskProvider",
    "ChanWebSocketAdapter",
    "AudioSocketCall",
    "AudioSocketFactory",
    "AudioSocketProtocol",
    "AudioSocketSettings",
]
