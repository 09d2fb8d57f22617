"""Sans-IO dialog state (RFC 3261 section 12)."""
