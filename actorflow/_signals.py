"""The internal signals an execution raises through a flow's code to leave it early.

They derive from ``BaseException`` so that ``except Exception`` in flow code cannot swallow
them. None of them is an error of the run: each says why the execution stops.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Abandoned", "Ended", "Passivate"]


class Abandoned(BaseException):
    """The runtime is shutting down (or lost its lease) and no longer waits for the run.

    The run is left unfinished in the journal and resumes at the next open (or in the
    runtime that takes it over).
    """


class Ended(BaseException):
    """The run was ended from outside (its flow timeout passed): its terminal state is
    committed already, and the execution stops without writing."""


class Passivate(BaseException):
    """The flow waits and gives up its execution actor; the run resumes by replay.

    Attributes:
        wait: the number (``seq``) of the call that waits.
        wake_at: epoch seconds at which to resume it anyway, or None.
        waiting_for: what it waits for, shown in its status.
        topic: the event topic it waits for, if any.
        watermark: set once its ``waiting`` state is committed (event waits).
        kind: the kind of wait (``actorflow.waits.WaitKind`` values, or ``"retry"`` for a
            step's retry delay); recorded with the waiting state, it says how to resume.
    """

    def __init__(
        self,
        wait: int,
        wake_at: float | None,
        waiting_for: dict[str, Any],
        topic: str | None = None,
        watermark: int | None = None,
        kind: str = "retry",
    ) -> None:
        super().__init__(wait)
        self.kind = kind
        self.wait = wait
        self.wake_at = wake_at
        self.waiting_for = {"wait": wait, **waiting_for}
        self.topic = topic
        self.watermark = watermark
