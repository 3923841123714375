# -*- test-case-name: tests.test_assistants -*-
"""
The built-in C{echo} assistant: the caller hears themself.

Every caller frame is played straight back as audio of one response that
lasts the whole call, so a test (or a person on the phone) can correlate
what was said with what was heard.
"""

from __future__ import annotations

from zope.interface import implementer

from ..config import AssistantConfig
from ..interfaces import IAssistant, IAssistantSession, ICallControl

__all__ = ["ECHO_RESPONSE", "EchoAssistant", "EchoSession"]

#: the id of the one response an echo session plays
ECHO_RESPONSE = "echo"


@implementer(IAssistantSession)
class EchoSession:
    """
    One echoed call.

    @ivar frames: caller frames echoed so far.
    @ivar digits: DTMF digits received, in order.
    @ivar endReason: why the call ended (None while it runs).
    """

    def __init__(self, control: ICallControl) -> None:
        self._control: ICallControl | None = control
        self.frames = 0
        self.digits: list[str] = []
        self.endReason: str | None = None

    def audioReceived(self, pcm: bytes) -> None:
        control = self._control
        if control is not None:
            self.frames += 1
            control.play(ECHO_RESPONSE, pcm)

    def dtmfReceived(self, digit: str) -> None:
        self.digits.append(digit)

    def playbackCompleted(self, responseId: str) -> None:
        """
        Nothing to do: the echo response never completes.
        """

    def callEnded(self, reason: str) -> None:
        self.endReason = reason
        self._control = None


@implementer(IAssistant)
class EchoAssistant:
    """
    Plays the caller's audio back, at C{sampleRate} (the caller's audio
    reaches it resampled to that rate and goes back the same way).
    """

    def __init__(self, id: str = "echo", sampleRate: int = 16000) -> None:
        self.id = id
        self.sampleRate = sampleRate

    @classmethod
    def fromConfig(cls, config: AssistantConfig) -> EchoAssistant:
        return cls(config.id, config.sampleRate)

    def startSession(self, details: object, control: ICallControl) -> EchoSession:
        return EchoSession(control)
