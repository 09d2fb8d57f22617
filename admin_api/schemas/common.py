"""Types shared by the resource schemas."""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from provisioning.validation import (
    MAX_ID,
    NO_CONTROL_PATTERN,
    has_lone_surrogate,
    normalize_domain,
    normalize_ip,
    normalize_network,
)

T = TypeVar("T")

# Limits: 0 means "no limit", as in switch.ports.
Limit = Annotated[int, Field(ge=0, le=1_000_000)]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
# Free text without control characters (PostgreSQL refuses NUL; headers and logs refuse the rest).
PlainText = Annotated[str, Field(pattern=NO_CONTROL_PATTERN)]
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

    @field_validator("*", mode="before")
    @classmethod
    def _utf8_only(cls, value: Any) -> Any:
        # Python's JSON decoder accepts "\ud800" escapes, giving text no database can store.
        items = value if isinstance(value, list) else [value]
        if any(isinstance(item, str) and has_lone_surrogate(item) for item in items):
            raise ValueError("contains characters that are not valid Unicode")
        return value


class ReadModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


def not_null(value: Any) -> Any:
    """For Update schemas: a field may be absent, but if present it may not be null."""
    if value is None:
        raise ValueError("may not be null")
    return value


class ErrorDetail(BaseModel):
    detail: str


class ConflictDetail(BaseModel):
    detail: str
    field: str | None = Field(default=None, description="The field in conflict, when there is one")
