"""Sans-IO RFC 3261 section 17 transactions (with RFC 6026), their timers and the shared timer queue."""
