"""Retry policies for steps and flows."""

from __future__ import annotations

import datetime as _dt
import random
from dataclasses import dataclass
from typing import Any

from .errors import RetryableError

__all__ = ["DEFAULT_STEP_RETRY", "NO_RETRY", "Retry", "as_retry", "retry_after_seconds"]



@dataclass(frozen=True)
class Retry:
    """How often and how late a failed step (or flow) is tried again.

    ``max_attempts`` counts the first try: ``Retry(max_attempts=1)`` never retries,
    ``Retry(max_attempts=3)`` tries at most three times in all. The delay before attempt
    ``n + 1`` is ``min(initial * multiplier ** (n - 1), max_interval)``, then spread by
    ``jitter`` (a fraction: 0.1 means a random ±10%, so that many runs failing together
    do not retry together). A :class:`~actorflow.RetryableError` with ``retry_after``
    replaces the computed delay; a :class:`~actorflow.FatalError` is never retried.

    Attributes:
        max_attempts: tries in all, the first included (>= 1).
        initial: seconds before the first retry.
        multiplier: growth of the delay per retry.
        max_interval: the longest delay, in seconds.
        jitter: random spread of each delay, as a fraction of it (0 for none).
    """

    max_attempts: int = 3
    initial: float = 1.0
    multiplier: float = 2.0
    max_interval: float = 60.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValueError(f"max_attempts must be an int >= 1 (it counts the first try), not {self.max_attempts!r}")
        if self.initial < 0 or self.max_interval < 0 or self.multiplier < 1:
            raise ValueError("initial and max_interval must be >= 0 and multiplier >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter is a fraction between 0 and 1, not {self.jitter!r}")

    def delay(self, attempt: int, error: BaseException | None = None, *, now: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based) before the next one.

        Args:
            attempt: the attempt that just failed.
            error: its exception; a ``RetryableError(retry_after=...)`` decides the delay.
            now: the current time (epoch seconds), for a ``retry_after`` datetime.
            rng: the random source for the jitter.
        """
        if isinstance(error, RetryableError) and error.retry_after is not None:
            return retry_after_seconds(error.retry_after, now=now)
        base = min(self.initial * self.multiplier ** (attempt - 1), self.max_interval)
        if self.jitter:
            spread = base * self.jitter
            base += (rng or random).uniform(-spread, spread)
        return max(0.0, base)

    def schedule(self) -> list[float]:
        """The delays before each retry without jitter: ``len == max_attempts - 1``."""
        return [min(self.initial * self.multiplier ** (n - 1), self.max_interval) for n in range(1, self.max_attempts)]


NO_RETRY = Retry(max_attempts=1)
DEFAULT_STEP_RETRY = Retry()
"""Steps retry by default: three attempts in all, 1 s then 2 s apart (±10%)."""


def retry_after_seconds(value: Any, *, now: float | None = None) -> float:
    """Turn a ``retry_after`` (seconds, timedelta or aware datetime) into seconds from now."""
    if isinstance(value, _dt.timedelta):
        return max(0.0, value.total_seconds())
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            raise ValueError("retry_after datetime must be timezone-aware")
        current = now if now is not None else _dt.datetime.now(_dt.UTC).timestamp()
        return max(0.0, value.timestamp() - current)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return max(0.0, float(value))
    raise TypeError(f"retry_after must be seconds, a timedelta or a datetime, not {type(value).__name__}")


def as_retry(value: Retry | int | None, default: Retry) -> Retry:
    """Normalise a ``retries=`` option: a :class:`Retry`, an int of retries after the first try, or None."""
    if value is None:
        return default
    if isinstance(value, Retry):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return Retry(max_attempts=value + 1, initial=default.initial, multiplier=default.multiplier,
                     max_interval=default.max_interval, jitter=default.jitter)  # fmt: skip
    raise TypeError(f"retries must be a Retry or an int >= 0 (retries after the first try), not {value!r}")
