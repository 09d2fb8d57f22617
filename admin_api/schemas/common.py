"""Types shared by the resource schemas."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer, field_validator

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
    """One page of a listing, in the order asked for (``sort``), then by id."""

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


class ImportProblem(BaseModel):
    line: int | None = Field(description="CSV line (the header is line 1); empty for the whole file")
    column: str | None
    message: str


class ImportRejectedDetail(BaseModel):
    detail: str
    error_count: int
    errors: list[ImportProblem] = Field(description="Each bad row (the first 1000)")


def text(max_length: int, *, min_length: int = 0, description: str | None = None) -> Any:
    """Free text of at most ``max_length`` characters, without control characters."""
    return Field(min_length=min_length, max_length=max_length, pattern=NO_CONTROL_PATTERN, description=description)


# Money: exact decimals with at most 6 places (NUMERIC(18,6)); JSON carries them as strings.
Money = Annotated[
    Decimal,
    Field(ge=0, max_digits=18, decimal_places=6, examples=["12.50"], description="Decimal, at most 6 places"),
]
SignedMoney = Annotated[
    Decimal, Field(max_digits=18, decimal_places=6, examples=["-2.50"], description="Decimal, at most 6 places")
]


def _six_places(value: Decimal) -> str:
    return format(value.quantize(_MICRO), "f")


_MICRO = Decimal("0.000001")
# Money out: always the stored scale (6 places) as a string, whether the value was just written
# (a Python Decimal("0")) or read back from the database (NUMERIC(18,6)).
MoneyOut = Annotated[Decimal, PlainSerializer(_six_places, return_type=str, when_used="json")]
Percent = Annotated[Decimal, Field(ge=0, le=100, max_digits=9, decimal_places=4)]
Instant = Annotated[
    AwareDatetime, Field(description="ISO 8601 date-time with a UTC offset", examples=["2026-01-01T00:00:00Z"])
]
EntityStatus = Literal["active", "inactive"]


class Reason(WriteModel):
    reason: Annotated[str, text(200)] = Field(default="", description="Why (required to stop or close)")
    comment: Annotated[str, text(1000)] = ""


class Deleted(BaseModel):
    detail: str = "deleted"
