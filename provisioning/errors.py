"""Errors the repositories raise; the admin API maps each kind to one HTTP status.

They describe the caller's request, never the database: a violated unique constraint becomes a
:class:`Conflict` naming the field, an id outside the caller's scope a :class:`NotFound` exactly
like an id that does not exist (existence is not revealed to other tenants).
"""

from __future__ import annotations


class ProvisioningError(Exception):
    def __init__(self, message: str, *, field: str | None = None, location: str = "body") -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        # Where the field was given ("body" or "query"), for the API's 422 ``loc``.
        self.location = location


class NotFound(ProvisioningError):
    """The entity does not exist or is outside the caller's scope (HTTP 404)."""

    def __init__(self, entity: str, entity_id: object) -> None:
        super().__init__(f"{entity} {entity_id} not found")
        self.entity = entity
        self.entity_id = entity_id


class Conflict(ProvisioningError):
    """The change clashes with existing data or with the entity's state (HTTP 409)."""


class InvalidValue(ProvisioningError):
    """A value passed the schema but is wrong in context, e.g. an unknown reference (HTTP 422)."""


class NotPermitted(ProvisioningError):
    """The caller's role may not do this at all, whatever the target (HTTP 403).

    Never raised for a particular id the caller cannot see: that is :class:`NotFound`.
    """


class ImportRejected(ProvisioningError):
    """An import file has bad rows; nothing of it was stored (HTTP 422 listing every row)."""

    def __init__(self, problems: list[tuple[int | None, str | None, str]], *, total: int | None = None) -> None:
        self.problems = problems  # (line, column, message); line 1 is the header
        self.total = len(problems) if total is None else total
        super().__init__(f"the file has {self.total} bad row(s); nothing was imported")
