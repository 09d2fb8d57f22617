"""Billing over the database: the rating book built from provisioning, rating of stored and
incoming CDRs into ``rated_calls`` / ``rated_levels``, bundle usage, ledger charges, re-rating.

Modules (imported on demand: the switch never needs polars):

- :mod:`provisioning.billing.book`: the :class:`~rating.book.RatingBook` from the database
  (accounts, tariffs, carriers, bundles), cached and refreshed from the change feed;
- :mod:`provisioning.billing.charging`: a frame of CDRs in, rated rows, bundle usage and ledger
  entries written in the caller's transaction (the sidecar's batches and re-rating share it);
- :mod:`provisioning.billing.rerate`: ``trunkline rerate``, one transaction for a whole range;
- :mod:`provisioning.billing.bulk`: fast bulk reads and writes (COPY on PostgreSQL).

docs/billing.md has the decisions (ledger granularity, internal calls, bundles and re-rating).
"""
