"""IP device schemas: a PBX or gateway recognised by its source address."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, field_validator

from admin_api.schemas.common import IpAddress, Limit, ReadModel, WriteModel, not_enforced, not_null, text
from provisioning.validation import CALLER_NUMBER_PATTERN, TECH_PREFIX_PATTERN

DeviceStatus = Literal["active", "inactive"]
Port = Annotated[int, Field(ge=1, le=65535)]
TechPrefix = Annotated[str, Field(pattern=TECH_PREFIX_PATTERN, description="Digits the device prefixes to numbers")]
CallerNumber = Annotated[str, Field(pattern=CALLER_NUMBER_PATTERN)]


@not_enforced("max_sessions", "cps")
class IpDeviceCreate(WriteModel):
    ip: IpAddress
    port: Port | None = Field(default=None, description="Source port; empty = any port of this address")
    tech_prefix: TechPrefix = ""
    status: DeviceStatus = "active"
    max_sessions: Limit = 0
    cps: Limit = 0
    caller_number: CallerNumber | None = None
    description: Annotated[str, text(200)] = ""


@not_enforced("max_sessions", "cps")
class IpDeviceUpdate(WriteModel):
    ip: IpAddress | None = None
    port: Port | None = None
    tech_prefix: TechPrefix | None = None
    status: DeviceStatus | None = None
    max_sessions: Limit | None = None
    cps: Limit | None = None
    caller_number: CallerNumber | None = None
    description: Annotated[str, text(200)] | None = None

    _not_null = field_validator("ip", "tech_prefix", "status", "max_sessions", "cps", "description")(not_null)


@not_enforced("max_sessions", "cps")
class IpDevicePublic(ReadModel):
    id: int
    customer_id: int
    ip: str
    port: int | None
    tech_prefix: str
    status: DeviceStatus
    max_sessions: int
    cps: int
    caller_number: str | None
    description: str
    created_at: datetime
    updated_at: datetime
