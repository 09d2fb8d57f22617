"""Tenancy scopes: whose data a repository call may see and change.

Every repository function takes ``scope=``.  The service provider's scope sees everything; a
reseller's sees the customers of its own subtree (its reseller ``path`` is a prefix of theirs);
a customer's sees itself.  Repositories turn an out-of-scope id into NotFound, the same answer
as for an id that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ScopeKind = Literal["provider", "reseller", "customer"]


@dataclass(frozen=True, slots=True)
class Scope:
    kind: ScopeKind
    reseller_id: int | None = None
    # The reseller's materialised path ("/1/5/"); its descendants' paths start with it.
    reseller_path: str = ""
    customer_id: int | None = None

    def __post_init__(self) -> None:
        if self.kind == "reseller" and (self.reseller_id is None or not self.reseller_path):
            raise ValueError("a reseller scope needs reseller_id and reseller_path")
        if self.kind == "customer" and self.customer_id is None:
            raise ValueError("a customer scope needs customer_id")

    @classmethod
    def provider(cls) -> Scope:
        return PROVIDER

    @classmethod
    def for_reseller(cls, reseller_id: int, reseller_path: str) -> Scope:
        return cls(kind="reseller", reseller_id=reseller_id, reseller_path=reseller_path)

    @classmethod
    def for_customer(cls, customer_id: int) -> Scope:
        return cls(kind="customer", customer_id=customer_id)

    @property
    def is_provider(self) -> bool:
        return self.kind == "provider"

    def sees_path(self, path: str) -> bool:
        """Whether data owned at reseller ``path`` ("/" = the service provider) is in this scope."""
        if self.kind == "provider":
            return True
        if self.kind == "reseller":
            return path.startswith(self.reseller_path)
        return False


PROVIDER = Scope(kind="provider")
