"""Tags and Call-IDs the switch makes (RFC 3261 sections 19.3 and 8.1.1.4).

Both need global uniqueness, not secrecy: a random per-process prefix plus a counter is unique,
cheap, and never repeats within a process.
"""

from __future__ import annotations

import os
from itertools import count

_PREFIX = os.urandom(5).hex()
_tags = count(1)
_call_ids = count(1)


def new_tag() -> str:
    return f"{_PREFIX}{next(_tags):x}"


def new_call_id() -> str:
    return f"{_PREFIX}-{next(_call_ids):x}@trunkline"
