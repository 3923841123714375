"""
Tests for L{rapida_twisted.sip._dialog}: dialog creation on both sides,
CSeq rules and in-dialog request building.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from rapida_twisted.sip._codec import SipRequest, parseMessage, responseFor
from rapida_twisted.sip._dialog import CONFIRMED, EARLY, Dialog, DialogError

from ._udp import sipRequest

PEER = ("10.0.0.1", 5060)


def request(method: str = "INVITE", **kw: object) -> SipRequest:
    message = parseMessage(sipRequest(method, **kw))  # type: ignore[arg-type]
    assert isinstance(message, SipRequest)
    return message


class UasDialogTests(SynchronousTestCase):
    def test_fromInvite(self) -> None:
        invite = request(cseq=7)
        dialog = Dialog.fromRequest(invite, "ours", PEER)
        self.assertEqual(dialog.id, ("call-1@test", "ours", "ft1"))
        self.assertEqual(dialog.state, EARLY)
        self.assertEqual(dialog.remoteSeq, 7)
        self.assertEqual(dialog.remoteTarget.toString(), "sip:alice@10.0.0.1:5060")
        self.assertEqual(dialog.localAddress.tag, "ours")

    def test_noFromTag(self) -> None:
        raw = sipRequest("INVITE").replace(b";tag=ft1", b"")
        message = parseMessage(raw)
        assert isinstance(message, SipRequest)
        self.assertRaises(DialogError, Dialog.fromRequest, message, "ours", PEER)

    def test_noContact(self) -> None:
        self.assertRaises(DialogError, Dialog.fromRequest, request(contact=None), "ours", PEER)

    def test_byeBuilt(self) -> None:
        dialog = Dialog.fromRequest(request(), "ours", PEER)
        seq = dialog.localSeq
        bye = dialog.request("BYE", "192.0.2.1:5090")
        self.assertEqual(bye.method, "BYE")
        self.assertEqual(bye.uri.toString(), "sip:alice@10.0.0.1:5060")
        self.assertEqual(bye.fromAddress.tag, "ours")
        self.assertEqual(bye.toAddress.tag, "ft1")
        self.assertEqual(bye.callId, "call-1@test")
        self.assertEqual(bye.cseq.number, seq + 1)
        self.assertEqual(bye.cseq.method, "BYE")
        via = bye.vias[0]
        self.assertTrue(via.isRfc3261Branch)
        self.assertEqual(via.sentBy, "192.0.2.1:5090")
        self.assertTrue(via.hasRport)
        # the built request survives a round trip through the codec
        again = parseMessage(bye.toBytes())
        assert isinstance(again, SipRequest)
        self.assertEqual(again.cseq, bye.cseq)
        self.assertNotEqual(dialog.request("INFO", "h:1").vias[0].branch, via.branch)

    def test_looseRouteSet(self) -> None:
        invite = request(
            extra=(
                ("Record-Route", "<sip:p1.example.com;lr>"),
                ("Record-Route", "<sip:p2.example.com;lr>"),
            )
        )
        dialog = Dialog.fromRequest(invite, "ours", PEER)
        bye = dialog.request("BYE", "h:1")
        self.assertEqual(
            bye.getAll("Route"), ("<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>")
        )
        self.assertEqual(bye.uri.toString(), "sip:alice@10.0.0.1:5060")

    def test_strictRouteSet(self) -> None:
        invite = request(extra=(("Record-Route", "<sip:strict.example.com>"),))
        dialog = Dialog.fromRequest(invite, "ours", PEER)
        bye = dialog.request("BYE", "h:1")
        self.assertEqual(bye.uri.toString(), "sip:strict.example.com")
        self.assertEqual(bye.getAll("Route"), ("<sip:alice@10.0.0.1:5060>",))

    def test_badRecordRoute(self) -> None:
        invite = request(extra=(("Record-Route", "<sip:"),))
        self.assertRaises(DialogError, Dialog.fromRequest, invite, "ours", PEER)

    def test_remoteSeq(self) -> None:
        dialog = Dialog.fromRequest(request(cseq=5), "ours", PEER)
        self.assertTrue(dialog.acceptRemoteSeq(request("BYE", cseq=6, toTag="ours")))
        self.assertFalse(dialog.acceptRemoteSeq(request("INFO", cseq=4, toTag="ours")))
        # ACK and CANCEL repeat the INVITE's number
        self.assertTrue(dialog.acceptRemoteSeq(request("ACK", cseq=5, toTag="ours")))
        self.assertEqual(dialog.remoteSeq, 6)

    def test_refreshTarget(self) -> None:
        dialog = Dialog.fromRequest(request(), "ours", PEER)
        dialog.refreshTarget(request(contact="<sip:alice@10.9.9.9:5070>", toTag="ours"))
        self.assertEqual(dialog.remoteTarget.toString(), "sip:alice@10.9.9.9:5070")
        dialog.refreshTarget(request(contact=None, toTag="ours"))
        self.assertEqual(dialog.remoteTarget.toString(), "sip:alice@10.9.9.9:5070")


class UacDialogTests(SynchronousTestCase):
    def test_fromResponse(self) -> None:
        invite = request(cseq=3)
        ok = responseFor(
            invite,
            200,
            toTag="remote",
            headers=[
                ("Contact", "<sip:echo@192.0.2.1:5090>"),
                ("Record-Route", "<sip:a;lr>"),
                ("Record-Route", "<sip:b;lr>"),
            ],
        )
        dialog = Dialog.fromResponse(invite, ok, ("192.0.2.1", 5090))
        self.assertEqual(dialog.id, ("call-1@test", "ft1", "remote"))
        self.assertEqual(dialog.state, CONFIRMED)
        self.assertEqual(dialog.routeSet, ("<sip:b;lr>", "<sip:a;lr>"))
        ack = dialog.request("ACK", "h:1", cseq=invite.cseq.number)
        self.assertEqual(ack.cseq.number, 3)
        self.assertEqual(dialog.localSeq, 3)
        self.assertEqual(ack.uri.toString(), "sip:echo@192.0.2.1:5090")
        self.assertEqual(ack.toAddress.tag, "remote")
        self.assertEqual(dialog.request("BYE", "h:1").cseq.number, 4)

    def test_noTag(self) -> None:
        invite = request()
        ok = responseFor(invite, 200, headers=[("Contact", "<sip:x@y>")])
        self.assertRaises(DialogError, Dialog.fromResponse, invite, ok, PEER)

    def test_noContact(self) -> None:
        invite = request()
        ok = responseFor(invite, 200, toTag="r")
        self.assertRaises(DialogError, Dialog.fromResponse, invite, ok, PEER)
