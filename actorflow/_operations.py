"""The operations of an executing run that flow-facing code calls: the seam between
:class:`~actorflow.Context` / child handles and the execution actor that implements them.

``Context``, ``ChildHandle``, ``gather`` and ``wait_first`` depend on this protocol only,
not on the execution actor, its messages or its actor refs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import datetime as _dt

    from .clock import Clock
    from .codec import Codec
    from .context import RunControl
    from .steps import Step

__all__ = ["RunOperations"]

Row = dict[str, Any]


class RunOperations(Protocol):
    """What a run's flow can ask of its execution (implemented by the execution actor)."""

    run_id: str
    control: RunControl
    clock: Clock
    codec: Codec

    def check_interrupt(self) -> None:
        """Raise if the run was cancelled, timed out or abandoned."""

    def save_progress(self, value: Any) -> None:
        """Store the run's progress."""

    def run_step(self, step: Step, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Execute, or replay, one step call."""

    def run_value(self, name: str, produce: Callable[[], Any]) -> Any:
        """A checkpointed value (``ctx.now()``...)."""

    def start_child(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """Start, or find on replay, a child run; its id."""

    def wait_runs(self, run_ids: tuple[str, ...], mode: str, timeout: float | None, name: str) -> dict[str, Row]:
        """Wait durably until runs settle; the final rows that decide."""

    def get_run(self, run_id: str) -> Row:
        """The current row of a run (for display)."""

    def cancel_run(self, run_id: str) -> bool:
        """Cancel a run; True if this call cancelled it."""

    def sleep(self, duration: float | _dt.timedelta | str | _dt.datetime) -> None:
        """Sleep durably."""

    def wait_event(self, topic: str, timeout: float | _dt.timedelta | str | None) -> Any:
        """Wait durably for the next event on a topic."""

    def hook(self, token: str | None) -> str:
        """Register, or find on replay, the run's hook token."""

    def write(self, chunk: Any, namespace: str | None, close: bool = False) -> None:
        """Append to (or close) the run's stream."""
