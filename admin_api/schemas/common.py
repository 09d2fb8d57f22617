"""Types shared by the resource schemas."""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from provisioning.validation import normalize_domain, normalize_ip, normalize_network

T = TypeVar("T")

# Limits: 0 means "no limit", as in switch.ports.
Limit = Annotated[int, Field(ge=0, le=1_000_000)]
Domain = Annotated[str, Field(max_length=253), AfterValidator(normalize_domain)]
IpAddress = Annotated[str, Field(max_length=64, examples=["192.0.2.10"]), AfterValidator(normalize_ip)]
IpOrNetwork = Annotated[str, Field(max_length=64, examples=["192.0.2.0/24"]), AfterValidator(normalize_network)]


class Page(BaseModel, Generic[T]):
    """One page of a listing, ordered by id."""

    items: list[T]
    total: int = Field(description="Matching items in all pages")
    limit: int
    offset: int


class WriteModel(BaseModel):
    # Unknown fields are refused (422 naming them) rather than silently ignored: a typo such as
    # "pasword" must not create a device without the intended password.
    model_config = ConfigDict(extra="forbid")


class ReadModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


def not_null(value: Any) -> Any:
    """For Update schemas: a field may be absent, but if present it may not be null."""
    if value is None:
        raise ValueError("may not be null")
    return value
