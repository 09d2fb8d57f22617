"""Location service data: one binding of an address-of-record to a contact (RFC 3261 section 10).

The registrar keeps every binding in memory and hands changes to a :class:`BindingSink`, which
persists them (the provisioning package writes them through to the database) so that bindings
survive a restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(slots=True)
class Binding:
    aor: str  # the device username: the address-of-record key
    device_id: int
    contact: str  # the Contact URI exactly as registered (RFC 3261 section 10.3 step 6)
    expires_at: float  # absolute, seconds since the epoch (UTC)
    call_id: str
    cseq: int
    # Where the REGISTER really came from (RFC 3581 received/rport): behind NAT the Contact
    # is unreachable, so requests for this binding go to this address instead.
    source_ip: str
    source_port: int
    transport: str  # "udp" or "tcp"
    local_port: int  # the switch port that received it; requests leave from the same socket
    q: float | None = None
    user_agent: str = ""
    conn_id: int | None = None  # the TCP connection it arrived on, while that connection lives
    params: str = ""  # contact-params other than expires/q, kept verbatim (e.g. +sip.instance)
    # The expiry the store last received for this binding (see Registrar: refreshes that change
    # nothing but the expiry are written back only once the stored copy falls behind).
    stored_expires_at: float = 0.0


class BindingSink(Protocol):
    """Where binding changes go to be persisted (write-behind, must not block the caller)."""

    def saved(self, binding: Binding) -> None: ...

    def removed(self, aor: str, contact: str) -> None: ...


class BindingSource(Protocol):
    def load_bindings(self) -> list[Binding]: ...
