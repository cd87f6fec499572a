"""RunHandle: what ``start`` returns; the id of a run and the calls that use it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .status import RunStatus, RunTree, StepList, result_from_row, status_from_row, status_table

if TYPE_CHECKING:
    from ._future import Reply
    from .runtime import Runtime

__all__ = ["RunHandle"]

R = TypeVar("R")


class RunHandle(Generic[R]):
    """A handle on one run: its id, and calls to inspect, wait for and cancel it.

    Generic in the flow's return type (``RunHandle[str]`` for a flow that returns a str):
    ``result()`` is typed as it.

    Handles are cheap; ``rt.get_run(id)`` makes one for an id that came from elsewhere.
    Every call goes to the runtime's actors, so a handle is safe to share between threads.
    The handle ``start()`` returns is also told of the run's end when this runtime
    commits it, so ``result()`` and ``wait()`` on a run that has ended here answer at
    once, without a query.

    Attributes:
        id: the run id.
    """

    __slots__ = ("_done", "_rt", "id")

    def __init__(self, runtime: Runtime, run_id: str, done: Reply[Any] | None = None) -> None:
        self._rt = runtime
        self.id = run_id
        self._done = done

    def status(self) -> RunStatus:
        """The run's current status.

        Raises:
            RunNotFound: the run does not exist.
        """
        return self._rt.status(self.id)

    def steps(self) -> StepList:
        """The run's checkpointed calls (steps, ``ctx.now()``...) with their state and attempts; prints as a table."""
        return self._rt.steps(self.id)

    def wait(self, timeout: float | None = None) -> RunStatus:
        """Wait until the run ends and return its final status; never raises for the outcome.

        Args:
            timeout: seconds to wait at most; None waits for as long as it takes.

        Raises:
            TimeoutError: the run did not end in time (the run is unaffected).
        """
        return status_from_row(self._rt._wait_row(self.id, timeout, self._done), self._rt.codec)

    def result(self, timeout: float | None = None) -> R:
        """Wait until the run ends and return its result.

        Args:
            timeout: seconds to wait at most; None waits for as long as it takes.

        Raises:
            RunFailed: the flow raised (the original exception is ``__cause__`` when it
                can be rebuilt).
            RunCancelled: the run was cancelled.
            RunTimedOut: the run exceeded its timeout.
            TimeoutError: the run did not end in time (the run is unaffected).
        """
        value: R = result_from_row(self._rt._wait_row(self.id, timeout, self._done), self._rt.codec)
        return value

    def send(self, topic: str, payload: Any = None) -> None:
        """Deliver an event to the run (see :meth:`actorflow.Runtime.send`)."""
        self._rt.send(self.id, topic, payload)

    def stream(self, namespace: str | None = None, start: int = 0, timeout: float | None = None) -> Iterator[Any]:
        """Yield the chunks the run writes, live (see :meth:`actorflow.Runtime.stream`)."""
        return self._rt.stream(self.id, namespace, start, timeout)

    def tree(self) -> RunTree:
        """The run and its descendants with their states; prints as an indented table."""
        return self._rt.tree(self.id)

    def cancel(self) -> bool:
        """Cancel the run. True if this call cancelled it, False if it had already finished."""
        return self._rt.cancel(self.id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunHandle) and other.id == self.id and other._rt is self._rt

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        try:
            return "RunHandle\n" + status_table([self.status()])
        except Exception as exc:  # noqa: BLE001 - a repr must not raise
            return f"<RunHandle {self.id} ({type(exc).__name__}: {exc})>"
