"""Types shared by the resource schemas."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
)

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


NOT_ENFORCED = "Stored; not enforced by the switch yet."
M = TypeVar("M", bound=BaseModel)


def not_enforced(*names: str) -> Callable[[type[M]], type[M]]:
    """Class decorator: these fields' descriptions say that the switch does not act on them yet
    (it admits and routes calls on what ``provisioning.snapshot`` hands to ``switch.ports``)."""

    def mark(model: type[M]) -> type[M]:
        for name in names:
            info = model.model_fields[name]
            info.description = f"{info.description.rstrip('.')}. {NOT_ENFORCED}" if info.description else NOT_ENFORCED
        model.model_rebuild(force=True)
        return model

    return mark


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


def _no_binary_float(value: Any) -> Any:
    # The JSON decoder turns a number with a fraction (10.10, 1e2) into a binary float before
    # any validator sees it, so its exact digits are already lost (0.1 + 0.2 != 0.3, and an
    # 18-digit amount is rounded to 17).  Refused, naming the field: money is sent as a decimal
    # string ("10.10") or an integer (10), both exact.
    if isinstance(value, float):
        raise ValueError('send decimals as a string ("10.10") or an integer: a JSON number with a fraction is refused')
    return value


def exact_decimal(pattern: str, *, minimum: int | None = None) -> Any:
    """The metadata of an exact decimal input: no float, documented as a string or an integer."""
    integer: dict[str, Any] = {"type": "integer"}
    if minimum is not None:
        integer["minimum"] = minimum
    schema = {
        "anyOf": [{"type": "string", "pattern": pattern}, integer],
        "description": "Exact decimal: a string or an integer (a JSON number with a fraction is refused)",
    }
    return (BeforeValidator(_no_binary_float), WithJsonSchema(schema, mode="validation"))


UNSIGNED_DECIMAL = r"^[0-9]{1,12}(\.[0-9]{1,6})?$"
SIGNED_DECIMAL = r"^-?[0-9]{1,12}(\.[0-9]{1,6})?$"
# Money: exact decimals with at most 6 places (NUMERIC(18,6)); JSON carries them as strings.
# In: a decimal string or an integer (a JSON number with a fraction is refused, 422).
Money = Annotated[
    Decimal,
    Field(ge=0, max_digits=18, decimal_places=6, examples=["12.50"], description="Decimal, at most 6 places"),
    *exact_decimal(UNSIGNED_DECIMAL, minimum=0),
]
SignedMoney = Annotated[
    Decimal,
    Field(max_digits=18, decimal_places=6, examples=["-2.50"], description="Decimal, at most 6 places"),
    *exact_decimal(SIGNED_DECIMAL),
]


def _six_places(value: Decimal) -> str:
    return format(value.quantize(_MICRO), "f")


_MICRO = Decimal("0.000001")
# Money out: always the stored scale (6 places) as a string, whether the value was just written
# (a Python Decimal("0")) or read back from the database (NUMERIC(18,6)).
MoneyOut = Annotated[Decimal, PlainSerializer(_six_places, return_type=str, when_used="json")]
Percent = Annotated[
    Decimal,
    Field(ge=0, le=100, max_digits=9, decimal_places=4),
    *exact_decimal(r"^[0-9]{1,3}(\.[0-9]{1,4})?$", minimum=0),
]
Instant = Annotated[
    AwareDatetime, Field(description="ISO 8601 date-time with a UTC offset", examples=["2026-01-01T00:00:00Z"])
]
EntityStatus = Literal["active", "inactive"]


class Reason(WriteModel):
    reason: Annotated[str, text(200)] = Field(default="", description="Why (required to stop or close)")
    comment: Annotated[str, text(1000)] = ""


class Deleted(BaseModel):
    detail: str = "deleted"
