"""Dialog state (RFC 3261 section 12), sans-IO.

A :class:`Dialog` is one side of a call seen from the switch: the caller's leg (where the
switch is the UAS) or a callee's leg (where it is the UAC).  It knows how to build requests
inside the dialog (12.2.1.1) and checks the CSeq of requests received in it (12.2.2).
"""

from __future__ import annotations

import contextlib

from switch.sip.headers import parse_name_addr
from switch.sip.message import SipMessage
from switch.transaction.layer import new_branch
from switch.transaction.peer import Peer

UAS = "uas"
UAC = "uac"


class Dialog:
    __slots__ = (
        "call_id", "invite_pending", "local", "local_seq", "local_tag", "peer", "remote", "remote_seq",
        "remote_tag", "remote_target", "role", "route_set", "via_host", "via_port",
    )

    def __init__(self, *, role: str, call_id: str, local_tag: str, remote_tag: str | None,
                 local: str, remote: str, remote_target: str, route_set: list[str], peer: Peer,
                 local_seq: int, remote_seq: int | None, via_host: str, via_port: int) -> None:
        self.role = role
        self.call_id = call_id
        self.local_tag = local_tag
        self.remote_tag = remote_tag
        self.local = local  # our From/To header value, with our tag
        self.remote = remote  # the peer's header value, with its tag
        self.remote_target = remote_target  # the peer's Contact URI (12.1.1, 12.1.2)
        self.route_set = route_set
        self.peer = peer  # where requests in this dialog are sent (the peer's real address: NAT)
        self.local_seq = local_seq
        self.remote_seq = remote_seq
        self.via_host = via_host
        self.via_port = via_port
        self.invite_pending = False  # an INVITE of ours in this dialog awaits its final answer

    @classmethod
    def as_uas(cls, request: SipMessage, local_tag: str, peer: Peer, via_host: str, via_port: int) -> Dialog:
        """The dialog a 2xx/1xx with a To tag creates at the UAS (RFC 3261 section 12.1.1)."""
        contacts = request.get_all("contact")
        target = parse_name_addr(contacts[0]).uri if contacts else request.from_.uri
        to = request.headers["to"][0]
        return cls(
            role=UAS, call_id=request.call_id, local_tag=local_tag, remote_tag=request.from_.tag,
            local=f"{to};tag={local_tag}", remote=request.headers["from"][0], remote_target=target,
            route_set=request.get_all("record-route"), peer=peer, local_seq=0,
            remote_seq=request.cseq_num, via_host=via_host, via_port=via_port,
        )

    def confirm_uac(self, response: SipMessage) -> None:
        """Fill the UAC side from a response that has the peer's tag (RFC 3261 section 12.1.2)."""
        self.remote_tag = response.to.tag
        self.remote = response.headers["to"][0]
        self.refresh_target(response)
        rr = response.get_all("record-route")
        self.route_set = list(reversed(rr))

    def refresh_target(self, msg: SipMessage) -> None:
        """A target refresh request or response (re-INVITE, UPDATE) may move the peer (12.2)."""
        contacts = msg.get_all("contact")
        if contacts:
            # A malformed Contact keeps the old target: it must not break an established call.
            with contextlib.suppress(ValueError):
                self.remote_target = parse_name_addr(contacts[0]).uri

    def check_remote_cseq(self, msg: SipMessage) -> bool:
        """RFC 3261 12.2.2: a lower CSeq than the last one is out of order (answer 500)."""
        if msg.method == "ACK" or msg.method == "CANCEL":
            return True
        if self.remote_seq is not None and msg.cseq_num <= self.remote_seq:
            return False
        self.remote_seq = msg.cseq_num
        return True

    def new_request(self, method: str, *, contact: str | None = None, body: bytes = b"",
                    content_type: str | None = None, extra: list[tuple[str, str]] | None = None,
                    cseq: int | None = None, branch: str | None = None) -> SipMessage:
        """A request inside this dialog (RFC 3261 section 12.2.1.1)."""
        if cseq is None:
            self.local_seq += 1
            cseq = self.local_seq
        transport = "TCP" if self.peer.transport == "tcp" else "UDP"
        host = self.via_host if ":" not in self.via_host else f"[{self.via_host}]"
        headers: list[tuple[str, str]] = [
            ("Via", f"SIP/2.0/{transport} {host}:{self.via_port};branch={branch or new_branch()};rport"),
            ("Max-Forwards", "70"),
            ("From", self.local),
            ("To", self.remote),
            ("Call-ID", self.call_id),
            ("CSeq", f"{cseq} {method}"),
        ]
        for route in self.route_set:
            headers.append(("Route", route))
        if contact is not None:
            headers.append(("Contact", contact))
        if extra:
            headers.extend(extra)
        if body and content_type:
            headers.append(("Content-Type", content_type))
        return SipMessage.request(method, self.remote_target, headers, body)
