"""Brute-force protection for digest authentication, per source IP address.

Sans-IO: the caller passes ``now`` (seconds, any clock that does not go backwards) and acts on
the answers; nothing here sleeps, sends or logs.

Use from the registrar / B2BUA:

* before doing any work for a request, ``decision = guard.check(ip, now)``: if
  ``decision.blocked``, drop the request (or answer 403); otherwise wait ``decision.delay``
  seconds before answering (a tarpit: an online password guesser gets slower with every wrong
  guess, a legitimate phone with a typo barely notices);
* after a digest verification that FAILED (a wrong password, not the first unauthenticated
  request that merely earns a 401 challenge, and not a stale nonce), ``guard.failure(ip, now)``;
  a non-None :class:`GuardEvent` means that failure started a block: log one line, bump a metric;
* after a successful authentication, ``guard.success(ip, now)``;
* from a periodic timer, ``guard.expire(now)``.

Policy: failures count within a sliding ``window``.  Once ``slow_after`` failures are in the
window the delay is ``base_delay`` (0.25 s), doubling with each further failure up to
``max_delay``.  The failure that brings the count to ``block_after`` starts a block of
``block_for`` seconds: the source is blocked while ``now < blocked_until``, so the block ends
exactly at ``blocked_until``.  Starting a block consumes the failures that caused it, so a
source comes out of a block with a clean slate (and earns the next block after another
``block_after`` failures).  Failures reported while blocked are ignored.

Memory: two tables, failures (per source, at most ``block_after`` timestamps) and blocks.
Together they hold at most ``max_tracked`` sources.  When full, the source whose last failure
is oldest is forgotten first; blocks are evicted (earliest to expire first) only when every
tracked source is blocked, so a flood of new addresses cannot easily wash out active blocks.

Keys are opaque strings: a caller that wants to treat an IPv6 /64 as one source passes the
prefix.  Not thread-safe (one event loop).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

__all__ = ["AuthGuard", "GuardDecision", "GuardEvent"]


@dataclass(frozen=True, slots=True)
class GuardDecision:
    """What to do with a request from a source."""

    blocked: bool
    blocked_until: float | None  # set when blocked
    delay: float  # seconds to wait before answering (0 when blocked: the request is dropped)


@dataclass(frozen=True, slots=True)
class GuardEvent:
    """Emitted once, by the failure that starts a block."""

    ip: str
    failures: int  # failures in the window when the block started
    blocked_until: float


_ALLOW: Final = GuardDecision(False, None, 0.0)


class AuthGuard:
    """Per-source failure counting, tarpit delay and temporary blocks.  See the module docstring."""

    __slots__ = (
        "_block_after",
        "_block_for",
        "_blocked",
        "_decisions",
        "_failures",
        "_max_tracked",
        "_window",
    )

    def __init__(
        self,
        *,
        window: float = 60.0,
        slow_after: int = 3,
        block_after: int = 10,
        block_for: float = 300.0,
        max_delay: float = 2.0,
        max_tracked: int = 100_000,
        base_delay: float = 0.25,
    ) -> None:
        if window <= 0 or block_for <= 0:
            raise ValueError("window and block_for must be positive")
        if slow_after < 1 or block_after < 1:
            raise ValueError("slow_after and block_after must be at least 1")
        if max_delay < 0 or base_delay < 0:
            raise ValueError("delays cannot be negative")
        if max_tracked < 1:
            raise ValueError("max_tracked must be at least 1")
        self._window = float(window)
        self._block_after = block_after
        self._block_for = float(block_for)
        self._max_tracked = max_tracked
        # Decision for n failures in the window, n = 0 .. block_after - 1, built once so that
        # check() allocates nothing for a source that is not blocked.
        decisions = []
        for n in range(block_after):
            if n < slow_after:
                decisions.append(_ALLOW)
            else:
                delay = min(max_delay, base_delay * 2.0 ** (n - slow_after))
                decisions.append(GuardDecision(False, None, delay))
        self._decisions: tuple[GuardDecision, ...] = tuple(decisions)
        # ip -> failure times in the window (ascending); ordered by last failure, oldest first.
        self._failures: OrderedDict[str, list[float]] = OrderedDict()
        # ip -> blocked_until; ordered by block start, so by expiry (block_for is constant).
        self._blocked: OrderedDict[str, float] = OrderedDict()

    def _in_window(self, times: list[float], now: float) -> int:
        """Drop failures that left the window; returns how many remain."""
        # A failure at t counts while now - t < window, i.e. it leaves at t + window exactly.
        old = bisect_right(times, now - self._window)
        if old:
            del times[:old]
        return len(times)

    def check(self, ip: str, now: float) -> GuardDecision:
        """Whether a request from ``ip`` is refused, and how long to delay the answer."""
        until = self._blocked.get(ip)
        if until is not None:
            if now < until:
                return GuardDecision(True, until, 0.0)
            del self._blocked[ip]
        times = self._failures.get(ip)
        if times is None:
            return _ALLOW
        n = self._in_window(times, now)
        if n == 0:
            del self._failures[ip]
            return _ALLOW
        return self._decisions[n]

    def failure(self, ip: str, now: float) -> GuardEvent | None:
        """Record an authentication failure; returns an event iff this failure starts a block."""
        until = self._blocked.get(ip)
        if until is not None:
            if now < until:
                return None  # already blocked: the caller should not have got this far
            del self._blocked[ip]
        failures = self._failures
        times = failures.get(ip)
        if times is None:
            self._make_room()
            failures[ip] = times = []
        else:
            failures.move_to_end(ip)
            self._in_window(times, now)
        times.append(now)
        n = len(times)
        if n < self._block_after:
            return None
        del failures[ip]  # the block consumes the failures that caused it
        until = now + self._block_for
        self._blocked[ip] = until
        return GuardEvent(ip, n, until)

    def success(self, ip: str, now: float) -> None:
        """A successful authentication from ``ip``: forget its failures (a block stays)."""
        self._failures.pop(ip, None)

    def _make_room(self) -> None:
        if len(self._failures) + len(self._blocked) < self._max_tracked:
            return
        if self._failures:
            self._failures.popitem(last=False)  # least recently failing source
        else:
            self._blocked.popitem(last=False)  # the block that ends first

    def expire(self, now: float) -> int:
        """Forget failures that left the window and blocks that ended; returns how many sources."""
        dropped = 0
        horizon = now - self._window
        failures = self._failures
        # Ordered by last failure: stop at the first source with a failure still in the window.
        while failures:
            ip, times = next(iter(failures.items()))
            if times[-1] > horizon:
                break
            del failures[ip]
            dropped += 1
        blocked = self._blocked
        while blocked:
            ip, until = next(iter(blocked.items()))
            if until > now:
                break
            del blocked[ip]
            dropped += 1
        return dropped

    def blocked_sources(self, now: float) -> list[tuple[str, float]]:
        """``(ip, blocked_until)`` for every source blocked at ``now``, latest block first."""
        # list() copies in one C call: safe to call from another thread (the metrics exporter).
        active = [(ip, until) for ip, until in list(self._blocked.items()) if until > now]
        active.sort(key=lambda item: (-item[1], item[0]))
        return active

    def blocked_count(self, now: float) -> int:
        """How many sources are blocked at ``now``."""
        return sum(1 for until in list(self._blocked.values()) if until > now)

    def __len__(self) -> int:
        """Sources tracked (with failures in memory or blocked), bounded by ``max_tracked``."""
        return len(self._failures) + len(self._blocked)
