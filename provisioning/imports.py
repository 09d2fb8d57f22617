"""Customer import from the CSV of the cloud reseller guide (seed 004, "Import Customers").

Columns (header names compared without case and surrounding spaces; any subset, in any order):

    Account Number, Password, First Name, Last Name, Company, Phone, Mobile, Email, Address,
    City, Province/State, Zip/Postal Code, Number Translation, Out Callerid Translation,
    In Callerid Translation, Concurrent Calls, CPS, Balance, Credit Limit, SIP Username,
    SIP Password

How each maps (decisions written down in docs/api.md):

* Account Number -> ``account_code`` and, with a Password, the self-care ``web_username``;
  Password -> ``web_password`` (the web-form rule: 8+ characters, a capital, a digit, a special).
* First Name + Last Name -> ``name`` (Company alone when both are empty).
* Zip/Postal Code -> ``pin``; Province/State -> ``province``.
* Number Translation -> ``destination`` rules, Out Callerid Translation -> ``source`` rules,
  In Callerid Translation -> ``did_source`` rules; each cell is a list of ``match/replacement``
  pairs separated by commas or semicolons, optionally quoted (``"0/44","00/"``).
* Concurrent Calls -> ``max_sessions``; CPS -> ``cps``; Credit Limit -> ``credit_limit``.
* Balance -> an opening ledger adjustment (the balance is never a bare column).
* SIP Username + SIP Password -> one SIP device.

Every row is checked (field rules, duplicates inside the file and against the database) before
anything is written; one bad row and nothing is stored, and every bad row is reported with its
line number (the header is line 1).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from provisioning.errors import ImportRejected, InvalidValue, NotPermitted
from provisioning.models import Customer, SipDevice
from provisioning.passwords import hash_password
from provisioning.repo import customers as customers_repo
from provisioning.repo import ledger as ledger_repo
from provisioning.repo import numbers as numbers_repo
from provisioning.repo import sip_devices as sip_repo
from provisioning.scope import Scope
from provisioning.validation import (
    ACCOUNT_CODE_PATTERN,
    PASSWORD_MAX_LENGTH,
    PASSWORD_MIN_LENGTH,
    TRANSLATION_PATTERN,
    USERNAME_PATTERN,
)

COLUMNS = {
    "account number": "account_number",
    "password": "password",
    "first name": "first_name",
    "last name": "last_name",
    "company": "company",
    "phone": "phone",
    "mobile": "mobile",
    "email": "email",
    "address": "address",
    "city": "city",
    "province/state": "province",
    "zip/postal code": "pin",
    "number translation": "number_translation",
    "out callerid translation": "out_callerid_translation",
    "in callerid translation": "in_callerid_translation",
    "concurrent calls": "max_sessions",
    "cps": "cps",
    "balance": "balance",
    "credit limit": "credit_limit",
    "sip username": "sip_username",
    "sip password": "sip_password",
}
TRANSLATION_COLUMNS = {
    "number_translation": "destination",
    "out_callerid_translation": "source",
    "in_callerid_translation": "did_source",
}
MAX_ROWS = 50_000
MAX_BYTES = 32 * 1024 * 1024


@dataclass
class _Row:
    line: int
    customer: dict[str, Any]
    rules: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, match, replacement)
    balance: Decimal | None = None
    sip: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class CustomerImport:
    customers: int
    sip_devices: int
    translation_rules: int
    customer_ids: list[int]


def _decimal(text: str, column: str) -> Decimal:
    try:
        value = Decimal(text.replace(",", "")) if text else Decimal(0)
    except InvalidOperation as error:
        raise InvalidValue(f"{column} is not a number", field=column) from error
    if not value.is_finite():
        raise InvalidValue(f"{column} is not a number", field=column)
    return value


def _integer(text: str, column: str) -> int:
    if not re.fullmatch(r"[0-9]{1,7}", text):
        raise InvalidValue(f"{column} must be a whole number >= 0", field=column)
    return int(text)


def parse_translations(cell: str, column: str) -> list[tuple[str, str]]:
    """``"0/44","00/"`` (or ``0/44;00/``) -> [("0", "44"), ("00", "")]."""
    pairs: list[tuple[str, str]] = []
    for raw in re.split(r"[,;]", cell):
        item = raw.strip().strip('"').strip("'").strip()
        if not item:
            continue
        if item.count("/") != 1:
            raise InvalidValue(f"{column}: {item!r} is not match/replacement", field=column)
        match, replacement = (part.strip() for part in item.split("/"))
        if not re.fullmatch(TRANSLATION_PATTERN, match) or not re.fullmatch(TRANSLATION_PATTERN, replacement):
            raise InvalidValue(f"{column}: {item!r} must be digits (an optional leading +)", field=column)
        pairs.append((match, replacement))
    return pairs


def _row(line: int, cells: dict[str, str]) -> _Row:
    get = cells.get
    first, last, company = get("first_name", ""), get("last_name", ""), get("company", "")
    name = " ".join(part for part in (first, last) if part) or company
    if not name:
        raise InvalidValue("a name is required (First Name, Last Name or Company)", field="first_name")
    account = get("account_number", "") or None
    password = get("password", "") or None
    if account is not None and not re.fullmatch(ACCOUNT_CODE_PATTERN, account):
        raise InvalidValue("account number must be 1-20 letters, digits, '_' or '-'", field="account_number")
    if password is not None and account is None:
        raise InvalidValue("a password needs an account number (the login)", field="password")
    customer: dict[str, Any] = {
        "name": name[:100],
        "company": company,
        "account_code": account,
        "web_username": account if password is not None else None,
        "web_password": password,
        "phone": get("phone", "") or None,
        "mobile": get("mobile", "") or None,
        "email": get("email", "") or None,
        "address": get("address", ""),
        "city": get("city", ""),
        "province": get("province", ""),
        "pin": get("pin", "") or None,
        "max_sessions": _integer(get("max_sessions", "") or "0", "concurrent_calls"),
        "cps": _integer(get("cps", "") or "0", "cps"),
        "credit_limit": _decimal(get("credit_limit", ""), "credit_limit"),
    }
    try:
        customers_repo.validate_fields(dict(customer))
    except InvalidValue as error:
        if error.field == "web_username":
            raise InvalidValue("account number cannot be used as a web login", field="account_number") from error
        if error.field == "web_password":
            error.field = "password"
        raise
    row = _Row(line=line, customer=customer)
    balance = get("balance", "")
    if balance:
        row.balance = _decimal(balance, "balance")
        if row.balance.as_tuple().exponent < -6:  # type: ignore[operator]
            raise InvalidValue("balance has more than 6 decimal places", field="balance")
    for column, kind in TRANSLATION_COLUMNS.items():
        for match, replacement in parse_translations(get(column, ""), column):
            row.rules.append((kind, match, replacement))
    sip_user, sip_password = get("sip_username", ""), get("sip_password", "")
    if sip_user or sip_password:
        if not (sip_user and sip_password):
            raise InvalidValue("SIP Username and SIP Password go together", field="sip_username")
        if not re.fullmatch(USERNAME_PATTERN, sip_user):
            raise InvalidValue("SIP Username has an invalid format", field="sip_username")
        if not PASSWORD_MIN_LENGTH <= len(sip_password) <= PASSWORD_MAX_LENGTH:
            raise InvalidValue(f"SIP Password needs at least {PASSWORD_MIN_LENGTH} characters", field="sip_password")
        row.sip = (sip_user, sip_password)
    return row


def _taken(session: Session, column: Any, values: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(values), 500):
        found.update(session.scalars(select(column).where(column.in_(values[start : start + 500]))))
    return found


def import_customers(
    session: Session,
    *,
    scope: Scope,
    data: bytes,
    reseller_id: int | None = None,
    tariff_id: int | None = None,
    default_realm: str = "trunkline",
    password_cost: int | None = None,
) -> CustomerImport:
    """Check every row, then create every customer (with its SIP device, translation rules and
    opening balance) in the caller's transaction; raises :class:`ImportRejected` listing every bad
    row, having written nothing."""
    if scope.kind == "customer":
        raise NotPermitted("customers cannot import customers")
    if len(data) > MAX_BYTES:
        raise ImportRejected([(None, None, f"the file is larger than {MAX_BYTES // (1024 * 1024)} MiB")])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ImportRejected([(None, None, f"the file is not UTF-8 text ({error.reason})")]) from error
    if "\x00" in text:
        raise ImportRejected([(None, None, "the file contains NUL characters")])
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise ImportRejected([(1, None, "the file is empty")]) from None
    except csv.Error as error:
        raise ImportRejected([(1, None, f"unreadable CSV: {error}")]) from error
    keys: list[str] = []
    problems: list[tuple[int | None, str | None, str]] = []
    for name in header:
        key = COLUMNS.get(name.strip().lower())
        if key is None:
            problems.append((1, name, f"unknown column {name!r}; expected some of: {', '.join(COLUMNS)}"))
        keys.append(key or "")
    if len(set(keys)) != len(keys):
        problems.append((1, None, "a column appears twice"))
    if problems:
        raise ImportRejected(problems)
    rows: list[_Row] = []
    try:
        for cells in reader:
            line = reader.line_num
            if not any(c.strip() for c in cells):
                continue  # blank lines are not rows
            if len(rows) >= MAX_ROWS:
                problems.append((line, None, f"more than {MAX_ROWS} rows"))
                break
            if len(cells) != len(keys):
                problems.append((line, None, f"{len(cells)} cells where the header has {len(keys)}"))
                continue
            try:
                rows.append(_row(line, {k: c.strip() for k, c in zip(keys, cells, strict=True)}))
            except InvalidValue as error:
                problems.append((line, error.field, error.message))
    except csv.Error as error:
        problems.append((reader.line_num, None, f"unreadable CSV: {error}"))
    if not rows and not problems:
        problems.append((2, None, "the file has no rows"))

    # Duplicates inside the file, then against what is stored.
    checks: list[tuple[str, Any, Callable[[_Row], str | None]]] = [
        ("account number", Customer.account_code, lambda r: r.customer["account_code"]),
        ("account number", Customer.web_username, lambda r: r.customer["web_username"]),
        ("SIP username", SipDevice.username, lambda r: r.sip[0] if r.sip else None),
    ]
    for what, column, value_of in checks:
        first_line: dict[str, int] = {}
        for row in rows:
            value = value_of(row)
            if value is None:
                continue
            if value in first_line and column is not Customer.web_username:
                problems.append((row.line, what, f"{what} {value!r} repeats line {first_line[value]}"))
            first_line.setdefault(value, row.line)
        for value in sorted(_taken(session, column, list(first_line))):
            problems.append((first_line[value], what, f"{what} {value!r} already exists"))
    if problems:
        problems.sort(key=lambda p: (p[0] or 0, p[1] or ""))
        raise ImportRejected(problems[:1000], total=len(problems))

    # Every password is hashed (scrypt, ~50 ms each) before the first insert, so the write
    # transaction's locks are held for the inserts only, not for minutes of hashing.
    hashes = [
        hash_password(row.customer["web_password"], n=password_cost)
        if row.customer.get("web_password") is not None
        else None
        for row in rows
    ]
    ids: list[int] = []
    devices = rules = 0
    for row, password_hash in zip(rows, hashes, strict=True):
        try:
            customer = customers_repo.create_customer(
                session,
                scope=scope,
                reseller_id=reseller_id,
                tariff_id=tariff_id,
                password_cost=password_cost,
                web_password_hash=password_hash,
                **row.customer,
            )
        except InvalidValue as error:
            # reseller_id / tariff_id are the request's, not the file's: the same for every row.
            raise InvalidValue(error.message, field=error.field, location="query") from error
        ids.append(customer.id)
        if row.sip is not None:
            sip_repo.create_sip_device(
                session,
                scope=scope,
                customer_id=customer.id,
                default_realm=default_realm,
                username=row.sip[0],
                password=row.sip[1],
            )
            devices += 1
        for position, (kind, match, replacement) in enumerate(row.rules):
            numbers_repo.create_rule(
                session,
                scope=scope,
                customer_id=customer.id,
                kind=kind,
                match=match,
                replacement=replacement,
                position=position,
            )
            rules += 1
        if row.balance:
            ledger_repo.add_entry(
                session,
                scope=scope,
                customer_id=customer.id,
                kind="adjustment",
                amount=row.balance,
                description="opening balance (import)",
            )
    return CustomerImport(customers=len(ids), sip_devices=devices, translation_rules=rules, customer_ids=ids)
