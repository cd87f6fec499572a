"""Child runs: starting them from a flow, waiting for them, and composing flows from them.

Inside a flow, ``ctx.start(flow, ...)`` starts a child run and returns a
:class:`ChildHandle` at once. Waiting for children (``handle.result()``,
``ctx.gather(...)``, ``ctx.wait_first(...)``) is durable: the registry tells the parent
when they end (nobody polls), the outcome of each wait is checkpointed so that a replay
takes the same one, and a parent that waits longer than a moment gives up its thread
and concurrency slot until its children are done.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from . import _run_context
from .errors import ActorflowError, RunError
from .flows import Flow, flow_name
from .states import StepKind
from .status import RunStatus, result_from_row, status_from_row

if TYPE_CHECKING:
    from ._operations import RunOperations

__all__ = [
    "AwaitResult",
    "Child",
    "ChildHandle",
    "ChildOutcome",
    "await_result",
    "gather",
    "parent_flow",
    "sequence",
    "wait_first",
]



R = TypeVar("R")


class ChildHandle(Generic[R]):
    """A child run started from a flow with ``ctx.start``; usable only inside that flow.

    Generic in the child flow's return type: ``result()`` is typed as it.

    Attributes:
        id: the child's run id (derived from the parent's id and the call's position).
    """

    __slots__ = ("_execution", "id")

    def __init__(self, execution: RunOperations, run_id: str) -> None:
        self._execution = execution
        self.id = run_id

    def result(self, timeout: float | None = None) -> R:
        """Wait (durably) for the child and return its result.

        Raises:
            RunFailed: the child failed (its exception as ``__cause__``, its id as ``run_id``).
            RunCancelled / RunTimedOut: the child was cancelled / timed out.
            TimeoutError: ``timeout`` seconds passed first (the child goes on).
        """
        rows = self._execution.wait_runs((self.id,), "all", timeout, StepKind.RESULT)
        value: R = result_from_row(rows[self.id], self._execution.codec)
        return value

    def status(self) -> RunStatus:
        """The child's current status, for display: it is not checkpointed, so do not branch on it."""
        return status_from_row(self._execution.get_run(self.id), self._execution.codec)

    def cancel(self) -> bool:
        """Cancel the child (and its own children). The answer is checkpointed: a replay gets the same."""
        execution = self._execution

        def cancel() -> bool:
            return execution.cancel_run(self.id)

        return bool(execution.run_value(StepKind.CANCEL, cancel))

    def __repr__(self) -> str:
        return f"<ChildHandle {self.id}>"


def _ids(handles: Sequence[ChildHandle[Any] | str]) -> tuple[str, ...]:
    ids = []
    for h in handles:
        if isinstance(h, ChildHandle):
            ids.append(h.id)
        elif isinstance(h, str):
            ids.append(h)
        else:
            raise TypeError(f"gather() and wait_first() take child handles (from ctx.start) or run ids, not {h!r}")
    if not ids:
        raise ValueError("gather() and wait_first() need at least one handle")
    return tuple(ids)


def gather(execution: RunOperations, handles: Sequence[ChildHandle[Any] | str], return_exceptions: bool, timeout: float | None) -> list[Any]:
    """Wait for every run; see :meth:`actorflow.Context.gather`."""
    ids = _ids(handles)
    mode = "all" if return_exceptions else "all_or_failure"
    rows = execution.wait_runs(ids, mode, timeout, StepKind.GATHER)
    codec = execution.codec
    if not return_exceptions:
        if len(rows) == 1 and len(set(ids)) > 1:  # the first failure decided
            (row,) = rows.values()
            result_from_row(row, codec)  # raises
        return [result_from_row(rows[i], codec) for i in ids]
    out: list[Any] = []
    for i in ids:
        try:
            out.append(result_from_row(rows[i], codec))
        except RunError as exc:
            out.append(exc)
    return out


def wait_first(execution: RunOperations, handles: Sequence[ChildHandle[Any] | str], timeout: float | None) -> tuple[ChildHandle[Any] | str, Any]:
    """Wait for the first run to end; see :meth:`actorflow.Context.wait_first`."""
    ids = _ids(handles)
    rows = execution.wait_runs(ids, "first", timeout, StepKind.WAIT_FIRST)
    (run_id,) = rows
    handle = next(h for h in handles if (h.id if isinstance(h, ChildHandle) else h) == run_id)
    try:
        return handle, result_from_row(rows[run_id], execution.codec)
    except RunError as exc:
        return handle, exc


class AwaitResult:
    """A flow wrapped by :func:`await_result`: calling it from a flow starts a child and waits.

    A class rather than a closure so that flows using it can be stored by value
    (cloudpickle) when they live in ``__main__``.
    """

    def __init__(self, target: Callable[..., Any]) -> None:
        if not callable(target):
            raise TypeError(f"await_result() takes a flow, not {target!r}")
        self.target = target
        functools.update_wrapper(self, target)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        ctx = _run_context.run.get()
        if ctx is None:
            raise ActorflowError(
                f"{flow_name(self.target)}: a flow wrapped with await_result() can only be called inside a flow; "
                "outside one, use rt.start(flow, ...).result()"
            )
        return ctx.start(self.target, *args, **kwargs).result()

    def __repr__(self) -> str:
        return f"<await_result {flow_name(self.target)}>"


def await_result(target: Callable[..., Any]) -> AwaitResult:
    """Turn a flow into a call that starts it as a child run and waits for its result.

    Defer's ``awaitResult``: ``charge = actorflow.await_result(charge_flow)`` and then,
    inside a flow, ``receipt = charge(order_id)``. A failed child raises
    :class:`~actorflow.RunFailed` (its exception as ``__cause__``) like any exception.
    Called outside a flow it raises :class:`~actorflow.ActorflowError`.
    """
    return AwaitResult(target)


class _Sequence:
    """The body of a :func:`sequence` flow (a class, so that it can be pickled)."""

    def __init__(self, parts: tuple[Callable[..., Any], ...]) -> None:
        self.parts = parts

    def __call__(self, ctx: Any, *args: Any, **kwargs: Any) -> Any:
        value = ctx.start(self.parts[0], *args, **kwargs).result()
        for part in self.parts[1:]:
            value = ctx.start(part, value).result()
        return value


def sequence(*flows: Callable[..., Any], name: str | None = None) -> Flow[..., Any]:
    """A flow that runs ``flows`` one after the other, each as a child run, each output the next input.

    The first flow gets the sequence's arguments; each next one gets the previous
    result as its only argument; the sequence returns the last result. A failure stops
    the sequence and fails it with that child's error.

    Raises:
        ValueError: no flows were given.
    """
    if not flows:
        raise ValueError("sequence() needs at least one flow: it returns the last one's result")
    for f in flows:
        if not callable(f):
            raise TypeError(f"sequence() takes flows, not {f!r}")
    parts = tuple(flows)
    return Flow(_Sequence(parts), name=name or "sequence(" + ", ".join(flow_name(f) for f in parts) + ")")


@dataclass(frozen=True)
class Child:
    """A child run to start, as :func:`parent_flow`'s ``run`` function lists it."""

    flow: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, flow: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Child:
        """``Child.of(flow, *args, **kwargs)``."""
        return cls(flow, args, kwargs)


@dataclass(frozen=True)
class ChildOutcome:
    """How one child of a :func:`parent_flow` ended.

    Attributes:
        run_id: the child's run id.
        ok: True if it completed.
        value: its result when ``ok``.
        error: the :class:`~actorflow.RunError` it ended with otherwise.
    """

    run_id: str
    ok: bool
    value: Any = None
    error: RunError | None = None


class _ParentFlow:
    """The body of a :func:`parent_flow` flow (a class, so that it can be pickled)."""

    def __init__(self, run: Callable[..., tuple[Any, Sequence[Child]]], finalize: Callable[[Any, Any, list[ChildOutcome]], Any]) -> None:
        self.run = run
        self.finalize = finalize

    def __call__(self, ctx: Any, *args: Any, **kwargs: Any) -> Any:
        output, children = self.run(ctx, *args, **kwargs)
        handles = [ctx.start(c.flow, *c.args, **c.kwargs) for c in children]
        settled = ctx.gather(*handles, return_exceptions=True) if handles else []
        outcomes = [
            ChildOutcome(h.id, False, error=v) if isinstance(v, RunError) else ChildOutcome(h.id, True, value=v)
            for h, v in zip(handles, settled, strict=True)
        ]
        return self.finalize(ctx, output, outcomes)


def parent_flow(
    run: Callable[..., tuple[Any, Sequence[Child]]],
    finalize: Callable[[Any, Any, list[ChildOutcome]], Any],
    *,
    name: str | None = None,
) -> Flow[..., Any]:
    """A flow that runs, fans out to children, then finalizes with every child's outcome.

    durable-execution's parent task with ``onRunAndChildrenComplete``: ``run(ctx, *args,
    **kwargs)`` returns ``(output, [Child, ...])``; the children start at once and in
    parallel; when all have ended (completed or not), ``finalize(ctx, output, outcomes)``
    runs and its return value is the flow's result.
    """
    return Flow(_ParentFlow(run, finalize), name=name or f"parent_flow({flow_name(run)})")
