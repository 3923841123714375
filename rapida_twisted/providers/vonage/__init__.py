"""Vonage Voice API WebSocket: wire codec (and, later, the adapter)."""
