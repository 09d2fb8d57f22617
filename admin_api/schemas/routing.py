"""Carrier, route, translation rule and DID schemas."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, field_validator

from admin_api.schemas.common import EntityStatus, Id, Limit, ReadModel, WriteModel, not_null, text

Transport = Literal["udp", "tcp", "tls"]
Strategy = Literal["priority", "least_cost", "weighted"]
DialPattern = Annotated[str, Field(pattern=r"^[0-9]{0,20}$", description="Leading digits; empty = every number")]
Host = Annotated[str, Field(min_length=1, max_length=253, description="IP address or DNS name")]


class CarrierCreate(WriteModel):
    name: Annotated[str, text(100, min_length=1)]
    host: Host
    port: Annotated[int, Field(ge=1, le=65535)] = 5060
    transport: Transport = "udp"
    strip_prefix: DialPattern = Field(default="", description="Removed from the number when it starts with it")
    add_prefix: Annotated[str, Field(pattern=r"^\+?[0-9]{0,19}$")] = Field(default="", description="Then prepended")
    max_sessions: Limit = 0
    cps: Limit = 0
    tariff_id: Id | None = Field(default=None, description="Buy tariff (the service provider's)")
    status: EntityStatus = "active"


class CarrierUpdate(WriteModel):
    name: Annotated[str, text(100, min_length=1)] | None = None
    host: Host | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    transport: Transport | None = None
    strip_prefix: DialPattern | None = None
    add_prefix: Annotated[str, Field(pattern=r"^\+?[0-9]{0,19}$")] | None = None
    max_sessions: Limit | None = None
    cps: Limit | None = None
    tariff_id: Id | None = None
    status: EntityStatus | None = None

    _not_null = field_validator(
        "name", "host", "port", "transport", "strip_prefix", "add_prefix", "max_sessions", "cps", "status"
    )(not_null)


class CarrierPublic(ReadModel):
    id: int
    name: str
    host: str
    port: int
    transport: Transport
    strip_prefix: str
    add_prefix: str
    max_sessions: int
    cps: int
    tariff_id: int | None
    status: EntityStatus
    created_at: datetime
    updated_at: datetime


class RouteCarrier(WriteModel):
    carrier_id: Id
    weight: Annotated[int, Field(ge=1, le=1000, description="Share of calls (weighted strategy)")] = 1


class RouteCarrierPublic(ReadModel):
    carrier_id: int
    position: int
    weight: int


RouteCarriers = Annotated[list[RouteCarrier], Field(max_length=32, description="In priority order")]


class RouteCreate(WriteModel):
    name: Annotated[str, text(100, min_length=1)]
    dial_pattern: DialPattern = ""
    strategy: Strategy = "priority"
    customer_id: Id | None = Field(default=None, description="Only for this customer; empty = for everyone")
    status: EntityStatus = "active"
    carriers: RouteCarriers = Field(default_factory=list)


class RouteUpdate(WriteModel):
    name: Annotated[str, text(100, min_length=1)] | None = None
    dial_pattern: DialPattern | None = None
    strategy: Strategy | None = None
    customer_id: Id | None = None
    status: EntityStatus | None = None
    carriers: RouteCarriers | None = Field(default=None, description="Replaces the whole list")

    _not_null = field_validator("name", "dial_pattern", "strategy", "status", "carriers")(not_null)


class RoutePublic(ReadModel):
    id: int
    name: str
    dial_pattern: str
    strategy: Strategy
    customer_id: int | None
    status: EntityStatus
    carriers: list[RouteCarrierPublic]
    created_at: datetime
    updated_at: datetime


TranslationKind = Literal["source", "destination", "did_source", "did_destination"]
TranslationPrefix = Annotated[str, Field(pattern=r"^\+?[0-9]{0,20}$")]


class TranslationRuleCreate(WriteModel):
    kind: TranslationKind = Field(
        description="source/destination: the caller and dialled numbers of outbound calls; "
        "did_source/did_destination: those of calls to the customer's DIDs"
    )
    match: TranslationPrefix = Field(description="Leading part to replace (empty matches every number)")
    replacement: TranslationPrefix
    position: Annotated[int, Field(ge=0, le=1_000_000)] | None = Field(
        default=None, description="Order among rules of its kind; empty = after the last"
    )
    description: Annotated[str, text(100)] = ""


class TranslationRuleUpdate(WriteModel):
    kind: TranslationKind | None = None
    match: TranslationPrefix | None = None
    replacement: TranslationPrefix | None = None
    position: Annotated[int, Field(ge=0, le=1_000_000)] | None = None
    description: Annotated[str, text(100)] | None = None

    _not_null = field_validator("kind", "match", "replacement", "position", "description")(not_null)


class TranslationRulePublic(ReadModel):
    id: int
    customer_id: int
    kind: TranslationKind
    position: int
    match: str
    replacement: str
    description: str
    created_at: datetime


DidDestination = Literal["sip_device", "ring_group", "queue", "ivr", "time_condition", "conference", "pstn", "sip_uri"]
Number = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^\+?[0-9 ().-]{1,31}$")]


class DidFields(WriteModel):
    customer_id: Id | None = Field(default=None, description="Assigned customer; empty = in stock")
    reseller_id: Id | None = Field(
        default=None, description="Holder; empty = the caller's reseller, or the customer's reseller"
    )
    destination_type: DidDestination | None = None
    destination: Annotated[str, text(255)] = Field(
        default="",
        description="sip_device: the device id; pstn: a number; sip_uri: sip:...; others: the app's name",
    )
    max_sessions: Limit = 0
    status: EntityStatus = "active"
    description: Annotated[str, text(200)] = ""


class DidCreate(DidFields):
    number: Number


class DidRangeCreate(DidFields):
    start: Number = Field(description="First number; the range keeps its length (leading zeros)")
    count: Annotated[int, Field(ge=1, le=10_000)]


class DidUpdate(WriteModel):
    customer_id: Id | None = None
    reseller_id: Id | None = None
    destination_type: DidDestination | None = None
    destination: Annotated[str, text(255)] | None = None
    max_sessions: Limit | None = None
    status: EntityStatus | None = None
    description: Annotated[str, text(200)] | None = None

    _not_null = field_validator("destination", "max_sessions", "status", "description")(not_null)


class DidPublic(ReadModel):
    id: int
    number: str
    reseller_id: int | None
    customer_id: int | None
    destination_type: DidDestination | None
    destination: str
    max_sessions: int
    status: EntityStatus
    description: str
    created_at: datetime
    updated_at: datetime
