"""Repositories: keyword-only functions over a Session, each taking the caller's ``scope``.

Writes add to the caller's transaction (and record a change-feed row and an audit row in it);
the caller commits.  Errors are :mod:`provisioning.errors`, never raw database exceptions.

Modules: ``customers``, ``resellers``, ``sip_devices``, ``ip_devices``, ``tariffs`` (and rates),
``plans`` (service plans, bundles), ``ledger`` (payments, balance, statements), ``routing``
(carriers, routes), ``numbers`` (translation rules, DIDs), ``auth`` (logins, administrators,
tokens, audit and login logs), ``cdrs``, ``invoices`` (invoices and rated calls).
"""

from provisioning.repo import (
    auth,
    cdrs,
    customers,
    invoices,
    ip_devices,
    ledger,
    numbers,
    plans,
    resellers,
    routing,
    sip_devices,
    tariffs,
)
from provisioning.repo._common import Listing, Page, record_change
from provisioning.repo.changes import changes_after, latest_change_id, prune_changes
from provisioning.repo.customers import (
    change_status,
    create_customer,
    delete_customer,
    get_customer,
    list_customers,
    update_customer,
)
from provisioning.repo.ip_devices import (
    create_ip_device,
    delete_ip_device,
    get_ip_device,
    list_ip_devices,
    update_ip_device,
)
from provisioning.repo.resellers import create_reseller, delete_reseller, get_reseller, list_resellers, update_reseller
from provisioning.repo.sip_devices import (
    create_sip_device,
    delete_sip_device,
    get_sip_device,
    list_sip_devices,
    realm_for,
    update_sip_device,
)

__all__ = [
    "Listing",
    "Page",
    "auth",
    "cdrs",
    "change_status",
    "changes_after",
    "create_customer",
    "create_ip_device",
    "create_reseller",
    "create_sip_device",
    "customers",
    "delete_customer",
    "delete_ip_device",
    "delete_reseller",
    "delete_sip_device",
    "get_customer",
    "get_ip_device",
    "get_reseller",
    "get_sip_device",
    "invoices",
    "ip_devices",
    "latest_change_id",
    "ledger",
    "list_customers",
    "list_ip_devices",
    "list_resellers",
    "list_sip_devices",
    "numbers",
    "plans",
    "prune_changes",
    "realm_for",
    "record_change",
    "resellers",
    "routing",
    "sip_devices",
    "tariffs",
    "update_customer",
    "update_ip_device",
    "update_reseller",
    "update_sip_device",
]
