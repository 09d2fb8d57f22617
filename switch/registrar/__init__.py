"""Sans-IO registrar (RFC 3261 section 10), device authentication and the brute-force guard."""
