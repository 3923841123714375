# -*- test-case-name: tests.test_sim -*-
"""
C{rapida-sim}: plays a telephony provider's part against a running
gateway, for people checking their deployment and for the project's
integration tests and benchmarks.

One call::

    env = Environment(reactor)
    options = CallOptions("http://127.0.0.1:8080", authToken="...", plan=CallPlan(dtmf="12#"))
    result = await placeCall(env, "twilio", options, AudioSource(seconds=5))
    result.ok, result.failure, result.correlation(), result.echo().lost

Many calls: L{runLoad} (a L{LoadReport}). Transports (L{TRANSPORTS}):
C{twilio}, C{vonage}, C{exotel}, C{audiosocket}, C{asterisk-ws}.
"""

from ._analysis import EchoMatch, Percentiles, echoCorrelation, matchEcho, percentiles
from ._asterisk import AsteriskWsCall, AsteriskWsStream, AudioSocketCall, AudioSocketStream
from ._audio import (
    AudioSource,
    PreparedAudio,
    WavFormatError,
    WireFormat,
    readWav,
    wireFormat,
    writeWav,
)
from ._base import (
    CallOptions,
    CallPlan,
    CallResult,
    Channel,
    HandshakeError,
    MediaStream,
    SimError,
    WebhookError,
)
from ._call import SimCall
from ._exotel import ExotelCall, ExotelStream
from ._load import TRANSPORTS, LoadProgress, LoadReport, audioSource, placeCall, runLoad
from ._net import Connector, Environment, NetworkConnector
from ._record import Playout, Recorder
from ._sip import SipCall, SipCallResult, SipOptions, SipStream
from ._ticker import FrameClock, Ticker
from ._twilio import TwilioCall, TwilioStream
from ._vonage import VonageCall, VonageStream

__all__ = [
    "SipCall",
    "SipCallResult",
    "SipOptions",
    "SipStream",
    "TRANSPORTS",
    "AsteriskWsCall",
    "AsteriskWsStream",
    "AudioSocketCall",
    "AudioSocketStream",
    "AudioSource",
    "CallOptions",
    "CallPlan",
    "CallResult",
    "Channel",
    "Connector",
    "EchoMatch",
    "Environment",
    "ExotelCall",
    "ExotelStream",
    "FrameClock",
    "HandshakeError",
    "LoadProgress",
    "LoadReport",
    "MediaStream",
    "NetworkConnector",
    "Percentiles",
    "Playout",
    "PreparedAudio",
    "Recorder",
    "SimCall",
    "SimError",
    "Ticker",
    "TwilioCall",
    "TwilioStream",
    "VonageCall",
    "VonageStream",
    "WavFormatError",
    "WebhookError",
    "WireFormat",
    "audioSource",
    "echoCorrelation",
    "matchEcho",
    "percentiles",
    "placeCall",
    "readWav",
    "runLoad",
    "wireFormat",
    "writeWav",
]
