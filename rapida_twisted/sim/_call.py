# -*- test-case-name: tests.test_sim -*-
"""
One simulated call from webhook to hang-up (base class of the transports).
"""

from __future__ import annotations

import math
from typing import ClassVar

from twisted.internet import defer

from ._audio import AudioSource, PreparedAudio, WireFormat
from ._base import CallOptions, CallResult, MediaStream, SimError
from ._net import Environment

__all__ = ["SimCall"]

#: Seconds a call may run past its planned length before it is given up.
GRACE_SECONDS = 30.0


class SimCall:
    """
    A provider placing one call to the gateway: the webhook, the media
    connection, the stream until hang-up.

    Subclasses set L{transport} and implement L{wireFormat} and L{connect}.
    """

    transport: ClassVar[str] = ""

    def __init__(self, env: Environment, options: CallOptions, source: AudioSource) -> None:
        """
        @param source: what the caller says, prepared in whatever format
            the call ends up using.
        """
        self.env = env
        self.options = options
        self.source = source
        self.result = CallResult(self.transport)

    @classmethod
    def wireFormat(cls, options: CallOptions) -> WireFormat:
        """
        The format this transport sends with these options unless the
        gateway's answer asks for another.

        @raise ValueError: options naming a format the transport lacks.
        """
        raise NotImplementedError

    def audio(self, fmt: WireFormat | None = None) -> PreparedAudio:
        """
        The caller's audio in C{fmt} (default: L{wireFormat}).

        @raise SimError: the source cannot provide it.
        """
        try:
            return self.source.prepared(fmt or self.wireFormat(self.options))
        except ValueError as e:
            raise SimError(str(e)) from None

    async def connect(self, result: CallResult) -> MediaStream:
        """
        Do the webhook and open the media connection; set
        C{result.contextId} and C{result.stream} as soon as known.

        @raise SimError: the call could not be set up.
        """
        raise NotImplementedError

    async def run(self) -> CallResult:
        """
        Place the call and wait until it has ended (once per instance).
        """
        result = self.result
        clock = self.env.clock
        started = clock.seconds()
        try:
            stream = await self.connect(result)
        except SimError as e:
            result.failure = str(e)
            return result
        result.webhookSeconds = clock.seconds() - started
        limit = stream.totalFrames * 0.020 + GRACE_SECONDS
        done = stream.done
        done.addTimeout(limit, clock)
        try:
            await done
        except defer.TimeoutError:
            stream.fail(f"call did not end within {math.ceil(limit)} s")
            if stream.channel is not None:
                stream.channel.close(1000, "")
        result.failure = stream.failure
        return result
