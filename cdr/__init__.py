"""Call detail records: the record and its schema (:mod:`cdr.schema`, the shared vocabulary), the
sink Protocol the switch emits into (:mod:`cdr.sink`), and the durable spool between the switch
and the billing sidecar (:mod:`cdr.spool`).  Imports only the stdlib (polars lazily): no switch
internals, no database."""
