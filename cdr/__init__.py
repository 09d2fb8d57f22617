"""Call detail records: the record and its schema (the shared vocabulary), the durable spool and writers."""
