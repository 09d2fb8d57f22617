"""CDRs for the spool and ingestion tests."""

from __future__ import annotations

from typing import Any

from cdr.schema import CdrRecord


def cdr(n: int, **kw: Any) -> CdrRecord:
    """A plausible answered call, numbered ``n`` (its call id is ``call-<n>@test``)."""
    values: dict[str, Any] = {
        "call_id": f"call-{n}@test",
        "sip_call_id": f"sip-{n}@192.0.2.10",
        "customer_id": 7,
        "caller_device_id": 11,
        "callee_device_id": None,
        "caller_number": "442070000001",
        "dialled_number": f"1{n % 1000:03d}",
        "start_ms": 1_700_000_000_000 + n,
        "answer_ms": 1_700_000_001_000 + n,
        "end_ms": 1_700_000_061_000 + n,
        "duration_ms": 60_000,
        "sip_code": 200,
        "q850_cause": 16,
        "disposition": "ANSWERED",
        "direction": "internal",
        "call_type": "extension",
        "source_ip": "192.0.2.10",
        "hangup_by": "caller",
        "reseller_path": "1/4",
    }
    values.update(kw)
    return CdrRecord(**values)
