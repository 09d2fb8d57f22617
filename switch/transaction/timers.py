"""A sans-IO timer queue: the one clock-driven thing the switch's layers share.

Layers schedule callbacks at absolute instants (seconds, on whatever monotonic clock the caller
uses).  The I/O layer arms a single event-loop timer for :meth:`TimerQueue.next_deadline` and
calls :meth:`TimerQueue.run_due` when it fires; tests call ``run_due`` with a hand-driven clock.
Cancelled entries are dropped lazily when they reach the top of the heap.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from itertools import count


class TimerHandle:
    __slots__ = ("args", "callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[..., None], args: tuple[object, ...]) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        # Drop the callback too: it is usually a bound method of the object that holds this
        # handle, and that reference cycle would otherwise wait for the garbage collector.
        self.cancelled = True
        self.callback = _noop
        self.args = ()


def _noop(*_args: object) -> None:
    return None


class TimerQueue:
    __slots__ = ("_heap", "_seq", "live")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._seq = count()
        self.live = 0  # scheduled, not yet run nor cancelled-and-dropped (for metrics)

    def schedule(self, when: float, callback: Callable[..., None], *args: object) -> TimerHandle:
        handle = TimerHandle(when, callback, args)
        heapq.heappush(self._heap, (when, next(self._seq), handle))
        self.live += 1
        return handle

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
            self.live -= 1
        return heap[0][0] if heap else None

    def run_due(self, now: float) -> int:
        """Run every callback due at or before ``now`` (in deadline order); return how many ran."""
        heap = self._heap
        ran = 0
        while heap and heap[0][0] <= now:
            _when, _seq, handle = heapq.heappop(heap)
            self.live -= 1
            if handle.cancelled:
                continue
            callback, args = handle.callback, handle.args
            handle.cancel()  # a handle fires once; cancel() afterwards is harmless
            callback(*args)
            ran += 1
        return ran

    def __len__(self) -> int:
        return len(self._heap)
