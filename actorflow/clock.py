"""Clocks: where the runtime reads the time for wake-ups, and a manual one for tests.

Every time the runtime waits *until* (a durable sleep's wake-up, a wait's timeout, a
retry delay, a flow's deadline) is read from its clock. ``Runtime(clock=ManualClock())``
lets a test move time forward by hand: a flow that sleeps a day finishes as soon as the
test calls ``clock.advance(86400)``. Timestamps recorded for people (``created_at``,
``started_at``...) stay real time.
"""

from __future__ import annotations

import datetime as _dt
import threading
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from .durations import parse_duration

__all__ = ["Clock", "ManualClock", "SystemClock"]



@runtime_checkable
class Clock(Protocol):
    """A source of the current time, as epoch seconds."""

    def time(self) -> float:
        """The current time in seconds since the epoch."""
        ...


class SystemClock:
    """The real time (``time.time()``); the default."""

    def time(self) -> float:
        """The current time in seconds since the epoch."""
        return time.time()

    def __repr__(self) -> str:
        return "SystemClock()"


class ManualClock:
    """A clock that moves only when told to; for tests of flows that sleep or time out.

    Args:
        start: the initial time: epoch seconds or an aware datetime (default: now).

    Example::

        clock = actorflow.ManualClock()
        with actorflow.Runtime(path, clock=clock) as rt:
            run = rt.start(remind_tomorrow)      # ctx.sleep("1d") inside
            clock.advance("1d")                  # the sleep is over
            run.result(timeout=5)
    """

    def __init__(self, start: float | _dt.datetime | None = None) -> None:
        if isinstance(start, _dt.datetime):
            if start.tzinfo is None:
                raise ValueError("ManualClock(start=...) needs a timezone-aware datetime")
            start = start.timestamp()
        self._now = float(start if start is not None else time.time())
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    def time(self) -> float:
        """The clock's current time in seconds since the epoch."""
        return self._now

    def advance(self, duration: float | _dt.timedelta | str) -> None:
        """Move the clock forward by ``duration`` (seconds, timedelta or ``"10m"``-style text)."""
        seconds = parse_duration(duration)
        with self._lock:
            self._now += seconds
            listeners = list(self._listeners)
        for listener in listeners:
            listener()

    def listen(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after every :meth:`advance` (the runtime's timers use it)."""
        with self._lock:
            self._listeners.append(callback)

    def __repr__(self) -> str:
        return f"ManualClock({_dt.datetime.fromtimestamp(self._now, _dt.UTC).isoformat()})"
