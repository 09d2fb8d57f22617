"""The switch's ports: what it needs from the outside world, as plain data and Protocols.

The switch never imports the database, the API or the billing code.  The composition root
(`trunkline.app`) hands it objects that satisfy these Protocols; `provisioning` implements them
against SQLAlchemy, tests implement them in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

# Customer lifecycle (iPECS OMS guide): created -> active -> stopped -> active ... -> closed.
CUSTOMER_CREATED = "created"
CUSTOMER_ACTIVE = "active"
CUSTOMER_STOPPED = "stopped"
CUSTOMER_CLOSED = "closed"

DEVICE_ACTIVE = "active"
DEVICE_INACTIVE = "inactive"


@dataclass(frozen=True, slots=True)
class CustomerInfo:
    id: int
    name: str
    status: str
    domain: str | None = None
    max_sessions: int = 0  # 0 = no limit
    cps: int = 0  # 0 = no limit
    max_call_seconds: int = 0  # 0 = no limit
    reseller_path: str = ""

    @property
    def may_call(self) -> bool:
        return self.status == CUSTOMER_ACTIVE


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """A SIP device (a phone or soft client that registers with digest credentials)."""

    id: int
    customer_id: int
    username: str
    realm: str
    # RFC 7616 section 3.4.2: HA1 = H(username ":" realm ":" password), kept instead of the password.
    ha1_md5: str
    ha1_sha256: str
    extension: str | None = None
    caller_number: str | None = None
    display_name: str | None = None
    status: str = DEVICE_ACTIVE
    max_sessions: int = 0
    cps: int = 0
    allowed_ips: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        return self.status == DEVICE_ACTIVE


@dataclass(frozen=True, slots=True)
class IpDeviceInfo:
    """A customer's PBX or gateway, authenticated by its source address (no digest)."""

    id: int
    customer_id: int
    ip: str
    port: int | None = None  # None: any source port of that address
    tech_prefix: str = ""
    status: str = DEVICE_ACTIVE
    max_sessions: int = 0
    cps: int = 0
    caller_number: str | None = None

    @property
    def active(self) -> bool:
        return self.status == DEVICE_ACTIVE


class Directory(Protocol):
    """Read access to provisioning, served from an in-memory snapshot (never blocks the loop)."""

    def device_by_username(self, username: str) -> DeviceInfo | None: ...

    def device_by_id(self, device_id: int) -> DeviceInfo | None: ...

    def device_by_extension(self, customer_id: int, extension: str) -> DeviceInfo | None: ...

    def ip_device_by_source(self, ip: str, port: int) -> IpDeviceInfo | None:
        """The IP device for a source address: an exact ip+port entry first, then ip alone."""
        ...

    def customer(self, customer_id: int) -> CustomerInfo | None: ...
