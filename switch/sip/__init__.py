"""Sans-IO SIP: parser and serializer (RFC 3261 sections 7 and 25), URIs, typed headers, digest auth."""
