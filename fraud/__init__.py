"""Admission decisions (not built yet): concurrent-call and CPS limits per reseller, customer,
device, trunk, carrier and DID; SIP trunk channel maxima; prepaid maximum duration with balance
reservation; per-user daily spend caps with block and unblock.  See docs/architecture.md."""
