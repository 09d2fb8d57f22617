"""Tests for switch.registrar.guard: time is driven by hand."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from switch.registrar.guard import AuthGuard, GuardDecision, GuardEvent

IP = "192.0.2.10"
OTHER = "198.51.100.7"
T0 = 1_000_000.0


def fail_n(guard: AuthGuard, ip: str, n: int, start: float = T0, step: float = 1.0) -> list[GuardEvent | None]:
    return [guard.failure(ip, start + i * step) for i in range(n)]


def test_unknown_source_is_allowed() -> None:
    guard = AuthGuard()
    assert guard.check(IP, T0) == GuardDecision(blocked=False, blocked_until=None, delay=0.0)
    assert len(guard) == 0  # checking does not create state


def test_delay_grows_then_caps() -> None:
    guard = AuthGuard(slow_after=3, block_after=10, max_delay=2.0)
    delays = []
    for i in range(9):
        assert guard.failure(IP, T0 + i) is None
        delays.append(guard.check(IP, T0 + i).delay)
    assert delays == [0.0, 0.0, 0.25, 0.5, 1.0, 2.0, 2.0, 2.0, 2.0]
    assert guard.check(OTHER, T0 + 9).delay == 0.0  # sources are independent


def test_block_starts_at_threshold_and_ends_at_blocked_until() -> None:
    guard = AuthGuard(block_after=10, block_for=300.0)
    events = fail_n(guard, IP, 10)
    assert events[:9] == [None] * 9
    event = events[9]
    assert event == GuardEvent(IP, 10, T0 + 9 + 300.0)
    until = event.blocked_until
    assert guard.check(IP, T0 + 9) == GuardDecision(True, until, 0.0)
    assert guard.check(IP, until - 1e-6).blocked
    # Further failures while blocked neither extend the block nor emit another event.
    assert guard.failure(IP, T0 + 100) is None
    assert guard.check(IP, until - 1e-6).blocked_until == until
    # The block ends exactly at blocked_until, with a clean slate.
    assert guard.check(IP, until) == GuardDecision(False, None, 0.0)
    assert guard.failure(IP, until) is None
    assert guard.check(IP, until).delay == 0.0


def test_a_second_block_needs_block_after_new_failures() -> None:
    guard = AuthGuard(window=600.0, block_after=3, slow_after=2, block_for=10.0)
    assert fail_n(guard, IP, 3)[-1] is not None
    after = T0 + 2 + 10.0
    events = fail_n(guard, IP, 3, start=after)
    assert events[:2] == [None, None]
    assert events[2] == GuardEvent(IP, 3, after + 2 + 10.0)


def test_success_resets_failures_but_not_a_block() -> None:
    guard = AuthGuard(slow_after=3, block_after=10)
    fail_n(guard, IP, 5)
    assert guard.check(IP, T0 + 5).delay == 1.0
    guard.success(IP, T0 + 5)
    assert guard.check(IP, T0 + 5).delay == 0.0
    assert fail_n(guard, IP, 9, start=T0 + 6) == [None] * 9  # counting starts again from zero
    event = guard.failure(IP, T0 + 20)
    assert event is not None
    guard.success(IP, T0 + 21)
    assert guard.check(IP, T0 + 21).blocked  # a block in force stays until it expires
    assert not guard.check(IP, event.blocked_until).blocked


def test_window_slides() -> None:
    guard = AuthGuard(window=60.0, slow_after=3, block_after=10)
    for t in (0.0, 10.0, 20.0):
        guard.failure(IP, T0 + t)
    assert guard.check(IP, T0 + 59.9).delay == 0.25
    # The failure at T0 leaves the window at T0 + 60 exactly (it counts while now - t < window).
    assert guard.check(IP, T0 + 60.0).delay == 0.0
    guard.failure(IP, T0 + 61.0)
    assert guard.check(IP, T0 + 61.0).delay == 0.25
    assert guard.check(IP, T0 + 81.0).delay == 0.0
    assert guard.check(IP, T0 + 200.0) == GuardDecision(False, None, 0.0)
    assert len(guard) == 0  # fully aged out sources are dropped on sight


def test_slow_guessing_below_the_rate_is_never_blocked() -> None:
    guard = AuthGuard(window=60.0, block_after=10)
    # One failure every 7 s: at most 9 in any 60 s window.
    assert all(e is None for e in fail_n(guard, IP, 600, step=7.0))
    # One every 6 s: the tenth lands within the window of the first.
    events = fail_n(guard, OTHER, 10, step=6.0)
    assert events[:9] == [None] * 9 and events[9] == GuardEvent(OTHER, 10, T0 + 54.0 + 300.0)


def test_memory_bounded_oldest_evicted() -> None:
    guard = AuthGuard(max_tracked=100)
    for i in range(1000):
        guard.failure(f"10.0.{i // 256}.{i % 256}", T0 + i * 0.001)
        assert len(guard) <= 100
    assert len(guard) == 100
    newest = f"10.0.{999 // 256}.{999 % 256}"
    guard.failure(newest, T0 + 2)
    guard.failure(newest, T0 + 2)
    assert guard.check(newest, T0 + 2).delay == 0.25  # 3 failures remembered
    # The least recently failing sources were forgotten.
    oldest = "10.0.0.0"
    guard.failure(oldest, T0 + 3)
    guard.failure(oldest, T0 + 3)
    assert guard.check(oldest, T0 + 3).delay == 0.0  # only 2 failures known


def test_eviction_spares_blocks() -> None:
    guard = AuthGuard(max_tracked=5, block_after=2)
    for ip in ("a", "b", "c"):
        assert fail_n(guard, ip, 2)[-1] is not None
    for i in range(100):
        guard.failure(f"x{i}", T0 + 2 + i)
    assert len(guard) == 5
    assert guard.blocked_count(T0 + 200) == 3
    # Only when everything tracked is blocked does a block go, the one ending first.
    guard = AuthGuard(max_tracked=2, block_after=1, block_for=100.0)
    assert guard.failure("a", T0) is not None
    assert guard.failure("b", T0 + 1) is not None
    assert guard.failure("c", T0 + 2) is not None
    assert [ip for ip, _ in guard.blocked_sources(T0 + 3)] == ["c", "b"]


def test_expire_drops_stale_entries() -> None:
    guard = AuthGuard(window=60.0, block_after=3, block_for=300.0)
    guard.failure("a", T0)
    guard.failure("b", T0 + 30)
    fail_n(guard, "c", 3, start=T0)
    assert len(guard) == 3
    assert guard.expire(T0 + 59) == 0
    assert guard.expire(T0 + 60) == 1  # a
    assert guard.expire(T0 + 90) == 1  # b
    assert len(guard) == 1 and guard.blocked_count(T0 + 90) == 1
    assert guard.expire(T0 + 2 + 300) == 1  # c's block ended
    assert len(guard) == 0


def test_blocked_sources_admin_view() -> None:
    guard = AuthGuard(block_after=1, block_for=100.0)
    guard.failure("203.0.113.1", T0)
    guard.failure("203.0.113.2", T0 + 50)
    guard.failure("203.0.113.3", T0 + 50)
    assert guard.blocked_sources(T0 + 60) == [
        ("203.0.113.2", T0 + 150),
        ("203.0.113.3", T0 + 150),
        ("203.0.113.1", T0 + 100),
    ]
    assert guard.blocked_count(T0 + 60) == 3
    assert guard.blocked_sources(T0 + 100) == [("203.0.113.2", T0 + 150), ("203.0.113.3", T0 + 150)]
    assert guard.blocked_count(T0 + 100) == 2
    assert guard.blocked_count(T0 + 150) == 0 and guard.blocked_sources(T0 + 150) == []


def test_parameter_validation() -> None:
    for kwargs in (
        {"window": 0},
        {"block_for": -1},
        {"slow_after": 0},
        {"block_after": 0},
        {"max_delay": -1},
        {"max_tracked": 0},
    ):
        with pytest.raises(ValueError):
            AuthGuard(**kwargs)


# ---------------------------------------------------------------------------------------------
# Model-based: the guard agrees with a naive reference on random traffic
# ---------------------------------------------------------------------------------------------


@dataclass
class Model:
    window: float
    slow_after: int
    block_after: int
    block_for: float
    max_delay: float
    failures: dict[str, list[float]] = field(default_factory=dict)
    blocks: dict[str, float] = field(default_factory=dict)

    def live(self, ip: str, now: float) -> list[float]:
        return [t for t in self.failures.get(ip, []) if now - t < self.window]

    def check(self, ip: str, now: float) -> GuardDecision:
        until = self.blocks.get(ip)
        if until is not None and now < until:
            return GuardDecision(True, until, 0.0)
        n = len(self.live(ip, now))
        if n < self.slow_after:
            return GuardDecision(False, None, 0.0)
        return GuardDecision(False, None, min(self.max_delay, 0.25 * 2 ** (n - self.slow_after)))

    def failure(self, ip: str, now: float) -> GuardEvent | None:
        until = self.blocks.get(ip)
        if until is not None and now < until:
            return None
        times = [*self.live(ip, now), now]
        if len(times) >= self.block_after:
            self.failures.pop(ip, None)
            self.blocks[ip] = now + self.block_for
            return GuardEvent(ip, len(times), now + self.block_for)
        self.failures[ip] = times
        return None

    def success(self, ip: str) -> None:
        self.failures.pop(ip, None)


@settings(max_examples=200, deadline=None)
@given(
    params=st.tuples(
        st.sampled_from([5.0, 60.0]),
        st.integers(1, 4),
        st.integers(1, 6),
        st.sampled_from([3.0, 300.0]),
        st.sampled_from([0.5, 2.0]),
    ),
    ops=st.lists(
        st.tuples(
            st.sampled_from(["check", "failure", "success", "expire"]),
            st.sampled_from(["a", "b", "c"]),
            st.floats(0.0, 4.0),
        ),
        max_size=80,
    ),
)
def test_matches_reference_model(
    params: tuple[float, int, int, float, float], ops: list[tuple[str, str, float]]
) -> None:
    window, slow_after, block_after, block_for, max_delay = params
    guard = AuthGuard(
        window=window, slow_after=slow_after, block_after=block_after, block_for=block_for, max_delay=max_delay
    )
    model = Model(window, slow_after, block_after, block_for, max_delay)
    now = T0
    for op, ip, dt in ops:
        now += dt
        if op == "check":
            assert guard.check(ip, now) == model.check(ip, now)
        elif op == "failure":
            assert guard.failure(ip, now) == model.failure(ip, now)
        elif op == "success":
            guard.success(ip, now)
            model.success(ip)
        else:
            guard.expire(now)
        expected = sorted(
            ((ip_, until) for ip_, until in model.blocks.items() if until > now), key=lambda x: (-x[1], x[0])
        )
        assert guard.blocked_sources(now) == expected
        assert guard.blocked_count(now) == len(expected)
