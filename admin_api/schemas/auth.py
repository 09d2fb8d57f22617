"""Login, token, switch-over and log schemas."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from admin_api.schemas.common import Id, Instant, ReadModel, WriteModel, text

TokenKind = Literal["admin", "reseller", "customer"]


class LoginRequest(BaseModel):
    username: Annotated[str, Field(min_length=1, max_length=170)]
    password: Annotated[str, Field(min_length=1, max_length=128, json_schema_extra={"writeOnly": True})]


class TokenIssued(BaseModel):
    token: str = Field(description="The bearer token; shown once, stored only as a hash")
    token_type: Literal["bearer"] = "bearer"
    token_id: int | None = None
    kind: TokenKind
    owner_id: int | None
    expires_at: datetime | None


class SwitchOverRequest(WriteModel):
    reseller_id: Id | None = Field(default=None, description="Act as this descendant reseller")
    customer_id: Id | None = Field(default=None, description="Act as this customer")


class TokenCreate(WriteModel):
    kind: TokenKind
    owner_id: Id | None = Field(default=None, description="Reseller or customer id; empty = the caller itself")
    label: Annotated[str, text(100)] = ""
    expires_at: Instant | None = Field(default=None, description="Empty: until revoked")


class TokenPublic(ReadModel):
    id: int
    kind: TokenKind
    owner_id: int | None
    label: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    user_id: int | None
    parent_token_id: int | None = Field(description="Switch-over: the token of the parent acting")


class Me(BaseModel):
    token_id: int
    kind: TokenKind
    owner_id: int | None
    label: str
    acting_for: str | None = Field(description="Switch-over: who is really acting")


class AuditEntryPublic(ReadModel):
    id: int
    at: datetime
    actor: str
    actor_kind: str
    actor_id: int | None
    via: str | None
    action: str
    entity: str
    entity_id: int | None
    customer_id: int | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class LoginEventPublic(ReadModel):
    id: int
    at: datetime
    login: str
    outcome: str
    principal_kind: str | None
    principal_id: int | None
    ip: str
    customer_id: int | None
    detail: str


class CdrPublic(ReadModel):
    id: int
    call_id: str  # the switch's id of the attempt (a ULID), unique
    sip_call_id: str  # the caller's SIP Call-ID, as received: may repeat
    customer_id: int | None
    caller_device_id: int | None
    callee_device_id: int | None
    ip_device_id: int | None
    carrier_id: int | None = Field(
        default=None, description="The carrier that terminated the call; null for a customer's own token"
    )
    caller_number: str
    dialled_number: str
    did: str
    start_ms: int
    answer_ms: int | None
    end_ms: int
    duration_ms: int
    sip_code: int
    q850_cause: int
    disposition: str
    direction: str
    call_type: str
    source_ip: str
    hangup_by: str
    codecs: str
