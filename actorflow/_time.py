"""Time as the journal stores it: one place for every conversion.

Points in time a person reads (``created_at``, ``started_at``, a step's ``retry_at``...) are
stored as fixed-width ISO 8601 UTC text with microseconds; the runtime computes with epoch
seconds (its clock's ``time()``). A leaf module: it imports nothing of actorflow's.
"""

from __future__ import annotations

import datetime as _dt

__all__ = ["epoch", "iso", "now_iso", "parse"]


def now_iso() -> str:
    """The current UTC time as the journal stores it."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="microseconds")


def iso(seconds: float) -> str:
    """Epoch seconds as the journal stores a time."""
    return _dt.datetime.fromtimestamp(seconds, _dt.UTC).isoformat(timespec="microseconds")


def parse(text: str | None) -> _dt.datetime | None:
    """A stored time as a timezone-aware datetime (None stays None)."""
    if text is None:
        return None
    return _dt.datetime.fromisoformat(text)


def epoch(text: str | None) -> float | None:
    """A stored time as epoch seconds (None stays None)."""
    value = parse(text)
    return value.timestamp() if value is not None else None
