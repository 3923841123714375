"""Exotel Voicebot / Stream applet WebSocket: wire codec (and, later, the adapter)."""
