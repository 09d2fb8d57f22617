"""The CDR record: one definition shared by the switch, the spool, the database and polars.

Every finished call attempt, answered or not, becomes exactly one :class:`CdrRecord`.  Times are
integer milliseconds since the Unix epoch, UTC (explicit, never a naive local time).  The column
order of :data:`CDR_COLUMNS` is the order of the spool's lines (each segment names its columns)
and of the polars frame the rating engine receives; the ``cdrs`` table has the same columns (in
a database migrated from before 0004, ``sip_call_id`` is its last column: code names columns,
never relies on their physical order).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # polars is only needed by the billing side; the switch never imports it
    import polars as pl

# Dispositions, as shown in CDR reports (ASTPP / OV500 vocabulary).
ANSWERED = "ANSWERED"
BUSY = "BUSY"
NO_ANSWER = "NO ANSWER"
CANCELLED = "CANCELLED"
FAILED = "FAILED"
CONGESTION = "CONGESTION"
NOT_FOUND = "NOT FOUND"
UNAVAILABLE = "UNAVAILABLE"
REJECTED = "REJECTED"

# Call directions and types.
DIRECTION_INTERNAL = "internal"
DIRECTION_OUTBOUND = "outbound"
DIRECTION_INBOUND = "inbound"
CALL_TYPE_EXTENSION = "extension"
CALL_TYPE_OUTBOUND = "outbound"
CALL_TYPE_DID = "did"

# Who ended the call.
HANGUP_CALLER = "caller"
HANGUP_CALLEE = "callee"
HANGUP_SWITCH = "switch"


@dataclass(frozen=True, slots=True)
class CdrRecord:
    """One finished call attempt.

    ``call_id`` is the attempt's own id, made by the switch when the call is created (a ULID,
    :func:`switch.sip.ids.new_attempt_id`): unique across calls, restarts and switches, it keys
    the ``cdrs`` table and everything billed from it.  ``sip_call_id`` is the caller's Call-ID as
    received (the A leg): the caller chooses it, so it may repeat (a device reusing one, a retry
    after a failed INVITE, a fraudster) and is only for finding a call's CDRs, never a key.
    """

    call_id: str
    sip_call_id: str
    customer_id: int | None
    caller_device_id: int | None
    callee_device_id: int | None
    caller_number: str
    dialled_number: str
    start_ms: int
    answer_ms: int | None
    end_ms: int
    duration_ms: int
    sip_code: int
    q850_cause: int
    disposition: str
    direction: str
    call_type: str
    source_ip: str
    hangup_by: str
    reseller_path: str = ""
    ip_device_id: int | None = None
    carrier_id: int | None = None
    did: str = ""
    codecs: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


CDR_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(CdrRecord))

# Column name -> (python type, nullable).  The database table and the polars schema derive from this.
CDR_TYPES: dict[str, tuple[type, bool]] = {
    "call_id": (str, False),
    "sip_call_id": (str, False),
    "customer_id": (int, True),
    "caller_device_id": (int, True),
    "callee_device_id": (int, True),
    "caller_number": (str, False),
    "dialled_number": (str, False),
    "start_ms": (int, False),
    "answer_ms": (int, True),
    "end_ms": (int, False),
    "duration_ms": (int, False),
    "sip_code": (int, False),
    "q850_cause": (int, False),
    "disposition": (str, False),
    "direction": (str, False),
    "call_type": (str, False),
    "source_ip": (str, False),
    "hangup_by": (str, False),
    "reseller_path": (str, False),
    "ip_device_id": (int, True),
    "carrier_id": (int, True),
    "did": (str, False),
    "codecs": (str, False),
}
assert tuple(CDR_TYPES) == CDR_COLUMNS


def polars_schema() -> dict[str, pl.DataType]:
    """The polars schema of a CDR frame (imported lazily: the switch never needs polars)."""
    import polars as pl

    return {name: (pl.Int64() if typ is int else pl.Utf8()) for name, (typ, _null) in CDR_TYPES.items()}


# SIP final response -> (disposition, Q.850 cause), RFC 3398 section 8.2.6.1 in reverse.
_SIP_TO_Q850: dict[int, int] = {
    400: 41, 401: 21, 402: 21, 403: 21, 404: 1, 405: 63, 406: 79, 407: 21, 408: 102, 410: 22,
    413: 127, 414: 127, 415: 79, 416: 127, 420: 127, 421: 127, 423: 127, 480: 18, 481: 41,
    482: 25, 483: 25, 484: 28, 485: 1, 486: 17, 487: 16, 488: 65, 500: 41, 501: 79, 502: 38,
    503: 41, 504: 102, 505: 127, 513: 127, 600: 17, 603: 21, 604: 1, 606: 65,
}


def q850_for_sip(code: int) -> int:
    """Q.850 cause for a final SIP status (RFC 3398 section 7.2.4.1 / 8.2.6.1 mapping)."""
    if 200 <= code < 300:
        return 16  # normal call clearing
    return _SIP_TO_Q850.get(code, 31 if code < 500 else 41 if code < 600 else 31)


def disposition_for_sip(code: int, *, cancelled: bool = False) -> str:
    if 200 <= code < 300:
        return ANSWERED
    if cancelled or code == 487:
        return CANCELLED
    if code in (486, 600):
        return BUSY
    if code == 404 or code == 604 or code == 484:
        return NOT_FOUND
    if code == 408:
        return NO_ANSWER
    if code == 480:
        return UNAVAILABLE
    if code in (603, 403, 401, 407):
        return REJECTED
    if code == 503:
        return CONGESTION
    return FAILED
