"""Durations and points in time as users write them: ``90``, ``timedelta``, ``"10m"``, a datetime."""

from __future__ import annotations

import datetime as _dt
import re

__all__ = ["parse_duration", "wake_time"]


_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_MAX_SECONDS = 100 * 366 * 86400.0
_TEXT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")


def parse_duration(value: float | int | _dt.timedelta | str) -> float:
    """Seconds in ``value``: a number of seconds, a ``timedelta``, or text like ``"90s"``, ``"10m"``, ``"2h"``, ``"1d"``.

    Several parts add up: ``"1h 30m"``.

    Raises:
        ValueError: negative, infinite or NaN, over 100 years, or text that is not a duration.
        TypeError: another type.
    """
    if isinstance(value, bool):
        raise TypeError("a duration is seconds, a timedelta or text like '10m', not a bool")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, _dt.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, str):
        parts = value.split()
        if not parts:
            raise ValueError("an empty string is not a duration; write e.g. '90s', '10m', '2h' or '1d'")
        seconds = 0.0
        for part in parts:
            match = _TEXT.match(part)
            if match is None:
                raise ValueError(f"{value!r} is not a duration; write e.g. '90s', '10m', '2h', '1d' or '1h 30m'")
            seconds += float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise TypeError(f"a duration is seconds, a timedelta or text like '10m', not {type(value).__name__}")
    if seconds != seconds or seconds < 0:  # NaN or negative
        raise ValueError(f"a duration must be >= 0, not {value!r}")
    if seconds == float("inf") or seconds > _MAX_SECONDS:
        raise ValueError(
            f"a duration must be finite and at most 100 years, not {value!r}; to wait without a deadline, "
            "wait for an event (ctx.wait_event) with timeout=None"
        )
    return seconds


def wake_time(value: float | int | _dt.timedelta | str | _dt.datetime, now: float) -> float:
    """The epoch seconds at which a sleep of ``value`` that starts at ``now`` ends.

    A datetime (timezone-aware) is the wake-up time itself; anything else is a duration.

    Raises:
        ValueError: a naive datetime, or a bad duration.
    """
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            raise ValueError("sleep until a datetime needs a timezone-aware one (e.g. with tzinfo=UTC)")
        return value.timestamp()
    return now + parse_duration(value)
