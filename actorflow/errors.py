"""The error hierarchy: every error actorflow raises derives from :class:`ActorflowError`.

Each message says what was wrong and what to do about it. Errors that describe the
outcome of a run (:class:`RunFailed`, :class:`RunCancelled`, :class:`RunTimedOut`) carry
the run id so that a caller holding many handles knows which one it was.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ActorflowError",
    "Cancelled",
    "CorruptRecord",
    "FatalError",
    "FlowNotFound",
    "HookConflict",
    "HookNotFound",
    "InvalidInput",
    "JournalError",
    "NonDeterminismError",
    "RetryableError",
    "RunCancelled",
    "RunError",
    "RunFailed",
    "RunFinished",
    "RunNotFound",
    "RunTimedOut",
    "RuntimeClosed",
    "SerializationError",
    "SerializerMismatch",
    "StepFailed",
    "StepTimeout",
    "TamperedRecord",
]



class ActorflowError(Exception):
    """Base class of every error actorflow raises.

    Errors pickle with their attributes (``run_id``, ``argument``...), whatever their
    ``__init__`` takes, so that a run's error can be stored and rebuilt as ``__cause__``.
    """

    def __reduce__(self) -> Any:
        return _rebuild, (type(self), self.args, self.__dict__)


def _rebuild(cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]) -> BaseException:
    """Unpickle an error whose ``__init__`` takes other arguments than its ``args``."""
    exc = cls.__new__(cls)
    exc.args = args
    exc.__dict__.update(state)
    return exc


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


class RunFinished(ActorflowError):
    """The run has already finished, so it cannot take this (an event, a hook payload).

    Attributes:
        run_id: the run.
        state: the terminal state it is in.
    """

    def __init__(self, run_id: str, state: str) -> None:
        super().__init__(f"run {run_id!r} has finished ({state}); events and hook payloads go only to unfinished runs")
        self.run_id = run_id
        self.state = state


class HookNotFound(ActorflowError, KeyError):
    """No unfinished run holds this hook token."""

    def __init__(self, token: str) -> None:
        super().__init__(token)
        self.token = token

    def __str__(self) -> str:
        return f"no run holds the hook token {self.token!r} (never created, or its run has finished)"


class HookConflict(ActorflowError):
    """The hook token is held by another unfinished run."""

    def __init__(self, token: str, holder: str) -> None:
        super().__init__(
            f"the hook token {token!r} is held by run {holder!r}, which has not finished; "
            "use another token, or let ctx.hook() make a random one"
        )
        self.token = token
        self.holder = holder


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


class TamperedRecord(CorruptRecord):
    """A stored value's signature does not match: it was edited, moved from another row, or
    written with another key. It was not decoded (nothing in it was unpickled) and is never
    handed to a flow; a run whose arguments or flow do not verify fails with this error.

    Attributes:
        run_id: the run the value belongs to.
        column: which value: ``"args"``, ``"result"``, ``"step 3"``...
    """

    def __init__(self, run_id: str, column: str, detail: str) -> None:
        JournalError.__init__(
            self,
            f"run {run_id!r}: the journal's {column!r} value does not verify ({detail}); it was changed "
            "outside actorflow, copied from another row, or written with another key, and is not read",
        )
        self.run_id = run_id
        self.column = column


class InvalidInput(ActorflowError, ValueError):
    """A flow's validator refused the arguments of a start (``@actorflow.flow(validate=...)``); nothing was written.

    Attributes:
        flow: the flow's name.
    """

    def __init__(self, message: str, *, flow: str) -> None:
        super().__init__(message)
        self.flow = flow


class SerializerMismatch(JournalError):
    """A run was stored with another serializer than the runtime (or view) reading it uses.

    Attributes:
        run_id: the run.
        stored: the name of the serializer the run was written with.
        used: the name of the serializer used to read it.
    """

    def __init__(self, run_id: str, stored: str, used: str) -> None:
        super().__init__(
            f"run {run_id!r} was stored with serializer {stored!r} but is read with {used!r}; "
            "open the journal with Runtime(serializer=...) / inspect(serializer=...) set to the one it was written with"
        )
        self.run_id = run_id
        self.stored = stored
        self.used = used


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
    """Raised inside a flow at a cancellation point once its run has been cancelled.

    A flow may catch it to clean up, but the run still ends as ``cancelled``: the
    journal records the cancellation request, and the run's terminal state is
    decided there, not by what the flow returns.
    """


class NonDeterminismError(ActorflowError):
    """A replayed flow called a different step than the one checkpointed at that position.

    Flow code must make the same step calls in the same order on every execution: read
    the clock, random numbers and I/O only inside steps (or with ``ctx.now()``,
    ``ctx.random()``, ``ctx.uuid()``). The run fails with this error.

    Attributes:
        run_id: the run.
        position: the 1-based sequence number of the call.
        expected: the step name in the checkpoint.
        actual: the step name the flow called now.
    """

    def __init__(self, run_id: str, position: int, expected: str, actual: str) -> None:
        super().__init__(
            f"run {run_id}: replay diverged at call {position}: the journal has step {expected!r} "
            f"there, but the flow now calls {actual!r}. Flow code must call the same steps in the "
            "same order on every execution (do I/O, clock and random reads inside steps); "
            "to change a flow that has runs in progress, add the new version under a new name and "
            "keep the old one importable until its runs have finished"
        )
        self.run_id = run_id
        self.position = position
        self.expected = expected
        self.actual = actual


class FatalError(ActorflowError):
    """Raise it from a step (or flow) to fail at once: it is never retried."""


class RetryableError(ActorflowError):
    """Raise it from a step (or flow) to be retried after ``retry_after`` instead of the policy's delay.

    Args:
        message: what went wrong.
        retry_after: seconds, a ``timedelta``, or an aware ``datetime`` to retry at.

    The number of attempts is still bounded by the retry policy's ``max_attempts``.
    """

    def __init__(self, message: str = "", *, retry_after: Any = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StepFailed(ActorflowError):
    """A step's checkpointed failure, replayed when the original exception cannot be rebuilt.

    Attributes:
        error: the type, message and traceback recorded when the step failed
            (an :class:`~actorflow.ErrorInfo`).
    """

    def __init__(self, message: str, *, error: Any) -> None:
        super().__init__(message)
        self.error = error


class StepTimeout(ActorflowError, TimeoutError):
    """A step did not return within its ``timeout``; retried like any other failure."""
