"""The run context: what a flow sees of its run (``ctx``), and :func:`current_run`."""

from __future__ import annotations

import datetime as _dt
import random as _random
import threading
import uuid as _uuid
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from . import _run_context
from .children import ChildHandle, gather, wait_first
from .errors import ActorflowError
from .states import StepKind
from .steps import Step

if TYPE_CHECKING:
    from ._operations import RunOperations

P = ParamSpec("P")
R = TypeVar("R")


class Flag:
    """A flag set once and read often; cheaper than a ``threading.Event`` where nobody waits on it."""

    __slots__ = ("_set",)

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        """Set the flag (thread-safe: a plain attribute store)."""
        self._set = True

    def is_set(self) -> bool:
        """True once :meth:`set` was called."""
        return self._set


class RunControl:
    """The flags the supervisor shares with an executing run (thread-safe).

    Attributes:
        cancel: set when a cancellation of the run was accepted.
        abandon: set when the runtime shuts down and stops waiting for the run.
        timed_out: set when the flow's timeout passed (the run is already ``timed_out``).
        interrupt: set together with any of the above, to wake a run that waits.
        poke: set when an event for the run is committed, to wake a run waiting for one.
        shutdown: set when the runtime begins to shut down (``ctx.shutting_down``).
    """

    __slots__ = ("abandon", "cancel", "interrupt", "poke", "shutdown", "timed_out")

    def __init__(self) -> None:
        self.shutdown = Flag()
        self.cancel = Flag()
        self.abandon = Flag()
        self.timed_out = Flag()
        self.interrupt = threading.Event()
        self.poke = threading.Event()

    def set(self, flag: Flag) -> None:
        """Set ``flag`` (one of this control's events) and wake the run."""
        flag.set()
        self.interrupt.set()


class Context:
    """The run context passed to a flow as its first argument.

    Attributes:
        run_id: the run's id.
        flow: the flow's name.
        attempt: which execution of the run this is: 1 for the first, one more for each
            flow retry and each recovery after a crash or restart.
        started_at: when this attempt started (UTC).
        parent_id: the id of the run that started this one, or None.
        metadata: the dict given at start.
    """

    def __init__(
        self,
        execution: RunOperations,
        *,
        run_id: str,
        flow: str,
        attempt: int,
        started_at: _dt.datetime,
        parent_id: str | None,
        metadata: dict[str, Any],
    ) -> None:
        self._execution = execution
        self.run_id = run_id
        self.flow = flow
        self.attempt = attempt
        self.started_at = started_at
        self.parent_id = parent_id
        self.metadata = metadata

    @property
    def cancelled(self) -> bool:
        """True once a cancellation of this run was accepted; a long loop should check it and stop."""
        return self._execution.control.cancel.is_set()

    @property
    def shutting_down(self) -> bool:
        """True once the runtime has begun to shut down.

        A long flow or step can check it to wrap up early (the runtime waits for running
        runs up to its shutdown timeout). A run cut off by the shutdown resumes from its
        checkpoints at the next open.
        """
        return self._execution.control.shutdown.is_set()

    def check_cancelled(self) -> None:
        """Raise :class:`~actorflow.Cancelled` if the run was cancelled; otherwise do nothing.

        Every actorflow call made from a flow does this (each is a *cancellation point*);
        call it yourself in a long loop that makes none.
        """
        self._execution.check_interrupt()

    def checkpoint(self) -> None:
        """Deprecated name of :meth:`check_cancelled` (a "checkpoint" is a saved step result).

        Warns with :class:`DeprecationWarning`, then does what :meth:`check_cancelled` does.
        """
        warnings.warn(
            "ctx.checkpoint() is renamed ctx.check_cancelled()", DeprecationWarning, stacklevel=2
        )
        self._execution.check_interrupt()

    def progress(self, value: Any) -> None:
        """Record ``value`` as the run's latest progress (durably; shown in its status).

        It is a cancellation point: a cancelled run raises :class:`~actorflow.Cancelled` here.

        Raises:
            SerializationError: the value cannot be stored.
        """
        self._execution.save_progress(value)

    def step(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Call ``fn(*args, **kwargs)`` as a checkpointed step (for a function not decorated with ``@step``).

        ``fn`` may also be a :class:`~actorflow.Step` (``actorflow.step(fn, retries=...)``)
        to give it options. Returns the step's result; raises its final failure. Called
        from inside a step's body it is a plain call, like a nested step.
        """
        if _run_context.step.get() is not None:  # inside a step body: a plain call, like a nested step
            return (fn.fn if isinstance(fn, Step) else fn)(*args, **kwargs)
        step = fn if isinstance(fn, Step) else Step(fn)
        return self._execution.run_step(step, args, kwargs)

    def start(self, flow: Callable[Concatenate[Any, P], R], /, *args: P.args, **kwargs: P.kwargs) -> ChildHandle[R]:
        """Start a child run of ``flow`` and return its handle once it is committed.

        The child runs in parallel; wait for it with ``handle.result()``,
        :meth:`gather` or :meth:`wait_first`. Its id is derived from this run's id and
        the call's position, so a replay finds the same child instead of starting
        another. When this run ends, or is cancelled, its unfinished children are
        cancelled, unless started detached: ``ctx.start(flow.options(detached=True), ...)``.

        Raises:
            SerializationError: an argument cannot be stored.
        """
        return ChildHandle(self._execution, self._execution.start_child(flow, args, kwargs))

    def gather(self, *handles: ChildHandle[Any] | str, return_exceptions: bool = False, timeout: float | None = None) -> list[Any]:
        """Wait for every run and return their results, in order.

        Args:
            *handles: child handles (from :meth:`start`) or run ids.
            return_exceptions: False (default): the first run to fail raises here, as
                :class:`~actorflow.RunFailed` (or ``RunCancelled``/``RunTimedOut``) with
                the run's id, without waiting for the others. True: wait for all and
                return each result or its error in its place (all-settled).
            timeout: seconds to wait at most; then :class:`TimeoutError` (the runs go on).
        """
        return gather(self._execution, handles, return_exceptions, timeout)

    def wait_first(self, *handles: ChildHandle[Any] | str, timeout: float | None = None) -> tuple[Any, Any]:
        """Wait for the first of the runs to end; return ``(its handle, its result or error)``.

        Raises:
            TimeoutError: ``timeout`` seconds passed first.
        """
        return wait_first(self._execution, handles, timeout)

    def sleep(self, duration: float | _dt.timedelta | str | _dt.datetime) -> None:
        """Sleep durably: seconds, a timedelta, text (``"90s"``, ``"10m"``, ``"2h"``, ``"1d"``) or an aware datetime.

        The wake-up time is committed before the run sleeps, so a run sleeping 10 s in a
        process restarted after 5 s wakes at about 10 s, not 15. A sleep longer than a
        moment gives up the run's thread (the run shows ``waiting``) and a timer resumes
        it by replay. Cancelling a sleeping run ends it at once.

        Raises:
            ValueError: a negative or unparseable duration, or a naive datetime.
        """
        self._execution.sleep(duration)

    def wait_event(self, topic: str, timeout: float | _dt.timedelta | str | None = None) -> Any:
        """Wait durably for the next event on ``topic`` (sent with ``rt.send``) and return its payload.

        Events sent before the wait are queued in order; each is delivered exactly once,
        across crashes. Returns None if ``timeout`` passes first (so send a payload other
        than None if you need to tell the two apart). A wait longer than a moment gives
        up the run's thread until the event comes.
        """
        return self._execution.wait_event(topic, timeout)

    def hook(self, token: str | None = None) -> Hook:
        """Create a hook: a token that lets a caller who does not know the run id send it payloads.

        ``rt.resume_hook(hook.token, payload)`` delivers to ``hook.wait()``. The token is
        random unless given; one held by another unfinished run raises
        :class:`~actorflow.HookConflict`. It is freed when the run ends.
        """
        return Hook(self, self._execution.hook(token))

    def write(self, chunk: Any, namespace: str | None = None) -> None:
        """Append ``chunk`` to the run's stream (durably); readers of ``run.stream()`` get it live.

        Raises:
            SerializationError: the chunk cannot be stored.
        """
        self._execution.write(chunk, namespace)

    def close_stream(self, namespace: str | None = None) -> None:
        """Close the run's stream: readers stop here (they also stop when the run ends)."""
        self._execution.write(None, namespace, close=True)

    def now(self) -> _dt.datetime:
        """The current UTC time (of the runtime's clock), checkpointed: a replay gets the same value."""
        clock = self._execution.clock
        return self._execution.run_value(  # type: ignore[no-any-return]  # run_value returns what produce() made
            StepKind.NOW, lambda: _dt.datetime.fromtimestamp(clock.time(), _dt.UTC)
        )

    def random(self) -> float:
        """A random float in [0, 1), checkpointed: a replay gets the same value."""
        return self._execution.run_value(StepKind.RANDOM, _random.random)  # type: ignore[no-any-return]  # run_value returns what produce() made

    def uuid(self) -> _uuid.UUID:
        """A random UUID, checkpointed: a replay gets the same value."""
        return self._execution.run_value(StepKind.UUID, _uuid.uuid4)  # type: ignore[no-any-return]  # run_value returns what produce() made

    def __repr__(self) -> str:
        return f"<Context run={self.run_id} flow={self.flow} attempt={self.attempt}>"


class Hook:
    """A hook of a run (``ctx.hook()``): callers deliver to it by token, without the run id.

    Attributes:
        token: the token to hand out (for example in a webhook URL).
    """

    __slots__ = ("_ctx", "token")

    def __init__(self, ctx: Context, token: str) -> None:
        self._ctx = ctx
        self.token = token

    def wait(self, timeout: float | _dt.timedelta | str | None = None) -> Any:
        """Wait for the next payload delivered with ``rt.resume_hook(token, payload)``; None on timeout."""
        return self._ctx.wait_event("hook:" + self.token, timeout)

    def __repr__(self) -> str:
        return f"<Hook {self.token}>"


def current_run() -> Context:
    """The context of the run executing in this thread.

    Raises:
        ActorflowError: called outside a run.
    """
    ctx = _run_context.run.get()
    if ctx is None:
        raise ActorflowError("actorflow.current_run() was called outside a run; call it from a flow or a step")
    return ctx


__all__ = ["Context", "Flag", "Hook", "RunControl", "current_run"]
