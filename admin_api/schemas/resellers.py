"""Reseller and administrator-account schemas."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, field_validator

from admin_api.schemas.common import Domain, EntityStatus, Id, ReadModel, WriteModel, not_null, text
from admin_api.schemas.customers import Currency, Decimals, TimeZone
from provisioning.validation import ADMIN_USERNAME_PATTERN, EMAIL_PATTERN, WEB_PASSWORD_MAX_LENGTH, WEB_PASSWORD_RULE

Permission = Literal[
    "manage_dids", "manage_devices", "manage_child_resellers", "approve_stop_resume", "approve_customer_close"
]
Permissions = Annotated[list[Permission], Field(max_length=16)]


class ResellerCreate(WriteModel):
    name: Annotated[str, text(100, min_length=1)]
    parent_id: Id | None = Field(
        default=None, description="Parent reseller; empty = the service provider (for a reseller's token: itself)"
    )
    company: Annotated[str, text(100)] = ""
    domain: Domain | None = None
    status: EntityStatus = "active"
    permissions: Permissions | None = Field(
        default=None, description="Empty: every permission its creator holds (the service provider holds all)"
    )
    tariff_id: Id | None = Field(default=None, description="The tariff it buys on (its parent's)")
    billing_decimals: Decimals | None = Field(default=None, description="Empty: the parent's (4 at the top)")
    timezone: Annotated[TimeZone, Field()] | None = Field(default=None, description="Empty: the parent's (UTC)")
    currency: Currency | None = Field(default=None, description="Empty: the parent's (GBP at the top)")


class ResellerUpdate(WriteModel):
    name: Annotated[str, text(100, min_length=1)] | None = None
    company: Annotated[str, text(100)] | None = None
    domain: Domain | None = None
    status: EntityStatus | None = Field(default=None, description="inactive: its users and tokens stop working")
    permissions: Permissions | None = None
    tariff_id: Id | None = None
    default_tariff_id: Id | None = Field(default=None, description="Tariff of its own for new customers")
    billing_decimals: Decimals | None = None
    timezone: TimeZone | None = None
    currency: Currency | None = None

    _not_null = field_validator("name", "company", "status", "permissions", "billing_decimals", "timezone", "currency")(
        not_null
    )


class ResellerPublic(ReadModel):
    id: int
    parent_id: int | None
    path: str = Field(description="Ids from the top of the tree down to this reseller: /1/5/")
    name: str
    company: str
    domain: str | None
    status: EntityStatus
    permissions: list[str]
    tariff_id: int | None
    default_tariff_id: int | None
    billing_decimals: int
    timezone: str
    currency: str
    created_at: datetime
    updated_at: datetime


AdminUsername = Annotated[
    str, Field(max_length=170, pattern=ADMIN_USERNAME_PATTERN, description="E-mail style login: name@domain")
]
AdminPassword = Annotated[
    str, Field(max_length=WEB_PASSWORD_MAX_LENGTH, description=WEB_PASSWORD_RULE, json_schema_extra={"writeOnly": True})
]
AdminEmail = Annotated[str, Field(max_length=254, pattern=EMAIL_PATTERN)]


class AdminUserCreate(WriteModel):
    username: AdminUsername
    password: AdminPassword
    name: Annotated[str, text(40, min_length=1)]
    email: AdminEmail | None = None
    reseller_id: Id | None = Field(
        default=None, description="Whose administrator; empty = the caller's reseller (or the service provider's)"
    )
    is_chief: bool = Field(default=False, description="The partner's first administrator is always chief")
    status: EntityStatus = "active"


class AdminUserUpdate(WriteModel):
    name: Annotated[str, text(40, min_length=1)] | None = None
    email: AdminEmail | None = None
    password: AdminPassword | None = None
    status: EntityStatus | None = None
    is_chief: bool | None = None

    _not_null = field_validator("name", "password", "status", "is_chief")(not_null)


class AdminUserPublic(ReadModel):
    id: int
    reseller_id: int | None
    username: str
    name: str
    email: str | None
    is_chief: bool
    status: EntityStatus
    created_at: datetime
    updated_at: datetime
