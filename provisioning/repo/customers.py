"""Customers: the service provider's or a reseller's accounts, each owning devices and DIDs.

The record is OV500's customer form plus the iPECS OMS fields.  Only the name is required: every
other field has a default (documented in docs/api.md), inherited from the owning reseller where
that makes sense (tariff, currency, time zone, billing decimals) so that one call with a name
gives a customer that can place calls.

Lifecycle (iPECS OMS): created -> active -> stopped -> active ... -> closed, changed only through
the operations :func:`activate_customer`, :func:`stop_customer`, :func:`resume_customer` and
:func:`close_customer`, each with a reason.  A stop opens a suspension period and the resume
closes it; a close is refused while services remain and is final.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, exists, func, or_, select, update
from sqlalchemy.orm import Session

from provisioning.audit import actor_of
from provisioning.db import utcnow
from provisioning.errors import Conflict, InvalidValue, NotFound, NotPermitted
from provisioning.models import (
    BILLING_TYPES,
    CUSTOMER_TYPES,
    DEFAULT_CODECS,
    ENTITY_CUSTOMER,
    TAX_TYPES,
    ApiToken,
    Customer,
    CustomerStatusEvent,
    Did,
    IpDevice,
    LedgerEntry,
    Reseller,
    Route,
    ServicePlan,
    SipDevice,
    Suspension,
)
from provisioning.passwords import hash_password
from provisioning.repo._common import (
    Listing,
    apply_changes,
    apply_sort,
    flush,
    record_change,
    require_match,
    require_money,
    require_non_negative,
    require_one_of,
    require_range,
    require_text,
)
from provisioning.repo.resellers import (
    DEFAULT_BILLING_DECIMALS,
    DEFAULT_CURRENCY,
    DEFAULT_TIMEZONE,
    check_tariff_owned_by,
    require_permission,
    reseller_ids_under,
)
from provisioning.scope import Scope
from provisioning.validation import (
    ACCOUNT_CODE_PATTERN,
    CALLER_NUMBER_PATTERN,
    CODECS,
    COUNTRIES,
    CURRENCIES,
    CUSTOMER_EMAIL_MAX_LENGTH,
    EMAIL_PATTERN,
    GENERATED_ACCOUNT_CODE,
    PHONE_PATTERN,
    PIN_PATTERN,
    WEB_PASSWORD_RULE,
    WEB_USERNAME_PATTERN,
    is_strong_web_password,
    is_time_zone,
    is_valid_id,
    normalize_domain,
    normalize_ip,
)

# What PATCH may touch (status moves through the lifecycle operations only).
UPDATABLE_FIELDS = (
    "name",
    "domain",
    "reseller_id",
    "max_sessions",
    "cps",
    "max_call_seconds",
    "account_code",
    "customer_type",
    "web_username",
    "web_password",
    "tariff_id",
    "service_plan_id",
    "billing_type",
    "payment_term_days",
    "credit_limit",
    "billing_decimals",
    "tax_type",
    "tax_rate",
    "codecs",
    "call_with_media",
    "company",
    "email",
    "address",
    "city",
    "province",
    "pin",
    "country",
    "phone",
    "mobile",
    "timezone",
    "currency",
    "cli",
    "trunk_channel_max",
    "fraud_limit_default",
    "fraud_limit_ceiling",
)
# What a customer's own (self-care) token may change: contact details and its web password.
SELF_CARE_FIELDS = ("email", "address", "city", "province", "pin", "country", "phone", "mobile", "web_password")
# Fields that can never be empty once the customer exists.
_NOT_NULL = (
    "name",
    "max_sessions",
    "cps",
    "max_call_seconds",
    "account_code",
    "customer_type",
    "billing_type",
    "payment_term_days",
    "credit_limit",
    "billing_decimals",
    "tax_type",
    "tax_rate",
    "codecs",
    "call_with_media",
    "company",
    "address",
    "city",
    "province",
    "timezone",
    "currency",
)
_LIMIT_FIELDS = ("max_sessions", "cps", "max_call_seconds")
MAX_LIMIT = 1_000_000
SORTABLE = (
    "id",
    "name",
    "company",
    "account_code",
    "web_username",
    "status",
    "customer_type",
    "billing_type",
    "credit_limit",
    "created_at",
)

LIFECYCLE = {
    # operation: (allowed from, to)
    "activate": (("created",), "active"),
    "stop": (("active",), "stopped"),
    "resume": (("stopped",), "active"),
    "close": (("created", "active", "stopped"), "closed"),
}


def scoped_customers(scope: Scope) -> Select[Any]:
    """SELECT customers visible to ``scope``; every customer read starts here."""
    stmt = select(Customer)
    if scope.kind == "customer":
        stmt = stmt.where(Customer.id == scope.customer_id)
    elif scope.kind == "reseller":
        stmt = stmt.where(Customer.reseller_id.in_(reseller_ids_under(scope)))
    return stmt


def get_customer(session: Session, *, scope: Scope, customer_id: int, for_update: bool = False) -> Customer:
    if not is_valid_id(customer_id):
        raise NotFound("customer", customer_id)
    stmt = scoped_customers(scope).where(Customer.id == customer_id)
    if for_update:
        stmt = stmt.with_for_update()
    customer = session.scalars(stmt).one_or_none()
    if customer is None:
        raise NotFound("customer", customer_id)
    return customer


def list_customers(
    session: Session,
    *,
    scope: Scope,
    name: str | None = None,
    status: str | None = None,
    domain: str | None = None,
    company: str | None = None,
    web_username: str | None = None,
    account: str | None = None,
    ip: str | None = None,
    sip_user: str | None = None,
    reseller_id: int | None = None,
    include_children: bool = True,
    customer_type: str | None = None,
    billing_type: str | None = None,
    sort: str | None = None,
) -> Listing:
    """Customers in scope with OV500's listing filters.

    ``name``, ``company``, ``web_username`` and ``sip_user`` match a case-insensitive substring;
    ``account`` is an exact account code or customer id; ``ip`` an exact address of one of the
    customer's IP devices.  ``reseller_id`` narrows to one reseller's customers, with those of
    its descendants unless ``include_children`` is false.
    """
    stmt = scoped_customers(scope)
    if name:
        stmt = stmt.where(Customer.name.icontains(name, autoescape=True))
    if company:
        stmt = stmt.where(Customer.company.icontains(company, autoescape=True))
    if web_username:
        stmt = stmt.where(Customer.web_username.icontains(web_username, autoescape=True))
    if status:
        stmt = stmt.where(Customer.status == status)
    if domain:
        stmt = stmt.where(Customer.domain == domain.lower())
    if customer_type:
        stmt = stmt.where(Customer.customer_type == customer_type)
    if billing_type:
        stmt = stmt.where(Customer.billing_type == billing_type)
    if account:
        conditions = [Customer.account_code == account]
        if account.isdigit() and is_valid_id(int(account)):
            conditions.append(Customer.id == int(account))
        stmt = stmt.where(or_(*conditions))
    if ip:
        try:
            address = normalize_ip(ip)
        except ValueError as error:
            raise InvalidValue("ip must be an IP address", field="ip", location="query") from error
        stmt = stmt.where(exists().where(IpDevice.customer_id == Customer.id, IpDevice.ip == address))
    if sip_user:
        stmt = stmt.where(
            exists().where(
                SipDevice.customer_id == Customer.id, SipDevice.username.icontains(sip_user, autoescape=True)
            )
        )
    if reseller_id is not None:
        reseller = session.get(Reseller, reseller_id) if is_valid_id(reseller_id) else None
        if reseller is None or not scope.sees_path(reseller.path):
            raise NotFound("reseller", reseller_id)
        if include_children:
            under = select(Reseller.id).where(Reseller.path.startswith(reseller.path, autoescape=True))
            stmt = stmt.where(Customer.reseller_id.in_(under))
        else:
            stmt = stmt.where(Customer.reseller_id == reseller.id)
    columns = {key: getattr(Customer, key) for key in SORTABLE}
    return Listing(apply_sort(stmt, sort, columns, tiebreak=Customer.id))


def _owner_reseller(session: Session, scope: Scope, reseller_id: int | None) -> Reseller | None:
    """The reseller a new (or moved) customer goes under; checked against the caller's scope."""
    if reseller_id is not None and not is_valid_id(reseller_id):
        raise InvalidValue(f"unknown reseller {reseller_id}", field="reseller_id")
    if scope.kind == "reseller" and reseller_id is None:
        reseller_id = scope.reseller_id
    if reseller_id is None:
        return None
    reseller = session.get(Reseller, reseller_id)
    if reseller is None or not scope.sees_path(reseller.path):
        raise InvalidValue(f"unknown reseller {reseller_id}", field="reseller_id")
    return reseller


def _domain(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return normalize_domain(value)
    except ValueError as error:
        raise InvalidValue(str(error), field="domain") from error


def _codecs(values: Iterable[str]) -> list[str]:
    wanted = list(dict.fromkeys(values))
    if not wanted:
        raise InvalidValue("at least one codec is required", field="codecs")
    for codec in wanted:
        if codec not in CODECS:
            raise InvalidValue(f"unknown codec {codec!r}; known: {', '.join(CODECS)}", field="codecs")
    return wanted


_PATTERNS = {
    "account_code": ACCOUNT_CODE_PATTERN,
    "web_username": WEB_USERNAME_PATTERN,
    "phone": PHONE_PATTERN,
    "mobile": PHONE_PATTERN,
    "pin": PIN_PATTERN,
    "cli": CALLER_NUMBER_PATTERN,
}


def validate_fields(values: dict[str, Any]) -> None:
    """The OV500 web-form rules for whichever fields are present (shared by create, PATCH, import)."""
    require_text(values, "name", max_length=100, required=True)
    for field, length in (("company", 100), ("address", 200), ("city", 100), ("province", 100)):
        require_text(values, field, max_length=length)
    require_match(values, _PATTERNS)
    if "customer_type" in values:
        require_one_of(values["customer_type"], CUSTOMER_TYPES, field="customer_type")
    if "billing_type" in values:
        require_one_of(values["billing_type"], BILLING_TYPES, field="billing_type")
    if "tax_type" in values:
        require_one_of(values["tax_type"], TAX_TYPES, field="tax_type")
    require_range(values, "payment_term_days", 1, 30)
    require_range(values, "billing_decimals", 0, 6)
    require_range(values, "trunk_channel_max", 0, 1000)
    require_non_negative(values, _LIMIT_FIELDS)
    for field in _LIMIT_FIELDS:
        require_range(values, field, 0, MAX_LIMIT)
    for field in ("credit_limit", "fraud_limit_default", "fraud_limit_ceiling"):
        require_money(values, field)
    require_money(values, "tax_rate")
    if values.get("tax_rate") is not None and values["tax_rate"] > 100:
        raise InvalidValue("tax_rate is a percentage between 0 and 100", field="tax_rate")
    email = values.get("email")
    if email is not None and (
        not isinstance(email, str) or len(email) > CUSTOMER_EMAIL_MAX_LENGTH or not re.fullmatch(EMAIL_PATTERN, email)
    ):
        raise InvalidValue(
            f"email must be a valid address of at most {CUSTOMER_EMAIL_MAX_LENGTH} characters", field="email"
        )
    if values.get("country") is not None and values["country"] not in COUNTRIES:
        raise InvalidValue("country must be an ISO 3166-1 alpha-2 code such as GB", field="country")
    if values.get("currency") is not None and values["currency"] not in CURRENCIES:
        raise InvalidValue("currency must be an ISO 4217 code such as GBP", field="currency")
    if values.get("timezone") is not None and not is_time_zone(values["timezone"]):
        raise InvalidValue("timezone must be an IANA time zone name such as Europe/London", field="timezone")
    password = values.get("web_password")
    if password is not None and (not isinstance(password, str) or not is_strong_web_password(password)):
        raise InvalidValue(f"web_password must have {WEB_PASSWORD_RULE}", field="web_password")
    if "codecs" in values and values["codecs"] is not None:
        values["codecs"] = _codecs(values["codecs"])
    if "domain" in values:
        values["domain"] = _domain(values["domain"])


def _check_fraud(default: Decimal | None, ceiling: Decimal | None) -> None:
    if default is not None and ceiling is not None and default > ceiling:
        raise InvalidValue("fraud_limit_default may not exceed fraud_limit_ceiling", field="fraud_limit_default")


def _check_plan(session: Session, plan_id: int | None) -> ServicePlan | None:
    if plan_id is None:
        return None
    plan = session.get(ServicePlan, plan_id) if is_valid_id(plan_id) else None
    if plan is None or plan.status != "active":
        raise InvalidValue(f"unknown service plan {plan_id}", field="service_plan_id")
    return plan


def create_customer(
    session: Session,
    *,
    scope: Scope,
    name: str,
    reseller_id: int | None = None,
    domain: str | None = None,
    status: str = "active",
    max_sessions: int = 0,
    cps: int = 0,
    max_call_seconds: int = 0,
    account_code: str | None = None,
    customer_type: str = "LIVE",
    web_username: str | None = None,
    web_password: str | None = None,
    tariff_id: int | None = None,
    service_plan_id: int | None = None,
    billing_type: str = "postpaid",
    payment_term_days: int = 30,
    credit_limit: Decimal = Decimal(0),
    billing_decimals: int | None = None,
    tax_type: str = "NONE",
    tax_rate: Decimal = Decimal(0),
    codecs: Iterable[str] = DEFAULT_CODECS,
    call_with_media: bool = True,
    company: str = "",
    email: str | None = None,
    address: str = "",
    city: str = "",
    province: str = "",
    pin: str | None = None,
    country: str | None = None,
    phone: str | None = None,
    mobile: str | None = None,
    timezone: str | None = None,
    currency: str | None = None,
    cli: str | None = None,
    trunk_channel_max: int | None = None,
    fraud_limit_default: Decimal | None = None,
    fraud_limit_ceiling: Decimal | None = None,
    password_cost: int | None = None,
    web_password_hash: str | None = None,
) -> Customer:
    """A new customer.

    ``web_password_hash``: the scrypt hash of ``web_password`` made beforehand (bulk imports hash
    every password before their transaction starts); computed here when not given.

    ``status`` defaults to ``active`` (not ``created``) so that a customer made through the API
    can place calls at once; an order-management system that wants the explicit Service Start
    step passes ``created`` and calls :func:`activate_customer` later.  ``None`` for the
    tariff, billing decimals, time zone and currency means "the owning reseller's"; fraud
    limits not given come from the service plan.
    """
    if scope.kind == "customer":
        raise NotPermitted("customers cannot create customers")
    if status not in ("created", "active"):
        raise InvalidValue("a new customer is created or active", field="status")
    values: dict[str, Any] = {
        "name": name,
        "domain": domain,
        "max_sessions": max_sessions,
        "cps": cps,
        "max_call_seconds": max_call_seconds,
        "account_code": account_code,
        "customer_type": customer_type,
        "web_username": web_username,
        "web_password": web_password,
        "billing_type": billing_type,
        "payment_term_days": payment_term_days,
        "credit_limit": credit_limit,
        "billing_decimals": billing_decimals,
        "tax_type": tax_type,
        "tax_rate": tax_rate,
        "codecs": list(codecs),
        "call_with_media": call_with_media,
        "company": company,
        "email": email,
        "address": address,
        "city": city,
        "province": province,
        "pin": pin,
        "country": country,
        "phone": phone,
        "mobile": mobile,
        "timezone": timezone,
        "currency": currency,
        "cli": cli,
        "trunk_channel_max": trunk_channel_max,
        "fraud_limit_default": fraud_limit_default,
        "fraud_limit_ceiling": fraud_limit_ceiling,
    }
    validate_fields(values)
    if web_password is not None and web_username is None:
        raise InvalidValue("a web_password needs a web_username", field="web_password")
    # scrypt (tens of milliseconds) before the first query: never inside the write transaction.
    if web_password_hash is None and web_password is not None:
        web_password_hash = hash_password(web_password, n=password_cost)
    reseller = _owner_reseller(session, scope, reseller_id)
    owner_id = reseller.id if reseller is not None else None
    if tariff_id is None and reseller is not None:
        tariff_id = reseller.default_tariff_id
    currency = currency or (reseller.currency if reseller else DEFAULT_CURRENCY)
    check_tariff_owned_by(session, tariff_id, owner_id, field="tariff_id", currency=currency)
    plan = _check_plan(session, service_plan_id)
    if plan is not None:
        if fraud_limit_default is None:
            fraud_limit_default = plan.fraud_limit_default
        if fraud_limit_ceiling is None:
            fraud_limit_ceiling = plan.fraud_limit_ceiling
    _check_fraud(fraud_limit_default, fraud_limit_ceiling)
    now = utcnow()
    customer = Customer(
        reseller_id=owner_id,
        name=name.strip(),
        domain=values["domain"],
        status=status,
        max_sessions=max_sessions,
        cps=cps,
        max_call_seconds=max_call_seconds,
        account_code=account_code,
        customer_type=customer_type,
        web_username=web_username,
        web_password_hash=web_password_hash if web_password is not None else None,
        tariff_id=tariff_id,
        service_plan_id=service_plan_id,
        billing_type=billing_type,
        payment_term_days=payment_term_days,
        credit_limit=credit_limit,
        billing_decimals=billing_decimals
        if billing_decimals is not None
        else (reseller.billing_decimals if reseller else DEFAULT_BILLING_DECIMALS),
        tax_type=tax_type,
        tax_rate=tax_rate,
        codecs=values["codecs"],
        call_with_media=call_with_media,
        company=company.strip(),
        email=email,
        address=address.strip(),
        city=city.strip(),
        province=province.strip(),
        pin=pin,
        country=country,
        phone=phone,
        mobile=mobile,
        timezone=timezone or (reseller.timezone if reseller else DEFAULT_TIMEZONE),
        currency=currency or (reseller.currency if reseller else DEFAULT_CURRENCY),
        cli=cli,
        trunk_channel_max=trunk_channel_max,
        fraud_limit_default=fraud_limit_default,
        fraud_limit_ceiling=fraud_limit_ceiling,
        activated_at=now if status == "active" else None,
    )
    session.add(customer)
    flush(session)
    if customer.account_code is None:
        customer.account_code = GENERATED_ACCOUNT_CODE.format(id=customer.id)
        flush(session)
    record_change(session, entity=ENTITY_CUSTOMER, entity_id=customer.id)
    return customer


def update_customer(session: Session, *, scope: Scope, customer_id: int, changes: Mapping[str, Any]) -> Customer:
    """Apply a partial update (the keys given are the fields to change).

    A customer's own token may change only :data:`SELF_CARE_FIELDS` (its contact details and
    web password); limits, credit, tariff, billing and status are its reseller's business.
    """
    values = dict(changes)
    if scope.kind == "customer":
        refused = sorted(set(values) - set(SELF_CARE_FIELDS))
        if refused:
            raise NotPermitted(
                f"customers cannot change {', '.join(refused)} (self-care: {', '.join(SELF_CARE_FIELDS)})",
                field=refused[0],
            )
    if "status" in values:
        raise InvalidValue(
            "status changes through POST /customers/{id}/activate, /stop, /resume or /close", field="status"
        )
    for field in _NOT_NULL:
        if field in values and values[field] is None:
            raise InvalidValue(f"{field} may not be null", field=field)
    validate_fields(values)
    # scrypt takes tens of milliseconds: hash before the row lock below, never while holding it.
    new_password_hash = hash_password(values["web_password"]) if values.get("web_password") is not None else None
    customer = get_customer(session, scope=scope, customer_id=customer_id, for_update=True)
    if customer.status == "closed":
        raise Conflict("the customer is closed", field="status")
    if "name" in values:
        values["name"] = values["name"].strip()
    if "domain" in values and customer.domain is not None and values["domain"] != customer.domain:
        # Immutable once set: the domain names the customer's SIP realm and URIs.
        raise Conflict("the domain cannot be changed once set", field="domain")
    if "reseller_id" in values and values["reseller_id"] != customer.reseller_id:
        moved_to = _owner_reseller(session, scope, values["reseller_id"])
        values["reseller_id"] = moved_to.id if moved_to is not None else None
        if "tariff_id" not in values:
            # A tariff belongs to the seller: a customer moved to another reseller takes its default.
            values["tariff_id"] = moved_to.default_tariff_id if moved_to is not None else None
    if "tariff_id" in values or "currency" in values:
        owner = values.get("reseller_id", customer.reseller_id)
        check_tariff_owned_by(
            session,
            values.get("tariff_id", customer.tariff_id),
            owner,
            field="tariff_id" if "tariff_id" in values else "currency",
            currency=values.get("currency", customer.currency),
        )
    if "service_plan_id" in values:
        _check_plan(session, values["service_plan_id"])
    _check_fraud(
        values.get("fraud_limit_default", customer.fraud_limit_default),
        values.get("fraud_limit_ceiling", customer.fraud_limit_ceiling),
    )
    if "web_password" in values:
        password = values.pop("web_password")
        if password is None:
            values["web_password_hash"] = None
        else:
            if values.get("web_username", customer.web_username) is None:
                raise InvalidValue("a web_password needs a web_username", field="web_password")
            values["web_password_hash"] = new_password_hash
    if values.get("web_username", customer.web_username) is None and customer.web_password_hash is not None:
        values["web_password_hash"] = None  # no login name, no login
    if apply_changes(customer, values, allowed=(*UPDATABLE_FIELDS, "web_password_hash")):
        flush(session)
        record_change(session, entity=ENTITY_CUSTOMER, entity_id=customer.id)
    return customer


def _services_in_use(session: Session, customer_id: int) -> dict[str, int]:
    counts = {
        "SIP device": select(func.count()).where(SipDevice.customer_id == customer_id),
        "IP device": select(func.count()).where(IpDevice.customer_id == customer_id),
        "DID": select(func.count()).where(Did.customer_id == customer_id),
        "dialing route": select(func.count()).where(Route.customer_id == customer_id),
    }
    return {what: n for what, stmt in counts.items() if (n := session.scalar(stmt) or 0)}


def change_status(
    session: Session, *, scope: Scope, customer_id: int, operation: str, reason: str, comment: str = ""
) -> Customer:
    """One lifecycle operation (``activate``, ``stop``, ``resume``, ``close``) with its reason."""
    if operation not in LIFECYCLE:
        raise InvalidValue(f"unknown operation {operation!r}", field="operation")
    if scope.kind == "customer":
        raise NotPermitted("customers cannot change their own status")
    customer = get_customer(session, scope=scope, customer_id=customer_id, for_update=True)
    if operation in ("stop", "resume"):
        require_permission(session, scope, "approve_stop_resume")
    elif operation == "close":
        require_permission(session, scope, "approve_customer_close")
    require_text({"reason": reason}, "reason", max_length=200, required=operation in ("stop", "close"))
    require_text({"comment": comment}, "comment", max_length=1000)
    allowed_from, to_status = LIFECYCLE[operation]
    if customer.status not in allowed_from:
        raise Conflict(f"cannot {operation} a customer that is {customer.status}", field="status")
    now = utcnow()
    if operation == "close":
        busy = _services_in_use(session, customer.id)
        if busy:
            listing = ", ".join(f"{what}: {n}" for what, n in busy.items())
            raise Conflict(f"services remain ({listing}); remove them before closing", field="status")
        customer.closed_at = now
        # A closed account logs in no more (a self-care token would otherwise outlive it).
        session.execute(
            update(ApiToken)
            .where(ApiToken.kind == "customer", ApiToken.owner_id == customer.id, ApiToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )
    if operation == "activate":
        customer.activated_at = now
    if operation == "stop":
        session.add(Suspension(customer_id=customer.id, started_at=now, reason=reason.strip()))
    if operation in ("resume", "close"):
        open_period = session.scalars(
            select(Suspension).where(Suspension.customer_id == customer.id, Suspension.ended_at.is_(None))
        ).first()
        if open_period is not None:
            open_period.ended_at = now
            open_period.resume_reason = reason.strip() or operation
    session.add(
        CustomerStatusEvent(
            customer_id=customer.id,
            operation=operation,
            from_status=customer.status,
            to_status=to_status,
            reason=reason.strip(),
            comment=comment,
            at=now,
            actor=actor_of(session).label,
        )
    )
    customer.status = to_status
    flush(session)
    record_change(session, entity=ENTITY_CUSTOMER, entity_id=customer.id)
    return customer


def list_suspensions(session: Session, *, scope: Scope, customer_id: int) -> list[Suspension]:
    customer = get_customer(session, scope=scope, customer_id=customer_id)
    return list(
        session.scalars(select(Suspension).where(Suspension.customer_id == customer.id).order_by(Suspension.id))
    )


def list_status_events(session: Session, *, scope: Scope, customer_id: int) -> list[CustomerStatusEvent]:
    customer = get_customer(session, scope=scope, customer_id=customer_id)
    return list(
        session.scalars(
            select(CustomerStatusEvent)
            .where(CustomerStatusEvent.customer_id == customer.id)
            .order_by(CustomerStatusEvent.id)
        )
    )


def delete_customer(session: Session, *, scope: Scope, customer_id: int) -> None:
    """Delete a customer that has no devices, DIDs, routes or money history left.

    A customer that has been billed keeps its record: close it instead (its CDRs and ledger stay).
    """
    if scope.kind == "customer":
        raise NotPermitted("customers cannot delete customers")
    customer = get_customer(session, scope=scope, customer_id=customer_id, for_update=True)
    sip = session.scalar(select(func.count()).where(SipDevice.customer_id == customer.id)) or 0
    ip = session.scalar(select(func.count()).where(IpDevice.customer_id == customer.id)) or 0
    if sip or ip:
        raise Conflict(f"the customer still has {sip} SIP device(s) and {ip} IP device(s); delete them first")
    busy = _services_in_use(session, customer.id)
    if busy:
        raise Conflict(f"the customer still has {', '.join(f'{n} {what}(s)' for what, n in busy.items())}")
    if session.scalar(select(func.count()).where(LedgerEntry.customer_id == customer.id)):
        raise Conflict("the customer has balance history; close it instead of deleting it")
    session.execute(
        update(ApiToken)
        .where(ApiToken.kind == "customer", ApiToken.owner_id == customer.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    session.delete(customer)
    flush(session)
    record_change(session, entity=ENTITY_CUSTOMER, entity_id=customer_id)
