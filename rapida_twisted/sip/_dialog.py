# -*- test-case-name: tests.test_sip_dialog -*-
"""
SIP dialogs (RFC 3261 §12): the state two user agents share for one call,
and the in-dialog requests built from it.

Pure: no reactor, no I/O.  A dialog is identified by Call-ID, local tag
and remote tag (L{Dialog.id}).  In-dialog requests (BYE, INFO, re-INVITE,
the UAC's ACK) go to the remote target through the route set, with the
local CSeq incremented (§12.2.1.1); incoming ones must carry increasing
CSeq numbers (§12.2.2).

Where requests are sent: the transport address of the peer that created
the dialog (symmetric signalling, as with RFC 3581 C{rport}), not a DNS
lookup of the remote target, which behind NAT is often a private address.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from ._codec import (
    URI,
    Address,
    SipParseError,
    SipRequest,
    SipResponse,
    SipURI,
    newBranch,
    parseAddress,
)

__all__ = [
    "CONFIRMED",
    "EARLY",
    "TERMINATED",
    "Dialog",
    "DialogError",
    "DialogId",
]

EARLY: Final = "early"
CONFIRMED: Final = "confirmed"
TERMINATED: Final = "terminated"

DialogId = tuple[str, str, str]
Addr = tuple[str, int]


class DialogError(ValueError):
    """
    A request or response cannot create a dialog (no Contact, no tag, a
    malformed Record-Route...).
    """


def _initialSeq() -> int:
    # RFC 3261 §8.1.1.5: any value below 2**31; small random values keep
    # room for increments and make sequences of different calls differ
    return 1 + secrets.randbelow(2**16)


@dataclass(slots=True)
class Dialog:
    """
    One dialog, from our side.

    @ivar localAddress: our party (C{From} of requests we send).
    @ivar remoteAddress: the peer's party (C{To} of requests we send).
    @ivar remoteTarget: the peer's C{Contact} URI (Request-URI of our
        requests).
    @ivar routeSet: C{Route} values, in the order our requests carry them.
    @ivar localSeq: the CSeq number of the last request we sent.
    @ivar remoteSeq: the CSeq number of the last request the peer sent
        (C{None} before any).
    @ivar peer: the transport address requests are sent to.
    """

    callId: str
    localTag: str
    remoteTag: str
    localAddress: Address
    remoteAddress: Address
    remoteTarget: URI
    peer: Addr
    routeSet: tuple[str, ...] = ()
    localSeq: int = field(default_factory=_initialSeq)
    remoteSeq: int | None = None
    state: str = EARLY

    @property
    def id(self) -> DialogId:
        """
        C{(Call-ID, local tag, remote tag)}.
        """
        return (self.callId, self.localTag, self.remoteTag)

    # -- creation --

    @classmethod
    def fromRequest(cls, request: SipRequest, localTag: str, peer: Addr) -> Dialog:
        """
        The UAS side of a dialog created by C{request} (an INVITE),
        answered with C{localTag} (RFC 3261 §12.1.1).

        @raise DialogError: no From tag, no Contact, or a bad Record-Route.
        """
        remoteTag = request.fromAddress.tag
        if not remoteTag:
            raise DialogError("the request has no From tag")
        contacts = request.contacts
        if len(contacts) != 1:
            raise DialogError("a dialog-creating request needs exactly one Contact")
        try:
            routes = request.getAll("Record-Route")
            for value in routes:
                parseAddress(value)
        except SipParseError as e:
            raise DialogError(f"bad Record-Route: {e.reason}") from None
        return cls(
            callId=request.callId,
            localTag=localTag,
            remoteTag=remoteTag,
            localAddress=request.toAddress.withTag(localTag),
            remoteAddress=request.fromAddress,
            remoteTarget=contacts[0].uri,
            peer=peer,
            routeSet=tuple(routes),
            remoteSeq=request.cseq.number,
        )

    @classmethod
    def fromResponse(cls, request: SipRequest, response: SipResponse, peer: Addr) -> Dialog:
        """
        The UAC side of a dialog created by C{response} to our C{request}
        (RFC 3261 §12.1.2): the route set is the Record-Route reversed.

        @raise DialogError: no To tag or no Contact in the response.
        """
        remoteTag = response.toAddress.tag
        localTag = request.fromAddress.tag
        if not remoteTag or not localTag:
            raise DialogError("the response has no To tag")
        contacts = response.contacts
        if not contacts:
            raise DialogError("the response has no Contact")
        routes = tuple(reversed(response.getAll("Record-Route")))
        return cls(
            callId=request.callId,
            localTag=localTag,
            remoteTag=remoteTag,
            localAddress=request.fromAddress,
            remoteAddress=response.toAddress,
            remoteTarget=contacts[0].uri,
            peer=peer,
            routeSet=routes,
            localSeq=request.cseq.number,
            state=CONFIRMED if response.code < 300 else EARLY,
        )

    # -- incoming requests --

    def acceptRemoteSeq(self, request: SipRequest) -> bool:
        """
        Check and record the CSeq of an in-dialog request (RFC 3261
        §12.2.2): C{False} when it is lower than the last one (answer 500).
        ACK and CANCEL carry the number of what they refer to and are
        always accepted.
        """
        if request.method in ("ACK", "CANCEL"):
            return True
        number = request.cseq.number
        if self.remoteSeq is not None and number < self.remoteSeq:
            return False
        self.remoteSeq = number
        return True

    def refreshTarget(self, request: SipRequest) -> None:
        """
        A target-refresh request (re-INVITE, UPDATE) may carry a new
        Contact: it becomes the remote target.
        """
        contacts = request.contacts
        if contacts:
            self.remoteTarget = contacts[0].uri

    # -- outgoing requests --

    def nextSeq(self) -> int:
        """
        The CSeq number of the next request we send.
        """
        self.localSeq += 1
        return self.localSeq

    def request(
        self,
        method: str,
        sentBy: str,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        contentType: str | None = None,
        cseq: int | None = None,
        branch: str | None = None,
    ) -> SipRequest:
        """
        An in-dialog request (RFC 3261 §12.2.1.1).

        @param sentBy: our C{host:port} for the C{Via}.
        @param cseq: the CSeq number (default: the next local one; the ACK
            of a 2xx passes the INVITE's).
        @param branch: the Via branch (default: a new one).
        """
        if cseq is None:
            cseq = self.nextSeq()
        uri, routes = self._routing()
        items: list[tuple[str, str]] = [
            ("Via", f"SIP/2.0/UDP {sentBy};branch={branch or newBranch()};rport"),
            ("Max-Forwards", "70"),
            ("From", self.localAddress.toString()),
            ("To", self.remoteAddress.toString()),
            ("Call-ID", self.callId),
            ("CSeq", f"{cseq} {method}"),
        ]
        items.extend(("Route", r) for r in routes)
        items.extend(headers)
        if contentType is not None:
            items.append(("Content-Type", contentType))
        return SipRequest(method, uri, items, body)

    def _routing(self) -> tuple[URI, tuple[str, ...]]:
        """
        The Request-URI and Route values (loose or strict routing,
        RFC 3261 §12.2.1.1).
        """
        routes = self.routeSet
        if not routes:
            return self.remoteTarget, ()
        first = parseAddress(routes[0]).uri
        if isinstance(first, SipURI) and "lr" not in first.params:
            # strict router: it becomes the Request-URI, the target goes last
            return first, (*routes[1:], f"<{self.remoteTarget.toString()}>")
        return self.remoteTarget, routes
