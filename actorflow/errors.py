"""The error hierarchy: every error actorflow raises derives from :class:`ActorflowError`.

Each message says what was wrong and what to do about it. Errors that describe the
outcome of a run (:class:`RunFailed`, :class:`RunCancelled`, :class:`RunTimedOut`) carry
the run id so that a caller holding many handles knows which one it was.
"""

from __future__ import annotations

from typing import Any


class ActorflowError(Exception):
    """Base class of every error actorflow raises."""


class SerializationError(ActorflowError, TypeError):
    """A value could not be serialized or deserialized.

    Raised by ``start`` for an argument that cannot be stored (nothing is written), and
    recorded as the error of a run whose return value cannot be stored.

    Attributes:
        argument: the name of the offending argument, when one is known.
    """

    def __init__(self, message: str, *, argument: str | None = None) -> None:
        super().__init__(message)
        self.argument = argument


class RunNotFound(ActorflowError, KeyError):
    """No run with this id exists in the journal."""

    def __init__(self, run_id: str) -> None:
        super().__init__(run_id)
        self.run_id = run_id

    def __str__(self) -> str:
        return (
            f"no run with id {self.run_id!r} in this journal; check the id, or that you "
            "opened the journal file the run was started in"
        )


class RuntimeClosed(ActorflowError, RuntimeError):
    """The runtime was shut down (or is shutting down) and takes no more calls."""


class JournalError(ActorflowError):
    """The journal (the SQLite file) could not be opened, read or written."""


class CorruptRecord(JournalError):
    """A row in the journal cannot be decoded: it was edited by hand or damaged.

    Attributes:
        run_id: the run whose row is damaged.
        column: the column that could not be decoded.
    """

    def __init__(self, run_id: str, column: str, detail: str) -> None:
        super().__init__(
            f"run {run_id!r}: the journal's {column!r} column cannot be decoded ({detail}); "
            "the row was changed outside actorflow or the file is damaged"
        )
        self.run_id = run_id
        self.column = column


class FlowNotFound(ActorflowError, LookupError):
    """A stored flow reference (``module:qualname``) can no longer be imported."""


class RunError(ActorflowError):
    """Base class of the errors that report how a run ended.

    Attributes:
        run_id: the run that ended this way.
    """

    def __init__(self, message: str, *, run_id: str) -> None:
        super().__init__(message)
        self.run_id = run_id


class RunFailed(RunError):
    """The run raised an exception.

    The original exception is ``__cause__`` when it could be rebuilt; its type name,
    message and traceback text are always on :attr:`error`.

    Attributes:
        error: the :class:`~actorflow.ErrorInfo` recorded for the run.
    """

    def __init__(self, message: str, *, run_id: str, error: Any) -> None:
        super().__init__(message, run_id=run_id)
        self.error = error


class RunCancelled(RunError):
    """The run was cancelled before it finished."""


class RunTimedOut(RunError):
    """The run exceeded its flow-level timeout."""


class Cancelled(ActorflowError):
    """Raised inside a flow at a checkpoint once its run has been cancelled.

    A flow may catch it to clean up, but the run still ends as ``cancelled``: the
    journal records the cancellation request, and the run's terminal state is
    decided there, not by what the flow returns.
    """
