"""SIP device schemas.  The password is write-only: only its HA1 digests are stored."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, field_validator

from admin_api.schemas.common import (
    IpOrNetwork,
    Limit,
    Money,
    MoneyOut,
    ReadModel,
    WriteModel,
    not_enforced,
    not_null,
)
from provisioning.validation import (
    CALLER_NUMBER_PATTERN,
    DISPLAY_NAME_PATTERN,
    EMAIL_PATTERN,
    EXTENSION_PATTERN,
    NO_CONTROL_PATTERN,
    PASSWORD_MAX_LENGTH,
    PASSWORD_MIN_LENGTH,
    USERNAME_PATTERN,
)

DeviceStatus = Literal["active", "inactive"]
Username = Annotated[
    str, Field(pattern=USERNAME_PATTERN, description="SIP login, unique across the switch", examples=["alice"])
]
Password = Annotated[
    str,
    Field(
        min_length=PASSWORD_MIN_LENGTH,
        max_length=PASSWORD_MAX_LENGTH,
        pattern=NO_CONTROL_PATTERN,
        description="SIP digest secret; write-only",
        json_schema_extra={"writeOnly": True},
    ),
]
Extension = Annotated[str, Field(pattern=EXTENSION_PATTERN, description="Unique within the customer")]
CallerNumber = Annotated[str, Field(pattern=CALLER_NUMBER_PATTERN)]
DisplayName = Annotated[str, Field(pattern=DISPLAY_NAME_PATTERN)]
VoicemailEmail = Annotated[str, Field(max_length=254, pattern=EMAIL_PATTERN)]
AllowedIps = Annotated[list[IpOrNetwork], Field(max_length=64, description="Source addresses or networks; empty = any")]


SIP_DEVICE_NOT_ENFORCED = ("max_sessions", "cps", "voicemail_enabled", "voicemail_email", "fraud_limit")


@not_enforced(*SIP_DEVICE_NOT_ENFORCED)
class SipDeviceCreate(WriteModel):
    username: Username
    password: Password
    extension: Extension | None = None
    caller_number: CallerNumber | None = None
    display_name: DisplayName | None = None
    status: DeviceStatus = "active"
    max_sessions: Limit = 0
    cps: Limit = 0
    allowed_ips: AllowedIps = Field(default_factory=list)
    voicemail_enabled: bool = False
    voicemail_email: VoicemailEmail | None = None
    fraud_limit: Money | None = Field(
        default=None, description="This user's daily outgoing limit (<= the customer's ceiling); empty = the default"
    )


@not_enforced(*SIP_DEVICE_NOT_ENFORCED)
class SipDeviceUpdate(WriteModel):
    username: Username | None = Field(default=None, description="Changing it requires the password too")
    password: Password | None = None
    extension: Extension | None = None
    caller_number: CallerNumber | None = None
    display_name: DisplayName | None = None
    status: DeviceStatus | None = None
    max_sessions: Limit | None = None
    cps: Limit | None = None
    allowed_ips: AllowedIps | None = None
    voicemail_enabled: bool | None = None
    voicemail_email: VoicemailEmail | None = None
    fraud_limit: Money | None = None

    _not_null = field_validator(
        "username", "password", "status", "max_sessions", "cps", "allowed_ips", "voicemail_enabled"
    )(not_null)


@not_enforced(*SIP_DEVICE_NOT_ENFORCED)
class SipDevicePublic(ReadModel):
    id: int
    customer_id: int
    username: str
    realm: str = Field(description="The digest realm the credentials were made for")
    extension: str | None
    caller_number: str | None
    display_name: str | None
    status: DeviceStatus
    max_sessions: int
    cps: int
    allowed_ips: list[str]
    voicemail_enabled: bool
    voicemail_email: str | None
    fraud_limit: MoneyOut | None
    created_at: datetime
    updated_at: datetime
