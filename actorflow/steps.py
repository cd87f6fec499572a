"""Steps: functions whose result is checkpointed, so that a replayed flow does not run them again."""

from __future__ import annotations

import datetime as _dt
import functools
import sys
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, overload

from . import _run_context
from .errors import ActorflowError
from .retry import DEFAULT_STEP_RETRY, Retry, as_retry

__all__ = ["FlowThread", "Step", "StepInfo", "current_step", "step"]



@dataclass(frozen=True)
class StepInfo:
    """What a step body knows about itself: ``actorflow.current_step()``.

    Attributes:
        step_id: stable across retries and recoveries (``<run id>:<position>``): use it
            as the idempotency key of the side effect the step performs.
        name: the step's name.
        seq: its position among the run's checkpointed calls (1-based).
        attempt: which try this is (1-based; more after a failure or a crash).
        started_at: when this attempt started (UTC).
        run_id: the run the step belongs to.
    """

    step_id: str
    name: str
    seq: int
    attempt: int
    started_at: _dt.datetime
    run_id: str
    _stop: threading.Event | None = field(default=None, repr=False, compare=False)
    _run_cancel: threading.Event | None = field(default=None, repr=False, compare=False)

    @property
    def cancelled(self) -> bool:
        """True once the step timed out or its run was cancelled: a long step should stop."""
        stop, run = self._stop, self._run_cancel
        return (stop is not None and stop.is_set()) or (run is not None and run.is_set())


def current_step() -> StepInfo:
    """The :class:`StepInfo` of the step executing in this thread.

    Raises:
        ActorflowError: called outside a step (or from a step called outside a run).
    """
    info = _run_context.step.get()
    if info is None:
        raise ActorflowError("actorflow.current_step() was called outside a step executing in a run")
    return info


class Step:
    """A function registered with :func:`step`.

    Called from a flow executing in a run, its result (or its final failure) is
    checkpointed before the flow moves on, and a replay returns the checkpoint instead of
    calling the function again. Called from inside another step, or outside any run, it
    is a plain call. Called from a thread the flow started (a ``ThreadPoolExecutor``),
    or with the flow's context copied into another thread, it raises
    :class:`~actorflow.ActorflowError`: its result could not be checkpointed in order.

    Attributes:
        fn: the function.
        name: the step's name, checked on replay.
        retries: its retry policy.
        timeout: seconds an attempt may take, or None.
    """

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None, retries: Retry | int | None = None, timeout: float | None = None) -> None:
        if not callable(fn):
            raise TypeError(f"@actorflow.step needs a function, not {fn!r}")
        if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
            raise ValueError(f"timeout must be a number of seconds > 0, not {timeout!r}")
        self.fn = fn
        self.name = name or getattr(fn, "__qualname__", None) or repr(fn)
        self.retries = as_retry(retries, DEFAULT_STEP_RETRY)
        self.timeout = float(timeout) if timeout is not None else None
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        ctx = _run_context.run.get()
        if ctx is None:
            if _FLOW_THREADS:
                _refuse_in_flow_thread(self.name)
            return self.fn(*args, **kwargs)
        if _run_context.step.get() is not None:
            return self.fn(*args, **kwargs)
        return ctx._execution.run_step(self, args, kwargs)

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        if obj is None:
            return self
        return functools.partial(self.__call__, obj)

    def __repr__(self) -> str:
        return f"<Step {self.name}>"


# Threads a flow started (from its own code, not from a step's body) while it executes: a
# step called in one of them has no run context, and would run without a checkpoint, so it
# raises instead. Flows run on FlowThreads; a thread created in one reads its creator's
# daemon flag (threading.Thread.__init__ does, unless daemon= is given), which is where a
# FlowThread notes the new thread and the run it was created for.
_FLOW_THREADS: weakref.WeakKeyDictionary[threading.Thread, Any] = weakref.WeakKeyDictionary()


class FlowThread(threading.Thread):
    """A thread that executes flows; notes the threads a flow creates (see :meth:`Step.__call__`)."""

    @property
    def daemon(self) -> bool:
        """As :attr:`threading.Thread.daemon`."""
        if self is threading.current_thread():
            ctx = _run_context.run.get()
            if ctx is not None and _run_context.step.get() is None:
                child = sys._getframe(1).f_locals.get("self")  # the Thread being made (its __init__ asks)
                if isinstance(child, threading.Thread) and child is not self:
                    try:
                        _FLOW_THREADS[child] = ctx.run_id
                    except TypeError:
                        pass
        return bool(threading.Thread.daemon.fget(self))  # type: ignore[attr-defined]  # the base property

    @daemon.setter
    def daemon(self, value: bool) -> None:
        threading.Thread.daemon.fset(self, value)  # type: ignore[attr-defined]  # typeshed does not know a property's fget/fset


def _refuse_in_flow_thread(name: str) -> None:
    run_id = _FLOW_THREADS.get(threading.current_thread())
    if run_id is None:
        return
    # whichever run calls it now (the one that made the thread, or a later one reusing a
    # pool): there is no run context here, so no checkpoint
    raise ActorflowError(
        f"step {name!r} was called from a thread that a flow started (run {run_id}'s: a ThreadPoolExecutor, say): "
        "there it has no run context and its result would not be checkpointed. Call steps from the flow's own "
        "thread, or run parallel work as child runs (ctx.start, then ctx.gather)"
    )


@overload
def step(fn: Callable[..., Any], /) -> Step: ...
@overload
def step(*, name: str | None = None, retries: Retry | int | None = None, timeout: float | None = None) -> Callable[[Callable[..., Any]], Step]: ...
def step(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    retries: Retry | int | None = None,
    timeout: float | None = None,
) -> Step | Callable[[Callable[..., Any]], Step]:
    """Register a function as a step: ``@actorflow.step`` or ``@actorflow.step(retries=..., timeout=...)``.

    Args:
        fn: the function (when used without parentheses).
        name: the name checked on replay; defaults to the function's qualified name.
        retries: a :class:`~actorflow.Retry`, or an int: how many times to retry after
            the first try (``retries=0`` never retries). The default is
            ``Retry(max_attempts=3, initial=1.0, multiplier=2.0, max_interval=60.0, jitter=0.1)``.
        timeout: seconds one attempt may take; a slower attempt fails with
            :class:`~actorflow.StepTimeout` (and is retried per ``retries``).

    Returns:
        A :class:`Step`, or a decorator that makes one.
    """
    if fn is not None:
        return Step(fn, name=name, retries=retries, timeout=timeout)
    return lambda f: Step(f, name=name, retries=retries, timeout=timeout)
