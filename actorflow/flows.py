"""Flows: the functions a runtime executes, and the per-run options given at start."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, overload

from .retry import NO_RETRY, Retry, as_retry

_OPTION_NAMES = ("metadata", "idempotency_key")


class Flow:
    """A function registered with :func:`flow`; its first parameter is the run context.

    Calling a ``Flow`` object calls the function directly (handy in unit tests with a
    context of your own); :meth:`actorflow.Runtime.start` runs it durably.

    Attributes:
        fn: the decorated function.
        name: the flow's name, shown in statuses and used by ``list_runs(flow=...)``.
        retries: the flow's retry policy (default: none). A retry runs the flow again
            from its start; completed steps are replayed from their checkpoints.
        timeout: seconds from the run's first start after which it ends ``timed_out``.
        run_options: the per-run options set with :meth:`options`.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        retries: Retry | int | None = None,
        timeout: float | None = None,
        run_options: Mapping[str, Any] | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"@actorflow.flow needs a function, not {fn!r}")
        if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
            raise ValueError(f"timeout must be a number of seconds > 0, not {timeout!r}")
        self.fn = fn
        self.name = name or getattr(fn, "__qualname__", None) or repr(fn)
        self.retries = as_retry(retries, NO_RETRY)
        self.timeout = float(timeout) if timeout is not None else None
        self.run_options: dict[str, Any] = dict(run_options or {})
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def options(
        self,
        *,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        detached: bool | None = None,
        queue: str | None = None,
        priority: int | None = None,
    ) -> Flow:
        """Return this flow with options for the runs started from it.

        Options are kept apart from the flow's own arguments, so a flow may have a
        parameter called ``metadata`` without a clash::

            rt.start(charge.options(idempotency_key=f"order-{order_id}"), order_id)

        Args:
            metadata: a dict stored with the run and shown in its status.
            idempotency_key: a second start with the same key returns the existing run
                instead of starting another.
            detached: for a child run (``ctx.start``): it outlives its parent instead of
                being cancelled when the parent ends or is cancelled.
            queue: a named queue (``Runtime(queues={"emails": 5})``): at most that many of
                its runs run at once, across every process on the journal.
            priority: among waiting runs, higher ones are claimed first (default 0).

        Returns:
            A new :class:`Flow`; this one is unchanged.
        """
        if metadata is not None and not isinstance(metadata, Mapping):
            raise TypeError(f"metadata must be a dict, not {type(metadata).__name__}")
        if idempotency_key is not None and not isinstance(idempotency_key, str):
            raise TypeError(f"idempotency_key must be a str, not {type(idempotency_key).__name__}")
        options = dict(self.run_options)
        if metadata is not None:
            options["metadata"] = dict(metadata)
        if idempotency_key is not None:
            options["idempotency_key"] = idempotency_key
        if detached is not None:
            options["detached"] = bool(detached)
        if queue is not None:
            if not isinstance(queue, str) or not queue:
                raise TypeError(f"queue must be a non-empty str, not {queue!r}")
            options["queue"] = queue
        if priority is not None:
            if not isinstance(priority, int) or isinstance(priority, bool):
                raise TypeError(f"priority must be an int, not {priority!r}")
            options["priority"] = priority
        return Flow(self.fn, name=self.name, retries=self.retries, timeout=self.timeout, run_options=options)

    def __repr__(self) -> str:
        extra = f" {self.run_options}" if self.run_options else ""
        return f"<Flow {self.name}{extra}>"


@overload
def flow(fn: Callable[..., Any], /) -> Flow: ...
@overload
def flow(*, name: str | None = None, retries: Retry | int | None = None, timeout: float | None = None) -> Callable[[Callable[..., Any]], Flow]: ...
def flow(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    retries: Retry | int | None = None,
    timeout: float | None = None,
) -> Flow | Callable[[Callable[..., Any]], Flow]:
    """Register a function as a flow: ``@actorflow.flow`` or ``@actorflow.flow(name=..., retries=..., timeout=...)``.

    The function's first parameter is the run context (:class:`actorflow.Context`).

    Args:
        fn: the function (when used without parentheses).
        name: the flow's name; defaults to the function's qualified name.
        retries: a :class:`~actorflow.Retry` or an int of retries after the first try;
            flows do not retry by default.
        timeout: seconds from the run's first start until it ends as ``timed_out``.

    Returns:
        A :class:`Flow`, or a decorator that makes one.
    """
    if fn is not None:
        return Flow(fn, name=name, retries=retries, timeout=timeout)
    return lambda f: Flow(f, name=name, retries=retries, timeout=timeout)


def flow_name(fn: Callable[..., Any]) -> str:
    """The name under which runs of ``fn`` are listed."""
    name = getattr(fn, "name", None)
    if isinstance(name, str) and isinstance(fn, Flow):
        return name
    return getattr(fn, "__qualname__", None) or repr(fn)


def flow_timeout(fn: Callable[..., Any]) -> float | None:
    """The flow-level timeout of ``fn`` in seconds, or None."""
    return fn.timeout if isinstance(fn, Flow) else None


def flow_retry(fn: Callable[..., Any]) -> Retry:
    """The flow-level retry policy of ``fn`` (none for a plain function)."""
    return fn.retries if isinstance(fn, Flow) else NO_RETRY


def run_options(fn: Callable[..., Any]) -> dict[str, Any]:
    """The per-run options attached to ``fn`` with :meth:`Flow.options` (empty for a plain function)."""
    return dict(fn.run_options) if isinstance(fn, Flow) else {}
