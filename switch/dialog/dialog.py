"""Dialog state (RFC 3261 section 12), sans-IO.

A :class:`Dialog` is one side of a call seen from the switch: the caller's leg (where the
switch is the UAS) or a callee's leg (where it is the UAC).  It knows how to build requests
inside the dialog (12.2.1.1) and checks the CSeq of requests received in it (12.2.2).
"""

from __future__ import annotations

import contextlib

from switch.sip.headers import Via, parse_name_addr
from switch.sip.message import SipMessage
from switch.transaction.layer import new_branch
from switch.transaction.peer import Peer

UAS = "uas"
UAC = "uac"


def outgoing_request(method: str, uri: str, *, transport: str, host: str, port: int, branch: str,
                     headers: dict[str, list[str]], call_id: str, cseq: int, body: bytes = b"") -> SipMessage:
    """A request the switch originates, built field by field without re-parsing what we wrote.

    ``headers`` holds every field but Via, CSeq and Call-ID, keyed by lowercase full name in the
    order they go on the wire.  The top Via carries ``rport`` (RFC 3581 section 3) so that
    answers reach us through NAT.
    """
    host_text = f"[{host}]" if ":" in host else host
    via_value = f"SIP/2.0/{transport} {host_text}:{port};branch={branch};rport"
    msg = SipMessage()
    msg.method = method
    msg.uri = uri
    fields: dict[str, list[str]] = {"via": [via_value]}
    fields.update(headers)
    fields["call-id"] = [call_id]
    fields["cseq"] = [f"{cseq} {method}"]
    msg.headers = fields
    msg.body = body
    msg.via = Via(transport, host_text.lower(), port, {"branch": branch, "rport": None}, via_value)
    msg.call_id = call_id
    msg.cseq_num = cseq
    msg.cseq_method = method
    msg.max_forwards = 70
    return msg


class Dialog:
    __slots__ = (
        "call_id", "invite_pending", "local", "local_seq", "local_tag", "peer", "remote", "remote_ip", "remote_seq",
        "remote_tag", "remote_target", "role", "route_set", "via_host", "via_port",
    )

    def __init__(self, *, role: str, call_id: str, local_tag: str, remote_tag: str | None,
                 local: str, remote: str, remote_target: str, route_set: list[str], peer: Peer,
                 local_seq: int, remote_seq: int | None, via_host: str, via_port: int,
                 remote_ip: str | None = None) -> None:
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
        # The address the peer's requests come from: requests in this dialog from anywhere else
        # are refused (the Call-ID and tags are not a password).
        self.remote_ip = remote_ip if remote_ip is not None else peer.ip

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
                    cseq: int | None = None, branch: str | None = None, max_forwards: int = 70) -> SipMessage:
        """A request inside this dialog (RFC 3261 section 12.2.1.1)."""
        if cseq is None:
            self.local_seq += 1
            cseq = self.local_seq
        fields: dict[str, list[str]] = {"max-forwards": [str(max_forwards)], "from": [self.local],
                                        "to": [self.remote]}
        if self.route_set:
            fields["route"] = list(self.route_set)
        if contact is not None:
            fields["contact"] = [contact]
        if extra:
            for name, value in extra:
                fields.setdefault(name.lower(), []).append(value)
        if body and content_type:
            fields["content-type"] = [content_type]
        return outgoing_request(method, self.remote_target, transport="TCP" if self.peer.transport == "tcp" else "UDP",
                                host=self.via_host, port=self.via_port, branch=branch or new_branch(),
                                headers=fields, call_id=self.call_id, cseq=cseq, body=body)
