"""Twilio Media Streams: wire codec (L{_codec}), webhooks and the media adapter."""

from ._media import TwilioMediaAdapter
from ._webhook import TwilioProvider, twilioSignature, validTwilioSignature

__all__ = ["TwilioMediaAdapter", "TwilioProvider", "twilioSignature", "validTwilioSignature"]
