"""Provisioning: the database (SQLite by default, PostgreSQL), its migrations and repositories,
and the pieces that connect it to the running switch.

Modules:

- ``db``: engines and sessions (SQLite WAL/foreign keys/busy timeout; UTC-aware timestamps).
- ``models``: the schema; ``migrations/`` + ``migrate.upgrade(url)`` create and evolve it.
- ``repo``: keyword-only repository functions, each taking ``scope=`` (``scope.Scope``); every
  write records a row in the ``changes`` feed in the same transaction.
- ``snapshot``: ``SnapshotWatcher``, the switch's ``Directory``: in-memory, refreshed from
  the change feed within a second.
- ``bindings``: ``DbBindingStore``, the registrar's write-behind ``BindingSink``/``BindingSource``.
- ``cdr_writer``: ``DbCdrWriter``, a batching ``CdrSink``.
- ``tokens``: admin token bootstrap and bearer-token verification.

Wiring in the composition root (sketch)::

    migrate.upgrade(url)
    sf = db.session_factory_from_url(url)
    token = tokens.ensure_admin_token(sf, env_token=os.environ.get("TRUNKLINE_ADMIN_TOKEN"),
                                      token_file=Path("var/admin-token"))
    if token: print(...)                       # once, on the first start
    watcher = snapshot.SnapshotWatcher(sf).start()
    watcher.add_listener(lambda ch: loop.call_soon_threadsafe(switch.on_provisioning_changes, ch))
    bindings = DbBindingStore(sf); registrar.restore(bindings.load_bindings())
    cdrs = DbCdrWriter(sf)
    app = admin_api.create_app(session_factory=sf, realm_default=cfg.realm, metrics_registry=reg)
    ...
    # shutdown: watcher.stop(); bindings.close(); cdrs.close()
"""

# Registers the audit hook on every Session, whichever module is imported first.
from provisioning import audit as _audit  # noqa: F401
