"""Query parameters shared by the listing endpoints."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from provisioning.validation import MAX_ID, NO_CONTROL_PATTERN

PageLimit = Annotated[int, Query(ge=1, le=1000, description="Items per page")]
PageOffset = Annotated[int, Query(ge=0, le=MAX_ID, description="Items to skip")]


def text_filter(max_length: int, description: str | None = None) -> object:
    """A free-text filter: bounded, and without control characters (PostgreSQL refuses NUL)."""
    return Query(max_length=max_length, pattern=NO_CONTROL_PATTERN, description=description)
