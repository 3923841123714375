"""Twilio Media Streams: wire codec (and, later, the adapter)."""
