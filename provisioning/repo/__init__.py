"""Repositories: keyword-only functions over a Session, each taking the caller's ``scope``.

Writes add to the caller's transaction (and record a change-feed row in it); the caller
commits.  Errors are :mod:`provisioning.errors`, never raw database exceptions.
"""

from provisioning.repo._common import Page, record_change
from provisioning.repo.changes import changes_after, latest_change_id, prune_changes
from provisioning.repo.customers import (
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
from provisioning.repo.resellers import create_reseller, get_reseller
from provisioning.repo.sip_devices import (
    create_sip_device,
    delete_sip_device,
    get_sip_device,
    list_sip_devices,
    realm_for,
    update_sip_device,
)

__all__ = [
    "Page",
    "changes_after",
    "create_customer",
    "create_ip_device",
    "create_reseller",
    "create_sip_device",
    "delete_customer",
    "delete_ip_device",
    "delete_sip_device",
    "get_customer",
    "get_ip_device",
    "get_reseller",
    "get_sip_device",
    "latest_change_id",
    "list_customers",
    "list_ip_devices",
    "list_sip_devices",
    "prune_changes",
    "realm_for",
    "record_change",
    "update_customer",
    "update_ip_device",
    "update_sip_device",
]
