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
    __slots__ = ("args", "callback", "cancelled", "queue", "when")

    def __init__(self, when: float, callback: Callable[..., None], args: tuple[object, ...],
                 queue: TimerQueue | None = None) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False
        self.queue = queue

    def cancel(self) -> None:
        if self.cancelled:
            return
        # Drop the callback too: it is usually a bound method of the object that holds this
        # handle, and that reference cycle would otherwise wait for the garbage collector.
        self.cancelled = True
        self.callback = _noop
        self.args = ()
        queue = self.queue
        if queue is not None:
            self.queue = None
            queue._cancelled += 1


def _noop(*_args: object) -> None:
    return None


class TimerQueue:
    __slots__ = ("_cancelled", "_heap", "_seq", "live")

    # Rebuild the heap when more than this share of it is cancelled entries: most timers of a
    # call are cancelled long before their deadline (Timer B, the no-answer timer), and lazily
    # dropped entries would otherwise keep their handles alive for up to a minute.
    COMPACT_RATIO = 0.5
    COMPACT_MIN = 1024

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._seq = count()
        self._cancelled = 0  # cancelled handles still in the heap
        self.live = 0  # scheduled, not yet run nor cancelled-and-dropped (for metrics)

    def schedule(self, when: float, callback: Callable[..., None], *args: object) -> TimerHandle:
        handle = TimerHandle(when, callback, args, self)
        heap = self._heap
        heapq.heappush(heap, (when, next(self._seq), handle))
        self.live += 1
        if self._cancelled > self.COMPACT_MIN and self._cancelled > len(heap) * self.COMPACT_RATIO:
            self._compact()
        return handle

    def _compact(self) -> None:
        kept = [entry for entry in self._heap if not entry[2].cancelled]
        heapq.heapify(kept)
        self.live -= len(self._heap) - len(kept)
        self._heap = kept
        self._cancelled = 0

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
            self.live -= 1
            self._cancelled -= 1
        return heap[0][0] if heap else None

    def run_due(self, now: float) -> int:
        """Run every callback due at or before ``now`` (in deadline order); return how many ran."""
        heap = self._heap
        ran = 0
        while heap and heap[0][0] <= now:
            _when, _seq, handle = heapq.heappop(heap)
            self.live -= 1
            if handle.cancelled:
                self._cancelled -= 1
                continue
            callback, args = handle.callback, handle.args
            # A handle fires once; it leaves the heap here, so it is not counted as cancelled.
            handle.queue = None
            handle.cancel()
            callback(*args)
            ran += 1
        return ran

    def __len__(self) -> int:
        return len(self._heap)
