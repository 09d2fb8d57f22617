"""The SIP switch: a sans-IO SIP stack (sip, transaction, dialog, registrar), the B2BUA (call) and
the asyncio transports (io).  See docs/architecture.md for the layering."""
