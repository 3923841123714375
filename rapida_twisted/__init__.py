"""rapida-twisted: a Twisted telephony gateway for voice assistants."""

__version__ = "0.1.0"
