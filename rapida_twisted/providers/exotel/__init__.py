"""Exotel Voicebot / Stream applet WebSocket: wire codec (L{_codec}), webhooks and the media adapter."""

from ._media import ExotelMediaAdapter
from ._webhook import ExotelProvider, basicCredentials

__all__ = ["ExotelMediaAdapter", "ExotelProvider", "basicCredentials"]
