"""Vonage Voice API WebSocket: wire codec (L{_codec}), webhooks and the media adapter."""

from ._media import PrivateKeyError, VonageMediaAdapter, applicationJWT
from ._webhook import VonageProvider, verifyVonageJWT

__all__ = [
    "PrivateKeyError",
    "VonageMediaAdapter",
    "VonageProvider",
    "applicationJWT",
    "verifyVonageJWT",
]
