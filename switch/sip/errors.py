"""The two kinds of error of the SIP layer.

* :class:`SipError` is the peer's fault.  It carries the status code to answer with (400, 413,
  416, 420, 505, 513 ...) and a reason phrase; ``drop`` marks messages that cannot be answered
  (a malformed response, or a request so broken that no response can be addressed).
* Anything else escaping the parser is our bug; the fuzz tests assert that none does.
"""

from __future__ import annotations


class SipError(ValueError):
    """A protocol error caused by the peer's message."""

    def __init__(self, status: int, reason: str, *, drop: bool = False) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.drop = drop
        # The partly parsed message, when its headers could be split: enough to address a
        # response (Via, From, To, Call-ID, CSeq copied raw, RFC 3261 section 8.2.6.2).
        self.message: object | None = None
        self.extra_headers: list[tuple[str, str]] = []
