"""Where a message came from or goes to, and the one-call sending interface below the transactions."""

from __future__ import annotations

from typing import Protocol

from switch.sip.headers import Via


class Peer:
    """A remote transport address, and which of our sockets (or TCP connection) reaches it."""

    __slots__ = ("conn_id", "ip", "local_port", "port", "transport")

    def __init__(self, transport: str, ip: str, port: int, local_port: int, conn_id: int | None = None) -> None:
        self.transport = transport  # "udp" or "tcp"
        self.ip = ip
        self.port = port
        self.local_port = local_port
        self.conn_id = conn_id

    @property
    def reliable(self) -> bool:
        return self.transport != "udp"

    def __repr__(self) -> str:
        conn = f" conn={self.conn_id}" if self.conn_id is not None else ""
        return f"<Peer {self.transport}:{self.ip}:{self.port} via :{self.local_port}{conn}>"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Peer) and self.transport == other.transport and self.ip == other.ip
                and self.port == other.port and self.local_port == other.local_port)

    def __hash__(self) -> int:
        return hash((self.transport, self.ip, self.port, self.local_port))


def response_peer(via: Via | None, source: Peer) -> Peer:
    """Where responses to a request go (RFC 3261 section 18.2.2 with RFC 3581 section 4).

    Reliable transports answer on the connection the request came on.  On UDP the answer goes
    to the packet's source address (the ``received`` rule) and, when the client asked with
    ``rport``, to its source port; otherwise to the port in the Via sent-by.
    """
    if source.reliable or via is None or "rport" in via.params:
        return source
    port = via.port if via.port is not None else 5060
    if port == source.port:
        return source
    return Peer(source.transport, source.ip, port, source.local_port, None)


class Sender(Protocol):
    def send(self, data: bytes, peer: Peer) -> bool:
        """Queue ``data`` for ``peer``; False when it cannot be sent (e.g. the connection is gone)."""
        ...
