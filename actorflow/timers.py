"""Timers: one thread and a heap of due times, for every timed thing the runtime does.

The supervisor owns one :class:`Timers`. Scheduling is a heap push; the thread sleeps
until the earliest due time (or until something earlier is scheduled) and then calls the
callback, which only sends a message to an actor. There is no thread per timer.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["EARLY", "Timers"]


EARLY = 0.001
"""Seconds a timer may fire before its time: wake-up times are stored to the microsecond, so
one read back can be a fraction of a microsecond later than the time it was computed from."""


class Timers:
    """Calls callbacks at wall-clock times (epoch seconds), from one daemon thread.

    Args:
        name: the thread's name.
        clock: a function returning the current epoch seconds (``time.time``).
    """

    def __init__(self, name: str = "actorflow-timers", clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._real: list[tuple[float, int, Callable[[], Any]]] = []  # housekeeping, on time.monotonic
        listen = getattr(getattr(clock, "__self__", None), "listen", None)
        if listen is not None:  # a manual clock: re-check the due times when it moves
            listen(self._poke)
        self._heap: list[tuple[float, int, Callable[[], Any]]] = []
        self._ids = itertools.count()
        self._cancelled: set[int] = set()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def call_at(self, when: float, callback: Callable[[], Any]) -> int:
        """Call ``callback`` at ``when`` (epoch seconds; at once if past). Returns a handle for :meth:`cancel`."""
        with self._cond:
            handle = next(self._ids)
            heapq.heappush(self._heap, (when, handle, callback))
            if self._heap[0][1] == handle:
                self._cond.notify()
        return handle

    def call_later_real(self, seconds: float, callback: Callable[[], Any]) -> None:
        """Call ``callback`` after ``seconds`` of real time, whatever the clock (leases, polls)."""
        with self._cond:
            heapq.heappush(self._real, (time.monotonic() + seconds, next(self._ids), callback))
            if self._real[0][2] is callback:
                self._cond.notify()

    def _poke(self) -> None:
        with self._cond:
            self._cond.notify()

    def cancel(self, handle: int) -> None:
        """Forget a scheduled callback (nothing happens if it already ran)."""
        with self._cond:
            self._cancelled.add(handle)

    def __len__(self) -> int:
        with self._cond:
            return len(self._heap) - len(self._cancelled)

    def _run(self) -> None:
        while True:
            with self._cond:
                callback = None
                while not self._stopping:
                    if self._real and self._real[0][0] <= time.monotonic():
                        callback = heapq.heappop(self._real)[2]
                        break
                    if self._heap and self._heap[0][0] - self._clock() <= EARLY:
                        break
                    waits = [1.0]
                    if self._heap:
                        waits.append(self._heap[0][0] - self._clock())
                    if self._real:
                        waits.append(self._real[0][0] - time.monotonic())
                    self._cond.wait(max(0.0, min(waits)) if self._heap or self._real else None)
                if self._stopping:
                    return
                if callback is None:
                    _, handle, callback = heapq.heappop(self._heap)
                    if handle in self._cancelled:
                        self._cancelled.discard(handle)
                        continue
            try:
                callback()
            except Exception:  # noqa: BLE001 - a callback only tells an actor; a dead one is fine
                pass

    def stop(self) -> None:
        """Stop the thread; callbacks not yet due are dropped (they are in the journal)."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout=5)
