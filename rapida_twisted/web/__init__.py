"""
The HTTP side: webhook routes, media WebSocket upgrades, health and metrics.
"""

from ._media import MediaStreamProtocol, mediaFactory
from ._request import MAX_BODY, LimitedRequest
from ._routes import buildRoot, buildSite

__all__ = [
    "MAX_BODY",
    "LimitedRequest",
    "MediaStreamProtocol",
    "buildRoot",
    "buildSite",
    "mediaFactory",
]
