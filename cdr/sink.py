"""Where the switch hands finished CDRs."""

from __future__ import annotations

from typing import Protocol

from cdr.schema import CdrRecord


class CdrSink(Protocol):
    """Accepts a finished call's record.  Must not block the event loop: durable writers batch."""

    def emit(self, record: CdrRecord) -> None: ...
