"""Customer schemas."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, field_validator

from admin_api.schemas.common import Domain, Id, Limit, ReadModel, WriteModel, not_null
from provisioning.validation import NO_CONTROL_PATTERN

CustomerStatus = Literal["created", "active", "stopped", "closed"]
Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=NO_CONTROL_PATTERN)
]


class CustomerCreate(WriteModel):
    name: Name
    domain: Domain | None = Field(
        default=None,
        description="SIP domain, lowercase and unique; immutable once set. Devices of a customer "
        "without a domain use the switch's default realm.",
    )
    status: CustomerStatus = Field(
        default="active",
        description="Lifecycle created -> active -> stopped -> active ... -> closed. New customers "
        "start active so they can call at once.",
    )
    max_sessions: Limit = Field(default=0, description="Concurrent calls; 0 = no limit")
    cps: Limit = Field(default=0, description="Call attempts per second; 0 = no limit")
    max_call_seconds: Limit = Field(default=0, description="Longest call; 0 = no limit")
    reseller_id: Id | None = Field(
        default=None,
        description="Owning reseller; empty = directly under the service provider "
        "(for a reseller's token: that reseller)",
    )


class CustomerUpdate(WriteModel):
    name: Name | None = None
    domain: Domain | None = Field(default=None, description="May be set once, never changed")
    status: CustomerStatus | None = None
    max_sessions: Limit | None = None
    cps: Limit | None = None
    max_call_seconds: Limit | None = None

    _not_null = field_validator("name", "status", "max_sessions", "cps", "max_call_seconds")(not_null)


class CustomerPublic(ReadModel):
    id: int
    reseller_id: int | None
    name: str
    domain: str | None
    status: CustomerStatus
    max_sessions: int
    cps: int
    max_call_seconds: int
    created_at: datetime
    updated_at: datetime
