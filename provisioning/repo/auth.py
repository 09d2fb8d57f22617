"""Web logins, administrator accounts, API tokens, switch-over, and the audit and login logs.

Logins: a customer signs in with its web username (no '@'), an administrator of the service
provider or of a reseller with its e-mail-style username; both get a bearer token that expires
(:data:`LOGIN_TTL`).  Five failed logins for one username within five minutes block that
username for five minutes (counted in the database, so every node of a cluster agrees and a
restart forgives nothing); attempts during the block are refused without checking the password
and do not extend it.  Unknown usernames are counted the same way, and answered the same way, as
known ones: the answer never tells whether a login exists.

Switch-over: a parent (the service provider, or a reseller over its descendants) may act as a
child.  It gets a short-lived token of the child whose audit entries name the parent as "via";
revoking the parent's token ends the child token too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from provisioning.db import utcnow
from provisioning.errors import Conflict, InvalidValue, NotFound, NotPermitted
from provisioning.models import (
    RESELLER_STATUSES,
    AdminUser,
    ApiToken,
    AuditEntry,
    Customer,
    LoginEvent,
    Reseller,
)
from provisioning.passwords import hash_password, verify_password
from provisioning.repo._common import Listing, apply_changes, apply_sort, flush, require_one_of, require_text
from provisioning.repo.customers import get_customer, scoped_customers
from provisioning.repo.resellers import get_reseller, path_of
from provisioning.scope import Scope
from provisioning.tokens import Principal, TokenKind, issue_token, reseller_chain_active
from provisioning.validation import (
    ADMIN_USERNAME_PATTERN,
    EMAIL_PATTERN,
    WEB_PASSWORD_RULE,
    is_strong_web_password,
    is_valid_id,
)

LOGIN_TTL = timedelta(hours=12)
SWITCH_OVER_TTL = timedelta(hours=1)
BLOCK_AFTER_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=5)
BLOCK_FOR = timedelta(minutes=5)

ADMIN_FIELDS = ("name", "email", "password", "status", "is_chief")
TOKEN_SORTABLE = ("id", "kind", "created_at", "expires_at")
AUDIT_SORTABLE = ("id", "at", "entity", "action")
LOGIN_SORTABLE = ("id", "at", "login", "outcome")


# -- administrator accounts ---------------------------------------------------------------------


def _admins_visible(scope: Scope) -> Any:
    if scope.kind == "customer":
        raise NotPermitted("customers have no administrator accounts")
    if scope.kind == "provider":
        return None
    return AdminUser.reseller_id.in_(
        select(Reseller.id).where(Reseller.path.startswith(scope.reseller_path, autoescape=True))
    )


def get_admin_user(session: Session, *, scope: Scope, user_id: int) -> AdminUser:
    clause = _admins_visible(scope)
    user = session.get(AdminUser, user_id) if is_valid_id(user_id) else None
    if user is None or (
        clause is not None and session.scalar(select(AdminUser.id).where(AdminUser.id == user.id, clause)) is None
    ):
        raise NotFound("administrator", user_id)
    return user


def list_admin_users(
    session: Session,
    *,
    scope: Scope,
    reseller_id: int | None = None,
    username: str | None = None,
    sort: str | None = None,
) -> Listing:
    clause = _admins_visible(scope)
    stmt = select(AdminUser)
    if clause is not None:
        stmt = stmt.where(clause)
    if reseller_id is not None:
        stmt = stmt.where(AdminUser.reseller_id == reseller_id)
    if username:
        stmt = stmt.where(AdminUser.username.icontains(username, autoescape=True))
    columns = {"id": AdminUser.id, "username": AdminUser.username, "name": AdminUser.name}
    return Listing(apply_sort(stmt, sort, columns, tiebreak=AdminUser.id))


def _check_password(password: Any) -> None:
    if not isinstance(password, str) or not is_strong_web_password(password):
        raise InvalidValue(f"password must have {WEB_PASSWORD_RULE}", field="password")


def _check_email(email: Any) -> None:
    if email is not None and (not isinstance(email, str) or len(email) > 254 or not re.fullmatch(EMAIL_PATTERN, email)):
        raise InvalidValue("email must be a valid e-mail address", field="email")


def create_admin_user(
    session: Session,
    *,
    scope: Scope,
    username: str,
    password: str,
    name: str,
    email: str | None = None,
    reseller_id: int | None = None,
    is_chief: bool = False,
    status: str = "active",
    password_cost: int | None = None,
) -> AdminUser:
    """An administrator of ``reseller_id`` (a reseller's token: its own by default; the service
    provider's token: a provider administrator when None).  The partner's first administrator is
    its chief; making another one chief hands the role over (exactly one chief, iPECS 2.7.1.2)."""
    _admins_visible(scope)
    _check_password(password)
    # scrypt before the transaction's first query, never while it holds locks.
    password_hash = hash_password(password, n=password_cost)
    if scope.kind == "reseller" and reseller_id is None:
        reseller_id = scope.reseller_id
    if reseller_id is not None:
        try:
            get_reseller(session, scope=scope, reseller_id=reseller_id)
        except NotFound as error:
            raise InvalidValue(f"unknown reseller {reseller_id}", field="reseller_id") from error
    login = username.strip().lower()
    if not re.fullmatch(ADMIN_USERNAME_PATTERN, login):
        raise InvalidValue("username must look like an e-mail address (name@domain)", field="username")
    _check_password(password)
    require_text({"name": name}, "name", max_length=40, required=True)
    _check_email(email)
    require_one_of(status, RESELLER_STATUSES, field="status")
    has_chief = session.scalar(
        select(AdminUser.id).where(
            AdminUser.reseller_id.is_(None) if reseller_id is None else AdminUser.reseller_id == reseller_id,
            AdminUser.is_chief,
        )
    )
    if is_chief or has_chief is None:
        _drop_chief(session, reseller_id)
        is_chief = True
    user = AdminUser(
        reseller_id=reseller_id,
        username=login,
        name=name.strip(),
        email=email,
        password_hash=password_hash,
        is_chief=is_chief,
        status=status,
    )
    session.add(user)
    flush(session)
    return user


def _drop_chief(session: Session, reseller_id: int | None) -> None:
    owner = AdminUser.reseller_id.is_(None) if reseller_id is None else AdminUser.reseller_id == reseller_id
    for chief in session.scalars(select(AdminUser).where(owner, AdminUser.is_chief)):
        chief.is_chief = False


def update_admin_user(session: Session, *, scope: Scope, user_id: int, changes: Mapping[str, Any]) -> AdminUser:
    values = dict(changes)
    if values.get("password") is not None:
        # scrypt before the transaction's first query, never while it holds locks.
        _check_password(values["password"])
        values["password_hash"] = hash_password(values.pop("password"))
    user = get_admin_user(session, scope=scope, user_id=user_id)
    for field in ADMIN_FIELDS:
        if field != "email" and field in values and values[field] is None:
            raise InvalidValue(f"{field} may not be null", field=field)
    if "name" in values:
        require_text(values, "name", max_length=40, required=True)
        values["name"] = values["name"].strip()
    if "email" in values:
        _check_email(values["email"])
    if "status" in values:
        require_one_of(values["status"], RESELLER_STATUSES, field="status")
    if "password" in values:  # only a null one is left here
        raise InvalidValue("password may not be null", field="password")
    if "is_chief" in values:
        if values["is_chief"] and not user.is_chief:
            _drop_chief(session, user.reseller_id)
        elif not values["is_chief"] and user.is_chief:
            raise Conflict("a partner keeps one chief administrator: make another one chief instead", field="is_chief")
    apply_changes(user, values, allowed=(*ADMIN_FIELDS, "password_hash"))
    flush(session)
    if values.get("status") == "inactive" or "password_hash" in values:
        _revoke_user_tokens(session, user.id)
    return user


def delete_admin_user(session: Session, *, scope: Scope, user_id: int) -> None:
    user = get_admin_user(session, scope=scope, user_id=user_id)
    if user.is_chief:
        others = session.scalar(
            select(func.count()).where(
                AdminUser.reseller_id.is_(None)
                if user.reseller_id is None
                else AdminUser.reseller_id == user.reseller_id,
                AdminUser.id != user.id,
            )
        )
        if others:
            raise Conflict("make another administrator chief before deleting this one", field="is_chief")
    _revoke_user_tokens(session, user.id)
    session.delete(user)
    flush(session)


def _revoke_user_tokens(session: Session, user_id: int) -> None:
    session.execute(
        update(ApiToken).where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None)).values(revoked_at=utcnow())
    )


# -- login --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoginResult:
    """The outcome of a login: a token on success; otherwise why not (never which part was wrong)."""

    outcome: str  # "success", "failure" or "blocked"
    token: str | None = None
    kind: TokenKind | None = None
    owner_id: int | None = None
    expires_at: datetime | None = None
    retry_after: int = 0  # seconds, while blocked


def blocked_until(session: Session, login: str, now: datetime) -> datetime | None:
    """When the block on ``login`` ends, or None if it is not blocked."""
    last_success = session.scalar(
        select(func.max(LoginEvent.at)).where(LoginEvent.login == login, LoginEvent.outcome == "success")
    )
    stmt = select(LoginEvent.at).where(
        LoginEvent.login == login, LoginEvent.outcome == "failure", LoginEvent.at > now - FAILURE_WINDOW - BLOCK_FOR
    )
    if last_success is not None:
        stmt = stmt.where(LoginEvent.at > last_success)
    recent = list(session.scalars(stmt.order_by(LoginEvent.at.desc()).limit(BLOCK_AFTER_FAILURES)))
    if len(recent) < BLOCK_AFTER_FAILURES or recent[0] - recent[-1] > FAILURE_WINDOW:
        return None
    until = recent[0] + BLOCK_FOR
    return until if now < until else None


def _event(
    session: Session,
    *,
    login: str,
    outcome: str,
    ip: str,
    at: datetime,
    kind: str | None = None,
    principal_id: int | None = None,
    tenant_path: str = "/",
    customer_id: int | None = None,
    detail: str = "",
) -> None:
    session.add(
        LoginEvent(
            at=at,
            login=login[:170],
            outcome=outcome,
            principal_kind=kind,
            principal_id=principal_id,
            ip=ip[:45],
            tenant_path=tenant_path,
            customer_id=customer_id,
            detail=detail[:200],
        )
    )


def login(session: Session, *, username: str, password: str, ip: str = "", now: datetime | None = None) -> LoginResult:
    """Check a web login and issue a token; every attempt is recorded (the caller commits)."""
    now = now or utcnow()
    name = username.strip()
    is_admin = "@" in name
    key = name.lower() if is_admin else name
    until = blocked_until(session, key, now)
    if until is not None:
        _event(session, login=key, outcome="blocked", ip=ip, at=now, detail="too many failed logins")
        return LoginResult(outcome="blocked", retry_after=max(1, int((until - now).total_seconds()) + 1))
    if is_admin:
        user = session.scalars(select(AdminUser).where(AdminUser.username == key)).one_or_none()
        ok = verify_password(password, user.password_hash if user else None)
        reseller = session.get(Reseller, user.reseller_id) if user and user.reseller_id is not None else None
        active = (
            user is not None
            and user.status == "active"
            and (reseller is None or reseller_chain_active(session, reseller))
        )
        path = reseller.path if reseller is not None else "/"
        if not ok or not active or user is None:
            _event(session, login=key, outcome="failure", ip=ip, at=now, tenant_path=path if user else "/",
                   kind="admin_user" if user else None, principal_id=user.id if user else None,
                   detail="bad credentials" if not ok else "account inactive")  # fmt: skip
            return LoginResult(outcome="failure")
        kind: TokenKind = "admin" if reseller is None else "reseller"
        owner = reseller.id if reseller is not None else None
        token, row = issue_token(
            session, kind=kind, owner_id=owner, label=f"login {key}", expires_at=now + LOGIN_TTL, user_id=user.id
        )
        _event(session, login=key, outcome="success", ip=ip, at=now, kind="admin_user", principal_id=user.id,
               tenant_path=path)  # fmt: skip
        return LoginResult(outcome="success", token=token, kind=kind, owner_id=owner, expires_at=row.expires_at)
    customer = session.scalars(select(Customer).where(Customer.web_username == key)).one_or_none()
    ok = verify_password(password, customer.web_password_hash if customer else None)
    path = path_of(session, customer.reseller_id) if customer is not None else "/"
    owner_reseller = (
        session.get(Reseller, customer.reseller_id) if customer is not None and customer.reseller_id else None
    )
    active = (
        customer is not None
        and customer.status != "closed"
        and (owner_reseller is None or reseller_chain_active(session, owner_reseller))
    )
    if not ok or not active or customer is None:
        _event(session, login=key, outcome="failure", ip=ip, at=now, tenant_path=path,
               kind="customer" if customer else None, principal_id=customer.id if customer else None,
               customer_id=customer.id if customer else None,
               detail="bad credentials" if not ok else "account closed")  # fmt: skip
        return LoginResult(outcome="failure")
    token, row = issue_token(
        session, kind="customer", owner_id=customer.id, label=f"login {key}", expires_at=now + LOGIN_TTL
    )
    _event(session, login=key, outcome="success", ip=ip, at=now, kind="customer", principal_id=customer.id,
           tenant_path=path, customer_id=customer.id)  # fmt: skip
    return LoginResult(outcome="success", token=token, kind="customer", owner_id=customer.id, expires_at=row.expires_at)


def switch_over(
    session: Session,
    *,
    principal: Principal,
    reseller_id: int | None = None,
    customer_id: int | None = None,
    ip: str = "",
) -> LoginResult:
    """A token acting as a descendant reseller or a customer in scope, tied to the caller's token."""
    scope = principal.scope
    if scope.kind == "customer":
        raise NotPermitted("customers cannot switch over")
    if (reseller_id is None) == (customer_id is None):
        raise InvalidValue("name exactly one of reseller_id and customer_id", field="reseller_id")
    now = utcnow()
    if reseller_id is not None:
        target = get_reseller(session, scope=scope, reseller_id=reseller_id)
        if scope.kind == "reseller" and target.id == scope.reseller_id:
            raise InvalidValue("a reseller cannot switch over to itself", field="reseller_id")
        kind: TokenKind = "reseller"
        owner = target.id
        path = target.path
        customer_ref = None
    else:
        assert customer_id is not None
        customer = get_customer(session, scope=scope, customer_id=customer_id)
        if customer.status == "closed":
            raise Conflict("the customer is closed", field="customer_id")
        kind, owner, path, customer_ref = "customer", customer.id, path_of(session, customer.reseller_id), customer.id
    parent_expiry = session.scalar(select(ApiToken.expires_at).where(ApiToken.id == principal.token_id))
    expires = now + SWITCH_OVER_TTL
    if parent_expiry is not None and parent_expiry < expires:
        expires = parent_expiry
    token, row = issue_token(
        session,
        kind=kind,
        owner_id=owner,
        label=f"switch-over by {principal.describe()}"[:100],
        expires_at=expires,
        user_id=principal.user_id,
        parent_token_id=principal.token_id,
    )
    _event(session, login=f"{kind}:{owner}", outcome="switch_over", ip=ip, at=now, kind=kind, principal_id=owner,
           tenant_path=path, customer_id=customer_ref, detail=principal.describe())  # fmt: skip
    return LoginResult(outcome="success", token=token, kind=kind, owner_id=owner, expires_at=row.expires_at)


# -- API tokens ---------------------------------------------------------------------------------


def _tokens_visible(scope: Scope) -> Any:
    if scope.kind == "provider":
        return None
    if scope.kind == "customer":
        return and_(ApiToken.kind == "customer", ApiToken.owner_id == scope.customer_id)
    resellers = select(Reseller.id).where(Reseller.path.startswith(scope.reseller_path, autoescape=True))
    customers = scoped_customers(scope).with_only_columns(Customer.id)
    return or_(
        and_(ApiToken.kind == "reseller", ApiToken.owner_id.in_(resellers)),
        and_(ApiToken.kind == "customer", ApiToken.owner_id.in_(customers)),
    )


def list_tokens(
    session: Session, *, scope: Scope, kind: str | None = None, active: bool | None = None, sort: str | None = None
) -> Listing:
    stmt = select(ApiToken)
    clause = _tokens_visible(scope)
    if clause is not None:
        stmt = stmt.where(clause)
    if kind:
        stmt = stmt.where(ApiToken.kind == kind)
    if active is not None:
        now = utcnow()
        live = and_(ApiToken.revoked_at.is_(None), or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > now))
        stmt = stmt.where(live if active else ~live)
    columns = {key: getattr(ApiToken, key) for key in TOKEN_SORTABLE}
    return Listing(apply_sort(stmt, sort, columns, tiebreak=ApiToken.id))


def get_token(session: Session, *, scope: Scope, token_id: int) -> ApiToken:
    row = session.get(ApiToken, token_id) if is_valid_id(token_id) else None
    clause = _tokens_visible(scope)
    if row is None or (
        clause is not None and session.scalar(select(ApiToken.id).where(ApiToken.id == row.id, clause)) is None
    ):
        raise NotFound("token", token_id)
    return row


def create_api_token(
    session: Session,
    *,
    scope: Scope,
    kind: TokenKind,
    owner_id: int | None = None,
    label: str = "",
    expires_at: datetime | None = None,
) -> tuple[str, ApiToken]:
    """An API token for an account in the caller's scope (the service provider's: admin only)."""
    require_text({"label": label}, "label", max_length=100)
    if expires_at is not None and (expires_at.tzinfo is None or expires_at <= utcnow()):
        raise InvalidValue("expires_at must be a future instant with a UTC offset", field="expires_at")
    if kind == "admin":
        if scope.kind != "provider":
            raise NotPermitted("only the service provider issues admin tokens")
        if owner_id is not None:
            raise InvalidValue("admin tokens have no owner", field="owner_id")
    elif owner_id is None:
        if scope.kind == "reseller" and kind == "reseller":
            owner_id = scope.reseller_id
        elif scope.kind == "customer" and kind == "customer":
            owner_id = scope.customer_id
        else:
            raise InvalidValue("owner_id is required", field="owner_id")
    if kind == "reseller":
        if scope.kind == "customer":
            raise NotPermitted("customers cannot issue reseller tokens")
        try:
            get_reseller(session, scope=scope, reseller_id=owner_id or 0)
        except NotFound as error:
            raise InvalidValue(f"unknown reseller {owner_id}", field="owner_id") from error
    elif kind == "customer":
        try:
            get_customer(session, scope=scope, customer_id=owner_id or 0)
        except NotFound as error:
            raise InvalidValue(f"unknown customer {owner_id}", field="owner_id") from error
    return issue_token(session, kind=kind, owner_id=owner_id, label=label, expires_at=expires_at)


def revoke(session: Session, *, scope: Scope, token_id: int) -> ApiToken:
    row = get_token(session, scope=scope, token_id=token_id)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        flush(session)
    return row


def revoke_tokens_of(session: Session, *, kind: str, owner_id: int) -> None:
    session.execute(
        update(ApiToken)
        .where(ApiToken.kind == kind, ApiToken.owner_id == owner_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


# -- logs ---------------------------------------------------------------------------------------


def _log_clause(scope: Scope, path_column: Any, customer_column: Any) -> Any:
    if scope.kind == "provider":
        return None
    if scope.kind == "customer":
        return customer_column == scope.customer_id
    return path_column.startswith(scope.reseller_path, autoescape=True)


def list_audit(
    session: Session,
    *,
    scope: Scope,
    entity: str | None = None,
    entity_id: int | None = None,
    customer_id: int | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    sort: str | None = None,
) -> Listing:
    """The audit log as far as the caller may read it (newest first unless sorted otherwise)."""
    stmt = select(AuditEntry)
    clause = _log_clause(scope, AuditEntry.tenant_path, AuditEntry.customer_id)
    if clause is not None:
        stmt = stmt.where(clause)
    if entity:
        stmt = stmt.where(AuditEntry.entity == entity)
    if entity_id is not None:
        stmt = stmt.where(AuditEntry.entity_id == entity_id)
    if customer_id is not None:
        stmt = stmt.where(AuditEntry.customer_id == customer_id)
    if action:
        stmt = stmt.where(AuditEntry.action == action)
    if since is not None:
        stmt = stmt.where(AuditEntry.at >= since)
    if until is not None:
        stmt = stmt.where(AuditEntry.at < until)
    columns = {key: getattr(AuditEntry, key) for key in AUDIT_SORTABLE}
    return Listing(apply_sort(stmt, sort, columns, tiebreak=AuditEntry.id.desc(), default="-id"))


def list_logins(
    session: Session,
    *,
    scope: Scope,
    login: str | None = None,
    outcome: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    sort: str | None = None,
) -> Listing:
    stmt = select(LoginEvent)
    clause = _log_clause(scope, LoginEvent.tenant_path, LoginEvent.customer_id)
    if clause is not None:
        stmt = stmt.where(clause)
    if scope.kind == "reseller":
        # Unknown logins carry the provider's path and are not a reseller's to read.
        stmt = stmt.where(LoginEvent.tenant_path != "/")
    if login:
        stmt = stmt.where(LoginEvent.login.icontains(login, autoescape=True))
    if outcome:
        stmt = stmt.where(LoginEvent.outcome == outcome)
    if since is not None:
        stmt = stmt.where(LoginEvent.at >= since)
    if until is not None:
        stmt = stmt.where(LoginEvent.at < until)
    columns = {key: getattr(LoginEvent, key) for key in LOGIN_SORTABLE}
    return Listing(apply_sort(stmt, sort, columns, tiebreak=LoginEvent.id.desc(), default="-id"))
